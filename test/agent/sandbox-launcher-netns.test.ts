/**
 * The agent's health check reads /proc/PID/net/tcp of a process inside the sandbox's network
 * namespace. That pid is found once and must be found again when its process is gone: after pids
 * wrap the number can belong to a host process whose /proc/PID/net is the host's, and a healthy
 * gateway then looks deaf and gets killed (issue 15: pid 313 named while the sandbox root was 32646).
 * Real processes in real network namespaces (`unshare -n`, needs root, as CI runs).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readlinkSync } from 'node:fs';
import { execa, type ResultPromise } from 'execa';
import { sandboxLauncher } from '../../src/agent/sandbox-launcher.js';

const started: ResultPromise[] = [];
afterEach(async () => {
  for (const p of started.splice(0)) {
    p.kill('SIGKILL');
    await p.catch(() => undefined);
  }
});

async function inNewNetns(): Promise<number> {
  const p = execa('unshare', ['-n', 'sleep', '60'], { reject: false });
  started.push(p);
  // unshare execs sleep in place: same pid, once its netns differs from ours it is ready.
  const self = readlinkSync('/proc/self/ns/net');
  for (let i = 0; i < 200; i++) {
    try {
      if (p.pid && readlinkSync(`/proc/${p.pid}/ns/net`) !== self) return p.pid;
    } catch {
      // not there yet
    }
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error('unshare -n did not start (needs root and util-linux)');
}

describe('the agent process pid used for the health check', () => {
  it('is looked up again when the process it named is gone, and never names one outside the sandbox', async () => {
    if (process.getuid?.() !== 0) throw new Error('this test needs root (unshare -n); run it as root, as CI does');
    const first = await inNewNetns();
    let members = [process.pid, first];
    let scans = 0;
    const ctx = {
      service: () => ({
        name: 'sandbox',
        launch: async () => ({
          rootPid: process.pid, // stands for bwrap's outer process, in the host's netns
          pids: () => {
            scans++;
            return members;
          },
          stdout: null,
          stderr: null,
          wait: () => new Promise(() => undefined),
          kill: () => undefined,
        }),
      }),
    } as never;
    const proc = await sandboxLauncher(ctx).launch({ argv: ['/bin/true'], cwd: '/sandbox', env: {} } as never, () => undefined);
    expect(proc.pid).toBe(first);
    // The first process exits; another one (in another netns) is now the sandbox's.
    started[0]!.kill('SIGKILL');
    await started[0]!.catch(() => undefined);
    const second = await inNewNetns();
    members = [process.pid, second];
    expect(proc.pid).toBe(second);
    // Read on every agent.log line: the process tree is scanned at most once a second, the cheap
    // netns check (a readlink) every time.
    scans = 0;
    for (let i = 0; i < 1_000; i++) expect(proc.pid).toBe(second);
    expect(scans).toBeLessThanOrEqual(1);
    // With no process left in a netns of its own, the fallback is the root pid, never a stale number
    // (once the next scan comes).
    members = [process.pid];
    await new Promise((r) => setTimeout(r, 1_100));
    expect(proc.pid).toBe(process.pid);
  });
});
