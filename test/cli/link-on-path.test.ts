/**
 * `npm start` leaves a working `nemoclaw-tui` on PATH (issue 16: after the README's setup every
 * hint the tool printed failed). bin/link-on-path.js runs for real against temp directories.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, mkdtempSync, readlinkSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { execa } from 'execa';
import { REPO_ROOT } from '../helpers/supervisor.js';

const SCRIPT = join(REPO_ROOT, 'bin', 'link-on-path.js');
const TARGET = join(REPO_ROOT, 'bin', 'nemoclaw-tui.js');
const dirs: string[] = [];
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

function home(): { home: string; local: string } {
  const h = mkdtempSync(join(tmpdir(), 'nct-link-'));
  dirs.push(h);
  const local = join(h, '.local', 'bin');
  mkdirSync(local, { recursive: true });
  return { home: h, local };
}

const run = (env: Record<string, string>) => execa(process.execPath, [SCRIPT], { env, extendEnv: false, reject: false });

describe('link-on-path (npm start)', () => {
  it('links ~/.local/bin/nemoclaw-tui to this checkout when PATH has the directory, then says nothing', async () => {
    const { home: h, local } = home();
    const env = { HOME: h, PATH: `${local}:/usr/bin:/bin` };
    const first = await run(env);
    expect(first.exitCode).toBe(0);
    expect(readlinkSync(join(local, 'nemoclaw-tui'))).toBe(TARGET);
    expect(first.stderr).toContain(`linked ${join(local, 'nemoclaw-tui')} -> ${TARGET}`);
    const again = await run(env);
    expect(again.stderr).toBe('');
    // And it works: the link runs the CLI.
    const help = await execa('nemoclaw-tui', ['--help'], { env: { ...process.env, PATH: `${local}:${process.env.PATH}` }, reject: false });
    expect(help.exitCode).toBe(0);
    expect(help.stdout).toMatch(/Usage: nemoclaw-tui/);
  });

  it('prints the invocation that works when no directory on PATH is writable or meant for it', async () => {
    const { home: h, local } = home();
    // Neither ~/.local/bin nor npm's bin is on this PATH (and /usr/bin is not a place it links into).
    const r = await run({ HOME: h, PATH: '/nonexistent-dir:/usr/bin:/bin' });
    expect(r.exitCode).toBe(0);
    expect(r.stderr).toContain(`not on PATH: run it as \`node ${TARGET}\``);
    expect(existsSync(join(local, 'nemoclaw-tui'))).toBe(false);
  });

  it('leaves another nemoclaw-tui first on PATH alone and names it; NEMOCLAW_NO_LINK=1 skips everything', async () => {
    const { home: h, local } = home();
    const other = join(local, 'nemoclaw-tui');
    writeFileSync(other, '#!/bin/sh\necho other\n', { mode: 0o755 });
    const r = await run({ HOME: h, PATH: `${local}:/usr/bin:/bin` });
    expect(r.stderr).toContain(`${other} (another nemoclaw-tui) comes first on PATH`);
    // Debian's npm has prefix /usr: its bin is the distribution's, never linked into.
    const debian = await run({ HOME: h, PATH: '/usr/bin:/bin', npm_config_prefix: '/usr' });
    expect(debian.stderr).toContain('not on PATH');
    const skipped = await run({ HOME: h, PATH: '/usr/bin:/bin', NEMOCLAW_NO_LINK: '1' });
    expect(skipped.stderr).toBe('');
  });
});
