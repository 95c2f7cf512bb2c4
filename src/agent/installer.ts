/**
 * Installs the agent's runtime under $NEMOCLAW_HOME/agents/: the pinned Node 24 (the same
 * `node-linux-<arch>` package the project itself pins) and the agent package (e.g.
 * `openclaw@2026.9.6`, ~650 MB, ~30 s). Each piece is installed into a temporary directory and
 * renamed into place only when complete, so an interrupted install never looks installed and a
 * second run only does what is missing.
 *
 * npm runs with `--ignore-scripts`: OpenClaw works without its install scripts (verified with
 * 2026.9.6), and nothing from the registry runs on the host with our privileges.
 */
import { cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, renameSync, realpathSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { NemoclawError } from '../shared/errors.js';
import { packageInfo } from '../shared/package.js';

export interface AgentRuntimeSpec {
  /** npm package of the agent, e.g. "openclaw". */
  agentPackage: string;
  agentVersion: string;
  /** Exact Node version, e.g. "24.21.0". */
  nodeVersion: string;
  arch?: 'x64' | 'arm64';
  /** Rough number of tarballs the agent install fetches, for a percentage (OpenClaw 2026.9.6: ~460). */
  packagesEstimate?: number;
  /**
   * Run once after the npm install, with the pinned Node, from the package's directory (e.g.
   * `openclaw.mjs --version`, which completes OpenClaw's own package lifecycle: the sandbox binds the
   * runtime read-only, so it cannot do that at first start). Runs as an unprivileged uid when root.
   */
  postInstall?: string[];
}

export interface AgentRuntimeLayout {
  /** Directory with bin/node; bound read-only at /opt/nemoclaw/node. */
  nodeDir: string;
  /** npm global prefix with bin/<agent> and lib/node_modules/<agent>; bound at /opt/nemoclaw/<agent>. */
  agentDir: string;
  /** The agent package's own directory inside agentDir. */
  agentPackageDir: string;
}

const MARKER = '.nemoclaw-installed.json';
const SAFE_RE = /^[a-z0-9][a-z0-9._@/-]{0,100}$/i;

export function hostArch(): 'x64' | 'arm64' {
  return process.arch === 'arm64' ? 'arm64' : 'x64';
}

export function agentRuntimeLayout(agentsDir: string, spec: AgentRuntimeSpec): AgentRuntimeLayout {
  for (const v of [spec.agentPackage, spec.agentVersion, spec.nodeVersion]) {
    if (!SAFE_RE.test(v) || v.includes('..')) {
      throw new NemoclawError('invalid_input', `invalid agent runtime name or version "${v}" in the blueprint`, {
        nextStep: 'use a plain npm package name and an exact version (e.g. openclaw 2026.9.6, node 24.21.0)',
      });
    }
  }
  const arch = spec.arch ?? hostArch();
  const agentDir = join(agentsDir, `${spec.agentPackage.replace('/', '__')}-${spec.agentVersion}`);
  return {
    nodeDir: join(agentsDir, `node-v${spec.nodeVersion}-linux-${arch}`),
    agentDir,
    agentPackageDir: join(agentDir, 'lib', 'node_modules', spec.agentPackage),
  };
}

export function isRuntimeInstalled(layout: AgentRuntimeLayout): { node: boolean; agent: boolean } {
  return { node: existsSync(join(layout.nodeDir, MARKER)), agent: existsSync(join(layout.agentDir, MARKER)) };
}

export type InstallStep =
  | { kind: 'copy-node'; description: string; from: string; target: string }
  | { kind: 'npm'; description: string; target: string; packageSpec: string; /** copy this sub-path of the prefix to target */ subPath?: string };

/** The project's own pinned Node package, when it is the wanted version (no download needed). */
export function projectNodePackage(arch: 'x64' | 'arm64', version: string, projectRoot = packageInfo().root): string | undefined {
  const dir = join(projectRoot, 'node_modules', `node-linux-${arch}`);
  try {
    const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { version?: string };
    return pkg.version === version && existsSync(join(dir, 'bin', 'node')) ? dir : undefined;
  } catch {
    return undefined;
  }
}

/** What must be done; empty when everything is installed. */
export function planAgentInstall(
  layout: AgentRuntimeLayout,
  spec: AgentRuntimeSpec,
  opts: { projectRoot?: string } = {},
): InstallStep[] {
  const steps: InstallStep[] = [];
  const installed = isRuntimeInstalled(layout);
  const arch = spec.arch ?? hostArch();
  if (!installed.node) {
    const local = projectNodePackage(arch, spec.nodeVersion, opts.projectRoot);
    steps.push(
      local
        ? { kind: 'copy-node', description: `Node ${spec.nodeVersion} (${arch}) from ${local}`, from: local, target: layout.nodeDir }
        : {
            kind: 'npm',
            description: `Node ${spec.nodeVersion} (${arch}) from the npm registry`,
            target: layout.nodeDir,
            packageSpec: `node-linux-${arch}@${spec.nodeVersion}`,
            subPath: join('lib', 'node_modules', `node-linux-${arch}`),
          },
    );
  }
  if (!installed.agent) {
    steps.push({
      kind: 'npm',
      description: `${spec.agentPackage}@${spec.agentVersion}`,
      target: layout.agentDir,
      packageSpec: `${spec.agentPackage}@${spec.agentVersion}`,
    });
  }
  return steps;
}

/** The npm command line for one step (argument array; run with the pinned Node first on PATH). */
export function npmInstallArgs(prefix: string, packageSpec: string): string[] {
  return ['install', '--prefix', prefix, '--global', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel', 'http', packageSpec];
}

export interface InstallProgress {
  step: InstallStep;
  stepIndex: number;
  stepCount: number;
  phase: 'start' | 'progress' | 'done';
  /** Tarballs fetched or taken from the cache so far (npm steps). */
  packages?: number;
  /** 0..100 when an estimate exists. */
  percent?: number;
  message: string;
}

export interface CommandRunner {
  /** Run `command args` with env; call onLine for each stdout/stderr line; resolve with the exit code. */
  (
    command: string,
    args: string[],
    opts: { env: Record<string, string | undefined>; onLine: (line: string) => void; cwd?: string; uid?: number; gid?: number },
  ): Promise<number>;
}

/** The uid/gid package code runs as on the host when we are root (nobody, as the sandbox's fallback). */
export const UNPRIVILEGED_ID = 65534;

export interface RunInstallOptions {
  spec: AgentRuntimeSpec;
  runner: CommandRunner;
  onProgress?: (p: InstallProgress) => void;
  npmCommand?: string;
  env?: NodeJS.ProcessEnv;
}

const TARBALL_RE = /\s(https?:\/\/\S+\.tgz)\b/;

/** Execute the plan. Throws NemoclawError('io') naming the failing step and npm's last lines. */
export async function runAgentInstall(steps: InstallStep[], layout: AgentRuntimeLayout, opts: RunInstallOptions): Promise<void> {
  const total = steps.length;
  // Node goes first: npm steps after it run npm under the pinned runtime.
  for (const [index, step] of steps.entries()) {
    const report = (p: Omit<InstallProgress, 'step' | 'stepIndex' | 'stepCount'>) =>
      opts.onProgress?.({ step, stepIndex: index, stepCount: total, ...p });
    report({ phase: 'start', message: `installing ${step.description}` });
    mkdirSync(dirname(step.target), { recursive: true, mode: 0o755 });
    const tmp = `${step.target}.partial-${process.pid}`;
    rmSync(tmp, { recursive: true, force: true });
    try {
      if (step.kind === 'copy-node') {
        cpSync(step.from, tmp, { recursive: true, preserveTimestamps: true });
      } else {
        const seen = new Set<string>();
        const tail: string[] = [];
        const estimate = step.packageSpec.startsWith('node-linux-') ? 1 : opts.spec.packagesEstimate;
        const pathPrefix = existsSync(join(layout.nodeDir, 'bin', 'node')) ? `${join(layout.nodeDir, 'bin')}:` : '';
        const env = { ...(opts.env ?? process.env) };
        env.PATH = `${pathPrefix}${env.PATH ?? '/usr/bin:/bin'}`;
        const code = await opts.runner(opts.npmCommand ?? 'npm', npmInstallArgs(tmp, step.packageSpec), {
          env,
          onLine: (line) => {
            tail.push(line);
            if (tail.length > 20) tail.shift();
            const m = TARBALL_RE.exec(line);
            if (m && !seen.has(m[1]!)) {
              seen.add(m[1]!);
              const percent = estimate ? Math.min(99, Math.floor((seen.size / estimate) * 100)) : undefined;
              report({
                phase: 'progress',
                packages: seen.size,
                ...(percent !== undefined ? { percent } : {}),
                message: `${step.description}: ${seen.size}${estimate ? `/~${estimate}` : ''} packages`,
              });
            }
          },
        });
        if (code !== 0) {
          throw new NemoclawError('io', `installing ${step.description} failed (npm exited with ${code})`, {
            nextStep: 'check the network access to the npm registry (and any npm proxy settings), then run `nemoclaw-tui onboard` again',
            details: { npm_output: tail.join('\n') },
          });
        }
        if (!step.subPath && opts.spec.postInstall && opts.spec.postInstall.length > 0) {
          await runPostInstall(tmp, layout, step, opts, tail);
        }
        if (step.subPath) {
          const inner = join(tmp, step.subPath);
          const tmp2 = `${tmp}-inner`;
          renameSync(inner, tmp2);
          rmSync(tmp, { recursive: true, force: true });
          renameSync(tmp2, tmp);
        }
      }
      writeFileSync(join(tmp, MARKER), `${JSON.stringify({ step: step.description, installed_at: new Date().toISOString() })}\n`);
      rmSync(step.target, { recursive: true, force: true });
      renameSync(tmp, step.target);
      report({ phase: 'done', percent: 100, message: `installed ${step.description}` });
    } catch (err) {
      rmSync(tmp, { recursive: true, force: true });
      rmSync(`${tmp}-inner`, { recursive: true, force: true });
      throw err;
    }
  }
}

/**
 * The agent package's post-install command (its own lifecycle scripts), run before the install is
 * marked complete. As root it runs as nobody on a tree it owns only for that moment, with an empty
 * HOME and a minimal environment: registry code never runs with our privileges.
 */
async function runPostInstall(prefix: string, layout: AgentRuntimeLayout, step: InstallStep, opts: RunInstallOptions, tail: string[]): Promise<void> {
  const postInstall = opts.spec.postInstall!;
  // Real paths: what the unprivileged uid must be able to walk (the agents dir may be a link).
  prefix = realpathSync(prefix);
  const nodeDir = realpathSync(layout.nodeDir);
  const packageDir = join(prefix, 'lib', 'node_modules', opts.spec.agentPackage);
  const node = join(nodeDir, 'bin', 'node');
  // As root, drop to nobody where nobody can reach the files (every parent searchable by others);
  // under a private $NEMOCLAW_HOME (0700) it cannot, and the package's own lifecycle runs as root
  // with a scrubbed environment (dependencies' install scripts stay disabled either way).
  const dropToNobody = process.getuid?.() === 0 && searchableByOthers(dirname(prefix)) && searchableByOthers(nodeDir);
  const home = mkdtempSync(join(tmpdir(), 'nemoclaw-postinstall-'));
  const fail = (what: string): never => {
    throw new NemoclawError('io', `finishing the install of ${step.description} failed (${what})`, {
      nextStep: 'run `nemoclaw-tui onboard` again; if it keeps failing, report it with the output above',
      details: { output: tail.join('\n') },
    });
  };
  try {
    const ids = `${UNPRIVILEGED_ID}:${UNPRIVILEGED_ID}`;
    if (dropToNobody) {
      if ((await opts.runner('chown', ['-R', ids, prefix, home], { env: { PATH: '/usr/bin:/bin' }, onLine: (l) => tail.push(l) })) !== 0) fail('chown');
    }
    const code = await opts.runner(node, postInstall, {
      env: { PATH: `${join(nodeDir, 'bin')}:/usr/bin:/bin`, HOME: home, NO_COLOR: '1', CI: '1', LANG: 'C.UTF-8' },
      cwd: packageDir,
      onLine: (l) => {
        tail.push(l);
        if (tail.length > 20) tail.shift();
      },
      ...(dropToNobody ? { uid: UNPRIVILEGED_ID, gid: UNPRIVILEGED_ID } : {}),
    });
    if (dropToNobody) {
      if ((await opts.runner('chown', ['-R', '0:0', prefix], { env: { PATH: '/usr/bin:/bin' }, onLine: (l) => tail.push(l) })) !== 0) fail('chown back');
    }
    if (code !== 0) fail(`\`${postInstall.join(' ')}\` exited with ${code}`);
  } finally {
    rmSync(home, { recursive: true, force: true });
  }
}

/** Can a uid other than the owner walk down to `dir` (o+x on it and every parent)? */
function searchableByOthers(dir: string): boolean {
  for (let d = dir; ; d = dirname(d)) {
    try {
      if ((statSync(d).mode & 0o001) === 0) return false;
    } catch {
      return false;
    }
    if (dirname(d) === d) return true;
  }
}

/** The real runner: execa with an argument array, stdout and stderr read line by line. */
export const execaRunner: CommandRunner = async (command, args, opts) => {
  const { execa } = await import('execa');
  const child = execa(command, args, {
    env: opts.env,
    extendEnv: false,
    reject: false,
    stdin: 'ignore',
    all: true,
    buffer: false,
    ...(opts.cwd !== undefined ? { cwd: opts.cwd } : {}),
    ...(opts.uid !== undefined ? { uid: opts.uid } : {}),
    ...(opts.gid !== undefined ? { gid: opts.gid } : {}),
  });
  let pending = '';
  child.all?.setEncoding('utf8');
  child.all?.on('data', (chunk: string) => {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf('\n')) >= 0) {
      opts.onLine(pending.slice(0, nl));
      pending = pending.slice(nl + 1);
    }
  });
  const result = await child;
  if (pending) opts.onLine(pending);
  if (result.failed && result.exitCode === undefined) {
    throw new NemoclawError('prerequisite_missing', `could not run ${command}: ${result.shortMessage ?? 'spawn failed'}`, {
      nextStep: 'install npm (it comes with Node.js), then run `nemoclaw-tui onboard` again',
    });
  }
  return result.exitCode ?? 1;
};
