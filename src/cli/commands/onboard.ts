/**
 * `onboard`: detect providers, GPUs and memory; choose an inference profile and presets; store
 * keys 0600; write the sandbox's base policy (the overlay stays); install the agent runtime with
 * progress; start (or update) the supervisor with the agent; print how to attach, follow and approve.
 * Every prompt has a flag and an environment default, so `--non-interactive` never asks.
 * Re-running it is idempotent.
 */
import { createInterface } from 'node:readline/promises';
import { existsSync, readFileSync } from 'node:fs';
import { isAbsolute, join, resolve } from 'node:path';
import type { Command } from 'commander';
import { packageInfo } from '../../shared/package.js';
import { inspectSandbox, startDaemon } from '../../control/daemon.js';
import {
  agentRuntimeLayout,
  detectEnvironment,
  execaRunner,
  planAgentInstall,
  profileOptions,
  runAgentInstall,
  storeCredential,
  systemDetectors,
  loadBlueprintSpec,
  resolveBlueprintDir,
  prepareBlueprintLaunch,
  agentStateFile,
  runtimeSpecOf,
  prepareBlueprintForUp,
  keptPresetFiles,
  writeOnboardingRecord,
} from '../../agent/index.js';
import { checkPresetNames, isPresetPath, loadPresetFile, type PresetFile } from '../../policy/index.js';
import { NemoclawError } from '../../shared/errors.js';
import { writeFileAtomicSync } from '../../shared/fs.js';
import { EXIT, action, ensureHome, formatPolicyWarnings, nameFlag, type CliContext } from '../util.js';
import type { CommandModule } from './index.js';

interface OnboardOptions {
  blueprint?: string;
  profile?: string;
  preset?: string[];
  apiKeyEnv?: string;
  nonInteractive?: boolean;
  start?: boolean;
}

function envList(v: string | undefined): string[] | undefined {
  if (v === undefined) return undefined;
  return v.split(',').map((s) => s.trim()).filter((s) => s.length > 0);
}

async function ask(ctx: CliContext, question: string, fallback: string): Promise<string> {
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = (await rl.question(`${question} [${fallback}] `)).trim();
    return answer.length > 0 ? answer : fallback;
  } finally {
    rl.close();
  }
}

function gib(bytes: number): string {
  return `${(bytes / 2 ** 30).toFixed(1)} GiB`;
}

/** Presets as chosen: packaged names, and files given by path (read and validated). */
export interface ChosenPresets {
  names: string[];
  files: PresetFile[];
}

/**
 * Resolve `--preset` arguments: a path (contains `/` or ends in .yaml) is read and validated now
 * (its content is what applies, stored with the sandbox); a name must be a packaged preset. Throws
 * (exit 2) before anything is written.
 */
export async function resolvePresetArgs(args: readonly string[], presetsDir: string, cwd: string = process.cwd(), home: string | undefined = process.env.HOME): Promise<ChosenPresets> {
  const names: string[] = [];
  const files: PresetFile[] = [];
  for (const arg of args) {
    if (!isPresetPath(arg)) {
      if (!names.includes(arg)) names.push(arg);
      continue;
    }
    const expanded = (arg === '~' || arg.startsWith('~/')) && home ? join(home, arg.slice(1)) : arg;
    files.push(await loadPresetFile(isAbsolute(expanded) ? expanded : resolve(cwd, expanded)));
  }
  checkPresetNames(names, presetsDir);
  return { names, files };
}

function describePresets(p: { presets: string[]; presetFiles: PresetFile[] }): string {
  const all = [...p.presets, ...p.presetFiles.map((f) => `${f.name} (file ${f.source})`)];
  return all.length > 0 ? all.join(', ') : 'none';
}

/** What onboarding prepared: the base policy to start the supervisor with, and what was chosen. */
export interface OnboardPrepared {
  blueprintName: string;
  policyFile: string;
  isOpenClaw: boolean;
}

