/**
 * `policy simulate`: replay the network decisions recorded in an audit log against a candidate
 * policy, so an operator sees which recorded requests a new policy would refuse, allow or hold
 * before applying it.
 *
 * Two halves:
 * - the pure core: `collectNetReplay(events)` reads an async iterable of audit events once, pairs
 *   every `net.request` with its `net.decision` (same `id`; the last decision wins, so an L7 refusal
 *   after the L4 admission is what counts) and aggregates identical requests; `evaluateReplay`
 *   decides each distinct request with a compiled candidate. `simulatePolicy` does both. The
 *   candidate is applied after the pass, so one pass also yields the policy revisions and the
 *   "always" rules the log recorded (the default candidate and overlay come from them).
 * - reading: `readAuditEvents(path)` streams an audit directory or file (`.gz` too), checks the hash
 *   chain as it goes, and reports what it skipped and why instead of failing.
 *
 * Verdicts: `allow`, `deny`, `ask` (not in the policy: held for an operator under approvals.mode
 * ask, or refused under mode deny). The recorded verdict is normalised to the same three: a request
 * that was held (then approved or refused by a person, a timeout or a session/always rule) was `ask`
 * at the policy level; a decision by a `session:` rule (a grant that lives only as long as the
 * supervisor) is `ask` too, since a fresh session would ask again.
 */
import { createReadStream } from 'node:fs';
import { readdir, stat } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { createGunzip } from 'node:zlib';
import { hash } from 'node:crypto';
import { parse as parseYaml, stringify as stringifyYaml } from 'yaml';
import type { AuditEvent } from '../audit/index.js';
import { GENESIS_HASH } from '../audit/index.js';
import { NemoclawError } from '../shared/errors.js';
import { sha256Hex } from './canonical.js';
import { compileNetworkMatcher, type NetworkMatcher } from './matcher.js';
import { parsePolicy, validateYaml, type ParseOptions } from './parse.js';
import { overlayFileSchema } from './schema.js';
import type { NetworkDecision, NetworkPolicy, PolicyDocument, PolicyRevision } from './types.js';

export type Verdict = 'allow' | 'deny' | 'ask';
export type Change = 'unchanged' | 'tighten' | 'widen';
/** Which direction of change makes `policy simulate` exit 1. */
export type FailOn = 'tighten' | 'widen' | 'any' | 'none';
export const FAIL_ON_VALUES: readonly FailOn[] = ['tighten', 'widen', 'any', 'none'];

const RANK: Record<Verdict, number> = { deny: 0, ask: 1, allow: 2 };

/** The policy requests are replayed against. */
export interface SimulationCandidate {
  matcher: Pick<NetworkMatcher, 'decide'>;
  /** approvals.mode of the candidate: what an unknown target gets. */
  approvalsMode: 'ask' | 'deny';
}

/** One distinct request (and its recorded verdict), with how often it was seen. */
export interface ReplayRequest {
  host: string;
  port: number;
  binary: string | null;
  /** null for CONNECT (the tunnel itself) and for decisions recorded without a request line. */
  method: string | null;
  path: string | null;
  tunnelled: boolean;
  count: number;
  old: Verdict;
  /** How the recorded verdict came about (e.g. `held, approved (always)`). */
  old_detail: string;
  old_rule: string | null;
  first_seq: number;
  last_seq: number;
}

export interface SkippedGroup {
  /** Why these records were not replayed. */
  reason: string;
  count: number;
  /** A few seq numbers, for looking them up (`nemoclaw-tui logs`). */
  seqs: number[];
}

export interface RecordedRevision {
  number: number;
  sha256: string;
  author: string;
  time: string;
  reason: string | undefined;
  seq: number;
  /** The effective policy text, when the log's diffs could rebuild it (checked against sha256). */
  yaml: string | undefined;
}

/** An "always allow/deny" rule (operator overlay entry). */
export interface RecordedOverlayRule {
  action: 'allow' | 'deny';
  host: string;
  /** `'any'`: every port of the host (port 0 in the merged policy, as store.ts merges it). */
  port: number | 'any';
  binary?: string | undefined;
}

/** What one pass over the audit events collected. */
export interface NetReplay {
  requests: ReplayRequest[];
  /** Individual requests replayed (sum of counts). */
  total: number;
  skipped: SkippedGroup[];
  revisions: RecordedRevision[];
  /** "always" rules granted in the log (approval.decision always / deny_always), last one per target. */
  overlay: RecordedOverlayRule[];
  /** Events read (all kinds). */
  events: number;
  /** true when more distinct paths than `maxRows` were seen and the rest were folded per host. */
  folded: boolean;
}

