/**
 * Issue 13 items 1 and 6: every field that goes upstream is scanned (a generic walk over every string
 * value and key, plus decoded carriers), uninspectable content follows `inference.uninspectable`, and
 * placeholders cannot be forged. Each case runs through the real router on loopback against stub
 * providers speaking the real wire formats, in the caller's own format and translated.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { assembleAnthropicStream, assembleOpenAiStream, startStubUpstream, type StubUpstream } from '../stubs/upstream.js';
import { post, SANDBOX_TOKEN, startRouter, until, type RouterHarness, expectPolicyRefusal } from './harness.js';

const EMAIL = 'jane.doe@acme-widgets.io';
const SECRET = 'ghp_' + 'a1B2c3D4e5'.repeat(4);
const ANTHROPIC_HEADERS = { 'x-api-key': SANDBOX_TOKEN, authorization: '', 'anthropic-version': '2023-06-01' };
const b64 = (s: string): string => Buffer.from(s, 'utf8').toString('base64');
const PNG = Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), Buffer.alloc(64, 7)]).toString('base64');
const PDF = Buffer.concat([Buffer.from('%PDF-1.7\n'), Buffer.from([0xe2, 0xe3, 0xcf, 0xd3, 0, 1, 2, 3])]).toString('base64');

let tok: { o200k: typeof import('gpt-tokenizer'); cl100k: typeof import('gpt-tokenizer/encoding/cl100k_base') };
let local: StubUpstream;
let cloud: StubUpstream;
let claude: StubUpstream;
let h: RouterHarness | undefined;

/** `same`: each caller format goes to a provider of that format; `cross`: to the other one (translated). */
function policy(mode: 'same' | 'cross', extra: Record<string, unknown> = {}): Record<string, unknown> {
  const forAnthropic = mode === 'same' ? 'claude' : 'cloud';
  const forOpenAi = mode === 'same' ? 'cloud' : 'claude';
  return {
    providers: {
      local: { type: 'openai', base_url: local.openaiBaseUrl, locality: 'local', model: 'local-llama' },
      cloud: { type: 'openai', base_url: cloud.openaiBaseUrl, api_key_env: 'CLOUD_KEY' },
      claude: { type: 'anthropic', base_url: claude.url, api_key_env: 'CLOUD_KEY' },
    },
    routes: [
      { name: 'no-secrets', when: { entities: ['secret'] }, block: true },
      { name: 'local-models', when: { model: ['local-*'] }, provider: 'local' },
      { name: 'pii-anthropic', when: { api: ['anthropic.messages'], entities: ['email'] }, redact_then: forAnthropic },
      { name: 'anthropic', when: { api: ['anthropic.messages'] }, provider: forAnthropic },
      { name: 'pii-chat', when: { api: ['openai.chat'], entities: ['email'] }, redact_then: forOpenAi },
      { name: 'chat', when: { api: ['openai.chat'] }, provider: forOpenAi },
      { name: 'pii', when: { entities: ['email'] }, redact_then: 'cloud' },
      { name: 'default', provider: 'cloud' },
    ],
    ...extra,
  };
}

async function start(mode: 'same' | 'cross', extra: Record<string, unknown> = {}): Promise<RouterHarness> {
  await h?.close();
  h = await startRouter(policy(mode, extra), {}, { CLOUD_KEY: 'sk-cloud' });
  return h;
}

