/**
 * Onboarding logic, free of prompts and I/O that tests cannot control: detect what this machine
 * offers (an NVIDIA API key, Ollama on 127.0.0.1:11434, vLLM/NIM on 127.0.0.1:8000, GPUs, memory),
 * pick an inference profile of the blueprint, store keys 0600, and generate the sandbox's base
 * policy (blueprint policy + presets + the profile's inference section). The operator's overlay
 * (overlay.yaml) is never written here, so re-onboarding keeps "always allow" rules.
 */
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, statSync } from 'node:fs';
import { totalmem } from 'node:os';
import { join } from 'node:path';
import { isAlias, isMap, isScalar, parseDocument, visit, type Document, type Node, type Pair, type YAMLMap } from 'yaml';
import { checkPresetNames, loadNamedPreset, parsePolicy, parsePresetFile, type PresetFile } from '../policy/index.js';
import { NemoclawError } from '../shared/errors.js';
import { writeFileAtomicSync } from '../shared/fs.js';
import { ENTITY_KINDS } from '../inference/index.js';
import { HYBRID_PROFILE, profileLocality, type InferenceProfile, type LoadedBlueprint } from './blueprint-spec.js';

export interface GpuInfo {
  name: string;
  memoryMiB: number;
}

export interface Detectors {
  env: NodeJS.ProcessEnv;
  /** GET a loopback URL; true when it answered 2xx. Must not be called for other hosts. */
  probe(url: string): Promise<boolean>;
  /** GPUs from nvidia-smi; empty when there is none or no driver. */
  gpus(): Promise<GpuInfo[]>;
  memoryBytes(): number;
  /** Keys already in $NEMOCLAW_HOME/credentials.json (names only). */
  storedCredentials(): string[];
}

export interface DetectedEnvironment {
  /** Environment variables holding provider keys that are set (names only, never values). */
  keysInEnv: string[];
  storedCredentials: string[];
  /** Probe URL → answered. */
  services: Record<string, boolean>;
  gpus: GpuInfo[];
  memoryBytes: number;
}

const LOOPBACK_HOSTS = new Set(['127.0.0.1', 'localhost', '[::1]', '::1']);

export function isLoopbackUrl(url: string): boolean {
  try {
    const u = new URL(url);
    return (u.protocol === 'http:' || u.protocol === 'https:') && LOOPBACK_HOSTS.has(u.hostname);
  } catch {
    return false;
  }
}

/** Probe every `requires.probe` of the blueprint's profiles (loopback only) and read the rest. */
export async function detectEnvironment(bp: LoadedBlueprint, d: Detectors): Promise<DetectedEnvironment> {
  const profiles = Object.values(bp.spec.inference.profiles);
  const keyVars = [...new Set(profiles.map((p) => p.requires?.env).filter((v): v is string => !!v))];
  const urls = [...new Set(profiles.map((p) => p.requires?.probe).filter((v): v is string => !!v))];
  const services: Record<string, boolean> = {};
  await Promise.all(
    urls.map(async (url) => {
      // Onboarding never reaches beyond this machine.
      services[url] = isLoopbackUrl(url) ? await d.probe(url).catch(() => false) : false;
    }),
  );
  return {
    keysInEnv: keyVars.filter((v) => (d.env[v] ?? '').length > 0),
    storedCredentials: d.storedCredentials(),
    services,
    gpus: await d.gpus().catch(() => []),
    memoryBytes: d.memoryBytes(),
  };
}

export interface ProfileOption {
  name: string;
  /** For the hybrid option: its cloud part's profile (whose key onboarding stores). */
  profile: InferenceProfile;
  available: boolean;
  /** Why it is (not) available, for the prompt and the summary. */
  reason: string;
  /** The hybrid option: its local and its cloud part (available ones first). */
  parts?: [local: ProfileOption, cloud: ProfileOption];
}