export interface SimulationRow extends ReplayRequest {
  new: Verdict;
  change: Change;
  /** The rule of the candidate that decided (null: no rule matched). */
  rule: string | null;
  reason: string;
  /** Set when the replay cannot be exact (why), e.g. query matchers (the log records paths without the query). */
  approximate?: string;
}

export interface SimulationSummary {
  requests: number;
  distinct: number;
  unchanged: number;
  newly_refused: number;
  newly_allowed: number;
  now_ask: number;
  /** Distinct rows that became stricter / looser. */
  tightened: number;
  widened: number;
  /** Requests (sum of counts) that became stricter / looser. */
  tightened_requests: number;
  widened_requests: number;
}

export interface SimulationResult {
  rows: SimulationRow[];
  summary: SimulationSummary;
  skipped: SkippedGroup[];
  folded: boolean;
}

export interface CollectOptions {
  /** Distinct rows kept before paths are folded per (host, port, binary, method); default 100 000. */
  maxRows?: number;
  /** Requests waiting for their decision before the oldest is settled; default 10 000. */
  window?: number;
}

const FOLDED_PATH = '(other paths)';
const NOT_POLICY_ERRORS: Record<string, string> = {
  ssrf_denied: 'refused by the address guard (SSRF), not by a policy rule',
  tls_handshake_failed: 'the TLS handshake with the sandbox client failed; no request was seen',
  tls_certificate_failed: 'no certificate could be made for the host; no request was seen',
  tls_termination_unavailable: 'TLS termination was not available; no request was seen',
  l7_unenforceable: 'the client spoke neither TLS nor HTTP in an L7 tunnel; no request was seen',
  upstream_unreachable: 'the upstream could not be reached (not a policy decision)',
};

function str(v: unknown): string | undefined {
  return typeof v === 'string' ? v : undefined;
}

function isPort(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 65535;
}

interface Pending {
  id: string;
  seq: number;
  host: string;
  port: number;
  binary: string | null;
  method: string | null;
  path: string | null;
  tunnelled: boolean;
  held: boolean;
  decision: Record<string, unknown> | undefined;
}

type Classified = { verdict: Verdict; detail: string; rule: string | null } | { skip: string };

/** The recorded verdict of a request in the three-way form. */
function classifyRecorded(d: Record<string, unknown>, held: boolean): Classified {
  const action = str(d.action);
  const rule = str(d.rule) ?? null;
  const pending = str(d.pending_id) !== undefined;
  if (action === 'revoke') return { skip: 'an open connection revoked after a policy change (not a request)' };
  if (action === 'allow') {
    const source = str(d.source);
    if (rule !== null && rule.startsWith('session:')) return { verdict: 'ask', detail: 'allowed by a session grant (asked earlier)', rule };
    if (source === 'approval') return { verdict: 'ask', detail: d.reused === true ? 'approved by an operator (keep-alive reuse)' : 'held, approved by an operator', rule };
    if (pending || held) return { verdict: 'ask', detail: rule !== null && rule.startsWith('overlay:') ? 'held, approved (always)' : 'held, then allowed by a policy change', rule };
    return { verdict: 'allow', detail: d.reused === true ? 'allowed (keep-alive reuse)' : 'allowed', rule };
  }
  if (action === 'deny') {
    const error = str(d.error) ?? 'policy_denied';
    if (d.identity_changed === true) return { skip: 'refused because the client program changed on the connection (identity re-check), not by a rule' };
    if (d.method_override !== undefined) return { skip: 'refused for a method override (header or _method), which the log does not record' };
    const notPolicy = NOT_POLICY_ERRORS[error];
    if (notPolicy) return { skip: `${error}: ${notPolicy}` };
    if (pending || held || error === 'approval_timeout' || error === 'queue_full' || error === 'client_gone') {
      const why = error === 'approval_timeout' ? 'timed out' : error === 'queue_full' ? 'queue full' : error === 'client_gone' ? 'client left' : 'refused';
      return { verdict: 'ask', detail: `held, ${why}`, rule };
    }
    return { verdict: 'deny', detail: d.l7 === true ? 'refused (L7 rule)' : 'refused', rule };
  }
  return { skip: `net.decision with an unknown action ${JSON.stringify(action ?? null)}` };
}

