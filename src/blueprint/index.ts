/** The blueprint part: manifests, digests, Ed25519 signatures, the content-addressed store and lock files. */
export {
  BLUEPRINT_FILE,
  MANIFEST_FILE,
  SIGNATURE_FILE,
  canonicalManifest,
  computeManifest,
  firstMismatch,
  manifestDigest,
  parseManifest,
  readBlueprintHeader,
  writeManifest,
} from './manifest.js';
export type { BlueprintHeader, ManifestEntry, ManifestMismatch } from './manifest.js';
export { checkSignature, keyId, loadTrustedKeys, signDigest } from './signature.js';
export type { SignatureCheck, SignatureFile, TrustedKey } from './signature.js';
export { packageKeysDir, verifyBlueprint } from './verify.js';
export type { VerifiedBlueprint, VerifyOptions } from './verify.js';
export { LOCK_FILE, checkLock, importBlueprint, listStore, storeDirName } from './store.js';
export type { BlueprintLock, StoredBlueprint } from './store.js';
