/**
 * `logs [-f]`: print events one line each (text or the exact JSON schema), following live with
 * reconnect-and-resume when the supervisor restarts. Exits 0 quietly when the reader goes away
 * (`| head`).
 */
import type { AuditEvent, EventKind } from '../audit/events.js';
import type { ControlClient } from '../control/client.js';
import { eventQueryString, type EventQuery } from '../control/client.js';
import { formatEvent, isJournal, shouldColor } from './format.js';

export interface LogsWriter {
  write(chunk: string): boolean;
  isTTY?: boolean | undefined;
  on?(event: 'error', listener: (err: Error) => void): unknown;
  off?(event: 'error', listener: (err: Error) => void): unknown;
}

export interface LogsOptions {
  client: ControlClient;
  stdout: LogsWriter;
  stderr: LogsWriter;
  env: NodeJS.ProcessEnv;
  follow: boolean;
  n?: number | undefined;
  sinceTs?: number | undefined;
  kinds?: EventKind[] | undefined;
  output: 'text' | 'jsonl';
  approver?: boolean | undefined;
  /** Aborts the follow (SIGINT/SIGTERM in the CLI). */
  signal?: AbortSignal | undefined;
  /** Backoff bounds for reconnects (tests shorten them). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

/** Lines printed when following without -n or --since. */
export const DEFAULT_FOLLOW_BACKLOG = 10;

function isEpipe(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || code === 'ERR_STREAM_WRITE_AFTER_END';
}

/** Runs `logs`; resolves with the exit code. Throws NemoclawError (e.g. not_running) for the CLI to print. */
export async function runLogs(opts: LogsOptions): Promise<number> {
  const color = opts.output === 'text' && shouldColor(opts.stdout, opts.env);
  const journal = opts.output === 'text' && isJournal(opts.env);
  const render = (e: AuditEvent): string =>
    opts.output === 'jsonl' ? JSON.stringify(e) : formatEvent(e, { color, journal });

  const stop = new AbortController();
  const onOuterAbort = (): void => stop.abort();
  opts.signal?.addEventListener('abort', onOuterAbort, { once: true });
  let readerGone = false;
  const onStdoutError = (err: Error): void => {
    if (isEpipe(err)) {
      readerGone = true;
      stop.abort();
    }
  };
  opts.stdout.on?.('error', onStdoutError);
  const print = (e: AuditEvent): void => {
    if (readerGone) return;
    try {
      opts.stdout.write(`${render(e)}\n`);
    } catch (err) {
      if (!isEpipe(err)) throw err;
      readerGone = true;
      stop.abort();
    }
  };

  const query: EventQuery = { kinds: opts.kinds, sinceTs: opts.sinceTs, approver: opts.approver };
  if (opts.n !== undefined) query.n = opts.n;
  else if (opts.follow && opts.sinceTs === undefined) query.n = DEFAULT_FOLLOW_BACKLOG;

  try {
    if (!opts.follow) {
      await opts.client.stream(`/v1/events${eventQueryString(query)}`, (obj) => {
        if (typeof obj.kind === 'string') print(obj as AuditEvent);
      }, { signal: stop.signal });
      return 0;
    }
    let lostSaid = false;
    await opts.client.followEvents(query, print, {
      signal: stop.signal,
      minBackoffMs: opts.minBackoffMs,
      maxBackoffMs: opts.maxBackoffMs,
      onReconnecting: (info) => {
        // One line per outage, not one per attempt.
        if (lostSaid) return;
        lostSaid = true;
        opts.stderr.write(`nemoclaw-tui: lost the supervisor of sandbox "${opts.client.sandbox}" (${info.reason}); reconnecting…\n`);
      },
      onResumed: (info) => {
        lostSaid = false;
        opts.stderr.write(`nemoclaw-tui: reconnected; resuming after seq ${info.afterSeq ?? 0}\n`);
      },
    });
    return 0;
  } finally {
    opts.signal?.removeEventListener('abort', onOuterAbort);
    // The stdout error listener stays: writes still queued on the pipe may fail with EPIPE after
    // we return, and that must stay quiet too.
  }
}
