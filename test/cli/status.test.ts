/** `status` in text, and the restart command in a refused static policy change. */
import { describe, expect, it } from 'vitest';
import type { SupervisorStatus } from '../../src/control/client.js';
import type { SupervisorService } from '../../src/control/types.js';
import { describeStatus, genericFields } from '../../src/cli/status-text.js';
import { MINIMAL_POLICY, runCli, startTestSupervisor, writeTempFile } from '../helpers/supervisor.js';

const GIB = 1024 ** 3;

function services(): Record<string, Record<string, unknown>> {
  return {
    egress: {
      listening: true,
      socket: '/h/run/proxy.sock',
      pending: 2,
      held_waiting: 3,
      counters: { connections: 40, open_connections: 1, requests: 37, allowed: 30, denied: 4, held: 3, approved: 1, ssrf_denied: 1 },
    },
    inference: {
      running: true,
      providers: { local: { type: 'openai', locality: 'local', model: 'llama' }, nvidia: { type: 'openai', locality: 'cloud', model: null } },
      routes: 3,
      calls: 12,
      inFlight: 1,
      budget: {
        hour: { caps: {}, used: { tokens: 0, usd: 0 }, resets_at: '2026-11-22T11:00:00.000Z' },
        day: { caps: { tokens: 2_000_000, usd: 20 }, used: { tokens: 2_000_000, usd: 3.5 }, resets_at: '2026-11-23T00:00:00.000Z' },
        request: { caps: {} },
      },
    },
    sandbox: {
      driver: 'bubblewrap',
      cgroups: 'v2',
      instances: [{ id: 'sb-1', pid: 4242, pids: [4242, 4243, 4244], net_mode: 'relay-inside', uid: 1000, user: 'sandbox', command: ['/opt/nemoclaw/node/bin/node', 'agent.js'] }],
      recently_exited: [],
    },
    meters: {
      interval_ms: 1000,
      gpu: {
        state: 'running',
        latest: {
          gpus: [
            { index: 0, name: 'NVIDIA H100', util_gpu_pct: 87, mem_used_mib: 40_000, mem_total_mib: 81_559, mem_source: 'vram', temp_c: 61, power_w: 412, sandbox_mem_mib: 39_000 },
            { index: 1, name: 'NVIDIA GH200', util_gpu_pct: null, mem_used_mib: 1024, mem_total_mib: 98_304, mem_source: 'system', temp_c: null, power_w: null, sandbox_mem_mib: null },
          ],
        },
      },
      proc: { instances: [{ id: 'sb-1', root_pid: 4242, pids: 3, cpu_pct: 12.5, rss_bytes: 2 * GIB }], total: { pids: 3, cpu_pct: 12.5, rss_bytes: 2 * GIB } },
      budget: { latest: null, tokens_per_min: 1234.4 },
    },
    agent: { state: 'running', blueprint: 'drill', version: '1.0.0', profile: 'stub', pid: 4242, restarts: 2 },
    widget: { state: 'spinning', rpm: 3000, nested: { ok: true }, tags: ['a', 'b'], empty: [] },
  };
}

function status(over: Partial<SupervisorStatus> = {}): SupervisorStatus {
  return {
    name: 'lab',
    pid: 100,
    version: '0.1.0',
    state: 'running',
    started_at: '2026-11-22T10:00:00.000Z',
    uptime_ms: 3_723_000,
    socket: '/h/sandboxes/lab/control.sock',
    home: '/h',
    unsafe_allow_loopback_upstreams: false,
    operators: 1,
    last_seq: 99,
    policy: { revision: 4, sha256: 'ab'.repeat(32), author: 'tui', time: '2026-11-22T10:30:00.000Z' },
    audit: { dir: '/h/sandboxes/lab/audit', last_seq: 99 },
    services: services(),
    routes: [],
    ...over,
  };
}

