/**
 * The bubblewrap driver: a tmpfs root with a read-only allowlist, the workdir at /sandbox, only `lo`,
 * a seccomp denylist from the first instruction, run as an unprivileged host uid, limits through
 * cgroups, the egress bridge (127.0.0.1:3128 → the proxy's Unix socket) and the fs-violation monitor.
 *
 * Process tree (monitor on):  supervisor → prlimit → strace -u <uid> → bwrap → bwrap init → command
 * bwrap waits on --block-fd after building the namespaces, so the supervisor can read the child pid
 * (--info-fd), move it into the cgroup and start the bridge in its netns before the command runs.
 */
import { execa, type Options, type ResultPromise } from 'execa';
import {
  chmodSync,
  chownSync,
  closeSync,
  existsSync,
  fstatSync,
  lstatSync,
  mkdirSync,
  openSync,
  readFileSync,
  readdirSync,
  rmSync,
  statSync,
  writeFileSync,
  writeSync,
} from 'node:fs';
import { createReadStream } from 'node:fs';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { listenInNetns } from './netns-listener.js';
import { interceptOrFallback, loopbackOnly, type NetworkInterception, type TransparentSockets } from './transparent.js';
import { createInterface } from 'node:readline';
import { dirname, join, posix } from 'node:path';
import type { Readable, Writable } from 'node:stream';
import { NemoclawError } from '../shared/errors.js';
import { chownFd, lstatBelow, openTrustedDir, withDir } from '../shared/safe-fs.js';
import type { FilesystemPolicy, ProcessPolicy } from '../policy/types.js';
import { buildSeccompProgram, type SeccompProgram } from './seccomp.js';
import { resolveSandboxIdentity, type SandboxIdentity } from './identity.js';
import {
  createSandboxCgroup,
  detectCgroups,
  rlimitArgs,
  type AppliedLimits,
  type CgroupLayout,
  type SandboxCgroup,
} from './limits.js';
import {
  classifyViolation,
  parseStraceLine,
  procExe,
  straceArgs,
  type FsViolation,
  type PathRules,
} from './monitor.js';
import {
  SANDBOX_LANDLOCK_HELPER,
  builtLandlockHelper,
  hardRequirement,
  landlockAbi,
  landlockCompatibility,
  planLandlock,
  type LandlockReport,
} from './landlock.js';
import { kernelViolationSource, type KernelViolationSource } from './landlock-audit.js';

export const SANDBOX_WORKDIR = '/sandbox';
export const SANDBOX_NODE = '/opt/nemoclaw/node/bin/node';
export const PROXY_PORT = 3128;
export const PROXY_URL = `http://127.0.0.1:${PROXY_PORT}`;
/** Where the proxy socket appears inside the sandbox in relay-inside mode. */
const INSIDE_PROXY_SOCKET = '/run/nemoclaw/proxy.sock';

/** Trimmed /etc: only what programs need to start, resolve names and verify TLS. */
export const ETC_ALLOWLIST = [
  '/etc/ld.so.cache', '/etc/ld.so.conf', '/etc/ld.so.conf.d', '/etc/nsswitch.conf', '/etc/host.conf',
  '/etc/localtime', '/etc/protocols', '/etc/services', '/etc/mime.types', '/etc/ssl', '/etc/ca-certificates',
  '/etc/alternatives', '/etc/os-release', '/etc/debian_version', '/etc/gai.conf', '/etc/inputrc',
];
const USR_MERGE = ['/bin', '/lib', '/lib64', '/sbin', '/lib32', '/libx32'];
/** Paths the driver builds itself; policy entries naming them are already covered. */
const BUILT_IN = new Set(['/', '/proc', '/dev', '/tmp', SANDBOX_WORKDIR, '/usr', '/etc', ...USR_MERGE, '/etc/passwd', '/etc/group', '/etc/hosts', '/etc/resolv.conf']);

export type NetMode = 'bridge-outside' | 'relay-inside';

/** A host directory or file bound read-only inside (the agent's runtime, a blueprint). */
export interface ReadOnlyBind {
  source: string;
  target: string;
}

/** Where extra read-only binds may go: below these, and nowhere that shadows what the driver builds. */
export const BIND_TARGET_ROOTS = ['/opt', SANDBOX_WORKDIR];
/** Variables the driver owns: a request's env never overrides them (the proxy is the only way out). */
export const PROXY_ENV_KEYS = [
  'HTTP_PROXY', 'HTTPS_PROXY', 'ALL_PROXY', 'NO_PROXY', 'http_proxy', 'https_proxy', 'all_proxy', 'no_proxy',
  'NODE_USE_ENV_PROXY',
];

export interface SandboxLaunch {
  id: string;
  command: string[];
  /** Host directory bound read-write at /sandbox (created and chowned to the sandbox uid). */
  workdir: string;
  /** Per-sandbox runtime dir (root-only) for the FIFO, seccomp program and generated files. */
  runDir: string;
  /** Egress proxy's Unix socket (may not exist yet: connections inside then fail). */
  proxySocket: string;
  /**
   * Root (bridge-outside): hands the sandbox's 127.0.0.1:3128, a socket listening in its network
   * namespace, to the egress proxy, which accepts there itself; returns how to stop. Without it
   * each connection is relayed to `proxySocket` in this process.
   */
  attachEgress?: (listener: Server, target: { rootPid: number; port: number }) => () => Promise<void>;
  /**
   * Root (bridge-outside): every other TCP connect, DNS lookup and UDP datagram of the sandbox is
   * redirected to sockets handed to this (transparent.ts); without it, or when nft or the kernel
   * does not allow it, the sandbox stays loopback-only (`network` on the instance says which).
   */
  attachTransparent?: (sockets: TransparentSockets, target: { rootPid: number }) => () => Promise<void>;
  /** Path of `nft` (default: found in the usual bin dirs; tests inject a missing one). */
  nftBinary?: string;
  filesystem: FilesystemPolicy;
  process: ProcessPolicy;
  /** Host Node binary bound at /opt/nemoclaw/node/bin/node (skipped when a bind covers that path). */
  nodeBinary?: string;
  /** Extra environment, merged over the policy's `process.env` (never over the proxy variables). */
  env?: Record<string, string>;
  /** Extra host paths bound read-only (targets below /opt or /sandbox; see validateReadOnlyBinds). */
  readOnlyBinds?: ReadOnlyBind[];
  /** 'pipe' gives streams on the instance; 'inherit' passes the caller's stdio. */
  stdio?: 'pipe' | 'inherit';
  /** Working directory inside (default /sandbox). */
  cwd?: string;
  /** Forced network mode (default: bridge-outside when root, else relay-inside). */
  netMode?: NetMode;
  /**
   * Share the network namespace of this running sandbox (its root pid, and the mode it was started
   * in) instead of creating one: same loopback, same bridge, no second bridge. Root only (nsenter).
   */
  joinNetns?: { pid: number; netMode: NetMode };
  onViolation?: (v: FsViolation) => void;
  /** The policy's `landlock` block (`compatibility: best_effort | hard_requirement`). */
  landlock?: Record<string, unknown>;
  /** Host path of the Landlock helper (default: the one `npm run build` made); null: no Landlock layer. */
  landlockHelper?: string | null;
  /**
   * TCP ports the command may connect to (Landlock ABI 4). Default: only the bridge (3128), in the
   * loopback-only network namespace. `{ unrestricted: why }` leaves connect alone (and says why).
   */
  connectPorts?: number[] | { unrestricted: string };
  /** Transparent interception is on: the netns redirects every connect, so Landlock leaves connect alone. */
  transparentEgress?: boolean;
  /**
   * Where fs.violation comes from. 'strace': the strace monitor (root); it sees every refused call,
   * the mount layer's (EROFS, ENOENT) and Landlock's (EACCES), at ~35 µs per traced call. 'kernel':
   * Landlock's own audit records (ABI 7, root): no ptrace stop, but only what Landlock refused — the
   * mount layer refuses earlier in the same syscall and leaves no record — and auditing is on for
   * the whole host while it reads. 'auto' (default): strace where installed, else the kernel records.
   */
  violationSource?: 'auto' | 'kernel' | 'strace';
  /**
   * Test only: weaken bubblewrap's layout (extra writable binds anywhere, hidden paths not masked,
   * /proc left writable) to show that the Landlock layer alone holds. Never set by the supervisor.
   */
  weakenLayoutForTest?: { writableBinds?: ReadOnlyBind[]; exposeHidden?: boolean; procWritable?: boolean };
  /** Injected for tests. */
  cgroupLayout?: CgroupLayout;
  identity?: SandboxIdentity;
  clock?: () => number;
}

