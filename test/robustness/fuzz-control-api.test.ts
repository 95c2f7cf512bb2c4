/**
 * Structure-aware fuzzing of the control API (src/control/server.ts, router.ts and the routes of
 * the supervisor, egress and inference services; issue 14). An in-process supervisor serves its
 * real routes on its Unix socket; each case starts from a valid request for a real route (method,
 * path, query, JSON body) and mutates it at the structure level: wrong types, deep nesting, huge
 * strings, prototype keys (__proto__, constructor), duplicate keys, odd numbers, truncated bodies,
 * invalid UTF-8, wrong or duplicate Content-Length, chunked bodies, unknown methods, path
 * traversal and bad percent-encoding in :id, absolute-form and malformed targets, odd headers.
 *
 * Properties: the server never answers 500 / "internal" (or any 5xx but 503) to client input; every
 * request (each one sent and then half-closed, as socat or `nc -N` do) gets a whole, well-formed
 * answer, with a JSON error naming the problem in at most 4 KiB; the supervisor logs no handler
 * crash; the next valid request still works, and the policy changes only by a valid PUT.
 *
 * Bounded by NEMOCLAW_FUZZ_MS (8 s by default; ~800 cases/s here); the seed is fixed in CI and
 * `NEMOCLAW_FUZZ_SEED=random` draws a fresh one (see fuzz-gen.ts).
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEgressService } from '../../src/egress/index.js';
import { inferenceServiceFactory } from '../../src/inference/index.js';
import { MINIMAL_POLICY, startTestSupervisor, type TestSupervisor } from '../helpers/supervisor.js';
import { FUZZ_TIMEOUT_MS, Rng, fuzzLoop, show } from './fuzz-gen.js';

let t: TestSupervisor;
const logLines: string[] = [];

beforeAll(async () => {
  t = await startTestSupervisor({
    policyText: MINIMAL_POLICY,
    services: [() => createEgressService(), inferenceServiceFactory],
    log: (line: string) => logLines.push(line),
  });
}, 60_000);

afterAll(async () => {
  await t?.stop();
});

interface RawResponse {
  status: number;
  headers: Record<string, string>;
  body: string;
}

/** Parse every response in `data` (the server may answer pipelined bytes more than once). */
function parseResponses(data: Buffer, isHead = false): { responses: RawResponse[]; problem?: string } {
  const responses: RawResponse[] = [];
  let at = 0;
  while (at < data.length) {
    const end = data.indexOf('\r\n\r\n', at, 'latin1');
    if (end < 0) return { responses, problem: `unterminated response head ${show(data.subarray(at))}` };
    const lines = data.toString('latin1', at, end).split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(lines[0] ?? '');
    if (!m) return { responses, problem: `bad status line ${show(lines[0] ?? '')}` };
    const headers: Record<string, string> = {};
    for (const l of lines.slice(1)) {
      const c = l.indexOf(':');
      headers[l.slice(0, c).toLowerCase()] = l.slice(c + 1).trim();
    }
    let bodyStart = end + 4;
    let body: string;
    if (isHead && responses.length === 0 && headers['content-length'] !== undefined) {
      // The answer to HEAD has no body, whatever its Content-Length says.
      body = '';
      at = bodyStart;
    } else if (headers['content-length'] !== undefined) {
      const n = Number(headers['content-length']);
      if (!Number.isSafeInteger(n) || n < 0) return { responses, problem: `bad Content-Length ${show(headers['content-length'])}` };
      body = data.toString('utf8', bodyStart, bodyStart + n);
      at = bodyStart + n;
    } else if (headers['transfer-encoding'] === 'chunked') {
      let text = '';
      for (;;) {
        const nl = data.indexOf('\r\n', bodyStart, 'latin1');
        if (nl < 0) return { responses, problem: `unterminated chunked body (${data.length} bytes, ends ${show(data.subarray(-80))})` };
        const sizeText = data.toString('latin1', bodyStart, nl);
        // A bad size must end the parse: NaN would send indexOf back to offset 0 and loop for ever
        // (the "stall" this fuzzer once showed was exactly that, in its own parser).
        if (!/^[0-9a-f]+$/i.test(sizeText)) return { responses, problem: `bad chunk size ${show(sizeText)} at byte ${bodyStart}` };
        const size = parseInt(sizeText, 16);
        if (nl + 2 + size + 2 > data.length) return { responses, problem: `unterminated chunked body (${data.length} bytes, ends ${show(data.subarray(-80))})` };
        if (size === 0) {
          at = nl + 4;
          break;
        }
        text += data.toString('utf8', nl + 2, nl + 2 + size);
        bodyStart = nl + 2 + size + 2;
      }
      body = text;
    } else {
      body = data.toString('utf8', bodyStart);
      at = data.length;
    }
    responses.push({ status: Number(m[1]), headers, body });
  }
  return { responses };
}

