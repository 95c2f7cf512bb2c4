import { readFileSync, readdirSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { LineCounter, isAlias, isMap, isScalar, isSeq, parseDocument, type Document, type Node } from 'yaml';
import type { z } from 'zod';
import { validateInferencePolicy } from '../inference/index.js';
import { NemoclawError, isNemoclawError } from '../shared/errors.js';
import { packageInfo } from '../shared/package.js';
import { policyFileSchema, presetFileSchema } from './schema.js';
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

export function formatPath(path: readonly PathKey[]): string {
  let out = '';
  for (const key of path) {
    if (typeof key === 'number') out += `[${key}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_-]*$/.test(key)) out += out.length > 0 ? `.${key}` : key;
    else out += `[${JSON.stringify(key)}]`;
  }
  return out.length > 0 ? out : '(document)';
}

export function formatPolicyIssues(issues: readonly PolicyIssue[]): string {
  return issues
    .map((i) => `${i.file}${i.line > 0 ? `:${i.line}:${i.col}` : ''} ${i.path}: ${i.message}`)
    .join('\n');
}

/** A YAML document with what is needed to name positions in it. */
class SourceMap {
  constructor(
    readonly file: string,
    readonly doc: Document.Parsed,
    readonly lines: LineCounter,
  ) {}

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
        const pair = node.items.find((p) => (isScalar(p.key) ? String(p.key.value) === String(key) : false));
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
        const field = shape[k];
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
  return dedupeIssues(issues);
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
  const lines = new LineCounter();
  const doc = parseDocument(text, { lineCounter: lines, prettyErrors: false, uniqueKeys: true });
  if (doc.errors.length > 0) {
    return {
      ok: false,
      issues: doc.errors.map((err) => {
        const pos = err.linePos?.[0] ?? lines.linePos(err.pos[0]);
        const msg = err.message.split('\n')[0]!.replace(/ at line \d+, column \d+.*$/, '');
        return { file, line: pos.line, col: pos.col, path: '(document)', expected: 'valid YAML', message: `invalid YAML: ${msg}` };
      }),
    };
  }
  let raw: unknown;
  try {
    raw = doc.toJS({ maxAliasCount: 100 });
  } catch (err) {
    return {
      ok: false,
      issues: [{ file, line: 1, col: 1, path: '(document)', expected: 'valid YAML', message: `invalid YAML: ${(err as Error).message}` }],
    };
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
    const suggestion = knownSiblings(schema, path).find((k) => editDistance(k, name) <= 2);
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
      if (section in (raw as Record<string, unknown>)) {
        const pos = source.position([section], true);
        warnings.push({ file, line: pos.line, col: pos.col, path: section, expected: 'a field this engine enforces', message: `not enforced here: ${why}` });
      }
    }
  }
  warnings.sort((a, b) => a.line - b.line || a.col - b.col);
  return { ok: true, value: { data: result.data, warnings, source, raw } };
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
  const n = issues.length;
  return new NemoclawError('policy_invalid', `${source}: ${n} problem${n === 1 ? '' : 's'} in the policy\n${formatPolicyIssues(issues)}`, {
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

const ruleKey = (r: L7Rule) => `${r.method} ${r.path}`;

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
    const existing = out[name];
    out[name] = existing ? mergeNetworkPolicy(existing, policy) : policy;
  }
  return out;
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
 * Parse and validate a policy file's text. Presets it names are read from `presetsDir` and merged
 * structurally under it (the file wins). Throws NemoclawError('policy_invalid') with every issue.
 */
export function parsePolicy(text: string, source: string, opts: ParseOptions = {}): ParsedPolicy {
  const validated = validateYaml(text, source, policyFileSchema);
  if (!validated.ok) throw policyInvalid(source, validated.issues);
  const { data, warnings: fileWarnings, source: map, raw } = validated.value;
  const warnings = [...fileWarnings];
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
    warnings.push(...preset.value.warnings);
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

export async function loadPolicyFile(path: string, opts: ParseOptions = {}): Promise<ParsedPolicy> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (err) {
    throw new NemoclawError('not_found', `cannot read policy file ${path}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
      nextStep: 'check the path (the baseline policy is policies/openclaw-sandbox.yaml in the package)',
      exitCode: 2,
      cause: err,
    });
  }
  return parsePolicy(text, path, opts);
}