export interface ExitStatus {
  code: number | null;
  signal: string | null;
  /** Shell convention: code, or 128+signal number. */
  exitCode: number;
}

export interface SandboxInstanceInfo {
  id: string;
  rootPid: number;
  pids(): number[];
  cgroupPath?: string;
  netMode: NetMode;
  startedAt: number;
  command: string[];
  /** 'agent' for the agent's main process (exec joins its network), 'exec' for run/exec commands. */
  role?: 'agent' | 'exec';
  /** Id of the instance whose network namespace this one shares. */
  joined?: string;
}

export interface RunningSandbox extends SandboxInstanceInfo {
  stdin: Writable | null;
  stdout: Readable | null;
  stderr: Readable | null;
  identity: SandboxIdentity;
  limits: AppliedLimits;
  seccomp: Pick<SeccompProgram, 'blocked' | 'conditional' | 'instructions'>;
  monitor: boolean;
  /** The Landlock layer: ABI, rights, connect rules, scopes (or why it is off). */
  landlock: LandlockReport;
  /** Where this sandbox's fs.violation events come from. */
  violationSource: 'strace' | 'kernel' | 'none';
  /** Milliseconds from launch() to the command being released. */
  startupMs: number;
  /** Something the caller should tell the user (e.g. why a join fell back to a fresh sandbox). */
  note?: string;
  /** Transparent interception or loopback-only (undefined for a sandbox joining another's netns). */
  network?: NetworkInterception;
  wait(): Promise<ExitStatus>;
  kill(signal?: NodeJS.Signals): void;
}

const SIGNALS: Record<string, number> = {
  SIGHUP: 1, SIGINT: 2, SIGQUIT: 3, SIGILL: 4, SIGTRAP: 5, SIGABRT: 6, SIGBUS: 7, SIGFPE: 8, SIGKILL: 9,
  SIGUSR1: 10, SIGSEGV: 11, SIGUSR2: 12, SIGPIPE: 13, SIGALRM: 14, SIGTERM: 15, SIGSYS: 31, SIGXCPU: 24,
  SIGXFSZ: 25,
};

export function exitCodeOf(code: number | null, signal: string | null): number {
  if (signal) return 128 + (SIGNALS[signal] ?? 0);
  return code ?? 1;
}

/** Expand `~` to the sandbox home and drop trailing slashes. */
export function sandboxPath(p: string): string {
  let out = p.startsWith('~') ? SANDBOX_WORKDIR + p.slice(1) : p;
  out = posix.normalize(out);
  return out.length > 1 ? out.replace(/\/+$/, '') : out;
}

export function pathRules(fs: FilesystemPolicy): PathRules {
  const readWrite = [...(fs.include_workdir !== false ? [SANDBOX_WORKDIR] : []), '/tmp', ...fs.read_write.map(sandboxPath)];
  return { readOnly: fs.read_only.map(sandboxPath), readWrite, hidden: fs.hidden.map(sandboxPath) };
}

const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;

/**
 * The sandbox's whole environment: the policy's `process.env`, then the request's `extra` (e.g. the
 * agent's PATH and tokens), then the proxy variables, which nothing overrides. Nothing comes from the
 * host environment.
 */
export function sandboxEnv(policyEnv: Record<string, string>, netMode: NetMode, extra: Record<string, string> = {}): Record<string, string> {
  void netMode;
  const requested: Record<string, string> = {};
  for (const [k, v] of Object.entries(extra)) {
    if (!ENV_NAME.test(k) || typeof v !== 'string' || v.includes('\0')) {
      throw new NemoclawError('invalid_input', `sandbox environment variable ${JSON.stringify(k)} is not a NAME=string pair`, {
        nextStep: 'use names of letters, digits and _ (not starting with a digit) and string values without NUL bytes',
        exitCode: 2,
      });
    }
    if (!PROXY_ENV_KEYS.includes(k)) requested[k] = v;
  }
  return {
    ...policyEnv,
    HOME: SANDBOX_WORKDIR,
    PATH: '/opt/nemoclaw/node/bin:/usr/local/bin:/usr/bin:/bin',
    ...requested,
    HTTP_PROXY: PROXY_URL,
    HTTPS_PROXY: PROXY_URL,
    ALL_PROXY: PROXY_URL,
    http_proxy: PROXY_URL,
    https_proxy: PROXY_URL,
    all_proxy: PROXY_URL,
    NO_PROXY: 'localhost,127.0.0.1,::1',
    no_proxy: 'localhost,127.0.0.1,::1',
    NODE_USE_ENV_PROXY: '1',
  };
}

/**
 * Check extra read-only binds: absolute, existing sources; targets strictly below /opt or /sandbox,
 * without `..`, not under a hidden path and not bound twice. Returns them normalised, parents first
 * (so a nested bind lands on top of its parent).
 */
