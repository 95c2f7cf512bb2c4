/**
 * The escape battery: test/e2e/probes/escape.py runs INSIDE the real sandbox through the real
 * `nemoclaw-tui run` (bin, temp NEMOCLAW_HOME, detached supervisor), and every probe must fail in
 * exactly the expected way. Each filesystem violation among them must appear as an fs.violation
 * event with the right path. Needs root, bubblewrap, strace, socat and python3 (CI installs them).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chmodSync, copyFileSync, existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { ControlClient } from '../../src/control/client.js';
import { resolveSandboxIdentity } from '../../src/sandbox/identity.js';
import { REPO_ROOT, makeTempHome, runCli, type TempHome } from '../helpers/supervisor.js';

const POLICY = `version: 1
filesystem_policy:
  include_workdir: true
  read_only: [/usr, /etc/ssl]
  read_write: [/sandbox, /tmp]
  hidden: ["~/.ssh", /etc/shadow, /etc/gshadow, /root, "~/.netrc"]
process:
  run_as_user: sandbox
  limits: { pids: 64, memory: 256Mi }
  env: { LANG: C.UTF-8 }
network_policies: {}
`;

const EXPECTED: Record<string, string> = {
  write_usr: 'errno:EROFS',
  write_etc_passwd: 'errno:EROFS',
  create_in_root: 'errno:EROFS',
  mkdir_in_root: 'errno:EROFS',
  symlink_in_root: 'errno:EROFS',
  chmod_usr_binary: 'errno:EROFS',
  rename_in_etc: 'errno:EROFS',
  unlink_usr_binary: 'errno:EROFS',
  read_etc_shadow: 'errno:ENOENT',
  read_etc_gshadow: 'errno:ENOENT',
  list_host_root_home: 'errno:ENOENT',
  read_ssh_key_in_home: 'errno:ENOENT',
  // A hidden file inside the workdir is masked by an empty file nobody may open (not /dev/null,
  // which read as empty and left no trace).
  read_hidden_file_in_home: 'errno:EACCES',
  host_home_invisible: 'absent',
  host_repo_invisible: 'absent',
  etc_passwd_is_synthetic: 'synthetic',
  write_sandbox_works: 'x',
  write_tmp_works: 'x',
  // With transparent interception planned (root), Landlock leaves connect to the netns (an
  // intercepted connect keeps its original port at connect()), whose lo has no host service.
  host_loopback_service: 'errno:ECONNREFUSED',
  proxy_bridge_listens: 'ok',
  only_lo_interface: 'lo',
  raw_socket: 'errno:EPERM',
  unix_socket: 'errno:EAFNOSUPPORT',
  // Socket families are an allowlist (issue 11): everything but INET, INET6, UNIX (socketpair, and
  // socket when the bridge is inside) and NETLINK_ROUTE is "not supported", AF_PACKET included.
  packet_socket: 'errno:EAFNOSUPPORT',
  netlink_audit_socket: 'errno:EPERM',
  netlink_route_socket_allowed: 'ok',
  socket_family_high_bits: 'errno:EAFNOSUPPORT',
  socket_family_high_bits_packet: 'errno:EAFNOSUPPORT',
  vsock_socket_bind: 'errno:EAFNOSUPPORT',
  vsock_family_high_bits: 'errno:EAFNOSUPPORT',
  socket_family_packet: 'errno:EAFNOSUPPORT',
  socket_family_bluetooth: 'errno:EAFNOSUPPORT',
  socket_family_alg: 'errno:EAFNOSUPPORT',
  socket_family_xdp: 'errno:EAFNOSUPPORT',
  socket_family_key: 'errno:EAFNOSUPPORT',
  socket_family_tipc: 'errno:EAFNOSUPPORT',
  socket_family_can: 'errno:EAFNOSUPPORT',
  socket_family_rds: 'errno:EAFNOSUPPORT',
  socket_family_kcm: 'errno:EAFNOSUPPORT',
  socket_family_unspec: 'errno:EAFNOSUPPORT',
  // Families 0..255 (but the allowed four) × stream, dgram, raw, seqpacket, rdm.
  socket_every_other_family: 'all:EAFNOSUPPORT',
  socketpair_every_other_family: 'all:EAFNOSUPPORT',
  socketpair_unix_allowed: 'ok',
  socket_inet6_allowed: 'ok',
  // Foreign syscall ABIs from a 64-bit process: i386 int 0x80 and the x32 bit are killed (SIGSYS).
  ia32_int80_socket: 'signal:31',
  ia32_int80_socketcall: 'signal:31',
  x32_syscall_bit: 'signal:31',
  personality_query_allowed: 'ok',
  personality_per_linux_allowed: 'ok',
  personality_read_implies_exec: 'errno:EPERM',
  personality_addr_no_randomize: 'errno:EPERM',
  personality_flag_high_bits: 'errno:EPERM',
  personality_linux32: 'errno:EPERM',
  // Another process of the sandbox uid: its fds, its memory, its address space.
  pidfd_getfd_sibling: 'errno:EPERM',
  kcmp_sibling: 'errno:EPERM',
  process_vm_writev_sibling: 'errno:EPERM',
  process_madvise_sibling: 'errno:EPERM',
  // /proc is remounted read-only after bwrap mounts it.
  proc_mem_write_self: 'errno:EROFS',
  proc_mem_write_sibling: 'errno:EROFS',
  // pid 1 (bwrap's init) is outside the command's Landlock domain: ptrace-class access to it is
  // refused (EACCES) before the read-only /proc mount is even consulted.
  proc_mem_write_pid1: 'errno:EACCES',
  proc_write_oom_score_adj: 'errno:EROFS',
  proc_self_fd_reopen_works: 'x',
  // What remains, documented in the README: reading the memory of a process in the same Landlock
  // domain (a sibling) through /proc; pid 1, outside the domain, is refused (issue 19).
  proc_mem_read_sibling_remains: 'ok',
  proc_mem_read_pid1_remains: 'errno:EACCES',
  ptrace_traceme: 'errno:EPERM',
  ptrace_attach_pid1: 'errno:EPERM',
  process_vm_readv: 'errno:EPERM',
  mount_tmpfs: 'errno:EPERM',
  umount_usr: 'errno:EPERM',
  pivot_root: 'errno:EPERM',
  fsopen: 'errno:EPERM',
  open_tree: 'errno:EPERM',
  unshare_user_syscall: 'errno:EPERM',
  unshare_U_binary: 'exit:1',
  nested_bwrap: 'exit:1',
  setns_pid1_net: 'errno:EACCES',
  clone3_enosys: 'errno:ENOSYS',
  clone_newnet: 'errno:EPERM',
  io_uring_setup: 'errno:EPERM',
  bpf: 'errno:EPERM',
  perf_event_open: 'errno:EPERM',
  userfaultfd: 'errno:EPERM',
  keyctl: 'errno:EPERM',
  add_key: 'errno:EPERM',
  kexec_load: 'errno:EPERM',
  init_module: 'errno:EPERM',
  open_by_handle_at: 'errno:EPERM',
  memfd_create_allowed: 'ok',
  setuid_binary_gains_nothing: 'exit:1',
  pid1_is_sandbox_init: '/usr/bin/bwrap',
  host_pids_invisible: 'few',
  capabilities_all_zero: Array(5).fill('0000000000000000').join(','),
  no_new_privs: '1',
  seccomp_filter_mode: '2',
  rlimit_core_zero: '0,0',
  // The unprivileged host uid (nemoclaw-sandbox when `doctor --fix` created it, else 65534).
  uid_inside: String(resolveSandboxIdentity('sandbox').uid),
  hostname: 'sandbox',
  // Proxy variables, the CA-bundle variables of the egress trust bundle, the router's address and
  // per-sandbox token (SDK names too, in `run`), and the policy's own: nothing from the host.
  environment: 'ALL_PROXY,ANTHROPIC_API_KEY,ANTHROPIC_BASE_URL,CURL_CA_BUNDLE,GIT_SSL_CAINFO,HOME,HTTPS_PROXY,HTTP_PROXY,LANG,NEMOCLAW_INFERENCE_TOKEN,NEMOCLAW_INFERENCE_URL,NODE_EXTRA_CA_CERTS,NODE_USE_ENV_PROXY,NO_PROXY,OPENAI_API_KEY,OPENAI_BASE_URL,PATH,PWD,REQUESTS_CA_BUNDLE,SSL_CERT_FILE,WGETRC,all_proxy,http_proxy,https_proxy,no_proxy',
  fork_bomb_stopped: 'errno:EAGAIN below-limit',
  memory_balloon_stopped: 'signal:9',
};

/** Violations the monitor must report: [syscall-independent path, rule fragment]. */
const EXPECTED_VIOLATIONS: Array<[string, string]> = [
  ['/usr/bin/nemoclaw-probe', 'read_only[0]: /usr'],
  ['/etc/passwd', 'read-only'],
  ['/evil', 'read-only sandbox root'],
  ['/evil-dir', 'read-only sandbox root'],
  ['/evil-link', 'read-only sandbox root'],
  ['/usr/bin/ls', 'read_only[0]: /usr'],
  ['/etc/hosts', 'read-only'],
  ['/etc/shadow', 'hidden[1]: /etc/shadow'],
  ['/etc/gshadow', 'hidden[2]: /etc/gshadow'],
  ['/root', 'hidden[3]: /root'],
  ['/sandbox/.ssh/id_rsa', 'hidden[0]: /sandbox/.ssh'],
  ['/sandbox/.netrc', 'hidden[4]: /sandbox/.netrc'],
];

