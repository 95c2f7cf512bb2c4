/**
 * The agent part: installs the agent's runtime (pinned Node + OpenClaw) under $NEMOCLAW_HOME/agents,
 * writes OpenClaw's offline-clean config, runs the agent as the sandbox's main process with health
 * checks and backoff restarts, the drill's stub model, onboarding and the systemd unit.
 * Other parts import only from here.
 */
export { agentServiceFactory, createAgentService, AGENT_SERVICE_NAME, readAgentState, agentStateFile, resolveBlueprintDir, runtimeSpecOf } from './service.js';
export type { AgentState, AgentServiceDeps } from './service.js';
export { loadBlueprintSpec, packagedBlueprintDir } from './blueprint-spec.js';
export type { BlueprintSpec, InferenceProfile, LoadedBlueprint } from './blueprint-spec.js';
export { agentRuntimeLayout, planAgentInstall, runAgentInstall, isRuntimeInstalled, execaRunner } from './installer.js';
export type { AgentRuntimeLayout, AgentRuntimeSpec, InstallProgress, InstallStep, CommandRunner } from './installer.js';
export { buildOpenClawConfig, openClawEnv, writeOpenClawConfig, INFERENCE_BASE_URL } from './openclaw-config.js';
export { startStubModel } from './stub-model.js';
export type { StubModelServer } from './stub-model.js';
export { AgentSupervisor } from './supervise.js';
export type { AgentLauncher, AgentProcessSpec, HealthCheck, LaunchedProcess } from './supervise.js';
export { renderSystemdUnit, installSystemdUnit, unitName, unitPath } from './systemd.js';
export type { SystemdUnitOptions, SystemdInstallResult } from './systemd.js';
export {
  detectEnvironment,
  planOnboarding,
  storeCredential,
  readCredentials,
  systemDetectors,
  profileOptions,
  blueprintPolicyText,
  isLoopbackUrl,
  applyPresetFiles,
  onboardingRecordFile,
  keptPresetFiles,
  readOnboardingRecord,
  storedPresetFiles,
  writeOnboardingRecord,
} from './onboard.js';
export type { DetectedEnvironment, Detectors, OnboardingChoices, OnboardingPlan, OnboardingRecord } from './onboard.js';
export { prepareBlueprintLaunch } from './launch.js';
export type { PrepareOptions, PreparedLaunch } from './launch.js';
export { prepareBlueprintForUp } from './cli.js';