describe('status text', () => {
  it('renders each service in words: pending approvals, instances, budget, GPUs, agent, and a generic line for unknown ones', () => {
    const text = describeStatus(status(), { daemonLog: '/h/sandboxes/lab/supervisor.log' }).join('\n');
    expect(text).toContain('sandbox "lab": running (pid 100, up 1h 2m');
    expect(text).toContain('!! 2 requests waiting for approval: nemoclaw-tui pending --name lab');
    expect(text).toMatch(/egress +2 requests HELD for approval \(3 connections waiting\)/);
    expect(text).toContain('37 requests so far: 30 allowed, 4 denied, 3 held, 1 approved, 1 refused as internal addresses');
    expect(text).toMatch(/sandbox +bubblewrap, cgroups v2; 1 instance/);
    expect(text).toContain('sb-1: pid 4242, 3 processes, network relay-inside, as sandbox: /opt/nemoclaw/node/bin/node agent.js');
    expect(text).toMatch(/inference +providers local \(local, openai, llama\), nvidia \(cloud, openai\); 3 routes; 12 calls, 1 in flight/);
    expect(text).toMatch(/budget +day 2,000,000 of 2,000,000 tokens, \$3\.50 of \$20\.00 EXHAUSTED \(resets 2026-11-23T00:00:00\.000Z\)/);
    expect(text).toContain('1,234 tokens/min');
    expect(text).toMatch(/meters +sandbox CPU 12\.5% of a core, memory 2\.0 GiB, 3 processes/);
    expect(text).toContain('GPU 0 NVIDIA H100: 87% busy, 40,000 of 81,559 MiB VRAM, sandbox 39,000 MiB, 61°C, 412 W');
    expect(text).toContain('GPU 1 NVIDIA GH200: utilisation n/a, 1,024 of 98,304 MiB system memory (unified)');
    expect(text).toMatch(/agent +drill 1\.0\.0 running \(pid 4242, 2 restarts, profile stub\)/);
    expect(text).toMatch(/widget +state=spinning rpm=3000 nested\.ok=true tags=a,b$/m);
    expect(text).toMatch(/log +\/h\/sandboxes\/lab\/supervisor\.log/);
    expect(text).not.toContain('UNSAFE');
    expect(text).not.toContain('{');
  });

  it('puts the unsafe loopback flag right under the first line', () => {
    const lines = describeStatus(status({ unsafe_allow_loopback_upstreams: true }));
    expect(lines[1]).toMatch(/^ {2}!! UNSAFE: --unsafe-allow-loopback-upstreams is on/);
  });

  it('shows the pinned blueprint with its digest, and degrades gracefully on missing or odd service fields', () => {
    const digest = `sha256:${'c'.repeat(64)}`;
    const text = describeStatus(
      status({
        blueprint: { name: 'drill', version: '1.2.0', digest, dir: `/h/blueprints/sha256-${'c'.repeat(64)}`, locked_at: '', signer: 'unsigned' },
        services: {
          meters: { gpu: { state: 'no_gpu', latest: null, message: 'no NVIDIA GPU' }, proc: null, budget: { tokens_per_min: null } },
          egress: { listening: false },
          agent: { state: 'none' },
          sandbox: { instances: 'not a list' },
          broken: { error: 'status() threw: boom' },
        },
      }),
    ).join('\n');
    expect(text).toMatch(/blueprint +drill 1\.2\.0 sha256:cccccccccccc \(unsigned\)/);
    expect(text).toContain(`full digest ${digest}`);
    expect(text).toContain('GPU: no NVIDIA GPU');
    expect(text).toContain('sandbox CPU/memory: no sample yet');
    expect(text).toMatch(/egress +not listening/);
    expect(text).toMatch(/agent +none/);
    expect(text).toMatch(/sandbox +no sandboxed processes/);
    expect(text).toMatch(/broken +status failed: status\(\) threw: boom/);
  });

  it('generic fields: nested keys, quoting, and a length cap', () => {
    expect(genericFields({ a: 1, b: { c: 'two words' }, d: null })).toBe('a=1 b.c="two words"');
    expect(genericFields({ long: 'x'.repeat(500) }, 40)).toHaveLength(40);
    expect(genericFields({})).toBe('(nothing reported)');
  });

  it('status of a real supervisor prints its services in words (real bin)', async () => {
    const fake = (name: string, st: Record<string, unknown>) => (): SupervisorService => ({
      name,
      start: async () => undefined,
      stop: async () => undefined,
      status: () => st,
    });
    const all = services();
    const t = await startTestSupervisor({
      name: 'lab',
      unsafeAllowLoopbackUpstreams: true,
      services: [fake('egress', all.egress!), fake('meters', all.meters!), fake('widget', { ok: true })],
    });
    try {
      const r = await runCli(['status', '--name', 'lab'], { home: t.home });
      expect(r.code).toBe(0);
      expect(r.stdout.split('\n')[1]).toContain('!! UNSAFE');
      expect(r.stdout).toContain('!! 2 requests waiting for approval: nemoclaw-tui pending --name lab');
      expect(r.stdout).toContain('GPU 0 NVIDIA H100: 87% busy');
      expect(r.stdout).toMatch(/widget +ok=true/);
      expect(r.stdout).not.toContain('{"');
    } finally {
      await t.stop();
    }
  });
});

describe('refused static policy change', () => {
  const base = `${MINIMAL_POLICY}filesystem_policy:\n  read_only: [/usr]\n`;
  const changed = `${MINIMAL_POLICY}filesystem_policy:\n  read_only: [/usr, /opt]\n`;

  it('names the restart command for this sandbox, with --name when it is not the default one (real bin)', async () => {
    const t = await startTestSupervisor({ name: 'lab', policyText: base });
    try {
      const file = await writeTempFile(t.home, 'changed.yaml', changed);
      const r = await runCli(['policy', 'set', file, '--name', 'lab'], { home: t.home });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('filesystem_policy');
      expect(r.stderr).toContain(`next step: restart the sandbox with the new file: nemoclaw-tui down --name lab && nemoclaw-tui up --name lab --policy ${file}`);
      expect((await t.client.status()).policy.revision).toBe(1);
    } finally {
      await t.stop();
    }
  });

  it('keeps the plain command for the default sandbox', async () => {
    const t = await startTestSupervisor({ policyText: base });
    try {
      const file = await writeTempFile(t.home, 'changed.yaml', changed);
      const r = await runCli(['policy', 'set', file], { home: t.home });
      expect(r.code).toBe(2);
      expect(r.stderr).toContain(`nemoclaw-tui down && nemoclaw-tui up --policy ${file}`);
    } finally {
      await t.stop();
    }
  });
});
