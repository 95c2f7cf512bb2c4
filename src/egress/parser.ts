/**
 * Strict HTTP/1.x request-head parser for the egress proxy. It works on raw bytes from the client
 * socket and refuses everything a lenient parser downstream could read differently (request
 * smuggling, path confusion): bare LF, obs-fold, whitespace before the colon, CL+TE, differing
 * duplicate Content-Length, transfer codings other than `chunked`, `..` above the root, encoded
 * slashes, userinfo in the authority, fragments in the target, obfuscated Transfer-Encoding
 * (empty list elements, trailing whitespace) and chunk extensions outside the RFC 9112 grammar.
 */

export const MAX_HEAD_BYTES = 16 * 1024;

export type TargetForm = 'absolute' | 'authority' | 'origin';

export interface RequestHead {
  method: string;
  /** The request target as sent. */
  rawTarget: string;
  form: TargetForm;
  version: '1.0' | '1.1';
  /** Lower-cased host without brackets/trailing dot (absolute and authority forms; origin form: from Host). */
  host: string;
  port: number;
  /** Normalised path (dot segments resolved) plus the query string, for forwarding. Empty for CONNECT. */
  pathAndQuery: string;
  /** Normalised path without query, for L7 matching. */
  path: string;
  /** [name, value] in order; names as sent. */
  headers: Array<[string, string]>;
  /** Lower-cased name → values. */
  byName: Map<string, string[]>;
  /** Body framing. */
  contentLength: number;
  chunked: boolean;
  keepAlive: boolean;
  expectContinue: boolean;
}

export type ParseResult =
  | { kind: 'incomplete' }
  | { kind: 'error'; status: 400 | 431 | 501 | 505; reason: string }
  | { kind: 'ok'; head: RequestHead; consumed: number };

const TOKEN_RE = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;
// Field values: visible ASCII, SP, HTAB and obs-text; no CTLs (NUL, CR, LF, DEL...).
const FIELD_VALUE_RE = /^[\t\x20-\x7e\x80-\xff]*$/;
const REG_NAME_RE = /^[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]*[a-z0-9_])?)*$/;

function fail(status: 400 | 431 | 501 | 505, reason: string): ParseResult {
  return { kind: 'error', status, reason };
}

/** Find the end of the head (index just past CRLFCRLF) or -1. */
export function findHeadEnd(buf: Buffer, from = 0): number {
  const i = buf.indexOf('\r\n\r\n', Math.max(0, from - 3), 'latin1');
  return i < 0 ? -1 : i + 4;
}

export interface Authority {
  host: string;
  port: number;
}

/**
 * Parse `host[:port]` / `[v6][:port]`. Host is lower-cased, trailing dot removed. Userinfo is refused.
 */
export function parseAuthority(text: string, defaultPort: number | undefined): Authority | string {
  if (text.length === 0) return 'empty authority';
  if (text.includes('@')) return 'userinfo in the authority is not allowed';
  let host: string;
  let portText: string | undefined;
  if (text.startsWith('[')) {
    const close = text.indexOf(']');
    if (close < 0) return 'unterminated IPv6 literal';
    host = text.slice(1, close).toLowerCase();
    const rest = text.slice(close + 1);
    if (rest.length > 0) {
      if (!rest.startsWith(':')) return 'garbage after IPv6 literal';
      portText = rest.slice(1);
    }
    if (!/^[0-9a-f:.]+$/.test(host) || !host.includes(':')) return 'invalid IPv6 literal';
  } else {
    const colon = text.lastIndexOf(':');
    if (colon >= 0) {
      host = text.slice(0, colon);
      portText = text.slice(colon + 1);
    } else host = text;
    host = host.toLowerCase();
    if (host.endsWith('.')) host = host.slice(0, -1);
    if (host.length === 0 || host.length > 253 || !REG_NAME_RE.test(host)) return `invalid host "${text}"`;
  }
  let port: number;
  if (portText === undefined) {
    if (defaultPort === undefined) return 'port required';
    port = defaultPort;
  } else {
    if (!/^[0-9]{1,5}$/.test(portText)) return `invalid port "${portText}"`;
    port = Number(portText);
    if (port < 1 || port > 65535) return `port out of range "${portText}"`;
  }
  return { host, port };
}

/**
 * Normalise a request path: resolve `.`/`..` (also percent-encoded), refuse climbing above the
 * root and encoded slashes/backslashes (they make the upstream and our L7 rules see different paths).
 */
