/**
 * The egress service inside a real (in-process) supervisor: the real policy store decides, the
 * control API serves /v1/pending, and the CLI (`pending`, `approve`, `deny`, a separate process)
 * decides. Upstreams are on loopback, so the supervisor runs with unsafeAllowLoopbackUpstreams.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { connect } from 'node:net';
import { createEgressProxy, createEgressService } from '../../src/egress/index.js';
import { systemClock } from '../../src/shared/clock.js';
import { makeTempHome, runCli, startTestSupervisor, type TestSupervisor } from '../helpers/supervisor.js';
import { proxyConnect, proxyRequest, startEcho, startUpstream, testResolver } from './harness.js';

const resolver = testResolver({ 'allowed.test': ['127.0.0.1'], 'unknown.test': ['127.0.0.1'], 'rest.test': ['127.0.0.1'], 'a.glob.test': ['127.0.0.1'], 'b.a.glob.test': ['127.0.0.1'], 'glob.test': ['127.0.0.1'] });

function policy(port: number, extra = ''): string {
  return `version: 1
network_policies:
  upstream:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: allowed.test
        port: ${port}
      - host: "*.glob.test"
        port: ${port}
      - host: rest.test
        port: ${port}
        protocol: rest
        rules:
          - allow: { method: GET, path: "/**" }
${extra}approvals:
  mode: ask
  timeout: 30
  when_unattended: hold
`;
}

const cleanups: Array<() => Promise<void>> = [];
afterEach(async () => {
  while (cleanups.length > 0) await (cleanups.pop() as () => Promise<void>)();
});

async function start(home: string, port: number, policyText?: string): Promise<TestSupervisor> {
  const t = await startTestSupervisor({ home, policyText: policyText ?? policy(port), unsafeAllowLoopbackUpstreams: true, services: [() => createEgressService({ resolver })] });
  return t;
}

/** A loopback upstream, a temp home and the supervisor on it, all cleaned up after the test. */
async function startWithUpstream() {
  const up = await startUpstream();
  cleanups.push(() => up.close());
  const home = await makeTempHome();
  cleanups.push(() => home.cleanup());
  const t = await start(home.dir, up.port);
  cleanups.push(() => t.stop());
  return { up, home, t };
}

