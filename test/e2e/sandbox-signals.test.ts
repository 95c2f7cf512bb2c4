/**
 * Signals through `nemoclaw-tui run`: Ctrl-C (SIGINT), SIGTERM and SIGHUP sent to the client reach
 * the sandboxed command, which can trap them and clean up; the third SIGINT kills it; a client that
 * disappears (SIGKILL) takes its command down with SIGKILL. Real bin, detached supervisor, real bwrap.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { existsSync } from 'node:fs';
import { PassThrough } from 'node:stream';
import { ControlClient } from '../../src/control/client.js';
import { execInSandbox, execSocketPath } from '../../src/sandbox/index.js';
import { sandboxPaths } from '../../src/shared/home.js';
import { makeTempHome, runCli, spawnCli, type TempHome } from '../helpers/supervisor.js';

let home: TempHome;

const trapping = (signal: string, code: number): string[] => [
  '/bin/sh', '-c',
  `trap 'echo "cleaning up after ${signal}"; exit ${code}' ${signal}; echo ready; while :; do sleep 0.1; done`,
];

beforeAll(async () => {
  if (!existsSync('/usr/bin/bwrap') || process.getuid?.() !== 0) {
    throw new Error('this suite needs root and bubblewrap: run .ci/run or apt-get install -y bubblewrap socat strace');
  }
  home = await makeTempHome('ncsig-');
}, 30_000);

afterAll(async () => {
  if (home) {
    await runCli(['down'], { home: home.dir, timeoutMs: 30_000 });
    await home.cleanup();
  }
}, 60_000);

describe('signals from run', () => {
  for (const [signal, code] of [['SIGINT', 7], ['SIGTERM', 8], ['SIGHUP', 9]] as const) {
    it(`forwards ${signal} to the command, which traps it and exits ${code}`, async () => {
      const p = spawnCli(['run', '--', ...trapping(signal.slice(3), code)], { home: home.dir, timeoutMs: 60_000 });
      await p.waitForLine((l) => l === 'ready', 30_000);
      p.process.kill(signal);
      const r = await p.exited;
      expect(r.stdout).toContain(`cleaning up after ${signal.slice(3)}`);
      expect(r.code, r.stderr).toBe(code);
    }, 60_000);
  }

  it('kills a command that ignores SIGINT on the third one', async () => {
    const signals = new EventEmitter();
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    let out = '';
    let err = '';
    stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready')) for (let i = 0; i < 3; i++) signals.emit('SIGINT', 'SIGINT');
    });
    stderr.on('data', (d: Buffer) => (err += d.toString()));
    const r = await execInSandbox(
      execSocketPath(sandboxPaths('default', home.dir).dir),
      { command: ['/bin/sh', '-c', "trap '' INT; echo ready; while :; do sleep 0.1; done"], join: 'none' },
      { stdin: null, stdout, stderr, signals },
    );
    expect(err).toContain('3 interrupts: killing the command');
    expect(r.exitCode).toBe(137);
    expect(signals.listenerCount('SIGINT')).toBe(0);
  }, 60_000);

  it('kills the command with SIGKILL when the client disappears', async () => {
    const p = spawnCli(['run', '--', '/bin/sh', '-c', "trap '' INT TERM HUP; echo ready; while :; do sleep 0.1; done"], { home: home.dir });
    await p.waitForLine((l) => l === 'ready', 30_000);
    p.process.kill('SIGKILL');
    await p.exited;
    const client = ControlClient.forSandbox('default', home.dir);
    let exited: Record<string, unknown> | undefined;
    for (let i = 0; i < 100 && !exited; i++) {
      const events = await client.events({ kinds: ['sandbox.lifecycle'] });
      const started = events.filter((e) => e.phase === 'running').map((e) => e.id);
      exited = events.find((e) => e.phase === 'exited' && e.id === started[started.length - 1]) as Record<string, unknown> | undefined;
      if (!exited) await new Promise((r) => setTimeout(r, 100));
    }
    expect(exited, 'no exited lifecycle event').toBeDefined();
    // 128 + SIGKILL (the launcher chain reports the command's death as an exit code).
    expect(exited!.exit_code).toBe(137);
  }, 60_000);
});
