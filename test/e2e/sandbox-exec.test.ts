/**
 * `exec` beside the agent: a command exec'd with join "agent" shares the agent sandbox's network
 * namespace (its own pid and mount namespaces), so a server the agent listens with on 127.0.0.1
 * inside the sandbox is reachable from it, and not from the host nor from a sandbox of its own.
 * Without a running agent, exec falls back to a fresh sandbox and says so. Real bwrap, in-process
 * supervisor with the sandbox service; needs root, bubblewrap, socat and python3.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { PassThrough } from 'node:stream';
import { createSandboxService, execInSandbox, execSocketPath, type ExecStart, type RunningSandbox, type SandboxServiceApi } from '../../src/sandbox/index.js';
import { startTestSupervisor, type TestSupervisor } from '../helpers/supervisor.js';

const PORT = 40000 + Math.floor(Math.random() * 9000);
const SERVER = `
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", ${PORT})); s.listen(8)
print("listening", flush=True)
while True:
    c, _ = s.accept(); c.sendall(b"agent gateway says hi\\n"); c.close()
`;
const CLIENT = `
import socket, errno
try:
    s = socket.create_connection(("127.0.0.1", ${PORT}), timeout=3); print(s.recv(100).decode().strip())
except OSError as e:
    print("errno:" + errno.errorcode.get(e.errno, str(e.errno)))
`;

let t: TestSupervisor;
let svc: SandboxServiceApi;

async function exec(start: ExecStart): Promise<{ out: string; err: string; exitCode: number }> {
  const stdout = new PassThrough();
  const stderr = new PassThrough();
  let out = '';
  let err = '';
  stdout.on('data', (d: Buffer) => (out += d.toString()));
  stderr.on('data', (d: Buffer) => (err += d.toString()));
  const r = await execInSandbox(execSocketPath(t.paths.dir), start, { stdin: null, stdout, stderr, signals: false });
  return { out, err, exitCode: r.exitCode };
}

function hostConnect(port: number): Promise<string> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.on('connect', () => {
      s.destroy();
      resolve('connected');
    });
    s.on('error', (e: NodeJS.ErrnoException) => resolve(`errno:${e.code}`));
  });
}

async function waitForLine(sb: RunningSandbox, text: string): Promise<void> {
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    const timer = setTimeout(() => reject(new Error(`no "${text}" from the agent sandbox; got: ${buf}`)), 10_000);
    sb.stdout?.on('data', (d: Buffer) => {
      buf += d.toString();
      if (buf.includes(text)) {
        clearTimeout(timer);
        resolve();
      }
    });
  });
}

beforeAll(async () => {
  const missing = ['/usr/bin/bwrap', '/usr/bin/socat', '/usr/bin/python3', '/usr/bin/nsenter'].filter((p) => !existsSync(p));
  if (missing.length > 0 || process.getuid?.() !== 0) {
    throw new Error(`this suite needs root and ${missing.join(', ') || 'its tools'}: run .ci/run or apt-get install -y bubblewrap socat python3`);
  }
  svc = createSandboxService();
  t = await startTestSupervisor({ services: [() => svc] });
}, 30_000);

afterAll(async () => {
  await t?.stop();
}, 30_000);

describe('exec joins the running agent sandbox', () => {
  it('says so and runs in a fresh sandbox when no agent runs', async () => {
    const r = await exec({ command: ['/usr/bin/python3', '-c', CLIENT] });
    expect(r.err).toMatch(/note: no agent sandbox is running, so the command runs in a fresh sandbox/);
    // A sandbox of its own may connect only to its bridge (Landlock, issue 19): refused before the
    // empty loopback could answer ECONNREFUSED.
    expect(r.out.trim()).toBe('errno:EACCES');
    expect(r.exitCode).toBe(0);
  });

  it("reaches the agent's loopback server from an exec'd command, which the host and a separate sandbox cannot", async () => {
    const agent = await svc.launch({ command: ['/usr/bin/python3', '-u', '-c', SERVER], role: 'agent' });
    try {
      await waitForLine(agent, 'listening');
      expect(svc.instances().find((i) => i.id === agent.id)?.role).toBe('agent');

      const joined = await exec({ command: ['/usr/bin/python3', '-c', CLIENT], join: 'agent' });
      expect(joined.err).toBe('');
      expect(joined.out.trim()).toBe('agent gateway says hi');

      // Its own pid namespace: the agent's server process is not among its processes.
      const ps = await exec({ command: ['/bin/sh', '-c', 'cat /proc/[0-9]*/cmdline | tr "\\0" " "'], join: 'agent' });
      expect(ps.out).not.toContain('agent gateway');
      expect(ps.out).toContain('/proc/');

      // The egress bridge of the agent's namespace is there too (no second bridge needed).
      const bridge = await exec({ command: ['/bin/sh', '-c', 'grep -c ":0C38 00000000:0000 0A" /proc/net/tcp'], join: 'agent' });
      expect(bridge.out.trim()).toBe('1');

      expect(await hostConnect(PORT)).toBe('errno:ECONNREFUSED');
      const separate = await exec({ command: ['/usr/bin/python3', '-c', CLIENT], join: 'none' });
      expect(separate.out.trim()).toBe('errno:EACCES');
    } finally {
      agent.kill('SIGKILL');
      await agent.wait();
    }
  });

  it('finds an agent launched by another service without a role (the oldest direct launch)', async () => {
    const agent = await svc.launch({ command: ['/usr/bin/python3', '-u', '-c', SERVER] });
    try {
      await waitForLine(agent, 'listening');
      const joined = await exec({ command: ['/usr/bin/python3', '-c', CLIENT] });
      expect(joined.out.trim()).toBe('agent gateway says hi');
    } finally {
      agent.kill('SIGKILL');
      await agent.wait();
    }
  });

  it('refuses an unknown join mode with a clear error', async () => {
    await expect(exec({ command: ['/bin/true'], join: 'gateway' as never })).rejects.toThrow(/"join" must be "agent" or "none"/);
  });
});
