/** Entries refused while nobody was attached expire after a TTL, not only when the queue bound pushes them out. */
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { PendingQueue } from '../../src/egress/pending.js';
import { proxyRequest, startProxy, startUpstream, testResolver, waitFor } from './harness.js';

const clock = { now: () => Date.now(), monotonic: () => performance.now() };
const req = (host: string) => ({ host, port: 443, binary: undefined, request: `CONNECT ${host}:443`, maxPending: 100 });

describe('pending queue TTL for unattended entries', () => {
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it('drops an unattended entry after the TTL and reports it as expired; asking again restarts the TTL', () => {
    const ended: Array<[string, string]> = [];
    const q = new PendingQueue({ clock, unattendedTtlMs: 60_000, onAutoDecision: (e, reason) => ended.push([e.host, reason]) });
    const a = q.recordUnattended(req('a.test'));
    q.recordUnattended(req('b.test'));
    expect(q.get(a)?.deadline).toBe(Date.now() + 60_000);
    vi.advanceTimersByTime(40_000);
    expect(q.recordUnattended(req('a.test'))).toBe(a); // asked again: same entry, fresh lifetime
    vi.advanceTimersByTime(30_000);
    expect(q.list().map((p) => p.host)).toEqual(['a.test']);
    expect(ended).toEqual([['b.test', 'expired']]);
    vi.advanceTimersByTime(30_000);
    expect(q.list()).toHaveLength(0);
    expect(ended).toEqual([
      ['b.test', 'expired'],
      ['a.test', 'expired'],
    ]);
  });

  it('defaults to 10 minutes, and an entry that becomes a live prompt follows the approval timeout instead', async () => {
    const q = new PendingQueue({ clock });
    const id = q.recordUnattended(req('c.test'));
    vi.advanceTimersByTime(9 * 60_000);
    expect(q.get(id)).toBeDefined();
    vi.advanceTimersByTime(60_001);
    expect(q.get(id)).toBeUndefined();

    q.recordUnattended(req('d.test'));
    const held = q.hold({ ...req('d.test'), timeoutMs: 20 * 60_000 });
    vi.advanceTimersByTime(11 * 60_000);
    expect(q.get(held.pendingId)).toMatchObject({ state: 'held', waiters: 1 });
    vi.advanceTimersByTime(10 * 60_000);
    expect(await held.outcome).toMatchObject({ allowed: false, reason: 'approval_timeout' });
  });
});

describe('through the proxy', () => {
  it('an unattended refusal leaves a pending entry that expires with an approval.decision event', async () => {
    const up = await startUpstream();
    const h = await startProxy({ unsafeAllowLoopbackUpstreams: true, resolver: testResolver({ 'late.test': ['127.0.0.1'] }), unattendedTtlMs: 200 }, (p) => (p.approvals.when_unattended = 'deny'));
    try {
      h.operators.count = 0;
      expect((await proxyRequest(h.socketPath, `http://late.test:${up.port}/`)).status).toBe(403);
      expect(h.proxy.pending()).toMatchObject([{ host: 'late.test', state: 'unattended' }]);
      await waitFor(() => h.proxy.pending().length === 0, 'the entry to expire');
      expect(h.events.find((e) => e.kind === 'approval.decision')).toMatchObject({ decision: 'expire', by: 'expired', host: 'late.test' });
    } finally {
      await h.close();
      await up.close();
    }
  });
});
