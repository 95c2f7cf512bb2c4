import { statSync } from 'node:fs';
import { join } from 'node:path';
import type { Command } from 'commander';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildProgram, defaultArgs, loadCommandModules, main } from '../../src/cli/main.js';
import { parseSince, type CliIo } from '../../src/cli/util.js';
import { parseKinds } from '../../src/cli/commands/logs.js';
import { daemonCommands } from '../../src/cli/commands/daemon.js';
import { MINIMAL_POLICY, makeTempHome, runCli, writeTempFile, type TempHome } from '../helpers/supervisor.js';

function captureIo(env: NodeJS.ProcessEnv): { io: CliIo; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    io: { stdout: { write: (s: string) => ((out += s), true) }, stderr: { write: (s: string) => ((err += s), true) }, env },
    out: () => out,
    err: () => err,
  };
}

function allCommandPaths(cmd: Command, prefix: string[] = []): string[][] {
  const out: string[][] = [];
  for (const sub of cmd.commands) {
    if ((sub as unknown as { _hidden?: boolean })._hidden) continue;
    const path = [...prefix, sub.name()];
    if (sub.name() !== 'help') out.push(path);
    out.push(...allCommandPaths(sub, path));
  }
  return out;
}

describe('CLI', () => {
  let home: TempHome;
  beforeEach(async () => {
    home = await makeTempHome();
  });
  afterEach(async () => {
    await home.cleanup();
  });

  it('prints --version and exits 0', async () => {
    const c = captureIo({ NEMOCLAW_HOME: home.dir });
    expect(await main(['--version'], c.io)).toBe(0);
    expect(c.out()).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  it('has --help on every command', async () => {
    const paths = allCommandPaths(buildProgram(captureIo({}).io, await loadCommandModules()));
    for (const p of ['up', 'down', 'status', 'logs', 'policy validate', 'policy show', 'policy set', 'policy history', 'audit verify']) {
      expect(paths.map((x) => x.join(' '))).toContain(p);
    }
    for (const p of paths) {
      const c = captureIo({ NEMOCLAW_HOME: home.dir });
      expect(await main([...p, '--help'], c.io), p.join(' ')).toBe(0);
      expect(c.out()).toContain(`Usage: nemoclaw-tui ${p.join(' ')}`);
    }
  });

  it('exits 2 on usage errors (unknown command, missing argument, bad option value, bad sandbox name)', async () => {
    for (const argv of [['frobnicate'], ['policy', 'validate'], ['logs', '--output', 'xml'], ['logs', '-n', 'ten'], ['status', '--name', 'Bad/Name']]) {
      const c = captureIo({ NEMOCLAW_HOME: home.dir });
      expect(await main(argv, c.io), argv.join(' ')).toBe(2);
      expect(c.err().length).toBeGreaterThan(0);
    }
  });

  it('with no command runs the default of the last module that declares one (up + logs -f until the TUI claims it)', async () => {
    expect(daemonCommands.defaultArgs).toEqual(['start']);
    expect(buildProgram(captureIo({}).io, await loadCommandModules()).commands.map((c) => c.name())).toContain('start');
    expect(defaultArgs([{ register: () => undefined, defaultArgs: ['start'] }, { register: () => undefined, defaultArgs: ['tui'] }])).toEqual(['tui']);
  });

  it('policy validate: ok with warnings for fields not enforced here; exit 2 with file:line:col, path and expectation', async () => {
    const good = await writeTempFile(home.dir, 'good.yaml', `${MINIMAL_POLICY}landlock:\n  compatibility: best_effort\n`);
    const ok = captureIo({ NEMOCLAW_HOME: home.dir });
    expect(await main(['policy', 'validate', good], ok.io)).toBe(0);
    expect(ok.out()).toContain('valid (1 network policy)');

    const bad = await writeTempFile(home.dir, 'bad.yaml', 'version: 1\nnetwork_policies:\n  x:\n    endpoints:\n      - host: a.example.com\n        port: "https"\n');
    const c = captureIo({ NEMOCLAW_HOME: home.dir });
    expect(await main(['policy', 'validate', bad], c.io)).toBe(2);
    expect(c.err()).toMatch(new RegExp(`${bad.replace(/[.*+?^${}()|[\]\\/]/g, '\\$&')}:6:15 network_policies\\.x\\.endpoints\\[0\\]\\.port: expected`));
    expect(c.err()).toContain('next step:');

    const missing = captureIo({ NEMOCLAW_HOME: home.dir });
    expect(await main(['policy', 'validate', join(home.dir, 'nope.yaml')], missing.io)).toBe(2);
    expect(missing.err()).toContain('cannot read policy file');
  });

  it('commands that need the supervisor say it is not running and how to start it (exit 1)', async () => {
    for (const argv of [['policy', 'show'], ['logs', '-f'], ['policy', 'history', '--name', 'lab']]) {
      const c = captureIo({ NEMOCLAW_HOME: home.dir });
      expect(await main(argv, c.io), argv.join(' ')).toBe(1);
      expect(c.err()).toContain('is not running');
      expect(c.err()).toMatch(/next step: start it with `nemoclaw-tui up( --name lab)?`/);
    }
  });

  it('status exits 1 when not running, audit verify names a missing log with exit 2', async () => {
    const st = captureIo({ NEMOCLAW_HOME: home.dir });
    expect(await main(['status', '--json'], st.io)).toBe(1);
    expect(JSON.parse(st.out())).toEqual({ running: false, name: 'default' });
    const v = captureIo({ NEMOCLAW_HOME: home.dir });
    expect(await main(['audit', 'verify'], v.io)).toBe(2);
    expect(v.err()).toContain('audit log not found');
  });

  it('up creates $NEMOCLAW_HOME 0700 (real bin)', async () => {
    const fresh = join(home.dir, 'fresh-home');
    const policy = await writeTempFile(home.dir, 'p.yaml', MINIMAL_POLICY);
    const up = await runCli(['up', '--policy', policy], { home: fresh });
    try {
      expect(up.code).toBe(0);
      expect(statSync(fresh).mode & 0o777).toBe(0o700);
    } finally {
      await runCli(['down'], { home: fresh });
    }
  });

  it('parses --since durations and ISO times, and --kind lists with prefixes', () => {
    const now = Date.parse('2026-11-22T10:00:00Z');
    expect(parseSince('10m', now)).toBe(now - 600_000);
    expect(parseSince('1h', now)).toBe(now - 3_600_000);
    expect(parseSince('2026-11-22T09:00:00Z', now)).toBe(Date.parse('2026-11-22T09:00:00Z'));
    expect(() => parseSince('soon', now)).toThrow(/--since expects/);
    expect(parseKinds('policy.revision,net.*')).toEqual(['policy.revision', 'net.request', 'net.held', 'net.decision', 'net.dns']);
    expect(() => parseKinds('net.nothing')).toThrow(/unknown event kind "net.nothing"/);
  });
});
