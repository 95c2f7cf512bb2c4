/**
 * A bad `inference` section is refused by the policy engine itself, through the CLI: `policy
 * validate` names file:line:col and exits 2, and `policy set` on a running supervisor (with the
 * privacy router) leaves the running revision and the router's configuration in force.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { inferenceServiceFactory } from '../../src/inference/index.js';
import { MINIMAL_POLICY, runCli, startTestSupervisor, writeTempFile, type TestSupervisor } from '../helpers/supervisor.js';

const GOOD = `${MINIMAL_POLICY}inference:
  providers:
    local: { type: openai, base_url: "http://127.0.0.1:8000/v1", locality: local }
  routes:
    - { name: default, provider: local }
`;
// Line 11 is the route; its provider value starts at column 34.
const BAD = GOOD.replace('provider: local }', 'provider: nowhere }');

let sup: TestSupervisor | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

describe('inference section validated at policy load', () => {
  it('policy validate refuses it with file:line:col, the field and what was expected (exit 2)', async () => {
    sup = await startTestSupervisor({ services: [] });
    const file = await writeTempFile(sup.home, 'bad.yaml', BAD);
    const r = await runCli(['policy', 'validate', file], { home: sup.home });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain(`${file}:12:34 inference.routes[0].provider: expected the name of a provider in inference.providers (known: local), got "nowhere"`);
    const ok = await runCli(['policy', 'validate', await writeTempFile(sup.home, 'good.yaml', GOOD)], { home: sup.home });
    expect(ok.code, ok.stderr).toBe(0);
  });

  it('policy validate --json gives scripts every issue as data: errors (exit 2) and warnings (exit 0)', async () => {
    sup = await startTestSupervisor({ services: [] });
    const file = await writeTempFile(sup.home, 'bad.yaml', BAD);
    const bad = await runCli(['policy', 'validate', '--json', file], { home: sup.home });
    expect(bad.code).toBe(2);
    const report = JSON.parse(bad.stdout) as { valid: boolean; errors: Array<{ line: number; col: number; path: string; message: string }> };
    expect(report.valid).toBe(false);
    expect(report.errors[0]).toMatchObject({ line: 12, col: 34, path: 'inference.routes[0].provider' });
    // A policy without binaries is accepted with a warning (OpenShell: no program matches).
    const warn = await writeTempFile(sup.home, 'warn.yaml', 'version: 1\nnetwork_policies:\n  gh:\n    endpoints:\n      - { host: api.github.com, port: 443 }\n');
    const ok = await runCli(['policy', 'validate', '--json', warn], { home: sup.home });
    expect(ok.code, ok.stderr).toBe(0);
    const okReport = JSON.parse(ok.stdout) as { valid: boolean; network_policies: number; warnings: Array<{ path: string; message: string }> };
    expect(okReport).toMatchObject({ valid: true, network_policies: 1 });
    expect(okReport.warnings).toContainEqual(expect.objectContaining({ path: 'network_policies.gh.endpoints', severity: 'meaning-changed', message: expect.stringMatching(/^no `binaries`: no program may use these endpoints/) }));
    // The human form puts a changed meaning under its own heading, before what is not enforced.
    const human = await runCli(['policy', 'validate', warn], { home: sup.home });
    expect(human.code).toBe(0);
    expect(human.stderr).toMatch(/^warning: these rules now mean what they mean in OpenShell[^\n]*\n[^\n]*warn\.yaml:4:5 network_policies\.gh\.endpoints: no `binaries`/);
  });

  it('policy set refuses it and the running revision and routes stay', async () => {
    sup = await startTestSupervisor({ services: [inferenceServiceFactory], policyText: GOOD });
    const before = await runCli(['policy', 'history'], { home: sup.home });
    const r = await runCli(['policy', 'set', await writeTempFile(sup.home, 'bad.yaml', BAD)], { home: sup.home });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('inference.routes[0].provider');
    expect((await runCli(['policy', 'history'], { home: sup.home })).stdout).toBe(before.stdout);
    expect(sup.supervisor.policy.current().inference.routes).toEqual([{ name: 'default', provider: 'local' }]);
  });
});
