/**
 * Helpers shared by every CLI command module: the per-run context (streams, home, sandbox name),
 * action wrappers that turn thrown errors into `message` + `next step:` lines and exit codes,
 * JSON output, and the control client.
 */
import type { Command } from 'commander';
import { ControlClient } from '../control/client.js';
import { formatPolicyIssues, type PolicyIssue } from '../policy/index.js';
import type { LogsOptions } from '../headless/index.js';
import { NemoclawError, describeError, isNemoclawError } from '../shared/errors.js';
import { DEFAULT_SANDBOX_NAME, ensurePrivateDir, resolveHome, sandboxPaths, validateSandboxName, type SandboxPaths } from '../shared/home.js';

/** Exit codes of every command. */
export const EXIT = { ok: 0, failure: 1, usage: 2 } as const;

export interface OutputStream {
  write(chunk: string): boolean;
  isTTY?: boolean | undefined;
  on?(event: 'error', listener: (err: Error) => void): unknown;
  off?(event: 'error', listener: (err: Error) => void): unknown;
}

export interface CliIo {
  stdout: OutputStream;
  stderr: OutputStream;
  env: NodeJS.ProcessEnv;
}

export function processIo(): CliIo {
  return { stdout: process.stdout, stderr: process.stderr, env: process.env };
}

function isClosedPipe(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  return code === 'EPIPE' || code === 'ERR_STREAM_DESTROYED' || code === 'ERR_STREAM_WRITE_AFTER_END';
}

const guardedStreams = new WeakSet<object>();

/**
 * Output to a reader that went away (`nemoclaw-tui status | head -1`) ends quietly: EPIPE on
 * stdout/stderr is swallowed instead of crashing the process with an unhandled 'error' event.
 * The listener stays for the life of the stream (writes still queued may fail after a command
 * returns). Later writes keep failing with EPIPE, so followers (`logs -f`) still see it and stop.
 */
export function guardClosedPipes(io: CliIo): CliIo {
  const streams: Array<[OutputStream, OutputStream]> = [
    [io.stdout, io.stderr],
    [io.stderr, io.stdout],
  ];
  for (const [stream, other] of streams) {
    if (!stream.on || guardedStreams.has(stream)) continue;
    guardedStreams.add(stream);
    let reported = false;
    stream.on('error', (err: Error) => {
      if (isClosedPipe(err) || reported) return;
      reported = true;
      try {
        other.write(`nemoclaw-tui: cannot write output: ${err.message}\n`);
      } catch {
        // both streams are gone; nothing left to tell
      }
    });
  }
  return io;
}

interface RunState {
  io: CliIo;
  exitCode: number;
  /** Set when SIGINT/SIGTERM closed the command's ssh bridge: its exit code (130/143). */
  interrupted?: number;
}

const runStates = new WeakMap<Command, RunState>();

function rootOf(cmd: Command): Command {
  let c = cmd;
  while (c.parent) c = c.parent;
  return c;
}

/** Called once by main() on the root program. */
export function attachRunState(root: Command, io: CliIo): RunState {
  const state: RunState = { io, exitCode: EXIT.ok };
  runStates.set(root, state);
  return state;
}

export interface CliContext {
  io: CliIo;
  /** $NEMOCLAW_HOME (absolute; created 0700 on first use by commands that write). */
  home: string;
  /** The sandbox this command addresses (global `--name`, default `default`). */
  name: string;
  paths: SandboxPaths;
  /** The command being run (for its options). */
  command: Command;
  /** Control client of this sandbox's supervisor. */
  client(opts?: { timeoutMs?: number }): ControlClient;
  /** `--host` of a command registered with hostOptions(): its supervisor is on that box, reached over ssh. */
  remote: RemoteTargetOptions | undefined;
  /**
   * Control client of the supervisor this command addresses: the local one, or with `--host` the
   * remote one through the ssh bridge (connected on the first call, failing there with the host
   * and what to check; closed when the command ends, on errors and on SIGINT/SIGTERM too).
   */
  supervisorClient(opts?: { timeoutMs?: number }): Promise<ControlClient>;
  /** Release what the command opened (the ssh bridge); action() calls it when the command ends. */
  close(): Promise<void>;
  out(line: string): void;
  err(line: string): void;
  /** Print a value as pretty JSON on stdout. */
  json(value: unknown): void;
}

