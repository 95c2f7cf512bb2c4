/**
 * Malformed model responses through the privacy router (inference.local, reached the way the
 * sandbox reaches it: through the egress proxy socket): truncated JSON, invalid SSE, a connection
 * closed mid-stream, a 500 with an HTML page, a huge body, to OpenAI and Anthropic callers. The
 * caller gets an error in its own wire format, `inference.done` records the failure, and the router
 * keeps serving.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/events.js';
import { makeTempHome, startDaemonSupervisor, type DaemonSupervisor, type TempHome } from '../helpers/supervisor.js';
import { startBadUpstream, type BadUpstream } from './bad-upstream.js';
import { expectAuditVerifies, runningState, supervisorPid, unixHttp, vmRssKb, waitUntil, type RunningState } from './helpers.js';

let home: TempHome;
let d: DaemonSupervisor;
let stub: BadUpstream;
let token = '';
let before: RunningState;

beforeAll(async () => {
  stub = await startBadUpstream({ hugeBytes: 48 * 1024 * 1024 });
  home = await makeTempHome('nct-rrtr-');
  const policyText = `version: 1
approvals:
  mode: deny
network_policies: {}
inference:
  providers:
    flaky: { type: openai, base_url: "${stub.openaiBaseUrl}", locality: local, timeout_ms: 10000 }
  routes:
    - { name: default, provider: flaky }
`;
  d = await startDaemonSupervisor({ home: home.dir, policyText });
  token = readFileSync(join(d.paths.dir, 'inference-token'), 'utf8').trim();
  before = await runningState(home.dir);
}, 60_000);

afterAll(async () => {
  await d?.stop();
  await home?.cleanup();
  await stub?.close();
});

async function chat(model: string, opts: { stream?: boolean; anthropic?: boolean } = {}) {
  const path = opts.anthropic ? '/v1/messages' : '/v1/chat/completions';
  const body = JSON.stringify({
    model,
    ...(opts.anthropic ? { max_tokens: 64 } : {}),
    messages: [{ role: 'user', content: `hello ${model}` }],
    ...(opts.stream ? { stream: true } : {}),
  });
  return unixHttp(d.paths.proxySocket, 'POST', `http://inference.local${path}`, body, {
    host: 'inference.local',
    'content-type': 'application/json',
    authorization: `Bearer ${token}`,
    ...(opts.anthropic ? { 'anthropic-version': '2023-06-01' } : {}),
  }, 30_000);
}

/** The inference.done event of the call whose response carried `x-request-id`. */
async function doneEvent(requestId: string): Promise<AuditEvent> {
  let found: AuditEvent | undefined;
  await waitUntil(async () => {
    const events = await d.client.events({ kinds: ['inference.done'], n: 50 });
    found = events.find((e) => e.id === requestId || e.request_id === requestId);
    return found !== undefined;
  }, `inference.done of ${requestId}`);
  return found!;
}

function requestId(r: { headers: Record<string, string | string[] | undefined> }): string {
  const id = r.headers['x-request-id'];
  expect(typeof id, 'the router names the call in x-request-id').toBe('string');
  return id as string;
}

