/**
 * Which endpoints get per-request (L7) checks, and the one request-target both the check and the
 * upstream see. The checks themselves (method + canonical path + query globs, on every request of
 * a keep-alive connection too) are the policy matcher's: the proxy asks
 * `decide({host, port, binary, method, path})` (src/policy/matcher.ts).
 */
import { canonicalizeRequestTarget } from '../policy/path.js';
import type { Endpoint } from '../policy/types.js';

/** Does this endpoint ask for per-request checks? */
export function endpointHasL7(ep: Endpoint | undefined): boolean {
  if (!ep) return false;
  return (
    ep.protocol === 'rest' ||
    ep.protocol === 'websocket' ||
    ep.rules.length > 0 ||
    ep.deny_rules.length > 0 ||
    ep.access !== undefined ||
    ep.path !== undefined
  );
}

export type L7Target = { ok: true; path: string; pathAndQuery: string } | { ok: false; reason: string };

/**
 * The canonical request-target (OpenShell l7/path.rs): `//` collapsed, unreserved bytes decoded,
 * `;params` stripped, dot segments resolved; `%00`, `..` above the root and `%2F` (unless the
 * endpoint has `allow_encoded_slash`) refused. The proxy matches and forwards exactly this, so the
 * upstream cannot dispatch on a path the policy did not decide on. The query is kept byte for byte.
 */
export function canonicalL7Target(ep: Endpoint | undefined, pathAndQuery: string): L7Target {
  const c = canonicalizeRequestTarget(pathAndQuery, { allowEncodedSlash: ep?.allow_encoded_slash === true });
  if (!c.ok) return { ok: false, reason: c.message };
  return { ok: true, path: c.path, pathAndQuery: c.query === undefined ? c.path : `${c.path}?${c.query}` };
}
