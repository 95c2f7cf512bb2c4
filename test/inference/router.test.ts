import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { OVERHEAD_HEADER } from '../../src/inference/router.js';
import {
  assembleAnthropicStream,
  assembleOpenAiStream,
  lastUserText,
  startStubUpstream,
  type StubUpstream,
} from '../stubs/upstream.js';
import { post, SANDBOX_TOKEN, startRouter, until, type RouterHarness, expectPolicyRefusal } from './harness.js';

const CLOUD_KEY = 'sk-cloud-real-key-never-in-sandbox';
const EMAIL = 'jane.doe@acme-widgets.io';
const PHONE = '+1 415 555 0132';

let local: StubUpstream;
let cloud: StubUpstream;
let claude: StubUpstream;
let h: RouterHarness | undefined;
let dir: string;

function policy(extra: Record<string, unknown> = {}): Record<string, unknown> {
  return {
    providers: {
      local: { type: 'openai', base_url: local.openaiBaseUrl, locality: 'local', model: 'local-llama' },
      cloud: { type: 'openai', base_url: cloud.openaiBaseUrl, api_key_env: 'CLOUD_KEY', price: { input_per_mtok: 1, output_per_mtok: 2 } },
      claude: { type: 'anthropic', base_url: claude.url, api_key_env: 'CLOUD_KEY' },
    },
    routes: [
      { name: 'no-secrets', when: { entities: ['secret'] }, block: true },
      { name: 'claude', when: { api: ['anthropic.messages'], entities: ['email', 'phone'] }, redact_then: 'claude' },
      { name: 'claude-default', when: { api: ['anthropic.messages'] }, provider: 'claude' },
      { name: 'cards-stay-home', when: { entities: ['credit_card', 'us_ssn'] }, provider: 'local' },
      { name: 'pii-redacted', when: { entities: ['email', 'phone'] }, redact_then: 'cloud' },
      { name: 'default', provider: 'cloud' },
    ],
    ...extra,
  };
}

async function start(extra: Record<string, unknown> = {}, budgetStateFile?: string): Promise<RouterHarness> {
  h = await startRouter(policy(extra), budgetStateFile ? { budgetStateFile } : {}, { CLOUD_KEY });
  return h;
}

const chat = (content: unknown, more: Record<string, unknown> = {}) => ({
  model: 'gpt-4o',
  messages: [
    { role: 'system', content: 'You are a careful agent.' },
    { role: 'user', content },
  ],
  ...more,
});

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nemoclaw-router-'));
  [local, cloud, claude] = await Promise.all([startStubUpstream(), startStubUpstream(), startStubUpstream()]);
});

afterEach(async () => {
  await h?.close();
  h = undefined;
  await Promise.all([local.close(), cloud.close(), claude.close()]);
  rmSync(dir, { recursive: true, force: true });
});

describe('authentication and validation', () => {
  it('refuses calls without the sandbox token in the caller format, and replaces Authorization upstream', async () => {
    await start();
    const noToken = await fetch(`${h!.url}/v1/chat/completions`, { method: 'POST', body: JSON.stringify(chat('hi')) });
    expect(noToken.status).toBe(401);
    expect((await noToken.json()).error.type).toBe('authentication_error');
    const anth = await fetch(`${h!.url}/v1/messages`, { method: 'POST', headers: { 'x-api-key': 'wrong' }, body: '{}' });
    expect(anth.status).toBe(401);
    expect(await anth.json()).toMatchObject({ type: 'error', error: { type: 'authentication_error' } });

    const ok = await post(`${h!.url}/v1/chat/completions`, chat('hello'));
    expect(ok.status).toBe(200);
    expect(cloud.requests).toHaveLength(1);
    expect(cloud.requests[0]!.headers.authorization).toBe(`Bearer ${CLOUD_KEY}`);
    expect(cloud.receivedText()).not.toContain(SANDBOX_TOKEN);
  });

  it('answers malformed bodies with 400 in the caller format and reaches no provider', async () => {
    await start();
    const notJson = await post(`${h!.url}/v1/chat/completions`, '{nope');
    expect(notJson.status).toBe(400);
    expect(notJson.json.error.type).toBe('invalid_request_error');
    const noMessages = await post(`${h!.url}/v1/chat/completions`, { model: 'x', messages: [] });
    expect(noMessages.status).toBe(400);
    expect(noMessages.json.error.message).toContain('messages');
    const anth = await post(`${h!.url}/v1/messages`, { model: 'claude', messages: [{ role: 'user', content: 'hi' }] }, { 'x-api-key': SANDBOX_TOKEN });
    expect(anth.status).toBe(400);
    expect(anth.json).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    expect(anth.json.error.message).toContain('max_tokens');
    expect(cloud.requests.length + claude.requests.length + local.requests.length).toBe(0);
  });
});

