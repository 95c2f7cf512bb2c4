/**
 * Start the full-screen UI. Kept free of static Ink imports: NO_COLOR must become FORCE_COLOR=0
 * before Ink (and chalk inside it) is loaded, because chalk ignores NO_COLOR.
 */
import type { TuiClient } from './client.js';
import { shouldUseAscii } from './glyphs.js';

const LEAVE_ALT_SCREEN = '\u001B[?1049l\u001B[?25h';

export interface RunTuiOptions {
  client: TuiClient;
  name: string;
  ascii?: boolean;
  theme?: 'dark' | 'light';
  host?: string | undefined;
  env?: NodeJS.ProcessEnv;
  stdout?: NodeJS.WriteStream;
  stdin?: NodeJS.ReadStream;
  /** Frames per second at most (SSH-friendly default 12). */
  maxFps?: number;
  /** How long events are gathered before one store flush. */
  batchMs?: number;
  /** Called after every committed frame (the bench counts them). */
  onFrame?: () => void;
  /** Draw only changed lines (default true); the bench turns it off for its baseline. */
  incrementalRendering?: boolean;
  /** Unmounts the UI as a detach would (bench, embedding). */
  signal?: AbortSignal;
  /** `--notify`: a desktop notification (OSC 9 / OSC 777) for each new held request. Off by default. */
  notify?: boolean;
  /** `--time-boxes`: the scope chooser's time boxes in ms (default 15 min and 1 h). */
  timeBoxes?: readonly number[];
}

/** Apply NO_COLOR before anything loads chalk. Call as early as possible. */
export function honourNoColor(env: NodeJS.ProcessEnv = process.env): void {
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') env.FORCE_COLOR = '0';
}

/** Runs until the operator detaches; resolves with the exit code. The supervisor keeps running. */
export async function runTui(opts: RunTuiOptions): Promise<number> {
  const env = opts.env ?? process.env;
  honourNoColor(env);
  const [{ render }, React, { App }, { TuiStore }, { TerminalSignals, notifyProtocolFor }] = await Promise.all([
    import('ink'),
    import('react'),
    import('./App.js'),
    import('./store.js'),
    import('./terminal-signals.js'),
  ]);
  const stdout = opts.stdout ?? process.stdout;
  const store = new TuiStore({ name: opts.name, batchMs: opts.batchMs ?? 80 });
  const ascii = shouldUseAscii(env, opts.ascii === true);
  // Bell and window title for held requests (and, with --notify, a desktop notification).
  const signals = new TerminalSignals({
    write: (d) => {
      if (stdout.isTTY) stdout.write(d);
    },
    ascii,
    notify: opts.notify === true ? notifyProtocolFor(env) : false,
    tmux: Boolean(env.TMUX),
    name: opts.name,
  });

  // Ink restores the screen on unmount and on signals (signal-exit); this is the last line of
  // defence for paths that skip both (an uncaught exception, process.exit from elsewhere).
  let restored = false;
  const restore = () => {
    if (restored) return;
    restored = true;
    signals.restore();
    try {
      stdout.write(LEAVE_ALT_SCREEN);
    } catch {
      // the terminal is gone (SSH dropped): nothing to restore
    }
  };
  process.once('exit', restore);
  const onCrash = (err: unknown) => {
    try {
      instance.unmount();
    } catch {
      // already torn down
    }
    restore();
    process.stderr.write(`nemoclaw-tui: the TUI crashed: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n  the supervisor and the agent keep running; re-attach with \`nemoclaw-tui\`\n`);
    process.exitCode = 1;
  };
  process.once('uncaughtException', onCrash);

  const instance = render(
    React.createElement(App, {
      client: opts.client,
      store,
      ascii,
      theme: opts.theme ?? 'dark',
      host: opts.host,
      signals,
      timeBoxes: opts.timeBoxes,
    }),
    {
      stdout,
      stdin: opts.stdin ?? process.stdin,
      exitOnCtrlC: false,
      alternateScreen: true,
      // Ink turns itself into "print the last frame at exit" when the CI variable is set; an
      // operator's shell (or a CI job driving the TUI in tmux) may export it, and the screen would
      // stay blank. The TUI is only ever started on a terminal, so the terminal decides.
      interactive: Boolean(stdout.isTTY),
      maxFps: opts.maxFps ?? 12,
      incrementalRendering: opts.incrementalRendering ?? true,
      patchConsole: true,
      onRender: opts.onFrame ? () => opts.onFrame?.() : undefined,
    },
  );
  const onAbort = () => instance.unmount();
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    await instance.waitUntilExit();
  } finally {
    opts.signal?.removeEventListener('abort', onAbort);
    store.dispose();
    restore();
    process.off('exit', restore);
    process.off('uncaughtException', onCrash);
  }
  return 0;
}
