/** `nemoclaw-tui doctor [--fix] [--json]`: the sandbox's prerequisites and how to fix each. */
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import type { Command } from 'commander';
import { describeDisk, freeBytes } from '../../audit/index.js';
import { applyFixes, runDoctor } from '../../sandbox/index.js';
import { humanBytes } from '../status-text.js';
import { EXIT, action, type CliContext } from '../util.js';
import type { CommandModule } from './index.js';

export const doctorCommands: CommandModule = {
  register(program: Command): void {
    program
      .command('doctor')
      .description('check the sandbox prerequisites (kernel, bubblewrap, socat, strace, nftables, user namespaces, cgroups, sandbox user)')
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
          const audit = await auditCheck(ctx);
          if (!audit.ok && audit.severity === 'error') report = { ...report, ok: false };
          if (opts.json) {
            ctx.json({ ...report, fixes, audit });
          } else {
            for (const f of fixes) ctx.out(`${f.ok ? 'fixed ' : 'FAILED'}  ${f.command}${f.ok ? '' : `\n        ${f.output}`}`);
            for (const c of report.checks) {
              const mark = c.ok ? 'ok  ' : c.severity === 'error' ? 'FAIL' : 'warn';
              ctx.out(`${mark}  ${c.title}: ${c.detail}`);
              if (!c.ok && c.fix) ctx.out(`      fix: ${c.fix}`);
            }
            const mark = audit.ok ? 'ok  ' : audit.severity === 'error' ? 'FAIL' : 'warn';
            ctx.out(`${mark}  ${audit.title}: ${audit.detail}`);
            if (!audit.ok) ctx.out(`      fix: ${audit.fix}`);
            ctx.out(report.ok ? 'the sandbox can run on this machine' : 'the sandbox cannot run until the FAIL lines are fixed');
          }
          return report.ok ? EXIT.ok : EXIT.failure;
        }),
      );
  },
};

/** Below this much free space on the audit log's disk, doctor warns (the log fails closed when full). */
const AUDIT_LOW_SPACE = 16 * 1024 * 1024;

interface AuditCheck {
  ok: boolean;
  severity: 'error' | 'warn';
  title: string;
  detail: string;
  fix: string;
}

/** The audit log's disk: a running supervisor that cannot write it (FAIL), or little space left (warn). */
async function auditCheck(ctx: CliContext): Promise<AuditCheck> {
  const dir = ctx.paths.auditDir;
  let probe = dir;
  while (!existsSync(probe) && dirname(probe) !== probe) probe = dirname(probe);
  const disk = describeDisk(probe);
  const free = await freeBytes(probe);
  const title = 'audit log disk';
  let status: Awaited<ReturnType<ReturnType<CliContext['client']>['status']>> | undefined;
  try {
    status = await ctx.client({ timeoutMs: 2_000 }).status();
  } catch {
    status = undefined; // not running: only the space is checked
  }
  const a = status?.audit;
  if (a?.state === 'failing') {
    return {
      ok: false,
      severity: 'error',
      title,
      detail: `${a.problem ?? a.code ?? 'the audit log cannot be written'} (since ${a.since ?? '?'}, ${a.lost_records ?? 0} events not recorded)`,
      fix: `free space on ${a.disk ?? disk}; the supervisor resumes by itself within a second, with a gap marker in the log`,
    };
  }
  const freeText = free === undefined ? 'free space unknown' : `${humanBytes(free)} free`;
  if (free !== undefined && free < AUDIT_LOW_SPACE) {
    return { ok: false, severity: 'warn', title, detail: `${dir} on ${disk}: only ${freeText}; when it is full the supervisor refuses all egress and inference`, fix: `free space on ${disk}` };
  }
  return { ok: true, severity: 'warn', title, detail: `${dir} on ${disk}, ${freeText}${status ? `, supervisor writing (last seq ${a?.last_seq ?? status.last_seq})` : ''}`, fix: '' };
}
