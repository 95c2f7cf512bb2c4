/**
 * Labelled corpus for the privacy router's classifier (issue 13), generated deterministically from a
 * seed: the same seed always yields the same corpus, so the figures in corpus.test.ts do not flake.
 *
 * - secrets: 21 real formats (AWS key id, AWS secret key with and without a variable name nearby,
 *   GitHub PAT classic + fine-grained, GitLab PAT, Slack bot / user / webhook, Stripe, Google API
 *   key, JWT, OpenAI legacy + project keys, Anthropic, PEM private keys (RSA, EC, OpenSSH), npm,
 *   Azure storage account key, Twilio, SendGrid, Hugging Face, NVIDIA);
 * - PII of every kind the classifier supports, from Faker in 11 locales (formats as Faker writes
 *   them: national and international phones, formatted and compact IBANs…) plus the formats the red
 *   team listed (`(0151) 496 0202`, `090-4889-2887`, `873.878.2659x6089`, 12-digit Maestro);
 * - names, postal addresses, dates of birth and passport numbers in sentences, labels and JSON;
 * - ≥ 230 look-alike negatives: documentation placeholders, version strings, UUIDs, git SHAs,
 *   base64 of innocuous text, order numbers, example.com addresses, hashes, dates…
 *
 * Every sample is placed in one of several ways: plain sentence, inside code, inside a JSON tool
 * result, inside a 32 KB context, or split across two messages (secrets). Obfuscated variants
 * (zero-width characters, fullwidth letters, Cyrillic look-alikes, base64/URL-encoded) test the
 * normalisation.
 */
import { Faker, de, en, en_GB, es, fr, it, ja, nl, pl, pt_BR, sv, type LocaleDefinition } from '@faker-js/faker';

export type Label =
  | 'secret'
  | 'email'
  | 'phone'
  | 'credit_card'
  | 'iban'
  | 'us_ssn'
  | 'ip_address'
  | 'mac_address'
  | 'url_credentials'
  | 'crypto_wallet'
  | 'person'
  | 'address'
  | 'date_of_birth'
  | 'passport';

export type Placement = 'plain' | 'code' | 'json' | 'context32k' | 'split' | 'obfuscated';

export interface Sample {
  id: string;
  /** Expected kind; `negative` = nothing may be detected on the value. */
  label: Label | 'negative';
  /** Format / family (`github-pat-classic`, `phone:de`, `neg:version-string`…). */
  format: string;
  placement: Placement;
  /** The texts of the request (two for `split`). */
  texts: string[];
  /** Where the labelled value lies: [textIndex, start, end] per part. */
  spans: Array<[number, number, number]>;
  /**
   * Held out: templates written after the detectors were tuned on the rest and never tuned on;
   * corpus.test.ts prints their figures separately (an estimate of recall on unseen phrasings).
   */
  holdout?: boolean;
}

/** mulberry32: a small seeded PRNG (Faker gets its own seed per locale). */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const LOCALES: Record<string, LocaleDefinition[]> = {
  en: [en], en_GB: [en_GB, en], de: [de, en], fr: [fr, en], es: [es, en], it: [it, en], pt_BR: [pt_BR, en],
  nl: [nl, en], pl: [pl, en], sv: [sv, en], ja: [ja, en],
};