/** What `--host`, `--ssh-config` and `--remote-command` asked for (validated when ssh is about to start). */
export interface RemoteTargetOptions {
  host: string;
  sshConfig?: string | undefined;
  remoteCommand?: string | undefined;
}

/**
 * Give a command that talks to a supervisor the same `--host`, `--ssh-config` and
 * `--remote-command` options as the TUI; its handler then uses `ctx.supervisorClient()`.
 */
export function hostOptions(cmd: Command): Command {
  withHostOptions.add(cmd);
  return cmd
    .option('--host <user@box>', "talk to that box's supervisor through ssh (runs `nemoclaw-tui __bridge` there; ssh must log in without a prompt)")
    .option('--ssh-config <file>', 'with --host: ssh client config to use (ssh -F; default ~/.ssh/config, or $NEMOCLAW_SSH_CONFIG)')
    .option('--remote-command <path>', 'with --host: nemoclaw-tui on the remote box, a name on its PATH or an absolute path (default nemoclaw-tui)');
}

const withHostOptions = new WeakSet<Command>();

/** ` --host … --ssh-config … --remote-command …` as given (empty without --host), for hints that repeat the command's target. */
export function hostFlags(ctx: Pick<CliContext, 'remote'>): string {
  const r = ctx.remote;
  if (!r) return '';
  return ` --host ${r.host}${r.sshConfig ? ` --ssh-config ${r.sshConfig}` : ''}${r.remoteCommand ? ` --remote-command ${r.remoteCommand}` : ''}`;
}

/** The --host target of `cmd` (undefined without --host); --ssh-config/--remote-command alone are a usage error. */
function remoteTarget(cmd: Command, env: NodeJS.ProcessEnv): RemoteTargetOptions | undefined {
  if (!withHostOptions.has(cmd)) return undefined;
  const o = cmd.opts() as { host?: string; sshConfig?: string; remoteCommand?: string };
  if (o.host === undefined) {
    if (o.sshConfig !== undefined || o.remoteCommand !== undefined) {
      throw new NemoclawError('invalid_input', '--ssh-config and --remote-command only apply with --host user@box', { exitCode: EXIT.usage });
    }
    return undefined;
  }
  return { host: o.host, sshConfig: o.sshConfig ?? (env.NEMOCLAW_SSH_CONFIG || undefined), remoteCommand: o.remoteCommand };
}

/** Followers (`logs -f`) running: they stop on SIGINT/SIGTERM themselves, and the bridge closes after them. */
let activeFollowers = 0;

const SIGNAL_EXIT: Record<'SIGINT' | 'SIGTERM', number> = { SIGINT: 130, SIGTERM: 143 };

