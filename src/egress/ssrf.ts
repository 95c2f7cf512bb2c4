/**
 * SSRF guard: the proxy resolves names itself, checks every answer and dials exactly the address it
 * checked (no second lookup, so DNS rebinding cannot slip a different address in). Non-canonical
 * IPv4 literals (decimal, octal, hex, short forms) are normalised before policy and SSRF checks.
 */
import { lookup } from 'node:dns/promises';
import { isIP } from 'node:net';

export interface ResolvedAddress {
  address: string;
  family: 4 | 6;
}

/** Injected in tests (maps names to whatever addresses the test needs). */
export type Resolver = (host: string) => Promise<ResolvedAddress[]>;

export const systemResolver: Resolver = async (host) => {
  const answers = await lookup(host, { all: true, verbatim: true });
  return answers.map((a) => ({ address: a.address, family: a.family === 6 ? 6 : 4 }));
};

/**
 * WHATWG-style IPv4 literal parsing: `2130706433`, `0x7f.1`, `017700000001`, `127.1` are all
 * 127.0.0.1. Returns the dotted-quad form, or undefined when `host` is not an IPv4 literal.
 */
export function normaliseIpv4Literal(host: string): string | undefined {
  const parts = host.split('.');
  if (parts.length > 4 || parts.some((p) => p.length === 0)) return undefined;
  const nums: number[] = [];
  for (const p of parts) {
    let n: number;
    if (/^0x[0-9a-f]*$/i.test(p)) n = p.length === 2 ? 0 : parseInt(p.slice(2), 16);
    else if (/^0[0-7]+$/.test(p)) n = parseInt(p.slice(1), 8);
    else if (/^(0|[1-9][0-9]*)$/.test(p)) n = Number(p);
    else return undefined;
    if (!Number.isFinite(n)) return undefined;
    nums.push(n);
  }
  const last = nums.pop() as number;
  if (nums.some((n) => n > 255)) return undefined;
  if (last >= 256 ** (4 - nums.length)) return undefined;
  let value = last;
  nums.forEach((n, i) => (value += n * 256 ** (3 - i)));
  return [value >>> 24, (value >>> 16) & 255, (value >>> 8) & 255, value & 255].join('.');
}

/** Canonical host for policy matching and dialling: IPv4 literals normalised, IPv6 compressed. */
export function canonicalHost(host: string): string {
  const v4 = normaliseIpv4Literal(host);
  if (v4 !== undefined) return v4;
  if (isIP(host) === 6) return ipv6ToString(parseIpv6(host) as Uint8Array);
  return host;
}

export function parseIpv4(text: string): Uint8Array | undefined {
  const m = /^(\d{1,3})\.(\d{1,3})\.(\d{1,3})\.(\d{1,3})$/.exec(text);
  if (!m) return undefined;
  const b = m.slice(1).map(Number);
  if (b.some((x) => x > 255)) return undefined;
  return Uint8Array.from(b);
}

export function parseIpv6(text: string): Uint8Array | undefined {
  const zone = text.indexOf('%');
  if (zone >= 0) text = text.slice(0, zone);
  if (isIP(text) !== 6) return undefined;
  const lastColon = text.lastIndexOf(':');
  const maybeV4 = text.slice(lastColon + 1);
  if (maybeV4.includes('.')) {
    const v4 = parseIpv4(maybeV4);
    if (!v4) return undefined;
    const hi = ((v4[0]! << 8) | v4[1]!).toString(16);
    const lo = ((v4[2]! << 8) | v4[3]!).toString(16);
    text = `${text.slice(0, lastColon + 1)}${hi}:${lo}`;
  }
  const toNums = (s: string): number[] => (s.length === 0 ? [] : s.split(':').map((g) => parseInt(g, 16)));
  let groups: number[];
  const dbl = text.indexOf('::');
  if (dbl >= 0) {
    const head = toNums(text.slice(0, dbl));
    const rest = toNums(text.slice(dbl + 2));
    const zeros = 8 - head.length - rest.length;
    if (zeros < 0) return undefined;
    groups = [...head, ...new Array<number>(zeros).fill(0), ...rest];
  } else {
    groups = toNums(text);
  }
  if (groups.length !== 8 || groups.some((g) => !Number.isInteger(g) || g < 0 || g > 0xffff)) return undefined;
  const out = new Uint8Array(16);
  groups.forEach((g, i) => {
    out[i * 2] = g >> 8;
    out[i * 2 + 1] = g & 255;
  });
  return out;
}

