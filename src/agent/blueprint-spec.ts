/**
 * The parts of `blueprint.yaml` the agent runtime needs (what to install, what to bind, how to
 * start and health-check it, which inference profiles exist). The blueprint library
 * (src/blueprint/) owns digests, signatures and the content-addressed store; this file only reads
 * an already verified directory. Unknown fields are kept for the library.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { z } from 'zod';
import { NemoclawError } from '../shared/errors.js';

const durationMs = z.union([z.number().positive().transform((s) => s * 1000), z.string().regex(/^\d+(\.\d+)?(ms|s|m)$/)]).transform((v) => {
  if (typeof v === 'number') return v;
  const m = /^(\d+(?:\.\d+)?)(ms|s|m)$/.exec(v)!;
  const n = Number(m[1]);
  return m[2] === 'ms' ? n : m[2] === 's' ? n * 1000 : n * 60_000;
});

const profileSchema = z
  .object({
    description: z.string().default(''),
    requires: z.object({ env: z.string().optional(), probe: z.string().url().optional() }).strict().optional(),
    /** The supervisor starts the drill's stub model and points this provider at it. */
    stub: z.boolean().default(false),
    /** A provider entry for the router's `inference.providers` (name + its fields). */
    provider: z.object({ name: z.string().regex(/^[A-Za-z0-9_.-]+$/) }).catchall(z.unknown()),
    models: z.array(z.string().min(1)).min(1),
  })
  .strict();

const bindSchema = z
  .object({
    from: z.union([z.enum(['runtime.node', 'runtime.agent', 'blueprint']), z.string().regex(/^blueprint\/[^.][^/]*$/)]),
    to: z.string().regex(/^\/opt\/nemoclaw\/[a-z0-9._-]+$/, 'a path under /opt/nemoclaw/'),
  })
  .strict();

/**
 * The profile onboarding offers, and prefers, when a local and a cloud profile are both available
 * (unless the blueprint declares a profile of that name): personal data and proprietary code go to
 * the local provider, the rest to the cloud one, secrets nowhere.
 */
export const HYBRID_PROFILE = 'hybrid';

type ProfileEntry = [name: string, profile: z.output<typeof profileSchema>];

/** A profile's locality as the router reads it (`cloud` unless the provider says `local`). */
export function profileLocality(profile: z.output<typeof profileSchema>): 'local' | 'cloud' {
  return profile.provider.locality === 'local' ? 'local' : 'cloud';
}

function hybridCapable(profiles: Record<string, z.output<typeof profileSchema>>): boolean {
  if (HYBRID_PROFILE in profiles) return false;
  const all = Object.values(profiles);
  return all.some((p) => profileLocality(p) === 'local') && all.some((p) => profileLocality(p) === 'cloud');
}

/**
 * The declared profiles a profile name stands for: itself, or for the undeclared `hybrid` its local
 * and its cloud part: the first of each locality that `usable` accepts (declaration order). Undefined
 * when the name is no profile, or a part is missing.
 */
export function profileParts(
  spec: { inference: { profiles: Record<string, z.output<typeof profileSchema>> } },
  name: string,
  usable: (name: string, profile: z.output<typeof profileSchema>) => boolean = () => true,
): ProfileEntry[] | undefined {
  const profiles = spec.inference.profiles;
  const declared = profiles[name];
  if (declared) return [[name, declared]];
  if (name !== HYBRID_PROFILE || !hybridCapable(profiles)) return undefined;
  const entries = Object.entries(profiles).filter(([n, p]) => usable(n, p));
  const local = entries.find(([, p]) => profileLocality(p) === 'local');
  const cloud = entries.find(([, p]) => profileLocality(p) === 'cloud');
  return local && cloud ? [local, cloud] : undefined;
}

/** The profile names a blueprint accepts (`--profile`): its own, and `hybrid` when it has both localities. */
export function profileNames(spec: { inference: { profiles: Record<string, z.output<typeof profileSchema>> } }): string[] {
  const names = Object.keys(spec.inference.profiles);
  return hybridCapable(spec.inference.profiles) ? [HYBRID_PROFILE, ...names] : names;
}

