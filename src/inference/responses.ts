/**
 * The OpenAI Responses API (`POST /v1/responses`, streaming and not, function tools) on
 * `inference.local`, as an adapter in front of the privacy router: a Responses request is
 * translated into a chat-completions request, which is sent through the router's own full path
 * (its socket: authentication, validation, scanning, routing, redaction, budgets, translation to
 * Anthropic, events), and the chat answer is translated back into a `response` object or the
 * Responses stream events.
 *
 * Nothing of the request reaches a provider except through the chat body the router scans. A field
 * the adapter cannot honour (built-in tools, stored conversation state, background mode, `include`,
 * ...) is refused with a 400 that names it, never dropped; so is any unknown field. Everything that
 * is translated lands in the chat body, where the router scans (and redacts) every string value and
 * key; `metadata` is echoed on the response object and never sent to a provider.
 *
 * The router's inference.route / inference.done events for such a call say `api: "openai.responses"`,
 * with `routed_as: "openai.chat"` and `response_id` (the id the caller got): the self-call carries a
 * per-process secret header that the listener strips and turns into an AsyncLocalStorage context,
 * which `labelClientApi` reads when the router emits. The sandbox cannot forge it.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { request, type Dispatcher } from 'undici';
import type { EventInput } from '../audit/events.js';
import { presentedToken, tokensEqual } from './credentials.js';
import { OVERHEAD_HEADER, type Router } from './router.js';
import { MAX_BODY_BYTES, readBody } from './wire.js';

type Obj = Record<string, unknown>;

export const RESPONSES_PATH = '/v1/responses';
export const RESPONSES_API = 'openai.responses';
/** Header of the adapter's own call into the router (value: the per-process secret). */
const INTERNAL_HEADER = 'x-nemoclaw-client-api';

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

// ---------------------------------------------------------------------------------------------
// Event labelling.

const clientApi = new AsyncLocalStorage<{ api: string; responseId: string }>();

/** Wrap the router's `emit` so events of a call made by the Responses adapter name the client API. */
export function labelClientApi(emit: (event: EventInput) => void): (event: EventInput) => void {
  return (event) => {
    const client = clientApi.getStore();
    if (client && (event.kind === 'inference.route' || event.kind === 'inference.done')) {
      emit({ ...event, api: client.api, routed_as: event.api, response_id: client.responseId });
      return;
    }
    emit(event);
  };
}

// ---------------------------------------------------------------------------------------------
// Request translation.

/** A refusal of the request: 400 naming the field. */
export class ResponsesRequestError extends Error {
  constructor(
    readonly param: string,
    message: string,
    readonly code = 'unsupported_parameter',
  ) {
    super(message);
  }
}

const refuse = (param: string, why: string): never => {
  throw new ResponsesRequestError(param, `${param}: ${why}`);
};
const invalid = (param: string, why: string): never => {
  throw new ResponsesRequestError(param, `${param}: ${why}`, 'invalid_value');
};

/** Fields read from a Responses request; anything else is refused. */
const TOP_LEVEL = new Set([
  'model', 'input', 'instructions', 'max_output_tokens', 'temperature', 'top_p', 'tools', 'tool_choice', 'parallel_tool_calls',
  'text', 'reasoning', 'stream', 'stream_options', 'store', 'metadata', 'user', 'safety_identifier', 'prompt_cache_key',
  'service_tier', 'truncation', 'include',
]);

/** Why a known but unsupported field is refused (the default reason covers the rest). */
const REFUSED: Record<string, string> = {
  previous_response_id: 'the privacy router keeps no conversation state; send the whole conversation in `input`',
  conversation: 'the privacy router keeps no conversation state; send the whole conversation in `input`',
  background: 'background responses are not supported by the privacy router',
  prompt: 'stored prompt templates are not supported by the privacy router; send the text in `instructions` / `input`',
  max_tool_calls: 'not supported by the privacy router (it runs no tools itself)',
  top_logprobs: 'log probabilities are not supported by the privacy router for the Responses API',
  prompt_cache_retention: 'not supported by the privacy router',
  context_management: 'not supported by the privacy router',
};

export interface TranslatedRequest {
  chat: Obj;
  stream: boolean;
  /** Echoed on the response object. */
  echo: Obj;
}

function str(v: unknown, param: string): string {
  if (typeof v !== 'string') invalid(param, 'expected a string');
  return v as string;
}

function checkKeys(item: Obj, allowed: readonly string[], param: string): void {
  for (const k of Object.keys(item)) {
    if (item[k] === undefined || item[k] === null) continue;
    if (!allowed.includes(k)) refuse(`${param}.${k}`, 'not supported by the privacy router');
  }
}

