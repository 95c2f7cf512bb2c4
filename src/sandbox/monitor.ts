/**
 * Filesystem-violation monitor: the sandbox runs under strace, which writes one line per failed
 * write-intent call into a FIFO (a Node pipe is a socketpair and strace cannot write to it). Each
 * line becomes an `fs.violation` with the binary read from /proc/PID/exe on the host, the path
 * resolved against the directory strace decoded (-y), the errno, and the policy rule responsible.
 */
import { readlinkSync } from 'node:fs';
import { posix } from 'node:path';

/** Write-intent syscalls traced (plus open/openat/openat2, whose flags decide at parse time). */
export const TRACED_SYSCALLS = [
  'open', 'openat', 'openat2', 'creat',
  'mkdir', 'mkdirat', 'unlink', 'unlinkat', 'rmdir',
  'rename', 'renameat', 'renameat2', 'link', 'linkat', 'symlink', 'symlinkat',
  'truncate', 'chmod', 'fchmodat', 'fchmodat2', 'chown', 'fchownat', 'lchown', 'utimensat',
  'mknod', 'mknodat',
  'setxattr', 'lsetxattr', 'removexattr', 'lremovexattr',
] as const;

export function straceArgs(fifo: string): string[] {
  return [
    '-f', '-qq', '-Z', '-y', '-Y', '--seccomp-bpf',
    // `?name`: an older strace that does not know a syscall skips it instead of refusing to start.
    '-e', `trace=${TRACED_SYSCALLS.map((n) => `?${n}`).join(',')}`,
    '-e', 'signal=none',
    '-o', fifo,
    '--',
  ];
}

/** What the policy says about paths, for attributing a refusal to a rule. */
export interface PathRules {
  readOnly: string[];
  readWrite: string[];
  hidden: string[];
}

export interface FsViolation {
  pid: number;
  /** /proc/PID/exe as seen inside the sandbox, or the command name when the process already exited. */
  binary: string | undefined;
  syscall: string;
  path: string;
  /** e.g. "EROFS". */
  errno: string;
  /** Which policy entry made the path read-only, hidden or absent. */
  rule: string;
  /** 'write' or 'read' (reads are only violations for hidden paths). */
  access: 'write' | 'read';
  /** Who saw it: the strace monitor, or the kernel's Landlock audit record (landlock-audit.ts). */
  source?: 'strace' | 'landlock';
  /** Landlock only: the rights that were missing (e.g. fs.write_file) and the domain id. */
  blockers?: string[];
  domain?: string;
}

export interface ParsedStraceLine {
  pid: number;
  /** Command name strace printed (-Y), the fallback when the process is gone before /proc is read. */
  comm?: string;
  syscall: string;
  args: string[];
  errno: string;
}

const LINE_RE = /^(?:\[pid\s+)?(\d+)(?:<([^>]*)>)?\]?\s+([a-z0-9_]+)\((.*)\)\s+=\s+-1\s+([A-Z0-9]+)\b/;

/** Split strace's argument list at top-level commas (strings and braces may hold commas). */
export function splitArgs(s: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let inStr = false;
  let cur = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i]!;
    if (inStr) {
      cur += c;
      if (c === '\\') {
        cur += s[i + 1] ?? '';
        i++;
      } else if (c === '"') inStr = false;
      continue;
    }
    if (c === '"') inStr = true;
    else if (c === '{' || c === '[' || c === '(' || c === '<') depth++;
    else if (c === '}' || c === ']' || c === ')' || c === '>') depth--;
    if (c === ',' && depth === 0) {
      out.push(cur.trim());
      cur = '';
    } else cur += c;
  }
  if (cur.trim().length > 0) out.push(cur.trim());
  return out;
}

export function parseStraceLine(line: string): ParsedStraceLine | undefined {
  const m = LINE_RE.exec(line);
  if (!m) return undefined;
  return { pid: Number(m[1]), ...(m[2] ? { comm: m[2] } : {}), syscall: m[3]!, args: splitArgs(m[4]!), errno: m[5]! };
}

function unquote(arg: string | undefined): string | undefined {
  if (!arg) return undefined;
  const m = /^"((?:[^"\\]|\\.)*)"/.exec(arg);
  if (!m) return undefined;
  return m[1]!.replace(/\\(x[0-9a-fA-F]{2}|[0-7]{1,3}|.)/g, (_all, e: string) => {
    if (e.startsWith('x')) return String.fromCharCode(parseInt(e.slice(1), 16));
    if (/^[0-7]+$/.test(e)) return String.fromCharCode(parseInt(e, 8));
    return ({ n: '\n', t: '\t', r: '\r', '"': '"', '\\': '\\' } as Record<string, string>)[e] ?? e;
  });
}

/** `AT_FDCWD</sandbox>` or `3</usr/lib>` → the decoded directory. */
function dirOf(arg: string | undefined): string | undefined {
  if (!arg) return undefined;
  const m = /<([^>]*)>$/.exec(arg);
  return m ? m[1] : undefined;
}

const WRITE_FLAGS = /O_WRONLY|O_RDWR|O_CREAT|O_TRUNC|O_APPEND/;

