/**
 * Typed client of the control API. The only way the CLI and the TUI talk to a supervisor.
 * Other parts add typed methods for their routes here, built on `request()` and `stream()`.
 */
import { request as httpRequest, type IncomingMessage } from 'node:http';
import type { AuditEvent, EventKind } from '../audit/events.js';
import type { ApprovalDecision, DecideResult, PendingView } from '../egress/index.js';
import type { PolicyRevision, RevisionAuthor } from '../policy/types.js';
import type { RuleRemoval, RuleView } from './types.js';
import type { BudgetCaps, BudgetScope, BudgetSnapshot } from '../inference/index.js';
import { NemoclawError, type ErrorCode } from '../shared/errors.js';
import { DEFAULT_SANDBOX_NAME, nameFlag, resolveHome, sandboxPaths } from '../shared/home.js';

export interface ControlClientOptions {
  socketPath: string;
  /** Sandbox name, used in error messages. */
  sandbox?: string;
  /** Deadline of a plain request (not of streams). Default 10 s. */
  timeoutMs?: number;
}

/** GET /v1/status */
export interface SupervisorStatus {
  name: string;
  pid: number;
  version: string;
  state: 'running' | 'stopping';
  started_at: string;
  uptime_ms: number;
  socket: string;
  home: string;
  unsafe_allow_loopback_upstreams: boolean;
  operators: number;
  last_seq: number;
  policy: {
    revision: number;
    sha256: string;
    author: string;
    time: string;
    /** Packaged presets merged into the running policy (its `presets:`). */
    presets?: string[];
    /** Preset files onboarding wrote into the running base policy (`onboard --preset FILE`). */
    preset_files?: Array<{ name: string; source: string; sha256: string; policies: string[] }>;
  };
  audit: {
    dir: string;
    /** Last durable seq. */
    last_seq: number;
    /** `failing`: the log cannot be written; egress and inference are refused (fail closed). Absent from older supervisors. */
    state?: 'ok' | 'failing';
    /** While failing: the sentence naming the log and the disk, errno, since when, what is lost so far. */
    problem?: string;
    code?: string;
    disk?: string;
    since?: string;
    first_lost_seq?: number;
    lost_records?: number;
  };
  /** The blueprint the sandbox is pinned to (lock file), verified in the store at start; absent when none. */
  blueprint?: { name: string; version: string; digest: string; dir: string; locked_at: string; signer: string };
  services: Record<string, Record<string, unknown>>;
  routes: Array<{ method: string; path: string }>;
}

/**
 * What the rule of a session / always / deny-always decision covers (egress/grant.ts): this or any
 * binary; host:port exactly, the host on any port, or its `*.domain`; a time box (ms, counted on
 * the supervisor's clock) or, for a deny, until restart (`session`).
 */
export interface DecisionScope {
  binary?: 'this' | 'any';
  host?: 'exact' | 'any_port' | 'domain';
  duration_ms?: number;
  session?: boolean;
}

/** GET /v1/quarantine */
export interface QuarantineStatus {
  quarantined: boolean;
  reason?: string;
  since?: string;
  by?: 'cli' | 'tui';
}

export interface PolicyView {
  yaml: string;
  revision: PolicyRevision;
}

export interface PolicySetResult {
  revision: PolicyRevision;
  /** False when the file matched the running policy (no new revision). */
  changed: boolean;
  warnings?: unknown[];
}

export interface EventQuery {
  /** Only events with seq > since. */
  since?: number | undefined;
  /** Only events with ts >= sinceTs (ms epoch). */
  sinceTs?: number | undefined;
  kinds?: EventKind[] | undefined;
  /** At most the last n events of the backlog. */
  n?: number | undefined;
  /** Count this stream as an attached operator (TUI, `logs -f --approver`). */
  approver?: boolean | undefined;
}

/** Lines of an event stream that are not events (they never carry `kind`). */
export interface StreamControl {
  type: 'hello' | 'backlog_end' | 'heartbeat' | 'error' | 'end' | string;
  [field: string]: unknown;
}

