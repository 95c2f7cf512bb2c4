/**
 * Structure-aware fuzzing of the audit verifier (src/audit/verify.ts; issue 14). The input is a
 * real log written by the real AuditLog class (rotated over several files, records of several
 * kinds with Unicode, nested and index-like fields), and a second log of another sandbox to
 * splice in. Each case mutates it at the record level: flip a byte or bit, drop / duplicate /
 * reorder / truncate records, change a field and recompute nothing, recompute one record's hash
 * but not the chain after it, splice in records or a file of the other log, tear the last line,
 * CRLF line endings, blank and garbage lines, forge `audit.gap` markers (wrong hash, wrong range,
 * wrong link), and a legitimately gapped log (marker hashed and chained) which is then mutated too.
 *
 * Properties:
 *  - verifyAudit never throws on any of it;
 *  - an intact log (also one with a properly chained gap marker) is OK, with every record counted;
 *  - every mutation of the bytes of a record that has a successor is reported broken, naming the
 *    seq of the first record touched (file and line too): zero false OKs. The only OKs allowed after
 *    a mutation are the ones an unkeyed hash chain cannot tell from a legitimate log, and they must
 *    say exactly what they checked: a torn last line (tornTail, not counted), records cut off the
 *    end (fewer records), a last record rewritten with its hash recomputed.
 */
import { createHash } from 'node:crypto';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog, auditFileName, verifyAudit, type VerifyResult } from '../../src/audit/index.js';
import { FUZZ_TIMEOUT_MS, Rng, fuzzLoop, show } from './fuzz-gen.js';

let root: string;
/** Lines (without '\n') of each file of log A (3+ files) and log B. */
let logA: string[][];
let logB: string[][];

async function writeRealLog(dir: string, sandbox: string, n: number, seed: number): Promise<string[][]> {
  mkdirSync(dir, { recursive: true });
  const rng = new Rng(seed);
  const log = await AuditLog.open({ dir, sandbox, maxFileBytes: 6 * 1024, reserveBytes: 0 });
  for (let i = 0; i < n; i++) {
    const k = rng.int(0, 4);
    if (k === 0) log.append({ kind: 'agent.log', level: 'info', line: `line ${i} ${rng.pick(['plain', 'é ü ☃', '"quoted"', 'back\\slash', '\u2028sep', '😀'])}` });
    else if (k === 1)
      log.append({ kind: 'net.decision', level: 'warn', action: rng.pick(['allow', 'deny']), host: `h${i}.example.com`, port: 443, binary: '/usr/bin/curl', reason: 'fuzz', rule: null });
    else if (k === 2) log.append({ kind: 'policy.revision', level: 'notice', revision: i, sha256: createHash('sha256').update(String(i)).digest('hex'), diff: { added: ['a', 'b'], removed: [] } });
    else if (k === 3) log.append({ kind: 'fs.violation', level: 'warn', path: `/etc/secret-${i}`, op: 'open', '0': 'index-like', nested: { a: { b: [1, 2, { c: 'd' }] } } } as never);
    else log.append({ kind: 'approval.decision', level: 'notice', decision: 'once', by: 'tui', reason: 'x'.repeat(rng.int(0, 300)) });
  }
  await log.flush();
  await log.close();
  const files = readdirSync(dir).filter((f) => /^audit-\d{6}\.jsonl$/.test(f)).sort();
  return files.map((f) => {
    const text = readFileSync(join(dir, f), 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    return text.slice(0, -1).split('\n');
  });
}

/** sha256 hex of the canonical form: the line without its `"hash"` member. */
function hashOf(lineWithoutHash: string): string {
  return createHash('sha256').update(lineWithoutHash, 'utf8').digest('hex');
}

/** Re-serialise a record with a new prev_hash and a correct hash (what an attacker who knows the algorithm does). */
function rehash(line: string, prevHash: string, edit?: (r: Record<string, unknown>) => void): string {
  const rec = JSON.parse(line) as Record<string, unknown>;
  delete rec.hash;
  edit?.(rec);
  // prev_hash stays last (its position in the canonical form).
  delete rec.prev_hash;
  rec.prev_hash = prevHash;
  const c = JSON.stringify(rec);
  return `${c.slice(0, -1)},"hash":"${hashOf(c)}"}`;
}

function hashField(line: string): string {
  return (JSON.parse(line) as { hash: string }).hash;
}

function seqOf(line: string): number {
  return (JSON.parse(line) as { seq: number }).seq;
}

interface Rec {
  file: number;
  line: number;
  seq: number;
}

/** Where each record is: flat index → (file, line, seq). */
function index(files: string[][]): Rec[] {
  const out: Rec[] = [];
  files.forEach((lines, f) => lines.forEach((l, i) => out.push({ file: f, line: i, seq: seqOf(l) })));
  return out;
}

let caseDir = 0;
async function verifyFiles(files: Array<string | Buffer>): Promise<VerifyResult> {
  const dir = join(root, `c${caseDir++ % 8}`);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir);
  files.forEach((content, i) => writeFileSync(join(dir, auditFileName(i + 1)), content));
  try {
    return await verifyAudit(dir);
  } catch (err) {
    throw new Error(`verifyAudit threw: ${(err as Error).stack}`);
  }
}

