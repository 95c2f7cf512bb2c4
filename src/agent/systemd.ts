/**
 * Reboot recovery: a systemd unit that runs the supervisor in the foreground
 * (`nemoclaw-tui up --foreground --name N`). On start the supervisor restores the agent the
 * sandbox was created with (agent.json) and the operator's overlay rules (overlay.yaml).
 */
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, join } from 'node:path';
import { NemoclawError } from '../shared/errors.js';

export interface SystemdUnitOptions {
  name: string;
  /** Absolute path of the Node binary to run the entry with (the pinned Node 24). */
  nodePath: string;
  /** Absolute path of bin/nemoclaw-tui.js. */
  binPath: string;
  /** $NEMOCLAW_HOME to pin in the unit. */
  home: string;
  scope: 'user' | 'system';
  /** Extra environment for the supervisor (e.g. provider key variable names are NOT put here). */
  env?: Record<string, string>;
}

export interface SystemdInstallResult {
  unitName: string;
  path: string;
  content: string;
  changed: boolean;
  /** Commands the operator (or we) run next, as argument arrays. */
  enableCommands: string[][];
}

/** systemd quoting for ExecStart arguments and Environment values. */
function quoteArg(arg: string): string {
  if (/^[A-Za-z0-9_@%+=:,./-]+$/.test(arg)) return arg;
  return `"${arg.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\$/g, '$$$$').replace(/%/g, '%%')}"`;
}

export function unitName(name: string): string {
  return `nemoclaw-tui-${name}.service`;
}

export function renderSystemdUnit(opts: SystemdUnitOptions): string {
  for (const p of [opts.nodePath, opts.binPath, opts.home]) {
    if (!p.startsWith('/') || /[\n\r]/.test(p)) {
      throw new NemoclawError('invalid_input', `the systemd unit needs absolute paths without newlines, got "${p}"`, {
        nextStep: 'set NEMOCLAW_HOME to an absolute path and run the command from the installed package',
      });
    }
  }
  const env = { NEMOCLAW_HOME: opts.home, NEMOCLAW_NO_REEXEC: '1', NO_COLOR: '1', ...(opts.env ?? {}) };
  const lines = [
    '# Written by `nemoclaw-tui service install`; re-run it to update, `nemoclaw-tui service uninstall` to remove.',
    '[Unit]',
    `Description=nemoclaw-tui supervisor of sandbox ${opts.name}`,
    'After=network-online.target',
    'Wants=network-online.target',
    '',
    '[Service]',
    'Type=simple',
    `ExecStart=${[opts.nodePath, opts.binPath, 'up', '--foreground', '--name', opts.name].map(quoteArg).join(' ')}`,
    ...Object.entries(env).map(([k, v]) => `Environment=${quoteArg(`${k}=${v}`)}`),
    // SIGTERM makes the supervisor flush the audit log and stop the sandbox cleanly.
    'KillMode=mixed',
    'KillSignal=SIGTERM',
    'TimeoutStopSec=30',
    'Restart=on-failure',
    'RestartSec=5',
    '',
    '[Install]',
    `WantedBy=${opts.scope === 'user' ? 'default.target' : 'multi-user.target'}`,
    '',
  ];
  return lines.join('\n');
}

export function unitPath(scope: 'user' | 'system', name: string, env: NodeJS.ProcessEnv = process.env): string {
  if (scope === 'system') return join('/etc/systemd/system', unitName(name));
  const configHome = env.XDG_CONFIG_HOME && env.XDG_CONFIG_HOME.startsWith('/') ? env.XDG_CONFIG_HOME : join(env.HOME || homedir(), '.config');
  return join(configHome, 'systemd', 'user', unitName(name));
}

/** Write the unit (unless dryRun) and say how to enable it. Idempotent. */
export function installSystemdUnit(
  opts: SystemdUnitOptions & { dryRun?: boolean; path?: string; env?: Record<string, string> },
  processEnv: NodeJS.ProcessEnv = process.env,
): SystemdInstallResult {
  const content = renderSystemdUnit(opts);
  const path = opts.path ?? unitPath(opts.scope, opts.name, processEnv);
  const name = unitName(opts.name);
  const ctl = opts.scope === 'user' ? ['systemctl', '--user'] : ['systemctl'];
  const enableCommands = [[...ctl, 'daemon-reload'], [...ctl, 'enable', '--now', name]];
  const before = existsSync(path) ? readFileSync(path, 'utf8') : undefined;
  const changed = before !== content;
  if (!opts.dryRun && changed) {
    try {
      mkdirSync(dirname(path), { recursive: true });
      writeFileSync(path, content, { mode: 0o644 });
    } catch (err) {
      throw new NemoclawError('io', `could not write ${path}: ${(err as Error).message}`, {
        nextStep: opts.scope === 'system' ? 'run as root, or use `service install --user`' : 'check that your home directory is writable',
      });
    }
  }
  return { unitName: name, path, content, changed, enableCommands };
}
