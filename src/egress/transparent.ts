/**
 * Connections that did not ask for the proxy (transparent interception, sandbox/transparent.ts):
 * where each one was going, and under which name it is decided.
 *
 *   original destination  ← the sandbox netns's conntrack table (conntrack.ts)
 *   name                  ← (1) the DNS responder's pool: the address was the answer to a lookup
 *                           (2) else the TLS SNI or the HTTP Host of the client's first bytes
 *                           (3) else the IP itself
 *
 * Never wider (DESIGN invariant 3): a name taken from SNI/Host is what is decided *and* what is
 * dialled (the proxy resolves it itself, as for CONNECT), so naming an allowed host cannot reach
 * another address; a connection with no name is decided on its IP and shown as such.
 */
import type { Socket as DgramSocket, RemoteInfo } from 'node:dgram';
import { isIP, type Socket } from 'node:net';
import type { EventInput } from '../audit/events.js';
import { originalDestination, plainIp, type OriginalDestination } from './conntrack.js';
import { inFakePool, type FakeDnsPool } from './dns.js';
import { canonicalHost } from './ssrf.js';

/** What the proxy decides an intercepted connection on (see EgressProxy.adopt `transparent`). */
export interface TransparentTarget {
  host: string;
  port: number;
  /** Bytes already read from the client (while looking for SNI / Host); the proxy reads them first. */
  initial?: Buffer;
  /** One line for the approval prompt (what the operator is asked about). */
  summary: string;
  /** Merged into the connection's net.* events. */
  fields: Record<string, unknown>;
}

export type NameSource = 'dns' | 'sni' | 'http_host' | 'ip';

