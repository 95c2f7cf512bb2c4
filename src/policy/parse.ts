import { createHash } from 'node:crypto';
import { readFileSync, readdirSync } from 'node:fs';
import { open } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Document, type Node, type Pair, type YAMLMap } from 'yaml';
import type { z } from 'zod';
import { validateInferencePolicy } from '../inference/index.js';
import { NemoclawError, isNemoclawError } from '../shared/errors.js';
import { packageInfo } from '../shared/package.js';
import { networkPolicyFindings } from './openshell.js';
import { policyFileSchema, presetFileSchema, presetNameSchema } from './schema.js';
import type { Endpoint, L7Rule, NetworkPolicy, PolicyDocument } from './types.js';

export interface PolicyIssue {
  file: string;
  /** 1-based; 0 when the issue has no position in a file. */
  line: number;
  col: number;
  /** Field path, e.g. `network_policies.github.endpoints[0].port`. */
  path: string;
  expected: string;
  message: string;
  /** Set on a closing entry that stands for this many further issues, not listed to keep errors short. */
  omitted?: number;
  /** For warnings: `not-enforced` (accepted, not enforced here) or `meaning-changed` (reads differently than in earlier versions). */
  severity?: 'error' | 'not-enforced' | 'meaning-changed';
}

export interface ParsedPolicy {
  doc: PolicyDocument;
  /** Fields accepted but "not enforced here" (OpenShell-only or unknown). */
  warnings: PolicyIssue[];
}

export interface ParseOptions {
  /** Directory of `<name>.yaml` presets (default: the package's policies/presets). */
  presetsDir?: string | undefined;
}

const PACKAGE_ROOT = packageInfo().root;
/** The baseline policy shipped in the package (works from src/ and dist/). */
export const DEFAULT_POLICY_PATH = join(PACKAGE_ROOT, 'policies', 'openclaw-sandbox.yaml');
export const DEFAULT_PRESETS_DIR = join(PACKAGE_ROOT, 'policies', 'presets');

type PathKey = string | number;

/** Longest key shown in a field path (a garbage file can have a key of a megabyte). */
const MAX_KEY_CHARS = 60;

export function formatPath(path: readonly PathKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(key) && key.length <= MAX_KEY_CHARS) out += out.length > 0 ? `.${key}` : key;
    else out += `[${JSON.stringify(key.length > MAX_KEY_CHARS ? `${key.slice(0, MAX_KEY_CHARS - 3)}...` : key)}]`;
  }
  return out.length > 0 ? out : '(document)';
}

/** Issues listed in one error; the rest are counted (fixing the first ones usually fixes many more). */
export const MAX_LISTED_ISSUES = 20;
/** Longest message shown for one issue. */
const MAX_ISSUE_CHARS = 200;
/** yaml's messages quote the offending source; a short excerpt of it is enough to find it. */
const MAX_YAML_MESSAGE_CHARS = 120;

/**
 * One line per issue, at most `MAX_LISTED_ISSUES` of them and each at most ~200 characters, with
 * control characters escaped: a wrong file (binary, megabytes) must not flood the terminal.
 */
/** A file name as messages print it: a very long one keeps its end (the part that tells files apart). */
export function shortFileName(file: string, max = 160): string {
  return file.length <= max ? file : `…${file.slice(file.length - max + 1)}`;
}

export function formatPolicyIssues(issues: readonly PolicyIssue[]): string {
  const lines = issues
    .filter((i) => i.omitted === undefined)
    .slice(0, MAX_LISTED_ISSUES)
    .map((i) => printable(`${shortFileName(i.file)}${i.line > 0 ? `:${i.line}:${i.col}` : ''} ${i.path}: ${shorten(i.message, MAX_ISSUE_CHARS)}`));
  const more = countIssues(issues) - lines.length;
  if (more > 0) lines.push(`... and ${more} more`);
  return lines.join('\n');
}

/** How many problems `issues` stands for (a closing `omitted` entry counts what it stands for). */
export function countIssues(issues: readonly PolicyIssue[]): number {
  return issues.reduce((n, i) => n + (i.omitted ?? 1), 0);
}

/** Issues kept per parse (errors and warnings): enough to fix a file, small enough to send and print. */
const MAX_KEPT_ISSUES = 100;

/** At most MAX_KEPT_ISSUES issues, the rest counted in one closing entry. */
function capIssues(issues: PolicyIssue[], what: string): PolicyIssue[] {
  const total = countIssues(issues);
  if (issues.length <= MAX_KEPT_ISSUES) return issues;
  const kept = issues.slice(0, MAX_KEPT_ISSUES);
  const omitted = total - countIssues(kept);
  const file = kept[0]!.file;
  kept.push({ file, line: 0, col: 0, path: '(document)', expected: what, message: `${omitted} more not listed`, omitted });
  return kept;
}

function shorten(text: string, max: number): string {
  return text.length > max ? `${text.slice(0, max - 3)}...` : text;
}

