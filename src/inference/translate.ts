/**
 * Format translation between the OpenAI chat-completions API and the Anthropic messages API, so a
 * route may send a call to a provider that speaks the other one: requests (messages, system prompt,
 * images, tools, tool calls and results, stop sequences), whole responses, streamed responses
 * (text, tool-call arguments, usage, stop reason) and errors.
 *
 * The router translates the upstream response into the caller's format FIRST and then runs its usual
 * relay over it, so placeholder restoration, token counting and budget cuts work unchanged.
 * Fields with no counterpart on the other side (`n`, `logprobs`, `response_format`, `top_k`,
 * `cache_control`, thinking blocks in requests) are dropped.
 */
import type { EventSourceMessage } from 'eventsource-parser';
import type { ErrorKind, WireFamily } from './wire.js';

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Anthropic requires max_tokens; OpenAI callers often omit it. */
export const DEFAULT_ANTHROPIC_MAX_TOKENS = 4096;

// ---------------------------------------------------------------------------------------------
// Requests.

function textOfOpenAiContent(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) {
    return content
      .map((p) => (isObj(p) && (p.type === 'text' || p.type === 'input_text') && typeof p.text === 'string' ? p.text : ''))
      .join('');
  }
  return '';
}

function imageFromUrl(url: string): Obj {
  const m = /^data:([^;,]+);base64,(.*)$/s.exec(url);
  if (m) return { type: 'image', source: { type: 'base64', media_type: m[1], data: m[2] } };
  return { type: 'image', source: { type: 'url', url } };
}

function openAiPartsToAnthropic(content: unknown): Obj[] {
  if (typeof content === 'string') return content.length > 0 ? [{ type: 'text', text: content }] : [];
  if (!Array.isArray(content)) return [];
  const out: Obj[] = [];
  for (const part of content) {
    if (!isObj(part)) continue;
    if ((part.type === 'text' || part.type === 'input_text') && typeof part.text === 'string') {
      if (part.text.length > 0) out.push({ type: 'text', text: part.text });
    } else if (part.type === 'image_url') {
      const ref = part.image_url;
      const url = typeof ref === 'string' ? ref : isObj(ref) && typeof ref.url === 'string' ? ref.url : undefined;
      if (url) out.push(imageFromUrl(url));
    }
  }
  return out;
}

function parseArguments(args: unknown): unknown {
  if (typeof args !== 'string' || args.trim() === '') return {};
  try {
    const v = JSON.parse(args) as unknown;
    return isObj(v) ? v : { value: v };
  } catch {
    // A model's malformed arguments: keep them visible rather than dropping the call.
    return { arguments: args };
  }
}

/** Append a message, merging with the previous one when it has the same role (Anthropic alternates). */
function pushAnthropic(out: Obj[], role: 'user' | 'assistant', blocks: Obj[]): void {
  if (blocks.length === 0) return;
  const last = out[out.length - 1];
  if (last && last.role === role) (last.content as Obj[]).push(...blocks);
  else out.push({ role, content: blocks });
}

function openAiToolChoiceToAnthropic(choice: unknown, parallel: unknown): Obj | undefined {
  let out: Obj | undefined;
  if (choice === 'auto') out = { type: 'auto' };
  else if (choice === 'required') out = { type: 'any' };
  else if (choice === 'none') out = { type: 'none' };
  else if (isObj(choice) && isObj(choice.function) && typeof choice.function.name === 'string') out = { type: 'tool', name: choice.function.name };
  if (parallel === false) out = { ...(out ?? { type: 'auto' }), disable_parallel_tool_use: true };
  return out;
}

