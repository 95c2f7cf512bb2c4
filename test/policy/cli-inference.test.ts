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
    expect(r.stderr).toContain(`${file}:11:34 inference.routes[0].provider: expected the name of a provider in inference.providers (known: local), got "nowhere"`);
    const ok = await runCli(['policy', 'validate', await writeTempFile(sup.home, 'good.yaml', GOOD)], { home: sup.home });
    expect(ok.code, ok.stderr).toBe(0);
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
