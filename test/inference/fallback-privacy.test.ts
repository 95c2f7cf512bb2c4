/**
 * Fallback never undoes privacy (issue 13 item 5): a route whose provider is local and whose
 * fallback is a cloud provider, with the local provider down (a closed port) or saturated (429),
 * sends the body to the cloud only with the policy's cloud redaction (placeholders restored in the
 * answer), and never a secret. Through the real router on loopback, both wire formats.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { assembleAnthropicStream, assembleOpenAiStream, startStubUpstream, type StubUpstream } from '../stubs/upstream.js';
import { post, SANDBOX_TOKEN, startRouter, until, type RouterHarness } from './harness.js';

// Not a documentation domain (example.com addresses are placeholders the detector leaves alone).
const EMAIL = 'jane.doe@acme-widgets.io';
const PHONE = '+1 415 555 0132';
const SECRET = 'ghp_' + 'a1B2c3D4e5'.repeat(4);
const PII_PROMPT = `mail ${EMAIL} or call ${PHONE} about the invoice`;

let local: StubUpstream;
let cloud: StubUpstream;
let claude: StubUpstream;
let h: RouterHarness | undefined;

function providers(): Record<string, unknown> {
  return {
    local: { type: 'openai', base_url: local.openaiBaseUrl, locality: 'local', model: 'local-llama' },
    cloud: { type: 'openai', base_url: cloud.openaiBaseUrl, locality: 'cloud', model: 'cloud-model', api_key_env: 'CLOUD_KEY' },
    claude: { type: 'anthropic', base_url: claude.url, locality: 'cloud', model: 'claude-x', api_key_env: 'CLOUD_KEY' },
  };
}

async function start(inference: Record<string, unknown>): Promise<RouterHarness> {
  h = await startRouter({ providers: providers(), ...inference }, {}, { CLOUD_KEY: 'sk-cloud' });
  return h;
}

const chat = (content: string, more: Record<string, unknown> = {}) => ({ model: 'any', messages: [{ role: 'user', content }], ...more });
const messages = (content: string, more: Record<string, unknown> = {}) => ({ model: 'any', max_tokens: 64, messages: [{ role: 'user', content }], ...more });

/**
 * A policy refusal: an error (403 blocked_by_policy), or an assistant reply that says so (HTTP 200
 * with `x-nemoclaw-blocked: blocked_by_policy`) when the router answers refusals as messages.
 */
function expectRefused(res: { status: number; headers: Headers; text: string }, why: string): void {
  if (res.status === 200) expect(res.headers.get('x-nemoclaw-blocked')).toBe('blocked_by_policy');
  else {
    expect(res.status).toBe(403);
    expect(res.text).toContain('blocked_by_policy');
  }
  expect(res.text).toContain(why);
}

async function doneEvent(): Promise<Record<string, unknown>> {
  await until(() => h!.events.some((e) => e.kind === 'inference.done'), 'inference.done');
  return h!.events.find((e) => e.kind === 'inference.done') as Record<string, unknown>;
}

beforeEach(async () => {
  [local, cloud, claude] = await Promise.all([startStubUpstream(), startStubUpstream(), startStubUpstream()]);
});

afterEach(async () => {
  await h?.close();
  h = undefined;
  await Promise.all([local.close(), cloud.close(), claude.close()]);
});

