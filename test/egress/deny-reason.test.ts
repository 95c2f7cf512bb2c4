/**
 * Deny with a reason (issue 16): `deny ID --reason TEXT` from the CLI (a separate process, the
 * built bin) against a real in-process supervisor. The reason is in the approval.decision audit
 * record and in the 403 body the agent's client reads; control characters never get through and
 * the length is bounded.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { cleanDecisionReason, createEgressService, MAX_DECISION_REASON_CHARS } from '../../src/egress/index.js';
import { makeTempHome, readAuditRecords, runCli, startTestSupervisor, type TestSupervisor } from '../helpers/supervisor.js';
import { proxyRequest, startUpstream, testResolver } from './harness.js';

const resolver = testResolver({ 'unknown.test': ['127.0.0.1'] });

const POLICY = `version: 1
network_policies: {}
approvals:
  mode: ask
  timeout: 30
  when_unattended: hold
`;

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await (cleanups.pop() as () => Promise<void>)();
});

async function setup(): Promise<{ t: TestSupervisor; home: string; port: number }> {
  const up = await startUpstream();
  cleanups.push(() => up.close());
  const home = await makeTempHome();
  cleanups.push(() => home.cleanup());
  const t = await startTestSupervisor({ home: home.dir, policyText: POLICY, unsafeAllowLoopbackUpstreams: true, services: [() => createEgressService({ resolver })] });
  cleanups.push(() => t.stop());
  return { t, home: home.dir, port: up.port };
}

async function waitForPending(t: TestSupervisor, n: number) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const list = await t.client.pending();
    if (list.length >= n) return list;
    if (Date.now() > deadline) throw new Error(`expected ${n} pending, got ${JSON.stringify(list)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}

describe('deny --reason', () => {
  it('goes into the approval.decision audit record and into the 403 body the agent reads', async () => {
    const { t, home, port } = await setup();
    const held = proxyRequest(t.paths.proxySocket, `http://unknown.test:${port}/upload`, { method: 'POST', body: 'secrets' });
    const [entry] = await waitForPending(t, 1);
    const denied = await runCli(['deny', entry!.id, '--reason', 'exfiltration\u001b[31m risk:\u0007 not\nneeded'], { home });
    expect(denied.code, denied.stderr).toBe(0);
    expect(denied.stdout).toContain(`${entry!.id} unknown.test:${port} denied`);
    expect(denied.stdout).toContain('(reason: exfiltration [31m risk: not needed)');

    const res = await held;
    expect(res.status).toBe(403);
    const body = res.json() as { error: string; detail: string };
    expect(body.error).toBe('policy_denied');
    expect(body.detail).toContain('denied by operator: exfiltration [31m risk: not needed');
    // eslint-disable-next-line no-control-regex
    expect(res.body).not.toMatch(/[\u0000-\u001f\u007f]/);

    const events = await t.client.events({ kinds: ['approval.decision'] });
    expect(events.at(-1)).toMatchObject({ decision: 'deny', by: 'cli', pending_id: entry!.id, reason: 'exfiltration [31m risk: not needed' });
    // The durable record on disk says the same (the net.decision of the refused request too).
    const records = readAuditRecords(t.paths.auditDir);
    expect(records.find((r) => r.kind === 'approval.decision' && r.pending_id === entry!.id)).toMatchObject({ reason: 'exfiltration [31m risk: not needed' });
    expect(records.find((r) => r.kind === 'net.decision' && r.pending_id === entry!.id)?.reason).toContain('denied by operator: exfiltration');
  });

  it('a deny without a reason reads as before; an empty reason is refused; a long one is cut', async () => {
    const { t, home, port } = await setup();
    const first = proxyRequest(t.paths.proxySocket, `http://unknown.test:${port}/a`);
    const [a] = await waitForPending(t, 1);
    const empty = await runCli(['deny', a!.id, '--reason', ' \u0001 '], { home });
    expect(empty.code).toBe(2);
    expect(empty.stderr).toMatch(/--reason is empty/);
    expect((await t.client.pending()).map((p) => p.id)).toEqual([a!.id]);
    const plain = await runCli(['deny', a!.id, '--json'], { home });
    expect(plain.code, plain.stderr).toBe(0);
    expect(JSON.parse(plain.stdout)).not.toHaveProperty('reason');
    const r1 = await first;
    expect((r1.json() as { detail: string }).detail).toBe('denied by cli (deny)');

    // Through the control client (what the TUI uses): bounded, and a non-string is refused.
    const second = proxyRequest(t.paths.proxySocket, `http://unknown.test:${port}/b`);
    const [b] = await waitForPending(t, 1);
    await expect(t.client.request('POST', `/v1/pending/${b!.id}`, { decision: 'deny', reason: 42 })).rejects.toThrow(/reason must be a string/);
    await t.client.decide(b!.id, 'deny', 'tui', 'x'.repeat(5000));
    const r2 = await second;
    const detail = (r2.json() as { detail: string }).detail;
    expect(detail).toContain(`denied by operator: ${'x'.repeat(MAX_DECISION_REASON_CHARS - 1)}…`);
    expect(detail).not.toContain('x'.repeat(MAX_DECISION_REASON_CHARS));
  });
});

describe('cleanDecisionReason', () => {
  it('removes C0/C1 controls, DEL, bidi overrides and line separators; keeps other text', () => {
    expect(cleanDecisionReason('a\u0000b\u009bc\u007fd\u202ee\u2028f\u2066g')).toBe('a b c d e f g');
    expect(cleanDecisionReason('  über  \t  größe 🙂 ')).toBe('über größe 🙂');
    expect(cleanDecisionReason('')).toBeUndefined();
    expect(cleanDecisionReason(5)).toBeUndefined();
    const long = cleanDecisionReason('🙂'.repeat(300))!;
    expect(Array.from(long)).toHaveLength(MAX_DECISION_REASON_CHARS);
    expect(long.endsWith('…')).toBe(true);
  });
});
