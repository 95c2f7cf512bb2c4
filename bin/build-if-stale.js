#!/usr/bin/env node
// `npm start` builds only when something the build reads changed since the last build: a full
// `tsc` costs 15-45 s on a small box, which made every re-attach slow. "Changed" is judged by
// modification time against a stamp written after a successful build (a checkout or an edit makes
// sources newer, so the safe direction is a rebuild); `--force` always builds. Plain JS for any
// Node >= 18, because `npm start` may run on an old system Node.
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const stamp = join(root, 'dist', '.build-stamp');
const inputs = ['src', 'components', 'tsconfig.json', 'package.json', 'package-lock.json'];

/** Newest mtime (ms) under a file or directory tree; 0 when it does not exist. */
function newest(path) {
  let st;
  try {
    st = statSync(path);
  } catch {
    return 0;
  }
  if (!st.isDirectory()) return st.mtimeMs;
  let max = st.mtimeMs; // a deleted or renamed file changes its directory
  for (const entry of readdirSync(path)) max = Math.max(max, newest(join(path, entry)));
  return max;
}

function stale() {
  if (process.argv.includes('--force') || !existsSync(stamp)) return true;
  const built = statSync(stamp).mtimeMs;
  return inputs.some((p) => newest(join(root, p)) > built);
}

// The sandbox's native helper (Landlock) first: it has its own staleness check (its source's mtime),
// and without a C compiler it says so and the build goes on.
const native = spawnSync(process.execPath, [join(root, 'bin', 'build-native.js')], { stdio: 'inherit' });
if (native.status !== 0) process.exit(native.status ?? 1);
if (!stale()) process.exit(0);
const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
process.stderr.write('nemoclaw-tui: sources changed since the last build; building (tsc)…\n');
const r = spawnSync(process.execPath, [tsc, '-p', join(root, 'tsconfig.json')], { stdio: 'inherit' });
if (r.status !== 0) {
  process.stderr.write(`nemoclaw-tui: the build failed (tsc exit ${r.status ?? r.signal}); fix the errors above, or run \`npm run build\`\n`);
  process.exit(r.status ?? 1);
}
writeFileSync(stamp, `${new Date().toISOString()}\n`);
