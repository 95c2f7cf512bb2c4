/**
 * The queue of requests held for an operator's decision. Requests for the same (host, port, binary)
 * while one is held join that entry (one prompt, many waiters). The queue is bounded: when full, the
 * oldest entry is refused with `queue_full`. An entry that was refused because nobody was attached
 * stays listed (no waiters) so the operator can still turn it into an always-allow, until nobody
 * acted on it for `unattendedTtlMs` (default 10 min): then it expires, so a long unattended run does
 * not leave a screenful of stale prompts that only the queue bound would ever clear.
 *
 * A waiter whose client connection closes (or half-closes) while held is withdrawn: it is refused
 * with `client_gone` and never forwarded. When a held entry has no waiters left, its prompt is
 * dropped (`onDropped`, the service emits approval.decision `drop`), and the id is remembered for a
 * while so a late `approve` can say that the client had gone instead of "no such id".
 */
import type { Clock } from '../shared/clock.js';

export type ApprovalDecision = 'once' | 'session' | 'always' | 'deny' | 'deny_always';
export const APPROVAL_DECISIONS: readonly ApprovalDecision[] = ['once', 'session', 'always', 'deny', 'deny_always'];
export type DecidedBy = 'cli' | 'tui' | 'timeout' | 'queue_full' | 'policy' | 'expired' | 'client';

/** How long a refused-while-unattended entry stays listed by default. */
export const DEFAULT_UNATTENDED_TTL_MS = 10 * 60 * 1000;

export interface HoldOutcome {
  allowed: boolean;
  /** once|session|always|deny|deny_always, or approval_timeout / queue_full / policy_allow / policy_deny / shutdown / client_gone. */
  reason: string;
  by: DecidedBy;
  pendingId: string;
  /** The operator's own words for a decision (`deny ID --reason TEXT`), cleaned by cleanDecisionReason. */
  note?: string;
}

/** The longest operator reason kept (characters, after cleaning). */
export const MAX_DECISION_REASON_CHARS = 200;

/**
 * An operator's reason as it may enter the audit log and the refusal body the agent reads: control
 * characters (C0, DEL, C1, so no escape sequences), bidirectional overrides and line separators
 * become spaces, runs of whitespace one space, and it is cut at MAX_DECISION_REASON_CHARS (whole
 * characters, with an ellipsis). Undefined for a non-string or when nothing is left.
 */
export function cleanDecisionReason(raw: unknown): string | undefined {
  if (typeof raw !== 'string') return undefined;
  // eslint-disable-next-line no-control-regex
  const flat = raw.replace(/[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u206f\ufeff\ufff9-\ufffb]/g, ' ').replace(/\s+/g, ' ').trim();
  if (flat === '') return undefined;
  const chars = Array.from(flat);
  return chars.length <= MAX_DECISION_REASON_CHARS ? flat : `${chars.slice(0, MAX_DECISION_REASON_CHARS - 1).join('').trimEnd()}…`;
}

export interface PendingView {
  id: string;
  host: string;
  port: number;
  binary: string | null;
  /** First request that asked (method + path, or CONNECT). */
  request: string;
  /** 'held': requests are waiting; 'unattended': refused while no operator was attached. */
  state: 'held' | 'unattended';
  waiters: number;
  created_at: string;
  /** ms epoch when held requests time out, or when an unattended entry expires. */
  deadline: number | null;
  age_ms: number;
}

interface Entry {
  id: string;
  key: string;
  host: string;
  port: number;
  binary: string | undefined;
  request: string;
  state: 'held' | 'unattended';
  createdMono: number;
  createdAt: number;
  deadline: number | undefined;
  timer: NodeJS.Timeout | undefined;
  waiters: Array<(o: HoldOutcome) => void>;
}

/** How many dropped ids are remembered (for a late decision's answer). */
const DROPPED_MEMORY = 256;

