/**
 * The egress bridge and the exit-code contract, on the real driver: 127.0.0.1:3128 inside the
 * sandbox reaches a Unix-socket server we start (standing in for the egress proxy), and a command
 * killed by a signal reports 128+signal.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { SANDBOX_MAX_TIME_WAIT, SANDBOX_TCP_EHASH_BUCKETS, launchBwrap, type RunningSandbox } from '../../src/sandbox/bwrap.js';

let base: string;
let server: Server;
let proxySocket: string;

beforeAll(async () => {
  base = mkdtempSync('/tmp/ncbr-');
  mkdirSync(join(base, 'run', 'proxy'), { recursive: true });
  proxySocket = join(base, 'run', 'proxy', 'proxy.sock');
  server = createServer((s) => {
    s.once('data', (d) => s.end(`proxy got: ${d.toString().trim()}\n`));
  });
  await new Promise<void>((r) => server.listen(proxySocket, () => r()));
});

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(base, { recursive: true, force: true });
});

function launch(command: string[]): Promise<RunningSandbox> {
  return launchBwrap({
    id: `br${Math.random().toString(36).slice(2, 8)}`,
    command,
    workdir: join(base, 'wd'),
    runDir: join(base, 'run'),
    proxySocket,
    filesystem: { include_workdir: true, read_only: [], read_write: [], hidden: [], monitor: false },
    process: { seccomp: { block: [], allow: [] }, limits: { pids: 32 }, env: {} },
  });
}

async function output(sb: RunningSandbox): Promise<{ out: string; exitCode: number }> {
  let out = '';
  sb.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  sb.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  const st = await sb.wait();
  return { out, exitCode: st.exitCode };
}

describe('bubblewrap driver', () => {
  it('bridges 127.0.0.1:3128 inside the sandbox to the proxy Unix socket outside', async () => {
    const sb = await launch([
      '/usr/bin/python3', '-c',
      'import socket; s=socket.create_connection(("127.0.0.1",3128)); s.sendall(b"hello"); print(s.recv(100).decode().strip())',
    ]);
    expect(sb.netMode).toBe('bridge-outside');
    const r = await output(sb);
    expect(r.out.trim()).toBe('proxy got: hello');
    expect(r.exitCode).toBe(0);
  });

  it('the sandbox netns has its own small TCP hash and a TIME_WAIT bound (identity reads its /proc/net/tcp per batch), and the agent cannot take 127.0.0.1:3128', async () => {
    const sb = await launch([
      '/usr/bin/python3', '-c',
      [
        'import socket',
        'print(open("/proc/sys/net/ipv4/tcp_ehash_entries").read().strip(), open("/proc/sys/net/ipv4/tcp_max_tw_buckets").read().strip())',
        's = socket.socket()',
        's.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)',
        'try:',
        '    s.bind(("127.0.0.1", 3128)); print("bound")',
        'except OSError as e:',
        '    print("refused", e.errno)',
      ].join('\n'),
    ]);
    const r = await output(sb);
    expect(r.exitCode).toBe(0);
    const [hash, line2] = r.out.trim().split('\n');
    // Positive: the netns owns its hash (a shared one reads as minus the host's size).
    expect(Number(hash?.split(' ')[0])).toBe(SANDBOX_TCP_EHASH_BUCKETS);
    expect(Number(hash?.split(' ')[1])).toBe(SANDBOX_MAX_TIME_WAIT);
    expect(line2).toBe('refused 98');
  });

  it('reports 128+signal when the command is killed, and the code otherwise', async () => {
    expect((await output(await launch(['/bin/sh', '-c', 'kill -TERM $$']))).exitCode).toBe(143);
    expect((await output(await launch(['/bin/sh', '-c', 'exit 42']))).exitCode).toBe(42);
  });

  it('exposes the running instance: root pid, its descendants, the cgroup with the pids limit', async () => {
    const sb = await launch(['/bin/sleep', '5']);
    try {
      expect(sb.rootPid).toBeGreaterThan(1);
      expect(sb.pids()).toContain(sb.rootPid);
      // The sandbox's init forks the command just after its release.
      for (let i = 0; i < 50 && sb.pids().length < 2; i++) await new Promise((r) => setTimeout(r, 20));
      expect(sb.pids().length).toBeGreaterThanOrEqual(2);
      expect(sb.limits.pids).toBe(32);
    } finally {
      sb.kill('SIGKILL');
    }
    expect((await sb.wait()).exitCode).toBe(137);
  });

  it('refuses an empty command with what to do', async () => {
    await expect(launch([])).rejects.toThrow(/no command/);
  });
});
