/**
 * GPU meter: one long-running `nvidia-smi --query-gpu ... -lms N` per supervisor, restarted with
 * exponential backoff if it dies, plus a periodic `--query-compute-apps` to attribute VRAM to the
 * sandbox's processes. No nvidia-smi / no driver / no device: reports "no NVIDIA GPU" once and
 * never retries.
 */
import { readFile } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import { execa } from 'execa';
import type { Clock } from '../shared/clock.js';
import { systemClock } from '../shared/clock.js';
import {
  classifyNvidiaSmiExit,
  computeAppsQueryArgs,
  gpuQueryArgs,
  GpuBatcher,
  parseComputeApps,
  parseMeminfo,
  type ComputeApp,
  type GpuReading,
} from './nvidia-smi.js';

export const NO_GPU_MESSAGE = 'no NVIDIA GPU';
export const UNIFIED_MEMORY_NOTE =
  'unified memory (no separate VRAM): memory shows system memory use, shared by CPU and GPU';

export interface GpuDeviceSample {
  index: number;
  uuid: string;
  name: string;
  util_gpu_pct: number | null;
  util_mem_pct: number | null;
  mem_used_mib: number | null;
  mem_total_mib: number | null;
  /** `vram`: the GPU's own memory; `system`: unified memory, read from /proc/meminfo; `unavailable`. */
  mem_source: 'vram' | 'system' | 'unavailable';
  temp_c: number | null;
  power_w: number | null;
  power_limit_w: number | null;
  /** VRAM held by processes of the sandbox tree on this GPU (MiB); null when not known yet. */
  sandbox_mem_mib: number | null;
  /** Fields the driver did not report, with what it printed instead (`N/A`, `Not Supported`, ...). */
  unavailable?: Record<string, string>;
  /** The GPU reported an error instead of values (e.g. `GPU is lost`). */
  error?: string;
}

export interface GpuSample {
  ts: number;
  gpus: GpuDeviceSample[];
  /** Sum of sandbox_mem_mib over GPUs (null when attribution is not available). */
  sandbox_mem_mib: number | null;
  /** Sandbox processes holding GPU memory. */
  sandbox_processes: Array<{ pid: number; gpu_uuid: string; used_mib: number | null }>;
  /** Lines nvidia-smi printed that were not GPU rows (driver messages), since the previous sample. */
  messages?: string[];
  note?: string;
}

export type GpuMeterState = 'idle' | 'starting' | 'running' | 'restarting' | 'no_gpu' | 'stopped';

export interface GpuMeterEvents {
  onSample?(sample: GpuSample): void;
  /** Called once when the meter concludes there is no usable NVIDIA GPU. */
  onNoGpu?(reason: string): void;
  /** GPUs present in the previous sample that are missing or failing now. */
  onVanished?(gpus: Array<{ index: number; uuid: string; name: string; reason: string }>): void;
  /** nvidia-smi died and will be restarted after `delayMs`. */
  onRestart?(info: { exitCode: number | undefined; signal: string | undefined; delayMs: number; output: string; stalled: boolean }): void;
}

export interface GpuMeterOptions extends GpuMeterEvents {
  intervalMs: number;
  /** Binary name or path (looked up on env.PATH). */
  binary?: string;
  env?: NodeJS.ProcessEnv;
  /** How often compute apps are queried for VRAM attribution (only while the sandbox has processes). */
  appsIntervalMs?: number;
  /** Pids of the sandbox tree right now (for attribution). */
  sandboxPids?: () => ReadonlySet<number>;
  readMeminfo?: () => Promise<string>;
  clock?: Clock;
  /** First restart delay; doubles per consecutive failure up to maxBackoffMs. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** A run that lasted this long resets the backoff. */
  healthyRunMs?: number;
  /** Quiet time after the last line before a batch is emitted. */
  quietFlushMs?: number;
  /** No output for this long: nvidia-smi is hung (it can be, on a GPU that fell off the bus); kill and restart it. */
  stallMs?: number;
}

interface RunningChild {
  kill(): void;
  done: Promise<void>;
}

export class GpuMeter {
  private stateValue: GpuMeterState = 'idle';
  private reason: string | undefined;
  private child: RunningChild | undefined;
  private restartTimer: NodeJS.Timeout | undefined;
  private appsTimer: NodeJS.Timeout | undefined;
  private appsInFlight = false;
  private apps: ComputeApp[] = [];
  private appsKnown = false;
  private failures = 0;
  private latestValue: GpuSample | undefined;
  private readonly failing = new Set<string>();
  private previous = new Map<string, { index: number; name: string }>();
  private unified = false;
  private readonly clock: Clock;
  private readonly binary: string;

  constructor(private readonly opts: GpuMeterOptions) {
    this.clock = opts.clock ?? systemClock;
    this.binary = opts.binary ?? 'nvidia-smi';
  }

  state(): GpuMeterState {
    return this.stateValue;
  }

  /** Why the meter is in its state (no_gpu reason, last exit). */
  stateReason(): string | undefined {
    return this.reason;
  }

