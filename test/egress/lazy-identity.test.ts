/**
 * Binary identity costs ~25 ms per new client connection (nsenter + ss + /proc walks). It is only
 * awaited when a rule with binaries[] could decide the request; otherwise the request goes out at
 * once and the events get the binary when the lookup finishes.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { binaryMatters } from '../../src/egress/binaries.js';
import type { PolicyDocument } from '../../src/policy/types.js';
import { proxyRequest, startProxy, startUpstream, testResolver, waitFor } from './harness.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await (cleanups.pop() as () => Promise<void>)();
});

/** An identify() the test finishes by hand. */
function manualIdentity() {
  let calls = 0;
  let finish: (b: string | undefined) => void = () => undefined;
  const pending = new Promise<string | undefined>((r) => (finish = r));
  return {
    identify: () => {
      calls++;
      return pending;
    },
    finish: (b: string | undefined) => finish(b),
    calls: () => calls,
  };
}

async function setup(id: ReturnType<typeof manualIdentity>, matters: boolean) {
  const up = await startUpstream();
  cleanups.push(() => up.close());
  const h = await startProxy({
    unsafeAllowLoopbackUpstreams: true,
    resolver: testResolver({ 'api.test': ['127.0.0.1'], 'new.test': ['127.0.0.1'] }),
    identify: id.identify,
    binaryMatters: () => matters,
  });
  cleanups.push(() => h.close());
  return { up, h };
}

describe('binary identity off the hot path', () => {
  it('forwards at once when no binaries[] rule covers the host, and fills the binary into the events afterwards', async () => {
    const id = manualIdentity();
    const { up, h } = await setup(id, false);
    h.policy.rules.push({ action: 'allow', host: 'api.test', port: up.port });
    // The lookup never finished, yet the request completed.
    const res = await proxyRequest(h.socketPath, `http://api.test:${up.port}/fast`);
    expect(res.status).toBe(200);
    expect(id.calls()).toBe(1);
    expect(h.events.filter((e) => e.kind === 'net.request' || e.kind === 'net.decision')).toHaveLength(0);
    id.finish('/usr/bin/curl');
    await waitFor(() => h.events.find((e) => e.kind === 'net.decision'), 'the decision event');
    const kinds = h.events.filter((e) => e.kind === 'net.request' || e.kind === 'net.decision');
    expect(kinds.map((e) => [e.kind, e.binary])).toEqual([
      ['net.request', '/usr/bin/curl'],
      ['net.decision', '/usr/bin/curl'],
    ]);
  });

  it('waits for the binary when a binaries[] rule could decide, and decides with it', async () => {
    const id = manualIdentity();
    const { up, h } = await setup(id, true);
    h.policy.rules.push({ action: 'allow', host: 'api.test', port: up.port, binary: '/usr/bin/curl' });
    let done = false;
    const res = proxyRequest(h.socketPath, `http://api.test:${up.port}/slow`).then((r) => ((done = true), r));
    await waitFor(() => id.calls() > 0, 'the identity lookup');
    await new Promise((r) => setTimeout(r, 50));
    expect(done).toBe(false);
    expect(up.requests).toHaveLength(0);
    id.finish('/usr/bin/curl');
    expect((await res).status).toBe(200);
  });

  it('a held request still names its binary in the prompt', async () => {
    const id = manualIdentity();
    const { up, h } = await setup(id, false);
    const held = proxyRequest(h.socketPath, `http://new.test:${up.port}/x`);
    await waitFor(() => id.calls() > 0, 'the identity lookup');
    id.finish('/usr/bin/python3');
    const [p] = await waitFor(() => (h.proxy.pending().length > 0 ? h.proxy.pending() : undefined), 'a prompt');
    expect(p).toMatchObject({ host: 'new.test', binary: '/usr/bin/python3' });
    await h.proxy.decide(p!.id, 'once', 'cli');
    expect((await held).status).toBe(200);
  });
});

describe('binaryMatters', () => {
  const doc = (policies: Record<string, { hosts: string[]; ports: number[]; binaries: string[] }>) =>
    ({
      network_policies: Object.fromEntries(
        Object.entries(policies).map(([name, p]) => [
          name,
          { name, action: 'allow', binaries: p.binaries.map((path) => ({ path })), endpoints: p.hosts.map((host) => ({ host, ports: p.ports, rules: [], deny_rules: [], allowed_ips: [] })) },
        ]),
      ),
    }) as unknown as PolicyDocument;

  it('is false when no policy names binaries, true only for hosts and ports such a policy covers', () => {
    expect(binaryMatters(doc({ open: { hosts: ['api.x.com'], ports: [443], binaries: [] } }), 'api.x.com', 443)).toBe(false);
    const d = doc({ open: { hosts: ['a.test'], ports: [443], binaries: [] }, gh: { hosts: ['*.github.com', 'api-*.x.com'], ports: [443], binaries: ['/usr/bin/git'] } });
    expect(binaryMatters(d, 'a.test', 443)).toBe(false);
    expect(binaryMatters(d, 'codeload.github.com', 443)).toBe(true);
    expect(binaryMatters(d, 'CODELOAD.github.com', 443)).toBe(true);
    expect(binaryMatters(d, 'codeload.github.com', 80)).toBe(false);
    expect(binaryMatters(d, 'a.b.github.com', 443)).toBe(false);
    expect(binaryMatters(d, 'api-eu.x.com', 443)).toBe(true);
  });
});
