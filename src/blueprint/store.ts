/**
 * Content-addressed, read-only blueprint store ($NEMOCLAW_HOME/blueprints/sha256-<hex>/) and the
 * per-sandbox lock file pinning the digest a sandbox was created with.
 */
import { chmodSync, cpSync, existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ensurePrivateDir } from '../shared/home.js';
import { NemoclawError } from '../shared/errors.js';
import { verifyBlueprint, type VerifiedBlueprint, type VerifyOptions } from './verify.js';

export function storeDirName(digest: string): string {
  return digest.replace(':', '-');
}

function makeReadOnly(path: string): void {
  const st = statSync(path);
  if (st.isDirectory()) {
    for (const name of readdirSync(path)) makeReadOnly(join(path, name));
    chmodSync(path, 0o555);
  } else {
    chmodSync(path, 0o444);
  }
}

function makeWritable(path: string): void {
  const st = statSync(path);
  if (st.isDirectory()) {
    chmodSync(path, 0o755);
    for (const name of readdirSync(path)) makeWritable(join(path, name));
  }
}

/** Verify `dir` and copy it into the store (once per digest); returns the stored, verified copy. */
export function importBlueprint(dir: string, storeRoot: string, opts: VerifyOptions): VerifiedBlueprint {
  const source = verifyBlueprint(dir, opts);
  ensurePrivateDir(storeRoot);
  const target = join(storeRoot, storeDirName(source.digest));
  if (!existsSync(target)) {
    // Copy to a temp dir first and rename, so a crash never leaves a half-copied blueprint under its digest.
    const tmp = mkdtempSync(join(storeRoot, '.import-'));
    try {
      cpSync(source.dir, tmp, { recursive: true });
      const copied = verifyBlueprint(tmp, opts);
      if (copied.digest !== source.digest) throw new NemoclawError('io', `blueprint ${dir} changed while it was being copied`, { nextStep: 'try again' });
      makeReadOnly(tmp);
      renameSync(tmp, target);
    } catch (err) {
      if (existsSync(tmp)) {
        makeWritable(tmp);
        rmSync(tmp, { recursive: true, force: true });
      }
      throw err;
    }
  }
  // Run only from the store, and only from a copy that still verifies.
  return verifyBlueprint(target, opts);
}

export interface StoredBlueprint {
  name: string;
  version: string;
  digest: string;
  signer: string;
  dir: string;
  ok: boolean;
  problem?: string;
}

export function listStore(storeRoot: string, opts: VerifyOptions): StoredBlueprint[] {
  if (!existsSync(storeRoot)) return [];
  const out: StoredBlueprint[] = [];
  for (const name of readdirSync(storeRoot).sort()) {
    if (!/^sha256-[0-9a-f]{64}$/.test(name)) continue;
    const dir = join(storeRoot, name);
    const digest = name.replace('-', ':');
    try {
      const v = verifyBlueprint(dir, opts);
      const ok = v.digest === digest;
      const entry: StoredBlueprint = {
        name: v.name,
        version: v.version,
        digest: v.digest,
        signer: v.signature.state === 'trusted' ? v.signature.keyId : 'unsigned',
        dir,
        ok,
      };
      if (!ok) entry.problem = `stored under ${digest} but its digest is ${v.digest}`;
      out.push(entry);
    } catch (err) {
      out.push({ name: '?', version: '?', digest, signer: '?', dir, ok: false, problem: err instanceof Error ? err.message : String(err) });
    }
  }
  return out;
}

export interface BlueprintLock {
  name: string;
  version: string;
  digest: string;
  locked_at: string;
}

export const LOCK_FILE = 'blueprint.lock.json';

/**
 * Pin a sandbox to a blueprint digest. First use writes the lock; a different digest later is
 * refused unless `upgrade` is set (then the lock moves to the new digest).
 */
export function checkLock(sandboxDir: string, blueprint: { name: string; version: string; digest: string }, opts: { upgrade?: boolean; now?: number } = {}): BlueprintLock {
  const file = join(sandboxDir, LOCK_FILE);
  let existing: BlueprintLock | undefined;
  if (existsSync(file)) {
    try {
      existing = JSON.parse(readFileSync(file, 'utf8')) as BlueprintLock;
    } catch (err) {
      throw new NemoclawError('invalid_input', `${file} is not valid JSON`, { nextStep: 'remove it to pin the sandbox to the blueprint it starts with next', cause: err });
    }
  }
  if (existing && existing.digest === blueprint.digest) return existing;
  if (existing && !opts.upgrade) {
    throw new NemoclawError('conflict', `blueprint "${blueprint.name}" changed: the sandbox was created with ${existing.name} ${existing.version} (${existing.digest}), this is ${blueprint.version} (${blueprint.digest})`, {
      nextStep: 'run `nemoclaw-tui up --upgrade` to switch the sandbox to the new blueprint',
    });
  }
  const lock: BlueprintLock = { name: blueprint.name, version: blueprint.version, digest: blueprint.digest, locked_at: new Date(opts.now ?? Date.now()).toISOString() };
  ensurePrivateDir(sandboxDir);
  writeFileSync(file, `${JSON.stringify(lock, null, 2)}\n`, { mode: 0o600 });
  return lock;
}
