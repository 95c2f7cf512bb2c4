import { afterEach, describe, expect, it } from 'vitest';
import { inferenceServiceFactory } from '../../src/inference/index.js';
import { MINIMAL_POLICY, runCli, startTestSupervisor, type TestSupervisor } from '../helpers/supervisor.js';

let sup: TestSupervisor | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

describe('nemoclaw-tui budget', () => {
  it('shows the budget and raises a cap at run time', async () => {
    sup = await startTestSupervisor({
      services: [inferenceServiceFactory],
      policyText: `${MINIMAL_POLICY}inference:\n  budgets:\n    daily_tokens: 1000\n`,
    });
    const shown = await runCli(['budget', 'show'], { home: sup.home });
    expect(shown.code, shown.stderr).toBe(0);
    expect(shown.stdout).toContain('0 tokens of 1,000 tokens');

    const set = await runCli(['budget', 'set', 'day', '--tokens', '5000', '--json'], { home: sup.home });
    expect(set.code, set.stderr).toBe(0);
    expect(JSON.parse(set.stdout).day.caps.tokens).toBe(5000);
    expect((await sup.client.budget()).day.caps.tokens).toBe(5000);

    const bad = await runCli(['budget', 'set', 'week', '--tokens', '5'], { home: sup.home });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('unknown budget scope "week"');
    const nothing = await runCli(['budget', 'set', 'day'], { home: sup.home });
    expect(nothing.code).toBe(2);
    expect(nothing.stderr).toContain('next step');
  });
});
