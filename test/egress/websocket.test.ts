/**
 * WebSocket through the egress proxy, with real clients (undici's WebSocket + ProxyAgent, the
 * implementation behind Node 24's global WebSocket; undici is already a dependency, so no new
 * package) and a raw socket where a client would not send what a test needs. The upstream is a
 * minimal RFC 6455 echo server on loopback (plain and TLS, its certificate from a separate test CA).
 *
 * Ported from upstream NVIDIA/OpenShell (crates/openshell-supervisor-network):
 * - tests/websocket_upgrade.rs `websocket_upgrade_through_l7_relay_exchanges_message` and
 *   `normal_http_request_still_works_after_relay_changes`
 * - src/l7/relay.rs `route_selected_websocket_upgrade_rejects_invalid_accept_without_forwarding_101`,
 *   `websocket_upgrade_request_is_inspected_and_denied` (there: middleware; here: a deny rule)
 * - src/l7/websocket.rs `inspect_websocket_text_message` (WEBSOCKET_TEXT refused → close 1008)
 * - src/l7/relay.rs "websocket endpoint requires a valid WebSocket upgrade request"
 * - src/l7/rest.rs `request_is_websocket_upgrade_*` (key, method, version 13) and `request_is_h2c_upgrade`
 * Needs the `openssl` command (apt-get install -y openssl) for the wss cases.
 */
import { describe, expect, it } from 'vitest';
import { createHash } from 'node:crypto';
import { createServer as createHttpServer, type IncomingHttpHeaders, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect, type Socket } from 'node:net';
import { execa } from 'execa';
import { ProxyAgent, WebSocket } from 'undici';
import type { EventInput } from '../../src/audit/events.js';
import { createEgressProxy, type EgressProxy } from '../../src/egress/proxy.js';
import { compileNetworkMatcher } from '../../src/policy/index.js';
import type { ApprovalsPolicy, Endpoint, PolicyDocument } from '../../src/policy/types.js';
import { systemClock } from '../../src/shared/clock.js';
import { testResolver, useCleanups, useTestCas, waitFor } from './harness.js';

const GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';
const cas = useTestCas('egress-ws-');
const cleanups = useCleanups();

// ---------------------------------------------------------------------------------------------
// Upstream: a minimal RFC 6455 echo server (text and binary echoed, close answered).

interface WsUpstream {
  port: number;
  /** TCP connections accepted (any kind). */
  connections: number;
  upgrades: Array<{ url: string; headers: IncomingHttpHeaders }>;
  requests: Array<{ method: string; url: string; headers: IncomingHttpHeaders }>;
  /** Text messages the server received. */
  texts: string[];
  binaries: Buffer[];
  open: Set<Socket>;
  closedSockets: number;
  /** Answer upgrades with a wrong Sec-WebSocket-Accept. */
  badAccept: boolean;
  /** Answer upgrades with this plain response instead of 101. */
  refuseWith: number | undefined;
  /** Keep a half-closed upgraded socket open (a server that does not react to FIN). */
  ignoreFin: boolean;
  /** Upgraded sockets that saw the proxy's FIN. */
  fins: number;
}

function frame(opcode: number, payload: Buffer, mask: boolean): Buffer {
  const len = payload.length;
  const head: number[] = [0x80 | opcode];
  if (len < 126) head.push((mask ? 0x80 : 0) | len);
  else if (len < 65536) head.push((mask ? 0x80 : 0) | 126, len >> 8, len & 0xff);
  else {
    head.push((mask ? 0x80 : 0) | 127);
    const b = Buffer.alloc(8);
    b.writeBigUInt64BE(BigInt(len));
    head.push(...b);
  }
  if (!mask) return Buffer.concat([Buffer.from(head), payload]);
  const key = Buffer.from([1, 2, 3, 4]);
  const masked = Buffer.from(payload.map((x, i) => x ^ (key[i % 4] as number)));
  return Buffer.concat([Buffer.from(head), key, masked]);
}

