/**
 * TLS termination for L7 on HTTPS: the per-sandbox CA, leaves minted per host, and CONNECT tunnels
 * to `protocol: rest` endpoints decrypted, checked per request and re-originated to an HTTPS test
 * upstream (its certificate from a separate test CA, given to the proxy as `cas.upstreamCa`).
 * Needs the `openssl` command (apt-get install -y openssl).
 */
import { describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { execa } from 'execa';
import { loadOrCreateSandboxCa, trustEnv, type SandboxCa } from '../../src/egress/tls.js';
import { proxyConnect, startProxy, testResolver, useCleanups, useTestCas, waitFor } from './harness.js';

const cas = useTestCas('egress-tls-');
const cleanups = useCleanups();

interface HttpsUpstream {
  port: number;
  requests: Array<{ method: string; url: string; host: string | undefined; body: string }>;
}

async function startHttpsUpstream(ca: SandboxCa, host: string): Promise<HttpsUpstream> {
  const ctx = await ca.contextFor(host);
  const requests: HttpsUpstream['requests'] = [];
  const server: HttpsServer = createHttpsServer({ SNICallback: (_name, cb) => cb(null, ctx) }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      requests.push({ method: req.method ?? '', url: req.url ?? '', host: req.headers.host, body });
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ from: 'https-upstream', method: req.method, url: req.url, host: req.headers.host }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return { port: (server.address() as { port: number }).port, requests };
}

/** TLS over a CONNECT tunnel, trusting `ca` only. */
function tlsOverTunnel(socket: import('node:net').Socket, servername: string, ca: string): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ socket, servername, ca, ALPNProtocols: ['http/1.1'] }, () => resolve(s));
    s.once('error', reject);
  });
}

/** One request on a (TLS) socket; reads one Content-Length-framed response. */
function exchange(s: TLSSocket, text: string): Promise<{ status: number; head: string; body: string }> {
  return new Promise((resolve, reject) => {
    let data = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      data = Buffer.concat([data, c]);
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = data.subarray(0, end).toString('latin1');
      const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
      if (data.length < end + 4 + len) return;
      s.removeListener('data', onData);
      resolve({ status: Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0), head, body: data.subarray(end + 4, end + 4 + len).toString() });
    };
    s.on('data', onData);
    s.once('error', reject);
    s.write(text);
  });
}

async function setupRest(over: Parameters<typeof startProxy>[0] = {}) {
  const up = await startHttpsUpstream(cas.upstreamCa, 'api.test');
  const h = await startProxy({
    unsafeAllowLoopbackUpstreams: true,
    resolver: testResolver({ 'api.test': ['127.0.0.1'], 'plain.test': ['127.0.0.1'] }),
    tls: cas.sandboxCa,
    upstreamCa: cas.upstreamCa.caCertPem,
    ...over,
  });
  cleanups.push(() => h.close());
  h.policy.rules.push({ action: 'allow', host: 'api.test', port: up.port, endpoint: { protocol: 'rest', rules: [{ method: 'GET', path: '/repos/**' }] } });
  return { up, h };
}

