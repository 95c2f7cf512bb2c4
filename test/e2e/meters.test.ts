/**
 * The meters service end to end: a fake `nvidia-smi` (replaying recorded output) first on PATH, a
 * real process tree as the "sandbox", the real event bus over a real audit log.
 */
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/events.js';
import type { SupervisorService } from '../../src/control/types.js';
import { MetersService, NO_GPU_MESSAGE, processTree, UNIFIED_MEMORY_NOTE } from '../../src/meters/index.js';
import {
  fakeNvidiaSmi,
  fixturePath,
  invocations,
  killPids,
  pidsMentioning,
  removeDir,
  sleep,
  spawnSleepTree,
  tempDir,
  testContext,
  waitFor,
  type TestContext,
} from '../meters/helpers.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface Harness {
  t: TestContext;
  meters: MetersService;
  dir: string;
}

/** Start the meters with a fake sandbox driver (`ctx.service('sandbox')`) over a real process tree. */
async function startMeters(
  opts: ConstructorParameters<typeof MetersService>[0],
  sandbox?: { rootPid: number; cgroupPath?: string },
): Promise<Harness & { dir: string }> {
  const dir = tempDir('e2e');
  cleanups.push(() => removeDir(dir));
  const driver: SupervisorService & { instances(): unknown[] } = {
    name: 'sandbox',
    start: async () => {},
    stop: async () => {},
    instances: () =>
      sandbox
        ? [{ id: 'sb-1', rootPid: sandbox.rootPid, pids: () => processTree(sandbox.rootPid), cgroupPath: sandbox.cgroupPath }]
        : [],
  };
  const t = await testContext(dir, [driver]);
  cleanups.push(() => t.close());
  const meters = new MetersService(opts);
  await meters.start(t.ctx);
  cleanups.push(() => meters.stop());
  return { t, meters, dir };
}

const transient = (events: AuditEvent[], kind: string): AuditEvent[] => events.filter((e) => e.kind === kind && e.transient === true);
const audited = (events: AuditEvent[], kind: string): AuditEvent[] => events.filter((e) => e.kind === kind && e.transient !== true);

