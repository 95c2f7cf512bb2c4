import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { execa } from 'execa';
import { afterEach, describe, expect, it } from 'vitest';
import { stopDaemon } from '../../src/control/daemon.js';
import { isProcessAlive, processStartTime } from '../../src/control/pidfile.js';
import { ensureSandboxDirs, sandboxPaths } from '../../src/shared/home.js';
import {
  MINIMAL_POLICY,
  makeTempHome,
  readAuditRecords,
  runCli,
  spawnCli,
  startDaemonSupervisor,
  startTestSupervisor,
  writeTempFile,
  type TempHome,
} from '../helpers/supervisor.js';

async function waitUntil(cond: () => boolean, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe('supervisor daemon lifecycle (real bin)', () => {
  const homes: TempHome[] = [];
  afterEach(async () => {
    for (const h of homes.splice(0)) await h.cleanup();
  });

  it('up starts one detached supervisor per name; a second up reports it; down stops it', async () => {
    const d = await startDaemonSupervisor({ name: 'lab' });
    try {
      expect(d.up.stdout).toMatch(/started the supervisor of sandbox "lab" \(pid \d+/);
      const status = await d.client.status();
      expect(status.name).toBe('lab');
      expect(statSync(d.paths.controlSocket).mode & 0o777).toBe(0o600);
      expect(statSync(d.paths.dir).mode & 0o777).toBe(0o700);
      expect(statSync(d.home).mode & 0o777).toBe(0o700);
      expect(readFileSync(d.paths.pidFile, 'utf8').split('\n')[0]).toBe(String(status.pid));

      const again = await runCli(['up', '--name', 'lab'], { home: d.home });
      expect(again.code).toBe(0);
      expect(again.stdout).toContain(`sandbox "lab" is already running (pid ${status.pid}`);
      expect((await d.client.status()).pid).toBe(status.pid);

      const st = await runCli(['status', '--name', 'lab', '--json'], { home: d.home });
      expect(st.code).toBe(0);
      expect(JSON.parse(st.stdout)).toMatchObject({ running: true, name: 'lab', pid: status.pid });
    } finally {
      const down = await d.stop();
      expect(down.code).toBe(0);
      expect(down.stdout).toMatch(/stopped the supervisor of sandbox "lab" \(pid \d+\)$/m);
    }
  });

  it('detects and cleans a stale pid file and socket after a crash, and the audit chain continues', async () => {
    const d = await startDaemonSupervisor({ name: 'crash' });
    const home = d.home;
    try {
      const { pid } = await d.client.status();
      process.kill(pid, 'SIGKILL');
      await waitUntil(() => !isProcessAlive(pid));
      expect(existsSync(d.paths.pidFile)).toBe(true);
      expect(existsSync(d.paths.controlSocket)).toBe(true);

      const st = await runCli(['status', '--name', 'crash'], { home });
      expect(st.code, st.stdout + st.stderr).toBe(1);
      expect(st.stdout).toContain('not running (removed a stale pid file/socket)');
      expect(existsSync(d.paths.pidFile)).toBe(false);

      // A leftover socket without a pid file is stale too.
      writeFileSync(d.paths.controlSocket, '');
      const up = await runCli(['up', '--name', 'crash'], { home });
      expect(up.code, up.stdout + up.stderr).toBe(0);
      expect(up.stderr).toContain('removed a stale pid file/socket');
      expect((await d.client.status()).pid).not.toBe(pid);

      const down = await runCli(['down', '--name', 'crash'], { home });
      expect(down.code, down.stdout + down.stderr).toBe(0);
      const verify = await runCli(['audit', 'verify', '--name', 'crash'], { home });
      expect(verify.stdout, verify.stderr).toMatch(/audit log ok: \d+ records checked/);
      expect(verify.code).toBe(0);
    } finally {
      await d.stop();
    }
  });

  it('treats a pid file whose pid was reused by another process as stale', async () => {
    const home = await makeTempHome();
    homes.push(home);
    const paths = sandboxPaths('reuse', home.dir);
    ensureSandboxDirs(paths, home.dir);
    // Our own (live) pid, but with a start time that is not ours: a different process.
    writeFileSync(paths.pidFile, `${process.pid}\n1\n`);
    const policy = await writeTempFile(home.dir, 'p.yaml', MINIMAL_POLICY);
    const up = await runCli(['up', '--name', 'reuse', '--policy', policy], { home: home.dir });
    expect(up.code).toBe(0);
    expect(up.stdout).toContain('started the supervisor of sandbox "reuse"');
    const down = await runCli(['down', '--name', 'reuse'], { home: home.dir });
    expect(down.code).toBe(0);
  });

  it('down of a sandbox that is not running says so and exits 0', async () => {
    const home = await makeTempHome();
    homes.push(home);
    const r = await runCli(['down', '--name', 'idle'], { home: home.dir });
    expect(r.code).toBe(0);
    expect(r.stdout).toContain('sandbox "idle" is not running');
  });

  it('up refuses an invalid --policy with file:line:col and exit 2, starting nothing', async () => {
    const home = await makeTempHome();
    homes.push(home);
    const bad = await writeTempFile(home.dir, 'bad.yaml', 'version: 1\nnetwork_policies:\n  x:\n    endpoints:\n      - host: a.example.com\n        port: 70000\n');
    const r = await runCli(['up', '--policy', bad], { home: home.dir });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${bad}:6:15 network_policies.x.endpoints[0].port`);
    expect(existsSync(sandboxPaths('default', home.dir).pidFile)).toBe(false);
  });

  it('up --foreground runs until SIGTERM, then stops cleanly with the audit log flushed', async () => {
    const home = await makeTempHome();
    homes.push(home);
    const policy = await writeTempFile(home.dir, 'p.yaml', MINIMAL_POLICY);
    const fg = spawnCli(['up', '--foreground', '--policy', policy], { home: home.dir });
    await fg.waitForLine((l) => l.includes('running in the foreground'));
    const st = await runCli(['status'], { home: home.dir });
    expect(st.code).toBe(0);
    const res = await fg.kill('SIGTERM');
    expect(res.code).toBe(0);
    const paths = sandboxPaths('default', home.dir);
    expect(existsSync(paths.pidFile)).toBe(false);
    expect(existsSync(paths.controlSocket)).toBe(false);
    const logs = await runCli(['logs', '--output', 'jsonl', '--kind', 'sandbox.lifecycle'], { home: home.dir }).catch(() => undefined);
    expect(logs?.code).toBe(1); // not running any more: logs needs the supervisor
    const verify = await runCli(['audit', 'verify', '--json'], { home: home.dir });
    expect(verify.code).toBe(0);
    const result = JSON.parse(verify.stdout) as { ok: boolean; records: number };
    expect(result.ok).toBe(true);
    const records = readAuditRecords(paths.auditDir);
    expect(result.records).toBe(records.length);
    // The stop event made it to disk: SIGTERM flushed the log.
    expect(records.at(-1)).toMatchObject({ kind: 'sandbox.lifecycle', action: 'supervisor.stop', reason: 'signal SIGTERM' });
  });

  it('down falls back to SIGTERM when the pid holds the lock but nothing answers', async () => {
    const home = await makeTempHome();
    homes.push(home);
    const paths = sandboxPaths('hung', home.dir);
    ensureSandboxDirs(paths, home.dir);
    const hung = execa('sleep', ['60'], { reject: false });
    try {
      const pid = hung.pid!;
      await waitUntil(() => processStartTime(pid) !== undefined);
      writeFileSync(paths.pidFile, `${pid}\n${processStartTime(pid)}\n`);
      const res = await stopDaemon({ name: 'hung', home: home.dir, timeoutMs: 2_000 });
      expect(res).toEqual({ wasRunning: true, pid, how: 'sigterm' });
      expect(existsSync(paths.pidFile)).toBe(false);
    } finally {
      hung.kill('SIGKILL');
      await hung;
    }
  });

  it('reports --unsafe-allow-loopback-upstreams in status and in every event', async () => {
    const t = await startTestSupervisor({ unsafeAllowLoopbackUpstreams: true });
    try {
      const status = await t.client.status();
      expect(status.unsafe_allow_loopback_upstreams).toBe(true);
      t.supervisor.events.emit({ kind: 'agent.log', line: 'hello' });
      const events = await t.client.events();
      expect(events.length).toBeGreaterThanOrEqual(3);
      for (const e of events) expect(e.unsafe).toBe(true);
    } finally {
      await t.stop();
    }
  });
});
