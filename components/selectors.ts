/**
 * Event → row selectors. Every field is read defensively: the event schema is shared, but each
 * part defines its own per-kind fields, and an older or newer supervisor may send fewer or more.
 * A missing field renders as `-`; a malformed event never throws.
 */
import { clockTime, MISSING } from './format.js';

/** The subset of an audit event the TUI relies on (`src/audit/events.ts` AuditEvent). */
export interface TuiEvent {
  kind: string;
  ts?: string;
  seq?: number;
  id?: string;
  level?: string;
  sandbox?: string;
  [field: string]: unknown;
}

export function field(ev: Record<string, unknown>, ...names: string[]): unknown {
  for (const n of names) {
    const v = ev[n];
    if (v !== undefined && v !== null && v !== '') return v;
  }
  return undefined;
}

export function str(ev: Record<string, unknown>, ...names: string[]): string {
  const v = field(ev, ...names);
  if (v === undefined) return MISSING;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'boolean') return String(v);
  try {
    return JSON.stringify(v);
  } catch {
    return MISSING;
  }
}

export function num(ev: Record<string, unknown>, ...names: string[]): number | undefined {
  const v = field(ev, ...names);
  if (typeof v === 'number' && Number.isFinite(v)) return v;
  if (typeof v === 'string' && v.trim() !== '' && Number.isFinite(Number(v))) return Number(v);
  return undefined;
}

function tsMs(ts: string | undefined): number | undefined {
  if (!ts) return undefined;
  const t = Date.parse(ts);
  return Number.isNaN(t) ? undefined : t;
}

// ── Network ─────────────────────────────────────────────────────────────────────────────────────

export interface HeldRow {
  /** The pending id the approval routes take. */
  id: string;
  /** `unattended`: refused while nobody was attached, still listed so it can be always-allowed. */
  state: 'held' | 'unattended';
  host: string;
  port: string;
  binary: string;
  method: string;
  path: string;
  /** ms epoch when first held. */
  heldAt: number | undefined;
  /** ms epoch when it times out (held) or stops being listed (unattended): the time-left column. */
  deadline: number | undefined;
  hits: number;
  raw: Record<string, unknown>;
}

export interface NetRow {
  key: string;
  ts: string | undefined;
  host: string;
  port: string;
  binary: string;
  method: string;
  path: string;
  /** allow | deny | approved once | … */
  verdict: string;
  rule: string;
  reason: string;
  raw: TuiEvent;
}

export function pendingIdOf(ev: Record<string, unknown>): string | undefined {
  const v = field(ev, 'pending_id', 'pendingId', 'pending');
  if (typeof v === 'string' || typeof v === 'number') return String(v);
  return undefined;
}

/** `POST /v1/upload` or `CONNECT host:443` (the egress proxy's request summary). */
function splitRequest(ev: Record<string, unknown>): { method: string; path: string } {
  const method = str(ev, 'method');
  const path = str(ev, 'path');
  if (method !== MISSING) return { method, path };
  const summary = field(ev, 'request');
  if (typeof summary !== 'string') return { method, path };
  const sp = summary.indexOf(' ');
  // `CONNECT host:port` repeats the host column: a tunnel has no path of its own.
  if (sp < 0 || summary.slice(0, sp) === 'CONNECT') return { method: sp < 0 ? summary : 'CONNECT', path: MISSING };
  return { method: summary.slice(0, sp), path: summary.slice(sp + 1) };
}

export function heldRowFromEvent(ev: TuiEvent): HeldRow | undefined {
  const id = pendingIdOf(ev) ?? (typeof ev.id === 'string' ? ev.id : undefined);
  if (!id) return undefined;
  const heldAt = tsMs(typeof field(ev, 'held_at', 'since') === 'string' ? String(field(ev, 'held_at', 'since')) : ev.ts);
  const timeout = num(ev, 'timeout_s');
  const deadline = num(ev, 'deadline');
  return {
    id,
    state: 'held',
    host: str(ev, 'host'),
    port: str(ev, 'port'),
    binary: str(ev, 'binary'),
    ...splitRequest(ev),
    heldAt,
    deadline: deadline ?? (heldAt !== undefined && timeout !== undefined ? heldAt + timeout * 1000 : undefined),
    hits: num(ev, 'hits') ?? 1,
    raw: ev,
  };
}

