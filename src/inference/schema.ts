/**
 * The precise shape of the policy's `inference` section. The policy engine keeps the section
 * permissive; the router validates it here when it starts and on every policy change, and keeps the
 * previous configuration when a new one is invalid.
 */
import { z } from 'zod';
import { NemoclawError } from '../shared/errors.js';

/** Every entity kind the classifier can report (Presidio-style names, lower case). */
export const ENTITY_KINDS = [
  'secret',
  'email',
  'phone',
  'credit_card',
  'iban',
  'us_ssn',
  'ip_address',
  'mac_address',
  'url_credentials',
  'crypto_wallet',
  'proprietary',
] as const;
export type EntityKind = (typeof ENTITY_KINDS)[number];

const entityKind = z.enum(ENTITY_KINDS);
const positive = z.number().positive();
const nonNegative = z.number().nonnegative();

const priceSchema = z
  .object({
    /** USD per million prompt tokens. */
    input_per_mtok: nonNegative.default(0),
    /** USD per million completion tokens. */
    output_per_mtok: nonNegative.default(0),
  })
  .strict();

const providerSchema = z
  .object({
    type: z.enum(['openai', 'anthropic']),
    /** e.g. `https://integrate.api.nvidia.com/v1`, `http://127.0.0.1:8000/v1`, `https://api.anthropic.com`. */
    base_url: z.url({ protocol: /^https?$/ }),
    /** Model sent upstream; when absent the caller's model is passed through. */
    model: z.string().min(1).optional(),
    /** Extra model ids this provider serves (listed by /v1/models, matched by `when.model`). */
    models: z.array(z.string().min(1)).default([]),
    /** `local` providers run on this machine; sensitive traffic never falls back from them to `cloud`. */
    locality: z.enum(['local', 'cloud']).default('cloud'),
    /** Name of an environment variable of the supervisor holding the key. */
    api_key_env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, 'an environment variable name').optional(),
    /** Key name in the 0600 credentials file ($NEMOCLAW_HOME/credentials.json). */
    credential: z.string().min(1).optional(),
    price: priceSchema.default({ input_per_mtok: 0, output_per_mtok: 0 }),
    /** Upstream timeout for the response headers (ms). */
    timeout_ms: z.number().int().positive().default(120_000),
    /** Anthropic API version header. */
    anthropic_version: z.string().default('2023-06-01'),
  })
  .strict();

const whenSchema = z
  .object({
    /** Matches when ANY of these kinds was detected in the request. */
    entities: z.array(entityKind).min(1).optional(),
    /** Requested model globs (`*` any run of characters). */
    model: z.array(z.string().min(1)).min(1).optional(),
    min_prompt_tokens: z.number().int().nonnegative().optional(),
    max_prompt_tokens: z.number().int().nonnegative().optional(),
    /** true: the request offers tools or carries tool calls/results; false: it does not. */
    tools: z.boolean().optional(),
    /** Wire format of the caller. */
    api: z.array(z.enum(['openai.chat', 'openai.completions', 'openai.embeddings', 'anthropic.messages'])).optional(),
  })
  .strict();

const routeSchema = z
  .object({
    name: z.string().min(1).optional(),
    when: whenSchema.default({}),
    provider: z.string().min(1).optional(),
    block: z.literal(true).optional(),
    redact_then: z.string().min(1).optional(),
    /** Provider to try when the chosen one is unreachable or answers 5xx. */
    fallback: z.string().min(1).optional(),
    /** Message returned to the caller when the route blocks. */
    message: z.string().optional(),
  })
  .strict()
  .superRefine((route, ctx) => {
    const actions = [route.provider, route.block, route.redact_then].filter((a) => a !== undefined).length;
    if (actions !== 1) {
      ctx.addIssue({
        code: 'custom',
        message: 'a route needs exactly one action: `provider: <name>`, `block: true` or `redact_then: <name>`',
      });
    }
  });

