/**
 * The one event schema shared by the audit log, the control API, `logs -f --output jsonl` and the TUI.
 * `{ts, seq, kind, level, sandbox, id, ...fields, prev_hash, hash}` (DESIGN.md "Events").
 */
export const EVENT_KINDS = [
  'net.request',
  'net.held',
  'net.decision',
  'net.dns',
  'fs.violation',
  'inference.route',
  'inference.done',
  'budget.update',
  'budget.exceeded',
  'gpu.sample',
  'proc.sample',
  'policy.revision',
  'sandbox.lifecycle',
  'agent.log',
  'approval.decision',
] as const;

export type EventKind = (typeof EVENT_KINDS)[number];

export type EventLevel = 'debug' | 'info' | 'notice' | 'warn' | 'error';

/**
 * OCSF class ids, so the log can be shipped to a SIEM as-is.
 * 4001 Network Activity, 4002 HTTP Activity, 4003 DNS Activity, 1001 File System Activity, 1007 Process Activity,
 * 6003 API Activity, 5019 Device Config State Change / 5001 Device Inventory Info for samples,
 * 6002 Application Lifecycle, 3003 Authorization (approvals), 2004 Detection Finding (budget).
 */
export const OCSF_CLASS: Record<EventKind, number> = {
  'net.request': 4002,
  'net.held': 4002,
  'net.decision': 4001,
  'net.dns': 4003,
  'fs.violation': 1001,
  'inference.route': 6003,
  'inference.done': 6003,
  'budget.update': 6003,
  'budget.exceeded': 2004,
  'gpu.sample': 5001,
  'proc.sample': 1007,
  'policy.revision': 5019,
  'sandbox.lifecycle': 6002,
  'agent.log': 6002,
  'approval.decision': 3003,
};

/** What a producer hands to the event sink; the sink adds ts, seq, sandbox, id, hashes. */
export interface EventInput {
  kind: EventKind;
  level?: EventLevel;
  /** Correlation id (request id, trace id, sandbox pid…); generated when absent. */
  id?: string;
  [field: string]: unknown;
}

/** A record as stored in the audit log and sent to subscribers. */
export interface AuditEvent {
  /** ISO-8601 UTC with milliseconds. */
  ts: string;
  seq: number;
  kind: EventKind;
  level: EventLevel;
  sandbox: string;
  id: string;
  ocsf_class: number;
  prev_hash: string;
  hash: string;
  [field: string]: unknown;
}

export function isEventKind(s: string): s is EventKind {
  return (EVENT_KINDS as readonly string[]).includes(s);
}

/**
 * The audit log's own `sandbox.lifecycle` actions (log.ts):
 * - `audit.failed` — live only (`transient: true`, level error, `critical: true`): a write or fsync
 *   failed (`reason`: errno, `message` names the log and the disk); the supervisor fails closed.
 * - `audit.gap` — chained: the marker written when the log resumed (or at close, from the reserve):
 *   `lost_from_seq`..`lost_to_seq` were assigned but never written (`lost_records`, `lost_kinds`,
 *   `reason`, `failed_at`, `resumed`). Its seq is `lost_to_seq + 1` and its prev_hash the hash of the
 *   record before `lost_from_seq`, so `audit verify` reports a gap, not tampering.
 * - `audit.recovered` — a torn last record was cut off at start (kept in `<file>.torn`).
 */

/** Sampled kinds go to subscribers at full rate but are summarised in the audit log (see meters). */
export const SAMPLE_KINDS: ReadonlySet<EventKind> = new Set(['gpu.sample', 'proc.sample', 'budget.update']);
