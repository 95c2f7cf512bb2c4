/**
 * Limits of the control API as the operator meets them: `policy set` of a file far over the body
 * limit is refused by the CLI itself, naming the file; the server's own limit error says what to do;
 * and `up` after a crash that tore the audit log's last record says it recovered, and where the torn
 * bytes went.
 */
import { appendFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempHome, runCli, startDaemonSupervisor, type DaemonSupervisor, type TempHome } from '../helpers/supervisor.js';
import { junkText } from './fixtures.js';
import { DENY_POLICY, expectAuditVerifies, expectCleanError, processAlive, runningState, supervisorPid, unixHttp, waitUntil } from './helpers.js';

let home: TempHome;
let d: DaemonSupervisor;

beforeAll(async () => {
  home = await makeTempHome('nct-rpctl-');
  d = await startDaemonSupervisor({ home: home.dir, policyText: DENY_POLICY });
}, 90_000);

afterAll(async () => {
  await runCli(['down'], { home: home.dir }).catch(() => undefined);
  await home?.cleanup();
});

describe('control API / CLI limits', () => {
  it('policy set of a file over the body limit names the file and says what to do', async () => {
    const file = join(home.dir, 'huge.yaml');
    writeFileSync(file, junkText(10 * 1024 * 1024));
    const before = await runningState(home.dir);
    const r = await runCli(['policy', 'set', file], { home: home.dir, timeoutMs: 60_000 });
    expectCleanError(r, { code: 2, names: [`policy file ${file} is 10.0 MiB, larger than the 1 MiB a policy may be`, /next step: pass the policy YAML file/] });
    expect(await runningState(home.dir)).toEqual(before);
  }, 90_000);

  it('a request body over the API limit is refused with what to do next', async () => {
    const huge = JSON.stringify({ yaml: `# ${'x'.repeat(5 * 1024 * 1024)}\nversion: 1\n` });
    const r = await unixHttp(d.paths.controlSocket, 'PUT', '/v1/policy', huge, { 'content-type': 'application/json' });
    expect(r.status).toBe(400);
    const body = JSON.parse(r.text) as { error: string; message: string; next_step?: string };
    expect(body.error).toBe('invalid_input');
    expect(body.message).toBe('request body is larger than 4194304 bytes (4096 KiB), the most this API accepts; nothing was changed');
    expect(body.next_step).toMatch(/^send a smaller body: a policy is at most 1 MiB/);
  }, 90_000);

  it('up after a crash that left a torn audit tail tells the operator about the recovery', async () => {
    const pid = supervisorPid(d.paths);
    process.kill(pid, 'SIGKILL');
    await waitUntil(() => !processAlive(pid), 'the supervisor to die');
    const torn = '{"ts":"2026-11-22T00:00:00.000Z","seq":';
    const auditFile = join(d.paths.auditDir, 'audit-000001.jsonl');
    appendFileSync(auditFile, torn);
    const up = await runCli(['up'], { home: home.dir });
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout + up.stderr).toMatch(
      new RegExp(`audit log: recovered from a torn tail \\(${torn.length} bytes of an unfinished record set aside in ${auditFile}\\.torn\\); chain continues from seq \\d+`),
    );
    // The next `up` of the running supervisor does not repeat it.
    const again = await runCli(['up'], { home: home.dir });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout + again.stderr).not.toMatch(/torn/);
    await expectAuditVerifies(home.dir);
  }, 90_000);

  it('a clean restart says nothing about the audit log', async () => {
    const down = await runCli(['down'], { home: home.dir });
    expect(down.code, down.stderr).toBe(0);
    const up = await runCli(['up'], { home: home.dir });
    expect(up.code, up.stderr).toBe(0);
    expect(up.stdout).toMatch(/^started the supervisor of sandbox "default"/m);
    expect(up.stdout + up.stderr).not.toMatch(/torn/);
  }, 90_000);
});