/** Every way `value` could still be in what a stub received: as text, base64, a data: URL, token ids. */
function leaked(stubs: StubUpstream[], value: string): string | undefined {
  const probe = (v: unknown, path: string): string | undefined => {
    if (typeof v === 'string') {
      if (v.includes(value)) return path;
      const m = /^data:[^,]*?(;base64)?,(.*)$/s.exec(v);
      const decoded = m ? (m[1] ? Buffer.from(m[2]!, 'base64').toString('utf8') : decodeURIComponent(m[2]!)) : /^[A-Za-z0-9+/=_-]{8,}$/.test(v) ? Buffer.from(v, 'base64').toString('utf8') : '';
      return decoded.includes(value) ? `${path} (decoded)` : undefined;
    }
    if (Array.isArray(v)) {
      if (v.length > 0 && v.every((n) => Number.isInteger(n))) {
        for (const codec of [tok.o200k, tok.cl100k]) {
          try {
            if (codec.decode(v as number[]).includes(value)) return `${path} (token ids)`;
          } catch {
            // not this vocabulary
          }
        }
        return undefined;
      }
      for (let i = 0; i < v.length; i++) {
        const r = probe(v[i], `${path}[${i}]`);
        if (r) return r;
      }
      return undefined;
    }
    if (v !== null && typeof v === 'object') {
      for (const [k, child] of Object.entries(v)) {
        if (k.includes(value)) return `${path}.{key}`;
        const r = probe(child, `${path}.${k}`);
        if (r) return r;
      }
    }
    return undefined;
  };
  for (const s of stubs) {
    for (const r of s.requests) {
      if (r.raw.includes(value)) return `${s.url}: raw body`;
      const where = probe(r.body, '');
      if (where) return `${s.url}: ${where}`;
    }
  }
  return undefined;
}

interface Case {
  name: string;
  api: 'chat' | 'messages' | 'completions' | 'embeddings';
  body: (v: string) => Record<string, unknown>;
  /** Also run with the call translated to the other wire format. */
  translated?: boolean;
}

const chat = (messages: unknown[], more: Record<string, unknown> = {}) => ({ model: 'gpt-4o', messages: [{ role: 'system', content: 'You are careful.' }, ...messages], ...more });
const msgs = (messages: unknown[], more: Record<string, unknown> = {}) => ({ model: 'claude-sonnet', max_tokens: 64, messages, ...more });

