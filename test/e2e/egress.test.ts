/**
 * End to end through the real sandbox: a detached supervisor (`up --unsafe-allow-loopback-upstreams`,
 * upstreams are loopback test servers), `nemoclaw-tui run -- curl …` inside the sandbox, and
 * `pending` / `approve` / `deny` from other processes. curl is told `--noproxy ''` because the
 * sandbox exports NO_PROXY for loopback, and the upstream here is on loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { BIN, runCli, startDaemonSupervisor, type DaemonSupervisor } from '../helpers/supervisor.js';
import { startUpstream, type Upstream } from '../egress/harness.js';

let up: Upstream;
let d: DaemonSupervisor;

function policy(port: number): string {
  return `version: 1
network_policies:
  upstream:
    endpoints:
      - host: 127.0.0.1
        port: ${port}
        protocol: rest
        rules:
          - allow: { method: GET, path: "/**" }
approvals:
  mode: ask
  timeout: 20
  when_unattended: hold
`;
}

/** curl inside the sandbox; prints body then the status code on the last line. */
function curlInSandbox(url: string, extra: string[] = []) {
  return execa(process.execPath, [BIN, 'run', '--', 'curl', '-s', '-S', '--noproxy', '', '-x', 'http://127.0.0.1:3128', '-w', '\n%{http_code}', ...extra, url], {
    env: { ...process.env, NEMOCLAW_HOME: d.home },
    reject: false,
    timeout: 60_000,
  });
}

function split(out: string): { body: string; code: number } {
  const i = out.lastIndexOf('\n');
  return { body: out.slice(0, i), code: Number(out.slice(i + 1)) };
}

async function pendingList(): Promise<Array<{ id: string; host: string; port: number }>> {
  for (let i = 0; i < 400; i++) {
    const r = await runCli(['pending', '--json'], { home: d.home });
    if (r.code === 0) {
      const list = JSON.parse(r.stdout) as Array<{ id: string; host: string; port: number }>;
      if (list.length > 0) return list;
    }
    await new Promise((res) => setTimeout(res, 50));
  }
  throw new Error('no pending request appeared');
}

beforeAll(async () => {
  up = await startUpstream('e2e');
  d = await startDaemonSupervisor({ policyText: policy(up.port), args: ['--unsafe-allow-loopback-upstreams'] });
}, 60_000);

afterAll(async () => {
  await d?.stop();
  await up?.close();
});

describe('egress through the real sandbox', () => {
  it('lets an allowed request through and names the client binary in the events', async () => {
    const r = await curlInSandbox(`http://127.0.0.1:${up.port}/allowed`);
    const { body, code } = split(r.stdout);
    expect(code, r.stderr).toBe(200);
    expect(JSON.parse(body)).toMatchObject({ from: 'e2e', url: '/allowed' });
    const events = await d.client.events({ kinds: ['net.decision'] });
    const allow = events.find((e) => e.action === 'allow' && e.port === up.port);
    expect(allow).toBeDefined();
    expect(String(allow!.binary)).toMatch(/curl$/);
  }, 90_000);

  it('refuses an L7 POST with the JSON 403', async () => {
    const r = await curlInSandbox(`http://127.0.0.1:${up.port}/x`, ['-X', 'POST', '-d', 'no']);
    const { body, code } = split(r.stdout);
    expect(code).toBe(403);
    expect(JSON.parse(body)).toMatchObject({ error: 'policy_denied', host: '127.0.0.1', port: up.port });
  }, 90_000);

  it('holds an unknown host; approve from another process completes the very same request', async () => {
    const held = curlInSandbox(`http://localhost:${up.port}/held-once`);
    const [entry] = await pendingList();
    expect(entry).toMatchObject({ host: 'localhost', port: up.port });
    expect(up.requests.some((q) => q.url === '/held-once')).toBe(false);
    const a = await runCli(['approve', entry!.id], { home: d.home });
    expect(a.code, a.stderr).toBe(0);
    const { body, code } = split((await held).stdout);
    expect(code).toBe(200);
    expect(JSON.parse(body)).toMatchObject({ url: '/held-once' });
  }, 90_000);

  it('deny gives the held request the JSON 403', async () => {
    const held = curlInSandbox(`http://localhost:${up.port}/held-deny`);
    const [entry] = await pendingList();
    expect((await runCli(['deny', entry!.id], { home: d.home })).code).toBe(0);
    const { body, code } = split((await held).stdout);
    expect(code).toBe(403);
    expect(JSON.parse(body)).toMatchObject({ error: 'policy_denied', host: 'localhost' });
    expect(up.requests.some((q) => q.url === '/held-deny')).toBe(false);
  }, 90_000);
});