export interface PendingQueueOptions {
  clock: Clock;
  /** Called when an entry ends by timeout, overflow or expiry (the service emits approval.decision). */
  onAutoDecision?: (entry: PendingView, reason: 'approval_timeout' | 'queue_full' | 'expired', latencyMs: number) => void;
  /** Lifetime of an entry refused while nobody was attached (default 10 min). */
  unattendedTtlMs?: number;
  /** Called when a new entry (prompt) appears. */
  onNewEntry?: (entry: PendingView) => void;
  /** Called when a held entry's last waiter withdrew (its client went away): the prompt is gone. */
  onDropped?: (entry: PendingView, latencyMs: number) => void;
}

export interface HoldRequest {
  host: string;
  port: number;
  binary: string | undefined;
  request: string;
  timeoutMs: number;
  maxPending: number;
}

export function pendingKey(host: string, port: number, binary: string | undefined): string {
  return `${host}:${port}:${binary ?? ''}`;
}

export class PendingQueue {
  private readonly entries = new Map<string, Entry>(); // by id, insertion order = age
  private readonly byKey = new Map<string, Entry>();
  private seq = 0;
  private readonly clock: Clock;
  /** Held entries dropped because every client left, by id (bounded, oldest first). */
  private readonly droppedIds = new Map<string, PendingView>();

  constructor(private readonly opts: PendingQueueOptions) {
    this.clock = opts.clock;
  }

  get size(): number {
    return this.entries.size;
  }

  heldCount(): number {
    let n = 0;
    for (const e of this.entries.values()) if (e.state === 'held') n++;
    return n;
  }

  list(): PendingView[] {
    return [...this.entries.values()].map((e) => this.view(e));
  }

  get(id: string): PendingView | undefined {
    const e = this.entries.get(id);
    return e ? this.view(e) : undefined;
  }

  /** The view of a held entry that was dropped because its clients left (undefined otherwise). */
  dropped(id: string): PendingView | undefined {
    return this.droppedIds.get(id);
  }

  /** Forget a dropped entry (a late decision was made on it); returns its view, if it was remembered. */
  forgetDropped(id: string): PendingView | undefined {
    const v = this.droppedIds.get(id);
    this.droppedIds.delete(id);
    return v;
  }

  /**
   * Hold a request; resolves when decided, timed out or pushed out. `joined` tells whether it joined
   * an existing prompt. `withdraw()` (the client went away) refuses this waiter with `client_gone`
   * at once, and drops the prompt when it was the last one; it does nothing once decided.
   */
  hold(req: HoldRequest): { pendingId: string; joined: boolean; outcome: Promise<HoldOutcome>; withdraw: () => void } {
    const key = pendingKey(req.host, req.port, req.binary);
    let entry = this.byKey.get(key);
    let joined = true;
    if (entry && entry.state === 'unattended') {
      // An operator is now attached (or holding is on): turn the record into a live prompt.
      this.remove(entry);
      entry = undefined;
    }
    if (!entry) {
      joined = false;
      entry = this.add(req, 'held');
      const e = entry;
      e.deadline = this.clock.now() + req.timeoutMs;
      e.timer = setTimeout(() => this.autoEnd(e, 'approval_timeout'), req.timeoutMs);
      e.timer.unref?.();
    }
    const e = entry;
    let waiter: ((o: HoldOutcome) => void) | undefined;
    const outcome = new Promise<HoldOutcome>((resolve) => {
      waiter = resolve;
      e.waiters.push(resolve);
    });
    const withdraw = (): void => {
      const i = waiter ? e.waiters.indexOf(waiter) : -1;
      if (i < 0 || this.entries.get(e.id) !== e) return;
      e.waiters.splice(i, 1);
      (waiter as (o: HoldOutcome) => void)({ allowed: false, reason: 'client_gone', by: 'client', pendingId: e.id });
      if (e.waiters.length > 0 || e.state !== 'held') return;
      const latencyMs = this.clock.monotonic() - e.createdMono;
      const view = this.view(e);
      this.remove(e);
      this.droppedIds.set(e.id, view);
      if (this.droppedIds.size > DROPPED_MEMORY) this.droppedIds.delete(this.droppedIds.keys().next().value as string);
      this.opts.onDropped?.(view, latencyMs);
    };
    return { pendingId: e.id, joined, outcome, withdraw };
  }