/** An OpenAI chat-completions body → an Anthropic messages body. */
export function openAiChatToAnthropic(body: Obj, model: string): Obj {
  const system: string[] = [];
  const messages: Obj[] = [];
  for (const msg of (body.messages as Obj[] | undefined) ?? []) {
    const role = msg.role;
    if (role === 'system' || role === 'developer') {
      const text = textOfOpenAiContent(msg.content);
      if (text.length > 0) system.push(text);
    } else if (role === 'user') {
      pushAnthropic(messages, 'user', openAiPartsToAnthropic(msg.content));
    } else if (role === 'assistant') {
      const blocks = openAiPartsToAnthropic(msg.content);
      for (const call of (msg.tool_calls as Obj[] | undefined) ?? []) {
        const fn = isObj(call.function) ? call.function : {};
        blocks.push({ type: 'tool_use', id: call.id ?? `call_${blocks.length}`, name: fn.name ?? 'tool', input: parseArguments(fn.arguments) });
      }
      pushAnthropic(messages, 'assistant', blocks);
    } else if (role === 'tool' || role === 'function') {
      const id = typeof msg.tool_call_id === 'string' ? msg.tool_call_id : typeof msg.name === 'string' ? msg.name : 'tool';
      pushAnthropic(messages, 'user', [{ type: 'tool_result', tool_use_id: id, content: textOfOpenAiContent(msg.content) }]);
    }
  }
  const out: Obj = {
    model,
    max_tokens: (body.max_completion_tokens as number | null | undefined) ?? (body.max_tokens as number | null | undefined) ?? DEFAULT_ANTHROPIC_MAX_TOKENS,
    messages,
  };
  if (system.length > 0) out.system = system.join('\n\n');
  if (body.stream === true) out.stream = true;
  if (typeof body.temperature === 'number') out.temperature = Math.min(1, body.temperature);
  if (typeof body.top_p === 'number') out.top_p = body.top_p;
  if (typeof body.stop === 'string') out.stop_sequences = [body.stop];
  else if (Array.isArray(body.stop)) out.stop_sequences = body.stop;
  if (Array.isArray(body.tools) && body.tools.length > 0) {
    out.tools = (body.tools as Obj[])
      .filter((t) => t.type === 'function' && isObj(t.function))
      .map((t) => {
        const fn = t.function as Obj;
        return {
          name: fn.name,
          ...(typeof fn.description === 'string' ? { description: fn.description } : {}),
          input_schema: isObj(fn.parameters) ? fn.parameters : { type: 'object', properties: {} },
        };
      });
  }
  const toolChoice = openAiToolChoiceToAnthropic(body.tool_choice, body.parallel_tool_calls);
  if (toolChoice && Array.isArray(out.tools)) out.tool_choice = toolChoice;
  if (typeof body.user === 'string') out.metadata = { user_id: body.user };
  return out;
}

function anthropicBlocksText(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content.map((b) => (isObj(b) && b.type === 'text' && typeof b.text === 'string' ? b.text : '')).join('');
}

function anthropicPartsToOpenAi(blocks: Obj[]): Obj[] {
  const parts: Obj[] = [];
  for (const b of blocks) {
    if (b.type === 'text' && typeof b.text === 'string') parts.push({ type: 'text', text: b.text });
    else if (b.type === 'image' && isObj(b.source)) {
      const s = b.source;
      const url = s.type === 'base64' ? `data:${String(s.media_type)};base64,${String(s.data)}` : typeof s.url === 'string' ? s.url : undefined;
      if (url) parts.push({ type: 'image_url', image_url: { url } });
    }
  }
  return parts;
}

/** Plain string content when the parts are only text (what every OpenAI-compatible server accepts). */
function simplifyParts(parts: Obj[]): string | Obj[] {
  return parts.every((p) => p.type === 'text') ? parts.map((p) => p.text as string).join('') : parts;
}

