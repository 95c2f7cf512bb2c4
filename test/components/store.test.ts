import { describe, expect, test } from 'vitest';
import { gaugeBar, shouldUseAscii, sparkline } from '../../components/glyphs.js';
import { Ring, TuiStore, type StoreTimers } from '../../components/store.js';
import { fixture } from './harness.js';

function manualTimers() {
  const pending: Array<() => void> = [];
  const timers: StoreTimers = {
    setTimeout: (fn) => {
      pending.push(fn);
      return pending.length;
    },
    clearTimeout: () => undefined,
  };
  return { timers, fire: () => pending.splice(0).forEach((f) => f()) };
}

describe('TuiStore batching', () => {
  test('events become visible only at the batch flush, with one notification per batch', () => {
    const { timers, fire } = manualTimers();
    const store = new TuiStore({ timers });
    let notified = 0;
    store.subscribe(() => notified++);
    for (const ev of fixture('filesystem')) store.push(ev);
    expect(store.getSnapshot().filesystem).toHaveLength(0);
    fire();
    expect(notified).toBe(1);
    expect(store.getSnapshot().filesystem.map((r) => r.path)).toEqual(['/etc/hosts', '/usr/lib/node_modules/evil', '/etc/shadow']);
  });

  test('a pane slice keeps its identity when a batch does not touch it', () => {
    const store = new TuiStore({ batchMs: 1000 });
    store.pushAll(fixture('network'));
    store.flush();
    const net = store.getSnapshot().network;
    store.pushAll(fixture('meters'));
    store.flush();
    expect(store.getSnapshot().network).toBe(net);
    expect(store.getSnapshot().meters.gpus).toHaveLength(2);
    store.dispose();
  });

  test('held requests are tracked by pending id and leave on their decision', () => {
    const store = new TuiStore({ batchMs: 1000 });
    store.pushAll(fixture('network'));
    store.flush();
    const held = store.getSnapshot().network.held;
    expect(held.map((h) => [h.id, h.hits])).toEqual([
      ['p-1', 1],
      ['p-2', 2],
    ]);
    store.push({ kind: 'approval.decision', ts: '2026-11-22T10:00:00Z', pending_id: 'p-1', host: 'api.example.test', port: 8443, decision: 'once' });
    store.flush();
    expect(store.getSnapshot().network.held.map((h) => h.id)).toEqual(['p-2']);
    expect(store.getSnapshot().network.history[0]?.verdict).toBe('once');
    store.dispose();
  });

  test('the authoritative pending list replaces what events suggested', () => {
    const store = new TuiStore({ batchMs: 1000 });
    store.pushAll(fixture('network'));
    store.flush();
    store.setPending([{ id: 'p-9', host: 'x.test', port: 443 }]);
    expect(store.getSnapshot().network.held.map((h) => `${h.id} ${h.host}:${h.port}`)).toEqual(['p-9 x.test:443']);
    store.dispose();
  });

  test('inference.done merges into the row of its route', () => {
    const store = new TuiStore({ batchMs: 1000 });
    store.pushAll(fixture('inference'));
    store.flush();
    const rows = store.getSnapshot().inference;
    expect(rows).toHaveLength(2);
    expect(rows[1]).toMatchObject({ requested: 'gpt-4o', provider: 'local-nim', model: 'llama-3.1-8b', tokens: '812/120', ttft: '142ms', status: 'ok', entities: 'email:2' });
    store.dispose();
  });

  test('malformed events are counted but never throw or create rows', () => {
    const store = new TuiStore({ batchMs: 1000 });
    store.push({ kind: 'gpu.sample', gpus: 'nonsense' });
    store.push({ kind: 'fs.violation' });
    store.push(null as never);
    store.flush();
    const s = store.getSnapshot();
    expect(s.header.eventCount).toBe(3);
    expect(s.filesystem[0]).toMatchObject({ binary: '-', syscall: '-', path: '-' });
    store.dispose();
  });

  test('the ring keeps only the newest rows', () => {
    const ring = new Ring<number>(3);
    for (let i = 1; i <= 5; i++) ring.push(i);
    expect(ring.items()).toEqual([5, 4, 3]);
  });
});

describe('glyphs', () => {
  test('gauges use eighth blocks, or # and . in ASCII mode', () => {
    expect(gaugeBar(0.5, 10, false)).toBe('█████     ');
    expect(gaugeBar(0.55, 10, false)).toBe('█████▌    ');
    expect(gaugeBar(0.5, 10, true)).toBe('#####.....');
    expect(gaugeBar(undefined, 4, true)).toBe('....');
    expect(gaugeBar(7, 4, false)).toBe('████');
  });

  test('sparklines scale to the max and right-align', () => {
    expect(sparkline([0, 50, 100], 5, false, 100)).toBe('  ▁▅█');
    expect(sparkline([0, 1], 3, true, 1)).toBe(' _#');
  });

  test('ASCII when asked, on linux/dumb terminals, or without a UTF-8 locale', () => {
    expect(shouldUseAscii({ LANG: 'en_US.UTF-8', TERM: 'xterm' }, false)).toBe(false);
    expect(shouldUseAscii({ LANG: 'en_US.UTF-8', TERM: 'xterm' }, true)).toBe(true);
    expect(shouldUseAscii({ LANG: 'en_US.UTF-8', TERM: 'linux' }, false)).toBe(true);
    expect(shouldUseAscii({ LANG: 'C', TERM: 'xterm' }, false)).toBe(true);
    expect(shouldUseAscii({ LC_ALL: 'C.utf8', LANG: 'C', TERM: 'xterm' }, false)).toBe(false);
  });
});
