/** `rules list [--json]` and `rules rm ID` against a real supervisor (issue 16), through the built bin. */
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { makeTempHome, runCli, startTestSupervisor, type TempHome, type TestSupervisor } from '../helpers/supervisor.js';
import { sandboxPaths } from '../../src/shared/home.js';

let home: TempHome;
let sup: TestSupervisor;
const later = new Date(Date.now() + 3_600_000).toISOString();

beforeAll(async () => {
  home = await makeTempHome('nct-rules-');
  const paths = sandboxPaths('default', home.dir);
  await mkdir(dirname(paths.overlayFile), { recursive: true, mode: 0o700 });
  await writeFile(
    paths.overlayFile,
    [
      'version: 1',
      'rules:',
      '  - { action: allow, host: api.example.com, port: 443, binary: /usr/bin/curl, author: approval, reason: always allow api.example.com:443 for /usr/bin/curl }',
      `  - { action: allow, host: "*.github.com", port: any, expires_at: "${later}", author: approval }`,
      '',
    ].join('\n'),
  );
  sup = await startTestSupervisor({ home: home.dir });
}, 30_000);

afterAll(async () => {
  await sup?.stop();
  await home?.cleanup();
});

describe('rules list / rm', () => {
  it('lists the overlay rules with id, scope and time left; --json gives the same rules', async () => {
    const text = await runCli(['rules', 'list'], { home: home.dir });
    expect(text.code, text.stderr).toBe(0);
    const lines = text.stdout.split('\n');
    expect(lines[0]).toMatch(/^ID\s+ACTION\s+HOST:PORT\s+BINARY\s+LASTS\s+REASON/);
    expect(lines.find((l) => l.includes('api.example.com'))).toMatch(/^r-[0-9a-f]{8}\s+allow\s+api\.example\.com:443\s+\/usr\/bin\/curl\s+always\s+always allow/);
    expect(lines.find((l) => l.includes('github'))).toMatch(/^r-[0-9a-f]{8}\s+allow\s+\*\.github\.com:\*\s+any\s+(59m \d+s|1h 0m) left/);
    expect(text.stdout).toContain('remove one with `nemoclaw-tui rules rm ID`');

    const json = await runCli(['rules', 'list', '--json'], { home: home.dir });
    const rules = JSON.parse(json.stdout) as Array<Record<string, unknown>>;
    expect(rules).toEqual([
      expect.objectContaining({ scope: 'overlay', action: 'allow', host: 'api.example.com', port: 443, binary: '/usr/bin/curl', expires_at: null }),
      expect.objectContaining({ scope: 'overlay', action: 'allow', host: '*.github.com', port: 'any', binary: null, expires_at: later }),
    ]);
  });

  it('rm removes a rule as a new policy revision; an unknown id is a usage error with the next step', async () => {
    const rules = JSON.parse((await runCli(['rules', 'list', '--json'], { home: home.dir })).stdout) as Array<{ id: string; host: string }>;
    const id = rules.find((r) => r.host === 'api.example.com')!.id;
    const before = (await sup.client.status()).policy.revision;
    const rm = await runCli(['rules', 'rm', id, '--reason', 'task done'], { home: home.dir });
    expect(rm.code, rm.stderr).toBe(0);
    expect(rm.stdout).toContain(`removed ${id}: allow api.example.com:443 for /usr/bin/curl (always); policy revision ${before + 1}`);
    const history = await sup.client.policyHistory();
    expect(history.at(-1)).toMatchObject({ number: before + 1, author: 'cli' });
    expect(history.at(-1)!.reason).toContain('task done');
    expect(await readFile(sandboxPaths('default', home.dir).overlayFile, 'utf8')).not.toContain('api.example.com');
    const events = await sup.client.events({ kinds: ['policy.revision'] });
    expect(events.at(-1)).toMatchObject({ number: before + 1, author: 'cli' });

    const again = await runCli(['rules', 'rm', id], { home: home.dir });
    expect(again.code).toBe(1); // as `approve` of an unknown id
    expect(again.stderr).toContain(`no operator rule "${id}"`);
    expect(again.stderr).toContain('nemoclaw-tui rules list');
    const bogus = await runCli(['rules', 'rm', '../../etc'], { home: home.dir });
    expect(bogus.code).toBe(1);
    expect(bogus.stderr).toContain("no operator rule");
  });

  it('--help on every rules command', async () => {
    for (const args of [['rules', '--help'], ['rules', 'list', '--help'], ['rules', 'rm', '--help']]) {
      const r = await runCli(args, { home: home.dir });
      expect(r.code, args.join(' ')).toBe(0);
      expect(r.stdout).toMatch(/Usage: nemoclaw-tui rules/);
    }
    expect((await runCli(['rules', 'rm', '--help'], { home: home.dir })).stdout).toContain('--reason <text>');
  });
});
