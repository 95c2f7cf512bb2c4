/**
 * The drill script and its stub model, on the host: a small forward proxy stands in for the egress
 * proxy + router (allow one host, refuse others, hand inference.local to the stub, stop at a token
 * budget with 402). The real sandbox run is test/e2e/drill.test.ts.
 */
import { spawn } from 'node:child_process';
import { createServer, request, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startStubModel, type StubModelServer } from '../../src/agent/stub-model.js';

const DRILL = fileURLToPath(new URL('../../blueprints/drill/drill.mjs', import.meta.url));

let stub: StubModelServer;
let proxy: Server;
let proxyPort: number;
const seen: string[] = [];
let tokensUsed = 0;
const BUDGET = 5000;

function forwardToStub(method: string, path: string, headers: Record<string, string>, body: Buffer): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const r = request({ host: '127.0.0.1', port: stub.port, method, path, headers }, (res) => {
      let text = '';
      res.on('data', (d) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
    });
    r.on('error', reject);
    r.end(body);
  });
}

async function inference(method: string, path: string, headers: Record<string, string>, body: Buffer): Promise<{ status: number; body: string }> {
  if (headers.authorization !== 'Bearer drill-token') return { status: 401, body: '{"error":{"message":"bad token"}}' };
  const text = body.toString();
  if (text.includes('AKIA')) return { status: 403, body: '{"error":{"message":"blocked: secret detected"}}' };
  if (tokensUsed >= BUDGET) return { status: 402, body: '{"error":{"message":"token budget exceeded"}}' };
  const res = await forwardToStub(method, path, { 'content-type': 'application/json' }, body);
  tokensUsed += JSON.parse(res.body).usage.total_tokens;
  return res;
}

beforeAll(async () => {
  stub = await startStubModel();
  proxy = createServer((req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', async () => {
      const url = new URL(req.url ?? '/');
      seen.push(`${req.method} ${url.host}`);
      const r = await inference(req.method ?? 'GET', url.pathname, req.headers as Record<string, string>, Buffer.concat(chunks));
      res.writeHead(r.status, { 'content-type': 'application/json' });
      res.end(r.body);
    });
  });
  // Node's env proxy tunnels every request with CONNECT, plain http:// too.
  proxy.on('connect', (req, socket) => {
    const target = req.url ?? '';
    seen.push(`CONNECT ${target}`);
    if (target === 'inference.local:80') {
      socket.write('HTTP/1.1 200 Connection established\r\n\r\n');
      const inner = createServer((ireq, ires) => {
        const chunks: Buffer[] = [];
        ireq.on('data', (c: Buffer) => chunks.push(c));
        ireq.on('end', async () => {
          const r = await inference(ireq.method ?? 'GET', ireq.url ?? '/', ireq.headers as Record<string, string>, Buffer.concat(chunks));
          ires.writeHead(r.status, { 'content-type': 'application/json' });
          ires.end(r.body);
        });
      });
      inner.emit('connection', socket);
      return;
    }
    if (target === 'allowed.drill.test:80') {
      socket.write('HTTP/1.1 200 Connection established\r\n\r\n');
      const inner = createServer((_q, s) => s.end('pong'));
      inner.emit('connection', socket);
      return;
    }
    socket.end('HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\n\r\n{"error":"policy_denied"}');
  });
  await new Promise<void>((r) => proxy.listen(0, '127.0.0.1', () => r()));
  proxyPort = (proxy.address() as AddressInfo).port;
});

afterAll(async () => {
  await stub.close();
  proxy.closeAllConnections();
  await new Promise((r) => proxy.close(r));
});