const CASES: Case[] = [
  // OpenAI chat completions.
  { name: 'message name', api: 'chat', translated: true, body: (v) => chat([{ role: 'user', name: v, content: 'hello' }]) },
  { name: 'prediction.content', api: 'chat', translated: true, body: (v) => chat([{ role: 'user', content: 'fix the draft' }], { prediction: { type: 'content', content: `Dear ${v},` } }) },
  {
    name: 'legacy function_call and functions',
    api: 'chat',
    translated: true,
    body: (v) =>
      chat(
        [
          { role: 'user', content: 'send it' },
          { role: 'assistant', content: null, function_call: { name: 'send', arguments: JSON.stringify({ to: v }) } },
          { role: 'function', name: 'send', content: 'sent' },
        ],
        { functions: [{ name: 'send', description: 'send mail', parameters: { type: 'object', properties: { to: { type: 'string' } } } }] },
      ),
  },
  { name: 'functions definition', api: 'chat', translated: true, body: (v) => chat([{ role: 'user', content: 'hi' }], { functions: [{ name: 'send', description: `copy ${v}`, parameters: { type: 'object' } }] }) },
  { name: 'assistant refusal', api: 'chat', translated: true, body: (v) => chat([{ role: 'user', content: 'q' }, { role: 'assistant', content: 'no', refusal: `I will not mail ${v}` }, { role: 'user', content: 'ok' }]) },
  { name: 'reasoning_content', api: 'chat', translated: true, body: (v) => chat([{ role: 'user', content: 'q' }, { role: 'assistant', content: 'a', reasoning_content: `write to ${v}` }, { role: 'user', content: 'ok' }]) },
  { name: 'top-level user', api: 'chat', translated: true, body: (v) => chat([{ role: 'user', content: 'hi' }], { user: v }) },
  { name: 'top-level metadata', api: 'chat', translated: true, body: (v) => chat([{ role: 'user', content: 'hi' }], { metadata: { owner: v } }) },
  {
    name: 'tool description and JSON-schema strings',
    api: 'chat',
    translated: true,
    body: (v) =>
      chat([{ role: 'user', content: 'hi' }], {
        tools: [{ type: 'function', function: { name: 'send', description: `default recipient ${v}`, parameters: { type: 'object', properties: { to: { type: 'string', description: `e.g. ${v}`, enum: [v], default: v } } } } }],
      }),
  },
  { name: 'tool-call arguments with the value as a key', api: 'chat', translated: true, body: (v) => chat([{ role: 'user', content: 'q' }, { role: 'assistant', content: null, tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: JSON.stringify({ [v]: 'x' }) } }] }, { role: 'tool', tool_call_id: 'c1', content: 'ok' }]) },
  { name: 'file part, base64 text', api: 'chat', translated: true, body: (v) => chat([{ role: 'user', content: [{ type: 'text', text: 'read' }, { type: 'file', file: { filename: 'notes.txt', file_data: b64(`notes: ${v}`) } }] }]) },
  { name: 'file part, text data: URL', api: 'chat', translated: true, body: (v) => chat([{ role: 'user', content: [{ type: 'file', file: { filename: 'n.txt', file_data: `data:text/plain;base64,${b64(`to ${v}`)}` } }] }]) },
  { name: 'image_url with a text data: URL', api: 'chat', translated: true, body: (v) => chat([{ role: 'user', content: [{ type: 'image_url', image_url: { url: `data:text/plain;base64,${b64(`caption ${v}`)}` } }] }]) },
  { name: 'an unknown new field', api: 'chat', translated: true, body: (v) => chat([{ role: 'user', content: 'hi' }], { x_future_field: { deep: [{ note: `ping ${v}` }] } }) },
  // Anthropic messages.
  { name: 'system blocks', api: 'messages', translated: true, body: (v) => msgs([{ role: 'user', content: 'hi' }], { system: [{ type: 'text', text: `ops contact ${v}`, cache_control: { type: 'ephemeral' } }] }) },
  { name: 'document, text source', api: 'messages', translated: true, body: (v) => msgs([{ role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: `memo for ${v}` }, title: 'memo' }, { type: 'text', text: 'summarise' }] }]) },
  { name: 'document, base64 text/plain', api: 'messages', translated: true, body: (v) => msgs([{ role: 'user', content: [{ type: 'document', source: { type: 'base64', media_type: 'text/plain', data: b64(`memo for ${v}`) } }, { type: 'text', text: 'summarise' }] }]) },
  { name: 'document title and context', api: 'messages', translated: true, body: (v) => msgs([{ role: 'user', content: [{ type: 'document', source: { type: 'text', media_type: 'text/plain', data: 'memo' }, title: `from ${v}`, context: `owner ${v}` }] }]) },
  { name: 'document, content source', api: 'messages', translated: true, body: (v) => msgs([{ role: 'user', content: [{ type: 'document', source: { type: 'content', content: [{ type: 'text', text: `cc ${v}` }] } }] }]) },
  { name: 'search_result block', api: 'messages', translated: true, body: (v) => msgs([{ role: 'user', content: [{ type: 'search_result', source: 'https://kb.acme-widgets.io/a', title: 'kb', content: [{ type: 'text', text: `contact ${v}` }] }, { type: 'text', text: 'answer' }] }]) },
  {
    name: 'tool_use input keys',
    api: 'messages',
    translated: true,
    body: (v) =>
      msgs([
        { role: 'user', content: 'look up' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'lookup', input: { [v]: { note: 'n' }, list: [{ [`by ${v}`]: 1 }] } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: [{ type: 'text', text: 'done' }] }] },
      ]),
  },
  { name: 'tool description and input_schema', api: 'messages', translated: true, body: (v) => msgs([{ role: 'user', content: 'hi' }], { tools: [{ name: 'send', description: `to ${v}`, input_schema: { type: 'object', properties: { to: { type: 'string', description: `like ${v}` } } } }] }) },
  { name: 'metadata.user_id', api: 'messages', translated: true, body: (v) => msgs([{ role: 'user', content: 'hi' }], { metadata: { user_id: v } }) },
  { name: 'thinking block', api: 'messages', translated: true, body: (v) => msgs([{ role: 'user', content: 'q' }, { role: 'assistant', content: [{ type: 'thinking', thinking: `mail ${v}`, signature: 'sig' }, { type: 'text', text: 'a' }] }, { role: 'user', content: 'ok' }]) },
  // Completions and embeddings: strings and token ids.
  { name: 'completions prompt, string array', api: 'completions', body: (v) => ({ model: 'gpt-3.5-turbo-instruct', prompt: ['one', `mail ${v} now`] }) },
  { name: 'completions prompt, o200k token ids', api: 'completions', body: (v) => ({ model: 'gpt-3.5-turbo-instruct', prompt: tok.o200k.encode(`mail ${v} now`) }) },
  { name: 'completions prompt, cl100k token ids', api: 'completions', body: (v) => ({ model: 'gpt-3.5-turbo-instruct', prompt: tok.cl100k.encode(`mail ${v} now`) }) },
  { name: 'embeddings input, arrays of token ids', api: 'embeddings', body: (v) => ({ model: 'text-embedding-3-small', input: [tok.o200k.encode('plain'), tok.o200k.encode(`about ${v}`)] }) },
];

