/**
 * `rules list [--json]` and `rules rm ID [--reason TEXT] [--json]`: the operator's rules (always and
 * time-boxed ones in overlay.yaml, session ones until the supervisor restarts). Removing one is a
 * policy revision in the audit log, like every policy change; a host it allowed is held again.
 */
import type { Command } from 'commander';
import type { RuleView } from '../../control/index.js';
import { cleanDecisionReason } from '../../egress/index.js';
import { NemoclawError } from '../../shared/errors.js';
import { EXIT, action, commandGroup, hostFlags, hostOptions, humanDuration, nameFlag } from '../util.js';
import type { CommandModule } from './index.js';

/** How long a rule lasts, as a column: `always`, `until restart`, or the time left of a time-boxed one. */
export function ruleLifetime(r: Pick<RuleView, 'scope' | 'expires_in_ms'>): string {
  if (r.expires_in_ms !== null) return `${humanDuration(r.expires_in_ms)} left`;
  return r.scope === 'session' ? 'until restart' : 'always';
}

/** The target of a rule as one word: `host:port`, `host:*` for every port. */
export function ruleTarget(r: Pick<RuleView, 'host' | 'port'>): string {
  return `${r.host}:${r.port === 'any' ? '*' : String(r.port)}`;
}

/** The rules as a table (the same columns `pending` shows for its time-boxed grants). */
export function ruleTable(rules: readonly RuleView[]): string[] {
  const lines = [`${'ID'.padEnd(11)} ${'ACTION'.padEnd(6)} ${'HOST:PORT'.padEnd(34)} ${'BINARY'.padEnd(22)} ${'LASTS'.padEnd(14)} REASON`];
  for (const r of rules) {
    lines.push(`${r.id.padEnd(11)} ${r.action.padEnd(6)} ${ruleTarget(r).padEnd(34)} ${(r.binary ?? 'any').padEnd(22)} ${ruleLifetime(r).padEnd(14)} ${r.reason ?? ''}`.trimEnd());
  }
  return lines;
}

export const rulesCommands: CommandModule = {
  register(program: Command): void {
    const rules = commandGroup(program, 'rules', 'list and remove the operator\'s rules (always / time-boxed / session allows and denies)');

    hostOptions(rules.command('list'))
      .alias('ls')
      .description('list the operator\'s rules: always and time-boxed ones (overlay.yaml) and session ones')
      .option('--json', 'print the rules as JSON')
      .action(
        action(async (ctx, opts: { json?: boolean }) => {
          const list = await (await ctx.supervisorClient()).rules();
          if (opts.json) {
            ctx.json(list);
            return EXIT.ok;
          }
          if (list.length === 0) {
            ctx.out('no operator rules (approve a held request with --always, --session or --for to add one)');
            return EXIT.ok;
          }
          for (const l of ruleTable(list)) ctx.out(l);
          ctx.out(`remove one with \`nemoclaw-tui${nameFlag(ctx.name)} rules rm ID${hostFlags(ctx)}\``);
          return EXIT.ok;
        }),
      );

    hostOptions(rules.command('rm'))
      .alias('remove')
      .description('remove an operator rule (a new policy revision; a host it allowed is held for approval again)')
      .argument('<id>', 'rule id (see `nemoclaw-tui rules list`)')
      .option('--reason <text>', 'why, in a few words (into the revision and the audit log)')
      .option('--json', 'print the removed rule and the new revision as JSON')
      .action(
        action(async (ctx, id: string, opts: { reason?: string; json?: boolean }) => {
          const reason = opts.reason === undefined ? undefined : cleanDecisionReason(opts.reason);
          if (opts.reason !== undefined && reason === undefined) {
            throw new NemoclawError('invalid_input', '--reason is empty (after removing control characters)', { exitCode: EXIT.usage, nextStep: 'give a few words, or leave --reason out' });
          }
          const r = await (await ctx.supervisorClient()).removeRule(id, 'cli', reason);
          if (opts.json) {
            ctx.json(r);
            return EXIT.ok;
          }
          ctx.out(`removed ${r.removed.id}: ${r.removed.action} ${ruleTarget(r.removed)} for ${r.removed.binary ?? 'any binary'} (${ruleLifetime(r.removed)}); policy revision ${r.revision.number}`);
          return EXIT.ok;
        }),
      );
  },
};