/**
 * Every profile of the blueprint with whether this machine can use it; first, when the blueprint
 * has a local and a cloud profile (and declares no `hybrid` of its own), the hybrid option made of
 * the first available of each.
 */
export function profileOptions(bp: LoadedBlueprint, env: DetectedEnvironment): ProfileOption[] {
  const declared = declaredProfileOptions(bp, env);
  if (HYBRID_PROFILE in bp.spec.inference.profiles) return declared;
  const pick = (locality: 'local' | 'cloud'): ProfileOption | undefined => {
    const of = declared.filter((o) => profileLocality(o.profile) === locality);
    return of.find((o) => o.available) ?? of[0];
  };
  const local = pick('local');
  const cloud = pick('cloud');
  if (!local || !cloud) return declared;
  const available = local.available && cloud.available;
  const reason = available
    ? `${local.name} (${local.reason}) + ${cloud.name} (${cloud.reason}): personal data and proprietary code stay local, the rest goes to the cloud, secrets nowhere`
    : `needs a local and a cloud provider: ${[local, cloud].filter((o) => !o.available).map((o) => `${o.name} ${o.reason}`).join('; ')}`;
  return [{ name: HYBRID_PROFILE, profile: cloud.profile, available, reason, parts: [local, cloud] }, ...declared];
}

function declaredProfileOptions(bp: LoadedBlueprint, env: DetectedEnvironment): ProfileOption[] {
  return Object.entries(bp.spec.inference.profiles).map(([name, profile]) => {
    if (profile.stub) {
      const what = profileLocality(profile) === 'local' ? 'local stub model' : 'stub model standing in for a cloud provider (loopback)';
      return { name, profile, available: true, reason: `${what}, no key needed` };
    }
    const req = profile.requires;
    if (req?.env) {
      const cred = typeof profile.provider.credential === 'string' ? profile.provider.credential : undefined;
      if (env.keysInEnv.includes(req.env)) return { name, profile, available: true, reason: `${req.env} is set` };
      if (cred && env.storedCredentials.includes(cred)) return { name, profile, available: true, reason: `key "${cred}" is stored` };
      return { name, profile, available: false, reason: `needs ${req.env} (export it, or pass --api-key-env ${req.env})` };
    }
    if (req?.probe) {
      const up = env.services[req.probe] === true;
      return { name, profile, available: up, reason: up ? `${new URL(req.probe).host} answers` : `nothing answers on ${new URL(req.probe).host}` };
    }
    return { name, profile, available: true, reason: 'no requirement' };
  });
}

export interface OnboardingChoices {
  /** --profile; otherwise the first available profile (the blueprint's default first). */
  profile?: string;
  /** --preset NAME (repeatable): packaged presets; default: the blueprint's presets, or those chosen last time. */
  presets?: string[];
  /**
   * --preset FILE, read and validated (parsePresetFile): applied onto the blueprint's policy as
   * NemoClaw applies presets (applyPresetFiles), in order, after the packaged ones are listed.
   */
  presetFiles?: PresetFile[];
  /** The base policy the sandbox has now (re-onboarding): its presets are kept when none are given. */
  previousPolicyText?: string;
}

export interface OnboardingPlan {
  profile: string;
  profileReason: string;
  presets: string[];
  /** The preset files applied (their policies are written into policyText). */
  presetFiles: PresetFile[];
  /** The sandbox's base policy (YAML). */
  policyText: string;
  /** Name of the credential to store when a key is supplied (e.g. "nvidia"). */
  credential?: string;
  /** The environment variable that key is read from (the profile's `requires.env`). */
  keyEnv?: string;
  warnings: string[];
}

/** The blueprint's base policy text: its own file or the packaged baseline. */
export function blueprintPolicyText(bp: LoadedBlueprint, packageRoot: string): string {
  const p = bp.spec.policy;
  const file = p.file ? join(bp.dir, p.file) : join(packageRoot, 'policies', `${p.baseline}.yaml`);
  try {
    return readFileSync(file, 'utf8');
  } catch (err) {
    throw new NemoclawError('not_found', `the blueprint's policy ${file} cannot be read: ${(err as Error).message}`, {
      nextStep: 'reinstall nemoclaw-tui (the packaged policies are missing) or fix blueprint.yaml `policy`',
    });
  }
}

