/**
 * `onboard`: detect providers, GPUs and memory; choose an inference profile and presets; store
 * keys 0600; write the sandbox's base policy (the overlay stays); install the agent runtime with
 * progress; start (or update) the supervisor with the agent; print how to attach, follow and approve.
 * Every prompt has a flag and an environment default, so `--non-interactive` never asks.
 * Re-running it is idempotent.
 */
import { createInterface } from 'node:readline/promises';
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { packageInfo } from '../../control/index.js';
import { startDaemon } from '../../control/daemon.js';
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
} from '../../agent/index.js';
import { prepareBlueprintLaunch } from '../../agent/launch.js';
import { runtimeSpecOf } from '../../agent/service.js';
import { NemoclawError } from '../../shared/errors.js';
import { EXIT, action, ensureHome, nameFlag, type CliContext } from '../util.js';
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

export async function onboard(ctx: CliContext, opts: OnboardOptions): Promise<number> {
  ensureHome(ctx);
  const env = ctx.io.env;
  const interactive = !(opts.nonInteractive || env.NEMOCLAW_NON_INTERACTIVE === '1') && process.stdin.isTTY === true;
  const packageRoot = packageInfo().root;
  const blueprintArg = opts.blueprint ?? env.NEMOCLAW_BLUEPRINT ?? 'openclaw';
  const credentialsFile = `${ctx.home}/credentials.json`;
  const detectors = systemDetectors(credentialsFile, env);

  // 1. What this machine offers.
  const bp = loadBlueprintSpec(resolveBlueprintDir(blueprintArg, packageRoot));
  ctx.out(`onboarding sandbox "${ctx.name}" with blueprint ${bp.spec.name} ${bp.spec.version}`);
  const detected = await detectEnvironment(bp, detectors);
  ctx.out(`  memory     ${gib(detected.memoryBytes)}`);
  ctx.out(`  GPUs       ${detected.gpus.length === 0 ? 'none found (nvidia-smi)' : detected.gpus.map((g) => `${g.name} (${g.memoryMiB} MiB)`).join(', ')}`);
  const options = profileOptions(bp, detected);
  for (const o of options) ctx.out(`  profile    ${o.available ? '✓' : '·'} ${o.name.padEnd(14)} ${o.reason}`);

  // 2. Choices: flag > environment > prompt > detection.
  let profile = opts.profile ?? env.NEMOCLAW_PROFILE;
  let presets = opts.preset ?? envList(env.NEMOCLAW_PRESETS);
  if (interactive) {
    const suggested = profile ?? options.find((o) => o.available)?.name ?? bp.spec.inference.default_profile;
    profile = await ask(ctx, `inference profile (${options.map((o) => o.name).join(', ')})?`, suggested);
    const current = presets ?? bp.spec.policy.presets;
    const answer = await ask(ctx, 'presets to allow (comma-separated: npm, pypi, github, huggingface, …; "-" for none)?', current.join(',') || '-');
    presets = answer === '-' ? [] : (envList(answer) ?? []);
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
    ...(presets !== undefined ? { presets } : {}),
  });
  const plan = prepared.plan!;
  for (const w of plan.warnings) ctx.err(`warning: ${w}`);
  const chosen = bp.spec.inference.profiles[plan.profile]!;
  const keyVar = opts.apiKeyEnv ?? chosen.requires?.env;
  if (plan.credential && keyVar) {
    const key = env[keyVar];
    if (key && key.length > 0) {
      const r = storeCredential(credentialsFile, plan.credential, key);
      ctx.out(`  key        ${r.changed ? 'stored' : 'already stored'} as "${plan.credential}" in ${credentialsFile} (0600), from $${keyVar}`);
    } else if (interactive && !detected.storedCredentials.includes(plan.credential)) {
      ctx.err(`no key for profile ${plan.profile}: export ${keyVar}=… and run \`nemoclaw-tui onboard\` again`);
    }
  }
  ctx.out(`  blueprint  verified ${prepared.blueprint.spec.name} ${prepared.blueprint.spec.version}, digest ${prepared.digest}, ${prepared.signer ? `signed by ${prepared.signer}` : 'unsigned'}; runs from ${prepared.blueprint.dir}`);
  ctx.out(`  chose      profile ${plan.profile} (${plan.profileReason}); presets: ${plan.presets.length ? plan.presets.join(', ') : 'none'}`);
  ctx.out(`  policy     ${prepared.policyFile} (your always-allow rules in ${ctx.paths.overlayFile} are kept)`);

  // 4. The agent's runtime, with progress.
  const runtime = runtimeSpecOf(bp);
  if (runtime) {
    const layout = agentRuntimeLayout(`${ctx.home}/agents`, runtime);
    const steps = planAgentInstall(layout, runtime, { projectRoot: packageRoot });
    if (steps.length === 0) ctx.out(`  runtime    ${runtime.agentPackage}@${runtime.agentVersion} and Node ${runtime.nodeVersion} already installed`);
    let lastPct = -5;
    await runAgentInstall(steps, layout, {
      spec: runtime,
      runner: execaRunner,
      env,
      onProgress: (p) => {
        if (p.phase === 'progress' && (p.percent ?? 0) < lastPct + 5) return;
        if (p.phase === 'progress') lastPct = p.percent ?? lastPct;
        if (p.phase === 'start') lastPct = -5;
        ctx.out(`  install    ${p.message}${p.phase === 'progress' && p.percent !== undefined ? ` (${p.percent}%)` : ''}`);
      },
    });
  }

  if (opts.start === false) {
    ctx.out(`ready; start it with: nemoclaw-tui up${nameFlag(ctx.name)}`);
    return EXIT.ok;
  }

  // 5. Start the supervisor (it starts the agent), or update the running one.
  const res = await startDaemon({ name: ctx.name, home: ctx.home, policyFile: prepared.policyFile, env });
  if (res.started) {
    ctx.out(`started the supervisor of sandbox "${ctx.name}" (pid ${res.pid}); the agent starts inside it`);
  } else {
    try {
      await ctx.client().setPolicy(readFileSync(prepared.policyFile, 'utf8'), { author: 'onboard', source: prepared.policyFile });
      ctx.out(`sandbox "${ctx.name}" was running (pid ${res.pid}); applied the new policy to it`);
    } catch (err) {
      if (err instanceof NemoclawError && err.code === 'policy_static_change') {
        ctx.err(`note: the new policy changes static sections; restart to apply: nemoclaw-tui down${nameFlag(ctx.name)} && nemoclaw-tui up${nameFlag(ctx.name)}`);
      } else throw err;
    }
  }
  const n = nameFlag(ctx.name);
  ctx.out('');
  ctx.out(`${bp.spec.name} runs supervised in sandbox "${ctx.name}".`);
  ctx.out(`  attach (TUI):         nemoclaw-tui${n}`);
  ctx.out(`  follow the log:       nemoclaw-tui logs -f${n}`);
  ctx.out(`  approve hosts:        nemoclaw-tui logs -f --approver${n}   (or the TUI's a / d / A keys)`);
  if (runtime?.agentPackage === 'openclaw') ctx.out(`  talk to the agent:    nemoclaw-tui exec${n} -- openclaw agent --agent main --message "hello"`);
  ctx.out(`  survive reboots:      nemoclaw-tui service install${n}`);
  return EXIT.ok;
}

export const onboardCommands: CommandModule = {
  register(program: Command): void {
    program
      .command('onboard')
      .description('set up a sandboxed agent: detect providers, choose a profile and presets, install, start')
      .option('--blueprint <name>', 'blueprint to run: openclaw (default, env NEMOCLAW_BLUEPRINT) or drill, or a directory')
      .option('--profile <name>', 'inference profile of the blueprint (env NEMOCLAW_PROFILE; default: detected)')
      .option('--preset <name...>', 'network presets to allow (env NEMOCLAW_PRESETS=a,b; default: the blueprint\'s, or last time\'s)')
      .option('--api-key-env <VAR>', 'environment variable holding the provider key to store (default: the profile\'s, e.g. NVIDIA_API_KEY)')
      .option('--non-interactive', 'never prompt (env NEMOCLAW_NON_INTERACTIVE=1); use flags, environment and detection')
      .option('--no-start', 'prepare only; do not start the supervisor')
      .action(action(onboard));
  },
};
