/**
 * gitleaks' rule set (vendored from gitleaks' default config, see rules.generated.ts) run the way
 * gitleaks runs it: keyword prefilter, regex, secret group, Shannon entropy threshold, global and
 * per-rule allowlists (regexes / stopwords with regexTarget and condition), and the digit
 * requirement of the `generic-*` rules. Go RE2 syntax is translated to JavaScript here.
 */

export interface VendoredAllowlist {
  regexes: string[];
  stopwords: string[];
  regexTarget: string;
  condition: string;
}

export interface VendoredRule {
  id: string;
  regex: string;
  entropy: number;
  keywords: string[];
  secretGroup: number;
  allowlists: VendoredAllowlist[];
}

export interface VendoredGitleaksConfig {
  version: string;
  commit: string;
  allowlist: VendoredAllowlist;
  rules: VendoredRule[];
}

const POSIX_CLASSES: Record<string, string> = {
  alnum: 'a-zA-Z0-9',
  alpha: 'a-zA-Z',
  digit: '0-9',
  lower: 'a-z',
  upper: 'A-Z',
  xdigit: '0-9A-Fa-f',
  space: '\\s',
  word: '\\w',
  punct: '!-\\/:-@\\[-`{-~',
};

/**
 * Translate a Go (RE2) regular expression into JavaScript source + flags. Handles the constructs
 * gitleaks' rules use: a leading `(?i)` (→ flag), `(?i)`/`(?s)` in the middle of a group (→ a
 * modifier group `(?i:…)` up to the end of that group, split at `|`), `\z`/`\A`, and POSIX classes
 * (`[[:alnum:]]`). Modifier groups `(?i:…)`/`(?-i:…)` are JavaScript syntax already (V8 ≥ 12.5).
 */
export function goRegexToJs(go: string): { source: string; flags: string } {
  let flags = '';
  let src = go;
  const lead = /^\(\?([a-z]+)\)/.exec(src);
  if (lead) {
    flags = lead[1]!.replace(/[^ims]/g, '');
    src = src.slice(lead[0].length);
  }
  let out = '';
  // Per open group: how many modifier wraps were opened inside it (closed with the group / at `|`).
  const wraps: Array<string[]> = [[]];
  let inClass = false;
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!;
    if (c === '\\') {
      const n = src[i + 1];
      if (!inClass && n === 'z') out += '$';
      else if (!inClass && n === 'A') out += '^';
      else out += c + (n ?? '');
      i++;
      continue;
    }
    if (inClass) {
      if (c === '[' && src[i + 1] === ':') {
        const end = src.indexOf(':]', i + 2);
        const name = end > 0 ? src.slice(i + 2, end) : '';
        const posix = POSIX_CLASSES[name];
        if (posix !== undefined) {
          out += posix;
          i = end + 1;
          continue;
        }
      }
      if (c === '[') out += '\\[';
      else {
        if (c === ']') inClass = false;
        out += c;
      }
      continue;
    }
    if (c === '[') {
      inClass = true;
      out += c;
      // A `]` or `^]` right after the bracket is a literal in both dialects.
      if (src[i + 1] === '^') {
        out += '^';
        i++;
      }
      if (src[i + 1] === ']') {
        out += '\\]';
        i++;
      }
      continue;
    }
    if (c === '(') {
      const inline = /^\(\?([a-z]*)(?:-([a-z]+))?\)/.exec(src.slice(i));
      if (inline) {
        const on = (inline[1] ?? '').replace(/[^ims]/g, '');
        const off = (inline[2] ?? '').replace(/[^ims]/g, '');
        const mod = `(?${on}${off ? `-${off}` : ''}:`;
        out += mod;
        wraps[wraps.length - 1]!.push(mod);
        i += inline[0].length - 1;
        continue;
      }
      // Go's named groups `(?P<name>…)` label parts of a match for readers; they are never the
      // secret (gitleaks takes the first non-empty group): non-capturing here.
      const named = /^\(\?P?<[A-Za-z_][A-Za-z0-9_]*>/.exec(src.slice(i));
      wraps.push([]);
      if (named) {
        out += '(?:';
        i += named[0].length - 1;
        continue;
      }
      out += c;
      continue;
    }
    if (c === '|') {
      const open = wraps[wraps.length - 1]!;
      out += ')'.repeat(open.length) + '|' + open.join('');
      continue;
    }
    if (c === ')') {
      const open = wraps.pop() ?? [];
      if (wraps.length === 0) wraps.push([]);
      out += ')'.repeat(open.length) + ')';
      continue;
    }
    out += c;
  }
  out += ')'.repeat(wraps[0]!.length);
  return { source: out, flags };
}

