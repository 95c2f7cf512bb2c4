/** Binds a router to loopback TCP for tests and collects its events. */
import { expect } from 'vitest';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { EventInput } from '../../src/audit/events.js';
import { FileAndEnvCredentials } from '../../src/inference/credentials.js';
import { createRouter, type Router, type RouterOptions } from '../../src/inference/router.js';

export const SANDBOX_TOKEN = 'nmc-test-sandbox-token-0123456789abcdef';

export interface RouterHarness {
  url: string;
  router: Router;
  events: EventInput[];
  transient: EventInput[];
  close(): Promise<void>;
}

export async function startRouter(policy: unknown, extra: Partial<RouterOptions> = {}, env: NodeJS.ProcessEnv = {}): Promise<RouterHarness> {
  const events: EventInput[] = [];
  const transient: EventInput[] = [];
  const router = createRouter({
    policy,
    credentials: new FileAndEnvCredentials(undefined, env),
    sandboxToken: SANDBOX_TOKEN,
    emit: (e) => void events.push(structuredClone(e)),
    publishTransient: (e) => void transient.push(e),
    ...extra,
  });
  const server: Server = createServer((req, res) => router.handle(req, res));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    router,
    events,
    transient,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
      await router.close();
    },
  };
}

export async function post(url: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; headers: Headers; text: string; json: any }> {
  const res = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${SANDBOX_TOKEN}`, ...headers },
    body: typeof body === 'string' ? body : JSON.stringify(body),
  });
  const text = await res.text();
  let json: any;
  try {
    json = JSON.parse(text);
  } catch {
    json = undefined;
  }
  return { status: res.status, headers: res.headers, text, json };
}

/** Wait until `pred` holds (events are emitted right after the response ends). */
export async function until(pred: () => boolean, what: string, ms = 2000): Promise<void> {
  const end = Date.now() + ms;
  while (!pred()) {
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 5));
  }
}

/**
 * A policy refusal as the router answers it by default (`inference.blocked_reply: message`): an
 * assistant reply carrying the reason with `x-nemoclaw-blocked: <code>` for chat and messages calls;
 * HTTP 400 naming the code for text completions and embeddings (they have no assistant message).
 */
export function expectPolicyRefusal(res: { status: number; headers: Headers; text: string; json: any }, code: string, hasMessage = true): void {
  expect(res.headers.get('x-nemoclaw-blocked'), res.text).toBe(code);
  if (hasMessage) {
    expect(res.status, res.text).toBe(200);
    expect(res.text).toContain('[nemoclaw-tui privacy router]');
  } else {
    expect(res.status, res.text).toBe(400);
    expect(res.json?.error?.code).toBe(code);
  }
}
