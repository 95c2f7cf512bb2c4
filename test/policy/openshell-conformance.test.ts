/**
 * Conformance with NVIDIA OpenShell's policy engine: cases ported from upstream's own tests
 * (NVIDIA/OpenShell at 2f7fb65, crates/openshell-supervisor-network and crates/openshell-policy).
 * Each case names its source as `file::test_fn`; inputs and expectations are upstream's, the code
 * is ours. Where this engine deliberately differs (it refuses a file upstream accepts, because it
 * cannot enforce it) the case says so.
 */
import { createConnection } from 'node:net';
import { describe, expect, it } from 'vitest';
import { compileNetworkMatcher, parsePolicy } from '../../src/policy/index.js';
import { canonicalizeRequestTarget, canonicalPathHasEncodedSlash, parseQueryParams } from '../../src/policy/path.js';
import { isNemoclawError } from '../../src/shared/errors.js';
import { classifyAddress, guardDestination } from '../../src/egress/ssrf.js';
import { proxyRequest, startProxy, startUpstream, testResolver } from '../egress/harness.js';

const PATH_RS = 'crates/openshell-supervisor-network/src/l7/path.rs';
const REST_RS = 'crates/openshell-supervisor-network/src/l7/rest.rs';
const OPA_RS = 'crates/openshell-supervisor-network/src/opa.rs';
const MOD_RS = 'crates/openshell-supervisor-network/src/l7/mod.rs';
const L7_VALIDATE_RS = 'crates/openshell-policy/src/l7_validate.rs';
const PROXY_RS = 'crates/openshell-supervisor-network/src/proxy.rs';

