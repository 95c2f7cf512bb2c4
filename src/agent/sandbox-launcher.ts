/**
 * Adapter from the agent supervisor to the sandbox driver service (`ctx.service('sandbox')`).
 * The driver runs one long-lived sandboxed process per launch with pipes for stdout/stderr;
 * this file turns that into an AgentLauncher (line-split output, exit status, stop with grace).
 */
import { lstatSync, readlinkSync } from 'node:fs';
import type { Readable } from 'node:stream';
import type { SupervisorContext, SupervisorService } from '../control/types.js';
import type { SandboxLaunchRequest, SandboxServiceApi } from '../sandbox/index.js';
import { NemoclawError } from '../shared/errors.js';
import type { AgentLauncher, AgentProcessSpec, ExitStatus, LaunchedProcess, OutputStream } from './supervise.js';

/**
 * What the agent adds to the sandbox service's launch request. The driver must bind these
 * read-only (opened as root and passed by fd, since $NEMOCLAW_HOME is 0700) and add the env.
 */
export interface AgentLaunchExtras {
  /** Added to the policy's environment. */
  env: Record<string, string>;
  /** Host directories bound read-only inside (the agent's Node and package, the blueprint). */
  readOnlyBinds: Array<{ source: string; target: string }>;
}

interface SandboxProcessHandle {
  rootPid: number;
  pids(): number[];
  stdout: Readable | null;
  stderr: Readable | null;
  wait(): Promise<{ code: number | null; signal: string | null }>;
  kill(signal?: NodeJS.Signals): void;
}

function isSandboxService(s: SupervisorService | undefined): s is SandboxServiceApi {
  return typeof (s as Partial<SandboxServiceApi> | undefined)?.launch === 'function';
}

function netnsOf(pid: number | 'self'): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

/** A pid inside the sandbox's network namespace (bwrap's outer process stays in the host's). */
/** How long a found pid is trusted before the sandbox's process list is read again (see `pid`). */
const PID_RECHECK_MS = 1_000;

export function pidInOwnNetns(pids: number[], fallback: number): number {
  const host = netnsOf('self');
  for (const pid of pids) {
    const ns = netnsOf(pid);
    if (ns && ns !== host) return pid;
  }
  return fallback;
}

function pipeLines(stream: Readable | null, name: OutputStream, onLine: (s: OutputStream, line: string) => void): void {
  if (!stream) return;
  let buf = '';
  stream.setEncoding('utf8');
  stream.on('data', (chunk: string) => {
    buf += chunk;
    let nl: number;
    while ((nl = buf.indexOf('\n')) >= 0) {
      onLine(name, buf.slice(0, nl));
      buf = buf.slice(nl + 1);
    }
    // A runaway line without newline is flushed in pieces rather than growing without bound.
    if (buf.length > 64 * 1024) {
      onLine(name, buf);
      buf = '';
    }
  });
  stream.on('end', () => {
    if (buf) onLine(name, buf);
  });
}

function sandboxService(ctx: SupervisorContext): SandboxServiceApi {
  const svc = ctx.service('sandbox');
  if (!isSandboxService(svc)) {
    throw new NemoclawError('prerequisite_missing', 'the sandbox driver service is not running in this supervisor', {
      nextStep: 'run `nemoclaw-tui doctor` and restart the supervisor (`nemoclaw-tui down && nemoclaw-tui up`)',
    });
  }
  return svc;
}

export function sandboxLauncher(ctx: SupervisorContext, opts: { stopGraceMs?: number } = {}): AgentLauncher {
  return {
    /**
     * The driver creates the workdir and gives it to the sandbox's uid at launch. Before the very
     * first launch (it does not exist yet, or is still root's) a no-op command lets the driver do
     * that with its own identity rules, so the agent's config can then be written with the right owner.
     */
    async prepareWorkdir(workdir: string): Promise<void> {
      let owner: number | undefined;
      try {
        owner = lstatSync(workdir).uid; // the supervisor's path; never follow a link there
      } catch {
        owner = undefined;
      }
      if (owner !== undefined && (owner !== 0 || process.getuid?.() !== 0)) return;
      const sb = await sandboxService(ctx).launch({ command: ['/bin/true'], stdio: 'pipe' });
      sb.stdout?.resume();
      sb.stderr?.resume();
      await sb.wait();
    },

    async launch(spec: AgentProcessSpec, onLine): Promise<LaunchedProcess> {
      const svc = sandboxService(ctx);
      const request: SandboxLaunchRequest & AgentLaunchExtras = {
        command: spec.argv,
        cwd: spec.cwd,
        env: spec.env,
        readOnlyBinds: spec.readOnlyBinds,
        stdio: 'pipe',
        // The agent's main process: `exec` / `connect` join its network namespace (its gateway port).
        role: 'agent',
      };
      const handle: SandboxProcessHandle = await svc.launch(request);
      pipeLines(handle.stdout, 'stdout', onLine);
      pipeLines(handle.stderr, 'stderr', onLine);
      const exited: Promise<ExitStatus> = handle.wait().then((st) => ({ code: st.code, signal: st.signal }));
      let net: { pid: number; ns: string; checkedAt: number } | undefined;
      const proc: LaunchedProcess = {
        get pid() {
          // Resolved lazily (the sandbox's inner processes appear right after the launch), and again
          // whenever the one found is gone: its number may belong to a host process by now (pids
          // wrap), whose /proc/PID/net is the host's, and a healthy gateway would look deaf.
          // Read per agent.log line and per health probe, so the cheap check (one readlink: still
          // in the sandbox's own netns) runs every time, and the scan of the sandbox's process
          // tree (is it still one of ours?) at most once a second.
          if (net && netnsOf(net.pid) === net.ns) {
            const now = Date.now();
            if (now - net.checkedAt < PID_RECHECK_MS) return net.pid;
            if (handle.pids().includes(net.pid)) {
              net.checkedAt = now;
              return net.pid;
            }
          }
          const pid = pidInOwnNetns(handle.pids(), handle.rootPid);
          const ns = netnsOf(pid);
          net = pid !== handle.rootPid && ns !== undefined ? { pid, ns, checkedAt: Date.now() } : undefined;
          return pid;
        },
        exited,
        async stop() {
          handle.kill('SIGTERM');
          const grace = new Promise<'timeout'>((r) => setTimeout(() => r('timeout'), opts.stopGraceMs ?? 10_000).unref());
          if ((await Promise.race([exited, grace])) === 'timeout') handle.kill('SIGKILL');
          await exited;
        },
      };
      return proc;
    },
  };
}
