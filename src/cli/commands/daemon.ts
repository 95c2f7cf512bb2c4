/**
 * `up`, `down`, `status` and the internal `__supervise` (the detached daemon's own entry), plus the
 * hidden `start` that runs when no command is given: `up`, then `logs -f`.
 * The supervisor, the policy engine and the blueprint code are imported only by the commands that
 * use them, so `status` and `down` start fast.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { inspectSandbox, startDaemon, stopDaemon } from '../../control/daemon.js';
import { quarantinedError, readQuarantine } from '../../control/quarantine.js';
import { ensurePrivateDir, homePaths, sandboxPaths } from '../../shared/home.js';
import { mountAt, releaseWorkdirDisk } from '../../sandbox/workdir-disk.js';
import { NemoclawError } from '../../shared/errors.js';
import type { SupervisorStatus } from '../../control/index.js';
import { describeStatus } from '../status-text.js';
import { EXIT, action, ensureHome, followLogs, hostOptions, humanDuration, nameFlag, type CliContext } from '../util.js';
import type { CommandModule } from './index.js';

interface UpOptions {
  policy?: string;
  foreground?: boolean;
  unsafeAllowLoopbackUpstreams?: boolean;
  /** `--agent-env KEY=VALUE`, repeatable. */
  agentEnv?: string[];
  blueprint?: string;
  profile?: string;
  upgrade?: boolean;
}

/** Validate --policy before anything starts, so errors name file:line:col and exit 2. */
async function checkPolicyFile(ctx: CliContext, file: string | undefined): Promise<string | undefined> {
  if (!file) return undefined;
  const path = resolve(file);
  const { formatPolicyIssues, loadPolicyFile } = await import('../../policy/index.js');
  const parsed = await loadPolicyFile(path);
  if (parsed.warnings.length > 0) ctx.err(`warning: not enforced here:\n${formatPolicyIssues(parsed.warnings)}`);
  return path;
}

/** Run a supervisor in this process until SIGTERM/SIGINT or POST /v1/shutdown. */
async function runForeground(ctx: CliContext, opts: UpOptions, daemon: boolean): Promise<number> {
  const stamp = (line: string): string => (daemon ? `${new Date().toISOString()} ${line}` : line);
  const { Supervisor } = await import('../../control/index.js');
  const sup = await Supervisor.start({
    name: ctx.name,
    home: ctx.home,
    policyFile: opts.policy ? resolve(opts.policy) : undefined,
    unsafeAllowLoopbackUpstreams: opts.unsafeAllowLoopbackUpstreams === true,
    options: { agentEnv: parseAgentEnv([...agentEnvFromEnvironment(ctx.io.env), ...(opts.agentEnv ?? [])]) },
    log: (line) => ctx.err(stamp(line)),
  });
  if (opts.unsafeAllowLoopbackUpstreams) {
    ctx.err(stamp('WARNING: --unsafe-allow-loopback-upstreams is on: the egress proxy may dial loopback upstreams (tests only)'));
  }
  if (!daemon) ctx.out(`supervisor of sandbox "${ctx.name}" running in the foreground (pid ${process.pid}); Ctrl-C stops it`);
  const onSignal = (sig: NodeJS.Signals): void => void sup.stop(`signal ${sig}`);
  const signals: NodeJS.Signals[] = ['SIGTERM', 'SIGINT', 'SIGHUP'];
  for (const s of signals) process.on(s, onSignal);
  try {
    await sup.stopped;
  } finally {
    for (const s of signals) process.off(s, onSignal);
  }
  return EXIT.ok;
}

/** NEMOCLAW_AGENT_ENV="KEY=VALUE KEY2=VALUE2": the same as --agent-env, for every way the supervisor starts (the TUI, systemd). */
export function agentEnvFromEnvironment(env: NodeJS.ProcessEnv): string[] {
  return (env.NEMOCLAW_AGENT_ENV ?? '').split(/\s+/).filter((p) => p.length > 0);
}