/** Send raw bytes, half-close, collect until the server closes (or the deadline). */
function exchange(payload: Buffer, deadlineMs = 2_000): Promise<{ data: Buffer; closed: boolean }> {
  return new Promise((resolve) => {
    const chunks: Buffer[] = [];
    const sock = connect(t.paths.controlSocket);
    let done = false;
    const finish = (closed: boolean): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve({ data: Buffer.concat(chunks), closed });
    };
    const timer = setTimeout(() => finish(false), deadlineMs);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('connect', () => {
      sock.write(payload);
      sock.end();
    });
  });
}

// ---------------------------------------------------------------------------------------------
// Generators

interface Req {
  method: string;
  target: string;
  headers: Array<[string, string]>;
  body?: Buffer;
  /** How the body is framed on the wire. */
  framing: 'length' | 'chunked' | 'none' | 'wrong-length';
  wrongLength?: number;
}

const ROUTES: Array<{ method: string; path: string; body?: (rng: Rng) => unknown }> = [
  { method: 'GET', path: '/v1/status' },
  { method: 'GET', path: '/v1/policy' },
  { method: 'GET', path: '/v1/policy/history' },
  { method: 'PUT', path: '/v1/policy', body: (rng) => ({ yaml: rng.pick([MINIMAL_POLICY, 'version: 1\n', 'version: 2\n', 'network_policies: [', '']), author: rng.pick(['cli', 'tui', 'approval', undefined]), source: 'fuzz.yaml' }) },
  { method: 'GET', path: '/v1/pending' },
  { method: 'POST', path: '/v1/pending/:id', body: (rng) => ({ decision: rng.pick(['once', 'session', 'always', 'deny', 'deny_always']), by: rng.pick(['tui', 'cli']), reason: rng.pick([undefined, 'fuzz', null]) }) },
  { method: 'GET', path: '/v1/budget' },
  { method: 'POST', path: '/v1/budget', body: (rng) => ({ scope: rng.pick(['hour', 'day', 'request']), tokens: rng.pick([1, 200000, undefined]), usd: rng.pick([undefined, 20, 0.5]) }) },
  { method: 'GET', path: '/v1/events' },
];

function idText(rng: Rng): string {
  return rng.weighted<() => string>([
    [3, () => rng.chars('abcdef0123456789', rng.int(1, 16))],
    [1, () => rng.pick(['..', '.', '%2e%2e', '..%2f..%2fetc%2fpasswd', '%2F', '%00', '%ff', '%', '%zz', '%E2%98%83', '__proto__', 'constructor', 'toString', 'hasOwnProperty', 'count'])],
    [1, () => 'x'.repeat(rng.pick([300, 5000, 70000]))],
    [1, () => encodeURIComponent(rng.pick(['a/b', '../../x', '\u0000', '\u202e', 'é', ' ']))],
  ])();
}

function queryText(rng: Rng, path: string): string {
  const params: string[] = [];
  // A follow stream never ends; the fuzzer does not open one.
  if (path.includes('events')) params.push('follow=0', `n=${rng.int(0, 5)}`);
  else if (!rng.bool(0.4)) return '';
  for (let i = rng.int(1, 4); i > 0; i--) {
    const name = rng.pick(['since', 'since_ts', 'n', 'kind', 'limit', 'approver', '__proto__', 'x', '']);
    const value = rng.pick(['0', '1', '-1', '1e3', '99999999999999999999', 'net.decision', 'net.decision,bogus', 'x', '', '%zz', '%00', 'a'.repeat(3000)]);
    params.push(`${name}=${value}`);
  }
  return '?' + params.join('&');
}

