/**
 * The TUI's real client adapter against a real in-process supervisor running the egress proxy and
 * the privacy router: the routes and fields the panes rely on are the ones those parts serve.
 */
import { afterAll, beforeAll, describe, expect, test } from 'vitest';
import { controlTuiClient } from '../../components/control-adapter.js';
import type { TuiClient } from '../../components/client.js';
import { createEgressService } from '../../src/egress/index.js';
import { inferenceServiceFactory } from '../../src/inference/index.js';
import { startTestSupervisor, type TestSupervisor } from '../helpers/supervisor.js';

const POLICY = `version: 1
network_policies:
  example:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: api.example.com
        port: 443
inference:
  budgets:
    hour: { tokens: 1000, usd: 2 }
    day: { tokens: 100000 }
`;

let t: TestSupervisor;
let client: TuiClient;

beforeAll(async () => {
  t = await startTestSupervisor({ policyText: POLICY, services: [() => createEgressService(), inferenceServiceFactory] });
  client = controlTuiClient(t.client);
});

afterAll(async () => {
  await t?.stop();
});

describe('controlTuiClient over a real supervisor', () => {
  test('status names the sandbox, its state and policy revision', async () => {
    const s = await client.status();
    expect(s).toMatchObject({ name: 'default', state: 'running', policy: { revision: 1 } });
  });

  test('pending() is the egress list; deciding an unknown id is refused with not_found', async () => {
    expect(await client.pending()).toEqual([]);
    await expect(client.decide('p-404', 'once')).rejects.toMatchObject({ code: 'not_found' });
  });

  test('b raises the window closest to its cap by half through setBudget, and the router keeps it', async () => {
    const before = await client.budget();
    expect(before).toMatchObject({ hour: { caps: { tokens: 1000, usd: 2 } }, day: { caps: { tokens: 100000 } } });
    const what = await client.raiseBudget();
    // Nothing is used yet, so both windows are at 0%; the first (hour) is raised.
    expect(what).toBe('hour budget raised to 1500 tokens and $3');
    expect(await t.client.budget()).toMatchObject({ hour: { caps: { tokens: 1500, usd: 3 } }, day: { caps: { tokens: 100000 } } });
  });

  test('p shows the effective policy and its revision history', async () => {
    const view = await client.policy();
    expect(view.revision).toBe(1);
    expect(view.yaml).toContain('api.example.com');
    expect(view.history.map((r) => [r.number, r.author])).toEqual([[1, 'startup']]);
  });
});
