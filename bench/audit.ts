// Audit log benchmark: appends/s of the hash-chained log vs plain JSONL appends (same records,
// same batching, no hashing), and verified records/s vs a plain JSON.parse of every line of the
// same file. Each figure is the best of a few rounds (the machine is shared).
// "durable wait" (write-ahead, issue 14): the egress proxy's added latency (keep-alive GET through
// the proxy's Unix socket minus the same GET direct) with its events appended to a real AuditLog,
// without waiting (before: forward at once, records fsynced later) vs awaiting `durable()` before
// forwarding (now: group-committed fdatasync), sequential and 32 clients at once, interleaved rounds.
// The log lives in $BENCH_AUDIT_DIR (default: the OS temp dir, i.e. that disk).
// Run: npx tsc -p . && node bench/audit.ts
import { closeSync, fsyncSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer as createHttpServer } from 'node:http';
import { connect, type Socket } from 'node:net';
import { AuditLog, describeDisk, verifyAudit } from '../dist/src/audit/index.js';
import { createEgressProxy } from '../dist/src/egress/index.js';

const N = 200_000;
const ROUNDS = 3;
const root = mkdtempSync(join(process.env.BENCH_AUDIT_DIR ?? tmpdir(), 'nemoclaw-bench-audit-'));
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

function event(i: number) {
  return { kind: 'net.decision' as const, verdict: i % 3 ? 'allow' : 'deny', host: `svc${i % 977}.example.com`, port: 443, binary: '/usr/bin/node', rule: `p${i % 50}/0` };
}

/** Plain JSONL: the same record shape, batched writes, one fsync at the end; no seq chain, no hash. */
function plainAppends(file: string): number {
  const t0 = performance.now();
  const fd = openSync(file, 'a', 0o600);
  let batch: string[] = [];
  for (let i = 0; i < N; i++) {
    const rec = { ts: new Date().toISOString(), seq: i + 1, level: 'info', sandbox: 'bench', id: `r${i}`, ...event(i) };
    batch.push(`${JSON.stringify(rec)}\n`);
    if (batch.length === 8192) {
      writeSync(fd, batch.join(''));
      batch = [];
    }
  }
  writeSync(fd, batch.join(''));
  fsyncSync(fd);
  closeSync(fd);
  return (N / (performance.now() - t0)) * 1000;
}

/** Ours: AuditLog.append (seq, canonical JSON, sha256 chain), batched writes, fsync on close. */
async function chainedAppends(dir: string): Promise<number> {
  const log = await AuditLog.open({ dir, sandbox: 'bench', maxFileBytes: 1 << 30 });
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    log.append(event(i));
    if (i % 8192 === 8191) await new Promise((r) => setImmediate(r)); // let the writer run, as a live supervisor would
  }
  await log.close();
  return (N / (performance.now() - t0)) * 1000;
}

function parseEveryLine(file: string): number {
  const t0 = performance.now();
  const text = readFileSync(file, 'utf8');
  let parsed = 0;
  for (const line of text.split('\n')) if (line && (JSON.parse(line) as { seq: number }).seq > 0) parsed++;
  return (parsed / (performance.now() - t0)) * 1000;
}

async function verifyRate(dir: string): Promise<number> {
  const t0 = performance.now();
  const result = await verifyAudit(dir);
  const rate = (result.records / (performance.now() - t0)) * 1000;
  if (!result.ok || result.records !== N) throw new Error(`verify failed: ${JSON.stringify(result)}`);
  return rate;
}

const LAT_REQUESTS = 2000;
const LAT_ROUNDS = 3;
const CONCURRENT_CLIENTS = 32;

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
}