/** Build the context of the running command; validates the global --name. */
export function cliContext(cmd: Command): CliContext {
  const state = runStates.get(rootOf(cmd));
  const io = state?.io ?? processIo();
  const opts = cmd.optsWithGlobals() as { name?: string };
  const name = validateSandboxName(opts.name ?? DEFAULT_SANDBOX_NAME);
  const home = resolveHome(io.env);
  const paths = sandboxPaths(name, home);
  const remote = remoteTarget(cmd, io.env);
  let connection: Promise<{ client: ControlClient; close(): Promise<void> }> | undefined;
  let closed: Promise<void> | undefined;
  let onSignal: ((sig: 'SIGINT' | 'SIGTERM') => void) | undefined;
  const close = (): Promise<void> => {
    closed ??= (async () => {
      if (onSignal) {
        process.off('SIGINT', onSignal);
        process.off('SIGTERM', onSignal);
      }
      const open = await connection?.catch(() => undefined);
      await open?.close();
    })();
    return closed;
  };
  const supervisorClient = async (o: { timeoutMs?: number } = {}): Promise<ControlClient> => {
    if (!remote) return ControlClient.forSandbox(name, home, o);
    if (closed) throw new NemoclawError('not_running', `the ssh bridge to ${remote.host} is closed`);
    if (!connection) {
      // Ctrl-C / SIGTERM while the bridge is open: close it (no ssh master left behind) and end
      // with the signal's code. A running follower stops on the signal itself; action() closes after it.
      onSignal = (sig) => {
        if (activeFollowers > 0) return;
        if (state) state.interrupted = SIGNAL_EXIT[sig];
        void close();
      };
      process.on('SIGINT', onSignal);
      process.on('SIGTERM', onSignal);
      connection = import('../../components/remote.js').then(({ connectRemote }) =>
        connectRemote({
          host: remote.host,
          name,
          sshConfig: remote.sshConfig,
          remoteCommand: remote.remoteCommand,
          onError: (m) => void (io.env.NEMOCLAW_DEBUG && io.stderr.write(`${m}\n`)),
        }),
      );
    }
    return (await connection).client;
  };
  return {
    io,
    home,
    name,
    paths,
    command: cmd,
    remote,
    supervisorClient,
    close,
    client: (o = {}) => ControlClient.forSandbox(name, home, o),
    out: (line) => void io.stdout.write(`${line}\n`),
    err: (line) => void io.stderr.write(`${line}\n`),
    json: (value) => void io.stdout.write(`${JSON.stringify(value, null, 2)}\n`),
  };
}

/** Create $NEMOCLAW_HOME (0700) for commands that write state. */
export function ensureHome(ctx: CliContext): void {
  ensurePrivateDir(ctx.home);
}

/**
 * Print an error for a human: `nemoclaw-tui: message` and `  next step: …`. Returns its exit code
 * (the error's own, 1 for unexpected errors).
 */
export function printError(io: CliIo, err: unknown, extraLines: string[] = []): number {
  const text = describeError(err);
  const [first, ...rest] = text.split('\n');
  io.stderr.write(`nemoclaw-tui: ${first}\n`);
  for (const l of extraLines) io.stderr.write(`${l}\n`);
  for (const l of rest) io.stderr.write(`${l}\n`);
  if (isNemoclawError(err)) return err.exitCode;
  if (process.env.NEMOCLAW_DEBUG && err instanceof Error && err.stack) io.stderr.write(`${err.stack}\n`);
  return EXIT.failure;
}

/** Optional per-command hook that renders an error's details (e.g. policy issues). */
export type DetailFormatter = (err: NemoclawError) => string[];

/**
 * Wrap a command handler: it gets the context and commander's arguments (without the Command),
 * returns an exit code (default 0); thrown errors are printed with their next step.
 */
export function action<Args extends unknown[]>(
  handler: (ctx: CliContext, ...args: Args) => Promise<number | void> | number | void,
  formatDetails?: DetailFormatter,
): (...args: unknown[]) => Promise<void> {
  return async (...args: unknown[]) => {
    const cmd = args[args.length - 1] as Command;
    const state = runStates.get(rootOf(cmd));
    const io = state?.io ?? processIo();
    let code: number;
    let ctx: CliContext | undefined;
    try {
      ctx = cliContext(cmd);
      code = (await handler(ctx, ...(args.slice(0, -1) as Args))) ?? EXIT.ok;
    } catch (err) {
      if (state?.interrupted !== undefined) {
        code = state.interrupted;
      } else {
        const extra = isNemoclawError(err) && formatDetails ? formatDetails(err) : [];
        code = printError(io, err, extra);
      }
    } finally {
      await ctx?.close();
    }
    if (state) state.exitCode = state.interrupted ?? code;
  };
}

