/**
 * The wire formats the router speaks to the sandbox: OpenAI chat completions / completions /
 * embeddings / models and Anthropic messages. Requests are validated with zod (loose: unknown fields
 * pass through to the provider), errors are written in the caller's own format, and every piece of
 * text a provider would see is exposed as a slot that the classifier reads and the redactor rewrites.
 */
import { isUtf8 } from 'node:buffer';
import { z } from 'zod';

export type ApiKind = 'openai.chat' | 'openai.completions' | 'openai.embeddings' | 'anthropic.messages';
export type WireFamily = 'openai' | 'anthropic';

export function familyOf(api: ApiKind): WireFamily {
  return api === 'anthropic.messages' ? 'anthropic' : 'openai';
}

const openaiPart = z.looseObject({ type: z.string() });
const openaiToolCall = z.looseObject({
  id: z.string().optional(),
  type: z.string().optional(),
  function: z.looseObject({ name: z.string(), arguments: z.string() }),
});
const openaiMessage = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool', 'function']),
  content: z.union([z.string(), z.array(openaiPart), z.null()]).optional(),
  tool_calls: z.array(openaiToolCall).optional(),
  tool_call_id: z.string().optional(),
  name: z.string().optional(),
});

export const openaiChatRequest = z.looseObject({
  model: z.string().min(1),
  messages: z.array(openaiMessage).min(1),
  stream: z.boolean().optional(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullable().optional(),
  tools: z.array(z.looseObject({ type: z.string() })).optional(),
  max_tokens: z.number().int().positive().nullable().optional(),
  max_completion_tokens: z.number().int().positive().nullable().optional(),
});

const tokenArray = z.array(z.number().int());
export const openaiCompletionsRequest = z.looseObject({
  model: z.string().min(1),
  prompt: z.union([z.string(), z.array(z.string()), tokenArray, z.array(tokenArray)]),
  stream: z.boolean().optional(),
  stream_options: z.looseObject({ include_usage: z.boolean().optional() }).nullable().optional(),
  max_tokens: z.number().int().positive().nullable().optional(),
});

export const openaiEmbeddingsRequest = z.looseObject({
  model: z.string().min(1),
  input: z.union([z.string(), z.array(z.string()), tokenArray, z.array(tokenArray)]),
});

const anthropicBlock = z.looseObject({ type: z.string() });
export const anthropicMessagesRequest = z.looseObject({
  model: z.string().min(1),
  max_tokens: z.number().int().positive(),
  messages: z
    .array(
      z.looseObject({
        role: z.enum(['user', 'assistant']),
        content: z.union([z.string(), z.array(anthropicBlock)]),
      }),
    )
    .min(1),
  system: z.union([z.string(), z.array(z.looseObject({ type: z.string(), text: z.string().optional() }))]).optional(),
  stream: z.boolean().optional(),
  tools: z.array(z.looseObject({ name: z.string() })).optional(),
});

export const REQUEST_SCHEMAS = {
  'openai.chat': openaiChatRequest,
  'openai.completions': openaiCompletionsRequest,
  'openai.embeddings': openaiEmbeddingsRequest,
  'anthropic.messages': anthropicMessagesRequest,
} as const;

export function describeZodError(error: z.ZodError): string {
  return error.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join('.') : '(body)'}: ${i.message}`)
    .join('; ');
}

// ---------------------------------------------------------------------------------------------
// Errors in the caller's format.

export type ErrorKind =
  | 'invalid_request'
  | 'authentication'
  | 'permission'
  | 'not_found'
  | 'budget'
  | 'rate_limit'
  | 'upstream'
  | 'overloaded';

const OPENAI_TYPES: Record<ErrorKind, string> = {
  invalid_request: 'invalid_request_error',
  authentication: 'authentication_error',
  permission: 'permission_error',
  not_found: 'not_found_error',
  budget: 'budget_exceeded',
  rate_limit: 'rate_limit_error',
  upstream: 'api_error',
  overloaded: 'api_error',
};

const ANTHROPIC_TYPES: Record<ErrorKind, string> = {
  invalid_request: 'invalid_request_error',
  authentication: 'authentication_error',
  permission: 'permission_error',
  not_found: 'not_found_error',
  budget: 'billing_error',
  rate_limit: 'rate_limit_error',
  upstream: 'api_error',
  overloaded: 'overloaded_error',
};

export function errorBody(family: WireFamily, kind: ErrorKind, message: string, code?: string): Record<string, unknown> {
  if (family === 'anthropic') return { type: 'error', error: { type: ANTHROPIC_TYPES[kind], message } };
  return { error: { message, type: OPENAI_TYPES[kind], param: null, code: code ?? OPENAI_TYPES[kind] } };
}

/** An error as an SSE event, for failures after a stream has started. */
export function errorEvent(family: WireFamily, kind: ErrorKind, message: string, code?: string): string {
  const body = JSON.stringify(errorBody(family, kind, message, code));
  return family === 'anthropic' ? `event: error\ndata: ${body}\n\n` : `data: ${body}\n\n`;
}

// ---------------------------------------------------------------------------------------------
// Text slots: every string a provider would see, with where it came from.

export type SlotRole = 'system' | 'user' | 'assistant' | 'tool_call' | 'tool_result' | 'tools' | 'prompt' | 'input';

export interface TextSlot {
  role: SlotRole;
  text: string;
  set(text: string): void;
}

type Obj = Record<string, unknown>;

function stringSlots(holder: Obj, key: string, role: SlotRole, out: TextSlot[]): void {
  const v = holder[key];
  if (typeof v === 'string') out.push({ role, text: v, set: (t) => (holder[key] = t) });
}

/** Every string leaf of a JSON value (tool_use input, tool_result structured content). */
function leafSlots(value: unknown, role: SlotRole, out: TextSlot[]): void {
  if (Array.isArray(value)) {
    value.forEach((v, i) => {
      if (typeof v === 'string') out.push({ role, text: v, set: (t) => (value[i] = t) });
      else leafSlots(v, role, out);
    });
  } else if (value !== null && typeof value === 'object') {
    for (const k of Object.keys(value)) {
      const v = (value as Obj)[k];
      if (typeof v === 'string') out.push({ role, text: v, set: (t) => ((value as Obj)[k] = t) });
      else leafSlots(v, role, out);
    }
  }
}

function openaiContentSlots(msg: Obj, role: SlotRole, out: TextSlot[]): void {
  const content = msg.content;
  if (typeof content === 'string') stringSlots(msg, 'content', role, out);
  else if (Array.isArray(content)) {
    for (const part of content as Obj[]) {
      if (part.type === 'text') stringSlots(part, 'text', role, out);
      else if (part.type === 'input_text') stringSlots(part, 'text', role, out);
    }
  }
}

function anthropicBlockSlots(block: Obj, role: SlotRole, out: TextSlot[]): void {
  switch (block.type) {
    case 'text':
      stringSlots(block, 'text', role, out);
      break;
    case 'thinking':
      stringSlots(block, 'thinking', role, out);
      break;
    case 'tool_use':
      leafSlots(block.input, 'tool_call', out);
      break;
    case 'tool_result':
      if (typeof block.content === 'string') stringSlots(block, 'content', 'tool_result', out);
      else if (Array.isArray(block.content)) for (const b of block.content as Obj[]) anthropicBlockSlots(b, 'tool_result', out);
      break;
    default:
      break;
  }
}

export interface RequestFacts {
  slots: TextSlot[];
  /** Offers tools, or carries tool calls / results. */
  usesTools: boolean;
  stream: boolean;
  /** Completion cap the caller asked for, if any. */
  maxOutputTokens: number | undefined;
}

/** Collect slots from a (cloned, validated) request body; setters rewrite that body in place. */
export function inspectRequest(api: ApiKind, body: Obj): RequestFacts {
  const slots: TextSlot[] = [];
  let usesTools = false;
  if (api === 'openai.chat') {
    for (const msg of body.messages as Obj[]) {
      const role = msg.role as string;
      if (role === 'tool' || role === 'function') {
        usesTools = true;
        openaiContentSlots(msg, 'tool_result', slots);
      } else if (role === 'assistant') {
        openaiContentSlots(msg, 'assistant', slots);
        for (const call of (msg.tool_calls as Obj[] | undefined) ?? []) {
          usesTools = true;
          stringSlots(call.function as Obj, 'arguments', 'tool_call', slots);
        }
      } else openaiContentSlots(msg, role === 'user' ? 'user' : 'system', slots);
    }
    if (Array.isArray(body.tools) && body.tools.length > 0) usesTools = true;
  } else if (api === 'anthropic.messages') {
    if (typeof body.system === 'string') stringSlots(body, 'system', 'system', slots);
    else if (Array.isArray(body.system)) for (const b of body.system as Obj[]) stringSlots(b, 'text', 'system', slots);
    for (const msg of body.messages as Obj[]) {
      const role: SlotRole = msg.role === 'assistant' ? 'assistant' : 'user';
      if (typeof msg.content === 'string') stringSlots(msg, 'content', role, slots);
      else {
        for (const block of msg.content as Obj[]) {
          if (block.type === 'tool_use' || block.type === 'tool_result') usesTools = true;
          anthropicBlockSlots(block, role, slots);
        }
      }
    }
    if (Array.isArray(body.tools) && body.tools.length > 0) usesTools = true;
  } else if (api === 'openai.completions') {
    if (typeof body.prompt === 'string') stringSlots(body, 'prompt', 'prompt', slots);
    else if (Array.isArray(body.prompt)) leafSlots(body.prompt, 'prompt', slots);
  } else {
    if (typeof body.input === 'string') stringSlots(body, 'input', 'input', slots);
    else if (Array.isArray(body.input)) leafSlots(body.input, 'input', slots);
  }
  // Tool definitions count as prompt tokens and may carry descriptions worth scanning.
  if (Array.isArray(body.tools) && body.tools.length > 0) {
    const text = JSON.stringify(body.tools);
    slots.push({ role: 'tools', text, set: () => undefined });
  }
  const max =
    (body.max_completion_tokens as number | null | undefined) ?? (body.max_tokens as number | null | undefined) ?? undefined;
  return {
    slots,
    usesTools,
    stream: body.stream === true && api !== 'openai.embeddings',
    maxOutputTokens: max === null ? undefined : max,
  };
}

// ---------------------------------------------------------------------------------------------
// Forwarding a request body unchanged.

/**
 * Whether a request body may go upstream byte for byte instead of being serialised again (which
 * costs ~50-100 µs for an OpenClaw-sized body on every call). Only when the provider is certain to
 * read exactly what the classifier read: valid UTF-8 (no replacement characters that a lenient
 * decoder could read differently) and no object with the same key twice (JSON.parse keeps the last
 * one; a parser that keeps the first would see text nobody scanned). Strings are skipped with
 * indexOf, so the check costs a fraction of a serialisation.
 */
export function forwardableAsIs(raw: Buffer, text: string): boolean {
  if (!isUtf8(raw)) return false;
  // Keys of each open object; undefined for an array.
  const stack: Array<Set<string> | undefined> = [];
  let keyNext = false;
  const n = text.length;
  for (let i = 0; i < n; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x22 /* " */) {
      let j = i + 1;
      for (;;) {
        j = text.indexOf('"', j);
        if (j < 0) return false;
        let backslashes = 0;
        for (let k = j - 1; text.charCodeAt(k) === 0x5c; k--) backslashes++;
        if (backslashes % 2 === 0) break;
        j++;
      }
      const keys = stack[stack.length - 1];
      if (keyNext && keys) {
        let key = text.slice(i + 1, j);
        if (key.includes('\\')) {
          try {
            key = JSON.parse(`"${key}"`) as string;
          } catch {
            return false;
          }
        }
        if (keys.has(key)) return false;
        keys.add(key);
        keyNext = false;
      }
      i = j;
    } else if (c === 0x7b /* { */) {
      stack.push(new Set());
      keyNext = true;
    } else if (c === 0x5b /* [ */) {
      stack.push(undefined);
      keyNext = false;
    } else if (c === 0x7d /* } */ || c === 0x5d /* ] */) {
      stack.pop();
      keyNext = false;
    } else if (c === 0x2c /* , */) {
      keyNext = stack[stack.length - 1] !== undefined;
    }
  }
  return true;
}

const INCLUDE_USAGE = Buffer.from(',"stream_options":{"include_usage":true}}');

/** `raw` (a JSON object without `stream_options`) with `"stream_options":{"include_usage":true}` added. */
export function withIncludeUsage(raw: Buffer): Buffer {
  const end = raw.lastIndexOf(0x7d /* } */);
  return Buffer.concat([raw.subarray(0, end), INCLUDE_USAGE]);
}
