/**
 * The egress proxy as a supervisor service: listens on the sandbox's proxy socket, asks the policy
 * store, holds unknown hosts for the operator, and serves `GET /v1/pending` and
 * `POST /v1/pending/:id` on the control API.
 */
import type { ControlRoute, SupervisorContext, SupervisorService } from '../control/types.js';
import type { EventInput } from '../audit/events.js';
import { NemoclawError, previewJson } from '../shared/errors.js';
import { ensurePrivateDir } from '../shared/home.js';
import { createBinaryIdentifier, type IdentifyTarget } from './identity.js';
import { dirname, join } from 'node:path';
import type { Server, Socket } from 'node:net';
import type { PolicyDocument } from '../policy/types.js';
import { createEgressProxy, INFERENCE_HOST, type EgressProxy } from './proxy.js';
import { tunnelNeedsInspection } from './l7.js';
import { binaryMatters } from './binaries.js';
import { loadOrCreateSandboxCa, type SandboxCa, type SandboxTrustBundle } from './tls.js';
import { APPROVAL_DECISIONS, cleanDecisionReason, MAX_DECISION_REASON_CHARS, type ApprovalDecision } from './pending.js';
import type { Resolver } from './ssrf.js';
import { MAX_GRANT_MS, parseGrantScope } from './grant.js';
import { FakeDnsPool, serveDns } from './dns.js';
import { resolveTransparentTarget, serveUdpSink } from './transparent.js';
import type { TransparentSockets } from '../sandbox/transparent.js';

export const EGRESS_SERVICE_NAME = 'egress';

export interface EgressServiceOptions {
  /** Replaces the system resolver (tests). */
  resolver?: Resolver;
  /** Roots for verifying re-originated upstream TLS (tests: their own CA; default system roots). */
  upstreamCa?: string | string[];
  /** The openssl binary (default `openssl` on PATH). */
  openssl?: string;
  /**
   * Lifetime of a pending entry refused while nobody was attached (default 10 min; the supervisor
   * option `pendingTtlSeconds` sets it too).
   */
  unattendedTtlMs?: number;
  /**
   * Deadline for a request head from its first byte, and the idle time between keep-alive
   * requests (default 30 s, the proxy's own default).
   */
  headTimeoutMs?: number;
}

export interface EgressService extends SupervisorService {
  readonly name: 'egress';
  /** Unix socket the sandbox bridge connects to (valid after start). */
  readonly socketPath: string;
  proxy(): EgressProxy;
  /**
   * What every sandboxed process needs to trust the per-sandbox CA (TLS termination for L7 on
   * HTTPS): bind `source` read-only at `target` and add `env`. Undefined before start, or when the
   * CA could not be made (then L7 tunnels over TLS are refused and status says why).
   */
  sandboxTrust(): SandboxTrustBundle | undefined;
  /**
   * Accept the sandbox's connections on `listener` (its 127.0.0.1:`port`, listening in the network
   * namespace of `rootPid`); binary identity follows each accepted socket back into that netns.
   * Returns the function that stops it (the sandbox's cleanup calls it).
   */
  attachSandboxListener(listener: Server, target: { rootPid: number; port: number }): () => Promise<void>;
  /**
   * Transparent interception of a sandbox (sandbox/transparent.ts): accept its redirected TCP on
   * the proxy (same decisions and holds as proxied requests), answer its DNS from the fake pool
   * (every lookup a `net.dns` event), record and drop its other UDP. Returns the function that stops it.
   */
  attachTransparent(sockets: TransparentSockets, target: { rootPid: number }): () => Promise<void>;
}

/** Exact host names of endpoints whose CONNECT tunnels are decrypted: their leaves are minted ahead. */
export function terminatedHosts(doc: PolicyDocument): string[] {
  const hosts = new Set<string>([INFERENCE_HOST]);
  for (const p of Object.values(doc.network_policies)) {
    for (const ep of p.endpoints) {
      // Hostless (allowed_ips) and glob endpoints are minted on demand.
      if (ep.host === '' || ep.host.includes('*')) continue;
      if (tunnelNeedsInspection(ep)) hosts.add(ep.host.toLowerCase());
    }
  }
  return [...hosts];
}

interface InferenceServiceView extends SupervisorService {
  readonly socketPath?: string;
}

