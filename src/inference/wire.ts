/**
 * The wire formats the router speaks to the sandbox: OpenAI chat completions / completions /
 * embeddings / models and Anthropic messages. Requests are validated with zod (loose: unknown fields
 * pass through to the provider), errors are written in the caller's own format, and every piece of
 * text a provider would see is exposed as a slot that the classifier reads and the redactor rewrites.
 */
import { isUtf8 } from 'node:buffer';
import type { IncomingMessage } from 'node:http';
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
//
// The body is walked generically: EVERY string value and EVERY object key becomes a slot, so a wire
// field the router has never heard of is scanned (and redactable) by default. Knowledge of the wire
// formats is used only to label slots (role), to group them for scanning, and to decode the encoded
// carriers of text: base64 text documents, `data:` URLs, long base64 strings, token-id arrays. What
// cannot be read as text (images, PDFs, audio, binary base64, byte arrays, token ids outside the
// known vocabularies) is listed as uninspectable and follows the policy's `inference.uninspectable`.

export type SlotRole =
  | 'system'
  | 'user'
  | 'assistant'
  | 'tool_call'
  | 'tool_result'
  | 'tools'
  | 'prompt'
  | 'input'
  /** Every other field of the request (`user`, `metadata`, `prediction`, `response_format`, unknown ones). */
  | 'metadata';

export interface TextSlot {
  role: SlotRole;
  /** Where it sits in the body (`messages[2].content[0].source.data`); keys outside the wire vocabulary show as `*`, never their text. */
  path: string;
  /** An object key rather than a value. */
  key?: boolean;
  /** Text decoded from an encoded carrier; `set` encodes the new text the same way. */
  decoded?: 'base64' | 'data_url' | 'o200k' | 'cl100k';
  text: string;
  /** Rewrite this string in the body (a key is renamed in place, keeping the key order). */
  set(text: string): void;
}

/** Consecutive slots scanned as one text (joined by newlines): one message, the tools, the rest. */
export interface SlotGroup {
  from: number;
  to: number;
  /** Its tokens count toward the prompt estimate (false for metadata and decoded token ids). */
  counted: boolean;
}

/** Content the router cannot read as text: where, and what (never the content). */
export interface UninspectablePart {
  path: string;
  what: string;
}

export interface TokenCodec {
  decode(ids: number[]): string;
  encode(text: string): number[];
}
export interface TokenDecoders {
  o200k: TokenCodec;
  cl100k: TokenCodec;
}

let decodersLoading: Promise<TokenDecoders> | undefined;

/**
 * gpt-tokenizer's o200k and cl100k codecs for token-id prompts, loaded on first need (not at import:
 * the policy engine imports this module to validate policies).
 */
export function loadTokenDecoders(): Promise<TokenDecoders> {
  decodersLoading ??= Promise.all([import('gpt-tokenizer'), import('gpt-tokenizer/encoding/cl100k_base')]).then(([o, c]) => {
    const codec = (m: { decode(ids: number[]): string; encode(text: string, opts?: { allowedSpecial?: Set<string> }): number[]; ALL_SPECIAL_TOKENS?: unknown }): TokenCodec => ({
      decode: (ids) => m.decode(ids),
      encode: (text) => m.encode(text, { allowedSpecial: (m.ALL_SPECIAL_TOKENS ?? 'all') as Set<string> }),
    });
    return { o200k: codec(o as never), cl100k: codec(c as never) };
  });
  return decodersLoading;
}

const isTokenIds = (v: unknown): v is number[] => Array.isArray(v) && v.length > 0 && v.every((n) => Number.isInteger(n));

/** Whether the body carries token-id arrays (then `loadTokenDecoders()` must be awaited first). */
export function needsTokenDecoders(api: ApiKind, body: Obj): boolean {
  const v = api === 'openai.completions' ? body.prompt : api === 'openai.embeddings' ? body.input : undefined;
  return isTokenIds(v) || (Array.isArray(v) && v.some(isTokenIds));
}

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);

