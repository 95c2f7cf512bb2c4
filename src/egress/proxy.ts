/**
 * The egress proxy: every outbound connection of the sandbox arrives here (Unix socket bridged
 * into the sandbox). Absolute-form `http://` requests and `CONNECT host:port` are parsed strictly
 * (parser.ts), decided (explicit deny → allow → held for the operator → deny), checked by the SSRF
 * guard (ssrf.ts) and then forwarded to exactly the address that was checked. Plain HTTP (also
 * inside a CONNECT tunnel) is checked per request by the L7 rules.
 */
import { Agent, request as httpRequest, type ClientRequest, type IncomingMessage } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect as netConnect, createServer, isIP, type Server, type Socket } from 'node:net';
import { TLSSocket, createSecureContext, getCACertificates, type SecureContext } from 'node:tls';
import { rm } from 'node:fs/promises';
import { createHash } from 'node:crypto';
import type { EventInput } from '../audit/events.js';
import type { OverlayRule } from '../control/types.js';
import type { ApprovalsPolicy, Endpoint, NetworkDecision, NetworkQuery } from '../policy/types.js';
import type { Clock } from '../shared/clock.js';
import { NemoclawError, previewJson } from '../shared/errors.js';
import { listenUnixSocket } from '../shared/socket.js';
import { WebSocketTextGate, canonicalL7Target, endpointHasL7, tlsSkipConflict, tunnelNeedsInspection, upgradeKind, websocketAccept, websocketCloseFrame } from './l7.js';
import { ChunkedDecoder, MAX_HEAD_BYTES, firstSignificantByte, parseRequestHead, type Authority, type RequestHead } from './parser.js';
import { describeRule, ruleFields, ruleForDecision, type GrantScope } from './grant.js';
import { cleanDecisionReason, PendingQueue, type ApprovalDecision, type DecidedBy, type HoldOutcome, type PendingView } from './pending.js';
import { canonicalHost, guardDestination, systemResolver, type Resolver } from './ssrf.js';
import { binaryOfHolders, compareHolders, type SocketHolders } from './identity.js';
import type { TransparentTarget } from './transparent.js';

export const INFERENCE_HOST = 'inference.local';

export type RefusalCode = 'policy_denied' | 'ssrf_denied' | 'approval_timeout' | 'queue_full' | 'client_gone' | 'audit_unavailable';

export interface EgressProxyOptions {
  decide(query: NetworkQuery): NetworkDecision;
  approvals(): ApprovalsPolicy;
  operatorsAttached(): number;
  emit(event: EventInput): void;
  /**
   * Write-ahead (DESIGN invariant 2), from the event bus: nothing is forwarded before every event
   * emitted for it is durable (`durable()`); while the audit log cannot be written (`problem()`
   * says why) new requests are refused with 503 audit_unavailable, and a held request that gets
   * approved waits for `writable()`. Omitted: events are taken as durable (tests, benches).
   */
  audit?: { durable(): Promise<void>; writable(): Promise<void>; problem(): string | undefined };
  clock: Clock;
  resolver?: Resolver;
  /** Test-only: lets upstreams on loopback through the SSRF guard. Reported in every event. */
  unsafeAllowLoopbackUpstreams?: boolean;
  /** Binary identity of the client connection (best effort; undefined = unknown). */
  identify?(socket: Socket): Promise<string | undefined>;
  /**
   * Every process holding the client connection (identity.ts). When given, it also serves as
   * `identify`, and the holders are looked up again right before a request whose decision the
   * binary took part in is forwarded (after any hold, and on each keep-alive or tunnelled request):
   * a different holder set, or more than one distinct executable, refuses it (policy_denied).
   */
  holders?(socket: Socket): Promise<SocketHolders | undefined>;
  /**
   * Whether a policy rule with `binaries[]` could match (host, port). When false, the decision
   * does not depend on the binary, so identity (~25 ms per new connection) is looked up in the
   * background for the events only. Default: always true (identity awaited before deciding).
   */
  binaryMatters?(host: string, port: number): boolean;
  /** Unix socket of the privacy router, or undefined when it is not running. */
  inferenceSocket?(): string | undefined;
  /** Side effects of session / always / deny-always decisions (policy store). */
  addSessionAllow?(rule: OverlayRule): void;
  addOverlayRule?(rule: OverlayRule, reason: string): Promise<unknown>;
  /** A session (until restart) deny, or an allow of a wider scope than the session decision's. */
  addSessionRule?(rule: OverlayRule): void;
  /**
   * Deadline for a request head, counted from its first byte however slowly the rest arrives (a
   * trickled head gets 408 and the connection is closed); also the idle time allowed between
   * keep-alive requests (default 30 s).
   */
  headTimeoutMs?: number;
  /** Upstream connect timeout (default 10 s). */
  connectTimeoutMs?: number;
  /** How long a request refused while nobody was attached stays in `pending` (default 10 min). */
  unattendedTtlMs?: number;
  /**
   * TLS termination (the per-sandbox CA, tls.ts): CONNECT tunnels to L7 endpoints and to
   * inference.local:443 are decrypted with a leaf for the host, checked per request, and
   * re-originated with TLS. Without it such tunnels are refused (L7 cannot be enforced).
   */
  tls?: { contextFor(host: string): Promise<SecureContext> };
  /** Roots that verify re-originated upstream TLS (default: Node's bundled roots + the system's). */
  upstreamCa?: string | string[];
}

export interface DecideResult {
  pending: PendingView;
  decision: ApprovalDecision;
  latency_ms: number;
  /** Held requests this decision resumed (or refused): the waiters still connected when it was made. */
  waiters: number;
  /**
   * True when the entry had been dropped because every client closed its connection while held:
   * nothing was forwarded (a session/always/deny-always rule is still written).
   */
  client_gone?: boolean;
  /** The rule the decision wrote (session / always / deny-always / time-boxed): exactly its scope. */
  rule?: OverlayRule;
}

export interface EgressCounters {
  connections: number;
  open_connections: number;
  open_tunnels: number;
  requests: number;
  allowed: number;
  denied: number;
  held: number;
  approved: number;
  ssrf_denied: number;
  parse_errors: number;
  revoked: number;
  /** CONNECT tunnels decrypted for L7 (TLS termination). */
  tls_terminated: number;
  /** Client TLS handshakes that failed (usually: the client does not trust the sandbox CA). */
  tls_handshake_failed: number;
  /** Request heads not complete within headTimeoutMs of their first byte (answered 408). */
  head_timeouts: number;
  /** WebSocket upgrades answered 101 by the upstream and relayed. */
  websocket_upgrades: number;
}

export interface EgressProxy {
  listen(target: string | { host: string; port: number }): Promise<void>;
  /**
   * Also accept on a listening socket made elsewhere (a sandbox's 127.0.0.1:3128, created in its
   * network namespace): same handling as `listen`. `onAccept` sees each socket first. Returns a
   * function that stops accepting there (open connections stay until they end or close()).
   */
  adopt(listener: Server, opts?: { onAccept?: (socket: Socket) => void; transparent?: (socket: Socket) => Promise<TransparentTarget | undefined> }): () => Promise<void>;
  /** TCP port when listening on TCP. */
  port(): number | undefined;
  close(): Promise<void>;
  pending(): PendingView[];
  /** `reason`: the operator's words (cleaned); into the audit event, and for a deny into the 403 body. */
  decide(id: string, decision: ApprovalDecision, by: 'cli' | 'tui', reason?: string, scope?: GrantScope): Promise<DecideResult>;
  /** Re-check open tunnels, keep-alive connections and held requests against the new policy. */
  policyChanged(revision?: number): void;
  counters(): EgressCounters;
}

interface Admission {
  host: string;
  port: number;
  binary: string | undefined;
  /** 'approval' when an operator let it through (once/session). */
  source: 'policy' | 'approval';
  rule: string | undefined;
  endpoint: Endpoint | undefined;
  /** The client's ancestors inside the sandbox when identified (a policy naming one covers it). */
  ancestors: readonly string[] | undefined;
  /** Requests must be checked (a tunnel decrypted) although `endpoint` has no L7 rules: see NetworkDecision.inspect. */
  inspect: boolean;
  address: string;
  family: 4 | 6;
  generation: number;
}

/** How long a refused tunnel waits for the request it answers with the refusal (see refuseConnect). */
const REFUSAL_WAIT_MS = 10_000;

interface Refusal {
  code: RefusalCode;
  detail: string;
  host: string;
  port: number;
  binary: string | undefined;
  rule: string | undefined;
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'proxy-authorization',
  'proxy-authenticate',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'expect',
]);

const NEXT_STEPS: Record<RefusalCode, string[]> = {
  policy_denied: [
    'ask the operator to approve the host (`nemoclaw-tui pending`, then `nemoclaw-tui approve ID`)',
    'or add an endpoint to network_policies and apply it with `nemoclaw-tui policy set FILE`',
  ],
  ssrf_denied: [
    'loopback, link-local and metadata addresses are never reachable from the sandbox',
    'private addresses need an endpoint naming this exact host or listing the range in allowed_ips',
  ],
  approval_timeout: ['nobody decided in time; retry while an operator watches (`nemoclaw-tui` or `nemoclaw-tui logs -f --approver`)'],
  queue_full: ['too many requests are waiting for approval; decide the pending ones (`nemoclaw-tui pending`)'],
  client_gone: ['the client closed its connection while the request was held; nothing was forwarded'],
  audit_unavailable: ['the supervisor cannot write its audit log, so it lets nothing through (fail closed); free space on that disk (`nemoclaw-tui status` names it), then retry'],
};

