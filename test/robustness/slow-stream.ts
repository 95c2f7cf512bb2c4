/**
 * A model provider on loopback that streams slowly and for a long time: one DELTA_TEXT
 * (DELTA_TOKENS real tokens) every `intervalMs`, `deltas` of them (3 for the model `short`), in the OpenAI chat format (`/v1/chat/completions`) or the
 * Anthropic messages format (`/v1/messages`), with no usage until the end (so the router counts
 * what it relays). It counts the deltas it wrote per call, so a test knows what went out before a
 * kill.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';

export interface SlowStream {
  /** For an `openai` provider (…/v1) and an `anthropic` provider (the root). */
  openaiBaseUrl: string;
  anthropicBaseUrl: string;
  /** Deltas written so far, per call, in arrival order. */
  sent: number[];
  /** Calls whose connection closed before their stream ended. */
  cutOff: number;
  close(): Promise<void>;
}

/** One delta: 20 tokens of o200k (the router's running estimate, ~4 characters a token, says 30). */
export const DELTA_TEXT = 'hello '.repeat(20);
export const DELTA_TOKENS = 20;

export async function startSlowStream(opts: { intervalMs?: number; deltas?: number } = {}): Promise<SlowStream> {
  const intervalMs = opts.intervalMs ?? 40;
  const deltas = opts.deltas ?? 5000;
  const sockets = new Set<Socket>();
  const stub: SlowStream = { openaiBaseUrl: '', anthropicBaseUrl: '', sent: [], cutOff: 0, close: async () => undefined };
  const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const parts: Buffer[] = [];
    for await (const c of req) parts.push(c as Buffer);
    const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as { model?: string };
    const call = stub.sent.push(0) - 1;
    const anthropic = req.url === '/v1/messages';
    let gone = false;
    res.on('close', () => {
      if (!res.writableFinished) {
        gone = true;
        stub.cutOff++;
      }
    });
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    const ev = (type: string, data: object): string => `event: ${type}\ndata: ${JSON.stringify({ type, ...data })}\n\n`;
    if (anthropic) {
      res.write(ev('message_start', { message: { id: 'msg_slow', type: 'message', role: 'assistant', model: body.model, content: [] } }));
      res.write(ev('content_block_start', { index: 0, content_block: { type: 'text', text: '' } }));
    }
    const count = body.model === 'short' ? 3 : deltas;
    for (let i = 0; i < count; i++) {
      await sleep(intervalMs);
      if (gone) return;
      res.write(
        anthropic
          ? ev('content_block_delta', { index: 0, delta: { type: 'text_delta', text: DELTA_TEXT } })
          : `data: ${JSON.stringify({ id: 'chatcmpl-slow', object: 'chat.completion.chunk', created: 1, model: body.model, choices: [{ index: 0, delta: { content: DELTA_TEXT }, finish_reason: null }] })}\n\n`,
      );
      stub.sent[call] = i + 1;
    }
    if (anthropic) {
      res.write(ev('content_block_stop', { index: 0 }));
      res.write(ev('message_delta', { delta: { stop_reason: 'end_turn' } }));
      res.end(ev('message_stop', {}));
    } else {
      res.write(`data: ${JSON.stringify({ id: 'chatcmpl-slow', object: 'chat.completion.chunk', created: 1, model: body.model, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] })}\n\n`);
      res.end('data: [DONE]\n\n');
    }
  }

  const server: Server = createServer((req, res) => void handle(req, res).catch(() => res.destroy()));
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const port = (server.address() as AddressInfo).port;
  stub.openaiBaseUrl = `http://127.0.0.1:${port}/v1`;
  stub.anthropicBaseUrl = `http://127.0.0.1:${port}`;
  stub.close = () =>
    new Promise<void>((r) => {
      for (const s of sockets) s.destroy();
      server.close(() => r());
    });
  return stub;
}
