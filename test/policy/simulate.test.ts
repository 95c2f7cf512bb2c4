/**
 * `policy simulate`: the pure replay core (pairing, normalising recorded verdicts, aggregation,
 * candidate decisions), the audit reader (chain checks, torn tails, gzip), and the CLI on a REAL
 * audit log written by a real in-process supervisor whose egress proxy served requests on loopback.
 */
import { appendFileSync, cpSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AuditLog } from '../../src/audit/index.js';
import type { EventInput } from '../../src/audit/events.js';
import { main } from '../../src/cli/main.js';
import type { CliIo } from '../../src/cli/util.js';
import { createEgressService } from '../../src/egress/index.js';
import {
  applyUnifiedDiff,
  candidateOf,
  collectNetReplay,
  evaluateReplay,
  parsePolicy,
  readAuditEvents,
  simulatePolicy,
  simulationFails,
  unifiedDiff,
  withOverlay,
  type SimulationResult,
  type SimulationRow,
} from '../../src/policy/index.js';
import { makeTempHome, startTestSupervisor, type TempHome, type TestSupervisor } from '../helpers/supervisor.js';
import { proxyConnect, proxyRequest, rawExchange, startEcho, startUpstream, testResolver, type Upstream } from '../egress/harness.js';

// ---------------------------------------------------------------------------------------------
// helpers

function policyDoc(yaml: string) {
  return parsePolicy(yaml, 'candidate.yaml').doc;
}

function candidate(yaml: string) {
  return candidateOf(policyDoc(yaml));
}

let seq = 0;
function ev(kind: string, fields: Record<string, unknown>): Record<string, unknown> {
  return { ts: new Date(1_700_000_000_000 + seq * 1000).toISOString(), seq: ++seq, kind, level: 'info', sandbox: 'default', ...fields };
}

function req(id: string, host: string, port: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return ev('net.request', { id, method: 'GET', host, port, path: '/', binary: null, ...extra });
}

function allow(id: string, host: string, port: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return ev('net.decision', { id, action: 'allow', source: 'policy', reason: 'x', host, port, binary: null, rule: 'p/0', pending_id: null, ...extra });
}

function deny(id: string, host: string, port: number, extra: Record<string, unknown> = {}): Record<string, unknown> {
  return ev('net.decision', { id, action: 'deny', error: 'policy_denied', reason: 'x', host, port, binary: null, rule: null, pending_id: null, ...extra });
}

function row(result: SimulationResult, match: Partial<SimulationRow>): SimulationRow {
  const found = result.rows.find((r) => Object.entries(match).every(([k, v]) => (r as unknown as Record<string, unknown>)[k] === v));
  if (!found) throw new Error(`no row ${JSON.stringify(match)} in ${JSON.stringify(result.rows, null, 1)}`);
  return found;
}

const ANY = 'binaries: [{ path: "/**" }]';

const BASE = `version: 1
network_policies:
  web:
    ${ANY}
    endpoints:
      - host: a.test
        port: 443
      - host: api.test
        port: 443
        protocol: rest
        rules:
          - allow: { method: GET, path: "/v1/**" }
approvals: { mode: ask }
`;

// ---------------------------------------------------------------------------------------------
// pure core

