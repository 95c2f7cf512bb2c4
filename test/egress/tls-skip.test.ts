/**
 * Which CONNECT tunnels are decrypted, with a real TLS client through the real proxy on loopback:
 * the client trusts only the upstream's ("public") test CA, so a handshake that succeeds proves the
 * tunnel was not intercepted, and the certificate's issuer says whose leaf the client saw.
 *
 * Upstream NVIDIA/OpenShell (crates/openshell-supervisor-network):
 * - `tls: skip` → raw tunnel, no termination: proxy.rs `connect_handler_tls_skip_route_is_not_refused`,
 *   l7/mod.rs `parse_l7_config_skip`, proxy.rs `handler_test_policy_allows_glob_binary_and_reads_tls_mode`.
 *   With L7 rules OpenShell only warns (`validate_tls_skip_with_l7_on_443_warns`) and tunnels raw,
 *   skipping the rules; here that CONNECT is refused (never wider).
 * - `tls: terminate|passthrough` are deprecated aliases of the default (auto):
 *   l7/mod.rs `validate_tls_terminate_deprecated_warning`, `parse_l7_config` (→ TlsMode::Auto).
 * - an endpoint without `protocol` is L4-only (l7/mod.rs `parse_l7_config` returns None): nothing
 *   to check per request, so here its tunnel is not decrypted.
 * Needs the `openssl` command (apt-get install -y openssl).
 */
import { describe, expect, it } from 'vitest';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { execa } from 'execa';
import type { EventInput } from '../../src/audit/events.js';
import { createEgressProxy, type EgressProxy } from '../../src/egress/proxy.js';
import { type SandboxCa } from '../../src/egress/tls.js';
import { compileNetworkMatcher } from '../../src/policy/index.js';
import { parsePolicy } from '../../src/policy/parse.js';
import type { Endpoint, PolicyDocument } from '../../src/policy/types.js';
import { systemClock } from '../../src/shared/clock.js';
import { proxyConnect, proxyRequest, testResolver, useCleanups, useTestCas, waitFor } from './harness.js';

const cas = useTestCas('egress-tlsskip-');
const cleanups = useCleanups();

interface Upstream {
  port: number;
  connections: number;
  requests: Array<{ method: string; url: string }>;
}

