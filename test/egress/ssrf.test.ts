import { describe, expect, it } from 'vitest';
import { canonicalHost, classifyAddress, guardDestination, normaliseIpv4Literal, type Resolver } from '../../src/egress/ssrf.js';

const strict = { exactHost: false, allowedIps: [], unsafeAllowLoopback: false };
const fixed = (map: Record<string, string[]>): Resolver => async (host) => {
  const a = map[host];
  if (!a) throw Object.assign(new Error('not found'), { code: 'ENOTFOUND' });
  return a.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
};

describe('IP literal normalisation', () => {
  it('turns decimal, octal, hex and short forms into dotted quads', () => {
    expect(normaliseIpv4Literal('2130706433')).toBe('127.0.0.1');
    expect(normaliseIpv4Literal('0x7f.1')).toBe('127.0.0.1');
    expect(normaliseIpv4Literal('017700000001')).toBe('127.0.0.1');
    expect(normaliseIpv4Literal('0251.0376.0251.0376')).toBe('169.254.169.254');
    expect(normaliseIpv4Literal('127.1')).toBe('127.0.0.1');
    expect(normaliseIpv4Literal('api.example.com')).toBeUndefined();
    expect(normaliseIpv4Literal('1.2.3.4.5')).toBeUndefined();
    expect(normaliseIpv4Literal('4294967296')).toBeUndefined();
    expect(canonicalHost('0:0:0:0:0:ffff:7f00:1')).toBe('::ffff:7f00:1');
  });
});

describe('address classes', () => {
  it.each([
    ['127.0.0.1', 'loopback'],
    ['169.254.169.254', 'link-local'],
    ['0.0.0.0', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['10.1.2.3', 'private'],
    ['100.64.0.1', 'private'],
    ['8.8.8.8', 'public'],
    ['::1', 'loopback'],
    ['::', 'unspecified'],
    ['fe80::1', 'link-local'],
    ['ff02::1', 'multicast'],
    ['fd00::1', 'private'],
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:a9fe:a9fe', 'link-local'],
    ['64:ff9b::7f00:1', 'loopback'],
    ['64:ff9b::a9fe:a9fe', 'link-local'],
    ['2001:db8::1', 'public'],
  ])('%s is %s', (addr, kind) => {
    expect(classifyAddress(addr)?.kind).toBe(kind);
  });
});

describe('guardDestination', () => {
  it('refuses a name whose answers include loopback or metadata, even alongside public ones', async () => {
    const r = fixed({ 'evil.test': ['93.184.216.34', '127.0.0.1'], 'meta.test': ['169.254.169.254'] });
    expect(await guardDestination('evil.test', r, strict)).toMatchObject({ ok: false, address: '127.0.0.1' });
    expect((await guardDestination('meta.test', r, { ...strict, exactHost: true, allowedIps: ['169.254.0.0/16'] })).ok).toBe(false);
  });

  it('refuses decimal and mapped literals without asking the resolver', async () => {
    const never: Resolver = async () => {
      throw new Error('resolver must not be called for literals');
    };
    expect((await guardDestination('2130706433', never, strict)).reason).toMatch(/loopback/);
    expect((await guardDestination('::ffff:169.254.169.254', never, strict)).reason).toMatch(/link-local/);
  });

  it('allows private addresses only for an exact host or a listed range', async () => {
    const r = fixed({ 'db.corp': ['10.0.0.5'] });
    expect((await guardDestination('db.corp', r, strict)).ok).toBe(false);
    expect((await guardDestination('db.corp', r, { ...strict, exactHost: true })).ok).toBe(true);
    expect((await guardDestination('db.corp', r, { ...strict, allowedIps: ['10.0.0.0/24'] })).ok).toBe(true);
    expect((await guardDestination('db.corp', r, { ...strict, allowedIps: ['10.0.1.0/24'] })).ok).toBe(false);
  });

  it('returns the exact checked address to dial, and loopback only with the unsafe option', async () => {
    const r = fixed({ 'up.test': ['127.0.0.1'] });
    expect((await guardDestination('up.test', r, strict)).ok).toBe(false);
    expect(await guardDestination('up.test', r, { ...strict, unsafeAllowLoopback: true })).toMatchObject({ ok: true, address: '127.0.0.1' });
    expect((await guardDestination('169.254.169.254', r, { ...strict, unsafeAllowLoopback: true })).ok).toBe(false);
  });

  it('reports a resolution failure as a refusal', async () => {
    expect((await guardDestination('nx.test', fixed({}), strict)).reason).toMatch(/cannot resolve nx.test: ENOTFOUND/);
  });
});
