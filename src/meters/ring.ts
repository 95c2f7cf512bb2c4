/**
 * Samples go to live subscribers at full rate; the audit log gets one summary per minute. The ring
 * keeps the recent samples in memory (for the TUI's sparklines and the summaries).
 */
import type { GpuSample } from './gpu.js';
import type { ProcSample } from './proc.js';

export class SampleRing<T extends { ts: number }> {
  private readonly items: T[] = [];
  private start = 0;

  constructor(readonly capacity: number) {}

  push(item: T): void {
    if (this.items.length < this.capacity) {
      this.items.push(item);
    } else {
      this.items[this.start] = item;
      this.start = (this.start + 1) % this.capacity;
    }
  }

  /** Oldest first. */
  toArray(): T[] {
    if (this.start === 0) return this.items.slice();
    return [...this.items.slice(this.start), ...this.items.slice(0, this.start)];
  }

  since(ts: number): T[] {
    return this.toArray().filter((s) => s.ts > ts);
  }

  get size(): number {
    return this.items.length;
  }
}

function stats(values: Array<number | null | undefined>): { avg: number | null; max: number | null } {
  const nums = values.filter((v): v is number => typeof v === 'number' && Number.isFinite(v));
  if (nums.length === 0) return { avg: null, max: null };
  const total = nums.reduce((a, b) => a + b, 0);
  return { avg: Math.round((total / nums.length) * 10) / 10, max: Math.max(...nums) };
}

export interface GpuSummary {
  window_ms: number;
  samples: number;
  gpus: Array<{
    index: number;
    uuid: string;
    name: string;
    util_gpu_avg_pct: number | null;
    util_gpu_max_pct: number | null;
    mem_used_max_mib: number | null;
    mem_total_mib: number | null;
    mem_source: string;
    power_avg_w: number | null;
    power_max_w: number | null;
    temp_max_c: number | null;
    sandbox_mem_max_mib: number | null;
  }>;
  sandbox_mem_max_mib: number | null;
}

export function summarizeGpu(samples: GpuSample[], windowMs: number): GpuSummary | undefined {
  if (samples.length === 0) return undefined;
  const byUuid = new Map<string, GpuSample['gpus']>();
  for (const s of samples) {
    for (const g of s.gpus) {
      const list = byUuid.get(g.uuid);
      if (list) list.push(g);
      else byUuid.set(g.uuid, [g]);
    }
  }
  const gpus = [...byUuid.values()].map((list) => {
    const last = list[list.length - 1]!;
    const util = stats(list.map((g) => g.util_gpu_pct));
    const power = stats(list.map((g) => g.power_w));
    return {
      index: last.index,
      uuid: last.uuid,
      name: last.name,
      util_gpu_avg_pct: util.avg,
      util_gpu_max_pct: util.max,
      mem_used_max_mib: stats(list.map((g) => g.mem_used_mib)).max,
      mem_total_mib: last.mem_total_mib,
      mem_source: last.mem_source,
      power_avg_w: power.avg,
      power_max_w: power.max,
      temp_max_c: stats(list.map((g) => g.temp_c)).max,
      sandbox_mem_max_mib: stats(list.map((g) => g.sandbox_mem_mib)).max,
    };
  });
  gpus.sort((a, b) => a.index - b.index);
  return {
    window_ms: windowMs,
    samples: samples.length,
    gpus,
    sandbox_mem_max_mib: stats(samples.map((s) => s.sandbox_mem_mib)).max,
  };
}

export interface ProcSummary {
  window_ms: number;
  samples: number;
  cpu_avg_pct: number | null;
  cpu_max_pct: number | null;
  rss_max_bytes: number | null;
  pids_max: number | null;
  cgroup_memory_max_bytes: number | null;
}

export function summarizeProc(samples: ProcSample[], windowMs: number): ProcSummary | undefined {
  if (samples.length === 0) return undefined;
  const cpu = stats(samples.map((s) => s.total.cpu_pct));
  const cgroupMemory = samples.map((s) => {
    const values = s.instances.map((i) => i.cgroup?.memory_bytes).filter((v): v is number => typeof v === 'number');
    return values.length > 0 ? values.reduce((a, b) => a + b, 0) : null;
  });
  return {
    window_ms: windowMs,
    samples: samples.length,
    cpu_avg_pct: cpu.avg,
    cpu_max_pct: cpu.max,
    rss_max_bytes: stats(samples.map((s) => s.total.rss_bytes)).max,
    pids_max: stats(samples.map((s) => s.total.pids)).max,
    cgroup_memory_max_bytes: stats(cgroupMemory).max,
  };
}
