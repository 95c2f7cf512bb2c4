import { mkdtempSync, readFileSync, existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { installSystemdUnit, renderSystemdUnit } from '../../src/agent/systemd.js';
import { makeTempHome, runCli } from '../helpers/supervisor.js';

const base = { name: 'default', nodePath: '/opt/node/bin/node', binPath: '/usr/lib/node_modules/nemoclaw-tui/bin/nemoclaw-tui.js', home: '/var/lib/nemo claw', scope: 'system' as const };

describe('systemd unit', () => {
  it('runs the supervisor in the foreground with the sandbox name and a pinned home', () => {
    const unit = renderSystemdUnit(base);
    expect(unit).toContain('ExecStart=/opt/node/bin/node /usr/lib/node_modules/nemoclaw-tui/bin/nemoclaw-tui.js up --foreground --name default\n');
    expect(unit).toContain('Environment="NEMOCLAW_HOME=/var/lib/nemo claw"\n');
    expect(unit).toContain('KillSignal=SIGTERM');
    expect(unit).toContain('Restart=on-failure');
    expect(unit).toContain('WantedBy=multi-user.target');
    expect(renderSystemdUnit({ ...base, scope: 'user' })).toContain('WantedBy=default.target');
    expect(() => renderSystemdUnit({ ...base, home: 'relative/home' })).toThrow(/absolute paths/);
  });

  it('writes the unit once, reports no change on a re-run, and writes nothing on a dry run', () => {
    const dir = mkdtempSync(join(tmpdir(), 'ncl-unit-'));
    const path = join(dir, 'nemoclaw-tui-default.service');
    const dry = installSystemdUnit({ ...base, path, dryRun: true });
    expect(existsSync(path)).toBe(false);
    expect(dry.enableCommands).toEqual([['systemctl', 'daemon-reload'], ['systemctl', 'enable', '--now', 'nemoclaw-tui-default.service']]);
    expect(installSystemdUnit({ ...base, path }).changed).toBe(true);
    expect(readFileSync(path, 'utf8')).toBe(dry.content);
    expect(installSystemdUnit({ ...base, path }).changed).toBe(false);
  });

  it('`service install --user` writes under XDG_CONFIG_HOME and prints how to enable it', async () => {
    const home = await makeTempHome();
    try {
      const xdg = join(home.dir, 'xdg');
      const r = await runCli(['service', 'install', '--user', '--name', 'box1'], { home: home.dir, env: { XDG_CONFIG_HOME: xdg } });
      expect(r.code, r.stderr).toBe(0);
      const unitFile = join(xdg, 'systemd', 'user', 'nemoclaw-tui-box1.service');
      expect(r.stdout).toContain(`wrote ${unitFile}`);
      expect(r.stdout).toContain('systemctl --user enable --now nemoclaw-tui-box1.service');
      expect(readFileSync(unitFile, 'utf8')).toMatch(/up --foreground --name box1/);
      const bad = await runCli(['service', 'install', '--user', '--system'], { home: home.dir });
      expect(bad.code).toBe(2);
      expect(bad.stderr).toContain('choose one of --user and --system');
    } finally {
      await home.cleanup();
    }
  });
});
