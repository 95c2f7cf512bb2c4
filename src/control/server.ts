/**
 * The control API: HTTP/1.1 over a Unix socket (0600, in a 0700 dir), JSON in and out.
 * `GET /v1/events` streams newline-delimited JSON (backlog, then live); every other route is a
 * ControlRoute (built-in ones from the supervisor, more contributed by services).
 */
import { unlinkSync } from 'node:fs';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Duplex } from 'node:stream';
import { dirname } from 'node:path';
import { isEventKind, type AuditEvent, type EventKind } from '../audit/events.js';
import { ensurePrivateDir } from '../shared/home.js';
import { listenUnixSocket } from '../shared/socket.js';
import { NemoclawError, isNemoclawError, previewJson, type ErrorCode } from '../shared/errors.js';
import { Router } from './router.js';
import type { OperatorPresenceTracker } from './presence.js';
import type { ControlRoute, EventBus, EventFilter } from './types.js';

export interface ControlServerOptions {
  socketPath: string;
  sandbox: string;
  bus: EventBus;
  presence: OperatorPresenceTracker;
  routes: ControlRoute[];
  /** Interval of heartbeat lines on follow streams (clients treat 3 missed ones as a dead supervisor). */
  heartbeatMs?: number;
  /** A follower whose unsent output exceeds this is dropped with a final error line. */
  maxBufferedBytes?: number;
  /** Largest accepted request body. */
  maxBodyBytes?: number;
  /** How long a request body may take to arrive (default 30 s). */
  bodyTimeoutMs?: number;
  /** Unexpected handler failures (logged by the supervisor; the request gets a 500). */
  onError?: (err: unknown) => void;
}

/** Control lines on an event stream never carry `kind`; events always do. */
export type StreamControlLine =
  | { type: 'hello'; sandbox: string; last_seq: number; heartbeat_ms: number }
  | { type: 'backlog_end'; last_seq: number }
  | { type: 'heartbeat'; ts: string; last_seq: number }
  | { type: 'error'; error: string; message: string }
  | { type: 'end'; reason: string };

export const HTTP_STATUS_FOR_CODE: Record<ErrorCode, number> = {
  invalid_input: 400,
  policy_invalid: 400,
  policy_static_change: 409,
  conflict: 409,
  already_running: 409,
  not_found: 404,
  denied: 403,
  not_running: 503,
  prerequisite_missing: 503,
  io: 500,
  audit_corrupt: 500,
  internal: 500,
};

interface ActiveStream {
  res: ServerResponse;
  close(reason: string): void;
}

export class ControlServer {
  private readonly opts: Required<Omit<ControlServerOptions, 'onError'>> & Pick<ControlServerOptions, 'onError'>;
  private readonly router = new Router();
  private readonly server: Server;
  private readonly streams = new Set<ActiveStream>();
  /** The request being read on each connection (for clientError: see there). */
  private readonly incoming = new WeakMap<object, IncomingMessage>();
  private listening = false;

