/**
 * The pieces of transparent interception that read bytes: the DNS responder's codec and fake pool,
 * the conntrack table parser (original destination of a redirected connection), and the name
 * peeked from a client's first bytes (TLS SNI from a real Node ClientHello, HTTP Host).
 */
import { describe, expect, it } from 'vitest';
import { connect as netConnect, createServer, type Server, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { FakeDnsPool, answerDnsQuery, inFakePool, parseDnsQuery } from '../../src/egress/dns.js';
import { findOriginalDestination, parseConntrack } from '../../src/egress/conntrack.js';
import { httpHostOf, resolveTransparentTarget, sniOf } from '../../src/egress/transparent.js';
import type { EventInput } from '../../src/audit/events.js';
import type { OriginalDestination } from '../../src/egress/conntrack.js';
import { nftRuleset } from '../../src/sandbox/transparent.js';

/** A DNS query for `name` of `type` (1 = A, 28 = AAAA), id 0x1234, RD set. */
function query(name: string, type = 1): Buffer {
  const labels = name.split('.').flatMap((l) => [Buffer.from([l.length]), Buffer.from(l, 'latin1')]);
  const q = Buffer.alloc(4);
  q.writeUInt16BE(type, 0);
  q.writeUInt16BE(1, 2);
  return Buffer.concat([Buffer.from([0x12, 0x34, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0]), ...labels, Buffer.from([0]), q]);
}

describe('DNS responder', () => {
  it('answers A from the 198.18.0.0/15 pool, the same address for the same name, and maps it back', () => {
    const pool = new FakeDnsPool();
    const a = answerDnsQuery(query('Example.TEST'), pool);
    expect(a).toMatchObject({ rcode: 'NOERROR', name: 'example.test', qtype: 'A' });
    expect(inFakePool(a.answer!)).toBe(true);
    expect(answerDnsQuery(query('example.test'), pool).answer).toBe(a.answer);
    expect(pool.nameOf(a.answer!)).toBe('example.test');
    const r = a.response!;
    expect(r.readUInt16BE(0)).toBe(0x1234);
    expect(r.readUInt16BE(2) & 0x8000).toBe(0x8000); // a response
    expect(r.readUInt16BE(2) & 0x0100).toBe(0x0100); // RD echoed
    expect(r.readUInt16BE(6)).toBe(1); // one answer
    expect([...r.subarray(r.length - 4)].join('.')).toBe(a.answer);
    expect(inFakePool('198.20.0.1')).toBe(false);
    expect(inFakePool('10.0.0.1')).toBe(false);
  });

  it('AAAA gets no records (clients fall back to IPv4), a junk name NXDOMAIN, a truncated query FORMERR', () => {
    const pool = new FakeDnsPool();
    const aaaa = answerDnsQuery(query('example.test', 28), pool);
    expect(aaaa).toMatchObject({ rcode: 'NOERROR', qtype: 'AAAA' });
    expect(aaaa.answer).toBeUndefined();
    expect(aaaa.response!.readUInt16BE(6)).toBe(0);
    expect(answerDnsQuery(query('bad name!.test'), pool).rcode).toBe('NXDOMAIN');
    expect(answerDnsQuery(Buffer.from([1, 2, 3]), pool).rcode).toBe('FORMERR');
    expect(parseDnsQuery(query('a.b'))).toMatchObject({ name: 'a.b', type: 1, klass: 1 });
  });

  it('recycles the least recently used name once the pool is full', () => {
    const pool = new FakeDnsPool(6); // 4 usable slots
    const first = pool.addressFor('one.test');
    const two = pool.addressFor('two.test');
    pool.addressFor('three.test');
    pool.addressFor('one.test'); // refreshed: two.test is now the oldest
    pool.addressFor('four.test');
    const five = pool.addressFor('five.test');
    expect(five).toBe(two);
    expect(pool.nameOf(two)).toBe('five.test');
    expect(pool.nameOf(first)).toBe('one.test');
  });
});

describe('conntrack', () => {
  const table = [
    'ipv4     2 tcp      6 431999 ESTABLISHED src=192.0.0.8 dst=198.18.0.5 sport=37106 dport=8080 src=127.0.0.1 dst=192.0.0.8 sport=3129 dport=37106 [ASSURED] mark=0 zone=0 use=2',
    'ipv4     2 tcp      6 431999 ESTABLISHED src=192.0.0.8 dst=203.0.113.7 sport=40000 dport=443 src=127.0.0.1 dst=192.0.0.8 sport=3129 dport=40000 [ASSURED] mark=0 zone=0 use=2',
    'ipv4     2 udp      17 29 src=192.0.0.8 dst=203.0.113.9 sport=5000 dport=443 [UNREPLIED] src=127.0.0.1 dst=192.0.0.8 sport=3130 dport=5000 mark=0 zone=0 use=2',
    'ipv6     10 tcp      6 431999 ESTABLISHED src=0000:0000:0000:0000:0000:0000:0000:0001 dst=2001:0db8:0000:0000:0000:0000:0000:0001 sport=48072 dport=8080 src=0000:0000:0000:0000:0000:0000:0000:0001 dst=0000:0000:0000:0000:0000:0000:0000:0001 sport=3129 dport=48072 [ASSURED] mark=0 zone=0 use=2',
    '',
  ].join('\n');

  it('finds the original destination of a redirected TCP connection by its reply tuple', () => {
    expect(findOriginalDestination(table, 'tcp', { ip: '192.0.0.8', port: 37106 }, { ip: '127.0.0.1', port: 3129 })).toEqual({ ip: '198.18.0.5', port: 8080 });
    expect(findOriginalDestination(table, 'tcp', { ip: '::ffff:192.0.0.8', port: 40000 }, { ip: '::ffff:127.0.0.1', port: 3129 })).toEqual({ ip: '203.0.113.7', port: 443 });
    // Another client port, another listener port, another protocol: not this connection.
    expect(findOriginalDestination(table, 'tcp', { ip: '192.0.0.8', port: 37107 }, { ip: '127.0.0.1', port: 3129 })).toBeUndefined();
    expect(findOriginalDestination(table, 'udp', { ip: '192.0.0.8', port: 37106 }, { ip: '127.0.0.1', port: 3129 })).toBeUndefined();
  });

  it('reads UDP flows (no state field) and IPv6 rows (expanded addresses)', () => {
    expect(findOriginalDestination(table, 'udp', { ip: '192.0.0.8', port: 5000 }, { ip: '127.0.0.1', port: 3130 })).toEqual({ ip: '203.0.113.9', port: 443 });
    expect(findOriginalDestination(table, 'tcp', { ip: '::1', port: 48072 }, { ip: '::1', port: 3129 })).toEqual({ ip: '2001:db8::1', port: 8080 });
    expect(parseConntrack(table)).toHaveLength(4);
  });
});

describe('name from the first bytes', () => {
  it('reads the SNI of a real TLS ClientHello', async () => {
    let server: Server | undefined;
    const hello = await new Promise<Buffer>((resolve) => {
      server = createServer((s) => s.once('data', (d: Buffer) => {
        resolve(d);
        s.destroy();
      }));
      server.listen(0, '127.0.0.1', () => {
        const port = (server!.address() as { port: number }).port;
        tlsConnect({ host: '127.0.0.1', port, servername: 'Api.Example.test' }).on('error', () => undefined);
      });
    });
    server?.close();
    expect(sniOf(hello)).toBe('api.example.test');
    expect(sniOf(hello.subarray(0, 20))).toBeUndefined();
    expect(sniOf(Buffer.from('GET / HTTP/1.1\r\n'))).toBeUndefined();
  });

  it('reads the HTTP Host header without its port', () => {
    expect(httpHostOf(Buffer.from('GET /x HTTP/1.1\r\nUser-Agent: t\r\nHost: Name.Test:8080\r\n\r\n'))).toBe('name.test');
    expect(httpHostOf(Buffer.from('GET / HTTP/1.1\r\nhost: [2001:db8::1]:80\r\n\r\n'))).toBe('2001:db8::1');
    expect(httpHostOf(Buffer.from('\x16\x03\x01'))).toBeUndefined();
    expect(httpHostOf(Buffer.from('SSH-2.0-OpenSSH_9.2\r\n'))).toBeUndefined();
  });
});

describe('nft ruleset', () => {
  it('keeps loopback, sends DNS to the responder, TCP to 3129 and other UDP to the sink', () => {
    const r = nftRuleset(true);
    expect(r).toMatch(/type nat hook output/);
    expect(r.indexOf('ip daddr 127.0.0.0/8 return')).toBeLessThan(r.indexOf('redirect to :3129'));
    expect(r).toMatch(/udp dport 53 redirect to :53/);
    expect(r).toMatch(/meta l4proto udp redirect to :3130/);
    expect(nftRuleset(false)).toMatch(/meta nfproto ipv4 meta l4proto udp redirect to :3130/);
  });
});

/** An accepted socket whose client has sent `first` (or nothing), for resolveTransparentTarget. */
async function accepted(first?: string): Promise<{ socket: Socket; close(): void }> {
  let server: Server | undefined;
  let client: Socket | undefined;
  const socket = await new Promise<Socket>((resolve) => {
    server = createServer((s) => resolve(s));
    server.listen(0, '127.0.0.1', () => {
      client = netConnect((server!.address() as { port: number }).port, '127.0.0.1', () => {
        if (first) client!.write(first);
      });
    });
  });
  return {
    socket,
    close: () => {
      socket.destroy();
      client?.destroy();
      server?.close();
    },
  };
}

describe('the name an intercepted connection is decided on', () => {
  const resolve = async (dst: OriginalDestination | undefined, first?: string, pool = new FakeDnsPool()) => {
    const events: EventInput[] = [];
    const a = await accepted(first);
    try {
      const t = await resolveTransparentTarget(a.socket, { rootPid: 1, pool, peekMs: 200, originalDst: () => dst, emit: (e) => events.push(e) });
      return { t, events };
    } finally {
      a.close();
    }
  };

  it('an address the DNS responder gave: its name, without waiting for bytes', async () => {
    const pool = new FakeDnsPool();
    const ip = pool.addressFor('api.example.test');
    const { t } = await resolve({ ip, port: 443 }, undefined, pool);
    expect(t).toMatchObject({ host: 'api.example.test', port: 443, fields: { transparent: true, name_from: 'dns', original_dst: `${ip}:443` } });
  });

  it('another address: the HTTP Host if the client sends one, else the IP itself', async () => {
    const named = await resolve({ ip: '203.0.113.7', port: 80 }, 'GET / HTTP/1.1\r\nHost: site.test\r\n\r\n');
    expect(named.t).toMatchObject({ host: 'site.test', port: 80, fields: { name_from: 'http_host', http_host: 'site.test' } });
    expect(named.t?.initial?.toString()).toMatch(/^GET \//);
    const silent = await resolve({ ip: '203.0.113.7', port: 22 });
    expect(silent.t).toMatchObject({ host: '203.0.113.7', port: 22, fields: { name_from: 'ip' } });
    expect(silent.t?.summary).toMatch(/no name: decided on the IP/);
  });

  it('never guesses: no conntrack entry, or a loopback destination, is refused and recorded', async () => {
    const none = await resolve(undefined);
    expect(none.t).toBeUndefined();
    expect(none.events[0]).toMatchObject({ kind: 'net.decision', action: 'deny', transparent: true });
    expect(String(none.events[0]!.reason)).toMatch(/could not be found/);
    const loop = await resolve({ ip: '127.0.0.1', port: 3129 });
    expect(loop.t).toBeUndefined();
    expect(String(loop.events[0]!.reason)).toMatch(/direct connection to the interception listener/);
  });
});