describe('a local route whose fallback is a cloud provider, local down', () => {
  beforeEach(async () => {
    await local.close(); // a closed port: ECONNREFUSED
  });

  it('OpenAI chat: the PII reaches the cloud stub redacted and comes back restored', async () => {
    await start({ routes: [{ name: 'default', provider: 'local', fallback: 'cloud' }] });
    const res = await post(`${h!.url}/v1/chat/completions`, chat(PII_PROMPT));
    expect(res.status, res.text).toBe(200);
    expect(cloud.requests).toHaveLength(1);
    expect(cloud.receivedText()).not.toContain(EMAIL);
    expect(cloud.receivedText()).not.toContain(PHONE);
    expect(cloud.requests[0]!.body.messages[0].content).toMatch(/^mail <EMAIL_\w+> or call <PHONE_\w+> about/);
    expect(res.json.choices[0].message.content).toBe(`echo: ${PII_PROMPT}`);
    const done = await doneEvent();
    expect(done).toMatchObject({ provider: 'cloud', locality: 'cloud', fallback_from: 'local', redacted_for_fallback: true, outcome: 'ok' });
    expect(done.redactions).toBe(2);
  });

  it('OpenAI chat, streamed: placeholders split across chunks are restored', async () => {
    await start({ routes: [{ name: 'default', provider: 'local', fallback: 'cloud' }] });
    const res = await post(`${h!.url}/v1/chat/completions`, chat(PII_PROMPT, { stream: true }));
    expect(res.status).toBe(200);
    expect(cloud.receivedText()).not.toContain(EMAIL);
    expect(assembleOpenAiStream(res.text).content).toBe(`echo: ${PII_PROMPT}`);
    expect(await doneEvent()).toMatchObject({ fallback_from: 'local', redacted_for_fallback: true, redactions: 2 });
  });

  it('Anthropic messages, to an Anthropic cloud and translated to an OpenAI cloud, whole and streamed', async () => {
    await start({
      routes: [
        { name: 'to-claude', when: { model: ['claude-*'] }, provider: 'local', fallback: 'claude' },
        { name: 'default', provider: 'local', fallback: 'cloud' },
      ],
    });
    const headers = { 'x-api-key': SANDBOX_TOKEN, 'anthropic-version': '2023-06-01' };
    const direct = await post(`${h!.url}/v1/messages`, messages(PII_PROMPT, { model: 'claude-3' }), headers);
    expect(direct.status, direct.text).toBe(200);
    expect(direct.json.content[0].text).toBe(`echo: ${PII_PROMPT}`);
    const streamed = await post(`${h!.url}/v1/messages`, messages(PII_PROMPT, { model: 'claude-3', stream: true }), headers);
    expect(assembleAnthropicStream(streamed.text).content).toBe(`echo: ${PII_PROMPT}`);
    const translated = await post(`${h!.url}/v1/messages`, messages(PII_PROMPT), headers);
    expect(translated.status, translated.text).toBe(200);
    expect(translated.json.content[0].text).toBe(`echo: ${PII_PROMPT}`);
    expect(claude.requests).toHaveLength(2);
    expect(cloud.requests).toHaveLength(1);
    for (const stub of [claude, cloud]) {
      expect(stub.receivedText()).not.toContain(EMAIL);
      expect(stub.receivedText()).toMatch(/<EMAIL_\w+>/);
    }
    await until(() => h!.events.filter((e) => e.kind === 'inference.done').length === 3, 'three calls');
    const dones = h!.events.filter((e) => e.kind === 'inference.done');
    expect(dones.map((e) => [e.provider, e.fallback_from, e.redacted_for_fallback, e.redactions])).toEqual([
      ['claude', 'local', true, 2],
      ['claude', 'local', true, 2],
      ['cloud', 'local', true, 2],
    ]);
    expect(dones[2]!.translated).toBe('anthropic->openai');
  });

  it('a secret is blocked: no byte reaches the cloud stub (both wire formats)', async () => {
    await start({ routes: [{ name: 'default', provider: 'local', fallback: 'cloud' }] });
    const openai = await post(`${h!.url}/v1/chat/completions`, chat(`deploy with ${SECRET}`));
    expectRefused(openai, 'carries a secret');
    const anthropic = await post(`${h!.url}/v1/messages`, messages(`deploy with ${SECRET}`, { stream: true }), { 'x-api-key': SANDBOX_TOKEN });
    expectRefused(anthropic, 'carries a secret');
    expect(cloud.requests).toHaveLength(0);
    expect(claude.requests).toHaveLength(0);
    await until(() => h!.events.filter((e) => e.kind === 'inference.done').length === 2, 'two calls');
    for (const done of h!.events.filter((e) => e.kind === 'inference.done')) {
      expect(done).toMatchObject({ outcome: 'blocked', provider: 'local' });
      expect(String(done.error)).toContain('no fallback to cloud provider "cloud": the request carries a secret');
    }
  });

  it('a plain request falls back as before (nothing to redact)', async () => {
    await start({ routes: [{ name: 'default', provider: 'local', fallback: 'cloud' }] });
    const res = await post(`${h!.url}/v1/chat/completions`, chat('just chat'));
    expect(res.status).toBe(200);
    expect(cloud.requests[0]!.body.messages[0].content).toBe('just chat');
    expect(await doneEvent()).toMatchObject({ fallback_from: 'local', redacted_for_fallback: true, redactions: 0 });
  });

  it('a sensitive local route: refused by default, redacted with hybrid.when_local_down: cloud_redacted', async () => {
    const routes = [
      { name: 'no-secrets', when: { entities: ['secret'] }, block: true },
      { name: 'pii-local', when: { entities: ['email', 'phone'] }, provider: 'local', fallback: 'cloud' },
      { name: 'default', provider: 'cloud' },
    ];
    await expect(start({ routes })).rejects.toThrow(/inference\.routes\[1\]\.fallback: no cloud fallback here.*when_local_down: cloud_redacted/);
    await start({ routes, hybrid: { when_local_down: 'cloud_redacted' } });
    const res = await post(`${h!.url}/v1/chat/completions`, chat(PII_PROMPT));
    expect(res.status).toBe(200);
    expect(res.json.choices[0].message.content).toBe(`echo: ${PII_PROMPT}`);
    expect(cloud.receivedText()).not.toContain(EMAIL);
    expect(await doneEvent()).toMatchObject({ rule: 'pii-local', fallback_from: 'local', redacted_for_fallback: true, redactions: 2 });
  });

  it('a matched kind the redaction does not cover stays local: the call fails, the cloud sees nothing', async () => {
    await start({
      hybrid: { when_local_down: 'cloud_redacted' },
      redaction: { entities: ['email'] },
      routes: [{ name: 'pii-local', when: { entities: ['email', 'phone'] }, provider: 'local', fallback: 'cloud' }],
    });
    const res = await post(`${h!.url}/v1/chat/completions`, chat(PII_PROMPT));
    expect(res.status).toBe(502);
    expect(res.json.error.message).toContain('provider "local" unreachable');
    expect(cloud.requests).toHaveLength(0);
    const done = await doneEvent();
    expect(String(done.error)).toContain('the route matched phone, which inference.redaction.entities does not redact');
    expect(done.fallback_from).toBeUndefined();
  });
});

