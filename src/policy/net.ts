import { isIPv4, isIPv6 } from 'node:net';

/** Lower-case, without a trailing dot or IPv6 brackets: the form hosts are compared in. */
export function normalizeHost(host: string): string {
  let h = host.trim().toLowerCase();
  if (h.startsWith('[') && h.endsWith(']')) h = h.slice(1, -1);
  while (h.endsWith('.')) h = h.slice(0, -1);
  return h;
}

const LABEL_RE = /^[a-z0-9_*](?:[a-z0-9_*-]{0,61}[a-z0-9_*])?$/;

/** A host name, an IP literal, or a name whose labels may contain `*` (one label each). */
export function isValidHostPattern(raw: string): boolean {
  const host = normalizeHost(raw);
  if (host.length === 0 || host.length > 253) return false;
  if (isIPv4(host) || isIPv6(host)) return true;
  const labels = host.split('.');
  for (const [i, label] of labels.entries()) {
    // `**` (one or more labels) only as the whole first label, as OpenShell allows it.
    if (i === 0 && label === '**') continue;
    if (!LABEL_RE.test(label) || label.includes('**')) return false;
  }
  // A name must not be all-numeric labels that are not a valid IPv4 (e.g. 999.1.1.1).
  if (labels.every((l) => /^\d+$/.test(l))) return false;
  return true;
}

export interface Cidr {
  family: 4 | 6;
  /** Network address as an unsigned integer. */
  address: bigint;
  prefix: number;
}

function ipv4ToBigInt(ip: string): bigint {
  return ip.split('.').reduce((acc, part) => (acc << 8n) | BigInt(Number(part)), 0n);
}

function ipv6ToBigInt(ip: string): bigint {
  let text = ip;
  let tail: bigint[] = [];
  const lastColon = text.lastIndexOf(':');
  const maybeV4 = text.slice(lastColon + 1);
  if (maybeV4.includes('.')) {
    const v4 = ipv4ToBigInt(maybeV4);
    tail = [v4 >> 16n, v4 & 0xffffn];
    // keep a trailing `::`, drop a single trailing `:`
    text = text.slice(0, lastColon + 1);
    if (!text.endsWith('::')) text = text.slice(0, -1);
  }
  const [headText, tailText] = text.split('::') as [string, string | undefined];
  const head = headText ? headText.split(':').map((g) => BigInt(parseInt(g, 16))) : [];
  const mid = tailText !== undefined && tailText.length > 0 ? tailText.split(':').map((g) => BigInt(parseInt(g, 16))) : [];
  const groups = [...head];
  const after = [...mid, ...tail];
  if (tailText !== undefined) {
    while (groups.length + after.length < 8) groups.push(0n);
  }
  groups.push(...after);
  return groups.reduce((acc, g) => (acc << 16n) | g, 0n);
}

/** Parse `a.b.c.d[/n]` or `x::y[/n]`; undefined when invalid. Host bits must be zero-insensitive (masked). */
export function parseCidr(text: string): Cidr | undefined {
  const [ip, prefixText, extra] = text.trim().split('/');
  if (ip === undefined || extra !== undefined) return undefined;
  const family = isIPv4(ip) ? 4 : isIPv6(ip) ? 6 : undefined;
  if (!family) return undefined;
  const width = family === 4 ? 32 : 128;
  let prefix = width;
  if (prefixText !== undefined) {
    if (!/^\d{1,3}$/.test(prefixText)) return undefined;
    prefix = Number(prefixText);
    if (prefix > width) return undefined;
  }
  const raw = family === 4 ? ipv4ToBigInt(ip) : ipv6ToBigInt(ip);
  const mask = prefix === 0 ? 0n : ((1n << BigInt(prefix)) - 1n) << BigInt(width - prefix);
  return { family, address: raw & mask, prefix };
}

export function cidrsOverlap(a: Cidr, b: Cidr): boolean {
  if (a.family !== b.family) return false;
  const width = a.family === 4 ? 32 : 128;
  const p = Math.min(a.prefix, b.prefix);
  const shift = BigInt(width - p);
  return a.address >> shift === b.address >> shift;
}

/** Ranges an `allowed_ips` entry may never open: loopback, link-local, "this host", and their IPv4-mapped forms. */
export const FORBIDDEN_RANGES: ReadonlyArray<{ cidr: Cidr; label: string }> = [
  ['127.0.0.0/8', 'loopback'],
  ['0.0.0.0/8', '"this host" (reaches loopback on Linux)'],
  ['169.254.0.0/16', 'link-local'],
  ['::1/128', 'loopback'],
  ['::/128', 'unspecified (reaches loopback on Linux)'],
  ['fe80::/10', 'link-local'],
  ['::ffff:127.0.0.0/104', 'IPv4-mapped loopback'],
  ['::ffff:0.0.0.0/104', 'IPv4-mapped "this host"'],
  ['::ffff:169.254.0.0/112', 'IPv4-mapped link-local'],
].map(([text, label]) => ({ cidr: parseCidr(text!)!, label: `${text} ${label}` }));

/** The forbidden range a CIDR overlaps, if any. */
export function forbiddenOverlap(cidr: Cidr): string | undefined {
  for (const f of FORBIDDEN_RANGES) if (cidrsOverlap(cidr, f.cidr)) return f.label;
  return undefined;
}