/** Mutate a JSON-able value at the structure level. */
function mutateValue(rng: Rng, v: unknown, depth = 0): unknown {
  const op = rng.int(0, 12);
  switch (op) {
    case 0:
      return rng.pick([null, true, false, 0, -1, 1.5, 1e308, -0, '', 'x', [], {}, [1, 2], { a: 1 }]);
    case 1: {
      // Deep nesting.
      let x: unknown = rng.pick(['once', 1, null]);
      for (let i = rng.pick([10, 100, 1000]); i > 0; i--) x = rng.bool() ? [x] : { decision: x };
      return x;
    }
    case 2:
      return 'y'.repeat(rng.pick([1000, 100_000, 1_000_000]));
    case 3:
      if (v && typeof v === 'object' && !Array.isArray(v)) {
        const o: Record<string, unknown> = { ...(v as Record<string, unknown>) };
        const keys = Object.keys(o);
        if (keys.length > 0) {
          const k = rng.pick(keys);
          o[k] = depth < 3 ? mutateValue(rng, o[k], depth + 1) : null;
        }
        return o;
      }
      return v;
    case 4:
      if (v && typeof v === 'object' && !Array.isArray(v)) {
        const o: Record<string, unknown> = { ...(v as Record<string, unknown>) };
        delete o[rng.pick(Object.keys(o).length > 0 ? Object.keys(o) : ['x'])];
        return o;
      }
      return v;
    case 5:
      return [v];
    case 6:
      return String(JSON.stringify(v));
    default:
      return v;
  }
}

