/**
 * Regressions found by a structure-aware fuzzer of the control API (src/control/server.ts, router.ts
 * and the routes of the supervisor, egress and inference services; issue 14), replayed against an
 * in-process supervisor on its real Unix socket. The fuzz loop itself is not in the suite yet: its
 * run stalled on this box after ~1,600 cases and the cause was not found (see the issue 14 note).
 */
import { connect } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createEgressService } from '../../src/egress/index.js';
import { inferenceServiceFactory } from '../../src/inference/index.js';
import { MINIMAL_POLICY, startTestSupervisor, type TestSupervisor } from '../helpers/supervisor.js';
import { show } from './fuzz-gen.js';

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
      body = data.toString('utf8', bodyStart, bodyStart + n);
      at = bodyStart + n;
    } else if (headers['transfer-encoding'] === 'chunked') {
      let text = '';
      for (;;) {
        const nl = data.indexOf('\r\n', bodyStart, 'latin1');
        if (nl < 0) return { responses, problem: `unterminated chunked body (${data.length} bytes, ends ${show(data.subarray(-80))})` };
        const size = parseInt(data.toString('latin1', bodyStart, nl), 16);
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
