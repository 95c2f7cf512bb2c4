/**
 * `nemoclaw-tui doctor`: each prerequisite of the sandbox, whether it is there, and the exact
 * command that fixes it. `--fix` runs the fixes that are safe to automate (packages, the user).
 */
import { execa } from 'execa';
import { readFileSync } from 'node:fs';
import { release } from 'node:os';
import { findBinary } from './bwrap.js';
import { SANDBOX_USER, readPasswd, resolveSandboxIdentity } from './identity.js';
import { detectCgroups } from './limits.js';

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
    ['socat', 'socat', 'error', 'bridges 127.0.0.1:3128 in the sandbox to the egress proxy'],
    ['strace', 'strace', 'warn', 'the filesystem-violation monitor (without it no fs.violation events)'],
    ['nsenter', 'util-linux', 'error', 'starts the bridge inside the sandbox network namespace'],
    ['prlimit', 'util-linux', 'error', 'sets RLIMIT_CORE=0 and rlimit fallbacks'],
    ['setpriv', 'util-linux', 'error', 'drops to the sandbox uid'],
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
  // A real start, as the sandbox uid, proves the pieces fit together.
  const bwrap = findBinary('bwrap');
  const setpriv = findBinary('setpriv');
  if (bwrap && userns) {
    const argv = [
      '--unshare-all', '--unshare-user', '--disable-userns', '--die-with-parent', '--cap-drop', 'ALL',
      '--tmpfs', '/', '--ro-bind', '/usr', '/usr', '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/lib', '/lib',
      '--symlink', 'usr/lib64', '/lib64', '--proc', '/proc', '--dev', '/dev', '--remount-ro', '/', '--', '/usr/bin/true',
    ];
    const r =
      root && setpriv
        ? await execa(setpriv, [`--reuid=${id.uid}`, `--regid=${id.gid}`, '--clear-groups', '--', bwrap, ...argv], { reject: false, timeout: 10_000 })
        : await execa(bwrap, argv, { reject: false, timeout: 10_000 });
    checks.push({
      id: 'bwrap-start',
      title: `bubblewrap starts a sandbox as ${root ? `uid ${id.uid}` : 'this user'}`,
      ok: r.exitCode === 0,
      severity: 'error',
      detail: r.exitCode === 0 ? 'ok' : String(r.stderr || r.stdout || `exit ${r.exitCode}`).trim(),
      fix: 'check the user-namespace settings above; inside a container, run it with --security-opt seccomp=unconfined',
    });
  }
  return { ok: checks.every((c) => c.ok || c.severity === 'warn'), checks };
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
