/**
 * A torn last line in policy-history.jsonl (issue 14): it must not swallow the next revision, and
 * no revision number may be used twice. The store cuts the torn tail off on open (kept in
 * policy-history.jsonl.torn), says so in the audit log, and appends the next revision on its own line.
 */
import { appendFileSync, existsSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { MINIMAL_POLICY, makeTempHome, readAuditRecords, startTestSupervisor } from '../helpers/supervisor.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

const OTHER_POLICY = MINIMAL_POLICY.replace('api.example.com', 'api2.example.com');

describe('torn policy history', () => {
  it('recovers the torn tail, keeps it aside, and never reuses a revision number', async () => {
    const home = await makeTempHome();
    cleanups.push(() => home.cleanup());
    let t = await startTestSupervisor({ home: home.dir });
    await t.client.setPolicy(OTHER_POLICY);
    const file = t.paths.policyHistoryFile;
    await t.stop();
    // A crash in the middle of appending revision 3.
    const lines = readFileSync(file, 'utf8').split('\n').filter(Boolean);
    expect(lines).toHaveLength(2);
    const torn = lines[1]!.replace('"number":2', '"number":3').slice(0, 120);
    appendFileSync(file, torn);

    t = await startTestSupervisor({ home: home.dir });
    await t.client.setPolicy(OTHER_POLICY);
    const history = (await t.client.policyHistory()).map((r) => r.number);
    await t.stop();
    expect(history).toEqual([1, 2, 3, 4]);

    // On disk: four whole lines, the torn bytes kept aside.
    const after = readFileSync(file, 'utf8');
    expect(after.endsWith('\n')).toBe(true);
    expect(after.split('\n').filter(Boolean).map((l) => (JSON.parse(l) as { number: number }).number)).toEqual([1, 2, 3, 4]);
    expect(existsSync(`${file}.torn`)).toBe(true);
    expect(readFileSync(`${file}.torn`, 'utf8')).toBe(torn);

    // A third start reads all four; the audit log names each revision once and records the recovery.
    t = await startTestSupervisor({ home: home.dir });
    expect((await t.client.policyHistory()).map((r) => r.number)).toEqual([1, 2, 3, 4, 5]);
    const auditDir = t.paths.auditDir;
    await t.stop();
    const records = readAuditRecords(auditDir);
    const numbers = records.filter((r) => r.kind === 'policy.revision').map((r) => r.number);
    expect(numbers).toEqual([1, 2, 3, 4, 5]);
    expect(records.find((r) => r.action === 'policy_history.recovered')).toMatchObject({ torn_bytes: Buffer.byteLength(torn), saved_to: `${file}.torn` });
  });
});
