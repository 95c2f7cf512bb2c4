/**
 * The sandbox driver as a supervisor service: it owns every sandboxed process (for `run`, later
 * `exec` and the long-running agent), the bridge and the fs-violation monitor, emits
 * `sandbox.lifecycle` and `fs.violation`, and serves the exec stream on its own socket.
 */
import { describeLandlock } from './landlock.js';
import { unlinkSync } from 'node:fs';
import { createServer, type Server, type Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { NemoclawError, isNemoclawError } from '../shared/errors.js';
import { listenUnixSocket } from '../shared/socket.js';
import type { ControlRoute, SupervisorContext, SupervisorService } from '../control/types.js';
import { createBwrapDriver, findBinary, type RunningSandbox, type SandboxDriver, type SandboxInstanceInfo } from './bwrap.js';
import { FrameDecoder, encodeFrame, execSocketPath, type ExecStart, type ExecStarted } from './exec-protocol.js';

/** Signals a client may forward to its command. */
const FORWARDABLE = new Set<string>(['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT', 'SIGUSR1', 'SIGUSR2', 'SIGKILL', 'SIGWINCH', 'SIGCONT', 'SIGTSTP']);
import { detectCgroups } from './limits.js';
import { plannedInterception, type NetworkInterception, type TransparentSockets } from './transparent.js';
import { DEFAULT_WORKDIR_LIMIT, diskUsage, ensureWorkdirDisk, releaseWorkdirDisk, withUsage, type WorkdirDiskStatus } from './workdir-disk.js';

/** What the egress service's `sandboxTrust()` gives: the CA bundle to bind and the variables that point at it. */
interface TrustBundle {
  source: string;
  target: string;
  env: Record<string, string>;
}

export interface SandboxLaunchRequest {
  command: string[];
  workdir?: string;
  cwd?: string;
  stdio?: 'pipe' | 'inherit';
  /** Extra environment over the policy's `process.env` (never over the proxy variables). */
  env?: Record<string, string>;
  /** Extra host paths bound read-only (staged from root, so they may live under $NEMOCLAW_HOME). */
  readOnlyBinds?: Array<{ source: string; target: string }>;
  /** 'agent' marks the agent's main process: `exec` joins its network namespace. */
  role?: 'agent' | 'exec';
  /** 'agent': share the agent instance's network namespace (fresh sandbox with a note if none runs). */
  join?: 'agent' | 'none';
}

/** What other services (meters, egress, agent) use. */
export interface SandboxServiceApi extends SupervisorService {
  readonly name: 'sandbox';
  instances(): SandboxInstanceInfo[];
  /** Called with the new list whenever an instance starts or exits; returns an unsubscribe function. */
  onInstancesChange(cb: (instances: SandboxInstanceInfo[]) => void): () => void;
  /** Start a command in a new sandbox (lifecycle and violation events are emitted). */
  launch(req: SandboxLaunchRequest): Promise<RunningSandbox>;
  /** The default workdir's size limit and usage; undefined before the first sandbox used it. */
  workdirDisk(): WorkdirDiskStatus | undefined;
}

export interface SandboxServiceOptions {
  driver?: SandboxDriver;
  /** Node binary bound into the sandbox (default: the supervisor's own, the pinned Node 24). */
  nodeBinary?: string;
  /** Path of `nft` for transparent interception (default: found on the host; tests point it at a missing file). */
  nftBinary?: string;
}

export function createSandboxService(opts: SandboxServiceOptions = {}): SandboxServiceApi {
  const driver = opts.driver ?? createBwrapDriver();
  const running = new Map<string, RunningSandbox>();
  const listeners = new Set<(list: SandboxInstanceInfo[]) => void>();
  const exited: Array<{ id: string; exitCode: number; at: number }> = [];
  let ctx: SupervisorContext | undefined;
  let server: Server | undefined;
  const sockets = new Set<Socket>();
  /** The default workdir's size limit: what was set up (memoised), and the disk-full watch. */
  let disk: Promise<WorkdirDiskStatus> | undefined;
  let diskState: WorkdirDiskStatus | undefined;
  let diskTimer: NodeJS.Timeout | undefined;
  let diskFull = false;

  const view = (): SandboxInstanceInfo[] =>
    [...running.values()].map((r) => ({
      id: r.id,
      rootPid: r.rootPid,
      pids: () => r.pids(),
      ...(r.cgroupPath ? { cgroupPath: r.cgroupPath } : {}),
      netMode: r.netMode,
      startedAt: r.startedAt,
      command: r.command,
      ...(r.role ? { role: r.role } : {}),
      ...(r.joined ? { joined: r.joined } : {}),
    }));

  /**
   * The agent's main instance: the one launched with role 'agent', else the oldest instance that
   * another service launched directly (run/exec come through the exec socket with role 'exec').
   */
  const agentInstance = (): RunningSandbox | undefined => {
    const all = [...running.values()];
    return all.find((r) => r.role === 'agent') ?? all.filter((r) => r.role === undefined && !r.joined).sort((a, b) => a.startedAt - b.startedAt)[0];
  };
  const changed = (): void => {
    const list = view();
    for (const l of listeners) {
      try {
        l(list);
      } catch {
        /* a listener's bug must not stop the sandbox */
      }
    }
  };

  async function launch(req: SandboxLaunchRequest): Promise<RunningSandbox> {
    if (!ctx) throw new NemoclawError('not_running', 'the sandbox service is not started');
    const c = ctx;
    if (!Array.isArray(req.command) || req.command.length === 0 || !req.command.every((a) => typeof a === 'string')) {
      throw new NemoclawError('invalid_input', 'exec needs a non-empty command (an array of strings)', {
        nextStep: 'pass the command after "--", e.g. `nemoclaw-tui run -- node agent.js`',
        exitCode: 2,
      });
    }
    const policy = c.policy.current();
    const id = `${c.clock.now().toString(36)}-${randomBytes(3).toString('hex')}`;
    const workdir = resolve(req.workdir ?? (typeof c.options.workdir === 'string' ? c.options.workdir : c.paths.workdir));
    if (workdir === resolve(c.paths.workdir) && driver.name === 'bubblewrap') await ensureDisk(c, policy.filesystem_policy.limits?.workdir ?? DEFAULT_WORKDIR_LIMIT);
    let joinTarget: RunningSandbox | undefined;
    let note: string | undefined;
    if (req.join === 'agent') {
      const agent = agentInstance();
      const root = process.getuid?.() === 0;
      if (!agent) {
        note = 'no agent sandbox is running, so the command runs in a fresh sandbox of its own (its 127.0.0.1 is not the agent\'s)';
      } else if (!root || agent.netMode !== 'bridge-outside') {
        note = `the supervisor is not root (network mode ${agent.netMode}), so the command cannot join the agent's network and runs in a fresh sandbox`;
      } else joinTarget = agent;
    }
    c.events.emit({
      kind: 'sandbox.lifecycle',
      id,
      phase: 'starting',
      command: req.command,
      workdir,
      ...(req.role ? { role: req.role } : {}),
      ...(joinTarget ? { joined: joinTarget.id } : {}),
    });
    // The egress proxy terminates TLS for L7 endpoints with a per-sandbox CA: the sandbox must
    // trust it (bundle bound read-only, the usual CA variables pointed at it). Structural lookup,
    // so the sandbox does not import the egress part.
    const trust = c
      .service<SupervisorService & { sandboxTrust?(): TrustBundle | undefined }>('egress')
      ?.sandboxTrust?.();
    // inference.local wants the per-sandbox token (never a real key): hand it to every command in
    // the sandbox, in `run` also under the names SDKs read, so `run -- python agent.py` reaches
    // the router as is.
    const inferenceToken = c.service<SupervisorService & { sandboxToken?(): string }>('inference')?.sandboxToken?.();
    const egress = c.service<SupervisorService & { attachSandboxListener?(listener: Server, target: { rootPid: number; port: number }): () => Promise<void> }>('egress');
    const attachEgress = egress?.attachSandboxListener?.bind(egress);
    const transparentEgress = c.service<SupervisorService & { attachTransparent?(sockets: TransparentSockets, target: { rootPid: number }): () => Promise<void> }>('egress');
    const attachTransparent = transparentEgress?.attachTransparent?.bind(transparentEgress);
    // Defaults only: a variable the policy's process.env sets stays the policy's.
    const policyEnv = policy.process?.env ?? {};
    const inferenceEnv: Record<string, string> = Object.fromEntries(
      Object.entries(inferenceToken ? inferenceClientEnv(inferenceToken, { sdkNames: req.role !== 'agent' && !joinTarget }) : {}).filter(
        ([k]) => !(k in policyEnv),
      ),
    );
    const env = trust || inferenceToken ? { ...inferenceEnv, ...(trust?.env ?? {}), ...(req.env ?? {}) } : req.env;
    const readOnlyBinds = trust
      ? [{ source: trust.source, target: trust.target }, ...(req.readOnlyBinds ?? [])]
      : req.readOnlyBinds;
    let sb: RunningSandbox;
    try {
      sb = await driver.launch({
        id,
        command: req.command,
        workdir,
        runDir: c.paths.runDir,
        proxySocket: c.paths.proxySocket,
        ...(attachEgress ? { attachEgress } : {}),
        ...(attachTransparent ? { attachTransparent } : {}),
        ...(opts.nftBinary ? { nftBinary: opts.nftBinary } : {}),
        filesystem: policy.filesystem_policy,
        process: policy.process,
        ...(policy.landlock ? { landlock: policy.landlock } : {}),
        // The agent's own processes (and `exec`, which joins its network) talk to its listeners.
        ...(req.role === 'agent' ? { connectPorts: { unrestricted: "the agent's processes and `exec --join agent` talk to its own listeners on loopback" } } : {}),
        nodeBinary: opts.nodeBinary ?? process.execPath,
        stdio: req.stdio ?? 'pipe',
        ...(req.cwd ? { cwd: req.cwd } : {}),
        ...(env ? { env } : {}),
        ...(readOnlyBinds ? { readOnlyBinds } : {}),
        ...(joinTarget ? { joinNetns: { pid: joinTarget.rootPid, netMode: joinTarget.netMode } } : {}),
        clock: () => c.clock.now(),
        onViolation: (v) => {
          c.events.emit({ kind: 'fs.violation', level: 'warn', id, ...v });
        },
      });
    } catch (err) {
      c.events.emit({
        kind: 'sandbox.lifecycle',
        level: 'error',
        id,
        phase: 'failed',
        message: err instanceof Error ? err.message : String(err),
      });
      throw err;
    }
    if (req.role) sb.role = req.role;
    if (joinTarget) sb.joined = joinTarget.id;
    // A joined command shares the agent's netns, so its interception too.
    if (joinTarget?.network && !sb.network) sb.network = joinTarget.network;
    if (note) sb.note = note;
    running.set(id, sb);
    c.events.emit({
      kind: 'sandbox.lifecycle',
      // Never silently: a sandbox without its Landlock layer says so at warn level.
      ...(sb.landlock.enforced ? {} : { level: 'warn' as const }),
      id,
      phase: 'running',
      pid: sb.rootPid,
      net_mode: sb.netMode,
      ...(sb.network ? { network: sb.network } : {}),
      uid: sb.identity.uid,
      monitor: sb.monitor,
      violation_source: sb.violationSource,
      landlock: sb.landlock,
      landlock_summary: describeLandlock(sb.landlock),
      limits: sb.limits,
      startup_ms: Math.round(sb.startupMs * 10) / 10,
      ...(sb.role ? { role: sb.role } : {}),
      ...(sb.joined ? { joined: sb.joined } : {}),
      ...(note ? { note } : {}),
    });
    changed();
    void sb.wait().then((st) => {
      running.delete(id);
      exited.push({ id, exitCode: st.exitCode, at: c.clock.now() });
      if (exited.length > 20) exited.shift();
      c.events.emit({
        kind: 'sandbox.lifecycle',
        level: st.exitCode === 0 ? 'info' : 'notice',
        id,
        phase: 'exited',
        pid: sb.rootPid,
        code: st.code,
        signal: st.signal,
        exit_code: st.exitCode,
      });
      changed();
    });
    return sb;
  }

  function serveExec(socket: Socket): void {
    sockets.add(socket);
    const decoder = new FrameDecoder();
    let sb: RunningSandbox | undefined;
    let starting = false;
    let finished = false;
    const pendingSignals: NodeJS.Signals[] = [];
    const send = (type: Parameters<typeof encodeFrame>[0], payload?: Buffer | string | object): void => {
      if (!socket.destroyed) socket.write(encodeFrame(type, payload));
    };
    const failAndClose = (err: unknown): void => {
      const e = isNemoclawError(err)
        ? err.toJSON()
        : { error: 'internal', message: err instanceof Error ? err.message : String(err) };
      send('F', e);
      finished = true;
      socket.end();
    };
    socket.on('data', (chunk: Buffer) => {
      let frames;
      try {
        frames = decoder.push(chunk);
      } catch (err) {
        failAndClose(new NemoclawError('invalid_input', `malformed exec stream: ${(err as Error).message}`));
        return;
      }
      for (const f of frames) {
        if (f.type === 'S' && !starting) {
          starting = true;
          let start: ExecStart;
          try {
            start = JSON.parse(f.payload.toString('utf8')) as ExecStart;
          } catch {
            failAndClose(new NemoclawError('invalid_input', 'exec start frame is not JSON', { exitCode: 2 }));
            return;
          }
          if (start.join !== undefined && start.join !== 'agent' && start.join !== 'none') {
            failAndClose(new NemoclawError('invalid_input', `exec "join" must be "agent" or "none", not ${JSON.stringify(start.join)}`, { exitCode: 2 }));
            return;
          }
          launch({
            command: start.command,
            ...(start.workdir ? { workdir: start.workdir } : {}),
            ...(start.cwd ? { cwd: start.cwd } : {}),
            ...(start.env !== undefined ? { env: start.env } : {}),
            ...(start.readOnlyBinds !== undefined ? { readOnlyBinds: start.readOnlyBinds } : {}),
            role: 'exec',
            join: start.join ?? 'agent',
          }).then(
            (s) => {
              sb = s;
              if (socket.destroyed) {
                s.kill('SIGKILL');
                return;
              }
              const started: ExecStarted = {
                id: s.id,
                pid: s.rootPid,
                net_mode: s.netMode,
                ...(s.joined ? { joined: s.joined } : {}),
                ...(s.note ? { note: s.note } : {}),
              };
              send('P', started);
              s.stdout?.on('data', (d: Buffer) => send('O', d));
              s.stderr?.on('data', (d: Buffer) => send('R', d));
              s.stdin?.on('error', () => undefined);
              for (const sig of pendingSignals.splice(0)) s.kill(sig);
              void s.wait().then(async (st) => {
                // Let the last output reach the client before the exit frame.
                await Promise.all([ended(s.stdout), ended(s.stderr)]);
                finished = true;
                send('X', st);
                socket.end();
              });
            },
            (err: unknown) => failAndClose(err),
          );
        } else if (f.type === 'I') {
          sb?.stdin?.write(f.payload);
        } else if (f.type === 'E') {
          sb?.stdin?.end();
        } else if (f.type === 'K') {
          let signal: NodeJS.Signals | undefined;
          try {
            signal = ((JSON.parse(f.payload.toString('utf8')) as { signal?: NodeJS.Signals }).signal ?? 'SIGTERM');
          } catch {
            /* ignore a malformed kill frame */
          }
          if (signal === undefined || !FORWARDABLE.has(signal)) continue;
          if (sb) sb.kill(signal);
          else if (pendingSignals.length < 8) pendingSignals.push(signal);
        }
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      sockets.delete(socket);
      // The client went away: the command does not outlive its `run`.
      if (!finished && sb) sb.kill('SIGKILL');
    });
  }

  /**
   * The default workdir gets its size limit (a loop-mounted image) before the first sandbox uses
   * it; a machine that cannot do it runs unlimited and says so (status, lifecycle event).
   */
  async function ensureDisk(c: SupervisorContext, limit: number | 'none'): Promise<void> {
    disk ??= (async () => {
      const st = await ensureWorkdirDisk({ workdir: resolve(c.paths.workdir), image: resolve(c.paths.dir, 'workdir.img'), limit, root: process.getuid?.() === 0, now: () => c.clock.now() });
      diskState = st;
      c.events.emit({
        kind: 'sandbox.lifecycle',
        level: st.mode === 'loop' ? 'info' : 'notice',
        id: 'workdir',
        workdir_disk: st.mode,
        ...(st.limit_bytes !== undefined ? { limit_bytes: st.limit_bytes } : {}),
        ...(st.reason ? { reason: st.reason } : {}),
        ...(st.kept_aside ? { kept_aside: st.kept_aside, message: `the workdir's earlier contents were copied into the image and kept at ${st.kept_aside}` } : {}),
      });
      if (st.mode === 'loop') watchDisk(c, st);
      return st;
    })();
    await disk;
  }

  /** A full workdir is reported once per crossing (fs.violation: the sandbox's writes now fail). */
  function watchDisk(c: SupervisorContext, st: WorkdirDiskStatus): void {
    const check = (): void => {
      const u = diskUsage(st.workdir);
      if (!u) return;
      const full = u.avail < Math.max(1024 * 1024, u.total * 0.005);
      if (full && !diskFull) {
        c.events.emit({
          kind: 'fs.violation',
          level: 'warn',
          id: 'workdir',
          path: '/sandbox',
          op: 'write',
          reason: 'disk_full',
          rule: `filesystem_policy.limits.workdir (${u.total} bytes)`,
          used_bytes: u.used,
          limit_bytes: u.total,
          message: 'the workdir is full: writes in /sandbox fail with ENOSPC (raise filesystem_policy.limits.workdir, or free space)',
        });
      }
      if (!full && u.avail > u.total * 0.05) diskFull = false;
      else if (full) diskFull = true;
    };
    diskTimer = setInterval(check, 2000);
    diskTimer.unref();
  }

  return {
    name: 'sandbox',
    /** The workdir's size limit and usage (meters, status). */
    workdirDisk(): WorkdirDiskStatus | undefined {
      if (!ctx) return undefined;
      return diskState ? withUsage(diskState) : undefined;
    },
    async start(context: SupervisorContext): Promise<void> {
      ctx = context;
      server = createServer(serveExec);
      await listenUnixSocket(server, execSocketPath(context.paths.dir), { what: 'sandbox exec socket' });
    },
    async stop(): Promise<void> {
      for (const sb of running.values()) sb.kill('SIGKILL');
      await Promise.all([...running.values()].map((sb) => sb.wait().catch(() => undefined)));
      for (const s of sockets) s.destroy();
      await new Promise<void>((res) => (server ? server.close(() => res()) : res()));
      if (diskTimer) clearInterval(diskTimer);
      if (ctx && diskState?.mode === 'loop') await releaseWorkdirDisk(resolve(ctx.paths.workdir));
      disk = undefined;
      diskState = undefined;
      if (ctx) {
        try {
          unlinkSync(execSocketPath(ctx.paths.dir));
        } catch {
          /* already gone */
        }
      }
    },
    status(): Record<string, unknown> {
      const cg = detectCgroups();
      const mode = supervisorMode();
      return {
        // Shown as is by `status`: the driver and the network mode this supervisor gives sandboxes.
        driver: `${driver.name}, network ${mode.network_mode}${mode.root ? '' : ` (${mode.detail})`}`,
        network_mode: mode.network_mode,
        supervisor_root: mode.root,
        cgroups: mode.root ? cg.mode : 'not used (not root)',
        // What the operator sees of the sandbox's network: the agent's, else what a new sandbox gets.
        ...networkStatus(agentInstance()?.network ?? plannedInterception({ root: mode.root, find: findBinary, ...(opts.nftBinary ? { nft: opts.nftBinary } : {}) })),
        ...(diskState ? { workdir_disk: withUsage(diskState) } : {}),
        instances: [...running.values()].map((r) => ({
          id: r.id,
          pid: r.rootPid,
          pids: r.pids(),
          net_mode: r.netMode,
          ...(r.network ? { network: r.network.summary, ...(r.network.reason ? { network_reason: r.network.reason } : {}) } : {}),
          uid: r.identity.uid,
          user: r.identity.user,
          monitor: r.monitor,
          violation_source: r.violationSource,
          landlock: r.landlock,
          landlock_summary: describeLandlock(r.landlock),
          limits: r.limits,
          seccomp: r.seccomp,
          started_at: new Date(r.startedAt).toISOString(),
          command: r.command,
          cgroup: r.cgroupPath,
          ...(r.role ? { role: r.role } : {}),
          ...(r.joined ? { joined: r.joined } : {}),
        })),
        recently_exited: exited.slice(-5),
      };
    },
    routes(): ControlRoute[] {
      return [
        {
          method: 'GET',
          path: '/v1/sandbox/instances',
          handler: () => ({
            status: 200,
            body: view().map((i) => ({ ...i, pids: i.pids() })),
          }),
        },
      ];
    },
    instances: view,
    onInstancesChange(cb) {
      listeners.add(cb);
      return () => listeners.delete(cb);
    },
    launch,
  };
}

/** The sandbox's network for status: the mode's one line, and why when it is loopback-only. */
function networkStatus(n: NetworkInterception): Record<string, unknown> {
  return { network: n.summary, ...(n.reason ? { network_reason: n.reason } : {}) };
}

/** What a supervisor running as this user can give a sandbox. */
export function supervisorMode(): { root: boolean; network_mode: 'bridge-outside' | 'relay-inside'; detail: string } {
  const root = process.getuid?.() === 0;
  return root
    ? { root, network_mode: 'bridge-outside', detail: 'root: bridge outside the sandbox, AF_UNIX blocked, fs-violation monitor, cgroups' }
    : {
        root,
        network_mode: 'relay-inside',
        detail: 'supervisor not root: relay inside the sandbox, AF_UNIX allowed, no fs-violation monitor, rlimits only',
      };
}

function ended(stream: NodeJS.ReadableStream | null): Promise<void> {
  if (!stream) return Promise.resolve();
  const s = stream as NodeJS.ReadableStream & { readableEnded?: boolean; destroyed?: boolean };
  if (s.readableEnded || s.destroyed) return Promise.resolve();
  return new Promise((r) => {
    s.once('end', () => r());
    s.once('close', () => r());
  });
}

/**
 * What a command in the sandbox needs to call inference.local. Every sandbox gets our own names;
 * `run` sandboxes also get the names unmodified OpenAI / Anthropic SDKs read. The agent and
 * commands beside it (`exec`) do not: an agent such as OpenClaw has its provider configured, and
 * seeing OPENAI_API_KEY it would also try api.openai.com on its own.
 */
export function inferenceClientEnv(token: string, opts: { sdkNames: boolean }): Record<string, string> {
  const own = { NEMOCLAW_INFERENCE_TOKEN: token, NEMOCLAW_INFERENCE_URL: 'http://inference.local/v1' };
  if (!opts.sdkNames) return own;
  return {
    ...own,
    OPENAI_BASE_URL: 'http://inference.local/v1',
    OPENAI_API_KEY: token,
    ANTHROPIC_BASE_URL: 'http://inference.local',
    ANTHROPIC_API_KEY: token,
  };
}