describe('wire formats', () => {
  it('relays OpenAI chat completions, streaming and not, with content parts and an overhead header', async () => {
    await start();
    const whole = await post(`${h!.url}/v1/chat/completions`, chat([{ type: 'text', text: 'part one' }, { type: 'text', text: ' two' }]));
    expect(whole.status).toBe(200);
    expect(whole.json.choices[0].message.content).toBe('echo: part one two');
    expect(Number(whole.headers.get(OVERHEAD_HEADER))).toBeGreaterThanOrEqual(0);

    const streamed = await post(`${h!.url}/v1/chat/completions`, chat('stream please', { stream: true }));
    expect(streamed.headers.get('content-type')).toContain('text/event-stream');
    const s = assembleOpenAiStream(streamed.text);
    expect(s.content).toBe('echo: stream please');
    expect(s.done).toBe(true);
    // The router asks the provider for usage, but does not show it to a caller that did not ask.
    expect(cloud.requests[1]!.body.stream_options).toEqual({ include_usage: true });
    expect(s.usage).toBeUndefined();
    const withUsage = assembleOpenAiStream((await post(`${h!.url}/v1/chat/completions`, chat('u', { stream: true, stream_options: { include_usage: true } }))).text);
    expect(withUsage.usage.completion_tokens).toBeGreaterThan(0);
  });

  it('relays completions, embeddings and lists models', async () => {
    await start();
    const c = await post(`${h!.url}/v1/completions`, { model: 'm', prompt: 'complete me' });
    expect(c.json.choices[0].text).toBe('echo: complete me');
    cloud.options.reply = () => ({ text: 'done.' });
    const cs = assembleOpenAiStream((await post(`${h!.url}/v1/completions`, { model: 'm', prompt: 'x', stream: true })).text);
    expect(cs.content).toBe('done.');
    const e = await post(`${h!.url}/v1/embeddings`, { model: 'emb', input: ['a', 'b'] });
    expect(e.json.data).toHaveLength(2);
    const models = await fetch(`${h!.url}/v1/models`, { headers: { authorization: `Bearer ${SANDBOX_TOKEN}` } });
    const ids = (await models.json()).data.map((m: { id: string }) => m.id);
    expect(ids).toEqual(expect.arrayContaining(['local-llama', 'cloud', 'claude']));
  });

  it('relays Anthropic messages, streaming and not', async () => {
    await start();
    const headers = { 'x-api-key': SANDBOX_TOKEN, authorization: '', 'anthropic-version': '2023-06-01' };
    const body = { model: 'claude-sonnet', max_tokens: 100, system: 'be brief', messages: [{ role: 'user', content: 'hello claude' }] };
    const whole = await post(`${h!.url}/v1/messages`, body, headers);
    expect(whole.status).toBe(200);
    expect(whole.json.content[0].text).toBe('echo: hello claude');
    expect(claude.requests[0]!.headers['x-api-key']).toBe(CLOUD_KEY);
    const streamed = assembleAnthropicStream((await post(`${h!.url}/v1/messages`, { ...body, stream: true }, headers)).text);
    expect(streamed.content).toBe('echo: hello claude');
    expect(streamed.stopped).toBe(true);
    expect(streamed.usage.output_tokens).toBeGreaterThan(0);
  });
});

