/**
 * `service install [--user|--system] [--dry-run]`: a systemd unit that runs this sandbox's
 * supervisor in the foreground, so the agent comes back after a reboot (with its state and the
 * operator's overlay rules, which live in $NEMOCLAW_HOME). `service uninstall` removes it.
 */
import { existsSync, rmSync } from 'node:fs';
import type { Command } from 'commander';
import { binPath } from '../../shared/package.js';
import { installSystemdUnit } from '../../agent/index.js';
import { unitPath, unitName } from '../../agent/index.js';
import { NemoclawError } from '../../shared/errors.js';
import { EXIT, action, commandGroup, type CliContext } from '../util.js';
import type { CommandModule } from './index.js';

interface ServiceOptions {
  user?: boolean;
  system?: boolean;
  dryRun?: boolean;
}

function scopeOf(opts: ServiceOptions): 'user' | 'system' {
  if (opts.user && opts.system) {
    throw new NemoclawError('invalid_input', 'choose one of --user and --system', { exitCode: EXIT.usage });
  }
  if (opts.user) return 'user';
  if (opts.system) return 'system';
  // The sandbox needs root for its network bridge and uid switch: system scope when root.
  return process.getuid?.() === 0 ? 'system' : 'user';
}

async function install(ctx: CliContext, opts: ServiceOptions): Promise<number> {
  const scope = scopeOf(opts);
  const res = installSystemdUnit(
    { name: ctx.name, nodePath: process.execPath, binPath: binPath(), home: ctx.home, scope, dryRun: opts.dryRun === true },
    ctx.io.env,
  );
  if (opts.dryRun) {
    ctx.out(`# ${res.path} (dry run, nothing written)`);
    ctx.out(res.content);
  } else {
    ctx.out(`${res.changed ? 'wrote' : 'unchanged'} ${res.path}`);
  }
  ctx.out('enable it with:');
  for (const c of res.enableCommands) ctx.out(`  ${c.join(' ')}`);
  ctx.out(`after a reboot the supervisor of "${ctx.name}" starts by itself and brings the agent back with its state and overlay rules`);
  return EXIT.ok;
}

async function uninstall(ctx: CliContext, opts: ServiceOptions): Promise<number> {
  const scope = scopeOf(opts);
  const path = unitPath(scope, ctx.name, ctx.io.env);
  const ctl = scope === 'user' ? 'systemctl --user' : 'systemctl';
  if (!existsSync(path)) {
    ctx.out(`no unit at ${path}`);
    return EXIT.ok;
  }
  if (!opts.dryRun) rmSync(path);
  ctx.out(`${opts.dryRun ? 'would remove' : 'removed'} ${path}; also run: ${ctl} disable --now ${unitName(ctx.name)} && ${ctl} daemon-reload`);
  return EXIT.ok;
}

export const serviceCommands: CommandModule = {
  register(program: Command): void {
    const group = commandGroup(program, 'service', 'run the supervisor as a systemd service (reboot recovery)');
    for (const [name, fn, desc] of [
      ['install', install, 'write a systemd unit running `up --foreground` for this sandbox'],
      ['uninstall', uninstall, 'remove the unit'],
    ] as const) {
      group
        .command(name)
        .description(desc)
        .option('--user', 'a user unit (~/.config/systemd/user)')
        .option('--system', 'a system unit (/etc/systemd/system; default when root)')
        .option('--dry-run', 'print what would be written')
        .action(action(fn));
    }
  },
};
