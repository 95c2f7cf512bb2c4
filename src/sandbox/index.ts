/**
 * The sandbox part: a driver interface (bubblewrap today; OpenShell/K8s later), the supervisor
 * service that owns sandboxed processes, the exec stream client, and the prerequisite checks.
 */
export { createBwrapDriver, launchBwrap, buildBwrapArgs, exitCodeOf, SANDBOX_NODE, SANDBOX_WORKDIR, PROXY_URL } from './bwrap.js';
export { validateReadOnlyBinds } from './bwrap.js';
export type { SandboxDriver, SandboxLaunch, RunningSandbox, SandboxInstanceInfo, ExitStatus, NetMode, ReadOnlyBind } from './bwrap.js';
export { createSandboxService } from './service.js';
export type { SandboxServiceApi, SandboxLaunchRequest, SandboxServiceOptions } from './service.js';
export { execInSandbox } from './exec-client.js';
export type { ExecIo, ExecResult, SignalSource } from './exec-client.js';
export { execSocketPath } from './exec-protocol.js';
export type { ExecStart, ExecStarted } from './exec-protocol.js';
export { buildSeccompProgram, BASELINE_BLOCKED } from './seccomp.js';
export type { SeccompProgram, SeccompOptions } from './seccomp.js';
export type { FsViolation } from './monitor.js';
export type { AppliedLimits } from './limits.js';
export type { WorkdirDiskStatus } from './workdir-disk.js';
export { runDoctor, applyFixes } from './doctor.js';
export type { DoctorCheck, DoctorReport } from './doctor.js';
