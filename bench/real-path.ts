// The path the agent's traffic really takes, in one run, three ways:
//   direct:    the client on the host → the loopback upstream
//   ours:      `nemoclaw-tui run` (a real sandbox under a real supervisor) → 127.0.0.1:3128 in the
//              sandbox → the egress proxy (policy, identity, write-ahead audit) → the upstream
//   tinyproxy: the same kind of sandbox (launched with the same driver), its 127.0.0.1:3128 relayed
//              in this process to a tinyproxy on the host → the upstream (a plain proxy: what our
//              policy engine costs against one; the relay is one extra hop tinyproxy pays)
// The client is the same Node script everywhere (bench/_real-path-client.mjs). Reports added
// latency and ratios against direct. Needs root, bubblewrap, nsenter (and tinyproxy for the peer).
// Run: npx tsc -p . && node bench/real-path.ts   (apt-get install -y bubblewrap tinyproxy)
import { createServer as createHttpServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect as netConnect, createServer as createNetServer, type Server, type Socket } from 'node:net';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { launchBwrap } from '../dist/src/sandbox/bwrap.js';
import { startStubUpstream } from '../test/stubs/upstream.ts';

const REPO = join(import.meta.dirname, '..');
const BIN = join(REPO, 'bin', 'nemoclaw-tui.js');
const KA_REQUESTS = 2000;
const BIG_BYTES = 200 * 1024 * 1024;
const CPS_CONNECTIONS = 1000;
const CPS_CONCURRENCY = 1000;
const TTFT_CALLS = 150;

if (process.getuid?.() !== 0) {
  console.error('bench/real-path.ts needs root (a real sandbox with the root network mode); run it as root');
  process.exit(1);
}
const hasTinyproxy = spawnSync('sh', ['-c', 'command -v tinyproxy'], { encoding: 'utf8' }).status === 0;

const dir = mkdtempSync(join(tmpdir(), 'nct-realpath-'));
const home = join(dir, 'home');
const work = join(dir, 'work');
mkdirSync(home, { recursive: true });
mkdirSync(work, { recursive: true });
copyFileSync(join(REPO, 'bench', '_real-path-client.mjs'), join(work, 'client.mjs'));

// Upstreams: plain HTTP, and HTTPS (one port decrypted by the proxy, one passed through).
// A self-signed certificate for 127.0.0.1 that the supervisor (NODE_EXTRA_CA_CERTS) and the clients trust.
const keyPath = join(dir, 'upstream-key.pem');
const certPath = join(work, 'upstream-ca.pem');
const minted = spawnSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-keyout', keyPath, '-out', certPath, '-days', '2', '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1'], { encoding: 'utf8' });
if (minted.status !== 0) {
  console.error(`openssl could not make the upstream certificate: ${minted.stderr}`);
  process.exit(1);
}
const tlsOptions = { key: readFileSync(keyPath), cert: readFileSync(certPath), keepAliveTimeout: 60_000 };
const chunk = Buffer.alloc(1024 * 1024, 97);
const handler = (req: IncomingMessage, res: ServerResponse): void => {
  if (req.url?.endsWith('/big')) {
    res.setHeader('content-length', String(BIG_BYTES));
    let sent = 0;
    const pump = (): void => {
      while (sent < BIG_BYTES) {
        sent += chunk.length;
        if (!res.write(chunk)) return void res.once('drain', pump);
      }
      res.end();
    };
    pump();
    return;
  }
  res.setHeader('content-length', '2');
  res.end('ok');
};
const listen = (s: Server): Promise<number> =>
  new Promise((resolve) => s.listen(0, '127.0.0.1', () => resolve((s.address() as { port: number }).port)));
const http = createHttpServer({ keepAliveTimeout: 60_000 }, handler);
const httpsDecrypted = createHttpsServer(tlsOptions, handler);
const httpsPassed = createHttpsServer(tlsOptions, handler);
const [plainPort, decPort, passPort] = [await listen(http), await listen(httpsDecrypted), await listen(httpsPassed)];

