/**
 * The OpenAI Responses API on inference.local, driven by the official `openai` SDK (what current
 * agents use by default) against the real router on loopback, with stub providers of both types:
 * OpenAI-compatible (chat completions) and Anthropic (messages), so the Responses → chat → Anthropic
 * translation runs end to end.
 */
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import OpenAI, { APIError } from 'openai';
import { Agent, fetch as undiciFetch } from 'undici';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EventInput } from '../../src/audit/events.js';
import { FileAndEnvCredentials } from '../../src/inference/credentials.js';
import { createInferenceListener, labelClientApi, responsesToChat } from '../../src/inference/responses.js';
import { createRouter, type Router } from '../../src/inference/router.js';
import { inferenceServiceFactory } from '../../src/inference/index.js';
import { MINIMAL_POLICY, startTestSupervisor } from '../helpers/supervisor.js';
import { startStubUpstream, type RecordedRequest, type StubUpstream } from '../stubs/upstream.js';
import { SANDBOX_TOKEN, until } from './harness.js';

const CLOUD_KEY = 'sk-cloud-real-key-never-in-sandbox';
const EMAIL = 'maria.lopez@contoso-mail.com';
const SECRET = 'ghp_' + 'a1B2c3D4e5'.repeat(4);

let cloud: StubUpstream;
let claude: StubUpstream;
let h: { url: string; router: Router; events: EventInput[]; client: OpenAI; close(): Promise<void> } | undefined;

function policy(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    providers: {
      cloud: { type: 'openai', base_url: cloud.openaiBaseUrl, api_key_env: 'CLOUD_KEY' },
      claude: { type: 'anthropic', base_url: claude.url, api_key_env: 'CLOUD_KEY' },
    },
    routes: [
      { name: 'no-secrets', when: { entities: ['secret'] }, block: true },
      { name: 'claude-redacted', when: { model: ['claude-*'], entities: ['email'] }, redact_then: 'claude' },
      { name: 'claude', when: { model: ['claude-*'] }, provider: 'claude' },
      { name: 'pii-redacted', when: { entities: ['email', 'phone'] }, redact_then: 'cloud' },
      { name: 'default', provider: 'cloud' },
    ],
    ...extra,
  };
}

/** The router behind the same listener the service puts on its socket, here on loopback TCP. */
async function start(extra: Record<string, unknown> = {}): Promise<NonNullable<typeof h>> {
  const events: EventInput[] = [];
  const emit = (e: EventInput): void => void events.push(structuredClone(e));
  const router = createRouter({
    policy: policy(extra),
    credentials: new FileAndEnvCredentials(undefined, { CLOUD_KEY }),
    sandboxToken: SANDBOX_TOKEN,
    emit: labelClientApi(emit),
  });
  let url = '';
  const listener = createInferenceListener({ router, self: () => ({ origin: url }), sandboxToken: SANDBOX_TOKEN, emit });
  const server: Server = createServer(listener);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const client = new OpenAI({ apiKey: SANDBOX_TOKEN, baseURL: `${url}/v1`, maxRetries: 0 });
  h = {
    url,
    router,
    events,
    client,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await router.close();
    },
  };
  return h;
}

async function refusal(p: Promise<unknown>): Promise<APIError> {
  try {
    await p;
  } catch (err) {
    expect(err).toBeInstanceOf(APIError);
    return err as APIError;
  }
  throw new Error('expected the call to be refused');
}

const done = (): EventInput[] => h!.events.filter((e) => e.kind === 'inference.done');

beforeEach(async () => {
  [cloud, claude] = await Promise.all([startStubUpstream(), startStubUpstream()]);
});

afterEach(async () => {
  await h?.close();
  h = undefined;
  await Promise.all([cloud.close(), claude.close()]);
});

