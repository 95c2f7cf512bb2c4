import { describe, expect, it } from 'vitest';
import { ChunkedDecoder, MAX_HEAD_BYTES, parseRequestHead, type ParseResult } from '../../src/egress/parser.js';

const parse = (text: string, tunnel?: { host: string; port: number }): ParseResult => parseRequestHead(Buffer.from(text, 'latin1'), tunnel);
const ok = (text: string, tunnel?: { host: string; port: number }) => {
  const r = parse(text, tunnel);
  if (r.kind !== 'ok') throw new Error(`expected ok, got ${JSON.stringify(r)}`);
  return r.head;
};
const err = (text: string, tunnel?: { host: string; port: number }) => {
  const r = parse(text, tunnel);
  if (r.kind !== 'error') throw new Error(`expected error, got ${r.kind}`);
  return r;
};

describe('request head parser', () => {
  it('parses absolute-form GET with default port and query', () => {
    const h = ok('GET http://API.Example.com./v1/x?q=1 HTTP/1.1\r\nHost: api.example.com\r\n\r\n');
    expect(h).toMatchObject({ method: 'GET', host: 'api.example.com', port: 80, path: '/v1/x', pathAndQuery: '/v1/x?q=1', keepAlive: true, form: 'absolute' });
  });

  it('parses CONNECT authority-form and IPv6 literals', () => {
    expect(ok('CONNECT api.x.com:443 HTTP/1.1\r\nHost: api.x.com:443\r\n\r\n')).toMatchObject({ host: 'api.x.com', port: 443, form: 'authority' });
    expect(ok('CONNECT [::1]:8443 HTTP/1.1\r\n\r\n')).toMatchObject({ host: '::1', port: 8443 });
  });

  it('waits for more bytes on an incomplete head and refuses heads over 16 KiB', () => {
    expect(parse('GET http://a.com/ HTTP/1.1\r\nHost: a').kind).toBe('incomplete');
    const big = 'GET http://a.com/ HTTP/1.1\r\nX-Pad: ' + 'a'.repeat(MAX_HEAD_BYTES) + '\r\n\r\n';
    expect(err(big).status).toBe(431);
    expect(err('GET http://a.com/ HTTP/1.1\r\nX-Pad: ' + 'a'.repeat(MAX_HEAD_BYTES)).status).toBe(431);
  });

  it('refuses Content-Length together with Transfer-Encoding', () => {
    expect(err('POST http://a.com/ HTTP/1.1\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n').reason).toMatch(/Content-Length and Transfer-Encoding/);
  });

  it('refuses duplicate differing Content-Length but accepts identical duplicates', () => {
    expect(err('POST http://a.com/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n').reason).toMatch(/different values/);
    expect(err('POST http://a.com/ HTTP/1.1\r\nContent-Length: 5, 6\r\n\r\n').reason).toMatch(/different values/);
    expect(ok('POST http://a.com/ HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\n').contentLength).toBe(5);
    expect(err('POST http://a.com/ HTTP/1.1\r\nContent-Length: +5\r\n\r\n').reason).toMatch(/invalid Content-Length/);
  });

  it('refuses transfer codings other than chunked and obfuscated TE', () => {
    expect(err('POST http://a.com/ HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n').status).toBe(501);
    expect(err('POST http://a.com/ HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n').status).toBe(400);
    expect(err('POST http://a.com/ HTTP/1.1\r\nTransfer-Encoding:\x0bchunked\r\n\r\n').status).toBe(400);
    expect(err('POST http://a.com/ HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n').reason).toMatch(/HTTP\/1.0/);
  });

  it('refuses bare LF, obs-fold and control characters', () => {
    expect(err('GET http://a.com/ HTTP/1.1\nHost: a.com\r\n\r\n').reason).toMatch(/bare/);
    expect(err('GET http://a.com/ HTTP/1.1\r\nX-A: 1\r\n  folded\r\n\r\n').reason).toMatch(/folding/);
    expect(err('GET http://a.com/ HTTP/1.1\r\nX-A: a\x00b\r\n\r\n').status).toBe(400);
    expect(err('GET http://a.com/ HTTP/1.1\r\nX-A: a\rb\r\n\r\n').status).toBe(400);
  });

  it('refuses ".." above the root and encoded slashes, normalises the rest', () => {
    expect(err('GET http://a.com/../etc/passwd HTTP/1.1\r\n\r\n').reason).toMatch(/above the root/);
    expect(err('GET http://a.com/a/%2e%2e/%2E%2E/x HTTP/1.1\r\n\r\n').reason).toMatch(/above the root/);
    expect(err('GET http://a.com/a%2fb HTTP/1.1\r\n\r\n').reason).toMatch(/encoded slash/);
    expect(err('GET http://a.com/a%5Cb HTTP/1.1\r\n\r\n').reason).toMatch(/encoded slash/);
    expect(ok('GET http://a.com/a/./b/../c?x=../.. HTTP/1.1\r\n\r\n').pathAndQuery).toBe('/a/c?x=../..');
  });

  it('refuses userinfo, https absolute-form, origin-form outside a tunnel and bad ports', () => {
    expect(err('GET http://good.com@evil.com/ HTTP/1.1\r\n\r\n').reason).toMatch(/userinfo/);
    expect(err('GET https://a.com/ HTTP/1.1\r\n\r\n').reason).toMatch(/CONNECT/);
    expect(err('GET / HTTP/1.1\r\nHost: a.com\r\n\r\n').reason).toMatch(/absolute/);
    expect(err('CONNECT a.com:99999 HTTP/1.1\r\n\r\n').reason).toMatch(/port/);
    expect(err('CONNECT a.com HTTP/1.1\r\n\r\n').reason).toMatch(/port required/);
    expect(err('GET http://a.com/ HTTP/2.0\r\n\r\n').status).toBe(505);
  });

  it('inside a tunnel, requires Host to match the CONNECT authority', () => {
    const t = { host: 'api.x.com', port: 80 };
    expect(ok('GET /v1 HTTP/1.1\r\nHost: API.x.com\r\n\r\n', t)).toMatchObject({ host: 'api.x.com', port: 80, path: '/v1', form: 'origin' });
    expect(err('GET /v1 HTTP/1.1\r\nHost: evil.com\r\n\r\n', t).reason).toMatch(/differs from the tunnel/);
    expect(err('GET /v1 HTTP/1.1\r\nHost: api.x.com:81\r\n\r\n', t).reason).toMatch(/differs/);
    expect(err('GET /v1 HTTP/1.1\r\n\r\n', t).reason).toMatch(/missing Host/);
    expect(err('GET /v1 HTTP/1.1\r\nHost: api.x.com\r\nHost: api.x.com\r\n\r\n', t).reason).toMatch(/more than one Host/);
  });
});

describe('chunked decoder', () => {
  it('decodes across chunk boundaries and returns the bytes after the body', () => {
    const out: Buffer[] = [];
    const d = new ChunkedDecoder((b) => out.push(Buffer.from(b)));
    const wire = Buffer.from('5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nX-T: 1\r\n\r\nGET next');
    for (let i = 0; i < wire.length; i += 3) {
      expect(d.push(wire.subarray(i, Math.min(i + 3, wire.length)))).toBeUndefined();
      if (d.done) break;
    }
    expect(Buffer.concat(out).toString()).toBe('hello world');
    expect(d.done).toBe(true);
  });

  it('refuses malformed sizes and missing CRLF', () => {
    expect(new ChunkedDecoder(() => {}).push(Buffer.from('zz\r\n'))).toMatch(/chunk size/);
    expect(new ChunkedDecoder(() => {}).push(Buffer.from('3\r\nabcX\r\n'))).toMatch(/CRLF/);
    expect(new ChunkedDecoder(() => {}).push(Buffer.from('3\nabc'))).toMatch(/bare LF/);
  });
});
