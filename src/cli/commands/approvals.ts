/**
 * `pending [--json]`, `approve ID [--session|--always|--for D] [--scope S] [--binary B] [--json]`,
 * `deny ID [--always|--for D] [--scope S] [--binary B] [--reason TEXT] [--json]`; each also
 * `--host user@box` (over ssh). The scope options are the TUI chooser's, and the rule written is
 * exactly that scope (egress/grant.ts).
 */
import type { Command } from 'commander';
import type { DecisionScope } from '../../control/client.js';
import { cleanDecisionReason, describeRule, MAX_DECISION_REASON_CHARS, parseLasts, type ApprovalDecision, type DecideResult, type PendingView } from '../../egress/index.js';
import { ruleTable } from './rules.js';
import { NemoclawError } from '../../shared/errors.js';
import { EXIT, action, hostFlags, hostOptions, humanDuration, nameFlag } from '../util.js';
import type { CommandModule } from './index.js';

function describeWait(p: PendingView, now: number): string {
  const left = p.deadline === null ? 0 : Math.max(0, p.deadline - now);
  if (p.state === 'unattended') return p.deadline === null ? 'refused (nobody attached)' : `refused (nobody attached), listed ${humanDuration(left)} more`;
  return `${p.waiters} waiting, ${humanDuration(left)} left`;
}

interface ScopeOptions {
  session?: boolean;
  always?: boolean;
  for?: string;
  scope?: string;
  binary?: string;
}

const HOST_SCOPE: Record<string, DecisionScope['host']> = { exact: 'exact', 'any-port': 'any_port', any_port: 'any_port', domain: 'domain' };

/** The decision and scope the options ask for (usage errors name the option). */
export function decisionFromOptions(allow: boolean, opts: ScopeOptions): { decision: ApprovalDecision; scope: DecisionScope } {
  const given = [opts.session ? '--session' : '', opts.always ? '--always' : '', opts.for !== undefined ? '--for' : ''].filter(Boolean);
  if (given.length > 1) throw new NemoclawError('invalid_input', `${given.join(' and ')} exclude each other`, { exitCode: EXIT.usage, nextStep: 'pick one of them' });
  const lasts = opts.for !== undefined ? parseLasts(opts.for) : opts.always ? 'always' : opts.session ? 'restart' : 'once';
  const scope: DecisionScope = {};
  if (opts.scope !== undefined) {
    const h = HOST_SCOPE[opts.scope];
    if (!h) throw new NemoclawError('invalid_input', `--scope must be exact, any-port or domain (got "${opts.scope.slice(0, 20)}")`, { exitCode: EXIT.usage, nextStep: 'e.g. --scope any-port' });
    scope.host = h;
  }
  if (opts.binary !== undefined) {
    if (opts.binary !== 'this' && opts.binary !== 'any') throw new NemoclawError('invalid_input', `--binary must be this or any (got "${opts.binary.slice(0, 20)}")`, { exitCode: EXIT.usage });
    scope.binary = opts.binary;
  }
  if (lasts === 'once') {
    if (Object.keys(scope).length > 0) {
      throw new NemoclawError('invalid_input', '--scope and --binary shape a rule, and a one-time decision writes none', { exitCode: EXIT.usage, nextStep: 'add --for 15m (or 1h, restart, always)' });
    }
    return { decision: allow ? 'once' : 'deny', scope };
  }
  if (lasts === 'restart') {
    if (!allow) scope.session = true;
    return { decision: allow ? 'session' : 'deny_always', scope };
  }
  if (lasts === 'always') return { decision: allow ? 'always' : 'deny_always', scope };
  scope.duration_ms = lasts.ms;
  return { decision: allow ? 'always' : 'deny_always', scope };
}

const VERB: Record<ApprovalDecision, string> = {
  once: 'approved once',
  session: 'approved for this session',
  always: 'always allowed (written to the operator overlay)',
  deny: 'denied',
  deny_always: 'always denied (written to the operator overlay)',
};