/** An Anthropic messages body → an OpenAI chat-completions body. */
export function anthropicToOpenAiChat(body: Obj, model: string): Obj {
  const messages: Obj[] = [];
  const system = typeof body.system === 'string' ? body.system : anthropicBlocksText(body.system);
  if (system.length > 0) messages.push({ role: 'system', content: system });
  for (const msg of (body.messages as Obj[] | undefined) ?? []) {
    const blocks: Obj[] = typeof msg.content === 'string' ? [{ type: 'text', text: msg.content }] : ((msg.content as Obj[] | undefined) ?? []);
    if (msg.role === 'assistant') {
      const text = blocks.filter((b) => b.type === 'text').map((b) => b.text as string).join('');
      const calls = blocks
        .filter((b) => b.type === 'tool_use')
        .map((b) => ({ id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) } }));
      const out: Obj = { role: 'assistant', content: text.length > 0 ? text : null };
      if (calls.length > 0) out.tool_calls = calls;
      if (text.length > 0 || calls.length > 0) messages.push(out);
      continue;
    }
    // User turn: tool results become `tool` messages (answering the previous assistant's calls), first.
    for (const b of blocks) {
      if (b.type !== 'tool_result') continue;
      const content = typeof b.content === 'string' ? b.content : anthropicBlocksText(b.content);
      messages.push({ role: 'tool', tool_call_id: b.tool_use_id, content: b.is_error === true ? `error: ${content}` : content });
    }
    const parts = anthropicPartsToOpenAi(blocks.filter((b) => b.type !== 'tool_result'));
    if (parts.length > 0) messages.push({ role: 'user', content: simplifyParts(parts) });
  }
  const out: Obj = { model, messages, max_tokens: body.max_tokens };
  if (body.stream === true) {
    out.stream = true;
    out.stream_options = { include_usage: true };
  }
  if (typeof body.temperature === 'number') out.temperature = body.temperature;
  if (typeof body.top_p === 'number') out.top_p = body.top_p;
  if (Array.isArray(body.stop_sequences) && body.stop_sequences.length > 0) out.stop = body.stop_sequences;
  if (Array.isArray(body.tools) && body.tools.length > 0) {
    out.tools = (body.tools as Obj[])
      .filter((t) => typeof t.name === 'string' && (t.type === undefined || t.type === 'custom'))
      .map((t) => ({
        type: 'function',
        function: {
          name: t.name,
          ...(typeof t.description === 'string' ? { description: t.description } : {}),
          parameters: isObj(t.input_schema) ? t.input_schema : { type: 'object', properties: {} },
        },
      }));
  }
  const tc = body.tool_choice;
  if (isObj(tc) && Array.isArray(out.tools)) {
    if (tc.type === 'auto') out.tool_choice = 'auto';
    else if (tc.type === 'any') out.tool_choice = 'required';
    else if (tc.type === 'none') out.tool_choice = 'none';
    else if (tc.type === 'tool' && typeof tc.name === 'string') out.tool_choice = { type: 'function', function: { name: tc.name } };
    if (tc.disable_parallel_tool_use === true) out.parallel_tool_calls = false;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Whole responses.

const ANTHROPIC_TO_OPENAI_STOP: Record<string, string> = {
  end_turn: 'stop',
  stop_sequence: 'stop',
  max_tokens: 'length',
  tool_use: 'tool_calls',
  refusal: 'content_filter',
  pause_turn: 'stop',
};

const OPENAI_TO_ANTHROPIC_STOP: Record<string, string> = {
  stop: 'end_turn',
  length: 'max_tokens',
  tool_calls: 'tool_use',
  function_call: 'tool_use',
  content_filter: 'refusal',
};

function anthropicInputTokens(u: Obj): number {
  const n = (k: string): number => (typeof u[k] === 'number' ? (u[k] as number) : 0);
  return n('input_tokens') + n('cache_read_input_tokens') + n('cache_creation_input_tokens');
}

/** An Anthropic message → an OpenAI chat.completion. */
export function anthropicMessageToOpenAi(msg: Obj, created: number): Obj {
  const blocks = (msg.content as Obj[] | undefined) ?? [];
  const text = blocks.filter((b) => b.type === 'text').map((b) => b.text as string).join('');
  const calls = blocks
    .filter((b) => b.type === 'tool_use')
    .map((b) => ({ id: b.id, type: 'function', function: { name: b.name, arguments: JSON.stringify(b.input ?? {}) } }));
  const message: Obj = { role: 'assistant', content: text.length > 0 || calls.length === 0 ? text : null };
  if (calls.length > 0) message.tool_calls = calls;
  const u = isObj(msg.usage) ? msg.usage : {};
  const prompt = anthropicInputTokens(u);
  const completion = typeof u.output_tokens === 'number' ? u.output_tokens : 0;
  return {
    id: typeof msg.id === 'string' ? msg.id : 'chatcmpl-translated',
    object: 'chat.completion',
    created,
    model: msg.model,
    choices: [{ index: 0, message, finish_reason: ANTHROPIC_TO_OPENAI_STOP[String(msg.stop_reason)] ?? 'stop', logprobs: null }],
    usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion },
  };
}

/** Rough token count of generated text (~4 characters a token), for providers that report no usage. */
const estimateTokens = (chars: number): number => Math.ceil(chars / 4);

/**
 * An OpenAI chat.completion → an Anthropic message. `estimatedPromptTokens` stands in when the
 * provider reports no usage (Anthropic callers always get a usage block, and budgets need one).
 */
