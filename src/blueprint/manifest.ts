/**
 * Blueprint manifests and digests. `MANIFEST` lists `sha256  path` for every file of the blueprint
 * (sorted by path, LF, like `sha256sum` output) except MANIFEST and SIGNATURE themselves; the
 * blueprint's digest is the sha256 of that canonical text.
 */
import { createHash } from 'node:crypto';
import { lstatSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { parse as parseYaml } from 'yaml';
import { NemoclawError } from '../shared/errors.js';

export const MANIFEST_FILE = 'MANIFEST';
export const SIGNATURE_FILE = 'SIGNATURE';
export const BLUEPRINT_FILE = 'blueprint.yaml';
const NOT_LISTED = new Set([MANIFEST_FILE, SIGNATURE_FILE]);

export interface ManifestEntry {
  path: string;
  sha256: string;
}

const sha256 = (data: string | Buffer): string => createHash('sha256').update(data).digest('hex');

const byPath = (a: ManifestEntry, b: ManifestEntry): number => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0);

/** Hash every regular file under `dir`. Symlinks and special files are refused: a blueprint is plain files. */
export function computeManifest(dir: string): ManifestEntry[] {
  const entries: ManifestEntry[] = [];
  const walk = (d: string): void => {
    for (const name of readdirSync(d)) {
      const full = join(d, name);
      const rel = relative(dir, full).split(sep).join('/');
      const st = lstatSync(full);
      if (st.isDirectory()) walk(full);
      else if (st.isFile()) {
        if (!NOT_LISTED.has(rel)) entries.push({ path: rel, sha256: sha256(readFileSync(full)) });
      } else {
        throw new NemoclawError('invalid_input', `blueprint ${dir}: "${rel}" is not a regular file (symlinks and devices are not allowed)`, {
          nextStep: 'replace it with a plain file copy',
        });
      }
    }
  };
  walk(dir);
  return entries.sort(byPath);
}

export function canonicalManifest(entries: ManifestEntry[]): string {
  return [...entries].sort(byPath).map((e) => `${e.sha256}  ${e.path}\n`).join('');
}

/** `sha256:<hex>` of the canonical manifest. */
export function manifestDigest(entries: ManifestEntry[]): string {
  return `sha256:${sha256(canonicalManifest(entries))}`;
}

/** Parse MANIFEST text; a malformed line is refused with its number. */
export function parseManifest(text: string, file = MANIFEST_FILE): ManifestEntry[] {
  const entries: ManifestEntry[] = [];
  const seen = new Set<string>();
  text.split('\n').forEach((line, i) => {
    if (line === '') return;
    const m = /^([0-9a-f]{64}) {2}(\S(?:.*\S)?)$/.exec(line);
    if (!m || m[2]!.startsWith('/') || m[2]!.split('/').includes('..')) {
      throw new NemoclawError('invalid_input', `${file}:${i + 1}: expected "<64 hex sha256>  <relative path>", got ${JSON.stringify(line.slice(0, 80))}`, {
        nextStep: 'regenerate it with `nemoclaw-tui blueprint sign DIR` (or `blueprint manifest DIR`)',
      });
    }
    if (seen.has(m[2]!)) throw new NemoclawError('invalid_input', `${file}:${i + 1}: "${m[2]}" is listed twice`);
    seen.add(m[2]!);
    entries.push({ sha256: m[1]!, path: m[2]! });
  });
  return entries.sort(byPath);
}

/** Write MANIFEST for the blueprint as it is now; returns its digest. */
export function writeManifest(dir: string): string {
  const entries = computeManifest(dir);
  writeFileSync(join(dir, MANIFEST_FILE), canonicalManifest(entries));
  return manifestDigest(entries);
}

export type ManifestMismatch =
  | { kind: 'changed'; path: string; expected: string; actual: string }
  | { kind: 'missing'; path: string }
  | { kind: 'extra'; path: string };

/** The first difference between the recorded and the actual files, in path order. */
export function firstMismatch(recorded: ManifestEntry[], actual: ManifestEntry[]): ManifestMismatch | undefined {
  const want = new Map(recorded.map((e) => [e.path, e.sha256]));
  const have = new Map(actual.map((e) => [e.path, e.sha256]));
  const paths = [...new Set([...want.keys(), ...have.keys()])].sort();
  for (const path of paths) {
    const w = want.get(path);
    const h = have.get(path);
    if (w === undefined) return { kind: 'extra', path };
    if (h === undefined) return { kind: 'missing', path };
    if (w !== h) return { kind: 'changed', path, expected: w, actual: h };
  }
  return undefined;
}

export function describeMismatch(dir: string, m: ManifestMismatch): string {
  switch (m.kind) {
    case 'changed':
      return `blueprint ${dir}: file "${m.path}" does not match its MANIFEST entry (sha256 ${m.actual.slice(0, 12)}…, expected ${m.expected.slice(0, 12)}…)`;
    case 'missing':
      return `blueprint ${dir}: file "${m.path}" is listed in MANIFEST but missing`;
    case 'extra':
      return `blueprint ${dir}: file "${m.path}" is not listed in MANIFEST`;
  }
}

export interface BlueprintHeader {
  name: string;
  version: string;
}

const SEMVER = /^(0|[1-9]\d*)\.(0|[1-9]\d*)\.(0|[1-9]\d*)(?:-[0-9A-Za-z.-]+)?(?:\+[0-9A-Za-z.-]+)?$/;

/** Name and semver version from blueprint.yaml (the agent runtime validates the rest). */
export function readBlueprintHeader(dir: string): BlueprintHeader {
  const file = join(dir, BLUEPRINT_FILE);
  let doc: unknown;
  try {
    doc = parseYaml(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new NemoclawError('invalid_input', `${file}: ${err instanceof Error ? err.message.split('\n')[0] : String(err)}`, {
      nextStep: 'every blueprint needs a valid blueprint.yaml with `name` and `version`',
      cause: err,
    });
  }
  const rec = (typeof doc === 'object' && doc !== null ? doc : {}) as Record<string, unknown>;
  if (typeof rec.name !== 'string' || !/^[a-z0-9][a-z0-9_-]{0,39}$/.test(rec.name)) {
    throw new NemoclawError('invalid_input', `${file}: "name" must be 1-40 lower-case letters, digits, "-" or "_"`);
  }
  if (typeof rec.version !== 'string' || !SEMVER.test(rec.version)) {
    throw new NemoclawError('invalid_input', `${file}: "version" must be a semantic version like 1.2.3 (got ${JSON.stringify(rec.version)})`);
  }
  return { name: rec.name, version: rec.version };
}
