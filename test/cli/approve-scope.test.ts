/**
 * `approve` / `deny` with the chooser's scope options (issue 16) against a real in-process
 * supervisor and egress proxy: `--for 1h --scope any-port --binary any` writes exactly that rule
 * (in `rules list` with its time left, and in `pending`); `deny --for restart --scope domain` a
 * session deny of `*.domain`; a time box of a few seconds ends by itself and the host is held again.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { createEgressService } from '../../src/egress/index.js';
import { makeTempHome, runCli, startTestSupervisor, type TestSupervisor } from '../helpers/supervisor.js';
import { proxyConnect, proxyRequest, startEcho, startUpstream, testResolver } from '../egress/harness.js';

const resolver = testResolver({ 'api.unknown.test': ['127.0.0.1'], 'www.unknown.test': ['127.0.0.1'] });
const POLICY = 'version: 1\nnetwork_policies: {}\napprovals:\n  mode: ask\n  timeout: 30\n  when_unattended: hold\n';

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await (cleanups.pop() as () => Promise<void>)();
});

async function setup() {
  const up = await startUpstream();
  cleanups.push(() => up.close());
  const home = await makeTempHome();
  cleanups.push(() => home.cleanup());
  const t: TestSupervisor = await startTestSupervisor({ home: home.dir, policyText: POLICY, unsafeAllowLoopbackUpstreams: true, services: [() => createEgressService({ resolver })] });
  cleanups.push(() => t.stop());
  return { up, home: home.dir, t };
}

async function heldOne(t: TestSupervisor): Promise<{ id: string; host: string }> {
  for (let i = 0; i < 200; i++) {
    const [p] = await t.client.pending();
    if (p) return p;
    await new Promise((r) => setTimeout(r, 25));
  }
  throw new Error('nothing was held');
}

describe('approve / deny with a scope', () => {
  it('--for 1h --scope any-port --binary any: exactly that rule, listed with its time left', async () => {
    const { up, home, t } = await setup();
    const req = proxyRequest(t.paths.proxySocket, `http://api.unknown.test:${up.port}/a`);
    const p = await heldOne(t);
    const r = await runCli(['approve', p.id, '--for', '1h', '--scope', 'any-port', '--binary', 'any'], { home });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${p.id} api\\.unknown\\.test:${up.port} allowed for a time; rule: allow api\\.unknown\\.test:any port for any binary until 20\\d\\d-`));
    expect((await req).status).toBe(200);
    const [rule] = await t.client.rules();
    expect(rule).toMatchObject({ action: 'allow', host: 'api.unknown.test', port: 'any', binary: null });
    expect(rule!.expires_in_ms).toBeGreaterThan(3_590_000);
    expect((await runCli(['rules', 'list'], { home })).stdout).toMatch(/allow\s+api\.unknown\.test:\*\s+any\s+(59m \d+s|1h 0m) left/);
    expect((await runCli(['pending'], { home })).stdout).toMatch(/no pending requests\n\ntime-boxed rules in force[\s\S]*api\.unknown\.test:\*/);
  });

  it('deny --for restart --scope domain: a session deny of *.domain; a 2 s allow ends by itself', async () => {
    const { up, home, t } = await setup();
    const req = proxyRequest(t.paths.proxySocket, `http://api.unknown.test:${up.port}/a`);
    const p = await heldOne(t);
    const r = await runCli(['deny', p.id, '--for', 'restart', '--scope', 'domain', '--reason', 'not this domain'], { home });
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toContain('denied until the supervisor restarts; rule: deny *.unknown.test:');
    expect((await req).status).toBe(403);
    expect(await t.client.rules()).toEqual([expect.objectContaining({ scope: 'session', action: 'deny', host: '*.unknown.test', binary: null })]);
    // Another host of the domain is refused at once, not held.
    expect((await proxyRequest(t.paths.proxySocket, `http://www.unknown.test:${up.port}/b`)).status).toBe(403);
    const [session] = await t.client.rules();
    await t.client.removeRule(session!.id);

    const again = proxyRequest(t.paths.proxySocket, `http://api.unknown.test:${up.port}/c`);
    const p2 = await heldOne(t);
    expect((await runCli(['approve', p2.id, '--for', '2s'], { home })).code).toBe(0);
    expect((await again).status).toBe(200);
    await new Promise((res) => setTimeout(res, 2_500));
    expect(await t.client.rules()).toEqual([]);
    const third = proxyRequest(t.paths.proxySocket, `http://api.unknown.test:${up.port}/d`);
    const p3 = await heldOne(t);
    expect(p3.host).toBe('api.unknown.test');
    await t.client.decide(p3.id, 'deny');
    expect((await third).status).toBe(403);
  });

  it('a tunnel opened under a time-boxed grant ends when the grant does (the expiry revision revokes it)', async () => {
    const { home, t } = await setup();
    const echo = await startEcho();
    cleanups.push(() => echo.close());
    const pending = proxyConnect(t.paths.proxySocket, `api.unknown.test:${echo.port}`);
    const p = await heldOne(t);
    expect((await runCli(['approve', p.id, '--for', '3s'], { home })).code).toBe(0);
    const tunnel = await pending;
    expect(tunnel.status).toBe(200);
    // It carries bytes while the grant runs…
    const echoed = new Promise<string>((resolve) => tunnel.socket.once('data', (b: Buffer) => resolve(b.toString())));
    tunnel.socket.write('ping');
    expect(await echoed).toBe('ping');
    // …and is closed by the proxy when the rule ends (the expiry revision revokes it).
    const closed = new Promise<number>((resolve) => tunnel.socket.once('close', () => resolve(Date.now())));
    const at = await closed;
    expect(await t.client.rules()).toEqual([]);
    const revisions = await t.client.policyHistory();
    expect(revisions.at(-1)).toMatchObject({ author: 'expiry' });
    expect(Date.parse(revisions.at(-1)!.time)).toBeLessThanOrEqual(at + 50);
    const events = await t.client.events({ kinds: ['net.decision'] });
    expect(events.some((e) => e.action === 'revoke' && e.host === 'api.unknown.test' && e.port === echo.port)).toBe(true);
  });

  it('usage errors name the option; --help lists the scope options', async () => {
    const { home } = await setup();
    const bad = await runCli(['approve', 'p-1', '--scope', 'domain'], { home });
    expect(bad.code).toBe(2);
    expect(bad.stderr).toContain('a one-time decision writes none');
    expect((await runCli(['approve', 'p-1', '--for', 'soon'], { home })).stderr).toContain('--for must be once, restart, always, or a duration');
    const help = await runCli(['approve', '--help'], { home });
    for (const opt of ['--for <duration>', '--scope <scope>', '--binary <which>']) expect(help.stdout).toContain(opt);
    expect((await runCli(['deny', '--help'], { home })).stdout).toContain('--for <duration>');
  });
});