/**
 * Onboarding up to (not including) starting the supervisor: detect, choose, store the key, write
 * the policy and agent state, install the runtime. `say` prints each progress line.
 */
export async function prepareOnboarding(ctx: CliContext, opts: OnboardOptions, say: (line: string) => void = (l) => ctx.out(l)): Promise<OnboardPrepared> {
  const env = ctx.io.env;
  const interactive = !(opts.nonInteractive || env.NEMOCLAW_NON_INTERACTIVE === '1') && process.stdin.isTTY === true;
  const packageRoot = packageInfo().root;
  const presetsDir = join(packageRoot, 'policies', 'presets');
  // Presets first: an unknown name or a bad preset file is refused (exit 2) before anything is written.
  const presetArgs = opts.preset ?? envList(env.NEMOCLAW_PRESETS);
  let chosenPresets = presetArgs !== undefined ? await resolvePresetArgs(presetArgs, presetsDir, process.cwd(), env.HOME) : undefined;
  ensureHome(ctx);
  const blueprintArg = opts.blueprint ?? env.NEMOCLAW_BLUEPRINT ?? 'openclaw';
  const credentialsFile = `${ctx.home}/credentials.json`;
  const detectors = systemDetectors(credentialsFile, env);

  // 1. What this machine offers.
  const bp = loadBlueprintSpec(resolveBlueprintDir(blueprintArg, packageRoot));
  say(`onboarding sandbox "${ctx.name}" with blueprint ${bp.spec.name} ${bp.spec.version}`);
  const detected = await detectEnvironment(bp, detectors);
  say(`  memory     ${gib(detected.memoryBytes)}`);
  say(`  GPUs       ${detected.gpus.length === 0 ? 'none found (nvidia-smi)' : detected.gpus.map((g) => `${g.name} (${g.memoryMiB} MiB)`).join(', ')}`);
  const options = profileOptions(bp, detected);
  for (const o of options) say(`  profile    ${o.available ? '✓' : '·'} ${o.name.padEnd(14)} ${o.reason}`);

  // 2. Choices: flag > environment > prompt > detection.
  let profile = opts.profile ?? env.NEMOCLAW_PROFILE;
  // Nothing given: the packaged presets of the sandbox's base policy (its `presets:`, read by
  // planOnboarding) and the preset files the last onboarding applied (from their stored copies),
  // as long as the base policy still has their policies.
  let keptFiles: PresetFile[] | undefined;
  if (chosenPresets === undefined) {
    const kept = keptPresetFiles(ctx.paths.dir, ctx.paths.policyFile);
    for (const f of kept.dropped) ctx.err(`note: the base policy no longer has the policies of preset file ${f.source}; not applied again (pass --preset ${f.source} to apply it)`);
    if (kept.files.length > 0 || kept.dropped.length > 0) keptFiles = kept.files;
  }
  if (interactive) {
    const suggested = profile ?? options.find((o) => o.available)?.name ?? bp.spec.inference.default_profile;
    profile = await ask(ctx, `inference profile (${options.map((o) => o.name).join(', ')})?`, suggested);
    const current = chosenPresets ? [...chosenPresets.names, ...chosenPresets.files.map((f) => f.source)] : [...bp.spec.policy.presets, ...(keptFiles ?? []).map((f) => f.source)];
    const answer = await ask(ctx, 'presets to allow (comma-separated: npm, pypi, github, huggingface, … or a preset file path; "-" for none)?', current.join(',') || '-');
    chosenPresets = await resolvePresetArgs(answer === '-' ? [] : (envList(answer) ?? []), presetsDir, process.cwd(), env.HOME);
  }

  // 3. Keys (from an environment variable, never from argv), 0600.
  const prepared = await prepareBlueprintLaunch({
    home: ctx.home,
    paths: ctx.paths,
    blueprint: blueprintArg,
    packageRoot,
    detectors,
    force: true,
    // Onboarding is the operator choosing this blueprint again: accept a newer packaged version.
    upgrade: true,
    ...(profile !== undefined ? { profile } : {}),
    ...(chosenPresets !== undefined ? { presets: chosenPresets.names, presetFiles: chosenPresets.files } : {}),
    ...(chosenPresets === undefined && keptFiles !== undefined ? { presetFiles: keptFiles } : {}),
  });
  const plan = prepared.plan!;
  for (const w of plan.warnings) ctx.err(`warning: ${w}`);
  writeOnboardingRecord(ctx.paths.dir, bp.spec.name, plan);
  // The key of the chosen profile (for hybrid: of its cloud part).
  const keyVar = opts.apiKeyEnv ?? plan.keyEnv;
  if (plan.credential && keyVar) {
    const key = env[keyVar];
    if (key && key.length > 0) {
      const r = storeCredential(credentialsFile, plan.credential, key);
      say(`  key        ${r.changed ? 'stored' : 'already stored'} as "${plan.credential}" in ${credentialsFile} (0600), from $${keyVar}`);
    } else if (interactive && !detected.storedCredentials.includes(plan.credential)) {
      ctx.err(`no key for profile ${plan.profile}: export ${keyVar}=… and run \`nemoclaw-tui onboard\` again`);
    }
  }
  say(`  blueprint  verified ${prepared.blueprint.spec.name} ${prepared.blueprint.spec.version}, digest ${prepared.digest}, ${prepared.signer ? `signed by ${prepared.signer}` : 'unsigned'}; runs from ${prepared.blueprint.dir}`);
  say(`  chose      profile ${plan.profile} (${plan.profileReason}); presets: ${describePresets(plan)}`);
  say(`  policy     ${prepared.policyFile} (your always-allow rules in ${ctx.paths.overlayFile} are kept)`);
  for (const f of plan.presetFiles) {
    say(`  preset     ${f.name} from ${f.source} (${f.sha256.slice(0, 19)}…): network_policies ${f.policyKeys.join(', ')} written into the policy (a policy of the same key is replaced, as NemoClaw applies presets); copy kept in ${join(ctx.paths.dir, 'presets', `${f.name}.yaml`)}`);
    if (f.warnings.length > 0) ctx.err(formatPolicyWarnings(f.warnings, `preset ${f.name}`));
  }

  // 4. The agent's runtime, with progress.
  const runtime = runtimeSpecOf(bp);
  if (runtime) {
    const layout = agentRuntimeLayout(`${ctx.home}/agents`, runtime);
    const steps = planAgentInstall(layout, runtime, { projectRoot: packageRoot });
    if (steps.length === 0) say(`  runtime    ${runtime.agentPackage}@${runtime.agentVersion} and Node ${runtime.nodeVersion} already installed`);
    let lastPct = -5;
    await runAgentInstall(steps, layout, {
      spec: runtime,
      runner: execaRunner,
      env,
      onProgress: (p) => {
        if (p.phase === 'progress' && (p.percent ?? 0) < lastPct + 5) return;
        if (p.phase === 'progress') lastPct = p.percent ?? lastPct;
        if (p.phase === 'start') lastPct = -5;
        say(`  install    ${p.message}${p.phase === 'progress' && p.percent !== undefined ? ` (${p.percent}%)` : ''}`);
      },
    });
  }

  return { blueprintName: bp.spec.name, policyFile: prepared.policyFile, isOpenClaw: runtime?.agentPackage === 'openclaw' };
}

