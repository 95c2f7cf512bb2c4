/**
 * Process meter: CPU %, RSS and elapsed time of each sandbox's process tree (pidusage), plus its
 * cgroup's memory and pids counters when the sandbox has a cgroup.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import pidusage from 'pidusage';
import { readCgroupCounters, type CgroupCounters } from './cgroup.js';

/** What the meter needs from a running sandbox (the sandbox driver's instances satisfy it). */
export interface MeteredInstance {
  id: string;
  rootPid: number;
  /** Every pid of the sandbox's tree right now, root included (host pid namespace). */
  pids(): number[] | Promise<number[]>;
  cgroupPath?: string | undefined;
}

/** Where the meter finds the sandboxes to measure; injected so tests can give it their own processes. */
export interface ProcessSource {
  instances(): MeteredInstance[];
}

export interface ProcInstanceSample {
  id: string;
  root_pid: number;
  /** Live processes measured. */
  pids: number;
  /** Sum over the tree; 100 = one core. */
  cpu_pct: number;
  rss_bytes: number;
  /** Since the root process started. */
  elapsed_ms: number | null;
  cgroup?: CgroupCounters;
}

export interface ProcSample {
  ts: number;
  instances: ProcInstanceSample[];
  total: { pids: number; cpu_pct: number; rss_bytes: number };
}

export interface ProcSamplerOptions {
  cgroupRoot?: string;
  /** Filled with every pid measured (the GPU meter attributes VRAM to these). */
  collectPids?: Set<number>;
}

function round1(n: number): number {
  return Math.round(n * 10) / 10;
}

/** Measure every instance once. Processes that exit mid-sample are simply not counted. */
export async function sampleProcesses(
  source: ProcessSource,
  now: number,
  opts: ProcSamplerOptions = {},
): Promise<ProcSample> {
  const instances: ProcInstanceSample[] = [];
  for (const instance of source.instances()) {
    let pids: number[];
    try {
      pids = [...new Set(await instance.pids())].filter((p) => Number.isInteger(p) && p > 0);
    } catch {
      pids = [instance.rootPid];
    }
    if (!pids.includes(instance.rootPid)) pids.unshift(instance.rootPid);
    for (const pid of pids) opts.collectPids?.add(pid);
    let stats: Record<string, pidusage.Status | null | undefined> = {};
    try {
      stats = (await pidusage(pids)) as Record<string, pidusage.Status | null | undefined>;
    } catch {
      // A single pid that is gone makes pidusage reject; measure nothing rather than fail.
      stats = {};
    }
    let cpu = 0;
    let rss = 0;
    let live = 0;
    for (const pid of pids) {
      const s = stats[pid];
      if (!s) continue;
      live++;
      cpu += s.cpu;
      rss += s.memory;
    }
    const rootStat = stats[instance.rootPid];
    const sample: ProcInstanceSample = {
      id: instance.id,
      root_pid: instance.rootPid,
      pids: live,
      cpu_pct: round1(cpu),
      rss_bytes: rss,
      elapsed_ms: rootStat ? Math.round(rootStat.elapsed) : null,
    };
    if (instance.cgroupPath) {
      const counters = await readCgroupCounters(instance.cgroupPath, opts.cgroupRoot);
      if (counters) sample.cgroup = counters;
    }
    instances.push(sample);
  }
  return {
    ts: now,
    instances,
    total: {
      pids: instances.reduce((a, i) => a + i.pids, 0),
      cpu_pct: round1(instances.reduce((a, i) => a + i.cpu_pct, 0)),
      rss_bytes: instances.reduce((a, i) => a + i.rss_bytes, 0),
    },
  };
}

/** Forget pidusage's per-pid history (and the /proc fds it keeps open). */
export function releaseProcessHistory(): void {
  pidusage.clear();
}

/**
 * All descendants of `rootPid` (root included) from one pass over /proc. For process sources that
 * only know a root pid (tests, benchmarks); the sandbox driver lists its own pids.
 */
export async function processTree(rootPid: number, procDir = '/proc'): Promise<number[]> {
  return processTreeSync(rootPid, procDir);
}

/**
 * Synchronous on purpose: a few hundred tiny /proc reads take well under a millisecond each way,
 * while the async fs API costs several thread-pool round trips per file (measured in bench/meters.ts).
 */
export function processTreeSync(rootPid: number, procDir = '/proc'): number[] {
  const children = new Map<number, number[]>();
  let entries: string[];
  try {
    entries = readdirSync(procDir);
  } catch {
    return [rootPid];
  }
  for (const e of entries) {
    const c = e.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    let stat: string;
    try {
      stat = readFileSync(join(procDir, e, 'stat'), 'latin1');
    } catch {
      continue;
    }
    // "pid (comm) state ppid ..." — comm may contain spaces and parentheses.
    const rest = stat.slice(stat.lastIndexOf(')') + 2);
    const ppid = Number(rest.slice(2, rest.indexOf(' ', 2)));
    const list = children.get(ppid);
    if (list) list.push(Number(e));
    else children.set(ppid, [Number(e)]);
  }
  const out: number[] = [];
  const queue = [rootPid];
  const seen = new Set<number>();
  while (queue.length > 0) {
    const pid = queue.shift()!;
    if (seen.has(pid)) continue;
    seen.add(pid);
    out.push(pid);
    for (const child of children.get(pid) ?? []) queue.push(child);
  }
  return out;
}
