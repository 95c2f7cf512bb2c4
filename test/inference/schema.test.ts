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
    expect(cfg.routes[1]!.when.entities).toEqual(['email', 'phone', 'credit_card', 'iban', 'us_ssn', 'url_credentials', 'person', 'address', 'date_of_birth', 'passport', 'proprietary']);
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
    expect(cfg.budgets).toEqual({ default_output_reservation: 4096, day: { tokens: 10 }, hour: { usd: 1 }, request: { tokens: 5 } });
  });
});

describe('wire request schemas', () => {
  it('only check a request and never change it (the router forwards the parsed body itself)', async () => {
    const { REQUEST_SCHEMAS } = await import('../../src/inference/wire.js');
    const samples = {
      'openai.chat': {
        model: 'm',
        messages: [
          { role: 'system', content: 's' },
          { role: 'user', content: [{ type: 'text', text: 'a' }, { type: 'image_url', image_url: { url: 'https://x' } }] },
          { role: 'assistant', content: null, tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{}' } }] },
          { role: 'tool', tool_call_id: 'c', content: 'r' },
        ],
        stream: true,
        stream_options: { include_usage: true },
        tools: [{ type: 'function', function: { name: 'f', parameters: {} } }],
        max_tokens: 5,
        extra_vendor_field: { keep: true },
      },
      'openai.completions': { model: 'm', prompt: ['a', 'b'], stream: false, max_tokens: null },
      'openai.embeddings': { model: 'm', input: [[1, 2], [3]] },
      'anthropic.messages': {
        model: 'm',
        max_tokens: 5,
        system: [{ type: 'text', text: 's', cache_control: { type: 'ephemeral' } }],
        messages: [{ role: 'user', content: [{ type: 'tool_result', tool_use_id: 't', content: 'x' }] }],
        tools: [{ name: 'f', input_schema: {} }],
        metadata: { user_id: 'u' },
      },
    } as const;
    for (const [api, body] of Object.entries(samples)) {
      const result = REQUEST_SCHEMAS[api as keyof typeof REQUEST_SCHEMAS].safeParse(structuredClone(body));
      expect(result.success, api).toBe(true);
      expect(result.data, api).toEqual(body);
    }
  });
});

describe('forwardableAsIs', () => {
  it('accepts plain JSON whatever its strings contain, and refuses repeated keys at any depth', async () => {
    const { forwardableAsIs } = await import('../../src/inference/wire.js');
    const ok = (text: string) => forwardableAsIs(Buffer.from(text), text);
    expect(ok('{"a":"x{\\"a\\":1,\\"a\\":2}y","b":[{"a":1},{"a":2}],"c":"\\\\","d":{"a":"\\\\\\""}}')).toBe(true);
    expect(ok('{"a":1,"b":{"x":1,"y":[{"k":1,"k":2}]}}')).toBe(false);
    expect(ok('{"a":1,"b":2,"a":3}')).toBe(false);
    expect(ok('{"a":1,"\\u0061":2}')).toBe(false);
    expect(ok('{"a":{"a":{"a":1}}}')).toBe(true);
  });
});
