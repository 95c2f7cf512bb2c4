/**
 * What the router makes of provider answers that are not what the API promises: a proper provider
 * error keeps its status (relayed as is when already in the caller's format, re-worded otherwise),
 * garbage becomes a 502 in the caller's format, a stream that stops being JSON is cut with an error
 * event, and every such call is recorded as a failure in `inference.done`.
 */
import { createServer, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { classifyUpstreamError, scrubUpstreamAddress } from '../../src/inference/upstream-error.js';
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

/**
 * Issue 11: a provider that cannot be reached (dead loopback port, unresolvable host, TLS spoken to
 * a plain server, a connection cut mid-response, a timeout). The caller inside the sandbox learns
 * the kind of failure only — never the provider's address, host, port, URL or Node's error text —
 * while the `inference.done` event keeps the full detail for the operator.
 */
describe('upstream failures do not leak the provider address to the sandbox', () => {
  let leak: RouterHarness;
  let deadPort = 0;
  let cutPort = 0;
  let cutter: Server;
  let hanger: Server;
  let hangPort = 0;

  beforeAll(async () => {
    // A port that was just free: bind, read, close (nothing listens there afterwards).
    const probe = createServer();
    await new Promise<void>((r) => probe.listen(0, '127.0.0.1', r));
    deadPort = (probe.address() as AddressInfo).port;
    await new Promise<void>((r) => probe.close(() => r()));
    // Answers headers and a part of the body, then drops the connection.
    cutter = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString('utf8')));
      req.on('end', () => {
        const stream = (JSON.parse(body) as { stream?: boolean }).stream === true;
        if (stream) {
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          res.write(`data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'cut', choices: [{ index: 0, delta: { content: 'half ' }, finish_reason: null }] })}\n\n`);
        } else {
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': 4096 });
          res.write('{"id": "c1", "choices": [');
        }
        setTimeout(() => res.socket?.destroy(), 20);
      });
    });
    await new Promise<void>((r) => cutter.listen(0, '127.0.0.1', r));
    cutPort = (cutter.address() as AddressInfo).port;
    // Reads the request and never answers.
    hanger = createServer((req) => void req.resume());
    await new Promise<void>((r) => hanger.listen(0, '127.0.0.1', r));
    hangPort = (hanger.address() as AddressInfo).port;
    leak = await startRouter({
      providers: {
        dead: { type: 'openai', base_url: `http://127.0.0.1:${deadPort}/v1`, locality: 'local' },
        deadClaude: { type: 'anthropic', base_url: `http://127.0.0.1:${deadPort}`, locality: 'local' },
        nowhere: { type: 'openai', base_url: 'http://nonexistent.invalid:8443/v1', locality: 'local' },
        tls: { type: 'openai', base_url: `https://127.0.0.1:${cutPort}/v1`, locality: 'local' },
        cut: { type: 'openai', base_url: `http://127.0.0.1:${cutPort}/v1`, locality: 'local' },
        hang: { type: 'openai', base_url: `http://127.0.0.1:${hangPort}/v1`, locality: 'local', timeout_ms: 200 },
      },
      routes: [
        { name: 'dead', when: { model: ['dead'] }, provider: 'dead' },
        { name: 'dead-claude', when: { model: ['dead-claude'] }, provider: 'deadClaude' },
        { name: 'nowhere', when: { model: ['nowhere'] }, provider: 'nowhere' },
        { name: 'tls', when: { model: ['tls'] }, provider: 'tls' },
        { name: 'cut', when: { model: ['cut'] }, provider: 'cut' },
        { name: 'hang', when: { model: ['hang'] }, provider: 'hang' },
        { name: 'fallback', when: { model: ['fallback'] }, provider: 'dead', fallback: 'nowhere' },
      ],
    });
  });

  afterAll(async () => {
    await leak?.close();
    for (const s of [cutter, hanger]) {
      s?.closeAllConnections();
      await new Promise<void>((r) => (s ? s.close(() => r()) : r()));
    }
  });

  const call = (model: string, opts: { stream?: boolean; anthropic?: boolean } = {}) =>
    opts.anthropic
      ? post(`${leak.url}/v1/messages`, { model, max_tokens: 16, messages: [{ role: 'user', content: 'hi' }], ...(opts.stream ? { stream: true } : {}) }, ANTHROPIC_HEADERS)
      : post(`${leak.url}/v1/chat/completions`, { model, messages: [{ role: 'user', content: 'hi' }], ...(opts.stream ? { stream: true } : {}) });

  async function leakDone(id: string | null) {
    expect(id, 'x-request-id names the call').toBeTruthy();
    await until(() => leak.events.some((e) => e.kind === 'inference.done' && e.id === id), `inference.done of ${id}`);
    return leak.events.find((e) => e.kind === 'inference.done' && e.id === id)!;
  }

  /** Nothing the sandbox receives (status line aside: body and headers) names the provider's whereabouts. */
  function expectNoLeak(r: { text: string; headers: Headers }, extra: string[] = []): void {
    const seen = `${r.text}\n${JSON.stringify([...r.headers.entries()])}`;
    for (const needle of ['127.0.0.1', String(deadPort), String(cutPort), String(hangPort), 'ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'getaddrinfo', 'nonexistent.invalid', 'http://', 'https://', 'other side closed', ...extra]) {
      expect(seen, `the sandbox must not see ${JSON.stringify(needle)}`).not.toContain(needle);
    }
  }

  it('a dead loopback port, OpenAI caller: "unreachable (connection refused)", the audit keeps the address', async () => {
    const r = await call('dead');
    expect(r.status).toBe(502);
    expect(r.json.error.message).toBe('provider "dead" unreachable (connection refused)');
    expectNoLeak(r);
    const done = await leakDone(r.headers.get('x-request-id'));
    expect(done).toMatchObject({ status: 502, outcome: 'upstream_error', level: 'error' });
    expect(String(done.error)).toContain(`127.0.0.1:${deadPort}`);
    expect(String(done.error)).toContain('ECONNREFUSED');
    const route = leak.events.find((e) => e.kind === 'inference.route' && e.id === done.id);
    expect(route, 'the route event was written').toBeDefined();
  });

  it('a dead loopback port, streaming, Anthropic caller and translated calls: no address either', async () => {
    for (const [model, opts, provider] of [
      ['dead', { stream: true }, 'dead'],
      ['dead-claude', { anthropic: true }, 'deadClaude'],
      ['dead-claude', { anthropic: true, stream: true }, 'deadClaude'],
      ['dead-claude', {}, 'deadClaude'],
      ['dead', { anthropic: true, stream: true }, 'dead'],
    ] as const) {
      const r = await call(model, opts);
      expect(r.status, `${model} ${JSON.stringify(opts)}`).toBe(502);
      const message = opts.anthropic ? r.json.error.message : r.json.error.message;
      if (opts.anthropic) expect(r.json.type).toBe('error');
      expect(message).toBe(`provider "${provider}" unreachable (connection refused)`);
      expectNoLeak(r);
      const done = await leakDone(r.headers.get('x-request-id'));
      expect(String(done.error)).toContain(`127.0.0.1:${deadPort}`);
    }
  });

  it('an unresolvable host (nonexistent.invalid): "DNS lookup failed", the host name stays in the audit', async () => {
    for (const opts of [{}, { stream: true }, { anthropic: true }] as const) {
      const r = await call('nowhere', opts);
      expect(r.status).toBe(502);
      expect(r.json.error.message).toBe('provider "nowhere" unreachable (DNS lookup failed)');
      expectNoLeak(r, ['8443', '.invalid']);
      const done = await leakDone(r.headers.get('x-request-id'));
      expect(String(done.error)).toContain('nonexistent.invalid');
    }
  }, 30_000);

  it('a fallback that fails too: the caller learns only the last failure kind', async () => {
    const r = await call('fallback');
    expect(r.status).toBe(502);
    expect(r.json.error.message).toBe('provider "nowhere" unreachable (DNS lookup failed)');
    expectNoLeak(r, ['8443']);
    const done = await leakDone(r.headers.get('x-request-id'));
    expect(done.fallback_from).toBe('dead');
    expect(String(done.error)).toContain('nonexistent.invalid');
  }, 30_000);

  it('TLS spoken to a plain HTTP server: "TLS failure", no address', async () => {
    const r = await call('tls');
    expect(r.status).toBe(502);
    expect(r.json.error.message).toBe('provider "tls" unreachable (TLS failure)');
    expectNoLeak(r, ['secure TLS connection']);
    const done = await leakDone(r.headers.get('x-request-id'));
    expect(String(done.error)).toMatch(/SSL|TLS/);
  });

  it('a connection cut mid-response, whole and streamed: classified, the raw socket error only in the audit', async () => {
    const whole = await call('cut');
    expect(whole.status).toBe(502);
    expect(whole.json.error.message).toMatch(/^provider "cut" failed mid-response \((connection reset|response shorter or longer than its content-length)\)$/);
    expectNoLeak(whole);
    const wholeDone = await leakDone(whole.headers.get('x-request-id'));
    expect(String(wholeDone.error)).toMatch(/failed mid-response: \S/);

    const streamed = await call('cut', { stream: true });
    expect(streamed.status).toBe(200);
    expect(streamed.text).toContain('half ');
    const events = streamed.text.split('\n\n').filter((b) => b.startsWith('data: ') && b !== 'data: [DONE]');
    const last = JSON.parse(events.at(-1)!.slice('data: '.length)) as { error?: { message?: string } };
    expect(last.error?.message, streamed.text).toBe('provider "cut" failed mid-response (connection reset)');
    expectNoLeak(streamed);
    const streamDone = await leakDone(streamed.headers.get('x-request-id'));
    expect(streamDone).toMatchObject({ status: 502, outcome: 'upstream_error' });
    expect(String(streamDone.error)).toMatch(/failed mid-response: \S/);
  });

  it('a provider that never answers: "timed out waiting for the response"', async () => {
    const r = await call('hang');
    expect(r.status).toBe(502);
    expect(r.json.error.message).toBe('provider "hang" unreachable (timed out waiting for the response)');
    expectNoLeak(r, ['Headers Timeout']);
  });
});

