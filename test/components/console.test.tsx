/**
 * Issue 16, the operator's console: the cursor follows a request, deny with a reason, never miss a
 * hold (bell, title, notification, the too-small screen, time left), keys read together, one row
 * per request. Driven through the real App with ink-testing-library's fake terminal.
 */
import { afterEach, describe, expect, test } from 'vitest';
import type { TuiEvent } from '../../components/selectors.js';
import { BEL } from '../../components/terminal-signals.js';
import { FakeClient, fixture, KEYS, renderApp, rowsOf, settle, type Harness } from './harness.js';

let h: Harness | undefined;
afterEach(() => {
  h?.cleanup();
  h = undefined;
});

const held = (pid: string, host: string, sec: number, extra: Record<string, unknown> = {}): TuiEvent => ({
  kind: 'net.held',
  ts: `2026-11-22T09:59:${String(sec).padStart(2, '0')}.000Z`,
  id: `r-${pid}`,
  pending_id: pid,
  joined: false,
  host,
  port: 443,
  binary: '/usr/bin/curl',
  request: `GET /${host}`,
  timeout_s: 120,
  ...extra,
});

/** Another shell (the CLI) decides: the supervisor drops it from pending and emits the decision. */
async function decidedElsewhere(t: Harness, pid: string, decision = 'deny'): Promise<void> {
  const p = t.client.pendingList.find((x) => x.id === pid)!;
  t.client.pendingList = t.client.pendingList.filter((x) => x.id !== pid);
  await t.feed([{ kind: 'approval.decision', ts: '2026-11-22T09:59:59.500Z', id: pid, pending_id: pid, decision, by: 'cli', latency_ms: 1200, host: p.host, port: p.port }]);
}

/** Wait until the frame satisfies `ok` (keys of one read are handled one per render). */
async function until(t: Harness, ok: (frame: string) => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!ok(t.frame()) && Date.now() < end) await settle(20);
  await settle(50);
}

/** The Network row the cursor is on. */
function cursorRow(t: Harness): string {
  return rowsOf(t.frame()).find((l) => l.includes('› ')) ?? '';
}

async function threeHeld(columns = 120, rows = 40): Promise<Harness> {
  h = await renderApp({ columns, rows });
  await h.feed([held('p-1', 'alpha.test', 10), held('p-2', 'bravo.test', 20), held('p-3', 'charlie.test', 30)]);
  return h;
}

describe('the cursor follows a request, not a row position', () => {
  test('cursor on bravo; another shell denies alpha; the cursor stays on bravo and a approves bravo', async () => {
    const t = await threeHeld();
    await t.press('j');
    expect(cursorRow(t)).toContain('bravo.test:443');
    await decidedElsewhere(t, 'p-1');
    expect(t.frame()).not.toContain('HELD      alpha.test');
    expect(cursorRow(t)).toContain('bravo.test:443');
    await t.press('a');
    expect(t.client.decisions).toEqual([{ id: 'p-2', decision: 'once' }]);
    expect(t.frame()).toContain('approved once: bravo.test:443');
  });

  test('rows arriving above the cursor do not move it off its request', async () => {
    const t = await threeHeld();
    await t.press('j', 'j');
    expect(cursorRow(t)).toContain('charlie.test');
    // An older request (held earlier, listed first) and history rows arrive.
    await t.feed([held('p-0', 'zulu.test', 5), ...fixture('network')]);
    expect(cursorRow(t)).toContain('charlie.test');
    await t.press('s');
    expect(t.client.decisions).toEqual([{ id: 'p-3', decision: 'session' }]);
  });

  test('when the request under the cursor is decided elsewhere, the next key only says so; pressing again acts', async () => {
    const t = await threeHeld();
    await t.press('j');
    await decidedElsewhere(t, 'p-2');
    // The cursor is on the row that took bravo's place.
    expect(cursorRow(t)).toContain('charlie.test');
    await t.press('a');
    expect(t.client.decisions).toEqual([]);
    expect(t.frame()).toContain('selection changed — now charlie.test:443; press a again');
    await t.press('a');
    expect(t.client.decisions).toEqual([{ id: 'p-3', decision: 'once' }]);
  });

  test('the same holds for d and A, and after a request times out', async () => {
    const t = await threeHeld();
    await t.press('j');
    t.client.pendingList = t.client.pendingList.filter((x) => x.id !== 'p-2');
    await t.feed([{ kind: 'approval.decision', id: 'p-2', pending_id: 'p-2', decision: 'deny', reason: 'approval_timeout', by: 'timeout', host: 'bravo.test', port: 443 }]);
    await t.press('d');
    expect(t.frame()).toContain('selection changed');
    expect(t.frame()).not.toContain('Deny charlie.test');
    await t.press('d');
    expect(t.frame()).toContain('Deny charlie.test:443?');
    await t.press(KEYS.escape);
    expect(t.client.decisions).toEqual([]);
  });

  test('a key repeated in one read (aa) decides one request, never the next one too', async () => {
    const t = await threeHeld();
    t.stdin.write('aaa');
    await settle(200);
    expect(t.client.decisions).toEqual([{ id: 'p-1', decision: 'once' }]);
    // A later, separate key press is told first that the row changed (alpha left from under it).
    await t.press('a');
    expect(t.client.decisions).toHaveLength(1);
    expect(t.frame()).toContain('selection changed — now bravo.test:443');
  });
});