  constructor(opts: ControlServerOptions) {
    this.opts = {
      heartbeatMs: 5_000,
      maxBufferedBytes: 4 * 1024 * 1024,
      maxBodyBytes: 4 * 1024 * 1024,
      bodyTimeoutMs: 30_000,
      ...opts,
    };
    for (const r of opts.routes) this.router.add(r);
    this.server = createServer((req, res) => {
      this.incoming.set(req.socket, req);
      this.handle(req, res).catch((err: unknown) => {
        this.opts.onError?.(err);
        if (!res.headersSent) sendError(res, new NemoclawError('internal', 'internal error in the supervisor'));
        else res.destroy();
      });
    });
    // Follow streams live for hours: the request head has a deadline, a body its own (readJsonBody),
    // the stream none.
    this.server.requestTimeout = 0;
    this.server.headersTimeout = 10_000;
    // A client that half-closes after its request (`socat`, `nc -N`, a script that shuts its write
    // side) still gets the whole answer, a long backlog stream included: by default Node ends the
    // socket on the client's FIN and cuts a response still being written. (A property of Node's
    // http.Server, read by its FIN handler.)
    (this.server as Server & { httpAllowHalfOpen: boolean }).httpAllowHalfOpen = true;
    // Without a listener Node drops a CONNECT without a word: say it is not part of this API.
    this.server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
      const body = JSON.stringify({ error: 'invalid_input', message: 'CONNECT is not part of the control API', next_step: 'send GET, POST or PUT requests with an origin-form target such as /v1/status' });
      // Node hands the socket over paused and half-open: read it to its end, or the peer's FIN is
      // never seen and the socket (and server.close()) waits for ever.
      socket.on('error', () => socket.destroy());
      socket.on('end', () => socket.destroy());
      socket.resume();
      if (socket.writable) socket.end(`HTTP/1.1 405 Method Not Allowed\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
      else socket.destroy();
    });
    this.server.on('clientError', (_err, socket) => {
      const reply = (): void => {
        if (socket.writable) socket.end('HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n{"error":"invalid_input","message":"malformed HTTP request"}');
      };
      // Bytes after a good request (pipelined garbage, a body longer than its Content-Length) fail
      // to parse while that request's answer is still being written, a backlog stream say: the 400
      // must follow the answer, never land in the middle of it. (If the answer ends the
      // connection, Node closes it and there is nobody to tell.)
      const inFlight = (socket as typeof socket & { _httpMessage?: ServerResponse | null })._httpMessage;
      // The parse failed inside a request's own body (the client half-closed before the whole
      // Content-Length came): that request can never be answered, so it ends here and its handler
      // sees a body that did not come, instead of waiting for the body deadline.
      const incoming = this.incoming.get(socket);
      if (incoming && !incoming.complete && !incoming.destroyed) {
        incoming.emit(BODY_BROKEN, _err);
        if (inFlight && !inFlight.writableFinished) inFlight.once('finish', () => socket.end());
        return;
      }
      if (inFlight && !inFlight.writableFinished) {
        inFlight.once('finish', reply);
        return;
      }
      if (socket.writable) reply();
      else socket.destroy();
    });
  }

  get socketPath(): string {
    return this.opts.socketPath;
  }

  routes(): Array<{ method: string; path: string }> {
    return [{ method: 'GET', path: '/v1/events' }, ...this.router.list()];
  }

  async listen(): Promise<void> {
    ensurePrivateDir(dirname(this.opts.socketPath));
    await listenUnixSocket(this.server, this.opts.socketPath, { what: 'control socket' });
    this.listening = true;
  }

  /** Ends follow streams with a final line, stops accepting, and removes the socket. */
  async close(reason = 'supervisor stopping'): Promise<void> {
    for (const s of [...this.streams]) s.close(reason);
    if (this.listening) {
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => this.server.closeAllConnections(), 2_000);
        force.unref();
        this.server.close(() => {
          clearTimeout(force);
          resolve();
        });
        this.server.closeIdleConnections();
      });
      this.listening = false;
    }
    try {
      unlinkSync(this.opts.socketPath);
    } catch {
      // Already gone.
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = (req.method ?? 'GET').toUpperCase();
    let url: URL;
    try {
      url = new URL(req.url ?? '/', 'http://nemoclaw');
    } catch {
      // `GET //[ HTTP/1.1` reaches us (llhttp takes it) but is no URL: the client's mistake, not ours.
      req.resume();
      sendError(res, new NemoclawError('invalid_input', `malformed request target ${JSON.stringify((req.url ?? '').slice(0, 200))}`, {
        nextStep: 'send an origin-form target such as /v1/status',
        exitCode: 2,
      }));
      return;
    }
    if (url.pathname === '/v1/events') {
      if (method !== 'GET') {
        sendJson(res, 405, { error: 'invalid_input', message: `${method} is not allowed on /v1/events`, allowed: ['GET'] });
        return;
      }
      await this.handleEvents(req, res, url.searchParams);
      return;
    }
    const match = this.router.match(method, url.pathname);
    if (match.kind === 'not_found') {
      req.resume();
      sendJson(res, 404, {
        error: 'not_found',
        message: `no such control route: ${method} ${shortPath(url.pathname)}`,
        next_step: 'see GET /v1/status for the routes this supervisor serves',
      });
      return;
    }
    if (match.kind === 'method_not_allowed') {
      req.resume();
      sendJson(res, 405, {
        error: 'invalid_input',
        message: `${method} is not allowed on ${shortPath(url.pathname)}`,
        allowed: match.allowed,
      });
      return;
    }
    let body: unknown;
    try {
      body = await readJsonBody(req, this.opts.maxBodyBytes, this.opts.bodyTimeoutMs);
    } catch (err) {
      sendError(res, err);
      return;
    }
    try {
      const out = await match.route.handler({
        method,
        path: url.pathname,
        params: match.params,
        query: url.searchParams,
        body,
        headers: req.headers,
      });
      sendJson(res, out.status, out.body ?? {}, out.headers);
    } catch (err) {
      if (!isNemoclawError(err)) this.opts.onError?.(err);
      sendError(res, err);
    }
  }

