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

describe('issue 13: normalisation, decoding, joined texts', () => {
  const GHP = 'ghp_R8a9sdfQ2mZkLpW0xYtB3nC7vJ5hG1eK4uD6';

  it('finds a token hidden with zero-width characters / soft hyphens, and the span covers them in the original', async () => {
    const hidden = `${GHP.slice(0, 8)}\u200b${GHP.slice(8, 20)}\u00ad${GHP.slice(20)}`;
    const text = `push with ${hidden} please`;
    const r = await new Classifier().classify(text);
    const d = r.detections.find((x) => x.kind === 'secret')!;
    expect(d.value).toBe(hidden);
    expect(text.slice(d.start, d.end)).toBe(hidden);
  });

  it('folds fullwidth (NFKC) and Cyrillic look-alikes inside Latin words, but leaves Russian prose alone', async () => {
    const full = [...'sk_live_4eC39HqLyjWDarjtT1zdp7dc'].map((c) => String.fromCharCode(c.charCodeAt(0) + 0xfee0)).join('');
    const c = new Classifier();
    const a = await c.classify(`stripe ${full} ok`);
    expect(a.detections.map((d) => [d.kind, d.value])).toEqual([['secret', full]]);
    const cyr = GHP.replace('p', 'р'); // U+0440
    const b = await c.classify(`use ${cyr}`);
    expect(b.detections.map((d) => d.value)).toEqual([cyr]);
    expect((await c.classify('Привет, как дела? Всё хорошо.')).detections).toEqual([]);
  });

  it('decodes base64, hex and URL-encoded blobs and reports the whole blob as the span', async () => {
    const c = new Classifier();
    const blob = Buffer.from(`GITHUB_TOKEN=${GHP}\n`).toString('base64');
    const r = await c.classify(`env: ${blob} end`);
    const d = r.detections.find((x) => x.kind === 'secret')!;
    expect(d.value).toBe(blob);
    expect(d.detector).toMatch(/^base64:/);
    const hex = Buffer.from('mail me at jane.roe@acme-corp.io').toString('hex');
    expect((await c.classify(`dump ${hex}`)).detections.map((x) => [x.kind, x.value, x.detector.split(':')[0]])).toEqual([['email', hex, 'hex']]);
    const url = encodeURIComponent('token=xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx&x=1');
    expect((await c.classify(`GET /cb?state=${url}`)).detections.map((x) => x.kind)).toEqual(['secret']);
    // Base64 of ordinary text and random binary (an image) is not reported.
    expect((await c.classify(`data=${Buffer.from('The quick brown fox jumps over the lazy dog again').toString('base64')}`)).detections).toEqual([]);
  });

  it('classifyJoined finds a key split across two messages and gives both parts', async () => {
    const c = new Classifier();
    const texts = ['here is the first half: ' + GHP.slice(0, 15), GHP.slice(15) + ' is the rest', 'unrelated'];
    expect((await c.classify(texts[0]!)).detections.filter((d) => d.kind === 'secret')).toEqual([]);
    const joined = await c.classifyJoined(texts);
    expect(joined).toHaveLength(1);
    const j = joined[0]!;
    expect(j.kind).toBe('secret');
    expect(j.value).toBe(GHP);
    expect(j.parts).toEqual([
      { textIndex: 0, start: texts[0]!.length - 15, end: texts[0]!.length },
      { textIndex: 1, start: 0, end: GHP.length - 15 },
    ]);
    // Detections inside one text are not repeated by classifyJoined.
    expect(await c.classifyJoined([`token ${GHP}`, 'next message'])).toEqual([]);
  });
});

