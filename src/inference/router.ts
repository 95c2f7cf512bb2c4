/**
 * The privacy router: an HTTP handler for `inference.local`. For each call it authenticates the
 * sandbox's token, validates the body, classifies every message (cached by content hash), picks a
 * route (first match wins), redacts for cloud routes, checks budgets and rate limits, calls the
 * provider with the real key, relays the response (restoring placeholders, counting tokens, cutting
 * the stream when a budget runs out) and emits one `inference.route` and one `inference.done` event.
 *
 * Transport-agnostic: the supervisor binds it to a Unix socket, tests and benches to loopback TCP.
 */
import { randomBytes } from 'node:crypto';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createParser, type EventSourceMessage } from 'eventsource-parser';
import { Agent, request, type Dispatcher } from 'undici';
import type { EventInput } from '../audit/events.js';
import { systemClock, type Clock } from '../shared/clock.js';
import { isNemoclawError } from '../shared/errors.js';
import { BudgetLedger, RateLimiter, type BudgetBreach, type BudgetScope, type BudgetSnapshot, type CallUsage } from './budget.js';
import { loadTokenizer } from './tokenizer.js';
import { presentedToken, tokensEqual, type CredentialSource } from './credentials.js';
import { Classifier, type Classification, type Detection } from './detect.js';
import { RedactionMap, StreamRestorer } from './redact.js';
import {
  anthropicMessageToOpenAi,
  anthropicStreamToOpenAi,
  anthropicToOpenAiChat,
  canTranslate,
  errorKindForStatus,
  openAiChatToAnthropic,
  openAiCompletionToAnthropic,
  openAiStreamToAnthropic,
  bodyExcerpt,
  readProviderError,
  type StreamTranslator,
} from './translate.js';
import { classifyUpstreamError, scrubUpstreamAddress } from './upstream-error.js';
import { blockedStatus, sendBlockedReply } from './block-reply.js';
import { validateInferencePolicy, type BudgetCaps, type EntityKind, type InferenceConfig, type ProviderConfig, type RouteConfig } from './schema.js';
import {
  REQUEST_SCHEMAS,
  describeZodError,
  errorBody,
  forwardableAsIs,
  withIncludeUsage,
  errorEvent,
  familyOf,
  inspectRequest,
  groupText,
  loadTokenDecoders,
  needsTokenDecoders,
  splitDetections,
  readBody,
  MAX_BODY_BYTES,
  type ApiKind,
  type RequestFacts,
  type SlotGroup,
  type ErrorKind,
  type WireFamily,
} from './wire.js';

export const OVERHEAD_HEADER = 'x-nemoclaw-router-overhead-ms';
/** Minimum spacing of transient budget.update events while tokens flow (≥ 1/s required). */
const BUDGET_UPDATE_INTERVAL_MS = 250;
const NO_EXTRA = Object.freeze({ tokens: 0, usd: 0 });

export interface RouterOptions {
  /** The raw policy `inference` section (validated here). */
  policy: unknown;
  credentials: CredentialSource;
  /** The per-sandbox token the caller must present. */
  sandboxToken: string;
  clock?: Clock;
  /** Audited events (inference.route/done, budget.exceeded, one budget.update per call). */
  emit?: (event: EventInput) => void;
  /** Write-ahead gate: resolves once every emitted event is durable; rejects while the audit log cannot be written. */
  durable?: () => Promise<void>;
  /** Why every call is refused now (the sandbox is quarantined), or undefined. */
  refusal?: () => string | undefined;
  /** Live-only events (budget.update while streaming). */
  publishTransient?: (event: EventInput) => void;
  /** Budget state file; omitted = in memory only. */
  budgetStateFile?: string;
  /** Upstream dispatcher (keep-alive agent); one is created when omitted. */
  dispatcher?: Dispatcher;
}

export interface RouterStats {
  calls: number;
  inFlight: number;
  cache: { hits: number; misses: number; entries: number };
}

export interface Router {
  /** Node HTTP request handler. */
  handle(req: IncomingMessage, res: ServerResponse): void;
  /** Validate and apply a new `inference` section; throws NemoclawError('policy_invalid') and keeps the old one. */
  setPolicy(raw: unknown): InferenceConfig;
  config(): InferenceConfig;
  budget(): BudgetSnapshot;
  setBudget(scope: BudgetScope, caps: BudgetCaps): BudgetSnapshot;
  stats(): RouterStats;
  close(): Promise<void>;
}

interface RouteChoice {
  route: RouteConfig | undefined;
  rule: string;
  reason: string;
  /** The route matched on detected entities. */
  sensitive: boolean;
}

interface CallRecord {
  id: string;
  api: ApiKind;
  requested_model?: string;
  provider?: string;
  model?: string;
  locality?: string;
  rule?: string;
  reason?: string;
  action?: string;
  entities: Record<string, number>;
  redactions: number;
  estimated_prompt_tokens: number;
  prompt_tokens?: number;
  completion_tokens?: number;
  tokens_reported?: boolean;
  /** The provider reported no (or no usable) completion count: the charge is the router's estimate. */
  usage_estimated?: boolean;
  cost_usd: number;
  stream: boolean;
  ttft_ms?: number;
  total_ms?: number;
  overhead_ms: number;
  status?: number;
  outcome?: string;
  error?: string;
  fallback_from?: string;
  /** The fallback went to a cloud provider: the body got the policy's cloud redaction first. */
  redacted_for_fallback?: boolean;
  /** Set when the call was translated between wire formats (`openai->anthropic`). */
  translated?: string;
  /** Content forwarded or refused without inspection (`path: what`, never the content). */
  uninspectable?: string[];
}

function round3(n: number): number {
  return Math.round(n * 1000) / 1000;
}

function globMatch(glob: string, value: string): boolean {
  if (!glob.includes('*')) return glob === value;
  const re = new RegExp(`^${glob.split('*').map((p) => p.replace(/[.+?^${}()|[\]\\]/g, '\\$&')).join('.*')}$`);
  return re.test(value);
}

function apiFor(method: string, path: string): ApiKind | 'models' | undefined {
  if (method === 'POST') {
    if (path === '/v1/chat/completions') return 'openai.chat';
    if (path === '/v1/completions') return 'openai.completions';
    if (path === '/v1/embeddings') return 'openai.embeddings';
    if (path === '/v1/messages') return 'anthropic.messages';
  }
  if (method === 'GET' && path === '/v1/models') return 'models';
  return undefined;
}

function upstreamUrl(provider: ProviderConfig, api: ApiKind): string {
  const base = provider.base_url.replace(/\/+$/, '');
  if (provider.type === 'anthropic') return `${base}${base.endsWith('/v1') ? '' : '/v1'}/messages`;
  const suffix = api === 'openai.chat' || api === 'anthropic.messages' ? '/chat/completions' : api === 'openai.completions' ? '/completions' : '/embeddings';
  return `${base}${suffix}`;
}

function costOf(provider: ProviderConfig | undefined, promptTokens: number, completionTokens: number): number {
  if (!provider) return 0;
  return (promptTokens * provider.price.input_per_mtok + completionTokens * provider.price.output_per_mtok) / 1e6;
}

/** Choices a call asks the provider to generate (OpenAI `n`; `best_of` on completions is billed in full). */
function choiceCount(api: ApiKind, body: Record<string, unknown>): number {
  if (api === 'anthropic.messages' || api === 'openai.embeddings') return 1;
  const count = (v: unknown): number => {
    const n = typeof v === 'number' || typeof v === 'string' ? Number(v) : NaN;
    return Number.isFinite(n) && n > 1 ? Math.ceil(n) : 1;
  };
  return api === 'openai.completions' ? Math.max(count(body.n), count(body.best_of)) : count(body.n);
}

/** A count the provider reported, or undefined when it is missing or not a usable number. */
function reportedCount(v: unknown): number | undefined {
  return typeof v === 'number' && Number.isFinite(v) && v >= 0 ? v : undefined;
}

