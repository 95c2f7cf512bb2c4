/**
 * A long-lived supervisor takes hundreds of policy revisions (policy set, always-allow); what the
 * store keeps in memory per revision is bounded: the newest DIFFS_KEPT_IN_MEMORY keep their diff,
 * older ones only their metadata (the diffs stay on disk in policy-history.jsonl and the audit log).
 * Counted in entries and characters, on a real store.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { createPolicyStore } from '../../src/policy/index.js';
import { DIFF_NOT_KEPT, DIFFS_KEPT_IN_MEMORY } from '../../src/policy/store.js';
import type { PolicyRevision } from '../../src/policy/types.js';
import { sandboxPaths, type SandboxPaths } from '../../src/shared/home.js';
import type { Clock } from '../../src/shared/clock.js';

const REVISIONS = 300;
const clock: Clock = { now: () => Date.UTC(2026, 10, 22, 10, 0, 0), monotonic: () => 0 };
let root: string;
let paths: SandboxPaths;

/** A policy whose every revision changes 40 lines (a diff of a few KiB). */
function policy(i: number): string {
  const endpoints = Array.from({ length: 40 }, (_, k) => `      - { host: h${k}-rev${i}.example.com, port: 443 }`).join('\n');
  return `version: 1\nnetwork_policies:\n  many:\n    binaries: ["/**"]\n    endpoints:\n${endpoints}\napprovals: { mode: ask }\n`;
}

const kept = (revs: PolicyRevision[]): PolicyRevision[] => revs.filter((r) => r.diff !== DIFF_NOT_KEPT);
const diffChars = (revs: PolicyRevision[]): number => revs.reduce((n, r) => n + r.diff.length, 0);

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'nemoclaw-policy-bound-'));
  paths = sandboxPaths('default', root);
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

describe('policy store memory per revision', () => {
  it(`after ${REVISIONS} revisions only the newest ${DIFFS_KEPT_IN_MEMORY} keep their diff in memory`, async () => {
    const store = await createPolicyStore({ paths, baseText: policy(0), source: 'base.yaml', clock, emit: () => undefined });
    const sizes: number[] = [];
    for (let i = 1; i <= REVISIONS; i++) {
      await store.apply(policy(i), 'cli', 'p.yaml');
      if (i % 100 === 0) sizes.push(diffChars(store.history()));
    }
    const history = store.history();
    expect(history).toHaveLength(REVISIONS + 1);
    expect(history.map((r) => r.number)).toEqual(Array.from({ length: REVISIONS + 1 }, (_, i) => i + 1));
    expect(kept(history)).toHaveLength(DIFFS_KEPT_IN_MEMORY);
    expect(kept(history).map((r) => r.number)).toEqual(history.slice(-DIFFS_KEPT_IN_MEMORY).map((r) => r.number));
    expect(store.revision().diff).toContain(`+      - host: h0-rev${REVISIONS}.example.com`);
    // Flat from 100 to 300 revisions (it grew by one diff per revision).
    expect(sizes[2]! - sizes[0]!).toBeLessThan(sizes[0]! / 10);
    // Every diff is still on disk.
    const lines = (await readFile(paths.policyHistoryFile, 'utf8')).trim().split('\n');
    expect(lines).toHaveLength(REVISIONS + 1);
    expect((JSON.parse(lines[1]!) as PolicyRevision).diff).toContain('rev1.example.com');
  });

  it('a restart on a long history keeps the same bound', async () => {
    const first = await createPolicyStore({ paths, baseText: policy(0), source: 'base.yaml', clock, emit: () => undefined });
    for (let i = 1; i <= 120; i++) await first.apply(policy(i), 'cli', 'p.yaml');
    const again = await createPolicyStore({ paths, baseText: policy(121), source: 'base.yaml', clock, emit: () => undefined });
    const history = again.history();
    expect(history).toHaveLength(122);
    expect(kept(history)).toHaveLength(DIFFS_KEPT_IN_MEMORY);
    expect(again.revision().number).toBe(122);
    expect(again.revision().diff).toContain('rev121.example.com');
  });
});
