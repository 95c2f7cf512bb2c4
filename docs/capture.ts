/**
 * Regenerates the text captures in docs/tui.md: runs the real UI (dist/components/run.js) in a
 * tmux pane at 80x24 and 200x50, fed with the recorded event streams of the component tests,
 * and stores `tmux capture-pane` output.
 *
 *   npx tsc -p . && node docs/capture.ts
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const FIXTURES = ['agent', 'inference', 'filesystem', 'network', 'meters'];

/** The fixtures end at 2026-11-22T10:00Z; shift them so ages and uptime read naturally today. */
const SHIFT = Date.now() - Date.parse('2026-11-22T10:00:05.000Z');
const shifted = (ts: unknown) => (typeof ts === 'string' ? new Date(Date.parse(ts) + SHIFT).toISOString() : ts);

function events(): Record<string, unknown>[] {
  return FIXTURES.flatMap((f) =>
    readFileSync(join(root, 'test/components/fixtures', `${f}.jsonl`), 'utf8')
      .split('\n')
      .filter((l) => l.trim())
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .map((e) => ({ ...e, ts: shifted(e.ts) })),
  );
}

async function child(): Promise<void> {
  const { runTui } = (await import('../dist/components/run.js')) as typeof import('../components/run.js');
  const evs = events();
  const held = evs.filter((e) => e.kind === 'net.held' && e.joined === false);
  await runTui({
    name: 'demo',
    client: {
      status: async () => ({ name: 'demo', state: 'running', policy: { revision: 4 }, started_at: shifted('2026-11-22T08:55:00.000Z') }),
      pending: async () => held.map((e) => ({ ...e, id: e.pending_id, created_at: e.ts, waiters: e.pending_id === 'p-2' ? 2 : 1 })),
      decide: async () => undefined,
      policy: async () => ({ revision: 4, yaml: '', history: [] }),
      budget: async () => undefined,
      raiseBudget: async () => '',
      follow(h, signal) {
        for (const e of evs) h.onEvent(e as never);
        h.onOpen?.(); // like the real client: backlog first, then GET /v1/pending
        return new Promise((r) => signal.addEventListener('abort', () => r()));
      },
    },
  });
}

function capture(columns: number, rows: number, dir: string): string {
  const sock = join(dir, `tmux-${columns}x${rows}.sock`);
  const cmd = `env LANG=C.UTF-8 TERM=xterm-256color '${process.execPath}' '${new URL(import.meta.url).pathname}' --child`;
  execFileSync('tmux', ['-S', sock, 'new-session', '-d', '-x', String(columns), '-y', String(rows), '-s', 'cap', cmd]);
  spawnSync('sleep', ['2.5']);
  const text = execFileSync('tmux', ['-S', sock, 'capture-pane', '-p', '-t', 'cap'], { encoding: 'utf8' });
  spawnSync('tmux', ['-S', sock, 'kill-server']);
  return text.replace(/\s+$/gm, '');
}

if (process.argv[2] === '--child') {
  await child();
} else {
  const dir = mkdtempSync(join(tmpdir(), 'tui-capture-'));
  try {
    const small = capture(80, 24, dir);
    const large = capture(200, 50, dir);
    writeFileSync(join(root, 'docs/tui-80x24.txt'), small + '\n');
    writeFileSync(join(root, 'docs/tui-200x50.txt'), large + '\n');
    const page = `# The TUI

\`nemoclaw-tui\` (no arguments) attaches this full-screen UI to the supervisor of the default
sandbox, starting it first when none runs. \`q\` (or Ctrl-C) detaches; the supervisor and the agent
keep running, and \`nemoclaw-tui\` attaches again with the history.

Captures below are \`tmux capture-pane\` text of the real UI fed with the recorded event streams of
the component tests (\`test/components/fixtures/*.jsonl\`). Regenerate them with
\`npx tsc -p . && node docs/capture.ts\`.

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
  in for it. Needs key-based ssh (BatchMode) and \`nemoclaw-tui\` on the remote PATH; ports and keys
  go in \`~/.ssh/config\`. Closing the UI or losing SSH leaves the remote agent running.

## Over SSH

At most 12 frames/s; events are gathered for 80 ms and folded into ring buffers (500 rows per
pane) read with \`useSyncExternalStore\`; lists are sliced to the visible rows; only changed lines
are redrawn. The alternate screen is always left on exit, signal or crash. Losing the supervisor
shows a banner and the UI reconnects, resuming after the last event it saw.
`;
    writeFileSync(join(root, 'docs/tui.md'), page);
    console.log('wrote docs/tui.md, docs/tui-80x24.txt, docs/tui-200x50.txt');
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
