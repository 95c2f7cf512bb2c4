/**
 * Hybrid routing by default (issue 13 item 8): with a local provider (Ollama / vLLM / NIM answering
 * on loopback) and a cloud key, onboarding offers and picks the `hybrid` profile. Its policy is
 * valid, and the real router on loopback, with a local and a cloud stub, sends personal data and
 * proprietary code to the local one, the rest to the cloud, blocks secrets, and while the local one
 * is down or saturated sends personal data to the cloud redacted (proprietary code: refused).
 */
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadBlueprintSpec, profileNames, profileParts } from '../../src/agent/blueprint-spec.js';
import { detectEnvironment, planOnboarding, profileOptions, type Detectors } from '../../src/agent/onboard.js';
import { validateInferencePolicy } from '../../src/inference/index.js';
import { parsePolicy } from '../../src/policy/index.js';
import { REPO_ROOT } from '../helpers/supervisor.js';
import { post, SANDBOX_TOKEN, startRouter, until, type RouterHarness } from '../inference/harness.js';
import { assembleOpenAiStream, startStubUpstream, type StubUpstream } from '../stubs/upstream.js';

const openclaw = loadBlueprintSpec(join(REPO_ROOT, 'blueprints', 'openclaw'));
const drill = loadBlueprintSpec(join(REPO_ROOT, 'blueprints', 'drill'));
const OLLAMA = 'http://127.0.0.1:11434/api/tags';
const VLLM = 'http://127.0.0.1:8000/v1/models';

function detectors(env: NodeJS.ProcessEnv, up: string[] = []): Detectors {
  return {
    env,
    probe: async (url) => up.includes(url),
    gpus: async () => [{ name: 'NVIDIA H100', memoryMiB: 81559 }],
    memoryBytes: () => 64 * 2 ** 30,
    storedCredentials: () => [],
  };
}

async function plan(env: NodeJS.ProcessEnv, up: string[] = [], profile?: string) {
  const detected = await detectEnvironment(openclaw, detectors(env, up));
  return { detected, plan: planOnboarding(openclaw, detected, profile ? { profile } : {}, REPO_ROOT) };
}

describe('onboarding offers and defaults to hybrid when a local provider and a cloud key both exist', () => {
  it('Ollama + NVIDIA_API_KEY: hybrid, with a valid policy that routes personal data and code locally', async () => {
    const { detected, plan: p } = await plan({ NVIDIA_API_KEY: 'nvapi-x' }, [OLLAMA]);
    const options = profileOptions(openclaw, detected);
    expect(options.map((o) => [o.name, o.available])).toEqual([
      ['hybrid', true],
      ['nvidia-cloud', true],
      ['ollama-local', true],
      ['vllm-local', false],
    ]);
    expect(p.profile).toBe('hybrid');
    expect(p.profileReason).toBe(
      'ollama-local (127.0.0.1:11434 answers) + nvidia-cloud (NVIDIA_API_KEY is set): personal data and proprietary code stay local, the rest goes to the cloud, secrets nowhere',
    );
    // The cloud part's key is the one onboarding stores.
    expect(p.credential).toBe('nvidia');
    expect(p.keyEnv).toBe('NVIDIA_API_KEY');
    const doc = parse(p.policyText);
    expect(doc.inference.providers).toEqual({
      ollama: { type: 'openai', base_url: 'http://127.0.0.1:11434/v1', locality: 'local', model: 'llama3.1:8b', models: ['llama3.1:8b'] },
      nvidia: {
        type: 'openai',
        base_url: 'https://integrate.api.nvidia.com/v1',
        api_key_env: 'NVIDIA_API_KEY',
        credential: 'nvidia',
        locality: 'cloud',
        model: 'nvidia/llama-3.3-nemotron-super-49b-v1',
        models: ['nvidia/llama-3.3-nemotron-super-49b-v1', 'meta/llama-3.1-70b-instruct'],
      },
    });
    expect(doc.inference.hybrid).toEqual({ when_local_down: 'cloud_redacted' });
    const parsed = parsePolicy(p.policyText, 'onboard');
    const config = validateInferencePolicy(parsed.doc.inference);
    expect(config.routes.map((r) => [r.name, r.block ?? r.provider, r.fallback])).toEqual([
      ['secrets-never-leave', true, undefined],
      ['proprietary-local', 'ollama', undefined],
      ['pii-local', 'ollama', 'nvidia'],
      ['default', 'nvidia', 'ollama'],
    ]);
    expect(config.routes[2]!.when.entities).toEqual(expect.arrayContaining(['email', 'phone', 'credit_card', 'us_ssn', 'iban', 'ip_address']));
    expect(config.routes[2]!.when.entities).not.toContain('secret');
  });

  it('vLLM/NIM + key: hybrid over vllm; one side only: that profile; --profile still wins', async () => {
    const vllm = (await plan({ NVIDIA_API_KEY: 'k' }, [VLLM])).plan;
    expect(vllm.profile).toBe('hybrid');
    expect(Object.keys(parse(vllm.policyText).inference.providers)).toEqual(['vllm', 'nvidia']);
    expect((await plan({ NVIDIA_API_KEY: 'k' })).plan.profile).toBe('nvidia-cloud');
    expect((await plan({}, [OLLAMA])).plan.profile).toBe('ollama-local');
    expect((await plan({ NVIDIA_API_KEY: 'k' }, [OLLAMA], 'nvidia-cloud')).plan.profile).toBe('nvidia-cloud');
    const forced = await plan({}, [OLLAMA], 'hybrid');
    expect(forced.plan.profile).toBe('hybrid');
    expect(forced.plan.warnings[0]).toMatch(/^profile hybrid: needs a local and a cloud provider: nvidia-cloud needs NVIDIA_API_KEY/);
    expect(profileOptions(openclaw, forced.detected)[0]).toMatchObject({ name: 'hybrid', available: false });
  });

  it('the supervisor resolves hybrid to the parts the policy names (the drill: both stubs)', () => {
    expect(profileNames(drill.spec)).toEqual(['hybrid', 'stub', 'cloud-stub']);
    expect(profileParts(drill.spec, 'hybrid')!.map(([n]) => n)).toEqual(['stub', 'cloud-stub']);
    const inPolicy = new Set(['vllm', 'nvidia']);
    expect(profileParts(openclaw.spec, 'hybrid', (_n, p) => inPolicy.has(p.provider.name))!.map(([n]) => n)).toEqual(['vllm-local', 'nvidia-cloud']);
    expect(profileParts(openclaw.spec, 'nope')).toBeUndefined();
  });
});

