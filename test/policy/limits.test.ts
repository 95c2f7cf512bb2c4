/**
 * Policy files that are wrong in size or shape (megabytes, binary, thousands of problems) are
 * refused with a short error that names the file and what to do, and big-but-valid ones still load.
 */
import { writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_POLICY_BYTES, formatPolicyIssues, loadPolicyFile, parsePolicy, readPolicyFile, type PolicyIssue } from '../../src/policy/index.js';
import { NemoclawError } from '../../src/shared/errors.js';

let dir: string;

beforeAll(async () => {
  dir = await mkdtemp(join(tmpdir(), 'nct-pollim-'));
});

afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
});

/** A valid policy with `n` network policies (one host each). */
function manyPolicies(n: number, from = 0): string {
  const parts = ['version: 1\nnetwork_policies:\n'];
  for (let i = from; i < from + n; i++) parts.push(`  p${i}:\n    endpoints:\n      - host: h${i}.example.com\n        port: 443\n`);
  return parts.join('');
}

function refusal(fn: () => unknown): NemoclawError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(NemoclawError);
    return err as NemoclawError;
  }
  throw new Error('expected the policy to be refused');
}

async function asyncRefusal(p: Promise<unknown>): Promise<NemoclawError> {
  const err = await p.then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(NemoclawError);
  return err as NemoclawError;
}

describe('policy size cap', () => {
  it('a file over 1 MiB is refused before parsing, naming the file, its size and what to do', async () => {
    const file = join(dir, 'too-big.yaml');
    writeFileSync(file, `version: 1\n# ${'x'.repeat(MAX_POLICY_BYTES)}\n`);
    const err = await asyncRefusal(loadPolicyFile(file));
    expect(err.code).toBe('invalid_input');
    expect(err.exitCode).toBe(2);
    expect(err.message).toBe(`policy file ${file} is 1.0 MiB, larger than the 1 MiB a policy may be — did you pass the right file?`);
    expect(err.nextStep).toMatch(/pass the policy YAML file/);
  });

  it('reads a device or pipe only up to the cap instead of loading it whole', async () => {
    const err = await asyncRefusal(readPolicyFile('/dev/zero'));
    expect(err.message).toMatch(/^policy file \/dev\/zero is over 1\.0 MiB, larger than/);
  });

  it('policy text over the cap is refused by parsePolicy too (the control API path)', () => {
    const err = refusal(() => parsePolicy(manyPolicies(40_000), 'api.yaml'));
    expect(err.code).toBe('invalid_input');
    expect(err.message).toMatch(/^policy file api\.yaml is \d+\.\d MiB, larger than the 1 MiB/);
  });

  it('a policy just under the cap (14,000 network policies) loads, with every policy', async () => {
    const text = manyPolicies(14_000);
    expect(Buffer.byteLength(text)).toBeGreaterThan(MAX_POLICY_BYTES * 0.95);
    expect(Buffer.byteLength(text)).toBeLessThanOrEqual(MAX_POLICY_BYTES);
    const file = join(dir, 'near-cap.yaml');
    writeFileSync(file, text);
    const { doc } = await loadPolicyFile(file);
    expect(Object.keys(doc.network_policies)).toHaveLength(14_000);
    expect(doc.network_policies.p13999?.endpoints[0]?.host).toBe('h13999.example.com');
  });

  it('a file of invalid UTF-8 under the cap in bytes is not refused as too large', async () => {
    const file = join(dir, 'latin1.yaml');
    // 0xe9 alone is not UTF-8: each decodes to U+FFFD (3 bytes in UTF-8), tripling the text.
    const body = Buffer.concat([Buffer.from('version: 1\n# '), Buffer.alloc(MAX_POLICY_BYTES / 2, 0xe9), Buffer.from('\n')]);
    writeFileSync(file, body);
    const { doc } = await loadPolicyFile(file);
    expect(doc.version).toBe(1);
  });
});

describe('duplicate keys', () => {
  it('each repeated key is reported at its own position, in any mapping', () => {
    const text = 'version: 1\nnetwork_policies:\n  a:\n    endpoints: []\n  a:\n    endpoints: []\napprovals:\n  mode: ask\n  mode: deny\n';
    const err = refusal(() => parsePolicy(text, 'dup.yaml'));
    const issues = err.details as PolicyIssue[];
    expect(issues.map((i) => `${i.line}:${i.col} ${i.message}`)).toEqual(['5:3 invalid YAML: Map keys must be unique', '9:3 invalid YAML: Map keys must be unique']);
  });

  it('keys of different types or in different mappings are not duplicates', () => {
    const text = 'version: 1\nnetwork_policies:\n  a:\n    endpoints: [{ host: a.example, port: 443 }]\n  b:\n    endpoints: [{ host: b.example, port: 443 }]\n';
    expect(Object.keys(parsePolicy(text, 'ok.yaml').doc.network_policies)).toEqual(['a', 'b']);
  });

  it('thousands of duplicates: the first ones listed, all of them counted', () => {
    const text = manyPolicies(7_000) + manyPolicies(7_000).replace('version: 1\nnetwork_policies:\n', '');
    const err = refusal(() => parsePolicy(text, 'dups.yaml'));
    expect(err.message.split('\n')[0]).toBe('dups.yaml: 7000 problems in the policy');
    const shown = formatPolicyIssues(err.details as PolicyIssue[]).split('\n');
    expect(shown).toHaveLength(21);
    expect(shown[0]).toBe('dups.yaml:28003:3 (document): invalid YAML: Map keys must be unique');
    expect(shown[20]).toBe('... and 6980 more');
    expect(JSON.stringify(err.details).length).toBeLessThan(32 * 1024);
  });
});