/** Apply a unified diff written by diff.ts to `before`; undefined when it does not apply. */
export function applyUnifiedDiff(before: string, diff: string): string | undefined {
  if (diff === '') return before;
  const a = before.length === 0 ? [] : before.split('\n');
  if (a.length > 0 && a[a.length - 1] === '') a.pop();
  const lines = diff.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const out: string[] = [];
  let ai = 0; // next line of `a` not yet copied (0-based)
  let i = 0;
  while (i < lines.length && !lines[i]!.startsWith('@@')) i++;
  for (; i < lines.length; ) {
    const m = /^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@/.exec(lines[i]!);
    if (!m) return undefined;
    const start = Number(m[1]);
    const count = m[2] === undefined ? 1 : Number(m[2]);
    // An empty range names the line before it.
    const first = count === 0 ? start : start - 1;
    if (first < ai || first > a.length) return undefined;
    while (ai < first) out.push(a[ai++]!);
    i++;
    for (; i < lines.length && !lines[i]!.startsWith('@@'); i++) {
      const l = lines[i]!;
      const t = l[0];
      const s = l.slice(1);
      if (t === ' ' || t === '-') {
        if (a[ai] !== s) return undefined;
        ai++;
        if (t === ' ') out.push(s);
      } else if (t === '+') out.push(s);
      else return undefined;
    }
  }
  while (ai < a.length) out.push(a[ai++]!);
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}

/** The aggregation key: fields joined by NUL (the proxy refuses request targets and hosts that contain one). */
function rowKey(host: string, port: number, binary: string | null, method: string | null, path: string | null, tunnelled: boolean, verdict: Verdict): string {
  return `${host}\0${port}\0${binary ?? '\u0001'}\0${method ?? '\u0001'}\0${path ?? '\u0001'}\0${tunnelled ? 1 : 0}\0${verdict}`;
}

function groupSkip(map: Map<string, SkippedGroup>, reason: string, seq: number): void {
  let g = map.get(reason);
  if (!g) map.set(reason, (g = { reason, count: 0, seqs: [] }));
  g.count++;
  if (g.seqs.length < 5) g.seqs.push(seq);
}

/**
 * One pass over audit events: pair requests and decisions, aggregate identical requests with the
 * same recorded verdict, and note policy revisions and "always" grants. Memory grows with distinct
 * requests (bounded by `maxRows`), not with the log.
 */
