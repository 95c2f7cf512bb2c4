/** The policy part: parse/validate policy files, presets, the compiled network matcher, the revisioned store. */
export {
  DEFAULT_POLICY_PATH,
  DEFAULT_PRESETS_DIR,
  MAX_POLICY_BYTES,
  applyNemoclawPreset,
  checkPolicySize,
  checkPresetNames,
  isPresetPath,
  loadNamedPreset,
  loadPresetFile,
  parsePresetFile,
  formatPolicyIssues,
  listPresets,
  loadPolicyFile,
  mergeNetworkPolicies,
  parsePolicy,
  readPolicyFile,
} from './parse.js';
export type { ParsedPolicy, ParseOptions, PolicyIssue, PresetFile } from './parse.js';
export { canonicalPolicyYaml, policyDigest } from './canonical.js';
export { compileNetworkMatcher, pathGlobToRegex } from './matcher.js';
export type { NetworkMatcher } from './matcher.js';
export { createPolicyStore, STATIC_SECTIONS } from './store.js';
export type { PolicyStoreOptions } from './store.js';
export { unifiedDiff } from './diff.js';
export { normalizeHost, parseCidr } from './net.js';
export type * from './types.js';
export * from './simulate.js';