describe('forwarding the caller\'s bytes', () => {
  it('sends an unchanged body upstream byte for byte (adding only stream_options to a stream)', async () => {
    await start();
    const text = `{ "messages" : [ {"role":"user","content":"hi\\u0021 there"} ],\n  "model":"gpt-4o" }`;
    expect((await post(`${h!.url}/v1/chat/completions`, text)).status).toBe(200);
    expect(cloud.requests[0]!.raw).toBe(text);
    const streamed = `{"model":"gpt-4o","stream":true,"messages":[{"role":"user","content":"yo"}]}`;
    await post(`${h!.url}/v1/chat/completions`, streamed);
    expect(cloud.requests[1]!.raw).toBe(`${streamed.slice(0, -1)},"stream_options":{"include_usage":true}}`);
  });

  it('serialises again when a key repeats, so the provider reads only what was classified', async () => {
    await start();
    for (const key of ['messages', 'messag\\u0065s']) {
      const text = `{"model":"gpt-4o","messages":[{"role":"user","content":"mail ${EMAIL} now"}],"${key}":[{"role":"user","content":"hello"}]}`;
      const res = await post(`${h!.url}/v1/chat/completions`, text);
      expect(res.status).toBe(200);
    }
    expect(cloud.requests).toHaveLength(2);
    expect(cloud.receivedText()).not.toContain(EMAIL);
    expect(cloud.requests.map((r) => lastUserText(r.body))).toEqual(['hello', 'hello']);
  });

  it('serialises again when the body is not valid UTF-8', async () => {
    await start();
    const bytes = Buffer.concat([Buffer.from('{"model":"gpt-4o","messages":[{"role":"user","content":"a'), Buffer.from([0xc0, 0x80]), Buffer.from('b"}]}')]);
    const res = await fetch(`${h!.url}/v1/chat/completions`, { method: 'POST', headers: { authorization: `Bearer ${SANDBOX_TOKEN}` }, body: bytes });
    expect(res.status).toBe(200);
    // Forwarded as is, the provider would get the 2 invalid bytes; serialised again, valid UTF-8 only.
    const received = cloud.requests[0]!;
    expect(Number(received.headers['content-length'])).toBe(Buffer.byteLength(received.raw));
    expect(Number(received.headers['content-length'])).not.toBe(bytes.length);
  });
});

