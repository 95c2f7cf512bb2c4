/**
 * The sandbox's DNS: a responder of the supervisor's that answers inside the sandbox's network
 * namespace (127.0.0.1:53, UDP and TCP; every other DNS packet is redirected there too) with
 * addresses from a reserved pool (198.18.0.0/15, RFC 2544 benchmarking space, never routed on the
 * Internet) and remembers which name each address stands for. A TCP connect to such an address is
 * intercepted (transparent.ts) and decided on the name, by the same policy as a proxied request.
 *
 * Why a fake pool and no real lookups: a query never leaves the box (no DNS tunnel out of the
 * sandbox), the answer cannot be used to reach anything without passing the proxy, and the proxy
 * resolves the name itself when it connects, checking the real addresses (SSRF guard). Every
 * lookup becomes a `net.dns` event.
 */
import type { Socket as DgramSocket, RemoteInfo } from 'node:dgram';
import { createServer, type Server, type Socket } from 'node:net';
import type { EventInput } from '../audit/events.js';

/** First address of the pool (198.18.0.0/15) as a 32-bit number, and how many it holds. */
const POOL_BASE = (198 << 24) | (18 << 16);
const POOL_SIZE = 1 << 17;
/** TTL of an answer: short, so a client asks again (and the lookup is seen) rather than caching for long. */
export const DNS_TTL_S = 30;

const TYPES: Record<number, string> = { 1: 'A', 2: 'NS', 5: 'CNAME', 6: 'SOA', 12: 'PTR', 15: 'MX', 16: 'TXT', 28: 'AAAA', 33: 'SRV', 65: 'HTTPS', 255: 'ANY' };
const RCODE = { NOERROR: 0, FORMERR: 1, SERVFAIL: 2, NXDOMAIN: 3, NOTIMP: 4, REFUSED: 5 } as const;
type RcodeName = keyof typeof RCODE;

