import { chownSync, linkSync, lstatSync, mkdtempSync, readdirSync, readFileSync, statSync, symlinkSync, writeFileSync, mkdirSync } from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import {
  buildOpenClawConfig,
  openClawEnv,
  writeOpenClawConfig,
} from '../../src/agent/openclaw-config.js';

const base = {
  providerName: 'nemoclaw',
  models: [{ id: 'nemotron-nano', contextWindow: 32768 }, { id: 'llama-3.3' }],
  sandboxToken: 'nct-sandbox-token',
  gatewayToken: 'gw-token',
};

describe('OpenClaw config', () => {
  it('points the provider at inference.local with the per-sandbox token and keeps the gateway on loopback with token auth', () => {
    const cfg = buildOpenClawConfig(base) as any;
    expect(cfg.models.providers.nemoclaw).toEqual({
      baseUrl: 'http://inference.local/v1',
      api: 'openai-completions',
      apiKey: 'nct-sandbox-token',
      models: [
        { id: 'nemotron-nano', name: 'nemotron-nano', contextWindow: 32768 },
        { id: 'llama-3.3', name: 'llama-3.3' },
      ],
    });
    expect(cfg.models.mode).toBe('replace');
    expect(cfg.agents.defaults.model.primary).toBe('nemoclaw/nemotron-nano');
    expect(cfg.gateway).toEqual({ mode: 'local', bind: 'loopback', port: 18789, auth: { mode: 'token', token: 'gw-token' } });
    // web_fetch goes through the egress proxy (OpenClaw's default dials directly: ENETUNREACH in the sandbox).
    expect(cfg.tools).toEqual({ web: { fetch: { useTrustedEnvProxy: true } } });
  });

  it('is offline-clean by default and only goes online when the operator allows it', () => {
    const off = buildOpenClawConfig(base) as any;
    expect(off.update.checkOnStart).toBe(false);
    expect(off.models.catalogRefresh.enabled).toBe(false);
    expect(off.discovery.mdns.mode).toBe('off');
    const env = openClawEnv({ gatewayToken: 'gw-token' });
    expect(env).toMatchObject({
      OPENCLAW_NO_AUTO_UPDATE: '1',
      OPENCLAW_DISABLE_BONJOUR: '1',
      OPENCLAW_OFFLINE: '1',
      OPENCLAW_CLAWHUB_URL: 'http://127.0.0.1:9',
      OPENCLAW_STATE_DIR: '/sandbox/.openclaw',
      OPENCLAW_GATEWAY_TOKEN: 'gw-token',
      NODE_USE_ENV_PROXY: '1',
    });
    expect(env.PATH?.startsWith('/opt/nemoclaw/node/bin:')).toBe(true);

    const on = buildOpenClawConfig({ ...base, allowOnline: true }) as any;
    expect(on.update.checkOnStart).toBe(true);
    expect(on.models.catalogRefresh.enabled).toBe(true);
    const onEnv = openClawEnv({ gatewayToken: 'x', allowOnline: true });
    expect(onEnv.OPENCLAW_OFFLINE).toBeUndefined();
    expect(onEnv.OPENCLAW_CLAWHUB_URL).toBeUndefined();
  });

  it('refuses a primary model that is not in the list and a bad provider name', () => {
    expect(() => buildOpenClawConfig({ ...base, primaryModel: 'gpt-x' })).toThrow(/primary model "gpt-x"/);
    expect(() => buildOpenClawConfig({ ...base, providerName: 'Bad Name' })).toThrow(/invalid inference provider name/);
    expect(() => buildOpenClawConfig({ ...base, models: [] })).toThrow(/at least one model/);
  });

  it('writes openclaw.json 0600 under <workdir>/.openclaw, keeps operator keys, and is idempotent', () => {
    const workdir = mkdtempSync(join(tmpdir(), 'ncl-cfg-'));
    mkdirSync(join(workdir, '.openclaw'));
    writeFileSync(
      join(workdir, '.openclaw', 'openclaw.json'),
      JSON.stringify({ channels: { telegram: { enabled: true } }, gateway: { port: 1, controlUi: { enabled: false } } }),
    );
    const first = writeOpenClawConfig(workdir, buildOpenClawConfig(base));
    expect(first.changed).toBe(true);
    expect(statSync(first.path).mode & 0o777).toBe(0o600);
    const onDisk = JSON.parse(readFileSync(first.path, 'utf8'));
    expect(onDisk.channels).toEqual({ telegram: { enabled: true } });
    expect(onDisk.gateway.controlUi).toEqual({ enabled: false });
    expect(onDisk.gateway.port).toBe(18789);
    const second = writeOpenClawConfig(workdir, buildOpenClawConfig(base));
    expect(second.changed).toBe(false);
  });

  it('refuses to overwrite an OpenClaw config that is not JSON, naming the file', () => {
    const workdir = mkdtempSync(join(tmpdir(), 'ncl-cfg-'));
    mkdirSync(join(workdir, '.openclaw'));
    writeFileSync(join(workdir, '.openclaw', 'openclaw.json'), '{ broken');
    expect(() => writeOpenClawConfig(workdir, buildOpenClawConfig(base))).toThrow(/openclaw\.json is not valid JSON/);
    expect(readFileSync(join(workdir, '.openclaw', 'openclaw.json'), 'utf8')).toBe('{ broken');
  });
});