export async function collectNetReplay(events: AsyncIterable<AuditEvent | Record<string, unknown>> | Iterable<AuditEvent | Record<string, unknown>>, opts: CollectOptions = {}): Promise<NetReplay> {
  const maxRows = opts.maxRows ?? 100_000;
  const window = opts.window ?? 10_000;
  const rows = new Map<string, ReplayRequest>();
  const skipped = new Map<string, SkippedGroup>();
  const pending = new Map<string, Pending>();
  /** Requests in arrival order (a Map's oldest entry is slow to find after many deletions). */
  let order: Pending[] = [];
  let head = 0;
  /** The recorded verdict of the last CONNECT per target: requests inside a tunnel inherit it. */
  const tunnels = new Map<string, { verdict: Verdict; detail: string; rule: string | null }>();
  const revisions: RecordedRevision[] = [];
  const overlay = new Map<string, RecordedOverlayRule>();
  let total = 0;
  let count = 0;
  let folded = false;
  let lastYaml: string | undefined = undefined;
  let chainKnown = false;

  const add = (p: Omit<Pending, 'id' | 'held' | 'decision'>, c: { verdict: Verdict; detail: string; rule: string | null }, seq: number): void => {
    let path = p.path;
    let key = rowKey(p.host, p.port, p.binary, p.method, path, p.tunnelled, c.verdict);
    let row = rows.get(key);
    if (!row && rows.size >= maxRows && path !== null) {
      folded = true;
      path = FOLDED_PATH;
      key = rowKey(p.host, p.port, p.binary, p.method, path, p.tunnelled, c.verdict);
      row = rows.get(key);
    }
    if (!row) {
      row = { host: p.host, port: p.port, binary: p.binary, method: p.method, path, tunnelled: p.tunnelled, count: 0, old: c.verdict, old_detail: c.detail, old_rule: c.rule, first_seq: seq, last_seq: seq };
      rows.set(key, row);
    }
    row.count++;
    row.last_seq = seq;
    if (c.rule !== null) row.old_rule = c.rule;
    total++;
  };

  const settle = (p: Pending): void => {
    pending.delete(p.id);
    if (!p.decision) {
      if (p.tunnelled) {
        // Requests inside a tunnel have no decision of their own unless refused: they pass under the tunnel's.
        const t = tunnels.get(`${p.host}:${p.port}:${p.binary ?? ''}`);
        add(p, t ? { verdict: t.verdict, detail: `inside a tunnel: ${t.detail}`, rule: t.rule } : { verdict: 'allow', detail: 'inside an admitted tunnel', rule: null }, p.seq);
        return;
      }
      groupSkip(skipped, p.held ? 'held, with no decision recorded (the log ends or the supervisor stopped while it waited)' : 'a request with no decision recorded (the log ends or the supervisor stopped before it decided)', p.seq);
      return;
    }
    const c = classifyRecorded(p.decision, p.held);
    if ('skip' in c) {
      groupSkip(skipped, c.skip, p.seq);
      return;
    }
    const binary = str(p.decision.binary) ?? p.binary;
    if (p.method === 'CONNECT') tunnels.set(`${p.host}:${p.port}:${binary ?? ''}`, c);
    add({ ...p, binary }, c, p.seq);
  };

  const settleAll = (): void => {
    for (const p of [...pending.values()]) settle(p);
    order = [];
    head = 0;
  };

  for await (const raw of events as AsyncIterable<Record<string, unknown>>) {
    count++;
    if (!raw || typeof raw !== 'object') continue;
    const e = raw as Record<string, unknown>;
    const kind = e.kind;
    const seq = typeof e.seq === 'number' ? e.seq : 0;
    const id = str(e.id) ?? '';
    if (kind === 'net.request') {
      const host = str(e.host);
      if (host === undefined || !isPort(e.port)) {
        groupSkip(skipped, 'malformed net.request (no host or port)', seq);
        continue;
      }
      const prev = pending.get(id);
      if (prev) settle(prev);
      const method = str(e.method) ?? null;
      const p: Pending = {
        id,
        seq,
        host: host.toLowerCase(),
        port: e.port,
        binary: str(e.binary) ?? null,
        method,
        path: method === 'CONNECT' ? null : (str(e.path) ?? null),
        tunnelled: e.tunnelled === true,
        held: false,
        decision: undefined,
      };
      if (p.host === 'inference.local') {
        groupSkip(skipped, 'inference traffic (inference.local goes to the privacy router, not the network policy)', seq);
        continue;
      }
      pending.set(id, p);
      order.push(p);
      while (pending.size > window && head < order.length) {
        const oldest = order[head++]!;
        if (pending.get(oldest.id) === oldest) settle(oldest);
      }
      if (head > 65_536) {
        order = order.slice(head);
        head = 0;
      }
      continue;
    }
    if (kind === 'net.held') {
      const p = pending.get(id);
      if (p) p.held = true;
      continue;
    }
    if (kind === 'net.decision') {
      const p = pending.get(id);
      if (p) {
        // Several decisions for one request: the L4 admission, then an L7 refusal; the last counts.
        p.decision = e;
        if (str(e.binary) !== undefined) p.binary = str(e.binary)!;
        continue;
      }
      const host = str(e.host);
      if (host === undefined || !isPort(e.port)) {
        groupSkip(skipped, 'malformed net.decision (no host or port)', seq);
        continue;
      }
      if (host.toLowerCase() === 'inference.local') {
        groupSkip(skipped, 'inference traffic (inference.local goes to the privacy router, not the network policy)', seq);
        continue;
      }
      // A decision without its request line: refusals of a tunnel (not policy verdicts, skipped), an
      // L7 refusal (it names method and path), or an orphan whose request was removed or skipped.
      const method = str(e.method) ?? null;
      const c = classifyRecorded(e, false);
      if (!('skip' in c) && (method === null || str(e.path) === undefined)) {
        groupSkip(skipped, 'a net.decision whose net.request is not in the log (removed, skipped as damaged, or before the log starts)', seq);
        continue;
      }
      settle({ id: `decision-${seq}`, seq, host: host.toLowerCase(), port: e.port, binary: str(e.binary) ?? null, method, path: str(e.path) ?? null, tunnelled: false, held: false, decision: e });
      continue;
    }
    if (kind === 'approval.decision') {
      const decision = str(e.decision);
      const host = str(e.host);
      if ((decision === 'always' || decision === 'deny_always') && host !== undefined && isPort(e.port)) {
        const binary = str(e.rule_binary);
        // The scope the rule was written with (issue 16's chooser: any port, *.domain); a time-boxed
        // or session one is not part of the lasting overlay.
        if (e.rule_lasts === 'timed' || e.rule_lasts === 'restart') continue;
        const ruleHost = str(e.rule_host) ?? host;
        const rulePort = e.rule_port === 'any' ? 'any' : isPort(e.rule_port) ? e.rule_port : e.port;
        const rule: RecordedOverlayRule = { action: decision === 'always' ? 'allow' : 'deny', host: ruleHost.toLowerCase(), port: rulePort, ...(binary ? { binary } : {}) };
        const key = `${rule.host}:${rule.port}:${binary ?? ''}`;
        overlay.delete(key);
        overlay.set(key, rule);
      }
      continue;
    }
    if (kind === 'policy.revision') {
      if (typeof e.number !== 'number' || typeof e.sha256 !== 'string') continue;
      const diff = str(e.diff) ?? '';
      let yaml: string | undefined;
      // The first revision of a log is a diff from nothing; each next one applies to the one before.
      const base = chainKnown ? lastYaml : diff.includes('\n@@ -0,0 ') ? '' : undefined;
      if (base !== undefined) {
        const text = applyUnifiedDiff(base, diff);
        if (text !== undefined && sha256Hex(text) === e.sha256) yaml = text;
      }
      chainKnown = yaml !== undefined;
      lastYaml = yaml;
      revisions.push({ number: e.number, sha256: e.sha256, author: str(e.author) ?? '?', time: str(e.time) ?? str(e.ts) ?? '', reason: str(e.reason), seq, yaml });
      continue;
    }
    if (kind === 'sandbox.lifecycle' && e.action === 'supervisor.start') {
      // Request ids start again at r-1 with every supervisor.
      settleAll();
      tunnels.clear();
    }
  }
  settleAll();
  return { requests: [...rows.values()], total, skipped: [...skipped.values()], revisions, overlay: [...overlay.values()], events: count, folded };
}