/** Parse complete frames from `buf`; returns them and what is left. */
function parseFrames(buf: Buffer): { frames: Array<{ opcode: number; payload: Buffer }>; rest: Buffer } {
  const frames: Array<{ opcode: number; payload: Buffer }> = [];
  let at = 0;
  for (;;) {
    if (buf.length - at < 2) break;
    const b1 = buf[at + 1] as number;
    const masked = (b1 & 0x80) !== 0;
    let len = b1 & 0x7f;
    let off = at + 2;
    if (len === 126) {
      if (buf.length < off + 2) break;
      len = buf.readUInt16BE(off);
      off += 2;
    } else if (len === 127) {
      if (buf.length < off + 8) break;
      len = Number(buf.readBigUInt64BE(off));
      off += 8;
    }
    const keyLen = masked ? 4 : 0;
    if (buf.length < off + keyLen + len) break;
    const key = buf.subarray(off, off + keyLen);
    const payload = Buffer.from(buf.subarray(off + keyLen, off + keyLen + len));
    if (masked) for (let i = 0; i < payload.length; i++) payload[i] = (payload[i] as number) ^ (key[i % 4] as number);
    frames.push({ opcode: (buf[at] as number) & 0x0f, payload });
    at = off + keyLen + len;
  }
  return { frames, rest: buf.subarray(at) };
}

