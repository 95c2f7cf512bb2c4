import { afterEach, describe, expect, it } from 'vitest';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createNetServer } from 'node:net';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  proxyConnect,
  proxyRequest,
  rawExchange,
  readOnce,
  startEcho,
  startProxy,
  startUpstream,
  testResolver,
  waitFor,
  type Harness,
} from './harness.js';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await (cleanups.pop() as () => Promise<void>)();
});

async function setup(opts: Parameters<typeof startProxy>[0] = {}, policy?: Parameters<typeof startProxy>[1]) {
  const up = await startUpstream();
  cleanups.push(() => up.close());
  const h = await startProxy({ unsafeAllowLoopbackUpstreams: true, resolver: testResolver({ 'api.test': ['127.0.0.1'], 'a.test': ['127.0.0.1'], 'b.test': ['127.0.0.1'], 'c.test': ['127.0.0.1'], 'x.api.test': ['127.0.0.1'] }), ...opts }, policy);
  cleanups.push(() => h.close());
  return { up, h };
}

const kinds = (h: Harness, kind: string) => h.events.filter((e) => e.kind === kind);

describe('egress proxy: allow and refuse', () => {
  it('forwards an allowed absolute-form request and emits request/decision events', async () => {
    const { up, h } = await setup();
    h.policy.rules.push({ action: 'allow', host: 'api.test', port: up.port });
    const res = await proxyRequest(h.socketPath, `http://api.test:${up.port}/v1/hello?x=1`);
    expect(res.status).toBe(200);
    expect(res.json()).toMatchObject({ method: 'GET', url: '/v1/hello?x=1', host: `api.test:${up.port}` });
    expect(kinds(h, 'net.request')[0]).toMatchObject({ host: 'api.test', port: up.port, method: 'GET', path: '/v1/hello' });
    expect(kinds(h, 'net.decision')[0]).toMatchObject({ action: 'allow', rule: 'test/0', address: '127.0.0.1', unsafe_allow_loopback_upstreams: true });
  });

  it('keeps the client connection alive across requests and forwards POST bodies (length and chunked)', async () => {
    const { up, h } = await setup();
    h.policy.rules.push({ action: 'allow', host: 'api.test', port: up.port });
    const a = `POST http://api.test:${up.port}/one HTTP/1.1\r\nHost: api.test:${up.port}\r\nContent-Length: 5\r\n\r\nhello`;
    const b = `POST http://api.test:${up.port}/two HTTP/1.1\r\nHost: api.test:${up.port}\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n`;
    const c = `GET http://api.test:${up.port}/three HTTP/1.1\r\nHost: api.test:${up.port}\r\nConnection: close\r\n\r\n`;
    const out = await rawExchange(h.socketPath, a + b + c);
    expect(out.match(/HTTP\/1\.1 200/g)).toHaveLength(3);
    expect(up.requests.map((r) => [r.url, r.body])).toEqual([
      ['/one', 'hello'],
      ['/two', 'abcde'],
      ['/three', ''],
    ]);
  });

  it('refuses an explicitly denied host with a JSON 403 and X-Nemoclaw-Policy, without contacting it', async () => {
    const { up, h } = await setup();
    h.policy.rules.push({ action: 'deny', host: 'api.test', port: up.port }, { action: 'allow', host: 'api.test', port: up.port });
    const res = await proxyRequest(h.socketPath, `http://api.test:${up.port}/`);
    expect(res.status).toBe(403);
    expect(res.headers['x-nemoclaw-policy']).toMatch(/^policy_denied/);
    expect(res.json()).toMatchObject({ error: 'policy_denied', host: 'api.test', port: up.port, rule: 'test/0' });
    expect(res.json().next_steps).toBeInstanceOf(Array);
    expect(up.requests).toHaveLength(0);
  });

  it('refuses with approvals.mode deny at once, without a prompt', async () => {
    const { up, h } = await setup({}, (p) => (p.approvals.mode = 'deny'));
    const res = await proxyRequest(h.socketPath, `http://api.test:${up.port}/`);
    expect(res.status).toBe(403);
    expect(h.proxy.pending()).toHaveLength(0);
  });

  it('answers malformed and smuggling requests with 400 and never forwards them', async () => {
    const { up, h } = await setup();
    h.policy.rules.push({ action: 'allow', host: 'api.test', port: up.port });
    const t = `http://api.test:${up.port}`;
    const cases = [
      `POST ${t}/ HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n`,
      `POST ${t}/ HTTP/1.1\r\nHost: api.test\r\nContent-Length: 4\r\nContent-Length: 40\r\n\r\nabcd`,
      `GET ${t}/../../etc/passwd HTTP/1.1\r\nHost: api.test\r\n\r\n`,
      `GET ${t}/a%2F..%2F..%2Fx HTTP/1.1\r\nHost: api.test\r\n\r\n`,
      `GET ${t}/ HTTP/1.1\r\nHost: api.test\r\nX-Pad: ${'a'.repeat(17_000)}\r\n\r\n`,
    ];
    for (const c of cases) {
      const out = await rawExchange(h.socketPath, c);
      expect(out).toMatch(/^HTTP\/1\.1 (400|431) /);
      expect(out).toContain('"error":"bad_request"');
    }
    expect(up.requests).toHaveLength(0);
  });
  it('sends identical duplicate Content-Length on as one header with one value (upstreams that read the first or the last agree)', async () => {
    // RFC 9110 §8.6: a recipient may accept `Content-Length: 5, 5` or the header twice with the same
    // value, but must then forward one value. Node's own server (llhttp) refuses duplicates.
    const heads: string[] = [];
    const raw = createNetServer((sock) => {
      let buf = '';
      sock.on('data', (c: Buffer) => {
        buf += c.toString('latin1');
        const end = buf.indexOf('\r\n\r\n');
        if (end >= 0 && buf.length >= end + 4 + 5) {
          heads.push(buf.slice(0, end + 4 + 5));
          sock.end('HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok');
        }
      });
    });
    await new Promise<void>((r) => raw.listen(0, '127.0.0.1', () => r()));
    cleanups.push(() => new Promise<void>((r) => raw.close(() => r())));
    const port = (raw.address() as { port: number }).port;
    const { h } = await setup();
    h.policy.rules.push({ action: 'allow', host: 'api.test', port });
    const up = await startUpstream();
    cleanups.push(() => up.close());
    h.policy.rules.push({ action: 'allow', host: 'b.test', port: up.port });
    for (const cl of ['Content-Length: 5, 5\r\n', 'Content-Length: 5\r\nContent-Length: 5\r\n']) {
      const out = await rawExchange(h.socketPath, `POST http://api.test:${port}/x HTTP/1.1\r\nHost: api.test:${port}\r\n${cl}Connection: close\r\n\r\nhello`);
      expect(out).toMatch(/^HTTP\/1\.1 200 /);
      // Node's server refuses duplicates outright: it must get one clean header too.
      const viaNode = await rawExchange(h.socketPath, `POST http://b.test:${up.port}/y HTTP/1.1\r\nHost: b.test:${up.port}\r\n${cl}Connection: close\r\n\r\nhello`);
      expect(viaNode).toMatch(/^HTTP\/1\.1 200 /);
    }
    expect(heads).toHaveLength(2);
    for (const head of heads) {
      expect(head.match(/^content-length:.*$/gim)).toEqual(['Content-Length: 5']);
      expect(head.endsWith('\r\n\r\nhello')).toBe(true);
    }
    expect(up.requests.map((r) => r.body)).toEqual(['hello', 'hello']);
  });
});