/** Every generated text of a whole response in the caller's format (all choices), for estimating. */
function completionText(api: ApiKind, json: Record<string, unknown>): string {
  const parts: string[] = [];
  const add = (v: unknown): void => {
    if (typeof v === 'string') parts.push(v);
    else if (v !== undefined && v !== null) parts.push(JSON.stringify(v));
  };
  if (api === 'anthropic.messages') {
    for (const block of (json.content as Array<Record<string, unknown>> | undefined) ?? []) {
      if (typeof block !== 'object' || block === null) continue;
      add(block.text);
      add(block.thinking);
      if (block.type === 'tool_use' || block.type === 'server_tool_use') {
        add(block.name);
        add(block.input);
      }
    }
    return parts.join('\n');
  }
  if (api === 'openai.embeddings') return '';
  const choices = json.choices;
  for (const c of Array.isArray(choices) ? (choices as Array<Record<string, unknown>>) : []) {
    if (typeof c !== 'object' || c === null) continue;
    add(c.text);
    const msg = c.message as Record<string, unknown> | undefined;
    if (typeof msg !== 'object' || msg === null) continue;
    if (Array.isArray(msg.content)) for (const p of msg.content as Array<Record<string, unknown>>) add(p?.text);
    else add(msg.content);
    add(msg.reasoning_content);
    add(msg.reasoning);
    add(msg.refusal);
    const fc = msg.function_call as Record<string, unknown> | undefined;
    if (fc) {
      add(fc.name);
      add(fc.arguments);
    }
    for (const tc of (Array.isArray(msg.tool_calls) ? msg.tool_calls : []) as Array<{ function?: Record<string, unknown> }>) {
      add(tc?.function?.name);
      add(tc?.function?.arguments);
    }
  }
  return parts.join('\n');
}

/** The body fields that carry prose, where a value split across two of them is looked for. */
const PROSE_FIELD = /(?:^|\.)(?:content|text|arguments|prompt|input|thinking)(?:\[\d+\])?$/;

/**
 * Scan every slot of a request: each group (one message, the tools, the rest) as one joined text,
 * cached by content, its detections split back onto the slots. Tokens: the counted groups.
 */
async function scanSlots(classifier: Classifier, facts: RequestFacts): Promise<{ perSlot: Detection[][]; tokens: number }> {
  const perSlot: Detection[][] = new Array<Detection[]>(facts.slots.length);
  let tokens = 0;
  let pending: Array<Promise<void>> | undefined;
  const apply = (g: SlotGroup, offsets: number[], c: Classification): void => {
    if (g.counted) tokens += c.tokens;
    const split = splitDetections(facts, g, offsets, c.detections);
    for (let j = 0; j < split.length; j++) perSlot[g.from + j] = split[j]!;
  };
  const texts: Array<{ text: string; offsets: number[] }> = [];
  for (const g of facts.groups) {
    const { text, offsets } = groupText(facts, g);
    texts.push({ text, offsets });
    const hit = classifier.lookup(text);
    if (hit instanceof Promise) (pending ??= []).push(hit.then((c) => apply(g, offsets, c)));
    else apply(g, offsets, hit);
  }
  if (pending) await Promise.all(pending);
  for (let i = 0; i < perSlot.length; i++) perSlot[i] ??= [];
  // A secret split across two messages (or two tool results) is found on their boundary; each
  // part is a detection of its own slot, so it blocks and is redacted like any other. The texts
  // joined are the prose slots in body order (content, text, arguments, prompt, input: not ids or
  // names, which would sit between the halves). Secrets only: a name or number that merely touches
  // a boundary is not worth the false positives.
  const prose: number[] = [];
  for (let i = 0; i < facts.slots.length; i++) {
    const slot = facts.slots[i]!;
    if (!slot.key && slot.text.length > 0 && PROSE_FIELD.test(slot.path)) prose.push(i);
  }
  if (prose.length > 1) {
    for (const j of await classifier.classifyJoined(prose.map((i) => facts.slots[i]!.text))) {
      if (j.kind !== 'secret') continue;
      for (const part of j.parts) {
        const i = prose[part.textIndex]!;
        const text = facts.slots[i]!.text;
        perSlot[i]!.push({ kind: j.kind, start: part.start, end: part.end, value: text.slice(part.start, part.end), detector: `${j.detector} (split across messages)` });
      }
    }
  }
  return { perSlot, tokens };
}

/** Random per process, then a counter: unique ids without a random draw per call. */
const ID_PREFIX = `inf-${randomBytes(6).toString('hex')}-`;
let idCounter = 0;

function requestIdFrom(req: IncomingMessage): string {
  const tp = req.headers['traceparent'];
  if (typeof tp === 'string') {
    const m = /^[0-9a-f]{2}-([0-9a-f]{32})-[0-9a-f]{16}-[0-9a-f]{2}$/.exec(tp.trim());
    if (m && !/^0+$/.test(m[1]!)) return m[1]!;
  }
  return `${ID_PREFIX}${(++idCounter).toString(36)}`;
}