export async function onboard(ctx: CliContext, opts: OnboardOptions): Promise<number> {
  const { blueprintName, policyFile, isOpenClaw } = await prepareOnboarding(ctx, opts);
  if (opts.start === false) {
    // The onboarded policy becomes the sandbox's base: a plain `up` (or the TUI) starts with it.
    const running = (await inspectSandbox(ctx.paths)).state === 'running';
    if (resolve(policyFile) !== resolve(ctx.paths.policyFile)) writeFileAtomicSync(ctx.paths.policyFile, readFileSync(policyFile, 'utf8'), 0o600);
    if (running) {
      ctx.err(`note: sandbox "${ctx.name}" is running with its current policy; the onboarded one applies when it next starts (nemoclaw-tui down${nameFlag(ctx.name)} && nemoclaw-tui up${nameFlag(ctx.name)}), or now: nemoclaw-tui policy set ${policyFile}${nameFlag(ctx.name)}`);
      return EXIT.ok;
    }
    ctx.out(`ready; start it with: nemoclaw-tui up${nameFlag(ctx.name)}   (it starts with ${ctx.paths.policyFile})`);
    return EXIT.ok;
  }

  // 5. Start the supervisor (it starts the agent), or update the running one.
  const res = await startDaemon({ name: ctx.name, home: ctx.home, policyFile, env: ctx.io.env });
  if (res.started) {
    ctx.out(`started the supervisor of sandbox "${ctx.name}" (pid ${res.pid}); the agent starts inside it`);
  } else {
    try {
      await ctx.client().setPolicy(readFileSync(policyFile, 'utf8'), { author: 'onboard', source: policyFile });
      ctx.out(`sandbox "${ctx.name}" was running (pid ${res.pid}); applied the new policy to it`);
    } catch (err) {
      if (err instanceof NemoclawError && err.code === 'policy_static_change') {
        ctx.err(`note: the new policy changes static sections; restart to apply: nemoclaw-tui down${nameFlag(ctx.name)} && nemoclaw-tui up${nameFlag(ctx.name)}`);
      } else throw err;
    }
  }
  ctx.out('');
  for (const line of attachHints(ctx, blueprintName, isOpenClaw)) ctx.out(line);
  return EXIT.ok;
}

