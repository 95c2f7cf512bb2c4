/**
 * Reading the audit log for a backlog holds a bounded number of events in memory: `logs -n 20`,
 * `--since`, a follower reconnecting with an old seq, … on a long-lived supervisor whose log holds
 * millions of records must not parse the whole log into memory (a read of 200,000 records held all
 * of them, then sliced the newest N). Counted as events kept, not RSS.
 */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/index.js';

const RECORDS = 20_000;
let dir: string;
let log: AuditLog;

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nct-auditread-'));
  log = await AuditLog.open({ dir, sandbox: 'default', maxFileBytes: 1024 * 1024 });
  for (let i = 0; i < RECORDS; i++) {
    log.append({ kind: i % 100 === 0 ? 'policy.revision' : 'net.request', level: 'info', host: `h${i}.example.com`, port: 443 });
    if (i % 2000 === 1999) await log.flush();
  }
  await log.flush();
});

afterEach(async () => {
  await log.close();
  await rm(dir, { recursive: true, force: true });
});

describe('AuditLog.read keeps memory bounded', () => {
  it('with a limit: the newest N, holding about 3N events at most (not the whole log)', async () => {
    const last = log.lastSeq;
    const events = await log.read({}, 20);
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: 20 }, (_, i) => last - 19 + i));
    expect(log.lastReadStats.peakKept).toBeLessThanOrEqual(20 * 2 + 1024 + 1);
  });

  it('with a limit and a kind: the newest N matches', async () => {
    const events = await log.read({ kinds: ['policy.revision'] }, 5);
    expect(events).toHaveLength(5);
    expect(events.every((e) => e.kind === 'policy.revision')).toBe(true);
    expect(events.at(-1)!.seq).toBeGreaterThan(RECORDS - 100);
    expect(log.lastReadStats.peakKept).toBeLessThanOrEqual(5 * 2 + 1024 + 1);
  });

  it('first: a page of the oldest N after sinceSeq, in order, and no more kept', async () => {
    const page = await log.read({ sinceSeq: 1000, first: true }, 500);
    expect(page.map((e) => e.seq)).toEqual(Array.from({ length: 500 }, (_, i) => 1001 + i));
    expect(log.lastReadStats.peakKept).toBe(500);
  });

  it('untilSeq bounds the read (the newest N at or below it)', async () => {
    const events = await log.read({ untilSeq: 5000 }, 3);
    expect(events.map((e) => e.seq)).toEqual([4998, 4999, 5000]);
  });
});
