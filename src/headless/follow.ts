/**
 * `logs [-f]`: print events one line each (text or the exact JSON schema), following live with
 * reconnect-and-resume when the supervisor restarts. Exits 0 quietly when the reader goes away
 * (`| head`).
 */
import { EVENT_KINDS, SAMPLE_KINDS, type AuditEvent, type EventKind, type EventLevel } from '../audit/events.js';
import type { ControlClient } from '../control/client.js';
import { eventQueryString, type EventQuery } from '../control/client.js';
import { formatEvent, isJournal, shouldColor } from './format.js';

export interface LogsWriter {
  write(chunk: string): boolean;
  isTTY?: boolean | undefined;
  /** Bytes written but not yet taken by the reader (Node streams); followers bound it. */
  readonly writableLength?: number;
  on?(event: 'error', listener: (err: Error) => void): unknown;
  off?(event: 'error', listener: (err: Error) => void): unknown;
  once?(event: 'drain' | 'close', listener: () => void): unknown;
  removeListener?(event: 'drain' | 'close', listener: () => void): unknown;
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
  /**
   * Include the periodic samples (gpu.sample, proc.sample, budget.update). Default: in jsonl output
   * and when `kinds` is given; not in text output, where one per second buried every held request.
   */
  samples?: boolean | undefined;
  /** Only events at this level or above (debug < info < notice < warn < error). */
  minLevel?: EventLevel | undefined;
  approver?: boolean | undefined;
  /**
   * Ring the terminal bell for each new held request (`logs -f --approver`, text output on a
   * terminal, live events only: not for the backlog). Default: on exactly then.
   */
  bell?: boolean | undefined;
  /** Aborts the follow (SIGINT/SIGTERM in the CLI). */
  signal?: AbortSignal | undefined;
  /** Backoff bounds for reconnects (tests shorten them). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
  /**
   * A follower whose reader lets more than this pile up unread (a stalled pipe) stops reading the
   * supervisor until the output drains, then resumes after the last seq it printed: its memory
   * stays bounded and no audited event is lost. Default 8 MiB.
   */
  maxPendingOutputBytes?: number;
}

const LEVEL_RANK: Record<EventLevel, number> = { debug: 0, info: 1, notice: 2, warn: 3, error: 4 };

/** Default bound of unread follower output. */
export const DEFAULT_MAX_PENDING_OUTPUT = 8 * 1024 * 1024;

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
  // An approver on a terminal hears each new hold (not a request joining one, not the backlog).
  const bell = opts.bell ?? (opts.follow && opts.approver === true && opts.output === 'text' && opts.stdout.isTTY === true);
  let live = false;
  const minRank = opts.minLevel === undefined ? 0 : LEVEL_RANK[opts.minLevel];
  const print = (e: AuditEvent): void => {
    if (readerGone) return;
    if (minRank > 0 && LEVEL_RANK[(e.level ?? 'info') as EventLevel] < minRank) return;
    try {
      const ring = bell && live && e.kind === 'net.held' && e.joined !== true;
      opts.stdout.write(`${render(e)}\n${ring ? '\u0007' : ''}`);
    } catch (err) {
      if (!isEpipe(err)) throw err;
      readerGone = true;
      stop.abort();
    }
  };

  // Samples are left out on the supervisor's side, so the backlog's last N are N real events.
  const samples = opts.samples ?? (opts.output === 'jsonl' || opts.kinds !== undefined);
  const kinds = opts.kinds ?? (samples ? undefined : EVENT_KINDS.filter((k) => !SAMPLE_KINDS.has(k)));
  const query: EventQuery = { kinds, sinceTs: opts.sinceTs, approver: opts.approver };
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
    const maxPending = opts.maxPendingOutputBytes ?? DEFAULT_MAX_PENDING_OUTPUT;
    let lastPrinted: number | undefined;
    let pausedSaidAt = Number.NEGATIVE_INFINITY;
    let round = query;
    for (;;) {
      // One follow per round; a round ends early when the reader stalls (see maxPendingOutputBytes).
      const paused = new AbortController();
      const onStop = (): void => paused.abort();
      stop.signal.addEventListener('abort', onStop, { once: true });
      let overflow = false;
      try {
        await opts.client.followEvents(
          round,
          (e) => {
            if (overflow) return;
            print(e);
            if (e.transient !== true) lastPrinted = e.seq;
            if ((opts.stdout.writableLength ?? 0) > maxPending) {
              overflow = true;
              paused.abort();
            }
          },
          {
            signal: paused.signal,
            onBacklogEnd: () => {
              live = true;
            },
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
          },
        );
      } finally {
        stop.signal.removeEventListener('abort', onStop);
      }
      if (!overflow || stop.signal.aborted || readerGone) return 0;
      // A reader that is just slow pauses us again and again: say it once a minute, not every time.
      const now = Date.now();
      if (now - pausedSaidAt >= 60_000) {
        pausedSaidAt = now;
        opts.stderr.write(
          `nemoclaw-tui: output is not being read (more than ${maxPending} bytes waiting); paused, resuming after seq ${lastPrinted ?? 0} once it drains\n`,
        );
      }
      await drained(opts.stdout, stop.signal);
      if (stop.signal.aborted || readerGone) return 0;
      round = { kinds: query.kinds, approver: query.approver, ...(lastPrinted !== undefined ? { since: lastPrinted } : { n: 0 }) };
    }
  } finally {
    opts.signal?.removeEventListener('abort', onOuterAbort);
    // The stdout error listener stays: writes still queued on the pipe may fail with EPIPE after
    // we return, and that must stay quiet too.
  }
}

/** Resolves once the writer has no unread output left (or it closed, or the signal aborted). */
function drained(out: LogsWriter, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted || (out.writableLength ?? 0) === 0 || !out.once) return resolve();
    const done = (): void => {
      out.removeListener?.('drain', done);
      out.removeListener?.('close', done);
      signal.removeEventListener('abort', done);
      resolve();
    };
    out.once?.('drain', done);
    out.once?.('close', done);
    signal.addEventListener('abort', done, { once: true });
  });
}
