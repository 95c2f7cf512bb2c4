/**
 * The compiled network matcher. Rules are indexed so a decision touches only the rules that can
 * match the host: an exact-host map (host → port → rules), a map for the common `*.suffix`
 * patterns keyed by the suffix (a `*` is exactly one label, so the query's suffix after its first
 * label must equal it), and per-label-count lists for any other glob. Order of a decision:
 * explicit deny (deny policies, endpoint deny_rules) → allow → unknown.
 */
import { normalizeHost } from './net.js';
import { canonicalPathHasEncodedSlash, canonicalizeRequestTarget, compileGlob, parseQueryParams, pathGlob, queryGlob, type CanonicalTarget } from './path.js';
import type { Endpoint, L7Rule, NetworkDecision, NetworkQuery, PolicyDocument, QueryMatcher } from './types.js';

interface CompiledQuery {
  key: string;
  /** A value matches when one of these does. */
  globs: RegExp[];
}

interface CompiledL7 {
  method: string; // '*' = any; '' = never matches
  path: RegExp | undefined; // undefined = any path
  query: CompiledQuery[];
}

interface CompiledRule {
  id: string;
  deny: boolean;
  endpoint: Endpoint;
  /** `/**` (or, on a deny policy, no `binaries`): every program, identified or not. */
  anyBinary: boolean;
  /** An allow policy without `binaries`: no program (OpenShell's meaning). */
  noBinary: boolean;
  exactBinaries: Set<string>;
  globBinaries: RegExp[];
  allow: CompiledL7[];
  denyRules: CompiledL7[];
  /** `access` preset rules when the endpoint also has `rules` (only a preset merge makes that): both must allow. */
  accessToo: CompiledL7[] | undefined;
  /** The endpoint's `path` scope (OpenShell): its L7 checks apply only to matching paths. */
  scope: RegExp | undefined;
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

/** OpenShell's `access` presets as rules (l7/mod.rs `access_preset_rules`). */
function accessPreset(access: Endpoint['access'], protocol: string | undefined): L7Rule[] {
  const r = (method: string): L7Rule => ({ method, path: '**' });
  if (protocol === 'websocket') {
    if (access === 'read-only') return [r('GET')];
    if (access === 'read-write') return [r('GET'), r('WEBSOCKET_TEXT')];
    if (access === 'full') return [r('*')];
    return [];
  }
  if (access === 'read-only') return ['GET', 'HEAD', 'OPTIONS'].map(r);
  if (access === 'read-write') return ['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH'].map(r);
  if (access === 'full') return [r('*')];
  return [];
}

/** Path glob: `**` any depth (including none), `*` within one segment, `?` one character, `[…]`, `{a,b}`. */
export function pathGlobToRegex(glob: string): RegExp | undefined {
  return pathGlob(glob);
}

function labelGlobToRegex(label: string): RegExp {
  return compileGlob(label, '.') ?? /(?!)/;
}

function compileQuery(query: Record<string, QueryMatcher> | undefined): CompiledQuery[] {
  if (!query) return [];
  return Object.entries(query).map(([key, m]) => ({
    key,
    globs: (typeof m === 'string' ? [m] : 'glob' in m ? [m.glob] : m.any).map(queryGlob),
  }));
}

function compileL7(rules: L7Rule[]): CompiledL7[] {
  return rules.map((r) => ({
    method: r.method.toUpperCase(),
    path: r.path === '' ? /(?!)/ : pathGlobToRegex(r.path),
    query: compileQuery(r.query),
  }));
}

/** OpenShell `method_matches`: `*`, case-insensitive equality, and HEAD is GET (RFC 9110 §9.3.2). */
function methodMatches(ruleMethod: string, method: string): boolean {
  if (ruleMethod === '') return false;
  return ruleMethod === '*' || ruleMethod === method || (method === 'HEAD' && ruleMethod === 'GET');
}

/** Allow side: every configured key is present and every one of its values matches. */
function queryAllows(query: CompiledQuery[], params: Map<string, string[]>): boolean {
  for (const q of query) {
    const values = params.get(q.key);
    if (!values || values.length === 0) return false;
    for (const v of values) if (!q.globs.some((g) => g.test(v))) return false;
  }
  return true;
}

/** Deny side: every configured key is present and at least one of its values matches (fail closed on mixed values). */
function queryDenies(query: CompiledQuery[], params: Map<string, string[]>): boolean {
  for (const q of query) {
    const values = params.get(q.key);
    if (!values || values.length === 0) return false;
    if (!values.some((v) => q.globs.some((g) => g.test(v)))) return false;
  }
  return true;
}

function l7Matches(rules: CompiledL7[], req: L7Request, deny: boolean): CompiledL7 | undefined {
  for (const r of rules) {
    if (!methodMatches(r.method, req.method)) continue;
    if (r.path !== undefined && !r.path.test(req.path)) continue;
    if (r.query.length > 0 && !(deny ? queryDenies(r.query, req.params) : queryAllows(r.query, req.params))) continue;
    return r;
  }
  return undefined;
}

function compileRule(id: string, deny: boolean, endpoint: Endpoint, binaries: string[], refusal?: string): CompiledRule {
  const exactBinaries = new Set<string>();
  const globBinaries: RegExp[] = [];
  for (const b of binaries) {
    if (b.includes('*')) globBinaries.push(compileGlob(b, '/') ?? /(?!)/);
    else exactBinaries.add(b);
  }
  const allow = compileL7(endpoint.rules.length > 0 ? endpoint.rules : accessPreset(endpoint.access, endpoint.protocol));
  const denyRules = compileL7(endpoint.deny_rules);
  const accessToo = endpoint.rules.length > 0 && endpoint.access !== undefined ? compileL7(accessPreset(endpoint.access, endpoint.protocol)) : undefined;
  const scope = endpoint.path !== undefined && endpoint.path !== '' ? (pathGlobToRegex(endpoint.path) ?? /^/) : undefined;
  return {
    id,
    deny,
    endpoint,
    anyBinary: (deny && binaries.length === 0) || binaries.some(isAnyProgram),
    noBinary: !deny && binaries.length === 0,
    exactBinaries,
    globBinaries,
    allow,
    denyRules,
    accessToo,
    scope,
    hasL7: allow.length > 0 || denyRules.length > 0 || scope !== undefined,
    audit: endpoint.enforcement === 'audit',
    allowDecision: Object.freeze({ verdict: 'allow', rule: id, reason: `allowed by ${id}`, endpoint }),
    denyDecision: Object.freeze({ verdict: 'deny', rule: id, reason: refusal ?? `denied by ${id}`, endpoint }),
  };
}

/**
 * `binaries: [{path: "/**"}]` names every program. It is also taken to cover a client whose identity
 * could not be established (identity is best effort here), so it needs no lookup before deciding.
 */
export function isAnyProgram(pattern: string): boolean {
  return pattern === '/**' || pattern === '**';
}

function programMissReason(rule: CompiledRule, host: string, port: number, binary: string | undefined): string {
  const who = binary === undefined ? 'a program that could not be identified' : binary;
  if (rule.noBinary) return `${rule.id} covers ${host}:${port} but lists no binaries, so no program may use it (add \`binaries: [{ path: "/**" }]\` for every program)`;
  return `${rule.id} covers ${host}:${port} only for its binaries, not for ${who}`;
}

/** OpenShell `binary_allowed`: the client's executable or any of its ancestors; globs use `/` as delimiter. */
function binaryMatches(rule: CompiledRule, binary: string | undefined, ancestors: readonly string[] | undefined): boolean {
  if (rule.anyBinary) return true;
  if (rule.noBinary) return false;
  // The rule names binaries and we do not know who is asking: fail closed.
  if (binary === undefined) return false;
  if (rule.exactBinaries.has(binary)) return true;
  for (const re of rule.globBinaries) if (re.test(binary)) return true;
  if (ancestors) {
    for (const a of ancestors) {
      if (rule.exactBinaries.has(a)) return true;
      for (const re of rule.globBinaries) if (re.test(a)) return true;
    }
  }
  return false;
}

/** One L7 request, canonicalised once per decision (lazily: L4 decisions never pay for it). */
interface L7Request {
  method: string;
  /** Canonical path ('' when the target could not be canonicalised). */
  path: string;
  params: Map<string, string[]>;
  /** Why the target is refused before any rule is consulted. */
  invalid: string | undefined;
  encodedSlash: boolean;
}

function l7Request(method: string, target: string): L7Request {
  // Canonicalise keeping %2F, then refuse it per endpoint (`allow_encoded_slash`): the same
  // verdicts as canonicalising with each endpoint's options.
  const canon: CanonicalTarget = canonicalizeRequestTarget(target, { allowEncodedSlash: true });
  if (!canon.ok) return { method, path: '', params: new Map(), invalid: canon.message, encodedSlash: false };
  const params = parseQueryParams(canon.query);
  if (!params) return { method, path: canon.path, params: new Map(), invalid: 'the query has invalid percent-encoding or is not UTF-8', encodedSlash: false };
  return { method, path: canon.path, params, invalid: undefined, encodedSlash: canonicalPathHasEncodedSlash(canon.path) };
}

export interface NetworkMatcher {
  decide(query: NetworkQuery): NetworkDecision;
  /** Number of (endpoint, port) rules compiled. */
  readonly size: number;
}

/**
 * The port of an endpoint that covers every port. Only the operator overlay makes one (a "this host,
 * any port" rule, store.ts); the policy schema refuses 0, so a policy file cannot.
 */
export const ANY_PORT = 0;

class Matcher implements NetworkMatcher {
  private readonly exact = new Map<string, Map<number, CompiledRule[]>>();
  private readonly firstWildcard = new Map<string, Map<number, CompiledRule[]>>();
  private readonly globs = new Map<number, GlobTable>();
  /** Host patterns with a recursive `**` first label, and hostless (allowed_ips only) endpoints: scanned in order. */
  private readonly others: Array<{ host: RegExp | undefined; port: number; rule: CompiledRule }> = [];
  size = 0;

