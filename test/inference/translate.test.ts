import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { anthropicToOpenAiChat, openAiChatToAnthropic, openAiCompletionToAnthropic, openAiStreamToAnthropic } from '../../src/inference/translate.js';
import { assembleAnthropicStream, assembleOpenAiStream, lastUserText, startStubUpstream, type StubUpstream } from '../stubs/upstream.js';
import { post, SANDBOX_TOKEN, startRouter, until, type RouterHarness } from './harness.js';

const KEY = 'sk-real-provider-key-outside-the-sandbox';
const EMAIL = 'jane.doe@acme-widgets.io';
const ANTHROPIC_HEADERS = { 'x-api-key': SANDBOX_TOKEN, authorization: '', 'anthropic-version': '2023-06-01' };

let claude: StubUpstream;
let oai: StubUpstream;
let h: RouterHarness | undefined;

/** OpenAI-format callers go to the Anthropic stub, Anthropic-format callers to the OpenAI stub. */
async function start(extra: Record<string, unknown> = {}): Promise<RouterHarness> {
  h = await startRouter(
    {
      providers: {
        claude: { type: 'anthropic', base_url: claude.url, api_key_env: 'KEY', model: 'claude-up', price: { input_per_mtok: 1, output_per_mtok: 1 } },
        oai: { type: 'openai', base_url: oai.openaiBaseUrl, api_key_env: 'KEY', model: 'gpt-up' },
      },
      routes: [
        { name: 'pii-to-claude', when: { api: ['openai.chat'], entities: ['email'] }, redact_then: 'claude' },
        { name: 'pii-to-oai', when: { api: ['anthropic.messages'], entities: ['email'] }, redact_then: 'oai' },
        { name: 'chat-to-claude', when: { api: ['openai.chat', 'openai.embeddings'] }, provider: 'claude' },
        { name: 'messages-to-oai', provider: 'oai' },
      ],
      ...extra,
    },
    {},
    { KEY },
  );
  return h;
}

const tools = [{ type: 'function', function: { name: 'send_mail', description: 'send an email', parameters: { type: 'object', properties: { to: { type: 'string' } }, required: ['to'] } } }];
const anthropicTools = [{ name: 'send_mail', description: 'send an email', input_schema: { type: 'object', properties: { to: { type: 'string' } } } }];

beforeEach(async () => {
  [claude, oai] = await Promise.all([startStubUpstream(), startStubUpstream()]);
});

afterEach(async () => {
  await h?.close();
  h = undefined;
  await Promise.all([claude.close(), oai.close()]);
});

