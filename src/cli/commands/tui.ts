/**
 * `tui` (the default when no command is given): the full-screen Ink UI attached to a sandbox's
 * supervisor, started first when none runs. Falls back to the headless follow when the terminal
 * cannot host it. Also the hidden `__bridge` (remote half of `--host user@box`).
 */
import { MAX_GRANT_MS, parseDuration } from '../../egress/grant.js';
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
  timeBoxes?: string;
  host?: string;
  sshConfig?: string;
  remoteCommand?: string;
  blueprint?: string;
  notify?: boolean;
}

/** The --host options to repeat in the re-attach hint. */
function reattachFlags(opts: TuiOptions): string {
  if (!opts.host) return '';
  return [` --host ${opts.host}`, opts.sshConfig ? ` --ssh-config ${opts.sshConfig}` : '', opts.remoteCommand && opts.remoteCommand !== 'nemoclaw-tui' ? ` --remote-command ${opts.remoteCommand}` : ''].join('');
}

/** `--time-boxes 15m,1h`: the chooser's time boxes in ms (usage error naming the bad one). */
export function parseTimeBoxes(list: string): number[] {
  const out = list.split(',').map((t) => t.trim()).filter(Boolean).map((t) => {
    const ms = parseDuration(t);
    if (ms === undefined || ms < 1000 || ms > MAX_GRANT_MS) {
      throw new NemoclawError('invalid_input', `--time-boxes: "${t.slice(0, 20)}" is not a duration from 1s to 7d (like 15m or 1h)`, { exitCode: EXIT.usage, nextStep: 'e.g. --time-boxes 5m,15m,1h' });
    }
    return ms;
  });
  if (out.length === 0 || out.length > 4) throw new NemoclawError('invalid_input', '--time-boxes takes one to four durations', { exitCode: EXIT.usage, nextStep: 'e.g. --time-boxes 15m,1h' });
  return out;
}

/** Why the full-screen UI cannot run here, or undefined when it can. */
export function headlessReason(opts: { headless?: boolean | undefined }, io: { stdinTty: boolean; stdoutTty: boolean; env: NodeJS.ProcessEnv }): string | undefined {
  if (opts.headless) return '--headless';
  if (!io.stdinTty || !io.stdoutTty) return 'stdin/stdout is not a terminal';
  if (io.env.TERM === 'dumb') return 'TERM=dumb';
  return undefined;
}

async function tui(ctx: CliContext, opts: TuiOptions): Promise<number> {
  const timeBoxes = opts.timeBoxes !== undefined ? parseTimeBoxes(opts.timeBoxes) : undefined;
  if (opts.theme !== 'dark' && opts.theme !== 'light') {
    throw new NemoclawError('invalid_input', `--theme must be dark or light, got "${opts.theme}"`, { exitCode: EXIT.usage });
  }
  // Components (and through them Ink/chalk) are loaded lazily: NO_COLOR has to become
  // FORCE_COLOR=0 before chalk is first imported.
  const { honourNoColor } = await import('../../../components/run.js');
  honourNoColor(ctx.io.env);

  if (!opts.host && (opts.sshConfig !== undefined || (opts.remoteCommand !== undefined && opts.remoteCommand !== 'nemoclaw-tui'))) {
    throw new NemoclawError('invalid_input', '--ssh-config and --remote-command only apply with --host user@box', { exitCode: EXIT.usage });
  }
  let remote: { close(): Promise<void> } | undefined;
  let client: ControlClient;
  if (opts.host) {
    const { connectRemote } = await import('../../../components/remote.js');
    const sshConfig = opts.sshConfig ?? (ctx.io.env.NEMOCLAW_SSH_CONFIG || undefined);
    const connection = await connectRemote({
      host: opts.host,
      name: ctx.name,
      sshConfig,
      remoteCommand: opts.remoteCommand,
      onError: (m) => ctx.io.env.NEMOCLAW_DEBUG && ctx.err(m),
    });
    remote = connection;
    client = connection.client;
    ctx.err(`attached over ssh to sandbox "${ctx.name}" on ${opts.host} (supervisor pid ${connection.status.pid}, policy revision ${connection.status.policy.revision})`);
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
      notify: opts.notify === true,
      ...(timeBoxes ? { timeBoxes } : {}),
    });
    ctx.err(`detached from sandbox "${ctx.name}"${opts.host ? ` on ${opts.host}` : ''}; the supervisor and the agent keep running (re-attach: nemoclaw-tui${nameFlag(ctx.name)}${reattachFlags(opts)})`);
    return code;
  } finally {
    await remote?.close();
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
      .option('--time-boxes <list>', 'the time boxes the A / D scope chooser offers, comma-separated (default 15m,1h; each 1s to 7d)')
      .option('--notify', 'also a desktop notification (OSC 9, or OSC 777 on VTE/rxvt/foot; through tmux passthrough) for each new held request; the bell and window title are always on')
      .option('--host <user@box>', "attach to that box's supervisor through ssh (runs `nemoclaw-tui __bridge` there; ssh must log in without a prompt)")
      .option('--ssh-config <file>', 'with --host: ssh client config to use (ssh -F; default ~/.ssh/config, or $NEMOCLAW_SSH_CONFIG)')
      .option('--remote-command <path>', 'with --host: nemoclaw-tui on the remote box, a name on its PATH or an absolute path', 'nemoclaw-tui')
      .option('--blueprint <name>', 'when no supervisor runs: start it with this blueprint\'s agent (drill, openclaw, or a directory)')
      .action(action(tui));

    program
      .command('__bridge', { hidden: true })
      .description('internal: pipe stdin/stdout to the control socket (remote half of --host)')
      .action(
        action(async (ctx) => {
          const { serveStdioBridge } = await import('../../../components/remote.js');
          await serveStdioBridge(ctx.paths.controlSocket, process.stdin, process.stdout, `nemoclaw-tui up${nameFlag(ctx.name)}`);
          return EXIT.ok;
        }),
      );
  },
};