describe('egress proxy: held requests and approvals', () => {
  it('holds an unknown host and resumes the very same request on approve once', async () => {
    const { up, h } = await setup();
    const pending = proxyRequest(h.socketPath, `http://api.test:${up.port}/held`, { method: 'POST', body: 'payload' });
    const [entry] = await waitFor(() => h.proxy.pending().length === 1 && h.proxy.pending(), 'a pending entry');
    expect(entry).toMatchObject({ host: 'api.test', port: up.port, state: 'held', waiters: 1, request: 'POST /held' });
    expect(up.requests).toHaveLength(0);
    const result = await h.proxy.decide(entry!.id, 'once', 'cli');
    expect(result.waiters).toBe(1);
    const res = await pending;
    expect(res.status).toBe(200);
    expect(res.json()).toMatchObject({ url: '/held', body: 'payload' });
    expect(kinds(h, 'net.held')[0]).toMatchObject({ pending_id: entry!.id, joined: false });
    expect(kinds(h, 'approval.decision')[0]).toMatchObject({ decision: 'once', by: 'cli', pending_id: entry!.id });
    expect(typeof kinds(h, 'approval.decision')[0]!.latency_ms).toBe('number');
    // once does not add a rule: the next request is held again
    expect(h.policy.rules).toHaveLength(0);
  });

  it('resumes a held CONNECT with 200 and tunnels', async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.close());
    const { h } = await setup();
    const tunnel = proxyConnect(h.socketPath, `api.test:${echo.port}`);
    const [entry] = await waitFor(() => h.proxy.pending().length === 1 && h.proxy.pending(), 'a pending CONNECT');
    expect(entry!.request).toBe(`CONNECT api.test:${echo.port}`);
    await h.proxy.decide(entry!.id, 'session', 'tui');
    const t = await tunnel;
    expect(t.status).toBe(200);
    t.socket.write('\x16binary-ish');
    expect(await readOnce(t.socket)).toBe('\x16binary-ish');
    t.socket.destroy();
    expect(h.policy.session).toEqual([{ action: 'allow', host: 'api.test', port: echo.port }]);
  });

  it('gives deny and timeout their JSON 403 and records who decided', async () => {
    const { up, h } = await setup({}, (p) => (p.approvals.timeout = 1));
    const denied = proxyRequest(h.socketPath, `http://api.test:${up.port}/`);
    const [entry] = await waitFor(() => h.proxy.pending().length === 1 && h.proxy.pending(), 'pending');
    await h.proxy.decide(entry!.id, 'deny', 'tui');
    const d = await denied;
    expect(d.status).toBe(403);
    expect(d.json()).toMatchObject({ error: 'policy_denied' });
    expect(d.json().detail).toMatch(/denied by tui/);

    const timedOut = await proxyRequest(h.socketPath, `http://api.test:${up.port}/`);
    expect(timedOut.status).toBe(403);
    expect(timedOut.headers['x-nemoclaw-policy']).toMatch(/^approval_timeout/);
    expect(timedOut.json()).toMatchObject({ error: 'approval_timeout', host: 'api.test' });
    expect(kinds(h, 'approval.decision').map((e) => e.by)).toEqual(['tui', 'timeout']);
    expect(up.requests).toHaveLength(0);
  });

  it('always and deny_always write overlay rules', async () => {
    const { up, h } = await setup();
    const first = proxyRequest(h.socketPath, `http://api.test:${up.port}/`);
    const [e1] = await waitFor(() => h.proxy.pending().length === 1 && h.proxy.pending(), 'pending');
    await h.proxy.decide(e1!.id, 'always', 'cli');
    expect((await first).status).toBe(200);
    expect(h.policy.overlay[0]).toMatchObject({ rule: { action: 'allow', host: 'api.test', port: up.port } });
    expect(h.policy.overlay[0]!.reason).toMatch(/always allow api.test/);
    // now allowed without a prompt
    expect((await proxyRequest(h.socketPath, `http://api.test:${up.port}/again`)).status).toBe(200);

    const second = proxyRequest(h.socketPath, `http://b.test:${up.port}/`);
    const [e2] = await waitFor(() => h.proxy.pending().length === 1 && h.proxy.pending(), 'pending b');
    await h.proxy.decide(e2!.id, 'deny_always', 'cli');
    expect((await second).status).toBe(403);
    expect(h.policy.overlay[1]).toMatchObject({ rule: { action: 'deny', host: 'b.test' } });
  });

  it('joins 200 concurrent requests to 3 hosts into 3 prompts and releases them all', async () => {
    const { up, h } = await setup();
    const hosts = ['a.test', 'b.test', 'c.test'];
    const all = Array.from({ length: 200 }, (_, i) => proxyRequest(h.socketPath, `http://${hosts[i % 3]}:${up.port}/r${i}`));
    await waitFor(() => h.proxy.pending().reduce((n, p) => n + p.waiters, 0) === 200 && true, '200 waiters', 15_000);
    const pending = h.proxy.pending();
    expect(pending.map((p) => p.host).sort()).toEqual(hosts);
    for (const p of pending) await h.proxy.decide(p.id, 'once', 'cli');
    const results = await Promise.all(all);
    expect(results.every((r) => r.status === 200)).toBe(true);
    expect(up.requests).toHaveLength(200);
    expect(kinds(h, 'approval.decision')).toHaveLength(3);
    expect(kinds(h, 'net.held').filter((e) => e.joined === false)).toHaveLength(3);
  }, 30_000);

  it('bounds the queue: the oldest prompt is refused with queue_full', async () => {
    const { up, h } = await setup({}, (p) => (p.approvals.max_pending = 2));
    const a = proxyRequest(h.socketPath, `http://a.test:${up.port}/`);
    await waitFor(() => h.proxy.pending().length === 1, 'a');
    const b = proxyRequest(h.socketPath, `http://b.test:${up.port}/`);
    await waitFor(() => h.proxy.pending().length === 2, 'b');
    const c = proxyRequest(h.socketPath, `http://c.test:${up.port}/`);
    const ra = await a;
    expect(ra.status).toBe(403);
    expect(ra.json()).toMatchObject({ error: 'queue_full', host: 'a.test' });
    expect(h.proxy.pending().map((p) => p.host)).toEqual(['b.test', 'c.test']);
    for (const p of h.proxy.pending()) await h.proxy.decide(p.id, 'deny', 'cli');
    expect((await b).status).toBe(403);
    expect((await c).status).toBe(403);
  });

  it('unattended with when_unattended deny: refused at once, but a pending entry stays for always-allow', async () => {
    const { up, h } = await setup({}, (p) => (p.approvals.when_unattended = 'deny'));
    h.operators.count = 0;
    const res = await proxyRequest(h.socketPath, `http://api.test:${up.port}/`);
    expect(res.status).toBe(403);
    expect(res.json().detail).toMatch(/no operator is attached/);
    const [entry] = h.proxy.pending();
    expect(entry).toMatchObject({ state: 'unattended', waiters: 0, host: 'api.test' });
    await h.proxy.decide(entry!.id, 'always', 'cli');
    expect((await proxyRequest(h.socketPath, `http://api.test:${up.port}/`)).status).toBe(200);
  });

  it('holds when unattended with when_unattended hold', async () => {
    const { up, h } = await setup();
    h.operators.count = 0;
    const res = proxyRequest(h.socketPath, `http://api.test:${up.port}/`);
    const [entry] = await waitFor(() => h.proxy.pending().length === 1 && h.proxy.pending(), 'pending');
    expect(entry!.state).toBe('held');
    await h.proxy.decide(entry!.id, 'once', 'cli');
    expect((await res).status).toBe(200);
  });

  it('releases held requests when a policy change allows them', async () => {
    const { up, h } = await setup();
    const res = proxyRequest(h.socketPath, `http://api.test:${up.port}/`);
    await waitFor(() => h.proxy.pending().length === 1, 'pending');
    h.policy.rules.push({ action: 'allow', host: 'api.test', port: up.port });
    h.proxy.policyChanged(2);
    expect((await res).status).toBe(200);
    expect(h.proxy.pending()).toHaveLength(0);
  });

  it('refuses deciding an unknown id with a clear error', async () => {
    const { h } = await setup();
    await expect(h.proxy.decide('p-999', 'once', 'cli')).rejects.toThrow(/no pending request "p-999"/);
    // The id comes from the client: quoted as a bounded JSON preview, control characters escaped.
    const err = await h.proxy.decide(`p-${'x'.repeat(10_000)}\u001b[31m`, 'once', 'cli').catch((e: Error) => e);
    expect((err as Error).message).toMatch(/^no pending request "p-x{37}… \(10014 characters\) \(already decided/);
    expect((err as Error).message.length).toBeLessThan(200);
  });
});

