/**
 * Malformed requests on the control socket ($NEMOCLAW_HOME/sandboxes/<name>/control.sock): bad JSON,
 * wrong shapes, huge bodies and heads, unknown routes, wrong methods, bad query parameters and
 * bytes that are not HTTP. Each gets a JSON error naming the problem (and, where there is one,
 * what to do); the supervisor keeps answering with its policy unchanged.
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempHome, startDaemonSupervisor, type DaemonSupervisor, type TempHome } from '../helpers/supervisor.js';
import { garbageBytes } from './fixtures.js';
import { expectAuditVerifies, rawExchange, runningState, unixHttp, waitUntil, type RunningState } from './helpers.js';

let home: TempHome;
let d: DaemonSupervisor;
let before: RunningState;

beforeAll(async () => {
  home = await makeTempHome('nct-rctl-');
  d = await startDaemonSupervisor({ home: home.dir });
  before = await runningState(home.dir);
}, 60_000);

afterAll(async () => {
  await d?.stop();
  await home?.cleanup();
});

const JSON_HEADERS = { 'content-type': 'application/json' };

async function call(method: string, path: string, body?: string | Buffer, headers: Record<string, string> = JSON_HEADERS) {
  const r = await unixHttp(d.paths.controlSocket, method, path, body, headers);
  let json: Record<string, unknown> | undefined;
  try {
    json = JSON.parse(r.text) as Record<string, unknown>;
  } catch {
    json = undefined;
  }
  expect(json, `${method} ${path} answered something that is not JSON: ${r.text.slice(0, 200)}`).toBeDefined();
  return { status: r.status, json: json! };
}

describe('malformed control API requests', () => {
  it('bad JSON on PUT /v1/policy: 400 saying so and what to send', async () => {
    const r = await call('PUT', '/v1/policy', '{"yaml": "version: 1');
    expect(r.status).toBe(400);
    expect(r.json).toMatchObject({ error: 'invalid_input' });
    expect(r.json.message).toMatch(/^request body is not valid JSON/);
    expect(r.json.next_step).toMatch(/send a JSON object/);
  });

  it('JSON of the wrong shape or types: 400 naming the expected body', async () => {
    for (const body of ['[1,2,3]', '"yaml"', 'null', '{"yaml": 42}', '{"yml": "version: 1"}']) {
      const r = await call('PUT', '/v1/policy', body);
      expect(r.status, body).toBe(400);
      expect(r.json.message, body).toContain('PUT /v1/policy needs a JSON body {"yaml": "<policy text>"');
    }
    const author = await call('PUT', '/v1/policy', JSON.stringify({ yaml: 'version: 1\n', author: 'root' }));
    expect(author.status).toBe(400);
    expect(author.json.message).toMatch(/^author must be one of cli, tui, approval/);
  });

  it('a policy that does not validate: 400 with the issues, running revision kept', async () => {
    const r = await call('PUT', '/v1/policy', JSON.stringify({ yaml: 'version: 2\nnetwork_policies: []\n', source: 'api-test.yaml' }));
    expect(r.status).toBe(400);
    expect(r.json.error).toBe('policy_invalid');
    expect(JSON.stringify(r.json)).toContain('api-test.yaml');
  });

  it('a body over the limit (5 MiB): 400 saying the limit, without hanging the connection', async () => {
    const huge = JSON.stringify({ yaml: `# ${'x'.repeat(5 * 1024 * 1024)}\nversion: 1\n` });
    const r = await call('PUT', '/v1/policy', huge);
    expect(r.status).toBe(400);
    expect(r.json.message).toMatch(/^request body is larger than \d+ bytes/);
  });

  it('unknown routes: 404 pointing at the route list; wrong methods: 405 with the allowed ones', async () => {
    const unknown = await call('GET', '/v1/does-not-exist');
    expect(unknown.status).toBe(404);
    expect(unknown.json).toMatchObject({ error: 'not_found', message: 'no such control route: GET /v1/does-not-exist' });
    expect(unknown.json.next_step).toContain('GET /v1/status');

    const traversal = await call('GET', '/v1/../../etc/passwd');
    expect(traversal.status).toBe(404);

    const wrong = await call('DELETE', '/v1/status');
    expect(wrong.status).toBe(405);
    expect(wrong.json).toMatchObject({ error: 'invalid_input', allowed: ['GET'] });

    const events = await call('POST', '/v1/events', '{}');
    expect(events.status).toBe(405);
    expect(events.json.allowed).toEqual(['GET']);
  });

  it('bad query parameters and route parameters: 400/404 naming the parameter', async () => {
    const since = await call('GET', '/v1/events?since=abc');
    expect(since.status).toBe(400);
    expect(since.json.message).toBe('query parameter since must be a non-negative integer, got "abc"');

    const kind = await call('GET', '/v1/events?kind=net.decision,bogus.kind');
    expect(kind.status).toBe(400);
    expect(kind.json.message).toBe('unknown event kind: bogus.kind');
    expect(kind.json.next_step).toContain('event schema');

    const badEscape = await call('POST', '/v1/pending/%E0%A4%A', '{"decision":"once"}');
    expect(badEscape.status).toBe(404);

    const decision = await call('POST', '/v1/pending/p-1', '{"decision":"maybe"}');
    expect(decision.status).toBe(400);
    expect(decision.json.message).toMatch(/^decision must be one of once, session, always, deny, deny_always/);
  });

  it('bytes that are not HTTP, and oversized heads: 400 JSON, connection closed', async () => {
    for (const payload of [garbageBytes(1024), Buffer.from('HELLO SUPERVISOR\r\n\r\n'), Buffer.from('\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03')]) {
      const r = await rawExchange(d.paths.controlSocket, payload);
      expect(r.closedByServer).toBe(true);
      const text = r.data.toString('latin1');
      expect(text).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n/);
      expect(text).toContain('{"error":"invalid_input","message":"malformed HTTP request"}');
    }
    const bigHead = await rawExchange(d.paths.controlSocket, `GET /v1/status HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(64 * 1024)}\r\n\r\n`);
    expect(bigHead.closedByServer).toBe(true);
    expect(bigHead.data.toString('latin1')).toMatch(/^HTTP\/1\.1 (400|431) /);
  });

  it('hundreds of connections dropped mid-request are forgotten', async () => {
    const total = 500;
    await Promise.all(
      Array.from(
        { length: total },
        (_, i) =>
          new Promise<void>((resolve) => {
            const s = connect(d.paths.controlSocket);
            s.on('error', () => resolve());
            s.on('close', () => resolve());
            s.on('connect', () => {
              if (i % 2 === 0) s.write('PUT /v1/policy HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"yaml":');
              else s.write('GET /v1/events?follow=1 HTTP/1.1\r\nHost: x\r\n\r\n');
              setTimeout(() => s.destroy(), 5);
            });
          }),
      ),
    );
    await waitUntil(async () => (await d.client.status()).operators === 0, 'the supervisor to answer after the drops');
  });

  it('afterwards: the supervisor answers with the same policy revision and the audit chain verifies', async () => {
    expect(await runningState(home.dir)).toEqual(before);
    await expectAuditVerifies(home.dir);
  });
});
