/**
 * The TUI's external store. Events arrive at any rate (10k/s in the bench); they are queued and
 * folded into ring buffers once per batch (every ~80 ms), and only then are subscribers (React,
 * through useSyncExternalStore) told. Each pane reads its own slice, whose identity changes only
 * when that slice changed, so a burst of GPU samples does not re-render the Network pane.
 */
import {
  agentRowFromEvent,
  budgetReading,
  field,
  fsRowFromEvent,
  gpuReadings,
  heldRowFromEvent,
  heldRowFromPending,
  inferenceRowFromRoute,
  inferenceRowWithDone,
  mergeRequestRows,
  netRowFromEvent,
  num,
  pendingIdOf,
  procReading,
  str,
  type AgentRow,
  type BudgetReading,
  type FsRow,
  type GpuReading,
  type HeldRow,
  type InferenceRow,
  type NetRow,
  type ProcReading,
  type TuiEvent,
} from './selectors.js';
import { MISSING } from './format.js';

/** Fixed-capacity buffer; `items()` is newest first and cached until the next push. */
export class Ring<T> {
  private readonly buf: (T | undefined)[];
  private start = 0;
  private size = 0;
  private cached: readonly T[] | undefined = [];

  constructor(readonly capacity: number) {
    this.buf = new Array<T | undefined>(capacity);
  }

  push(item: T): void {
    const end = (this.start + this.size) % this.capacity;
    this.buf[end] = item;
    if (this.size < this.capacity) this.size++;
    else this.start = (this.start + 1) % this.capacity;
    this.cached = undefined;
  }

  /** Replace the newest item matching `pred` among the last `depth` items; false when none. */
  replaceRecent(pred: (item: T) => boolean, next: (item: T) => T, depth: number): boolean {
    for (let i = 0; i < Math.min(depth, this.size); i++) {
      const idx = (this.start + this.size - 1 - i) % this.capacity;
      const item = this.buf[idx];
      if (item !== undefined && pred(item)) {
        this.buf[idx] = next(item);
        this.cached = undefined;
        return true;
      }
    }
    return false;
  }

  get length(): number {
    return this.size;
  }

  items(): readonly T[] {
    if (this.cached) return this.cached;
    const out: T[] = new Array<T>(this.size);
    for (let i = 0; i < this.size; i++) out[i] = this.buf[(this.start + this.size - 1 - i) % this.capacity] as T;
    this.cached = out;
    return out;
  }
}

export type ConnectionState = 'connecting' | 'connected' | 'lost';

export interface HeaderState {
  name: string;
  state: string;
  policyRevision: string;
  /** ms epoch the sandbox started, for uptime. */
  startedAt: number | undefined;
  connection: ConnectionState;
  connectionMessage: string | undefined;
  /** Events seen since attach (all kinds). */
  eventCount: number;
  /** Set while the supervisor cannot write its audit log (it then refuses all egress and inference). */
  auditProblem?: string | undefined;
  /** Set while the sandbox is quarantined (the kill switch): its reason. */
  quarantine?: string | undefined;
}

export interface NetworkState {
  held: readonly HeldRow[];
  history: readonly NetRow[];
}

export interface GpuMeter {
  reading: GpuReading;
  util: readonly number[];
  mem: readonly number[];
}

export interface MetersState {
  gpus: readonly GpuMeter[];
  proc: ProcReading | undefined;
  cpu: readonly number[];
  rss: readonly number[];
  budget: BudgetReading | undefined;
  tokensPerMin: readonly number[];
  budgetExceeded: string | undefined;
  /** Why there are no GPU meters (no NVIDIA GPU, nvidia-smi missing). */
  noGpu?: string | undefined;
}

export interface TuiState {
  header: HeaderState;
  network: NetworkState;
  filesystem: readonly FsRow[];
  inference: readonly InferenceRow[];
  agent: readonly AgentRow[];
  meters: MetersState;
}

