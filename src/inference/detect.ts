/**
 * Classification of message text. Results are cached per text by content hash: OpenClaw resends the
 * same large system prompt and history every turn, so only the new message costs anything.
 *
 * Detectors, and where each comes from:
 * - secrets: gitleaks' default rule set (vendored, pinned: detectors/gitleaks/, MIT) run with its
 *   keywords, entropy thresholds and allowlists; secretlint's recommended preset; own rules only for
 *   formats neither has (NVIDIA keys, Azure storage account keys, AWS secret keys with no name nearby);
 * - phone numbers: libphonenumber-js (detectors/phone.ts);
 * - person names, addresses, dates of birth, passports: compromise's lexicon + cue patterns
 *   (detectors/entities.ts);
 * - e-mail, cards (Luhn), IBAN (mod 97), US SSN, IP, MAC, URL credentials, wallets (base58check):
 *   here, following Presidio's entity list;
 * - proprietary markers from the policy.
 * Before detecting, text is normalised (zero-width characters, soft hyphens, NFKC, confusable
 * letters: detectors/normalize.ts) and encoded blobs are decoded and rescanned (detectors/decode.ts);
 * spans always refer to the ORIGINAL text. Documented placeholders (AWS's example keys, example.com
 * addresses, RFC 5737/3849 addresses, version strings) are not reported.
 *
 * Public API: `Classifier` (`classify`, `lookup`, `stats`, `classifyJoined` for a secret split across
 * two texts of one request), `detectPii` (synchronous part, for tests and benches), `Detection`.
 */
import { createHash } from 'node:crypto';
import { createRequire } from 'node:module';
import { isIPv6 } from 'node:net';
import { pathToFileURL } from 'node:url';
import type { EntityKind } from './schema.js';
import { findEncodedBlobs, printableText } from './detectors/decode.js';
import { detectEntities } from './detectors/entities.js';
import { GITLEAKS_CONFIG } from './detectors/gitleaks/rules.generated.js';
import { GitleaksScanner, shannonEntropy } from './detectors/gitleaks/translate.js';
import { mapSpan, normalizeForDetection } from './detectors/normalize.js';
import { detectPhones as detectPhonesWithLibphonenumber } from './detectors/phone.js';

export interface Detection {
  kind: EntityKind;
  start: number;
  end: number;
  value: string;
  /** Which detector fired (secretlint rule id, `luhn`, `marker:pattern`…); never the value. */
  detector: string;
}

export interface Classification {
  detections: Detection[];
  /** gpt-tokenizer (o200k) count of the text. */
  tokens: number;
}

export interface MarkerConfig {
  path_globs: string[];
  repos: string[];
  patterns: string[];
}

export interface ClassifierOptions {
  markers?: MarkerConfig;
  disabled?: EntityKind[];
  /** Max cached texts (LRU). */
  cacheEntries?: number;
}

/**
 * secretlint and gpt-tokenizer are loaded on the first scan, not at import: the policy engine imports
 * this part to validate `inference` sections, and `policy validate` should not pay for them.
 */
interface HeavyDeps {
  lintSource: typeof import('@secretlint/core').lintSource;
  secretlintConfig: { rules: Array<{ id: string; rule: unknown }> };
  countTokens: (text: string) => number;
}
let heavyDeps: Promise<HeavyDeps> | undefined;

/**
 * secretlint's core marks ~60 `performance.mark()`s per scan through its profiler, which is on by
 * default and keeps every mark in the global performance timeline: in a long-running router that is
 * a leak (~18 KB per scan) and doubles the cost of a scan. Switch it off on the very instance core
 * uses (resolved from core's own location, so a nested copy is found too).
 */
async function disableSecretlintProfiler(): Promise<void> {
  try {
    const fromCore = createRequire(createRequire(import.meta.url).resolve('@secretlint/core/package.json'));
    const mod = (await import(pathToFileURL(fromCore.resolve('@secretlint/profiler')).href)) as {
      secretLintProfiler?: { setEnabled(enabled: boolean): void };
    };
    mod.secretLintProfiler?.setEnabled(false);
  } catch {
    // A secretlint without the profiler: nothing to switch off.
  }
}
function loadHeavyDeps(): Promise<HeavyDeps> {
  heavyDeps ??= Promise.all([
    import('@secretlint/core'),
    import('@secretlint/secretlint-rule-preset-recommend'),
    import('gpt-tokenizer'),
    disableSecretlintProfiler(),
  ]).then(([core, preset, tokenizer]) => ({
    lintSource: core.lintSource,
    secretlintConfig: { rules: [{ id: '@secretlint/secretlint-rule-preset-recommend', rule: preset.creator }] },
    countTokens: tokenizer.countTokens,
  }));
  return heavyDeps;
}