  latest(): GpuSample | undefined {
    return this.latestValue;
  }

  unifiedMemory(): boolean {
    return this.unified;
  }

  start(): void {
    if (this.stateValue !== 'idle') return;
    this.spawn();
    const appsEvery = this.opts.appsIntervalMs ?? 5000;
    this.appsTimer = setInterval(() => void this.refreshApps(), appsEvery);
    this.appsTimer.unref();
  }

  async stop(): Promise<void> {
    this.stateValue = 'stopped';
    if (this.restartTimer) clearTimeout(this.restartTimer);
    if (this.appsTimer) clearInterval(this.appsTimer);
    this.restartTimer = undefined;
    this.appsTimer = undefined;
    const child = this.child;
    this.child = undefined;
    if (child) {
      child.kill();
      await child.done;
    }
  }

  private spawn(): void {
    this.stateValue = this.failures === 0 ? 'starting' : 'restarting';
    const startedAt = this.clock.monotonic();
    const subprocess = execa(this.binary, gpuQueryArgs(this.opts.intervalMs), {
      env: this.opts.env ?? process.env,
      extendEnv: false,
      reject: false,
      stdin: 'ignore',
      buffer: false,
      // nvidia-smi is a plain CLI; make sure a stop never waits on it for long.
      forceKillAfterDelay: 2000,
    });
    const tail: string[] = [];
    const remember = (line: string): void => {
      tail.push(line);
      if (tail.length > 20) tail.shift();
    };
    let quietTimer: NodeJS.Timeout | undefined;
    let lastOutputAt = this.clock.monotonic();
    let stalled = false;
    const stallMs = this.opts.stallMs ?? Math.max(30_000, 10 * this.opts.intervalMs);
    const watchdog = setInterval(() => {
      if (this.clock.monotonic() - lastOutputAt < stallMs) return;
      stalled = true;
      subprocess.kill('SIGKILL');
    }, Math.max(50, Math.round(stallMs / 4)));
    watchdog.unref();
    const batcher = new GpuBatcher((gpus, messages) => void this.onBatch(gpus, messages));
    const stdout = subprocess.stdout ? createInterface({ input: subprocess.stdout, crlfDelay: Infinity }) : undefined;
    stdout?.on('line', (line) => {
      lastOutputAt = this.clock.monotonic();
      remember(line);
      batcher.push(line);
      if (quietTimer) clearTimeout(quietTimer);
      quietTimer = setTimeout(() => batcher.flush(), this.opts.quietFlushMs ?? 50);
      quietTimer.unref();
    });
    const stderr = subprocess.stderr ? createInterface({ input: subprocess.stderr, crlfDelay: Infinity }) : undefined;
    stderr?.on('line', remember);

    let killed = false;
    const done = (async () => {
      const result = await subprocess;
      clearInterval(watchdog);
      if (quietTimer) clearTimeout(quietTimer);
      batcher.flush();
      if (killed || this.stateValue === 'stopped') return;
      this.child = undefined;
      const output = tail.join('\n');
      if (result.code === 'ENOENT' || result.code === 'EACCES') {
        this.noGpu(`${this.binary} not found or not executable (${result.code})`);
        return;
      }
      if (classifyNvidiaSmiExit(result.exitCode, output) === 'no_gpu') {
        const firstLine = tail.find((l) => l.trim().length > 0)?.trim();
        this.noGpu(`nvidia-smi exited with code ${result.exitCode ?? '?'}${firstLine ? `: ${firstLine}` : ''}`);
        return;
      }
      const ranMs = this.clock.monotonic() - startedAt;
      if (ranMs >= (this.opts.healthyRunMs ?? 60_000)) this.failures = 0;
      const initial = this.opts.initialBackoffMs ?? 1000;
      const delayMs = Math.min(this.opts.maxBackoffMs ?? 300_000, initial * 2 ** this.failures);
      this.failures++;
      this.stateValue = 'restarting';
      this.reason = stalled
        ? `nvidia-smi printed nothing for ${Math.round(stallMs / 1000)} s and was killed`
        : `nvidia-smi exited (${result.signal ?? `code ${result.exitCode ?? '?'}`})`;
      this.opts.onRestart?.({ exitCode: result.exitCode, signal: result.signal, delayMs, output, stalled });
      this.restartTimer = setTimeout(() => {
        this.restartTimer = undefined;
        if (this.stateValue === 'restarting') this.spawn();
      }, delayMs);
      this.restartTimer.unref();
    })();
    this.child = {
      kill: () => {
        killed = true;
        subprocess.kill();
      },
      done,
    };
  }

  private noGpu(reason: string): void {
    this.stateValue = 'no_gpu';
    this.reason = reason;
    if (this.appsTimer) clearInterval(this.appsTimer);
    this.appsTimer = undefined;
    this.opts.onNoGpu?.(reason);
  }

