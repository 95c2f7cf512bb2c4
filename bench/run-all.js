#!/usr/bin/env node
// Runs every bench/*.ts (alphabetically, one at a time) with this Node (Node 24 strips the types),
// streaming each one's output. Files starting with `_` are helpers and are skipped.
// Exits 1 if any benchmark failed. Build first: `npm run bench` does `tsc` then this.
import { readdirSync } from 'node:fs';
import { spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const benchDir = dirname(fileURLToPath(import.meta.url));
const only = process.argv.slice(2);
const files = readdirSync(benchDir)
  .filter((f) => f.endsWith('.ts') && !f.startsWith('_') && !f.endsWith('.d.ts'))
  .filter((f) => only.length === 0 || only.some((o) => f === o || f === `${o}.ts`))
  .sort();

function run(file) {
  return new Promise((resolve) => {
    process.stdout.write(`\n=== bench/${file} ===\n`);
    const child = spawn(process.execPath, [join(benchDir, file)], { stdio: 'inherit', cwd: join(benchDir, '..') });
    child.on('error', (err) => {
      process.stderr.write(`bench/${file}: ${err.message}\n`);
      resolve(1);
    });
    child.on('exit', (code, signal) => resolve(signal ? 1 : (code ?? 1)));
  });
}

let failed = 0;
for (const file of files) {
  const code = await run(file);
  if (code !== 0) {
    failed++;
    process.stderr.write(`bench/${file} exited with ${code}\n`);
  }
}
process.exitCode = failed > 0 ? 1 : 0;
