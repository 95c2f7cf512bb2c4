/**
 * Presets as NemoClaw users expect them.
 *
 * - NemoClaw's own preset files (test/fixtures/nemoclaw-presets, copied from NVIDIA/NemoClaw
 *   04012f7b) load through `--preset FILE`'s code path (parsePresetFile + planOnboarding) and the
 *   merged policy equals what NemoClaw's merge gives. The expected side is an independent port of
 *   upstream's code: `extractPresetEntries` and the text splice of `applyPreset` (NVIDIA/NemoClaw
 *   bin/lib/policies.js), then a read in which a key seen twice keeps its later value, as OpenShell's
 *   serde_yml into `BTreeMap<String, NetworkPolicyRuleDef>` does (NVIDIA/OpenShell
 *   crates/openshell-policy/src/lib.rs `parse_sandbox_policy`).
 * - The preset file format: NemoClaw's `preset:` header is accepted, nothing is widened.
 * - Unknown packaged names are refused up front; our shipped presets are never broader than
 *   NemoClaw's presets of the same name except where noted, and keep `binaries: [{ path: "/**" }]`.
 */
import { mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse as parseYaml, parseDocument, stringify } from 'yaml';
import type { LoadedBlueprint } from '../../src/agent/blueprint-spec.js';
import { loadBlueprintSpec } from '../../src/agent/blueprint-spec.js';
import { planOnboarding, type DetectedEnvironment } from '../../src/agent/onboard.js';
import {
  DEFAULT_PRESETS_DIR,
  applyNemoclawPreset,
  checkPresetNames,
  listPresets,
  loadNamedPreset,
  parsePolicy,
  parsePresetFile,
  type PresetFile,
} from '../../src/policy/index.js';
import type { NetworkPolicy } from '../../src/policy/types.js';
import { REPO_ROOT } from '../helpers/supervisor.js';

const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'nemoclaw-presets');
const NEMOCLAW_PRESETS = readdirSync(FIXTURES).filter((f) => f.endsWith('.yaml')).sort();
const NEMOCLAW_BASELINE = join(FIXTURES, 'baseline', 'openclaw-sandbox.yaml');

// ── NemoClaw's merge, ported line by line from NVIDIA/NemoClaw bin/lib/policies.js @ 04012f7b ──

/** `extractPresetEntries(presetContent)`. */
function nemoclawExtractPresetEntries(presetContent: string): string | null {
  const npMatch = presetContent.match(/^network_policies:\n([\s\S]*)$/m);
  if (!npMatch) return null;
  return npMatch[1]!.trimEnd();
}

/** The merge step of `applyPreset(sandboxName, presetName)`, on the current policy's text. */
function nemoclawMergeText(currentPolicyIn: string, presetEntries: string): string {
  let currentPolicy = currentPolicyIn;
  let merged: string;
  if (currentPolicy && currentPolicy.includes('network_policies:')) {
    const lines = currentPolicy.split('\n');
    const result: string[] = [];
    let inNetworkPolicies = false;
    let inserted = false;
    for (const line of lines) {
      const isTopLevel = /^\S.*:/.test(line);
      if (line.trim() === 'network_policies:' || line.trim().startsWith('network_policies:')) {
        inNetworkPolicies = true;
        result.push(line);
        continue;
      }
      if (inNetworkPolicies && isTopLevel && !inserted) {
        result.push(presetEntries);
        inserted = true;
        inNetworkPolicies = false;
      }
      result.push(line);
    }
    if (inNetworkPolicies && !inserted) result.push(presetEntries);
    merged = result.join('\n');
  } else if (currentPolicy) {
    if (!currentPolicy.includes('version:')) currentPolicy = `version: 1\n${currentPolicy}`;
    merged = `${currentPolicy}\n\nnetwork_policies:\n${presetEntries}`;
  } else {
    merged = `version: 1\n\nnetwork_policies:\n${presetEntries}`;
  }
  return merged;
}

