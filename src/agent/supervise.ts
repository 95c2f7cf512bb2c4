/**
 * Keeps the agent's main process alive inside the sandbox: start, health-check (listening on
 * its port within a deadline), restart with exponential backoff when it dies or never becomes
 * healthy, and report every step as `sandbox.lifecycle` events and every output line as
 * `agent.log`. How the process is started (the sandbox driver) is injected.
 */
import { readFileSync } from 'node:fs';
import type { EventInput } from '../audit/events.js';
import { isNemoclawError } from '../shared/errors.js';
import { parseProcNetTcp } from '../shared/procfs.js';

export interface ReadOnlyBind {
  /** Host path. */
  source: string;
  /** Path inside the sandbox. */
  target: string;
}

export interface AgentProcessSpec {
  argv: string[];
  env: Record<string, string>;
  readOnlyBinds: ReadOnlyBind[];
  /** Working directory inside the sandbox. */
  cwd: string;
}

export interface ExitStatus {
  code: number | null;
  signal: string | null;
}

export interface LaunchedProcess {
  /** Host pid of a process inside the sandbox's network namespace (for the listening check). */
  pid: number;
  exited: Promise<ExitStatus>;
  /** Terminate (TERM, then KILL after a grace period); resolves when gone. */
  stop(): Promise<void>;
}

export type OutputStream = 'stdout' | 'stderr';

export interface AgentLauncher {
  launch(spec: AgentProcessSpec, onLine: (stream: OutputStream, line: string) => void): Promise<LaunchedProcess>;
  /**
   * Make sure the sandbox's workdir exists and belongs to the sandbox's uid before the agent's
   * files are written into it (optional: launchers without a separate uid need nothing).
   */
  prepareWorkdir?(workdir: string): Promise<void>;
}

export type HealthCheck =
  /**
   * Healthy once something listens on this TCP port in the process's network namespace. After
   * `timeoutMs` an agent still writing output (within `quietMs`, default 15 s: a state migration, a
   * first install) gets more time, up to `maxWaitMs` (default 8 × timeoutMs, at least 5 min);
   * a silent one is stopped then.
   */
  | { kind: 'listen'; port: number; timeoutMs: number; maxWaitMs?: number; quietMs?: number }
  /** Healthy as soon as it started (scripted agents such as the drill). */
  | { kind: 'started' };

export type RestartPolicy = 'always' | 'on-failure' | 'never';

export interface SuperviseOptions {
  spec: AgentProcessSpec;
  launcher: AgentLauncher;
  health: HealthCheck;
  restart: RestartPolicy;
  emit: (event: EventInput) => void;
  /** First restart delay; doubles per consecutive failure up to maxBackoffMs. */
  initialBackoffMs?: number;
  maxBackoffMs?: number;
  /** A run that stayed up this long resets the backoff. */
  stableAfterMs?: number;
  /** How often the listening check looks. */
  probeIntervalMs?: number;
  /** Replaceable for tests; default reads /proc/PID/net/tcp{,6}. */
  isListening?: (pid: number, port: number) => boolean;
  monotonic?: () => number;
}

export type AgentState = 'idle' | 'starting' | 'healthy' | 'backoff' | 'stopped' | 'failed';

export interface AgentStatus {
  state: AgentState;
  pid: number | undefined;
  restarts: number;
  lastExit: ExitStatus | undefined;
  nextRestartInMs: number | undefined;
}

