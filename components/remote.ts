/**
 * `--host user@box`: reach a remote supervisor's control socket over SSH.
 *
 * Local half: a private Unix socket (0600 in a 0700 temp dir); every connection to it spawns
 *   ssh -T -o BatchMode=yes -o ConnectTimeout=10 -o ControlMaster=auto … [-F FILE] user@box -- nemoclaw-tui --name N __bridge
 * and pipes the connection through the ssh process's stdio. SSH connection sharing
 * (ControlMaster/ControlPersist, socket in a private per-attach dir) makes the second and later
 * connections cheap; `close()` stops the shared master so no ssh outlives the attach.
 * Remote half (`nemoclaw-tui __bridge`): connect stdin/stdout to the local control socket.
 * The control client then talks HTTP to the local socket as if the supervisor were here.
 *
 * ssh joins the remote argv with spaces and hands it to the remote user's shell, so every word
 * sent there (host, remote command, sandbox name) is validated against a strict character set;
 * nothing is ever quoted or built into a shell string on this side.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, statSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { ControlClient, type SupervisorStatus } from '../src/control/client.js';
import { NemoclawError, isNemoclawError } from '../src/shared/errors.js';

/** user@host or host (names, IPv4, or IPv6 with at least two colons); never something ssh could read as an option. */
const HOST_RE = /^(?:[A-Za-z0-9._-]+@)?(?:[A-Za-z0-9._-]+|[0-9A-Fa-f]*:[0-9A-Fa-f]*:[0-9A-Fa-f:]*)$/;
/** A bare command name or an absolute path, in characters no shell treats specially. */
const REMOTE_COMMAND_RE = /^(?:\/[A-Za-z0-9._/-]+|[A-Za-z0-9_][A-Za-z0-9._-]*)$/;

export const DEFAULT_REMOTE_COMMAND = 'nemoclaw-tui';
/** Seconds ssh may spend on TCP connect plus the SSH handshake before it gives up. */
export const SSH_CONNECT_TIMEOUT_S = 10;

export function validateSshHost(host: string): string {
  if (!HOST_RE.test(host) || host.startsWith('-')) {
    throw new NemoclawError('invalid_input', `--host expects user@host (letters, digits, ".", "-", "_"), got "${host}"`, {
      nextStep: 'e.g. `nemoclaw-tui --host ops@dgx-01`; put ports and keys in ~/.ssh/config (or a file given with --ssh-config)',
      exitCode: 2,
    });
  }
  return host;
}

/** The remote `nemoclaw-tui`: a bare name looked up on the remote PATH, or an absolute path. */
export function validateRemoteCommand(command: string): string {
  if (!REMOTE_COMMAND_RE.test(command) || command.includes('..')) {
    throw new NemoclawError(
      'invalid_input',
      `--remote-command expects a command name or an absolute path (letters, digits, ".", "-", "_", "/"), got "${command}"`,
      { nextStep: 'e.g. `--remote-command /home/ops/.npm-global/bin/nemoclaw-tui`', exitCode: 2 },
    );
  }
  return command;
}

/** An ssh client config file (`ssh -F`): must exist; returned absolute. */
export function validateSshConfigFile(file: string): string {
  const path = resolve(file);
  let isFile = false;
  try {
    isFile = statSync(path).isFile();
  } catch {
    isFile = false;
  }
  if (!isFile) {
    throw new NemoclawError('invalid_input', `ssh config file ${path} does not exist or is not a file`, {
      nextStep: 'give an existing ssh_config file with --ssh-config FILE (or NEMOCLAW_SSH_CONFIG), or leave it out to use ~/.ssh/config',
      exitCode: 2,
    });
  }
  return path;
}

export interface SshBridgeOptions {
  /** `ssh -F FILE` instead of ~/.ssh/config (already validated: see validateSshConfigFile). */
  sshConfig?: string | undefined;
  /** The remote nemoclaw-tui (default `nemoclaw-tui` on the remote PATH). */
  remoteCommand?: string | undefined;
}

