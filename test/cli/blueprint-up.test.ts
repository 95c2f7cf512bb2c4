/**
 * `up --blueprint NAME|DIR [--upgrade]` (real bin, real detached supervisor): the blueprint is
 * verified, copied into the content-addressed store and run from there; the sandbox is pinned to
 * its digest; a tampered or changed blueprint is refused unless --upgrade says otherwise.
 */
import { appendFileSync, chmodSync, cpSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { DRILL_OFFLINE_ENV, REPO_ROOT, makeTempHome, runCli, type TempHome } from '../helpers/supervisor.js';

interface StatusJson {
  running: boolean;
  blueprint?: { name: string; version: string; digest: string; dir: string; signer: string };
}

function lockOf(home: string, name: string): { name: string; version: string; digest: string } | undefined {
  const file = join(home, 'sandboxes', name, 'blueprint.lock.json');
  return existsSync(file) ? (JSON.parse(readFileSync(file, 'utf8')) as { name: string; version: string; digest: string }) : undefined;
}

function storeEntries(home: string): string[] {
  const dir = join(home, 'blueprints');
  return existsSync(dir) ? readdirSync(dir).filter((n) => n.startsWith('sha256-')) : [];
}

describe('up --blueprint (real bin)', { timeout: 120_000 }, () => {
  let home: TempHome;
  let bp: string;
  const started: string[] = [];

  beforeEach(async () => {
    home = await makeTempHome();
    bp = join(home.dir, 'my-drill');
    cpSync(join(REPO_ROOT, 'blueprints', 'drill'), bp, { recursive: true });
  });
  afterEach(async () => {
    for (const name of started.splice(0)) await runCli(['down', '--name', name], { home: home.dir });
    // The store is read-only by design; make it removable.
    const store = join(home.dir, 'blueprints');
    if (existsSync(store)) {
      const walk = (p: string): void => {
        chmodSync(p, 0o700);
        if (statSync(p).isDirectory()) for (const n of readdirSync(p)) walk(join(p, n));
      };
      walk(store);
    }
    await home.cleanup();
  }, 90_000);

  async function up(name: string, ...args: string[]) {
    const r = await runCli(['up', '--name', name, ...args], { home: home.dir, env: DRILL_OFFLINE_ENV, timeoutMs: 60_000 });
    if (r.code === 0) started.push(name);
    return r;
  }

  async function statusJson(name: string): Promise<StatusJson> {
    const r = await runCli(['status', '--name', name, '--json'], { home: home.dir });
    return JSON.parse(r.stdout) as StatusJson;
  }

  it('refuses a tampered blueprint naming the file, and starts and stores nothing', async () => {
    appendFileSync(join(bp, 'drill.mjs'), '\n// one more line\n');
    const r = await up('tampered', '--blueprint', bp);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('"drill.mjs" does not match its MANIFEST entry');
    expect(r.stderr).toContain('next step:');
    expect((await statusJson('tampered')).running).toBe(false);
    expect(lockOf(home.dir, 'tampered')).toBeUndefined();
    expect(storeEntries(home.dir)).toEqual([]);
  });

  it('runs from the read-only store, pins the digest, refuses a changed blueprint without --upgrade and takes it with', async () => {
    const first = await up('pinned', '--blueprint', bp);
    expect(first.code, first.stderr).toBe(0);
    const s1 = await statusJson('pinned');
    expect(s1.blueprint).toMatchObject({ name: 'drill', version: '1.0.0' });
    const d1 = s1.blueprint!.digest;
    expect(d1).toMatch(/^sha256:[0-9a-f]{64}$/);
    expect(s1.blueprint!.dir).toBe(join(home.dir, 'blueprints', d1.replace(':', '-')));
    expect(statSync(s1.blueprint!.dir).mode & 0o777).toBe(0o555);
    expect(lockOf(home.dir, 'pinned')?.digest).toBe(d1);
    const text = await runCli(['status', '--name', 'pinned'], { home: home.dir });
    expect(text.stdout).toMatch(new RegExp(`blueprint +drill 1\\.0\\.0 ${d1.slice(0, 19)} \\(unsigned\\)`));
    expect((await runCli(['down', '--name', 'pinned'], { home: home.dir })).code).toBe(0);

    // The author changes the blueprint on purpose (new version, new MANIFEST): a different digest.
    writeFileSync(join(bp, 'blueprint.yaml'), readFileSync(join(bp, 'blueprint.yaml'), 'utf8').replace('version: 1.0.0', 'version: 1.1.0'));
    const manifest = await runCli(['blueprint', 'manifest', bp], { home: home.dir });
    expect(manifest.code, manifest.stderr).toBe(0);
    const d2 = /digest (sha256:[0-9a-f]{64})/.exec(manifest.stdout)![1]!;
    expect(d2).not.toBe(d1);

    const refused = await up('pinned', '--blueprint', bp);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toContain(`drill 1.0.0 (${d1})`);
    expect(refused.stderr).toContain(`drill 1.1.0 (${d2})`);
    expect(refused.stderr).toContain(`nemoclaw-tui up --name pinned --blueprint ${bp} --upgrade`);
    expect((await statusJson('pinned')).running).toBe(false);
    expect(lockOf(home.dir, 'pinned')?.digest).toBe(d1);

    const upgraded = await up('pinned', '--blueprint', bp, '--upgrade');
    expect(upgraded.code, upgraded.stderr).toBe(0);
    expect(upgraded.stderr).toContain(`upgrading sandbox "pinned" from blueprint drill 1.0.0 (${d1}) to drill 1.1.0 (${d2})`);
    const s2 = await statusJson('pinned');
    expect(s2.blueprint).toMatchObject({ name: 'drill', version: '1.1.0', digest: d2 });
    expect(lockOf(home.dir, 'pinned')?.digest).toBe(d2);
  });

  it('up --blueprint on a running sandbox changes nothing under it and says how to switch', async () => {
    expect((await up('busy', '--blueprint', bp)).code).toBe(0);
    const d1 = lockOf(home.dir, 'busy')!.digest;
    writeFileSync(join(bp, 'blueprint.yaml'), readFileSync(join(bp, 'blueprint.yaml'), 'utf8').replace('version: 1.0.0', 'version: 1.0.1'));
    expect((await runCli(['blueprint', 'manifest', bp], { home: home.dir })).code).toBe(0);
    const again = await runCli(['up', '--name', 'busy', '--blueprint', bp, '--upgrade'], { home: home.dir, env: DRILL_OFFLINE_ENV });
    expect(again.code).toBe(0);
    expect(again.stdout).toContain('sandbox "busy" is already running');
    expect(again.stderr).toContain('was not applied to the running supervisor');
    expect(again.stderr).toContain(`nemoclaw-tui down --name busy && nemoclaw-tui up --name busy --blueprint ${bp} --upgrade`);
    expect(lockOf(home.dir, 'busy')!.digest).toBe(d1);
  });

  it('refuses to start a sandbox whose stored copy was changed after it was pinned', async () => {
    expect((await up('stored', '--blueprint', bp)).code).toBe(0);
    const stored = (await statusJson('stored')).blueprint!.dir;
    expect((await runCli(['down', '--name', 'stored'], { home: home.dir })).code).toBe(0);
    started.splice(0);
    chmodSync(stored, 0o755);
    chmodSync(join(stored, 'drill.mjs'), 0o644);
    appendFileSync(join(stored, 'drill.mjs'), '// injected\n');

    const r = await up('stored');
    expect(r.code).toBe(1);
    expect(r.stderr).toContain('the stored copy of blueprint drill 1.0.0 no longer verifies');
    expect(r.stderr).toContain('"drill.mjs"');
    expect((await statusJson('stored')).running).toBe(false);
  });
});