/** A pending entry without `deadline` (an older supervisor): from its start and `timeout_s`. */
function pendingDeadline(p: Record<string, unknown>, since: unknown): number | undefined {
  const start = typeof since === 'number' ? since : tsMs(typeof since === 'string' ? since : undefined);
  const timeout = num(p, 'timeout_s');
  return start !== undefined && timeout !== undefined ? start + timeout * 1000 : undefined;
}

/** A pending request as returned by the control API (`GET /v1/pending`). */
export function heldRowFromPending(p: Record<string, unknown>): HeldRow | undefined {
  const id = field(p, 'id', 'pending_id');
  if (typeof id !== 'string' && typeof id !== 'number') return undefined;
  const since = field(p, 'held_at', 'since', 'created_at', 'ts');
  return {
    id: String(id),
    state: str(p, 'state') === 'unattended' ? 'unattended' : 'held',
    host: str(p, 'host'),
    port: str(p, 'port'),
    binary: str(p, 'binary'),
    ...splitRequest(p),
    heldAt: typeof since === 'number' ? since : tsMs(typeof since === 'string' ? since : undefined),
    deadline: num(p, 'deadline') ?? pendingDeadline(p, since),
    hits: Math.max(1, num(p, 'waiters', 'hits') ?? 1),
    raw: p,
  };
}

export function netRowFromEvent(ev: TuiEvent): NetRow {
  let verdict = str(ev, 'decision', 'verdict', 'action');
  let reason = str(ev, 'reason');
  if (verdict === MISSING && ev.kind === 'net.request') verdict = 'request';
  if (ev.kind === 'approval.decision') {
    // The operator's answer (once, session, always, deny, deny_always), or what answered instead.
    const by = field(ev, 'by');
    if (by === 'timeout') verdict = 'timeout';
    const latency = num(ev, 'latency_ms');
    // An operator's decision may carry their own words (`deny --reason`, the TUI's deny dialog).
    const words = by === 'cli' || by === 'tui' ? field(ev, 'reason') : undefined;
    if (by !== undefined) reason = `by ${str(ev, 'by')}${latency === undefined ? '' : ` after ${(latency / 1000).toFixed(1)} s`}${typeof words === 'string' ? `: ${words}` : ''}`;
    // The rule the decision wrote, when its scope is wider than the row (any port, *.domain) or it
    // is time-boxed: the row says so (the rules view `r` shows its time left).
    const ruleHost = field(ev, 'rule_host');
    const rulePort = field(ev, 'rule_port');
    const until = field(ev, 'rule_expires_at');
    const wider = (typeof ruleHost === 'string' && ruleHost !== field(ev, 'host')) || rulePort === 'any';
    if (wider) reason += `; rule ${String(ruleHost ?? str(ev, 'host'))}:${rulePort === 'any' ? '*' : String(rulePort ?? str(ev, 'port'))}`;
    if (typeof until === 'string') reason += `; until ${clockTime(until)}`;
  }
  return {
    key: `${ev.kind}:${ev.seq ?? ''}:${ev.id ?? ''}`,
    ts: ev.ts,
    host: str(ev, 'host'),
    port: str(ev, 'port'),
    binary: str(ev, 'binary'),
    ...splitRequest(ev),
    verdict,
    rule: str(ev, 'rule'),
    reason,
    raw: ev,
  };
}

// ── Filesystem ──────────────────────────────────────────────────────────────────────────────────

export interface FsRow {
  key: string;
  ts: string | undefined;
  pid: string;
  binary: string;
  syscall: string;
  path: string;
  errno: string;
  rule: string;
  raw: TuiEvent;
}

export function fsRowFromEvent(ev: TuiEvent): FsRow {
  return {
    key: `${ev.seq ?? ''}:${ev.id ?? ''}`,
    ts: ev.ts,
    pid: str(ev, 'pid'),
    binary: str(ev, 'binary', 'comm'),
    syscall: str(ev, 'syscall'),
    path: str(ev, 'path'),
    errno: str(ev, 'errno'),
    rule: str(ev, 'rule'),
    raw: ev,
  };
}

// ── Inference ───────────────────────────────────────────────────────────────────────────────────

export interface InferenceRow {
  /** Correlates inference.route with its inference.done. */
  id: string;
  ts: string | undefined;
  requested: string;
  provider: string;
  model: string;
  rule: string;
  reason: string;
  /** `email:2 key:1` */
  entities: string;
  redactions: string;
  tokens: string;
  ttft: string;
  total: string;
  status: string;
  raw: TuiEvent;
}