describe('classifying upstream errors without their addresses', () => {
  const err = (code: string, message: string, cause?: unknown) => Object.assign(new Error(message), { code }, cause ? { cause } : {});

  it('names the kind of failure for the errors Node and undici raise', () => {
    const cases: Array<[Error, string]> = [
      [err('ECONNREFUSED', 'connect ECONNREFUSED 127.0.0.1:39073'), 'connection refused'],
      [err('ENOTFOUND', 'getaddrinfo ENOTFOUND api.example.com'), 'DNS lookup failed'],
      [err('EAI_AGAIN', 'getaddrinfo EAI_AGAIN api.example.com'), 'DNS lookup failed'],
      [err('UND_ERR_CONNECT_TIMEOUT', 'Connect Timeout Error (attempted address: api.example.com:443, timeout: 10000ms)'), 'connection timed out'],
      [err('ETIMEDOUT', 'connect ETIMEDOUT 10.1.2.3:443'), 'connection timed out'],
      [err('UND_ERR_HEADERS_TIMEOUT', 'Headers Timeout Error'), 'timed out waiting for the response'],
      [err('UND_ERR_BODY_TIMEOUT', 'Body Timeout Error'), 'timed out waiting for the response body'],
      [err('EHOSTUNREACH', 'connect EHOSTUNREACH 10.1.2.3:443'), 'network unreachable'],
      [err('ERR_TLS_CERT_ALTNAME_INVALID', "Hostname/IP does not match certificate's altnames: Host: api.example.com. is not in the cert's altnames: DNS:other.example.net"), 'TLS failure'],
      [err('DEPTH_ZERO_SELF_SIGNED_CERT', 'self-signed certificate'), 'TLS failure'],
      [err('ECONNRESET', 'Client network socket disconnected before secure TLS connection was established'), 'TLS failure'],
      [err('ECONNRESET', 'read ECONNRESET'), 'connection reset'],
      [err('UND_ERR_SOCKET', 'other side closed'), 'connection reset'],
      [new Error('fetch failed', { cause: err('ECONNREFUSED', 'connect ECONNREFUSED [::1]:8000') }), 'connection refused'],
      [new Error('something odd at 10.0.0.7:8080'), 'network error'],
    ];
    for (const [e, kind] of cases) expect(classifyUpstreamError(e), e.message).toBe(kind);
  });

  it('takes the provider address out of provider-authored text', () => {
    const provider = { base_url: 'https://llm.corp.example:8443/v1' } as Parameters<typeof scrubUpstreamAddress>[1];
    const out = scrubUpstreamAddress('upstream https://llm.corp.example:8443/v1/chat failed; host llm.corp.example:8443 (LLM.corp.example) via 10.20.30.40:8443', provider);
    expect(out).not.toMatch(/llm\.corp|10\.20|8443/i);
    expect(out).toContain('<provider>');
  });
});