/** Wire keys are lower-case snake_case; anything else (a key inside tool input, metadata) may be data. */
const pathKey = (k: string): string => (/^[a-z_]{1,32}$/.test(k) ? k : '*');

/** Media types whose bytes are text to scan (RFC 2397: an empty one means text/plain). */
function isTextMedia(mediaType: string): boolean {
  const mt = mediaType.trim().toLowerCase();
  return (
    mt === '' ||
    mt.startsWith('text/') ||
    /^application\/(json|xml|x-yaml|yaml|javascript|ecmascript|x-sh|x-python|csv|x-ndjson|ndjson|sql|graphql|toml|x-toml)$/.test(mt) ||
    /\+(json|xml|yaml)$/.test(mt)
  );
}

/** Decoded bytes that read as text: valid UTF-8 without NULs or other C0 controls beyond whitespace. */
function bytesAsText(bytes: Buffer): string | undefined {
  if (!isUtf8(bytes)) return undefined;
  const text = bytes.toString('utf8');
  // eslint-disable-next-line no-control-regex
  return /[\u0000-\u0008\u000e-\u001f]/.test(text) ? undefined : text;
}

/** A long unbroken base64 (or base64url) run: an encoded blob rather than prose. */
const BASE64_BLOB = /^[A-Za-z0-9+/_-]{256,}={0,2}$/;
const urlSafe = (s: string): boolean => /[_-]/.test(s);
function toBase64(text: string, like: string): string {
  return Buffer.from(text, 'utf8').toString(urlSafe(like) ? 'base64url' : 'base64');
}

const DATA_URL = /^data:([^,;]*)((?:;[^,;]*)*),(.*)$/s;

/** Where a value sits, built only when a path is shown (most slots never need theirs). */
interface Path {
  up: Path | undefined;
  /** `.key` or `[i]`. */
  seg: string;
}
const ROOT: Path | undefined = undefined;
const at = (up: Path | undefined, key: string): Path => ({ up, seg: up ? `.${pathKey(key)}` : pathKey(key) });
const atIndex = (up: Path | undefined, i: number): Path => ({ up, seg: `[${i}]` });
function render(p: Path | undefined): string {
  const segs: string[] = [];
  for (let n = p; n; n = n.up) segs.push(n.seg);
  return segs.reverse().join('');
}

/**
 * Words of the wire formats themselves (field names, roles, block types, JSON-schema keywords): such
 * a key or value cannot carry anything a detector looks for, so it is not made a slot (the walk is
 * then about as cheap as the old role-aware extraction). Everything else is.
 */
const WIRE_WORDS = new Set([
  // keys
  'model', 'messages', 'role', 'content', 'type', 'text', 'name', 'function', 'arguments', 'tool_calls', 'tool_call_id', 'id',
  'parameters', 'properties', 'description', 'required', 'enum', 'items', 'stream', 'stream_options', 'include_usage',
  'max_tokens', 'max_completion_tokens', 'temperature', 'top_p', 'top_k', 'n', 'stop', 'stop_sequences', 'tools', 'tool_choice',
  'system', 'source', 'media_type', 'data', 'url', 'image_url', 'detail', 'file', 'file_id', 'filename', 'file_data',
  'input_audio', 'format', 'input', 'tool_use_id', 'is_error', 'cache_control', 'thinking', 'signature', 'citations', 'title',
  'context', 'metadata', 'user_id', 'strict', 'additionalProperties', 'default', 'minimum', 'maximum', 'anyOf', 'oneOf',
  'allOf', '$ref', '$defs', 'definitions', 'prompt', 'encoding_format', 'dimensions', 'seed', 'logprobs', 'top_logprobs',
  'frequency_penalty', 'presence_penalty', 'response_format', 'json_schema', 'schema', 'refusal', 'reasoning_content',
  'prediction', 'parallel_tool_calls', 'user', 'budget_tokens', 'functions', 'function_call', 'disable_parallel_tool_use',
  'input_schema', 'ttl', 'enabled', 'index', 'audio', 'modalities', 'reasoning_effort', 'service_tier', 'store', 'logit_bias',
  // values
  'developer', 'assistant', 'tool', 'image', 'document', 'object', 'string', 'integer', 'number', 'boolean', 'array', 'null',
  'auto', 'any', 'none', 'tool_use', 'tool_result', 'redacted_thinking', 'base64', 'ephemeral', 'search_result', 'json_object',
  'text/plain', 'application/pdf', 'image/png', 'image/jpeg', 'image/gif', 'image/webp', 'low', 'high', 'medium', 'float',
]);

