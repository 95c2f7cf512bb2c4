import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  DEFAULT_POLICY_PATH,
  canonicalPolicyYaml,
  formatPolicyIssues,
  listPresets,
  loadPolicyFile,
  parsePolicy,
  policyDigest,
  type PolicyIssue,
} from '../../src/policy/index.js';
import { NemoclawError } from '../../src/shared/errors.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'policy');
const PRESETS = join(FIXTURES, 'presets');

function issuesOf(text: string, opts = {}): PolicyIssue[] {
  try {
    parsePolicy(text, 'p.yaml', opts);
  } catch (err) {
    expect(err).toBeInstanceOf(NemoclawError);
    const e = err as NemoclawError;
    expect(e.code).toBe('policy_invalid');
    expect(e.exitCode).toBe(2);
    return e.details as PolicyIssue[];
  }
  throw new Error('expected the policy to be refused');
}

describe('policy schema: valid files', () => {
  it('fills defaults for a minimal file', () => {
    const { doc, warnings } = parsePolicy('version: 1\n', 'min.yaml');
    expect(warnings).toEqual([]);
    expect(doc.filesystem_policy).toEqual({ include_workdir: true, read_only: [], read_write: [], hidden: [], monitor: true, limits: { workdir: 20 * 1024 ** 3 } });
    expect(doc.approvals).toEqual({ mode: 'ask', timeout: 60, when_unattended: 'deny', max_pending: 64 });
    expect(doc.process.seccomp).toEqual({ block: [], allow: [] });
    expect(doc.network_policies).toEqual({});
  });

  it('filesystem_policy.limits.workdir: a size, or none; too small, unknown keys and junk are refused', () => {
    expect(parsePolicy('version: 1\nfilesystem_policy:\n  limits: { workdir: 2Gi }\n', 'a.yaml').doc.filesystem_policy.limits).toEqual({ workdir: 2 * 1024 ** 3 });
    expect(parsePolicy('version: 1\nfilesystem_policy:\n  limits: { workdir: none }\n', 'a.yaml').doc.filesystem_policy.limits).toEqual({ workdir: 'none' });
    for (const bad of ['workdir: 1Mi', 'workdir: lots', 'workdir: -5', 'disk: 1Gi']) {
      expect(() => parsePolicy(`version: 1\nfilesystem_policy:\n  limits: { ${bad} }\n`, 'a.yaml'), bad).toThrow(NemoclawError);
    }
  });

  it('normalises hosts, ports, sizes, durations, env and rules', () => {
    const { doc } = parsePolicy(
      [
        'version: 1',
        'process:',
        '  limits: { pids: 100, memory: 2Gi, cpu: 1.5 }',
        '  env: { DEBUG: 1, NAME: x }',
        'approvals: { timeout: 2m, when_unattended: hold }',
        'network_policies:',
        '  api:',
        '    endpoints:',
        '      - host: API.Example.COM.',
        '        ports: [8443, 443, 443]',
        '        protocol: REST',
        '        rules: [{ allow: { method: get, path: "/v1/**" } }, { method: POST }]',
        '        deny_rules: [{ deny: { method: DELETE } }]',
        '        allowed_ips: [10.0.0.0/8, "fd00::/8"]',
        '    binaries: [/usr/bin/node, { path: "/usr/local/bin/*" }]',
      ].join('\n'),
      'p.yaml',
    );
    expect(doc.process.limits).toEqual({ pids: 100, memory: 2 * 1024 ** 3, cpu: 1.5 });
    expect(doc.process.env).toEqual({ DEBUG: '1', NAME: 'x' });
    expect(doc.approvals.timeout).toBe(120);
    const api = doc.network_policies.api!;
    expect(api).toMatchObject({ name: 'api', action: 'allow', binaries: [{ path: '/usr/bin/node' }, { path: '/usr/local/bin/*' }] });
    expect(api.endpoints[0]).toEqual({
      host: 'api.example.com',
      ports: [443, 8443],
      protocol: 'rest',
      rules: [
        { method: 'GET', path: '/v1/**' },
        { method: 'POST', path: '/**' },
      ],
      deny_rules: [{ method: 'DELETE', path: '/**' }],
      allowed_ips: ['10.0.0.0/8', 'fd00::/8'],
    });
  });

  it('loads the shipped baseline policy and every shipped preset', async () => {
    const { doc, warnings } = await loadPolicyFile(DEFAULT_POLICY_PATH);
    expect(warnings).toEqual([]);
    expect(doc.network_policies).toEqual({});
    expect(doc.approvals.mode).toBe('ask');
    expect(doc.filesystem_policy.read_write).toEqual(['/sandbox', '/tmp']);
    expect(doc.filesystem_policy.hidden).toContain('~/.ssh');
    expect(Object.keys(doc.inference.providers)).toEqual(['local', 'nvidia']);
    const presets = listPresets();
    expect(presets).toEqual(expect.arrayContaining(['npm', 'pypi', 'github', 'huggingface', 'slack', 'telegram', 'discord', 'nvidia']));
    const all = parsePolicy(`version: 1\npresets: [${presets.join(', ')}]\n`, 'all.yaml');
    // The shipped presets name no binaries: the only warning is that this differs from OpenShell.
    expect(all.warnings.filter((w) => !/no `binaries`/.test(w.message))).toEqual([]);
    expect(Object.keys(all.doc.network_policies).sort()).toEqual([...presets].sort());
  });

  it('produces canonical YAML that is stable and parses back to the same document', () => {
    const text = readFileSync(join(FIXTURES, 'openshell-style.yaml'), 'utf8');
    const { doc } = parsePolicy(text, 'o.yaml');
    const canonical = canonicalPolicyYaml(doc);
    const again = parsePolicy(canonical, 'canonical.yaml').doc;
    expect(canonicalPolicyYaml(again)).toBe(canonical);
    expect(policyDigest(again)).toMatch(/^[0-9a-f]{64}$/);
    expect(policyDigest(again)).toBe(policyDigest(doc));
    // Key order in the source does not matter.
    const reordered = parsePolicy('network_policies: {}\nversion: 1\napprovals: { max_pending: 3, mode: deny }\n', 'a');
    const ordered = parsePolicy('version: 1\napprovals: { mode: deny, max_pending: 3 }\n', 'b');
    expect(canonicalPolicyYaml(reordered.doc)).toBe(canonicalPolicyYaml(ordered.doc));
  });
});

