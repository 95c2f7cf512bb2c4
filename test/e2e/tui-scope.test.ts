/**
 * Issue 16, the scope chooser against the real program: a real detached supervisor and sandbox,
 * the TUI in tmux (`--time-boxes 6s,1h` so a time box ends within the test). `A` on a held curl:
 * "for 6 s", "this binary", "this host:port": the summary names exactly that, `y` writes exactly that
 * rule (binary, host, port, end time; in `rules list`, `pending` and the effective policy), another
 * port of the same host is still held, and when the 6 s are up the rule ends by itself (an expiry
 * revision) and the host is held again. `D`: "always", "any binary", "any port" writes that deny, and
 * another port of the host is refused at once. Only this suite's tmux server and supervisor are stopped.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa, type ResultPromise } from 'execa';
import { startUpstream, type Upstream } from '../egress/harness.js';
import { BIN, runCli, startDaemonSupervisor, type DaemonSupervisor } from '../helpers/supervisor.js';
import { askPolicyAllowingLoopback } from '../helpers/policies.js';
import { TmuxPane, requireTmux, tuiPaneCommand } from '../helpers/tmux.js';

let up: Upstream;
let other: Upstream;
let d: DaemonSupervisor;
const pane = new TmuxPane('scope', 100, 30);
const curls: ResultPromise[] = [];

beforeAll(async () => {
  requireTmux();
  // On every loopback address, so 127.0.0.2 / 127.0.0.3 (not in the policy) reach them once allowed.
  up = await startUpstream('scope-e2e', '0.0.0.0');
  other = await startUpstream('scope-other', '0.0.0.0');
  d = await startDaemonSupervisor({ policyText: askPolicyAllowingLoopback(up.port), args: ['--unsafe-allow-loopback-upstreams'] });
}, 60_000);

afterAll(async () => {
  await pane.kill();
  for (const c of curls) c.kill();
  await d?.stop();
  await up?.close();
  await other?.close();
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

async function held(host: string, port: number): Promise<{ id: string; binary: string | null }> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const p = (await d.client.pending()).find((x) => x.state === 'held' && x.host === host && x.port === port);
    if (p) return { id: p.id, binary: p.binary };
    if (Date.now() > deadline) throw new Error(`${host}:${port} was not held`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** The dialog's text as one line (it wraps inside its border). */
const flat = (s: string) => s.replace(/[│╭╮╰╯─]/g, ' ').replace(/\s+/g, ' ');