const join1 = (lines: string[]): string => (lines.length === 0 ? '' : lines.join('\n') + '\n');

/** A log whose records `from..to` were lost on a full disk, closed by a properly chained gap marker. */
function gappedLog(src: string[][], rng: Rng): { files: string[][]; from: number; to: number; markerSeq: number } {
  const flat = src.flat();
  const n = flat.length;
  const from = rng.int(2, n - 6);
  const to = rng.int(from, Math.min(n - 4, from + 5));
  const before = flat.slice(0, from - 1);
  const prev = hashField(before[before.length - 1]!);
  const markerSeq = to + 1;
  const base = JSON.parse(flat[to]!) as Record<string, unknown>;
  const marker = JSON.stringify({
    ts: base.ts,
    seq: markerSeq,
    kind: 'sandbox.lifecycle',
    level: 'error',
    sandbox: base.sandbox,
    id: `gap-${markerSeq}`,
    action: 'audit.gap',
    lost_from_seq: from,
    lost_to_seq: to,
    lost_records: to - from + 1,
    reason: 'ENOSPC',
    failed_at: base.ts,
    prev_hash: prev,
  });
  const lines = [...before, rehash(marker, prev)];
  for (const l of flat.slice(to + 1)) lines.push(rehash(l, hashField(lines[lines.length - 1]!)));
  // Same file split as the source (by count).
  const files: string[][] = [];
  let i = 0;
  for (const f of src) {
    files.push(lines.slice(i, i + f.length));
    i += f.length;
  }
  files[files.length - 1]!.push(...lines.slice(i));
  return { files: files.filter((f, k) => f.length > 0 || k === 0), from, to, markerSeq };
}

/**
 * What verify must say about a mutated log: broken at `seq` (one of them), or one of the OKs an
 * unkeyed chain cannot tell apart (with the count it must report).
 */
type Expect =
  | { broken: number[]; why: string }
  | { okRecords: number; torn: boolean; why: string }
  | { brokenOrOk: { seq: number[]; okRecords: number; torn: boolean }; why: string };

interface Mutated {
  files: Array<string | Buffer>;
  expect: Expect;
}