function runDrill(extraEnv: Record<string, string>): Promise<{ code: number | null; lines: any[]; out: string }> {
  return new Promise((resolve) => {
    const proxyUrl = `http://127.0.0.1:${proxyPort}`;
    const child = spawn(process.execPath, [DRILL], {
      env: {
        PATH: process.env.PATH ?? '',
        HTTP_PROXY: proxyUrl,
        HTTPS_PROXY: proxyUrl,
        NO_PROXY: 'localhost,127.0.0.1,::1',
        NODE_USE_ENV_PROXY: '1',
        NEMOCLAW_INFERENCE_TOKEN: 'drill-token',
        DRILL_ALLOWED_URL: 'http://allowed.drill.test/ping',
        DRILL_UNKNOWN_URL: 'https://unknown.drill.test/',
        ...extraEnv,
      },
      stdio: ['ignore', 'pipe', 'pipe'],
      // Never let the drill's "write outside the sandbox" steps touch this machine: run as nobody.
      ...(process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {}),
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('exit', (code) => {
      const lines = out.split('\n').filter((l) => l.startsWith('{"drill"')).map((l) => JSON.parse(l));
      resolve({ code, lines, out });
    });
  });
}

describe('drill agent', () => {
  it('walks every guarded action in order and stops burning tokens at the 402', async () => {
    const { code, lines, out } = await runDrill({ DRILL_BURN_TOKENS: '1000' });
    expect(code, out).toBe(0);
    const by = (step: string) => lines.filter((l) => l.drill === step);
    expect(lines.map((l) => l.drill)).toEqual([
      'allowed-host', 'unknown-host', 'dns-lookup', 'write-outside-sandbox', 'write-usr', 'read-hidden', 'read-hidden',
      'send-pii', 'send-plain', 'send-pii-local-down', 'send-secret', 'burn-tokens', 'done',
    ]);
    expect(by('allowed-host')[0].outcome).toBe('HTTP 200');
    expect(by('unknown-host')[0].outcome).toMatch(/failed|HTTP 403/);
    expect(by('write-outside-sandbox')[0]).toMatchObject({ outcome: 'EACCES', detail: '/etc/drill-was-here' });
    expect(by('read-hidden')[0].outcome).toBe('EACCES');
    expect(by('read-hidden').map((l) => l.detail)).toEqual(['/etc/shadow', '/root/.ssh/id_rsa']);
    expect(by('send-pii')[0].outcome).toBe('HTTP 200');
    expect(by('send-pii')[0].detail).toMatch(/^drill stub reply #1/);
    expect(by('send-secret')[0].outcome).toBe('HTTP 403');
    expect(by('burn-tokens')[0].outcome).toBe('stopped by the budget (HTTP 402)');
    expect(seen).toContain('CONNECT inference.local:80');
    expect(seen).toContain('CONNECT unknown.drill.test:443');
    expect(out).toContain('drill[1] burn-tokens: stopped by the budget (HTTP 402)');
  }, 60_000);
});

describe('drill stub model', () => {
  it('answers chat completions with usage, streaming and not, and lists its models', async () => {
    const plain = await fetch(`${stub.baseUrl}/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'drill-stub', max_tokens: 300, messages: [{ role: 'user', content: 'hello' }] }),
    }).then((r) => r.json());
    expect(plain.choices[0].message.content).toMatch(/I read "hello"/);
    expect(plain.usage.completion_tokens).toBe(300);
    const stream = await fetch(`${stub.baseUrl}/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'drill-stub', stream: true, messages: [{ role: 'user', content: 'stream me' }] }),
    }).then((r) => r.text());
    const events = stream.split('\n\n').filter((e) => e.startsWith('data: ') && !e.includes('[DONE]')).map((e) => JSON.parse(e.slice(6)));
    expect(events.map((e) => e.choices[0].delta.content ?? '').join('')).toMatch(/I read "stream me"/);
    expect(events.at(-1).usage.completion_tokens).toBe(32);
    expect(stream.trim().endsWith('data: [DONE]')).toBe(true);
    const models = await fetch(`${stub.baseUrl}/models`).then((r) => r.json());
    expect(models.data.map((m: { id: string }) => m.id)).toEqual(['drill-stub']);
    const bad = await fetch(`${stub.baseUrl}/chat/completions`, { method: 'POST', body: '{nope' });
    expect(bad.status).toBe(400);
  });
});