export function createRouter(options: RouterOptions): Router {
  const clock = options.clock ?? systemClock;
  const emit = options.emit ?? (() => undefined);
  const publishTransient = options.publishTransient ?? (() => undefined);
  const ownDispatcher = options.dispatcher
    ? undefined
    : new Agent({ keepAliveTimeout: 30_000, keepAliveMaxTimeout: 600_000, connections: 512 });
  const dispatcher: Dispatcher = options.dispatcher ?? ownDispatcher!;

  let config = validateInferencePolicy(options.policy);
  let classifier = new Classifier({ markers: config.redaction.markers, disabled: config.redaction.disabled });
  const ledger = new BudgetLedger(clock, config.budgets, options.budgetStateFile);
  const limiter = new RateLimiter(clock, config.rate_limits);
  let calls = 0;
  let inFlight = 0;
  let lastBudgetUpdate = 0;

  function setPolicy(raw: unknown): InferenceConfig {
    const next = validateInferencePolicy(raw);
    const markersChanged =
      JSON.stringify([next.redaction.markers, next.redaction.disabled]) !==
      JSON.stringify([config.redaction.markers, config.redaction.disabled]);
    config = next;
    if (markersChanged) classifier = new Classifier({ markers: next.redaction.markers, disabled: next.redaction.disabled });
    ledger.setPolicyCaps(next.budgets);
    limiter.setLimits(next.rate_limits);
    return next;
  }

  function budgetUpdate(force: boolean, id?: string): void {
    const now = clock.monotonic();
    if (!force && now - lastBudgetUpdate < BUDGET_UPDATE_INTERVAL_MS) return;
    lastBudgetUpdate = now;
    const snap = ledger.snapshot();
    const event: EventInput = { kind: 'budget.update', level: 'debug', hour: snap.hour, day: snap.day, request: snap.request };
    if (id) event.id = id;
    if (force) emit(event);
    else publishTransient(event);
  }

  function sendError(res: ServerResponse, family: WireFamily, status: number, kind: ErrorKind, message: string, extraHeaders: Record<string, string> = {}, code?: string): void {
    if (res.headersSent) {
      if (!res.writableEnded) res.end(errorEvent(family, kind, message, code));
      return;
    }
    const body = JSON.stringify(errorBody(family, kind, message, code));
    res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body), ...extraHeaders });
    res.end(body);
  }

  /**
   * A policy refusal in the form agents show as one (block-reply.ts): by default an assistant reply
   * carrying the reason, not a 403 that OpenClaw reads as "authentication failed". Returns the status.
   */
  function sendBlocked(res: ServerResponse, api: ApiKind, family: WireFamily, body: Record<string, unknown>, stream: boolean, code: string, message: string, extraHeaders: Record<string, string> = {}): number {
    const mode = config.blocked_reply;
    if (res.headersSent) {
      sendError(res, family, 400, 'invalid_request', message, extraHeaders, code);
      return 400;
    }
    sendBlockedReply(res, mode, {
      api,
      family,
      stream,
      model: typeof body.model === 'string' ? body.model : '',
      code,
      message: blockedStatus(mode, api) === 200 ? `[nemoclaw-tui privacy router] ${message}` : message,
      includeUsage: (body.stream_options as { include_usage?: unknown } | null | undefined)?.include_usage === true,
      extraHeaders,
    });
    return blockedStatus(mode, api);
  }

  function chooseRoute(facts: { kinds: Set<EntityKind>; model: string; promptTokens: number; usesTools: boolean; api: ApiKind }): RouteChoice {
    const routes = config.routes;
    for (let i = 0; i < routes.length; i++) {
      const route = routes[i]!;
      const w = route.when;
      const why: string[] = [];
      if (w.entities) {
        const hit = w.entities.filter((k) => facts.kinds.has(k));
        if (hit.length === 0) continue;
        why.push(`entities ${hit.join(',')}`);
      }
      if (w.model) {
        const hit = w.model.find((g) => globMatch(g, facts.model));
        if (!hit) continue;
        why.push(`model ${facts.model} ~ ${hit}`);
      }
      if (w.min_prompt_tokens !== undefined) {
        if (facts.promptTokens < w.min_prompt_tokens) continue;
        why.push(`~${facts.promptTokens} prompt tokens >= ${w.min_prompt_tokens}`);
      }
      if (w.max_prompt_tokens !== undefined) {
        if (facts.promptTokens > w.max_prompt_tokens) continue;
        why.push(`~${facts.promptTokens} prompt tokens <= ${w.max_prompt_tokens}`);
      }
      if (w.tools !== undefined) {
        if (w.tools !== facts.usesTools) continue;
        why.push(w.tools ? 'uses tools' : 'no tools');
      }
      if (w.api) {
        if (!w.api.includes(facts.api)) continue;
        why.push(`api ${facts.api}`);
      }
      return {
        route,
        rule: route.name ?? `routes[${i}]`,
        reason: why.length ? why.join('; ') : 'unconditional route',
        sensitive: w.entities !== undefined,
      };
    }
    const names = Object.keys(config.providers);
    if (routes.length === 0 && names.length === 1) {
      return { route: { when: {}, provider: names[0]! }, rule: 'default', reason: 'single provider, no routes', sensitive: false };
    }
    return { route: undefined, rule: 'none', reason: 'no route matched', sensitive: false };
  }

  async function handleModels(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const anthropic = typeof req.headers['anthropic-version'] === 'string';
    const ids = new Map<string, string>();
    for (const [name, p] of Object.entries(config.providers)) {
      if (p.model) ids.set(p.model, name);
      for (const m of p.models) ids.set(m, name);
      if (!p.model && p.models.length === 0) ids.set(name, name);
    }
    const body = anthropic
      ? {
          data: [...ids.keys()].map((id) => ({ type: 'model', id, display_name: id, created_at: '1970-01-01T00:00:00Z' })),
          has_more: false,
          first_id: [...ids.keys()][0] ?? null,
          last_id: [...ids.keys()].at(-1) ?? null,
        }
      : { object: 'list', data: [...ids].map(([id, owner]) => ({ id, object: 'model', created: 0, owned_by: owner })) };
    const text = JSON.stringify(body);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
    res.end(text);
  }

  async function handleCall(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const t0 = clock.monotonic();
    const path = (req.url ?? '/').split('?')[0]!;
    const method = req.method ?? 'GET';
    const api = apiFor(method, path);
    const family: WireFamily = path.startsWith('/v1/messages') || (api === undefined && typeof req.headers['anthropic-version'] === 'string') ? 'anthropic' : 'openai';

    if (api === undefined) {
      sendError(res, family, 404, 'not_found', `inference.local does not serve ${method} ${path}; use POST /v1/chat/completions, /v1/responses, /v1/completions, /v1/embeddings, /v1/messages or GET /v1/models`);
      return;
    }
    const refused = options.refusal?.();
    if (refused !== undefined) {
      // Quarantined: nothing reaches a provider, whoever asks (the token is not even looked at).
      emit({ kind: 'inference.done', level: 'warn', id: requestIdFrom(req), api, status: 403, outcome: 'quarantined', reason: refused });
      req.resume();
      sendError(res, family, 403, 'permission', refused, {}, 'quarantined');
      return;
    }
    const token = presentedToken(req.headers);
    if (token === undefined || !tokensEqual(token, options.sandboxToken)) {
      if (api !== 'models') {
        emit({ kind: 'inference.done', level: 'warn', id: requestIdFrom(req), api, status: 401, outcome: 'unauthenticated' });
      }
      req.resume();
      sendError(res, family, 401, 'authentication', 'missing or wrong sandbox token for inference.local (send it as "Authorization: Bearer <token>" or "x-api-key")');
      return;
    }
    if (api === 'models') {
      req.resume();
      await handleModels(req, res);
      return;
    }

    const id = requestIdFrom(req);
    const record: CallRecord = { id, api, entities: {}, redactions: 0, estimated_prompt_tokens: 0, cost_usd: 0, stream: false, overhead_ms: 0 };
    let pendingRoute: (() => void) | undefined;
    const done = (status: number, outcome: string, level: 'info' | 'warn' | 'error' = 'info', error?: string): void => {
      pendingRoute?.();
      record.status = status;
      record.outcome = outcome;
      record.total_ms = round3(clock.monotonic() - t0);
      record.overhead_ms = round3(record.overhead_ms);
      record.cost_usd = Math.round(record.cost_usd * 1e6) / 1e6;
      if (error) record.error = error;
      emit({ kind: 'inference.done', level, ...record });
    };

    let raw: Buffer;
    try {
      raw = await readBody(req);
    } catch (err) {
      const tooLarge = (err as { tooLarge?: boolean }).tooLarge === true;
      sendError(res, family, tooLarge ? 413 : 400, 'invalid_request', tooLarge ? `request body larger than ${MAX_BODY_BYTES} bytes` : 'could not read the request body');
      done(tooLarge ? 413 : 400, 'invalid', 'warn', 'body');
      return;
    }
    const tBody = clock.monotonic();
    let parsed: unknown;
    let rawText = '';
    try {
      rawText = raw.toString('utf8');
      parsed = JSON.parse(rawText);
    } catch {
      sendError(res, family, 400, 'invalid_request', 'request body is not valid JSON');
      done(400, 'invalid', 'warn', 'body is not JSON');
      return;
    }
    const validated = REQUEST_SCHEMAS[api].safeParse(parsed);
    if (!validated.success) {
      const message = `invalid ${api} request: ${describeZodError(validated.error)}`;
      sendError(res, family, 400, 'invalid_request', message);
      done(400, 'invalid', 'warn', message);
      return;
    }
    // The schemas only check (no defaults, no transforms), so the parsed body itself is the valid
    // request: using it spares a deep copy of a 30+ KB request on every call.
    const body = parsed as Record<string, unknown>;
    // Every string value and key of the body, decoded carriers included (token ids need the codecs).
    const decoders = needsTokenDecoders(api, body) ? await loadTokenDecoders() : undefined;
    const facts = inspectRequest(api, body, decoders);
    record.requested_model = body.model as string;
    record.stream = facts.stream;

    // Classify every slot group (cache hit for the unchanged system prompt, tools and history).
    const activeClassifier = classifier;
    const scanned = await scanSlots(activeClassifier, facts);
    /** Each slot's detections (offsets relative to the slot). */
    const classes: Array<{ detections: Detection[] }> = scanned.perSlot.map((detections) => ({ detections }));
    const kinds = new Set<EntityKind>();
    for (const found of scanned.perSlot) {
      for (const d of found) {
        kinds.add(d.kind);
        record.entities[d.kind] = (record.entities[d.kind] ?? 0) + 1;
      }
    }
    // Token ids count as themselves; messages add their framing (role markers), as OpenAI counts them.
    const promptTokens = scanned.tokens + facts.extraTokens;
    record.estimated_prompt_tokens = promptTokens;
    /** Placeholders are drawn at random, never one the request already contains (so none can be forged). */
    const originals = facts.slots.map((slot) => slot.text);
    const newRedactionMap = (): RedactionMap => new RedactionMap({ reserved: (p) => originals.some((t) => t.includes(p)) });

    const choice = chooseRoute({ kinds, model: body.model as string, promptTokens, usesTools: facts.usesTools, api });
    record.rule = choice.rule;
    record.reason = choice.reason;
    const route = choice.route;
    if (!route) {
      record.action = 'none';
      record.overhead_ms = clock.monotonic() - tBody;
      emit({ kind: 'inference.route', level: 'warn', ...record });
      sendError(res, family, 403, 'permission', 'no inference route matches this request; add a default route (a last route without `when`) to the policy');
      done(403, 'no_route', 'warn');
      return;
    }
    if (route.block) {
      record.action = 'block';
      record.overhead_ms = clock.monotonic() - tBody;
      emit({ kind: 'inference.route', level: 'warn', ...record });
      const found = Object.keys(record.entities).join(', ') || 'none';
      const status = sendBlocked(res, api, family, body, facts.stream, 'blocked_by_policy', route.message ?? `blocked by inference route "${choice.rule}" (${choice.reason}; detected: ${found}). Remove the sensitive content and try again.`);
      done(status, 'blocked', 'warn');
      return;
    }
    const providerName = (route.provider ?? route.redact_then)!;
    const provider = config.providers[providerName]!;
    record.action = route.redact_then ? 'redact_then' : 'provider';
    record.provider = providerName;
    record.locality = provider.locality;
    record.model = provider.model ?? (body.model as string);

    // Content no detector can read (images, PDFs, audio, binary blobs): `inference.uninspectable`.
    if (facts.uninspectable.length > 0) {
      record.uninspectable = facts.uninspectable.slice(0, 20).map((u) => `${u.path}: ${u.what}`);
      const mode = config.uninspectable;
      if (mode === 'block' || (mode === 'local_only' && provider.locality !== 'local')) {
        record.action = 'refuse_uninspectable';
        record.overhead_ms = clock.monotonic() - tBody;
        emit({ kind: 'inference.route', level: 'warn', ...record });
        const what = facts.uninspectable.slice(0, 3).map((u) => `${u.what} at ${u.path}`).join(', ') + (facts.uninspectable.length > 3 ? `, and ${facts.uninspectable.length - 3} more` : '');
        const why =
          mode === 'block'
            ? 'inference.uninspectable is "block"'
            : `inference.uninspectable is "local_only" and route "${choice.rule}" sends it to ${provider.locality} provider "${providerName}"`;
        const status = sendBlocked(res, api, family, body, facts.stream, 'uninspectable_content', `refused by policy: this request carries content the privacy router cannot inspect (${what}); ${why}. Send the content as text, route such calls to a local provider, or set inference.uninspectable: allow to forward it unscanned.`);
        done(status, 'uninspectable', 'warn');
        return;
      }
    }

    // Redaction (request scope only).
    let map: RedactionMap | undefined;
    if (route.redact_then) {
      map = newRedactionMap();
      const redactKinds = new Set<EntityKind>(config.redaction.entities);
      facts.slots.forEach((slot, i) => {
        const detections = classes[i]!.detections;
        if (detections.length > 0) slot.set(map!.redact(slot.text, detections, redactKinds));
      });
      record.redactions = map.size;
      if (map.size === 0) map = undefined;
      else if (facts.slots.some((slot, i) => slot.decoded !== undefined && classes[i]!.detections.length > 0)) {
        // Fail closed: a rewritten carrier is encoded again (base64, data: URL, token ids, which the
        // other vocabulary reads differently), so every decoded text that goes upstream is scanned
        // again and the call refused when anything to redact is still there. (Plain strings are
        // rewritten span by span: nothing is left to find, and rescanning them would cost a full
        // scan per call, the placeholders being new each time.)
        const again = inspectRequest(api, body, decoders);
        const left = new Set<string>();
        const where = new Set<string>();
        for (const slot of again.slots) {
          if (slot.decoded === undefined) continue;
          for (const d of (await activeClassifier.classify(slot.text)).detections) {
            if (!redactKinds.has(d.kind)) continue;
            left.add(d.kind);
            where.add(slot.path);
          }
        }
        if (left.size > 0) {
          record.action = 'refuse_unredactable';
          record.overhead_ms = clock.monotonic() - tBody;
          emit({ kind: 'inference.route', level: 'warn', ...record });
          const message = `refused by policy: route "${choice.rule}" redacts before sending to "${providerName}", but ${[...left].join(', ')} could not be redacted at ${[...where].slice(0, 3).join(', ')}; nothing was sent. Send that content as plain text, or route it to a local provider.`;
          const status = sendBlocked(res, api, family, body, facts.stream, 'redaction_failed', message);
          done(status, 'unredactable', 'warn');
          return;
        }
      }
    }

    // Budgets (hard stop 402): reserve the prompt plus the output the call may generate (max_tokens,
    // or the configured default, times n) in one synchronous check-and-reserve, so concurrent calls
    // cannot all pass a check only one fits. Settled on the real usage when the call ends.
    const choicesAsked = choiceCount(api, body);
    const perChoice = api === 'openai.embeddings' ? 0 : (facts.maxOutputTokens ?? config.budgets.default_output_reservation);
    const outputTokens = perChoice * choicesAsked;
    const nText = choicesAsked > 1 ? ` × ${api === 'openai.completions' && choicesAsked !== Number(body.n ?? 1) ? 'best_of' : 'n'} ${choicesAsked}` : '';
    const reservation = ledger.reserve({
      prompt: { tokens: promptTokens, usd: costOf(provider, promptTokens, 0) },
      output: { tokens: outputTokens, usd: costOf(provider, 0, outputTokens) },
      explicit: facts.maxOutputTokens !== undefined || api === 'openai.embeddings',
      cuttable: facts.stream,
      describe:
        facts.maxOutputTokens !== undefined
          ? `max_tokens ${perChoice.toLocaleString('en-US')}${nText} output`
          : `${perChoice.toLocaleString('en-US')}${nText} output (inference.budgets.default_output_reservation: the request sets no max_tokens)`,
    });
    if (reservation.breach) {
      const breach = reservation.breach;
      record.overhead_ms = clock.monotonic() - tBody;
      emit({ kind: 'inference.route', level: 'warn', ...record });
      emitExceeded(id, breach, 'precheck');
      sendError(res, family, 402, 'budget', breach.message, {}, 'budget_exceeded');
      done(402, 'budget_exceeded', 'warn');
      return;
    }
    const usage = reservation.call;
    const retryAfter = limiter.take(promptTokens);
    if (retryAfter > 0) {
      ledger.commit(usage);
      record.overhead_ms = clock.monotonic() - tBody;
      emit({ kind: 'inference.route', level: 'warn', ...record });
      sendError(res, family, 429, 'rate_limit', `inference rate limit reached; retry in ${retryAfter} s`, { 'retry-after': String(retryAfter) });
      done(429, 'rate_limited', 'warn');
      return;
    }

    // Write-ahead (DESIGN invariant 2): the route record is durable before the upstream call; while
    // the audit log cannot be written the call is refused (fail closed), in the caller's wire format.
    // So is the budget's charge for the prompt: a supervisor killed mid-call still charges it.
    ledger.secure(usage, { tokens: promptTokens, usd: costOf(provider, promptTokens, 0) });
    const routeEvent: EventInput = { kind: 'inference.route', level: 'info', ...record, overhead_ms: round3(clock.monotonic() - tBody) };
    emit(routeEvent);
    const unrecorded = options.durable ? await options.durable().then(() => undefined, (err: unknown) => (err as Error).message) : undefined;
    if (unrecorded) {
      ledger.commit(usage);
      sendError(res, family, 503, 'overloaded', unrecorded, {}, 'audit_unavailable');
      done(503, 'audit_unavailable', 'error', unrecorded);
      return;
    }
    const routed = (): void => undefined;

    // For a fallback to a cloud provider of a body not redacted for the cloud (forward): refused for a
    // secret or a matched kind the redaction does not cover; else the policy's cloud redaction, as on
    // a `redact_then` route (checks first: nothing is rewritten when it is refused).
    const redactForCloud = (): CloudRedaction => {
      if (kinds.has('secret')) return { map: undefined, secret: true, refused: 'the request carries a secret' };
      const redactKinds = new Set<EntityKind>(config.redaction.entities);
      const uncovered = choice.sensitive ? (route.when.entities ?? []).filter((k) => kinds.has(k) && !redactKinds.has(k)) : [];
      if (uncovered.length > 0) return { map: undefined, secret: false, refused: `the route matched ${uncovered.join(', ')}, which inference.redaction.entities does not redact` };
      const cloudMap = newRedactionMap();
      facts.slots.forEach((slot, i) => {
        const detections = classes[i]!.detections;
        if (detections.length > 0) slot.set(cloudMap.redact(slot.text, detections, redactKinds));
      });
      return { map: cloudMap.size > 0 ? cloudMap : undefined, secret: false };
    };

    inFlight++;
    calls++;
    try {
      await forward({ req, res, api, family, body, raw, rawText, facts, provider, providerName, route, choice, map, record, usage, t0, tBody, promptTokens, done, routed, redactForCloud });
    } finally {
      routed();
      inFlight--;
      ledger.commit(usage);
      budgetUpdate(true, id);
    }
  }

  function emitExceeded(id: string, breach: BudgetBreach, phase: 'precheck' | 'stream'): void {
    emit({ kind: 'budget.exceeded', level: 'warn', id, phase, scope: breach.scope, unit: breach.unit, cap: breach.cap, would_be: breach.would_be, message: breach.message });
  }

  interface CloudRedaction {
    map: RedactionMap | undefined;
    secret: boolean;
    /** Why the body may not go to the cloud (nothing was rewritten). */
    refused?: string;
  }

  interface ForwardArgs {
    req: IncomingMessage;
    res: ServerResponse;
    api: ApiKind;
    family: WireFamily;
    body: Record<string, unknown>;
    /** The request body as received, and as text. */
    raw: Buffer;
    rawText: string;
    facts: ReturnType<typeof inspectRequest>;
    provider: ProviderConfig;
    providerName: string;
    route: RouteConfig;
    choice: RouteChoice;
    map: RedactionMap | undefined;
    record: CallRecord;
    usage: CallUsage;
    t0: number;
    tBody: number;
    promptTokens: number;
    done: (status: number, outcome: string, level?: 'info' | 'warn' | 'error', error?: string) => void;
    /** The policy's cloud redaction of the body, for a fallback to a cloud provider. */
    redactForCloud: () => CloudRedaction;
    /** Emit the inference.route event (idempotent). */
    routed: () => void;
  }

  async function forward(a: ForwardArgs): Promise<void> {
    const { res, api, family, body, record } = a;
    if (familyOf(api) !== a.provider.type && !canTranslate(api, a.provider.type)) {
      const message = `inference route "${a.choice.rule}" sends this ${api} call to provider "${a.providerName}", which speaks the ${a.provider.type} API and has no ${api === 'openai.embeddings' ? 'embeddings' : 'text completions'} endpoint; route ${api} calls to a provider of type ${familyOf(api)}`;
      sendError(res, family, 502, 'upstream', message);
      a.done(502, 'format_mismatch', 'error', message);
      return;
    }
    const callerWantsUsage = (body.stream_options as { include_usage?: boolean } | null | undefined)?.include_usage === true;
    const abort = new AbortController();
    const onClose = (): void => {
      if (!res.writableFinished) abort.abort();
    };
    res.on('close', onClose);

    // Try the chosen provider, then its fallback (never local → cloud for a sensitive match).
    let providerName = a.providerName;
    let provider = a.provider;
    let upstream: Dispatcher.ResponseData | undefined;
    /** What the caller is told (no address, no raw Node error text) and what the audit keeps. */
    let lastError = '';
    let lastDetail = '';
    let rawForwardable: boolean | undefined;
    for (let attempt = 0; attempt < 2; attempt++) {
      const upstreamModel = provider.model ?? (body.model as string);
      let upstreamBody: Record<string, unknown>;
      /** Set when the caller's bytes can go upstream as they are (no serialisation). */
      let asIs: Buffer | undefined;
      if (familyOf(api) === provider.type) {
        upstreamBody = { ...body, model: upstreamModel };
        const wantsUsage = a.facts.stream && api !== 'anthropic.messages' && api !== 'openai.embeddings';
        if (wantsUsage) upstreamBody.stream_options = { ...(body.stream_options as object | null | undefined), include_usage: true };
        // Unredacted, same model, and the caller's bytes say what the classifier read: send them.
        if (!a.map && upstreamModel === body.model) {
          const options = body.stream_options as { include_usage?: unknown } | null | undefined;
          const usageOk = !wantsUsage || options?.include_usage === true;
          const canAppendUsage = wantsUsage && !('stream_options' in body);
          if ((usageOk || canAppendUsage) && (rawForwardable ??= forwardableAsIs(a.raw, a.rawText))) {
            asIs = usageOk ? a.raw : withIncludeUsage(a.raw);
          }
        }
      } else {
        // The provider speaks the other API: translate the (already redacted) body.
        upstreamBody = provider.type === 'anthropic' ? openAiChatToAnthropic(body, upstreamModel) : anthropicToOpenAiChat(body, upstreamModel);
        record.translated = `${familyOf(api)}->${provider.type}`;
      }
      const headers: Record<string, string> = { 'content-type': 'application/json', accept: a.facts.stream ? 'text/event-stream' : 'application/json' };
      let key: string | undefined;
      try {
        key = options.credentials.keyFor(providerName, provider);
      } catch (err) {
        const message = isNemoclawError(err) ? err.message : 'provider key unavailable';
        sendError(res, family, 502, 'upstream', message);
        a.done(502, 'no_key', 'error', message);
        res.off('close', onClose);
        return;
      }
      if (provider.type === 'anthropic') {
        if (key) headers['x-api-key'] = key;
        const version = a.req.headers['anthropic-version'];
        headers['anthropic-version'] = typeof version === 'string' ? version : provider.anthropic_version;
        const beta = a.req.headers['anthropic-beta'];
        if (typeof beta === 'string') headers['anthropic-beta'] = beta;
      } else if (key) headers['authorization'] = `Bearer ${key}`;
      const traceparent = a.req.headers['traceparent'];
      if (typeof traceparent === 'string') headers['traceparent'] = traceparent;

      let failed = false;
      try {
        const payload = asIs ?? JSON.stringify(upstreamBody);
        const tSend = clock.monotonic();
        record.overhead_ms += tSend - a.tBody;
        const pending = request(upstreamUrl(provider, api), {
          method: 'POST',
          headers,
          body: payload,
          dispatcher,
          signal: abort.signal,
          headersTimeout: provider.timeout_ms,
          bodyTimeout: provider.timeout_ms,
        });
        a.routed();
        upstream = await pending;
        // 5xx, or 429 (saturated) when the route has a fallback (without one the 429 is relayed).
        if (upstream.statusCode >= 500 || (upstream.statusCode === 429 && attempt === 0 && a.route.fallback !== undefined)) {
          failed = true;
          lastError = `provider "${providerName}" answered ${upstream.statusCode}`;
          lastDetail = lastError;
        }
      } catch (err) {
        failed = true;
        upstream = undefined;
        // The caller learns the kind of failure only; the address and Node's text go to the audit.
        lastError = `provider "${providerName}" unreachable (${classifyUpstreamError(err)})`;
        lastDetail = `provider "${providerName}" unreachable: ${(err as Error).message}`;
        if (abort.signal.aborted) break;
      }
      if (!failed) break;
      const fallbackName = attempt === 0 ? a.route.fallback : undefined;
      const fallback = fallbackName ? config.providers[fallbackName] : undefined;
      if (!fallbackName || !fallback) break;
      if (a.choice.sensitive && provider.locality === 'local' && fallback.locality === 'cloud' && config.hybrid.when_local_down !== 'cloud_redacted') break;
      // Uninspectable content that may only go to a local provider never falls back to another.
      if (a.facts.uninspectable.length > 0 && config.uninspectable !== 'allow' && fallback.locality !== 'local') break;
      // Fallback never undoes privacy: a body not redacted for the cloud gets the policy's cloud
      // redaction before it goes to a cloud provider; a secret never goes.
      const cloudRedaction = fallback.locality === 'cloud' && !a.route.redact_then ? a.redactForCloud() : undefined;
      if (cloudRedaction?.refused) {
        lastDetail += `; no fallback to cloud provider "${fallbackName}": ${cloudRedaction.refused}`;
        if (!cloudRedaction.secret) break;
        if (upstream) await upstream.body.dump().catch(() => undefined);
        res.off('close', onClose);
        const message = `blocked: provider "${providerName}" is unavailable and the request carries a secret, which never goes to cloud provider "${fallbackName}"`;
        const status = sendBlocked(res, api, family, body, a.facts.stream, 'blocked_by_policy', message, { 'x-request-id': record.id });
        a.done(status, 'blocked', 'warn', lastDetail);
        return;
      }
      if (upstream) await upstream.body.dump().catch(() => undefined);
      upstream = undefined;
      record.fallback_from = providerName;
      if (cloudRedaction) {
        a.map = cloudRedaction.map;
        record.redactions = cloudRedaction.map?.size ?? 0;
        record.redacted_for_fallback = true;
      }
      providerName = fallbackName;
      provider = fallback;
      record.provider = providerName;
      record.locality = provider.locality;
      record.model = provider.model ?? (body.model as string);
      delete record.translated;
      a.tBody = clock.monotonic();
    }

    if (!upstream) {
      res.off('close', onClose);
      if (abort.signal.aborted) {
        // The prompt went out before the caller left: charged; no answer came back, so nothing else.
        a.usage.set(a.promptTokens, costOf(provider, a.promptTokens, 0));
        record.cost_usd = a.usage.usd;
        a.done(499, 'client_abort', 'info');
        return;
      }
      sendError(res, family, 502, 'upstream', lastError, { 'x-request-id': record.id });
      a.done(502, 'upstream_error', 'error', lastDetail);
      return;
    }

    const overheadHeader = round3(record.overhead_ms).toFixed(3);
    const contentType = String(upstream.headers['content-type'] ?? '');
    try {
      if (upstream.statusCode >= 300 || !a.facts.stream || !contentType.includes('text/event-stream')) {
        await relayWhole(a, upstream, provider, overheadHeader);
      } else {
        await relayStream(a, upstream, provider, overheadHeader, callerWantsUsage, abort);
      }
    } catch (err) {
      // The provider had the prompt: at least that is charged (a stream has counted what it relayed).
      if (a.usage.tokens === 0) a.usage.set(a.promptTokens, costOf(provider, a.promptTokens, 0));
      record.cost_usd = a.usage.usd;
      if (abort.signal.aborted || res.destroyed) {
        a.done(499, 'client_abort', 'info');
      } else {
        const message = `provider "${providerName}" failed mid-response (${classifyUpstreamError(err)})`;
        sendError(res, family, 502, 'upstream', message, { 'x-request-id': record.id });
        a.done(502, 'upstream_error', 'error', `provider "${providerName}" failed mid-response: ${(err as Error).message}`);
      }
    } finally {
      res.off('close', onClose);
    }
  }

  async function relayWhole(a: ForwardArgs, upstream: Dispatcher.ResponseData, provider: ProviderConfig, overheadHeader: string): Promise<void> {
    const { res, record, map } = a;
    const text = await upstream.body.text();
    const t1 = clock.monotonic();
    const status = upstream.statusCode;
    const upstreamType = String(upstream.headers['content-type'] ?? '');
    const translating = familyOf(a.api) !== provider.type;
    const headers: Record<string, string> = { [OVERHEAD_HEADER]: overheadHeader, 'x-request-id': record.id };
    const finish = (code: number, body: string, contentType: string, outcome: string, level: 'info' | 'warn' | 'error', error?: string): void => {
      record.cost_usd = a.usage.usd;
      ledger.secure(a.usage);
      record.overhead_ms += clock.monotonic() - t1;
      res.writeHead(code, { 'content-type': contentType, 'content-length': Buffer.byteLength(body), ...headers });
      res.end(body);
      record.ttft_ms = round3(clock.monotonic() - a.t0);
      a.done(code, outcome, level, error);
    };
    /** What the provider sent is no API answer: the caller gets a 502 in its own format. */
    const garbage = (what: string): void => {
      // An answer that is no API response still cost the prompt when it came with a success status.
      if (status < 300) a.usage.set(a.promptTokens, costOf(provider, a.promptTokens, 0));
      const message = `provider "${record.provider}" ${what}`;
      finish(502, JSON.stringify(errorBody(a.family, 'upstream', scrubUpstreamAddress(message, provider))), 'application/json', 'upstream_error', 'error', message);
    };

    if (status >= 300) {
      const err = readProviderError(text);
      if (!err) return garbage(`answered HTTP ${status} with ${upstreamType || 'no content type'} instead of an API error: ${bodyExcerpt(text, upstreamType)}`);
      if (upstream.headers['retry-after']) headers['retry-after'] = String(upstream.headers['retry-after']);
      // A proper provider error keeps its status; it is re-worded unless already in the caller's format.
      const asIs = !translating && err.format === a.family && /json/i.test(upstreamType);
      const body = asIs ? scrubUpstreamAddress(text, provider) : JSON.stringify(errorBody(a.family, errorKindForStatus(status), scrubUpstreamAddress(err.message, provider)));
      return finish(status, body, 'application/json', 'upstream_error', 'warn', `provider "${record.provider}" answered ${status}: ${err.message}`);
    }

    let json: Record<string, unknown>;
    try {
      const parsed = JSON.parse(text) as unknown;
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not a JSON object');
      json = parsed as Record<string, unknown>;
    } catch (err) {
      return garbage(`answered HTTP ${status} with a body that is not a valid JSON object (${Buffer.byteLength(text)} bytes of ${upstreamType || 'no content type'}: ${(err as Error).message}): ${bodyExcerpt(text, upstreamType)}`);
    }
    let out = text;
    try {
      // Usage as the provider reported it, read before translation (which fills in a usage block).
      const u = json.usage as Record<string, unknown> | undefined;
      const providerApi: ApiKind = provider.type === 'anthropic' ? 'anthropic.messages' : a.api === 'anthropic.messages' ? 'openai.chat' : a.api;
      const providerJson = json;
      if (translating) {
        json = provider.type === 'anthropic' ? anthropicMessageToOpenAi(json, Math.floor(clock.now() / 1000)) : openAiCompletionToAnthropic(json, a.promptTokens);
        out = JSON.stringify(json);
      }
      if (typeof u === 'object' && u !== null) {
        const input = reportedCount(u.prompt_tokens) ?? reportedCount(u.input_tokens);
        if (input !== undefined) {
          record.prompt_tokens = input + (u.prompt_tokens === undefined ? (reportedCount(u.cache_read_input_tokens) ?? 0) + (reportedCount(u.cache_creation_input_tokens) ?? 0) : 0);
        }
        const output = reportedCount(u.completion_tokens) ?? reportedCount(u.output_tokens);
        if (output !== undefined) {
          record.completion_tokens = output;
          record.tokens_reported = true;
        }
      }
      if (record.completion_tokens === undefined) {
        // No usage from the provider: count what it generated (every choice) with the tokenizer.
        const generated = completionText(providerApi, providerJson);
        record.completion_tokens = generated.length === 0 ? 0 : (await loadTokenizer())(generated);
        record.prompt_tokens ??= a.promptTokens;
        if (a.api !== 'openai.embeddings') record.usage_estimated = true;
      }
      if (map) {
        restoreWhole(a.api, json, map);
        out = JSON.stringify(json);
      }
    } catch (err) {
      return garbage(`answered HTTP ${status} with JSON the router cannot read as a ${provider.type} response: ${(err as Error).message}`);
    }
    const prompt = record.prompt_tokens ?? a.promptTokens;
    const completion = record.completion_tokens ?? 0;
    a.usage.set(prompt + completion, costOf(provider, prompt, completion));
    finish(status, out, translating ? 'application/json' : upstreamType || 'application/json', 'ok', 'info');
  }

  function restoreWhole(api: ApiKind, json: Record<string, unknown>, map: RedactionMap): void {
    if (api === 'anthropic.messages') {
      for (const block of (json.content as Array<Record<string, unknown>> | undefined) ?? []) {
        if (block.type === 'text' && typeof block.text === 'string') block.text = map.restore(block.text);
        if (block.type === 'thinking' && typeof block.thinking === 'string') block.thinking = map.restore(block.thinking);
        if (block.type === 'tool_use') block.input = map.restoreDeep(block.input);
      }
      return;
    }
    for (const c of (json.choices as Array<Record<string, unknown>> | undefined) ?? []) {
      if (typeof c.text === 'string') c.text = map.restore(c.text);
      const msg = c.message as Record<string, unknown> | undefined;
      if (!msg) continue;
      if (typeof msg.content === 'string') msg.content = map.restore(msg.content);
      for (const field of ['refusal', 'reasoning_content', 'reasoning']) {
        if (typeof msg[field] === 'string') msg[field] = map.restore(msg[field] as string);
      }
      const fc = msg.function_call as { arguments?: unknown } | undefined;
      if (fc && typeof fc.arguments === 'string') fc.arguments = map.restore(fc.arguments, true);
      for (const tc of (msg.tool_calls as Array<{ function?: { arguments?: unknown } }> | undefined) ?? []) {
        if (tc.function && typeof tc.function.arguments === 'string') tc.function.arguments = map.restore(tc.function.arguments, true);
      }
    }
  }

  async function relayStream(
    a: ForwardArgs,
    upstream: Dispatcher.ResponseData,
    provider: ProviderConfig,
    overheadHeader: string,
    callerWantsUsage: boolean,
    abort: AbortController,
  ): Promise<void> {
    const { res, record, map, family, api } = a;
    res.writeHead(200, {
      'content-type': 'text/event-stream; charset=utf-8',
      'cache-control': 'no-cache',
      [OVERHEAD_HEADER]: overheadHeader,
      'x-request-id': record.id,
    });
    res.flushHeaders();
    const restorers = new Map<string, StreamRestorer>();
    const restorer = (key: string, json: boolean): StreamRestorer => {
      let r = restorers.get(key);
      if (!r) {
        r = new StreamRestorer(map!, json);
        restorers.set(key, r);
      }
      return r;
    };
    let completionTokens = 0;
    /** Every relayed completion text (all choices): tokenized at the end when the provider reports no usage. */
    const generated: string[] = [];
    let reportedPrompt: number | undefined;
    let reportedCompletion: number | undefined;
    let out = '';
    let sawFirstToken = false;
    let cut: BudgetBreach | undefined;
    let finished = false;
    /** The provider's stream is no longer readable (an event that is not JSON): it is cut here. */
    let broken: string | undefined;
    /** The provider reported an error inside the stream (relayed to the caller as it is). */
    let streamError: string | undefined;
    const breakStream = (data: string): void => {
      if (broken) return;
      broken = `provider "${record.provider}" sent a stream event that is not JSON: ${bodyExcerpt(data, '', 120)}`;
      out += errorEvent(family, 'upstream', scrubUpstreamAddress(broken, provider));
    };

    const countDelta = (text: string): void => {
      if (text.length === 0) return;
      if (!sawFirstToken) {
        sawFirstToken = true;
        record.ttft_ms = round3(clock.monotonic() - a.t0);
      }
      // Cheap estimate (~4 characters a token) while streaming; the provider's reported usage replaces it.
      completionTokens += Math.ceil(text.length / 4);
      generated.push(text);
      // Check after every delta so a cap cuts at the token that crossed it, however the bytes arrive.
      const prompt = reportedPrompt ?? a.promptTokens;
      a.usage.set(prompt + completionTokens, costOf(provider, prompt, completionTokens));
      cut ??= ledger.check(a.usage, NO_EXTRA);
    };

    const flushOpenAiChoice = (chunk: Record<string, unknown>, index: number): void => {
      for (const [key, r] of restorers) {
        if (!key.startsWith(`${index}:`) || !r.pending) continue;
        const pending = r.flush();
        const tool = /^\d+:t(\d+)$/.exec(key);
        const reasoning = /^\d+:r:(\w+)$/.exec(key);
        const delta = tool ? { tool_calls: [{ index: Number(tool[1]), function: { arguments: pending } }] } : reasoning ? { [reasoning[1]!]: pending } : { content: pending };
        const choice = api === 'openai.completions' ? { index, text: pending, finish_reason: null } : { index, delta, finish_reason: null };
        out += `data: ${JSON.stringify({ id: chunk.id, object: chunk.object, created: chunk.created, model: chunk.model, choices: [choice] })}\n\n`;
      }
    };

    const onOpenAiEvent = (ev: EventSourceMessage): void => {
      if (ev.data === '[DONE]') {
        finished = true;
        out += 'data: [DONE]\n\n';
        return;
      }
      let chunk: Record<string, unknown>;
      try {
        chunk = JSON.parse(ev.data) as Record<string, unknown>;
      } catch {
        // An empty event carries nothing (a keep-alive); anything else means the stream is garbage.
        if (ev.data.trim().length > 0) breakStream(ev.data);
        return;
      }
      if (typeof chunk !== 'object' || chunk === null) return breakStream(ev.data);
      if (typeof chunk.error === 'object' && chunk.error !== null) {
        const m = (chunk.error as { message?: unknown }).message;
        streamError ??= `provider "${record.provider}" reported an error in the stream: ${typeof m === 'string' ? m : ev.data}`;
      }
      let changed = false;
      const u = chunk.usage as Record<string, number> | null | undefined;
      if (u) {
        reportedPrompt = u.prompt_tokens;
        reportedCompletion = u.completion_tokens;
      }
      const choices = (chunk.choices as Array<Record<string, unknown>> | undefined) ?? [];
      if (u && !callerWantsUsage) {
        if (choices.length === 0) return;
        delete chunk.usage;
        changed = true;
      }
      for (const c of choices) {
        const index = typeof c.index === 'number' ? c.index : 0;
        if (api === 'openai.completions') {
          if (typeof c.text === 'string') {
            countDelta(c.text);
            if (map) {
              const r = restorer(`${index}:c`, false).push(c.text);
              if (r !== c.text) {
                c.text = r;
                changed = true;
              }
            }
          }
        } else {
          const d = (c.delta as Record<string, unknown> | undefined) ?? {};
          if (typeof d.content === 'string') {
            countDelta(d.content);
            if (map) {
              const r = restorer(`${index}:c`, false).push(d.content);
              if (r !== d.content) {
                d.content = r;
                changed = true;
              }
            }
          }
          for (const field of ['reasoning_content', 'reasoning']) {
            if (typeof d[field] !== 'string') continue;
            countDelta(d[field] as string);
            if (map) {
              const r = restorer(`${index}:r:${field}`, false).push(d[field] as string);
              if (r !== d[field]) {
                d[field] = r;
                changed = true;
              }
            }
          }
          for (const tc of (d.tool_calls as Array<Record<string, unknown>> | undefined) ?? []) {
            const fn = tc.function as Record<string, unknown> | undefined;
            if (fn && typeof fn.arguments === 'string') {
              countDelta(fn.arguments);
              if (map) {
                const r = restorer(`${index}:t${typeof tc.index === 'number' ? tc.index : 0}`, true).push(fn.arguments);
                if (r !== fn.arguments) {
                  fn.arguments = r;
                  changed = true;
                }
              }
            }
          }
        }
        if (c.finish_reason && map) flushOpenAiChoice(chunk, index);
      }
      out += changed ? `data: ${JSON.stringify(chunk)}\n\n` : `data: ${ev.data}\n\n`;
    };

    const blockJson = new Map<number, boolean>();
    const onAnthropicEvent = (ev: EventSourceMessage): void => {
      const name = ev.event ?? 'message';
      let data: Record<string, unknown> | undefined;
      try {
        data = JSON.parse(ev.data) as Record<string, unknown>;
      } catch {
        if (ev.data.trim().length > 0) breakStream(ev.data);
        return;
      }
      if (typeof data !== 'object' || data === null) return breakStream(ev.data);
      let changed = false;
      if (data) {
        if (data.type === 'error') {
          const m = (data.error as { message?: unknown } | undefined)?.message;
          streamError ??= `provider "${record.provider}" reported an error in the stream: ${typeof m === 'string' ? m : ev.data}`;
        }
        if (data.type === 'message_start') {
          const u = (data.message as { usage?: Record<string, number> } | undefined)?.usage;
          if (u?.input_tokens !== undefined) reportedPrompt = u.input_tokens + (u.cache_read_input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0);
        } else if (data.type === 'content_block_start') {
          const block = data.content_block as Record<string, unknown> | undefined;
          blockJson.set(Number(data.index), block?.type === 'tool_use' || block?.type === 'server_tool_use');
        } else if (data.type === 'content_block_delta') {
          const d = data.delta as Record<string, unknown>;
          const index = Number(data.index);
          const field = d.type === 'text_delta' ? 'text' : d.type === 'input_json_delta' ? 'partial_json' : d.type === 'thinking_delta' ? 'thinking' : undefined;
          if (field && typeof d[field] === 'string') {
            countDelta(d[field] as string);
            if (map) {
              const r = restorer(String(index), field === 'partial_json').push(d[field] as string);
              if (r !== d[field]) {
                d[field] = r;
                changed = true;
              }
            }
          }
        } else if (data.type === 'content_block_stop' && map) {
          const r = restorers.get(String(data.index));
          if (r?.pending) {
            const json = blockJson.get(Number(data.index)) === true;
            const delta = json ? { type: 'input_json_delta', partial_json: r.flush() } : { type: 'text_delta', text: r.flush() };
            out += `event: content_block_delta\ndata: ${JSON.stringify({ type: 'content_block_delta', index: data.index, delta })}\n\n`;
          }
        } else if (data.type === 'message_delta') {
          const u = data.usage as Record<string, number> | undefined;
          if (u?.output_tokens !== undefined) reportedCompletion = u.output_tokens;
          // message_delta usage is cumulative: when it carries input tokens they are the final count.
          if (u?.input_tokens !== undefined) reportedPrompt = u.input_tokens + (u.cache_read_input_tokens ?? 0) + (u.cache_creation_input_tokens ?? 0);
        } else if (data.type === 'message_stop') {
          finished = true;
        }
      }
      out += `event: ${name}\ndata: ${changed ? JSON.stringify(data) : ev.data}\n\n`;
    };

    const handler = family === 'anthropic' ? onAnthropicEvent : onOpenAiEvent;
    // A provider of the other API: its events are translated into the caller's first, so the relay
    // below (restore, usage, budget cut) sees the caller's format either way.
    const errorFor = (kind: ErrorKind, message: string): unknown => errorBody(family, kind, scrubUpstreamAddress(message, provider));
    const translator: StreamTranslator | undefined =
      familyOf(api) === provider.type
        ? undefined
        : provider.type === 'anthropic'
          ? anthropicStreamToOpenAi(Math.floor(clock.now() / 1000), errorFor, breakStream)
          : openAiStreamToAnthropic(a.promptTokens, errorFor, breakStream);
    /** A translated stream: did the provider itself report a completion count (the translator always sends one)? */
    let providerReported = false;
    const sink = translator
      ? (ev: EventSourceMessage): void => {
          if (!providerReported && (ev.data.includes('"output_tokens"') || ev.data.includes('"completion_tokens"'))) {
            try {
              const d = JSON.parse(ev.data) as { usage?: Record<string, unknown> | null };
              providerReported = reportedCount(d.usage?.output_tokens) !== undefined || reportedCount(d.usage?.completion_tokens) !== undefined;
            } catch {
              // The translator reports the broken event.
            }
          }
          // An event the translator cannot parse calls breakStream (its events are not relayed after that).
          for (const out of translator.push(ev)) if (!broken) handler(out);
        }
      : handler;
    const parser = createParser({ onEvent: (ev) => (cut || broken ? undefined : sink(ev)) });
    const decoder = new TextDecoder();
    for await (const chunk of upstream.body) {
      const tc = clock.monotonic();
      parser.feed(decoder.decode(chunk as Buffer, { stream: true }));
      // Usage while streaming: the estimate until the provider reports real numbers.
      const prompt = reportedPrompt ?? a.promptTokens;
      const completion = Math.max(completionTokens, reportedCompletion ?? 0);
      a.usage.set(prompt + completion, costOf(provider, prompt, completion));
      if (!finished) cut ??= ledger.check(a.usage, NO_EXTRA);
      if (cut && !finished) {
        out += errorEvent(family, 'budget', `${cut.message} (stream cut after ~${completion} completion tokens)`, 'budget_exceeded');
      }
      if (out.length > 0) {
        // Write-ahead for the budget: what the caller is about to receive is charged on disk first.
        ledger.secure(a.usage);
      }
      record.overhead_ms += clock.monotonic() - tc;
      if (out.length > 0) {
        const ok = res.write(out);
        out = '';
        if (!ok && !cut) await new Promise<void>((resolve) => {
          const go = (): void => { res.off('drain', go); res.off('close', go); resolve(); };
          res.on('drain', go);
          res.on('close', go);
        });
      }
      if (cut && !finished) break;
      if (broken) break;
      cut = undefined;
      budgetUpdate(false, record.id);
      if (res.destroyed) break;
    }
    if (cut || broken) {
      abort.abort();
      await upstream.body.dump().catch(() => undefined);
    } else {
      parser.feed(decoder.decode());
      if (translator) for (const ev of translator.end()) handler(ev);
      // A stream that ended without [DONE]/finish: give back whatever is still held.
      if (map && family === 'openai') {
        for (const [key, r] of restorers) {
          if (!r.pending) continue;
          const index = Number(key.split(':')[0]);
          flushOpenAiChoice({ object: api === 'openai.completions' ? 'text_completion' : 'chat.completion.chunk' }, index);
        }
      }
      if (out.length > 0) {
        ledger.secure(a.usage);
        res.write(out);
      }
    }
    res.end();
    if (translator && !providerReported) reportedCompletion = undefined;
    const prompt = reportedPrompt ?? a.promptTokens;
    // No usage from the provider: the tokenizer's count of what was relayed (for a stream cut on a cap,
    // never below the running estimate it was cut on, so it leaves its window at the cap).
    const counted = reportedCompletion === undefined && generated.length > 0 ? (await loadTokenizer())(generated.join('')) : undefined;
    const completion = reportedCompletion ?? (counted === undefined ? completionTokens : cut ? Math.max(completionTokens, counted) : counted);
    record.prompt_tokens = prompt;
    record.completion_tokens = completion;
    record.tokens_reported = reportedCompletion !== undefined;
    if (reportedCompletion === undefined && completion > 0) record.usage_estimated = true;
    a.usage.set(prompt + completion, costOf(provider, prompt, completion));
    record.cost_usd = a.usage.usd;
    if (cut) {
      emitExceeded(record.id, cut, 'stream');
      a.done(200, 'budget_cut', 'warn', cut.message);
    } else if (broken) {
      a.done(502, 'upstream_error', 'error', broken);
    } else if (res.destroyed && !res.writableFinished) {
      a.done(499, 'client_abort', 'info');
    } else if (streamError) {
      a.done(502, 'upstream_error', 'warn', streamError);
    } else {
      a.done(200, 'ok', 'info');
    }
  }

  return {
    handle(req, res) {
      handleCall(req, res).catch((err: unknown) => {
        const family: WireFamily = (req.url ?? '').startsWith('/v1/messages') ? 'anthropic' : 'openai';
        if (!res.writableEnded) sendError(res, family, 500, 'upstream', `privacy router internal error: ${scrubUpstreamAddress((err as Error).message, undefined)}`);
      });
    },
    setPolicy,
    config: () => config,
    budget: () => ledger.snapshot(),
    setBudget(scope, caps) {
      ledger.setOverride(scope, caps);
      budgetUpdate(true);
      return ledger.snapshot();
    },
    stats: () => ({ calls, inFlight, cache: classifier.stats() }),
    async close() {
      ledger.flush();
      if (ownDispatcher) await ownDispatcher.close().catch(() => undefined);
    },
  };
}
