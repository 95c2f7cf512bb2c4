/** `nemoclaw-tui doctor [--fix] [--json]`: the sandbox's prerequisites and how to fix each. */
import type { Command } from 'commander';
import { applyFixes, runDoctor } from '../../sandbox/index.js';
import { EXIT, action } from '../util.js';
import type { CommandModule } from './index.js';

export const doctorCommands: CommandModule = {
  register(program: Command): void {
    program
      .command('doctor')
      .description('check the sandbox prerequisites (kernel, bubblewrap, socat, strace, user namespaces, cgroups, sandbox user)')
      .option('--fix', 'install missing packages and create the sandbox user (needs root)')
      .option('--json', 'print the report as JSON')
      .action(
        action<[{ fix?: boolean; json?: boolean }]>(async (ctx, opts) => {
          let report = await runDoctor();
          let fixes: Awaited<ReturnType<typeof applyFixes>> = [];
          if (opts.fix && report.checks.some((c) => !c.ok && c.fixArgv)) {
            fixes = await applyFixes(report);
            report = await runDoctor();
          }
          if (opts.json) {
            ctx.json({ ...report, fixes });
          } else {
            for (const f of fixes) ctx.out(`${f.ok ? 'fixed ' : 'FAILED'}  ${f.command}${f.ok ? '' : `\n        ${f.output}`}`);
            for (const c of report.checks) {
              const mark = c.ok ? 'ok  ' : c.severity === 'error' ? 'FAIL' : 'warn';
              ctx.out(`${mark}  ${c.title}: ${c.detail}`);
              if (!c.ok && c.fix) ctx.out(`      fix: ${c.fix}`);
            }
            ctx.out(report.ok ? 'the sandbox can run on this machine' : 'the sandbox cannot run until the FAIL lines are fixed');
          }
          return report.ok ? EXIT.ok : EXIT.failure;
        }),
      );
  },
};