  private async handleEvents(req: IncomingMessage, res: ServerResponse, q: URLSearchParams): Promise<void> {
    let parsed: ReturnType<typeof parseEventQuery>;
    try {
      parsed = parseEventQuery(q);
    } catch (err) {
      sendError(res, err);
      return;
    }
    const { filter, limit, follow, approver } = parsed;
    const bus = this.opts.bus;
    // One stream per connection: when it ends (or we drop a slow reader) the connection goes too.
    res.writeHead(200, { 'Content-Type': 'application/x-ndjson', 'Cache-Control': 'no-store', Connection: 'close' });
    res.flushHeaders();

    if (!follow) {
      // Page by page (a backlog with no limit may be the whole log), at the socket's pace.
      for await (const events of backlogPages(bus, filter, limit)) {
        for (const e of events) {
          if (!res.write(JSON.stringify(e) + '\n')) await onceDrainOrClose(res);
          if (res.destroyed) return;
        }
      }
      res.end();
      return;
    }

    let closed = false;
    let backlogDone = false;
    let lastSent = filter.sinceSeq ?? 0;
    const pending: AuditEvent[] = [];
    const detachOperator = approver ? this.opts.presence.attach() : undefined;

    const writeLine = (obj: unknown): void => {
      if (closed) return;
      res.write(JSON.stringify(obj) + '\n');
      const buffered = res.writableLength + (res.socket?.writableLength ?? 0);
      if (buffered > this.opts.maxBufferedBytes) {
        stream.close('slow client', {
          type: 'error',
          error: 'slow_client',
          message: `dropped: this client fell more than ${this.opts.maxBufferedBytes} bytes behind; reconnect with since=${lastSent} to resume`,
        });
      }
    };
    const sendEvent = (e: AuditEvent): void => {
      if (e.transient !== true) {
        if (e.seq <= lastSent) return;
        lastSent = e.seq;
      }
      writeLine(e);
    };

    const unsubscribe = bus.subscribe((e) => {
      if (closed) return;
      if (!backlogDone) {
        // Samples are not worth replaying; audited events are delivered after the backlog.
        if (e.transient !== true) pending.push(e);
        return;
      }
      sendEvent(e);
    }, { kinds: filter.kinds });

    const heartbeat = setInterval(() => {
      writeLine({ type: 'heartbeat', ts: new Date().toISOString(), last_seq: bus.durableSeq() });
    }, this.opts.heartbeatMs);
    heartbeat.unref();

    const stream: ActiveStream & { close(reason: string, finalLine?: StreamControlLine): void } = {
      res,
      close: (reason: string, finalLine?: StreamControlLine) => {
        if (closed) return;
        closed = true;
        cleanup();
        const last: StreamControlLine = finalLine ?? { type: 'end', reason };
        res.end(JSON.stringify(last) + '\n');
        // A client that never reads would pin the buffer; give it a moment, then cut it off.
        const kill = setTimeout(() => res.destroy(), 5_000);
        kill.unref();
        res.once('finish', () => clearTimeout(kill));
      },
    };
    const cleanup = (): void => {
      clearInterval(heartbeat);
      unsubscribe();
      detachOperator?.();
      this.streams.delete(stream);
    };
    this.streams.add(stream);
    res.on('close', () => {
      closed = true;
      cleanup();
    });
    req.on('error', () => undefined);
    // A follow stream has no end of its own: a follower that half-closes (its ssh bridge lost
    // stdin, its process is going away) has left, and must stop counting as an attached operator.
    // (A backlog answer, follow=0, is still written whole to a half-closed client.)
    res.socket?.once('end', () => stream.close('the client closed its side'));

    writeLine({ type: 'hello', sandbox: this.opts.sandbox, last_seq: bus.durableSeq(), heartbeat_ms: this.opts.heartbeatMs });
    try {
      for await (const backlog of backlogPages(bus, filter, limit)) {
        for (const e of backlog) {
          if (closed) return;
          if (eventAfterTs(e, filter)) sendEvent(e);
        }
        // A page at a time, so a follower that resumes from an old seq never makes the supervisor
        // hold the whole log; the next page waits until this one has drained.
        if (res.writableNeedDrain) await onceDrainOrClose(res);
        if (closed) return;
      }
    } catch (err) {
      this.opts.onError?.(err);
      stream.close('backlog failed', { type: 'error', error: 'io', message: 'could not read the event backlog from the audit log' });
      return;
    }
    backlogDone = true;
    for (const e of pending.splice(0)) sendEvent(e);
    writeLine({ type: 'backlog_end', last_seq: lastSent });
  }
}

