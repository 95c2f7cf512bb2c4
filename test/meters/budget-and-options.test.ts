import { describe, expect, it } from 'vitest';
import type { AuditEvent, EventKind } from '../../src/audit/events.js';
import { BudgetMeter } from '../../src/meters/budget.js';
import { DEFAULT_INTERVAL_MS, metersOptionsFrom } from '../../src/meters/service.js';

let seq = 0;
function event(kind: EventKind, atMs: number, fields: Record<string, unknown>): AuditEvent {
  seq++;
  return {
    ts: new Date(atMs).toISOString(),
    seq,
    kind,
    level: 'info',
    sandbox: 's',
    id: String(seq),
    ocsf_class: 6003,
    prev_hash: 'p',
    hash: 'h',
    ...fields,
  };
}

const T0 = Date.parse('2026-11-22T10:00:00Z');
const snapshot = (dayTokens: number) => ({
  hour: { caps: { tokens: 100_000 }, used: { tokens: dayTokens, usd: 0 } },
  day: { caps: { tokens: 1_000_000 }, used: { tokens: dayTokens, usd: 0 } },
});

describe('budget meter', () => {
  it('shows nothing before the router reports', () => {
    expect(new BudgetMeter().status(T0)).toEqual({ latest: null, updated_at: null, tokens_per_min: null, tokens_per_min_source: null });
  });

  it('keeps the latest budget.update without the event envelope', () => {
    const m = new BudgetMeter();
    m.observe(event('budget.update', T0, snapshot(100)));
    m.observe(event('budget.update', T0 + 1000, snapshot(250)));
    const s = m.status(T0 + 2000);
    expect(s.latest).toEqual(snapshot(250));
    expect(s.updated_at).toBe(new Date(T0 + 1000).toISOString());
  });

  it("uses the router's own tokens per minute when it gives one", () => {
    const m = new BudgetMeter();
    m.observe(event('budget.update', T0, { ...snapshot(10), tokens_per_minute: 4321 }));
    expect(m.status(T0)).toMatchObject({ tokens_per_min: 4321, tokens_per_min_source: 'router' });
  });

  it('counts tokens per minute from inference.done over the last 60 s', () => {
    const m = new BudgetMeter();
    // The privacy router's shape (src/inference/router.ts).
    m.observe(event('inference.done', T0, { prompt_tokens: 1000, completion_tokens: 200 }));
    m.observe(event('inference.done', T0 + 30_000, { usage: { input_tokens: 700, output_tokens: 100 } }));
    m.observe(event('inference.done', T0 + 50_000, { model: 'x' }));
    expect(m.status(T0 + 55_000)).toMatchObject({ tokens_per_min: 2000, tokens_per_min_source: 'inference.done' });
    // The first call falls out of the window.
    expect(m.status(T0 + 61_000).tokens_per_min).toBe(800);
  });

  it('otherwise derives tokens per minute from the growth of used tokens, ignoring window resets', () => {
    const m = new BudgetMeter();
    m.observe(event('budget.update', T0, snapshot(1000)));
    m.observe(event('budget.update', T0 + 10_000, snapshot(1600)));
    m.observe(event('budget.update', T0 + 20_000, snapshot(100))); // day window reset
    m.observe(event('budget.update', T0 + 30_000, snapshot(400)));
    expect(m.status(T0 + 40_000)).toMatchObject({ tokens_per_min: 900, tokens_per_min_source: 'budget.update' });
  });
});

describe('meter options', () => {
  const base = { unsafeAllowLoopbackUpstreams: false };

  it('defaults to 1 Hz', () => {
    const { options, warnings } = metersOptionsFrom(base, {});
    expect(options.intervalMs).toBeUndefined();
    expect(warnings).toEqual([]);
    expect(DEFAULT_INTERVAL_MS).toBe(1000);
  });

  it('takes NEMOCLAW_METER_INTERVAL_MS and NEMOCLAW_NVIDIA_SMI from the environment', () => {
    const { options } = metersOptionsFrom(base, { NEMOCLAW_METER_INTERVAL_MS: '250', NEMOCLAW_NVIDIA_SMI: '/opt/nv/nvidia-smi' });
    expect(options.intervalMs).toBe(250);
    expect(options.nvidiaSmi).toBe('/opt/nv/nvidia-smi');
  });

  it('service options win over the environment', () => {
    const { options } = metersOptionsFrom({ ...base, meters: { intervalMs: 2000 } }, { NEMOCLAW_METER_INTERVAL_MS: '250' });
    expect(options.intervalMs).toBe(2000);
  });

  it('refuses nonsense intervals with a warning instead of crashing or spinning', () => {
    const bad = metersOptionsFrom(base, { NEMOCLAW_METER_INTERVAL_MS: 'fast' });
    expect(bad.options.intervalMs).toBeUndefined();
    expect(bad.warnings[0]).toContain('NEMOCLAW_METER_INTERVAL_MS="fast"');
    const tiny = metersOptionsFrom(base, { NEMOCLAW_METER_INTERVAL_MS: '5' });
    expect(tiny.options.intervalMs).toBe(100);
    expect(tiny.warnings[0]).toContain('below 100 ms');
  });
});
