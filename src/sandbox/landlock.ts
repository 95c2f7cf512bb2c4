/**
 * Landlock, the sandbox's second filesystem layer: inside the sandbox, after bubblewrap built the
 * mount layout and just before the command runs, the native helper (src/sandbox/landlock/
 * nemoclaw-landlock.c, built into dist/native/) restricts the command with a ruleset derived from
 * the same allowlist bubblewrap binds. A mistake in the mount layout (a path bound that should not
 * be, a writable bind) is then not enough to read or write it: Landlock checks every open against
 * the ruleset, whatever the mounts say.
 *
 * This file plans the helper's argv and says, for status, doctor and the lifecycle event, which ABI
 * and which rights are enforced. It mirrors the helper's best-effort rule: a right the running ABI
 * does not know is dropped (never silently: it is listed under `missing`).
 */
import { execaSync } from 'execa';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { NemoclawError } from '../shared/errors.js';
import type { FilesystemPolicy } from '../policy/types.js';

/** Where the helper is bound inside the sandbox (read-only, below the driver's own /opt/nemoclaw). */
export const SANDBOX_LANDLOCK_HELPER = '/opt/nemoclaw/bin/nemoclaw-landlock';

/** The helper built by `npm run build` (bin/build-native.js), if it was. */
export function builtLandlockHelper(): string | undefined {
  // From dist/src/sandbox/ (the built CLI) and from src/sandbox/ (tests run the sources).
  for (const rel of ['../../native/nemoclaw-landlock', '../../dist/native/nemoclaw-landlock']) {
    const p = fileURLToPath(new URL(rel, import.meta.url));
    if (existsSync(p)) return p;
  }
  return undefined;
}

const abiCache = new Map<string, number>();

/** The running kernel's Landlock ABI as the helper sees it (0: none); memoised per helper. */
export function landlockAbi(helper: string): number {
  const cached = abiCache.get(helper);
  if (cached !== undefined) return cached;
  const r = execaSync(helper, ['abi'], { reject: false, timeout: 5000 });
  const abi = r.exitCode === 0 ? Number.parseInt(String(r.stdout).trim(), 10) : 0;
  const value = Number.isFinite(abi) && abi >= 0 ? abi : 0;
  abiCache.set(helper, value);
  return value;
}

export type LandlockCompatibility = 'best_effort' | 'hard_requirement';

/**
 * `landlock.compatibility` as OpenShell defines it: best_effort (the default) applies what the
 * kernel supports; hard_requirement refuses to start without it. Any other value is refused rather
 * than guessed (a typo must not weaken the sandbox).
 */
export function landlockCompatibility(block: Record<string, unknown> | undefined): LandlockCompatibility {
  const v = block?.compatibility;
  if (v === undefined) return 'best_effort';
  if (v === 'best_effort' || v === 'hard_requirement') return v;
  throw new NemoclawError('policy_invalid', `landlock.compatibility is ${JSON.stringify(v)}; expected best_effort or hard_requirement`, {
    nextStep: 'set landlock.compatibility to best_effort or hard_requirement in the policy file, then restart the sandbox',
    exitCode: 2,
  });
}

/** Filesystem rights by the ABI that introduced them (kernel names, as in audit "blockers"). */
const FS_RIGHTS: Array<[string, number]> = [
  ['execute', 1], ['write_file', 1], ['read_file', 1], ['read_dir', 1], ['remove_dir', 1], ['remove_file', 1],
  ['make_char', 1], ['make_dir', 1], ['make_reg', 1], ['make_sock', 1], ['make_fifo', 1], ['make_block', 1],
  ['make_sym', 1], ['refer', 2], ['truncate', 3], ['ioctl_dev', 5],
];
const READ_RIGHTS = new Set(['execute', 'read_file', 'read_dir']);

export interface LandlockReport {
  /** Whether the command runs under a Landlock domain. */
  enforced: boolean;
  abi: number;
  compatibility: LandlockCompatibility;
  /** Why it is not enforced (no helper built, kernel without Landlock). */
  reason?: string;
  /** Filesystem rights the ruleset handles (everything not granted below is denied). */
  fs_rights: string[];
  read_only: string[];
  read_write: string[];
  devices: string[];
  /** Hidden paths inside a granted tree: Landlock cannot take rights away below a granted directory. */
  hidden_by_mounts_only: string[];
  /** TCP connect: the ports allowed, or 'unrestricted' with the reason. */
  connect: number[] | 'unrestricted';
  connect_reason?: string;
  /** ABI 6 scopes: signals and abstract Unix sockets stay inside the sandbox's domain. */
  scopes: string[];
  /** ABI 7: denials are written to the kernel's audit log (read back as fs.violation when root). */
  audit_log: boolean;
  /** What this policy would have had on a newer kernel, each with the ABI it needs. */
  missing: string[];
}

export interface LandlockPlanInput {
  filesystem: FilesystemPolicy;
  abi: number;
  compatibility: LandlockCompatibility;
  /** Directories and files bound read-only by the driver itself (/usr, /etc allowlist, /opt…). */
  readOnly: string[];
  /** Writable trees (/sandbox, /tmp, policy read_write). */
  readWrite: string[];
  /** Device trees: read and write existing nodes, create nothing. */
  devices: string[];
  /** Hidden paths (already sandbox-normalised). */
  hidden: string[];
  /** TCP ports the command may connect to, or 'unrestricted' (with why). */
  connect: { ports: number[] } | { unrestricted: string };
  /** Ask the kernel to log denials (ABI 7). */
  log: boolean;
}

