import { mkdtemp, readFile, readdir, rm, writeFile, appendFile, stat } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog, GENESIS_HASH, OCSF_CLASS, verifyAudit, type AuditEvent } from '../../src/audit/index.js';
import type { Clock } from '../../src/shared/clock.js';

let dir: string;
const fixedClock: Clock = { now: () => Date.UTC(2026, 10, 22, 10, 0, 0, 123), monotonic: () => 0 };

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nemoclaw-audit-'));
});
afterEach(async () => {
  await rm(dir, { recursive: true, force: true });
});

async function writeLog(count: number, opts: { maxFileBytes?: number } = {}): Promise<AuditLog> {
  const log = await AuditLog.open({ dir, sandbox: 'default', clock: fixedClock, ...opts });
  for (let i = 0; i < count; i++) {
    log.append({ kind: 'net.decision', verdict: i % 2 ? 'allow' : 'deny', host: `h${i}.example.com`, port: 443 });
  }
  await log.close();
  return log;
}

const firstFile = () => join(dir, 'audit-000001.jsonl');

async function lines(file = firstFile()): Promise<string[]> {
  return (await readFile(file, 'utf8')).split('\n').filter((l) => l.length > 0);
}

async function rewrite(ls: string[], file = firstFile()): Promise<void> {
  await writeFile(file, ls.map((l) => `${l}\n`).join(''));
}

describe('audit log records', () => {
  it('writes the event schema with seq, ocsf class and a sha256 chain from 64 zeros', async () => {
    const log = await AuditLog.open({ dir, sandbox: 'sb1', clock: fixedClock });
    const a = log.append({ kind: 'policy.revision', level: 'notice', number: 1, author: 'cli' });
    const b = log.append({ kind: 'fs.violation', id: 'req-7', path: '/etc/shadow' });
    await log.close();
    expect(a).toMatchObject({
      ts: '2026-11-22T10:00:00.123Z',
      seq: 1,
      kind: 'policy.revision',
      level: 'notice',
      sandbox: 'sb1',
      ocsf_class: OCSF_CLASS['policy.revision'],
      number: 1,
      prev_hash: GENESIS_HASH,
    });
    expect(b).toMatchObject({ seq: 2, id: 'req-7', level: 'info', prev_hash: a.hash });
    const stored = (await lines()).map((l) => JSON.parse(l) as AuditEvent);
    expect(stored).toEqual([a, b]);
    // Documented canonical form: JSON.stringify of the record without `hash`.
    for (const rec of stored) {
      const { hash, ...rest } = rec;
      expect(createHash('sha256').update(JSON.stringify(rest)).digest('hex')).toBe(hash);
    }
    expect(Object.keys(stored[0]!).slice(0, 7)).toEqual(['ts', 'seq', 'kind', 'level', 'sandbox', 'id', 'ocsf_class']);
  });

  it('keeps producers from overriding chain fields and survives odd values', async () => {
    const log = await AuditLog.open({ dir, sandbox: 'default', clock: fixedClock });
    const ev = log.append({ kind: 'agent.log', seq: 99, hash: 'x', prev_hash: 'y', '0': 'index-like', big: 10n } as never);
    await log.close();
    expect(ev.seq).toBe(1);
    expect(ev.prev_hash).toBe(GENESIS_HASH);
    expect(ev._0).toBe('index-like');
    expect(ev.big).toBe('10');
    expect((await verifyAudit(dir)).ok).toBe(true);
  });

  it('continues the chain when reopened', async () => {
    await writeLog(3);
    const log = await AuditLog.open({ dir, sandbox: 'default', clock: fixedClock });
    expect(log.lastSeq).toBe(3);
    expect(log.recovery).toBeUndefined();
    const ev = log.append({ kind: 'sandbox.lifecycle', state: 'started' });
    await log.close();
    expect(ev.seq).toBe(4);
    const result = await verifyAudit(dir);
    expect(result).toMatchObject({ ok: true, records: 4 });
  });

  it('keeps order under interleaved concurrent appends', async () => {
    const log = await AuditLog.open({ dir, sandbox: 'default', clock: fixedClock });
    const producers = Array.from({ length: 8 }, async (_, p) => {
      for (let i = 0; i < 50; i++) {
        log.append({ kind: 'agent.log', producer: p, i });
        if (i % 7 === 0) await new Promise((r) => setImmediate(r));
      }
    });
    await Promise.all(producers);
    const read = await log.read();
    await log.close();
    expect(read.map((e) => e.seq)).toEqual(Array.from({ length: 400 }, (_, i) => i + 1));
    expect(await verifyAudit(dir)).toMatchObject({ ok: true, records: 400 });
  });

  it('reads with filters and returns the newest N', async () => {
    const log = await AuditLog.open({ dir, sandbox: 'default', clock: fixedClock, maxFileBytes: 2000 });
    for (let i = 0; i < 30; i++) log.append({ kind: i % 3 === 0 ? 'fs.violation' : 'agent.log', i });
    expect((await log.read({ sinceSeq: 25 })).map((e) => e.seq)).toEqual([26, 27, 28, 29, 30]);
    expect((await log.read({ kinds: ['fs.violation'] }, 2)).map((e) => e.seq)).toEqual([25, 28]);
    expect((await log.read({}, 3)).map((e) => e.seq)).toEqual([28, 29, 30]);
    await log.close();
  });

  it('fsyncs in the background without an explicit flush', async () => {
    const log = await AuditLog.open({ dir, sandbox: 'default', clock: fixedClock, fsyncIntervalMs: 5 });
    log.append({ kind: 'agent.log', line: 'hello' });
    for (let i = 0; i < 100 && (await lines()).length === 0; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await lines()).toHaveLength(1);
    await log.close();
  });
});

