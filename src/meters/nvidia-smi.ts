/**
 * Parsers for `nvidia-smi --format=csv,noheader,nounits` output. Pure functions: no I/O, so they
 * are tested against recorded output (test/fixtures/nvidia-smi/).
 */

/** The fields we ask `--query-gpu` for, in this order. */
export const GPU_QUERY_FIELDS = [
  'index',
  'uuid',
  'name',
  'utilization.gpu',
  'utilization.memory',
  'memory.used',
  'memory.total',
  'temperature.gpu',
  'power.draw',
  'power.limit',
] as const;

export const COMPUTE_APPS_QUERY_FIELDS = ['pid', 'used_memory', 'gpu_uuid'] as const;

export function gpuQueryArgs(intervalMs: number): string[] {
  return [
    `--query-gpu=${GPU_QUERY_FIELDS.join(',')}`,
    '--format=csv,noheader,nounits',
    '-lms',
    String(Math.max(1, Math.round(intervalMs))),
  ];
}

export function computeAppsQueryArgs(): string[] {
  return [`--query-compute-apps=${COMPUTE_APPS_QUERY_FIELDS.join(',')}`, '--format=csv,noheader,nounits'];
}

/** One GPU as read from one line. `null` = the driver did not give the value (see `unavailable`). */
export interface GpuReading {
  index: number;
  uuid: string;
  name: string;
  utilGpuPct: number | null;
  utilMemPct: number | null;
  memUsedMiB: number | null;
  memTotalMiB: number | null;
  tempC: number | null;
  powerW: number | null;
  powerLimitW: number | null;
  /** Field name → bracketed text nvidia-smi printed instead of a value, e.g. `memory.used: "N/A"`. */
  unavailable: Record<string, string>;
  /** Set when a field carried an NVML error (not just N/A / Not Supported): the GPU is in trouble. */
  error?: string;
}

export interface ComputeApp {
  pid: number;
  /** MiB; null when the driver does not report per-process memory. */
  usedMiB: number | null;
  gpuUuid: string;
}

/** Bracketed values that only mean "this GPU does not report that", not a fault. */
const BENIGN_UNAVAILABLE = new Set(['N/A', 'Not Supported']);

type ParsedField = { value: number | null; unavailable?: string };

function parseNumberField(raw: string): ParsedField {
  const text = raw.trim();
  const bracket = /^\[(.*)\]$/.exec(text);
  if (bracket) return { value: null, unavailable: bracket[1]!.trim() };
  if (text === 'N/A' || text === '') return { value: null, unavailable: 'N/A' };
  const value = Number(text);
  if (!Number.isFinite(value)) return { value: null, unavailable: text };
  return { value };
}

export type GpuLineResult =
  | { kind: 'gpu'; reading: GpuReading }
  /** A line that is not a GPU row (nvidia-smi's own messages, e.g. "Unable to determine the device handle ..."). */
  | { kind: 'message'; text: string };

/** Parse one `--query-gpu` line. Never throws: anything that is not a row comes back as a message. */
export function parseGpuLine(line: string): GpuLineResult | undefined {
  const text = line.replace(/\r$/, '').trim();
  if (text.length === 0) return undefined;
  const cells = text.split(',').map((c) => c.trim());
  // GPU names never contain commas in practice; if one did, the extra cells belong to the name.
  if (cells.length > GPU_QUERY_FIELDS.length) {
    const extra = cells.length - GPU_QUERY_FIELDS.length;
    const name = cells.slice(2, 3 + extra).join(', ');
    cells.splice(2, extra + 1, name);
  }
  if (cells.length !== GPU_QUERY_FIELDS.length || !/^\d+$/.test(cells[0]!) || !/^(GPU|MIG)-/.test(cells[1]!)) {
    return { kind: 'message', text };
  }
  const unavailable: Record<string, string> = {};
  let error: string | undefined;
  const num = (i: number): number | null => {
    const parsed = parseNumberField(cells[i]!);
    if (parsed.unavailable !== undefined) {
      unavailable[GPU_QUERY_FIELDS[i]!] = parsed.unavailable;
      if (!BENIGN_UNAVAILABLE.has(parsed.unavailable) && error === undefined) error = parsed.unavailable;
    }
    return parsed.value;
  };
  const reading: GpuReading = {
    index: Number(cells[0]),
    uuid: cells[1]!,
    name: cells[2]!,
    utilGpuPct: num(3),
    utilMemPct: num(4),
    memUsedMiB: num(5),
    memTotalMiB: num(6),
    tempC: num(7),
    powerW: num(8),
    powerLimitW: num(9),
    unavailable,
  };
  if (error !== undefined) reading.error = error;
  return { kind: 'gpu', reading };
}

