/**
 * The zod schema of a policy file (the source of truth for what a file may contain) and of preset
 * and overlay files. Custom messages say what was expected; parse.ts maps each issue to file:line:col.
 */
import { z } from 'zod';
import { forbiddenOverlap, isValidHostPattern, normalizeHost, parseCidr } from './net.js';
import type { Endpoint, L7Rule, QueryMatcher } from './types.js';

const ABSOLUTE_PATH = 'an absolute path (or ~/…)';
export const pathSchema = z
  .string({ error: ABSOLUTE_PATH })
  .refine((p) => p.startsWith('/') || p === '~' || p.startsWith('~/'), { error: ABSOLUTE_PATH });

const PORT = 'a port number from 1 to 65535';
export const portSchema = z.int({ error: PORT }).min(1, { error: PORT }).max(65535, { error: PORT });

const HOST = 'a host name, an IP address, or a name with `*` labels (e.g. *.example.com)';
export const hostSchema = z
  .string({ error: HOST })
  .refine(isValidHostPattern, { error: HOST })
  .transform(normalizeHost);

const CIDR = 'an IP address or CIDR (e.g. 10.0.0.0/8) that does not overlap loopback or link-local';
export const cidrSchema = z.string({ error: CIDR }).superRefine((text, ctx) => {
  const cidr = parseCidr(text);
  if (!cidr) {
    ctx.addIssue({ code: 'custom', message: CIDR });
    return;
  }
  const overlap = forbiddenOverlap(cidr);
  if (overlap) ctx.addIssue({ code: 'custom', message: `${CIDR} (it overlaps ${overlap})` });
});

const METHOD = 'an HTTP method (GET, POST, …) or *';
const methodSchema = z
  .string({ error: METHOD })
  .regex(/^(\*|[A-Za-z_]{1,20})$/, { error: METHOD })
  .transform((m) => m.toUpperCase());
const L7_PATH = 'a URL path glob starting with / (`*` one segment, `**` any depth), or **';
const l7PathSchema = z.string({ error: L7_PATH }).regex(/^(\/\S*|\*\*)$/, { error: L7_PATH });

const QUERY_MATCHER = 'a glob string, { glob: "…" } or { any: ["…", …] }';
/** Loose objects: exact keys and shapes are checked by openshell.ts with upstream's messages. */
const queryMatcherSchema = z.union(
  [z.string(), z.looseObject({ glob: z.string({ error: 'a glob string' }) }), z.looseObject({ any: z.array(z.string({ error: 'a glob string' })) })],
  { error: QUERY_MATCHER },
);
const querySchema = z.record(z.string(), queryMatcherSchema, { error: 'a map of query keys to matchers' });

function queryOf(q: Record<string, z.output<typeof queryMatcherSchema>> | undefined): Pick<L7Rule, 'query'> {
  if (q === undefined || Object.keys(q).length === 0) return {};
  const out: Record<string, QueryMatcher> = {};
  for (const [k, m] of Object.entries(q)) {
    out[k] = typeof m === 'string' ? m : 'glob' in m && typeof m.glob === 'string' ? { glob: m.glob } : { any: (m as { any?: string[] }).any ?? [] };
  }
  return { query: out };
}

const l7AllowBody = z.looseObject({ method: methodSchema.optional(), path: l7PathSchema.optional(), query: querySchema.optional() });
/**
 * `{allow: {method, path, query}}` (OpenShell: without `method` or `path` the rule matches nothing),
 * or our shorthand `{method, path}` (defaults `*` and `/**`). Other keys are refused by openshell.ts.
 */
const l7RuleEntry = z
  .looseObject({ allow: l7AllowBody.optional(), method: methodSchema.optional(), path: l7PathSchema.optional(), query: querySchema.optional() })
  .transform((r): L7Rule =>
    r.allow !== undefined
      ? { method: r.allow.method ?? '', path: r.allow.path ?? '', ...queryOf(r.allow.query) }
      : { method: r.method ?? '*', path: r.path ?? '/**', ...queryOf(r.query) },
  );
const l7DenyBody = z.looseObject({ method: methodSchema.default('*'), path: l7PathSchema.default('/**'), query: querySchema.optional() });
/** OpenShell's flat `{method, path, query}` (both required, checked by openshell.ts), or our `{deny: {…}}`. */
const l7DenyEntry = z
  .looseObject({ deny: l7DenyBody.optional(), method: methodSchema.optional(), path: l7PathSchema.optional(), query: querySchema.optional() })
  .transform((r): L7Rule =>
    r.deny !== undefined
      ? { method: r.deny.method, path: r.deny.path, ...queryOf(r.deny.query) }
      : { method: r.method ?? '*', path: r.path ?? '/**', ...queryOf(r.query) },
  );

/**
 * An endpoint. Loose: which further keys are enforced, refused or only reported is decided by
 * openshell.ts (OpenShell's own validation, so nothing unknown can quietly widen a rule).
 */
