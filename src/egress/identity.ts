/**
 * Binary identity (best effort, never trusted alone). The sandbox's `127.0.0.1:3128` is a socat
 * relay inside the sandbox's network namespace that opens one Unix connection to the proxy per
 * sandbox TCP connection. From the host we walk that chain back to the process that opened the
 * TCP connection:
 *
 *   our accepted Unix socket ─(ss in the sandbox netns: peer inode)→ socat child ─(/proc/PID/fd)→ its TCP socket
 *   ─(netns /proc/ROOT/net/tcp{,6}: peer port)→ the client's TCP socket inode
 *   ─(/proc/*\/fd of processes in that netns)→ client PID → /proc/PID/exe
 *
 * Anything ambiguous (several processes with different executables share the socket) or missing
 * yields undefined, so a rule's binary condition fails closed.
 */
import { readFile, readdir, readlink } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { execa } from 'execa';
import { parseProcNetTcp, type TcpEntry } from '../shared/procfs.js';

export { parseProcNetTcp };
export type { TcpEntry };

export interface UnixSocketRow {
  localInode: number;
  peerInode: number;
  pids: number[];
}

/** Parse `ss -xpnH` rows: netid state recvq sendq local localInode peer peerInode [users:((...))]. */
export function parseSsUnix(text: string): UnixSocketRow[] {
  const rows: UnixSocketRow[] = [];
  for (const line of text.split('\n')) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8) continue;
    const localInode = Number(f[5]);
    const peerInode = Number(f[7]);
    if (!Number.isInteger(localInode) || !Number.isInteger(peerInode)) continue;
    const pids = [...line.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
    rows.push({ localInode, peerInode, pids });
  }
  return rows;
}

async function socketInodesOf(pid: number): Promise<number[]> {
  const dir = `/proc/${pid}/fd`;
  let fds: string[];
  try {
    fds = await readdir(dir);
  } catch {
    return [];
  }
  const out: number[] = [];
  await Promise.all(
    fds.map(async (fd) => {
      try {
        const m = /^socket:\[(\d+)\]$/.exec(await readlink(`${dir}/${fd}`));
        if (m) out.push(Number(m[1]));
      } catch {
        // fd closed meanwhile
      }
    }),
  );
  return out;
}