describe('the hybrid policy through the real router, a local and a cloud stub on loopback', () => {
  const EMAIL = 'jane.doe@acme-widgets.io';
  const PHONE = '+1 415 555 0134';
  let local: StubUpstream;
  let cloud: StubUpstream;
  let h: RouterHarness | undefined;

  beforeEach(async () => {
    [local, cloud] = await Promise.all([startStubUpstream(), startStubUpstream()]);
    local.options.reply = (req) => ({ text: `local: ${req.body.messages.at(-1).content}` });
    cloud.options.reply = (req) => ({ text: `cloud: ${req.body.messages.at(-1).content}` });
  });

  afterEach(async () => {
    await h?.close();
    h = undefined;
    await Promise.all([local.close(), cloud.close()]);
  });

  async function start(): Promise<RouterHarness> {
    const { plan: p } = await plan({ NVIDIA_API_KEY: 'nvapi-x' }, [OLLAMA]);
    const inference = parsePolicy(p.policyText, 'onboard').doc.inference as Record<string, any>;
    inference.providers.ollama.base_url = local.openaiBaseUrl;
    inference.providers.nvidia.base_url = cloud.openaiBaseUrl;
    inference.redaction = { markers: { patterns: ['ACME-INTERNAL-[0-9]+'] } };
    h = await startRouter(inference, {}, { NVIDIA_API_KEY: 'nvapi-real' });
    return h;
  }

  const chat = (content: string, more: Record<string, unknown> = {}) => ({ model: 'whatever-the-agent-asks', max_tokens: 32, messages: [{ role: 'user', content }], ...more });
  const dones = () => h!.events.filter((e) => e.kind === 'inference.done') as Array<Record<string, unknown>>;

  it('personal data and proprietary code go local, the rest to the cloud (with its own model and key), secrets nowhere', async () => {
    await start();
    const pii = await post(`${h!.url}/v1/chat/completions`, chat(`mail ${EMAIL} about the renewal`));
    expect(pii.json.choices[0].message.content).toBe(`local: mail ${EMAIL} about the renewal`);
    const code = await post(`${h!.url}/v1/chat/completions`, chat('review ACME-INTERNAL-42 please'));
    expect(code.json.choices[0].message.content).toBe('local: review ACME-INTERNAL-42 please');
    const plain = await post(`${h!.url}/v1/chat/completions`, chat('what is a sandbox?', { stream: true }));
    expect(assembleOpenAiStream(plain.text).content).toBe('cloud: what is a sandbox?');
    const anthropic = await post(`${h!.url}/v1/messages`, chat('and in one word?'), { 'x-api-key': SANDBOX_TOKEN });
    expect(anthropic.json.content[0].text).toBe('cloud: and in one word?');
    const secret = await post(`${h!.url}/v1/chat/completions`, chat('deploy with ghp_' + 'a1B2c3D4e5'.repeat(4)));
    // Refused: as an error, or as an assistant reply that says so.
    expect(secret.status === 403 || secret.headers.get('x-nemoclaw-blocked') === 'blocked_by_policy').toBe(true);

    expect(local.requests.map((r) => r.body.model)).toEqual(['llama3.1:8b', 'llama3.1:8b']);
    expect(cloud.requests.map((r) => r.body.model)).toEqual(['nvidia/llama-3.3-nemotron-super-49b-v1', 'nvidia/llama-3.3-nemotron-super-49b-v1']);
    expect(cloud.requests.every((r) => r.headers.authorization === 'Bearer nvapi-real')).toBe(true);
    expect(cloud.receivedText()).not.toContain(EMAIL);
    expect(cloud.receivedText()).not.toContain('ACME-INTERNAL');
    await until(() => dones().length === 5, 'five calls');
    expect(dones().map((e) => [e.rule, e.locality ?? null, e.outcome])).toEqual([
      ['pii-local', 'local', 'ok'],
      ['proprietary-local', 'local', 'ok'],
      ['default', 'cloud', 'ok'],
      ['default', 'cloud', 'ok'],
      ['secrets-never-leave', null, 'blocked'],
    ]);
  });

  it('local down: personal data goes to the cloud redacted (restored in the answer), proprietary code is refused', async () => {
    await start();
    await local.close();
    const pii = await post(`${h!.url}/v1/chat/completions`, chat(`call ${PHONE} or mail ${EMAIL}`));
    expect(pii.status, pii.text).toBe(200);
    expect(pii.json.choices[0].message.content).toBe(`cloud: call ${PHONE} or mail ${EMAIL}`);
    expect(cloud.receivedText()).not.toContain(EMAIL);
    expect(cloud.receivedText()).not.toContain(PHONE);
    const code = await post(`${h!.url}/v1/chat/completions`, chat('review ACME-INTERNAL-42 please'));
    expect(code.status).toBe(502);
    expect(code.json.error.message).toContain('provider "ollama" unreachable');
    expect(cloud.requests).toHaveLength(1);
    await until(() => dones().length === 2, 'two calls');
    expect(dones()[0]).toMatchObject({ rule: 'pii-local', provider: 'nvidia', fallback_from: 'ollama', redacted_for_fallback: true, redactions: 2 });
    expect(dones()[1]).toMatchObject({ rule: 'proprietary-local', provider: 'ollama', outcome: 'upstream_error' });
  });

  it('local saturated (429): personal data goes to the cloud redacted; cloud down: the rest goes local', async () => {
    await start();
    local.options.reply = () => ({ status: 429 });
    const pii = await post(`${h!.url}/v1/chat/completions`, chat(`mail ${EMAIL}`));
    expect(pii.json.choices[0].message.content).toBe(`cloud: mail ${EMAIL}`);
    expect(cloud.receivedText()).not.toContain(EMAIL);
    local.options.reply = (req) => ({ text: `local: ${req.body.messages.at(-1).content}` });
    await cloud.close();
    const plain = await post(`${h!.url}/v1/chat/completions`, chat('what is a sandbox?'));
    expect(plain.json.choices[0].message.content).toBe('local: what is a sandbox?');
    await until(() => dones().length === 2, 'two calls');
    expect(dones().map((e) => [e.rule, e.provider, e.fallback_from])).toEqual([
      ['pii-local', 'nvidia', 'ollama'],
      ['default', 'ollama', 'nvidia'],
    ]);
  });
});

