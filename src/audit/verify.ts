import { hash } from 'node:crypto';
import { open, stat } from 'node:fs/promises';
import { basename } from 'node:path';
import { NemoclawError } from '../shared/errors.js';
import { AUDIT_FILE_RE, GENESIS_HASH, HASH_MEMBER_LEN, TAIL_LEN } from './canonical.js';
import { listAuditFiles } from './files.js';

export interface VerifyResult {
  ok: boolean;
  /** Records whose hash and link were checked and found intact. */
  records: number;
  files: string[];
  /** The first seq at which the chain is broken (the expected seq at that position). */
  firstBadSeq?: number;
  reason?: string;
  file?: string;
  /** 1-based line in `file`. */
  line?: number;
  /** The last file ends in a partial line (a crash before the line was complete); not a failure. */
  tornTail?: boolean;
  /** seq and hash of the last intact record. */
  lastSeq?: number;
  lastHash?: string;
  /**
   * Gaps the log itself recorded: a chained `audit.gap` marker (written when the disk refused
   * writes and the log failed closed) that names exactly the missing seqs. Not tampering: the chain
   * links across it. `audit verify` still exits 0, and prints a warning naming each gap.
   */
  gaps?: AuditGap[];
}

export interface AuditGap {
  /** First and last seq that were never written. */
  from: number;
  to: number;
  /** errno of the failed write (ENOSPC...). */
  reason: string;
  /** When the log started failing (ISO), from the marker. */
  failedAt?: string;
  /** seq of the marker, and where it is. */
  markerSeq: number;
  file: string;
  line: number;
}

const READ_CHUNK = 4 * 1024 * 1024;
const LINE_START = Buffer.from('{"ts":"');
const SEQ_MARK = Buffer.from('","seq":');
const PREV_MARK = Buffer.from(',"prev_hash":"');
const HASH_MARK = Buffer.from('","hash":"');
const CLOSE_BRACE = 0x7d;
const COMMA = 0x2c;

interface ChainState {
  expectSeq: number | undefined;
  gaps: AuditGap[];
  file: string;
  lineNo: number;
  /** Hex hash of the last intact record as 64 ASCII bytes, so links are checked without allocating strings. */
  prevHashBytes: Buffer;
  hasPrev: boolean;
  records: number;
}

function setPrev(state: ChainState, hex: string): void {
  state.prevHashBytes.write(hex, 0, 64, 'latin1');
  state.hasPrev = true;
}

interface LineFailure {
  seq: number | undefined;
  reason: string;
}

/**
 * Check one line (bytes [s, e) of `view`, newline excluded) against the chain state. Hashes the
 * canonical form in place: the `,` that starts the `"hash"` member is briefly replaced by `}` so
 * the hashed bytes are exactly the record without `hash`, with no copy and no re-serialisation.
 */
function checkLine(view: Buffer, s: number, e: number, state: ChainState): LineFailure | undefined {
  const expected = state.expectSeq;
  const len = e - s;
  if (
    len < LINE_START.length + SEQ_MARK.length + TAIL_LEN ||
    view.compare(LINE_START, 0, LINE_START.length, s, s + LINE_START.length) !== 0 ||
    view[e - 1] !== CLOSE_BRACE ||
    view[e - 2] !== 0x22 ||
    view.compare(HASH_MARK, 0, HASH_MARK.length, e - 76, e - 66) !== 0 ||
    view.compare(PREV_MARK, 0, PREV_MARK.length, e - TAIL_LEN, e - TAIL_LEN + PREV_MARK.length) !== 0
  ) {
    return { seq: expected, reason: 'malformed record (not a line written by the audit log)' };
  }
  // seq follows the ISO timestamp: {"ts":"…","seq":123,
  const seqMarkAt = view.indexOf(SEQ_MARK, s + LINE_START.length);
  if (seqMarkAt < 0 || seqMarkAt > s + 64) return { seq: expected, reason: 'malformed record (no seq)' };
  let seq = 0;
  let i = seqMarkAt + SEQ_MARK.length;
  const digitsStart = i;
  for (; i < e; i++) {
    const c = view[i]!;
    if (c < 0x30 || c > 0x39) break;
    seq = seq * 10 + (c - 0x30);
  }
  if (i === digitsStart || view[i] !== COMMA || i - digitsStart > 15) {
    return { seq: expected, reason: 'malformed record (bad seq)' };
  }
  if (expected !== undefined && seq > expected && isGapMarker(view, s, e, expected, seq, state)) {
    // A recorded gap: the marker names exactly the missing seqs and links to the record before them.
  } else if (expected !== undefined && seq !== expected) {
    return {
      seq: expected,
      reason:
        seq > expected
          ? `expected seq ${expected}, found ${seq}: records were removed or reordered`
          : `expected seq ${expected}, found ${seq}: records were duplicated or reordered`,
    };
  }
  if (state.hasPrev && view.compare(state.prevHashBytes, 0, 64, e - 140, e - 76) !== 0) {
    return { seq, reason: `prev_hash of seq ${seq} does not match the hash of the record before it` };
  }
  const commaAt = e - HASH_MEMBER_LEN;
  view[commaAt] = CLOSE_BRACE;
  const actual = hash('sha256', view.subarray(s, commaAt + 1), 'hex');
  view[commaAt] = COMMA;
  const storedAt = e - 66;
  for (let k = 0; k < 64; k++) {
    if (actual.charCodeAt(k) !== view[storedAt + k]) {
      return { seq, reason: `hash of seq ${seq} does not match its content (record edited)` };
    }
  }
  state.expectSeq = seq + 1;
  view.copy(state.prevHashBytes, 0, storedAt, storedAt + 64);
  state.hasPrev = true;
  state.records++;
  return undefined;
}

