import { describe, expect, it } from 'vitest';
import { parseRequestHead } from '../../src/egress/parser.js';

/** Deterministic PRNG so a failure can be replayed. */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s ^= s << 13;
    s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5;
    s >>>= 0;
    return s / 0x100000000;
  };
}

const SEEDS = [
  'GET http://a.com/x HTTP/1.1\r\nHost: a.com\r\nContent-Length: 3\r\n\r\n',
  'CONNECT api.x.com:443 HTTP/1.1\r\nHost: api.x.com:443\r\n\r\n',
  'POST http://a.com/p HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n',
  'GET /in/tunnel HTTP/1.1\r\nHost: t.com\r\n\r\n',
];
const TOKENS = ['\r\n', '\n', '\r', ' ', ':', '%2f', '%2e%2e', '../', '@', '[', ']', 'Content-Length: 1\r\n', 'Transfer-Encoding: chunked\r\n', 'Host: x\r\n', '\0', '\t', 'http://', 'CONNECT ', '99999', '\xff'];

describe('parser fuzz', () => {
  it('survives 100k malformed heads: no throw, no hang, always a verdict', () => {
    const rand = rng(0xc0ffee);
    const counts = { ok: 0, error: 0, incomplete: 0 };
    for (let i = 0; i < 100_000; i++) {
      let s = SEEDS[Math.floor(rand() * SEEDS.length)] as string;
      const edits = 1 + Math.floor(rand() * 4);
      for (let e = 0; e < edits; e++) {
        const pos = Math.floor(rand() * (s.length + 1));
        const op = rand();
        if (op < 0.35) s = s.slice(0, pos) + (TOKENS[Math.floor(rand() * TOKENS.length)] as string) + s.slice(pos);
        else if (op < 0.6) s = s.slice(0, pos) + s.slice(pos + 1 + Math.floor(rand() * 8));
        else if (op < 0.85) s = s.slice(0, pos) + String.fromCharCode(Math.floor(rand() * 256)) + s.slice(pos + 1);
        else s = s.slice(0, pos) + 'A'.repeat(Math.floor(rand() * 20_000)) + s.slice(pos);
      }
      const tunnel = rand() < 0.25 ? { host: 't.com', port: 80 } : undefined;
      const r = parseRequestHead(Buffer.from(s, 'latin1'), tunnel);
      counts[r.kind]++;
      if (r.kind === 'ok') {
        // Whatever was accepted is internally consistent.
        expect(r.consumed).toBeLessThanOrEqual(16 * 1024);
        expect(r.head.port).toBeGreaterThan(0);
        expect(r.head.chunked && r.head.contentLength > 0).toBe(false);
        if (r.head.method !== 'CONNECT') expect(r.head.path.startsWith('/')).toBe(true);
      }
    }
    expect(counts.error).toBeGreaterThan(10_000);
    expect(counts.ok + counts.error + counts.incomplete).toBe(100_000);
  }, 180_000); // the test timeout is the hang guard
});
