/**
 * Token and USD budgets per hour, per day (UTC windows) and per request, plus soft rate limits.
 * Window usage and operator overrides persist in the sandbox's budget state file (0600, written
 * atomically) so a restart does not hand the agent a fresh allowance.
 */
import { readFileSync } from 'node:fs';
import type { Clock } from '../shared/clock.js';
import { NemoclawError } from '../shared/errors.js';
import { writeFileAtomicSync } from '../shared/fs.js';
import type { BudgetCaps, BudgetsConfig } from './schema.js';

export type WindowName = 'hour' | 'day';
export type BudgetScope = WindowName | 'request';

const WINDOW_MS: Record<WindowName, number> = { hour: 3_600_000, day: 86_400_000 };
const PERSIST_DELAY_MS = 1000;

interface WindowUsage {
  start: number;
  tokens: number;
  usd: number;
}

interface PersistedState {
  version: 1;
  windows: Record<WindowName, WindowUsage>;
  overrides: Partial<Record<BudgetScope, BudgetCaps>>;
}

export interface BudgetWindowSnapshot {
  caps: BudgetCaps;
  used: { tokens: number; usd: number };
  /** Includes tokens of calls still streaming. */
  in_flight: { tokens: number; usd: number };
  remaining: { tokens: number | null; usd: number | null };
  resets_at: string;
}

export interface BudgetSnapshot {
  hour: BudgetWindowSnapshot;
  day: BudgetWindowSnapshot;
  request: { caps: BudgetCaps };
  overrides: Partial<Record<BudgetScope, BudgetCaps>>;
}

export interface BudgetBreach {
  scope: BudgetScope;
  unit: 'tokens' | 'usd';
  cap: number;
  /** What the call would bring the scope to. */
  would_be: number;
  message: string;
}

/** Usage of one call, updated while it streams. */
export interface CallUsage {
  tokens: number;
  usd: number;
}

function round6(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}

export class BudgetLedger {
  private policyCaps: BudgetsConfig;
  private state: PersistedState;
  private readonly inFlight = new Set<CallUsage>();
  private persistTimer: NodeJS.Timeout | undefined;
  private effectiveCaps: Record<BudgetScope, BudgetCaps> | undefined;
  private dirty = false;

  constructor(
    private readonly clock: Clock,
    caps: BudgetsConfig,
    private readonly file?: string,
  ) {
    this.policyCaps = caps;
    this.state = this.load();
    this.roll();
  }

  setPolicyCaps(caps: BudgetsConfig): void {
    this.policyCaps = caps;
    this.effectiveCaps = undefined;
  }

  /** Policy caps with operator overrides on top (computed once per change: check() runs per streamed delta). */
  caps(scope: BudgetScope): BudgetCaps {
    this.effectiveCaps ??= {
      hour: Object.freeze({ ...this.policyCaps.hour, ...this.state.overrides.hour }),
      day: Object.freeze({ ...this.policyCaps.day, ...this.state.overrides.day }),
      request: Object.freeze({ ...this.policyCaps.request, ...this.state.overrides.request }),
    };
    return this.effectiveCaps[scope];
  }

  /** Operator raises (or lowers) a cap at run time; persisted, survives policy reloads. */
  setOverride(scope: BudgetScope, caps: BudgetCaps): void {
    this.effectiveCaps = undefined;
    this.state.overrides[scope] = { ...this.state.overrides[scope], ...caps };
    this.persist();
  }

  /** Start tracking a call's usage (counted against windows while in flight). */
  open(): CallUsage {
    const usage: CallUsage = { tokens: 0, usd: 0 };
    this.inFlight.add(usage);
    return usage;
  }

  /**
   * Move a finished call's final usage into the windows. The file is written at most once per
   * PERSIST_DELAY_MS (a synchronous write per call would stall every stream the router relays);
   * `flush()` writes at once and runs on close, so a crash loses at most that last second.
   */
  commit(usage: CallUsage): void {
    this.inFlight.delete(usage);
    this.roll();
    for (const name of ['hour', 'day'] as const) {
      this.state.windows[name].tokens += usage.tokens;
      this.state.windows[name].usd = round6(this.state.windows[name].usd + usage.usd);
    }
    this.persistSoon();
  }