/** OpenShell's read of the merged text: serde's BTreeMap keeps the later of two equal keys. */
function openshellNetworkPolicies(text: string): Record<string, unknown> {
  const doc = parseDocument(text, { uniqueKeys: false });
  expect(doc.errors).toEqual([]);
  return ((doc.toJS() as { network_policies?: Record<string, unknown> }).network_policies ?? {});
}

/** What NemoClaw's `nemoclaw <sandbox> policy-add` of each preset in turn leaves, normalized by our parser. */
function expectedAfterNemoclaw(baselineText: string, presetTexts: string[]): Record<string, NetworkPolicy> {
  let text = baselineText;
  for (const preset of presetTexts) {
    const entries = nemoclawExtractPresetEntries(preset);
    expect(entries).not.toBeNull();
    text = nemoclawMergeText(text, entries!);
  }
  const merged = openshellNetworkPolicies(text);
  return parsePolicy(stringify({ version: 1, network_policies: merged }), 'nemoclaw-merged.yaml').doc.network_policies;
}

// ── our side: the code path of `onboard --preset FILE` ──

const drill = loadBlueprintSpec(join(REPO_ROOT, 'blueprints', 'drill'));
const ENV: DetectedEnvironment = { keysInEnv: [], storedCredentials: [], services: {}, gpus: [], memoryBytes: 8 * 2 ** 30 };

/** The drill blueprint with another base policy file (its stub profile needs no key). */
function blueprintWithPolicy(dir: string, file: string): LoadedBlueprint {
  return { dir, spec: { ...drill.spec, policy: { ...drill.spec.policy, file, presets: [] } } } as LoadedBlueprint;
}

function presetFile(name: string): PresetFile {
  const path = join(FIXTURES, name);
  return parsePresetFile(readFileSync(path, 'utf8'), path);
}

function onboardedPolicies(bp: LoadedBlueprint, files: PresetFile[], presets: string[] = []): Record<string, NetworkPolicy> {
  const plan = planOnboarding(bp, ENV, { presets, presetFiles: files }, REPO_ROOT);
  return parsePolicy(plan.policyText, 'onboarded.yaml').doc.network_policies;
}

/** A baseline whose policies collide with NemoClaw's presets and differ from them (so replace ≠ merge). */
const COLLIDING_BASELINE = `version: 1
filesystem_policy:
  include_workdir: true
  read_write: [/sandbox, /tmp]
network_policies:
  npm_yarn:
    name: npm_yarn
    binaries: [{ path: /usr/bin/npm }]
    endpoints:
      - { host: registry.npmjs.org, port: 443, access: full }
      - { host: npm.example.com, port: 443 }
  discord:
    name: discord
    binaries: [{ path: "/**" }]
    endpoints:
      - { host: discord.com, port: 443, protocol: rest, rules: [{ allow: { method: DELETE, path: "/**" } }] }
      - { host: media.discordapp.net, port: 443 }
  keep_me:
    binaries: [{ path: "/**" }]
    endpoints:
      - { host: example.org, port: 443 }
approvals:
  mode: ask
`;