/** Whether the line is an `audit.gap` marker covering exactly [expected, seq - 1]; records it in state. */
function isGapMarker(view: Buffer, s: number, e: number, expected: number, seq: number, state: ChainState): boolean {
  if (view.indexOf('"action":"audit.gap"', s) < 0 || view.indexOf('"action":"audit.gap"', s) > e) return false;
  let rec: Record<string, unknown>;
  try {
    rec = JSON.parse(view.toString('utf8', s, e)) as Record<string, unknown>;
  } catch {
    return false;
  }
  if (rec.kind !== 'sandbox.lifecycle' || rec.action !== 'audit.gap' || rec.lost_from_seq !== expected || rec.lost_to_seq !== seq - 1) return false;
  state.gaps.push({
    from: expected,
    to: seq - 1,
    reason: typeof rec.reason === 'string' ? rec.reason : 'unknown',
    ...(typeof rec.failed_at === 'string' ? { failedAt: rec.failed_at } : {}),
    markerSeq: seq,
    file: state.file,
    line: state.lineNo,
  });
  return true;
}

interface FileOutcome {
  failure?: { seq: number | undefined; reason: string; line: number };
  torn: boolean;
}

async function verifyFile(path: string, state: ChainState): Promise<FileOutcome> {
  state.file = path;
  const fh = await open(path, 'r');
  try {
    let buf = Buffer.allocUnsafe(READ_CHUNK);
    let filled = 0;
    let lineNo = 0;
    let eof = false;
    while (!eof) {
      const { bytesRead } = await fh.read(buf, filled, buf.length - filled, null);
      if (bytesRead === 0) eof = true;
      filled += bytesRead;
      const view = buf.subarray(0, filled);
      let start = 0;
      for (;;) {
        const nl = view.indexOf(10, start);
        if (nl < 0) break;
        lineNo++;
        state.lineNo = lineNo;
        const failure = checkLine(view, start, nl, state);
        if (failure) return { failure: { ...failure, line: lineNo }, torn: false };
        start = nl + 1;
      }
      const leftover = filled - start;
      if (eof) return { torn: leftover > 0 };
      if (start > 0) buf.copy(buf, 0, start, filled);
      filled = leftover;
      if (filled === buf.length) {
        const bigger = Buffer.allocUnsafe(buf.length * 2);
        buf.copy(bigger, 0, 0, filled);
        buf = bigger;
      }
    }
    return { torn: false };
  } finally {
    await fh.close();
  }
}

/**
 * Verify the hash chain of an audit directory (all `audit-NNNNNN.jsonl`, which must be numbered
 * without gaps from 000001) or of one file (its first record is trusted as the chain start unless
 * it is seq 1, which must link to the genesis hash).
 */
export async function verifyAudit(pathFileOrDir: string): Promise<VerifyResult> {
  let isDir: boolean;
  try {
    isDir = (await stat(pathFileOrDir)).isDirectory();
  } catch {
    throw new NemoclawError('not_found', `audit log not found: ${pathFileOrDir}`, {
      nextStep: 'pass an audit directory ($NEMOCLAW_HOME/sandboxes/<name>/audit) or one audit-NNNNNN.jsonl file',
      exitCode: 2,
    });
  }
  const state: ChainState = { expectSeq: undefined, gaps: [], file: '', lineNo: 0, prevHashBytes: Buffer.alloc(64), hasPrev: false, records: 0 };
  let paths: string[];
  if (isDir) {
    const files = await listAuditFiles(pathFileOrDir);
    paths = files.map((f) => f.path);
    for (let i = 0; i < files.length; i++) {
      if (files[i]!.index !== i + 1) {
        return {
          ok: false,
          records: 0,
          files: paths,
          reason: `audit file ${i + 1} of the chain is missing (found ${basename(files[i]!.path)})`,
          file: files[i]!.path,
        };
      }
    }
    state.expectSeq = 1;
    setPrev(state, GENESIS_HASH);
  } else {
    paths = [pathFileOrDir];
    const m = AUDIT_FILE_RE.exec(basename(pathFileOrDir));
    if (m && Number(m[1]) === 1) {
      state.expectSeq = 1;
      setPrev(state, GENESIS_HASH);
    }
  }
  let tornTail = false;
  for (let i = 0; i < paths.length; i++) {
    const file = paths[i]!;
    const outcome = await verifyFile(file, state);
    if (outcome.failure) {
      return {
        ok: false,
        records: state.records,
        files: paths,
        firstBadSeq: outcome.failure.seq,
        reason: outcome.failure.reason,
        file,
        line: outcome.failure.line,
        ...lastOf(state),
      };
    }
    if (outcome.torn) {
      if (i !== paths.length - 1) {
        return {
          ok: false,
          records: state.records,
          files: paths,
          firstBadSeq: state.expectSeq,
          reason: 'partial record in a file that is not the last one',
          file,
          ...lastOf(state),
        };
      }
      tornTail = true;
    }
  }
  return { ok: true, records: state.records, files: paths, ...(tornTail ? { tornTail } : {}), ...(state.gaps.length > 0 ? { gaps: state.gaps } : {}), ...lastOf(state) };
}

function lastOf(state: ChainState): { lastSeq?: number; lastHash?: string } {
  return state.records > 0 && state.expectSeq !== undefined
    ? { lastSeq: state.expectSeq - 1, lastHash: state.prevHashBytes.toString('latin1') }
    : {};
}