/**
 * Key formats that neither gitleaks' rules nor secretlint's preset report (each has a test in
 * detect.test.ts). Everything else comes from those two maintained rule sets.
 */
const EXTRA_SECRET_PATTERNS: Array<[string, RegExp]> = [
  ['nvidia-key', /\bnvapi-[A-Za-z0-9_-]{32,}/g],
  // gitleaks' openai rule wants the `T3BlbkFJ` marker of old keys; project/service keys have none.
  ['openai-key', /\bsk-(?:proj-|svcacct-|admin-)[A-Za-z0-9_-]{32,}/g],
  // Azure storage account keys: 64 random bytes in base64 (88 characters ending in `==`).
  // (Not a Subresource Integrity / npm `integrity` hash: `sha512-<88 base64>`.)
  ['azure-storage-account-key', /(?<![A-Za-z0-9+/]|sha(?:256|384|512)-)[A-Za-z0-9+/]{86}==(?![A-Za-z0-9+/=])/g],
];

let gitleaks: GitleaksScanner | undefined;
/** gitleaks' rules compiled on first use (~100 ms once; not at import, see HeavyDeps). */
function gitleaksScanner(): GitleaksScanner {
  gitleaks ??= new GitleaksScanner(GITLEAKS_CONFIG);
  return gitleaks;
}

function detectGitleaks(text: string, out: Detection[]): void {
  for (const f of gitleaksScanner().scan(text)) {
    out.push({ kind: 'secret', start: f.start, end: f.end, value: text.slice(f.start, f.end), detector: `gitleaks:${f.ruleId}` });
  }
}

const AWS_KEY_ID = /\b(?:AKIA|ASIA|ABIA|ACCA)[A-Z2-7]{16}\b/g;
const B64_40 = /(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/]{40}(?![A-Za-z0-9+/=_-])/g;

/**
 * AWS secret access keys are 40 base64 characters of random bytes and carry no prefix; gitleaks and
 * secretlint find them only next to a variable name. Here: any 40-character base64 token that
 * mixes upper case, lower case and digits, has high entropy and decodes to binary (not text).
 * The detector name says whether an AWS access key id stood within 300 characters.
 */