describe('meters with a fake nvidia-smi first on PATH', () => {
  it('streams gpu.sample and proc.sample for an 8-GPU DGX, attributes VRAM to sandbox pids, audits only summaries', async () => {
    const tree = await spawnSleepTree(5);
    const pids = await processTree(tree.rootPid);
    cleanups.push(() => killPids(pids));
    const work = tempDir('fake');
    cleanups.push(() => removeDir(work));
    // Two sandbox processes hold memory on GPUs 0 and 1; pid 1 (not in the sandbox) holds GPU 2.
    const apps = join(work, 'apps.csv');
    const uuids = readFileSync(fixturePath('dgx-h100-8gpu.query-gpu.csv'), 'utf8')
      .split('\n')
      .slice(0, 3)
      .map((l) => l.split(', ')[1]!);
    writeFileSync(apps, `${pids[1]}, 40960, ${uuids[0]}\n${pids[2]}, 35048, ${uuids[1]}\n1, 76008, ${uuids[2]}\n`);
    const fake = fakeNvidiaSmi(work, { FAKE_NVSMI_GPU: fixturePath('dgx-h100-8gpu.query-gpu.csv'), FAKE_NVSMI_APPS: apps });

    const { t, meters } = await startMeters(
      { intervalMs: 200, summaryIntervalMs: 1500, appsIntervalMs: 300, env: fake.env },
      { rootPid: tree.rootPid },
    );

    const attributed = await waitFor('a gpu.sample with sandbox VRAM', () =>
      transient(t.events, 'gpu.sample').find((e) => e.sandbox_mem_mib === 40960 + 35048),
    );
    const gpus = attributed.gpus as Array<Record<string, unknown>>;
    expect(gpus).toHaveLength(8);
    expect(gpus.map((g) => g.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(gpus[0]).toMatchObject({ name: 'NVIDIA H100 80GB HBM3', mem_total_mib: 81559, mem_source: 'vram', sandbox_mem_mib: 40960, power_limit_w: 700 });
    expect(gpus[1]!.sandbox_mem_mib).toBe(35048);
    expect(gpus[2]!.sandbox_mem_mib).toBe(0);
    expect(attributed.sandbox_processes).toEqual([
      { pid: pids[1], gpu_uuid: uuids[0], used_mib: 40960 },
      { pid: pids[2], gpu_uuid: uuids[1], used_mib: 35048 },
    ]);
    expect(attributed.level).toBe('debug');

    const proc = await waitFor('a proc.sample', () => transient(t.events, 'proc.sample').at(-1));
    expect(proc.instances).toEqual([expect.objectContaining({ id: 'sb-1', root_pid: tree.rootPid, pids: 6 })]);

    // One summary per window goes to the audit log; the 1 Hz samples do not.
    await waitFor('audited summaries', () => audited(t.events, 'gpu.sample').length > 0 && audited(t.events, 'proc.sample').length > 0);
    const onDisk = await t.audit.read({ kinds: ['gpu.sample', 'proc.sample'] });
    expect(onDisk.length).toBeGreaterThan(0);
    expect(onDisk.every((e) => e.summary !== undefined)).toBe(true);
    const gpuSummary = onDisk.find((e) => e.kind === 'gpu.sample')!.summary as { samples: number; gpus: Array<Record<string, unknown>> };
    expect(gpuSummary.samples).toBeGreaterThan(1);
    expect(gpuSummary.gpus).toHaveLength(8);
    expect(gpuSummary.gpus[0]).toMatchObject({ util_gpu_max_pct: 100, mem_used_max_mib: 76510, power_max_w: 688.64 });

    // status carries the latest sample of each meter.
    const status = meters.status() as { gpu: { state: string; latest: { gpus: unknown[]; ts: string } }; proc: { instances: unknown[] }; interval_ms: number };
    expect(status.interval_ms).toBe(200);
    expect(status.gpu.state).toBe('running');
    expect(status.gpu.latest.gpus).toHaveLength(8);
    expect(typeof status.gpu.latest.ts).toBe('string');
    expect(status.proc.instances).toHaveLength(1);

    // One long-running --query-gpu process, not one per sample.
    const runs = invocations(fake.log).filter((l) => l.includes('--query-gpu='));
    expect(runs).toHaveLength(1);
    expect(runs[0]).toContain('-lms 200');

    await meters.stop();
    await waitFor('fake nvidia-smi to exit', () => pidsMentioning(work).length === 0);
  });

  it('reports a GPU that vanishes mid-run, once, in the audit log', async () => {
    const work = tempDir('fake');
    cleanups.push(() => removeDir(work));
    const fake = fakeNvidiaSmi(work, { FAKE_NVSMI_GPU: fixturePath('vanishing-gpu.query-gpu.csv') });
    const { t } = await startMeters({ intervalMs: 150, env: fake.env });
    const seven = await waitFor('a sample with 7 GPUs', () =>
      transient(t.events, 'gpu.sample').find((e) => (e.gpus as unknown[]).length === 7),
    );
    expect((seven.gpus as Array<{ index: number }>).map((g) => g.index)).toEqual([0, 1, 2, 4, 5, 6, 7]);
    expect(seven.messages).toEqual([expect.stringContaining('GPU is lost')]);
    const lostSample = transient(t.events, 'gpu.sample').find((e) => (e.gpus as Array<{ error?: string }>).some((g) => g.error));
    expect((lostSample!.gpus as Array<{ index: number; error?: string }>)[3]).toMatchObject({ index: 3, error: 'GPU is lost', util_gpu_pct: null });
    const warnings = audited(t.events, 'gpu.sample').filter((e) => e.vanished);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]!.level).toBe('warn');
    expect(warnings[0]!.message).toContain('GPU 3 (NVIDIA H100 80GB HBM3');
    expect(warnings[0]!.message).toContain('GPU is lost');
  });

  it('shows GB10 unified memory as the system memory pool and says so', async () => {
    const work = tempDir('fake');
    cleanups.push(() => removeDir(work));
    const fake = fakeNvidiaSmi(work, { FAKE_NVSMI_GPU: fixturePath('gb10.query-gpu.csv') });
    const meminfo = readFileSync(fixturePath('gb10.meminfo'), 'utf8');
    const { t, meters } = await startMeters({ intervalMs: 150, env: fake.env, readMeminfo: async () => meminfo });
    const sample = await waitFor('a GB10 sample', () => transient(t.events, 'gpu.sample').at(-1));
    expect(sample.note).toBe(UNIFIED_MEMORY_NOTE);
    expect((sample.gpus as unknown[])[0]).toMatchObject({
      name: 'NVIDIA GB10',
      mem_source: 'system',
      mem_total_mib: 122480,
      mem_used_mib: 23820,
      power_limit_w: null,
      unavailable: { 'memory.used': 'N/A', 'memory.total': 'N/A', 'power.limit': 'N/A' },
    });
    expect((meters.status().gpu as { note?: string }).note).toBe(UNIFIED_MEMORY_NOTE);
  });
});

