/**
 * Transparent interception for a root sandbox: nothing the agent does on the network is invisible,
 * proxy-aware or not (DESIGN invariant 4). Inside the sandbox's network namespace (made by bwrap,
 * only `lo`) we add, from outside, with nsenter:
 *
 *   - a default route (IPv4 and IPv6) over `lo`, with 192.0.0.8 (RFC 7600's "IPv4 dummy address")
 *     as the source, so a connect to any address leaves the socket layer instead of failing with
 *     ENETUNREACH before anything can see it;
 *   - an nftables `nat output` table: TCP to a non-loopback address → our listener 127.0.0.1:3129
 *     (or [::1]:3129), DNS (UDP/TCP 53) to anywhere → our responder 127.0.0.1:53, every other UDP
 *     datagram → a sink 127.0.0.1:3130 that records it and drops it.
 *
 * The listeners are made in the netns by a short-lived Node child and handed to the supervisor over
 * Node's IPC (SCM_RIGHTS), as netns-listener.ts does for 3128: they stay in the netns, the
 * supervisor accepts on them itself, and the agent cannot bind those ports. The original
 * destination of a redirected connection is read from the netns's conntrack table (egress/conntrack.ts).
 *
 * Anything missing (no nft, a kernel without nf_nat, not root) makes this fail with a typed error;
 * the caller then keeps loopback-only (proxy-aware clients only) and says so in status and doctor.
 * The agent cannot undo the rules: it has no capability in the netns's user namespace.
 */
import { spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type { Socket as DgramSocket } from 'node:dgram';
import type { Server } from 'node:net';
import { execa } from 'execa';
import { NemoclawError } from '../shared/errors.js';

export const TRANSPARENT_PORT = 3129;
export const UDP_SINK_PORT = 3130;
export const DNS_PORT = 53;
/** Source address of the sandbox's non-loopback traffic (RFC 7600, reserved for exactly this). */
export const SANDBOX_SOURCE_V4 = '192.0.0.8';
/** The nft table we own in the sandbox's netns. */
export const NFT_TABLE = 'nemoclaw';

/** Sockets listening in the sandbox's netns, handed to the supervisor. */
export interface TransparentSockets {
  /** 127.0.0.1:3129: redirected IPv4 TCP. */
  tcp4: Server;
  /** [::1]:3129: redirected IPv6 TCP (absent when the netns has no IPv6). */
  tcp6?: Server;
  /** 127.0.0.1:53 UDP and TCP: the DNS responder. */
  dnsUdp: DgramSocket;
  dnsTcp: Server;
  /** 127.0.0.1:3130 (and [::1]:3130): every other UDP datagram, recorded and dropped. */
  udpSink4: DgramSocket;
  udpSink6?: DgramSocket;
}

export interface TransparentSetupOptions {
  nsenter?: string;
  /** Path of `nft`; default found in the usual bin dirs (tests inject a missing one). */
  nft?: string;
  ip?: string;
  node?: string;
  timeoutMs?: number;
}

/** The nft ruleset loaded into the sandbox's netns (fixed text: nothing in it comes from input). */
export function nftRuleset(ipv6: boolean): string {
  return [
    `table inet ${NFT_TABLE} {`,
    '  chain output {',
    '    type nat hook output priority -100; policy accept;',
    // Loopback stays loopback: the proxy at 127.0.0.1:3128, the agent's own local services.
    '    ip daddr 127.0.0.0/8 return',
    '    ip6 daddr ::1 return',
    // Every DNS query, whichever server it names, goes to the supervisor's responder.
    `    udp dport 53 redirect to :${DNS_PORT}`,
    `    tcp dport 53 redirect to :${DNS_PORT}`,
    `    meta l4proto tcp redirect to :${TRANSPARENT_PORT}`,
    ipv6 ? `    meta l4proto udp redirect to :${UDP_SINK_PORT}` : `    meta nfproto ipv4 meta l4proto udp redirect to :${UDP_SINK_PORT}`,
    '  }',
    '}',
    '',
  ].join('\n');
}

/** Run in the netns: make each listener, send it to the parent, exit once all were sent. */
const SOCKETS_SCRIPT = [
  "const net = require('net'); const dgram = require('dgram');",
  'const specs = JSON.parse(process.argv[1]);',
  'let left = specs.length;',
  'const sent = () => { if (--left === 0) process.exit(0); };',
  'for (const s of specs) {',
  "  const fail = (e) => process.send({ name: s.name, error: e.code || e.message }, sent);",
  "  if (s.kind === 'tcp') {",
  '    const srv = net.createServer();',
  "    srv.on('error', fail);",
  "    srv.listen({ host: s.host, port: s.port, backlog: 4096, ipv6Only: s.host.includes(':') }, () => process.send({ name: s.name }, srv, sent));",
  '  } else {',
  "    const sock = dgram.createSocket({ type: s.host.includes(':') ? 'udp6' : 'udp4', ipv6Only: s.host.includes(':') });",
  "    sock.on('error', fail);",
  '    sock.bind(s.port, s.host, () => process.send({ name: s.name }, sock, sent));',
  '  }',
  '}',
].join('\n');

interface SocketSpec {
  name: keyof TransparentSockets;
  kind: 'tcp' | 'udp';
  host: string;
  port: number;
  optional: boolean;
}

const SPECS: SocketSpec[] = [
  { name: 'tcp4', kind: 'tcp', host: '127.0.0.1', port: TRANSPARENT_PORT, optional: false },
  { name: 'tcp6', kind: 'tcp', host: '::1', port: TRANSPARENT_PORT, optional: true },
  { name: 'dnsUdp', kind: 'udp', host: '127.0.0.1', port: DNS_PORT, optional: false },
  { name: 'dnsTcp', kind: 'tcp', host: '127.0.0.1', port: DNS_PORT, optional: false },
  { name: 'udpSink4', kind: 'udp', host: '127.0.0.1', port: UDP_SINK_PORT, optional: false },
  { name: 'udpSink6', kind: 'udp', host: '::1', port: UDP_SINK_PORT, optional: true },
];

const NEXT = 'install nftables (`apt-get install -y nftables`, or `nemoclaw-tui doctor --fix`) and run the supervisor as root; until then only proxy-aware clients get out';

/** Make the listeners in the netns of `pid`. node:child_process for the IPC channel (handle passing). */
function openSockets(pid: number, opts: TransparentSetupOptions): Promise<Partial<TransparentSockets>> {
  const timeoutMs = opts.timeoutMs ?? 10_000;
  return new Promise((resolve, reject) => {
    const got: Partial<Record<keyof TransparentSockets, Server | DgramSocket>> = {};
    const errors: string[] = [];
    let settled = false;
    const child = spawn(opts.nsenter ?? 'nsenter', [`--net=/proc/${pid}/ns/net`, '--', opts.node ?? process.execPath, '-e', SOCKETS_SCRIPT, JSON.stringify(SPECS)], {
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
      env: {},
    });
    let stderr = '';
    child.stderr?.on('data', (d: Buffer) => {
      if (stderr.length < 4096) stderr += d.toString();
    });
    const closeAll = (): void => {
      for (const h of Object.values(got)) {
        try {
          h?.close();
        } catch {
          /* closed */
        }
      }
    };
    const finish = (err?: Error): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      if (err) {
        closeAll();
        if (child.exitCode === null) child.kill('SIGKILL');
        return reject(err);
      }
      resolve(got as Partial<TransparentSockets>);
    };
    const timer = setTimeout(() => finish(new NemoclawError('internal', `transparent interception: the listeners in the sandbox's network namespace did not answer within ${timeoutMs} ms`, { nextStep: NEXT })), timeoutMs);
    child.on('message', (msg: unknown, handle: unknown) => {
      const m = (msg ?? {}) as { name?: keyof TransparentSockets; error?: string };
      if (!m.name) return;
      if (handle && !m.error) {
        if (settled) (handle as Server).close();
        else got[m.name] = handle as Server | DgramSocket;
      } else errors.push(`${m.name}: ${m.error}`);
    });
    child.on('error', (e) => finish(new NemoclawError('internal', `transparent interception: ${e.message}`, { nextStep: NEXT })));
    child.on('exit', () => {
      const missing = SPECS.filter((s) => !s.optional && !got[s.name]);
      if (missing.length > 0) {
        finish(
          new NemoclawError('internal', `transparent interception: could not listen in the sandbox's network namespace (${errors.join(', ') || stderr.trim() || 'the helper exited'})`, {
            nextStep: NEXT,
          }),
        );
      } else finish();
    });
  });
}