describe('the Inference pane says where each hybrid call went and why', () => {
  it('local (PII: …), cloud (no sensitive data), cloud, redacted (… down), blocked (secret)', async () => {
    const { routeLabel } = await import('../../components/panes/InferencePane.js');
    expect(routeLabel({ action: 'provider', locality: 'local', rule: 'pii-local', reason: 'entities email', entities: { email: 1 } })).toBe('local (PII: email)');
    expect(routeLabel({ action: 'provider', locality: 'local', rule: 'proprietary-local', reason: 'entities proprietary', entities: { proprietary: 1, email: 1 } })).toBe('local (proprietary code)');
    expect(routeLabel({ action: 'provider', locality: 'cloud', rule: 'default', reason: 'unconditional route', entities: {} })).toBe('cloud (no sensitive data)');
    expect(
      routeLabel({ action: 'provider', locality: 'cloud', provider: 'nvidia', rule: 'pii-local', reason: 'entities email,phone', entities: { email: 1, phone: 1 }, fallback_from: 'ollama', redacted_for_fallback: true }),
    ).toBe('cloud, redacted (ollama down)');
    expect(routeLabel({ action: 'redact_then', locality: 'cloud', rule: 'pii-redacted', reason: 'entities phone', entities: { phone: 1 } })).toBe('cloud, redacted (PII: phone)');
    expect(routeLabel({ action: 'block', rule: 'secrets-never-leave', reason: 'entities secret', entities: { secret: 1 } })).toBe('blocked (secret)');
    expect(routeLabel({ action: 'provider', locality: 'local', provider: 'ollama', outcome: 'blocked', entities: { secret: 1 } })).toBe('blocked (ollama down; secret)');
  });
});
