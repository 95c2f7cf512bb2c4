import { hash, randomBytes } from 'node:crypto';
import { appendFile, open, type FileHandle } from 'node:fs/promises';
import { join } from 'node:path';
import { systemClock, type Clock } from '../shared/clock.js';
import { NemoclawError } from '../shared/errors.js';
import { ensurePrivateDir } from '../shared/home.js';
import { GENESIS_HASH, RESERVED_FIELDS, auditFileName, safeFieldName } from './canonical.js';
import { OCSF_CLASS, type AuditEvent, type EventInput, type EventKind } from './events.js';
import { listAuditFiles } from './files.js';

export interface AuditLogOptions {
  dir: string;
  sandbox: string;
  clock?: Clock;
  /** Unsynced records are fsynced at most this long after they were written (default 100 ms). */
  fsyncIntervalMs?: number;
  /** Start a new file once the current one would grow past this (default 32 MiB). */
  maxFileBytes?: number;
  /** Background write/fsync failures (the records stay queued and are retried on the next write). */
  onError?: (err: Error) => void;
}

/** What `open` found and repaired at the end of the log. */
export interface AuditRecovery {
  file: string;
  /** Byte offset the file was truncated to (end of the last complete record). */
  offset: number;
  tornBytes: number;
  /** Where the removed bytes were saved, for forensics. */
  savedTo: string;
  /** seq the chain continues from (0 when the log has no records). */
  lastSeq: number;
}

export interface AuditReadFilter {
  sinceSeq?: number | undefined;
  sinceTs?: number | undefined;
  kinds?: EventKind[] | undefined;
}

const DEFAULT_MAX_FILE_BYTES = 32 * 1024 * 1024;
const TAIL_WINDOW = 256 * 1024;
const READ_CHUNK = 1024 * 1024;
/** Lines kept in memory when the disk refuses writes; beyond this the oldest are dropped (verify will show the gap). */
const MAX_QUEUED_LINES = 1_000_000;

interface LastRecord {
  seq: number;
  hash: string;
}

function parseRecordLine(text: string): LastRecord | undefined {
  try {
    const rec = JSON.parse(text) as Record<string, unknown>;
    if (rec && typeof rec.seq === 'number' && typeof rec.hash === 'string' && /^[0-9a-f]{64}$/.test(rec.hash)) {
      return { seq: rec.seq, hash: rec.hash };
    }
  } catch {
    // not a complete record
  }
  return undefined;
}

/** Find the last complete record of a file, reading backwards in growing windows. */
async function scanTail(path: string): Promise<{ size: number; goodEnd: number; last?: LastRecord }> {
  const fh = await open(path, 'r');
  try {
    const size = (await fh.stat()).size;
    let window = Math.min(size, TAIL_WINDOW);
    for (;;) {
      const startPos = size - window;
      const buf = Buffer.allocUnsafe(window);
      await fh.read(buf, 0, window, startPos);
      // `end` is the index of a newline; the line before it is a candidate.
      let end = buf.lastIndexOf(10);
      let needMore = false;
      while (end >= 0) {
        const prevNl = end === 0 ? -1 : buf.lastIndexOf(10, end - 1);
        if (prevNl < 0 && startPos > 0) {
          needMore = true;
          break;
        }
        const rec = parseRecordLine(buf.toString('utf8', prevNl + 1, end));
        if (rec) return { size, goodEnd: startPos + end + 1, last: rec };
        end = prevNl;
      }
      if (!needMore && (end >= 0 || startPos === 0)) return { size, goodEnd: 0 };
      if (end < 0 && startPos > 0) needMore = true;
      if (!needMore) return { size, goodEnd: 0 };
      window = Math.min(size, window * 4);
    }
  } finally {
    await fh.close();
  }
}

/** First record's seq of a file (undefined when empty or unreadable). */
async function firstSeqOf(path: string): Promise<number | undefined> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(256);
    const { bytesRead } = await fh.read(buf, 0, 256, 0);
    const m = /"seq":(\d+)/.exec(buf.toString('utf8', 0, bytesRead));
    return m ? Number(m[1]) : undefined;
  } finally {
    await fh.close();
  }
}

