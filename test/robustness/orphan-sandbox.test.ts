/**
 * A supervisor killed with SIGKILL (or by the OOM killer) cannot clean up after itself. The kernel
 * must: every sandbox it started (the prlimit → strace → bwrap chain and the egress bridge) dies
 * with it, so no agent keeps running unsupervised, and a later `up` starts from a clean slate.
 * Needs root, bubblewrap, strace and socat (CI installs them through .ci/run).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { descendants } from '../../src/sandbox/bwrap.js';
import { makeTempHome, runCli, spawnCli, startDaemonSupervisor, type BackgroundCli, type DaemonSupervisor, type TempHome } from '../helpers/supervisor.js';
import { DENY_POLICY, processAlive, supervisorPid, waitUntil } from './helpers.js';

let home: TempHome;
let d: DaemonSupervisor;
let keeper: BackgroundCli | undefined;

beforeAll(async () => {
  home = await makeTempHome('nct-rorph-');
  d = await startDaemonSupervisor({ home: home.dir, policyText: DENY_POLICY });
}, 60_000);

afterAll(async () => {
  await keeper?.kill();
  await runCli(['down'], { home: home.dir }).catch(() => undefined);
  await home?.cleanup();
}, 60_000);

describe('a supervisor killed with SIGKILL', () => {
  it('takes every sandbox it started with it: no orphaned agent, bridge or monitor', async () => {
    keeper = spawnCli(['run', '--', 'sleep', '600'], { home: home.dir });
    let instancePid = 0;
    await waitUntil(async () => {
      const r = await runCli(['status', '--json'], { home: home.dir });
      const s = JSON.parse(r.stdout || '{}') as { services?: { sandbox?: { instances?: Array<{ pid?: number }> } } };
      instancePid = s.services?.sandbox?.instances?.[0]?.pid ?? 0;
      return instancePid > 0;
    }, 'the sandboxed `run -- sleep 600` to start', 30_000);

    const supervisor = supervisorPid(d.paths);
    // Everything the supervisor started: the sandbox chain, the sleep inside it, the egress bridge.
    const started = descendants(supervisor).filter((p) => p !== supervisor);
    expect(started, 'the sandbox process itself is under the supervisor').toContain(instancePid);
    expect(started.length).toBeGreaterThanOrEqual(4);

    process.kill(supervisor, 'SIGKILL');
    await waitUntil(() => !processAlive(supervisor), 'the supervisor to die');
    await waitUntil(() => started.every((p) => !processAlive(p)), `every process the supervisor started to die (left: ${started.filter(processAlive).join(', ')})`, 15_000);

    // A new supervisor starts cleanly in the same home.
    const up = await runCli(['up'], { home: home.dir, timeoutMs: 60_000 });
    expect(up.code, up.stderr).toBe(0);
  }, 90_000);
});
