/**
 * OpenShell's own checks of network endpoints (crates/openshell-supervisor-network/src/l7/mod.rs
 * `validate_l7_policies`, crates/openshell-policy/src/l7_validate.rs), run on the raw document
 * after the zod schema accepted its shape. A file OpenShell refuses is refused here too; a field
 * this engine cannot enforce is refused where ignoring it would widen a rule (invariant 3), and
 * only reported where ignoring it cannot.
 */

type PathKey = string | number;

export type FindingSeverity = 'error' | 'not-enforced' | 'meaning-changed';

export interface Finding {
  path: PathKey[];
  severity: FindingSeverity;
  message: string;
}

/** Endpoint fields enforced here. */
const ENDPOINT_FIELDS = new Set(['host', 'path', 'port', 'ports', 'protocol', 'tls', 'enforcement', 'access', 'rules', 'deny_rules', 'allowed_ips', 'allow_encoded_slash']);

/** OpenShell endpoint fields that cannot narrow what a rule allows here: accepted and reported. */
const ENDPOINT_NOT_ENFORCED: Record<string, string> = {
  websocket_credential_rewrite: 'there is no credential placeholder rewriting here',
  request_body_credential_rewrite: 'there is no credential placeholder rewriting here',
  allow_uninspected_credentials: 'there is no credential placeholder guard here',
  credential_signing: 'requests are not signed here',
  signing_service: 'requests are not signed here',
  signing_region: 'requests are not signed here',
  credential_binding: 'there are no provider credential bindings here',
  persisted_queries: 'GraphQL is not enforced here (protocol graphql is refused)',
  graphql_persisted_queries: 'GraphQL is not enforced here (protocol graphql is refused)',
  graphql_max_body_bytes: 'GraphQL is not enforced here (protocol graphql is refused)',
  json_rpc_max_body_bytes: 'JSON-RPC is not enforced here (protocols json-rpc and mcp are refused)',
  json_rpc: 'JSON-RPC is not enforced here (protocols json-rpc and mcp are refused)',
  mcp: 'MCP is not enforced here (protocol mcp is refused)',
};

/** Protocols whose rules read the request body; refused, since their rules would otherwise allow everything. */
const BODY_PROTOCOLS: Record<string, string> = {
  graphql: 'GraphQL operations (operation_type / operation_name / fields)',
  sql: 'SQL commands',
  'json-rpc': 'JSON-RPC methods',
  mcp: 'MCP methods and tools',
};

/** Rule fields of those protocols: refused (the rule would match more than it says). */
const BODY_RULE_FIELDS: Record<string, string> = {
  command: 'sql',
  operation_type: 'graphql',
  operation_name: 'graphql',
  fields: 'graphql',
  tool: 'mcp',
  params: 'mcp',
};

const STANDARD_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', '*'];
const WEBSOCKET_METHODS = ['GET', 'WEBSOCKET_TEXT', '*'];

function isObject(v: unknown): v is Record<string, unknown> {
  return v !== null && typeof v === 'object' && !Array.isArray(v);
}

function str(v: unknown): string {
  return typeof v === 'string' ? v : '';
}

/** OpenShell `check_glob_syntax`: unbalanced `[` / `{` (a warning upstream; such a glob matches nothing here). */
export function globSyntaxProblem(pattern: string): string | undefined {
  for (const [open, close] of [
    ['[', ']'],
    ['{', '}'],
  ] as const) {
    let depth = 0;
    for (const c of pattern) {
      if (c === open) depth++;
      else if (c === close) {
        if (depth === 0) return `glob pattern '${pattern}' has unmatched '${close}'`;
        depth--;
      }
    }
    if (depth > 0) return `glob pattern '${pattern}' has unclosed '${open}'`;
  }
  return undefined;
}

/** OpenShell `validate_host_wildcard`. */
export function hostWildcardProblem(host: string): string | undefined {
  if (!host.includes('*')) return undefined;
  if (host === '*' || host === '**') return `host wildcard '${host}' matches all hosts; use specific patterns like '*.example.com'`;
  const labels = host.split('.');
  const first = labels[0] ?? '';
  const recursive = `recursive host wildcard '**' is only allowed as the entire first DNS label, got '${host}'`;
  if (first.includes('**') && first !== '**') return recursive;
  for (const label of labels.slice(1)) {
    if (label.includes('**')) return recursive;
    if (label.includes('*') && label !== '*') return `middle DNS label wildcard must be the entire label '*', got '${host}'`;
  }
  if (labels.length <= 2) return `TLD wildcard '${host}' is not allowed; use subdomain wildcards like '*.example.com' instead`;
  return undefined;
}

