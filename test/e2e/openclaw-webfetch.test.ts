/**
 * OpenClaw's own web_fetch tool through the egress proxy, decided by the operator (issue 15): the
 * real OpenClaw (the pinned version, installed once per machine as in openclaw.test.ts) runs under
 * the `openclaw` blueprint; a scripted model on loopback makes it call `web_fetch`; the fetch is
 * *held*; the test approves one and denies the other with a reason, as an operator would from
 * another shell (with an approver stream attached, as the TUI or `logs -f --approver` is).
 *
 * The page server is on loopback, so the supervisor runs with --unsafe-allow-loopback-upstreams in a
 * private mount namespace whose /etc/hosts maps the test's names to 127.0.0.1 (the same way as
 * test/egress/daemon-ns.ts): the proxy resolves names itself, and OpenClaw in trusted-env-proxy mode
 * leaves resolution to the proxy. Needs root, bubblewrap, strace, socat, unshare.
 */
import { createServer, type Server } from 'node:http';
import { appendFileSync, mkdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import type { EventKind } from '../../src/audit/events.js';
import { CACHE_AGENTS, requireOpenClawPrerequisites, stubOpenClawBlueprint } from '../helpers/openclaw.js';
import { BIN, makeTempHome, runCli, type TempHome } from '../helpers/supervisor.js';
import { startStubUpstream, type RecordedRequest, type StubReply, type StubUpstream } from '../stubs/upstream.js';

const MODEL = 'e2e-model';
const PAGE_MARK = 'PAGE-MARK-7731';
const DENY_REASON = 'not on the research list';

type Event = Record<string, unknown> & { kind: string; seq: number };

interface ChatMessage {
  role: string;
  content?: unknown;
}

function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (Array.isArray(content)) return content.map((p) => (typeof p === 'string' ? p : typeof (p as { text?: unknown }).text === 'string' ? (p as { text: string }).text : '')).join('');
  return '';
}

/**
 * The scripted model: a user message `FETCH <url>` makes it call web_fetch on that url; once the
 * tool's result is in the conversation it answers `Fetched …` with what came back so the test can read
 * what OpenClaw's tool returned.
 */