function eventAfterTs(e: AuditEvent, filter: EventFilter): boolean {
  return filter.sinceTs === undefined || Date.parse(e.ts) >= filter.sinceTs;
}

function onceDrainOrClose(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}

export interface ParsedEventQuery {
  filter: EventFilter;
  limit: number | undefined;
  follow: boolean;
  approver: boolean;
}

function bool(v: string | null): boolean {
  return v === '1' || v === 'true' || v === 'yes';
}

function nonNegInt(q: URLSearchParams, name: string): number | undefined {
  const v = q.get(name);
  if (v === null || v === '') return undefined;
  if (!/^\d+$/.test(v) || !Number.isSafeInteger(Number(v))) {
    throw new NemoclawError('invalid_input', `query parameter ${name} must be a non-negative integer, got ${previewJson(v, 40)}`, { exitCode: 2 });
  }
  return Number(v);
}

/** How many events a backlog with no limit reads from disk at a time. */
export const BACKLOG_PAGE = 2_000;

/**
 * The backlog of a request: one read when it has a limit (the newest N, bounded), else pages of
 * BACKLOG_PAGE oldest first, each starting after the last seq of the previous one.
 */
export async function* backlogPages(bus: EventBus, filter: EventFilter, limit: number | undefined, pageSize = BACKLOG_PAGE): AsyncGenerator<AuditEvent[]> {
  if (limit !== undefined) {
    yield await bus.backlog(filter, limit);
    return;
  }
  let sinceSeq = filter.sinceSeq;
  for (;;) {
    const page = await bus.backlog(sinceSeq !== undefined ? { ...filter, sinceSeq } : filter, pageSize, { first: true });
    if (page.length > 0) yield page;
    const last = page.at(-1)?.seq;
    if (page.length < pageSize || last === undefined || (sinceSeq !== undefined && last <= sinceSeq)) return;
    sinceSeq = last;
  }
}

export function parseEventQuery(q: URLSearchParams): ParsedEventQuery {
  const filter: EventFilter = {};
  const since = nonNegInt(q, 'since');
  if (since !== undefined) filter.sinceSeq = since;
  const sinceTs = nonNegInt(q, 'since_ts');
  if (sinceTs !== undefined) filter.sinceTs = sinceTs;
  const kindParam = q.getAll('kind').flatMap((k) => k.split(',')).map((k) => k.trim()).filter((k) => k.length > 0);
  if (kindParam.length > 0) {
    const bad = kindParam.filter((k) => !isEventKind(k));
    if (bad.length > 0) {
      const named = bad.slice(0, 5).map((k) => (/^[\x21-\x7e]{1,40}$/.test(k) ? k : previewJson(k, 40))).join(', ') + (bad.length > 5 ? ` and ${bad.length - 5} more` : '');
      throw new NemoclawError('invalid_input', `unknown event kind: ${named}`, {
        nextStep: 'use kinds from the event schema, e.g. net.decision,policy.revision',
        exitCode: 2,
      });
    }
    filter.kinds = kindParam as EventKind[];
  }
  const n = nonNegInt(q, 'n');
  return { filter, limit: n, follow: bool(q.get('follow')), approver: bool(q.get('approver')) };
}

/** A request path for an error message: the client's own bytes, bounded. */
function shortPath(path: string): string {
  return path.length <= 200 ? path : `${path.slice(0, 200)}… (${path.length} characters)`;
}

/** Deepest nesting of a JSON body the API accepts (its real bodies are 2-3 levels deep). */
export const MAX_JSON_DEPTH = 64;

