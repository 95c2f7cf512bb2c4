import { mkdtempSync, readFileSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { loadBlueprintSpec } from '../../src/agent/blueprint-spec.js';
import {
  detectEnvironment,
  isLoopbackUrl,
  planOnboarding,
  readCredentials,
  storeCredential,
  systemDetectors,
  type Detectors,
} from '../../src/agent/onboard.js';
import { parsePolicy } from '../../src/policy/index.js';
import { validateInferencePolicy } from '../../src/inference/index.js';
import { REPO_ROOT } from '../helpers/supervisor.js';

const openclaw = loadBlueprintSpec(join(REPO_ROOT, 'blueprints', 'openclaw'));
const drill = loadBlueprintSpec(join(REPO_ROOT, 'blueprints', 'drill'));

function detectors(over: Partial<Detectors> & { up?: string[] } = {}): Detectors & { probed: string[] } {
  const probed: string[] = [];
  return {
    env: {},
    probe: async (url) => {
      probed.push(url);
      return (over.up ?? []).includes(url);
    },
    gpus: async () => [],
    memoryBytes: () => 24 * 2 ** 30,
    storedCredentials: () => [],
    ...over,
    probed,
  };
}

describe('onboarding', () => {
  it('detects a key in the environment, local servers by loopback probes, GPUs and memory', async () => {
    const d = detectors({
      env: { NVIDIA_API_KEY: 'nvapi-x' },
      up: ['http://127.0.0.1:11434/api/tags'],
      gpus: async () => [{ name: 'NVIDIA H100', memoryMiB: 81559 }],
    });
    const env = await detectEnvironment(openclaw, d);
    expect(env.keysInEnv).toEqual(['NVIDIA_API_KEY']);
    expect(env.services).toEqual({ 'http://127.0.0.1:11434/api/tags': true, 'http://127.0.0.1:8000/v1/models': false });
    expect(d.probed.every(isLoopbackUrl)).toBe(true);
    expect(env.gpus).toEqual([{ name: 'NVIDIA H100', memoryMiB: 81559 }]);
    expect(isLoopbackUrl('http://10.0.0.1:11434/')).toBe(false);
  });

  it('prefers the default profile when available, else the first available one, and writes a policy the router accepts', async () => {
    const withKey = planOnboarding(openclaw, await detectEnvironment(openclaw, detectors({ env: { NVIDIA_API_KEY: 'k' } })), {}, REPO_ROOT);
    expect(withKey.profile).toBe('nvidia-cloud');
    expect(withKey.credential).toBe('nvidia');
    const ollama = planOnboarding(openclaw, await detectEnvironment(openclaw, detectors({ up: ['http://127.0.0.1:11434/api/tags'] })), {}, REPO_ROOT);
    expect(ollama.profile).toBe('ollama-local');
    expect(ollama.profileReason).toBe('127.0.0.1:11434 answers');
    const doc = parse(ollama.policyText);
    expect(doc.inference.providers).toEqual({
      ollama: { type: 'openai', base_url: 'http://127.0.0.1:11434/v1', locality: 'local', models: ['llama3.1:8b'] },
    });
    expect(doc.inference.routes.map((r: { name: string }) => r.name)).toEqual(['secrets-never-leave', 'default']);
    // Whole file is a valid policy, and its inference section is valid for the router.
    const parsed = parsePolicy(ollama.policyText, 'onboard');
    validateInferencePolicy(parsed.doc.inference);
    const cloud = parsePolicy(withKey.policyText, 'onboard');
    expect(validateInferencePolicy(cloud.doc.inference).routes.map((r) => r.name)).toEqual(['secrets-never-leave', 'pii-redacted', 'default']);
  });

  it('says what to do when no provider is available, and honours --profile and presets', async () => {
    const none = await detectEnvironment(openclaw, detectors());
    expect(() => planOnboarding(openclaw, none, {}, REPO_ROOT)).toThrow(/no inference provider found for blueprint openclaw/);
    try {
      planOnboarding(openclaw, none, {}, REPO_ROOT);
    } catch (err) {
      expect((err as { nextStep: string }).nextStep).toMatch(/NVIDIA_API_KEY.*--blueprint drill/);
    }
    const forced = planOnboarding(openclaw, none, { profile: 'vllm-local', presets: ['npm', 'github'] }, REPO_ROOT);
    expect(forced.profile).toBe('vllm-local');
    expect(forced.warnings[0]).toMatch(/nothing answers on 127.0.0.1:8000/);
    expect(parse(forced.policyText).presets).toEqual(['npm', 'github']);
    // Re-onboarding without --preset keeps the presets chosen last time.
    const again = planOnboarding(openclaw, none, { profile: 'vllm-local', previousPolicyText: forced.policyText }, REPO_ROOT);
    expect(parse(again.policyText).presets).toEqual(['npm', 'github']);
    expect(() => planOnboarding(openclaw, none, { profile: 'nope' }, REPO_ROOT)).toThrow(/no inference profile "nope"/);
  });

  it('needs nothing for the drill: its two stub profiles are always available, so it runs hybrid', async () => {
    const plan = planOnboarding(drill, await detectEnvironment(drill, detectors()), {}, REPO_ROOT);
    expect(plan.profile).toBe('hybrid');
    const doc = parse(plan.policyText);
    expect(doc.inference.providers['drill-stub'].base_url).toBe('http://127.0.0.1:9/v1');
    expect(doc.inference.providers['drill-cloud']).toMatchObject({ base_url: 'http://127.0.0.1:9/v1', locality: 'cloud', model: 'drill-cloud' });
    // The drill's own routes and budgets stay (PII local, redacted to the cloud while local is down,
    // secrets blocked, a small hourly budget), and the result is a policy the router accepts.
    expect(doc.inference.routes.map((r: { name: string }) => r.name)).toEqual(['secrets-never-leave', 'pii-local-down', 'pii-local', 'default']);
    expect(doc.inference.hybrid).toEqual({ when_local_down: 'cloud_redacted' });
    expect(doc.inference.budgets.hour).toEqual({ tokens: 20000 });
    expect(doc.approvals.when_unattended).toBe('hold');
    validateInferencePolicy(parsePolicy(plan.policyText, 'onboard').doc.inference);
  });

  it('stores keys 0600, keeps other keys, and refuses a file others can read', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ncl-cred-'));
    const file = join(dir, 'credentials.json');
    expect(storeCredential(file, 'nvidia', 'nvapi-123')).toEqual({ changed: true });
    expect(storeCredential(file, 'other', 'k2')).toEqual({ changed: true });
    expect(storeCredential(file, 'nvidia', 'nvapi-123')).toEqual({ changed: false });
    expect(statSync(file).mode & 0o777).toBe(0o600);
    expect(JSON.parse(readFileSync(file, 'utf8'))).toEqual({ nvidia: 'nvapi-123', other: 'k2' });
    chmodSync(file, 0o644);
    expect(() => readCredentials(file)).toThrow(/readable by group or others/);
    writeFileSync(join(dir, 'bad.json'), 'nvapi-leaked-value', { mode: 0o600 });
    let message = '';
    try {
      readCredentials(join(dir, 'bad.json'));
    } catch (err) {
      message = (err as Error).message;
    }
    expect(message).toMatch(/not valid JSON/);
    expect(message).not.toContain('nvapi-leaked-value');
  });

  it('probes real loopback servers and never anything else', async () => {
    const srv = createServer((req, res) => {
      res.writeHead(req.url === '/api/tags' ? 200 : 404);
      res.end('{}');
    });
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', () => r()));
    const port = (srv.address() as AddressInfo).port;
    const d = systemDetectors(join(tmpdir(), 'none.json'), {});
    expect(await d.probe(`http://127.0.0.1:${port}/api/tags`)).toBe(true);
    expect(await d.probe(`http://127.0.0.1:${port}/missing`)).toBe(false);
    expect(await d.probe('http://203.0.113.7/api/tags')).toBe(false);
    await new Promise((r) => srv.close(r));
    expect(await d.probe(`http://127.0.0.1:${port}/api/tags`)).toBe(false);
  });
});
