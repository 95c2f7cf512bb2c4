import { afterEach, describe, expect, test } from 'vitest';
import { FakeClient, fixture, KEYS, renderApp, rowsOf, settle, type Harness } from './harness.js';

const ALL = () => [...fixture('agent'), ...fixture('inference'), ...fixture('filesystem'), ...fixture('network'), ...fixture('meters')];

let h: Harness | undefined;
afterEach(() => {
  h?.cleanup();
  h = undefined;
});

async function open(columns: number, rows: number, client?: FakeClient, ascii = false) {
  h = await renderApp({ columns, rows, client, ascii });
  await h.feed(ALL());
  return h;
}

function expectFits(frame: string, columns: number, rows: number) {
  const lines = rowsOf(frame);
  expect(lines).toHaveLength(rows);
  for (const l of lines) expect(l.length).toBeLessThanOrEqual(columns);
}

describe.each([
  [80, 24],
  [200, 50],
])('at %ix%i', (columns, rows) => {
  test('every pane renders from the recorded streams and the frame fills the terminal exactly', async () => {
    const { frame } = await open(columns, rows);
    const f = frame();
    expectFits(f, columns, rows);
    // header
    expect(f).toContain('demo │ agent running │ policy r4');
    expect(f).toContain('2 pending');
    // Network: held on top, then history
    const lines = rowsOf(f);
    const held = lines.findIndex((l) => l.includes('HELD') && l.includes('api.example.test:8443'));
    const allowed = lines.findIndex((l) => l.includes('github.com:443'));
    expect(held).toBeGreaterThan(0);
    expect(allowed).toBeGreaterThan(held);
    expect(f).toMatch(/HELD×2\s+telemetry\.vendor\.test/);
    expect(f).toMatch(/deny\s+169\.254\.169\.254:80/);
    // Filesystem
    expect(f).toContain('/etc/shadow');
    // Inference: requested → chosen
    expect(f).toContain('gpt-4o → local-nim/llama-3.1-8b');
    expect(f).toContain('email:2');
    expect(f).toContain('142ms');
    // Meters: gauges with the number printed
    expect(f).toMatch(/GPU0\s+[█▏▎▍▌▋▊▉]+\s+45%/);
    expect(f).toMatch(/GPU1\s+[█▏▎▍▌▋▊▉]+\s+92%/);
    expect(f).toContain('42k/100k');
    // Agent tail
    expect(f).toContain('openclaw: planning step 1 of 3');
    // footer: keys of the focused (Network) pane
    expect(lines.at(-1)).toContain('a approve');
  });
});

test('the wide layout shows every column (rule, errno, reason, VRAM, temperature)', async () => {
  const { frame } = await open(200, 50);
  const f = frame();
  expect(f).toContain('metadata/0');
  expect(f).toContain('EROFS');
  expect(f).toContain('read_only: /usr');
  expect(f).toContain('pii-stays-local');
  expect(f).toMatch(/VRAM0\s+█+.?\s+24\.0G\/80\.0G/);
  expect(f).toContain('52°C');
  expect(f).toContain('$1.25/$5.00');
});