function load(yaml: string) {
  return parsePolicy(`version: 1\n${yaml}`, 'conformance.yaml');
}
function matcher(yaml: string) {
  return compileNetworkMatcher(load(yaml).doc);
}
/** The error text when the file is refused, undefined when it loads. */
function refusal(yaml: string): string | undefined {
  try {
    load(yaml);
    return undefined;
  } catch (err) {
    if (isNemoclawError(err)) return err.message;
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Request-target canonicalisation (path.rs)
// ---------------------------------------------------------------------------------------------

type CanonCase = [source: string, input: string, expected: string | { error: string }, opts?: { allowEncodedSlash?: boolean; stripPathParameters?: boolean }];
const slash = { allowEncodedSlash: true };
const CANON: CanonCase[] = [
  ['literal_dot_segments_resolve', '/a/./b', '/a/b'],
  ['literal_dot_segments_resolve', '/a/b/.', '/a/b/'],
  ['literal_dot_segments_resolve', '/a/../b', '/b'],
  ['literal_dot_segments_resolve', '/a/b/..', '/a/'],
  ['percent_encoded_dot_segments_resolve_the_same_way', '/public/%2e%2e/secret', '/secret'],
  ['percent_encoded_dot_segments_resolve_the_same_way', '/public/%2E%2E/secret', '/secret'],
  ['percent_encoded_dot_segments_resolve_the_same_way', '/public/%2e/secret', '/public/secret'],
  ['traversal_above_root_is_rejected', '/..', { error: 'traversal_above_root' }],
  ['traversal_above_root_is_rejected', '/a/../..', { error: 'traversal_above_root' }],
  ['traversal_above_root_is_rejected', '/a/%2e%2e/%2e%2e', { error: 'traversal_above_root' }],
  ['doubled_slashes_collapse', '//', '/'],
  ['doubled_slashes_collapse', '//public//../secret', '/secret'],
  ['doubled_slashes_collapse', '/public//secret', '/public/secret'],
  ['encoded_slash_rejected_by_default', '/a/%2f/b', { error: 'encoded_slash_not_allowed' }],
  ['encoded_slash_rejected_by_default', '/public/..%2fsecret', { error: 'encoded_slash_not_allowed' }],
  ['encoded_slash_preserved_when_opted_in', '/a/%2f/b', '/a/%2F/b', slash],
  ['encoded_slash_preserved_when_opted_in', '/a/%2F/b', '/a/%2F/b', slash],
  ['null_and_control_bytes_rejected', '/a%00b', { error: 'null_or_control_byte' }],
  ['null_and_control_bytes_rejected', '/a%0Ab', { error: 'null_or_control_byte' }],
  ['null_and_control_bytes_rejected', '/a%0Db', { error: 'null_or_control_byte' }],
  ['null_and_control_bytes_rejected', '/a%7Fb', { error: 'null_or_control_byte' }],
  ['null_and_control_bytes_rejected', '/a\nb', { error: 'null_or_control_byte' }],
  ['fragment_rejected', '/a#b', { error: 'fragment_in_request_target' }],
  ['absolute_form_strips_authority', 'http://host/a/../b', '/b'],
  ['absolute_form_strips_authority', 'https://host', '/'],
  ['absolute_form_strips_authority', 'http://host:443/foo', '/foo'],
  ['legitimate_percent_encoded_bytes_round_trip', '/files/hello%20world.txt', '/files/hello%20world.txt'],
  ['legitimate_percent_encoded_bytes_round_trip', '/search/a%3Fb', '/search/a%3Fb'],
  ['legitimate_percent_encoded_bytes_round_trip', '/users/%40alice', '/users/@alice'],
  ['path_parameters_stripped_by_default', '/a;jsessionid=xyz/b', '/a/b'],
  ['path_parameters_stripped_by_default', '/public;x=1/../secret', '/secret'],
  ['path_parameters_preserved_when_disabled', '/a;jsessionid=xyz/b', '/a;jsessionid=xyz/b', { stripPathParameters: false }],
  ['non_ascii_raw_byte_rejected', '/aé', { error: 'non_ascii' }],
  ['percent_encoded_non_ascii_bytes_round_trip', '/users/caf%C3%A9', '/users/caf%C3%A9'],
  ['empty_and_root_equivalent', '', '/'],
  ['empty_and_root_equivalent', '/', '/'],
  ['path_too_long_rejected', `/${'a'.repeat(4096)}`, { error: 'path_too_long' }],
  ['mixed_case_percent_normalizes_to_uppercase', '/a/caf%c3%a9', '/a/caf%C3%A9'],
  ['regression_public_slash_dotdot_secret', '/public/../secret', '/secret'],
  ['regression_percent_encoded_slash_in_dotdot_rejected', '/public/%2E%2E%2Fsecret', { error: 'encoded_slash_not_allowed' }],
  ['regression_double_slash_prefix', '//public/../secret', '/secret'],
  ['regression_dot_slash_dotdot', '/public/./../secret', '/secret'],
  ['regression_dotdot_with_path_parameter_is_resolved_not_smuggled', '/public/..;/secret', '/secret'],
  ['regression_dotdot_with_path_parameter_is_resolved_not_smuggled', '/public/..;x/secret', '/secret'],
  ['regression_dotdot_with_path_parameter_is_resolved_not_smuggled', '/public/..;jsessionid=xyz/secret', '/secret'],
  ['regression_dotdot_with_path_parameter_is_resolved_not_smuggled', '/public/.;/secret', '/public/secret'],
  ['regression_dotdot_with_path_parameter_is_resolved_not_smuggled', '/public/.;x/secret', '/public/secret'],
  ['regression_percent_encoded_dotdot_with_path_parameter', '/public/%2e%2e;/secret', '/secret'],
  ['regression_percent_encoded_dotdot_with_path_parameter', '/public/..%3B/secret', '/secret'],
  ['regression_percent_encoded_dotdot_with_path_parameter', '/public/..%3b/secret', '/secret'],
  ['regression_chained_dotdot_with_path_parameters_hits_root_guard', '/public/..;/..;/secret', { error: 'traversal_above_root' }],
  ['regression_chained_dotdot_with_path_parameters_hits_root_guard', '/api/v1/..;/..;/..;/admin/keys', { error: 'traversal_above_root' }],
  ['regression_chained_dotdot_with_path_parameters_hits_root_guard', '/..;', { error: 'traversal_above_root' }],
  ['regression_dotdot_behind_encoded_slash_is_rejected_when_opted_in', '/public/..%2fsecret', { error: 'residual_dot_segment' }, slash],
  ['regression_dotdot_behind_encoded_slash_is_rejected_when_opted_in', '/public/..%2f..%2fsecret', { error: 'residual_dot_segment' }, slash],
  ['regression_dotdot_behind_encoded_slash_is_rejected_when_opted_in', '/public/.%2fsecret', { error: 'residual_dot_segment' }, slash],
  ['regression_dotdot_behind_encoded_slash_is_rejected_when_opted_in', '/repos/group%2fproject/issues', '/repos/group%2Fproject/issues', slash],
  ['encoded_slash_detection_on_canonical_paths_is_exact', '/a/%252F/b', '/a/%252F/b'],
  ['encoded_slash_detection_on_canonical_paths_is_exact', '/a/100%25/b', '/a/100%25/b'],
];

describe(`canonical request-target (${PATH_RS})`, () => {
  it.each(CANON)('%s: %j', (_source, input, expected, opts) => {
    const got = canonicalizeRequestTarget(input, opts ?? {});
    if (typeof expected === 'string') expect(got).toMatchObject({ ok: true, path: expected });
    else expect(got).toMatchObject({ ok: false, code: expected.error });
  });

  it(`${PATH_RS}::origin_form_with_embedded_url_is_not_stripped_as_absolute_form`, () => {
    expect(canonicalizeRequestTarget('/fetch/http://example.test?next=http://other.test')).toEqual({
      ok: true,
      path: '/fetch/http:/example.test',
      query: 'next=http://other.test',
      rewritten: true,
    });
  });

  it(`${PATH_RS}::rewritten_flag_reflects_transformation`, () => {
    expect(canonicalizeRequestTarget('/a')).toMatchObject({ ok: true, rewritten: false });
    expect(canonicalizeRequestTarget('/a/../b')).toMatchObject({ ok: true, rewritten: true });
  });

  it(`${PATH_RS}::query_suffix_is_returned_separately`, () => {
    expect(canonicalizeRequestTarget('/a?q=1&r=2')).toMatchObject({ ok: true, path: '/a', query: 'q=1&r=2' });
  });

  it(`${PATH_RS}::encoded_slash_detection_on_canonical_paths_is_exact`, () => {
    const slug = canonicalizeRequestTarget('/repos/group%2fproject/issues', slash);
    expect(slug.ok && canonicalPathHasEncodedSlash(slug.path)).toBe(true);
    const plain = canonicalizeRequestTarget('/public/secret');
    expect(plain.ok && canonicalPathHasEncodedSlash(plain.path)).toBe(false);
    const escaped = canonicalizeRequestTarget('/a/%252F/b');
    expect(escaped.ok && canonicalPathHasEncodedSlash(escaped.path)).toBe(false);
  });

  it(`${PATH_RS}::canonical_output_never_contains_dot_segments`, () => {
    for (const target of ['/public/..;/secret', '/public/.;/secret', '/public/%2e%2e;/secret', '/a;jsessionid=xyz/b', '/public//../secret', '/a/b/..', '/a/b/.']) {
      const c = canonicalizeRequestTarget(target);
      if (c.ok) expect(c.path.split('/').some((s) => s === '.' || s === '..')).toBe(false);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Query parsing (rest.rs)
// ---------------------------------------------------------------------------------------------

describe(`query parameters (${REST_RS})`, () => {
  const q = (target: string) => {
    const c = canonicalizeRequestTarget(target);
    return c.ok ? parseQueryParams(c.query) : undefined;
  };
  it.each([
    ['parse_target_query_parses_duplicate_values', '/download?tag=a&tag=b', { tag: ['a', 'b'] }],
    ['parse_target_query_decodes_percent_and_plus', '/download?slug=my%2Fskill&name=Foo+Bar', { slug: ['my/skill'], name: ['Foo Bar'] }],
    ['parse_target_query_literal_plus_via_percent_encoding', '/search?q=a%2Bb', { q: ['a+b'] }],
    ['parse_target_query_empty_value', '/api?tag=', { tag: [''] }],
    ['parse_target_query_key_without_value', '/api?verbose', { verbose: [''] }],
    ['parse_target_query_unicode_after_decoding', '/search?q=caf%C3%A9', { q: ['café'] }],
    ['parse_target_query_empty_query_string', '/api?', {}],
  ] as const)('%s', (_source, target, expected) => {
    expect(Object.fromEntries(q(target)!)).toEqual(expected);
  });
  it(`${REST_RS}::parse_target_query_rejects_malformed_percent_encoding`, () => {
    expect(q('/download?slug=bad%2')).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// L7 request evaluation (opa.rs, L7_TEST_DATA: the REST endpoints)
// ---------------------------------------------------------------------------------------------

const L7_TEST_DATA = `
network_policies:
  rest_api:
    name: rest_api
    endpoints:
      - host: api.example.com
        port: 8080
        protocol: rest
        enforcement: enforce
        rules:
          - allow:
              method: GET
              path: "/repos/**"
          - allow:
              method: POST
              path: "/repos/*/issues"
    binaries:
      - { path: /usr/bin/curl }
  readonly_api:
    name: readonly_api
    endpoints:
      - host: api.readonly.com
        port: 8080
        protocol: rest
        enforcement: enforce
        access: read-only
    binaries:
      - { path: /usr/bin/curl }
  full_api:
    name: full_api
    endpoints:
      - host: api.full.com
        port: 8080
        protocol: rest
        enforcement: audit
        access: full
    binaries:
      - { path: /usr/bin/curl }
  query_api:
    name: query_api
    endpoints:
      - host: api.query.com
        port: 8080
        protocol: rest
        enforcement: enforce
        rules:
          - allow:
              method: GET
              path: "/download"
              query:
                tag: "foo-*"
          - allow:
              method: GET
              path: "/search"
              query:
                tag:
                  any: ["foo-*", "bar-*"]
    binaries:
      - { path: /usr/bin/curl }
  l4_only:
    name: l4_only
    endpoints:
      - { host: l4only.example.com, port: 443 }
      - { host: explicit-tcp.example.com, port: 443, protocol: tcp }
    binaries:
      - { path: /usr/bin/curl }
`;

describe(`L7 REST rules (${OPA_RS}, L7_TEST_DATA)`, () => {
  const m = matcher(L7_TEST_DATA);
  const l7 = (host: string, port: number, method: string, path: string, binary = '/usr/bin/curl') => m.decide({ host, port, method, path, binary }).verdict === 'allow';
  it.each([
    ['l7_get_allowed_by_rules', 'api.example.com', 8080, 'GET', '/repos/myorg/foo', true],
    ['l7_post_allowed_by_rules', 'api.example.com', 8080, 'POST', '/repos/myorg/issues', true],
    ['l7_delete_denied_by_rules', 'api.example.com', 8080, 'DELETE', '/repos/myorg/foo', false],
    ['l7_get_wrong_path_denied', 'api.example.com', 8080, 'GET', '/admin/settings', false],
    ['l7_readonly_preset_allows_get', 'api.readonly.com', 8080, 'GET', '/anything', true],
    ['l7_readonly_preset_allows_head', 'api.readonly.com', 8080, 'HEAD', '/anything', true],
    ['l7_readonly_preset_allows_options', 'api.readonly.com', 8080, 'OPTIONS', '/anything', true],
    ['l7_readonly_preset_denies_post', 'api.readonly.com', 8080, 'POST', '/anything', false],
    ['l7_readonly_preset_denies_delete', 'api.readonly.com', 8080, 'DELETE', '/anything', false],
    ['l7_method_matching_case_insensitive', 'api.example.com', 8080, 'get', '/repos/myorg/foo', true],
    ['l7_path_glob_matching', 'api.example.com', 8080, 'GET', '/repos/org/repo', true],
    ['l7_head_allowed_where_get_is_allowed', 'api.example.com', 8080, 'HEAD', '/repos/myorg/foo', true],
    ['l7_options_not_implicitly_allowed_by_get', 'api.example.com', 8080, 'OPTIONS', '/repos/myorg/foo', false],
    ['l7_query_glob_allows_matching_duplicate_values', 'api.query.com', 8080, 'GET', '/download?tag=foo-a&tag=foo-b&extra=ignored', true],
    ['l7_query_glob_denies_on_mismatched_duplicate_value', 'api.query.com', 8080, 'GET', '/download?tag=foo-a&tag=evil', false],
    ['l7_query_any_allows_if_every_value_matches_any_pattern', 'api.query.com', 8080, 'GET', '/search?tag=foo-a&tag=bar-b', true],
    ['l7_rest_request_ignores_null_jsonrpc_metadata', 'api.query.com', 8080, 'GET', '/download?tag=foo-a', true],
    ['l7_query_missing_required_key_denied', 'api.query.com', 8080, 'GET', '/download', false],
    ['l7_query_rules_from_proto_are_enforced (deny side)', 'api.query.com', 8080, 'GET', '/download?tag=evil', false],
  ] as const)(`${OPA_RS}::%s`, (_source, host, port, method, path, allowed) => {
    expect(l7(host, port, method, path)).toBe(allowed);
  });

  it(`${OPA_RS}::l7_full_preset_allows_everything`, () => {
    for (const method of ['GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'OPTIONS', 'HEAD']) expect(l7('api.full.com', 8080, method, '/any/path')).toBe(true);
  });

  it(`${OPA_RS}::l7_wrong_binary_denied_even_with_matching_rules`, () => {
    expect(l7('api.example.com', 8080, 'GET', '/repos/myorg/foo', '/usr/bin/python3')).toBe(false);
  });

  it(`${OPA_RS}::explicit_tcp_authorizes_as_l4_without_endpoint_config`, () => {
    expect(m.decide({ host: 'explicit-tcp.example.com', port: 443, binary: '/usr/bin/curl' }).verdict).toBe('allow');
    expect(m.decide({ host: 'l4only.example.com', port: 443, binary: '/usr/bin/curl' }).verdict).toBe('allow');
  });

  it(`${OPA_RS}::l7_head_denied_when_only_post_allowed`, () => {
    const p = matcher('network_policies:\n  p:\n    name: p\n    endpoints:\n      - host: h.test\n        port: 80\n        protocol: rest\n        enforcement: enforce\n        rules:\n          - allow: {method: POST, path: "/"}\n    binaries:\n      - {path: /usr/bin/curl}\n');
    expect(p.decide({ host: 'h.test', port: 80, method: 'HEAD', path: '/', binary: '/usr/bin/curl' }).verdict).toBe('deny');
  });

  it(`${OPA_RS}::l7_head_blocked_by_deny_rule_targeting_get`, () => {
    const p = matcher('network_policies:\n  p:\n    name: p\n    endpoints:\n      - host: h.test\n        port: 80\n        protocol: rest\n        enforcement: enforce\n        access: full\n        deny_rules:\n          - method: GET\n            path: "/protected"\n    binaries:\n      - {path: /usr/bin/curl}\n');
    expect(p.decide({ host: 'h.test', port: 80, method: 'HEAD', path: '/protected', binary: '/usr/bin/curl' }).verdict).toBe('deny');
  });

  it(`${OPA_RS}::l7_multi_port_request_evaluation`, () => {
    const p = matcher('network_policies:\n  multi:\n    endpoints:\n      - host: api.multi.com\n        ports: [8080, 9090]\n        protocol: rest\n        rules:\n          - allow: { method: GET, path: "/api/**" }\n    binaries:\n      - { path: /usr/bin/curl }\n');
    for (const port of [8080, 9090]) {
      expect(p.decide({ host: 'api.multi.com', port, method: 'GET', path: '/api/v1', binary: '/usr/bin/curl' }).verdict).toBe('allow');
      expect(p.decide({ host: 'api.multi.com', port, method: 'POST', path: '/api/v1', binary: '/usr/bin/curl' }).verdict).toBe('deny');
    }
  });

  it(`${OPA_RS}::l7_endpoint_path_scopes_rest_and_graphql_on_same_host (REST half)`, () => {
    const p = matcher(
      'network_policies:\n  scoped:\n    endpoints:\n      - host: api.scoped.com\n        port: 443\n        path: "/v1/**"\n        protocol: rest\n        access: read-only\n    binaries:\n      - { path: /usr/bin/curl }\n',
    );
    expect(p.decide({ host: 'api.scoped.com', port: 443, method: 'GET', path: '/v1/users', binary: '/usr/bin/curl' }).verdict).toBe('allow');
    expect(p.decide({ host: 'api.scoped.com', port: 443, method: 'GET', path: '/v2/users', binary: '/usr/bin/curl' }).verdict).toBe('deny');
  });
});

// ---------------------------------------------------------------------------------------------
// L7 deny rules (opa.rs, L7_DENY_TEST_DATA)
// ---------------------------------------------------------------------------------------------

const L7_DENY_TEST_DATA = `
network_policies:
  github_api:
    name: github_api
    endpoints:
      - host: api.github.com
        port: 443
        protocol: rest
        enforcement: enforce
        access: read-write
        deny_rules:
          - method: POST
            path: "/repos/*/pulls/*/reviews"
          - method: PUT
            path: "/repos/*/branches/*/protection"
          - method: "*"
            path: "/repos/*/rulesets"
    binaries:
      - { path: /usr/bin/curl }
  deny_with_query:
    name: deny_with_query
    endpoints:
      - host: api.restricted.com
        port: 443
        protocol: rest
        enforcement: enforce
        access: full
        deny_rules:
          - method: POST
            path: "/admin/**"
            query:
              force: "true"
    binaries:
      - { path: /usr/bin/curl }
`;

describe(`L7 deny rules (${OPA_RS}, L7_DENY_TEST_DATA)`, () => {
  const m = matcher(L7_DENY_TEST_DATA);
  it.each([
    ['l7_deny_rule_blocks_allowed_method_path', 'api.github.com', 'POST', '/repos/myorg/pulls/123/reviews', false],
    ['l7_deny_rule_allows_non_matching_requests', 'api.github.com', 'GET', '/repos/myorg/issues', true],
    ['l7_deny_rule_allows_same_method_different_path', 'api.github.com', 'POST', '/repos/myorg/issues', true],
    ['l7_deny_rule_blocks_wildcard_method', 'api.github.com', 'GET', '/repos/myorg/rulesets', false],
    ['l7_deny_rule_blocks_put_protection', 'api.github.com', 'PUT', '/repos/myorg/branches/main/protection', false],
    ['l7_deny_rule_with_query_blocks_matching_params', 'api.restricted.com', 'POST', '/admin/settings?force=true', false],
    ['l7_deny_rule_with_query_allows_non_matching_params', 'api.restricted.com', 'POST', '/admin/settings?force=false', true],
    ['l7_deny_rule_with_query_blocks_when_any_value_matches', 'api.restricted.com', 'POST', '/admin/settings?force=true&force=false', false],
    ['l7_deny_rule_without_matching_query_key_allows', 'api.restricted.com', 'POST', '/admin/settings', true],
  ] as const)(`${OPA_RS}::%s`, (_source, host, method, path, allowed) => {
    expect(m.decide({ host, port: 443, method, path, binary: '/usr/bin/curl' }).verdict === 'allow').toBe(allowed);
  });

  it(`${OPA_RS}::l7_deny_reason_populated_when_deny_rule_matches`, () => {
    expect(m.decide({ host: 'api.github.com', port: 443, method: 'POST', path: '/repos/myorg/pulls/123/reviews', binary: '/usr/bin/curl' }).reason).toMatch(/deny_rule/);
  });
});

// ---------------------------------------------------------------------------------------------
// Network (L4) decisions: binaries, ancestors, hosts (opa.rs with testdata/sandbox-policy.yaml)
// ---------------------------------------------------------------------------------------------

const SANDBOX_POLICY = `
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /lib, /proc, /dev/urandom, /app, /etc, /var/log]
  read_write: [/sandbox, /tmp, /dev/null]
landlock:
  compatibility: best_effort
process:
  run_as_user: sandbox
  run_as_group: sandbox
network_policies:
  claude_code:
    name: claude_code
    endpoints:
      - { host: api.anthropic.com, port: 443 }
      - { host: statsig.anthropic.com, port: 443 }
    binaries:
      - { path: /usr/local/bin/claude }
      - { path: /usr/bin/node }
  github_ssh_over_https:
    name: github-ssh-over-https
    endpoints:
      - host: github.com
        port: 443
        protocol: rest
        enforcement: enforce
        rules:
          - allow:
              method: GET
              path: "/**/info/refs*"
          - allow:
              method: POST
              path: "/**/git-upload-pack"
    binaries:
      - { path: /usr/bin/git }
  gitlab:
    name: gitlab
    endpoints:
      - { host: gitlab.com, port: 443 }
    binaries:
      - { path: /usr/bin/glab }
`;

describe(`network decisions (${OPA_RS}, testdata/sandbox-policy.yaml)`, () => {
  const m = matcher(SANDBOX_POLICY);
  it.each([
    ['allowed_binary_and_endpoint', 'api.anthropic.com', 443, '/usr/bin/node', [], true],
    ['wrong_binary_denied', 'api.anthropic.com', 443, '/usr/bin/python3', [], false],
    ['wrong_endpoint_denied', 'evil.example.com', 443, '/usr/bin/node', [], false],
    ['unknown_binary_default_deny', 'api.anthropic.com', 443, '/tmp/malicious', [], false],
    ['github_policy_allows_git', 'github.com', 443, '/usr/bin/git', [], true],
    ['case_insensitive_host_matching', 'API.ANTHROPIC.COM', 443, '/usr/bin/node', [], true],
    ['wrong_port_denied', 'api.anthropic.com', 80, '/usr/bin/node', [], false],
    ['ancestor_binary_allowed', 'github.com', 443, '/usr/bin/python3', ['/usr/bin/git'], true],
    ['no_ancestor_match_denied', 'github.com', 443, '/usr/bin/python3', ['/usr/bin/bash'], false],
    ['deep_ancestor_chain_matches', 'github.com', 443, '/usr/bin/python3', ['/usr/bin/sh', '/usr/bin/git'], true],
    ['empty_ancestors_falls_back_to_direct', 'api.anthropic.com', 443, '/usr/local/bin/claude', [], true],
    ['cmdline_path_does_not_grant_access (argv[0] is never consulted)', 'api.anthropic.com', 443, '/usr/bin/python3', [], false],
  ] as const)(`${OPA_RS}::%s`, (_source, host, port, binary, ancestors, allowed) => {
    expect(m.decide({ host, port, binary, ancestors }).verdict === 'allow').toBe(allowed);
  });

  it(`${OPA_RS}::l7_github_git_transport_allows_clone_blocks_push`, () => {
    const git = (method: string, path: string) => m.decide({ host: 'github.com', port: 443, binary: '/usr/bin/git', method, path }).verdict;
    expect(git('GET', '/org/repo.git/info/refs?service=git-upload-pack')).toBe('allow');
    expect(git('POST', '/org/repo.git/git-upload-pack')).toBe('allow');
    expect(git('POST', '/org/repo.git/git-receive-pack')).toBe('deny');
  });

  const globs = (binary: string, host = 'example.com') => `network_policies:\n  glob_test:\n    endpoints:\n      - { host: ${host}, port: 443 }\n    binaries:\n      - { path: "${binary}" }\n`;
  it(`${OPA_RS}::glob_pattern_matches_binary`, () => {
    expect(matcher(globs('/usr/bin/*')).decide({ host: 'example.com', port: 443, binary: '/usr/bin/node' }).verdict).toBe('allow');
  });
  it(`${OPA_RS}::glob_pattern_matches_ancestor`, () => {
    expect(matcher(globs('/usr/local/bin/*')).decide({ host: 'example.com', port: 443, binary: '/usr/bin/node', ancestors: ['/usr/local/bin/claude'] }).verdict).toBe('allow');
  });
  it(`${OPA_RS}::glob_pattern_no_cross_segment`, () => {
    expect(matcher(globs('/usr/bin/*')).decide({ host: 'example.com', port: 443, binary: '/usr/bin/subdir/node' }).verdict).not.toBe('allow');
  });
  // data/sandbox-policy.rego `binary_allowed`: every clause needs `some b in policy.binaries`, so a
  // policy whose list is missing or empty lets no program through, ancestors or not.
  it.each([
    ['missing', 'network_policies:\n  telegram:\n    endpoints:\n      - { host: api.telegram.org, port: 443 }\n'],
    ['empty', 'network_policies:\n  telegram:\n    endpoints:\n      - { host: api.telegram.org, port: 443 }\n    binaries: []\n'],
  ] as const)('crates/openshell-supervisor-network/data/sandbox-policy.rego::binary_allowed (%s binaries: no program)', (_kind, yaml) => {
    const p = matcher(yaml);
    for (const binary of ['/usr/bin/curl', '/usr/local/bin/node']) {
      expect(p.decide({ host: 'api.telegram.org', port: 443, binary, ancestors: ['/usr/bin/bash'] }).verdict).not.toBe('allow');
    }
  });
  it('crates/openshell-supervisor-network/data/sandbox-policy.rego::binary_allowed (glob "/**" matches every absolute path)', () => {
    const p = matcher(globs('/**'));
    expect(p.decide({ host: 'example.com', port: 443, binary: '/usr/bin/curl' }).verdict).toBe('allow');
    expect(p.decide({ host: 'example.com', port: 443, binary: '/opt/deep/tree/tool' }).verdict).toBe('allow');
  });
  it(`${OPA_RS}::reload_replaces_policy (no network policies: deny all)`, () => {
    expect(matcher('network_policies: {}\n').decide({ host: 'api.anthropic.com', port: 443, binary: '/usr/bin/node' }).verdict).not.toBe('allow');
  });

  const multi = matcher('network_policies:\n  multi:\n    endpoints:\n      - { host: api.multi.com, ports: [443, 8443] }\n    binaries:\n      - { path: /usr/bin/curl }\n');
  it.each([
    ['multi_port_endpoint_matches_first_port', 443, true],
    ['multi_port_endpoint_matches_second_port', 8443, true],
    ['multi_port_endpoint_rejects_unlisted_port', 80, false],
  ] as const)(`${OPA_RS}::%s`, (_source, port, allowed) => {
    expect(multi.decide({ host: 'api.multi.com', port, binary: '/usr/bin/curl' }).verdict === 'allow').toBe(allowed);
  });
});

describe(`host wildcards (${OPA_RS})`, () => {
  const w = (pattern: string, host: string, port = 443, ports = '443') =>
    matcher(`network_policies:\n  wildcard:\n    endpoints:\n      - { host: "${pattern}", ports: [${ports}] }\n    binaries:\n      - { path: /usr/bin/curl }\n`).decide({ host, port, binary: '/usr/bin/curl' }).verdict === 'allow';
  it.each([
    ['wildcard_host_matches_subdomain', '*.example.com', 'api.example.com', true],
    ['wildcard_host_rejects_deep_subdomain', '*.example.com', 'deep.sub.example.com', false],
    ['wildcard_host_rejects_exact_domain', '*.example.com', 'example.com', false],
    ['wildcard_host_case_insensitive', '*.EXAMPLE.COM', 'api.example.com', true],
    ['wildcard_host_intra_label_matches', '*-aiplatform.googleapis.com', 'us-central1-aiplatform.googleapis.com', true],
    ['wildcard_host_intra_label_does_not_cross_dot', '*-aiplatform.googleapis.com', 'us-central1.aiplatform.googleapis.com', false],
    ['wildcard_host_middle_label_matches_one_region_label', '*.s3.*.amazonaws.com', 'my-bucket.s3.us-east-1.amazonaws.com', true],
    ['wildcard_host_middle_label_does_not_match_missing_bucket_label', '*.s3.*.amazonaws.com', 's3.us-east-1.amazonaws.com', false],
    ['wildcard_host_middle_label_does_not_skip_dualstack_label', '*.s3.*.amazonaws.com', 'my-bucket.s3.dualstack.us-east-1.amazonaws.com', false],
    ['wildcard_host_percent_encoded_dot_no_match', '*.example.com', 'evil%2eexample.com', false],
    ['validate_wildcard_host_double_star_valid_no_error (** spans labels)', '**.example.com', 'a.b.example.com', true],
    ['validate_wildcard_host_double_star_valid_no_error (** needs a label)', '**.example.com', 'example.com', false],
  ] as const)(`${OPA_RS}::%s`, (_source, pattern, host, allowed) => {
    expect(w(pattern, host)).toBe(allowed);
  });
  it(`${OPA_RS}::wildcard_host_plus_port`, () => expect(w('*.example.com', 'api.example.com', 80)).toBe(false));
  it(`${OPA_RS}::wildcard_host_multi_port`, () => expect(w('*.example.com', 'api.example.com', 8443, '443, 8443')).toBe(true));
  it(`${OPA_RS}::wildcard_host_l7_rules_apply`, () => {
    const p = matcher('network_policies:\n  wildcard_l7:\n    endpoints:\n      - host: "*.example.com"\n        port: 8080\n        protocol: rest\n        enforcement: enforce\n        tls: terminate\n        rules:\n          - allow:\n              method: GET\n              path: "/api/**"\n    binaries:\n      - { path: /usr/bin/curl }\n');
    expect(p.decide({ host: 'api.example.com', port: 8080, method: 'GET', path: '/api/v1/data', binary: '/usr/bin/curl' }).verdict).toBe('allow');
    expect(p.decide({ host: 'api.example.com', port: 8080, method: 'POST', path: '/api/v1/data', binary: '/usr/bin/curl' }).verdict).toBe('deny');
  });
});

// ---------------------------------------------------------------------------------------------
// Validation (l7/mod.rs validate_l7_policies, openshell-policy l7_validate.rs)
// ---------------------------------------------------------------------------------------------

const ep = (body: string) => `network_policies:\n  test:\n    endpoints:\n      - ${body}\n    binaries:\n      - { path: /usr/bin/curl }\n`;

describe(`validation (${MOD_RS}, ${L7_VALIDATE_RS})`, () => {
  it.each([
    [`${MOD_RS}::validate_wildcard_host_star_only_error`, '{ host: "*", port: 443 }', /matches all hosts|host name/],
    [`${MOD_RS}::validate_wildcard_host_double_star_only_error`, '{ host: "**", port: 443 }', /matches all hosts|host name/],
    [`${MOD_RS}::validate_wildcard_host_middle_label_partial_star_error`, '{ host: "*.s3.us-*.amazonaws.com", port: 443 }', /middle DNS label wildcard/],
    [`${MOD_RS}::validate_wildcard_host_middle_label_double_star_error`, '{ host: "*.s3.**.amazonaws.com", port: 443 }', /host name|recursive host wildcard/],
    [`${MOD_RS}::validate_wildcard_host_single_label_error`, '{ host: "*com", port: 443 }', /TLD wildcard/],
    [`${MOD_RS}::validate_wildcard_host_recursive_intra_label_error`, '{ host: "foo**.example.com", port: 443 }', /host name|recursive host wildcard/],
    [`${MOD_RS}::validate_wildcard_host_tld_rejected`, '{ host: "*.com", port: 443 }', /TLD wildcard/],
    [`${MOD_RS}::validate_wildcard_host_double_star_tld_rejected`, '{ host: "**.org", port: 443 }', /TLD wildcard/],
    [`${MOD_RS}::validate_port_and_ports_mutually_exclusive`, '{ host: api.example.com, port: 443, ports: [443, 8443] }', /mutually exclusive/],
    [`${MOD_RS}::validate_rules_and_access_mutual_exclusion`, '{ host: api.example.com, port: 443, protocol: rest, access: read-only, rules: [{ allow: { method: GET, path: "/**" } }] }', /rules and access are mutually exclusive/],
    [`${MOD_RS}::validate_protocol_requires_rules_or_access`, '{ host: api.example.com, port: 443, protocol: rest }', /requires rules or access/],
    [`${MOD_RS}::validate_deny_rules_require_protocol`, '{ host: api.example.com, port: 443, access: full, deny_rules: [{ method: POST, path: "/admin" }] }', /deny_rules require protocol/],
    [`${MOD_RS}::validate_deny_rules_require_allow_base`, '{ host: api.example.com, port: 443, protocol: rest, deny_rules: [{ method: POST, path: "/admin" }] }', /base allow set/],
    [`${MOD_RS}::validate_rules_empty_list_rejected`, '{ host: api.example.com, port: 443, protocol: rest, rules: [] }', /rules list cannot be empty/],
    [`${MOD_RS}::validate_rules_deny_all_with_empty_allow_object`, '{ host: api.example.com, port: 443, protocol: rest, rules: [{ allow: {} }] }', /would deny all traffic/],
    [`${MOD_RS}::validate_deny_rules_empty_list_rejected`, '{ host: api.example.com, port: 443, protocol: rest, access: full, deny_rules: [] }', /deny_rules list cannot be empty/],
    [`${MOD_RS}::validate_deny_rules_query_empty_any_rejected`, '{ host: api.example.com, port: 443, protocol: rest, access: full, deny_rules: [{ method: GET, path: "/x", query: { force: { any: [] } } }] }', /must not be empty|non-empty|any/],
    [`${MOD_RS}::validate_deny_rules_query_non_string_rejected`, '{ host: api.example.com, port: 443, protocol: rest, access: full, deny_rules: [{ method: GET, path: "/x", query: { force: 123 } }] }', /glob string|matcher/],
    [`${MOD_RS}::validate_query_any_requires_non_empty_array`, '{ host: api.example.com, port: 443, protocol: rest, rules: [{ allow: { method: GET, path: "/x", query: { tag: { any: [] } } } }] }', /must not be empty/],
    [`${MOD_RS}::validate_query_object_rejects_unknown_keys`, '{ host: api.example.com, port: 443, protocol: rest, rules: [{ allow: { method: GET, path: "/x", query: { tag: { glob: "a*", regex: "b" } } } }] }', /only `glob` or `any`/],
    [`${L7_VALIDATE_RS}::rejects_unknown_protocol`, '{ host: api.example.com, port: 443, protocol: ftp, access: full }', /unknown protocol 'ftp'/],
    [`${L7_VALIDATE_RS}::rejects_rules_and_access_together`, '{ host: api.example.com, port: 443, protocol: rest, access: full, rules: [{ allow: { method: GET, path: "/**" } }] }', /mutually exclusive/],
    [`${MOD_RS}::validate_explicit_tcp rejects L7 fields (validate_l7_endpoint_semantics)`, '{ host: api.example.com, port: 443, protocol: tcp, access: full }', /protocol tcp does not support/],
    [`${MOD_RS}::validate_sql_enforce_blocked (refused here for any enforcement: SQL is not parsed)`, '{ host: db.example.com, port: 5432, protocol: sql, enforcement: enforce, access: full }', /protocol sql is not enforced here/],
    [`${OPA_RS}::l7_graphql_readonly_access_allows_query_and_denies_mutation (refused here: GraphQL bodies are not parsed)`, '{ host: gql.readonly.com, port: 443, protocol: graphql, access: read-only }', /protocol graphql is not enforced here/],
    [`${OPA_RS}::l7_mcp_rules_filter_tools_call (refused here: MCP bodies are not parsed)`, '{ host: mcp.example.com, port: 443, protocol: mcp, rules: [{ allow: { method: tools/call, tool: search } }] }', /protocol mcp is not enforced here|tool/],
    ['l7_jsonrpc (rules read from the body are refused, not dropped)', '{ host: rpc.example.com, port: 443, protocol: rest, rules: [{ allow: { method: POST, path: "/rpc", tool: search } }] }', /`tool` \(protocol mcp\) is not enforced here/],
    ['lib.rs L7RuleDef deny_unknown_fields (`deny:` inside rules)', '{ host: api.example.com, port: 443, protocol: rest, rules: [{ deny: { method: GET, path: "/x" } }] }', /`deny:` inside `rules:` is refused/],
    ['lib.rs NetworkEndpointDef deny_unknown_fields', '{ host: api.example.com, port: 443, protocol: rest, access: full, deny_rule: [{ method: GET, path: "/x" }] }', /unknown endpoint field `deny_rule`/],
  ] as const)('%s', (_source, body, message) => {
    expect(refusal(ep(body))).toMatch(message);
  });

  it.each([
    [`${MOD_RS}::validate_wildcard_host_middle_label_star_valid_no_error`, '{ host: "*.s3.*.amazonaws.com", port: 443 }'],
    [`${MOD_RS}::validate_wildcard_host_valid_no_error`, '{ host: "*.example.com", port: 443 }'],
    [`${MOD_RS}::validate_wildcard_host_double_star_valid_no_error`, '{ host: "**.example.com", port: 443 }'],
    [`${MOD_RS}::validate_wildcard_host_intra_label_valid_no_error`, '{ host: "*-aiplatform.googleapis.com", port: 443 }'],
    [`${MOD_RS}::validate_deny_rules_valid_config_accepted`, '{ host: api.example.com, port: 443, protocol: rest, access: read-write, deny_rules: [{ method: POST, path: "/repos/*/pulls/*/reviews" }] }'],
    [`${MOD_RS}::validate_deny_rules_query_valid_matchers_accepted`, '{ host: api.example.com, port: 443, protocol: rest, access: full, deny_rules: [{ method: POST, path: "/admin/**", query: { force: "true", mode: { any: ["a*", "b*"] }, x: { glob: "y*" } } }] }'],
    [`${MOD_RS}::validate_query_string_and_any_matchers_are_accepted`, '{ host: api.example.com, port: 443, protocol: rest, rules: [{ allow: { method: GET, path: "/x", query: { tag: "foo-*", other: { any: ["a", "b"] } } } }] }'],
    [`${OPA_RS}::allowed_ips_mode3_hostless_allows_any_domain (hostless endpoint accepted)`, '{ port: 443, allowed_ips: ["10.0.5.0/24"] }'],
    [`${OPA_RS}::l7_endpoint_config_preserves_proto_allow_encoded_slash`, '{ host: gitlab.example.com, port: 443, protocol: rest, access: read-only, allow_encoded_slash: true }'],
  ] as const)('%s', (_source, body) => {
    expect(refusal(ep(body))).toBeUndefined();
  });

  it('policy names starting with _provider_ (what OpenShell prints for provider policies) load', () => {
    expect(refusal('network_policies:\n  _provider_github:\n    endpoints:\n      - { host: api.github.com, port: 443 }\n')).toBeUndefined();
  });

  it(`${MOD_RS}::validate_tls_terminate_deprecated_warning`, () => {
    const { warnings } = load(ep('{ host: api.example.com, port: 443, protocol: rest, access: full, tls: terminate }'));
    expect(warnings.some((w) => /deprecated/.test(w.message))).toBe(true);
  });

  it(`${MOD_RS}::validate_query_glob_warns_on_unclosed_bracket (the glob matches nothing here)`, () => {
    const { warnings, doc } = load(ep('{ host: api.example.com, port: 443, protocol: rest, rules: [{ allow: { method: GET, path: "/x", query: { tag: "foo[" } } }] }'));
    expect(warnings.some((w) => /unclosed '\['/.test(w.message))).toBe(true);
    expect(compileNetworkMatcher(doc).decide({ host: 'api.example.com', port: 443, method: 'GET', path: '/x?tag=foo[', binary: '/usr/bin/curl' }).verdict).toBe('deny');
  });

  it(`${MOD_RS}::validate_query_glob_warns_on_unclosed_brace`, () => {
    const { warnings } = load(ep('{ host: api.example.com, port: 443, protocol: rest, rules: [{ allow: { method: GET, path: "/x", query: { tag: "foo{" } } }] }'));
    expect(warnings.some((w) => /unclosed '\{'/.test(w.message))).toBe(true);
  });
});

// ---------------------------------------------------------------------------------------------
// SSRF classes and control-plane ports (proxy.rs tests of is_internal_ip, resolve_and_check_*)
// ---------------------------------------------------------------------------------------------

describe(`SSRF (${PROXY_RS})`, () => {
  it.each([
    ['test_rejects_ipv4_cgnat', '100.64.0.1', false],
    ['test_rejects_ipv4_cgnat', '100.100.50.3', false],
    ['test_rejects_ipv4_cgnat (edge outside)', '100.128.0.1', true],
    ['test_rejects_ipv4_special_use_ranges', '192.0.0.1', false],
    ['test_rejects_ipv4_special_use_ranges', '192.0.2.1', false],
    ['test_rejects_ipv4_special_use_ranges', '198.18.0.1', false],
    ['test_rejects_ipv4_special_use_ranges', '198.19.255.255', false],
    ['test_rejects_ipv4_special_use_ranges', '198.51.100.1', false],
    ['test_rejects_ipv4_special_use_ranges', '203.0.113.1', false],
    ['test_rejects_ipv4_unspecified', '0.0.0.0', false],
    ['test_rejects_ipv6_loopback', '::1', false],
    ['test_rejects_ipv6_mapped_cgnat', '::ffff:100.64.0.1', false],
    ['test_allows_ipv4_public', '8.8.8.8', true],
    ['test_allows_ipv4_public', '1.1.1.1', true],
    ['test_allows_ipv4_public', '93.184.216.34', true],
    ['test_allows_ipv4_non_private_172', '172.32.0.1', true],
  ] as const)(`${PROXY_RS}::%s %s`, (_source, address, isPublic) => {
    expect(classifyAddress(address)!.kind === 'public').toBe(isPublic);
  });

  const resolver = testResolver({ 'dns.google': ['8.8.8.8'], 'kube-api.local': ['10.0.0.5'] });
  it(`${PROXY_RS}::test_resolve_check_allowed_ips_rejects_outside_allowlist`, async () => {
    const v = await guardDestination('dns.google', resolver, { exactHost: true, allowedIps: ['10.0.0.0/8'], unsafeAllowLoopback: false, port: 443 });
    expect(v).toMatchObject({ ok: false, reason: expect.stringMatching(/not in the endpoint's allowed_ips/) });
  });
  it(`${PROXY_RS}::test_resolve_check_allowed_ips_blocks_control_plane_ports`, async () => {
    for (const port of [6443, 2379, 10250]) {
      const v = await guardDestination('8.8.8.8', resolver, { exactHost: false, allowedIps: ['8.8.8.0/24'], unsafeAllowLoopback: false, port });
      expect(v).toMatchObject({ ok: false, reason: expect.stringMatching(/blocked control-plane port/) });
    }
  });
  it(`${PROXY_RS}::test_resolve_check_allowed_ips_allows_non_control_plane_ports`, async () => {
    expect(await guardDestination('8.8.8.8', resolver, { exactHost: false, allowedIps: ['8.8.8.0/24'], unsafeAllowLoopback: false, port: 443 })).toMatchObject({ ok: true });
  });
  it(`${PROXY_RS}::declared endpoint on a control-plane port (validate_declared_endpoint_resolved_addrs)`, async () => {
    for (const port of [2380, 6443, 10255]) {
      const v = await guardDestination('kube-api.local', resolver, { exactHost: true, allowedIps: [], unsafeAllowLoopback: false, port });
      expect(v).toMatchObject({ ok: false, reason: expect.stringMatching(/control-plane/) });
    }
    expect(await guardDestination('kube-api.local', resolver, { exactHost: true, allowedIps: [], unsafeAllowLoopback: false, port: 8443 })).toMatchObject({ ok: true });
  });
});

// ---------------------------------------------------------------------------------------------
// End to end: the real proxy and the real matcher, a loopback upstream (rest.rs
// parse_http_request_canonicalizes_target_and_rewrites_raw_header and the bypasses)
// ---------------------------------------------------------------------------------------------

describe(`canonical paths through the proxy (${REST_RS})`, () => {
  async function setup(endpointYaml: string) {
    const up = await startUpstream();
    const doc = load(ep(endpointYaml.replace('PORT', String(up.port)))).doc;
    const m = compileNetworkMatcher(doc);
    const h = await startProxy({ unsafeAllowLoopbackUpstreams: true, resolver: testResolver({ 'api.test': ['127.0.0.1'] }), decide: (q) => m.decide({ ...q, binary: '/usr/bin/curl' }) });
    return { up, h, url: (path: string) => `http://api.test:${up.port}${path}`, close: async () => { await h.close(); await up.close(); } };
  }

  it('a deny rule on /admin/** refuses //admin/x, /%61dmin/x and /admin;x/y; the upstream never sees them', async () => {
    const s = await setup('{ host: api.test, port: PORT, protocol: rest, access: full, deny_rules: [{ method: "*", path: "/admin/**" }] }');
    try {
      for (const path of ['//admin/x', '/%61dmin/x', '/admin;x/y', '/admin', '/public/../admin/x']) {
        const r = await proxyRequest(s.h.socketPath, s.url(path));
        expect(r.status, path).toBe(403);
      }
      const ok = await proxyRequest(s.h.socketPath, s.url('/public//x;jsessionid=1?q=a%20b'));
      expect(ok.status).toBe(200);
      // The upstream got the canonical path (the one the matcher decided on), query untouched.
      expect(s.up.requests.map((r) => r.url)).toEqual(['/public/x?q=a%20b']);
    } finally {
      await s.close();
    }
  });

  it('/public/..;/secret does not pass /public/**, and HEAD is checked as GET', async () => {
    const s = await setup('{ host: api.test, port: PORT, protocol: rest, rules: [{ allow: { method: GET, path: "/public/**" } }] }');
    try {
      expect((await proxyRequest(s.h.socketPath, s.url('/public/..;/secret'))).status).toBe(403);
      expect((await proxyRequest(s.h.socketPath, s.url('/public/%2e%2e/secret'))).status).toBe(403);
      expect((await proxyRequest(s.h.socketPath, s.url('/public/a%2Fb'))).status).toBe(400);
      expect((await proxyRequest(s.h.socketPath, s.url('/public/a'), { method: 'HEAD' })).status).toBe(200);
      expect(s.up.requests.map((r) => `${r.method} ${r.url}`)).toEqual(['HEAD /public/a']);
    } finally {
      await s.close();
    }
  });

  it('deny_rules of another policy on the same host:port apply although the allowing endpoint has no L7 rules (plain HTTP and inside a CONNECT tunnel)', async () => {
    // sandbox-policy.rego: deny_rules of every matching policy win over every allow, so the tunnel
    // must be inspected even when the first allowing endpoint would have been a raw tunnel.
    const up = await startUpstream();
    const doc = load(
      `network_policies:\n  open:\n    endpoints:\n      - { host: api.test, port: ${up.port} }\n    binaries: ["/**"]\n` +
        `  guarded:\n    endpoints:\n      - { host: api.test, port: ${up.port}, protocol: rest, access: full, deny_rules: [{ method: "*", path: "/admin/**" }] }\n    binaries: ["/**"]\n`,
    ).doc;
    const m = compileNetworkMatcher(doc);
    expect(m.decide({ host: 'api.test', port: up.port, binary: '/usr/bin/curl' })).toMatchObject({ verdict: 'allow', rule: 'open/0', inspect: true });
    const h = await startProxy({ unsafeAllowLoopbackUpstreams: true, resolver: testResolver({ 'api.test': ['127.0.0.1'] }), decide: (q) => m.decide({ ...q, binary: '/usr/bin/curl' }) });
    try {
      expect((await proxyRequest(h.socketPath, `http://api.test:${up.port}/admin/x`)).status).toBe(403);
      expect((await proxyRequest(h.socketPath, `http://api.test:${up.port}/ok`)).status).toBe(200);
      const tunnelled = await new Promise<string>((resolve, reject) => {
        const sock = createConnection(h.socketPath);
        let buf = '';
        let stage = 0;
        sock.on('data', (d) => {
          buf += d.toString('latin1');
          if (stage === 0 && buf.includes('\r\n\r\n')) {
            stage = 1;
            if (!buf.startsWith('HTTP/1.1 200')) return reject(new Error(buf));
            buf = '';
            sock.write(`GET /admin/y HTTP/1.1\r\nHost: api.test:${up.port}\r\n\r\n`);
          } else if (stage === 1 && buf.includes('\r\n\r\n')) {
            sock.destroy();
            resolve(buf);
          }
        });
        sock.on('error', reject);
        sock.write(`CONNECT api.test:${up.port} HTTP/1.1\r\nHost: api.test:${up.port}\r\n\r\n`);
      });
      expect(tunnelled).toMatch(/^HTTP\/1\.1 403/);
      expect(up.requests.map((r) => r.url)).toEqual(['/ok']);
    } finally {
      await h.close();
      await up.close();
    }
  });

  it('query matchers are enforced: ?tag=evil does not pass query: {tag: "foo-*"}', async () => {
    const s = await setup('{ host: api.test, port: PORT, protocol: rest, rules: [{ allow: { method: GET, path: "/download", query: { tag: "foo-*" } } }] }');
    try {
      expect((await proxyRequest(s.h.socketPath, s.url('/download?tag=evil'))).status).toBe(403);
      expect((await proxyRequest(s.h.socketPath, s.url('/download?tag=foo-a&tag=evil'))).status).toBe(403);
      expect((await proxyRequest(s.h.socketPath, s.url('/download'))).status).toBe(403);
      expect((await proxyRequest(s.h.socketPath, s.url('/download?tag=foo-a'))).status).toBe(200);
    } finally {
      await s.close();
    }
  });
});
