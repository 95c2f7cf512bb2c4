/** The control part: supervisor daemon, control API server and its typed client. */
export { ControlClient, eventQueryString } from './client.js';
export type {
  ControlClientOptions,
  EventQuery,
  FollowCallbacks,
  PolicySetResult,
  PolicyView,
  StreamControl,
  StreamEnd,
  SupervisorStatus,
} from './client.js';
export { Supervisor } from './supervisor.js';
export type { SupervisorConfig } from './supervisor.js';
export { SupervisorEventBus } from './eventbus.js';
export { ControlServer } from './server.js';
export { startDaemon, stopDaemon, inspectSandbox } from './daemon.js';
export type { SandboxState, StartDaemonResult, StopDaemonResult } from './daemon.js';
export { isProcessAlive } from './pidfile.js';
export { serviceFactories } from './services.js';
export type { ServiceFactory } from './services.js';
export { packageInfo, binPath } from '../shared/package.js';
export type * from './types.js';
