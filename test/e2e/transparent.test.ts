/**
 * Transparent interception (issue 15, "nothing an agent does on the network may be invisible"):
 * clients that ignore the proxy variables (curl --noproxy '*', a python raw socket) inside the real
 * sandbox of a real detached supervisor are held like proxied requests, approved or denied from
 * another process, and their DNS lookups are events. Loopback only: the names resolve (for the
 * proxy, in the daemon's private mount namespace) to loopback upstreams; the sandbox's answers
 * come from the fake pool 198.18.0.0/15, which exists only inside its netns. The literal-IP case
 * uses 203.0.113.7 (TEST-NET-3) and is denied, so nothing is ever dialled there.
 * Needs root, bubblewrap, nft and util-linux.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { BIN, runCli } from '../helpers/supervisor.js';
import { startUpstream, type Upstream } from '../egress/harness.js';
import { startDaemonWithHosts, type NsDaemon } from '../egress/daemon-ns.js';

let up: Upstream;
let d: NsDaemon;
let dir: string;
let workdir: string;

const HOSTS = ['curl.test', 'py.test', 'deny.test', 'allowed.test'];

function policy(): string {
  return `version: 1
network_policies:
  allowed:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: allowed.test
        port: ${up.port}
approvals:
  mode: ask
  timeout: 60
  when_unattended: hold
`;
}

function inSandbox(command: string[]) {
  return execa(process.execPath, [BIN, 'run', '--workdir', workdir, '--', ...command], {
    env: { ...process.env, NO_COLOR: '1', NEMOCLAW_HOME: d.home },
    reject: false,
    timeout: 90_000,
  });
}

/** curl that ignores every proxy variable; prints the body, then the status code on the last line. */
function curlDirect(url: string) {
  return inSandbox(['curl', '-s', '-S', '--noproxy', '*', '-w', '\n%{http_code}', url]);
}

/** python3 with a raw socket: no proxy support at all. Prints what the server sent, or the error. */
function pythonRaw(host: string, port: number, path: string) {
  const script = [
    'import socket, sys',
    'try:',
    `    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=80)`,
    "    s.sendall(('GET ' + sys.argv[3] + ' HTTP/1.1\\r\\nHost: ' + sys.argv[1] + '\\r\\nConnection: close\\r\\n\\r\\n').encode())",
    "    out = b''",
    '    while True:',
    '        b = s.recv(65536)',
    '        if not b: break',
    '        out += b',
    "    print(out.decode(errors='replace'))",
    'except Exception as e:',
    "    print('ERROR', type(e).__name__, e)",
  ].join('\n');
  return inSandbox(['python3', '-c', script, host, String(port), path]);
}

interface Pending {
  id: string;
  host: string;
  port: number;
  request?: string;
}

async function pendingFor(pred: (p: Pending) => boolean): Promise<Pending> {
  for (let i = 0; i < 600; i++) {
    const r = await runCli(['pending', '--json'], { home: d.home });
    if (r.code === 0) {
      const hit = (JSON.parse(r.stdout) as Pending[]).find(pred);
      if (hit) return hit;
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error('the expected pending request did not appear');
}

function split(out: string): { body: string; code: number } {
  const i = out.lastIndexOf('\n');
  return { body: out.slice(0, i), code: Number(out.slice(i + 1)) };
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'e2e-transparent-'));
  up = await startUpstream('tp');
  d = await startDaemonWithHosts({
    hosts: Object.fromEntries(HOSTS.map((h) => [h, '127.0.0.1'])),
    policyText: policy(),
    args: ['--unsafe-allow-loopback-upstreams'],
  });
  workdir = join(dir, 'workdir');
  mkdirSync(workdir, { recursive: true });
}, 90_000);

