/**
 * `nemoclaw-tui --host user@box` over a REAL ssh connection on loopback.
 *
 * This suite runs its own sshd (private config, host key, authorized_keys, a free port on
 * 127.0.0.1) and a real detached supervisor on the "remote" side (its own $NEMOCLAW_HOME, named
 * in authorized_keys' `environment=`, with a `nemoclaw-tui` wrapper on the remote PATH). The
 * local side has a different home and reaches the remote only through
 * `--host <user>@127.0.0.1 --ssh-config <file>`; ~/.ssh of the real user is never read.
 *
 *  - headless (not a terminal): the remote supervisor's events, live, through the ssh bridge;
 *  - the full-screen TUI in tmux: a request held on the remote sandbox is approved with `a` on
 *    the local side and completes; `q` detaches;
 *  - broken ssh (closed port, refused key, a server that never speaks, a wrong remote command, no
 *    supervisor of that name): a bounded failure naming the host and what to check.
 *
 * Only what this suite started is stopped: its sshd (by pid), its tmux server (its -L socket), its
 * supervisor (`down`) and its upstream.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { userInfo } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { startUpstream, type Upstream } from '../egress/harness.js';
import { TmuxPane, requireTmux, tuiPaneCommand } from '../helpers/tmux.js';
import { BIN, makeTempHome, runCli, spawnCli, startDaemonSupervisor, type DaemonSupervisor, type TempHome } from '../helpers/supervisor.js';
import { askPolicyAllowingLoopback } from '../helpers/policies.js';

const SSHD = '/usr/sbin/sshd';
const USER = userInfo().username;
const HOST = `${USER}@127.0.0.1`;
const pane = new TmuxPane('tui', 100, 30);

let dir: string;
let sshd: ChildProcess | undefined;
let sshdLog = '';
let sshPort: number;
let sshConfig: string;
let up: Upstream;
let d: DaemonSupervisor;
let local: TempHome;

function requireTools(): void {
  for (const [tool, args] of [
    ['ssh', ['-V']],
    ['ssh-keygen', ['-?']],
    ['tmux', ['-V']],
  ] as const) {
    try {
      execFileSync(tool, [...args], { stdio: 'pipe' });
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
        throw new Error(`this test needs ${tool}: apt-get install openssh-client openssh-server tmux (CI installs them through .ci/run)`);
      }
    }
  }
  if (!existsSync(SSHD)) throw new Error(`this test runs its own sshd and needs ${SSHD}: apt-get install openssh-server (CI installs it through .ci/run)`);
}

async function freePort(): Promise<number> {
  const server: Server = createServer();
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const port = (server.address() as { port: number }).port;
  await new Promise<void>((r) => server.close(() => r()));
  return port;
}

function keygen(file: string): string {
  execFileSync('ssh-keygen', ['-q', '-t', 'ed25519', '-N', '', '-C', 'nemoclaw-e2e', '-f', file], { stdio: 'pipe' });
  return readFileSync(`${file}.pub`, 'utf8').trim();
}

/** An ssh client config for 127.0.0.1 on `port` with `key`; known_hosts pinned to our host key. */
function clientConfig(name: string, port: number, key: string): string {
  const file = join(dir, name);
  writeFileSync(
    file,
    [
      'Host 127.0.0.1',
      `  Port ${port}`,
      `  IdentityFile ${key}`,
      '  IdentitiesOnly yes',
      `  UserKnownHostsFile ${join(dir, 'known_hosts')}`,
      '  StrictHostKeyChecking yes',
      '  LogLevel ERROR',
      '',
    ].join('\n'),
  );
  return file;
}

async function startSshd(): Promise<void> {
  // sshd insists on its privilege-separation directory.
  if (!existsSync('/run/sshd')) mkdirSync('/run/sshd', { recursive: true, mode: 0o755 });
  const config = join(dir, 'sshd_config');
  writeFileSync(
    config,
    [
      'ListenAddress 127.0.0.1',
      `Port ${sshPort}`,
      `HostKey ${join(dir, 'host_key')}`,
      `AuthorizedKeysFile ${join(dir, 'authorized_keys')}`,
      `PidFile ${join(dir, 'sshd.pid')}`,
      'UsePAM no',
      'StrictModes no',
      'PermitRootLogin prohibit-password',
      'PasswordAuthentication no',
      'KbdInteractiveAuthentication no',
      // authorized_keys' environment= puts the remote nemoclaw-tui on PATH and names its home.
      'PermitUserEnvironment yes',
      'LogLevel VERBOSE',
      '',
    ].join('\n'),
  );
  const child = spawn(SSHD, ['-D', '-e', '-f', config], { stdio: ['ignore', 'ignore', 'pipe'] });
  sshd = child;
  child.stderr!.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`sshd did not start listening within 10 s:\n${sshdLog}`)), 10_000);
    child.stderr!.on('data', (s: string) => {
      sshdLog += s;
      if (sshdLog.includes('Server listening')) {
        clearTimeout(timer);
        resolve();
      }
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`sshd exited (${code}) before listening:\n${sshdLog}`));
    });
  });
}