describe('NemoClaw preset files through --preset FILE', () => {
  it('has every upstream preset as a fixture', () => {
    expect(NEMOCLAW_PRESETS).toEqual(['discord.yaml', 'docker.yaml', 'huggingface.yaml', 'jira.yaml', 'npm.yaml', 'outlook.yaml', 'pypi.yaml', 'slack.yaml', 'telegram.yaml']);
  });

  it.each(NEMOCLAW_PRESETS)('%s: the `preset:` header is accepted; name, description and policies are read as written', (file) => {
    const text = readFileSync(join(FIXTURES, file), 'utf8');
    const p = presetFile(file);
    const header = (parseYaml(text) as { preset: { name: string; description: string } }).preset;
    expect(p.name).toBe(header.name);
    expect(p.description).toBe(header.description);
    expect(p.policyKeys).toEqual(Object.keys((parseYaml(text) as { network_policies: object }).network_policies));
    expect(p.sha256).toMatch(/^sha256:[0-9a-f]{64}$/);
    // The header is part of the format now: it is not reported as an unknown field.
    expect(p.warnings.filter((w) => w.path === 'preset' || w.path.startsWith('preset.'))).toEqual([]);
  });

  it.each(NEMOCLAW_PRESETS)('%s onto NemoClaw\'s baseline: the merged policy equals NemoClaw\'s applyPreset result', (file) => {
    const bp = blueprintWithPolicy(join(FIXTURES, 'baseline'), 'openclaw-sandbox.yaml');
    const ours = onboardedPolicies(bp, [presetFile(file)]);
    const expected = expectedAfterNemoclaw(readFileSync(NEMOCLAW_BASELINE, 'utf8'), [readFileSync(join(FIXTURES, file), 'utf8')]);
    expect(ours).toEqual(expected);
  });

  it('all nine in a row onto NemoClaw\'s baseline (its discord collides): a later policy of a key replaces the earlier one', () => {
    const bp = blueprintWithPolicy(join(FIXTURES, 'baseline'), 'openclaw-sandbox.yaml');
    const ours = onboardedPolicies(bp, NEMOCLAW_PRESETS.map(presetFile));
    const expected = expectedAfterNemoclaw(readFileSync(NEMOCLAW_BASELINE, 'utf8'), NEMOCLAW_PRESETS.map((f) => readFileSync(join(FIXTURES, f), 'utf8')));
    expect(ours).toEqual(expected);
    expect(Object.keys(ours).sort()).toEqual(
      ['atlassian', 'claude_code', 'clawhub', 'discord', 'docker_registries', 'github', 'huggingface', 'npm_registry', 'npm_yarn', 'nvidia', 'openclaw_api', 'openclaw_docs', 'outlook_graph', 'pypi', 'slack', 'telegram', 'telegram_bot'].sort(),
    );
  });

  it('on a key collision the preset\'s policy replaces the baseline\'s whole: endpoints, rules and binaries are not merged', () => {
    const files = [presetFile('npm.yaml'), presetFile('discord.yaml')];
    const ours = oursOnText(COLLIDING_BASELINE, files);
    const expected = expectedAfterNemoclaw(COLLIDING_BASELINE, files.map((f) => f.text));
    expect(ours).toEqual(expected);
    // Replaced, as upstream: the baseline's extra host, its `access: full` and its binary are gone;
    // NemoClaw's file names no binaries, and it keeps none (no program may use it, as in OpenShell).
    expect(ours.npm_yarn!.endpoints.map((e) => e.host)).toEqual(['registry.npmjs.org', 'registry.yarnpkg.com']);
    expect(ours.npm_yarn!.endpoints[0]!.access).toBeUndefined();
    expect(ours.npm_yarn!.endpoints[0]!.rules).toEqual([{ method: 'GET', path: '/**' }]);
    expect(ours.npm_yarn!.binaries).toEqual([]);
    expect(ours.discord!.endpoints.map((e) => e.host)).toEqual(['discord.com', 'gateway.discord.gg', 'cdn.discordapp.com']);
    expect(ours.discord!.endpoints[0]!.rules.map((r) => r.method)).toEqual(['GET', 'POST']);
    expect(ours.discord!.binaries).toEqual([]);
    // A key no preset names stays as it was.
    expect(ours.keep_me!.endpoints.map((e) => e.host)).toEqual(['example.org']);
  });

  it('applyNemoclawPreset is the fold upstream does: replace or add by key, nothing merged', () => {
    const a = { endpoints: [{ host: 'a.example', port: 443 }] };
    const b = { endpoints: [{ host: 'b.example', port: 443 }] };
    expect(applyNemoclawPreset({ x: a, y: a }, { x: b, z: b })).toEqual({ x: b, y: a, z: b });
  });

  it('refuses a preset file whose policy key is also a packaged preset\'s it is listed with (merge vs replace), naming both', () => {
    const bp = blueprintWithPolicy(join(FIXTURES, 'baseline'), 'openclaw-sandbox.yaml');
    const file = parsePresetFile('preset: { name: my-npm }\nnetwork_policies:\n  npm:\n    binaries: [{ path: "/**" }]\n    endpoints: [{ host: registry.npmjs.org, port: 443 }]\n', '/x/my-npm.yaml');
    try {
      planOnboarding(bp, ENV, { presets: ['npm'], presetFiles: [file] }, REPO_ROOT);
      expect.unreachable();
    } catch (err) {
      expect(err).toMatchObject({ code: 'invalid_input', exitCode: 2 });
      expect((err as Error).message).toMatch(/\/x\/my-npm\.yaml and the packaged preset npm both define network_policies\.npm/);
    }
  });
});