async function startWsUpstream(tlsHost?: string): Promise<WsUpstream> {
  const state: WsUpstream = { port: 0, connections: 0, upgrades: [], requests: [], texts: [], binaries: [], open: new Set(), closedSockets: 0, badAccept: false, refuseWith: undefined, ignoreFin: false, fins: 0 };
  const onRequest = (req: import('node:http').IncomingMessage, res: import('node:http').ServerResponse): void => {
    state.requests.push({ method: req.method ?? '', url: req.url ?? '', headers: req.headers });
    req.resume();
    req.on('end', () => {
      res.setHeader('Content-Type', 'application/json');
      res.end(JSON.stringify({ plain: true, url: req.url }));
    });
  };
  const server: Server = tlsHost ? createHttpsServer({ SNICallback: (_n, cb) => void sandboxlessCtx(tlsHost).then((c) => cb(null, c), (e: Error) => cb(e)) }, onRequest) : createHttpServer(onRequest);
  server.on('connection', (s: Socket) => {
    state.connections++;
    s.on('error', () => {});
  });
  server.on('upgrade', (req, socket: Socket, head: Buffer) => {
    state.upgrades.push({ url: req.url ?? '', headers: req.headers });
    if (state.refuseWith !== undefined) {
      socket.end(`HTTP/1.1 ${state.refuseWith} Nope\r\nContent-Type: text/plain\r\nContent-Length: 4\r\nConnection: close\r\n\r\nnope`);
      return;
    }
    const key = String(req.headers['sec-websocket-key'] ?? '');
    const accept = state.badAccept ? 'AAAAAAAAAAAAAAAAAAAAAAAAAAA=' : createHash('sha1').update(key + GUID).digest('base64');
    socket.write(`HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ${accept}\r\n\r\n`);
    state.open.add(socket);
    socket.on('close', () => {
      state.open.delete(socket);
      state.closedSockets++;
    });
    socket.on('end', () => {
      state.fins++;
      if (!state.ignoreFin) socket.end();
    });
    let buf = head;
    socket.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      const { frames, rest } = parseFrames(buf);
      buf = rest;
      for (const f of frames) {
        if (f.opcode === 0x1) {
          state.texts.push(f.payload.toString());
          socket.write(frame(0x1, Buffer.from(`echo:${f.payload.toString()}`), false));
        } else if (f.opcode === 0x2) {
          state.binaries.push(f.payload);
          socket.write(frame(0x2, f.payload, false));
        } else if (f.opcode === 0x9) socket.write(frame(0xa, f.payload, false));
        else if (f.opcode === 0x8) {
          socket.end(frame(0x8, f.payload, false));
        }
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  state.port = (server.address() as { port: number }).port;
  cleanups.push(
    () =>
      new Promise<void>((r) => {
        for (const s of state.open) s.destroy();
        server.closeAllConnections();
        server.close(() => r());
      }),
  );
  return state;
}

/** The upstream's TLS context: a leaf from the "public" test CA (not the sandbox CA). */
function sandboxlessCtx(host: string) {
  return cas.upstreamCa.contextFor(host);
}

// ---------------------------------------------------------------------------------------------
// Proxy with the real policy matcher over one policy (binaries: any program).

interface Setup {
  proxy: EgressProxy;
  port: number;
  events: EventInput[];
  approvals: ApprovalsPolicy;
  /** Replace the policy's endpoints and tell the proxy (a hot reload). */
  setEndpoints(endpoints: EndpointSpec[]): void;
}

type EndpointSpec = Partial<Endpoint> & { host: string; ports: number[] };

async function startProxy(endpoints: EndpointSpec[], names: Record<string, string[]>, approvals?: Partial<ApprovalsPolicy>): Promise<Setup> {
  const compile = (eps: EndpointSpec[]) =>
    compileNetworkMatcher({
      network_policies: {
        t: {
          name: 't',
          endpoints: eps.map((e) => ({ rules: [], deny_rules: [], allowed_ips: [], ...e })),
          // Any program (OpenShell: a policy with no binaries matches none).
          binaries: [{ path: '/**' }],
          action: 'allow',
        },
      },
    } as unknown as PolicyDocument);
  let matcher = compile(endpoints);
  const events: EventInput[] = [];
  const ap: ApprovalsPolicy = { mode: 'deny', timeout: 30, when_unattended: 'hold', max_pending: 100, ...approvals };
  const proxy = createEgressProxy({
    decide: (q) => matcher.decide(q),
    approvals: () => ap,
    operatorsAttached: () => 1,
    emit: (e) => events.push(e),
    clock: systemClock,
    resolver: testResolver(names),
    unsafeAllowLoopbackUpstreams: true,
    tls: cas.sandboxCa,
    upstreamCa: cas.upstreamCa.caCertPem,
  });
  await proxy.listen({ host: '127.0.0.1', port: 0 });
  cleanups.push(() => proxy.close());
  let revision = 1;
  const setEndpoints = (eps: EndpointSpec[]): void => {
    matcher = compile(eps);
    proxy.policyChanged(++revision);
  };
  return { proxy, port: proxy.port() as number, events, approvals: ap, setEndpoints };
}

interface Client {
  ws: WebSocket;
  messages: Array<string | Buffer>;
  closed: Promise<{ code: number }>;
}

/** undici's WebSocket through the proxy (CONNECT tunnel, as every proxy-aware WS client does). */
async function wsClient(proxyPort: number, url: string, opts: { trust?: string } = {}): Promise<Client> {
  const dispatcher = new ProxyAgent({ uri: `http://127.0.0.1:${proxyPort}`, ...(opts.trust ? { requestTls: { ca: opts.trust } } : {}) });
  cleanups.push(() => dispatcher.close());
  const ws = new WebSocket(url, { dispatcher });
  ws.binaryType = 'arraybuffer';
  const messages: Array<string | Buffer> = [];
  ws.addEventListener('message', (ev) => messages.push(typeof ev.data === 'string' ? ev.data : Buffer.from(ev.data as ArrayBuffer)));
  const closed = new Promise<{ code: number }>((resolve) => ws.addEventListener('close', (ev) => resolve({ code: ev.code })));
  await new Promise<void>((resolve, reject) => {
    ws.addEventListener('open', () => resolve());
    ws.addEventListener('error', () => reject(new Error(`WebSocket ${url} failed to open`)));
  });
  cleanups.push(() => ws.close());
  return { ws, messages, closed };
}

/** A WebSocket upgrade written by hand (absolute-form through the proxy, or inside a tunnel). */
function upgradeRequest(target: string, host: string, extra = ''): string {
  return `GET ${target} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`;
}

/** Raw socket to the proxy; `head()` waits for a response head, `data` collects all bytes. */
function rawClient(proxyPort: number): Promise<{ s: Socket; data: () => Buffer; head(): Promise<string>; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const s = connect(proxyPort, '127.0.0.1');
    let data = Buffer.alloc(0);
    const closed = new Promise<void>((r) => s.on('close', () => r()));
    s.on('data', (c: Buffer) => (data = Buffer.concat([data, c])));
    s.on('error', () => {});
    s.once('connect', () =>
      resolve({
        s,
        data: () => data,
        closed,
        head: async () => {
          await waitFor(() => data.includes('\r\n\r\n'), 'a response head');
          return data.subarray(0, data.indexOf('\r\n\r\n')).toString('latin1');
        },
      }),
    );
    s.once('error', reject);
    cleanups.push(() => void s.destroy());
  });
}

async function until(cond: () => boolean, what: string, ms = 5_000): Promise<void> {
  const t0 = Date.now();
  while (!cond()) {
    if (Date.now() - t0 > ms) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

// ---------------------------------------------------------------------------------------------

describe('WebSocket upgrades on allowed endpoints', () => {
  it('ws:// on a protocol: rest endpoint: 101 relayed, text and binary frames echo both ways (websocket_upgrade_through_l7_relay_exchanges_message)', async () => {
    const up = await startWsUpstream();
    const { port, proxy } = await startProxy([{ host: 'ws.test', ports: [up.port], protocol: 'rest', access: 'read-only' }], { 'ws.test': ['127.0.0.1'] });
    const c = await wsClient(port, `ws://ws.test:${up.port}/chat?room=1`);
    c.ws.send('hello');
    c.ws.send(new Uint8Array([1, 2, 3, 250]));
    await until(() => c.messages.length >= 2, 'two echoes');
    expect(c.messages[0]).toBe('echo:hello');
    expect([...(c.messages[1] as Buffer)]).toEqual([1, 2, 3, 250]);
    expect(up.upgrades).toHaveLength(1);
    expect(up.upgrades[0]?.url).toBe('/chat?room=1');
    expect(up.upgrades[0]?.headers.upgrade).toBe('websocket');
    expect(String(up.upgrades[0]?.headers.connection).toLowerCase()).toContain('upgrade');
    expect(up.upgrades[0]?.headers.host).toBe(`ws.test:${up.port}`);
    expect(proxy.counters().websocket_upgrades).toBe(1);
    // A larger message (16-bit and 64-bit length forms) and many small ones keep their order.
    const big = 'x'.repeat(70_000);
    c.ws.send(big);
    for (let i = 0; i < 50; i++) c.ws.send(`m${i}`);
    await until(() => c.messages.length >= 53, 'bulk echoes');
    expect(c.messages[2]).toBe(`echo:${big}`);
    expect(c.messages[52]).toBe('echo:m49');
    c.ws.close(1000);
    expect((await c.closed).code).toBe(1000);
    await until(() => up.open.size === 0, 'upstream socket closed');
    await until(() => proxy.counters().open_tunnels === 0, 'tunnel counted closed');
  });

  it('absolute-form ws upgrade (GET http://host/...): checked like a GET, 101 relayed, keep-alive loop ends', async () => {
    const up = await startWsUpstream();
    const { port } = await startProxy([{ host: 'ws.test', ports: [up.port], protocol: 'rest', rules: [{ method: 'GET', path: '/chat' }] }], { 'ws.test': ['127.0.0.1'] });
    const c = await rawClient(port);
    // Frames sent right behind the head (before the 101) must arrive after the switch.
    c.s.write(Buffer.concat([Buffer.from(upgradeRequest(`http://ws.test:${up.port}/chat`, `ws.test:${up.port}`)), frame(0x1, Buffer.from('early'), true)]));
    const head = await c.head();
    expect(head).toMatch(/^HTTP\/1\.1 101 /);
    expect(head).toMatch(/\r\nUpgrade: websocket/i);
    expect(head).toMatch(/Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK\+xOo=/);
    await until(() => parseFrames(c.data().subarray(c.data().indexOf('\r\n\r\n') + 4)).frames.length >= 1, 'echo of the early frame');
    expect(up.texts).toEqual(['early']);
    // After the 101 the bytes are WebSocket, never a second HTTP request: one that looks like one
    // is relayed to the WebSocket server as bytes, not parsed or forwarded by the proxy.
    const before = up.requests.length;
    c.s.write(frame(0x1, Buffer.from('GET /other HTTP/1.1'), true));
    await until(() => up.texts.length >= 2, 'second text');
    expect(up.requests.length).toBe(before);
  });

  it('wss:// via CONNECT + interception (protocol: rest): the client sees the sandbox CA, frames echo', async () => {
    const up = await startWsUpstream('wss.test');
    const { port, proxy } = await startProxy([{ host: 'wss.test', ports: [up.port], protocol: 'rest', access: 'read-only' }], { 'wss.test': ['127.0.0.1'] });
    const c = await wsClient(port, `wss://wss.test:${up.port}/socket`, { trust: cas.sandboxCa.caCertPem });
    c.ws.send('over tls');
    await until(() => c.messages.length >= 1, 'echo');
    expect(c.messages[0]).toBe('echo:over tls');
    expect(proxy.counters().tls_terminated).toBe(1);
    expect(proxy.counters().websocket_upgrades).toBe(1);
    expect(up.upgrades[0]?.headers.host).toBe(`wss.test:${up.port}`);
  });

  it('a non-101 answer to an upgrade is relayed as a normal response', async () => {
    const up = await startWsUpstream();
    up.refuseWith = 403;
    const { port } = await startProxy([{ host: 'ws.test', ports: [up.port], protocol: 'rest', access: 'read-only' }], { 'ws.test': ['127.0.0.1'] });
    const c = await rawClient(port);
    c.s.write(upgradeRequest(`http://ws.test:${up.port}/x`, `ws.test:${up.port}`));
    const head = await c.head();
    expect(head).toMatch(/^HTTP\/1\.1 403 Nope/);
    await until(() => c.data().toString().endsWith('nope'), 'body');
  });

  it('an upstream 101 with a wrong Sec-WebSocket-Accept is not passed on (route_selected_websocket_upgrade_rejects_invalid_accept_without_forwarding_101)', async () => {
    const up = await startWsUpstream();
    up.badAccept = true;
    const { port } = await startProxy([{ host: 'ws.test', ports: [up.port], protocol: 'rest', access: 'read-only' }], { 'ws.test': ['127.0.0.1'] });
    const c = await rawClient(port);
    c.s.write(upgradeRequest(`http://ws.test:${up.port}/x`, `ws.test:${up.port}`));
    const head = await c.head();
    expect(head).toMatch(/^HTTP\/1\.1 502 /);
    expect(c.data().toString()).toContain('upstream_bad_upgrade');
    expect(c.data().toString()).not.toMatch(/HTTP\/1\.1 101|Switching Protocols/);
  });

  it('a client that disconnects mid-relay tears the upstream connection down', async () => {
    const up = await startWsUpstream();
    const { port, proxy } = await startProxy([{ host: 'ws.test', ports: [up.port], protocol: 'rest', access: 'read-only' }], { 'ws.test': ['127.0.0.1'] });
    const c = await rawClient(port);
    c.s.write(upgradeRequest(`http://ws.test:${up.port}/x`, `ws.test:${up.port}`));
    expect(await c.head()).toMatch(/^HTTP\/1\.1 101 /);
    await until(() => up.open.size === 1, 'upstream socket open');
    expect(proxy.counters().open_tunnels).toBe(1);
    c.s.destroy(); // no close frame: the client just goes away
    await until(() => up.open.size === 0, 'upstream socket torn down');
    expect(up.fins).toBe(1);
    await until(() => proxy.counters().open_tunnels === 0, 'tunnel released');
  });

  it('an upstream that ignores the FIN of a vanished client is torn down after the grace period', async () => {
    const up = await startWsUpstream();
    up.ignoreFin = true;
    const { port, proxy } = await startProxy([{ host: 'ws.test', ports: [up.port], protocol: 'rest', access: 'read-only' }], { 'ws.test': ['127.0.0.1'] });
    const c = await rawClient(port);
    c.s.write(upgradeRequest(`http://ws.test:${up.port}/x`, `ws.test:${up.port}`));
    expect(await c.head()).toMatch(/^HTTP\/1\.1 101 /);
    await until(() => up.open.size === 1, 'upstream socket open');
    c.s.end(); // FIN only
    await until(() => up.fins === 1, 'FIN passed on');
    expect(up.open.size).toBe(1);
    expect(proxy.counters().open_tunnels).toBe(1);
    await until(() => proxy.counters().open_tunnels === 0, 'upstream torn down after the grace', 5_000);
    // The proxy's end is gone: the server's next write is answered with a reset.
    await until(() => {
      for (const s of up.open) s.write(frame(0x1, Buffer.from('anyone?'), false));
      return up.open.size === 0;
    }, 'server socket reset');
  });

  it('a policy change that no longer allows the host closes an upgraded connection (and its upstream)', async () => {
    const up = await startWsUpstream();
    const { port, setEndpoints, events } = await startProxy([{ host: 'ws.test', ports: [up.port], protocol: 'rest', access: 'read-only' }], { 'ws.test': ['127.0.0.1'] });
    const c = await wsClient(port, `ws://ws.test:${up.port}/x`);
    await until(() => up.open.size === 1, 'upstream open');
    setEndpoints([{ host: 'other.test', ports: [up.port], protocol: 'rest', access: 'read-only' }]);
    expect((await c.closed).code).toBe(1006);
    await until(() => up.open.size === 0, 'upstream closed');
    expect(events.some((e) => e.kind === 'net.decision' && e.action === 'revoke')).toBe(true);
  });

  it('an upstream that closes ends the client connection', async () => {
    const up = await startWsUpstream();
    const { port } = await startProxy([{ host: 'ws.test', ports: [up.port], protocol: 'rest', access: 'read-only' }], { 'ws.test': ['127.0.0.1'] });
    const c = await wsClient(port, `ws://ws.test:${up.port}/x`);
    await until(() => up.open.size === 1, 'upstream open');
    for (const s of up.open) s.destroy();
    const closed = await c.closed;
    expect(closed.code).toBe(1006);
  });
});

describe('WebSocket upgrades are governed by the rules', () => {
  it('an upgrade whose path matches a deny rule gets 403 and no upstream connection (websocket_upgrade_request_is_inspected_and_denied)', async () => {
    const up = await startWsUpstream();
    const { port, events } = await startProxy(
      [{ host: 'ws.test', ports: [up.port], protocol: 'rest', access: 'read-only', deny_rules: [{ method: 'GET', path: '/admin/**' }] }],
      { 'ws.test': ['127.0.0.1'] },
    );
    const c = await rawClient(port);
    c.s.write(upgradeRequest(`http://ws.test:${up.port}/admin/socket`, `ws.test:${up.port}`));
    const head = await c.head();
    expect(head).toMatch(/^HTTP\/1\.1 403 /);
    await c.closed;
    expect(c.data().toString()).toContain('deny_rule');
    expect(up.connections).toBe(0);
    expect(events.some((e) => e.kind === 'net.decision' && e.action === 'deny' && e.l7 === true)).toBe(true);
    // The same through a CONNECT tunnel with a real client: it never opens.
    await expect(wsClient(port, `ws://ws.test:${up.port}/admin/x`)).rejects.toThrow(/failed to open/);
    expect(up.connections).toBe(0);
  });

  it('an upgrade path no allow rule covers is refused (rules: GET /chat only)', async () => {
    const up = await startWsUpstream();
    const { port } = await startProxy([{ host: 'ws.test', ports: [up.port], protocol: 'rest', rules: [{ method: 'GET', path: '/chat' }] }], { 'ws.test': ['127.0.0.1'] });
    const c = await rawClient(port);
    c.s.write(upgradeRequest(`http://ws.test:${up.port}/other`, `ws.test:${up.port}`));
    expect(await c.head()).toMatch(/^HTTP\/1\.1 403 /);
    expect(up.connections).toBe(0);
  });

  it('an upgrade to a host not in the policy is held for the operator / denied like any request', async () => {
    const up = await startWsUpstream();
    const denied = await startProxy([], { 'ws.test': ['127.0.0.1'] });
    const c = await rawClient(denied.port);
    c.s.write(upgradeRequest(`http://ws.test:${up.port}/x`, `ws.test:${up.port}`));
    expect(await c.head()).toMatch(/^HTTP\/1\.1 403 /);
    expect(up.connections).toBe(0);

    const asking = await startProxy([], { 'ws.test': ['127.0.0.1'] }, { mode: 'ask' });
    const c2 = await rawClient(asking.port);
    c2.s.write(upgradeRequest(`http://ws.test:${up.port}/x`, `ws.test:${up.port}`));
    await until(() => asking.proxy.pending().length === 1, 'held');
    expect(asking.proxy.pending()[0]?.host).toBe('ws.test');
    expect(up.connections).toBe(0);
    // Approved once: the held upgrade goes through and switches.
    await asking.proxy.decide(asking.proxy.pending()[0]!.id, 'once', 'cli');
    expect(await c2.head()).toMatch(/^HTTP\/1\.1 101 /);
    expect(up.upgrades).toHaveLength(1);
  });

  it('Upgrade: h2c (and any non-websocket upgrade) is not forwarded: the request goes upstream as plain HTTP', async () => {
    const up = await startWsUpstream();
    const { port } = await startProxy([{ host: 'ws.test', ports: [up.port], protocol: 'rest', access: 'read-only' }], { 'ws.test': ['127.0.0.1'] });
    for (const [upgrade, extra] of [
      ['h2c', 'HTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n'],
      ['websocket, h2c', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n'],
      ['websocket', 'Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n'],
      ['TLS/1.0', ''],
    ] as const) {
      const c = await rawClient(port);
      c.s.write(`GET http://ws.test:${up.port}/h HTTP/1.1\r\nHost: ws.test:${up.port}\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: ${upgrade}\r\n${extra}\r\n`);
      expect(await c.head()).toMatch(/^HTTP\/1\.1 200 /);
      c.s.destroy();
    }
    expect(up.upgrades).toHaveLength(0);
    expect(up.requests).toHaveLength(4);
    for (const r of up.requests) {
      expect(r.headers.upgrade).toBeUndefined();
      expect(r.headers['http2-settings']).toBeUndefined();
      expect(String(r.headers.connection ?? '')).not.toMatch(/upgrade/i);
    }
  });

  it('protocol: websocket, access: read-only: the upgrade is allowed, a client text message closes it with 1008, binary passes', async () => {
    const up = await startWsUpstream();
    const { port, events } = await startProxy([{ host: 'ws.test', ports: [up.port], protocol: 'websocket', access: 'read-only' }], { 'ws.test': ['127.0.0.1'] });
    const c = await wsClient(port, `ws://ws.test:${up.port}/feed`);
    c.ws.send(new Uint8Array([9, 9]));
    await until(() => c.messages.length >= 1, 'binary echo');
    c.ws.send('not allowed');
    const closed = await c.closed;
    expect(closed.code).toBe(1008);
    expect(up.texts).toEqual([]);
    expect(up.binaries).toHaveLength(1);
    await until(() => up.open.size === 0, 'upstream dropped');
    // The refused message is a request of its own (WEBSOCKET_TEXT on the upgrade's path), paired
    // with its refusal by id, as `policy simulate` reads the log.
    const refused = events.find((e) => e.kind === 'net.decision' && e.action === 'deny' && e.websocket === true);
    expect(refused).toMatchObject({ method: 'WEBSOCKET_TEXT', path: '/feed', l7: true, error: 'policy_denied' });
    expect(events.find((e) => e.kind === 'net.request' && e.id === refused?.id)).toMatchObject({ method: 'WEBSOCKET_TEXT', host: 'ws.test' });
  });

  it('wss:// on protocol: websocket, access: read-only (decrypted): binary passes, a text message closes with 1008', async () => {
    const up = await startWsUpstream('gw.test');
    const { port, proxy } = await startProxy([{ host: 'gw.test', ports: [up.port], protocol: 'websocket', access: 'read-only' }], { 'gw.test': ['127.0.0.1'] });
    const c = await wsClient(port, `wss://gw.test:${up.port}/?v=10&encoding=json`, { trust: cas.sandboxCa.caCertPem });
    expect(proxy.counters().tls_terminated).toBe(1);
    c.ws.send(new Uint8Array([7]));
    await until(() => c.messages.length >= 1, 'binary echo');
    c.ws.send('{"op":2}');
    expect((await c.closed).code).toBe(1008);
    expect(up.texts).toEqual([]);
    expect(up.upgrades[0]?.url).toBe('/?v=10&encoding=json');
  });

  it('protocol: websocket, access: read-write: text messages (WEBSOCKET_TEXT) pass', async () => {
    const up = await startWsUpstream();
    const { port } = await startProxy([{ host: 'ws.test', ports: [up.port], protocol: 'websocket', access: 'read-write' }], { 'ws.test': ['127.0.0.1'] });
    const c = await wsClient(port, `ws://ws.test:${up.port}/feed`);
    c.ws.send('ok');
    await until(() => c.messages.length >= 1, 'echo');
    expect(c.messages[0]).toBe('echo:ok');
  });

  it('protocol: websocket rules: WEBSOCKET_TEXT allowed on one path only, and a WEBSOCKET_TEXT deny rule wins', async () => {
    const up = await startWsUpstream();
    const { port } = await startProxy(
      [
        {
          host: 'ws.test',
          ports: [up.port],
          protocol: 'websocket',
          rules: [
            { method: 'GET', path: '/**' },
            { method: 'WEBSOCKET_TEXT', path: '/chat/**' },
          ],
          deny_rules: [{ method: 'WEBSOCKET_TEXT', path: '/chat/secret' }],
        },
      ],
      { 'ws.test': ['127.0.0.1'] },
    );
    const ok = await wsClient(port, `ws://ws.test:${up.port}/chat/room`);
    ok.ws.send('hi');
    await until(() => ok.messages.length >= 1, 'echo');
    const other = await wsClient(port, `ws://ws.test:${up.port}/news`);
    other.ws.send('hi');
    expect((await other.closed).code).toBe(1008);
    const secret = await wsClient(port, `ws://ws.test:${up.port}/chat/secret`);
    secret.ws.send('hi');
    expect((await secret.closed).code).toBe(1008);
    expect(up.texts).toEqual(['hi']);
  });

  it('protocol: websocket refuses a request that is not a WebSocket upgrade', async () => {
    const up = await startWsUpstream();
    const { port } = await startProxy([{ host: 'ws.test', ports: [up.port], protocol: 'websocket', access: 'full' }], { 'ws.test': ['127.0.0.1'] });
    const c = await rawClient(port);
    c.s.write(`GET http://ws.test:${up.port}/feed HTTP/1.1\r\nHost: ws.test:${up.port}\r\n\r\n`);
    expect(await c.head()).toMatch(/^HTTP\/1\.1 403 /);
    await c.closed;
    expect(c.data().toString()).toContain('requires a valid WebSocket upgrade request');
    expect(up.connections).toBe(0);
  });

  it('a plain request on the same endpoint still works after the upgrade support (normal_http_request_still_works_after_relay_changes)', async () => {
    const up = await startWsUpstream();
    const { port } = await startProxy([{ host: 'ws.test', ports: [up.port], protocol: 'rest', access: 'read-only' }], { 'ws.test': ['127.0.0.1'] });
    const c = await rawClient(port);
    c.s.write(`GET http://ws.test:${up.port}/plain HTTP/1.1\r\nHost: ws.test:${up.port}\r\n\r\n`);
    expect(await c.head()).toMatch(/^HTTP\/1\.1 200 /);
    await until(() => c.data().toString().includes('"plain":true'), 'body');
  });
});
