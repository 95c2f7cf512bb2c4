// Egress proxy benchmark, all on loopback, in one run:
//  1. added latency of a keep-alive GET through our proxy (TCP and Unix socket) vs direct and vs tinyproxy
//  2. CONNECT throughput vs direct
//  3. 1,000 concurrent client connections held at once
//  4. approval latency: from decide('once') to the first byte reaching the held client
//  6. TLS termination (L7 on HTTPS): leaf minting cold vs cached, keep-alive GET and a new
//     tunnel (CONNECT + handshake + GET) through the terminating proxy vs HTTPS direct
//  5. new-connection latency with binary identity (~25 ms, simulated) awaited (before: every
//     connection) vs looked up in the background (now: when no binaries[] rule covers the host)
// Run: npx tsc -p . && node bench/proxy.ts   (tinyproxy: apt-get install -y tinyproxy)
import { createServer as createHttpServer } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { connect, createServer as createNetServer, type Socket } from 'node:net';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createEgressProxy, loadOrCreateSandboxCa } from '../dist/src/egress/index.js';

const LATENCY_REQUESTS = 3000;
const WARMUP = 300;
const THROUGHPUT_BYTES = 128 * 1024 * 1024;
/** Interleaved rounds per path (the median is reported): one round is at the mercy of the shared CPU. */
const THROUGHPUT_ROUNDS = 3;
const CONCURRENT = 1000;
const APPROVALS = 60;
const NEW_CONNECTIONS = 100;
/** What an identity lookup cost with the socat relay (nsenter + ss + /proc walks), measured in the issue. */
const IDENTITY_MS = 25; // the socat + `ss` chain of before; the in-netns listener looks up in ~1 ms (bench/real-path.ts measures it for real)
const TLS_REQUESTS = 1000;
const TLS_NEW_TUNNELS = 50;

const clock = { now: () => Date.now(), monotonic: () => performance.now() };
const approvalsPolicy = { mode: 'ask' as const, timeout: 60, when_unattended: 'hold' as const, max_pending: 10_000 };
let emitted = 0;

function makeProxy(verdict: 'allow' | 'unknown', identity?: { binaryMatters: boolean }) {
  return createEgressProxy({
    ...(identity
      ? {
          identify: () => new Promise<string>((r) => setTimeout(() => r('/usr/bin/curl'), IDENTITY_MS)),
          binaryMatters: () => identity.binaryMatters,
        }
      : {}),
    decide: (q: { host: string; port: number }) =>
      verdict === 'allow'
        ? { verdict: 'allow', rule: 'bench/0', reason: 'bench', endpoint: { host: q.host, ports: [q.port], rules: [], deny_rules: [], allowed_ips: [] } }
        : { verdict: 'unknown', reason: 'bench' },
    approvals: () => approvalsPolicy,
    operatorsAttached: () => 1,
    // Events are counted, not written: the audit log has its own benchmark.
    emit: () => void emitted++,
    clock,
    unsafeAllowLoopbackUpstreams: true,
  });
}

function pct(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

/**
 * Sequential GETs over one keep-alive connection; returns per-request RTTs (ms). `perRequest`: the
 * server closes after each response (tinyproxy does not keep client connections alive), so every
 * request dials anew, and that connect is part of its RTT, as a client would see it.
 */
async function latencyRun(dial: () => Socket, requestText: string, count: number, perRequest = false): Promise<{ rtts: number[]; reconnects: number }> {
  const out: number[] = [];
  let reconnects = -1;
  let s: Socket | undefined;
  let mustReconnect = true;
  let buf = '';
  let resolveOne: (() => void) | undefined;
  const open = async (): Promise<void> => {
    s?.destroy();
    reconnects++;
    buf = '';
    const sock = dial();
    sock.setNoDelay(true);
    sock.on('data', (c: Buffer) => {
      buf += c.toString('latin1');
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) return;
      const head = buf.slice(0, end);
      const len = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
      if (buf.length >= end + 4 + len) {
        buf = buf.slice(end + 4 + len);
        if (perRequest) mustReconnect = true;
        resolveOne?.();
      }
    });
    sock.on('error', () => undefined);
    await new Promise<void>((r, j) => {
      sock.once('connect', () => r());
      sock.once('error', j);
    });
    s = sock;
    mustReconnect = false;
  };
  for (let i = 0; i < count; i++) {
    const t0 = performance.now();
    if (mustReconnect || !s || s.destroyed) await open();
    await new Promise<void>((r) => {
      resolveOne = r;
      (s as Socket).write(requestText);
    });
    out.push(performance.now() - t0);
  }
  s?.destroy();
  return { rtts: out, reconnects };
}

