/**
 * The real TUI in a private tmux server (its own -L socket), as an operator's terminal: start a
 * command in a fixed-size pane that stays readable after the command exits, read the screen, send
 * keys, and stop only this server. Used by the TUI end-to-end tests.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { execa } from 'execa';
import { BIN } from './supervisor.js';

export function requireTmux(): void {
  try {
    execFileSync('tmux', ['-V'], { stdio: 'pipe' });
  } catch {
    throw new Error('this test drives the TUI in tmux, which is not installed: apt-get install tmux (CI installs it through .ci/run)');
  }
}

/**
 * `nemoclaw-tui ARGS…` as a terminal would run it, with `env` for the pane and a wrapper shell that
 * prints the exit status when it ends (arguments go through "$@", never into a shell string).
 * CI=true is always set: Ink would draw nothing until exit if the TUI honoured it on a terminal.
 */
export function tuiPaneCommand(env: Record<string, string>, args: string[] = []): string[] {
  return [
    'env',
    'LANG=C.UTF-8',
    'TERM=xterm-256color',
    'CI=true',
    `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`,
    ...Object.entries(env).map(([k, v]) => `${k}=${v}`),
    'sh',
    '-c',
    '"$@"; echo "[nemoclaw-tui exited with $?]"',
    'sh',
    process.execPath,
    BIN,
    ...args,
  ];
}

export class TmuxPane {
  readonly socket = `nct-tmux-${process.pid}-${randomBytes(3).toString('hex')}`;
  private started = false;

  constructor(
    readonly session = 'tui',
    readonly columns = 100,
    readonly rows = 30,
  ) {}

  async tmux(...args: string[]): Promise<string> {
    const r = await execa('tmux', ['-L', this.socket, ...args], { reject: false });
    if (r.exitCode !== 0) throw new Error(`tmux ${args.join(' ')} failed (exit ${r.exitCode}): ${r.stderr}`);
    return r.stdout;
  }

  /** Runs `command` in the pane: the first time in a new server, later in place of the last one (history cleared). */
  async run(command: string[]): Promise<void> {
    if (!this.started) {
      await this.tmux('-f', '/dev/null', 'new-session', '-d', '-x', String(this.columns), '-y', String(this.rows), '-s', this.session, ...command, ';', 'set-option', '-t', this.session, 'remain-on-exit', 'on');
      this.started = true;
    } else {
      await this.tmux('clear-history', '-t', this.session);
      await this.tmux('respawn-pane', '-t', this.session, ...command);
    }
  }

  /** The visible screen (or, with history, everything the pane printed, alternate screen excluded). */
  screen(history = false): Promise<string> {
    return this.tmux('capture-pane', '-p', '-J', '-t', this.session, ...(history ? ['-S', '-'] : []));
  }

  async waitFor(what: string, ok: (text: string) => boolean, timeoutMs = 20_000, history = false): Promise<string> {
    const deadline = Date.now() + timeoutMs;
    let last = '';
    while (Date.now() < deadline) {
      last = await this.screen(history);
      if (ok(last)) return last;
      await new Promise((r) => setTimeout(r, 200));
    }
    throw new Error(`the TUI did not show ${what} within ${timeoutMs} ms; the pane showed:\n${last}`);
  }

  async keys(...keys: string[]): Promise<void> {
    await this.tmux('send-keys', '-t', this.session, ...keys);
  }

  /** Waits for the command started by tuiPaneCommand to end; returns its exit status and the pane's whole text. */
  async exited(timeoutMs = 10_000): Promise<{ status: string; text: string }> {
    const text = await this.waitFor('the TUI exiting', (s) => /\[nemoclaw-tui exited with \d+\]/.test(s), timeoutMs, true);
    return { status: /\[nemoclaw-tui exited with (\d+)\]/.exec(text)![1]!, text };
  }

  /** Stops this server (only it) and removes its socket. */
  async kill(): Promise<void> {
    if (!this.started) return;
    const socketPath = (await execa('tmux', ['-L', this.socket, 'display-message', '-p', '#{socket_path}'], { reject: false })).stdout.trim();
    await execa('tmux', ['-L', this.socket, 'kill-server'], { reject: false });
    if (socketPath.includes(this.socket)) rmSync(socketPath, { force: true });
    this.started = false;
  }
}
