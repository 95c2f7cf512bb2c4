/**
 * Token and USD budgets per hour, per day (UTC windows) and per request, plus soft rate limits.
 * A call reserves its prompt plus its output allowance before it is forwarded (check and reserve in
 * one synchronous step) and settles on its real usage when it ends. Settled window usage and operator
 * overrides persist in the sandbox's budget state file (0600, written atomically) so a restart does
 * not hand the agent a fresh allowance. Reservations of calls in flight are never persisted, but what
 * a call has used is (write-ahead, see `secure`): the router secures a call's prompt before it goes
 * upstream and its usage before streamed tokens reach the caller, so a supervisor killed mid-stream
 * (kill -9) charges, after a restart, at least what was streamed and at most SECURE_LEASE_TOKENS more.
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
/**
 * How far a secured charge runs ahead of a call's usage: a stream rewrites the state file about once
 * per this many tokens, not per delta, and a crash over-charges a call by at most this much.
 */
export const SECURE_LEASE_TOKENS = 256;

interface WindowUsage {
  start: number;
  tokens: number;
  usd: number;
}

interface PersistedState {
  version: 1;
  windows: Record<WindowName, WindowUsage>;
  overrides: Partial<Record<BudgetScope, BudgetCaps>>;
  /**
   * Calls in flight, by key: what each is charged if the supervisor dies before it settles (its
   * secured usage, never its reservation). Folded into the windows when the file is loaded.
   */
  open?: Record<string, { tokens: number; usd: number }>;
}

export interface BudgetWindowSnapshot {
  caps: BudgetCaps;
  /** Settled usage of finished calls (what the state file keeps). */
  used: { tokens: number; usd: number };
  /**
   * Held by calls still running: each one's reservation (prompt + output allowance), or its usage so
   * far when that is larger. Never persisted: a restart drops it instead of charging it.
   */
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

/** Running sum of what calls in flight hold (kept so a check is O(1), not O(calls in flight)). */
interface FlightTotals {
  tokens: number;
  usd: number;
}

/**
 * One call's budget: its reservation (held against the windows from admission until it settles) and
 * its known usage, updated while it streams. What settles into the windows is the usage, never the
 * reservation.
 */
export class CallUsage {
  private usedTokens = 0;
  private usedUsd = 0;
  /** @internal the ledger's running totals while the call is in flight. */
  totals: FlightTotals | undefined;
  /** @internal the key of this call in the state file's `open`, once secured. */
  key: string | undefined;
  /** @internal what the state file charges this call if the supervisor dies now. */
  securedTokens = 0;
  securedUsd = 0;

  constructor(
    totals: FlightTotals | undefined,
    readonly reservedTokens: number,
    readonly reservedUsd: number,
    /** The price of one output token (for the lease a secured charge runs ahead by). */
    readonly outputUsdPerToken = 0,
  ) {
    this.totals = totals;
    if (totals) {
      totals.tokens += reservedTokens;
      totals.usd += reservedUsd;
    }
  }

  get tokens(): number {
    return this.usedTokens;
  }

  get usd(): number {
    return this.usedUsd;
  }

  /** What the call holds against the windows: its reservation, or its usage once that is larger. */
  get heldTokens(): number {
    return Math.max(this.reservedTokens, this.usedTokens);
  }

  get heldUsd(): number {
    return Math.max(this.reservedUsd, this.usedUsd);
  }

  /** Replace the known usage (O(1): adjusts the ledger's running totals). */
  set(tokens: number, usd: number): void {
    const t = this.totals;
    if (t) {
      t.tokens += Math.max(this.reservedTokens, tokens) - this.heldTokens;
      t.usd += Math.max(this.reservedUsd, usd) - this.heldUsd;
    }
    this.usedTokens = tokens;
    this.usedUsd = usd;
  }
}

/** What a call asks to reserve before it is forwarded. */
export interface ReservationRequest {
  /** Estimated prompt tokens and their cost. */
  prompt: { tokens: number; usd: number };
  /** Output allowance (already times the number of choices) and its cost at the output price. */
  output: { tokens: number; usd: number };
  /** The caller set the output limit itself (`max_tokens` …); otherwise it is the configured default. */
  explicit: boolean;
  /**
   * The call streams, so the router cuts it exactly at a cap: a reservation larger than what is
   * left shrinks to what is left instead of being refused (the prompt must still fit).
   */
  cuttable: boolean;
  /** How the output allowance came about, for messages (`max_tokens 500 × n 8`). */
  describe: string;
}

export type ReservationResult = { call: CallUsage; breach?: undefined } | { call?: undefined; breach: BudgetBreach };

function round6(n: number): number {
  return Math.round(n * 1e6) / 1e6;
}

function fmt(n: number, unit: 'tokens' | 'usd'): string {
  return unit === 'usd' ? `$${round6(n)}` : `${Math.round(n).toLocaleString('en-US')} tokens`;
}

export class BudgetLedger {
  private policyCaps: BudgetsConfig;
  private state: PersistedState;
  private readonly inFlight = new Set<CallUsage>();
  private readonly totals: FlightTotals = { tokens: 0, usd: 0 };
  private persistTimer: NodeJS.Timeout | undefined;
  private effectiveCaps: Record<BudgetScope, BudgetCaps> | undefined;
  private dirty = false;
  private nextKey = 0;

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

