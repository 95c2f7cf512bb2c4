/**
 * One supervisor per sandbox name. Owns the event bus (audit log + subscribers), the policy store,
 * operator presence and the control API; starts the services of services.ts in order and stops
 * them in reverse.
 */
import { existsSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { AuditLog } from '../audit/index.js';
import type { EventInput } from '../audit/events.js';
import { createPolicyStore, DEFAULT_POLICY_PATH } from '../policy/index.js';
import type { RevisionAuthor } from '../policy/types.js';
import { systemClock, type Clock } from '../shared/clock.js';
import { NemoclawError, describeError, previewJson } from '../shared/errors.js';
import { DEFAULT_SANDBOX_NAME, ensureSandboxDirs, homePaths, resolveHome, sandboxPaths, type HomePaths, type SandboxPaths } from '../shared/home.js';
import { verifiedLockedBlueprint, type LockedBlueprint } from './blueprint-lock.js';
import type { PolicySetResult, SupervisorStatus } from './client.js';
import { SupervisorEventBus } from './eventbus.js';
import { acquirePidLock, releasePidLock } from './pidfile.js';
import { OperatorPresenceTracker } from './presence.js';
import { ControlServer } from './server.js';
import { rulesRoutes } from './rules-routes.js';
import { serviceFactories, type ServiceFactory } from './services.js';
import type { ControlRoute, PolicyStore, SupervisorContext, SupervisorOptions, SupervisorService } from './types.js';
import { packageInfo } from '../shared/package.js';

export interface SupervisorConfig {
  name: string;
  /** $NEMOCLAW_HOME (default: from the environment). */
  home?: string;
  /** Base policy file (`up --policy F`). Default: the policy this sandbox last ran with, else the baseline. */
  policyFile?: string;
  /** Base policy text (tests); wins over policyFile. */
  policyText?: string;
  /** Test-only: lets the egress proxy dial loopback upstreams. Never settable from a policy file. */
  unsafeAllowLoopbackUpstreams?: boolean;
  /** Extra options for services. */
  options?: Record<string, unknown>;
  /** Services to run (default: serviceFactories from services.ts). */
  services?: ServiceFactory[];
  clock?: Clock;
  heartbeatMs?: number;
  maxBufferedBytes?: number;
  ringSize?: number;
  /** Diagnostic lines (the daemon log); default stderr. */
  log?: (line: string) => void;
  /** Take the pid lock for this pid (default: this process). */
  pid?: number;
  /**
   * When an audit record is durable (AuditLogOptions.sync): `fsync` (default, survives power loss)
   * or `write` (survives a supervisor crash; fdatasync overlapped). Default: $NEMOCLAW_AUDIT_SYNC.
   */
  auditSync?: 'fsync' | 'write';
}

const AUTHORS: readonly RevisionAuthor[] = ['cli', 'tui', 'approval', 'startup', 'onboard'];
/** How long one service may take to stop before the supervisor gives up on it and goes on (the agent gets a 10 s grace). */
const SERVICE_STOP_TIMEOUT_MS = 15_000;

export class Supervisor {
  readonly name: string;
  readonly paths: SandboxPaths;
  readonly home: HomePaths;
  readonly events: SupervisorEventBus;
  readonly policy: PolicyStore;
  readonly operators: OperatorPresenceTracker;
  readonly options: SupervisorOptions;
  /** The blueprint this sandbox is pinned to (verified in the store at start), if any. */
  readonly blueprint: LockedBlueprint | undefined;
  private readonly audit: AuditLog;
  private readonly clock: Clock;
  private readonly log: (line: string) => void;
  private readonly pid: number;
  private readonly startedAt: number;
  private readonly started: SupervisorService[] = [];
  private server: ControlServer | undefined;
  private state: 'running' | 'stopping' = 'running';
  private stopPromise: Promise<void> | undefined;
  private resolveStopped!: () => void;
  /** Resolves once the supervisor has stopped (by `stop()` or `POST /v1/shutdown`). */
  readonly stopped: Promise<void>;

  private constructor(init: {
    config: SupervisorConfig;
    paths: SandboxPaths;
    home: HomePaths;
    audit: AuditLog;
    events: SupervisorEventBus;
    policy: PolicyStore;
    operators: OperatorPresenceTracker;
    options: SupervisorOptions;
    blueprint: LockedBlueprint | undefined;
    clock: Clock;
    log: (line: string) => void;
    pid: number;
  }) {
    this.name = init.config.name;
    this.paths = init.paths;
    this.home = init.home;
    this.audit = init.audit;
    this.events = init.events;
    this.policy = init.policy;
    this.operators = init.operators;
    this.options = init.options;
    this.blueprint = init.blueprint;
    this.clock = init.clock;
    this.log = init.log;
    this.pid = init.pid;
    this.startedAt = init.clock.now();
    this.stopped = new Promise((r) => (this.resolveStopped = r));
  }

  /** Take the pid lock, open the audit log and policy, start services, then serve the control API. */
  static async start(config: SupervisorConfig): Promise<Supervisor> {
    const root = resolve(config.home ?? resolveHome());
    const paths = sandboxPaths(config.name, root);
    const home = homePaths(root);
    const clock = config.clock ?? systemClock;
    const log = config.log ?? ((line: string) => process.stderr.write(`${line}\n`));
    const pid = config.pid ?? process.pid;
    const unsafe = config.unsafeAllowLoopbackUpstreams === true;
    ensureSandboxDirs(paths, root);

    const { text: baseText, source } = resolveBasePolicy(config, paths);
    // A sandbox pinned to a blueprint runs it only from the store, and only if that copy still verifies.
    const blueprint = verifiedLockedBlueprint(paths, home);
    acquirePidLock(paths, pid);
    let audit: AuditLog | undefined;
    try {
      let reportedAuditError = false;
      audit = await AuditLog.open({
        dir: paths.auditDir,
        sandbox: config.name,
        clock,
        sync: config.auditSync ?? (process.env.NEMOCLAW_AUDIT_SYNC === 'write' ? 'write' : 'fsync'),
        onError: (err) => {
          // Reported once per failure; the log fails closed and retries until it can write the gap marker.
          if (reportedAuditError) return;
          reportedAuditError = true;
          log(`audit log write failed: ${err.message}`);
        },
      });
      audit.watch({
        onHealth: (h) => {
          if (h.ok) {
            reportedAuditError = false;
            log('audit log writable again: resumed after a recorded gap (the audit.gap marker names the lost seqs); egress and inference allowed again');
          }
        },
      });
      const events = new SupervisorEventBus({
        sandbox: config.name,
        audit,
        clock,
        ringSize: config.ringSize,
        extraFields: unsafe ? { unsafe: true } : undefined,
        onListenerError: (err) => log(`event subscriber failed: ${describeError(err)}`),
      });
      if (audit.recovery) {
        const r = audit.recovery;
        log(`audit log: removed a torn last record (${r.tornBytes} bytes, saved to ${r.savedTo}); chain continues from seq ${r.lastSeq}`);
        events.emit({ kind: 'sandbox.lifecycle', level: 'warn', action: 'audit.recovered', file: r.file, torn_bytes: r.tornBytes, saved_to: r.savedTo, continued_from_seq: r.lastSeq });
      }
      const policy = await createPolicyStore({
        paths,
        baseText,
        source,
        clock,
        emit: (input: EventInput) => events.emit(input),
      });
      // The store keeps paths.policyFile current, so a later `up` without --policy runs the same base.
      const options: SupervisorOptions = { ...(config.options ?? {}), unsafeAllowLoopbackUpstreams: unsafe };
      // The agent service reads `options.blueprint` (a packaged name or a directory): give it the stored copy.
      if (blueprint && options.blueprint === undefined) options.blueprint = blueprint.dir;
      const sup = new Supervisor({
        config,
        paths,
        home,
        audit,
        events,
        policy,
        operators: new OperatorPresenceTracker(),
        options,
        blueprint,
        clock,
        log,
        pid,
      });
      try {
        await sup.boot(config);
      } catch (err) {
        await sup.stop(`start failed: ${describeError(err)}`);
        throw err;
      }
      return sup;
    } catch (err) {
      if (audit) await audit.close().catch(() => undefined);
      releasePidLock(paths, pid);
      throw err;
    }
  }

  private async boot(config: SupervisorConfig): Promise<void> {
    const rev = this.policy.revision();
    this.events.emit({
      kind: 'sandbox.lifecycle',
      level: 'notice',
      action: 'supervisor.start',
      pid: this.pid,
      version: packageInfo().version,
      policy_revision: rev.number,
      policy_sha256: rev.sha256,
      unsafe_allow_loopback_upstreams: this.options.unsafeAllowLoopbackUpstreams,
      ...(this.blueprint ? { blueprint: this.blueprint.name, blueprint_version: this.blueprint.version, blueprint_digest: this.blueprint.digest } : {}),
    });
    const ctx = this.context();
    const factories = config.services ?? serviceFactories;
    for (const factory of factories) {
      const service = factory(this.options);
      this.log(`starting service ${service.name}`);
      await service.start(ctx);
      this.started.push(service);
    }
    const routes: ControlRoute[] = [...this.builtinRoutes()];
    for (const s of this.started) routes.push(...(s.routes?.() ?? []));
    const serverOpts: ConstructorParameters<typeof ControlServer>[0] = {
      socketPath: this.paths.controlSocket,
      sandbox: this.name,
      bus: this.events,
      presence: this.operators,
      routes,
      onError: (err) => this.log(`control API: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}`),
    };
    if (config.heartbeatMs !== undefined) serverOpts.heartbeatMs = config.heartbeatMs;
    if (config.maxBufferedBytes !== undefined) serverOpts.maxBufferedBytes = config.maxBufferedBytes;
    this.server = new ControlServer(serverOpts);
    await this.server.listen();
    this.log(`supervisor of sandbox "${this.name}" running (pid ${this.pid}, socket ${this.paths.controlSocket})`);
  }

  context(): SupervisorContext {
    return {
      name: this.name,
      paths: this.paths,
      home: this.home,
      clock: this.clock,
      events: this.events,
      policy: this.policy,
      operators: this.operators,
      options: this.options,
      service: <T extends SupervisorService>(name: string) => this.started.find((s) => s.name === name) as T | undefined,
    };
  }

  /**
   * The preset files `onboard --preset FILE` wrote into the base policy (its onboarding.json) whose
   * policies the running policy still has.
   */
  private presetFiles(): Array<{ name: string; source: string; sha256: string; policies: string[] }> {
    try {
      const record = JSON.parse(readFileSync(resolve(this.paths.dir, 'onboarding.json'), 'utf8')) as {
        preset_files?: Array<{ name: string; source: string; sha256: string; policies: string[] }>;
      };
      if (!Array.isArray(record.preset_files)) return [];
      const running = this.policy.current().network_policies;
      return record.preset_files
        .map((f) => ({ name: String(f.name), source: String(f.source), sha256: String(f.sha256), policies: Array.isArray(f.policies) ? f.policies.map(String) : [] }))
        .filter((f) => f.policies.length > 0 && f.policies.every((k) => Object.hasOwn(running, k)));
    } catch {
      return [];
    }
  }

  status(): SupervisorStatus {
    const rev = this.policy.revision();
    const services: Record<string, Record<string, unknown>> = {};
    for (const s of this.started) {
      try {
        services[s.name] = s.status?.() ?? {};
      } catch (err) {
        services[s.name] = { error: describeError(err) };
      }
    }
    return {
      name: this.name,
      pid: this.pid,
      version: packageInfo().version,
      state: this.state,
      started_at: new Date(this.startedAt).toISOString(),
      uptime_ms: Math.max(0, this.clock.now() - this.startedAt),
      socket: this.paths.controlSocket,
      home: this.home.root,
      unsafe_allow_loopback_upstreams: this.options.unsafeAllowLoopbackUpstreams,
      operators: this.operators.attachedCount(),
      last_seq: this.events.durableSeq(),
      policy: { revision: rev.number, sha256: rev.sha256, author: rev.author, time: rev.time, presets: [...this.policy.current().presets], preset_files: this.presetFiles() },
      audit: auditStatus(this.paths.auditDir, this.audit),
      ...(this.blueprint ? { blueprint: { ...this.blueprint } } : {}),
      services,
      routes: this.server?.routes() ?? [],
    };
  }

  /** Stop services in reverse, end streams, flush and close the audit log, release the pid lock. Idempotent. */
  stop(reason = 'requested'): Promise<void> {
    this.stopPromise ??= this.doStop(reason);
    return this.stopPromise;
  }

  private async doStop(reason: string): Promise<void> {
    this.state = 'stopping';
    this.log(`supervisor of sandbox "${this.name}" stopping (${reason})`);
    for (const s of [...this.started].reverse()) {
      // A service that never finishes stopping must not keep the supervisor (and `down`) waiting
      // forever: give each a bounded time, say which one overran, and go on with the others.
      let timer: NodeJS.Timeout | undefined;
      const overran = new Promise<'overran'>((resolve) => {
        timer = setTimeout(() => resolve('overran'), SERVICE_STOP_TIMEOUT_MS);
      });
      try {
        const outcome = await Promise.race([s.stop().then(() => 'stopped' as const), overran]);
        if (outcome === 'overran') this.log(`service ${s.name} did not stop within ${SERVICE_STOP_TIMEOUT_MS / 1000} s; stopping the others`);
      } catch (err) {
        this.log(`service ${s.name} failed to stop cleanly: ${describeError(err)}`);
      } finally {
        clearTimeout(timer);
      }
    }
    this.started.length = 0;
    try {
      this.events.emit({ kind: 'sandbox.lifecycle', level: 'notice', action: 'supervisor.stop', pid: this.pid, reason });
    } catch (err) {
      this.log(`could not record the stop event: ${describeError(err)}`);
    }
    if (this.server) await this.server.close('supervisor stopping').catch((err: unknown) => this.log(`control API close: ${describeError(err)}`));
    try {
      await this.audit.close();
    } catch (err) {
      this.log(`audit log flush failed on stop: ${describeError(err)}`);
    }
    releasePidLock(this.paths, this.pid);
    this.log(`supervisor of sandbox "${this.name}" stopped (${reason})`);
    this.resolveStopped();
  }

  private builtinRoutes(): ControlRoute[] {
    return [
      { method: 'GET', path: '/v1/status', handler: () => ({ status: 200, body: this.status() }) },
      {
        method: 'GET',
        path: '/v1/policy',
        handler: () => ({ status: 200, body: { yaml: this.policy.effectiveYaml(), revision: this.policy.revision() } }),
      },
      {
        method: 'PUT',
        path: '/v1/policy',
        handler: async (req) => {
          const body = req.body as { yaml?: unknown; author?: unknown; source?: unknown } | undefined;
          if (!body || typeof body !== 'object' || typeof body.yaml !== 'string') {
            throw new NemoclawError('invalid_input', 'PUT /v1/policy needs a JSON body {"yaml": "<policy text>", "author": "cli"}', { exitCode: 2 });
          }
          const author = body.author === undefined ? 'cli' : body.author;
          if (typeof author !== 'string' || !(AUTHORS as readonly string[]).includes(author)) {
            throw new NemoclawError('invalid_input', `author must be one of ${AUTHORS.join(', ')}`, { exitCode: 2 });
          }
          const source = typeof body.source === 'string' && body.source.length > 0 ? body.source : '<PUT /v1/policy>';
          // The source names the file in every message and is kept in the revision history: a name,
          // not a payload.
          if (source.length > MAX_POLICY_SOURCE_CHARS || /[\u0000-\u001f\u007f-\u009f]/.test(source)) {
            throw new NemoclawError('invalid_input', `source must be a file name of at most ${MAX_POLICY_SOURCE_CHARS} characters without control characters (got ${previewJson(source, 60)})`, {
              nextStep: 'send the path of the policy file, as `nemoclaw-tui policy set FILE` does',
              exitCode: 2,
            });
          }
          const before = this.policy.revision();
          const revision = await this.policy.apply(body.yaml, author as RevisionAuthor, source).catch((err: unknown) => {
            throw withRestartCommand(err, this.name, source);
          });
          const result: PolicySetResult = { revision, changed: revision.number !== before.number };
          return { status: 200, body: result };
        },
      },
      { method: 'GET', path: '/v1/policy/history', handler: () => ({ status: 200, body: { revisions: this.policy.history() } }) },
      ...rulesRoutes(this.policy),
      {
        method: 'POST',
        path: '/v1/shutdown',
        handler: () => {
          // Let the answer reach the client before the server closes.
          setTimeout(() => void this.stop('shutdown requested over the control API'), 20);
          return { status: 202, body: { pid: this.pid, stopping: true }, headers: { Connection: 'close' } };
        },
      },
    ];
  }
}

function auditStatus(dir: string, audit: AuditLog): SupervisorStatus['audit'] {
  const h = audit.health();
  if (h.ok) return { dir, last_seq: h.durableSeq, state: 'ok' };
  return {
    dir,
    last_seq: h.durableSeq,
    state: 'failing',
    problem: audit.problem() ?? h.message,
    code: h.code,
    disk: h.disk,
    since: h.since,
    first_lost_seq: h.firstLostSeq,
    lost_records: h.lostRecords,
  };
}

/**
 * A refused change of a static section tells the operator to restart; the restart command has to
 * address this sandbox (`--name N` unless it is the default one).
 */
function withRestartCommand(err: unknown, name: string, source: string): unknown {
  if (!(err instanceof NemoclawError) || err.code !== 'policy_static_change' || name === DEFAULT_SANDBOX_NAME) return err;
  const file = source.includes('/') || source.endsWith('.yaml') ? source : 'FILE';
  return new NemoclawError(err.code, err.message, {
    nextStep: `restart the sandbox with the new file: nemoclaw-tui down --name ${name} && nemoclaw-tui up --name ${name} --policy ${file}`,
    exitCode: err.exitCode,
    details: err.details,
    cause: err,
  });
}

/** Longest `source` (a policy file's name) PUT /v1/policy takes: PATH_MAX. */
const MAX_POLICY_SOURCE_CHARS = 4096;

function resolveBasePolicy(config: SupervisorConfig, paths: SandboxPaths): { text: string; source: string } {
  if (config.policyText !== undefined) return { text: config.policyText, source: config.policyFile ?? '<policy>' };
  const file = config.policyFile ? resolve(config.policyFile) : existsSync(paths.policyFile) ? paths.policyFile : DEFAULT_POLICY_PATH;
  try {
    return { text: readFileSync(file, 'utf8'), source: file };
  } catch (err) {
    throw new NemoclawError('not_found', `cannot read policy file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`, {
      nextStep: 'pass an existing file with `--policy FILE`',
      exitCode: 2,
      cause: err,
    });
  }
}