export const endpointSchema = z
  .looseObject({
    host: hostSchema.optional(),
    path: l7PathSchema.optional(),
    port: portSchema.optional(),
    ports: z.array(portSchema).min(1, { error: 'a non-empty list of ports' }).optional(),
    protocol: z.string().optional(),
    access: z.enum(['read-only', 'read-write', 'full']).optional(),
    rules: z.array(l7RuleEntry).default([]),
    deny_rules: z.array(l7DenyEntry).default([]),
    allowed_ips: z.array(cidrSchema).default([]),
    enforcement: z.enum(['enforce', 'audit']).optional(),
    tls: z.string().optional(),
    allow_encoded_slash: z.boolean().optional(),
  })
  .superRefine((e, ctx) => {
    if (e.port === undefined && e.ports === undefined) {
      ctx.addIssue({ code: 'custom', message: 'a `port` or `ports` field', path: ['port'] });
    }
    if (e.host === undefined && e.allowed_ips.length === 0) {
      ctx.addIssue({ code: 'custom', message: 'a `host` (or, for a hostless endpoint, a non-empty `allowed_ips`)', path: ['host'] });
    }
  })
  .transform((e): Endpoint => {
    const ports = [...new Set([...(e.port !== undefined ? [e.port] : []), ...(e.ports ?? [])])].sort((a, b) => a - b);
    const out: Endpoint = {
      host: e.host ?? '',
      ports,
      rules: e.rules,
      deny_rules: e.deny_rules,
      allowed_ips: e.allowed_ips,
    };
    if (e.path !== undefined && e.path !== '') out.path = e.path;
    if (e.protocol !== undefined) out.protocol = e.protocol.toLowerCase();
    if (e.access !== undefined) out.access = e.access;
    if (e.enforcement !== undefined) out.enforcement = e.enforcement;
    if (e.tls !== undefined) out.tls = e.tls;
    if (e.allow_encoded_slash === true) out.allow_encoded_slash = true;
    return out;
  });

const BINARY = 'an absolute binary path or glob, as a string or {path: …}';
const binaryPathSchema = z.string({ error: BINARY }).regex(/^\/\S*$/, { error: BINARY });
const binarySchema = z
  .union([binaryPathSchema, z.object({ path: binaryPathSchema })], { error: BINARY })
  .transform((b) => ({ path: typeof b === 'string' ? b : b.path }));

const POLICY_NAME = 'a policy name (letters, digits, _ . : @ / + -)';
/** A leading `_` is allowed: OpenShell prints provider policies as `_provider_<name>`. */
export const policyNameSchema = z
  .string()
  .regex(/^[A-Za-z0-9_][A-Za-z0-9_.:@/+-]{0,127}$/, { error: POLICY_NAME });

export const networkPolicySchema = z.object({
  name: z.string().optional(),
  action: z.enum(['allow', 'deny']).default('allow'),
  endpoints: z.array(endpointSchema).default([]),
  binaries: z.array(binarySchema).default([]),
});

export const networkPoliciesSchema = z.record(policyNameSchema, networkPolicySchema);

const SYSCALL = 'a syscall name (e.g. ptrace)';
const syscallSchema = z.string({ error: SYSCALL }).regex(/^[a-z0-9_]{1,40}$/, { error: SYSCALL });

const MEMORY = 'a byte count or a size like 512Mi, 2Gi, 1G';
const SIZE_UNITS: Record<string, number> = {
  '': 1,
  B: 1,
  K: 1e3,
  k: 1e3,
  M: 1e6,
  G: 1e9,
  T: 1e12,
  Ki: 1024,
  Mi: 1024 ** 2,
  Gi: 1024 ** 3,
  Ti: 1024 ** 4,
};
const memorySchema = z
  .union(
    [
      z.int({ error: MEMORY }).positive({ error: MEMORY }),
      z.string({ error: MEMORY }).regex(/^\d+(\.\d+)?\s*(B|K|k|M|G|T|Ki|Mi|Gi|Ti)?$/, { error: MEMORY }),
    ],
    { error: MEMORY },
  )
  .transform((v) => {
    if (typeof v === 'number') return v;
    const m = /^(\d+(?:\.\d+)?)\s*([A-Za-z]*)$/.exec(v)!;
    return Math.round(Number(m[1]) * SIZE_UNITS[m[2] ?? '']!);
  });

const DURATION = 'seconds, or a duration like 30s, 2m, 1h';
const durationSecondsSchema = z
  .union(
    [
      z.number({ error: DURATION }).positive({ error: DURATION }),
      z.string({ error: DURATION }).regex(/^\d+(\.\d+)?(ms|s|m|h)$/, { error: DURATION }),
    ],
    { error: DURATION },
  )
  .transform((v) => {
    if (typeof v === 'number') return v;
    const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)$/.exec(v)!;
    const scale = { ms: 0.001, s: 1, m: 60, h: 3600 }[m[2] as 'ms' | 's' | 'm' | 'h'];
    return Number(m[1]) * scale;
  });

