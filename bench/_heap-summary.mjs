// Used by bench/memory-soak.mjs (SNAP=1): total self size of a .heapsnapshot (MB), then the largest constructors.
// usage: node summ.mjs SNAP [TOPN] -> first line: total MB; then top constructors by self size
import { readFileSync } from 'node:fs';
const [f, topArg] = process.argv.slice(2);
const j = JSON.parse(readFileSync(f, 'utf8'));
const m = j.snapshot.meta; const nf = m.node_fields.length;
const ti = m.node_fields.indexOf('type'), ni = m.node_fields.indexOf('name'), si = m.node_fields.indexOf('self_size');
const types = m.node_types[0];
const nodes = j.nodes, strings = j.strings;
let total = 0; const agg = new Map();
for (let i = 0; i < nodes.length; i += nf) {
  const sz = nodes[i + si]; total += sz;
  const t = types[nodes[i + ti]];
  const key = t === 'object' || t === 'closure' ? `${t}:${strings[nodes[i + ni]]}` : t;
  const a = agg.get(key) ?? [0, 0]; a[0] += sz; a[1]++; agg.set(key, a);
}
console.log((total / 1048576).toFixed(1));
const top = Number(topArg ?? 25);
for (const [k, [s, c]] of [...agg].sort((a, b) => b[1][0] - a[1][0]).slice(0, top)) console.log(`${(s / 1048576).toFixed(2).padStart(9)}MB ${String(c).padStart(8)} ${k.slice(0, 90)}`);