/**
 * Groups the endless `-lms` stream into one batch per loop iteration. nvidia-smi prints every GPU
 * in index order each iteration, so a row whose index does not increase starts a new batch; the
 * caller also calls `flush()` when the stream goes quiet, so the last batch is not held back a
 * whole interval.
 */
export class GpuBatcher {
  private current: GpuReading[] = [];
  private messages: string[] = [];

  constructor(private readonly onBatch: (gpus: GpuReading[], messages: string[]) => void) {}

  push(line: string): void {
    const parsed = parseGpuLine(line);
    if (!parsed) return;
    if (parsed.kind === 'message') {
      // nvidia-smi prints such lines at the start of an iteration: they end the previous batch.
      this.flush();
      this.messages.push(parsed.text);
      return;
    }
    const last = this.current[this.current.length - 1];
    if (last !== undefined && parsed.reading.index <= last.index) this.flush();
    this.current.push(parsed.reading);
  }

  flush(): void {
    if (this.current.length === 0) return;
    const gpus = this.current;
    const messages = this.messages;
    this.current = [];
    this.messages = [];
    this.onBatch(gpus, messages);
  }

  /** Messages seen since the last batch (e.g. what nvidia-smi printed before it exited). */
  pendingMessages(): string[] {
    return [...this.messages];
  }
}

/** Parse a whole recorded `--query-gpu` stream into its batches (tests and tools). */
export function parseGpuStream(text: string): Array<{ gpus: GpuReading[]; messages: string[] }> {
  const batches: Array<{ gpus: GpuReading[]; messages: string[] }> = [];
  const batcher = new GpuBatcher((gpus, messages) => batches.push({ gpus, messages }));
  for (const line of text.split('\n')) batcher.push(line);
  batcher.flush();
  return batches;
}

/** Parse `--query-compute-apps=pid,used_memory,gpu_uuid` output; lines that are not rows are skipped. */
export function parseComputeApps(text: string): ComputeApp[] {
  const apps: ComputeApp[] = [];
  for (const line of text.split('\n')) {
    const cells = line.trim().split(',').map((c) => c.trim());
    if (cells.length !== 3 || !/^\d+$/.test(cells[0]!) || !/^(GPU|MIG)-/.test(cells[2]!)) continue;
    apps.push({ pid: Number(cells[0]), usedMiB: parseNumberField(cells[1]!).value, gpuUuid: cells[2]! });
  }
  return apps;
}

/** What nvidia-smi's exit says about the machine. */
export type NvidiaSmiExitMeaning = 'no_gpu' | 'transient';

/**
 * Exit codes from `man nvidia-smi`: 6 "a query to find an object was unsuccessful" (No devices were
 * found), 9 "NVIDIA driver is not loaded", 12 "NVML shared library couldn't be found or loaded".
 * These will not fix themselves by retrying, so the meter reports "no NVIDIA GPU" and stops.
 */
export function classifyNvidiaSmiExit(exitCode: number | undefined, output: string): NvidiaSmiExitMeaning {
  if (exitCode === 6 || exitCode === 9 || exitCode === 12) return 'no_gpu';
  if (/No devices were found|couldn't communicate with the NVIDIA driver|NVML Shared Library Not Found|Driver\/library version mismatch/i.test(output)) {
    return 'no_gpu';
  }
  return 'transient';
}

/** `MemTotal - MemAvailable` from /proc/meminfo text, in MiB (the GB10 unified memory pool). */
export function parseMeminfo(text: string): { totalMiB: number; usedMiB: number } | undefined {
  const kb = (key: string): number | undefined => {
    const m = new RegExp(`^${key}:\\s+(\\d+)\\s*kB`, 'm').exec(text);
    return m ? Number(m[1]) : undefined;
  };
  const total = kb('MemTotal');
  const available = kb('MemAvailable') ?? kb('MemFree');
  if (total === undefined || available === undefined) return undefined;
  return { totalMiB: Math.round(total / 1024), usedMiB: Math.round((total - available) / 1024) };
}