describe('inference.hybrid.when_local_down', () => {
  it('is cloud_redacted or refuse (default), named when wrong', async () => {
    const { validateInferencePolicy } = await import('../../src/inference/schema.js');
    expect(validateInferencePolicy({}).hybrid).toEqual({ when_local_down: 'refuse' });
    expect(() => validateInferencePolicy({ hybrid: { when_local_down: 'maybe' } })).toThrow(/inference\.hybrid\.when_local_down: .*\(got "maybe"\)/);
    expect(() => validateInferencePolicy({ hybrid: { when_down: 'refuse' } })).toThrow(/inference\.hybrid/);
  });
});

describe('a saturated local provider (429)', () => {
  it('falls back to the cloud redacted; without a fallback the 429 reaches the caller', async () => {
    local.options.reply = () => ({ status: 429 });
    await start({
      routes: [
        { name: 'no-fallback', when: { model: ['pinned'] }, provider: 'local' },
        { name: 'default', provider: 'local', fallback: 'cloud' },
      ],
    });
    const pinned = await post(`${h!.url}/v1/chat/completions`, chat(PII_PROMPT, { model: 'pinned' }));
    expect(pinned.status).toBe(429);
    expect(cloud.requests).toHaveLength(0);
    const res = await post(`${h!.url}/v1/chat/completions`, chat(PII_PROMPT));
    expect(res.status).toBe(200);
    expect(local.requests).toHaveLength(2);
    expect(cloud.requests).toHaveLength(1);
    expect(cloud.receivedText()).not.toContain(PHONE);
    expect(res.json.choices[0].message.content).toBe(`echo: ${PII_PROMPT}`);
  });
});