function inputParts(content: unknown, param: string, allowImages: boolean): string | Obj[] {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return invalid(param, 'expected a string or an array of content parts');
  return content.map((part, i): Obj => {
    const p = `${param}[${i}]`;
    if (!isObj(part)) return invalid(p, 'expected a content part object');
    switch (part.type) {
      case 'input_text':
      case 'output_text':
        checkKeys(part, ['type', 'text', 'annotations', 'logprobs'], p);
        if (Array.isArray(part.annotations) && part.annotations.length > 0) refuse(`${p}.annotations`, 'annotations are not supported by the privacy router');
        return { type: 'text', text: str(part.text, `${p}.text`) };
      case 'refusal':
        // An assistant's earlier refusal: sent as its text, where the router scans it.
        checkKeys(part, ['type', 'refusal'], p);
        return { type: 'text', text: str(part.refusal, `${p}.refusal`) };
      case 'input_image': {
        if (!allowImages) return refuse(`${p}.type`, 'images are only supported in user messages');
        checkKeys(part, ['type', 'image_url', 'detail'], p);
        if (part.file_id !== undefined && part.file_id !== null) refuse(`${p}.file_id`, 'uploaded files are not supported by the privacy router; send the image as image_url (a data: URL)');
        const url = str(part.image_url, `${p}.image_url`);
        return { type: 'image_url', image_url: typeof part.detail === 'string' ? { url, detail: part.detail } : { url } };
      }
      default:
        return refuse(`${p}.type`, `content part type ${JSON.stringify(part.type)} is not supported by the privacy router (supported: input_text, input_image, output_text, refusal)`);
    }
  });
}

/** Plain text when every part is text (what every OpenAI-compatible server accepts). */
function simplify(parts: string | Obj[]): string | Obj[] {
  if (typeof parts === 'string') return parts;
  return parts.every((p) => p.type === 'text') ? parts.map((p) => p.text as string).join('') : parts;
}

function translateInput(input: unknown, messages: Obj[]): void {
  if (typeof input === 'string') {
    messages.push({ role: 'user', content: input });
    return;
  }
  if (!Array.isArray(input)) return invalid('input', 'expected a string or an array of input items');
  input.forEach((item, i) => {
    const param = `input[${i}]`;
    if (!isObj(item)) return invalid(param, 'expected an input item object');
    const type = item.type ?? 'message';
    if (type === 'message') {
      checkKeys(item, ['type', 'role', 'content', 'id', 'status'], param);
      const role = item.role;
      if (role === 'user' || role === 'system' || role === 'developer') {
        messages.push({ role, content: simplify(inputParts(item.content, `${param}.content`, role === 'user')) });
      } else if (role === 'assistant') {
        messages.push({ role: 'assistant', content: simplify(inputParts(item.content, `${param}.content`, false)) });
      } else {
        invalid(`${param}.role`, 'expected user, system, developer or assistant');
      }
    } else if (type === 'function_call') {
      checkKeys(item, ['type', 'call_id', 'name', 'arguments', 'id', 'status'], param);
      const call = {
        id: str(item.call_id, `${param}.call_id`),
        type: 'function',
        function: { name: str(item.name, `${param}.name`), arguments: str(item.arguments, `${param}.arguments`) },
      };
      // Consecutive calls (and the text before them) are one assistant turn in chat completions.
      const last = messages[messages.length - 1];
      if (last && last.role === 'assistant') ((last.tool_calls ??= []) as Obj[]).push(call);
      else messages.push({ role: 'assistant', content: null, tool_calls: [call] });
    } else if (type === 'function_call_output') {
      checkKeys(item, ['type', 'call_id', 'output', 'id', 'status'], param);
      messages.push({ role: 'tool', tool_call_id: str(item.call_id, `${param}.call_id`), content: simplify(inputParts(item.output, `${param}.output`, false)) });
    } else if (type === 'reasoning') {
      // A reasoning item from an earlier response: chat completions takes no reasoning input, so it
      // is not sent anywhere (it is the model's own output; nothing of it reaches a provider).
      checkKeys(item, ['type', 'id', 'summary', 'content', 'encrypted_content', 'status'], param);
    } else {
      refuse(`${param}.type`, `input item type ${JSON.stringify(type)} is not supported by the privacy router (supported: message, function_call, function_call_output, reasoning)`);
    }
  });
}

function translateTools(tools: unknown): Obj[] {
  if (!Array.isArray(tools)) return invalid('tools', 'expected an array');
  return tools.map((tool, i): Obj => {
    const param = `tools[${i}]`;
    if (!isObj(tool)) return invalid(param, 'expected a tool object');
    if (tool.type !== 'function') {
      return refuse(`${param}.type`, `tool type ${JSON.stringify(tool.type)} is a built-in tool the privacy router cannot run; only "function" tools are supported`);
    }
    checkKeys(tool, ['type', 'name', 'description', 'parameters', 'strict'], param);
    const fn: Obj = { name: str(tool.name, `${param}.name`) };
    if (tool.description !== undefined && tool.description !== null) fn.description = str(tool.description, `${param}.description`);
    if (tool.parameters !== undefined && tool.parameters !== null) {
      if (!isObj(tool.parameters)) invalid(`${param}.parameters`, 'expected a JSON schema object');
      fn.parameters = tool.parameters;
    }
    if (typeof tool.strict === 'boolean') fn.strict = tool.strict;
    return { type: 'function', function: fn };
  });
}