function unattendedTtl(opts: EgressServiceOptions, ctx: SupervisorContext): { unattendedTtlMs?: number } {
  if (opts.unattendedTtlMs !== undefined) return { unattendedTtlMs: opts.unattendedTtlMs };
  const s = ctx.options.pendingTtlSeconds;
  return typeof s === 'number' && Number.isFinite(s) && s > 0 ? { unattendedTtlMs: s * 1000 } : {};
}

export function createEgressService(opts: EgressServiceOptions = {}): EgressService {
  let proxy: EgressProxy | undefined;
  let socketPath = '';
  let unsubscribe: (() => void) | undefined;
  let ctxRef: SupervisorContext | undefined;
  let ca: SandboxCa | undefined;
  let caError: string | undefined;
  /** Which sandbox's listener accepted a socket: the netns its identity is looked up in. */
  const socketTargets = new WeakMap<Socket, IdentifyTarget>();
  /** Names the sandbox looked up ↔ the pool addresses it was given (shared by its sandboxes). */
  const dnsPool = new FakeDnsPool();

  const requireProxy = (): EgressProxy => {
    if (!proxy) throw new NemoclawError('not_running', 'the egress proxy is not running', { nextStep: 'check `nemoclaw-tui status`' });
    return proxy;
  };

  const routes: ControlRoute[] = [
    {
      method: 'GET',
      path: '/v1/pending',
      handler: () => ({ status: 200, body: { pending: requireProxy().pending() } }),
    },
    {
      method: 'POST',
      path: '/v1/pending/:id',
      handler: async (req) => {
        const body = (req.body ?? {}) as { decision?: unknown; by?: unknown; reason?: unknown; scope?: unknown };
        const decision = body.decision as ApprovalDecision;
        if (!APPROVAL_DECISIONS.includes(decision)) {
          throw new NemoclawError('invalid_input', `decision must be one of ${APPROVAL_DECISIONS.join(', ')} (got ${previewJson(body.decision)})`, {
            nextStep: 'send {"decision": "once"} (or session, always, deny, deny_always)',
            exitCode: 2,
          });
        }
        if (body.reason !== undefined && body.reason !== null && typeof body.reason !== 'string') {
          throw new NemoclawError('invalid_input', `reason must be a string (got ${typeof body.reason})`, {
            nextStep: `send {"decision": "deny", "reason": "short text"} (at most ${MAX_DECISION_REASON_CHARS} characters are kept)`,
            exitCode: 2,
          });
        }
        const by = body.by === 'tui' ? 'tui' : 'cli';
        const id = req.params.id ?? '';
        // Pending ids are short and printable (`p-12`); anything else names nothing, and is not
        // echoed whole (or with its control characters) into the error.
        if (id.length > 128 || /[\u0000-\u001f\u007f-\u009f]/.test(id)) {
          throw new NemoclawError('not_found', `no pending request ${previewJson(id, 40)}`, { nextStep: 'list the pending requests with `nemoclaw-tui pending` (GET /v1/pending)', exitCode: 2 });
        }
        // Control characters are stripped and the length bounded before it reaches the log or the agent.
        const reason = cleanDecisionReason(body.reason);
        // What the rule covers, exactly as chosen (grant.ts); a time box counts from the supervisor's clock.
        const scope = parseGrantScope(body.scope);
        const forMs = (body.scope as { duration_ms?: unknown } | undefined)?.duration_ms;
        if (forMs !== undefined) {
          if (typeof forMs !== 'number' || !Number.isInteger(forMs) || forMs <= 0 || forMs > MAX_GRANT_MS) {
            throw new NemoclawError('invalid_input', `scope.duration_ms must be a whole number of ms from 1 to ${MAX_GRANT_MS}`, { nextStep: 'send {"scope": {"duration_ms": 900000}} for 15 min', exitCode: 2 });
          }
          scope.expires_at = new Date((ctxRef?.clock.now() ?? Date.now()) + forMs).toISOString();
        }
        const result = await requireProxy().decide(id, decision, by, reason, scope);
        return { status: 200, body: result };
      },
    },
  ];

  return {
    name: 'egress',
    get socketPath() {
      return socketPath;
    },
    proxy: requireProxy,
    sandboxTrust: () => ca?.trustBundle(),
    attachSandboxListener(listener, target) {
      const t: IdentifyTarget = { rootPid: target.rootPid, relayPort: target.port };
      return requireProxy().adopt(listener, { onAccept: (socket) => socketTargets.set(socket, t) });
    },
    attachTransparent(sockets, target) {
      const p = requireProxy();
      const emit = (e: EventInput): void => void ctxRef?.events.emit(e);
      const stops: Array<() => Promise<void> | void> = [];
      for (const listener of [sockets.tcp4, sockets.tcp6]) {
        if (!listener) continue;
        stops.push(
          p.adopt(listener, {
            transparent: (socket) =>
              resolveTransparentTarget(socket, {
                rootPid: target.rootPid,
                pool: dnsPool,
                emit,
                // The client's socket still names the original destination: identity matches on it.
                onOriginal: (s, dst) => socketTargets.set(s, { rootPid: target.rootPid, relayPort: dst.port, serverIp: dst.ip }),
              }),
          }),
        );
      }
      stops.push(serveDns({ udp: sockets.dnsUdp, tcp: sockets.dnsTcp }, { pool: dnsPool, emit }));
      stops.push(serveUdpSink([sockets.udpSink4, ...(sockets.udpSink6 ? [sockets.udpSink6] : [])], { rootPid: target.rootPid, pool: dnsPool, emit }));
      return async () => {
        for (const s of stops) await s();
      };
    },
    async start(ctx) {
      ctxRef = ctx;
      ensurePrivateDir(ctx.paths.runDir);
      ensurePrivateDir(dirname(ctx.paths.proxySocket));
      socketPath = ctx.paths.proxySocket;
      try {
        ca = await loadOrCreateSandboxCa({
          privateDir: join(ctx.paths.dir, 'tls'),
          trustDir: join(ctx.paths.dir, 'trust'),
          sandboxName: ctx.name,
          now: () => ctx.clock.now(),
          ...(opts.openssl ? { openssl: opts.openssl } : {}),
        });
        caError = undefined;
        ca.prewarm(terminatedHosts(ctx.policy.current()));
      } catch (err) {
        // The proxy still runs: tunnels that need TLS termination are refused, status says why.
        ca = undefined;
        caError = err instanceof Error ? err.message : String(err);
      }
      const identifier = createBinaryIdentifier((socket) => socketTargets.get(socket));
      proxy = createEgressProxy({
        decide: (q) => ctx.policy.decideNetwork(q),
        approvals: () => ctx.policy.current().approvals,
        operatorsAttached: () => ctx.operators.attachedCount(),
        emit: (e) => void ctx.events.emit(e),
        audit: { durable: () => ctx.events.durable(), writable: () => ctx.events.writable(), problem: () => ctx.events.auditProblem() },
        clock: ctx.clock,
        ...(opts.resolver ? { resolver: opts.resolver } : {}),
        unsafeAllowLoopbackUpstreams: ctx.options.unsafeAllowLoopbackUpstreams === true,
        identify: (socket) => identifier.identify(socket),
        holders: (socket) => identifier.holders(socket),
        binaryMatters: (host, port) => binaryMatters(ctx.policy.current(), host, port),
        inferenceSocket: () => ctx.service<InferenceServiceView>('inference')?.socketPath || undefined,
        addSessionAllow: (rule) => ctx.policy.addSessionAllow(rule),
        addOverlayRule: (rule, reason) => ctx.policy.addOverlayRule(rule, 'approval', reason),
        addSessionRule: (rule) => ctx.policy.addSessionRule(rule),
        ...(ca ? { tls: ca } : {}),
        ...(opts.upstreamCa ? { upstreamCa: opts.upstreamCa } : {}),
        ...unattendedTtl(opts, ctx),
        ...(opts.headTimeoutMs !== undefined ? { headTimeoutMs: opts.headTimeoutMs } : {}),
      });
      await proxy.listen(socketPath);
      unsubscribe = ctx.policy.onChange((rev) => {
        proxy?.policyChanged(rev.number);
        ca?.prewarm(terminatedHosts(ctx.policy.current()));
      });
    },
    async stop() {
      try {
        unsubscribe?.();
        await proxy?.close();
      } catch {
        // stop() must not throw
      }
      proxy = undefined;
    },
    status() {
      if (!proxy) return { listening: false };
      const c = proxy.counters();
      return {
        listening: true,
        socket: socketPath,
        pending: proxy.pending().length,
        held_waiting: proxy.pending().reduce((n, p) => n + p.waiters, 0),
        unsafe_allow_loopback_upstreams: ctxRef?.options.unsafeAllowLoopbackUpstreams === true,
        tls_termination: ca ? { ca_cert: ca.caCertPath, bundle: ca.bundlePath, leaves_minted: ca.minted() } : { disabled: caError ?? 'not started' },
        counters: c,
      };
    },
    routes() {
      return routes;
    },
  };
}