  /** Start tracking a call with nothing reserved (its usage still counts while in flight). */
  open(): CallUsage {
    const call = new CallUsage(this.totals, 0, 0);
    this.inFlight.add(call);
    return call;
  }

  /**
   * Check and reserve in one synchronous step, so concurrent calls cannot all pass a check that only
   * one of them fits. The reservation is the prompt plus the output allowance; it is refused when it
   * would break a cap (the per-request cap counts this call alone, a window counts settled usage plus
   * what every call in flight holds). For a stream (`cuttable`) only the prompt has to fit and the
   * reservation shrinks to what is left, since the stream is cut exactly at the cap. O(1).
   */
  reserve(r: ReservationRequest): ReservationResult {
    this.roll();
    const units = ['tokens', 'usd'] as const;
    const want = { tokens: r.prompt.tokens + r.output.tokens, usd: r.prompt.usd + r.output.usd };
    const req = this.caps('request');
    for (const unit of units) {
      const cap = req[unit];
      if (cap === undefined) continue;
      if (r.prompt[unit] > cap) return { breach: this.breach('request', unit, cap, r.prompt[unit]) };
      if (!r.explicit) {
        // The configured default is a reservation, not a limit the caller asked for: it shrinks.
        want[unit] = Math.min(want[unit], cap);
        continue;
      }
      if (r.output[unit] > cap) {
        return {
          breach: this.reservationBreach('request', unit, cap, r.output[unit], r,
            `inference budget exceeded: the output this request allows (${r.describe}${unit === 'usd' ? `, ${fmt(r.output.usd, 'usd')} at the output price` : ''}) alone exceeds the per-request cap of ${fmt(cap, unit)}; lower max_tokens`),
        };
      }
      if (want[unit] > cap) {
        if (r.cuttable) want[unit] = cap;
        else return { breach: this.reservationBreach('request', unit, cap, want[unit], r, undefined) };
      }
    }
    for (const name of ['hour', 'day'] as const) {
      const caps = this.caps(name);
      const w = this.state.windows[name];
      for (const unit of units) {
        const cap = caps[unit];
        if (cap === undefined) continue;
        const held = w[unit] + this.totals[unit];
        if (w[unit] >= cap || held + r.prompt[unit] > cap) return { breach: this.breach(name, unit, cap, round6(held + r.prompt[unit])) };
        if (held + want[unit] > cap) {
          if (r.cuttable) want[unit] = cap - held;
          else return { breach: this.reservationBreach(name, unit, cap, round6(held + want[unit]), r, undefined) };
        }
      }
    }
    const call = new CallUsage(this.totals, want.tokens, want.usd, r.output.tokens > 0 ? r.output.usd / r.output.tokens : 0);
    this.inFlight.add(call);
    return { call };
  }

  /**
   * Write-ahead for a call in flight: make sure the state file charges it at least its usage so far
   * (and at least `floor`, e.g. the prompt before it goes upstream), so that a supervisor killed
   * before the call settles still charges it after a restart. Call it before the tokens it covers
   * reach the caller. The secured charge runs SECURE_LEASE_TOKENS ahead of the usage, so the file is
   * rewritten (synchronously: this is the point) about once per lease, not per streamed delta.
   * Never the reservation: a call that streamed 10 tokens of a max_tokens 4096 is not charged 4096.
   */
  secure(call: CallUsage, floor?: { tokens: number; usd: number }): void {
    if (!this.file || !this.inFlight.has(call)) return;
    const tokens = Math.max(call.tokens, floor?.tokens ?? 0);
    const usd = Math.max(call.usd, floor?.usd ?? 0);
    if (call.key !== undefined && tokens <= call.securedTokens && usd <= call.securedUsd) return;
    this.roll();
    call.key ??= `c${++this.nextKey}`;
    call.securedTokens = tokens + SECURE_LEASE_TOKENS;
    // The lease at the output price; a call with no output price re-secures whenever its cost grows.
    call.securedUsd = round6(usd + SECURE_LEASE_TOKENS * call.outputUsdPerToken);
    (this.state.open ??= {})[call.key] = { tokens: call.securedTokens, usd: call.securedUsd };
    this.persist();
  }