function translateToolChoice(choice: unknown): unknown {
  if (choice === 'auto' || choice === 'none' || choice === 'required') return choice;
  if (isObj(choice) && choice.type === 'function') {
    checkKeys(choice, ['type', 'name'], 'tool_choice');
    return { type: 'function', function: { name: str(choice.name, 'tool_choice.name') } };
  }
  const type = isObj(choice) ? choice.type : choice;
  return refuse('tool_choice', `${JSON.stringify(type)} is not supported by the privacy router (supported: "auto", "none", "required", {"type": "function", "name": ...})`);
}

const SERVICE_TIERS = new Set(['auto', 'default', 'flex', 'scale', 'priority']);

/** A Responses request body → a chat-completions body (or a ResponsesRequestError). */
export function responsesToChat(body: unknown): TranslatedRequest {
  if (!isObj(body)) return invalid('(body)', 'expected a JSON object');
  const present = (k: string): boolean => body[k] !== undefined && body[k] !== null;
  for (const k of Object.keys(body)) {
    if (!present(k) || TOP_LEVEL.has(k)) continue;
    refuse(k, REFUSED[k] ?? 'not supported by the privacy router');
  }
  if (body.store === true) refuse('store', 'the privacy router stores no responses; send "store": false (or leave it out) and the whole conversation in `input`');
  if (present('include') && (!Array.isArray(body.include) || body.include.length > 0)) {
    refuse('include', `${JSON.stringify(body.include)}: extra output data is not supported by the privacy router`);
  }
  if (present('truncation') && body.truncation !== 'disabled') refuse('truncation', `${JSON.stringify(body.truncation)} is not supported by the privacy router (only "disabled")`);
  const model = str(body.model, 'model');
  if (model.length === 0) invalid('model', 'must not be empty');
  if (!present('input')) invalid('input', 'required');

  const messages: Obj[] = [];
  if (present('instructions')) messages.push({ role: 'system', content: str(body.instructions, 'instructions') });
  translateInput(body.input, messages);
  if (messages.length === 0) invalid('input', 'must not be empty');

  const stream = body.stream === true;
  const chat: Obj = { model, messages };
  if (stream) chat.stream = true;
  if (present('stream_options')) {
    if (!stream) invalid('stream_options', 'only with "stream": true');
    if (!isObj(body.stream_options)) invalid('stream_options', 'expected an object');
    const so = body.stream_options as Obj;
    checkKeys(so, ['include_obfuscation'], 'stream_options');
    if (so.include_obfuscation === true) refuse('stream_options.include_obfuscation', 'not supported by the privacy router; send false');
  }
  if (stream) chat.stream_options = { include_usage: true };
  if (present('max_output_tokens')) {
    const n = body.max_output_tokens;
    if (typeof n !== 'number' || !Number.isInteger(n) || n <= 0) invalid('max_output_tokens', 'expected a positive integer');
    chat.max_completion_tokens = n;
  }
  for (const k of ['temperature', 'top_p'] as const) {
    if (!present(k)) continue;
    if (typeof body[k] !== 'number') invalid(k, 'expected a number');
    chat[k] = body[k];
  }
  if (present('tools')) {
    const tools = translateTools(body.tools);
    if (tools.length > 0) chat.tools = tools;
  }
  if (present('tool_choice')) chat.tool_choice = translateToolChoice(body.tool_choice);
  if (present('parallel_tool_calls')) {
    if (typeof body.parallel_tool_calls !== 'boolean') invalid('parallel_tool_calls', 'expected a boolean');
    // Chat completions accepts it only next to tools.
    if (chat.tools) chat.parallel_tool_calls = body.parallel_tool_calls;
  }
  if (present('text')) {
    if (!isObj(body.text)) invalid('text', 'expected an object');
    const text = body.text as Obj;
    checkKeys(text, ['format', 'verbosity'], 'text');
    if (text.format !== undefined && text.format !== null) {
      if (!isObj(text.format)) invalid('text.format', 'expected an object');
      const f = text.format as Obj;
      if (f.type === 'json_schema') {
        checkKeys(f, ['type', 'name', 'schema', 'description', 'strict'], 'text.format');
        const js: Obj = { name: str(f.name, 'text.format.name') };
        if (!isObj(f.schema)) invalid('text.format.schema', 'expected a JSON schema object');
        js.schema = f.schema;
        if (typeof f.description === 'string') js.description = f.description;
        if (typeof f.strict === 'boolean') js.strict = f.strict;
        chat.response_format = { type: 'json_schema', json_schema: js };
      } else if (f.type === 'json_object') {
        checkKeys(f, ['type'], 'text.format');
        chat.response_format = { type: 'json_object' };
      } else if (f.type !== 'text') {
        refuse('text.format.type', `${JSON.stringify(f.type)} is not supported (text, json_object, json_schema)`);
      }
    }
    if (text.verbosity !== undefined && text.verbosity !== null) {
      if (!['low', 'medium', 'high'].includes(text.verbosity as string)) invalid('text.verbosity', 'expected low, medium or high');
      chat.verbosity = text.verbosity;
    }
  }
  if (present('reasoning')) {
    if (!isObj(body.reasoning)) invalid('reasoning', 'expected an object');
    const r = body.reasoning as Obj;
    checkKeys(r, ['effort'], 'reasoning');
    if (r.effort !== undefined && r.effort !== null) {
      if (!['none', 'minimal', 'low', 'medium', 'high', 'xhigh'].includes(r.effort as string)) invalid('reasoning.effort', 'expected none, minimal, low, medium, high or xhigh');
      chat.reasoning_effort = r.effort;
    }
  }
  for (const k of ['user', 'safety_identifier', 'prompt_cache_key'] as const) {
    if (!present(k)) continue;
    chat[k] = str(body[k], k);
  }
  if (present('service_tier')) {
    if (!SERVICE_TIERS.has(body.service_tier as string)) invalid('service_tier', `expected one of ${[...SERVICE_TIERS].join(', ')}`);
    chat.service_tier = body.service_tier;
  }
  const echo: Obj = {};
  if (present('metadata')) {
    // Kept on the response object only; never sent to a provider.
    if (!isObj(body.metadata) || !Object.values(body.metadata).every((v) => typeof v === 'string')) invalid('metadata', 'expected an object of strings');
    echo.metadata = body.metadata;
  }
  echo.instructions = body.instructions ?? null;
  echo.max_output_tokens = body.max_output_tokens ?? null;
  echo.temperature = body.temperature ?? null;
  echo.top_p = body.top_p ?? null;
  echo.parallel_tool_calls = body.parallel_tool_calls ?? true;
  echo.tool_choice = body.tool_choice ?? 'auto';
  echo.tools = Array.isArray(body.tools) ? body.tools : [];
  echo.text = isObj(body.text) ? { format: { type: 'text' }, ...body.text } : { format: { type: 'text' } };
  echo.reasoning = isObj(body.reasoning) ? { effort: null, summary: null, ...body.reasoning } : { effort: null, summary: null };
  if (present('user')) echo.user = body.user;
  if (present('safety_identifier')) echo.safety_identifier = body.safety_identifier;
  if (present('prompt_cache_key')) echo.prompt_cache_key = body.prompt_cache_key;
  if (present('service_tier')) echo.service_tier = body.service_tier;
  return { chat, stream, echo };
}

