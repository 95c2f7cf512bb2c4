/**
 * A hard size limit on the agent's workdir (/sandbox): a sparse ext4 image, loop-mounted at the
 * workdir by the root supervisor. A runaway agent fills its own image (ENOSPC inside the sandbox),
 * never the host filesystem that holds /usr, the audit log and the supervisor's state.
 *
 * The image lives in the sandbox's state directory (root-only, never bound into the sandbox), so
 * nothing the sandbox controls is opened by root here. The workdir's contents before the first
 * mount are copied in (`cp -a`, links copied as links, never followed) and the old tree is kept
 * aside, renamed, so nothing is lost. Without root, or without `mount`/`mkfs.ext4`, the workdir
 * stays a plain directory and the status says why (`unlimited`).
 */
import { execa } from 'execa';
import { existsSync, mkdirSync, openSync, closeSync, ftruncateSync, readdirSync, readFileSync, renameSync, rmdirSync, statSync, statfsSync, unlinkSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { findBinary } from './bwrap.js';

/** The default limit when the policy says nothing (filesystem_policy.limits.workdir). */
export const DEFAULT_WORKDIR_LIMIT = 20 * 1024 ** 3;
/** ext4 with a journal needs some room; below this the image would be mostly metadata. */
export const MIN_WORKDIR_LIMIT = 16 * 1024 ** 2;

export interface WorkdirDiskStatus {
  mode: 'loop' | 'unlimited';
  workdir: string;
  /** The image backing the workdir (mode loop). */
  image?: string;
  limit_bytes?: number;
  used_bytes?: number;
  avail_bytes?: number;
  /** Why the workdir has no limit (mode unlimited). */
  reason?: string;
  /** Where the workdir's earlier contents were kept after they were copied into the image. */
  kept_aside?: string;
}

export interface WorkdirDiskOptions {
  workdir: string;
  image: string;
  /** Bytes, or 'none' for no limit. */
  limit: number | 'none';
  /** Whether this process is root (mounting needs it). */
  root: boolean;
  now?: () => number;
}

/** Decode a mountinfo path field (spaces, tabs, newlines and backslashes are octal-escaped). */
function unescapeMountPath(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(Number.parseInt(o, 8)));
}

/** The source device of the mount at exactly `path` in this mount namespace, if one is there. */
export function mountAt(path: string, mountinfo = '/proc/self/mountinfo'): { source: string; fstype: string } | undefined {
  let text: string;
  try {
    text = readFileSync(mountinfo, 'utf8');
  } catch {
    return undefined;
  }
  let found: { source: string; fstype: string } | undefined;
  for (const line of text.split('\n')) {
    const f = line.split(' ');
    if (f.length < 10) continue;
    const sep = f.indexOf('-', 6);
    if (sep < 0) continue;
    // The last mount listed on a point is the one on top.
    if (unescapeMountPath(f[4]!) === path) found = { fstype: f[sep + 1]!, source: unescapeMountPath(f[sep + 2]!) };
  }
  return found;
}

/** Used and available bytes of the filesystem at `path`. */
export function diskUsage(path: string): { total: number; used: number; avail: number } | undefined {
  try {
    const s = statfsSync(path);
    const total = s.blocks * s.bsize;
    return { total, used: (s.blocks - s.bfree) * s.bsize, avail: s.bavail * s.bsize };
  } catch {
    return undefined;
  }
}

/** `st` with current usage (statfs only: no mount table read, cheap enough for every meter sample). */
export function withUsage(st: WorkdirDiskStatus): WorkdirDiskStatus {
  const u = diskUsage(st.workdir);
  if (!u) return st;
  return { ...st, used_bytes: u.used, avail_bytes: u.avail, ...(st.mode === 'loop' ? { limit_bytes: u.total } : {}) };
}

/** The workdir's current state, with usage (no side effects). */
export function workdirDiskStatus(workdir: string, image: string, reason?: string): WorkdirDiskStatus {
  const m = mountAt(workdir);
  if (m && m.fstype === 'ext4' && m.source.startsWith('/dev/loop')) return withUsage({ mode: 'loop', workdir, image });
  return withUsage({ mode: 'unlimited', workdir, reason: reason ?? 'no image is mounted at the workdir' });
}

