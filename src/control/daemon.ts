/**
 * Lifecycle of the detached supervisor daemon: find out whether a sandbox is supervised (cleaning
 * up after a crash), start one, stop one.
 */
import { closeSync, fstatSync, lstatSync, openSync, readFileSync } from 'node:fs';
import { resolve } from 'node:path';
import { spawn } from 'node:child_process';
import { NemoclawError } from '../shared/errors.js';
import { ensureSandboxDirs, resolveHome, sandboxPaths, type SandboxPaths } from '../shared/home.js';
import { ControlClient, type SupervisorStatus } from './client.js';
import { isProcessAlive, pidRecordAlive, readPidFile, removeStaleFiles } from './pidfile.js';
import { binPath } from '../shared/package.js';

export type SandboxState =
  | { state: 'running'; pid: number; status: SupervisorStatus }
  /** A live supervisor process that holds the lock but does not answer (starting, or hung). */
  | { state: 'unresponsive'; pid: number }
  | { state: 'stopped'; cleaned: boolean };

function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** Is sandbox `name` supervised? Removes a dead supervisor's pid file and socket on the way. */
export async function inspectSandbox(paths: SandboxPaths, opts: { probeTimeoutMs?: number } = {}): Promise<SandboxState> {
  const client = new ControlClient({ socketPath: paths.controlSocket, sandbox: paths.name, timeoutMs: opts.probeTimeoutMs ?? 3_000 });
  const rec = readPidFile(paths.pidFile);
  const alive = rec !== undefined && pidRecordAlive(rec);
  try {
    const status = await client.status();
    return { state: 'running', pid: status.pid, status };
  } catch (err) {
    if (!(err instanceof NemoclawError) || err.code !== 'not_running') throw err;
  }
  if (rec && alive) return { state: 'unresponsive', pid: rec.pid };
  // Neither a live pid nor an answering socket: whatever is left is from a crash.
  const hadFiles = rec !== undefined || existsQuiet(paths.controlSocket);
  removeStaleFiles(paths);
  return { state: 'stopped', cleaned: hadFiles };
}

function existsQuiet(path: string): boolean {
  try {
    lstatSync(path);
    return true;
  } catch {
    return false;
  }
}

/** The last `lines` lines written to `path` after byte offset `from` (this start's output only). */
function tail(path: string, lines: number, from = 0): string {
  try {
    const text = readFileSync(path).subarray(from).toString('utf8').trimEnd().split('\n');
    return text.slice(-lines).join('\n');
  } catch {
    return '';
  }
}

export interface StartDaemonOptions {
  name: string;
  home?: string;
  policyFile?: string;
  unsafeAllowLoopbackUpstreams?: boolean;
  /** `KEY=VALUE` pairs for the agent's environment (already validated). */
  agentEnv?: string[];
  /** How long to wait for the control socket to answer (default 20 s). */
  timeoutMs?: number;
  /** Entry to run under process.execPath (default bin/nemoclaw-tui.js). */
  bin?: string;
  env?: NodeJS.ProcessEnv;
}

export type StartDaemonResult =
  | { started: true; pid: number; status: SupervisorStatus; cleanedStale: boolean }
  | { started: false; pid: number; status: SupervisorStatus };