// ---------------------------------------------------------------------------------------------
// Response translation.

const hexId = (prefix: string): string => `${prefix}_${randomBytes(12).toString('hex')}`;

function usageOf(u: unknown): Obj | null {
  if (!isObj(u)) return null;
  const num = (v: unknown): number => (typeof v === 'number' && Number.isFinite(v) ? v : 0);
  const input = num(u.prompt_tokens);
  const output = num(u.completion_tokens);
  return {
    input_tokens: input,
    input_tokens_details: { cached_tokens: num((u.prompt_tokens_details as Obj | undefined)?.cached_tokens) },
    output_tokens: output,
    output_tokens_details: { reasoning_tokens: num((u.completion_tokens_details as Obj | undefined)?.reasoning_tokens) },
    total_tokens: typeof u.total_tokens === 'number' ? u.total_tokens : input + output,
  };
}

/** `finish_reason` → the response's status and incomplete_details. */
function statusFor(finish: unknown): { status: string; incomplete_details: Obj | null } {
  if (finish === 'length') return { status: 'incomplete', incomplete_details: { reason: 'max_output_tokens' } };
  if (finish === 'content_filter') return { status: 'incomplete', incomplete_details: { reason: 'content_filter' } };
  return { status: 'completed', incomplete_details: null };
}

interface ResponseShell {
  id: string;
  created_at: number;
  model: string;
  echo: Obj;
}

function responseObject(shell: ResponseShell, fields: { status: string; output: Obj[]; usage: Obj | null; error?: Obj | null; incomplete_details?: Obj | null }): Obj {
  return {
    id: shell.id,
    object: 'response',
    created_at: shell.created_at,
    status: fields.status,
    background: false,
    error: fields.error ?? null,
    incomplete_details: fields.incomplete_details ?? null,
    model: shell.model,
    output: fields.output,
    previous_response_id: null,
    store: false,
    truncation: 'disabled',
    metadata: {},
    ...shell.echo,
    usage: fields.usage,
  };
}