describe('deny with a reason', () => {
  test('d asks for a reason; it is typed, edited and sent with the deny; Esc cancels', async () => {
    const t = await threeHeld();
    await t.press('d');
    let f = t.frame();
    expect(f).toContain('Deny alpha.test:443?');
    expect(f).toContain('Reason (optional; written to the audit log and sent to the agent in the refusal)');
    expect(rowsOf(f).at(-1)).toContain('type a reason (optional)  ⏎ deny  Esc cancel');
    // y and n are text here, not answers.
    await t.press('n', 'o', 't', ' ', 'y', 'e', 't', 'x', KEYS.backspace);
    expect(t.frame()).toContain('> not yet_');
    expect(t.client.decisions).toEqual([]);
    await t.press(KEYS.enter);
    expect(t.client.decisions).toEqual([{ id: 'p-1', decision: 'deny', reason: 'not yet' }]);
    expect(t.frame()).toContain('denied: alpha.test:443 (reason: not yet)');

    await t.press('g', 'd', 'x', KEYS.escape);
    expect(t.client.decisions).toHaveLength(1);
    expect(t.frame()).toContain('▶1 Network');
  });

  test('a pasted reason is taken as text (bracketed paste), escape sequences in it are not', async () => {
    const t = await threeHeld();
    await t.press('d');
    t.stdin.write('\u001B[200~exfil\u001B[31m risk\u001B[201~');
    await settle(100);
    expect(t.frame()).toContain('> exfil [31m risk_');
    await t.press(KEYS.enter);
    expect(t.client.decisions).toEqual([{ id: 'p-1', decision: 'deny', reason: 'exfil [31m risk' }]);
  });

  test('a paste outside a text field decides nothing', async () => {
    const t = await threeHeld();
    t.stdin.write('\u001B[200~aaasd\u001B[201~');
    await settle(100);
    expect(t.client.decisions).toEqual([]);
    expect(t.frame()).toContain('pasted text ignored');
  });

  test('a request decided elsewhere while its deny dialog is open is not sent; the dialog says nothing was', async () => {
    const t = await threeHeld();
    await t.press('d', 'x');
    await decidedElsewhere(t, 'p-1', 'once');
    await t.press(KEYS.enter);
    expect(t.client.decisions).toEqual([]);
    expect(t.frame()).toContain('alpha.test:443 was decided elsewhere or timed out meanwhile; nothing sent');
  });

  test('an empty reason denies without one', async () => {
    const t = await threeHeld();
    await t.press('d', ' ', KEYS.enter);
    expect(t.client.decisions).toEqual([{ id: 'p-1', decision: 'deny' }]);
  });
});

