/** Shared test helpers for the meters: a fake nvidia-smi on PATH, a real event bus, real process trees. */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { AuditEvent } from '../../src/audit/events.js';
import { AuditLog } from '../../src/audit/index.js';
import { SupervisorEventBus } from '../../src/control/eventbus.js';
import { OperatorPresenceTracker } from '../../src/control/presence.js';
import type { PolicyStore, SupervisorContext, SupervisorService } from '../../src/control/types.js';
import { systemClock } from '../../src/shared/clock.js';
import { homePaths, sandboxPaths } from '../../src/shared/home.js';
import { unmountBelow } from '../helpers/mounts.js';

export const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'nvidia-smi');
export const fixturePath = (name: string): string => join(FIXTURES, name);

export function tempDir(prefix: string): string {
  return mkdtempSync(join(tmpdir(), `nemoclaw-meters-${prefix}-`));
}

/**
 * A directory holding an executable `nvidia-smi` that replays fixtures (see fake-nvidia-smi.mjs),
 * and the environment that puts it first on PATH.
 */
export function fakeNvidiaSmi(dir: string, vars: Record<string, string>): { binDir: string; env: NodeJS.ProcessEnv; log: string } {
  const binDir = join(dir, 'bin');
  mkdirSync(binDir, { recursive: true });
  const script = join(binDir, 'nvidia-smi');
  // exec: the meter's kill reaches the replaying process itself, nothing is left behind.
  writeFileSync(script, `#!/bin/sh\nexec '${process.execPath}' '${fixturePath('fake-nvidia-smi.mjs')}' "$@"\n`);
  chmodSync(script, 0o755);
  const log = join(dir, 'nvidia-smi.log');
  writeFileSync(log, '');
  return {
    binDir,
    log,
    env: { ...process.env, PATH: `${binDir}:${process.env.PATH ?? ''}`, FAKE_NVSMI_LOG: log, ...vars },
  };
}

export function invocations(log: string): string[] {
  return readFileSync(log, 'utf8').split('\n').filter((l) => l.length > 0);
}

export interface TestContext {
  ctx: SupervisorContext;
  bus: SupervisorEventBus;
  audit: AuditLog;
  events: AuditEvent[];
  close(): Promise<void>;
}

/** A SupervisorContext with the real event bus over a real audit log in `dir`. */
export async function testContext(dir: string, services: SupervisorService[] = []): Promise<TestContext> {
  const paths = sandboxPaths('meters-test', dir);
  const audit = await AuditLog.open({ dir: join(dir, 'audit'), sandbox: 'meters-test' });
  const bus = new SupervisorEventBus({ sandbox: 'meters-test', audit });
  const events: AuditEvent[] = [];
  bus.subscribe((e) => events.push(e));
  const ctx: SupervisorContext = {
    name: 'meters-test',
    paths,
    home: homePaths(dir),
    clock: systemClock,
    events: bus,
    // The meters never read the policy.
    policy: {} as PolicyStore,
    operators: new OperatorPresenceTracker(),
    options: { unsafeAllowLoopbackUpstreams: false },
    service: <T extends SupervisorService>(name: string) => services.find((s) => s.name === name) as T | undefined,
  };
  return { ctx, bus, audit, events, close: () => audit.close() };
}

export async function waitFor<T>(what: string, probe: () => T | undefined | false, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = probe();
    if (value !== undefined && value !== false) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

export async function waitForAsync<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 15_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const value = await probe();
    if (value !== undefined) return value;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** A real process tree: one `sh` with `children` sleeping children. Kill it with `killTree`. */
export async function spawnSleepTree(children: number): Promise<{ root: ChildProcess; rootPid: number }> {
  const root = spawn('sh', ['-c', `for i in $(seq ${children}); do sleep 600 & done; echo ready; wait`], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  await new Promise<void>((resolve, reject) => {
    root.once('error', reject);
    root.stdout!.once('data', () => resolve());
  });
  return { root, rootPid: root.pid! };
}

/** Kill every pid given (children first), by pid. */
export function killPids(pids: number[]): void {
  for (const pid of [...pids].reverse()) {
    try {
      process.kill(pid, 'SIGKILL');
    } catch {
      // already gone
    }
  }
}

export function removeDir(dir: string): void {
  unmountBelow(dir);
  rmSync(dir, { recursive: true, force: true });
}

/** Pids whose command line mentions `needle` (to check nothing we started is left running). */
export function pidsMentioning(needle: string): number[] {
  const out: number[] = [];
  for (const entry of readdirSafe('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      const cmd = readFileSync(join('/proc', entry, 'cmdline'), 'utf8');
      if (cmd.includes(needle)) out.push(Number(entry));
    } catch {
      // exited
    }
  }
  return out;
}

function readdirSafe(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