export function shannonEntropy(s: string): number {
  if (s.length === 0) return 0;
  const counts = new Map<string, number>();
  for (const ch of s) counts.set(ch, (counts.get(ch) ?? 0) + 1);
  let h = 0;
  for (const n of counts.values()) {
    const p = n / s.length;
    h -= p * Math.log2(p);
  }
  return h;
}

interface CompiledAllowlist {
  regexes: RegExp[];
  stopwords: string[];
  target: 'secret' | 'match' | 'line';
  and: boolean;
}

interface CompiledRule {
  id: string;
  re: RegExp;
  entropy: number;
  keywords: string[];
  /** Ids into the keyword automaton. */
  keywordIds: number[];
  secretGroup: number;
  allowlists: CompiledAllowlist[];
}

export interface GitleaksFinding {
  ruleId: string;
  /** Span of the secret (the secret group, else the whole match) in the scanned text. */
  start: number;
  end: number;
}

function compileAllowlist(a: VendoredAllowlist): CompiledAllowlist {
  return {
    regexes: a.regexes.map((r) => {
      const { source, flags } = goRegexToJs(r);
      return new RegExp(source, flags);
    }),
    stopwords: a.stopwords.map((s) => s.toLowerCase()),
    target: a.regexTarget === 'match' || a.regexTarget === 'line' ? a.regexTarget : 'secret',
    and: a.condition.toUpperCase() === 'AND',
  };
}

function allowed(a: CompiledAllowlist, secret: string, match: string, line: string): boolean {
  const target = a.target === 'match' ? match : a.target === 'line' ? line : secret;
  const checks: boolean[] = [];
  if (a.regexes.length > 0) checks.push(a.regexes.some((r) => r.test(target)));
  if (a.stopwords.length > 0) {
    const lower = secret.toLowerCase();
    checks.push(a.stopwords.some((w) => lower.includes(w)));
  }
  if (checks.length === 0) return false;
  return a.and ? checks.every(Boolean) : checks.some(Boolean);
}

/**
 * Aho–Corasick automaton over the rules' keywords (what gitleaks does too): one pass over the
 * lower-cased text says which keywords occur, so a rule's regex runs only when one of its keywords
 * is present. ~300 `includes()` calls over 32 KB cost ~20 ms; this costs well under 1 ms.
 */
class KeywordAutomaton {
  private readonly next: Array<Map<number, number>> = [new Map()];
  private readonly fail: number[] = [0];
  private readonly outputs: number[][] = [[]];
  readonly keywords: string[];

  constructor(keywords: string[]) {
    this.keywords = keywords;
    keywords.forEach((kw, id) => {
      let state = 0;
      for (let i = 0; i < kw.length; i++) {
        const c = kw.charCodeAt(i);
        let to = this.next[state]!.get(c);
        if (to === undefined) {
          to = this.next.length;
          this.next.push(new Map());
          this.fail.push(0);
          this.outputs.push([]);
          this.next[state]!.set(c, to);
        }
        state = to;
      }
      this.outputs[state]!.push(id);
    });
    const queue: number[] = [];
    for (const to of this.next[0]!.values()) queue.push(to);
    while (queue.length > 0) {
      const s = queue.shift()!;
      for (const [c, to] of this.next[s]!) {
        queue.push(to);
        let f = this.fail[s]!;
        while (f !== 0 && !this.next[f]!.has(c)) f = this.fail[f]!;
        const via = this.next[f]!.get(c);
        this.fail[to] = via !== undefined && via !== to ? via : 0;
        this.outputs[to]!.push(...this.outputs[this.fail[to]!]!);
      }
    }
  }

