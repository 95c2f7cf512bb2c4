/**
 * The agent as a supervisor service (last in services.ts). When the supervisor runs a blueprint
 * (`options.blueprint`, or the one this sandbox was created with, remembered in
 * `<sandbox>/agent.json`), it installs the runtime if missing (in the background, with progress as
 * agent.log events), writes the agent's config, starts the drill's stub model when the profile
 * asks for it, and keeps the agent's main process alive inside the sandbox.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import { parseDocument } from 'yaml';
import type { ControlRoute, SupervisorContext, SupervisorOptions, SupervisorService } from '../control/types.js';
import type { InferenceService } from '../inference/index.js';
import { NemoclawError, describeError } from '../shared/errors.js';
import { readQuarantine } from '../control/quarantine.js';
import { writeFileAtomicSync } from '../shared/fs.js';
import { packageInfo } from '../shared/package.js';
import { loadBlueprintSpec, packagedBlueprintDir, profileLocality, profileNames, profileParts, type LoadedBlueprint } from './blueprint-spec.js';
import {
  agentRuntimeLayout,
  execaRunner,
  planAgentInstall,
  runAgentInstall,
  type AgentRuntimeLayout,
  type AgentRuntimeSpec,
  type CommandRunner,
} from './installer.js';
import { buildOpenClawConfig, openClawEnv, SANDBOX_OPENCLAW_STATE_DIR, writeOpenClawConfig } from './openclaw-config.js';
import { sandboxLauncher } from './sandbox-launcher.js';
import { startStubModel, type StubModelServer } from './stub-model.js';
import { AgentSupervisor, type AgentLauncher, type AgentProcessSpec, type HealthCheck } from './supervise.js';

export const AGENT_SERVICE_NAME = 'agent';

/** Remembered per sandbox, so `up` after a reboot brings the same agent back. 0600. */
export interface AgentState {
  blueprint: string;
  /** Directory the blueprint was loaded from (packaged or content-addressed store). */
  blueprint_dir: string;
  profile: string;
  /** Token clients inside the sandbox present to the agent's gateway. */
  gateway_token: string;
  created_at: string;
}

export interface AgentServiceDeps {
  /** Default: the sandbox driver service. */
  launcher?: (ctx: SupervisorContext) => AgentLauncher;
  runner?: CommandRunner;
  packageRoot?: string;
  /** Default: from the inference service. */
  sandboxToken?: (ctx: SupervisorContext) => string;
  /** Shorter backoff in tests. */
  initialBackoffMs?: number;
}

export function agentStateFile(ctx: Pick<SupervisorContext, 'paths'>): string {
  return join(ctx.paths.dir, 'agent.json');
}

export function readAgentState(file: string): AgentState | undefined {
  if (!existsSync(file)) return undefined;
  try {
    const s = JSON.parse(readFileSync(file, 'utf8')) as AgentState;
    return typeof s.blueprint === 'string' && typeof s.gateway_token === 'string' ? s : undefined;
  } catch {
    return undefined;
  }
}

export function writeAgentState(file: string, state: AgentState): void {
  writeFileAtomicSync(file, `${JSON.stringify(state, null, 2)}\n`, 0o600);
}

/** A blueprint argument is a packaged name (`drill`) or a directory path. */
export function resolveBlueprintDir(arg: string, packageRoot: string): string {
  return arg.includes('/') || isAbsolute(arg) ? resolve(arg) : packagedBlueprintDir(arg, packageRoot);
}

export function runtimeSpecOf(bp: LoadedBlueprint): AgentRuntimeSpec | undefined {
  const a = bp.spec.agent;
  if (!('package' in a)) return undefined;
  return {
    agentPackage: a.package,
    agentVersion: a.version,
    nodeVersion: bp.spec.runtime.node,
    ...(a.packages_estimate !== undefined ? { packagesEstimate: a.packages_estimate } : {}),
    ...(a.post_install !== undefined ? { postInstall: a.post_install } : {}),
  };
}