describe('egress proxy: SSRF guard (no unsafe option)', () => {
  it('refuses names resolving to loopback or metadata even when listed, and non-canonical literals', async () => {
    const h = await startProxy({ resolver: testResolver({ 'loop.test': ['127.0.0.1'], 'meta.test': ['169.254.169.254'], 'mixed.test': ['93.184.216.34', '127.0.0.2'] }) });
    cleanups.push(() => h.close());
    for (const host of ['loop.test', 'meta.test', 'mixed.test', '169.254.169.254', '2130706433', '0x7f.1', '[::ffff:127.0.0.1]', '[64:ff9b::a9fe:a9fe]']) {
      const bare = host.replace(/^\[|\]$/g, '');
      h.policy.rules.push({ action: 'allow', host: bare, port: 80 });
    }
    // normalised literal forms are what the policy sees
    h.policy.rules.push({ action: 'allow', host: '127.0.0.1', port: 80 }, { action: 'allow', host: '::ffff:7f00:1', port: 80 }, { action: 'allow', host: '64:ff9b::a9fe:a9fe', port: 80 });
    for (const host of ['loop.test', 'meta.test', 'mixed.test', '169.254.169.254', '2130706433', '0x7f.1', '[::ffff:127.0.0.1]', '[64:ff9b::a9fe:a9fe]']) {
      const res = await proxyRequest(h.socketPath, `http://${host}/`);
      expect(res.status, host).toBe(403);
      expect(res.json(), host).toMatchObject({ error: 'ssrf_denied' });
    }
    const t = await proxyConnect(h.socketPath, 'meta.test:80');
    expect(t.status).toBe(403);
    expect(JSON.parse(t.body)).toMatchObject({ error: 'ssrf_denied' });
    expect(h.events.some((e) => 'unsafe_allow_loopback_upstreams' in e)).toBe(false);
  });
});