describe('issue 13: detectors from maintained sources, own rules, placeholders', () => {
  it('runs gitleaks rules (every rule of the pinned version translates) for Google API keys and JWTs', async () => {
    const { GitleaksScanner } = await import('../../src/inference/detectors/gitleaks/translate.js');
    const { GITLEAKS_CONFIG } = await import('../../src/inference/detectors/gitleaks/rules.generated.js');
    const scanner = new GitleaksScanner(GITLEAKS_CONFIG);
    expect(scanner.skipped).toEqual([]);
    expect(scanner.ruleCount).toBeGreaterThan(200);
    const c = new Classifier();
    const g = await c.classify('maps key AIzaSyD-9tSrke72PouQMnMX-a7eZSW0jkFMBWY here');
    expect(g.detections.map((d) => d.detector)).toContain('gitleaks:gcp-api-key');
    const jwt = 'eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwiaWF0IjoxNTE2MjM5MDIyfQ.SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c';
    expect((await c.classify(`Authorization: Bearer ${jwt}`)).detections.some((d) => d.kind === 'secret' && d.value.includes(jwt.slice(0, 40)))).toBe(true);
  });

  it('translates Go regex syntax to JavaScript', async () => {
    const { goRegexToJs } = await import('../../src/inference/detectors/gitleaks/translate.js');
    expect(goRegexToJs('(?i)abc')).toEqual({ source: 'abc', flags: 'i' });
    expect(goRegexToJs('a(?i)b|c')).toEqual({ source: 'a(?i:b)|(?i:c)', flags: '' });
    expect(goRegexToJs('(x(?i)y)z\\z')).toEqual({ source: '(x(?i:y))z$', flags: '' });
    expect(goRegexToJs('[[:alnum:]_]{3}')).toEqual({ source: '[a-zA-Z0-9_]{3}', flags: '' });
    expect(goRegexToJs('(?P<alg>ab)c')).toEqual({ source: '(?:ab)c', flags: '' });
  });

  it('own rules where no rule set has one: Azure storage keys, AWS secret keys without a name, OpenAI project keys', async () => {
    const c = new Classifier();
    const azure = 'Fq4G5mD8cQ0vB2sX9kL1pN7rT3wY6zA0bC4dE8fG2hJ5kM9nP3qR7sU1vW5xZ8aB2cD6eF0gH4iJ8kL2mN6oP0qR4sT==';
    const a = await c.classify(`AccountName=acme;AccountKey=${azure.slice(0, 86)}==;EndpointSuffix=core.windows.net`);
    expect(a.detections.map((d) => d.detector)).toContain('azure-storage-account-key');
    expect((await c.classify(`"integrity": "sha512-${azure.slice(0, 86)}=="`)).detections).toEqual([]);
    const secret = Buffer.from(Array.from({ length: 30 }, (_, i) => (i * 97 + 13) % 256)).toString('base64');
    const s = await c.classify(`the other value was ${secret} from IAM`);
    expect(s.detections.map((d) => [d.kind, d.value, d.detector])).toEqual([['secret', secret, 'aws-secret-key:shape']]);
    const near = await c.classify(`AKIAZ4EXAMPLE2ABCDEF / ${secret}`);
    expect(near.detections.map((d) => d.detector)).toContain('aws-secret-key:near-key-id');
    const proj = `sk-proj-${'Ab3dEf6hIj9lMn2pQr5tUv8xYz1BcD4fGh7jKl0'.repeat(2)}`;
    expect((await c.classify(`OPENAI_API_KEY=${proj}`)).detections.map((d) => d.kind)).toEqual(['secret']);
  });

  it('never reports documented placeholders, example domains, documentation IPs or version strings', async () => {
    const c = new Classifier();
    for (const text of [
      'aws_access_key_id = AKIAIOSFODNN7EXAMPLE',
      'aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY',
      'write to jane@example.com, bob@mail.example.org or ops@corp.example',
      'version 4.2.0.1, upgraded to v10.2.3.4, pip install pkg==1.2.3.4, "version": "2.14.3.7"',
      'OPENAI_API_KEY=sk-XXXXXXXXXXXXXXXXXXXXXXXX and ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx',
      'token_id: 5d62a98b-adf5-407a-bda7-eff5da20928e',
    ]) {
      expect((await c.classify(text)).detections.map((d) => `${d.kind}/${d.detector}`), text).toEqual([]);
    }
    expect(kinds('listening on 127.0.0.1:8080, 0.0.0.0:9090 and [::1]:3000; peer 10.1.2.3').map(([, v]) => v)).toEqual(['10.1.2.3']);
    // German capitalises nouns: a sentence opening with two of them is no name.
    expect(kinds('Größere Änderungen an der Straßenführung wurden übernommen. Neue Regeln gelten ab morgen.')).toEqual([]);
    // A real address at the end of a sentence is still one.
    expect(kinds('The server is at 147.67.82.162.')).toEqual([['ip_address', '147.67.82.162']]);
  });

  it('phones in national formats and with extensions (libphonenumber-js), not order numbers or postal codes', () => {
    for (const p of ['(0151) 496 0202', '090-4889-2887', '873.878.2659x6089', '+33 6 12 34 56 78']) {
      const found = detectPii(`Call ${p} after 5pm.`);
      expect(found.map((d) => [d.kind, d.value]), p).toEqual([['phone', p]]);
      expect(found[0]!.detector).toMatch(/^libphonenumber:/);
    }
    expect(kinds('Order #4488-2910-33 shipped, invoice 2024-0012-883, ZIP 94561-7141')).toEqual([]);
  });

  it('12-digit Maestro cards (Luhn)', () => {
    expect(kinds('card 5018 0000 0009 exp 09/29')).toEqual([['credit_card', '5018 0000 0009']]);
    expect(kinds('order 123456789012')).toEqual([]);
  });

  it('names, addresses, dates of birth and passports, each naming its detector', () => {
    const d = detectPii('Customer name: Jonna Wollenberg\nAddress: Spreestr. 94, 10115 Berlin\nDate of birth: 14.03.1987\nPassport number: C01X00T47');
    expect(d.map((x) => [x.kind, x.value])).toEqual([
      ['person', 'Jonna Wollenberg'],
      ['address', 'Spreestr. 94, 10115 Berlin'],
      ['date_of_birth', '14.03.1987'],
      ['passport', 'C01X00T47'],
    ]);
    expect(d.every((x) => x.detector.length > 0 && !x.detector.includes(x.value))).toBe(true);
    expect(kinds('I spoke with Georgiana Schinner yesterday about 294 Gulgowski Divide Apt. 741.')).toEqual([
      ['person', 'Georgiana Schinner'],
      ['address', '294 Gulgowski Divide Apt. 741'],
    ]);
    // Capitalised technical phrases and bare dates are not personal data.
    expect(kinds('We use Visual Studio Code and Pull Request templates. Released 2026-11-22.')).toEqual([]);
  });
});

describe('bounded cost on hostile input (the router scans on its event loop)', () => {
  it('a 32 KB base64 blob, one 32 KB "word" and an a.a.a…@b.b.b… run each scan in well under a second', async () => {
    const c = new Classifier({ cacheEntries: 1 });
    await c.classify('warm up');
    for (const text of ['QUFB'.repeat(8000), `api_key = "${'a'.repeat(32000)}`, `${'a.'.repeat(8000)}@${'b.'.repeat(8000)}`]) {
      const t0 = performance.now();
      await c.classify(text);
      // Seconds before (gpt-tokenizer's BPE and the e-mail regex are quadratic there); ~20-40 ms now.
      expect(performance.now() - t0).toBeLessThan(1500);
    }
  });

  it('counts tokens of long runs in pieces: within one token per 256 characters of the exact count', async () => {
    const { countTokens } = await import('gpt-tokenizer');
    const blob = Buffer.from(Array.from({ length: 3000 }, (_, i) => (i * 131 + 7) % 256)).toString('base64');
    const text = `read the file: ${blob} done`;
    const r = await new Classifier().classify(text);
    expect(Math.abs(r.tokens - countTokens(text))).toBeLessThanOrEqual(Math.ceil(blob.length / 256) + 1);
  });
});
