/**
 * Issue 11, a held request after its client is gone: a client that closes (or half-closes) its
 * connection while its request waits for the operator is withdrawn. Its waiter is refused with
 * `client_gone`, the prompt is dropped when it was the last one (approval.decision `drop`), a late
 * decision answers `client_gone: true` (a session/always rule still applies) and nothing at all is
 * forwarded upstream.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createServer as createHttpServer } from 'node:http';
import { connect, createServer as createNetServer, type Socket } from 'node:net';
import { PendingQueue, type HoldOutcome, type PendingView } from '../../src/egress/pending.js';
import { proxyConnect, proxyRequest, rawExchange, startProxy, testResolver, waitFor, type Harness } from './harness.js';

const clock = { now: () => Date.now(), monotonic: () => performance.now() };
const holdReq = (host: string) => ({ host, port: 443, binary: undefined, request: `CONNECT ${host}:443`, timeoutMs: 60_000, maxPending: 100 });

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await (cleanups.pop() as () => Promise<void>)();
});

/** Whether a promise has settled by now (after pending I/O callbacks and microtasks ran). */
async function settled<T>(p: Promise<T>): Promise<boolean> {
  let done = false;
  void p.then(() => (done = true));
  await new Promise((r) => setImmediate(r));
  return done;
}

describe('pending queue: withdrawing a held waiter', () => {
  it('withdrawing the only waiter refuses it with client_gone, drops the entry and remembers its id', async () => {
    const dropped: Array<[PendingView, number]> = [];
    const q = new PendingQueue({ clock, onDropped: (v, ms) => dropped.push([v, ms]) });
    const held = q.hold(holdReq('a.test'));
    expect(q.get(held.pendingId)).toMatchObject({ state: 'held', waiters: 1 });
    held.withdraw();
    await expect(held.outcome).resolves.toEqual({ allowed: false, reason: 'client_gone', by: 'client', pendingId: held.pendingId } satisfies HoldOutcome);
    expect(q.list()).toHaveLength(0);
    expect(q.size).toBe(0);
    expect(dropped).toHaveLength(1);
    expect(dropped[0]![0]).toMatchObject({ id: held.pendingId, host: 'a.test', port: 443, state: 'held', waiters: 0, request: 'CONNECT a.test:443' });
    expect(dropped[0]![1]).toBeGreaterThanOrEqual(0);
    expect(q.dropped(held.pendingId)).toMatchObject({ id: held.pendingId, host: 'a.test' });
    // a second withdraw, and a decision on the gone id, change nothing
    held.withdraw();
    expect(dropped).toHaveLength(1);
    expect(q.resolve(held.pendingId, true, 'once', 'cli')).toBeUndefined();
    // a late decision takes the memory: after that the id is unknown like any decided one
    expect(q.forgetDropped(held.pendingId)).toMatchObject({ id: held.pendingId });
    expect(q.dropped(held.pendingId)).toBeUndefined();
    // the same target asks again: a new prompt
    const again = q.hold(holdReq('a.test'));
    expect(again.joined).toBe(false);
    expect(again.pendingId).not.toBe(held.pendingId);
  });

  it('a second waiter keeps the entry alive; the decision reaches only the one still waiting', async () => {
    const dropped: PendingView[] = [];
    const q = new PendingQueue({ clock, onDropped: (v) => dropped.push(v) });
    const first = q.hold(holdReq('b.test'));
    const second = q.hold(holdReq('b.test'));
    expect(second.joined).toBe(true);
    expect(second.pendingId).toBe(first.pendingId);
    first.withdraw();
    await expect(first.outcome).resolves.toMatchObject({ allowed: false, reason: 'client_gone', by: 'client' });
    expect(q.get(first.pendingId)).toMatchObject({ state: 'held', waiters: 1 });
    expect(dropped).toHaveLength(0);
    expect(q.dropped(first.pendingId)).toBeUndefined();
    const res = q.resolve(first.pendingId, true, 'once', 'cli');
    expect(res?.entry.waiters).toBe(1);
    await expect(second.outcome).resolves.toMatchObject({ allowed: true, reason: 'once', by: 'cli' });
    expect(q.list()).toHaveLength(0);
  });

  it('withdraw after a decision (or a shutdown) is a no-op', async () => {
    const dropped: PendingView[] = [];
    const q = new PendingQueue({ clock, onDropped: (v) => dropped.push(v) });
    const held = q.hold(holdReq('c.test'));
    q.resolve(held.pendingId, true, 'session', 'tui');
    held.withdraw();
    await expect(held.outcome).resolves.toMatchObject({ allowed: true, reason: 'session', by: 'tui' });
    expect(dropped).toHaveLength(0);
    expect(q.dropped(held.pendingId)).toBeUndefined();

    const other = q.hold(holdReq('d.test'));
    q.clear('shutdown');
    other.withdraw();
    await expect(other.outcome).resolves.toMatchObject({ allowed: false, reason: 'shutdown' });
    expect(dropped).toHaveLength(0);
  });
});

