/**
 * The native Landlock helper (src/sandbox/landlock/nemoclaw-landlock.c) on this machine's kernel:
 * built by bin/build-native.js, it reports the ABI, restricts a command to its rules and execs it,
 * and refuses malformed argv before doing anything.
 */
import { beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { REPO_ROOT } from '../helpers/supervisor.js';

const helper = join(REPO_ROOT, 'dist', 'native', 'nemoclaw-landlock');
let abi = 0;

beforeAll(async () => {
  const b = await execa(process.execPath, [join(REPO_ROOT, 'bin', 'build-native.js')], { reject: false });
  expect(b.exitCode, String(b.stderr)).toBe(0);
  abi = Number((await execa(helper, ['abi'])).stdout.trim());
}, 60_000);

const base = ['exec', '--ro', '/usr', '--ro', '/etc', '--ro', '/proc', '--dev', '/dev'];

describe('nemoclaw-landlock', () => {
  it('reports the kernel ABI (this machine: 7)', () => {
    expect(Number.isInteger(abi)).toBe(true);
    expect(abi).toBeGreaterThanOrEqual(0);
  });

  it('lets the command write only below --rw, and read nothing that no rule names', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'ncll-'));
    try {
      const rw = join(dir, 'rw');
      const other = join(dir, 'other');
      mkdirSync(rw);
      mkdirSync(other);
      writeFileSync(join(other, 'secret'), 'secret\n');
      const script = `echo ok > ${rw}/a; echo no > ${other}/b; cat ${other}/secret; echo 1 > /proc/self/comm; cat /proc/self/status | grep NoNewPrivs`;
      const r = await execa(helper, [...base, '--rw', rw, '--', '/bin/sh', '-c', script], { reject: false });
      expect(readFileSync(join(rw, 'a'), 'utf8')).toBe('ok\n');
      expect(r.stdout).toContain('NoNewPrivs:\t1');
      if (abi >= 1) {
        expect(r.stderr).toMatch(/cannot create .*other\/b: Permission denied/);
        expect(r.stderr).toMatch(/secret: Permission denied/);
        expect(r.stderr).toMatch(/\/proc\/self\/comm: Permission denied/);
        expect(r.stdout).not.toContain('secret');
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('scopes signals (ABI 6): the command cannot signal a process outside its domain', async () => {
    const outside = execa('sleep', ['30'], { reject: false });
    try {
      const r = await execa(helper, [...base, '--scope', '--', '/bin/kill', '-0', String(outside.pid)], { reject: false });
      if (abi >= 6) expect(r.exitCode).not.toBe(0);
      else expect(r.exitCode).toBe(0);
    } finally {
      outside.kill('SIGKILL');
      await outside;
    }
  });

  it('refuses malformed argv with exit 125 before running anything', async () => {
    for (const argv of [
      ['exec', '--connect', '70000', '--', '/bin/true'],
      ['exec', '--connect', '-1', '--', '/bin/true'],
      ['exec', '--ro', 'relative/path', '--', '/bin/true'],
      ['exec', '--compat', 'maybe', '--', '/bin/true'],
      ['exec', '--ro'],
      ['exec', '--ro', '/usr'],
      ['exec', '--bogus', 'x', '--', '/bin/true'],
    ]) {
      const r = await execa(helper, argv, { reject: false });
      expect(r.exitCode, argv.join(' ')).toBe(125);
      expect(r.stderr).toMatch(/^nemoclaw-landlock: /);
    }
    expect((await execa(helper, ['nonsense'], { reject: false })).exitCode).toBe(2);
  });

  it('a missing rule path is skipped like bwrap --ro-bind-try; a missing command is exit 125', async () => {
    const ok = await execa(helper, [...base, '--ro', '/does/not/exist', '--', '/bin/true'], { reject: false });
    expect(ok.exitCode).toBe(0);
    const missing = await execa(helper, [...base, '--', '/no/such/command'], { reject: false });
    expect(missing.exitCode).toBe(125);
    expect(missing.stderr).toContain('/no/such/command');
  });
});
