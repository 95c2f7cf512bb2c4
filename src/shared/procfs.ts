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

/**
 * Inodes of the sockets in /proc/PID/net/tcp{,6} text whose local port is one of `localPorts` and
 * whose remote port is `remotePort` (inode 0, a TIME_WAIT remnant, is left out). One regular
 * expression pass instead of parsing every row: the table of a busy sandbox holds thousands.
 */
export function inodesByLocalPort(text: string, localPorts: ReadonlySet<number>, remotePort: number): Map<number, number[]> {
  const out = new Map<number, number[]>();
  const remote = remotePort.toString(16).toUpperCase().padStart(4, '0');
  // sl: local:port remote:port st tx:rx tr:when retrnsmt uid timeout inode
  const row = new RegExp(`^ *\\d+: [0-9A-F]+:([0-9A-F]{4}) [0-9A-F]+:${remote} [0-9A-F]{2} \\S+ \\S+ \\S+ +\\d+ +\\d+ +(\\d+)`, 'gm');
  for (const m of text.matchAll(row)) {
    const port = parseInt(m[1] as string, 16);
    const inode = Number(m[2]);
    if (!localPorts.has(port) || inode === 0) continue;
    const list = out.get(port) ?? [];
    list.push(inode);
    out.set(port, list);
  }
  return out;
}
