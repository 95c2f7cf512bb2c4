/**
 * `nemoclaw-tui doctor`: each prerequisite of the sandbox, whether it is there, and the exact
 * command that fixes it. `--fix` runs the fixes that are safe to automate (packages, the user).
 */
import { execa, type Options } from 'execa';
import { closeSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { buildSeccompProgram } from './seccomp.js';
import { release } from 'node:os';
import { findBinary } from './bwrap.js';
import { SANDBOX_USER, readPasswd, resolveSandboxIdentity } from './identity.js';
import { detectCgroups } from './limits.js';
import { landlockCheck } from './landlock-doctor.js';
import { probeInterception } from './transparent.js';

export interface DoctorCheck {
  id: string;
  title: string;
  ok: boolean;
  /** 'error' blocks the sandbox; 'warn' degrades it (what is lost is in detail). */
  severity: 'error' | 'warn';
  detail: string;
  /** Exact command that fixes it (shown when not ok). */
  fix?: string;
  /** The fix as an argument vector, when `--fix` may run it. */
  fixArgv?: string[];
}

export interface DoctorReport {
  ok: boolean;
  checks: DoctorCheck[];
}

function read(p: string): string | undefined {
  try {
    return readFileSync(p, 'utf8').trim();
  } catch {
    return undefined;
  }
}

const APT = (pkg: string): { fix: string; fixArgv: string[] } => ({
  fix: `apt-get install -y ${pkg}`,
  fixArgv: ['apt-get', 'install', '-y', '--no-install-recommends', pkg],
});

export async function runDoctor(): Promise<DoctorReport> {
  const checks: DoctorCheck[] = [];
  const root = process.getuid?.() === 0;
  const [maj = 0, min = 0] = release().split('.').map((x) => Number.parseInt(x, 10));
  checks.push({
    id: 'kernel',
    title: 'Linux kernel ≥ 5.10',
    ok: process.platform === 'linux' && (maj > 5 || (maj === 5 && min >= 10)),
    severity: 'error',
    detail: `${process.platform} ${release()}`,
    fix: 'upgrade the kernel (the sandbox needs user namespaces, seccomp filters and clone3-era syscalls)',
  });
  const seccomp = read('/proc/self/status')?.match(/^Seccomp:\s*(\d)/m);
  checks.push({
    id: 'seccomp',
    title: 'seccomp filters (CONFIG_SECCOMP_FILTER)',
    ok: seccomp !== null && seccomp !== undefined,
    severity: 'error',
    detail: seccomp ? 'available' : 'no Seccomp field in /proc/self/status',
    fix: 'use a kernel built with CONFIG_SECCOMP_FILTER=y',
  });
  const maxNs = Number(read('/proc/sys/user/max_user_namespaces') ?? '0');
  // The filter ends a process with SECCOMP_RET_KILL_PROCESS (foreign ABIs, x32): kernel ≥ 4.14.
  const actions = read('/proc/sys/kernel/seccomp/actions_avail');
  checks.push({
    id: 'seccomp-kill-process',
    title: 'seccomp can kill the whole process (foreign syscall ABIs, x32)',
    ok: actions === undefined ? maj > 4 || (maj === 4 && min >= 14) : actions.split(/\s+/).includes('kill_process'),
    severity: 'error',
    detail: actions ? `actions: ${actions}` : `kernel ${release()}`,
    fix: 'upgrade the kernel (SECCOMP_RET_KILL_PROCESS needs Linux 4.14)',
  });
  const unpriv = read('/proc/sys/kernel/unprivileged_userns_clone');
  const apparmor = read('/proc/sys/kernel/apparmor_restrict_unprivileged_userns');
  const userns = maxNs > 0 && unpriv !== '0' && apparmor !== '1';
  checks.push({
    id: 'userns',
    title: 'unprivileged user namespaces',
    ok: userns,
    severity: 'error',
    detail: `user.max_user_namespaces=${maxNs}${unpriv !== undefined ? `, kernel.unprivileged_userns_clone=${unpriv}` : ''}${apparmor !== undefined ? `, kernel.apparmor_restrict_unprivileged_userns=${apparmor}` : ''}`,
    fix:
      maxNs === 0
        ? 'sysctl -w user.max_user_namespaces=15000'
        : unpriv === '0'
          ? 'sysctl -w kernel.unprivileged_userns_clone=1'
          : 'sysctl -w kernel.apparmor_restrict_unprivileged_userns=0',
  });
  for (const [bin, pkg, severity, why] of [
    ['bwrap', 'bubblewrap', 'error', 'builds the sandbox'],
    [
      'socat', 'socat', root ? 'warn' : 'error', 'relays 127.0.0.1:3128 in the sandbox to the egress proxy when the supervisor is not root (relay-inside)',
    ],
    ['strace', 'strace', 'warn', 'the filesystem-violation monitor (without it no fs.violation events)'],
    ['nsenter', 'util-linux', 'error', "listens on 127.0.0.1:3128 inside the sandbox's network namespace"],
    ['unshare', 'util-linux', 'warn', "gives the sandbox's network namespace its own TCP hash (fast identity lookups)"],
    ['prlimit', 'util-linux', 'error', 'sets RLIMIT_CORE=0 and rlimit fallbacks'],
    ['setpriv', 'util-linux', 'error', 'drops to the sandbox uid'],
    ['mkfs.ext4', 'e2fsprogs', 'warn', 'the workdir size limit, a loop-mounted image (without it the workdir is unlimited)'],
    ['mount', 'mount', 'warn', 'mounts the workdir image'],
    ['nft', 'nftables', 'warn', 'transparent interception: clients that ignore the proxy variables are held like the others (without it: loopback-only, proxy-aware clients only)'],
    ['ip', 'iproute2', 'warn', "routes the sandbox's non-loopback traffic to the interception listeners"],
  ] as const) {
    const path = findBinary(bin);
    checks.push({
      id: bin,
      title: `${bin} (${why})`,
      ok: path !== undefined,
      severity,
      detail: path ?? 'not found',
      ...APT(pkg),
    });
  }
  const cg = detectCgroups();
  checks.push({
    id: 'cgroups',
    title: 'cgroups for process.limits (pids, memory, cpu)',
    ok: cg.mode !== 'none' && root,
    severity: 'warn',
    detail:
      cg.mode === 'none'
        ? 'no usable cgroup controllers: limits fall back to rlimits (no cpu limit)'
        : `cgroup ${cg.mode} (${cg.mode === 'v1' ? 'legacy/hybrid' : 'unified'}), controllers: ${cg.controllers.join(', ')}${root ? '' : '; not root, so rlimits are used'}`,
    fix: cg.mode === 'none' ? 'mount -t cgroup2 none /sys/fs/cgroup' : 'run the supervisor as root',
  });
  const dedicated = readPasswd().find((e) => e.name === SANDBOX_USER);
  const id = resolveSandboxIdentity();
  checks.push({
    id: 'sandbox-user',
    title: `dedicated sandbox user "${SANDBOX_USER}"`,
    ok: dedicated !== undefined,
    severity: 'warn',
    detail: dedicated ? `uid ${dedicated.uid}` : `missing: the sandbox runs as ${id.user} (uid ${id.uid}), shared with other nobody processes`,
    fix: `useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin ${SANDBOX_USER}`,
    fixArgv: ['useradd', '--system', '--no-create-home', '--home-dir', '/nonexistent', '--shell', '/usr/sbin/nologin', SANDBOX_USER],
  });
  // Without root, bwrap itself must create the user namespace (no setuid bwrap on Debian), and the
  // bridge cannot be started from outside (nsenter needs CAP_SYS_ADMIN): relay-inside mode.
  const sysctls = `user.max_user_namespaces=${maxNs}, kernel.unprivileged_userns_clone=${unpriv ?? 'absent (no such switch on this kernel)'}${apparmor !== undefined ? `, kernel.apparmor_restrict_unprivileged_userns=${apparmor}` : ''}`;
  const relayOk = userns && findBinary('bwrap') !== undefined && findBinary('socat') !== undefined;
  checks.push({
    id: 'relay-inside',
    title: 'non-root supervisor (network mode relay-inside) can start sandboxes',
    ok: relayOk,
    severity: root ? 'warn' : 'error',
    detail: relayOk
      ? `yes: unprivileged user namespaces are enabled (${sysctls}); socat relays 127.0.0.1:3128 inside the sandbox to the proxy socket, AF_UNIX stays allowed, no fs-violation monitor, rlimits instead of cgroups`
      : `no: ${userns ? 'bwrap or socat is missing' : `unprivileged user namespaces are off (${sysctls})`}`,
    fix: userns ? 'apt-get install -y bubblewrap socat' : 'sysctl -w user.max_user_namespaces=15000 (and kernel.unprivileged_userns_clone=1 where it exists), or run the supervisor as root',
  });
  checks.push({
    id: 'root',
    title: 'supervisor runs as root (bridge outside, monitor, cgroups)',
    ok: root,
    severity: 'warn',
    detail: root
      ? 'root: network mode bridge-outside, AF_UNIX blocked by seccomp'
      : 'not root: network mode relay-inside (AF_UNIX allowed), no fs-violation monitor, rlimits only',
    fix: 'sudo nemoclaw-tui up',
  });
  // Which network a sandbox gets: what the operator can and cannot see of it.
  const network = await probeInterception({ root, find: findBinary });
  checks.push({
    id: 'network',
    title: 'network',
    ok: network.mode === 'transparent',
    severity: 'warn',
    detail: network.mode === 'transparent' ? `${network.summary}: every TCP connect, DNS lookup and UDP datagram of the sandbox is seen and decided` : `${network.summary} (${network.reason})`,
    ...(!root
      ? { fix: 'sudo nemoclaw-tui up (transparent interception needs a root supervisor), with nftables installed' }
      : !findBinary('nft')
        ? APT('nftables')
        : !findBinary('ip')
          ? APT('iproute2')
          : { fix: 'use a kernel with nf_tables NAT (CONFIG_NF_TABLES, CONFIG_NFT_NAT, CONFIG_NFT_REDIR); until then only proxy-aware clients get out' }),
  });
  // A real start, as the sandbox uid, proves the pieces fit together.
  const bwrap = findBinary('bwrap');
  const setpriv = findBinary('setpriv');
  const drop = root && setpriv ? { setpriv, uid: id.uid, gid: id.gid } : undefined;
  if (bwrap && userns) {
    const r = await startMinimalSandbox(bwrap, drop, [], ['/usr/bin/true']);
    checks.push({
      id: 'bwrap-start',
      title: `bubblewrap starts a sandbox as ${root ? `uid ${id.uid}` : 'this user'}`,
      ok: r.exitCode === 0,
      severity: 'error',
      detail: r.exitCode === 0 ? 'ok' : String(r.stderr || r.stdout || `exit ${r.exitCode}`).trim(),
      fix: 'check the user-namespace settings above; inside a container, run it with --security-opt seccomp=unconfined',
    });
  }
  if (bwrap && userns) checks.push(await sandboxLayersCheck(bwrap, drop));
  checks.push(await landlockCheck());
  return { ok: checks.every((c) => c.ok || c.severity === 'warn'), checks };
}

type UidDrop = { setpriv: string; uid: number; gid: number };

/**
 * The smallest sandbox doctor can start (read-only /usr, fresh namespaces, no capabilities),
 * as the sandbox uid when root: `extra` bwrap options go before `--`, then `command`.
 */
function startMinimalSandbox(bwrap: string, drop: UidDrop | undefined, extra: string[], command: string[], options: Options = {}) {
  const argv = [
    '--unshare-all', '--unshare-user', '--disable-userns', '--die-with-parent', '--cap-drop', 'ALL',
    '--tmpfs', '/', '--ro-bind', '/usr', '/usr', '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/lib', '/lib',
    '--symlink', 'usr/lib64', '/lib64', '--proc', '/proc', '--dev', '/dev', '--remount-ro', '/', ...extra, '--', ...command,
  ];
  const opts = { reject: false, timeout: 10_000, ...options } as const;
  return drop
    ? execa(drop.setpriv, [`--reuid=${drop.uid}`, `--regid=${drop.gid}`, '--clear-groups', '--', bwrap, ...argv], opts)
    : execa(bwrap, argv, opts);
}

/**
 * Start a sandbox with the real seccomp program and /proc read-only, and look from inside at what
 * each kernel layer gives: seccomp mode 2, no_new_privs, capabilities zero, a refused AF_VSOCK
 * socket, a read-only /proc. A kernel (or container runtime) that silently drops one shows here.
 */
async function sandboxLayersCheck(bwrap: string, drop: UidDrop | undefined): Promise<DoctorCheck> {
  const title = 'sandbox layers on this kernel (seccomp filter, no_new_privs, capabilities, socket allowlist, read-only /proc)';
  const dir = mkdtempSync(join(tmpdir(), 'nemoclaw-doctor-'));
  let fd: number | undefined;
  try {
    const program = buildSeccompProgram({ blockUnixSockets: drop !== undefined });
    const file = join(dir, 'seccomp.bpf');
    writeFileSync(file, program.bytes, { mode: 0o600 });
    fd = openSync(file, 'r');
    const script = [
      'grep -E "^(Seccomp|NoNewPrivs|CapEff):" /proc/self/status',
      'cat /proc/self/oom_score_adj > /proc/self/oom_score_adj 2>/dev/null && echo proc:writable || echo proc:read-only',
      'if command -v python3 >/dev/null; then python3 -c "import socket; socket.socket(40, 1)" 2>/dev/null && echo vsock:allowed || echo vsock:refused; else echo vsock:untested; fi',
    ].join('; ');
    // bwrap reads the program from its fd 3.
    const stdio: Array<number | 'pipe' | 'ignore'> = ['ignore', 'pipe', 'pipe', fd];
    const r = await startMinimalSandbox(bwrap, drop, ['--remount-ro', '/proc', '--seccomp', '3'], ['/bin/sh', '-c', script], { stdio } as unknown as Options);
    const out = String(r.stdout);
    const field = (name: string): string | undefined => out.match(new RegExp(`^${name}:\\s*(\\S+)`, 'm'))?.[1];
    const missing: string[] = [];
    if (field('Seccomp') !== '2') missing.push(`seccomp filter mode ${field('Seccomp') ?? '?'} (want 2)`);
    if (field('NoNewPrivs') !== '1') missing.push('no_new_privs not set');
    if (!/^0+$/.test(field('CapEff') ?? '')) missing.push(`effective capabilities ${field('CapEff') ?? '?'}`);
    if (!out.includes('proc:read-only')) missing.push('/proc is writable');
    if (out.includes('vsock:allowed')) missing.push('AF_VSOCK socket allowed');
    const layers = `seccomp mode ${field('Seccomp') ?? '?'} (${program.instructions} instructions), no_new_privs ${field('NoNewPrivs') ?? '?'}, CapEff ${field('CapEff') ?? '?'}, /proc ${out.includes('proc:read-only') ? 'read-only' : 'writable'}, AF_VSOCK ${out.match(/vsock:(\w+)/)?.[1] ?? '?'}`;
    return {
      id: 'sandbox-layers',
      title,
      ok: r.exitCode === 0 && missing.length === 0,
      severity: 'error',
      detail: r.exitCode === 0 ? (missing.length === 0 ? layers : `missing: ${missing.join('; ')} — ${layers}`) : String(r.stderr || `exit ${r.exitCode}`).trim(),
      fix: 'run on the host, not in a container that filters seccomp or mounts /proc itself; upgrade the kernel if a layer is missing',
    };
  } finally {
    if (fd !== undefined) closeSync(fd);
    rmSync(dir, { recursive: true, force: true });
  }
}

/** Run the automatable fixes of failed checks; returns what was run and how it went. */
export async function applyFixes(report: DoctorReport): Promise<Array<{ id: string; command: string; ok: boolean; output: string }>> {
  const out: Array<{ id: string; command: string; ok: boolean; output: string }> = [];
  const packages = new Set<string>();
  for (const c of report.checks) {
    if (c.ok || !c.fixArgv) continue;
    if (c.fixArgv[0] === 'apt-get') {
      packages.add(c.fixArgv[c.fixArgv.length - 1]!);
      continue;
    }
    const [cmd, ...args] = c.fixArgv;
    const r = await execa(cmd!, args, { reject: false });
    out.push({ id: c.id, command: c.fixArgv.join(' '), ok: r.exitCode === 0, output: String(r.stderr || r.stdout).trim() });
  }
  if (packages.size > 0) {
    const args = ['install', '-y', '--no-install-recommends', ...packages];
    const r = await execa('apt-get', args, { reject: false, env: { DEBIAN_FRONTEND: 'noninteractive' } });
    out.push({ id: 'packages', command: `apt-get ${args.join(' ')}`, ok: r.exitCode === 0, output: String(r.stderr).trim().split('\n').slice(-3).join('\n') });
  }
  return out;
}