/** ssh options shared by the bridge and the master's `-O exit` (so both find the same ControlPath). */
function sshBaseArgs(controlDir: string, opts: SshBridgeOptions): string[] {
  return [
    ...(opts.sshConfig ? ['-F', opts.sshConfig] : []),
    '-o', 'BatchMode=yes',
    '-o', `ConnectTimeout=${SSH_CONNECT_TIMEOUT_S}`,
    '-o', 'ControlMaster=auto',
    // One private dir per attach (so one host): a short fixed name keeps under the socket path limit.
    '-o', `ControlPath=${join(controlDir, 'master')}`,
    '-o', 'ControlPersist=60',
    '-o', 'ServerAliveInterval=15',
  ];
}

/** The command each bridged connection runs (argument array; no shell on this side). */
export function sshBridgeCommand(host: string, name: string, controlDir: string, opts: SshBridgeOptions = {}): string[] {
  return [
    'ssh',
    '-T',
    ...sshBaseArgs(controlDir, opts),
    validateSshHost(host),
    '--',
    validateRemoteCommand(opts.remoteCommand ?? DEFAULT_REMOTE_COMMAND), '--name', name, '__bridge',
  ];
}

/** How a carrier process (one ssh per connection) ended when it did not end well. */
export interface CarrierFailure {
  /** Exit code (255: ssh itself failed; 127: remote command not found), or null when killed. */
  code: number | null;
  /** Its stderr (the first 4 KiB). */
  stderr: string;
  /** spawn error (e.g. ssh is not installed). */
  spawnError?: string;
}

export interface RemoteForward {
  /** Give this to ControlClient as its socketPath. */
  socketPath: string;
  /** The last carrier that failed (non-zero exit or could not start), if any. */
  lastFailure(): CarrierFailure | undefined;
  /** Resolves when no carrier process runs any more, or after timeoutMs. */
  carriersDone(timeoutMs: number): Promise<void>;
  close(): Promise<void>;
}

export interface ForwardOptions {
  /** argv of the process that carries one connection over its stdio (ssh by default). */
  command: string[];
  /** Told when a carrier process fails (e.g. ssh could not authenticate). */
  onError?: (message: string) => void;
}