const HOSTNAME = /^(?=.{1,253}$)[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?(\.[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?)*$/;

/** The server_name of a TLS ClientHello at the start of `buf`, if it is there whole. */
export function sniOf(buf: Buffer): string | undefined {
  try {
    if (buf.length < 5 || buf[0] !== 0x16) return undefined;
    let off = 5;
    if (buf[off] !== 0x01) return undefined; // ClientHello
    off += 4 + 2 + 32; // handshake header, version, random
    off += 1 + (buf[off] as number); // session id
    off += 2 + buf.readUInt16BE(off); // cipher suites
    off += 1 + (buf[off] as number); // compression methods
    const extEnd = off + 2 + buf.readUInt16BE(off);
    off += 2;
    while (off + 4 <= extEnd && off + 4 <= buf.length) {
      const type = buf.readUInt16BE(off);
      const len = buf.readUInt16BE(off + 2);
      off += 4;
      if (type === 0) {
        // server_name_list: length, then (name_type, length, name)
        let p = off + 2;
        while (p + 3 <= off + len) {
          const nameType = buf[p] as number;
          const nameLen = buf.readUInt16BE(p + 1);
          p += 3;
          if (nameType === 0 && p + nameLen <= buf.length) return buf.toString('latin1', p, p + nameLen).toLowerCase();
          p += nameLen;
        }
        return undefined;
      }
      off += len;
    }
  } catch {
    // truncated: no name
  }
  return undefined;
}

/** The Host header of an HTTP/1 request head at the start of `buf` (port stripped). */
export function httpHostOf(buf: Buffer): string | undefined {
  const text = buf.toString('latin1', 0, Math.min(buf.length, 16 * 1024));
  if (!/^[A-Z]{3,10} \S+ HTTP\/1\.[01]\r?\n/.test(text)) return undefined;
  const m = /\r?\nhost:[ \t]*([^\r\n]*)/i.exec(text);
  if (!m) return undefined;
  const v = (m[1] as string).trim().toLowerCase();
  const bracket = /^\[([0-9a-f:.]+)\](?::\d+)?$/.exec(v);
  if (bracket) return bracket[1];
  return v.replace(/:\d+$/, '');
}

/** A name worth deciding on: a host name or an IP literal (anything else is ignored). */
function usableName(n: string | undefined): string | undefined {
  if (n === undefined || n.length === 0) return undefined;
  if (isIP(n)) return canonicalHost(n);
  return HOSTNAME.test(n) ? n : undefined;
}

/** Wait up to `ms` for the client's first bytes (most protocols speak first: TLS, HTTP). */
export function peekFirstBytes(socket: Socket, ms: number): Promise<Buffer | undefined> {
  return new Promise((resolve) => {
    let done = false;
    const finish = (b: Buffer | undefined): void => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.pause();
      resolve(b);
    };
    const onData = (chunk: Buffer): void => finish(chunk);
    const onEnd = (): void => finish(undefined);
    const timer = setTimeout(() => finish(undefined), ms);
    socket.on('data', onData);
    socket.once('end', onEnd);
    socket.once('close', onEnd);
  });
}

export interface TransparentResolverOptions {
  rootPid: number;
  pool: FakeDnsPool;
  /** How long to wait for first bytes when the address names nothing (default 1 s). */
  peekMs?: number;
  /** Replaces reading conntrack (tests). */
  originalDst?: (socket: Socket) => OriginalDestination | undefined;
  /** Called with the original destination once known (binary identity needs it). */
  onOriginal?: (socket: Socket, dst: OriginalDestination) => void;
  emit(e: EventInput): void;
}

function formatAuthority(host: string, port: number): string {
  return `${host.includes(':') ? `[${host}]` : host}:${port}`;
}

/**
 * Where an intercepted socket was going and the name it is decided on. Undefined: nothing to
 * decide (no conntrack entry, or a loopback destination: a direct connect to our own listener);
 * the socket is then closed and the reason recorded.
 */
export async function resolveTransparentTarget(socket: Socket, opts: TransparentResolverOptions): Promise<TransparentTarget | undefined> {
  const client = { ip: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
  const listener = { ip: socket.localAddress ?? '', port: socket.localPort ?? 0 };
  const dst = opts.originalDst ? opts.originalDst(socket) : originalDestination(opts.rootPid, 'tcp', client, listener);
  if (!dst || dst.ip === plainIp(listener.ip) || dst.ip.startsWith('127.') || dst.ip === '::1') {
    opts.emit({
      kind: 'net.decision',
      level: 'warn',
      action: 'deny',
      error: 'policy_denied',
      reason: dst ? `a direct connection to the interception listener (${formatAuthority(dst.ip, dst.port)}) is not a destination` : 'the original destination of an intercepted connection could not be found (conntrack); refused',
      host: dst?.ip ?? plainIp(listener.ip),
      port: dst?.port ?? listener.port,
      binary: null,
      transparent: true,
    });
    return undefined;
  }
  opts.onOriginal?.(socket, dst);
  const original = formatAuthority(dst.ip, dst.port);
  let host: string | undefined;
  let from: NameSource;
  let initial: Buffer | undefined;
  let seen: Record<string, string> = {};
  const dnsName = opts.pool.nameOf(dst.ip);
  if (dnsName !== undefined) {
    host = dnsName;
    from = 'dns';
  } else {
    initial = await peekFirstBytes(socket, opts.peekMs ?? 1000);
    const sni = initial ? usableName(sniOf(initial)) : undefined;
    const hostHeader = initial && sni === undefined ? usableName(httpHostOf(initial)) : undefined;
    if (sni !== undefined) {
      host = sni;
      from = 'sni';
      seen = { sni };
    } else if (hostHeader !== undefined) {
      host = hostHeader;
      from = 'http_host';
      seen = { http_host: hostHeader };
    } else {
      host = dst.ip;
      from = 'ip';
    }
  }
  const stale = from === 'ip' && inFakePool(dst.ip);
  const how =
    from === 'dns'
      ? `name from the sandbox's DNS answer ${dst.ip}`
      : from === 'ip'
        ? stale
          ? `no name: ${dst.ip} is a DNS answer no longer mapped`
          : 'no name: decided on the IP'
        : `name from ${from === 'sni' ? 'TLS SNI' : 'the HTTP Host header'}, original destination ${original}`;
  return {
    host,
    port: dst.port,
    ...(initial ? { initial } : {}),
    summary: `TCP ${formatAuthority(host, dst.port)} (not proxy-aware; ${how})`,
    fields: { transparent: true, original_dst: original, name_from: from, ...seen },
  };
}

/**
 * Every UDP datagram that is not DNS lands here: it is dropped (the sandbox has no UDP way out),
 * and each destination is recorded once (a QUIC client retries many times per second).
 */
export function serveUdpSink(sockets: DgramSocket[], opts: { rootPid: number; pool: FakeDnsPool; emit(e: EventInput): void; originalDst?: (rinfo: RemoteInfo, local: { ip: string; port: number }) => OriginalDestination | undefined }): () => void {
  const seen = new Set<string>();
  /**
   * When each client end was last looked up: a flood from one socket reads the conntrack table at
   * most every 250 ms (an unconnected socket may change destination, so it is looked up again).
   */
  const sources = new Map<string, number>();
  const handlers: Array<[DgramSocket, (msg: Buffer, rinfo: RemoteInfo) => void]> = [];
  for (const s of sockets) {
    const local = s.address();
    const onMessage = (_msg: Buffer, rinfo: RemoteInfo): void => {
      const source = `${rinfo.address}:${rinfo.port}`;
      const now = performance.now();
      const last = sources.get(source);
      if (last !== undefined && now - last < 250) return;
      if (sources.size >= 4096) sources.clear();
      sources.set(source, now);
      const dst = opts.originalDst
        ? opts.originalDst(rinfo, { ip: local.address, port: local.port })
        : originalDestination(opts.rootPid, 'udp', { ip: rinfo.address, port: rinfo.port }, { ip: local.address, port: local.port });
      const key = dst ? formatAuthority(dst.ip, dst.port) : `unknown from ${rinfo.address}`;
      if (seen.has(key)) return;
      if (seen.size >= 4096) seen.clear();
      seen.add(key);
      const name = dst ? opts.pool.nameOf(dst.ip) : undefined;
      opts.emit({
        kind: 'net.decision',
        level: 'warn',
        action: 'deny',
        error: 'policy_denied',
        reason: 'UDP is not forwarded out of the sandbox (only DNS, which the supervisor answers); datagrams to this destination are dropped (recorded once)',
        host: name ?? dst?.ip ?? null,
        port: dst?.port ?? null,
        protocol: 'udp',
        binary: null,
        transparent: true,
        ...(dst ? { original_dst: key } : {}),
      });
    };
    s.on('message', onMessage);
    s.on('error', () => undefined);
    handlers.push([s, onMessage]);
  }
  return () => {
    for (const [s, h] of handlers) {
      s.off('message', h);
      try {
        s.close();
      } catch {
        /* closed */
      }
    }
  };
}
