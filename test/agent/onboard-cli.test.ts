import { readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { makeTempHome, runCli } from '../helpers/supervisor.js';

describe('nemoclaw-tui onboard (non-interactive, --no-start)', () => {
  it('prepares the drill with no key, stores a key 0600 for the cloud profile, and keeps overlay rules and agent state on a re-run', async () => {
    const home = await makeTempHome();
    try {
      const drill = await runCli(['onboard', '--blueprint', 'drill', '--non-interactive', '--no-start'], { home: home.dir });
      expect(drill.code, drill.stderr).toBe(0);
      expect(drill.stdout).toContain('chose      profile hybrid (stub (local stub model, no key needed) + cloud-stub (stub model standing in for a cloud provider (loopback), no key needed)');
      const sbx = join(home.dir, 'sandboxes', 'default');
      const state1 = JSON.parse(readFileSync(join(sbx, 'agent.json'), 'utf8'));
      expect(state1).toMatchObject({ blueprint: 'drill', profile: 'hybrid' });

      // The operator's overlay (written by the TUI's "always allow") must survive re-onboarding.
      const overlay = 'version: 1\nrules:\n  - { action: allow, host: api.example.com, port: 443 }\n';
      writeFileSync(join(sbx, 'overlay.yaml'), overlay);

      const cloud = await runCli(
        ['onboard', '--non-interactive', '--no-start', '--profile', 'nvidia-cloud', '--preset', 'npm', 'github'],
        { home: home.dir, env: {
          NVIDIA_API_KEY: 'nvapi-test-key-123',
          // A refused registry and an empty cache: npm fails fast and nothing is downloaded.
          npm_config_registry: 'http://127.0.0.1:9/',
          npm_config_cache: join(home.dir, 'npm-cache'),
          npm_config_fetch_retries: '0',
        }, timeoutMs: 60_000 },
      );
      // The npm install cannot reach the (refused) registry: onboarding fails at that step, after
      // storing the key and writing the policy, with the step named.
      expect(cloud.stderr).toContain('installing openclaw@2026.9.6 failed');
      expect(cloud.stdout).toContain('key        stored as "nvidia"');
      expect(cloud.stdout).not.toContain('nvapi-test-key-123');
      const creds = join(home.dir, 'credentials.json');
      expect(statSync(creds).mode & 0o777).toBe(0o600);
      expect(JSON.parse(readFileSync(creds, 'utf8'))).toEqual({ nvidia: 'nvapi-test-key-123' });
      const policy = parse(readFileSync(join(sbx, 'blueprint-policy.yaml'), 'utf8'));
      expect(policy.presets).toEqual(['npm', 'github']);
      expect(Object.keys(policy.inference.providers)).toEqual(['nvidia']);
      expect(readFileSync(join(sbx, 'overlay.yaml'), 'utf8')).toBe(overlay);
      const state2 = JSON.parse(readFileSync(join(sbx, 'agent.json'), 'utf8'));
      expect(state2).toMatchObject({ blueprint: 'openclaw', profile: 'nvidia-cloud', gateway_token: state1.gateway_token });
    } finally {
      await home.cleanup();
    }
  }, 90_000);
});
