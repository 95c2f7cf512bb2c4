/**
 * Where an intercepted connection was going. The sandbox's netns redirects (nft `redirect`) every
 * TCP connect to a non-loopback address to our listener; the kernel keeps the original destination
 * in that netns's connection-tracking table, which root reads as text in /proc/PID/net/nf_conntrack.
 * No native code (SO_ORIGINAL_DST needs a getsockopt Node does not expose), no process per lookup.
 *
 * A row (original tuple, then reply tuple):
 *   ipv4 2 tcp 6 431999 ESTABLISHED src=192.0.0.8 dst=198.18.0.5 sport=37106 dport=8080 \
 *     src=127.0.0.1 dst=192.0.0.8 sport=3129 dport=37106 [ASSURED] mark=0 zone=0 use=2
 * Our accepted socket is the reply tuple seen from our side: its remote end (client ip:port) is the
 * reply's dst/dport, our listener the reply's src/sport.
 */
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { canonicalHost } from './ssrf.js';

export interface ConntrackEntry {
  proto: 'tcp' | 'udp' | string;
  original: { src: string; dst: string; sport: number; dport: number };
  reply: { src: string; dst: string; sport: number; dport: number };
}

/** IPv4-mapped IPv6 (`::ffff:1.2.3.4`, what a dual-stack socket reports) to plain IPv4; IPv6 compressed. */
export function plainIp(ip: string): string {
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(ip);
  if (m) return m[1] as string;
  return isIP(ip) ? canonicalHost(ip) : ip;
}

export function parseConntrack(text: string): ConntrackEntry[] {
  const out: ConntrackEntry[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 6) continue;
    const proto = f[2] as string;
    const tuples: Array<Record<string, string>> = [];
    for (const tok of f) {
      const eq = tok.indexOf('=');
      if (eq < 0) continue;
      const k = tok.slice(0, eq);
      const v = tok.slice(eq + 1);
      if (k === 'src') tuples.push({});
      const t = tuples[tuples.length - 1];
      if (t && (k === 'src' || k === 'dst' || k === 'sport' || k === 'dport') && t[k] === undefined) t[k] = v;
    }
    const [o, r] = tuples;
    if (!o || !r || o.dport === undefined || r.dport === undefined) continue;
    const tuple = (t: Record<string, string>) => ({ src: plainIp(t.src ?? ''), dst: plainIp(t.dst ?? ''), sport: Number(t.sport), dport: Number(t.dport) });
    out.push({ proto, original: tuple(o), reply: tuple(r) });
  }
  return out;
}

export interface OriginalDestination {
  ip: string;
  port: number;
}

/**
 * The original destination of the connection (or datagram flow) whose redirected end we hold:
 * `client` is its remote end as our socket sees it, `listener` our local address and port.
 */
export function findOriginalDestination(
  text: string,
  proto: 'tcp' | 'udp',
  client: { ip: string; port: number },
  listener: { ip: string; port: number },
): OriginalDestination | undefined {
  const cip = plainIp(client.ip);
  const lip = plainIp(listener.ip);
  for (const e of parseConntrack(text)) {
    if (e.proto !== proto) continue;
    const r = e.reply;
    // The reply tuple is unique in the table (the kernel guarantees it), and it is what our socket
    // sees. The original source may differ from it: when two redirected flows would share a reply
    // tuple (one UDP socket sending to two destinations), NAT gives the second another source port.
    if (r.sport !== listener.port || r.dport !== client.port || r.dst !== cip || r.src !== lip) continue;
    return { ip: e.original.dst, port: e.original.dport };
  }
  return undefined;
}

/** Read the netns's table through a process in it (root only) and find the original destination. */
export function originalDestination(
  rootPid: number,
  proto: 'tcp' | 'udp',
  client: { ip: string; port: number },
  listener: { ip: string; port: number },
  read: (path: string) => string = (p) => readFileSync(p, 'utf8'),
): OriginalDestination | undefined {
  let text: string;
  try {
    text = read(`/proc/${rootPid}/net/nf_conntrack`);
  } catch {
    return undefined;
  }
  return findOriginalDestination(text, proto, client, listener);
}