export function openAiCompletionToAnthropic(json: Obj, estimatedPromptTokens = 0): Obj {
  const choice = ((json.choices as Obj[] | undefined) ?? [])[0] ?? {};
  const message = isObj(choice.message) ? choice.message : {};
  const content: Obj[] = [];
  const text = textOfOpenAiContent(message.content);
  if (text.length > 0) content.push({ type: 'text', text });
  for (const call of (message.tool_calls as Obj[] | undefined) ?? []) {
    const fn = isObj(call.function) ? call.function : {};
    content.push({ type: 'tool_use', id: call.id, name: fn.name, input: parseArguments(fn.arguments) });
  }
  const u = isObj(json.usage) ? json.usage : {};
  const generated = text.length + content.reduce((n, b) => n + (b.type === 'tool_use' ? JSON.stringify(b.input).length : 0), 0);
  return {
    id: typeof json.id === 'string' ? json.id : 'msg_translated',
    type: 'message',
    role: 'assistant',
    model: json.model,
    content,
    stop_reason: OPENAI_TO_ANTHROPIC_STOP[String(choice.finish_reason)] ?? 'end_turn',
    stop_sequence: null,
    usage: {
      input_tokens: typeof u.prompt_tokens === 'number' ? u.prompt_tokens : estimatedPromptTokens,
      output_tokens: typeof u.completion_tokens === 'number' ? u.completion_tokens : estimateTokens(generated),
    },
  };
}

/** Error kind for an upstream HTTP status (used to re-word a provider error in the caller's format). */
export function errorKindForStatus(status: number): ErrorKind {
  if (status === 400 || status === 413 || status === 422) return 'invalid_request';
  if (status === 401) return 'authentication';
  if (status === 402) return 'budget';
  if (status === 403) return 'permission';
  if (status === 404) return 'not_found';
  if (status === 429) return 'rate_limit';
  if (status === 529 || status === 503) return 'overloaded';
  return 'upstream';
}

/** A provider's error body, read: its message and which wire format it is already in. */
export interface ProviderError {
  message: string;
  /** `openai`: `{error: {message}}`; `anthropic`: `{type: "error", error: {message}}`; `other`: a message in some other JSON shape. */
  format: 'openai' | 'anthropic' | 'other';
}

/**
 * The error a provider answered with, whichever JSON shape it uses (OpenAI, Anthropic, and the
 * `{"error": "..."}` / `{"message"}` / `{"detail"}` of OpenAI-compatible servers). Undefined when the
 * body is no API error at all (an HTML page of a proxy in between, an empty or truncated body).
 */
export function readProviderError(text: string): ProviderError | undefined {
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch {
    return undefined;
  }
  if (!isObj(json)) return undefined;
  const err = json.error;
  if (isObj(err) && typeof err.message === 'string') return { message: err.message, format: json.type === 'error' ? 'anthropic' : 'openai' };
  if (typeof err === 'string' && err.length > 0) return { message: err, format: 'other' };
  if (typeof json.message === 'string' && json.message.length > 0) return { message: json.message, format: 'other' };
  if (typeof json.detail === 'string' && json.detail.length > 0) return { message: json.detail, format: 'other' };
  return undefined;
}

/** A short, readable excerpt of a body that is not what the API promises (tags of an HTML page dropped). */
export function bodyExcerpt(text: string, contentType: string, max = 200): string {
  // Only the start matters, and a huge body must not cost a regex pass over all of it.
  text = text.slice(0, 8 * max);
  const plain = /html|xml/i.test(contentType) || /^\s*</.test(text) ? text.replace(/<(script|style)[\s\S]*?<\/\1>/gi, ' ').replace(/<[^>]*>/g, ' ') : text;
  const oneLine = plain.replace(/\s+/g, ' ').trim();
  if (oneLine.length === 0) return '(empty body)';
  return oneLine.length > max ? `${oneLine.slice(0, max)}…` : oneLine;
}

// ---------------------------------------------------------------------------------------------
// Streams. Each translator takes upstream SSE events and returns the caller-format events.

export interface StreamTranslator {
  push(ev: EventSourceMessage): EventSourceMessage[];
  /** The upstream stream ended: events that close the caller's stream properly (if not done yet). */
  end(): EventSourceMessage[];
}

const data = (value: unknown, event?: string): EventSourceMessage => ({ data: JSON.stringify(value), event, id: undefined });