  /** Ids of the keywords occurring in `lower`. */
  present(lower: string): Uint8Array {
    const seen = new Uint8Array(this.keywords.length);
    let state = 0;
    for (let i = 0; i < lower.length; i++) {
      const c = lower.charCodeAt(i);
      let to = this.next[state]!.get(c);
      while (to === undefined && state !== 0) {
        state = this.fail[state]!;
        to = this.next[state]!.get(c);
      }
      state = to ?? 0;
      for (const id of this.outputs[state]!) seen[id] = 1;
    }
    return seen;
  }
}

export class GitleaksScanner {
  readonly version: string;
  readonly ruleCount: number;
  private readonly rules: CompiledRule[];
  private readonly global: CompiledAllowlist;
  private readonly automaton: KeywordAutomaton;
  /** Rules that failed to translate (none at the pinned version; a test asserts it). */
  readonly skipped: string[] = [];

  constructor(config: VendoredGitleaksConfig, options: { exclude?: ReadonlySet<string> } = {}) {
    this.version = config.version;
    this.global = compileAllowlist(config.allowlist);
    this.rules = [];
    for (const r of config.rules) {
      if (options.exclude?.has(r.id)) continue;
      try {
        const { source, flags } = goRegexToJs(r.regex);
        this.rules.push({
          id: r.id,
          re: new RegExp(source, `${flags}gd`),
          entropy: r.entropy,
          keywords: r.keywords.map((k) => k.toLowerCase()),
          keywordIds: [],
          secretGroup: r.secretGroup,
          allowlists: r.allowlists.map(compileAllowlist),
        });
      } catch {
        this.skipped.push(r.id);
      }
    }
    this.ruleCount = this.rules.length;
    const ids = new Map<string, number>();
    for (const rule of this.rules) {
      for (const k of rule.keywords) {
        if (!ids.has(k)) ids.set(k, ids.size);
        rule.keywordIds.push(ids.get(k)!);
      }
    }
    this.automaton = new KeywordAutomaton([...ids.keys()]);
  }

  scan(text: string): GitleaksFinding[] {
    const present = this.automaton.present(text.toLowerCase());
    const out: GitleaksFinding[] = [];
    for (const rule of this.rules) {
      if (rule.keywordIds.length > 0 && !rule.keywordIds.some((id) => present[id] === 1)) continue;
      rule.re.lastIndex = 0;
      for (const m of text.matchAll(rule.re)) {
        if (m[0].length === 0) continue;
        const indices = m.indices!;
        let group = 0;
        if (rule.secretGroup > 0 && m[rule.secretGroup] !== undefined) group = rule.secretGroup;
        else if (rule.secretGroup === 0) {
          for (let g = 1; g < m.length; g++) {
            if (m[g]) {
              group = g;
              break;
            }
          }
        }
        const [start, end] = indices[group]!;
        const secret = text.slice(start, end);
        if (rule.entropy > 0) {
          if (shannonEntropy(secret) <= rule.entropy) continue;
          if (rule.id.startsWith('generic') && !/\d/.test(secret)) continue;
        }
        const lineStart = text.lastIndexOf('\n', m.index) + 1;
        const lineEndAt = text.indexOf('\n', m.index + m[0].length);
        const line = text.slice(lineStart, lineEndAt < 0 ? text.length : lineEndAt);
        if (allowed(this.global, secret, m[0], line)) continue;
        if (rule.allowlists.some((a) => allowed(a, secret, m[0], line))) continue;
        out.push({ ruleId: rule.id, start, end });
      }
    }
    return out;
  }
}
