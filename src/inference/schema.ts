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
  // Added with the NER detectors (issue 13). Every kind is in the default `redaction.entities`
  // list (redacted on `redact_then` routes) like the older ones; an operator who finds names or
  // addresses too noisy for a workload lists them under `redaction.disabled`.
  'person',
  'address',
  'date_of_birth',
  'passport',
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
    /**
     * `local` providers run on this machine. Sensitive traffic falls back from them to `cloud` only
     * with `hybrid.when_local_down: cloud_redacted`, and any fallback to `cloud` goes redacted.
     */
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
    /**
     * Provider to try when the chosen one is unreachable, answers 5xx or 429 (saturated). A fallback
     * to a `cloud` provider gets the policy's cloud redaction first; a secret never goes.
     */
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
        message: 'a route with exactly one action: `provider: <name>`, `block: true` or `redact_then: <name>`',
      });
    }
  });

const capsSchema = z
  .object({
    tokens: z.number().int().positive().optional(),
    usd: positive.optional(),
  })
  .strict();

/** Output tokens a call reserves (per choice) when it sets no `max_tokens` / `max_completion_tokens`. */
export const DEFAULT_OUTPUT_RESERVATION = 4096;

const budgetsSchema = z
  .object({
    hour: capsSchema.optional(),
    day: capsSchema.optional(),
    request: capsSchema.optional(),
    /**
     * Output tokens reserved per choice for a call that sets no output limit, until it settles on its
     * real usage (the per-request cap, when lower, bounds it).
     */
    default_output_reservation: z.number().int().positive().max(10_000_000).default(DEFAULT_OUTPUT_RESERVATION),
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
    budgets: budgetsSchema.default({ default_output_reservation: DEFAULT_OUTPUT_RESERVATION }),
    rate_limits: rateLimitsSchema.default({}),
    /**
     * Hybrid routing: what a route that matched sensitive entities on a `local` provider does when
     * that provider is down or saturated (unreachable, 5xx, 429). `refuse` (default): the call fails,
     * and a `fallback` of such a route to a `cloud` provider is refused here. `cloud_redacted`: that
     * fallback is allowed; the body goes out with the policy's cloud redaction (`redaction.entities`,
     * as on `redact_then`), a secret blocks it, and a matched kind the redaction does not cover keeps
     * it local (the call fails).
     */
    hybrid: z
      .object({ when_local_down: z.enum(['cloud_redacted', 'refuse']).default('refuse') })
      .strict()
      .default({ when_local_down: 'refuse' }),
    /**
     * Content the router cannot read as text (images, PDFs and other binary documents, audio, binary
     * base64, token ids outside o200k/cl100k): `local_only` (default) lets such a call go to a local
     * provider only and refuses it otherwise; `block` refuses it; `allow` forwards it unscanned (the
     * inference.route event lists what was not inspected).
     */
    uninspectable: z.enum(['block', 'allow', 'local_only']).default('local_only'),
    /**
     * How a policy refusal is answered: `message` (default) an assistant reply carrying the reason
     * (HTTP 200, `x-nemoclaw-blocked` header; agents show it, and do not take it for an auth failure),
     * `error` HTTP 400 naming the reason in `error.code`. Completions and embeddings always get the error.
     */
    blocked_reply: z.enum(['message', 'error']).default('message'),
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
            message: `the name of a provider in inference.providers (known: ${[...names].join(', ') || 'none'})`,
          });
        }
      }
      const primary = route.provider ?? route.redact_then;
      if (route.when.entities && route.fallback && primary) {
        const from = doc.providers[primary];
        const to = doc.providers[route.fallback];
        if (from?.locality === 'local' && to?.locality === 'cloud' && doc.hybrid.when_local_down !== 'cloud_redacted') {
          ctx.addIssue({
            code: 'custom',
            path: ['routes', i, 'fallback'],
            message:
              'no cloud fallback here: a route that matches sensitive entities may not fall back from a local provider to a cloud provider (unless `inference.hybrid.when_local_down: cloud_redacted`, which sends it redacted)',
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

type Raw = Record<string, unknown>;
const isObj = (v: unknown): v is Raw => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Provider `kind` spellings of the baseline policy / NemoClaw blueprints. */
const OPENAI_KINDS = new Set(['openai', 'openai-compatible', 'nim', 'nvidia', 'vllm', 'ollama']);

/**
 * Accept the shorter spellings the baseline policy uses and map them onto the canonical schema:
 * provider `kind: openai-compatible` → `type: openai`; route `match` → `when` with
 * `sensitivity: private` meaning "any detected entity" (`secret` meaning secrets only);
 * redaction `secrets: true` + `pii: [..]` → `entities`; budgets `daily_tokens`, `daily_usd`,
 * `hourly_tokens`, `hourly_usd`, `request_tokens`, `request_usd` → `day`/`hour`/`request` caps.
 */
export function normalizeInferenceSection(raw: unknown): unknown {
  if (!isObj(raw)) return raw;
  const out: Raw = { ...raw };
  if (isObj(raw.providers)) {
    out.providers = Object.fromEntries(
      Object.entries(raw.providers).map(([name, p]) => {
        if (!isObj(p) || p.type !== undefined || typeof p.kind !== 'string') return [name, p];
        const { kind, ...rest } = p;
        const type = OPENAI_KINDS.has(kind as string) ? 'openai' : kind;
        return [name, { ...rest, type }];
      }),
    );
  }
  if (Array.isArray(raw.routes)) {
    out.routes = raw.routes.map((r) => {
      if (!isObj(r) || r.when !== undefined || r.match === undefined) return r;
      const { match, ...rest } = r;
      if (!isObj(match)) return { ...rest, when: match };
      const { sensitivity, ...cond } = match;
      if (sensitivity === 'private') cond.entities = [...ENTITY_KINDS];
      else if (sensitivity === 'secret') cond.entities = ['secret'];
      else if (sensitivity !== undefined) cond.sensitivity = sensitivity;
      return { ...rest, when: cond };
    });
  }
  if (isObj(raw.redaction) && raw.redaction.entities === undefined && (raw.redaction.pii !== undefined || raw.redaction.secrets !== undefined)) {
    const { pii, secrets, ...rest } = raw.redaction;
    const kinds = Array.isArray(pii) ? [...pii] : pii === undefined ? ENTITY_KINDS.filter((k) => k !== 'secret') : pii;
    out.redaction = { ...rest, entities: secrets === true && Array.isArray(kinds) ? [...kinds, 'secret'] : kinds };
  }
  if (isObj(raw.budgets)) {
    const b: Raw = {};
    const aliases: Record<string, [string, string]> = {
      daily_tokens: ['day', 'tokens'], daily_usd: ['day', 'usd'],
      hourly_tokens: ['hour', 'tokens'], hourly_usd: ['hour', 'usd'],
      request_tokens: ['request', 'tokens'], request_usd: ['request', 'usd'],
    };
    for (const [key, value] of Object.entries(raw.budgets)) {
      const alias = aliases[key];
      if (!alias) {
        b[key] = isObj(value) && isObj(b[key]) ? { ...(b[key] as Raw), ...value } : value;
        continue;
      }
      const [scope, unit] = alias;
      b[scope] = { ...(isObj(b[scope]) ? (b[scope] as Raw) : {}), [unit]: value };
    }
    out.budgets = b;
  }
  return out;
}

function valueAtPath(root: unknown, path: ReadonlyArray<string | number>): unknown {
  let v = root;
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<string | number, unknown>)[key];
  }
  return v;
}

/** One problem in an inference section: zod's issue with its path in the section AS WRITTEN. */
export interface InferenceIssue {
  /** Path inside the `inference` section, in the spelling the file used (`match`, `kind`, `daily_tokens`…). */
  path: Array<string | number>;
  code: string;
  message: string;
  [extra: string]: unknown;
}

const BUDGET_ALIASES: Record<string, string> = {
  'day.tokens': 'daily_tokens', 'day.usd': 'daily_usd',
  'hour.tokens': 'hourly_tokens', 'hour.usd': 'hourly_usd',
  'request.tokens': 'request_tokens', 'request.usd': 'request_usd',
};

/**
 * Map a path in the normalised section back to the field the file actually wrote, so an error in a
 * `match:` route or a `daily_tokens:` budget points at that line and names that field.
 */
function writtenPath(raw: unknown, path: ReadonlyArray<PropertyKey>): Array<string | number> {
  const p = path.filter((k): k is string | number => typeof k === 'string' || typeof k === 'number');
  if (!isObj(raw)) return p;
  const [section, a, b, ...rest] = p;
  if (section === 'providers' && typeof a === 'string' && b === 'type') {
    const provider = isObj(raw.providers) ? raw.providers[a] : undefined;
    if (isObj(provider) && provider.type === undefined && provider.kind !== undefined) return ['providers', a, 'kind', ...rest];
  }
  if (section === 'routes' && typeof a === 'number' && b === 'when' && Array.isArray(raw.routes)) {
    const route = raw.routes[a];
    if (isObj(route) && route.when === undefined && route.match !== undefined) {
      const match = route.match;
      if (rest[0] === 'entities' && isObj(match) && match.sensitivity !== undefined && match.entities === undefined) {
        return ['routes', a, 'match', 'sensitivity'];
      }
      return ['routes', a, 'match', ...rest];
    }
  }
  if (section === 'redaction' && a === 'entities' && isObj(raw.redaction) && raw.redaction.entities === undefined) {
    return ['redaction', raw.redaction.pii !== undefined ? 'pii' : 'secrets', ...(b !== undefined ? [b] : [])];
  }
  if (section === 'budgets' && typeof a === 'string' && typeof b === 'string' && isObj(raw.budgets) && raw.budgets[a] === undefined) {
    const alias = BUDGET_ALIASES[`${a}.${b}`];
    if (alias && raw.budgets[alias] !== undefined) return ['budgets', alias, ...rest];
  }
  return p;
}

/**
 * Validate the raw `inference` section of a policy document. Throws NemoclawError('policy_invalid')
 * naming every bad field (`inference.routes[2].provider: the name of a provider in …`); `details.issues`
 * carries each problem with its path as written in the file, for file:line:col reports.
 */
export function validateInferencePolicy(raw: unknown): InferenceConfig {
  const result = inferencePolicySchema.safeParse(normalizeInferenceSection(raw ?? {}));
  if (result.success) return result.data;
  const issues: InferenceIssue[] = result.error.issues.map((issue) => ({
    ...(issue as unknown as Record<string, unknown>),
    code: issue.code,
    message: issue.message,
    path: writtenPath(raw, issue.path),
  }));
  const problems = issues.map((issue) => {
    // Name the refused value when it is a plain scalar (never a whole mapping: it may be long).
    const value = valueAtPath(raw, issue.path);
    const got = typeof value === 'string' || typeof value === 'number' || typeof value === 'boolean' ? ` (got ${JSON.stringify(value)})` : '';
    return `${formatPath(issue.path)}: ${issue.message}${got}`;
  });
  throw new NemoclawError('policy_invalid', `invalid inference section: ${problems.join('; ')}`, {
    nextStep: 'fix the named field in the policy file and apply it again; the previous inference configuration stays in force',
    exitCode: 2,
    details: { problems, issues },
  });
}