/**
 * The supervisor runs this as root on a tree the sandbox owns (issue 11: the confused deputy). Each
 * case plants what a hostile agent could, as the sandbox uid, and checks that nothing outside the
 * workdir is read, written or chowned.
 */
describe('OpenClaw config against a hostile workdir (root supervisor)', () => {
  const root = process.getuid?.() === 0;
  const SANDBOX = { uid: 65534, gid: 65534 };
  const setup = () => {
    const top = mkdtempSync(join(tmpdir(), 'ncl-cfg-hostile-'));
    const secretDir = join(top, 'root-only');
    mkdirSync(secretDir, { mode: 0o700 });
    const secret = join(secretDir, 'credentials.json');
    writeFileSync(secret, JSON.stringify({ nvidia: 'nvapi-CANARY-do-not-leak' }), { mode: 0o600 });
    const workdir = join(top, 'workdir');
    mkdirSync(workdir, { mode: 0o700 });
    if (root) chownSync(workdir, SANDBOX.uid, SANDBOX.gid);
    return { top, secretDir, secret, workdir };
  };

  it('refuses an openclaw.json that is a symlink to a root-only file, and copies nothing', () => {
    const { secret, workdir } = setup();
    mkdirSync(join(workdir, '.openclaw'));
    symlinkSync(secret, join(workdir, '.openclaw', 'openclaw.json'));
    expect(() => writeOpenClawConfig(workdir, buildOpenClawConfig(base))).toThrow(/refusing to use .*openclaw\.json: it is a symbolic link/);
    expect(lstatSync(join(workdir, '.openclaw', 'openclaw.json')).isSymbolicLink()).toBe(true);
    expect(readFileSync(secret, 'utf8')).toContain('nvapi-CANARY');
    expect(statSync(secret).uid).toBe(process.getuid?.());
    // Nothing else appeared next to the link (no copy of the secret, no leftover temp file).
    expect(readdirSync(join(workdir, '.openclaw'))).toEqual(['openclaw.json']);
    for (const name of readdirSync(join(workdir, '.openclaw'))) {
      if (lstatSync(join(workdir, '.openclaw', name)).isSymbolicLink()) continue;
      expect(readFileSync(join(workdir, '.openclaw', name), 'utf8')).not.toContain('CANARY');
    }
  });

  it('refuses a .openclaw that is a symlink to a root-only directory, and writes nothing there', () => {
    const { secretDir, workdir } = setup();
    symlinkSync(secretDir, join(workdir, '.openclaw'));
    expect(() => writeOpenClawConfig(workdir, buildOpenClawConfig(base))).toThrow(/refusing to use .*\.openclaw: it is not a directory/);
    expect(readdirSync(secretDir)).toEqual(['credentials.json']);
    expect(statSync(secretDir).uid).toBe(process.getuid?.());
  });

  it('refuses a hard link to a file outside the workdir', () => {
    const { top, workdir } = setup();
    const outside = join(top, 'outside.json');
    writeFileSync(outside, '{"outside": "CANARY"}');
    mkdirSync(join(workdir, '.openclaw'));
    linkSync(outside, join(workdir, '.openclaw', 'openclaw.json'));
    expect(() => writeOpenClawConfig(workdir, buildOpenClawConfig(base))).toThrow(/2 hard links/);
    expect(readFileSync(outside, 'utf8')).toBe('{"outside": "CANARY"}');
  });

  it('refuses a FIFO without blocking on it', () => {
    const { workdir } = setup();
    mkdirSync(join(workdir, '.openclaw'));
    execFileSync('mkfifo', [join(workdir, '.openclaw', 'openclaw.json')]);
    expect(() => writeOpenClawConfig(workdir, buildOpenClawConfig(base))).toThrow(/not a regular file/);
  });

  it('refuses a workdir that is itself a symlink', () => {
    const { secretDir, top } = setup();
    const link = join(top, 'linked-workdir');
    symlinkSync(secretDir, link);
    expect(() => writeOpenClawConfig(link, buildOpenClawConfig(base))).toThrow(/not a directory/);
    expect(readdirSync(secretDir)).toEqual(['credentials.json']);
  });

  it.runIf(root)('creates .openclaw and the file owned by the workdir owner (the sandbox uid), 0700 / 0600', () => {
    const { workdir } = setup();
    const w = writeOpenClawConfig(workdir, buildOpenClawConfig(base));
    expect(statSync(join(workdir, '.openclaw')).uid).toBe(SANDBOX.uid);
    expect(statSync(join(workdir, '.openclaw')).mode & 0o777).toBe(0o700);
    expect(statSync(w.path).uid).toBe(SANDBOX.uid);
    expect(statSync(w.path).mode & 0o777).toBe(0o600);
    expect(readdirSync(join(workdir, '.openclaw'))).toEqual(['openclaw.json']);
  });
});
