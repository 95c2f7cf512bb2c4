/** The audit part: a hash-chained, append-only JSONL event log and its verifier. */
export { AuditLog, AuditUnavailableError, GAP_ACTION, RESERVE_FILE, auditFailureText, describeDisk, freeBytes, readAuditDir } from './log.js';
export type { AuditFailure, AuditHealth, AuditLogOptions, AuditRecovery, AuditReadFilter, AuditWatcher } from './log.js';
export { verifyAudit } from './verify.js';
export type { AuditGap, VerifyResult } from './verify.js';
export { GENESIS_HASH, auditFileName } from './canonical.js';
export { listAuditFiles } from './files.js';
export { EVENT_KINDS, OCSF_CLASS, SAMPLE_KINDS, isEventKind } from './events.js';
export type { AuditEvent, EventInput, EventKind, EventLevel } from './events.js';