/** What a decision did, in one line (`done`: what happened to the held requests, e.g. "resumed"). */
function describeDecision(r: DecideResult, decision: ApprovalDecision, done: string, scope: DecisionScope = {}): string {
  const timed = r.rule?.expires_at !== undefined;
  const verb = timed ? (r.rule!.action === 'allow' ? 'allowed for a time' : 'denied for a time') : scope.session ? 'denied until the supervisor restarts' : VERB[decision];
  // With a rule: exactly what it covers, as written (its scope and how long it lasts).
  const what = `${r.pending.id} ${r.pending.host}:${r.pending.port} ${verb}${r.rule ? `; rule: ${r.rule.action} ${describeRule(r.rule, decision === 'session' || scope.session === true)}` : ''}`;
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
          const client = await ctx.supervisorClient();
          const pending = await client.pending();
          if (opts.json) {
            ctx.json(pending);
            return EXIT.ok;
          }
          // Time-boxed grants and denies in force, with their time left (they end by themselves).
          const timed = (await client.rules().catch(() => [])).filter((r) => r.expires_at !== null);
          const printTimed = (): void => {
            if (timed.length === 0) return;
            ctx.out('');
            ctx.out(`time-boxed rules in force (end by themselves; \`nemoclaw-tui${nameFlag(ctx.name)} rules rm ID${hostFlags(ctx)}\` ends one now):`);
            for (const l of ruleTable(timed)) ctx.out(`  ${l}`);
          };
          if (pending.length === 0) {
            ctx.out('no pending requests');
            printTimed();
            return EXIT.ok;
          }
          const now = Date.now();
          ctx.out(`${'ID'.padEnd(8)} ${'HOST:PORT'.padEnd(36)} ${'BINARY'.padEnd(24)} ${'REQUEST'.padEnd(28)} STATE`);
          for (const p of pending) {
            const target = `${p.host}:${p.port}`;
            ctx.out(`${p.id.padEnd(8)} ${target.padEnd(36)} ${(p.binary ?? '?').padEnd(24)} ${p.request.slice(0, 28).padEnd(28)} ${describeWait(p, now)}`);
          }
          ctx.out(`decide with \`nemoclaw-tui${nameFlag(ctx.name)} approve ID [--for 15m|1h|restart|always] [--scope exact|any-port|domain] [--binary this|any]${hostFlags(ctx)}\` or \`nemoclaw-tui${nameFlag(ctx.name)} deny ID [--for …] [--reason TEXT]${hostFlags(ctx)}\``);
          printTimed();
          return EXIT.ok;
        }),
      );

    hostOptions(program.command('approve'))
      .description('let a held request through: once (default), for this session, or always (overlay rule)')
      .argument('<id>', 'pending id (see `nemoclaw-tui pending`)')
      .option('--session', 'allow until the supervisor restarts (same as --for restart)')
      .option('--always', 'allow for good (new policy revision, survives restarts; same as --for always)')
      .option('--for <duration>', 'how long the rule lasts: once (default), 15m, 1h (any Ns/Nm/Nh/Nd up to 7d; it then ends by itself), restart, always')
      .option('--scope <scope>', 'which hosts the rule covers: exact (host:port, default), any-port (this host, every port), domain (*.its-domain)')
      .option('--binary <which>', 'which programs it covers: this (the identified binary; default) or any')
      .option('--json', 'print the decision result as JSON (client_gone: true when its client had already left; rule: what was written)')
      .action(
        action(async (ctx, id: string, opts: ScopeOptions & { json?: boolean }) => {
          const { decision, scope } = decisionFromOptions(true, opts);
          const r = await (await ctx.supervisorClient()).decide(id, decision, 'cli', undefined, scope);
          if (opts.json) ctx.json({ ...r, client_gone: r.client_gone === true });
          else ctx.out(describeDecision(r, decision, 'resumed', scope));
          return EXIT.ok;
        }),
      );

    hostOptions(program.command('deny'))
      .description('refuse a held request (JSON 403 to the agent); --always adds a deny rule to the overlay')
      .argument('<id>', 'pending id (see `nemoclaw-tui pending`)')
      .option('--always', 'deny for good (new policy revision, survives restarts; same as --for always)')
      .option('--for <duration>', 'how long the deny rule lasts: once (default), 15m, 1h (any Ns/Nm/Nh/Nd up to 7d), restart, always; stops a client that retries')
      .option('--scope <scope>', 'which hosts the rule covers: exact (host:port, default), any-port, domain (*.its-domain)')
      .option('--binary <which>', 'which programs it covers: any (default for a deny) or this')
      .option('--reason <text>', `why, in a few words: written to the audit log and sent to the agent in the refusal (at most ${MAX_DECISION_REASON_CHARS} characters, control characters removed)`)
      .option('--json', 'print the decision result as JSON (client_gone: true when its client had already left)')
      .action(
        action(async (ctx, id: string, opts: ScopeOptions & { reason?: string; json?: boolean }) => {
          const { decision, scope } = decisionFromOptions(false, opts);
          const reason = opts.reason === undefined ? undefined : cleanDecisionReason(opts.reason);
          if (opts.reason !== undefined && reason === undefined) {
            throw new NemoclawError('invalid_input', '--reason is empty (after removing control characters)', { exitCode: EXIT.usage, nextStep: 'give a few words, e.g. --reason "not needed for this task"' });
          }
          const r = await (await ctx.supervisorClient()).decide(id, decision, 'cli', reason, scope);
          if (opts.json) ctx.json({ ...r, client_gone: r.client_gone === true, ...(reason !== undefined ? { reason } : {}) });
          else ctx.out(describeDecision(r, decision, 'refused', scope) + (reason !== undefined ? ` (reason: ${reason})` : ''));
          return EXIT.ok;
        }),
      );
  },
};