async function netnsOf(pid: number): Promise<string | undefined> {
  try {
    return await readlink(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

async function pidsInNetns(ns: string): Promise<number[]> {
  const all = (await readdir('/proc')).filter((d) => /^\d+$/.test(d)).map(Number);
  const out: number[] = [];
  await Promise.all(
    all.map(async (pid) => {
      if ((await netnsOf(pid)) === ns) out.push(pid);
    }),
  );
  return out;
}

/** Inode of a Node socket's fd (Unix-domain or TCP), via /proc/self/fd. */
export async function inodeOfSocket(socket: Socket): Promise<number | undefined> {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return undefined;
  try {
    const m = /^socket:\[(\d+)\]$/.exec(await readlink(`/proc/self/fd/${fd}`));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

export interface IdentifyTarget {
  /** A process inside the sandbox's network namespace (its /proc/PID/net shows that netns). */
  rootPid: number;
  /** The relay's TCP listen port inside the netns (3128). */
  relayPort: number;
  /** Processes that may own the client socket; default: every process in that netns. */
  candidatePids?: () => number[] | Promise<number[]>;
}

/** The processes holding the client's socket (sorted pids, distinct executables, sorted). */
export interface SocketHolders {
  pids: number[];
  binaries: string[];
  /**
   * Executables of the holders' ancestors inside the sandbox, parent first, that every holder shares
   * (OpenShell `collect_ancestor_binaries`): a policy naming one of them covers the connection.
   */
  ancestors?: string[];
}

export interface BinaryIdentifier {
  /** The one executable holding the client socket; undefined when unknown or ambiguous. */
  identify(socket: Socket): Promise<string | undefined>;
  /** Every process holding the client socket now (undefined: the chain could not be followed). */
  holders(socket: Socket): Promise<SocketHolders | undefined>;
}

/** The binary a holder set names: exactly one distinct executable, else none. */
export function binaryOfHolders(h: SocketHolders | undefined): string | undefined {
  return h && h.binaries.length === 1 ? h.binaries[0] : undefined;
}

export type HoldersCheck = { ok: true } | { ok: false; reason: string };

/**
 * Re-identification before forwarding: the socket's holders now must be the ones the decision was
 * made on. Another process set (an fd passed on with SCM_RIGHTS, the first holder gone, a fork),
 * more than one distinct executable, or a chain that can no longer be followed refuses.
 */
export function compareHolders(before: SocketHolders | undefined, now: SocketHolders | undefined): HoldersCheck {
  const list = (h: SocketHolders): string => `${h.binaries.join(', ') || 'none'} (pid ${h.pids.join(', ') || 'none'})`;
  if (!before) return { ok: false, reason: 'the connecting program was not identified when the request was decided' };
  if (!now) return { ok: false, reason: `the connecting program can no longer be identified (it was ${list(before)})` };
  if (now.binaries.length > 1) return { ok: false, reason: `identity is ambiguous: ${now.binaries.length} different programs hold the connection: ${list(now)}` };
  if (now.binaries.length === 0) return { ok: false, reason: `identity changed: no process holds the connection any more (it was ${list(before)})` };
  const same = (a: Array<string | number>, b: Array<string | number>): boolean => a.length === b.length && a.every((x, i) => x === b[i]);
  if (!same(before.binaries, now.binaries) || !same(before.pids, now.pids)) {
    return { ok: false, reason: `identity changed since the request was decided: it was ${list(before)}, it is now ${list(now)}` };
  }
  return { ok: true };
}

/**
 * `targets()` lists the sandboxes whose relays connect to us (usually one). `ss` runs at most once
 * per burst of connections accepted before it started.
 */
export function createBinaryIdentifier(targets: () => IdentifyTarget[], runSs: (rootPid: number) => Promise<string> = defaultRunSs): BinaryIdentifier {
  // A Unix connection made from the sandbox's netns belongs to that netns (also our accepted
  // end), so `ss` runs there. One run serves every connection accepted before it started.
  const lastRun = new Map<number, { started: number; rows: Promise<UnixSocketRow[]> }>();
  let tick = 0;
  const ssRows = (rootPid: number, acceptedAt: number): Promise<UnixSocketRow[]> => {
    const last = lastRun.get(rootPid);
    if (last && last.started > acceptedAt) return last.rows;
    const started = ++tick;
    const rows = runSs(rootPid).then(parseSsUnix, () => []);
    lastRun.set(rootPid, { started, rows });
    if (lastRun.size > 64) lastRun.delete(lastRun.keys().next().value as number);
    return rows;
  };
  const holders = async (socket: Socket): Promise<SocketHolders | undefined> => {
    const acceptedAt = tick;
    const ts = targets();
    if (ts.length === 0) return undefined;
    const mine = await inodeOfSocket(socket);
    if (mine === undefined) return undefined;
    for (const t of ts) {
      const rows = await ssRows(t.rootPid, acceptedAt);
      const peer = rows.find((r) => r.localInode === mine)?.peerInode;
      if (!peer) continue;
      const relayPids = rows.find((r) => r.localInode === peer)?.pids ?? [];
      return holdersInTarget(t, relayPids, peer);
    }
    return undefined;
  };
  return {
    holders,
    async identify(socket) {
      return binaryOfHolders(await holders(socket));
    },
  };
}

async function holdersInTarget(t: IdentifyTarget, relayPids: number[], relayUnixInode: number): Promise<SocketHolders | undefined> {
  const tcpText = (
    await Promise.all(['tcp', 'tcp6'].map((f) => readFile(`/proc/${t.rootPid}/net/${f}`, 'utf8').catch(() => '')))
  ).join('\n');
  const table = parseProcNetTcp(tcpText);
  // The relay's side of the sandbox connection: a socket of the relay process, local port = relay port.
  let clientPort: number | undefined;
  for (const pid of relayPids) {
    const inodes = await socketInodesOf(pid);
    if (!inodes.includes(relayUnixInode)) continue;
    const accepted = table.find((e) => e.localPort === t.relayPort && e.inode !== 0 && inodes.includes(e.inode));
    if (accepted) clientPort = accepted.remotePort;
  }
  if (clientPort === undefined) return undefined;
  const clientSockets = table.filter((e) => e.localPort === clientPort && e.remotePort === t.relayPort && e.inode !== 0);
  if (clientSockets.length !== 1) return undefined;
  const clientInode = (clientSockets[0] as TcpEntry).inode;
  let candidates: number[];
  if (t.candidatePids) candidates = await t.candidatePids();
  else {
    const ns = await netnsOf(t.rootPid);
    candidates = ns ? await pidsInNetns(ns) : [];
  }
  const owners: number[] = [];
  await Promise.all(
    candidates.map(async (pid) => {
      if ((await socketInodesOf(pid)).includes(clientInode)) owners.push(pid);
    }),
  );
  const exes = new Set<string>();
  for (const pid of owners) {
    try {
      exes.add((await readlink(`/proc/${pid}/exe`)).replace(/ \(deleted\)$/, ''));
    } catch {
      return undefined;
    }
  }
  const ns = await netnsOf(t.rootPid);
  const lineages = await Promise.all(owners.map((pid) => ancestorExecutables(pid, ns)));
  return { pids: owners.sort((a, b) => a - b), binaries: [...exes].sort(), ancestors: commonAncestors(lineages) };
}

/** Bound on the walk up the process tree (OpenShell uses the same). */
const MAX_ANCESTORS = 64;

async function parentOf(pid: number): Promise<number | undefined> {
  try {
    const m = /^PPid:\s*(\d+)$/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
    const ppid = m ? Number(m[1]) : 0;
    return ppid > 0 && ppid !== pid ? ppid : undefined;
  } catch {
    return undefined;
  }
}

/**
 * The executables of `pid`'s parents, parent first, while they are in the sandbox's network
 * namespace `ns` (the walk stops at the sandbox's first process: the supervisor and bwrap outside
 * it never count). argv is never consulted: the program writes it (OpenShell excludes cmdline too).
 */
export async function ancestorExecutables(pid: number, ns: string | undefined): Promise<string[]> {
  const out: string[] = [];
  if (ns === undefined) return out;
  let current = pid;
  for (let i = 0; i < MAX_ANCESTORS; i++) {
    const parent = await parentOf(current);
    if (parent === undefined || (await netnsOf(parent)) !== ns) break;
    try {
      out.push((await readlink(`/proc/${parent}/exe`)).replace(/ \(deleted\)$/, ''));
    } catch {
      break; // gone meanwhile: the lineage above it is unknown, so it is not claimed
    }
    current = parent;
  }
  return out;
}

/** Ancestors every holder has (order of the first): a policy must cover each process that can write. */
export function commonAncestors(lineages: string[][]): string[] {
  const [first, ...rest] = lineages;
  if (!first) return [];
  return [...new Set(first)].filter((exe) => rest.every((l) => l.includes(exe)));
}

async function defaultRunSs(rootPid: number): Promise<string> {
  const r = await execa('nsenter', ['-t', String(rootPid), '-n', 'ss', '-xpnH'], { reject: false, timeout: 5_000 });
  return r.stdout;
}