/** Control characters shown as escapes, never sent raw to a terminal. */
function printable(text: string): string {
  return text.replace(/[\x00-\x08\x0a-\x1f\x7f-\x9f]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

/** A YAML document with what is needed to name positions in it. */
class SourceMap {
  /** Key → pair per mapping, built on first lookup: positions of many issues stay linear. */
  private readonly pairsByKey = new WeakMap<YAMLMap, Map<string, Pair>>();

  constructor(
    readonly file: string,
    readonly doc: Document.Parsed,
    readonly lines: LineCounter,
  ) {}

  private pairOf(map: YAMLMap, key: PathKey): Pair | undefined {
    let index = this.pairsByKey.get(map);
    if (!index) {
      index = new Map();
      for (const p of map.items) {
        if (!isScalar(p.key)) continue;
        const k = String(p.key.value);
        if (!index.has(k)) index.set(k, p);
      }
      this.pairsByKey.set(map, index);
    }
    return index.get(String(key));
  }

  private resolve(node: unknown): unknown {
    return isAlias(node) ? node.resolve(this.doc) : node;
  }

  /** The node at `path` (or its nearest existing ancestor), and the pair key node when the last key exists. */
  locate(path: readonly PathKey[]): { node: Node | undefined; keyNode: Node | undefined; exact: boolean } {
    let node = this.resolve(this.doc.contents) as Node | undefined;
    let keyNode: Node | undefined;
    for (const key of path) {
      keyNode = undefined;
      if (isMap(node)) {
        const pair = this.pairOf(node, key);
        if (!pair) return { node, keyNode: undefined, exact: false };
        keyNode = pair.key as Node;
        const value = this.resolve(pair.value) as Node | null;
        node = value ?? keyNode;
      } else if (isSeq(node) && typeof key === 'number') {
        const item = this.resolve(node.items[key]) as Node | undefined;
        if (!item) return { node, keyNode: undefined, exact: false };
        node = item;
      } else {
        return { node, keyNode: undefined, exact: false };
      }
    }
    return { node, keyNode, exact: true };
  }

  position(path: readonly PathKey[], preferKey = false): { line: number; col: number } {
    const { node, keyNode } = this.locate(path);
    const target = preferKey && keyNode ? keyNode : node;
    const offset = target?.range?.[0];
    if (offset === undefined) return { line: 1, col: 1 };
    return this.lines.linePos(offset);
  }
}

function describeValue(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (value === null) return 'an empty value';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'object') return 'a mapping';
  if (typeof value === 'string') return JSON.stringify(value.length > 60 ? `${value.slice(0, 57)}...` : value);
  return String(value);
}

function valueAt(root: unknown, path: readonly PathKey[]): unknown {
  let v = root;
  for (const key of path) {
    if (v === null || typeof v !== 'object') return undefined;
    v = (v as Record<PathKey, unknown>)[key];
  }
  return v;
}

const DEFAULT_MESSAGE = /^(Invalid|Too (small|big)|Unrecognized)/;

interface RawZodIssue {
  code: string;
  path: PropertyKey[];
  message: string;
  expected?: string;
  values?: unknown[];
  minimum?: number | bigint;
  maximum?: number | bigint;
  origin?: string;
  errors?: RawZodIssue[][];
  issues?: RawZodIssue[];
  keys?: string[];
  format?: string;
  inclusive?: boolean;
}

/** For a union, the branch that got furthest says best what was wrong. */
function flattenUnion(issue: RawZodIssue): RawZodIssue {
  if (issue.code !== 'invalid_union' || !issue.errors || !DEFAULT_MESSAGE.test(issue.message)) return issue;
  let best: RawZodIssue | undefined;
  for (const branch of issue.errors) {
    for (const inner of branch) {
      if (!best || inner.path.length > best.path.length) best = inner;
    }
  }
  if (!best || best.path.length === 0) return issue;
  return { ...best, path: [...issue.path, ...best.path] };
}

function expectedOf(issue: RawZodIssue): string {
  if (issue.code === 'custom' || !DEFAULT_MESSAGE.test(issue.message)) return issue.message;
  switch (issue.code) {
    case 'invalid_type':
      return issue.expected === 'object' ? 'a mapping' : issue.expected === 'array' ? 'a list' : `a ${issue.expected ?? 'value'}`;
    case 'invalid_value':
      return `one of ${(issue.values ?? []).map((v) => JSON.stringify(v)).join(', ')}`;
    case 'too_small':
      return issue.origin === 'array' ? `at least ${issue.minimum} item(s)` : `a value ${issue.inclusive === false ? '>' : '>='} ${issue.minimum}`;
    case 'too_big':
      return issue.origin === 'array' ? `at most ${issue.maximum} item(s)` : `a value ${issue.inclusive === false ? '<' : '<='} ${issue.maximum}`;
    case 'invalid_format':
      return issue.format === 'url' ? 'an http:// or https:// URL' : issue.format === 'regex' ? issue.message : `a valid ${issue.format ?? 'value'}`;
    case 'invalid_key':
      return issue.issues?.[0] ? expectedOf(issue.issues[0]) : 'a valid key';
    default:
      return issue.message;
  }
}

/** Walk a zod schema alongside a value and report keys the schema does not know. */
function unknownKeys(schema: z.ZodType, value: unknown, path: PathKey[], out: PathKey[][]): void {
  const def = (schema as unknown as { _zod: { def: Record<string, unknown> } })._zod.def;
  switch (def.type) {
    case 'optional':
    case 'default':
    case 'prefault':
    case 'nullable':
    case 'readonly':
      unknownKeys(def.innerType as z.ZodType, value, path, out);
      return;
    case 'pipe':
      unknownKeys(def.in as z.ZodType, value, path, out);
      return;
    case 'array':
      if (Array.isArray(value)) value.forEach((v, i) => unknownKeys(def.element as z.ZodType, v, [...path, i], out));
      return;
    case 'record':
      if (value && typeof value === 'object' && !Array.isArray(value)) {
        for (const [k, v] of Object.entries(value)) unknownKeys(def.valueType as z.ZodType, v, [...path, k], out);
      }
      return;
    case 'union':
      for (const option of def.options as z.ZodType[]) {
        const inner = (option as unknown as { _zod: { def: Record<string, unknown> } })._zod.def;
        if (inner.type === 'object' && value && typeof value === 'object' && !Array.isArray(value)) {
          unknownKeys(option, value, path, out);
          return;
        }
      }
      return;
    case 'object': {
      if (!value || typeof value !== 'object' || Array.isArray(value)) return;
      const shape = def.shape as Record<string, z.ZodType>;
      const loose = def.catchall !== undefined;
      for (const [k, v] of Object.entries(value)) {
        // Own keys only: `toString`, `constructor`, `__proto__` are document keys, not schema fields.
        const field = Object.hasOwn(shape, k) ? shape[k] : undefined;
        if (field) unknownKeys(field, v, [...path, k], out);
        else if (!loose) out.push([...path, k]);
      }
      return;
    }
    default:
      return;
  }
}

/** OpenShell fields we accept and know we do not enforce, with why. */
const NOT_ENFORCED_NOTES: Record<string, string> = {
  landlock: 'the sandbox confines files with bubblewrap mounts, not Landlock',
};

function editDistance(a: string, b: string): number {
  const row = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    let prev = row[0]!;
    row[0] = i;
    for (let j = 1; j <= b.length; j++) {
      const cur = row[j]!;
      row[j] = Math.min(row[j]! + 1, row[j - 1]! + 1, prev + (a[i - 1] === b[j - 1] ? 0 : 1));
      prev = cur;
    }
  }
  return row[b.length]!;
}

