/** Small helpers the CLI's `up` uses to start a sandbox with a blueprint. */
import { packageInfo } from '../shared/package.js';
import type { CliContext } from '../cli/util.js';
import { prepareBlueprintLaunch } from './launch.js';

/** Verify + store + lock the blueprint, write its policy and agent state; returns the policy file for `up`. */
export async function prepareBlueprintForUp(ctx: CliContext, blueprint: string, profile: string | undefined, upgrade: boolean): Promise<string> {
  const prepared = await prepareBlueprintLaunch({
    home: ctx.home,
    paths: ctx.paths,
    blueprint,
    packageRoot: packageInfo().root,
    upgrade,
    ...(profile !== undefined ? { profile } : {}),
  });
  for (const w of prepared.plan?.warnings ?? []) ctx.err(`warning: ${w}`);
  ctx.err(
    `blueprint ${prepared.blueprint.spec.name} ${prepared.blueprint.spec.version} (${prepared.digest.slice(0, 19)}…), profile ${prepared.state.profile}`,
  );
  return prepared.policyFile;
}
