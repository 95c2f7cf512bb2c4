/**
 * Contracts between the supervisor and its parts. The supervisor (src/control/supervisor.ts)
 * owns the event bus, the policy store and the control API; every other part (egress proxy,
 * sandbox driver, privacy router, meters, agent) is a SupervisorService listed in
 * src/control/services.ts, started in order and stopped in reverse.
 */
import type { AuditEvent, EventInput, EventKind } from '../audit/events.js';
import type { Clock } from '../shared/clock.js';
import type { HomePaths, SandboxPaths } from '../shared/home.js';
import type {
  NetworkDecision,
  NetworkQuery,
  PolicyDocument,
  PolicyRevision,
  RevisionAuthor,
} from '../policy/types.js';

export interface EventFilter {
  kinds?: EventKind[] | undefined;
  /** Only events with seq > sinceSeq. */
  sinceSeq?: number | undefined;
  /** Only events with ts >= sinceTs (ms epoch). */
  sinceTs?: number | undefined;
}

export interface EventBus {
  /** Append to the audit log (chained, group-committed fsync); subscribers get it once durable.
   *  Never throws on I/O: when the log cannot be written it fails closed (see durable/auditProblem). */
  emit(input: EventInput): AuditEvent;
  /** Write-ahead gate: resolves once every event emitted so far is durable; rejects
   *  (AuditUnavailableError, message names the log and the disk) when the log lost any. */
  durable(): Promise<void>;
  /** Resolves when the audit log takes writes (at once, or after it resumed from a failure). */
  writable(): Promise<void>;
  /** Why the audit log refuses writes now, or undefined while it is healthy. */
  auditProblem(): string | undefined;
  /** Publish to live subscribers only (high-rate samples); not chained, seq is the last audited seq. */
  publishTransient(input: EventInput): AuditEvent;
  /** Live subscription; returns an unsubscribe function. */
  subscribe(listener: (event: AuditEvent) => void, filter?: EventFilter): () => void;
  /**
   * Backlog: audited events matching the filter, oldest first (from memory, then disk). With a
   * limit, the newest `limit` of them, or with `first` the oldest `limit` (one page of a long backlog).
   */
  backlog(filter?: EventFilter, limit?: number, opts?: { first?: boolean }): Promise<AuditEvent[]>;
  /** The last seq assigned (its record may not be durable yet). */
  lastSeq(): number;
  /** The last durable seq: what subscribers have been (or are being) given. Hello and heartbeat lines
   *  carry this one, so a follower never resumes past a seq that was lost (and reused after a crash). */
  durableSeq(): number;
}

export interface PolicyStore {
  current(): PolicyDocument;
  revision(): PolicyRevision;
  history(): PolicyRevision[];
  /** Fast compiled matcher over policy + overlay (+ session rules). */
  decideNetwork(query: NetworkQuery): NetworkDecision;
  /** Validate and apply a new base policy (YAML text). Static sections may not change.
   *  Throws NemoclawError('policy_invalid' | 'policy_static_change'); the running revision stays. */
  apply(yamlText: string, author: RevisionAuthor, source?: string): Promise<PolicyRevision>;
  /** Add an "always allow" / "always deny" rule to the operator overlay (persisted; new revision). */
  addOverlayRule(rule: OverlayRule, author: RevisionAuthor, reason?: string): Promise<PolicyRevision>;
  /** Session-scoped allow (until the supervisor restarts); no revision, but an event. */
  addSessionAllow(rule: OverlayRule): void;
  /** Session-scoped allow or deny (until the supervisor restarts); no revision. */
  addSessionRule(rule: OverlayRule): void;
  /** The operator's rules: overlay (always / time-boxed) and session ones, oldest first. */
  rules(): RuleView[];
  /** Remove a rule by id (a new revision, audit-logged). Throws not_found for an unknown id. */
  removeRule(id: string, author: RevisionAuthor, reason?: string): Promise<RuleRemoval>;
  /**
   * Quarantine (the kill switch): with a refusal text, a deny-all for every host, port and program
   * is merged on top of everything (a new revision); undefined lifts it (a new revision).
   */
  setQuarantine(refusal: string | undefined, author: RevisionAuthor, reason: string): Promise<PolicyRevision>;
  /** Remove time-boxed rules whose time is up (a revision when any were); the store also does it on a timer. */
  expireDue(): Promise<PolicyRevision | undefined>;
  onChange(listener: (rev: PolicyRevision, doc: PolicyDocument) => void): () => void;
  /** Canonical YAML of the effective policy. */
  effectiveYaml(): string;
}

export interface OverlayRule {
  action: 'allow' | 'deny';
  /** A host name, IP, or `*` label glob (`*.example.com`, the chooser's "any host of the domain"). */
  host: string;
  /** `'any'`: every port of the host (the chooser's "this host, any port"). */
  port: number | 'any';
  /** Binary path the rule is scoped to; undefined = any binary. */
  binary?: string | undefined;
  /** ISO time after which a time-boxed rule no longer applies (it is then removed, a revision); undefined = until removed. */
  expires_at?: string | undefined;
}

/** One operator rule as `rules list` shows it (GET /v1/rules). */
export interface RuleView {
  /** Stable id (`r-…` overlay, `s-…` session), derived from what the rule covers. */
  id: string;
  /** `overlay`: written to overlay.yaml (survives restarts); `session`: until the supervisor restarts. */
  scope: 'overlay' | 'session';
  action: 'allow' | 'deny';
  host: string;
  port: number | 'any';
  binary: string | null;
  expires_at: string | null;
  /** Time left of a time-boxed rule (ms), at the time of the answer. */
  expires_in_ms: number | null;
  author: string | null;
  time: string | null;
  reason: string | null;
  /** The network policy name it appears under in the effective policy (and in events' `rule`). */
  policy: string;
}

export interface RuleRemoval {
  removed: RuleView;
  revision: PolicyRevision;
}

export interface RouteRequest {
  method: string;
  /** Path without query string. */
  path: string;
  params: Record<string, string>;
  query: URLSearchParams;
  /** Parsed JSON body (undefined when none). */
  body: unknown;
  headers: Record<string, string | string[] | undefined>;
}

export interface RouteResponse {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

export interface ControlRoute {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  /** `/v1/pending/:id` style; `:name` segments become params. */
  path: string;
  handler(req: RouteRequest): Promise<RouteResponse> | RouteResponse;
}

/** Operators attached right now (TUIs and `logs -f --approver` followers). */
export interface OperatorPresence {
  attachedCount(): number;
  onChange(listener: (count: number) => void): () => void;
}

export interface SupervisorOptions {
  /** Test-only: lets the egress proxy dial loopback upstreams. Reported in status and every event. */
  unsafeAllowLoopbackUpstreams: boolean;
  /** Extra options parts may read (e.g. blueprint name, workdir). */
  [key: string]: unknown;
}

export interface SupervisorContext {
  name: string;
  paths: SandboxPaths;
  home: HomePaths;
  clock: Clock;
  events: EventBus;
  policy: PolicyStore;
  operators: OperatorPresence;
  options: SupervisorOptions;
  /** Look up another started service by name (e.g. the sandbox driver asks for the egress proxy's socket). */
  service<T extends SupervisorService>(name: string): T | undefined;
}

export interface SupervisorService {
  readonly name: string;
  start(ctx: SupervisorContext): Promise<void>;
  /** Must not throw; release everything (flush, kill children by pid). */
  stop(): Promise<void>;
  /** Merged into GET /v1/status under `services[name]`. */
  status?(): Record<string, unknown>;
  routes?(): ControlRoute[];
}
