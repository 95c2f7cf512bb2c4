import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

let cached: { root: string; version: string } | undefined;

/** The package root and version, found by walking up from this file (works from src/ and dist/src/). */
export function packageInfo(): { root: string; version: string } {
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