function scriptedModel(req: RecordedRequest): StubReply {
  if (process.env.NEMOCLAW_E2E_DUMP) appendFileSync(process.env.NEMOCLAW_E2E_DUMP, `${JSON.stringify({ path: req.path, body: req.body })}\n`);
  const body = (req.body && typeof req.body === 'object' ? req.body : {}) as { messages?: ChatMessage[]; tools?: Array<{ function?: { name?: string } }> };
  const messages = body.messages ?? [];
  // This turn: everything after the last assistant message that is not a tool call's answer. OpenClaw
  // sends the operator's text and then its own context as a second user message.
  let start = messages.length;
  while (start > 0 && messages[start - 1]!.role !== 'assistant') start--;
  // OpenClaw's text-only retry when it saw no answer after tools: say the last answer again.
  const retry = messages.slice(start).some((m) => m.role === 'user' && /did not produce a user-visible answer/.test(textOf(m.content)));
  const lastAnswer = [...messages].reverse().find((m) => m.role === 'assistant' && textOf(m.content).startsWith('Fetched'));
  if (retry && lastAnswer) return { text: textOf(lastAnswer.content) };
  const toolResult = messages.slice(start).find((m) => m.role === 'tool');
  if (toolResult) {
    // OpenClaw wraps tool output in a security notice and markers; a model answer that echoes
    // those is taken for no answer. Report what matters, in plain words.
    const raw = textOf(toolResult.content).replace(/\\n/g, '\n').replace(/\\"/g, '"');
    if (raw.includes(PAGE_MARK)) return { text: `Fetched the page. It says ${PAGE_MARK}.` };
    const body = raw.slice(raw.lastIndexOf('---') + 3).split(/<<<END|\[\[END/)[0] ?? raw;
    return { text: `Fetched nothing: the fetch failed: ${body.replace(/[<>[\]{}\\]/g, ' ').replace(/\s+/g, ' ').trim().slice(0, 1500)}` };
  }
  const shellCmd = messages.slice(start).filter((m) => m.role === 'user').map((m) => /SHELL (.+)$/m.exec(textOf(m.content))).find((m) => m !== null);
  if (shellCmd && (body.tools ?? []).some((t) => t.function?.name === 'exec')) {
    return { toolCalls: [{ name: 'exec', arguments: JSON.stringify({ title: 'fetch without the proxy', command: shellCmd[1]!.trim(), timeoutSeconds: 90 }) }] };
  }
  const fetchCmd = messages.slice(start).filter((m) => m.role === 'user').map((m) => /FETCH (\S+)/.exec(textOf(m.content))).find((m) => m !== null);
  if (fetchCmd) {
    const offered = (body.tools ?? []).map((t) => t.function?.name);
    if (offered.includes('web_fetch')) return { toolCalls: [{ name: 'web_fetch', arguments: JSON.stringify({ url: fetchCmd[1] }) }] };
    // OpenClaw's compact tool surface: deferred tools are called through tool_call by name.
    if (offered.includes('tool_call')) return { toolCalls: [{ name: 'tool_call', arguments: JSON.stringify({ id: 'web_fetch', args: { url: fetchCmd[1] } }) }] };
    return { text: `NO-WEB-FETCH-TOOL offered: ${offered.join(',')}` };
  }
  return { text: 'pong' };
}

describe('OpenClaw web_fetch, held and decided by the operator', () => {
  let home: TempHome;
  let stub: StubUpstream;
  let page: Server;
  let pagePort: number;
  let client: ControlClient;
  let stopApprover: (() => void) | undefined;
  const pageHits: string[] = [];
  const env = { NVIDIA_API_KEY: undefined };

  const events = async (kinds?: EventKind[]): Promise<Event[]> => (await client.events({ ...(kinds ? { kinds } : {}), n: 1_000_000 })) as unknown as Event[];
  const agentState = async (): Promise<string> => {
    const tail = (await events(['sandbox.lifecycle', 'agent.log', 'net.request', 'net.decision', 'net.held']).catch(() => [])).slice(-40);
    return tail.map((e) => `${e.kind} ${String(e.action ?? e.phase ?? '')} ${String(e.host ?? '')} ${String(e.line ?? e.reason ?? e.message ?? '')}`).join('\n');
  };
  async function until<T>(what: string, probe: () => Promise<T | undefined>, timeoutMs: number): Promise<T> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const v = await probe();
      if (v !== undefined) return v;
      if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}\n${await agentState()}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
  const turn = (message: string) =>
    runCli(['exec', '--', 'openclaw', 'agent', '--agent', 'main', '--message', message, '--json'], { home: home.dir, env, timeoutMs: 240_000 });

  beforeAll(async () => {
    requireOpenClawPrerequisites('the OpenClaw web_fetch e2e test', ['bwrap', 'strace', 'socat', 'nsenter', 'unshare']);
    home = await makeTempHome('nct-ocwf-');
    mkdirSync(CACHE_AGENTS, { recursive: true, mode: 0o755 });
    symlinkSync(CACHE_AGENTS, join(home.dir, 'agents'));
    page = createServer((req, res) => {
      pageHits.push(`${req.method} ${req.headers.host} ${req.url}`);
      res.setHeader('Content-Type', 'text/html; charset=utf-8');
      res.end(`<!doctype html><html><head><title>Research page</title></head><body><h1>Findings</h1><p>The answer is ${PAGE_MARK}.</p></body></html>`);
    });
    await new Promise<void>((r) => page.listen(0, '127.0.0.1', () => r()));
    pagePort = (page.address() as { port: number }).port;
    stub = await startStubUpstream({ reply: scriptedModel, models: [MODEL] });
    const blueprint = stubOpenClawBlueprint(home.dir, stub.openaiBaseUrl, MODEL);
    const hostsFile = join(home.dir, 'hosts');
    writeFileSync(hostsFile, '127.0.0.1 localhost\n127.0.0.1 research.test\n127.0.0.1 blocked.test\n127.0.0.1 direct.test\n');
    // The script is fixed; the hosts file and the command come in as positional parameters.
    const up = await execa(
      'unshare',
      ['--mount', '--propagation', 'private', '--', 'sh', '-c', 'hosts=$1; shift; mount --bind "$hosts" /etc/hosts && exec "$@"', 'sh', hostsFile, process.execPath, BIN, 'up', '--blueprint', blueprint, '--profile', 'e2e-stub', '--unsafe-allow-loopback-upstreams'],
      { env: { ...process.env, NO_COLOR: '1', JOURNAL_STREAM: undefined, NVIDIA_API_KEY: undefined, NEMOCLAW_HOME: home.dir }, extendEnv: false, reject: false, timeout: 60_000, input: '' },
    );
    if (up.exitCode !== 0) throw new Error(`up failed (exit ${up.exitCode}):\n${up.stdout}\n${up.stderr}`);
    client = ControlClient.forSandbox('default', home.dir);
    await until(
      'the OpenClaw gateway to be healthy',
      async () => {
        const life = await events(['sandbox.lifecycle']);
        const failed = life.find((e) => e.action === 'agent.failed');
        if (failed) throw new Error(`the agent failed: ${String(failed.reason)}\n${await agentState()}`);
        return life.find((e) => e.action === 'agent.healthy');
      },
      420_000,
    );
    // An operator is attached (the openclaw policy refuses at once when nobody is: when_unattended deny).
    const controller = new AbortController();
    let attached = false;
    void client
      .followEvents({ approver: true, since: (await events()).at(-1)?.seq ?? 0 }, () => undefined, { signal: controller.signal, onBacklogEnd: () => (attached = true) })
      .catch(() => undefined);
    stopApprover = () => controller.abort();
    await until('the approver stream to attach', async () => (attached ? true : undefined), 10_000);
  }, 600_000);

  afterAll(async () => {
    stopApprover?.();
    if (home) {
      await runCli(['down'], { home: home.dir, timeoutMs: 60_000 });
      rmSync(join(home.dir, 'agents'), { force: true }); // the link, never the cache
      await home.cleanup();
    }
    await stub?.close();
    await new Promise<void>((r) => (page ? page.close(() => r()) : r()));
  }, 90_000);

  it('a fetch of an unknown host is held; approved once, the page reaches the agent', async () => {
    const url = `http://research.test:${pagePort}/findings`;
    const running = turn(`FETCH ${url}`);
    const held = await until('the fetch to be held', async () => (await client.pending()).find((p) => p.host === 'research.test' && p.port === pagePort), 120_000);
    expect(pageHits).toEqual([]);
    const decided = await client.decide(held.id, 'once', 'cli');
    expect(decided).toMatchObject({ decision: 'once' });
    const r = await running;
    expect(r.code, `${r.stdout}\n${r.stderr}\n${await agentState()}`).toBe(0);
    expect(r.stdout).toContain(`It says ${PAGE_MARK}`);
    expect(pageHits).toEqual([`GET research.test:${pagePort} /findings`]);
    const decisions = (await events(['net.decision'])).filter((e) => e.host === 'research.test');
    expect(decisions.at(-1)).toMatchObject({ action: 'allow', port: pagePort });
  }, 300_000);

  it('a denied fetch fails inside OpenClaw with the operator\'s reason, and the host is never contacted', async () => {
    const url = `http://blocked.test:${pagePort}/secret`;
    const running = turn(`FETCH ${url}`);
    const held = await until('the fetch to be held', async () => (await client.pending()).find((p) => p.host === 'blocked.test'), 120_000);
    await client.decide(held.id, 'deny', 'cli', DENY_REASON);
    const r = await running;
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain('the fetch failed');
    expect(r.stdout).not.toContain(PAGE_MARK);
    expect(r.stdout).toContain(DENY_REASON);
    expect(pageHits.filter((h) => h.includes('blocked.test'))).toEqual([]);
  }, 300_000);
  it('a command that ignores the proxy variables (curl --noproxy, run by OpenClaw\'s exec tool) is held and decided the same way', async () => {
    // Transparent interception (root, nftables): the name is resolved by the supervisor's DNS
    // responder and the direct connect lands at the proxy under that name.
    const url = `http://direct.test:${pagePort}/direct`;
    const running = turn(`SHELL curl -s -S --noproxy '*' --max-time 80 ${url}`);
    const held = await until('the direct connect to be held', async () => (await client.pending()).find((p) => p.host === 'direct.test'), 120_000);
    expect(pageHits.filter((h) => h.includes('direct.test'))).toEqual([]);
    await client.decide(held.id, 'once', 'cli');
    const r = await running;
    expect(r.code, `${r.stdout}\n${r.stderr}`).toBe(0);
    expect(r.stdout).toContain(`It says ${PAGE_MARK}`);
    expect(pageHits.filter((h) => h.includes('direct.test'))).toEqual([`GET direct.test:${pagePort} /direct`]);
    const dns = (await events(['net.dns' as EventKind])).filter((e) => JSON.stringify(e).includes('direct.test'));
    expect(dns.length, 'the lookup of direct.test was recorded').toBeGreaterThan(0);
  }, 300_000);
});
