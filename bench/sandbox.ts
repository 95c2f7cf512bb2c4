/**
 * Sandbox benchmark: cold start to the command's first instruction (first byte of output), with the
 * fs-violation monitor off and on, and the monitor's cost on a write-heavy and a stat-heavy
 * workload — each as a ratio to running the same command unsandboxed in the same run.
 * Configurations are measured round-robin (not one after the other), so load from other processes on
 * a shared machine hits them alike. The write-heavy workload runs in a tmpfs workdir: on this VM's
 * shared virtual disk one file create costs 0.1–0.6 ms and swings with other I/O, which drowned the
 * monitor's own cost (two ptrace stops per traced call) in noise.
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

const CREATES = 2000;
const WRITE_HEAVY = `i=0; while [ $i -lt ${CREATES} ]; do : > "f$i"; i=$((i+1)); done; rm -f f*`;
/** Traced calls in the write-heavy run: one openat(O_CREAT) per file, then one unlinkat per file. */
const WRITE_TRACED_CALLS = 2 * CREATES;
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

async function sandboxed(cmd: string[], monitor: boolean, workdir = join(base, 'wd')): Promise<{ firstMs: number; totalMs: number }> {
  const t0 = performance.now();
  const sb = await launchBwrap({
    id: `b${seq++}`,
    command: cmd,
    workdir,
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

type Sample = () => Promise<{ firstMs: number; totalMs: number }>;

/** Run each configuration once per round, `rounds` times, after one warm-up round; medians. */
async function measureRoundRobin(rounds: number, configs: Array<[string, Sample]>) {
  for (const [, fn] of configs) await fn(); // warm the page cache
  const first = configs.map(() => [] as number[]);
  const total = configs.map(() => [] as number[]);
  for (let i = 0; i < rounds; i++) {
    for (const [k, [, fn]] of configs.entries()) {
      const r = await fn();
      first[k]!.push(r.firstMs);
      total[k]!.push(r.totalMs);
    }
  }
  return configs.map(([label], k) => ({ label, first: median(first[k]!), total: median(total[k]!) }));
}

const hostWd = join(base, 'host-wd');
mkdirSync(hostWd, { recursive: true });
const shm = mkdtempSync('/dev/shm/ncb-');
const shmHostWd = join(shm, 'host-wd');
const shmWd = join(shm, 'wd');
mkdirSync(shmHostWd, { recursive: true });
const echo = ['/bin/sh', '-c', 'echo ready'];
const rows: Array<{ label: string; first: number; total: number; base: number }> = [];

const [startBase, startOff, startOn] = await measureRoundRobin(15, [
  ['start: unsandboxed sh -c "echo ready"', () => unsandboxed(echo, hostWd)],
  ['start: sandbox, monitor off', () => sandboxed(echo, false)],
  ['start: sandbox, monitor on', () => sandboxed(echo, true)],
]);
rows.push({ ...startBase!, base: startBase!.first }, { ...startOff!, base: startBase!.first }, { ...startOn!, base: startBase!.first });

const write = ['/bin/sh', '-c', WRITE_HEAVY];
const [writeBase, writeOff, writeOn] = await measureRoundRobin(7, [
  [`write-heavy (${CREATES} creates + unlinks, tmpfs): unsandboxed`, () => unsandboxed(write, shmHostWd)],
  ['write-heavy: sandbox, monitor off', () => sandboxed(write, false, shmWd)],
  ['write-heavy: sandbox, monitor on', () => sandboxed(write, true, shmWd)],
]);
const stat = ['/bin/sh', '-c', STAT_HEAVY];
const [statBase, statOff, statOn] = await measureRoundRobin(5, [
  ['stat-heavy (find /usr x3): unsandboxed', () => unsandboxed(stat, hostWd)],
  ['stat-heavy: sandbox, monitor off', () => sandboxed(stat, false)],
  ['stat-heavy: sandbox, monitor on', () => sandboxed(stat, true)],
]);

console.log('\n| measurement | first output (ms, median) | total (ms, median) | ratio to unsandboxed |');
console.log('|---|---:|---:|---:|');
for (const r of rows) {
  console.log(`| ${r.label} | ${r.first.toFixed(1)} | ${r.total.toFixed(1)} | ${(r.first / r.base).toFixed(1)}× (first output) |`);
}
for (const [b, off, on] of [[writeBase!, writeOff!, writeOn!], [statBase!, statOff!, statOn!]] as const) {
  for (const r of [b, off, on]) {
    console.log(`| ${r.label} | ${r.first.toFixed(1)} | ${r.total.toFixed(1)} | ${(r.total / b.total).toFixed(2)}× (total) |`);
  }
}
const perCallUs = ((writeOn!.total - writeOff!.total) / WRITE_TRACED_CALLS) * 1000;
console.log(`\nmonitor cost on the write-heavy run: ${(writeOn!.total / writeOff!.total).toFixed(2)}× the sandbox without it (~${perCallUs.toFixed(0)} µs per traced call, ${WRITE_TRACED_CALLS} traced calls)`);
console.log(`monitor cost on the stat-heavy run: ${(statOn!.total / statOff!.total).toFixed(2)}× the sandbox without it`);
console.log(`cold start to first instruction: ${startOff!.first.toFixed(1)} ms (monitor off), ${startOn!.first.toFixed(1)} ms (monitor on); goal ≤ 150 ms`);
rmSync(base, { recursive: true, force: true });
rmSync(shm, { recursive: true, force: true });
