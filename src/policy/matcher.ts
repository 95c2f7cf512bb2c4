/**
 * The compiled network matcher. Rules are indexed so a decision touches only the rules that can
 * match the host: an exact-host map (host → port → rules), a map for the common `*.suffix`
 * patterns keyed by the suffix (a `*` is exactly one label, so the query's suffix after its first
 * label must equal it), and per-label-count lists for any other glob. Order of a decision:
 * explicit deny (deny policies, endpoint deny_rules) → allow → unknown.
 */
import { normalizeHost } from './net.js';
import type { Endpoint, L7Rule, NetworkDecision, NetworkQuery, PolicyDocument } from './types.js';

interface CompiledL7 {
  method: string; // '*' = any
  path: RegExp | undefined; // undefined = any path
}

interface CompiledRule {
  id: string;
  deny: boolean;
  endpoint: Endpoint;
  anyBinary: boolean;
  exactBinaries: Set<string>;
  globBinaries: RegExp[];
  allow: CompiledL7[];
  denyRules: CompiledL7[];
  methods: Set<string> | undefined; // from `access`
  hasL7: boolean;
  audit: boolean;
  /** Shared decision objects, so a plain allow/deny allocates nothing. */
  allowDecision: NetworkDecision;
  denyDecision: NetworkDecision;
}

interface GlobEntry {
  labels: Array<string | RegExp>; // literal label or per-label glob
  port: number;
  rule: CompiledRule;
}

/** Globs of one label count, keyed by how many literal labels they end with, then by that suffix. */
type GlobTable = Map<number, Map<string, GlobEntry[]>>;

const READ_ONLY = new Set(['GET', 'HEAD', 'OPTIONS']);
const READ_WRITE = new Set(['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH']);

function escapeRegex(s: string): string {
  return s.replace(/[.+^${}()|[\]\\]/g, '\\$&');
}

/** Path glob: `**` any depth (including none), `*` within one segment, `?` one character. */
export function pathGlobToRegex(glob: string): RegExp | undefined {
  if (glob === '/**' || glob === '**') return undefined;
  let re = '';
  for (let i = 0; i < glob.length; i++) {
    const c = glob[i]!;
    if (c === '*') {
      if (glob[i + 1] === '*') {
        i++;
        if (glob[i + 1] === '/') {
          i++;
          re += '(?:.*/)?';
        } else if (re.endsWith('/') && i === glob.length - 1) {
          // A trailing `/**` covers the directory itself too: a deny rule for `/admin/**` must also
          // refuse `/admin`, or the rule is bypassed by dropping the slash.
          re = `${re.slice(0, -1)}(?:/.*)?`;
        } else re += '.*';
      } else re += '[^/]*';
    } else if (c === '?') re += '[^/]';
    else re += escapeRegex(c);
  }
  return new RegExp(`^${re}$`);
}

function labelGlobToRegex(label: string): RegExp {
  return new RegExp(`^${label.split('*').map(escapeRegex).join('[^.]*')}$`);
}

function compileL7(rules: L7Rule[]): CompiledL7[] {
  return rules.map((r) => ({ method: r.method.toUpperCase(), path: pathGlobToRegex(r.path) }));
}

function l7Matches(rules: CompiledL7[], method: string, path: string): CompiledL7 | undefined {
  for (const r of rules) {
    if ((r.method === '*' || r.method === method) && (r.path === undefined || r.path.test(path))) return r;
  }
  return undefined;
}

function compileRule(id: string, deny: boolean, endpoint: Endpoint, binaries: string[]): CompiledRule {
  const exactBinaries = new Set<string>();
  const globBinaries: RegExp[] = [];
  for (const b of binaries) {
    if (b.includes('*') || b.includes('?')) globBinaries.push(pathGlobToRegex(b) ?? /^/);
    else exactBinaries.add(b);
  }
  const allow = compileL7(endpoint.rules);
  const denyRules = compileL7(endpoint.deny_rules);
  const methods = endpoint.access === 'read-only' ? READ_ONLY : endpoint.access === 'read-write' ? READ_WRITE : undefined;
  return {
    id,
    deny,
    endpoint,
    anyBinary: binaries.length === 0,
    exactBinaries,
    globBinaries,
    allow,
    denyRules,
    methods,
    hasL7: allow.length > 0 || denyRules.length > 0 || methods !== undefined,
    audit: endpoint.enforcement === 'audit',
    allowDecision: Object.freeze({ verdict: 'allow', rule: id, reason: `allowed by ${id}`, endpoint }),
    denyDecision: Object.freeze({ verdict: 'deny', rule: id, reason: `denied by ${id}`, endpoint }),
  };
}

