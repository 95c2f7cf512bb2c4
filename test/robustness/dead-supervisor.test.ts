/**
 * A supervisor that died (SIGKILL: no clean shutdown, stale pid file and socket left behind):
 * every client command says it is not running and how to start it, with exit 1 and no stack
 * trace; a `logs -f` follower rides through the crash and the restart without losing or repeating
 * an audited event.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/events.js';
import { makeTempHome, runCli, spawnCli, startDaemonSupervisor, type BackgroundCli, type DaemonSupervisor, type TempHome } from '../helpers/supervisor.js';
import { DENY_POLICY, STACK_FRAME, expectAuditVerifies, floodProxy, processAlive, supervisorPid, waitUntil } from './helpers.js';

let home: TempHome;
let d: DaemonSupervisor;
let follower: BackgroundCli | undefined;

beforeAll(async () => {
  home = await makeTempHome('nct-rdead-');
  d = await startDaemonSupervisor({ home: home.dir, policyText: DENY_POLICY });
}, 60_000);

afterAll(async () => {
  await follower?.kill();
  await runCli(['down'], { home: home.dir }).catch(() => undefined);
  await home?.cleanup();
});

const CLIENT_COMMANDS: string[][] = [
  ['logs'],
  ['logs', '-n', '5', '--output', 'jsonl'],
  ['pending'],
  ['approve', 'p-1'],
  ['deny', 'p-1'],
  ['policy', 'show'],
  ['policy', 'history'],
  ['budget', 'show'],
];

describe('a supervisor killed with SIGKILL', () => {
  it('every client command exits 1 with "not running" and the command that starts it; a follower survives the restart', async () => {
    follower = spawnCli(['logs', '-f', '--output', 'jsonl'], { home: home.dir });
    await follower.waitForLine((l) => l.includes('"supervisor.start"'));

    const pid = supervisorPid(d.paths);
    process.kill(pid, 'SIGKILL');
    await waitUntil(() => !processAlive(pid), 'the supervisor to die');

    const results = await Promise.all(CLIENT_COMMANDS.map((args) => runCli(args, { home: home.dir })));
    for (const [i, r] of results.entries()) {
      const what = `\`${CLIENT_COMMANDS[i]!.join(' ')}\`:\n${r.stdout}\n${r.stderr}`;
      expect(r.code, what).toBe(1);
      expect(r.stderr, what).toContain('the supervisor of sandbox "default" is not running');
      expect(r.stderr, what).toContain('next step: start it with `nemoclaw-tui up`');
      expect(r.stdout + r.stderr, what).not.toMatch(STACK_FRAME);
    }
    // `status` speaks to humans on stdout, cleans the stale pid file and says what to do.
    const status = await runCli(['status'], { home: home.dir });
    expect(status.code).toBe(1);
    expect(status.stdout).toContain('sandbox "default": not running (removed a stale pid file/socket)');
    expect(status.stderr).toContain('next step: start it with `nemoclaw-tui up`');
    const statusJson = await runCli(['status', '--json'], { home: home.dir });
    expect(statusJson.code).toBe(1);
    expect(JSON.parse(statusJson.stdout)).toMatchObject({ running: false, name: 'default' });

    // The follower noticed, kept running, and resumes after the restart.
    await follower.waitForLine((l) => l.includes('lost the supervisor of sandbox "default"'), 15_000, 'stderr');
    expect(processAlive(follower.pid!)).toBe(true);
    const up = await runCli(['up'], { home: home.dir });
    expect(up.code, up.stderr).toBe(0);
    await follower.waitForLine((l) => /reconnected; resuming after seq \d+/.test(l), 20_000, 'stderr');
    const newPid = supervisorPid(d.paths);
    await follower.waitForLine((l) => l.includes('"supervisor.start"') && l.includes(`"pid":${newPid}`), 15_000);

    // Events the new supervisor writes reach the follower, each audited seq exactly once, in order.
    await floodProxy(d.paths.proxySocket, 50, 8);
    const last = JSON.parse((await runCli(['status', '--json'], { home: home.dir })).stdout).last_seq as number;
    await follower.waitForLine((l) => l.includes(`"seq":${last},`), 15_000);
    const seqs = follower.stdoutLines
      .map((l) => JSON.parse(l) as AuditEvent)
      .filter((e) => e.transient !== true)
      .map((e) => e.seq);
    expect(seqs).toEqual([...seqs].sort((a, b) => a - b));
    expect(new Set(seqs).size).toBe(seqs.length);
    expect(seqs.at(-1)).toBe(last);

    // And the client commands answer again.
    const again = await Promise.all([['pending'], ['policy', 'show'], ['budget', 'show']].map((args) => runCli(args, { home: home.dir })));
    for (const r of again) expect(r.code, r.stderr).toBe(0);
    await expectAuditVerifies(home.dir);
  }, 60_000);
});
