/**
 * Never miss a hold (issue 16): what the TUI tells the terminal outside its frame.
 *
 * - A request newly held rings the bell (BEL), at most once per batch of new holds and once a second.
 * - The window title (OSC 0; tmux shows it as the pane title and passes it on with `set-titles`)
 *   reads `⏸ 2 held — nemoclaw-tui` while requests are held. The title the terminal had is pushed on
 *   its title stack first (XTWINOPS 22) and popped (23) when nothing is held any more and on exit;
 *   a terminal without the stack gets `nemoclaw-tui` back instead of a stale count.
 * - With `--notify`, each new hold is also a desktop notification: OSC 777 on VTE / rxvt / foot,
 *   OSC 9 elsewhere (iTerm2, WezTerm, Windows Terminal, kitty, Ghostty), wrapped for tmux
 *   passthrough inside tmux. Off by default.
 *
 * Nothing here moves the cursor, so it can be written between two frames.
 */
import type { HeldRow } from './selectors.js';

export const BEL = '\u0007';
const TITLE_PUSH = '\u001b[22;0t';
const TITLE_POP = '\u001b[23;0t';
const BASE_TITLE = 'nemoclaw-tui';

export type NotifyProtocol = 'osc9' | 'osc777';

export interface TerminalSignalsOptions {
  write(data: string): void;
  ascii?: boolean;
  /** Desktop notifications: off (default) or the protocol to use. */
  notify?: NotifyProtocol | false;
  /** Inside tmux: notifications need DCS passthrough to reach the outer terminal. */
  tmux?: boolean;
  /** Sandbox name, shown in notifications. */
  name?: string;
  now?: () => number;
}

/** Printable text only: whatever the agent named (a host) never becomes a control sequence. */
function printable(text: string, max = 120): string {
  // eslint-disable-next-line no-control-regex
  const flat = text.replace(/[\u0000-\u001f\u007f-\u009f\u200b-\u200f\u2028-\u202e\u2060-\u206f]/g, ' ').replace(/;/g, ',');
  const chars = Array.from(flat);
  return chars.length <= max ? flat : chars.slice(0, max - 1).join('') + '…';
}

/** Which notification protocol suits this terminal (for `--notify`). */
export function notifyProtocolFor(env: NodeJS.ProcessEnv): NotifyProtocol {
  const term = env.TERM ?? '';
  if (env.VTE_VERSION || /^(rxvt|foot)/.test(term)) return 'osc777';
  return 'osc9';
}

export class TerminalSignals {
  private readonly seen = new Set<string>();
  private titled = false;
  private lastCount = 0;
  private lastBell = Number.NEGATIVE_INFINITY;
  private readonly now: () => number;

  constructor(private readonly opts: TerminalSignalsOptions) {
    this.now = opts.now ?? Date.now;
  }

  private write(data: string): void {
    try {
      this.opts.write(data);
    } catch {
      // the terminal is gone (SSH dropped): nothing to signal
    }
  }

  /** Held requests as the store lists them now (unattended ones are not waiting for anyone). */
  update(rows: readonly HeldRow[]): void {
    const held = rows.filter((r) => r.state === 'held');
    const fresh = held.filter((r) => !this.seen.has(r.id));
    for (const r of held) this.seen.add(r.id);
    if (this.seen.size > 4096) {
      const live = new Set(held.map((r) => r.id));
      for (const id of this.seen) if (!live.has(id)) this.seen.delete(id);
    }
    if (fresh.length > 0) {
      const t = this.now();
      if (t - this.lastBell >= 1000) {
        this.lastBell = t;
        this.write(BEL);
      }
      if (this.opts.notify) for (const r of fresh) this.notify(r);
    }
    this.setCount(held.length);
  }

  private setCount(n: number): void {
    if (n === this.lastCount && (n > 0) === this.titled) return;
    this.lastCount = n;
    if (n > 0) {
      if (!this.titled) this.write(TITLE_PUSH);
      this.titled = true;
      this.write(`\u001b]0;${this.title(n)}\u0007`);
    } else {
      this.restore();
    }
  }

  title(n: number): string {
    return this.opts.ascii ? `[${n} held] - ${BASE_TITLE}` : `⏸ ${n} held — ${BASE_TITLE}`;
  }

  /** Give the terminal its title back (nothing held, detach, exit). Safe to call twice. */
  restore(): void {
    this.lastCount = 0;
    if (!this.titled) return;
    this.titled = false;
    this.write(`\u001b]0;${BASE_TITLE}\u0007${TITLE_POP}`);
  }

  private notify(r: HeldRow): void {
    const title = printable(`nemoclaw-tui${this.opts.name ? ` (${this.opts.name})` : ''}: request held`, 80);
    const body = printable(`${r.host}:${r.port}${r.binary !== '-' ? ` from ${r.binary}` : ''} is waiting for a decision`);
    const seq = this.opts.notify === 'osc777' ? `\u001b]777;notify;${title};${body}\u0007` : `\u001b]9;${title}: ${body}\u0007`;
    // tmux passes an escape sequence through to the outer terminal only wrapped, with ESC doubled.
    this.write(this.opts.tmux ? `\u001bPtmux;${seq.replace(/\u001b/g, '\u001b\u001b')}\u001b\\` : seq);
  }
}