/** Greatest nesting of `[`/`{` in JSON text, outside strings (a linear scan; malformed text is JSON.parse's to refuse). */
function jsonDepth(text: string): number {
  let depth = 0;
  let max = 0;
  let inString = false;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (inString) {
      if (c === 0x5c) i++;
      else if (c === 0x22) inString = false;
    } else if (c === 0x22) inString = true;
    else if (c === 0x5b || c === 0x7b) {
      if (++depth > max) max = depth;
    } else if (c === 0x5d || c === 0x7d) depth--;
  }
  return max;
}

/** Emitted on a request whose body failed to parse (see clientError); readJsonBody answers 400. */
const BODY_BROKEN = 'nemoclaw:body-broken';

async function readJsonBody(req: IncomingMessage, maxBytes: number, timeoutMs: number): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  // A body that stops coming (a Content-Length larger than what is sent, a stalled client) must not
  // hold the connection and its buffers for ever: the head has a deadline, so does the body.
  await new Promise<void>((resolve, reject) => {
    const done = (err?: NemoclawError): void => {
      clearTimeout(timer);
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onGone);
      req.off('aborted', onGone);
      req.off(BODY_BROKEN, onBroken);
      if (err) {
        req.resume();
        reject(err);
      } else resolve();
    };
    const onData = (buf: Buffer): void => {
      size += buf.length;
      if (size > maxBytes) {
        done(new NemoclawError('invalid_input', `request body is larger than ${maxBytes} bytes (${Math.round(maxBytes / 1024)} KiB), the most this API accepts; nothing was changed`, {
          nextStep: 'send a smaller body: a policy is at most 1 MiB (`nemoclaw-tui policy validate FILE` checks a file, `nemoclaw-tui policy set FILE` sends it)',
          exitCode: 2,
        }));
        return;
      }
      chunks.push(buf);
    };
    const onEnd = (): void => done();
    const incomplete = (why: string): NemoclawError =>
      new NemoclawError('invalid_input', `${why} (${size} bytes came); nothing was changed`, {
        nextStep: 'send the whole body promptly, framed by a Content-Length that matches it or `Transfer-Encoding: chunked`',
        exitCode: 2,
      });
    const onGone = (): void => done(incomplete('the client closed the connection before the whole request body came'));
    const onBroken = (): void => done(incomplete('the request body is not framed as its headers say (a Content-Length longer than the body, or a Transfer-Encoding other than chunked)'));
    const timer = setTimeout(() => {
      done(incomplete(`the request body did not arrive within ${Math.round(timeoutMs / 1000)} s`));
      req.destroy();
    }, timeoutMs);
    timer.unref();
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onGone);
    req.on('aborted', onGone);
    req.on(BODY_BROKEN, onBroken);
  });
  if (size === 0) return undefined;
  const text = Buffer.concat(chunks).toString('utf8');
  const depth = jsonDepth(text);
  if (depth > MAX_JSON_DEPTH) {
    // JSON.parse takes it, but every recursive walk after it (validators, JSON.stringify of an
    // error message) overflows the stack: refuse it here, for every route.
    throw new NemoclawError('invalid_input', `request body is nested ${depth} levels deep; this API accepts at most ${MAX_JSON_DEPTH}; nothing was changed`, {
      nextStep: 'send a flat JSON object such as {"decision": "once"}',
      exitCode: 2,
    });
  }
  try {
    return JSON.parse(text) as unknown;
  } catch (err) {
    throw new NemoclawError('invalid_input', `request body is not valid JSON: ${(err as Error).message}`, {
      nextStep: 'send a JSON object with Content-Type: application/json',
      exitCode: 2,
    });
  }
}

export function sendJson(res: ServerResponse, status: number, body: unknown, headers?: Record<string, string>): void {
  const text = JSON.stringify(body) + '\n';
  res.writeHead(status, {
    'Content-Type': 'application/json',
    'Content-Length': String(Buffer.byteLength(text)),
    ...headers,
  });
  res.end(text);
}

export function sendError(res: ServerResponse, err: unknown): void {
  if (isNemoclawError(err)) {
    sendJson(res, HTTP_STATUS_FOR_CODE[err.code] ?? 500, err.toJSON());
    return;
  }
  sendJson(res, 500, { error: 'internal', message: err instanceof Error ? err.message : String(err) });
}