/** planOnboarding onto a baseline given as text (a blueprint dir of its own holding it). */
function oursOnText(baselineText: string, files: PresetFile[]): Record<string, NetworkPolicy> {
  const dir = mkdtempSync(join(tmpdir(), 'nct-presets-'));
  try {
    writeFileSync(join(dir, 'policy.yaml'), baselineText);
    return onboardedPolicies(blueprintWithPolicy(dir, 'policy.yaml'), files);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

describe('preset file format', () => {
  it('refuses an unknown key inside the `preset:` header (never skipped)', () => {
    expect(() => parsePresetFile('preset: { name: x, owner: me }\nnetwork_policies:\n  x:\n    binaries: [{ path: "/**" }]\n    endpoints: [{ host: x.example, port: 443 }]\n', 'x.yaml')).toThrow(
      /preset/,
    );
    try {
      parsePresetFile('preset: { name: x, owner: me }\nnetwork_policies:\n  x:\n    binaries: [{ path: "/**" }]\n    endpoints: [{ host: x.example, port: 443 }]\n', 'x.yaml');
    } catch (err) {
      expect(err).toMatchObject({ code: 'policy_invalid', exitCode: 2 });
      expect(JSON.stringify((err as { details: unknown }).details)).toMatch(/owner/);
    }
  });

  it('refuses a header name that is not a preset name, and a preset with no network policies', () => {
    expect(() => parsePresetFile('preset: { name: "Bad Name" }\nnetwork_policies:\n  x:\n    binaries: [{ path: "/**" }]\n    endpoints: [{ host: x.example, port: 443 }]\n', 'x.yaml')).toThrow(
      /preset\.name/,
    );
    expect(() => parsePresetFile('preset: { name: empty }\n', 'empty.yaml')).toThrow(/no network_policies/);
  });

  it('reports (does not apply) any other top-level field', () => {
    const p = parsePresetFile('preset: { name: x }\nfilesystem_policy: { read_write: [/] }\nnetwork_policies:\n  x:\n    binaries: [{ path: "/**" }]\n    endpoints: [{ host: x.example, port: 443 }]\n', 'x.yaml');
    expect(p.warnings.map((w) => w.path)).toContain('filesystem_policy');
    expect(Object.keys(p.entries)).toEqual(['x']);
  });

  it('names without a header come from the file name', () => {
    const p = parsePresetFile('network_policies:\n  x:\n    binaries: [{ path: "/**" }]\n    endpoints: [{ host: x.example, port: 443 }]\n', '/some/dir/corp-proxy.yaml');
    expect(p.name).toBe('corp-proxy');
  });

  it('a presets directory of NemoClaw files works for `presets:` by name too', () => {
    const { doc, warnings } = parsePolicy('version: 1\npresets: [slack, jira]\n', 'p.yaml', { presetsDir: FIXTURES });
    expect(Object.keys(doc.network_policies).sort()).toEqual(['atlassian', 'slack']);
    expect(warnings.filter((w) => w.path === 'preset')).toEqual([]);
  });
});

describe('packaged preset names', () => {
  it('refuses an unknown name with the list of available ones (exit 2)', () => {
    try {
      checkPresetNames(['npm', 'jira']);
      expect.unreachable();
    } catch (err) {
      expect(err).toMatchObject({ code: 'invalid_input', exitCode: 2 });
      expect((err as Error).message).toBe(`unknown preset "jira"; the available presets are: ${listPresets().join(', ')}`);
      expect((err as { nextStep: string }).nextStep).toMatch(/--preset \.\/jira\.yaml/);
    }
    expect(() => checkPresetNames(['../presets/npm'])).toThrow(/unknown preset/);
    expect(() => checkPresetNames(listPresets())).not.toThrow();
  });

  it('planOnboarding refuses an unknown name before it returns a policy', () => {
    expect(() => planOnboarding(drill, ENV, { presets: ['jira'] }, REPO_ROOT)).toThrow(/unknown preset "jira"/);
  });
});

describe('shipped presets against NemoClaw\'s of the same name', () => {
  const SHIPPED = listPresets();

  it.each(SHIPPED)('%s: every policy lets any program (`binaries: [{ path: "/**" }]`)', (name) => {
    const p = loadNamedPreset(name);
    for (const key of p.policyKeys) {
      expect((p.entries[key] as { binaries?: unknown }).binaries, `${name}: ${key}`).toEqual([{ path: '/**' }]);
    }
  });

  /** Hosts ours has beyond NemoClaw's, each with the reason users need it. */
  const EXTRA_HOSTS: Record<string, string[]> = {
    huggingface: ['hf.co', '*.hf.co', 'cas-bridge.xethub.hf.co'], // downloads redirect there now (GET only)
    slack: ['files.slack.com', 'wss-primary.slack.com', 'wss-backup.slack.com'], // files; Socket Mode websockets
  };
  /** Methods ours allows beyond NemoClaw's on a shared host. */
  const EXTRA_METHODS: Record<string, string[]> = {
    'huggingface.co': ['HEAD'], // huggingface_hub's metadata request before a download
  };

  const rest = (p: NetworkPolicy | undefined) => p?.endpoints ?? [];
  const methodsOf = (e: NetworkPolicy['endpoints'][number]) => [...new Set(e.rules.map((r) => r.method))].sort();

  it.each(SHIPPED.filter((n) => NEMOCLAW_PRESETS.includes(`${n}.yaml`)))('%s: no host and no method beyond NemoClaw\'s, except the listed ones', (name) => {
    const ours = Object.values(parsePolicy(`version: 1\npresets: [${name}]\n`, 'ours.yaml').doc.network_policies).flatMap(rest);
    const theirs = Object.values(parsePolicy(`version: 1\npresets: [${name}]\n`, 'theirs.yaml', { presetsDir: FIXTURES }).doc.network_policies).flatMap(rest);
    for (const e of ours) {
      const same = theirs.find((t) => t.host === e.host);
      if (!same) {
        expect(EXTRA_HOSTS[name] ?? [], `${name}: ${e.host} is not in NemoClaw's ${name}`).toContain(e.host);
        continue;
      }
      expect(e.ports).toEqual(same.ports);
      const l4 = e.protocol === undefined && e.rules.length === 0 && e.access === undefined;
      if (l4) {
        // A tunnel: only for websockets, which per-request checks here would refuse.
        expect(e.host, `${name}: ${e.host} is a tunnel`).toMatch(/^(gateway\.discord\.gg|wss-(primary|backup)\.slack\.com)$/);
        continue;
      }
      const allowed = new Set([...methodsOf(same), ...(EXTRA_METHODS[e.host] ?? [])]);
      for (const m of methodsOf(e)) expect(allowed.has(m), `${name}: ${e.host} ${m}`).toBe(true);
    }
    // The hosts NemoClaw users rely on are all there (api.slack.com is documentation, not the Web API).
    for (const t of theirs) {
      if (name === 'slack' && t.host === 'api.slack.com') continue;
      if (name === 'huggingface' && t.host === 'api-inference.huggingface.co') continue; // inference goes through the router
      expect(ours.map((e) => e.host), `${name}: ${t.host}`).toContain(t.host);
    }
  });

  it('discord keeps the gateway websocket (gateway.discord.gg)', () => {
    const { doc } = parsePolicy('version: 1\npresets: [discord]\n', 'd.yaml');
    expect(doc.network_policies.discord!.endpoints.map((e) => e.host)).toContain('gateway.discord.gg');
  });

  it('the shipped presets directory is the default one', () => {
    expect(DEFAULT_PRESETS_DIR).toBe(join(REPO_ROOT, 'policies', 'presets'));
  });
});