function newVerdict(d: NetworkDecision, mode: 'ask' | 'deny'): Verdict {
  if (d.verdict === 'allow') return 'allow';
  if (d.verdict === 'deny') return 'deny';
  return mode === 'ask' ? 'ask' : 'deny';
}

function hasQueryMatchers(d: NetworkDecision): boolean {
  const ep = d.endpoint;
  if (!ep) return false;
  return [...ep.rules, ...ep.deny_rules].some((r) => r.query !== undefined && Object.keys(r.query).length > 0);
}

/** Decide every distinct recorded request with the candidate. */
export function evaluateReplay(replay: NetReplay, candidate: SimulationCandidate): SimulationResult {
  const rows: SimulationRow[] = [];
  const summary: SimulationSummary = { requests: 0, distinct: 0, unchanged: 0, newly_refused: 0, newly_allowed: 0, now_ask: 0, tightened: 0, widened: 0, tightened_requests: 0, widened_requests: 0 };
  for (const r of replay.requests) {
    const l7 = r.method !== null && r.method !== 'CONNECT' && r.path !== null;
    const path = r.path === FOLDED_PATH ? '/' : r.path;
    const d = candidate.matcher.decide({ host: r.host, port: r.port, binary: r.binary ?? undefined, ...(l7 && path !== null ? { method: r.method!, path } : {}) });
    const v = newVerdict(d, candidate.approvalsMode);
    const change: Change = RANK[v] < RANK[r.old] ? 'tighten' : RANK[v] > RANK[r.old] ? 'widen' : 'unchanged';
    const row: SimulationRow = { ...r, new: v, change, rule: d.rule ?? null, reason: d.reason };
    if (l7 && hasQueryMatchers(d)) row.approximate = 'the decisive rule matches on the query, which the log does not record; decided as if there were no query';
    else if (r.path === FOLDED_PATH) row.approximate = 'too many distinct paths: these were folded together and decided as path /';
    rows.push(row);
    summary.requests += r.count;
    summary.distinct++;
    if (change === 'unchanged') summary.unchanged += r.count;
    else if (v === 'deny') summary.newly_refused += r.count;
    else if (v === 'allow') summary.newly_allowed += r.count;
    else summary.now_ask += r.count;
    if (change === 'tighten') {
      summary.tightened++;
      summary.tightened_requests += r.count;
    }
    if (change === 'widen') {
      summary.widened++;
      summary.widened_requests += r.count;
    }
  }
  const order: Record<Change, number> = { tighten: 0, widen: 1, unchanged: 2 };
  rows.sort((a, b) => order[a.change] - order[b.change] || a.host.localeCompare(b.host) || a.port - b.port || (a.method ?? '').localeCompare(b.method ?? '') || (a.path ?? '').localeCompare(b.path ?? '') || a.first_seq - b.first_seq);
  return { rows, summary, skipped: replay.skipped, folded: replay.folded };
}

/** Replay the net.* decisions of `events` against `candidate` (one pass). */
export async function simulatePolicy(events: AsyncIterable<AuditEvent | Record<string, unknown>> | Iterable<AuditEvent | Record<string, unknown>>, candidate: SimulationCandidate, opts: CollectOptions = {}): Promise<SimulationResult> {
  return evaluateReplay(await collectNetReplay(events, opts), candidate);
}

