/**
 * A backlog with no limit (`logs --since …`, `GET /v1/events?since=1`, a follower resuming from an
 * old seq) is read from the audit log a page at a time: the supervisor never holds the whole log in
 * memory to answer it (it parsed every record of a long-lived supervisor's log at once). Counted as
 * events the audit read kept, not RSS.
 */
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/index.js';
import type { AuditEvent } from '../../src/audit/events.js';
import { ControlClient } from '../../src/control/client.js';
import { SupervisorEventBus } from '../../src/control/eventbus.js';
import { OperatorPresenceTracker } from '../../src/control/presence.js';
import { BACKLOG_PAGE, ControlServer } from '../../src/control/server.js';
import { makeTempHome, type TempHome } from '../helpers/supervisor.js';

const RECORDS = 3 * BACKLOG_PAGE + 123;
let home: TempHome;
let audit: AuditLog;
let bus: SupervisorEventBus;
let server: ControlServer;
let client: ControlClient;
let peak = 0;

beforeEach(async () => {
  home = await makeTempHome();
  audit = await AuditLog.open({ dir: join(home.dir, 'audit'), sandbox: 'default', maxFileBytes: 512 * 1024 });
  bus = new SupervisorEventBus({ sandbox: 'default', audit, ringSize: 50 });
  for (let i = 0; i < RECORDS; i++) {
    bus.emit({ kind: i % 50 === 0 ? 'policy.revision' : 'net.request', level: 'info', host: `h${i}.example.com`, port: 443 });
    if (i % 1000 === 999) await audit.flush();
  }
  await audit.flush();
  // The most events any one audit read held while this test ran.
  peak = 0;
  const read = audit.read.bind(audit);
  audit.read = async (...args: Parameters<AuditLog['read']>) => {
    const out = await read(...args);
    peak = Math.max(peak, audit.lastReadStats.peakKept);
    return out;
  };
  const socketPath = join(home.dir, 'sandboxes', 'default', 'control.sock');
  server = new ControlServer({ socketPath, sandbox: 'default', bus, presence: new OperatorPresenceTracker(), routes: [], heartbeatMs: 1000, onError: () => undefined });
  await server.listen();
  client = new ControlClient({ socketPath, sandbox: 'default', timeoutMs: 20_000 });
});

afterEach(async () => {
  await server.close();
  await audit.close();
  await home.cleanup();
});

describe('unlimited backlogs are read in pages', () => {
  it('since=1 (no limit): every event once, in order, never more than a page held', async () => {
    const events = await client.events({ since: 1 });
    expect(events).toHaveLength(RECORDS - 1);
    expect(events.map((e) => e.seq)).toEqual(Array.from({ length: RECORDS - 1 }, (_, i) => i + 2));
    expect(peak).toBeGreaterThan(0);
    expect(peak).toBeLessThanOrEqual(BACKLOG_PAGE);
  });

  it('a follower resuming from an old seq gets the whole backlog, page by page, then live events', async () => {
    const got: AuditEvent[] = [];
    let live = false;
    await new Promise<void>((resolve, reject) => {
      const ctl = new AbortController();
      client
        .followEvents({ since: 10 }, (e) => {
          got.push(e);
          if (e.seq === RECORDS + 1) {
            ctl.abort();
            resolve();
          }
        }, {
          signal: ctl.signal,
          onBacklogEnd: () => {
            if (live) return;
            live = true;
            bus.emit({ kind: 'net.request', level: 'info', host: 'live.example.com', port: 443 });
          },
        })
        .catch((err: unknown) => (ctl.signal.aborted ? resolve() : reject(err as Error)));
    });
    const seqs = got.filter((e) => e.transient !== true).map((e) => e.seq);
    expect(seqs).toEqual(Array.from({ length: RECORDS + 1 - 10 }, (_, i) => i + 11));
    expect(peak).toBeLessThanOrEqual(BACKLOG_PAGE);
  });

  it('a kind filter pages over matches (sinceSeq moves past each page)', async () => {
    const events = await client.events({ since: 0, kinds: ['policy.revision'] });
    expect(events).toHaveLength(Math.ceil(RECORDS / 50));
    expect(events.every((e) => e.kind === 'policy.revision')).toBe(true);
  });
});