/** A host name the pool hands an address to: letters, digits, `-`, `_`, dots; 253 characters at most. */
const NAME = /^(?=.{1,253}$)([a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

export function ipv4ToNumber(ip: string): number | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(ip);
  if (!m) return undefined;
  const b = m.slice(1).map(Number);
  if (b.some((x) => x > 255)) return undefined;
  return ((b[0]! << 24) | (b[1]! << 16) | (b[2]! << 8) | b[3]!) >>> 0;
}

function numberToIpv4(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

/** Whether `ip` lies in the reserved pool (a connection to it was meant for a name the responder gave). */
export function inFakePool(ip: string): boolean {
  const n = ipv4ToNumber(ip);
  return n !== undefined && n >>> 17 === POOL_BASE >>> 17;
}

/**
 * Name ↔ address map. Addresses are handed out in order; after the whole pool was used the least
 * recently looked-up name gives its address up (130,000 names is more than a sandbox asks for).
 */
export class FakeDnsPool {
  private readonly byName = new Map<string, number>();
  private readonly byAddress = new Map<number, string>();
  private next = 1; // .0.0 is not handed out
  constructor(private readonly size = POOL_SIZE) {}

  addressFor(name: string): string {
    const key = name.toLowerCase();
    const have = this.byName.get(key);
    if (have !== undefined) {
      // Refresh: most recently used names are the last to be recycled.
      this.byName.delete(key);
      this.byName.set(key, have);
      return numberToIpv4((POOL_BASE + have) >>> 0);
    }
    let slot: number;
    if (this.byName.size < this.size - 2) slot = this.next++;
    else {
      const [oldName, oldSlot] = this.byName.entries().next().value as [string, number];
      this.byName.delete(oldName);
      this.byAddress.delete(oldSlot);
      slot = oldSlot;
    }
    this.byName.set(key, slot);
    this.byAddress.set(slot, key);
    return numberToIpv4((POOL_BASE + slot) >>> 0);
  }

  /** The name an address of the pool was given for, or undefined (not ours, or recycled). */
  nameOf(ip: string): string | undefined {
    if (!inFakePool(ip)) return undefined;
    return this.byAddress.get(((ipv4ToNumber(ip) as number) - POOL_BASE) >>> 0);
  }
}

export interface DnsQuestion {
  id: number;
  flags: number;
  name: string;
  type: number;
  klass: number;
  /** Where the question section ends (the answer copies it). */
  questionEnd: number;
}

/** Parse the first question of a query; undefined when it is not one we can read. */
export function parseDnsQuery(msg: Buffer): DnsQuestion | undefined {
  if (msg.length < 12) return undefined;
  const flags = msg.readUInt16BE(2);
  if (flags & 0x8000) return undefined; // a response, not a query
  if (msg.readUInt16BE(4) < 1) return undefined;
  let off = 12;
  const labels: string[] = [];
  for (let guard = 0; guard < 128; guard++) {
    const len = msg[off];
    if (len === undefined) return undefined;
    off++;
    if (len === 0) break;
    if (len > 63 || off + len > msg.length) return undefined; // no compression in a question
    labels.push(msg.toString('latin1', off, off + len));
    off += len;
  }
  if (off + 4 > msg.length) return undefined;
  return { id: msg.readUInt16BE(0), flags, name: labels.join('.').toLowerCase(), type: msg.readUInt16BE(off), klass: msg.readUInt16BE(off + 2), questionEnd: off + 4 };
}

/** The answer to `q`: its question echoed, then an A record when `address` is given. */
export function buildDnsAnswer(query: Buffer, q: DnsQuestion, rcode: number, address?: string): Buffer {
  const head = Buffer.alloc(12);
  head.writeUInt16BE(q.id, 0);
  // QR, the query's opcode and RD, RA; the rcode.
  head.writeUInt16BE(0x8000 | (q.flags & 0x7900) | 0x0080 | (rcode & 0xf), 2);
  head.writeUInt16BE(1, 4);
  head.writeUInt16BE(address ? 1 : 0, 6);
  const question = query.subarray(12, q.questionEnd);
  if (!address) return Buffer.concat([head, question]);
  const rr = Buffer.alloc(16);
  rr.writeUInt16BE(0xc00c, 0); // pointer to the question's name
  rr.writeUInt16BE(1, 2); // A
  rr.writeUInt16BE(1, 4); // IN
  rr.writeUInt32BE(DNS_TTL_S, 6);
  rr.writeUInt16BE(4, 10);
  const n = ipv4ToNumber(address) as number;
  rr.writeUInt32BE(n, 12);
  return Buffer.concat([head, question, rr]);
}

/** A minimal header-only error answer for a query we could not parse (its id kept when there is one). */
function formErr(query: Buffer): Buffer | undefined {
  if (query.length < 2) return undefined;
  const b = Buffer.alloc(12);
  b.writeUInt16BE(query.readUInt16BE(0), 0);
  b.writeUInt16BE(0x8000 | RCODE.FORMERR, 2);
  return b;
}

export interface DnsResponderOptions {
  pool: FakeDnsPool;
  emit(e: EventInput): void;
}

export interface DnsAnswer {
  response: Buffer | undefined;
  name?: string;
  qtype?: string;
  rcode: RcodeName;
  answer?: string;
}

/**
 * Answer one query. A → a pool address for the name. AAAA and other types → no records (NODATA),
 * so clients fall back to IPv4 and to names; the sandbox has nothing else to look up. A name that
 * is not a host name → NXDOMAIN. Reverse lookups of pool addresses → NODATA as well.
 */
export function answerDnsQuery(query: Buffer, pool: FakeDnsPool): DnsAnswer {
  const q = parseDnsQuery(query);
  if (!q) return { response: formErr(query), rcode: 'FORMERR' };
  const qtype = TYPES[q.type] ?? `TYPE${q.type}`;
  const opcode = (q.flags >> 11) & 0xf;
  if (opcode !== 0) return { response: buildDnsAnswer(query, q, RCODE.NOTIMP), name: q.name, qtype, rcode: 'NOTIMP' };
  if (q.klass !== 1 && q.klass !== 255) return { response: buildDnsAnswer(query, q, RCODE.REFUSED), name: q.name, qtype, rcode: 'REFUSED' };
  if (!NAME.test(q.name)) return { response: buildDnsAnswer(query, q, RCODE.NXDOMAIN), name: q.name, qtype, rcode: 'NXDOMAIN' };
  if (q.type === 1 || q.type === 255) {
    const address = pool.addressFor(q.name);
    return { response: buildDnsAnswer(query, q, RCODE.NOERROR, address), name: q.name, qtype, rcode: 'NOERROR', answer: address };
  }
  return { response: buildDnsAnswer(query, q, RCODE.NOERROR), name: q.name, qtype, rcode: 'NOERROR' };
}

/** Most characters of a queried name put into an event (a name is at most 253; junk is cut). */
const MAX_EVENT_NAME = 253;

/**
 * Serve DNS on a UDP socket and a TCP listener (both made in the sandbox's netns and handed to
 * us). Every query becomes a `net.dns` event. Returns the function that stops both.
 */
export function serveDns(sockets: { udp?: DgramSocket; tcp?: Server }, opts: DnsResponderOptions): () => Promise<void> {
  const record = (a: DnsAnswer, transport: 'udp' | 'tcp', client: string): void => {
    opts.emit({
      kind: 'net.dns',
      level: a.rcode === 'NOERROR' ? 'info' : 'notice',
      name: (a.name ?? '').slice(0, MAX_EVENT_NAME) || null,
      qtype: a.qtype ?? null,
      rcode: a.rcode,
      answer: a.answer ?? null,
      transport,
      client,
    });
  };
  const { udp, tcp } = sockets;
  const onMessage = (msg: Buffer, rinfo: RemoteInfo): void => {
    const a = answerDnsQuery(msg, opts.pool);
    record(a, 'udp', `${rinfo.address}:${rinfo.port}`);
    if (a.response) udp?.send(a.response, rinfo.port, rinfo.address);
  };
  udp?.on('message', onMessage);
  udp?.on('error', () => undefined);
  const open = new Set<Socket>();
  const onConnection = (s: Socket): void => {
    open.add(s);
    s.on('close', () => open.delete(s));
    s.on('error', () => s.destroy());
    s.setTimeout(10_000, () => s.destroy());
    let buf = Buffer.alloc(0);
    s.on('data', (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      // Length-prefixed messages (RFC 1035 4.2.2); several may come on one connection.
      while (buf.length >= 2) {
        const len = buf.readUInt16BE(0);
        if (buf.length < 2 + len) break;
        const msg = buf.subarray(2, 2 + len);
        buf = buf.subarray(2 + len);
        const a = answerDnsQuery(msg, opts.pool);
        record(a, 'tcp', `${s.remoteAddress}:${s.remotePort}`);
        if (!a.response) return void s.destroy();
        const out = Buffer.alloc(2);
        out.writeUInt16BE(a.response.length, 0);
        s.write(Buffer.concat([out, a.response]));
      }
      if (buf.length > 66_000) s.destroy();
    });
  };
  let server: Server | undefined;
  if (tcp) {
    // Our own server takes over the listening handle made in the netns (as the proxy's adopt does).
    server = createServer(onConnection);
    server.on('error', () => undefined);
    server.listen(tcp);
  }
  return async () => {
    udp?.off('message', onMessage);
    try {
      udp?.close();
    } catch {
      /* closed */
    }
    for (const s of open) s.destroy();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    tcp?.close();
  };
}
