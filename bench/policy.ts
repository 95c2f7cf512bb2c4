// Policy engine benchmark: decisions/s of the compiled matcher vs a naive linear scan over the
// same rules (precompiled regexes, deny pass then allow pass), for 10, 100 and 1,000 rules.
// Run: npx tsc -p . && node bench/policy.ts
import { compileNetworkMatcher, parsePolicy } from '../dist/src/policy/index.js';

type Query = { host: string; port: number; binary?: string; method?: string; path?: string };

function makePolicyYaml(rules: number): string {
  const lines = ['version: 1', 'network_policies:'];
  for (let i = 0; i < rules; i++) {
    const kind = i % 20;
    let host: string;
    if (kind < 15) host = `svc${i}.example${i % 7}.com`; // exact
    else if (kind < 19) host = `"*.zone${i}.example.net"`; // first-label wildcard
    else host = `"api.*.region${i}.example.org"`; // other glob
    const deny = i % 10 === 3;
    // One in four names a program, one in four names none (no program may use it), the rest `/**`.
    const bins = i % 4 === 1 ? '\n    binaries: [/usr/bin/node]' : i % 4 === 2 ? '' : '\n    binaries: ["/**"]';
    lines.push(`  p${i}:`);
    if (deny) lines.push('    action: deny');
    lines.push(`    endpoints: [{ host: ${host}, port: ${i % 3 === 0 ? 80 : 443} }]${bins}`);
  }
  return lines.join('\n');
}

function makeQueries(rules: number, count: number): Query[] {
  const out: Query[] = [];
  let seed = 12345;
  const rand = () => ((seed = (seed * 1103515245 + 12345) & 0x7fffffff), seed / 0x7fffffff);
  for (let k = 0; k < count; k++) {
    const i = Math.floor(rand() * rules);
    const kind = i % 20;
    const port = i % 3 === 0 ? 80 : 443;
    const r = rand();
    let host: string;
    if (r < 0.2) host = `unknown${k}.elsewhere.io`; // miss
    else if (kind < 15) host = `svc${i}.example${i % 7}.com`;
    else if (kind < 19) host = `h${k % 50}.zone${i}.example.net`;
    else host = `api.eu.region${i}.example.org`;
    out.push({ host, port, binary: rand() < 0.8 ? '/usr/bin/node' : undefined, method: 'GET', path: '/v1/items' });
  }
  return out;
}

interface NaiveRule {
  re: RegExp;
  port: number;
  deny: boolean;
  binaries: string[];
}

function naiveRules(doc: ReturnType<typeof parsePolicy>['doc']): NaiveRule[] {
  const out: NaiveRule[] = [];
  for (const p of Object.values(doc.network_policies)) {
    for (const e of p.endpoints) {
      const re = new RegExp(`^${e.host.split('.').map((l) => l.split('*').map((s) => s.replace(/[.+^${}()|[\]\\]/g, '\\$&')).join('[^.]*')).join('\\.')}$`);
      for (const port of e.ports) out.push({ re, port, deny: p.action === 'deny', binaries: p.binaries.map((b) => b.path) });
    }
  }
  return out;
}

function naiveDecide(rules: NaiveRule[], q: Query): string {
  const host = q.host.toLowerCase().replace(/\.$/, '');
  const programOk = (r: NaiveRule) =>
    r.binaries.includes('/**') || (r.binaries.length === 0 ? r.deny : q.binary !== undefined && r.binaries.includes(q.binary));
  const ok = (r: NaiveRule) => r.port === q.port && r.re.test(host) && programOk(r);
  for (const r of rules) if (r.deny && ok(r)) return 'deny';
  for (const r of rules) if (!r.deny && ok(r)) return 'allow';
  return 'unknown';
}

function measure(fn: (q: Query) => unknown, queries: Query[], minMs = 400): number {
  let n = 0;
  const start = performance.now();
  let elapsed = 0;
  do {
    for (const q of queries) fn(q);
    n += queries.length;
    elapsed = performance.now() - start;
  } while (elapsed < minMs);
  return (n / elapsed) * 1000;
}

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
console.log('## Policy engine: decisions/s (host, port, binary, method, path)\n');
console.log('| rules | naive linear scan | compiled matcher | ratio |');
console.log('|---:|---:|---:|---:|');
for (const rules of [10, 100, 1000]) {
  const { doc } = parsePolicy(makePolicyYaml(rules), `bench-${rules}.yaml`);
  const matcher = compileNetworkMatcher(doc);
  const naive = naiveRules(doc);
  const queries = makeQueries(rules, 4096);
  for (const q of queries) {
    const a = matcher.decide(q).verdict;
    const b = naiveDecide(naive, q);
    if (a !== b) throw new Error(`disagreement on ${JSON.stringify(q)}: matcher ${a}, naive ${b}`);
  }
  measure((q) => matcher.decide(q), queries, 100); // warm-up
  const ours = measure((q) => matcher.decide(q), queries);
  const base = measure((q) => naiveDecide(naive, q), queries);
  console.log(`| ${rules} | ${fmt(base)} | ${fmt(ours)} | ${(ours / base).toFixed(1)}x |`);
}