  /** Write pending usage to the state file now. */
  flush(): void {
    if (this.persistTimer) {
      clearTimeout(this.persistTimer);
      this.persistTimer = undefined;
    }
    if (this.dirty) this.persist();
  }

  private persistSoon(): void {
    if (!this.file) return;
    this.dirty = true;
    if (this.persistTimer) return;
    this.persistTimer = setTimeout(() => {
      this.persistTimer = undefined;
      if (this.dirty) this.persist();
    }, PERSIST_DELAY_MS);
    this.persistTimer.unref();
  }

  /**
   * Would `call` (its current usage plus `extra`) break a cap? Window caps count committed usage and
   * every call in flight; the request cap counts this call only. A window already at its cap refuses
   * any further call.
   */
  check(call: CallUsage | undefined, extra: CallUsage): BudgetBreach | undefined {
    this.roll();
    const own = { tokens: (call?.tokens ?? 0) + extra.tokens, usd: (call?.usd ?? 0) + extra.usd };
    const req = this.caps('request');
    if (req.tokens !== undefined && own.tokens > req.tokens) {
      return this.breach('request', 'tokens', req.tokens, own.tokens);
    }
    if (req.usd !== undefined && own.usd > req.usd) return this.breach('request', 'usd', req.usd, own.usd);
    let flightTokens = 0;
    let flightUsd = 0;
    for (const u of this.inFlight) {
      if (u === call) continue;
      flightTokens += u.tokens;
      flightUsd += u.usd;
    }
    for (const name of ['hour', 'day'] as const) {
      const caps = this.caps(name);
      const w = this.state.windows[name];
      const tokens = w.tokens + flightTokens + own.tokens;
      const usd = w.usd + flightUsd + own.usd;
      if (caps.tokens !== undefined && (tokens > caps.tokens || w.tokens >= caps.tokens)) {
        return this.breach(name, 'tokens', caps.tokens, tokens);
      }
      if (caps.usd !== undefined && (usd > caps.usd || w.usd >= caps.usd)) {
        return this.breach(name, 'usd', caps.usd, round6(usd));
      }
    }
    return undefined;
  }

  snapshot(): BudgetSnapshot {
    this.roll();
    let flightTokens = 0;
    let flightUsd = 0;
    for (const u of this.inFlight) {
      flightTokens += u.tokens;
      flightUsd += u.usd;
    }
    const win = (name: WindowName): BudgetWindowSnapshot => {
      const caps = this.caps(name);
      const w = this.state.windows[name];
      return {
        caps,
        used: { tokens: w.tokens, usd: round6(w.usd) },
        in_flight: { tokens: flightTokens, usd: round6(flightUsd) },
        remaining: {
          tokens: caps.tokens === undefined ? null : Math.max(0, caps.tokens - w.tokens - flightTokens),
          usd: caps.usd === undefined ? null : round6(Math.max(0, caps.usd - w.usd - flightUsd)),
        },
        resets_at: new Date(w.start + WINDOW_MS[name]).toISOString(),
      };
    };
    return { hour: win('hour'), day: win('day'), request: { caps: this.caps('request') }, overrides: this.state.overrides };
  }

  /** Seconds until the window of a breach resets (for messages). */
  secondsUntilReset(scope: BudgetScope): number {
    if (scope === 'request') return 0;
    const w = this.state.windows[scope];
    return Math.max(0, Math.ceil((w.start + WINDOW_MS[scope] - this.clock.now()) / 1000));
  }