function messageItem(id: string, text: string, status: string): Obj {
  return { id, type: 'message', status, role: 'assistant', content: [{ type: 'output_text', text, annotations: [], logprobs: [] }] };
}

function reasoningItem(id: string, text: string): Obj {
  return { id, type: 'reasoning', summary: [], content: [{ type: 'reasoning_text', text }] };
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((p) => (isObj(p) && typeof p.text === 'string' ? p.text : '')).join('');
  return '';
}

/** A chat completion → a `response` object. */
export function chatToResponse(shell: ResponseShell, completion: Obj): Obj {
  const choice = (Array.isArray(completion.choices) ? completion.choices[0] : undefined) as Obj | undefined;
  const msg = (isObj(choice?.message) ? choice.message : {}) as Obj;
  const output: Obj[] = [];
  const reasoning = typeof msg.reasoning_content === 'string' ? msg.reasoning_content : typeof msg.reasoning === 'string' ? msg.reasoning : '';
  if (reasoning.length > 0) output.push(reasoningItem(hexId('rs'), reasoning));
  const text = textOf(msg.content);
  if (text.length > 0) output.push(messageItem(hexId('msg'), text, 'completed'));
  if (typeof msg.refusal === 'string' && msg.refusal.length > 0) {
    output.push({ id: hexId('msg'), type: 'message', status: 'completed', role: 'assistant', content: [{ type: 'refusal', refusal: msg.refusal }] });
  }
  for (const tc of (Array.isArray(msg.tool_calls) ? msg.tool_calls : []) as Obj[]) {
    const fn = (isObj(tc.function) ? tc.function : {}) as Obj;
    output.push({
      id: hexId('fc'),
      type: 'function_call',
      status: 'completed',
      call_id: typeof tc.id === 'string' ? tc.id : hexId('call'),
      name: typeof fn.name === 'string' ? fn.name : '',
      arguments: typeof fn.arguments === 'string' ? fn.arguments : '',
    });
  }
  const { status, incomplete_details } = statusFor(choice?.finish_reason);
  return responseObject({ ...shell, model: typeof completion.model === 'string' ? completion.model : shell.model }, { status, incomplete_details, output, usage: usageOf(completion.usage) });
}

/**
 * Chat-completion stream events → Responses stream events. `push` takes each parsed chunk and
 * returns SSE text; `end` closes the open items and writes response.completed (or .incomplete).
 */
export class ChatStreamToResponses {
  private seq = 0;
  private readonly output: Obj[] = [];
  private message: { index: number; id: string; text: string } | undefined;
  private reasoning: { index: number; id: string; text: string } | undefined;
  private readonly calls = new Map<number, { index: number; item: Obj }>();
  private usage: Obj | null = null;
  private finish: unknown;
  private model: string;
  finished = false;

  constructor(private readonly shell: ResponseShell) {
    this.model = shell.model;
  }

  private ev(type: string, data: Obj): string {
    return `event: ${type}\ndata: ${JSON.stringify({ type, ...data, sequence_number: this.seq++ })}\n\n`;
  }

  private response(status: string, extra: { error?: Obj | null; incomplete_details?: Obj | null } = {}): Obj {
    return responseObject({ ...this.shell, model: this.model }, { status, output: this.output.filter(Boolean), usage: status === 'in_progress' ? null : this.usage, ...extra });
  }

  start(): string {
    return this.ev('response.created', { response: this.response('in_progress') }) + this.ev('response.in_progress', { response: this.response('in_progress') });
  }

  private closeReasoning(): string {
    const r = this.reasoning;
    if (!r) return '';
    this.reasoning = undefined;
    const item = reasoningItem(r.id, r.text);
    this.output[r.index] = item;
    return (
      this.ev('response.reasoning_text.done', { item_id: r.id, output_index: r.index, content_index: 0, text: r.text }) +
      this.ev('response.content_part.done', { item_id: r.id, output_index: r.index, content_index: 0, part: { type: 'reasoning_text', text: r.text } }) +
      this.ev('response.output_item.done', { output_index: r.index, item })
    );
  }

  private closeMessage(): string {
    const m = this.message;
    if (!m) return '';
    this.message = undefined;
    const part = { type: 'output_text', text: m.text, annotations: [], logprobs: [] };
    const item = messageItem(m.id, m.text, 'completed');
    this.output[m.index] = item;
    return (
      this.ev('response.output_text.done', { item_id: m.id, output_index: m.index, content_index: 0, text: m.text, logprobs: [] }) +
      this.ev('response.content_part.done', { item_id: m.id, output_index: m.index, content_index: 0, part }) +
      this.ev('response.output_item.done', { output_index: m.index, item })
    );
  }