export function planOnboarding(bp: LoadedBlueprint, env: DetectedEnvironment, choices: OnboardingChoices, packageRoot: string): OnboardingPlan {
  const options = profileOptions(bp, env);
  const warnings: string[] = [];
  let chosen: ProfileOption | undefined;
  if (choices.profile) {
    chosen = options.find((o) => o.name === choices.profile);
    if (!chosen) {
      throw new NemoclawError('invalid_input', `blueprint ${bp.spec.name} has no inference profile "${choices.profile}"`, {
        nextStep: `choose one of: ${options.map((o) => o.name).join(', ')}`,
        exitCode: 2,
      });
    }
    if (!chosen.available) warnings.push(`profile ${chosen.name}: ${chosen.reason}; the agent's inference calls fail until that is fixed`);
  } else {
    const ordered = [...options].sort((a, b) => Number(b.name === bp.spec.inference.default_profile) - Number(a.name === bp.spec.inference.default_profile));
    // Both a local provider and a cloud key: hybrid routing, whatever the blueprint's default.
    chosen = options.find((o) => o.parts !== undefined && o.available) ?? ordered.find((o) => o.available);
    if (!chosen) {
      throw new NemoclawError('prerequisite_missing', `no inference provider found for blueprint ${bp.spec.name}: ${options.map((o) => `${o.name} (${o.reason})`).join('; ')}`, {
        nextStep: 'export NVIDIA_API_KEY=… (or start Ollama / vLLM on this machine) and run `nemoclaw-tui onboard` again, or try the drill with no key: `nemoclaw-tui --blueprint drill`',
      });
    }
  }

  const base = parseDocument(blueprintPolicyText(bp, packageRoot));
  let presets = choices.presets;
  if (!presets && choices.previousPolicyText) {
    const prev = parseDocument(choices.previousPolicyText).get('presets');
    const list = (prev as { toJSON?: () => unknown } | undefined)?.toJSON?.();
    if (Array.isArray(list) && list.every((x) => typeof x === 'string')) presets = list as string[];
  }
  presets = presets ?? bp.spec.policy.presets;
  const presetsDir = join(packageRoot, 'policies', 'presets');
  // An unknown name is refused here, before a policy `policy validate` would refuse is written.
  checkPresetNames(presets, presetsDir);
  base.set('presets', presets);
  const presetFiles = choices.presetFiles ?? [];
  applyPresetFiles(base, presetFiles, presets, presetsDir);

  const parts = chosen.parts ?? [chosen];
  const hybrid = chosen.parts !== undefined;
  const providers: Record<string, Record<string, unknown>> = {};
  for (const part of parts) {
    const { name, ...fields } = part.profile.provider;
    // Filled in with the stub model's real address when the agent starts.
    if (part.profile.stub && fields.base_url === undefined) fields.base_url = 'http://127.0.0.1:9/v1';
    // Hybrid: each provider answers with its own model, whichever model the agent asked for.
    if (hybrid && fields.model === undefined) fields.model = part.profile.models[0];
    providers[name] = { ...fields, models: part.profile.models };
  }
  // One provider, or the hybrid's local (first) and cloud (last) part.
  const providerName = parts[0]!.profile.provider.name;
  const cloudName = parts.at(-1)!.profile.provider.name;
  const previousInference = base.get('inference') as { toJSON?: () => unknown } | undefined;
  const prevJson = (previousInference?.toJSON?.() ?? {}) as Record<string, unknown>;
  // A blueprint with its own policy file that already routes to these providers (the drill) keeps its
  // inference section (routes, redaction, providers); only the chosen providers' entries are replaced.
  // Not when its routes name the provider of a profile that was not chosen (it would not be there).
  const ownProviders = typeof prevJson.providers === 'object' && prevJson.providers !== null ? (prevJson.providers as Record<string, unknown>) : undefined;
  const unchosen = new Set(Object.values(bp.spec.inference.profiles).map((p) => p.provider.name).filter((n) => !(n in providers)));
  const routesUnchosen = Array.isArray(prevJson.routes) && (prevJson.routes as Array<Record<string, unknown>>).some((r) => ['provider', 'redact_then', 'fallback'].some((k) => unchosen.has(r?.[k] as string)));
  const ownRoutes =
    bp.spec.policy.file !== undefined && Array.isArray(prevJson.routes) && ownProviders !== undefined && Object.keys(providers).every((n) => n in ownProviders) && !routesUnchosen
      ? (prevJson.routes as unknown[])
      : undefined;
  const secretsNeverLeave = { name: 'secrets-never-leave', when: { entities: ['secret'] }, block: true, message: 'blocked: the request contains a secret' };
  base.set('inference', {
    ...(ownRoutes ? prevJson : {}),
    providers: { ...(ownRoutes ? ownProviders : {}), ...providers },
    routes:
      ownRoutes ??
      (hybrid
        ? hybridRoutes(secretsNeverLeave, providerName, cloudName)
        : [
            secretsNeverLeave,
            ...(providers[providerName]!.locality === 'cloud'
              ? [{ name: 'pii-redacted', when: { entities: ['email', 'phone', 'credit_card', 'us_ssn', 'iban'] }, redact_then: providerName }]
              : []),
            { name: 'default', provider: providerName },
          ]),
    ...(hybrid && !ownRoutes ? { hybrid: { when_local_down: 'cloud_redacted' } } : {}),
    budgets: isRouterBudgets(prevJson.budgets) ? prevJson.budgets : { day: { tokens: 2_000_000 } },
  });
  const policyText = base.toString();
  // Never write a base policy the supervisor (or `policy validate`) would refuse.
  parsePolicy(policyText, 'the onboarded policy', { presetsDir });
  return {
    profile: chosen.name,
    profileReason: chosen.reason,
    presets,
    presetFiles,
    policyText,
    ...credentialOf(parts),
    warnings,
  };
}

