/**
 * A local stub model provider on loopback that speaks the real wire formats:
 * OpenAI `POST /v1/chat/completions` (streaming and not, tool calls), `/v1/completions`,
 * `/v1/embeddings`, `GET /v1/models`, and Anthropic `POST /v1/messages` (streaming and not).
 * Streams carry usage in the final chunk (OpenAI with `stream_options.include_usage`, Anthropic in
 * `message_delta`). Every request is recorded (method, path, headers, raw body) so tests can assert
 * what reached the "cloud".
 *
 * Reusable by any test or bench:
 *   const stub = await startStubUpstream({ reply: () => ({ text: 'hi' }) });
 *   provider base_url: stub.openaiBaseUrl (…/v1) or stub.url (Anthropic)
 *   stub.requests[0].body, stub.receivedText(), await stub.close()
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

export interface RecordedRequest {
  method: string;
  path: string;
  headers: Record<string, string | string[] | undefined>;
  raw: string;
  body: any;
}

export interface StubToolCall {
  id?: string;
  name: string;
  /** JSON text of the arguments (OpenAI) / input (Anthropic). */
  arguments: string;
}

export interface StubReply {
  text?: string;
  toolCalls?: StubToolCall[];
  /** Override reported usage. */
  usage?: { prompt: number; completion: number };
  /** Answer with this HTTP status and an error body in the endpoint's format. */
  status?: number;
}

export interface StubOptions {
  /** What to answer; default echoes the last user text as `echo: …`. */
  reply?: (req: RecordedRequest) => StubReply;
  /** Characters per streamed delta (text and tool arguments). Default 4, so placeholders split. */
  chunkChars?: number;
  /** Delay between streamed chunks. Default 0. */
  chunkDelayMs?: number;
  /** Delay before the response headers (models thinking). Default 0. */
  firstByteDelayMs?: number;
  /** When set, requests must carry this key (Bearer or x-api-key) or get 401. */
  requireKey?: string;
  /** Model ids for GET /v1/models. */
  models?: string[];
  /** Keep at most this many recorded requests (default unbounded; benches set a small number). */
  maxRecorded?: number;
}

export interface StubUpstream {
  /** `http://127.0.0.1:<port>` (Anthropic base URL). */
  url: string;
  /** `http://127.0.0.1:<port>/v1` (OpenAI-compatible base URL). */
  openaiBaseUrl: string;
  port: number;
  requests: RecordedRequest[];
  options: StubOptions;
  /** Every request body concatenated (for "this value never reached the stub" assertions). */
  receivedText(): string;
  close(): Promise<void>;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Rough prompt token count the stub reports: one per 4 characters of the body. */
function estimateTokens(text: string): number {
  return Math.max(1, Math.ceil(text.length / 4));
}

function split(text: string, size: number): string[] {
  const out: string[] = [];
  for (let i = 0; i < text.length; i += size) out.push(text.slice(i, i + size));
  return out;
}

function textOfContent(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((p: any) => (typeof p?.text === 'string' ? p.text : typeof p?.content === 'string' ? p.content : ''))
      .join('');
  }
  return '';
}

/** The last user message text of an OpenAI or Anthropic request. */
export function lastUserText(body: any): string {
  const msgs: any[] = Array.isArray(body?.messages) ? body.messages : [];
  for (let i = msgs.length - 1; i >= 0; i--) if (msgs[i]?.role === 'user') return textOfContent(msgs[i].content);
  if (typeof body?.prompt === 'string') return body.prompt;
  return '';
}

function defaultReply(req: RecordedRequest): StubReply {
  return { text: `echo: ${lastUserText(req.body)}` };
}

