/**
 * The agent service inside a real in-process supervisor (audit log, policy store, control API),
 * with the sandbox replaced by a host launcher: blueprint selection, runtime install, the stub
 * model wired into the policy, supervision events, and coming back after a supervisor restart
 * with the same agent state and the operator's overlay rules.
 */
import { mkdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/events.js';
import { createAgentService, readAgentState } from '../../src/agent/service.js';
import { makeTempHome, REPO_ROOT, startTestSupervisor, type TempHome } from '../helpers/supervisor.js';
import { hostLauncher } from './host-launcher.js';

const POLICY = `version: 1
network_policies: {}
inference:
  providers:
    mini-stub:
      type: openai
      base_url: http://127.0.0.1:9/v1
      models: [mini-model]
      locality: local
  routes:
    - { name: default, provider: mini-stub }
`;

function miniBlueprint(dir: string): string {
  const bp = join(dir, 'bp-mini');
  mkdirSync(bp, { recursive: true });
  writeFileSync(
    join(bp, 'agent.mjs'),
    `console.log('mini agent token=' + process.env.NEMOCLAW_INFERENCE_TOKEN + ' mode=' + process.env.MINI_MODE);
     setInterval(() => {}, 1000); process.on('SIGTERM', () => process.exit(0));`,
  );
  writeFileSync(
    join(bp, 'blueprint.yaml'),
    `name: mini
version: 0.1.0
agent: { script: agent.mjs }
runtime: { node: 24.21.0 }
policy: { file: policy.yaml }
inference:
  agent_provider: mini
  default_profile: stub
  profiles:
    stub: { stub: true, provider: { name: mini-stub, type: openai }, models: [mini-model] }
sandbox:
  binds:
    - { from: runtime.node, to: /opt/nemoclaw/node }
    - { from: blueprint, to: /opt/nemoclaw/mini }
  env: { MINI_MODE: testing }
start: { command: [/opt/nemoclaw/node/bin/node, /opt/nemoclaw/mini/agent.mjs], restart: always }
health: { started: true }
`,
  );
  writeFileSync(join(bp, 'policy.yaml'), POLICY);
  return bp;
}

async function waitForEvent(list: () => Promise<AuditEvent[]>, pred: (e: AuditEvent) => boolean, ms = 20_000): Promise<AuditEvent> {
  const end = Date.now() + ms;
  for (;;) {
    const found = (await list()).find(pred);
    if (found) return found;
    if (Date.now() > end) throw new Error(`event not seen; have: ${(await list()).map((e) => `${e.kind}:${e.action ?? e.line ?? ''}${e.reason ? `(${e.reason})` : ''}`).join(', ')}`);
    await new Promise((r) => setTimeout(r, 50));
  }
}

let home: TempHome;
afterAll(async () => home?.cleanup());

describe('agent service', () => {
  it('runs the blueprint agent under supervision and brings it back after a supervisor restart with its state and overlay rules', async () => {
    home = await makeTempHome();
    const bpDir = miniBlueprint(home.dir);
    const deps = { launcher: () => hostLauncher(), sandboxToken: () => 'sandbox-tok-1', packageRoot: REPO_ROOT };
    const first = await startTestSupervisor({
      home: home.dir,
      policyText: POLICY,
      options: { blueprint: bpDir },
      services: [(o) => createAgentService(o, deps)],
    });
    const events = (s: typeof first) => s.supervisor.events.backlog({}, 10_000);
    try {
      const configured = await waitForEvent(() => events(first), (e) => e.action === 'agent.configured');
      expect(configured).toMatchObject({ kind: 'sandbox.lifecycle', blueprint: 'mini', profile: 'stub', restored: false });
      const line = await waitForEvent(() => events(first), (e) => e.kind === 'agent.log' && String(e.line).startsWith('mini agent'));
      expect(line.line).toBe('mini agent token=sandbox-tok-1 mode=testing');
      // The stub model's real address went into the policy as a new revision.
      const stubUrl = String(first.supervisor.policy.current().inference.providers['mini-stub']?.base_url);
      expect(stubUrl).toMatch(/^http:\/\/127\.0\.0\.1:\d+\/v1$/);
      expect(stubUrl).not.toBe('http://127.0.0.1:9/v1');
      const models = await fetch(`${stubUrl}/models`).then((r) => r.json());
      expect(models.data[0].id).toBe('mini-model');
      // The runtime was installed under $NEMOCLAW_HOME/agents.
      expect(statSync(join(home.dir, 'agents', 'node-v24.21.0-linux-x64', 'bin', 'node')).isFile()).toBe(true);
      const status = (await first.client.request('GET', '/v1/agent')) as any;
      expect(status).toMatchObject({ state: 'healthy', blueprint: 'mini', profile: 'stub', restarts: 0 });
      expect(status.exec.binds.map((b: any) => b.target)).toEqual(['/opt/nemoclaw/node', '/opt/nemoclaw/mini']);
      await first.supervisor.policy.addOverlayRule({ action: 'allow', host: 'api.example.com', port: 443 }, 'tui', 'test');
    } finally {
      await first.stop();
    }
    const state = readAgentState(join(home.dir, 'sandboxes', 'default', 'agent.json'));
    expect(state).toMatchObject({ blueprint: 'mini', blueprint_dir: bpDir, profile: 'stub' });
    expect(statSync(join(home.dir, 'sandboxes', 'default', 'agent.json')).mode & 0o777).toBe(0o600);

    // "Reboot": a new supervisor without any blueprint option (what the systemd unit runs).
    // (`up` without --policy runs the policy the sandbox last ran with; the test helper needs it named.)
    const second = await startTestSupervisor({
      home: home.dir,
      policyFile: join(home.dir, 'sandboxes', 'default', 'policy.yaml'),
      services: [(o) => createAgentService(o, deps)],
    });
    try {
      const restored = await waitForEvent(() => events(second), (e) => e.action === 'agent.configured' && e.restored === true);
      expect(restored).toMatchObject({ blueprint: 'mini', profile: 'stub' });
      await waitForEvent(() => events(second), (e) => e.kind === 'agent.log' && String(e.line).startsWith('mini agent') && e.seq > restored.seq);
      expect(readAgentState(join(home.dir, 'sandboxes', 'default', 'agent.json'))?.gateway_token).toBe(state?.gateway_token);
      expect(second.supervisor.policy.decideNetwork({ host: 'api.example.com', port: 443 }).verdict).toBe('allow');
    } finally {
      await second.stop();
    }
  }, 60_000);

  it('refuses a blueprint with an invalid field, naming the file and field', async () => {
    const h = await makeTempHome();
    try {
      const bp = join(h.dir, 'bad');
      mkdirSync(bp);
      writeFileSync(join(bp, 'blueprint.yaml'), 'name: bad\nversion: one\n');
      const err = await startTestSupervisor({ home: h.dir, options: { blueprint: bp }, services: [(o) => createAgentService(o)] }).catch((e: unknown) => e as Error);
      expect(err).toBeInstanceOf(Error);
      expect((err as Error).message).toMatch(/invalid blueprint .*bad\/blueprint\.yaml: version: a semver version/);
    } finally {
      await h.cleanup();
    }
  });
});