  add(host: string, port: number, rule: CompiledRule): void {
    this.size++;
    if (host === '' || host.startsWith('**')) {
      const entry = { host: host === '' ? undefined : compileGlob(host, '.') ?? /(?!)/, port, rule };
      if (rule.deny) this.others.unshift(entry);
      else this.others.push(entry);
      return;
    }
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
    const target = query.path ?? '/';
    const ctx: DecisionContext = { binary: query.binary, ancestors: query.ancestors, method, target, req: undefined };
    const state: DecisionState = { allow: undefined, refusal: undefined, deny: undefined, programMiss: undefined, requestChecks: false };

    const exactByPort = this.exact.get(host);
    const exact = exactByPort?.get(port);
    if (exact && this.scan(exact, ctx, state)) return state.deny!;
    // ANY_PORT entries (an operator's "this host, any port" overlay rule) after the port's own.
    const exactAny = exactByPort?.get(ANY_PORT);
    if (exactAny && this.scan(exactAny, ctx, state)) return state.deny!;
    const dot = host.indexOf('.');
    const suffix = dot < 0 ? '' : host.slice(dot + 1);
    const wildByPort = this.firstWildcard.get(suffix);
    const wild = wildByPort?.get(port);
    if (wild && this.scan(wild, ctx, state)) return state.deny!;
    const wildAny = wildByPort?.get(ANY_PORT);
    if (wildAny && this.scan(wildAny, ctx, state)) return state.deny!;
    if (this.globs.size > 0) {
      const table = this.globs.get(countLabels(host));
      if (table) {
        let labels: string[] | undefined;
        for (const [literalTail, bySuffix] of table) {
          const list = bySuffix.get(suffixOfLabels(host, literalTail));
          if (!list) continue;
          labels ??= host.split('.');
          for (const entry of list) {
            if ((entry.port !== port && entry.port !== ANY_PORT) || !globMatches(entry.labels, labels)) continue;
            if (this.scanOne(entry.rule, ctx, state)) return state.deny!;
          }
        }
      }
    }
    for (const entry of this.others) {
      if ((entry.port !== port && entry.port !== ANY_PORT) || (entry.host !== undefined && !entry.host.test(host))) continue;
      if (this.scanOne(entry.rule, ctx, state)) return state.deny!;
    }
    if (state.allow) return state.requestChecks ? { ...state.allow, inspect: true } : state.allow;
    if (state.refusal) return state.refusal;
    if (state.programMiss) return { verdict: 'unknown', reason: programMissReason(state.programMiss, host, port, query.binary) };
    return { verdict: 'unknown', reason: `no policy matches ${host}:${port}` };
  }