/**
 * ssh processes still running for this suite: bridges (their argv names our config) and shared
 * masters (ssh renames those to `ssh: <ControlPath> [mux]`, in a nemoclaw-ssh-* dir).
 */
async function lingeringSsh(): Promise<string[]> {
  const r = await execa('ps', ['-eo', 'pid=,comm=,args='], { reject: false });
  return String(r.stdout)
    .split('\n')
    .filter((l) => l.trim().split(/\s+/)[1] === 'ssh' && (l.includes(dir) || l.includes('nemoclaw-ssh-')));
}

async function waitFor(what: string, ok: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await ok())) {
    if (Date.now() > deadline) throw new Error(`${what} within ${timeoutMs} ms:\n${(await lingeringSsh()).join('\n')}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** The local CLI (its own home, not the remote's), reaching the remote through ssh. */
function remoteArgs(config = sshConfig): string[] {
  return ['--host', HOST, '--ssh-config', config];
}

beforeAll(async () => {
  requireTools();
  dir = mkdtempSync('/tmp/nct-ssh-');
  chmodSync(dir, 0o700);
  sshPort = await freePort();
  const hostKey = keygen(join(dir, 'host_key'));
  const clientKey = keygen(join(dir, 'client_key'));
  keygen(join(dir, 'stranger_key'));
  writeFileSync(join(dir, 'known_hosts'), `[127.0.0.1]:${sshPort} ${hostKey.split(' ').slice(0, 2).join(' ')}\n`);

  up = await startUpstream('ssh-e2e');
  d = await startDaemonSupervisor({ policyText: askPolicyAllowingLoopback(up.port), args: ['--unsafe-allow-loopback-upstreams'] });
  local = await makeTempHome('nct-local-');

  // The remote `nemoclaw-tui`: this checkout's bin on this test's Node 24.
  const remoteBin = join(dir, 'bin');
  mkdirSync(remoteBin);
  writeFileSync(join(remoteBin, 'nemoclaw-tui'), `#!/bin/sh\nexec '${process.execPath}' '${BIN}' "$@"\n`, { mode: 0o755 });
  const env = [`PATH=${remoteBin}:/usr/local/bin:/usr/bin:/bin`, `NEMOCLAW_HOME=${d.home}`, 'NO_COLOR=1'];
  writeFileSync(join(dir, 'authorized_keys'), `${env.map((e) => `environment="${e}"`).join(',')} ${clientKey}\n`);

  await startSshd();
  sshConfig = clientConfig('ssh_config', sshPort, join(dir, 'client_key'));
}, 90_000);

afterAll(async () => {
  await pane.kill();
  if (sshd && sshd.exitCode === null) {
    const exited = new Promise((r) => sshd!.once('exit', r));
    sshd.kill('SIGTERM');
    await exited;
  }
  await d?.stop();
  await up?.close();
  await local?.cleanup();
  if (dir) rmSync(dir, { recursive: true, force: true });
}, 90_000);