describe('short errors for files that are not policies', () => {
  it('binary content: one issue at the first control character, no bytes of it echoed', () => {
    const text = `version: 1\nnetwork_policies:\n  x${String.fromCharCode(0, 1, 2)}yz\n`;
    const err = refusal(() => parsePolicy(text, 'bin.yaml'));
    expect(err.message).toBe(
      'bin.yaml: 1 problem in the policy\nbin.yaml:3:4 (document): invalid YAML: control character U+0000, which YAML does not allow; a policy is a text file — is this the right file?',
    );
  });

  it('flow collections nested absurdly deep: one issue, not a parser stack overflow', () => {
    const err = refusal(() => parsePolicy(`version: 1\nx: ${'['.repeat(100_000)}\n`, 'deep.yaml'));
    expect(err.message.split('\n')[1]).toBe('deep.yaml:2:504 (document): invalid YAML: flow collections ([ ] / { }) nested more than 500 levels deep');
  });

  it('many syntax errors: at most 20 lines listed, the rest counted', () => {
    const text = `version: 1\n${Array.from({ length: 3_000 }, (_, i) => `k${i}: a: ${'q'.repeat(200)}\n`).join('')}`;
    const err = refusal(() => parsePolicy(text, 'junk.yaml'));
    const lines = err.message.split('\n');
    expect(lines).toHaveLength(22);
    expect(lines[1]).toBe('junk.yaml:2:5 (document): invalid YAML: Nested mappings are not allowed in compact mappings');
    expect(lines[21]).toMatch(/^\.\.\. and \d+ more$/);
  });

  it('a YAML error quoting the offending text quotes only a short excerpt of it', () => {
    const err = refusal(() => parsePolicy(`version: 1\n]${'q'.repeat(3_000)}\n`, 'excerpt.yaml'));
    const line = err.message.split('\n')[2]!;
    expect(line).toMatch(/^excerpt\.yaml:2:2 \(document\): invalid YAML: Unexpected scalar token in YAML stream: "q+\.\.\.$/);
    expect(line.length).toBeLessThan(200);
  });

  it('brackets inside quoted scalars, comments and paths do not count as nesting', () => {
    const rule = (i: number) => `  p${i}:\n    endpoints: [{ host: h${i}.example, port: 443, protocol: rest, rules: [{ allow: { method: GET, path: "/v1/[id" } }] }] # [x\n`;
    const text = `version: 1\nnetwork_policies:\n${Array.from({ length: 600 }, (_, i) => rule(i)).join('')}`;
    expect(Object.keys(parsePolicy(text, 'brackets.yaml').doc.network_policies)).toHaveLength(600);
  });

  it('a very long key is shortened in the field path', () => {
    const longKey = 'k'.repeat(200);
    const { warnings } = parsePolicy(`version: 1\n${longKey}: 1\n`, 'long.yaml');
    const line = formatPolicyIssues(warnings);
    expect(line).toBe(`long.yaml:2:1 ["${'k'.repeat(57)}..."]: unknown field, loaded but not enforced here`);
  });

  it('thousands of unknown fields: warnings are capped and counted', () => {
    const text = `version: 1\n${Array.from({ length: 5_000 }, (_, i) => `extra${i}: 1\n`).join('')}`;
    const { warnings } = parsePolicy(text, 'extra.yaml');
    expect(warnings.length).toBeLessThanOrEqual(101);
    const shown = formatPolicyIssues(warnings).split('\n');
    expect(shown).toHaveLength(21);
    expect(shown[20]).toBe('... and 4980 more');
  });

  it('an issue message with control characters is printed escaped', () => {
    const issue: PolicyIssue = { file: 'f.yaml', line: 1, col: 1, path: 'x', expected: 'y', message: 'bad \u001b[31mred\u0007 and\nnewline' };
    expect(formatPolicyIssues([issue])).toBe('f.yaml:1:1 x: bad \\u001b[31mred\\u0007 and\\u000anewline');
  });
});