function flipByte(rng: Rng, files: string[][]): Mutated {
  const recs = index(files);
  const r = rng.pick(recs);
  const bytes = Buffer.from(files[r.file]![r.line]! + '\n', 'utf8');
  const at = rng.int(0, bytes.length - 1);
  const old = bytes[at]!;
  let nv = rng.bool(0.5) ? old ^ (1 << rng.int(0, 7)) : rng.int(0, 255);
  if (nv === old) nv = old ^ 1;
  bytes[at] = nv;
  const out: Array<string | Buffer> = files.map(join1);
  const before = Buffer.from(files[r.file]!.slice(0, r.line).map((l) => l + '\n').join(''), 'utf8');
  const after = Buffer.from(files[r.file]!.slice(r.line + 1).map((l) => l + '\n').join(''), 'utf8');
  out[r.file] = Buffer.concat([before, bytes, after]);
  const lastOverall = r.file === files.length - 1 && r.line === files[r.file]!.length - 1;
  const why = `byte ${at} of seq ${r.seq} (file ${r.file + 1} line ${r.line + 1}) 0x${old.toString(16)} -> 0x${nv.toString(16)}`;
  if (lastOverall && at === bytes.length - 1 && nv !== 10) {
    // The last record lost its newline: indistinguishable from a crash before the '\n' was written.
    return { files: out, expect: { okRecords: recs.length - 1, torn: true, why } };
  }
  return { files: out, expect: { broken: [r.seq], why } };
}

