/**
 * Issue 16, operator rules against the real program: a real detached supervisor and sandbox, the
 * TUI in tmux at 80x24. An always-allow written from the CLI lets a sandboxed curl through without a
 * hold; the TUI's rules view (`r`) lists it, `x` asks, `y` removes it (a policy revision in the
 * audit log), and the same curl is held for approval again. Only this suite's tmux server and
 * supervisor are stopped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa, type ResultPromise } from 'execa';
import { startUpstream, type Upstream } from '../egress/harness.js';
import { BIN, runCli, startDaemonSupervisor, type DaemonSupervisor } from '../helpers/supervisor.js';
import { askPolicyAllowingLoopback } from '../helpers/policies.js';
import { TmuxPane, requireTmux, tuiPaneCommand } from '../helpers/tmux.js';

let up: Upstream;
let d: DaemonSupervisor;
const pane = new TmuxPane('rules', 80, 24);
const curls: ResultPromise[] = [];

beforeAll(async () => {
  requireTmux();
  // On every loopback address, so 127.0.0.2 (not in the policy) reaches it once allowed.
  up = await startUpstream('rules-e2e', '0.0.0.0');
  d = await startDaemonSupervisor({ policyText: askPolicyAllowingLoopback(up.port), args: ['--unsafe-allow-loopback-upstreams'] });
}, 60_000);

afterAll(async () => {
  await pane.kill();
  for (const c of curls) c.kill();
  await d?.stop();
  await up?.close();
});

function curl(url: string): ResultPromise {
  const c = execa(process.execPath, [BIN, 'run', '--', 'curl', '-s', '-S', '--noproxy', '', '-x', 'http://127.0.0.1:3128', url], {
    env: { ...process.env, NEMOCLAW_HOME: d.home, NO_COLOR: '1' },
    reject: false,
    timeout: 90_000,
  });
  curls.push(c);
  return c;
}

async function waitPending(n: number): Promise<Array<{ id: string; host: string }>> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const list = await d.client.pending();
    if (list.filter((p) => p.state === 'held').length === n) return list.map((p) => ({ id: p.id, host: p.host }));
    if (Date.now() > deadline) throw new Error(`expected ${n} held, got ${JSON.stringify(list)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe('operator rules in tmux (issue 16)', () => {
  it('the rules view lists an always-allow; x then y removes it as a revision; the host is held again', async () => {
    await pane.run(tuiPaneCommand({ NEMOCLAW_HOME: d.home }));
    await pane.waitFor('the attached panes', (s) => s.includes('connected') && s.includes('Network'));
    const target = `127.0.0.2:${up.port}`;
    const first = curl(`http://${target}/first`);
    const [p] = await waitPending(1);
    const approved = await runCli(['approve', p!.id, '--always'], { home: d.home });
    expect(approved.code, approved.stderr).toBe(0);
    expect((await first).stdout).toContain('"from":"rules-e2e"');
    // The rule lets the next request through with no hold.
    expect((await curl(`http://${target}/second`)).stdout).toContain('"url":"/second"');
    const [rule] = await d.client.rules();
    expect(rule).toMatchObject({ scope: 'overlay', action: 'allow', host: '127.0.0.2', port: up.port });

    await pane.keys('r');
    const view = await pane.waitFor('the rules view', (s) => s.includes('Operator rules (1)') && s.includes(rule!.id));
    expect(view).toMatch(new RegExp(`› ${rule!.id}\\s+allow always\\s+127\\.0\\.0\\.2:${up.port}`));
    await pane.keys('x');
    await pane.waitFor('the removal dialog', (s) => s.includes(`Remove rule ${rule!.id}?`) && s.includes('[y] remove'));
    const before = (await d.client.status()).policy.revision;
    await pane.keys('y');
    await pane.waitFor('the rule gone', (s) => s.includes('Operator rules (0)') && s.includes(`removed ${rule!.id}`));
    expect(await d.client.rules()).toEqual([]);
    const history = await d.client.policyHistory();
    expect(history.at(-1)).toMatchObject({ number: before + 1, author: 'tui' });
    expect(history.at(-1)!.reason).toContain(`removed overlay rule ${rule!.id}`);
    const revs = await d.client.events({ kinds: ['policy.revision'] });
    expect(revs.at(-1)).toMatchObject({ number: before + 1, author: 'tui' });

    // Back on the panes, the same host is held again.
    await pane.keys('Escape');
    const third = curl(`http://${target}/third`);
    const [again] = await waitPending(1);
    expect(again!.host).toBe('127.0.0.2');
    await pane.waitFor('held again in the TUI', (s) => s.includes('1 pending') && s.includes(target));
    await runCli(['deny', again!.id], { home: d.home });
    expect((await third).stdout).toContain('denied');
    await pane.waitFor('nothing held', (s) => s.includes('0 pending'));

    await pane.keys('q');
    expect((await pane.exited()).status).toBe('0');
  }, 150_000);
});
