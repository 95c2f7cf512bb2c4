/**
 * The real full-screen TUI in tmux against a real detached supervisor and sandbox: a command in
 * the sandbox (`nemoclaw-tui run -- curl …`, another process) asks for a host the policy does not
 * know; the held request shows up in the Network pane; `a` lets that very request through; `q`
 * detaches while the supervisor and the sandbox keep running; attaching again shows the history.
 *
 * The upstream is a loopback test server (`up --unsafe-allow-loopback-upstreams`); the policy
 * allows it as 127.0.0.1, so `localhost` is the unknown host that gets held. The policy leaves
 * `when_unattended` at its default (deny): the request is held only because the TUI attached as
 * an operator. Only this suite's own tmux server (its -L socket) and supervisor (`down`) are
 * stopped.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { rmSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { startUpstream, type Upstream } from '../egress/harness.js';
import { BIN, runCli, spawnCli, startDaemonSupervisor, type BackgroundCli, type DaemonSupervisor } from '../helpers/supervisor.js';

const COLUMNS = 100;
const ROWS = 30;
const SOCKET = `nct-tui-e2e-${process.pid}-${randomBytes(3).toString('hex')}`;
const SESSION = 'tui';

let up: Upstream;
let d: DaemonSupervisor;
let keeper: BackgroundCli | undefined;
let keeperExited = false;
let tmuxStarted = false;

function requireTmux(): void {
  try {
    execFileSync('tmux', ['-V'], { stdio: 'pipe' });
  } catch {
    throw new Error('this test drives the TUI in tmux, which is not installed: apt-get install tmux (CI installs it through .ci/run)');
  }
}

async function tmux(...args: string[]): Promise<string> {
  const r = await execa('tmux', ['-L', SOCKET, ...args], { reject: false });
  if (r.exitCode !== 0) throw new Error(`tmux ${args.join(' ')} failed (exit ${r.exitCode}): ${r.stderr}`);
  return r.stdout;
}

/** The visible screen (or, with history, everything the pane printed, alternate screen excluded). */
function screen(history = false): Promise<string> {
  return tmux('capture-pane', '-p', '-t', SESSION, ...(history ? ['-S', '-'] : []));
}

