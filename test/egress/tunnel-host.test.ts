/**
 * Red team (issue 11): every request inside a CONNECT tunnel, the first, one after leading empty
 * lines, and each keep-alive or pipelined one, names the tunnel's CONNECT authority in Host, or it
 * is refused and nothing is forwarded. Plain-HTTP keep-alive to another Host is decided afresh.
 */
import { describe, expect, it } from 'vitest';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { connect } from 'node:net';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { proxyConnect, startProxy, startUpstream, testResolver, useCleanups, useTestCas } from './harness.js';

const cas = useTestCas('egress-thost-');
const cleanups = useCleanups();

async function startHttpsUpstream(): Promise<{ port: number; requests: Array<{ method: string; url: string; host: string | undefined }> }> {
  const ctx = await cas.upstreamCa.contextFor('api.test');
  const requests: Array<{ method: string; url: string; host: string | undefined }> = [];
  const server: HttpsServer = createHttpsServer({ SNICallback: (_n, cb) => cb(null, ctx) }, (req, res) => {
    req.resume();
    req.on('end', () => {
      requests.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host });
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ url: req.url, host: req.headers.host }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(() => new Promise<void>((r) => { server.closeAllConnections(); server.close(() => r()); }));
  return { port: (server.address() as { port: number }).port, requests };
}

function tlsOverTunnel(socket: import('node:net').Socket): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ socket, servername: 'api.test', ca: cas.sandboxCa.caCertPem, ALPNProtocols: ['http/1.1'] }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Write `text`, collect until the server closes or `ms` pass. */
function collect(s: import('node:net').Socket | TLSSocket, text: string, ms = 1500): Promise<string> {
  return new Promise((resolve) => {
    let data = '';
    const done = (): void => { clearTimeout(timer); resolve(data); };
    const timer = setTimeout(done, ms);
    s.on('data', (c: Buffer) => (data += c.toString('latin1')));
    s.once('close', done);
    s.once('end', done);
    s.on('error', () => {});
    s.write(text);
  });
}

function statuses(text: string): number[] {
  return [...text.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => Number(m[1]));
}

async function setup(protocol: 'rest' | undefined) {
  const up = await startHttpsUpstream();
  const plain = await startUpstream('plain');
  cleanups.push(() => plain.close());
  const h = await startProxy({
    unsafeAllowLoopbackUpstreams: true,
    resolver: testResolver({ 'api.test': ['127.0.0.1'], 'evil.example': ['127.0.0.1'] }),
    tls: cas.sandboxCa,
    upstreamCa: cas.upstreamCa.caCertPem,
  });
  cleanups.push(() => h.close());
  // Anything outside the rules is refused at once (not held for an operator).
  h.policy.approvals = { ...h.policy.approvals, mode: 'deny' };
  const endpoint = protocol ? { protocol, rules: [{ method: 'GET', path: '/**' }] } : {};
  h.policy.rules.push({ action: 'allow', host: 'api.test', port: up.port, endpoint });
  h.policy.rules.push({ action: 'allow', host: 'api.test', port: plain.port, endpoint });
  return { up, plain, h };
}

const evil = (port: number, path = '/x'): string => `GET ${path} HTTP/1.1\r\nHost: evil.example:${port}\r\n\r\n`;
const good = (port: number, path = '/ok'): string => `GET ${path} HTTP/1.1\r\nHost: api.test:${port}\r\n\r\n`;