describe('audit verify', () => {
  it('passes on a fresh log and counts records', async () => {
    await writeLog(20);
    const result = await verifyAudit(dir);
    expect(result).toMatchObject({ ok: true, records: 20, lastSeq: 20 });
    expect(result.firstBadSeq).toBeUndefined();
    expect(await verifyAudit(firstFile())).toMatchObject({ ok: true, records: 20 });
  });

  it('passes on an empty directory', async () => {
    expect(await verifyAudit(dir)).toMatchObject({ ok: true, records: 0 });
  });

  it('names the seq of a record whose byte was edited', async () => {
    await writeLog(10);
    const ls = await lines();
    ls[6] = ls[6]!.replace('"deny"', '"dent"');
    await rewrite(ls);
    const result = await verifyAudit(dir);
    expect(result).toMatchObject({ ok: false, firstBadSeq: 7, line: 7, records: 6 });
    expect(result.reason).toMatch(/edited/);
  });

  it('names the seq when a record was edited and its hash recomputed (the next link breaks)', async () => {
    await writeLog(10);
    const ls = await lines();
    const rec = JSON.parse(ls[3]!) as AuditEvent;
    const { hash: _old, ...rest } = { ...rec, host: 'innocent.example.com' };
    const body = JSON.stringify(rest);
    ls[3] = `${body.slice(0, -1)},"hash":"${createHash('sha256').update(body).digest('hex')}"}`;
    await rewrite(ls);
    expect(await verifyAudit(dir)).toMatchObject({ ok: false, firstBadSeq: 5 });
  });

  it('names the seq of a deleted line', async () => {
    await writeLog(10);
    const ls = await lines();
    ls.splice(4, 1);
    await rewrite(ls);
    const result = await verifyAudit(dir);
    expect(result).toMatchObject({ ok: false, firstBadSeq: 5, records: 4 });
    expect(result.reason).toMatch(/removed/);
  });

  it('names the seq of two swapped lines', async () => {
    await writeLog(10);
    const ls = await lines();
    [ls[2], ls[3]] = [ls[3]!, ls[2]!];
    await rewrite(ls);
    expect(await verifyAudit(dir)).toMatchObject({ ok: false, firstBadSeq: 3, records: 2 });
  });

  it('fails when the first record was removed', async () => {
    await writeLog(3);
    await rewrite((await lines()).slice(1));
    expect(await verifyAudit(dir)).toMatchObject({ ok: false, firstBadSeq: 1 });
  });

  it('fails on a line that is not an audit record', async () => {
    await writeLog(3);
    const ls = await lines();
    ls.splice(1, 0, '{"hello":"world"}');
    await rewrite(ls);
    expect(await verifyAudit(dir)).toMatchObject({ ok: false, firstBadSeq: 2, line: 2 });
  });

  it('refuses a path that does not exist with a next step', async () => {
    await expect(verifyAudit(join(dir, 'nope'))).rejects.toMatchObject({ code: 'not_found' });
  });
});