const PATHS = { chat: '/v1/chat/completions', messages: '/v1/messages', completions: '/v1/completions', embeddings: '/v1/embeddings' } as const;
const send = (api: Case['api'], body: unknown) => post(`${h!.url}${PATHS[api]}`, body, api === 'messages' ? ANTHROPIC_HEADERS : {});

beforeAll(async () => {
  tok = { o200k: await import('gpt-tokenizer'), cl100k: await import('gpt-tokenizer/encoding/cl100k_base') };
  [local, cloud, claude] = await Promise.all([startStubUpstream(), startStubUpstream(), startStubUpstream()]);
});

afterEach(async () => {
  await h?.close();
  h = undefined;
  for (const s of [local, cloud, claude]) s.requests.length = 0;
});

afterAll(async () => {
  await Promise.all([local.close(), cloud.close(), claude.close()]);
});

describe('every field is scanned: an e-mail is redacted, a secret blocks', () => {
  for (const mode of ['same', 'cross'] as const) {
    for (const c of CASES.filter((k) => mode === 'same' || k.translated)) {
      it(`${c.name} (${mode === 'same' ? c.api : `${c.api}, translated`})`, async () => {
        await start(mode);
        const ok = await send(c.api, c.body(EMAIL));
        expect(ok.status, ok.text).toBe(200);
        expect(leaked([local, cloud, claude], EMAIL)).toBeUndefined();
        const target = [cloud, claude].find((s) => s.requests.length > 0)!;
        expect(target).toBe(mode === 'same' ? (c.api === 'messages' ? claude : cloud) : c.api === 'messages' ? cloud : claude);
        await until(() => h!.events.some((e) => e.kind === 'inference.route'), 'route event');
        const route = h!.events.find((e) => e.kind === 'inference.route')!;
        expect(route).toMatchObject({ action: 'redact_then', entities: { email: expect.any(Number) } });
        expect(route.redactions).toBeGreaterThan(0);
        expect(JSON.stringify(h!.events)).not.toContain(EMAIL);

        const blocked = await send(c.api, c.body(SECRET));
        expectPolicyRefusal(blocked, 'blocked_by_policy', c.api === 'chat' || c.api === 'messages');
        expect(blocked.text).toContain('no-secrets');
        expect(leaked([local, cloud, claude], SECRET)).toBeUndefined();
        expect(local.requests.length + cloud.requests.length + claude.requests.length).toBe(1);
      });
    }
  }

  it('the leak probe finds the value in every encoding (control: a local provider gets it unredacted)', async () => {
    await start('same');
    for (const name of ['document, base64 text/plain', 'file part, text data: URL', 'tool_use input keys']) {
      const body = CASES.find((c) => c.name === name)!.body(EMAIL);
      const api = CASES.find((c) => c.name === name)!.api;
      local.requests.length = 0;
      expect((await send(api === 'messages' ? 'chat' : api, api === 'messages' ? chat(body.messages as unknown[], { model: 'local-x' }) : { ...body, model: 'local-x' })).status).toBe(200);
      expect(leaked([local], EMAIL)).toBeDefined();
    }
    local.requests.length = 0;
    expect((await send('completions', { model: 'local-x', prompt: tok.cl100k.encode(`mail ${EMAIL}`) })).status).toBe(200);
    expect(leaked([local], EMAIL)).toMatch(/token ids/);
  });

  it('a redacted e-mail in a tool_use key comes back as the real key in the response', async () => {
    await start('same');
    claude.options.reply = (req) => {
      const input = req.body.messages[1].content[0].input as Record<string, unknown>;
      return { toolCalls: [{ id: 't2', name: 'lookup', arguments: JSON.stringify({ [Object.keys(input)[0]!]: 'again' }) }] };
    };
    try {
      const res = await send('messages', CASES.find((c) => c.name === 'tool_use input keys')!.body(EMAIL));
      expect(res.status).toBe(200);
      expect(res.json.content.find((b: { type: string }) => b.type === 'tool_use').input).toEqual({ [EMAIL]: 'again' });
      expect(leaked([claude], EMAIL)).toBeUndefined();
    } finally {
      claude.options.reply = undefined;
    }
  });

  it('counts token-id prompts as their ids (they counted 0 before)', async () => {
    await start('same');
    const ids = tok.o200k.encode('a plain prompt with some words in it, '.repeat(20));
    const res = await send('completions', { model: 'gpt-3.5-turbo-instruct', prompt: ids });
    expect(res.status).toBe(200);
    await until(() => h!.events.some((e) => e.kind === 'inference.route'), 'route event');
    expect(h!.events.find((e) => e.kind === 'inference.route')!.estimated_prompt_tokens).toBeGreaterThanOrEqual(ids.length);
    // Unredacted token ids go upstream as they are.
    expect(cloud.requests[0]!.body.prompt).toEqual(ids);
  });

  it('a redacted token-id prompt stays token ids, and the provider reads the placeholder', async () => {
    await start('same');
    const res = await send('completions', { model: 'gpt-3.5-turbo-instruct', prompt: tok.o200k.encode(`mail ${EMAIL} now`) });
    expect(res.status).toBe(200);
    const sent = cloud.requests[0]!.body.prompt as number[];
    expect(sent.every((n) => Number.isInteger(n))).toBe(true);
    expect(tok.o200k.decode(sent)).toMatch(/^mail <EMAIL_[0-9a-f]{6}> now$/);
  });

  it('refuses, sending nothing, when a rewritten carrier still reads as the value (token ids under two vocabularies)', async () => {
    await start('same');
    // o200k reads the first half as the address, cl100k the second half: rewriting one reading
    // re-encodes the ids and leaves the other one's address in place.
    const ids = [...tok.o200k.encode(`a ${EMAIL} `), ...tok.cl100k.encode(` b ${EMAIL}`)];
    const res = await send('completions', { model: 'gpt-3.5-turbo-instruct', prompt: ids });
    expectPolicyRefusal(res, 'redaction_failed', false);
    expect(res.json.error.message).toMatch(/email could not be redacted at prompt; nothing was sent/);
    expect(cloud.requests).toHaveLength(0);
  });

  it('a base64 text document is re-encoded with the placeholder', async () => {
    await start('same');
    const res = await send('messages', CASES.find((c) => c.name === 'document, base64 text/plain')!.body(EMAIL));
    expect(res.status).toBe(200);
    const source = claude.requests[0]!.body.messages[0].content[0].source;
    expect(source).toMatchObject({ type: 'base64', media_type: 'text/plain' });
    expect(Buffer.from(source.data, 'base64').toString('utf8')).toMatch(/^memo for <EMAIL_[0-9a-f]{6}>$/);
  });
});