describe('never miss a hold', () => {
  test('a new held request rings the bell and sets the window title; the title is restored when none is held and on exit', async () => {
    h = await renderApp({ columns: 120, rows: 40 });
    const t = h;
    await t.feed([held('p-1', 'alpha.test', 10)]);
    expect(t.signals.join('')).toContain(BEL);
    expect(t.signals.join('')).toContain('\u001b[22;0t'); // the old title pushed first
    expect(t.signals.at(-1)).toBe('\u001b]0;⏸ 1 held — nemoclaw-tui\u0007');
    const bells = () => t.signals.filter((s) => s === BEL).length;
    expect(bells()).toBe(1);
    // A request that joins the held one is not a new hold; its count is not a new title either.
    await t.feed([held('p-1', 'alpha.test', 11, { joined: true, id: 'r-x' })]);
    expect(bells()).toBe(1);
    await settle(1000);
    await t.feed([held('p-2', 'bravo.test', 20)]);
    expect(bells()).toBe(2);
    expect(t.signals.at(-1)).toBe('\u001b]0;⏸ 2 held — nemoclaw-tui\u0007');
    await t.press('a');
    expect(t.signals.at(-1)).toBe('\u001b]0;⏸ 1 held — nemoclaw-tui\u0007');
    await t.press('j', 'a');
    expect(t.client.decisions).toHaveLength(2);
    expect(t.signals.at(-1)).toBe('\u001b]0;nemoclaw-tui\u0007\u001b[23;0t');
    // Held again, then detach: the title is given back on exit too.
    await t.feed([held('p-3', 'charlie.test', 30)]);
    expect(t.signals.at(-1)).toBe('\u001b]0;⏸ 1 held — nemoclaw-tui\u0007');
    t.instance.unmount();
    await settle();
    expect(t.signals.at(-1)).toBe('\u001b]0;nemoclaw-tui\u0007\u001b[23;0t');
    // No signal is ever in a frame.
    expect(t.term.frames.join('')).not.toContain(BEL);
  });

  test('--notify adds a desktop notification per new hold (OSC 9, or OSC 777; wrapped for tmux); off by default', async () => {
    h = await renderApp({ columns: 120, rows: 40 });
    await h.feed([held('p-1', 'alpha.test', 10)]);
    expect(h.signals.join('')).not.toContain('\u001b]9;');
    h.cleanup();
    h = await renderApp({ columns: 120, rows: 40, signals: { notify: 'osc9', name: 'demo' } });
    await h.feed([held('p-1', 'evil\u0007.test;x', 10)]);
    const osc9 = h.signals.find((s) => s.startsWith('\u001b]9;'));
    expect(osc9).toBe('\u001b]9;nemoclaw-tui (demo): request held: evil .test,x:443 from /usr/bin/curl is waiting for a decision\u0007');
    h.cleanup();
    h = await renderApp({ columns: 120, rows: 40, signals: { notify: 'osc777', tmux: true } });
    await h.feed([held('p-1', 'alpha.test', 10)]);
    expect(h.signals.find((s) => s.startsWith('\u001bPtmux;'))).toBe(
      '\u001bPtmux;\u001b\u001b]777;notify;nemoclaw-tui: request held;alpha.test:443 from /usr/bin/curl is waiting for a decision\u0007\u001b\\',
    );
  });

  test('held rows show the time left before they time out, not their age', async () => {
    h = await renderApp({ columns: 120, rows: 40 });
    await h.feed(fixture('network'));
    const f = h.frame();
    expect(f).toContain('TIME/LEFT');
    // held at 09:59:20 with a 120 s timeout; the clock says 10:00:00
    expect(f).toMatch(/1m20s left\s+HELD\s+api\.example\.test:8443/);
    expect(f).toMatch(/1m40s left\s+HELD×2\s+telemetry\.vendor\.test/);
  });

  test('the too-small screen shows the held count, the request the keys act on, and the keys, which work there', async () => {
    h = await renderApp({ columns: 60, rows: 20 });
    await h.feed([held('p-1', 'alpha.test', 10), held('p-2', 'bravo.test', 20)]);
    let f = h.frame();
    expect(f).toContain('Terminal too small: 60x20');
    expect(f).toContain('⏸ 2 held · › alpha.test:443');
    expect(f).toContain('a approve  s session');
    await h.press('j');
    expect(h.frame()).toContain('› bravo.test:443');
    await h.press('d');
    expect(h.frame()).toContain('Deny bravo.test:443? reason: _');
    await h.press('n', 'o', KEYS.enter);
    expect(h.client.decisions).toEqual([{ id: 'p-2', decision: 'deny', reason: 'no' }]);
    f = h.frame();
    expect(f).toContain('⏸ 1 held');
    expect(rowsOf(f)).toHaveLength(20);
  });
});

describe('keys that arrive together in one read', () => {
  test('jj moves two rows, j⏎ moves and opens the detail, arrows and letters mixed', async () => {
    const t = await threeHeld();
    t.stdin.write('jj');
    await settle(150);
    expect(cursorRow(t)).toContain('charlie.test');
    t.stdin.write('kk');
    await settle(150);
    expect(cursorRow(t)).toContain('alpha.test');
    t.stdin.write('j\r');
    await settle(150);
    expect(t.frame()).toContain('Held request bravo.test:443');
    t.stdin.write('\u001b');
    await settle(150);
    t.stdin.write('\u001b[B\u001b[A\u001b[B');
    await settle(150);
    expect(cursorRow(t)).toContain('charlie.test');
  });

  test('a held-down j (many in one read) moves as many rows; /text⏎ filters as typed', async () => {
    h = await renderApp({ columns: 120, rows: 40 });
    await h.feed([...fixture('network'), held('p-9', 'alpha.test', 10)]);
    h.stdin.write('jjjjjjjjjjjjjjjjjjjj');
    await until(h, () => cursorRow(h!).includes('registry.npmjs.org'));
    expect(cursorRow(h)).toContain('registry.npmjs.org');
    h.stdin.write('gg/alpha\r');
    await until(h, (f) => f.includes('/alpha') && rowsOf(f).at(-1)!.includes('a approve'));
    expect(h.frame()).toContain('/alpha');
    expect(h.frame()).not.toContain('github.com');
    expect(h.client.decisions).toEqual([]);
  });
});

