import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { EventInput } from '../../src/audit/events.js';
import { createPolicyStore } from '../../src/policy/index.js';
import type { PolicyRevision } from '../../src/policy/types.js';
import { sandboxPaths, type SandboxPaths } from '../../src/shared/home.js';
import type { Clock } from '../../src/shared/clock.js';

let root: string;
let paths: SandboxPaths;
let events: EventInput[];
const clock: Clock = { now: () => Date.UTC(2026, 10, 22, 10, 0, 0), monotonic: () => 0 };

const BASE = [
  'version: 1',
  'filesystem_policy:',
  '  read_write: [/sandbox, /tmp]',
  'network_policies:',
  '  npm:',
  '    binaries: ["/**"]',
  '    endpoints: [{ host: registry.npmjs.org, port: 443 }]',
  'approvals: { mode: ask }',
  '',
].join('\n');

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'nemoclaw-policy-'));
  paths = sandboxPaths('default', root);
  events = [];
});
afterEach(async () => {
  await rm(root, { recursive: true, force: true });
});

const open = (baseText = BASE) => createPolicyStore({ paths, baseText, source: 'base.yaml', clock, emit: (e) => events.push(e) });

describe('policy store revisions', () => {
  it('starts with a startup revision, persisted and announced', async () => {
    const store = await open();
    const rev = store.revision();
    expect(rev).toMatchObject({ number: 1, author: 'startup', time: '2026-11-22T10:00:00.000Z' });
    expect(rev.sha256).toMatch(/^[0-9a-f]{64}$/);
    expect(rev.diff).toContain('+version: 1');
    expect(events).toEqual([expect.objectContaining({ kind: 'policy.revision', number: 1, sha256: rev.sha256, author: 'startup' })]);
    expect(await readFile(paths.policyFile, 'utf8')).toBe(BASE);
    expect(store.decideNetwork({ host: 'registry.npmjs.org', port: 443 }).verdict).toBe('allow');
  });

  it('applies a new policy as a new revision with a unified diff, and tells listeners', async () => {
    const store = await open();
    const seen: Array<[PolicyRevision, string[]]> = [];
    store.onChange((rev, doc) => seen.push([rev, Object.keys(doc.network_policies)]));
    const next = BASE.replace('  npm:\n', '  pypi:\n    binaries: [{ path: "/**" }]\n    endpoints: [{ host: pypi.org, port: 443 }]\n  npm:\n');
    const rev = await store.apply(next, 'cli', 'new.yaml');
    expect(rev).toMatchObject({ number: 2, author: 'cli', reason: 'policy set from new.yaml' });
    expect(rev.diff).toMatch(/^--- policy@1\n\+\+\+ policy@2\n@@ /);
    expect(rev.diff).toContain('+  pypi:');
    expect(rev.diff).toContain('+      - host: pypi.org');
    expect(store.history().map((r) => r.number)).toEqual([1, 2]);
    expect(store.decideNetwork({ host: 'pypi.org', port: 443 }).verdict).toBe('allow');
    expect(seen).toEqual([[rev, ['pypi', 'npm']]]);
    expect(events.at(-1)).toMatchObject({ kind: 'policy.revision', number: 2, author: 'cli', diff: rev.diff });
    expect(await readFile(paths.policyFile, 'utf8')).toBe(next);
    // Applying the same text again is not a new revision.
    expect((await store.apply(next, 'cli', 'new.yaml')).number).toBe(2);
  });

  it('refuses a change to a static section and keeps the running revision', async () => {
    const store = await open();
    const before = store.revision();
    const changed = BASE.replace('[/sandbox, /tmp]', '[/sandbox, /tmp, /home]');
    await expect(store.apply(changed, 'cli', '/etc/p.yaml')).rejects.toMatchObject({
      code: 'policy_static_change',
      exitCode: 2,
      message: expect.stringMatching(/filesystem_policy/),
      nextStep: 'restart the sandbox with the new file: nemoclaw-tui down && nemoclaw-tui up --policy /etc/p.yaml',
    });
    await expect(store.apply(`${BASE}process: { limits: { pids: 5 } }\n`, 'cli')).rejects.toMatchObject({ code: 'policy_static_change' });
    expect(store.revision()).toEqual(before);
    expect(await readFile(paths.policyFile, 'utf8')).toBe(BASE);
  });

  it('refuses an invalid file with positions and keeps the running revision', async () => {
    const store = await open();
    const err = await store.apply(BASE.replace('port: 443', 'port: 0'), 'tui', 'bad.yaml').catch((e: unknown) => e);
    expect(err).toMatchObject({ code: 'policy_invalid', details: [expect.objectContaining({ file: 'bad.yaml', line: 7, path: 'network_policies.npm.endpoints[0].port' })] });
    expect(store.revision().number).toBe(1);
    expect(store.decideNetwork({ host: 'registry.npmjs.org', port: 443 }).verdict).toBe('allow');
    expect(events).toHaveLength(1);
  });

  it('refuses a bad inference section and keeps the running revision and its routes', async () => {
    const good = `${BASE}inference:\n  providers:\n    local: { type: openai, base_url: "http://127.0.0.1:8000/v1", locality: local }\n  routes:\n    - { provider: local }\n`;
    const store = await open(good);
    const seen: number[] = [];
    store.onChange((rev) => seen.push(rev.number));
    const bad = good.replace('- { provider: local }', '- { provider: nowhere }');
    const err = await store.apply(bad, 'cli', 'bad.yaml').catch((e: unknown) => e);
    expect(err).toMatchObject({
      code: 'policy_invalid',
      exitCode: 2,
      details: [expect.objectContaining({ file: 'bad.yaml', line: 13, col: 19, path: 'inference.routes[0].provider' })],
    });
    expect((err as Error).message).toContain('bad.yaml:13:19 inference.routes[0].provider: expected the name of a provider');
    expect(store.revision().number).toBe(1);
    expect(store.current().inference.routes).toEqual([{ provider: 'local' }]);
    expect(seen).toEqual([]);
    expect(await readFile(paths.policyFile, 'utf8')).toBe(good);
  });

  it('continues revision numbers and diffs across restarts', async () => {
    const first = await open();
    await first.apply(BASE.replace('mode: ask', 'mode: deny'), 'cli');
    const second = await open(BASE.replace('mode: ask', 'mode: deny'));
    expect(second.revision()).toMatchObject({ number: 3, author: 'startup', diff: '' });
    expect(second.history().map((r) => r.author)).toEqual(['startup', 'cli', 'startup']);
  });
});