function checkMatcherMap(out: Finding[], at: PathKey[], value: unknown): void {
  if (value === undefined || value === null) return;
  if (!isObject(value)) {
    out.push({ path: at, severity: 'error', message: 'expected map of matchers' });
    return;
  }
  for (const [key, m] of Object.entries(value)) {
    const here = [...at, key];
    if (typeof m === 'string') {
      const g = globSyntaxProblem(m);
      if (g) out.push({ path: here, severity: 'not-enforced', message: `${g} (it matches nothing here)` });
      continue;
    }
    if (!isObject(m)) {
      out.push({ path: here, severity: 'error', message: 'expected string glob or matcher object' });
      continue;
    }
    const keys = Object.keys(m);
    const hasAny = 'any' in m;
    const hasGlob = 'glob' in m;
    if ((!hasAny && !hasGlob) || keys.some((k) => k !== 'any' && k !== 'glob')) {
      out.push({ path: here, severity: 'error', message: 'unknown matcher keys; only `glob` or `any` are supported' });
      continue;
    }
    if (hasAny && hasGlob) {
      out.push({ path: here, severity: 'error', message: 'matcher cannot specify both `glob` and `any`' });
      continue;
    }
    if (hasGlob) {
      if (typeof m.glob !== 'string') out.push({ path: [...here, 'glob'], severity: 'error', message: 'expected glob string' });
      continue;
    }
    if (!Array.isArray(m.any)) out.push({ path: [...here, 'any'], severity: 'error', message: 'expected array of glob strings' });
    else if (m.any.length === 0) out.push({ path: [...here, 'any'], severity: 'error', message: 'list must not be empty' });
    else if (m.any.some((v) => typeof v !== 'string')) out.push({ path: [...here, 'any'], severity: 'error', message: 'all values must be strings' });
  }
}

function checkMethod(out: Finding[], at: PathKey[], method: unknown, protocol: string): void {
  if (typeof method !== 'string' || method === '') return;
  const valid = protocol === 'websocket' ? WEBSOCKET_METHODS : STANDARD_METHODS;
  if (!valid.includes(method.toUpperCase())) {
    out.push({ path: at, severity: 'not-enforced', message: `Unknown HTTP/WebSocket method '${method}'. Standard methods: ${valid.join(', ')}.` });
  }
}

/** Refuse the body-protocol fields and unknown fields of one allow body / deny rule. */
function checkRuleFields(out: Finding[], at: PathKey[], body: Record<string, unknown>, allowed: readonly string[], what: string): void {
  for (const key of Object.keys(body)) {
    if (allowed.includes(key)) continue;
    const proto = BODY_RULE_FIELDS[key];
    if (proto !== undefined) {
      out.push({
        path: [...at, key],
        severity: 'error',
        message: `\`${key}\` (protocol ${proto}) is not enforced here: the request body is not parsed, so this ${what} would match any request; refused rather than widened`,
      });
    } else {
      out.push({ path: [...at, key], severity: 'error', message: `unknown field \`${key}\` in a ${what} (OpenShell refuses it too); expected ${allowed.join(', ')}` });
    }
  }
}

function ruleIsEmpty(rule: unknown): boolean {
  if (!isObject(rule)) return true;
  const allow = rule.allow;
  if (allow === undefined || allow === null) return !('method' in rule) && !('path' in rule);
  if (!isObject(allow)) return true;
  return ['method', 'path', 'command', 'operation_type', 'operation_name'].every((k) => str(allow[k]) === '') && allow.tool === undefined && allow.params === undefined;
}

