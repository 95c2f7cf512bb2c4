/**
 * Regenerates the text captures in docs/tui.md from the real UI attached to a live supervisor:
 * a temporary $NEMOCLAW_HOME runs the drill blueprint (a scripted agent with a local stub model
 * that walks through every guard), one of its walks completes (its unknown host approved from
 * the CLI), then a sandboxed curl asks for a host no rule mentions and is held. While it is held,
 * `nemoclaw-tui` runs in tmux at 80x24 and 200x50 and `tmux capture-pane` stores both screens.
 * Afterwards the held request is denied and the supervisor stopped (`down`).
 *
 *   npx tsc -p . && node docs/capture.ts          (needs tmux, bwrap; about 30 s)
 */
import { execFileSync, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const BIN = join(root, 'bin', 'nemoclaw-tui.js');
const home = mkdtempSync('/tmp/nct-capture-');
const env = { ...process.env, NEMOCLAW_HOME: home, NO_COLOR: '1' };
const SOCKET = `nct-capture-${process.pid}`;
const HELD_URL = 'http://downloads.example.test/models/weights.bin';

function cli(...args: string[]): string {
  return execFileSync(process.execPath, [BIN, ...args], { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function sleep(ms: number): void {
  spawnSync('sleep', [String(ms / 1000)]);
}

function until<T>(what: string, timeoutMs: number, probe: () => T | undefined): T {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`capture: ${what} did not happen within ${timeoutMs / 1000} s (home ${home})`);
    sleep(300);
  }
}

function pending(): Array<{ id: string; host: string }> {
  return JSON.parse(cli('pending', '--json')) as Array<{ id: string; host: string }>;
}

function tmux(...args: string[]): string {
  return execFileSync('tmux', ['-L', SOCKET, ...args], { encoding: 'utf8' });
}

function tuiCommand(): string[] {
  return ['env', `NEMOCLAW_HOME=${home}`, 'LANG=C.UTF-8', 'TERM=xterm-256color', `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`, process.execPath, BIN];
}

const curls: ChildProcess[] = [];
let small = '';
let large = '';
try {
  cli('up', '--blueprint', 'drill');
  // The drill's first walk: approve its unknown host from the CLI, then let it run to the end
  // (file violations, PII redaction, a blocked secret, the token budget running out).
  const first = until('the drill\'s held request', 30_000, () => pending()[0]);
  cli('approve', first.id);
  until('the drill\'s first walk', 90_000, () => (cli('logs', '-n', '400').includes('walk complete') ? true : undefined));
  // Two sandboxed requests for a host no rule mentions: one prompt, two waiters (HELD×2).
  for (let i = 0; i < 2; i++) {
    curls.push(spawn(process.execPath, [BIN, 'run', '--', 'curl', '-s', '-x', 'http://127.0.0.1:3128', HELD_URL], { env, stdio: 'ignore' }));
  }
  until('the held request', 30_000, () => (pending().some((p) => p.host === 'downloads.example.test') ? true : undefined));
  sleep(1000);

  tmux('-f', '/dev/null', 'new-session', '-d', '-x', '80', '-y', '24', '-s', 'small', ...tuiCommand());
  tmux('new-session', '-d', '-x', '200', '-y', '50', '-s', 'large', ...tuiCommand());
  const shows = (s: string) => s.includes('connected') && s.includes('HELD');
  until('both captures', 20_000, () => (shows(tmux('capture-pane', '-p', '-t', 'small')) && shows(tmux('capture-pane', '-p', '-t', 'large')) ? true : undefined));
  sleep(1500); // one more tick of the meters and ages
  small = tmux('capture-pane', '-p', '-t', 'small').replace(/\s+$/gm, '');
  large = tmux('capture-pane', '-p', '-t', 'large').replace(/\s+$/gm, '');
} finally {
  const socketPath = spawnSync('tmux', ['-L', SOCKET, 'display-message', '-p', '#{socket_path}'], { encoding: 'utf8' }).stdout.trim();
  spawnSync('tmux', ['-L', SOCKET, 'kill-server']);
  if (socketPath.includes(SOCKET)) rmSync(socketPath, { force: true });
  try {
    for (const p of pending()) cli('deny', p.id);
  } catch {
    // the supervisor is gone already
  }
  for (const c of curls) if (c.exitCode === null) c.kill();
  spawnSync(process.execPath, [BIN, 'down'], { env, stdio: 'ignore' });
  rmSync(home, { recursive: true, force: true });
}

writeFileSync(join(root, 'docs/tui-80x24.txt'), small + '\n');
writeFileSync(join(root, 'docs/tui-200x50.txt'), large + '\n');
const page = `# The TUI

\`nemoclaw-tui\` (no arguments) attaches this full-screen UI to the supervisor of the default
sandbox, starting it first when none runs. \`q\` (or Ctrl-C) detaches; the supervisor and the agent
keep running, and \`nemoclaw-tui\` attaches again with the history.

Captures below are \`tmux capture-pane\` text of the real UI attached to a live supervisor running
the drill blueprint (a scripted agent with a local stub model): one walk through every guard has
completed (its unknown host approved from the CLI, files refused, PII redacted, a secret blocked,
the hourly token budget spent), and a sandboxed \`curl\` (run twice) is held for
\`downloads.example.test\`. Regenerate them with \`npx tsc -p . && node docs/capture.ts\`.

## 80x24

\`\`\`text
${small}
\`\`\`

## 200x50

\`\`\`text
${large}
\`\`\`

## Keys

| key | does |
|---|---|
| Tab / Shift-Tab, 1-5 | move between panes (1 Network, 2 Filesystem, 3 Meters, 4 Inference, 5 Agent) |
| j k, arrows, g G | move the selection; newest / oldest |
| Enter / Esc | details of the selected row / back (Esc never decides) |
| / | filter the focused list (Enter keeps it, Esc clears it) |
| a / s | approve the held request once / for this session |
| A | always allow: asks first, naming the exact host:port (and binary) scope |
| d / D | deny / always deny |
| b | raise the token budget by 50% (asks first) |
| p | policy revision, history and effective YAML |
| ? | help |
| q, Ctrl-C | detach (asks first when requests are held) |

Alt-modified keys are ignored. Below 80x24 the UI says so and waits for a bigger window.

## Options

- \`--name N\` sandbox to attach to; \`--theme dark|light\`; \`--ascii\` draws gauges with \`#\`/\`.\`
  (automatic on \`TERM=linux\`/\`dumb\` or a non-UTF-8 locale); \`NO_COLOR\` drops all colours.
- \`--headless\`, or stdin/stdout not a terminal, or \`TERM=dumb\`: prints the event follow
  (\`logs -f\`) instead of the full-screen UI.
- \`--host user@box\`: the UI runs here, the supervisor there. Each control connection is carried by
  \`ssh -T -o ControlMaster=auto … user@box -- nemoclaw-tui --name N __bridge\`, whose remote half
  pipes the ssh channel to the box's control socket; a local 0600 socket in a 0700 temp dir stands
  in for it. Needs key-based ssh (BatchMode, a 10 s connect timeout); ports and keys go in
  \`~/.ssh/config\` or a file given with \`--ssh-config FILE\` (\`NEMOCLAW_SSH_CONFIG\`), and
  \`--remote-command PATH\` names the remote \`nemoclaw-tui\` when it is not on the non-interactive PATH.
  A failed ssh says which host and why. Detaching closes the shared ssh connection; closing the UI
  or losing SSH leaves the remote agent running.

## Over SSH

At most 12 frames/s; events are gathered for 80 ms and folded into ring buffers (500 rows per
pane) read with \`useSyncExternalStore\`; lists are sliced to the visible rows; only changed lines
are redrawn. The alternate screen is always left on exit, signal or crash. Losing the supervisor
shows a banner and the UI reconnects, resuming after the last event it saw.
`;
writeFileSync(join(root, 'docs/tui.md'), page);
console.log('wrote docs/tui.md, docs/tui-80x24.txt, docs/tui-200x50.txt');
