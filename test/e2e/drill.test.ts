/**
 * The drill blueprint end to end, inside the real sandbox, with no API key and no model:
 * `nemoclaw-tui up --blueprint drill` (detached supervisor through the built bin) starts the drill
 * agent as the sandbox's main process; it reaches an allowed and an unknown host, writes outside
 * /sandbox, reads hidden paths, sends PII (to the local stub; while a local provider is down, to the
 * cloud stand-in redacted), a plain prompt (to the cloud stand-in) and a secret to inference.local,
 * and burns tokens until the budget stops it. The unknown host is held (the drill policy holds even with nobody
 * attached) and approved with the real `approve` CLI. Every event kind of the schema must appear.
 *
 * Then `nemoclaw-tui --blueprint drill` with stdout not a terminal (headless) must start the same
 * drill and follow its log.
 *
 * Tests talk only to loopback: the drill's allowed and unknown hosts are loopback test servers
 * (127.0.0.2 allowed through the operator overlay, 127.0.0.3 unknown), reached through the real
 * proxy with --unsafe-allow-loopback-upstreams; the other runs keep the drill off the network
 * (DRILL_OFFLINE_ENV).
 *
 * Needs root, bubblewrap, strace and socat (CI installs them through .ci/run).
 */
import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EVENT_KINDS } from '../../src/audit/events.js';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startUpstream, type Upstream } from '../egress/harness.js';
import { DRILL_OFFLINE_ENV, makeTempHome, runCli, spawnCli, type BackgroundCli, type TempHome } from '../helpers/supervisor.js';

type Event = Record<string, unknown> & { kind: string; seq?: number };

function requirePrerequisites(): void {
  if (process.getuid?.() !== 0) throw new Error('the drill e2e test needs root (the sandbox bridge and uid switch); run it as root');
  for (const tool of ['bwrap', 'strace', 'socat']) {
    try {
      execFileSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' });
    } catch {
      throw new Error(`the drill e2e test needs ${tool}: apt-get install -y bubblewrap strace socat (see .ci/run)`);
    }
  }
}

function jsonLines(lines: string[]): Event[] {
  const out: Event[] = [];
  for (const l of lines) {
    if (!l.startsWith('{')) continue;
    try {
      const e = JSON.parse(l) as Event;
      if (typeof e.kind === 'string') out.push(e);
    } catch {
      /* a partial line */
    }
  }
  return out;
}

async function until<T>(what: string, probe: () => Promise<T | undefined> | T | undefined, timeoutMs: number, describeState: () => string): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${describeState()}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

