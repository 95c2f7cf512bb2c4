/**
 * OpenClaw end to end, inside the real sandbox: the pinned OpenClaw and its Node 24 are installed
 * by the agent service into the test's $NEMOCLAW_HOME/agents (a link to a machine-wide cache keyed
 * by version, so reruns on one machine skip the ~45 s, ~650 MB download), `up --blueprint` starts
 * `openclaw gateway run` as the sandbox's main process, and one agent turn runs through
 * `nemoclaw-tui exec -- openclaw agent …` (which joins the agent's network namespace and talks to
 * its gateway). The router's only provider is a stub upstream on loopback (the router runs outside
 * the sandbox and dials it directly; the egress proxy's SSRF guard is not involved).
 *
 * Asserts: the stub's reply reached the caller; exactly one inference.route and one inference.done
 * for the turn; and no connection other than to inference.local was attempted (that would show as
 * a net.request / a denied net.decision).
 *
 * Needs root, bubblewrap, strace, socat and access to the npm registry on the first run.
 */
import { existsSync, lstatSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { EventKind } from '../../src/audit/events.js';
import { CACHE_AGENTS, requireOpenClawPrerequisites, stubOpenClawBlueprint } from '../helpers/openclaw.js';
import { makeTempHome, runCli, type TempHome } from '../helpers/supervisor.js';
import { startStubUpstream, type StubUpstream } from '../stubs/upstream.js';

const REPLY = 'PONG-4417: the stub model answered through the privacy router';
const MODEL = 'e2e-model';

type Event = Record<string, unknown> & { kind: string; seq: number };

async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number, state: () => Promise<string>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${await state()}`);
    await new Promise((r) => setTimeout(r, 500));
  }
}

describe('OpenClaw inside the real sandbox', () => {
  let home: TempHome;
  let stub: StubUpstream;
  let client: ControlClient;
  const timings: Record<string, number> = {};

  const events = async (kinds?: EventKind[]): Promise<Event[]> =>
    (await client.events({ ...(kinds ? { kinds } : {}), n: 1_000_000 })) as unknown as Event[];
  const agentState = async (): Promise<string> => {
    const tail = (await events(['sandbox.lifecycle', 'agent.log']).catch(() => [])).slice(-40);
    return tail.map((e) => `${e.kind} ${String(e.action ?? e.phase ?? '')} ${String(e.line ?? e.reason ?? e.message ?? '')}`).join('\n');
  };

  beforeAll(async () => {
    requireOpenClawPrerequisites('the OpenClaw e2e test', ['bwrap', 'strace', 'socat', 'nsenter']);
    home = await makeTempHome('nct-oc-');
    mkdirSync(CACHE_AGENTS, { recursive: true, mode: 0o755 });
    symlinkSync(CACHE_AGENTS, join(home.dir, 'agents'));
    stub = await startStubUpstream({ reply: () => ({ text: REPLY }), models: [MODEL] });
    client = ControlClient.forSandbox('default', home.dir);
  });

  afterAll(async () => {
    if (home) {
      await runCli(['down'], { home: home.dir, timeoutMs: 60_000 });
      rmSync(join(home.dir, 'agents'), { force: true }); // the link, never the cache
      await home.cleanup();
    }
    await stub?.close();
    // eslint-disable-next-line no-console
    console.log(`openclaw e2e timings (ms): ${JSON.stringify(timings)}`);
  }, 90_000);

  it('installs, starts the gateway, answers one turn through inference.local and reaches nothing else', async () => {
    const blueprint = stubOpenClawBlueprint(home.dir, stub.openaiBaseUrl, MODEL);
    const env = { NVIDIA_API_KEY: undefined };
    let t0 = Date.now();
    const up = await runCli(['up', '--blueprint', blueprint, '--profile', 'e2e-stub'], { home: home.dir, env, timeoutMs: 60_000 });
    expect(up.code, `${up.stdout}\n${up.stderr}`).toBe(0);
    expect(up.stderr).toMatch(/blueprint openclaw 1\.0\.1 \(sha256:[0-9a-f]{12}…\), profile e2e-stub/);

    // Installing (first run on a machine) and then the gateway listening on its port in the sandbox.
    const healthy = await until(
      'the OpenClaw gateway to be healthy',
      async () => {
        const life = await events(['sandbox.lifecycle']);
        const failed = life.find((e) => e.action === 'agent.failed');
        if (failed) throw new Error(`the agent failed: ${String(failed.reason)}\n${await agentState()}`);
        return life.find((e) => e.action === 'agent.healthy');
      },
      420_000,
      agentState,
    );
    timings.up_to_healthy = Date.now() - t0;
    const installed = (await events(['sandbox.lifecycle'])).some((e) => e.action === 'agent.installing');
    timings.installed_now = installed ? 1 : 0;
    expect(existsSync(join(CACHE_AGENTS, 'openclaw-2026.9.6', '.nemoclaw-installed.json'))).toBe(true);
    expect(existsSync(join(home.dir, 'sandboxes', 'default', 'workdir', '.openclaw', 'openclaw.json'))).toBe(true);
    const afterHealthy = healthy.seq;

    // The generated config is valid for the real OpenClaw, web_fetch included (it must use the proxy).
    const validate = await runCli(['exec', '--', 'openclaw', 'config', 'validate'], { home: home.dir, env, timeoutMs: 120_000 });
    expect(validate.code, `${validate.stdout}\n${validate.stderr}`).toBe(0);
    expect(validate.stdout).toMatch(/Config valid/);
    // No noise: the `~/.npmrc` hidden rule over a sandbox home that has no .npmrc is not a violation.
    const npmrc = (await events(['fs.violation'])).filter((e) => String(e.path).endsWith('/.npmrc'));
    expect(npmrc, JSON.stringify(npmrc)).toEqual([]);
    const fetchProxy = await runCli(['exec', '--', 'openclaw', 'config', 'get', 'tools.web.fetch.useTrustedEnvProxy'], { home: home.dir, env, timeoutMs: 120_000 });
    expect(fetchProxy.stdout.trim()).toBe('true');

    // One agent turn from a second process, through the gateway on the sandbox's loopback.
    t0 = Date.now();
    const turn = await runCli(['exec', '--', 'openclaw', 'agent', '--agent', 'main', '--message', 'Say pong.', '--json'], {
      home: home.dir,
      env,
      timeoutMs: 240_000,
    });
    timings.agent_turn = Date.now() - t0;
    expect(turn.code, `stdout:\n${turn.stdout}\nstderr:\n${turn.stderr}\n${await agentState()}`).toBe(0);
    expect(turn.stdout).toContain(REPLY);

    // The router saw exactly this turn: one route, one done, to the stub, answered 200.
    const all = await events();
    const routes = all.filter((e) => e.kind === 'inference.route');
    const done = all.filter((e) => e.kind === 'inference.done');
    expect(routes, JSON.stringify(routes, null, 1)).toHaveLength(1);
    expect(done).toHaveLength(1);
    expect(routes[0]).toMatchObject({ provider: 'e2e-stub', model: MODEL, action: 'provider', rule: 'default' });
    expect(done[0]).toMatchObject({ id: routes[0]!.id, provider: 'e2e-stub', status: 200, outcome: 'ok' });
    expect(routes[0]!.seq).toBeGreaterThan(afterHealthy);
    const chats = stub.requests.filter((r) => r.method === 'POST' && r.path.endsWith('/chat/completions'));
    expect(chats).toHaveLength(1);
    // The sandbox's token never reaches the provider: the router replaces the caller's Authorization.
    expect(String(chats[0]!.headers.authorization ?? '')).not.toMatch(/Bearer \S{20,}/);

    // Nothing but inference.local: any other connection attempt would be a net.request and a decision.
    const net = all.filter((e) => e.kind === 'net.request' || e.kind === 'net.decision' || e.kind === 'net.held');
    expect(net, JSON.stringify(net, null, 1)).toEqual([]);
  }, 900_000);

  it('a pasted secret is blocked in a form OpenClaw shows as the router\'s reason, and the next turn works (issue 13 item 7)', async () => {
    // A 403 made OpenClaw say "authentication failed, re-authenticate" and disable the provider for
    // a minute; the default block reply is an assistant message carrying the reason.
    const env = { NVIDIA_API_KEY: undefined };
    const secret = `ghp_${'aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5'}`;
    const before = stub.requests.length;
    const blocked = await runCli(['exec', '--', 'openclaw', 'agent', '--agent', 'main', '--message', `Please keep my token ${secret} for later.`, '--json'], { home: home.dir, env, timeoutMs: 240_000 });
    expect(blocked.code, `${blocked.stdout}\n${blocked.stderr}`).toBe(0);
    expect(blocked.stdout).toContain('[nemoclaw-tui privacy router] blocked');
    expect(blocked.stdout).not.toMatch(/authentication failed|Re-authenticate/i);
    expect(stub.requests.slice(before).some((r) => JSON.stringify(r).includes(secret))).toBe(false);
    const done = (await events(['inference.done'])).at(-1);
    expect(done).toMatchObject({ status: 200, outcome: 'blocked' });
    // The provider was not disabled: the next turn is answered.
    const next = await runCli(['exec', '--', 'openclaw', 'agent', '--agent', 'main', '--message', 'Say pong.', '--json'], { home: home.dir, env, timeoutMs: 240_000 });
    expect(next.code, `${next.stdout}\n${next.stderr}`).toBe(0);
    expect(next.stdout).toContain(REPLY);
  }, 600_000);

  it('a config link planted by the agent is refused at the next start: root never reads or writes through it (issue 11)', async () => {
    // The red team's attack: from inside, replace openclaw.json with a link to a root-only file
    // (the host path is known from /proc/self/mountinfo), then wait for the root supervisor's restart.
    const canary = join(home.dir, 'canary-secret.json');
    writeFileSync(canary, '{"stolen": "nvapi-canary-0123456789"}\n', { mode: 0o600 });
    const env = { NVIDIA_API_KEY: undefined };
    const plant = await runCli(['exec', '--', '/bin/sh', '-c', `rm -f /sandbox/.openclaw/openclaw.json && ln -s ${canary} /sandbox/.openclaw/openclaw.json && echo planted`], { home: home.dir, env, timeoutMs: 60_000 });
    expect(plant.stdout, plant.stderr).toContain('planted');
    expect((await runCli(['down'], { home: home.dir, timeoutMs: 60_000 })).code).toBe(0);
    const blueprint = stubOpenClawBlueprint(home.dir, stub.openaiBaseUrl, MODEL);
    const up = await runCli(['up', '--blueprint', blueprint, '--profile', 'e2e-stub'], { home: home.dir, env, timeoutMs: 60_000 });
    const refusal = await until(
      'the agent start to refuse the planted link',
      async () => {
        const life = await events(['sandbox.lifecycle']);
        return life.find((e) => e.action === 'agent.failed' && /symbolic link/.test(String(e.reason ?? e.message ?? '')));
      },
      120_000,
      async () => `${up.stdout}\n${up.stderr}\n${await agentState()}`,
    );
    expect(String(refusal.reason ?? refusal.message)).toMatch(/openclaw\.json/);
    // The link is still a link, the canary unchanged and still root's alone.
    const cfg = join(home.dir, 'sandboxes', 'default', 'workdir', '.openclaw', 'openclaw.json');
    expect(lstatSync(cfg).isSymbolicLink()).toBe(true);
    expect(readFileSync(canary, 'utf8')).toBe('{"stolen": "nvapi-canary-0123456789"}\n');
    const st = lstatSync(canary);
    expect([st.uid, st.mode & 0o777]).toEqual([0, 0o600]);
  }, 300_000);
});