export interface FollowCallbacks {
  signal?: AbortSignal | undefined;
  /** The stream broke; a reconnect is scheduled after `delayMs`. */
  onReconnecting?: (info: { attempt: number; delayMs: number; afterSeq: number | undefined; reason: string }) => void;
  /** Connected again; events resume after `afterSeq`. */
  onResumed?: (info: { attempts: number; afterSeq: number | undefined }) => void;
  /** The backlog has been delivered; live events follow. */
  onBacklogEnd?: (lastSeq: number) => void;
  /** Keep retrying when the very first connection fails (default: throw not_running). */
  waitForSupervisor?: boolean;
  /** Backoff bounds (defaults 100 ms .. 5 s). */
  minBackoffMs?: number;
  maxBackoffMs?: number;
}

export interface StreamOptions {
  signal?: AbortSignal | undefined;
  /** Abort the stream when no bytes arrive for this long (the server sends heartbeats). */
  idleTimeoutMs?: number | undefined;
  /** Called with a new idle timeout (e.g. after the server announced its heartbeat interval). */
}

export type StreamEnd = 'eof' | 'aborted';

const EXIT_CODE_FOR: Partial<Record<ErrorCode, number>> = { invalid_input: 2, policy_invalid: 2, policy_static_change: 2 };

function isConnectionError(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'ECONNREFUSED' || code === 'ENOENT' || code === 'ECONNRESET' || code === 'EPIPE' || code === 'ENOTSOCK';
}

export function eventQueryString(q: EventQuery & { follow?: boolean }): string {
  const params = new URLSearchParams();
  if (q.follow) params.set('follow', '1');
  if (q.since !== undefined) params.set('since', String(q.since));
  if (q.sinceTs !== undefined) params.set('since_ts', String(Math.max(0, Math.floor(q.sinceTs))));
  if (q.kinds && q.kinds.length > 0) params.set('kind', q.kinds.join(','));
  if (q.n !== undefined) params.set('n', String(q.n));
  if (q.approver) params.set('approver', '1');
  const s = params.toString();
  return s.length > 0 ? `?${s}` : '';
}

function abortError(): Error {
  const err = new Error('aborted');
  err.name = 'AbortError';
  return err;
}

function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const t = setTimeout(done, ms);
    function done(): void {
      clearTimeout(t);
      signal?.removeEventListener('abort', done);
      resolve();
    }
    signal?.addEventListener('abort', done, { once: true });
  });
}

export class ControlClient {
  readonly socketPath: string;
  readonly sandbox: string;
  private readonly timeoutMs: number;

  constructor(opts: ControlClientOptions) {
    this.socketPath = opts.socketPath;
    this.sandbox = opts.sandbox ?? DEFAULT_SANDBOX_NAME;
    this.timeoutMs = opts.timeoutMs ?? 10_000;
  }

  /** Client of the supervisor of sandbox `name` under `home` ($NEMOCLAW_HOME by default). */
  static forSandbox(name: string = DEFAULT_SANDBOX_NAME, home: string = resolveHome(), opts: { timeoutMs?: number } = {}): ControlClient {
    return new ControlClient({ socketPath: sandboxPaths(name, home).controlSocket, sandbox: name, ...opts });
  }

  notRunningError(cause?: unknown): NemoclawError {
    return new NemoclawError('not_running', `the supervisor of sandbox "${this.sandbox}" is not running (nothing answers on ${this.socketPath})`, {
      nextStep: `start it with \`nemoclaw-tui up${nameFlag(this.sandbox)}\``,
      cause,
    });
  }