describe('routing and redaction', () => {
  it('routes by detected entity: cards stay local, plain prompts go to the cloud', async () => {
    await start();
    await post(`${h!.url}/v1/chat/completions`, chat('charge card 4111 1111 1111 1111'));
    await post(`${h!.url}/v1/chat/completions`, chat('what is 2+2?'));
    expect(local.requests).toHaveLength(1);
    expect(local.requests[0]!.body.model).toBe('local-llama');
    expect(cloud.requests).toHaveLength(1);
    expect(cloud.receivedText()).not.toContain('4111');
    await until(() => h!.events.filter((e) => e.kind === 'inference.done').length === 2, 'two done events');
    const routes = h!.events.filter((e) => e.kind === 'inference.route');
    expect(routes.map((e) => [e.rule, e.provider])).toEqual([['cards-stay-home', 'local'], ['default', 'cloud']]);
    expect(routes[0]).toMatchObject({ entities: { credit_card: 1 }, requested_model: 'gpt-4o', model: 'local-llama', locality: 'local' });
    expect(routes[0]!.reason).toContain('credit_card');
    const done = h!.events.find((e) => e.kind === 'inference.done')!;
    expect(done).toMatchObject({ status: 200, outcome: 'ok', provider: 'local', tokens_reported: true });
    for (const field of ['estimated_prompt_tokens', 'prompt_tokens', 'completion_tokens', 'ttft_ms', 'total_ms', 'overhead_ms', 'cost_usd']) {
      expect(typeof done[field], field).toBe('number');
    }
    expect(JSON.stringify(h!.events)).not.toContain('4111');
  });

  it('uses traceparent as the call id', async () => {
    await start();
    await post(`${h!.url}/v1/chat/completions`, chat('x'), { traceparent: '00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01' });
    await until(() => h!.events.some((e) => e.kind === 'inference.done'), 'done');
    expect(h!.events.filter((e) => e.id === '4bf92f3577b34da6a3ce929d0e0e4736' && e.kind.startsWith('inference.')).map((e) => e.kind)).toEqual(['inference.route', 'inference.done']);
  });

  it('never lets a redacted value reach the cloud, and restores it in a streamed reply and tool-call arguments', async () => {
    await start();
    cloud.options.reply = (req) => {
      const seen = lastUserText(req.body);
      const email = /<EMAIL_[0-9a-f]{6}>/.exec(seen)?.[0] ?? 'none';
      const phone = /<PHONE_[0-9a-f]{6}>/.exec(seen)?.[0] ?? 'none';
      return { text: `I will write to ${email} and call ${phone}.`, toolCalls: [{ name: 'send_mail', arguments: JSON.stringify({ to: email, cc: [email], phone }) }] };
    };
    cloud.options.chunkChars = 3;
    const ask = `Email ${EMAIL} and call ${PHONE}; ${EMAIL} is the boss.`;
    const streamed = assembleOpenAiStream((await post(`${h!.url}/v1/chat/completions`, chat(ask, { stream: true }))).text);
    expect(cloud.receivedText()).not.toContain(EMAIL);
    expect(cloud.receivedText()).not.toContain('555 0132');
    expect(lastUserText(cloud.requests[0]!.body)).toMatch(/^Email (<EMAIL_[0-9a-f]{6}>) and call <PHONE_[0-9a-f]{6}>; \1 is the boss\.$/);
    expect(streamed.content).toBe(`I will write to ${EMAIL} and call ${PHONE}.`);
    expect(JSON.parse(streamed.toolArgs[0]!)).toEqual({ to: EMAIL, cc: [EMAIL], phone: PHONE });

    const whole = await post(`${h!.url}/v1/chat/completions`, chat(ask));
    expect(whole.json.choices[0].message.content).toBe(`I will write to ${EMAIL} and call ${PHONE}.`);
    expect(JSON.parse(whole.json.choices[0].message.tool_calls[0].function.arguments).to).toBe(EMAIL);
    expect(cloud.receivedText()).not.toContain(EMAIL);
    await until(() => h!.events.filter((e) => e.kind === 'inference.done').length === 2, 'done');
    const route = h!.events.find((e) => e.kind === 'inference.route')!;
    expect(route).toMatchObject({ action: 'redact_then', redactions: 2, entities: { email: 2, phone: 1 } });
    expect(JSON.stringify(h!.events)).not.toContain(EMAIL);
  });

  it('redacts earlier assistant turns and tool results too, and restores Anthropic tool_use input while streaming', async () => {
    await start();
    claude.options.reply = (req) => {
      const all = JSON.stringify(req.body);
      const email = /<EMAIL_[0-9a-f]{6}>/.exec(all)?.[0] ?? 'none';
      return { text: `ok ${email}`, toolCalls: [{ name: 'lookup', arguments: JSON.stringify({ who: email }) }] };
    };
    const body = {
      model: 'claude-sonnet',
      max_tokens: 100,
      stream: true,
      messages: [
        { role: 'user', content: 'who is on call?' },
        { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'oncall', input: { q: 'today' } }] },
        { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: `on call: ${EMAIL}` }] },
      ],
    };
    const res = await post(`${h!.url}/v1/messages`, body, { 'x-api-key': SANDBOX_TOKEN });
    const s = assembleAnthropicStream(res.text);
    expect(claude.receivedText()).not.toContain(EMAIL);
    expect(s.content).toBe(`ok ${EMAIL}`);
    expect(JSON.parse(s.toolInputs[0]!)).toEqual({ who: EMAIL });
  });

  it('blocks a request carrying a secret before any provider sees it', async () => {
    await start();
    const res = await post(`${h!.url}/v1/chat/completions`, chat('deploy with token ghp_' + 'a1B2c3D4e5'.repeat(4)));
    // Answered as an assistant message carrying the reason (inference.blocked_reply: message): a 403
    // reads as an auth failure to agents (OpenClaw disables the provider for a minute).
    expectPolicyRefusal(res, 'blocked_by_policy');
    expect(res.json.choices[0].message.content).toMatch(/^\[nemoclaw-tui privacy router\] blocked by inference route "no-secrets"/);
    expect(local.requests.length + cloud.requests.length).toBe(0);
    await until(() => h!.events.some((e) => e.kind === 'inference.done'), 'done');
    expect(h!.events.map((e) => [e.kind, e.outcome ?? e.action])).toEqual([['inference.route', 'block'], ['inference.done', 'blocked']]);
  });

  it('never falls back from a local route to the cloud for a sensitive request', async () => {
    await local.close();
    await start({
      routes: [
        { name: 'cards', when: { entities: ['credit_card'] }, provider: 'local' },
        { name: 'other', provider: 'local', fallback: 'cloud' },
      ],
    });
    const sensitive = await post(`${h!.url}/v1/chat/completions`, chat('card 4111 1111 1111 1111'));
    expect(sensitive.status).toBe(502);
    expect(sensitive.json.error.message).toContain('local');
    expect(cloud.requests).toHaveLength(0);
    const plain = await post(`${h!.url}/v1/chat/completions`, chat('just chat'));
    expect(plain.status).toBe(200);
    expect(cloud.requests).toHaveLength(1);
    await until(() => h!.events.filter((e) => e.kind === 'inference.done').length === 2, 'done');
    expect(h!.events.filter((e) => e.kind === 'inference.done').map((e) => e.fallback_from)).toEqual([undefined, 'local']);
  });

  it('keeps the previous configuration when a new inference section is invalid', async () => {
    await start();
    expect(() => h!.router.setPolicy({ routes: [{ provider: 'ghost' }] })).toThrow(/inference\.routes\[0\]\.provider/);
    const res = await post(`${h!.url}/v1/chat/completions`, chat('still routed'));
    expect(res.status).toBe(200);
    expect(cloud.requests).toHaveLength(1);
  });
});

