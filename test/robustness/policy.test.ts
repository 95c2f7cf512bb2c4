/**
 * Malformed policy files on `policy set` and `up --policy`: each is refused with a message naming
 * the file (and where it can, file:line:col) and what to do next; the running supervisor keeps its
 * revision, still answers, and its audit log still verifies.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MINIMAL_POLICY, makeTempHome, runCli, startDaemonSupervisor, type DaemonSupervisor, type TempHome } from '../helpers/supervisor.js';
import { BAD_YAML, STATIC_CHANGE, WRONG_TYPES, garbageBytes, junkText } from './fixtures.js';
import { STACK_FRAME, expectAuditVerifies, expectCleanError, runningState, type RunningState } from './helpers.js';

let home: TempHome;
let d: DaemonSupervisor;
let before: RunningState;
const files: Record<string, string> = {};

/** Raw control characters (other than newline and tab) must never reach the operator's terminal. */
const RAW_CONTROL = /[\x00-\x08\x0b-\x1f\x7f]/;

beforeAll(async () => {
  home = await makeTempHome('nct-rpol-');
  const write = (name: string, data: string | Buffer): void => {
    files[name] = join(home.dir, `${name}.yaml`);
    writeFileSync(files[name]!, data);
  };
  write('badyaml', BAD_YAML);
  write('types', WRONG_TYPES);
  write('static', STATIC_CHANGE);
  write('binary', garbageBytes(4096));
  write('empty', '');
  write('huge', junkText(10 * 1024 * 1024));
  d = await startDaemonSupervisor({ home: home.dir, policyText: MINIMAL_POLICY });
  before = await runningState(home.dir);
}, 60_000);

afterAll(async () => {
  await d?.stop();
  await home?.cleanup();
});

describe('policy set with a malformed file', () => {
  it('bad YAML: exit 2 with file:line:col, running revision kept', async () => {
    const r = await runCli(['policy', 'set', files.badyaml!], { home: home.dir });
    expectCleanError(r, { code: 2, names: [`${files.badyaml}:4:1`, 'invalid YAML', 'running policy (if any) is unchanged'] });
  });

  it('wrong types: exit 2 naming each field with its position and what was expected', async () => {
    const r = await runCli(['policy', 'set', files.types!], { home: home.dir });
    expectCleanError(r, { code: 2, names: [`${files.types}:1:10 version: expected 1`, `${files.types}:2:19 network_policies: expected`] });
  });

  it('a static-section change: exit 2 saying it needs a restart, with the exact commands', async () => {
    const r = await runCli(['policy', 'set', files.static!], { home: home.dir });
    expectCleanError(r, { code: 2, names: [files.static!, 'filesystem_policy', 'cannot change while the sandbox runs', `nemoclaw-tui up --policy ${files.static}`] });
  });

  it('binary garbage: exit 2 naming the file, no raw control bytes on the terminal', async () => {
    const r = await runCli(['policy', 'set', files.binary!], { home: home.dir });
    expectCleanError(r, { code: 2, names: [files.binary!, 'invalid YAML'] });
    expect(RAW_CONTROL.test(r.stderr), 'raw control characters in the error output').toBe(false);
  });

  it('an empty file: exit 2 naming the file and what was expected', async () => {
    const r = await runCli(['policy', 'set', files.empty!], { home: home.dir });
    expectCleanError(r, { code: 2, names: [`${files.empty}:1:1`, 'expected a mapping'] });
  });

  it('a 10 MB file: refused without a crash, the supervisor unharmed', async () => {
    const r = await runCli(['policy', 'set', files.huge!], { home: home.dir, timeoutMs: 60_000 });
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^nemoclaw-tui: .*larger than/m);
    expect(r.stderr).not.toMatch(STACK_FRAME);
  }, 60_000);

  it('after all of them the running revision, policy and audit chain are untouched', async () => {
    const after = await runningState(home.dir);
    expect(after).toEqual(before);
    const history = await runCli(['policy', 'history', '--json'], { home: home.dir });
    expect(JSON.parse(history.stdout)).toHaveLength(before.revision);
    await expectAuditVerifies(home.dir);
  });
});

describe('up --policy with a malformed file', () => {
  it('on the running sandbox: refused before anything is touched', async () => {
    for (const f of [files.badyaml!, files.types!, files.binary!, files.empty!, files.huge!]) {
      const r = await runCli(['up', '--policy', f], { home: home.dir, timeoutMs: 60_000 });
      expectCleanError(r, { code: 2, names: [f] });
    }
    expect(await runningState(home.dir)).toEqual(before);
  }, 60_000);

  it('on the running sandbox, a valid file with a static change is not applied, and says how to apply it', async () => {
    const r = await runCli(['up', '--policy', files.static!], { home: home.dir });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain(`already running (pid ${before.pid}`);
    expect(r.stderr).toContain('--policy was not applied to the running supervisor');
    expect(await runningState(home.dir)).toEqual(before);
  });

  it('on a stopped sandbox: exit 2 with file:line:col, and no supervisor is started', async () => {
    for (const [f, where] of [
      [files.badyaml!, `${files.badyaml}:4:1`],
      [files.types!, `${files.types}:1:10`],
      [files.empty!, `${files.empty}:1:1`],
      [files.huge!, 'larger than the 1 MiB a policy may be'],
    ] as const) {
      const r = await runCli(['--name', 'fresh', 'up', '--policy', f], { home: home.dir, timeoutMs: 60_000 });
      expectCleanError(r, { code: 2, names: [where] });
    }
    const s = await runCli(['--name', 'fresh', 'status'], { home: home.dir });
    expect(s.code).toBe(1);
    expect(s.stdout + s.stderr).toContain('not running');
    await expectAuditVerifies(home.dir);
  }, 60_000);
});
