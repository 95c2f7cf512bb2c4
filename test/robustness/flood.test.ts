/**
 * An event flood (25,000 refused proxy requests = 50,000 audited events, as fast as the supervisor
 * takes them) while one event-stream client stops reading and a `logs -f` follower keeps up:
 * the stalled client is dropped with a final line saying why and how to resume, the follower gets
 * every event in order, the supervisor's memory stays bounded, and the audit chain verifies.
 */
import { connect, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { AuditEvent } from '../../src/audit/events.js';
import { makeTempHome, runCli, spawnCli, startDaemonSupervisor, type BackgroundCli, type DaemonSupervisor, type TempHome } from '../helpers/supervisor.js';
import { DENY_POLICY, expectAuditVerifies, floodProxy, supervisorPid, vmRssKb, waitUntil } from './helpers.js';

const REQUESTS = 25_000;
/** Generous: the supervisor keeps 10,000 recent events in memory and V8 collects lazily. */
const MAX_RSS_GROWTH_KB = 320 * 1024;

let home: TempHome;
let d: DaemonSupervisor;
let fast: BackgroundCli | undefined;
let stalled: Socket | undefined;

beforeAll(async () => {
  home = await makeTempHome('nct-rflood-');
  d = await startDaemonSupervisor({ home: home.dir, policyText: DENY_POLICY });
}, 60_000);

afterAll(async () => {
  stalled?.destroy();
  await fast?.kill();
  await d?.stop();
  await home?.cleanup();
});

/** An event-stream client (counted as an operator, so `status` shows when it is dropped) that stops reading after the hello. */
function openStalledFollower(socketPath: string): Promise<{ socket: Socket; received: Buffer[]; closed: Promise<void> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(socketPath);
    const received: Buffer[] = [];
    let helloSeen = false;
    const closed = new Promise<void>((r) => socket.on('close', () => r()));
    socket.on('error', reject);
    socket.on('connect', () => socket.write('GET /v1/events?follow=1&approver=1 HTTP/1.1\r\nHost: nemoclaw\r\n\r\n'));
    socket.on('data', (c: Buffer) => {
      received.push(c);
      if (!helloSeen && Buffer.concat(received).includes('"type":"hello"')) {
        helloSeen = true;
        socket.pause();
        resolve({ socket, received, closed });
      }
    });
  });
}

async function operators(): Promise<number> {
  return (await d.client.status()).operators;
}

describe('event flood with a stalled client and a live follower', () => {
  it('drops the stalled client with a clear line, keeps memory bounded and the follower complete', async () => {
    fast = spawnCli(['logs', '-f', '--output', 'jsonl'], { home: home.dir });
    await fast.waitForLine((l) => l.includes('"supervisor.start"'));
    const slow = await openStalledFollower(d.paths.controlSocket);
    stalled = slow.socket;
    await waitUntil(async () => (await operators()) === 1, 'the stalled client to count as attached');

    const pid = supervisorPid(d.paths);
    const rssBefore = vmRssKb(pid);
    let rssPeak = rssBefore;
    let droppedAtRequest: number | undefined;
    let answered = 0;
    let polling = false;
    const sampler = setInterval(() => {
      rssPeak = Math.max(rssPeak, vmRssKb(pid));
      if (droppedAtRequest !== undefined || polling) return;
      polling = true;
      operators()
        .then((n) => {
          if (n === 0) {
            droppedAtRequest = answered;
            // Read again right away: the supervisor leaves a dropped client a few seconds to take its last line.
            slow.socket.resume();
          }
        })
        .catch(() => undefined)
        .finally(() => (polling = false));
    }, 100);

    let flood;
    try {
      flood = await floodProxy(d.paths.proxySocket, REQUESTS, 64, { onProgress: (n) => (answered = n) });
    } finally {
      clearInterval(sampler);
    }
    rssPeak = Math.max(rssPeak, vmRssKb(pid));
    expect(flood.codes['403']).toBe(REQUESTS);

    // The stalled client was dropped during the flood, and its stream ends with why and how to resume.
    expect(droppedAtRequest, 'the stalled client was never dropped').toBeDefined();
    slow.socket.resume();
    await slow.closed;
    // Chunked transfer encoding: each chunk is whole lines, so the JSON lines are those starting with `{`.
    const lines = Buffer.concat(slow.received).toString('utf8').split(/\r?\n/).filter((l) => l.startsWith('{'));
    const last = JSON.parse(lines.at(-1)!) as Record<string, unknown>;
    expect(last).toMatchObject({ type: 'error', error: 'slow_client' });
    expect(last.message).toMatch(/^dropped: this client fell more than \d+ bytes behind; reconnect with since=\d+ to resume$/);

    // The live follower got every audited event, once, in order, and was never dropped.
    const lastSeq = (await d.client.status()).last_seq;
    expect(lastSeq).toBeGreaterThanOrEqual(2 * REQUESTS);
    await fast.waitForLine((l) => l.includes(`"seq":${lastSeq},`), 30_000);
    const seqs = fast.stdoutLines
      .map((l) => JSON.parse(l) as AuditEvent)
      .filter((e) => e.transient !== true)
      .map((e) => e.seq);
    const first = seqs[0]!;
    expect(seqs).toEqual(Array.from({ length: lastSeq - first + 1 }, (_, i) => first + i));
    expect(fast.stderrLines.join('\n')).toBe('');

    // Memory stayed bounded (figures in the failure message for the report).
    const growth = rssPeak - rssBefore;
    expect(growth, `VmRSS ${rssBefore} kB before, peak ${rssPeak} kB (+${growth} kB) for ${lastSeq} events`).toBeLessThan(MAX_RSS_GROWTH_KB);

    // The supervisor still answers, and a stream client can resume where the dropped one stopped.
    const since = Number(/since=(\d+)/.exec(String(last.message))![1]);
    const resumed = await d.client.events({ since, n: 5 });
    expect(resumed.length).toBe(5);
    expect(resumed.at(-1)!.seq).toBe(lastSeq);
    expect(await runCli(['pending'], { home: home.dir })).toMatchObject({ code: 0 });
    await expectAuditVerifies(home.dir);
  }, 60_000);
});