/** An upstream on loopback that answers HTTP and counts every TCP connection it accepts. */
async function countingUpstream(): Promise<{ port: number; connections: () => number; requests: string[]; bodies: string[]; close(): Promise<void> }> {
  let connections = 0;
  const requests: string[] = [];
  const bodies: string[] = [];
  const server = createHttpServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      bodies.push(Buffer.concat(chunks).toString());
      res.end(JSON.stringify({ url: req.url }));
    });
  });
  server.on('connection', () => connections++);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as { port: number }).port,
    connections: () => connections,
    requests,
    bodies,
    close: () =>
      new Promise<void>((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}

/** A raw TCP server on loopback (a CONNECT target) that counts connections. */
async function countingTcp(): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  let connections = 0;
  const sockets = new Set<Socket>();
  const server = createNetServer((s) => {
    connections++;
    sockets.add(s);
    s.on('error', () => {});
    s.on('close', () => sockets.delete(s));
    s.pipe(s);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return {
    port: (server.address() as { port: number }).port,
    connections: () => connections,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

async function setup(over: Parameters<typeof startProxy>[0] = {}): Promise<Harness> {
  const h = await startProxy({ unsafeAllowLoopbackUpstreams: true, resolver: testResolver({ 'held.test': ['127.0.0.1'] }), ...over });
  cleanups.push(() => h.close());
  return h;
}

/** Open a raw client connection to the proxy and send `payload`. */
function rawClient(socketPath: string, payload: string): Socket {
  const s = connect(socketPath);
  s.on('error', () => {});
  s.write(payload);
  return s;
}

const getHead = (port: number, path = '/') => `GET http://held.test:${port}${path} HTTP/1.1\r\nHost: held.test:${port}\r\n\r\n`;
const decisions = (h: Harness) => h.events.filter((e) => e.kind === 'approval.decision');

async function onePending(h: Harness): Promise<PendingView> {
  const [entry] = await waitFor(() => h.proxy.pending().length === 1 && h.proxy.pending(), 'a pending entry');
  return entry as PendingView;
}

describe('egress proxy: a held request whose client left', () => {
  it('plain HTTP, client closes: the prompt is dropped, a late approve says client_gone, nothing is forwarded', async () => {
    const up = await countingUpstream();
    cleanups.push(() => up.close());
    const h = await setup();
    const client = rawClient(h.socketPath, getHead(up.port, '/secret'));
    const entry = await onePending(h);
    expect(entry).toMatchObject({ host: 'held.test', port: up.port, waiters: 1, request: 'GET /secret' });
    client.destroy();

    const drop = await waitFor(() => decisions(h).find((e) => e.decision === 'drop'), 'the drop event');
    expect(drop).toMatchObject({ kind: 'approval.decision', pending_id: entry.id, decision: 'drop', reason: 'client_gone', by: 'client', host: 'held.test', port: up.port, waiters: 0 });
    expect(h.proxy.pending()).toEqual([]);
    await waitFor(() => h.events.some((e) => e.kind === 'net.decision' && e.error === 'client_gone'), 'the refusal');

    const late = await h.proxy.decide(entry.id, 'once', 'cli');
    expect(late).toMatchObject({ decision: 'once', waiters: 0, client_gone: true, pending: { id: entry.id, host: 'held.test', port: up.port } });
    expect(decisions(h).at(-1)).toMatchObject({ decision: 'once', by: 'cli', pending_id: entry.id, client_gone: true, waiters: 0 });
    // decided now: a second decision is "not found" like for any decided entry
    await expect(h.proxy.decide(entry.id, 'once', 'cli')).rejects.toThrow(/no pending request/);
    // once adds no rule, and the upstream never saw a connection
    expect(h.policy.rules).toHaveLength(0);
    await new Promise((r) => setTimeout(r, 100));
    expect(up.connections()).toBe(0);
    expect(up.requests).toEqual([]);
  });

  it('plain HTTP, client half-closes: it still gets the client_gone refusal, and nothing is forwarded', async () => {
    const up = await countingUpstream();
    cleanups.push(() => up.close());
    const h = await setup();
    // The FIN right behind the head (`printf ... | nc -U`) arrives before the hold even starts:
    // the request is withdrawn as soon as it is held.
    const text = await rawExchange(h.socketPath, getHead(up.port, '/half'), undefined, 5_000, { halfClose: true });
    expect(text).toMatch(/^HTTP\/1\.1 403 Forbidden/);
    expect(text).toMatch(/X-Nemoclaw-Policy: client_gone; host=held\.test/);
    expect(text).toContain('"error":"client_gone"');
    const drop = decisions(h).find((e) => e.decision === 'drop');
    expect(drop).toMatchObject({ reason: 'client_gone', by: 'client', host: 'held.test', port: up.port });
    expect(h.events.find((e) => e.kind === 'net.held')).toMatchObject({ pending_id: drop!.pending_id });
    expect(h.proxy.pending()).toEqual([]);
    expect(await h.proxy.decide(String(drop!.pending_id), 'once', 'tui')).toMatchObject({ client_gone: true, waiters: 0 });

    // FIN some time after the head, while held: the same
    const client = rawClient(h.socketPath, getHead(up.port, '/later'));
    let later = '';
    client.on('data', (c: Buffer) => (later += c.toString()));
    const entry = await onePending(h);
    client.end();
    await waitFor(() => later.includes('"error":"client_gone"') && later, 'the client_gone refusal');
    expect(later).toContain(entry.id);
    expect(decisions(h).filter((e) => e.decision === 'drop').map((e) => e.pending_id)).toEqual([drop!.pending_id, entry.id]);
    client.destroy();
    await new Promise((r) => setTimeout(r, 100));
    expect(up.connections()).toBe(0);
  });

  it('a POST whose body came after the head, then the client left: still withdrawn', async () => {
    const up = await countingUpstream();
    cleanups.push(() => up.close());
    const h = await setup();
    const client = rawClient(h.socketPath, `POST http://held.test:${up.port}/upload HTTP/1.1\r\nHost: held.test:${up.port}\r\nContent-Length: 5\r\n\r\n`);
    const entry = await onePending(h);
    client.write('hello');
    await new Promise((r) => setTimeout(r, 50));
    client.end();
    await waitFor(() => decisions(h).find((e) => e.decision === 'drop'), 'the drop event');
    expect(h.proxy.pending()).toEqual([]);
    expect(await h.proxy.decide(entry.id, 'once', 'cli')).toMatchObject({ client_gone: true });
    await new Promise((r) => setTimeout(r, 100));
    expect(up.connections()).toBe(0);
    client.destroy();
  });

  it('a client that stays: a body sent while held is kept and forwarded whole once approved', async () => {
    const up = await countingUpstream();
    cleanups.push(() => up.close());
    const h = await setup();
    const client = rawClient(h.socketPath, `POST http://held.test:${up.port}/keep HTTP/1.1\r\nHost: held.test:${up.port}\r\nContent-Length: 11\r\n\r\nhello`);
    let answer = '';
    client.on('data', (c: Buffer) => (answer += c.toString()));
    const entry = await onePending(h);
    client.write(' world');
    await new Promise((r) => setTimeout(r, 50));
    expect(up.connections()).toBe(0);
    expect(await h.proxy.decide(entry.id, 'once', 'cli')).toMatchObject({ waiters: 1 });
    await waitFor(() => answer.includes('/keep'), 'the answer');
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    expect(up.requests).toEqual(['POST /keep']);
    expect(up.bodies).toEqual(['hello world']);
    client.destroy();
  });

  it('CONNECT, client closes: dropped, a late always still writes the rule, the target is never dialled', async () => {
    const target = await countingTcp();
    cleanups.push(() => target.close());
    const h = await setup();
    const client = rawClient(h.socketPath, `CONNECT held.test:${target.port} HTTP/1.1\r\nHost: held.test:${target.port}\r\n\r\n`);
    const entry = await onePending(h);
    expect(entry.request).toBe(`CONNECT held.test:${target.port}`);
    client.destroy();
    await waitFor(() => decisions(h).find((e) => e.decision === 'drop' && e.pending_id === entry.id), 'the drop event');
    expect(h.proxy.pending()).toEqual([]);

    const late = await h.proxy.decide(entry.id, 'always', 'cli');
    expect(late).toMatchObject({ decision: 'always', client_gone: true, waiters: 0 });
    expect(h.policy.overlay).toEqual([{ rule: { action: 'allow', host: 'held.test', port: target.port }, reason: expect.stringContaining(entry.id) as unknown }]);
    await new Promise((r) => setTimeout(r, 100));
    expect(target.connections()).toBe(0);

    // the rule applies from now on: a new CONNECT goes straight through
    const t = await proxyConnect(h.socketPath, `held.test:${target.port}`);
    expect(t.status).toBe(200);
    t.socket.destroy();
    expect(target.connections()).toBe(1);
  });

  it('CONNECT, a late session decision adds the session rule', async () => {
    const target = await countingTcp();
    cleanups.push(() => target.close());
    const h = await setup();
    const client = rawClient(h.socketPath, `CONNECT held.test:${target.port} HTTP/1.1\r\nHost: held.test:${target.port}\r\n\r\n`);
    const entry = await onePending(h);
    client.end();
    await waitFor(() => decisions(h).find((e) => e.decision === 'drop'), 'the drop event');
    expect(await h.proxy.decide(entry.id, 'session', 'tui')).toMatchObject({ client_gone: true });
    expect(h.policy.session).toEqual([{ action: 'allow', host: 'held.test', port: target.port }]);
    expect(target.connections()).toBe(0);
    client.destroy();
  });

  it('two clients on one prompt: one leaves, the other is approved and succeeds; the decision reports 1 waiter', async () => {
    const up = await countingUpstream();
    cleanups.push(() => up.close());
    const h = await setup();
    const leaver = rawClient(h.socketPath, getHead(up.port, '/a'));
    await onePending(h);
    const stayer = proxyRequest(h.socketPath, `http://held.test:${up.port}/b`);
    const [entry] = await waitFor(() => h.proxy.pending()[0]?.waiters === 2 && h.proxy.pending(), 'two waiters');
    leaver.destroy();
    await waitFor(() => h.proxy.pending()[0]?.waiters === 1, 'one waiter left');
    expect(decisions(h)).toEqual([]); // the prompt is still there: no drop
    expect(h.events.filter((e) => e.kind === 'net.decision' && e.error === 'client_gone')).toHaveLength(1);

    const result = await h.proxy.decide(entry!.id, 'once', 'cli');
    expect(result.waiters).toBe(1);
    expect(result.client_gone).toBeUndefined();
    expect(decisions(h)).toHaveLength(1);
    expect(decisions(h)[0]).toMatchObject({ decision: 'once', waiters: 1, pending_id: entry!.id });
    expect(decisions(h)[0]!.client_gone).toBeUndefined();
    const res = await stayer;
    expect(res.status).toBe(200);
    expect(res.json()).toMatchObject({ url: '/b' });
    expect(up.requests).toEqual(['GET /b']);
    expect(up.connections()).toBe(1);
  });

  it('the last client leaves while an always decision is being written: the answer says client_gone', async () => {
    const target = await countingTcp();
    cleanups.push(() => target.close());
    let release: () => void = () => {};
    let writing: () => void = () => {};
    const started = new Promise<void>((r) => (writing = r));
    const h = await setup({
      addOverlayRule: async () => {
        writing();
        await new Promise<void>((r) => (release = r));
      },
    });
    const client = rawClient(h.socketPath, `CONNECT held.test:${target.port} HTTP/1.1\r\nHost: held.test:${target.port}\r\n\r\n`);
    const entry = await onePending(h);
    const deciding = h.proxy.decide(entry.id, 'always', 'cli');
    await started;
    client.destroy();
    await waitFor(() => decisions(h).find((e) => e.decision === 'drop'), 'the drop event');
    expect(await settled(deciding)).toBe(false);
    release();
    expect(await deciding).toMatchObject({ decision: 'always', waiters: 0, client_gone: true });
    expect(decisions(h).at(-1)).toMatchObject({ decision: 'always', client_gone: true });
    await expect(h.proxy.decide(entry.id, 'once', 'cli')).rejects.toThrow(/no pending request/);
    expect(target.connections()).toBe(0);
  });
});
