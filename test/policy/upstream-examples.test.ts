/**
 * Every upstream example policy (OpenShell's examples and test data, NemoClaw's baseline), loaded
 * unchanged from test/fixtures/upstream-policies (see its README for commits and paths), means here
 * what it means upstream: the same requests allowed, the same refused, or the file refused with a
 * reason when this engine cannot enforce part of it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileNetworkMatcher, parsePolicy } from '../../src/policy/index.js';
import type { NetworkQuery } from '../../src/policy/types.js';
import { isNemoclawError } from '../../src/shared/errors.js';

const DIR = join(import.meta.dirname, '..', 'fixtures', 'upstream-policies');
const load = (name: string) => parsePolicy(readFileSync(join(DIR, name), 'utf8'), name);
const matcherOf = (name: string) => compileNetworkMatcher(load(name).doc);
const allowed = (name: string, q: NetworkQuery) => matcherOf(name).decide(q).verdict === 'allow';

describe('upstream example policies load unchanged', () => {
  const files = readdirSync(DIR).filter((f) => f.endsWith('.yaml'));
  const refused = new Set(['openshell-content-guard.yaml']);

  it('there is a fixture for every upstream example the README lists', () => {
    const listed = [...readFileSync(join(DIR, 'README.md'), 'utf8').matchAll(/^\| ([\w.-]+\.yaml) \|/gm)].map((m) => m[1]);
    expect(files.sort()).toEqual(listed.sort());
    expect(files.length).toBeGreaterThanOrEqual(11);
  });

  it.each(files.filter((f) => !refused.has(f)))('%s loads, with no error', (file) => {
    const parsed = load(file);
    expect(parsed.warnings.filter((w) => w.severity === 'error')).toEqual([]);
  });

  it('a network middleware (content guard) is refused: nothing here would run it, so its traffic would pass unfiltered', () => {
    let error: unknown;
    try {
      load('openshell-content-guard.yaml');
    } catch (err) {
      error = err;
    }
    expect(isNemoclawError(error)).toBe(true);
    expect((error as Error).message).toMatch(/network_middlewares: network middlewares \(content guards\) do not run here/);
  });
});

describe('they mean what they mean upstream', () => {
  it('OpenShell quickstart: curl may read api.github.com (access: read-only), not write; no other program', () => {
    const q = (binary: string, method: string) => ({ host: 'api.github.com', port: 443, binary, method, path: '/repos/o/r' });
    expect(allowed('openshell-quickstart.yaml', q('/usr/bin/curl', 'GET'))).toBe(true);
    expect(allowed('openshell-quickstart.yaml', q('/usr/bin/curl', 'HEAD'))).toBe(true);
    expect(allowed('openshell-quickstart.yaml', q('/usr/bin/curl', 'POST'))).toBe(false);
    expect(allowed('openshell-quickstart.yaml', q('/usr/bin/python3', 'GET'))).toBe(false);
    // A shell running curl is curl's ancestor, not curl: the rule names curl, so curl passes.
    expect(allowed('openshell-quickstart.yaml', { ...q('/usr/bin/curl', 'GET'), ancestors: ['/usr/bin/bash'] })).toBe(true);
  });

  it('OpenShell transparent-tcp-redis: any program (`/**`) on 6379, L4 only, nothing else', () => {
    expect(allowed('openshell-tcp-redis.yaml', { host: 'redis.openshell.demo', port: 6379, binary: '/usr/local/bin/redis-cli' })).toBe(true);
    expect(allowed('openshell-tcp-redis.yaml', { host: 'redis.openshell.demo', port: 6380, binary: '/usr/local/bin/redis-cli' })).toBe(false);
  });

  it('OpenShell local-inference: only python3.13 reaches PyPI and NVIDIA', () => {
    expect(allowed('openshell-local-inference.yaml', { host: 'pypi.org', port: 443, binary: '/usr/bin/python3.13' })).toBe(true);
    expect(allowed('openshell-local-inference.yaml', { host: 'pypi.org', port: 443, binary: '/usr/bin/curl' })).toBe(false);
    expect(allowed('openshell-local-inference.yaml', { host: 'integrate.api.nvidia.com', port: 443, binary: '/usr/bin/python3.13', method: 'DELETE', path: '/v1/x' })).toBe(true);
  });

  it('OpenShell policy-advisor: its policy lists no binaries, so no program may use it (and validate says so)', () => {
    const parsed = load('openshell-policy-advisor.yaml');
    const [name] = Object.keys(parsed.doc.network_policies);
    const host = parsed.doc.network_policies[name!]!.endpoints[0]!.host;
    expect(allowed('openshell-policy-advisor.yaml', { host, port: 443, binary: '/usr/bin/curl' })).toBe(false);
    expect(parsed.warnings).toContainEqual(expect.objectContaining({ severity: 'meaning-changed', path: `network_policies.${name}.endpoints` }));
  });

  it('NemoClaw baseline: each program reaches only its hosts; telegram and discord (no binaries) none', () => {
    const f = 'nemoclaw-openclaw-sandbox.yaml';
    expect(allowed(f, { host: 'github.com', port: 443, binary: '/usr/bin/git' })).toBe(true);
    // git clone over HTTPS connects from git-remote-https, a child of git: the ancestor covers it.
    expect(allowed(f, { host: 'github.com', port: 443, binary: '/usr/lib/git-core/git-remote-https', ancestors: ['/usr/bin/git'] })).toBe(true);
    expect(allowed(f, { host: 'github.com', port: 443, binary: '/usr/bin/curl' })).toBe(false);
    expect(allowed(f, { host: 'registry.npmjs.org', port: 443, binary: '/usr/local/bin/npm' })).toBe(true);
    expect(allowed(f, { host: 'registry.npmjs.org', port: 443, binary: '/usr/bin/python3' })).toBe(false);
    for (const binary of ['/usr/local/bin/openclaw', '/usr/local/bin/node', '/usr/bin/curl']) {
      expect(allowed(f, { host: 'api.telegram.org', port: 443, binary, method: 'GET', path: '/bot123/getMe' })).toBe(false);
      expect(allowed(f, { host: 'discord.com', port: 443, binary, method: 'GET', path: '/api/v10/gateway' })).toBe(false);
    }
    const warnings = load(f).warnings.filter((w) => w.severity === 'meaning-changed').map((w) => w.path);
    expect(warnings).toEqual(['network_policies.telegram.endpoints', 'network_policies.discord.endpoints']);
  });

  it('OpenShell supervisor test data: the binaries and ancestors of opa.rs tests', () => {
    const f = 'openshell-supervisor-sandbox-policy.yaml';
    expect(allowed(f, { host: 'api.anthropic.com', port: 443, binary: '/usr/local/bin/claude' })).toBe(true);
    expect(allowed(f, { host: 'api.anthropic.com', port: 443, binary: '/usr/bin/python3' })).toBe(false);
    expect(allowed(f, { host: 'github.com', port: 443, binary: '/usr/bin/python3', ancestors: ['/usr/bin/sh', '/usr/bin/git'] })).toBe(true);
    expect(allowed(f, { host: 'github.com', port: 443, binary: '/usr/bin/python3', ancestors: ['/usr/bin/bash'] })).toBe(false);
  });
});