  private closeCalls(): string {
    let out = '';
    for (const { index, item } of this.calls.values()) {
      item.status = 'completed';
      this.output[index] = item;
      out += this.ev('response.function_call_arguments.done', { item_id: item.id, output_index: index, name: item.name, arguments: item.arguments });
      out += this.ev('response.output_item.done', { output_index: index, item: { ...item } });
    }
    this.calls.clear();
    return out;
  }

  push(chunk: Obj): string {
    let out = '';
    if (typeof chunk.model === 'string' && chunk.model.length > 0) this.model = chunk.model;
    if (isObj(chunk.usage)) this.usage = usageOf(chunk.usage);
    const choices = (Array.isArray(chunk.choices) ? chunk.choices : []) as Obj[];
    for (const c of choices) {
      if (typeof c.index === 'number' && c.index !== 0) continue;
      const d = (isObj(c.delta) ? c.delta : {}) as Obj;
      const thinking = typeof d.reasoning_content === 'string' ? d.reasoning_content : typeof d.reasoning === 'string' ? d.reasoning : '';
      if (thinking.length > 0) {
        if (!this.reasoning) {
          out += this.closeMessage();
          const r = { index: this.output.length, id: hexId('rs'), text: '' };
          this.reasoning = r;
          this.output.push(undefined as unknown as Obj);
          out += this.ev('response.output_item.added', { output_index: r.index, item: { id: r.id, type: 'reasoning', summary: [], content: [] } });
          out += this.ev('response.content_part.added', { item_id: r.id, output_index: r.index, content_index: 0, part: { type: 'reasoning_text', text: '' } });
        }
        this.reasoning.text += thinking;
        out += this.ev('response.reasoning_text.delta', { item_id: this.reasoning.id, output_index: this.reasoning.index, content_index: 0, delta: thinking });
      }
      if (typeof d.content === 'string' && d.content.length > 0) {
        if (!this.message) {
          out += this.closeReasoning();
          const m = { index: this.output.length, id: hexId('msg'), text: '' };
          this.message = m;
          this.output.push(undefined as unknown as Obj);
          out += this.ev('response.output_item.added', { output_index: m.index, item: { id: m.id, type: 'message', status: 'in_progress', role: 'assistant', content: [] } });
          out += this.ev('response.content_part.added', { item_id: m.id, output_index: m.index, content_index: 0, part: { type: 'output_text', text: '', annotations: [], logprobs: [] } });
        }
        this.message.text += d.content;
        out += this.ev('response.output_text.delta', { item_id: this.message.id, output_index: this.message.index, content_index: 0, delta: d.content, logprobs: [] });
      }
      for (const tc of (Array.isArray(d.tool_calls) ? d.tool_calls : []) as Obj[]) {
        const k = typeof tc.index === 'number' ? tc.index : 0;
        const fn = (isObj(tc.function) ? tc.function : {}) as Obj;
        let call = this.calls.get(k);
        if (!call) {
          out += this.closeReasoning() + this.closeMessage();
          const item: Obj = {
            id: hexId('fc'),
            type: 'function_call',
            status: 'in_progress',
            call_id: typeof tc.id === 'string' ? tc.id : hexId('call'),
            name: typeof fn.name === 'string' ? fn.name : '',
            arguments: '',
          };
          call = { index: this.output.length, item };
          this.output.push(undefined as unknown as Obj);
          this.calls.set(k, call);
          out += this.ev('response.output_item.added', { output_index: call.index, item: { ...item } });
        } else if (typeof fn.name === 'string' && fn.name.length > 0 && call.item.name === '') {
          call.item.name = fn.name;
        }
        if (typeof fn.arguments === 'string' && fn.arguments.length > 0) {
          call.item.arguments = (call.item.arguments as string) + fn.arguments;
          out += this.ev('response.function_call_arguments.delta', { item_id: call.item.id, output_index: call.index, delta: fn.arguments });
        }
      }
      if (c.finish_reason !== undefined && c.finish_reason !== null) this.finish = c.finish_reason;
    }
    return out;
  }

  /** The stream is over: close every item and write the final event. */
  end(): string {
    this.finished = true;
    const out = this.closeReasoning() + this.closeMessage() + this.closeCalls();
    const { status, incomplete_details } = statusFor(this.finish);
    return out + this.ev(status === 'completed' ? 'response.completed' : 'response.incomplete', { response: this.response(status, { incomplete_details }) });
  }

  /** The stream failed: response.failed, then an `error` event (the SDK throws on it). */
  fail(code: string, message: string): string {
    this.finished = true;
    return (
      this.ev('response.failed', { response: this.response('failed', { error: { code, message } }) }) +
      this.ev('error', { code, message, param: null })
    );
  }
}

