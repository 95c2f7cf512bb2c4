/** Keys read together (issue 16), the one-row-per-request fold and the time-left field, as units. */
import { describe, expect, test } from 'vitest';
import type { Key } from 'ink';
import { splitKeys } from '../../components/keys.js';
import { TuiStore } from '../../components/store.js';
import { fixture } from './harness.js';

const plain = { upArrow: false, downArrow: false, leftArrow: false, rightArrow: false, pageDown: false, pageUp: false, home: false, end: false, return: false, escape: false, ctrl: false, shift: false, tab: false, backspace: false, delete: false, meta: false } as Key;

describe('splitKeys', () => {
  test('a run of characters becomes one key each, with the flags of a lone key', () => {
    expect(splitKeys('jj', plain).map((k) => k.input)).toEqual(['j', 'j']);
    const [j, enter] = splitKeys('j\r', plain);
    expect(j).toMatchObject({ input: 'j', key: { return: false } });
    expect(enter).toMatchObject({ input: '', key: { return: true } });
    expect(splitKeys('aA\t', plain).map((k) => [k.input, k.key.shift, k.key.tab])).toEqual([['a', false, false], ['A', true, false], ['', false, true]]);
    expect(splitKeys('é🙂', plain).map((k) => k.input)).toEqual(['é', '🙂']);
    expect(splitKeys('\u0015x', plain)[0]).toMatchObject({ input: 'u', key: { ctrl: true } });
  });

  test('what Ink parsed as one special key stays as it is', () => {
    expect(splitKeys('', { ...plain, upArrow: true })).toEqual([{ input: '', key: { ...plain, upArrow: true } }]);
    expect(splitKeys('a', { ...plain, meta: true })).toEqual([{ input: 'a', key: { ...plain, meta: true } }]);
    expect(splitKeys('j', plain)).toEqual([{ input: 'j', key: plain }]);
  });
});

describe('TuiStore: one row per request', () => {
  test('the outcome may arrive before the decision; joined waiters fold in too; the key stays', () => {
    const store = new TuiStore({ batchMs: 1000 });
    store.pushAll(fixture('network'));
    store.flush();
    expect(store.getSnapshot().network.held.map((r) => [r.id, r.deadline])).toEqual([
      ['p-1', Date.parse('2026-11-22T10:01:20.000Z')],
      ['p-2', Date.parse('2026-11-22T10:01:40.000Z')],
    ]);
    store.pushAll([
      { kind: 'net.decision', id: 'r-4', action: 'allow', reason: 'approved by operator', host: 'telemetry.vendor.test', port: 443, pending_id: 'p-2' },
      { kind: 'approval.decision', id: 'p-2', pending_id: 'p-2', decision: 'session', by: 'cli', latency_ms: 500, host: 'telemetry.vendor.test', port: 443 },
      { kind: 'net.decision', id: 'r-5', action: 'allow', reason: 'approved by operator', host: 'telemetry.vendor.test', port: 443, pending_id: 'p-2' },
    ]);
    store.flush();
    const rows = store.getSnapshot().network.history.filter((r) => r.host === 'telemetry.vendor.test');
    expect(rows).toHaveLength(1);
    expect(rows[0]).toMatchObject({ key: 'pending:p-2', verdict: 'session', reason: 'by cli after 0.5 s', method: 'CONNECT' });
    expect(store.getSnapshot().network.held.map((r) => r.id)).toEqual(['p-1']);
    store.dispose();
  });
});