function collectAgentEnv(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * `--agent-env KEY=VALUE`: extra variables for the agent. The guard's own variables (the proxy,
 * the CA bundle, the inference token: anything NEMOCLAW_*, *_PROXY, NODE_EXTRA_CA_CERTS,
 * SSL_CERT_*) cannot be overridden from here.
 */
export function parseAgentEnv(pairs: string[]): Record<string, string> {
  const env: Record<string, string> = {};
  for (const pair of pairs) {
    const eq = pair.indexOf('=');
    const key = eq > 0 ? pair.slice(0, eq) : '';
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(key)) {
      throw new NemoclawError('invalid_input', `--agent-env expects KEY=VALUE with a variable name, got "${pair}"`, {
        nextStep: 'e.g. `--agent-env DRILL_STEP_PAUSE_MS=0`',
        exitCode: 2,
      });
    }
    if (/^NEMOCLAW_/i.test(key) || /_PROXY$/i.test(key) || /^(NODE_EXTRA_CA_CERTS|SSL_CERT_FILE|SSL_CERT_DIR|REQUESTS_CA_BUNDLE|CURL_CA_BUNDLE|GIT_SSL_CAINFO|WGETRC|NODE_USE_ENV_PROXY)$/i.test(key)) {
      throw new NemoclawError('invalid_input', `--agent-env cannot set ${key}: the supervisor sets it to keep the agent behind the egress proxy and the router`, {
        nextStep: 'drop that --agent-env; network access is changed through the policy (`nemoclaw-tui policy set`)',
        exitCode: 2,
      });
    }
    env[key] = pair.slice(eq + 1);
  }
  return env;
}

function shortDigest(digest: string): string {
  return digest.slice(0, 'sha256:'.length + 12);
}

/** The blueprint directory `up --blueprint ARG` means, verified (a tampered copy is refused here, naming the file). */
async function verifySourceBlueprint(ctx: CliContext, arg: string): Promise<{ name: string; version: string; digest: string }> {
  const [{ resolveBlueprintDir }, { packageInfo }, { packageKeysDir, verifyBlueprint }] = await Promise.all([
    import('../../agent/index.js'),
    import('../../shared/package.js'),
    import('../../blueprint/index.js'),
  ]);
  const dir = resolveBlueprintDir(arg, packageInfo().root);
  return verifyBlueprint(dir, { trustedKeyDirs: [homePaths(ctx.home).trustedKeysDir, packageKeysDir()] });
}

/**
 * A sandbox stays on the blueprint digest it was created with: a different one (edited, replaced,
 * a new version, another blueprint) needs `--upgrade`, and the refusal names both digests and the
 * exact command.
 */
async function refuseChangedBlueprint(ctx: CliContext, arg: string, upgrade: boolean): Promise<void> {
  const { readBlueprintLock } = await import('../../control/blueprint-lock.js');
  const source = await verifySourceBlueprint(ctx, arg);
  const lock = readBlueprintLock(ctx.paths);
  if (!lock || lock.digest === source.digest) return;
  const was = `${lock.name} ${lock.version} (${lock.digest})`;
  const now = `${source.name} ${source.version} (${source.digest})`;
  if (upgrade) {
    ctx.err(`upgrading sandbox "${ctx.name}" from blueprint ${was} to ${now}`);
    return;
  }
  throw new NemoclawError('conflict', `blueprint changed: sandbox "${ctx.name}" was created with ${was}, and ${arg} is ${now}; nothing was started`, {
    nextStep: `to switch the sandbox to the new blueprint, run \`nemoclaw-tui up${nameFlag(ctx.name)} --blueprint ${arg} --upgrade\`; to keep the old one, use an untouched copy of it`,
  });
}