/** `tls`: HTTPS with a leaf from the "public" test CA for whatever name the client asks for. */
async function startUpstream(tls = false): Promise<Upstream> {
  const state: Upstream = { port: 0, connections: 0, requests: [] };
  const handler = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void => {
    state.requests.push({ method: req.method ?? '', url: req.url ?? '' });
    req.resume();
    req.on('end', () => res.end(JSON.stringify({ ok: true, url: req.url })));
  };
  const server: Server = tls
    ? createHttpsServer({ SNICallback: (name, cb) => void cas.upstreamCa.contextFor(name).then((c) => cb(null, c), (e: Error) => cb(e)) }, handler)
    : createHttpServer(handler);
  server.on('connection', () => state.connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  state.port = (server.address() as { port: number }).port;
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return state;
}

type EndpointSpec = Partial<Endpoint> & { host: string; ports: number[] };

async function startProxy(endpoints: EndpointSpec[], names: Record<string, string[]>): Promise<{ proxy: EgressProxy; socketPath: string; events: EventInput[] }> {
  const doc = {
    network_policies: {
      t: {
        name: 't',
        endpoints: endpoints.map((e) => ({ rules: [], deny_rules: [], allowed_ips: [], ...e })),
        // Any program (OpenShell: a policy with no binaries matches none).
        binaries: [{ path: '/**' }],
        action: 'allow',
      },
    },
  } as unknown as PolicyDocument;
  const matcher = compileNetworkMatcher(doc);
  const events: EventInput[] = [];
  const proxy = createEgressProxy({
    decide: (q) => matcher.decide(q),
    approvals: () => ({ mode: 'deny', timeout: 30, when_unattended: 'hold', max_pending: 100 }),
    operatorsAttached: () => 1,
    emit: (e) => events.push(e),
    clock: systemClock,
    resolver: testResolver(names),
    unsafeAllowLoopbackUpstreams: true,
    tls: cas.sandboxCa,
    upstreamCa: cas.upstreamCa.caCertPem,
  });
  const socketPath = join(mkdtempSync(join(tmpdir(), 'egress-tlsskip-sock-')), 'proxy.sock');
  await proxy.listen(socketPath);
  cleanups.push(() => proxy.close());
  return { proxy, socketPath, events };
}

/** TLS over a CONNECT tunnel trusting `ca` only; resolves with the socket and the peer's issuer CN. */
async function tlsThrough(socketPath: string, authority: string, servername: string, ca: string): Promise<{ s: TLSSocket; issuer: string }> {
  const t = await proxyConnect(socketPath, authority);
  if (t.status !== 200) throw new Error(`CONNECT answered ${t.status}: ${t.body}`);
  const s = await new Promise<TLSSocket>((resolve, reject) => {
    const sock = tlsConnect({ socket: t.socket, servername, ca, ALPNProtocols: ['http/1.1'] }, () => resolve(sock));
    sock.once('error', reject);
  });
  cleanups.push(() => void s.destroy());
  return { s, issuer: String(s.getPeerCertificate().issuer?.CN ?? '') };
}

function get(s: TLSSocket, host: string, path: string, method = 'GET'): Promise<string> {
  return new Promise((resolve) => {
    let data = '';
    s.on('data', (c: Buffer) => {
      data += c.toString();
      if (/\r\n\r\n/.test(data) && (data.includes('"ok":true') || /^HTTP\/1\.1 (4|5)/.test(data))) resolve(data);
    });
    s.write(`${method} ${path} HTTP/1.1\r\nHost: ${host}\r\nContent-Length: 0\r\n\r\n`);
  });
}

const issuerOf = (ca: SandboxCa): string => String(/CN=([^\n]+)/.exec(new X509Certificate(ca.caCertPem).subject)?.[1] ?? '');

describe('tls: skip', () => {
  it('an endpoint with tls: skip is tunnelled raw: the client sees the upstream\'s real certificate, not the sandbox CA (connect_handler_tls_skip_route_is_not_refused)', async () => {
    const up = await startUpstream(true);
    const { proxy, socketPath } = await startProxy([{ host: 'skip.test', ports: [up.port], tls: 'skip' }], { 'skip.test': ['127.0.0.1'] });
    const { s, issuer } = await tlsThrough(socketPath, `skip.test:${up.port}`, 'skip.test', cas.upstreamCa.caCertPem);
    expect(issuer).toBe(issuerOf(cas.upstreamCa));
    expect(issuer).not.toBe(issuerOf(cas.sandboxCa));
    expect(await get(s, 'skip.test', '/anything')).toMatch(/^HTTP\/1\.1 200 /);
    expect(proxy.counters().tls_terminated).toBe(0);
  });

  it('tls: skip with L7 rules: the CONNECT is refused (403, no upstream connection), since the rules could not be checked in a raw tunnel', async () => {
    const up = await startUpstream(true);
    const { socketPath, events } = await startProxy([{ host: 'skip.test', ports: [up.port], tls: 'skip', protocol: 'rest', access: 'read-only' }], { 'skip.test': ['127.0.0.1'] });
    // A refused CONNECT is "opened" to nowhere and the refusal answers the first request inside it
    // (clients drop a refused CONNECT's body, so the agent would never learn why): TLS terminated
    // with a sandbox-CA leaf, then the 403 naming the reason. Nothing is dialled.
    const { s, issuer } = await tlsThrough(socketPath, `skip.test:${up.port}`, 'skip.test', cas.sandboxCa.caCertPem);
    expect(issuer).toBe(issuerOf(cas.sandboxCa));
    const answer = await get(s, 'skip.test', '/r');
    expect(answer).toMatch(/^HTTP\/1\.1 403 /);
    expect(answer).toContain('tls: skip');
    expect(answer).toMatch(/X-Nemoclaw-Policy: policy_denied/);
    expect(up.connections).toBe(0);
    expect(events.some((e) => e.kind === 'net.decision' && e.action === 'deny' && e.tls_skip === true)).toBe(true);
  });

  it('tls: skip with L7 rules: plain-HTTP requests (absolute-form) to it are still checked per request', async () => {
    const up = await startUpstream();
    const { socketPath } = await startProxy([{ host: 'skip.test', ports: [up.port], tls: 'skip', protocol: 'rest', access: 'read-only' }], { 'skip.test': ['127.0.0.1'] });
    expect((await proxyRequest(socketPath, `http://skip.test:${up.port}/r`)).status).toBe(200);
    expect((await proxyRequest(socketPath, `http://skip.test:${up.port}/w`, { method: 'POST', body: 'x' })).status).toBe(403);
    expect(up.requests.map((r) => `${r.method} ${r.url}`)).toEqual(['GET /r']);
  });
});

describe('which tunnels are decrypted', () => {
  it('access: full without protocol is L4 (OpenShell parse_l7_config → None): not intercepted', async () => {
    const up = await startUpstream(true);
    const { proxy, socketPath } = await startProxy([{ host: 'full.test', ports: [up.port], access: 'full' }], { 'full.test': ['127.0.0.1'] });
    const { s, issuer } = await tlsThrough(socketPath, `full.test:${up.port}`, 'full.test', cas.upstreamCa.caCertPem);
    expect(issuer).toBe(issuerOf(cas.upstreamCa));
    expect(await get(s, 'full.test', '/x', 'DELETE')).toMatch(/^HTTP\/1\.1 200 /);
    expect(proxy.counters().tls_terminated).toBe(0);
  });

  it('an endpoint with no L7 fields at all is not intercepted; tls: terminate (deprecated, = auto) does not change that', async () => {
    const up = await startUpstream(true);
    const { proxy, socketPath } = await startProxy(
      [
        { host: 'l4.test', ports: [up.port] },
        { host: 'term.test', ports: [up.port], tls: 'terminate' },
      ],
      { 'l4.test': ['127.0.0.1'], 'term.test': ['127.0.0.1'] },
    );
    expect((await tlsThrough(socketPath, `l4.test:${up.port}`, 'l4.test', cas.upstreamCa.caCertPem)).issuer).toBe(issuerOf(cas.upstreamCa));
    expect((await tlsThrough(socketPath, `term.test:${up.port}`, 'term.test', cas.upstreamCa.caCertPem)).issuer).toBe(issuerOf(cas.upstreamCa));
    expect(proxy.counters().tls_terminated).toBe(0);
  });

  it('an L4 endpoint is decrypted when another rule on the same host:port has deny_rules: they win over its allow (sandbox-policy.rego deny_rules)', async () => {
    const up = await startUpstream(true);
    const { proxy, socketPath } = await startProxy(
      [
        { host: 'dr.test', ports: [up.port] },
        { host: 'dr.test', ports: [up.port], protocol: 'rest', access: 'full', deny_rules: [{ method: '*', path: '/admin/**' }] },
      ],
      { 'dr.test': ['127.0.0.1'] },
    );
    const { s, issuer } = await tlsThrough(socketPath, `dr.test:${up.port}`, 'dr.test', cas.sandboxCa.caCertPem);
    expect(issuer).toBe(issuerOf(cas.sandboxCa));
    expect(await get(s, 'dr.test', '/admin/x')).toMatch(/^HTTP\/1\.1 403 /);
    const again = await tlsThrough(socketPath, `dr.test:${up.port}`, 'dr.test', cas.sandboxCa.caCertPem);
    expect(await get(again.s, 'dr.test', '/ok')).toMatch(/^HTTP\/1\.1 200 /);
    expect(up.requests.map((r) => r.url)).toEqual(['/ok']);
    expect(proxy.counters().tls_terminated).toBeGreaterThanOrEqual(1);
  });

  it('protocol: rest is decrypted and checked; tls: passthrough (deprecated, = auto) no longer skips that', async () => {
    const up = await startUpstream(true);
    const { proxy, socketPath } = await startProxy([{ host: 'rest.test', ports: [up.port], protocol: 'rest', access: 'read-only', tls: 'passthrough' }], { 'rest.test': ['127.0.0.1'] });
    const { s, issuer } = await tlsThrough(socketPath, `rest.test:${up.port}`, 'rest.test', cas.sandboxCa.caCertPem);
    expect(issuer).toBe(issuerOf(cas.sandboxCa));
    await waitFor(() => proxy.counters().tls_terminated === 1, 'the interception counted');
    expect(await get(s, `rest.test:${up.port}`, '/ok')).toMatch(/^HTTP\/1\.1 200 /);
    expect(await get(s, `rest.test:${up.port}`, '/nope', 'POST')).toMatch(/^HTTP\/1\.1 403 /);
    expect(up.requests.map((r) => `${r.method} ${r.url}`)).toEqual(['GET /ok']);
  });

  it('access: read-only without protocol is still decrypted and checked (stricter than OpenShell, which ignores it: never wider)', async () => {
    const up = await startUpstream(true);
    const { proxy, socketPath } = await startProxy([{ host: 'ro.test', ports: [up.port], access: 'read-only' }], { 'ro.test': ['127.0.0.1'] });
    const { issuer } = await tlsThrough(socketPath, `ro.test:${up.port}`, 'ro.test', cas.sandboxCa.caCertPem);
    expect(issuer).toBe(issuerOf(cas.sandboxCa));
    await waitFor(() => proxy.counters().tls_terminated === 1, 'the interception counted');
  });
});

describe('policy validate says what happens to tls and websocket fields', () => {
  // parsePolicy throws on errors, so a returned result means the file loads.
  const load = (endpoint: string) =>
    parsePolicy(`version: 1\nnetwork_policies:\n  p:\n    endpoints:\n      - ${endpoint}\n    binaries:\n      - { path: "/**" }\n`, 't.yaml');

  it('tls: skip with L7 rules is reported (CONNECT refused here; OpenShell would skip the rules: validate_tls_skip_with_l7_on_443_warns)', () => {
    const { warnings } = load('{ host: api.example.com, port: 443, protocol: rest, access: read-only, tls: skip }');
    const w = warnings.find((x) => x.path.endsWith('.tls'));
    expect(w?.severity).toBe('meaning-changed');
    expect(w?.message).toMatch(/CONNECT is refused/);
  });

  it('tls: skip on an L4 endpoint is enforced as upstream (raw tunnel): nothing to report', () => {
    expect(load('{ host: api.example.com, port: 443, tls: skip }').warnings.filter((x) => x.path.endsWith('.tls'))).toEqual([]);
    expect(load('{ host: api.example.com, port: 443, access: full, tls: skip }').warnings.filter((x) => x.path.endsWith('.tls'))).toEqual([]);
  });

  it('tls: terminate|passthrough: accepted with a deprecation warning (validate_tls_terminate_deprecated_warning)', () => {
    for (const mode of ['terminate', 'passthrough']) {
      const { warnings } = load(`{ host: api.example.com, port: 443, protocol: rest, access: full, tls: ${mode} }`);
      expect(warnings.find((x) => x.path.endsWith('.tls'))?.message).toMatch(/deprecated/);
    }
  });

  it('protocol: websocket with WEBSOCKET_TEXT rules is enforced: no not-enforced finding', () => {
    const { warnings } = load('{ host: gateway.discord.gg, port: 443, protocol: websocket, rules: [{ allow: { method: GET, path: "/**" } }, { allow: { method: WEBSOCKET_TEXT, path: "/**" } }] }');
    expect(warnings.filter((x) => x.path.includes('endpoints'))).toEqual([]);
  });
});