describe('drill blueprint inside the real sandbox', () => {
  let home: TempHome;
  let follower: BackgroundCli | undefined;
  let allowedUpstream: Upstream | undefined;
  let unknownUpstream: Upstream | undefined;

  beforeAll(async () => {
    requirePrerequisites();
    home = await makeTempHome('nct-drill-');
    allowedUpstream = await startUpstream('drill-allowed', '127.0.0.2');
    unknownUpstream = await startUpstream('drill-unknown', '127.0.0.3');
  });

  afterAll(async () => {
    await follower?.kill();
    await allowedUpstream?.close();
    await unknownUpstream?.close();
    if (home) {
      await runCli(['down'], { home: home.dir, timeoutMs: 30_000 });
      await home.cleanup();
    }
  }, 60_000);

  it('`up --blueprint drill` runs the drill with no API key and every event kind appears', async () => {
    const env = { NVIDIA_API_KEY: undefined };
    const allowed = `127.0.0.2:${allowedUpstream!.port}`;
    const unknown = `127.0.0.3:${unknownUpstream!.port}`;
    // The operator's "always allow" overlay (kept across restarts) lets the drill's allowed host through.
    const sandboxDir = join(home.dir, 'sandboxes', 'default');
    mkdirSync(sandboxDir, { recursive: true, mode: 0o700 });
    writeFileSync(
      join(sandboxDir, 'overlay.yaml'),
      `version: 1\nrules:\n  - { action: allow, host: 127.0.0.2, port: ${allowedUpstream!.port}, author: cli, reason: the drill's allowed host }\n`,
      { mode: 0o600 },
    );
    const up = await runCli(
      [
        'up', '--blueprint', 'drill', '--unsafe-allow-loopback-upstreams',
        '--agent-env', `DRILL_ALLOWED_URL=http://${allowed}/ping`,
        '--agent-env', `DRILL_UNKNOWN_URL=http://${unknown}/unknown`,
      ],
      { home: home.dir, env, timeoutMs: 60_000 },
    );
    expect(up.code, `${up.stdout}\n${up.stderr}`).toBe(0);
    expect(up.stderr).toMatch(/blueprint drill \d+\.\d+\.\d+ \(sha256:[0-9a-f]{12}…\), profile hybrid/);

    // The whole history (backlog) and then live events, including transient samples.
    follower = spawnCli(['logs', '-f', '--output', 'jsonl', '-n', '1000000'], { home: home.dir, env });
    const events = (): Event[] => jsonLines(follower!.stdoutLines);
    const state = (): string => {
      const kinds = new Set(events().map((e) => e.kind));
      const agent = events()
        .filter((e) => e.kind === 'agent.log' || (e.kind === 'sandbox.lifecycle' && String(e.action ?? e.phase ?? '').length > 0))
        .slice(-40)
        .map((e) => `${e.kind} ${String(e.action ?? e.phase ?? '')} ${String(e.line ?? e.reason ?? '')}`);
      return `kinds seen: ${[...kinds].sort().join(', ')}\nmissing: ${EVENT_KINDS.filter((k) => !kinds.has(k)).join(', ')}\nlast agent events:\n${agent.join('\n')}\nfollower stderr:\n${follower!.stderrLines.join('\n')}`;
    };

    // The unknown host is held: approve it with the real CLI, from another process.
    const pending = await until(
      'the drill\'s unknown host to be held',
      async () => {
        const r = await runCli(['pending', '--json'], { home: home.dir });
        if (r.code !== 0) return undefined;
        const list = JSON.parse(r.stdout) as Array<{ id: string; host: string; port: number }>;
        return list.find((p) => p.host === '127.0.0.3');
      },
      90_000,
      state,
    );
    expect(pending.port).toBe(unknownUpstream!.port);
    expect(unknownUpstream!.requests, 'the held request reached the upstream before approval').toHaveLength(0);
    const approved = await runCli(['approve', pending.id], { home: home.dir });
    expect(approved.code, approved.stderr).toBe(0);

    // The drill finishes its first walk once the budget stops it.
    await until(
      'every event kind and the end of the first walk',
      () => {
        const kinds = new Set(events().map((e) => e.kind));
        const walked = events().some((e) => e.kind === 'agent.log' && String(e.line).startsWith('drill[1] done'));
        return walked && EVENT_KINDS.every((k) => kinds.has(k)) ? true : undefined;
      },
      150_000,
      state,
    );

    const all = events();
    const of = (kind: string): Event[] => all.filter((e) => e.kind === kind);
    const lines = of('agent.log').map((e) => String(e.line));

    // The drill ran inside the sandbox (its main process), not on the host.
    const started = of('sandbox.lifecycle').find((e) => e.phase === 'starting' && JSON.stringify(e.command ?? '').includes('/opt/nemoclaw/drill/drill.mjs'));
    expect(started, 'a sandbox started with the drill as its command').toBeDefined();
    expect(of('sandbox.lifecycle').some((e) => e.phase === 'running' && e.id === started!.id && typeof e.pid === 'number')).toBe(true);
    expect(of('sandbox.lifecycle').some((e) => e.action === 'agent.configured' && e.blueprint === 'drill')).toBe(true);

    // Network: the unknown host was requested, held, approved by the CLI and decided.
    expect(of('net.request').some((e) => e.host === '127.0.0.3')).toBe(true);
    expect(of('net.held').some((e) => e.host === '127.0.0.3')).toBe(true);
    expect(of('approval.decision').some((e) => e.by === 'cli' && e.host === '127.0.0.3')).toBe(true);
    expect(of('net.decision').some((e) => e.host === '127.0.0.3')).toBe(true);
    expect(of('net.decision').some((e) => e.host === '127.0.0.2' && e.action === 'allow')).toBe(true);
    // The approved request and the allowed one reached their (loopback) upstreams, and the drill saw both answers.
    expect(unknownUpstream!.requests.map((q) => q.url)).toContain('/unknown');
    expect(allowedUpstream!.requests.map((q) => q.url)).toContain('/ping');
    expect(lines).toContain(`drill[1] unknown-host: HTTP 200 (http://${unknown}/unknown)`);
    expect(lines).toContain(`drill[1] allowed-host: HTTP 200 (http://${allowed}/ping)`);

    // Filesystem: the write outside /sandbox is a violation with its path.
    expect(of('fs.violation').some((e) => String(e.path).startsWith('/etc/drill-was-here'))).toBe(true);
    expect(lines).toContain('drill[1] write-outside-sandbox: EROFS (/etc/drill-was-here)');
    expect(lines.some((l) => /^drill\[1\] read-hidden: ENOENT \(\/etc\/shadow\)$/.test(l))).toBe(true);

    // Inference (hybrid): PII answered by the local stub, a plain prompt by the cloud stand-in, PII
    // redacted to the cloud while a local provider is down, the secret blocked, the budget stops the burn.
    const routes = of('inference.route');
    const dones = of('inference.done');
    expect(routes.some((e) => e.rule === 'pii-local' && e.provider === 'drill-stub' && e.locality === 'local')).toBe(true);
    expect(routes.some((e) => e.rule === 'default' && e.provider === 'drill-cloud' && e.locality === 'cloud')).toBe(true);
    expect(
      dones.some((e) => e.rule === 'pii-local-down' && e.provider === 'drill-cloud' && e.fallback_from === 'drill-local-down' && e.redacted_for_fallback === true && Number(e.redactions) >= 2),
      JSON.stringify(dones.filter((e) => e.rule === 'pii-local-down')),
    ).toBe(true);
    expect(routes.some((e) => e.rule === 'secrets-never-leave')).toBe(true);
    expect(lines.some((l) => l.startsWith('drill[1] send-pii: HTTP 200 (drill stub reply'))).toBe(true);
    expect(lines.some((l) => l.startsWith('drill[1] send-plain: HTTP 200 (drill cloud stub reply'))).toBe(true);
    // The answer came back with the placeholders restored (the drill sees its own address again).
    expect(lines.some((l) => l.startsWith('drill[1] send-pii-local-down: HTTP 200 (drill cloud stub reply') && l.includes('jane.doe@acme-widgets.io') && !l.includes('<EMAIL')), lines.filter((l) => l.includes('local-down')).join('\n')).toBe(true);
    // Refused as an error, or as an assistant reply that says so (x-nemoclaw-blocked).
    expect(lines.some((l) => /^drill\[1\] send-secret: HTTP (4\d\d|200, blocked \(blocked_by_policy\))/.test(l)), lines.filter((l) => l.includes('send-secret')).join('\n')).toBe(true);
    expect(lines.some((l) => l.startsWith('drill[1] burn-tokens: stopped by the budget (HTTP 402)'))).toBe(true);
    expect(of('budget.exceeded').length).toBeGreaterThan(0);
    expect(of('inference.done').length).toBeGreaterThanOrEqual(3);

    // Meters with no GPU, the stub model's policy revision, the drill's own output.
    expect(of('gpu.sample').some((e) => e.available === false && e.message === 'no NVIDIA GPU')).toBe(true);
    expect(of('policy.revision').some((e) => Number(e.number) >= 2 && /\+\s+base_url: http:\/\/127\.0\.0\.1:\d+\/v1/.test(String(e.diff)))).toBe(true);
    expect(lines.some((l) => l.startsWith('drill[1] allowed-host: '))).toBe(true);
  }, 300_000);
});