async function forEachLine(path: string, onLine: (text: string) => void): Promise<void> {
  const fh = await open(path, 'r');
  try {
    let buf = Buffer.allocUnsafe(READ_CHUNK);
    let filled = 0;
    for (;;) {
      const { bytesRead } = await fh.read(buf, filled, buf.length - filled, null);
      if (bytesRead === 0) return; // a trailing partial line is not a record
      filled += bytesRead;
      const view = buf.subarray(0, filled);
      let start = 0;
      for (;;) {
        const nl = view.indexOf(10, start);
        if (nl < 0) break;
        onLine(view.toString('utf8', start, nl));
        start = nl + 1;
      }
      if (start > 0) buf.copy(buf, 0, start, filled);
      filled -= start;
      if (filled === buf.length) {
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, filled);
        buf = bigger;
      }
    }
  } finally {
    await fh.close();
  }
}

function safeStringify(value: unknown): string {
  const seen = new WeakSet<object>();
  return JSON.stringify(value, (_key, v: unknown) => {
    if (typeof v === 'bigint') return v.toString();
    if (typeof v === 'object' && v !== null) {
      if (seen.has(v)) return '[circular]';
      seen.add(v);
    }
    return v;
  });
}

/**
 * The append-only, hash-chained audit log (see canonical.ts for the hashed form).
 * `append` is synchronous: it assigns seq and hashes, and queues the line; lines are written in
 * order by one writer and fsynced at most `fsyncIntervalMs` later, and on flush/close.
 */
export class AuditLog {
  readonly dir: string;
  readonly sandbox: string;
  /** Set when `open` found and removed a torn tail. */
  readonly recovery: AuditRecovery | undefined;

  private readonly clock: Clock;
  private readonly fsyncIntervalMs: number;
  private readonly maxFileBytes: number;
  private readonly onError: ((err: Error) => void) | undefined;
  private seq: number;
  private hashValue: string;
  private fh: FileHandle;
  private fileIndex: number;
  private fileBytes: number;
  private pending: string[] = [];
  private drainQueued = false;
  private io: Promise<void> = Promise.resolve();
  private syncTimer: NodeJS.Timeout | undefined;
  private unsynced = false;
  private closed = false;
  private droppedLines = 0;
  /** toISOString is a large share of an append; many appends share a millisecond. */
  private lastMs = Number.NaN;
  private lastIso = '';
  /** Generated ids are `<random per open>-<seq>`: unique, and far cheaper than a UUID per event. */
  private readonly idPrefix = randomBytes(6).toString('hex');

  private constructor(
    opts: AuditLogOptions,
    state: { seq: number; hash: string; fh: FileHandle; fileIndex: number; fileBytes: number },
    recovery: AuditRecovery | undefined,
  ) {
    this.dir = opts.dir;
    this.sandbox = opts.sandbox;
    this.clock = opts.clock ?? systemClock;
    this.fsyncIntervalMs = opts.fsyncIntervalMs ?? 100;
    this.maxFileBytes = opts.maxFileBytes ?? DEFAULT_MAX_FILE_BYTES;
    this.onError = opts.onError;
    this.seq = state.seq;
    this.hashValue = state.hash;
    this.fh = state.fh;
    this.fileIndex = state.fileIndex;
    this.fileBytes = state.fileBytes;
    this.recovery = recovery;
  }

