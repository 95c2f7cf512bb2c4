/**
 * Test harness for the egress proxy: a tiny in-memory policy (deny → allow → unknown, `*` label
 * globs), upstream servers on loopback, and clients that speak to the proxy's Unix socket.
 */
import { createServer as createHttpServer, request as httpRequest, type IncomingHttpHeaders, type Server } from 'node:http';
import { connect, createServer as createNetServer, type Socket } from 'node:net';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll } from 'vitest';
import { execa } from 'execa';
import type { EventInput } from '../../src/audit/events.js';
import { loadOrCreateSandboxCa, type SandboxCa } from '../../src/egress/tls.js';
import type { OverlayRule } from '../../src/control/types.js';
import { createEgressProxy, type EgressProxy, type EgressProxyOptions } from '../../src/egress/proxy.js';
import type { Resolver } from '../../src/egress/ssrf.js';
import { compileNetworkMatcher } from '../../src/policy/index.js';
import type { ApprovalsPolicy, Endpoint, NetworkDecision, NetworkQuery, PolicyDocument } from '../../src/policy/types.js';
import { systemClock } from '../../src/shared/clock.js';

export interface TestRule {
  action: 'allow' | 'deny';
  host: string;
  port: number;
  endpoint?: Partial<Endpoint>;
  binary?: string;
}

function hostMatches(pattern: string, host: string): boolean {
  if (!pattern.includes('*')) return pattern === host;
  const p = pattern.split('.');
  const h = host.split('.');
  return p.length === h.length && p.every((label, i) => label === '*' || label === h[i]);
}

/** The policy matcher over one allowed endpoint (only `network_policies` is read). */
function l7Matcher(endpoint: Endpoint) {
  const doc = { network_policies: { test: { name: 'test', endpoints: [endpoint], binaries: [{ path: '/**' }], action: 'allow' } } } as unknown as PolicyDocument;
  return compileNetworkMatcher(doc);
}

export class TestPolicy {
  rules: TestRule[] = [];
  approvals: ApprovalsPolicy = { mode: 'ask', timeout: 30, when_unattended: 'hold', max_pending: 100 };
  overlay: Array<{ rule: OverlayRule; reason: string }> = [];
  session: OverlayRule[] = [];

  decide = (q: NetworkQuery): NetworkDecision => {
    const match = (r: TestRule): boolean => hostMatches(r.host, q.host) && r.port === q.port && (r.binary === undefined || r.binary === q.binary);
    for (const action of ['deny', 'allow'] as const) {
      const i = this.rules.findIndex((r) => r.action === action && match(r));
      if (i >= 0) {
        const r = this.rules[i] as TestRule;
        const endpoint: Endpoint = { host: r.host, ports: [r.port], rules: [], deny_rules: [], allowed_ips: [], ...r.endpoint };
        if (action === 'allow' && q.method !== undefined) {
          // Per-request checks by the real policy matcher, as the supervisor's policy store does.
          const l7 = l7Matcher(endpoint).decide({ host: q.host, port: q.port, method: q.method, path: q.path ?? '/' });
          if (l7.verdict !== 'allow') return { verdict: 'deny', rule: `test/${i}`, reason: l7.reason, endpoint };
        }
        return { verdict: action, rule: `test/${i}`, reason: `${action} by test rule ${i}`, endpoint };
      }
    }
    return { verdict: 'unknown', reason: 'no rule' };
  };
}

export interface Harness {
  proxy: EgressProxy;
  policy: TestPolicy;
  events: EventInput[];
  socketPath: string;
  operators: { count: number };
  close(): Promise<void>;
}

export async function startProxy(over: Partial<EgressProxyOptions> = {}, setup?: (p: TestPolicy) => void): Promise<Harness> {
  const dir = mkdtempSync(join(tmpdir(), 'egress-test-'));
  const socketPath = join(dir, 'proxy.sock');
  const policy = new TestPolicy();
  setup?.(policy);
  const events: EventInput[] = [];
  const operators = { count: 1 };
  const proxy = createEgressProxy({
    decide: (q) => policy.decide(q),
    approvals: () => policy.approvals,
    operatorsAttached: () => operators.count,
    emit: (e) => events.push(e),
    clock: systemClock,
    addSessionAllow: (rule) => {
      policy.session.push(rule);
      policy.rules.push({ action: rule.action, host: rule.host, port: rule.port, ...(rule.binary ? { binary: rule.binary } : {}) });
    },
    addOverlayRule: async (rule, reason) => {
      policy.overlay.push({ rule, reason });
      policy.rules.push({ action: rule.action, host: rule.host, port: rule.port, ...(rule.binary ? { binary: rule.binary } : {}) });
    },
    ...over,
  });
  await proxy.listen(socketPath);
  return {
    proxy,
    policy,
    events,
    socketPath,
    operators,
    async close() {
      await proxy.close();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Resolver for tests: names → fixed addresses. */
export function testResolver(map: Record<string, string[]>): Resolver {
  return async (host) => {
    const a = map[host];
    if (!a) throw Object.assign(new Error(`ENOTFOUND ${host}`), { code: 'ENOTFOUND' });
    return a.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
}

export interface Upstream {
  port: number;
  requests: Array<{ method: string; url: string; headers: IncomingHttpHeaders; body: string }>;
  close(): Promise<void>;
}

/** HTTP server on 127.0.0.1 that echoes what it got. */
export async function startUpstream(name = 'upstream', host = '127.0.0.1'): Promise<Upstream> {
  const requests: Upstream['requests'] = [];
  const server: Server = createHttpServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers, body });
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ from: name, method: req.method, url: req.url, host: req.headers.host, body }));
    });
  });
  await new Promise<void>((r) => server.listen(0, host, () => r()));
  const port = (server.address() as { port: number }).port;
  return {
    port,
    requests,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** TCP echo server (for CONNECT tunnels). */
export async function startEcho(): Promise<{ port: number; sockets: Set<Socket>; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createNetServer((s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as { port: number }).port,
    sockets,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

export interface ProxyResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  json(): Record<string, unknown>;
}

/** Absolute-form request through the proxy's Unix socket. */
export function proxyRequest(socketPath: string, url: string, opts: { method?: string; body?: string; headers?: Record<string, string> } = {}): Promise<ProxyResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        createConnection: () => connect(socketPath),
        method: opts.method ?? 'GET',
        path: url,
        headers: { Host: new URL(url).host, ...opts.headers },
      },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => {
          const body = Buffer.concat(chunks).toString();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body, json: () => JSON.parse(body) as Record<string, unknown> });
        });
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(opts.body);
  });
}

