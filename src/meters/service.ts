/**
 * The meters service: samples GPUs and the sandbox's process tree at 1 Hz (configurable), sends
 * every sample to live subscribers (`publishTransient`), keeps a ring in memory, and writes one
 * summary per minute to the audit log. `status()` carries the latest sample of each meter.
 */
import type { AuditEvent } from '../audit/events.js';
import type { ControlRoute, SupervisorContext, SupervisorOptions, SupervisorService } from '../control/types.js';
import type { Clock } from '../shared/clock.js';
import { BudgetMeter } from './budget.js';
import { GpuMeter, NO_GPU_MESSAGE, type GpuSample } from './gpu.js';
import { releaseProcessHistory, sampleProcesses, type MeteredInstance, type ProcessSource, type ProcSample } from './proc.js';
import { SampleRing, summarizeGpu, summarizeProc } from './ring.js';

export const DEFAULT_INTERVAL_MS = 1000;
export const DEFAULT_SUMMARY_INTERVAL_MS = 60_000;
const MIN_INTERVAL_MS = 100;

export interface MetersServiceOptions {
  /** Sampling interval (default 1000 ms; env NEMOCLAW_METER_INTERVAL_MS). */
  intervalMs?: number;
  /** Audit summary interval (default one minute). */
  summaryIntervalMs?: number;
  /** Samples kept in memory per meter (default 600). */
  ringSize?: number;
  /** nvidia-smi binary name or path (default `nvidia-smi` on PATH; env NEMOCLAW_NVIDIA_SMI). */
  nvidiaSmi?: string;
  /** Environment for nvidia-smi (its PATH decides which binary runs). */
  env?: NodeJS.ProcessEnv;
  /** false: no GPU meter at all. */
  gpu?: boolean;
  appsIntervalMs?: number;
  gpuInitialBackoffMs?: number;
  gpuMaxBackoffMs?: number;
  /** Kill and restart nvidia-smi after this long without output (default max(30 s, 10 intervals)). */
  gpuStallMs?: number;
  /** Default: the sandbox driver's instances (`ctx.service('sandbox')`). */
  processSource?: ProcessSource;
  readMeminfo?: () => Promise<string>;
  cgroupRoot?: string;
}

/** The shape the sandbox driver exposes (only what the meters read). */
interface SandboxDriverLike extends SupervisorService {
  instances(): MeteredInstance[];
}

/** Reads the sandbox driver's instances on every sample, so sandboxes started later are measured. */
export function sandboxProcessSource(ctx: SupervisorContext): ProcessSource {
  return {
    instances(): MeteredInstance[] {
      const driver = ctx.service<SandboxDriverLike>('sandbox');
      if (!driver || typeof driver.instances !== 'function') return [];
      return driver.instances();
    },
  };
}

function positiveInt(value: unknown): number | undefined {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  return typeof n === 'number' && Number.isFinite(n) && n > 0 ? Math.round(n) : undefined;
}

/** Options from the supervisor (`options.meters`) and the environment; bad values fall back with a warning. */
export function metersOptionsFrom(
  options: SupervisorOptions,
  env: NodeJS.ProcessEnv = process.env,
): { options: MetersServiceOptions; warnings: string[] } {
  const warnings: string[] = [];
  const given = (typeof options.meters === 'object' && options.meters !== null ? options.meters : {}) as MetersServiceOptions;
  const out: MetersServiceOptions = { ...given };
  const fromEnv = env.NEMOCLAW_METER_INTERVAL_MS;
  if (out.intervalMs === undefined && fromEnv !== undefined) {
    const n = positiveInt(fromEnv);
    if (n === undefined) {
      warnings.push(`NEMOCLAW_METER_INTERVAL_MS="${fromEnv}" is not a positive number of milliseconds; using ${DEFAULT_INTERVAL_MS}`);
    } else {
      out.intervalMs = n;
    }
  }
  if (out.intervalMs !== undefined && out.intervalMs < MIN_INTERVAL_MS) {
    warnings.push(`meter interval ${out.intervalMs} ms is below ${MIN_INTERVAL_MS} ms; using ${MIN_INTERVAL_MS}`);
    out.intervalMs = MIN_INTERVAL_MS;
  }
  if (out.nvidiaSmi === undefined && env.NEMOCLAW_NVIDIA_SMI) out.nvidiaSmi = env.NEMOCLAW_NVIDIA_SMI;
  if (out.env === undefined) out.env = env;
  return { options: out, warnings };
}

function isoSample<T extends { ts: number }>(sample: T): Omit<T, 'ts'> & { ts: string } {
  return { ...sample, ts: new Date(sample.ts).toISOString() };
}

/** Event fields of a sample: the bus stamps its own `ts`, so the sample's is left out. */
function fieldsOf<T extends { ts: number }>(sample: T): Omit<T, 'ts'> {
  const { ts: _ts, ...rest } = sample;
  return rest;
}