/** The key onboarding stores for the chosen profile (its cloud part for hybrid). */
function credentialOf(parts: readonly ProfileOption[]): { credential?: string; keyEnv?: string } {
  for (const part of parts) {
    const credential = part.profile.provider.credential;
    if (typeof credential !== 'string') continue;
    return { credential, ...(part.profile.requires?.env ? { keyEnv: part.profile.requires.env } : {}) };
  }
  return {};
}

/** Every kind of personal data the classifier reports (all but secrets and proprietary markers). */
export const PERSONAL_DATA_KINDS = ENTITY_KINDS.filter((k) => k !== 'secret' && k !== 'proprietary');

/**
 * The routes of the hybrid profile: secrets blocked; proprietary code to the local provider only
 * (refused while it is down: redaction would leave the code); personal data to the local provider,
 * and while it is down or saturated to the cloud redacted (`hybrid.when_local_down: cloud_redacted`);
 * everything else to the cloud (to the local provider while the cloud is down).
 */
export function hybridRoutes(secrets: Record<string, unknown>, local: string, cloud: string): Array<Record<string, unknown>> {
  return [
    secrets,
    { name: 'proprietary-local', when: { entities: ['proprietary'] }, provider: local },
    { name: 'pii-local', when: { entities: [...PERSONAL_DATA_KINDS] }, provider: local, fallback: cloud },
    { name: 'default', provider: cloud, fallback: local },
  ];
}

function hasAlias(doc: Document): boolean {
  let found = false;
  visit(doc, {
    Alias() {
      found = true;
      return visit.BREAK;
    },
  });
  return found;
}