async function inNetns(pid: number, opts: TransparentSetupOptions, command: string[], input?: string): Promise<{ ok: boolean; message: string }> {
  const r = await execa(opts.nsenter ?? 'nsenter', [`--net=/proc/${pid}/ns/net`, '--', ...command], {
    reject: false,
    timeout: opts.timeoutMs ?? 10_000,
    env: {},
    extendEnv: false,
    ...(input !== undefined ? { input } : { stdin: 'ignore' as const }),
  });
  return { ok: r.exitCode === 0, message: `${String(r.stderr ?? '').trim() || String(r.stdout ?? '').trim() || `exit ${r.exitCode}`}` };
}

export interface TransparentNetns {
  sockets: TransparentSockets;
  ipv6: boolean;
}

/**
 * Route, redirect and listen in the netns of `pid` (the sandbox's first process, before its command
 * runs). Throws a NemoclawError naming what is missing; on failure nothing stays behind that could
 * change the loopback-only behaviour (the routes are removed again).
 */
export async function enableTransparentInterception(pid: number, opts: TransparentSetupOptions & { nft: string; ip: string }): Promise<TransparentNetns> {
  if (typeof process.getuid !== 'function' || process.getuid() !== 0) {
    throw new NemoclawError('prerequisite_missing', 'transparent interception needs a root supervisor', { nextStep: NEXT });
  }
  const sockets = await openSockets(pid, opts);
  const ipv6 = sockets.tcp6 !== undefined && sockets.udpSink6 !== undefined;
  const close = (): void => {
    for (const s of Object.values(sockets)) {
      try {
        s?.close();
      } catch {
        /* closed */
      }
    }
  };
  const steps: string[][] = [
    [opts.ip, 'addr', 'add', `${SANDBOX_SOURCE_V4}/32`, 'dev', 'lo'],
    [opts.ip, 'route', 'add', 'default', 'dev', 'lo', 'src', SANDBOX_SOURCE_V4],
    ...(ipv6 ? [[opts.ip, '-6', 'route', 'add', 'default', 'dev', 'lo']] : []),
  ];
  const undo = async (): Promise<void> => {
    await inNetns(pid, opts, [opts.ip, 'route', 'del', 'default']);
    if (ipv6) await inNetns(pid, opts, [opts.ip, '-6', 'route', 'del', 'default']);
  };
  for (const step of steps) {
    const r = await inNetns(pid, opts, step);
    if (!r.ok) {
      await undo();
      close();
      throw new NemoclawError('internal', `transparent interception: \`ip ${step.slice(1).join(' ')}\` failed in the sandbox's network namespace: ${r.message}`, { nextStep: NEXT });
    }
  }
  const nft = await inNetns(pid, opts, [opts.nft, '-f', '-'], nftRuleset(ipv6));
  if (!nft.ok) {
    await undo();
    close();
    throw new NemoclawError('prerequisite_missing', `transparent interception: nft could not load the redirect rules in the sandbox's network namespace: ${nft.message}`, { nextStep: NEXT });
  }
  return { sockets: sockets as TransparentSockets, ipv6 };
}

/** Which network a sandbox has: what status and doctor show. */
export interface NetworkInterception {
  mode: 'transparent' | 'loopback-only';
  /** One line for status: "transparent interception (nft)" or "loopback-only: proxy-aware clients only". */
  summary: string;
  /** Why it is loopback-only (what is missing), when it is. */
  reason?: string;
  ipv6?: boolean;
}

