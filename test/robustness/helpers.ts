/**
 * Helpers of the robustness suite: what the running state looks like (so a test can say "nothing
 * changed"), raw bytes over Unix sockets (for hostile clients), and the supervisor's memory.
 */
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect, type Socket } from 'node:net';
import { expect } from 'vitest';
import { runCli, type CliResult } from '../helpers/supervisor.js';
import type { SandboxPaths } from '../../src/shared/home.js';

/** A Node stack frame (`    at fn (file:line:col)`) leaked to the user. */
export const STACK_FRAME = /^\s+at .+[:(].*\d+:\d+\)?$/m;

/** The error shape every command promises: `nemoclaw-tui: …` plus a `next step:` line, no stack trace. */
export function expectCleanError(r: CliResult, opts: { code: number; names: Array<string | RegExp> }): void {
  const all = `${r.stdout}\n${r.stderr}`;
  expect(r.code, `exit code; output:\n${all}`).toBe(opts.code);
  expect(r.stderr, 'an error line for the user').toMatch(/^nemoclaw-tui: /m);
  expect(r.stderr, 'a next step for the user').toMatch(/next step: \S/);
  expect(all, 'no stack trace').not.toMatch(STACK_FRAME);
  for (const n of opts.names) {
    if (typeof n === 'string') expect(r.stderr).toContain(n);
    else expect(r.stderr).toMatch(n);
  }
}

export interface RunningState {
  pid: number;
  revision: number;
  sha256: string;
  policyYaml: string;
}

/** What `status --json` and `policy show` say now (asserting both still answer). */
export async function runningState(home: string, name = 'default'): Promise<RunningState> {
  const status = await runCli(['--name', name, 'status', '--json'], { home });
  expect(status.code, `status --json: ${status.stderr}`).toBe(0);
  const s = JSON.parse(status.stdout) as { pid: number; policy: { revision: number; sha256: string } };
  const show = await runCli(['--name', name, 'policy', 'show'], { home });
  expect(show.code, `policy show: ${show.stderr}`).toBe(0);
  return { pid: s.pid, revision: s.policy.revision, sha256: s.policy.sha256, policyYaml: show.stdout };
}

/** `audit verify` on this sandbox passes; returns the number of records it checked. */
export async function expectAuditVerifies(home: string, name = 'default'): Promise<number> {
  const v = await runCli(['--name', name, 'audit', 'verify'], { home });
  expect(v.code, `audit verify:\n${v.stdout}\n${v.stderr}`).toBe(0);
  const m = /audit log ok: (\d+) records/.exec(v.stdout);
  expect(m, v.stdout).not.toBeNull();
  return Number(m![1]);
}

/** The supervisor's pid from its pid file (`<pid>\n<start time>\n`). */
export function supervisorPid(paths: SandboxPaths): number {
  return Number(readFileSync(paths.pidFile, 'utf8').split('\n')[0]);
}

/** Resident memory of a process in KiB (VmRSS of /proc/PID/status). */
export function vmRssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(m[1]);
}

