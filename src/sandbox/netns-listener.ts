/**
 * A TCP listening socket that lives in another process's network namespace, owned by us.
 *
 * Why: the sandbox reaches the egress proxy at 127.0.0.1:3128 inside its own netns. A relay there
 * (socat `fork`) costs a fork, a Unix hop and two extra copies per connection, Nagle on the TCP
 * side, and an `ss` run to find out who connected. Instead a short-lived Node child enters the
 * netns (nsenter), binds and listens there, and hands the listening socket to us over Node's IPC
 * channel (SCM_RIGHTS); then it exits. A socket keeps the namespace it was created in, so the
 * supervisor accepts the sandbox's connections itself, on its own event loop, with the client's
 * port right there in `remotePort`.
 *
 * node:child_process rather than execa: handle passing needs Node's own IPC channel, which execa's
 * IPC does not expose. Still an argument array; the script is fixed text, host and port are argv.
 */
import { spawn } from 'node:child_process';
import { isIP, type Server } from 'node:net';
import { NemoclawError } from '../shared/errors.js';

/** Run in the netns: listen, send the server to the parent, exit once it has been sent. */
const LISTENER_SCRIPT = [
  "const net = require('net');",
  'const [host, port, backlog, tw] = process.argv.slice(1);',
  // Best effort: the namespace's own bound on TIME_WAIT sockets (see NetnsListenOptions.maxTimeWait).
  "if (tw) { try { require('fs').writeFileSync('/proc/sys/net/ipv4/tcp_max_tw_buckets', tw); } catch {} }",
  'const s = net.createServer();',
  "s.on('error', (e) => process.send({ error: e.code || e.message }, () => process.exit(1)));",
  "s.listen({ host, port: Number(port), backlog: Number(backlog) }, () => process.send('listening', s, () => process.exit(0)));",
].join('\n');

export interface NetnsListenOptions {
  /** Address inside the namespace (default 127.0.0.1). */
  host?: string;
  backlog?: number;
  /**
   * Set the namespace's `net.ipv4.tcp_max_tw_buckets` (per netns): closed connections beyond it
   * skip TIME_WAIT. In a loopback-only sandbox TIME_WAIT protects nothing, and every remnant is a
   * row that each identity lookup reads in /proc/net/tcp. Default: left as it is.
   */
  maxTimeWait?: number;
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  nsenter?: string;
  /** The Node binary to run in the namespace (default: ours). */
  node?: string;
}

/**
 * Listen on `host:port` inside the network namespace of `pid`. The returned server has no
 * `connection` listener yet: pass it to `net.Server.listen(handle)` of a server of your own, or
 * listen on it directly. Close it to stop listening there.
 */
export function listenInNetns(pid: number, port: number, opts: NetnsListenOptions = {}): Promise<Server> {
  const host = opts.host ?? '127.0.0.1';
  if (!Number.isInteger(pid) || pid <= 0) return Promise.reject(new NemoclawError('invalid_input', `no process to take the network namespace from (pid ${pid})`));
  if (!isIP(host)) return Promise.reject(new NemoclawError('invalid_input', `listen address must be an IP address (got ${JSON.stringify(host)})`));
  const what = `${host}:${port} in the network namespace of pid ${pid}`;
  const next = 'run `nemoclaw-tui doctor` (nsenter from util-linux is needed, and the supervisor must run as root)';
  return new Promise<Server>((resolve, reject) => {
    let settled = false;
    const child = spawn(
      opts.nsenter ?? 'nsenter',
      [`--net=/proc/${pid}/ns/net`, '--', opts.node ?? process.execPath, '-e', LISTENER_SCRIPT, host, String(port), String(opts.backlog ?? 4096), opts.maxTimeWait !== undefined ? String(opts.maxTimeWait) : ''],
      // No inherited environment: NODE_OPTIONS and friends of the supervisor's caller do not apply.
      { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], env: {} },
    );
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    const done = (err: Error | undefined, server?: Server): void => {
      if (settled) {
        server?.close();
        return;
      }
      settled = true;
      clearTimeout(timer);
      if (err) {
        if (child.exitCode === null) child.kill('SIGKILL');
        reject(err);
      } else resolve(server as Server);
    };
    const timer = setTimeout(
      () => done(new NemoclawError('internal', `could not listen on ${what}: no answer within ${opts.timeoutMs ?? 10_000} ms`, { nextStep: next })),
      opts.timeoutMs ?? 10_000,
    );
    child.on('message', (msg: unknown, handle: unknown) => {
      if (msg === 'listening' && handle && typeof (handle as Server).address === 'function') {
        done(undefined, handle as Server);
        return;
      }
      const code = typeof msg === 'object' && msg !== null ? String((msg as { error?: unknown }).error) : String(msg);
      done(
        new NemoclawError('internal', `could not listen on ${what}: ${code === 'EADDRINUSE' ? 'the port is already in use there' : code}`, {
          nextStep: code === 'EADDRINUSE' ? 'something in the sandbox already listens on that port; stop it and start the sandbox again' : next,
        }),
      );
    });
    child.on('error', (e) => done(new NemoclawError('internal', `could not listen on ${what}: ${e.message}`, { nextStep: next })));
    child.on('exit', (code, signal) => {
      // Exit after a successful send is normal; before it, it is the failure.
      if (!settled) {
        done(
          new NemoclawError('internal', `could not listen on ${what}: the helper exited (${signal ?? `code ${code}`})${stderr.trim() ? `: ${stderr.trim()}` : ''}`, {
            nextStep: next,
          }),
        );
      }
    });
  });
}
