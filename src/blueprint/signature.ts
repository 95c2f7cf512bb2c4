/**
 * Optional Ed25519 signature over a blueprint's digest, in `SIGNATURE` (JSON). Trusted public keys
 * (PEM, `*.pub`) live in $NEMOCLAW_HOME/trusted-keys/ and in the package's own key directory.
 */
import { createHash, createPrivateKey, createPublicKey, sign, verify, type KeyObject } from 'node:crypto';
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { NemoclawError } from '../shared/errors.js';
import { SIGNATURE_FILE } from './manifest.js';

export interface SignatureFile {
  algorithm: 'ed25519';
  key_id: string;
  /** The digest that was signed (`sha256:<hex>`). */
  digest: string;
  /** base64 Ed25519 signature over the UTF-8 bytes of `digest`. */
  signature: string;
}

export interface TrustedKey {
  id: string;
  key: KeyObject;
  source: string;
}

/** Short id of a public key: first 16 hex of the sha256 of its SPKI DER. */
export function keyId(key: KeyObject): string {
  return createHash('sha256').update(key.export({ type: 'spki', format: 'der' })).digest('hex').slice(0, 16);
}

/** Every `*.pub` (PEM Ed25519 public key) in these directories; unreadable keys are skipped. */
export function loadTrustedKeys(dirs: string[]): TrustedKey[] {
  const keys: TrustedKey[] = [];
  for (const dir of dirs) {
    if (!existsSync(dir)) continue;
    for (const name of readdirSync(dir).sort()) {
      if (!name.endsWith('.pub')) continue;
      const source = join(dir, name);
      try {
        const key = createPublicKey(readFileSync(source));
        if (key.asymmetricKeyType !== 'ed25519') continue;
        keys.push({ id: keyId(key), key, source });
      } catch {
        // Not a key we can use; verification reports "no trusted key" if it mattered.
      }
    }
  }
  return keys;
}

export function signDigest(dir: string, digest: string, privateKeyPem: string | Buffer): SignatureFile {
  let key: KeyObject;
  try {
    key = createPrivateKey(privateKeyPem);
  } catch (err) {
    throw new NemoclawError('invalid_input', 'the signing key is not a PEM private key', { nextStep: 'pass an Ed25519 private key in PEM (PKCS#8)', cause: err });
  }
  if (key.asymmetricKeyType !== 'ed25519') {
    throw new NemoclawError('invalid_input', `the signing key is ${key.asymmetricKeyType ?? 'unknown'}, not Ed25519`, {
      nextStep: 'create one with `openssl genpkey -algorithm ed25519 -out key.pem`',
    });
  }
  const sig: SignatureFile = {
    algorithm: 'ed25519',
    key_id: keyId(createPublicKey(key)),
    digest,
    signature: sign(null, Buffer.from(digest, 'utf8'), key).toString('base64'),
  };
  writeFileSync(join(dir, SIGNATURE_FILE), `${JSON.stringify(sig, null, 2)}\n`);
  return sig;
}

export type SignatureCheck =
  | { state: 'unsigned' }
  | { state: 'trusted'; keyId: string; keySource: string };

/** Check SIGNATURE (if any) against the digest and the trusted keys; a bad or untrusted signature throws. */
export function checkSignature(dir: string, digest: string, trusted: TrustedKey[]): SignatureCheck {
  const file = join(dir, SIGNATURE_FILE);
  if (!existsSync(file)) return { state: 'unsigned' };
  let sig: Partial<SignatureFile>;
  try {
    sig = JSON.parse(readFileSync(file, 'utf8')) as Partial<SignatureFile>;
  } catch (err) {
    throw new NemoclawError('denied', `blueprint ${dir}: SIGNATURE is not valid JSON`, { nextStep: 're-sign it with `nemoclaw-tui blueprint sign`', cause: err });
  }
  if (sig.algorithm !== 'ed25519' || typeof sig.signature !== 'string' || typeof sig.key_id !== 'string') {
    throw new NemoclawError('denied', `blueprint ${dir}: SIGNATURE must name algorithm "ed25519", key_id and signature`);
  }
  if (sig.digest !== digest) {
    throw new NemoclawError('denied', `blueprint ${dir}: SIGNATURE was made for ${String(sig.digest)}, but the blueprint's digest is ${digest}`, {
      nextStep: 'the files changed after signing; get the signed version again or re-sign it',
    });
  }
  const key = trusted.find((k) => k.id === sig.key_id);
  if (!key) {
    throw new NemoclawError('denied', `blueprint ${dir}: signed by key ${sig.key_id}, which is not trusted`, {
      nextStep: 'put the signer\'s public key (PEM, *.pub) in $NEMOCLAW_HOME/trusted-keys/ if you trust it',
    });
  }
  if (!verify(null, Buffer.from(digest, 'utf8'), key.key, Buffer.from(sig.signature, 'base64'))) {
    throw new NemoclawError('denied', `blueprint ${dir}: the signature does not verify with key ${key.id} (${key.source})`);
  }
  return { state: 'trusted', keyId: key.id, keySource: key.source };
}