export function validateReadOnlyBinds(
  binds: unknown,
  hidden: string[] = [],
  exists: (p: string) => boolean = existsSync,
): ReadOnlyBind[] {
  if (binds === undefined) return [];
  const bad = (what: string, next: string): never => {
    throw new NemoclawError('invalid_input', `read-only bind ${what}`, { nextStep: next, exitCode: 2 });
  };
  if (!Array.isArray(binds)) return bad('list is not an array of {source, target}', 'pass readOnlyBinds as [{ "source": "/host/dir", "target": "/opt/name" }]');
  const out: ReadOnlyBind[] = [];
  const seen = new Set<string>();
  const hiddenPaths = hidden.map(sandboxPath);
  for (const b of binds as unknown[]) {
    const { source, target } = (b ?? {}) as { source?: unknown; target?: unknown };
    if (typeof source !== 'string' || typeof target !== 'string') {
      bad(`${JSON.stringify(b)} needs string "source" and "target"`, 'pass readOnlyBinds as [{ "source": "/host/dir", "target": "/opt/name" }]');
    }
    const src = source as string;
    const tgt = target as string;
    if (!src.startsWith('/') || src.includes('\0')) bad(`source "${src}" is not an absolute host path`, 'give the host path from the root, e.g. $NEMOCLAW_HOME/agents/…');
    if (!tgt.startsWith('/') || tgt.includes('\0') || tgt.split('/').includes('..')) {
      bad(`target "${tgt}" is not an absolute path without ".."`, 'give the path inside the sandbox, e.g. /opt/nemoclaw/openclaw');
    }
    const t = sandboxPath(tgt);
    if (!BIND_TARGET_ROOTS.some((r) => t.startsWith(`${r}/`))) {
      bad(
        `target "${tgt}" is outside /opt/… and /sandbox/… (it would shadow a system path or the sandbox's own layout)`,
        'bind runtimes below /opt (e.g. /opt/nemoclaw/<name>) or data below /sandbox/<dir>',
      );
    }
    if (hiddenPaths.some((h) => t === h || t.startsWith(`${h}/`) || h.startsWith(`${t}/`))) {
      bad(`target "${tgt}" overlaps a hidden path of the policy`, 'choose a target outside filesystem_policy.hidden');
    }
    if (seen.has(t)) bad(`target "${tgt}" is bound twice`, 'bind each target once');
    seen.add(t);
    if (!exists(src)) bad(`source "${src}" does not exist`, 'install the runtime or blueprint first (`nemoclaw-tui onboard`), or fix the path');
    out.push({ source: posix.normalize(src), target: t });
  }
  return out.sort((a, b) => a.target.split('/').length - b.target.split('/').length);
}

/** File descriptors handed to bwrap (indexes into the child's fd table). */
interface FdPlan {
  info: number;
  block: number;
  seccomp: number;
  passwd: number;
  group: number;
  hosts: number;
  /** /etc/resolv.conf: the supervisor's DNS responder in the sandbox's netns (transparent.ts). */
  resolv?: number;
  /**
   * `--setenv` pairs read by bwrap from this fd (`--args`), so environment values (tokens) never
   * appear in a command line that every host user can read in /proc/PID/cmdline.
   */
  env?: number;
}

/** The NUL-separated `--setenv NAME VALUE` arguments for bwrap's `--args FD`. */
export function envArgsData(env: Record<string, string>): Buffer {
  const parts: string[] = [];
  for (const [k, v] of Object.entries(env)) {
    if (k.includes('\0') || v.includes('\0')) {
      throw new NemoclawError('invalid_input', `sandbox environment variable ${JSON.stringify(k)} contains a NUL byte`, {
        nextStep: 'remove the NUL byte from process.env in the policy (or from the request)',
        exitCode: 2,
      });
    }
    parts.push('--setenv', k, v);
  }
  return Buffer.from(parts.map((x) => `${x}\0`).join(''));
}

/** Host paths bound into the sandbox (as seen by the inner bwrap: staged ones live under STAGE). */
interface SourcePlan {
  workdir: string;
  node?: string;
  proxyDir?: string;
  /** Extra read-only binds (sources as seen by the inner bwrap). */
  binds?: ReadOnlyBind[];
  /** An empty root-owned file with mode 000, bound over hidden files (opening one fails EACCES). */
  hiddenMask?: string;
  /** The Landlock helper, bound read-only at SANDBOX_LANDLOCK_HELPER. */
  landlock?: string;
  /** Test only (weakenLayoutForTest): writable binds anywhere. */
  weakBinds?: ReadOnlyBind[];
}

/**
 * Where an outer, root-owned bwrap mount namespace exposes the workdir, the Node runtime and the
 * proxy dir to the unprivileged inner bwrap: they usually sit under 0700 root directories
 * ($NEMOCLAW_HOME, /root) that the sandbox uid cannot traverse, and bwrap resolves bind sources by
 * path (even --bind-fd goes through realpath).
 */
const STAGE = '/tmp/.nemoclaw-stage';

/** Where each host source appears inside the staging namespace. */
export function stagedSources(src: SourcePlan): SourcePlan {
  return {
    workdir: `${STAGE}/sandbox`,
    ...(src.node ? { node: `${STAGE}/node` } : {}),
    ...(src.proxyDir ? { proxyDir: `${STAGE}/proxy` } : {}),
    ...(src.binds ? { binds: src.binds.map((b, i) => ({ source: `${STAGE}/bind-${i}`, target: b.target })) } : {}),
    ...(src.hiddenMask ? { hiddenMask: `${STAGE}/hidden-mask` } : {}),
    ...(src.landlock ? { landlock: `${STAGE}/landlock` } : {}),
    ...(src.weakBinds ? { weakBinds: src.weakBinds.map((b, i) => ({ source: `${STAGE}/weak-${i}`, target: b.target })) } : {}),
  };
}

export function buildStageArgs(src: SourcePlan, identity: SandboxIdentity, inner: string[]): { args: string[]; staged: SourcePlan } {
  const staged = stagedSources(src);
  // bwrap creates missing parents 0700, so the stage dir is made traversable explicitly.
  const args = ['--dev-bind', '/', '/', '--tmpfs', '/tmp', '--perms', '0755', '--dir', STAGE, '--bind', src.workdir, staged.workdir];
  if (src.node && staged.node) args.push('--ro-bind', src.node, staged.node);
  if (src.proxyDir && staged.proxyDir) args.push('--ro-bind', src.proxyDir, staged.proxyDir);
  (src.binds ?? []).forEach((b, i) => args.push('--ro-bind', b.source, staged.binds![i]!.source));
  if (src.hiddenMask && staged.hiddenMask) args.push('--ro-bind', src.hiddenMask, staged.hiddenMask);
  if (src.landlock && staged.landlock) args.push('--ro-bind', src.landlock, staged.landlock);
  (src.weakBinds ?? []).forEach((b, i) => args.push('--bind', b.source, staged.weakBinds![i]!.source));
  // Its own PID namespace: when this (root) bwrap dies with the supervisor, its init is SIGKILLed
  // and the kernel tears down everything below it. The unprivileged inner bwrap cannot be relied
  // on for that: its uid switch clears the parent-death signal.
  args.push('--unshare-pid', '--die-with-parent', '--', findBinary('setpriv') ?? 'setpriv',
    `--reuid=${identity.uid}`, `--regid=${identity.gid}`, '--clear-groups', '--inh-caps=-all', '--bounding-set=-all',
    // Changing uid clears the parent-death signal the outer bwrap set; set it again after the switch.
    '--pdeathsig', 'KILL', '--',
    ...inner);
  return { args, staged };
}