describe('simulate core', () => {
  it('pairs requests with their decisions, aggregates duplicates and normalises recorded verdicts', async () => {
    const events = [
      req('r-1', 'a.test', 443),
      allow('r-1', 'a.test', 443),
      req('r-2', 'a.test', 443),
      allow('r-2', 'a.test', 443, { reused: true, reason: 'same target on a keep-alive connection' }),
      // L4 admission, then the L7 refusal of the same request: the last decision counts
      req('r-3', 'api.test', 443, { method: 'POST', path: '/v1/x' }),
      allow('r-3', 'api.test', 443, { rule: 'web/1' }),
      deny('r-3', 'api.test', 443, { method: 'POST', path: '/v1/x', rule: 'web/1', l7: true }),
      // held, approved once
      req('r-4', 'new.test', 443),
      ev('net.held', { id: 'r-4', pending_id: 'p-1', host: 'new.test', port: 443 }),
      ev('approval.decision', { id: 'p-1', pending_id: 'p-1', decision: 'once', host: 'new.test', port: 443 }),
      allow('r-4', 'new.test', 443, { source: 'approval', rule: null, pending_id: 'p-1' }),
      // held, timed out
      req('r-5', 'slow.test', 443),
      ev('net.held', { id: 'r-5', pending_id: 'p-2', host: 'slow.test', port: 443 }),
      deny('r-5', 'slow.test', 443, { error: 'approval_timeout', pending_id: 'p-2' }),
      // a session grant decides later requests: still "ask" (a fresh session asks again)
      req('r-6', 'new.test', 443),
      allow('r-6', 'new.test', 443, { rule: 'session:allow:new.test:443/0' }),
      // not replayed: inference, SSRF, a revocation, a request with no decision
      req('r-7', 'inference.local', 80),
      req('r-8', 'b.test', 443),
      deny('r-8', 'b.test', 443, { error: 'ssrf_denied', rule: 'web/0' }),
      ev('net.decision', { action: 'revoke', host: 'a.test', port: 443, rule: 'web/0' }),
      req('r-9', 'c.test', 443),
    ];
    const replay = await collectNetReplay(events);
    expect(replay.total).toBe(6);
    const a = replay.requests.find((r) => r.host === 'a.test')!;
    expect(a).toMatchObject({ count: 2, old: 'allow', old_rule: 'p/0' });
    expect(replay.requests.find((r) => r.host === 'api.test')).toMatchObject({ old: 'deny', method: 'POST', path: '/v1/x' });
    expect(replay.requests.filter((r) => r.host === 'new.test')).toEqual([expect.objectContaining({ old: 'ask', count: 2 })]);
    expect(replay.requests.find((r) => r.host === 'slow.test')).toMatchObject({ old: 'ask', old_detail: 'held, timed out' });
    const reasons = replay.skipped.map((s) => s.reason).join('\n');
    expect(reasons).toMatch(/inference traffic/);
    expect(reasons).toMatch(/ssrf_denied/);
    expect(reasons).toMatch(/revoked/);
    expect(reasons).toMatch(/no decision recorded/);
  });

  it('requests inside a CONNECT tunnel inherit its recorded verdict; request ids restart with each supervisor', async () => {
    const events = [
      req('r-1', 'a.test', 443, { method: 'CONNECT', path: null }),
      ev('net.held', { id: 'r-1', pending_id: 'p-1', host: 'a.test', port: 443 }),
      allow('r-1', 'a.test', 443, { source: 'approval', pending_id: 'p-1', rule: null }),
      req('r-2', 'a.test', 443, { path: '/in', tunnelled: true }),
      ev('sandbox.lifecycle', { action: 'supervisor.start' }),
      // the new supervisor reuses r-1: a new request, not the old one's decision
      req('r-1', 'a.test', 443, { path: '/again' }),
      allow('r-1', 'a.test', 443),
    ];
    const replay = await collectNetReplay(events);
    expect(replay.requests.find((r) => r.method === 'CONNECT')).toMatchObject({ old: 'ask', path: null });
    expect(replay.requests.find((r) => r.path === '/in')).toMatchObject({ old: 'ask', tunnelled: true });
    expect(replay.requests.find((r) => r.path === '/again')).toMatchObject({ old: 'allow', count: 1 });
  });

  it('tightening, widening, L7 path changes and approvals.mode are decided by the candidate', async () => {
    const events = [
      req('r-1', 'a.test', 443),
      allow('r-1', 'a.test', 443, { rule: 'web/0' }),
      req('r-2', 'api.test', 443, { path: '/v1/users' }),
      allow('r-2', 'api.test', 443, { rule: 'web/1' }),
      req('r-3', 'api.test', 443, { path: '/v1/admin' }),
      allow('r-3', 'api.test', 443, { rule: 'web/1' }),
      req('r-4', 'new.test', 443),
      ev('net.held', { id: 'r-4', pending_id: 'p-1', host: 'new.test', port: 443 }),
      deny('r-4', 'new.test', 443, { pending_id: 'p-1', reason: 'denied by tui (deny)' }),
      req('r-5', 'gone.test', 443),
      deny('r-5', 'gone.test', 443, { rule: 'blocked/0' }),
    ];
    const tighter = `version: 1
network_policies:
  web:
    ${ANY}
    endpoints:
      - host: api.test
        port: 443
        protocol: rest
        rules:
          - allow: { method: GET, path: "/v1/users" }
      - host: new.test
        port: 443
approvals: { mode: deny }
`;
    const result = await simulatePolicy(events, candidate(tighter));
    expect(row(result, { host: 'a.test' })).toMatchObject({ old: 'allow', new: 'deny', change: 'tighten', rule: null });
    expect(row(result, { path: '/v1/users' })).toMatchObject({ old: 'allow', new: 'allow', change: 'unchanged', rule: 'web/0' });
    expect(row(result, { path: '/v1/admin' })).toMatchObject({ old: 'allow', new: 'deny', change: 'tighten', rule: 'web/0' });
    expect(row(result, { host: 'new.test' })).toMatchObject({ old: 'ask', new: 'allow', change: 'widen' });
    expect(row(result, { host: 'gone.test' })).toMatchObject({ old: 'deny', new: 'deny', change: 'unchanged' });
    expect(result.summary).toMatchObject({ requests: 5, distinct: 5, unchanged: 2, newly_refused: 2, newly_allowed: 1, now_ask: 0, tightened: 2, widened: 1 });
    expect(result.rows.map((r) => r.change)).toEqual(['tighten', 'tighten', 'widen', 'unchanged', 'unchanged']);
    expect(simulationFails(result.summary, 'tighten')).toBe(true);
    expect(simulationFails(result.summary, 'widen')).toBe(true);
    expect(simulationFails(result.summary, 'none')).toBe(false);

    // Under approvals.mode ask an unknown target would be held instead.
    const asking = await simulatePolicy(events, candidate(tighter.replace('mode: deny', 'mode: ask')));
    expect(row(asking, { host: 'a.test' })).toMatchObject({ new: 'ask', change: 'tighten' });
    // a.test allow -> ask; gone.test was refused by a rule the candidate lacks: deny -> ask
    expect(row(asking, { host: 'gone.test' })).toMatchObject({ new: 'ask', change: 'widen' });
    expect(asking.summary.now_ask).toBe(2);
    // The same policy as recorded changes nothing.
    const same = await simulatePolicy(events.slice(0, 6), candidate(BASE));
    expect(same.summary).toMatchObject({ unchanged: 3, tightened: 0, widened: 0 });
    expect(simulationFails(same.summary, 'any')).toBe(false);
  });

  it('the overlay: "always" grants in the log are merged like the supervisor merges them; binaries are honoured', async () => {
    const events = [
      req('r-1', 'new.test', 443, { binary: '/usr/bin/curl' }),
      ev('net.held', { id: 'r-1', pending_id: 'p-1', host: 'new.test', port: 443 }),
      ev('approval.decision', { id: 'p-1', decision: 'always', host: 'new.test', port: 443, binary: '/usr/bin/curl', rule_binary: '/usr/bin/curl' }),
      allow('r-1', 'new.test', 443, { binary: '/usr/bin/curl', rule: 'overlay:allow:new.test:443@/usr/bin/curl/0', pending_id: 'p-1' }),
      req('r-2', 'new.test', 443, { binary: '/usr/bin/curl' }),
      allow('r-2', 'new.test', 443, { binary: '/usr/bin/curl', rule: 'overlay:allow:new.test:443@/usr/bin/curl/0' }),
      req('r-3', 'new.test', 443, { binary: '/usr/bin/wget' }),
      ev('net.held', { id: 'r-3', pending_id: 'p-2', host: 'new.test', port: 443 }),
      deny('r-3', 'new.test', 443, { binary: '/usr/bin/wget', pending_id: 'p-2' }),
    ];
    const replay = await collectNetReplay(events);
    expect(replay.overlay).toEqual([{ action: 'allow', host: 'new.test', port: 443, binary: '/usr/bin/curl' }]);
    const withIt = evaluateReplay(replay, candidateOf(withOverlay(policyDoc(BASE), replay.overlay)));
    expect(row(withIt, { binary: '/usr/bin/curl', old: 'allow' })).toMatchObject({ new: 'allow', change: 'unchanged' });
    expect(row(withIt, { binary: '/usr/bin/curl', old: 'ask' })).toMatchObject({ new: 'allow', change: 'widen' });
    expect(row(withIt, { binary: '/usr/bin/wget' })).toMatchObject({ old: 'ask', new: 'ask', change: 'unchanged' });
    const without = evaluateReplay(replay, candidateOf(policyDoc(BASE)));
    expect(row(without, { binary: '/usr/bin/curl', old: 'allow' })).toMatchObject({ new: 'ask', change: 'tighten' });
  });

  it('marks rows decided by query matchers as approximate, and folds paths past maxRows', async () => {
    const q = `version: 1
network_policies:
  web:
    ${ANY}
    endpoints:
      - host: api.test
        port: 443
        protocol: rest
        rules:
          - allow: { method: GET, path: "/**", query: { page: "*" } }
`;
    const events = [req('r-1', 'api.test', 443, { path: '/list' }), allow('r-1', 'api.test', 443)];
    const r = await simulatePolicy(events, candidate(q));
    expect(r.rows[0]!.approximate).toMatch(/query/);

    const many: Array<Record<string, unknown>> = [];
    for (let i = 0; i < 50; i++) many.push(req(`r-${i}`, 'a.test', 443, { path: `/p/${i}` }), allow(`r-${i}`, 'a.test', 443));
    const folded = await simulatePolicy(many, candidate(BASE), { maxRows: 10 });
    expect(folded.folded).toBe(true);
    expect(folded.rows).toHaveLength(11);
    expect(folded.summary.requests).toBe(50);
    expect(row(folded, { path: '(other paths)' }).count).toBe(40);
  });

  it('bounded memory: past the window the oldest undecided request is settled; decisions that come later are orphans', async () => {
    const events: Array<Record<string, unknown>> = [];
    for (let i = 1; i <= 6; i++) events.push(req(`r-${i}`, 'a.test', 443, { path: `/${i}` }));
    // r-1 and r-2 fell out of a window of 4 before their decisions came
    for (let i = 1; i <= 6; i++) events.push(allow(`r-${i}`, 'a.test', 443));
    const replay = await collectNetReplay(events, { window: 4 });
    expect(replay.total).toBe(4);
    expect(replay.requests.map((r) => r.path).sort()).toEqual(['/3', '/4', '/5', '/6']);
    expect(replay.skipped).toEqual([
      expect.objectContaining({ count: 2, seqs: [events[0]!.seq, events[1]!.seq], reason: expect.stringMatching(/no decision recorded/) }),
      expect.objectContaining({ count: 2, reason: expect.stringMatching(/net.request is not in the log/) }),
    ]);
  });

  it('rebuilds policy revisions from their diffs (applyUnifiedDiff inverts unifiedDiff)', () => {
    const texts = ['', 'a\nb\nc\n', 'a\nB\nc\nd\n', 'x\n', Array.from({ length: 40 }, (_, i) => `line ${i}`).join('\n') + '\n', Array.from({ length: 40 }, (_, i) => (i % 7 === 0 ? `changed ${i}` : `line ${i}`)).join('\n') + '\n', ''];
    for (let i = 1; i < texts.length; i++) {
      expect(applyUnifiedDiff(texts[i - 1]!, unifiedDiff(texts[i - 1]!, texts[i]!))).toBe(texts[i]);
    }
    expect(applyUnifiedDiff('other\n', unifiedDiff('a\nb\n', 'a\nc\n'))).toBeUndefined();
  });
});

