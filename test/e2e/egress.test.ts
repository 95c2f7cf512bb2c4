/**
 * End to end through the real sandbox: a detached supervisor (`up --unsafe-allow-loopback-upstreams`,
 * the upstreams are loopback test servers) started in a private mount namespace whose /etc/hosts
 * maps test names (`a.x.test`, `tls.test`…) to 127.0.0.1; `nemoclaw-tui run -- curl …` (or node)
 * inside the sandbox; `pending` / `approve` / `deny` / `policy set` from other processes. curl is
 * told `--noproxy ''` because the sandbox exports NO_PROXY for loopback.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { BIN, runCli } from '../helpers/supervisor.js';
import { startEcho, startUpstream, type Upstream } from '../egress/harness.js';
import { startDaemonWithHosts, type NsDaemon } from '../egress/daemon-ns.js';
import { loadOrCreateSandboxCa } from '../../src/egress/tls.js';

let up: Upstream;
let echo: Awaited<ReturnType<typeof startEcho>>;
let https: HttpsServer;
let httpsPort = 0;
const httpsRequests: string[] = [];
let d: NsDaemon;
let dir: string;
let workdir: string;

const HOSTS = ['a.x.test', 'b.a.x.test', 'x.test', 'always.test', 'tls.test', 'plain.test', 'h1.test', 'h2.test', 'h3.test', 'anc.test'];

function policy(withGlob = true): string {
  return `version: 1
network_policies:
  upstream:
    endpoints:
      - host: 127.0.0.1
        port: ${up.port}
        protocol: rest
        rules:
          - allow: { method: GET, path: "/**" }
    binaries:
      - path: /usr/bin/curl
${
  withGlob
    ? `  glob:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: "*.x.test"
        ports: [${up.port}, ${echo.port}]
`
    : ''
}  via_bash:
    binaries: [{ path: /usr/bin/bash }]
    endpoints:
      - { host: anc.test, port: ${up.port} }
  tls:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: tls.test
        port: ${httpsPort}
        protocol: rest
        rules:
          - allow: { method: GET, path: "/**" }
      - host: plain.test
        port: ${httpsPort}
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

/** curl inside the sandbox; prints body then the status code on the last line. */
function curlInSandbox(url: string, extra: string[] = []) {
  return inSandbox(['curl', '-s', '-S', '--noproxy', '', '-x', 'http://127.0.0.1:3128', '-w', '\n%{http_code}', ...extra, url]);
}

function split(out: string): { body: string; code: number } {
  const i = out.lastIndexOf('\n');
  return { body: out.slice(0, i), code: Number(out.slice(i + 1)) };
}

interface Pending {
  id: string;
  host: string;
  port: number;
  waiters: number;
}

async function pendingFor(pred: (p: Pending) => boolean, count = 1): Promise<Pending[]> {
  for (let i = 0; i < 600; i++) {
    const r = await runCli(['pending', '--json'], { home: d.home });
    if (r.code === 0) {
      const list = (JSON.parse(r.stdout) as Pending[]).filter(pred);
      if (list.length >= count) return list;
    }
    await new Promise((res) => setTimeout(res, 100));
  }
  throw new Error('the expected pending requests did not appear');
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'e2e-egress-'));
  up = await startUpstream('e2e');
  echo = await startEcho();
  // An HTTPS upstream whose certificate comes from a test CA that the supervisor is told to trust.
  const testCa = await loadOrCreateSandboxCa({ privateDir: join(dir, 'ca', 'tls'), trustDir: join(dir, 'ca', 'trust'), sandboxName: 'e2e-public' });
  const ctx = await testCa.contextFor('tls.test');
  https = createHttpsServer({ SNICallback: (_n, cb) => cb(null, ctx) }, (req, res) => {
    httpsRequests.push(`${req.method} ${req.url}`);
    res.setHeader('Content-Type', 'application/json');
    res.end(JSON.stringify({ from: 'https-upstream', method: req.method, url: req.url }));
  });
  await new Promise<void>((r) => https.listen(0, '127.0.0.1', () => r()));
  httpsPort = (https.address() as { port: number }).port;
  d = await startDaemonWithHosts({
    hosts: Object.fromEntries(HOSTS.map((h) => [h, '127.0.0.1'])),
    policyText: policy(),
    args: ['--unsafe-allow-loopback-upstreams'],
    env: { NODE_EXTRA_CA_CERTS: testCa.caCertPath },
  });
  // The sandbox gets the sandbox CA (and the test CA) through its workdir.
  workdir = join(dir, 'workdir');
  mkdirSync(workdir, { recursive: true });
  copyFileSync(join(d.home, 'sandboxes', 'default', 'trust', 'ca.pem'), join(workdir, 'sandbox-ca.pem'));
  copyFileSync(testCa.caCertPath, join(workdir, 'test-ca.pem'));
}, 90_000);

