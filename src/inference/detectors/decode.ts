/**
 * Encoded blobs (base64 / base64url, hex, URL-encoding) above a length threshold are decoded and the
 * decoded text is scanned again. A detection inside a decoded blob cannot be mapped to a span of the
 * original, so the whole encoded blob becomes the span (redaction replaces the blob).
 *
 * Only blobs that decode to text are rescanned (≥ 90 % printable UTF-8): random key material (an AWS
 * secret key is base64 of random bytes) decodes to binary and is left to the secret detectors.
 */

export interface EncodedBlob {
  start: number;
  end: number;
  encoding: 'base64' | 'hex' | 'url';
  decoded: string;
}

/** Shortest blob decoded: 24 base64 characters (18 bytes), 32 hex digits, 3 %XX escapes. */
/** Maximal runs of base64 / base64url characters (linear: each run is consumed once). */
const B64_RUN_RE = /[A-Za-z0-9+/_=-]+/g;
const BASE64_RE = /^(?:[A-Za-z0-9+/]{24,}={0,2}|[A-Za-z0-9_-]{24,}={0,2})$/;
const HEX_RUN_RE = /[0-9A-Fa-f]+/g;
const URL_RE = /(?:[^\s%"'<>]*%[0-9A-Fa-f]{2}){3,}[^\s%"'<>]*/g;

/** Upper bound of decoded bytes per text, so a huge blob cannot make a scan slow. */
const MAX_DECODED = 256 * 1024;

export function printableText(s: string): boolean {
  if (s.length === 0) return false;
  let bad = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c === 0xfffd || (c < 0x20 && c !== 9 && c !== 10 && c !== 13) || c === 0x7f) bad++;
  }
  return bad <= s.length * 0.1;
}

function looksLikeWord(s: string): boolean {
  // An identifier or path in camelCase/words (`VeryLongFunctionNameForTesting`) is not base64:
  // real base64 of 18+ bytes almost always mixes digits or +/ with both cases.
  return !/[0-9+/_-]/.test(s) || !/[a-z]/.test(s) || !/[A-Z]/.test(s);
}

export function findEncodedBlobs(text: string): EncodedBlob[] {
  const out: EncodedBlob[] = [];
  let budget = MAX_DECODED;
  if (text.length >= 24) {
    for (const m of text.matchAll(B64_RUN_RE)) {
      if (budget <= 0) break;
      if (m[0].length < 24 || !BASE64_RE.test(m[0])) continue;
      const raw = m[0];
      const body = raw.replace(/=+$/, '');
      if (/^[0-9A-Fa-f]+$/.test(body)) continue; // hex: below
      if (looksLikeWord(body) && !raw.endsWith('=')) continue;
      const decoded = Buffer.from(body.replace(/-/g, '+').replace(/_/g, '/'), 'base64').toString('utf8');
      budget -= decoded.length;
      if (printableText(decoded)) out.push({ start: m.index, end: m.index + raw.length, encoding: 'base64', decoded });
    }
    for (const m of text.matchAll(HEX_RUN_RE)) {
      if (budget <= 0) break;
      if (m[0].length < 32 || m[0].length % 2 === 1) continue;
      const decoded = Buffer.from(m[0], 'hex').toString('utf8');
      budget -= decoded.length;
      if (printableText(decoded)) out.push({ start: m.index, end: m.index + m[0].length, encoding: 'hex', decoded });
    }
  }
  if (text.includes('%')) {
    for (const m of text.matchAll(URL_RE)) {
      let decoded: string;
      try {
        decoded = decodeURIComponent(m[0].replace(/\+/g, ' '));
      } catch {
        continue;
      }
      if (decoded !== m[0]) out.push({ start: m.index, end: m.index + m[0].length, encoding: 'url', decoded });
    }
  }
  return out;
}