function binaryMatches(rule: CompiledRule, binary: string | undefined): boolean {
  if (rule.anyBinary) return true;
  // The rule names binaries and we do not know who is asking: fail closed.
  if (binary === undefined) return false;
  if (rule.exactBinaries.has(binary)) return true;
  for (const re of rule.globBinaries) if (re.test(binary)) return true;
  return false;
}

export interface NetworkMatcher {
  decide(query: NetworkQuery): NetworkDecision;
  /** Number of (endpoint, port) rules compiled. */
  readonly size: number;
}

class Matcher implements NetworkMatcher {
  private readonly exact = new Map<string, Map<number, CompiledRule[]>>();
  private readonly firstWildcard = new Map<string, Map<number, CompiledRule[]>>();
  private readonly globs = new Map<number, GlobTable>();
  size = 0;

  add(host: string, port: number, rule: CompiledRule): void {
    this.size++;
    if (!host.includes('*')) {
      push(this.exact, host, port, rule);
      return;
    }
    const labels = host.split('.');
    if (labels[0] === '*' && labels.slice(1).every((l) => !l.includes('*'))) {
      push(this.firstWildcard, labels.slice(1).join('.'), port, rule);
      return;
    }
    const entry: GlobEntry = { labels: labels.map((l) => (l.includes('*') ? labelGlobToRegex(l) : l)), port, rule };
    let literalTail = 0;
    while (literalTail < labels.length && !labels[labels.length - 1 - literalTail]!.includes('*')) literalTail++;
    const suffix = labels.slice(labels.length - literalTail).join('.');
    let table = this.globs.get(labels.length);
    if (!table) this.globs.set(labels.length, (table = new Map()));
    let bySuffix = table.get(literalTail);
    if (!bySuffix) table.set(literalTail, (bySuffix = new Map()));
    const list = bySuffix.get(suffix);
    if (!list) bySuffix.set(suffix, [entry]);
    else if (rule.deny) list.unshift(entry);
    else list.push(entry);
  }

  decide(query: NetworkQuery): NetworkDecision {
    const host = normalizeHost(query.host);
    const port = query.port;
    const method = query.method === undefined ? undefined : query.method.toUpperCase();
    let path = query.path;
    if (path !== undefined) {
      const q = path.indexOf('?');
      if (q >= 0) path = path.slice(0, q);
      if (path === '') path = '/';
    }
    const state: DecisionState = { allow: undefined, refusal: undefined, deny: undefined };

    const exact = this.exact.get(host)?.get(port);
    if (exact && this.scan(exact, query.binary, method, path, state)) return state.deny!;
    const dot = host.indexOf('.');
    const suffix = dot < 0 ? '' : host.slice(dot + 1);
    const wild = this.firstWildcard.get(suffix)?.get(port);
    if (wild && this.scan(wild, query.binary, method, path, state)) return state.deny!;
    if (this.globs.size > 0) {
      const table = this.globs.get(countLabels(host));
      if (table) {
        let labels: string[] | undefined;
        for (const [literalTail, bySuffix] of table) {
          const list = bySuffix.get(suffixOfLabels(host, literalTail));
          if (!list) continue;
          labels ??= host.split('.');
          for (const entry of list) {
            if (entry.port !== port || !globMatches(entry.labels, labels)) continue;
            if (this.scanOne(entry.rule, query.binary, method, path, state)) return state.deny!;
          }
        }
      }
    }
    if (state.allow) return state.allow;
    if (state.refusal) return state.refusal;
    return { verdict: 'unknown', reason: `no policy matches ${host}:${port}` };
  }