/** The bwrap argument vector. Pure: everything it needs is passed in. */
export function buildBwrapArgs(opts: {
  fd: FdPlan;
  src: SourcePlan;
  identity: SandboxIdentity;
  filesystem: FilesystemPolicy;
  env: Record<string, string>;
  cwd: string;
  command: string[];
  netMode: NetMode;
  /** Keep the network namespace bwrap starts in (set up by the caller with nsenter). */
  shareNet?: boolean;
  /** Host directory behind /sandbox, to find hidden paths inside it. */
  workdirHost?: string;
  exists?: (p: string) => boolean;
  isDir?: (p: string) => boolean;
  /** lstat below the host workdir without following links (default: safe-fs lstatBelow). */
  lstatInWorkdir?: (workdir: string, rel: string) => { isSymbolicLink(): boolean; isDirectory(): boolean } | undefined;
  /** Host symlinks (usr-merge links, /etc/os-release…) cannot be bind targets; they are skipped. */
  isSymlink?: (p: string) => boolean;
  /** The Landlock helper's argv, run just before the command (see landlock.ts). */
  landlockArgv?: string[];
  /** Test only: see SandboxLaunch.weakenLayoutForTest. */
  weaken?: { exposeHidden?: boolean; procWritable?: boolean };
}): string[] {
  const exists = opts.exists ?? existsSync;
  const { fd, src, filesystem } = opts;
  const hidden = filesystem.hidden.map(sandboxPath);
  const isHidden = (p: string): boolean => hidden.some((h) => p === h || p.startsWith(`${h}/`));
  const a: string[] = [
    '--unshare-all', ...(opts.shareNet ? ['--share-net'] : []), '--unshare-user', '--disable-userns', '--die-with-parent', '--new-session',
    '--clearenv', '--cap-drop', 'ALL',
    '--uid', String(opts.identity.uid), '--gid', String(opts.identity.gid),
    '--hostname', 'sandbox',
    '--info-fd', String(fd.info), '--block-fd', String(fd.block), '--seccomp', String(fd.seccomp),
    '--tmpfs', '/',
    '--ro-bind', '/usr', '/usr',
  ];
  for (const link of USR_MERGE) {
    if (exists(`/usr${link}`)) a.push('--symlink', `usr${link}`, link);
  }
  a.push('--dir', '/etc');
  for (const p of ETC_ALLOWLIST) if (!isHidden(p)) a.push('--ro-bind-try', p, p);
  a.push('--ro-bind-data', String(fd.passwd), '/etc/passwd');
  a.push('--ro-bind-data', String(fd.group), '/etc/group');
  a.push('--ro-bind-data', String(fd.hosts), '/etc/hosts');
  if (fd.resolv !== undefined) a.push('--ro-bind-data', String(fd.resolv), '/etc/resolv.conf');
  const binds = src.binds ?? [];
  const nodeCovered = binds.some((b) => SANDBOX_NODE === b.target || SANDBOX_NODE.startsWith(`${b.target}/`));
  if (src.node !== undefined && !nodeCovered) a.push('--ro-bind', src.node, SANDBOX_NODE);
  if (src.landlock !== undefined) a.push('--ro-bind', src.landlock, SANDBOX_LANDLOCK_HELPER);
  // /proc read-only: no write to /proc/PID/mem of a sibling (or of the sandbox's pid 1), to
  // oom_score_adj, coredump_filter… Reading stays (ps, top, /proc/self/fd reopen of a pipe work).
  a.push('--proc', '/proc', ...(opts.weaken?.procWritable ? [] : ['--remount-ro', '/proc']), '--dev', '/dev', '--tmpfs', '/tmp');
  if (filesystem.include_workdir !== false) a.push('--bind', src.workdir, SANDBOX_WORKDIR);
  else a.push('--dir', SANDBOX_WORKDIR);
  // After the workdir (a target may sit below /sandbox), before the hidden masks; parents first.
  for (const b of binds) a.push('--ro-bind', b.source, b.target);
  for (const b of src.weakBinds ?? []) a.push('--bind', b.source, b.target);
  for (const raw of filesystem.read_only) {
    const p = sandboxPath(raw);
    if (BUILT_IN.has(p) || p.startsWith('/proc/') || p.startsWith('/dev/') || p.startsWith(`${SANDBOX_WORKDIR}/`)) continue;
    if (isHidden(p) || (opts.isSymlink ?? isSymlink)(p)) continue;
    a.push('--ro-bind-try', p, p);
  }
  for (const raw of filesystem.read_write) {
    const p = sandboxPath(raw);
    if (BUILT_IN.has(p) || p.startsWith('/proc/') || p.startsWith('/dev/') || p.startsWith('/tmp/') || p.startsWith(`${SANDBOX_WORKDIR}/`)) continue;
    if (isHidden(p) || (opts.isSymlink ?? isSymlink)(p)) continue;
    a.push('--bind-try', p, p);
  }
  // A hidden path inside something bound (e.g. ~/.ssh in the workdir) is masked: an empty read-only
  // tmpfs over a directory (what was in it is gone: ENOENT), and over a file an empty file nobody may
  // open (EACCES), so a read attempt fails visibly and the monitor reports it, where /dev/null
  // would have read as empty and gone unnoticed.
  const bound = [
    ...filesystem.read_only.map(sandboxPath),
    ...filesystem.read_write.map(sandboxPath),
    ...ETC_ALLOWLIST,
  ];
  for (const h of opts.weaken?.exposeHidden ? [] : hidden) {
    let host: string | undefined;
    if (h.startsWith(`${SANDBOX_WORKDIR}/`) && opts.workdirHost) {
      // The sandbox owns everything below the workdir: look without following its links (a link
      // there masks nothing on the host, and root must not stat where it points).
      const st = (opts.lstatInWorkdir ?? lstatBelow)(opts.workdirHost, h.slice(SANDBOX_WORKDIR.length));
      if (!st || st.isSymbolicLink()) continue;
      if (st.isDirectory()) a.push('--tmpfs', h, '--remount-ro', h);
      else a.push('--ro-bind', src.hiddenMask ?? '/dev/null', h);
      continue;
    } else if (h.startsWith('/usr/') || bound.some((b) => h.startsWith(`${b}/`))) host = h;
    if (!host || !exists(host)) continue;
    if ((opts.isDir ?? isDirectory)(host)) a.push('--tmpfs', h, '--remount-ro', h);
    else a.push('--ro-bind', src.hiddenMask ?? '/dev/null', h);
  }
  if (opts.netMode === 'relay-inside' && src.proxyDir !== undefined) {
    // Read-only: connecting to a Unix socket needs no write access to its mount, and the sandbox
    // must not be able to replace the socket (or plant files) in the supervisor's directory.
    a.push('--ro-bind', src.proxyDir, dirname(INSIDE_PROXY_SOCKET));
  }
  if (fd.env !== undefined) a.push('--args', String(fd.env));
  else for (const [k, v] of Object.entries(opts.env)) a.push('--setenv', k, v);
  a.push('--remount-ro', '/');
  a.push('--chdir', opts.cwd);
  a.push('--');
  if (opts.netMode === 'relay-inside' && !opts.shareNet) {
    // The relay must run inside the netns; the script is fixed text, the command goes as "$@".
    a.push(
      '/bin/sh', '-c',
      'socat TCP-LISTEN:3128,bind=127.0.0.1,fork,reuseaddr,backlog=512 UNIX-CONNECT:' +
        INSIDE_PROXY_SOCKET + ' & i=0; while [ $i -lt 200 ] && ! grep -q ":0C38 00000000:0000 0A" /proc/net/tcp; do i=$((i+1)); sleep 0.01; done; exec "$@"',
      'nemoclaw-relay',
    );
  }
  a.push(...(opts.landlockArgv ?? []), ...opts.command);
  return a;
}