describe('egress service in a supervisor', () => {
  it('decides by policy: allowed passes, wrong port and glob depth are held, L7 POST refused', async () => {
    const { up, home, t } = await startWithUpstream();
    const sock = t.paths.proxySocket;
    expect((await proxyRequest(sock, `http://allowed.test:${up.port}/x`)).status).toBe(200);
    expect((await proxyRequest(sock, `http://a.glob.test:${up.port}/x`)).status).toBe(200);
    expect((await proxyRequest(sock, `http://rest.test:${up.port}/x`)).status).toBe(200);
    const post = await proxyRequest(sock, `http://rest.test:${up.port}/x`, { method: 'POST', body: 'no' });
    expect(post.status).toBe(403);
    expect(post.json()).toMatchObject({ error: 'policy_denied', host: 'rest.test' });
    // wrong port, bare parent of a glob and a two-label subdomain are not in the policy: held
    const wrongPort = proxyRequest(sock, `http://allowed.test:${up.port + 1}/x`);
    const parent = proxyRequest(sock, `http://glob.test:${up.port}/x`);
    const deep = proxyRequest(sock, `http://b.a.glob.test:${up.port}/x`);
    const list = await waitForPending(t, 3);
    expect(list.map((p) => `${p.host}:${p.port}`).sort()).toEqual([`allowed.test:${up.port + 1}`, `b.a.glob.test:${up.port}`, `glob.test:${up.port}`].sort());
    for (const p of list) await t.client.decide(p.id, 'deny');
    for (const r of await Promise.all([wrongPort, parent, deep])) expect(r.status).toBe(403);
    const status = await t.client.status();
    expect(status.services.egress).toMatchObject({ listening: true, socket: sock, pending: 0, unsafe_allow_loopback_upstreams: true });
  });

  it('CLI: pending lists the held request, approve from another process completes it, always survives restart as a revision', async () => {
    const up = await startUpstream();
    cleanups.push(() => up.close());
    const home = await makeTempHome();
    cleanups.push(() => home.cleanup());
    let t = await start(home.dir, up.port);
    const held = proxyRequest(t.paths.proxySocket, `http://unknown.test:${up.port}/very/same?q=1`, { method: 'POST', body: 'the-body' });
    const [entry] = await waitForPending(t, 1);
    const listed = await runCli(['pending', '--json'], { home: home.dir });
    expect(listed.code).toBe(0);
    expect(JSON.parse(listed.stdout)).toMatchObject([{ id: entry!.id, host: 'unknown.test', port: up.port, state: 'held', waiters: 1 }]);
    const human = await runCli(['pending'], { home: home.dir });
    expect(human.stdout).toContain(`unknown.test:${up.port}`);
    expect(up.requests).toHaveLength(0);

    const approved = await runCli(['approve', entry!.id, '--always'], { home: home.dir });
    expect(approved.code, approved.stderr).toBe(0);
    expect(approved.stdout).toMatch(/always allowed/);
    const res = await held;
    expect(res.status).toBe(200);
    expect(res.json()).toMatchObject({ url: '/very/same?q=1', body: 'the-body' });
    expect(up.requests).toHaveLength(1);

    const events = await t.client.events({ kinds: ['approval.decision'] });
    expect(events[0]).toMatchObject({ decision: 'always', by: 'cli', pending_id: entry!.id, host: 'unknown.test' });
    expect(typeof events[0]!.latency_ms).toBe('number');
    const history = await t.client.policyHistory();
    expect(history.at(-1)).toMatchObject({ author: 'approval' });
    expect(history.at(-1)!.reason).toMatch(/unknown.test/);

    await t.stop();
    t = await start(home.dir, up.port);
    cleanups.push(() => t.stop());
    expect((await proxyRequest(t.paths.proxySocket, `http://unknown.test:${up.port}/again`)).status).toBe(200);
    expect((await t.client.policyHistory()).some((r) => r.author === 'approval')).toBe(true);
  });

  it('CLI: deny gives the JSON 403, unknown ids and bad flags fail with a next step', async () => {
    const { up, home, t } = await startWithUpstream();
    const held = proxyRequest(t.paths.proxySocket, `http://unknown.test:${up.port}/`);
    const [entry] = await waitForPending(t, 1);
    const denied = await runCli(['deny', entry!.id], { home: home.dir });
    expect(denied.code).toBe(0);
    const res = await held;
    expect(res.status).toBe(403);
    expect(res.headers['x-nemoclaw-policy']).toMatch(/^policy_denied/);
    expect(res.json()).toMatchObject({ error: 'policy_denied', host: 'unknown.test', port: up.port });

    const missing = await runCli(['approve', 'p-404'], { home: home.dir });
    expect(missing.code).not.toBe(0);
    expect(missing.stderr).toMatch(/no pending request "p-404"/);
    expect(missing.stderr).toMatch(/next step: .*nemoclaw-tui pending/);
    const both = await runCli(['approve', 'p-1', '--session', '--always'], { home: home.dir });
    expect(both.code).toBe(2);
  });

  it('CLI: approve on a prompt whose client had gone says so (text and --json) and still saves the rule', async () => {
    const { up, home, t } = await startWithUpstream();
    const leave = async (path: string) => {
      const s = connect(t.paths.proxySocket);
      s.on('error', () => {});
      s.write(`GET http://unknown.test:${up.port}${path} HTTP/1.1\r\nHost: unknown.test:${up.port}\r\n\r\n`);
      const [entry] = await waitForPending(t, 1);
      s.destroy();
      for (let i = 0; (await t.client.pending()).length > 0; i++) {
        if (i > 400) throw new Error('the prompt was not dropped');
        await new Promise((r) => setTimeout(r, 25));
      }
      return entry!;
    };

    const first = await leave('/one');
    const once = await runCli(['approve', first.id, '--json'], { home: home.dir });
    expect(once.code, once.stderr).toBe(0);
    expect(JSON.parse(once.stdout)).toMatchObject({ decision: 'once', waiters: 0, client_gone: true, pending: { id: first.id, host: 'unknown.test' } });

    const second = await leave('/two');
    const always = await runCli(['approve', second.id, '--always'], { home: home.dir });
    expect(always.code, always.stderr).toBe(0);
    expect(always.stdout).toContain(`${second.id} unknown.test:${up.port} always allowed`);
    expect(always.stdout).toContain('the client had already gone; nothing was forwarded; the rule was still saved');
    expect(up.requests).toHaveLength(0);
    expect((await t.client.policyHistory()).at(-1)).toMatchObject({ author: 'approval' });
    // the rule holds from now on
    expect((await proxyRequest(t.paths.proxySocket, `http://unknown.test:${up.port}/after`)).status).toBe(200);

    // decided now: the id is gone
    const again = await runCli(['approve', second.id, '--json'], { home: home.dir });
    expect(again.code).not.toBe(0);
    expect(again.stderr).toMatch(/no pending request/);
    const drops = await t.client.events({ kinds: ['approval.decision'] });
    expect(drops.filter((e) => e.decision === 'drop').map((e) => e.pending_id)).toEqual([first.id, second.id]);
  });

  it('a policy reload revokes an open tunnel it no longer allows', async () => {
    const echo = await startEcho();
    cleanups.push(() => echo.close());
    const home = await makeTempHome();
    cleanups.push(() => home.cleanup());
    const t = await start(home.dir, echo.port);
    cleanups.push(() => t.stop());
    const tunnel = await proxyConnect(t.paths.proxySocket, `allowed.test:${echo.port}`);
    expect(tunnel.status).toBe(200);
    tunnel.socket.write('\x16ping');
    await new Promise<void>((r) => tunnel.socket.once('data', () => r()));
    const closed = new Promise<void>((r) => tunnel.socket.once('close', () => r()));
    await t.client.setPolicy(policy(echo.port + 1));
    await closed;
    const revoked = await t.client.events({ kinds: ['net.decision'] });
    expect(revoked.some((e) => e.action === 'revoke' && e.host === 'allowed.test')).toBe(true);
  });
});