describe('Responses API through the privacy router (official openai SDK)', () => {
  it('answers client.responses.create with a response object, scanned and routed as chat, events labelled', async () => {
    const { client } = await start();
    const res = await client.responses.create({ model: 'gpt-4o', instructions: 'You are terse.', input: 'hello there', max_output_tokens: 64, temperature: 0.2 });
    expect(res.object).toBe('response');
    expect(res.id).toMatch(/^resp_/);
    expect(res.status).toBe('completed');
    expect(res.output_text).toBe('echo: hello there');
    expect(res.output[0]).toMatchObject({ type: 'message', role: 'assistant', content: [{ type: 'output_text', text: 'echo: hello there' }] });
    expect(res.usage!.input_tokens).toBeGreaterThan(0);
    expect(res.usage!.total_tokens).toBe(res.usage!.input_tokens + res.usage!.output_tokens);
    const sent = cloud.requests[0]!;
    expect(sent.path).toBe('/v1/chat/completions');
    expect(sent.headers.authorization).toBe(`Bearer ${CLOUD_KEY}`);
    expect(sent.body).toMatchObject({ messages: [{ role: 'system', content: 'You are terse.' }, { role: 'user', content: 'hello there' }], max_completion_tokens: 64, temperature: 0.2 });
    expect(cloud.receivedText()).not.toContain(SANDBOX_TOKEN);
    await until(() => done().length === 1, 'inference.done');
    expect(h!.events.find((e) => e.kind === 'inference.route')).toMatchObject({ api: 'openai.responses', routed_as: 'openai.chat', rule: 'default', provider: 'cloud' });
    expect(done()[0]).toMatchObject({ api: 'openai.responses', routed_as: 'openai.chat', response_id: res.id, status: 200, outcome: 'ok' });
  });

  it('streams Responses events (stream: true) from an OpenAI-type and an Anthropic-type provider', async () => {
    const { client } = await start();
    for (const [model, stub] of [['gpt-4o', cloud], ['claude-sonnet-4', claude]] as const) {
      const stream = await client.responses.create({ model, input: [{ role: 'user', content: [{ type: 'input_text', text: 'stream please' }] }], stream: true });
      const types: string[] = [];
      let text = '';
      let completed: any;
      for await (const ev of stream) {
        types.push(ev.type);
        if (ev.type === 'response.output_text.delta') text += ev.delta;
        if (ev.type === 'response.completed') completed = ev.response;
      }
      expect(text).toBe('echo: stream please');
      expect(types.slice(0, 4)).toEqual(['response.created', 'response.in_progress', 'response.output_item.added', 'response.content_part.added']);
      expect(types.slice(-4)).toEqual(['response.output_text.done', 'response.content_part.done', 'response.output_item.done', 'response.completed']);
      expect(completed.status).toBe('completed');
      expect(completed.output[0].content[0].text).toBe('echo: stream please');
      expect(completed.usage.output_tokens).toBeGreaterThan(0);
      expect(stub.requests).toHaveLength(1);
    }
    expect(claude.requests[0]!.path).toBe('/v1/messages');
    await until(() => done().length === 2, 'inference.done');
    expect(done()[1]).toMatchObject({ api: 'openai.responses', provider: 'claude', translated: 'openai->anthropic', stream: true, outcome: 'ok' });

    // The SDK's own stream helper accumulates the events into a final response.
    const helper = client.responses.stream({ model: 'claude-sonnet-4', input: 'helper' });
    const final = await helper.finalResponse();
    expect(final.output_text).toBe('echo: helper');
  });

  it('round-trips a function tool (function_call, then function_call_output), to both provider types', async () => {
    const reply = (req: RecordedRequest) => {
      const text = JSON.stringify(req.body.messages);
      if (text.includes('"tool"') || text.includes('tool_result')) return { text: 'It is sunny in Paris.' };
      return { toolCalls: [{ id: 'call_w1', name: 'get_weather', arguments: '{"city":"Paris"}' }] };
    };
    cloud.options.reply = reply;
    claude.options.reply = reply;
    const { client } = await start();
    const tools = [{ type: 'function' as const, name: 'get_weather', description: 'Weather for a city', parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] }, strict: false }];
    for (const [model, stream] of [['gpt-4o', false], ['claude-sonnet-4', false], ['gpt-4o', true], ['claude-sonnet-4', true]] as const) {
      const input: any[] = [{ role: 'user', content: 'Weather in Paris?' }];
      let first: any;
      if (stream) {
        const s = await client.responses.create({ model, input, tools, tool_choice: 'auto', stream: true });
        let args = '';
        for await (const ev of s) {
          if (ev.type === 'response.function_call_arguments.delta') args += ev.delta;
          if (ev.type === 'response.completed') first = ev.response;
        }
        expect(args).toBe('{"city":"Paris"}');
      } else {
        first = await client.responses.create({ model, input, tools, tool_choice: 'auto' });
      }
      const call = first.output.find((o: any) => o.type === 'function_call');
      expect(call).toMatchObject({ type: 'function_call', name: 'get_weather', arguments: '{"city":"Paris"}', status: 'completed' });
      input.push(...first.output, { type: 'function_call_output', call_id: call.call_id, output: '{"sky":"sunny"}' });
      const second = await client.responses.create({ model, input, tools });
      expect(second.output_text).toBe('It is sunny in Paris.');
    }
    // The chat form the provider got: assistant tool_calls, then the tool result.
    const last = cloud.requests.at(-1)!.body;
    expect(last.tools[0]).toMatchObject({ type: 'function', function: { name: 'get_weather', description: 'Weather for a city' } });
    expect(last.messages.slice(-2)).toMatchObject([
      { role: 'assistant', tool_calls: [{ id: 'call_w1', function: { name: 'get_weather', arguments: '{"city":"Paris"}' } }] },
      { role: 'tool', tool_call_id: 'call_w1', content: '{"sky":"sunny"}' },
    ]);
    const anth = claude.requests.at(-1)!.body;
    expect(anth.tools[0]).toMatchObject({ name: 'get_weather', input_schema: { type: 'object' } });
    expect(anth.messages.at(-1).content[0]).toMatchObject({ type: 'tool_result', tool_use_id: 'call_w1' });
  });

  it('redacts an e-mail in instructions (and in a function_call_output) before the cloud provider sees it', async () => {
    const { client } = await start();
    for (const model of ['gpt-4o', 'claude-sonnet-4']) {
      const res = await client.responses.create({
        model,
        instructions: `Reply on behalf of ${EMAIL}.`,
        input: [
          { type: 'function_call', call_id: 'c1', name: 'lookup', arguments: '{}' },
          { type: 'function_call_output', call_id: 'c1', output: `owner: ${EMAIL}` },
          { role: 'user', content: 'hello' },
        ],
      });
      // The stub echoes the user turn (the tool result included, for Anthropic): the router restores the address.
      expect(res.output_text).toContain('hello');
    }
    expect(cloud.requests).toHaveLength(1);
    expect(claude.requests).toHaveLength(1);
    expect(cloud.receivedText()).not.toContain(EMAIL);
    expect(claude.receivedText()).not.toContain(EMAIL);
    expect(cloud.requests[0]!.body.messages[0].content).toMatch(/Reply on behalf of .+\./);
    await until(() => done().length === 2, 'inference.done');
    expect(h!.events.filter((e) => e.kind === 'inference.route').map((e) => [e.rule, e.api])).toEqual([
      ['pii-redacted', 'openai.responses'],
      ['claude-redacted', 'openai.responses'],
    ]);
    expect(done()[0]!.redactions).toBeGreaterThan(0);
  });

  it('redacts an e-mail in text.format, user and a function description too (every string of the chat body is scanned)', async () => {
    const { client } = await start();
    await client.responses.create({
      model: 'gpt-4o',
      input: 'hello',
      user: EMAIL,
      tools: [{ type: 'function', name: 'notify', description: `mails ${EMAIL}`, parameters: { type: 'object', properties: {} }, strict: false }],
      text: { format: { type: 'json_schema', name: 'r', description: `for ${EMAIL}`, schema: { type: 'object', properties: {} } } },
    });
    expect(cloud.requests).toHaveLength(1);
    expect(cloud.receivedText()).not.toContain(EMAIL);
    expect(cloud.requests[0]!.body.response_format.json_schema.description).toMatch(/^for .+/);
  });

  it('blocks a secret in input: the answer is a response whose text is the router\'s reason (inference.blocked_reply: message), streamed or not', async () => {
    const { client } = await start();
    const whole = await client.responses.create({ model: 'gpt-4o', input: `deploy with token ${SECRET}` });
    expect(whole.output_text).toMatch(/^\[nemoclaw-tui privacy router\] blocked by inference route "no-secrets"/);
    const stream = await client.responses.create({ model: 'gpt-4o', input: [{ role: 'user', content: [{ type: 'input_text', text: SECRET }] }], stream: true });
    let streamedText = '';
    for await (const e of stream) if (e.type === 'response.output_text.delta') streamedText += e.delta;
    expect(streamedText).toContain('no-secrets');
    // In a tool description too (the router scans tool definitions).
    const inTool = await client.responses.create({ model: 'gpt-4o', input: 'hi', tools: [{ type: 'function', name: 'deploy', description: `uses ${SECRET}`, parameters: {}, strict: false }] });
    expect(inTool.output_text).toContain('no-secrets');
    expect(cloud.requests.length + claude.requests.length).toBe(0);
    expect(h!.events.filter((e) => e.kind === 'inference.done').every((e) => e.api === 'openai.responses' && e.outcome === 'blocked')).toBe(true);
  });

  it('with inference.blocked_reply: error, a blocked secret makes the SDK throw an APIError (400, the reason as code)', async () => {
    const { client } = await start({ blocked_reply: 'error' });
    const whole = await refusal(client.responses.create({ model: 'gpt-4o', input: `deploy with token ${SECRET}` }));
    expect(whole.status).toBe(400);
    expect(whole.message).toContain('no-secrets');
    expect(whole.code).toBe('blocked_by_policy');
    expect(cloud.requests.length + claude.requests.length).toBe(0);
  });

  it('answers 402 when the budget is exceeded, and fails a stream cut by the budget with response.failed', async () => {
    const { client } = await start({ budgets: { hour: { tokens: 400 } } });
    cloud.options.reply = () => ({ text: 'word '.repeat(600) });
    cloud.options.chunkChars = 10;
    const stream = await client.responses.create({ model: 'gpt-4o', input: 'write a long essay', stream: true, max_output_tokens: 300 });
    const types: string[] = [];
    const err = await refusal(
      (async () => {
        for await (const ev of stream) types.push(ev.type);
      })(),
    );
    expect(err.message).toContain('cap');
    expect(types).toContain('response.output_text.delta');
    expect(types.at(-1)).toBe('response.failed');
    expect(types).not.toContain('response.completed');

    const after = await refusal(client.responses.create({ model: 'gpt-4o', input: 'one more?' }));
    expect(after.status).toBe(402);
    expect(after.code).toBe('budget_exceeded');
    expect(after.message).toContain('hourly cap of 400 tokens');
    expect(cloud.requests).toHaveLength(1);
  });

  it('refuses what it cannot honour with a 400 naming the field, before any provider is called', async () => {
    const { client } = await start();
    const builtIn = await refusal(client.responses.create({ model: 'gpt-4o', input: 'news?', tools: [{ type: 'web_search' } as any] }));
    expect(builtIn.status).toBe(400);
    expect(builtIn.message).toContain('tools[0].type');
    expect(builtIn.message).toContain('web_search');
    const prev = await refusal(client.responses.create({ model: 'gpt-4o', input: 'and then?', previous_response_id: 'resp_123' }));
    expect(prev.status).toBe(400);
    expect(prev.message).toContain('previous_response_id');
    expect((prev as any).param).toBe('previous_response_id');
    for (const [body, field] of [
      [{ store: true }, 'store'],
      [{ background: true }, 'background'],
      [{ include: ['file_search_call.results'] }, 'include'],
      [{ tools: [{ type: 'file_search', vector_store_ids: ['vs_1'] }] }, 'file_search'],
      [{ input: [{ type: 'item_reference', id: 'msg_1' }] }, 'input[0].type'],
      [{ input: [{ role: 'user', content: [{ type: 'input_file', file_id: 'f' }] }] }, 'input[0].content[0].type'],
      [{ reasoning: { effort: 'low', summary: 'auto' } }, 'reasoning.summary'],
      [{ surprise_field: 'x' }, 'surprise_field'],
      [{ input: [{ role: 'user', content: 'x', name: 'bob' }] }, 'input[0].name'],
    ] as const) {
      const err = await refusal(client.responses.create({ model: 'gpt-4o', input: 'x', ...(body as any) })).catch((e) => {
        throw new Error(`${field}: ${(e as Error).message}`);
      });
      expect(err.status, field).toBe(400);
      expect(err.message, field).toContain(field);
    }
    expect(cloud.requests.length + claude.requests.length).toBe(0);
    await until(() => done().length === 11, 'inference.done');
    expect(done().every((e) => e.api === 'openai.responses' && e.status === 400 && e.outcome === 'invalid')).toBe(true);
  });

  it('maps the supported fields (json_schema, tool_choice, reasoning effort, images, user) and refuses a wrong token', async () => {
    const { client, url } = await start();
    await client.responses.create({
      model: 'gpt-4o',
      input: [
        { role: 'developer', content: 'be brief' },
        { role: 'user', content: [{ type: 'input_text', text: 'what is ' }, { type: 'input_text', text: 'this?' }] },
      ],
      text: { format: { type: 'json_schema', name: 'answer', schema: { type: 'object', properties: { a: { type: 'string' } } }, strict: true } },
      tools: [{ type: 'function', name: 'f', parameters: { type: 'object', properties: {} }, strict: true }],
      tool_choice: { type: 'function', name: 'f' },
      parallel_tool_calls: false,
      reasoning: { effort: 'low' },
      user: 'agent-7',
      store: false,
      metadata: { run: '42' },
    });
    const b = cloud.requests[0]!.body;
    expect(b.messages).toEqual([
      { role: 'developer', content: 'be brief' },
      { role: 'user', content: 'what is this?' },
    ]);
    expect(b.response_format).toEqual({ type: 'json_schema', json_schema: { name: 'answer', schema: { type: 'object', properties: { a: { type: 'string' } } }, strict: true } });
    expect(b.tool_choice).toEqual({ type: 'function', function: { name: 'f' } });
    expect(b).toMatchObject({ parallel_tool_calls: false, reasoning_effort: 'low', user: 'agent-7' });
    expect(b.metadata).toBeUndefined();
    expect(b.store).toBeUndefined();

    const bad = new OpenAI({ apiKey: 'wrong', baseURL: `${url}/v1`, maxRetries: 0 });
    const e = await refusal(bad.responses.create({ model: 'gpt-4o', input: 'hi' }));
    expect(e.status).toBe(401);
    expect(cloud.requests).toHaveLength(1);

    // Images become chat image_url parts (the router then applies its own rules to them).
    expect(responsesToChat({ model: 'm', input: [{ role: 'user', content: [{ type: 'input_image', image_url: 'data:image/png;base64,AAAA', detail: 'low' }] }] }).chat.messages).toEqual([
      { role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA', detail: 'low' } }] },
    ]);
  });

  it('maps reasoning_content from a provider to a reasoning item (streamed and not), which the SDK accumulates', async () => {
    // A reasoning model behind an OpenAI-compatible server (vLLM-style reasoning_content).
    const reasoner = createServer((req, res) => {
      let raw = '';
      req.on('data', (c) => (raw += c));
      req.on('end', () => {
        const body = JSON.parse(raw);
        if (!body.stream) {
          res.writeHead(200, { 'content-type': 'application/json' });
          res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model: 'r1', choices: [{ index: 0, message: { role: 'assistant', reasoning_content: 'think first', content: 'the answer' }, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9, completion_tokens_details: { reasoning_tokens: 2 } } }));
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const chunk = (delta: object, finish: string | null = null) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'r1', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
        res.end(
          chunk({ role: 'assistant', reasoning_content: 'think ' }) + chunk({ reasoning_content: 'first' }) + chunk({ content: 'the ' }) + chunk({ content: 'answer' }) + chunk({}, 'length') +
            `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'r1', choices: [], usage: { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 } })}\n\n` + 'data: [DONE]\n\n',
        );
      });
    });
    await new Promise<void>((r) => reasoner.listen(0, '127.0.0.1', r));
    try {
      const base = `http://127.0.0.1:${(reasoner.address() as AddressInfo).port}/v1`;
      const { client } = await start({ providers: { local: { type: 'openai', base_url: base, locality: 'local' } }, routes: [] });
      const whole = await client.responses.create({ model: 'r1', input: 'why?', reasoning: { effort: 'high' } });
      expect(whole.output.map((o) => o.type)).toEqual(['reasoning', 'message']);
      expect((whole.output[0] as any).content[0]).toEqual({ type: 'reasoning_text', text: 'think first' });
      expect(whole.output_text).toBe('the answer');
      expect(whole.usage!.output_tokens_details.reasoning_tokens).toBe(2);

      const final = await client.responses.stream({ model: 'r1', input: 'why?' }).finalResponse();
      expect(final.status).toBe('incomplete');
      expect(final.incomplete_details).toEqual({ reason: 'max_output_tokens' });
      expect(final.output.map((o) => o.type)).toEqual(['reasoning', 'message']);
      expect((final.output[0] as any).content[0].text).toBe('think first');
      expect(final.output_text).toBe('the answer');
      expect(final.usage!.total_tokens).toBe(9);
    } finally {
      await new Promise<void>((r) => reasoner.close(() => r()));
    }
  });

  it('passes a client abort on to the router (the call ends as client_abort)', async () => {
    const { client } = await start();
    cloud.options.reply = () => ({ text: 'word '.repeat(400) });
    cloud.options.chunkDelayMs = 10;
    const controller = new AbortController();
    const stream = await client.responses.create({ model: 'gpt-4o', input: 'long', stream: true }, { signal: controller.signal });
    let deltas = 0;
    for await (const ev of stream) {
      if (ev.type !== 'response.output_text.delta') continue;
      deltas++;
      controller.abort();
    }
    expect(deltas).toBeGreaterThan(0);
    await until(() => done().length === 1, 'inference.done', 5000);
    expect(done()[0]).toMatchObject({ api: 'openai.responses', status: 499, outcome: 'client_abort' });
  });

  it('turns a provider stream that breaks into response.failed, and the SDK throws rather than yield a cut answer', async () => {
    const broken = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [{ index: 0, delta: { content: 'half' }, finish_reason: null }] })}\n\ndata: <html>oops</html>\n\n`);
      });
    });
    await new Promise<void>((r) => broken.listen(0, '127.0.0.1', r));
    try {
      const base = `http://127.0.0.1:${(broken.address() as AddressInfo).port}/v1`;
      const { client } = await start({ providers: { local: { type: 'openai', base_url: base, locality: 'local' } }, routes: [] });
      const types: string[] = [];
      let failed: any;
      const err = await refusal(
        (async () => {
          for await (const ev of await client.responses.create({ model: 'm', input: 'x', stream: true })) {
            types.push(ev.type);
            if (ev.type === 'response.failed') failed = ev.response;
          }
        })(),
      );
      expect(err.message).toContain('not JSON');
      expect(types).toContain('response.output_text.delta');
      expect(failed).toMatchObject({ status: 'failed', error: { code: 'api_error' } });
      expect(types).not.toContain('response.completed');
      await until(() => done().length === 1, 'inference.done');
      expect(done()[0]).toMatchObject({ api: 'openai.responses', status: 502, outcome: 'upstream_error' });
    } finally {
      await new Promise<void>((r) => broken.close(() => r()));
    }
  });

  it('does not let a caller forge the internal label header', async () => {
    await start();
    const res = await fetch(`${h!.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${SANDBOX_TOKEN}`, 'x-nemoclaw-client-api': 'guess' },
      body: JSON.stringify({ model: 'gpt-4o', messages: [{ role: 'user', content: 'hi' }] }),
    });
    expect(res.status).toBe(200);
    await until(() => done().length === 1, 'inference.done');
    expect(done()[0]!.api).toBe('openai.chat');
    expect(cloud.requests[0]!.headers['x-nemoclaw-client-api']).toBeUndefined();
  });
});