function knownSiblings(schema: z.ZodType, path: PathKey[]): string[] {
  // Only top-level suggestions are cheap and useful (typos of section names).
  if (path.length !== 1) return [];
  const def = (schema as unknown as { _zod: { def: { shape?: Record<string, unknown> } } })._zod.def;
  return Object.keys(def.shape ?? {});
}

export interface ValidatedYaml<T> {
  data: T;
  warnings: PolicyIssue[];
  source: SourceMap;
  /** The document as plain JS, before validation (for naming the value a later check refused). */
  raw: unknown;
}

/**
 * Turn zod issues into PolicyIssues with file:line:col. `prefix` is where the validated value sits in
 * the document (e.g. `['inference']` for the router's own schema); `raw` is the whole document.
 */
function zodIssuesToPolicyIssues(zodIssues: readonly RawZodIssue[], prefix: readonly PathKey[], raw: unknown, source: SourceMap): PolicyIssue[] {
  const file = source.file;
  const issues: PolicyIssue[] = [];
  for (const original of zodIssues) {
    const issue = flattenUnion(original);
    const path = [...prefix, ...issue.path.filter((k): k is PathKey => typeof k === 'string' || typeof k === 'number')];
    if (issue.code === 'unrecognized_keys' && Array.isArray(issue.keys)) {
      // A strict section: name each unknown field at its own key.
      for (const key of issue.keys) {
        const at = [...path, key];
        const pos = source.position(at, true);
        const expected = 'a field this section defines (unknown fields are refused here)';
        issues.push({ file, line: pos.line, col: pos.col, path: formatPath(at), expected, message: `expected ${expected}, got unknown field "${key}"` });
      }
      continue;
    }
    const pos = source.position(path, issue.code === 'invalid_key');
    const expected = expectedOf(issue);
    const got = issue.code === 'invalid_key' ? describeValue(path[path.length - 1]) : describeValue(valueAt(raw, path));
    issues.push({ file, line: pos.line, col: pos.col, path: formatPath(path), expected, message: `expected ${expected}, got ${got}` });
  }
  issues.sort((a, b) => a.line - b.line || a.col - b.col);
  return capIssues(dedupeIssues(issues), 'a valid policy');
}

/**
 * Parse YAML text and validate it against a zod schema; every problem becomes a PolicyIssue with
 * the file, line and column of the offending node. Returns issues instead of throwing.
 */
