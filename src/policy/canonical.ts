import { createHash } from 'node:crypto';
import { stringify } from 'yaml';
import type { PolicyDocument } from './types.js';

function sortDeep(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(sortDeep);
  if (value && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const key of Object.keys(value).sort()) {
      const v = (value as Record<string, unknown>)[key];
      if (v !== undefined) out[key] = sortDeep(v);
    }
    return out;
  }
  return value;
}

/**
 * Endpoints without their empty `rules` / `deny_rules` / `allowed_ips` lists: an explicit empty
 * list is refused on load (OpenShell refuses `rules: []`), so the canonical text must parse back.
 */
function withoutEmptyRuleLists(policies: PolicyDocument['network_policies']): unknown {
  const out: Record<string, unknown> = {};
  for (const [name, p] of Object.entries(policies)) {
    out[name] = {
      ...p,
      endpoints: p.endpoints.map((e) => {
        const copy: Record<string, unknown> = { ...e };
        for (const k of ['rules', 'deny_rules', 'allowed_ips'] as const) if (e[k].length === 0) delete copy[k];
        return copy;
      }),
    };
  }
  return out;
}

/**
 * The canonical YAML of a policy document: sections in a fixed order (version, presets,
 * filesystem_policy, landlock, process, network_policies, approvals, inference), every mapping
 * below them with sorted keys, lists in their order, no anchors, no line folding. Equal documents
 * give equal text, so its sha256 identifies a revision and its line diff shows what changed.
 */
export function canonicalPolicyYaml(doc: PolicyDocument): string {
  const ordered: Record<string, unknown> = {
    version: doc.version,
    presets: doc.presets,
    filesystem_policy: sortDeep(doc.filesystem_policy),
  };
  if (doc.landlock !== undefined) ordered.landlock = sortDeep(doc.landlock);
  ordered.process = sortDeep(doc.process);
  ordered.network_policies = sortDeep(withoutEmptyRuleLists(doc.network_policies));
  ordered.approvals = sortDeep(doc.approvals);
  ordered.inference = sortDeep(doc.inference);
  return stringify(ordered, { lineWidth: 0, minContentWidth: 0, aliasDuplicateObjects: false });
}

export function sha256Hex(text: string): string {
  return createHash('sha256').update(text).digest('hex');
}

export function policyDigest(doc: PolicyDocument): string {
  return sha256Hex(canonicalPolicyYaml(doc));
}

/** Stable JSON (sorted keys) for comparing sections. */
export function stableJson(value: unknown): string {
  return JSON.stringify(sortDeep(value) ?? null);
}
