/**
 * Reversible redaction for cloud routes: each detected value becomes a placeholder that cannot be
 * guessed (`<EMAIL_7f3a9c>`: the kind and six random hex digits drawn for this request; the same
 * value always gets the same placeholder within a request), the mapping lives only as long as the
 * request, and only the placeholders this request issued are put back in the response — including
 * in streamed deltas, where a placeholder may arrive split across several SSE chunks. A placeholder
 * is never one that already occurs in the request (`reserved`), so text the agent wrote itself, even
 * `<EMAIL_7f3a9c>`, is never replaced by a real value.
 */
import { randomBytes } from 'node:crypto';
import type { Detection } from './detect.js';
import type { EntityKind } from './schema.js';

/** Candidates for restoration: `<KIND_hhhhhh>`; only those in the map are replaced. */
const PLACEHOLDER_RE = /<[A-Z]+(?:_[A-Z]+)*_[0-9a-f]{6}>/g;
const SUFFIX_HEX = 6;

export interface RedactionMapOptions {
  /** True when a candidate placeholder already occurs in the request (it is then drawn again). */
  reserved?: (placeholder: string) => boolean;
  /** Random hex suffixes (tests); default crypto.randomBytes. */
  random?: () => string;
}

function randomSuffix(): string {
  return randomBytes(SUFFIX_HEX / 2).toString('hex');
}

export class RedactionMap {
  private readonly byValue = new Map<string, string>();
  private readonly byPlaceholder = new Map<string, string>();
  private readonly perKind = new Map<EntityKind, number>();
  private readonly reserved: ((placeholder: string) => boolean) | undefined;
  private readonly random: () => string;
  /** Longest placeholder handed out: a stream holds back at most this many characters. */
  maxPlaceholderLength = 0;

  constructor(options: RedactionMapOptions = {}) {
    this.reserved = options.reserved;
    this.random = options.random ?? randomSuffix;
  }

  get size(): number {
    return this.byPlaceholder.size;
  }

  /** Number of distinct values replaced, by kind (for events; never the values). */
  countsByKind(): Record<string, number> {
    return Object.fromEntries(this.perKind);
  }

  placeholderFor(kind: EntityKind, value: string): string {
    const key = `${kind}\u0000${value}`;
    const existing = this.byValue.get(key);
    if (existing) return existing;
    let placeholder: string;
    for (let tries = 0; ; tries++) {
      placeholder = `<${kind.toUpperCase()}_${this.random()}>`;
      if (!this.byPlaceholder.has(placeholder) && !this.reserved?.(placeholder)) break;
      if (tries > 64) throw new Error('could not draw an unused redaction placeholder');
    }
    this.perKind.set(kind, (this.perKind.get(kind) ?? 0) + 1);
    this.byValue.set(key, placeholder);
    this.byPlaceholder.set(placeholder, value);
    this.maxPlaceholderLength = Math.max(this.maxPlaceholderLength, placeholder.length);
    return placeholder;
  }

  /** Replace the detected spans of the given kinds (detections sorted, non-overlapping). */
  redact(text: string, detections: readonly Detection[], kinds: ReadonlySet<EntityKind>): string {
    let out = '';
    let last = 0;
    for (const d of detections) {
      if (!kinds.has(d.kind) || d.start < last) continue;
      out += text.slice(last, d.start) + this.placeholderFor(d.kind, d.value);
      last = d.end;
    }
    return last === 0 ? text : out + text.slice(last);
  }

  /** Put original values back. `json`: the text is the inside of a JSON document (tool-call arguments). */
  restore(text: string, json = false): string {
    if (this.byPlaceholder.size === 0 || !text.includes('<')) return text;
    return text.replace(PLACEHOLDER_RE, (match) => {
      const value = this.byPlaceholder.get(match);
      if (value === undefined) return match;
      return json ? JSON.stringify(value).slice(1, -1) : value;
    });
  }

  /** Restore every string and every key inside a parsed JSON value (Anthropic tool_use `input`). */
  restoreDeep(value: unknown): unknown {
    if (typeof value === 'string') return this.restore(value);
    if (Array.isArray(value)) return value.map((v) => this.restoreDeep(v));
    if (value !== null && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [this.restore(k), this.restoreDeep(v)]));
    }
    return value;
  }
}

/** A prefix of a placeholder: `<`, `<EMA`, `<EMAIL_`, `<EMAIL_7f3`. */
const PARTIAL_RE = /^<(?:[A-Z][A-Z_]*[0-9a-f]{0,6})?$/;

/**
 * Restores placeholders in one streamed channel (a choice's content, one tool call's arguments, an
 * Anthropic content block). Holds back a trailing `<EMAIL_7f` until it is known whether it completes a
 * placeholder; `flush()` returns whatever is still held at the end of the channel.
 */
export class StreamRestorer {
  private held = '';

  constructor(
    private readonly map: RedactionMap,
    private readonly json: boolean,
  ) {}

  push(delta: string): string {
    const text = this.held + delta;
    this.held = '';
    const lt = text.lastIndexOf('<');
    if (lt >= 0 && text.length - lt < this.map.maxPlaceholderLength && PARTIAL_RE.test(text.slice(lt))) {
      this.held = text.slice(lt);
      return this.map.restore(text.slice(0, lt), this.json);
    }
    return this.map.restore(text, this.json);
  }

  flush(): string {
    const rest = this.held;
    this.held = '';
    return rest;
  }

  get pending(): boolean {
    return this.held.length > 0;
  }
}
