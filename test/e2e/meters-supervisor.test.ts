/**
 * The meters inside the real supervisor: a fake 8-GPU `nvidia-smi` first on PATH, samples in
 * `GET /v1/status` (what `status --json` prints), on the live stream, and summaries in the audit log.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/events.js';
import { createMetersService, processTree } from '../../src/meters/index.js';
import { readAuditDir } from '../../src/audit/index.js';
import { startTestSupervisor, type TestSupervisor } from '../helpers/supervisor.js';
import {
  fakeNvidiaSmi,
  fixturePath,
  killPids,
  pidsMentioning,
  removeDir,
  spawnSleepTree,
  tempDir,
  waitFor,
  waitForAsync,
} from '../meters/helpers.js';

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

interface MetersStatus {
  interval_ms: number;
  gpu: { state: string; latest: { ts: string; gpus: Array<{ index: number; name: string; mem_total_mib: number }> } | null };
  proc: { instances: Array<{ id: string; pids: number }> } | null;
  budget: { latest: unknown; tokens_per_min: number | null };
}

describe('meters in the supervisor', () => {
  it('status shows the latest GPU and process samples; the stream carries them; the audit log the summary', async () => {
    const work = tempDir('sup');
    cleanups.push(() => removeDir(work));
    const fake = fakeNvidiaSmi(work, { FAKE_NVSMI_GPU: fixturePath('dgx-h100-8gpu.query-gpu.csv') });
    const tree = await spawnSleepTree(3);
    const pids = await processTree(tree.rootPid);
    cleanups.push(() => killPids(pids));

    let sup: TestSupervisor | undefined = await startTestSupervisor({
      // Our own home, so the audit log outlives the supervisor for the check below.
      home: work,
      services: [createMetersService],
      options: {
        meters: {
          intervalMs: 200,
          env: fake.env,
          processSource: { instances: () => [{ id: 'sb', rootPid: tree.rootPid, pids: () => processTree(tree.rootPid) }] },
        },
      },
    });
    cleanups.push(() => sup?.stop());
    const live: AuditEvent[] = [];
    sup.supervisor.events.subscribe((e) => live.push(e), { kinds: ['gpu.sample', 'proc.sample'] });

    const status = await waitForAsync('both meters in status', async () => {
      const s = (await sup!.client.status()).services.meters as unknown as MetersStatus | undefined;
      return s?.gpu.latest && s.proc ? s : undefined;
    });
    expect(status.interval_ms).toBe(200);
    expect(status.gpu.state).toBe('running');
    expect(status.gpu.latest!.gpus).toHaveLength(8);
    expect(status.gpu.latest!.gpus[7]).toMatchObject({ index: 7, name: 'NVIDIA H100 80GB HBM3', mem_total_mib: 81559 });
    expect(status.proc!.instances).toEqual([expect.objectContaining({ id: 'sb', pids: 4 })]);
    expect(status.budget).toMatchObject({ latest: null, tokens_per_min: null });

    await waitFor('live samples', () => live.some((e) => e.kind === 'gpu.sample' && e.transient) && live.some((e) => e.kind === 'proc.sample' && e.transient));

    const auditDir = sup.paths.auditDir;
    await sup.stop();
    sup = undefined;
    await waitFor('fake nvidia-smi to exit', () => pidsMentioning(work).length === 0);
    // The partial minute is summarised on stop; the 5 Hz samples never reach the audit log.
    const recorded = await readAuditDir(auditDir, { kinds: ['gpu.sample', 'proc.sample'] });
    expect(recorded.map((e) => e.kind).sort()).toEqual(['gpu.sample', 'proc.sample']);
    expect(recorded.every((e) => typeof e.summary === 'object')).toBe(true);
  });
});
