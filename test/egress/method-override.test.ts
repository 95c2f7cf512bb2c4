/**
 * Red team (issue 11): X-HTTP-Method-Override / X-HTTP-Method / X-Method-Override (any case) and a
 * `_method` query parameter make many frameworks dispatch on another method than the request's.
 * On endpoints with L7 rules the overriding method must be allowed by the rules for that path as
 * well, or the request is refused (403 policy_denied naming the header) and nothing is forwarded.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Endpoint } from '../../src/policy/types.js';
import { proxyConnect, proxyRequest, startProxy, startUpstream, testResolver, type Upstream } from './harness.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  while (cleanups.length > 0) await (cleanups.pop() as () => Promise<void>)();
});

async function setup(endpoint: Partial<Endpoint>): Promise<{ up: Upstream; socketPath: string; url: (p: string) => string }> {
  const up = await startUpstream('api');
  cleanups.push(() => up.close());
  const h = await startProxy({ unsafeAllowLoopbackUpstreams: true, resolver: testResolver({ 'api.test': ['127.0.0.1'] }) });
  cleanups.push(() => h.close());
  h.policy.approvals = { ...h.policy.approvals, mode: 'deny' };
  h.policy.rules.push({ action: 'allow', host: 'api.test', port: up.port, endpoint });
  return { up, socketPath: h.socketPath, url: (p) => `http://api.test:${up.port}${p}` };
}

const readOnly: Partial<Endpoint> = { protocol: 'rest', rules: [{ method: 'GET', path: '/**' }] };

describe('method override on L7 endpoints', () => {
  for (const header of ['X-HTTP-Method-Override', 'x-http-method', 'X-METHOD-OVERRIDE']) {
    it(`GET with ${header}: DELETE is refused (403 naming the header), nothing forwarded`, async () => {
      const { up, socketPath, url } = await setup(readOnly);
      const r = await proxyRequest(socketPath, url('/repos/a'), { headers: { [header]: 'DELETE' } });
      expect(r.status).toBe(403);
      const j = r.json();
      expect(j.error).toBe('policy_denied');
      expect(String(j.detail)).toContain(header);
      expect(String(j.detail)).toContain('DELETE');
      expect(up.requests).toEqual([]);
    });
  }

  it('a comma-separated or lower-case override value is caught too', async () => {
    const { up, socketPath, url } = await setup(readOnly);
    const r = await proxyRequest(socketPath, url('/repos/a'), { headers: { 'X-HTTP-Method-Override': 'GET, delete' } });
    expect(r.status).toBe(403);
    expect(up.requests).toEqual([]);
  });

  it('a `_method` query parameter asking for another method is refused', async () => {
    const { up, socketPath, url } = await setup(readOnly);
    const r = await proxyRequest(socketPath, url('/repos/a?x=1&_method=DELETE'));
    expect(r.status).toBe(403);
    expect(String(r.json().detail)).toContain('_method');
    expect(up.requests).toEqual([]);
  });

  it('on an access: read-only endpoint, GET overridden as PUT is refused', async () => {
    const { up, socketPath, url } = await setup({ protocol: 'rest', access: 'read-only' });
    const r = await proxyRequest(socketPath, url('/x'), { method: 'GET', headers: { 'X-Http-Method-Override': 'PUT' } });
    expect(r.status).toBe(403);
    expect(up.requests).toEqual([]);
  });

  it('an override the rules also allow for that path is forwarded; so is one naming the same method', async () => {
    const { up, socketPath, url } = await setup({ protocol: 'rest', rules: [{ method: 'GET', path: '/**' }, { method: 'POST', path: '/repos/**' }] });
    expect((await proxyRequest(socketPath, url('/repos/a'), { headers: { 'X-HTTP-Method-Override': 'POST' } })).status).toBe(200);
    expect((await proxyRequest(socketPath, url('/other'), { headers: { 'X-HTTP-Method-Override': 'GET' } })).status).toBe(200);
    // POST is allowed under /repos only.
    expect((await proxyRequest(socketPath, url('/other'), { headers: { 'X-HTTP-Method-Override': 'POST' } })).status).toBe(403);
    expect(up.requests.map((r) => `${r.method} ${r.url}`)).toEqual(['GET /repos/a', 'GET /other']);
  });

  it('inside a CONNECT tunnel (plain HTTP) the override is checked on each request', async () => {
    const { up, socketPath } = await setup(readOnly);
    const t = await proxyConnect(socketPath, `api.test:${up.port}`);
    expect(t.status).toBe(200);
    const out = await new Promise<string>((resolve) => {
      let data = '';
      t.socket.on('data', (c: Buffer) => (data += c.toString('latin1')));
      t.socket.once('close', () => resolve(data));
      setTimeout(() => resolve(data), 1500);
      t.socket.write(`GET /a HTTP/1.1\r\nHost: api.test:${up.port}\r\n\r\nGET /b HTTP/1.1\r\nHost: api.test:${up.port}\r\nX-HTTP-Method-Override: DELETE\r\n\r\n`);
    });
    t.socket.destroy();
    expect([...out.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]))).toEqual([200, 403]);
    expect(up.requests.map((r) => r.url)).toEqual(['/a']);
  });

  it('endpoints without L7 rules are not affected', async () => {
    const { up, socketPath, url } = await setup({});
    expect((await proxyRequest(socketPath, url('/x'), { headers: { 'X-HTTP-Method-Override': 'DELETE' } })).status).toBe(200);
    expect(up.requests.length).toBe(1);
  });
});