/** Host paths bound read-only into the sandbox, from the blueprint's `sandbox.binds`. */
export function resolveBinds(bp: LoadedBlueprint, layout: AgentRuntimeLayout): Array<{ source: string; target: string }> {
  return bp.spec.sandbox.binds.map((b) => {
    const source =
      b.from === 'runtime.node'
        ? layout.nodeDir
        : b.from === 'runtime.agent'
          ? layout.agentDir
          : b.from === 'blueprint'
            ? bp.dir
            : join(bp.dir, b.from.slice('blueprint/'.length));
    return { source, target: b.to };
  });
}

/** Replace the stub provider's base_url in the base policy text (comments and layout kept). */
export function policyWithProviderUrl(policyText: string, provider: string, baseUrl: string): string {
  const doc = parseDocument(policyText);
  doc.setIn(['inference', 'providers', provider, 'base_url'], baseUrl);
  return doc.toString();
}

export function createAgentService(options: SupervisorOptions, deps: AgentServiceDeps = {}): SupervisorService {
  let ctx: SupervisorContext | undefined;
  let supervisor: AgentSupervisor | undefined;
  /** The stub models started for the profile (the drill's local and, for hybrid, its cloud one). */
  const stubs: StubModelServer[] = [];
  let blueprint: LoadedBlueprint | undefined;
  let state: AgentState | undefined;
  let phase: 'none' | 'installing' | 'running' | 'error' | 'stopped' | 'quarantined' = 'none';
  let lastError: string | undefined;
  let stopped = false;
  let background: Promise<void> | undefined;

  const emitLog = (line: string, level: 'info' | 'warn' | 'error' = 'info'): void => {
    ctx?.events.emit({ kind: 'agent.log', level, stream: 'supervisor', line });
  };

  async function prepareAndRun(c: SupervisorContext, bp: LoadedBlueprint, st: AgentState): Promise<void> {
    const spec = bp.spec;
    const runtime = runtimeSpecOf(bp) ?? { agentPackage: 'none', agentVersion: '0.0.0', nodeVersion: spec.runtime.node };
    const layout = agentRuntimeLayout(c.home.agentsDir, runtime);
    const plan = planAgentInstall(layout, runtime, { projectRoot: deps.packageRoot ?? packageInfo().root }).filter(
      (s) => runtimeSpecOf(bp) !== undefined || s.target === layout.nodeDir,
    );
    if (plan.length > 0) {
      phase = 'installing';
      c.events.emit({ kind: 'sandbox.lifecycle', level: 'notice', action: 'agent.installing', steps: plan.map((s) => s.description) });
      let lastPercent = -10;
      await runAgentInstall(plan, layout, {
        spec: runtime,
        runner: deps.runner ?? execaRunner,
        onProgress: (p) => {
          // Progress as log lines, at most one per 10 %.
          if (p.phase === 'progress' && (p.percent ?? 0) < lastPercent + 10) return;
          if (p.phase === 'progress') lastPercent = p.percent ?? lastPercent;
          if (p.phase === 'start') lastPercent = -10;
          emitLog(`install: ${p.message}${p.percent !== undefined && p.phase === 'progress' ? ` (${p.percent}%)` : ''}`);
        },
      });
    }
    if (stopped) return;

    // A profile, or the parts of the hybrid one: those whose provider the sandbox's policy has.
    const inPolicy = c.policy.current().inference.providers;
    const parts = (profileParts(spec, st.profile, (_n, p) => p.provider.name in inPolicy) ??
      profileParts(spec, st.profile) ??
      profileParts(spec, spec.inference.default_profile, (_n, p) => p.provider.name in inPolicy) ??
      profileParts(spec, spec.inference.default_profile)!).map(([, p]) => p);
    const profile = { models: [...new Set([...parts].reverse().flatMap((p) => p.models))] };
    const stubParts = parts.filter((p) => p.stub);
    if (stubParts.length > 0) {
      let policyText = readFileSync(c.paths.policyFile, 'utf8');
      const started = policyText;
      const where: string[] = [];
      for (const part of stubParts) {
        const cloud = profileLocality(part) === 'cloud';
        const stub = await startStubModel({ models: part.models, ...(cloud ? { label: 'drill cloud stub' } : {}) });
        stubs.push(stub);
        if (!inPolicy[part.provider.name]) {
          throw new NemoclawError('invalid_input', `the sandbox policy has no inference provider "${part.provider.name}" for the ${bp.spec.name} stub model`, {
            nextStep: `start the sandbox with the blueprint's policy: \`nemoclaw-tui up --blueprint ${bp.spec.name}\``,
          });
        }
        policyText = policyWithProviderUrl(policyText, part.provider.name, stub.baseUrl);
        where.push(`${stub.baseUrl} (provider ${part.provider.name}, ${cloud ? 'standing in for a cloud provider' : 'local'})`);
      }
      if (policyText !== started) {
        await c.policy.apply(policyText, 'startup', `the drill stub model${where.length > 1 ? 's' : ''} at ${stubs.map((s) => s.baseUrl).join(', ')}`);
      }
      for (const w of where) emitLog(`drill stub model listening on ${w}`);
    }

    const token = (deps.sandboxToken ?? defaultSandboxToken)(c);
    const binds = resolveBinds(bp, layout);
    const launcher = (deps.launcher ?? sandboxLauncher)(c);
    // The agent's files go into the workdir: it must exist and be the sandbox uid's first.
    await launcher.prepareWorkdir?.(c.paths.workdir);
    if (stopped) return;
    // `up --agent-env` comes after the blueprint's env (the operator's word wins) and before the token.
    const agentEnv = (c.options.agentEnv ?? {}) as Record<string, string>;
    let env: Record<string, string> = { ...spec.sandbox.env, ...agentEnv, NEMOCLAW_INFERENCE_TOKEN: token };
    if (runtimeSpecOf(bp)?.agentPackage === 'openclaw') {
      const written = writeOpenClawConfig(
        c.paths.workdir,
        buildOpenClawConfig({
          providerName: spec.inference.agent_provider,
          models: profile.models.map((id) => ({ id })),
          sandboxToken: token,
          gatewayToken: st.gateway_token,
          ...(spec.health && 'listen' in spec.health ? { gatewayPort: spec.health.listen } : {}),
          allowOnline: spec.sandbox.allow_online,
        }),
      );
      emitLog(`OpenClaw config ${written.changed ? 'written' : 'unchanged'}: ${SANDBOX_OPENCLAW_STATE_DIR}/openclaw.json`);
      env = { ...env, ...openClawEnv({ gatewayToken: st.gateway_token, allowOnline: spec.sandbox.allow_online }) };
    }
    const processSpec: AgentProcessSpec = { argv: spec.start.command, env, readOnlyBinds: binds, cwd: '/sandbox' };
    const health: HealthCheck =
      'listen' in spec.health
        ? {
            kind: 'listen',
            port: spec.health.listen,
            timeoutMs: spec.health.timeout,
            ...(spec.health.max_wait !== undefined ? { maxWaitMs: spec.health.max_wait } : {}),
            ...(spec.health.quiet !== undefined ? { quietMs: spec.health.quiet } : {}),
          }
        : { kind: 'started' };
    supervisor = new AgentSupervisor({
      spec: processSpec,
      launcher,
      health,
      restart: spec.start.restart,
      emit: (e) => c.events.emit(e),
      ...(deps.initialBackoffMs !== undefined ? { initialBackoffMs: deps.initialBackoffMs } : {}),
    });
    phase = 'running';
    if (!stopped) supervisor.start();
  }

  const service: SupervisorService = {
    name: AGENT_SERVICE_NAME,

    async start(c: SupervisorContext): Promise<void> {
      ctx = c;
      const stateFile = agentStateFile(c);
      const previous = readAgentState(stateFile);
      const requested = typeof options.blueprint === 'string' && options.blueprint.length > 0 ? options.blueprint : undefined;
      if (!requested && !previous) return; // a plain sandbox: `run`/`exec` only, no agent
      const packageRoot = deps.packageRoot ?? packageInfo().root;
      const dir = requested ? resolveBlueprintDir(requested, packageRoot) : previous!.blueprint_dir;
      // Bad blueprints refuse the start: the operator asked for an agent that cannot run.
      blueprint = loadBlueprintSpec(dir);
      const profileOpt = typeof options.profile === 'string' ? options.profile : undefined;
      const profile = profileOpt ?? (previous?.blueprint === blueprint.spec.name ? previous.profile : blueprint.spec.inference.default_profile);
      if (!profileNames(blueprint.spec).includes(profile)) {
        throw new NemoclawError('invalid_input', `blueprint ${blueprint.spec.name} has no inference profile "${profile}"`, {
          nextStep: `choose one of: ${profileNames(blueprint.spec).join(', ')}`,
        });
      }
      state = {
        blueprint: blueprint.spec.name,
        blueprint_dir: dir,
        profile,
        gateway_token: previous?.gateway_token ?? randomBytes(24).toString('base64url'),
        created_at: previous?.created_at ?? new Date(c.clock.now()).toISOString(),
      };
      writeAgentState(stateFile, state);
      c.events.emit({
        kind: 'sandbox.lifecycle',
        level: 'notice',
        action: 'agent.configured',
        blueprint: blueprint.spec.name,
        blueprint_version: blueprint.spec.version,
        profile,
        restored: !requested,
      });
      // Quarantined (src/control/quarantine.ts): the agent stays stopped until `quarantine release`.
      const quarantined = readQuarantine(c.paths);
      if (quarantined) {
        phase = 'quarantined';
        c.events.emit({ kind: 'sandbox.lifecycle', level: 'warn', action: 'agent.not_started', reason: `the sandbox is quarantined since ${quarantined.since} (${quarantined.reason})` });
        return;
      }
      // Installing can take ~30 s: do it (and everything after it) in the background so the
      // control API is up and the operator sees the progress.
      const bp = blueprint;
      const st = state;
      background = prepareAndRun(c, bp, st).catch((err: unknown) => {
        phase = 'error';
        lastError = describeError(err);
        c.events.emit({ kind: 'sandbox.lifecycle', level: 'error', action: 'agent.failed', reason: lastError });
      });
    },

    async stop(): Promise<void> {
      stopped = true;
      await supervisor?.stop().catch(() => undefined);
      await background?.catch(() => undefined);
      // The install may have finished after stop() began: stop what it started.
      await supervisor?.stop().catch(() => undefined);
      await Promise.all(stubs.map((s) => s.close().catch(() => undefined)));
      phase = 'stopped';
    },

    status(): Record<string, unknown> {
      if (!blueprint || !state) return { state: 'none' };
      const s = supervisor?.status();
      return {
        state: phase === 'running' && s ? s.state : phase,
        blueprint: blueprint.spec.name,
        version: blueprint.spec.version,
        profile: state.profile,
        pid: s?.pid,
        restarts: s?.restarts ?? 0,
        last_exit: s?.lastExit,
        next_restart_in_ms: s?.nextRestartInMs,
        ...(stubs.length > 0 ? { stub_model: stubs[0]!.baseUrl } : {}),
        ...(stubs.length > 1 ? { stub_models: stubs.map((s) => s.baseUrl) } : {}),
        ...(lastError ? { error: lastError } : {}),
      };
    },

    routes(): ControlRoute[] {
      return [
        {
          method: 'GET',
          path: '/v1/agent',
          handler: () => ({ status: 200, body: { ...service.status!(), exec: agentExecInfo() } }),
        },
      ];
    },
  };

  /** What `exec`/`connect` need to run a command beside the agent (same binds and env). */
  function agentExecInfo(): Record<string, unknown> | undefined {
    if (!blueprint || !state || !ctx) return undefined;
    const runtime = runtimeSpecOf(blueprint) ?? { agentPackage: 'none', agentVersion: '0.0.0', nodeVersion: blueprint.spec.runtime.node };
    const layout = agentRuntimeLayout(ctx.home.agentsDir, runtime);
    const env: Record<string, string> =
      runtimeSpecOf(blueprint)?.agentPackage === 'openclaw'
        ? openClawEnv({ gatewayToken: state.gateway_token, allowOnline: blueprint.spec.sandbox.allow_online })
        : { ...blueprint.spec.sandbox.env };
    return { binds: resolveBinds(blueprint, layout), env };
  }

  return service;
}

function defaultSandboxToken(ctx: SupervisorContext): string {
  const inference = ctx.service<InferenceService>('inference');
  if (!inference) {
    throw new NemoclawError('prerequisite_missing', 'the privacy router is not running, so the agent has no inference token', {
      nextStep: 'restart the supervisor (`nemoclaw-tui down && nemoclaw-tui up`); see its log for why the router did not start',
    });
  }
  return inference.sandboxToken();
}

export const agentServiceFactory = (options: SupervisorOptions): SupervisorService => createAgentService(options);