function requireTools(): void {
  const missing = ['/usr/bin/bwrap', '/usr/bin/strace', '/usr/bin/socat', '/usr/bin/python3'].filter((p) => !existsSync(p));
  if (missing.length > 0 || process.getuid?.() !== 0) {
    throw new Error(`the escape battery needs root and ${missing.join(', ') || 'its tools'}; run .ci/run or: apt-get install -y bubblewrap strace socat python3`);
  }
}

describe('escape battery through `nemoclaw-tui run`', () => {
  let home: TempHome;
  let server: Server;
  let port = 0;
  let results = new Map<string, string>();
  let exitCode = -1;
  let stderr = '';

  beforeAll(async () => {
    requireTools();
    home = await makeTempHome('nce-');
    server = createServer((s) => s.end('host loopback service\n'));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    port = (server.address() as { port: number }).port;
    const workdir = join(home.dir, 'work');
    mkdirSync(join(workdir, '.ssh'), { recursive: true });
    writeFileSync(join(workdir, '.ssh', 'id_rsa'), 'PRIVATE KEY that must stay hidden\n');
    writeFileSync(join(workdir, '.netrc'), 'machine example.com password hunter2\n');
    copyFileSync(join(REPO_ROOT, 'test/e2e/probes/escape.py'), join(workdir, 'escape.py'));
    chmodSync(workdir, 0o755);
    const policy = join(home.dir, 'policy.yaml');
    writeFileSync(policy, POLICY);
    const r = await runCli(
      ['run', '--policy', policy, '--workdir', workdir, '--', '/usr/bin/python3', '/sandbox/escape.py', String(port)],
      { home: home.dir, env: { OPENAI_API_KEY: 'sk-host-secret', NEMOCLAW_PROBE_HOST_VAR: 'leak' }, timeoutMs: 90_000 },
    );
    exitCode = r.code;
    stderr = r.stderr;
    for (const line of r.stdout.split('\n')) {
      if (!line.startsWith('{')) continue;
      const { probe, result } = JSON.parse(line) as { probe: string; result: string };
      results.set(probe, result);
    }
  }, 120_000);

  afterAll(async () => {
    if (home) {
      await runCli(['down'], { home: home.dir, timeoutMs: 30_000 });
      await home.cleanup();
    }
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  }, 60_000);

  it('runs every probe and exits with the probe script’s code', () => {
    expect(exitCode, `run exited ${exitCode}; stderr:\n${stderr}`).toBe(0);
    expect(Object.keys(EXPECTED).length).toBeGreaterThanOrEqual(40);
    expect([...results.keys()].sort()).toEqual(Object.keys(EXPECTED).sort());
  });

  for (const [probe, expected] of Object.entries(EXPECTED)) {
    it(`${probe} → ${expected}`, () => {
      expect(results.get(probe)).toBe(expected);
    });
  }

  it('reports every filesystem violation as an fs.violation event with its path and rule', async () => {
    const client = ControlClient.forSandbox('default', home.dir);
    const events = await client.events({ kinds: ['fs.violation'] });
    for (const [path, rule] of EXPECTED_VIOLATIONS) {
      const ev = events.find((e) => e.path === path);
      expect(ev, `fs.violation for ${path}; got ${events.map((e) => String(e.path)).join(', ')}`).toBeDefined();
      expect(String(ev!.rule)).toContain(rule);
      expect(typeof ev!.pid).toBe('number');
      expect(String(ev!.binary)).toMatch(/python3/);
    }
    // Writes inside the sandbox's own writable trees are not violations.
    expect(events.some((e) => String(e.path).startsWith('/sandbox/probe') || String(e.path).startsWith('/tmp/'))).toBe(false);
  });

  it('records the sandbox lifecycle: starting, running (pid, bridge-outside), exited 0', async () => {
    const client = ControlClient.forSandbox('default', home.dir);
    const events = await client.events({ kinds: ['sandbox.lifecycle'] });
    const phases = events.filter((e) => e.phase !== undefined).map((e) => e.phase);
    expect(phases).toEqual(['starting', 'running', 'exited']);
    const running = events.find((e) => e.phase === 'running')!;
    expect(running.net_mode).toBe('bridge-outside');
    expect(running.pid).toBeGreaterThan(1);
    expect(events.find((e) => e.phase === 'exited')!.exit_code).toBe(0);
  });
});