/**
 * Apply preset files onto a policy document as NemoClaw applies a preset (`applyNemoclawPreset`
 * in src/policy/parse.ts, after NVIDIA/NemoClaw bin/lib/policies.js `applyPreset`): each policy
 * of the preset's `network_policies` replaces the policy of the same key whole, or is added; files
 * apply in order (a later one replaces an earlier one's). The policies are written into the
 * document as they are in the file (their own `binaries`: none means no program may use them), each
 * under a comment naming the preset, its source and digest; nothing outside `network_policies` is
 * taken from a preset.
 *
 * A packaged preset listed in `presets:` merges structurally under the file's policies when the
 * policy is loaded, so a preset file whose policy key is also one of those packaged presets' would
 * not replace it but merge with it: that pairing is refused (exit 2) rather than widened.
 */
export function applyPresetFiles(doc: Document, files: readonly PresetFile[], namedPresets: readonly string[], presetsDir: string): void {
  if (files.length === 0) return;
  const namedKeys = new Map<string, string>();
  for (const name of namedPresets) for (const key of loadNamedPreset(name, presetsDir).policyKeys) namedKeys.set(key, name);
  const seen = new Map<string, PresetFile>();
  for (const file of files) {
    const earlier = seen.get(file.name);
    if (earlier && earlier.sha256 !== file.sha256) {
      throw new NemoclawError('invalid_input', `two preset files are both named "${file.name}": ${earlier.source} and ${file.source}`, {
        nextStep: 'pass one of them, or give one another `preset: { name: … }`; nothing was written',
        exitCode: 2,
      });
    }
    seen.set(file.name, file);
    for (const key of file.policyKeys) {
      const named = namedKeys.get(key);
      if (named === undefined) continue;
      throw new NemoclawError(
        'invalid_input',
        `preset file ${file.source} and the packaged preset ${named} both define network_policies.${key}: a preset file replaces that policy (as NemoClaw applies presets) while a packaged preset merges into it, so they cannot both apply`,
        { nextStep: `drop \`--preset ${named}\` or \`--preset ${file.source}\`; nothing was written`, exitCode: 2 },
      );
    }
  }
  let policies = doc.get('network_policies', true) as Node | undefined;
  if (!isMap(policies)) {
    policies = doc.createNode({}) as YAMLMap;
    doc.set('network_policies', policies);
  }
  const map = policies as YAMLMap;
  map.flow = false;
  for (const file of files) {
    if (seen.get(file.name) !== file) continue; // the same file twice: applied once
    const presetDoc = parseDocument(file.text, { uniqueKeys: false });
    const presetPolicies = presetDoc.get('network_policies', true);
    // Keep the file's own layout unless it uses anchors (an alias would point into the other file).
    const keepNodes = isMap(presetPolicies) && !hasAlias(presetDoc);
    for (const key of file.policyKeys) {
      const valueNode = keepNodes ? (presetPolicies as YAMLMap).get(key, true) : undefined;
      const pair = doc.createPair(key, valueNode !== undefined && valueNode !== null ? (valueNode as Node).clone() : file.entries[key]) as Pair<Node, unknown>;
      const index = map.items.findIndex((p) => (isScalar(p.key) ? p.key.value : p.key) === key);
      const what = index >= 0 ? 'replaces the policy of this key' : 'adds this policy';
      pair.key.commentBefore = ` preset ${file.name} from ${file.source} (${file.sha256.slice(0, 19)}…): ${what}, as NemoClaw applies presets`;
      if (index >= 0) map.items[index] = pair;
      else map.items.push(pair);
    }
  }
}

/** What onboarding chose, kept in the sandbox folder so a later `onboard` (and `status`) knows it. */
export interface OnboardingRecord {
  version: 1;
  blueprint: string;
  profile: string;
  /** Packaged presets (also the policy's `presets:`). */
  presets: string[];
  /** Preset files given by path: their content is stored in the sandbox folder and in the policy. */
  preset_files: Array<{ name: string; source: string; sha256: string; stored: string; policies: string[] }>;
  time: string;
}