/** Which argument holds the path, and which the directory fd, per traced syscall. */
const PATH_ARG: Record<string, { path: number; dirfd?: number }> = {
  open: { path: 0 }, creat: { path: 0 }, mkdir: { path: 0 }, unlink: { path: 0 }, rmdir: { path: 0 },
  truncate: { path: 0 }, chmod: { path: 0 }, chown: { path: 0 }, lchown: { path: 0 }, mknod: { path: 0 },
  setxattr: { path: 0 }, lsetxattr: { path: 0 }, removexattr: { path: 0 }, lremovexattr: { path: 0 },
  rename: { path: 0 }, link: { path: 1 }, symlink: { path: 1 },
  openat: { path: 1, dirfd: 0 }, openat2: { path: 1, dirfd: 0 }, mkdirat: { path: 1, dirfd: 0 },
  unlinkat: { path: 1, dirfd: 0 }, fchmodat: { path: 1, dirfd: 0 }, fchmodat2: { path: 1, dirfd: 0 },
  fchownat: { path: 1, dirfd: 0 }, utimensat: { path: 1, dirfd: 0 }, mknodat: { path: 1, dirfd: 0 },
  renameat: { path: 1, dirfd: 0 }, renameat2: { path: 1, dirfd: 0 }, linkat: { path: 3, dirfd: 2 },
  symlinkat: { path: 2, dirfd: 1 },
};

/** Errnos that mean "the sandbox refused" rather than an ordinary program error. */
const VIOLATION_ERRNOS = new Set(['EROFS', 'EACCES', 'EPERM', 'ENOENT']);

function under(path: string, prefix: string): boolean {
  const p = prefix.length > 1 ? prefix.replace(/\/+$/, '') : prefix;
  return path === p || path.startsWith(p === '/' ? '/' : `${p}/`);
}

function longestMatch(path: string, list: string[]): number {
  let best = -1;
  let bestLen = -1;
  list.forEach((entry, i) => {
    if (under(path, entry) && entry.length > bestLen) {
      best = i;
      bestLen = entry.length;
    }
  });
  return best;
}

export interface ClassifyInput {
  parsed: ParsedStraceLine;
  rules: PathRules;
  /** Reads /proc/PID/cwd when strace did not decode a directory (injectable for tests). */
  cwdOf?: (pid: number) => string | undefined;
  /**
   * Whether a sandbox path exists on the host side (the workdir behind /sandbox); undefined when
   * that cannot be told (outside the workdir). A hidden path with nothing behind it is not hidden.
   */
  existsOnHost?: (path: string) => boolean | undefined;
}

/** Decide whether a failed call is a violation, and describe it (binary filled in by the caller). */
export function classifyViolation(input: ClassifyInput): Omit<FsViolation, 'binary'> | undefined {
  const { parsed, rules } = input;
  const spec = PATH_ARG[parsed.syscall];
  if (!spec || !VIOLATION_ERRNOS.has(parsed.errno)) return undefined;
  const raw = unquote(parsed.args[spec.path]);
  if (raw === undefined) return undefined;
  let path = raw;
  if (!path.startsWith('/')) {
    const base =
      (spec.dirfd !== undefined ? dirOf(parsed.args[spec.dirfd]) : undefined) ??
      (input.cwdOf ?? procCwd)(parsed.pid);
    if (!base) return undefined;
    path = posix.join(base, path);
  }
  path = posix.normalize(path);
  let access: 'write' | 'read' = 'write';
  if (parsed.syscall === 'open' || parsed.syscall === 'openat' || parsed.syscall === 'openat2') {
    const flags = parsed.args[parsed.syscall === 'open' ? 1 : 2] ?? '';
    if (!WRITE_FLAGS.test(flags)) access = 'read';
  }
  const hidden = longestMatch(path, rules.hidden);
  if (hidden >= 0) {
    // Nothing there to hide: a read of a hidden path that does not exist behind the sandbox either
    // (the `~/.npmrc` rule over a sandbox home that has none) is the ENOENT any missing file gives.
    if (access === 'read' && parsed.errno === 'ENOENT' && input.existsOnHost?.(path) === false) return undefined;
    return { pid: parsed.pid, syscall: parsed.syscall, path, errno: parsed.errno, access, rule: `filesystem_policy.hidden[${hidden}]: ${rules.hidden[hidden]}` };
  }
  // Reads of anything else, and failures inside writable trees, are the program's own business.
  if (access === 'read') return undefined;
  if (longestMatch(path, rules.readWrite) >= 0) return undefined;
  const ro = longestMatch(path, rules.readOnly);
  const rule =
    ro >= 0
      ? `filesystem_policy.read_only[${ro}]: ${rules.readOnly[ro]}`
      : parsed.errno === 'ENOENT'
        ? 'not exposed: outside the sandbox allowlist'
        : 'read-only sandbox root';
  return { pid: parsed.pid, syscall: parsed.syscall, path, errno: parsed.errno, access, rule };
}

export function procCwd(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/cwd`);
  } catch {
    return undefined;
  }
}

export function procExe(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return undefined;
  }
}
