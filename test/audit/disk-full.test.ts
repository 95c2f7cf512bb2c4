/**
 * A full disk under the audit log (issue 14): the audit directory is a real 8 MiB tmpfs, filled up
 * while the real egress proxy (in an in-process supervisor) serves allowed requests on loopback.
 * Once a write fails, nothing more reaches the upstream, a held request stays held, status names
 * the disk, a critical event reaches followers; when space returns the log resumes with a chained
 * gap marker, and `verifyAudit` reports a clean chain with that gap (not tampering).
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, openSync, closeSync, writeSync, ftruncateSync, fstatSync, rmSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { verifyAudit } from '../../src/audit/index.js';
import type { AuditEvent } from '../../src/audit/events.js';
import { describeStatus } from '../../src/cli/status-text.js';
import { createEgressService } from '../../src/egress/index.js';
import { sandboxPaths } from '../../src/shared/home.js';
import { proxyRequest, startUpstream, testResolver } from '../egress/harness.js';
import { REPO_ROOT, makeTempHome, readAuditRecords, runCli, startTestSupervisor } from '../helpers/supervisor.js';

const isRoot = process.getuid?.() === 0;
const built = existsSync(join(REPO_ROOT, 'dist', 'src', 'cli', 'main.js'));
const resolver = testResolver({ 'allowed.test': ['127.0.0.1'], 'held.test': ['127.0.0.1'] });

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

function policy(port: number): string {
  return `version: 1
network_policies:
  upstream:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: allowed.test
        port: ${port}
approvals:
  mode: ask
  timeout: 300
  when_unattended: hold
`;
}

/** Fill the filesystem of `dir` with a filler file, then give back `leave` bytes. */
function fill(dir: string, leave: number): string {
  const path = join(dir, 'filler');
  const fd = openSync(path, 'w');
  const chunk = Buffer.alloc(64 * 1024, 1);
  try {
    for (;;) writeSync(fd, chunk);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOSPC') throw err;
  }
  const size = fstatSync(fd).size;
  ftruncateSync(fd, Math.max(0, size - leave));
  closeSync(fd);
  return path;
}

