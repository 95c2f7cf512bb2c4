/**
 * Phone numbers: candidates found by a cheap regex (digit runs with phone punctuation), each one
 * checked with libphonenumber-js (Google's libphonenumber metadata, `max` set: real number plans per
 * country): international numbers (`+49 151 …`, `0049 …`) against their own country, national ones
 * (`(0151) 496 0202`, `090-4889-2887`, `873.878.2659x6089`) against a list of countries tried in
 * turn. libphonenumber's own `findNumbers` needs one default country per text and costs ~10x more on
 * a 32 KB prompt; its parser on short candidates gives the same answer for the numbers it accepts.
 */
import { createRequire } from 'node:module';

type CountryCode = import('libphonenumber-js').CountryCode;
interface PhoneLib {
  parsePhoneNumberFromString(text: string, country?: CountryCode): { isValid(): boolean; isPossible(): boolean; country?: string } | undefined;
}
let lib: PhoneLib | undefined;
function phoneLib(): PhoneLib {
  // Loaded synchronously on first use (the policy engine imports this part without scanning).
  lib ??= createRequire(import.meta.url)('libphonenumber-js/max') as PhoneLib;
  return lib;
}

/** Countries tried for a number written without a country code (order: most used first). */
const NATIONAL_COUNTRIES: CountryCode[] = [
  'US', 'GB', 'DE', 'FR', 'ES', 'IT', 'NL', 'PL', 'SE', 'BR', 'JP', 'IN', 'AU', 'MX', 'CN', 'KR', 'RU', 'CH', 'AT',
  'BE', 'PT', 'IE', 'DK', 'NO', 'FI', 'CZ', 'TR', 'ZA', 'AR', 'CO', 'UA', 'RO', 'GR', 'HU', 'NZ', 'SG', 'IL', 'VN', 'ID',
];

const CANDIDATE_RE =
  /(?<![\w+/.,:-])(?:\+|00)?(?:\(\d{1,5}\)|\d)(?:[ .\-/]{0,2}(?:\(\d{1,5}\)|\d)){5,17}(?:[ ]{0,2}(?:x|ext\.?|extension|#|доб\.?)[ ]{0,2}\d{1,6})?(?![\w-]|[.,:]\d)/gi;

const CUE_BEFORE = /(?:phone|tel|telefon|téléphone|teléfono|telefono|telefone|telefoon|mobile?|mobil|handy|cell|call|fax|whatsapp|sms|contact|reach|number|nummer|numéro|número|numero|numer|nummer|rufnummer|portable|celular|móvil|cellulare|komórka|電話|携帯|连系|電話番号|номер|тел)[^\n\d]{0,20}$/i;
const NOT_A_PHONE_BEFORE =
  /\b(?:order|invoice|inv|ref|reference|ticket|case|build|version|ver|sku|tracking|serial|id|account|acct|po|isbn|issue|pr|commit|job|run|txn|transaction|item|part|batch|lot|seq|port|pid|uid|gid|offset|size|bytes|timestamp|ts|epoch|nr|no)\b[^\n\d]{0,12}$/i;

export interface PhoneMatch {
  start: number;
  end: number;
  detector: string;
}

function digitCount(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c >= 48 && c <= 57) n++;
  }
  return n;
}

export function detectPhones(text: string): PhoneMatch[] {
  const out: PhoneMatch[] = [];
  for (const m of text.matchAll(CANDIDATE_RE)) {
    let raw = m[0];
    // Trailing separators are not part of the number.
    raw = raw.replace(/[ .\-/]+$/, '');
    const digits = digitCount(raw.replace(/(?:x|ext\.?|extension|#|доб\.?)\s*\d+$/i, ''));
    if (digits < 7 || digits > 15) continue;
    // Dates, times and dotted versions use the same separators.
    if (/^\d{4}[-./]\d{1,2}[-./]\d{1,2}\b/.test(raw) || /^\d{1,2}[-./]\d{1,2}[-./]\d{2,4}$/.test(raw)) continue;
    if (/^\d{1,3}(?:\.\d{1,3}){3}$/.test(raw)) continue;
    const before = text.slice(Math.max(0, m.index - 40), m.index);
    if (NOT_A_PHONE_BEFORE.test(before)) continue;
    const cue = CUE_BEFORE.test(before);
    // Postal codes: US ZIP+4, Brazilian CEP, Polish, Japanese (`94561-7141`, `90318-806`, `96-569`, `288-9049`).
    if (!cue && /^(?:\d{5}-\d{3,4}|\d{2}-\d{3}|\d{3}-\d{4})$/.test(raw)) continue;
    const international = raw.startsWith('+') || raw.startsWith('00');
    const separators = (raw.match(/[ .\-/()]/g) ?? []).length;
    // A bare run of digits is a phone number only with a cue or a country code.
    if (!international && separators === 0 && !cue) continue;
    const lib = phoneLib();
    const cleaned = raw.startsWith('00') ? `+${raw.slice(2)}` : raw;
    let detector: string | undefined;
    if (cleaned.startsWith('+')) {
      const p = lib.parsePhoneNumberFromString(cleaned);
      if (p?.isValid()) detector = `libphonenumber:${p.country ?? 'intl'}`;
      else if (p?.isPossible()) detector = 'libphonenumber:possible';
    } else {
      for (const country of NATIONAL_COUNTRIES) {
        const p = lib.parsePhoneNumberFromString(cleaned, country);
        if (p?.isValid()) {
          detector = `libphonenumber:${country}`;
          break;
        }
      }
      // Well-formatted national numbers whose digits are outside any number plan (test numbers,
      // new ranges): accept with a cue, or with the shape only phone numbers have — an area code
      // in parentheses or an extension.
      if (!detector && (cue || /^\(\d{2,5}\)/.test(cleaned) || /\d\s*(?:x|ext\.?)\s*\d+$/i.test(cleaned))) {
        if (NATIONAL_COUNTRIES.some((c) => lib.parsePhoneNumberFromString(cleaned, c)?.isPossible())) detector = 'libphonenumber:possible';
      }
    }
    if (detector) out.push({ start: m.index, end: m.index + raw.length, detector });
  }
  return out;
}
