/**
 * `quarantine [--reason TEXT]`, `quarantine release [--reason TEXT]`, `quarantine status`: the kill
 * switch (src/control/quarantine.ts). With a supervisor running it acts through the control API;
 * with none, it writes the state file (and a release note) that `up` and the next supervisor read.
 */
import type { Command } from 'commander';
import { inspectSandbox } from '../../control/daemon.js';
import { quarantineOffline, readQuarantine, releaseOffline } from '../../control/quarantine.js';
import { cleanDecisionReason } from '../../egress/index.js';
import { NemoclawError } from '../../shared/errors.js';
import { EXIT, action, ensureHome, hostFlags, hostOptions, nameFlag, type CliContext } from '../util.js';
import type { CommandModule } from './index.js';

function reasonOf(raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  const r = cleanDecisionReason(raw);
  if (r === undefined) throw new NemoclawError('invalid_input', '--reason is empty (after removing control characters)', { exitCode: EXIT.usage, nextStep: 'give a few words, e.g. --reason "unexpected upload"' });
  return r;
}

/** Whether the command goes to a supervisor (remote, or running here) rather than to the state dir. */
async function supervised(ctx: CliContext): Promise<boolean> {
  if (ctx.remote) return true;
  return (await inspectSandbox(ctx.paths)).state === 'running';
}

interface Opts {
  reason?: string;
  json?: boolean;
}

async function enter(ctx: CliContext, opts: Opts): Promise<number> {
  const reason = reasonOf(opts.reason);
  const release = `nemoclaw-tui${nameFlag(ctx.name)} quarantine release${hostFlags(ctx)}`;
  if (await supervised(ctx)) {
    const r = await (await ctx.supervisorClient({ timeoutMs: 30_000 })).quarantine(reason, 'cli');
    if (opts.json) ctx.json(r);
    else {
      ctx.out(`${r.already ? 'already quarantined' : 'quarantined'} sandbox "${ctx.name}" since ${r.since ?? '?'} (${r.reason ?? ''}): agent stopped, all egress and inference refused, workdir kept`);
      ctx.out(`  lift it with \`${release}\``);
    }
    return EXIT.ok;
  }
  ensureHome(ctx);
  const q = quarantineOffline(ctx.paths, reason ?? 'no reason given', Date.now());
  if (opts.json) ctx.json({ quarantined: true, ...q });
  else {
    ctx.out(`quarantined sandbox "${ctx.name}" (not running) since ${q.since} (${q.reason}): \`up\` is refused until \`${release}\``);
    ctx.out('  the next supervisor to start records it in the audit log');
  }
  return EXIT.ok;
}

async function release(ctx: CliContext, opts: Opts): Promise<number> {
  const reason = reasonOf(opts.reason);
  if (await supervised(ctx)) {
    const r = await (await ctx.supervisorClient()).releaseQuarantine('cli', reason);
    if (opts.json) ctx.json(r);
    else {
      ctx.out(`released the quarantine of sandbox "${ctx.name}" (since ${r.since ?? '?'}: ${r.reason ?? ''}); egress and inference follow the policy again`);
      ctx.out(`  the agent stays stopped until the supervisor restarts: \`nemoclaw-tui${nameFlag(ctx.name)} down && nemoclaw-tui${nameFlag(ctx.name)} up\``);
    }
    return EXIT.ok;
  }
  const q = releaseOffline(ctx.paths, Date.now(), reason);
  if (!q) {
    throw new NemoclawError('not_found', `sandbox "${ctx.name}" is not quarantined`, { nextStep: `start it with \`nemoclaw-tui${nameFlag(ctx.name)} up\`` });
  }
  if (opts.json) ctx.json({ released: true, ...q });
  else ctx.out(`released the quarantine of sandbox "${ctx.name}" (since ${q.since}: ${q.reason}); \`nemoclaw-tui${nameFlag(ctx.name)} up\` starts it again (the release is recorded in the audit log then)`);
  return EXIT.ok;
}

async function show(ctx: CliContext, opts: Opts): Promise<number> {
  const q = (await supervised(ctx)) ? await (await ctx.supervisorClient()).quarantineStatus() : { quarantined: readQuarantine(ctx.paths) !== undefined, ...readQuarantine(ctx.paths) };
  if (opts.json) ctx.json(q);
  else ctx.out(q.quarantined ? `sandbox "${ctx.name}" is quarantined since ${q.since ?? '?'} (${q.reason ?? ''})` : `sandbox "${ctx.name}" is not quarantined`);
  // Exit 1 while quarantined, so scripts can gate on it.
  return q.quarantined ? EXIT.failure : EXIT.ok;
}

export const quarantineCommands: CommandModule = {
  register(program: Command): void {
    hostOptions(program.command('quarantine'))
      .description('kill switch: stop the agent, refuse all egress and inference, keep the workdir as evidence; `up` is refused until `quarantine release`')
      .argument('[action]', '`release` lifts it, `status` shows it (exit 1 while quarantined); none: quarantine now')
      .option('--reason <text>', 'why, in a few words (into the audit log; the agent\'s refusals name the quarantine)')
      .option('--json', 'print the result as JSON')
      .addHelpText('after', '\nExamples:\n  nemoclaw-tui quarantine --reason "unexpected upload to pastebin"\n  nemoclaw-tui quarantine status\n  nemoclaw-tui quarantine release --reason "reviewed the workdir"')
      .action(
        action(async (ctx, what: string | undefined, opts: Opts) => {
          if (what === undefined) return enter(ctx, opts);
          if (what === 'release') return release(ctx, opts);
          if (what === 'status') return show(ctx, opts);
          throw new NemoclawError('invalid_input', `unknown quarantine action "${what.slice(0, 40)}"`, { exitCode: EXIT.usage, nextStep: 'use `quarantine`, `quarantine release` or `quarantine status`' });
        }),
      );
  },
};