describe('operator overlay', () => {
  it('adds always-allow / always-deny rules as revisions that survive a restart', async () => {
    const store = await open();
    expect(store.decideNetwork({ host: 'api.example.com', port: 443 }).verdict).toBe('unknown');
    const rev = await store.addOverlayRule({ action: 'allow', host: 'API.example.com', port: 443 }, 'tui', 'always allow (pending p-1)');
    expect(rev).toMatchObject({ number: 2, author: 'tui', reason: 'always allow (pending p-1)' });
    expect(rev.diff).toContain('overlay:allow:api.example.com:443');
    await store.addOverlayRule({ action: 'deny', host: 'registry.npmjs.org', port: 443 }, 'approval');
    expect(store.decideNetwork({ host: 'api.example.com', port: 443 })).toMatchObject({ verdict: 'allow', rule: 'overlay:allow:api.example.com:443/0' });
    expect(store.decideNetwork({ host: 'registry.npmjs.org', port: 443 }).verdict).toBe('deny');
    expect(await readFile(paths.overlayFile, 'utf8')).toContain('host: api.example.com');

    const restarted = await open();
    expect(restarted.decideNetwork({ host: 'api.example.com', port: 443 }).verdict).toBe('allow');
    expect(restarted.decideNetwork({ host: 'registry.npmjs.org', port: 443 }).verdict).toBe('deny');
    expect(restarted.effectiveYaml()).toContain('overlay:allow:api.example.com:443');
    // A new base policy keeps the overlay on top.
    await restarted.apply(BASE.replace('mode: ask', 'mode: deny'), 'cli');
    expect(restarted.decideNetwork({ host: 'api.example.com', port: 443 }).verdict).toBe('allow');
  });

  it('replaces an earlier rule for the same target and scopes rules to a binary', async () => {
    const store = await open();
    await store.addOverlayRule({ action: 'deny', host: 'x.example', port: 443 }, 'tui');
    await store.addOverlayRule({ action: 'allow', host: 'x.example', port: 443 }, 'tui');
    expect(store.decideNetwork({ host: 'x.example', port: 443 }).verdict).toBe('allow');
    await store.addOverlayRule({ action: 'allow', host: 'y.example', port: 443, binary: '/usr/bin/git' }, 'tui');
    expect(store.decideNetwork({ host: 'y.example', port: 443, binary: '/usr/bin/git' }).verdict).toBe('allow');
    expect(store.decideNetwork({ host: 'y.example', port: 443 }).verdict).toBe('unknown');
  });

  it('refuses a bad rule and a corrupt overlay file with clear errors', async () => {
    const store = await open();
    await expect(store.addOverlayRule({ action: 'allow', host: 'bad host', port: 99999 }, 'tui')).rejects.toMatchObject({ code: 'invalid_input' });
    expect(store.revision().number).toBe(1);
    await writeFile(paths.overlayFile, 'version: 1\nrules:\n  - { action: allow, host: ok.example, port: nope }\n');
    await expect(open()).rejects.toMatchObject({ code: 'policy_invalid', message: expect.stringMatching(/overlay.yaml:3:/), nextStep: expect.stringMatching(/overlay/) });
  });

  it('session allows apply at once, are not revisions and are not persisted', async () => {
    const store = await open();
    store.addSessionAllow({ action: 'allow', host: 'temp.example', port: 443 });
    expect(store.decideNetwork({ host: 'temp.example', port: 443 }).verdict).toBe('allow');
    expect(store.revision().number).toBe(1);
    // still active after a revision
    await store.apply(BASE.replace('mode: ask', 'mode: deny'), 'cli');
    expect(store.decideNetwork({ host: 'temp.example', port: 443 }).verdict).toBe('allow');
    const restarted = await open();
    expect(restarted.decideNetwork({ host: 'temp.example', port: 443 }).verdict).toBe('unknown');
  });
});
