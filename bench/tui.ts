/**
 * TUI under load: 10k events/s for 10 s into the real UI (dist/components/run.js) running in a
 * real pseudo-terminal of 80x24 (a tmux pane). Reports CPU % of one core, frames/s, peak RSS and
 * bytes written per second, for a baseline (events flushed every tick, Ink defaults: 30 fps,
 * whole-frame redraws) and ours (80 ms batches, 12 fps, changed lines only), the latter both
 * without and with the V8 flags the launcher (bin/nemoclaw-tui.js) gives the TUI process
 * (`nodeFlagsFor(['tui'])`: a small young generation), with ratios.
 *
 *   npx tsc -p . && node bench/tui.ts            (needs tmux)
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const RATE = 10_000;
const SECONDS = Number(process.env.BENCH_SECONDS ?? 10);
const TICK_MS = 10;

interface Result {
  variant: string;
  events: number;
  seconds: number;
  cpuPct: number;
  fps: number;
  rssMb: number;
  bytesPerSec: number;
}

function makeEvent(i: number, now: number): Record<string, unknown> {
  const ts = new Date(now).toISOString();
  const base = { ts, seq: i, sandbox: 'bench', id: `e-${i}`, level: 'info' };
  const r = i % 20;
  if (i % 10_000 === 0) return { ...base, kind: 'net.held', pending_id: `p-${i}`, host: `unknown-${i}.test`, port: 443, binary: '/usr/bin/curl', request: 'GET /' };
  if (r < 8) return { ...base, kind: 'net.decision', action: i % 3 === 0 ? 'deny' : 'allow', host: `host-${i % 97}.example.test`, port: 443, binary: '/usr/local/bin/node', rule: 'bench/0', reason: 'bench' };
  if (r < 14) return { ...base, kind: 'agent.log', stream: 'stdout', line: `step ${i}: fetching resource ${i % 1000} and thinking about it` };
  if (r < 16) return { ...base, kind: 'fs.violation', pid: 100 + (i % 50), binary: '/bin/sh', syscall: 'openat', path: `/etc/secret-${i % 13}`, errno: 'EACCES', rule: 'hidden' };
  if (r < 18) return { ...base, kind: i % 2 ? 'inference.route' : 'inference.done', id: `t-${i >> 1}`, requested_model: 'gpt-4o', provider: 'local', model: 'llama', rule: 'default', entities: { email: i % 3 }, redactions: i % 3, prompt_tokens: 500, completion_tokens: 80, ttft_ms: 120, total_ms: 900, status: 200, outcome: 'ok' };
  if (r === 18) return { ...base, kind: 'gpu.sample', gpus: [{ index: 0, util_gpu_pct: i % 100, mem_used_mib: 20000 + (i % 5000), mem_total_mib: 81920, temp_c: 60, power_w: 300 }] };
  return { ...base, kind: 'proc.sample', total: { pids: 12, cpu_pct: i % 150, rss_bytes: 500_000_000 + (i % 1000) * 1000 } };
}

async function child(variant: string, outFile: string): Promise<void> {
  const { runTui } = (await import('../dist/components/run.js')) as typeof import('../components/run.js');
  let bytes = 0;
  const origWrite = process.stdout.write.bind(process.stdout);
  process.stdout.write = ((chunk: string | Uint8Array, ...rest: unknown[]) => {
    bytes += typeof chunk === 'string' ? Buffer.byteLength(chunk) : chunk.length;
    return (origWrite as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;

  let frames = 0;
  let sent = 0;
  let peakRss = 0;
  const ac = new AbortController();
  let startCpu = process.cpuUsage();
  let startAt = performance.now();
  let startFrames = 0;
  let startBytes = 0;
  const client = {
    status: async () => ({ name: 'bench', state: 'running', started_at: new Date().toISOString(), policy: { revision: 1 } }),
    pending: async () => [],
    decide: async () => undefined,
    policy: async () => ({ revision: 1, yaml: '', history: [] }),
    budget: async () => undefined,
    raiseBudget: async () => '',
    follow(handlers: { onEvent(e: Record<string, unknown>): void; onOpen?(): void }, signal: AbortSignal) {
      handlers.onOpen?.();
      return new Promise<void>((resolve) => {
        // Warm up 1 s, then measure SECONDS of steady load.
        const warmup = setTimeout(() => {
          startCpu = process.cpuUsage();
          startAt = performance.now();
          startFrames = frames;
          startBytes = bytes;
          sent = 0;
        }, 1000);
        const t0 = performance.now();
        let i = 0;
        const timer = setInterval(() => {
          const due = Math.floor(((performance.now() - t0) / 1000) * RATE);
          const now = Date.now();
          while (i < due) handlers.onEvent(makeEvent(i++, now)), sent++;
          peakRss = Math.max(peakRss, process.memoryUsage.rss());
        }, TICK_MS);
        const end = setTimeout(() => ac.abort(), 1000 + SECONDS * 1000);
        signal.addEventListener('abort', () => {
          clearInterval(timer);
          clearTimeout(warmup);
          clearTimeout(end);
          resolve();
        });
      });
    },
  };
  const baseline = variant === 'baseline';
  await runTui({
    client: client as never,
    name: 'bench',
    maxFps: baseline ? 30 : 12,
    batchMs: baseline ? 0 : 80,
    incrementalRendering: !baseline,
    onFrame: () => frames++,
    signal: ac.signal,
  });
  const cpu = process.cpuUsage(startCpu);
  const secs = (performance.now() - startAt) / 1000;
  const result: Result = {
    variant,
    events: sent,
    seconds: secs,
    cpuPct: ((cpu.user + cpu.system) / 1e6 / secs) * 100,
    fps: (frames - startFrames) / secs,
    rssMb: peakRss / 1024 / 1024,
    bytesPerSec: (bytes - startBytes) / secs,
  };
  const { writeFileSync } = await import('node:fs');
  writeFileSync(outFile, JSON.stringify(result));
}

function runVariant(variant: string, dir: string, nodeFlags: string[] = []): Result {
  const out = join(dir, `${variant}.json`);
  const sock = join(dir, `tmux-${variant}.sock`);
  const script = new URL(import.meta.url).pathname;
  const childVariant = variant === 'launcher' ? 'ours' : variant;
  const cmd = [process.execPath, ...nodeFlags, script, '--child', childVariant, out].map((a) => `'${a}'`).join(' ');
  execFileSync('tmux', ['-S', sock, 'new-session', '-d', '-x', '80', '-y', '24', '-s', variant, `env LANG=C.UTF-8 TERM=xterm-256color ${cmd}`]);
  const deadline = Date.now() + (SECONDS + 20) * 1000;
  while (!existsSync(out) && Date.now() < deadline) spawnSync('sleep', ['0.5']);
  spawnSync('tmux', ['-S', sock, 'kill-server']);
  if (!existsSync(out)) throw new Error(`the ${variant} run produced no result (is tmux installed? did npx tsc -p . run?)`);
  return JSON.parse(readFileSync(out, 'utf8')) as Result;
}

if (process.argv[2] === '--child') {
  await child(process.argv[3]!, process.argv[4]!);
} else {
  if (spawnSync('tmux', ['-V']).status !== 0) {
    console.error('bench/tui.ts needs tmux (apt-get install tmux)');
    process.exit(1);
  }
  const dir = mkdtempSync(join(tmpdir(), 'bench-tui-'));
  try {
    // The flags the real launcher adds for `nemoclaw-tui` (the default command).
    const { nodeFlagsFor } = (await import('../dist/src/cli/main.js')) as typeof import('../src/cli/main.js');
    const tuiFlags = nodeFlagsFor(['tui']);
    const base = runVariant('baseline', dir);
    const plain = runVariant('ours', dir);
    const ours = runVariant('launcher', dir, tuiFlags);
    const rows: Array<[string, (r: Result) => number, string, string]> = [
      ['events/s fed', (r) => r.events / r.seconds, '', '10000'],
      ['CPU % of one core', (r) => r.cpuPct, '%', '<= 30'],
      ['frames/s', (r) => r.fps, '', '<= 15'],
      ['peak RSS MB', (r) => r.rssMb, '', '<= 150'],
      ['bytes written/s', (r) => r.bytesPerSec, '', ''],
    ];
    console.log(`TUI, 80x24 tmux pane, ${RATE} events/s for ${SECONDS} s (after 1 s warm-up); launcher flags: ${tuiFlags.join(' ') || '(none)'}`);
    console.log(`${'metric'.padEnd(20)} ${'baseline'.padStart(12)} ${'ours'.padStart(12)} ${'ours+flags'.padStart(12)} ${'+flags/base'.padStart(11)}  goal`);
    for (const [name, get, , goal] of rows) {
      const b = get(base);
      const p = get(plain);
      const o = get(ours);
      console.log(`${name.padEnd(20)} ${b.toFixed(1).padStart(12)} ${p.toFixed(1).padStart(12)} ${o.toFixed(1).padStart(12)} ${(b > 0 ? o / b : NaN).toFixed(2).padStart(11)}  ${goal}`);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}
