import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  classifyNvidiaSmiExit,
  parseComputeApps,
  parseGpuLine,
  parseGpuStream,
  parseMeminfo,
} from '../../src/meters/nvidia-smi.js';

const FIXTURES = join(import.meta.dirname, '..', 'fixtures', 'nvidia-smi');
const fixture = (name: string): string => readFileSync(join(FIXTURES, name), 'utf8');

describe('nvidia-smi --query-gpu parser (recorded formats)', () => {
  it('reads a single H100 loop as one batch per iteration', () => {
    const batches = parseGpuStream(fixture('h100-single.query-gpu.csv'));
    expect(batches).toHaveLength(5);
    const loaded = batches[4]!.gpus[0]!;
    expect(loaded).toMatchObject({
      index: 0,
      uuid: 'GPU-6a1f3c2e-84b7-5d09-c1e2-7f30a9b4d815',
      name: 'NVIDIA H100 80GB HBM3',
      utilGpuPct: 100,
      utilMemPct: 44,
      memUsedMiB: 71952,
      memTotalMiB: 81559,
      tempC: 58,
      powerW: 689.13,
      powerLimitW: 700,
    });
    expect(loaded.unavailable).toEqual({});
    expect(loaded.error).toBeUndefined();
    expect(batches[0]!.gpus[0]!.memUsedMiB).toBe(1);
  });

  it('splits an 8-GPU DGX H100 stream into iterations of 8 GPUs in index order', () => {
    const batches = parseGpuStream(fixture('dgx-h100-8gpu.query-gpu.csv'));
    expect(batches.map((b) => b.gpus.length)).toEqual([8, 8]);
    expect(batches[1]!.gpus.map((g) => g.index)).toEqual([0, 1, 2, 3, 4, 5, 6, 7]);
    expect(new Set(batches[0]!.gpus.map((g) => g.uuid)).size).toBe(8);
    const busy = batches[0]!.gpus.filter((g) => (g.utilGpuPct ?? 0) > 50).map((g) => g.index);
    expect(busy).toEqual([0, 1, 2, 3]);
    expect(batches[0]!.gpus[4]!.powerW).toBe(69.88);
  });

  it('keeps GB10 [N/A] memory and power limit as unavailable, not as zero', () => {
    const batches = parseGpuStream(fixture('gb10.query-gpu.csv'));
    expect(batches).toHaveLength(3);
    const g = batches[2]!.gpus[0]!;
    expect(g.name).toBe('NVIDIA GB10');
    expect(g.memUsedMiB).toBeNull();
    expect(g.memTotalMiB).toBeNull();
    expect(g.powerLimitW).toBeNull();
    expect(g.utilGpuPct).toBe(96);
    expect(g.powerW).toBe(41.07);
    expect(g.unavailable).toEqual({ 'memory.used': 'N/A', 'memory.total': 'N/A', 'power.limit': 'N/A' });
    // N/A is not a fault.
    expect(g.error).toBeUndefined();
  });

  it('reports a GPU that is lost mid-run: error fields, then a missing row and the driver message', () => {
    const batches = parseGpuStream(fixture('vanishing-gpu.query-gpu.csv'));
    expect(batches.map((b) => b.gpus.length)).toEqual([8, 8, 7]);
    const lost = batches[1]!.gpus.find((g) => g.index === 3)!;
    expect(lost.error).toBe('GPU is lost');
    expect(lost.utilGpuPct).toBeNull();
    expect(lost.memUsedMiB).toBeNull();
    expect(batches[2]!.gpus.map((g) => g.index)).toEqual([0, 1, 2, 4, 5, 6, 7]);
    expect(batches[2]!.messages).toEqual([
      'Unable to determine the device handle for GPU 00000000:5D:00.0: GPU is lost.  Reboot the system to recover this GPU',
    ]);
  });

  it('tells [Not Supported] and MIG [N/A] apart from errors', () => {
    const [batch] = parseGpuStream(fixture('not-supported.query-gpu.csv'));
    const [mig, laptop] = batch!.gpus;
    expect(mig!.utilGpuPct).toBeNull();
    expect(mig!.memUsedMiB).toBe(20391);
    expect(mig!.error).toBeUndefined();
    expect(laptop!.name).toBe('NVIDIA GeForce RTX 3060 Laptop GPU');
    expect(laptop!.powerW).toBeNull();
    expect(laptop!.unavailable['power.draw']).toBe('Not Supported');
    expect(laptop!.error).toBeUndefined();
  });

  it('never throws on garbage; non-rows come back as messages', () => {
    expect(parseGpuLine('')).toBeUndefined();
    expect(parseGpuLine('Failed to initialize NVML: Driver/library version mismatch')).toEqual({
      kind: 'message',
      text: 'Failed to initialize NVML: Driver/library version mismatch',
    });
    expect(parseGpuLine('0, not-a-uuid, x, 1, 2, 3, 4, 5, 6, 7')?.kind).toBe('message');
    const odd = parseGpuLine('0, GPU-1, Some, GPU, 5, 1, 2, 3, 40, 50.5, 60.0');
    expect(odd).toMatchObject({ kind: 'gpu', reading: { name: 'Some, GPU', utilGpuPct: 5, powerLimitW: 60 } });
  });
});

describe('nvidia-smi --query-compute-apps parser', () => {
  it('reads pid, used memory and GPU uuid', () => {
    expect(parseComputeApps(fixture('dgx-h100-8gpu.compute-apps.csv'))).toHaveLength(4);
    expect(parseComputeApps(fixture('gb10.compute-apps.csv'))).toEqual([
      { pid: 114687, usedMiB: 19135, gpuUuid: 'GPU-8e3d19a4-5c72-b06f-d1a8-3f92c7e40b56' },
    ]);
    expect(parseComputeApps('')).toEqual([]);
    expect(parseComputeApps('77, [N/A], GPU-abc\nNo running processes found\n')).toEqual([
      { pid: 77, usedMiB: null, gpuUuid: 'GPU-abc' },
    ]);
  });
});

describe('no-GPU detection and unified memory', () => {
  it('treats "no devices" and "driver not loaded" as no GPU, other exits as transient', () => {
    expect(classifyNvidiaSmiExit(6, fixture('no-devices.stdout'))).toBe('no_gpu');
    expect(classifyNvidiaSmiExit(9, fixture('driver-not-loaded.stdout'))).toBe('no_gpu');
    expect(classifyNvidiaSmiExit(255, fixture('driver-not-loaded.stdout'))).toBe('no_gpu');
    expect(classifyNvidiaSmiExit(undefined, '')).toBe('transient');
    expect(classifyNvidiaSmiExit(1, 'Segmentation fault')).toBe('transient');
  });

  it('reads the unified memory pool from /proc/meminfo (GB10)', () => {
    expect(parseMeminfo(fixture('gb10.meminfo'))).toEqual({ totalMiB: 122480, usedMiB: 23820 });
    expect(parseMeminfo('garbage')).toBeUndefined();
  });
});
