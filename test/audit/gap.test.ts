/**
 * The gap marker (issue 14) on a real small tmpfs: a log that fails on a full disk and is closed
 * while still failing spends its reserve on the marker; verify reports that gap (ok, with `gaps`),
 * while records missing without a marker are BROKEN (a marker must name exactly the missing seqs and link to the record before them).
 */
import { execFileSync } from 'node:child_process';
import { closeSync, fstatSync, ftruncateSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditLog, AuditUnavailableError, verifyAudit } from '../../src/audit/index.js';

const isRoot = process.getuid?.() === 0;
const cleanups: Array<() => void> = [];
afterEach(() => {
  while (cleanups.length > 0) cleanups.pop()!();
});

function smallDisk(): string {
  const dir = mkdtempSync('/tmp/nct-gap-');
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=1m,mode=0700', 'tmpfs', dir]);
  cleanups.push(() => {
    execFileSync('umount', ['-l', dir]);
    rmSync(dir, { recursive: true, force: true });
  });
  return dir;
}

function fillUp(dir: string, leave: number): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'w');
  try {
    for (;;) writeSync(fd, Buffer.alloc(16 * 1024, 1));
  } catch {
    // ENOSPC
  }
  ftruncateSync(fd, Math.max(0, fstatSync(fd).size - leave));
  closeSync(fd);
  return path;
}

describe.skipIf(!isRoot)('audit gap marker', () => {
  it('closing while the disk is still full writes the marker from the reserve; verify reports the gap', async () => {
    const dir = smallDisk();
    const log = await AuditLog.open({ dir, sandbox: 't', retryMs: 50 });
    for (let i = 0; i < 10; i++) log.append({ kind: 'agent.log', line: `before ${i}` });
    await log.flush();
    fillUp(dir, 4 * 1024);
    let failed: unknown;
    for (let i = 0; i < 200 && !failed; i++) {
      log.append({ kind: 'agent.log', line: `x`.repeat(200) });
      await log.durable().catch((err: unknown) => (failed = err));
    }
    expect(failed).toBeInstanceOf(AuditUnavailableError);
    expect(log.health()).toMatchObject({ ok: false, code: 'ENOSPC' });
    expect(log.problem()).toContain(dir);
    // Appends while failing are counted, never written.
    log.append({ kind: 'agent.log', line: 'lost' });
    await expect(log.durable()).rejects.toBeInstanceOf(AuditUnavailableError);
    const health = log.health();
    await log.close().catch(() => undefined);
    const text = readFileSync(join(dir, 'audit-000001.jsonl'), 'utf8');
    expect(text.endsWith('\n')).toBe(true);
    const last = JSON.parse(text.trimEnd().split('\n').at(-1)!) as Record<string, unknown>;
    expect(last).toMatchObject({ kind: 'sandbox.lifecycle', action: 'audit.gap', reason: 'ENOSPC', resumed: false });
    const result = await verifyAudit(dir);
    expect(result.ok).toBe(true);
    expect(result.gaps).toEqual([expect.objectContaining({ from: (health as { firstLostSeq: number }).firstLostSeq, to: Number(last.seq) - 1, reason: 'ENOSPC' })]);
  });

  it('a gap without a marker is still tampering', async () => {
    const dir = mkdtempSync('/tmp/nct-gap-');
    cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const log = await AuditLog.open({ dir, sandbox: 't' });
    for (let i = 0; i < 5; i++) log.append({ kind: 'agent.log', line: `l${i}` });
    await log.close();
    const file = join(dir, 'audit-000001.jsonl');
    const lines = readFileSync(file, 'utf8').trimEnd().split('\n');
    // Drop seq 3: removed records.
    writeFileSync(file, [lines[0], lines[1], lines[3], lines[4]].join('\n') + '\n');
    const broken = await verifyAudit(dir);
    expect(broken.ok).toBe(false);
    expect(broken.firstBadSeq).toBe(3);
  });
});