describe('approvals through the control client', () => {
  test('a approves the selected held request once and it leaves the held list', async () => {
    const client = new FakeClient();
    client.pendingList = [
      { id: 'p-1', host: 'api.example.test', port: 8443, binary: '/usr/bin/curl', method: 'POST', path: '/v1/upload', held_at: '2026-11-22T09:59:20.000Z' },
      { id: 'p-2', host: 'telemetry.vendor.test', port: 443, held_at: '2026-11-22T09:59:40.000Z' },
    ];
    const t = await open(80, 24, client);
    await t.press('a');
    expect(client.decisions).toEqual([{ id: 'p-1', decision: 'once' }]);
    const f = t.frame();
    expect(f).not.toMatch(/HELD\s+api\.example\.test/);
    expect(f).toContain('approved once: api.example.test:8443');
    expect(f).toContain('1 pending');
  });

  test('j moves to the next held request; s, d and D send their decisions (d and D ask for a reason, Enter denies)', async () => {
    const t = await open(80, 24);
    await t.press('j', 's');
    expect(t.client.decisions).toEqual([{ id: 'p-2', decision: 'session' }]);
    await t.press('g', 'd');
    expect(t.frame()).toContain('Deny api.example.test:8443?');
    await t.press(KEYS.enter);
    expect(t.client.decisions.at(-1)).toEqual({ id: 'p-1', decision: 'deny' });
    expect(t.frame()).toContain('0 pending');
    await t.feed([{ kind: 'net.held', ts: '2026-11-22T09:59:59.000Z', pending_id: 'p-3', host: 'evil.test', port: 25 }]);
    // The cursor stayed on the row it was on; the new request is at the top.
    await t.press('g', 'D');
    expect(t.frame()).toContain('Always deny evil.test:25?');
    // always (5), then the host:port exactly (1); no binary was identified, so that step is skipped.
    await t.press('5');
    await t.press('1');
    expect(t.frame().replace(/[│╭╮╰╯─]/g, ' ').replace(/\s+/g, ' ')).toContain('Deny evil.test:25, any binary, always (until removed) — exactly this.');
    await t.press(KEYS.enter);
    expect(t.client.decisions.at(-1)).not.toMatchObject({ id: 'p-3' });
    await t.press('y');
    expect(t.client.decisions.at(-1)).toEqual({ id: 'p-3', decision: 'deny_always', scope: { binary: 'any', host: 'exact' } });
  });

  test('A opens the scope chooser; the summary names exactly the rule; only y sends it, with that scope', async () => {
    const t = await open(80, 24);
    await t.press('A');
    let f = t.frame();
    expect(f).toContain('Always allow api.example.test:8443?');
    expect(f).toContain('How long?');
    for (const item of ['1 this once (no rule)', '2 for 15 min', '3 for 1 h', '4 until the supervisor restarts', '5 always (until removed)']) expect(f).toContain(item);
    expectFits(f, 80, 24);
    await t.press(KEYS.escape);
    expect(t.client.decisions).toEqual([]);
    expect(t.frame()).toContain('▶1 Network');

    await t.press('A');
    await t.press('j');
    await t.press(KEYS.enter);
    f = t.frame();
    expect(f).toContain('Which programs?');
    expect(f).toContain('1 this binary: /usr/bin/curl');
    expect(f).toContain('2 any binary');
    await t.press('1');
    f = t.frame();
    expect(f).toContain('Which hosts?');
    expect(f).toContain('1 this host:port: api.example.test:8443');
    expect(f).toContain('2 this host, any port: api.example.test');
    expect(f).toContain('3 every host one label under example.test: *.example.test:8443');
    await t.press('2');
    f = t.frame();
    // The summary wraps in the dialog (nothing is cut): read it as one text.
    const flat = (text: string) => text.replace(/[│╭╮╰╯─]/g, ' ').replace(/\s+/g, ' ');
    expect(flat(f)).toContain('Allow api.example.test, any port, only /usr/bin/curl, for 15 min — exactly this.');
    expect(f).toMatch(/reported by \/proc, not proven/);
    expect(f).toContain('[y] allow exactly this');
    expectFits(f, 80, 24);
    await t.press('n');
    expect(t.client.decisions).toEqual([]);

    await t.press('A');
    for (const k of ['5', '2', '3']) await t.press(k);
    expect(flat(t.frame())).toContain('Allow *.example.test:8443, any binary, always (until removed) — exactly this.');
    await t.press('y');
    expect(t.client.decisions).toEqual([{ id: 'p-1', decision: 'always', scope: { binary: 'any', host: 'domain' } }]);
    expect(t.frame()).toContain('allowed (*.example.test:8443, any binary');
  });

  test('the chooser sends a time box as duration_ms and "until restart" as a session decision', async () => {
    const t = await open(80, 24);
    await t.press('A');
    for (const k of ['3', '1', '1', 'y']) await t.press(k);
    expect(t.client.decisions.at(-1)).toEqual({ id: 'p-1', decision: 'always', scope: { binary: 'this', host: 'exact', duration_ms: 3_600_000 } });
    await t.press('g', 'A');
    await t.press('1');
    expect(t.frame()).toContain('this once (no rule is written)');
    await t.press('y');
    expect(t.client.decisions.at(-1)).toMatchObject({ decision: 'once' });
    expect(t.client.decisions.at(-1)!.scope).toBeUndefined();
  });

  test('Esc and Alt-modified keys never decide', async () => {
    const t = await open(80, 24);
    await t.press(KEYS.escape, '\u001Ba', '\u001Bd', '\u001BA', KEYS.escape);
    expect(t.client.decisions).toEqual([]);
    expect(t.frame()).toContain('2 pending');
  });

  test('decision keys do nothing on a history row and say why', async () => {
    const t = await open(80, 24);
    await t.press('G', 'a');
    expect(t.client.decisions).toEqual([]);
    expect(t.frame()).toContain('select a held request first');
  });

  test('a failed decision is reported and the request stays held', async () => {
    const client = new FakeClient();
    client.failDecide = new Error('supervisor said 409: already decided');
    const t = await open(80, 24, client);
    await t.press('a');
    expect(t.frame()).toContain('could not record "approved once" for api.example.test:8443');
    expect(t.frame()).toContain('2 pending');
  });

  test('Enter opens a held request in detail; decisions work there; Esc goes back', async () => {
    const t = await open(80, 24);
    await t.press(KEYS.enter);
    let f = t.frame();
    expect(f).toContain('Held request api.example.test:8443');
    expect(f).toMatch(/pending_id\s+p-1/);
    await t.press(KEYS.escape);
    expect(t.frame()).toContain('▶1 Network');
    expect(t.client.decisions).toEqual([]);
    await t.press(KEYS.enter, 'a');
    expect(t.client.decisions).toEqual([{ id: 'p-1', decision: 'once' }]);
    f = t.frame();
    expect(f).toContain('▶1 Network');
  });
});