function structural(rng: Rng, files: string[][], other: string[][]): Mutated {
  const recs = index(files);
  const n = recs.length;
  const lastFile = files.length - 1;
  const clone = (): string[][] => files.map((f) => [...f]);
  const op = rng.int(0, 15);
  const k = rng.int(0, n - 1);
  const r = recs[k]!;
  const isLast = k === n - 1;
  const f = clone();
  switch (op) {
    case 0: {
      f[r.file]!.splice(r.line, 1);
      if (isLast) return { files: f.map(join1), expect: { okRecords: n - 1, torn: false, why: `dropped the last record ${r.seq}` } };
      return { files: f.map(join1), expect: { broken: [r.seq], why: `dropped seq ${r.seq}` } };
    }
    case 1: {
      f[r.file]!.splice(r.line, 0, files[r.file]![r.line]!);
      return { files: f.map(join1), expect: { broken: [r.seq + 1], why: `duplicated seq ${r.seq}` } };
    }
    case 2: {
      if (isLast) return structural(rng, files, other);
      const r2 = recs[k + 1]!;
      const a = f[r.file]![r.line]!;
      f[r.file]![r.line] = f[r2.file]![r2.line]!;
      f[r2.file]![r2.line] = a;
      return { files: f.map(join1), expect: { broken: [r.seq], why: `swapped seq ${r.seq} and ${r2.seq}` } };
    }
    case 3: {
      // Change a field, recompute nothing.
      const rec = JSON.parse(files[r.file]![r.line]!) as Record<string, unknown>;
      const keys = Object.keys(rec).filter((x) => x !== 'hash' && x !== 'prev_hash');
      const key = rng.pick(keys);
      rec[key] = rng.pick([null, 0, 'tampered', [], {}, typeof rec[key] === 'number' ? (rec[key] as number) + 1 : `${String(rec[key])}x`]);
      const line = JSON.stringify(rec);
      if (line === files[r.file]![r.line]) return structural(rng, files, other);
      f[r.file]![r.line] = line;
      return { files: f.map(join1), expect: { broken: [r.seq], why: `changed ${key} of seq ${r.seq}` } };
    }
    case 4: {
      // Change a field and recompute that record's hash, not the chain after it.
      const prev = k === 0 ? '0'.repeat(64) : hashField(files[recs[k - 1]!.file]![recs[k - 1]!.line]!);
      f[r.file]![r.line] = rehash(files[r.file]![r.line]!, prev, (o) => (o.level = o.level === 'info' ? 'warn' : 'info'));
      if (isLast) return { files: f.map(join1), expect: { okRecords: n, torn: false, why: `rewrote the last record ${r.seq} with its hash recomputed` } };
      return { files: f.map(join1), expect: { broken: [r.seq + 1], why: `rewrote seq ${r.seq} with its hash recomputed` } };
    }
    case 5: {
      // Cut the log at a byte offset.
      const file = rng.int(0, lastFile);
      const text = Buffer.from(join1(files[file]!), 'utf8');
      const at = rng.int(0, Math.max(0, text.length - 1));
      const out: Array<string | Buffer> = files.slice(0, file + 1).map(join1);
      out[file] = text.subarray(0, at);
      const nl = text.subarray(0, at).toString('latin1').split('\n').length - 1;
      const complete = files.slice(0, file).reduce((a, x) => a + x.length, 0) + nl;
      const torn = at > 0 && text[at - 1] !== 10;
      return { files: out, expect: { okRecords: complete, torn, why: `cut file ${file + 1} at byte ${at}, later files removed` } };
    }
    case 6: {
      // Cut a file that is not the last one.
      if (lastFile === 0) return structural(rng, files, other);
      const file = rng.int(0, lastFile - 1);
      const text = Buffer.from(join1(files[file]!), 'utf8');
      const at = rng.int(0, text.length - 1);
      const out: Array<string | Buffer> = files.map(join1);
      out[file] = text.subarray(0, at);
      const nl = text.subarray(0, at).toString('latin1').split('\n').length - 1;
      const firstMissing = recs.filter((x) => x.file === file)[nl]!;
      // Named as the seq expected there: the record's own, or (behind a gap) the one after the previous.
      const prevSeq = recs[recs.indexOf(firstMissing) - 1]?.seq ?? 0;
      return { files: out, expect: { broken: [firstMissing.seq, prevSeq + 1], why: `cut file ${file + 1} (not the last) at byte ${at}` } };
    }
    case 7: {
      // Torn last line: part of a record appended.
      const part = rng.pick(other.flat());
      const out = files.map(join1);
      out[lastFile] += part.slice(0, rng.int(1, part.length));
      return { files: out, expect: { okRecords: n, torn: true, why: 'torn record appended' } };
    }
    case 8: {
      // Splice: one record of the other log in place of ours (same seq, other chain).
      const theirs = other.flat().find((l) => seqOf(l) === r.seq);
      if (!theirs) return structural(rng, files, other);
      f[r.file]![r.line] = theirs;
      // Their record is valid in its own chain (theirs for seq 1 is a genesis record): the break may
      // show at the record after it, whose prev_hash no longer matches.
      return { files: f.map(join1), expect: { broken: [r.seq, r.seq + 1], why: `seq ${r.seq} replaced by the other log's` } };
    }
    case 9: {
      // Splice: a whole file of the other log in place of ours.
      const file = rng.int(0, Math.min(lastFile, other.length - 1));
      f[file] = [...other[file]!];
      const first = recs.find((x) => x.file === file)!.seq;
      // Their file 1 is a valid chain from genesis on its own: the break is then where ours resumes.
      const next = recs.find((x) => x.file === file + 1)?.seq ?? first;
      // ...or named as the seq their file should have gone on to (it may hold fewer records than ours).
      const theirNext = seqOf(other[file]!.at(-1)!) + 1;
      return { files: f.map(join1), expect: { broken: file === 0 ? [first, next, theirNext] : [first], why: `file ${file + 1} replaced by the other log's` } };
    }
    case 10: {
      // Another log's files appended after ours (as the next files).
      const out = [...files.map(join1), ...other.map(join1)];
      return { files: out, expect: { broken: [recs[n - 1]!.seq + 1], why: 'the other log appended as later files' } };
    }
    case 11: {
      // Blank / garbage / CRLF lines.
      const junk = rng.pick(['', ' ', '{}', '\r', 'null', '{"ts":"x"}', files[r.file]![r.line]! + '\r', '\ufeff' + files[r.file]![r.line]!]);
      if (junk.endsWith('\r') || junk.startsWith('\ufeff')) {
        f[r.file]![r.line] = junk;
        return { files: f.map(join1), expect: { broken: [r.seq], why: `seq ${r.seq} made ${show(junk.slice(0, 12))}…` } };
      }
      f[r.file]!.splice(r.line, 0, junk);
      return { files: f.map(join1), expect: { broken: [r.seq], why: `${show(junk)} inserted before seq ${r.seq}` } };
    }
    case 12: {
      // A middle file removed, the later ones renumbered.
      if (lastFile === 0) return structural(rng, files, other);
      const file = rng.int(0, lastFile - 1);
      const first = recs.find((x) => x.file === file)!.seq;
      f.splice(file, 1);
      return { files: f.map(join1), expect: { broken: [first], why: `file ${file + 1} removed, later files renumbered` } };
    }
    case 13: {
      // A forged gap marker in place of records k..m, hash not recomputed (a stolen hash).
      if (k === 0 || k + 3 >= n) return structural(rng, files, other);
      const m = rng.int(k, Math.min(n - 2, k + 4));
      const prev = hashField(files[recs[k - 1]!.file]![recs[k - 1]!.line]!);
      const base = JSON.parse(files[recs[m]!.file]![recs[m]!.line]!) as Record<string, unknown>;
      const markerSeq = recs[m]!.seq;
      const marker = rehash(
        JSON.stringify({ ts: base.ts, seq: markerSeq, kind: 'sandbox.lifecycle', level: 'error', sandbox: base.sandbox, action: 'audit.gap', lost_from_seq: r.seq, lost_to_seq: markerSeq - 1, reason: 'ENOSPC', prev_hash: prev }),
        prev,
      );
      const variant = rng.int(0, 3);
      let line = marker;
      const why = `forged gap marker for ${r.seq}..${markerSeq - 1} (variant ${variant})`;
      if (variant === 0) line = marker.replace(/"hash":"[0-9a-f]{64}"/, `"hash":"${base.hash as string}"`); // stolen hash
      else if (variant === 1) line = marker.replace(`"lost_to_seq":${markerSeq - 1}`, `"lost_to_seq":${markerSeq}`); // wrong range, hash stale
      else if (variant === 2) line = rehash(marker, '1'.repeat(64)); // hashed, but linked to nothing
      // variant 3: hashed and linked: the record after it does not link to it.
      // Records k..m are replaced by the marker.
      const flat = files.flat();
      flat.splice(k, m - k + 1, line);
      const out = splitLike(files, flat);
      if (variant === 0 || variant === 1 || variant === 2) return { files: out.map(join1), expect: { broken: [r.seq, markerSeq], why } };
      return { files: out.map(join1), expect: { broken: [markerSeq + 1], why } };
    }
    case 14: {
      // Several random bytes flipped at once, anywhere in the files.
      const out = files.map((x) => Buffer.from(join1(x), 'utf8'));
      const flips: string[] = [];
      for (let i = rng.int(2, 6); i > 0; i--) {
        const file = rng.int(0, lastFile);
        const b = out[file]!;
        const at = rng.int(0, b.length - 1);
        const old = b[at]!;
        b[at] = old ^ (1 << rng.int(0, 7));
        flips.push(`file ${file + 1} byte ${at} 0x${old.toString(16)} -> 0x${b[at]!.toString(16)}`);
      }
      // Which seq is named is fuzzy here (a flip can merge or split lines); broken is what must hold.
      return { files: out, expect: { brokenOrOk: { seq: [], okRecords: -1, torn: false }, why: flips.join('; ') } };
    }
    default: {
      // CRLF line endings for a whole file.
      const file = rng.int(0, lastFile);
      const out = files.map(join1);
      out[file] = files[file]!.map((l) => l + '\r\n').join('');
      return { files: out, expect: { broken: [recs.find((x) => x.file === file)!.seq], why: `file ${file + 1} with CRLF line endings` } };
    }
  }
}