/** Child mode: our proxy in its own process (as in the supervisor), like tinyproxy is. */
async function serve(unixPath: string): Promise<void> {
  const tcp = makeProxy('allow');
  await tcp.listen({ host: '127.0.0.1', port: 0 });
  const unix = makeProxy('allow');
  await unix.listen(unixPath);
  const idAwait = makeProxy('allow', { binaryMatters: true });
  await idAwait.listen(`${unixPath}.id-await`);
  const idLazy = makeProxy('allow', { binaryMatters: false });
  await idLazy.listen(`${unixPath}.id-lazy`);
  process.on('message', (m: unknown) => {
    if (m === 'counters') process.send?.({ open: unix.counters().open_connections });
    if (m === 'exit') void Promise.all([tcp.close(), unix.close(), idAwait.close(), idLazy.close()]).then(() => process.exit(0));
  });
  process.send?.({ port: tcp.port() });
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-proxy-'));
  const body = 'x'.repeat(256);
  const upstream = createHttpServer({ keepAliveTimeout: 60_000 }, (_req, res) => {
    res.setHeader('Content-Length', body.length);
    res.end(body);
  });
  upstream.maxConnections = 20_000;
  await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', () => r()));
  const upPort = (upstream.address() as { port: number }).port;

  const unixPath = join(dir, 'proxy.sock');
  const child = spawn(process.execPath, [new URL(import.meta.url).pathname, '--serve', unixPath], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
  const oursPort = await new Promise<number>((resolve, reject) => {
    child.once('message', (m) => resolve((m as { port: number }).port));
    child.once('exit', (code) => reject(new Error(`proxy child exited with ${code}`)));
  });
  const childOpen = (): Promise<number> =>
    new Promise((resolve) => {
      child.once('message', (m) => resolve((m as { open: number }).open));
      child.send('counters');
    });

  // tinyproxy baseline (same machine, same client).
  let tiny: ChildProcess | undefined;
  let tinyPort = 0;
  if (spawnSync('which', ['tinyproxy']).status === 0) {
    tinyPort = 20_000 + Math.floor(Math.random() * 20_000);
    const conf = join(dir, 'tinyproxy.conf');
    writeFileSync(conf, `Port ${tinyPort}\nListen 127.0.0.1\nTimeout 600\nMaxClients 2000\nLogLevel Critical\nDisableViaHeader Yes\n`);
    tiny = spawn('tinyproxy', ['-d', '-c', conf], { stdio: 'ignore' });
    for (let i = 0; i < 100; i++) {
      const ok = await new Promise<boolean>((r) => {
        const s = connect(tinyPort, '127.0.0.1', () => (s.destroy(), r(true)));
        s.on('error', () => r(false));
      });
      if (ok) break;
      await new Promise((r) => setTimeout(r, 30));
    }
  } else {
    process.stdout.write('tinyproxy not installed (apt-get install -y tinyproxy): its column is skipped\n');
  }

  const absolute = `GET http://bench.test:${upPort}/item HTTP/1.1\r\nHost: bench.test:${upPort}\r\n\r\n`;
  const origin = `GET /item HTTP/1.1\r\nHost: 127.0.0.1:${upPort}\r\n\r\n`;
  const absoluteIp = `GET http://127.0.0.1:${upPort}/item HTTP/1.1\r\nHost: 127.0.0.1:${upPort}\r\n\r\n`;
  const variants: Array<[string, () => Socket, string, boolean?]> = [
    ['direct', () => connect(upPort, '127.0.0.1'), origin],
    ['ours (TCP)', () => connect(oursPort, '127.0.0.1'), absoluteIp],
    ['ours (Unix socket)', () => connect(unixPath), absoluteIp],
  ];
  if (tiny) variants.push(['tinyproxy', () => connect(tinyPort, '127.0.0.1'), absoluteIp, true]);
  void absolute;

  const lat: Record<string, { p50: number; p99: number }> = {};
  for (const [name, dial, text, perRequest] of variants) {
    await latencyRun(dial, text, WARMUP, perRequest);
    const run = await latencyRun(dial, text, LATENCY_REQUESTS, perRequest);
    const rtts = run.rtts.sort((a, b) => a - b);
    const label = run.reconnects > 0 ? `${name}*` : name;
    lat[label] = { p50: pct(rtts, 50), p99: pct(rtts, 99) };
  }
  const direct = lat.direct as { p50: number; p99: number };
  if (Object.keys(lat).some((k) => k.endsWith('*'))) process.stdout.write('* closes the client connection after every response: a new connection per request\n');
  process.stdout.write(`\n1. keep-alive GET, ${LATENCY_REQUESTS} sequential requests (ms)\n`);
  process.stdout.write(`${'path'.padEnd(20)} ${'p50'.padStart(8)} ${'p99'.padStart(8)} ${'+p50'.padStart(8)} ${'+p99'.padStart(8)} ${'p50 ratio'.padStart(10)}\n`);
  for (const [name, v] of Object.entries(lat)) {
    process.stdout.write(
      `${name.padEnd(20)} ${v.p50.toFixed(3).padStart(8)} ${v.p99.toFixed(3).padStart(8)} ${(v.p50 - direct.p50).toFixed(3).padStart(8)} ${(v.p99 - direct.p99).toFixed(3).padStart(8)} ${(v.p50 / direct.p50).toFixed(2).padStart(9)}x\n`,
    );
  }

  // 2. CONNECT throughput: push THROUGHPUT_BYTES to a sink that answers when it has them all.
  const sink = createNetServer((s) => {
    let got = 0;
    s.on('data', (c: Buffer) => {
      got += c.length;
      if (got >= THROUGHPUT_BYTES) s.end('done');
    });
    s.on('error', () => {});
  });
  await new Promise<void>((r) => sink.listen(0, '127.0.0.1', () => r()));
  const sinkPort = (sink.address() as { port: number }).port;
  const chunk = Buffer.alloc(64 * 1024, 0x16);
  async function pump(s: Socket): Promise<number> {
    const t0 = performance.now();
    const done = new Promise<void>((r) => s.once('data', () => r()));
    let sent = 0;
    while (sent < THROUGHPUT_BYTES) {
      sent += chunk.length;
      if (!s.write(chunk)) await new Promise((r) => s.once('drain', r));
    }
    await done;
    s.destroy();
    return THROUGHPUT_BYTES / 1024 / 1024 / ((performance.now() - t0) / 1000);
  }
  async function tunnel(dial: () => Socket): Promise<Socket> {
    const s = dial();
    await new Promise<void>((r) => s.once('connect', () => r()));
    s.write(`CONNECT 127.0.0.1:${sinkPort} HTTP/1.1\r\nHost: 127.0.0.1:${sinkPort}\r\n\r\n`);
    await new Promise<void>((r) => s.once('data', () => r()));
    return s;
  }
  const rounds: Record<'direct' | 'tcp' | 'unix' | 'tiny', number[]> = { direct: [], tcp: [], unix: [], tiny: [] };
  for (let round = 0; round < THROUGHPUT_ROUNDS; round++) {
    rounds.direct.push(await pump(await new Promise<Socket>((r) => { const s = connect(sinkPort, '127.0.0.1', () => r(s)); })));
    rounds.tcp.push(await pump(await tunnel(() => connect(oursPort, '127.0.0.1'))));
    rounds.unix.push(await pump(await tunnel(() => connect(unixPath))));
    if (tiny) rounds.tiny.push(await pump(await tunnel(() => connect(tinyPort, '127.0.0.1'))));
  }
  const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] as number;
  const directMBs = median(rounds.direct);
  const oursMBs = median(rounds.tcp);
  const unixMBs = median(rounds.unix);
  const tinyMBs = tiny ? median(rounds.tiny) : undefined;
  process.stdout.write(`\n2. CONNECT throughput, ${THROUGHPUT_BYTES / 1024 / 1024} MiB one way, median of ${THROUGHPUT_ROUNDS} interleaved rounds (MiB/s)\n`);
  process.stdout.write(`direct               ${directMBs.toFixed(0).padStart(8)}\n`);
  process.stdout.write(`ours (TCP)           ${oursMBs.toFixed(0).padStart(8)}  ${((oursMBs / directMBs) * 100).toFixed(0)}% of direct\n`);
  process.stdout.write(`ours (Unix socket)   ${unixMBs.toFixed(0).padStart(8)}  ${((unixMBs / directMBs) * 100).toFixed(0)}% of direct\n`);
  if (tinyMBs !== undefined) process.stdout.write(`tinyproxy            ${tinyMBs.toFixed(0).padStart(8)}  ${((tinyMBs / directMBs) * 100).toFixed(0)}% of direct\n`);

  // 3. 1,000 concurrent client connections through the Unix socket, all open at once.
  const t3 = performance.now();
  const socks: Socket[] = [];
  let ok = 0;
  let errors = 0;
  await Promise.all(
    Array.from({ length: CONCURRENT }, () =>
      new Promise<void>((resolve) => {
        const s = connect(unixPath);
        socks.push(s);
        let buf = '';
        s.on('error', () => {
          errors++;
          resolve();
        });
        s.on('data', (c: Buffer) => {
          buf += c.toString('latin1');
          if (buf.includes('\r\n\r\n') && buf.endsWith(body)) {
            if (buf.startsWith('HTTP/1.1 200')) ok++;
            else errors++;
            resolve();
          }
        });
        s.write(absoluteIp);
      }),
    ),
  );
  const openAfter = socks.filter((s) => !s.destroyed).length;
  const oursOpen = await childOpen();
  const t3ms = performance.now() - t3;
  for (const s of socks) s.destroy();
  process.stdout.write(`\n3. ${CONCURRENT} concurrent connections: ${ok} answered 200, ${errors} errors, ${openAfter} still open on the client, ${oursOpen} open in the proxy (${t3ms.toFixed(0)} ms)\n`);

  // 4. Approval latency: a held request per host; decide('once') → first byte at the client.
  const held = makeProxy('unknown');
  const heldPath = join(dir, 'held.sock');
  await held.listen(heldPath);
  const approvalMs: number[] = [];
  for (let i = 0; i < APPROVALS; i++) {
    const s = connect(heldPath);
    const firstByte = new Promise<number>((r) => s.once('data', () => r(performance.now())));
    s.write(`GET http://127.0.0.1:${upPort}/a${i} HTTP/1.1\r\nHost: x\r\n\r\n`);
    let pending = held.pending();
    while (pending.length === 0) {
      await new Promise((r) => setTimeout(r, 1));
      pending = held.pending();
    }
    const t0 = performance.now();
    await held.decide((pending[0] as { id: string }).id, 'once', 'cli');
    approvalMs.push((await firstByte) - t0);
    s.destroy();
  }
  approvalMs.sort((a, b) => a - b);
  process.stdout.write(`\n4. approval latency, decide('once') → first byte at the held client, ${APPROVALS} prompts (ms): p50 ${pct(approvalMs, 50).toFixed(3)}, p99 ${pct(approvalMs, 99).toFixed(3)}, max ${(approvalMs.at(-1) as number).toFixed(3)}\n`);

  // 5. A new client connection per request (connect + GET + close), identity awaited vs not.
  const newConn = async (dial: () => Socket, text: string): Promise<{ p50: number; p99: number }> => {
    const out: number[] = [];
    for (let i = 0; i < NEW_CONNECTIONS; i++) {
      const t0 = performance.now();
      await new Promise<void>((resolve) => {
        const s = dial();
        let buf = '';
        s.on('data', (c: Buffer) => {
          buf += c.toString('latin1');
          if (buf.includes('\r\n\r\n') && buf.endsWith(body)) {
            s.destroy();
            resolve();
          }
        });
        s.on('error', () => resolve());
        s.write(text);
      });
      out.push(performance.now() - t0);
    }
    out.sort((a, b) => a - b);
    return { p50: pct(out, 50), p99: pct(out, 99) };
  };
  const ncDirect = await newConn(() => connect(upPort, '127.0.0.1'), origin);
  const ncAwait = await newConn(() => connect(`${unixPath}.id-await`), absoluteIp);
  const ncLazy = await newConn(() => connect(`${unixPath}.id-lazy`), absoluteIp);
  process.stdout.write(`\n5. new connection per request (connect + GET), ${NEW_CONNECTIONS} sequential, identity lookup simulated at ${IDENTITY_MS} ms (ms)\n`);
  process.stdout.write(`${'path'.padEnd(50)} ${'p50'.padStart(8)} ${'p99'.padStart(8)} ${'+p50'.padStart(8)}\n`);
  for (const [name, v] of [
    ['direct', ncDirect],
    ['ours, identity awaited (before; binaries[] rule)', ncAwait],
    ['ours, identity in background (now; no such rule)', ncLazy],
  ] as Array<[string, { p50: number; p99: number }]>) {
    process.stdout.write(`${name.padEnd(50)} ${v.p50.toFixed(3).padStart(8)} ${v.p99.toFixed(3).padStart(8)} ${(v.p50 - ncDirect.p50).toFixed(3).padStart(8)}\n`);
  }

  // 6. TLS termination. The terminating proxy runs in this process (client and upstream too).
  const sbxCa = await loadOrCreateSandboxCa({ privateDir: join(dir, 'sbx-tls'), trustDir: join(dir, 'sbx-trust'), sandboxName: 'bench' });
  const pubCa = await loadOrCreateSandboxCa({ privateDir: join(dir, 'pub-tls'), trustDir: join(dir, 'pub-trust'), sandboxName: 'bench-public' });
  const mintMs: number[] = [];
  for (let i = 0; i < 10; i++) {
    const t0 = performance.now();
    await sbxCa.contextFor(`mint-${i}.bench.test`);
    mintMs.push(performance.now() - t0);
  }
  const cachedMs: number[] = [];
  for (let i = 0; i < 1000; i++) {
    const t0 = performance.now();
    await sbxCa.contextFor('mint-0.bench.test');
    cachedMs.push(performance.now() - t0);
  }
  mintMs.sort((a, b) => a - b);
  cachedMs.sort((a, b) => a - b);
  const upCtx = await pubCa.contextFor('bench.test');
  const hs = createHttpsServer({ SNICallback: (_n, cb) => cb(null, upCtx), keepAliveTimeout: 60_000 }, (_req, res) => {
    res.setHeader('Content-Length', body.length);
    res.end(body);
  });
  await new Promise<void>((r) => hs.listen(0, '127.0.0.1', () => r()));
  const hsPort = (hs.address() as { port: number }).port;
  const restEndpoint = (q: { host: string; port: number }) => ({ host: q.host, ports: [q.port], protocol: 'rest', rules: [{ method: 'GET', path: '/**' }], deny_rules: [], allowed_ips: [] });
  const tlsProxy = createEgressProxy({
    decide: (q: { host: string; port: number }) => ({ verdict: 'allow', rule: 'bench/tls', reason: 'bench', endpoint: restEndpoint(q) }),
    approvals: () => approvalsPolicy,
    operatorsAttached: () => 1,
    emit: () => void emitted++,
    clock,
    unsafeAllowLoopbackUpstreams: true,
    resolver: async () => [{ address: '127.0.0.1', family: 4 }],
    tls: sbxCa,
    upstreamCa: pubCa.caCertPem,
  });
  const tlsPath = join(dir, 'tls.sock');
  await tlsProxy.listen(tlsPath);
  await sbxCa.contextFor('bench.test');
  const overTls = (s: TLSSocket, text: string): Promise<void> =>
    new Promise((resolve) => {
      let buf = '';
      const onData = (c: Buffer): void => {
        buf += c.toString('latin1');
        if (buf.includes('\r\n\r\n') && buf.endsWith(body)) {
          s.removeListener('data', onData);
          resolve();
        }
      };
      s.on('data', onData);
      s.write(text);
    });
  const tlsDirect = (): Promise<TLSSocket> =>
    new Promise((resolve, reject) => {
      const s = tlsConnect({ host: '127.0.0.1', port: hsPort, servername: 'bench.test', ca: pubCa.caCertPem }, () => resolve(s));
      s.once('error', reject);
    });
  const tlsTunnel = async (): Promise<TLSSocket> => {
    const raw = connect(tlsPath);
    await new Promise<void>((r) => raw.once('connect', () => r()));
    raw.write(`CONNECT bench.test:${hsPort} HTTP/1.1\r\nHost: bench.test:${hsPort}\r\n\r\n`);
    await new Promise<void>((r) => raw.once('data', () => r()));
    return new Promise((resolve, reject) => {
      const s = tlsConnect({ socket: raw, servername: 'bench.test', ca: sbxCa.caCertPem }, () => resolve(s));
      s.once('error', reject);
    });
  };
  const tlsGet = `GET /item HTTP/1.1\r\nHost: bench.test:${hsPort}\r\n\r\n`;
  const keepAliveRtts = async (open: () => Promise<TLSSocket>): Promise<number[]> => {
    const s = await open();
    for (let i = 0; i < WARMUP; i++) await overTls(s, tlsGet);
    const out: number[] = [];
    for (let i = 0; i < TLS_REQUESTS; i++) {
      const t0 = performance.now();
      await overTls(s, tlsGet);
      out.push(performance.now() - t0);
    }
    s.destroy();
    return out.sort((a, b) => a - b);
  };
  const newTunnelRtts = async (open: () => Promise<TLSSocket>): Promise<number[]> => {
    const out: number[] = [];
    for (let i = 0; i < TLS_NEW_TUNNELS; i++) {
      const t0 = performance.now();
      const s = await open();
      await overTls(s, tlsGet);
      out.push(performance.now() - t0);
      s.destroy();
    }
    return out.sort((a, b) => a - b);
  };
  const kaDirect = await keepAliveRtts(tlsDirect);
  const kaTunnel = await keepAliveRtts(tlsTunnel);
  const ntDirect = await newTunnelRtts(tlsDirect);
  const ntTunnel = await newTunnelRtts(tlsTunnel);
  process.stdout.write(`\n6. TLS termination (proxy in this process), leaf mint: cold p50 ${pct(mintMs, 50).toFixed(1)} ms (openssl), cached p50 ${(pct(cachedMs, 50) * 1000).toFixed(1)} µs\n`);
  process.stdout.write(`${'path (ms)'.padEnd(50)} ${'p50'.padStart(8)} ${'p99'.padStart(8)} ${'+p50'.padStart(8)} ${'+p99'.padStart(8)}\n`);
  for (const [name, v, base] of [
    [`keep-alive GET, HTTPS direct (${TLS_REQUESTS})`, kaDirect, kaDirect],
    ['keep-alive GET, terminated + re-originated', kaTunnel, kaDirect],
    [`new connection + handshake + GET, direct (${TLS_NEW_TUNNELS})`, ntDirect, ntDirect],
    ['new CONNECT + handshake + GET, terminated', ntTunnel, ntDirect],
  ] as Array<[string, number[], number[]]>) {
    process.stdout.write(
      `${name.padEnd(50)} ${pct(v, 50).toFixed(3).padStart(8)} ${pct(v, 99).toFixed(3).padStart(8)} ${(pct(v, 50) - pct(base, 50)).toFixed(3).padStart(8)} ${(pct(v, 99) - pct(base, 99)).toFixed(3).padStart(8)}\n`,
    );
  }
  await tlsProxy.close();
  hs.closeAllConnections();
  hs.close();

  process.stdout.write(`\ngoals: +p50 <= 0.2 ms, +p99 <= 1 ms over direct; CONNECT >= 70% of direct; ${CONCURRENT} connections without errors; approval <= 50 ms\n`);
  process.stdout.write(`(events emitted and counted, not written: ${emitted})\n`);

  tiny?.kill('SIGTERM');
  child.send('exit');
  await held.close();
  upstream.closeAllConnections();
  upstream.close();
  sink.close();
  rmSync(dir, { recursive: true, force: true });
}

const serveAt = process.argv.indexOf('--serve');
(serveAt > 0 ? serve(process.argv[serveAt + 1] as string) : main()).catch((err: unknown) => {
  process.stderr.write(`bench/proxy.ts failed: ${(err as Error).stack ?? String(err)}\n`);
  process.exitCode = 1;
});