function renameKey(obj: Obj, ref: { key: string }, next: string): void {
  if (next === ref.key) return;
  const entries = Object.entries(obj);
  for (const [k] of entries) delete obj[k];
  for (const [k, v] of entries) obj[k === ref.key ? next : k] = v;
  ref.key = next;
}

class Slot implements TextSlot {
  constructor(
    public role: SlotRole,
    private readonly where: Path | undefined,
    public readonly text: string,
    public readonly set: (text: string) => void,
    public readonly key?: boolean,
    public readonly decoded?: TextSlot['decoded'],
  ) {}

  get path(): string {
    return render(this.where);
  }
}

class BodyWalker {
  readonly slots: TextSlot[] = [];
  readonly groups: SlotGroup[] = [];
  readonly uninspectable: UninspectablePart[] = [];
  /** Prompt tokens known without scanning: token ids and per-message framing. */
  extraTokens = 0;
  /** Decoded token-id readings: scanned, never counted (the ids are). */
  private readonly tokenSlots: TextSlot[] = [];
  /** Values a carrier handler took care of (not walked as plain strings). */
  private readonly handled = new WeakMap<object, Set<string>>();

  constructor(private readonly decoders: TokenDecoders | undefined) {}

  group(counted: boolean, fn: () => void): void {
    const from = this.slots.length;
    fn();
    if (this.slots.length > from) this.groups.push({ from, to: this.slots.length, counted });
    if (counted) this.extraTokens += 4; // role markers, as OpenAI counts them
  }

  finish(): void {
    if (this.tokenSlots.length === 0) return;
    const from = this.slots.length;
    this.slots.push(...this.tokenSlots);
    this.groups.push({ from, to: this.slots.length, counted: false });
  }

  slot(out: TextSlot[], role: SlotRole, where: Path | undefined, text: string, set: (t: string) => void, extra?: { key?: true; decoded?: TextSlot['decoded'] }): void {
    out.push(new Slot(role, where, text, set, extra?.key, extra?.decoded));
  }

  private skip(obj: Obj, key: string): void {
    let s = this.handled.get(obj);
    if (!s) this.handled.set(obj, (s = new Set()));
    s.add(key);
  }

  private opaque(where: Path | undefined, what: string): void {
    this.uninspectable.push({ path: render(where), what });
  }

  /** `raw`: a provider-issued opaque string (thinking signatures): scanned as it is, never decoded. */
  value(v: unknown, role: SlotRole, where: Path | undefined, write: (next: unknown) => void, raw = false): void {
    if (typeof v === 'string') {
      if (raw) this.slot(this.slots, role, where, v, write);
      else this.string(v, role, where, write);
    } else if (Array.isArray(v)) this.array(v, role, where);
    else if (isObj(v)) this.object(v, role, where);
  }