function splitLike(shape: string[][], flat: string[]): string[][] {
  const out: string[][] = [];
  let i = 0;
  shape.forEach((f, k) => {
    const take = k === shape.length - 1 ? flat.length - i : Math.min(f.length, flat.length - i);
    out.push(flat.slice(i, i + take));
    i += take;
  });
  return out;
}

function checkVerdict(v: VerifyResult, m: Mutated, base: Rec[], ctx: string): void {
  const e = m.expect;
  if ('broken' in e) {
    // Behind a gap marker the seq expected at a position is the one after the record before it.
    for (const seq of [...e.broken]) {
      const i = base.findIndex((x) => x.seq === seq);
      if (i > 0) e.broken.push(base[i - 1]!.seq + 1);
    }
  }
  const said = `verify said ${JSON.stringify({ ok: v.ok, records: v.records, firstBadSeq: v.firstBadSeq, reason: v.reason, line: v.line, tornTail: v.tornTail })}`;
  if ('broken' in e) {
    expect(v.ok, `${ctx}: FALSE OK after ${e.why}; ${said}`).toBe(false);
    expect(e.broken, `${ctx}: ${e.why}: wrong seq named; ${said}`).toContain(v.firstBadSeq);
    expect(typeof v.reason === 'string' && v.reason.length > 0, `${ctx}: no reason; ${said}`).toBe(true);
    expect(v.file, `${ctx}: no file named; ${said}`).toBeDefined();
  } else if ('okRecords' in e) {
    expect(v.ok, `${ctx}: ${e.why}: ${said}`).toBe(true);
    expect(v.records, `${ctx}: ${e.why}: ${said}`).toBe(e.okRecords);
    expect(v.tornTail === true, `${ctx}: ${e.why}: torn tail; ${said}`).toBe(e.torn);
  } else {
    // Several flips: broken, or at most a torn last line.
    if (v.ok) expect(v.tornTail, `${ctx}: FALSE OK after ${e.why}; ${said}`).toBe(true);
  }
}

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), 'nct-fuzz-audit-'));
  logA = await writeRealLog(join(root, 'a'), 'fuzz-a', 90, 1);
  logB = await writeRealLog(join(root, 'b'), 'fuzz-b', 90, 2);
  expect(logA.length, 'log A rotated over several files').toBeGreaterThanOrEqual(3);
}, 60_000);