export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Poll `pred` every 50 ms until it holds; throws naming `what` after `ms`. */
export async function waitUntil(pred: () => boolean | Promise<boolean>, what: string, ms = 10_000): Promise<void> {
  const end = Date.now() + ms;
  for (;;) {
    if (await pred()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await sleep(50);
  }
}

export interface RawExchange {
  /** Everything the server sent. */
  data: Buffer;
  /** The server closed (or reset) the connection before our deadline. */
  closedByServer: boolean;
  /** ms from connect to the server's close (or to our deadline). */
  elapsedMs: number;
}

/**
 * Connect to a Unix socket, send `payload` (chunks with `gapMs` between them), optionally half-close
 * our side, and collect what comes back until the server closes or `deadlineMs` passes.
 */
export function rawExchange(
  socketPath: string,
  payload: Buffer | string | Array<Buffer | string>,
  opts: { halfClose?: boolean; deadlineMs?: number; gapMs?: number; keepSending?: () => Buffer | string | undefined } = {},
): Promise<RawExchange> {
  return new Promise((resolve) => {
    const t0 = Date.now();
    const chunks: Buffer[] = [];
    const parts = Array.isArray(payload) ? payload : [payload];
    let settled = false;
    let sender: NodeJS.Timeout | undefined;
    const sock: Socket = connect(socketPath);
    const finish = (closedByServer: boolean): void => {
      if (settled) return;
      settled = true;
      clearTimeout(deadline);
      if (sender) clearInterval(sender);
      sock.destroy();
      resolve({ data: Buffer.concat(chunks), closedByServer, elapsedMs: Date.now() - t0 });
    };
    const deadline = setTimeout(() => finish(false), opts.deadlineMs ?? 5_000);
    sock.on('data', (c: Buffer) => chunks.push(c));
    sock.on('error', () => finish(true));
    sock.on('close', () => finish(true));
    sock.on('connect', () => {
      let i = 0;
      const writeNext = (): void => {
        if (settled || sock.destroyed) return;
        if (i < parts.length) {
          sock.write(parts[i++]!);
          if (i === parts.length && opts.halfClose) sock.end();
          return;
        }
        const more = opts.keepSending?.();
        if (more !== undefined) sock.write(more);
      };
      if (!opts.gapMs) {
        while (i < parts.length) writeNext();
      } else {
        writeNext();
        sender = setInterval(writeNext, opts.gapMs);
      }
    });
  });
}

export interface UnixHttpResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  text: string;
}

/** One HTTP request over a Unix socket (absolute-form `path` for the proxy, origin-form for the control API). */
export function unixHttp(
  socketPath: string,
  method: string,
  path: string,
  body?: string | Buffer,
  headers: Record<string, string> = {},
  timeoutMs = 15_000,
): Promise<UnixHttpResponse> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ socketPath, method, path, headers: { ...(body !== undefined ? { 'content-length': String(Buffer.byteLength(body)) } : {}), ...headers } }, (res) => {
      res.setEncoding('utf8');
      let text = '';
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      res.on('error', reject);
    });
    req.setTimeout(timeoutMs, () => req.destroy(new Error(`${method} ${path} over ${socketPath}: no answer within ${timeoutMs} ms`)));
    req.on('error', reject);
    req.end(body);
  });
}

export interface FloodResult {
  /** HTTP status (as text) → count; `ERR` for connections that got no answer. */
  codes: Record<string, number>;
  ms: number;
}

/**
 * `total` requests through the egress proxy socket, `concurrency` at a time, each on its own
 * connection (a refusal closes it). `onProgress` sees the number answered so far.
 */
export function floodProxy(
  socketPath: string,
  total: number,
  concurrency: number,
  opts: { request?: (i: number) => string; onProgress?: (done: number) => void } = {},
): Promise<FloodResult> {
  const request = opts.request ?? ((i: number) => `GET http://blocked.example/r${i} HTTP/1.1\r\nHost: blocked.example\r\n\r\n`);
  const codes: Record<string, number> = {};
  const t0 = Date.now();
  let started = 0;
  let done = 0;
  return new Promise((resolve) => {
    if (total === 0) return resolve({ codes, ms: 0 });
    const one = (): void => {
      if (started >= total) return;
      const i = started++;
      const s = connect(socketPath);
      let head = '';
      s.setEncoding('latin1');
      s.on('connect', () => s.write(request(i)));
      s.on('data', (d: string) => {
        if (head.length < 16) head += d;
      });
      s.on('error', () => undefined);
      s.on('close', () => {
        const code = /^HTTP\/1\.1 (\d{3})/.exec(head)?.[1] ?? 'ERR';
        codes[code] = (codes[code] ?? 0) + 1;
        done++;
        opts.onProgress?.(done);
        if (done === total) resolve({ codes, ms: Date.now() - t0 });
        else one();
      });
    };
    for (let i = 0; i < Math.min(concurrency, total); i++) one();
  });
}

/** A policy that refuses every unknown host at once (no approvals), so each request is 2 events. */
export const DENY_POLICY = `version: 1
approvals:
  mode: deny
network_policies:
  example:
    binaries: [{ path: "/**" }]
    endpoints:
      - host: api.example.com
        port: 443
`;