/** JSON text of the body, then text-level mutations (prototype keys, duplicates, truncation...). */
function bodyText(rng: Rng, value: unknown): Buffer {
  let text = JSON.stringify(value) ?? 'null';
  const op = rng.int(0, 14);
  switch (op) {
    case 0:
      text = text.replace(/^\{/, `{"__proto__":{"decision":"once","yaml":"version: 1\\n","scope":"hour","tokens":5},`);
      break;
    case 1:
      text = text.replace(/^\{/, `{"constructor":{"prototype":{"polluted":true}},"toString":1,"hasOwnProperty":"x",`);
      break;
    case 2: // duplicate keys: the last wins in JSON.parse
      text = text.replace(/^\{/, `{"decision":[1],"scope":{},"yaml":7,`);
      break;
    case 3: // truncated
      text = text.slice(0, rng.int(0, Math.max(0, text.length - 1)));
      break;
    case 4:
      text = rng.pick(['', ' ', 'null', 'true', '0', '"x"', '[]', '{}', '[[[[', '{"a":', '\ufeff{}', 'NaN', '1e99999', '-', '{"a":1}garbage', '{}{}', '// x\n{}']);
      break;
    case 5: // numbers at the edges
      text = text.replace(/:(\d+(\.\d+)?)/, `:${rng.pick(['1e309', '-1e309', '1e-400', '99999999999999999999999', '0x10', '01', '-0', '1.', '.5'])}`);
      break;
    case 6: { // deep raw nesting beyond anything a stringify would produce
      const d = rng.pick([1000, 100_000, 1_000_000]);
      text = rng.bool() ? '['.repeat(d) + ']'.repeat(d) : '{"decision":'.repeat(d) + '1' + '}'.repeat(d);
      break;
    }
    case 7: // invalid UTF-8 / lone surrogates
      return Buffer.concat([Buffer.from(text.slice(0, -1), 'utf8'), Buffer.from([rng.pick([0xff, 0xc3, 0xed]), 0xa0, 0x80]), Buffer.from(text.slice(-1))]);
    case 8:
      text = text.replace(/"([a-z]+)":/, (_m, k: string) => `"${k}\\u0000":`);
      break;
    default:
      break;
  }
  return Buffer.from(text, 'utf8');
}

function pathFor(rng: Rng, pattern: string): string {
  let p = pattern.replace(':id', () => idText(rng));
  const op = rng.int(0, 10);
  if (op === 0) p = p.replace('/v1/', rng.pick(['//v1//', '/v1/./', '/v1/../v1/', '/V1/', '/v1%2f', '/%76%31/']));
  else if (op === 1) p += rng.pick(['/', '//', '/extra', '/..', '/%2e%2e', ';x', '%00']);
  else if (op === 2) p = rng.pick(['*', '', 'v1/status', 'http://nemoclaw' + p, 'http://evil.example' + p, '//[' + p, '//a:99999' + p, '//%zz' + p, 'http://[::1' + p, '//@' + p, 'http://:80' + p, '/\\' + p]);
  return p + queryText(rng, p);
}

function genRequest(rng: Rng): Req {
  const route = rng.pick(ROUTES);
  let method = route.method;
  if (rng.bool(0.15)) method = rng.pick(['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS', 'PROPFIND', 'SEARCH', 'QUERY', 'FOO', 'get', 'G ET', 'CONNECT', 'TRACE']);
  const target = pathFor(rng, route.path);
  const headers: Array<[string, string]> = [['Host', 'localhost'], ['Connection', 'close']];
  if (rng.bool(0.8)) headers.push(['Content-Type', rng.pick(['application/json', 'text/plain', 'application/json; charset=latin1', ''])]);
  if (rng.bool(0.1)) headers.push(rng.pick<[string, string]>([['X-Big', 'v'.repeat(rng.pick([1000, 20_000]))], ['Expect', '100-continue'], ['Transfer-Encoding', 'gzip'], ['Host', 'second'], ['Content-Length', 'abc']]));
  let body: Buffer | undefined;
  if (route.body || rng.bool(0.1)) {
    const valid = route.body ? route.body(rng) : { x: 1 };
    body = bodyText(rng, rng.bool(0.25) ? valid : mutateValue(rng, valid));
  }
  const framing = body === undefined ? 'none' : rng.weighted([
    [8, 'length'],
    [2, 'chunked'],
    [1, 'wrong-length'],
  ] as const);
  return { method, target, headers, body, framing, wrongLength: body ? rng.pick([0, 1, body.length - 1, body.length + 5, 2 ** 40]) : undefined };
}

function serialise(r: Req): Buffer {
  let head = `${r.method} ${r.target} HTTP/1.1\r\n`;
  for (const [n, v] of r.headers) head += `${n}: ${v}\r\n`;
  const parts: Buffer[] = [];
  if (r.framing === 'length') head += `Content-Length: ${r.body!.length}\r\n`;
  else if (r.framing === 'wrong-length') head += `Content-Length: ${r.wrongLength}\r\n`;
  else if (r.framing === 'chunked') head += 'Transfer-Encoding: chunked\r\n';
  parts.push(Buffer.from(head + '\r\n', 'latin1'));
  if (r.body) {
    if (r.framing === 'chunked') {
      parts.push(Buffer.from(`${r.body.length.toString(16)}\r\n`), r.body, Buffer.from('\r\n0\r\n\r\n'));
    } else parts.push(r.body);
  }
  return Buffer.concat(parts);
}

/** The fuzzer must not stop the supervisor it is fuzzing. */
function isShutdown(r: Req): boolean {
  return /shutdown/i.test(r.target) && r.method.toUpperCase() !== 'GET';
}

async function status(): Promise<{ revision: number }> {
  const s = (await t.client.request('GET', '/v1/status')) as { policy: { revision: number } };
  return { revision: s.policy.revision };
}

function checkResponses(data: Buffer, ctx: string, isHead: boolean): RawResponse[] {
  const { responses, problem } = parseResponses(data, isHead);
  // Every answer is whole, to a client that half-closed after its request too (socat, nc -N).
  expect(problem, `${ctx}: malformed answer`).toBeUndefined();
  for (const r of responses) {
    const said = `${r.status} ${r.body.slice(0, 300)}`;
    expect(r.status >= 500 && r.status !== 503, `${ctx}: server error for client input: ${said}`).toBe(false);
    if (r.status >= 400 && r.body !== '' && r.headers['content-type']?.startsWith('application/json')) {
      let j: { error?: unknown; message?: unknown };
      try {
        j = JSON.parse(r.body) as typeof j;
      } catch {
        throw new Error(`${ctx}: error body is not JSON: ${said}`);
      }
      expect(typeof j.error === 'string' && j.error !== 'internal', `${ctx}: ${said}`).toBe(true);
      expect(typeof j.message === 'string' && (j.message as string).length > 0, `${ctx}: no message: ${said}`).toBe(true);
      expect((j.message as string).length, `${ctx}: message of ${(j.message as string).length} chars echoes the input`).toBeLessThan(4096);
    }
  }
  return responses;
}

describe('control API regressions found by the fuzzer', () => {
  const one = async (wire: string): Promise<RawResponse> => {
    const { data } = await exchange(Buffer.from(wire, 'latin1'));
    const { responses, problem } = parseResponses(data);
    expect(problem).toBeUndefined();
    return responses[0]!;
  };
  const post = (path: string, body: string): string =>
    `POST ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;

  it('a target that is no URL (GET //[ ) is a 400, not a 500 "internal error in the supervisor"', async () => {
    const r = await one('GET //[/v1/policy HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body)).toMatchObject({ error: 'invalid_input', message: 'malformed request target "//[/v1/policy"' });
  });

  it('a body nested 100,000 deep is a 400 naming the limit, not a 500 "Maximum call stack size exceeded"', async () => {
    const r = await one(post('/v1/pending/p-1', '{"decision":'.repeat(100_000) + '1' + '}'.repeat(100_000)));
    expect(r.status).toBe(400);
    expect(JSON.parse(r.body).message).toBe('request body is nested 100000 levels deep; this API accepts at most 64; nothing was changed');
  });

  it('errors quote a bounded preview of what was sent, never all of it', async () => {
    const big = await one(post('/v1/pending/p-1', JSON.stringify({ decision: 'y'.repeat(100_000) })));
    expect(big.status).toBe(400);
    expect(JSON.parse(big.body).message).toMatch(/^decision must be one of .* \(got "y{79}… \(100002 characters\)\)$/);
    const scope = await one(post('/v1/budget', JSON.stringify({ scope: ['z'.repeat(5000)] })));
    expect(scope.status).toBe(400);
    expect(JSON.parse(scope.body).message.length).toBeLessThan(300);
    const id = await one(post(`/v1/pending/${'x'.repeat(5000)}`, '{"decision":"once"}'));
    expect(id.status).toBe(404);
    expect(JSON.parse(id.body).message).toMatch(/^no pending request "x{39}… \(5002 characters\)$/);
    const esc = await one(post('/v1/pending/a%1b%5b31mb', '{"decision":"once"}'));
    expect(esc.status).toBe(404);
    expect(JSON.parse(esc.body).message).not.toMatch(/\u001b/);
  });
});

describe('fuzz: control API', () => {
  // This loop once "stalled" after ~1,600 cases: its own response parser spun on a chunk size that
  // was no number (a 400 written into the middle of a backlog stream, fixed in server.ts).
  it(
    'mutated requests on real routes: never a 500, always a JSON error naming the problem, the supervisor keeps serving',
    async () => {
      const before = await status();
      let policyMayChange = false;
      const codes: Record<string, number> = {};
      await fuzzLoop(
        'control.api',
        async (rng, caseNo) => {
          const req = genRequest(rng);
          if (isShutdown(req)) return;
          if (req.method === 'PUT' && /policy/.test(req.target)) policyMayChange = true;
          const wire = serialise(req);
          const ctx = `request (${req.framing}${req.framing === 'wrong-length' ? ` ${req.wrongLength} for ${req.body?.length}` : ''}) ${show(wire, 400)}`;
          const logBefore = logLines.length;
          const { data } = await exchange(wire);
          const crashes = logLines.slice(logBefore).filter((l) => l.startsWith('control API:'));
          expect(crashes, `${ctx}: the supervisor logged a handler failure`).toEqual([]);
          const responses = checkResponses(data, ctx, req.method === 'HEAD');
          for (const r of responses) codes[r.status] = (codes[r.status] ?? 0) + 1;
          // Every request gets an answer, a half-closed one too (the server reads a body that never
          // comes as a 400, not as silence).
          expect(responses.length, `${ctx}: no answer at all`).toBeGreaterThan(0);
          if (caseNo % 25 === 0) {
            const s = await status();
            if (!policyMayChange) expect(s.revision, `${ctx}: policy changed`).toBe(before.revision);
          }
        },
        { minCases: 10 },
      );
      console.log(`[fuzz control.api] statuses: ${JSON.stringify(codes)}`);
      // Still serving, with a valid request, after all of it.
      const s = await status();
      if (!policyMayChange) expect(s.revision).toBe(before.revision);
    },
    FUZZ_TIMEOUT_MS,
  );
});
