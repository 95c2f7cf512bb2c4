import { statSync } from 'node:fs';
import { connect } from 'node:net';
import { dirname, join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/index.js';
import type { AuditEvent } from '../../src/audit/events.js';
import { ControlClient } from '../../src/control/client.js';
import { SupervisorEventBus } from '../../src/control/eventbus.js';
import { OperatorPresenceTracker } from '../../src/control/presence.js';
import { ControlServer } from '../../src/control/server.js';
import type { ControlRoute } from '../../src/control/types.js';
import { NemoclawError } from '../../src/shared/errors.js';
import { makeTempHome, type TempHome } from '../helpers/supervisor.js';

/** Raw HTTP over the socket: what curl or a broken client would send. */
function rawRequest(socketPath: string, text: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let data = '';
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => (data += c));
    sock.on('end', () => resolve(data));
    sock.on('error', reject);
    sock.write(text);
  });
}

function until(cond: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  return new Promise((resolve, reject) => {
    const tick = (): void => {
      if (cond()) return resolve();
      if (Date.now() > deadline) return reject(new Error('condition not met in time'));
      setTimeout(tick, 10);
    };
    tick();
  });
}

describe('control API server and client', () => {
  let home: TempHome;
  let audit: AuditLog;
  let bus: SupervisorEventBus;
  let presence: OperatorPresenceTracker;
  let server: ControlServer;
  let socketPath: string;
  let client: ControlClient;

  const testRoutes: ControlRoute[] = [
    { method: 'GET', path: '/v1/things/:id', handler: (req) => ({ status: 200, body: { id: req.params.id, q: req.query.get('q') } }) },
    { method: 'GET', path: '/v1/things/count', handler: () => ({ status: 200, body: { count: 2 } }) },
    { method: 'POST', path: '/v1/echo', handler: (req) => ({ status: 201, body: { got: req.body } }) },
    {
      method: 'POST',
      path: '/v1/refuse',
      handler: () => {
        throw new NemoclawError('policy_static_change', 'filesystem_policy cannot change while running', { nextStep: 'restart the supervisor' });
      },
    },
    {
      method: 'GET',
      path: '/v1/crash',
      handler: () => {
        throw new TypeError('undefined is not a function');
      },
    },
  ];

  async function startServer(opts: { maxBufferedBytes?: number; bodyTimeoutMs?: number } = {}): Promise<void> {
    server = new ControlServer({
      socketPath,
      sandbox: 'default',
      bus,
      presence,
      routes: testRoutes,
      heartbeatMs: 100,
      onError: () => undefined,
      ...opts,
    });
    await server.listen();
  }

  beforeEach(async () => {
    home = await makeTempHome();
    audit = await AuditLog.open({ dir: join(home.dir, 'audit'), sandbox: 'default' });
    bus = new SupervisorEventBus({ sandbox: 'default', audit, ringSize: 50 });
    presence = new OperatorPresenceTracker();
    socketPath = join(home.dir, 'sandboxes', 'default', 'control.sock');
    client = new ControlClient({ socketPath, sandbox: 'default', timeoutMs: 5_000 });
    await startServer();
  });

  afterEach(async () => {
    await server.close();
    await audit.close();
    await home.cleanup();
  });

  it('creates the socket 0600 in a 0700 directory', () => {
    expect(statSync(socketPath).mode & 0o777).toBe(0o600);
    expect(statSync(dirname(socketPath)).mode & 0o777).toBe(0o700);
  });

  it('serves contributed routes with :params, literal segments first, and JSON bodies', async () => {
    expect(await client.request('GET', '/v1/things/a%20b?q=1')).toEqual({ id: 'a b', q: '1' });
    expect(await client.request('GET', '/v1/things/count')).toEqual({ count: 2 });
    expect(await client.request('POST', '/v1/echo', { x: [1, 2] })).toEqual({ got: { x: [1, 2] } });
  });

  it('answers unknown routes, wrong methods, bad JSON and handler failures with JSON errors and keeps serving', async () => {
    await expect(client.request('GET', '/v1/nope')).rejects.toMatchObject({ code: 'not_found' });
    const wrongMethod = await rawRequest(socketPath, 'DELETE /v1/echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(wrongMethod).toMatch(/^HTTP\/1\.1 405/);
    expect(wrongMethod).toContain('"allowed":["POST"]');

    const torn = '{"x": 1,';
    const badJson = await rawRequest(
      socketPath,
      `POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: ${torn.length}\r\nConnection: close\r\n\r\n${torn}`,
    );
    expect(badJson).toMatch(/^HTTP\/1\.1 400/);
    expect(badJson).toContain('not valid JSON');

    const garbage = await rawRequest(socketPath, 'THIS IS NOT HTTP\r\n\r\n');
    expect(garbage).toMatch(/^HTTP\/1\.1 400/);

    await expect(client.request('GET', '/v1/crash')).rejects.toMatchObject({ code: 'internal' });
    const refused = await client.request('POST', '/v1/refuse').catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(NemoclawError);
    expect(refused).toMatchObject({ code: 'policy_static_change', nextStep: 'restart the supervisor' });

    // Still alive after all of that.
    expect(await client.request('GET', '/v1/things/count')).toEqual({ count: 2 });
  });

  it('reports a missing supervisor as not_running with the next step', async () => {
    const nobody = new ControlClient({ socketPath: join(home.dir, 'none.sock'), sandbox: 'lab' });
    const err = await nobody.status().catch((e: unknown) => e);
    expect(err).toBeInstanceOf(NemoclawError);
    expect(err).toMatchObject({ code: 'not_running' });
    expect((err as NemoclawError).nextStep).toBe('start it with `nemoclaw-tui up --name lab`');
  });

  it('returns the backlog filtered by kind, seq and the last n, and rejects unknown kinds', async () => {
    for (let i = 0; i < 5; i++) bus.emit({ kind: 'agent.log', line: `line ${i}` });
    bus.emit({ kind: 'policy.revision', revision: 2 });
    const all = await client.events();
    expect(all.map((e) => e.seq)).toEqual([1, 2, 3, 4, 5, 6]);
    expect((await client.events({ kinds: ['policy.revision'] })).map((e) => e.revision)).toEqual([2]);
    expect((await client.events({ since: 4 })).map((e) => e.seq)).toEqual([5, 6]);
    expect((await client.events({ n: 2, kinds: ['agent.log'] })).map((e) => e.line)).toEqual(['line 3', 'line 4']);
    await expect(client.events({ kinds: ['nope' as never] })).rejects.toMatchObject({ code: 'invalid_input', exitCode: 2 });
  });

  it('reads an old backlog from disk once the memory ring has moved on', async () => {
    for (let i = 1; i <= 120; i++) bus.emit({ kind: 'agent.log', line: `l${i}` });
    const since = await client.events({ since: 3, n: 1_000 });
    expect(since.length).toBe(117);
    expect(since[0]!.seq).toBe(4);
    const lastTwo = await client.events({ n: 2 });
    expect(lastTwo.map((e) => e.seq)).toEqual([119, 120]);
  });

  it('follows: backlog, then live events, with heartbeats; an approver stream counts as an attached operator', async () => {
    bus.emit({ kind: 'agent.log', line: 'before' });
    const seen: AuditEvent[] = [];
    const controls: string[] = [];
    const stop = new AbortController();
    const done = client.stream(
      '/v1/events?follow=1&approver=1',
      (obj) => {
        if (typeof obj.kind === 'string') seen.push(obj as AuditEvent);
        else controls.push(String(obj.type));
      },
      { signal: stop.signal },
    );
    await until(() => controls.includes('backlog_end'));
    expect(presence.attachedCount()).toBe(1);
    bus.emit({ kind: 'agent.log', line: 'after' });
    // Audited events reach subscribers once durable; a transient sample goes out at once.
    await bus.durable();
    bus.publishTransient({ kind: 'gpu.sample', util: 50 });
    await until(() => seen.length === 3 && controls.includes('heartbeat'));
    expect(seen.map((e) => e.line ?? e.kind)).toEqual(['before', 'after', 'gpu.sample']);
    expect(seen[2]!.transient).toBe(true);
    expect(controls[0]).toBe('hello');
    stop.abort();
    await done;
    await until(() => presence.attachedCount() === 0);
  });

  it('followEvents resumes after the last seq when the supervisor restarts, without gaps or repeats', async () => {
    bus.emit({ kind: 'agent.log', line: 'e1' });
    const seen: number[] = [];
    const notes: string[] = [];
    const stop = new AbortController();
    const following = client.followEvents(
      {},
      (e) => seen.push(e.seq),
      {
        signal: stop.signal,
        minBackoffMs: 20,
        maxBackoffMs: 100,
        onReconnecting: (i) => notes.push(`reconnecting after ${i.afterSeq}`),
        onResumed: (i) => notes.push(`resumed after ${i.afterSeq}`),
      },
    );
    await until(() => seen.length === 1);
    bus.emit({ kind: 'agent.log', line: 'e2' });
    await until(() => seen.length === 2);

    await server.close('restart');
    bus.emit({ kind: 'agent.log', line: 'while down 1' });
    bus.emit({ kind: 'agent.log', line: 'while down 2' });
    await until(() => notes.some((n) => n.startsWith('reconnecting')));
    await startServer();
    await until(() => seen.length === 4);
    bus.emit({ kind: 'agent.log', line: 'e5' });
    await until(() => seen.length === 5);
    stop.abort();
    await following;
    expect(seen).toEqual([1, 2, 3, 4, 5]);
    expect(notes[0]).toBe('reconnecting after 2');
    expect(notes).toContain('resumed after 2');
  });

  it('drops a client that stops reading with a final error line instead of buffering without bound', async () => {
    await server.close();
    await startServer({ maxBufferedBytes: 64 * 1024 });
    const sock = connect(socketPath);
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.write('GET /v1/events?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n');
    sock.pause();
    await until(() => bus.subscriberCount() === 1);
    const filler = 'x'.repeat(1_000);
    for (let i = 0; i < 5_000; i++) bus.emit({ kind: 'agent.log', line: filler });
    // The server gave up on us: no subscription is left.
    await until(() => bus.subscriberCount() === 0);
    let data = '';
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => (data += c));
    sock.resume();
    await new Promise<void>((r) => sock.once('close', () => r()));
    const lines = data.split('\r\n').join('\n').split('\n').filter((l) => l.startsWith('{'));
    const last = JSON.parse(lines[lines.length - 1]!) as { type: string; error: string; message: string };
    expect(last).toMatchObject({ type: 'error', error: 'slow_client' });
    expect(last.message).toMatch(/since=\d+/);
    const events = lines.filter((l) => l.includes('"kind"'));
    expect(events.length).toBeLessThan(5_000);
    // And the server still serves others.
    expect(await client.request('GET', '/v1/things/count')).toEqual({ count: 2 });
  });
  it('a client that half-closes after its request still gets the whole answer, a long backlog included', async () => {
    // `socat`, `nc -N` and scripts shut their write side once the request is sent. Node's default
    // is to end the socket on that FIN, cutting a backlog stream still being written.
    const filler = 'y'.repeat(500);
    for (let i = 0; i < 3_000; i++) bus.emit({ kind: 'agent.log', line: `${i} ${filler}` });
    await until(() => bus.lastSeq() >= 3_000);
    const data = await new Promise<string>((resolve, reject) => {
      const sock = connect(socketPath);
      let got = '';
      sock.setEncoding('utf8');
      sock.on('data', (c: string) => (got += c));
      sock.on('end', () => resolve(got));
      sock.on('error', reject);
      sock.on('connect', () => sock.end('GET /v1/events?follow=0&n=100000 HTTP/1.1\r\nHost: x\r\n\r\n'));
    });
    expect(data).toMatch(/^HTTP\/1\.1 200 /);
    expect(data.endsWith('0\r\n\r\n'), `the chunked answer ends (${data.length} bytes, ends ${JSON.stringify(data.slice(-60))})`).toBe(true);
    expect(data.match(/"kind":"agent\.log"/g)).toHaveLength(3_000);
    // And a plain JSON answer too.
    const small = await new Promise<string>((resolve, reject) => {
      const sock = connect(socketPath);
      let got = '';
      sock.setEncoding('utf8');
      sock.on('data', (c: string) => (got += c));
      sock.on('end', () => resolve(got));
      sock.on('error', reject);
      sock.on('connect', () => sock.end('GET /v1/things/count HTTP/1.1\r\nHost: x\r\n\r\n'));
    });
    expect(small).toMatch(/^HTTP\/1\.1 200 [\s\S]*\{"count":2\}/);
  });

  it('a request body that stops coming is dropped at its deadline; the server keeps serving', async () => {
    await server.close();
    await startServer({ bodyTimeoutMs: 300 });
    const errors: unknown[] = [];
    const sock = connect(socketPath);
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const started = Date.now();
    sock.write('POST /v1/echo HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{"a":');
    sock.on('error', (e) => errors.push(e));
    await new Promise<void>((r) => sock.once('close', () => r()));
    const took = Date.now() - started;
    expect(took).toBeGreaterThanOrEqual(250);
    expect(took).toBeLessThan(5_000);
    expect(await client.request('POST', '/v1/echo', { b: 1 })).toEqual({ got: { b: 1 } });
  });
  it('a follower that half-closes has left: its stream ends and it no longer counts as an attached operator', async () => {
    const sock = connect(socketPath);
    await new Promise<void>((r) => sock.once('connect', () => r()));
    let data = '';
    sock.setEncoding('utf8');
    sock.on('data', (c: string) => (data += c));
    sock.write('GET /v1/events?follow=1&approver=1 HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => bus.subscriberCount() === 1 && presence.attachedCount() === 1);
    sock.end();
    await until(() => bus.subscriberCount() === 0 && presence.attachedCount() === 0);
    await new Promise<void>((r) => (sock.closed ? r() : sock.once('close', () => r())));
    expect(data).toContain('"type":"end"');
  });
});
