/**
 * Every CLI command module, registered on the root program in this order. Each part adds its
 * command module here with one `lazy(...)` list entry (a plain CommandModule still works, but is
 * then imported on every start).
 */
import type { Command } from 'commander';

export interface CommandModule {
  register(program: Command): void;
  /**
   * Arguments to run when `nemoclaw-tui` is started with no command (only global options and the
   * options of that default command, e.g. `nemoclaw-tui --ascii`).
   * The LAST module in the list that sets this wins (the TUI module sets `['tui']`).
   */
  defaultArgs?: string[];
}

/**
 * A command module imported only when one of its commands runs, so `nemoclaw-tui --version` or
 * `status` does not load every part. `commands` names the top-level commands (and groups) its
 * register() adds; a name missing here still works (an unknown command loads every module), only
 * slower. Register with one line: `lazy({ commands: ['foo'] }, async () => (await import('./foo.js')).fooCommands)`.
 */
export interface LazyCommandModule {
  commands: readonly string[];
  load(): Promise<CommandModule>;
  /** As CommandModule.defaultArgs, known without loading the module. */
  defaultArgs?: string[];
  /**
   * Node/V8 flags the launcher (bin/nemoclaw-tui.js) starts the process with when this command
   * runs, by command name (it re-executes itself once to apply them).
   */
  nodeFlags?: Record<string, string[]>;
}

export type CommandModuleEntry = CommandModule | LazyCommandModule;

export function lazy(meta: Omit<LazyCommandModule, 'load'>, load: () => Promise<CommandModule>): LazyCommandModule {
  return { ...meta, load };
}

export const commandModules: CommandModuleEntry[] = [
  lazy({ commands: ['up', 'down', 'status', 'start', '__supervise'], defaultArgs: ['start'] }, async () => (await import('./daemon.js')).daemonCommands),
  lazy({ commands: ['policy'] }, async () => (await import('./policy.js')).policyCommands),
  lazy({ commands: ['audit'] }, async () => (await import('./audit.js')).auditCommands),
  lazy({ commands: ['logs'] }, async () => (await import('./logs.js')).logsCommands),
  lazy({ commands: ['budget'] }, async () => (await import('./budget.js')).budgetCommands),
  lazy({ commands: ['onboard'] }, async () => (await import('./onboard.js')).onboardCommands),
  lazy({ commands: ['service'] }, async () => (await import('./service.js')).serviceCommands),
  lazy({ commands: ['exec', 'connect'] }, async () => (await import('./exec.js')).execCommands),
  // The TUI keeps V8's heap small (an 8 MB young generation; an old-space ceiling, which also makes
  // V8 grow the heap in smaller steps): peak RSS ~140 MB instead of ~270 MB at 10k events/s (bench/tui.ts).
  lazy(
    { commands: ['tui', '__bridge'], defaultArgs: ['tui'], nodeFlags: { tui: ['--max-semi-space-size=8', '--max-old-space-size=384'] } },
    async () => (await import('./tui.js')).tuiCommands,
  ),
  lazy({ commands: ['pending', 'approve', 'deny'] }, async () => (await import('./approvals.js')).approvalsCommands),
  lazy({ commands: ['rules'] }, async () => (await import('./rules.js')).rulesCommands),
  lazy({ commands: ['quarantine'] }, async () => (await import('./quarantine.js')).quarantineCommands),
  lazy({ commands: ['blueprint'] }, async () => (await import('./blueprint.js')).blueprintCommands),
  lazy({ commands: ['run'] }, async () => (await import('./run.js')).runCommands),
  lazy({ commands: ['doctor'] }, async () => (await import('./doctor.js')).doctorCommands),
];
