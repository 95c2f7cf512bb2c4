import { describe, expect, it } from 'vitest';
import { validateInferencePolicy } from '../../src/inference/schema.js';
import { NemoclawError } from '../../src/shared/errors.js';

const providers = {
  local: { type: 'openai', base_url: 'http://127.0.0.1:8000/v1', locality: 'local' },
  cloud: { type: 'openai', base_url: 'https://integrate.api.nvidia.com/v1', api_key_env: 'NVIDIA_API_KEY' },
};

function problem(raw: unknown): string {
  try {
    validateInferencePolicy(raw);
  } catch (err) {
    expect(err).toBeInstanceOf(NemoclawError);
    return (err as NemoclawError).message;
  }
  throw new Error('expected the inference section to be refused');
}

describe('validateInferencePolicy', () => {
  it('accepts an empty section and fills defaults', () => {
    const cfg = validateInferencePolicy({});
    expect(cfg.routes).toEqual([]);
    expect(cfg.redaction.entities).toContain('email');
  });

  it('accepts providers, routes, budgets and rate limits', () => {
    const cfg = validateInferencePolicy({
      providers,
      routes: [
        { name: 'secrets', when: { entities: ['secret'] }, block: true },
        { name: 'pii', when: { entities: ['email', 'phone'] }, redact_then: 'cloud' },
        { provider: 'cloud' },
      ],
      budgets: { hour: { tokens: 1000 }, day: { usd: 5 } },
      rate_limits: { requests_per_minute: 60 },
    });
    expect(cfg.providers.cloud!.locality).toBe('cloud');
    expect(cfg.routes[1]!.redact_then).toBe('cloud');
  });

  it('names the field of an unknown provider', () => {
    expect(problem({ providers, routes: [{ provider: 'nope' }] })).toContain('inference.routes[0].provider: the name of a provider in inference.providers (known: local, cloud) (got "nope")');
  });

  it('refuses a route with two actions or none', () => {
    expect(problem({ providers, routes: [{ provider: 'local', block: true }] })).toContain('inference.routes[0]');
    expect(problem({ providers, routes: [{ when: {} }] })).toContain('exactly one action');
  });

  it('refuses a sensitive route that would fall back from local to cloud', () => {
    expect(
      problem({ providers, routes: [{ when: { entities: ['email'] }, provider: 'local', fallback: 'cloud' }] }),
    ).toContain('inference.routes[0].fallback');
  });

  it('names bad types and unknown fields', () => {
    expect(problem({ providers: { x: { type: 'grpc', base_url: 'http://a' } } })).toContain('inference.providers.x.type');
    expect(problem({ budgets: { hour: { tokens: -1 } } })).toContain('inference.budgets.hour.tokens');
    expect(problem({ bogus: 1 })).toContain('bogus');
    expect(problem({ redaction: { markers: { patterns: ['(unclosed'] } } })).toContain('inference.redaction.markers.patterns[0]');
  });
});

describe('baseline policy spellings', () => {
  it('accepts the inference section of policies/openclaw-sandbox.yaml', async () => {
    const { readFileSync } = await import('node:fs');
    const { parse } = await import('yaml');
    const doc = parse(readFileSync(new URL('../../policies/openclaw-sandbox.yaml', import.meta.url), 'utf8'));
    // Written in the canonical spellings: the file validates without the alias mapping.
    const { inferencePolicySchema } = await import('../../src/inference/schema.js');
    expect(inferencePolicySchema.safeParse(doc.inference).success).toBe(true);
    const cfg = validateInferencePolicy(doc.inference);
    expect(Object.values(cfg.providers).every((p) => p.type === 'openai')).toBe(true);
    expect(cfg.routes[0]).toMatchObject({ name: 'no-secrets', when: { entities: ['secret'] }, block: true });
    expect(cfg.routes[1]).toMatchObject({ name: 'private-stays-local', provider: 'local' });
    expect(cfg.routes[1]!.when.entities).toEqual(['email', 'phone', 'credit_card', 'iban', 'us_ssn', 'url_credentials', 'proprietary']);
    expect(cfg.providers.nvidia!.price.input_per_mtok).toBeGreaterThan(0);
    expect(cfg.budgets.day).toEqual({ tokens: 2_000_000, usd: 20 });
  });

  it('maps kind/match/pii/secrets/daily_* onto the canonical fields', () => {
    const cfg = validateInferencePolicy({
      providers: { l: { kind: 'openai-compatible', base_url: 'http://127.0.0.1:1/v1', locality: 'local' } },
      routes: [{ name: 's', match: { sensitivity: 'secret' }, block: true }, { match: {}, provider: 'l' }],
      redaction: { secrets: true, pii: ['email'] },
      budgets: { daily_tokens: 10, hourly_usd: 1, request: { tokens: 5 } },
    });
    expect(cfg.providers.l!.type).toBe('openai');
    expect(cfg.routes[0]!.when.entities).toEqual(['secret']);
    expect(cfg.redaction.entities).toEqual(['email', 'secret']);
    expect(cfg.budgets).toEqual({ day: { tokens: 10 }, hour: { usd: 1 }, request: { tokens: 5 } });
  });
});