describe('navigation, dialogs and modes', () => {
  test('Tab, Shift-Tab and 1-5 move the focus and the footer follows', async () => {
    const t = await open(80, 24);
    await t.press(KEYS.tab);
    expect(t.frame()).toContain('▶2 Filesystem');
    expect(rowsOf(t.frame()).at(-1)).toContain('g/G newest/oldest');
    await t.press('3');
    expect(t.frame()).toContain('▶3 Meters');
    expect(rowsOf(t.frame()).at(-1)).toContain('b raise budget');
    await t.press(KEYS.shiftTab);
    expect(t.frame()).toContain('▶2 Filesystem');
    await t.press('5');
    expect(t.frame()).toContain('▶5 Agent');
    await t.press(KEYS.tab);
    expect(t.frame()).toContain('▶1 Network');
  });

  test('/ filters the focused list; Enter keeps the filter, Esc clears it', async () => {
    const t = await open(80, 24);
    await t.press('/', 'g', 'i', 't', 'h');
    expect(rowsOf(t.frame()).at(-1)).toContain('/gith_');
    await t.press(KEYS.enter);
    let f = t.frame();
    expect(f).toContain('github.com:443');
    expect(f).not.toContain('registry.npmjs.org');
    expect(f).not.toContain('api.example.test:8443');
    expect(f).toContain('/gith');
    await t.press(KEYS.escape);
    f = t.frame();
    expect(f).toContain('registry.npmjs.org');
  });

  test('? shows the help, Esc closes it', async () => {
    const t = await open(80, 24);
    await t.press('?');
    const f = t.frame();
    expect(f).toContain('Keys');
    expect(f).toContain('allow with a scope');
    expectFits(f, 80, 24);
    await t.press(KEYS.escape);
    expect(t.frame()).toContain('▶1 Network');
  });

  test('p shows the policy revision, its history and the effective YAML', async () => {
    const t = await open(200, 50);
    await t.press('p');
    const f = t.frame();
    expect(f).toContain('Policy revision r4');
    expect(f).toMatch(/r4\s+2026-11-22T09:56:03\s+approval\s+always allow api\.example\.test:8443/);
    expect(f).toContain('- host: github.com');
    await t.press(KEYS.escape);
    expect(t.frame()).toContain('▶1 Network');
  });

  test('b asks before raising the budget, y raises it through the client', async () => {
    const t = await open(80, 24);
    await t.press('b');
    expect(t.frame()).toContain('Raise the token budget?');
    await t.press('n');
    expect(t.client.budgetRaises).toBe(0);
    await t.press('b', 'y');
    expect(t.client.budgetRaises).toBe(1);
    expect(t.frame()).toContain('day budget raised to 150k tokens');
  });
});