export const blueprintSpecSchema = z
  .object({
    name: z.string().regex(/^[a-z0-9][a-z0-9_-]{0,39}$/),
    version: z.string().regex(/^\d+\.\d+\.\d+(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/, 'a semver version'),
    description: z.string().default(''),
    agent: z.union([
      z
        .object({
          package: z.string().min(1),
          version: z.string().min(1),
          packages_estimate: z.number().int().positive().optional(),
          /** Arguments for the pinned Node, run once from the package directory after installing. */
          post_install: z.array(z.string().min(1)).min(1).optional(),
        })
        .strict(),
      z.object({ script: z.string().regex(/^[A-Za-z0-9._-]+$/) }).strict(),
    ]),
    runtime: z.object({ node: z.string().regex(/^\d+\.\d+\.\d+$/) }).strict(),
    policy: z
      .object({
        baseline: z.string().regex(/^[a-z0-9-]+$/).optional(),
        file: z.string().regex(/^[A-Za-z0-9._-]+\.ya?ml$/).optional(),
        presets: z.array(z.string()).default([]),
      })
      .strict()
      .refine((p) => (p.baseline === undefined) !== (p.file === undefined), 'exactly one of `baseline` or `file`'),
    inference: z
      .object({
        agent_provider: z.string().regex(/^[a-z][a-z0-9_-]{0,63}$/),
        default_profile: z.string(),
        profiles: z.record(z.string(), profileSchema),
      })
      .strict()
      .refine(
        (i) => i.default_profile in i.profiles || (i.default_profile === HYBRID_PROFILE && hybridCapable(i.profiles)),
        `default_profile must name one of the profiles (or \`${HYBRID_PROFILE}\` when the blueprint has a local and a cloud profile)`,
      ),
    sandbox: z
      .object({
        binds: z.array(bindSchema).default([]),
        state_dir: z.string().optional(),
        allow_online: z.boolean().default(false),
        env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).default({}),
      })
      .strict(),
    start: z
      .object({
        command: z.array(z.string().min(1)).min(1),
        restart: z.enum(['always', 'on-failure', 'never']).default('always'),
      })
      .strict(),
    health: z.union([
      z
        .object({
          listen: z.number().int().min(1).max(65535),
          timeout: durationMs.default(15_000),
          // Past `timeout`, an agent still writing output (within `quiet`) waits on, up to `max_wait`.
          max_wait: durationMs.optional(),
          quiet: durationMs.optional(),
        })
        .strict(),
      z.object({ started: z.literal(true) }).strict(),
    ]),
  })
  .passthrough();

export type BlueprintSpec = z.output<typeof blueprintSpecSchema>;
export type InferenceProfile = BlueprintSpec['inference']['profiles'][string];

export interface LoadedBlueprint {
  dir: string;
  spec: BlueprintSpec;
}

/** Read and validate `<dir>/blueprint.yaml`. Errors name the file and the field. */
export function loadBlueprintSpec(dir: string): LoadedBlueprint {
  const file = join(dir, 'blueprint.yaml');
  if (!existsSync(file)) {
    throw new NemoclawError('not_found', `no blueprint.yaml in ${dir}`, {
      nextStep: 'pass a blueprint name shipped with nemoclaw-tui (openclaw, drill) or a directory holding a blueprint.yaml',
    });
  }
  let raw: unknown;
  try {
    raw = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new NemoclawError('invalid_input', `${file} is not valid YAML: ${(err as Error).message}`, {
      nextStep: `fix ${file} (or restore it from the package), then try again`,
    });
  }
  const parsed = blueprintSpecSchema.safeParse(raw);
  if (!parsed.success) {
    const problems = parsed.error.issues.map((i) => `${i.path.join('.') || '(top level)'}: ${i.message}`);
    throw new NemoclawError('invalid_input', `invalid blueprint ${file}: ${problems.join('; ')}`, {
      nextStep: `fix the named field in ${file}`,
      details: { problems },
    });
  }
  return { dir, spec: parsed.data };
}

/** The blueprints shipped in this package (`<package>/blueprints/<name>`). */
export function packagedBlueprintDir(name: string, packageRoot: string): string {
  if (!/^[a-z0-9][a-z0-9_-]{0,39}$/.test(name)) {
    throw new NemoclawError('invalid_input', `invalid blueprint name "${name}"`, { nextStep: 'use e.g. openclaw or drill' });
  }
  return join(packageRoot, 'blueprints', name);
}
