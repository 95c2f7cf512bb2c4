/**
 * A supervisor killed with SIGKILL in the middle of an event flood, then its audit log cut and
 * garbled by hand: `audit verify` says exactly what it finds at each step, and the next `up`
 * recovers (removes the torn tail, keeps it for forensics, records the recovery) and continues the
 * chain from the last good record.
 */
import { existsSync, readFileSync, appendFileSync, truncateSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempHome, runCli, startDaemonSupervisor, type DaemonSupervisor, type TempHome } from '../helpers/supervisor.js';
import { garbageBytes } from './fixtures.js';
import { DENY_POLICY, STACK_FRAME, floodProxy, processAlive, supervisorPid, waitUntil } from './helpers.js';

let home: TempHome;
let d: DaemonSupervisor;

beforeAll(async () => {
  home = await makeTempHome('nct-raud-');
  d = await startDaemonSupervisor({ home: home.dir, policyText: DENY_POLICY });
}, 60_000);

afterAll(async () => {
  await runCli(['down'], { home: home.dir }).catch(() => undefined);
  await home?.cleanup();
});

function completeLines(file: string): number {
  const text = readFileSync(file, 'latin1');
  return text.split('\n').length - 1;
}

describe('audit log after kill -9, a cut line and garbage', () => {
  it('verify reports each state exactly, and the next up recovers and continues the chain', async () => {
    const auditFile = join(d.paths.auditDir, 'audit-000001.jsonl');
    const pid = supervisorPid(d.paths);

    // Flood, and SIGKILL the supervisor once a good part of it went through.
    let killed = false;
    const flood = floodProxy(d.paths.proxySocket, 4_000, 64, {
      onProgress: (n) => {
        if (n >= 1_500 && !killed) {
          killed = true;
          process.kill(pid, 'SIGKILL');
        }
      },
    });
    const result = await flood;
    expect(killed).toBe(true);
    expect(result.codes['403']).toBeGreaterThanOrEqual(1_500);
    expect(result.codes.ERR, 'requests after the kill found nobody').toBeGreaterThan(0);
    await waitUntil(() => !processAlive(pid), 'the killed supervisor to be gone');

    // 1. Right after the crash: every complete line is an intact record (at most the unsynced tail is lost).
    const afterCrash = await runCli(['audit', 'verify'], { home: home.dir });
    expect(afterCrash.code, afterCrash.stdout + afterCrash.stderr).toBe(0);
    const records = completeLines(auditFile);
    expect(records).toBeGreaterThan(2_000);
    expect(afterCrash.stdout).toContain(`audit log ok: ${records} records checked in 1 file`);

    // 2. Cut the last record in the middle: a torn tail is reported, not counted, and not a failure.
    const text = readFileSync(auditFile, 'latin1');
    const lastNl = text.lastIndexOf('\n', text.length - 2);
    truncateSync(auditFile, lastNl + 1 + 40);
    const torn = await runCli(['audit', 'verify'], { home: home.dir });
    expect(torn.code, torn.stdout + torn.stderr).toBe(0);
    expect(torn.stdout).toContain(`audit log ok: ${records - 1} records checked`);
    expect(torn.stderr).toContain('the last file ends in a partial record');

    // 3. Garbage after the torn record (with newlines, so it reads as complete lines): broken at that seq.
    appendFileSync(auditFile, Buffer.concat([garbageBytes(300), Buffer.from('\nmore garbage\n')]));
    const broken = await runCli(['audit', 'verify'], { home: home.dir });
    expect(broken.code).toBe(1);
    expect(broken.stdout).toContain(`audit log BROKEN at seq ${records} (${auditFile}:${records}): malformed record`);
    expect(broken.stdout).toContain(`${records - 1} records before it are intact`);
    expect(broken.stderr).toMatch(/next step: .*seq \d+/);
    expect(broken.stdout + broken.stderr).not.toMatch(STACK_FRAME);

    // 4. `up` again: the stale pid is cleaned, the garbage is cut off and kept, the chain continues.
    const up = await runCli(['up'], { home: home.dir });
    expect(up.code, up.stdout + up.stderr).toBe(0);
    expect(up.stdout).toContain('started the supervisor of sandbox "default"');
    expect(up.stderr).toContain('removed a stale pid file/socket');
    const torn2 = `${auditFile}.torn`;
    expect(existsSync(torn2)).toBe(true);
    expect(readFileSync(torn2).includes(Buffer.from('more garbage'))).toBe(true);
    const log = readFileSync(join(d.paths.dir, 'supervisor.log'), 'utf8');
    expect(log).toContain(`chain continues from seq ${records - 1}`);

    const verified = await runCli(['audit', 'verify'], { home: home.dir });
    expect(verified.code, verified.stdout + verified.stderr).toBe(0);
    expect(verified.stderr).not.toContain('partial record');

    const logs = await runCli(['logs', '--output', 'jsonl', '--kind', 'sandbox.lifecycle', '-n', '5'], { home: home.dir });
    expect(logs.code, logs.stderr).toBe(0);
    const lifecycle = logs.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    const recovered = lifecycle.find((e) => e.action === 'audit.recovered');
    expect(recovered, logs.stdout).toMatchObject({ seq: records, level: 'warn', continued_from_seq: records - 1, saved_to: torn2, file: auditFile });
    const started = lifecycle.filter((e) => e.action === 'supervisor.start').at(-1);
    expect(started!.seq as number).toBeGreaterThan(records);

    // The restarted supervisor keeps writing a verifiable chain.
    const more = await floodProxy(d.paths.proxySocket, 200, 16);
    expect(more.codes['403']).toBe(200);
    const down = await runCli(['down'], { home: home.dir });
    expect(down.code, down.stderr).toBe(0);
    const final = await runCli(['audit', 'verify'], { home: home.dir });
    expect(final.code, final.stdout).toBe(0);
    const n = Number(/ok: (\d+) records/.exec(final.stdout)![1]);
    expect(n).toBeGreaterThanOrEqual(records + 400);
    expect(n).toBe(completeLines(auditFile));
  }, 60_000);
});