// ---------------------------------------------------------------------------------------------
// reading audit logs

describe('simulate reader', () => {
  let home: TempHome;
  beforeAll(async () => {
    home = await makeTempHome('nct-simr-');
  });
  afterAll(async () => {
    await home.cleanup();
  });

  async function writeLog(dir: string, inputs: EventInput[], opts: { maxFileBytes?: number } = {}): Promise<void> {
    const log = await AuditLog.open({ dir, sandbox: 'default', ...opts });
    for (const e of inputs) log.append(e);
    await log.close();
  }

  async function readAll(path: string) {
    const { events, report } = readAuditEvents(path);
    const out: Array<Record<string, unknown>> = [];
    for await (const e of events) out.push(e);
    return { out, report };
  }

  const inputs: EventInput[] = [];
  for (let i = 1; i <= 20; i++) {
    inputs.push({ kind: 'net.request', id: `r-${i}`, method: 'GET', host: 'a.test', port: 443, path: `/${i}`, binary: null });
    inputs.push({ kind: 'net.decision', id: `r-${i}`, action: 'allow', source: 'policy', host: 'a.test', port: 443, binary: null, rule: 'web/0', pending_id: null });
  }

  it('reads rotated segments in order with an intact chain, plain and gzipped', async () => {
    const dir = join(home.dir, 'rotated');
    await writeLog(dir, inputs, { maxFileBytes: 2_000 });
    const files = readdirSync(dir).sort();
    expect(files.length).toBeGreaterThan(2);
    const plain = await readAll(dir);
    expect(plain.report).toMatchObject({ ok: true, records: 40, intact: 40, tornTail: false });
    expect(plain.out.map((e) => e.seq)).toEqual(Array.from({ length: 40 }, (_, i) => i + 1));
    // gzip every segment but the newest (what log rotation tools do)
    for (const f of files.slice(0, -1)) {
      writeFileSync(join(dir, `${f}.gz`), gzipSync(readFileSync(join(dir, f))));
      // keep only the gzipped copy
      writeFileSync(join(dir, f), '');
    }
    const onlyGz = join(home.dir, 'gz');
    mkdirSync(onlyGz);
    for (const f of readdirSync(dir)) if (f.endsWith('.gz') || f === files.at(-1)) cpSync(join(dir, f), join(onlyGz, f));
    const gz = await readAll(onlyGz);
    expect(gz.report).toMatchObject({ ok: true, records: 40, intact: 40 });
    const result = await simulatePolicy(gz.out, candidate(BASE));
    expect(result.summary).toMatchObject({ requests: 20, unchanged: 20 });
  });

  it('a torn last line is noted, not an error; an edited record is skipped and named; removed records are reported', async () => {
    const dir = join(home.dir, 'bad');
    await writeLog(dir, inputs);
    const file = join(dir, 'audit-000001.jsonl');
    appendFileSync(file, '{"ts":"2026-01-01T00:00:00.000Z","seq":41,"kind":"net.requ');
    const torn = await readAll(dir);
    expect(torn.report).toMatchObject({ ok: true, tornTail: true, records: 40 });

    const lines = readFileSync(file, 'utf8').split('\n');
    // seq 3 (a net.request): host edited without re-hashing; seq 10 removed
    lines[2] = lines[2]!.replace('"host":"a.test"', '"host":"evil.test"');
    lines.splice(9, 1);
    writeFileSync(file, lines.join('\n'));
    const bad = await readAll(dir);
    expect(bad.report.ok).toBe(false);
    expect(bad.report.problems).toEqual([
      expect.objectContaining({ seq: 3, skipped: true, reason: expect.stringMatching(/record edited/) }),
      expect.objectContaining({ seq: 11, skipped: false, reason: expect.stringMatching(/expected seq 10, found 11/) }),
    ]);
    expect(bad.out.some((e) => e.host === 'evil.test')).toBe(false);
    const replay = await collectNetReplay(bad.out);
    // r-2's request was edited (skipped) and r-5's decision removed: neither is replayed
    expect(replay.total).toBe(18);
    expect(replay.skipped.map((g) => g.reason).join('\n')).toMatch(/net.request is not in the log[^]*no decision recorded|no decision recorded[^]*net.request is not in the log/);
  });

  it('a missing path is a not_found error naming it, with the next step', async () => {
    const { events } = readAuditEvents(join(home.dir, 'nope'));
    await expect(collectNetReplay(events)).rejects.toMatchObject({ code: 'not_found', exitCode: 2, message: expect.stringContaining(join(home.dir, 'nope')) });
  });
});

