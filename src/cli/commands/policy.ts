/** `policy validate|show|set|history`. */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import type { AuditEvent } from '../../audit/events.js';
import { formatPolicyIssues, loadPolicyFile, readPolicyFile } from '../../policy/index.js';
import type { PolicyRevision } from '../../policy/types.js';
import { NemoclawError, isNemoclawError } from '../../shared/errors.js';
import type { ControlClient } from '../../control/index.js';
import { EXIT, action, commandGroup } from '../util.js';
import type { CommandModule } from './index.js';

/** Does this policy.revision event announce revision `rev`? */
function announces(e: AuditEvent, rev: PolicyRevision): boolean {
  const nested = e.revision as { number?: unknown } | undefined;
  return (
    e.revision === rev.number ||
    e.number === rev.number ||
    (typeof nested === 'object' && nested !== null && nested.number === rev.number) ||
    (typeof e.sha256 === 'string' && e.sha256 === rev.sha256 && e.revision === undefined && e.number === undefined)
  );
}

/** Wait until the policy.revision event of `rev` is visible on the event stream. */
async function waitForRevisionEvent(client: ControlClient, afterSeq: number, rev: PolicyRevision, timeoutMs: number): Promise<AuditEvent> {
  const stop = new AbortController();
  let found: AuditEvent | undefined;
  const timer = setTimeout(() => stop.abort(), timeoutMs);
  try {
    await client.followEvents(
      { since: afterSeq, kinds: ['policy.revision'] },
      (e) => {
        if (!found && announces(e, rev)) {
          found = e;
          stop.abort();
        }
      },
      { signal: stop.signal },
    );
  } finally {
    clearTimeout(timer);
  }
  if (!found) {
    throw new NemoclawError('io', `revision ${rev.number} was applied but its policy.revision event did not appear on the event stream within ${timeoutMs} ms`, {
      nextStep: 'check `nemoclaw-tui logs --kind policy.revision`',
    });
  }
  return found;
}

export const policyCommands: CommandModule = {
  register(program: Command): void {
    const policy = commandGroup(program, 'policy', 'validate, show, change and list revisions of the sandbox policy');

    policy
      .command('validate')
      .description('check a policy file (exit 2 with file:line:col and what was expected)')
      .argument('<file>', 'policy YAML file')
      .option('--json', 'print {file, valid, network_policies, presets, warnings, errors} (each issue with line, col, path, message)')
      .action(
        action<[string, { json?: boolean }]>(async (ctx, file: string, opts) => {
          const path = resolve(file);
          if (opts.json) {
            // Scripts get every issue as data, valid or not; the exit code says which.
            try {
              const { doc, warnings } = await loadPolicyFile(path);
              ctx.json({ file, valid: true, network_policies: Object.keys(doc.network_policies).length, presets: doc.presets, warnings, errors: [] });
              return EXIT.ok;
            } catch (err) {
              if (!isNemoclawError(err) || err.code !== 'policy_invalid') throw err;
              ctx.json({ file, valid: false, warnings: [], errors: Array.isArray(err.details) ? err.details : [{ message: err.message }] });
              return EXIT.usage;
            }
          }
          const { doc, warnings } = await loadPolicyFile(path);
          if (warnings.length > 0) ctx.err(`warning: accepted but not enforced here:\n${formatPolicyIssues(warnings)}`);
          const n = Object.keys(doc.network_policies).length;
          ctx.out(`${file}: valid (${n} network polic${n === 1 ? 'y' : 'ies'}${doc.presets.length > 0 ? `, presets: ${doc.presets.join(', ')}` : ''})`);
          return EXIT.ok;
        }),
      );

    policy
      .command('show')
      .description('print the effective policy of the running supervisor (canonical YAML)')
      .option('--json', 'print {yaml, revision} as JSON')
      .action(
        action(async (ctx, opts: { json?: boolean }) => {
          const view = await ctx.client().getPolicy();
          if (opts.json) ctx.json(view);
          else ctx.io.stdout.write(view.yaml.endsWith('\n') ? view.yaml : `${view.yaml}\n`);
          return EXIT.ok;
        }),
      );

    policy
      .command('set')
      .description('apply a new base policy to the running supervisor (static sections need a restart)')
      .argument('<file>', 'policy YAML file')
      .option('--wait', 'return once the policy.revision event is visible on the event stream')
      .option('--timeout <seconds>', 'with --wait: how long to wait', '15')
      .action(
        action(async (ctx, file: string, opts: { wait?: boolean; timeout: string }) => {
          const path = resolve(file);
          // Refused here, naming the file, before anything is sent (the API's body limit would say less).
          const text = await readPolicyFile(path);
          const client = ctx.client();
          const before = opts.wait ? (await client.status()).last_seq : 0;
          const res = await client.setPolicy(text, { author: 'cli', source: path });
          if (!res.changed) {
            ctx.out(`policy unchanged: ${file} matches revision ${res.revision.number}`);
            return EXIT.ok;
          }
          if (opts.wait) {
            const seconds = Number(opts.timeout);
            await waitForRevisionEvent(client, before, res.revision, Number.isFinite(seconds) && seconds > 0 ? seconds * 1000 : 15_000);
          }
          ctx.out(`applied policy revision ${res.revision.number} (sha256 ${res.revision.sha256.slice(0, 12)})${opts.wait ? '; the revision event is on the stream' : ''}`);
          return EXIT.ok;
        }),
      );

    policy
      .command('history')
      .description('list the policy revisions of the running supervisor')
      .option('--json', 'print the revisions as JSON')
      .action(
        action(async (ctx, opts: { json?: boolean }) => {
          const revisions = await ctx.client().policyHistory();
          if (opts.json) {
            ctx.json(revisions);
            return EXIT.ok;
          }
          ctx.out(`${'REV'.padEnd(5)} ${'TIME'.padEnd(24)} ${'AUTHOR'.padEnd(9)} ${'SHA256'.padEnd(12)} REASON`);
          for (const r of revisions) {
            ctx.out(`${String(r.number).padEnd(5)} ${r.time.padEnd(24)} ${r.author.padEnd(9)} ${r.sha256.slice(0, 12)} ${r.reason ?? ''}`.trimEnd());
          }
          return EXIT.ok;
        }),
      );
  },
};
