/**
 * Landlock alone holds: the real sandbox (bubblewrap, from dist/) with its mount layout deliberately
 * weakened for this test — a writable bind of a world-writable host directory at /var/weak and over
 * /usr, a hidden path's host directory bound writable at /etc/nemoclaw-secret, hidden paths left
 * unmasked, /proc left writable — must still refuse every write outside /sandbox and /tmp (EACCES),
 * every read of the hidden path and every write to /proc/self/mem. The refusals come back as
 * fs.violation events from the kernel's own audit records (Landlock ABI 7), without strace.
 * Needs root (staging, uid switch, the audit stream), bubblewrap, python3 and a kernel with Landlock.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execa } from 'execa';
import { chmodSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { launchBwrap } from '../../dist/src/sandbox/index.js';
import type { FsViolation } from '../../dist/src/sandbox/monitor.js';
import type { LandlockReport } from '../../dist/src/sandbox/landlock.js';
import { REPO_ROOT } from '../helpers/supervisor.js';

// Fixed probe text (argv, not a shell): each line is {"probe": name, "result": ...}.
const PROBES = String.raw`
import json, os, errno
def probe(name, fn):
    try:
        r = fn()
        out = "ok" if r is None else str(r)
    except OSError as e:
        out = "errno:" + errno.errorcode.get(e.errno, str(e.errno))
    print(json.dumps({"probe": name, "result": out}), flush=True)
def write(path):
    with open(path, "w") as f:
        f.write("x")
def read(path):
    with open(path) as f:
        return f.read()
def mem_write():
    fd = os.open("/proc/self/mem", os.O_RDWR)
    os.close(fd)
probe("weak_bind_is_writable_by_mounts", lambda: os.access("/var/weak", os.W_OK) and "writable")
probe("write_weak_bind", lambda: write("/var/weak/planted"))
probe("mkdir_weak_bind", lambda: os.mkdir("/var/weak/dir"))
probe("write_weak_bind_under_usr", lambda: write("/usr/local/planted"))
probe("read_hidden_exposed", lambda: read("/etc/nemoclaw-secret/key"))
probe("list_hidden_exposed", lambda: os.listdir("/etc/nemoclaw-secret"))
probe("write_hidden_exposed", lambda: write("/etc/nemoclaw-secret/new"))
probe("proc_is_writable_by_mounts", lambda: "rw" if " /proc proc rw" in read("/proc/self/mounts") else "ro")
probe("proc_mem_write_self", mem_write)
probe("proc_write_oom_score_adj", lambda: write("/proc/self/oom_score_adj"))
probe("write_sandbox_works", lambda: write("/sandbox/ok") or read("/sandbox/ok"))
probe("write_tmp_works", lambda: write("/tmp/ok") or read("/tmp/ok"))
`;

const EXPECTED: Record<string, string> = {
  weak_bind_is_writable_by_mounts: 'writable',
  write_weak_bind: 'errno:EACCES',
  mkdir_weak_bind: 'errno:EACCES',
  write_weak_bind_under_usr: 'errno:EACCES',
  read_hidden_exposed: 'errno:EACCES',
  list_hidden_exposed: 'errno:EACCES',
  write_hidden_exposed: 'errno:EACCES',
  proc_is_writable_by_mounts: 'rw',
  proc_mem_write_self: 'errno:EACCES',
  proc_write_oom_score_adj: 'errno:EACCES',
  write_sandbox_works: 'x',
  write_tmp_works: 'x',
};

describe('Landlock holds with bubblewrap\'s layout weakened', () => {
  const base = mkdtempSync('/tmp/ncw-');
  const weak = join(base, 'weak');
  const weakUsr = join(base, 'weak-usr');
  const secret = join(base, 'secret');
  const results = new Map<string, string>();
  const violations: FsViolation[] = [];
  let landlock: LandlockReport | undefined;
  let source = '';
  let exitCode = -1;
  let stderr = '';

  beforeAll(async () => {
    if (process.getuid?.() !== 0) throw new Error('this test needs root (the sandbox stages binds as root and reads the audit stream)');
    const b = await execa(process.execPath, [join(REPO_ROOT, 'bin', 'build-native.js')], { reject: false });
    expect(b.exitCode, String(b.stderr)).toBe(0);
    for (const d of [weak, weakUsr, secret]) {
      mkdirSync(d, { recursive: true });
      chmodSync(d, 0o777); // the mount layout and DAC both allow the sandbox uid: only Landlock is left
    }
    writeFileSync(join(secret, 'key'), 'PRIVATE\n');
    chmodSync(join(secret, 'key'), 0o666);
    chmodSync(base, 0o755);
    const sb = await launchBwrap({
      id: 'weak',
      command: ['/usr/bin/python3', '-c', PROBES],
      workdir: join(base, 'wd'),
      runDir: join(base, 'run'),
      proxySocket: join(base, 'run', 'proxy.sock'),
      filesystem: { include_workdir: true, read_only: ['/usr'], read_write: ['/sandbox', '/tmp'], hidden: ['/etc/nemoclaw-secret', '/root'], monitor: true },
      process: { seccomp: { block: [], allow: [] }, limits: {}, env: {} },
      landlock: { compatibility: 'hard_requirement' },
      violationSource: 'kernel',
      weakenLayoutForTest: {
        writableBinds: [
          { source: weak, target: '/var/weak' },
          { source: weakUsr, target: '/usr/local' },
          { source: secret, target: '/etc/nemoclaw-secret' },
        ],
        exposeHidden: true,
        procWritable: true,
      },
      onViolation: (v) => violations.push(v),
    });
    landlock = sb.landlock;
    source = sb.violationSource;
    let out = '';
    sb.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    sb.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
    exitCode = (await sb.wait()).exitCode;
    await new Promise((r) => setTimeout(r, 300)); // the last audit records are asynchronous
    for (const line of out.split('\n')) {
      if (!line.startsWith('{')) continue;
      const { probe, result } = JSON.parse(line) as { probe: string; result: string };
      results.set(probe, result);
    }
  }, 60_000);

  afterAll(() => {
    rmSync(base, { recursive: true, force: true });
  });

  it('runs every probe under Landlock ABI ≥ 6 with the kernel as the only violation source', () => {
    expect(exitCode, stderr).toBe(0);
    expect([...results.keys()].sort()).toEqual(Object.keys(EXPECTED).sort());
    expect(landlock?.enforced).toBe(true);
    expect(landlock!.abi).toBeGreaterThanOrEqual(6);
    expect(source).toBe('kernel');
  });

  for (const [probe, expected] of Object.entries(EXPECTED)) {
    it(`${probe} → ${expected}`, () => {
      expect(results.get(probe)).toBe(expected);
    });
  }

  it('nothing was planted on the host through the weakened binds', () => {
    expect(readdirSync(weak)).toEqual([]);
    expect(readdirSync(weakUsr)).toEqual([]);
    expect(readdirSync(secret)).toEqual(['key']);
  });

  it('each refusal is an fs.violation from the kernel record: process, executable, path, access, rule, domain', () => {
    const find = (path: string, blocker: string): FsViolation | undefined =>
      violations.find((v) => v.path === path && (v.blockers ?? []).includes(blocker));
    const expected: Array<[string, string, 'read' | 'write', RegExp]> = [
      ['/var/weak', 'fs.make_reg', 'write', /not granted by the Landlock ruleset/],
      ['/var/weak', 'fs.make_dir', 'write', /not granted/],
      ['/usr/local', 'fs.make_reg', 'write', /read_only\[0\]: \/usr/],
      ['/etc/nemoclaw-secret/key', 'fs.read_file', 'read', /hidden\[0\]: \/etc\/nemoclaw-secret/],
      ['/etc/nemoclaw-secret', 'fs.read_dir', 'read', /hidden\[0\]/],
    ];
    for (const [path, blocker, access, rule] of expected) {
      const v = find(path, blocker);
      expect(v, `${path} ${blocker}; got ${JSON.stringify(violations.map((x) => [x.path, x.blockers]))}`).toBeDefined();
      expect(v!.source).toBe('landlock');
      expect(v!.access).toBe(access);
      expect(v!.rule).toMatch(rule);
      expect(v!.binary).toMatch(/python3/);
      expect(v!.pid).toBeGreaterThan(1);
      expect(v!.errno).toBe('EACCES');
      expect(v!.domain).toMatch(/^[0-9a-f]+$/);
    }
    expect(violations.some((v) => /^\/proc\/\d+\/mem$/.test(v.path) && v.access === 'write')).toBe(true);
    // The helper's own registration probe of "/" is not a violation of the command.
    expect(violations.some((v) => v.path === '/' && String(v.binary).includes('nemoclaw-landlock'))).toBe(false);
  });
});
