/** `budget show|set`: the privacy router's token and USD budgets. */
import type { Command } from 'commander';
import type { BudgetScope, BudgetSnapshot, BudgetWindowSnapshot } from '../../inference/index.js';
import { NemoclawError } from '../../shared/errors.js';
import { EXIT, action, commandGroup } from '../util.js';
import type { CommandModule } from './index.js';

const SCOPES: readonly BudgetScope[] = ['hour', 'day', 'request'];

function cap(v: number | undefined, usd: boolean): string {
  if (v === undefined) return 'no cap';
  return usd ? `$${v}` : `${v.toLocaleString('en-US')} tokens`;
}

function windowLine(name: string, w: BudgetWindowSnapshot): string {
  const tokens = `${w.used.tokens.toLocaleString('en-US')} tokens of ${cap(w.caps.tokens, false)}`;
  const usd = `$${w.used.usd.toFixed(4)} of ${cap(w.caps.usd, true)}`;
  const flight = w.in_flight.tokens > 0 ? `, ${w.in_flight.tokens} in flight` : '';
  return `${name.padEnd(8)} ${tokens}, ${usd}${flight}; resets ${w.resets_at}`;
}

export function formatBudget(b: BudgetSnapshot): string[] {
  const req = b.request.caps;
  return [
    windowLine('hour', b.hour),
    windowLine('day', b.day),
    `request  ${cap(req.tokens, false)}, ${cap(req.usd, true)}`,
    ...(Object.keys(b.overrides).length > 0 ? [`operator overrides: ${JSON.stringify(b.overrides)}`] : []),
  ];
}

function parsePositive(value: string | undefined, option: string, integer: boolean): number | undefined {
  if (value === undefined) return undefined;
  const n = Number(value);
  if (!Number.isFinite(n) || n <= 0 || (integer && !Number.isInteger(n))) {
    throw new NemoclawError('invalid_input', `${option} must be a positive ${integer ? 'integer' : 'number'}, got "${value}"`, {
      nextStep: `e.g. ${option} ${integer ? '200000' : '20'}`,
      exitCode: EXIT.usage,
    });
  }
  return n;
}

export const budgetCommands: CommandModule = {
  register(program: Command): void {
    const budget = commandGroup(program, 'budget', "show or raise the privacy router's token and USD budgets");

    budget
      .command('show')
      .description('caps, usage and remaining budget per hour, day and request')
      .option('--json', 'print the budget as JSON')
      .action(
        action(async (ctx, opts: { json?: boolean }) => {
          const snapshot = await ctx.client().budget();
          if (opts.json) ctx.json(snapshot);
          else for (const line of formatBudget(snapshot)) ctx.out(line);
          return EXIT.ok;
        }),
      );

    budget
      .command('set')
      .description('change a cap at run time (persists across restarts until set again)')
      .argument('<scope>', `one of ${SCOPES.join(', ')}`)
      .option('--tokens <n>', 'token cap')
      .option('--usd <n>', 'USD cap')
      .option('--json', 'print the new budget as JSON')
      .action(
        action(async (ctx, scope: string, opts: { tokens?: string; usd?: string; json?: boolean }) => {
          if (!SCOPES.includes(scope as BudgetScope)) {
            throw new NemoclawError('invalid_input', `unknown budget scope "${scope}"`, { nextStep: `use one of ${SCOPES.join(', ')}`, exitCode: EXIT.usage });
          }
          const tokens = parsePositive(opts.tokens, '--tokens', true);
          const usd = parsePositive(opts.usd, '--usd', false);
          if (tokens === undefined && usd === undefined) {
            throw new NemoclawError('invalid_input', 'nothing to set', { nextStep: `nemoclaw-tui budget set ${scope} --tokens 200000 (and/or --usd 20)`, exitCode: EXIT.usage });
          }
          const caps: { tokens?: number; usd?: number } = {};
          if (tokens !== undefined) caps.tokens = tokens;
          if (usd !== undefined) caps.usd = usd;
          const snapshot = await ctx.client().setBudget(scope as BudgetScope, caps);
          if (opts.json) ctx.json(snapshot);
          else {
            ctx.out(`${scope} budget set`);
            for (const line of formatBudget(snapshot)) ctx.out(line);
          }
          return EXIT.ok;
        }),
      );
  },
};