async function until<T>(what: string, probe: () => T | undefined | false | Promise<T | undefined | false>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe.skipIf(!isRoot)('audit log on a full disk (real tmpfs)', () => {
  it('fails closed at the first failed write, keeps held requests held, names the disk, and resumes with a verified gap marker', async () => {
    const up = await startUpstream();
    cleanups.push(() => up.close());
    const home = await makeTempHome();
    cleanups.push(() => home.cleanup());
    const paths = sandboxPaths('default', home.dir);
    mkdirSync(paths.auditDir, { recursive: true, mode: 0o700 });
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=8m,mode=0700', 'tmpfs', paths.auditDir]);
    cleanups.push(() => {
      try {
        execFileSync('umount', ['-l', paths.auditDir]);
      } catch {
        /* already gone */
      }
    });

    const t = await startTestSupervisor({ home: home.dir, policyText: policy(up.port), unsafeAllowLoopbackUpstreams: true, services: [() => createEgressService({ resolver })] });
    let stopped = false;
    cleanups.push(async () => {
      if (!stopped) await t.stop();
    });
    const sock = t.paths.proxySocket;

    // A follower, to see what subscribers get (durable events, and the critical live event).
    const followed: AuditEvent[] = [];
    const stopFollow = new AbortController();
    const following = t.client.followEvents({}, (e) => followed.push(e), { signal: stopFollow.signal }).catch(() => undefined);
    cleanups.push(async () => {
      stopFollow.abort();
      await following;
    });

    // One request held for approval before the disk fills.
    const held = proxyRequest(sock, `http://held.test:${up.port}/held`);
    const [pending] = await until('the held request', async () => {
      const list = await t.client.pending();
      return list.length === 1 ? list : undefined;
    });
    expect((await proxyRequest(sock, `http://allowed.test:${up.port}/warm`)).status).toBe(200);

    // Leave ~96 KiB: a few hundred allowed requests' events, then ENOSPC.
    const filler = fill(paths.auditDir, 96 * 1024);
    let n = 0;
    let firstRefusal: number | undefined;
    let upstreamAtFirstRefusal = -1;
    const statuses = new Map<number, number>();
    const worker = async (): Promise<void> => {
      for (;;) {
        const i = n++;
        if (firstRefusal !== undefined && i > firstRefusal + 400) return;
        if (i > 20_000) return;
        const r = await proxyRequest(sock, `http://allowed.test:${up.port}/r/${i}`);
        statuses.set(r.status, (statuses.get(r.status) ?? 0) + 1);
        if (r.status !== 200) {
          expect(r.status).toBe(503);
          const body = r.json();
          expect(body.error).toBe('audit_unavailable');
          expect(String(body.detail)).toContain('audit log');
          expect(String(body.detail)).toContain('ENOSPC');
          expect(String(body.detail)).toContain(paths.auditDir);
          if (firstRefusal === undefined) {
            firstRefusal = i;
            upstreamAtFirstRefusal = up.requests.length;
          }
        }
      }
    };
    await Promise.all(Array.from({ length: 16 }, () => worker()));
    expect(firstRefusal).toBeDefined();
    expect(statuses.get(200) ?? 0).toBeGreaterThan(20);
    const upstreamWhileFailing = up.requests.length;
    // The requests in flight at the first refusal may still have been allowed (their records were
    // durable before they were forwarded); after that, nothing new reached the upstream.
    expect(upstreamWhileFailing - upstreamAtFirstRefusal).toBeLessThanOrEqual(16);

    // Status names the problem and the disk; the held request is still held.
    const status = await t.client.status();
    expect(status.audit.state).toBe('failing');
    expect(status.audit.code).toBe('ENOSPC');
    expect(status.audit.disk).toContain(paths.auditDir);
    expect(status.audit.disk).toContain('tmpfs');
    const text = describeStatus(status).join('\n');
    expect(text).toContain('AUDIT LOG FAILING');
    expect(text).toContain(paths.auditDir);
    expect((await t.client.pending()).map((p) => p.id)).toEqual([pending!.id]);
    if (built) {
      // `doctor` names it too (FAIL, exit 1), from the running supervisor's status.
      const doctor = await runCli(['doctor', '--json'], { home: home.dir });
      const report = JSON.parse(doctor.stdout) as { ok: boolean; audit: { ok: boolean; severity: string; detail: string; fix: string } };
      expect(report.audit).toMatchObject({ ok: false, severity: 'error' });
      expect(report.audit.detail).toContain('ENOSPC');
      expect(report.audit.fix).toContain(paths.auditDir);
      expect(doctor.code).toBe(1);
    }
    await until('the critical live event', () => followed.find((e) => e.action === 'audit.failed' && e.transient === true && e.level === 'error'));

    // Nothing the follower got is missing from the disk (it only ever sees durable records).
    const durableSeq = status.audit.last_seq;
    expect(Math.max(0, ...followed.filter((e) => e.transient !== true).map((e) => e.seq))).toBeLessThanOrEqual(durableSeq);

    // An approval while failing applies only once the log can record it.
    await t.client.decide(pending!.id, 'once');
    await new Promise((r) => setTimeout(r, 300));
    expect(up.requests.some((r) => r.url === '/held')).toBe(false);
    expect(up.requests.length).toBe(upstreamWhileFailing);

    // Space returns: the log writes its gap marker and lets traffic through again.
    rmSync(filler);
    await until('the log to resume', async () => ((await t.client.status()).audit.state === 'ok' ? true : undefined), 10_000);
    expect((await held).status).toBe(200);
    expect((await proxyRequest(sock, `http://allowed.test:${up.port}/after`)).status).toBe(200);
    await until('the gap marker at the follower', () => followed.find((e) => e.action === 'audit.gap'));

    await t.stop();
    stopped = true;
    stopFollow.abort();
    await following;

    const result = await verifyAudit(paths.auditDir);
    expect(result.ok).toBe(true);
    expect(result.gaps).toHaveLength(1);
    expect(result.gaps![0]).toMatchObject({ reason: 'ENOSPC' });
    const gap = result.gaps![0]!;
    expect(gap.to).toBeGreaterThanOrEqual(gap.from);

    if (built) {
      const cli = await runCli(['audit', 'verify'], { home: home.dir });
      expect(cli.code).toBe(0);
      expect(cli.stdout).toContain('audit log ok');
      expect(cli.stderr).toContain(`warning: records lost between seq ${gap.from} and ${gap.to} (reason ENOSPC`);
    }

    // Write-ahead: every request that reached the upstream has its allow record on disk.
    const records = readAuditRecords(paths.auditDir);
    const requestIdByPath = new Map<string, string>();
    for (const r of records) if (r.kind === 'net.request' && typeof r.path === 'string') requestIdByPath.set(r.path, String(r.id));
    const allowed = new Set(records.filter((r) => r.kind === 'net.decision' && r.action === 'allow').map((r) => String(r.id)));
    for (const req of up.requests) {
      const id = requestIdByPath.get(req.url);
      expect(id, `record of ${req.url}`).toBeDefined();
      expect(allowed.has(id!), `allow record of ${req.url}`).toBe(true);
    }
    // No seq on disk inside the gap, and every seq outside it exactly once.
    const seqs = records.map((r) => Number(r.seq));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(seqs.filter((s) => s >= gap.from && s <= gap.to)).toEqual([]);
    // What the follower saw (audited) is exactly what is on disk for those seqs.
    const bySeq = new Map(records.map((r) => [Number(r.seq), r]));
    for (const e of followed.filter((x) => x.transient !== true)) expect(bySeq.get(e.seq)?.hash).toBe(e.hash);
    expect(existsSync(join(paths.auditDir, '.reserve'))).toBe(true);
    console.info(`disk full: ${JSON.stringify(Object.fromEntries(statuses))} responses; upstream got ${up.requests.length}; first refusal at request #${firstRefusal}; gap seq ${gap.from}..${gap.to}`);
  }, 60_000);
});
