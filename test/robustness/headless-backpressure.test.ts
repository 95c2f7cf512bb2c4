/**
 * A `logs -f` follower whose own reader stalls (stdout into a pipe nobody reads) must not buffer
 * the supervisor's whole event stream in memory: it pauses once its unread output passes a bound,
 * says so once, and when the output drains it resumes after the last seq it printed, so every
 * audited event is still printed exactly once, in order.
 */
import { EventEmitter } from 'node:events';
import { describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/events.js';
import { runLogs } from '../../src/headless/index.js';
import { startTestSupervisor } from '../helpers/supervisor.js';
import { sleep, waitUntil } from './helpers.js';

/** A stdout whose reader takes nothing until told to: it counts what waits, like a Node stream. */
class StalledPipe extends EventEmitter {
  delivered: string[] = [];
  private pending: string[] = [];
  writableLength = 0;
  maxSeen = 0;
  write(chunk: string): boolean {
    this.pending.push(chunk);
    this.writableLength += Buffer.byteLength(chunk);
    this.maxSeen = Math.max(this.maxSeen, this.writableLength);
    return this.writableLength < 16 * 1024;
  }
  /** The reader takes everything that waits. */
  drainAll(): void {
    if (this.pending.length === 0) return;
    this.delivered.push(...this.pending);
    this.pending = [];
    this.writableLength = 0;
    this.emit('drain');
  }
}

describe('logs -f with a stalled reader', () => {
  it('stays bounded, says so once, and resumes without losing or repeating an event', async () => {
    const t = await startTestSupervisor();
    const stdout = new StalledPipe();
    const stderr: string[] = [];
    const stop = new AbortController();
    const limit = 8 * 1024;
    try {
      const following = runLogs({
        client: t.client,
        stdout,
        stderr: { write: (s: string) => (stderr.push(s), true) },
        env: {},
        follow: true,
        output: 'jsonl',
        signal: stop.signal,
        maxPendingOutputBytes: limit,
      });
      await waitUntil(() => stdout.writableLength > 0, 'the backlog to be printed');
      const line = 'x'.repeat(200);
      for (let i = 0; i < 800; i++) t.supervisor.events.emit({ kind: 'agent.log', line: `${i} ${line}` });
      const lastSeq = t.supervisor.events.lastSeq();

      // Nobody reads: the follower stops at the bound instead of taking all 800 events in.
      await waitUntil(() => stderr.some((s) => s.includes('output is not being read')), 'the pause notice');
      await sleep(300);
      const oneEvent = 1_024;
      expect(stdout.maxSeen).toBeLessThanOrEqual(limit + oneEvent);
      expect(stderr.join('')).toMatch(/^nemoclaw-tui: output is not being read \(more than 8192 bytes waiting\); paused, resuming after seq \d+ once it drains\n$/);

      // The reader comes back (slowly, a bit at a time): everything arrives, once, in order.
      await waitUntil(
        () => {
          stdout.drainAll();
          const last = stdout.delivered.at(-1);
          return last !== undefined && (JSON.parse(last) as AuditEvent).seq === lastSeq;
        },
        'every event to be delivered',
        20_000,
      );
      const seqs = stdout.delivered.map((l) => (JSON.parse(l) as AuditEvent).seq);
      const first = seqs[0]!;
      expect(seqs).toEqual(Array.from({ length: lastSeq - first + 1 }, (_, i) => first + i));
      expect(stdout.maxSeen).toBeLessThanOrEqual(limit + oneEvent);
      // One notice for the whole stall, however many pauses it took.
      expect(stderr.filter((s) => s.includes('output is not being read'))).toHaveLength(1);

      stop.abort();
      expect(await following).toBe(0);
    } finally {
      stop.abort();
      await t.stop();
    }
  });
});