describe('budgets', () => {
  it('cuts a stream when the hourly token cap runs out, answers 402 afterwards, and remembers it across a restart', async () => {
    const file = join(dir, 'budget.json');
    await start({ budgets: { hour: { tokens: 400 } } }, file);
    cloud.options.reply = () => ({ text: 'word '.repeat(600) });
    cloud.options.chunkChars = 10;
    const res = await post(`${h!.url}/v1/chat/completions`, chat('write a long essay', { stream: true }));
    expect(res.status).toBe(200);
    const s = assembleOpenAiStream(res.text);
    expect(s.errors[0]).toMatchObject({ code: 'budget_exceeded' });
    expect(s.done).toBe(false);
    expect(s.content.length).toBeLessThan('word '.repeat(600).length);
    await until(() => h!.events.some((e) => e.kind === 'inference.done'), 'done');
    expect(h!.events.find((e) => e.kind === 'budget.exceeded')).toMatchObject({ phase: 'stream', scope: 'hour', unit: 'tokens', cap: 400 });
    expect(h!.events.find((e) => e.kind === 'inference.done')).toMatchObject({ outcome: 'budget_cut' });

    const after = await post(`${h!.url}/v1/chat/completions`, chat('one more?'));
    expect(after.status).toBe(402);
    expect(after.json.error.message).toContain('hourly cap of 400 tokens');
    expect(cloud.requests).toHaveLength(1);

    await h!.close();
    await start({ budgets: { hour: { tokens: 400 } } }, file);
    const restarted = await post(`${h!.url}/v1/chat/completions`, chat('after restart?'));
    expect(restarted.status).toBe(402);
    expect(h!.router.budget().hour.used.tokens).toBeGreaterThan(400);

    // The operator raises the cap at run time; the override also survives a restart.
    h!.router.setBudget('hour', { tokens: 100_000 });
    expect((await post(`${h!.url}/v1/chat/completions`, chat('now?'))).status).toBe(200);
    await h!.close();
    await start({ budgets: { hour: { tokens: 400 } } }, file);
    expect(h!.router.budget().hour.caps.tokens).toBe(100_000);
  });

  it('refuses a request whose prompt alone exceeds the per-request cap, in Anthropic format too', async () => {
    await start({ budgets: { request: { tokens: 50 } } });
    const big = 'lorem ipsum dolor sit amet '.repeat(50);
    const res = await post(`${h!.url}/v1/messages`, { model: 'c', max_tokens: 10, messages: [{ role: 'user', content: big }] }, { 'x-api-key': SANDBOX_TOKEN });
    expect(res.status).toBe(402);
    expect(res.json).toMatchObject({ type: 'error', error: { type: 'billing_error' } });
    expect(claude.requests).toHaveLength(0);
  });

  it('tracks USD at per-model prices and emits budget updates', async () => {
    await start({ budgets: { day: { usd: 10 } } });
    cloud.options.reply = () => ({ text: 'x', usage: { prompt: 1_000_000, completion: 500_000 } });
    await post(`${h!.url}/v1/chat/completions`, chat('price me'));
    await until(() => h!.events.some((e) => e.kind === 'inference.done'), 'done');
    expect(h!.events.find((e) => e.kind === 'inference.done')!.cost_usd).toBe(2);
    expect(h!.router.budget().day.used.usd).toBe(2);
    expect(h!.events.some((e) => e.kind === 'budget.update')).toBe(true);
  });

  it('answers 429 with Retry-After for soft rate limits only', async () => {
    await start({ rate_limits: { requests_per_minute: 1 } });
    expect((await post(`${h!.url}/v1/chat/completions`, chat('a'))).status).toBe(200);
    const limited = await post(`${h!.url}/v1/chat/completions`, chat('b'));
    expect(limited.status).toBe(429);
    expect(Number(limited.headers.get('retry-after'))).toBeGreaterThan(0);
  });
});

