/**
 * The supervisor's parts, started in this order and stopped in reverse. Each part adds its factory
 * here with one line (policy store and event bus are not services: the supervisor owns them).
 */
import type { SupervisorOptions, SupervisorService } from './types.js';
import { createEgressService } from '../egress/index.js';
import { createQuarantineService } from './quarantine.js';
import { inferenceServiceFactory } from '../inference/index.js';
import { createMetersService } from '../meters/index.js';
import { agentServiceFactory } from '../agent/index.js';
import { createSandboxService } from '../sandbox/index.js';

export type ServiceFactory = (options: SupervisorOptions) => SupervisorService;

export const serviceFactories: ServiceFactory[] = [
  // quarantine (first: a quarantine in force is applied before anything can get out), egress
  // proxy, privacy router, sandbox driver, meters, agent — in that order
  () => createQuarantineService(),
  () => createEgressService(),
  inferenceServiceFactory,
  () => createSandboxService(),
  createMetersService, // keep after the sandbox driver
  agentServiceFactory, // last: needs the sandbox driver and the router
];
