/**
 * The blueprint a sandbox is pinned to (its lock file, written by `up --blueprint` / `onboard`),
 * as the supervisor sees it: checked against the content-addressed store at every start, passed to
 * the services as `options.blueprint` (the stored directory, the only place a blueprint runs from)
 * and shown by `status`.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { LOCK_FILE, packageKeysDir, storeDirName, verifyBlueprint, type BlueprintLock } from '../blueprint/index.js';
import { NemoclawError, describeError } from '../shared/errors.js';
import { nameFlag, type HomePaths, type SandboxPaths } from '../shared/home.js';

/** What `status` reports under `blueprint`. */
export interface LockedBlueprint {
  name: string;
  version: string;
  /** `sha256:<hex>` of the canonical manifest. */
  digest: string;
  /** The read-only stored copy the agent runs from. */
  dir: string;
  locked_at: string;
  /** Key id of a trusted signature, or `unsigned`. */
  signer: string;
}

export function readBlueprintLock(paths: SandboxPaths): BlueprintLock | undefined {
  const file = join(paths.dir, LOCK_FILE);
  if (!existsSync(file)) return undefined;
  let lock: Partial<BlueprintLock>;
  try {
    lock = JSON.parse(readFileSync(file, 'utf8')) as Partial<BlueprintLock>;
  } catch (err) {
    throw new NemoclawError('invalid_input', `${file} is not valid JSON (${describeError(err)})`, {
      nextStep: `remove it and start again with \`nemoclaw-tui up${nameFlag(paths.name)} --blueprint NAME\` to pin the sandbox anew`,
    });
  }
  if (typeof lock.name !== 'string' || typeof lock.version !== 'string' || typeof lock.digest !== 'string' || !/^sha256:[0-9a-f]{64}$/.test(lock.digest)) {
    throw new NemoclawError('invalid_input', `${file} does not hold {name, version, digest: "sha256:<hex>"}`, {
      nextStep: `remove it and start again with \`nemoclaw-tui up${nameFlag(paths.name)} --blueprint NAME\` to pin the sandbox anew`,
    });
  }
  return { name: lock.name, version: lock.version, digest: lock.digest, locked_at: typeof lock.locked_at === 'string' ? lock.locked_at : '' };
}

/**
 * The locked blueprint's stored copy, re-verified (every file against MANIFEST, and the digest
 * against the lock); undefined when the sandbox is not pinned to a blueprint.
 * Throws (the supervisor then refuses to start) when the stored copy is missing or was changed.
 */
export function verifiedLockedBlueprint(paths: SandboxPaths, home: HomePaths): LockedBlueprint | undefined {
  const lock = readBlueprintLock(paths);
  if (!lock) return undefined;
  const dir = join(home.blueprintStore, storeDirName(lock.digest));
  const again = `\`nemoclaw-tui up${nameFlag(paths.name)} --blueprint NAME|DIR\` from an untouched copy of ${lock.name} ${lock.version}`;
  if (!existsSync(dir)) {
    throw new NemoclawError('not_found', `sandbox "${paths.name}" is pinned to blueprint ${lock.name} ${lock.version} (${lock.digest}), but its stored copy ${dir} is missing`, {
      nextStep: `store it again with ${again} (its digest must match the lock)`,
    });
  }
  let verified;
  try {
    verified = verifyBlueprint(dir, { trustedKeyDirs: [home.trustedKeysDir, packageKeysDir()] });
  } catch (err) {
    throw new NemoclawError('denied', `the stored copy of blueprint ${lock.name} ${lock.version} no longer verifies: ${describeError(err).split('\n')[0]}`, {
      nextStep: `do not run it: remove ${dir} (chmod -R u+w first, it is read-only) and store it again with ${again}`,
      cause: err,
    });
  }
  if (verified.digest !== lock.digest) {
    throw new NemoclawError('denied', `the stored copy ${dir} has digest ${verified.digest}, not the locked ${lock.digest}`, {
      nextStep: `do not run it: remove ${dir} (chmod -R u+w first) and store it again with ${again}`,
    });
  }
  return {
    name: verified.name,
    version: verified.version,
    digest: verified.digest,
    dir,
    locked_at: lock.locked_at,
    signer: verified.signature.state === 'trusted' ? verified.signature.keyId : 'unsigned',
  };
}
