import { mkdirSync, chmodSync, statSync } from 'node:fs';
import { homedir } from 'node:os';
import { join, resolve } from 'node:path';
import { NemoclawError } from './errors.js';

/**
 * All state lives under $NEMOCLAW_HOME (default ~/.nemoclaw), created 0700.
 * Per-sandbox state lives in $NEMOCLAW_HOME/sandboxes/<name>/.
 */
export interface HomePaths {
  root: string;
  sandboxesDir: string;
  credentialsFile: string;
  trustedKeysDir: string;
  blueprintStore: string;
  agentsDir: string;
}

export interface SandboxPaths {
  name: string;
  dir: string;
  /** Unix socket of the control API (0600, in a 0700 dir). */
  controlSocket: string;
  /** Unix socket of the egress proxy (bridged into the sandbox). */
  proxySocket: string;
  pidFile: string;
  /** Daemon stdout/stderr when detached. */
  daemonLog: string;
  auditDir: string;
  /** Operator overlay: "always allow/deny" rules, survives restarts. */
  overlayFile: string;
  /** The policy file the supervisor was started with (copied, so later edits elsewhere do not leak in). */
  policyFile: string;
  /** Revision history of the policy (JSON lines). */
  policyHistoryFile: string;
  /** Persisted budget state of the privacy router. */
  budgetStateFile: string;
  /** Default workdir bound to /sandbox. */
  workdir: string;
  /** Per-sandbox runtime dir for FIFOs, seccomp programs, relay sockets. */
  runDir: string;
}

export const DEFAULT_SANDBOX_NAME = 'default';

const NAME_RE = /^[a-z0-9][a-z0-9_-]{0,39}$/;

export function validateSandboxName(name: string): string {
  if (!NAME_RE.test(name)) {
    throw new NemoclawError('invalid_input', `invalid sandbox name "${name}"`, {
      nextStep: 'use 1-40 characters: lower-case letters, digits, "-" and "_", starting with a letter or digit',
      exitCode: 2,
    });
  }
  return name;
}

/** `--name` flag text for commands named in messages and next steps (empty for the default sandbox). */
export function nameFlag(name: string): string {
  return name === DEFAULT_SANDBOX_NAME ? '' : ` --name ${name}`;
}

export function resolveHome(env: NodeJS.ProcessEnv = process.env): string {
  const fromEnv = env.NEMOCLAW_HOME;
  return resolve(fromEnv && fromEnv.length > 0 ? fromEnv : join(homedir(), '.nemoclaw'));
}

/** Create a directory (and parents) and force it to 0700. */
export function ensurePrivateDir(dir: string): string {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const st = statSync(dir);
  if ((st.mode & 0o777) !== 0o700) chmodSync(dir, 0o700);
  return dir;
}

export function homePaths(root: string = resolveHome()): HomePaths {
  return {
    root,
    sandboxesDir: join(root, 'sandboxes'),
    credentialsFile: join(root, 'credentials.json'),
    trustedKeysDir: join(root, 'trusted-keys'),
    blueprintStore: join(root, 'blueprints'),
    agentsDir: join(root, 'agents'),
  };
}

export function sandboxPaths(name: string, root: string = resolveHome()): SandboxPaths {
  validateSandboxName(name);
  const dir = join(root, 'sandboxes', name);
  return {
    name,
    dir,
    controlSocket: join(dir, 'control.sock'),
    // A directory of its own: in relay-inside mode it is bound (read-only) into the sandbox, and
    // nothing else of run/ (per-launch seccomp, passwd, fifos) may be visible or writable there.
    proxySocket: join(dir, 'run', 'proxy', 'proxy.sock'),
    pidFile: join(dir, 'supervisor.pid'),
    daemonLog: join(dir, 'supervisor.log'),
    auditDir: join(dir, 'audit'),
    overlayFile: join(dir, 'overlay.yaml'),
    policyFile: join(dir, 'policy.yaml'),
    policyHistoryFile: join(dir, 'policy-history.jsonl'),
    budgetStateFile: join(dir, 'budget.json'),
    workdir: join(dir, 'workdir'),
    runDir: join(dir, 'run'),
  };
}

/** Create the home and a sandbox's private dirs (all 0700). */
export function ensureSandboxDirs(paths: SandboxPaths, root: string): void {
  ensurePrivateDir(root);
  ensurePrivateDir(join(root, 'sandboxes'));
  ensurePrivateDir(paths.dir);
  ensurePrivateDir(paths.auditDir);
  ensurePrivateDir(paths.runDir);
}