describe('policy schema: invalid files name file:line:col, path and what was expected', () => {
  it('reports each bad field at its exact position', () => {
    const text = [
      'version: 1', // 1
      'network_policies:', // 2
      '  web:', // 3
      '    endpoints:', // 4
      '      - host: "bad host!"', // 5
      '        port: 70000', // 6
      '      - host: ok.example', // 7
      '        port: 443', // 8
      '        allowed_ips: [10.0.0.0/8, 127.0.0.1/32]', // 9
      '        access: write-only', // 10
      'approvals:', // 11
      '  mode: maybe', // 12
    ].join('\n');
    const issues = issuesOf(text);
    expect(issues.map((i) => [i.line, i.col, i.path])).toEqual([
      [5, 15, 'network_policies.web.endpoints[0].host'],
      [6, 15, 'network_policies.web.endpoints[0].port'],
      [9, 35, 'network_policies.web.endpoints[1].allowed_ips[1]'],
      [10, 17, 'network_policies.web.endpoints[1].access'],
      [12, 9, 'approvals.mode'],
    ]);
    expect(issues[1]!.expected).toBe('a port number from 1 to 65535');
    expect(issues[1]!.message).toBe('expected a port number from 1 to 65535, got 70000');
    expect(issues[2]!.message).toMatch(/loopback/);
    expect(issues[4]!.expected).toBe('one of "ask", "deny"');
    expect(formatPolicyIssues(issues).split('\n')[1]).toBe(
      'p.yaml:6:15 network_policies.web.endpoints[0].port: expected a port number from 1 to 65535, got 70000',
    );
  });

  it('refuses allowed_ips overlapping loopback or link-local in any spelling', () => {
    for (const cidr of ['127.0.0.1', '0.0.0.0/0', '169.254.169.254/32', '::1', '::/0', 'fe80::/64', '::ffff:127.0.0.1']) {
      const issues = issuesOf(`version: 1\nnetwork_policies:\n  a:\n    endpoints:\n      - { host: a.example, port: 443, allowed_ips: ["${cidr}"] }\n`);
      expect(issues[0]!.path).toBe('network_policies.a.endpoints[0].allowed_ips[0]');
    }
    expect(issuesOf('version: 1\nnetwork_policies:\n  a:\n    endpoints:\n      - { host: a.example, port: 443, allowed_ips: [10.0.0.300/8] }\n')[0]!.line).toBe(5);
  });

  it('points a missing field at its parent mapping', () => {
    const issues = issuesOf('version: 1\nnetwork_policies:\n  a:\n    endpoints:\n      - host: a.example\n        protocol: rest\n');
    expect(issues).toHaveLength(1);
    expect(issues[0]).toMatchObject({ line: 5, col: 9, path: 'network_policies.a.endpoints[0].port', expected: 'a `port` or `ports` field' });
  });

  it('reports a missing version, wrong types and bad paths', () => {
    const issues = issuesOf('filesystem_policy:\n  read_only: relative/path\n  read_write: [tmp]\nprocess:\n  limits: { memory: lots }\n');
    expect(issues.map((i) => `${i.line}:${i.col} ${i.path} ${i.expected}`)).toEqual([
      '1:1 version 1 (the policy format version)',
      '2:14 filesystem_policy.read_only a list',
      '3:16 filesystem_policy.read_write[0] an absolute path (or ~/…)',
      '5:21 process.limits.memory a byte count or a size like 512Mi, 2Gi, 1G',
    ]);
  });

  it('reports YAML syntax errors with their position', () => {
    const issues = issuesOf('version: 1\nnetwork_policies:\n  a: [unclosed\n');
    expect(issues[0]!.expected).toBe('valid YAML');
    expect(issues[0]!.line).toBeGreaterThanOrEqual(3);
    const dup = issuesOf('version: 1\napprovals: {}\napprovals: {}\n');
    expect(dup[0]).toMatchObject({ line: 3, col: 1 });
  });

  it('refuses an empty file and a non-mapping document', () => {
    expect(issuesOf('')[0]).toMatchObject({ line: 1, col: 1, path: '(document)', expected: 'a mapping' });
    expect(issuesOf('- a\n- b\n')[0]).toMatchObject({ expected: 'a mapping' });
  });

  it('refuses a bad inference section with the router\'s own rules, at the position of each field', () => {
    const text = [
      'version: 1', // 1
      'inference:', // 2
      '  providers:', // 3
      '    local: { type: openai, base_url: "http://127.0.0.1:8000/v1", locality: local }', // 4
      '    cloud:', // 5
      '      type: grpc', // 6
      '      base_url: not-a-url', // 7
      '  routes:', // 8
      '    - name: pii', // 9
      '      when: { entities: [email, shoe_size] }', // 10
      '      redact_then: local', // 11
      '    - { name: two, provider: local, block: true }', // 12
      '  budgets:', // 13
      '    hour: { tokens: -5 }', // 14
      '  colour: blue', // 15
    ].join('\n');
    const issues = issuesOf(text);
    expect(issues.map((i) => `${i.line}:${i.col} ${i.path}`)).toEqual([
      '6:13 inference.providers.cloud.type',
      '7:17 inference.providers.cloud.base_url',
      '10:33 inference.routes[0].when.entities[1]',
      '12:7 inference.routes[1]',
      '14:21 inference.budgets.hour.tokens',
      '15:3 inference.colour',
    ]);
    expect(issues[0]!.message).toBe('expected one of "openai", "anthropic", got "grpc"');
    expect(issues[1]!.expected).toBe('an http:// or https:// URL');
    expect(issues[2]!.expected).toContain('"email"');
    expect(issues[3]!.expected).toMatch(/exactly one action/);
    expect(issues[5]!.message).toBe('expected a field this section defines (unknown fields are refused here), got unknown field "colour"');
    expect(formatPolicyIssues(issues).split('\n')[4]).toBe('p.yaml:14:21 inference.budgets.hour.tokens: expected a value > 0, got -5');
  });

  it('names a route that sends calls to a provider the section does not define', () => {
    const issues = issuesOf(
      ['version: 1', 'inference:', '  providers:', '    local: { type: openai, base_url: "http://127.0.0.1:8000/v1" }', '  routes:', '    - { redact_then: ghost }'].join('\n'),
    );
    expect(issues).toEqual([
      {
        file: 'p.yaml',
        line: 6,
        col: 22,
        path: 'inference.routes[0].redact_then',
        expected: 'the name of a provider in inference.providers (known: local)',
        message: 'expected the name of a provider in inference.providers (known: local), got "ghost"',
      },
    ]);
  });

  it('points inference errors at the field as written, for the short spellings too', () => {
    const issues = issuesOf(
      [
        'version: 1',
        'inference:',
        '  providers:',
        '    l: { kind: carrier-pigeon, base_url: "http://127.0.0.1:1/v1" }',
        '  routes:',
        '    - match: { model: [] }',
        '      provider: l',
        '  budgets:',
        '    daily_tokens: lots',
      ].join('\n'),
    );
    expect(issues.map((i) => `${i.line}:${i.col} ${i.path}`)).toEqual([
      '4:16 inference.providers.l.kind',
      '6:23 inference.routes[0].match.model',
      '9:19 inference.budgets.daily_tokens',
    ]);
  });

  it('accepts every inference feature the router supports', () => {
    const { doc } = parsePolicy(
      [
        'version: 1',
        'inference:',
        '  providers:',
        '    local: { type: openai, base_url: "http://127.0.0.1:8000/v1", locality: local }',
        '    claude: { type: anthropic, base_url: "https://api.anthropic.com", api_key_env: ANTHROPIC_API_KEY, price: { input_per_mtok: 3, output_per_mtok: 15 } }',
        '  routes:',
        '    - { name: no-secrets, when: { entities: [secret] }, block: true }',
        '    - { name: pii, when: { entities: [email, phone] }, redact_then: claude }',
        '    - { name: default, provider: claude, fallback: local }',
        '  redaction: { entities: [email, phone], markers: { patterns: [\'ACME-\\d+\'] } }',
        '  budgets: { day: { tokens: 1000, usd: 5 }, request: { tokens: 100 } }',
        '  rate_limits: { requests_per_minute: 10 }',
      ].join('\n'),
      'ok.yaml',
    );
    expect(Object.keys(doc.inference.providers)).toEqual(['local', 'claude']);
    expect(doc.inference.routes).toHaveLength(3);
  });

  it('loadPolicyFile names a missing file', async () => {
    await expect(loadPolicyFile('/nonexistent/policy.yaml')).rejects.toMatchObject({ code: 'not_found', exitCode: 2 });
  });
});

