/**
 * Slow and half-closing clients of the egress proxy: a head trickled one byte at a time is cut off
 * at the head deadline counted from its first byte (slowloris), and a complete request followed by
 * the client's FIN still gets its answer before the connection closes.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEgressProxy, type EgressProxy } from '../../src/egress/index.js';
import { systemClock } from '../../src/shared/clock.js';
import { makeTempHome, type TempHome } from '../helpers/supervisor.js';
import { rawExchange } from './helpers.js';

let dir: TempHome;
let proxy: EgressProxy;
let upstream: Server;
let port = 0;

beforeAll(async () => {
  upstream = createServer((req, res) => {
    req.resume();
    // A little later than at once, like any real upstream.
    setTimeout(() => res.end(`hello ${req.url}`), 20);
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  port = (upstream.address() as AddressInfo).port;
  dir = await makeTempHome('nct-rpegr-');
  proxy = createEgressProxy({
    decide: () => ({ verdict: 'allow', reason: 'test', rule: 'stub' }) as ReturnType<Parameters<typeof createEgressProxy>[0]['decide']>,
    approvals: () => ({ mode: 'deny', timeout: 1, when_unattended: 'deny', max_pending: 10 }),
    operatorsAttached: () => 0,
    emit: () => undefined,
    clock: systemClock,
    unsafeAllowLoopbackUpstreams: true,
    headTimeoutMs: 500,
  });
  await proxy.listen(`${dir.dir}/proxy.sock`);
});

afterAll(async () => {
  await proxy?.close();
  upstream?.closeAllConnections();
  await new Promise<void>((r) => upstream.close(() => r()));
  await dir?.cleanup();
});

describe('egress proxy: slow and half-closing clients', () => {
  it('slowloris: a head trickled one byte at a time is cut off at the head deadline', async () => {
    const r = await rawExchange(`${dir.dir}/proxy.sock`, 'GET http://a.example/ HTTP/1.1\r\nX-Slow: ', {
      gapMs: 100,
      keepSending: () => 'a',
      deadlineMs: 4_000,
    });
    expect(r.closedByServer, 'the connection was still open after 8x the head deadline').toBe(true);
    expect(r.elapsedMs).toBeLessThan(2_000);
    expect(r.data.toString('latin1').split('\r\n')[0]).toBe('HTTP/1.1 408 Request Timeout');
    expect(proxy.counters().head_timeouts).toBeGreaterThanOrEqual(1);
  });

  it('keep-alive still works: requests on one connection, each head in parts, for longer than the head deadline', async () => {
    const head = (path: string) => `GET http://127.0.0.1:${port}${path} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`;
    const [a1, a2] = [head('/k1').slice(0, 10), head('/k1').slice(10)];
    // 150 ms apart: four parts take 450 ms + answers, the whole exchange longer than the 500 ms deadline.
    const r = await rawExchange(`${dir.dir}/proxy.sock`, [a1, a2, head('/k2'), head('/k3')], { gapMs: 150, deadlineMs: 4_000 });
    const text = r.data.toString('latin1');
    expect(text.match(/HTTP\/1\.1 200 OK/g)?.length, text).toBe(3);
    for (const p of ['/k1', '/k2', '/k3']) expect(text).toContain(`hello ${p}`);
    expect(r.elapsedMs, 'the idle connection is closed after the keep-alive idle time').toBeLessThan(4_000);
  });

  it('a complete request followed by the client half-closing (FIN) still gets its answer', async () => {
    const r = await rawExchange(`${dir.dir}/proxy.sock`, `GET http://127.0.0.1:${port}/half HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`, { halfClose: true });
    expect(r.data.toString('latin1').split('\r\n')[0]).toBe('HTTP/1.1 200 OK');
    expect(r.data.toString()).toContain('hello /half');
  });
});