function under(path: string, prefix: string): boolean {
  return prefix === '/' || path === prefix || path.startsWith(`${prefix}/`);
}

/** The helper's argv (before the command) and the report; argv is undefined when nothing applies. */
export function planLandlock(input: LandlockPlanInput, helper: string): { argv: string[] | undefined; report: LandlockReport } {
  const { abi } = input;
  const fsRights = abi >= 1 ? FS_RIGHTS.filter(([, a]) => abi >= a).map(([n]) => n) : [];
  const missing = [
    ...FS_RIGHTS.filter(([, a]) => abi < a).map(([n, a]) => `fs.${n} (ABI ${a})`),
    ...('ports' in input.connect && abi < 4 ? ['net.connect_tcp (ABI 4)'] : []),
    ...(abi < 6 ? ['scope.signal (ABI 6)', 'scope.abstract_unix_socket (ABI 6)'] : []),
    ...(input.log && abi < 7 ? ['audit log of denials (ABI 7)'] : []),
  ];
  const dedupe = (xs: string[]): string[] => [...new Set(xs)];
  const readWrite = dedupe(input.readWrite);
  const readOnly = dedupe(input.readOnly).filter((p) => !readWrite.some((w) => under(p, w)));
  const devices = dedupe(input.devices);
  const granted = [...readOnly, ...readWrite, ...devices];
  const hiddenByMounts = input.hidden.filter((h) => granted.some((g) => under(h, g)));
  const connectPorts = 'ports' in input.connect && abi >= 4 ? [...new Set(input.connect.ports)] : undefined;
  const report: LandlockReport = {
    enforced: abi >= 1,
    abi,
    compatibility: input.compatibility,
    fs_rights: fsRights,
    read_only: readOnly,
    read_write: readWrite,
    devices,
    hidden_by_mounts_only: hiddenByMounts,
    connect: connectPorts ?? 'unrestricted',
    ...(connectPorts
      ? {}
      : { connect_reason: 'unrestricted' in input.connect ? input.connect.unrestricted : `Landlock ABI ${abi} has no TCP rules (ABI 4)` }),
    scopes: abi >= 6 ? ['signal', 'abstract_unix_socket'] : [],
    audit_log: input.log && abi >= 7,
    missing,
  };
  if (abi < 1) {
    report.reason = 'the kernel has no Landlock (CONFIG_SECURITY_LANDLOCK, or "landlock" missing from the lsm= boot list)';
    if (input.compatibility === 'hard_requirement') throw hardRequirement(report.reason);
    return { argv: undefined, report };
  }
  const argv = [helper, 'exec', '--compat', input.compatibility];
  for (const p of readOnly) argv.push('--ro', p);
  for (const p of readWrite) argv.push('--rw', p);
  for (const p of devices) argv.push('--dev', p);
  if (connectPorts) {
    argv.push('--restrict-connect');
    for (const port of connectPorts) argv.push('--connect', String(port));
  }
  if (abi >= 6) argv.push('--scope');
  if (report.audit_log) argv.push('--log');
  argv.push('--');
  return { argv, report };
}

export function hardRequirement(why: string): NemoclawError {
  return new NemoclawError('prerequisite_missing', `the policy requires Landlock (landlock.compatibility: hard_requirement), but ${why}`, {
    nextStep:
      'run on a kernel with Landlock enabled (Linux ≥ 5.13, "landlock" in the lsm= boot list) and build the helper (apt-get install -y gcc libc6-dev; npm run build), or set landlock.compatibility: best_effort',
  });
}

/** Which access a kernel "blockers" list (fs.write_file,fs.make_reg…) was: a read or a write. */
export function accessOfBlockers(blockers: string[]): 'read' | 'write' {
  return blockers.every((b) => b.startsWith('fs.') && READ_RIGHTS.has(b.slice(3))) ? 'read' : 'write';
}

/** One line for `status` and the lifecycle event: the ABI and what is enforced. */
export function describeLandlock(r: LandlockReport): string {
  if (!r.enforced) return `Landlock off (${r.compatibility}): ${r.reason ?? 'not applied'}`;
  const net = r.connect === 'unrestricted' ? `TCP connect unrestricted (${r.connect_reason ?? ''})` : `TCP connect only to ${r.connect.join(', ')}`;
  const parts = [
    `Landlock ABI ${r.abi} (${r.compatibility}): ${r.fs_rights.length} filesystem rights handled, ${r.read_only.length} read-only and ${r.read_write.length} read-write trees`,
    net,
    r.scopes.length > 0 ? `scoped: ${r.scopes.join(', ')}` : 'no signal/socket scoping',
    r.audit_log ? 'denials logged by the kernel' : 'denials not logged by the kernel',
  ];
  if (r.missing.length > 0) parts.push(`not on this kernel: ${r.missing.join(', ')}`);
  return parts.join('; ');
}
