/**
 * A policy refusal must read as one, not as an auth failure (issue 13 item 7). The default
 * (`inference.blocked_reply: message`) answers with an assistant message carrying the reason, in the
 * caller's wire format, streamed when the caller streams, parsed here by the real OpenAI SDK and a
 * plain Anthropic SSE reader; `error` answers 400 naming the reason. OpenClaw's own reading of
 * both is in test/e2e/openclaw.test.ts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import OpenAI from 'openai';
import { startStubUpstream, type StubUpstream } from '../stubs/upstream.js';
import { post, SANDBOX_TOKEN, startRouter, until, type RouterHarness } from './harness.js';

const SECRET = `ghp_${'Qw3Er5Ty7Ui9Op1As3Df5Gh7Jk9Lz1Xc3Vb5'.slice(0, 36)}`;
let h: RouterHarness | undefined;
let cloud: StubUpstream | undefined;

afterEach(async () => {
  await h?.close();
  await cloud?.close();
  h = undefined;
  cloud = undefined;
});

async function start(extra: Record<string, unknown> = {}): Promise<RouterHarness> {
  cloud = await startStubUpstream({ reply: () => ({ text: 'should never be asked' }) });
  h = await startRouter(
    {
      providers: { cloud: { type: 'openai', base_url: cloud.openaiBaseUrl, api_key_env: 'CLOUD_KEY', locality: 'cloud' } },
      routes: [
        { name: 'no-secrets', when: { entities: ['secret'] }, block: true, message: 'blocked: the request contains a secret; remove it and retry' },
        { name: 'default', provider: 'cloud' },
      ],
      ...extra,
    },
    {},
    { CLOUD_KEY: 'sk-cloud' },
  );
  return h;
}

const REASON = '[nemoclaw-tui privacy router] blocked: the request contains a secret; remove it and retry';

describe('blocked_reply: message (default)', () => {
  it('chat, whole and streamed, through the OpenAI SDK: an ordinary assistant reply with the reason', async () => {
    const r = await start();
    const client = new OpenAI({ baseURL: `${r.url}/v1`, apiKey: SANDBOX_TOKEN, maxRetries: 0 });
    const whole = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: `token ${SECRET}` }] });
    expect(whole.choices[0]!.message.content).toBe(REASON);
    expect(whole.choices[0]!.finish_reason).toBe('stop');
    const stream = await client.chat.completions.create({ model: 'm', stream: true, stream_options: { include_usage: true }, messages: [{ role: 'user', content: `token ${SECRET}` }] });
    let text = '';
    let sawUsage = false;
    for await (const chunk of stream) {
      text += chunk.choices[0]?.delta.content ?? '';
      if (chunk.usage) sawUsage = true;
    }
    expect(text).toBe(REASON);
    expect(sawUsage).toBe(true);
    expect(cloud!.requests).toHaveLength(0);
    await until(() => r.events.filter((e) => e.kind === 'inference.done').length === 2, 'done events');
    expect(r.events.filter((e) => e.kind === 'inference.done').map((e) => [e.status, e.outcome])).toEqual([
      [200, 'blocked'],
      [200, 'blocked'],
    ]);
  });

  it('Anthropic messages, whole and streamed: a text block with the reason, the header names the code', async () => {
    const r = await start();
    const headers = { 'anthropic-version': '2023-06-01', 'x-api-key': SANDBOX_TOKEN };
    const body = { model: 'claude-x', max_tokens: 64, messages: [{ role: 'user', content: `token ${SECRET}` }] };
    const whole = await post(`${r.url}/v1/messages`, body, headers);
    expect(whole.status).toBe(200);
    expect(whole.headers.get('x-nemoclaw-blocked')).toBe('blocked_by_policy');
    expect(whole.json).toMatchObject({ type: 'message', role: 'assistant', content: [{ type: 'text', text: REASON }], stop_reason: 'end_turn' });
    const streamed = await post(`${r.url}/v1/messages`, { ...body, stream: true }, headers);
    expect(streamed.headers.get('content-type')).toContain('text/event-stream');
    const events = streamed.text
      .split('\n\n')
      .filter((b) => b.includes('data: '))
      .map((b) => JSON.parse(b.slice(b.indexOf('data: ') + 6)) as { type: string; delta?: { text?: string } });
    expect(events.map((e) => e.type)).toEqual(['message_start', 'content_block_start', 'content_block_delta', 'content_block_stop', 'message_delta', 'message_stop']);
    expect(events.map((e) => e.delta?.text ?? '').join('')).toBe(REASON);
    expect(cloud!.requests).toHaveLength(0);
  });

  it('text completions have no assistant message: 400 naming the reason', async () => {
    const r = await start();
    const res = await post(`${r.url}/v1/completions`, { model: 'm', prompt: `token ${SECRET}` });
    expect(res.status).toBe(400);
    expect(res.headers.get('x-nemoclaw-blocked')).toBe('blocked_by_policy');
    expect(res.json.error).toMatchObject({ type: 'invalid_request_error', code: 'blocked_by_policy', message: expect.stringContaining('contains a secret') });
  });
});

describe('blocked_reply: error', () => {
  it('400 in the caller\'s error shape (never 401/403, which agents read as an auth failure)', async () => {
    const r = await start({ blocked_reply: 'error' });
    const client = new OpenAI({ baseURL: `${r.url}/v1`, apiKey: SANDBOX_TOKEN, maxRetries: 0 });
    const err = await client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: `token ${SECRET}` }] }).then(
      () => undefined,
      (e: unknown) => e as InstanceType<typeof OpenAI.APIError>,
    );
    expect(err).toBeInstanceOf(OpenAI.BadRequestError);
    expect(err!.code).toBe('blocked_by_policy');
    const anthropic = await post(`${r.url}/v1/messages`, { model: 'c', max_tokens: 8, messages: [{ role: 'user', content: `token ${SECRET}` }] }, { 'anthropic-version': '2023-06-01', 'x-api-key': SANDBOX_TOKEN });
    expect(anthropic.status).toBe(400);
    expect(anthropic.json).toMatchObject({ type: 'error', error: { type: 'invalid_request_error' } });
    expect(cloud!.requests).toHaveLength(0);
  });

  it('a value other than message or error is a policy error', async () => {
    await expect(start({ blocked_reply: 'teapot' })).rejects.toThrow(/blocked_reply/);
  });
});

describe('a secret split across two messages or two tool results (issue 13 item 2)', () => {
  const left = `my token is ${SECRET.slice(0, 18)}`;
  const right = `${SECRET.slice(18)} and thanks`;
  it('is found on their boundary and blocks; each half alone passes', async () => {
    const r = await start();
    const split = await post(`${r.url}/v1/chat/completions`, { model: 'm', messages: [{ role: 'user', content: left }, { role: 'user', content: right }] });
    expect(split.headers.get('x-nemoclaw-blocked'), split.text).toBe('blocked_by_policy');
    const tools = await post(`${r.url}/v1/chat/completions`, {
      model: 'm',
      messages: [
        { role: 'user', content: 'read both files' },
        { role: 'assistant', content: null, tool_calls: [{ id: 'a', type: 'function', function: { name: 'read', arguments: '{"f":"1"}' } }, { id: 'b', type: 'function', function: { name: 'read', arguments: '{"f":"2"}' } }] },
        { role: 'tool', tool_call_id: 'a', content: left },
        { role: 'tool', tool_call_id: 'b', content: right },
      ],
    });
    expect(tools.headers.get('x-nemoclaw-blocked'), tools.text).toBe('blocked_by_policy');
    expect(cloud!.requests).toHaveLength(0);
    for (const half of [left, right]) {
      const alone = await post(`${r.url}/v1/chat/completions`, { model: 'm', messages: [{ role: 'user', content: half }] });
      expect(alone.headers.get('x-nemoclaw-blocked'), half).toBeNull();
    }
    expect(cloud!.requests).toHaveLength(2);
    await until(() => r.events.some((e) => e.kind === 'inference.route' && e.action === 'block'), 'route event');
    expect(JSON.stringify(r.events)).not.toContain(SECRET.slice(0, 18));
  });
});