  static async open(opts: AuditLogOptions): Promise<AuditLog> {
    ensurePrivateDir(opts.dir);
    const files = await listAuditFiles(opts.dir);
    let recovery: AuditRecovery | undefined;
    let last: LastRecord | undefined;
    let fileIndex = 1;
    let fileBytes = 0;
    if (files.length > 0) {
      const current = files[files.length - 1]!;
      fileIndex = current.index;
      const tail = await scanTail(current.path);
      fileBytes = tail.goodEnd;
      last = tail.last;
      if (tail.goodEnd < tail.size) {
        const torn = await readRange(current.path, tail.goodEnd, tail.size - tail.goodEnd);
        const savedTo = `${current.path}.torn`;
        await appendFile(savedTo, torn, { mode: 0o600 });
        const fh = await open(current.path, 'r+');
        try {
          await fh.truncate(tail.goodEnd);
          await fh.datasync();
        } finally {
          await fh.close();
        }
        recovery = { file: current.path, offset: tail.goodEnd, tornBytes: torn.length, savedTo, lastSeq: 0 };
      }
      // The newest file may hold no complete record (just rotated, or all torn): continue from an older one.
      for (let i = files.length - 2; !last && i >= 0; i--) last = (await scanTail(files[i]!.path)).last;
      if (recovery) recovery.lastSeq = last?.seq ?? 0;
    }
    const fh = await open(join(opts.dir, auditFileName(fileIndex)), 'a', 0o600);
    return new AuditLog(
      opts,
      { seq: last?.seq ?? 0, hash: last?.hash ?? GENESIS_HASH, fh, fileIndex, fileBytes },
      recovery,
    );
  }

  get lastSeq(): number {
    return this.seq;
  }

  get lastHash(): string {
    return this.hashValue;
  }

  /** Path of the file being written now. */
  get currentFile(): string {
    return join(this.dir, auditFileName(this.fileIndex));
  }

  append(input: EventInput): AuditEvent {
    if (this.closed) {
      throw new NemoclawError('internal', `audit log ${this.dir} is closed; event ${input.kind} was not recorded`);
    }
    const seq = this.seq + 1;
    const kind = input.kind;
    const ms = this.clock.now();
    if (ms !== this.lastMs) {
      this.lastMs = ms;
      this.lastIso = new Date(ms).toISOString();
    }
    const record: Record<string, unknown> = {
      ts: this.lastIso,
      seq,
      kind,
      level: input.level ?? 'info',
      sandbox: this.sandbox,
      id: typeof input.id === 'string' && input.id.length > 0 ? input.id : `${this.idPrefix}-${seq}`,
      ocsf_class: OCSF_CLASS[kind] ?? 0,
    };
    for (const key in input) {
      if (RESERVED_FIELDS.has(key)) continue;
      const value = input[key];
      if (value === undefined) continue;
      record[safeFieldName(key)] = value;
    }
    record.prev_hash = this.hashValue;
    let body: string;
    let event = record;
    try {
      body = JSON.stringify(record);
    } catch {
      // BigInt or a cycle from a producer must not lose the event: store a JSON-safe copy.
      body = safeStringify(record);
      event = JSON.parse(body) as Record<string, unknown>;
    }
    const digest = hash('sha256', body, 'hex');
    this.seq = seq;
    this.hashValue = digest;
    event.hash = digest;
    if (this.pending.length >= MAX_QUEUED_LINES) {
      this.pending.shift();
      this.droppedLines++;
    }
    this.pending.push(`${body.slice(0, -1)},"hash":"${digest}"}\n`);
    if (!this.drainQueued) {
      this.drainQueued = true;
      void this.enqueue(() => this.writePending());
    }
    return event as AuditEvent;
  }

  /**
   * Audited events from disk (all files, oldest first). With `limit`, the newest `limit` matches.
   * Events appended before the call are included.
   */
  async read(filter: AuditReadFilter = {}, limit?: number): Promise<AuditEvent[]> {
    if (!this.closed) await this.enqueue(() => this.writePending()).catch(() => undefined);
    return readAuditDir(this.dir, filter, limit);
  }

