/**
 * The policy document (YAML, `version: 1`), OpenShell/NemoClaw compatible plus our `approvals`
 * and `inference` sections. This is the normalised shape after parsing and validation; the zod
 * schema in schema.ts is the source of truth for what a file may contain.
 */
export interface FilesystemPolicy {
  include_workdir: boolean;
  read_only: string[];
  read_write: string[];
  /** Never bound into the sandbox; a read attempt is an fs.violation. */
  hidden: string[];
  /** Run the filesystem-violation monitor (strace). Default true. */
  monitor: boolean;
  /** `workdir`: bytes the workdir may hold (a loop-mounted image), or 'none'. Default 20Gi. */
  limits?: { workdir: number | 'none' };
}

export interface ProcessPolicy {
  run_as_user?: string;
  run_as_group?: string;
  seccomp: {
    /** Extra syscalls to block (names). */
    block: string[];
    /** Syscalls to allow even if the baseline blocks them (names). */
    allow: string[];
  };
  limits: {
    pids?: number;
    /** Bytes (the file may say "2Gi", "512Mi"). */
    memory?: number;
    /** CPUs (fractional allowed, e.g. 1.5). */
    cpu?: number;
  };
  /** Environment variables passed into the sandbox (name → value); nothing else is. */
  env: Record<string, string>;
}

export type HttpMethod = string; // upper-case, or "*"

/** A query-value matcher: a glob, `{glob}`, or `{any: [globs]}` (OpenShell's shapes). */
export type QueryMatcher = string | { glob: string } | { any: string[] };

export interface L7Rule {
  /** Upper-case method or `*`; `HEAD` requests match `GET`. '' = the rule matches no request (OpenShell: an `allow` without `method`). */
  method: HttpMethod;
  /** Glob over the canonical path: `*` one segment part, `**` any depth. '' = matches no request. */
  path: string;
  /** Per-key matchers of the decoded query (allow: every value of each key must match; deny: any value). */
  query?: Record<string, QueryMatcher>;
}

export interface Endpoint {
  /**
   * Host name or IP; `*` matches exactly one DNS label (`*.x.com` matches `a.x.com`, not `x.com`, not
   * `a.b.x.com`); a first label `**` matches one or more labels. '' = hostless: any host on these
   * ports whose addresses are all inside `allowed_ips` (OpenShell's "mode 3").
   */
  host: string;
  /** Scopes the endpoint's L7 checks to request paths matching this glob (OpenShell `path`). */
  path?: string;
  /** Keep `%2F` in paths (refused by default). */
  allow_encoded_slash?: boolean;
  ports: number[];
  protocol?: 'rest' | 'tcp' | string;
  access?: 'read-only' | 'read-write' | 'full';
  rules: L7Rule[];
  deny_rules: L7Rule[];
  /** CIDRs this endpoint may resolve to even when private (RFC 1918, CGNAT, ULA). */
  allowed_ips: string[];
  enforcement?: 'enforce' | 'audit';
  tls?: string;
}

export interface Binary {
  /** Absolute path or glob (`/usr/bin/*`). */
  path: string;
}

export interface NetworkPolicy {
  name: string;
  endpoints: Endpoint[];
  /**
   * Programs that may use the endpoints (the client or any ancestor). Empty on an allow policy = no
   * program (OpenShell's meaning); `/**` = every program; empty on a deny policy = every program.
   */
  binaries: Binary[];
  /** Our addition: `deny` rules are checked before every allow. Default `allow`. */
  action: 'allow' | 'deny';
  /**
   * The refusal reason of a deny policy, instead of "denied by NAME" (set only by the supervisor,
   * for the quarantine's deny-all; policy files cannot set it).
   */
  refusal?: string;
}

export interface ApprovalsPolicy {
  mode: 'ask' | 'deny';
  /** Seconds a held request waits. */
  timeout: number;
  /** What happens when no operator is attached. */
  when_unattended: 'hold' | 'deny';
  /** Bound of the pending queue. */
  max_pending: number;
}

/** The section as written (validated at parse time by the router's schema; the router normalises it). */
export interface InferencePolicy {
  providers: Record<string, Record<string, unknown>>;
  routes: Array<Record<string, unknown>>;
  redaction: Record<string, unknown>;
  budgets: Record<string, unknown>;
  rate_limits: Record<string, unknown>;
  [extra: string]: unknown;
}

export interface PolicyDocument {
  version: 1;
  filesystem_policy: FilesystemPolicy;
  process: ProcessPolicy;
  /** OpenShell's landlock block; accepted, reported as not enforced here. */
  landlock?: Record<string, unknown>;
  network_policies: Record<string, NetworkPolicy>;
  approvals: ApprovalsPolicy;
  inference: InferencePolicy;
  /** Names of presets merged into this document. */
  presets: string[];
}

/** What the egress proxy asks. */
export interface NetworkQuery {
  host: string;
  port: number;
  /** Absolute path of the client binary inside the sandbox, when known. */
  binary?: string | undefined;
  /** Executables of the client's ancestors (parent first), when known: a rule naming one of them covers the client too. */
  ancestors?: readonly string[] | undefined;
  method?: string | undefined;
  path?: string | undefined;
}

export interface NetworkDecision {
  verdict: 'allow' | 'deny' | 'unknown';
  /** `policyName/endpointIndex` of the rule that decided, or undefined. */
  rule?: string | undefined;
  /** Why, in words (for refusals and events). */
  reason: string;
  /** The matched endpoint, for L7 and allowed_ips checks. */
  endpoint?: Endpoint | undefined;
  /**
   * An L4 allow where another rule on this host:port (for this program) refuses some requests
   * (`deny_rules`, or a deny policy with rules): each request must be checked, and a tunnel
   * decrypted, even when the deciding endpoint has no L7 rules of its own.
   */
  inspect?: boolean;
}

/** `expiry`: the store removing a time-boxed operator rule whose time was up. */
export type RevisionAuthor = 'cli' | 'tui' | 'approval' | 'startup' | 'onboard' | 'expiry';

export interface PolicyRevision {
  number: number;
  sha256: string;
  author: RevisionAuthor;
  /** ISO time. */
  time: string;
  /** Unified diff of the canonical YAML against the previous revision. */
  diff: string;
  /** Free-text reason (e.g. "always allow api.x.com:443 (pending p-12)"). */
  reason?: string;
}