async function waitForScreen(what: string, ok: (text: string) => boolean, timeoutMs = 20_000, history = false): Promise<string> {
  const deadline = Date.now() + timeoutMs;
  let last = '';
  while (Date.now() < deadline) {
    last = await screen(history);
    if (ok(last)) return last;
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(`the TUI did not show ${what} within ${timeoutMs} ms; the pane showed:\n${last}`);
}

/** The TUI as an operator would start it, in a 100x30 tmux pane that stays readable after exit. */
async function attachTui(): Promise<void> {
  // A wrapper shell reports the exit status on the (remain-on-exit) pane; the arguments go through "$@".
  const command = [
    'env',
    `NEMOCLAW_HOME=${d.home}`,
    'LANG=C.UTF-8',
    'TERM=xterm-256color',
    // CI exports CI=true; Ink would then draw nothing until exit. Set it here too, so this test
    // proves the TUI draws live on a terminal whatever the environment says.
    'CI=true',
    `PATH=${process.env.PATH ?? '/usr/bin:/bin'}`,
    'sh',
    '-c',
    '"$@"; echo "[nemoclaw-tui exited with $?]"',
    'sh',
    process.execPath,
    BIN,
  ];
  if (!tmuxStarted) {
    await tmux('-f', '/dev/null', 'new-session', '-d', '-x', String(COLUMNS), '-y', String(ROWS), '-s', SESSION, ...command, ';', 'set-option', '-t', SESSION, 'remain-on-exit', 'on');
    tmuxStarted = true;
  } else {
    // Forget the earlier run's output, so what the pane shows is this attach's.
    await tmux('clear-history', '-t', SESSION);
    await tmux('respawn-pane', '-t', SESSION, ...command);
  }
  await waitForScreen('the attached panes', (s) => s.includes('connected') && s.includes('Network') && s.includes(' pending'));
}

/** Waits for the TUI process to end and returns its exit status, as the wrapper shell printed it. */
async function tuiExit(): Promise<string> {
  const text = await waitForScreen('the TUI exiting', (s) => /\[nemoclaw-tui exited with \d+\]/.test(s), 10_000, true);
  return /\[nemoclaw-tui exited with (\d+)\]/.exec(text)![1]!;
}

function policy(port: number): string {
  return `version: 1
network_policies:
  upstream:
    endpoints:
      - host: 127.0.0.1
        port: ${port}
approvals:
  mode: ask
  timeout: 60
`;
}

async function sandboxInstances(): Promise<number> {
  const r = await runCli(['status', '--json'], { home: d.home });
  const s = JSON.parse(r.stdout) as { services?: { sandbox?: { instances?: unknown[] } } };
  return s.services?.sandbox?.instances?.length ?? 0;
}

beforeAll(async () => {
  requireTmux();
  up = await startUpstream('tui-e2e');
  d = await startDaemonSupervisor({ policyText: policy(up.port), args: ['--unsafe-allow-loopback-upstreams'] });
  // A long-running sandboxed command: it must outlive the TUI's detach.
  keeper = spawnCli(['run', '--', 'sleep', '600'], { home: d.home });
  void keeper.exited.then(() => (keeperExited = true));
  const deadline = Date.now() + 20_000;
  while ((await sandboxInstances()) < 1) {
    if (Date.now() > deadline) throw new Error('the long-running sandbox (run -- sleep 600) did not start');
    await new Promise((r) => setTimeout(r, 200));
  }
}, 60_000);

afterAll(async () => {
  if (tmuxStarted) {
    const socketPath = (await execa('tmux', ['-L', SOCKET, 'display-message', '-p', '#{socket_path}'], { reject: false })).stdout.trim();
    await execa('tmux', ['-L', SOCKET, 'kill-server'], { reject: false });
    if (socketPath.includes(SOCKET)) rmSync(socketPath, { force: true });
  }
  await keeper?.kill();
  await d?.stop();
  await up?.close();
});

describe('the TUI in tmux against a real supervisor and sandbox', () => {
  it('shows a held request, approves it with a, detaches with q, and shows the history on re-attach', async () => {
    await attachTui();
    const target = `localhost:${up.port}`;
    const url = `http://${target}/held-by-tui`;

    const curl = execa(process.execPath, [BIN, 'run', '--', 'curl', '-s', '-S', '--noproxy', '', '-x', 'http://127.0.0.1:3128', url], {
      env: { ...process.env, NEMOCLAW_HOME: d.home, NO_COLOR: '1' },
      reject: false,
      timeout: 60_000,
    });

    // Held: on top of the Network pane, highlighted as HELD, with host:port, binary, method and path.
    const held = await waitForScreen(`the held request to ${target}`, (s) => s.includes('HELD') && s.includes(target));
    const heldLine = held.split('\n').find((l) => l.includes('HELD') && l.includes(target)) ?? '';
    expect(heldLine).toMatch(new RegExp(`HELD\\s+${target}\\s+curl\\s+GET\\s+/held-by-tui`));
    expect(held).toMatch(/│ 1 pending/);
    expect(up.requests.some((q) => q.url === '/held-by-tui')).toBe(false);

    await tmux('send-keys', '-t', SESSION, 'a');
    await waitForScreen('the approval', (s) => s.includes(`approved once: ${target}`), 10_000);

    // The very same request completes: curl prints the upstream's body.
    const r = await curl;
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ from: 'tui-e2e', method: 'GET', url: '/held-by-tui' });
    expect(up.requests.filter((q) => q.url === '/held-by-tui')).toHaveLength(1);

    // The pane now shows the operator's decision and the proxy's allow, and nothing held.
    const after = await waitForScreen(
      'the decision in the history',
      (s) => new RegExp(`once\\s+${target}`).test(s) && new RegExp(`allow\\s+${target}`).test(s) && /│ 0 pending/.test(s),
    );
    expect(after).not.toContain('HELD');
    expect(after).toMatch(new RegExp(`allow\\s+${target}\\s+curl\\s+GET\\s+/held-by-tui`));

    // q detaches (nothing is held, so it does not ask) and says the supervisor keeps running.
    await tmux('send-keys', '-t', SESSION, 'q');
    expect(await tuiExit()).toBe('0');
    expect(await screen(true)).toContain('detached from sandbox "default"; the supervisor and the agent keep running');

    const status = await runCli(['status', '--json'], { home: d.home });
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ running: true, state: 'running', operators: 0 });
    expect(await sandboxInstances()).toBeGreaterThanOrEqual(1);
    expect(keeperExited, 'the sandboxed `run -- sleep 600` ended with the TUI').toBe(false);

    // Attaching again replays the history: the decision taken in the earlier session.
    await attachTui();
    const again = await waitForScreen('the earlier decision after re-attaching', (s) => new RegExp(`once\\s+${target}`).test(s) && new RegExp(`allow\\s+${target}`).test(s));
    expect(again).toMatch(/│ 0 pending/);
    const onceLine = again.split('\n').find((l) => new RegExp(`once\\s+${target}`).test(l)) ?? '';
    expect(onceLine).toMatch(/GET\s+\/held-by-tui/);

    await tmux('send-keys', '-t', SESSION, 'q');
    expect(await tuiExit()).toBe('0');
  }, 120_000);
});