export function validateYaml<S extends z.ZodType>(
  text: string,
  file: string,
  schema: S,
): { ok: true; value: ValidatedYaml<z.output<S>> } | { ok: false; issues: PolicyIssue[] } {
  const unreadable = prescanIssue(text, file);
  if (unreadable) return { ok: false, issues: [unreadable] };
  const lines = new LineCounter();
  let doc: Document.Parsed;
  try {
    // yaml's own uniqueKeys check compares every key with every earlier one (quadratic: minutes for
    // a big mapping); duplicateKeyIssues below does the same check in one pass.
    doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: false });
  } catch (err) {
    // The composer recurses per nesting level: thousands of `[` overflow the stack.
    return { ok: false, issues: [wholeDocumentIssue(file, err)] };
  }
  const syntaxIssues = doc.errors.slice(0, MAX_KEPT_ISSUES + 1).map((err): PolicyIssue => {
    const pos = err.linePos?.[0] ?? lines.linePos(err.pos[0]);
    const first = err.message.split('\n')[0]!.replace(/ at line \d+, column \d+.*$/, '');
    // yaml reports its own stack overflow (deep nesting) as an error whose text is about a regex.
    const msg = /stack overflow|call stack/i.test(first) ? 'nested too deeply' : first;
    return { file, line: pos.line, col: pos.col, path: '(document)', expected: 'valid YAML', message: `invalid YAML: ${shorten(msg, MAX_YAML_MESSAGE_CHARS)}` };
  });
  const issues = [...syntaxIssues, ...duplicateKeyIssues(doc, file, lines)];
  if (issues.length > 0) {
    issues.sort((a, b) => (a.line === 0 ? 1 : 0) - (b.line === 0 ? 1 : 0) || a.line - b.line || a.col - b.col);
    const capped = capIssues(dedupeIssues(issues), 'valid YAML');
    // Errors beyond those turned into issues above still count.
    const unlisted = doc.errors.length - syntaxIssues.length;
    if (unlisted > 0) {
      const last = capped[capped.length - 1]!;
      if (last.omitted !== undefined) {
        last.omitted += unlisted;
        last.message = `${last.omitted} more not listed`;
      } else {
        capped.push({ file, line: 0, col: 0, path: '(document)', expected: 'valid YAML', message: `${unlisted} more not listed`, omitted: unlisted });
      }
    }
    return { ok: false, issues: capped };
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return { ok: false, issues: [wholeDocumentIssue(file, err)] };
  }
  const source = new SourceMap(file, doc, lines);
  const result = schema.safeParse(raw);
  if (!result.success) {
    const issues = zodIssuesToPolicyIssues(result.error.issues as unknown as RawZodIssue[], [], raw, source);
    return { ok: false, issues };
  }
  const unknown: PathKey[][] = [];
  unknownKeys(schema, raw, [], unknown);
  const warnings = unknown.map((path): PolicyIssue => {
    const pos = source.position(path, true);
    const name = String(path[path.length - 1]);
    const suggestion = name.length <= 40 ? knownSiblings(schema, path).find((k) => editDistance(k, name) <= 2) : undefined;
    const note = suggestion ? ` (did you mean \`${suggestion}\`?)` : '';
    return {
      file,
      line: pos.line,
      col: pos.col,
      path: formatPath(path),
      expected: 'a field this engine enforces',
      message: `unknown field, loaded but not enforced here${note}`,
    };
  });
  // Known OpenShell sections we accept without enforcing.
  if (raw && typeof raw === 'object') {
    for (const [section, why] of Object.entries(NOT_ENFORCED_NOTES)) {
      if (Object.hasOwn(raw, section)) {
        const pos = source.position([section], true);
        warnings.push({ file, line: pos.line, col: pos.col, path: section, expected: 'a field this engine enforces', message: `not enforced here: ${why}` });
      }
    }
  }
  warnings.sort((a, b) => a.line - b.line || a.col - b.col);
  return { ok: true, value: { data: result.data, warnings: capIssues(warnings, 'a field this engine enforces'), source, raw } };
}

/**
 * yaml's lexer recurses per flow level and gives up (stack overflow) somewhere near 700 levels,
 * after seconds and a gigabyte of memory for a file of `[`. No policy nests flow collections even
 * tens deep, so a cheap bracket count refuses such a file up front.
 */
const MAX_FLOW_DEPTH = 500;

/**
 * One linear scan before the YAML parser: a control character YAML does not allow (a binary file)
 * or absurd flow nesting is one clear issue, rather than hundreds of parser errors quoting garbage.
 * Only a `[` or `{` that can start a flow collection counts (at a token boundary, outside comments
 * and quoted scalars), so `path: /v1/[id` or a `# [` comment never adds to the depth.
 */
