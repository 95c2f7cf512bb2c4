/**
 * Issue 11: the workdir has a hard size limit enforced by the kernel. Through the real CLI as root:
 * the default workdir becomes a loop-mounted ext4 image of `filesystem_policy.limits.workdir`; a
 * command filling /sandbox gets ENOSPC inside the sandbox while the host filesystem (and the audit
 * log on it) stays writable; the fill is reported as an fs.violation (disk_full); `status` shows
 * usage; what the workdir held before is copied in and kept aside; `down` unmounts the image.
 * Needs root, bubblewrap, mount and mkfs.ext4 (e2fsprogs; CI installs them).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, readFileSync, readdirSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ControlClient } from '../../src/control/client.js';
import { mountAt } from '../../src/sandbox/workdir-disk.js';
import { makeTempHome, runCli, type TempHome } from '../helpers/supervisor.js';

const POLICY = `version: 1
filesystem_policy:
  limits: { workdir: 64Mi }
process:
  limits: { pids: 64 }
network_policies: {}
`;

describe('workdir size limit (loop-mounted image)', () => {
  let home: TempHome;
  let policy: string;
  let workdir: string;

  beforeAll(async () => {
    if (process.getuid?.() !== 0 || !existsSync('/usr/bin/bwrap') || !existsSync('/usr/sbin/mkfs.ext4')) {
      throw new Error('this suite needs root, bubblewrap and mkfs.ext4: run .ci/run or apt-get install -y bubblewrap e2fsprogs');
    }
    home = await makeTempHome('ncwd-');
    policy = join(home.dir, 'policy.yaml');
    writeFileSync(policy, POLICY);
    // A workdir that already holds files: they move into the image, the old tree is kept aside.
    workdir = join(home.dir, 'sandboxes', 'default', 'workdir');
    mkdirSync(join(workdir, 'project'), { recursive: true });
    writeFileSync(join(workdir, 'project', 'notes.txt'), 'kept across the migration\n');
    // What a hostile agent leaves for root's copy: a link to a root-only file. It must be copied as
    // a link (root never reads /etc/shadow into the sandbox's image).
    symlinkSync('/etc/shadow', join(workdir, 'project', 'shadow-link'));
  });

  afterAll(async () => {
    if (!home) return;
    await runCli(['down'], { home: home.dir, timeoutMs: 30_000 });
    // down unmounts the image; never rm -rf through a mount.
    if (!mountAt(workdir)) await home.cleanup();
  }, 60_000);

  it('fills up at the limit with ENOSPC inside the sandbox, keeps earlier files, and the host stays writable', async () => {
    const r = await runCli(
      ['run', '--policy', policy, '--', '/bin/sh', '-c',
        'cat /sandbox/project/notes.txt; readlink /sandbox/project/shadow-link; cat /sandbox/project/shadow-link 2>/dev/null || echo shadow-unreadable; df -k /sandbox | tail -1; dd if=/dev/zero of=/sandbox/fill bs=1M count=200 2>&1 | grep -v records; echo dd-exit=$?; ls -s /sandbox/fill'],
      { home: home.dir, timeoutMs: 90_000 },
    );
    expect(r.stdout).toContain('kept across the migration');
    expect(r.stdout).toContain('/etc/shadow\nshadow-unreadable');
    expect(r.stdout).not.toMatch(/^root:/m);
    expect(r.stdout).toMatch(/No space left on device/);
    // The filesystem is the 64 MiB image, not the host's.
    const df = r.stdout.split('\n').find((l) => /\s\/sandbox$/.test(l));
    expect(df, r.stdout).toBeDefined();
    const totalKiB = Number(df!.trim().split(/\s+/)[1]);
    expect(totalKiB).toBeGreaterThan(40 * 1024);
    expect(totalKiB).toBeLessThanOrEqual(64 * 1024);
    expect(mountAt(workdir)?.source).toMatch(/^\/dev\/loop/);
    const kept = readdirSync(join(home.dir, 'sandboxes', 'default')).find((n) => n.startsWith('workdir.before-limit-'));
    expect(kept).toBeDefined();
    expect(readFileSync(join(home.dir, 'sandboxes', 'default', kept!, 'project', 'notes.txt'), 'utf8')).toContain('kept across');

    // The supervisor still writes its audit log (host filesystem): the exit is recorded, status answers.
    const client = ControlClient.forSandbox('default', home.dir);
    const lifecycle = await client.events({ kinds: ['sandbox.lifecycle'] });
    expect(lifecycle.some((e) => e.workdir_disk === 'loop' && e.limit_bytes !== undefined)).toBe(true);
    expect(lifecycle.some((e) => e.phase === 'exited')).toBe(true);
  }, 120_000);

  it('reports the full workdir as an fs.violation and shows usage in status', async () => {
    const client = ControlClient.forSandbox('default', home.dir);
    let full: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 40 && full.length === 0; i++) {
      full = (await client.events({ kinds: ['fs.violation'] })).filter((e) => e.reason === 'disk_full');
      if (full.length === 0) await new Promise((r) => setTimeout(r, 250));
    }
    expect(full.length).toBe(1);
    expect(String(full[0]!.rule)).toContain('filesystem_policy.limits.workdir');
    const text = await runCli(['status'], { home: home.dir });
    expect(text.stdout).toMatch(/workdir 0\.0\d GiB of 0\.0\d GiB used \(limit enforced: loop-mounted image\)/);
    const json = JSON.parse((await runCli(['status', '--json'], { home: home.dir })).stdout) as { services: Record<string, { workdir_disk?: Record<string, unknown> }> };
    const disk = json.services.sandbox?.workdir_disk;
    expect(disk?.mode).toBe('loop');
    expect(Number(disk?.avail_bytes)).toBeLessThan(2 * 1024 * 1024);
  }, 30_000);

  it('down unmounts the image; the data stays in it', async () => {
    await runCli(['down'], { home: home.dir, timeoutMs: 30_000 });
    expect(mountAt(workdir)).toBeUndefined();
    expect(existsSync(join(home.dir, 'sandboxes', 'default', 'workdir.img'))).toBe(true);
  }, 60_000);

  it('a killed supervisor leaves the image mounted; the next `down` detaches it and says so', async () => {
    const r = await runCli(['run', '--policy', policy, '--', '/bin/true'], { home: home.dir, timeoutMs: 90_000 });
    expect(r.code, r.stderr).toBe(0);
    expect(mountAt(workdir)?.source).toMatch(/^\/dev\/loop/);
    const pid = Number(readFileSync(join(home.dir, 'sandboxes', 'default', 'supervisor.pid'), 'utf8').trim().split(/\s+/)[0]);
    expect(pid).toBeGreaterThan(1);
    process.kill(pid, 'SIGKILL');
    for (let i = 0; i < 50; i++) {
      try {
        process.kill(pid, 0);
      } catch {
        break;
      }
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(mountAt(workdir)?.source).toMatch(/^\/dev\/loop/);
    const down = await runCli(['down'], { home: home.dir, timeoutMs: 30_000 });
    expect(down.stdout).toContain('unmounted the workdir image it left behind');
    expect(mountAt(workdir)).toBeUndefined();
  }, 120_000);
});