function entitiesText(v: unknown): string {
  if (v === undefined || v === null) return MISSING;
  if (typeof v === 'number') return String(v);
  if (Array.isArray(v)) return v.length === 0 ? '0' : v.map(String).join(' ');
  if (typeof v === 'object') {
    const parts = Object.entries(v as Record<string, unknown>)
      .filter(([, n]) => typeof n === 'number' && n > 0)
      .map(([k, n]) => `${k}:${String(n)}`);
    return parts.length === 0 ? '0' : parts.join(' ');
  }
  return String(v);
}

function tokensText(ev: Record<string, unknown>): string {
  const t = field(ev, 'tokens', 'total_tokens');
  if (typeof t === 'number') return String(t);
  if (t && typeof t === 'object') {
    const o = t as Record<string, unknown>;
    const input = num(o, 'input', 'prompt', 'in');
    const output = num(o, 'output', 'completion', 'out');
    const total = num(o, 'total');
    if (input !== undefined || output !== undefined) return `${input ?? MISSING}/${output ?? MISSING}`;
    if (total !== undefined) return String(total);
  }
  const input = num(ev, 'input_tokens', 'prompt_tokens');
  const output = num(ev, 'output_tokens', 'completion_tokens');
  if (input !== undefined || output !== undefined) return `${input ?? MISSING}/${output ?? MISSING}`;
  return MISSING;
}

function msText(v: number | undefined): string {
  return v === undefined ? MISSING : `${Math.round(v)}ms`;
}

export function inferenceRowFromRoute(ev: TuiEvent): InferenceRow {
  return {
    id: str(ev, 'id', 'trace_id', 'request_id'),
    ts: ev.ts,
    requested: str(ev, 'requested_model', 'requested'),
    provider: str(ev, 'provider'),
    model: str(ev, 'model'),
    rule: str(ev, 'rule', 'route'),
    reason: str(ev, 'reason'),
    entities: entitiesText(field(ev, 'entities')),
    redactions: str(ev, 'redactions'),
    tokens: MISSING,
    ttft: MISSING,
    total: MISSING,
    status: 'routed',
    raw: ev,
  };
}

/** Merge an inference.done into the row of its route (or make a row when the route was missed). */
export function inferenceRowWithDone(prev: InferenceRow | undefined, ev: TuiEvent): InferenceRow {
  const base = prev ?? inferenceRowFromRoute(ev);
  return {
    ...base,
    provider: base.provider !== MISSING ? base.provider : str(ev, 'provider'),
    model: base.model !== MISSING ? base.model : str(ev, 'model'),
    tokens: tokensText(ev),
    ttft: msText(num(ev, 'ttft_ms', 'ttft')),
    total: msText(num(ev, 'total_ms', 'duration_ms')),
    status: str(ev, 'outcome', 'status'),
    redactions: base.redactions !== MISSING ? base.redactions : str(ev, 'redactions'),
    raw: { ...base.raw, ...ev, kind: 'inference.done' },
  };
}

// ── Agent log ───────────────────────────────────────────────────────────────────────────────────

export interface AgentRow {
  key: string;
  ts: string | undefined;
  stream: string;
  line: string;
  level: string;
  raw: TuiEvent;
}

export function agentRowFromEvent(ev: TuiEvent): AgentRow {
  let line: string;
  let stream = str(ev, 'stream');
  if (ev.kind === 'agent.log') {
    line = str(ev, 'line', 'message', 'text');
  } else if (ev.kind === 'sandbox.lifecycle' && field(ev, 'phase') !== undefined && field(ev, 'action') === undefined) {
    // A sandboxed command (`run`, `exec`): its phase, and the command when it starts.
    stream = str(ev, 'role') !== MISSING ? str(ev, 'role') : 'sandbox';
    const phase = str(ev, 'phase');
    const command = field(ev, 'command');
    const detail =
      phase === 'starting' && Array.isArray(command)
        ? `: ${command.map(String).join(' ')}`
        : phase === 'exited'
          ? ` (exit ${str(ev, 'exit_code', 'code')})`
          : phase === 'failed'
            ? `: ${str(ev, 'message', 'reason')}`
            : field(ev, 'pid') !== undefined
              ? ` (pid ${str(ev, 'pid')})`
              : '';
    line = `${phase}${detail}`;
  } else if (ev.kind === 'sandbox.lifecycle') {
    stream = 'sandbox';
    const detail = field(ev, 'reason', 'message', 'detail', 'exit_code', 'code');
    line = `${str(ev, 'action', 'state', 'phase')}${detail === undefined ? '' : ` (${str(ev, 'reason', 'message', 'detail', 'exit_code', 'code')})`}`;
  } else if (ev.kind === 'budget.exceeded') {
    stream = 'budget';
    line = `budget exceeded: ${str(ev, 'message', 'reason')}`;
  } else if (ev.kind === 'policy.revision') {
    stream = 'policy';
    line = `policy revision ${str(ev, 'number', 'revision')} by ${str(ev, 'author')}${field(ev, 'reason') === undefined ? '' : `: ${str(ev, 'reason')}`}`;
  } else {
    line = str(ev, 'line', 'message');
  }
  return { key: `${ev.seq ?? ''}:${ev.kind}:${ev.id ?? ''}`, ts: ev.ts, stream, line, level: ev.level ?? 'info', raw: ev };
}

