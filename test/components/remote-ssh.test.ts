/**
 * The ssh side of `--host` without an sshd: the argv handed to ssh, what is refused before ssh
 * runs, and how a failed carrier becomes a message naming the host and what to check. The real
 * ssh round trip is test/e2e/ssh-host.test.ts.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, expect, test } from 'vitest';
import { ControlClient } from '../../src/control/client.js';
import {
  describeRemoteFailure,
  sshBridgeCommand,
  startStdioForward,
  validateRemoteCommand,
  validateSshConfigFile,
  validateSshHost,
} from '../../components/remote.js';

const dir = mkdtempSync(join(tmpdir(), 'tui-remote-ssh-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const target = { host: 'ops@dgx-01', name: 'default' };

test('the ssh argv: bounded connect, no prompts, shared master, -F and the remote command when given', () => {
  const cmd = sshBridgeCommand('ops@dgx-01', 'lab', '/tmp/c', { sshConfig: '/etc/nct/ssh_config', remoteCommand: '/opt/nct/bin/nemoclaw-tui' });
  expect(cmd.slice(0, 4)).toEqual(['ssh', '-T', '-F', '/etc/nct/ssh_config']);
  expect(cmd).toEqual(expect.arrayContaining(['BatchMode=yes', 'ConnectTimeout=10', 'ControlMaster=auto', 'ControlPath=/tmp/c/master']));
  expect(cmd.slice(-6)).toEqual(['ops@dgx-01', '--', '/opt/nct/bin/nemoclaw-tui', '--name', 'lab', '__bridge']);
  expect(sshBridgeCommand('box', 'default', '/tmp/c')).not.toContain('-F');
});

test('hosts, remote commands and config files that ssh or the remote shell could misread are refused', () => {
  expect(validateSshHost('ops@10.0.0.7')).toBe('ops@10.0.0.7');
  expect(validateSshHost('ops@fe80::1')).toBe('ops@fe80::1');
  for (const bad of ['-oProxyCommand=x', 'ops@box;id', 'ops@$(id)', 'ops@box:22', '']) expect(() => validateSshHost(bad), bad).toThrow(/--host expects user@host/);

  expect(validateRemoteCommand('nemoclaw-tui')).toBe('nemoclaw-tui');
  expect(validateRemoteCommand('/home/ops/.local/bin/nemoclaw-tui')).toBe('/home/ops/.local/bin/nemoclaw-tui');
  for (const bad of ['-x', 'nemoclaw-tui;id', 'nemoclaw tui', '$(id)', 'bin/nemoclaw-tui', '/a/../b', '~/bin/nemoclaw-tui', '']) {
    expect(() => validateRemoteCommand(bad), bad).toThrow(/--remote-command expects a command name or an absolute path/);
  }

  const cfg = join(dir, 'ssh_config');
  writeFileSync(cfg, 'Host *\n');
  expect(validateSshConfigFile(cfg)).toBe(cfg);
  expect(() => validateSshConfigFile(join(dir, 'missing'))).toThrow(/ssh config file .*missing does not exist/);
  expect(() => validateSshConfigFile(dir)).toThrow(/is not a file/);
});

test('each way the carrier can fail is told apart, naming the host and the next step', () => {
  const unreachable = describeRemoteFailure({ ...target, sshConfig: '/c' }, { code: 255, stderr: 'ssh: connect to host dgx-01 port 22: Connection refused\n' }, undefined);
  expect(unreachable.message).toBe('cannot reach ops@dgx-01 over ssh: ssh: connect to host dgx-01 port 22: Connection refused');
  expect(unreachable.nextStep).toContain('`ssh -F /c ops@dgx-01 nemoclaw-tui --version`');

  const notThere = describeRemoteFailure(target, { code: 127, stderr: 'bash: line 1: nemoclaw-tui: command not found\n' }, undefined);
  expect(notThere.message).toContain('ssh reached ops@dgx-01, but "nemoclaw-tui" could not be run there');
  expect(notThere.nextStep).toContain('--remote-command');

  const remoteCli = describeRemoteFailure(
    target,
    { code: 1, stderr: 'nemoclaw-tui: nothing answers on /x/control.sock: ENOENT\n  next step: start the supervisor on that box with `nemoclaw-tui up`\n' },
    undefined,
  );
  expect(remoteCli.message).toBe('on ops@dgx-01: nothing answers on /x/control.sock: ENOENT');
  expect(remoteCli.nextStep).toBe('on ops@dgx-01: start the supervisor on that box with `nemoclaw-tui up`');

  const noSsh = describeRemoteFailure(target, { code: null, stderr: '', spawnError: 'spawn ssh ENOENT' }, undefined);
  expect(noSsh.code).toBe('prerequisite_missing');
  expect(noSsh.nextStep).toContain('openssh-client');

  const silent = describeRemoteFailure(target, undefined, new Error('did not answer GET /v1/status within 25000 ms'));
  expect(silent.message).toContain('no answer from the supervisor of sandbox "default" on ops@dgx-01 over ssh');
});

test('the forward keeps the failed carrier\'s exit code and stderr for the message', async () => {
  const forward = await startStdioForward({ command: ['sh', '-c', 'echo "Permission denied (publickey)." >&2; exit 255'] });
  try {
    const client = new ControlClient({ socketPath: forward.socketPath, sandbox: 'default@box' });
    await expect(client.request('GET', '/v1/status')).rejects.toThrow();
    await forward.carriersDone(5000);
    expect(forward.lastFailure()).toMatchObject({ code: 255, stderr: 'Permission denied (publickey).\n' });
  } finally {
    await forward.close();
  }
});
