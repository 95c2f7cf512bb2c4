/**
 * Budget meter. The privacy router owns budgets and emits `budget.update` itself; this meter only
 * keeps the latest update for `status` and derives tokens per minute when the router does not say
 * it (from `inference.done` token counts, else from the growth of the windows' used tokens).
 */
import type { AuditEvent } from '../audit/events.js';

const ENVELOPE = new Set(['ts', 'seq', 'kind', 'level', 'sandbox', 'id', 'ocsf_class', 'prev_hash', 'hash', 'transient']);
const MINUTE_MS = 60_000;

export interface BudgetMeterStatus {
  /** The router's latest `budget.update` (without the event envelope), or null before the first. */
  latest: Record<string, unknown> | null;
  updated_at: string | null;
  tokens_per_min: number | null;
  /** Where tokens_per_min came from: the router itself, or counted here from events. */
  tokens_per_min_source: 'router' | 'inference.done' | 'budget.update' | null;
}

function num(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) ? v : undefined;
}

function obj(v: unknown): Record<string, unknown> | undefined {
  return typeof v === 'object' && v !== null && !Array.isArray(v) ? (v as Record<string, unknown>) : undefined;
}

/** Tokens of one finished call, whichever way the router names them. */
export function tokensOfCall(event: Record<string, unknown>): number | undefined {
  const usage = obj(event.usage);
  const direct = num(event.tokens) ?? num(event.total_tokens) ?? num(usage?.total_tokens) ?? num(usage?.tokens);
  if (direct !== undefined) return direct;
  const pairs: Array<[unknown, unknown]> = [
    [event.tokens_in, event.tokens_out],
    [event.input_tokens, event.output_tokens],
    [event.prompt_tokens, event.completion_tokens],
    [usage?.input_tokens, usage?.output_tokens],
    [usage?.prompt_tokens, usage?.completion_tokens],
  ];
  for (const [a, b] of pairs) {
    if (num(a) !== undefined || num(b) !== undefined) return (num(a) ?? 0) + (num(b) ?? 0);
  }
  return undefined;
}

/** Cumulative tokens used in the day (or hour) window of a budget snapshot, if the update has one. */
function cumulativeTokens(update: Record<string, unknown>): number | undefined {
  for (const holder of [update, obj(update.budget), obj(update.snapshot), obj(update.windows)]) {
    if (!holder) continue;
    for (const window of ['day', 'hour']) {
      const used = obj(obj(holder[window])?.used);
      const tokens = num(used?.tokens);
      if (tokens !== undefined) return tokens;
    }
  }
  return undefined;
}

export class BudgetMeter {
  private latest: Record<string, unknown> | null = null;
  private updatedAt: string | null = null;
  private routerRate: number | undefined;
  private readonly calls: Array<{ ts: number; tokens: number }> = [];
  private readonly growth: Array<{ ts: number; tokens: number }> = [];
  private lastCumulative: number | undefined;
  private sawCallTokens = false;

  observe(event: AuditEvent): void {
    const ts = Date.parse(event.ts);
    if (event.kind === 'inference.done') {
      const tokens = tokensOfCall(event);
      if (tokens !== undefined) {
        this.sawCallTokens = true;
        this.calls.push({ ts, tokens });
      }
      return;
    }
    if (event.kind !== 'budget.update') return;
    const fields: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(event)) if (!ENVELOPE.has(k)) fields[k] = v;
    this.latest = fields;
    this.updatedAt = event.ts;
    this.routerRate = num(fields.tokens_per_min) ?? num(fields.tokens_per_minute);
    const cumulative = cumulativeTokens(fields);
    if (cumulative !== undefined) {
      // A window reset shows as a drop; only growth counts.
      if (this.lastCumulative !== undefined && cumulative > this.lastCumulative) {
        this.growth.push({ ts, tokens: cumulative - this.lastCumulative });
      }
      this.lastCumulative = cumulative;
    }
  }

  status(now: number): BudgetMeterStatus {
    const cutoff = now - MINUTE_MS;
    for (const list of [this.calls, this.growth]) {
      while (list.length > 0 && list[0]!.ts <= cutoff) list.shift();
    }
    let rate: number | null = null;
    let source: BudgetMeterStatus['tokens_per_min_source'] = null;
    if (this.routerRate !== undefined) {
      rate = this.routerRate;
      source = 'router';
    } else if (this.sawCallTokens) {
      rate = this.calls.reduce((a, c) => a + c.tokens, 0);
      source = 'inference.done';
    } else if (this.lastCumulative !== undefined) {
      rate = this.growth.reduce((a, c) => a + c.tokens, 0);
      source = 'budget.update';
    }
    return { latest: this.latest, updated_at: this.updatedAt, tokens_per_min: rate, tokens_per_min_source: source };
  }
}
