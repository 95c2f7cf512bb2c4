import { describe, expect, it } from 'vitest';
import { compileNetworkMatcher, parsePolicy, type NetworkQuery } from '../../src/policy/index.js';

function matcherFor(yaml: string) {
  return compileNetworkMatcher(parsePolicy(`version: 1\n${yaml}`, 'm.yaml').doc);
}

const q = (host: string, extra: Partial<NetworkQuery> = {}): NetworkQuery => ({ host, port: 443, ...extra });

describe('host glob semantics', () => {
  const m = matcherFor('network_policies:\n  x:\n    binaries: [{ path: "/**" }]\n    endpoints:\n      - { host: "*.x.com", port: 443 }\n');

  it('`*.x.com` matches exactly one label in front of x.com', () => {
    expect(m.decide(q('a.x.com')).verdict).toBe('allow');
    expect(m.decide(q('x.com')).verdict).toBe('unknown');
    expect(m.decide(q('a.b.x.com')).verdict).toBe('unknown');
    expect(m.decide(q('ax.com')).verdict).toBe('unknown');
  });

  it('compares case-insensitively and ignores a trailing dot', () => {
    expect(m.decide(q('A.X.COM.'))).toMatchObject({ verdict: 'allow', rule: 'x/0' });
  });

  it('matches only the listed ports', () => {
    expect(m.decide({ host: 'a.x.com', port: 80 }).verdict).toBe('unknown');
  });

  it('supports globs in other labels and inside a label', () => {
    const g = matcherFor(
      'network_policies:\n  g:\n    binaries: [{ path: "/**" }]\n    endpoints:\n      - { host: "api.*.example.com", port: 443 }\n      - { host: "cdn-*.example.net", port: 443 }\n',
    );
    expect(g.decide(q('api.eu.example.com')).verdict).toBe('allow');
    expect(g.decide(q('api.eu.west.example.com')).verdict).toBe('unknown');
    expect(g.decide(q('cdn-7.example.net')).verdict).toBe('allow');
    expect(g.decide(q('cdn.example.net')).verdict).toBe('unknown');
    expect(g.decide(q('x.cdn-7.example.net')).verdict).toBe('unknown');
  });

  it('supports a glob in the last label', () => {
    const t = matcherFor('network_policies:\n  t:\n    binaries: [{ path: "/**" }]\n    endpoints:\n      - { host: "api.example.*", port: 443 }\n');
    expect(t.decide(q('api.example.io')).verdict).toBe('allow');
    expect(t.decide(q('api.example.co.uk')).verdict).toBe('unknown');
    expect(t.decide(q('web.example.io')).verdict).toBe('unknown');
  });

  it('matches exact hosts and IP literals', () => {
    const e = matcherFor('network_policies:\n  e:\n    binaries: [{ path: "/**" }]\n    endpoints:\n      - { host: exact.example, port: 443 }\n      - { host: "10.1.2.3", port: 8080 }\n');
    expect(e.decide(q('exact.example')).verdict).toBe('allow');
    expect(e.decide(q('sub.exact.example')).verdict).toBe('unknown');
    expect(e.decide({ host: '10.1.2.3', port: 8080 }).verdict).toBe('allow');
  });
});

describe('decision order and binaries', () => {
  const m = matcherFor(
    [
      'network_policies:',
      '  wide:',
      '    binaries: ["/**"]',
      '    endpoints: [{ host: "*.corp.example", port: 443 }]',
      '  blocked:',
      '    action: deny',
      '    endpoints: [{ host: secrets.corp.example, port: 443 }]',
      '  node_only:',
      '    endpoints: [{ host: api.node.example, port: 443 }]',
      '    binaries: [/usr/bin/node, "/opt/tools/*"]',
    ].join('\n'),
  );

  it('an explicit deny wins over an allow that also matches', () => {
    expect(m.decide(q('secrets.corp.example'))).toMatchObject({ verdict: 'deny', rule: 'blocked/0' });
    expect(m.decide(q('wiki.corp.example'))).toMatchObject({ verdict: 'allow', rule: 'wide/0' });
  });

  it('a rule that lists binaries matches only those binaries', () => {
    expect(m.decide(q('api.node.example', { binary: '/usr/bin/node' })).verdict).toBe('allow');
    expect(m.decide(q('api.node.example', { binary: '/opt/tools/fetch' })).verdict).toBe('allow');
    expect(m.decide(q('api.node.example', { binary: '/usr/bin/curl' })).verdict).toBe('unknown');
  });

  it('fails closed when the binary is unknown', () => {
    expect(m.decide(q('api.node.example')).verdict).toBe('unknown');
    expect(m.decide(q('api.node.example', { binary: undefined })).verdict).toBe('unknown');
  });

  it('`/**` names every program, an unidentified one too (OpenShell: glob over the binary path)', () => {
    expect(m.decide(q('wiki.corp.example', { binary: '/usr/bin/curl' })).verdict).toBe('allow');
    expect(m.decide(q('wiki.corp.example')).verdict).toBe('allow');
  });

  it('says why a covered host is not allowed for this program', () => {
    expect(m.decide(q('api.node.example', { binary: '/usr/bin/curl' })).reason).toBe('node_only/0 covers api.node.example:443 only for its binaries, not for /usr/bin/curl');
    expect(m.decide(q('api.node.example')).reason).toMatch(/not for a program that could not be identified/);
  });

  it('says why nothing matched', () => {
    expect(m.decide(q('evil.example'))).toEqual({ verdict: 'unknown', reason: 'no policy matches evil.example:443' });
  });
});

