/**
 * Normalisation before detection, with a map back to the original text: detectors run on the
 * normalised text, and every span they report is mapped back so that redaction replaces the
 * ORIGINAL characters (the zero-width space and the fullwidth letters included).
 *
 * - removed: zero-width characters (U+200B–U+200D, U+2060, U+FEFF), soft hyphen (U+00AD), Mongolian
 *   vowel separator, bidi controls (U+202A–U+202E, U+2066–U+2069), variation selectors;
 * - NFKC per character (fullwidth `ｇｈｐ＿` → `ghp_`, ligatures, superscripts);
 * - confusable letters (Cyrillic/Greek look-alikes of Latin letters, from Unicode's confusables
 *   list) are mapped to Latin only inside a word that also has Latin letters or digits — `ghр_…`
 *   with a Cyrillic `р` — so that Russian or Greek prose is left as it is.
 */

const INVISIBLE = /[\u00AD\u034F\u061C\u115F\u1160\u17B4\u17B5\u180B-\u180F\u200B-\u200F\u202A-\u202E\u2060-\u2064\u2066-\u206F\u3164\uFE00-\uFE0F\uFEFF\uFFA0]/;

/** Cyrillic and Greek letters whose glyph is a Latin letter (subset of Unicode confusables.txt). */
const CONFUSABLES: Record<string, string> = {
  а: 'a', в: 'B', е: 'e', к: 'k', м: 'M', н: 'H', о: 'o', р: 'p', с: 'c', т: 'T', у: 'y', х: 'x',
  ѕ: 's', і: 'i', ј: 'j', ԁ: 'd', ԛ: 'q', ԝ: 'w', һ: 'h', ӏ: 'l', ɡ: 'g',
  А: 'A', В: 'B', Е: 'E', К: 'K', М: 'M', Н: 'H', О: 'O', Р: 'P', С: 'C', Т: 'T', У: 'Y', Х: 'X',
  Ѕ: 'S', І: 'I', Ј: 'J', Ԁ: 'D', Ԛ: 'Q', Ԝ: 'W', Һ: 'h', Ӏ: 'I',
  α: 'a', ο: 'o', ρ: 'p', ν: 'v', τ: 't', ι: 'i', κ: 'k', χ: 'x', υ: 'u',
  Α: 'A', Β: 'B', Ε: 'E', Ζ: 'Z', Η: 'H', Ι: 'I', Κ: 'K', Μ: 'M', Ν: 'N', Ο: 'O', Ρ: 'P', Τ: 'T', Υ: 'Y', Χ: 'X',
};
const CONFUSABLE_RE = /[а-яёА-ЯЁѐ-ӿԀ-ԯɡͰ-Ͽ]/;

export interface Normalized {
  /** The text detectors see. */
  text: string;
  /**
   * `map[i]` = index in the original of the character at `i` in `text` (UTF-16 units), with
   * `map[text.length]` = original length. Null when the text needed no change (identity).
   */
  map: Int32Array | null;
}

// eslint-disable-next-line no-control-regex
const ASCII_ONLY = /^[\x00-\x7F]*$/;

export function normalizeForDetection(original: string): Normalized {
  if (ASCII_ONLY.test(original)) return { text: original, map: null };
  let text = '';
  const map: number[] = [];
  let changed = false;
  for (let i = 0; i < original.length; ) {
    const cp = original.codePointAt(i)!;
    const ch = String.fromCodePoint(cp);
    const width = ch.length;
    if (INVISIBLE.test(ch)) {
      changed = true;
      i += width;
      continue;
    }
    let repl = cp < 0x80 ? ch : ch.normalize('NFKC');
    if (CONFUSABLE_RE.test(ch) && CONFUSABLES[ch] !== undefined && inLatinWord(original, i, width)) repl = CONFUSABLES[ch]!;
    if (repl !== ch) changed = true;
    for (let k = 0; k < repl.length; k++) map.push(i);
    text += repl;
    i += width;
  }
  if (!changed) return { text: original, map: null };
  map.push(original.length);
  return { text, map: Int32Array.from(map) };
}

/** Is the character at i part of a word that also holds ASCII letters or digits? */
function inLatinWord(s: string, i: number, width: number): boolean {
  const word = /[\p{L}\p{N}_-]/u;
  for (let j = i - 1; j >= 0 && j >= i - 64 && word.test(s[j]!); j--) if (/[A-Za-z0-9_]/.test(s[j]!)) return true;
  for (let j = i + width; j < s.length && j < i + 64 && word.test(s[j]!); j++) if (/[A-Za-z0-9_]/.test(s[j]!)) return true;
  return false;
}

/** Map a span of the normalised text back to the original. */
export function mapSpan(n: Normalized, start: number, end: number, originalLength: number): [number, number] {
  if (n.map === null) return [start, end];
  const s = n.map[start] ?? originalLength;
  // The end is just after the original character that produced the last normalised one.
  const lastSrc = end > start ? n.map[end - 1]! : s;
  let e = lastSrc;
  // Advance past that original character (it may be 2 UTF-16 units, or expand to several).
  let k = end;
  while (k < n.map.length - 1 && n.map[k] === lastSrc) k++;
  e = n.map[k] ?? originalLength;
  if (end === start) e = s;
  return [s, Math.max(s, e)];
}
