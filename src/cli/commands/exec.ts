/**
 * `exec -- CMD…` runs a command beside the agent: in a sibling sandbox of the same supervisor, with
 * the same policy, workdir (/sandbox), read-only runtime binds and agent environment (so
 * `nemoclaw-tui exec -- openclaw agent --agent main --message hi` reaches the gateway on the
 * sandbox's loopback only if the driver joins the agent's network namespace; see the report).
 * stdin/stdout/stderr pass through and the exit code is the command's.
 * `connect` opens an interactive shell the same way.
 */
import type { Command } from 'commander';
import { execInSandbox, execSocketPath, type ExecStart } from '../../sandbox/index.js';
import { NemoclawError } from '../../shared/errors.js';
import { EXIT, action, nameFlag, type CliContext } from '../util.js';
import type { CommandModule } from './index.js';

interface AgentExecInfo {
  state?: string;
  blueprint?: string;
  exec?: { binds: Array<{ source: string; target: string }>; env: Record<string, string> };
}

/** The agent's binds and environment from the running supervisor (none for a plain sandbox). */
export async function agentExecContext(ctx: CliContext): Promise<AgentExecInfo['exec'] | undefined> {
  let info: AgentExecInfo;
  try {
    info = await ctx.client().request<AgentExecInfo>('GET', '/v1/agent');
  } catch (err) {
    if (err instanceof NemoclawError && err.code === 'not_running') {
      throw new NemoclawError('not_running', `sandbox "${ctx.name}" is not running`, {
        nextStep: `start it with \`nemoclaw-tui up${nameFlag(ctx.name)}\` (or \`nemoclaw-tui onboard\`)`,
      });
    }
    throw err;
  }
  return info.exec;
}

export async function runBesideAgent(ctx: CliContext, command: string[], cwd: string | undefined): Promise<number> {
  const agent = await agentExecContext(ctx);
  const start: ExecStart & { env?: Record<string, string>; readOnlyBinds?: Array<{ source: string; target: string }> } = {
    command,
    ...(cwd ? { cwd } : {}),
    ...(agent ? { env: agent.env, readOnlyBinds: agent.binds } : {}),
  };
  const res = await execInSandbox(execSocketPath(ctx.paths.dir), start, {
    stdin: process.stdin,
    stdout: process.stdout,
    stderr: process.stderr,
  });
  return res.exitCode;
}

export const execCommands: CommandModule = {
  register(program: Command): void {
    program
      .command('exec')
      .description('run a command in the sandbox beside the agent (same policy, workdir, runtime and env)')
      .argument('<command...>', 'the command and its arguments, after --')
      .option('--cwd <dir>', 'working directory inside the sandbox (default /sandbox)')
      .action(
        action(async (ctx, command: string[], opts: { cwd?: string }) => {
          if (command.length === 0) {
            ctx.err('nemoclaw-tui: nothing to run; e.g. nemoclaw-tui exec -- openclaw agent --agent main --message "hi"');
            return EXIT.usage;
          }
          return runBesideAgent(ctx, command, opts.cwd);
        }),
      );

    program
      .command('connect')
      .description('open a shell in the sandbox beside the agent')
      .option('--shell <path>', 'shell to run inside', '/bin/bash')
      .action(action(async (ctx, opts: { shell: string }) => runBesideAgent(ctx, [opts.shell, '-i'], undefined)));
  },
};