/** Anthropic messages stream → OpenAI chat.completion.chunk stream (usage always sent last; the router strips it when the caller did not ask). */
/** `onInvalid`: an upstream event whose data is not JSON (it is skipped; the caller may cut the stream). */
export function anthropicStreamToOpenAi(created: number, errorBody: (kind: ErrorKind, message: string) => unknown, onInvalid?: (data: string) => void): StreamTranslator {
  let id = 'chatcmpl-translated';
  let model: unknown = undefined;
  let prompt = 0;
  let completion = 0;
  let finish: string | undefined;
  let done = false;
  let toolIndex = -1;
  const blockTool = new Map<number, number>();
  const chunk = (delta: Obj, finishReason: string | null = null): EventSourceMessage =>
    data({ id, object: 'chat.completion.chunk', created, model, choices: [{ index: 0, delta, finish_reason: finishReason }] });
  const close = (): EventSourceMessage[] => {
    if (done) return [];
    done = true;
    return [
      chunk({}, finish ?? 'stop'),
      data({ id, object: 'chat.completion.chunk', created, model, choices: [], usage: { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion } }),
      { data: '[DONE]', event: undefined, id: undefined },
    ];
  };
  return {
    push(ev) {
      if (done) return [];
      let d: Obj;
      try {
        d = JSON.parse(ev.data) as Obj;
      } catch {
        if (ev.data.trim().length > 0) onInvalid?.(ev.data);
        return [];
      }
      switch (d.type) {
        case 'message_start': {
          const m = isObj(d.message) ? d.message : {};
          if (typeof m.id === 'string') id = m.id;
          model = m.model;
          if (isObj(m.usage)) prompt = anthropicInputTokens(m.usage);
          return [chunk({ role: 'assistant', content: '' })];
        }
        case 'content_block_start': {
          const b = isObj(d.content_block) ? d.content_block : {};
          if (b.type === 'tool_use') {
            toolIndex++;
            blockTool.set(Number(d.index), toolIndex);
            return [chunk({ tool_calls: [{ index: toolIndex, id: b.id, type: 'function', function: { name: b.name, arguments: '' } }] })];
          }
          if (b.type === 'text' && typeof b.text === 'string' && b.text.length > 0) return [chunk({ content: b.text })];
          return [];
        }
        case 'content_block_delta': {
          const delta = isObj(d.delta) ? d.delta : {};
          if (delta.type === 'text_delta') return [chunk({ content: delta.text })];
          if (delta.type === 'thinking_delta') return [chunk({ reasoning_content: delta.thinking })];
          if (delta.type === 'input_json_delta') {
            const index = blockTool.get(Number(d.index)) ?? 0;
            return [chunk({ tool_calls: [{ index, function: { arguments: delta.partial_json } }] })];
          }
          return [];
        }
        case 'message_delta': {
          const delta = isObj(d.delta) ? d.delta : {};
          if (typeof delta.stop_reason === 'string') finish = ANTHROPIC_TO_OPENAI_STOP[delta.stop_reason] ?? 'stop';
          if (isObj(d.usage)) {
            if (typeof d.usage.output_tokens === 'number') completion = d.usage.output_tokens;
            const input = anthropicInputTokens(d.usage);
            if (input > 0) prompt = input;
          }
          return [];
        }
        case 'message_stop':
          return close();
        case 'error': {
          done = true;
          const e = isObj(d.error) ? d.error : {};
          const kind: ErrorKind = e.type === 'overloaded_error' ? 'overloaded' : e.type === 'rate_limit_error' ? 'rate_limit' : 'upstream';
          return [data(errorBody(kind, typeof e.message === 'string' ? e.message : 'provider error'))];
        }
        default:
          return []; // ping, content_block_stop
      }
    },
    end: () => [],
  };
}