describe('the shipped baseline policy', () => {
  it('blocks secrets, keeps personal data local and sends the rest to NVIDIA with the real key', async () => {
    const { readFileSync } = await import('node:fs');
    const { parse } = await import('yaml');
    const doc = parse(readFileSync(new URL('../../policies/openclaw-sandbox.yaml', import.meta.url), 'utf8'));
    doc.inference.providers.local.base_url = local.openaiBaseUrl;
    doc.inference.providers.nvidia.base_url = cloud.openaiBaseUrl;
    h = await startRouter(doc.inference, {}, { NVIDIA_API_KEY: 'nvapi-real-key' });
    const secret = await post(`${h.url}/v1/chat/completions`, chat('use key ghp_' + 'Zz9Yy8Xx7W'.repeat(4)));
    expectPolicyRefusal(secret, 'blocked_by_policy');
    expect(secret.text).toContain('contains a secret');
    const personal = await post(`${h.url}/v1/chat/completions`, chat(`mail ${EMAIL} the report`));
    expect(personal.status).toBe(200);
    const plain = await post(`${h.url}/v1/chat/completions`, chat('what is a monad?'));
    expect(plain.status).toBe(200);
    expect(local.requests).toHaveLength(1);
    expect(local.receivedText()).toContain(EMAIL);
    expect(cloud.requests).toHaveLength(1);
    expect(cloud.receivedText()).not.toContain(EMAIL);
    expect(cloud.requests[0]!.headers.authorization).toBe('Bearer nvapi-real-key');
    await until(() => h!.events.filter((e) => e.kind === 'inference.done').length === 3, 'three calls');
    expect(h.events.filter((e) => e.kind === 'inference.route').map((e) => e.rule)).toEqual(['no-secrets', 'private-stays-local', 'default']);
    expect(h.events.filter((e) => e.kind === 'inference.done').at(-1)!.cost_usd).toBeGreaterThan(0);
  });
});
