/**
 * Transparent interception falls back to loopback-only when nft is missing (here: the sandbox
 * service is pointed at an nft that does not exist): the sandbox is as before (a client that
 * ignores the proxy variables gets ENETUNREACH, proxy-aware ones still get out), and `status`
 * says which mode runs and why. Real bwrap, in-process supervisor; needs root, bubblewrap, python3.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { createSandboxService, type SandboxServiceApi } from '../../src/sandbox/index.js';
import { createEgressService } from '../../src/egress/service.js';
import { plannedInterception, probeInterception } from '../../src/sandbox/transparent.js';
import { findBinary } from '../../src/sandbox/bwrap.js';
import { runCli, startTestSupervisor, type TestSupervisor } from '../helpers/supervisor.js';

const DIRECT = `
import socket, errno
try:
    socket.create_connection(("203.0.113.7", 80), timeout=3); print("connected")
except OSError as e:
    print("errno:" + errno.errorcode.get(e.errno, str(e.errno)))
`;

let t: TestSupervisor;
let svc: SandboxServiceApi;

beforeAll(async () => {
  const missing = ['/usr/bin/bwrap', '/usr/bin/python3', '/usr/bin/nsenter'].filter((p) => !existsSync(p));
  if (missing.length > 0 || process.getuid?.() !== 0) throw new Error(`this suite needs root and ${missing.join(', ') || 'its tools'}`);
  svc = createSandboxService({ nftBinary: '/nonexistent/nft' });
  t = await startTestSupervisor({ services: [() => createEgressService(), () => svc] });
}, 30_000);

afterAll(async () => {
  await t?.stop();
}, 30_000);

describe('without nft the sandbox stays loopback-only and says so', () => {
  it('a direct connect fails as before (ENETUNREACH), nothing is held, and the instance names the reason', async () => {
    const sb = await svc.launch({ command: ['/usr/bin/python3', '-c', DIRECT] });
    let out = '';
    sb.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    await sb.wait();
    expect(out.trim()).toBe('errno:ENETUNREACH');
    expect(sb.network).toMatchObject({ mode: 'loopback-only', summary: 'loopback-only: proxy-aware clients only' });
    expect(sb.network?.reason).toMatch(/nftables is not installed \(no \/nonexistent\/nft\)/);
    const held = await t.client.events({ kinds: ['net.held', 'net.dns'] });
    expect(held).toHaveLength(0);
    const running = (await t.client.events({ kinds: ['sandbox.lifecycle'] })).find((e) => e.phase === 'running');
    expect(running?.network).toMatchObject({ mode: 'loopback-only' });
  }, 60_000);

  it('status says loopback-only: proxy-aware clients only, and why', async () => {
    const r = await runCli(['status'], { home: t.home });
    expect(r.stdout).toMatch(/network: loopback-only: proxy-aware clients only \(nftables is not installed \(no \/nonexistent\/nft\)/);
  }, 30_000);

  it('what a new sandbox would get is reported without starting one (doctor, status)', async () => {
    expect(plannedInterception({ root: true, find: findBinary, nft: '/nonexistent/nft' }).mode).toBe('loopback-only');
    expect(plannedInterception({ root: false, find: findBinary }).reason).toMatch(/not root/);
    // With the real nft on this machine the live check loads the ruleset in a throwaway netns.
    const live = await probeInterception({ root: true, find: findBinary });
    expect(live, live.reason).toMatchObject({ mode: 'transparent', summary: 'transparent interception (nft)' });
  }, 30_000);
});
