/**
 * Relay-inside mode for real: the whole CLI runs as an unprivileged user (nobody) with a
 * NEMOCLAW_HOME it owns, so the supervisor is not root. `run -- curl` inside the sandbox goes through
 * 127.0.0.1:3128, relayed INSIDE the sandbox by socat to the egress proxy's Unix socket, and gets the
 * proxy's answer (403: the host is not in the policy). `status` says which network mode is active and
 * why, and the lifecycle event records it. Needs root (to drop to nobody), bubblewrap, socat, curl,
 * and unprivileged user namespaces (`nemoclaw-tui doctor` checks them).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chownSync, chmodSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { join, relative } from 'node:path';
import { execa } from 'execa';
import { REPO_ROOT } from '../helpers/supervisor.js';

const NOBODY = 65534;
let home: string;
let staged: string;

/**
 * Run the CLI as nobody. The checkout may sit under a 0700 directory (e.g. /root), so a root bwrap
 * mount namespace first exposes it at a /tmp path nobody can traverse (what the driver does too).
 */
async function asNobody(args: string[], timeoutMs = 60_000): Promise<{ code: number; stdout: string; stderr: string }> {
  const node = process.execPath.startsWith(`${REPO_ROOT}/`) ? join(staged, relative(REPO_ROOT, process.execPath)) : process.execPath;
  const r = await execa(
    '/usr/bin/bwrap',
    [
      '--dev-bind', '/', '/', '--bind', REPO_ROOT, staged, '--',
      '/usr/bin/setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', '--',
      node, join(staged, 'bin', 'nemoclaw-tui.js'), ...args,
    ],
    {
      env: { PATH: '/usr/bin:/bin', HOME: home, NEMOCLAW_HOME: home, NO_COLOR: '1' },
      extendEnv: false,
      reject: false,
      timeout: timeoutMs,
      stdin: 'ignore',
    },
  );
  return { code: r.exitCode ?? 1, stdout: String(r.stdout), stderr: String(r.stderr) };
}

beforeAll(() => {
  const missing = ['/usr/bin/bwrap', '/usr/bin/socat', '/usr/bin/curl', '/usr/bin/setpriv'].filter((p) => !existsSync(p));
  if (missing.length > 0 || process.getuid?.() !== 0) {
    throw new Error(`this suite needs root and ${missing.join(', ') || 'its tools'}: run .ci/run or apt-get install -y bubblewrap socat curl util-linux`);
  }
  home = mkdtempSync('/tmp/ncnr-');
  chownSync(home, NOBODY, NOBODY);
  chmodSync(home, 0o700);
  staged = mkdtempSync('/tmp/ncnr-repo-');
  chmodSync(staged, 0o755);
  const policy = join(home, 'policy.yaml');
  writeFileSync(policy, 'version: 1\napprovals:\n  mode: deny\nnetwork_policies:\n  example:\n    binaries: [{ path: "/**" }]\n    endpoints:\n      - host: api.example.com\n        port: 443\n');
  chownSync(policy, NOBODY, NOBODY);
});

afterAll(async () => {
  if (home) await asNobody(['down'], 30_000);
  if (home) rmSync(home, { recursive: true, force: true });
  if (staged) rmSync(staged, { recursive: true, force: true });
}, 60_000);

describe('relay-inside mode with a supervisor that is not root', () => {
  it('runs curl in the sandbox through the relay to the egress proxy socket', async () => {
    const r = await asNobody([
      'run', '--policy', join(home, 'policy.yaml'), '--',
      '/usr/bin/curl', '-sS', '-o', '/dev/null', '-w', '%{http_code}', 'http://blocked.invalid/',
    ]);
    expect(r.stdout.trim(), r.stderr).toBe('403');
    expect(r.code).toBe(0);
  }, 90_000);

  it('binds only the proxy socket directory, read-only: the sandbox sees no per-launch files and cannot replace the socket', async () => {
    // Issue 11 (same class as the confused deputy): run/ holds every launch's seccomp program,
    // passwd and fifos; a same-uid sandbox that could write there could swap the next launch's filter.
    const r = await asNobody([
      'run', '--policy', join(home, 'policy.yaml'), '--',
      '/bin/sh', '-c', 'ls -A /run/nemoclaw; touch /run/nemoclaw/planted 2>&1 || echo touch-refused; rm /run/nemoclaw/proxy.sock 2>&1 || echo rm-refused',
    ]);
    expect(r.stdout.split('\n')[0]?.trim(), r.stderr).toBe('proxy.sock');
    expect(r.stdout).toContain('touch-refused');
    expect(r.stdout).toContain('rm-refused');
    expect(r.stdout).not.toMatch(/sbx-|seccomp/);
  }, 90_000);

  it('says in status and in the lifecycle event that the network mode is relay-inside, and why', async () => {
    const text = await asNobody(['status']);
    expect(text.stdout).toMatch(/bubblewrap, network relay-inside \(supervisor not root: relay inside the sandbox, AF_UNIX allowed, no fs-violation monitor/);
    const r = await asNobody(['logs', '--output', 'jsonl']);
    const running = r.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((e) => e.kind === 'sandbox.lifecycle' && e.phase === 'running');
    expect(running, r.stderr).toMatchObject({ net_mode: 'relay-inside', monitor: false, uid: NOBODY });
    // Landlock needs no privilege: the second layer holds in non-root mode too. Its denials are not
    // readable here (the audit stream needs CAP_AUDIT_READ), and the event says so.
    expect(running).toMatchObject({ violation_source: 'none', landlock: { enforced: true, audit_log: false, connect: [3128] } });
    expect(String(running!.landlock_summary)).toMatch(/^Landlock ABI \d+ \(best_effort\)/);
  }, 60_000);
});
