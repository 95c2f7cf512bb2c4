/**
 * Issue 16 against the real program: the TUI in tmux, a real detached supervisor and sandbox,
 * three sandboxed curls held (alpha, bravo, charlie). The cursor is on bravo; another shell denies
 * alpha (with a reason the agent reads in its 403); the cursor stays on bravo and `a` approves
 * bravo. A new hold rings the bell and sets the pane title (`⏸ N held — nemoclaw-tui`, tmux's
 * #{window_bell_flag} and #{pane_title}); the title is given back when nothing is held. `jj` sent
 * in one write moves two rows. Only this suite's tmux server and supervisor are stopped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa, type ResultPromise } from 'execa';
import { startUpstream, type Upstream } from '../egress/harness.js';
import { BIN, runCli, startDaemonSupervisor, type DaemonSupervisor } from '../helpers/supervisor.js';
import { askPolicyAllowingLoopback } from '../helpers/policies.js';
import { TmuxPane, requireTmux, tuiPaneCommand } from '../helpers/tmux.js';

let up: Upstream;
let d: DaemonSupervisor;
const pane = new TmuxPane('console', 100, 30);
const curls: ResultPromise[] = [];

beforeAll(async () => {
  requireTmux();
  up = await startUpstream('console-e2e');
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

async function pendingIds(n: number): Promise<Array<{ id: string; host: string }>> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const list = await d.client.pending();
    if (list.length === n) return list.map((p) => ({ id: p.id, host: p.host }));
    if (Date.now() > deadline) throw new Error(`expected ${n} pending, got ${JSON.stringify(list)}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

const tmuxFormat = async (f: string) => (await pane.tmux('display-message', '-p', '-t', pane.session, f)).trim();
const cursorLine = (s: string) => s.split('\n').find((l) => l.includes('› ')) ?? '';

describe('the operator console in tmux (issue 16)', () => {
  it('selection stays on its request while another shell decides; bell and title on a hold; jj moves two rows', async () => {
    await pane.run(tuiPaneCommand({ NEMOCLAW_HOME: d.home }));
    await pane.waitFor('the attached panes', (s) => s.includes('connected') && s.includes('Network') && s.includes(' pending'));
    const originalTitle = await tmuxFormat('#{pane_title}');
    expect(await tmuxFormat('#{window_bell_flag}')).toBe('0');

    const alpha = `localhost:${up.port}`;
    const bravo = `127.0.0.2:${up.port}`;
    const charlie = `127.0.0.3:${up.port}`;
    const alphaCurl = curl(`http://${alpha}/alpha`);
    const [a] = await pendingIds(1);
    await pane.waitFor('alpha held', (s) => s.includes(alpha) && s.includes('1 pending'));
    // The hold rang the bell and titled the pane.
    expect(await tmuxFormat('#{window_bell_flag}')).toBe('1');
    expect(await tmuxFormat('#{pane_title}')).toBe('⏸ 1 held — nemoclaw-tui');
    curl(`http://${bravo}/bravo`);
    await pendingIds(2);
    curl(`http://${charlie}/charlie`);
    const held = await pendingIds(3);
    await pane.waitFor('three held', (s) => s.includes('3 pending') && s.includes(charlie));
    expect(await tmuxFormat('#{pane_title}')).toBe('⏸ 3 held — nemoclaw-tui');
    // Held rows count down to their timeout (approvals.timeout: 60).
    expect(await pane.screen()).toMatch(/\d+s left\s+HELD\s+localhost/);

    await pane.keys('j');
    await pane.waitFor('the cursor on bravo', (s) => cursorLine(s).includes(bravo));

    // Another shell denies alpha, with a reason.
    const denied = await runCli(['deny', a!.id, '--reason', 'not for this task'], { home: d.home });
    expect(denied.code, denied.stderr).toBe(0);
    const afterDeny = await pane.waitFor('alpha gone from the held rows', (s) => s.includes('2 pending'));
    expect(cursorLine(afterDeny)).toContain(bravo);
    const alphaRes = await alphaCurl;
    expect(alphaRes.stdout).toContain('denied by operator: not for this task');

    await pane.keys('a');
    await pane.waitFor('bravo approved', (s) => s.includes(`approved once: ${bravo}`) && s.includes('1 pending'));
    const left = await d.client.pending();
    expect(left.map((p) => p.host)).toEqual(['127.0.0.3']);
    const events = await d.client.events({ kinds: ['approval.decision'] });
    const bravoId = held.find((p) => p.host === '127.0.0.2')!.id;
    expect(events.find((e) => e.pending_id === bravoId)).toMatchObject({ decision: 'once', by: 'tui' });
    expect(events.find((e) => e.pending_id === a!.id)).toMatchObject({ decision: 'deny', by: 'cli', reason: 'not for this task' });

    // `jj` in one write: two rows down from the top (charlie → bravo's row → alpha's row).
    await pane.keys('g');
    await pane.waitFor('the cursor on charlie', (s) => cursorLine(s).includes(charlie));
    await pane.keys('jj');
    await pane.waitFor('the cursor two rows down', (s) => cursorLine(s).includes(alpha));
    expect(cursorLine(await pane.screen())).toMatch(/deny\s+localhost/);

    // Nothing held any more: the pane gets its title back.
    await runCli(['deny', held.find((p) => p.host === '127.0.0.3')!.id], { home: d.home });
    await pane.waitFor('nothing held', (s) => s.includes('0 pending'));
    const deadline = Date.now() + 5000;
    while ((await tmuxFormat('#{pane_title}')).includes('held') && Date.now() < deadline) await new Promise((r) => setTimeout(r, 100));
    expect(await tmuxFormat('#{pane_title}')).toBe(originalTitle);

    await pane.keys('q');
    expect((await pane.exited()).status).toBe('0');
  }, 150_000);
});
