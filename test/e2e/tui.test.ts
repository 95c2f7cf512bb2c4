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
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { startUpstream, type Upstream } from '../egress/harness.js';
import { BIN, runCli, spawnCli, startDaemonSupervisor, type BackgroundCli, type DaemonSupervisor } from '../helpers/supervisor.js';
import { askPolicyAllowingLoopback } from '../helpers/policies.js';
import { TmuxPane, requireTmux, tuiPaneCommand } from '../helpers/tmux.js';

let up: Upstream;
let d: DaemonSupervisor;
let keeper: BackgroundCli | undefined;
let keeperExited = false;
const pane = new TmuxPane('tui', 100, 30);

/** The TUI as an operator would start it, in a 100x30 tmux pane that stays readable after exit. */
async function attachTui(): Promise<void> {
  await pane.run(tuiPaneCommand({ NEMOCLAW_HOME: d.home }));
  await pane.waitFor('the attached panes', (s) => s.includes('connected') && s.includes('Network') && s.includes(' pending'));
}

async function sandboxInstances(): Promise<number> {
  const r = await runCli(['status', '--json'], { home: d.home });
  const s = JSON.parse(r.stdout) as { services?: { sandbox?: { instances?: unknown[] } } };
  return s.services?.sandbox?.instances?.length ?? 0;
}

beforeAll(async () => {
  requireTmux();
  up = await startUpstream('tui-e2e');
  d = await startDaemonSupervisor({ policyText: askPolicyAllowingLoopback(up.port), args: ['--unsafe-allow-loopback-upstreams'] });
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
  await pane.kill();
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
    const held = await pane.waitFor(`the held request to ${target}`, (s) => s.includes('HELD') && s.includes(target));
    const heldLine = held.split('\n').find((l) => l.includes('HELD') && l.includes(target)) ?? '';
    expect(heldLine).toMatch(new RegExp(`HELD\\s+${target}\\s+curl\\s+GET\\s+/held-by-tui`));
    expect(held).toMatch(/│ 1 pending/);
    expect(up.requests.some((q) => q.url === '/held-by-tui')).toBe(false);

    await pane.keys('a');
    await pane.waitFor('the approval', (s) => s.includes(`approved once: ${target}`), 10_000);

    // The very same request completes: curl prints the upstream's body.
    const r = await curl;
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout)).toMatchObject({ from: 'tui-e2e', method: 'GET', url: '/held-by-tui' });
    expect(up.requests.filter((q) => q.url === '/held-by-tui')).toHaveLength(1);

    // The pane now shows the operator's decision, and nothing held: one row for the request (the
    // proxy's allow that followed the approval updates it, issue 16).
    const after = await pane.waitFor('the decision in the history', (s) => new RegExp(`once\\s+${target}`).test(s) && /│ 0 pending/.test(s));
    expect(after).not.toContain('HELD');
    expect(after).toMatch(new RegExp(`once\\s+${target}\\s+curl\\s+GET\\s+/held-by-tui`));
    const netRows = (screen: string) => screen.split('\n').filter((l) => new RegExp(`\\d\\d:\\d\\d:\\d\\d\\s+\\S+\\s+${target}`).test(l));
    expect(netRows(after)).toHaveLength(1);

    // q detaches (nothing is held, so it does not ask) and says the supervisor keeps running.
    await pane.keys('q');
    expect((await pane.exited()).status).toBe('0');
    expect(await pane.screen(true)).toContain('detached from sandbox "default"; the supervisor and the agent keep running');

    const status = await runCli(['status', '--json'], { home: d.home });
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ running: true, state: 'running', operators: 0 });
    expect(await sandboxInstances()).toBeGreaterThanOrEqual(1);
    expect(keeperExited, 'the sandboxed `run -- sleep 600` ended with the TUI').toBe(false);

    // Attaching again replays the history: the decision taken in the earlier session.
    await attachTui();
    const again = await pane.waitFor('the earlier decision after re-attaching', (s) => new RegExp(`once\\s+${target}`).test(s));
    expect(netRows(again)).toHaveLength(1);
    expect(again).toMatch(/│ 0 pending/);
    const onceLine = again.split('\n').find((l) => new RegExp(`once\\s+${target}`).test(l)) ?? '';
    expect(onceLine).toMatch(/GET\s+\/held-by-tui/);

    await pane.keys('q');
    expect((await pane.exited()).status).toBe('0');
  }, 120_000);
});
