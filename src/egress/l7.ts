/**
 * L7 checks for plain HTTP and `protocol: rest` endpoints: method + path globs, checked on every
 * request (also each request of a keep-alive connection).
 */
import type { Endpoint, L7Rule } from '../policy/types.js';

const ACCESS_METHODS: Record<string, string[]> = {
  'read-only': ['GET', 'HEAD', 'OPTIONS'],
  'read-write': ['GET', 'HEAD', 'OPTIONS', 'POST', 'PUT', 'PATCH'],
  full: ['*'],
};

const globCache = new Map<string, RegExp>();

/** `*` matches within one segment, `**` across segments. */
export function pathGlobToRegExp(glob: string): RegExp {
  let re = globCache.get(glob);
  if (re) return re;
  const escape = (t: string): string => t.replace(/[.+?^${}()|[\]\\]/g, '\\$&');
  // A trailing "/**" also matches the parent itself ("/repos/**" matches "/repos").
  const trailing = glob.endsWith('/**');
  const body = trailing ? glob.slice(0, -3) : glob;
  let src = '^';
  for (let i = 0; i < body.length; i++) {
    const ch = body[i] as string;
    if (ch === '*' && body[i + 1] === '*') {
      src += '.*';
      i++;
    } else if (ch === '*') src += '[^/]*';
    else src += escape(ch);
  }
  if (trailing) src += '(?:/.*)?';
  re = new RegExp(src + '$');
  if (globCache.size > 1000) globCache.clear();
  globCache.set(glob, re);
  return re;
}

function ruleMatches(rule: L7Rule, method: string, path: string): boolean {
  const m = rule.method.toUpperCase();
  if (m !== '*' && m !== method) return false;
  return pathGlobToRegExp(rule.path).test(path);
}

/** Does this endpoint ask for per-request checks? */
export function endpointHasL7(ep: Endpoint | undefined): boolean {
  if (!ep) return false;
  return ep.protocol === 'rest' || ep.rules.length > 0 || ep.deny_rules.length > 0 || ep.access !== undefined;
}

export interface L7Verdict {
  allowed: boolean;
  reason: string;
}

export function checkL7(ep: Endpoint | undefined, method: string, path: string): L7Verdict {
  if (!ep || !endpointHasL7(ep)) return { allowed: true, reason: 'no L7 rules' };
  method = method.toUpperCase();
  const denied = ep.deny_rules.find((r) => ruleMatches(r, method, path));
  if (denied) return { allowed: false, reason: `${method} ${path} matches deny rule ${denied.method} ${denied.path}` };
  const hasAllowList = ep.rules.length > 0 || ep.access !== undefined;
  if (!hasAllowList) return { allowed: true, reason: 'rest endpoint without allow rules' };
  const byAccess = ep.access ? ACCESS_METHODS[ep.access] : undefined;
  if (byAccess && (byAccess.includes('*') || byAccess.includes(method))) return { allowed: true, reason: `access ${ep.access}` };
  const allowed = ep.rules.find((r) => ruleMatches(r, method, path));
  if (allowed) return { allowed: true, reason: `rule ${allowed.method} ${allowed.path}` };
  return { allowed: false, reason: `${method} ${path} is not allowed by the endpoint's rules` };
}