/** Each connection accepted on `listener` piped to a new connection to the Unix socket `path`. */
function relayToUnixSocket(listener: Server, path: string): () => Promise<void> {
  const open = new Set<Socket>();
  const relay = createServer({ noDelay: true, allowHalfOpen: true }, (client) => {
    const upstream = netConnect(path);
    open.add(client);
    client.on('close', () => open.delete(client));
    const end = (): void => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.pipe(upstream);
    upstream.pipe(client);
  });
  relay.on('error', () => undefined);
  relay.listen(listener);
  return () =>
    new Promise<void>((resolve) => {
      for (const c of open) c.destroy();
      relay.close(() => resolve());
    });
}

function isSymlink(p: string): boolean {
  try {
    return lstatSync(p).isSymbolicLink();
  } catch {
    return false;
  }
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function syntheticPasswd(id: SandboxIdentity): { passwd: string; group: string } {
  return {
    passwd: `root:x:0:0:root:/root:/usr/sbin/nologin\nsandbox:x:${id.uid}:${id.gid}:nemoclaw sandbox:${SANDBOX_WORKDIR}:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n`,
    group: `root:x:0:\nsandbox:x:${id.gid}:\nnogroup:x:65534:\n`,
  };
}

const HOSTS = '127.0.0.1\tlocalhost sandbox\n::1\tlocalhost ip6-localhost ip6-loopback\n';
/**
 * Written, not left to each resolver's default: some (Rust's hickory, for one) refuse to resolve
 * without the file, and a client that never connects is one nobody sees. 127.0.0.1:53 is the
 * supervisor's responder under transparent interception; loopback-only, it refuses at once.
 */
const RESOLV_CONF = 'nameserver 127.0.0.1\noptions timeout:2 attempts:2\n';

function isRoot(): boolean {
  return typeof process.getuid === 'function' && process.getuid() === 0;
}

/** TIME_WAIT sockets the sandbox's netns keeps at most (see NetnsListenOptions.maxTimeWait). */
export const SANDBOX_MAX_TIME_WAIT = 256;

/** Buckets of the sandbox's own TCP connection hash (the kernel rounds up to a power of two). */
export const SANDBOX_TCP_EHASH_BUCKETS = 4096;

/**
 * Prefix that gives the sandbox's network namespace a TCP connection hash of its own. Every
 * identity lookup reads the sandbox's /proc/net/tcp, which walks the whole hash of its netns: the
 * host's (262,144 buckets on this kind of machine, ~2 ms per read however few sockets there are)
 * unless the netns was created with `net.ipv4.tcp_child_ehash_entries` set (Linux 6.1+). That
 * sysctl is read from the netns that creates the new one, so the launch chain runs in a fresh,
 * empty netns where it is set, and bwrap's --unshare-net creates the sandbox's from there. On an
 * older kernel the write fails and the sandbox shares the host's hash: slower, same answers.
 * The script is fixed text; the command follows as "$@".
 */
function privateConnectionHash(): string[] {
  return [
    findBinary('unshare') ?? 'unshare', '--net', '--',
    '/bin/sh', '-c', `echo ${SANDBOX_TCP_EHASH_BUCKETS} > /proc/sys/net/ipv4/tcp_child_ehash_entries 2>/dev/null; exec "$@"`, 'nemoclaw-netns',
  ];
}

/** All descendants of `root` (inclusive), by scanning /proc/*\/stat. */
/**
 * Prefix for every long-lived process the supervisor starts for a sandbox (the prlimit → strace →
 * bwrap chain): the kernel SIGKILLs it when the supervisor dies, even by
 * SIGKILL or OOM, so no agent outlives its supervisor unwatched. The signal survives the execs down
 * the chain; bwrap's --die-with-parent carries it on into the sandbox.
 */
function dieWithSupervisor(...command: string[]): [string, string[]] {
  return [findBinary('setpriv') ?? 'setpriv', ['--pdeathsig', 'KILL', '--', ...command]];
}

/**
 * The host pid of the process under `ancestor` whose pid one namespace down is `nsPid`
 * (/proc/PID/status NSpid lists the pid in each namespace, outermost first).
 */
export function hostPidOf(ancestor: number | undefined, nsPid: number): number | undefined {
  if (ancestor === undefined) return undefined;
  for (const pid of descendants(ancestor)) {
    try {
      const m = /^NSpid:\s+(.+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      const ids = m ? m[1]!.trim().split(/\s+/).map(Number) : [];
      if (ids.length >= 2 && ids[1] === nsPid) return pid;
    } catch {
      /* exited */
    }
  }
  return undefined;
}

export function descendants(root: number): number[] {
  const children = new Map<number, number[]>();
  let entries: string[] = [];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  for (const e of entries) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const stat = readFileSync(`/proc/${e}/stat`, 'utf8');
      const after = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      const ppid = Number(after[1]);
      const list = children.get(ppid) ?? [];
      list.push(Number(e));
      children.set(ppid, list);
    } catch {
      /* exited */
    }
  }
  const out: number[] = [];
  const stack = [root];
  while (stack.length > 0) {
    const p = stack.pop()!;
    out.push(p);
    stack.push(...(children.get(p) ?? []));
  }
  return out;
}

export interface SandboxDriver {
  readonly name: string;
  launch(spec: SandboxLaunch): Promise<RunningSandbox>;
}

export function createBwrapDriver(): SandboxDriver {
  return { name: 'bubblewrap', launch: launchBwrap };
}

const BIN_DIRS = ['/usr/local/bin', '/usr/bin', '/bin', '/usr/sbin', '/sbin'];

/** Absolute path of a host tool (the sandbox gets an empty environment, so no PATH lookup). */
export function findBinary(cmd: string): string | undefined {
  for (const d of BIN_DIRS) {
    const p = join(d, cmd);
    if (existsSync(p)) return p;
  }
  return undefined;
}

function hasCommand(cmd: string): boolean {
  return findBinary(cmd) !== undefined;
}