  /** A `prompt` / `input` field: strings, token ids, or arrays of either. */
  promptField(holder: Obj, key: string, role: SlotRole): void {
    const v = holder[key];
    const where = at(ROOT, key);
    if (isTokenIds(v)) this.tokenIds(v, role, where, (next) => (holder[key] = next));
    else if (Array.isArray(v) && v.some(isTokenIds)) {
      v.forEach((el, i) => {
        if (isTokenIds(el)) this.tokenIds(el, role, atIndex(where, i), (next) => (v[i] = next));
        else this.value(el, role, atIndex(where, i), (next) => (v[i] = next));
      });
    } else this.value(v, role, where, (next) => (holder[key] = next));
  }

  private tokenIds(ids: number[], role: SlotRole, where: Path, write: (next: unknown) => void): void {
    this.extraTokens += ids.length;
    if (!this.decoders) throw new Error('token-id prompt inspected before loadTokenDecoders()');
    let readable = false;
    for (const name of ['o200k', 'cl100k'] as const) {
      const codec = this.decoders[name];
      let text: string;
      try {
        text = codec.decode(ids);
      } catch {
        continue; // ids outside this vocabulary
      }
      readable = true;
      this.slot(this.tokenSlots, role, where, text, (t) => write(codec.encode(t)), { decoded: name });
    }
    if (!readable) this.opaque(where, 'token ids outside the o200k and cl100k vocabularies');
  }

  private string(s: string, role: SlotRole, where: Path | undefined, write: (next: unknown) => void): void {
    if (s.length < 32 && WIRE_WORDS.has(s)) return;
    if (s.startsWith('data:')) {
      const m = DATA_URL.exec(s);
      if (m) {
        const [, mediaType = '', params = '', payload = ''] = m;
        const base64 = /;base64$/i.test(params);
        if (!isTextMedia(mediaType)) return this.opaque(where, `data: URL (${mediaType || 'text/plain'})`);
        let text: string | undefined;
        try {
          text = base64 ? bytesAsText(Buffer.from(payload, 'base64')) : decodeURIComponent(payload);
        } catch {
          text = undefined;
        }
        if (text === undefined) return this.opaque(where, `data: URL (${mediaType || 'text/plain'}) that is not text`);
        const head = `data:${mediaType}${params},`;
        this.slot(this.slots, role, where, text, (t) => write(head + (base64 ? Buffer.from(t, 'utf8').toString('base64') : encodeURIComponent(t))), { decoded: 'data_url' });
        return;
      }
    }
    if (s.length >= 256 && BASE64_BLOB.test(s)) {
      const text = bytesAsText(Buffer.from(s, urlSafe(s) ? 'base64url' : 'base64'));
      if (text === undefined) return this.opaque(where, 'base64 data that is not text');
      this.slot(this.slots, role, where, text, (t) => write(toBase64(t, s)), { decoded: 'base64' });
      return;
    }
    this.slot(this.slots, role, where, s, write);
  }

  private array(arr: unknown[], role: SlotRole, where: Path | undefined): void {
    // A run of integers outside prompt/input: bytes or token ids of some tokenizer, text nobody can read.
    if (arr.length >= 16 && arr.every((n) => Number.isInteger(n))) return this.opaque(where, `array of ${arr.length} integers (bytes or token ids)`);
    arr.forEach((el, i) => this.value(el, role, atIndex(where, i), (next) => (arr[i] = next)));
  }

