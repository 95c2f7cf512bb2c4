/**
 * Presets through the real bin (`node bin/nemoclaw-tui.js`, built dist), with a fresh
 * NEMOCLAW_HOME and HOME:
 * - `onboard --preset … --no-start` then a plain `up`: the started supervisor runs the onboarded
 *   policy (packaged presets and preset files), and `status` shows them;
 * - a preset file given by path is stored at onboarding: later onboarding and `up` work after the
 *   original file is gone, and it replaces the blueprint's policy of the same key (as NemoClaw);
 * - an unknown preset name is refused with exit 2, the available ones listed, nothing written.
 */
import { copyFileSync, cpSync, existsSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { parse as parseYaml } from 'yaml';
import { DRILL_OFFLINE_ENV, REPO_ROOT, makeTempHome, runCli, type TempHome } from '../helpers/supervisor.js';

interface StatusJson {
  running: boolean;
  policy: { presets?: string[]; preset_files?: Array<{ name: string; source: string; policies: string[] }> };
}

const FIXTURES = join(REPO_ROOT, 'test', 'fixtures', 'nemoclaw-presets');

describe('presets through the CLI', { timeout: 180_000 }, () => {
  let home: TempHome;
  let work: TempHome;
  let started = false;
  let env: Record<string, string>;
  let blueprint: string;

  beforeEach(async () => {
    home = await makeTempHome();
    work = await makeTempHome('nct-work-');
    env = { ...DRILL_OFFLINE_ENV, HOME: join(work.dir, 'home') };
    // A private copy of the drill with its MANIFEST written afresh, so the test runs the drill as
    // the working tree has it.
    blueprint = join(work.dir, 'drill');
    cpSync(join(REPO_ROOT, 'blueprints', 'drill'), blueprint, { recursive: true });
    const m = await runCli(['blueprint', 'manifest', blueprint], { home: work.dir, env });
    expect(m.code, m.stderr).toBe(0);
  });
  afterEach(async () => {
    if (started) await runCli(['down'], { home: home.dir, env });
    started = false;
    await home.cleanup();
    await work.cleanup();
  }, 60_000);

  it('refuses an unknown preset with exit 2 and the list, writing nothing', async () => {
    const r = await runCli(['onboard', '--blueprint', blueprint, '--preset', 'npm', 'jira', '--no-start', '--non-interactive'], { home: home.dir, env });
    expect(r.code).toBe(2);
    expect(r.stderr).toContain('unknown preset "jira"; the available presets are: discord, docker-hub, github, huggingface, npm, nvidia, pypi, slack, telegram');
    expect(r.stderr).toMatch(/next step: .*--preset \.\/jira\.yaml/);
    expect(readdirSync(home.dir)).toEqual([]);
    // The environment variable is checked the same way.
    const e = await runCli(['onboard', '--blueprint', blueprint, '--no-start', '--non-interactive'], { home: home.dir, env: { ...env, NEMOCLAW_PRESETS: 'jira' } });
    expect(e.code).toBe(2);
    expect(readdirSync(home.dir)).toEqual([]);
    // A preset file that does not validate is refused the same way, naming file:line:col.
    const bad = join(work.dir, 'bad.yaml');
    writeFileSync(bad, 'preset: { name: bad, owner: me }\nnetwork_policies:\n  bad:\n    binaries: [{ path: "/**" }]\n    endpoints: [{ host: bad.example, port: 443 }]\n');
    const b = await runCli(['onboard', '--blueprint', blueprint, '--preset', bad, '--no-start', '--non-interactive'], { home: home.dir, env });
    expect(b.code).toBe(2);
    expect(b.stderr).toContain(`${bad}:1:`);
    expect(readdirSync(home.dir)).toEqual([]);
  });

  it('onboarding again with other presets drops the earlier preset file (policy, stored copy, record)', async () => {
    const discord = join(work.dir, 'discord.yaml');
    copyFileSync(join(FIXTURES, 'discord.yaml'), discord);
    const sbx = join(home.dir, 'sandboxes', 'default');
    const first = await runCli(['onboard', '--blueprint', blueprint, '--preset', discord, '--no-start', '--non-interactive'], { home: home.dir, env });
    expect(first.code, first.stderr).toBe(0);
    expect(existsSync(join(sbx, 'presets', 'discord.yaml'))).toBe(true);
    const second = await runCli(['onboard', '--blueprint', blueprint, '--preset', 'npm', '--no-start', '--non-interactive'], { home: home.dir, env });
    expect(second.code, second.stderr).toBe(0);
    expect(second.stdout).toContain('presets: npm\n');
    expect(existsSync(join(sbx, 'presets', 'discord.yaml'))).toBe(false);
    const policy = parseYaml(readFileSync(join(sbx, 'policy.yaml'), 'utf8')) as { presets: string[]; network_policies: Record<string, unknown> };
    expect(policy.presets).toEqual(['npm']);
    expect(Object.keys(policy.network_policies)).toEqual(['drill-allowed']);
    expect(JSON.parse(readFileSync(join(sbx, 'onboarding.json'), 'utf8'))).toMatchObject({ presets: ['npm'], preset_files: [] });
  });

  it('onboard --preset NAMES FILES --no-start, then up: the supervisor runs with them, status shows them, and the files are not needed any more', async () => {
    // NemoClaw's discord preset, and a preset of our own whose key collides with the drill's policy.
    const discord = join(work.dir, 'discord.yaml');
    copyFileSync(join(FIXTURES, 'discord.yaml'), discord);
    const override = join(work.dir, 'drill-override.yaml');
    writeFileSync(
      override,
      [
        'preset:',
        '  name: drill-override',
        '  description: replaces the drill\'s own policy',
        'network_policies:',
        '  drill-allowed:',
        '    binaries: [{ path: "/**" }]',
        '    endpoints:',
        '      - { host: example.org, port: 443 }',
        '',
      ].join('\n'),
    );
    const sbx = join(home.dir, 'sandboxes', 'default');

    const onboard = await runCli(['onboard', '--blueprint', blueprint, '--preset', 'npm', 'pypi', discord, override, '--no-start', '--non-interactive'], { home: home.dir, env });
    expect(onboard.code, onboard.stderr).toBe(0);
    expect(onboard.stdout).toContain(`presets: npm, pypi, discord (file ${discord}), drill-override (file ${override})`);
    expect(onboard.stdout).toContain('ready; start it with: nemoclaw-tui up');
    // NemoClaw's file names no binaries: said at onboarding (no program may use it, as in OpenShell).
    expect(onboard.stderr).toMatch(/warning \(preset discord\): these rules now mean what they mean in OpenShell[^\n]*\n.*no `binaries`/);
    // Stored with the sandbox.
    expect(readFileSync(join(sbx, 'presets', 'discord.yaml'), 'utf8')).toBe(readFileSync(discord, 'utf8'));
    // The base policy a plain `up` uses validates.
    const validate = await runCli(['policy', 'validate', join(sbx, 'policy.yaml')], { home: home.dir, env });
    expect(validate.code, validate.stderr).toBe(0);

    // The original files go away; onboarding again without --preset keeps the choice.
    rmSync(discord);
    rmSync(override);
    const again = await runCli(['onboard', '--blueprint', blueprint, '--no-start', '--non-interactive'], { home: home.dir, env });
    expect(again.code, again.stderr).toBe(0);
    expect(again.stdout).toContain(`presets: npm, pypi, discord (file ${discord}), drill-override (file ${override})`);

    const up = await runCli(['up'], { home: home.dir, env, timeoutMs: 60_000 });
    expect(up.code, up.stderr).toBe(0);
    started = true;

    const status = await runCli(['status', '--json'], { home: home.dir, env });
    const s = JSON.parse(status.stdout) as StatusJson;
    expect(s.running).toBe(true);
    expect(s.policy.presets).toEqual(['npm', 'pypi']);
    expect(s.policy.preset_files?.map((f) => [f.name, f.source, f.policies])).toEqual([
      ['discord', discord, ['discord']],
      ['drill-override', override, ['drill-allowed']],
    ]);
    const text = await runCli(['status'], { home: home.dir, env });
    expect(text.stdout).toContain(`presets     npm, pypi, discord (file ${discord}: discord), drill-override (file ${override}: drill-allowed)`);

    // The policy the started supervisor enforces.
    const show = await runCli(['policy', 'show'], { home: home.dir, env });
    expect(show.code, show.stderr).toBe(0);
    const running = parseYaml(show.stdout) as { presets: string[]; network_policies: Record<string, { endpoints: Array<{ host: string }>; binaries?: unknown[] }> };
    expect(running.presets).toEqual(['npm', 'pypi']);
    expect(Object.keys(running.network_policies).sort()).toEqual(['discord', 'drill-allowed', 'npm', 'pypi']);
    expect(running.network_policies.npm!.endpoints.map((e) => e.host)).toContain('registry.npmjs.org');
    expect(running.network_policies.discord!.endpoints.map((e) => e.host)).toEqual(['discord.com', 'gateway.discord.gg', 'cdn.discordapp.com']);
    // The colliding key is replaced whole, as NemoClaw applies presets: the drill's own host is gone.
    expect(running.network_policies['drill-allowed']!.endpoints.map((e) => e.host)).toEqual(['example.org']);
    expect(existsSync(discord)).toBe(false);
  });
});