describe('OpenAI chat call routed to an Anthropic provider', () => {
  it('translates a whole call: system prompt, max_tokens, key, text reply and usage', async () => {
    await start();
    claude.options.reply = () => ({ text: 'bonjour', usage: { prompt: 42, completion: 7 } });
    const res = await post(`${h!.url}/v1/chat/completions`, {
      model: 'gpt-4o',
      messages: [
        { role: 'system', content: 'Be brief.' },
        { role: 'user', content: [{ type: 'text', text: 'say hi' }] },
      ],
      stop: 'END',
    });
    expect(res.status).toBe(200);
    expect(res.json).toMatchObject({ object: 'chat.completion', choices: [{ index: 0, message: { role: 'assistant', content: 'bonjour' }, finish_reason: 'stop' }] });
    expect(res.json.usage).toEqual({ prompt_tokens: 42, completion_tokens: 7, total_tokens: 49 });
    const sent = claude.requests[0]!;
    expect(sent.path).toBe('/v1/messages');
    expect(sent.headers['x-api-key']).toBe(KEY);
    expect(sent.headers['authorization']).toBeUndefined();
    expect(sent.headers['anthropic-version']).toBe('2023-06-01');
    expect(sent.body).toEqual({ model: 'claude-up', max_tokens: 4096, system: 'Be brief.', messages: [{ role: 'user', content: [{ type: 'text', text: 'say hi' }] }], stop_sequences: ['END'] });
    await until(() => h!.events.some((e) => e.kind === 'inference.done'), 'done');
    expect(h!.events.find((e) => e.kind === 'inference.done')).toMatchObject({ status: 200, provider: 'claude', translated: 'openai->anthropic', prompt_tokens: 42, completion_tokens: 7, tokens_reported: true, cost_usd: 0.000049 });
  });

  it('translates a streamed reply with text and tool calls, and usage when asked', async () => {
    await start();
    claude.options.reply = () => ({ text: 'Sending now.', toolCalls: [{ id: 'toolu_9', name: 'send_mail', arguments: '{"to":"bob@corp.test","body":"hi"}' }], usage: { prompt: 30, completion: 12 } });
    const res = await post(`${h!.url}/v1/chat/completions`, {
      model: 'gpt-4o',
      stream: true,
      stream_options: { include_usage: true },
      tools,
      tool_choice: 'required',
      messages: [{ role: 'user', content: 'mail bob' }],
    });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toContain('text/event-stream');
    const s = assembleOpenAiStream(res.text);
    expect(s.content).toBe('Sending now.');
    expect(JSON.parse(s.toolArgs[0]!)).toEqual({ to: 'bob@corp.test', body: 'hi' });
    expect(s.done).toBe(true);
    expect(s.usage).toEqual({ prompt_tokens: 30, completion_tokens: 12, total_tokens: 42 });
    expect(res.text).toContain('"id":"toolu_9"');
    expect(res.text).toContain('"finish_reason":"tool_calls"');
    expect(claude.requests[0]!.body).toMatchObject({
      stream: true,
      tools: [{ name: 'send_mail', description: 'send an email', input_schema: tools[0]!.function.parameters }],
      tool_choice: { type: 'any' },
    });
    // Without include_usage the caller gets no usage chunk, as from OpenAI itself.
    const plain = assembleOpenAiStream((await post(`${h!.url}/v1/chat/completions`, { model: 'gpt-4o', stream: true, messages: [{ role: 'user', content: 'x' }] })).text);
    expect(plain.usage).toBeUndefined();
    expect(plain.done).toBe(true);
  });

  it('sends earlier tool calls and tool results as tool_use / tool_result blocks', async () => {
    await start();
    await post(`${h!.url}/v1/chat/completions`, {
      model: 'gpt-4o',
      messages: [
        { role: 'user', content: 'read the file' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'call_1', type: 'function', function: { name: 'read_file', arguments: '{"path":"a.txt"}' } }] },
        { role: 'tool', tool_call_id: 'call_1', content: 'file body' },
        { role: 'user', content: 'thanks' },
      ],
    });
    expect(claude.requests[0]!.body.messages).toEqual([
      { role: 'user', content: [{ type: 'text', text: 'read the file' }] },
      { role: 'assistant', content: [{ type: 'tool_use', id: 'call_1', name: 'read_file', input: { path: 'a.txt' } }] },
      { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'call_1', content: 'file body' }, { type: 'text', text: 'thanks' }] },
    ]);
  });

  it('keeps redaction through the translation: the value never reaches Anthropic and comes back in text and tool arguments', async () => {
    await start();
    claude.options.chunkChars = 3;
    claude.options.reply = (req) => {
      const placeholder = /<EMAIL_[0-9a-f]{6}>/.exec(JSON.stringify(req.body))?.[0] ?? 'none';
      return { text: `Writing to ${placeholder}.`, toolCalls: [{ name: 'send_mail', arguments: JSON.stringify({ to: placeholder }) }] };
    };
    const ask = { model: 'gpt-4o', tools, messages: [{ role: 'user', content: `mail ${EMAIL} the report` }] };
    const streamed = assembleOpenAiStream((await post(`${h!.url}/v1/chat/completions`, { ...ask, stream: true })).text);
    expect(streamed.content).toBe(`Writing to ${EMAIL}.`);
    expect(JSON.parse(streamed.toolArgs[0]!)).toEqual({ to: EMAIL });
    const whole = await post(`${h!.url}/v1/chat/completions`, ask);
    expect(whole.json.choices[0].message.content).toBe(`Writing to ${EMAIL}.`);
    expect(JSON.parse(whole.json.choices[0].message.tool_calls[0].function.arguments)).toEqual({ to: EMAIL });
    expect(claude.receivedText()).not.toContain(EMAIL);
    expect(lastUserText(claude.requests[0]!.body)).toMatch(/^mail <EMAIL_[0-9a-f]{6}> the report$/);
  });

  it('re-words a provider error in the OpenAI format, and still refuses embeddings it cannot translate', async () => {
    await start();
    claude.options.reply = () => ({ status: 429 });
    const limited = await post(`${h!.url}/v1/chat/completions`, { model: 'gpt-4o', messages: [{ role: 'user', content: 'x' }] });
    expect(limited.status).toBe(429);
    expect(limited.json.error).toMatchObject({ type: 'rate_limit_error', message: 'stub error 429' });
    const emb = await post(`${h!.url}/v1/embeddings`, { model: 'e', input: 'x' });
    expect(emb.status).toBe(502);
    expect(emb.json.error.message).toContain('no embeddings endpoint');
  });
});