/** `up --blueprint` on a running sandbox changes nothing under it (lock, policy, agent state stay). */
async function reportRunningBlueprint(ctx: CliContext, status: SupervisorStatus, arg: string): Promise<number> {
  ctx.out(`sandbox "${ctx.name}" is already running (pid ${status.pid}, up ${humanDuration(status.uptime_ms)}, policy revision ${status.policy.revision})`);
  const running = status.blueprint;
  const source = await verifySourceBlueprint(ctx, arg);
  if (running && running.digest === source.digest) {
    ctx.out(`  blueprint ${running.name} ${running.version} ${shortDigest(running.digest)}`);
    return EXIT.ok;
  }
  const what = running ? `blueprint ${running.name} ${running.version} (${running.digest})` : 'no blueprint';
  ctx.err(`note: it runs ${what}; ${arg} (${source.name} ${source.version}, ${source.digest}) was not applied to the running supervisor`);
  ctx.err(`  to switch: nemoclaw-tui down${nameFlag(ctx.name)} && nemoclaw-tui up${nameFlag(ctx.name)} --blueprint ${arg}${running ? ' --upgrade' : ''}`);
  return EXIT.ok;
}

/**
 * The supervisor that just started (pid `pid`) repaired a torn audit-log tail left by a crash: say
 * so here, where the operator looks, not only in the daemon log. The repair is the
 * `sandbox.lifecycle` event `audit.recovered` emitted just before that supervisor's own
 * `supervisor.start`.
 */
async function reportAuditRecovery(ctx: CliContext, pid: number): Promise<void> {
  let events: Awaited<ReturnType<ReturnType<CliContext['client']>['events']>>;
  try {
    events = await ctx.client().events({ kinds: ['sandbox.lifecycle'], n: 50 });
  } catch {
    return; // the start itself succeeded; this is only a report
  }
  const startIndex = events.findLastIndex((e) => e.action === 'supervisor.start' && e.pid === pid);
  if (startIndex < 0) return;
  for (let i = startIndex - 1; i >= 0; i--) {
    const e = events[i]!;
    if (e.action === 'supervisor.start') return; // an earlier run's events
    if (e.action !== 'audit.recovered') continue;
    const bytes = typeof e.torn_bytes === 'number' ? `${e.torn_bytes} bytes` : 'the bytes';
    const seq = typeof e.continued_from_seq === 'number' ? `; chain continues from seq ${e.continued_from_seq}` : '';
    ctx.err(`audit log: recovered from a torn tail (${bytes} of an unfinished record set aside in ${String(e.saved_to)})${seq}`);
    ctx.err(`  the supervisor stopped mid-write last time; \`nemoclaw-tui audit verify${nameFlag(ctx.name)}\` checks the chain`);
    return;
  }
}

