/**
 * Which endpoints get per-request (L7) checks. The checks themselves (method + path globs, on
 * every request of a keep-alive connection too) are the policy matcher's: the proxy asks
 * `decide({host, port, binary, method, path})` (src/policy/matcher.ts).
 */
import type { Endpoint } from '../policy/types.js';

/** Does this endpoint ask for per-request checks? */
export function endpointHasL7(ep: Endpoint | undefined): boolean {
  if (!ep) return false;
  return ep.protocol === 'rest' || ep.rules.length > 0 || ep.deny_rules.length > 0 || ep.access !== undefined;
}