afterAll(async () => {
  await d?.cleanup();
  await up?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('transparent interception in the real sandbox', () => {
  it('status says the sandbox network is intercepted', async () => {
    const r = await inSandbox(['true']);
    expect(r.exitCode, r.stderr).toBe(0);
    const events = await d.client.events({ kinds: ['sandbox.lifecycle'] });
    const running = events.filter((e) => e.phase === 'running').at(-1);
    expect(running?.network, JSON.stringify(running)).toMatchObject({ mode: 'transparent', summary: 'transparent interception (nft)' });
    const status = await runCli(['status'], { home: d.home });
    expect(status.stdout).toMatch(/network: transparent interception \(nft\)/);
    const doctor = await runCli(['doctor'], { home: d.home });
    expect(doctor.stdout).toMatch(/ok +network: transparent interception \(nft\): every TCP connect/);
  }, 90_000);

  it('the sandbox has a resolv.conf naming the responder (resolvers that need the file work too)', async () => {
    const r = await inSandbox(['cat', '/etc/resolv.conf']);
    expect(r.stdout).toMatch(/^nameserver 127\.0\.0\.1$/m);
  }, 90_000);

  it('an allowed host is reached by a client that ignores proxy variables, without a prompt', async () => {
    const r = await curlDirect(`http://allowed.test:${up.port}/direct-allowed`);
    const { body, code } = split(r.stdout);
    expect(code, r.stderr).toBe(200);
    expect(JSON.parse(body)).toMatchObject({ from: 'tp', url: '/direct-allowed' });
    const events = await d.client.events({ kinds: ['net.decision'] });
    const allow = events.find((e) => e.action === 'allow' && e.host === 'allowed.test');
    expect(allow).toMatchObject({ transparent: true, name_from: 'dns', rule: 'allowed/0' });
    expect(String(allow!.original_dst)).toMatch(/^198\.1[89]\.\d+\.\d+:\d+$/);
    expect(String(allow!.binary)).toMatch(/curl$/);
  }, 90_000);

  it('curl --noproxy: held, approve → the upstream answers; its DNS lookup is an event', async () => {
    const held = curlDirect(`http://curl.test:${up.port}/held-approve`);
    const entry = await pendingFor((p) => p.host === 'curl.test');
    expect(entry.port).toBe(up.port);
    expect(entry.request).toMatch(/not proxy-aware/);
    expect(up.requests.some((q) => q.url === '/held-approve')).toBe(false);
    const a = await runCli(['approve', entry.id], { home: d.home });
    expect(a.code, a.stderr).toBe(0);
    const r = await held;
    const { body, code } = split(r.stdout);
    expect(code, r.stderr).toBe(200);
    expect(JSON.parse(body)).toMatchObject({ url: '/held-approve' });
    const dns = await d.client.events({ kinds: ['net.dns'] });
    const lookup = dns.find((e) => e.name === 'curl.test' && e.qtype === 'A');
    expect(lookup).toMatchObject({ rcode: 'NOERROR' });
    expect(String(lookup!.answer)).toMatch(/^198\.1[89]\./);
    // Headless formatting knows the new kind.
    const logs = await runCli(['logs', '--kind', 'net.dns'], { home: d.home });
    expect(logs.stdout).toMatch(/net\.dns DNS A curl\.test -> 198\.1[89]\./);
  }, 120_000);

  it('python raw socket: held, deny → it gets the refusal and the upstream never sees it', async () => {
    const held = pythonRaw('deny.test', up.port, '/held-deny');
    const entry = await pendingFor((p) => p.host === 'deny.test');
    expect((await runCli(['deny', entry.id], { home: d.home })).code).toBe(0);
    const r = await held;
    expect(r.stdout).toMatch(/403 Forbidden/);
    expect(r.stdout).toMatch(/policy_denied/);
    expect(up.requests.some((q) => q.url === '/held-deny')).toBe(false);
  }, 120_000);

  it('python raw socket: held, approve → the upstream answers', async () => {
    const held = pythonRaw('py.test', up.port, '/py-approve');
    const entry = await pendingFor((p) => p.host === 'py.test');
    expect((await runCli(['approve', entry.id], { home: d.home })).code).toBe(0);
    const r = await held;
    expect(r.stdout).toMatch(/200 OK/);
    expect(r.stdout).toMatch(/"url":"\/py-approve"/);
  }, 120_000);

  it('a literal IP with no DNS name is held by its IP (denied here: nothing is dialled)', async () => {
    const held = pythonRaw('203.0.113.7', 8080, '/by-ip');
    const entry = await pendingFor((p) => p.host === '203.0.113.7');
    expect(entry.port).toBe(8080);
    expect(entry.request).toMatch(/203\.0\.113\.7/);
    expect((await runCli(['deny', entry.id], { home: d.home })).code).toBe(0);
    const r = await held;
    expect(r.stdout).toMatch(/403 Forbidden/);
    const events = await d.client.events({ kinds: ['net.held'] });
    expect(events.find((e) => e.host === '203.0.113.7')).toMatchObject({ transparent: true, original_dst: '203.0.113.7:8080' });
  }, 120_000);

  it('TLS to an address no lookup gave is decided on its SNI name (and would be dialled by that name); a deny is the HTTPS answer 403', async () => {
    const held = inSandbox(['curl', '-s', '-S', '-k', '--noproxy', '*', '--resolve', 'sni.test:443:203.0.113.8', '-o', '/dev/null', '-w', '%{http_code}', 'https://sni.test/']);
    const entry = await pendingFor((p) => p.host === 'sni.test');
    expect(entry.port).toBe(443);
    expect(entry.request).toMatch(/name from TLS SNI, original destination 203\.0\.113\.8:443/);
    expect((await runCli(['deny', entry.id], { home: d.home })).code).toBe(0);
    const r = await held;
    // The refusal is answered inside TLS (a sandbox-CA leaf) so the client can show why; nothing is dialled.
    expect(r.stdout).toBe('403');
    const events = await d.client.events({ kinds: ['net.decision'] });
    expect(events.find((e) => e.host === 'sni.test' && e.action === 'deny')).toMatchObject({ name_from: 'sni', sni: 'sni.test', original_dst: '203.0.113.8:443' });
  }, 120_000);

  it('IPv6: a literal IPv6 destination is intercepted and held by its IP as well', async () => {
    const script = [
      'import socket',
      'try:',
      "    s = socket.create_connection(('2001:db8::7', 8080), timeout=80)",
      "    s.sendall(b'GET /v6 HTTP/1.1\\r\\nHost: [2001:db8::7]:8080\\r\\nConnection: close\\r\\n\\r\\n')",
      '    print(s.recv(65536).decode(errors="replace"))',
      'except Exception as e:',
      "    print('ERROR', type(e).__name__, e)",
    ].join('\n');
    const held = inSandbox(['python3', '-c', script]);
    const entry = await pendingFor((p) => p.host === '2001:db8::7');
    expect(entry.port).toBe(8080);
    expect((await runCli(['deny', entry.id], { home: d.home })).code).toBe(0);
    expect((await held).stdout).toMatch(/403 Forbidden/);
  }, 120_000);

  it('UDP other than DNS is dropped and recorded once per destination', async () => {
    // One unconnected socket: a burst to one destination, then another destination.
    const script = "import socket, time\ns=socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\nfor i in range(5): s.sendto(b'x', ('203.0.113.9', 443))\ntime.sleep(0.4)\nfor i in range(3): s.sendto(b'y', ('203.0.113.10', 853))\nprint('sent')";
    const r = await inSandbox(['python3', '-c', script]);
    expect(r.stdout).toMatch(/sent/);
    const udp = async (host: string): Promise<unknown[]> => {
      let hits: unknown[] = [];
      for (let i = 0; i < 50 && hits.length === 0; i++) {
        hits = (await d.client.events({ kinds: ['net.decision'] })).filter((e) => e.protocol === 'udp' && e.host === host);
        if (hits.length === 0) await new Promise((res) => setTimeout(res, 100));
      }
      return hits;
    };
    const hits = await udp('203.0.113.9');
    expect(hits).toHaveLength(1);
    expect(hits[0]).toMatchObject({ action: 'deny', port: 443, transparent: true });
    const second = await udp('203.0.113.10');
    expect(second).toHaveLength(1);
    expect(second[0]).toMatchObject({ port: 853 });
  }, 90_000);
});