describe('OpenShell compatibility', () => {
  it('loads an OpenShell-style file unchanged and warns about fields not enforced here', async () => {
    const { doc, warnings } = await loadPolicyFile(join(FIXTURES, 'openshell-style.yaml'));
    expect(Object.keys(doc.network_policies)).toEqual(['claude_code', 'github_ro']);
    expect(doc.network_policies.claude_code!.endpoints[0]).toMatchObject({ host: 'api.anthropic.com', ports: [443], tls: 'terminate', access: 'full' });
    expect(doc.landlock).toEqual({ compatibility: 'best_effort' });
    expect(warnings.map((w) => `${w.line}:${w.col} ${w.path}`)).toEqual([
      '7:1 landlock',
      '16:99 network_policies.claude_code.endpoints[0].tls',
      '27:9 network_policies.github_ro.endpoints[0].tls',
      '30:9 network_policies.github_ro.endpoints[0].request_body_credential_rewrite',
      '33:1 inference_routes',
    ]);
    for (const w of warnings) expect(w.message).toMatch(/not enforced here/);
  });

  it('suggests the section a typo meant', () => {
    const { warnings } = parsePolicy('version: 1\nnetwork_polices: {}\n', 't.yaml');
    expect(warnings[0]!.message).toMatch(/did you mean `network_policies`/);
  });
});