const MAX_LINE = 4096;
// eslint-disable-next-line no-control-regex
const ANSI_RE = /\u001b\[[0-9;?]*[ -/]*[@-~]/g;

const TCP_LISTEN = 0x0a;

/** The local ports of the sockets in LISTEN in a /proc/PID/net/tcp{,6} table. */
export function listeningPorts(procNetTcpText: string): Set<number> {
  const ports = new Set<number>();
  for (const entry of parseProcNetTcp(procNetTcpText)) {
    if (entry.state === TCP_LISTEN && Number.isFinite(entry.localPort)) ports.add(entry.localPort);
  }
  return ports;
}

export function procIsListening(pid: number, port: number): boolean {
  for (const file of ['tcp', 'tcp6']) {
    try {
      if (listeningPorts(readFileSync(`/proc/${pid}/net/${file}`, 'utf8')).has(port)) return true;
    } catch {
      // Process gone or no IPv6: not listening there.
    }
  }
  return false;
}

export function backoffDelay(failures: number, initialMs: number, maxMs: number): number {
  return Math.min(maxMs, initialMs * 2 ** Math.max(0, failures - 1));
}

export class AgentSupervisor {
  private readonly opts: Required<Omit<SuperviseOptions, 'isListening' | 'monotonic'>> & {
    isListening: (pid: number, port: number) => boolean;
    monotonic: () => number;
  };
  private state: AgentState = 'idle';
  private current: LaunchedProcess | undefined;
  private restarts = 0;
  private failures = 0;
  private lastExit: ExitStatus | undefined;
  private nextRestartAt: number | undefined;
  private stopping = false;
  private timer: NodeJS.Timeout | undefined;
  private wake: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  /** When the current agent process last wrote a line (monotonic ms). */
  private lastOutputAt: number | undefined;

  constructor(opts: SuperviseOptions) {
    this.opts = {
      initialBackoffMs: 1000,
      maxBackoffMs: 60_000,
      stableAfterMs: 60_000,
      probeIntervalMs: 250,
      isListening: procIsListening,
      monotonic: () => performance.now(),
      ...opts,
    };
  }

  start(): void {
    if (this.loop) return;
    this.loop = this.run();
  }

  status(): AgentStatus {
    return {
      state: this.state,
      pid: this.current?.pid,
      restarts: this.restarts,
      lastExit: this.lastExit,
      nextRestartInMs:
        this.nextRestartAt === undefined ? undefined : Math.max(0, Math.round(this.nextRestartAt - this.opts.monotonic())),
    };
  }

  async stop(): Promise<void> {
    this.stopping = true;
    if (this.timer) clearTimeout(this.timer);
    this.wake?.();
    const proc = this.current;
    if (proc) await proc.stop().catch(() => undefined);
    await this.loop?.catch(() => undefined);
    if (this.state !== 'stopped') {
      this.state = 'stopped';
      this.lifecycle('stopped', 'info', {});
    }
  }

  private lifecycle(state: string, level: EventInput['level'], fields: Record<string, unknown>): void {
    this.opts.emit({ kind: 'sandbox.lifecycle', level, action: `agent.${state}`, ...fields });
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      this.wake = resolve;
      this.timer = setTimeout(resolve, ms);
    });
  }

  private async run(): Promise<void> {
    const { emit, spec, launcher, health, restart } = this.opts;
    for (let attempt = 1; !this.stopping; attempt++) {
      this.state = 'starting';
      this.lifecycle('starting', 'info', { attempt, argv: spec.argv });
      const startedAt = this.opts.monotonic();
      let proc: LaunchedProcess;
      try {
        proc = await launcher.launch(spec, (stream, raw) => {
          const line = raw.replace(ANSI_RE, '').slice(0, MAX_LINE);
          if (line.trim().length === 0) return;
          this.lastOutputAt = this.opts.monotonic();
          emit({ kind: 'agent.log', level: stream === 'stderr' ? 'warn' : 'info', stream, line, pid: this.current?.pid });
        });
      } catch (err) {
        this.lifecycle('launch_failed', 'error', {
          attempt,
          reason: err instanceof Error ? err.message : String(err),
          ...(isNemoclawError(err) && err.nextStep ? { next_step: err.nextStep } : {}),
        });
        this.lastExit = undefined;
        if (!(await this.scheduleRestart(restart === 'never' ? 'never' : 'always', true))) return;
        continue;
      }
      this.current = proc;
      // stop() may have arrived while the launch was in flight: it found no process to stop, so
      // this loop must stop the one it just got, or it would wait on it forever.
      if (this.stopping) await proc.stop().catch(() => undefined);
      let exited: ExitStatus | undefined;
      void proc.exited.then((st) => {
        exited = st;
      });
      const healthy = await this.waitHealthy(proc, health, () => exited !== undefined, startedAt);
      if (healthy) {
        this.state = 'healthy';
        this.lifecycle('healthy', 'info', { pid: proc.pid, after_ms: Math.round(this.opts.monotonic() - startedAt) });
      } else if (!this.stopping && exited === undefined) {
        const waited = Math.round(this.opts.monotonic() - startedAt);
        const reason =
          health.kind === 'listen'
            ? waited > health.timeoutMs + 1000
              ? `not listening on port ${health.port} after ${waited} ms (silent for ${Math.round(this.opts.monotonic() - (this.lastOutputAt ?? startedAt))} ms, or past the longest wait)`
              : `not listening on port ${health.port} after ${health.timeoutMs} ms`
            : 'unhealthy';
        this.lifecycle('unhealthy', 'warn', { pid: proc.pid, reason });
        await proc.stop().catch(() => undefined);
      }
      const status = await proc.exited;
      this.current = undefined;
      this.lastExit = status;
      const uptime = this.opts.monotonic() - startedAt;
      const failed = !healthy || status.code !== 0;
      this.lifecycle('exited', failed && !this.stopping ? 'warn' : 'info', {
        pid: proc.pid,
        code: status.code,
        signal: status.signal,
        uptime_ms: Math.round(uptime),
      });
      if (this.stopping) return;
      if (uptime >= this.opts.stableAfterMs && healthy) this.failures = 0;
      if (!(await this.scheduleRestart(restart, failed))) return;
    }
  }

  /** Wait out the backoff; false when the policy says not to restart (or stop was requested). */
  private async scheduleRestart(policy: RestartPolicy, failed: boolean): Promise<boolean> {
    if (policy === 'never' || (policy === 'on-failure' && !failed)) {
      this.state = failed ? 'failed' : 'stopped';
      this.lifecycle(failed ? 'failed' : 'completed', failed ? 'error' : 'info', { restarts: this.restarts });
      return false;
    }
    this.failures++;
    const delay = backoffDelay(this.failures, this.opts.initialBackoffMs, this.opts.maxBackoffMs);
    this.state = 'backoff';
    this.nextRestartAt = this.opts.monotonic() + delay;
    this.lifecycle('restarting', 'warn', { in_ms: delay, restarts: this.restarts + 1 });
    await this.sleep(delay);
    this.nextRestartAt = undefined;
    if (this.stopping) return false;
    this.restarts++;
    return true;
  }

  private async waitHealthy(proc: LaunchedProcess, health: HealthCheck, hasExited: () => boolean, startedAt: number): Promise<boolean> {
    if (health.kind === 'started') return true;
    const deadline = startedAt + health.timeoutMs;
    const longest = startedAt + (health.maxWaitMs ?? Math.max(health.timeoutMs * 8, 300_000));
    const quietMs = health.quietMs ?? 15_000;
    let extended = false;
    while (!this.stopping && !hasExited()) {
      if (this.opts.isListening(proc.pid, health.port)) return true;
      const now = this.opts.monotonic();
      if (now >= deadline) {
        // Never SIGTERM an agent that is visibly making progress: it gets the longer wait.
        const busy = this.lastOutputAt !== undefined && this.lastOutputAt >= startedAt && now - this.lastOutputAt < quietMs;
        if (!busy || now >= longest) return false;
        if (!extended) {
          extended = true;
          this.lifecycle('health_wait_extended', 'info', {
            pid: proc.pid,
            reason: `not listening on port ${health.port} after ${health.timeoutMs} ms but still writing output; waiting while it does, up to ${Math.round(longest - startedAt)} ms`,
          });
        }
      }
      await this.sleep(this.opts.probeIntervalMs);
    }
    return false;
  }
}