async function up(ctx: CliContext, opts: UpOptions): Promise<number> {
  ensureHome(ctx);
  // The kill switch holds until an operator lifts it: `up` never brings a quarantined agent back.
  const quarantined = readQuarantine(ctx.paths);
  if (quarantined) throw quarantinedError(ctx.name, quarantined);
  let policy = await checkPolicyFile(ctx, opts.policy);
  // --blueprint: verify it, pin it (lock), store it, write its policy and agent state; the
  // supervisor then runs it from the store (options.blueprint) and the agent service starts it.
  if (opts.blueprint) {
    const state = await inspectSandbox(ctx.paths);
    if (state.state === 'running') return reportRunningBlueprint(ctx, state.status, opts.blueprint);
    await refuseChangedBlueprint(ctx, opts.blueprint, opts.upgrade === true);
    const { prepareBlueprintForUp } = await import('../../agent/index.js');
    const blueprintPolicy = await prepareBlueprintForUp(ctx, opts.blueprint, opts.profile, opts.upgrade === true);
    policy = policy ?? blueprintPolicy;
  } else {
    // Pinned to a blueprint: say here, not in the daemon log, when its stored copy no longer verifies.
    const { verifiedLockedBlueprint } = await import('../../control/blueprint-lock.js');
    verifiedLockedBlueprint(ctx.paths, homePaths(ctx.home));
  }
  // Checked here, so a bad pair fails `up` itself rather than the daemon; NEMOCLAW_AGENT_ENV
  // reaches the daemon through its environment, the flags as arguments.
  parseAgentEnv(agentEnvFromEnvironment(ctx.io.env));
  const agentEnvPairs = Object.entries(parseAgentEnv(opts.agentEnv ?? [])).map(([k, v]) => `${k}=${v}`);
  if (opts.foreground) return runForeground(ctx, { ...opts, policy }, false);
  const res = await startDaemon({
    name: ctx.name,
    home: ctx.home,
    policyFile: policy,
    unsafeAllowLoopbackUpstreams: opts.unsafeAllowLoopbackUpstreams === true,
    agentEnv: agentEnvPairs,
    env: ctx.io.env,
  });
  if (!res.started) {
    ctx.out(`sandbox "${ctx.name}" is already running (pid ${res.pid}, up ${humanDuration(res.status.uptime_ms)}, policy revision ${res.status.policy.revision})`);
    if (policy) ctx.err(`note: --policy was not applied to the running supervisor; use \`nemoclaw-tui policy set ${opts.policy}${nameFlag(ctx.name)}\``);
    return EXIT.ok;
  }
  if (res.cleanedStale) ctx.err(`note: removed a stale pid file/socket left by a supervisor that did not stop cleanly`);
  ctx.out(`started the supervisor of sandbox "${ctx.name}" (pid ${res.pid}, policy revision ${res.status.policy.revision})`);
  await reportAuditRecovery(ctx, res.pid);
  const bp = res.status.blueprint;
  if (bp) ctx.out(`  blueprint ${bp.name} ${bp.version} ${shortDigest(bp.digest)}, running from ${bp.dir}`);
  ctx.out(`  follow it: nemoclaw-tui logs -f${nameFlag(ctx.name)}    stop it: nemoclaw-tui down${nameFlag(ctx.name)}`);
  return EXIT.ok;
}

/** `status --host user@box`: ask the remote supervisor through the ssh bridge (no pid files there to read). */
async function remoteStatus(ctx: CliContext, host: string, json: boolean): Promise<number> {
  let status: SupervisorStatus;
  try {
    status = await (await ctx.supervisorClient()).status();
  } catch (err) {
    if (!json || (err instanceof NemoclawError && err.exitCode === EXIT.usage)) throw err;
    // The error (naming the host and what to check) goes to stderr; stdout stays one JSON document.
    ctx.json({ running: false, name: ctx.name, host });
    throw err;
  }
  if (json) ctx.json({ running: true, host, ...status });
  else for (const [i, l] of describeStatus(status).entries()) ctx.out(i === 0 ? l.replace(`sandbox "${status.name}":`, `sandbox "${status.name}" on ${host}:`) : l);
  return EXIT.ok;
}

