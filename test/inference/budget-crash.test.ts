/**
 * The budget charge of a call in flight survives a crash (kill -9): the router secures the prompt
 * before the call goes upstream and the usage before streamed tokens reach the caller, so the state
 * file alone (what a killed supervisor leaves) charges at least what was streamed, at most the lease
 * more, and never the reservation. Simulated here by loading a second ledger from the file while the
 * first is still in the middle of the call.
 */
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { BudgetLedger, SECURE_LEASE_TOKENS } from '../../src/inference/budget.js';
import { validateInferencePolicy } from '../../src/inference/schema.js';
import { systemClock } from '../../src/shared/clock.js';
import { SANDBOX_TOKEN, startRouter, until, type RouterHarness } from './harness.js';

let dir: string;
beforeEach(() => {
  dir = mkdtempSync(join(tmpdir(), 'nct-bcrash-'));
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

const caps = validateInferencePolicy({ budgets: { hour: { tokens: 100_000 } } }).budgets;
const stream = { prompt: { tokens: 10, usd: 0 }, output: { tokens: 4096, usd: 0 }, explicit: false, cuttable: true, describe: '4,096' };

/** What a restarted supervisor charges this hour, from the state file alone. */
const chargedAfterCrash = (file: string): number => new BudgetLedger(systemClock, caps, file).snapshot().hour.used.tokens;

describe('the budget ledger across a crash', () => {
  it('charges a secured call its usage (plus at most the lease), not its reservation, and only once', () => {
    const file = join(dir, 'budget.json');
    const ledger = new BudgetLedger(systemClock, caps, file);
    const call = ledger.reserve(stream).call!;
    ledger.secure(call, { tokens: 10, usd: 0 });
    expect(chargedAfterCrash(file)).toBe(10 + SECURE_LEASE_TOKENS);
    // Streaming inside the lease writes nothing; past it, the file moves ahead again.
    call.set(200, 0);
    ledger.secure(call);
    expect(chargedAfterCrash(file)).toBe(10 + SECURE_LEASE_TOKENS);
    call.set(1000, 0);
    ledger.secure(call);
    const charged = chargedAfterCrash(file);
    expect(charged).toBeGreaterThanOrEqual(1000);
    expect(charged).toBeLessThanOrEqual(1000 + SECURE_LEASE_TOKENS);
    // Loading twice (a second crash before anything is written) does not charge it twice.
    expect(chargedAfterCrash(file)).toBe(charged);
    // Settled: the real usage replaces the secured charge once the file is written.
    call.set(900, 0);
    ledger.commit(call);
    ledger.flush();
    expect(chargedAfterCrash(file)).toBe(900);
  });

  it('a final count above the secured charge is written at once (no second of grace lost)', () => {
    const file = join(dir, 'budget.json');
    const ledger = new BudgetLedger(systemClock, caps, file);
    const call = ledger.reserve(stream).call!;
    ledger.secure(call, { tokens: 10, usd: 0 });
    call.set(5000, 0);
    ledger.commit(call); // no flush: the process dies here
    expect(chargedAfterCrash(file)).toBe(5000);
  });

  it('a restarted ledger folds the dead calls in once and keeps serving', () => {
    const file = join(dir, 'budget.json');
    const a = new BudgetLedger(systemClock, caps, file);
    const call = a.reserve(stream).call!;
    call.set(700, 0);
    a.secure(call);
    const b = new BudgetLedger(systemClock, caps, file);
    const used = b.snapshot().hour.used.tokens;
    const next = b.reserve(stream).call!;
    next.set(50, 0);
    b.commit(next);
    b.flush();
    expect(chargedAfterCrash(file)).toBe(used + 50);
  });
});

describe('the router secures streamed usage before relaying it', () => {
  let h: RouterHarness | undefined;
  let upstream: Server | undefined;
  afterEach(async () => {
    await h?.close();
    h = undefined;
    upstream?.closeAllConnections();
    await new Promise<void>((r) => (upstream ? upstream.close(() => r()) : r()));
  });

  it('while a stream is running, the state file already charges what the caller has received', async () => {
    // A provider that streams 40 deltas of 20 tokens, then waits (the "kill" happens while it waits).
    const delta = 'hello '.repeat(20);
    let release: () => void = () => undefined;
    upstream = createServer((req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        for (let i = 0; i < 40; i++) res.write(`data: ${JSON.stringify({ id: 'c', object: 'chat.completion.chunk', choices: [{ index: 0, delta: { content: delta }, finish_reason: null }] })}\n\n`);
        release = () => res.end('data: [DONE]\n\n');
      });
    });
    await new Promise<void>((r) => upstream!.listen(0, '127.0.0.1', r));
    const base = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
    const file = join(dir, 'budget.json');
    h = await startRouter({ providers: { p: { type: 'openai', base_url: base, locality: 'local' } }, budgets: { hour: { tokens: 100_000 } } }, { budgetStateFile: file });
    const res = await fetch(`${h.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${SANDBOX_TOKEN}` },
      body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'go' }] }),
    });
    const reader = res.body!.getReader();
    const dec = new TextDecoder();
    let text = '';
    while ((text.match(/hello/g)?.length ?? 0) < 40 * 20) text += dec.decode((await reader.read()).value, { stream: true });
    // The caller has 800 tokens; the supervisor "dies" now: only the file counts.
    const charged = chargedAfterCrash(file);
    expect(charged).toBeGreaterThanOrEqual(800);
    expect(charged, 'not the 4,096-token reservation').toBeLessThan(40 * 30 + 50 + SECURE_LEASE_TOKENS);
    release();
    while (!(await reader.read()).done);
    await until(() => h!.events.some((e) => e.kind === 'inference.done'), 'inference.done');
    await h.close();
    h = undefined;
    expect(chargedAfterCrash(file), 'settled on the tokenizer count').toBeGreaterThanOrEqual(800);
  });
});