  /** true when a deny decided (in state.deny). */
  private scan(rules: CompiledRule[], ctx: DecisionContext, state: DecisionState): boolean {
    for (const rule of rules) if (this.scanOne(rule, ctx, state)) return true;
    return false;
  }

  private scanOne(rule: CompiledRule, ctx: DecisionContext, state: DecisionState): boolean {
    if (!binaryMatches(rule, ctx.binary, ctx.ancestors)) {
      if (!rule.deny) state.programMiss ??= rule;
      return false;
    }
    const method = ctx.method;
    if (rule.deny) {
      // A deny policy with L7 rules only denies the requests they name; at L4 it cannot decide yet.
      if (rule.allow.length === 0) {
        state.deny = rule.denyDecision;
        return true;
      }
      if (method === undefined) {
        state.requestChecks = true;
        return false;
      }
      const req = (ctx.req ??= l7Request(method, ctx.target));
      if (req.invalid !== undefined || l7Matches(rule.allow, req, true)) {
        state.deny = req.invalid !== undefined ? { verdict: 'deny', rule: rule.id, reason: req.invalid, endpoint: rule.endpoint } : rule.denyDecision;
        return true;
      }
      return false;
    }
    if (method === undefined || !rule.hasL7) {
      if (method === undefined && rule.denyRules.length > 0) state.requestChecks = true;
      state.allow ??= rule.allowDecision;
      return false;
    }
    const req = (ctx.req ??= l7Request(method, ctx.target));
    if (req.invalid !== undefined) {
      // Not canonicalisable: refused outright (OpenShell answers such a request with an error).
      state.deny = { verdict: 'deny', rule: rule.id, reason: `${method} refused: ${req.invalid}`, endpoint: rule.endpoint };
      return true;
    }
    const p = req.path;
    if (rule.scope !== undefined && !rule.scope.test(p)) {
      state.refusal ??= { verdict: 'deny', rule: rule.id, reason: `${p} is outside the path ${rule.endpoint.path} of ${rule.id}`, endpoint: rule.endpoint };
      return false;
    }
    if (req.encodedSlash && rule.endpoint.allow_encoded_slash !== true) {
      state.deny = { verdict: 'deny', rule: rule.id, reason: `${method} refused: ${p} contains an encoded '/' (%2F), which ${rule.id} does not allow (allow_encoded_slash)`, endpoint: rule.endpoint };
      return true;
    }
    let refusal: string | undefined;
    const denied = l7Matches(rule.denyRules, req, true);
    if (denied) refusal = `${method} ${p} matches a deny_rule of ${rule.id}`;
    else if ((rule.accessToo !== undefined && !l7Matches(rule.accessToo, req, false)) || (rule.endpoint.rules.length === 0 && rule.endpoint.access !== undefined && !l7Matches(rule.allow, req, false))) {
      refusal = `${method} is not allowed by access: ${rule.endpoint.access} of ${rule.id}`;
    } else if (!l7Matches(rule.allow, req, false)) refusal = `no rule of ${rule.id} allows ${method} ${p}`;
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

interface DecisionContext {
  binary: string | undefined;
  ancestors: readonly string[] | undefined;
  method: string | undefined;
  target: string;
  req: L7Request | undefined;
}

interface DecisionState {
  allow: NetworkDecision | undefined;
  refusal: NetworkDecision | undefined;
  deny: NetworkDecision | undefined;
  /** The first allow rule that covered (host, port) but not the program asking (for the reason). */
  programMiss: CompiledRule | undefined;
  /** At L4: a rule covering this program refuses some requests (deny_rules / a deny policy with rules). */
  requestChecks: boolean;
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
      const rule = compileRule(`${name}/${index}`, policy.action === 'deny', endpoint, binaries, policy.refusal);
      const host = normalizeHost(endpoint.host);
      for (const port of endpoint.ports) matcher.add(host, port, rule);
    });
  }
  return matcher;
}
