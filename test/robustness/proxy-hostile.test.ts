/**
 * Hostile clients straight at the egress proxy socket ($NEMOCLAW_HOME/sandboxes/<name>/run/proxy/proxy.sock):
 * oversized heads, binary garbage, half-closed sockets, heads that never end, thousands of
 * connections opened and dropped. Each gets a clear refusal (or is cut off) and the proxy keeps
 * serving a normal request afterwards; no connection is left behind.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEgressProxy, type EgressProxy } from '../../src/egress/index.js';
import { systemClock } from '../../src/shared/clock.js';
import { makeTempHome, runCli, startDaemonSupervisor, type DaemonSupervisor, type TempHome } from '../helpers/supervisor.js';
import { garbageBytes } from './fixtures.js';
import { expectAuditVerifies, rawExchange, runningState, unixHttp, waitUntil, type RunningState } from './helpers.js';

let home: TempHome;
let d: DaemonSupervisor;
let upstream: Server;
let port = 0;
let before: RunningState;

beforeAll(async () => {
  upstream = createServer((req, res) => {
    req.resume();
    res.end(`hello ${req.url}`);
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  port = (upstream.address() as AddressInfo).port;
  home = await makeTempHome('nct-rprox-');
  const policyText = `version: 1
approvals:
  mode: deny
network_policies:
  stub:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: 127.0.0.1
        port: ${port}
`;
  d = await startDaemonSupervisor({ home: home.dir, policyText, args: ['--unsafe-allow-loopback-upstreams'] });
  before = await runningState(home.dir);
}, 60_000);

afterAll(async () => {
  await d?.stop();
  await home?.cleanup();
  upstream?.closeAllConnections();
  await new Promise<void>((r) => (upstream ? upstream.close(() => r()) : r()));
});

async function normalRequest(path = '/ok'): Promise<void> {
  const r = await unixHttp(d.paths.proxySocket, 'GET', `http://127.0.0.1:${port}${path}`, undefined, { host: `127.0.0.1:${port}` });
  expect(r.status, r.text).toBe(200);
  expect(r.text).toBe(`hello ${path}`);
}

function statusLine(data: Buffer): string {
  return data.toString('latin1').split('\r\n')[0] ?? '';
}

function jsonBody(data: Buffer): Record<string, unknown> {
  const text = data.toString('utf8');
  return JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
}

async function egressCounters(): Promise<Record<string, number>> {
  const s = await d.client.status();
  return (s.services.egress as { counters: Record<string, number> }).counters;
}

describe('hostile requests at the proxy socket', () => {
  it('serves a normal request to begin with', async () => {
    await normalRequest('/before');
  });

  it('an oversized head: 431 with a JSON reason, connection closed', async () => {
    const head = `GET http://127.0.0.1:${port}/ HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`;
    const r = await rawExchange(d.paths.proxySocket, head);
    expect(r.closedByServer).toBe(true);
    expect(statusLine(r.data)).toBe('HTTP/1.1 431 Request Header Fields Too Large');
    expect(jsonBody(r.data)).toMatchObject({ error: 'bad_request', detail: 'request head larger than 16 KiB' });
  });

  it('an endless head with no end of line: cut off at the head limit', async () => {
    const r = await rawExchange(d.paths.proxySocket, [], { gapMs: 1, keepSending: () => 'A'.repeat(4096) });
    expect(r.closedByServer).toBe(true);
    expect(statusLine(r.data)).toMatch(/^HTTP\/1\.1 (400|431) /);
  });

  it('binary garbage: 400 naming what was wrong and what to send instead', async () => {
    const r = await rawExchange(d.paths.proxySocket, Buffer.concat([garbageBytes(2048), Buffer.from('\r\n\r\n')]));
    expect(r.closedByServer).toBe(true);
    expect(statusLine(r.data)).toBe('HTTP/1.1 400 Bad Request');
    const body = jsonBody(r.data);
    expect(body.error).toBe('bad_request');
    expect(String((body.next_steps as string[])[0])).toContain('well-formed HTTP/1.1 request');
  });

  it('half-closed sockets: a refused request still gets its answer; a partial one is closed at once', async () => {
    // (An allowed request followed by the client's FIN is answered too: see egress-slow-client.test.ts.)
    const refused = await rawExchange(d.paths.proxySocket, 'GET http://blocked.example/ HTTP/1.1\r\nHost: blocked.example\r\n\r\n', { halfClose: true });
    expect(statusLine(refused.data)).toBe('HTTP/1.1 403 Forbidden');
    expect(jsonBody(refused.data)).toMatchObject({ error: 'policy_denied', host: 'blocked.example', port: 80 });

    const partial = await rawExchange(d.paths.proxySocket, 'GET http://127.0.0.1/ HTTP/1.1\r\nHost: 12', { halfClose: true, deadlineMs: 3_000 });
    expect(partial.closedByServer, 'a half-closed partial head must not hold the connection').toBe(true);
  });

  it('thousands of connections opened and dropped leave nothing behind', async () => {
    const total = 3_000;
    let opened = 0;
    let finished = 0;
    await new Promise<void>((resolve) => {
      const one = (): void => {
        if (opened >= total) return;
        const i = opened++;
        const s = connect(d.paths.proxySocket);
        s.on('error', () => undefined);
        s.on('connect', () => {
          // A third drop at once, a third after half a head, a third after a whole one.
          if (i % 3 === 1) s.write('GET http://127.0.0.1/ HTTP/1.1\r\nHo');
          if (i % 3 === 2) s.write(`GET http://127.0.0.1:${port}/drop HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`);
          s.destroy();
        });
        s.on('close', () => {
          if (++finished === total) resolve();
          else one();
        });
      };
      for (let k = 0; k < 100; k++) one();
    });
    await waitUntil(async () => (await egressCounters()).open_connections === 0, 'the proxy to release every dropped connection', 15_000);
    await normalRequest('/after-drops');
  }, 30_000);

  it('afterwards: the proxy serves, the supervisor answers with the same policy, the audit chain verifies', async () => {
    await normalRequest('/after');
    expect(await runningState(home.dir)).toEqual(before);
    const c = await egressCounters();
    expect(c.parse_errors).toBeGreaterThanOrEqual(3);
    expect(await runCli(['pending'], { home: home.dir })).toMatchObject({ code: 0 });
    await expectAuditVerifies(home.dir);
  });
});

describe('a request head that never ends (proxy with a short head deadline)', () => {
  let proxy: EgressProxy;
  let dir: TempHome;

  beforeAll(async () => {
    dir = await makeTempHome('nct-rslow-');
    proxy = createEgressProxy({
      decide: () => ({ verdict: 'deny', reason: 'test' }) as ReturnType<Parameters<typeof createEgressProxy>[0]['decide']>,
      approvals: () => ({ mode: 'deny', timeout: 1, when_unattended: 'deny', max_pending: 10 }),
      operatorsAttached: () => 0,
      emit: () => undefined,
      clock: systemClock,
      headTimeoutMs: 400,
    });
    await proxy.listen(`${dir.dir}/proxy.sock`);
  });

  afterAll(async () => {
    await proxy?.close();
    await dir?.cleanup();
  });

  it('a silent client after half a head is cut off at the deadline, and the slot is freed', async () => {
    const r = await rawExchange(`${dir.dir}/proxy.sock`, 'GET http://a.example/ HTTP/1.1\r\nHost: a', { deadlineMs: 5_000 });
    expect(r.closedByServer).toBe(true);
    expect(r.elapsedMs).toBeGreaterThanOrEqual(300);
    await waitUntil(() => proxy.counters().open_connections === 0, 'the slot to be freed', 2_000);
  });
});