/** The existing subcommand group `name` (e.g. `policy`, `audit`), created if missing, so several modules can add to it. */
export function commandGroup(program: Command, name: string, description: string): Command {
  const existing = program.commands.find((c) => c.name() === name);
  if (existing) return existing;
  return program.command(name).description(description);
}

/** Parse a positive integer option; throws a usage error naming the option. */
export function parseCount(value: string, option: string): number {
  if (!/^\d+$/.test(value)) {
    throw new NemoclawError('invalid_input', `${option} expects a non-negative whole number, got "${value}"`, { exitCode: EXIT.usage });
  }
  return Number(value);
}

/** `10m`, `1h`, `30s`, `2d`, or an ISO date → ms epoch. */
export function parseSince(value: string, now: number = Date.now()): number {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h|d)$/.exec(value.trim());
  if (m) {
    const unit = { ms: 1, s: 1_000, m: 60_000, h: 3_600_000, d: 86_400_000 }[m[2] as 'ms' | 's' | 'm' | 'h' | 'd'];
    return now - Number(m[1]) * unit;
  }
  if (/^\d{4}-\d{2}-\d{2}/.test(value)) {
    const t = Date.parse(value);
    if (!Number.isNaN(t)) return t;
  }
  throw new NemoclawError('invalid_input', `--since expects a duration like 30s, 10m, 1h, 2d or an ISO time, got "${value}"`, {
    exitCode: EXIT.usage,
  });
}

/**
 * `runLogs` on this command's streams until it ends or SIGINT/SIGTERM stops it (Ctrl-C ends a
 * follow cleanly, exit 0). The headless part is imported here, only by the commands that follow.
 */
export async function followLogs(
  ctx: CliContext,
  client: ControlClient,
  opts: Omit<LogsOptions, 'client' | 'stdout' | 'stderr' | 'env' | 'signal'>,
): Promise<number> {
  const { runLogs } = await import('../headless/index.js');
  const stop = new AbortController();
  const onSignal = (): void => stop.abort();
  process.once('SIGINT', onSignal);
  process.once('SIGTERM', onSignal);
  activeFollowers++;
  try {
    return await runLogs({ ...opts, client, stdout: ctx.io.stdout, stderr: ctx.io.stderr, env: ctx.io.env, signal: stop.signal });
  } finally {
    activeFollowers--;
    process.off('SIGINT', onSignal);
    process.off('SIGTERM', onSignal);
  }
}

export { nameFlag } from '../shared/home.js';

/** "5m 3s" style durations for humans. */
export function humanDuration(ms: number): string {
  const s = Math.floor(ms / 1000);
  const d = Math.floor(s / 86_400);
  const h = Math.floor((s % 86_400) / 3_600);
  const m = Math.floor((s % 3_600) / 60);
  const sec = s % 60;
  if (d > 0) return `${d}d ${h}h`;
  if (h > 0) return `${h}h ${m}m`;
  if (m > 0) return `${m}m ${sec}s`;
  return `${sec}s`;
}

/**
 * Policy warnings for a terminal: a changed meaning (a rule now read as OpenShell reads it) under its
 * own heading, before what is accepted but not enforced. `what` names the file or preset.
 */
export function formatPolicyWarnings(warnings: readonly PolicyIssue[], what = ''): string {
  const changed = warnings.filter((w) => w.severity === 'meaning-changed');
  const notEnforced = warnings.filter((w) => w.severity !== 'meaning-changed');
  const of = what ? ` (${what})` : '';
  const parts: string[] = [];
  if (changed.length > 0) parts.push(`warning${of}: these rules now mean what they mean in OpenShell, not what earlier nemoclaw-tui versions read:\n${formatPolicyIssues(changed)}`);
  if (notEnforced.length > 0) parts.push(`warning${of}: accepted but not enforced here:\n${formatPolicyIssues(notEnforced)}`);
  return parts.join('\n');
}
