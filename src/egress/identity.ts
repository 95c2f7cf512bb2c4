/**
 * Binary identity (best effort, never trusted alone). The sandbox's `127.0.0.1:3128` is a listening
 * socket the supervisor owns inside the sandbox's network namespace (sandbox/netns-listener.ts), so
 * each accepted socket is the far end of the client's own TCP connection. From the host we walk
 * back to the process that opened it:
 *
 *   accepted socket's remote port ─(netns /proc/ROOT/net/tcp{,6}: local port = it, remote = 3128)→
 *   the client's TCP socket inode ─(/proc/*\/fd of processes in that netns)→ client PID → /proc/PID/exe
 *
 * No process is spawned per connection. Anything ambiguous (several processes with different
 * executables share the socket) or missing yields undefined, so a rule's binary condition fails
 * closed.
 */
import { readFileSync, readdirSync, readlinkSync } from 'node:fs';
import type { Socket } from 'node:net';
import { clientSocketInodes, parseProcNetTcp, type TcpEntry } from '../shared/procfs.js';

export { parseProcNetTcp };
export type { TcpEntry };

// procfs reads are synchronous on purpose: they are answered from kernel memory in microseconds,
// and the thread-pool round trip of fs/promises costs more than the read (0.3 vs 0.12 ms for a
// TCP table, 0.5 vs 0.24 ms for a scan of every process's netns).

function socketInodesOf(pid: number): number[] {
  const dir = `/proc/${pid}/fd`;
  let fds: string[];
  try {
    fds = readdirSync(dir);
  } catch {
    return [];
  }
  const out: number[] = [];
  for (const fd of fds) {
    try {
      const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`${dir}/${fd}`));
      if (m) out.push(Number(m[1]));
    } catch {
      // fd closed meanwhile
    }
  }
  return out;
}

function netnsOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/ns/net`);
  } catch {
    return undefined;
  }
}

function pidsInNetns(ns: string): number[] {
  const out: number[] = [];
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    const pid = Number(d);
    if (netnsOf(pid) === ns) out.push(pid);
  }
  return out;
}

export interface IdentifyTarget {
  /** A process inside the sandbox's network namespace (its /proc/PID/net shows that netns). */
  rootPid: number;
  /** The port the sandbox connects to inside the netns (3128; for an intercepted connection, its original port). */
  relayPort: number;
  /**
   * The address the client's socket is connected to, when it is not our listener's: an intercepted
   * connection's socket still names its original destination (NAT does not change the socket).
   */
  serverIp?: string;
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
 * `targetOf(socket)` names the sandbox whose listener accepted the socket (undefined: the socket
 * did not come from a sandbox, so nothing is claimed about it).
 *
 * Reading a netns's TCP table walks the kernel's whole connection hash (about 2 ms on a large host
 * however few sockets there are), so lookups are batched: every lookup asked for before a batch
 * starts (it starts on the next turn of the event loop) is answered from one read of the table
 * and one pass over the processes' fds. A batch always starts after the lookups it serves were
 * asked for, so it sees the sockets as they are then (the re-check before forwarding relies on it).
 */
export function createBinaryIdentifier(targetOf: (socket: Socket) => IdentifyTarget | undefined): BinaryIdentifier {
  interface Batch {
    target: IdentifyTarget;
    clients: Map<string, ClientEnd>;
    result: Promise<Map<string, SocketHolders | undefined>>;
  }
  /** Per sandbox: the batch not started yet, which new lookups join. */
  const waiting = new Map<number, Batch>();
  /** Per sandbox: when the last batch ended and how long it took (ms, performance.now()). */
  const last = new Map<number, { end: number; took: number }>();
  const lookup = (t: IdentifyTarget, client: ClientEnd): Promise<SocketHolders | undefined> => {
    let batch = waiting.get(t.rootPid);
    if (!batch || batch.target.relayPort !== t.relayPort) {
      const clients = new Map<string, ClientEnd>();
      // Under a burst, a batch costs more the more sockets the sandbox holds (every fd is read),
      // so the next one waits as long as the last took: lookups stay at most half of the event
      // loop and the batches grow with the load. Idle, it starts on the next turn.
      const prev = last.get(t.rootPid);
      const delay = prev ? Math.min(Math.max(0, prev.end + prev.took - performance.now()), 20) : 0;
      const result = new Promise<Map<string, SocketHolders | undefined>>((resolve) => {
        const run = (): void => {
          if (waiting.get(t.rootPid) === batch) waiting.delete(t.rootPid);
          const started = performance.now();
          holdersOfClients(t, [...clients.values()]).then(
            (m) => {
              const end = performance.now();
              last.set(t.rootPid, { end, took: end - started });
              if (last.size > 64) last.delete(last.keys().next().value as number);
              resolve(m);
            },
            () => resolve(new Map()),
          );
        };
        if (delay > 0.05) setTimeout(run, delay);
        else setImmediate(run);
      });
      batch = { target: t, clients, result };
      waiting.set(t.rootPid, batch);
    }
    batch.clients.set(endKey(client), client);
    return batch.result.then((m) => m.get(endKey(client)));
  };
  const holders = async (socket: Socket): Promise<SocketHolders | undefined> => {
    const t = targetOf(socket);
    const { remoteAddress: ip, remotePort: port, localAddress: serverIp } = socket;
    if (!t || ip === undefined || port === undefined || serverIp === undefined) return undefined;
    return lookup(t, { ip, port, serverIp: t.serverIp ?? serverIp });
  };
  return {
    holders,
    async identify(socket) {
      return binaryOfHolders(await holders(socket));
    },
  };
}

/** One connection to a sandbox's listener, as the accepted socket sees it. */
export interface ClientEnd {
  /** The client's address and port (the accepted socket's remote end). */
  ip: string;
  port: number;
  /** The listener's address (the accepted socket's local end; 127.0.0.1). */
  serverIp: string;
}

const endKey = (c: ClientEnd): string => `${c.ip}:${c.port}>${c.serverIp}`;

/** The processes holding the sandbox-side socket of one connection to the listener. */
export async function holdersOfClient(t: IdentifyTarget, client: ClientEnd): Promise<SocketHolders | undefined> {
  return (await holdersOfClients(t, [client])).get(endKey(client));
}

/**
 * holdersOfClient for several connections from one read of the table and one pass over the fds.
 * The client socket is matched on the whole 4-tuple (client ip:port, listener ip:port): no other
 * socket can have it, so a process cannot borrow another's identity by reusing its port number.
 */
export async function holdersOfClients(t: IdentifyTarget, clients: ClientEnd[]): Promise<Map<string, SocketHolders | undefined>> {
  const out = new Map<string, SocketHolders | undefined>();
  // Group by listener address (always 127.0.0.1 today) so each table pass matches whole 4-tuples.
  const found = new Map<string, number[]>();
  const byServer = new Map<string, Set<string>>();
  for (const c of clients) {
    const set = byServer.get(c.serverIp) ?? new Set<string>();
    set.add(`${c.ip}:${c.port}`);
    byServer.set(c.serverIp, set);
  }
  // IPv4 first; an AF_INET6 client socket (v4-mapped) is in tcp6, read only when one is missing.
  for (const file of ['tcp', 'tcp6']) {
    if (file === 'tcp6' && clients.every((c) => found.has(endKey(c)))) break;
    let text = '';
    try {
      text = readFileSync(`/proc/${t.rootPid}/net/${file}`, 'utf8');
    } catch {
      // no IPv6 table (or the sandbox is gone): nothing found there
    }
    for (const [serverIp, wanted] of byServer) {
      for (const [client, inodes] of clientSocketInodes(text, wanted, { ip: serverIp, port: t.relayPort })) {
        const key = `${client}>${serverIp}`;
        found.set(key, [...(found.get(key) ?? []), ...inodes]);
      }
    }
  }
  const inodeOf = new Map<string, number>();
  for (const c of clients) {
    const inodes = found.get(endKey(c)) ?? [];
    if (inodes.length === 1) inodeOf.set(endKey(c), inodes[0] as number);
    else out.set(endKey(c), undefined);
  }
  if (inodeOf.size === 0) return out;
  const wanted = new Set(inodeOf.values());
  const ns = netnsOf(t.rootPid);
  let candidates: number[];
  if (t.candidatePids) candidates = await t.candidatePids();
  else candidates = ns ? pidsInNetns(ns) : [];
  const ownersOf = new Map<number, number[]>();
  for (const pid of candidates) {
    for (const inode of socketInodesOf(pid)) {
      if (!wanted.has(inode)) continue;
      const list = ownersOf.get(inode) ?? [];
      if (!list.includes(pid)) list.push(pid);
      ownersOf.set(inode, list);
    }
  }
  for (const [key, inode] of inodeOf) {
    const owners = (ownersOf.get(inode) ?? []).sort((a, b) => a - b);
    const exes = owners.map(exeOf);
    // A holder whose executable cannot be read (gone meanwhile): the chain is broken, claim nothing.
    if (exes.some((e) => e === undefined)) {
      out.set(key, undefined);
      continue;
    }
    const lineages = owners.map((pid) => ancestorExecutables(pid, ns));
    out.set(key, { pids: owners, binaries: [...new Set(exes as string[])].sort(), ancestors: commonAncestors(lineages) });
  }
  return out;
}

/** Bound on the walk up the process tree (OpenShell uses the same). */
const MAX_ANCESTORS = 64;

function parentOf(pid: number): number | undefined {
  try {
    const m = /^PPid:\s*(\d+)$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    const ppid = m ? Number(m[1]) : 0;
    return ppid > 0 && ppid !== pid ? ppid : undefined;
  } catch {
    return undefined;
  }
}

function exeOf(pid: number): string | undefined {
  try {
    return readlinkSync(`/proc/${pid}/exe`).replace(/ \(deleted\)$/, '');
  } catch {
    return undefined;
  }
}

/**
 * The executables of `pid`'s parents, parent first, while they are in the sandbox's network
 * namespace `ns` (the walk stops at the sandbox's first process: the supervisor and bwrap outside
 * it never count). argv is never consulted: the program writes it (OpenShell excludes cmdline too).
 */
export function ancestorExecutables(pid: number, ns: string | undefined): string[] {
  const out: string[] = [];
  if (ns === undefined) return out;
  let current = pid;
  for (let i = 0; i < MAX_ANCESTORS; i++) {
    const parent = parentOf(current);
    if (parent === undefined || netnsOf(parent) !== ns) break;
    const exe = exeOf(parent);
    if (exe === undefined) break; // gone meanwhile: the lineage above it is unknown, so it is not claimed
    out.push(exe);
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
