/**
 * A real detached supervisor (`nemoclaw-tui up`) started inside a private mount namespace whose
 * /etc/hosts we write: the proxy resolves names itself, so test names (`a.x.test`, a name that
 * resolves to 169.254.169.254) reach it without touching the host's /etc/hosts. The sandbox has
 * its own /etc/hosts (bwrap), and the CLI talks to the daemon over its socket in $NEMOCLAW_HOME,
 * so nothing else changes. Needs root and util-linux `unshare`.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { execa } from 'execa';
import { ControlClient } from '../../src/control/client.js';
import { BIN, makeTempHome, runCli, type CliResult } from '../helpers/supervisor.js';

export interface NsDaemon {
  home: string;
  client: ControlClient;
  /** `down` (the home stays until cleanup()). */
  down(): Promise<CliResult>;
  /** `up` again in a fresh namespace with the same hosts, home and arguments. */
  up(): Promise<void>;
  cleanup(): Promise<void>;
}

export async function startDaemonWithHosts(opts: {
  hosts: Record<string, string>;
  policyText: string;
  args?: string[];
  env?: Record<string, string>;
}): Promise<NsDaemon> {
  if (process.getuid?.() !== 0) throw new Error('this test needs root (a private mount namespace for /etc/hosts)');
  const temp = await makeTempHome('nct-egress-');
  const home = temp.dir;
  const hostsFile = join(home, 'hosts');
  writeFileSync(hostsFile, ['127.0.0.1 localhost', '::1 localhost', ...Object.entries(opts.hosts).map(([name, ip]) => `${ip} ${name}`)].join('\n') + '\n');
  const policyFile = join(home, 'policy.yaml');
  writeFileSync(policyFile, opts.policyText);
  const env = { ...process.env, NO_COLOR: '1', JOURNAL_STREAM: undefined, ...opts.env, NEMOCLAW_HOME: home };
  const up = async (): Promise<void> => {
    // The script is fixed; the hosts file and the command come in as positional parameters.
    const r = await execa(
      'unshare',
      ['--mount', '--propagation', 'private', '--', 'sh', '-c', 'hosts=$1; shift; mount --bind "$hosts" /etc/hosts && exec "$@"', 'sh', hostsFile, process.execPath, BIN, 'up', '--policy', policyFile, ...(opts.args ?? [])],
      { env, extendEnv: false, reject: false, timeout: 60_000, input: '' },
    );
    if (r.exitCode !== 0) throw new Error(`nemoclaw-tui up in a private mount namespace failed (exit ${r.exitCode}; needs root and unshare):\n${r.stdout}\n${r.stderr}`);
  };
  await up();
  return {
    home,
    client: ControlClient.forSandbox('default', home),
    down: () => runCli(['down'], { home }),
    up,
    async cleanup() {
      await runCli(['down'], { home });
      await temp.cleanup();
    },
  };
}
