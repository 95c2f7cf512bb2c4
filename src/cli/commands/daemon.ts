/**
 * `up`, `down`, `status` and the internal `__supervise` (the detached daemon's own entry), plus the
 * hidden `start` that runs when no command is given: `up`, then `logs -f`.
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { inspectSandbox, startDaemon, stopDaemon } from '../../control/daemon.js';
import { Supervisor } from '../../control/supervisor.js';
import { formatPolicyIssues, loadPolicyFile } from '../../policy/index.js';
import { runLogs } from '../../headless/follow.js';
import { ensurePrivateDir } from '../../shared/home.js';
import type { SupervisorStatus } from '../../control/client.js';
import { EXIT, action, ensureHome, humanDuration, nameFlag, type CliContext } from '../util.js';
import type { CommandModule } from './index.js';
import { prepareBlueprintForUp } from '../../agent/cli.js';

interface UpOptions {
  policy?: string;
  foreground?: boolean;
  unsafeAllowLoopbackUpstreams?: boolean;
  blueprint?: string;
  profile?: string;
  upgrade?: boolean;
}

/** Validate --policy before anything starts, so errors name file:line:col and exit 2. */
async function checkPolicyFile(ctx: CliContext, file: string | undefined): Promise<string | undefined> {
  if (!file) return undefined;
  const path = resolve(file);
  const parsed = await loadPolicyFile(path);
  if (parsed.warnings.length > 0) ctx.err(`warning: not enforced here:\n${formatPolicyIssues(parsed.warnings)}`);
  return path;
}

/** Run a supervisor in this process until SIGTERM/SIGINT or POST /v1/shutdown. */
async function runForeground(ctx: CliContext, opts: UpOptions, daemon: boolean): Promise<number> {
  const stamp = (line: string): string => (daemon ? `${new Date().toISOString()} ${line}` : line);
  const sup = await Supervisor.start({
    name: ctx.name,
    home: ctx.home,
    policyFile: opts.policy ? resolve(opts.policy) : undefined,
    unsafeAllowLoopbackUpstreams: opts.unsafeAllowLoopbackUpstreams === true,
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

function describeRunning(ctx: CliContext, s: SupervisorStatus): string[] {
  return [
    `sandbox "${s.name}": running (pid ${s.pid}, up ${humanDuration(s.uptime_ms)})`,
    `  socket     ${s.socket}`,
    `  policy     revision ${s.policy.revision} (sha256 ${s.policy.sha256.slice(0, 12)}, by ${s.policy.author} at ${s.policy.time})`,
    `  events     last seq ${s.last_seq}, audit log ${s.audit.dir}`,
    `  operators  ${s.operators} attached`,
    ...(s.unsafe_allow_loopback_upstreams ? ['  UNSAFE     loopback upstreams allowed (--unsafe-allow-loopback-upstreams)'] : []),
    ...Object.entries(s.services).map(([name, st]) => `  ${name.padEnd(10)} ${JSON.stringify(st)}`),
    `  log        ${ctx.paths.daemonLog}`,
  ];
}

async function up(ctx: CliContext, opts: UpOptions): Promise<number> {
  ensureHome(ctx);
  let policy = await checkPolicyFile(ctx, opts.policy);
  // --blueprint: verify it, pin it (lock), write its policy and agent state; the agent service starts it.
  if (opts.blueprint) {
    const blueprintPolicy = await prepareBlueprintForUp(ctx, opts.blueprint, opts.profile, opts.upgrade === true);
    policy = policy ?? blueprintPolicy;
  }
  if (opts.foreground) return runForeground(ctx, { ...opts, policy }, false);
  const res = await startDaemon({
    name: ctx.name,
    home: ctx.home,
    policyFile: policy,
    unsafeAllowLoopbackUpstreams: opts.unsafeAllowLoopbackUpstreams === true,
    env: ctx.io.env,
  });
  if (!res.started) {
    ctx.out(`sandbox "${ctx.name}" is already running (pid ${res.pid}, up ${humanDuration(res.status.uptime_ms)}, policy revision ${res.status.policy.revision})`);
    if (policy) ctx.err(`note: --policy was not applied to the running supervisor; use \`nemoclaw-tui policy set ${opts.policy}${nameFlag(ctx.name)}\``);
    return EXIT.ok;
  }
  if (res.cleanedStale) ctx.err(`note: removed a stale pid file/socket left by a supervisor that did not stop cleanly`);
  ctx.out(`started the supervisor of sandbox "${ctx.name}" (pid ${res.pid}, policy revision ${res.status.policy.revision})`);
  ctx.out(`  follow it: nemoclaw-tui logs -f${nameFlag(ctx.name)}    stop it: nemoclaw-tui down${nameFlag(ctx.name)}`);
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
            ctx.out(`sandbox "${ctx.name}" is not running${res.cleanedStale ? ' (removed a stale pid file/socket)' : ''}`);
            return EXIT.ok;
          }
          const how = res.how === 'shutdown' ? '' : ` (it did not stop when asked; sent ${res.how === 'sigterm' ? 'SIGTERM' : 'SIGKILL'})`;
          ctx.out(`stopped the supervisor of sandbox "${ctx.name}" (pid ${res.pid})${how}`);
          return EXIT.ok;
        }),
      );

    program
      .command('status')
      .description('is the supervisor running, and what is it doing (exit 1 when not running)')
      .option('--json', 'print the status as JSON')
      .action(
        action(async (ctx, opts: { json?: boolean }) => {
          const state = await inspectSandbox(ctx.paths);
          if (state.state === 'running') {
            if (opts.json) ctx.json({ running: true, ...state.status });
            else for (const l of describeRunning(ctx, state.status)) ctx.out(l);
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
          const stop = new AbortController();
          const onSignal = (): void => stop.abort();
          process.once('SIGINT', onSignal);
          process.once('SIGTERM', onSignal);
          try {
            return await runLogs({
              client: ctx.client(),
              stdout: ctx.io.stdout,
              stderr: ctx.io.stderr,
              env: ctx.io.env,
              follow: true,
              output: 'text',
              approver: true,
              signal: stop.signal,
            });
          } finally {
            process.off('SIGINT', onSignal);
            process.off('SIGTERM', onSignal);
          }
        }),
      );
  },
};