afterAll(() => {
  if (root) rmSync(root, { recursive: true, force: true });
});

describe('fuzz: audit verifier', () => {
  it('the real logs verify intact, and a properly chained gap marker is reported as a gap, not tampering', async () => {
    const n = logA.flat().length;
    const v = await verifyFiles(logA.map(join1));
    expect(v).toMatchObject({ ok: true, records: n, lastSeq: n });
    expect(v.tornTail).toBeUndefined();
    const g = gappedLog(logA, new Rng(7));
    const vg = await verifyFiles(g.files.map(join1));
    expect(vg.ok, JSON.stringify(vg)).toBe(true);
    expect(vg.gaps).toEqual([expect.objectContaining({ from: g.from, to: g.to, markerSeq: g.markerSeq })]);
  });

  it(
    'every mutation of a record is reported broken at its seq; only what a chain cannot tell is OK, and says so',
    async () => {
      const stats = { broken: 0, ok: 0, torn: 0, gapped: 0 };
      await fuzzLoop(
        'audit.verify',
        async (rng) => {
          let base = logA;
          if (rng.bool(0.25)) {
            // Start from a legitimately gapped log: the gap path must be as strict as the rest.
            const g = gappedLog(logA, rng);
            const vg = await verifyFiles(g.files.map(join1));
            expect(vg.ok && vg.gaps?.length === 1, `gapped log ${g.from}..${g.to} not accepted: ${JSON.stringify(vg)}`).toBe(true);
            base = g.files;
            stats.gapped++;
          }
          const m = rng.bool(0.4) ? flipByte(rng, base) : structural(rng, base, logB);
          const v = await verifyFiles(m.files);
          if (v.ok) stats[v.tornTail ? 'torn' : 'ok']++;
          else stats.broken++;
          checkVerdict(v, m, index(base), `mutation ${m.expect.why}`);
        },
        { minCases: 100 },
      );
      console.log(`[fuzz audit.verify] outcomes: ${JSON.stringify(stats)}`);
    },
    FUZZ_TIMEOUT_MS,
  );
});