export function onboardingRecordFile(sandboxDir: string): string {
  return join(sandboxDir, 'onboarding.json');
}

/**
 * Store what onboarding chose: `onboarding.json` and a copy of each preset file in
 * `<sandbox>/presets/<name>.yaml` (0600), so neither a later start nor re-onboarding depends on
 * the original file (the policy itself also holds the preset's policies).
 */
export function writeOnboardingRecord(sandboxDir: string, blueprint: string, plan: OnboardingPlan, now: Date = new Date()): OnboardingRecord {
  const presetFiles = plan.presetFiles.filter((f, i, all) => all.findIndex((g) => g.name === f.name) === i);
  if (presetFiles.length > 0) mkdirSync(join(sandboxDir, 'presets'), { recursive: true, mode: 0o700 });
  const record: OnboardingRecord = {
    version: 1,
    blueprint,
    profile: plan.profile,
    presets: plan.presets,
    preset_files: presetFiles.map((f) => {
      const stored = join('presets', `${f.name}.yaml`);
      writeFileAtomicSync(join(sandboxDir, stored), f.text, 0o600);
      return { name: f.name, source: f.source, sha256: f.sha256, stored, policies: f.policyKeys };
    }),
    time: now.toISOString(),
  };
  writeFileAtomicSync(onboardingRecordFile(sandboxDir), `${JSON.stringify(record, null, 2)}\n`, 0o600);
  // Copies of preset files no longer chosen go.
  const keep = new Set(record.preset_files.map((f) => `${f.name}.yaml`));
  try {
    for (const name of readdirSync(join(sandboxDir, 'presets'))) if (name.endsWith('.yaml') && !keep.has(name)) rmSync(join(sandboxDir, 'presets', name), { force: true });
  } catch {
    // no presets folder
  }
  return record;
}

/** The last onboarding's record, or undefined (none, or unreadable: then onboarding chooses afresh). */
export function readOnboardingRecord(sandboxDir: string): OnboardingRecord | undefined {
  try {
    const data = JSON.parse(readFileSync(onboardingRecordFile(sandboxDir), 'utf8')) as OnboardingRecord;
    if (data?.version !== 1 || !Array.isArray(data.presets) || !Array.isArray(data.preset_files)) return undefined;
    return data;
  } catch {
    return undefined;
  }
}

/** The preset files of a record, read back from their stored copies (validated again). */
export function storedPresetFiles(sandboxDir: string, record: OnboardingRecord): PresetFile[] {
  return record.preset_files.map((f) => {
    const file = join(sandboxDir, f.stored);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      throw new NemoclawError('not_found', `the stored copy of preset ${f.name} (${file}) cannot be read: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`, {
        nextStep: `pass the presets again: nemoclaw-tui onboard --preset ${f.source}`,
      });
    }
    return { ...parsePresetFile(text, file), source: f.source };
  });
}

/**
 * The preset files the last onboarding applied (from their stored copies) whose policies the
 * sandbox's base policy still has: what re-onboarding, or a new blueprint's policy, keeps when no
 * preset is given. `dropped`: those whose policies are gone (the policy was changed since).
 */
export function keptPresetFiles(sandboxDir: string, policyFile: string): { files: PresetFile[]; dropped: OnboardingRecord['preset_files'] } {
  const record = readOnboardingRecord(sandboxDir);
  if (!record || record.preset_files.length === 0) return { files: [], dropped: [] };
  let present = new Set<string>();
  try {
    const np = (parseDocument(readFileSync(policyFile, 'utf8')).toJS() as { network_policies?: unknown } | null)?.network_policies;
    if (typeof np === 'object' && np !== null) present = new Set(Object.keys(np));
  } catch {
    // no base policy (yet): nothing is kept
  }
  const kept = record.preset_files.filter((f) => f.policies.every((k) => present.has(k)));
  return { files: storedPresetFiles(sandboxDir, { ...record, preset_files: kept }), dropped: record.preset_files.filter((f) => !kept.includes(f)) };
}

