/** `logs [-f] [-n N] [--since 10m] [--kind K,…] [--output text|jsonl] [--approver] [--host user@box]`. */
import type { Command } from 'commander';
import { EVENT_KINDS, isEventKind, type EventKind } from '../../audit/events.js';
import { NemoclawError } from '../../shared/errors.js';
import { EXIT, action, followLogs, hostOptions, parseCount, parseSince } from '../util.js';
import type { CommandModule } from './index.js';

/** `net.decision,policy.revision`, `net` or `net.*` (every net.* kind). */
export function parseKinds(value: string): EventKind[] {
  const out = new Set<EventKind>();
  for (const raw of value.split(',').map((s) => s.trim()).filter((s) => s.length > 0)) {
    if (isEventKind(raw)) {
      out.add(raw);
      continue;
    }
    const prefix = raw.endsWith('.*') ? raw.slice(0, -2) : raw;
    const group = EVENT_KINDS.filter((k) => k.startsWith(`${prefix}.`));
    if (group.length === 0) {
      throw new NemoclawError('invalid_input', `unknown event kind "${raw}"`, {
        exitCode: EXIT.usage,
        nextStep: `use one or more of: ${EVENT_KINDS.join(', ')} (or a prefix like net.*)`,
      });
    }
    for (const k of group) out.add(k);
  }
  return [...out];
}

interface LogsCliOptions {
  follow?: boolean;
  lines?: string;
  since?: string;
  kind?: string;
  output: string;
  approver?: boolean;
  samples?: boolean;
  level?: string;
}

const LEVELS = ['debug', 'info', 'notice', 'warn', 'error'] as const;

export const logsCommands: CommandModule = {
  register(program: Command): void {
    hostOptions(program.command('logs'))
      .description('print the sandbox events; -f follows live (reconnecting when the supervisor restarts)')
      .option('-f, --follow', 'keep printing events as they happen')
      .option('-n, --lines <n>', 'only the last N events of the backlog (default with -f: 10)')
      .option('--since <when>', 'only events since a duration ago (30s, 10m, 1h, 2d) or an ISO time')
      .option('--kind <kinds>', 'only these kinds, comma-separated (net.decision,policy.revision or net.*)')
      .option('--output <format>', 'text or jsonl (the exact event schema)', 'text')
      .option('--approver', 'with -f: count as an attached operator (held requests wait for you)')
      .option('--samples', 'include the per-second samples (gpu.sample, proc.sample, budget.update); on by default with --output jsonl or --kind')
      .option('--level <level>', 'only events at this level or above: debug, info, notice, warn, error')
      .action(
        action(async (ctx, opts: LogsCliOptions) => {
          if (opts.output !== 'text' && opts.output !== 'jsonl') {
            throw new NemoclawError('invalid_input', `--output must be text or jsonl, got "${opts.output}"`, { exitCode: EXIT.usage });
          }
          const n = opts.lines !== undefined ? parseCount(opts.lines, '-n') : undefined;
          const sinceTs = opts.since !== undefined ? parseSince(opts.since) : undefined;
          const kinds = opts.kind !== undefined ? parseKinds(opts.kind) : undefined;
          if (opts.level !== undefined && !(LEVELS as readonly string[]).includes(opts.level)) {
            throw new NemoclawError('invalid_input', `--level must be one of ${LEVELS.join(', ')}, got "${opts.level}"`, { exitCode: EXIT.usage });
          }
          return followLogs(ctx, await ctx.supervisorClient(), {
            follow: opts.follow === true,
            n,
            sinceTs,
            kinds,
            output: opts.output,
            approver: opts.approver === true,
            ...(opts.samples ? { samples: true } : {}),
            ...(opts.level !== undefined ? { minLevel: opts.level as (typeof LEVELS)[number] } : {}),
          });
        }),
      );
  },
};
