/**
 * The narrow view of the control API the TUI needs. Tests drive the UI with a fake; the real one
 * is an adapter over ControlClient (components/control-adapter.ts). Nothing in components/ talks
 * to the supervisor any other way.
 */
import type { TuiEvent } from './selectors.js';

/** How a held request is answered (`POST /v1/pending/:id`). */
export type ApprovalDecision = 'once' | 'session' | 'always' | 'deny' | 'deny_always';

/** What a decision's rule covers, exactly as chosen (sent as `scope` with POST /v1/pending/:id). */
export interface DecisionScope {
  binary?: 'this' | 'any';
  host?: 'exact' | 'any_port' | 'domain';
  /** A time box, counted on the supervisor's clock. */
  duration_ms?: number;
  /** A deny until the supervisor restarts. */
  session?: boolean;
}

export interface FollowHandlers {
  onEvent(event: TuiEvent): void;
  /** The stream is (again) delivering events. */
  onOpen?(): void;
  /** The stream dropped; the client is trying again. */
  onLost?(reason: string): void;
}

export interface PolicyRevisionInfo {
  number: number | string;
  time?: string;
  author?: string;
  reason?: string;
  sha256?: string;
}

export interface PolicyView {
  revision: number | string;
  yaml: string;
  history: PolicyRevisionInfo[];
}

export interface TuiClient {
  /** `GET /v1/status`: name, state, policy revision, start time, budget… (read defensively). */
  status(): Promise<Record<string, unknown>>;
  /** Held requests awaiting a decision. */
  pending(): Promise<Record<string, unknown>[]>;
  /**
   * `reason`: the operator's words (a deny's reason), for the audit log and the agent's refusal.
   * `scope`: what the rule of a session / always / deny-always decision covers (the scope chooser).
   */
  decide(id: string, decision: ApprovalDecision, reason?: string, scope?: DecisionScope): Promise<void>;
  /**
   * Follow live events (with a short backlog) until `signal` aborts. Resolves on abort; rejects
   * when the supervisor cannot be reached (the caller shows a banner and tries again).
   */
  follow(handlers: FollowHandlers, signal: AbortSignal): Promise<void>;
  policy(): Promise<PolicyView>;
  /** Current budget usage and caps, or undefined when the supervisor has no budgets. */
  budget(): Promise<Record<string, unknown> | undefined>;
  /** Raise the token/cost caps; resolves to a one-line description of what changed. */
  raiseBudget(): Promise<string>;
  /** The operator's rules (`GET /v1/rules`): id, scope, action, host, port, binary, expires_at… (read defensively). */
  rules(): Promise<Record<string, unknown>[]>;
  /** Remove an operator rule (a policy revision); resolves to a one-line description of what was removed. */
  removeRule(id: string): Promise<string>;
  /** The kill switch: stop the agent, refuse all egress and inference; resolves to a one-line description. */
  quarantine(reason: string | undefined): Promise<string>;
}