// ---------------------------------------------------------------------------------------------
// The listener.

export interface InferenceListenerOptions {
  router: Router;
  /** How the adapter reaches the router's own listener (the service: its Unix socket). */
  self: () => { dispatcher?: Dispatcher; origin: string };
  sandboxToken: string;
  /** Events of calls the adapter answers itself (refusals before the router sees them). */
  emit?: (event: EventInput) => void;
  now?: () => number;
}

function errorJson(message: string, type: string, code: string | null, param: string | null): string {
  return JSON.stringify({ error: { message, type, param, code } });
}

function sendJson(res: ServerResponse, status: number, body: string, headers: Record<string, string> = {}): void {
  if (res.headersSent) {
    if (!res.writableEnded) res.end();
    return;
  }
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...headers });
  res.end(body);
}

/** An error body from the router (or anything else) → the OpenAI error shape the SDK reads. */
function relayError(text: string, status: number): string {
  try {
    const j = JSON.parse(text) as Obj;
    if (isObj(j.error) && typeof j.error.message === 'string') {
      const e = j.error;
      return errorJson(e.message as string, typeof e.type === 'string' ? e.type : 'api_error', typeof e.code === 'string' ? e.code : null, typeof e.param === 'string' ? e.param : null);
    }
  } catch {
    // Not JSON: worded below.
  }
  return errorJson(`privacy router answered HTTP ${status}`, 'api_error', null, null);
}

/**
 * The request listener for inference.local: POST /v1/responses goes to the adapter, the adapter's
 * own calls go to the router labelled, everything else to the router as it is.
 */
