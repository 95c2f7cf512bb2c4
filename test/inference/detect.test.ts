import { describe, expect, it } from 'vitest';
import { Classifier, detectPii } from '../../src/inference/detect.js';

const kinds = (text: string) => detectPii(text).map((d) => [d.kind, d.value]);

describe('PII detectors', () => {
  it('finds emails but not URL credentials, scp addresses or retina image names', () => {
    expect(kinds('write to jane.doe+work@example.co.uk today')).toEqual([['email', 'jane.doe+work@example.co.uk']]);
    const url = kinds('DATABASE_URL=postgres://user:pw@host/db');
    expect(url.map(([k]) => k)).not.toContain('email');
    expect(url).toEqual([['url_credentials', 'postgres://user:pw@host']]);
    expect(kinds('postgres://admin:s3cret@db.example.com:5432/app').map(([k]) => k)).toEqual(['url_credentials']);
    expect(kinds('git clone git@github.com:acme/widgets.git')).toEqual([]);
    expect(kinds('<img src="logo@2x.png">')).toEqual([]);
  });

  it('accepts credit cards only with a valid Luhn checksum and issuer prefix', () => {
    expect(kinds('card 4111 1111 1111 1111 exp 12/29')).toEqual([['credit_card', '4111 1111 1111 1111']]);
    expect(kinds('card 5555-5555-5555-4444')).toEqual([['credit_card', '5555-5555-5555-4444']]);
    expect(kinds('card 4111 1111 1111 1112')).toEqual([]);
    expect(kinds('order id 1234567890123456')).toEqual([]);
  });

  it('accepts IBANs only with the right length and mod-97 checksum', () => {
    expect(kinds('pay to DE89 3704 0044 0532 0130 00 please')).toEqual([['iban', 'DE89 3704 0044 0532 0130 00']]);
    expect(kinds('GB82WEST12345698765432')).toEqual([['iban', 'GB82WEST12345698765432']]);
    expect(kinds('DE89 3704 0044 0532 0130 01')).toEqual([]);
  });

  it('finds US SSNs, skipping impossible area/group/serial numbers', () => {
    expect(kinds('ssn 123-45-6789')).toEqual([['us_ssn', '123-45-6789']]);
    expect(kinds('ssn 000-45-6789 666-12-3456 900-12-3456 123-00-4567')).toEqual([]);
  });

  it('finds phone numbers but not dates, versions or bare ids', () => {
    expect(kinds('call +1 415 555 0132 or (415) 555-0199').map(([k]) => k)).toEqual(['phone', 'phone']);
    expect(kinds('+44 20 7946 0958')).toEqual([['phone', '+44 20 7946 0958']]);
    expect(kinds('released 2026-11-22, version 1.2.3, build 1234567890123')).toEqual([]);
  });

  it('finds IPv4/IPv6 and MAC addresses without matching C++ scopes or times', () => {
    expect(kinds('host 10.0.12.7 up')).toEqual([['ip_address', '10.0.12.7']]);
    expect(kinds('addr 2a02:8108:85a3::8a2e:370:7334')).toEqual([['ip_address', '2a02:8108:85a3::8a2e:370:7334']]);
    // RFC 3849 / 5737 documentation ranges are not anyone's address.
    expect(kinds('addr 2001:db8:85a3::8a2e:370:7334, 192.0.2.10, 198.51.100.7 and 203.0.113.99')).toEqual([]);
    expect(kinds('nic 00:1A:2b:3C:4d:5E')).toEqual([['mac_address', '00:1A:2b:3C:4d:5E']]);
    expect(kinds('std::vector<int> a::b at 12:30:45, version 1.2.3.4.5, 999.1.1.1')).toEqual([]);
  });

  it('finds crypto wallets with valid checksums', () => {
    expect(kinds('btc 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa')).toEqual([['crypto_wallet', '1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNa']]);
    expect(kinds('btc 1A1zP1eP5QGefi2DMPTfTL5SLmv7DivfNb')).toEqual([]);
    expect(kinds('eth 0x52908400098527886E0F7030069857D2E4169EE7').map(([k]) => k)).toEqual(['crypto_wallet']);
  });

  it('detects proprietary markers: path globs, repo names and custom regexes', () => {
    const markers = { path_globs: ['/srv/acme/**'], repos: ['acme/secret-*'], patterns: ['ACME-CONFIDENTIAL', 'PRJ-\\d{4}'] };
    const found = detectPii('see /srv/acme/payroll/2026.csv and acme/secret-sauce; ACME-CONFIDENTIAL PRJ-0042 /srv/other/x', markers);
    expect(found.map((d) => d.value)).toEqual(['/srv/acme/payroll/2026.csv', 'acme/secret-sauce', 'ACME-CONFIDENTIAL', 'PRJ-0042']);
    expect(found.every((d) => d.kind === 'proprietary')).toBe(true);
  });
});

describe('Classifier', () => {
  it('reports secrets from secretlint and key formats it misses', async () => {
    const c = new Classifier();
    const slack = await c.classify('token xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx ok');
    expect(slack.detections.map((d) => d.kind)).toEqual(['secret']);
    const aws = await c.classify('aws_secret_access_key = "Xz9a8Ls2k3J4h5G6f7D8s9A0q1W2e3R4t5Y6u7I8"');
    expect(aws.detections[0]!.value).toContain('Xz9a8Ls2k3J4h5G6f7D8s9A0q1W2e3R4t5Y6u7I8');
    const nv = await c.classify('NVIDIA_API_KEY=nvapi-AbCdEfGhIjKlMnOpQrStUvWxYz0123456789AbCdEfGh');
    expect(nv.detections.map((d) => d.kind)).toEqual(['secret']);
  });

  it('caches by content hash and counts tokens', async () => {
    const c = new Classifier();
    const text = 'You are a helpful agent. '.repeat(200);
    const a = await c.classify(text);
    const b = await c.classify(text);
    expect(b).toBe(a);
    expect(a.tokens).toBeGreaterThan(500);
    expect(c.stats()).toMatchObject({ hits: 1, misses: 1, entries: 1 });
  });

  it('answers an already scanned text synchronously, and a new one with a scan', async () => {
    const c = new Classifier();
    const system = 'You are OpenClaw. Follow the rules. '.repeat(700); // long: keyed by content hash
    const first = c.lookup(system);
    expect(first).toBeInstanceOf(Promise);
    const scanned = await first;
    const again = c.lookup(system);
    expect(again).not.toBeInstanceOf(Promise);
    expect(again).toBe(scanned);
    expect(c.lookup(`${system}!`)).toBeInstanceOf(Promise);
    expect(c.stats()).toMatchObject({ hits: 1, misses: 2 });
  });

  it('does not leave secretlint profiler marks behind in the process (a leak in a long-running router)', async () => {
    const c = new Classifier({ cacheEntries: 1 });
    await c.classify('warm up the scanner');
    const before = performance.getEntriesByType('mark').length;
    for (let i = 0; i < 20; i++) await c.classify(`message number ${i} with nothing secret in it`);
    expect(performance.getEntriesByType('mark').length).toBe(before);
  });

  it('skips disabled detectors', async () => {
    const c = new Classifier({ disabled: ['ip_address'] });
    const r = await c.classify('server 10.1.2.3 mail ops@acme-corp.io');
    expect(r.detections.map((d) => d.kind)).toEqual(['email']);
  });
});
