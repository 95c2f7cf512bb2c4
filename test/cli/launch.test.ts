/**
 * Start-up of the CLI: command modules are imported only for the command that runs, the default
 * command's options work without naming it, the launcher gives the TUI its V8 flags, and output
 * into a closed pipe ends quietly.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { Command } from 'commander';
import { describe, expect, it } from 'vitest';
import { main, nodeFlagsFor, resolveInvocation } from '../../src/cli/main.js';
import { commandModules, lazy, type CommandModuleEntry, type LazyCommandModule } from '../../src/cli/commands/index.js';
import { action, type CliIo } from '../../src/cli/util.js';
import { BIN, makeTempHome, spawnCli, startTestSupervisor } from '../helpers/supervisor.js';

function captureIo(env: NodeJS.ProcessEnv = {}): { io: CliIo; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    io: { stdout: { write: (s: string) => ((out += s), true) }, stderr: { write: (s: string) => ((err += s), true) }, env },
    out: () => out,
    err: () => err,
  };
}

function lazyEntries(): LazyCommandModule[] {
  return commandModules.filter((e): e is LazyCommandModule => 'load' in e);
}

function moduleOf(entries: CommandModuleEntry[], command: string): CommandModuleEntry[] {
  return entries.filter((e) => 'commands' in e && e.commands.includes(command));
}

/** Fake modules that record whether they were imported and what their command received. */
function fakeModules(): { entries: CommandModuleEntry[]; loaded: Set<string>; seen: Array<{ command: string; name: string; opts: Record<string, unknown> }> } {
  const loaded = new Set<string>();
  const seen: Array<{ command: string; name: string; opts: Record<string, unknown> }> = [];
  const entries = [
    lazy({ commands: ['alpha'] }, async () => {
      loaded.add('alpha');
      return {
        register(program: Command) {
          program
            .command('alpha')
            .option('--fast')
            .action(
              action((ctx, opts: Record<string, unknown>) => {
                seen.push({ command: 'alpha', name: ctx.name, opts });
              }),
            );
        },
      };
    }),
    lazy({ commands: ['screen'], defaultArgs: ['screen'], nodeFlags: { screen: ['--max-semi-space-size=4'] } }, async () => {
      loaded.add('screen');
      return {
        register(program: Command) {
          program
            .command('screen')
            .option('--ascii')
            .option('--theme <theme>', 'dark or light', 'dark')
            .option('--host <host>')
            .action(
              action((ctx, opts: Record<string, unknown>) => {
                seen.push({ command: 'screen', name: ctx.name, opts });
              }),
            );
        },
      };
    }),
  ];
  return { entries, loaded, seen };
}

describe('lazy command modules', () => {
  it('every registration line names exactly the top-level commands its module registers', async () => {
    for (const entry of lazyEntries()) {
      const program = new Command();
      (await entry.load()).register(program);
      expect(program.commands.map((c) => c.name()).sort(), entry.commands.join(',')).toEqual([...entry.commands].sort());
    }
  });

  it('imports only the module of the command that runs (none for --version, all for the root --help)', async () => {
    const { entries, loaded, seen } = fakeModules();
    const c = captureIo();
    expect(await main(['alpha', '--fast'], c.io, entries)).toBe(0);
    expect([...loaded]).toEqual(['alpha']);
    expect(seen).toEqual([{ command: 'alpha', name: 'default', opts: { fast: true } }]);

    const v = fakeModules();
    const cv = captureIo();
    expect(await main(['--version'], cv.io, v.entries)).toBe(0);
    expect(cv.out()).toMatch(/^\d+\.\d+\.\d+\n$/);
    expect(v.loaded.size).toBe(0);

    const h = fakeModules();
    const ch = captureIo();
    expect(await main(['--help'], ch.io, h.entries)).toBe(0);
    expect(ch.out()).toContain('alpha');
    expect(ch.out()).toContain('screen');
    expect(ch.out()).toContain('With no command, runs `screen`');
    expect([...h.loaded].sort()).toEqual(['alpha', 'screen']);
  });

  it('the real registration: status, up and down load only the daemon module; help CMD only that module', () => {
    const daemon = moduleOf(commandModules, 'status');
    expect(daemon).toHaveLength(1);
    for (const argv of [['status'], ['--name', 'lab', 'status', '--json'], ['up', '--policy', 'p.yaml'], ['down']]) {
      expect(resolveInvocation(argv).modules, argv.join(' ')).toEqual(daemon);
    }
    expect(resolveInvocation(['help', 'policy']).modules).toEqual(moduleOf(commandModules, 'policy'));
    expect(resolveInvocation(['--version']).modules).toEqual([]);
    // A mistyped command loads everything, so commander can suggest the right one.
    expect(resolveInvocation(['polcy']).modules).toEqual(commandModules);
  });

  it('unknown commands are usage errors with a suggestion', async () => {
    const c = captureIo();
    expect(await main(['polcy', 'show'], c.io)).toBe(2);
    expect(c.err()).toContain("unknown command 'polcy'");
    expect(c.err()).toContain('Did you mean policy?');
  });
});