afterAll(async () => {
  await d?.cleanup();
  await up?.close();
  await echo?.close();
  https?.closeAllConnections();
  https?.close();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

describe('egress through the real sandbox', () => {
  it('lets an allowed request through; the binaries[] rule sees curl', async () => {
    const r = await curlInSandbox(`http://127.0.0.1:${up.port}/allowed`);
    const { body, code } = split(r.stdout);
    expect(code, r.stderr).toBe(200);
    expect(JSON.parse(body)).toMatchObject({ from: 'e2e', url: '/allowed' });
    const events = await d.client.events({ kinds: ['net.decision'] });
    const allow = events.find((e) => e.action === 'allow' && e.port === up.port && e.host === '127.0.0.1');
    expect(allow).toBeDefined();
    expect(String(allow!.binary)).toMatch(/curl$/);
  }, 90_000);

  it('a policy naming bash covers curl run by bash (an ancestor inside the sandbox); curl on its own is held (OpenShell opa.rs::ancestor_binary_allowed)', async () => {
    const viaBash = await inSandbox(['bash', '-c', `curl -s -S --noproxy '' -x http://127.0.0.1:3128 -w '\\n%{http_code}' http://anc.test:${up.port}/via-bash; :`]);
    const ok = split(viaBash.stdout);
    expect(ok.code, viaBash.stderr).toBe(200);
    const events = await d.client.events({ kinds: ['net.decision'] });
    const allow = events.find((e) => e.action === 'allow' && e.host === 'anc.test');
    expect(allow).toMatchObject({ rule: 'via_bash/0' });
    expect(String(allow!.binary)).toMatch(/curl$/);
    // Straight from the sandbox's first process: curl has no bash above it, so it is held.
    const alone = curlInSandbox(`http://anc.test:${up.port}/alone`);
    const [entry] = await pendingFor((p) => p.host === 'anc.test');
    expect((await runCli(['deny', entry!.id], { home: d.home })).code).toBe(0);
    expect(split((await alone).stdout).code).toBe(403);
    expect(up.requests.some((q) => q.url === '/alone')).toBe(false);
  }, 120_000);

  it('refuses an L7 POST with the JSON 403', async () => {
    const r = await curlInSandbox(`http://127.0.0.1:${up.port}/x`, ['-X', 'POST', '-d', 'no']);
    const { body, code } = split(r.stdout);
    expect(code).toBe(403);
    expect(JSON.parse(body)).toMatchObject({ error: 'policy_denied', host: '127.0.0.1', port: up.port });
  }, 90_000);

  it('holds an unknown host; approve from another process completes the very same request', async () => {
    const held = curlInSandbox(`http://localhost:${up.port}/held-once`);
    const [entry] = await pendingFor((p) => p.host === 'localhost');
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
    const [entry] = await pendingFor((p) => p.host === 'localhost');
    expect((await runCli(['deny', entry!.id], { home: d.home })).code).toBe(0);
    const { body, code } = split((await held).stdout);
    expect(code).toBe(403);
    expect(JSON.parse(body)).toMatchObject({ error: 'policy_denied', host: 'localhost' });
    expect(up.requests.some((q) => q.url === '/held-deny')).toBe(false);
  }, 90_000);

  it('a wrong port is not the allowed endpoint: held, and refused when denied', async () => {
    const wrong = echo.port; // 127.0.0.1 is only allowed on the upstream's port
    const held = curlInSandbox(`http://127.0.0.1:${wrong}/wrong-port`);
    const [entry] = await pendingFor((p) => p.host === '127.0.0.1' && p.port === wrong);
    expect((await runCli(['deny', entry!.id], { home: d.home })).code).toBe(0);
    const { body, code } = split((await held).stdout);
    expect(code).toBe(403);
    expect(JSON.parse(body)).toMatchObject({ error: 'policy_denied', port: wrong });
  }, 90_000);

  it('"*.x.test" matches exactly one label: a.x.test passes, x.test and b.a.x.test are held', async () => {
    const ok = split((await curlInSandbox(`http://a.x.test:${up.port}/glob`)).stdout);
    expect(ok.code).toBe(200);
    expect(JSON.parse(ok.body)).toMatchObject({ url: '/glob', host: `a.x.test:${up.port}` });
    const bare = curlInSandbox(`http://x.test:${up.port}/bare`);
    const deep = curlInSandbox(`http://b.a.x.test:${up.port}/deep`);
    const entries = await pendingFor((p) => p.host === 'x.test' || p.host === 'b.a.x.test', 2);
    for (const e of entries) expect((await runCli(['deny', e.id], { home: d.home })).code).toBe(0);
    expect(split((await bare).stdout).code).toBe(403);
    expect(split((await deep).stdout).code).toBe(403);
    expect(up.requests.some((q) => q.url === '/bare' || q.url === '/deep')).toBe(false);
  }, 90_000);

  it('refuses smuggling (CL+TE, duplicate Content-Length) with 400 before anything is forwarded', async () => {
    const script = `const net=require('net');const [port]=process.argv.slice(1);
const cases=[
 'POST http://127.0.0.1:'+port+'/smuggle1 HTTP/1.1\\r\\nHost: 127.0.0.1:'+port+'\\r\\nContent-Length: 4\\r\\nTransfer-Encoding: chunked\\r\\n\\r\\n0\\r\\n\\r\\n',
 'POST http://127.0.0.1:'+port+'/smuggle2 HTTP/1.1\\r\\nHost: 127.0.0.1:'+port+'\\r\\nContent-Length: 1\\r\\nContent-Length: 2\\r\\n\\r\\nab',
 'GET http://127.0.0.1:'+port+'/a%2f..%2f..%2fsmuggle3 HTTP/1.1\\r\\nHost: 127.0.0.1:'+port+'\\r\\n\\r\\n'];
let out=[];let n=0;
for(const c of cases){const s=net.connect(3128,'127.0.0.1',()=>s.write(c));let b='';s.on('data',d=>b+=d);s.on('error',()=>{});s.on('close',()=>{out.push(b.slice(0,12));if(++n===cases.length){console.log(JSON.stringify(out));}});}`;
    const r = await inSandbox(['node', '-e', script, String(up.port)]);
    expect(r.exitCode, r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toEqual(['HTTP/1.1 400', 'HTTP/1.1 400', 'HTTP/1.1 400']);
    expect(up.requests.some((q) => q.url.includes('smuggle'))).toBe(false);
  }, 90_000);

  it('200 concurrent held requests to 3 hosts make 3 prompts; approving them completes all 200', async () => {
    const N = 200;
    const script = `const net=require('net');const port=process.argv[1];const n=+process.argv[2];
const hosts=['h1.test','h2.test','h3.test'];let done=0;const codes={};
for(let i=0;i<n;i++){const h=hosts[i%3];const s=net.connect(3128,'127.0.0.1',()=>s.write('GET http://'+h+':'+port+'/c'+i+' HTTP/1.1\\r\\nHost: '+h+':'+port+'\\r\\nConnection: close\\r\\n\\r\\n'));
let b='';s.on('data',d=>b+=d);s.on('error',e=>{b='ERR '+e.code;});
s.on('close',()=>{const c=b.slice(0,12);codes[c]=(codes[c]||0)+1;if(++done===n){console.log(JSON.stringify(codes));process.exit(0);}});}
setTimeout(()=>{console.log('timeout '+done+' '+JSON.stringify(codes));process.exit(1);},80000);`;
    const run = inSandbox(['node', '-e', script, String(up.port), String(N)]);
    const isH = (p: Pending) => /^h[123]\.test$/.test(p.host);
    let prompts: Pending[] = [];
    for (let i = 0; i < 600; i++) {
      const r = await runCli(['pending', '--json'], { home: d.home });
      if (r.code === 0) prompts = (JSON.parse(r.stdout) as Pending[]).filter(isH);
      if (prompts.reduce((n, p) => n + p.waiters, 0) >= N) break;
      await new Promise((res) => setTimeout(res, 100));
    }
    expect(prompts.map((p) => p.host).sort(), JSON.stringify(prompts)).toEqual(['h1.test', 'h2.test', 'h3.test']);
    expect(prompts.reduce((n, p) => n + p.waiters, 0)).toBe(N);
    for (const p of prompts) expect((await runCli(['approve', p.id], { home: d.home })).code).toBe(0);
    const r = await run;
    expect(r.exitCode, r.stdout + r.stderr).toBe(0);
    expect(JSON.parse(r.stdout.trim())).toEqual({ 'HTTP/1.1 200': N });
  }, 150_000);

  it('HTTPS to a rest endpoint is terminated with the sandbox CA, which the sandbox trusts on its own: GET passes, POST gets the JSON 403', async () => {
    // No --cacert: curl finds the CA through CURL_CA_BUNDLE, set by the sandbox from the egress trust bundle.
    const get = await curlInSandbox(`https://tls.test:${httpsPort}/repo`, []);
    const g = split(get.stdout);
    expect(g.code, get.stderr).toBe(200);
    expect(JSON.parse(g.body)).toMatchObject({ from: 'https-upstream', method: 'GET', url: '/repo' });
    const post = await curlInSandbox(`https://tls.test:${httpsPort}/repo`, ['-X', 'POST', '-d', 'x']);
    const p = split(post.stdout);
    expect(p.code, post.stderr).toBe(403);
    expect(JSON.parse(p.body)).toMatchObject({ error: 'policy_denied', host: 'tls.test', port: httpsPort });
    // wget (GnuTLS, ignores SSL_CERT_FILE: WGETRC names the bundle) and Node (NODE_EXTRA_CA_CERTS is
    // the system roots plus ours) trust it too, with no flags.
    const wget = await inSandbox(['wget', '-q', '-O', '-', `https://tls.test:${httpsPort}/wget`]);
    expect(wget.exitCode, `${wget.stdout}\n${wget.stderr}`).toBe(0);
    expect(JSON.parse(wget.stdout)).toMatchObject({ method: 'GET', url: '/wget' });
    const script = `fetch(process.argv[1]).then(async (r) => console.log(r.status, await r.text()), (e) => { console.error(String(e.cause ?? e)); process.exit(1); })`;
    const node = await inSandbox(['env', 'NODE_USE_ENV_PROXY=1', 'node', '-e', script, `https://tls.test:${httpsPort}/node`]);
    expect(node.exitCode, node.stderr).toBe(0);
    expect(node.stdout).toMatch(/^200 .*"url":"\/node"/);
    expect(httpsRequests).toEqual(['GET /repo', 'GET /wget', 'GET /node']);
  }, 90_000);

  it('HTTPS to an endpoint without L7 rules tunnels untouched: the client verifies the upstream itself', async () => {
    // Only the upstream's own CA is trusted, and the name it checks is the upstream's certificate name.
    const r = await curlInSandbox(`https://tls.test:${httpsPort}/through`, ['--cacert', '/sandbox/test-ca.pem', '--connect-to', `tls.test:${httpsPort}:plain.test:${httpsPort}`, '-X', 'POST', '-d', 'x']);
    const { body, code } = split(r.stdout);
    expect(code, r.stderr).toBe(200);
    expect(JSON.parse(body)).toMatchObject({ method: 'POST', url: '/through' });
  }, 90_000);

  it('https://inference.local reaches the privacy router', async () => {
    const r = await curlInSandbox('https://inference.local/nemoclaw-probe', []);
    const { body, code } = split(r.stdout);
    expect(r.stderr).not.toMatch(/SSL|certificate/i);
    expect(code).toBe(404);
    expect(body).toMatch(/inference\.local does not serve GET \/nemoclaw-probe/);
  }, 90_000);

  it('"always" survives a supervisor restart and shows as a revision by approval', async () => {
    const held = curlInSandbox(`http://always.test:${up.port}/first`);
    const [entry] = await pendingFor((p) => p.host === 'always.test');
    expect((await runCli(['approve', entry!.id, '--always'], { home: d.home })).code).toBe(0);
    expect(split((await held).stdout).code).toBe(200);
    expect((await d.down()).code).toBe(0);
    await d.up();
    const again = split((await curlInSandbox(`http://always.test:${up.port}/after-restart`)).stdout);
    expect(again.code).toBe(200);
    const hist = await runCli(['policy', 'history', '--json'], { home: d.home });
    expect(hist.code, hist.stderr).toBe(0);
    expect(hist.stdout).toMatch(/"author":\s*"approval"/);
    expect(hist.stdout).toMatch(/always\.test/);
  }, 150_000);

  it('a reload (policy set) revokes an open tunnel it no longer allows', async () => {
    const script = `const net=require('net');const [host,port]=process.argv.slice(1);let stage=0;let buf='';
const s=net.connect(3128,'127.0.0.1',()=>s.write('CONNECT '+host+':'+port+' HTTP/1.1\\r\\nHost: '+host+':'+port+'\\r\\n\\r\\n'));
s.on('data',d=>{buf+=d;if(stage===0&&buf.includes('\\r\\n\\r\\n')){if(!buf.startsWith('HTTP/1.1 200')){console.log('refused '+buf.split('\\r\\n')[0]);process.exit(3);}stage=1;buf='';s.write('\\x16ping');}
else if(stage===1&&buf.includes('ping')){stage=2;console.log('open');}});
s.on('error',()=>{});s.on('close',()=>{console.log(stage===2?'closed by proxy':'closed early');process.exit(stage===2?0:4);});
setTimeout(()=>{console.log('still open');process.exit(5);},60000);`;
    const tunnel = inSandbox(['node', '-e', script, 'a.x.test', String(echo.port)]);
    let opened = false;
    tunnel.stdout?.on('data', (c: Buffer) => {
      if (c.toString().includes('open')) opened = true;
    });
    for (let i = 0; i < 300 && !opened; i++) await new Promise((r) => setTimeout(r, 100));
    expect(opened).toBe(true);
    const file = join(dir, 'no-glob.yaml');
    writeFileSync(file, policy(false));
    const set = await runCli(['policy', 'set', file], { home: d.home });
    expect(set.code, set.stderr).toBe(0);
    const r = await tunnel;
    expect(r.stdout).toMatch(/open\s+closed by proxy/);
    const events = await d.client.events({ kinds: ['net.decision'] });
    expect(events.some((e) => e.action === 'revoke' && e.host === 'a.x.test')).toBe(true);
  }, 150_000);
});