function checkEndpoint(out: Finding[], at: PathKey[], ep: Record<string, unknown>): void {
  const protocol = str(ep.protocol).toLowerCase();
  const access = str(ep.access);
  const rules = ep.rules;
  const denyRules = ep.deny_rules;
  const hasRules = Array.isArray(rules) && rules.length > 0;
  const hasDenyRules = Array.isArray(denyRules) && denyRules.length > 0;
  const l7 = protocol === 'rest' || protocol === 'websocket';

  for (const key of Object.keys(ep)) {
    if (ENDPOINT_FIELDS.has(key)) continue;
    const why = ENDPOINT_NOT_ENFORCED[key];
    if (why !== undefined) out.push({ path: [...at, key], severity: 'not-enforced', message: `not enforced here: ${why}` });
    else out.push({ path: [...at, key], severity: 'error', message: `unknown endpoint field \`${key}\` (OpenShell refuses it too); refused so that a misspelt restriction is never dropped` });
  }

  if (protocol !== '' && protocol !== 'tcp' && !l7) {
    const body = BODY_PROTOCOLS[protocol];
    out.push({
      path: [...at, 'protocol'],
      severity: 'error',
      message:
        body !== undefined
          ? `protocol ${protocol} is not enforced here (${body} are read from the request body, which this proxy does not parse); refused so that its rules cannot turn into allow-all — use protocol: rest with method/path rules, or no protocol for host-level access`
          : `unknown protocol '${protocol}' (expected tcp, rest, websocket, graphql, sql, json-rpc, or mcp)`,
    });
  }
  if (protocol === 'tcp' && (access !== '' || hasRules || hasDenyRules)) {
    out.push({ path: [...at, 'protocol'], severity: 'error', message: 'protocol tcp does not support access, rules, or deny_rules; remove those L7 fields' });
  }
  if (typeof ep.port === 'number' && ep.port > 0 && Array.isArray(ep.ports) && ep.ports.length > 0) {
    out.push({ path: [...at, 'ports'], severity: 'error', message: 'port and ports are mutually exclusive; use ports for multiple ports' });
  }
  if (typeof ep.host === 'string') {
    const problem = hostWildcardProblem(ep.host.trim().toLowerCase());
    if (problem) out.push({ path: [...at, 'host'], severity: 'error', message: problem });
  }
  if (typeof ep.path === 'string' && ep.path !== '') {
    const g = globSyntaxProblem(ep.path);
    if (g) out.push({ path: [...at, 'path'], severity: 'not-enforced', message: `${g} (it matches nothing here)` });
  }
  if (hasRules && access !== '') out.push({ path: [...at, 'access'], severity: 'error', message: 'rules and access are mutually exclusive' });
  if (l7 && !hasRules && access === '') out.push({ path: [...at, 'protocol'], severity: 'error', message: 'protocol requires rules or access to define allowed traffic' });
  if (hasDenyRules && !l7 && protocol !== 'tcp' && BODY_PROTOCOLS[protocol] === undefined) {
    out.push({ path: [...at, 'deny_rules'], severity: 'error', message: 'deny_rules require protocol (L7 inspection must be enabled)' });
  }
  if (hasDenyRules && !hasRules && access === '') {
    out.push({ path: [...at, 'deny_rules'], severity: 'error', message: 'deny_rules require rules or access to define the base allow set' });
  }
  if (Array.isArray(rules) && rules.length === 0) {
    out.push({ path: [...at, 'rules'], severity: 'error', message: 'rules list cannot be empty (would deny all traffic). Use `access: full` or remove rules.' });
  }
  if (Array.isArray(denyRules) && denyRules.length === 0) {
    out.push({ path: [...at, 'deny_rules'], severity: 'error', message: 'deny_rules list cannot be empty (would have no effect). Remove it if no denials are needed.' });
  }
  if (hasRules && (rules as unknown[]).every(ruleIsEmpty)) {
    out.push({ path: [...at, 'rules'], severity: 'error', message: 'rules would deny all traffic (no allow clause found). Use `access: full` or add allow clauses to rules.' });
  }
  // protocol: websocket is enforced as in OpenShell (src/egress/l7.ts): the upgrade is checked as a
  // GET, client text messages as WEBSOCKET_TEXT on the upgrade's path (a refused one closes the
  // connection with 1008); GraphQL-over-WebSocket rule fields are refused above.
  if (ep.tls === 'terminate' || ep.tls === 'passthrough') {
    out.push({ path: [...at, 'tls'], severity: 'not-enforced', message: `not enforced here: 'tls: ${ep.tls}' is deprecated and has no effect, as in OpenShell (TLS termination is automatic; use 'tls: skip' to disable); tunnels to endpoints with L7 rules are decrypted and checked` });
  } else if (ep.tls === 'skip') {
    const path = typeof ep.path === 'string' ? ep.path : '';
    const l7Fields = l7 || hasRules || hasDenyRules || path !== '' || (access !== '' && access !== 'full');
    if (l7Fields && protocol !== 'tcp') {
      out.push({
        path: [...at, 'tls'],
        severity: 'meaning-changed',
        message:
          "'tls: skip' with L7 rules: OpenShell tunnels such a CONNECT raw, so its rules are not applied there; here the CONNECT is refused (403) and only plain-HTTP requests reach it, checked per request. Remove tls: skip to have the rules checked on HTTPS, or the L7 fields (protocol, rules, access, deny_rules, path) for a raw tunnel",
      });
    }
  }

  if (Array.isArray(rules)) {
    rules.forEach((rule, j) => {
      const rat = [...at, 'rules', j];
      if (!isObject(rule)) return; // the schema already refused it
      if ('deny' in rule) {
        out.push({ path: [...rat, 'deny'], severity: 'error', message: '`deny:` inside `rules:` is refused (OpenShell refuses it too); put denials in the endpoint\'s deny_rules' });
      }
      if (isObject(rule.allow)) {
        checkRuleFields(out, rat, rule, ['allow'], 'rule');
        const allow = rule.allow;
        checkRuleFields(out, [...rat, 'allow'], allow, ['method', 'path', 'query'], 'allow rule');
        checkMethod(out, [...rat, 'allow', 'method'], allow.method, protocol);
        checkMatcherMap(out, [...rat, 'allow', 'query'], allow.query);
        if (typeof allow.path === 'string') {
          const g = globSyntaxProblem(allow.path);
          if (g) out.push({ path: [...rat, 'allow', 'path'], severity: 'not-enforced', message: `${g} (it matches nothing here)` });
        }
        const missing = ['method', 'path'].filter((k) => str(allow[k]) === '');
        if (missing.length > 0 && !ruleIsEmpty(rule)) {
          out.push({
            path: [...rat, 'allow'],
            severity: 'meaning-changed',
            message: `an allow rule without ${missing.join(' and ')} matches no request (as in OpenShell); earlier versions of nemoclaw-tui read a missing method as * and a missing path as /**`,
          });
        }
      } else if (!('deny' in rule)) {
        // Our shorthand {method, path[, query]} (defaults * and /**).
        checkRuleFields(out, rat, rule, ['allow', 'method', 'path', 'query'], 'rule');
        checkMethod(out, [...rat, 'method'], rule.method, protocol);
        checkMatcherMap(out, [...rat, 'query'], rule.query);
      }
    });
  }
  if (Array.isArray(denyRules)) {
    denyRules.forEach((rule, j) => {
      const dat = [...at, 'deny_rules', j];
      if (!isObject(rule)) return;
      if (isObject(rule.deny)) {
        checkRuleFields(out, dat, rule, ['deny'], 'deny rule');
        checkRuleFields(out, [...dat, 'deny'], rule.deny, ['method', 'path', 'query'], 'deny rule');
        checkMethod(out, [...dat, 'deny', 'method'], rule.deny.method, protocol);
        checkMatcherMap(out, [...dat, 'deny', 'query'], rule.deny.query);
        return;
      }
      checkRuleFields(out, dat, rule, ['method', 'path', 'query'], 'deny rule');
      checkMethod(out, [...dat, 'method'], rule.method, protocol);
      checkMatcherMap(out, [...dat, 'query'], rule.query);
      for (const k of ['method', 'path']) {
        if (str(rule[k]) === '') {
          out.push({
            path: [...dat, k],
            severity: 'error',
            message: `a deny rule needs \`${k}\` (OpenShell ignores a deny rule without it, earlier versions of nemoclaw-tui read it as ${k === 'method' ? '*' : '/**'}); write ${k === 'method' ? 'method: "*"' : 'path: "/**"'} to deny every ${k === 'method' ? 'method' : 'path'}`,
          });
        }
      }
      if (typeof rule.path === 'string') {
        const g = globSyntaxProblem(rule.path);
        if (g) out.push({ path: [...dat, 'path'], severity: 'not-enforced', message: `${g} (it matches nothing here)` });
      }
    });
  }
}