describe('egress proxy: L7 and tunnels', () => {
  it('checks method and path per request on a rest endpoint, on keep-alive connections too', async () => {
    const { up, h } = await setup();
    h.policy.rules.push({ action: 'allow', host: 'api.test', port: up.port, endpoint: { protocol: 'rest', rules: [{ method: 'GET', path: '/repos/**' }] } });
    const t = `http://api.test:${up.port}`;
    const out = await rawExchange(h.socketPath, `GET ${t}/repos/a HTTP/1.1\r\nHost: x\r\n\r\nPOST ${t}/repos/a HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi`);
    expect(out).toMatch(/^HTTP\/1\.1 200/);
    expect(out).toMatch(/HTTP\/1\.1 403 Forbidden[\s\S]*"error":"policy_denied"[\s\S]*POST \/repos\/a/);
    expect(up.requests.map((r) => r.method)).toEqual(['GET']);
  });

  it('inspects plain HTTP inside a CONNECT tunnel: Host must match, L7 applies', async () => {
    const { up, h } = await setup();
    h.policy.rules.push({ action: 'allow', host: 'api.test', port: up.port, endpoint: { protocol: 'rest', rules: [{ method: 'GET', path: '/**' }] } });
    const t1 = await proxyConnect(h.socketPath, `api.test:${up.port}`);
    expect(t1.status).toBe(200);
    t1.socket.write(`GET /ok HTTP/1.1\r\nHost: api.test:${up.port}\r\n\r\n`);
    expect(await readOnce(t1.socket)).toMatch(/^HTTP\/1\.1 200[\s\S]*"url":"\/ok"/);
    t1.socket.write(`DELETE /ok HTTP/1.1\r\nHost: api.test:${up.port}\r\n\r\n`);
    expect(await readOnce(t1.socket)).toMatch(/^HTTP\/1\.1 403/);
    const t2 = await proxyConnect(h.socketPath, `api.test:${up.port}`);
    t2.socket.write(`GET /ok HTTP/1.1\r\nHost: evil.test\r\n\r\n`);
    expect(await readOnce(t2.socket)).toMatch(/^HTTP\/1\.1 400[\s\S]*differs from the tunnel/);
    expect(up.requests).toHaveLength(1);
  });

  it('refuses a CONNECT before tunnelling and revokes an open tunnel on reload', async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.close());
    const { h } = await setup();
    h.policy.approvals.mode = 'deny';
    const refused = await proxyConnect(h.socketPath, `b.test:${echo.port}`);
    expect(refused.status).toBe(403);
    expect(refused.head).toMatch(/X-Nemoclaw-Policy: policy_denied/);

    h.policy.rules.push({ action: 'allow', host: 'a.test', port: echo.port });
    const t = await proxyConnect(h.socketPath, `a.test:${echo.port}`);
    t.socket.write('\x16hello');
    expect(await readOnce(t.socket)).toBe('\x16hello');
    const closed = new Promise<void>((r) => t.socket.once('close', () => r()));
    h.policy.rules = [];
    h.proxy.policyChanged(3);
    await closed;
    expect(h.proxy.counters().revoked).toBe(1);
    expect(kinds(h, 'net.decision').some((e) => e.action === 'revoke' && e.host === 'a.test')).toBe(true);
  });
});