export function normalisePath(rawPath: string): { path: string } | string {
  if (!rawPath.startsWith('/')) return 'path must start with "/"';
  if (/%(2f|5c)/i.test(rawPath)) return 'encoded slash in the path';
  if (rawPath.includes('\\')) return 'backslash in the path';
  if (/%(?![0-9a-fA-F]{2})/.test(rawPath)) return 'malformed percent-encoding in the path';
  const out: string[] = [];
  const segments = rawPath.slice(1).split('/');
  for (let i = 0; i < segments.length; i++) {
    const seg = segments[i] as string;
    const decoded = seg.replace(/%2e/gi, '.');
    const last = i === segments.length - 1;
    if (decoded === '.') {
      if (last) out.push('');
      continue;
    }
    if (decoded === '..') {
      if (out.length === 0) return '".." above the root of the path';
      out.pop();
      if (last) out.push('');
      continue;
    }
    out.push(seg);
  }
  return { path: '/' + out.join('/') };
}

function splitTarget(target: string): { path: string; query: string } {
  const hash = target.indexOf('#');
  if (hash >= 0) target = target.slice(0, hash);
  const q = target.indexOf('?');
  return q < 0 ? { path: target, query: '' } : { path: target.slice(0, q), query: target.slice(q) };
}

/**
 * Parse one request head at the start of `buf`. `tunnelAuthority` is set for plain HTTP spoken
 * inside a CONNECT tunnel: origin-form targets are expected and Host must name the tunnel's authority.
 */