export interface StoreTimers {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

export interface TuiStoreOptions {
  name?: string;
  /** How long events are gathered before one flush (and at most one re-render). */
  batchMs?: number;
  /** Rows kept per list pane. */
  capacity?: number;
  /** Samples kept per sparkline. */
  seriesLength?: number;
  timers?: StoreTimers;
}

const realTimers: StoreTimers = {
  setTimeout: (fn, ms) => {
    const t = setTimeout(fn, ms);
    t.unref?.();
    return t;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};

class Series {
  private values: number[] = [];
  private snapshot: readonly number[] = [];
  constructor(private readonly max: number) {}
  push(v: number | undefined): void {
    if (v === undefined) return;
    this.values.push(v);
    if (this.values.length > this.max * 2) this.values = this.values.slice(-this.max);
    this.snapshot = this.values.slice(-this.max);
  }
  get(): readonly number[] {
    return this.snapshot;
  }
}

export class TuiStore {
  private readonly batchMs: number;
  private readonly timers: StoreTimers;
  private readonly seriesLength: number;
  private queue: TuiEvent[] = [];
  private timer: unknown;
  private readonly listeners = new Set<() => void>();

  private header: HeaderState;
  private readonly heldById = new Map<string, HeldRow>();
  private heldSnapshot: readonly HeldRow[] = [];
  private readonly netHistory: Ring<NetRow>;
  private readonly fsRows: Ring<FsRow>;
  private readonly inferenceRows: Ring<InferenceRow>;
  private readonly agentRows: Ring<AgentRow>;
  private readonly gpuSeries = new Map<number, { reading: GpuReading; util: Series; mem: Series }>();
  private proc: ProcReading | undefined;
  private readonly cpuSeries: Series;
  private readonly rssSeries: Series;
  private budget: BudgetReading | undefined;
  private readonly tpmSeries: Series;
  private budgetExceeded: string | undefined;
  /** (time, tokens used) of recent budget updates, for tokens in the last minute. */
  private usage: Array<{ t: number; used: number }> = [];
  private noGpu: string | undefined;
  /**
   * Method and path of recent requests, by request id (net.request) and by pending id (net.held):
   * the proxy's decision events do not repeat them, and a decision row without them says little.
   */
  private readonly requestLines = new Map<string, { method: string; path: string }>();

  private state: TuiState;

  constructor(opts: TuiStoreOptions = {}) {
    this.batchMs = opts.batchMs ?? 80;
    this.timers = opts.timers ?? realTimers;
    const cap = opts.capacity ?? 500;
    this.seriesLength = opts.seriesLength ?? 120;
    this.netHistory = new Ring(cap);
    this.fsRows = new Ring(cap);
    this.inferenceRows = new Ring(cap);
    this.agentRows = new Ring(cap);
    this.cpuSeries = new Series(this.seriesLength);
    this.rssSeries = new Series(this.seriesLength);
    this.tpmSeries = new Series(this.seriesLength);
    this.header = {
      name: opts.name ?? MISSING,
      state: MISSING,
      policyRevision: MISSING,
      startedAt: undefined,
      connection: 'connecting',
      connectionMessage: undefined,
      eventCount: 0,
    };
    this.state = {
      header: this.header,
      network: { held: [], history: [] },
      filesystem: [],
      inference: [],
      agent: [],
      meters: { gpus: [], proc: undefined, cpu: [], rss: [], budget: undefined, tokensPerMin: [], budgetExceeded: undefined },
    };
  }

  // ── useSyncExternalStore contract ──
  subscribe = (listener: () => void): (() => void) => {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  };

  getSnapshot = (): TuiState => this.state;

  /** Queue one event; it becomes visible at the next flush. */
  push(ev: TuiEvent): void {
    this.queue.push(ev);
    if (this.timer === undefined) this.timer = this.timers.setTimeout(() => this.flush(), this.batchMs);
  }

  pushAll(events: Iterable<TuiEvent>): void {
    for (const ev of events) this.push(ev);
  }

  /** Fold every queued event into the state and notify once. */
  flush(): void {
    if (this.timer !== undefined) {
      this.timers.clearTimeout(this.timer);
      this.timer = undefined;
    }
    const batch = this.queue;
    this.queue = [];
    if (batch.length === 0) return;
    const changed = new Set<keyof TuiState>();
    for (const ev of batch) {
      try {
        this.apply(ev, changed);
      } catch {
        // A malformed event must not take the UI down; it is still counted below.
      }
    }
    this.header = { ...this.header, eventCount: this.header.eventCount + batch.length };
    changed.add('header');
    this.commit(changed);
  }

  /** Authoritative list from `GET /v1/pending` (on attach, after reconnects and decisions). */
  setPending(list: readonly Record<string, unknown>[]): void {
    // Fold queued (older) events first, so a replayed backlog cannot count hits twice.
    this.flush();
    const seen = new Set<string>();
    for (const p of list) {
      const row = heldRowFromPending(p);
      if (!row) continue;
      seen.add(row.id);
      const prev = this.heldById.get(row.id);
      this.heldById.set(row.id, prev ? { ...row, heldAt: row.heldAt ?? prev.heldAt, deadline: row.deadline ?? prev.deadline } : row);
    }
    for (const id of [...this.heldById.keys()]) if (!seen.has(id)) this.heldById.delete(id);
    this.commit(new Set(['network']));
  }

  /** Drop a held request right away after the operator decided it (the event confirms later). */
  resolvePending(id: string): void {
    if (this.heldById.delete(id)) this.commit(new Set(['network']));
  }

  setStatus(status: Record<string, unknown>): void {
    const policy = field(status, 'policy');
    const revision =
      policy && typeof policy === 'object'
        ? str(policy as Record<string, unknown>, 'revision', 'number')
        : str(status, 'policy_revision', 'revision');
    const started = field(status, 'started_at', 'startedAt', 'since');
    const startedAt = typeof started === 'number' ? started : typeof started === 'string' ? Date.parse(started) : NaN;
    const sandbox = field(status, 'sandbox');
    const state =
      sandbox && typeof sandbox === 'object'
        ? str(sandbox as Record<string, unknown>, 'state', 'status')
        : str(status, 'state', 'status');
    this.header = {
      ...this.header,
      name: str(status, 'name', 'sandbox') !== MISSING && typeof field(status, 'name', 'sandbox') === 'string' ? str(status, 'name', 'sandbox') : this.header.name,
      // The agent's own state (from sandbox.lifecycle) is more telling than the supervisor's.
      state: this.header.state === MISSING && state !== MISSING ? state : this.header.state,
      policyRevision: revision !== MISSING ? revision : this.header.policyRevision,
      startedAt: Number.isNaN(startedAt) ? this.header.startedAt : startedAt,
    };
    const audit = field(status, 'audit');
    if (audit && typeof audit === 'object') {
      const a = audit as Record<string, unknown>;
      this.header.auditProblem = a.state === 'failing' ? (typeof a.problem === 'string' ? a.problem : 'the audit log cannot be written') : undefined;
    }
    const services = field(status, 'services');
    const q = services && typeof services === 'object' ? (services as Record<string, unknown>).quarantine : undefined;
    if (q && typeof q === 'object') {
      const qr = q as Record<string, unknown>;
      this.header.quarantine = qr.quarantined === true ? (typeof qr.reason === 'string' ? qr.reason : 'no reason given') : undefined;
    }
    const budget = field(status, 'budget');
    if (budget && typeof budget === 'object') this.budget = budgetReading(budget as Record<string, unknown>);
    this.commit(new Set(['header', 'meters']));
  }

  setBudget(budget: Record<string, unknown>): void {
    const reading = budgetReading(budget);
    // GET /v1/budget reports usage, not a rate: keep the rate derived from the live updates.
    if (reading.tokensPerMin === undefined) reading.tokensPerMin = this.budget?.tokensPerMin;
    this.budget = reading;
    this.budgetExceeded = undefined;
    this.commit(new Set(['meters']));
  }

  setConnection(connection: ConnectionState, message?: string): void {
    if (this.header.connection === connection && this.header.connectionMessage === message) return;
    this.header = { ...this.header, connection, connectionMessage: message };
    this.commit(new Set(['header']));
  }

  /** Stop the batch timer (on unmount). */
  dispose(): void {
    if (this.timer !== undefined) this.timers.clearTimeout(this.timer);
    this.timer = undefined;
    this.listeners.clear();
  }

  private apply(ev: TuiEvent, changed: Set<keyof TuiState>): void {
    if (!ev || typeof ev !== 'object' || typeof ev.kind !== 'string') return;
    switch (ev.kind) {
      case 'net.held': {
        const row = heldRowFromEvent(ev);
        if (!row) return;
        this.rememberRequest(`p:${row.id}`, row);
        if (typeof ev.id === 'string') this.rememberRequest(ev.id, row);
        const prev = this.heldById.get(row.id);
        // A request that joins a held entry adds a hit; the entry's own first event (replayed in a
        // backlog after GET /v1/pending) does not.
        this.heldById.set(row.id, prev ? { ...prev, hits: field(ev, 'joined') === false ? prev.hits : prev.hits + 1 } : row);
        changed.add('network');
        return;
      }
      case 'net.request': {
        // A request line is not a verdict (it may be held next): remember it for its decision row.
        const row = netRowFromEvent(ev);
        if (typeof ev.id === 'string') this.rememberRequest(ev.id, row);
        if (field(ev, 'tunnelled') === true) {
          // Inside a tunnel the proxy already admitted, a request gets no decision of its own unless
          // a method/path rule refuses it (that decision then replaces this row).
          this.netHistory.push({ ...row, verdict: 'allow', reason: field(ev, 'tls') === true ? 'in an admitted TLS tunnel' : 'in an admitted tunnel' });
          changed.add('network');
        }
        return;
      }
      case 'net.decision':
      case 'approval.decision': {
        const pid = pendingIdOf(ev);
        if (pid !== undefined && this.heldById.delete(pid)) changed.add('network');
        // A held request's own net.decision with verdict "held" is not history yet.
        const verdict = str(ev, 'decision', 'verdict', 'action');
        if (verdict === 'held' || verdict === 'hold' || verdict === 'pending') return;
        const row = netRowFromEvent(ev);
        const line = ev.kind === 'approval.decision' ? (pid === undefined ? undefined : this.requestLines.get(`p:${pid}`)) : typeof ev.id === 'string' ? this.requestLines.get(ev.id) : undefined;
        if (line && row.method === MISSING) {
          row.method = line.method;
          row.path = line.path;
        }
        // One row per request: a decision on a held request and that request's outcome share the
        // row of its pending id (a later event updates it in place; the cursor stays on it).
        if (pid !== undefined) {
          const key = `pending:${pid}`;
          row.key = key;
          if (!this.netHistory.replaceRecent((r) => r.key === key, (prev) => mergeRequestRows(prev, row), 256)) this.netHistory.push(row);
          changed.add('network');
          return;
        }
        const replaced =
          ev.kind === 'net.decision' &&
          typeof ev.id === 'string' &&
          this.netHistory.replaceRecent((r) => r.raw.kind === 'net.request' && r.raw.id === ev.id && field(r.raw, 'tunnelled') === true, () => row, 64);
        if (!replaced) this.netHistory.push(row);
        changed.add('network');
        return;
      }
      case 'fs.violation':
        this.fsRows.push(fsRowFromEvent(ev));
        changed.add('filesystem');
        return;
      case 'inference.route':
        this.inferenceRows.push(inferenceRowFromRoute(ev));
        changed.add('inference');
        return;
      case 'inference.done': {
        const id = str(ev, 'trace_id', 'request_id', 'id');
        const replaced = this.inferenceRows.replaceRecent(
          (r) => r.id === id && id !== MISSING,
          (r) => inferenceRowWithDone(r, ev),
          200,
        );
        if (!replaced) this.inferenceRows.push(inferenceRowWithDone(undefined, ev));
        changed.add('inference');
        return;
      }
      case 'gpu.sample': {
        if (field(ev, 'available') === false) this.noGpu = str(ev, 'message', 'reason');
        for (const g of gpuReadings(ev)) {
          let s = this.gpuSeries.get(g.index);
          if (!s) {
            s = { reading: g, util: new Series(this.seriesLength), mem: new Series(this.seriesLength) };
            this.gpuSeries.set(g.index, s);
          }
          s.reading = g;
          s.util.push(g.util);
          s.mem.push(g.memUsed !== undefined && g.memTotal ? g.memUsed / g.memTotal : undefined);
        }
        changed.add('meters');
        return;
      }
      case 'proc.sample':
        this.proc = procReading(ev);
        this.cpuSeries.push(this.proc.cpu);
        this.rssSeries.push(this.proc.rss);
        changed.add('meters');
        return;
      case 'budget.update': {
        const reading = budgetReading(ev);
        const t = ev.ts ? Date.parse(ev.ts) : NaN;
        const used = reading.windows.find((w) => w.window === 'day')?.tokensUsed ?? reading.windows[0]?.tokensUsed;
        if (reading.tokensPerMin === undefined && used !== undefined && !Number.isNaN(t)) reading.tokensPerMin = this.tokensInLastMinute(t, used);
        this.budget = reading;
        this.tpmSeries.push(reading.tokensPerMin);
        changed.add('meters');
        return;
      }
      case 'budget.exceeded':
        this.budgetExceeded = str(ev, 'message', 'reason');
        this.agentRows.push(agentRowFromEvent(ev));
        changed.add('meters');
        changed.add('agent');
        return;
      case 'policy.revision':
        this.header = { ...this.header, policyRevision: str(ev, 'number', 'revision') };
        this.agentRows.push(agentRowFromEvent(ev));
        changed.add('header');
        changed.add('agent');
        return;
      case 'sandbox.lifecycle': {
        // `agent.running`, `agent.exited`, … set the state shown in the header; `supervisor.*` do not.
        const action = str(ev, 'action', 'state');
        if (action.startsWith('agent.')) this.header = { ...this.header, state: `agent ${action.slice(6)}` };
        else if (action === 'supervisor.stop') this.header = { ...this.header, state: 'stopping' };
        // A backlog spans restarts: a later start supersedes an earlier stop (and the agent state of before).
        else if (action === 'supervisor.start') this.header = { ...this.header, state: 'running' };
        // The disk under the audit log failed (a live-only event) / the log resumed (its chained gap marker).
        if (action === 'audit.failed' && ev.transient === true) this.header = { ...this.header, auditProblem: str(ev, 'message', 'reason') };
        else if (action === 'audit.gap') this.header = { ...this.header, auditProblem: undefined };
        // The kill switch: on from its event (or the one a restart emits), off when released.
        if (action === 'quarantine' || action === 'quarantine.in_force') this.header = { ...this.header, quarantine: str(ev, 'reason') };
        else if (action === 'quarantine.released') this.header = { ...this.header, quarantine: undefined };
        this.agentRows.push(agentRowFromEvent(ev));
        changed.add('header');
        changed.add('agent');
        return;
      }
      case 'agent.log':
        this.agentRows.push(agentRowFromEvent(ev));
        changed.add('agent');
        return;
      default:
        return;
    }
  }

  /**
   * The router reports usage, not a rate: tokens used over the last minute of updates. A burst of
   * calls a few milliseconds apart is not extrapolated to a per-minute rate; a span longer than a
   * minute is scaled down to one.
   */
  private tokensInLastMinute(t: number, used: number): number | undefined {
    const last = this.usage.at(-1);
    if (last && (used < last.used || t < last.t)) this.usage = []; // the window reset (or a restart)
    this.usage.push({ t, used });
    // Keep one sample at or before the minute's start as the anchor.
    while (this.usage.length > 2 && this.usage[1]!.t <= t - 60_000) this.usage.shift();
    if (this.usage.length > 240) this.usage.splice(1, this.usage.length - 240);
    const anchor = this.usage[0]!;
    if (anchor === this.usage.at(-1)) return this.budget?.tokensPerMin;
    const span = t - anchor.t;
    return span > 60_000 ? ((used - anchor.used) * 60_000) / span : used - anchor.used;
  }

  private rememberRequest(key: string, row: { method: string; path: string }): void {
    if (row.method === MISSING) return;
    this.requestLines.delete(key);
    this.requestLines.set(key, { method: row.method, path: row.path });
    // Bounded: decisions follow their request within moments, so a few hundred lines are plenty.
    if (this.requestLines.size > 512) this.requestLines.delete(this.requestLines.keys().next().value as string);
  }

  private commit(changed: Set<keyof TuiState>): void {
    if (changed.size === 0) return;
    const next: TuiState = { ...this.state };
    if (changed.has('header')) next.header = this.header;
    if (changed.has('network')) {
      this.heldSnapshot = [...this.heldById.values()].sort((a, b) => (a.heldAt ?? 0) - (b.heldAt ?? 0));
      next.network = { held: this.heldSnapshot, history: this.netHistory.items() };
    }
    if (changed.has('filesystem')) next.filesystem = this.fsRows.items();
    if (changed.has('inference')) next.inference = this.inferenceRows.items();
    if (changed.has('agent')) next.agent = this.agentRows.items();
    if (changed.has('meters')) {
      next.meters = {
        gpus: [...this.gpuSeries.values()]
          .sort((a, b) => a.reading.index - b.reading.index)
          .map((s) => ({ reading: s.reading, util: s.util.get(), mem: s.mem.get() })),
        proc: this.proc,
        cpu: this.cpuSeries.get(),
        rss: this.rssSeries.get(),
        budget: this.budget,
        tokensPerMin: this.tpmSeries.get(),
        budgetExceeded: this.budgetExceeded,
        noGpu: this.noGpu,
      };
    }
    this.state = next;
    for (const l of this.listeners) l();
  }
}
