/**
 * CLI entry: works out which command runs, imports only the command modules that register it
 * (see LazyCommandModule), builds the command tree and runs it.
 * Returns the exit code (0 ok, 1 failure, 2 usage / invalid input); never calls process.exit.
 */
import { Command, CommanderError, type Option } from 'commander';
import { packageInfo } from '../shared/package.js';
import { commandModules, type CommandModule, type CommandModuleEntry, type LazyCommandModule } from './commands/index.js';
import { EXIT, attachRunState, guardClosedPipes, printError, processIo, type CliIo } from './util.js';

function isLazy(entry: CommandModuleEntry): entry is LazyCommandModule {
  return typeof (entry as LazyCommandModule).load === 'function';
}

function rootProgram(io: CliIo): Command {
  return new Command()
    .name('nemoclaw-tui')
    .description('Terminal supervisor for sandboxed autonomous AI agents')
    .version(packageInfo().version, '-V, --version', 'print the version')
    .option('--name <name>', 'sandbox to address', 'default')
    .helpOption('-h, --help', 'show help for this command')
    .configureHelp({ showGlobalOptions: true, sortSubcommands: false })
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({
      writeOut: (s) => void io.stdout.write(s),
      writeErr: (s) => void io.stderr.write(s),
    });
}

/** The root program with these (already loaded) modules registered. */
export function buildProgram(io: CliIo, modules: CommandModule[]): Command {
  const program = rootProgram(io);
  for (const m of modules) m.register(program);
  const defaults = defaultArgs(modules);
  if (defaults.length > 0) {
    program.addHelpText(
      'after',
      `\nWith no command, runs \`${defaults.join(' ')}\`; its options may be given here too (see nemoclaw-tui ${defaults[0]} --help).\n`,
    );
  }
  return program;
}

/** Import every command module (root --help, unknown commands, tests). */
export async function loadCommandModules(entries: CommandModuleEntry[] = commandModules): Promise<CommandModule[]> {
  return Promise.all(entries.map(async (e) => (isLazy(e) ? withDefaults(e, await e.load()) : e)));
}

/** A lazily loaded module keeps the defaultArgs its registration line declares. */
function withDefaults(entry: LazyCommandModule, loaded: CommandModule): CommandModule {
  return entry.defaultArgs ? { register: (p) => loaded.register(p), defaultArgs: entry.defaultArgs } : loaded;
}

/** Arguments run when no command is given: the last module that declares some wins. */
export function defaultArgs(modules: ReadonlyArray<CommandModuleEntry> = commandModules): string[] {
  let args: string[] = [];
  for (const m of modules) if (m.defaultArgs) args = m.defaultArgs;
  return args;
}

export interface Invocation {
  /** The arguments commander parses (the default command put first when none was given). */
  args: string[];
  /** The top-level command that runs; undefined for root --help / --version and unknown commands. */
  command: string | undefined;
  /** The modules to load and register. */
  modules: CommandModuleEntry[];
}

const HELP_FLAGS = new Set(['-h', '--help']);
const VERSION_FLAGS = new Set(['-V', '--version']);

function takesValue(opt: Option): boolean {
  return opt.required || opt.optional;
}

/**
 * The first command name in argv, read the way commander reads it: root options (with their values)
 * are skipped; the first positional argument is the command; an option the root does not know
 * (e.g. the default command's `--ascii`) means no command was given.
 */
function scanForCommand(argv: string[], rootOptions: readonly Option[]): { command?: string; index: number; help: boolean; version: boolean } {
  let help = false;
  let version = false;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--') break;
    if (HELP_FLAGS.has(arg)) {
      help = true;
      continue;
    }
    if (VERSION_FLAGS.has(arg)) {
      version = true;
      continue;
    }
    if (arg.length > 1 && arg.startsWith('-')) {
      const flag = arg.startsWith('--') ? arg.split('=')[0]! : arg.slice(0, 2);
      const opt = rootOptions.find((o) => o.long === flag || o.short === flag);
      if (!opt) break;
      const inline = arg.startsWith('--') ? arg.includes('=') : arg.length > 2;
      if (takesValue(opt) && !inline) {
        const next = argv[i + 1];
        if (opt.required || (next !== undefined && !next.startsWith('-'))) i++;
      }
      continue;
    }
    return { command: arg, index: i, help, version };
  }
  return { index: -1, help, version };
}

function claimants(entries: CommandModuleEntry[], name: string): CommandModuleEntry[] {
  const lazyOnes = entries.filter((e) => isLazy(e) && e.commands.includes(name));
  if (lazyOnes.length === 0) return entries; // unknown to the registration lines: load everything
  return entries.filter((e) => !isLazy(e) || lazyOnes.includes(e));
}

/** Which command runs and which modules it needs, without importing any command module. */
export function resolveInvocation(argv: string[], entries: CommandModuleEntry[] = commandModules): Invocation {
  const scan = scanForCommand(argv, rootProgram(processIo()).options);
  if (scan.command !== undefined) {
    if (scan.command === 'help') {
      // `help CMD` needs only CMD's module; a bare `help` lists everything.
      const target = argv.slice(scan.index + 1).find((a) => !a.startsWith('-'));
      return { args: argv, command: undefined, modules: target === undefined ? entries : claimants(entries, target) };
    }
    const declared = entries.some((e) => isLazy(e) && e.commands.includes(scan.command!));
    return { args: argv, command: declared ? scan.command : undefined, modules: claimants(entries, scan.command) };
  }
  if (scan.help) return { args: argv, command: undefined, modules: entries };
  if (scan.version) return { args: argv, command: undefined, modules: [] };
  const defaults = defaultArgs(entries);
  if (defaults.length === 0) return { args: argv, command: undefined, modules: entries };
  return { args: [...defaults, ...argv], command: defaults[0], modules: claimants(entries, defaults[0]!) };
}

/** Node/V8 flags the process running `argv` should have (the launcher re-executes to add missing ones). */
export function nodeFlagsFor(argv: string[], entries: CommandModuleEntry[] = commandModules): string[] {
  const inv = resolveInvocation(argv, entries);
  if (inv.command === undefined || inv.args.some((a) => HELP_FLAGS.has(a))) return [];
  const flags: string[] = [];
  for (const e of inv.modules) if (isLazy(e)) flags.push(...(e.nodeFlags?.[inv.command] ?? []));
  return flags;
}

export async function main(argv: string[], io: CliIo = processIo(), entries: CommandModuleEntry[] = commandModules): Promise<number> {
  const guarded = guardClosedPipes(io);
  let state: { exitCode: number } | undefined;
  try {
    const inv = resolveInvocation(argv, entries);
    const program = buildProgram(guarded, await loadCommandModules(inv.modules));
    state = attachRunState(program, guarded);
    await program.parseAsync(inv.args, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit 0; every parse error is a usage error (commander already printed it).
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    return printError(guarded, err);
  }
  return state.exitCode;
}
