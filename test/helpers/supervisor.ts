/**
 * Shared test helpers: temporary $NEMOCLAW_HOME, a supervisor started in-process or as the real
 * detached daemon through the built bin, and running the CLI as a child process.
 *
 *   const home = await makeTempHome();                  // { dir, cleanup() }
 *   const t = await startTestSupervisor({ services: [myServiceFactory] });
 *   await t.client.status(); t.supervisor.events.emit({...}); await t.stop();   // stop() also removes the home
 *   const r = await runCli(['policy', 'validate', f], { home: home.dir });      // { code, stdout, stderr }
 *   const d = await startDaemonSupervisor({ policyText });  // real `up` via bin; d.stop() = `down` + cleanup
 *   const p = spawnCli(['logs', '-f', '--output', 'jsonl'], { home }); await p.waitForLine(l => …); await p.kill();
 *
 * Everything runs on the built code for CLI/daemon helpers (npm test builds first); in-process
 * helpers import src/ directly.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { execa, type ResultPromise } from 'execa';
import { ControlClient } from '../../src/control/client.js';
import { unmountBelow } from './mounts.js';
import type { ServiceFactory } from '../../src/control/services.js';
import { Supervisor, type SupervisorConfig } from '../../src/control/supervisor.js';
import { sandboxPaths, type SandboxPaths } from '../../src/shared/home.js';

export const REPO_ROOT = resolve(fileURLToPath(new URL('../..', import.meta.url)));
export const BIN = join(REPO_ROOT, 'bin', 'nemoclaw-tui.js');

/**
 * Environment that keeps the drill blueprint off the network in tests: its "allowed host" step asks
 * the router (inference.local, answered on the box) and its "unknown host" is a loopback address
 * the proxy holds and never dials. Without it the drill reaches registry.npmjs.org.
 */
export const DRILL_OFFLINE_ENV = {
  NEMOCLAW_AGENT_ENV: 'DRILL_ALLOWED_URL=http://inference.local/v1/models DRILL_UNKNOWN_URL=http://127.0.0.2:9/unknown',
} as const;

/** A minimal valid policy (no presets, one allowed host). */
export const MINIMAL_POLICY = `version: 1
network_policies:
  example:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: api.example.com
        port: 443
`;

