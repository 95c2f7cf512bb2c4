/**
 * The privacy router as a supervisor service: serves `inference.local` on its own Unix socket
 * (the egress proxy forwards every request for that host there), follows policy changes (an invalid
 * inference section is refused and the previous one kept), and exposes the budget on the control API.
 */
import { rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import type { ControlRoute, SupervisorContext, SupervisorOptions, SupervisorService } from '../control/types.js';
import { NemoclawError, describeError, previewJson } from '../shared/errors.js';
import { listenUnixSocket } from '../shared/socket.js';
import type { BudgetScope } from './budget.js';
import { FileAndEnvCredentials, loadOrCreateSandboxToken } from './credentials.js';
import { Agent } from 'undici';
import { createInferenceListener, labelClientApi } from './responses.js';
import { createRouter, type Router } from './router.js';
import { validateInferencePolicy } from './schema.js';

export const INFERENCE_SERVICE_NAME = 'inference';

export interface InferenceServiceOptions {
  /** Environment the provider keys are read from (default: the supervisor's). */
  env?: NodeJS.ProcessEnv;
}

export interface InferenceService extends SupervisorService {
  readonly name: 'inference';
  /** Unix socket serving inference.local (valid after start). */
  readonly socketPath: string;
  /** The per-sandbox token the agent must send (Authorization: Bearer / x-api-key). */
  sandboxToken(): string;
  /** The router core (for tests and the drill agent). */
  router(): Router;
}

const SCOPES: readonly BudgetScope[] = ['hour', 'day', 'request'];

function parseCaps(body: unknown): { scope: BudgetScope; caps: { tokens?: number; usd?: number } } {
  const b = (body ?? {}) as Record<string, unknown>;
  const scope = b.scope as BudgetScope;
  if (!SCOPES.includes(scope)) {
    throw new NemoclawError('invalid_input', `budget scope must be one of ${SCOPES.join(', ')} (got ${previewJson(b.scope)})`, {
      nextStep: 'send {"scope": "hour", "tokens": 200000} or {"scope": "day", "usd": 20}',
    });
  }
  const caps: { tokens?: number; usd?: number } = {};
  if (b.tokens !== undefined) {
    if (typeof b.tokens !== 'number' || !Number.isInteger(b.tokens) || b.tokens <= 0) {
      throw new NemoclawError('invalid_input', 'budget tokens must be a positive integer', { nextStep: 'e.g. "tokens": 200000' });
    }
    caps.tokens = b.tokens;
  }
  if (b.usd !== undefined) {
    if (typeof b.usd !== 'number' || !Number.isFinite(b.usd) || b.usd <= 0) {
      throw new NemoclawError('invalid_input', 'budget usd must be a positive number', { nextStep: 'e.g. "usd": 20' });
    }
    caps.usd = b.usd;
  }
  if (caps.tokens === undefined && caps.usd === undefined) {
    throw new NemoclawError('invalid_input', 'nothing to set: give tokens and/or usd', { nextStep: 'send {"scope": "hour", "tokens": 200000}' });
  }
  return { scope, caps };
}

export function createInferenceService(options: InferenceServiceOptions = {}): InferenceService {
  let ctx: SupervisorContext | undefined;
  let core: Router | undefined;
  let server: Server | undefined;
  /** The Responses adapter's connection back into this socket (its calls take the router's full path). */
  let selfAgent: Agent | undefined;
  let socketPath = '';
  let token = '';
  let unsubscribe: (() => void) | undefined;
  let lastPolicyError: string | undefined;

  const requireCore = (): Router => {
    if (!core) throw new NemoclawError('not_running', 'the privacy router is not started', { nextStep: 'start the supervisor with `nemoclaw-tui up`' });
    return core;
  };

  return {
    name: 'inference',
    get socketPath() {
      return socketPath;
    },
    sandboxToken: () => token,
    router: requireCore,

    async start(context: SupervisorContext): Promise<void> {
      ctx = context;
      const raw = context.policy.current().inference;
      // Fail the start with the field named: the supervisor reports it like any policy error.
      validateInferencePolicy(raw);
      token = loadOrCreateSandboxToken(join(context.paths.dir, 'inference-token'));
      core = createRouter({
        policy: raw,
        credentials: new FileAndEnvCredentials(context.home.credentialsFile, options.env ?? process.env),
        sandboxToken: token,
        clock: context.clock,
        emit: labelClientApi((e) => void context.events.emit(e)),
        durable: () => context.events.durable(),
        // The kill switch (src/control/quarantine.ts), looked up per call: it may start or end any time.
        refusal: () => context.service<SupervisorService & { refusal?(): string | undefined }>('quarantine')?.refusal?.(),
        publishTransient: (e) => void context.events.publishTransient(e),
        budgetStateFile: context.paths.budgetStateFile,
      });
      unsubscribe = context.policy.onChange((rev, doc) => {
        try {
          core!.setPolicy(doc.inference);
          lastPolicyError = undefined;
        } catch (err) {
          lastPolicyError = `revision ${rev.number}: ${describeError(err)}`;
          process.stderr.write(`nemoclaw: privacy router kept its previous configuration: ${lastPolicyError}\n`);
        }
      });
      socketPath = join(context.paths.runDir, 'inference.sock');
      const agent = new Agent({ connect: { socketPath }, keepAliveTimeout: 30_000 });
      selfAgent = agent;
      // POST /v1/responses: translated to chat completions and sent back through this socket.
      const listener = createInferenceListener({
        router: core,
        self: () => ({ dispatcher: agent, origin: 'http://inference.local' }),
        sandboxToken: token,
        emit: (e) => void context.events.emit(e),
        now: () => context.clock.now(),
      });
      const srv = createServer(listener);
      srv.keepAliveTimeout = 60_000;
      server = srv;
      await listenUnixSocket(srv, socketPath, { what: 'privacy router socket' });
    },

    async stop(): Promise<void> {
      unsubscribe?.();
      unsubscribe = undefined;
      const srv = server;
      server = undefined;
      if (srv) {
        srv.closeAllConnections();
        await new Promise<void>((resolve) => srv.close(() => resolve()));
      }
      await selfAgent?.close().catch(() => undefined);
      selfAgent = undefined;
      if (socketPath) rmSync(socketPath, { force: true });
      await core?.close().catch(() => undefined);
    },

    status(): Record<string, unknown> {
      if (!core) return { running: false };
      const cfg = core.config();
      return {
        running: true,
        socket: socketPath,
        providers: Object.fromEntries(Object.entries(cfg.providers).map(([n, p]) => [n, { type: p.type, locality: p.locality, model: p.model ?? null }])),
        routes: cfg.routes.length,
        ...core.stats(),
        budget: core.budget(),
        ...(lastPolicyError ? { policy_error: lastPolicyError } : {}),
      };
    },

    routes(): ControlRoute[] {
      return [
        { method: 'GET', path: '/v1/budget', handler: () => ({ status: 200, body: requireCore().budget() }) },
        {
          method: 'POST',
          path: '/v1/budget',
          handler: (req) => {
            const { scope, caps } = parseCaps(req.body);
            const snapshot = requireCore().setBudget(scope, caps);
            ctx?.events.emit({ kind: 'budget.update', level: 'notice', reason: `operator set ${scope} cap`, scope, caps, hour: snapshot.hour, day: snapshot.day, request: snapshot.request });
            return { status: 200, body: snapshot };
          },
        },
      ];
    },
  };
}

/** Factory for src/control/services.ts. */
export const inferenceServiceFactory = (_options: SupervisorOptions): InferenceService => createInferenceService();