describe('`nemoclaw-tui --blueprint drill` without a terminal', () => {
  let home: TempHome;
  let tui: BackgroundCli | undefined;

  beforeAll(async () => {
    requirePrerequisites();
    home = await makeTempHome('nct-drillh-');
  });

  afterAll(async () => {
    await tui?.kill();
    if (home) {
      await runCli(['down'], { home: home.dir, timeoutMs: 30_000 });
      await home.cleanup();
    }
  }, 60_000);

  it('starts the drill in the sandbox and follows its log (headless)', async () => {
    tui = spawnCli(['--blueprint', 'drill'], { home: home.dir, env: { NVIDIA_API_KEY: undefined, ...DRILL_OFFLINE_ENV } });
    // The headless follow prints the drill's own lines as agent.log events.
    const line = await tui.waitForLine((l) => l.includes('drill[1] allowed-host: '), 90_000);
    expect(line).toContain('agent.log');
    expect(tui.stdoutLines.some((l) => l.includes('sandbox.lifecycle') && l.includes('/opt/nemoclaw/drill/drill.mjs'))).toBe(true);
    const status = await runCli(['status', '--json'], { home: home.dir });
    expect(status.code).toBe(0);
    const agent = (JSON.parse(status.stdout) as { services: { agent: { blueprint: string; state: string } } }).services.agent;
    expect(agent.blueprint).toBe('drill');
  }, 150_000);
});

describe('the README main command on a machine with nothing set up', () => {
  let home: TempHome;
  let tui: BackgroundCli | undefined;

  beforeAll(async () => {
    requirePrerequisites();
    home = await makeTempHome('nct-first-');
  });

  afterAll(async () => {
    await tui?.kill();
    if (home) {
      await runCli(['down'], { home: home.dir, timeoutMs: 30_000 });
      await home.cleanup();
    }
  }, 60_000);

  it('`nemoclaw-tui` onboards with the defaults, picks the drill when no provider is found, and follows it', async () => {
    // What `npm start` runs (bin/nemoclaw-tui.js with no arguments), here without a terminal.
    tui = spawnCli([], { home: home.dir, env: { NVIDIA_API_KEY: undefined, NEMOCLAW_BLUEPRINT: undefined, ...DRILL_OFFLINE_ENV } });
    await tui.waitForLine((l) => l.includes('drill[1] allowed-host: '), 90_000);
    const said = tui.stderrLines.join('\n');
    expect(said).toContain('first start: no inference provider found');
    expect(said).toMatch(/drill runs supervised in sandbox "default"/);
    expect(said).toContain('nemoclaw-tui logs -f --approver');
    const status = await runCli(['status', '--json'], { home: home.dir });
    const agent = (JSON.parse(status.stdout) as { services: { agent: { blueprint: string; profile: string } } }).services.agent;
    expect(agent).toMatchObject({ blueprint: 'drill', profile: 'hybrid' });

    // Detaching leaves the agent running; the next start is not a first start and re-attaches.
    await tui.kill();
    tui = spawnCli([], { home: home.dir, env: { NVIDIA_API_KEY: undefined, ...DRILL_OFFLINE_ENV } });
    await tui.waitForLine((l) => l.includes('agent.log'), 30_000);
    expect(tui.stderrLines.join('\n')).not.toContain('first start');
  }, 150_000);
});
