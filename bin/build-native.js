#!/usr/bin/env node
// Builds the sandbox's native helper (src/sandbox/landlock/nemoclaw-landlock.c → dist/native/) with
// the system C compiler. Landlock's syscalls must run in the process that becomes the agent, so the
// helper is a tiny C program rather than an FFI library: nothing is downloaded, and `.ci/run`
// installs gcc from Debian. Without a compiler the build says so and succeeds: the sandbox then runs
// without the Landlock layer, which `status`, `doctor` and the lifecycle event report (and which a
// policy with `landlock.compatibility: hard_requirement` refuses). Plain JS, like build-if-stale.js.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, renameSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const source = join(root, 'src', 'sandbox', 'landlock', 'nemoclaw-landlock.c');
const out = join(root, 'dist', 'native', 'nemoclaw-landlock');

function findCompiler() {
  for (const name of ['cc', 'gcc', 'clang']) {
    for (const dir of ['/usr/local/bin', '/usr/bin', '/bin']) {
      const p = join(dir, name);
      if (existsSync(p)) return p;
    }
  }
  return undefined;
}

const force = process.argv.includes('--force');
if (!force && existsSync(out) && statSync(out).mtimeMs >= statSync(source).mtimeMs) process.exit(0);
const cc = findCompiler();
if (!cc) {
  process.stderr.write(
    'nemoclaw-tui: no C compiler (cc/gcc) found, so the Landlock helper is not built; sandboxes run without the Landlock layer\n' +
      '  (best_effort) or refuse to start (hard_requirement). Fix: apt-get install -y gcc libc6-dev, then npm run build\n',
  );
  process.exit(0);
}
mkdirSync(dirname(out), { recursive: true });
const tmp = `${out}.tmp-${process.pid}`;
const r = spawnSync(cc, ['-std=c11', '-O2', '-Wall', '-Wextra', '-Werror', '-D_FORTIFY_SOURCE=2', '-fstack-protector-strong', '-o', tmp, source], { stdio: 'inherit' });
if (r.status !== 0) {
  process.stderr.write(`nemoclaw-tui: building the Landlock helper failed (${cc} exit ${r.status ?? r.signal})\n`);
  process.exit(r.status ?? 1);
}
renameSync(tmp, out); // atomic: a sandbox starting now sees the old helper or the new one, never half