describe('no command: the default command with its own options', () => {
  it('passes --ascii, --theme, --host and the global --name to the default command, in any order', async () => {
    for (const argv of [['--ascii'], ['--name', 'x', '--theme', 'light'], ['--theme', 'light', '--name', 'x', '--ascii'], ['--host', 'me@box', '--name=x'], []]) {
      const { entries, seen, loaded } = fakeModules();
      const c = captureIo();
      expect(await main(argv, c.io, entries), `${argv.join(' ')}: ${c.err()}`).toBe(0);
      expect(loaded.has('alpha')).toBe(false);
      expect(seen).toHaveLength(1);
      const [call] = seen;
      expect(call!.command).toBe('screen');
      expect(call!.name).toBe(argv.includes('x') || argv.includes('--name=x') ? 'x' : 'default');
      expect(call!.opts.ascii).toBe(argv.includes('--ascii') ? true : undefined);
      expect(call!.opts.theme).toBe(argv.includes('light') ? 'light' : 'dark');
      expect(call!.opts.host).toBe(argv.includes('me@box') ? 'me@box' : undefined);
    }
  });

  it('a sandbox named like a command is still a --name value, not the command', async () => {
    const { entries, seen } = fakeModules();
    expect(await main(['--name', 'alpha', '--ascii'], captureIo().io, entries)).toBe(0);
    expect(seen).toEqual([{ command: 'screen', name: 'alpha', opts: { ascii: true, theme: 'dark' } }]);
  });

  it('an option neither the root nor the default command knows is a usage error', async () => {
    const { entries } = fakeModules();
    const c = captureIo();
    expect(await main(['--bogus'], c.io, entries)).toBe(2);
    expect(c.err()).toContain("unknown option '--bogus'");
  });

  it('the real default is the TUI: its options reach it (a bad --theme is refused by the TUI command itself)', async () => {
    expect(resolveInvocation(['--ascii', '--theme', 'light']).args).toEqual(['tui', '--ascii', '--theme', 'light']);
    const c = captureIo();
    expect(await main(['--name', 'x', '--theme', 'blue'], c.io)).toBe(2);
    expect(c.err()).toContain('--theme must be dark or light, got "blue"');
  });
});

describe('Node flags per command', () => {
  it('the TUI path (explicit or default) asks for a small heap; nothing else does', () => {
    for (const argv of [[], ['--ascii'], ['--name', 'x', '--theme', 'light'], ['tui', '--headless']]) {
      expect(nodeFlagsFor(argv), argv.join(' ')).toEqual(['--max-semi-space-size=8', '--max-old-space-size=384']);
    }
    for (const argv of [['status'], ['--version'], ['--help'], ['tui', '--help'], ['logs', '-f'], ['up', '--foreground'], ['__supervise']]) {
      expect(nodeFlagsFor(argv), argv.join(' ')).toEqual([]);
    }
  });

  it('the real bin runs the TUI path in a child started with the small-heap flags (real bin)', async () => {
    const t = await startTestSupervisor();
    // --headless: stdout is a pipe here, the follow output shows the command ran with its options.
    const p = spawnCli(['--headless', '--ascii'], { home: t.home });
    try {
      await p.waitForLine((l) => l.includes('supervisor.start'));
      const children = readFileSync(`/proc/${p.pid}/task/${p.pid}/children`, 'utf8').trim().split(/\s+/);
      expect(children).toHaveLength(1);
      const argv = readFileSync(`/proc/${children[0]}/cmdline`, 'utf8').replace(/\0$/, '').split('\0');
      expect(argv).toContain('--max-semi-space-size=8');
      expect(argv).toContain('--max-old-space-size=384');
      expect(argv).toContain(BIN);
      expect(argv.slice(-2)).toEqual(['--headless', '--ascii']);
    } finally {
      const r = await p.kill();
      expect(r.code).toBe(0);
      await t.stop();
    }
  });
});

/** Run the real bin with its stdout a pipe whose reader is already gone. */
function runIntoClosedPipe(args: string[], home: string): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], {
      env: { ...process.env, NEMOCLAW_HOME: home, NO_COLOR: '1' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d: string) => (stderr += d));
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

describe('closed pipes (| head)', () => {
  it('status, policy show, audit verify and --help exit quietly when their reader is gone (real bin)', async () => {
    const t = await startTestSupervisor();
    try {
      for (const args of [['status'], ['status', '--json'], ['policy', 'show'], ['policy', 'history'], ['audit', 'verify'], ['--help'], ['--version']]) {
        const r = await runIntoClosedPipe(args, t.home);
        expect(r.stderr, args.join(' ')).toBe('');
        expect(r.signal, args.join(' ')).toBeNull();
        expect(r.code, args.join(' ')).toBe(0);
      }
    } finally {
      await t.stop();
    }
  });

  it('`nemoclaw-tui status | head -1` prints one line and exits 0 (real bin, real shell pipe)', async () => {
    const t = await startTestSupervisor();
    try {
      const r = await new Promise<{ code: number | null; stdout: string; stderr: string }>((resolve) => {
        // The pipeline is a constant; the node binary and bin path come in as positional parameters.
        const child = spawn('bash', ['-c', 'set -o pipefail; "$0" "$1" status | head -1', process.execPath, BIN], {
          env: { ...process.env, NEMOCLAW_HOME: t.home, NO_COLOR: '1' },
          stdio: ['ignore', 'pipe', 'pipe'],
        });
        let stdout = '';
        let stderr = '';
        child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
        child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
        child.on('close', (code) => resolve({ code, stdout, stderr }));
      });
      expect(r.stderr).toBe('');
      expect(r.code).toBe(0);
      expect(r.stdout).toMatch(/^sandbox "default": running \(pid \d+/);
      expect(r.stdout.trimEnd().split('\n')).toHaveLength(1);
    } finally {
      await t.stop();
    }
  });

  it('a command that is not running still exits with its own code, without an EPIPE trace', async () => {
    const home = await makeTempHome();
    try {
      const r = await runIntoClosedPipe(['status'], home.dir);
      expect(r.code).toBe(1);
      expect(r.stderr).not.toMatch(/EPIPE|Error:|at /);
      expect(r.stderr).toContain('next step: start it with `nemoclaw-tui up`');
    } finally {
      await home.cleanup();
    }
  });
});