  private breach(scope: BudgetScope, unit: 'tokens' | 'usd', cap: number, wouldBe: number): BudgetBreach {
    const what = unit === 'usd' ? `$${cap}` : `${cap} tokens`;
    const message =
      scope === 'request'
        ? `inference budget exceeded: this request needs more than the per-request cap of ${what}`
        : `inference budget exceeded: the ${scope}ly cap of ${what} is spent (resets in ${this.secondsUntilReset(scope)} s); ` +
          `the operator can raise it with \`nemoclaw-tui budget set ${scope} --${unit} <n>\``;
    return { scope, unit, cap, would_be: wouldBe, message };
  }

  private roll(): void {
    const now = this.clock.now();
    for (const name of ['hour', 'day'] as const) {
      const start = Math.floor(now / WINDOW_MS[name]) * WINDOW_MS[name];
      if (this.state.windows[name].start !== start) this.state.windows[name] = { start, tokens: 0, usd: 0 };
    }
  }

  private fresh(): PersistedState {
    return {
      version: 1,
      windows: { hour: { start: 0, tokens: 0, usd: 0 }, day: { start: 0, tokens: 0, usd: 0 } },
      overrides: {},
    };
  }

  private load(): PersistedState {
    if (!this.file) return this.fresh();
    let text: string;
    try {
      text = readFileSync(this.file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return this.fresh();
      throw new NemoclawError('io', `cannot read budget state ${this.file}: ${(err as Error).message}`, {
        nextStep: 'check the file permissions under $NEMOCLAW_HOME',
      });
    }
    try {
      const parsed = JSON.parse(text) as PersistedState;
      const ok = (w: unknown): w is WindowUsage =>
        typeof w === 'object' && w !== null &&
        ['start', 'tokens', 'usd'].every((k) => typeof (w as Record<string, unknown>)[k] === 'number');
      if (parsed?.version !== 1 || !ok(parsed.windows?.hour) || !ok(parsed.windows?.day)) throw new Error('unexpected shape');
      return { version: 1, windows: parsed.windows, overrides: parsed.overrides ?? {} };
    } catch (err) {
      throw new NemoclawError('io', `budget state ${this.file} is corrupt: ${(err as Error).message}`, {
        nextStep: `inspect or delete ${this.file} (deleting it resets the current hour/day usage to zero)`,
      });
    }
  }

  private persist(): void {
    if (!this.file) return;
    this.dirty = false;
    try {
      writeFileAtomicSync(this.file, JSON.stringify(this.state));
    } catch (err) {
      // Keep serving: the in-memory ledger is still authoritative for this run.
      process.stderr.write(`nemoclaw: cannot persist budget state to ${this.file}: ${(err as Error).message}\n`);
    }
  }
}

/** Soft limits over a sliding minute: answered with 429 + Retry-After. */
export class RateLimiter {
  private readonly calls: Array<{ at: number; tokens: number }> = [];

  constructor(
    private readonly clock: Clock,
    private limits: { requests_per_minute?: number | undefined; tokens_per_minute?: number | undefined },
  ) {}

  setLimits(limits: { requests_per_minute?: number | undefined; tokens_per_minute?: number | undefined }): void {
    this.limits = limits;
  }

  /** Returns seconds to wait, or 0 and records the call. */
  take(tokens: number): number {
    const now = this.clock.now();
    while (this.calls.length > 0 && this.calls[0]!.at <= now - 60_000) this.calls.shift();
    const rpm = this.limits.requests_per_minute;
    const tpm = this.limits.tokens_per_minute;
    if (rpm !== undefined && this.calls.length >= rpm) {
      return Math.max(1, Math.ceil((this.calls[0]!.at + 60_000 - now) / 1000));
    }
    if (tpm !== undefined) {
      let used = 0;
      for (const c of this.calls) used += c.tokens;
      if (used > 0 && used + tokens > tpm) {
        // Wait until enough old calls leave the window.
        let freed = 0;
        for (const c of this.calls) {
          freed += c.tokens;
          if (used - freed + tokens <= tpm) return Math.max(1, Math.ceil((c.at + 60_000 - now) / 1000));
        }
        return 60;
      }
    }
    this.calls.push({ at: now, tokens });
    return 0;
  }
}