/** Findings for the `network_policies` of a raw (already schema-checked) document. */
export function networkPolicyFindings(raw: unknown): Finding[] {
  const out: Finding[] = [];
  if (!isObject(raw)) return out;
  // OpenShell runs these on matching traffic (content guards that redact or block); here nothing
  // would run, so the traffic they filter would pass unfiltered: refuse rather than widen.
  if (raw.network_middlewares !== undefined && !(isObject(raw.network_middlewares) && Object.keys(raw.network_middlewares).length === 0)) {
    out.push({
      path: ['network_middlewares'],
      severity: 'error',
      message: 'network middlewares (content guards) do not run here, so the traffic they filter would pass unfiltered; remove the section to run without them',
    });
  }
  if (!isObject(raw.network_policies)) return out;
  for (const [name, policy] of Object.entries(raw.network_policies)) {
    if (!isObject(policy) || !Array.isArray(policy.endpoints)) continue;
    const binaries = policy.binaries;
    if (policy.action !== 'deny' && policy.endpoints.length > 0 && (!Array.isArray(binaries) || binaries.length === 0)) {
      out.push({
        path: ['network_policies', name, Array.isArray(binaries) ? 'binaries' : 'endpoints'],
        severity: 'meaning-changed',
        message:
          'no `binaries`: no program may use these endpoints (OpenShell\'s meaning; earlier nemoclaw-tui let any program); list the programs, or `binaries: [{ path: "/**" }]` for all',
      });
    }
    policy.endpoints.forEach((ep, i) => {
      if (isObject(ep)) checkEndpoint(out, ['network_policies', name, 'endpoints', i], ep);
    });
  }
  return out;
}
