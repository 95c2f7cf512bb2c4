/**
 * Preparing a sandbox to run a blueprint before its supervisor starts: the base policy
 * (blueprint policy + presets + inference profile) and the agent state (agent.json) the agent
 * service reads at start. Used by `onboard` and by `up --blueprint NAME`.
 * The overlay (operator's "always allow" rules) is never touched.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { checkLock, importBlueprint, packageKeysDir } from '../blueprint/index.js';
import { ensureSandboxDirs, homePaths, type SandboxPaths } from '../shared/home.js';
import { loadBlueprintSpec, type LoadedBlueprint } from './blueprint-spec.js';
import { detectEnvironment, keptPresetFiles, planOnboarding, systemDetectors, type DetectedEnvironment, type Detectors, type OnboardingPlan } from './onboard.js';
import type { PresetFile } from '../policy/index.js';
import { agentStateFile, readAgentState, resolveBlueprintDir, writeAgentState, type AgentState } from './service.js';

export interface PrepareOptions {
  home: string;
  paths: SandboxPaths;
  /** Packaged name or directory. */
  blueprint: string;
  profile?: string;
  presets?: string[];
  /** Preset files (--preset FILE), read and validated; applied as NemoClaw applies presets. */
  presetFiles?: PresetFile[];
  packageRoot: string;
  detectors?: Detectors;
  /** Regenerate the policy even when this sandbox already ran this blueprint. */
  force?: boolean;
  /** Accept a blueprint whose digest differs from the one the sandbox is locked to. */
  upgrade?: boolean;
}

export interface PreparedLaunch {
  blueprint: LoadedBlueprint;
  /** sha256 digest of the blueprint's canonical manifest. */
  digest: string;
  signer: string | undefined;
  environment: DetectedEnvironment | undefined;
  plan: OnboardingPlan | undefined;
  /** The base policy file to start the supervisor with. */
  policyFile: string;
  state: AgentState;
  /** False when the sandbox already had this blueprint and its policy was kept as is. */
  policyWritten: boolean;
}

export async function prepareBlueprintLaunch(opts: PrepareOptions): Promise<PreparedLaunch> {
  ensureSandboxDirs(opts.paths, opts.home);
  const sourceDir = resolveBlueprintDir(opts.blueprint, opts.packageRoot);
  loadBlueprintSpec(sourceDir); // names a bad field before anything is copied
  // Verify (MANIFEST, digest, signature), copy into the content-addressed store, and run only from there.
  const home = homePaths(opts.home);
  const verified = importBlueprint(sourceDir, home.blueprintStore, { trustedKeyDirs: [home.trustedKeysDir, packageKeysDir()] });
  checkLock(opts.paths.dir, { name: verified.name, version: verified.version, digest: verified.digest }, { upgrade: opts.upgrade === true });
  const dir = verified.dir;
  const blueprint = loadBlueprintSpec(dir);
  const stateFile = agentStateFile({ paths: opts.paths });
  const previous = readAgentState(stateFile);
  const sameBlueprint = previous?.blueprint === blueprint.spec.name;
  const keepPolicy =
    !opts.force && sameBlueprint && existsSync(opts.paths.policyFile) && opts.profile === undefined && opts.presets === undefined && opts.presetFiles === undefined;
  let environment: DetectedEnvironment | undefined;
  let plan: OnboardingPlan | undefined;
  if (!keepPolicy) {
    // No preset files given: keep those the last onboarding applied (as the packaged presets of
    // the previous policy are kept).
    const presetFiles = opts.presetFiles ?? keptPresetFiles(opts.paths.dir, opts.paths.policyFile).files;
    environment = await detectEnvironment(blueprint, opts.detectors ?? systemDetectors(join(opts.home, 'credentials.json')));
    plan = planOnboarding(
      blueprint,
      environment,
      {
        ...(opts.profile !== undefined ? { profile: opts.profile } : {}),
        ...(opts.presets !== undefined ? { presets: opts.presets } : {}),
        presetFiles,
        ...(existsSync(opts.paths.policyFile) ? { previousPolicyText: readFileSync(opts.paths.policyFile, 'utf8') } : {}),
      },
      opts.packageRoot,
    );
  }
  const policyFile = keepPolicy ? opts.paths.policyFile : join(opts.paths.dir, 'blueprint-policy.yaml');
  if (plan) writeFileSync(policyFile, plan.policyText, { mode: 0o600 });
  const state: AgentState = {
    blueprint: blueprint.spec.name,
    blueprint_dir: dir,
    profile: plan?.profile ?? previous?.profile ?? blueprint.spec.inference.default_profile,
    gateway_token: previous?.gateway_token ?? randomBytes(24).toString('base64url'),
    created_at: previous?.created_at ?? new Date().toISOString(),
  };
  writeAgentState(stateFile, state);
  return { blueprint, digest: verified.digest, signer: verified.signature.state === 'trusted' ? verified.signature.keyId : undefined, environment, plan, policyFile, state, policyWritten: plan !== undefined };
}