export async function startStubUpstream(options: StubOptions = {}): Promise<StubUpstream> {
  const requests: RecordedRequest[] = [];
  const sockets = new Set<import('node:net').Socket>();

  const server: Server = createServer((req, res) => {
    handle(req, res).catch((err) => {
      if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ error: { message: String(err), type: 'server_error' } }));
    });
  });
  server.on('connection', (s) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    let body: any;
    try {
      body = raw ? JSON.parse(raw) : undefined;
    } catch {
      body = undefined;
    }
    const path = (req.url ?? '/').split('?')[0]!;
    const rec: RecordedRequest = { method: req.method ?? 'GET', path, headers: req.headers, raw, body };
    requests.push(rec);
    if (options.maxRecorded !== undefined && requests.length > options.maxRecorded) requests.shift();
    const anthropic = path === '/v1/messages';

    if (options.requireKey !== undefined) {
      const auth = req.headers['authorization'];
      const presented = typeof auth === 'string' ? auth.replace(/^Bearer\s+/i, '') : req.headers['x-api-key'];
      if (presented !== options.requireKey) return sendError(res, anthropic, 401, 'invalid api key');
    }
    if (options.firstByteDelayMs) await sleep(options.firstByteDelayMs);

    if (req.method === 'GET' && path === '/v1/models') {
      const ids = options.models ?? ['stub-model'];
      return sendJson(res, 200, { object: 'list', data: ids.map((id) => ({ id, object: 'model', created: 0, owned_by: 'stub' })) });
    }
    if (req.method !== 'POST' || body === undefined) return sendError(res, anthropic, 400, 'stub expects a JSON POST');

    const reply = (options.reply ?? defaultReply)(rec);
    if (reply.status && reply.status >= 300) return sendError(res, anthropic, reply.status, `stub error ${reply.status}`);
    const promptTokens = reply.usage?.prompt ?? estimateTokens(raw);
    const text = reply.text ?? '';
    const toolCalls = reply.toolCalls ?? [];
    const completionTokens = reply.usage?.completion ?? estimateTokens(text + toolCalls.map((t) => t.arguments).join(''));
    const model = body.model ?? 'stub-model';
    const size = options.chunkChars ?? 4;

    if (path === '/v1/embeddings') {
      const inputs = Array.isArray(body.input) ? body.input : [body.input];
      return sendJson(res, 200, {
        object: 'list',
        data: inputs.map((_: unknown, index: number) => ({ object: 'embedding', index, embedding: [0.1, 0.2, 0.3] })),
        model,
        usage: { prompt_tokens: promptTokens, total_tokens: promptTokens },
      });
    }
    if (path === '/v1/chat/completions') {
      if (body.stream !== true) {
        return sendJson(res, 200, {
          id: 'chatcmpl-stub',
          object: 'chat.completion',
          created: 1,
          model,
          choices: [
            {
              index: 0,
              message: {
                role: 'assistant',
                content: text.length > 0 ? text : null,
                ...(toolCalls.length > 0
                  ? { tool_calls: toolCalls.map((t, i) => ({ id: t.id ?? `call_${i}`, type: 'function', function: { name: t.name, arguments: t.arguments } })) }
                  : {}),
              },
              finish_reason: toolCalls.length > 0 ? 'tool_calls' : 'stop',
            },
          ],
          usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
        });
      }
      startSse(res);
      const base = { id: 'chatcmpl-stub', object: 'chat.completion.chunk', created: 1, model };
      const send = async (choices: unknown[], extra: Record<string, unknown> = {}): Promise<boolean> => {
        if (res.destroyed) return false;
        res.write(`data: ${JSON.stringify({ ...base, choices, ...extra })}\n\n`);
        if (options.chunkDelayMs) await sleep(options.chunkDelayMs);
        return !res.destroyed;
      };
      await send([{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }]);
      for (const part of split(text, size)) if (!(await send([{ index: 0, delta: { content: part }, finish_reason: null }]))) return;
      for (const [i, t] of toolCalls.entries()) {
        await send([{ index: 0, delta: { tool_calls: [{ index: i, id: t.id ?? `call_${i}`, type: 'function', function: { name: t.name, arguments: '' } }] }, finish_reason: null }]);
        for (const part of split(t.arguments, size)) {
          if (!(await send([{ index: 0, delta: { tool_calls: [{ index: i, function: { arguments: part } }] }, finish_reason: null }]))) return;
        }
      }
      await send([{ index: 0, delta: {}, finish_reason: toolCalls.length > 0 ? 'tool_calls' : 'stop' }]);
      if (body.stream_options?.include_usage) {
        await send([], { usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens } });
      }
      res.end('data: [DONE]\n\n');
      return;
    }
    if (path === '/v1/completions') {
      if (body.stream !== true) {
        return sendJson(res, 200, {
          id: 'cmpl-stub',
          object: 'text_completion',
          created: 1,
          model,
          choices: [{ index: 0, text, finish_reason: 'stop', logprobs: null }],
          usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens },
        });
      }
      startSse(res);
      const base = { id: 'cmpl-stub', object: 'text_completion', created: 1, model };
      for (const part of split(text, size)) {
        if (res.destroyed) return;
        res.write(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, text: part, finish_reason: null }] })}\n\n`);
        if (options.chunkDelayMs) await sleep(options.chunkDelayMs);
      }
      res.write(`data: ${JSON.stringify({ ...base, choices: [{ index: 0, text: '', finish_reason: 'stop' }] })}\n\n`);
      if (body.stream_options?.include_usage) {
        res.write(`data: ${JSON.stringify({ ...base, choices: [], usage: { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens } })}\n\n`);
      }
      res.end('data: [DONE]\n\n');
      return;
    }
    if (anthropic) {
      const content = [
        ...(text.length > 0 ? [{ type: 'text', text }] : []),
        ...toolCalls.map((t, i) => ({ type: 'tool_use', id: t.id ?? `toolu_${i}`, name: t.name, input: JSON.parse(t.arguments) })),
      ];
      const stopReason = toolCalls.length > 0 ? 'tool_use' : 'end_turn';
      if (body.stream !== true) {
        return sendJson(res, 200, {
          id: 'msg_stub',
          type: 'message',
          role: 'assistant',
          model,
          content,
          stop_reason: stopReason,
          stop_sequence: null,
          usage: { input_tokens: promptTokens, output_tokens: completionTokens },
        });
      }
      startSse(res);
      const ev = async (name: string, data: Record<string, unknown>): Promise<boolean> => {
        if (res.destroyed) return false;
        res.write(`event: ${name}\ndata: ${JSON.stringify({ type: name, ...data })}\n\n`);
        if (options.chunkDelayMs) await sleep(options.chunkDelayMs);
        return !res.destroyed;
      };
      await ev('message_start', {
        message: { id: 'msg_stub', type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: promptTokens, output_tokens: 1 } },
      });
      let index = 0;
      if (text.length > 0) {
        await ev('content_block_start', { index, content_block: { type: 'text', text: '' } });
        await ev('ping', {});
        for (const part of split(text, size)) if (!(await ev('content_block_delta', { index, delta: { type: 'text_delta', text: part } }))) return;
        await ev('content_block_stop', { index });
        index++;
      }
      for (const [i, t] of toolCalls.entries()) {
        await ev('content_block_start', { index, content_block: { type: 'tool_use', id: t.id ?? `toolu_${i}`, name: t.name, input: {} } });
        for (const part of split(t.arguments, size)) {
          if (!(await ev('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: part } }))) return;
        }
        await ev('content_block_stop', { index });
        index++;
      }
      await ev('message_delta', { delta: { stop_reason: stopReason, stop_sequence: null }, usage: { output_tokens: completionTokens } });
      await ev('message_stop', {});
      res.end();
      return;
    }
    sendError(res, false, 404, `stub does not serve ${path}`);
  }

  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as AddressInfo).port;
  const url = `http://127.0.0.1:${port}`;
  return {
    url,
    openaiBaseUrl: `${url}/v1`,
    port,
    requests,
    options,
    receivedText: () => requests.map((r) => r.raw).join('\n'),
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

function startSse(res: ServerResponse): void {
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
  res.flushHeaders();
}

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

function sendError(res: ServerResponse, anthropic: boolean, status: number, message: string): void {
  sendJson(
    res,
    status,
    anthropic
      ? { type: 'error', error: { type: status === 401 ? 'authentication_error' : 'api_error', message } }
      : { error: { message, type: status === 401 ? 'invalid_request_error' : 'server_error', param: null, code: null } },
  );
}

/** Parse an SSE body (as a client would) into `{event, data}` records. */
export function parseSse(text: string): Array<{ event: string | undefined; data: string }> {
  const out: Array<{ event: string | undefined; data: string }> = [];
  for (const block of text.split(/\n\n/)) {
    if (!block.trim()) continue;
    let event: string | undefined;
    const data: string[] = [];
    for (const line of block.split('\n')) {
      if (line.startsWith('event:')) event = line.slice(6).trim();
      else if (line.startsWith('data:')) data.push(line.slice(5).replace(/^ /, ''));
    }
    out.push({ event, data: data.join('\n') });
  }
  return out;
}

/** Reassemble what a client sees from an OpenAI chat stream: text and tool-call arguments. */
export function assembleOpenAiStream(text: string): { content: string; toolArgs: string[]; errors: any[]; usage: any; done: boolean } {
  let content = '';
  const toolArgs: string[] = [];
  const errors: any[] = [];
  let usage: any;
  let done = false;
  for (const { data } of parseSse(text)) {
    if (data === '[DONE]') {
      done = true;
      continue;
    }
    const chunk = JSON.parse(data);
    if (chunk.error) errors.push(chunk.error);
    if (chunk.usage) usage = chunk.usage;
    for (const c of chunk.choices ?? []) {
      if (typeof c.delta?.content === 'string') content += c.delta.content;
      if (typeof c.text === 'string') content += c.text;
      for (const tc of c.delta?.tool_calls ?? []) toolArgs[tc.index] = (toolArgs[tc.index] ?? '') + (tc.function?.arguments ?? '');
    }
  }
  return { content, toolArgs, errors, usage, done };
}

/** Reassemble what a client sees from an Anthropic messages stream. */
export function assembleAnthropicStream(text: string): { content: string; toolInputs: string[]; errors: any[]; usage: any; stopped: boolean } {
  let content = '';
  const blocks = new Map<number, { type: string; json: string }>();
  const errors: any[] = [];
  let usage: any = {};
  let stopped = false;
  for (const { event, data } of parseSse(text)) {
    const d = JSON.parse(data);
    if (event === 'error') errors.push(d.error);
    if (d.type === 'message_start') usage = { ...usage, ...d.message.usage };
    if (d.type === 'content_block_start') blocks.set(d.index, { type: d.content_block.type, json: '' });
    if (d.type === 'content_block_delta') {
      if (d.delta.type === 'text_delta') content += d.delta.text;
      if (d.delta.type === 'input_json_delta') blocks.get(d.index)!.json += d.delta.partial_json;
    }
    if (d.type === 'message_delta') usage = { ...usage, ...d.usage };
    if (d.type === 'message_stop') stopped = true;
  }
  const toolInputs = [...blocks.values()].filter((b) => b.type === 'tool_use').map((b) => b.json);
  return { content, toolInputs, errors, usage, stopped };
}