function detectAwsSecretKeys(text: string, out: Detection[]): void {
  if (text.length < 40) return;
  const ids: number[] = [];
  for (const m of text.matchAll(AWS_KEY_ID)) ids.push(m.index);
  for (const m of text.matchAll(B64_40)) {
    const v = m[0];
    if (!/[A-Z]/.test(v) || !/[a-z]/.test(v) || !/\d/.test(v)) continue;
    if (shannonEntropy(v) < 4.3) continue;
    const nearId = ids.some((i) => Math.abs(i - m.index) < 300);
    // Base64 of text (`payload: SGVsbG8…`) is not key material; nor is a path.
    if (printableText(Buffer.from(v, 'base64').toString('utf8'))) continue;
    if (!nearId && /\/[a-z]+\//.test(v)) continue;
    out.push({ kind: 'secret', start: m.index, end: m.index + 40, value: v, detector: nearId ? 'aws-secret-key:near-key-id' : 'aws-secret-key:shape' });
  }
}

/**
 * Values published as placeholders in vendor documentation: never a live credential. AWS documents
 * `AKIAIOSFODNN7EXAMPLE` / `wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY` (and variants ending in
 * `EXAMPLE`); a secret made of one repeated character or of x's is a mask, not a key.
 */
function isDocumentedPlaceholder(d: Detection): boolean {
  const v = d.value;
  if (d.kind === 'secret') {
    if (/EXAMPLE(?:KEY)?['"]?$/.test(v) || /(?:AKIAIOSFODNN7|wJalrXUtnFEMI\/K7MDENG)/.test(v)) return true;
    const core = v.replace(/^[a-z]{2,8}[_-](?:[a-z]{2,8}[_-])?/i, '');
    if (core.length >= 8 && (/^(.)\1+$/.test(core) || /^[xX*.]+$/.test(core))) return true;
    // gitleaks' generic rule takes any high-entropy value after `token`/`key`: a UUID there is an id.
    if (d.detector.startsWith('gitleaks:generic') && /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i.test(v)) return true;
    if (/(?:your|my)[_-]?(?:api[_-]?)?(?:key|token|secret)|<[^>]+>|\$\{[^}]+\}|\{\{[^}]+\}\}|placeholder|redacted|changeme/i.test(v)) return true;
  }
  return false;
}

// ---------------------------------------------------------------------------------------------
// PII detectors. Each returns candidate spans; validators reject the usual false positives.

const FILE_EXTENSION_TLDS = new Set([
  'png', 'jpg', 'jpeg', 'gif', 'svg', 'webp', 'ico', 'js', 'mjs', 'cjs', 'ts', 'tsx', 'jsx', 'css', 'json',
  'map', 'md', 'txt', 'py', 'rs', 'go', 'java', 'rb', 'sh', 'yaml', 'yml', 'toml', 'lock', 'zip', 'gz', 'tar',
]);

/**
 * RFC 2606 / 6761 reserved names: `example.com`, `example.org`, `example.net` (and subdomains), and
 * the `.example`, `.test`, `.invalid`, `.localhost` TLDs. Addresses there are documentation.
 */
function isDocumentationDomain(domain: string): boolean {
  const d = domain.toLowerCase();
  return /(?:^|\.)example\.(?:com|org|net|edu)$/.test(d) || /\.(?:example|test|invalid|localhost)$/.test(d);
}

const EMAIL_LOCAL_RE = /[A-Za-z0-9._%+-]{1,64}$/;
const EMAIL_DOMAIN_RE = /^[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.[A-Za-z]{2,24}\b/;

/**
 * Anchored on each `@` with the local part and the domain bounded (64 / 255 characters, RFC 5321):
 * one regex over the whole text backtracks quadratically on `a.a.a.…@b.b.…` (seconds for 32 KB).
 */
function detectEmails(text: string, out: Detection[]): void {
  for (let at = text.indexOf('@'); at >= 0; at = text.indexOf('@', at + 1)) {
    const local = EMAIL_LOCAL_RE.exec(text.slice(Math.max(0, at - 64), at));
    if (!local) continue;
    const domain = EMAIL_DOMAIN_RE.exec(text.slice(at + 1, at + 256));
    if (!domain) continue;
    const start = at - local[0].length;
    const end = at + 1 + domain[0].length;
    const value = text.slice(start, end);
    const before = text[start - 1];
    // `scheme://user:pw@host` is a URL with credentials, not an email; `git@host:org/repo` is an scp address.
    if (before === ':' || before === '/') continue;
    const after = text[end];
    if (after === ':' && /^:[\w.-]+\//.test(text.slice(end, end + 100))) continue;
    if (value.startsWith('.') || value.includes('..')) continue;
    const tld = value.slice(value.lastIndexOf('.') + 1).toLowerCase();
    if (FILE_EXTENSION_TLDS.has(tld)) continue;
    if (isDocumentationDomain(domain[0])) continue;
    out.push({ kind: 'email', start, end, value: value, detector: 'email' });
  }
}

function digitsOf(s: string): string {
  return s.replace(/\D/g, '');
}

function luhnValid(digits: string): boolean {
  let sum = 0;
  let double = false;
  for (let i = digits.length - 1; i >= 0; i--) {
    let d = digits.charCodeAt(i) - 48;
    if (double) {
      d *= 2;
      if (d > 9) d -= 9;
    }
    sum += d;
    double = !double;
  }
  return sum % 10 === 0;
}

function detectCreditCards(text: string, out: Detection[]): void {
  // (`+49 2611 0568062` is a phone number: a card number never follows a `+`.)
  const re = /(?<![\w+-]|\+ )(?:\d[ -]?){11,18}\d(?![\w-])/g;
  for (const m of text.matchAll(re)) {
    const digits = digitsOf(m[0]);
    if (digits.length < 12 || digits.length > 19) continue;
    // Issuer prefixes: Visa, Mastercard, Amex, Discover, JCB, Diners, UnionPay, Maestro (12–19 digits).
    const maestro = /^(?:50[0-9]|5[6-8]|6[0-9])/.test(digits);
    if (!maestro && !/^(?:4|5[1-5]|2[2-7]|3[47]|6011|65|64[4-9]|35|30[0-5]|36|38|62)/.test(digits)) continue;
    // Only Maestro issues 12-digit numbers.
    if (digits.length === 12 && !maestro) continue;
    if (/^(\d)\1+$/.test(digits)) continue;
    // The digits of an IBAN (`DE89 3704 …`) are not a card number.
    if (/[A-Z]{2}\d{2} ?$/.test(text.slice(Math.max(0, m.index - 5), m.index))) continue;
    if (!luhnValid(digits)) continue;
    out.push({ kind: 'credit_card', start: m.index, end: m.index + m[0].length, value: m[0], detector: 'luhn' });
  }
}

const IBAN_LENGTHS: Record<string, number> = {
  AD: 24, AE: 23, AL: 28, AT: 20, AZ: 28, BA: 20, BE: 16, BG: 22, BH: 22, BR: 29, CH: 21, CR: 22, CY: 28,
  CZ: 24, DE: 22, DK: 18, DO: 28, EE: 20, EG: 29, ES: 24, FI: 18, FO: 18, FR: 27, GB: 22, GE: 22, GI: 23,
  GL: 18, GR: 27, GT: 28, HR: 21, HU: 28, IE: 22, IL: 23, IS: 26, IT: 27, JO: 30, KW: 30, KZ: 20, LB: 28,
  LI: 21, LT: 20, LU: 20, LV: 21, MC: 27, MD: 24, ME: 22, MK: 19, MR: 27, MT: 31, MU: 30, NL: 18, NO: 15,
  PK: 24, PL: 28, PS: 29, PT: 25, QA: 29, RO: 24, RS: 22, SA: 24, SE: 24, SI: 19, SK: 24, SM: 27, TN: 24,
  TR: 26, UA: 29, VG: 24, XK: 20,
};

function ibanValid(compact: string): boolean {
  const expected = IBAN_LENGTHS[compact.slice(0, 2)];
  if (expected === undefined || compact.length !== expected) return false;
  const rearranged = compact.slice(4) + compact.slice(0, 4);
  let remainder = 0;
  for (const ch of rearranged) {
    const code = ch.charCodeAt(0);
    const chunk = code >= 65 ? String(code - 55) : ch;
    for (const d of chunk) remainder = (remainder * 10 + (d.charCodeAt(0) - 48)) % 97;
  }
  return remainder === 1;
}

function detectIbans(text: string, out: Detection[]): void {
  const re = /\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,3})?\b/g;
  for (const m of text.matchAll(re)) {
    let candidate = m[0];
    // A greedy match can swallow a following word; shrink until the checksum holds.
    while (candidate.length >= 15) {
      const compact = candidate.replace(/ /g, '');
      if (ibanValid(compact)) {
        out.push({ kind: 'iban', start: m.index, end: m.index + candidate.length, value: candidate, detector: 'mod97' });
        break;
      }
      const cut = candidate.lastIndexOf(' ');
      if (cut < 0) break;
      candidate = candidate.slice(0, cut);
    }
  }
}

function detectSsns(text: string, out: Detection[]): void {
  const re = /(?<![\d-])(\d{3})([- ])(\d{2})\2(\d{4})(?![\d-])/g;
  for (const m of text.matchAll(re)) {
    const [, area, , group, serial] = m;
    if (area === '000' || area === '666' || area!.startsWith('9') || group === '00' || serial === '0000') continue;
    out.push({ kind: 'us_ssn', start: m.index, end: m.index + m[0].length, value: m[0], detector: 'ssn' });
  }
}

function detectPhones(text: string, out: Detection[]): void {
  for (const p of detectPhonesWithLibphonenumber(text)) {
    out.push({ kind: 'phone', start: p.start, end: p.end, value: text.slice(p.start, p.end), detector: p.detector });
  }
}

/**
 * Addresses that identify no one: RFC 5737 (192.0.2.0/24, 198.51.100.0/24, 203.0.113.0/24) and
 * RFC 3849 (2001:db8::/32) documentation ranges, loopback (127.0.0.0/8, ::1), the unspecified
 * address (0.0.0.0, ::) and broadcast — `localhost:8080`-style text is everywhere in coding sessions.
 */
function isDocumentationIp(ip: string): boolean {
  return (
    /^(?:192\.0\.2|198\.51\.100|203\.0\.113)\./.test(ip) ||
    /^2001:0?db8(?::|$)/i.test(ip) ||
    /^127\./.test(ip) ||
    ip === '0.0.0.0' ||
    ip === '255.255.255.255' ||
    /^(?:0{0,4}:){2,7}0{0,3}1?$/.test(ip)
  );
}

/** `v1.2.3.4`, `version 10.0.19041.1`, `Chrome/120.0.6099.109`, `1.2.3.4-beta`: a version, not a host. */
function looksLikeVersion(text: string, start: number, end: number): boolean {
  const before = text.slice(Math.max(0, start - 24), start);
  if (/(?:\bv|\bver\.?|version|release|build|firmware|\brev\.?|update|patch|kernel|\bnode|python|chrome|firefox|safari|edge|android|ios|windows|macos|[a-z]\/|==|~=?|\^|>=?|<=?)["'\\ \t:=]*$/i.test(before)) return true;
  if (/^[-+][0-9A-Za-z]/.test(text.slice(end, end + 2))) return true;
  return false;
}

function detectIps(text: string, out: Detection[]): void {
  // A full stop after the address ends the sentence; `1.2.3.4.5` is no address.
  const v4 = /(?<![\d.]|\d\.)(?:(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)\.){3}(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(?!\d|\.\d)/g;
  for (const m of text.matchAll(v4)) {
    if (isDocumentationIp(m[0]) || looksLikeVersion(text, m.index, m.index + m[0].length)) continue;
    out.push({ kind: 'ip_address', start: m.index, end: m.index + m[0].length, value: m[0], detector: 'ipv4' });
  }
  const v6 = /(?<![\w:.])(?:[0-9A-Fa-f]{0,4}:){2,7}[0-9A-Fa-f]{0,4}(?![\w:])/g;
  for (const m of text.matchAll(v6)) {
    const groups = m[0].split(':').filter((g) => g.length > 0);
    // `std::vec`, `a::b` and clock times are not addresses: need 3+ hex groups and a valid address.
    if (groups.length < 3 || !isIPv6(m[0]) || isDocumentationIp(m[0])) continue;
    out.push({ kind: 'ip_address', start: m.index, end: m.index + m[0].length, value: m[0], detector: 'ipv6' });
  }
}

function detectMacs(text: string, out: Detection[]): void {
  const re = /(?<![\w:-])[0-9A-Fa-f]{2}([:-])(?:[0-9A-Fa-f]{2}\1){4}[0-9A-Fa-f]{2}(?![\w:-])/g;
  for (const m of text.matchAll(re)) {
    out.push({ kind: 'mac_address', start: m.index, end: m.index + m[0].length, value: m[0], detector: 'mac' });
  }
}

function detectUrlCredentials(text: string, out: Detection[]): void {
  const re = /\b[a-zA-Z][a-zA-Z0-9+.-]{1,20}:\/\/[^\s/:@"'<>]+:[^\s/@"'<>]+@[^\s/"'<>]+/g;
  for (const m of text.matchAll(re)) {
    out.push({ kind: 'url_credentials', start: m.index, end: m.index + m[0].length, value: m[0], detector: 'url' });
  }
}

const BASE58 = '123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz';

function base58CheckValid(s: string): boolean {
  let n = 0n;
  for (const ch of s) {
    const v = BASE58.indexOf(ch);
    if (v < 0) return false;
    n = n * 58n + BigInt(v);
  }
  let hex = n.toString(16);
  if (hex.length % 2) hex = '0' + hex;
  let leading = 0;
  while (s[leading] === '1') leading++;
  const bytes = Buffer.concat([Buffer.alloc(leading), Buffer.from(hex, 'hex')]);
  if (bytes.length !== 25) return false;
  const payload = bytes.subarray(0, 21);
  const check = createHash('sha256').update(createHash('sha256').update(payload).digest()).digest();
  return check.subarray(0, 4).equals(bytes.subarray(21));
}

function detectWallets(text: string, out: Detection[]): void {
  for (const m of text.matchAll(/(?<![\w])[13][1-9A-HJ-NP-Za-km-z]{25,34}(?![\w])/g)) {
    if (base58CheckValid(m[0])) {
      out.push({ kind: 'crypto_wallet', start: m.index, end: m.index + m[0].length, value: m[0], detector: 'btc-base58' });
    }
  }
  for (const m of text.matchAll(/(?<![\w])bc1[ac-hj-np-z02-9]{11,71}(?![\w])/g)) {
    out.push({ kind: 'crypto_wallet', start: m.index, end: m.index + m[0].length, value: m[0], detector: 'btc-bech32' });
  }
  for (const m of text.matchAll(/(?<![\w])0x[0-9a-fA-F]{40}(?![\w])/g)) {
    out.push({ kind: 'crypto_wallet', start: m.index, end: m.index + m[0].length, value: m[0], detector: 'eth' });
  }
}

function globToRegExp(glob: string, segmentAware: boolean): RegExp {
  let out = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        out += '.*';
        i++;
      } else out += segmentAware ? '[^/\\s]*' : '\\S*';
    } else if (c === '?') out += segmentAware ? '[^/\\s]' : '\\S';
    else out += c.replace(/[.+^${}()|[\]\\]/g, '\\$&');
  }
  return new RegExp(`^${out}$`);
}

interface CompiledMarkers {
  paths: Array<{ glob: string; re: RegExp }>;
  repos: Array<{ name: string; re: RegExp }>;
  patterns: Array<{ source: string; re: RegExp }>;
}

function compileMarkers(markers: MarkerConfig | undefined): CompiledMarkers {
  return {
    paths: (markers?.path_globs ?? []).map((glob) => ({ glob, re: globToRegExp(glob, true) })),
    repos: (markers?.repos ?? []).map((name) => ({ name, re: globToRegExp(name, true) })),
    patterns: (markers?.patterns ?? []).map((source) => ({ source, re: new RegExp(source, 'gu') })),
  };
}

function detectMarkers(text: string, markers: CompiledMarkers, out: Detection[]): void {
  if (markers.paths.length > 0) {
    for (const m of text.matchAll(/(?:~|\.{1,2})?\/[^\s"'`<>()[\]{},;]+/g)) {
      const path = m[0].replace(/[.:]+$/, '');
      const hit = markers.paths.find((p) => p.re.test(path));
      if (hit) out.push({ kind: 'proprietary', start: m.index, end: m.index + path.length, value: path, detector: 'marker:path' });
    }
  }
  if (markers.repos.length > 0) {
    for (const m of text.matchAll(/[A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+/g)) {
      const name = m[0].replace(/\.git$/, '').replace(/\.+$/, '');
      if (markers.repos.some((r) => r.re.test(name))) {
        out.push({ kind: 'proprietary', start: m.index, end: m.index + name.length, value: name, detector: 'marker:repo' });
      }
    }
  }
  for (const p of markers.patterns) {
    p.re.lastIndex = 0;
    for (const m of text.matchAll(p.re)) {
      if (m[0].length === 0) continue;
      out.push({ kind: 'proprietary', start: m.index, end: m.index + m[0].length, value: m[0], detector: 'marker:pattern' });
    }
  }
}

/** Secrets first, then URLs with credentials, then the rest: on overlap the earlier kind wins. */
const PRIORITY: Record<EntityKind, number> = {
  secret: 0,
  url_credentials: 1,
  proprietary: 2,
  credit_card: 3,
  iban: 4,
  us_ssn: 5,
  email: 6,
  crypto_wallet: 7,
  mac_address: 8,
  passport: 9,
  ip_address: 10,
  phone: 11,
  date_of_birth: 12,
  address: 13,
  person: 14,
};

function resolveOverlaps(all: Detection[]): Detection[] {
  const sorted = [...all].sort(
    (a, b) => PRIORITY[a.kind] - PRIORITY[b.kind] || b.end - b.start - (a.end - a.start) || a.start - b.start,
  );
  const kept: Detection[] = [];
  for (const d of sorted) {
    if (kept.some((k) => d.start < k.end && k.start < d.end)) continue;
    kept.push(d);
  }
  return kept.sort((a, b) => a.start - b.start);
}

/** Synchronous part of the scan (everything except secretlint). Exported for tests and benches. */
export function detectPii(text: string, markers?: MarkerConfig, disabled: EntityKind[] = []): Detection[] {
  return resolveOverlaps(detectSyncNormalized(text, compileMarkers(markers), new Set(disabled)));
}

/** Depth of decoding: a blob inside a decoded blob is decoded once more, no further. */
const MAX_DECODE_DEPTH = 2;

function runSyncDetectors(text: string, markers: CompiledMarkers, disabled: Set<EntityKind>): Detection[] {
  const out: Detection[] = [];
  if (!disabled.has('secret')) {
    for (const [name, re] of EXTRA_SECRET_PATTERNS) {
      for (const m of text.matchAll(re)) {
        out.push({ kind: 'secret', start: m.index, end: m.index + m[0].length, value: m[0], detector: name });
      }
    }
    detectGitleaks(text, out);
    detectAwsSecretKeys(text, out);
  }
  // Cheap gates keep the common case (prose/code without any candidate character) fast.
  if (text.includes('@')) detectEmails(text, out);
  if (/\d/.test(text)) {
    detectCreditCards(text, out);
    detectIbans(text, out);
    detectSsns(text, out);
    if (!disabled.has('phone')) detectPhones(text, out);
    detectIps(text, out);
  }
  if (text.includes(':') || text.includes('-')) detectMacs(text, out);
  if (text.includes('://')) detectUrlCredentials(text, out);
  detectWallets(text, out);
  detectMarkers(text, markers, out);
  for (const e of detectEntities(text, {
    person: !disabled.has('person'),
    address: !disabled.has('address'),
    date_of_birth: !disabled.has('date_of_birth'),
    passport: !disabled.has('passport'),
  })) {
    out.push({ kind: e.kind, start: e.start, end: e.end, value: text.slice(e.start, e.end), detector: e.detector });
  }
  return out.filter((d) => !disabled.has(d.kind) && !isDocumentedPlaceholder(d));
}

/**
 * The synchronous detectors over the normalised text, spans mapped back to `original`, plus what
 * the decoded blobs hold (each such detection spans its whole blob).
 */
function detectSyncNormalized(original: string, markers: CompiledMarkers, disabled: Set<EntityKind>, depth = 0): Detection[] {
  const n = normalizeForDetection(original);
  const found = runSyncDetectors(n.text, markers, disabled);
  const out: Detection[] = n.map === null ? found : found.map((d) => remap(d, n, original));
  if (depth < MAX_DECODE_DEPTH) {
    for (const blob of findEncodedBlobs(n.text)) {
      const inner = detectSyncNormalized(blob.decoded, markers, disabled, depth + 1);
      if (inner.length === 0) continue;
      const [start, end] = n.map === null ? [blob.start, blob.end] : mapSpan(n, blob.start, blob.end, original.length);
      // One detection per kind found inside the blob; the blob is the span.
      for (const kind of new Set(inner.map((d) => d.kind))) {
        const first = inner.find((d) => d.kind === kind)!;
        out.push({ kind, start, end, value: original.slice(start, end), detector: `${blob.encoding}:${first.detector}` });
      }
    }
  }
  return out;
}

function remap(d: Detection, n: ReturnType<typeof normalizeForDetection>, original: string): Detection {
  const [start, end] = mapSpan(n, d.start, d.end, original.length);
  return { ...d, start, end, value: original.slice(start, end) };
}

async function detectSecretsWithSecretlint(text: string, deps: HeavyDeps): Promise<Detection[]> {
  const result = await deps.lintSource({
    source: { content: text, filePath: '/inference/message.txt', contentType: 'text' },
    options: { config: deps.secretlintConfig as Parameters<HeavyDeps['lintSource']>[0]['options']['config'], noPhysicFilePath: true },
  });
  return result.messages
    .filter((m) => m.range[1] > m.range[0])
    .map((m) => {
      let [start, end] = m.range;
      // Some rules report the start of the match with the length of the secret: locate the secret
      // itself (the rule's data carries it) so a redaction covers all of it.
      const data = (m as { data?: Record<string, unknown> }).data ?? {};
      for (const value of Object.values(data)) {
        if (typeof value !== 'string' || value.length < 8) continue;
        const at = text.indexOf(value, start);
        if (at >= 0 && at <= end + 512) {
          start = Math.min(start, at);
          end = Math.max(end, at + value.length);
        }
      }
      return { kind: 'secret' as const, start, end, value: text.slice(start, end), detector: m.ruleId };
    })
    .filter((d) => !isDocumentedPlaceholder(d));
}

/** secretlint over the normalised text, spans mapped back. */
async function secretlintNormalized(original: string, deps: HeavyDeps): Promise<Detection[]> {
  const n = normalizeForDetection(original);
  const found = await detectSecretsWithSecretlint(n.text, deps);
  return n.map === null ? found : found.map((d) => remap(d, n, original));
}

/** One piece of a detection found by `classifyJoined`: a span of one of the texts passed. */
export interface JoinedPart {
  textIndex: number;
  start: number;
  end: number;
}

/** A detection that crosses the boundary between consecutive texts of `classifyJoined`. */
export interface JoinedDetection {
  kind: EntityKind;
  detector: string;
  /** The whole value, as the concatenation of the parts. */
  value: string;
  /** In order; two parts (the end of `texts[i]`, the start of `texts[i+1]`), each to be redacted. */
  parts: JoinedPart[];
}

/**
 * How much of each side of a boundary `classifyJoined` scans: enough for a PEM private key
 * (~3.3 KB for RSA 4096) or any token; longer values do not get split by accident.
 */
const JOIN_WINDOW = 4096;
/**
 * gpt-tokenizer's BPE is quadratic in the length of one pre-token: a 32 KB base64 blob (a binary file
 * read by a tool) costs it 1–2 s, blocking the router. Runs of 1,024+ non-space characters are counted
 * in 256-character pieces: at most one token more per piece than an exact count (budgets stay
 * conservative), and linear time.
 */
function countTokensBounded(text: string, count: (t: string) => number): number {
  if (!/\S{1024}/.test(text)) return count(text);
  let total = 0;
  let rest = '';
  let last = 0;
  for (const m of text.matchAll(/\S{1024,}/g)) {
    rest += text.slice(last, m.index);
    for (let i = 0; i < m[0].length; i += 256) total += count(m[0].slice(i, i + 256));
    last = m.index + m[0].length;
  }
  rest += text.slice(last);
  return total + (rest.length > 0 ? count(rest) : 0);
}

export function contentHash(text: string): string {
  return createHash('sha256').update(text).digest('base64url');
}

interface CacheEntry {
  pending: Promise<Classification>;
  /** Set once the scan finished. */
  value: Classification | undefined;
}

const EMPTY_CLASSIFICATION: Classification = Object.freeze({ detections: [], tokens: 0 }) as Classification;

export interface ClassifierStats {
  hits: number;
  misses: number;
  entries: number;
}

export class Classifier {
  private readonly markers: CompiledMarkers;
  private readonly disabled: Set<EntityKind>;
  private readonly maxEntries: number;
  private readonly cache = new Map<string, CacheEntry>();
  private hits = 0;
  private misses = 0;

  constructor(options: ClassifierOptions = {}) {
    this.markers = compileMarkers(options.markers);
    this.disabled = new Set(options.disabled ?? []);
    this.maxEntries = options.cacheEntries ?? 4096;
  }

  /** Classify one text (cached by sha256 of the text; concurrent identical calls share one scan). */
  classify(text: string): Promise<Classification> {
    const r = this.lookup(text);
    return r instanceof Promise ? r : Promise.resolve(r);
  }

  /**
   * Like classify, but a text whose scan has finished is answered synchronously: the warm path of a
   * request (system prompt and history unchanged) then costs no promise round-trips at all.
   */
  lookup(text: string): Classification | Promise<Classification> {
    if (text.length === 0) return EMPTY_CLASSIFICATION;
    // Short texts key the map directly (V8 hashes them fast and compares exactly); long ones by sha256,
    // because V8 does not hash the content of very long strings.
    const key = text.length <= 4096 ? text : contentHash(text);
    const cached = this.cache.get(key);
    if (cached) {
      this.hits++;
      // Refresh LRU position.
      this.cache.delete(key);
      this.cache.set(key, cached);
      return cached.value ?? cached.pending;
    }
    this.misses++;
    const entry: CacheEntry = { pending: this.scan(text), value: undefined };
    entry.pending.then(
      (value) => {
        entry.value = value;
      },
      () => this.cache.delete(key),
    );
    this.cache.set(key, entry);
    if (this.cache.size > this.maxEntries) {
      const oldest = this.cache.keys().next().value;
      if (oldest !== undefined) this.cache.delete(oldest);
    }
    return entry.pending;
  }

  stats(): ClassifierStats {
    return { hits: this.hits, misses: this.misses, entries: this.cache.size };
  }

  /**
   * Detections that a per-text scan cannot see because they are split across two consecutive texts
   * of one request (`texts` in request order: message contents, tool results…). Each boundary is
   * scanned as the last JOIN_WINDOW characters of `texts[i]` joined to the first JOIN_WINDOW of
   * `texts[i+1]`, through the same cache as `classify` (so an unchanged history costs nothing the
   * next turn); only detections that cross the boundary are returned — those inside one text are
   * what `classify(texts[i])` reports. Redact each part in its own text.
   */
  async classifyJoined(texts: readonly string[]): Promise<JoinedDetection[]> {
    const out: JoinedDetection[] = [];
    for (let i = 0; i + 1 < texts.length; i++) {
      const left = texts[i]!;
      const right = texts[i + 1]!;
      if (left.length === 0 || right.length === 0) continue;
      const leftStart = Math.max(0, left.length - JOIN_WINDOW);
      const tail = left.slice(leftStart);
      const head = right.slice(0, JOIN_WINDOW);
      const r = this.lookup(tail + head);
      const { detections } = r instanceof Promise ? await r : r;
      for (const d of detections) {
        if (!(d.start < tail.length && d.end > tail.length)) continue;
        out.push({
          kind: d.kind,
          detector: d.detector,
          value: d.value,
          parts: [
            { textIndex: i, start: leftStart + d.start, end: left.length },
            { textIndex: i + 1, start: 0, end: d.end - tail.length },
          ],
        });
      }
    }
    return out;
  }

  private async scan(text: string): Promise<Classification> {
    const deps = await loadHeavyDeps();
    const found = detectSyncNormalized(text, this.markers, this.disabled);
    if (!this.disabled.has('secret')) found.push(...(await secretlintNormalized(text, deps)));
    return { detections: resolveOverlaps(found), tokens: countTokensBounded(text, deps.countTokens) };
  }
}