  /** Record a refused-while-unattended request so the operator can allow it later. */
  recordUnattended(req: Omit<HoldRequest, 'timeoutMs'>): string {
    const key = pendingKey(req.host, req.port, req.binary);
    const existing = this.byKey.get(key);
    if (existing) {
      // Asked again: the entry is still of interest, so its lifetime starts over.
      if (existing.state === 'unattended') this.armExpiry(existing);
      return existing.id;
    }
    const e = this.add({ ...req, timeoutMs: 0 }, 'unattended');
    this.armExpiry(e);
    return e.id;
  }

  private armExpiry(e: Entry): void {
    const ttl = this.opts.unattendedTtlMs ?? DEFAULT_UNATTENDED_TTL_MS;
    if (e.timer) clearTimeout(e.timer);
    e.deadline = this.clock.now() + ttl;
    e.timer = setTimeout(() => this.autoEnd(e, 'expired'), ttl);
    e.timer.unref?.();
  }

  /**
   * Resolve every waiter of entry `id` and remove it. Returns the view (its `waiters`: how many were
   * resolved now) and latency, or undefined.
   */
  resolve(id: string, allowed: boolean, reason: string, by: DecidedBy, note?: string): { entry: PendingView; latencyMs: number } | undefined {
    const e = this.entries.get(id);
    if (!e) return undefined;
    const latencyMs = this.clock.monotonic() - e.createdMono;
    const view = this.view(e);
    this.remove(e);
    const waiters = e.waiters.splice(0);
    for (const w of waiters) w({ allowed, reason, by, pendingId: e.id, ...(note !== undefined ? { note } : {}) });
    return { entry: view, latencyMs };
  }

  /** Entries matching a predicate (used to re-evaluate held entries after a policy change). */
  find(pred: (v: PendingView) => boolean): PendingView[] {
    return this.list().filter(pred);
  }

  /** Refuse everything (supervisor shutdown). */
  clear(reason: string): void {
    for (const e of [...this.entries.values()]) {
      this.remove(e);
      for (const w of e.waiters) w({ allowed: false, reason, by: 'policy', pendingId: e.id });
    }
  }

  private add(req: HoldRequest, state: 'held' | 'unattended'): Entry {
    const max = Math.max(1, req.maxPending);
    while (this.entries.size >= max) {
      const oldest = this.entries.values().next().value as Entry;
      this.autoEnd(oldest, 'queue_full');
    }
    const id = `p-${++this.seq}`;
    const e: Entry = {
      id,
      key: pendingKey(req.host, req.port, req.binary),
      host: req.host,
      port: req.port,
      binary: req.binary,
      request: req.request,
      state,
      createdMono: this.clock.monotonic(),
      createdAt: this.clock.now(),
      deadline: undefined,
      timer: undefined,
      waiters: [],
    };
    this.entries.set(id, e);
    this.byKey.set(e.key, e);
    if (state === 'held') this.opts.onNewEntry?.(this.view(e));
    return e;
  }

  private autoEnd(e: Entry, reason: 'approval_timeout' | 'queue_full' | 'expired'): void {
    if (!this.entries.has(e.id)) return;
    const res = this.resolve(e.id, false, reason, reason === 'approval_timeout' ? 'timeout' : reason);
    if (res) this.opts.onAutoDecision?.(res.entry, reason, res.latencyMs);
  }

  private remove(e: Entry): void {
    if (e.timer) clearTimeout(e.timer);
    this.entries.delete(e.id);
    if (this.byKey.get(e.key) === e) this.byKey.delete(e.key);
  }

  private view(e: Entry): PendingView {
    return {
      id: e.id,
      host: e.host,
      port: e.port,
      binary: e.binary ?? null,
      request: e.request,
      state: e.state,
      waiters: e.waiters.length,
      created_at: new Date(e.createdAt).toISOString(),
      deadline: e.deadline ?? null,
      age_ms: Math.round(this.clock.monotonic() - e.createdMono),
    };
  }
}
