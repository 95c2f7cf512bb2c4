/**
 * The supervisor's parts, started in this order and stopped in reverse. Each part adds its factory
 * here with one line (policy store and event bus are not services: the supervisor owns them).
 */
import type { SupervisorOptions, SupervisorService } from './types.js';

export type ServiceFactory = (options: SupervisorOptions) => SupervisorService;

export const serviceFactories: ServiceFactory[] = [
  // egress proxy, privacy router, sandbox driver, meters, agent — in that order
];