/** Write raw bytes to the proxy and collect everything until it closes (or `untilText` appears). */
/** `halfClose`: send FIN right after the payload (`printf ... | nc -U` does this). */
export function rawExchange(socketPath: string, payload: string | Buffer, untilText?: string, timeoutMs = 5_000, opts: { halfClose?: boolean } = {}): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    let data = '';
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error(`no complete answer within ${timeoutMs} ms; got: ${JSON.stringify(data.slice(0, 300))}`));
    }, timeoutMs);
    s.on('data', (c: Buffer) => {
      data += c.toString('latin1');
      if (untilText && data.includes(untilText)) {
        clearTimeout(timer);
        s.destroy();
        resolve(data);
      }
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(data);
    });
    s.on('error', () => {});
    s.write(payload);
    if (opts.halfClose) s.end();
  });
}

/** CONNECT through the proxy; resolves with the status line and (on 200) the tunnel socket. */
export function proxyConnect(socketPath: string, authority: string): Promise<{ status: number; head: string; body: string; socket: Socket }> {
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    let data = Buffer.alloc(0);
    const onData = (c: Buffer): void => {
      data = Buffer.concat([data, c]);
      const end = data.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = data.subarray(0, end).toString('latin1');
      const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 0);
      if (status === 200) {
        s.removeListener('data', onData);
        const rest = data.subarray(end + 4);
        if (rest.length > 0) s.unshift(rest);
        resolve({ status, head, body: '', socket: s });
        return;
      }
      const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
      if (data.length >= end + 4 + len) {
        s.removeListener('data', onData);
        resolve({ status, head, body: data.subarray(end + 4, end + 4 + len).toString(), socket: s });
      }
    };
    s.on('data', onData);
    s.on('error', reject);
    s.write(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`);
  });
}

export async function waitFor<T>(fn: () => T | undefined | false, what: string, timeoutMs = 5_000): Promise<T> {
  const start = Date.now();
  for (;;) {
    const v = fn();
    if (v) return v;
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

export function readOnce(s: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    s.once('data', (c: Buffer) => resolve(c.toString()));
    s.once('error', reject);
  });
}

/** A sandbox CA and a stand-in public CA (it signs the HTTPS test upstreams), made once per file. */
export interface TestCas {
  dir: string;
  sandboxCa: SandboxCa;
  upstreamCa: SandboxCa;
}

/**
 * Registers beforeAll/afterAll for a file's TLS tests: both CAs in a temp dir (needs openssl), the
 * dir removed afterwards. The fields are set once beforeAll has run.
 */
export function useTestCas(prefix: string): TestCas {
  const cas = {} as TestCas;
  beforeAll(async () => {
    const has = await execa('openssl', ['version'], { reject: false });
    if (has.exitCode !== 0) throw new Error('these tests need the openssl command: apt-get install -y openssl');
    cas.dir = mkdtempSync(join(tmpdir(), prefix));
    cas.sandboxCa = await loadOrCreateSandboxCa({ privateDir: join(cas.dir, 'sbx', 'tls'), trustDir: join(cas.dir, 'sbx', 'trust'), sandboxName: 'test' });
    cas.upstreamCa = await loadOrCreateSandboxCa({ privateDir: join(cas.dir, 'pub', 'tls'), trustDir: join(cas.dir, 'pub', 'trust'), sandboxName: 'public-test' });
  }, 30_000);
  afterAll(() => {
    if (cas.dir) rmSync(cas.dir, { recursive: true, force: true });
  });
  return cas;
}

/** Per-test cleanups, run after each test, last registered first. */
export function useCleanups(): Array<() => Promise<void> | void> {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    while (cleanups.length > 0) await (cleanups.pop() as () => Promise<void>)();
  });
  return cleanups;
}
