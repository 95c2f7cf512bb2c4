/** Small readers of Linux procfs shared by the parts that look at processes and sockets. */
import { readFileSync } from 'node:fs';

/**
 * Fields 3 onwards of /proc/PID/stat (so [0] is the state, [1] the ppid, [19] the start time in
 * clock ticks since boot), or undefined when the process (or procfs) is not there. comm (field 2)
 * may contain spaces and parentheses, so the split starts after the last ')'.
 */
export function readProcStat(pid: number, procDir = '/proc'): string[] | undefined {
  let stat: string;
  try {
    stat = readFileSync(`${procDir}/${pid}/stat`, 'utf8');
  } catch {
    return undefined;
  }
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
}

export interface TcpEntry {
  localAddress: string;
  localPort: number;
  remoteAddress: string;
  remotePort: number;
  /** Kernel socket state (0x0A is LISTEN). */
  state: number;
  inode: number;
}

/** Parse /proc/PID/net/tcp or tcp6. Addresses stay hex (callers compare ports and inodes). */
export function parseProcNetTcp(text: string): TcpEntry[] {
  const out: TcpEntry[] = [];
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 10) continue;
    const [la, lp] = (f[1] as string).split(':');
    const [ra, rp] = (f[2] as string).split(':');
    out.push({
      localAddress: la ?? '',
      localPort: parseInt(lp ?? '', 16),
      remoteAddress: ra ?? '',
      remotePort: parseInt(rp ?? '', 16),
      state: parseInt(f[3] as string, 16),
      inode: Number(f[9]),
    });
  }
  return out;
}

/** A /proc/net/tcp{,6} address as dotted IPv4 (plain or v4-mapped IPv6), else undefined. */
export function procNetIpv4(hex: string): string | undefined {
  let word: string;
  if (hex.length === 8) word = hex;
  else if (hex.length === 32 && hex.startsWith('0000000000000000FFFF0000')) word = hex.slice(24);
  else return undefined;
  // Each 32-bit word is printed in host (little-endian) byte order.
  const n = parseInt(word, 16);
  return [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24].join('.');
}

/**
 * Inodes of the client sockets in /proc/PID/net/tcp{,6} text of connections to `server`
 * (`ip:port`, IPv4), keyed by the client's `ip:port` and only for the keys in `clients`. Inode 0,
 * a TIME_WAIT remnant, is left out. One regular-expression pass instead of parsing every row:
 * the table of a busy sandbox holds thousands.
 */
export function clientSocketInodes(text: string, clients: ReadonlySet<string>, server: { ip: string; port: number }): Map<string, number[]> {
  const out = new Map<string, number[]>();
  const remotePort = server.port.toString(16).toUpperCase().padStart(4, '0');
  // sl: local:port remote:port st tx:rx tr:when retrnsmt uid timeout inode
  const row = new RegExp(`^ *\\d+: ([0-9A-F]+):([0-9A-F]{4}) ([0-9A-F]+):${remotePort} [0-9A-F]{2} \\S+ \\S+ \\S+ +\\d+ +\\d+ +(\\d+)`, 'gm');
  for (const m of text.matchAll(row)) {
    const inode = Number(m[4]);
    if (inode === 0 || procNetIpv4(m[3] as string) !== server.ip) continue;
    const ip = procNetIpv4(m[1] as string);
    if (ip === undefined) continue;
    const key = `${ip}:${parseInt(m[2] as string, 16)}`;
    if (!clients.has(key)) continue;
    const list = out.get(key) ?? [];
    list.push(inode);
    out.set(key, list);
  }
  return out;
}