/** Does `result` fail under `failOn`? */
export function simulationFails(summary: SimulationSummary, failOn: FailOn): boolean {
  if (failOn === 'none') return false;
  if (failOn === 'tighten') return summary.tightened > 0;
  if (failOn === 'widen') return summary.widened > 0;
  return summary.tightened > 0 || summary.widened > 0;
}

// ---------------------------------------------------------------------------------------------
// Candidates

/** An overlay rule as the policy store merges it (store.ts ruleToPolicy): no binary = any program. */
function overlayPolicy(rule: RecordedOverlayRule): NetworkPolicy {
  const name = `overlay:${rule.action}:${rule.host}:${rule.port}${rule.binary ? `@${rule.binary}` : ''}`;
  return {
    name,
    action: rule.action,
    endpoints: [{ host: rule.host, ports: [rule.port === 'any' ? 0 : rule.port], rules: [], deny_rules: [], allowed_ips: [] }],
    binaries: [{ path: rule.binary ?? '/**' }],
  };
}

/** `doc` with the operator overlay on top (replacing overlay policies it already has), as the supervisor merges it. */
export function withOverlay(doc: PolicyDocument, rules: readonly RecordedOverlayRule[]): PolicyDocument {
  const policies: Record<string, NetworkPolicy> = {};
  for (const [name, p] of Object.entries(doc.network_policies)) if (!name.startsWith('overlay:')) policies[name] = p;
  for (const rule of rules) {
    const p = overlayPolicy(rule);
    policies[p.name] = p;
  }
  return { ...doc, network_policies: policies };
}

/** The "always" rules already merged into `doc` (policies named `overlay:…`). */
export function overlayRulesOf(doc: PolicyDocument): RecordedOverlayRule[] {
  const out: RecordedOverlayRule[] = [];
  for (const [name, p] of Object.entries(doc.network_policies)) {
    if (!name.startsWith('overlay:')) continue;
    const ep = p.endpoints[0];
    if (!ep) continue;
    const binary = p.binaries[0]?.path;
    for (const port of ep.ports) out.push({ action: p.action, host: ep.host, port: port === 0 ? 'any' : port, ...(binary && binary !== '/**' ? { binary } : {}) });
  }
  return out;
}

/** `doc` without the overlay policies (`overlay:…`). */
export function withoutOverlay(doc: PolicyDocument): PolicyDocument {
  return withOverlay(doc, []);
}

export function candidateOf(doc: PolicyDocument): SimulationCandidate {
  return { matcher: compileNetworkMatcher(doc), approvalsMode: doc.approvals.mode };
}

/**
 * Parse the effective policy text of a recorded revision (canonical YAML: presets are already
 * merged into it, so they are not merged again).
 */
export function parseRevisionYaml(yaml: string, source: string, opts: ParseOptions = {}): PolicyDocument {
  const data = parseYaml(yaml) as Record<string, unknown>;
  const presets = Array.isArray(data?.presets) ? (data.presets as unknown[]) : [];
  if (data && typeof data === 'object') data.presets = [];
  const doc = parsePolicy(stringifyYaml(data, { lineWidth: 0 }), source, opts).doc;
  return { ...doc, presets: presets.filter((p): p is string => typeof p === 'string') };
}

/** The effective YAML of revision `sha256` from a sandbox's policy-history.jsonl (undefined when absent). */
export async function revisionFromHistory(historyFile: string, sha256: string): Promise<string | undefined> {
  let found: string | undefined;
  try {
    for await (const line of lines(createReadStream(historyFile))) {
      if (!line.text.includes(sha256)) continue;
      try {
        const rec = JSON.parse(line.text) as Partial<PolicyRevision> & { yaml?: string };
        if (rec.sha256 === sha256 && typeof rec.yaml === 'string' && sha256Hex(rec.yaml) === sha256) found = rec.yaml;
      } catch {
        // a torn line
      }
    }
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw err;
  }
  return found;
}

/** The rules of an operator overlay file (undefined when there is none); a broken file is a policy_invalid error. */
export function parseOverlayText(text: string, file: string): RecordedOverlayRule[] {
  if (text.trim() === '') return [];
  const result = validateYaml(text, file, overlayFileSchema);
  if (!result.ok) {
    const first = result.issues[0];
    throw new NemoclawError('policy_invalid', `${file}:${first?.line ?? 1}:${first?.col ?? 1}: ${first?.message ?? 'invalid overlay file'}`, {
      nextStep: `fix ${file} (the operator overlay), or simulate without it: --no-overlay`,
      exitCode: 2,
      details: result.issues,
    });
  }
  return result.value.data.rules.map((r) => ({ action: r.action, host: r.host.toLowerCase(), port: r.port, ...(r.binary ? { binary: r.binary } : {}) }));
}