describe('inference.uninspectable', () => {
  const imageChat = (model = 'gpt-4o') => chat([{ role: 'user', content: [{ type: 'text', text: 'what is this?' }, { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } }] }], { model });
  const imageMsgs = (model = 'claude-sonnet') => msgs([{ role: 'user', content: [{ type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } }, { type: 'text', text: 'what is this?' }] }], { model });
  const pdfMsgs = () => msgs([{ role: 'user', content: [{ type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: PDF } }] }]);
  const audioChat = () => chat([{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: PNG, format: 'wav' } }] }]);

  it('defaults to local_only: refused for a cloud provider with a policy error, allowed for a local one', async () => {
    await start('same');
    expect(h!.router.config().uninspectable).toBe('local_only');
    for (const [api, body] of [['chat', imageChat()], ['messages', imageMsgs()], ['messages', pdfMsgs()], ['chat', audioChat()]] as const) {
      const res = await send(api, body);
      expectPolicyRefusal(res, 'uninspectable_content');
      expect(res.text).toMatch(/cannot inspect .*inference\.uninspectable is \\"local_only\\"/);
      expect(res.text).toContain('inference.uninspectable: allow');
    }
    expect(cloud.requests.length + claude.requests.length).toBe(0);
    const localOk = await send('chat', imageChat('local-vision'));
    expect(localOk.status).toBe(200);
    expect(local.requests).toHaveLength(1);
    expect(local.receivedText()).toContain(PNG);
    await until(() => h!.events.filter((e) => e.kind === 'inference.done').length === 5, 'done events');
    expect(h!.events.filter((e) => e.kind === 'inference.done').map((e) => e.outcome)).toEqual(['uninspectable', 'uninspectable', 'uninspectable', 'uninspectable', 'ok']);
    const route = h!.events.filter((e) => e.kind === 'inference.route').at(-1)!;
    expect(route.uninspectable).toEqual(['messages[1].content[1].image_url.url: data: URL (image/png)']);
  });

  it('block: refused even for a local provider', async () => {
    await start('same', { uninspectable: 'block' });
    for (const [api, body] of [['chat', imageChat('local-vision')], ['messages', imageMsgs()], ['chat', imageChat()]] as const) {
      const res = await send(api, body);
      expectPolicyRefusal(res, 'uninspectable_content');
      expect(res.text).toContain('inference.uninspectable is \\"block\\"');
    }
    expect(local.requests.length + cloud.requests.length + claude.requests.length).toBe(0);
  });

  it('allow: forwarded to the cloud, and the route event names what was not inspected', async () => {
    await start('same', { uninspectable: 'allow' });
    expect((await send('chat', imageChat())).status).toBe(200);
    expect((await send('messages', imageMsgs())).status).toBe(200);
    expect(cloud.receivedText()).toContain(PNG);
    expect(claude.receivedText()).toContain(PNG);
    await until(() => h!.events.filter((e) => e.kind === 'inference.route').length === 2, 'route events');
    const routes = h!.events.filter((e) => e.kind === 'inference.route');
    expect(routes[0]!.uninspectable).toEqual(['messages[1].content[1].image_url.url: data: URL (image/png)']);
    expect(routes[1]!.uninspectable).toEqual(['messages[0].content[0].source.data: image (image/png)']);
  });

  it('allow still scans the text around an image, translated too', async () => {
    await start('cross', { uninspectable: 'allow' });
    const body = chat([{ role: 'user', content: [{ type: 'text', text: `who is ${EMAIL}?` }, { type: 'image_url', image_url: { url: `data:image/png;base64,${PNG}` } }] }]);
    const res = await send('chat', body);
    expect(res.status).toBe(200);
    expect(leaked([claude], EMAIL)).toBeUndefined();
    expect(claude.requests[0]!.body.messages[0].content).toContainEqual({ type: 'image', source: { type: 'base64', media_type: 'image/png', data: PNG } });
  });

  it('a binary blob in an unknown field is uninspectable too (new fields fail closed)', async () => {
    await start('same');
    const blob = Buffer.alloc(300, 0xff).toString('base64');
    const res = await send('chat', chat([{ role: 'user', content: 'hi' }], { x_attachment: blob }));
    expectPolicyRefusal(res, 'uninspectable_content');
    expect(res.text).toContain('base64 data that is not text at x_attachment');
    const bytes = await send('chat', chat([{ role: 'user', content: 'hi' }], { x_bytes: Array.from({ length: 80 }, (_, i) => i) }));
    expectPolicyRefusal(bytes, 'uninspectable_content');
    const ids = await send('chat', chat([{ role: 'user', content: 'hi' }], { x_tokens: tok.o200k.encode(`please mail ${EMAIL} the quarterly report, the invoice and the minutes of the meeting today`) }));
    expectPolicyRefusal(ids, 'uninspectable_content');
    expect(ids.text).toContain('integers (bytes or token ids) at x_tokens');
    expect(cloud.requests).toHaveLength(0);
  });

  it('local_only content never falls back from a local provider to the cloud', async () => {
    const base = policy('same');
    await h?.close();
    h = await startRouter(
      {
        ...base,
        providers: { ...(base.providers as object), down: { type: 'openai', base_url: 'http://127.0.0.1:1/v1', locality: 'local', timeout_ms: 2000 } },
        routes: [{ name: 'vision-local', when: { model: ['local-*'] }, provider: 'down', fallback: 'cloud' }, { provider: 'cloud' }],
      },
      {},
      { CLOUD_KEY: 'sk-cloud' },
    );
    const res = await send('chat', imageChat('local-vision'));
    expect(res.status).toBe(502);
    expect(cloud.requests).toHaveLength(0);
    // Plain text on the same route does fall back.
    expect((await send('chat', chat([{ role: 'user', content: 'hi' }], { model: 'local-x' }))).status).toBe(200);
    expect(cloud.requests).toHaveLength(1);
  });

  it('a signed thinking block (a long opaque base64 signature) is no uninspectable content', async () => {
    await start('same');
    const signature = Buffer.alloc(400, 0xab).toString('base64');
    const body = msgs([{ role: 'user', content: 'q' }, { role: 'assistant', content: [{ type: 'thinking', thinking: 'plan', signature }, { type: 'text', text: 'a' }] }, { role: 'user', content: 'ok' }]);
    const res = await send('messages', body);
    expect(res.status, res.text).toBe(200);
    expect(claude.requests[0]!.body.messages[1].content[0].signature).toBe(signature);
  });

  it('rejects an unknown value in the policy', async () => {
    await start('same');
    expect(() => h!.router.setPolicy(policy('same', { uninspectable: 'sometimes' }))).toThrow(/inference\.uninspectable/);
  });
});