/** Local half. */
export async function startStdioForward(opts: ForwardOptions): Promise<RemoteForward> {
  const dir = mkdtempSync(join(tmpdir(), 'nemoclaw-remote-'));
  chmodSync(dir, 0o700);
  const socketPath = join(dir, 'control.sock');
  const children = new Set<ChildProcess>();
  const sockets = new Set<Socket>();
  const idleWaiters = new Set<() => void>();
  let failure: CarrierFailure | undefined;
  const [file, ...args] = opts.command;
  if (!file) throw new NemoclawError('invalid_input', 'empty bridge command');
  const childGone = (child: ChildProcess): void => {
    children.delete(child);
    if (children.size === 0) for (const w of [...idleWaiters]) w();
  };
  const server: Server = createServer((sock) => {
    sockets.add(sock);
    const child = spawn(file, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    children.add(child);
    let stderr = '';
    child.stderr?.setEncoding('utf8');
    child.stderr?.on('data', (d: string) => {
      if (stderr.length < 4096) stderr += d;
    });
    sock.pipe(child.stdin!);
    child.stdout!.pipe(sock);
    child.stdin!.on('error', () => sock.destroy());
    child.on('error', (err) => {
      failure = { code: null, stderr, spawnError: err.message };
      opts.onError?.(`${file}: ${err.message}`);
      sock.destroy();
      childGone(child);
    });
    // 'close' (not 'exit'): stderr has been read to its end by then.
    child.on('close', (code) => {
      if (code !== 0 && code !== null) {
        failure = { code, stderr };
        opts.onError?.(`${file} exited ${code}${stderr.trim() ? `: ${stderr.trim().split('\n').at(-1)}` : ''}`);
      }
      sock.end();
      childGone(child);
    });
    sock.on('close', () => {
      sockets.delete(sock);
      child.stdin?.end();
      // ssh exits when the remote bridge sees EOF; make sure it does not linger.
      setTimeout(() => child.exitCode === null && child.kill('SIGTERM'), 2000).unref();
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((resolvePromise, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolvePromise());
  });
  chmodSync(socketPath, 0o600);
  return {
    socketPath,
    lastFailure: () => failure,
    carriersDone(timeoutMs) {
      if (children.size === 0) return Promise.resolve();
      return new Promise<void>((resolvePromise) => {
        const done = (): void => {
          clearTimeout(timer);
          idleWaiters.delete(done);
          resolvePromise();
        };
        const timer = setTimeout(done, timeoutMs);
        idleWaiters.add(done);
      });
    },
    async close() {
      for (const s of sockets) s.destroy();
      for (const c of children) c.kill('SIGTERM');
      await new Promise<void>((resolvePromise) => server.close(() => resolvePromise()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The last line of the remote CLI's own error and its `next step:` line, if it printed them. */
function remoteCliError(stderr: string): { message: string; nextStep?: string } | undefined {
  const lines = stderr.split('\n').map((l) => l.trimEnd());
  const i = lines.findLastIndex((l) => l.startsWith('nemoclaw-tui: '));
  if (i < 0) return undefined;
  const next = lines.slice(i + 1).find((l) => l.trim().startsWith('next step: '));
  return { message: lines[i]!.slice('nemoclaw-tui: '.length), ...(next ? { nextStep: next.trim().slice('next step: '.length) } : {}) };
}

function lastLine(text: string): string {
  return (
    text
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l.length > 0 && !l.startsWith('Warning: Permanently added'))
      .at(-1) ?? ''
  );
}

export interface RemoteTarget extends SshBridgeOptions {
  host: string;
  name: string;
}

/** The `ssh … true` an operator can run by hand to check the connection (for messages). */
export function sshCheckCommand(target: RemoteTarget): string {
  return ['ssh', ...(target.sshConfig ? ['-F', target.sshConfig] : []), target.host, target.remoteCommand ?? DEFAULT_REMOTE_COMMAND, '--version'].join(' ');
}

/** Turn a failed carrier (or its absence) into an error naming the host and what to check. */
export function describeRemoteFailure(target: RemoteTarget, failure: CarrierFailure | undefined, cause: unknown): NemoclawError {
  const { host } = target;
  const remoteCommand = target.remoteCommand ?? DEFAULT_REMOTE_COMMAND;
  const check = `\`${sshCheckCommand(target)}\``;
  if (failure?.spawnError) {
    return new NemoclawError('prerequisite_missing', `cannot start ssh to reach ${host}: ${failure.spawnError}`, {
      nextStep: 'install the OpenSSH client (apt-get install openssh-client)',
      cause,
    });
  }
  if (failure && failure.code === 255) {
    const why = lastLine(failure.stderr) || 'ssh exited 255';
    return new NemoclawError('not_running', `cannot reach ${host} over ssh: ${why}`, {
      nextStep: `check that ${check} works without a prompt: host name, port, user and key (${target.sshConfig ? `in ${target.sshConfig}` : 'in ~/.ssh/config, or give one with --ssh-config FILE'}); ssh runs with BatchMode, so passwords and unknown host keys are refused`,
      cause,
    });
  }
  if (failure && (failure.code === 127 || /command not found|not found|No such file/i.test(failure.stderr)) && !remoteCliError(failure.stderr)) {
    return new NemoclawError('not_found', `ssh reached ${host}, but "${remoteCommand}" could not be run there: ${lastLine(failure.stderr) || `exit ${failure.code}`}`, {
      nextStep: `install nemoclaw-tui on ${host}, or give its full path with --remote-command /path/to/nemoclaw-tui (a non-interactive ssh session may not read your shell's PATH)`,
      cause,
    });
  }
  if (failure) {
    const remote = remoteCliError(failure.stderr);
    if (remote) {
      return new NemoclawError('not_running', `on ${host}: ${remote.message}`, {
        nextStep: remote.nextStep ? `on ${host}: ${remote.nextStep}` : `look at the supervisor there: ssh ${host} ${remoteCommand}${target.name === 'default' ? '' : ` --name ${target.name}`} status`,
        cause,
      });
    }
    return new NemoclawError('not_running', `the remote bridge on ${host} failed (exit ${failure.code}): ${lastLine(failure.stderr) || 'no message'}`, {
      nextStep: `check ${check}`,
      cause,
    });
  }
  const detail = isNemoclawError(cause) || cause instanceof Error ? cause.message : String(cause);
  return new NemoclawError('not_running', `no answer from the supervisor of sandbox "${target.name}" on ${host} over ssh: ${detail}`, {
    nextStep: `check ${check}, then \`ssh ${host} ${remoteCommand} status\``,
    cause,
  });
}

export interface RemoteConnection {
  client: ControlClient;
  forward: RemoteForward;
  /** The remote supervisor's status, from the check request. */
  status: SupervisorStatus;
  /** Close the local socket, stop carriers, stop the shared ssh master, remove the temp dirs. */
  close(): Promise<void>;
}

export interface ConnectRemoteOptions extends RemoteTarget {
  /** How long the first request (ssh connect + handshake + remote start + status) may take. */
  preflightTimeoutMs?: number;
  onError?: (message: string) => void;
}

/**
 * Open the forward and check it with one status request, so a broken ssh setup fails here with
 * a clear message (host, ssh's own reason, what to check) instead of as a silent reconnect loop.
 * This first request also starts the shared ssh master.
 */
export async function connectRemote(opts: ConnectRemoteOptions): Promise<RemoteConnection> {
  const target: RemoteTarget = {
    host: validateSshHost(opts.host),
    name: opts.name,
    ...(opts.sshConfig ? { sshConfig: validateSshConfigFile(opts.sshConfig) } : {}),
    ...(opts.remoteCommand ? { remoteCommand: validateRemoteCommand(opts.remoteCommand) } : {}),
  };
  const controlDir = mkdtempSync(join(tmpdir(), 'nemoclaw-ssh-'));
  chmodSync(controlDir, 0o700);
  let forward: RemoteForward;
  try {
    forward = await startStdioForward({
      command: sshBridgeCommand(target.host, target.name, controlDir, target),
      ...(opts.onError ? { onError: opts.onError } : {}),
    });
  } catch (err) {
    rmSync(controlDir, { recursive: true, force: true });
    throw err;
  }
  const close = async (): Promise<void> => {
    await forward.close();
    await stopSshMaster(target, controlDir);
    rmSync(controlDir, { recursive: true, force: true });
  };
  const client = new ControlClient({ socketPath: forward.socketPath, sandbox: `${target.name}@${target.host}` });
  let status: SupervisorStatus;
  try {
    status = await client.request<SupervisorStatus>('GET', '/v1/status', undefined, { timeoutMs: opts.preflightTimeoutMs ?? (SSH_CONNECT_TIMEOUT_S + 15) * 1000 });
  } catch (err) {
    // The HTTP side may see the hang-up before ssh's exit status and stderr are in.
    await forward.carriersDone(3000);
    const failure = forward.lastFailure();
    await close();
    throw describeRemoteFailure(target, failure, err);
  }
  return { client, forward, status, close };
}

/** `ssh -O exit` on the shared master (if one was started), bounded; failures are irrelevant here. */
function stopSshMaster(target: RemoteTarget, controlDir: string): Promise<void> {
  return new Promise((resolvePromise) => {
    const child = spawn('ssh', [...sshBaseArgs(controlDir, target), '-O', 'exit', target.host], { stdio: 'ignore' });
    const timer = setTimeout(() => child.kill('SIGKILL'), 3000);
    const done = (): void => {
      clearTimeout(timer);
      resolvePromise();
    };
    child.on('error', done);
    child.on('close', done);
  });
}

/** Remote half: pipe `input`/`output` (the ssh channel) to the control socket until either closes. */
export function serveStdioBridge(socketPath: string, input: Readable, output: Writable, startCommand = 'nemoclaw-tui up'): Promise<void> {
  return new Promise((resolvePromise, reject) => {
    const sock = connect(socketPath);
    let connected = false;
    sock.once('connect', () => {
      connected = true;
      input.pipe(sock);
      sock.pipe(output);
    });
    input.once('end', () => sock.end());
    sock.once('error', (err) => {
      if (!connected) reject(new NemoclawError('not_running', `nothing answers on ${socketPath}: ${err.message}`, { nextStep: `start the supervisor on that box with \`${startCommand}\`` }));
      else resolvePromise();
    });
    sock.once('close', () => {
      input.unpipe(sock);
      resolvePromise();
    });
  });
}
