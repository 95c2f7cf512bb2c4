/**
 * Sandbox benchmark: cold start to the command's first instruction (first byte of output), with the
 * fs-violation monitor off and on, and the monitor's cost on a write-heavy and a stat-heavy
 * workload — each as a ratio to running the same command unsandboxed in the same run.
 * Run: npx tsc -p . && node bench/sandbox.ts   (root; bubblewrap, strace, socat installed)
 */
import { execa } from 'execa';
import { mkdtempSync, rmSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { launchBwrap } from '../dist/src/sandbox/index.js';

const base = mkdtempSync('/tmp/ncb-');
const runDir = join(base, 'run');
mkdirSync(runDir, { recursive: true });
let seq = 0;

const WRITE_HEAVY = 'i=0; while [ $i -lt 2000 ]; do : > "f$i"; i=$((i+1)); done; rm -f f*';
const STAT_HEAVY = 'for i in 1 2 3; do find /usr/lib /usr/share -maxdepth 4 > /dev/null; done';

async function unsandboxed(cmd: string[], cwd: string): Promise<{ firstMs: number; totalMs: number }> {
  const t0 = performance.now();
  const child = execa(cmd[0]!, cmd.slice(1), { cwd, buffer: false, reject: false, stdin: 'ignore' });
  let firstMs = -1;
  child.stdout?.once('data', () => (firstMs = performance.now() - t0));
  child.stdout?.resume();
  await child;
  const totalMs = performance.now() - t0;
  return { firstMs: firstMs < 0 ? totalMs : firstMs, totalMs };
}

async function sandboxed(cmd: string[], monitor: boolean): Promise<{ firstMs: number; totalMs: number }> {
  const t0 = performance.now();
  const sb = await launchBwrap({
    id: `b${seq++}`,
    command: cmd,
    workdir: join(base, 'wd'),
    runDir,
    proxySocket: join(runDir, 'proxy.sock'),
    filesystem: { include_workdir: true, read_only: [], read_write: [], hidden: ['/root'], monitor },
    process: { seccomp: { block: [], allow: [] }, limits: {}, env: {} },
  });
  let firstMs = -1;
  sb.stdout?.once('data', () => (firstMs = performance.now() - t0));
  sb.stdout?.resume();
  sb.stderr?.resume();
  await sb.wait();
  const totalMs = performance.now() - t0;
  return { firstMs: firstMs < 0 ? totalMs : firstMs, totalMs };
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)]!;
}

async function measure(label: string, n: number, fn: () => Promise<{ firstMs: number; totalMs: number }>) {
  await fn(); // warm the page cache
  const first: number[] = [];
  const total: number[] = [];
  for (let i = 0; i < n; i++) {
    const r = await fn();
    first.push(r.firstMs);
    total.push(r.totalMs);
  }
  return { label, first: median(first), total: median(total) };
}

const hostWd = join(base, 'host-wd');
mkdirSync(hostWd, { recursive: true });
const echo = ['/bin/sh', '-c', 'echo ready'];
const rows: Array<{ label: string; first: number; total: number; base: number }> = [];

const startBase = await measure('start: unsandboxed sh -c "echo ready"', 15, () => unsandboxed(echo, hostWd));
const startOff = await measure('start: sandbox, monitor off', 15, () => sandboxed(echo, false));
const startOn = await measure('start: sandbox, monitor on', 15, () => sandboxed(echo, true));
rows.push({ ...startBase, base: startBase.first }, { ...startOff, base: startBase.first }, { ...startOn, base: startBase.first });

const write = ['/bin/sh', '-c', WRITE_HEAVY];
const writeBase = await measure('write-heavy (2000 creates): unsandboxed', 3, () => unsandboxed(write, hostWd));
const writeOff = await measure('write-heavy: sandbox, monitor off', 3, () => sandboxed(write, false));
const writeOn = await measure('write-heavy: sandbox, monitor on', 3, () => sandboxed(write, true));
const stat = ['/bin/sh', '-c', STAT_HEAVY];
const statBase = await measure('stat-heavy (find /usr x3): unsandboxed', 3, () => unsandboxed(stat, hostWd));
const statOff = await measure('stat-heavy: sandbox, monitor off', 3, () => sandboxed(stat, false));
const statOn = await measure('stat-heavy: sandbox, monitor on', 3, () => sandboxed(stat, true));

console.log('\n| measurement | first output (ms, median) | total (ms, median) | ratio to unsandboxed |');
console.log('|---|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.label} | ${r.first.toFixed(1)} | ${r.total.toFixed(1)} | ${(r.first / r.base).toFixed(1)}× (first output) |`);
}
for (const [b, off, on] of [[writeBase, writeOff, writeOn], [statBase, statOff, statOn]] as const) {
  for (const r of [b, off, on]) {
    console.log(`| ${r.label} | ${r.first.toFixed(1)} | ${r.total.toFixed(1)} | ${(r.total / b.total).toFixed(2)}× (total) |`);
  }
}
const perCallUs = ((writeOn.total - writeOff.total) / 2000) * 1000;
console.log(`\nmonitor cost on the write-heavy run: ${(writeOn.total / writeOff.total).toFixed(2)}× the sandbox without it (~${perCallUs.toFixed(0)} µs per traced create)`);
console.log(`monitor cost on the stat-heavy run: ${(statOn.total / statOff.total).toFixed(2)}× the sandbox without it`);
console.log(`cold start to first instruction: ${startOff.first.toFixed(1)} ms (monitor off), ${startOn.first.toFixed(1)} ms (monitor on); goal ≤ 150 ms`);
rmSync(base, { recursive: true, force: true });
