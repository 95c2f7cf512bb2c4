/**
 * `blueprint verify`: recompute every file's sha256 against MANIFEST, the digest, and the optional
 * signature. Refuses (NemoclawError, exit 1) naming the first mismatching file.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { NemoclawError } from '../shared/errors.js';
import { packageInfo } from '../shared/package.js';
import {
  computeManifest,
  describeMismatch,
  firstMismatch,
  manifestDigest,
  MANIFEST_FILE,
  parseManifest,
  readBlueprintHeader,
  type BlueprintHeader,
} from './manifest.js';
import { checkSignature, loadTrustedKeys, type SignatureCheck } from './signature.js';

export interface VerifiedBlueprint extends BlueprintHeader {
  dir: string;
  digest: string;
  files: number;
  signature: SignatureCheck;
}

/** The package's own trusted keys ship in blueprints/trusted-keys/ next to package.json. */
export function packageKeysDir(): string {
  return join(packageInfo().root, 'blueprints', 'trusted-keys');
}

export interface VerifyOptions {
  /** Directories of trusted public keys (default: $NEMOCLAW_HOME/trusted-keys + the package's keys). */
  trustedKeyDirs: string[];
}

export function verifyBlueprint(dirArg: string, opts: VerifyOptions): VerifiedBlueprint {
  const dir = resolve(dirArg);
  if (!existsSync(dir) || !statSync(dir).isDirectory()) {
    throw new NemoclawError('not_found', `blueprint ${dirArg}: no such directory`, { nextStep: 'pass the directory that holds blueprint.yaml and MANIFEST' });
  }
  const manifestPath = join(dir, MANIFEST_FILE);
  if (!existsSync(manifestPath)) {
    throw new NemoclawError('denied', `blueprint ${dirArg}: no MANIFEST`, { nextStep: 'create it with `nemoclaw-tui blueprint sign DIR` (signs too when given --key)' });
  }
  const recorded = parseManifest(readFileSync(manifestPath, 'utf8'), manifestPath);
  const actual = computeManifest(dir);
  const mismatch = firstMismatch(recorded, actual);
  if (mismatch) {
    throw new NemoclawError('denied', describeMismatch(dirArg, mismatch), {
      nextStep: 'do not use this blueprint: get an untouched copy (or, if you changed it on purpose, re-sign it)',
      details: mismatch,
    });
  }
  const digest = manifestDigest(recorded);
  const header = readBlueprintHeader(dir);
  const signature = checkSignature(dir, digest, loadTrustedKeys(opts.trustedKeyDirs));
  return { ...header, dir, digest, files: recorded.length, signature };
}