// The model: a stub speaking OpenAI's streaming wire format; 32 KB bodies.
const stub = await startStubUpstream({ reply: () => ({ text: 'The repository has src/, test/, bench/ and docs/. '.repeat(12) }), chunkChars: 12, maxRecorded: 2 });
const prose = 'You are OpenClaw, an autonomous coding agent. Follow the workspace rules, use tools carefully. ';
// Every body new to the router (its classification cache is cold for each), a file per path.
const bodyFiles = ['ttft-direct.jsonl', 'ttft-alone.jsonl', 'ttft-real.jsonl'];
for (const name of bodyFiles) {
  const bodies: string[] = [];
  for (let i = 0; i < TTFT_CALLS + 10; i++) {
    let system = `# session ${name} ${i}-${Math.random().toString(36).slice(2)}\n`;
    while (system.length < 32 * 1024) system += prose;
    bodies.push(JSON.stringify({ model: 'bench-model', stream: true, messages: [{ role: 'system', content: system.slice(0, 32 * 1024) }, { role: 'user', content: `Summarise the layout (${i}).` }] }));
  }
  writeFileSync(join(work, name), `${bodies.join('\n')}\n`);
}

const policyFile = join(dir, 'policy.yaml');
writeFileSync(
  policyFile,
  `version: 1
network_policies:
  bench:
    binaries: [{ path: "/**" }]
    endpoints:
      - { host: 127.0.0.1, port: ${plainPort} }
      - { host: 127.0.0.1, port: ${passPort} }
      - host: 127.0.0.1
        port: ${decPort}
        protocol: rest
        rules:
          - allow: { method: GET, path: "/**" }
inference:
  providers:
    stub: { type: openai, base_url: "${stub.openaiBaseUrl}", models: [bench-model] }
  routes:
    - { name: default, provider: stub }
approvals:
  mode: ask
  timeout: 60
`,
);
const env = { ...process.env, NEMOCLAW_HOME: home, NO_COLOR: '1', NODE_EXTRA_CA_CERTS: certPath };
const up = spawnSync(process.execPath, [BIN, 'up', '--policy', policyFile, '--unsafe-allow-loopback-upstreams'], { env, encoding: 'utf8' });
if (up.status !== 0) {
  console.error(`nemoclaw-tui up failed:\n${up.stdout}\n${up.stderr}`);
  process.exit(1);
}
const supervisorPid = Number(/\(pid (\d+)/.exec(up.stdout)?.[1]);
const rssMb = (): number => {
  try {
    return Math.round(Number(/VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${supervisorPid}/status`, 'utf8'))?.[1]) / 1024);
  } catch {
    return NaN;
  }
};

// tinyproxy on the host, reached from its sandbox through a relay of the sandbox's listener.
let tiny: ChildProcess | undefined;
let tinyPort = 0;
if (hasTinyproxy) {
  const probe = createNetServer();
  tinyPort = await listen(probe);
  await new Promise<void>((r) => probe.close(() => r()));
  const conf = join(dir, 'tinyproxy.conf');
  writeFileSync(conf, `Port ${tinyPort}\nListen 127.0.0.1\nTimeout 600\nMaxClients 2000\nAllow 127.0.0.1\nConnectPort ${decPort}\nConnectPort ${passPort}\nLogLevel Critical\n`);
  tiny = spawn('tinyproxy', ['-d', '-c', conf], { stdio: 'ignore' });
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = netConnect(tinyPort, '127.0.0.1', () => (s.destroy(), r(true)));
      s.on('error', () => r(false));
    });
    if (ok) break;
    await new Promise((r) => setTimeout(r, 50));
  }
}

type Result = Record<string, number | string>;
const node = '/opt/nemoclaw/node/bin/node';

function runDirect(args: string[], extraEnv: Record<string, string> = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [join(work, 'client.mjs'), ...args], { stdio: ['ignore', 'pipe', 'inherit'], env: { ...process.env, ...extraEnv } });
    let out = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as Result) : reject(new Error(`direct client exited ${code}: ${out}`))));
  });
}

function runOurs(args: string[]): Promise<Result> {
  return new Promise((resolve, reject) => {
    const c = spawn(process.execPath, [BIN, 'run', '--workdir', work, '--', 'node', '/sandbox/client.mjs', ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    c.stdout.on('data', (d: Buffer) => (out += d.toString()));
    c.stderr.on('data', (d: Buffer) => (err += d.toString()));
    c.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as Result) : reject(new Error(`sandboxed client exited ${code}: ${out}${err}`))));
  });
}

async function runTiny(args: string[]): Promise<Result> {
  const open = new Set<Socket>();
  const sb = await launchBwrap({
    id: `bench-tiny-${Math.random().toString(36).slice(2, 8)}`,
    command: [node, '/sandbox/client.mjs', ...args],
    workdir: work,
    runDir: join(dir, 'tiny-run'),
    proxySocket: join(dir, 'tiny-run', 'unused.sock'),
    nodeBinary: process.execPath,
    filesystem: { include_workdir: true, read_only: [], read_write: [], hidden: [], monitor: false },
    process: { seccomp: { block: [], allow: [] }, limits: {}, env: {} },
    attachEgress: (listener) => {
      const relay = createNetServer({ noDelay: true }, (client) => {
        const upstream = netConnect({ host: '127.0.0.1', port: tinyPort, noDelay: true });
        open.add(client);
        const end = (): void => {
          client.destroy();
          upstream.destroy();
          open.delete(client);
        };
        client.on('error', end).on('close', end);
        upstream.on('error', end).on('close', end);
        client.pipe(upstream);
        upstream.pipe(client);
      });
      relay.listen(listener);
      return () => new Promise<void>((r) => relay.close(() => r()));
    },
  });
  let out = '';
  sb.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  let err = '';
  sb.stderr?.on('data', (d: Buffer) => (err += d.toString()));
  const st = await sb.wait();
  for (const s of open) s.destroy();
  if (st.exitCode !== 0) throw new Error(`tinyproxy sandbox client exited ${st.exitCode}: ${out}${err}`);
  return JSON.parse(out) as Result;
}

const ca = '/sandbox/upstream-ca.pem';
const proxyArg = '127.0.0.1:3128';
const num = (r: Result | undefined, k: string): number => Number(r?.[k]);
const f2 = (x: number): string => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const rows: string[] = [];
const rssBefore = rssMb();
let rssPeak = rssBefore;
let rssAfter = NaN;
const sample = setInterval(() => (rssPeak = Math.max(rssPeak, rssMb())), 200);

async function three(name: string, mode: string, port: number, count: number, conc = 1): Promise<[Result, Result, Result | undefined]> {
  const direct = await runDirect([mode, '127.0.0.1', String(port), String(count), '-', String(conc), certPath]);
  const ours = await runOurs([mode, '127.0.0.1', String(port), String(count), proxyArg, String(conc), ca]);
  const peer = hasTinyproxy && port !== decPort ? await runTiny([mode, '127.0.0.1', String(port), String(count), proxyArg, String(conc), ca]) : undefined;
  process.stdout.write(`${name}: direct ${JSON.stringify(direct)}\n  ours ${JSON.stringify(ours)}\n  tinyproxy ${JSON.stringify(peer ?? 'n/a')}\n`);
  return [direct, ours, peer];
}

try {
  {
    const [d, o, p] = await three('keep-alive GET, plain HTTP', 'ka', plainPort, KA_REQUESTS);
    rows.push(`| keep-alive GET, plain HTTP: p50 / p99 ms | ${f2(num(d, 'p50'))} / ${f2(num(d, 'p99'))} | ${f2(num(o, 'p50'))} / ${f2(num(o, 'p99'))} (+${f2(num(o, 'p50') - num(d, 'p50'))} / +${f2(num(o, 'p99') - num(d, 'p99'))}) | ${p ? `${f2(num(p, 'p50'))} / ${f2(num(p, 'p99'))} (+${f2(num(p, 'p50') - num(d, 'p50'))} / +${f2(num(p, 'p99') - num(d, 'p99'))})` : 'n/a'} | ≤ +0.3 / +1 |`);
  }
  {
    const [d, o] = await three('keep-alive GET, HTTPS decrypted by the proxy', 'kas', decPort, KA_REQUESTS);
    rows.push(`| keep-alive GET, HTTPS decrypted: p50 / p99 ms | ${f2(num(d, 'p50'))} / ${f2(num(d, 'p99'))} | ${f2(num(o, 'p50'))} / ${f2(num(o, 'p99'))} (+${f2(num(o, 'p50') - num(d, 'p50'))}) | (tinyproxy does not decrypt) | ≤ +1 p50 |`);
  }
  {
    const [d, o, p] = await three('keep-alive GET, HTTPS passed through', 'kas', passPort, KA_REQUESTS);
    rows.push(`| keep-alive GET, HTTPS passed through: p50 / p99 ms | ${f2(num(d, 'p50'))} / ${f2(num(d, 'p99'))} | ${f2(num(o, 'p50'))} / ${f2(num(o, 'p99'))} (+${f2(num(o, 'p50') - num(d, 'p50'))}) | ${p ? `${f2(num(p, 'p50'))} / ${f2(num(p, 'p99'))} (+${f2(num(p, 'p50') - num(d, 'p50'))})` : 'n/a'} | — |`);
  }
  for (const [name, mode, port, goal] of [
    ['200 MiB download, plain HTTP', 'big', plainPort, '≥ 70 %'],
    ['200 MiB download, HTTPS passed through', 'bigs', passPort, '≥ 70 %'],
    ['200 MiB download, HTTPS decrypted', 'bigs', decPort, '≥ 50 %'],
  ] as const) {
    const [d, o, p] = await three(name, mode, port, 1);
    const pctOf = (r: Result | undefined): string => (r ? `${f2(num(r, 'mb_per_s'))} (${((num(r, 'mb_per_s') / num(d, 'mb_per_s')) * 100).toFixed(0)} %)` : 'n/a');
    rows.push(`| ${name}: MB/s (of direct) | ${f2(num(d, 'mb_per_s'))} | ${pctOf(o)} | ${mode === 'bigs' && port === decPort ? '(does not decrypt)' : pctOf(p)} | ${goal} |`);
  }
  {
    const [d, o, p] = await three(`${CPS_CONNECTIONS} connections, ${CPS_CONCURRENCY} at once`, 'cps', plainPort, CPS_CONNECTIONS, CPS_CONCURRENCY);
    const cell = (r: Result | undefined): string => (r ? `${num(r, 'per_s').toFixed(0)}/s, ${num(r, 'errors')} errors, p99 ${num(r, 'p99').toFixed(0)} ms` : 'n/a');
    rows.push(`| ${CPS_CONNECTIONS} concurrent new connections | ${cell(d)} | ${cell(o)} | ${cell(p)} | ≥ 500/s, 0 errors |`);
  }
  {
    // Router added time to first token: the router alone (its Unix socket, from the host) against
    // the same router reached the agent's way (sandbox → 127.0.0.1:3128 → proxy → router).
    const token = readFileSync(join(home, 'sandboxes', 'default', 'inference-token'), 'utf8').trim();
    const stubUrl = new URL(stub.openaiBaseUrl);
    const direct = await runDirect(['ttft', stubUrl.hostname, stubUrl.port, String(TTFT_CALLS + 10), '-', '1', join(work, 'ttft-direct.jsonl')], { OPENAI_API_KEY: token });
    const alone = await runDirect(['ttft', join(home, 'sandboxes', 'default', 'run', 'inference.sock'), '0', String(TTFT_CALLS + 10), '-', '1', join(work, 'ttft-alone.jsonl')], { OPENAI_API_KEY: token });
    const real = await runOurs(['ttft', 'inference.local', '80', String(TTFT_CALLS + 10), proxyArg, '1', '/sandbox/ttft-real.jsonl']);
    process.stdout.write(`32 KB streaming chat: stub ${JSON.stringify(direct)}\n  router alone ${JSON.stringify(alone)}\n  real path ${JSON.stringify(real)}\n`);
    const t = (r: Result): string => `${f2(num(r, 'ttft_p50'))} / ${f2(num(r, 'ttft_p95'))}`;
    rows.push(`| 32 KB streaming chat, TTFT p50 / p95 ms | stub ${t(direct)} | ${t(real)}; router alone ${t(alone)}: real path +${f2(num(real, 'ttft_p50') - num(alone, 'ttft_p50'))} over it | — | ≤ +1 over the router alone |`);
  }
} finally {
  clearInterval(sample);
  await stub.close();
  rssAfter = rssMb();
  spawnSync(process.execPath, [BIN, 'down'], { env, encoding: 'utf8' });
  tiny?.kill('SIGTERM');
  http.close();
  httpsDecrypted.close();
  httpsPassed.close();
}

const when = new Date().toISOString().slice(0, 16).replace('T', ' ');
console.log(`\n${when} UTC, ${cpus().length} × ${cpus()[0]?.model ?? 'cpu'}, load ${loadavg().map((l) => l.toFixed(2)).join(' ')}, node ${process.version}`);
console.log('| measure | direct | through the sandbox (ours) | tinyproxy behind the sandbox listener | goal |');
console.log('|---|---|---|---|---|');
for (const r of rows) console.log(r);
console.log(`supervisor RSS: ${rssBefore} MB before, ${rssPeak} MB peak, ${rssAfter} MB after the runs`);
rmSync(dir, { recursive: true, force: true });