export async function launchBwrap(spec: SandboxLaunch): Promise<RunningSandbox> {
  const now = spec.clock ?? Date.now;
  const t0 = performance.now();
  if (spec.command.length === 0) {
    throw new NemoclawError('invalid_input', 'no command to run in the sandbox', {
      nextStep: 'pass the command after "--", e.g. `nemoclaw-tui run -- node agent.js`',
      exitCode: 2,
    });
  }
  if (!hasCommand('bwrap')) {
    throw new NemoclawError('prerequisite_missing', 'bubblewrap (bwrap) is not installed', {
      nextStep: 'apt-get install -y bubblewrap   (or run `nemoclaw-tui doctor --fix`)',
    });
  }
  const root = isRoot();
  const readOnlyBinds = validateReadOnlyBinds(spec.readOnlyBinds, spec.filesystem.hidden);
  const env = sandboxEnv(spec.process.env ?? {}, spec.netMode ?? (root ? 'bridge-outside' : 'relay-inside'), spec.env ?? {});
  if (spec.joinNetns && !root) {
    throw new NemoclawError('prerequisite_missing', "joining a running sandbox's network namespace needs a root supervisor", {
      nextStep: 'run the supervisor as root (`sudo nemoclaw-tui up`), or run the command in a sandbox of its own',
    });
  }
  const netMode: NetMode = spec.joinNetns?.netMode ?? spec.netMode ?? (root ? 'bridge-outside' : 'relay-inside');
  const wantMonitor = spec.filesystem.monitor !== false;
  const landlock = await prepareLandlock(spec, root, netMode, wantMonitor);
  const kernel = landlock.kernel;
  const monitor = wantMonitor && root && hasCommand('strace') && !kernel;
  const identity = spec.identity ?? (root ? resolveSandboxIdentity(spec.process.run_as_user) : currentIdentity());
  const instDir = join(spec.runDir, `sbx-${spec.id}`);
  mkdirSync(instDir, { recursive: true, mode: 0o700 });

  // Workdir: owned by the sandbox uid, so the sandbox can write it and nothing else.
  // Its parents are the supervisor's; the workdir itself is opened without following a link (the
  // sandbox cannot replace it, but `run --workdir` may name anything) and chowned through that fd.
  mkdirSync(spec.workdir, { recursive: true, mode: 0o700 });
  if (root) {
    withDir(openTrustedDir(spec.workdir), (fd) => {
      const st = fstatSync(fd);
      if (st.uid !== identity.uid) chownFd(fd, { uid: identity.uid, gid: identity.gid });
    });
  }

  const seccomp = buildSeccompProgram({
    blockUnixSockets: netMode === 'bridge-outside',
    extraBlocked: spec.process.seccomp?.block ?? [],
    allowed: spec.process.seccomp?.allow ?? [],
  });
  const files = syntheticPasswd(identity);
  const write = (name: string, data: string | Buffer): string => {
    const p = join(instDir, name);
    writeFileSync(p, data, { mode: 0o600 });
    return p;
  };
  const opened: number[] = [];
  const open = (p: string, flags = 'r'): number => {
    const fd = openSync(p, flags);
    opened.push(fd);
    return fd;
  };
  const blockFifo = join(instDir, 'block.fifo');
  const straceFifo = join(instDir, 'strace.fifo');
  await mkfifo(blockFifo);
  if (monitor) await mkfifo(straceFifo);

  // The child's fd table: 0-2 stdio, 3 info (pipe), then files opened here.
  const hostFds: Array<number | 'pipe' | 'inherit' | 'ignore'> = [];
  const stdioMode = spec.stdio ?? 'pipe';
  hostFds.push(stdioMode === 'inherit' ? 'inherit' : 'pipe', stdioMode === 'inherit' ? 'inherit' : 'pipe', stdioMode === 'inherit' ? 'inherit' : 'pipe');
  const place = (fd: number | 'pipe'): number => {
    hostFds.push(fd);
    return hostFds.length - 1;
  };
  const blockFd = open(blockFifo, 'r+'); // O_RDWR: opening does not wait for a writer
  const fdPlan: FdPlan = {
    info: place('pipe'),
    block: place(blockFd),
    seccomp: place(open(write('seccomp.bpf', seccomp.bytes))),
    passwd: place(open(write('passwd', files.passwd))),
    group: place(open(write('group', files.group))),
    hosts: place(open(write('hosts', HOSTS))),
    resolv: place(open(write('resolv.conf', RESOLV_CONF))),
    env: place(open(write('env.args', envArgsData(env)))),
  };
  const hostSrc: SourcePlan = { workdir: spec.workdir };
  if (spec.nodeBinary) hostSrc.node = spec.nodeBinary;
  if (readOnlyBinds.length > 0) hostSrc.binds = readOnlyBinds;
  if (landlock.argv) hostSrc.landlock = landlock.helper;
  if (spec.weakenLayoutForTest?.writableBinds) hostSrc.weakBinds = spec.weakenLayoutForTest.writableBinds;
  if (spec.filesystem.hidden.length > 0) {
    const mask = write('hidden-mask', '');
    chmodSync(mask, 0o000);
    hostSrc.hiddenMask = mask;
  }
  if (netMode === 'relay-inside') {
    mkdirSync(dirname(spec.proxySocket), { recursive: true });
    hostSrc.proxyDir = dirname(spec.proxySocket);
  }
  const stagedSrc: SourcePlan = root ? stagedSources(hostSrc) : hostSrc;
  const bwrapArgs = buildBwrapArgs({
    fd: fdPlan,
    src: stagedSrc,
    identity,
    filesystem: spec.filesystem,
    env,
    cwd: spec.cwd ?? SANDBOX_WORKDIR,
    command: spec.command,
    netMode,
    ...(spec.joinNetns ? { shareNet: true } : {}),
    workdirHost: spec.workdir,
    ...(landlock.argv ? { landlockArgv: landlock.argv } : {}),
    ...(spec.weakenLayoutForTest ? { weaken: spec.weakenLayoutForTest } : {}),
  });

  // Limits: a cgroup per instance, else rlimits through prlimit.
  const layout = spec.cgroupLayout ?? detectCgroups();
  const wanted = spec.process.limits ?? {};
  const anyLimit = wanted.pids !== undefined || wanted.memory !== undefined || wanted.cpu !== undefined;
  let cgroup: SandboxCgroup | undefined;
  if (root && anyLimit) cgroup = createSandboxCgroup(layout, `${spec.id}`, wanted);
  const limits: AppliedLimits = cgroup?.applied ?? { via: anyLimit ? 'rlimit' : 'none', notEnforced: [], cgroupPaths: [] };

  const argv: string[] = [...rlimitArgs(wanted, limits), '--'];
  if (monitor) argv.push(findBinary('strace')!, ...straceArgs(straceFifo));
  const bwrap = findBinary('bwrap')!;
  if (root) argv.push(bwrap, ...buildStageArgs(hostSrc, identity, [bwrap, ...bwrapArgs]).args);
  else argv.push(bwrap, ...bwrapArgs);

  let released = false;
  const fromStrace = (v: FsViolation): void => spec.onViolation?.({ ...v, source: 'strace' });
  const violations: Promise<void> = monitor
    ? readViolations(straceFifo, pathRules(spec.filesystem), fromStrace, () => released, spec.workdir)
    : Promise.resolve();

  let child: ResultPromise;
  try {
    const options = {
      stdio: hostFds,
      reject: false,
      buffer: false,
      stripFinalNewline: false,
      env: {},
      extendEnv: false,
      cleanup: true,
    } as unknown as Options;
    const prlimit = findBinary('prlimit') ?? 'prlimit';
    const chain = spec.joinNetns
      ? [findBinary('nsenter') ?? 'nsenter', `--net=/proc/${spec.joinNetns.pid}/ns/net`, '--', prlimit, ...argv]
      : root && netMode === 'bridge-outside'
        ? [...privateConnectionHash(), prlimit, ...argv]
        : [prlimit, ...argv];
    child = execa(...dieWithSupervisor(...chain), options);
  } finally {
    for (const fd of opened) if (fd !== blockFd) closeSync(fd);
  }

  const cleanups: Array<() => Promise<void> | void> = [];
  const exited = (child as unknown as Promise<{ exitCode?: number; signal?: string }>).then(
    (r) => r,
    () => ({ exitCode: 1, signal: undefined }),
  );

  // Until the command runs, stderr is bubblewrap's (or strace's): keep it for error messages.
  let setupErr = '';
  const errStream = (child as unknown as { stderr: Readable | null }).stderr;
  const collect = (d: Buffer): void => {
    if (setupErr.length < 2000) setupErr += d.toString();
  };
  errStream?.on('data', collect);

  const fail = async (message: string, next: string): Promise<never> => {
    try {
      child.kill('SIGKILL');
    } catch {
      /* gone */
    }
    closeSync(blockFd);
    await exited;
    errStream?.off('data', collect);
    if (setupErr.trim()) message += `: ${setupErr.trim()}`;
    if (monitor) await drainFifo(straceFifo, violations);
    for (const c of cleanups.reverse()) await c();
    await cgroup?.remove();
    rmSync(instDir, { recursive: true, force: true });
    throw new NemoclawError('internal', message, { nextStep: next });
  };

  const infoStream = (child as unknown as { stdio: Array<Readable | null> }).stdio[fdPlan.info];
  const reportedPid = await readChildPid(infoStream ?? null, exited);
  // Staged as root, the inner bwrap runs in the staging PID namespace and reports its child's pid
  // as seen there; signals, cgroups and /proc need the host's.
  const childPid = reportedPid !== undefined && root ? hostPidOf(child.pid, reportedPid) : reportedPid;
  if (childPid === undefined) {
    return fail(
      'the sandbox did not start (bubblewrap exited before reporting its child pid)',
      'run `nemoclaw-tui doctor` to check bubblewrap, user namespaces and strace',
    );
  }
  cgroup?.addPid(childPid);
  if (kernel) {
    // Before the release: the helper's first act inside is the probe that registers its domain.
    cleanups.push(
      kernel.subscribe({ rootPid: childPid, rules: pathRules(spec.filesystem), helperInside: SANDBOX_LANDLOCK_HELPER, emit: (v) => spec.onViolation?.(v) }),
    );
  }

  // A joined sandbox uses the listener already there in the namespace it shares.
  let network: NetworkInterception | undefined;
  if (netMode === 'bridge-outside' && !spec.joinNetns) {
    let listener: Server;
    try {
      listener = await listenInNetns(childPid, PROXY_PORT, { nsenter: findBinary('nsenter') ?? 'nsenter', maxTimeWait: SANDBOX_MAX_TIME_WAIT });
    } catch (err) {
      return fail(
        `the egress listener did not start in the sandbox's network namespace: ${err instanceof Error ? err.message : String(err)}`,
        'run `nemoclaw-tui doctor` (nsenter is needed)',
      );
    }
    if (spec.attachEgress) {
      const detach = spec.attachEgress(listener, { rootPid: childPid, port: PROXY_PORT });
      cleanups.push(detach);
    } else {
      const stop = relayToUnixSocket(listener, spec.proxySocket);
      cleanups.push(stop);
    }
    // Before the command runs: its first connect is already intercepted (or it is loopback-only).
    if (spec.attachTransparent) {
      const t = await interceptOrFallback(childPid, {
        attach: spec.attachTransparent,
        find: findBinary,
        nsenter: findBinary('nsenter') ?? 'nsenter',
        ...(spec.nftBinary ? { nft: spec.nftBinary } : {}),
      });
      network = t.network;
      if (t.detach) cleanups.push(t.detach);
      // Connect was left to the netns for interception; when that fell back, say what holds instead.
      if (network.mode !== 'transparent' && landlock.report.connect === 'unrestricted') {
        landlock.report.connect_reason = `transparent interception was planned but is off (${network.reason ?? network.summary}): the loopback-only netns is what limits connect`;
      }
    } else network = loopbackOnly('the egress proxy does not take intercepted connections here');
  } else if (!spec.joinNetns) {
    network = loopbackOnly(root ? `network mode ${netMode}` : 'the supervisor is not root (transparent interception needs root)');
  }

  // Release the command.
  errStream?.off('data', collect);
  writeSync(blockFd, 'x');
  closeSync(blockFd);
  released = true;
  const startupMs = performance.now() - t0;
  const startedAt = now();

  const waitPromise: Promise<ExitStatus> = (async () => {
    const r = await exited;
    if (monitor) await drainFifo(straceFifo, violations);
    for (const c of cleanups.reverse()) await c();
    await cgroup?.remove();
    rmSync(instDir, { recursive: true, force: true });
    const signal = r.signal ?? null;
    const code = r.exitCode ?? null;
    return { code, signal, exitCode: exitCodeOf(code, signal) };
  })();

  const sub = child as unknown as { stdin: Writable | null; stdout: Readable | null; stderr: Readable | null; pid?: number };
  return {
    id: spec.id,
    rootPid: childPid,
    pids: () => (cgroup ? cgroup.pids() : descendants(childPid)),
    ...(cgroup?.path ? { cgroupPath: cgroup.path } : {}),
    netMode,
    startedAt,
    command: [...spec.command],
    stdin: sub.stdin,
    stdout: sub.stdout,
    stderr: sub.stderr,
    identity,
    limits,
    seccomp: { blocked: seccomp.blocked, conditional: seccomp.conditional, instructions: seccomp.instructions },
    monitor,
    landlock: landlock.report,
    violationSource: monitor ? 'strace' : kernel ? 'kernel' : 'none',
    startupMs,
    ...(network ? { network } : {}),
    wait: () => waitPromise,
    kill(signal: NodeJS.Signals = 'SIGTERM'): void {
      // The sandbox's pid 1 (bwrap's init) ignores signals from outside its namespace except SIGKILL,
      // so the signal goes to every process under it; SIGKILL also takes the init down.
      for (const pid of descendants(childPid)) {
        if (pid === childPid && signal !== 'SIGKILL') continue;
        try {
          process.kill(pid, signal);
        } catch {
          /* already gone */
        }
      }
    },
  };
}