  private async onBatch(readings: GpuReading[], messages: string[]): Promise<void> {
    if (this.stateValue === 'stopped') return;
    this.stateValue = 'running';
    this.reason = undefined;
    // First rows of a run: attribute VRAM now rather than one apps interval later.
    if (!this.appsKnown) void this.refreshApps();
    const needsSystemMemory = readings.some(isUnifiedMemory);
    this.unified = needsSystemMemory;
    let system: { totalMiB: number; usedMiB: number } | undefined;
    if (needsSystemMemory) {
      try {
        system = parseMeminfo(await (this.opts.readMeminfo ?? (() => readFile('/proc/meminfo', 'utf8')))());
      } catch {
        system = undefined;
      }
    }
    const sandboxPids = this.opts.sandboxPids?.() ?? new Set<number>();
    const sandboxApps = this.appsKnown ? this.apps.filter((a) => sandboxPids.has(a.pid)) : [];
    const gpus = readings.map((r) => toDeviceSample(r, system, this.appsKnown ? sandboxApps : undefined));
    const sample: GpuSample = {
      ts: this.clock.now(),
      gpus,
      sandbox_mem_mib: this.appsKnown ? sum(gpus.map((g) => g.sandbox_mem_mib ?? 0)) : null,
      sandbox_processes: sandboxApps.map((a) => ({ pid: a.pid, gpu_uuid: a.gpuUuid, used_mib: a.usedMiB })),
    };
    if (messages.length > 0) sample.messages = messages;
    if (needsSystemMemory) sample.note = UNIFIED_MEMORY_NOTE;
    this.latestValue = sample;
    this.detectVanished(readings, messages);
    this.opts.onSample?.(sample);
  }

  private detectVanished(readings: GpuReading[], messages: string[]): void {
    const now = new Map(readings.map((r) => [r.uuid, r]));
    const gone: Array<{ index: number; uuid: string; name: string; reason: string }> = [];
    for (const [uuid, prev] of this.previous) {
      const current = now.get(uuid);
      if (this.failing.has(uuid)) continue;
      if (!current) {
        gone.push({ ...prev, uuid, reason: messages.find((m) => /GPU|device/i.test(m)) ?? 'no longer listed by nvidia-smi' });
        this.failing.add(uuid);
      } else if (current.error !== undefined) {
        gone.push({ ...prev, uuid, reason: current.error });
        this.failing.add(uuid);
      }
    }
    // A GPU that reports values again may fail again later (and be reported again).
    for (const r of readings) if (r.error === undefined) this.failing.delete(r.uuid);
    for (const r of readings) this.previous.set(r.uuid, { index: r.index, name: r.name });
    if (gone.length > 0) this.opts.onVanished?.(gone);
  }

  /** Query compute apps for VRAM attribution; skipped when the sandbox has no processes. */
  async refreshApps(): Promise<void> {
    if (this.appsInFlight || this.stateValue !== 'running') return;
    const pids = this.opts.sandboxPids?.();
    if (!pids || pids.size === 0) {
      this.apps = [];
      this.appsKnown = true;
      return;
    }
    this.appsInFlight = true;
    try {
      const result = await execa(this.binary, computeAppsQueryArgs(), {
        env: this.opts.env ?? process.env,
        extendEnv: false,
        reject: false,
        stdin: 'ignore',
        timeout: 10_000,
      });
      if (result.exitCode === 0) {
        this.apps = parseComputeApps(String(result.stdout));
        this.appsKnown = true;
      }
    } finally {
      this.appsInFlight = false;
    }
  }
}

/** No VRAM figures, but no fault either: the GPU shares system memory (DGX Spark / GB10). */
function isUnifiedMemory(r: GpuReading): boolean {
  return r.memTotalMiB === null && r.error === undefined && r.unavailable['memory.total'] !== undefined;
}

function toDeviceSample(
  r: GpuReading,
  system: { totalMiB: number; usedMiB: number } | undefined,
  sandboxApps: ComputeApp[] | undefined,
): GpuDeviceSample {
  const unified = isUnifiedMemory(r);
  const device: GpuDeviceSample = {
    index: r.index,
    uuid: r.uuid,
    name: r.name,
    util_gpu_pct: r.utilGpuPct,
    util_mem_pct: r.utilMemPct,
    mem_used_mib: unified ? (system?.usedMiB ?? null) : r.memUsedMiB,
    mem_total_mib: unified ? (system?.totalMiB ?? null) : r.memTotalMiB,
    mem_source: unified ? (system ? 'system' : 'unavailable') : r.memTotalMiB === null ? 'unavailable' : 'vram',
    temp_c: r.tempC,
    power_w: r.powerW,
    power_limit_w: r.powerLimitW,
    sandbox_mem_mib: sandboxApps
      ? sum(sandboxApps.filter((a) => a.gpuUuid === r.uuid).map((a) => a.usedMiB ?? 0))
      : null,
  };
  if (Object.keys(r.unavailable).length > 0) device.unavailable = { ...r.unavailable };
  if (r.error !== undefined) device.error = r.error;
  return device;
}

function sum(values: number[]): number {
  return values.reduce((a, b) => a + b, 0);
}