describe('Anthropic messages call routed to an OpenAI-compatible provider', () => {
  it('translates a whole call: system, tools, earlier tool use, reply and usage', async () => {
    await start();
    oai.options.reply = () => ({ text: 'done', toolCalls: [{ id: 'call_7', name: 'send_mail', arguments: '{"to":"a@b.test"}' }], usage: { prompt: 50, completion: 9 } });
    const res = await post(
      `${h!.url}/v1/messages`,
      {
        model: 'claude-sonnet',
        max_tokens: 200,
        system: [{ type: 'text', text: 'You are terse.' }],
        tools: anthropicTools,
        tool_choice: { type: 'tool', name: 'send_mail' },
        stop_sequences: ['STOP'],
        messages: [
          { role: 'user', content: 'look it up' },
          { role: 'assistant', content: [{ type: 'text', text: 'Looking.' }, { type: 'tool_use', id: 'toolu_1', name: 'lookup', input: { q: 'x' } }] },
          { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_1', content: [{ type: 'text', text: 'found it' }] }, { type: 'text', text: 'now mail it' }] },
        ],
      },
      ANTHROPIC_HEADERS,
    );
    expect(res.status).toBe(200);
    expect(res.json).toEqual({
      id: 'chatcmpl-stub',
      type: 'message',
      role: 'assistant',
      model: 'gpt-up',
      content: [{ type: 'text', text: 'done' }, { type: 'tool_use', id: 'call_7', name: 'send_mail', input: { to: 'a@b.test' } }],
      stop_reason: 'tool_use',
      stop_sequence: null,
      usage: { input_tokens: 50, output_tokens: 9 },
    });
    const sent = oai.requests[0]!;
    expect(sent.path).toBe('/v1/chat/completions');
    expect(sent.headers.authorization).toBe(`Bearer ${KEY}`);
    expect(sent.body).toEqual({
      model: 'gpt-up',
      max_tokens: 200,
      stop: ['STOP'],
      messages: [
        { role: 'system', content: 'You are terse.' },
        { role: 'user', content: 'look it up' },
        { role: 'assistant', content: 'Looking.', tool_calls: [{ id: 'toolu_1', type: 'function', function: { name: 'lookup', arguments: '{"q":"x"}' } }] },
        { role: 'tool', tool_call_id: 'toolu_1', content: 'found it' },
        { role: 'user', content: 'now mail it' },
      ],
      tools: [{ type: 'function', function: { name: 'send_mail', description: 'send an email', parameters: anthropicTools[0]!.input_schema } }],
      tool_choice: { type: 'function', function: { name: 'send_mail' } },
    });
  });

  it('translates a streamed reply into Anthropic events with text, tool_use and usage', async () => {
    await start();
    oai.options.reply = () => ({ text: 'On it.', toolCalls: [{ name: 'send_mail', arguments: '{"to":"x@y.test"}' }], usage: { prompt: 77, completion: 11 } });
    const res = await post(`${h!.url}/v1/messages`, { model: 'claude-sonnet', max_tokens: 50, stream: true, tools: anthropicTools, messages: [{ role: 'user', content: 'go' }] }, ANTHROPIC_HEADERS);
    expect(res.status).toBe(200);
    const s = assembleAnthropicStream(res.text);
    expect(s.content).toBe('On it.');
    expect(s.toolInputs.map((t) => JSON.parse(t))).toEqual([{ to: 'x@y.test' }]);
    expect(s.stopped).toBe(true);
    expect(s.usage).toMatchObject({ input_tokens: 77, output_tokens: 11 });
    expect(s.errors).toEqual([]);
    const events = res.text.split('\n').filter((l) => l.startsWith('event: ')).map((l) => l.slice(7));
    expect(events[0]).toBe('message_start');
    expect(events.filter((e) => e === 'content_block_start')).toHaveLength(2);
    expect(events.filter((e) => e === 'content_block_stop')).toHaveLength(2);
    expect(events.slice(-2)).toEqual(['message_delta', 'message_stop']);
    expect(res.text).toContain('"stop_reason":"tool_use"');
    expect(oai.requests[0]!.body.stream_options).toEqual({ include_usage: true });
    await until(() => h!.events.some((e) => e.kind === 'inference.done'), 'done');
    expect(h!.events.find((e) => e.kind === 'inference.done')).toMatchObject({ translated: 'anthropic->openai', prompt_tokens: 77, completion_tokens: 11, tokens_reported: true });
  });

  it('keeps redaction through the translation, streamed and whole', async () => {
    await start();
    oai.options.chunkChars = 2;
    oai.options.reply = (req) => {
      const placeholder = /<EMAIL_[0-9a-f]{6}>/.exec(JSON.stringify(req.body))?.[0] ?? 'none';
      return { text: `ok ${placeholder}`, toolCalls: [{ name: 'send_mail', arguments: JSON.stringify({ to: placeholder }) }] };
    };
    const body = { model: 'c', max_tokens: 50, tools: anthropicTools, messages: [{ role: 'user', content: `write to ${EMAIL}` }] };
    const s = assembleAnthropicStream((await post(`${h!.url}/v1/messages`, { ...body, stream: true }, ANTHROPIC_HEADERS)).text);
    expect(s.content).toBe(`ok ${EMAIL}`);
    expect(JSON.parse(s.toolInputs[0]!)).toEqual({ to: EMAIL });
    const whole = await post(`${h!.url}/v1/messages`, body, ANTHROPIC_HEADERS);
    expect(whole.json.content).toEqual([{ type: 'text', text: `ok ${EMAIL}` }, { type: 'tool_use', id: 'call_0', name: 'send_mail', input: { to: EMAIL } }]);
    expect(oai.receivedText()).not.toContain(EMAIL);
  });

  it('cuts a translated stream when the budget runs out and answers 402 afterwards, in Anthropic format', async () => {
    await start({ budgets: { hour: { tokens: 300 } } });
    oai.options.reply = () => ({ text: 'word '.repeat(500) });
    oai.options.chunkChars = 10;
    const res = await post(`${h!.url}/v1/messages`, { model: 'c', max_tokens: 4000, stream: true, messages: [{ role: 'user', content: 'essay' }] }, ANTHROPIC_HEADERS);
    const s = assembleAnthropicStream(res.text);
    expect(s.errors[0]).toMatchObject({ type: 'billing_error' });
    expect(s.stopped).toBe(false);
    expect(s.content.length).toBeLessThan('word '.repeat(500).length);
    const after = await post(`${h!.url}/v1/messages`, { model: 'c', max_tokens: 10, messages: [{ role: 'user', content: 'more' }] }, ANTHROPIC_HEADERS);
    expect(after.status).toBe(402);
    expect(after.json).toMatchObject({ type: 'error', error: { type: 'billing_error' } });
    expect(oai.requests).toHaveLength(1);
  });

  it('re-words a provider error in the Anthropic format', async () => {
    await start();
    oai.options.reply = () => ({ status: 400 });
    const res = await post(`${h!.url}/v1/messages`, { model: 'c', max_tokens: 10, messages: [{ role: 'user', content: 'x' }] }, ANTHROPIC_HEADERS);
    expect(res.status).toBe(400);
    expect(res.json).toEqual({ type: 'error', error: { type: 'invalid_request_error', message: 'stub error 400' } });
  });
});

describe('request translation details', () => {
  it('maps images both ways and tool_choice spellings', () => {
    const a = openAiChatToAnthropic(
      {
        messages: [
          { role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AAAA' } }, { type: 'image_url', image_url: { url: 'https://x.test/a.png' } }] },
        ],
        max_tokens: 5,
        tools,
        tool_choice: 'none',
        parallel_tool_calls: false,
        temperature: 1.7,
      },
      'm',
    );
    expect(a.messages).toEqual([
      { role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'AAAA' } }, { type: 'image', source: { type: 'url', url: 'https://x.test/a.png' } }] },
    ]);
    expect(a).toMatchObject({ max_tokens: 5, tool_choice: { type: 'none', disable_parallel_tool_use: true }, temperature: 1 });
    const o = anthropicToOpenAiChat(
      { max_tokens: 5, messages: [{ role: 'user', content: [{ type: 'text', text: 'see' }, { type: 'image', source: { type: 'base64', media_type: 'image/jpeg', data: 'BBBB' } }] }], tools: anthropicTools, tool_choice: { type: 'any' } },
      'm',
    );
    expect(o.messages).toEqual([{ role: 'user', content: [{ type: 'text', text: 'see' }, { type: 'image_url', image_url: { url: 'data:image/jpeg;base64,BBBB' } }] }]);
    expect(o.tool_choice).toBe('required');
  });
});

