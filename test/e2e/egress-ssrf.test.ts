/**
 * SSRF through the real sandbox, on a supervisor started WITHOUT --unsafe-allow-loopback-upstreams,
 * in a private mount namespace whose /etc/hosts points listed names at loopback and at the cloud
 * metadata address: the proxy resolves names itself and refuses those answers even though the
 * policy names the hosts, and refuses non-canonical IP literals of loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { BIN } from '../helpers/supervisor.js';
import { startUpstream, type Upstream } from '../egress/harness.js';
import { startDaemonWithHosts, type NsDaemon } from '../egress/daemon-ns.js';

let up: Upstream;
let d: NsDaemon;

beforeAll(async () => {
  up = await startUpstream('ssrf-target');
  d = await startDaemonWithHosts({
    hosts: { 'meta.test': '169.254.169.254', 'loop.test': '127.0.0.1', 'mapped.test': '::ffff:127.0.0.1' },
    policyText: `version: 1
network_policies:
  listed:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: meta.test
        port: 80
      - host: loop.test
        port: ${up.port}
      - host: mapped.test
        port: ${up.port}
      - host: 127.0.0.1
        port: ${up.port}
approvals:
  mode: deny
`,
  });
}, 90_000);

afterAll(async () => {
  await d?.cleanup();
  await up?.close();
});

async function curl(url: string): Promise<{ code: number; body: Record<string, unknown> }> {
  const r = await execa(process.execPath, [BIN, 'run', '--', 'curl', '-s', '-S', '--noproxy', '', '-x', 'http://127.0.0.1:3128', '-w', '\n%{http_code}', url], {
    env: { ...process.env, NO_COLOR: '1', NEMOCLAW_HOME: d.home },
    reject: false,
    timeout: 60_000,
  });
  const i = r.stdout.lastIndexOf('\n');
  return { code: Number(r.stdout.slice(i + 1)), body: JSON.parse(r.stdout.slice(0, i) || '{}') as Record<string, unknown> };
}

describe('SSRF guard through the real sandbox (no unsafe flag)', () => {
  it('reports that loopback upstreams are not allowed', async () => {
    const status = (await d.client.status()) as { services?: Record<string, Record<string, unknown>> };
    expect(status.services?.egress?.unsafe_allow_loopback_upstreams).toBe(false);
  });

  it('refuses a listed name that resolves to the metadata address', async () => {
    const r = await curl('http://meta.test/latest/meta-data/');
    expect(r.code).toBe(403);
    expect(r.body).toMatchObject({ error: 'ssrf_denied', host: 'meta.test' });
  }, 90_000);

  it('refuses listed names that resolve to loopback (also IPv4-mapped IPv6)', async () => {
    for (const host of ['loop.test', 'mapped.test']) {
      const r = await curl(`http://${host}:${up.port}/`);
      expect(r.code, host).toBe(403);
      expect(r.body).toMatchObject({ error: 'ssrf_denied', host });
    }
  }, 90_000);

  it('refuses loopback given as a listed literal and as a decimal literal', async () => {
    for (const host of ['127.0.0.1', '2130706433']) {
      const r = await curl(`http://${host}:${up.port}/`);
      expect(r.code, host).toBe(403);
      expect(r.body).toMatchObject({ error: 'ssrf_denied' });
    }
    expect(up.requests).toHaveLength(0);
  }, 90_000);
});
