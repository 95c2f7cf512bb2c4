/**
 * Policy files far too big, or not text at all: `policy validate` answers within seconds with a
 * short error naming the file and what to do (never the file echoed back); a big but valid policy
 * just under the 1 MiB cap still validates.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempHome, runCli, type TempHome } from '../helpers/supervisor.js';
import { garbageBytes, manyPolicies } from './fixtures.js';
import { STACK_FRAME, expectCleanError } from './helpers.js';

let home: TempHome;

beforeAll(async () => {
  home = await makeTempHome('nct-rppol-');
});

afterAll(async () => {
  await home?.cleanup();
});

describe('policy parsing of huge and binary files', () => {
  it('a 10 MB policy with 150,000 keys is refused within seconds, naming the file and the 1 MiB cap', async () => {
    const file = join(home.dir, 'many.yaml');
    writeFileSync(file, manyPolicies(150_000));
    const r = await runCli(['policy', 'validate', file], { home: home.dir, timeoutMs: 20_000 });
    expect(r.code, 'killed by the 20 s timeout means it hung').not.toBe(128);
    expectCleanError(r, { code: 2, names: [`policy file ${file} is 10.9 MiB, larger than the 1 MiB a policy may be — did you pass the right file?`] });
  }, 30_000);

  it('a valid policy just under the cap (14,000 network policies) validates within seconds', async () => {
    const file = join(home.dir, 'near-cap.yaml');
    const text = manyPolicies(14_000);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(1024 * 1024);
    writeFileSync(file, text);
    const r = await runCli(['policy', 'validate', file], { home: home.dir, timeoutMs: 20_000 });
    expect(r.code, `killed by the 20 s timeout means it hung; stderr:\n${r.stderr}`).toBe(0);
    expect(r.stdout).toBe(`${file}: valid (14000 network policies)\n`);
  }, 30_000);

  it('10 MB of binary garbage gets a short error, not the file echoed back', async () => {
    const file = join(home.dir, 'garbage.yaml');
    writeFileSync(file, garbageBytes(10 * 1024 * 1024));
    const r = await runCli(['policy', 'validate', file], { home: home.dir, timeoutMs: 30_000 });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(file);
    expect(r.stderr.length, 'bytes of error output').toBeLessThan(8 * 1024);
    expect(r.stderr).not.toMatch(STACK_FRAME);
  }, 40_000);

  it('binary garbage under the cap: one line at file:line:col saying it is not a text file', async () => {
    const file = join(home.dir, 'garbage-small.yaml');
    writeFileSync(file, garbageBytes(900 * 1024));
    const r = await runCli(['policy', 'validate', file], { home: home.dir, timeoutMs: 20_000 });
    expectCleanError(r, { code: 2, names: [new RegExp(`^${file}:\\d+:\\d+ \\(document\\): invalid YAML: control character U\\+[0-9A-F]{4}, which YAML does not allow; a policy is a text file`, 'm')] });
    expect(r.stderr.length, 'bytes of error output').toBeLessThan(1024);
  }, 30_000);
});