describe('presets', () => {
  it('merges presets structurally: policies by name, endpoints by host+ports, binaries by path', () => {
    const text = [
      'version: 1',
      'presets: [alpha, beta]',
      'network_policies:',
      '  shared:',
      '    endpoints:',
      '      - { host: api.shared.example, port: 443, access: read-write }',
      '      - { host: own.example, port: 443 }',
    ].join('\n');
    const { doc } = parsePolicy(text, 'p.yaml', { presetsDir: PRESETS });
    expect(doc.presets).toEqual(['alpha', 'beta']);
    expect(Object.keys(doc.network_policies).sort()).toEqual(['alpha_only', 'shared']);
    const shared = doc.network_policies.shared!;
    expect(shared.endpoints.map((e) => e.host)).toEqual(['api.shared.example', 'cdn.alpha.example', 'beta.example', 'own.example']);
    expect(shared.endpoints[0]).toMatchObject({
      access: 'read-write',
      rules: [
        { method: 'GET', path: '/v1/**' },
        { method: 'POST', path: '/v1/jobs' },
      ],
    });
    expect(shared.binaries).toEqual([{ path: '/usr/bin/curl' }, { path: '/usr/bin/node' }]);
    expect(doc.network_policies.alpha_only!.endpoints[0]!.ports).toEqual([80, 443]);
  });

  it('names an unknown preset at its position and lists the available ones', () => {
    const issues = issuesOf('version: 1\npresets:\n  - alpha\n  - gamma\n', { presetsDir: PRESETS });
    expect(issues[0]).toMatchObject({ file: 'p.yaml', line: 4, col: 5, path: 'presets[1]' });
    expect(issues[0]!.expected).toMatch(/alpha, beta, broken/);
  });

  it('reports an invalid preset in the preset file', () => {
    const issues = issuesOf('version: 1\npresets: [broken]\n', { presetsDir: PRESETS });
    expect(issues[0]).toMatchObject({ file: join(PRESETS, 'broken.yaml'), line: 5, col: 35, path: 'network_policies.broken.endpoints[0].port' });
  });
});
