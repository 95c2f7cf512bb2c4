import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough } from 'node:stream';
import { afterEach, beforeEach, expect, test } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import { serveStdioBridge, sshBridgeCommand, startStdioForward, validateSshHost } from '../../components/remote.js';

let dir: string;
let server: Server;
let socketPath: string;

beforeEach(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tui-remote-'));
  socketPath = join(dir, 'control.sock');
  // Stands in for a supervisor's control API.
  server = createServer((req, res) => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ name: 'remote-box', path: req.url, method: req.method }));
  });
  await new Promise<void>((r) => server.listen(socketPath, () => r()));
});

afterEach(async () => {
  await new Promise<void>((r) => server.close(() => r()));
  rmSync(dir, { recursive: true, force: true });
});

test('the local half carries control requests through a stdio process to the remote socket', async () => {
  try {
    execFileSync('socat', ['-V'], { stdio: 'ignore' });
  } catch {
    throw new Error('this test needs socat (apt-get install socat): it plays the ssh carrier');
  }
  // socat plays `ssh user@box nemoclaw-tui __bridge`: stdio in, the remote control socket out.
  const forward = await startStdioForward({ command: ['socat', 'STDIO', `UNIX-CONNECT:${socketPath}`] });
  try {
    expect(statSync(forward.socketPath).mode & 0o777).toBe(0o600);
    const client = new ControlClient({ socketPath: forward.socketPath, sandbox: 'demo@box' });
    const first = await client.request<{ name: string; path: string }>('GET', '/v1/status');
    const second = await client.request<{ method: string }>('POST', '/v1/pending/p-1', { decision: 'once' });
    expect(first).toMatchObject({ name: 'remote-box', path: '/v1/status' });
    expect(second.method).toBe('POST');
  } finally {
    await forward.close();
  }
});

test('the remote half (__bridge) pipes its stdio to the control socket', async () => {
  const input = new PassThrough();
  const output = new PassThrough();
  let received = '';
  output.on('data', (d: Buffer) => (received += d.toString()));
  const done = serveStdioBridge(socketPath, input, output);
  input.write('GET /v1/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  input.end();
  await done;
  expect(received).toMatch(/^HTTP\/1\.1 200/);
  expect(received).toContain('"path":"/v1/status"');
});

test('the remote half says what to do when no supervisor answers', async () => {
  await expect(serveStdioBridge(join(dir, 'missing.sock'), new PassThrough(), new PassThrough())).rejects.toMatchObject({
    message: expect.stringMatching(/nothing answers on .*missing\.sock/),
    nextStep: expect.stringMatching(/nemoclaw-tui up/),
  });
});

test('ssh hosts that could be read as options are refused; the command is an argument array', () => {
  expect(() => validateSshHost('-oProxyCommand=evil')).toThrow(/--host expects user@host/);
  expect(() => validateSshHost('ops@dgx 01')).toThrow();
  const cmd = sshBridgeCommand('ops@dgx-01', 'default', '/tmp/x');
  expect(cmd[0]).toBe('ssh');
  expect(cmd.slice(-6)).toEqual(['ops@dgx-01', '--', 'nemoclaw-tui', '--name', 'default', '__bridge']);
});
