/**
 * Cost of the process meter: 1 Hz sampling of a 50-process sandbox tree must use < 2 % of one core.
 * Measures this process's own CPU time (process.cpuUsage) over the same wall time for:
 *   baseline  the process idling
 *   pids      sampleProcesses over a known pid list (what the sandbox driver hands the meter)
 *   service   the whole MetersService (GPU meter off) with the tree found by walking /proc
 *   +gpu      the same plus the GPU meter reading a fake 8-GPU nvidia-smi (replaying the DGX H100
 *             fixture; only this process's parsing/publishing is counted, not the replaying process)
 * Run: npx tsc -p . && node bench/meters.ts   (env BENCH_SECONDS, default 10 per phase)
 */
import { spawn } from 'node:child_process';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { MetersService, processTree, releaseProcessHistory, sampleProcesses } from '../dist/src/meters/index.js';

const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const INTERVAL_MS = 1000;
const TREE_SIZE = 50;

function cpuMs(since: NodeJS.CpuUsage): number {
  const d = process.cpuUsage(since);
  return (d.user + d.system) / 1000;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

async function measure(name: string, run: (untilMs: number) => Promise<void>): Promise<{ name: string; cpuMs: number; wallMs: number }> {
  const start = process.cpuUsage();
  const t0 = performance.now();
  await run(t0 + SECONDS * 1000);
  const wallMs = performance.now() - t0;
  return { name, cpuMs: cpuMs(start), wallMs };
}

async function runService(rootPid: number, until: number, gpuEnv: NodeJS.ProcessEnv | undefined): Promise<void> {
  let samples = 0;
  const events = {
    emit: (e: Record<string, unknown>) => e,
    publishTransient: (e: Record<string, unknown>) => {
      samples++;
      return e;
    },
    subscribe: () => () => {},
    backlog: async () => [],
    lastSeq: () => 0,
  };
  const meters = new MetersService({
    intervalMs: INTERVAL_MS,
    ...(gpuEnv ? { env: gpuEnv } : { gpu: false }),
    processSource: { instances: () => [{ id: 'bench', rootPid, pids: () => processTree(rootPid) }] },
  });
  const ctx = {
    name: 'bench',
    clock: { now: () => Date.now(), monotonic: () => performance.now() },
    events,
    service: () => undefined,
    options: { unsafeAllowLoopbackUpstreams: false },
  };
  // The bench context carries only what the meters read.
  await meters.start(ctx as never);
  await sleep(Math.max(0, until - performance.now()));
  await meters.stop();
  const expected = (gpuEnv ? 2 : 1) * (SECONDS - 1);
  if (samples < expected) throw new Error(`only ${samples} sample events in ${SECONDS} s (expected >= ${expected})`);
  if (gpuEnv && meters.status().gpu && (meters.status().gpu as { state: string }).state === 'no_gpu') throw new Error('fake nvidia-smi not used');
}

async function main(): Promise<void> {
  // One sh with 49 sleeping children: a 50-process tree.
  const root = spawn('sh', ['-c', `for i in $(seq ${TREE_SIZE - 1}); do sleep 600 & done; echo ready; wait`], {
    stdio: ['ignore', 'pipe', 'ignore'],
  });
  await new Promise<void>((resolve) => root.stdout!.once('data', () => resolve()));
  const rootPid = root.pid!;
  const pids = await processTree(rootPid);
  if (pids.length !== TREE_SIZE) throw new Error(`expected a ${TREE_SIZE}-process tree, found ${pids.length}`);

  const results = [];
  try {
    results.push(await measure('baseline (idle)', async (until) => {
      while (performance.now() < until) await sleep(INTERVAL_MS);
    }));

    results.push(await measure('sampleProcesses, known pids', async (until) => {
      const source = { instances: () => [{ id: 'bench', rootPid, pids: () => pids }] };
      while (performance.now() < until) {
        const t = performance.now();
        const s = await sampleProcesses(source, Date.now());
        if (s.total.pids !== TREE_SIZE) throw new Error(`sampled ${s.total.pids} processes`);
        await sleep(Math.max(0, INTERVAL_MS - (performance.now() - t)));
      }
    }));
    releaseProcessHistory();

    results.push(await measure('MetersService, /proc walk', (until) => runService(rootPid, until, undefined)));
    const fakeDir = mkdtempSync(join(tmpdir(), 'nemoclaw-bench-meters-'));
    try {
      const fixtures = join(import.meta.dirname, '..', 'test', 'fixtures', 'nvidia-smi');
      const script = join(fakeDir, 'nvidia-smi');
      writeFileSync(script, `#!/bin/sh\nexec '${process.execPath}' '${join(fixtures, 'fake-nvidia-smi.mjs')}' "$@"\n`);
      chmodSync(script, 0o755);
      const env = {
        ...process.env,
        PATH: `${fakeDir}:${process.env.PATH ?? ''}`,
        FAKE_NVSMI_GPU: join(fixtures, 'dgx-h100-8gpu.query-gpu.csv'),
        FAKE_NVSMI_APPS: join(fixtures, 'dgx-h100-8gpu.compute-apps.csv'),
      };
      results.push(await measure('MetersService + GPU meter (8 GPUs)', (until) => runService(rootPid, until, env)));
    } finally {
      rmSync(fakeDir, { recursive: true, force: true });
    }
  } finally {
    for (const pid of [...pids].reverse()) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {
        // gone
      }
    }
  }

  const base = results[0]!;
  const basePct = (base.cpuMs / base.wallMs) * 100;
  console.log(`meters bench: 1 Hz sampling of a ${TREE_SIZE}-process tree, ${SECONDS} s per phase`);
  console.log('| phase | CPU ms | wall s | % of one core | over baseline (% core) | vs baseline |');
  console.log('|---|---:|---:|---:|---:|---:|');
  let worst = 0;
  for (const r of results) {
    const pct = (r.cpuMs / r.wallMs) * 100;
    const over = pct - basePct;
    if (r !== base) worst = Math.max(worst, over);
    const ratio = base.cpuMs > 0 ? `${(r.cpuMs / base.cpuMs).toFixed(1)}x` : 'n/a';
    console.log(`| ${r.name} | ${r.cpuMs.toFixed(1)} | ${(r.wallMs / 1000).toFixed(1)} | ${pct.toFixed(3)} | ${r === base ? '-' : over.toFixed(3)} | ${ratio} |`);
  }
  const ok = worst < 2;
  console.log(`${ok ? 'PASS' : 'FAIL'}: sampler costs at most ${worst.toFixed(3)} % of one core (budget 2 %)`);
  if (!ok) process.exitCode = 1;
}

await main();
