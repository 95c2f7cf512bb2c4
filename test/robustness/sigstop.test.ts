/**
 * The supervisor stopped (SIGSTOP) for 60 s, then continued (SIGCONT): requests it held stay held
 * and can still be decided; a `logs -f` follower and the TUI's control client (components/
 * control-adapter.ts over src/control/client.ts) ride through it, and afterwards each has every
 * audited event exactly once, identical to the audit log by seq and hash.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/events.js';
import { ControlClient } from '../../src/control/client.js';
import { controlTuiClient } from '../../components/control-adapter.js';
import { makeTempHome, readAuditRecords, runCli, spawnCli, startDaemonSupervisor, type BackgroundCli, type DaemonSupervisor, type TempHome } from '../helpers/supervisor.js';
import { expectAuditVerifies, processAlive, sleep, supervisorPid, waitUntil } from './helpers.js';

const STOP_MS = 60_000;
const HELD = 3;

let home: TempHome;
let d: DaemonSupervisor;
let follower: BackgroundCli | undefined;
let pid = 0;
const tuiAbort = new AbortController();
const sockets: Socket[] = [];

beforeAll(async () => {
  home = await makeTempHome('nct-rstop-');
  d = await startDaemonSupervisor({
    home: home.dir,
    policyText: `version: 1
approvals:
  mode: ask
  timeout: 600s
  when_unattended: hold
network_policies: {}
`,
  });
  pid = supervisorPid(d.paths);
}, 60_000);

afterAll(async () => {
  if (pid && processAlive(pid)) process.kill(pid, 'SIGCONT');
  tuiAbort.abort();
  for (const s of sockets) s.destroy();
  await follower?.kill();
  await d?.stop();
  await home?.cleanup();
});

/** A request through the proxy socket that the supervisor holds; resolves with its status line. */
function heldRequest(i: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(d.paths.proxySocket);
    sockets.push(s);
    let head = '';
    s.setEncoding('latin1');
    s.on('connect', () => s.write(`GET http://held${i}.example/ HTTP/1.1\r\nHost: held${i}.example\r\n\r\n`));
    s.on('data', (c: string) => (head += c));
    s.on('error', () => undefined);
    s.on('close', () => resolve(head.split('\r\n')[0] ?? ''));
  });
}

/** Non-transient events by seq; fails on a repeated seq. */
function bySeq(events: AuditEvent[], who: string): Map<number, AuditEvent> {
  const m = new Map<number, AuditEvent>();
  for (const e of events) {
    if (e.transient === true || typeof e.seq !== 'number') continue;
    expect(m.has(e.seq), `${who} got seq ${e.seq} twice`).toBe(false);
    m.set(e.seq, e);
  }
  return m;
}

describe('SIGSTOP of the supervisor for 60 s, then SIGCONT', () => {
  it('held requests stay held and decidable; the follower and the TUI client recover with every event once', async () => {
    follower = spawnCli(['logs', '-f', '--output', 'jsonl'], { home: home.dir });
    await follower.waitForLine((l) => l.includes('"supervisor.start"'));
    const tui = controlTuiClient(ControlClient.forSandbox(d.name, home.dir));
    const tuiEvents: AuditEvent[] = [];
    let tuiLost = 0;
    let tuiOpen = 0;
    const tuiDone = tui.follow(
      { onEvent: (e) => void tuiEvents.push(e as AuditEvent), onOpen: () => void tuiOpen++, onLost: () => void tuiLost++ },
      tuiAbort.signal,
    );
    await waitUntil(() => tuiOpen > 0, 'the TUI client to attach');

    const answers = Array.from({ length: HELD }, (_, i) => heldRequest(i));
    await waitUntil(async () => (await d.client.pending()).length === HELD, `${HELD} held requests`);
    const held = (await d.client.pending()).map((p) => String((p as { id: unknown }).id));

    process.kill(pid, 'SIGSTOP');
    const stoppedAt = Date.now();
    // While stopped: a client command says the supervisor does not answer, cleanly, and gives up.
    const pendingWhileStopped = await runCli(['pending'], { home: home.dir, timeoutMs: 40_000 });
    expect(pendingWhileStopped.code, pendingWhileStopped.stderr).toBe(1);
    expect(pendingWhileStopped.stderr).toMatch(/did not answer/);
    await sleep(STOP_MS - (Date.now() - stoppedAt));
    process.kill(pid, 'SIGCONT');

    // Still the same supervisor, still holding the same requests, none answered meanwhile.
    await waitUntil(async () => (await d.client.pending().catch(() => [])).length === HELD, 'the held requests after SIGCONT', 20_000);
    expect((await d.client.pending()).map((p) => String((p as { id: unknown }).id)).sort()).toEqual([...held].sort());
    expect(supervisorPid(d.paths)).toBe(pid);

    // Decidable: one from the CLI, one deny from the CLI, one from the TUI client.
    expect((await runCli(['approve', held[0]!], { home: home.dir })).code).toBe(0);
    expect((await runCli(['deny', held[1]!], { home: home.dir })).code).toBe(0);
    await tui.decide(held[2]!, 'deny');
    const lines = await Promise.all(answers);
    for (const l of lines) expect(l, 'each held request got an answer').toMatch(/^HTTP\/1\.1 \d{3}/);
    expect(lines.filter((l) => /^HTTP\/1\.1 403/.test(l)).length).toBeGreaterThanOrEqual(2);
    expect(await d.client.pending()).toEqual([]);

    // Both followers reach the last audited seq.
    const last = (await d.client.status()).last_seq as number;
    await follower.waitForLine((l) => l.includes(`"seq":${last},`), 30_000);
    await waitUntil(() => tuiEvents.some((e) => e.seq === last), 'the TUI client to reach the last seq', 30_000);

    // Compared with the audit log by seq: same events, none missing, none repeated.
    const audit = readAuditRecords(d.paths.auditDir).filter((r) => (r.seq as number) <= last);
    const fromLog = bySeq(follower.stdoutLines.map((l) => JSON.parse(l) as AuditEvent), 'logs -f');
    const fromTui = bySeq(tuiEvents, 'the TUI client');
    for (const [who, got] of [['logs -f', fromLog], ['the TUI client', fromTui]] as const) {
      const first = Math.min(...got.keys());
      const expected = audit.filter((r) => (r.seq as number) >= first);
      expect([...got.keys()].sort((a, b) => a - b), `${who}: the audited seqs ${first}..${last}`).toEqual(expected.map((r) => r.seq));
      for (const r of expected) {
        const e = got.get(r.seq as number)!;
        expect({ kind: e.kind, hash: e.hash }, `${who} seq ${String(r.seq)}`).toEqual({ kind: r.kind, hash: r.hash });
      }
      console.log(`${who}: ${got.size} events compared with the audit log (seq ${first}..${last})`);
    }
    const decisions = audit.filter((r) => r.kind === 'net.decision' || r.kind === 'approval.decision');
    expect(decisions.length).toBeGreaterThanOrEqual(HELD);
    console.log(`TUI client: lost ${tuiLost} times, (re)opened ${tuiOpen} times; follower stderr: ${follower.stderrLines.join(' | ')}`);

    tuiAbort.abort();
    await tuiDone;
    await expectAuditVerifies(home.dir);
  }, 150_000);
});
