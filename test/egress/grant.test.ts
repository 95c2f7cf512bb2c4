/** The rule a scoped decision writes (egress/grant.ts, issue 16): exactly the scope chosen. */
import { describe, expect, it } from 'vitest';
import { decisionFor, domainGlob, parseLasts, ruleForDecision } from '../../src/egress/grant.js';
import { decisionFromOptions } from '../../src/cli/commands/approvals.js';

const entry = { host: 'api.github.com', port: 443, binary: '/usr/bin/curl' as string | null };

describe('scoped decisions', () => {
  it('defaults: an allow names the binary, a deny covers any; host:port exactly; once and deny write nothing', () => {
    expect(ruleForDecision(entry, 'always')).toEqual({ action: 'allow', host: 'api.github.com', port: 443, binary: '/usr/bin/curl' });
    expect(ruleForDecision(entry, 'deny_always')).toEqual({ action: 'deny', host: 'api.github.com', port: 443 });
    expect(ruleForDecision({ ...entry, binary: null }, 'session')).toEqual({ action: 'allow', host: 'api.github.com', port: 443 });
    expect(ruleForDecision(entry, 'once', { host: 'domain' })).toBeUndefined();
    expect(ruleForDecision(entry, 'deny')).toBeUndefined();
  });

  it('any binary, any port, *.domain and a time box are written as chosen', () => {
    expect(ruleForDecision(entry, 'always', { binary: 'any', host: 'any_port' })).toEqual({ action: 'allow', host: 'api.github.com', port: 'any' });
    expect(ruleForDecision(entry, 'always', { binary: 'this', host: 'domain', expires_at: '2026-12-03T12:15:00.000Z' })).toEqual({
      action: 'allow',
      host: '*.github.com',
      port: 443,
      binary: '/usr/bin/curl',
      expires_at: '2026-12-03T12:15:00.000Z',
    });
    expect(ruleForDecision(entry, 'deny_always', { binary: 'this', session: true })).toEqual({ action: 'deny', host: 'api.github.com', port: 443, binary: '/usr/bin/curl' });
  });

  it('a scope that cannot cover the request is refused', () => {
    expect(() => ruleForDecision({ ...entry, binary: null }, 'always', { binary: 'this' })).toThrow(/no identified binary/);
    expect(() => ruleForDecision({ ...entry, host: '10.0.0.5' }, 'always', { host: 'domain' })).toThrow(/no domain/);
    expect(domainGlob('github.com')).toBeUndefined();
    expect(domainGlob('a.b.example.org')).toBe('*.b.example.org');
  });

  it('lifetimes: --for, and the decision each becomes', () => {
    expect(parseLasts('15m')).toEqual({ ms: 900_000 });
    expect(parseLasts('1h')).toEqual({ ms: 3_600_000 });
    expect(parseLasts('restart')).toBe('restart');
    expect(() => parseLasts('8d')).toThrow(/up to 7d/);
    expect(() => parseLasts('soon')).toThrow(/--for must be/);
    const now = Date.UTC(2026, 11, 3, 12, 0, 0);
    expect(decisionFor(true, { ms: 900_000 }, now)).toEqual({ decision: 'always', expires_at: '2026-12-03T12:15:00.000Z' });
    expect(decisionFor(false, 'restart', now)).toEqual({ decision: 'deny_always', session: true });
    expect(decisionFor(false, 'once', now)).toEqual({ decision: 'deny' });
  });

  it('the CLI options map to the same decision and scope as the chooser', () => {
    expect(decisionFromOptions(true, { for: '15m', scope: 'any-port', binary: 'any' })).toEqual({ decision: 'always', scope: { host: 'any_port', binary: 'any', duration_ms: 900_000 } });
    expect(decisionFromOptions(true, { session: true })).toEqual({ decision: 'session', scope: {} });
    expect(decisionFromOptions(false, { for: 'restart', scope: 'domain' })).toEqual({ decision: 'deny_always', scope: { host: 'domain', session: true } });
    expect(decisionFromOptions(false, {})).toEqual({ decision: 'deny', scope: {} });
    expect(() => decisionFromOptions(true, { scope: 'domain' })).toThrow(/one-time decision writes none/);
    expect(() => decisionFromOptions(true, { always: true, for: '1h' })).toThrow(/exclude each other/);
    expect(() => decisionFromOptions(true, { for: '1h', scope: 'everything' })).toThrow(/--scope must be/);
  });
});