function prescanIssue(text: string, file: string): PolicyIssue | undefined {
  let depth = 0;
  let line = 1;
  let lineStart = 0;
  let quote = 0; // the quote character of the quoted scalar we are in, or 0
  let comment = false;
  const issue = (i: number, message: string): PolicyIssue => ({ file, line, col: i - lineStart + 1, path: '(document)', expected: 'valid YAML', message });
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a) {
      line++;
      lineStart = i + 1;
      comment = false;
      continue;
    }
    if ((c < 0x20 && c !== 0x09 && c !== 0x0d) || c === 0x7f) {
      const code = `U+${c.toString(16).toUpperCase().padStart(4, '0')}`;
      return issue(i, `invalid YAML: control character ${code}, which YAML does not allow; a policy is a text file — is this the right file?`);
    }
    if (comment) continue;
    if (quote !== 0) {
      if (c === 0x5c && quote === 0x22) i++; // an escape in a double-quoted scalar
      else if (c === quote) quote = 0;
      continue;
    }
    const prev = i === lineStart ? 0x20 : text.charCodeAt(i - 1);
    const atTokenStart = prev === 0x20 || prev === 0x09 || prev === 0x5b || prev === 0x7b || prev === 0x2c || prev === 0x3a;
    if (!atTokenStart) {
      if ((c === 0x5d || c === 0x7d) && depth > 0) depth--;
      continue;
    }
    if (c === 0x23 && (prev === 0x20 || prev === 0x09)) comment = true;
    else if (c === 0x22 || c === 0x27) quote = c;
    else if (c === 0x5d || c === 0x7d) depth = Math.max(0, depth - 1);
    else if ((c === 0x5b || c === 0x7b) && ++depth > MAX_FLOW_DEPTH) {
      return issue(i, `invalid YAML: flow collections ([ ] / { }) nested more than ${MAX_FLOW_DEPTH} levels deep`);
    }
  }
  return undefined;
}

/** The document as a whole could not be read (too deeply nested, too many aliases). */
function wholeDocumentIssue(file: string, err: unknown): PolicyIssue {
  const why = err instanceof RangeError ? 'nested too deeply' : shorten(err instanceof Error ? err.message : String(err), MAX_ISSUE_CHARS);
  return { file, line: 1, col: 1, path: '(document)', expected: 'valid YAML', message: `invalid YAML: ${why}` };
}

/**
 * A key repeated in one mapping, as yaml's `uniqueKeys` reports it (scalar keys equal by value),
 * in one pass with a Set per mapping. Walks with an explicit stack: deep nesting cannot overflow it.
 */
function duplicateKeyIssues(doc: Document.Parsed, file: string, lines: LineCounter): PolicyIssue[] {
  const issues: PolicyIssue[] = [];
  let omitted = 0;
  const stack: unknown[] = [doc.contents];
  while (stack.length > 0) {
    const node = stack.pop();
    if (isMap(node)) {
      const seen = new Set<unknown>();
      for (const pair of node.items) {
        stack.push(pair.key, pair.value);
        if (!isScalar(pair.key)) continue;
        const value = pair.key.value;
        if (!seen.has(value)) {
          seen.add(value);
        } else if (issues.length < MAX_KEPT_ISSUES) {
          const pos = lines.linePos(pair.key.range?.[0] ?? 0);
          issues.push({ file, line: pos.line, col: pos.col, path: '(document)', expected: 'valid YAML', message: 'invalid YAML: Map keys must be unique' });
        } else {
          omitted++;
        }
      }
    } else if (isSeq(node)) {
      for (const item of node.items) stack.push(item);
    }
  }
  if (omitted > 0) issues.push({ file, line: 0, col: 0, path: '(document)', expected: 'valid YAML', message: `${omitted} more not listed`, omitted });
  return issues;
}