const ENV_NAME = 'an environment variable name';
const envValueSchema = z
  .union([z.string(), z.number(), z.boolean()], { error: 'a string, number or boolean' })
  .transform(String);

export const filesystemSchema = z
  .object({
    include_workdir: z.boolean().default(true),
    read_only: z.array(pathSchema).default([]),
    read_write: z.array(pathSchema).default([]),
    hidden: z.array(pathSchema).default([]),
    monitor: z.boolean().default(true),
    // A hard size limit on the workdir (a loop-mounted ext4 image; see src/sandbox/workdir-disk.ts).
    limits: z
      .object({
        workdir: z
          .union([z.literal('none'), memorySchema], { error: `${MEMORY}, or "none"` })
          .refine((v) => v === 'none' || v >= 16 * 1024 ** 2, { error: 'filesystem_policy.limits.workdir must be at least 16Mi (or "none")' })
          .default(20 * 1024 ** 3),
      })
      .strict()
      .prefault({}),
  })
  .prefault({});

export const processSchema = z
  .object({
    run_as_user: z.string().min(1).optional(),
    run_as_group: z.string().min(1).optional(),
    seccomp: z
      .object({ block: z.array(syscallSchema).default([]), allow: z.array(syscallSchema).default([]) })
      .prefault({}),
    limits: z
      .object({
        pids: z.int({ error: 'a whole number of processes' }).min(1).optional(),
        memory: memorySchema.optional(),
        cpu: z.number({ error: 'a number of CPUs (e.g. 1.5)' }).positive().optional(),
      })
      .prefault({}),
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, { error: ENV_NAME }), envValueSchema).default({}),
  })
  .prefault({});

export const approvalsSchema = z
  .object({
    mode: z.enum(['ask', 'deny']).default('ask'),
    timeout: durationSecondsSchema.default(60),
    when_unattended: z.enum(['hold', 'deny']).default('deny'),
    max_pending: z.int().min(1).max(100_000).default(64),
  })
  .prefault({});

/**
 * Only the outline here: the privacy router owns the precise schema (`validateInferencePolicy` in
 * src/inference), which parsePolicy runs on this section and reports with file:line:col.
 */
export const inferenceSchema = z
  .looseObject({
    providers: z.record(z.string(), z.looseObject({})).default({}),
    routes: z.array(z.looseObject({})).default([]),
    redaction: z.looseObject({}).default({}),
    budgets: z.looseObject({}).default({}),
    rate_limits: z.looseObject({}).default({}),
  })
  .prefault({});

const PRESET_NAME = 'a preset name (e.g. npm, github)';
export const presetNameSchema = z.string({ error: PRESET_NAME }).regex(/^[a-z0-9][a-z0-9_-]{0,63}$/, { error: PRESET_NAME });

export const policyFileSchema = z.object({
  version: z.literal(1, { error: '1 (the policy format version)' }),
  presets: z.array(presetNameSchema).default([]),
  filesystem_policy: filesystemSchema,
  landlock: z.record(z.string(), z.unknown()).optional(),
  process: processSchema,
  network_policies: networkPoliciesSchema.default({}),
  approvals: approvalsSchema,
  inference: inferenceSchema,
});

export type PolicyFileData = z.output<typeof policyFileSchema>;

/**
 * NemoClaw's preset header (nemoclaw-blueprint/policies/presets/*.yaml upstream):
 * `preset: { name, description }`. Strict: any other key in it is refused, not skipped.
 */
export const presetHeaderSchema = z.strictObject({
  name: presetNameSchema,
  description: z.string({ error: 'a one-line description' }).optional(),
});

/**
 * A preset: network policies merged into a policy that lists it. Our format (`version`,
 * `description`) and NemoClaw's (`preset: {name, description}`) both load; any other top-level key
 * is reported ("not enforced here") and never applied, and an unknown key inside `preset:` is refused.
 */
export const presetFileSchema = z.object({
  version: z.literal(1, { error: '1 (the policy format version)' }).optional(),
  preset: presetHeaderSchema.optional(),
  description: z.string().optional(),
  network_policies: networkPoliciesSchema.default({}),
});

/** The operator overlay: "always allow / always deny" rules written by the TUI and approvals. */
export const overlayRuleSchema = z.object({
  action: z.enum(['allow', 'deny']),
  host: hostSchema,
  // `any`: every port of the host (the approval chooser's "this host, any port").
  port: z.union([portSchema, z.literal('any')], { error: `${PORT}, or any` }),
  expires_at: z.iso.datetime({ offset: true, error: 'an ISO time (when the time-boxed rule ends)' }).optional(),
  binary: binaryPathSchema.optional(),
  author: z.string().optional(),
  reason: z.string().optional(),
  time: z.string().optional(),
});

export const overlayFileSchema = z.object({
  version: z.literal(1, { error: '1 (the policy format version)' }).default(1),
  rules: z.array(overlayRuleSchema).default([]),
});

export type OverlayFileRule = z.output<typeof overlayRuleSchema>;