describe('providers that report no usage', () => {
  it('still give Anthropic callers (and the budget) token counts, estimated', () => {
    const whole = openAiCompletionToAnthropic({ id: 'x', model: 'm', choices: [{ index: 0, message: { role: 'assistant', content: 'a'.repeat(40) }, finish_reason: 'stop' }] }, 123);
    expect(whole.usage).toEqual({ input_tokens: 123, output_tokens: 10 });
    const t = openAiStreamToAnthropic(55, (kind, message) => ({ kind, message }));
    const chunk = (delta: unknown, finish: string | null = null) => ({ data: JSON.stringify({ id: 'c', model: 'm', choices: [{ index: 0, delta, finish_reason: finish }] }), event: undefined, id: undefined });
    const out = [...t.push(chunk({ role: 'assistant', content: 'b'.repeat(20) })), ...t.push(chunk({}, 'stop')), ...t.push({ data: '[DONE]', event: undefined, id: undefined })];
    const start = JSON.parse(out.find((e) => e.event === 'message_start')!.data);
    expect(start.message.usage).toEqual({ input_tokens: 55, output_tokens: 0 });
    const delta = JSON.parse(out.find((e) => e.event === 'message_delta')!.data);
    expect(delta).toMatchObject({ delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 5 } });
    expect(out.at(-1)!.event).toBe('message_stop');
    expect(t.end()).toEqual([]);
  });

  it('closes a translated stream that ends without [DONE]', () => {
    const t = openAiStreamToAnthropic(1, (kind, message) => ({ kind, message }));
    t.push({ data: JSON.stringify({ id: 'c', choices: [{ index: 0, delta: { content: 'partial' }, finish_reason: null }] }), event: undefined, id: undefined });
    expect(t.end().map((e) => e.event)).toEqual(['content_block_stop', 'message_delta', 'message_stop']);
  });
});