function dedupeIssues(issues: PolicyIssue[]): PolicyIssue[] {
  const seen = new Set<string>();
  return issues.filter((i) => {
    const key = `${i.line}:${i.col}:${i.path}:${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export function policyInvalid(source: string, issues: PolicyIssue[]): NemoclawError {
  const n = countIssues(issues);
  return new NemoclawError('policy_invalid', `${printable(shortFileName(source))}: ${n} problem${n === 1 ? '' : 's'} in the policy\n${formatPolicyIssues(issues)}`, {
    nextStep: 'fix the fields named above and try again; the running policy (if any) is unchanged',
    exitCode: 2,
    details: issues,
  });
}

function endpointIdentity(e: Endpoint): string {
  return `${e.host}|${e.ports.join(',')}`;
}

function unionBy<T>(a: readonly T[], b: readonly T[], key: (t: T) => string): T[] {
  const seen = new Set(a.map(key));
  const out = [...a];
  for (const item of b) {
    const k = key(item);
    if (!seen.has(k)) {
      seen.add(k);
      out.push(item);
    }
  }
  return out;
}

const ruleKey = (r: L7Rule) => `${r.method} ${r.path} ${r.query === undefined ? '' : JSON.stringify(r.query)}`;

function mergeEndpoint(a: Endpoint, b: Endpoint): Endpoint {
  const out: Endpoint = {
    ...a,
    ...b,
    rules: unionBy(a.rules, b.rules, ruleKey),
    deny_rules: unionBy(a.deny_rules, b.deny_rules, ruleKey),
    allowed_ips: unionBy(a.allowed_ips, b.allowed_ips, (s) => s),
  };
  return out;
}

/** Structural merge of two network policies of the same name: `b` on top of `a`. */
export function mergeNetworkPolicy(a: NetworkPolicy, b: NetworkPolicy): NetworkPolicy {
  const endpoints = [...a.endpoints];
  for (const e of b.endpoints) {
    const i = endpoints.findIndex((x) => endpointIdentity(x) === endpointIdentity(e));
    if (i >= 0) endpoints[i] = mergeEndpoint(endpoints[i]!, e);
    else endpoints.push(e);
  }
  return {
    name: b.name,
    action: b.action,
    endpoints,
    binaries: unionBy(a.binaries, b.binaries, (x) => x.path),
  };
}

/** Merge `top` network policies over `base` (objects by key, endpoint lists by host+ports identity). */
export function mergeNetworkPolicies(
  base: Record<string, NetworkPolicy>,
  top: Record<string, NetworkPolicy>,
): Record<string, NetworkPolicy> {
  const out: Record<string, NetworkPolicy> = { ...base };
  for (const [name, policy] of Object.entries(top)) {
    // Own keys only: a policy named `toString` or `__proto__` is a policy, not a prototype member.
    const existing = Object.hasOwn(out, name) ? out[name] : undefined;
    setOwn(out, name, existing ? mergeNetworkPolicy(existing, policy) : policy);
  }
  return out;
}

/** `obj[key] = value` as an own data property, also for `__proto__` (which `=` would treat as the prototype). */
function setOwn<T>(obj: Record<string, T>, key: string, value: T): void {
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}

/** Problems the router's validator finds in the `inference` section, as positioned PolicyIssues. */
function inferenceSectionIssues(section: unknown, raw: unknown, map: SourceMap): PolicyIssue[] {
  try {
    validateInferencePolicy(section);
    return [];
  } catch (err) {
    const details = isNemoclawError(err) ? (err.details as { issues?: RawZodIssue[] } | undefined) : undefined;
    if (!details?.issues) {
      const pos = map.position(['inference'], true);
      const message = err instanceof Error ? err.message : String(err);
      return [{ file: map.file, ...pos, path: 'inference', expected: 'a valid inference section', message }];
    }
    return zodIssuesToPolicyIssues(details.issues, ['inference'], raw, map);
  }
}

/** OpenShell's endpoint checks (openshell.ts), positioned: errors refuse the file, the rest are warnings. */
function openshellIssues(raw: unknown, map: SourceMap): { errors: PolicyIssue[]; warnings: PolicyIssue[] } {
  const errors: PolicyIssue[] = [];
  const warnings: PolicyIssue[] = [];
  for (const f of networkPolicyFindings(raw)) {
    const pos = map.position(f.path, true);
    const expected = f.severity === 'error' ? 'a rule OpenShell accepts and this engine enforces' : 'a field this engine enforces';
    const issue: PolicyIssue = { file: map.file, line: pos.line, col: pos.col, path: formatPath(f.path), expected, message: f.message, severity: f.severity };
    (f.severity === 'error' ? errors : warnings).push(issue);
  }
  return { errors, warnings };
}

type RawNetworkPolicies = z.output<typeof policyFileSchema>['network_policies'];

function namedPolicies(raw: RawNetworkPolicies): Record<string, NetworkPolicy> {
  const out: Record<string, NetworkPolicy> = {};
  for (const [name, p] of Object.entries(raw)) {
    out[name] = { name, action: p.action, endpoints: p.endpoints, binaries: p.binaries };
  }
  return out;
}

export function listPresets(presetsDir: string = DEFAULT_PRESETS_DIR): string[] {
  try {
    return readdirSync(presetsDir)
      .filter((f) => f.endsWith('.yaml'))
      .map((f) => f.slice(0, -5))
      .sort();
  } catch {
    return [];
  }
}

/**
 * Does a `--preset ARG` name a preset file rather than a packaged preset? A path: it contains `/`
 * or ends in `.yaml` / `.yml` (`./jira.yaml`, `~/nemoclaw/presets/discord.yaml`, `jira.yaml`).
 */
export function isPresetPath(arg: string): boolean {
  return arg.includes('/') || /\.ya?ml$/i.test(arg);
}

/**
 * Refuse preset names that are not packaged presets (invalid_input, exit 2), listing those that
 * are, before anything is written.
 */
export function checkPresetNames(names: readonly string[], presetsDir: string = DEFAULT_PRESETS_DIR): void {
  const available = listPresets(presetsDir);
  const unknown = [...new Set(names.filter((n) => !available.includes(n)))];
  if (unknown.length === 0) return;
  const what = unknown.map((n) => `"${n}"`).join(', ');
  throw new NemoclawError(
    'invalid_input',
    `unknown preset${unknown.length === 1 ? '' : 's'} ${what}; the available presets are: ${available.join(', ') || '(none)'}`,
    {
      nextStep: `choose from those, or pass a preset file by its path (e.g. \`--preset ./${unknown[0]!.replace(/[^A-Za-z0-9_-]/g, '') || 'my-preset'}.yaml\`; NemoClaw's preset files load as they are); nothing was written`,
      exitCode: 2,
      details: { unknown, available },
    },
  );
}

/** A preset file, read and validated on its own (a packaged one, or one given by path). */
export interface PresetFile {
  /** `preset.name` (NemoClaw's header), else the file name without `.yaml`. */
  name: string;
  description: string | undefined;
  /** Where it was read from. */
  source: string;
  /** The file as read (stored as is, so a later start never depends on the original). */
  text: string;
  /** `sha256:<hex>` of `text`. */
  sha256: string;
  /** Keys of its `network_policies`, in file order. */
  policyKeys: string[];
  /** Its `network_policies` as written (plain YAML data): key → policy. */
  entries: Record<string, unknown>;
  /** Fields loaded but not enforced here (e.g. `tls: terminate`, a policy without `binaries`). */
  warnings: PolicyIssue[];
}

/**
 * Parse and validate one preset file (presetFileSchema: our format or NemoClaw's `preset:` header;
 * OpenShell's endpoint checks). Throws policy_invalid (exit 2) naming file:line:col; a preset with
 * no network policies is refused (NemoClaw: "has no network_policies section").
 */
export function parsePresetFile(text: string, source: string): PresetFile {
  checkPolicySize(text, source);
  const validated = validateYaml(text, source, presetFileSchema);
  if (!validated.ok) throw policyInvalid(source, validated.issues);
  const { data, raw, warnings, source: map } = validated.value;
  const openshell = openshellIssues(raw, map);
  if (openshell.errors.length > 0) throw policyInvalid(source, capIssues(openshell.errors, 'a valid preset'));
  const rawPolicies = (raw as { network_policies?: unknown }).network_policies;
  const entries = typeof rawPolicies === 'object' && rawPolicies !== null && !Array.isArray(rawPolicies) ? (rawPolicies as Record<string, unknown>) : {};
  const policyKeys = Object.keys(data.network_policies);
  if (policyKeys.length === 0) {
    const pos = map.position(['network_policies'], true);
    throw policyInvalid(source, [
      { file: source, ...pos, path: 'network_policies', expected: 'a preset with at least one network policy', message: 'the preset has no network_policies' },
    ]);
  }
  const fileName = basename(source).replace(/\.ya?ml$/i, '');
  const name = data.preset?.name ?? fileName;
  if (!presetNameSchema.safeParse(name).success) {
    throw policyInvalid(source, [
      {
        file: source,
        line: 1,
        col: 1,
        path: 'preset.name',
        expected: 'a preset name (e.g. npm, github)',
        message: `the file name "${fileName}" is not a preset name; add \`preset: { name: my-preset }\``,
      },
    ]);
  }
  return {
    name,
    description: data.preset?.description ?? data.description,
    source,
    text,
    sha256: `sha256:${createHash('sha256').update(text).digest('hex')}`,
    policyKeys,
    entries,
    warnings: [...warnings, ...openshell.warnings].sort((a, b) => a.line - b.line || a.col - b.col),
  };
}

/** Read and validate a preset file given by path (size-capped; exit 2 naming the file when unreadable or invalid). */
export async function loadPresetFile(path: string): Promise<PresetFile> {
  return parsePresetFile(await readPolicyFile(path), path);
}

/** A packaged preset by name (throws like checkPresetNames when there is none). */
export function loadNamedPreset(name: string, presetsDir: string = DEFAULT_PRESETS_DIR): PresetFile {
  checkPresetNames([name], presetsDir);
  const file = join(presetsDir, `${name}.yaml`);
  return parsePresetFile(readFileSync(file, 'utf8'), file);
}

/**
 * NemoClaw's merge of a preset onto a sandbox policy, on the `network_policies` maps, exactly:
 * NVIDIA/NemoClaw bin/lib/policies.js `applyPreset` (with `extractPresetEntries`, commit
 * 04012f7b301ebc6658ec005ef90ad85778c2dc8f) pastes the text under the preset's `network_policies:`
 * at the end of the sandbox policy's `network_policies:` block and hands the result to
 * `openshell policy set`. OpenShell reads it with serde_yml into a `BTreeMap<String, …>`
 * (NVIDIA/OpenShell crates/openshell-policy/src/lib.rs `parse_sandbox_policy`), where a key seen
 * twice keeps its later value. So on a key collision the preset's policy REPLACES the sandbox's
 * policy of that key whole (its endpoints, rules and binaries; nothing is merged); other keys are
 * added. Presets applied one after another fold left: a later preset replaces an earlier one.
 */
export function applyNemoclawPreset(current: Readonly<Record<string, unknown>>, presetEntries: Readonly<Record<string, unknown>>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...current };
  for (const [key, policy] of Object.entries(presetEntries)) setOwn(out, key, policy);
  return out;
}

