/**
 * Request-target canonicalisation, query parsing and the glob dialect of L7 rules, with the
 * meaning NVIDIA OpenShell gives them (crates/openshell-supervisor-network/src/l7/path.rs,
 * l7/rest.rs `parse_query_params`, and Rego `glob.match` as regorus implements it).
 *
 * The canonical path is both what the matcher sees and what the proxy forwards, so the upstream
 * cannot dispatch on a different path than the one the policy decided on. What cannot be
 * canonicalised is refused, never guessed at.
 */

export type CanonicalizeErrorCode =
  | 'null_or_control_byte'
  | 'invalid_percent_encoding'
  | 'encoded_slash_not_allowed'
  | 'fragment_in_request_target'
  | 'non_ascii'
  | 'traversal_above_root'
  | 'residual_dot_segment'
  | 'path_too_long'
  | 'malformed_target';

const ERROR_TEXT: Record<CanonicalizeErrorCode, string> = {
  null_or_control_byte: 'request-target contains a null or control byte',
  invalid_percent_encoding: 'request-target contains an invalid percent-encoded sequence',
  encoded_slash_not_allowed: "request-target contains an encoded '/' (%2F) which is not allowed on this endpoint",
  fragment_in_request_target: 'request-target contains a fragment',
  non_ascii: 'request-target contains raw non-ASCII bytes; non-ASCII must be percent-encoded',
  traversal_above_root: "request-target's `..` segment would escape the path root",
  residual_dot_segment: 'request-target still contains a `.`/`..` segment after canonicalization',
  path_too_long: 'request-target exceeds the configured maximum length',
  malformed_target: 'request-target is not a valid origin-form path',
};

export interface CanonicalizeOptions {
  /** Keep `%2F` inside a segment (re-emitted as `%2F`) instead of refusing it. Default false. */
  allowEncodedSlash?: boolean;
  /** Strip `;params` from every segment. Default true. */
  stripPathParameters?: boolean;
}

export type CanonicalTarget =
  | { ok: true; path: string; query: string | undefined; rewritten: boolean }
  | { ok: false; code: CanonicalizeErrorCode; message: string };

/** Longest origin-form path accepted (bytes), as upstream. */
export const MAX_CANONICAL_PATH = 4 * 1024;

const SENTINEL = 0x01; // stands for a decoded %2F inside a segment

function fail(code: CanonicalizeErrorCode): CanonicalTarget {
  return { ok: false, code, message: ERROR_TEXT[code] };
}

