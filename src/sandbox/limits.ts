/**
 * `process.limits` (pids, memory, cpu) through cgroups where the host offers them (v2 unified, or
 * the v1 pids/memory/cpu controllers), else through rlimits on the bwrap process. What was applied
 * is reported in status.
 */
import { existsSync, mkdirSync, readFileSync, rmdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type CgroupMode = 'v2' | 'v1' | 'none';

export interface CgroupLayout {
  mode: CgroupMode;
  /** v2: the unified mount where the controllers we need are enabled. */
  unified?: string;
  /** v1: mount point per controller. */
  v1?: { pids?: string; memory?: string; cpu?: string };
  /** Which of pids/memory/cpu can be enforced. */
  controllers: Array<'pids' | 'memory' | 'cpu'>;
}

export interface LimitsRequest {
  pids?: number | undefined;
  memory?: number | undefined;
  cpu?: number | undefined;
}

export interface AppliedLimits {
  via: 'cgroup-v2' | 'cgroup-v1' | 'rlimit' | 'none';
  pids?: number;
  memory?: number;
  cpu?: number;
  /** Requested limits that could not be enforced, in words. */
  notEnforced: string[];
  cgroupPaths: string[];
}

function readText(p: string): string | undefined {
  try {
    return readFileSync(p, 'utf8');
  } catch {
    return undefined;
  }
}

/** Look at /proc/mounts and the controllers files; no side effects. */
export function detectCgroups(root = '/sys/fs/cgroup', mounts = readText('/proc/mounts') ?? ''): CgroupLayout {
  const v1: NonNullable<CgroupLayout['v1']> = {};
  let unified: string | undefined;
  for (const line of mounts.split('\n')) {
    const [, mnt, type, opts] = line.split(' ');
    if (!mnt || !type) continue;
    if (type === 'cgroup2') unified = mnt;
    if (type === 'cgroup' && opts) {
      const o = opts.split(',');
      if (o.includes('pids')) v1.pids = mnt;
      if (o.includes('memory')) v1.memory = mnt;
      if (o.includes('cpu')) v1.cpu = mnt;
    }
  }
  if (unified) {
    const ctrls = (readText(join(unified, 'cgroup.controllers')) ?? '').trim().split(/\s+/);
    const have = (['pids', 'memory', 'cpu'] as const).filter((c) => ctrls.includes(c));
    // A hybrid host mounts a controller-less v2 tree next to v1: prefer v1 then.
    if (have.length > 0 && have.length >= Object.keys(v1).length) {
      return { mode: 'v2', unified, controllers: [...have] };
    }
  }
  const controllers = (['pids', 'memory', 'cpu'] as const).filter((c) => v1[c] !== undefined);
  if (controllers.length > 0) return { mode: 'v1', v1, controllers: [...controllers] };
  void root;
  return { mode: 'none', controllers: [] };
}

const CPU_PERIOD_US = 100_000;

/** A cgroup created for one sandbox instance; remove() after it exits. */
export interface SandboxCgroup {
  applied: AppliedLimits;
  /** Primary path (pids controller when available), exposed to the meters. */
  path?: string;
  addPid(pid: number): void;
  pids(): number[];
  remove(): Promise<void>;
}

function tryWrite(file: string, value: string): boolean {
  try {
    writeFileSync(file, value);
    return true;
  } catch {
    return false;
  }
}

/**
 * Create `nemoclaw/<instance>` under each controller and write the limits. Returns undefined when
 * the host has no usable cgroups (caller falls back to rlimits).
 */
export function createSandboxCgroup(
  layout: CgroupLayout,
  instance: string,
  limits: LimitsRequest,
): SandboxCgroup | undefined {
  if (layout.mode === 'none') return undefined;
  const dirs: string[] = [];
  const applied: AppliedLimits = {
    via: layout.mode === 'v2' ? 'cgroup-v2' : 'cgroup-v1',
    notEnforced: [],
    cgroupPaths: dirs,
  };
  const make = (base: string): string | undefined => {
    const dir = join(base, 'nemoclaw', instance);
    try {
      mkdirSync(dir, { recursive: true });
      dirs.push(dir);
      return dir;
    } catch {
      return undefined;
    }
  };
  let primary: string | undefined;
  if (layout.mode === 'v2' && layout.unified) {
    const parent = join(layout.unified, 'nemoclaw');
    const dir = make(layout.unified);
    if (!dir) return undefined;
    // Enable the controllers for our subtree (ignored where the root does not delegate them).
    tryWrite(join(layout.unified, 'cgroup.subtree_control'), layout.controllers.map((c) => `+${c}`).join(' '));
    tryWrite(join(parent, 'cgroup.subtree_control'), layout.controllers.map((c) => `+${c}`).join(' '));
    primary = dir;
    if (limits.pids !== undefined) {
      if (tryWrite(join(dir, 'pids.max'), String(limits.pids))) applied.pids = limits.pids;
      else applied.notEnforced.push('pids (pids.max not writable)');
    }
    if (limits.memory !== undefined) {
      if (tryWrite(join(dir, 'memory.max'), String(limits.memory))) {
        tryWrite(join(dir, 'memory.swap.max'), '0');
        applied.memory = limits.memory;
      } else applied.notEnforced.push('memory (memory.max not writable)');
    }
    if (limits.cpu !== undefined) {
      const quota = Math.max(1000, Math.round(limits.cpu * CPU_PERIOD_US));
      if (tryWrite(join(dir, 'cpu.max'), `${quota} ${CPU_PERIOD_US}`)) applied.cpu = limits.cpu;
      else applied.notEnforced.push('cpu (cpu.max not writable)');
    }
  } else if (layout.mode === 'v1' && layout.v1) {
    const { pids, memory, cpu } = layout.v1;
    const pidsDir = pids ? make(pids) : undefined;
    const memDir = memory && limits.memory !== undefined ? make(memory) : undefined;
    const cpuDir = cpu && limits.cpu !== undefined ? make(cpu) : undefined;
    primary = pidsDir ?? memDir ?? cpuDir;
    if (limits.pids !== undefined) {
      if (pidsDir && tryWrite(join(pidsDir, 'pids.max'), String(limits.pids))) applied.pids = limits.pids;
      else applied.notEnforced.push('pids (no writable v1 pids controller)');
    }
    if (limits.memory !== undefined) {
      if (memDir && tryWrite(join(memDir, 'memory.limit_in_bytes'), String(limits.memory))) {
        tryWrite(join(memDir, 'memory.memsw.limit_in_bytes'), String(limits.memory));
        applied.memory = limits.memory;
      } else applied.notEnforced.push('memory (no writable v1 memory controller)');
    }
    if (limits.cpu !== undefined) {
      const quota = Math.max(1000, Math.round(limits.cpu * CPU_PERIOD_US));
      if (
        cpuDir &&
        tryWrite(join(cpuDir, 'cpu.cfs_period_us'), String(CPU_PERIOD_US)) &&
        tryWrite(join(cpuDir, 'cpu.cfs_quota_us'), String(quota))
      ) {
        applied.cpu = limits.cpu;
      } else applied.notEnforced.push('cpu (no writable v1 cpu controller)');
    }
    if (!primary) return undefined;
  }
  return {
    applied,
    path: primary,
    addPid(pid: number): void {
      for (const dir of dirs) tryWrite(join(dir, 'cgroup.procs'), String(pid));
    },
    pids(): number[] {
      if (!primary) return [];
      const text = readText(join(primary, 'cgroup.procs')) ?? '';
      return text
        .split('\n')
        .filter((l) => l.length > 0)
        .map(Number)
        .filter((n) => Number.isInteger(n) && n > 0);
    },
    async remove(): Promise<void> {
      for (const dir of [...dirs].reverse()) {
        // Processes may still be exiting; a few short retries, then leave it (an empty cgroup is harmless).
        for (let i = 0; i < 40 && existsSync(dir); i++) {
          try {
            rmdirSync(dir);
          } catch {
            await new Promise((r) => setTimeout(r, 25));
          }
        }
      }
    },
  };
}

/** rlimit fallback via prlimit(1): memory → RLIMIT_AS, pids → RLIMIT_NPROC (per uid). */
export function rlimitArgs(limits: LimitsRequest, applied: AppliedLimits): string[] {
  const args = ['--core=0'];
  if (applied.via !== 'rlimit') return args;
  if (limits.pids !== undefined) {
    args.push(`--nproc=${limits.pids}`);
    applied.pids = limits.pids;
  }
  if (limits.memory !== undefined) {
    args.push(`--as=${limits.memory}`);
    applied.memory = limits.memory;
  }
  if (limits.cpu !== undefined) applied.notEnforced.push('cpu (no cgroup cpu controller; rlimits cannot cap a rate)');
  return args;
}