/** Every record in an audit directory, oldest first (straight from disk, no verification). */
export function readAuditRecords(auditDir: string): Array<Record<string, unknown>> {
  return readdirSync(auditDir)
    .filter((f) => /^audit-\d+\.jsonl$/.test(f))
    .sort()
    .flatMap((f) => readFileSync(join(auditDir, f), 'utf8').split('\n'))
    .filter((l) => l.trim().length > 0)
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

export interface TempHome {
  dir: string;
  cleanup(): Promise<void>;
}

/** A fresh $NEMOCLAW_HOME under /tmp (short, so socket paths stay under the 107-byte limit). */
export async function makeTempHome(prefix = 'nct-'): Promise<TempHome> {
  const base = existsSync('/tmp') ? '/tmp' : tmpdir();
  const dir = await mkdtemp(join(base, prefix));
  return {
    dir,
    cleanup: () => {
      unmountBelow(dir);
      return rm(dir, { recursive: true, force: true });
    },
  };
}

/** Write `text` to a file in `dir` and return its path. */
export async function writeTempFile(dir: string, name: string, text: string): Promise<string> {
  const path = join(dir, name);
  await writeFile(path, text);
  return path;
}

export interface TestSupervisor {
  supervisor: Supervisor;
  home: string;
  name: string;
  paths: SandboxPaths;
  client: ControlClient;
  /** Stop the supervisor and remove the temp home (unless `home` was passed in). */
  stop(): Promise<void>;
}

export interface StartTestSupervisorOptions extends Partial<Omit<SupervisorConfig, 'home' | 'name'>> {
  /** Use this home instead of a new temp one (it is then not removed on stop). */
  home?: string;
  name?: string;
  /** Services to run; default none (a bare supervisor). */
  services?: ServiceFactory[];
}

/** A supervisor in this process on a temp home; policyText defaults to MINIMAL_POLICY. */
export async function startTestSupervisor(opts: StartTestSupervisorOptions = {}): Promise<TestSupervisor> {
  const temp = opts.home ? undefined : await makeTempHome();
  const home = opts.home ?? temp!.dir;
  const name = opts.name ?? 'default';
  const { home: _h, name: _n, ...rest } = opts;
  const config: SupervisorConfig = {
    ...rest,
    name,
    home,
    services: opts.services ?? [],
    log: opts.log ?? (() => undefined),
  };
  if (config.policyText === undefined && config.policyFile === undefined) config.policyText = MINIMAL_POLICY;
  let supervisor: Supervisor;
  try {
    supervisor = await Supervisor.start(config);
  } catch (err) {
    await temp?.cleanup();
    throw err;
  }
  return {
    supervisor,
    home,
    name,
    paths: sandboxPaths(name, home),
    client: ControlClient.forSandbox(name, home),
    stop: async () => {
      await supervisor.stop('test finished');
      await temp?.cleanup();
    },
  };
}

export interface CliResult {
  code: number;
  stdout: string;
  stderr: string;
}

export interface CliRunOptions {
  /** $NEMOCLAW_HOME for the command. */
  home: string;
  env?: Record<string, string | undefined>;
  timeoutMs?: number;
  input?: string;
}

function cliEnv(home: string, env: Record<string, string | undefined> = {}): Record<string, string | undefined> {
  // No colour or journal prefixes unless a test asks for them.
  return { ...process.env, NO_COLOR: '1', JOURNAL_STREAM: undefined, ...env, NEMOCLAW_HOME: home };
}

/** Run the built bin (`node bin/nemoclaw-tui.js …`) to completion. */
export async function runCli(args: string[], opts: CliRunOptions): Promise<CliResult> {
  const r = await execa(process.execPath, [BIN, ...args], {
    env: cliEnv(opts.home, opts.env),
    extendEnv: false,
    reject: false,
    timeout: opts.timeoutMs ?? 30_000,
    input: opts.input ?? '',
    stripFinalNewline: false,
  });
  return { code: r.exitCode ?? (r.signal ? 128 : 1), stdout: String(r.stdout ?? ''), stderr: String(r.stderr ?? '') };
}

export interface BackgroundCli {
  process: ResultPromise;
  pid: number | undefined;
  /** Lines seen so far on stdout / stderr. */
  stdoutLines: string[];
  stderrLines: string[];
  /** Resolves with the first stdout line (already seen or future) matching; rejects after timeoutMs. */
  waitForLine(match: (line: string) => boolean, timeoutMs?: number, stream?: 'stdout' | 'stderr'): Promise<string>;
  /** SIGTERM (then SIGKILL after 5 s); resolves with the exit result. */
  kill(signal?: NodeJS.Signals): Promise<CliResult>;
  /** Resolves when the process exits by itself. */
  exited: Promise<CliResult>;
}

/** Start the built bin in the background (e.g. `logs -f`), collecting its output line by line. */
export function spawnCli(args: string[], opts: CliRunOptions): BackgroundCli {
  const child = execa(process.execPath, [BIN, ...args], {
    env: cliEnv(opts.home, opts.env),
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    buffer: false,
  });
  const lines = { stdout: [] as string[], stderr: [] as string[] };
  const waiters: Array<{ stream: 'stdout' | 'stderr'; match: (l: string) => boolean; resolve: (l: string) => void }> = [];
  for (const stream of ['stdout', 'stderr'] as const) {
    let buf = '';
    child[stream]?.setEncoding('utf8');
    child[stream]?.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        lines[stream].push(line);
        for (const w of [...waiters]) {
          if (w.stream === stream && w.match(line)) {
            waiters.splice(waiters.indexOf(w), 1);
            w.resolve(line);
          }
        }
      }
    });
  }
  const exited = child.then((r) => ({
    code: r.exitCode ?? (r.signal ? 128 : 1),
    stdout: lines.stdout.join('\n'),
    stderr: lines.stderr.join('\n'),
  }));
  return {
    process: child,
    pid: child.pid,
    stdoutLines: lines.stdout,
    stderrLines: lines.stderr,
    exited,
    waitForLine(match, timeoutMs = 15_000, stream = 'stdout') {
      const seen = lines[stream].find(match);
      if (seen !== undefined) return Promise.resolve(seen);
      return new Promise<string>((resolvePromise, reject) => {
        const timer = setTimeout(() => {
          const i = waiters.findIndex((w) => w.resolve === done);
          if (i >= 0) waiters.splice(i, 1);
          reject(new Error(`no matching ${stream} line within ${timeoutMs} ms; got:\n${lines[stream].join('\n')}\nstderr:\n${lines.stderr.join('\n')}`));
        }, timeoutMs);
        function done(line: string): void {
          clearTimeout(timer);
          resolvePromise(line);
        }
        waiters.push({ stream, match, resolve: done });
      });
    },
    async kill(signal: NodeJS.Signals = 'SIGTERM') {
      child.kill(signal);
      const force = setTimeout(() => child.kill('SIGKILL'), 5_000);
      try {
        return await exited;
      } finally {
        clearTimeout(force);
      }
    },
  };
}

export interface DaemonSupervisor {
  home: string;
  name: string;
  paths: SandboxPaths;
  client: ControlClient;
  /** The output of `up`. */
  up: CliResult;
  /** `down`, then remove the temp home (unless `home` was passed in). Returns the output of `down`. */
  stop(): Promise<CliResult>;
}

/** The real detached daemon via `nemoclaw-tui up` on a temp home (policyText defaults to MINIMAL_POLICY). */
export async function startDaemonSupervisor(
  opts: { home?: string; name?: string; policyText?: string; policyFile?: string; args?: string[]; env?: Record<string, string | undefined> } = {},
): Promise<DaemonSupervisor> {
  const temp = opts.home ? undefined : await makeTempHome();
  const home = opts.home ?? temp!.dir;
  const name = opts.name ?? 'default';
  const policyFile = opts.policyFile ?? (await writeTempFile(home, `policy-${name}.yaml`, opts.policyText ?? MINIMAL_POLICY));
  const up = await runCli(['up', '--name', name, '--policy', policyFile, ...(opts.args ?? [])], { home, env: opts.env });
  if (up.code !== 0) {
    await temp?.cleanup();
    throw new Error(`nemoclaw-tui up failed (exit ${up.code}):\n${up.stdout}\n${up.stderr}`);
  }
  return {
    home,
    name,
    paths: sandboxPaths(name, home),
    client: ControlClient.forSandbox(name, home),
    up,
    stop: async () => {
      const down = await runCli(['down', '--name', name], { home, env: opts.env });
      await temp?.cleanup();
      return down;
    },
  };
}
