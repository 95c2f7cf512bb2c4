import { spawn } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { readCgroupCounters } from '../../src/meters/cgroup.js';
import { processTree, releaseProcessHistory, sampleProcesses } from '../../src/meters/proc.js';
import { killPids, removeDir, sleep, spawnSleepTree, tempDir } from './helpers.js';

const toKill: number[][] = [];
const dirs: string[] = [];
afterEach(() => {
  for (const pids of toKill.splice(0)) killPids(pids);
});
afterAll(() => {
  releaseProcessHistory();
  for (const d of dirs.splice(0)) removeDir(d);
});

describe('process sampling of a real process tree', () => {
  it('finds all 51 processes of a 50-child tree and measures their memory and age', async () => {
    const { rootPid } = await spawnSleepTree(50);
    const pids = await processTree(rootPid);
    toKill.push(pids);
    expect(pids).toHaveLength(51);
    expect(pids[0]).toBe(rootPid);

    await sleep(50);
    const sample = await sampleProcesses({ instances: () => [{ id: 'tree', rootPid, pids: () => processTree(rootPid) }] }, Date.now());
    expect(sample.instances).toHaveLength(1);
    const inst = sample.instances[0]!;
    expect(inst).toMatchObject({ id: 'tree', root_pid: rootPid, pids: 51 });
    // 51 live processes hold at least a few hundred KiB each.
    expect(inst.rss_bytes).toBeGreaterThan(51 * 100 * 1024);
    expect(inst.elapsed_ms).toBeGreaterThanOrEqual(0);
    expect(inst.cpu_pct).toBeGreaterThanOrEqual(0);
    expect(sample.total).toEqual({ pids: 51, cpu_pct: inst.cpu_pct, rss_bytes: inst.rss_bytes });
  });

  it('counts CPU used by the tree between two samples', async () => {
    // Spins about 400 ms, then sleeps: the second sample must see the spin.
    const child = spawn(process.execPath, ['-e', 'const end = Date.now() + 400; while (Date.now() < end); setTimeout(() => {}, 60000);'], {
      stdio: 'ignore',
    });
    toKill.push([child.pid!]);
    const source = { instances: () => [{ id: 'spin', rootPid: child.pid!, pids: () => [child.pid!] }] };
    await sampleProcesses(source, Date.now());
    await sleep(500);
    const second = await sampleProcesses(source, Date.now());
    expect(second.instances[0]!.cpu_pct).toBeGreaterThan(10);
  });

  it('does not fail when processes exit between listing and sampling', async () => {
    const live = spawn('sleep', ['600'], { stdio: 'ignore' });
    toKill.push([live.pid!]);
    const exited: number[] = [];
    for (let i = 0; i < 2; i++) {
      const p = spawn('true', [], { stdio: 'ignore' });
      await new Promise((r) => p.once('exit', r));
      exited.push(p.pid!);
    }
    const sample = await sampleProcesses(
      { instances: () => [{ id: 'x', rootPid: live.pid!, pids: () => [live.pid!, ...exited] }] },
      Date.now(),
    );
    expect(sample.instances[0]!.pids).toBe(1);

    const gone = await sampleProcesses({ instances: () => [{ id: 'gone', rootPid: exited[0]!, pids: () => [exited[0]!] }] }, Date.now());
    expect(gone.instances[0]).toMatchObject({ pids: 0, rss_bytes: 0, elapsed_ms: null });
  });
});

describe('cgroup counters', () => {
  it('reads cgroup v2 memory.current / pids.current and their limits', async () => {
    const root = tempDir('cg2');
    dirs.push(root);
    const cg = join(root, 'nemoclaw', 'default');
    mkdirSync(cg, { recursive: true });
    writeFileSync(join(cg, 'memory.current'), '73400320\n');
    writeFileSync(join(cg, 'memory.max'), '2147483648\n');
    writeFileSync(join(cg, 'pids.current'), '51\n');
    writeFileSync(join(cg, 'pids.max'), 'max\n');
    const expected = { version: 2, memory_bytes: 73400320, memory_limit_bytes: 2147483648, pids: 51, pids_limit: null };
    expect(await readCgroupCounters('/nemoclaw/default', root)).toEqual(expected);
    expect(await readCgroupCounters(cg, root)).toEqual(expected);
  });

  it('reads cgroup v1 memory and pids hierarchies', async () => {
    const root = tempDir('cg1');
    dirs.push(root);
    mkdirSync(join(root, 'memory', 'nemoclaw', 'default'), { recursive: true });
    mkdirSync(join(root, 'pids', 'nemoclaw', 'default'), { recursive: true });
    writeFileSync(join(root, 'memory', 'nemoclaw', 'default', 'memory.usage_in_bytes'), '1048576\n');
    writeFileSync(join(root, 'memory', 'nemoclaw', 'default', 'memory.limit_in_bytes'), '9223372036854771712\n');
    writeFileSync(join(root, 'pids', 'nemoclaw', 'default', 'pids.current'), '7\n');
    writeFileSync(join(root, 'pids', 'nemoclaw', 'default', 'pids.max'), '256\n');
    const expected = { version: 1, memory_bytes: 1048576, memory_limit_bytes: null, pids: 7, pids_limit: 256 };
    expect(await readCgroupCounters('/nemoclaw/default', root)).toEqual(expected);
    // The sandbox driver hands over one controller's dir; the memory counters are found beside it.
    expect(await readCgroupCounters(join(root, 'pids', 'nemoclaw', 'default'), root)).toEqual(expected);
  });

  it('returns nothing for a cgroup that does not exist (sandbox gone)', async () => {
    const root = tempDir('cg0');
    dirs.push(root);
    expect(await readCgroupCounters('/nemoclaw/missing', root)).toBeUndefined();
  });

  it('adds the cgroup counters to the instance sample', async () => {
    const root = tempDir('cgs');
    dirs.push(root);
    const cg = join(root, 'sb');
    mkdirSync(cg, { recursive: true });
    writeFileSync(join(cg, 'memory.current'), '4096\n');
    writeFileSync(join(cg, 'pids.current'), '1\n');
    const sample = await sampleProcesses(
      { instances: () => [{ id: 'me', rootPid: process.pid, pids: () => [process.pid], cgroupPath: '/sb' }] },
      Date.now(),
      { cgroupRoot: root },
    );
    expect(sample.instances[0]!.cgroup).toMatchObject({ version: 2, memory_bytes: 4096, pids: 1 });
  });
});