describe('egress proxy: inference.local', () => {
  it('answers 503 naming the router when it is absent', async () => {
    const { h } = await setup();
    const res = await proxyRequest(h.socketPath, 'http://inference.local/v1/chat/completions', { method: 'POST', body: '{}' });
    expect(res.status).toBe(503);
    expect(res.json()).toMatchObject({ error: 'inference_unavailable' });
    expect(res.json().detail).toMatch(/privacy router/);
  });

  it('forwards plain and CONNECT-tunnelled requests to the router socket, never held', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'infer-'));
    const sock = join(dir, 'router.sock');
    const router = createHttpServer((req, res) => res.end(JSON.stringify({ router: true, url: req.url, host: req.headers.host })));
    await new Promise<void>((r) => router.listen(sock, () => r()));
    cleanups.push(() => new Promise<void>((r) => router.close(() => r())));
    const { h } = await setup({ inferenceSocket: () => sock });
    const res = await proxyRequest(h.socketPath, 'http://inference.local/v1/models');
    expect(res.json()).toMatchObject({ router: true, url: '/v1/models', host: 'inference.local' });
    const t = await proxyConnect(h.socketPath, 'inference.local:80');
    t.socket.write('GET /v1/x HTTP/1.1\r\nHost: inference.local\r\n\r\n');
    expect(await readOnce(t.socket)).toMatch(/"router":true/);
    t.socket.destroy();
    expect(h.proxy.pending()).toHaveLength(0);
  });
});