async function run(cmd: string, args: string[]): Promise<void> {
  const r = await execa(cmd, args, { reject: false, timeout: 60_000, stdin: 'ignore' });
  if (r.exitCode !== 0) throw new Error(`${cmd} ${args.join(' ')}: ${String(r.stderr || r.stdout || `exit ${r.exitCode}`).trim()}`);
}

async function unmount(path: string): Promise<void> {
  const umount = findBinary('umount') ?? 'umount';
  try {
    await run(umount, [path]);
  } catch {
    // Busy (a process still has a file open): detach now, the kernel frees it when the last one closes.
    await run(umount, ['-l', path]).catch(() => undefined);
  }
}

/**
 * Make sure the workdir is the mounted image of the given size. Returns what it is now; never
 * throws for a machine that cannot do it (the reason is in the status), only leaves the workdir
 * as it was.
 */
export async function ensureWorkdirDisk(opts: WorkdirDiskOptions): Promise<WorkdirDiskStatus> {
  const { workdir, image } = opts;
  if (opts.limit === 'none') return workdirDiskStatus(workdir, image, 'filesystem_policy.limits.workdir is none');
  if (!opts.root) return workdirDiskStatus(workdir, image, 'the supervisor is not root (mounting the workdir image needs root)');
  const current = mountAt(workdir);
  if (current?.source.startsWith('/dev/loop')) return workdirDiskStatus(workdir, image);
  const mount = findBinary('mount');
  const mkfs = findBinary('mkfs.ext4');
  if (!mount || !mkfs) {
    return workdirDiskStatus(workdir, image, `${!mount ? 'mount' : 'mkfs.ext4'} is missing (apt-get install -y ${!mount ? 'mount' : 'e2fsprogs'})`);
  }
  const limit = Math.max(MIN_WORKDIR_LIMIT, Math.floor(opts.limit / 4096) * 4096);
  let created = false;
  try {
    if (!existsSync(image)) {
      // Sparse: the image takes only what the sandbox writes (plus ~1 % metadata).
      const fd = openSync(image, 'wx', 0o600);
      try {
        ftruncateSync(fd, limit);
      } finally {
        closeSync(fd);
      }
      created = true;
      // No reserved blocks (the sandbox's uid gets the whole limit), no lost+found to clutter /sandbox.
      await run(mkfs, ['-q', '-F', '-m', '0', '-E', 'lazy_itable_init=1,lazy_journal_init=1', image]);
    }
    mkdirSync(workdir, { recursive: true, mode: 0o700 });
    const entries = readdirSync(workdir);
    let keptAside: string | undefined;
    if (entries.length > 0) {
      // Move what the workdir holds into the image: copy (as root, links as links), then keep the
      // old tree aside under a new name instead of deleting it.
      const staging = join(dirname(image), 'workdir.migrate');
      mkdirSync(staging, { recursive: true, mode: 0o700 });
      await run(mount, ['-o', 'loop,nosuid,nodev', image, staging]);
      try {
        await run(findBinary('cp') ?? 'cp', ['-a', '--', `${workdir}/.`, `${staging}/`]);
        const lostFound = join(staging, 'lost+found');
        if (!entries.includes('lost+found') && existsSync(lostFound)) rmdirSync(lostFound);
      } finally {
        await unmount(staging);
        rmdirSync(staging);
      }
      keptAside = `${workdir}.before-limit-${new Date(opts.now?.() ?? Date.now()).toISOString().replace(/[:.]/g, '-')}`;
      const mode = statSync(workdir).mode & 0o7777;
      renameSync(workdir, keptAside);
      mkdirSync(workdir, { mode });
    }
    await run(mount, ['-o', 'loop,nosuid,nodev', image, workdir]);
    const lostFound = join(workdir, 'lost+found');
    if (created && !entries.includes('lost+found') && existsSync(lostFound)) rmdirSync(lostFound);
    return { ...workdirDiskStatus(workdir, image), ...(keptAside ? { kept_aside: keptAside } : {}) };
  } catch (err) {
    if (created) {
      try {
        unlinkSync(image);
      } catch {
        /* already gone */
      }
    }
    const message = err instanceof Error ? err.message : String(err);
    return workdirDiskStatus(workdir, image, `mounting the workdir image failed: ${message}`);
  }
}

/** Unmount the image from the workdir (supervisor stop); the image and its data stay. */
export async function releaseWorkdirDisk(workdir: string): Promise<void> {
  if (mountAt(workdir)?.source.startsWith('/dev/loop')) await unmount(workdir);
}