  /** Generic JSON request; other parts build their typed methods on it. Throws NemoclawError. */
  async request<T = unknown>(method: string, path: string, body?: unknown, opts: { timeoutMs?: number; signal?: AbortSignal } = {}): Promise<T> {
    const payload = body === undefined ? undefined : Buffer.from(JSON.stringify(body));
    const timeoutMs = opts.timeoutMs ?? this.timeoutMs;
    const { status, text } = await new Promise<{ status: number; text: string }>((resolve, reject) => {
      const req = httpRequest(
        {
          socketPath: this.socketPath,
          method,
          path,
          headers: {
            Accept: 'application/json',
            ...(payload ? { 'Content-Type': 'application/json', 'Content-Length': String(payload.length) } : {}),
          },
          signal: opts.signal,
        },
        (res) => {
          res.setEncoding('utf8');
          let data = '';
          res.on('data', (c: string) => (data += c));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, text: data }));
          res.on('error', reject);
        },
      );
      req.setTimeout(timeoutMs, () => {
        req.destroy(
          new NemoclawError('not_running', `the supervisor of sandbox "${this.sandbox}" did not answer ${method} ${path} within ${timeoutMs} ms`, {
            nextStep: 'check `nemoclaw-tui status` and the supervisor log; restart it with `nemoclaw-tui down` then `nemoclaw-tui up`',
          }),
        );
      });
      req.on('error', (err) => reject(isConnectionError(err) ? this.notRunningError(err) : err));
      req.end(payload);
    });
    let parsed: unknown = undefined;
    if (text.length > 0) {
      try {
        parsed = JSON.parse(text) as unknown;
      } catch {
        throw new NemoclawError('internal', `the supervisor answered ${method} ${path} with something that is not JSON (HTTP ${status})`);
      }
    }
    if (status >= 400) throw errorFromBody(status, parsed);
    return parsed as T;
  }

  /**
   * Generic NDJSON stream: calls onLine for every parsed line until the server ends the stream,
   * the signal aborts, or nothing (not even a heartbeat) arrives for idleTimeoutMs.
   * `onLine` may return a new idle timeout (e.g. after the server announced its heartbeat interval).
   */
  stream(path: string, onLine: (obj: Record<string, unknown>) => number | void, opts: StreamOptions = {}): Promise<StreamEnd> {
    return new Promise<StreamEnd>((resolve, reject) => {
      const signal = opts.signal;
      if (signal?.aborted) return resolve('aborted');
      let idleMs = opts.idleTimeoutMs;
      let idleTimer: NodeJS.Timeout | undefined;
      let settled = false;
      const finish = (fn: () => void): void => {
        if (settled) return;
        settled = true;
        if (idleTimer) clearTimeout(idleTimer);
        signal?.removeEventListener('abort', onAbort);
        fn();
      };
      const onAbort = (): void => {
        req.destroy(abortError());
        finish(() => resolve('aborted'));
      };
      const armIdle = (): void => {
        if (idleTimer) clearTimeout(idleTimer);
        if (idleMs === undefined) return;
        idleTimer = setTimeout(() => {
          const err = new NemoclawError('not_running', `no data or heartbeat from the supervisor of sandbox "${this.sandbox}" for ${idleMs} ms`);
          req.destroy(err);
          finish(() => reject(err));
        }, idleMs);
      };
      const req = httpRequest(
        { socketPath: this.socketPath, method: 'GET', path, headers: { Accept: 'application/x-ndjson' } },
        (res: IncomingMessage) => {
          if ((res.statusCode ?? 0) >= 400) {
            let data = '';
            res.setEncoding('utf8');
            res.on('data', (c: string) => (data += c));
            res.on('end', () => {
              let parsed: unknown;
              try {
                parsed = JSON.parse(data) as unknown;
              } catch {
                parsed = undefined;
              }
              finish(() => reject(errorFromBody(res.statusCode ?? 500, parsed)));
            });
            return;
          }
          armIdle();
          res.setEncoding('utf8');
          let buf = '';
          res.on('data', (chunk: string) => {
            armIdle();
            buf += chunk;
            let nl: number;
            while ((nl = buf.indexOf('\n')) >= 0) {
              const line = buf.slice(0, nl).trim();
              buf = buf.slice(nl + 1);
              if (line.length === 0) continue;
              let obj: Record<string, unknown>;
              try {
                obj = JSON.parse(line) as Record<string, unknown>;
              } catch {
                continue; // a torn line from a dying server; the resume logic refills it
              }
              try {
                const next = onLine(obj);
                if (typeof next === 'number') {
                  idleMs = next;
                  armIdle();
                }
              } catch (err) {
                req.destroy();
                finish(() => reject(err));
                return;
              }
              if (settled) return;
            }
          });
          res.on('end', () => finish(() => resolve('eof')));
          res.on('error', (err) => finish(() => (signal?.aborted ? resolve('aborted') : reject(isConnectionError(err) ? this.notRunningError(err) : err))));
          res.on('close', () => finish(() => resolve('eof')));
        },
      );
      req.on('error', (err) => {
        if (signal?.aborted) return finish(() => resolve('aborted'));
        finish(() => reject(isConnectionError(err) ? this.notRunningError(err) : err));
      });
      signal?.addEventListener('abort', onAbort, { once: true });
      req.end();
    });
  }

  // ---- typed routes -------------------------------------------------------------------------

  status(): Promise<SupervisorStatus> {
    return this.request<SupervisorStatus>('GET', '/v1/status');
  }

  /** Backlog only (no follow): events matching the query, oldest first. */
  async events(query: EventQuery = {}): Promise<AuditEvent[]> {
    const out: AuditEvent[] = [];
    await this.stream(`/v1/events${eventQueryString(query)}`, (obj) => {
      if (typeof obj.kind === 'string') out.push(obj as AuditEvent);
    });
    return out;
  }

  /**
   * Backlog then live events until the signal aborts. Reconnects with backoff when the supervisor
   * goes away (restart, crash, slow-client drop) and resumes after the last seq seen, so no audited
   * event is missed or repeated. Throws not_running when the very first connection fails (unless
   * waitForSupervisor), and any non-connection error (e.g. an invalid query).
   */
  async followEvents(query: EventQuery, onEvent: (event: AuditEvent) => void, cb: FollowCallbacks = {}): Promise<void> {
    const signal = cb.signal;
    const minBackoff = cb.minBackoffMs ?? 100;
    const maxBackoff = cb.maxBackoffMs ?? 5_000;
    let resumeAfter: number | undefined = query.since;
    let everConnected = false;
    let attempts = 0;
    let reason = '';
    while (!signal?.aborted) {
      const q: EventQuery & { follow: boolean } = { ...query, follow: true };
      if (everConnected) {
        q.since = resumeAfter;
        q.n = undefined;
        q.sinceTs = undefined;
      }
      let helloSeq: number | undefined;
      let connectedThisTime = false;
      try {
        await this.stream(
          `/v1/events${eventQueryString(q)}`,
          (obj) => {
            if (typeof obj.kind === 'string') {
              const e = obj as AuditEvent;
              if (e.transient !== true && typeof e.seq === 'number') resumeAfter = Math.max(resumeAfter ?? 0, e.seq);
              onEvent(e);
              return;
            }
            const ctl = obj as StreamControl;
            if (ctl.type === 'hello') {
              helloSeq = typeof ctl.last_seq === 'number' ? ctl.last_seq : undefined;
              const resumed = everConnected;
              everConnected = true;
              connectedThisTime = true;
              if (resumed) cb.onResumed?.({ attempts, afterSeq: resumeAfter });
              attempts = 0;
              const hb = typeof ctl.heartbeat_ms === 'number' ? ctl.heartbeat_ms : 5_000;
              return hb * 3 + 1_000;
            }
            if (ctl.type === 'backlog_end') {
              // Everything up to the hello's seq was either delivered or filtered out.
              if (helloSeq !== undefined) resumeAfter = Math.max(resumeAfter ?? 0, helloSeq);
              cb.onBacklogEnd?.(resumeAfter ?? 0);
              return;
            }
            if (ctl.type === 'error') reason = String(ctl.message ?? ctl.error ?? 'stream error');
            if (ctl.type === 'end') reason = `supervisor ended the stream: ${String(ctl.reason ?? '')}`;
            return;
          },
          { signal, idleTimeoutMs: 5_000 },
        );
        if (signal?.aborted) return;
        if (!reason) reason = 'the supervisor closed the stream';
      } catch (err) {
        if (signal?.aborted) return;
        const notRunning = err instanceof NemoclawError && err.code === 'not_running';
        if (!notRunning) throw err;
        if (!everConnected && !cb.waitForSupervisor) throw err;
        reason = err.message;
      }
      if (connectedThisTime) reason ||= 'connection lost';
      attempts++;
      const exp = Math.min(maxBackoff, minBackoff * 2 ** Math.min(attempts - 1, 20));
      const delayMs = Math.round(exp / 2 + Math.random() * (exp / 2));
      cb.onReconnecting?.({ attempt: attempts, delayMs, afterSeq: resumeAfter, reason });
      reason = '';
      await sleep(delayMs, signal);
    }
  }

  /** Effective policy (canonical YAML of base + presets + overlay) and its revision. */
  getPolicy(): Promise<PolicyView> {
    return this.request<PolicyView>('GET', '/v1/policy');
  }

  /** Apply a new base policy. Throws policy_invalid (details: issues) or policy_static_change. */
  setPolicy(yaml: string, opts: { author?: RevisionAuthor; source?: string } = {}): Promise<PolicySetResult> {
    return this.request<PolicySetResult>('PUT', '/v1/policy', { yaml, author: opts.author ?? 'cli', source: opts.source });
  }

  async policyHistory(): Promise<PolicyRevision[]> {
    const out = await this.request<{ revisions: PolicyRevision[] }>('GET', '/v1/policy/history');
    return out.revisions;
  }

  /** Privacy router budget: caps, usage and remaining per window (GET /v1/budget). */
  budget(): Promise<BudgetSnapshot> {
    return this.request<BudgetSnapshot>('GET', '/v1/budget');
  }

  /** Raise (or lower) a privacy router budget cap at run time; persisted (POST /v1/budget). */
  setBudget(scope: BudgetScope, caps: BudgetCaps): Promise<BudgetSnapshot> {
    return this.request<BudgetSnapshot>('POST', '/v1/budget', { scope, ...caps });
  }

  /** Requests held for (or refused while waiting for) an operator's decision. */
  async pending(): Promise<PendingView[]> {
    const out = await this.request<{ pending: PendingView[] }>('GET', '/v1/pending');
    return out.pending;
  }

  /**
   * Decide a pending request: once, session, always, deny or deny_always. Throws not_found for an
   * unknown id. `reason` (optional, the operator's words) goes into the audit event and, for a deny,
   * into the 403 the agent gets; the supervisor strips control characters and bounds its length.
   */
  decide(id: string, decision: ApprovalDecision, by: 'cli' | 'tui' = 'cli', reason?: string, scope?: DecisionScope): Promise<DecideResult> {
    return this.request<DecideResult>('POST', `/v1/pending/${encodeURIComponent(id)}`, {
      decision,
      by,
      ...(reason !== undefined && reason !== '' ? { reason } : {}),
      ...(scope && Object.keys(scope).length > 0 ? { scope } : {}),
    });
  }

  /** The operator's rules: overlay (always, time-boxed) and session ones (GET /v1/rules). */
  async rules(): Promise<RuleView[]> {
    const out = await this.request<{ rules: RuleView[] }>('GET', '/v1/rules');
    return out.rules;
  }

  /** Remove an operator rule by id: a new policy revision. Throws not_found for an unknown id. */
  removeRule(id: string, by: 'cli' | 'tui' = 'cli', reason?: string): Promise<RuleRemoval> {
    const q = new URLSearchParams({ by, ...(reason ? { reason } : {}) });
    return this.request<RuleRemoval>('DELETE', `/v1/rules/${encodeURIComponent(id)}?${q.toString()}`);
  }

  /** Quarantine state (GET /v1/quarantine). */
  quarantineStatus(): Promise<QuarantineStatus> {
    return this.request<QuarantineStatus>('GET', '/v1/quarantine');
  }

  /** The kill switch: stop the agent, refuse all egress and inference, until released (POST /v1/quarantine). */
  quarantine(reason: string | undefined, by: 'cli' | 'tui' = 'cli'): Promise<QuarantineStatus & { already: boolean }> {
    return this.request<QuarantineStatus & { already: boolean }>('POST', '/v1/quarantine', { by, ...(reason ? { reason } : {}) }, { timeoutMs: 30_000 });
  }

  /** Lift a quarantine (DELETE /v1/quarantine). Throws not_found when none is in force. */
  releaseQuarantine(by: 'cli' | 'tui' = 'cli', reason?: string): Promise<QuarantineStatus & { released: boolean }> {
    const q = new URLSearchParams({ by, ...(reason ? { reason } : {}) });
    return this.request<QuarantineStatus & { released: boolean }>('DELETE', `/v1/quarantine?${q.toString()}`);
  }

  /** Ask the supervisor to stop cleanly (it flushes the audit log); returns its pid. */
  async shutdown(): Promise<{ pid: number }> {
    return this.request<{ pid: number }>('POST', '/v1/shutdown');
  }
}

function errorFromBody(status: number, body: unknown): NemoclawError {
  const b = (body ?? {}) as { error?: unknown; message?: unknown; next_step?: unknown; details?: unknown };
  const code = (typeof b.error === 'string' ? b.error : status === 404 ? 'not_found' : 'internal') as ErrorCode;
  const message = typeof b.message === 'string' ? b.message : `the supervisor answered HTTP ${status}`;
  const opts: { nextStep?: string; exitCode?: number; details?: unknown } = { details: b.details };
  if (typeof b.next_step === 'string') opts.nextStep = b.next_step;
  const exit = EXIT_CODE_FOR[code];
  if (exit !== undefined) opts.exitCode = exit;
  return new NemoclawError(code, message, opts);
}
