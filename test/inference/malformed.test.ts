/**
 * What the router makes of provider answers that are not what the API promises: a proper provider
 * error keeps its status (relayed as is when already in the caller's format, re-worded otherwise),
 * garbage becomes a 502 in the caller's format, a stream that stops being JSON is cut with an error
 * event, and every such call is recorded as a failure in `inference.done`.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { post, SANDBOX_TOKEN, startRouter, until, type RouterHarness } from './harness.js';

const ANTHROPIC_HEADERS = { 'x-api-key': SANDBOX_TOKEN, authorization: '', 'anthropic-version': '2023-06-01' };

/** Answers by the request's `model`; the same server stands in for both provider types. */
function answer(model: string, res: ServerResponse): void {
  const json = (status: number, body: unknown): void => {
    const text = JSON.stringify(body);
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  };
  switch (model) {
    case 'openai-429':
      return json(429, { error: { message: 'slow down', type: 'rate_limit_error', param: null, code: 'rate_limit' } });
    case 'detail-503':
      return json(503, { detail: 'model is loading' });
    case 'array-200':
      return json(200, [1, 2, 3]);
    case 'empty-502':
      res.writeHead(502, { 'content-type': 'text/plain', 'content-length': 0 });
      return void res.end();
    case 'html-502': {
      const html = '<html><head><style>h1{color:red}</style></head><body><h1>502 Bad Gateway</h1><hr>nginx</body></html>';
      res.writeHead(502, { 'content-type': 'text/html', 'content-length': Buffer.byteLength(html) });
      return void res.end(html);
    }
    case 'openai-stream-error':
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model, choices: [{ index: 0, delta: { content: 'par' }, finish_reason: null }] })}\n\n`);
      return void res.end(`data: ${JSON.stringify({ error: { message: 'the model crashed', type: 'server_error' } })}\n\n`);
    case 'anthropic-bad-sse':
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(`event: message_start\ndata: ${JSON.stringify({ type: 'message_start', message: { id: 'm1', type: 'message', role: 'assistant', content: [], model, usage: { input_tokens: 3, output_tokens: 0 } } })}\n\n`);
      res.write('event: content_block_delta\ndata: {"type": "content_block_delta", "index": 0, "delta": {"type": "text_del\n\n');
      return void res.end(`event: message_stop\ndata: ${JSON.stringify({ type: 'message_stop' })}\n\n`);
    default:
      return json(200, { id: 'c1', object: 'chat.completion', created: 1, model, choices: [{ index: 0, message: { role: 'assistant', content: 'fine' }, finish_reason: 'stop' }] });
  }
}

let upstream: Server;
let h: RouterHarness;

beforeAll(async () => {
  upstream = createServer((req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString('utf8')));
    req.on('end', () => answer(String((JSON.parse(body) as { model?: unknown }).model), res));
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
  const base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  h = await startRouter({
    providers: {
      oai: { type: 'openai', base_url: `${base}/v1`, locality: 'local' },
      claude: { type: 'anthropic', base_url: base, locality: 'local' },
    },
    routes: [
      { name: 'anthropic', when: { api: ['anthropic.messages'] }, provider: 'claude' },
      { name: 'default', provider: 'oai' },
    ],
  });
});

afterAll(async () => {
  await h?.close();
  upstream?.closeAllConnections();
  await new Promise<void>((r) => upstream.close(() => r()));
});

const openai = (model: string, more: Record<string, unknown> = {}) => post(`${h.url}/v1/chat/completions`, { model, messages: [{ role: 'user', content: 'hi' }], ...more });
const anthropic = (model: string, more: Record<string, unknown> = {}) =>
  post(`${h.url}/v1/messages`, { model, max_tokens: 16, messages: [{ role: 'user', content: 'hi' }], ...more }, ANTHROPIC_HEADERS);

async function doneOf(id: string | null) {
  expect(id, 'x-request-id names the call').toBeTruthy();
  await until(() => h.events.some((e) => e.kind === 'inference.done' && e.id === id), `inference.done of ${id}`);
  return h.events.find((e) => e.kind === 'inference.done' && e.id === id)!;
}

describe('provider errors and garbage, in the caller format', () => {
  it('a proper OpenAI error keeps its status and body', async () => {
    const r = await openai('openai-429');
    expect(r.status).toBe(429);
    expect(r.json).toEqual({ error: { message: 'slow down', type: 'rate_limit_error', param: null, code: 'rate_limit' } });
    expect(await doneOf(r.headers.get('x-request-id'))).toMatchObject({ status: 429, outcome: 'upstream_error', level: 'warn' });
  });

  it('an error in another JSON shape keeps its status and is re-worded', async () => {
    const r = await openai('detail-503');
    expect(r.status).toBe(503);
    expect(r.json.error).toMatchObject({ message: 'model is loading', type: 'api_error' });
  });

  it('HTML, an empty body or a JSON array become a 502 naming the provider', async () => {
    const html = await anthropic('html-502');
    expect(html.status).toBe(502);
    expect(html.json).toMatchObject({ type: 'error', error: { type: 'api_error' } });
    expect(html.json.error.message).toMatch(/provider "claude" answered HTTP 502 with text\/html/);
    expect(html.json.error.message).toContain('502 Bad Gateway nginx');
    expect(html.json.error.message).not.toMatch(/<|color:red/);
    const empty = await openai('empty-502');
    expect(empty.status).toBe(502);
    expect(empty.json.error.message).toContain('(empty body)');
    const array = await openai('array-200');
    expect(array.status).toBe(502);
    expect(array.json.error.message).toMatch(/provider "oai" answered HTTP 200 with a body that is not a valid JSON object/);
    const done = await doneOf(array.headers.get('x-request-id'));
    expect(done).toMatchObject({ status: 502, outcome: 'upstream_error', level: 'error' });
    expect(String(done.error)).toContain('not a valid JSON object');
  });

  it('an error the provider reports inside a stream is relayed and recorded as a failure', async () => {
    const r = await openai('openai-stream-error', { stream: true });
    expect(r.status).toBe(200);
    expect(r.text).toContain('"content":"par"');
    expect(r.text).toContain('the model crashed');
    const done = await doneOf(r.headers.get('x-request-id'));
    expect(done).toMatchObject({ outcome: 'upstream_error' });
    expect(String(done.error)).toContain('the model crashed');
  });

  it('an Anthropic stream that stops being JSON is cut with `event: error`', async () => {
    const r = await anthropic('anthropic-bad-sse', { stream: true });
    expect(r.status).toBe(200);
    const blocks = r.text.split('\n\n').filter((b) => b.length > 0);
    expect(blocks[0]).toMatch(/^event: message_start\n/);
    expect(blocks.at(-1)).toMatch(/^event: error\ndata: /);
    expect(JSON.parse(blocks.at(-1)!.split('\n')[1]!.slice(6))).toMatchObject({ type: 'error', error: { type: 'api_error', message: expect.stringMatching(/provider "claude" sent a stream event that is not JSON/) } });
    expect(r.text, 'nothing after the cut is relayed').not.toContain('message_stop');
    const done = await doneOf(r.headers.get('x-request-id'));
    expect(done).toMatchObject({ status: 502, outcome: 'upstream_error', level: 'error' });
  });

  it('keeps serving afterwards', async () => {
    const r = await openai('good');
    expect(r.status).toBe(200);
    expect(r.json.choices[0].message.content).toBe('fine');
  });
});