// ---------------------------------------------------------------------------------------------
// Reading audit logs

export interface AuditReadProblem {
  file: string;
  /** 1-based line in file (absent for problems about whole files). */
  line?: number;
  seq?: number;
  /** What is wrong, and what it means for the replay. */
  reason: string;
  /** true: the record was not replayed. false: it was replayed, but the chain around it is broken. */
  skipped: boolean;
}

export interface AuditReadReport {
  files: string[];
  /** Records read whose hash and link were intact. */
  intact: number;
  records: number;
  problems: AuditReadProblem[];
  /** The last file ends in a partial line (a crash while writing); it was not replayed. Not tampering. */
  tornTail: boolean;
  /** No problems other than a torn tail. */
  ok: boolean;
}

const SEGMENT_RE = /^audit-(\d{6,})\.jsonl(\.gz)?$/;
const HASH_MEMBER_START = ',"hash":"';
const HASH_MEMBER_LEN = HASH_MEMBER_START.length + 64 + 2;
const HEX64_RE = /^[0-9a-f]{64}$/;
const MAX_PROBLEMS = 100;

interface Line {
  text: string;
  /** false for the last piece of a stream that did not end in a newline. */
  complete: boolean;
}

/** Lines of a byte stream, a chunk's worth at a time, without loading it whole. */
async function* lineBatches(stream: AsyncIterable<Buffer | string>): AsyncGenerator<Line[]> {
  let rest = '';
  const decoder = new TextDecoder('utf-8');
  for await (const chunk of stream) {
    rest += typeof chunk === 'string' ? chunk : decoder.decode(chunk, { stream: true });
    const batch: Line[] = [];
    let start = 0;
    for (let nl = rest.indexOf('\n'); nl >= 0; nl = rest.indexOf('\n', start)) {
      batch.push({ text: rest.slice(start, nl), complete: true });
      start = nl + 1;
    }
    rest = rest.slice(start);
    if (batch.length > 0) yield batch;
  }
  rest += decoder.decode();
  if (rest.length > 0) yield [{ text: rest, complete: false }];
}

async function* lines(stream: AsyncIterable<Buffer | string>): AsyncGenerator<Line> {
  for await (const batch of lineBatches(stream)) yield* batch;
}

function openSegment(path: string): AsyncIterable<Buffer> {
  const raw = createReadStream(path, { highWaterMark: 1024 * 1024 });
  if (!path.endsWith('.gz')) return raw;
  const gunzip = createGunzip();
  raw.on('error', (err) => gunzip.destroy(err));
  return raw.pipe(gunzip);
}

/** The audit files of `path` (a directory of audit-NNNNNN.jsonl[.gz], or one file), oldest first. */
export async function auditSegments(path: string): Promise<{ files: Array<{ path: string; index: number | undefined }>; isDir: boolean }> {
  let isDir: boolean;
  try {
    isDir = (await stat(path)).isDirectory();
  } catch {
    throw new NemoclawError('not_found', `audit log not found: ${path}`, {
      nextStep: 'pass an audit directory ($NEMOCLAW_HOME/sandboxes/<name>/audit) or one audit-NNNNNN.jsonl file; without --from-audit PATH the sandbox of --name is used',
      exitCode: 2,
    });
  }
  if (!isDir) {
    const m = SEGMENT_RE.exec(basename(path));
    return { files: [{ path, index: m ? Number(m[1]) : undefined }], isDir };
  }
  const names = await readdir(path);
  const byIndex = new Map<number, string>();
  for (const name of names) {
    const m = SEGMENT_RE.exec(name);
    if (!m) continue;
    const index = Number(m[1]);
    // A segment kept both plain and gzipped: read the plain one.
    if (!byIndex.has(index) || !m[2]) byIndex.set(index, join(path, name));
  }
  const files = [...byIndex.entries()].sort((a, b) => a[0] - b[0]).map(([index, p]) => ({ path: p, index }));
  if (files.length === 0) {
    throw new NemoclawError('not_found', `no audit files (audit-NNNNNN.jsonl) in ${path}`, {
      nextStep: 'pass the audit directory of a sandbox that has run ($NEMOCLAW_HOME/sandboxes/<name>/audit), or one audit file',
      exitCode: 2,
    });
  }
  return { files, isDir };
}

/**
 * Stream the records of an audit directory or file, checking the hash chain as they are read (the
 * same checks as `audit verify`). Nothing is thrown for bad records: a line that is not a complete
 * record, or whose hash does not match its content (edited), is skipped; a broken link (records
 * removed, reordered or a file missing) is reported and reading goes on. `report` fills in as the
 * generator runs and is complete when it ends.
 */