export function generateCorpus(seed = 13): Sample[] {
  const rand = prng(seed);
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)]!;
  const int = (lo: number, hi: number): number => lo + Math.floor(rand() * (hi - lo + 1));
  const chars = (alphabet: string, n: number): string => Array.from({ length: n }, () => alphabet[Math.floor(rand() * alphabet.length)]).join('');
  const UP = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ';
  const LOW = 'abcdefghijklmnopqrstuvwxyz';
  const DIG = '0123456789';
  const ALNUM = UP + LOW + DIG;
  const B64 = ALNUM + '+/';
  const HEX = '0123456789abcdef';
  const randomBytesB64 = (n: number): string => Buffer.from(Array.from({ length: n }, () => int(0, 255))).toString('base64');
  const b64url = (s: string): string => Buffer.from(s).toString('base64url');

  const samples: Sample[] = [];
  let n = 0;
  const fillerWords = 'the build runs the tests then the agent reads the files and writes a short summary of what changed in the module'.split(' ');
  const filler = (len: number): string => {
    let s = '';
    while (s.length < len) s += pick(fillerWords) + (rand() < 0.1 ? '. ' : ' ');
    return s;
  };
  const CONTEXT_PREFIX = (() => {
    // 32 KB of agent context: system prompt prose and code, fixed per corpus.
    const prose = 'You are OpenClaw, an autonomous coding agent. Follow the workspace rules, use tools carefully, never print secrets, and explain what you changed. ';
    const code = 'export function add(a: number, b: number): number {\n  return a + b; // keep it simple\n}\n';
    let s = '';
    while (s.length < 16 * 1024) s += prose + code;
    return s;
  })();

  let holdout = false;
  function place(label: Sample['label'], format: string, value: string, sentence: (v: string) => string, placements: Placement[]): void {
    const before = samples.length;
    placeAll(label, format, value, sentence, placements);
    if (holdout) for (let i = before; i < samples.length; i++) samples[i]!.holdout = true;
  }
  function placeAll(label: Sample['label'], format: string, value: string, sentence: (v: string) => string, placements: Placement[]): void {
    for (const placement of placements) {
      const id = `${format}#${n++}`;
      let text: string;
      if (placement === 'plain') text = sentence(value);
      else if (placement === 'code') {
        // Inside a code block: as a comment line, or as a string literal.
        text = rand() < 0.5
          ? `\`\`\`python\ndef handler(event):\n    # ${sentence(value)}\n    return process(event)\n\`\`\``
          : `\`\`\`ts\nconst note = ${JSON.stringify(sentence(value))};\nexport default note;\n\`\`\``;
      }
      else if (placement === 'json') {
        // A tool result: the value inside a JSON document, as the model receives it.
        text = JSON.stringify({ tool: 'read_file', ok: true, content: sentence(value), lines: int(3, 90) });
      } else if (placement === 'context32k') {
        const s = sentence(value);
        text = `${CONTEXT_PREFIX}\n${filler(int(100, 2000))}\n${s}\n${CONTEXT_PREFIX}`.slice(0, 32 * 1024 + s.length);
      } else if (placement === 'obfuscated') {
        text = sentence(value);
      } else {
        // split across two messages at a point inside the value
        const cut = int(Math.max(1, Math.floor(value.length / 3)), Math.max(2, Math.floor((value.length * 2) / 3)));
        const first = `Here is the first part of the config: ${value.slice(0, cut)}`;
        const second = `${value.slice(cut)} and that completes it.`;
        samples.push({ id, label, format, placement, texts: [first, second], spans: [[0, first.length - cut, first.length], [1, 0, value.length - cut]] });
        continue;
      }
      // JSON.stringify may escape the value (newlines in PEM keys): find it as written.
      let written = placement === 'json' || placement === 'code' ? JSON.stringify(value).slice(1, -1) : value;
      if (!text.includes(written)) written = value;
      const at = text.indexOf(written);
      if (at < 0) throw new Error(`corpus: value not placed for ${id}`);
      samples.push({ id, label, format, placement, texts: [text], spans: [[0, at, at + written.length]] });
    }
  }

  // -------------------------------------------------------------------------------- secrets
  const secretSentences = [
    (v: string) => `export API_TOKEN=${v}`,
    (v: string) => `I pasted the key ${v} into the settings, can you check why auth fails?`,
    (v: string) => `curl -s https://api.internal/v1/items -d 'token=${v}' | jq .`,
    (v: string) => `config:\n  credential: "${v}"\n  region: eu-west-1`,
  ];
  const secretFormats: Array<[string, () => string, ((v: string) => string)[]?]> = [
    ['aws-access-key-id', () => `AKIA${chars('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16)}`],
    ['aws-secret-key-named', () => randomBytesB64(30), [(v) => `aws_secret_access_key = ${v}`, (v) => `AWS_SECRET_ACCESS_KEY="${v}"`]],
    ['aws-secret-key-unnamed', () => randomBytesB64(30), [
      (v) => `creds: AKIA${chars('ABCDEFGHIJKLMNOPQRSTUVWXYZ234567', 16)} / ${v}`,
      (v) => `the other value they gave me was ${v} (from the IAM console)`,
      (v) => `${v}`,
    ]],
    ['github-pat-classic', () => `ghp_${chars(ALNUM, 36)}`],
    ['github-pat-fine-grained', () => `github_pat_${chars(ALNUM, 22)}_${chars(ALNUM, 59)}`],
    ['gitlab-pat', () => `glpat-${chars(ALNUM + '_-', 20)}`],
    ['slack-bot-token', () => `xoxb-${chars(DIG, 12)}-${chars(DIG, 13)}-${chars(ALNUM, 24)}`],
    ['slack-user-token', () => `xoxp-${chars(DIG, 12)}-${chars(DIG, 12)}-${chars(DIG, 13)}-${chars(HEX, 32)}`],
    ['slack-webhook', () => `https://hooks.slack.com/services/T${chars(UP + DIG, 10)}/B${chars(UP + DIG, 10)}/${chars(ALNUM, 24)}`],
    ['stripe-secret-key', () => `sk_live_${chars(ALNUM, 24)}`],
    ['google-api-key', () => `AIza${chars(ALNUM + '_-', 35)}`],
    ['jwt', () => `${b64url(JSON.stringify({ alg: 'HS256', typ: 'JWT' }))}.${b64url(JSON.stringify({ sub: String(int(1000, 99999)), name: 'svc', iat: 1700000000 + int(0, 1e7) }))}.${chars(ALNUM + '_-', 43)}`],
    ['openai-legacy-key', () => `sk-${chars(ALNUM, 20)}T3BlbkFJ${chars(ALNUM, 20)}`],
    ['openai-project-key', () => `sk-proj-${chars(ALNUM + '_-', 74)}T3BlbkFJ${chars(ALNUM + '_-', 74)}`],
    ['anthropic-key', () => `sk-ant-api03-${chars(ALNUM + '_-', 93)}AA`],
    ['private-key-rsa', () => `-----BEGIN RSA PRIVATE KEY-----\n${Array.from({ length: 12 }, () => chars(B64, 64)).join('\n')}\n-----END RSA PRIVATE KEY-----`],
    ['private-key-ec', () => `-----BEGIN EC PRIVATE KEY-----\n${Array.from({ length: 3 }, () => chars(B64, 64)).join('\n')}\n-----END EC PRIVATE KEY-----`],
    ['private-key-openssh', () => `-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA${chars(B64, 40)}\n${Array.from({ length: 5 }, () => chars(B64, 70)).join('\n')}\n-----END OPENSSH PRIVATE KEY-----`],
    ['npm-token', () => `npm_${chars(ALNUM, 36)}`],
    ['azure-storage-key', () => randomBytesB64(64), [(v) => `DefaultEndpointsProtocol=https;AccountName=acmedata;AccountKey=${v};EndpointSuffix=core.windows.net`, (v) => `the storage key is ${v}`]],
    ['twilio-api-key', () => `SK${chars(HEX, 32)}`],
    ['sendgrid-api-key', () => `SG.${chars(ALNUM + '_-', 22)}.${chars(ALNUM + '_-', 43)}`],
    ['huggingface-token', () => `hf_${chars(UP + LOW, 34)}`],
    ['nvidia-api-key', () => `nvapi-${chars(ALNUM + '_-', 64)}`],
  ];
  for (const [format, make, sentences] of secretFormats) {
    for (let i = 0; i < 6; i++) {
      const sentence = pick(sentences ?? secretSentences);
      const placements: Placement[] = [(['plain', 'code', 'json', 'plain', 'json', 'code'] as const)[i]!];
      if (i === 0) placements.push('context32k');
      if (i === 1 && !format.startsWith('aws-secret-key-unnamed')) placements.push('split');
      place('secret', format, make(), sentence, placements);
    }
  }
  // Obfuscated secrets: zero-width characters, soft hyphens, fullwidth, Cyrillic look-alikes, encoded.
  const zw = (v: string) => v.slice(0, 6) + '\u200b' + v.slice(6, 12) + '\u00ad' + v.slice(12);
  const fullwidth = (v: string) => [...v].map((c) => (c >= '!' && c <= '~' ? String.fromCharCode(c.charCodeAt(0) + 0xfee0) : c)).join('');
  const cyrillic = (v: string) => v.replace(/p/, 'р').replace(/a/, 'а').replace(/o/, 'о');
  for (let i = 0; i < 8; i++) {
    place('secret', 'obfuscated:zero-width', zw(`ghp_${chars(ALNUM, 36)}`), (v) => `token ${v} here`, ['obfuscated']);
    place('secret', 'obfuscated:fullwidth', fullwidth(`sk_live_${chars(ALNUM, 24)}`), (v) => `stripe: ${v}`, ['obfuscated']);
    place('secret', 'obfuscated:cyrillic', cyrillic(`ghp_${chars(ALNUM, 36)}`), (v) => `use ${v} for the push`, ['obfuscated']);
    place('secret', 'obfuscated:base64', Buffer.from(`GITHUB_TOKEN=ghp_${chars(ALNUM, 36)}\n`).toString('base64'), (v) => `env blob: ${v}`, ['obfuscated']);
    place('secret', 'obfuscated:url-encoded', encodeURIComponent(`token=xoxb-${chars(DIG, 12)}-${chars(DIG, 13)}-${chars(ALNUM, 24)}&x=1`), (v) => `GET /cb?state=${v}`, ['obfuscated']);
    place('secret', 'obfuscated:hex', Buffer.from(`key: AIza${chars(ALNUM + '_-', 35)}`).toString('hex'), (v) => `dump ${v}`, ['obfuscated']);
  }

  // -------------------------------------------------------------------------------- PII per locale
  const allPlacements: Placement[] = ['plain', 'code', 'json'];
  let localeSeed = seed * 1000;
  for (const [loc, defs] of Object.entries(LOCALES)) {
    const f = new Faker({ locale: defs });
    f.seed(localeSeed++);
    for (let i = 0; i < 8; i++) {
      const pl = [allPlacements[i % 3]!];
      if (i === 0) pl.push('context32k');
      // e-mail
      const email = f.internet.email({ provider: pick(['gmail.com', 'web.de', 'orange.fr', 'acme-corp.io', 'yahoo.co.jp', 'outlook.com', 'libero.it']) });
      place('email', `email:${loc}`, email, pick([(v: string) => `Contact me at ${v} for details.`, (v: string) => `From: ${v}`, (v: string) => `send the invoice to ${v}`]), pl);
      // phone, as Faker writes them in this locale
      const style = (['human', 'national', 'international'] as const)[i % 3]!;
      const phone = f.phone.number({ style });
      place('phone', `phone:${loc}:${style}`, phone, pick([(v: string) => `Call me on ${v} tomorrow.`, (v: string) => `Tel: ${v}`, (v: string) => `my mobile is ${v}.`, (v: string) => `You can reach the office at ${v}`]), pl);
      // IBAN
      const iban = f.finance.iban({ formatted: rand() < 0.5 });
      place('iban', `iban:${loc}`, iban, pick([(v: string) => `Please transfer it to ${v}.`, (v: string) => `IBAN: ${v}`]), pl);
      // person
      const person = f.person.fullName();
      const personSentences = loc === 'ja'
        ? [(v: string) => `氏名: ${v}`, (v: string) => `${v}様、ご連絡ありがとうございます。`, (v: string) => `{"name": "${v}"}`, (v: string) => `担当: ${v}`]
        : [
          (v: string) => `I spoke with ${v} yesterday about the invoice.`,
          (v: string) => `Customer name: ${v}`,
          (v: string) => `Dear ${v},\nthank you for your order.`,
          (v: string) => `Please forward this to ${v} before Friday.`,
          (v: string) => `Best regards,\n${v}`,
          (v: string) => `The ticket was opened by ${v} this morning.`,
          (v: string) => `${v} will join the meeting at noon.`,
          (v: string) => `assignee: ${v}`,
        ];
      place('person', `person:${loc}`, person, personSentences[i % personSentences.length]!, pl);
      // address
      const address = loc === 'ja'
        ? `${f.location.state()}${f.location.city()}${f.location.streetAddress(rand() < 0.5)}`
        : rand() < 0.5
          ? f.location.streetAddress(rand() < 0.5)
          : `${f.location.streetAddress(rand() < 0.3)}, ${f.location.zipCode()} ${f.location.city()}`;
      place('address', `address:${loc}`, address, pick([
        (v: string) => `Ship it to ${v} please.`,
        (v: string) => `Address: ${v}`,
        (v: string) => `She moved to ${v} last year.`,
        (v: string) => `{"shipping_address": "${v}"}`,
      ]), pl);
      // date of birth
      const dob = f.date.birthdate({ mode: 'age', min: 18, max: 90 });
      const dobText = pick([
        dob.toISOString().slice(0, 10),
        `${String(dob.getUTCDate()).padStart(2, '0')}.${String(dob.getUTCMonth() + 1).padStart(2, '0')}.${dob.getUTCFullYear()}`,
        `${dob.getUTCMonth() + 1}/${dob.getUTCDate()}/${dob.getUTCFullYear()}`,
        dob.toLocaleDateString('en-US', { month: 'long', day: 'numeric', year: 'numeric', timeZone: 'UTC' }),
        dob.toLocaleDateString('en-GB', { month: 'long', day: 'numeric', year: 'numeric', timeZone: 'UTC' }),
      ]);
      place('date_of_birth', `dob:${loc}`, dobText, pick([
        (v: string) => `Date of birth: ${v}`,
        (v: string) => `DOB ${v}`,
        (v: string) => `The patient was born on ${v}.`,
        (v: string) => `{"birthdate": "${v}"}`,
        (v: string) => `geboren am ${v}`,
      ]), pl);
      // passport
      const passport = pick([`${chars(UP, 1)}${chars(DIG, 8)}`, `${chars(DIG, 9)}`, `${chars(UP, 2)}${chars(DIG, 7)}`, `C${chars('CFGHJKLMNPRTVWXYZ0123456789', 8)}1`]);
      place('passport', `passport:${loc}`, passport.replace(/1$/, String(int(1, 9))), pick([
        (v: string) => `Passport number: ${v}`,
        (v: string) => `passport no. ${v}, expires 2031`,
        (v: string) => `{"passport": "${v}"}`,
        (v: string) => `Reisepassnummer ${v}`,
      ]), pl);
    }
  }

  // -------------------------------------------------------------------------------- more PII formats
  const fe = new Faker({ locale: [en] });
  fe.seed(seed);
  const luhnComplete = (prefix: string, len: number): string => {
    let body = prefix + chars(DIG, len - prefix.length - 1);
    for (let d = 0; d <= 9; d++) {
      const cand = body + d;
      let sum = 0;
      let dbl = false;
      for (let i = cand.length - 1; i >= 0; i--) {
        let x = cand.charCodeAt(i) - 48;
        if (dbl) x = x * 2 > 9 ? x * 2 - 9 : x * 2;
        sum += x;
        dbl = !dbl;
      }
      if (sum % 10 === 0) return cand;
    }
    return body;
  };
  const cardSentences = [(v: string) => `card ${v} exp 09/29`, (v: string) => `Please charge ${v} for the renewal.`, (v: string) => `"card_number": "${v}"`];
  for (const issuer of ['visa', 'mastercard', 'amex', 'discover', 'jcb'] as const) {
    for (let i = 0; i < 5; i++) place('credit_card', `card:${issuer}`, fe.finance.creditCardNumber(issuer), pick(cardSentences), [allPlacements[i % 3]!]);
  }
  for (let i = 0; i < 6; i++) {
    const maestro = luhnComplete(pick(['5018', '5020', '5038', '6304', '6759']), 12);
    place('credit_card', 'card:maestro-12', i % 2 ? maestro : `${maestro.slice(0, 4)} ${maestro.slice(4, 8)} ${maestro.slice(8)}`, pick(cardSentences), [allPlacements[i % 3]!]);
    place('credit_card', 'card:jcb-16', luhnComplete('35' + int(28, 89), 16), pick(cardSentences), [allPlacements[i % 3]!]);
  }
  for (let i = 0; i < 12; i++) {
    const area = String(int(1, 665)).padStart(3, '0');
    const ssn = `${area === '000' ? '123' : area}-${String(int(1, 99)).padStart(2, '0')}-${String(int(1, 9999)).padStart(4, '0')}`;
    place('us_ssn', 'ssn', ssn, pick([(v: string) => `SSN ${v}`, (v: string) => `social security number: ${v}.`, (v: string) => `{"ssn":"${v}"}`]), [allPlacements[i % 3]!]);
    const v4 = `${int(11, 223)}.${int(0, 255)}.${int(0, 255)}.${int(1, 254)}`;
    place('ip_address', 'ipv4', v4, pick([(v: string) => `The server is at ${v}.`, (v: string) => `ssh root@${v}`, (v: string) => `connected from ${v}, then dropped`, (v: string) => `host=${v}`]), [allPlacements[i % 3]!]);
    place('ip_address', 'ipv6', fe.internet.ipv6(), pick([(v: string) => `client address ${v}.`, (v: string) => `"remote": "${v}"`]), [allPlacements[i % 3]!]);
    place('mac_address', 'mac', fe.internet.mac(pick([':', '-'])), pick([(v: string) => `nic ${v} is up`, (v: string) => `"mac": "${v}"`]), [allPlacements[i % 3]!]);
    place('url_credentials', 'url-credentials', `postgres://${fe.internet.username().replace(/\W/g, '')}:${chars(ALNUM, 14)}@db${i}.internal:5432/app`, (v) => `DATABASE_URL=${v}`, [allPlacements[i % 3]!]);
    place('crypto_wallet', 'eth', fe.finance.ethereumAddress(), pick([(v: string) => `send ETH to ${v}`, (v: string) => `"wallet": "${v}"`]), [allPlacements[i % 3]!]);
  }
  for (const [fmt, value] of [['phone:de-national', '(0151) 496 0202'], ['phone:jp-mobile', '090-4889-2887'], ['phone:us-ext', '873.878.2659x6089'], ['phone:uk', '+44 20 7946 0958'], ['phone:fr', '+33 6 12 34 56 78'], ['phone:us-paren', '(415) 555-0132']] as const) {
    for (const p of ['plain', 'json', 'code'] as const) place('phone', fmt, value, pick([(v: string) => `Call ${v} after 5pm.`, (v: string) => `phone: ${v}`]), [p]);
  }

  // -------------------------------------------------------------------------------- negatives (look-alikes)
  const neg = (format: string, value: string, sentence: (v: string) => string): void => place('negative', format, value, sentence, [pick(allPlacements)]);
  for (let i = 0; i < 12; i++) {
    neg('neg:aws-example-key-id', 'AKIAIOSFODNN7EXAMPLE', pick([(v: string) => `aws_access_key_id = ${v}`, (v: string) => `e.g. ${v} as in the AWS docs`]));
    neg('neg:aws-example-secret', 'wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY', pick([(v: string) => `aws_secret_access_key = ${v}`, (v: string) => `secret: ${v}`]));
    neg('neg:example-email', fe.internet.exampleEmail(), pick([(v: string) => `e.g. ${v}`, (v: string) => `From: ${v}`, (v: string) => `write to ${v}`]));
    neg('neg:example-tld-email', `${fe.internet.username().toLowerCase().replace(/\W/g, '')}@${pick(['corp.example', 'mail.test', 'host.invalid', 'example.org'])}`, (v) => `user ${v} exists`);
    neg('neg:version-4part', `${int(1, 30)}.${int(0, 20)}.${int(0, 99)}.${int(0, 250)}`, pick([(v: string) => `version ${v}`, (v: string) => `Upgraded to v${v} today.`, (v: string) => `pip install mypkg==${v}`, (v: string) => `Chrome/${v} Safari/537.36`, (v: string) => `"version": "${v}"`]));
    neg('neg:doc-ip', `${pick(['192.0.2', '198.51.100', '203.0.113'])}.${int(1, 254)}`, (v) => `for example ${v}.`);
    neg('neg:uuid', fe.string.uuid(), pick([(v: string) => `request id ${v}`, (v: string) => `"trace_id": "${v}"`, (v: string) => `token_id: ${v}`]));
    neg('neg:git-sha', fe.git.commitSha(), pick([(v: string) => `commit ${v}`, (v: string) => `reverted ${v}`, (v: string) => `"sha": "${v}"`]));
    neg('neg:base64-text', Buffer.from(fe.lorem.sentence(int(6, 14))).toString('base64'), pick([(v: string) => `payload: ${v}`, (v: string) => `data=${v}`]));
    neg('neg:order-number', `${int(1000, 9999)}-${int(1000, 9999)}-${int(10, 99)}`, pick([(v: string) => `Order #${v} shipped`, (v: string) => `invoice ${v}`, (v: string) => `ticket ${v}`]));
    neg('neg:date-time', `${int(2019, 2027)}-${String(int(1, 12)).padStart(2, '0')}-${String(int(1, 28)).padStart(2, '0')} ${String(int(0, 23)).padStart(2, '0')}:${String(int(0, 59)).padStart(2, '0')}:00`, (v) => `released ${v}`);
    neg('neg:masked-key', pick(['sk-XXXXXXXXXXXXXXXXXXXXXXXX', 'ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx', 'YOUR_API_KEY', '<your-token-here>', '${OPENAI_API_KEY}', 'sk_live_****************']), pick([(v: string) => `OPENAI_API_KEY=${v}`, (v: string) => `api_key: "${v}"`]));
    neg('neg:sha256-digest', `sha256:${chars(HEX, 64)}`, (v) => `image digest ${v}`);
    neg('neg:npm-integrity', `sha512-${randomBytesB64(64)}`, (v) => `"integrity": "${v}"`);
    neg('neg:semver', fe.system.semver(), pick([(v: string) => `bump to ${v}`, (v: string) => `node ${v}`]));
    neg('neg:product-names', pick(['Visual Studio Code', 'Pull Request', 'Google Cloud Platform', 'New York Times', 'Open Source Software', 'Continuous Integration', 'Amazon Web Services', 'Main Street Bank']), (v) => `We use ${v} for this.`);
    neg('neg:hex-color-port', pick([`#${chars(HEX, 6)}`, `localhost:${int(1024, 65000)}`, `0x${chars(HEX, 8)}`]), (v) => `set it to ${v}`);
    neg('neg:file-path', `/home/dev/project/src/${pick(['index', 'main', 'util'])}.${pick(['ts', 'py', 'rs'])}:${int(1, 900)}:${int(1, 80)}`, (v) => `error at ${v}`);
    neg('neg:iban-bad-checksum', `DE${int(10, 99)} ${chars(DIG, 4)} ${chars(DIG, 4)} ${chars(DIG, 4)} ${chars(DIG, 4)} ${chars(DIG, 2)}`.replace(/^DE89 3704 0044 0532 0130 00$/, 'DE00 0000 0000 0000 0000 00'), (v) => `ref ${v}`);
    neg('neg:luhn-invalid-number', (() => { const c = luhnComplete('4', 16); return c.slice(0, 15) + String((Number(c[15]) + 1) % 10); })(), (v) => `order id ${v}`);
  }

  // -------------------------------------------------------------------------------- held out
  holdout = true;
  let holdSeed = seed * 7000;
  for (const [loc, defs] of Object.entries(LOCALES)) {
    const f = new Faker({ locale: defs });
    f.seed(holdSeed++);
    for (let i = 0; i < 4; i++) {
      const pl: Placement[] = [allPlacements[(i + 1) % 3]!];
      place('person', `holdout:person:${loc}`, f.person.fullName(), pick([
        (v: string) => `Can you ask ${v} to review the PR?`,
        (v: string) => `Meeting notes, attendees: ${v}, the CTO and me.`,
        (v: string) => `${v} wrote: "the build is broken again"`,
        (v: string) => `According to ${v}, the deadline moved.`,
        (v: string) => `"author": "${v}"`,
        (v: string) => `ping ${v} on Slack when it is done`,
        (v: string) => `Signed, ${v}`,
      ]), pl);
      const addr = loc === 'ja' ? `${f.location.city()}${f.location.streetAddress()}` : `${f.location.streetAddress(rand() < 0.5)}, ${f.location.zipCode()} ${f.location.city()}`;
      place('address', `holdout:address:${loc}`, addr, pick([
        (v: string) => `Our office: ${v}`,
        (v: string) => `The package is waiting at ${v}.`,
        (v: string) => `deliver to ${v} by Monday`,
        (v: string) => `Jane\n${v}\nGermany`,
      ]), pl);
      const dob = f.date.birthdate({ mode: 'age', min: 18, max: 90 }).toISOString().slice(0, 10);
      place('date_of_birth', `holdout:dob:${loc}`, dob, pick([
        (v: string) => `born ${v} in Lyon`,
        (v: string) => `Geburtsdatum: ${v}`,
        (v: string) => `"dob": "${v}"`,
        (v: string) => `date of birth ${v}, nationality unknown`,
      ]), pl);
      place('passport', `holdout:passport:${loc}`, `${chars(UP, 2)}${chars(DIG, 7)}`, pick([
        (v: string) => `passport #${v}`,
        (v: string) => `Passnummer: ${v}`,
        (v: string) => `numéro de passeport ${v}`,
        (v: string) => `Pasaporte ${v}`,
      ]), pl);
      place('phone', `holdout:phone:${loc}`, f.phone.number(), pick([
        (v: string) => `ring ${v} if it breaks`,
        (v: string) => `WhatsApp ${v}`,
        (v: string) => `Telefonnummer ${v}`,
        (v: string) => `${v} (mobile)`,
      ]), pl);
    }
  }
  const holdoutNegatives: Array<[string, string]> = [
    ['holdout:neg:tech-names', 'We deployed Grafana Loki and Prometheus Alertmanager yesterday.'],
    ['holdout:neg:tech-names', 'Run Apache Kafka Streams on the cluster.'],
    ['holdout:neg:tech-names', 'Read the Rust Book chapter 4 before the review.'],
    ['holdout:neg:tech-names', 'Ask Jenkins Pipeline to retry the job.'],
    ['holdout:neg:rooms', 'Meeting Room 4 in Building 2 is booked.'],
    ['holdout:neg:rooms', 'See Section 3 Paragraph 2 of the spec.'],
    ['holdout:neg:batch', 'Batch 2024-11-05 processed 1234567 rows in 12.5 s.'],
    ['holdout:neg:pid', 'pid 48213 exited with 137 after 3600 s'],
    ['holdout:neg:build', 'Windows build 10.0.19041.1288 is installed.'],
    ['holdout:neg:loopback', 'listening on 127.0.0.1:8080 and 0.0.0.0:9090'],
    ['holdout:neg:hash', 'sha1 da39a3ee5e6b4b0d3255bfef95601890afd80709 matches'],
    ['holdout:neg:price', 'Total: 1.234.567,89 EUR incl. 19 % VAT'],
  ];
  for (const [format, sentence] of holdoutNegatives) place('negative', format, sentence, (v) => v, ['plain']);
  return samples;
}
