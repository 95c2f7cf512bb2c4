import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface PackageInfo {
  /** The installed package's root (holds package.json, policies/, blueprints/, bin/). */
  root: string;
  version: string;
}

let cached: PackageInfo | undefined;

/**
 * The package root and version, found once by walking up from this file to the package.json named
 * `nemoclaw-tui` (works from src/ under vitest and from dist/src/ when built). Every part that needs
 * a file shipped in the package (baseline policy, presets, blueprints, trusted keys, bin/) starts here.
 */
export function packageInfo(): PackageInfo {
  if (cached) return cached;
  let dir = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 6; i++) {
    try {
      const pkg = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as { name?: string; version?: string };
      if (pkg.name === 'nemoclaw-tui') {
        cached = { root: dir, version: pkg.version ?? '0.0.0' };
        return cached;
      }
    } catch {
      // keep walking up
    }
    dir = dirname(dir);
  }
  cached = { root: process.cwd(), version: '0.0.0' };
  return cached;
}

/** Absolute path of the executable entry (bin/nemoclaw-tui.js). */
export function binPath(): string {
  return join(packageInfo().root, 'bin', 'nemoclaw-tui.js');
}