/**
 * The Landlock layer for one launch: the helper's argv (undefined when off), the report, and the
 * kernel's violation source when it is readable. hard_requirement refuses to start without it.
 */
async function prepareLandlock(
  spec: SandboxLaunch,
  root: boolean,
  netMode: NetMode,
  wantLog: boolean,
): Promise<{ argv: string[] | undefined; report: LandlockReport; helper: string | undefined; kernel: KernelViolationSource | undefined }> {
  const compatibility = landlockCompatibility(spec.landlock);
  const helper = spec.landlockHelper === null ? undefined : (spec.landlockHelper ?? builtLandlockHelper());
  if (!helper && compatibility === 'hard_requirement') {
    throw hardRequirement('the Landlock helper is not built (there was no C compiler when `npm run build` ran)');
  }
  const abi = helper ? landlockAbi(helper) : 0;
  let kernel: KernelViolationSource | undefined;
  const source = spec.violationSource ?? 'auto';
  if (helper && wantLog && root && abi >= 7 && (source === 'kernel' || (source === 'auto' && !hasCommand('strace')))) {
    const reader = kernelViolationSource(helper);
    // Not readable (no CAP_AUDIT_READ, audit locked off): the sandbox runs without this log, and
    // its violation_source says so.
    kernel = await reader.start().then(
      () => reader,
      () => undefined,
    );
  }
  const fs = spec.filesystem;
  const hidden = fs.hidden.map(sandboxPath);
  const isHidden = (p: string): boolean => hidden.some((h) => p === h || p.startsWith(`${h}/`));
  const readOnly = [
    '/usr', ...ETC_ALLOWLIST, '/etc/passwd', '/etc/group', '/etc/hosts', '/etc/resolv.conf', '/opt', '/proc',
    ...(netMode === 'relay-inside' ? [dirname(INSIDE_PROXY_SOCKET)] : []),
    ...fs.read_only.map(sandboxPath),
  ].filter((p) => !isHidden(p));
  const readWrite = [...pathRules(fs).readWrite, '/dev/shm'].filter((p) => !isHidden(p));
  // Intercepted connects keep their original destination port at connect() (nft redirects them
  // after Landlock's check), so with interception planned Landlock must leave connect alone.
  const transparent = spec.transparentEgress === true || (spec.attachTransparent !== undefined && netMode === 'bridge-outside' && !spec.joinNetns);
  const connect: { ports: number[] } | { unrestricted: string } = transparent
    ? { unrestricted: 'transparent interception: the network namespace sends every connect to the proxy' }
    : spec.joinNetns
      ? { unrestricted: "shares the agent sandbox's network namespace and talks to its listeners" }
      : spec.connectPorts === undefined
        ? { ports: [PROXY_PORT] }
        : Array.isArray(spec.connectPorts)
          ? { ports: spec.connectPorts }
          : spec.connectPorts;
  const planned = planLandlock(
    { filesystem: fs, abi, compatibility, readOnly, readWrite, devices: ['/dev'], hidden, connect, log: kernel !== undefined },
    SANDBOX_LANDLOCK_HELPER,
  );
  if (!helper) planned.report.reason = 'the Landlock helper is not built (no C compiler when `npm run build` ran: apt-get install -y gcc libc6-dev)';
  return { ...planned, helper, kernel };
}

