/**
 * `kill -9` of the supervisor in the middle of a long streaming inference call, for an OpenAI
 * chat-completions caller and an Anthropic messages caller, each reaching inference.local the way the
 * sandbox does (through the egress proxy socket). Nothing can be sent after a kill -9 (the proxy
 * dies with the supervisor), so the caller must see a stream that failed, never a truncated success:
 * no `[DONE]` / `message_stop`, and an unterminated chunked body that its HTTP client reports as an
 * error. After `up` again the token budget is charged for what was streamed before the kill (the
 * router secures a call's usage on disk before relaying it), not zero and not the reservation.
 */
import { request as httpRequest } from 'node:http';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SECURE_LEASE_TOKENS } from '../../src/inference/budget.js';
import { makeTempHome, runCli, startDaemonSupervisor, type DaemonSupervisor, type TempHome } from '../helpers/supervisor.js';
import { expectAuditVerifies, processAlive, supervisorPid, waitUntil } from './helpers.js';
import { DELTA_TEXT, DELTA_TOKENS, startSlowStream, type SlowStream } from './slow-stream.js';

let home: TempHome;
let d: DaemonSupervisor;
let stub: SlowStream;

const HOUR_CAP = 1_000_000;

beforeAll(async () => {
  stub = await startSlowStream({ intervalMs: 40 });
  home = await makeTempHome('nct-rk9s-');
  const policyText = `version: 1
approvals:
  mode: deny
network_policies: {}
inference:
  providers:
    slow: { type: openai, base_url: "${stub.openaiBaseUrl}", locality: local, timeout_ms: 60000 }
    claude: { type: anthropic, base_url: "${stub.anthropicBaseUrl}", locality: local, timeout_ms: 60000 }
  routes:
    - { name: anthropic, when: { api: [anthropic.messages] }, provider: claude }
    - { name: default, provider: slow }
  budgets:
    hour: { tokens: ${HOUR_CAP} }
`;
  d = await startDaemonSupervisor({ home: home.dir, policyText });
}, 60_000);

afterAll(async () => {
  await d?.stop();
  await home?.cleanup();
  await stub?.close();
});

interface StreamOutcome {
  status: number;
  text: string;
  /** The body ended with its terminating chunk (a clean end of the HTTP message). */
  complete: boolean;
  /** What the HTTP client reported, if anything. */
  error: string | undefined;
}

/** A streaming call through the proxy socket; `onData` sees the text so far. */
function streamCall(anthropic: boolean, onData: (text: string) => void, model = 'slow-model'): Promise<StreamOutcome> {
  const token = readFileSync(join(d.paths.dir, 'inference-token'), 'utf8').trim();
  const path = anthropic ? '/v1/messages' : '/v1/chat/completions';
  const body = JSON.stringify({
    model,
    ...(anthropic ? { max_tokens: 8000 } : {}),
    stream: true,
    messages: [{ role: 'user', content: 'tell me a very long story' }],
  });
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      {
        socketPath: d.paths.proxySocket,
        method: 'POST',
        path: `http://inference.local${path}`,
        headers: {
          host: 'inference.local',
          'content-type': 'application/json',
          'content-length': String(Buffer.byteLength(body)),
          authorization: `Bearer ${token}`,
          ...(anthropic ? { 'anthropic-version': '2023-06-01' } : {}),
        },
      },
      (res) => {
        let text = '';
        let error: string | undefined;
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          text += c;
          onData(text);
        });
        res.on('error', (e) => (error ??= `${(e as NodeJS.ErrnoException).code ?? ''} ${e.message}`));
        res.on('close', () => resolve({ status: res.statusCode ?? 0, text, complete: res.complete, error }));
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

const deltasIn = (text: string): number => text.split(JSON.stringify(DELTA_TEXT)).length - 1;

async function hourUsed(): Promise<number> {
  return (await d.client.budget()).hour.used.tokens;
}

describe('kill -9 of the supervisor during a long streaming inference call', () => {
  for (const anthropic of [false, true]) {
    const wire = anthropic ? 'Anthropic messages' : 'OpenAI chat completions';
    it(`${wire}: the caller sees a failed stream, and after \`up\` the budget is charged for what was streamed`, async () => {
      const usedBefore = await hourUsed();
      const call = stub.sent.length;
      let seen = 0;
      const outcome = streamCall(anthropic, (t) => (seen = deltasIn(t)));
      // Well into the stream: 30 deltas are 600 tokens, past the lease the charge is secured ahead by.
      await waitUntil(() => seen >= 30, 'the caller to receive 30 deltas', 20_000);
      const pid = supervisorPid(d.paths);
      process.kill(pid, 'SIGKILL');
      const r = await outcome;
      await waitUntil(() => !processAlive(pid), 'the supervisor to die');
      await waitUntil(() => stub.cutOff > call, 'the provider to see its caller go');
      const received = deltasIn(r.text);
      const sent = stub.sent[call]!;

      // The caller can tell: a 200 stream that never finished, reported as an error by its client.
      expect(r.status).toBe(200);
      expect(received).toBeGreaterThanOrEqual(30);
      expect(r.text, 'no clean end of the stream').not.toMatch(anthropic ? /message_stop/ : /\[DONE\]|"finish_reason":"stop"/);
      expect(r.complete, 'the chunked body has no terminating chunk').toBe(false);
      expect(r.error, 'the HTTP client reports the cut').toBeDefined();

      const up = await runCli(['up'], { home: home.dir });
      expect(up.code, up.stderr).toBe(0);
      const charged = (await hourUsed()) - usedBefore;
      const route = (await d.client.events({ kinds: ['inference.route'], n: 100 })).filter((e) => e.api === (anthropic ? 'anthropic.messages' : 'openai.chat')).at(-1);
      const prompt = Number(route?.estimated_prompt_tokens);
      expect(prompt).toBeGreaterThan(0);
      // At least the real tokens the caller received; at most the router's running estimate (~4
      // characters a token) of what the provider sent, plus the lease.
      const estimate = Math.ceil(DELTA_TEXT.length / 4);
      console.log(`${wire}: prompt ${prompt}, deltas received ${received} (${received * DELTA_TOKENS} tokens), sent ${sent}, charged ${charged} tokens (lease ${SECURE_LEASE_TOKENS})`);
      expect(charged).toBeGreaterThanOrEqual(prompt + received * DELTA_TOKENS);
      expect(charged).toBeLessThanOrEqual(prompt + estimate * sent + SECURE_LEASE_TOKENS);
      // Not the reservation (8,000 or the 4,096 default output tokens).
      expect(charged).toBeLessThan(4096);
    }, 60_000);
  }

  it('afterwards a whole stream is served and settles on its real count; the audit chain verifies', async () => {
    for (const anthropic of [false, true]) {
      const usedBefore = await hourUsed();
      const r = await streamCall(anthropic, () => undefined, 'short');
      expect(r.complete).toBe(true);
      expect(r.error).toBeUndefined();
      expect(r.text).toMatch(anthropic ? /message_stop/ : /\[DONE\]/);
      expect(deltasIn(r.text)).toBe(3);
      // Settled: the tokenizer's count of the 3 deltas plus the prompt, not the secured lease.
      await waitUntil(async () => (await d.client.budget()).hour.in_flight.tokens === 0, 'the call to settle');
      const charged = (await hourUsed()) - usedBefore;
      expect(charged).toBeGreaterThanOrEqual(3 * DELTA_TOKENS);
      expect(charged).toBeLessThan(3 * DELTA_TOKENS + 50);
    }
    await expectAuditVerifies(home.dir);
  });
});