describe('egress proxy: clients that half-close (FIN right after the request)', () => {
  it('answers pipelined requests, a body included, then closes', async () => {
    const { up, h } = await setup();
    h.policy.rules.push({ action: 'allow', host: 'api.test', port: up.port });
    const host = `api.test:${up.port}`;
    const payload = `GET http://${host}/one HTTP/1.1\r\nHost: ${host}\r\n\r\nPOST http://${host}/two HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 5\r\n\r\nhello`;
    // Resolves when the proxy closes the connection (no untilText).
    const data = await rawExchange(h.socketPath, payload, undefined, 5_000, { halfClose: true });
    expect(data.match(/HTTP\/1\.1 200 OK/g)?.length, data).toBe(2);
    expect(data).toContain('"url":"/one"');
    expect(data).toContain('"body":"hello"');
    await waitFor(() => h.proxy.counters().open_connections === 0, 'the connection to be released');
  });

  it('closes at once when the FIN comes before the whole body, and forwards nothing', async () => {
    const { up, h } = await setup();
    h.policy.rules.push({ action: 'allow', host: 'api.test', port: up.port });
    const host = `api.test:${up.port}`;
    const data = await rawExchange(h.socketPath, `POST http://${host}/cut HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 100\r\n\r\nonly-part`, undefined, 3_000, { halfClose: true });
    expect(data).toBe('');
    expect(up.requests.map((r) => r.url)).not.toContain('/cut');
    await waitFor(() => h.proxy.counters().open_connections === 0, 'the connection to be released');
  });

  it('passes a FIN through a raw CONNECT tunnel: the echo still comes back, then the tunnel closes', async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.close());
    const { h } = await setup();
    h.policy.rules.push({ action: 'allow', host: 'api.test', port: echo.port, endpoint: { protocol: 'tcp' } });
    const data = await rawExchange(h.socketPath, `CONNECT api.test:${echo.port} HTTP/1.1\r\nHost: api.test:${echo.port}\r\n\r\n\x00\x01ping`, undefined, 5_000, { halfClose: true });
    expect(data.startsWith('HTTP/1.1 200 Connection Established\r\n\r\n'), data).toBe(true);
    expect(data.endsWith('\x00\x01ping')).toBe(true);
    await waitFor(() => h.proxy.counters().open_connections === 0, 'the tunnel to be released');
  });
});
