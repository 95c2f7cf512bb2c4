/**
 * Keys named like Object.prototype members (issue 14): `toString`, `constructor`, `hasOwnProperty`,
 * `__proto__` at the top level and nested must never crash validation ("Cannot read properties of
 * undefined (reading 'def')"); each is an ordinary unknown key with its file:line:col, or a
 * positioned error where the schema takes no unknown keys.
 */
import { describe, expect, it } from 'vitest';
import { parsePolicy, type PolicyIssue } from '../../src/policy/parse.js';
import { NemoclawError } from '../../src/shared/errors.js';

const KEYS = ['toString', 'constructor', 'hasOwnProperty', '__proto__'];

/** Warnings of an accepted file, or the issues of a refused one (never a crash). */
function issuesOf(text: string): PolicyIssue[] {
  try {
    return parsePolicy(text, 'p.yaml').warnings;
  } catch (err) {
    expect(err).toBeInstanceOf(NemoclawError);
    expect((err as NemoclawError).code).toBe('policy_invalid');
    return (err as NemoclawError).details as PolicyIssue[];
  }
}

describe('policy keys named like Object.prototype members', () => {
  for (const key of KEYS) {
    it(`${key} at the top level is an unknown field at p.yaml:2:1`, () => {
      const issues = issuesOf(`version: 1\n${key}: 1\n`);
      expect(issues).toContainEqual(expect.objectContaining({ file: 'p.yaml', line: 2, col: 1, path: key }));
    });

    it(`${key} nested (in a network policy, an endpoint and approvals) gets its own position`, () => {
      const text = `version: 1
network_policies:
  ${key}:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: a.example.com
        port: 443
        ${key}: 1
  ok:
    ${key}: 2
    binaries: [{ path: "/**" }]
    endpoints:
      - host: b.example.com
        port: 443
approvals:
  mode: ask
  ${key}: 3
`;
      const issues = issuesOf(text);
      for (const i of issues) {
        expect(i.line).toBeGreaterThan(0);
        expect(i.col).toBeGreaterThan(0);
      }
      const lines = issues.map((i) => i.line);
      expect(lines).toEqual(expect.arrayContaining([8, 10, 17]));
    });
  }
});

describe('PUT /v1/policy (policy set) with such keys', () => {
  it('applies or refuses with positions, never answers internal', async () => {
    const { startTestSupervisor } = await import('../helpers/supervisor.js');
    const t = await startTestSupervisor();
    try {
      for (const key of KEYS) {
        const yaml = `version: 1\n${key}: 1\nnetwork_policies:\n  ${key}:\n    ${key}: 2\n    binaries: [{ path: "/**" }]\n    endpoints:\n      - host: ${key.replace(/_/g, 'x').toLowerCase()}.example.com\n        port: 443\n        ${key}: 3\n`;
        let code = 'ok';
        try {
          await t.client.setPolicy(yaml);
        } catch (err) {
          code = (err as NemoclawError).code;
        }
        expect(code, key).not.toBe('internal');
        expect(['ok', 'policy_invalid']).toContain(code);
      }
      const status = await t.client.status();
      expect(status.policy.revision).toBeGreaterThan(1);
    } finally {
      await t.stop();
    }
  });
});
