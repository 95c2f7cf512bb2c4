import { mkdtempSync, readFileSync, statSync, writeFileSync, mkdirSync } from 'node:fs';
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