export const daemonCommands: CommandModule = {
  defaultArgs: ['start'],
  register(program: Command): void {
    program
      .command('up')
      .description('start the supervisor of a sandbox (detached unless --foreground)')
      .option('--policy <file>', 'base policy file (default: the one this sandbox last ran with, else the baseline)')
      .option('--foreground', 'run in this terminal; SIGTERM / Ctrl-C stops it cleanly')
      .option('--unsafe-allow-loopback-upstreams', 'TESTS ONLY: let the egress proxy dial loopback upstreams')
      .option('--agent-env <KEY=VALUE>', 'extra environment for the agent in the sandbox (repeatable; for this run of the supervisor)', collectAgentEnv, [])
      .option('--blueprint <name>', 'run this blueprint\'s agent (openclaw, drill, or a directory); remembered for later `up`s')
      .option('--profile <name>', 'inference profile of the blueprint (default: detected)')
      .option('--upgrade', 'accept a blueprint that differs from the one this sandbox is locked to')
      .action(action(up));

    program
      .command('down')
      .description('stop the supervisor of a sandbox cleanly (flushes the audit log)')
      .option('--timeout <seconds>', 'how long to wait before SIGTERM / SIGKILL', '15')
      .action(
        action(async (ctx, opts: { timeout: string }) => {
          const seconds = Number(opts.timeout);
          if (!Number.isFinite(seconds) || seconds <= 0) {
            ctx.err(`nemoclaw-tui: --timeout expects a number of seconds, got "${opts.timeout}"`);
            return EXIT.usage;
          }
          const res = await stopDaemon({ name: ctx.name, home: ctx.home, timeoutMs: seconds * 1000 });
          if (!res.wasRunning) {
            // A supervisor that was killed leaves the workdir image mounted: detach it now.
            const workdir = resolve(sandboxPaths(ctx.name, ctx.home).workdir);
            const stale = mountAt(workdir)?.source.startsWith('/dev/loop') === true;
            if (stale) await releaseWorkdirDisk(workdir);
            ctx.out(`sandbox "${ctx.name}" is not running${res.cleanedStale ? ' (removed a stale pid file/socket)' : ''}${stale ? ' (unmounted the workdir image it left behind)' : ''}`);
            return EXIT.ok;
          }
          const how = res.how === 'shutdown' ? '' : ` (it did not stop when asked; sent ${res.how === 'sigterm' ? 'SIGTERM' : 'SIGKILL'})`;
          ctx.out(`stopped the supervisor of sandbox "${ctx.name}" (pid ${res.pid})${how}`);
          return EXIT.ok;
        }),
      );

    hostOptions(program.command('status'))
      .description('is the supervisor running, and what is it doing (exit 1 when not running)')
      .option('--json', 'print the status as JSON')
      .action(
        action(async (ctx, opts: { json?: boolean }) => {
          if (ctx.remote) return remoteStatus(ctx, ctx.remote.host, opts.json === true);
          const state = await inspectSandbox(ctx.paths);
          if (state.state === 'running') {
            if (opts.json) ctx.json({ running: true, ...state.status });
            else for (const l of describeStatus(state.status, { daemonLog: ctx.paths.daemonLog })) ctx.out(l);
            return EXIT.ok;
          }
          if (opts.json) {
            ctx.json({ running: false, name: ctx.name, ...(state.state === 'unresponsive' ? { pid: state.pid, unresponsive: true } : {}) });
          } else if (state.state === 'unresponsive') {
            ctx.out(`sandbox "${ctx.name}": a supervisor process (pid ${state.pid}) holds the lock but does not answer`);
            ctx.err(`  next step: look at ${ctx.paths.daemonLog}; \`nemoclaw-tui down${nameFlag(ctx.name)}\` stops it`);
          } else {
            ctx.out(`sandbox "${ctx.name}": not running${state.cleaned ? ' (removed a stale pid file/socket)' : ''}`);
            ctx.err(`  next step: start it with \`nemoclaw-tui up${nameFlag(ctx.name)}\``);
          }
          return EXIT.failure;
        }),
      );

    // The detached daemon's entry (spawned by `up`); stdout/stderr go to the sandbox's daemon log.
    program
      .command('__supervise', { hidden: true })
      .option('--policy <file>')
      .option('--unsafe-allow-loopback-upstreams')
      .option('--agent-env <KEY=VALUE>', '', collectAgentEnv, [])
      .action(
        action(async (ctx, opts: UpOptions) => {
          ensurePrivateDir(ctx.home);
          return runForeground(ctx, opts, true);
        }),
      );

    // No command: start (or find) the supervisor, then follow its log until Ctrl-C.
    program
      .command('start', { hidden: true })
      .description('start the supervisor (if needed) and follow its log')
      .action(
        action(async (ctx) => {
          const code = await up(ctx, {});
          if (code !== EXIT.ok) return code;
          return followLogs(ctx, ctx.client(), { follow: true, output: 'text', approver: true });
        }),
      );
  },
};