describe('one row per request in the Network list', () => {
  test('a decision and what became of its request share one row; approved-then-failed reads "failed"', async () => {
    const client = new FakeClient();
    h = await renderApp({ columns: 200, rows: 50, client });
    await h.feed(fixture('network'));
    await h.press('a');
    expect(client.decisions).toEqual([{ id: 'p-1', decision: 'once' }]);
    await h.feed([
      { kind: 'approval.decision', ts: '2026-11-22T10:00:01.000Z', seq: 80, id: 'p-1', pending_id: 'p-1', decision: 'once', by: 'tui', latency_ms: 41000, host: 'api.example.test', port: 8443, binary: '/usr/bin/curl' },
      { kind: 'net.decision', ts: '2026-11-22T10:00:01.100Z', seq: 81, id: 'r-3', action: 'deny', error: 'ssrf_denied', reason: 'api.example.test cannot resolve', host: 'api.example.test', port: 8443, binary: '/usr/bin/curl', pending_id: 'p-1' },
    ]);
    // History rows of the Network pane (not the flash line in the footer).
    const rowsFor = (host: string) => rowsOf(h!.frame()).filter((l) => /^[› ] \d\d:\d\d:\d\d /.test(l) && l.includes(host));
    const historyRow = (host: string) => h!.store.getSnapshot().network.history.filter((r) => r.host === host);
    expect(rowsFor('api.example.test:8443')).toHaveLength(1);
    expect(rowsFor('api.example.test:8443')[0]).toMatch(/failed\s+api\.example\.test:8443\s+\/usr\/bin\/curl\s+POST\s+\/v1\/upl/);
    expect(historyRow('api.example.test')).toHaveLength(1);
    expect(historyRow('api.example.test')[0]!.reason).toBe('once by tui after 41.0 s, then: api.example.test cannot resolve');

    // Both waiters of p-2 (r-4, r-5) and the operator's deny: one row.
    await h.press('a');
    expect(h.frame()).toContain('selection changed');
    await h.press('d', 'n', 'o', KEYS.enter);
    expect(client.decisions.at(-1)).toEqual({ id: 'p-2', decision: 'deny', reason: 'no' });
    await h.feed([
      { kind: 'approval.decision', ts: '2026-11-22T10:00:02.000Z', seq: 82, id: 'p-2', pending_id: 'p-2', decision: 'deny', by: 'tui', reason: 'no', latency_ms: 22000, host: 'telemetry.vendor.test', port: 443 },
      { kind: 'net.decision', ts: '2026-11-22T10:00:02.001Z', seq: 83, id: 'r-4', action: 'deny', error: 'policy_denied', reason: 'denied by operator: no (deny by tui)', host: 'telemetry.vendor.test', port: 443, pending_id: 'p-2' },
      { kind: 'net.decision', ts: '2026-11-22T10:00:02.002Z', seq: 84, id: 'r-5', action: 'deny', error: 'policy_denied', reason: 'denied by operator: no (deny by tui)', host: 'telemetry.vendor.test', port: 443, pending_id: 'p-2' },
    ]);
    const tele = rowsFor('telemetry.vendor.test:443');
    expect(tele).toHaveLength(1);
    expect(tele[0]).toMatch(/deny\s+telemetry\.vendor\.test:443/);
    expect(historyRow('telemetry.vendor.test')).toMatchObject([{ verdict: 'deny', reason: 'by tui after 22.0 s: no' }]);
  });

  test('the cursor stays on a history row while its request is updated', async () => {
    h = await renderApp({ columns: 200, rows: 50 });
    await h.feed([held('p-1', 'alpha.test', 10), { kind: 'approval.decision', id: 'p-1', pending_id: 'p-1', decision: 'once', by: 'cli', host: 'alpha.test', port: 443 }]);
    h.client.pendingList = [];
    await h.feed([held('p-2', 'bravo.test', 20)]);
    await h.press('G');
    expect(cursorRow(h)).toMatch(/once\s+alpha\.test:443/);
    await h.feed([{ kind: 'net.decision', id: 'r-p-1', action: 'allow', reason: 'approved by operator', host: 'alpha.test', port: 443, pending_id: 'p-1', rule: null }]);
    expect(cursorRow(h)).toMatch(/once\s+alpha\.test:443/);
    expect(rowsOf(h.frame()).filter((l) => l.includes('alpha.test:443'))).toHaveLength(1);
  });
});