describe('Host inside a decrypted (rest) tunnel', () => {
  for (const [name, payload] of [
    ['first request', (p: number) => evil(p)],
    ['after one leading CRLF', (p: number) => '\r\n' + evil(p)],
    ['after several leading CRLFs', (p: number) => '\r\n\r\n\r\n' + evil(p)],
    ['pipelined after a good request', (p: number) => good(p) + evil(p)],
    ['pipelined after a good request and a CRLF', (p: number) => good(p) + '\r\n' + evil(p)],
    ['absolute-form target naming another authority', (p: number) => `GET http://evil.example:${p}/x HTTP/1.1\r\nHost: api.test:${p}\r\n\r\n`],
  ] as const) {
    it(`TLS: ${name}: refused, nothing for evil.example forwarded`, async () => {
      const { up, h } = await setup('rest');
      const t = await proxyConnect(h.socketPath, `api.test:${up.port}`);
      expect(t.status).toBe(200);
      const s = await tlsOverTunnel(t.socket);
      cleanups.push(() => void s.destroy());
      const out = await collect(s, payload(up.port));
      expect(up.requests.filter((r) => r.host?.startsWith('evil') || r.url === '/x')).toEqual([]);
      const st = statuses(out);
      expect(st.some((x) => x === 400 || x === 403), out).toBe(true);
    });
    it(`plain HTTP in tunnel: ${name}: refused, nothing for evil.example forwarded`, async () => {
      const { plain, h } = await setup('rest');
      const t = await proxyConnect(h.socketPath, `api.test:${plain.port}`);
      expect(t.status).toBe(200);
      await collect(t.socket, payload(plain.port));
      expect(plain.requests.filter((r) => r.headers.host?.startsWith('evil') || r.url === '/x')).toEqual([]);
    });
    it(`plain HTTP in a non-L7 tunnel: ${name}: refused, nothing for evil.example forwarded`, async () => {
      const { plain, h } = await setup(undefined);
      const t = await proxyConnect(h.socketPath, `api.test:${plain.port}`);
      expect(t.status).toBe(200);
      await collect(t.socket, payload(plain.port));
      expect(plain.requests.filter((r) => r.headers.host?.startsWith('evil') || r.url === '/x')).toEqual([]);
    });
  }
});

describe('plain HTTP keep-alive', () => {
  it('a second request on the same connection to another Host is decided afresh', async () => {
    const { plain, h } = await setup(undefined);
    // evil.example resolves to the same loopback upstream, but no rule allows it.
    const s = connect(h.socketPath);
    cleanups.push(() => void s.destroy());
    const out = await collect(
      s,
      `GET http://api.test:${plain.port}/ok HTTP/1.1\r\nHost: api.test:${plain.port}\r\n\r\n` +
        `GET http://evil.example:${plain.port}/x HTTP/1.1\r\nHost: api.test:${plain.port}\r\n\r\n`,
    );
    expect(statuses(out)).toEqual([200, 403]);
    expect(out).toMatch(/"error":"policy_denied"/);
    expect(plain.requests.map((r) => `${r.url} ${r.headers.host}`)).toEqual([`/ok api.test:${plain.port}`]);
  });

  it('a second request after leading empty lines to another Host is decided afresh', async () => {
    const { plain, h } = await setup(undefined);
    const s = connect(h.socketPath);
    cleanups.push(() => void s.destroy());
    const out = await collect(
      s,
      `GET http://api.test:${plain.port}/ok HTTP/1.1\r\nHost: api.test:${plain.port}\r\n\r\n\r\n\r\n` +
        `GET http://evil.example:${plain.port}/x HTTP/1.1\r\nHost: evil.example:${plain.port}\r\n\r\n`,
    );
    expect(statuses(out)).toEqual([200, 403]);
    expect(plain.requests.map((r) => r.url)).toEqual(['/ok']);
  });
});

describe('the tunnel still serves its own host', () => {
  it('a good request after leading CRLFs in a non-L7 tunnel is inspected and forwarded', async () => {
    const { plain, h } = await setup(undefined);
    const t = await proxyConnect(h.socketPath, `api.test:${plain.port}`);
    const out = await collect(t.socket, '\r\n' + good(plain.port));
    expect(statuses(out)).toEqual([200]);
    expect(plain.requests.map((r) => r.url)).toEqual(['/ok']);
  });
  it('a good request after leading CRLFs in a decrypted tunnel is forwarded', async () => {
    const { up, h } = await setup('rest');
    const t = await proxyConnect(h.socketPath, `api.test:${up.port}`);
    const s = await tlsOverTunnel(t.socket);
    cleanups.push(() => void s.destroy());
    const out = await collect(s, '\r\n' + good(up.port));
    expect(statuses(out)).toEqual([200]);
    expect(up.requests.map((r) => r.url)).toEqual(['/ok']);
  });
});