  /** Write and fsync everything appended so far. Rejects when the disk refuses. */
  async flush(): Promise<void> {
    if (this.closed) return;
    this.clearSyncTimer();
    await this.enqueue(async () => {
      await this.writePending();
      await this.syncNow();
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      await this.flush();
    } finally {
      this.closed = true;
      this.clearSyncTimer();
      await this.io.catch(() => undefined);
      await this.fh.close().catch(() => undefined);
    }
  }

  /** Run file operations one at a time, in order. */
  private enqueue(op: () => Promise<void>): Promise<void> {
    const run = this.io.then(op);
    this.io = run.catch((err: unknown) => this.report(err));
    return run;
  }

  private report(err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    if (this.onError) this.onError(error);
  }

  private clearSyncTimer(): void {
    if (this.syncTimer) {
      clearTimeout(this.syncTimer);
      this.syncTimer = undefined;
    }
  }

  private async syncNow(): Promise<void> {
    if (!this.unsynced) return;
    await this.fh.datasync();
    this.unsynced = false;
  }

  private async writePending(): Promise<void> {
    this.drainQueued = false;
    if (this.pending.length === 0) return;
    const lines = this.pending;
    this.pending = [];
    let written = 0;
    try {
      let chunk = '';
      let chunkBytes = 0;
      for (const line of lines) {
        const bytes = Buffer.byteLength(line);
        if (this.fileBytes + chunkBytes + bytes > this.maxFileBytes && this.fileBytes + chunkBytes > 0) {
          if (chunkBytes > 0) await this.writeChunk(chunk, chunkBytes);
          written += countLines(chunk);
          chunk = '';
          chunkBytes = 0;
          await this.rotate();
        }
        chunk += line;
        chunkBytes += bytes;
      }
      if (chunkBytes > 0) await this.writeChunk(chunk, chunkBytes);
    } catch (err) {
      // Keep what was not written, in order, for the next attempt.
      this.pending = lines.slice(written).concat(this.pending);
      throw err;
    }
    this.unsynced = true;
    if (!this.syncTimer && this.fsyncIntervalMs >= 0) {
      this.syncTimer = setTimeout(() => {
        this.syncTimer = undefined;
        void this.enqueue(() => this.syncNow());
      }, this.fsyncIntervalMs);
      this.syncTimer.unref();
    }
  }

  private async writeChunk(chunk: string, bytes: number): Promise<void> {
    await this.fh.write(chunk);
    this.fileBytes += bytes;
    this.unsynced = true;
  }

  private async rotate(): Promise<void> {
    await this.syncNow();
    await this.fh.close();
    this.fileIndex++;
    this.fh = await open(join(this.dir, auditFileName(this.fileIndex)), 'a', 0o600);
    this.fileBytes = 0;
  }
}

function countLines(chunk: string): number {
  let n = 0;
  for (let i = chunk.indexOf('\n'); i >= 0; i = chunk.indexOf('\n', i + 1)) n++;
  return n;
}

async function readRange(path: string, offset: number, length: number): Promise<Buffer> {
  const fh = await open(path, 'r');
  try {
    const buf = Buffer.alloc(length);
    await fh.read(buf, 0, length, offset);
    return buf;
  } finally {
    await fh.close();
  }
}

/** Read audited events from an audit directory without opening it for writing. */
export async function readAuditDir(dir: string, filter: AuditReadFilter = {}, limit?: number): Promise<AuditEvent[]> {
  const files = await listAuditFiles(dir);
  const kinds = filter.kinds && filter.kinds.length > 0 ? new Set<string>(filter.kinds) : undefined;
  const sinceSeq = filter.sinceSeq;
  const sinceTs = filter.sinceTs;
  let out: AuditEvent[] = [];
  const cap = limit !== undefined && limit >= 0 ? limit : undefined;
  for (let i = 0; i < files.length; i++) {
    if (sinceSeq !== undefined && i + 1 < files.length) {
      // Skip whole files that end before sinceSeq.
      const nextFirst = await firstSeqOf(files[i + 1]!.path);
      if (nextFirst !== undefined && nextFirst <= sinceSeq + 1) continue;
    }
    await forEachLine(files[i]!.path, (text) => {
      let ev: AuditEvent;
      try {
        ev = JSON.parse(text) as AuditEvent;
      } catch {
        return;
      }
      if (sinceSeq !== undefined && !(ev.seq > sinceSeq)) return;
      if (kinds && !kinds.has(ev.kind)) return;
      if (sinceTs !== undefined && !(Date.parse(ev.ts) >= sinceTs)) return;
      out.push(ev);
      if (cap !== undefined && out.length > cap * 2 + 1024) out = out.slice(-cap);
    });
  }
  return cap !== undefined ? (cap === 0 ? [] : out.slice(-cap)) : out;
}
