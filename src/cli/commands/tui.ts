/**
 * `tui` (the default when no command is given): the full-screen Ink UI attached to a sandbox's
 * supervisor, started first when none runs. Falls back to the headless follow when the terminal
 * cannot host it. Also the hidden `__bridge` (remote half of `--host user@box`).
 */
import type { Command } from 'commander';
import { ControlClient } from '../../control/client.js';
import { startDaemon } from '../../control/daemon.js';
import { NemoclawError } from '../../shared/errors.js';
import { EXIT, action, ensureHome, followLogs, nameFlag, type CliContext } from '../util.js';
import type { CommandModule } from './index.js';

interface TuiOptions {
  headless?: boolean;
  ascii?: boolean;
  theme: string;
  host?: string;
  blueprint?: string;
}

/** Why the full-screen UI cannot run here, or undefined when it can. */
export function headlessReason(opts: { headless?: boolean | undefined }, io: { stdinTty: boolean; stdoutTty: boolean; env: NodeJS.ProcessEnv }): string | undefined {
  if (opts.headless) return '--headless';
  if (!io.stdinTty || !io.stdoutTty) return 'stdin/stdout is not a terminal';
  if (io.env.TERM === 'dumb') return 'TERM=dumb';
  return undefined;
}

async function tui(ctx: CliContext, opts: TuiOptions): Promise<number> {
  if (opts.theme !== 'dark' && opts.theme !== 'light') {
    throw new NemoclawError('invalid_input', `--theme must be dark or light, got "${opts.theme}"`, { exitCode: EXIT.usage });
  }
  // Components (and through them Ink/chalk) are loaded lazily: NO_COLOR has to become
  // FORCE_COLOR=0 before chalk is first imported.
  const { honourNoColor } = await import('../../../components/run.js');
  honourNoColor(ctx.io.env);

  let forward: { socketPath: string; close(): Promise<void> } | undefined;
  let client: ControlClient;
  if (opts.host) {
    const remote = await import('../../../components/remote.js');
    const { mkdtempSync } = await import('node:fs');
    const { tmpdir } = await import('node:os');
    const { join } = await import('node:path');
    const sshDir = mkdtempSync(join(tmpdir(), 'nemoclaw-ssh-'));
    forward = await remote.startStdioForward({
      command: remote.sshBridgeCommand(opts.host, ctx.name, sshDir),
      onError: (m) => ctx.io.env.NEMOCLAW_DEBUG && ctx.err(m),
    });
    client = new ControlClient({ socketPath: forward.socketPath, sandbox: `${ctx.name}@${opts.host}` });
  } else {
    ensureHome(ctx);
    // --blueprint, or on a sandbox's very first start onboarding's defaults (the drill when no provider is found).
    const policyFile = await (await import('./onboard.js')).prepareAgentForAttach(ctx, { blueprint: opts.blueprint });
    const res = await startDaemon({ name: ctx.name, home: ctx.home, env: ctx.io.env, ...(policyFile ? { policyFile } : {}) });
    if (res.started) ctx.err(`started the supervisor of sandbox "${ctx.name}" (pid ${res.pid})`);
    client = ctx.client();
  }

  try {
    const reason = headlessReason(opts, {
      stdinTty: Boolean(process.stdin.isTTY),
      stdoutTty: Boolean(ctx.io.stdout.isTTY),
      env: ctx.io.env,
    });
    if (reason) return await followLogs(ctx, client, { follow: true, output: 'text', approver: false });
    const [{ runTui }, { controlTuiClient }] = await Promise.all([import('../../../components/run.js'), import('../../../components/control-adapter.js')]);
    const code = await runTui({
      client: controlTuiClient(client),
      name: ctx.name,
      ascii: opts.ascii === true,
      theme: opts.theme,
      host: opts.host,
      env: ctx.io.env,
    });
    ctx.err(`detached from sandbox "${ctx.name}"; the supervisor and the agent keep running (re-attach: nemoclaw-tui${nameFlag(ctx.name)})`);
    return code;
  } finally {
    await forward?.close();
  }
}

export const tuiCommands: CommandModule = {
  defaultArgs: ['tui'],
  register(program: Command): void {
    program
      .command('tui')
      .description('full-screen UI: held requests (approve with one key), file violations, meters, routing (the default)')
      .option('--headless', 'print the event follow instead of the full-screen UI')
      .option('--ascii', 'draw gauges with # and . only (also automatic on TERM=linux/dumb or a non-UTF-8 locale)')
      .option('--theme <theme>', 'dark or light', 'dark')
      .option('--host <user@box>', "attach to that box's supervisor through ssh (needs nemoclaw-tui on the remote PATH)")
      .option('--blueprint <name>', 'when no supervisor runs: start it with this blueprint\'s agent (drill, openclaw, or a directory)')
      .action(action(tui));

    program
      .command('__bridge', { hidden: true })
      .description('internal: pipe stdin/stdout to the control socket (remote half of --host)')
      .action(
        action(async (ctx) => {
          const { serveStdioBridge } = await import('../../../components/remote.js');
          await serveStdioBridge(ctx.paths.controlSocket, process.stdin, process.stdout);
          return EXIT.ok;
        }),
      );
  },
};
