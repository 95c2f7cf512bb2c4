/**
 * L7 (method + path) on egress endpoints. The proxy asks the policy matcher per request, so these
 * are the matcher's answers for the rules an egress endpoint carries, plus which endpoints the
 * proxy checks per request at all (endpointHasL7).
 */
import { describe, expect, it } from 'vitest';
import { endpointHasL7 } from '../../src/egress/l7.js';
import { compileNetworkMatcher, parsePolicy } from '../../src/policy/index.js';
import type { Endpoint } from '../../src/policy/types.js';

function matcherFor(endpointYaml: string) {
  const parsed = parsePolicy(`version: 1\nnetwork_policies:\n  api:\n    binaries: [{ path: "/**" }]\n    endpoints:\n      - ${endpointYaml}\n`, 'l7.yaml');
  return compileNetworkMatcher(parsed.doc);
}

const allowed = (m: ReturnType<typeof matcherFor>, method: string, path: string): boolean =>
  m.decide({ host: 'api.x.com', port: 80, method, path }).verdict === 'allow';

describe('L7 rules as the proxy applies them', () => {
  it('allows by method and path glob and refuses the rest', () => {
    const m = matcherFor('{ host: api.x.com, port: 80, protocol: rest, rules: [{ allow: { method: GET, path: "/repos/**" } }, { allow: { method: POST, path: "/v1/*/items" } }] }');
    expect(allowed(m, 'GET', '/repos/a/b')).toBe(true);
    expect(allowed(m, 'GET', '/repos')).toBe(true);
    expect(allowed(m, 'POST', '/repos/a')).toBe(false);
    expect(allowed(m, 'POST', '/v1/x/items')).toBe(true);
    expect(allowed(m, 'POST', '/v1/x/y/items')).toBe(false);
  });

  it('applies deny_rules before everything, and access presets', () => {
    const m = matcherFor('{ host: api.x.com, port: 80, protocol: rest, access: read-only, deny_rules: [{ method: "*", path: "/admin/**" }] }');
    expect(allowed(m, 'GET', '/x')).toBe(true);
    expect(allowed(m, 'DELETE', '/x')).toBe(false);
    expect(allowed(m, 'GET', '/admin/users')).toBe(false);
    expect(allowed(m, 'GET', '/admin')).toBe(false);
    expect(allowed(matcherFor('{ host: api.x.com, port: 80 }'), 'DELETE', '/anything')).toBe(true);
  });

  it('checks per request only endpoints that carry L7 rules', () => {
    const ep = (over: Partial<Endpoint>): Endpoint => ({ host: 'api.x.com', ports: [80], rules: [], deny_rules: [], allowed_ips: [], ...over });
    expect(endpointHasL7(undefined)).toBe(false);
    expect(endpointHasL7(ep({}))).toBe(false);
    expect(endpointHasL7(ep({ protocol: 'tcp' }))).toBe(false);
    expect(endpointHasL7(ep({ protocol: 'rest' }))).toBe(true);
    expect(endpointHasL7(ep({ access: 'read-only' }))).toBe(true);
    expect(endpointHasL7(ep({ deny_rules: [{ method: '*', path: '/admin/**' }] }))).toBe(true);
  });
});