/**
 * Parse and validate a policy file's text. Presets it names are read from `presetsDir` and merged
 * structurally under it (the file wins). Throws NemoclawError('policy_invalid') with every issue.
 */
export function parsePolicy(text: string, source: string, opts: ParseOptions = {}): ParsedPolicy {
  checkPolicySize(text, source);
  const validated = validateYaml(text, source, policyFileSchema);
  if (!validated.ok) throw policyInvalid(source, validated.issues);
  const { data, warnings: fileWarnings, source: map, raw } = validated.value;
  const openshell = openshellIssues(raw, map);
  if (openshell.errors.length > 0) throw policyInvalid(source, capIssues(openshell.errors, 'a valid policy'));
  const warnings = [...fileWarnings, ...openshell.warnings].sort((a, b) => a.line - b.line || a.col - b.col);
  // The privacy router owns the precise shape of `inference`; refuse a bad section here, at load,
  // with positions, rather than letting the running router discover it.
  const inferenceIssues = inferenceSectionIssues(data.inference, raw, map);
  if (inferenceIssues.length > 0) throw policyInvalid(source, inferenceIssues);
  const presetsDir = opts.presetsDir ?? DEFAULT_PRESETS_DIR;
  const issues: PolicyIssue[] = [];
  let networkPolicies: Record<string, NetworkPolicy> = {};
  const presetNames = [...new Set(data.presets)];
  data.presets.forEach((name, index) => {
    if (data.presets.indexOf(name) !== index) return; // listed twice: merge once
    const file = join(presetsDir, `${name}.yaml`);
    let presetText: string;
    try {
      presetText = readFileSync(file, 'utf8');
    } catch {
      const pos = map.position(['presets', index]);
      const available = listPresets(presetsDir);
      const expected = `one of the presets in ${presetsDir}: ${available.join(', ') || '(none)'}`;
      issues.push({ file: source, ...pos, path: `presets[${index}]`, expected, message: `expected ${expected}, got "${name}"` });
      return;
    }
    const preset = validateYaml(presetText, file, presetFileSchema);
    if (!preset.ok) {
      issues.push(...preset.issues);
      return;
    }
    const presetOpenshell = openshellIssues(preset.value.raw, preset.value.source);
    if (presetOpenshell.errors.length > 0) {
      issues.push(...presetOpenshell.errors);
      return;
    }
    warnings.push(...preset.value.warnings, ...presetOpenshell.warnings);
    networkPolicies = mergeNetworkPolicies(networkPolicies, namedPolicies(preset.value.data.network_policies));
  });
  if (issues.length > 0) throw policyInvalid(source, issues);
  networkPolicies = mergeNetworkPolicies(networkPolicies, namedPolicies(data.network_policies));
  const doc: PolicyDocument = {
    version: 1,
    filesystem_policy: data.filesystem_policy,
    process: data.process,
    network_policies: networkPolicies,
    approvals: data.approvals,
    inference: data.inference as PolicyDocument['inference'],
    presets: presetNames,
  };
  if (data.landlock !== undefined) doc.landlock = data.landlock;
  return { doc, warnings };
}

