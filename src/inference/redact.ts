/**
 * Reversible redaction for cloud routes: each detected value becomes a stable placeholder
 * (`<EMAIL_1>`; the same value always gets the same placeholder within a request), the mapping lives
 * only as long as the request, and the original values are put back in the response — including in
 * streamed deltas, where a placeholder may arrive split across several SSE chunks.
 */
import type { Detection } from './detect.js';
import type { EntityKind } from './schema.js';

const PLACEHOLDER_RE = /<([A-Z]+(?:_[A-Z]+)*_\d+)>/g;

export class RedactionMap {
  private readonly byValue = new Map<string, string>();
  private readonly byPlaceholder = new Map<string, string>();
  private readonly counters = new Map<EntityKind, number>();
  private readonly perKind = new Map<EntityKind, number>();
  /** Longest placeholder handed out: a stream holds back at most this many characters. */
  maxPlaceholderLength = 0;

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
    const n = (this.counters.get(kind) ?? 0) + 1;
    this.counters.set(kind, n);
    this.perKind.set(kind, n);
    const placeholder = `<${kind.toUpperCase()}_${n}>`;
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

  /** Restore every string inside a parsed JSON value (Anthropic tool_use `input`). */
  restoreDeep(value: unknown): unknown {
    if (typeof value === 'string') return this.restore(value);
    if (Array.isArray(value)) return value.map((v) => this.restoreDeep(v));
    if (value !== null && typeof value === 'object') {
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, this.restoreDeep(v)]));
    }
    return value;
  }
}

const PARTIAL_RE = /^<[A-Z_0-9]*$/;

/**
 * Restores placeholders in one streamed channel (a choice's content, one tool call's arguments, an
 * Anthropic content block). Holds back a trailing `<EMA` until it is known whether it completes a
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
