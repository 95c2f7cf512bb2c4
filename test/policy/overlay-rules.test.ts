/**
 * Operator rules in the policy store (issue 16): listed with stable ids, removed as revisions,
 * scoped exactly (binary, any port, `*.domain`), and time-boxed ones end by themselves on an
 * injected clock: at once for decisions, and as an `expiry` revision that rewrites overlay.yaml.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { EventInput } from '../../src/audit/events.js';
import { createPolicyStore } from '../../src/policy/index.js';
import { sandboxPaths, type SandboxPaths } from '../../src/shared/home.js';
import type { Clock } from '../../src/shared/clock.js';

let root: string;
let paths: SandboxPaths;
let events: EventInput[];
let nowMs: number;
const clock: Clock = { now: () => nowMs, monotonic: () => nowMs };

const BASE = 'version: 1\nnetwork_policies: {}\napprovals: { mode: ask }\n';

beforeEach(async () => {
  root = await mkdtemp(join(tmpdir(), 'nemoclaw-rules-'));
  paths = sandboxPaths('default', root);
  events = [];
  nowMs = Date.UTC(2026, 11, 3, 12, 0, 0);
});
afterEach(async () => {
  vi.useRealTimers();
  await rm(root, { recursive: true, force: true });
});

const open = () => createPolicyStore({ paths, baseText: BASE, source: 'base.yaml', clock, emit: (e) => events.push(e) });
const verdict = (store: Awaited<ReturnType<typeof open>>, host: string, port: number, binary?: string) => store.decideNetwork({ host, port, binary }).verdict;

describe('operator rules', () => {
  it('lists overlay and session rules with stable ids; rm is a revision and the host is unknown again', async () => {
    const store = await open();
    await store.addOverlayRule({ action: 'allow', host: 'api.example.com', port: 443, binary: '/usr/bin/curl' }, 'approval');
    store.addSessionAllow({ action: 'allow', host: 'pypi.org', port: 443 });
    const list = store.rules();
    expect(list).toEqual([
      expect.objectContaining({ scope: 'overlay', action: 'allow', host: 'api.example.com', port: 443, binary: '/usr/bin/curl', expires_at: null, author: 'approval' }),
      expect.objectContaining({ scope: 'session', action: 'allow', host: 'pypi.org', port: 443, binary: null }),
    ]);
    expect(list[0]!.id).toMatch(/^r-[0-9a-f]{8}$/);
    expect(list[1]!.id).toMatch(/^s-[0-9a-f]{8}$/);
    // The id is derived from what the rule covers: the same after a restart.
    const again = await open();
    expect(again.rules()[0]!.id).toBe(list[0]!.id);

    expect(verdict(store, 'api.example.com', 443, '/usr/bin/curl')).toBe('allow');
    const before = store.revision().number;
    const r = await store.removeRule(list[0]!.id, 'cli', 'not needed');
    expect(r.removed.id).toBe(list[0]!.id);
    expect(r.revision).toMatchObject({ number: before + 1, author: 'cli' });
    expect(r.revision.reason).toContain(`removed overlay rule ${list[0]!.id}`);
    expect(r.revision.reason).toContain('not needed');
    expect(verdict(store, 'api.example.com', 443, '/usr/bin/curl')).toBe('unknown');
    expect(await readFile(paths.overlayFile, 'utf8')).not.toContain('api.example.com');
    expect(events.filter((e) => e.kind === 'policy.revision').at(-1)).toMatchObject({ number: before + 1, author: 'cli' });

    // A session rule's removal is a revision too, although the effective policy text is unchanged.
    expect(verdict(store, 'pypi.org', 443)).toBe('allow');
    const s = await store.removeRule(list[1]!.id, 'tui');
    expect(s.revision).toMatchObject({ number: before + 2, author: 'tui' });
    expect(verdict(store, 'pypi.org', 443)).toBe('unknown');
    expect(store.rules()).toEqual([]);
    await expect(store.removeRule(list[1]!.id, 'cli')).rejects.toMatchObject({ code: 'not_found' });
  });

  it('writes exactly the scope asked: binary, any port, *.domain', async () => {
    const store = await open();
    await store.addOverlayRule({ action: 'allow', host: 'files.example.com', port: 'any', binary: '/usr/bin/curl' }, 'approval');
    await store.addOverlayRule({ action: 'allow', host: '*.github.com', port: 443 }, 'approval');
    // this binary only, any port
    expect(verdict(store, 'files.example.com', 8443, '/usr/bin/curl')).toBe('allow');
    expect(verdict(store, 'files.example.com', 80, '/usr/bin/curl')).toBe('allow');
    expect(verdict(store, 'files.example.com', 80, '/usr/bin/wget')).toBe('unknown');
    // any binary, one label under the domain, that port only
    expect(verdict(store, 'api.github.com', 443, '/usr/bin/wget')).toBe('allow');
    expect(verdict(store, 'api.github.com', 80)).toBe('unknown');
    expect(verdict(store, 'github.com', 443)).toBe('unknown');
    expect(verdict(store, 'a.b.github.com', 443)).toBe('unknown');
    // An any-port deny wins over a port's allow.
    await store.addOverlayRule({ action: 'deny', host: 'api.github.com', port: 'any' }, 'approval');
    expect(verdict(store, 'api.github.com', 443)).toBe('deny');
    const text = await readFile(paths.overlayFile, 'utf8');
    expect(text).toContain('port: any');
    // The overlay file with `port: any` loads again.
    const again = await open();
    expect(again.rules().map((r) => [r.host, r.port])).toEqual([
      ['files.example.com', 'any'],
      ['*.github.com', 443],
      ['api.github.com', 'any'],
    ]);
  });

  it('a time-boxed rule shows its time left and ends by itself (at once for decisions, then a revision)', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const store = await open();
    const expires = new Date(nowMs + 15 * 60_000).toISOString();
    await store.addOverlayRule({ action: 'allow', host: 'api.example.com', port: 443, expires_at: expires }, 'approval');
    expect(store.rules()[0]).toMatchObject({ expires_at: expires, expires_in_ms: 15 * 60_000 });
    expect(store.effectiveYaml()).toContain(`until ${expires}`);
    expect(verdict(store, 'api.example.com', 443)).toBe('allow');
    nowMs += 5 * 60_000;
    expect(store.rules()[0]!.expires_in_ms).toBe(10 * 60_000);

    // Past its end the rule no longer decides, even before its timer ran.
    nowMs += 10 * 60_000;
    const before = store.revision().number;
    expect(verdict(store, 'api.example.com', 443)).toBe('unknown');
    expect(store.rules()).toEqual([]);
    await vi.advanceTimersByTimeAsync(15 * 60_000);
    await store.expireDue();
    expect(store.revision()).toMatchObject({ number: before + 1, author: 'expiry' });
    expect(store.revision().reason).toContain('time-boxed rule ended');
    expect(await readFile(paths.overlayFile, 'utf8')).not.toContain('api.example.com');
  });

  it('the timer removes a time-boxed rule when its time comes', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    const store = await open();
    const seen: string[] = [];
    store.onChange((rev) => seen.push(`${rev.author}: ${rev.reason ?? ''}`));
    await store.addOverlayRule({ action: 'deny', host: 'evil.example', port: 80, expires_at: new Date(nowMs + 60_000).toISOString() }, 'approval');
    expect(verdict(store, 'evil.example', 80)).toBe('deny');
    nowMs += 60_000;
    await vi.advanceTimersByTimeAsync(60_000);
    // The revision is written to disk (real I/O): wait for it without moving the clock.
    const deadline = Date.now() + 10_000;
    while (!seen.at(-1)?.startsWith('expiry') && Date.now() < deadline) await new Promise((r) => setImmediate(r));
    expect(seen.at(-1)).toMatch(/^expiry: time-boxed rule ended: r-[0-9a-f]{8} deny evil.example:80/);
    expect(verdict(store, 'evil.example', 80)).toBe('unknown');
  });

  it('a rule that ended while the supervisor was down is gone at start, with an expiry revision', async () => {
    const store = await open();
    await store.addOverlayRule({ action: 'allow', host: 'api.example.com', port: 443, expires_at: new Date(nowMs + 60_000).toISOString() }, 'approval');
    nowMs += 120_000;
    const again = await open();
    expect(again.rules()).toEqual([]);
    expect(verdict(again, 'api.example.com', 443)).toBe('unknown');
    await again.expireDue();
    expect(again.history().some((r) => r.author === 'expiry')).toBe(true);
  });
});