export class MetersService implements SupervisorService {
  readonly name = 'meters';
  private ctx: SupervisorContext | undefined;
  private clock: Clock | undefined;
  private gpu: GpuMeter | undefined;
  private readonly budget = new BudgetMeter();
  private readonly gpuRing: SampleRing<GpuSample>;
  private readonly procRing: SampleRing<ProcSample>;
  private latestProc: ProcSample | undefined;
  private sandboxPids = new Set<number>();
  private procTimer: NodeJS.Timeout | undefined;
  private summaryTimer: NodeJS.Timeout | undefined;
  private lastSummaryAt = 0;
  private unsubscribe: (() => void) | undefined;
  private running = false;
  private samplingDone: Promise<void> = Promise.resolve();
  private noGpuReason: string | undefined;
  private readonly intervalMs: number;
  private readonly summaryIntervalMs: number;

  constructor(
    private readonly opts: MetersServiceOptions = {},
    private readonly warnings: string[] = [],
  ) {
    this.intervalMs = Math.max(MIN_INTERVAL_MS, opts.intervalMs ?? DEFAULT_INTERVAL_MS);
    this.summaryIntervalMs = opts.summaryIntervalMs ?? DEFAULT_SUMMARY_INTERVAL_MS;
    const ringSize = opts.ringSize ?? 600;
    this.gpuRing = new SampleRing(ringSize);
    this.procRing = new SampleRing(ringSize);
  }

