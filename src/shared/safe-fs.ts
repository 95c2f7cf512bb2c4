/**
 * File operations the (root) supervisor performs inside trees the sandbox can write.
 *
 * The sandbox controls every name below its workdir: any component may be a symlink, a FIFO, a
 * hard link or a directory swapped in between two calls. Path-based `fs` calls follow all of that
 * with root's rights, which makes the supervisor a confused deputy (read a root-only file into the
 * sandbox, write or chown outside it). So below a trusted directory every step here is relative to
 * an open directory fd and refuses symlinks:
 *
 * - `/proc/self/fd/<dirfd>/<name>` is Node's `openat(dirfd, name)`: the kernel jumps straight to the
 *   dentry the fd pins (no lookup by name of anything above it), then resolves the single `name`,
 *   which `O_NOFOLLOW` refuses to follow.
 * - Ownership and type are checked on the opened fd (`fstat`), never on a path, and ownership is
 *   changed with `fchown` on that fd.
 * - New files are created `O_CREAT|O_EXCL|O_NOFOLLOW` under a random name and renamed over the
 *   target through the directory fd: `rename` never follows its last component, so a planted link
 *   is replaced, not written through.
 */
import { closeSync, constants, fchownSync, fstatSync, fsyncSync, lstatSync, mkdirSync, openSync, readSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { randomBytes } from 'node:crypto';
import { NemoclawError } from './errors.js';

// libuv opens every fd O_CLOEXEC already.
const { O_RDONLY, O_WRONLY, O_CREAT, O_EXCL, O_NOFOLLOW, O_DIRECTORY, O_NONBLOCK } = constants;

/** Files the supervisor reads from a sandbox-owned tree are small configs; bigger is refused. */
export const DEFAULT_MAX_READ_BYTES = 8 * 1024 * 1024;

export interface Owner {
  uid: number;
  gid: number;
}

function fdPath(dirFd: number, name: string): string {
  if (name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0')) {
    throw new NemoclawError('internal', `not a single path component: ${JSON.stringify(name)}`);
  }
  return `/proc/self/fd/${dirFd}/${name}`;
}

function errno(err: unknown): string | undefined {
  return (err as NodeJS.ErrnoException | undefined)?.code;
}

function refused(what: string, why: string): NemoclawError {
  return new NemoclawError('denied', `refusing to use ${what}: ${why}`, {
    nextStep: `something inside the sandbox replaced it; remove it from inside (\`nemoclaw-tui exec -- rm -rf <path>\`) and start again`,
  });
}

/**
 * Open a directory the supervisor trusts (its parents are root's) without following a link at its
 * last component. The caller closes the fd.
 */
export function openTrustedDir(path: string): number {
  try {
    return openSync(path, O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (err) {
    if (errno(err) === 'ELOOP' || errno(err) === 'ENOTDIR') throw refused(path, 'it is not a directory (a symlink or a file)');
    throw err;
  }
}

/** Run `fn` with an open directory fd, closing it afterwards. */
export function withDir<T>(dirFd: number, fn: (fd: number) => T): T {
  try {
    return fn(dirFd);
  } finally {
    closeSync(dirFd);
  }
}

/**
 * Open (creating when missing) the directory `name` inside `dirFd`. A new directory gets `mode` and
 * `owner`; an existing one must be a real directory (a symlink is refused) and is left as it is.
 */
export function openOrCreateSubdir(dirFd: number, name: string, opts: { mode?: number; owner?: Owner; label?: string } = {}): { fd: number; created: boolean } {
  const label = opts.label ?? name;
  let created = false;
  try {
    mkdirSync(fdPath(dirFd, name), { mode: opts.mode ?? 0o700 });
    created = true;
  } catch (err) {
    if (errno(err) !== 'EEXIST') throw err;
  }
  let fd: number;
  try {
    fd = openSync(fdPath(dirFd, name), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
  } catch (err) {
    if (errno(err) === 'ELOOP' || errno(err) === 'ENOTDIR') throw refused(label, 'it is not a directory (a symlink or a file)');
    throw err;
  }
  if (created && opts.owner) chownFd(fd, opts.owner);
  return { fd, created };
}

/**
 * Read the regular file `name` inside `dirFd`, or undefined when it does not exist. Refused: a
 * symlink, a FIFO or device (opening never blocks: O_NONBLOCK), a file with other hard links (it
 * may be another name of a file outside the tree), one not owned by `owner` when given, one bigger
 * than `maxBytes`.
 */
export function readFileNoFollow(
  dirFd: number,
  name: string,
  opts: { owner?: Owner; maxBytes?: number; label?: string } = {},
): Buffer | undefined {
  const label = opts.label ?? name;
  let fd: number;
  try {
    fd = openSync(fdPath(dirFd, name), O_RDONLY | O_NOFOLLOW | O_NONBLOCK);
  } catch (err) {
    if (errno(err) === 'ENOENT') return undefined;
    if (errno(err) === 'ELOOP') throw refused(label, 'it is a symbolic link');
    throw err;
  }
  try {
    const st = fstatSync(fd);
    if (!st.isFile()) throw refused(label, 'it is not a regular file');
    if (st.nlink !== 1) throw refused(label, `it has ${st.nlink} hard links (it may be another name of a file outside the sandbox)`);
    if (opts.owner && st.uid !== opts.owner.uid && st.uid !== 0) {
      throw refused(label, `it is owned by uid ${st.uid}, not the sandbox (uid ${opts.owner.uid})`);
    }
    const max = opts.maxBytes ?? DEFAULT_MAX_READ_BYTES;
    if (st.size > max) throw refused(label, `it is ${st.size} bytes (more than ${max})`);
    const buf = Buffer.alloc(st.size);
    let off = 0;
    while (off < buf.length) {
      const n = readSync(fd, buf, off, buf.length - off, off);
      if (n === 0) break;
      off += n;
    }
    return buf.subarray(0, off);
  } finally {
    closeSync(fd);
  }
}

/**
 * Replace `name` inside `dirFd` with `data`, atomically: a fresh file (O_EXCL|O_NOFOLLOW, `mode`,
 * fchown'd to `owner`), fsync'd, renamed over the old name. A link planted at `name` is replaced.
 */
export function writeFileAtomicNoFollow(dirFd: number, name: string, data: string | Buffer, opts: { mode?: number; owner?: Owner } = {}): void {
  const tmpName = `.${name}.tmp-${process.pid}-${randomBytes(6).toString('hex')}`;
  const tmp = fdPath(dirFd, tmpName);
  const fd = openSync(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW, opts.mode ?? 0o600);
  try {
    try {
      const bytes = typeof data === 'string' ? Buffer.from(data) : data;
      let off = 0;
      while (off < bytes.length) off += writeSync(fd, bytes, off, bytes.length - off);
      if (opts.owner) chownFd(fd, opts.owner);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, fdPath(dirFd, name));
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {
      // Already renamed or never created.
    }
    throw err;
  }
}

/** fchown, tolerating EPERM when not root (the file is ours, the same owner the workdir has). */
export function chownFd(fd: number, owner: Owner): void {
  try {
    fchownSync(fd, owner.uid, owner.gid);
  } catch (err) {
    if (errno(err) !== 'EPERM' || process.getuid?.() === 0) throw err;
  }
}

/** Owner of an open fd. */
export function fdOwner(fd: number): Owner {
  const st = fstatSync(fd);
  return { uid: st.uid, gid: st.gid };
}

/**
 * lstat `rel` (a relative path) below the trusted directory `dir` without following any link on
 * the way: each directory is opened O_NOFOLLOW relative to the previous one. Undefined when a
 * component is missing or is not a directory, or when an intermediate component is a link (what
 * it points at is the sandbox's business, not something root should look at).
 */
export function lstatBelow(dir: string, rel: string): import('node:fs').Stats | undefined {
  const parts = rel.split('/').filter((p) => p !== '' && p !== '.');
  if (parts.some((p) => p === '..')) return undefined;
  let fd: number;
  try {
    fd = openTrustedDir(dir);
  } catch {
    return undefined;
  }
  try {
    for (let i = 0; i < parts.length - 1; i++) {
      let next: number;
      try {
        next = openSync(fdPath(fd, parts[i]!), O_RDONLY | O_DIRECTORY | O_NOFOLLOW);
      } catch {
        return undefined;
      }
      closeSync(fd);
      fd = next;
    }
    if (parts.length === 0) return fstatSync(fd);
    try {
      return lstatSync(fdPath(fd, parts[parts.length - 1]!));
    } catch {
      return undefined;
    }
  } finally {
    closeSync(fd);
  }
}