/** One keep-alive client: `count` sequential GETs, per-request RTTs in ms. */
async function client(dial: () => Socket, request: string, count: number): Promise<number[]> {
  const sock = dial();
  sock.setNoDelay(true);
  await new Promise<void>((r, j) => {
    sock.once('connect', () => r());
    sock.once('error', j);
  });
  let buf = '';
  let done: (() => void) | undefined;
  sock.on('data', (c: Buffer) => {
    buf += c.toString('latin1');
    const end = buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const len = Number(/content-length: (\d+)/i.exec(buf.slice(0, end))?.[1] ?? 0);
    if (buf.length >= end + 4 + len) {
      buf = buf.slice(end + 4 + len);
      done?.();
    }
  });
  const out: number[] = [];
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    await new Promise<void>((r) => {
      done = r;
      sock.write(request);
    });
    out.push(performance.now() - t0);
  }
  sock.destroy();
  return out;
}

async function durableWaitScenario(): Promise<string[]> {
  const body = 'x'.repeat(256);
  const upstream = createHttpServer({ keepAliveTimeout: 60_000 }, (_req, res) => {
    res.setHeader('Content-Length', body.length);
    res.end(body);
  });
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  const upPort = (upstream.address() as { port: number }).port;
  const clock = { now: () => Date.now(), monotonic: () => performance.now() };
  const logs: AuditLog[] = [];
  const makeProxy = async (name: string, gate: boolean, sync: 'fsync' | 'write' = 'fsync') => {
    const log = await AuditLog.open({ dir: join(root, `lat-${name}`), sandbox: 'bench', sync });
    logs.push(log);
    const proxy = createEgressProxy({
      decide: (q: { host: string; port: number }) => ({ verdict: 'allow', rule: 'bench/0', reason: 'bench', endpoint: { host: q.host, ports: [q.port], rules: [], deny_rules: [], allowed_ips: [] } }),
      approvals: () => ({ mode: 'ask' as const, timeout: 60, when_unattended: 'hold' as const, max_pending: 10_000 }),
      operatorsAttached: () => 1,
      emit: (e) => void log.append(e),
      ...(gate ? { audit: { durable: () => log.durable(), writable: () => log.writable(), problem: () => log.problem() } } : {}),
      clock,
      unsafeAllowLoopbackUpstreams: true,
    });
    const sock = join(root, `${name}.sock`);
    await proxy.listen(sock);
    return { proxy, sock };
  };
  const before = await makeProxy('before', false);
  const after = await makeProxy('after', true);
  const written = await makeProxy('written', true, 'write');
  // A new connection per client and per round: the first request on it is a full decision (net.request + net.decision).
  const direct = `GET / HTTP/1.1\r\nHost: 127.0.0.1:${upPort}\r\n\r\n`;
  const viaProxy = `GET http://127.0.0.1:${upPort}/ HTTP/1.1\r\nHost: 127.0.0.1:${upPort}\r\n\r\n`;
  const dialDirect = () => connect(upPort, '127.0.0.1');
  const runs: Record<string, number[]> = { direct: [], before: [], after: [], written: [], directC: [], beforeC: [], afterC: [], writtenC: [] };
  const perClient = Math.ceil(LAT_REQUESTS / CONCURRENT_CLIENTS);
  await client(dialDirect, direct, 200);
  await client(() => connect(before.sock), viaProxy, 200);
  await client(() => connect(after.sock), viaProxy, 200);
  await client(() => connect(written.sock), viaProxy, 200);
  for (let r = 0; r < LAT_ROUNDS; r++) {
    runs.direct!.push(...(await client(dialDirect, direct, LAT_REQUESTS)));
    runs.before!.push(...(await client(() => connect(before.sock), viaProxy, LAT_REQUESTS)));
    runs.after!.push(...(await client(() => connect(after.sock), viaProxy, LAT_REQUESTS)));
    runs.written!.push(...(await client(() => connect(written.sock), viaProxy, LAT_REQUESTS)));
    const conc = async (dial: () => Socket, req: string) => (await Promise.all(Array.from({ length: CONCURRENT_CLIENTS }, () => client(dial, req, perClient)))).flat();
    runs.directC!.push(...(await conc(dialDirect, direct)));
    runs.beforeC!.push(...(await conc(() => connect(before.sock), viaProxy)));
    runs.afterC!.push(...(await conc(() => connect(after.sock), viaProxy)));
    runs.writtenC!.push(...(await conc(() => connect(written.sock), viaProxy)));
  }
  const sorted = Object.fromEntries(Object.entries(runs).map(([k, v]) => [k, [...v].sort((a, b) => a - b)])) as Record<string, number[]>;
  const ms = (n: number) => n.toFixed(3);
  const sign = (n: number) => `${n >= 0 ? '+' : ''}${ms(n)}`;
  const row = (label: string, d: number[], b: number[], a: number[], w: number[], p: number) => {
    const addB = pct(b, p) - pct(d, p);
    const addA = pct(a, p) - pct(d, p);
    const addW = pct(w, p) - pct(d, p);
    return `| ${label} p${p} | ${ms(pct(d, p))} | ${ms(addB)} | ${ms(addA)} (${sign(addA - addB)}) | ${ms(addW)} (${sign(addW - addB)}) |`;
  };
  await before.proxy.close();
  await after.proxy.close();
  await written.proxy.close();
  for (const l of logs) await l.close();
  await new Promise<void>((r) => upstream.close(() => r()));
  return [
    `## Durable wait: the proxy's added latency, forwarding at once vs after the allow is fsynced (${LAT_ROUNDS} interleaved rounds, log on ${describeDisk(root)})\n`,
    '| keep-alive GET | direct ms | added ms, no wait (before) | added ms, wait for fdatasync (default) | added ms, wait for write() (sync: write) |',
    '|---|---:|---:|---:|---:|',
    row('1 client', sorted.direct!, sorted.before!, sorted.after!, sorted.written!, 50),
    row('1 client', sorted.direct!, sorted.before!, sorted.after!, sorted.written!, 99),
    row(`${CONCURRENT_CLIENTS} clients`, sorted.directC!, sorted.beforeC!, sorted.afterC!, sorted.writtenC!, 50),
    row(`${CONCURRENT_CLIENTS} clients`, sorted.directC!, sorted.beforeC!, sorted.afterC!, sorted.writtenC!, 99),
  ];
}

