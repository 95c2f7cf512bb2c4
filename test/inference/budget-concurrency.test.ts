/**
 * Budgets that hold under concurrency (issue 13, item 4): every call reserves its prompt plus its
 * output allowance before it is forwarded, in one synchronous step, and settles on its real usage.
 * Attacked through the real router on loopback with a stub provider that returns big completions,
 * with and without reported usage, in OpenAI and Anthropic formats, streamed and not.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { systemClock } from '../../src/shared/clock.js';
import { BudgetLedger } from '../../src/inference/budget.js';
import { validateInferencePolicy } from '../../src/inference/schema.js';
import { post, SANDBOX_TOKEN, startRouter, until, type RouterHarness } from './harness.js';

/** Tokens per choice the stub generates when the call sets no max_tokens (each "hello" is one o200k token). */
const BIG = 2500;
const CAP = 5000;

interface Big {
  url: string;
  /** Report usage (OpenAI `usage`, Anthropic `usage` / `message_delta.usage`). */
  usage: boolean;
  /** Delay before answering, so concurrent calls overlap. */
  delayMs: number;
  /** Delay between streamed chunks. */
  chunkDelayMs: number;
  received: number;
  close(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
const words = (n: number): string => Array(n).fill('hello').join(' ');

/** A provider that honours max_tokens like a real one and otherwise answers BIG tokens per choice. */
async function startBig(): Promise<Big> {
  const stub: Big = { url: '', usage: true, delayMs: 30, chunkDelayMs: 0, received: 0, close: async () => undefined };
  const server: Server = createServer((req, res) => void handle(req, res).catch(() => res.destroy()));
  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as Record<string, any>;
    stub.received++;
    await sleep(stub.delayMs);
    const anthropic = req.url === '/v1/messages';
    const per = Math.min(BIG, body.max_completion_tokens ?? body.max_tokens ?? BIG);
    const n = anthropic ? 1 : Math.max(Number(body.n ?? 1), Number(body.best_of ?? 1));
    const text = words(per);
    const prompt = 20;
    if (body.stream === true) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const pieces = text.match(/.{1,60}/gs) ?? [];
      if (anthropic) {
        const ev = (type: string, data: unknown): string => `event: ${type}\ndata: ${JSON.stringify({ type, ...(data as object) })}\n\n`;
        res.write(ev('message_start', { message: { id: 'msg_1', type: 'message', role: 'assistant', model: body.model, content: [], ...(stub.usage ? { usage: { input_tokens: prompt, output_tokens: 0 } } : {}) } }));
        res.write(ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }));
        for (const p of pieces) {
          if (!res.write(ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: p } }))) await new Promise((r) => res.once('drain', r));
          if (stub.chunkDelayMs) await sleep(stub.chunkDelayMs);
          if (res.destroyed) return;
        }
        res.write(ev('content_block_stop', { index: 0 }));
        res.write(ev('message_delta', { delta: { stop_reason: 'end_turn' }, ...(stub.usage ? { usage: { output_tokens: per } } : {}) }));
        res.end(ev('message_stop', {}));
        return;
      }
      for (let i = 0; i < n; i++) {
        for (const p of pieces) {
          const chunk = { id: 'c', object: 'chat.completion.chunk', model: body.model, choices: [{ index: i, delta: { content: p }, finish_reason: null }] };
          if (!res.write(`data: ${JSON.stringify(chunk)}\n\n`)) await new Promise((r) => res.once('drain', r));
          if (stub.chunkDelayMs) await sleep(stub.chunkDelayMs);
          if (res.destroyed) return;
        }
      }
      if (stub.usage) res.write(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: prompt, completion_tokens: per * n, total_tokens: prompt + per * n } })}\n\n`);
      res.end('data: [DONE]\n\n');
      return;
    }
    let out: Record<string, unknown>;
    if (anthropic) {
      out = { id: 'msg_1', type: 'message', role: 'assistant', model: body.model, content: [{ type: 'text', text }], stop_reason: 'end_turn', stop_sequence: null };
      if (stub.usage) out.usage = { input_tokens: prompt, output_tokens: per };
    } else {
      const completions = req.url === '/v1/completions';
      out = {
        id: 'c',
        object: completions ? 'text_completion' : 'chat.completion',
        model: body.model,
        choices: Array.from({ length: n }, (_, index) =>
          completions ? { index, text, finish_reason: 'length' } : { index, message: { role: 'assistant', content: text }, finish_reason: 'length' },
        ),
      };
      if (stub.usage) out.usage = { prompt_tokens: prompt, completion_tokens: per * n, total_tokens: prompt + per * n };
    }
    const json = JSON.stringify(out);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(json) });
    res.end(json);
  }
  const sockets = new Set<import('node:net').Socket>();
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  stub.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  stub.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  return stub;
}

let big: Big;
let h: RouterHarness | undefined;
let dir: string;

function policy(budgets: Record<string, unknown>, type: 'openai' | 'anthropic' = 'openai'): Record<string, unknown> {
  return {
    providers: { p: { type, base_url: type === 'openai' ? `${big.url}/v1` : big.url, price: { input_per_mtok: 1, output_per_mtok: 2 } } },
    budgets,
  };
}

async function start(budgets: Record<string, unknown>, type: 'openai' | 'anthropic' = 'openai', budgetStateFile?: string): Promise<RouterHarness> {
  h = await startRouter(policy(budgets, type), budgetStateFile ? { budgetStateFile } : {});
  return h;
}

const chat = (more: Record<string, unknown> = {}) => ({ model: 'm', messages: [{ role: 'user', content: 'write a long story' }], ...more });
const anth = (more: Record<string, unknown> = {}) => ({ model: 'c', max_tokens: 3000, messages: [{ role: 'user', content: 'write a long story' }], ...more });
const ANTH = { 'x-api-key': SANDBOX_TOKEN, 'anthropic-version': '2023-06-01' };

const dones = (): Array<Record<string, any>> => h!.events.filter((e) => e.kind === 'inference.done') as Array<Record<string, any>>;

/** Fire `count` calls at once; wait until every inference.done is out; return statuses and bodies. */
async function burst(count: number, path: string, body: unknown, headers: Record<string, string> = {}) {
  const before = dones().length;
  const results = await Promise.all(Array.from({ length: count }, () => post(`${h!.url}${path}`, body, headers)));
  await until(() => dones().length === before + count, 'every inference.done', 10_000);
  return results;
}

/** The largest reservation one call in these tests can take: ~prompt + the default 4096. */
const ONE_RESERVATION = 4096 + 100;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'nemoclaw-budget-'));
  big = await startBig();
});

afterEach(async () => {
  await h?.close();
  h = undefined;
  await big.close();
  rmSync(dir, { recursive: true, force: true });
});

describe('50 concurrent non-streamed calls against a 5,000-token hourly cap', () => {
  for (const usage of [true, false]) {
    it(`hold the cap when the provider ${usage ? 'reports' : 'does not report'} usage; the refused get 402 budget_exceeded`, async () => {
      big.usage = usage;
      await start({ hour: { tokens: CAP } });
      const results = await burst(50, '/v1/chat/completions', chat());
      const ok = results.filter((r) => r.status === 200);
      const refused = results.filter((r) => r.status === 402);
      expect(ok.length + refused.length).toBe(50);
      expect(ok.length).toBeGreaterThanOrEqual(1);
      for (const r of refused) {
        expect(r.json.error).toMatchObject({ code: 'budget_exceeded' });
        expect(r.json.error.message).toMatch(/hourly cap of 5,?000 tokens/);
      }
      const snap = h!.router.budget();
      expect(snap.hour.in_flight).toEqual({ tokens: 0, usd: 0 });
      // Every answered call generated BIG tokens, and each one was charged for them.
      expect(snap.hour.used.tokens).toBeGreaterThanOrEqual(ok.length * BIG);
      expect(snap.hour.used.tokens).toBeLessThanOrEqual(CAP + ONE_RESERVATION);
      expect(snap.hour.used.tokens).toBeLessThanOrEqual(CAP);
      expect(big.received).toBe(ok.length);
      const answered = dones().filter((e) => e.status === 200);
      for (const e of answered) {
        if (usage) expect(e.usage_estimated).toBeUndefined();
        else expect(e).toMatchObject({ usage_estimated: true, completion_tokens: BIG });
      }
      console.log(`[budget] 50 concurrent non-streamed, usage ${usage ? 'reported' : 'absent'}: ${ok.length} answered, ${refused.length} refused, ledger ${snap.hour.used.tokens} / cap ${CAP}`);
    });
  }

  it('let many small calls through (max_tokens 200 reserves ~220 each) and still hold the cap', async () => {
    big.usage = false;
    await start({ hour: { tokens: CAP } });
    const results = await burst(50, '/v1/chat/completions', chat({ max_tokens: 200 }));
    const ok = results.filter((r) => r.status === 200).length;
    const used = h!.router.budget().hour.used.tokens;
    expect(ok).toBeGreaterThan(15);
    expect(ok).toBeLessThan(50);
    expect(used).toBeLessThanOrEqual(CAP);
    expect(used).toBeGreaterThanOrEqual(ok * 200);
    console.log(`[budget] 50 concurrent, max_tokens 200, no usage: ${ok} answered, ledger ${used} / cap ${CAP}`);
  });

  it('hold the cap in Anthropic format too, with and without usage', async () => {
    for (const usage of [true, false]) {
      big.usage = usage;
      await start({ hour: { tokens: CAP } }, 'anthropic');
      const results = await burst(30, '/v1/messages', anth(), ANTH);
      const ok = results.filter((r) => r.status === 200);
      const refused = results.filter((r) => r.status === 402);
      expect(ok.length + refused.length).toBe(30);
      for (const r of refused) expect(r.json).toMatchObject({ type: 'error', error: { type: 'billing_error' } });
      const used = h!.router.budget().hour.used.tokens;
      expect(used).toBeGreaterThanOrEqual(ok.length * BIG);
      expect(used).toBeLessThanOrEqual(CAP);
      if (!usage) expect(dones().find((e) => e.status === 200)).toMatchObject({ usage_estimated: true, completion_tokens: BIG });
      console.log(`[budget] 30 concurrent Anthropic messages (max_tokens 3000), usage ${usage ? 'reported' : 'absent'}: ${ok.length} answered, ledger ${used} / cap ${CAP}`);
      await h!.close();
      h = undefined;
    }
  });

  it('charge an OpenAI caller routed to an Anthropic provider that reports no usage by estimate (translation fills in no free zero)', async () => {
    big.usage = false;
    await start({ hour: { tokens: 100_000 } }, 'anthropic');
    const res = await post(`${h!.url}/v1/chat/completions`, chat({ max_tokens: 1000 }));
    expect(res.status).toBe(200);
    const streamed = await post(`${h!.url}/v1/chat/completions`, chat({ max_tokens: 1000, stream: true }));
    expect(streamed.status).toBe(200);
    await until(() => dones().length === 2, 'two calls');
    for (const e of dones()) expect(e).toMatchObject({ usage_estimated: true, translated: 'openai->anthropic' });
    expect(dones()[0]!.completion_tokens).toBe(1000);
    expect(dones()[1]!.completion_tokens).toBeGreaterThanOrEqual(1000);
    expect(h!.router.budget().hour.used.tokens).toBeGreaterThanOrEqual(2000);
  });
});

describe('n choices', () => {
  it('reserves and charges n=8 eight times, with and without reported usage', async () => {
    for (const usage of [true, false]) {
      big.usage = usage;
      await start({ hour: { tokens: CAP } });
      const res = await post(`${h!.url}/v1/chat/completions`, chat({ max_tokens: 100, n: 8 }));
      expect(res.status).toBe(200);
      expect(res.json.choices).toHaveLength(8);
      await until(() => dones().length === 1, 'done');
      const used = h!.router.budget().hour.used.tokens;
      expect(used).toBeGreaterThanOrEqual(800);
      expect(used).toBeLessThan(900);
      expect(dones()[0]).toMatchObject(usage ? { completion_tokens: 800, tokens_reported: true } : { usage_estimated: true });
      expect(dones()[0]!.completion_tokens).toBeGreaterThanOrEqual(800);

      // 8 × 1,000 does not fit the 5,000 cap: refused before it reaches the provider.
      const received = big.received;
      const tooMany = await post(`${h!.url}/v1/chat/completions`, chat({ max_tokens: 1000, n: 8 }));
      expect(tooMany.status).toBe(402);
      expect(tooMany.json.error.code).toBe('budget_exceeded');
      expect(tooMany.json.error.message).toContain('max_tokens 1,000 × n 8');
      expect(big.received).toBe(received);
      await h!.close();
      h = undefined;
    }
  });

  it('counts best_of on text completions', async () => {
    big.usage = false;
    await start({ hour: { tokens: CAP } });
    const refused = await post(`${h!.url}/v1/completions`, { model: 'm', prompt: 'once upon a time', max_tokens: 1000, n: 1, best_of: 6 });
    expect(refused.status).toBe(402);
    expect(refused.json.error.message).toContain('best_of 6');
    const ok = await post(`${h!.url}/v1/completions`, { model: 'm', prompt: 'once upon a time', max_tokens: 300, n: 3 });
    expect(ok.status).toBe(200);
    await until(() => dones().length === 2, 'done');
    expect(dones()[1]).toMatchObject({ usage_estimated: true });
    expect(h!.router.budget().hour.used.tokens).toBeGreaterThanOrEqual(900);
  });
});

describe('streaming', () => {
  for (const [format, usage] of [['openai', true], ['openai', false], ['anthropic', true], ['anthropic', false]] as const) {
    it(`20 concurrent ${format} streams (usage ${usage ? 'reported' : 'absent'}) overshoot the cap by at most one delta; the rest are refused`, async () => {
      big.chunkDelayMs = 1;
      big.usage = usage;
      await start({ hour: { tokens: CAP } }, format);
      const results =
        format === 'openai'
          ? await burst(20, '/v1/chat/completions', chat({ stream: true }))
          : await burst(20, '/v1/messages', anth({ stream: true, max_tokens: 4096 }), ANTH);
      const streamed = results.filter((r) => r.status === 200);
      const refused = results.filter((r) => r.status === 402);
      expect(streamed.length + refused.length).toBe(20);
      expect(refused.length).toBeGreaterThan(0);
      for (const r of refused) expect(r.text).toContain(format === 'openai' ? 'budget_exceeded' : 'billing_error');
      const snap = h!.router.budget();
      expect(snap.hour.in_flight.tokens).toBe(0);
      // One 60-character delta is ~15 tokens by the running estimate.
      expect(snap.hour.used.tokens).toBeLessThanOrEqual(CAP + 20);
      expect(snap.hour.used.tokens).toBeLessThanOrEqual(CAP + ONE_RESERVATION);
      expect(snap.hour.used.tokens).toBeGreaterThanOrEqual(BIG);
      if (!usage) expect(dones().find((e) => e.status === 200)).toMatchObject({ usage_estimated: true });
      console.log(`[budget] 20 concurrent ${format} streams, usage ${usage ? 'reported' : 'absent'}: ${streamed.length} streamed, ${refused.length} refused, ledger ${snap.hour.used.tokens} / cap ${CAP}`);
    });
  }

  it('a stream holds its reservation while it runs, so a non-streamed call cannot take the same tokens', async () => {
    big.chunkDelayMs = 5;
    await start({ hour: { tokens: CAP } });
    const stream = post(`${h!.url}/v1/chat/completions`, chat({ stream: true, max_tokens: 2000 }));
    await until(() => h!.router.budget().hour.in_flight.tokens > 0, 'the stream reserved');
    expect(h!.router.budget().hour.in_flight.tokens).toBeGreaterThanOrEqual(2000);
    // 2,000 held by the stream + ~3,020 for this call > 5,000.
    const blocked = await post(`${h!.url}/v1/chat/completions`, chat({ max_tokens: 3000 }));
    expect(blocked.status).toBe(402);
    expect(blocked.json.error.message).toContain('reserves');
    expect((await stream).status).toBe(200);
    await until(() => dones().length === 2, 'done');
    expect(h!.router.budget().hour.in_flight.tokens).toBe(0);
    expect(h!.router.budget().hour.used.tokens).toBeGreaterThanOrEqual(2000);
  });
});

describe('releasing reservations', () => {
  it('a client abort releases the reservation (streamed and not) and charges only what was used', async () => {
    big.delayMs = 400;
    await start({ hour: { tokens: CAP } });
    const ac = new AbortController();
    const pending = fetch(`${h!.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${SANDBOX_TOKEN}` },
      body: JSON.stringify(chat()),
      signal: ac.signal,
    }).catch((err: Error) => err);
    await until(() => big.received === 1, 'the call reached the provider');
    expect(h!.router.budget().hour.in_flight.tokens).toBeGreaterThan(4096);
    ac.abort();
    expect(await pending).toBeInstanceOf(Error);
    await until(() => dones().length === 1, 'done');
    expect(dones()[0]).toMatchObject({ status: 499, outcome: 'client_abort' });
    const after = h!.router.budget().hour;
    expect(after.in_flight).toEqual({ tokens: 0, usd: 0 });
    expect(after.used.tokens).toBeLessThan(50);

    big.delayMs = 0;
    big.chunkDelayMs = 20;
    const ac2 = new AbortController();
    const res = await fetch(`${h!.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${SANDBOX_TOKEN}` },
      body: JSON.stringify(chat({ stream: true })),
      signal: ac2.signal,
    });
    const reader = res.body!.getReader();
    await reader.read();
    ac2.abort();
    await until(() => dones().length === 2, 'done', 5000);
    expect(dones()[1]).toMatchObject({ outcome: 'client_abort' });
    expect(h!.router.budget().hour.in_flight).toEqual({ tokens: 0, usd: 0 });
    expect(h!.router.budget().hour.used.tokens).toBeLessThan(500);
  });

  it('an unreachable provider or an error answer releases the reservation and charges nothing', async () => {
    await start({ hour: { tokens: CAP } });
    await big.close();
    const down = await post(`${h!.url}/v1/chat/completions`, chat());
    expect(down.status).toBe(502);
    await until(() => dones().length === 1, 'done');
    expect(h!.router.budget().hour).toMatchObject({ used: { tokens: 0, usd: 0 }, in_flight: { tokens: 0, usd: 0 } });
    big = await startBig();
  });

  it('a restart between reserve and settle does not charge the reservation (only settled usage is persisted)', () => {
    const file = join(dir, 'budget.json');
    const caps = validateInferencePolicy({ budgets: { hour: { tokens: CAP } } }).budgets;
    const ledger = new BudgetLedger(systemClock, caps, file);
    const settled = ledger.reserve({ prompt: { tokens: 10, usd: 0 }, output: { tokens: 100, usd: 0 }, explicit: true, cuttable: false, describe: 'max_tokens 100' });
    const crashed = ledger.reserve({ prompt: { tokens: 10, usd: 0 }, output: { tokens: 4096, usd: 0 }, explicit: false, cuttable: false, describe: '4,096' });
    expect(settled.call && crashed.call).toBeTruthy();
    settled.call!.set(60, 0);
    crashed.call!.set(500, 0);
    expect(ledger.snapshot().hour).toMatchObject({ used: { tokens: 0 }, in_flight: { tokens: 110 + 4106 }, remaining: { tokens: CAP - 110 - 4106 } });
    ledger.commit(settled.call!);
    expect(ledger.snapshot().hour).toMatchObject({ used: { tokens: 60 }, in_flight: { tokens: 4106 } });
    ledger.commit(settled.call!); // idempotent
    ledger.flush();
    // The process dies here with `crashed` unsettled.
    const restarted = new BudgetLedger(systemClock, caps, file);
    expect(restarted.snapshot().hour).toMatchObject({ used: { tokens: 60 }, in_flight: { tokens: 0 }, remaining: { tokens: CAP - 60 } });
  });

  it('reserve is one synchronous step: of 50 back-to-back reservations only those that fit pass', () => {
    const caps = validateInferencePolicy({ budgets: { hour: { tokens: CAP } } }).budgets;
    const ledger = new BudgetLedger(systemClock, caps);
    const r = Array.from({ length: 50 }, () => ledger.reserve({ prompt: { tokens: 20, usd: 0 }, output: { tokens: 4096, usd: 0 }, explicit: false, cuttable: false, describe: '4,096' }));
    expect(r.filter((x) => x.call).length).toBe(1);
    expect(r.filter((x) => x.breach?.scope === 'hour').length).toBe(49);
  });
});

describe('the per-request cap and max_tokens', () => {
  it('refuses max_tokens above the per-request cap with a clear message, upfront, in both formats', async () => {
    await start({ request: { tokens: 1000 } });
    const res = await post(`${h!.url}/v1/chat/completions`, chat({ max_tokens: 2000 }));
    expect(res.status).toBe(402);
    expect(res.json.error.code).toBe('budget_exceeded');
    expect(res.json.error.message).toContain('max_tokens 2,000 output) alone exceeds the per-request cap of 1,000 tokens');
    const streamed = await post(`${h!.url}/v1/chat/completions`, chat({ max_tokens: 2000, stream: true }));
    expect(streamed.status).toBe(402);
    // Prompt + max_tokens over the cap, non-streamed: refused too (it could not be cut).
    const over = await post(`${h!.url}/v1/chat/completions`, chat({ max_tokens: 995 }));
    expect(over.status).toBe(402);
    expect(over.json.error.message).toContain('per-request cap of 1,000 tokens');
    expect(big.received).toBe(0);
    // No max_tokens: the default reservation shrinks to the per-request cap (the caller asked for nothing).
    const fits = await post(`${h!.url}/v1/chat/completions`, chat({ max_tokens: 500 }));
    expect(fits.status).toBe(200);
    await h!.close();

    await start({ request: { tokens: 1000 } }, 'anthropic');
    const a = await post(`${h!.url}/v1/messages`, anth({ max_tokens: 4000 }), ANTH);
    expect(a.status).toBe(402);
    expect(a.json).toMatchObject({ type: 'error', error: { type: 'billing_error' } });
    expect(a.json.error.message).toContain('alone exceeds the per-request cap');
  });

  it('uses inference.budgets.default_output_reservation when the call sets no max_tokens, and validates it', async () => {
    expect(() => validateInferencePolicy({ budgets: { default_output_reservation: 0 } })).toThrow(/inference\.budgets\.default_output_reservation/);
    expect(validateInferencePolicy({}).budgets.default_output_reservation).toBe(4096);
    await start({ hour: { tokens: CAP }, default_output_reservation: 1000 });
    big.usage = false;
    const results = await burst(20, '/v1/chat/completions', chat());
    const ok = results.filter((r) => r.status === 200).length;
    // ~1,020 reserved each: four fit under 5,000 at once.
    expect(ok).toBeGreaterThanOrEqual(4);
    const refused = results.find((r) => r.status === 402)!;
    expect(refused.json.error.message).toContain('default_output_reservation');
  });
});