// ── Meters ──────────────────────────────────────────────────────────────────────────────────────

export interface GpuReading {
  index: number;
  name: string;
  /** 0..1 */
  util: number | undefined;
  memUsed: number | undefined;
  memTotal: number | undefined;
  temp: number | undefined;
  power: number | undefined;
}

/** nvidia-smi style readings: utilisation in % (0-100) or a 0..1 fraction; memory in MiB or bytes. */
export function gpuReadings(ev: TuiEvent): GpuReading[] {
  // Live samples carry `gpus`; the audited minute summaries (what a backlog replays) `summary.gpus`.
  const summary = field(ev, 'summary');
  const list = field(ev, 'gpus') ?? (summary && typeof summary === 'object' ? field(summary as Record<string, unknown>, 'gpus') : undefined);
  if (!Array.isArray(list)) return [];
  const out: GpuReading[] = [];
  list.forEach((g, i) => {
    if (!g || typeof g !== 'object') return;
    const o = g as Record<string, unknown>;
    // Utilisation is a percentage (nvidia-smi's utilization.gpu), memory in MiB.
    const util = num(o, 'util_gpu_pct', 'util_gpu_avg_pct', 'util', 'utilization');
    out.push({
      index: num(o, 'index') ?? i,
      name: str(o, 'name'),
      util: util === undefined ? undefined : util / 100,
      memUsed: num(o, 'mem_used_mib', 'mem_used_max_mib', 'mem_used', 'memory_used'),
      memTotal: num(o, 'mem_total_mib', 'mem_total', 'memory_total'),
      temp: num(o, 'temp_c', 'temp_max_c', 'temp', 'temperature'),
      power: num(o, 'power_w', 'power_avg_w', 'power'),
    });
  });
  return out;
}

export interface ProcReading {
  /** CPU % of one core (may exceed 100). */
  cpu: number | undefined;
  rss: number | undefined;
  memLimit: number | undefined;
  pids: number | undefined;
  /** The workdir's disk: used bytes, limit (undefined when unlimited), and whether a limit is enforced. */
  diskUsed?: number | undefined;
  diskLimit?: number | undefined;
  diskMode?: string | undefined;
}

export function procReading(ev: TuiEvent): ProcReading {
  const summary = field(ev, 'summary');
  if (summary && typeof summary === 'object' && field(ev, 'total') === undefined) {
    // The audited minute summary (a backlog replays these; live samples follow once attached).
    const m = summary as Record<string, unknown>;
    return { cpu: num(m, 'cpu_avg_pct'), rss: num(m, 'rss_max_bytes'), memLimit: undefined, pids: num(m, 'pids_max') };
  }
  const total = field(ev, 'total');
  const disk = { diskUsed: num(ev, 'disk_used_bytes'), diskLimit: num(ev, 'disk_limit_bytes'), diskMode: typeof field(ev, 'disk_mode') === 'string' ? String(field(ev, 'disk_mode')) : undefined };
  if (total && typeof total === 'object') {
    const t = total as Record<string, unknown>;
    return { cpu: num(t, 'cpu_pct', 'cpu'), rss: num(t, 'rss_bytes', 'rss'), memLimit: num(ev, 'mem_limit', 'memory_limit'), pids: num(t, 'pids'), ...disk };
  }
  return {
    cpu: num(ev, 'cpu_pct', 'cpu', 'cpu_percent'),
    rss: num(ev, 'rss_bytes', 'rss', 'memory'),
    memLimit: num(ev, 'mem_limit', 'memory_limit', 'rss_limit'),
    pids: num(ev, 'pids', 'processes'),
    ...disk,
  };
}

