/**
 * CLI entry: builds the command tree from the registered command modules and runs it.
 * Returns the exit code (0 ok, 1 failure, 2 usage / invalid input); never calls process.exit.
 */
import { Command, CommanderError } from 'commander';
import { packageInfo } from '../control/version.js';
import { commandModules, type CommandModule } from './commands/index.js';
import { EXIT, attachRunState, printError, processIo, type CliIo } from './util.js';

export function buildProgram(io: CliIo, modules: CommandModule[] = commandModules): Command {
  const program = new Command();
  program
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
  for (const m of modules) m.register(program);
  return program;
}

/** argv holds no command, only global options (`--name N`). */
function onlyGlobalOptions(argv: string[]): boolean {
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--name') {
      i++;
      continue;
    }
    if (a.startsWith('--name=')) continue;
    return false;
  }
  return true;
}

export function defaultArgs(modules: CommandModule[] = commandModules): string[] {
  let args: string[] = [];
  for (const m of modules) if (m.defaultArgs) args = m.defaultArgs;
  return args;
}

export async function main(argv: string[], io: CliIo = processIo()): Promise<number> {
  const program = buildProgram(io);
  const state = attachRunState(program, io);
  const args = onlyGlobalOptions(argv) ? [...argv, ...defaultArgs()] : argv;
  try {
    await program.parseAsync(args, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help and version exit 0; every parse error is a usage error (commander already printed it).
      return err.exitCode === 0 ? EXIT.ok : EXIT.usage;
    }
    return printError(io, err);
  }
  return state.exitCode;
}