function ipv6ToString(b: Uint8Array): string {
  const groups: number[] = [];
  for (let i = 0; i < 16; i += 2) groups.push((b[i]! << 8) | b[i + 1]!);
  // Longest run of zeros → "::".
  let bestStart = -1;
  let bestLen = 0;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen && j - i > 1) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return hex.slice(0, bestStart).join(':') + '::' + hex.slice(bestStart + bestLen).join(':');
}

export type AddressClass = 'public' | 'private' | 'loopback' | 'link-local' | 'unspecified' | 'multicast' | 'reserved';

interface Cidr {
  bytes: Uint8Array;
  bits: number;
}

export function parseCidr(text: string): Cidr | undefined {
  const [addr, bitsText] = text.split('/');
  if (addr === undefined) return undefined;
  const bytes = parseIpv4(addr) ?? parseIpv6(addr);
  if (!bytes) return undefined;
  const max = bytes.length * 8;
  const bits = bitsText === undefined ? max : Number(bitsText);
  if (!Number.isInteger(bits) || bits < 0 || bits > max) return undefined;
  return { bytes, bits };
}

function inCidr(bytes: Uint8Array, cidr: Cidr): boolean {
  if (bytes.length !== cidr.bytes.length) return false;
  let bits = cidr.bits;
  for (let i = 0; bits > 0; i++, bits -= 8) {
    const mask = bits >= 8 ? 0xff : (0xff << (8 - bits)) & 0xff;
    if ((bytes[i]! & mask) !== (cidr.bytes[i]! & mask)) return false;
  }
  return true;
}

const V4_RANGES: Array<[string, AddressClass]> = [
  ['0.0.0.0/8', 'unspecified'],
  ['127.0.0.0/8', 'loopback'],
  ['169.254.0.0/16', 'link-local'],
  ['224.0.0.0/4', 'multicast'],
  ['240.0.0.0/4', 'reserved'],
  ['10.0.0.0/8', 'private'],
  ['172.16.0.0/12', 'private'],
  ['192.168.0.0/16', 'private'],
  ['100.64.0.0/10', 'private'],
  ['198.18.0.0/15', 'private'],
  // Special-use ranges OpenShell also treats as internal (openshell-core net.rs `is_internal_v4`):
  // IETF protocol assignments and the three documentation TEST-NETs.
  ['192.0.0.0/24', 'private'],
  ['192.0.2.0/24', 'private'],
  ['198.51.100.0/24', 'private'],
  ['203.0.113.0/24', 'private'],
];
const V6_RANGES: Array<[string, AddressClass]> = [
  ['::/128', 'unspecified'],
  ['::1/128', 'loopback'],
  ['fe80::/10', 'link-local'],
  ['ff00::/8', 'multicast'],
  ['fc00::/7', 'private'],
  ['fec0::/10', 'private'],
];
const V4_TABLE = V4_RANGES.map(([c, k]) => [parseCidr(c) as Cidr, k] as const);
const V6_TABLE = V6_RANGES.map(([c, k]) => [parseCidr(c) as Cidr, k] as const);
// IPv6 forms that carry an IPv4 address in the last 32 bits: IPv4-mapped, IPv4-compatible,
// NAT64 well-known and local-use prefixes. They are judged by the embedded address.
const EMBEDS_V4 = ['::ffff:0:0/96', '::/96', '64:ff9b::/96', '64:ff9b:1::/48'].map((c) => parseCidr(c) as Cidr);

export interface ClassifiedAddress {
  address: string;
  family: 4 | 6;
  kind: AddressClass;
  /** The IPv4 address embedded in an IPv4-mapped / NAT64 IPv6 address. */
  embedded?: string;
}

export function classifyAddress(address: string): ClassifiedAddress | undefined {
  const v4 = parseIpv4(address);
  if (v4) {
    const hit = V4_TABLE.find(([c]) => inCidr(v4, c));
    return { address, family: 4, kind: hit ? hit[1] : 'public' };
  }
  const v6 = parseIpv6(address);
  if (!v6) return undefined;
  const hit = V6_TABLE.find(([c]) => inCidr(v6, c));
  if (hit) return { address, family: 6, kind: hit[1] };
  if (EMBEDS_V4.some((c) => inCidr(v6, c))) {
    const embedded = `${v6[12]}.${v6[13]}.${v6[14]}.${v6[15]}`;
    const inner = classifyAddress(embedded) as ClassifiedAddress;
    return { address, family: 6, kind: inner.kind, embedded };
  }
  return { address, family: 6, kind: 'public' };
}