// ---------------------------------------------------------------------------------------------
// CLI on a real audit log

function captureIo(env: NodeJS.ProcessEnv): { io: CliIo; out: () => string; err: () => string } {
  let out = '';
  let err = '';
  return {
    io: { stdout: { write: (s: string) => ((out += s), true) }, stderr: { write: (s: string) => ((err += s), true) }, env },
    out: () => out,
    err: () => err,
  };
}

describe('policy simulate (CLI, real supervisor and proxy on loopback)', () => {
  let up: Upstream;
  let echo: Awaited<ReturnType<typeof startEcho>>;
  let home: TempHome;
  let t: TestSupervisor | undefined;
  let auditDir: string;
  let port: number;
  const files: Record<string, string> = {};

  const recordedPolicy = (p: number, e: number): string => `version: 1
network_policies:
  upstream:
    ${ANY}
    endpoints:
      - host: allowed.test
        port: ${p}
      - host: allowed.test
        port: ${e}
      - host: rest.test
        port: ${p}
        protocol: rest
        rules:
          - allow: { method: GET, path: "/**" }
approvals:
  mode: ask
  timeout: 30
  when_unattended: hold
`;

  async function decideNext(decision: 'always' | 'deny'): Promise<void> {
    const deadline = Date.now() + 10_000;
    for (;;) {
      const list = await t!.client.pending();
      if (list.length > 0) {
        await t!.client.decide(list[0]!.id, decision);
        return;
      }
      if (Date.now() > deadline) throw new Error('no pending request');
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  beforeAll(async () => {
    up = await startUpstream();
    echo = await startEcho();
    port = up.port;
    home = await makeTempHome('nct-sim-');
    const resolver = testResolver({ 'allowed.test': ['127.0.0.1'], 'unknown.test': ['127.0.0.1'], 'rest.test': ['127.0.0.1'], 'other.test': ['127.0.0.1'] });
    t = await startTestSupervisor({ home: home.dir, policyText: recordedPolicy(port, echo.port), unsafeAllowLoopbackUpstreams: true, services: [() => createEgressService({ resolver })] });
    const sock = t.paths.proxySocket;
    expect((await proxyRequest(sock, `http://allowed.test:${port}/x`)).status).toBe(200);
    // two requests on one keep-alive connection: the second reuses the first decision
    const two = `GET http://allowed.test:${port}/ka HTTP/1.1\r\nHost: allowed.test:${port}\r\n\r\nGET http://allowed.test:${port}/ka HTTP/1.1\r\nHost: allowed.test:${port}\r\nConnection: close\r\n\r\n`;
    expect((await rawExchange(sock, two)).match(/HTTP\/1\.1 200/g)).toHaveLength(2);
    expect((await proxyRequest(sock, `http://rest.test:${port}/v1/users`)).status).toBe(200);
    expect((await proxyRequest(sock, `http://rest.test:${port}/v1/admin`)).status).toBe(200);
    expect((await proxyRequest(sock, `http://rest.test:${port}/v1/users`, { method: 'POST', body: 'x' })).status).toBe(403);
    const held = proxyRequest(sock, `http://unknown.test:${port}/z`);
    await decideNext('always');
    expect((await held).status).toBe(200);
    expect((await proxyRequest(sock, `http://unknown.test:${port}/z`)).status).toBe(200);
    const held2 = proxyRequest(sock, `http://other.test:${port}/q`);
    await decideNext('deny');
    expect((await held2).status).toBe(403);
    const tunnel = await proxyConnect(sock, `allowed.test:${echo.port}`);
    expect(tunnel.status).toBe(200);
    tunnel.socket.write('ping');
    await new Promise<void>((r) => tunnel.socket.once('data', () => r()));
    tunnel.socket.destroy();
    await t.stop();
    t = undefined;
    auditDir = join(home.dir, 'sandboxes', 'default', 'audit');
    const write = (name: string, text: string): string => {
      const p = join(home.dir, name);
      writeFileSync(p, text);
      return (files[name] = p);
    };
    write('same.yaml', recordedPolicy(port, echo.port));
    // allowed.test on the upstream port is gone, refused outright (approvals.mode deny)
    write('tighter.yaml', recordedPolicy(port, echo.port).replace(`      - host: allowed.test\n        port: ${port}\n`, '').replace('mode: ask', 'mode: deny'));
    // other.test added
    write('wider.yaml', recordedPolicy(port, echo.port).replace('      - host: rest.test', `      - host: other.test\n        port: ${port}\n      - host: rest.test`));
    // rest.test: only /v1/users
    write('l7.yaml', recordedPolicy(port, echo.port).replace('allow: { method: GET, path: "/**" }', 'allow: { method: GET, path: "/v1/users" }'));
    write('broken.yaml', 'version: 1\nnetwork_policies:\n  x:\n    endpoints:\n      - host: a.test\n        port: seventy\n');
  }, 60_000);

  afterAll(async () => {
    await t?.stop();
    await up?.close();
    await echo?.close();
    await home?.cleanup();
  });

  async function sim(args: string[]): Promise<{ code: number; out: string; err: string }> {
    const c = captureIo({ NEMOCLAW_HOME: home.dir, NO_COLOR: '1' });
    const code = await main(['policy', 'simulate', ...args], c.io);
    return { code, out: c.out(), err: c.err() };
  }

  function tableRow(out: string, ...parts: string[]): string {
    const line = out.split('\n').find((l) => parts.every((p) => l.includes(p)));
    if (!line) throw new Error(`no line with ${parts.join(' ')} in:\n${out}`);
    return line;
  }

  it('the same policy: nothing tightens (exit 0); the held request approved "always" is ask -> allow', async () => {
    const r = await sim(['--from-audit', auditDir, '--policy', files['same.yaml']!]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(`candidate: ${files['same.yaml']}`);
    expect(r.out).toMatch(/overlay \(1 rule from .*overlay\.yaml\)/);
    expect(tableRow(r.out, 'unknown.test', '/z', 'ask -> allow +')).toBeTruthy();
    expect(tableRow(r.out, 'allowed.test', '/ka', ' 2 ', 'allow -> allow')).toBeTruthy();
    expect(tableRow(r.out, 'rest.test', 'POST', 'deny -> deny', 'upstream/2')).toBeTruthy();
    expect(tableRow(r.out, 'other.test', 'ask -> ask')).toBeTruthy();
    expect(tableRow(r.out, 'allowed.test', String(echo.port), 'CONNECT', 'allow -> allow')).toBeTruthy();
    expect(r.out).toMatch(/replayed 10 requests \(9 distinct\): 9 unchanged, 0 newly refused, 1 newly allowed, 0 would now ask/);
    // --fail-on widen: the "always" grant is now part of the policy, so that request is looser
    expect((await sim(['--from-audit', auditDir, '--policy', files['same.yaml']!, '--fail-on', 'widen'])).code).toBe(1);
  });

  it('tightening: a previously allowed host now refused exits 1 and is listed first', async () => {
    const r = await sim(['--from-audit', auditDir, '--policy', files['tighter.yaml']!]);
    expect(r.code).toBe(1);
    const lines = r.out.split('\n');
    const header = lines.findIndex((l) => l.startsWith('HOST'));
    expect(lines[header + 1]).toMatch(/allowed\.test .* allow -> deny !/);
    // allowed.test (3 requests) and other.test (held, now refused outright under approvals.mode deny)
    expect(tableRow(r.out, 'other.test', 'ask -> deny !')).toBeTruthy();
    expect(r.out).toMatch(/4 newly refused/);
    expect(r.err).toMatch(/4 requests would be stricter than recorded .*--fail-on tighten/);
    expect((await sim(['--from-audit', auditDir, '--policy', files['tighter.yaml']!, '--fail-on', 'none'])).code).toBe(0);
    const only = await sim(['--from-audit', auditDir, '--policy', files['tighter.yaml']!, '--only-changed']);
    expect(only.out).not.toContain('rest.test');
    expect(only.out).toMatch(/5 unchanged/);
  });

  it('widening: a host added to the policy fails only --fail-on widen / any', async () => {
    const r = await sim(['--from-audit', auditDir, '--policy', files['wider.yaml']!, '--only-changed']);
    expect(r.code).toBe(0);
    expect(tableRow(r.out, 'other.test', '/q', 'ask -> allow +', 'upstream/2')).toBeTruthy();
    expect((await sim(['--from-audit', auditDir, '--policy', files['wider.yaml']!, '--fail-on', 'widen'])).code).toBe(1);
    expect((await sim(['--from-audit', auditDir, '--policy', files['wider.yaml']!, '--fail-on', 'any'])).code).toBe(1);
  });

  it('L7 path change: GET /v1/admin becomes refused by the rule, /v1/users stays allowed', async () => {
    const r = await sim(['--from-audit', auditDir, '--policy', files['l7.yaml']!]);
    expect(r.code).toBe(1);
    expect(tableRow(r.out, 'rest.test', 'GET', '/v1/admin', 'allow -> deny !', 'upstream/2')).toBeTruthy();
    expect(tableRow(r.out, 'rest.test', 'GET', '/v1/users', 'allow -> allow')).toBeTruthy();
  });

  it('without --policy: the newest revision recorded in the log, rebuilt from its diffs (overlay included)', async () => {
    const r = await sim(['--from-audit', auditDir]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toMatch(/candidate: policy revision 2 recorded in the log/);
    const no = await sim(['--from-audit', auditDir, '--no-overlay', '--only-changed']);
    // without the "always" rule, the request it let through would be held again
    expect(no.code).toBe(1);
    expect(tableRow(no.out, 'unknown.test', 'allow -> ask !')).toBeTruthy();
    expect(no.out).toContain('(without the overlay)');
  });

  it('without --policy and no rebuildable revision: the sandbox policy history by sha256, else the sandbox policy file', async () => {
    const history = readFileSync(join(home.dir, 'sandboxes', 'default', 'policy-history.jsonl'), 'utf8').trim().split('\n');
    const last = JSON.parse(history.at(-1)!) as { number: number; sha256: string };
    const net: EventInput[] = [
      { kind: 'net.request', id: 'r-1', method: 'GET', host: 'unknown.test', port, path: '/z', binary: null },
      { kind: 'net.decision', id: 'r-1', action: 'allow', source: 'policy', host: 'unknown.test', port, binary: null, rule: `overlay:allow:unknown.test:${port}/0`, pending_id: null },
    ];
    // a log that starts mid-way: its only revision is a diff against a text it does not hold
    const mid = join(home.dir, 'midway');
    const log = await AuditLog.open({ dir: mid, sandbox: 'default' });
    log.append({ kind: 'policy.revision', number: last.number, sha256: last.sha256, author: 'cli', diff: '--- policy@1\n+++ policy@2\n@@ -3,1 +3,1 @@\n-a\n+b\n' });
    for (const e of net) log.append(e);
    await log.close();
    const fromHistory = JSON.parse((await sim(['--from-audit', mid, '--json'])).out) as { candidate: Record<string, unknown>; summary: Record<string, number> };
    expect(fromHistory.candidate).toMatchObject({ kind: 'revision', revision: last.number, sha256: last.sha256 });
    expect(fromHistory.summary).toMatchObject({ requests: 1, unchanged: 1 });

    // no revision at all, no supervisor running: the sandbox's policy file plus its overlay file
    const bare = join(home.dir, 'bare');
    const log2 = await AuditLog.open({ dir: bare, sandbox: 'default' });
    for (const e of net) log2.append(e);
    await log2.close();
    const r = await sim(['--from-audit', bare]);
    expect(r.code, r.err).toBe(0);
    expect(r.out).toContain(`candidate: ${join(home.dir, 'sandboxes', 'default', 'policy.yaml')} + overlay (1 rule from`);
    expect(tableRow(r.out, 'unknown.test', 'allow -> allow')).toBeTruthy();
  });

  it('--json: one document with candidate, summary, rows, skipped and integrity', async () => {
    const r = await sim(['--from-audit', auditDir, '--policy', files['tighter.yaml']!, '--json']);
    expect(r.code).toBe(1);
    const doc = JSON.parse(r.out) as Record<string, unknown>;
    expect(doc).toMatchObject({
      audit: auditDir,
      candidate: { kind: 'file', source: files['tighter.yaml'], approvals_mode: 'deny', overlay: { included: true, rules: 1 } },
      fail_on: 'tighten',
      failed: true,
      nothing_to_replay: false,
      summary: { requests: 10, distinct: 9, newly_refused: 4, tightened_requests: 4 },
      integrity: { ok: true, torn_tail: false },
    });
    const rows = doc.rows as SimulationRow[];
    expect(rows[0]).toMatchObject({ host: 'allowed.test', port, method: 'GET', old: 'allow', new: 'deny', change: 'tighten', rule: null });
    expect(Object.keys(rows[0]!).sort()).toEqual(
      ['binary', 'change', 'count', 'first_seq', 'host', 'last_seq', 'method', 'new', 'old', 'old_detail', 'old_rule', 'path', 'port', 'reason', 'rule', 'tunnelled'].sort(),
    );
  });

  it('a truncated last line and a tampered record: warned, the rest is simulated', async () => {
    const copy = join(home.dir, 'tampered');
    cpSync(auditDir, copy, { recursive: true });
    const file = join(copy, readdirSync(copy).filter((f) => f.endsWith('.jsonl')).sort().at(-1)!);
    appendFileSync(file, '{"ts":"2026-12-03T00:00:00.000Z","seq":999,"kind":"net.re');
    const torn = await sim(['--from-audit', copy, '--policy', files['same.yaml']!]);
    expect(torn.code).toBe(0);
    expect(torn.err).toMatch(/partial record/);
    expect(torn.out).toMatch(/replayed 10 requests/);

    const lines = readFileSync(file, 'utf8').split('\n');
    const i = lines.findIndex((l) => l.includes('"kind":"net.request"') && l.includes('/v1/admin'));
    lines[i] = lines[i]!.replace('/v1/admin', '/v1/users');
    writeFileSync(file, lines.join('\n'));
    const bad = await sim(['--from-audit', copy, '--policy', files['l7.yaml']!]);
    expect(bad.err).toMatch(/hash chain is broken/);
    expect(bad.err).toMatch(/record edited\); skipped/);
    expect(bad.err).toMatch(/audit verify/);
    expect(bad.err).toMatch(/net.request is not in the log/);
    expect(bad.out).toContain('chain BROKEN');
    // the edited request is not replayed: nothing of /v1/admin is left to tighten
    expect(bad.out).not.toContain('/v1/admin');
    expect(bad.code).toBe(0);
    const json = JSON.parse((await sim(['--from-audit', copy, '--policy', files['l7.yaml']!, '--json'])).out) as { integrity: { ok: boolean; problems: unknown[] } };
    expect(json.integrity.ok).toBe(false);
    expect(json.integrity.problems).toEqual([expect.objectContaining({ skipped: true, reason: expect.stringMatching(/record edited/) })]);
  });

  it('a missing log, a malformed candidate and a bad --fail-on exit 2 with what to do', async () => {
    const missing = await sim(['--from-audit', join(home.dir, 'no-such-audit'), '--policy', files['same.yaml']!]);
    expect(missing.code).toBe(2);
    expect(missing.err).toContain(`audit log not found: ${join(home.dir, 'no-such-audit')}`);
    expect(missing.err).toMatch(/next step:/);
    const broken = await sim(['--from-audit', auditDir, '--policy', files['broken.yaml']!]);
    expect(broken.code).toBe(2);
    expect(broken.err).toContain(`${files['broken.yaml']}:6:`);
    const flag = await sim(['--from-audit', auditDir, '--fail-on', 'sometimes']);
    expect(flag.code).toBe(2);
    expect(flag.err).toMatch(/--fail-on expects one of tighten, widen, any, none/);
  });

  it('a log without network events: nothing to replay, exit 0', async () => {
    const dir = join(home.dir, 'quiet');
    const log = await AuditLog.open({ dir, sandbox: 'default' });
    log.append({ kind: 'sandbox.lifecycle', action: 'supervisor.start' });
    log.append({ kind: 'agent.log', line: 'hello' });
    await log.close();
    const r = await sim(['--from-audit', dir, '--policy', files['same.yaml']!]);
    expect(r.code).toBe(0);
    expect(r.out).toMatch(/nothing to replay: the log has no network requests \(2 records read\)/);
    const j = JSON.parse((await sim(['--from-audit', dir, '--policy', files['same.yaml']!, '--json'])).out) as Record<string, unknown>;
    expect(j).toMatchObject({ nothing_to_replay: true, failed: false, rows: [] });
  });

  it('--help documents the candidate, the overlay and the exit codes', async () => {
    const r = await sim(['--help']);
    expect(r.code).toBe(0);
    for (const s of ['--from-audit', '--policy', '--no-overlay', '--fail-on', '--only-changed', '--json', 'Exit codes:', 'newest policy revision recorded in the log']) expect(r.out).toContain(s);
  });
});