describe('detaching', () => {
  test('q with held requests asks first; n stays, y detaches', async () => {
    const t = await open(80, 24);
    await t.press('q');
    expect(t.frame()).toContain('Detach with 2 held requests?');
    expect(t.frame()).toContain('keep running');
    await t.press('n');
    expect(t.detached()).toBe(0);
    await t.press('q', 'y');
    expect(t.detached()).toBe(1);
  });

  test('Ctrl-C behaves like q: asks with held requests, a second Ctrl-C detaches', async () => {
    const t = await open(80, 24);
    await t.press(KEYS.ctrlC);
    expect(t.frame()).toContain('Detach with 2 held requests?');
    await t.press(KEYS.ctrlC);
    expect(t.detached()).toBe(1);
  });

  test('q with nothing held detaches at once', async () => {
    h = await renderApp({ columns: 80, rows: 24 });
    await h.press('q');
    expect(h.detached()).toBe(1);
  });
});

test('below 80x24 it says so and waits; growing the terminal brings the panes back', async () => {
  const t = await open(60, 20);
  expect(t.frame()).toContain('Terminal too small: 60x20');
  expect(t.frame()).toContain('at least 80x24');
  // It still shows the held count, the request the keys act on, and the keys (issue 16).
  expect(t.frame()).toContain('2 held · › api.example.test:8443 /usr/bin/curl POST');
  expect(t.frame()).toContain('1m20s left');
  expect(t.frame()).toContain('a approve  s session');
  t.term.resize(80, 24);
  await settle();
  expectFits(t.frame(), 80, 24);
  expect(t.frame()).toContain('▶1 Network');
  t.term.resize(79, 24);
  await settle();
  expect(t.frame()).toContain('Terminal too small: 79x24');
});

test('ASCII mode draws gauges with # and . and no block characters', async () => {
  const t = await open(80, 24, undefined, true);
  const f = t.frame();
  expect(f).toMatch(/GPU0\s+#+\.+\s+45%/);
  expect(f).not.toMatch(/[█▏▎▍▌▋▊▉▁▂▃▄▅▆▇]/);
  expect(f).toContain('->');
});

test('losing the supervisor shows a banner and the UI reconnects', async () => {
  let calls = 0;
  class FlakyClient extends FakeClient {
    override follow(handlers: Parameters<FakeClient['follow']>[0], signal: AbortSignal): Promise<void> {
      calls++;
      if (calls === 1) return Promise.reject(new Error('connect ENOENT control.sock'));
      return super.follow(handlers, signal);
    }
  }
  h = await renderApp({ columns: 80, rows: 24, client: new FlakyClient() });
  expect(h.frame()).toContain('supervisor connection lost: connect ENOENT control.sock');
  expect(rowsOf(h.frame())).toHaveLength(24);
  await settle(700);
  expect(h.frame()).not.toContain('connection lost');
  expect(h.frame()).toContain('connected');
  expect(calls).toBe(2);
});

test('the Meters pane shows the workdir disk against its limit (issue 11), and "unlimited" without one', async () => {
  h = await renderApp({ columns: 200, rows: 50 });
  await h.feed([...ALL(), { kind: 'proc.sample', id: 'proc', total: { cpu_pct: 10, rss_bytes: 1024 ** 2, pids: 3 }, disk_mode: 'loop', disk_used_bytes: 63 * 1024 ** 2, disk_limit_bytes: 64 * 1024 ** 2 }]);
  expect(h.frame()).toMatch(/DISK\s+[█▏▎▍▌▋▊▉]+\s+63\.0M\/64\.0M/);
  await h.feed([{ kind: 'proc.sample', id: 'proc', total: { cpu_pct: 10, rss_bytes: 1024 ** 2, pids: 3 }, disk_mode: 'unlimited', disk_used_bytes: 5 * 1024 ** 3 }]);
  expect(h.frame()).toMatch(/DISK\s+.*unlimited/);
});
