// Audit log benchmark: appends/s of the hash-chained log vs plain JSONL appends (same records,
// same batching, no hashing), and verified records/s vs a plain JSON.parse of every line of the
// same file. Each figure is the best of a few rounds (the machine is shared).
// Run: npx tsc -p . && node bench/audit.ts
import { closeSync, fsyncSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { AuditLog, verifyAudit } from '../dist/src/audit/index.js';

const N = 200_000;
const ROUNDS = 3;
const root = mkdtempSync(join(tmpdir(), 'nemoclaw-bench-audit-'));
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');

function event(i: number) {
  return { kind: 'net.decision' as const, verdict: i % 3 ? 'allow' : 'deny', host: `svc${i % 977}.example.com`, port: 443, binary: '/usr/bin/node', rule: `p${i % 50}/0` };
}

/** Plain JSONL: the same record shape, batched writes, one fsync at the end; no seq chain, no hash. */
function plainAppends(file: string): number {
  const t0 = performance.now();
  const fd = openSync(file, 'a', 0o600);
  let batch: string[] = [];
  for (let i = 0; i < N; i++) {
    const rec = { ts: new Date().toISOString(), seq: i + 1, level: 'info', sandbox: 'bench', id: `r${i}`, ...event(i) };
    batch.push(`${JSON.stringify(rec)}\n`);
    if (batch.length === 8192) {
      writeSync(fd, batch.join(''));
      batch = [];
    }
  }
  writeSync(fd, batch.join(''));
  fsyncSync(fd);
  closeSync(fd);
  return (N / (performance.now() - t0)) * 1000;
}

/** Ours: AuditLog.append (seq, canonical JSON, sha256 chain), batched writes, fsync on close. */
async function chainedAppends(dir: string): Promise<number> {
  const log = await AuditLog.open({ dir, sandbox: 'bench', maxFileBytes: 1 << 30 });
  const t0 = performance.now();
  for (let i = 0; i < N; i++) {
    log.append(event(i));
    if (i % 8192 === 8191) await new Promise((r) => setImmediate(r)); // let the writer run, as a live supervisor would
  }
  await log.close();
  return (N / (performance.now() - t0)) * 1000;
}

function parseEveryLine(file: string): number {
  const t0 = performance.now();
  const text = readFileSync(file, 'utf8');
  let parsed = 0;
  for (const line of text.split('\n')) if (line && (JSON.parse(line) as { seq: number }).seq > 0) parsed++;
  return (parsed / (performance.now() - t0)) * 1000;
}

async function verifyRate(dir: string): Promise<number> {
  const t0 = performance.now();
  const result = await verifyAudit(dir);
  const rate = (result.records / (performance.now() - t0)) * 1000;
  if (!result.ok || result.records !== N) throw new Error(`verify failed: ${JSON.stringify(result)}`);
  return rate;
}

try {
  let plain = 0;
  let chained = 0;
  let auditDir = '';
  for (let r = 0; r < ROUNDS; r++) {
    plain = Math.max(plain, plainAppends(join(root, `plain-${r}.jsonl`)));
    rmSync(join(root, `plain-${r}.jsonl`));
    auditDir = join(root, `audit-${r}`);
    chained = Math.max(chained, await chainedAppends(auditDir));
    if (r < ROUNDS - 1) rmSync(auditDir, { recursive: true });
  }
  const file = join(auditDir, 'audit-000001.jsonl');
  let parse = 0;
  let verify = 0;
  for (let r = 0; r < ROUNDS; r++) {
    parse = Math.max(parse, parseEveryLine(file));
    verify = Math.max(verify, await verifyRate(auditDir));
  }
  console.log(`## Audit log (${fmt(N)} records of ${Math.round(statSync(file).size / N)} bytes, best of ${ROUNDS})\n`);
  console.log('| operation | baseline | ours | ratio |');
  console.log('|---|---:|---:|---:|');
  console.log(`| appends/s: plain JSONL vs hash-chained AuditLog | ${fmt(plain)} | ${fmt(chained)} | ${(chained / plain).toFixed(2)}x |`);
  console.log(`| records/s: JSON.parse of each line vs verifyAudit | ${fmt(parse)} | ${fmt(verify)} | ${(verify / parse).toFixed(2)}x |`);
} finally {
  rmSync(root, { recursive: true, force: true });
}
