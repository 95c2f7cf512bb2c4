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

  test('a request line is never shown as a verdict; its decision row carries its method and path', () => {
    const store = new TuiStore({ batchMs: 1000 });
    store.pushAll(fixture('network'));
    store.flush();
    const history = store.getSnapshot().network.history;
    expect(history.map((r) => `${r.verdict} ${r.host} ${r.method} ${r.path}`)).toEqual([
      'allow github.com CONNECT -',
      'deny 169.254.169.254 GET /latest/meta-data/',
      'allow registry.npmjs.org GET /left-pad',
    ]);
    store.dispose();
  });

  test('requests inside an admitted TLS tunnel are listed; a method/path refusal replaces its row', () => {
    const store = new TuiStore({ batchMs: 1000 });
    const inner = (id: string, method: string, path: string) => ({ kind: 'net.request', id, method, host: 'api.github.com', port: 443, path, binary: '/usr/bin/git', tunnelled: true, tls: true });
    store.push(inner('r-7', 'GET', '/repos/x'));
    store.push(inner('r-8', 'DELETE', '/repos/x'));
    store.push({ kind: 'net.decision', id: 'r-8', action: 'deny', error: 'policy_denied', reason: 'DELETE is not allowed', host: 'api.github.com', port: 443, method: 'DELETE', path: '/repos/x', binary: '/usr/bin/git', rule: 'github/0', l7: true });
    store.flush();
    expect(store.getSnapshot().network.history.map((r) => `${r.verdict} ${r.method} ${r.path} ${r.rule !== '-' ? r.rule : r.reason}`)).toEqual([
      'deny DELETE /repos/x github/0',
      'allow GET /repos/x in an admitted TLS tunnel',
    ]);
    store.dispose();
  });

  test("an operator's decision row names the request, who decided and after how long", () => {
    const store = new TuiStore({ batchMs: 1000 });
    store.pushAll(fixture('network'));
    store.push({ kind: 'approval.decision', ts: '2026-11-22T10:00:00Z', id: 'p-1', pending_id: 'p-1', decision: 'once', by: 'tui', latency_ms: 4200, host: 'api.example.test', port: 8443 });
    store.push({ kind: 'approval.decision', ts: '2026-11-22T10:00:01Z', id: 'p-2', pending_id: 'p-2', decision: 'deny', by: 'timeout', reason: 'approval_timeout', latency_ms: 120000, host: 'telemetry.vendor.test', port: 443 });
    store.flush();
    const [timedOut, once] = store.getSnapshot().network.history;
    expect(once).toMatchObject({ verdict: 'once', method: 'POST', path: '/v1/upload', reason: 'by tui after 4.2 s' });
    expect(timedOut).toMatchObject({ verdict: 'timeout', method: 'CONNECT', reason: 'by timeout after 120.0 s' });
    expect(store.getSnapshot().network.held).toHaveLength(0);
    store.dispose();
  });

  test('tokens/min counts the tokens of the last minute; a burst is not extrapolated', () => {
    const store = new TuiStore({ batchMs: 1000 });
    const update = (ts: string, tokens: number) => ({ kind: 'budget.update', ts, hour: { caps: { tokens: 20000 }, used: { tokens, usd: 0 } }, day: { caps: {}, used: { tokens, usd: 0 } } });
    // 11 calls of ~2k tokens within half a second.
    for (let i = 0; i <= 10; i++) store.push(update(`2026-11-22T10:00:00.${String(i * 50).padStart(3, '0')}Z`, 100 + i * 2000));
    store.flush();
    expect(store.getSnapshot().meters.budget?.tokensPerMin).toBe(20000);
    // Two minutes later, 600 more tokens over the last two minutes: 300 per minute.
    store.push(update('2026-11-22T10:02:00.500Z', 20700));
    store.flush();
    expect(store.getSnapshot().meters.budget?.tokensPerMin).toBe(300);
    // The window resets: usage restarts, and so does the count.
    store.push(update('2026-11-22T11:00:01.000Z', 50));
    store.push(update('2026-11-22T11:00:31.000Z', 450));
    store.flush();
    expect(store.getSnapshot().meters.budget?.tokensPerMin).toBe(400);
    store.dispose();
  });

  test('a budget snapshot from the control API keeps the tokens/min rate derived from live updates', () => {
    const store = new TuiStore({ batchMs: 1000 });
    store.pushAll(fixture('meters'));
    store.flush();
    const rate = store.getSnapshot().meters.budget?.tokensPerMin;
    expect(rate).toBeGreaterThan(0);
    store.setBudget({ hour: { caps: { tokens: 150000 }, used: { tokens: 42000, usd: 1.25 } }, day: { caps: { tokens: 1000000 }, used: { tokens: 42000, usd: 1.25 } } });
    expect(store.getSnapshot().meters.budget).toMatchObject({ tokensPerMin: rate, windows: [{ window: 'hour', tokensCap: 150000 }, { window: 'day' }] });
    store.dispose();
  });

  test('a backlog that spans a restart ends in the state of the newest start', () => {
    const store = new TuiStore({ batchMs: 1000 });
    store.push({ kind: 'sandbox.lifecycle', action: 'supervisor.start' });
    store.push({ kind: 'sandbox.lifecycle', action: 'supervisor.stop', reason: 'shutdown requested' });
    store.push({ kind: 'sandbox.lifecycle', action: 'supervisor.start' });
    store.flush();
    expect(store.getSnapshot().header.state).toBe('running');
    store.dispose();
  });

  test('audited minute summaries (what a backlog replays) fill the meters until live samples come', () => {
    const store = new TuiStore({ batchMs: 1000 });
    store.push({ kind: 'proc.sample', id: 'proc', summary: { window_ms: 60019, samples: 3, cpu_avg_pct: 12.5, cpu_max_pct: 40, rss_max_bytes: 11841536, pids_max: 2 } });
    store.push({ kind: 'gpu.sample', id: 'gpu', summary: { window_ms: 60000, samples: 60, gpus: [{ index: 0, uuid: 'GPU-0', name: 'NVIDIA H100', util_gpu_avg_pct: 30, mem_used_max_mib: 4096, mem_total_mib: 81920, temp_max_c: 40 }] } });
    store.flush();
    const m = store.getSnapshot().meters;
    expect(m.proc).toMatchObject({ cpu: 12.5, rss: 11841536, pids: 2 });
    expect(m.gpus[0]?.reading).toMatchObject({ util: 0.3, memUsed: 4096, memTotal: 81920, temp: 40 });
    store.dispose();
  });

  test('a sandboxed command shows its command line and exit code in the agent tail', () => {
    const store = new TuiStore({ batchMs: 1000 });
    store.push({ kind: 'sandbox.lifecycle', id: 's-1', phase: 'starting', role: 'exec', command: ['curl', '-s', 'http://x.test/'] });
    store.push({ kind: 'sandbox.lifecycle', id: 's-1', phase: 'exited', role: 'exec', code: 0, exit_code: 0 });
    store.flush();
    expect(store.getSnapshot().agent.map((r) => `${r.stream} ${r.line}`)).toEqual(['exec exited (exit 0)', 'exec starting: curl -s http://x.test/']);
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

describe('a scoped decision in its row (issue 16)', () => {
  test('says the rule is wider than the row, and until when a time-boxed one lasts', async () => {
    const { netRowFromEvent } = await import('../../components/selectors.js');
    const row = netRowFromEvent({ kind: 'approval.decision', ts: '2026-12-03T12:00:00.000Z', seq: 9, id: 'p-1', pending_id: 'p-1', decision: 'always', by: 'tui', latency_ms: 1200, host: 'api.github.com', port: 443, rule_host: '*.github.com', rule_port: 'any', rule_expires_at: '2026-12-03T12:15:00.000Z', rule_lasts: 'timed' });
    expect(row.verdict).toBe('always');
    expect(row.reason).toBe('by tui after 1.2 s; rule *.github.com:*; until 12:15:00');
  });
});