function isRouterBudgets(v: unknown): v is Record<string, unknown> {
  if (typeof v !== 'object' || v === null) return false;
  const keys = Object.keys(v);
  return keys.length > 0 && keys.every((k) => k === 'hour' || k === 'day' || k === 'request');
}

/** Read credentials.json (names → keys); {} when absent. Refuses a file others can read. */
export function readCredentials(file: string): Record<string, unknown> {
  if (!existsSync(file)) return {};
  const st = statSync(file);
  if ((st.mode & 0o077) !== 0) {
    throw new NemoclawError('denied', `credentials file ${file} is readable by group or others (mode ${(st.mode & 0o777).toString(8)})`, {
      nextStep: `chmod 600 ${file}`,
    });
  }
  try {
    const data = JSON.parse(readFileSync(file, 'utf8')) as unknown;
    if (typeof data !== 'object' || data === null || Array.isArray(data)) throw new Error('not an object');
    return data as Record<string, unknown>;
  } catch (err) {
    throw new NemoclawError('invalid_input', `credentials file ${file} is not valid JSON (${(err as Error).name})`, {
      nextStep: `fix it as {"<name>": "<key>"} or remove it and run \`nemoclaw-tui onboard\` again`,
    });
  }
}

/** Store one key (0600, atomic); other keys stay. Never logs the value. */
export function storeCredential(file: string, name: string, key: string): { changed: boolean } {
  if (!/^[A-Za-z0-9_.-]{1,64}$/.test(name)) {
    throw new NemoclawError('invalid_input', `invalid credential name "${name}"`, { nextStep: 'use letters, digits, ".", "_" or "-"' });
  }
  if (key.length === 0 || /[\r\n]/.test(key)) {
    throw new NemoclawError('invalid_input', `the key for "${name}" is empty or spans lines`, { nextStep: 'pass the key exactly as the provider shows it' });
  }
  const data = readCredentials(file);
  if (data[name] === key) return { changed: false };
  data[name] = key;
  writeFileAtomicSync(file, `${JSON.stringify(data, null, 2)}\n`, 0o600);
  return { changed: true };
}

/** The real detectors: loopback HTTP probes, nvidia-smi, os.totalmem, credentials.json. */
export function systemDetectors(credentialsFile: string, env: NodeJS.ProcessEnv = process.env): Detectors {
  return {
    env,
    probe: async (url) => {
      if (!isLoopbackUrl(url)) return false;
      const { request, Agent } = await import('undici');
      // A direct dispatcher: the operator's HTTP(S)_PROXY must not see loopback probes.
      const dispatcher = new Agent({ connect: { timeout: 1500 } });
      try {
        const res = await request(url, { dispatcher, headersTimeout: 1500, bodyTimeout: 1500 });
        await res.body.dump();
        return res.statusCode >= 200 && res.statusCode < 300;
      } catch {
        return false;
      } finally {
        await dispatcher.close();
      }
    },
    gpus: async () => {
      const { execa } = await import('execa');
      const r = await execa('nvidia-smi', ['--query-gpu=name,memory.total', '--format=csv,noheader,nounits'], { reject: false, timeout: 5000 });
      if (r.exitCode !== 0) return [];
      return String(r.stdout)
        .split('\n')
        .map((l) => l.split(',').map((s) => s.trim()))
        .filter((c) => c.length >= 2 && c[0])
        .map((c) => ({ name: c[0]!, memoryMiB: Number(c[1]) || 0 }));
    },
    memoryBytes: () => totalmem(),
    storedCredentials: () => {
      try {
        return Object.keys(readCredentials(credentialsFile));
      } catch {
        return [];
      }
    },
  };
}
