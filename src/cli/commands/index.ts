/**
 * Every CLI command module, registered on the root program in this order. Each part adds its
 * command module here with one import and one list entry.
 */
import type { Command } from 'commander';
import { approvalsCommands } from './approvals.js';
import { auditCommands } from './audit.js';
import { blueprintCommands } from './blueprint.js';
import { budgetCommands } from './budget.js';
import { daemonCommands } from './daemon.js';
import { logsCommands } from './logs.js';
import { onboardCommands } from './onboard.js';
import { execCommands } from './exec.js';
import { serviceCommands } from './service.js';
import { policyCommands } from './policy.js';
import { tuiCommands } from './tui.js';
import { runCommands } from './run.js';
import { doctorCommands } from './doctor.js';

export interface CommandModule {
  register(program: Command): void;
  /**
   * Arguments to run when `nemoclaw-tui` is started with no command (only global options).
   * The LAST module in the list that sets this wins (the TUI module sets `['tui']`).
   */
  defaultArgs?: string[];
}

export const commandModules: CommandModule[] = [daemonCommands, policyCommands, auditCommands, logsCommands, budgetCommands, onboardCommands, serviceCommands, execCommands, tuiCommands, approvalsCommands, blueprintCommands, runCommands, doctorCommands];