describe('egress service: head deadline', () => {
  it('takes headTimeoutMs from its options: a trickled head gets 408 at that deadline', async () => {
    const home = await makeTempHome();
    cleanups.push(() => home.cleanup());
    const t = await startTestSupervisor({ home: home.dir, policyText: policy(4443), unsafeAllowLoopbackUpstreams: true, services: [() => createEgressService({ resolver, headTimeoutMs: 300 })] });
    cleanups.push(() => t.stop());
    const sock = connect(t.paths.proxySocket);
    const chunks: Buffer[] = [];
    sock.on('data', (c: Buffer) => chunks.push(c));
    await new Promise<void>((r) => sock.once('connect', () => r()));
    sock.write('GET http://allowed.test/ HTTP/1.1\r\nX-Slow: ');
    // One byte every 50 ms: the idle timer would never fire, the deadline from the first byte does.
    const trickle = setInterval(() => sock.writable && sock.write('a'), 50);
    const closed = await new Promise<boolean>((r) => {
      const giveUp = setTimeout(() => r(false), 5_000);
      sock.once('close', () => {
        clearTimeout(giveUp);
        r(true);
      });
      sock.on('error', () => undefined);
    });
    clearInterval(trickle);
    sock.destroy();
    expect(closed, 'the proxy still held the trickled head after 5 s').toBe(true);
    expect(Buffer.concat(chunks).toString('latin1').split('\r\n')[0]).toBe('HTTP/1.1 408 Request Timeout');
  });

  it('refuses a head deadline that is not a positive number', () => {
    expect(() => createEgressProxy({ decide: () => ({ verdict: 'unknown', reason: 'x' }), approvals: () => ({ mode: 'deny', timeout: 1, when_unattended: 'deny', max_pending: 1 }), operatorsAttached: () => 0, emit: () => undefined, clock: systemClock, headTimeoutMs: 0 })).toThrow(/headTimeoutMs must be a positive number/);
  });
});

describe('egress service: TLS termination material for the sandbox', () => {
  it('makes the sandbox CA under the sandbox dir, offers its trust bundle, pre-mints leaves and reports it in status', async () => {
    const home = await makeTempHome();
    cleanups.push(() => home.cleanup());
    const egress = createEgressService({ resolver });
    const t = await startTestSupervisor({ home: home.dir, policyText: policy(4443), unsafeAllowLoopbackUpstreams: true, services: [() => egress] });
    cleanups.push(() => t.stop());
    const trust = egress.sandboxTrust();
    expect(trust).toMatchObject({ source: join(t.paths.dir, 'trust'), target: '/opt/nemoclaw/trust' });
    expect(trust!.env).toMatchObject({
      NODE_EXTRA_CA_CERTS: '/opt/nemoclaw/trust/ca-bundle.pem',
      WGETRC: '/opt/nemoclaw/trust/wgetrc',
      SSL_CERT_FILE: '/opt/nemoclaw/trust/ca-bundle.pem',
      REQUESTS_CA_BUNDLE: '/opt/nemoclaw/trust/ca-bundle.pem',
      CURL_CA_BUNDLE: '/opt/nemoclaw/trust/ca-bundle.pem',
      GIT_SSL_CAINFO: '/opt/nemoclaw/trust/ca-bundle.pem',
    });
    expect(readdirSync(trust!.source).sort()).toEqual(['ca-bundle.pem', 'ca.pem', 'wgetrc']);
    expect(statSync(join(t.paths.dir, 'tls', 'ca.key')).mode & 0o777).toBe(0o600);
    // rest.test (an L7 endpoint) and inference.local are minted ahead of the first CONNECT.
    const status = (await t.client.status()) as { services: Record<string, { tls_termination?: { leaves_minted?: number } }> };
    for (let i = 0; i < 100 && (status.services.egress?.tls_termination?.leaves_minted ?? 0) < 2; i++) {
      await new Promise((r) => setTimeout(r, 50));
      Object.assign(status, await t.client.status());
    }
    expect(status.services.egress?.tls_termination).toMatchObject({ ca_cert: join(t.paths.dir, 'trust', 'ca.pem'), leaves_minted: 2 });
  });
});

async function waitForPending(t: TestSupervisor, n: number) {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const list = await t.client.pending();
    if (list.length >= n) return list;
    if (Date.now() > deadline) throw new Error(`expected ${n} pending, got ${JSON.stringify(list)}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