describe('per-sandbox CA', () => {
  it('keeps the key private, the certificate and bundle public, and survives a reload', async () => {
    expect(statSync(join(cas.dir, 'sbx', 'tls', 'ca.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(cas.dir, 'sbx', 'tls', 'leaf.key')).mode & 0o777).toBe(0o600);
    expect(statSync(join(cas.dir, 'sbx', 'tls')).mode & 0o777).toBe(0o700);
    expect(statSync(cas.sandboxCa.caCertPath).mode & 0o777).toBe(0o644);
    const ca = new X509Certificate(cas.sandboxCa.caCertPem);
    expect(ca.ca).toBe(true);
    expect(ca.subject).toMatch(/nemoclaw sandbox CA \(test\)/);
    // The bundle is the system roots plus ours, so ordinary HTTPS keeps verifying inside.
    const bundle = readFileSync(cas.sandboxCa.bundlePath, 'utf8');
    expect(bundle.endsWith(cas.sandboxCa.caCertPem)).toBe(true);
    expect(bundle.match(/BEGIN CERTIFICATE/g)!.length).toBeGreaterThan(10);
    const again = await loadOrCreateSandboxCa({ privateDir: join(cas.dir, 'sbx', 'tls'), trustDir: join(cas.dir, 'sbx', 'trust'), sandboxName: 'test' });
    expect(again.caCertPem).toBe(cas.sandboxCa.caCertPem);
    expect(cas.sandboxCa.trustBundle()).toMatchObject({ target: '/opt/nemoclaw/trust', env: trustEnv() });
    expect(Object.keys(trustEnv()).sort()).toEqual(['CURL_CA_BUNDLE', 'GIT_SSL_CAINFO', 'NODE_EXTRA_CA_CERTS', 'REQUESTS_CA_BUNDLE', 'SSL_CERT_FILE', 'WGETRC']);
    // Node gets the system roots too (NODE_EXTRA_CA_CERTS is added to Node's own roots, not the
    // system's); wget reads its CA file from the startup file.
    expect(trustEnv().NODE_EXTRA_CA_CERTS).toBe('/opt/nemoclaw/trust/ca-bundle.pem');
    expect(readFileSync(join(cas.dir, 'sbx', 'trust', 'wgetrc'), 'utf8')).toContain('ca_certificate = /opt/nemoclaw/trust/ca-bundle.pem');
  });

  it('replaces a CA whose key does not match its certificate', async () => {
    const d = mkdtempSync(join(tmpdir(), 'egress-ca-'));
    cleanups.push(() => rmSync(d, { recursive: true, force: true }));
    const a = await loadOrCreateSandboxCa({ privateDir: join(d, 'tls'), trustDir: join(d, 'trust'), sandboxName: 'a' });
    await execa('openssl', ['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', join(d, 'tls', 'ca.key')]);
    const b = await loadOrCreateSandboxCa({ privateDir: join(d, 'tls'), trustDir: join(d, 'trust'), sandboxName: 'a' });
    expect(b.caCertPem).not.toBe(a.caCertPem);
  });

  it('mints one cached leaf per host, for exactly that host, and refuses names that are not hosts', async () => {
    const before = cas.sandboxCa.minted();
    const [c1, c2] = await Promise.all([cas.sandboxCa.contextFor('leaf.example.test'), cas.sandboxCa.contextFor('leaf.example.test')]);
    expect(c1).toBe(c2);
    expect(cas.sandboxCa.minted() - before).toBe(1);
    await expect(cas.sandboxCa.contextFor('bad host/CN=x')).rejects.toThrow(/not a DNS name/);
  });
});

describe('TLS termination for rest endpoints', () => {
  it('serves a leaf for the host from the sandbox CA, lets GET through and refuses POST with the JSON 403 over TLS', async () => {
    const { up, h } = await setupRest();
    const t = await proxyConnect(h.socketPath, `api.test:${up.port}`);
    expect(t.status).toBe(200);
    const s = await tlsOverTunnel(t.socket, 'api.test', cas.sandboxCa.caCertPem);
    cleanups.push(() => void s.destroy());
    const leaf = s.getPeerX509Certificate() as X509Certificate;
    expect(leaf.subjectAltName).toBe('DNS:api.test');
    expect(leaf.checkIssued(new X509Certificate(cas.sandboxCa.caCertPem))).toBe(true);

    const get = await exchange(s, `GET /repos/a?x=1 HTTP/1.1\r\nHost: api.test:${up.port}\r\n\r\n`);
    expect(get.status).toBe(200);
    expect(JSON.parse(get.body)).toMatchObject({ from: 'https-upstream', method: 'GET', url: '/repos/a?x=1', host: `api.test:${up.port}` });

    // Same keep-alive TLS connection: the next request is checked on its own.
    const post = await exchange(s, `POST /repos/a HTTP/1.1\r\nHost: api.test:${up.port}\r\nContent-Length: 2\r\n\r\nhi`);
    expect(post.status).toBe(403);
    expect(post.head).toMatch(/X-Nemoclaw-Policy: policy_denied/);
    expect(JSON.parse(post.body)).toMatchObject({ error: 'policy_denied', host: 'api.test', port: up.port });
    expect(up.requests.map((r) => `${r.method} ${r.url}`)).toEqual(['GET /repos/a?x=1']);
    expect(h.events.some((e) => e.kind === 'net.request' && e.tls === true && e.method === 'POST')).toBe(true);
    expect(h.proxy.counters().tls_terminated).toBe(1);
  });

  it('verifies the upstream: a certificate from a CA the proxy does not trust gives a 502, not a silent pass', async () => {
    const { up, h } = await setupRest({ upstreamCa: cas.sandboxCa.caCertPem });
    const t = await proxyConnect(h.socketPath, `api.test:${up.port}`);
    const s = await tlsOverTunnel(t.socket, 'api.test', cas.sandboxCa.caCertPem);
    cleanups.push(() => void s.destroy());
    const res = await exchange(s, `GET /repos/a HTTP/1.1\r\nHost: api.test:${up.port}\r\n\r\n`);
    expect(res.status).toBe(502);
    expect(JSON.parse(res.body)).toMatchObject({ error: 'upstream_error' });
    expect(JSON.parse(res.body).detail).toMatch(/certificate/i);
    expect(up.requests).toHaveLength(0);
  });

  it('records a client that does not trust the sandbox CA and closes the tunnel', async () => {
    const { up, h } = await setupRest();
    const t = await proxyConnect(h.socketPath, `api.test:${up.port}`);
    await expect(tlsOverTunnel(t.socket, 'api.test', cas.upstreamCa.caCertPem)).rejects.toThrow(/certificate/i);
    await waitFor(() => h.events.find((e) => e.error === 'tls_handshake_failed'), 'tls_handshake_failed event');
    expect(h.proxy.counters().tls_handshake_failed).toBe(1);
  });

  it('refuses a TLS tunnel to a rest endpoint when no CA is configured (L7 cannot be enforced)', async () => {
    const { up, h } = await setupRest({ tls: undefined });
    const t = await proxyConnect(h.socketPath, `api.test:${up.port}`);
    expect(t.status).toBe(200);
    await expect(tlsOverTunnel(t.socket, 'api.test', cas.upstreamCa.caCertPem)).rejects.toThrow();
    expect(h.events.find((e) => e.error === 'tls_termination_unavailable')).toBeDefined();
    expect(up.requests).toHaveLength(0);
  });

  it('leaves an endpoint without L7 rules as a pass-through tunnel: the client sees the upstream itself', async () => {
    const { up, h } = await setupRest();
    h.policy.rules.push({ action: 'allow', host: 'plain.test', port: up.port });
    const t = await proxyConnect(h.socketPath, `plain.test:${up.port}`);
    expect(t.status).toBe(200);
    // Bytes are untouched end to end: the upstream's own certificate (for api.test) arrives.
    const s = await tlsOverTunnel(t.socket, 'api.test', cas.upstreamCa.caCertPem);
    cleanups.push(() => void s.destroy());
    const leaf = s.getPeerX509Certificate() as X509Certificate;
    expect(leaf.checkIssued(new X509Certificate(cas.upstreamCa.caCertPem))).toBe(true);
    const res = await exchange(s, `POST /anything HTTP/1.1\r\nHost: api.test\r\nContent-Length: 0\r\n\r\n`);
    expect(res.status).toBe(200);
    expect(h.proxy.counters().tls_terminated).toBe(0);
  });

  it('answers https://inference.local from the router, never held', async () => {
    const d = mkdtempSync(join(tmpdir(), 'infer-tls-'));
    const sock = join(d, 'router.sock');
    const router = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => res.end(JSON.stringify({ router: true, method: req.method, url: req.url, host: req.headers.host, body })));
    });
    await new Promise<void>((r) => router.listen(sock, () => r()));
    cleanups.push(() => new Promise<void>((r) => router.close(() => r())));
    cleanups.push(() => rmSync(d, { recursive: true, force: true }));
    const { h } = await setupRest({ inferenceSocket: () => sock });
    const t = await proxyConnect(h.socketPath, 'inference.local:443');
    expect(t.status).toBe(200);
    const s = await tlsOverTunnel(t.socket, 'inference.local', cas.sandboxCa.caCertPem);
    cleanups.push(() => void s.destroy());
    const res = await exchange(s, 'POST /v1/chat/completions HTTP/1.1\r\nHost: inference.local\r\nContent-Length: 2\r\n\r\n{}');
    expect(res.status).toBe(200);
    expect(JSON.parse(res.body)).toMatchObject({ router: true, method: 'POST', url: '/v1/chat/completions', host: 'inference.local', body: '{}' });
    expect(h.proxy.pending()).toHaveLength(0);
  });
});
