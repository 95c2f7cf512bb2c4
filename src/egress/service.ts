/**
 * The egress proxy as a supervisor service: listens on the sandbox's proxy socket, asks the policy
 * store, holds unknown hosts for the operator, and serves `GET /v1/pending` and
 * `POST /v1/pending/:id` on the control API.
 */
import type { ControlRoute, SupervisorContext, SupervisorService } from '../control/types.js';
import { NemoclawError } from '../shared/errors.js';
import { ensurePrivateDir } from '../shared/home.js';
import { createBinaryIdentifier, type IdentifyTarget } from './identity.js';
import { createEgressProxy, type EgressProxy } from './proxy.js';
import { APPROVAL_DECISIONS, type ApprovalDecision } from './pending.js';
import type { Resolver } from './ssrf.js';

export const EGRESS_SERVICE_NAME = 'egress';

export interface EgressServiceOptions {
  /** Replaces the system resolver (tests). */
  resolver?: Resolver;
}

export interface EgressService extends SupervisorService {
  readonly name: 'egress';
  /** Unix socket the sandbox bridge connects to (valid after start). */
  readonly socketPath: string;
  proxy(): EgressProxy;
}

/** What the egress proxy needs from the sandbox driver (structural, so neither imports the other). */
interface SandboxInstanceView {
  rootPid: number;
  netMode?: string;
  proxyPort?: number;
}
interface SandboxServiceView extends SupervisorService {
  instances?(): SandboxInstanceView[];
}
interface InferenceServiceView extends SupervisorService {
  readonly socketPath?: string;
}

export function createEgressService(opts: EgressServiceOptions = {}): EgressService {
  let proxy: EgressProxy | undefined;
  let socketPath = '';
  let unsubscribe: (() => void) | undefined;
  let ctxRef: SupervisorContext | undefined;

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
        const body = (req.body ?? {}) as { decision?: unknown; by?: unknown };
        const decision = body.decision as ApprovalDecision;
        if (!APPROVAL_DECISIONS.includes(decision)) {
          throw new NemoclawError('invalid_input', `decision must be one of ${APPROVAL_DECISIONS.join(', ')} (got ${JSON.stringify(body.decision)})`, {
            nextStep: 'send {"decision": "once"} (or session, always, deny, deny_always)',
            exitCode: 2,
          });
        }
        const by = body.by === 'tui' ? 'tui' : 'cli';
        const id = req.params.id ?? '';
        const result = await requireProxy().decide(id, decision, by);
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
    async start(ctx) {
      ctxRef = ctx;
      ensurePrivateDir(ctx.paths.runDir);
      socketPath = ctx.paths.proxySocket;
      const identifier = createBinaryIdentifier(() => {
        const sandbox = ctx.service<SandboxServiceView>('sandbox');
        const list = sandbox?.instances?.() ?? [];
        return list
          .filter((i) => i.netMode === 'bridge-outside' && i.rootPid > 0)
          .map((i): IdentifyTarget => ({ rootPid: i.rootPid, relayPort: i.proxyPort ?? 3128 }));
      });
      proxy = createEgressProxy({
        decide: (q) => ctx.policy.decideNetwork(q),
        approvals: () => ctx.policy.current().approvals,
        operatorsAttached: () => ctx.operators.attachedCount(),
        emit: (e) => void ctx.events.emit(e),
        clock: ctx.clock,
        ...(opts.resolver ? { resolver: opts.resolver } : {}),
        unsafeAllowLoopbackUpstreams: ctx.options.unsafeAllowLoopbackUpstreams === true,
        identify: (socket) => identifier.identify(socket),
        inferenceSocket: () => ctx.service<InferenceServiceView>('inference')?.socketPath || undefined,
        addSessionAllow: (rule) => ctx.policy.addSessionAllow(rule),
        addOverlayRule: (rule, reason) => ctx.policy.addOverlayRule(rule, 'approval', reason),
      });
      await proxy.listen(socketPath);
      unsubscribe = ctx.policy.onChange((rev) => proxy?.policyChanged(rev.number));
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
        counters: c,
      };
    },
    routes() {
      return routes;
    },
  };
}