describe('Responses API in the supervisor', () => {
  it('is served on the inference.local Unix socket, through the router (events in the audit say openai.responses)', async () => {
    const sup = await startTestSupervisor({
      services: [inferenceServiceFactory],
      policyText: `${MINIMAL_POLICY}inference:\n  providers:\n    cloud:\n      type: openai\n      base_url: ${cloud.openaiBaseUrl}\n`,
    });
    const socketPath = join(sup.paths.runDir, 'inference.sock');
    const agent = new Agent({ connect: { socketPath } });
    try {
      const token = readFileSync(join(sup.paths.dir, 'inference-token'), 'utf8').trim();
      const client = new OpenAI({
        apiKey: token,
        baseURL: 'http://inference.local/v1',
        maxRetries: 0,
        fetch: ((url: string, init: RequestInit) => undiciFetch(url, { ...(init as object), dispatcher: agent })) as never,
      });
      const res = await client.responses.create({ model: 'm', input: 'over the socket' });
      expect(res.output_text).toBe('echo: over the socket');
      let text = '';
      for await (const ev of await client.responses.create({ model: 'm', input: 'streamed', stream: true })) if (ev.type === 'response.output_text.delta') text += ev.delta;
      expect(text).toBe('echo: streamed');
      const events = await sup.client.events({ kinds: ['inference.route', 'inference.done'] });
      expect(events.filter((e) => e.kind === 'inference.done').map((e) => [e.api, e.routed_as, e.outcome])).toEqual([
        ['openai.responses', 'openai.chat', 'ok'],
        ['openai.responses', 'openai.chat', 'ok'],
      ]);
    } finally {
      await agent.close();
      await sup.stop();
    }
  });
});