/** The closing summary: what runs and how to attach, follow, approve, talk to it and keep it. */
export function attachHints(ctx: CliContext, blueprintName: string, isOpenClaw: boolean): string[] {
  const n = nameFlag(ctx.name);
  return [
    `${blueprintName} runs supervised in sandbox "${ctx.name}".`,
    `  attach (TUI):         nemoclaw-tui${n}`,
    `  follow the log:       nemoclaw-tui logs -f${n}`,
    `  approve hosts:        nemoclaw-tui logs -f --approver${n}   (or the TUI's a / d / A keys; \`nemoclaw-tui pending\` / \`approve ID\`)`,
    ...(isOpenClaw ? [`  talk to the agent:    nemoclaw-tui exec${n} -- openclaw agent --agent main --message "hello"`] : []),
    `  a shell beside it:    nemoclaw-tui connect${n}`,
    `  survive reboots:      nemoclaw-tui service install${n}`,
    `  stop it:              nemoclaw-tui down${n}`,
  ];
}

/** Would onboarding find an inference provider for OpenClaw (key in the environment or stored, Ollama, vLLM)? */
async function openClawProviderFound(ctx: CliContext): Promise<boolean> {
  const bp = loadBlueprintSpec(resolveBlueprintDir('openclaw', packageInfo().root));
  const detected = await detectEnvironment(bp, systemDetectors(`${ctx.home}/credentials.json`, ctx.io.env));
  return profileOptions(bp, detected).some((o) => o.available);
}

/**
 * What `nemoclaw-tui` (the TUI or its headless follow) must prepare before it starts the
 * supervisor, when none runs: with `--blueprint X`, that blueprint (verified, pinned, its policy);
 * on the very first start of a sandbox (never onboarded, never started), onboarding with its
 * non-interactive defaults: OpenClaw when an inference provider is found, otherwise the drill (no
 * key, no model). Returns the base policy file to start with, or undefined to start as before.
 * Progress goes to stderr, so a headless follow's stdout stays the event stream.
 */