function hex(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** RFC 3986 pchar bytes emitted literally: unreserved, sub-delims, `:` and `@`. */
function literal(b: number): boolean {
  return (
    (b >= 0x30 && b <= 0x39) ||
    (b >= 0x41 && b <= 0x5a) ||
    (b >= 0x61 && b <= 0x7a) ||
    "-._~!$&'()*+,;=:@".includes(String.fromCharCode(b))
  );
}

function stripParams(seg: number[]): number[] {
  const i = seg.indexOf(0x3b);
  return i < 0 ? seg : seg.slice(0, i);
}

function isDot(seg: number[]): boolean {
  return seg.length === 1 && seg[0] === 0x2e;
}
function isDotDot(seg: number[]): boolean {
  return seg.length === 2 && seg[0] === 0x2e && seg[1] === 0x2e;
}

/**
 * Canonicalise a request-target (origin-form `/a/b?q` or absolute-form `http://h/a/b?q`): percent-
 * decode what need not be encoded (the rest re-emitted as upper-case `%HH`), strip `;params`
 * before resolving `.`/`..` (so `..;` cannot slip through), collapse `//`, refuse `..` above the
 * root, control bytes (also encoded, `%00`), raw non-ASCII, fragments and `%2F` (unless allowed).
 * The query is returned byte for byte.
 */
export function canonicalizeRequestTarget(target: string, opts: CanonicalizeOptions = {}): CanonicalTarget {
  const allowEncodedSlash = opts.allowEncodedSlash === true;
  const strip = opts.stripPathParameters !== false;
  for (let i = 0; i < target.length; i++) {
    const c = target.charCodeAt(i);
    if (c < 0x20 || c === 0x7f) return fail('null_or_control_byte');
    if (c >= 0x80) return fail('non_ascii');
  }
  if (target.includes('#')) return fail('fragment_in_request_target');
  const q = target.indexOf('?');
  const pathPart = q < 0 ? target : target.slice(0, q);
  const query = q < 0 ? undefined : target.slice(q + 1);
  let raw = pathPart;
  const abs = /^[A-Za-z][A-Za-z0-9+.-]*:\/\/([^/]*)(.*)$/.exec(pathPart);
  if (abs) raw = abs[2] === '' ? '/' : abs[2]!;
  if (raw === '') raw = '/';
  if (!raw.startsWith('/')) return fail('malformed_target');
  if (raw.length > MAX_CANONICAL_PATH) return fail('path_too_long');

  // Percent-decode into bytes; %2F becomes a sentinel that never splits a segment.
  const decoded: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    const b = raw.charCodeAt(i);
    if (b !== 0x25) {
      decoded.push(b);
      continue;
    }
    if (i + 2 >= raw.length) return fail('invalid_percent_encoding');
    const hi = hex(raw.charCodeAt(i + 1));
    const lo = hex(raw.charCodeAt(i + 2));
    if (hi < 0 || lo < 0) return fail('invalid_percent_encoding');
    const v = (hi << 4) | lo;
    if (v === 0x2f) {
      if (!allowEncodedSlash) return fail('encoded_slash_not_allowed');
      decoded.push(SENTINEL);
    } else if (v < 0x20 || v === 0x7f) {
      return fail('null_or_control_byte');
    } else {
      decoded.push(v);
    }
    i += 2;
  }

  // Split on '/', strip ;params, then resolve dot segments.
  const segments: number[][] = [[]];
  for (let i = 1; i < decoded.length; i++) {
    const b = decoded[i]!;
    if (b === 0x2f) segments.push([]);
    else segments[segments.length - 1]!.push(b);
  }
  const stack: number[][] = [];
  const last = segments.length - 1;
  for (let idx = 0; idx < segments.length; idx++) {
    const seg = strip ? stripParams(segments[idx]!) : segments[idx]!;
    if (isDotDot(seg)) {
      if (stack.pop() === undefined) return fail('traversal_above_root');
      if (idx === last) stack.push([]);
      continue;
    }
    if (isDot(seg)) {
      if (idx === last) stack.push([]);
      continue;
    }
    if (seg.length === 0 && idx !== last) continue; // collapse `//`
    stack.push(seg);
  }
  for (const seg of stack) {
    let part: number[] = [];
    for (const b of [...seg, SENTINEL]) {
      if (b === SENTINEL) {
        if (isDot(part) || isDotDot(part)) return fail('residual_dot_segment');
        part = [];
      } else part.push(b);
    }
  }
  let out = '/';
  stack.forEach((seg, idx) => {
    if (idx > 0) out += '/';
    for (const b of seg) {
      if (b === SENTINEL) out += '%2F';
      else if (literal(b)) out += String.fromCharCode(b);
      else out += `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
    }
  });
  return { ok: true, path: out, query, rewritten: out !== raw };
}

/** Does a canonical path carry a `%2F` kept by `allowEncodedSlash`? (Any other `%` is `%25`.) */
export function canonicalPathHasEncodedSlash(path: string): boolean {
  return path.includes('%2F');
}

function decodeQueryComponent(input: string): string | undefined {
  const bytes: number[] = [];
  for (let i = 0; i < input.length; i++) {
    const c = input.charCodeAt(i);
    if (c === 0x2b) bytes.push(0x20);
    else if (c !== 0x25) {
      if (c >= 0x80) bytes.push(...Buffer.from(input[i]!, 'utf8'));
      else bytes.push(c);
    } else {
      if (i + 2 >= input.length) return undefined;
      const hi = hex(input.charCodeAt(i + 1));
      const lo = hex(input.charCodeAt(i + 2));
      if (hi < 0 || lo < 0) return undefined;
      bytes.push((hi << 4) | lo);
      i += 2;
    }
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
  } catch {
    return undefined;
  }
}

/**
 * Query parameters as upstream parses them: `&`-separated, `+` and `%HH` decoded, a key without
 * `=` has the value "", repeated keys keep every value in order. undefined when a component has
 * invalid percent-encoding or is not UTF-8 (the request is then refused).
 */
export function parseQueryParams(query: string | undefined): Map<string, string[]> | undefined {
  const params = new Map<string, string[]>();
  if (query === undefined || query === '') return params;
  for (const pair of query.split('&')) {
    if (pair === '') continue;
    const eq = pair.indexOf('=');
    const key = decodeQueryComponent(eq < 0 ? pair : pair.slice(0, eq));
    const value = decodeQueryComponent(eq < 0 ? '' : pair.slice(eq + 1));
    if (key === undefined || value === undefined) return undefined;
    const list = params.get(key);
    if (list) list.push(value);
    else params.set(key, [value]);
  }
  return params;
}

function escapeRegex(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
}

/**
 * Compile a glob as Rego's `glob.match(pattern, [delimiter], value)` reads it: `*` any run of
 * characters other than the delimiter, `?` one such character, `**` any run including it,
 * `[abc]` / `[a-z]` / `[!abc]` one character of a class, `{a,b}` alternatives, `\x` a literal x.
 * With `/` as delimiter a `/**` at the end also matches the directory itself, and `/**\/` in the
 * middle matches `/` too (tree wildcards). undefined when the pattern is malformed (an unclosed
 * `[` or `{`): callers treat that as "matches nothing".
 */
export function compileGlob(pattern: string, delimiter: string): RegExp | undefined {
  const d = escapeRegex(delimiter);
  const notD = `[^${d}]`;
  let re = '';
  let braces = 0;
  for (let i = 0; i < pattern.length; i++) {
    const c = pattern[i]!;
    if (c === '\\') {
      if (i + 1 >= pattern.length) return undefined;
      re += escapeRegex(pattern[++i]!);
    } else if (c === '*') {
      if (pattern[i + 1] === '*') {
        i++;
        while (pattern[i + 1] === '*') i++;
        const atEnd = i === pattern.length - 1;
        if (delimiter === '/' && re.endsWith('\\/') && atEnd) {
          re = `${re.slice(0, -2)}(?:\\/.*)?`;
        } else if (delimiter === '/' && re.endsWith('\\/') && pattern[i + 1] === '/') {
          i++;
          re += '(?:.*\\/)?';
        } else re += '.*';
      } else re += `${notD}*`;
    } else if (c === '?') re += notD;
    else if (c === '[') {
      const close = pattern.indexOf(']', i + 2);
      if (close < 0) return undefined;
      let body = pattern.slice(i + 1, close);
      let negate = false;
      if (body.startsWith('!') || body.startsWith('^')) {
        negate = true;
        body = body.slice(1);
      }
      const cls = body.replace(/[\\\]^[]/g, '\\$&');
      re += negate ? `(?:(?!${d})[^${cls}])` : `[${cls}]`;
      i = close;
    } else if (c === '{') {
      braces++;
      re += '(?:';
    } else if (c === '}' && braces > 0) {
      braces--;
      re += ')';
    } else if (c === ',' && braces > 0) re += '|';
    else re += escapeRegex(c);
  }
  if (braces > 0) return undefined;
  try {
    return new RegExp(`^${re}$`, 's');
  } catch {
    return undefined;
  }
}

const NEVER = /(?!)/;

/** Path glob of L7 rules (`/` delimiter); `**` alone matches every path. Malformed → matches nothing. */
export function pathGlob(pattern: string): RegExp | undefined {
  if (pattern === '**' || pattern === '/**') return undefined;
  return compileGlob(pattern, '/') ?? NEVER;
}

/** Query-value glob (Rego `glob.match(p, [], v)`: the default delimiter `.`). Malformed → matches nothing. */
export function queryGlob(pattern: string): RegExp {
  return compileGlob(pattern, '.') ?? NEVER;
}
