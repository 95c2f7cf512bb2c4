/**
 * `--host user@box`: reach a remote supervisor's control socket over SSH.
 *
 * Local half: a private Unix socket (0600 in a 0700 temp dir); every connection to it spawns
 *   ssh [-o ControlMaster…] user@box -- nemoclaw-tui --name N __bridge
 * and pipes the connection through the ssh process's stdio. SSH connection sharing
 * (ControlMaster/ControlPersist) makes the second and later connections cheap.
 * Remote half (`nemoclaw-tui __bridge`): connect stdin/stdout to the local control socket.
 * The control client then talks HTTP to the local socket as if the supervisor were here.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, chmodSync } from 'node:fs';
import { connect, createServer, type Server, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { NemoclawError } from '../src/shared/errors.js';

/** user@host, host, or user@host:port-less forms; never something ssh could read as an option. */
const HOST_RE = /^(?:[A-Za-z0-9._-]+@)?[A-Za-z0-9._-]+$/;

export function validateSshHost(host: string): string {
  if (!HOST_RE.test(host) || host.startsWith('-')) {
    throw new NemoclawError('invalid_input', `--host expects user@host (letters, digits, ".", "-", "_"), got "${host}"`, {
      nextStep: 'e.g. `nemoclaw-tui --host ops@dgx-01`; put ports and keys in ~/.ssh/config',
      exitCode: 2,
    });
  }
  return host;
}

/** The command each bridged connection runs (argument array; no shell on this side). */
export function sshBridgeCommand(host: string, name: string, controlDir: string): string[] {
  return [
    'ssh',
    '-T',
    '-o', 'BatchMode=yes',
    '-o', 'ControlMaster=auto',
    '-o', `ControlPath=${join(controlDir, 'ssh-%C')}`,
    '-o', 'ControlPersist=60',
    '-o', 'ServerAliveInterval=15',
    validateSshHost(host),
    '--',
    'nemoclaw-tui', '--name', name, '__bridge',
  ];
}

export interface RemoteForward {
  /** Give this to ControlClient as its socketPath. */
  socketPath: string;
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
  const [file, ...args] = opts.command;
  if (!file) throw new NemoclawError('invalid_input', 'empty bridge command');
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
      opts.onError?.(`${file}: ${err.message}`);
      sock.destroy();
    });
    child.on('exit', (code) => {
      children.delete(child);
      if (code !== 0 && code !== null && stderr.trim()) opts.onError?.(`${file} exited ${code}: ${stderr.trim().split('\n').at(-1)}`);
      sock.end();
    });
    sock.on('close', () => {
      sockets.delete(sock);
      child.stdin?.end();
      // ssh exits when the remote bridge sees EOF; make sure it does not linger.
      setTimeout(() => child.exitCode === null && child.kill('SIGTERM'), 2000).unref();
    });
    sock.on('error', () => undefined);
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(socketPath, () => resolve());
  });
  chmodSync(socketPath, 0o600);
  return {
    socketPath,
    async close() {
      for (const s of sockets) s.destroy();
      for (const c of children) c.kill('SIGTERM');
      await new Promise<void>((resolve) => server.close(() => resolve()));
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** Remote half: pipe `input`/`output` (the ssh channel) to the control socket until either closes. */
export function serveStdioBridge(socketPath: string, input: Readable, output: Writable): Promise<void> {
  return new Promise((resolve, reject) => {
    const sock = connect(socketPath);
    let connected = false;
    sock.once('connect', () => {
      connected = true;
      input.pipe(sock);
      sock.pipe(output);
    });
    input.once('end', () => sock.end());
    sock.once('error', (err) => {
      if (!connected) reject(new NemoclawError('not_running', `nothing answers on ${socketPath}: ${err.message}`, { nextStep: 'start the supervisor on that box with `nemoclaw-tui up`' }));
      else resolve();
    });
    sock.once('close', () => {
      input.unpipe(sock);
      resolve();
    });
  });
}