export function createInferenceListener(options: InferenceListenerOptions): (req: IncomingMessage, res: ServerResponse) => void {
  const secret = randomBytes(24).toString('hex');
  const emit = options.emit ?? (() => undefined);
  const now = options.now ?? Date.now;

  async function handleResponses(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const id = hexId('resp');
    const done = (status: number, outcome: string, error?: string): void => {
      emit({ kind: 'inference.done', level: 'warn', id, api: RESPONSES_API, status, outcome, ...(error ? { error } : {}) });
    };
    const token = presentedToken(req.headers);
    if (token === undefined || !tokensEqual(token, options.sandboxToken)) {
      req.resume();
      sendJson(res, 401, errorJson('missing or wrong sandbox token for inference.local (send it as "Authorization: Bearer <token>" or "x-api-key")', 'authentication_error', 'authentication_error', null));
      done(401, 'unauthenticated');
      return;
    }
    let body: unknown;
    try {
      body = JSON.parse((await readBody(req)).toString('utf8'));
    } catch (err) {
      const tooLarge = (err as { tooLarge?: boolean }).tooLarge === true;
      const message = tooLarge ? `request body larger than ${MAX_BODY_BYTES} bytes` : 'request body is not valid JSON';
      sendJson(res, tooLarge ? 413 : 400, errorJson(message, 'invalid_request_error', 'invalid_request_error', null));
      done(tooLarge ? 413 : 400, 'invalid', message);
      return;
    }
    let t: TranslatedRequest;
    try {
      t = responsesToChat(body);
    } catch (err) {
      if (!(err instanceof ResponsesRequestError)) throw err;
      sendJson(res, 400, errorJson(`invalid Responses request: ${err.message}`, 'invalid_request_error', err.code, err.param));
      done(400, 'invalid', err.message);
      return;
    }

    const shell: ResponseShell = { id, created_at: Math.floor(now() / 1000), model: t.chat.model as string, echo: t.echo };
    const headers: Record<string, string> = {
      'content-type': 'application/json',
      accept: t.stream ? 'text/event-stream' : 'application/json',
      [INTERNAL_HEADER]: `${secret} ${id}`,
    };
    // The caller's own credentials and trace context: the router authenticates them again.
    for (const h of ['authorization', 'x-api-key', 'traceparent']) {
      const v = req.headers[h];
      if (typeof v === 'string') headers[h] = v;
    }
    const abort = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) abort.abort();
    };
    res.on('close', onClose);
    const target = options.self();
    /** Set once the Responses stream has started (a failure after that is written into it). */
    let conv: ChatStreamToResponses | undefined;
    try {
      const upstream = await request(`${target.origin}/v1/chat/completions`, {
        method: 'POST',
        headers,
        body: JSON.stringify(t.chat),
        signal: abort.signal,
        ...(target.dispatcher ? { dispatcher: target.dispatcher } : {}),
      });
      const relayHeaders: Record<string, string> = {};
      for (const h of ['x-request-id', 'retry-after', OVERHEAD_HEADER]) {
        const v = upstream.headers[h];
        if (typeof v === 'string') relayHeaders[h] = v;
      }
      const type = String(upstream.headers['content-type'] ?? '');
      if (upstream.statusCode !== 200) {
        // Router refusals (401, 400, 402 budget, 403 blocked / no route, 429, 502) keep their status.
        sendJson(res, upstream.statusCode, relayError(await upstream.body.text(), upstream.statusCode), relayHeaders);
        return;
      }
      if (!type.includes('text/event-stream')) {
        const text = await upstream.body.text();
        let completion: Obj;
        try {
          completion = JSON.parse(text) as Obj;
          if (!isObj(completion)) throw new Error('not an object');
        } catch {
          sendJson(res, 502, errorJson('the privacy router answered with a body that is not a chat completion', 'api_error', 'api_error', null), relayHeaders);
          return;
        }
        if (t.stream) {
          // Asked to stream, answered whole (a provider that does not stream): the same events, at once.
          const whole = new ChatStreamToResponses(shell);
          const msg = (Array.isArray(completion.choices) ? (completion.choices[0] as Obj | undefined)?.message : undefined) as Obj | undefined;
          res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', ...relayHeaders });
          const delta = { ...(msg ?? {}), tool_calls: ((msg?.tool_calls as Obj[] | undefined) ?? []).map((tc, index) => ({ ...tc, index })) };
          res.end(
            whole.start() +
              whole.push({ model: completion.model, usage: completion.usage, choices: [{ index: 0, delta, finish_reason: (completion.choices as Obj[] | undefined)?.[0]?.finish_reason }] }) +
              whole.end(),
          );
          return;
        }
        sendJson(res, 200, JSON.stringify(chatToResponse(shell, completion)), relayHeaders);
        return;
      }
      // Streamed.
      res.writeHead(200, { 'content-type': 'text/event-stream; charset=utf-8', 'cache-control': 'no-cache', ...relayHeaders });
      res.flushHeaders();
      const stream = new ChatStreamToResponses(shell);
      conv = stream;
      let out = stream.start();
      let sawDone = false;
      const onEvent = (ev: EventSourceMessage): void => {
        if (stream.finished) return;
        if (ev.data === '[DONE]') {
          sawDone = true;
          out += stream.end();
          return;
        }
        let chunk: unknown;
        try {
          chunk = JSON.parse(ev.data);
        } catch {
          if (ev.data.trim().length > 0) out += stream.fail('api_error', 'the privacy router sent a stream event that is not JSON');
          return;
        }
        if (!isObj(chunk)) return;
        if (isObj(chunk.error)) {
          const e = chunk.error;
          out += stream.fail(typeof e.code === 'string' ? e.code : typeof e.type === 'string' ? e.type : 'api_error', typeof e.message === 'string' ? e.message : 'the stream failed');
          return;
        }
        out += stream.push(chunk);
      };
      const parser = createParser({ onEvent });
      const decoder = new TextDecoder();
      for await (const piece of upstream.body) {
        parser.feed(decoder.decode(piece as Buffer, { stream: true }));
        if (out.length > 0) {
          const ok = res.write(out);
          out = '';
          if (!ok) await new Promise<void>((resolve) => {
            const go = (): void => { res.off('drain', go); res.off('close', go); resolve(); };
            res.on('drain', go);
            res.on('close', go);
          });
        }
        if (res.destroyed) break;
      }
      parser.feed(decoder.decode());
      if (!stream.finished && !sawDone) out += stream.fail('api_error', 'the stream ended before it was complete');
      res.end(out);
    } catch (err) {
      if (abort.signal.aborted || res.destroyed) return;
      // The kind of failure only (no socket path, no Node error text), as the router words its own.
      const code = (err as { code?: unknown }).code;
      const message = `the Responses adapter lost the privacy router (${typeof code === 'string' ? code : 'connection failed'})`;
      if (res.headersSent) res.end(conv && !conv.finished ? conv.fail('api_error', message) : undefined);
      else sendJson(res, 502, errorJson(message, 'api_error', 'api_error', null));
    } finally {
      res.off('close', onClose);
    }
  }

  return (req, res) => {
    const path = (req.url ?? '/').split('?')[0]!;
    const marker = req.headers[INTERNAL_HEADER];
    if (marker !== undefined) {
      delete req.headers[INTERNAL_HEADER];
      const [given, responseId] = typeof marker === 'string' ? marker.split(' ') : [];
      if (given !== undefined && responseId !== undefined && given.length === secret.length && tokensEqual(given, secret) && path === '/v1/chat/completions') {
        clientApi.run({ api: RESPONSES_API, responseId }, () => options.router.handle(req, res));
        return;
      }
    }
    if (path === RESPONSES_PATH && req.method === 'POST') {
      handleResponses(req, res).catch((err: unknown) => {
        if (!res.writableEnded) sendJson(res, 500, errorJson(`privacy router internal error: ${(err as Error).message}`, 'api_error', 'api_error', null));
      });
      return;
    }
    options.router.handle(req, res);
  };
}