  /** true when a deny decided (in state.deny). */
  private scan(rules: CompiledRule[], binary: string | undefined, method: string | undefined, path: string | undefined, state: DecisionState): boolean {
    for (const rule of rules) if (this.scanOne(rule, binary, method, path, state)) return true;
    return false;
  }

  private scanOne(rule: CompiledRule, binary: string | undefined, method: string | undefined, path: string | undefined, state: DecisionState): boolean {
    if (!binaryMatches(rule, binary)) return false;
    if (rule.deny) {
      // A deny policy with L7 rules only denies the requests they name; at L4 it cannot decide yet.
      if (rule.allow.length === 0 || (method !== undefined && l7Matches(rule.allow, method, path ?? '/'))) {
        state.deny = rule.denyDecision;
        return true;
      }
      return false;
    }
    if (method === undefined || !rule.hasL7) {
      state.allow ??= rule.allowDecision;
      return false;
    }
    const p = path ?? '/';
    let refusal: string | undefined;
    const denied = l7Matches(rule.denyRules, method, p);
    if (denied) refusal = `${method} ${p} matches a deny_rule of ${rule.id}`;
    else if (rule.methods && !rule.methods.has(method)) refusal = `${method} is not allowed by access: ${rule.endpoint.access} of ${rule.id}`;
    else if (rule.allow.length > 0 && !l7Matches(rule.allow, method, p)) refusal = `no rule of ${rule.id} allows ${method} ${p}`;
    if (refusal === undefined) {
      state.allow ??= rule.allowDecision;
      return false;
    }
    if (rule.audit) {
      state.allow ??= { verdict: 'allow', rule: rule.id, reason: `audit only (would deny: ${refusal})`, endpoint: rule.endpoint };
      return false;
    }
    if (denied) {
      state.deny = { verdict: 'deny', rule: rule.id, reason: refusal, endpoint: rule.endpoint };
      return true;
    }
    state.refusal ??= { verdict: 'deny', rule: rule.id, reason: refusal, endpoint: rule.endpoint };
    return false;
  }
}

interface DecisionState {
  allow: NetworkDecision | undefined;
  refusal: NetworkDecision | undefined;
  deny: NetworkDecision | undefined;
}

function push(map: Map<string, Map<number, CompiledRule[]>>, key: string, port: number, rule: CompiledRule): void {
  let byPort = map.get(key);
  if (!byPort) map.set(key, (byPort = new Map()));
  const list = byPort.get(port);
  if (!list) byPort.set(port, [rule]);
  // Deny rules first, so a deny in the same bucket is seen before allows are recorded.
  else if (rule.deny) list.unshift(rule);
  else list.push(rule);
}

function countLabels(host: string): number {
  let n = 1;
  for (let i = host.indexOf('.'); i >= 0; i = host.indexOf('.', i + 1)) n++;
  return n;
}

/** The last `count` labels of a host ('' for 0). */
function suffixOfLabels(host: string, count: number): string {
  if (count === 0) return '';
  let i = host.length;
  for (let k = 0; k < count; k++) {
    i = host.lastIndexOf('.', i - 1);
    if (i < 0) return host;
  }
  return host.slice(i + 1);
}

function globMatches(pattern: Array<string | RegExp>, labels: string[]): boolean {
  for (let i = 0; i < pattern.length; i++) {
    const p = pattern[i]!;
    const l = labels[i]!;
    if (typeof p === 'string' ? p !== l : !p.test(l)) return false;
  }
  return true;
}

/** Compile a document's network policies into a matcher. */
export function compileNetworkMatcher(doc: PolicyDocument): NetworkMatcher {
  const matcher = new Matcher();
  for (const [name, policy] of Object.entries(doc.network_policies)) {
    const binaries = policy.binaries.map((b) => b.path);
    policy.endpoints.forEach((endpoint, index) => {
      const rule = compileRule(`${name}/${index}`, policy.action === 'deny', endpoint, binaries);
      const host = normalizeHost(endpoint.host);
      for (const port of endpoint.ports) matcher.add(host, port, rule);
    });
  }
  return matcher;
}
