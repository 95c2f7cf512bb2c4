/**
 * Red team (issue 11): the prompt says "binary /usr/bin/curl", so "always" (and "session") allow
 * exactly that binary: the rule written names it, and another program reaching the same host is
 * held again. With no known binary the rule covers any binary, and the decision event says so.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { proxyRequest, startProxy, startUpstream, testResolver, waitFor } from './harness.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await (cleanups.pop() as () => Promise<void>)();
});

async function setup(identified: boolean) {
  const up = await startUpstream('api');
  cleanups.push(() => up.close());
  const who = { binary: '/usr/bin/curl' as string | undefined };
  const h = await startProxy({
    unsafeAllowLoopbackUpstreams: true,
    resolver: testResolver({ 'api.test': ['127.0.0.1'] }),
    ...(identified ? { identify: async () => who.binary } : {}),
  });
  cleanups.push(() => h.close());
  return { up, h, who, url: `http://api.test:${up.port}/` };
}

describe('approval rules are scoped to the binary the prompt named', () => {
  for (const decision of ['always', 'session'] as const) {
    it(`${decision}: curl is allowed from then on, python to the same host is held again`, async () => {
      const { up, h, who, url } = await setup(true);
      const first = proxyRequest(h.socketPath, url);
      const [e1] = await waitFor(() => h.proxy.pending().length === 1 && h.proxy.pending(), 'pending curl');
      expect(e1!.binary).toBe('/usr/bin/curl');
      await h.proxy.decide(e1!.id, decision, 'tui');
      expect((await first).status).toBe(200);
      const written = decision === 'always' ? h.policy.overlay[0]!.rule : h.policy.session[0]!;
      expect(written).toEqual({ action: 'allow', host: 'api.test', port: up.port, binary: '/usr/bin/curl' });
      if (decision === 'always') expect(h.policy.overlay[0]!.reason).toMatch(/for \/usr\/bin\/curl/);
      const ev = h.events.find((e) => e.kind === 'approval.decision');
      expect(ev).toMatchObject({ decision, binary_scope: 'binary', rule_binary: '/usr/bin/curl' });

      // curl again: no prompt.
      expect((await proxyRequest(h.socketPath, url + 'again')).status).toBe(200);
      expect(h.proxy.pending()).toEqual([]);

      // python to the same host: not covered by curl's rule, so it is held again.
      who.binary = '/usr/bin/python3';
      const py = proxyRequest(h.socketPath, url + 'py');
      const [e2] = await waitFor(() => h.proxy.pending().length === 1 && h.proxy.pending(), 'pending python');
      expect(e2!.binary).toBe('/usr/bin/python3');
      await h.proxy.decide(e2!.id, 'deny', 'tui');
      expect((await py).status).toBe(403);
      expect(up.requests.map((r) => r.url)).toEqual(['/', '/again']);
    });
  }

  it('python is refused at once when approvals are off, after curl was always-allowed', async () => {
    const { h, who, url } = await setup(true);
    const first = proxyRequest(h.socketPath, url);
    const [e1] = await waitFor(() => h.proxy.pending().length === 1 && h.proxy.pending(), 'pending curl');
    await h.proxy.decide(e1!.id, 'always', 'cli');
    expect((await first).status).toBe(200);
    h.policy.approvals = { ...h.policy.approvals, mode: 'deny' };
    who.binary = '/usr/bin/python3';
    const r = await proxyRequest(h.socketPath, url);
    expect(r.status).toBe(403);
    expect(r.json()).toMatchObject({ error: 'policy_denied', binary: '/usr/bin/python3' });
  });

  it('deny_always covers every binary', async () => {
    const { h, up, url } = await setup(true);
    const first = proxyRequest(h.socketPath, url);
    const [e1] = await waitFor(() => h.proxy.pending().length === 1 && h.proxy.pending(), 'pending curl');
    await h.proxy.decide(e1!.id, 'deny_always', 'cli');
    expect((await first).status).toBe(403);
    expect(h.policy.overlay[0]!.rule).toEqual({ action: 'deny', host: 'api.test', port: up.port });
    expect(h.events.find((e) => e.kind === 'approval.decision')).toMatchObject({ binary_scope: 'any', rule_binary: null });
  });

  it('an unknown binary: the rule is host-only and the decision event says binary_scope any', async () => {
    const { up, h, url } = await setup(false);
    const first = proxyRequest(h.socketPath, url);
    const [e1] = await waitFor(() => h.proxy.pending().length === 1 && h.proxy.pending(), 'pending');
    expect(e1!.binary).toBeNull();
    await h.proxy.decide(e1!.id, 'always', 'tui');
    expect((await first).status).toBe(200);
    expect(h.policy.overlay[0]!.rule).toEqual({ action: 'allow', host: 'api.test', port: up.port });
    expect(h.policy.overlay[0]!.reason).toMatch(/for any binary/);
    expect(h.events.find((e) => e.kind === 'approval.decision')).toMatchObject({ decision: 'always', binary_scope: 'any', rule_binary: null });
  });
});