export async function prepareAgentForAttach(ctx: CliContext, opts: { blueprint?: string | undefined; profile?: string | undefined }): Promise<string | undefined> {
  ensureHome(ctx);
  const running = await inspectSandbox(ctx.paths);
  if (running.state === 'running') {
    if (opts.blueprint) {
      ctx.err(`note: sandbox "${ctx.name}" is already running; --blueprint ${opts.blueprint} is not applied (restart with it: nemoclaw-tui down${nameFlag(ctx.name)} && nemoclaw-tui up --blueprint ${opts.blueprint}${nameFlag(ctx.name)})`);
    }
    return undefined;
  }
  if (opts.blueprint) return prepareBlueprintForUp(ctx, opts.blueprint, opts.profile, false);
  const neverStarted = !existsSync(agentStateFile({ paths: ctx.paths })) && !existsSync(ctx.paths.policyFile) && !existsSync(ctx.paths.auditDir);
  if (!neverStarted) return undefined;
  const blueprint = ctx.io.env.NEMOCLAW_BLUEPRINT ?? ((await openClawProviderFound(ctx)) ? 'openclaw' : 'drill');
  const say = (line: string): void => ctx.err(line);
  // What the sandbox lacks on this machine, with the command that fixes each (the agent cannot start without them).
  const { runDoctor } = await import('../../sandbox/index.js');
  const blocking = (await runDoctor()).checks.filter((c) => !c.ok && c.severity === 'error');
  if (blocking.length > 0) {
    say('the sandbox cannot start on this machine yet:');
    for (const c of blocking) say(`  missing: ${c.title}${c.fix ? `\n    fix: ${c.fix}` : ''}`);
    say('  (or run `nemoclaw-tui doctor --fix`); the supervisor starts anyway and shows why the agent does not run');
  }
  if (blueprint === 'drill' && ctx.io.env.NEMOCLAW_BLUEPRINT === undefined) {
    say('first start: no inference provider found (no NVIDIA_API_KEY, nothing on 127.0.0.1:11434 or :8000), so this runs the drill:');
    say('  a scripted agent that exercises every guard (network approvals, file violations, PII, secrets, budget), with hybrid routing over two stub models on loopback: a local one and one standing in for a cloud provider.');
    say(`  for OpenClaw: export NVIDIA_API_KEY=… (or start Ollama / vLLM), then: nemoclaw-tui down${nameFlag(ctx.name)} && nemoclaw-tui onboard${nameFlag(ctx.name)}`);
  }
  const prepared = await prepareOnboarding(ctx, { blueprint, nonInteractive: true, ...(opts.profile ? { profile: opts.profile } : {}) }, say);
  for (const line of attachHints(ctx, prepared.blueprintName, prepared.isOpenClaw)) say(line);
  return prepared.policyFile;
}

export const onboardCommands: CommandModule = {
  register(program: Command): void {
    program
      .command('onboard')
      .description('set up a sandboxed agent: detect providers, choose a profile and presets, install, start')
      .option('--blueprint <name>', 'blueprint to run: openclaw (default, env NEMOCLAW_BLUEPRINT) or drill, or a directory')
      .option('--profile <name>', 'inference profile of the blueprint (env NEMOCLAW_PROFILE; default: detected)')
      .option(
        '--preset <name|file...>',
        'network presets to allow: a packaged name (npm, pypi, github, …) or a preset file path, e.g. one of NemoClaw\'s (env NEMOCLAW_PRESETS=a,b; default: the blueprint\'s, or last time\'s)',
      )
      .option('--api-key-env <VAR>', 'environment variable holding the provider key to store (default: the profile\'s, e.g. NVIDIA_API_KEY)')
      .option('--non-interactive', 'never prompt (env NEMOCLAW_NON_INTERACTIVE=1); use flags, environment and detection')
      .option('--no-start', 'prepare only; do not start the supervisor')
      .action(action(onboard));
  },
};
