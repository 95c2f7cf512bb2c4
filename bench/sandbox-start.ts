/**
 * Sandbox start benchmark (issue 11 "no regression in sandbox start time, same-run comparison"):
 * wall time from launch to exit of `nemoclaw-tui run --policy <minimal policy> -- /bin/true` through
 * the real CLI (built bin, temporary $NEMOCLAW_HOME), against bare bubblewrap running the same
 * command in the same run:
 *
 *   bwrap --unshare-all --die-with-parent --ro-bind /usr /usr --symlink usr/bin /bin
 *         --symlink usr/lib /lib --symlink usr/lib64 /lib64 --proc /proc --dev /dev -- /bin/true
 *
 * and the same with `--remount-ro /proc` (what the read-only /proc costs on its own). Ours is
 * measured twice: "warm" (the supervisor is already up: `run` connects to it and it launches one
 * sandbox) and "cold" (a fresh home each time: `run` starts the supervisor daemon first, then the
 * sandbox; `down` afterwards, untimed). `nemoclaw-tui --version` shows what the CLI process alone
 * costs (Node start-up and the launcher). Configurations are measured round-robin, after one
 * untimed warm-up round, so load from other processes hits them alike. Median and p90 per
 * configuration, ratio ours/baseline.
 *
 * Run: npm run build && node bench/sandbox-start.ts [rounds]   (root; bubblewrap installed)
 * Rounds default to 15 (BENCH_ROUNDS or the first argument override it; at least 10).
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..');
const bin = join(repo, 'bin', 'nemoclaw-tui.js');
if (!existsSync(join(repo, 'dist', 'src', 'cli', 'main.js'))) {
  console.error('bench/sandbox-start.ts: build first (npm run build)');
  process.exit(1);
}
const rounds = Math.max(10, Number(process.argv[2] ?? process.env.BENCH_ROUNDS ?? 15) || 15);

const BWRAP = ['--unshare-all', '--die-with-parent', '--ro-bind', '/usr', '/usr', '--symlink', 'usr/bin', '/bin', '--symlink', 'usr/lib', '/lib', '--symlink', 'usr/lib64', '/lib64', '--proc', '/proc', '--dev', '/dev'];
const MINIMAL_POLICY = `version: 1
network_policies:
  example:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: api.example.com
        port: 443
`;

const base = mkdtempSync(join(tmpdir(), 'ncb-start-'));
const policyFile = join(base, 'policy.yaml');
writeFileSync(policyFile, MINIMAL_POLICY);
let homes = 0;
const liveHomes = new Set<string>();

function cliEnv(home: string): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1', NEMOCLAW_HOME: home };
  delete env.JOURNAL_STREAM;
  return env;
}

/** Wall time (ms) from spawn to exit; throws when the command fails. */
function timed(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'ignore', 'pipe'] });
    let stderr = '';
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (c: string) => (stderr += c));
    child.on('error', reject);
    child.on('exit', (code, signal) => {
      const ms = performance.now() - t0;
      if (code === 0) resolve(ms);
      else reject(new Error(`${cmd} ${args.join(' ')} exited ${code ?? signal}: ${stderr.trim()}`));
    });
  });
}

function down(home: string): void {
  spawnSync(process.execPath, [bin, 'down'], { env: cliEnv(home), stdio: 'ignore', timeout: 30_000 });
  liveHomes.delete(home);
}

function newHome(): string {
  const home = join(base, `home-${homes++}`);
  liveHomes.add(home);
  return home;
}

const warmHome = newHome();
const runArgs = [bin, 'run', '--policy', policyFile, '--', '/bin/true'];

type Config = [label: string, sample: () => Promise<number>];
const configs: Config[] = [
  ['bare bwrap -- /bin/true (baseline)', () => timed('bwrap', [...BWRAP, '--', '/bin/true'])],
  ['bare bwrap --remount-ro /proc -- /bin/true', () => timed('bwrap', [...BWRAP, '--remount-ro', '/proc', '--', '/bin/true'])],
  ['nemoclaw-tui --version (CLI process alone)', () => timed(process.execPath, [bin, '--version'], cliEnv(warmHome))],
  ['nemoclaw-tui run -- /bin/true, supervisor up (warm)', () => timed(process.execPath, runArgs, cliEnv(warmHome))],
  [
    'nemoclaw-tui run -- /bin/true, fresh home (cold: starts the supervisor)',
    async () => {
      const home = newHome();
      try {
        return await timed(process.execPath, runArgs, cliEnv(home));
      } finally {
        down(home);
      }
    },
  ],
];

function quantile(xs: number[], q: number): number {
  const s = [...xs].sort((a, b) => a - b);
  // Nearest rank: the smallest value with at least q of the samples at or below it.
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!;
}

const samples = configs.map(() => [] as number[]);
try {
  for (const [, fn] of configs) await fn(); // warm-up: page cache, and the warm home's supervisor
  for (let i = 0; i < rounds; i++) {
    for (const [k, [, fn]] of configs.entries()) samples[k]!.push(await fn());
  }
} finally {
  for (const home of [...liveHomes]) down(home);
  rmSync(base, { recursive: true, force: true });
}

const stats = configs.map(([label], k) => ({ label, median: quantile(samples[k]!, 0.5), p90: quantile(samples[k]!, 0.9) }));
const baseline = stats[0]!;
const kernel = spawnSync('uname', ['-r'], { encoding: 'utf8' }).stdout.trim();
const bwrapVersion = spawnSync('bwrap', ['--version'], { encoding: 'utf8' }).stdout.trim();
console.log(`sandbox start: ${rounds} rounds round-robin, Node ${process.versions.node}, ${bwrapVersion}, kernel ${kernel}`);
console.log('\n| measurement | median (ms) | p90 (ms) | median ratio to bare bwrap | p90 ratio |');
console.log('|---|---:|---:|---:|---:|');
for (const s of stats) {
  console.log(`| ${s.label} | ${s.median.toFixed(1)} | ${s.p90.toFixed(1)} | ${(s.median / baseline.median).toFixed(1)}× | ${(s.p90 / baseline.p90).toFixed(1)}× |`);
}
const [, ro, cli, warm, cold] = stats as [typeof baseline, typeof baseline, typeof baseline, typeof baseline, typeof baseline];
console.log(`\n--remount-ro /proc costs ${(ro.median - baseline.median).toFixed(2)} ms (median) on bare bwrap`);
console.log(`warm run: ${warm.median.toFixed(1)} ms median, of which the CLI process alone ${cli.median.toFixed(1)} ms; ours/baseline ${(warm.median / baseline.median).toFixed(1)}×`);
console.log(`cold run (supervisor start + sandbox): ${cold.median.toFixed(1)} ms median, ${cold.p90.toFixed(1)} ms p90`);
