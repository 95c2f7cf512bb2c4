/**
 * The kill switch's CLI and its state (issue 16): with a supervisor, `quarantine` is a deny-all
 * revision and `release` lifts it; with none, the state file alone makes `up` refuse, and a release
 * made offline is recorded in the audit log by the next supervisor. `--help` on the command.
 */
import { existsSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { createQuarantineService, quarantineFile } from '../../src/control/quarantine.js';
import { createEgressService } from '../../src/egress/index.js';
import { proxyRequest, startUpstream, testResolver } from '../egress/harness.js';
import { makeTempHome, runCli, startTestSupervisor } from '../helpers/supervisor.js';
import { sandboxPaths } from '../../src/shared/home.js';

const quarantineOnly = [() => createQuarantineService()];

describe('quarantine', () => {
  it('through a running supervisor: a deny-all revision with the reason; status; release lifts it', async () => {
    const sup = await startTestSupervisor({ services: quarantineOnly });
    try {
      const policy = sup.supervisor['policy' as keyof typeof sup.supervisor] as unknown as { decideNetwork(q: { host: string; port: number }): { verdict: string; reason: string } };
      expect(policy.decideNetwork({ host: 'api.example.com', port: 443 }).verdict).toBe('allow');
      const q = await runCli(['quarantine', '--reason', 'odd upload'], { home: sup.home });
      expect(q.code, q.stderr).toBe(0);
      expect(q.stdout).toContain('quarantined sandbox "default"');
      expect(q.stdout).toContain('(odd upload)');
      expect(q.stdout).toContain('nemoclaw-tui quarantine release');
      // Even a host the policy allows is refused, and the refusal says why.
      const d = policy.decideNetwork({ host: 'api.example.com', port: 443 });
      expect(d.verdict).toBe('deny');
      expect(d.reason).toMatch(/the sandbox is quarantined since .* \(odd upload\): all egress and inference are refused/);
      expect((await sup.client.policyHistory()).at(-1)).toMatchObject({ author: 'cli', reason: 'quarantine: odd upload' });
      expect(existsSync(quarantineFile(sup.paths))).toBe(true);
      const st = await runCli(['quarantine', 'status', '--json'], { home: sup.home });
      expect(st.code).toBe(1);
      expect(JSON.parse(st.stdout)).toMatchObject({ quarantined: true, reason: 'odd upload', by: 'cli' });
      const status = await runCli(['status'], { home: sup.home });
      expect(status.stdout).toMatch(/quarantine\s+quarantined=true reason="odd upload"/);
      expect(status.stdout).toMatch(/!! QUARANTINED since \S+ \(odd upload\): agent stopped, all egress and inference refused/);
      expect(status.stdout).toContain('!! lift it with `nemoclaw-tui quarantine release`');
      // Asking twice keeps the first.
      expect((await runCli(['quarantine', '--reason', 'again'], { home: sup.home })).stdout).toContain('already quarantined');

      const r = await runCli(['quarantine', 'release', '--reason', 'checked'], { home: sup.home });
      expect(r.code, r.stderr).toBe(0);
      expect(policy.decideNetwork({ host: 'api.example.com', port: 443 }).verdict).toBe('allow');
      expect((await sup.client.policyHistory()).at(-1)).toMatchObject({ reason: 'quarantine released: checked' });
      expect(existsSync(quarantineFile(sup.paths))).toBe(false);
      const events = await sup.client.events({ kinds: ['sandbox.lifecycle'] });
      expect(events.find((e) => e.action === 'quarantine')).toMatchObject({ reason: 'odd upload', by: 'cli' });
      expect(events.find((e) => e.action === 'quarantine.released')).toMatchObject({ reason: 'odd upload', release_reason: 'checked' });
      expect((await runCli(['quarantine', 'release'], { home: sup.home })).code).toBe(1);
    } finally {
      await sup.stop();
    }
  });

  it('with no supervisor: up is refused until release; the next supervisor records the offline quarantine and release', async () => {
    const home = await makeTempHome('nct-qoff-');
    try {
      const q = await runCli(['quarantine', '--reason', 'before start'], { home: home.dir });
      expect(q.code, q.stderr).toBe(0);
      expect(q.stdout).toContain('`up` is refused until');
      const up = await runCli(['up'], { home: home.dir });
      expect(up.code).toBe(1);
      expect(up.stderr).toContain('sandbox "default" is quarantined since');
      expect(up.stderr).toContain('(before start)');
      expect(up.stderr).toContain('next step: inspect the workdir and the audit log');

      // A supervisor that starts anyway applies it before anything else runs.
      const sup = await startTestSupervisor({ home: home.dir, services: quarantineOnly });
      try {
        const events = await sup.client.events({ kinds: ['sandbox.lifecycle'] });
        expect(events.find((e) => e.action === 'quarantine.in_force')).toMatchObject({ reason: 'before start', offline: true });
        expect((await sup.client.quarantineStatus()).quarantined).toBe(true);
      } finally {
        await sup.supervisor.stop('test');
      }
      const rel = await runCli(['quarantine', 'release'], { home: home.dir });
      expect(rel.code, rel.stderr).toBe(0);
      expect(rel.stdout).toContain('released the quarantine');
      const sup2 = await startTestSupervisor({ home: home.dir, services: quarantineOnly });
      try {
        const events = await sup2.client.events({ kinds: ['sandbox.lifecycle'] });
        expect(events.filter((e) => e.action === 'quarantine.released').at(-1)).toMatchObject({ offline: true, reason: 'before start' });
        expect((await sup2.client.quarantineStatus()).quarantined).toBe(false);
      } finally {
        await sup2.supervisor.stop('test');
      }
      expect(existsSync(quarantineFile(sandboxPaths('default', home.dir)))).toBe(false);
    } finally {
      await home.cleanup();
    }
  });

  it('a request held when the quarantine begins is refused with the quarantine in its refusal; new ones at once', async () => {
    const up = await startUpstream();
    const sup = await startTestSupervisor({
      policyText: 'version: 1\nnetwork_policies: {}\napprovals:\n  mode: ask\n  timeout: 30\n  when_unattended: hold\n',
      unsafeAllowLoopbackUpstreams: true,
      services: [() => createQuarantineService(), () => createEgressService({ resolver: testResolver({ 'held.test': ['127.0.0.1'] }) })],
    });
    try {
      const held = proxyRequest(sup.paths.proxySocket, `http://held.test:${up.port}/x`);
      for (let i = 0; i < 200 && (await sup.client.pending()).length === 0; i++) await new Promise((r) => setTimeout(r, 25));
      expect(await sup.client.pending()).toHaveLength(1);
      await sup.client.quarantine('held then stopped');
      const res = await held;
      expect(res.status).toBe(403);
      expect(res.json()).toMatchObject({ error: 'policy_denied' });
      expect(String((res.json() as { detail: string }).detail)).toMatch(/the sandbox is quarantined since .* \(held then stopped\)/);
      const again = await proxyRequest(sup.paths.proxySocket, `http://held.test:${up.port}/y`);
      expect(again.status).toBe(403);
      expect(await sup.client.pending()).toEqual([]);
      expect(up.requests).toHaveLength(0);
    } finally {
      await sup.stop();
      await up.close();
    }
  });

  it('--help', async () => {
    const home = await makeTempHome('nct-qh-');
    try {
      const r = await runCli(['quarantine', '--help'], { home: home.dir });
      expect(r.code).toBe(0);
      expect(r.stdout).toContain('Usage: nemoclaw-tui quarantine');
      expect(r.stdout).toContain('--reason <text>');
      expect(r.stdout).toContain('quarantine release');
    } finally {
      await home.cleanup();
    }
  });
});