async function expectServing(): Promise<void> {
  const ok = await chat('good');
  expect(ok.status, ok.text).toBe(200);
  expect((JSON.parse(ok.text) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content).toBe('fine');
}

describe('malformed model responses through the router', () => {
  it('serves a good call to begin with', async () => {
    await expectServing();
  });

  it('a 500 with an HTML page: an Anthropic caller gets an Anthropic error', async () => {
    const r = await chat('html-500', { anthropic: true });
    expect(r.status).toBeGreaterThanOrEqual(500);
    const body = JSON.parse(r.text) as { type?: string; error?: { type?: string; message?: string } };
    expect(body.type, r.text).toBe('error');
    expect(body.error?.message).toBeTruthy();
    const done = await doneEvent(requestId(r));
    expect(done.outcome).toBe('upstream_error');
  });

  it('a connection closed mid-stream: the stream ends with an error event, recorded as a failure', async () => {
    const r = await chat('mid-stream', { stream: true });
    expect(r.status).toBe(200);
    expect(r.text).toContain('first ');
    const events = r.text.split('\n\n').filter((b) => b.startsWith('data: ') && b !== 'data: [DONE]');
    const lastData = JSON.parse(events.at(-1)!.slice('data: '.length)) as { error?: { message?: string } };
    expect(lastData.error?.message, r.text).toMatch(/flaky/);
    const done = await doneEvent(requestId(r));
    expect(done.outcome).toBe('upstream_error');
    await expectServing();
  });

  it('a huge response (48 MiB) neither kills nor bloats the supervisor', async () => {
    const pid = supervisorPid(d.paths);
    const rss0 = vmRssKb(pid);
    const r = await chat('huge');
    expect([200, 502]).toContain(r.status);
    const done = await doneEvent(requestId(r));
    expect(done.status).toBe(r.status);
    expect(vmRssKb(pid) - rss0, 'supervisor memory growth (kB) after one huge response').toBeLessThan(512 * 1024);
    await expectServing();
  }, 60_000);

  it('afterwards: same policy, the router status is sane, the audit chain verifies', async () => {
    expect(await runningState(home.dir)).toEqual(before);
    expect(stub.requests).toContain('mid-stream');
    await expectAuditVerifies(home.dir);
  });
});

describe('malformed model responses become errors in the caller format', () => {
  it('a 500 with an HTML page to an OpenAI caller: an OpenAI JSON error, not the HTML page', async () => {
    const r = await chat('html-500');
    expect(r.status, r.text).toBe(502);
    expect(String(r.headers['content-type'])).toContain('application/json');
    const body = JSON.parse(r.text) as { error?: { message?: string; type?: string } };
    expect(body.error?.message).toMatch(/flaky/);
    expect(body.error?.message, 'the page is summarised, not relayed').toContain('Internal Server Error');
    expect(body.error?.message).not.toContain('<html');
    const done = await doneEvent(requestId(r));
    expect(done).toMatchObject({ status: 502, outcome: 'upstream_error' });
    await expectServing();
  });

  it('truncated JSON with 200: the caller gets a 502 OpenAI error, inference.done records the failure', async () => {
    const r = await chat('truncated-json');
    expect(r.status, r.text).toBe(502);
    const body = JSON.parse(r.text) as { error?: { message?: string } };
    expect(body.error?.message).toMatch(/flaky/);
    const done = await doneEvent(requestId(r));
    expect(done).toMatchObject({ status: 502, outcome: 'upstream_error' });
    await expectServing();
  });

  it('an SSE stream whose events are not JSON: the stream ends with an error event, recorded as a failure', async () => {
    const r = await chat('bad-sse', { stream: true });
    expect(r.status).toBe(200);
    const events = r.text.split('\n\n').filter((b) => b.startsWith('data: ') && b !== 'data: [DONE]');
    const last = JSON.parse(events.at(-1)!.slice('data: '.length)) as { error?: { message?: string } };
    expect(last.error?.message, r.text).toMatch(/flaky/);
    const done = await doneEvent(requestId(r));
    expect(done).toMatchObject({ status: 502, outcome: 'upstream_error' });
    expect(String(done.error)).toMatch(/not JSON/);
    await expectServing();
  });

  it('truncated JSON with 200 to an Anthropic caller: a 502 Anthropic error', async () => {
    const r = await chat('truncated-json', { anthropic: true });
    expect(r.status, r.text).toBe(502);
    expect(JSON.parse(r.text)).toMatchObject({ type: 'error', error: { type: 'api_error', message: expect.stringMatching(/flaky/) } });
    const done = await doneEvent(requestId(r));
    expect(done).toMatchObject({ status: 502, outcome: 'upstream_error' });
    await expectServing();
  });

  it('an SSE stream that is not JSON to an Anthropic caller: the stream ends with `event: error`', async () => {
    const r = await chat('bad-sse', { anthropic: true, stream: true });
    expect(r.status).toBe(200);
    const blocks = r.text.split('\n\n').filter((b) => b.trim().length > 0);
    const last = blocks.at(-1)!;
    expect(last.split('\n')[0], r.text).toBe('event: error');
    const data = JSON.parse(last.split('\n')[1]!.slice('data: '.length)) as { type?: string; error?: { message?: string } };
    expect(data).toMatchObject({ type: 'error', error: { message: expect.stringMatching(/flaky/) } });
    expect(r.text, 'nothing of the garbage reaches the caller').not.toContain('<<<not json');
    const done = await doneEvent(requestId(r));
    expect(done.outcome).toBe('upstream_error');
    await expectServing();
  });

  it('afterwards: same policy, the router status is sane, the audit chain verifies', async () => {
    expect(await runningState(home.dir)).toEqual(before);
    await expectAuditVerifies(home.dir);
  });
});