export function readAuditEvents(path: string): { events: AsyncGenerator<AuditEvent>; report: AuditReadReport } {
  const report: AuditReadReport = { files: [], intact: 0, records: 0, problems: [], tornTail: false, ok: true };
  const problem = (p: AuditReadProblem): void => {
    report.ok = false;
    if (report.problems.length < MAX_PROBLEMS) report.problems.push(p);
    else if (report.problems.length === MAX_PROBLEMS) report.problems.push({ file: p.file, reason: 'more problems were found; run `nemoclaw-tui audit verify` for the first', skipped: p.skipped });
  };
  async function* run(): AsyncGenerator<AuditEvent> {
    const { files, isDir } = await auditSegments(path);
    report.files = files.map((f) => f.path);
    let expectSeq: number | undefined;
    let prevHash: string | undefined;
    if (isDir || files[0]?.index === 1) {
      expectSeq = 1;
      prevHash = GENESIS_HASH;
    }
    if (isDir) {
      files.forEach((f, i) => {
        const want = i === 0 ? 1 : files[i - 1]!.index! + 1;
        if (f.index !== want) problem({ file: f.path, reason: `audit file ${want === f.index! - 1 ? want : `${want}-${f.index! - 1}`} of the chain is missing before ${basename(f.path)}; the records in it are not replayed`, skipped: false });
      });
    }
    for (let fi = 0; fi < files.length; fi++) {
      const file = files[fi]!.path;
      let lineNo = 0;
      let stream: AsyncIterable<Buffer>;
      try {
        stream = openSegment(file);
        for await (const batch of lineBatches(stream)) for (const line of batch) {
          lineNo++;
          if (!line.complete) {
            if (fi === files.length - 1) report.tornTail = true;
            else problem({ file, line: lineNo, reason: 'partial record in a file that is not the last one; skipped', skipped: true });
            continue;
          }
          if (line.text.trim() === '') continue;
          report.records++;
          let rec: AuditEvent;
          try {
            rec = JSON.parse(line.text) as AuditEvent;
          } catch {
            problem({ file, line: lineNo, ...(expectSeq !== undefined ? { seq: expectSeq } : {}), reason: 'not a JSON record; skipped', skipped: true });
            continue;
          }
          const text = line.text;
          // The line ends with `,"hash":"<64 hex>"}`; the hashed form is the line without that member.
          const at = text.length - HASH_MEMBER_LEN;
          const stored = at > 0 && text.startsWith(HASH_MEMBER_START, at) && text.endsWith('"}') ? text.slice(at + HASH_MEMBER_START.length, text.length - 2) : undefined;
          if (!rec || typeof rec !== 'object' || typeof rec.seq !== 'number' || stored === undefined || !HEX64_RE.test(stored) || typeof rec.prev_hash !== 'string') {
            problem({ file, line: lineNo, reason: 'malformed record (not a line written by the audit log); skipped', skipped: true });
            continue;
          }
          const canonical = `${text.slice(0, at)}}`;
          if (hash('sha256', canonical, 'hex') !== stored) {
            problem({ file, line: lineNo, seq: rec.seq, reason: `hash of seq ${rec.seq} does not match its content (record edited); skipped`, skipped: true });
            // The chain goes on from the hash it claims, so later records are judged on their own.
            expectSeq = rec.seq + 1;
            prevHash = stored;
            continue;
          }
          let linked = true;
          if (expectSeq !== undefined && rec.seq !== expectSeq) {
            linked = false;
            problem({
              file,
              line: lineNo,
              seq: rec.seq,
              reason: rec.seq > expectSeq ? `expected seq ${expectSeq}, found ${rec.seq}: records were removed or a file is missing; replayed what is there` : `expected seq ${expectSeq}, found ${rec.seq}: records were duplicated or reordered; replayed as read`,
              skipped: false,
            });
          } else if (prevHash !== undefined && rec.prev_hash !== prevHash) {
            linked = false;
            problem({ file, line: lineNo, seq: rec.seq, reason: `prev_hash of seq ${rec.seq} does not match the record before it (the record before was rewritten, or records were replaced); replayed, but do not trust the records around it`, skipped: false });
          }
          if (linked) report.intact++;
          expectSeq = rec.seq + 1;
          prevHash = stored;
          yield rec;
        }
      } catch (err) {
        if (err instanceof NemoclawError) throw err;
        problem({ file, ...(lineNo > 0 ? { line: lineNo } : {}), reason: `cannot read the file past line ${lineNo}: ${(err as Error).message}; the rest of it is not replayed`, skipped: true });
      }
    }
  }
  return { events: run(), report };
}
