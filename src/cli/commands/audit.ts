/** `audit verify [file]`. */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { verifyAudit } from '../../audit/index.js';
import { EXIT, action, commandGroup } from '../util.js';
import type { CommandModule } from './index.js';

export const auditCommands: CommandModule = {
  register(program: Command): void {
    const audit = commandGroup(program, 'audit', 'inspect the tamper-evident audit log');

    audit
      .command('verify')
      .description("check the hash chain (default: this sandbox's audit log); exit 1 naming the first bad seq")
      .argument('[file]', 'an audit directory or one audit-NNNNNN.jsonl file')
      .option('--json', 'print the result as JSON')
      .action(
        action(async (ctx, file: string | undefined, opts: { json?: boolean }) => {
          const target = file ? resolve(file) : ctx.paths.auditDir;
          const res = await verifyAudit(target);
          if (opts.json) ctx.json({ path: target, ...res });
          const files = `${res.files.length} file${res.files.length === 1 ? '' : 's'}`;
          if (res.ok) {
            if (!opts.json) ctx.out(`audit log ok: ${res.records} records checked in ${files} (${target})`);
            if (res.tornTail) ctx.err('note: the last file ends in a partial record (a crash before it was written); it is not counted');
            for (const g of res.gaps ?? []) {
              ctx.err(
                `warning: records lost between seq ${g.from} and ${g.to} (reason ${g.reason}${g.failedAt ? `, since ${g.failedAt}` : ''}): the audit log could not be written and failed closed; recorded by the gap marker at seq ${g.markerSeq} (${g.file}:${g.line}), not tampering`,
              );
            }
            return EXIT.ok;
          }
          const where = res.file ? ` (${res.file}${res.line !== undefined ? `:${res.line}` : ''})` : '';
          if (!opts.json) {
            ctx.out(`audit log BROKEN at seq ${res.firstBadSeq ?? '?'}${where}: ${res.reason ?? 'chain mismatch'}`);
            ctx.out(`  ${res.records} records before it are intact`);
          }
          ctx.err(`  next step: the log was edited, truncated or reordered at seq ${res.firstBadSeq ?? '?'}; keep a copy for investigation`);
          return EXIT.failure;
        }),
      );
  },
};
