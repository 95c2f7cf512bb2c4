/**
 * Memory and pids counters of a sandbox's cgroup: v2 (`memory.current`, `pids.current`) or v1
 * (`memory/<path>/memory.usage_in_bytes`, `pids/<path>/pids.current`).
 */
import { readFile } from 'node:fs/promises';
import { isAbsolute, join } from 'node:path';

export interface CgroupCounters {
  version: 1 | 2;
  memory_bytes: number | null;
  /** null = no limit ("max") or unknown. */
  memory_limit_bytes: number | null;
  pids: number | null;
  pids_limit: number | null;
}

async function readNumber(file: string): Promise<number | null | undefined> {
  let text: string;
  try {
    text = (await readFile(file, 'utf8')).trim();
  } catch {
    return undefined;
  }
  if (text === 'max') return null;
  const n = Number(text);
  return Number.isFinite(n) ? n : undefined;
}

/** v1 reports "no limit" as a huge page-aligned number; show it as no limit. */
function v1Limit(n: number | null | undefined): number | null {
  if (n === undefined || n === null) return null;
  return n >= 2 ** 62 ? null : n;
}

/**
 * `cgroupPath` may be an absolute directory (a v2 cgroup, or a v1 controller dir) or a path
 * relative to the cgroup hierarchy (`/nemoclaw/default` as in /proc/<pid>/cgroup). Returns
 * undefined when no counters can be read (no cgroup, or it was removed).
 */
export async function readCgroupCounters(
  cgroupPath: string,
  root = '/sys/fs/cgroup',
): Promise<CgroupCounters | undefined> {
  const rel = cgroupPath.startsWith(`${root}/`) ? cgroupPath.slice(root.length) : cgroupPath;
  const direct = isAbsolute(cgroupPath) ? [cgroupPath] : [];
  const v2Dirs = [...new Set([...direct, join(root, rel), join(root, 'unified', rel)])];
  for (const dir of v2Dirs) {
    const memory = await readNumber(join(dir, 'memory.current'));
    // memory.current only exists in v2; a v1 pids dir alone must not pass for a v2 cgroup.
    if (memory === undefined) continue;
    const pids = await readNumber(join(dir, 'pids.current'));
    return {
      version: 2,
      memory_bytes: memory ?? null,
      memory_limit_bytes: (await readNumber(join(dir, 'memory.max'))) ?? null,
      pids: pids ?? null,
      pids_limit: (await readNumber(join(dir, 'pids.max'))) ?? null,
    };
  }
  // v1: separate hierarchies per controller; a controller dir given directly also works.
  // A v1 path names one controller's dir (`/sys/fs/cgroup/pids/nemoclaw/x`); the same cgroup under
  // the other controller has the same path below its own hierarchy.
  const v1Rel = rel.replace(/^\/(?:memory|pids|cpu|cpuacct|cpu,cpuacct|cpuset|blkio|devices|freezer)(?=\/)/, '');
  const memDirs = [join(root, 'memory', v1Rel), ...direct];
  const pidDirs = [join(root, 'pids', v1Rel), ...direct];
  let memory: number | null | undefined;
  let memoryLimit: number | null | undefined;
  for (const dir of memDirs) {
    memory = await readNumber(join(dir, 'memory.usage_in_bytes'));
    if (memory !== undefined) {
      memoryLimit = await readNumber(join(dir, 'memory.limit_in_bytes'));
      break;
    }
  }
  let pids: number | null | undefined;
  let pidsLimit: number | null | undefined;
  for (const dir of pidDirs) {
    pids = await readNumber(join(dir, 'pids.current'));
    if (pids !== undefined) {
      pidsLimit = await readNumber(join(dir, 'pids.max'));
      break;
    }
  }
  if (memory === undefined && pids === undefined) return undefined;
  return {
    version: 1,
    memory_bytes: memory ?? null,
    memory_limit_bytes: v1Limit(memoryLimit),
    pids: pids ?? null,
    pids_limit: pidsLimit ?? null,
  };
}