function currentIdentity(): SandboxIdentity {
  const uid = process.getuid?.() ?? 65534;
  const gid = process.getgid?.() ?? 65534;
  return { uid, gid, user: String(uid), kind: 'policy' };
}

async function mkfifo(path: string): Promise<void> {
  rmSync(path, { force: true });
  const r = await execa('mkfifo', ['-m', '0600', path], { reject: false });
  if (r.exitCode !== 0) {
    throw new NemoclawError('io', `could not create FIFO ${path}: ${String(r.stderr)}`, {
      nextStep: 'check that the sandbox run directory is writable',
    });
  }
  chmodSync(path, 0o600);
}

/** bwrap writes `{"child-pid": N, ...}` to --info-fd once the namespaces exist. */
async function readChildPid(stream: Readable | null, exited: Promise<unknown>): Promise<number | undefined> {
  if (!stream) return undefined;
  return new Promise<number | undefined>((resolve) => {
    let buf = '';
    const onData = (d: Buffer): void => {
      buf += d.toString();
      const m = /"child-pid"\s*:\s*(\d+)/.exec(buf);
      if (m) {
        stream.off('data', onData);
        stream.resume();
        resolve(Number(m[1]));
      }
    };
    stream.on('data', onData);
    stream.on('end', () => resolve(undefined));
    void exited.then(() => setTimeout(() => resolve(undefined), 50));
  });
}

/** strace is gone; if the reader never opened the FIFO (strace failed early), unblock it. */
async function drainFifo(fifo: string, reader: Promise<void>): Promise<void> {
  const done = await Promise.race([reader.then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 500))]);
  if (done) return;
  try {
    closeSync(openSync(fifo, 'r+'));
  } catch {
    /* removed */
  }
  await Promise.race([reader, new Promise((r) => setTimeout(r, 500))]);
}

/** bubblewrap builds the root under these before pivoting; its failures there are not the command's. */
const SETUP_PREFIXES = ['/newroot', '/oldroot'];

/** Read strace's FIFO until it closes; each failed call that is a violation goes to `emit`. */
async function readViolations(
  fifo: string,
  rules: PathRules,
  emit: (v: FsViolation) => void,
  isReleased: () => boolean,
  workdirHost: string,
): Promise<void> {
  // Root looks into a tree the sandbox owns: lstat below a trusted fd, never following a link.
  const existsOnHost = (path: string): boolean | undefined =>
    path === SANDBOX_WORKDIR || path.startsWith(`${SANDBOX_WORKDIR}/`) ? lstatBelow(workdirHost, path.slice(SANDBOX_WORKDIR.length)) !== undefined : undefined;
  const stream = createReadStream(fifo, { encoding: 'utf8' });
  const rl = createInterface({ input: stream, crlfDelay: Infinity });
  let last = '';
  try {
    for await (const line of rl) {
      // Before the command is released every line is bubblewrap building the sandbox.
      if (!isReleased()) continue;
      const parsed = parseStraceLine(line);
      if (!parsed) continue;
      const v = classifyViolation({ parsed, rules, existsOnHost });
      if (!v) continue;
      if (SETUP_PREFIXES.some((p) => v.path === p || v.path.startsWith(`${p}/`))) continue;
      const key = `${v.pid}:${v.path}:${v.access}`;
      if (key === last) continue; // e.g. touch: openat(O_CREAT) then utimensat on the same path
      last = key;
      const binary = procExe(v.pid)?.replace(/ \(deleted\)$/, '') ?? parsed.comm;
      emit({ ...v, binary });
    }
  } catch {
    /* FIFO closed */
  }
}
