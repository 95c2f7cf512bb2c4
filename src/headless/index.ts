/** Headless output: `logs [-f]` lines for humans, journald and machines. */
export { runLogs, DEFAULT_FOLLOW_BACKLOG, DEFAULT_MAX_PENDING_OUTPUT } from './follow.js';
export type { LogsOptions, LogsWriter } from './follow.js';
export { formatEvent, shouldColor, isJournal, SYSLOG_PRIORITY } from './format.js';
export type { FormatOptions } from './format.js';