describe('meters without a usable GPU', () => {
  it('no nvidia-smi on PATH: says "no NVIDIA GPU" once and stays quiet; process meters keep working', async () => {
    const tree = await spawnSleepTree(2);
    const pids = await processTree(tree.rootPid);
    cleanups.push(() => killPids(pids));
    const emptyBin = tempDir('nobin');
    cleanups.push(() => removeDir(emptyBin));
    const { t, meters } = await startMeters({ intervalMs: 100, env: { PATH: emptyBin } }, { rootPid: tree.rootPid });
    await waitFor('the no-GPU event', () => t.events.some((e) => e.kind === 'gpu.sample'));
    // Ten more intervals: still exactly one GPU event, while process samples keep coming.
    const procBefore = transient(t.events, 'proc.sample').length;
    await sleep(1000);
    const gpuEvents = t.events.filter((e) => e.kind === 'gpu.sample');
    expect(gpuEvents).toHaveLength(1);
    expect(gpuEvents[0]).toMatchObject({ available: false, message: NO_GPU_MESSAGE, level: 'notice' });
    expect(gpuEvents[0]!.transient).toBeUndefined();
    expect(String(gpuEvents[0]!.reason)).toContain('ENOENT');
    expect(transient(t.events, 'proc.sample').length).toBeGreaterThan(procBefore);
    expect(meters.status().gpu).toMatchObject({ state: 'no_gpu', message: NO_GPU_MESSAGE, latest: null });
  });

  it('"No devices were found" (exit 6): one run of nvidia-smi, one message, no retries', async () => {
    const work = tempDir('fake');
    cleanups.push(() => removeDir(work));
    const fake = fakeNvidiaSmi(work, { FAKE_NVSMI_EXIT: '6', FAKE_NVSMI_STDOUT: fixturePath('no-devices.stdout') });
    const { t } = await startMeters({ intervalMs: 100, env: fake.env, gpuInitialBackoffMs: 50 });
    await waitFor('the no-GPU event', () => t.events.some((e) => e.kind === 'gpu.sample'));
    await sleep(800);
    expect(invocations(fake.log)).toHaveLength(1);
    const gpuEvents = t.events.filter((e) => e.kind === 'gpu.sample');
    expect(gpuEvents).toHaveLength(1);
    expect(String(gpuEvents[0]!.reason)).toContain('No devices were found');
  });

  it('a crashing nvidia-smi is restarted with growing delays, not in a storm', async () => {
    const work = tempDir('fake');
    cleanups.push(() => removeDir(work));
    const fake = fakeNvidiaSmi(work, { FAKE_NVSMI_GPU: fixturePath('h100-single.query-gpu.csv'), FAKE_NVSMI_FRAMES: '1' });
    const { t } = await startMeters({ intervalMs: 100, env: fake.env, gpuInitialBackoffMs: 100, gpuMaxBackoffMs: 10_000 });
    const restarts = await waitFor('three restart events', () => {
      const r = audited(t.events, 'gpu.sample').filter((e) => e.action === 'nvidia-smi.restart');
      return r.length >= 3 ? r : undefined;
    });
    expect(restarts.slice(0, 3).map((e) => e.retry_in_ms)).toEqual([100, 200, 400]);
    // Each run still delivered its sample.
    expect(transient(t.events, 'gpu.sample').length).toBeGreaterThanOrEqual(3);
    expect(invocations(fake.log).filter((l) => l.includes('--query-gpu=')).length).toBeLessThanOrEqual(restarts.length + 1);
  });

  it('a hung nvidia-smi (no output) is killed and restarted', async () => {
    const work = tempDir('fake');
    cleanups.push(() => removeDir(work));
    const fake = fakeNvidiaSmi(work, { FAKE_NVSMI_GPU: fixturePath('h100-single.query-gpu.csv'), FAKE_NVSMI_HANG: '1' });
    const { t, meters } = await startMeters({ intervalMs: 100, env: fake.env, gpuStallMs: 400, gpuInitialBackoffMs: 100 });
    const restart = await waitFor('a restart after the stall', () => audited(t.events, 'gpu.sample').find((e) => e.action === 'nvidia-smi.restart'));
    expect(restart).toMatchObject({ stalled: true, signal: 'SIGKILL', level: 'warn' });
    expect(String(restart.message)).toContain('nvidia-smi hung');
    await waitFor('the second run', () => invocations(fake.log).length >= 2);
    await meters.stop();
    await waitFor('fake nvidia-smi to exit', () => pidsMentioning(work).length === 0);
  });
});