const capsSchema = z
  .object({
    tokens: z.number().int().positive().optional(),
    usd: positive.optional(),
  })
  .strict();

const budgetsSchema = z
  .object({
    hour: capsSchema.optional(),
    day: capsSchema.optional(),
    request: capsSchema.optional(),
  })
  .strict();

const rateLimitsSchema = z
  .object({
    requests_per_minute: z.number().int().positive().optional(),
    tokens_per_minute: z.number().int().positive().optional(),
  })
  .strict();

const redactionSchema = z
  .object({
    /** Kinds replaced by placeholders on `redact_then` routes (default: every kind except none). */
    entities: z.array(entityKind).default([...ENTITY_KINDS]),
    /** Detectors switched off (false positives in your workload). */
    disabled: z.array(entityKind).default([]),
    /** Proprietary markers: detected as kind `proprietary`. */
    markers: z
      .object({
        path_globs: z.array(z.string().min(1)).default([]),
        repos: z.array(z.string().min(1)).default([]),
        patterns: z
          .array(
            z.string().refine((s) => {
              try {
                new RegExp(s, 'gu');
                return true;
              } catch {
                return false;
              }
            }, 'a valid JavaScript regular expression'),
          )
          .default([]),
      })
      .strict()
      .default({ path_globs: [], repos: [], patterns: [] }),
  })
  .strict();

export const inferencePolicySchema = z
  .object({
    providers: z.record(z.string().regex(/^[A-Za-z0-9_.-]+$/, 'a provider name (letters, digits, . _ -)'), providerSchema).default({}),
    routes: z.array(routeSchema).default([]),
    redaction: redactionSchema.default({ entities: [...ENTITY_KINDS], disabled: [], markers: { path_globs: [], repos: [], patterns: [] } }),
    budgets: budgetsSchema.default({}),
    rate_limits: rateLimitsSchema.default({}),
  })
  .strict()
  .superRefine((doc, ctx) => {
    const names = new Set(Object.keys(doc.providers));
    doc.routes.forEach((route, i) => {
      for (const key of ['provider', 'redact_then', 'fallback'] as const) {
        const target = route[key];
        if (target !== undefined && !names.has(target)) {
          ctx.addIssue({
            code: 'custom',
            path: ['routes', i, key],
            message: `unknown provider "${target}" (known: ${[...names].join(', ') || 'none'})`,
          });
        }
      }
      const primary = route.provider ?? route.redact_then;
      if (route.when.entities && route.fallback && primary) {
        const from = doc.providers[primary];
        const to = doc.providers[route.fallback];
        if (from?.locality === 'local' && to?.locality === 'cloud') {
          ctx.addIssue({
            code: 'custom',
            path: ['routes', i, 'fallback'],
            message: 'a route that matches sensitive entities may not fall back from a local provider to a cloud provider',
          });
        }
      }
    });
  });

export type InferenceConfig = z.output<typeof inferencePolicySchema>;
export type ProviderConfig = InferenceConfig['providers'][string];
export type RouteConfig = InferenceConfig['routes'][number];
export type BudgetCaps = z.output<typeof capsSchema>;
export type BudgetsConfig = InferenceConfig['budgets'];

function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = 'inference';
  for (const seg of path) out += typeof seg === 'number' ? `[${seg}]` : `.${String(seg)}`;
  return out;
}

/**
 * Validate the raw `inference` section of a policy document. Throws NemoclawError('policy_invalid')
 * naming every bad field (`inference.routes[2].provider: unknown provider "x"`).
 */
export function validateInferencePolicy(raw: unknown): InferenceConfig {
  const result = inferencePolicySchema.safeParse(raw ?? {});
  if (result.success) return result.data;
  const problems = result.error.issues.map((issue) => `${formatPath(issue.path)}: ${issue.message}`);
  throw new NemoclawError('policy_invalid', `invalid inference section: ${problems.join('; ')}`, {
    nextStep: 'fix the named field in the policy file and apply it again; the previous inference configuration stays in force',
    details: { problems },
  });
}
