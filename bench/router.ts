/**
 * Privacy router benchmark (run: `npx tsc -p . && node bench/router.ts`).
 *
 * 1. Added TTFT and total time of a 32 KB OpenClaw-shaped streaming chat call (22 KB system prompt,
 *    history, tools) through the router vs. directly to the stub upstream, p50/p95, with a cold
 *    classification cache (every text new) and a warm one (only the last user message new).
 * 2. Detector throughput (MB/s): PII detectors alone, and the full classifier (secretlint + PII + tokens);
 *    cold latency of one new 32 KB prompt with every detector, and the cached lookup.
 * 3. 200 concurrent streams through the router vs. direct.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { loadavg } from 'node:os';
import { Agent, request } from 'undici';
import { Classifier, createRouter, detectPii } from '../dist/src/inference/index.js';
import { startStubUpstream } from '../test/stubs/upstream.ts';

const TOKEN = 'nmc-bench-token-0123456789abcdefghij';
const ITER = Number(process.env.BENCH_ITER ?? 150);

function pct(values: number[], p: number): number {
  const s = [...values].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))]!;
}

const PROSE =
  'You are OpenClaw, an autonomous coding agent. Follow the workspace rules, use tools carefully, ' +
  'never print secrets, prefer small verified steps, and explain what you changed. ';
const CODE = 'export function add(a: number, b: number): number {\n  return a + b; // keep it simple\n}\n';

function systemPrompt(nonce: string): string {
  let s = `# session ${nonce}\n`;
  while (s.length < 22 * 1024) s += PROSE + CODE;
  return s.slice(0, 22 * 1024);
}

function openclawRequest(nonce: string, turn: number, model = 'nemotron'): Record<string, unknown> {
  const history: Array<Record<string, unknown>> = [];
  let size = 0;
  for (let i = 0; size < 9 * 1024; i++) {
    const u = `Please refactor module ${i} and run the tests (turn ${i}).`;
    const a = `I refactored module ${i}; tests pass. ${CODE}`;
    history.push({ role: 'user', content: u }, { role: 'assistant', content: a });
    size += u.length + a.length;
  }
  return {
    model,
    stream: true,
    messages: [
      { role: 'system', content: systemPrompt(nonce) },
      ...history,
      { role: 'user', content: `New request number ${turn}: summarise the repository layout.` },
    ],
    tools: [{ type: 'function', function: { name: 'read_file', description: 'read a file', parameters: { type: 'object', properties: { path: { type: 'string' } } } } }],
  };
}

const agent = new Agent({ keepAliveTimeout: 30_000, connections: 512 });

async function streamCall(url: string, body: string): Promise<{ ttft: number; total: number }> {
  const t0 = performance.now();
  const res = await request(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
    body,
    dispatcher: agent,
  });
  let ttft = -1;
  for await (const chunk of res.body) {
    if (ttft < 0 && (chunk as Buffer).includes('"content":"')) ttft = performance.now() - t0;
  }
  if (res.statusCode !== 200) throw new Error(`status ${res.statusCode}`);
  return { ttft, total: performance.now() - t0 };
}

async function main(): Promise<void> {
  const reply = 'The repository has src/, test/, bench/ and docs/. '.repeat(12);
  const stub = await startStubUpstream({ reply: () => ({ text: reply }), chunkChars: 12, maxRecorded: 2 });
  const router = createRouter({
    policy: {
      // The stub speaks both APIs: `claude-*` models go to it as an Anthropic provider (format translation).
      providers: { cloud: { type: 'openai', base_url: stub.openaiBaseUrl }, claude: { type: 'anthropic', base_url: stub.url } },
      routes: [
        { name: 'secrets', when: { entities: ['secret'] }, block: true },
        { when: { entities: ['email', 'phone'] }, redact_then: 'cloud' },
        { when: { model: ['claude-*'] }, provider: 'claude' },
        { provider: 'cloud' },
      ],
      budgets: { day: { tokens: 10_000_000_000 } },
    },
    credentials: { keyFor: () => undefined },
    sandboxToken: TOKEN,
  });
  const server = createServer((req, res) => router.handle(req, res));
  server.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const routerUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/chat/completions`;
  // Floor: a bare pass-through proxy (read the body, one keep-alive request upstream, pipe the
  // stream back) — what any second HTTP hop costs on this machine, before any router work.
  const bareAgent = new Agent({ keepAliveTimeout: 30_000, connections: 512 });
  const bare = createServer((req, res) => {
    void (async () => {
      const chunks: Buffer[] = [];
      for await (const c of req) chunks.push(c as Buffer);
      const up = await request(`${stub.openaiBaseUrl}/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: Buffer.concat(chunks), dispatcher: bareAgent });
      res.writeHead(up.statusCode, { 'content-type': String(up.headers['content-type'] ?? 'text/event-stream') });
      res.flushHeaders();
      for await (const c of up.body) res.write(c);
      res.end();
    })();
  });
  bare.keepAliveTimeout = 30_000;
  await new Promise<void>((r) => bare.listen(0, '127.0.0.1', r));
  const bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}/v1/chat/completions`;
  const directUrl = `${stub.openaiBaseUrl}/chat/completions`;

  const sample = JSON.stringify(openclawRequest('warm', 0));
  const load = (): string => loadavg().map((l) => l.toFixed(2)).join(' ');
  console.log(`request body: ${(sample.length / 1024).toFixed(1)} KB, streaming, ${ITER} calls per series; load average at start ${load()}\n`);

  // Warm up both paths (JIT, keep-alive connections).
  for (let i = 0; i < 20; i++) {
    await streamCall(directUrl, sample);
    await streamCall(routerUrl, JSON.stringify(openclawRequest('warm', i)));
    await streamCall(bareUrl, sample);
  }

  const series: Record<string, { ttft: number[]; total: number[] }> = {
    direct: { ttft: [], total: [] },
    'bare pass-through proxy (floor)': { ttft: [], total: [] },
    cold: { ttft: [], total: [] },
    warm: { ttft: [], total: [] },
    'warm, translated to Anthropic': { ttft: [], total: [] },
  };
  let overheadHeader: number[] = [];
  for (let i = 0; i < ITER; i++) {
    // Interleave so drift hits every series alike.
    const d = await streamCall(directUrl, JSON.stringify(openclawRequest(`direct-${i}`, i)));
    series.direct!.ttft.push(d.ttft);
    series.direct!.total.push(d.total);
    const b = await streamCall(bareUrl, JSON.stringify(openclawRequest(`bare-${i}`, i)));
    series['bare pass-through proxy (floor)']!.ttft.push(b.ttft);
    series['bare pass-through proxy (floor)']!.total.push(b.total);
    const c = await streamCall(routerUrl, JSON.stringify(openclawRequest(`cold-${i}-${Math.random()}`, i)));
    series.cold!.ttft.push(c.ttft);
    series.cold!.total.push(c.total);
    const w = await streamCall(routerUrl, JSON.stringify(openclawRequest('warm', 1000 + i)));
    series.warm!.ttft.push(w.ttft);
    series.warm!.total.push(w.total);
    const x = await streamCall(routerUrl, JSON.stringify(openclawRequest('warm', 3000 + i, 'claude-bench')));
    series['warm, translated to Anthropic']!.ttft.push(x.ttft);
    series['warm, translated to Anthropic']!.total.push(x.total);
  }
  // Router's own overhead header for warm calls.
  overheadHeader = [];
  for (let i = 0; i < 50; i++) {
    const res = await request(routerUrl, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${TOKEN}` },
      body: JSON.stringify(openclawRequest('warm', 5000 + i)),
      dispatcher: agent,
    });
    overheadHeader.push(Number(res.headers['x-nemoclaw-router-overhead-ms']));
    await res.body.dump();
  }

  const base = series.direct!;
  console.log('32 KB streaming chat call              p50 ms   p95 ms   added p50   added p95');
  for (const name of ['direct', 'bare pass-through proxy (floor)', 'cold', 'warm', 'warm, translated to Anthropic'] as const) {
    const s = series[name]!;
    for (const metric of ['ttft', 'total'] as const) {
      const p50 = pct(s[metric], 50);
      const p95 = pct(s[metric], 95);
      const add50 = name === 'direct' ? '' : (p50 - pct(base[metric], 50)).toFixed(2);
      const add95 = name === 'direct' ? '' : (p95 - pct(base[metric], 95)).toFixed(2);
      console.log(`${`${name} ${metric}`.padEnd(38)} ${p50.toFixed(2).padStart(6)}  ${p95.toFixed(2).padStart(7)}  ${add50.padStart(10)}  ${add95.padStart(10)}`);
    }
  }
  console.log(`router overhead header (warm, pre-upstream): p50 ${pct(overheadHeader, 50).toFixed(3)} ms, p95 ${pct(overheadHeader, 95).toFixed(3)} ms`);
  console.log(`ratio router/direct total p50: cold ${(pct(series.cold!.total, 50) / pct(base.total, 50)).toFixed(2)}x, warm ${(pct(series.warm!.total, 50) / pct(base.total, 50)).toFixed(2)}x\n`);

  // Detector throughput on fresh text (no cache).
  const mixed = (PROSE + CODE + 'contact ops@example.com or +1 415 555 0132 from 10.1.2.3; ').repeat(1);
  const MB = 4;
  const chunks: string[] = [];
  for (let i = 0; chunks.join('').length < MB * 1024 * 1024; i++) {
    let c = `${i} `;
    while (c.length < 32 * 1024) c += mixed;
    chunks.push(c);
  }
  const totalBytes = chunks.reduce((a, c) => a + Buffer.byteLength(c), 0);
  let t = performance.now();
  let found = 0;
  for (const c of chunks) found += detectPii(c).length;
  const piiSec = (performance.now() - t) / 1000;
  const classifier = new Classifier({ cacheEntries: 1 });
  t = performance.now();
  for (const c of chunks) found += (await classifier.classify(c)).detections.length;
  const fullSec = (performance.now() - t) / 1000;
  // Baseline: one plain regex pass (emails only) over the same text.
  t = performance.now();
  let plain = 0;
  for (const c of chunks) plain += (c.match(/[\w.+-]+@[\w-]+\.[\w.]+/g) ?? []).length;
  const plainSec = (performance.now() - t) / 1000;
  const mb = totalBytes / 1024 / 1024;
  console.log('detector throughput (32 KB texts)       MB/s   vs one email regex');
  console.log(`single email regex (baseline)       ${(mb / plainSec).toFixed(1).padStart(9)}   1.00x`);
  console.log(`PII detectors (all kinds)           ${(mb / piiSec).toFixed(1).padStart(9)}   ${(plainSec / piiSec).toFixed(2)}x`);
  console.log(`full classifier (secretlint+PII+tok)${(mb / fullSec).toFixed(1).padStart(9)}   ${(plainSec / fullSec).toFixed(2)}x`);
  console.log(`(${found + plain} detections)`);
  // Cold latency of one new 32 KB prompt (what a turn with a new system prompt costs) with every
  // detector on — gitleaks + secretlint + PII + names/addresses + normalisation + decoding — and the
  // cached answer for a text already seen. A plain prompt and a PII-dense one (a name, an address, a
  // phone, an e-mail and an IP in every ~400 characters: the worst case for the entity detectors).
  const dense = 'I spoke with Jane Miller at 12 Main Street, Springfield; call +1 415 555 0132 or mail jane@acme-corp.io from 10.1.2.3. ';
  for (const [label, unit] of [['32 KB prompt', PROSE + CODE], ['32 KB PII-dense', PROSE + CODE + dense]] as const) {
    const base = (() => { let c = ''; while (c.length < 32 * 1024) c += unit; return c.slice(0, 32 * 1024); })();
    const cold = new Classifier({ cacheEntries: 8 });
    await cold.classify(`${base} warm-up`);
    const pii: number[] = [];
    const full: number[] = [];
    const cached: number[] = [];
    for (let i = 0; i < 120; i++) {
      const text = `${i} ${base}`;
      let t0 = performance.now();
      detectPii(text);
      pii.push(performance.now() - t0);
      t0 = performance.now();
      await cold.classify(`${text}!`);
      full.push(performance.now() - t0);
      t0 = performance.now();
      cold.lookup(`${text}!`);
      cached.push(performance.now() - t0);
    }
    console.log(
      `${label.padEnd(16)} cold, sync detectors p50 ${pct(pii, 50).toFixed(2)} ms p95 ${pct(pii, 95).toFixed(2)} | full classifier p50 ${pct(full, 50).toFixed(2)} ms p95 ${pct(full, 95).toFixed(2)} | cached p50 ${pct(cached, 50).toFixed(3)} ms`,
    );
  }
  console.log('');

  // 200 concurrent streams.
  stub.options.chunkDelayMs = 5;
  stub.options.chunkChars = 24;
  const N = 200;
  const conc = async (url: string, tag: string): Promise<{ wall: number; p50: number; p95: number }> => {
    const t0 = performance.now();
    const results = await Promise.all(Array.from({ length: N }, (_, i) => streamCall(url, JSON.stringify(openclawRequest(tag, i)))));
    const totals = results.map((r) => r.total);
    return { wall: performance.now() - t0, p50: pct(totals, 50), p95: pct(totals, 95) };
  };
  await conc(routerUrl, 'conc-warm');
  const cd = await conc(directUrl, 'conc-direct');
  const cr = await conc(routerUrl, 'conc-warm');
  console.log(`${N} concurrent streams (25 chunks, 5 ms apart)   wall ms   p50 ms   p95 ms`);
  console.log(`direct                                      ${cd.wall.toFixed(0).padStart(7)}  ${cd.p50.toFixed(0).padStart(7)}  ${cd.p95.toFixed(0).padStart(7)}`);
  console.log(`router                                      ${cr.wall.toFixed(0).padStart(7)}  ${cr.p50.toFixed(0).padStart(7)}  ${cr.p95.toFixed(0).padStart(7)}`);
  console.log(`ratio router/direct wall ${(cr.wall / cd.wall).toFixed(2)}x, p95 ${(cr.p95 / cd.p95).toFixed(2)}x`);
  console.log(`classifier cache: ${JSON.stringify(router.stats().cache)}`);
  console.log(`load average at end: ${load()}`);

  server.closeAllConnections();
  server.close();
  bare.closeAllConnections();
  bare.close();
  await bareAgent.close();
  await router.close();
  await agent.close();
  await stub.close();
}

await main();