export const TRANSPARENT_SUMMARY = 'transparent interception (nft)';
export const LOOPBACK_ONLY_SUMMARY = 'loopback-only: proxy-aware clients only';

export function loopbackOnly(reason: string): NetworkInterception {
  return { mode: 'loopback-only', summary: LOOPBACK_ONLY_SUMMARY, reason };
}

/**
 * Turn interception on for a fresh root sandbox and hand its sockets to `attach` (the egress
 * service). Never throws: what is missing becomes the loopback-only reason, and the sandbox keeps
 * today's behaviour (only lo; proxy-aware clients get out through 127.0.0.1:3128).
 */
export async function interceptOrFallback(
  pid: number,
  opts: TransparentSetupOptions & {
    attach: (sockets: TransparentSockets, target: { rootPid: number }) => () => Promise<void>;
    find: (cmd: string) => string | undefined;
  },
): Promise<{ network: NetworkInterception; detach?: () => Promise<void> }> {
  const nft = opts.nft ?? opts.find('nft');
  const ip = opts.ip ?? opts.find('ip');
  if (!nft || !existsSync(nft)) return { network: loopbackOnly(`nftables is not installed (no ${opts.nft ?? 'nft'}); install it with \`apt-get install -y nftables\``) };
  if (!ip || !existsSync(ip)) return { network: loopbackOnly('iproute2 (`ip`) is not installed; install it with `apt-get install -y iproute2`') };
  try {
    const t = await enableTransparentInterception(pid, { ...opts, nft, ip });
    const detach = opts.attach(t.sockets, { rootPid: pid });
    return { network: { mode: 'transparent', summary: TRANSPARENT_SUMMARY, ipv6: t.ipv6 }, detach };
  } catch (err) {
    return { network: loopbackOnly(err instanceof Error ? err.message : String(err)) };
  }
}

/**
 * What a new sandbox of this supervisor gets, without starting one (status with nothing running):
 * root, nft and ip present → interception is tried; otherwise loopback-only and why.
 */
export function plannedInterception(opts: { root: boolean; find: (cmd: string) => string | undefined; nft?: string }): NetworkInterception {
  if (!opts.root) return loopbackOnly('the supervisor is not root (transparent interception needs root)');
  const nft = opts.nft ?? opts.find('nft');
  if (!nft || !existsSync(nft)) return loopbackOnly(`nftables is not installed (no ${opts.nft ?? 'nft'}); install it with \`apt-get install -y nftables\``);
  if (!opts.find('ip')) return loopbackOnly('iproute2 (`ip`) is not installed; install it with `apt-get install -y iproute2`');
  return { mode: 'transparent', summary: TRANSPARENT_SUMMARY };
}

/**
 * doctor's live check: load the real ruleset into a throwaway network namespace (`unshare --net`),
 * which proves nf_tables and its NAT redirect work on this kernel. Root only.
 */
export async function probeInterception(opts: { root: boolean; find: (cmd: string) => string | undefined; nft?: string }): Promise<NetworkInterception> {
  const planned = plannedInterception(opts);
  if (planned.mode !== 'transparent') return planned;
  const nft = (opts.nft ?? opts.find('nft')) as string;
  const unshare = opts.find('unshare');
  if (!unshare) return loopbackOnly('util-linux `unshare` is missing, so the check could not run; install it with `apt-get install -y util-linux`');
  const r = await execa(unshare, ['--net', '--', nft, '-f', '-'], { input: nftRuleset(true), reject: false, timeout: 10_000, env: {}, extendEnv: false });
  if (r.exitCode !== 0) {
    const why = String(r.stderr ?? '').trim().split('\n').slice(-2).join(' ') || `exit ${r.exitCode}`;
    return loopbackOnly(`nft could not load the redirect rules in a test namespace (${why}); the kernel needs nf_tables with NAT (CONFIG_NF_TABLES, CONFIG_NFT_NAT, CONFIG_NFT_REDIR)`);
  }
  return { mode: 'transparent', summary: TRANSPARENT_SUMMARY };
}