/**
 * Largest policy file accepted. Real policies are a few KiB (the baseline with every preset is
 * under 20 KiB); a bigger file is almost surely the wrong one, and parsing it costs seconds and memory.
 */
export const MAX_POLICY_BYTES = 1024 * 1024;

function sizeText(bytes: number): string {
  if (bytes >= 1024 * 1024) return `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;
  if (bytes >= 1024) return `${(bytes / 1024).toFixed(1)} KiB`;
  return `${bytes} bytes`;
}

function policyTooLarge(source: string, bytes: number, atLeast: boolean): NemoclawError {
  return new NemoclawError(
    'invalid_input',
    `policy file ${source} is ${atLeast ? 'over ' : ''}${sizeText(bytes)}, larger than the 1 MiB a policy may be — did you pass the right file?`,
    {
      nextStep: 'pass the policy YAML file (a policy is a few KiB; the baseline is policies/openclaw-sandbox.yaml in the package); nothing was changed',
      exitCode: 2,
      details: { file: source, bytes, max_bytes: MAX_POLICY_BYTES },
    },
  );
}

/**
 * Refuse policy text over MAX_POLICY_BYTES before parsing it (throws invalid_input, exit 2).
 * Counts UTF-16 code units, never more than the file's bytes: bytes that are not UTF-8 decode to
 * one U+FFFD each, so text read from a file within the cap always passes here too.
 */
export function checkPolicySize(text: string, source: string): void {
  if (text.length > MAX_POLICY_BYTES) throw policyTooLarge(source, Buffer.byteLength(text, 'utf8'), false);
}

/**
 * Read a policy file as UTF-8, refusing it (naming the file, exit 2) when it is larger than
 * MAX_POLICY_BYTES. Reads at most one byte past the cap, so a huge file or a device is never
 * loaded whole.
 */
export async function readPolicyFile(path: string): Promise<string> {
  const cannotRead = (err: unknown): NemoclawError =>
    new NemoclawError('not_found', `cannot read policy file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      nextStep: 'check the path (the baseline policy is policies/openclaw-sandbox.yaml in the package)',
      exitCode: 2,
      cause: err,
    });
  let fh: Awaited<ReturnType<typeof open>>;
  try {
    fh = await open(path, 'r');
  } catch (err) {
    throw cannotRead(err);
  }
  try {
    const size = await fh.stat().then((st) => (st.isFile() ? st.size : 0), () => 0);
    if (size > MAX_POLICY_BYTES) throw policyTooLarge(path, size, false);
    const buf = Buffer.allocUnsafe(MAX_POLICY_BYTES + 1);
    let length = 0;
    for (;;) {
      let bytesRead: number;
      try {
        ({ bytesRead } = await fh.read(buf, length, buf.length - length, null));
      } catch (err) {
        throw cannotRead(err);
      }
      if (bytesRead === 0) break;
      length += bytesRead;
      if (length > MAX_POLICY_BYTES) throw policyTooLarge(path, length - 1, true);
    }
    return buf.toString('utf8', 0, length);
  } finally {
    await fh.close().catch(() => undefined);
  }
}

export async function loadPolicyFile(path: string, opts: ParseOptions = {}): Promise<ParsedPolicy> {
  return parsePolicy(await readPolicyFile(path), path, opts);
}