export interface BudgetWindow {
  window: string;
  tokensUsed: number | undefined;
  tokensCap: number | undefined;
  costUsed: number | undefined;
  costCap: number | undefined;
}

export interface BudgetReading {
  windows: BudgetWindow[];
  tokensPerMin: number | undefined;
}

function budgetWindow(o: Record<string, unknown>, fallbackName: string): BudgetWindow {
  return {
    window: str(o, 'window', 'name') === MISSING ? fallbackName : str(o, 'window', 'name'),
    tokensUsed: num(o, 'tokens_used', 'tokens', 'used_tokens'),
    tokensCap: num(o, 'tokens_cap', 'tokens_limit', 'max_tokens', 'token_cap'),
    costUsed: num(o, 'cost_used', 'cost', 'cost_usd'),
    costCap: num(o, 'cost_cap', 'cost_limit', 'max_cost', 'max_cost_usd'),
  };
}

/** The privacy router's snapshot: `{hour: {caps: {tokens, usd}, used: {tokens, usd}}, day: {...}}`. */
function routerWindow(name: string, v: unknown): BudgetWindow | undefined {
  if (!v || typeof v !== 'object') return undefined;
  const o = v as Record<string, unknown>;
  const caps = field(o, 'caps');
  const used = field(o, 'used');
  if (!caps && !used) return undefined;
  const c = (caps ?? {}) as Record<string, unknown>;
  const u = (used ?? {}) as Record<string, unknown>;
  return { window: name, tokensUsed: num(u, 'tokens'), tokensCap: num(c, 'tokens'), costUsed: num(u, 'usd'), costCap: num(c, 'usd') };
}

export function budgetReading(ev: Record<string, unknown>): BudgetReading {
  const windows: BudgetWindow[] = [];
  for (const name of ['hour', 'day']) {
    const w = routerWindow(name, ev[name]);
    if (w) windows.push(w);
  }
  if (windows.length > 0) return { windows, tokensPerMin: num(ev, 'tokens_per_min', 'tpm') };
  const w = field(ev, 'windows');
  if (Array.isArray(w)) {
    w.forEach((x, i) => {
      if (x && typeof x === 'object') windows.push(budgetWindow(x as Record<string, unknown>, `w${i}`));
    });
  } else if (w && typeof w === 'object') {
    for (const [name, x] of Object.entries(w as Record<string, unknown>)) {
      if (x && typeof x === 'object') windows.push(budgetWindow(x as Record<string, unknown>, name));
    }
  } else {
    windows.push(budgetWindow(ev, 'total'));
  }
  return { windows, tokensPerMin: num(ev, 'tokens_per_min', 'tpm') };
}

/**
 * One row per request (issue 16): an operator's decision (approval.decision) and what then became
 * of the request (its net.decision, one per waiting client) fold into the row of their pending id.
 * An approval whose request then failed (cannot resolve, SSRF guard, identity changed) reads as
 * `failed`, not as a deny.
 */
export function mergeRequestRows(prev: NetRow, next: NetRow): NetRow {
  const approval = prev.raw.kind === 'approval.decision' ? prev : next.raw.kind === 'approval.decision' ? next : undefined;
  const outcome = approval === prev ? next : approval === next ? prev : undefined;
  if (!approval || !outcome || outcome.raw.kind !== 'net.decision') return { ...prev, raw: prev.raw };
  const allowedByOperator = approval.verdict === 'once' || approval.verdict === 'session' || approval.verdict === 'always';
  const failed = allowedByOperator && outcome.verdict.startsWith('deny');
  return {
    ...approval,
    key: prev.key,
    ts: prev.ts,
    binary: approval.binary !== MISSING ? approval.binary : outcome.binary,
    method: approval.method !== MISSING ? approval.method : outcome.method,
    path: approval.path !== MISSING ? approval.path : outcome.path,
    verdict: failed ? 'failed' : approval.verdict,
    rule: outcome.rule !== MISSING ? outcome.rule : approval.rule,
    reason: failed ? `${approval.verdict} ${approval.reason}, then: ${outcome.reason}` : approval.reason,
    raw: { ...approval.raw, outcome: outcome.verdict, outcome_reason: field(outcome.raw, 'reason') ?? null, request_id: outcome.raw.id ?? null },
  };
}