describe('the scope chooser in tmux (issue 16)', () => {
  it('A writes exactly the scope shown, a time box ends by itself; D asks too and writes its scope', async () => {
    await pane.run(tuiPaneCommand({ NEMOCLAW_HOME: d.home }, ['tui', '--time-boxes', '6s,1h']));
    await pane.waitFor('the attached panes', (s) => s.includes('connected') && s.includes('Network'));

    const target = `127.0.0.2:${up.port}`;
    const first = curl(`http://${target}/one`);
    const p1 = await held('127.0.0.2', up.port);
    expect(p1.binary).toMatch(/^\/.*curl$/);
    await pane.waitFor('the held row', (s) => s.includes('1 pending') && s.includes(target));
    await pane.keys('A');
    await pane.waitFor('how long', (s) => s.includes('How long?') && s.includes('2 for 6 s') && s.includes('5 always (until removed)'));
    await pane.keys('2');
    await pane.waitFor('which programs', (s) => s.includes('Which programs?') && s.includes(`1 this binary: ${p1.binary}`));
    await pane.keys('1');
    await pane.waitFor('which hosts', (s) => s.includes('Which hosts?') && s.includes(`1 this host:port: ${target}`));
    await pane.keys('1');
    const summary = `Allow ${target}, only ${p1.binary}, for 6 s — exactly this.`;
    await pane.waitFor('the summary', (s) => flat(s).includes(summary) && s.includes('[y] allow exactly this'));
    await pane.keys('y');
    expect((await first).stdout).toContain('"url":"/one"');

    // Exactly that rule: this binary, this host:port, ending in 6 s.
    const [rule] = await d.client.rules();
    expect(rule).toMatchObject({ scope: 'overlay', action: 'allow', host: '127.0.0.2', port: up.port, binary: p1.binary });
    expect(Date.parse(rule!.expires_at!) - Date.now()).toBeLessThanOrEqual(6_000);
    const events = await d.client.events({ kinds: ['approval.decision'] });
    expect(events.find((e) => e.pending_id === p1.id)).toMatchObject({ decision: 'always', by: 'tui', rule_binary: p1.binary, rule_host: '127.0.0.2', rule_port: up.port, rule_lasts: 'timed' });
    // It shows its time left in `rules list` and `pending`, and its end in the effective policy.
    expect((await runCli(['rules', 'list'], { home: d.home })).stdout).toMatch(new RegExp(`${rule!.id}\\s+allow\\s+127\\.0\\.0\\.2:${up.port}\\s+\\S*curl\\s+\\ds left`));
    expect((await runCli(['pending'], { home: d.home })).stdout).toMatch(/time-boxed rules in force[\s\S]*127\.0\.0\.2:\d+\s+\S*curl\s+\ds left/);
    expect((await d.client.getPolicy()).yaml).toContain(`until ${rule!.expires_at}`);

    // Under the grant: the same host:port passes; another port of the host is still held.
    expect((await curl(`http://${target}/two`)).stdout).toContain('"url":"/two"');
    const otherPort = curl(`http://127.0.0.2:${other.port}/x`);
    const p2 = await held('127.0.0.2', other.port);
    await runCli(['deny', p2.id], { home: d.home });
    await otherPort;

    // The time box ends by itself: an expiry revision, and the host is held again.
    const deadline = Date.now() + 20_000;
    while ((await d.client.rules()).length > 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    expect(await d.client.rules()).toEqual([]);
    expect((await d.client.policyHistory()).at(-1)).toMatchObject({ author: 'expiry' });
    const after = curl(`http://${target}/three`);
    const p3 = await held('127.0.0.2', up.port);
    await pane.waitFor('held again', (s) => s.includes('1 pending') && s.includes(target));

    // D on it (the held row is on top; the cursor stayed on its row): always, any binary, any port.
    await pane.keys('g');
    await pane.waitFor('the cursor on the held row', (s) => (s.split('\n').find((l) => l.includes('› ')) ?? '').includes('HELD'));
    await pane.keys('D');
    await pane.waitFor('the deny chooser', (s) => s.includes(`Always deny ${target}?`) && s.includes('How long?'));
    await pane.keys('5');
    await pane.waitFor('which programs', (s) => s.includes('Which programs?'));
    await pane.keys('2');
    await pane.waitFor('which hosts', (s) => s.includes('Which hosts?'));
    await pane.keys('2');
    await pane.waitFor('the deny summary', (s) => flat(s).includes('Deny 127.0.0.2, any port, any binary, always (until removed) — exactly this.'));
    await pane.keys('y');
    expect((await after).stdout).toContain('policy_denied');
    const rules = await d.client.rules();
    expect(rules).toEqual([expect.objectContaining({ action: 'deny', host: '127.0.0.2', port: 'any', binary: null, expires_at: null })]);
    expect((await d.client.events({ kinds: ['approval.decision'] })).find((e) => e.pending_id === p3.id)).toMatchObject({ decision: 'deny_always', rule_port: 'any', rule_binary: null });
    // Any other port of that host is refused at once, not held.
    const refused = await curl(`http://127.0.0.2:${other.port}/y`);
    expect(refused.stdout).toContain('policy_denied');
    expect(refused.stdout).toContain(`overlay:deny:127.0.0.2:any`);

    await pane.waitFor('nothing held', (s) => s.includes('0 pending'));
    await pane.keys('q');
    expect((await pane.exited()).status).toBe('0');
  }, 180_000);
});
