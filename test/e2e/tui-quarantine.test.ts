/**
 * The kill switch (issue 16) against the real program: the drill blueprint's agent in the real
 * sandbox under a detached supervisor, the TUI in tmux. `Q`, a reason and Enter quarantine it: the
 * agent stops, a sandboxed curl is refused at once (not held) with a refusal that says quarantined,
 * and so is inference; the workdir stays; the reason is in the audit log. After `down`, `up` is
 * refused; a supervisor started anyway (the daemon's own entry) keeps the agent stopped and egress
 * refused; `quarantine release` lifts it and `up` works again. Only this suite's processes are stopped.
 */
import { existsSync } from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { startUpstream, type Upstream } from '../egress/harness.js';
import { BIN, DRILL_OFFLINE_ENV, makeTempHome, readAuditRecords, runCli, spawnCli, type BackgroundCli, type TempHome } from '../helpers/supervisor.js';
import { TmuxPane, requireTmux, tuiPaneCommand } from '../helpers/tmux.js';
import { ControlClient } from '../../src/control/client.js';
import { sandboxPaths } from '../../src/shared/home.js';

let home: TempHome;
let up: Upstream;
let foreground: BackgroundCli | undefined;
const pane = new TmuxPane('quarantine', 100, 30);
const env = { NVIDIA_API_KEY: undefined, ...DRILL_OFFLINE_ENV };

beforeAll(async () => {
  requireTmux();
  home = await makeTempHome('nct-q-');
  up = await startUpstream('quarantine-e2e');
}, 30_000);

afterAll(async () => {
  await pane.kill();
  await foreground?.kill();
  await runCli(['down'], { home: home.dir, env });
  await up?.close();
  await home?.cleanup();
});

const client = () => ControlClient.forSandbox('default', home.dir);

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs = 60_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await probe();
      if (v !== undefined) return v;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

const agentState = async () => String((await client().status()).services.agent?.state ?? '');

function sandboxCurl(url: string) {
  return execa(process.execPath, [BIN, 'run', '--', 'curl', '-s', '-S', '--noproxy', '', '-x', 'http://127.0.0.1:3128', url], {
    env: { ...process.env, NEMOCLAW_HOME: home.dir, NO_COLOR: '1' },
    reject: false,
    timeout: 60_000,
  });
}

describe('quarantine (issue 16)', () => {
  it('Q stops the agent and refuses egress and inference; it survives a restart; up is refused until release', async () => {
    const started = await runCli(['up', '--blueprint', 'drill', '--unsafe-allow-loopback-upstreams'], { home: home.dir, env, timeoutMs: 90_000 });
    expect(started.code, `${started.stdout}\n${started.stderr}`).toBe(0);
    await until('the drill agent running', async () => (['running', 'healthy'].includes(await agentState()) ? true : undefined), 90_000);

    await pane.run(tuiPaneCommand({ NEMOCLAW_HOME: home.dir }));
    await pane.waitFor('the attached panes', (s) => s.includes('connected') && s.includes('Network'));
    await pane.keys('Q');
    await pane.waitFor('the quarantine dialog', (s) => s.includes('Quarantine the sandbox?') && s.includes('[⏎] quarantine'));
    await pane.keys('exfil suspected');
    await pane.waitFor('the reason typed', (s) => s.includes('> exfil suspected_'));
    await pane.keys('Enter');
    await pane.waitFor('the quarantine banner', (s) => s.includes('QUARANTINED (exfil suspected)'));

    const status = await client().status();
    expect(status.services.quarantine).toMatchObject({ quarantined: true, reason: 'exfil suspected', by: 'tui' });
    await until('the agent stopped', async () => ((await agentState()) === 'stopped' ? true : undefined), 20_000);
    // Egress is refused at once (not held), saying why; so is inference.
    const refused = await sandboxCurl(`http://127.0.0.1:${up.port}/x`);
    expect(refused.stdout).toContain('quarantined');
    expect(refused.stdout).toContain('exfil suspected');
    expect((await client().pending()).filter((p) => p.state === 'held')).toEqual([]);
    const inference = await sandboxCurl('http://inference.local/v1/models');
    expect(inference.stdout).toContain('quarantined');
    // The workdir is kept as evidence; the reason is in the audit log (and a policy revision).
    const paths = sandboxPaths('default', home.dir);
    expect(existsSync(paths.workdir)).toBe(true);
    const events = await client().events({ kinds: ['sandbox.lifecycle', 'policy.revision'] });
    expect(events.find((e) => e.action === 'quarantine')).toMatchObject({ reason: 'exfil suspected', by: 'tui' });
    expect(events.find((e) => e.kind === 'policy.revision' && e.reason === 'quarantine: exfil suspected')).toBeDefined();
    await pane.keys('q');
    await pane.exited();

    // `status` shows it; after `down`, `up` is refused.
    const st = await runCli(['status'], { home: home.dir, env });
    expect(st.stdout).toMatch(/quarantine\s+quarantined=true reason="exfil suspected"/);
    expect((await runCli(['down'], { home: home.dir, env })).code).toBe(0);
    const refusedUp = await runCli(['up'], { home: home.dir, env });
    expect(refusedUp.code).toBe(1);
    expect(refusedUp.stderr).toContain('is quarantined since');
    expect(refusedUp.stderr).toContain('quarantine release');
    expect((await runCli(['quarantine', 'status'], { home: home.dir, env })).code).toBe(1);

    // A supervisor started anyway (the daemon's entry) keeps the agent stopped and egress refused.
    foreground = spawnCli(['__supervise', '--unsafe-allow-loopback-upstreams'], { home: home.dir, env });
    await until('the restarted supervisor', async () => ((await client().status()).services.quarantine?.quarantined === true ? true : undefined), 60_000);
    expect(await agentState()).toBe('quarantined');
    const again = await sandboxCurl(`http://127.0.0.1:${up.port}/y`);
    expect(again.stdout).toContain('quarantined');

    // Release: a revision; egress follows the policy again (this host is held, not refused).
    const released = await runCli(['quarantine', 'release', '--reason', 'reviewed'], { home: home.dir, env });
    expect(released.code, released.stderr).toBe(0);
    expect(released.stdout).toContain('released the quarantine');
    expect((await client().policyHistory()).at(-1)!.reason).toBe('quarantine released: reviewed');
    await foreground.kill();
    foreground = undefined;
    const upAgain = await runCli(['up', '--unsafe-allow-loopback-upstreams'], { home: home.dir, env, timeoutMs: 90_000 });
    expect(upAgain.code, upAgain.stderr).toBe(0);
    await until('the agent running again', async () => (['running', 'healthy'].includes(await agentState()) ? true : undefined), 90_000);
    const records = readAuditRecords(paths.auditDir);
    expect(records.some((r) => r.action === 'quarantine.released' && r.release_reason === 'reviewed')).toBe(true);
  }, 300_000);
});