export interface SsrfContext {
  /** The matched endpoint names this exact host (no glob), or the operator approved this exact host. */
  exactHost: boolean;
  /** CIDRs from the endpoint's `allowed_ips`. */
  allowedIps: string[];
  /** Test-only supervisor option. */
  unsafeAllowLoopback: boolean;
  /** The destination port (control-plane ports are refused for named and allowed_ips endpoints). */
  port?: number | undefined;
}

/**
 * Kubernetes control-plane ports (etcd client/peer, API server, kubelet, kubelet read-only):
 * refused for endpoints that name their host or list allowed_ips, whatever the address, as
 * OpenShell does (proxy.rs BLOCKED_CONTROL_PLANE_PORTS).
 */
export const BLOCKED_CONTROL_PLANE_PORTS: ReadonlySet<number> = new Set([2379, 2380, 6443, 10250, 10255]);

export interface SsrfVerdict {
  ok: boolean;
  /** Address to dial (ok) or the first refused address. */
  address?: string;
  family?: 4 | 6;
  reason: string;
  /** Every answer with its class, for events. */
  checked: ClassifiedAddress[];
}

function listedIn(c: ClassifiedAddress, ranges: string[]): boolean {
  const bytes = parseIpv4(c.embedded ?? c.address) ?? parseIpv6(c.address);
  return ranges.some((r) => {
    const cidr = parseCidr(r);
    if (!cidr || !bytes) return false;
    // A range that overlaps loopback/link-local never opens them (policy load refuses it anyway).
    return inCidr(bytes, cidr);
  });
}

/** Is `address` allowed for this endpoint? Every answer of a name must pass. */
export function checkAddress(c: ClassifiedAddress, ctx: SsrfContext): string | undefined {
  // An endpoint with allowed_ips may reach only those ranges, public addresses included (OpenShell
  // `validate_allowed_ips_for_resolved_addrs`; a hostless endpoint is exactly this).
  if (ctx.allowedIps.length > 0 && (c.kind === 'public' || c.kind === 'private') && !listedIn(c, ctx.allowedIps)) {
    return `${c.address} is not in the endpoint's allowed_ips (${ctx.allowedIps.join(', ')})`;
  }
  switch (c.kind) {
    case 'public':
      return undefined;
    case 'loopback':
      return ctx.unsafeAllowLoopback ? undefined : `${c.address} is a loopback address`;
    case 'private': {
      if (listedIn(c, ctx.allowedIps) || ctx.exactHost) return undefined;
      return `${c.address} is a private address; allow it with an endpoint naming this exact host or listing the range in allowed_ips`;
    }
    default:
      return `${c.address} is a ${c.kind} address`;
  }
}

/**
 * Resolve (unless `host` is a literal) and check every answer. The verdict's address is what the
 * proxy dials; nothing resolves the name again.
 */
export async function guardDestination(host: string, resolver: Resolver, ctx: SsrfContext): Promise<SsrfVerdict> {
  const literal = isIP(host) !== 0 ? host : normaliseIpv4Literal(host);
  let answers: ResolvedAddress[];
  if (literal !== undefined) {
    answers = [{ address: literal, family: isIP(literal) === 6 ? 6 : 4 }];
  } else {
    try {
      answers = await resolver(host);
    } catch (err) {
      return { ok: false, reason: `cannot resolve ${host}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, checked: [] };
    }
    if (answers.length === 0) return { ok: false, reason: `${host} has no addresses`, checked: [] };
  }
  if (ctx.port !== undefined && BLOCKED_CONTROL_PLANE_PORTS.has(ctx.port) && (ctx.exactHost || ctx.allowedIps.length > 0)) {
    return { ok: false, reason: `port ${ctx.port} is a blocked control-plane port (etcd / Kubernetes API / kubelet)`, checked: [] };
  }
  const checked: ClassifiedAddress[] = [];
  for (const a of answers) {
    const c = classifyAddress(a.address);
    if (!c) return { ok: false, reason: `resolver returned an invalid address "${a.address}"`, checked };
    checked.push(c);
  }
  for (const c of checked) {
    const why = checkAddress(c, ctx);
    if (why) return { ok: false, address: c.address, family: c.family, reason: why, checked };
  }
  const first = checked.find((c) => c.family === 4) ?? (checked[0] as ClassifiedAddress);
  return { ok: true, address: first.address, family: first.family, reason: 'ok', checked };
}