describe('--host over a real ssh connection (own sshd on loopback)', () => {
  it('headless: follows the remote supervisor live, then leaves no ssh behind', async () => {
    const remotePid = (await d.client.status()).pid;
    // Its temp dirs (and so the ssh master's ControlPath) under this suite's dir: the master is found by that.
    const tmp = join(dir, 'tmp');
    mkdirSync(tmp, { recursive: true, mode: 0o700 });
    const follower = spawnCli([...remoteArgs(), '--headless'], { home: local.dir, env: { TMPDIR: tmp } });
    try {
      const attached = await follower.waitForLine((l) => l.startsWith('attached over ssh'), 30_000, 'stderr');
      expect(attached).toBe(`attached over ssh to sandbox "default" on ${HOST} (supervisor pid ${remotePid}, policy revision 1)`);
      // The backlog of the remote supervisor (its start), through the bridge.
      await follower.waitForLine((l) => l.includes('sandbox.lifecycle') && l.includes(`pid=${remotePid}`), 20_000);

      // Something new happens on the remote box; the local follower sees it live.
      const changed = join(local.dir, 'changed-policy.yaml');
      writeFileSync(changed, askPolicyAllowingLoopback(up.port).replace('approvals:', '  docs:\n    binaries: [{ path: "/**" }]\n    endpoints:\n      - host: docs.example.com\n        port: 443\napprovals:'));
      const set = await runCli(['policy', 'set', changed], { home: d.home });
      expect(set.code, set.stderr).toBe(0);
      await follower.waitForLine((l) => l.includes('policy.revision') && l.includes('revision 2'), 20_000);

      // The ssh connection drops (its shared master dies): the follower reconnects through a new
      // one and misses nothing; the remote supervisor never noticed.
      const masters = (await execa('ps', ['-eo', 'pid=,comm=,args='])).stdout
        .split('\n')
        .filter((l) => l.trim().split(/\s+/)[1] === 'ssh' && l.includes(`${tmp}/nemoclaw-ssh-`) && l.includes('[mux]'));
      expect(masters, 'the shared ssh master of the follower').toHaveLength(1);
      process.kill(Number(masters[0]!.trim().split(/\s+/)[0]), 'SIGTERM');
      const back = await runCli(['policy', 'set', join(d.home, 'policy-default.yaml')], { home: d.home });
      expect(back.code, back.stderr).toBe(0);
      await follower.waitForLine((l) => l.includes('reconnected'), 30_000, 'stderr');
      await follower.waitForLine((l) => l.includes('policy.revision') && l.includes('revision 3'), 20_000);
      expect((await d.client.status()).pid).toBe(remotePid);
    } finally {
      const end = await follower.kill('SIGTERM');
      expect(end.code, end.stderr).toBe(0);
    }
    // The bridge's ssh processes and the shared master are gone with the follower.
    await waitFor('ssh processes of the bridge still ran after the follower ended', async () => (await lingeringSsh()).length === 0);
    expect(sshdLog).toMatch(new RegExp(`Accepted publickey for ${USER} from 127\\.0\\.0\\.1`));
  }, 90_000);

  it('TUI in tmux: a request held on the remote sandbox is approved with a on the local side', async () => {
    requireTmux();
    // The operator's terminal: the local home, no NEMOCLAW_HOME of the remote, TERM of a real terminal.
    await pane.run(tuiPaneCommand({ NEMOCLAW_HOME: local.dir }, remoteArgs()));
    await pane.waitFor('the attached panes', (s) => s.includes('connected') && s.includes('Network') && s.includes(' pending'));
    expect(await pane.screen()).toContain(`default@${HOST}`);

    // On the remote box, a sandboxed command asks for a host its policy does not know.
    const target = `localhost:${up.port}`;
    const curl = execa(process.execPath, [BIN, 'run', '--', 'curl', '-s', '-S', '--noproxy', '', '-x', 'http://127.0.0.1:3128', `http://${target}/held-over-ssh`], {
      env: { ...process.env, NEMOCLAW_HOME: d.home, NO_COLOR: '1' },
      reject: false,
      timeout: 60_000,
    });
    try {
      const held = await pane.waitFor(`the held request to ${target}`, (s) => s.includes('HELD') && s.includes(target));
      expect(held).toMatch(new RegExp(`HELD\\s+${target}\\s+curl\\s+GET\\s+/held-over-ssh`));
      expect(up.requests.some((q) => q.url === '/held-over-ssh')).toBe(false);

      await pane.keys('a');
      await pane.waitFor('the approval', (s) => s.includes(`approved once: ${target}`), 15_000);
      const r = await curl;
      expect(r.exitCode, r.stderr).toBe(0);
      expect(JSON.parse(r.stdout)).toMatchObject({ from: 'ssh-e2e', url: '/held-over-ssh' });
    } finally {
      curl.kill();
    }

    // The remote audit log names the decision (taken through the ssh bridge).
    const decisions = await d.client.events({ kinds: ['approval.decision'] });
    expect(decisions).toContainEqual(expect.objectContaining({ kind: 'approval.decision', decision: 'once', by: 'tui', host: 'localhost', port: up.port }));

    await pane.waitFor('nothing held any more', (s) => /│ 0 pending/.test(s));
    await pane.keys('q');
    const { status, text } = await pane.exited(15_000);
    expect(status).toBe('0');
    expect(text).toContain(`detached from sandbox "default" on ${HOST}; the supervisor and the agent keep running (re-attach: nemoclaw-tui --host ${HOST} --ssh-config ${sshConfig})`);
    expect(JSON.parse((await runCli(['status', '--json'], { home: d.home })).stdout)).toMatchObject({ running: true, operators: 0 });
    await waitFor('ssh processes of the TUI still ran after it detached', async () => (await lingeringSsh()).length === 0);
  }, 90_000);

  it('headless commands with --host: status, pending, approve and logs against the remote supervisor', async () => {
    const cli = (args: string[]): ReturnType<typeof runCli> => runCli([...args, ...remoteArgs()], { home: local.dir, timeoutMs: 40_000 });
    const remotePid = (await d.client.status()).pid;

    // status asks the remote supervisor through the bridge (the local home has no pid file).
    const status = await cli(['status', '--json']);
    expect(status.code, status.stderr).toBe(0);
    expect(JSON.parse(status.stdout)).toMatchObject({ running: true, host: HOST, pid: remotePid, name: 'default' });
    const text = await cli(['status']);
    expect(text.code, text.stderr).toBe(0);
    expect(text.stdout).toContain(`sandbox "default" on ${HOST}: running (pid ${remotePid}`);
    // Nothing answers for that name on the box: said so, naming the host; exit 1.
    const none = await runCli(['--name', 'nosuch', 'status', '--json', ...remoteArgs()], { home: local.dir, timeoutMs: 40_000 });
    expect(none.code).toBe(1);
    expect(JSON.parse(none.stdout)).toEqual({ running: false, name: 'nosuch', host: HOST });
    expect(none.stderr).toMatch(new RegExp(`on ${HOST}: nothing answers on \\S+/sandboxes/nosuch/control\\.sock`));

    // Bad targets are usage errors, refused before ssh starts.
    const badHost = await runCli(['approve', 'p1', '--host', '-oProxyCommand=touch /tmp/x'], { home: local.dir });
    expect(badHost.code).toBe(2);
    expect(badHost.stderr).toContain('--host expects user@host');
    const noHost = await runCli(['pending', '--ssh-config', sshConfig], { home: local.dir });
    expect(noHost.code).toBe(2);
    expect(noHost.stderr).toContain('--ssh-config and --remote-command only apply with --host user@box');

    // Unattended requests are refused (when_unattended: deny): a remote `logs -f --approver` is the operator.
    const approver = spawnCli(['logs', '-f', '--approver', '--output', 'jsonl', ...remoteArgs()], { home: local.dir });
    const target = `localhost:${up.port}`;
    let curl: ReturnType<typeof execa> | undefined;
    try {
      await waitFor('the remote approver attached', async () => (await d.client.status()).operators >= 1, 30_000);

      curl = execa(process.execPath, [BIN, 'run', '--', 'curl', '-s', '-S', '--noproxy', '', '-x', 'http://127.0.0.1:3128', `http://${target}/held-for-cli`], {
        env: { ...process.env, NEMOCLAW_HOME: d.home, NO_COLOR: '1' },
        reject: false,
        timeout: 60_000,
      });
      let held: { id: string; host: string; port: number; state: string; request: string } | undefined;
      await waitFor(
        `pending --json --host listing the held request to ${target}`,
        async () => {
          const r = await cli(['pending', '--json']);
          expect(r.code, r.stderr).toBe(0);
          held = (JSON.parse(r.stdout) as Array<NonNullable<typeof held>>).find((p) => p.port === up.port && p.request.includes('/held-for-cli'));
          return held !== undefined;
        },
        30_000,
      );
      expect(held).toMatchObject({ host: 'localhost', state: 'held' });
      expect(up.requests.some((q) => q.url === '/held-for-cli')).toBe(false);

      const approve = await cli(['approve', held!.id]);
      expect(approve.code, approve.stderr).toBe(0);
      expect(approve.stdout).toContain(`${held!.id} ${target} approved once; 1 held request(s) resumed`);
      const r = await curl;
      expect(r.exitCode, String(r.stderr)).toBe(0);
      expect(JSON.parse(String(r.stdout))).toMatchObject({ from: 'ssh-e2e', url: '/held-for-cli' });

      // The approver's live follow saw the decision too.
      await approver.waitForLine((l) => l.includes('"approval.decision"') && l.includes('"by":"cli"'), 20_000);
    } finally {
      curl?.kill();
      const end = await approver.kill('SIGTERM');
      expect(end.code, end.stderr).toBe(0);
    }

    // The remote audit log, read back over ssh, names the decision taken from the command line.
    const logs = await cli(['logs', '-n', '50', '--output', 'jsonl']);
    expect(logs.code, logs.stderr).toBe(0);
    const events = logs.stdout
      .split('\n')
      .filter((l) => l.trim().length > 0)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(events).toContainEqual(expect.objectContaining({ kind: 'approval.decision', decision: 'once', by: 'cli', host: 'localhost', port: up.port }));

    await waitFor('the remote approver detached', async () => (await d.client.status()).operators === 0);
    await waitFor('ssh processes of the headless commands still ran after they ended', async () => (await lingeringSsh()).length === 0);
  }, 90_000);

  it('broken ssh fails fast with the host and what to check, never a hang', async () => {
    const attempt = async (args: string[]): Promise<{ code: number; stderr: string; ms: number }> => {
      const started = Date.now();
      const r = await runCli([...args, '--headless'], { home: local.dir, timeoutMs: 40_000 });
      return { code: r.code, stderr: r.stderr, ms: Date.now() - started };
    };

    // Nothing listens on the port.
    const closed = await attempt(remoteArgs(clientConfig('closed_port', await freePort(), join(dir, 'client_key'))));
    expect(closed.code).toBe(1);
    expect(closed.stderr).toMatch(new RegExp(`cannot reach ${HOST} over ssh: .*Connection refused`));
    expect(closed.stderr).toMatch(/next step: check that `ssh -F \S+closed_port .*` works without a prompt: host name, port, user and key/);

    // sshd refuses the key.
    const refused = await attempt(remoteArgs(clientConfig('stranger', sshPort, join(dir, 'stranger_key'))));
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(new RegExp(`cannot reach ${HOST} over ssh: .*Permission denied \\(publickey\\)`));
    expect(refused.stderr).toContain('next step: check that');

    // A server that accepts TCP but never speaks SSH: ssh's ConnectTimeout (10 s) ends it.
    const mutes = new Set<import('node:net').Socket>();
    const silent: Server = createServer((sock) => {
      mutes.add(sock);
      sock.on('error', () => undefined);
    });
    await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
    try {
      const port = (silent.address() as { port: number }).port;
      const mute = await attempt(remoteArgs(clientConfig('silent', port, join(dir, 'client_key'))));
      expect(mute.code).toBe(1);
      expect(mute.stderr).toMatch(new RegExp(`cannot reach ${HOST} over ssh: .*timed out`));
      expect(mute.ms).toBeLessThan(35_000);
    } finally {
      for (const sock of mutes) sock.destroy();
      await new Promise<void>((r) => silent.close(() => r()));
    }

    // ssh works, but the remote command is not there.
    const missing = await attempt([...remoteArgs(), '--remote-command', '/nonexistent/nemoclaw-tui']);
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain(`ssh reached ${HOST}, but "/nonexistent/nemoclaw-tui" could not be run there`);
    expect(missing.stderr).toContain('--remote-command /path/to/nemoclaw-tui');

    // ssh and the remote command work, but no supervisor of that name runs there.
    const other = await attempt(['--name', 'nosuch', ...remoteArgs()]);
    expect(other.code).toBe(1);
    expect(other.stderr).toMatch(new RegExp(`on ${HOST}: nothing answers on \\S+/sandboxes/nosuch/control\\.sock`));
    expect(other.stderr).toContain('`nemoclaw-tui up --name nosuch`');

    // Input that ssh or the remote shell could misread is refused before ssh runs.
    const option = await attempt(['--host', '-oProxyCommand=touch /tmp/x', '--ssh-config', sshConfig]);
    expect(option.code).toBe(2);
    expect(option.stderr).toContain('--host expects user@host');
    const shelly = await attempt([...remoteArgs(), '--remote-command', 'nemoclaw-tui;id']);
    expect(shelly.code).toBe(2);
    expect(shelly.stderr).toContain('--remote-command expects a command name or an absolute path');
    const noConfig = await attempt(['--host', HOST, '--ssh-config', join(dir, 'no-such-config')]);
    expect(noConfig.code).toBe(2);
    expect(noConfig.stderr).toContain(`ssh config file ${join(dir, 'no-such-config')} does not exist`);

    // NEMOCLAW_SSH_CONFIG stands in for --ssh-config.
    const viaEnv = await runCli(['--host', HOST, '--headless'], { home: local.dir, timeoutMs: 40_000, env: { NEMOCLAW_SSH_CONFIG: join(dir, 'stranger') } });
    expect(viaEnv.stderr).toMatch(/Permission denied \(publickey\)/);

    await waitFor('ssh processes still ran after the failed attempts', async () => (await lingeringSsh()).length === 0);
  }, 90_000);
});
