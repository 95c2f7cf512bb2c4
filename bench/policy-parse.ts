// Policy loading benchmark: time to parse and validate a large policy file, ours (yaml without its
// own duplicate-key check + one linear pass with a Set per mapping, then the schema) against the
// baseline the project used before (yaml's `uniqueKeys` check, which compares every key of a
// mapping with every earlier one, so it is quadratic), on the same text in the same run.
// Also: how fast an over-the-cap file (10 MB) is refused.
// Run: npx tsc -p . && node bench/policy-parse.ts
import { parseDocument } from 'yaml';
import { parsePolicy } from '../dist/src/policy/index.js';

/** A valid policy with `n` network policies of one endpoint each (~75 bytes per entry). */
function policyText(n: number): string {
  const lines = ['version: 1', 'network_policies:'];
  for (let i = 0; i < n; i++) lines.push(`  p${i}:`, '    binaries: [{ path: "/**" }]', `    endpoints: [{ host: svc${i}.example.com, port: 443 }]`);
  return `${lines.join('\n')}\n`;
}

function timeMs(fn: () => unknown, repeat: number): number {
  const runs: number[] = [];
  for (let r = 0; r < repeat; r++) {
    const t0 = performance.now();
    fn();
    runs.push(performance.now() - t0);
  }
  runs.sort((a, b) => a - b);
  return runs[Math.floor(runs.length / 2)]!;
}

const rows: string[][] = [['entries', 'bytes', 'baseline: yaml uniqueKeys (parse only)', 'ours: parse + dup check + schema', 'speed-up']];
for (const n of [1_000, 4_000, 13_000]) {
  const text = policyText(n);
  const repeat = n <= 1_000 ? 7 : 3;
  const baseline = timeMs(() => {
    const doc = parseDocument(text, { uniqueKeys: true });
    if (doc.errors.length > 0) throw new Error(String(doc.errors[0]));
  }, repeat);
  const ours = timeMs(() => parsePolicy(text, 'bench.yaml'), repeat);
  rows.push([String(n), String(Buffer.byteLength(text)), `${baseline.toFixed(0)} ms`, `${ours.toFixed(0)} ms`, `${(baseline / ours).toFixed(1)}x`]);
}

// A 10 MB file: refused by size before any parsing (the baseline would parse for minutes).
const huge = policyText(140_000);
const refuse = timeMs(() => {
  try {
    parsePolicy(huge, 'huge.yaml');
  } catch {
    return;
  }
  throw new Error('a 10 MB policy was accepted');
}, 5);

const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
for (const r of rows) console.log(r.map((cell, c) => cell.padEnd(widths[c]!)).join('  '));
console.log(`\n${(Buffer.byteLength(huge) / 1e6).toFixed(1)} MB policy (140,000 entries) refused by the 1 MiB cap in ${refuse.toFixed(2)} ms (median of 5)`);
