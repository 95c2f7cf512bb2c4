/**
 * Red team (issue 11): a rule with `binaries:` decides on the program identified as holding the
 * client connection. Right before such a request is forwarded (after any hold, and on each
 * keep-alive request) the holders are looked up again: a different set of processes, or more than
 * one distinct executable (an fd passed to another program), refuses with policy_denied.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { compareHolders, type SocketHolders } from '../../src/egress/identity.js';
import { proxyRequest, startProxy, startUpstream, testResolver, waitFor } from './harness.js';
import { connect } from 'node:net';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await (cleanups.pop() as () => Promise<void>)();
});

const curl: SocketHolders = { pids: [10], binaries: ['/usr/bin/curl'] };
const curlAndPython: SocketHolders = { pids: [10, 11], binaries: ['/usr/bin/curl', '/usr/bin/python3'] };
const python: SocketHolders = { pids: [11], binaries: ['/usr/bin/python3'] };
const curlForked: SocketHolders = { pids: [10, 12], binaries: ['/usr/bin/curl'] };

describe('compareHolders', () => {
  it('accepts the same holders and refuses every change', () => {
    expect(compareHolders(curl, { pids: [10], binaries: ['/usr/bin/curl'] })).toEqual({ ok: true });
    const amb = compareHolders(curl, curlAndPython);
    expect(amb.ok).toBe(false);
    expect(!amb.ok && amb.reason).toMatch(/ambiguous/);
    const changed = compareHolders(curl, python);
    expect(!changed.ok && changed.reason).toMatch(/identity changed.*curl.*python3/);
    expect(compareHolders(curl, curlForked).ok).toBe(false);
    expect(compareHolders(curl, undefined).ok).toBe(false);
    expect(compareHolders(curl, { pids: [], binaries: [] }).ok).toBe(false);
    expect(compareHolders(undefined, curl).ok).toBe(false);
  });
});

/** A proxy whose connections' holders follow `script`: the n-th lookup answers script[n] (last one repeats). */
async function setup(script: Array<SocketHolders | undefined>, ruleBinary: string | undefined = '/usr/bin/curl') {
  const up = await startUpstream('api');
  cleanups.push(() => up.close());
  let n = 0;
  const lookups: number[] = [];
  const h = await startProxy({
    unsafeAllowLoopbackUpstreams: true,
    resolver: testResolver({ 'api.test': ['127.0.0.1'] }),
    holders: async () => {
      lookups.push(n);
      const v = script[Math.min(n, script.length - 1)];
      n++;
      return v;
    },
  });
  cleanups.push(() => h.close());
  h.policy.rules.push({ action: 'allow', host: 'api.test', port: up.port, ...(ruleBinary ? { binary: ruleBinary } : {}) });
  return { up, h, lookups, url: `http://api.test:${up.port}` };
}

describe('identity re-checked before forwarding', () => {
  it('unchanged holders: forwarded (the holders were looked up twice)', async () => {
    const { up, h, lookups, url } = await setup([curl]);
    expect((await proxyRequest(h.socketPath, `${url}/a`)).status).toBe(200);
    expect(lookups.length).toBe(2);
    expect(up.requests.length).toBe(1);
  });

  it('another program also holds the connection by forwarding time: 403 policy_denied (ambiguous), nothing forwarded', async () => {
    const { up, h, url } = await setup([curl, curlAndPython]);
    const r = await proxyRequest(h.socketPath, `${url}/a`);
    expect(r.status).toBe(403);
    expect(r.json()).toMatchObject({ error: 'policy_denied', binary: '/usr/bin/curl' });
    expect(String(r.json().detail)).toMatch(/identity is ambiguous/);
    expect(up.requests).toEqual([]);
  });

  it('the fd went to another program while held for the operator: refused after the approval', async () => {
    // No rule: the request is held; the prompt names curl; by the time it is approved python holds it.
    const { up, h, url } = await setup([curl, python], undefined);
    h.policy.rules = [];
    const res = proxyRequest(h.socketPath, `${url}/held`);
    const [p] = await waitFor(() => h.proxy.pending().length === 1 && h.proxy.pending(), 'pending');
    expect(p!.binary).toBe('/usr/bin/curl');
    await h.proxy.decide(p!.id, 'once', 'tui');
    const r = await res;
    expect(r.status).toBe(403);
    expect(String(r.json().detail)).toMatch(/identity changed since the request was decided/);
    expect(up.requests).toEqual([]);
  });

  it('keep-alive: the second request after the holders changed is refused', async () => {
    const { up, h, url } = await setup([curl, curl, python]);
    const s = connect(h.socketPath);
    cleanups.push(() => void s.destroy());
    const port = url.split(':').pop();
    const out = await new Promise<string>((resolve) => {
      let data = '';
      s.on('data', (c: Buffer) => (data += c.toString('latin1')));
      s.once('close', () => resolve(data));
      setTimeout(() => resolve(data), 1500);
      s.write(`GET ${url}/one HTTP/1.1\r\nHost: api.test:${port}\r\n\r\nGET ${url}/two HTTP/1.1\r\nHost: api.test:${port}\r\n\r\n`);
    });
    expect([...out.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]))).toEqual([200, 403]);
    expect(out).toMatch(/identity changed/);
    expect(up.requests.map((r) => r.url)).toEqual(['/one']);
  });

  it('targets no binaries rule can match are not looked up again', async () => {
    const { up, h, lookups, url } = await setup([curl, python], undefined);
    h.policy.rules = [{ action: 'allow', host: 'api.test', port: up.port }];
    await h.close();
    cleanups.pop();
    const h2 = await startProxy({
      unsafeAllowLoopbackUpstreams: true,
      resolver: testResolver({ 'api.test': ['127.0.0.1'] }),
      holders: async () => (lookups.push(0), lookups.length === 1 ? curl : python),
      binaryMatters: () => false,
    });
    cleanups.push(() => h2.close());
    h2.policy.rules.push({ action: 'allow', host: 'api.test', port: up.port });
    expect((await proxyRequest(h2.socketPath, `${url}/free`)).status).toBe(200);
    expect(up.requests.map((r) => r.url)).toEqual(['/free']);
  });
});
