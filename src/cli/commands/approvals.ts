/** `pending [--json]`, `approve ID [--session|--always] [--json]`, `deny ID [--always] [--reason TEXT] [--json]`; each also `--host user@box` (over ssh). */
import type { Command } from 'commander';
import { cleanDecisionReason, MAX_DECISION_REASON_CHARS, type ApprovalDecision, type DecideResult, type PendingView } from '../../egress/index.js';
import { NemoclawError } from '../../shared/errors.js';
import { EXIT, action, hostFlags, hostOptions, humanDuration, nameFlag } from '../util.js';
import type { CommandModule } from './index.js';

function describeWait(p: PendingView, now: number): string {
  const left = p.deadline === null ? 0 : Math.max(0, p.deadline - now);
  if (p.state === 'unattended') return p.deadline === null ? 'refused (nobody attached)' : `refused (nobody attached), listed ${humanDuration(left)} more`;
  return `${p.waiters} waiting, ${humanDuration(left)} left`;
}

const VERB: Record<ApprovalDecision, string> = {
  once: 'approved once',
  session: 'approved for this session',
  always: 'always allowed (written to the operator overlay)',
  deny: 'denied',
  deny_always: 'always denied (written to the operator overlay)',
};

/** What a decision did, in one line (`done`: what happened to the held requests, e.g. "resumed"). */
function describeDecision(r: DecideResult, decision: ApprovalDecision, done: string): string {
  const what = `${r.pending.id} ${r.pending.host}:${r.pending.port} ${VERB[decision]}`;
  if (!r.client_gone) return `${what}; ${r.waiters} held request(s) ${done}`;
  // Every client of the prompt closed its connection before the decision.
  const rule = decision === 'session' || decision === 'always' || decision === 'deny_always' ? '; the rule was still saved' : '';
  return `${what}; the client had already gone; nothing was forwarded${rule}`;
}

export const approvalsCommands: CommandModule = {
  register(program: Command): void {
    hostOptions(program.command('pending'))
      .description('list requests waiting for an approval (and ones refused while nobody was attached)')
      .option('--json', 'print the list as JSON')
      .action(
        action(async (ctx, opts: { json?: boolean }) => {
          const pending = await (await ctx.supervisorClient()).pending();
          if (opts.json) {
            ctx.json(pending);
            return EXIT.ok;
          }
          if (pending.length === 0) {
            ctx.out('no pending requests');
            return EXIT.ok;
          }
          const now = Date.now();
          ctx.out(`${'ID'.padEnd(8)} ${'HOST:PORT'.padEnd(36)} ${'BINARY'.padEnd(24)} ${'REQUEST'.padEnd(28)} STATE`);
          for (const p of pending) {
            const target = `${p.host}:${p.port}`;
            ctx.out(`${p.id.padEnd(8)} ${target.padEnd(36)} ${(p.binary ?? '?').padEnd(24)} ${p.request.slice(0, 28).padEnd(28)} ${describeWait(p, now)}`);
          }
          ctx.out(`decide with \`nemoclaw-tui${nameFlag(ctx.name)} approve ID [--session|--always]${hostFlags(ctx)}\` or \`nemoclaw-tui${nameFlag(ctx.name)} deny ID [--always] [--reason TEXT]${hostFlags(ctx)}\``);
          return EXIT.ok;
        }),
      );

    hostOptions(program.command('approve'))
      .description('let a held request through: once (default), for this session, or always (overlay rule)')
      .argument('<id>', 'pending id (see `nemoclaw-tui pending`)')
      .option('--session', 'allow the host:port until the supervisor restarts')
      .option('--always', 'allow the host:port for good (new policy revision, survives restarts)')
      .option('--json', 'print the decision result as JSON (client_gone: true when its client had already left)')
      .action(
        action(async (ctx, id: string, opts: { session?: boolean; always?: boolean; json?: boolean }) => {
          if (opts.session && opts.always) {
            throw new NemoclawError('invalid_input', '--session and --always exclude each other', { exitCode: EXIT.usage, nextStep: 'pick one of them' });
          }
          const decision: ApprovalDecision = opts.always ? 'always' : opts.session ? 'session' : 'once';
          const r = await (await ctx.supervisorClient()).decide(id, decision, 'cli');
          if (opts.json) ctx.json({ ...r, client_gone: r.client_gone === true });
          else ctx.out(describeDecision(r, decision, 'resumed'));
          return EXIT.ok;
        }),
      );

    hostOptions(program.command('deny'))
      .description('refuse a held request (JSON 403 to the agent); --always adds a deny rule to the overlay')
      .argument('<id>', 'pending id (see `nemoclaw-tui pending`)')
      .option('--always', 'deny the host:port for good (new policy revision, survives restarts)')
      .option('--reason <text>', `why, in a few words: written to the audit log and sent to the agent in the refusal (at most ${MAX_DECISION_REASON_CHARS} characters, control characters removed)`)
      .option('--json', 'print the decision result as JSON (client_gone: true when its client had already left)')
      .action(
        action(async (ctx, id: string, opts: { always?: boolean; reason?: string; json?: boolean }) => {
          const decision: ApprovalDecision = opts.always ? 'deny_always' : 'deny';
          const reason = opts.reason === undefined ? undefined : cleanDecisionReason(opts.reason);
          if (opts.reason !== undefined && reason === undefined) {
            throw new NemoclawError('invalid_input', '--reason is empty (after removing control characters)', { exitCode: EXIT.usage, nextStep: 'give a few words, e.g. --reason "not needed for this task"' });
          }
          const r = await (await ctx.supervisorClient()).decide(id, decision, 'cli', reason);
          if (opts.json) ctx.json({ ...r, client_gone: r.client_gone === true, ...(reason !== undefined ? { reason } : {}) });
          else ctx.out(describeDecision(r, decision, 'refused') + (reason !== undefined ? ` (reason: ${reason})` : ''));
          return EXIT.ok;
        }),
      );
  },
};