  /** Known carriers of encoded content inside one object (a content block or part). */
  private carriers(obj: Obj, role: SlotRole, where: Path | undefined): void {
    const type = obj.type;
    const source = obj.source;
    if ((type === 'image' || type === 'document') && isObj(source) && source.type === 'base64' && typeof source.data === 'string') {
      const mediaType = typeof source.media_type === 'string' ? source.media_type : '';
      const dataAt = at(at(where, 'source'), 'data');
      this.skip(source, 'data');
      const data = source.data;
      const text = isTextMedia(mediaType) && type === 'document' ? bytesAsText(Buffer.from(data, 'base64')) : undefined;
      if (text === undefined) return this.opaque(dataAt, `${type} (${mediaType || 'no media type'})`);
      this.slot(this.slots, role, dataAt, text, (t) => (source.data = Buffer.from(t, 'utf8').toString('base64')), { decoded: 'base64' });
      return;
    }
    if (type === 'input_audio' && isObj(obj.input_audio) && typeof obj.input_audio.data === 'string') {
      this.skip(obj.input_audio, 'data');
      return this.opaque(at(at(where, 'input_audio'), 'data'), `audio (${String(obj.input_audio.format ?? 'unknown format')})`);
    }
    const file = obj.file;
    if (type === 'file' && isObj(file) && typeof file.file_data === 'string' && !file.file_data.startsWith('data:')) {
      // Raw base64 file contents: text is decoded and scanned, anything else cannot be.
      const data = file.file_data;
      this.skip(file, 'file_data');
      const dataAt = at(at(where, 'file'), 'file_data');
      const text = bytesAsText(Buffer.from(data, 'base64'));
      if (text === undefined || /\.pdf$/i.test(String(file.filename ?? ''))) return this.opaque(dataAt, 'file (binary)');
      this.slot(this.slots, role, dataAt, text, (t) => (file.file_data = Buffer.from(t, 'utf8').toString('base64')), { decoded: 'base64' });
    }
  }

  object(obj: Obj, role: SlotRole, where: Path | undefined): void {
    let r = role;
    const type = obj.type;
    if (type === 'tool_use' || type === 'server_tool_use' || type === 'mcp_tool_use') r = 'tool_call';
    else if (typeof type === 'string' && type.endsWith('tool_result')) r = 'tool_result';
    this.carriers(obj, r, where);
    const handled = this.handled.get(obj);
    // Provider-issued opaque strings (signed thinking, redacted thinking): scanned, never decoded.
    const opaqueKey = type === 'thinking' ? 'signature' : type === 'redacted_thinking' ? 'data' : undefined;
    for (const k of Object.keys(obj)) {
      const ref = { key: k };
      const kAt = at(where, k);
      if (!WIRE_WORDS.has(k)) this.slot(this.slots, r, kAt, k, (t) => renameKey(obj, ref, t), { key: true });
      if (handled?.has(k)) continue;
      const childRole: SlotRole = k === 'tool_calls' || k === 'function_call' ? 'tool_call' : r;
      this.value(obj[k], childRole, kAt, (next) => (obj[ref.key] = next), k === opaqueKey);
    }
  }
}

export interface RequestFacts {
  slots: TextSlot[];
  /** How slots are scanned: consecutive runs joined into one text each. */
  groups: SlotGroup[];
  /** Content no detector can read (images, PDFs, audio, binary blobs); empty when all is text. */
  uninspectable: UninspectablePart[];
  /** Prompt tokens known without scanning (token-id arrays, per-message framing). */
  extraTokens: number;
  /** Offers tools, or carries tool calls / results. */
  usesTools: boolean;
  stream: boolean;
  /** Completion cap the caller asked for, if any. */
  maxOutputTokens: number | undefined;
}

const OPENAI_ROLES: Record<string, SlotRole> = { system: 'system', developer: 'system', user: 'user', assistant: 'assistant', tool: 'tool_result', function: 'tool_result' };

/**
 * Collect slots from a (validated) request body; setters rewrite that body in place. A body with
 * token-id arrays (`needsTokenDecoders`) needs the decoders from `loadTokenDecoders()`.
 */