try {
  let plain = 0;
  let chained = 0;
  let auditDir = '';
  for (let r = 0; r < ROUNDS; r++) {
    plain = Math.max(plain, plainAppends(join(root, `plain-${r}.jsonl`)));
    rmSync(join(root, `plain-${r}.jsonl`));
    auditDir = join(root, `audit-${r}`);
    chained = Math.max(chained, await chainedAppends(auditDir));
    if (r < ROUNDS - 1) rmSync(auditDir, { recursive: true });
  }
  const file = join(auditDir, 'audit-000001.jsonl');
  let parse = 0;
  let verify = 0;
  for (let r = 0; r < ROUNDS; r++) {
    parse = Math.max(parse, parseEveryLine(file));
    verify = Math.max(verify, await verifyRate(auditDir));
  }
  console.log(`## Audit log (${fmt(N)} records of ${Math.round(statSync(file).size / N)} bytes, best of ${ROUNDS})\n`);
  console.log('| operation | baseline | ours | ratio |');
  console.log('|---|---:|---:|---:|');
  console.log(`| appends/s: plain JSONL vs hash-chained AuditLog | ${fmt(plain)} | ${fmt(chained)} | ${(chained / plain).toFixed(2)}x |`);
  console.log(`| records/s: JSON.parse of each line vs verifyAudit | ${fmt(parse)} | ${fmt(verify)} | ${(verify / parse).toFixed(2)}x |`);
  console.log('');
  for (const line of await durableWaitScenario()) console.log(line);
} finally {
  rmSync(root, { recursive: true, force: true });
}
