/**
 * The drill's model: a tiny OpenAI-compatible server on loopback that the supervisor starts for
 * the drill blueprint, so every pane shows real inference traffic with no API key and no model.
 * It answers `POST /v1/chat/completions` (streaming and not, usage in the final chunk) and
 * `GET /v1/models`. It reports `max_tokens` completion tokens (capped), so a drill that asks for
 * many tokens burns its budget quickly and deterministically.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface StubModelServer {
  /** `http://127.0.0.1:<port>/v1` */
  baseUrl: string;
  port: number;
  requests(): number;
  close(): Promise<void>;
}

export interface StubModelOptions {
  models?: string[];
  /** Upper bound of reported completion tokens per call. */
  maxCompletionTokens?: number;
  host?: string;
  port?: number;
  /** How its replies name it (default `drill stub`; the hybrid drill's cloud stand-in says `drill cloud stub`). */
  label?: string;
}

const MAX_BODY = 4 * 1024 * 1024;

function lastUserText(body: unknown): string {
  const messages = (body as { messages?: Array<{ role?: string; content?: unknown }> } | undefined)?.messages;
  if (!Array.isArray(messages)) return '';
  for (let i = messages.length - 1; i >= 0; i--) {
    const m = messages[i];
    if (m?.role !== 'user') continue;
    if (typeof m.content === 'string') return m.content;
    if (Array.isArray(m.content)) {
      return m.content.map((p: { text?: unknown }) => (typeof p?.text === 'string' ? p.text : '')).join(' ');
    }
  }
  return '';
}

function promptChars(body: unknown): number {
  const messages = (body as { messages?: unknown[] } | undefined)?.messages;
  return Array.isArray(messages) ? JSON.stringify(messages).length : 0;
}

export async function startStubModel(options: StubModelOptions = {}): Promise<StubModelServer> {
  const models = options.models ?? ['drill-stub'];
  const cap = options.maxCompletionTokens ?? 4096;
  const label = options.label ?? 'drill stub';
  let count = 0;

  const json = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' });
    res.end(JSON.stringify(body));
  };

  const handle = (req: IncomingMessage, res: ServerResponse, raw: string): void => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method === 'GET' && path === '/v1/models') {
      json(res, 200, { object: 'list', data: models.map((id) => ({ id, object: 'model', owned_by: 'nemoclaw-drill' })) });
      return;
    }
    if (req.method !== 'POST' || path !== '/v1/chat/completions') {
      json(res, 404, { error: { message: `the drill stub model serves POST /v1/chat/completions and GET /v1/models, not ${req.method} ${path}`, type: 'not_found' } });
      return;
    }
    let body: { model?: string; stream?: boolean; max_tokens?: number; max_completion_tokens?: number } & Record<string, unknown>;
    try {
      body = JSON.parse(raw) as typeof body;
    } catch {
      json(res, 400, { error: { message: 'request body is not JSON', type: 'invalid_request_error' } });
      return;
    }
    count++;
    const model = typeof body.model === 'string' ? body.model : models[0]!;
    const wanted = Number(body.max_completion_tokens ?? body.max_tokens ?? 32);
    const completion = Math.max(1, Math.min(cap, Number.isFinite(wanted) ? Math.floor(wanted) : 32));
    const prompt = Math.max(1, Math.ceil(promptChars(body) / 4));
    const text = `${label} reply #${count}: I read "${lastUserText(body).slice(0, 60)}"`;
    const usage = { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
    const id = `chatcmpl-drill-${count}`;
    const created = Math.floor(Date.now() / 1000);
    if (body.stream === true) {
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      const chunk = (delta: Record<string, unknown>, finish: string | null, extra: Record<string, unknown> = {}) =>
        `data: ${JSON.stringify({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finish }], ...extra })}\n\n`;
      res.write(chunk({ role: 'assistant', content: '' }, null));
      for (let i = 0; i < text.length; i += 16) res.write(chunk({ content: text.slice(i, i + 16) }, null));
      res.write(chunk({}, 'stop', { usage }));
      res.end('data: [DONE]\n\n');
      return;
    }
    json(res, 200, {
      id,
      object: 'chat.completion',
      created,
      model,
      choices: [{ index: 0, message: { role: 'assistant', content: text }, finish_reason: 'stop' }],
      usage,
    });
  };

  const server: Server = createServer((req, res) => {
    let raw = '';
    let size = 0;
    req.setEncoding('utf8');
    req.on('data', (chunk: string) => {
      size += chunk.length;
      if (size > MAX_BODY) {
        json(res, 413, { error: { message: 'request body too large for the drill stub', type: 'invalid_request_error' } });
        req.destroy();
        return;
      }
      raw += chunk;
    });
    req.on('end', () => {
      if (!res.headersSent) handle(req, res, raw);
    });
  });
  server.keepAliveTimeout = 5000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, options.host ?? '127.0.0.1', () => resolve());
  });
  const port = (server.address() as AddressInfo).port;
  return {
    baseUrl: `http://${options.host ?? '127.0.0.1'}:${port}/v1`,
    port,
    requests: () => count,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