export function inspectRequest(api: ApiKind, body: Obj, decoders?: TokenDecoders): RequestFacts {
  const w = new BodyWalker(decoders);
  let usesTools = false;
  const rest: string[] = [];
  for (const key of Object.keys(body)) {
    const v = body[key];
    if (key === 'messages' && Array.isArray(v)) {
      v.forEach((msg, i) => {
        const role: SlotRole = isObj(msg) ? (OPENAI_ROLES[String(msg.role)] ?? 'user') : 'user';
        if (isObj(msg)) {
          if (msg.role === 'tool' || msg.role === 'function' || msg.tool_calls !== undefined || msg.function_call !== undefined) usesTools = true;
          if (Array.isArray(msg.content) && msg.content.some((b) => isObj(b) && (b.type === 'tool_use' || b.type === 'tool_result'))) usesTools = true;
        }
        w.group(true, () => w.value(msg, role, atIndex(at(ROOT, 'messages'), i), (next) => (v[i] = next)));
      });
    } else if (key === 'system') {
      w.group(true, () => w.value(v, 'system', at(ROOT, 'system'), (next) => (body.system = next)));
    } else if (key === 'tools' || key === 'functions') {
      if (Array.isArray(v) && v.length > 0) usesTools = true;
      w.group(true, () => w.value(v, 'tools', at(ROOT, key), (next) => (body[key] = next)));
    } else if ((key === 'prompt' && api === 'openai.completions') || (key === 'input' && api === 'openai.embeddings')) {
      w.group(true, () => w.promptField(body, key, key === 'prompt' ? 'prompt' : 'input'));
    } else rest.push(key);
  }
  // Every other field, and every top-level key: scanned together, not counted.
  w.group(false, () => {
    for (const key of Object.keys(body)) {
      const ref = { key };
      if (!WIRE_WORDS.has(key)) w.slot(w.slots, 'metadata', at(ROOT, key), key, (t) => renameKey(body, ref, t), { key: true });
    }
    for (const key of rest) w.value(body[key], 'metadata', at(ROOT, key), (next) => (body[key] = next));
  });
  w.finish();
  const max =
    (body.max_completion_tokens as number | null | undefined) ?? (body.max_tokens as number | null | undefined) ?? undefined;
  return {
    slots: w.slots,
    groups: w.groups,
    uninspectable: w.uninspectable,
    extraTokens: w.extraTokens,
    usesTools,
    stream: body.stream === true && api !== 'openai.embeddings',
    maxOutputTokens: max === null ? undefined : max,
  };
}

/** The text of one slot group as scanned: its slots joined by newlines, with each slot's offset. */
export function groupText(facts: RequestFacts, g: SlotGroup): { text: string; offsets: number[] } {
  if (g.to - g.from === 1) return { text: facts.slots[g.from]!.text, offsets: [0] };
  const offsets: number[] = [];
  let text = '';
  for (let i = g.from; i < g.to; i++) {
    if (i > g.from) text += '\n';
    offsets.push(text.length);
    text += facts.slots[i]!.text;
  }
  return { text, offsets };
}

/**
 * Detections on a group's text, split onto its slots (offsets relative to each slot; a detection
 * that runs over a slot boundary is cut at it, each piece kept).
 */
export function splitDetections<D extends { start: number; end: number; value: string }>(facts: RequestFacts, g: SlotGroup, offsets: number[], detections: readonly D[]): D[][] {
  const out: D[][] = offsets.map(() => []);
  for (const d of detections) {
    for (let j = 0; j < offsets.length; j++) {
      const slot = facts.slots[g.from + j]!;
      const s0 = offsets[j]!;
      const s1 = s0 + slot.text.length;
      if (d.end <= s0 || d.start >= s1) continue;
      const start = Math.max(d.start, s0) - s0;
      const end = Math.min(d.end, s1) - s0;
      if (end > start) out[j]!.push({ ...d, start, end, value: slot.text.slice(start, end) });
    }
  }
  return out;
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

// ---------------------------------------------------------------------------------------------
// Reading a request body (the router and the Responses adapter alike).

/** Largest request body the router reads (OpenClaw's biggest contexts are a few MB). */
export const MAX_BODY_BYTES = 32 * 1024 * 1024;

/** The whole body; throws an Error with `tooLarge: true` past MAX_BODY_BYTES. */
export async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY_BYTES) throw Object.assign(new Error('request body too large'), { tooLarge: true });
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}