export function parseRequestHead(buf: Buffer, tunnelAuthority?: Authority): ParseResult {
  // RFC 9112 §2.2: empty lines before a request-line are ignored. They are skipped here, so the
  // request after them is parsed (and its Host checked) like any other, never passed on unread.
  const skip = leadingEmptyLines(buf);
  if (skip > 0) {
    if (skip > MAX_HEAD_BYTES) return fail(431, 'request head larger than 16 KiB');
    const r = parseRequestHead(buf.subarray(skip), tunnelAuthority);
    return r.kind === 'ok' ? { ...r, consumed: r.consumed + skip } : r;
  }
  const end = findHeadEnd(buf);
  if (end < 0) {
    if (buf.length > MAX_HEAD_BYTES) return fail(431, 'request head larger than 16 KiB');
    // A bare LF line ending anywhere already seen is refused early so we never wait on it.
    if (hasBareLf(buf, buf.length)) return fail(400, 'bare LF line ending');
    return { kind: 'incomplete' };
  }
  if (end > MAX_HEAD_BYTES) return fail(431, 'request head larger than 16 KiB');
  if (hasBareLf(buf, end) || hasBareCr(buf, end)) return fail(400, 'bare CR or LF in the request head');
  const text = buf.toString('latin1', 0, end - 4);
  const lines = text.split('\r\n');
  const requestLine = lines[0] ?? '';
  const parts = requestLine.split(' ');
  if (parts.length !== 3) return fail(400, 'malformed request line');
  const [method, rawTarget, versionText] = parts as [string, string, string];
  if (!TOKEN_RE.test(method)) return fail(400, 'invalid method');
  if (versionText !== 'HTTP/1.1' && versionText !== 'HTTP/1.0') {
    return /^HTTP\/\d\.\d$/.test(versionText) ? fail(505, 'only HTTP/1.0 and HTTP/1.1 are supported') : fail(400, 'malformed HTTP version');
  }
  const version = versionText === 'HTTP/1.1' ? '1.1' : '1.0';
  if (rawTarget.length === 0 || !/^[\x21-\x7e]+$/.test(rawTarget)) return fail(400, 'invalid request target');
  // RFC 9112 §3.2: no request-target form has a fragment. A lenient reader could take what follows
  // `#` (`http://a.example#x:8288/admin`) as part of the authority or path; refuse rather than strip.
  if (rawTarget.includes('#')) return fail(400, 'fragment ("#") in the request target');

  const headers: Array<[string, string]> = [];
  const byName = new Map<string, string[]>();
  for (let i = 1; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line.length === 0) return fail(400, 'empty header line');
    if (line[0] === ' ' || line[0] === '\t') return fail(400, 'obsolete line folding');
    const colon = line.indexOf(':');
    if (colon <= 0) return fail(400, 'header line without a name');
    const name = line.slice(0, colon);
    if (!TOKEN_RE.test(name)) return fail(400, `invalid header name "${name.slice(0, 40)}"`);
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, '');
    // Trailing OWS is legal, but llhttp reads `chunked\t` as an unknown coding: on the one header
    // that decides the body's length, no two readers may differ.
    if (/[ \t]$/.test(line) && name.toLowerCase() === 'transfer-encoding') return fail(400, 'whitespace after the Transfer-Encoding value');
    if (!FIELD_VALUE_RE.test(value)) return fail(400, `invalid characters in header "${name}"`);
    headers.push([name, value]);
    const lower = name.toLowerCase();
    const list = byName.get(lower);
    if (list) list.push(value);
    else byName.set(lower, [value]);
  }

  // Body framing.
  const te = byName.get('transfer-encoding');
  const cl = byName.get('content-length');
  let contentLength = 0;
  let chunked = false;
  if (te && cl) return fail(400, 'both Content-Length and Transfer-Encoding');
  if (te) {
    if (version === '1.0') return fail(400, 'Transfer-Encoding in an HTTP/1.0 request');
    const codings = te.join(',').split(',').map((s) => s.trim().toLowerCase());
    // `chunked,` / `, chunked`: empty list elements are legal but a classic obfuscation; readers
    // disagree on whether `chunked` is then the final coding (llhttp refuses). So do we.
    if (codings.some((s) => s.length === 0)) return fail(400, 'empty element in Transfer-Encoding');
    if (codings.length !== 1 || codings[0] !== 'chunked') return fail(501, 'only "Transfer-Encoding: chunked" is supported');
    chunked = true;
  }
  if (cl) {
    const values = cl.join(',').split(',').map((s) => s.trim());
    if (values.some((v) => !/^[0-9]{1,15}$/.test(v))) return fail(400, 'invalid Content-Length');
    if (new Set(values.map((v) => Number(v))).size !== 1) return fail(400, 'duplicate Content-Length with different values');
    contentLength = Number(values[0]);
  }

  const hostHeaders = byName.get('host');
  if (hostHeaders && hostHeaders.length > 1) return fail(400, 'more than one Host header');
  const connectionTokens = (byName.get('connection') ?? []).join(',').toLowerCase().split(',').map((s) => s.trim());
  const keepAlive = version === '1.1' ? !connectionTokens.includes('close') : connectionTokens.includes('keep-alive');
  const expect = byName.get('expect');
  const expectContinue = expect !== undefined && expect.some((v) => v.toLowerCase() === '100-continue');

  let form: TargetForm;
  let host: string;
  let port: number;
  let path = '';
  let pathAndQuery = '';

  if (method === 'CONNECT') {
    if (tunnelAuthority) return fail(400, 'CONNECT inside a tunnel');
    const a = parseAuthority(rawTarget, undefined);
    if (typeof a === 'string') return fail(400, `CONNECT target: ${a}`);
    form = 'authority';
    host = a.host;
    port = a.port;
    if (contentLength > 0 || chunked) return fail(400, 'CONNECT with a body');
  } else if (rawTarget.startsWith('/')) {
    if (!tunnelAuthority) return fail(400, 'origin-form target: send an absolute http:// URL to the proxy');
    if (version === '1.1' && !hostHeaders) return fail(400, 'missing Host header');
    if (hostHeaders) {
      const h = parseAuthority(hostHeaders[0] as string, tunnelAuthority.port);
      if (typeof h === 'string') return fail(400, `Host header: ${h}`);
      if (h.host !== tunnelAuthority.host || h.port !== tunnelAuthority.port) {
        return fail(400, `Host header "${hostHeaders[0]}" differs from the tunnel's authority ${tunnelAuthority.host}:${tunnelAuthority.port}`);
      }
    }
    form = 'origin';
    host = tunnelAuthority.host;
    port = tunnelAuthority.port;
    const { path: p, query } = splitTarget(rawTarget);
    const n = normalisePath(p);
    if (typeof n === 'string') return fail(400, n);
    path = n.path;
    pathAndQuery = n.path + query;
  } else {
    const m = /^([a-zA-Z][a-zA-Z0-9+.-]*):\/\/([^/?#]*)(.*)$/.exec(rawTarget);
    if (!m) return fail(400, 'invalid request target');
    const scheme = (m[1] as string).toLowerCase();
    if (scheme !== 'http') {
      return fail(400, scheme === 'https' ? 'https:// URLs must use CONNECT' : `unsupported scheme "${scheme}"`);
    }
    if (tunnelAuthority) return fail(400, 'absolute-form target inside a tunnel');
    const a = parseAuthority(m[2] as string, 80);
    if (typeof a === 'string') return fail(400, a);
    form = 'absolute';
    host = a.host;
    port = a.port;
    const rest = (m[3] as string) || '/';
    const { path: p, query } = splitTarget(rest.startsWith('/') ? rest : '/' + rest);
    const n = normalisePath(p);
    if (typeof n === 'string') return fail(400, n);
    path = n.path;
    pathAndQuery = n.path + query;
  }

  return {
    kind: 'ok',
    consumed: end,
    head: { method, rawTarget, form, version, host, port, path, pathAndQuery, headers, byName, contentLength, chunked, keepAlive, expectContinue },
  };
}

/** Length of the run of CRLF pairs at the start of `buf`. */
export function leadingEmptyLines(buf: Buffer): number {
  let i = 0;
  while (i + 1 < buf.length && buf[i] === 13 && buf[i + 1] === 10) i += 2;
  return i;
}

/**
 * Index of the first byte that is not CR, LF, SP or HTAB (-1 when there is none yet): where a
 * tunnel's first bytes are classified, so that a request behind empty lines (or blanks a lenient
 * upstream would skip) is still recognised as HTTP and inspected.
 */
export function firstSignificantByte(buf: Buffer): number {
  for (let i = 0; i < buf.length; i++) {
    const b = buf[i] as number;
    if (b !== 13 && b !== 10 && b !== 32 && b !== 9) return i;
  }
  return -1;
}

function hasBareLf(buf: Buffer, end: number): boolean {
  let i = buf.indexOf(10);
  while (i >= 0 && i < end) {
    if (i === 0 || buf[i - 1] !== 13) return true;
    i = buf.indexOf(10, i + 1);
  }
  return false;
}

function hasBareCr(buf: Buffer, end: number): boolean {
  let i = buf.indexOf(13);
  while (i >= 0 && i < end) {
    if (buf[i + 1] !== 10) return true;
    i = buf.indexOf(13, i + 1);
  }
  return false;
}

// RFC 9112 §7.1.1 chunk-ext, without the optional whitespace (as llhttp's strict mode): `;name`,
// `;name=token` or `;name="quoted"`. Anything else (CTLs, spaces, obs-text) is refused: a reader
// that skips a malformed extension differently would end the chunk line somewhere else.
const CHUNK_EXT_RE = /^(;[!#$%&'*+\-.^_`|~0-9A-Za-z]+(=([!#$%&'*+\-.^_`|~0-9A-Za-z]+|"([\t \x21\x23-\x5b\x5d-\x7e]|\\[\t \x21-\x7e])*"))?)*$/;

/**
 * Strict incremental chunked-body decoder: feeds decoded data out and reports the end. Chunk
 * extensions are ignored, trailers are discarded; anything malformed is an error (no guessing).
 */
export class ChunkedDecoder {
  private state: 'size' | 'data' | 'data-crlf' | 'trailer' | 'done' = 'size';
  private remaining = 0;
  private line = '';
  /** Bytes of `chunk` not consumed because the body ended inside it (the next request's bytes). */
  leftover: Buffer | undefined;

  constructor(private readonly onData: (b: Buffer) => void) {}

  get done(): boolean {
    return this.state === 'done';
  }

  /** Returns an error string when malformed. */
  push(chunk: Buffer): string | undefined {
    let i = 0;
    while (i < chunk.length) {
      if (this.state === 'data') {
        const n = Math.min(this.remaining, chunk.length - i);
        this.onData(chunk.subarray(i, i + n));
        this.remaining -= n;
        i += n;
        if (this.remaining === 0) this.state = 'data-crlf';
        continue;
      }
      if (this.state === 'done') {
        this.leftover = chunk.subarray(i);
        return undefined;
      }
      const byte = chunk[i++] as number;
      if (byte !== 10) {
        this.line += String.fromCharCode(byte);
        if (this.line.length > 4096) return 'chunk line too long';
        continue;
      }
      if (!this.line.endsWith('\r')) return 'bare LF in chunked body';
      const line = this.line.slice(0, -1);
      this.line = '';
      if (this.state === 'data-crlf') {
        if (line.length !== 0) return 'missing CRLF after chunk data';
        this.state = 'size';
      } else if (this.state === 'size') {
        const m = /^([0-9a-fA-F]{1,12})(;.*)?$/.exec(line);
        if (!m) return 'invalid chunk size';
        if (m[2] !== undefined && !CHUNK_EXT_RE.test(m[2])) return 'invalid chunk extension';
        this.remaining = parseInt(m[1] as string, 16);
        this.state = this.remaining === 0 ? 'trailer' : 'data';
      } else if (this.state === 'trailer') {
        if (line.length === 0) {
          this.state = 'done';
        } else if (!/^[!#$%&'*+\-.^_`|~0-9A-Za-z]+:/.test(line)) {
          return 'invalid trailer';
        }
      }
    }
    if (this.state === 'done' && !this.leftover) this.leftover = Buffer.alloc(0);
    return undefined;
  }
}
