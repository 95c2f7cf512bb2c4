/**
 * Extra read-only binds and environment on the real driver: sources under a 0700 home (like
 * $NEMOCLAW_HOME/agents/… and $NEMOCLAW_HOME/blueprints/sha256-…/) are visible read-only at their
 * targets, the request's env is merged over the policy's but never over the proxy variables, nothing
 * leaks from the host environment, and bad targets are refused with a clear error.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchBwrap, validateReadOnlyBinds, type ReadOnlyBind, type RunningSandbox } from '../../src/sandbox/bwrap.js';

let base: string;
let home: string;
let runtimeDir: string;
let blueprintDir: string;

beforeAll(() => {
  if (!existsSync('/usr/bin/bwrap') || process.getuid?.() !== 0) {
    throw new Error('this suite needs root and bubblewrap: run .ci/run or apt-get install -y bubblewrap');
  }
  base = mkdtempSync('/tmp/ncbe-');
  home = join(base, 'home');
  runtimeDir = join(home, 'agents', 'tool-1.0.0');
  blueprintDir = join(home, 'blueprints', 'sha256-0123abcd');
  mkdirSync(join(runtimeDir, 'bin'), { recursive: true });
  mkdirSync(blueprintDir, { recursive: true });
  writeFileSync(join(runtimeDir, 'bin', 'tool'), '#!/bin/sh\necho "tool ran with $1"\n', { mode: 0o755 });
  writeFileSync(join(blueprintDir, 'blueprint.yaml'), 'name: demo\n', { mode: 0o444 });
  // Like $NEMOCLAW_HOME: the sandbox uid cannot traverse it, so the driver must stage the sources.
  chmodSync(home, 0o700);
  mkdirSync(join(base, 'run'), { recursive: true });
});

afterAll(() => {
  rmSync(base, { recursive: true, force: true });
});

function launch(command: string[], extra: { env?: Record<string, string>; readOnlyBinds?: ReadOnlyBind[] }): Promise<RunningSandbox> {
  return launchBwrap({
    id: `be${Math.random().toString(36).slice(2, 8)}`,
    command,
    workdir: join(base, 'wd'),
    runDir: join(base, 'run'),
    proxySocket: join(base, 'run', 'proxy', 'proxy.sock'),
    filesystem: { include_workdir: true, read_only: [], read_write: [], hidden: ['~/.ssh'], monitor: false },
    process: { seccomp: { block: [], allow: [] }, limits: {}, env: { LANG: 'C.UTF-8', FROM_POLICY: 'policy', SHARED: 'policy' } },
    nodeBinary: process.execPath,
    ...extra,
  });
}

async function output(sb: RunningSandbox): Promise<{ out: string; exitCode: number }> {
  let out = '';
  sb.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  sb.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const st = await sb.wait();
  return { out, exitCode: st.exitCode };
}

describe('extra read-only binds and environment', () => {
  it('binds sources from a 0700 home read-only at /opt/… and /sandbox/…', async () => {
    const sb = await launch(
      [
        '/bin/sh', '-c',
        'tool hello; cat /sandbox/blueprint/blueprint.yaml; ' +
          'touch /opt/nemoclaw/tool/bin/x 2>/dev/null && echo opt-writable || echo opt-read-only; ' +
          'touch /sandbox/blueprint/x 2>/dev/null && echo bp-writable || echo bp-read-only; ' +
          'touch /sandbox/own-file && echo workdir-writable',
      ],
      {
        env: { PATH: '/opt/nemoclaw/tool/bin:/usr/bin:/bin' },
        readOnlyBinds: [
          { source: runtimeDir, target: '/opt/nemoclaw/tool' },
          { source: blueprintDir, target: '/sandbox/blueprint' },
        ],
      },
    );
    const r = await output(sb);
    expect(r.out.split('\n').filter(Boolean)).toEqual([
      'tool ran with hello',
      'name: demo',
      'opt-read-only',
      'bp-read-only',
      'workdir-writable',
    ]);
    expect(r.exitCode).toBe(0);
  });

  it('keeps the Node runtime when a bind replaces /opt/nemoclaw/node', async () => {
    const nodeDir = join(home, 'agents', 'node-v24');
    mkdirSync(join(nodeDir, 'bin'), { recursive: true });
    writeFileSync(join(nodeDir, 'bin', 'node'), '#!/bin/sh\necho "bound node"\n', { mode: 0o755 });
    const sb = await launch(['/opt/nemoclaw/node/bin/node'], { readOnlyBinds: [{ source: nodeDir, target: '/opt/nemoclaw/node' }] });
    expect((await output(sb)).out.trim()).toBe('bound node');
  });

  it('merges the request env over the policy env, never over the proxy variables, and takes nothing from the host', async () => {
    process.env.NEMOCLAW_HOST_ONLY_VAR = 'leak';
    try {
      const sb = await launch(['/usr/bin/env'], {
        env: { SHARED: 'request', AGENT_TOKEN: 'tok', HTTP_PROXY: 'http://10.9.9.9:1', https_proxy: 'http://10.9.9.9:1', NODE_USE_ENV_PROXY: '0' },
      });
      const env = Object.fromEntries(
        (await output(sb)).out.trim().split('\n').map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
      );
      expect(env).toMatchObject({
        LANG: 'C.UTF-8',
        FROM_POLICY: 'policy',
        SHARED: 'request',
        AGENT_TOKEN: 'tok',
        HTTP_PROXY: 'http://127.0.0.1:3128',
        https_proxy: 'http://127.0.0.1:3128',
        NODE_USE_ENV_PROXY: '1',
        HOME: '/sandbox',
      });
      expect(env.NEMOCLAW_HOST_ONLY_VAR).toBeUndefined();
    } finally {
      delete process.env.NEMOCLAW_HOST_ONLY_VAR;
    }
  });

  it('refuses bind targets outside /opt/… and /sandbox/…, or shadowing system paths, naming the target', async () => {
    const src = runtimeDir;
    for (const target of ['/usr/lib/x', '/etc/ssl', '/opt', '/sandbox', '/', '/bin', '/proc/self', '/tmp/x', 'opt/x']) {
      expect(() => validateReadOnlyBinds([{ source: src, target }]), target).toThrow(/read-only bind target/);
    }
    expect(() => validateReadOnlyBinds([{ source: src, target: '/opt/../etc/x' }])).toThrow(/without "\.\."/);
    expect(() => validateReadOnlyBinds([{ source: src, target: '/sandbox/.ssh/k' }], ['~/.ssh'])).toThrow(/hidden path/);
    expect(() => validateReadOnlyBinds([{ source: join(base, 'missing'), target: '/opt/x' }])).toThrow(/does not exist/);
    expect(() => validateReadOnlyBinds([{ source: src, target: '/opt/a' }, { source: src, target: '/opt/a/' }])).toThrow(/bound twice/);
    expect(() => validateReadOnlyBinds([{ source: 'relative', target: '/opt/a' }])).toThrow(/absolute host path/);
    expect(() => validateReadOnlyBinds('nope')).toThrow(/not an array/);
    // Parents first, so a nested bind lands on top.
    expect(validateReadOnlyBinds([{ source: src, target: '/opt/a/b' }, { source: src, target: '/opt/a' }]).map((b) => b.target)).toEqual([
      '/opt/a',
      '/opt/a/b',
    ]);
    await expect(launch(['/bin/true'], { readOnlyBinds: [{ source: src, target: '/usr/bin' }] })).rejects.toThrow(
      /target "\/usr\/bin" is outside \/opt/,
    );
  });

  it('keeps environment values out of every host command line', async () => {
    const secret = `tok-${Math.random().toString(36).slice(2)}`;
    const sb = await launch(['/bin/sh', '-c', 'echo "$AGENT_TOKEN"; sleep 5'], { env: { AGENT_TOKEN: secret } });
    try {
      await new Promise<void>((resolve) => sb.stdout?.once('data', () => resolve()));
      const leaks = readdirSync('/proc')
        .filter((e) => /^\d+$/.test(e))
        .filter((pid) => {
          try {
            return readFileSync(`/proc/${pid}/cmdline`, 'utf8').includes(secret);
          } catch {
            return false;
          }
        });
      expect(leaks).toEqual([]);
    } finally {
      sb.kill('SIGKILL');
      await sb.wait();
    }
  });

  it('refuses malformed environment names', async () => {
    await expect(launch(['/bin/true'], { env: { 'BAD-NAME': 'x' } })).rejects.toThrow(/"BAD-NAME" is not a NAME=string pair/);
  });
});
