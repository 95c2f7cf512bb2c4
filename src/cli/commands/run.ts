/**
 * `nemoclaw-tui run [--policy F] [--workdir DIR] [--cwd DIR] -- CMD ARGS…`: start (or join) the
 * supervisor of the sandbox, run the command inside it with stdin/stdout/stderr passed through,
 * and exit with the command's exit code (128+signal when it was killed).
 */
import { resolve } from 'node:path';
import type { Command } from 'commander';
import { startDaemon } from '../../control/daemon.js';
import { formatPolicyIssues, loadPolicyFile } from '../../policy/index.js';
import { execInSandbox, execSocketPath } from '../../sandbox/index.js';
import { NemoclawError } from '../../shared/errors.js';
import { action, ensureHome, type CliContext } from '../util.js';
import type { CommandModule } from './index.js';

interface RunOptions {
  policy?: string;
  workdir?: string;
  cwd?: string;
}

async function run(ctx: CliContext, command: string[], opts: RunOptions): Promise<number> {
  if (command.length === 0) {
    throw new NemoclawError('invalid_input', 'run needs a command', {
      nextStep: 'put it after "--", e.g. `nemoclaw-tui run -- node agent.js`',
      exitCode: 2,
    });
  }
  ensureHome(ctx);
  let policyFile: string | undefined;
  if (opts.policy) {
    policyFile = resolve(opts.policy);
    const parsed = await loadPolicyFile(policyFile);
    if (parsed.warnings.length > 0) ctx.err(`warning: not enforced here:\n${formatPolicyIssues(parsed.warnings)}`);
  }
  await startDaemon({ name: ctx.name, home: ctx.home, ...(policyFile ? { policyFile } : {}), env: ctx.io.env });
  const stdin = process.stdin.isTTY || !process.stdin.readable ? null : process.stdin;
  try {
    const result = await execInSandbox(
      execSocketPath(ctx.paths.dir),
      {
        command,
        // `run` is a sandbox of its own; `exec` is the one that joins the agent's network.
        join: 'none',
        ...(opts.workdir ? { workdir: resolve(opts.workdir) } : {}),
        ...(opts.cwd ? { cwd: opts.cwd } : {}),
      },
      { stdin, stdout: process.stdout, stderr: process.stderr },
    );
    return result.exitCode;
  } finally {
    // Our stdin must not keep this process alive after the command is gone.
    stdin?.destroy();
  }
}

export const runCommands: CommandModule = {
  register(program: Command): void {
    program
      .command('run')
      .description('run a command in the sandbox (starts the supervisor if needed) and exit with its code')
      .argument('<command...>', 'the command and its arguments (after --)')
      .option('--policy <file>', 'policy file for a supervisor that is not running yet')
      .option('--workdir <dir>', 'host directory bound read-write at /sandbox (default: the sandbox workdir)')
      .option('--cwd <dir>', 'working directory inside the sandbox (default /sandbox)')
      .action(action<[string[], RunOptions]>((ctx, command, opts) => run(ctx, command, opts)));
  },
};