  async start(ctx: SupervisorContext): Promise<void> {
    this.ctx = ctx;
    this.clock = ctx.clock;
    this.running = true;
    this.lastSummaryAt = ctx.clock.now();
    const source = this.opts.processSource ?? sandboxProcessSource(ctx);

    this.unsubscribe = ctx.events.subscribe((event: AuditEvent) => this.budget.observe(event), {
      kinds: ['budget.update', 'inference.done'],
    });

    if (this.opts.gpu !== false) {
      const gpuOpts: ConstructorParameters<typeof GpuMeter>[0] = {
        intervalMs: this.intervalMs,
        clock: ctx.clock,
        sandboxPids: () => this.sandboxPids,
        onSample: (sample) => this.onGpuSample(sample),
        onNoGpu: (reason) => this.onNoGpu(reason),
        onVanished: (gpus) => {
          const names = gpus.map((g) => `GPU ${g.index} (${g.name}, ${g.uuid}): ${g.reason}`).join('; ');
          ctx.events.emit({ kind: 'gpu.sample', level: 'warn', id: 'gpu', vanished: gpus, message: `GPU vanished: ${names}` });
        },
        onRestart: (info) => {
          ctx.events.emit({
            kind: 'gpu.sample',
            level: 'warn',
            id: 'gpu',
            action: 'nvidia-smi.restart',
            exit_code: info.exitCode ?? null,
            signal: info.signal ?? null,
            retry_in_ms: info.delayMs,
            output: info.output.slice(-2000),
            stalled: info.stalled,
            message: `${info.stalled ? 'nvidia-smi hung (no output)' : 'nvidia-smi exited'}; restarting in ${Math.round(info.delayMs / 1000)} s`,
          });
        },
      };
      if (this.opts.nvidiaSmi !== undefined) gpuOpts.binary = this.opts.nvidiaSmi;
      if (this.opts.env !== undefined) gpuOpts.env = this.opts.env;
      if (this.opts.appsIntervalMs !== undefined) gpuOpts.appsIntervalMs = this.opts.appsIntervalMs;
      if (this.opts.readMeminfo !== undefined) gpuOpts.readMeminfo = this.opts.readMeminfo;
      if (this.opts.gpuInitialBackoffMs !== undefined) gpuOpts.initialBackoffMs = this.opts.gpuInitialBackoffMs;
      if (this.opts.gpuMaxBackoffMs !== undefined) gpuOpts.maxBackoffMs = this.opts.gpuMaxBackoffMs;
      if (this.opts.gpuStallMs !== undefined) gpuOpts.stallMs = this.opts.gpuStallMs;
      this.gpu = new GpuMeter(gpuOpts);
      this.gpu.start();
    }

    this.scheduleProc(source, 0);
    this.summaryTimer = setInterval(() => this.writeSummaries(), this.summaryIntervalMs);
    this.summaryTimer.unref();
  }

  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    try {
      if (this.procTimer) clearTimeout(this.procTimer);
      if (this.summaryTimer) clearInterval(this.summaryTimer);
      this.unsubscribe?.();
      await this.gpu?.stop();
      await this.samplingDone.catch(() => undefined);
      // The last partial window still goes to the audit log, so short runs leave a record.
      this.writeSummaries();
      releaseProcessHistory();
    } catch {
      // stop() must not throw; everything above is best effort.
    }
  }

  status(): Record<string, unknown> {
    const now = this.clock?.now() ?? Date.now();
    const gpuLatest = this.gpu?.latest();
    const gpuState = this.opts.gpu === false ? 'disabled' : (this.gpu?.state() ?? 'idle');
    const gpu: Record<string, unknown> = {
      state: gpuState,
      latest: gpuLatest ? isoSample(gpuLatest) : null,
    };
    if (gpuState === 'no_gpu') gpu.message = NO_GPU_MESSAGE;
    const reason = this.gpu?.stateReason();
    if (reason) gpu.reason = reason;
    if (gpuLatest?.note) gpu.note = gpuLatest.note;
    const status: Record<string, unknown> = {
      interval_ms: this.intervalMs,
      summary_interval_ms: this.summaryIntervalMs,
      gpu,
      proc: this.latestProc ? isoSample(this.latestProc) : null,
      budget: this.budget.status(now),
    };
    if (this.warnings.length > 0) status.warnings = [...this.warnings];
    return status;
  }

  routes(): ControlRoute[] {
    return [
      {
        method: 'GET',
        path: '/v1/meters/history',
        handler: (req) => {
          const limitRaw = req.query.get('limit');
          const limit = limitRaw === null ? undefined : positiveInt(limitRaw);
          if (limitRaw !== null && limit === undefined) {
            return { status: 400, body: { error: 'invalid_input', message: `limit "${limitRaw}" is not a positive integer`, next_step: 'pass ?limit=N with N >= 1' } };
          }
          const tail = <T>(items: T[]): T[] => (limit === undefined ? items : items.slice(-limit));
          return {
            status: 200,
            body: {
              interval_ms: this.intervalMs,
              gpu: tail(this.gpuRing.toArray()).map(isoSample),
              proc: tail(this.procRing.toArray()).map(isoSample),
            },
          };
        },
      },
    ];
  }

  /** Samples kept in memory (oldest first). */
  history(): { gpu: GpuSample[]; proc: ProcSample[] } {
    return { gpu: this.gpuRing.toArray(), proc: this.procRing.toArray() };
  }

  private onGpuSample(sample: GpuSample): void {
    if (!this.running || !this.ctx) return;
    this.gpuRing.push(sample);
    this.ctx.events.publishTransient({ kind: 'gpu.sample', level: 'debug', id: 'gpu', ...fieldsOf(sample) });
  }

  private onNoGpu(reason: string): void {
    if (!this.ctx || this.noGpuReason !== undefined) return;
    this.noGpuReason = reason;
    this.ctx.events.emit({ kind: 'gpu.sample', level: 'notice', id: 'gpu', available: false, message: NO_GPU_MESSAGE, reason });
  }

  private scheduleProc(source: ProcessSource, delayMs: number): void {
    if (!this.running) return;
    this.procTimer = setTimeout(() => {
      const started = Date.now();
      this.samplingDone = this.sampleProc(source).finally(() => {
        this.scheduleProc(source, Math.max(0, this.intervalMs - (Date.now() - started)));
      });
    }, delayMs);
    this.procTimer.unref();
  }

  private async sampleProc(source: ProcessSource): Promise<void> {
    if (!this.ctx) return;
    let sample: ProcSample;
    const pids = new Set<number>();
    try {
      sample = await sampleProcesses(source, this.ctx.clock.now(), {
        collectPids: pids,
        ...(this.opts.cgroupRoot ? { cgroupRoot: this.opts.cgroupRoot } : {}),
      });
    } catch {
      return;
    }
    if (!this.running) return;
    this.latestProc = sample;
    this.sandboxPids = pids;
    // Nothing to measure: keep status current but do not send empty samples to subscribers.
    if (sample.instances.length === 0) return;
    this.procRing.push(sample);
    this.ctx.events.publishTransient({ kind: 'proc.sample', level: 'debug', id: 'proc', ...fieldsOf(sample), ...this.workdirDiskFields() });
  }

  /** The workdir's size limit and usage (sandbox service, looked up structurally) for the Meters pane. */
  private workdirDiskFields(): Record<string, unknown> {
    const disk = this.ctx?.service<SupervisorService & { workdirDisk?(): { mode: string; used_bytes?: number; limit_bytes?: number; avail_bytes?: number } | undefined }>('sandbox')?.workdirDisk?.();
    if (!disk) return {};
    return {
      disk_mode: disk.mode,
      ...(disk.used_bytes !== undefined ? { disk_used_bytes: disk.used_bytes } : {}),
      ...(disk.limit_bytes !== undefined ? { disk_limit_bytes: disk.limit_bytes } : {}),
    };
  }

  private writeSummaries(): void {
    if (!this.ctx) return;
    const now = this.ctx.clock.now();
    const since = this.lastSummaryAt;
    this.lastSummaryAt = now;
    const windowMs = now - since;
    const gpu = summarizeGpu(this.gpuRing.since(since), windowMs);
    if (gpu) this.ctx.events.emit({ kind: 'gpu.sample', level: 'info', id: 'gpu', summary: gpu });
    const proc = summarizeProc(this.procRing.since(since), windowMs);
    if (proc) this.ctx.events.emit({ kind: 'proc.sample', level: 'info', id: 'proc', summary: proc });
  }
}

/** Factory for src/control/services.ts. */
export function createMetersService(options: SupervisorOptions): MetersService {
  const { options: meterOptions, warnings } = metersOptionsFrom(options);
  return new MetersService(meterOptions, warnings);
}
