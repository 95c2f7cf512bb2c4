/**
 * Output into a pipe whose reader went away (`| head`): the command stops writing and exits 0
 * without a word on stderr, and the supervisor does not notice.
 */
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BIN, makeTempHome, runCli, startDaemonSupervisor, type DaemonSupervisor, type TempHome } from '../helpers/supervisor.js';
import { DENY_POLICY, expectAuditVerifies, floodProxy, runningState, type RunningState } from './helpers.js';

let home: TempHome;
let d: DaemonSupervisor;
let before: RunningState;

beforeAll(async () => {
  home = await makeTempHome('nct-rpipe-');
  d = await startDaemonSupervisor({ home: home.dir, policyText: DENY_POLICY });
  // Enough events that `logs -n 1000` is far more than one pipe buffer.
  const flood = await floodProxy(d.paths.proxySocket, 600, 32);
  expect(flood.codes['403']).toBe(600);
  before = await runningState(home.dir);
}, 60_000);

afterAll(async () => {
  await d?.stop();
  await home?.cleanup();
});

/** `nemoclaw-tui ARGS | head HEADARGS`, as a shell would run it. */
async function pipedToHead(args: string[], headArgs: string[]): Promise<{ code: number | undefined; stderr: string; headOut: string }> {
  const source = execa(process.execPath, [BIN, ...args], {
    env: { ...process.env, NO_COLOR: '1', NEMOCLAW_HOME: home.dir },
    reject: false,
    timeout: 30_000,
  });
  const head = await source.pipe('head', headArgs, { reject: false });
  const src = await source;
  return { code: src.exitCode, stderr: String(src.stderr ?? ''), headOut: String(head.stdout ?? '') };
}

describe('a reader that goes away', () => {
  it('logs -n 1000 | head -1 exits 0 quietly', async () => {
    const r = await pipedToHead(['logs', '-n', '1000'], ['-1']);
    expect(r.headOut).toMatch(/^\d{4}-\d\d-\d\dT\S+ net\.(request|decision) /);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('logs -n 1000 --output jsonl | head -c 10 exits 0 quietly', async () => {
    const r = await pipedToHead(['logs', '-n', '1000', '--output', 'jsonl'], ['-c', '10']);
    expect(r.headOut).toBe('{"ts":"202');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('status --json | head -c 10 exits 0 quietly', async () => {
    const r = await pipedToHead(['status', '--json'], ['-c', '10']);
    expect(r.headOut).toBe('{\n  "runni');
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('policy history | head -1 exits 0 quietly', async () => {
    const r = await pipedToHead(['policy', 'history'], ['-1']);
    expect(r.headOut).toMatch(/^REV\s+TIME\s+AUTHOR/);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('a logs -f follower piped into head -1 exits 0 once head is gone', async () => {
    const r = await pipedToHead(['logs', '-f', '-n', '1000'], ['-1']);
    expect(r.headOut.split('\n').filter(Boolean)).toHaveLength(1);
    expect(r.stderr).toBe('');
    expect(r.code).toBe(0);
  });

  it('the supervisor is unaffected', async () => {
    expect(await runningState(home.dir)).toEqual(before);
    const again = await runCli(['logs', '-n', '3'], { home: home.dir });
    expect(again.code).toBe(0);
    expect(again.stdout.trim().split('\n')).toHaveLength(3);
    await expectAuditVerifies(home.dir);
  });
});
