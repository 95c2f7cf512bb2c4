/** The rules view (`r`, issue 16): lists the operator's rules with a cursor; `x` asks, `y` removes. */
import { afterEach, describe, expect, test } from 'vitest';
import { FakeClient, NOW, renderApp, rowsOf, type Harness } from './harness.js';

let h: Harness | undefined;
afterEach(() => {
  h?.cleanup();
  h = undefined;
});

const RULES = [
  { id: 'r-0000aaaa', scope: 'overlay', action: 'allow', host: 'api.example.test', port: 443, binary: '/usr/bin/curl', expires_at: null, reason: 'always allow' },
  { id: 'r-0000bbbb', scope: 'overlay', action: 'allow', host: '*.github.com', port: 'any', binary: null, expires_at: new Date(NOW + 14 * 60_000 + 5_000).toISOString(), reason: null },
  { id: 's-0000cccc', scope: 'session', action: 'deny', host: 'evil.example', port: 80, binary: null, expires_at: null, reason: null },
];

describe('rules view', () => {
  test('r lists the rules at 80x24 with what they do and how long; x asks; y removes the one under the cursor', async () => {
    const client = new FakeClient();
    client.rulesList = [...RULES];
    h = await renderApp({ columns: 80, rows: 24, client });
    await h.press('r');
    let f = h.frame();
    expect(f).toContain('Operator rules (3)');
    const lines = rowsOf(f);
    expect(lines.find((l) => l.includes('r-0000aaaa'))).toMatch(/› r-0000aaaa\s+allow always\s+api\.example\.test:443 \/usr\/bin\/curl/);
    expect(lines.find((l) => l.includes('r-0000bbbb'))).toMatch(/allow 14m0\ds left\s+\*\.github\.com:\* any binary/);
    expect(lines.find((l) => l.includes('s-0000cccc'))).toMatch(/deny\s+until restart\s+evil\.example:80/);
    for (const l of lines) expect(l.length).toBeLessThanOrEqual(80);

    await h.press('j');
    await h.press('x');
    f = h.frame();
    expect(f).toContain('Remove rule r-0000bbbb?');
    expect(f).toContain('[y] remove');
    // n keeps it
    await h.press('n');
    expect(client.removedRules).toEqual([]);
    expect(h.frame()).toContain('Operator rules (3)');

    await h.press('x');
    await h.press('y');
    expect(client.removedRules).toEqual(['r-0000bbbb']);
    f = h.frame();
    expect(f).toContain('Operator rules (2)');
    expect(rowsOf(f).filter((l) => l.includes('r-0000bbbb'))).toEqual([expect.stringContaining('removed r-0000bbbb')]);
    await h.press('\u001B');
    expect(h.frame()).toContain('Network');
  });
});

describe('quarantine dialog', () => {
  test('Q asks with a reason field at 80x24, nothing cut; Enter sends it; Esc cancels', async () => {
    const client = new FakeClient();
    h = await renderApp({ columns: 80, rows: 24, client });
    await h.press('Q');
    let f = h.frame();
    for (const line of ['Quarantine the sandbox?', 'Stops the agent; refuses ALL egress and inference.', 'The workdir is kept as evidence. It holds across restarts:', '`up` is refused until `nemoclaw-tui quarantine release`.', '[⏎] quarantine  [Esc] cancel']) {
      expect(f).toContain(line);
    }
    for (const l of rowsOf(f)) expect(l.length).toBeLessThanOrEqual(80);
    await h.press('\u001B');
    expect(client.quarantines).toEqual([]);
    await h.press('Q');
    await h.press('b', 'a', 'd');
    f = h.frame();
    expect(f).toContain('> bad_');
    await h.press('\r');
    expect(client.quarantines).toEqual(['bad']);
  });
});