/** OpenAI chat.completion.chunk stream → Anthropic messages stream. */
/** `onInvalid`: an upstream event whose data is not JSON (it is skipped; the caller may cut the stream). */
export function openAiStreamToAnthropic(
  estimatedPromptTokens: number,
  errorBody: (kind: ErrorKind, message: string) => unknown,
  onInvalid?: (data: string) => void,
): StreamTranslator {
  let started = false;
  let stopped = false;
  let id = 'msg_translated';
  let model: unknown = undefined;
  let prompt: number | undefined;
  let completion: number | undefined;
  /** Characters generated, for an estimate when the provider streams no usage. */
  let generated = 0;
  let stop: string | undefined;
  let nextIndex = 0;
  /** The open content block: text, or the OpenAI tool_call index it carries. */
  let open: { index: number; tool: number | undefined } | undefined;
  const toolBlocks = new Map<number, number>();
  const ev = (type: string, body: Obj): EventSourceMessage => data({ type, ...body }, type);

  const start = (out: EventSourceMessage[]): void => {
    if (started) return;
    started = true;
    out.push(
      ev('message_start', {
        message: { id, type: 'message', role: 'assistant', model, content: [], stop_reason: null, stop_sequence: null, usage: { input_tokens: estimatedPromptTokens, output_tokens: 0 } },
      }),
    );
  };
  const closeBlock = (out: EventSourceMessage[]): void => {
    if (!open) return;
    out.push(ev('content_block_stop', { index: open.index }));
    open = undefined;
  };
  const finish = (): EventSourceMessage[] => {
    if (stopped) return [];
    const out: EventSourceMessage[] = [];
    start(out);
    closeBlock(out);
    stopped = true;
    const usage: Obj = { output_tokens: completion ?? estimateTokens(generated) };
    if (prompt !== undefined) usage.input_tokens = prompt;
    out.push(ev('message_delta', { delta: { stop_reason: stop ?? 'end_turn', stop_sequence: null }, usage }));
    out.push(ev('message_stop', {}));
    return out;
  };

  return {
    push(msg) {
      if (stopped) return [];
      if (msg.data === '[DONE]') return finish();
      let c: Obj;
      try {
        c = JSON.parse(msg.data) as Obj;
      } catch {
        if (msg.data.trim().length > 0) onInvalid?.(msg.data);
        return [];
      }
      if (isObj(c.error)) {
        stopped = true;
        const e = c.error;
        return [{ ...data(errorBody('upstream', typeof e.message === 'string' ? e.message : 'provider error')), event: 'error' }];
      }
      if (typeof c.id === 'string' && !started) id = c.id;
      if (c.model !== undefined && model === undefined) model = c.model;
      const out: EventSourceMessage[] = [];
      start(out);
      if (isObj(c.usage)) {
        if (typeof c.usage.prompt_tokens === 'number') prompt = c.usage.prompt_tokens;
        if (typeof c.usage.completion_tokens === 'number') completion = c.usage.completion_tokens;
      }
      const choice = ((c.choices as Obj[] | undefined) ?? []).find((x) => (x.index ?? 0) === 0);
      if (!choice) return out;
      const delta = isObj(choice.delta) ? choice.delta : {};
      if (typeof delta.content === 'string' && delta.content.length > 0) {
        generated += delta.content.length;
        if (!open || open.tool !== undefined) {
          closeBlock(out);
          open = { index: nextIndex++, tool: undefined };
          out.push(ev('content_block_start', { index: open.index, content_block: { type: 'text', text: '' } }));
        }
        out.push(ev('content_block_delta', { index: open.index, delta: { type: 'text_delta', text: delta.content } }));
      }
      for (const call of (delta.tool_calls as Obj[] | undefined) ?? []) {
        const tool = typeof call.index === 'number' ? call.index : 0;
        const fn = isObj(call.function) ? call.function : {};
        if (!toolBlocks.has(tool)) {
          closeBlock(out);
          const index = nextIndex++;
          toolBlocks.set(tool, index);
          open = { index, tool };
          out.push(ev('content_block_start', { index, content_block: { type: 'tool_use', id: call.id ?? `toolu_${tool}`, name: fn.name ?? 'tool', input: {} } }));
        }
        const index = toolBlocks.get(tool)!;
        if (typeof fn.arguments === 'string' && fn.arguments.length > 0) {
          generated += fn.arguments.length;
          out.push(ev('content_block_delta', { index, delta: { type: 'input_json_delta', partial_json: fn.arguments } }));
        }
      }
      if (typeof choice.finish_reason === 'string') {
        stop = OPENAI_TO_ANTHROPIC_STOP[choice.finish_reason] ?? 'end_turn';
        closeBlock(out);
      }
      return out;
    },
    // A provider that ends without [DONE]: close the message so the caller sees a complete stream.
    end: () => finish(),
  };
}

/** Whether the router can translate a call of `from` format to a provider speaking `to`. */
export function canTranslate(api: string, to: WireFamily): boolean {
  return (api === 'openai.chat' && to === 'anthropic') || (api === 'anthropic.messages' && to === 'openai');
}
