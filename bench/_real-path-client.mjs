// The client of bench/real-path.ts. It runs on the host (direct) and inside a sandbox (through
// 127.0.0.1:3128), the same code both ways, and prints one JSON line.
//   node _real-path-client.mjs MODE TARGET_HOST TARGET_PORT COUNT [PROXY_HOST:PORT|-] [CONCURRENCY] [CA_FILE]
// MODE: ka (keep-alive GET, plain), kas (keep-alive GET over TLS, through CONNECT when proxied),
//       cps (a new connection per GET, CONCURRENCY at once), big / bigs (one large GET, plain / TLS),
//       ttft (streaming chat completions, one body per line of the file CA_FILE names, POSTed in turn
//       on one keep-alive connection; TARGET_HOST may be a Unix socket path; the token is
//       $OPENAI_API_KEY): time to the first content chunk and to the end.
import net from 'node:net';
import tls from 'node:tls';
import { readFileSync } from 'node:fs';
import http from 'node:http';

const [mode, host, portText, countText, proxyArg = '-', concText = '100', caFile] = process.argv.slice(2);
const port = Number(portText);
const count = Number(countText);
const proxy = proxyArg === '-' ? undefined : { host: proxyArg.split(':')[0], port: Number(proxyArg.split(':')[1]) };
const extraCa = [process.env.NODE_EXTRA_CA_CERTS, caFile].filter(Boolean).map((f) => readFileSync(f, 'utf8'));
const ca = [...tls.rootCertificates, ...extraCa];

function tcp(h, p) {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: h, port: p, noDelay: true }, () => resolve(s));
    s.once('error', reject);
  });
}

/** Read one HTTP/1.1 response with Content-Length off `s`; resolves with its status and body size. */
function readResponse(s) {
  return new Promise((resolve, reject) => {
    let head = Buffer.alloc(0);
    let need = -1;
    let got = 0;
    let status = 0;
    const onData = (d) => {
      if (need < 0) {
        head = Buffer.concat([head, d]);
        const i = head.indexOf('\r\n\r\n');
        if (i < 0) return;
        const text = head.subarray(0, i).toString('latin1');
        status = Number(text.slice(9, 12));
        const m = /\r\ncontent-length: *(\d+)/i.exec(text);
        need = m ? Number(m[1]) : 0;
        got = head.length - i - 4;
      } else got += d.length;
      if (got >= need) {
        s.off('data', onData);
        s.off('error', reject);
        s.off('close', onClose);
        resolve({ status, bytes: got });
      }
    };
    // A proxy that does not keep client connections alive (tinyproxy) closes after one answer.
    const onClose = () => reject(new Error('connection closed before a complete answer'));
    s.on('data', onData);
    s.once('error', reject);
    s.once('close', onClose);
  });
}

async function open(secure) {
  const s = await tcp(proxy?.host ?? host, proxy?.port ?? port);
  if (!secure) return s;
  if (proxy) {
    s.write(`CONNECT ${host}:${port} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`);
    const r = await readResponse(s);
    if (r.status !== 200) throw new Error(`CONNECT answered ${r.status}`);
  }
  return new Promise((resolve, reject) => {
    const t = tls.connect({ socket: s, servername: net.isIP(host) ? undefined : host, ca, host }, () => resolve(t));
    t.once('error', reject);
  });
}

async function get(s, path, absolute) {
  const target = absolute ? `http://${host}:${port}${path}` : path;
  const done = readResponse(s);
  s.write(`GET ${target} HTTP/1.1\r\nHost: ${host}:${port}\r\n\r\n`);
  const r = await done;
  if (r.status !== 200) throw new Error(`GET ${path} answered ${r.status}`);
  return r;
}

const pct = (xs, q) => {
  const a = [...xs].sort((x, y) => x - y);
  return a[Math.min(a.length - 1, Math.floor(a.length * q))];
};
const plainAbsolute = proxy !== undefined;

if (mode === 'ka' || mode === 'kas') {
  const secure = mode === 'kas';
  let s = await open(secure);
  const times = [];
  let reconnects = 0;
  for (let i = 0; i < count + 100; i++) {
    const t = performance.now();
    try {
      await get(s, '/x', !secure && plainAbsolute);
    } catch {
      // Not kept alive by the other side: the connection is reopened, and that time counts.
      reconnects++;
      s.destroy();
      s = await open(secure);
      await get(s, '/x', !secure && plainAbsolute);
    }
    if (i >= 100) times.push(performance.now() - t);
  }
  s.destroy();
  console.log(JSON.stringify({ p50: pct(times, 0.5), p99: pct(times, 0.99), n: times.length, reconnects }));
} else if (mode === 'cps') {
  const conc = Number(concText);
  let started = 0;
  let errors = 0;
  let firstError;
  const times = [];
  const t0 = performance.now();
  await Promise.all(
    Array.from({ length: conc }, async () => {
      while (started < count) {
        started++;
        const t = performance.now();
        try {
          const s = await open(false);
          await get(s, '/x', plainAbsolute);
          s.destroy();
          times.push(performance.now() - t);
        } catch (err) {
          errors++;
          firstError ??= String(err?.message ?? err);
        }
      }
    }),
  );
  const seconds = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ per_s: count / seconds, seconds, errors, p50: pct(times, 0.5), p99: pct(times, 0.99), ...(firstError ? { first_error: firstError } : {}) }));
} else if (mode === 'big' || mode === 'bigs') {
  const secure = mode === 'bigs';
  const s = await open(secure);
  const t = performance.now();
  const r = await get(s, '/big', !secure && plainAbsolute);
  const seconds = (performance.now() - t) / 1000;
  s.destroy();
  console.log(JSON.stringify({ mb_per_s: r.bytes / seconds / 1e6, bytes: r.bytes, seconds }));
} else if (mode === 'ttft') {
  const bodies = readFileSync(caFile, 'utf8').split('\n').filter((l) => l.length > 0).slice(0, count);
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const unix = host.startsWith('/');
  const url = proxy ? `http://${host}/v1/chat/completions` : '/v1/chat/completions';
  const call = (body) =>
    new Promise((resolve, reject) => {
      const t0 = performance.now();
      const req = http.request(
        {
          agent,
          method: 'POST',
          ...(unix ? { socketPath: host } : { host: proxy?.host ?? host, port: proxy?.port ?? port }),
          path: url,
          headers: { host: proxy ? host : `${host}:${port}`, 'content-type': 'application/json', authorization: `Bearer ${process.env.OPENAI_API_KEY ?? ''}` },
        },
        (res) => {
          let ttft = -1;
          res.on('data', (chunk) => {
            if (ttft < 0 && chunk.includes('"content":"')) ttft = performance.now() - t0;
          });
          res.on('end', () => (res.statusCode === 200 ? resolve({ ttft, total: performance.now() - t0 }) : reject(new Error(`status ${res.statusCode}`))));
        },
      );
      req.on('error', reject);
      req.end(body);
    });
  const ttfts = [];
  const totals = [];
  for (const [i, body] of bodies.entries()) {
    const r = await call(body);
    if (i >= 10) {
      ttfts.push(r.ttft);
      totals.push(r.total);
    }
  }
  agent.destroy();
  console.log(JSON.stringify({ ttft_p50: pct(ttfts, 0.5), ttft_p95: pct(ttfts, 0.95), total_p50: pct(totals, 0.5), n: ttfts.length }));
} else {
  console.error(`unknown mode ${mode}`);
  process.exitCode = 2;
}
