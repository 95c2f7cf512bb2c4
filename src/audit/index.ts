/** The audit part: a hash-chained, append-only JSONL event log and its verifier. */
export { AuditLog, readAuditDir } from './log.js';
export type { AuditLogOptions, AuditRecovery, AuditReadFilter } from './log.js';
export { verifyAudit } from './verify.js';
export type { VerifyResult } from './verify.js';
export { GENESIS_HASH, auditFileName } from './canonical.js';
export { listAuditFiles } from './files.js';
export { EVENT_KINDS, OCSF_CLASS, SAMPLE_KINDS, isEventKind } from './events.js';
export type { AuditEvent, EventInput, EventKind, EventLevel } from './events.js';