/** Start a detached supervisor for `name`, or report the one already running. */
export async function startDaemon(opts: StartDaemonOptions): Promise<StartDaemonResult> {
  const home = resolve(opts.home ?? resolveHome());
  const paths = sandboxPaths(opts.name, home);
  ensureSandboxDirs(paths, home);
  let state = await inspectSandbox(paths);
  if (state.state === 'unresponsive') {
    // Probably still starting: give it a moment before calling it hung.
    state = await waitForAnswer(paths, 5_000, state.pid);
    if (state.state === 'unresponsive') {
      throw new NemoclawError('conflict', `sandbox "${opts.name}" has a supervisor process (pid ${state.pid}) that does not answer on ${paths.controlSocket}`, {
        nextStep: `stop it with \`nemoclaw-tui down --name ${opts.name}\` (or kill ${state.pid}), then run up again; its log is ${paths.daemonLog}`,
      });
    }
  }
  if (state.state === 'running') return { started: false, pid: state.pid, status: state.status };
  const cleanedStale = state.cleaned;

  const args = [opts.bin ?? binPath(), '__supervise', '--name', opts.name];
  if (opts.policyFile) args.push('--policy', resolve(opts.policyFile));
  if (opts.unsafeAllowLoopbackUpstreams) args.push('--unsafe-allow-loopback-upstreams');
  for (const pair of opts.agentEnv ?? []) args.push('--agent-env', pair);
  const logFd = openSync(paths.daemonLog, 'a', 0o600);
  const logStart = fstatSync(logFd).size;
  let exited: { code: number | undefined; signal: string | undefined } | undefined;
  let childPid: number | undefined;
  try {
    // node:child_process rather than execa: the daemon must get the log file's fd itself (execa's
    // types do not accept a runtime fd number) and outlive us; still an argument array, no shell.
    const child = spawn(process.execPath, args, {
      detached: true,
      stdio: ['ignore', logFd, logFd],
      env: { ...(opts.env ?? process.env), NEMOCLAW_HOME: home, NEMOCLAW_NO_REEXEC: '1' },
    });
    childPid = child.pid;
    child.on('error', (err) => {
      exited = { code: undefined, signal: err.message };
    });
    child.on('exit', (code, signal) => {
      exited = { code: code ?? undefined, signal: signal ?? undefined };
    });
    child.unref();
  } finally {
    closeSync(logFd);
  }

  const deadline = Date.now() + (opts.timeoutMs ?? 20_000);
  while (Date.now() < deadline) {
    const client = new ControlClient({ socketPath: paths.controlSocket, sandbox: opts.name, timeoutMs: 2_000 });
    try {
      const status = await client.status();
      if (status.pid === childPid) return { started: true, pid: status.pid, status, cleanedStale };
      // Another `up` won the race for the lock.
      return { started: false, pid: status.pid, status };
    } catch (err) {
      if (!(err instanceof NemoclawError) || err.code !== 'not_running') throw err;
    }
    if (exited || (childPid !== undefined && !isProcessAlive(childPid))) {
      const code = exited?.code;
      throw new NemoclawError('io', `the supervisor of sandbox "${opts.name}" exited during start${code !== undefined ? ` (exit code ${code})` : ''}:\n${indent(tail(paths.daemonLog, 15, logStart))}`, {
        nextStep: `fix the cause above and run up again; full log: ${paths.daemonLog}`,
      });
    }
    await sleep(100);
  }
  throw new NemoclawError('io', `the supervisor of sandbox "${opts.name}" (pid ${childPid ?? '?'}) did not answer on ${paths.controlSocket} within ${opts.timeoutMs ?? 20_000} ms`, {
    nextStep: `look at its log ${paths.daemonLog}; stop it with \`nemoclaw-tui down --name ${opts.name}\``,
  });
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => `  | ${l}`)
    .join('\n');
}

async function waitForAnswer(paths: SandboxPaths, ms: number, pid: number): Promise<SandboxState> {
  const deadline = Date.now() + ms;
  let state: SandboxState = { state: 'unresponsive', pid };
  while (Date.now() < deadline) {
    await sleep(200);
    state = await inspectSandbox(paths, { probeTimeoutMs: 1_000 });
    if (state.state !== 'unresponsive') return state;
  }
  return state;
}

export interface StopDaemonOptions {
  name: string;
  home?: string;
  /** How long to wait for the process to exit after asking, before SIGTERM (default 15 s), then again before SIGKILL. */
  timeoutMs?: number;
}

export type StopDaemonResult =
  | { wasRunning: false; cleanedStale: boolean }
  | { wasRunning: true; pid: number; how: 'shutdown' | 'sigterm' | 'sigkill' };

async function waitForExit(pid: number, ms: number): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (Date.now() < deadline) {
    if (!isProcessAlive(pid)) return true;
    await sleep(50);
  }
  return !isProcessAlive(pid);
}

/** Stop the supervisor of `name`: ask over the API (it flushes the audit log), then SIGTERM, then SIGKILL. */
export async function stopDaemon(opts: StopDaemonOptions): Promise<StopDaemonResult> {
  const home = resolve(opts.home ?? resolveHome());
  const paths = sandboxPaths(opts.name, home);
  const timeoutMs = opts.timeoutMs ?? 15_000;
  const state = await inspectSandbox(paths);
  if (state.state === 'stopped') return { wasRunning: false, cleanedStale: state.cleaned };
  const pid = state.pid;
  if (state.state === 'running') {
    const client = new ControlClient({ socketPath: paths.controlSocket, sandbox: opts.name });
    try {
      await client.shutdown();
    } catch (err) {
      if (!(err instanceof NemoclawError) || err.code !== 'not_running') throw err;
    }
    if (await waitForExit(pid, timeoutMs)) {
      removeStaleIfDead(paths);
      return { wasRunning: true, pid, how: 'shutdown' };
    }
  }
  try {
    process.kill(pid, 'SIGTERM');
  } catch {
    // gone already
  }
  if (await waitForExit(pid, timeoutMs)) {
    removeStaleIfDead(paths);
    return { wasRunning: true, pid, how: 'sigterm' };
  }
  try {
    process.kill(pid, 'SIGKILL');
  } catch {
    // gone already
  }
  await waitForExit(pid, 2_000);
  removeStaleIfDead(paths);
  return { wasRunning: true, pid, how: 'sigkill' };
}

function removeStaleIfDead(paths: SandboxPaths): void {
  const rec = readPidFile(paths.pidFile);
  if (!rec || !pidRecordAlive(rec)) removeStaleFiles(paths);
}