  /**
   * Settle a finished call: its reservation is released and its final usage moves into the windows
   * (idempotent). The file is written at most once per PERSIST_DELAY_MS (a synchronous write per call
   * would stall every stream the router relays); `flush()` writes at once and runs on close. Until
   * then the file still charges the call its secured usage (`secure`), which is at least what it
   * used, unless its final usage is larger (a provider's count above the running estimate): then the
   * file is written now. A reservation that a crash leaves unsettled is never charged.
   */
  commit(call: CallUsage): void {
    if (!this.inFlight.delete(call)) return;
    const secured = call.key !== undefined && this.state.open?.[call.key] !== undefined;
    if (secured) delete this.state.open![call.key!];
    this.totals.tokens -= call.heldTokens;
    this.totals.usd -= call.heldUsd;
    call.totals = undefined;
    if (this.inFlight.size === 0) {
      // No rounding drift in the running sums.
      this.totals.tokens = 0;
      this.totals.usd = 0;
    }
    this.roll();
    for (const name of ['hour', 'day'] as const) {
      this.state.windows[name].tokens += call.tokens;
      this.state.windows[name].usd = round6(this.state.windows[name].usd + call.usd);
    }
    if (secured && (call.tokens > call.securedTokens || call.usd > call.securedUsd)) this.persist();
    else this.persistSoon();
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
   * Would `call` (its current usage plus `extra`) break a cap? Window caps count settled usage and
   * what every other call in flight holds (its reservation, or its usage when larger); the request
   * cap counts this call only. A window already at its cap refuses any further call. O(1): runs per
   * streamed delta.
   */
  check(call: CallUsage | undefined, extra: CallUsage | { tokens: number; usd: number }): BudgetBreach | undefined {
    this.roll();
    const own = { tokens: (call?.tokens ?? 0) + extra.tokens, usd: (call?.usd ?? 0) + extra.usd };
    const req = this.caps('request');
    if (req.tokens !== undefined && own.tokens > req.tokens) {
      return this.breach('request', 'tokens', req.tokens, own.tokens);
    }
    if (req.usd !== undefined && own.usd > req.usd) return this.breach('request', 'usd', req.usd, own.usd);
    const mine = call !== undefined && call.totals !== undefined;
    const flightTokens = this.totals.tokens - (mine ? call.heldTokens : 0);
    const flightUsd = this.totals.usd - (mine ? call.heldUsd : 0);
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
    const flightTokens = Math.max(0, this.totals.tokens);
    const flightUsd = Math.max(0, this.totals.usd);
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

  /** A reservation that does not fit: says what it holds, what is left and what to change. */
  private reservationBreach(scope: BudgetScope, unit: 'tokens' | 'usd', cap: number, wouldBe: number, r: ReservationRequest, message: string | undefined): BudgetBreach {
    if (message === undefined) {
      const need = unit === 'usd' ? r.prompt.usd + r.output.usd : r.prompt.tokens + r.output.tokens;
      const parts = unit === 'usd' ? fmt(need, 'usd') : `~${fmt(need, 'tokens')}: ~${r.prompt.tokens.toLocaleString('en-US')} prompt + ${r.describe}`;
      if (scope === 'request') {
        message = `inference budget exceeded: this request reserves ${parts}, more than the per-request cap of ${fmt(cap, unit)}; lower max_tokens`;
      } else {
        const w = this.state.windows[scope];
        const left = Math.max(0, cap - w[unit] - this.totals[unit]);
        message =
          `inference budget exceeded: this request reserves ${parts}, but the ${scope}ly cap of ${fmt(cap, unit)} has ${fmt(left, unit)} left ` +
          `once calls in flight settle (resets in ${this.secondsUntilReset(scope)} s); lower max_tokens, retry when calls in flight finish, ` +
          `or the operator can raise it with \`nemoclaw-tui budget set ${scope} --${unit} <n>\``;
      }
    }
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
      const windows = parsed.windows;
      // Calls the last supervisor did not settle (it died): charged what they had secured, in the
      // windows they ran in (roll() drops those windows if they are over).
      const open = typeof parsed.open === 'object' && parsed.open !== null ? Object.values(parsed.open) : [];
      for (const c of open) {
        const tokens = typeof c?.tokens === 'number' && Number.isFinite(c.tokens) ? Math.max(0, c.tokens) : 0;
        const usd = typeof c?.usd === 'number' && Number.isFinite(c.usd) ? Math.max(0, c.usd) : 0;
        for (const name of ['hour', 'day'] as const) {
          windows[name].tokens += tokens;
          windows[name].usd = round6(windows[name].usd + usd);
        }
      }
      return { version: 1, windows, overrides: parsed.overrides ?? {} };
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
