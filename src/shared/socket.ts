import { chmod, rm } from 'node:fs/promises';
import type { Server } from 'node:net';
import { NemoclawError } from './errors.js';

/** Linux limit for sun_path (108 bytes including the terminating NUL). */
export const MAX_SOCKET_PATH_BYTES = 107;

export interface ListenUnixOptions {
  /** What the socket is, for messages ("control socket", "egress proxy socket"). */
  what: string;
  /** Pending-connection queue (Node's default is 511). */
  backlog?: number;
}

/**
 * Listen on a Unix socket only its owner may connect to. The caller holds the sandbox's pid lock,
 * so a socket file already at `path` is stale and removed. A path longer than sun_path is refused
 * with the fix named (instead of a bare EINVAL). The socket is 0600 before this returns. Errors
 * after listening (accept failing with EMFILE under a burst) are reported, not thrown: one failed
 * accept must not bring the supervisor down.
 */
export async function listenUnixSocket(server: Server, path: string, opts: ListenUnixOptions): Promise<void> {
  if (Buffer.byteLength(path) > MAX_SOCKET_PATH_BYTES) {
    throw new NemoclawError('invalid_input', `${opts.what} path is too long for a Unix socket: ${path}`, {
      nextStep: 'set NEMOCLAW_HOME to a shorter directory (the socket path must stay under 108 bytes)',
      exitCode: 2,
    });
  }
  await rm(path, { force: true });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(opts.backlog === undefined ? { path } : { path, backlog: opts.backlog }, () => {
      server.off('error', reject);
      resolve();
    });
  });
  server.on('error', (err) => process.stderr.write(`nemoclaw: ${opts.what} ${path}: ${err.message}\n`));
  await chmod(path, 0o600);
}