describe('placeholders cannot be forged', () => {
  it('a placeholder the agent typed stays as typed; only the ones this request issued are restored', async () => {
    await start('same');
    const forged = '<EMAIL_1> <EMAIL_7f3a9c> <PHONE_000000>';
    const res = await send('chat', chat([{ role: 'user', content: `mail ${EMAIL}; keep ${forged}` }]));
    expect(res.status).toBe(200);
    expect(res.json.choices[0].message.content).toBe(`echo: mail ${EMAIL}; keep ${forged}`);
    const seen = cloud.requests[0]!.body.messages[1].content as string;
    const issued = /<EMAIL_[0-9a-f]{6}>/.exec(seen)![0];
    expect(forged).not.toContain(issued);
    expect(seen).toBe(`mail ${issued}; keep ${forged}`);
  });

  it('a forged placeholder is never replaced, streamed, in Anthropic format and translated', async () => {
    for (const mode of ['same', 'cross'] as const) {
      await start(mode);
      const res = await send('messages', msgs([{ role: 'user', content: `hi ${EMAIL} <EMAIL_1>` }], { stream: true }));
      expect(assembleAnthropicStream(res.text).content).toBe(`echo: hi ${EMAIL} <EMAIL_1>`);
    }
  });

  it('restores reasoning_content and refusal too, whole and streamed (split every 3 characters)', async () => {
    const reasoner = createServer((req, res) => {
      let raw = '';
      req.on('data', (c) => (raw += c));
      req.on('end', () => {
        const placeholder = /<EMAIL_[0-9a-f]{6}>/.exec(raw)?.[0] ?? 'none';
        const body = JSON.parse(raw);
        if (!body.stream) {
          res.writeHead(200, { 'content-type': 'application/json' });
          const message = { role: 'assistant', reasoning_content: `think of ${placeholder}`, content: 'ok', refusal: `not ${placeholder}` };
          res.end(JSON.stringify({ id: 'c1', object: 'chat.completion', created: 1, model: 'r1', choices: [{ index: 0, message, finish_reason: 'stop' }], usage: { prompt_tokens: 5, completion_tokens: 4, total_tokens: 9 } }));
          return;
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const chunk = (delta: object, finish: string | null = null) => `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'r1', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
        const thought = `think of ${placeholder}`;
        let out = '';
        for (let i = 0; i < thought.length; i += 3) out += chunk({ reasoning_content: thought.slice(i, i + 3) });
        res.end(out + chunk({ content: 'ok' }) + chunk({}, 'stop') + 'data: [DONE]\n\n');
      });
    });
    await new Promise<void>((r) => reasoner.listen(0, '127.0.0.1', r));
    try {
      const base = policy('same');
      await h?.close();
      h = await startRouter({ ...base, providers: { ...(base.providers as object), cloud: { type: 'openai', base_url: `http://127.0.0.1:${(reasoner.address() as AddressInfo).port}/v1` } } }, {}, { CLOUD_KEY: 'k' });
      const ask = chat([{ role: 'user', content: `who is ${EMAIL}?` }]);
      const whole = await send('chat', ask);
      expect(whole.json.choices[0].message).toMatchObject({ reasoning_content: `think of ${EMAIL}`, refusal: `not ${EMAIL}` });
      const streamed = await send('chat', { ...ask, stream: true });
      const thought = streamed.text
        .split('\n')
        .filter((l) => l.startsWith('data: {'))
        .map((l) => JSON.parse(l.slice(6)).choices[0]?.delta?.reasoning_content ?? '')
        .join('');
      expect(thought).toBe(`think of ${EMAIL}`);
    } finally {
      await new Promise<void>((r) => reasoner.close(() => r()));
    }
  });

  it('restores placeholders split at every position of a stream', async () => {
    await start('same');
    const ask = `write to ${EMAIL} and ${EMAIL}.`;
    for (const size of [1, 2, 3, 5, 7, 11, 16]) {
      cloud.options.chunkChars = size;
      claude.options.chunkChars = size;
      const o = await send('chat', chat([{ role: 'user', content: ask }], { stream: true }));
      expect(assembleOpenAiStream(o.text).content).toBe(`echo: ${ask}`);
      const a = await send('messages', msgs([{ role: 'user', content: ask }], { stream: true }));
      expect(assembleAnthropicStream(a.text).content).toBe(`echo: ${ask}`);
    }
    cloud.options.chunkChars = undefined;
    claude.options.chunkChars = undefined;
    expect(leaked([cloud, claude], EMAIL)).toBeUndefined();
  });
});