describe('a policy without binaries (OpenShell: no program may use it)', () => {
  const m = matcherFor(
    [
      'network_policies:',
      '  nobody:',
      '    endpoints: [{ host: api.telegram.org, port: 443 }]',
      '  empty_list:',
      '    binaries: []',
      '    endpoints: [{ host: discord.com, port: 443 }]',
      '  no_delete_for_anyone:',
      '    action: deny',
      '    endpoints: [{ host: shared.example, port: 443 }]',
      '  shared:',
      '    binaries: ["/**"]',
      '    endpoints: [{ host: shared.example, port: 443 }, { host: "*.open.example", port: 443 }]',
    ].join('\n'),
  );

  it('a missing or empty list lets no program through, named or not', () => {
    for (const binary of ['/usr/bin/curl', '/usr/local/bin/node', undefined]) {
      expect(m.decide(q('api.telegram.org', { binary })).verdict).toBe('unknown');
      expect(m.decide(q('discord.com', { binary })).verdict).toBe('unknown');
    }
    expect(m.decide(q('api.telegram.org', { binary: '/usr/bin/curl' })).reason).toMatch(/nobody\/0 covers api.telegram.org:443 but lists no binaries, so no program may use it/);
  });

  it('a deny policy without binaries still denies every program (the stricter reading)', () => {
    expect(m.decide(q('shared.example', { binary: '/usr/bin/curl' })).verdict).toBe('deny');
    expect(m.decide(q('shared.example')).verdict).toBe('deny');
    expect(m.decide(q('x.open.example', { binary: '/usr/bin/curl' })).verdict).toBe('allow');
  });
});

describe('L7 rules', () => {
  const m = matcherFor(
    [
      'network_policies:',
      '  api:',
      '    binaries: ["/**"]',
      '    endpoints:',
      '      - host: api.example.com',
      '        port: 443',
      '        protocol: rest',
      '        rules:',
      '          - allow: { method: GET, path: "/repos/**" }',
      '          - allow: { method: POST, path: "/repos/*/issues" }',
      '        deny_rules:',
      '          - { method: "*", path: "/repos/secret/**" }',
      '      - { host: ro.example.com, port: 443, access: read-only }',
      '      - { host: rw.example.com, port: 443, access: read-write }',
      '      - { host: full.example.com, port: 443, access: full }',
      '      - { host: audit.example.com, port: 443, access: read-only, enforcement: audit }',
    ].join('\n'),
  );
  const req = (host: string, method: string, path: string) => m.decide({ host, port: 443, method, path });

  it('allows only what a rule allows, by method and path glob', () => {
    expect(req('api.example.com', 'GET', '/repos/a/b/pulls?page=2').verdict).toBe('allow');
    expect(req('api.example.com', 'POST', '/repos/a/issues').verdict).toBe('allow');
    expect(req('api.example.com', 'POST', '/repos/a/b/issues')).toMatchObject({ verdict: 'deny', reason: 'no rule of api/0 allows POST /repos/a/b/issues' });
    expect(req('api.example.com', 'DELETE', '/repos/a').verdict).toBe('deny');
  });

  it('deny_rules win over allow rules', () => {
    expect(req('api.example.com', 'GET', '/repos/secret/x')).toMatchObject({ verdict: 'deny', reason: expect.stringMatching(/deny_rule/) });
  });

  it('allows at L4 (no method yet) when the host and port match', () => {
    expect(m.decide({ host: 'api.example.com', port: 443 }).verdict).toBe('allow');
  });

  it('access: read-only | read-write | full', () => {
    expect(req('ro.example.com', 'GET', '/').verdict).toBe('allow');
    expect(req('ro.example.com', 'head', '/').verdict).toBe('allow');
    expect(req('ro.example.com', 'POST', '/').verdict).toBe('deny');
    expect(req('rw.example.com', 'POST', '/').verdict).toBe('allow');
    expect(req('rw.example.com', 'DELETE', '/').verdict).toBe('deny');
    expect(req('full.example.com', 'DELETE', '/').verdict).toBe('allow');
  });

  it('enforcement: audit allows but says what it would have denied', () => {
    expect(req('audit.example.com', 'POST', '/x')).toMatchObject({ verdict: 'allow', reason: expect.stringMatching(/^audit only/) });
  });

  it('a deny policy with rules denies only the requests they name', () => {
    const d = matcherFor(
      'network_policies:\n  open:\n    binaries: [{ path: "/**" }]\n    endpoints: [{ host: h.example, port: 443 }]\n  no_delete:\n    action: deny\n    binaries: [{ path: "/**" }]\n    endpoints: [{ host: h.example, port: 443, rules: [{ method: DELETE }] }]\n',
    );
    expect(d.decide({ host: 'h.example', port: 443, method: 'GET', path: '/' }).verdict).toBe('allow');
    expect(d.decide({ host: 'h.example', port: 443, method: 'DELETE', path: '/' })).toMatchObject({ verdict: 'deny', rule: 'no_delete/0' });
  });
});
