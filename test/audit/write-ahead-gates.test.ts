/**
 * The write-ahead gates in the egress proxy and the privacy router (issue 14), with a log that
 * cannot be written: nothing is forwarded and the caller is told why (the audit log, the disk),
 * on every path an allow takes: a new plain-HTTP request, a keep-alive request, a CONNECT tunnel,
 * an inference call (in the caller's wire format). With a slow log, nothing is forwarded before
 * `durable()` resolves.
 */
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { proxyConnect, proxyRequest, startEcho, startProxy, startUpstream } from '../egress/harness.js';
import { post, startRouter } from '../inference/harness.js';
import { startStubUpstream } from '../stubs/upstream.js';

const PROBLEM = 'the audit log cannot be written (ENOSPC: no space left on device; /x/audit on /x (tmpfs tmpfs)); egress and inference are refused until it can';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await cleanups.pop()!();
});

/** A gate that can be broken (log failing) or slowed (durable() resolves on release()). */
function gate() {
  let failing = false;
  let held: Array<() => void> | undefined;
  return {
    fail: () => void (failing = true),
    hold: () => void (held = []),
    release: () => {
      for (const r of held ?? []) r();
      held = undefined;
    },
    audit: {
      durable: () => (failing ? Promise.reject(new Error(PROBLEM)) : held ? new Promise<void>((r) => held!.push(r)) : Promise.resolve()),
      writable: () => Promise.resolve(),
      problem: () => (failing ? PROBLEM : undefined),
    },
  };
}

describe('egress proxy write-ahead gate', () => {
  it('forwards only after durable() resolves; refuses new, keep-alive and tunnelled requests while the log fails', async () => {
    const up = await startUpstream();
    cleanups.push(() => up.close());
    const echo = await startEcho();
    cleanups.push(() => echo.close());
    const g = gate();
    const h = await startProxy({ audit: g.audit, unsafeAllowLoopbackUpstreams: true }, (p) => {
      p.rules.push({ action: 'allow', host: '127.0.0.1', port: up.port }, { action: 'allow', host: '127.0.0.1', port: echo.port });
    });
    cleanups.push(() => h.close());

    // Slow log: the request waits for durable(), then goes.
    g.hold();
    const slow = proxyRequest(h.socketPath, `http://127.0.0.1:${up.port}/slow`);
    await new Promise((r) => setTimeout(r, 150));
    expect(up.requests).toHaveLength(0);
    g.release();
    expect((await slow).status).toBe(200);
    expect(up.requests.map((r) => r.url)).toEqual(['/slow']);

    // A keep-alive connection with one allowed request on it, then the log fails.
    const sock = connect(h.socketPath);
    await new Promise<void>((r) => sock.once('connect', () => r()));
    let buf = '';
    sock.on('data', (c: Buffer) => (buf += c.toString('latin1')));
    const get = (path: string) => sock.write(`GET http://127.0.0.1:${up.port}${path} HTTP/1.1\r\nHost: 127.0.0.1:${up.port}\r\n\r\n`);
    get('/ka1');
    while (!buf.includes('"/ka1"')) await new Promise((r) => setTimeout(r, 10));
    g.fail();
    buf = '';
    get('/ka2');
    while (!buf.includes('\r\n\r\n') || !buf.includes('}')) await new Promise((r) => setTimeout(r, 10));
    expect(buf).toMatch(/^HTTP\/1\.1 503/);
    expect(buf).toContain('audit_unavailable');
    sock.destroy();

    const fresh = await proxyRequest(h.socketPath, `http://127.0.0.1:${up.port}/new`);
    expect(fresh.status).toBe(503);
    expect(fresh.json()).toMatchObject({ error: 'audit_unavailable', detail: PROBLEM });
    const tunnel = await proxyConnect(h.socketPath, `127.0.0.1:${echo.port}`);
    expect(tunnel.status).toBe(503);
    tunnel.socket.destroy();
    expect(echo.sockets.size).toBe(0);
    expect(up.requests.map((r) => r.url)).toEqual(['/slow', '/ka1']);
  });
});

describe('privacy router write-ahead gate', () => {
  it('refuses a call in its wire format, with no upstream call, while the log fails', async () => {
    const local = await startStubUpstream();
    cleanups.push(() => local.close());
    const g = gate();
    g.fail();
    const h = await startRouter({ providers: { local: { type: 'openai', base_url: local.openaiBaseUrl, locality: 'local', model: 'm' } }, routes: [{ name: 'default', provider: 'local' }] }, { durable: g.audit.durable });
    cleanups.push(() => h.close());
    const res = await post(`${h.url}/v1/chat/completions`, { model: 'm', messages: [{ role: 'user', content: 'hi' }] });
    expect(res.status).toBe(503);
    expect(res.json.error.message).toBe(PROBLEM);
    expect(res.json.error.code).toBe('audit_unavailable');
    const msg = await post(`${h.url}/v1/messages`, { model: 'm', max_tokens: 10, messages: [{ role: 'user', content: 'hi' }] }, { 'anthropic-version': '2023-06-01' });
    expect(msg.status).toBe(503);
    expect(msg.json.type).toBe('error');
    expect(local.requests).toHaveLength(0);
    expect(h.events.find((e) => e.kind === 'inference.done')).toMatchObject({ status: 503, outcome: 'audit_unavailable' });
  });
});
