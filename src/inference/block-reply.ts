/**
 * How a policy refusal (a secret, uninspectable content, a failed redaction) is answered, so that an
 * agent shows it as what it is. Agents read a 401/403 from their model endpoint as an auth failure:
 * OpenClaw says "authentication failed, re-authenticate the provider" and disables the provider for
 * about a minute, so the user never learns that a secret was blocked and the next turn fails too.
 *
 * - `message` (default): an ordinary assistant reply carrying the refusal text, in the caller's wire
 *   format, streamed when the caller streams (OpenAI `finish_reason: "stop"`, Anthropic
 *   `stop_reason: "end_turn"`), with `x-nemoclaw-blocked: <code>` so scripts can tell. The agent
 *   shows the reason in its chat and the next turn works.
 * - `error`: HTTP 400 `invalid_request_error` in the caller's error shape, `error.code` (OpenAI) and
 *   `x-nemoclaw-blocked` naming the reason: agents report a rejected request, not an auth problem.
 *
 * Text completions and embeddings have no assistant message: they always get the `error` form.
 */
import { randomBytes } from 'node:crypto';
import type { ServerResponse } from 'node:http';
import { errorBody, type ApiKind, type WireFamily } from './wire.js';

export type BlockedReplyMode = 'message' | 'error';

export interface BlockedReply {
  api: ApiKind;
  family: WireFamily;
  stream: boolean;
  /** The model the caller asked for (echoed, as a provider would). */
  model: string;
  /** Machine-readable reason (`blocked_by_policy`, `uninspectable_content`, `redaction_failed`). */
  code: string;
  /** What the agent (and its user) should read. */
  message: string;
  /** The caller asked for usage in the stream (OpenAI `stream_options.include_usage`). */
  includeUsage?: boolean;
  extraHeaders?: Record<string, string>;
}

/** The HTTP status a block is answered with in this mode (for the inference.done event). */
export function blockedStatus(mode: BlockedReplyMode, api: ApiKind): number {
  return mode === 'message' && hasAssistantMessage(api) ? 200 : 400;
}

function hasAssistantMessage(api: ApiKind): boolean {
  return api === 'openai.chat' || api === 'anthropic.messages';
}

const sse = (event: string | undefined, data: unknown): string => `${event ? `event: ${event}\n` : ''}data: ${JSON.stringify(data)}\n\n`;

export function sendBlockedReply(res: ServerResponse, mode: BlockedReplyMode, b: BlockedReply): void {
  const headers = { 'x-nemoclaw-blocked': b.code, ...b.extraHeaders };
  if (mode === 'error' || !hasAssistantMessage(b.api)) {
    const body = JSON.stringify(errorBody(b.family, 'invalid_request', b.message, b.code));
    res.writeHead(400, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
    res.end(body);
    return;
  }
  const created = Math.floor(Date.now() / 1000);
  const id = randomBytes(12).toString('hex');
  if (b.api === 'openai.chat') {
    if (!b.stream) {
      const body = JSON.stringify({
        id: `chatcmpl-blocked-${id}`,
        object: 'chat.completion',
        created,
        model: b.model,
        choices: [{ index: 0, message: { role: 'assistant', content: b.message, refusal: null }, finish_reason: 'stop', logprobs: null }],
        usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 },
      });
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
      res.end(body);
      return;
    }
    const base = { id: `chatcmpl-blocked-${id}`, object: 'chat.completion.chunk', created, model: b.model };
    let out = sse(undefined, { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] });
    out += sse(undefined, { ...base, choices: [{ index: 0, delta: { content: b.message }, finish_reason: null }] });
    out += sse(undefined, { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] });
    if (b.includeUsage) out += sse(undefined, { ...base, choices: [], usage: { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 } });
    out += 'data: [DONE]\n\n';
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...headers });
    res.end(out);
    return;
  }
  const message = { id: `msg_blocked_${id}`, type: 'message', role: 'assistant', model: b.model, content: [] as unknown[], stop_reason: null as string | null, stop_sequence: null, usage: { input_tokens: 0, output_tokens: 0 } };
  if (!b.stream) {
    const body = JSON.stringify({ ...message, content: [{ type: 'text', text: b.message }], stop_reason: 'end_turn' });
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
    res.end(body);
    return;
  }
  let out = sse('message_start', { type: 'message_start', message });
  out += sse('content_block_start', { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } });
  out += sse('content_block_delta', { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: b.message } });
  out += sse('content_block_stop', { type: 'content_block_stop', index: 0 });
  out += sse('message_delta', { type: 'message_delta', delta: { stop_reason: 'end_turn', stop_sequence: null }, usage: { output_tokens: 0 } });
  out += sse('message_stop', { type: 'message_stop' });
  res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache', ...headers });
  res.end(out);
}