describe('audit crash recovery and rotation', () => {
  it('detects, reports and truncates a torn last line, then continues the chain', async () => {
    await writeLog(5);
    const torn = '{"ts":"2026-11-22T10:00:00.123Z","seq":6,"kind":"agent.lo';
    await appendFile(firstFile(), torn);
    expect(await verifyAudit(dir)).toMatchObject({ ok: true, records: 5, tornTail: true });

    const log = await AuditLog.open({ dir, sandbox: 'default', clock: fixedClock });
    expect(log.recovery).toMatchObject({ file: firstFile(), tornBytes: torn.length, lastSeq: 5 });
    expect(await readFile(log.recovery!.savedTo, 'utf8')).toBe(torn);
    expect(log.append({ kind: 'sandbox.lifecycle', state: 'recovered' }).seq).toBe(6);
    await log.close();
    const result = await verifyAudit(dir);
    expect(result).toMatchObject({ ok: true, records: 6 });
    expect(result.tornTail).toBeUndefined();
  });

  it('recovers a tail of zero bytes after the last record (delayed allocation after power loss)', async () => {
    await writeLog(4);
    await appendFile(firstFile(), Buffer.alloc(4096));
    const log = await AuditLog.open({ dir, sandbox: 'default', clock: fixedClock });
    expect(log.recovery?.tornBytes).toBe(4096);
    expect(log.lastSeq).toBe(4);
    await log.close();
    expect(await verifyAudit(dir)).toMatchObject({ ok: true, records: 4 });
  });

  it('rotates by size and keeps one chain across files', async () => {
    await writeLog(200, { maxFileBytes: 4096 });
    const files = (await readdir(dir)).filter((f) => f.endsWith('.jsonl')).sort();
    expect(files.length).toBeGreaterThan(5);
    expect(files[0]).toBe('audit-000001.jsonl');
    for (const f of files) expect((await stat(join(dir, f))).size).toBeLessThanOrEqual(4096);
    const second = await lines(join(dir, files[1]!));
    const lastOfFirst = (await lines()).at(-1)!;
    expect((JSON.parse(second[0]!) as AuditEvent).prev_hash).toBe((JSON.parse(lastOfFirst) as AuditEvent).hash);
    expect(await verifyAudit(dir)).toMatchObject({ ok: true, records: 200, lastSeq: 200 });

    const reopened = await AuditLog.open({ dir, sandbox: 'default', clock: fixedClock, maxFileBytes: 4096 });
    expect(reopened.lastSeq).toBe(200);
    reopened.append({ kind: 'agent.log', line: 'after restart' });
    expect((await reopened.read({ sinceSeq: 198 })).map((e) => e.seq)).toEqual([199, 200, 201]);
    await reopened.close();
    expect(await verifyAudit(dir)).toMatchObject({ ok: true, records: 201 });
  });

  it('fails verify when a whole rotated file is missing or a record is removed across a file boundary', async () => {
    await writeLog(100, { maxFileBytes: 4096 });
    await rm(join(dir, 'audit-000002.jsonl'));
    const result = await verifyAudit(dir);
    expect(result.ok).toBe(false);
    expect(result.reason).toMatch(/missing/);
  });

  it('names the seq when the first record of a later file was removed', async () => {
    await writeLog(100, { maxFileBytes: 4096 });
    const second = join(dir, 'audit-000002.jsonl');
    const ls = await lines(second);
    const removedSeq = (JSON.parse(ls[0]!) as AuditEvent).seq;
    await rewrite(ls.slice(1), second);
    expect(await verifyAudit(dir)).toMatchObject({ ok: false, firstBadSeq: removedSeq, file: second });
  });
});