let requestSeq = 0;
/** Stream buffer per direction of a tunnel: fewer pause/resume turns than the 64 KiB default. */
const TUNNEL_HIGH_WATER_MARK = 256 * 1024;
/**
 * While a request is held, the client's later bytes (a body sent after the head, a pipelined
 * request) are read into the connection's buffer, up to this much, so that a FIN behind them is
 * still seen (a paused socket does not report its end while unread bytes are queued).
 */
const HELD_READ_LIMIT = 64 * 1024;
/** After a FIN on an upgraded (WebSocket) connection, how long the other side has to close too. */
const UPGRADE_HALF_CLOSE_GRACE_MS = 2_000;

export function createEgressProxy(opts: EgressProxyOptions): EgressProxy {
  const clock = opts.clock;
  const resolver = opts.resolver ?? systemResolver;
  const unsafe = opts.unsafeAllowLoopbackUpstreams === true;
  const headTimeoutMs = opts.headTimeoutMs ?? 30_000;
  if (!Number.isFinite(headTimeoutMs) || headTimeoutMs <= 0) {
    throw new NemoclawError('invalid_input', `egress headTimeoutMs must be a positive number of milliseconds (got ${headTimeoutMs})`, {
      nextStep: 'leave it unset for the default of 30 s, or pass e.g. 10000',
    });
  }
  const connectTimeoutMs = opts.connectTimeoutMs ?? 10_000;
  const agent = new Agent({ keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo' });
  const inferenceAgent = new Agent({ keepAlive: true });
  const connections = new Set<ClientConnection>();
  const deciding = new Set<string>();
  let generation = 0;
  let server: Server | undefined;
  let socketPath: string | undefined;
  const counters: EgressCounters = {
    connections: 0,
    open_connections: 0,
    open_tunnels: 0,
    requests: 0,
    allowed: 0,
    denied: 0,
    held: 0,
    approved: 0,
    ssrf_denied: 0,
    parse_errors: 0,
    revoked: 0,
    tls_terminated: 0,
    tls_handshake_failed: 0,
    head_timeouts: 0,
    websocket_upgrades: 0,
  };
  let httpsAgent: HttpsAgent | undefined;
  const upstreamTlsAgent = (): HttpsAgent => {
    if (!httpsAgent) {
      // Node verifies with its bundled roots by default; an operator's host may add roots to the
      // system store, so both are used (computed once: reading the system store costs a few ms).
      const ca = opts.upstreamCa ?? [...new Set([...getCACertificates('default'), ...getCACertificates('system')])];
      // One secure context, not `ca`: the agent builds its pool key from the options of every
      // request, and with `ca` that meant joining ~150 KB of PEM per request (a fifth of the CPU
      // of a decrypted keep-alive GET). Every upstream TLS connection uses the same roots anyway.
      const secureContext = createSecureContext({ ca });
      httpsAgent = new HttpsAgent({ keepAlive: true, maxFreeSockets: 256, scheduling: 'lifo', secureContext });
    }
    return httpsAgent;
  };

  const emit = (e: EventInput): void => {
    try {
      opts.emit(unsafe ? { ...e, unsafe_allow_loopback_upstreams: true } : e);
    } catch {
      // the event bus never throws by contract; a broken test sink must not take the proxy down
    }
  };

  const queue = new PendingQueue({
    clock,
    ...(opts.unattendedTtlMs !== undefined ? { unattendedTtlMs: opts.unattendedTtlMs } : {}),
    onAutoDecision: (entry, reason, latencyMs) => {
      emit({
        kind: 'approval.decision',
        level: reason === 'expired' ? 'info' : 'warn',
        id: entry.id,
        pending_id: entry.id,
        decision: reason === 'expired' ? 'expire' : 'deny',
        reason,
        by: reason === 'approval_timeout' ? 'timeout' : reason,
        latency_ms: Math.round(latencyMs),
        host: entry.host,
        port: entry.port,
        binary: entry.binary,
        waiters: entry.waiters,
      });
    },
    onDropped: (entry, latencyMs) => {
      // Every client of this prompt went away before anyone decided: the prompt is gone.
      emit({
        kind: 'approval.decision',
        level: 'notice',
        id: entry.id,
        pending_id: entry.id,
        decision: 'drop',
        reason: 'client_gone',
        by: 'client',
        latency_ms: Math.round(latencyMs),
        host: entry.host,
        port: entry.port,
        binary: entry.binary,
        request: entry.request,
        waiters: 0,
      });
    },
  });

  function refusalBody(r: Refusal): string {
    return JSON.stringify({
      error: r.code,
      detail: r.detail,
      host: r.host,
      port: r.port,
      binary: r.binary ?? null,
      rule: r.rule ?? null,
      next_steps: NEXT_STEPS[r.code],
    });
  }

  function writeJson(socket: Socket, status: number, statusText: string, body: string, extra: Record<string, string>, keepAlive: boolean): void {
    if (socket.destroyed || !socket.writable) return;
    let head = `HTTP/1.1 ${status} ${statusText}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n`;
    for (const [k, v] of Object.entries(extra)) head += `${k}: ${v}\r\n`;
    head += keepAlive ? 'Connection: keep-alive\r\n\r\n' : 'Connection: close\r\n\r\n';
    if (keepAlive) {
      socket.write(head + body);
      return;
    }
    socket.end(head + body);
    // A client that never closes its side must not keep the socket forever.
    setTimeout(() => socket.destroy(), 5_000).unref();
  }

  function writeRefusal(socket: Socket, r: Refusal): void {
    const unavailable = r.code === 'audit_unavailable';
    writeJson(socket, unavailable ? 503 : 403, unavailable ? 'Service Unavailable' : 'Forbidden', refusalBody(r), { 'X-Nemoclaw-Policy': `${r.code}; host=${r.host}; port=${r.port}${r.rule ? `; rule=${r.rule}` : ''}` }, false);
  }

  function isRefusal(x: Admission | Refusal | 'inference'): x is Refusal {
    return typeof x === 'object' && 'code' in x;
  }

  /**
   * The rule a session / always / deny-always decision writes: exactly the scope the operator chose
   * (grant.ts; by default this binary for an allow, any binary for a deny, host:port exactly).
   */
  async function applyDecisionSideEffects(entry: PendingView, decision: ApprovalDecision, scope: GrantScope | undefined): Promise<OverlayRule | undefined> {
    const rule = ruleForDecision(entry, decision, scope);
    if (!rule) return undefined;
    const what = `${describeRule(rule, decision === 'session' || scope?.session === true)} (pending ${entry.id})`;
    if (decision === 'session') opts.addSessionAllow?.(rule);
    else if (scope?.session) opts.addSessionRule?.(rule);
    else await opts.addOverlayRule?.(rule, `${rule.expires_at ? (rule.action === 'allow' ? 'allow' : 'deny') : decision === 'always' ? 'always allow' : 'always deny'} ${what}`);
    return rule;
  }

  /**
   * Decide whether (host, port, binary) may be reached: explicit deny → allow → held → deny,
   * then the SSRF guard picks the one address that will be dialled.
   */
  async function admit(
    reqId: string,
    host: string,
    port: number,
    knownBinary: string | undefined,
    summary: string,
    t0: number,
    conn: {
      emit(e: EventInput): void;
      resolveBinary(): Promise<string | undefined>;
      /** The ancestors of the identified client (once resolveBinary has settled). */
      ancestors(): readonly string[] | undefined;
      onHold(withdraw: (() => void) | undefined): void;
      /** Re-identify the holders now: a reason to refuse, or undefined when they are unchanged. */
      recheckIdentity(host: string, port: number, held: boolean): Promise<string | undefined>;
    },
  ): Promise<Admission | Refusal> {
    let binary = knownBinary;
    const base = { host, port, binary };
    const decision = opts.decide({ host, port, binary, ancestors: conn.ancestors() });
    let source: Admission['source'] = 'policy';
    let heldMs = 0;
    let pendingId: string | undefined;
    const refuse = (code: RefusalCode, detail: string, rule: string | undefined): Refusal => {
      counters.denied++;
      if (code === 'ssrf_denied') counters.ssrf_denied++;
      conn.emit({
        kind: 'net.decision',
        level: 'warn',
        id: reqId,
        action: 'deny',
        error: code,
        reason: detail,
        host,
        port,
        binary: binary ?? null,
        rule: rule ?? null,
        pending_id: pendingId ?? null,
        held_ms: Math.round(heldMs),
        decision_ms: Math.round((clock.monotonic() - t0) * 1000) / 1000,
      });
      return { code, detail, ...base, rule };
    };
    // Fail closed while the audit log cannot be written: nothing new is let through, or held.
    const auditDown = opts.audit?.problem();
    if (auditDown) return refuse('audit_unavailable', auditDown, undefined);
    if (decision.verdict === 'deny') return refuse('policy_denied', decision.reason, decision.rule);
    if (decision.verdict === 'unknown') {
      // A prompt names the binary (and joins by it); the wait for a human dwarfs the lookup.
      if (binary === undefined) {
        binary = await conn.resolveBinary();
        base.binary = binary;
      }
      const approvals = opts.approvals();
      const attached = opts.operatorsAttached() > 0;
      if (approvals.mode !== 'ask') return refuse('policy_denied', `${host}:${port} is not in the policy (approvals.mode: deny)`, undefined);
      if (!attached && approvals.when_unattended !== 'hold') {
        pendingId = queue.recordUnattended({ host, port, binary, request: summary, maxPending: approvals.max_pending });
        return refuse(
          'policy_denied',
          `${host}:${port} is not in the policy and no operator is attached (approvals.when_unattended: deny); pending ${pendingId} can still be approved with --always`,
          undefined,
        );
      }
      const timeoutMs = Math.max(1, approvals.timeout) * 1000;
      const held = queue.hold({ host, port, binary, request: summary, timeoutMs, maxPending: approvals.max_pending });
      pendingId = held.pendingId;
      counters.held++;
      conn.emit({
        kind: 'net.held',
        level: 'notice',
        id: reqId,
        pending_id: held.pendingId,
        joined: held.joined,
        host,
        port,
        binary: binary ?? null,
        request: summary,
        timeout_s: approvals.timeout,
        operators: opts.operatorsAttached(),
      });
      const holdStart = clock.monotonic();
      // The connection withdraws this waiter if its client goes away while held.
      conn.onHold(held.withdraw);
      const outcome: HoldOutcome = await held.outcome;
      conn.onHold(undefined);
      heldMs = clock.monotonic() - holdStart;
      if (!outcome.allowed) {
        const code: RefusalCode =
          outcome.reason === 'approval_timeout' ? 'approval_timeout' : outcome.reason === 'queue_full' ? 'queue_full' : outcome.reason === 'client_gone' ? 'client_gone' : 'policy_denied';
        const detail =
          code === 'approval_timeout'
            ? `no operator decided on ${host}:${port} within ${approvals.timeout} s`
            : code === 'queue_full'
              ? `the approval queue is full (max_pending ${approvals.max_pending}); this request was the oldest`
              : code === 'client_gone'
                ? `the client closed its connection while the request to ${host}:${port} was held (pending ${held.pendingId}); nothing was forwarded`
                : outcome.reason === 'policy_deny' && outcome.note !== undefined
                  ? outcome.note
                  : outcome.note !== undefined
                  ? `denied by operator: ${outcome.note} (${outcome.reason} by ${outcome.by})`
                  : `denied by ${outcome.by} (${outcome.reason})`;
        return refuse(code, detail, undefined);
      }
      counters.approved++;
      // Held requests stay held while the audit log is failing: the approval applies once it can be recorded.
      await opts.audit?.writable();
      source = outcome.reason === 'policy_allow' || outcome.reason === 'always' ? 'policy' : 'approval';
    }
    const after = source === 'policy' && decision.verdict === 'unknown' ? opts.decide({ host, port, binary, ancestors: conn.ancestors() }) : decision;
    // The binary the decision (or the prompt) named must still be the one holding the connection.
    const changed = await conn.recheckIdentity(host, port, pendingId !== undefined);
    if (changed) return refuse('policy_denied', changed, after.rule);
    const endpoint = after.endpoint;
    const exactHost = source === 'approval' || decision.verdict === 'unknown' || (endpoint !== undefined && !endpoint.host.includes('*'));
    const verdict = await guardDestination(host, resolver, { exactHost, allowedIps: endpoint?.allowed_ips ?? [], unsafeAllowLoopback: unsafe, port });
    if (!verdict.ok) return refuse('ssrf_denied', verdict.reason, after.rule);
    counters.allowed++;
    conn.emit({
      kind: 'net.decision',
      level: 'info',
      id: reqId,
      action: 'allow',
      source,
      reason: source === 'approval' ? 'approved by operator' : after.reason,
      host,
      port,
      binary: binary ?? null,
      rule: after.rule ?? null,
      address: verdict.address,
      pending_id: pendingId ?? null,
      held_ms: Math.round(heldMs),
      decision_ms: Math.round((clock.monotonic() - t0) * 1000) / 1000,
    });
    return {
      host,
      port,
      binary,
      source,
      rule: after.rule,
      endpoint,
      ancestors: conn.ancestors(),
      inspect: after.inspect === true,
      address: verdict.address as string,
      family: verdict.family as 4 | 6,
      generation,
    };
  }

  class ClientConnection {
    buf: Buffer = Buffer.alloc(0);
    busy = false;
    closed = false;
    /** Body bytes still owed to the current upstream request (Content-Length framing). */
    bodySink: ((chunk: Buffer) => void) | undefined;
    /** Set when plain HTTP is spoken inside a CONNECT tunnel (or to inference.local); `tls`: decrypted by us. */
    tunnel: { authority: Authority; admission: Admission | 'inference'; tls?: boolean } | undefined;
    /** Last admission on this connection (keep-alive reuse and revocation). */
    admission: Admission | undefined;
    rawTunnel: Socket | undefined;
    binary: Promise<string | undefined> | undefined;
    /** The binary once the lookup finished (events emitted before that wait for it, in order). */
    binaryKnown = false;
    binaryValue: string | undefined;
    eventTail: Promise<unknown> | undefined;
    inflight: ClientRequest | undefined;
    revoked = false;
    /** Absolute deadline of the head being read (armed at its first byte, not reset by later ones). */
    headTimer: NodeJS.Timeout | undefined;
    /** The client sent FIN: answer what was asked, then close. */
    clientEnded = false;
    /** A request body is still being read from the client. */
    readingBody = false;
    /** Waiting for the first bytes inside a CONNECT tunnel (to classify them). */
    awaitingTunnelBytes = false;
    /** Bytes flow through stream.pipe both ways (raw tunnel); half-closes are forwarded by pipe. */
    piped = false;
    /** Set while this connection's request is held for the operator: withdraws it (client gone). */
    withdrawHold: (() => void) | undefined;
    /** The holders of the client connection when it was identified (opts.holders). */
    holdersValue: SocketHolders | undefined;
    /**
     * Set for a connection that did not ask for a proxy (transparent interception): it is handled
     * as a CONNECT to this target, without the proxy's own HTTP answers (no 200 Connection
     * Established; a refusal closes it, or is a 403 when the client spoke HTTP).
     */
    transparent: TransparentTarget | undefined;

    /** Where requests are read and answers written: the accepted socket, or the TLS layer over it. */
    socket: Socket;

    /** `raw`: the accepted socket (binary identity looks up its inode). */
    constructor(readonly raw: Socket) {
      this.socket = raw;
      raw.setNoDelay(true);
      this.listen(raw);
      raw.on('error', () => this.close());
      raw.on('close', () => this.close());
    }

    listen(socket: Socket): void {
      socket.setTimeout(headTimeoutMs);
      socket.on('timeout', () => {
        if (this.busy || this.rawTunnel) return;
        // Idle in the middle of a head: answer it like the head deadline would.
        if (this.buf.length > 0) this.headTimedOut();
        else socket.destroy();
      });
      socket.on('data', (chunk: Buffer) => this.onData(chunk));
      socket.on('end', () => this.onClientEnd());
    }

    /** The server allows half-open sockets, so a client's FIN does not cut off the answer it awaits. */
    onClientEnd(): void {
      if (this.clientEnded || this.closed) return;
      this.clientEnded = true;
      if (this.piped) return;
      // A FIN while held for the operator: the client gave up (through the sandbox bridge a closed
      // TCP client arrives as a FIN, and the relay itself closes soon after). Its request is
      // withdrawn, so a later approval forwards nothing; the refusal is still written.
      if (this.withdrawHold) return this.withdrawHold();
      // A body or a tunnel's first bytes that can no longer arrive: nothing to answer.
      if (this.readingBody || this.awaitingTunnelBytes) return this.close();
      // The answer to the request in flight is written first; done() then ends the connection.
      if (this.busy) return;
      this.next();
      this.endIfClientEnded();
    }

    endIfClientEnded(): void {
      if (!this.clientEnded || this.busy || this.closed) return;
      this.socket.end();
      this.close(true);
    }

    headTimedOut(): void {
      this.clearHeadTimer();
      if (this.closed || this.busy) return;
      counters.head_timeouts++;
      const body = JSON.stringify({
        error: 'request_timeout',
        detail: `the request head was not complete within ${headTimeoutMs} ms of its first byte`,
        next_steps: ['send the whole request head at once (request line and headers up to the blank line)'],
      });
      writeJson(this.socket, 408, 'Request Timeout', body, { 'X-Nemoclaw-Policy': 'request_timeout' }, false);
      this.close(true);
    }

    clearHeadTimer(): void {
      if (this.headTimer) {
        clearTimeout(this.headTimer);
        this.headTimer = undefined;
      }
    }

    /** `graceful`: the socket was ended and may still be flushing; let it finish on its own. */
    close(graceful = false): void {
      if (this.closed) return;
      this.closed = true;
      this.clearHeadTimer();
      connections.delete(this);
      counters.open_connections--;
      this.withdrawHold?.();
      this.inflight?.destroy();
      this.rawTunnel?.destroy();
      if (!graceful || !this.socket.writableEnded) {
        this.socket.destroy();
        if (this.raw !== this.socket) this.raw.destroy();
      }
    }

    onData(chunk: Buffer): void {
      // Closing (an answer may still be flushing): what the client sends now is not read.
      if (this.closed) return;
      if (this.bodySink) {
        this.bodySink(chunk);
        return;
      }
      this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
      // Held: keep what came, but stop reading past the bound (backpressure to the client).
      if (this.withdrawHold && this.buf.length >= HELD_READ_LIMIT) this.socket.pause();
      if (!this.busy) this.next();
    }

    identify(): Promise<string | undefined> {
      if (!this.binary) {
        if (opts.holders) {
          this.binary = opts.holders(this.raw).then(
            (h) => {
              this.holdersValue = h;
              return binaryOfHolders(h);
            },
            () => undefined,
          );
          void this.binary.then((b) => {
            this.binaryValue = b;
            this.binaryKnown = true;
            if (b !== undefined && this.admission && this.admission.binary === undefined) this.admission.binary = b;
          });
        } else if (!opts.identify) {
          this.binaryKnown = true;
          this.binary = Promise.resolve(undefined);
        } else {
          this.binary = opts.identify(this.raw).then(
            (b) => b,
            () => undefined,
          );
          void this.binary.then((b) => {
            this.binaryValue = b;
            this.binaryKnown = true;
            if (b !== undefined && this.admission && this.admission.binary === undefined) this.admission.binary = b;
          });
        }
      }
      return this.binary;
    }

    /** Emit an event of this connection with its binary filled in; waits (in order) for the lookup. */
    emitConn(e: EventInput): void {
      if (this.transparent) e = { ...e, ...this.transparent.fields };
      if (!opts.identify && !opts.holders) return emit(e);
      const send = (): void => emit(e.binary == null && this.binaryValue !== undefined ? { ...e, binary: this.binaryValue } : e);
      if (this.binaryKnown && !this.eventTail) return send();
      this.identify();
      this.eventTail = (this.eventTail ?? (this.binary as Promise<unknown>)).then(send);
    }

    next(): void {
      if (this.closed || this.busy || this.buf.length === 0) return;
      const parsed = parseRequestHead(this.buf, this.tunnel?.authority);
      if (parsed.kind === 'incomplete') {
        // Slowloris: the deadline runs from the head's first byte; more bytes do not extend it.
        this.headTimer ??= setTimeout(() => this.headTimedOut(), headTimeoutMs);
        return;
      }
      this.clearHeadTimer();
      if (parsed.kind === 'error') {
        counters.parse_errors++;
        const body = JSON.stringify({ error: 'bad_request', detail: parsed.reason, next_steps: ['send a well-formed HTTP/1.1 request (absolute http:// URL or CONNECT host:port)'] });
        writeJson(this.socket, parsed.status, parsed.status === 431 ? 'Request Header Fields Too Large' : 'Bad Request', body, { 'X-Nemoclaw-Policy': 'bad_request' }, false);
        return this.close(true);
      }
      this.buf = this.buf.subarray(parsed.consumed);
      this.busy = true;
      this.socket.setTimeout(0);
      this.socket.pause();
      const handler = parsed.head.method === 'CONNECT' ? this.handleConnect(parsed.head) : this.handleHttp(parsed.head);
      handler.catch((err: unknown) => {
        const body = JSON.stringify({ error: 'proxy_error', detail: (err as Error).message });
        writeJson(this.socket, 502, 'Bad Gateway', body, {}, false);
      });
    }

    /** Called when a request/response exchange finished and the connection stays open. */
    done(): void {
      this.busy = false;
      this.bodySink = undefined;
      this.inflight = undefined;
      if (this.closed) return;
      if (this.revoked) return this.close();
      this.socket.setTimeout(headTimeoutMs);
      this.socket.resume();
      this.next();
      this.endIfClientEnded();
    }

    /**
     * Before forwarding: when the binary took part in the decision (a rule's binaries[] could match
     * the target, or an operator approved a prompt naming it), the connection's holders are looked
     * up again; another set than the decision saw, or several executables, is a reason to refuse.
     */
    async recheckIdentity(host: string, port: number, held: boolean): Promise<string | undefined> {
      if (!opts.holders || !this.binaryKnown || this.binaryValue === undefined) return undefined;
      if (!held && !(opts.binaryMatters?.(host, port) ?? true)) return undefined;
      let now: SocketHolders | undefined;
      try {
        now = await opts.holders(this.raw);
      } catch {
        now = undefined;
      }
      const c = compareHolders(this.holdersValue, now);
      return c.ok ? undefined : `${c.reason}; a rule naming binaries cannot be applied to this request`;
    }

    /** A refusal because the connection's holders changed (keep-alive and tunnelled requests). */
    identityRefusal(reqId: string, a: Admission, detail: string): Refusal {
      counters.denied++;
      this.emitConn({ kind: 'net.decision', level: 'warn', id: reqId, action: 'deny', error: 'policy_denied', reason: detail, host: a.host, port: a.port, binary: a.binary ?? null, rule: a.rule ?? null, identity_changed: true });
      return { code: 'policy_denied', detail, host: a.host, port: a.port, binary: a.binary, rule: a.rule };
    }

    async admitFor(head: RequestHead, reqId: string, t0: number): Promise<Admission | Refusal | 'inference'> {
      if (this.tunnel) {
        const a = this.tunnel.admission;
        if (a === 'inference') return a;
        const changed = await this.recheckIdentity(a.host, a.port, a.source === 'approval');
        return changed ? this.identityRefusal(reqId, a, changed) : a;
      }
      const host = canonicalHost(head.host);
      if (host === INFERENCE_HOST && (head.port === 80 || (head.port === 443 && head.method === 'CONNECT'))) return 'inference';
      // Identity only delays the request when a rule's binaries[] could decide it.
      const needed = (opts.identify !== undefined || opts.holders !== undefined) && (opts.binaryMatters?.(host, head.port) ?? true);
      const binary = needed ? await this.identify() : this.binaryKnown ? this.binaryValue : (this.identify(), undefined);
      const summary = this.transparent ? this.transparent.summary : head.method === 'CONNECT' ? `CONNECT ${host}:${head.port}` : `${head.method} ${head.path}`;
      this.emitConn({ kind: 'net.request', level: 'info', id: reqId, method: head.method, host, port: head.port, path: head.method === 'CONNECT' ? null : head.path, binary: binary ?? null });
      const prev = this.admission;
      if (prev && prev.host === host && prev.port === head.port && prev.generation === generation && prev.binary === binary) {
        // Same target on a keep-alive connection under the same policy: reuse the checked address.
        const changed = await this.recheckIdentity(host, head.port, prev.source === 'approval');
        if (changed) return this.identityRefusal(reqId, prev, changed);
        counters.allowed++;
        this.emitConn({ kind: 'net.decision', level: 'info', id: reqId, action: 'allow', source: prev.source, reason: 'same target on a keep-alive connection', host, port: head.port, binary: binary ?? null, rule: prev.rule ?? null, address: prev.address, reused: true, decision_ms: 0 });
        return prev;
      }
      return admit(reqId, host, head.port, binary, summary, t0, {
        emit: (e) => this.emitConn(e),
        resolveBinary: () => this.identify(),
        ancestors: () => this.holdersValue?.ancestors,
        recheckIdentity: (h, p, held) => this.recheckIdentity(h, p, held),
        onHold: (withdraw) => {
          this.withdrawHold = withdraw;
          // The client may already have left while the request was being looked up.
          if (withdraw && (this.closed || this.clientEnded)) return withdraw();
          if (this.closed) return;
          // Held: read on (into this.buf, bounded) so that the client's FIN is seen even when it
          // sent more bytes after the head; once decided, the socket is paused again for the handler.
          if (withdraw) {
            if (this.buf.length < HELD_READ_LIMIT) this.socket.resume();
          } else this.socket.pause();
        },
      });
    }

    async handleConnect(head: RequestHead): Promise<void> {
      counters.requests++;
      const reqId = `r-${++requestSeq}`;
      const t0 = clock.monotonic();
      const host = canonicalHost(head.host);
      const admission = await this.admitFor(head, reqId, t0);
      if (this.closed) return;
      if (isRefusal(admission)) return this.refuseConnect(admission);
      if (admission === 'inference') {
        if (head.port === 443) return this.inspectTunnel(admission, { host, port: head.port });
        this.established();
        this.tunnel = { authority: { host, port: head.port }, admission };
        return this.done();
      }
      this.admission = admission;
      if (tlsSkipConflict(admission.endpoint)) {
        // OpenShell relays a `tls: skip` tunnel raw, so the endpoint's L7 rules would not apply to
        // anything in it; here that tunnel is refused (never wider). Plain-HTTP requests to the
        // endpoint (absolute-form http://) are still checked per request.
        const detail = `${host}:${head.port} has tls: skip and L7 rules (protocol/rules/access/deny_rules), which cannot be checked in a raw tunnel; CONNECT refused (remove tls: skip to have the rules checked, or the L7 fields for a raw L4 tunnel)`;
        counters.denied++;
        this.emitConn({ kind: 'net.decision', level: 'warn', id: reqId, action: 'deny', error: 'policy_denied', reason: detail, host, port: head.port, binary: admission.binary ?? null, rule: admission.rule ?? null, tls_skip: true });
        return this.refuseConnect({ code: 'policy_denied', detail, host, port: head.port, binary: admission.binary, rule: admission.rule });
      }
      if (tunnelNeedsInspection(admission.endpoint) || admission.inspect) return this.inspectTunnel(admission, { host, port: head.port });
      const unrecorded = await this.writeAhead();
      if (this.closed) return;
      if (unrecorded) return this.refuseConnect({ code: 'audit_unavailable', detail: unrecorded, host, port: head.port, binary: admission.binary, rule: admission.rule });
      // highWaterMark is passed on to the socket's Duplex (not in the connect options' types).
      const streamOpts = { highWaterMark: TUNNEL_HIGH_WATER_MARK };
      const upstream = netConnect({ host: admission.address, port: admission.port, family: admission.family, ...streamOpts });
      upstream.setNoDelay(true);
      const timer = setTimeout(() => upstream.destroy(new Error(`connect to ${admission.address}:${admission.port} timed out`)), connectTimeoutMs);
      upstream.once('error', (err) => {
        clearTimeout(timer);
        if (!this.rawTunnel && !this.transparent) writeJson(this.socket, 502, 'Bad Gateway', JSON.stringify({ error: 'upstream_unreachable', detail: err.message, host, port: head.port }), {}, false);
        else this.close();
      });
      upstream.once('connect', () => {
        clearTimeout(timer);
        if (this.closed) return upstream.destroy();
        this.rawTunnel = upstream;
        counters.open_tunnels++;
        upstream.once('close', () => {
          if (this.rawTunnel !== upstream) return;
          counters.open_tunnels--;
          this.rawTunnel = undefined;
          // A clean upstream end was piped to the client (socket.end()); let that flush.
          this.close(true);
        });
        this.established();
        this.classifyTunnel(admission, { host, port: head.port });
      });
    }

    /** The tunnel is open: a proxy client is told so; an intercepted one never asked. */
    established(): void {
      if (!this.transparent) this.socket.write('HTTP/1.1 200 Connection Established\r\n\r\n');
    }

    /**
     * A refused CONNECT: the JSON 403. An intercepted connection gets it only when it spoke HTTP
     * (then the client can show it); TLS or another protocol is closed (a 403 would be garbage there).
     */
    refuseConnect(r: Refusal): void {
      // Clients drop the body of a refused CONNECT (undici: "Proxy response (403) !== 200 when
      // HTTP Tunneling"; curl: "CONNECT tunnel failed, response 403"), so the agent never learns why
      // (nor an operator's deny reason). Instead the tunnel is "opened" to nowhere and the refusal
      // is the answer to the first request in it: plain HTTP as is, TLS terminated with a leaf of
      // the sandbox CA (which every client in the sandbox trusts). Nothing is ever dialled.
      if (!opts.tls && !this.transparent) return writeRefusal(this.socket, r);
      this.established();
      const classify = (): void => {
        this.awaitingTunnelBytes = false;
        const at = firstSignificantByte(this.buf);
        if (at < 0 && this.buf.length <= MAX_HEAD_BYTES) return waitMore();
        const b = at < 0 ? undefined : this.buf[at];
        if (b !== undefined && b >= 0x41 && b <= 0x5a) return writeRefusal(this.socket, r);
        if (b === 0x16 && at === 0 && opts.tls) return void this.refuseInsideTls(r);
        this.close();
      };
      const waitMore = (): void => this.awaitTunnelBytes(classify);
      // Nobody speaks first within a while: there is no request to answer.
      this.socket.setTimeout(REFUSAL_WAIT_MS, () => this.close());
      if (this.buf.length > 0) return classify();
      waitMore();
    }

    /** The refusal as the HTTPS answer to the first request of a refused tunnel (see refuseConnect). */
    async refuseInsideTls(r: Refusal): Promise<void> {
      let secureContext: SecureContext;
      try {
        secureContext = await opts.tls!.contextFor(r.host);
      } catch {
        return this.close();
      }
      if (this.closed) return;
      const raw = this.raw;
      raw.removeAllListeners('data');
      raw.removeAllListeners('timeout');
      if (this.buf.length > 0) raw.unshift(this.buf);
      this.buf = Buffer.alloc(0);
      const secure = new TLSSocket(raw, { isServer: true, secureContext, ALPNProtocols: ['http/1.1'] });
      const giveUp = setTimeout(() => secure.destroy(), REFUSAL_WAIT_MS);
      giveUp.unref();
      let head = '';
      secure.on('data', (chunk: Buffer) => {
        head += chunk.toString('latin1');
        // The whole request head (or as much as a head may be): then answer and close.
        if (head.includes('\r\n\r\n') || head.length > MAX_HEAD_BYTES) {
          secure.removeAllListeners('data');
          clearTimeout(giveUp);
          writeRefusal(secure, r);
        }
      });
      secure.on('error', () => secure.destroy());
      secure.once('close', () => {
        clearTimeout(giveUp);
        this.close();
      });
      secure.resume();
    }

    /** Start an intercepted connection: the same path as `CONNECT host:port` from a proxy client. */
    startTransparent(t: TransparentTarget): void {
      this.transparent = t;
      if (t.initial && t.initial.length > 0) this.buf = t.initial;
      const authority = `${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`;
      const parsed = parseRequestHead(Buffer.from(`CONNECT ${authority} HTTP/1.1\r\nHost: ${authority}\r\n\r\n`, 'latin1'));
      if (parsed.kind !== 'ok') return this.close();
      this.busy = true;
      this.socket.setTimeout(0);
      this.socket.pause();
      this.handleConnect(parsed.head).catch(() => this.close());
    }

    /**
     * After CONNECT: if the client speaks first with something that looks like an HTTP request
     * (and the endpoint is not raw TCP), inspect it per request (Host check, L7). TLS, or a
     * server-speaks-first protocol, is piped through untouched.
     */
    classifyTunnel(admission: Admission, authority: Authority): void {
      const upstream = this.rawTunnel as Socket;
      const pipeRaw = (): void => {
        // From here on the bytes are none of our business: stream.pipe both ways, no JS per chunk
        // beyond pipe's own backpressure (our data listener and timeout go away).
        const client = this.socket;
        client.setTimeout(0);
        client.removeAllListeners('data');
        client.removeAllListeners('timeout');
        upstream.removeListener('data', onUpstreamFirst);
        if (this.buf.length > 0) upstream.write(this.buf);
        this.buf = Buffer.alloc(0);
        this.bodySink = undefined;
        this.awaitingTunnelBytes = false;
        this.piped = true;
        upstream.pipe(client);
        client.pipe(upstream);
        client.resume();
      };
      const onUpstreamFirst = (chunk: Buffer): void => {
        upstream.pause();
        upstream.unshift(chunk);
        pipeRaw();
        upstream.resume();
      };
      const classify = (): void => {
        // Empty lines (or blanks) before a request-line are looked past: what follows them is
        // classified, so `\r\nGET / ...` with another Host is inspected, not piped through unread.
        const at = firstSignificantByte(this.buf);
        if (at < 0 && this.buf.length <= MAX_HEAD_BYTES && admission.endpoint?.protocol !== 'tcp') return waitMore();
        const first = at < 0 ? 0x41 : this.buf[at];
        const looksHttp = first !== undefined && first >= 0x41 && first <= 0x5a && admission.endpoint?.protocol !== 'tcp';
        if (!looksHttp) return pipeRaw();
        this.awaitingTunnelBytes = false;
        // Plain HTTP: requests go through the pool to the checked address, each one inspected.
        upstream.removeListener('data', onUpstreamFirst);
        this.rawTunnel = undefined;
        counters.open_tunnels--;
        upstream.destroy();
        this.tunnel = { authority, admission };
        this.bodySink = undefined;
        this.busy = false;
        this.next();
      };
      const waitMore = (): void => this.awaitTunnelBytes(classify);
      upstream.on('data', onUpstreamFirst);
      if (this.buf.length > 0) return classify();
      waitMore();
    }

    /** Read more of a tunnel's first bytes, then classify them again. */
    awaitTunnelBytes(classify: () => void): void {
      this.awaitingTunnelBytes = true;
      // The client already sent its FIN (e.g. while the upstream was dialled): no bytes will come.
      if (this.clientEnded) return this.close();
      this.bodySink = (chunk) => {
        this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
        this.bodySink = undefined;
        this.socket.pause();
        classify();
      };
      this.socket.resume();
    }

    /**
     * CONNECT to an L7 endpoint or to inference.local:443: answer 200 and look at the first bytes.
     * TLS is terminated with a leaf for the host, plain HTTP is inspected as is, anything else is
     * closed, since the per-request rules could not be applied to it.
     */
    inspectTunnel(admission: Admission | 'inference', authority: Authority): void {
      this.established();
      const classify = (): void => {
        this.awaitingTunnelBytes = false;
        // Empty lines before a request-line: look at what follows (the parser skips them too).
        const at = firstSignificantByte(this.buf);
        if (at < 0 && this.buf.length <= MAX_HEAD_BYTES) return waitMore();
        const first = at < 0 ? 0x41 : (this.buf[at] as number);
        if (first === 0x16 && at === 0) {
          void this.terminateTls(admission, authority);
          return;
        }
        if (first >= 0x41 && first <= 0x5a) {
          this.tunnel = { authority, admission };
          this.bodySink = undefined;
          this.busy = false;
          this.next();
          return;
        }
        this.refuseTunnel(admission, authority, 'l7_unenforceable', 'the client spoke neither TLS nor HTTP in a tunnel whose endpoint has L7 rules');
      };
      const waitMore = (): void => this.awaitTunnelBytes(classify);
      if (this.buf.length > 0) return classify();
      waitMore();
    }

    refuseTunnel(admission: Admission | 'inference', authority: Authority, error: string, reason: string): void {
      counters.denied++;
      const a = admission === 'inference' ? undefined : admission;
      emit({ kind: 'net.decision', level: 'warn', action: 'deny', error, reason, host: authority.host, port: authority.port, binary: a?.binary ?? null, rule: a?.rule ?? null });
      this.close();
    }

    async terminateTls(admission: Admission | 'inference', authority: Authority): Promise<void> {
      if (!opts.tls) {
        return this.refuseTunnel(admission, authority, 'tls_termination_unavailable', 'TLS termination is not configured, so the endpoint\'s L7 rules cannot be enforced on HTTPS');
      }
      let secureContext: SecureContext;
      try {
        secureContext = await opts.tls.contextFor(authority.host);
      } catch (err) {
        return this.refuseTunnel(admission, authority, 'tls_certificate_failed', (err as Error).message);
      }
      if (this.closed) return;
      const raw = this.raw;
      raw.removeAllListeners('data');
      raw.removeAllListeners('timeout');
      raw.setTimeout(0);
      // Bytes already read (the ClientHello) go back to the socket; the TLS layer reads them first.
      if (this.buf.length > 0) raw.unshift(this.buf);
      this.buf = Buffer.alloc(0);
      const secure = new TLSSocket(raw, { isServer: true, secureContext, ALPNProtocols: ['http/1.1'] });
      let established = false;
      secure.once('secure', () => {
        established = true;
        counters.tls_terminated++;
      });
      // A client that rejects our leaf usually just hangs up (no alert reaches us as an error), so
      // a close before the handshake completed counts as a failed handshake too.
      const handshakeFailed = (why: string): void => {
        if (established) return;
        established = true;
        counters.tls_handshake_failed++;
        emit({
          kind: 'net.decision',
          level: 'warn',
          action: 'deny',
          error: 'tls_handshake_failed',
          reason: `TLS handshake with the sandbox client failed (${why}); does the client trust the sandbox CA (SSL_CERT_FILE, NODE_EXTRA_CA_CERTS)?`,
          host: authority.host,
          port: authority.port,
          binary: admission === 'inference' ? null : (admission.binary ?? null),
        });
      };
      secure.on('error', (err: Error) => {
        handshakeFailed(err.message);
        this.close();
      });
      secure.on('close', () => {
        handshakeFailed('the client closed the connection during the handshake');
        this.close();
      });
      this.socket = secure;
      this.listen(secure);
      this.tunnel = { authority, admission, tls: true };
      this.bodySink = undefined;
      this.busy = false;
    }

    async handleHttp(head: RequestHead): Promise<void> {
      let upgrade: { textAllowed: boolean; reqId: string } | undefined;
      let textDenyReason: string | undefined;
      counters.requests++;
      const reqId = `r-${++requestSeq}`;
      const t0 = clock.monotonic();
      const admission = await this.admitFor(head, reqId, t0);
      if (this.closed) return;
      if (isRefusal(admission)) return writeRefusal(this.socket, admission);
      if (admission !== 'inference') {
        if (!this.tunnel) this.admission = admission;
        if (this.tunnel) this.emitConn({ kind: 'net.request', level: 'info', id: reqId, method: head.method, host: admission.host, port: admission.port, path: head.path, binary: admission.binary ?? null, tunnelled: true, ...(this.tunnel.tls ? { tls: true } : {}) });
        if (endpointHasL7(admission.endpoint) || admission.inspect) {
          // Per-request L7 (method + path) is the policy engine's call, on every keep-alive request.
          // It decides on the canonical target, and exactly that is forwarded (or nothing is).
          const target = canonicalL7Target(admission.endpoint, head.pathAndQuery);
          if (target.ok) head = { ...head, path: target.path, pathAndQuery: target.pathAndQuery };
          const d: NetworkDecision = target.ok
            ? opts.decide({ host: admission.host, port: admission.port, binary: admission.binary, ancestors: admission.ancestors, method: head.method, path: head.pathAndQuery })
            : { verdict: 'deny', rule: admission.rule, reason: `${head.method} refused: ${target.reason}` };
          const refused = d.verdict === 'deny' || (d.verdict === 'unknown' && admission.source === 'policy');
          if (refused) {
            counters.denied++;
            this.emitConn({ kind: 'net.decision', level: 'warn', id: reqId, action: 'deny', error: 'policy_denied', reason: d.reason, host: admission.host, port: admission.port, method: head.method, path: head.path, binary: admission.binary ?? null, rule: d.rule ?? admission.rule ?? null, l7: true });
            return writeRefusal(this.socket, { code: 'policy_denied', detail: d.reason, host: admission.host, port: admission.port, binary: admission.binary, rule: d.rule ?? admission.rule });
          }
          // A method override (header or `_method` query parameter) makes many frameworks dispatch
          // on another method than the one decided on: each overriding method must be allowed too.
          for (const o of methodOverrides(head)) {
            const od: NetworkDecision = !/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/.test(o.method)
              ? { verdict: 'deny', rule: admission.rule, reason: 'not a method token' }
              : opts.decide({ host: admission.host, port: admission.port, binary: admission.binary, ancestors: admission.ancestors, method: o.method, path: head.pathAndQuery });
            if (od.verdict === 'allow' || (od.verdict === 'unknown' && admission.source !== 'policy')) continue;
            const detail = `${head.method} refused: ${o.via} asks for ${JSON.stringify(o.method.slice(0, 40))}, which the rules do not allow on ${head.path} (${od.reason})`;
            counters.denied++;
            this.emitConn({ kind: 'net.decision', level: 'warn', id: reqId, action: 'deny', error: 'policy_denied', reason: detail, host: admission.host, port: admission.port, method: head.method, path: head.path, binary: admission.binary ?? null, rule: od.rule ?? admission.rule ?? null, l7: true, method_override: o.via });
            return writeRefusal(this.socket, { code: 'policy_denied', detail, host: admission.host, port: admission.port, binary: admission.binary, rule: od.rule ?? admission.rule });
          }
        }
        const kind = upgradeKind(head);
        if (admission.endpoint?.protocol === 'websocket' && kind !== 'websocket') {
          // OpenShell l7/relay.rs: a `protocol: websocket` endpoint takes only RFC 6455 upgrades.
          const detail = `${head.method} ${head.path} refused: websocket endpoint requires a valid WebSocket upgrade request`;
          counters.denied++;
          this.emitConn({ kind: 'net.decision', level: 'warn', id: reqId, action: 'deny', error: 'policy_denied', reason: detail, host: admission.host, port: admission.port, method: head.method, path: head.path, binary: admission.binary ?? null, rule: admission.rule ?? null, l7: true });
          return writeRefusal(this.socket, { code: 'policy_denied', detail, host: admission.host, port: admission.port, binary: admission.binary, rule: admission.rule });
        }
        if (kind === 'websocket') {
          // The upgrade itself was checked above as the GET it is. On `protocol: websocket`, client
          // text messages are WEBSOCKET_TEXT requests on the upgrade's path and query (OpenShell
          // l7/websocket.rs `inspect_websocket_text_message`): decided once, here, and enforced on
          // the frames after the 101. On other endpoints OpenShell relays the upgraded bytes raw.
          let textAllowed = true;
          if (admission.endpoint?.protocol === 'websocket') {
            const td = opts.decide({ host: admission.host, port: admission.port, binary: admission.binary, ancestors: admission.ancestors, method: 'WEBSOCKET_TEXT', path: head.pathAndQuery });
            textAllowed = td.verdict === 'allow' || (td.verdict === 'unknown' && admission.source !== 'policy');
            if (!textAllowed) textDenyReason = td.reason;
          }
          upgrade = { textAllowed, reqId };
        }
      } else {
        const sock = opts.inferenceSocket?.();
        if (!sock) {
          const body = JSON.stringify({
            error: 'inference_unavailable',
            detail: 'the privacy router (service "inference") is not running, so inference.local has nowhere to go',
            next_steps: ['check `nemoclaw-tui status` for the inference service and the supervisor log'],
          });
          return writeJson(this.socket, 503, 'Service Unavailable', body, { 'X-Nemoclaw-Policy': 'inference_unavailable' }, false);
        }
      }
      if (admission !== 'inference') {
        const unrecorded = await this.writeAhead();
        if (this.closed) return;
        if (unrecorded) return writeRefusal(this.socket, { code: 'audit_unavailable', detail: unrecorded, host: admission.host, port: admission.port, binary: admission.binary, rule: admission.rule });
      }
      this.forward(head, admission, upgrade && { ...upgrade, textDenyReason });
    }

    /**
     * Write-ahead: wait until every event of this connection so far (its allow included, also one
     * still waiting for the binary lookup) is durable. A reason when it cannot be (log failing).
     */
    async writeAhead(): Promise<string | undefined> {
      if (!opts.audit) return undefined;
      if (this.eventTail) await this.eventTail;
      try {
        await opts.audit.durable();
        return undefined;
      } catch (err) {
        return (err as Error).message;
      }
    }

    /** `upgrade`: an allowed WebSocket upgrade; its Upgrade/Connection headers go upstream. */
    forward(head: RequestHead, target: Admission | 'inference', upgrade?: { textAllowed: boolean; reqId: string; textDenyReason: string | undefined }): void {
      const socket = this.socket;
      const headers: string[] = [];
      const connectionNamed = new Set(
        (head.byName.get('connection') ?? []).join(',').toLowerCase().split(',').map((s) => s.trim()).filter((s) => s.length > 0),
      );
      for (const [name, value] of head.headers) {
        const lower = name.toLowerCase();
        // Content-Length goes on as one header with one value, whatever the client sent (`5, 5`, or
        // the same header twice, both legal when equal): an upstream that reads only the first
        // or only the last must still frame the body exactly as we did.
        if (HOP_BY_HOP.has(lower) || connectionNamed.has(lower) || lower === 'host' || lower === 'content-length') continue;
        headers.push(name, value);
      }
      if (!head.chunked && head.byName.has('content-length')) headers.push('Content-Length', String(head.contentLength));
      const overTls = this.tunnel?.tls === true;
      const defaultPort = overTls ? 443 : 80;
      const hostHeader = target === 'inference' ? INFERENCE_HOST : head.port === defaultPort ? formatHost(head.host) : `${formatHost(head.host)}:${head.port}`;
      headers.unshift('Host', hostHeader);
      if (upgrade) headers.push('Connection', 'Upgrade', 'Upgrade', 'websocket');
      const hasBody = head.chunked || head.contentLength > 0;
      let req: ClientRequest;
      if (target === 'inference') {
        req = httpRequest({ socketPath: opts.inferenceSocket?.(), method: head.method, path: head.pathAndQuery, headers, agent: inferenceAgent, setHost: false });
      } else if (overTls) {
        // Re-originate TLS to exactly the checked address, verifying the certificate for the host name.
        const servername = isIP(head.host) === 0 ? head.host : undefined;
        req = httpsRequest({
          host: target.address,
          port: target.port,
          family: target.family,
          ...(servername ? { servername } : {}),
          method: head.method,
          path: head.pathAndQuery,
          headers,
          agent: upstreamTlsAgent(),
          setHost: false,
        });
      } else {
        req = httpRequest({ host: target.address, port: target.port, family: target.family, method: head.method, path: head.pathAndQuery, headers, agent, setHost: false });
      }
      this.inflight = req;
      let responded = false;
      req.on('error', (err) => {
        if (responded) return this.close();
        const body = JSON.stringify({ error: 'upstream_error', detail: err.message, host: head.host, port: head.port });
        writeJson(socket, 502, 'Bad Gateway', body, {}, false);
      });
      req.on('response', (res) => {
        responded = true;
        this.relayResponse(head, res);
      });
      if (upgrade && target !== 'inference') {
        // Only a request that asked for it can be switched (Node emits 'upgrade' on any 101 for a
        // request carrying Upgrade; without this listener it would destroy the socket).
        req.on('upgrade', (res, upstream, extra) => {
          responded = true;
          this.relayUpgrade(head, target, res, upstream, extra, upgrade);
        });
      }
      if (head.expectContinue && hasBody) socket.write('HTTP/1.1 100 Continue\r\n\r\n');
      if (!hasBody) {
        req.end();
        return;
      }
      const feed = (chunk: Buffer): void => {
        if (!req.write(chunk)) {
          socket.pause();
          req.once('drain', () => socket.resume());
        }
      };
      this.readingBody = true;
      const finishBody = (leftover: Buffer): void => {
        this.readingBody = false;
        this.bodySink = (chunk) => {
          // Pipelined bytes after the body wait until the response is done.
          this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk]);
        };
        this.buf = leftover;
        req.end();
      };
      if (head.chunked) {
        const decoder = new ChunkedDecoder(feed);
        const push = (chunk: Buffer): void => {
          const err = decoder.push(chunk);
          if (err) {
            req.destroy();
            const body = JSON.stringify({ error: 'bad_request', detail: err });
            writeJson(socket, 400, 'Bad Request', body, {}, false);
            return;
          }
          if (decoder.done) finishBody(decoder.leftover ?? Buffer.alloc(0));
        };
        this.bodySink = push;
        const initial = this.buf;
        this.buf = Buffer.alloc(0);
        if (initial.length > 0) push(initial);
      } else {
        let remaining = head.contentLength;
        const push = (chunk: Buffer): void => {
          const n = Math.min(remaining, chunk.length);
          if (n > 0) feed(chunk.subarray(0, n));
          remaining -= n;
          if (remaining === 0) finishBody(chunk.subarray(n));
        };
        this.bodySink = push;
        const initial = this.buf;
        this.buf = Buffer.alloc(0);
        if (initial.length > 0) push(initial);
      }
      // The client's FIN came while the request was being decided, before its whole body.
      if (this.readingBody && this.clientEnded) return this.close();
      socket.resume();
    }

    /**
     * The upstream answered an allowed WebSocket upgrade with 101: check that it is the switch that
     * was asked for (Upgrade: websocket, the Sec-WebSocket-Accept for our key, as OpenShell does
     * before forwarding a 101), pass the 101 on, then relay bytes both ways until either side
     * closes. The keep-alive request loop of this connection ends here (one upgrade per
     * connection); a client that goes away tears the upstream down (close() destroys rawTunnel),
     * and a policy change that no longer allows the host closes it (policyChanged).
     */
    relayUpgrade(
      head: RequestHead,
      target: Admission,
      res: IncomingMessage,
      upstream: Socket,
      extra: Buffer,
      upgrade: { textAllowed: boolean; reqId: string; textDenyReason: string | undefined },
    ): void {
      this.inflight = undefined;
      const client = this.socket;
      const key = (head.byName.get('sec-websocket-key')?.[0] ?? '').trim();
      const accept = res.headers['sec-websocket-accept'];
      const upg = String(res.headers.upgrade ?? '').trim().toLowerCase();
      if (this.closed) {
        upstream.destroy();
        return;
      }
      if (upg !== 'websocket' || typeof accept !== 'string' || accept.trim() !== websocketAccept(key, sha1Base64)) {
        upstream.destroy();
        const detail = upg !== 'websocket' ? `the upstream switched to ${JSON.stringify(upg.slice(0, 40))}, not websocket` : 'the upstream answered the WebSocket upgrade with a wrong Sec-WebSocket-Accept';
        writeJson(client, 502, 'Bad Gateway', JSON.stringify({ error: 'upstream_bad_upgrade', detail, host: target.host, port: target.port }), {}, false);
        this.close(true);
        return;
      }
      let out = `HTTP/1.1 101 ${res.statusMessage || 'Switching Protocols'}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n`;
      const raw = res.rawHeaders;
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const lower = (raw[i] as string).toLowerCase();
        if (HOP_BY_HOP.has(lower) || lower === 'content-length') continue;
        out += `${raw[i]}: ${raw[i + 1]}\r\n`;
      }
      out += '\r\n';
      counters.websocket_upgrades++;
      counters.open_tunnels++;
      // From here on this connection is a tunnel: no request parsing, no idle deadline (a
      // WebSocket may stay quiet for long; its own pings keep it alive), backpressure both ways.
      client.removeAllListeners('data');
      client.removeAllListeners('timeout');
      client.setTimeout(0);
      this.bodySink = undefined;
      this.piped = true;
      this.rawTunnel = upstream;
      upstream.setTimeout(0);
      upstream.setNoDelay(true);
      upstream.on('error', () => this.close());
      upstream.once('close', () => {
        if (this.rawTunnel !== upstream) return;
        counters.open_tunnels--;
        this.rawTunnel = undefined;
        this.close(true);
      });
      // A WebSocket has no use for a half-closed TCP connection (RFC 6455 §7: the close handshake
      // comes first, then TCP closes). A FIN from either side is passed on, and if the other side
      // has not closed within the grace period, both are torn down: a client that vanished (through
      // the sandbox bridge that arrives as a FIN) does not leave its upstream connection behind.
      const teardownSoon = (): void => {
        setTimeout(() => this.close(), UPGRADE_HALF_CLOSE_GRACE_MS).unref();
      };
      client.once('end', teardownSoon);
      upstream.once('end', teardownSoon);
      client.write(out);
      if (extra.length > 0) client.write(extra);
      upstream.pipe(client);
      const early = this.buf;
      this.buf = Buffer.alloc(0);
      if (upgrade.textAllowed) {
        if (early.length > 0) upstream.write(early);
        client.pipe(upstream);
      } else {
        const gate = new WebSocketTextGate(
          (chunk) => {
            if (!upstream.write(chunk)) {
              client.pause();
              upstream.once('drain', () => client.resume());
            }
          },
          (why) => {
            // A request of its own (method WEBSOCKET_TEXT on the upgrade's path), so that the log
            // pairs it with its refusal and `policy simulate` can replay it against a candidate.
            counters.requests++;
            counters.denied++;
            const id = `r-${++requestSeq}`;
            const base = { id, host: target.host, port: target.port, path: head.path, binary: target.binary ?? null, websocket: true };
            this.emitConn({ kind: 'net.request', level: 'info', method: 'WEBSOCKET_TEXT', upgrade_id: upgrade.reqId, ...base });
            this.emitConn({ kind: 'net.decision', level: 'warn', action: 'deny', error: 'policy_denied', reason: `WebSocket message refused: ${why} (${upgrade.textDenyReason ?? 'WEBSOCKET_TEXT not allowed'}); connection closed (1008)`, method: 'WEBSOCKET_TEXT', rule: target.rule ?? null, l7: true, ...base });
            // Close code 1008 (policy violation) to the client, as OpenShell's parsed relay does;
            // the upstream connection is dropped without the refused frame.
            upstream.unpipe(client);
            upstream.destroy();
            client.end(websocketCloseFrame(1008));
            this.close(true);
          },
        );
        client.on('data', (chunk: Buffer) => gate.push(chunk));
        client.once('end', () => upstream.end());
        if (early.length > 0) gate.push(early);
      }
      client.resume();
    }

    relayResponse(head: RequestHead, res: IncomingMessage): void {
      const socket = this.socket;
      const status = res.statusCode ?? 502;
      const noBody = head.method === 'HEAD' || status === 204 || status === 304 || (status >= 100 && status < 200);
      const upstreamLength = res.headers['content-length'];
      const keepAlive = head.keepAlive && !this.revoked;
      let framing: 'none' | 'length' | 'chunked' | 'close';
      if (noBody) framing = 'none';
      else if (upstreamLength !== undefined && res.headers['transfer-encoding'] === undefined) framing = 'length';
      else framing = head.version === '1.1' ? 'chunked' : 'close';
      const clientKeepAlive = keepAlive && framing !== 'close';
      const connectionNamed = new Set(
        String(res.headers.connection ?? '').toLowerCase().split(',').map((s) => s.trim()).filter((s) => s.length > 0),
      );
      let out = `HTTP/1.1 ${status} ${res.statusMessage ?? ''}\r\n`;
      const raw = res.rawHeaders;
      for (let i = 0; i + 1 < raw.length; i += 2) {
        const lower = (raw[i] as string).toLowerCase();
        if (HOP_BY_HOP.has(lower) || connectionNamed.has(lower)) continue;
        if (lower === 'content-length' && framing !== 'length' && framing !== 'none') continue;
        out += `${raw[i]}: ${raw[i + 1]}\r\n`;
      }
      if (framing === 'chunked') out += 'Transfer-Encoding: chunked\r\n';
      out += clientKeepAlive ? 'Connection: keep-alive\r\n\r\n' : 'Connection: close\r\n\r\n';
      socket.write(out);
      const finish = (): void => {
        if (framing === 'chunked') socket.write('0\r\n\r\n');
        if (clientKeepAlive) this.done();
        else {
          socket.end();
          this.close(true);
        }
      };
      if (framing === 'none') {
        res.resume();
        res.once('end', finish);
        return;
      }
      res.on('data', (chunk: Buffer) => {
        const ok = framing === 'chunked' ? socket.write(`${chunk.length.toString(16)}\r\n`) && socket.write(chunk) && socket.write('\r\n') : socket.write(chunk);
        if (!ok) {
          res.pause();
          socket.once('drain', () => res.resume());
        }
      });
      res.once('end', finish);
      res.once('error', () => this.close());
    }
  }

  /**
   * Methods a request asks the upstream to dispatch on instead of its own: the
   * X-HTTP-Method-Override / X-HTTP-Method / X-Method-Override headers (any case, every value and
   * comma-separated item) and `_method` query parameters, where they differ from the method.
   */
  function methodOverrides(head: RequestHead): Array<{ via: string; method: string }> {
    const out: Array<{ via: string; method: string }> = [];
    const seen = new Set<string>();
    const add = (via: string, raw: string): void => {
      const method = raw.trim();
      if (method.length === 0 || method.toUpperCase() === head.method.toUpperCase() || seen.has(method.toUpperCase())) return;
      seen.add(method.toUpperCase());
      out.push({ via, method: method.toUpperCase() });
    };
    for (const [name, value] of head.headers) {
      const lower = name.toLowerCase();
      if (lower === 'x-http-method-override' || lower === 'x-http-method' || lower === 'x-method-override') {
        for (const item of value.split(',')) add(`header ${name}`, item);
      }
    }
    const q = head.pathAndQuery.indexOf('?');
    if (q >= 0) {
      for (const part of head.pathAndQuery.slice(q + 1).split('&')) {
        const eq = part.indexOf('=');
        let key: string;
        let value: string;
        try {
          key = decodeURIComponent((eq < 0 ? part : part.slice(0, eq)).replace(/\+/g, ' '));
          value = eq < 0 ? '' : decodeURIComponent(part.slice(eq + 1).replace(/\+/g, ' '));
        } catch {
          key = eq < 0 ? part : part.slice(0, eq);
          value = eq < 0 ? '' : part.slice(eq + 1);
        }
        if (key.trim().toLowerCase() === '_method') add('query parameter _method', value);
      }
    }
    return out;
  }

  function sha1Base64(s: string): string {
    return createHash('sha1').update(s, 'latin1').digest('base64');
  }

  function formatHost(host: string): string {
    return host.includes(':') ? `[${host}]` : host;
  }

  function onConnection(socket: Socket, transparent?: TransparentTarget): void {
    counters.connections++;
    counters.open_connections++;
    const c = new ClientConnection(socket);
    connections.add(c);
    if (transparent) c.startTransparent(transparent);
  }

  // allowHalfOpen: a client may send its request and FIN at once (`printf ... | nc -U`); the
  // answer is still written, then the connection closed (ClientConnection.onClientEnd).
  const newServer = (onAccept?: (socket: Socket) => void, transparent?: (socket: Socket) => Promise<TransparentTarget | undefined>): Server => {
    const s = createServer({ noDelay: true, allowHalfOpen: true, highWaterMark: TUNNEL_HIGH_WATER_MARK }, (socket) => {
      onAccept?.(socket);
      if (!transparent) return onConnection(socket);
      // Intercepted: find where it was going (and under which name) before the usual path.
      socket.on('error', () => socket.destroy());
      transparent(socket).then(
        (t) => (t && !socket.destroyed ? onConnection(socket, t) : socket.destroy()),
        () => socket.destroy(),
      );
    });
    s.maxConnections = 20_000;
    return s;
  };
  const adopted = new Set<Server>();
  const closeServer = (s: Server): Promise<void> => new Promise<void>((resolve) => s.close(() => resolve()));

  return {
    adopt(listener, adoptOpts) {
      const s = newServer(adoptOpts?.onAccept, adoptOpts?.transparent);
      // Accept errors (EMFILE…) must not kill the supervisor; the listener stays.
      s.on('error', () => undefined);
      // listen(handle): our server takes over the listening socket the other one holds.
      s.listen(listener);
      adopted.add(s);
      return async () => {
        if (!adopted.delete(s)) return;
        await closeServer(s);
      };
    },
    async listen(target) {
      const s = newServer();
      server = s;
      // A burst of connects beyond the backlog is refused outright on a Unix socket (EAGAIN).
      if (typeof target === 'string') {
        socketPath = target;
        // 0600: the bridge connects as root from the sandbox's network namespace; nobody else needs it.
        await listenUnixSocket(s, target, { what: 'egress proxy socket', backlog: 4096 });
        return;
      }
      await new Promise<void>((resolve, reject) => {
        s.once('error', reject);
        s.listen({ port: target.port, host: target.host, backlog: 4096 }, () => resolve());
      });
    },
    port() {
      const a = server?.address();
      return a && typeof a === 'object' ? a.port : undefined;
    },
    async close() {
      queue.clear('shutdown');
      for (const c of [...connections]) c.close();
      agent.destroy();
      inferenceAgent.destroy();
      httpsAgent?.destroy();
      const servers = [...adopted, ...(server ? [server] : [])];
      adopted.clear();
      await Promise.all(servers.map(closeServer));
      if (socketPath) await rm(socketPath, { force: true });
    },
    pending() {
      return queue.list();
    },
    async decide(id, decision, by, reason, scope) {
      const note = cleanDecisionReason(reason);
      const noteField = note !== undefined ? { reason: note } : {};
      const entry = queue.get(id);
      if (!entry) {
        // Taken: a second decision on the same id is "not found", like any decided entry.
        const gone = queue.forgetDropped(id);
        if (gone) {
          // Every client of this prompt left before the decision: nothing is forwarded (or refused).
          // A rule the operator asked for (session / always / deny always) still applies from now on.
          const goneRule = await applyDecisionSideEffects(gone, decision, scope);
          emit({ kind: 'approval.decision', level: 'notice', id, pending_id: id, decision, by, latency_ms: 0, host: gone.host, port: gone.port, binary: gone.binary, waiters: 0, client_gone: true, ...ruleFields(goneRule, decision === 'session' || scope?.session === true), ...noteField });
          return { pending: { ...gone, waiters: 0 }, decision, latency_ms: 0, waiters: 0, client_gone: true, ...(goneRule ? { rule: goneRule } : {}) };
        }
        throw new NemoclawError('not_found', `no pending request ${previewJson(id, 40)} (already decided, timed out, or never existed)`, {
          nextStep: 'list the current ones with `nemoclaw-tui pending`',
        });
      }
      // The overlay write triggers policyChanged(); it must not settle this entry behind our back.
      deciding.add(id);
      let rule: OverlayRule | undefined;
      try {
        rule = await applyDecisionSideEffects(entry, decision, scope);
      } finally {
        deciding.delete(id);
      }
      const allowed = decision === 'once' || decision === 'session' || decision === 'always';
      const res = queue.resolve(id, allowed, decision, by as DecidedBy, note);
      const latencyMs = res?.latencyMs ?? 0;
      // Clients may have left while the side effects were written: count those still waiting.
      const waiters = res?.entry.waiters ?? 0;
      // ...and if every one of them left meanwhile, the entry was dropped: say so.
      const clientGone = res === undefined && queue.forgetDropped(id) !== undefined;
      emit({
        kind: 'approval.decision',
        level: 'notice',
        id,
        pending_id: id,
        decision,
        by,
        latency_ms: Math.round(latencyMs),
        host: entry.host,
        port: entry.port,
        binary: entry.binary,
        waiters,
        state: entry.state,
        ...ruleFields(rule, decision === 'session' || scope?.session === true),
        ...noteField,
        ...(clientGone ? { client_gone: true } : {}),
      });
      return { pending: entry, decision, latency_ms: Math.round(latencyMs), waiters, ...(clientGone ? { client_gone: true } : {}), ...(rule ? { rule } : {}) };
    },
    policyChanged(revision) {
      generation++;
      // Held requests the new policy now decides are released right away.
      for (const p of queue.list()) {
        if (p.state !== 'held' || deciding.has(p.id)) continue;
        const d = opts.decide({ host: p.host, port: p.port, binary: p.binary ?? undefined });
        if (d.verdict === 'allow') queue.resolve(p.id, true, 'policy_allow', 'policy');
        // The new policy's own refusal text goes to the agent (a quarantine's says quarantined, and why).
        else if (d.verdict === 'deny') queue.resolve(p.id, false, 'policy_deny', 'policy', d.reason);
      }
      for (const c of connections) {
        const a = c.tunnel?.admission ?? c.admission;
        if (!a || a === 'inference') continue;
        const d = opts.decide({ host: a.host, port: a.port, binary: a.binary, ancestors: a.ancestors });
        const stillAllowed = d.verdict === 'allow' || (a.source === 'approval' && d.verdict === 'unknown');
        if (stillAllowed) continue;
        counters.revoked++;
        emit({ kind: 'net.decision', level: 'warn', action: 'revoke', reason: `policy revision ${revision ?? '?'} no longer allows ${a.host}:${a.port}`, host: a.host, port: a.port, binary: a.binary ?? null, rule: d.rule ?? null });
        c.revoked = true;
        if (c.rawTunnel || !c.busy) c.close();
      }
    },
    counters() {
      return { ...counters };
    },
  };
}
