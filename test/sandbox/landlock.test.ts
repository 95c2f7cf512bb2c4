/**
 * The Landlock plan (which argv, which rights on which ABI, never silently weaker) and the kernel
 * audit records joined into fs.violation events. Record lines are the ones this machine's kernel
 * (6.18, ABI 7) wrote for a denied create, read and readdir.
 */
import { describe, expect, it } from 'vitest';
import { NemoclawError } from '../../src/shared/errors.js';
import { describeLandlock, landlockCompatibility, planLandlock, type LandlockPlanInput } from '../../src/sandbox/landlock.js';
import { AuditJoiner, parseAuditLine } from '../../src/sandbox/landlock-audit.js';
import type { FsViolation } from '../../src/sandbox/monitor.js';

const fs = { include_workdir: true, read_only: ['/usr'], read_write: [], hidden: ['/sandbox/.ssh', '/etc/shadow'] };
const input = (abi: number, over: Partial<LandlockPlanInput> = {}): LandlockPlanInput => ({
  filesystem: fs,
  abi,
  compatibility: 'best_effort',
  readOnly: ['/usr', '/etc/ssl', '/proc'],
  readWrite: ['/sandbox', '/tmp'],
  devices: ['/dev'],
  hidden: ['/sandbox/.ssh', '/etc/shadow'],
  connect: { ports: [3128] },
  log: true,
  ...over,
});

describe('planLandlock', () => {
  it('ABI 7: every right, connect only to the bridge, scopes, kernel log; argv ends before the command', () => {
    const { argv, report } = planLandlock(input(7), '/opt/h');
    expect(argv).toEqual([
      '/opt/h', 'exec', '--compat', 'best_effort', '--ro', '/usr', '--ro', '/etc/ssl', '--ro', '/proc',
      '--rw', '/sandbox', '--rw', '/tmp', '--dev', '/dev', '--restrict-connect', '--connect', '3128', '--scope', '--log', '--',
    ]);
    expect(report.fs_rights).toContain('ioctl_dev');
    expect(report.connect).toEqual([3128]);
    expect(report.scopes).toEqual(['signal', 'abstract_unix_socket']);
    expect(report.missing).toEqual([]);
    // A hidden path below a granted tree cannot be taken away by Landlock: said, not hidden.
    expect(report.hidden_by_mounts_only).toEqual(['/sandbox/.ssh']);
    expect(describeLandlock(report)).toMatch(/^Landlock ABI 7 \(best_effort\).*TCP connect only to 3128.*denials logged by the kernel/);
  });

  it('ABI 2: what the kernel lacks is listed, and no net or scope option is passed', () => {
    const { argv, report } = planLandlock(input(2), '/opt/h');
    expect(argv).not.toContain('--restrict-connect');
    expect(argv).not.toContain('--scope');
    expect(argv).not.toContain('--log');
    expect(report.connect).toBe('unrestricted');
    expect(report.connect_reason).toMatch(/ABI 4/);
    expect(report.missing).toEqual(expect.arrayContaining(['fs.truncate (ABI 3)', 'fs.ioctl_dev (ABI 5)', 'net.connect_tcp (ABI 4)', 'scope.signal (ABI 6)', 'audit log of denials (ABI 7)']));
    expect(describeLandlock(report)).toContain('not on this kernel');
  });

  it('transparent interception: connect is left to the netns, and the report says so', () => {
    const { argv, report } = planLandlock(input(7, { connect: { unrestricted: 'transparent interception' } }), '/opt/h');
    expect(argv).not.toContain('--restrict-connect');
    expect(report.connect).toBe('unrestricted');
    expect(report.connect_reason).toBe('transparent interception');
  });

  it('no Landlock: best_effort runs without it and says why; hard_requirement refuses', () => {
    const off = planLandlock(input(0), '/opt/h');
    expect(off.argv).toBeUndefined();
    expect(off.report.enforced).toBe(false);
    expect(describeLandlock(off.report)).toMatch(/^Landlock off/);
    expect(() => planLandlock(input(0, { compatibility: 'hard_requirement' }), '/opt/h')).toThrow(NemoclawError);
  });

  it('landlock.compatibility: default best_effort, unknown values refused (never guessed weaker)', () => {
    expect(landlockCompatibility(undefined)).toBe('best_effort');
    expect(landlockCompatibility({ compatibility: 'hard_requirement' })).toBe('hard_requirement');
    expect(() => landlockCompatibility({ compatibility: 'besteffort' })).toThrow(/best_effort or hard_requirement/);
  });
});

const REC = {
  probeAccess: '1423 audit(1796319333.729:78): domain=1522ad432 blockers=fs.read_dir path="/" dev="vda" ino=2',
  probeDomain: '1424 audit(1796319333.729:78): domain=1522ad432 status=allocated mode=enforcing pid=500 uid=0 exe="/opt/nemoclaw/bin/nemoclaw-landlock" comm="nemoclaw-landlo"',
  probeSyscall: '1300 audit(1796319333.729:78): arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c a1=561cd3b47203 a2=90000 a3=0 items=0 ppid=499 pid=500 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="nemoclaw-landlo" exe="/opt/nemoclaw/bin/nemoclaw-landlock" key=(null)',
  createAccess: '1423 audit(1796319333.733:79): domain=1522ad432 blockers=fs.make_reg path="/etc" dev="vda" ino=4005',
  createSyscall: '1300 audit(1796319333.733:79): arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c a1=55a389d99a50 a2=241 a3=1b6 items=0 ppid=500 pid=501 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="sh" exe="/usr/bin/dash" key=(null)',
  readAccess: '1423 audit(1796319333.733:80): domain=1522ad432 blockers=fs.read_file path="/etc/shadow" dev="vda" ino=935',
  readSyscall: '1300 audit(1796319333.733:80): arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c a1=7ffc94b73adf a2=0 a3=0 items=0 ppid=500 pid=502 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="cat" exe="/usr/bin/cat" key=(null)',
  netAccess: '1423 audit(1796319333.800:85): domain=1522ad432 blockers=net.connect_tcp daddr=127.0.0.1 dest=8080',
  netSyscall: '1300 audit(1796319333.800:85): arch=c000003e syscall=42 success=no exit=-13 items=0 ppid=500 pid=502 comm="curl" exe="/usr/bin/curl" key=(null)',
  otherAccess: '1423 audit(1796319334.000:90): domain=99999 blockers=fs.write_file path="/x" dev="vda" ino=1',
  otherDomain: '1424 audit(1796319334.000:90): domain=99999 status=allocated mode=enforcing pid=7000 uid=0 exe="/usr/bin/other" comm="other"',
  otherSyscall: '1300 audit(1796319334.000:90): arch=c000003e syscall=257 success=no exit=-13 items=0 ppid=1 pid=7000 comm="other" exe="/usr/bin/other" key=(null)',
};

describe('kernel audit records → fs.violation', () => {
  it('parses a record: type, serial, quoted and hex-encoded fields', () => {
    expect(parseAuditLine(REC.createAccess)).toEqual({ type: 1423, serial: 79, fields: { domain: '1522ad432', blockers: 'fs.make_reg', path: '/etc', dev: 'vda', ino: '4005' } });
    expect(parseAuditLine('1423 audit(1.2:3): domain=1 blockers=fs.read_file path=2F746D702F6120622E747874 dev="vda" ino=1')?.fields.path).toBe('/tmp/a b.txt');
    expect(parseAuditLine('garbage')).toBeUndefined();
  });

  it('joins each denial with its SYSCALL record, routes it by domain to its sandbox, skips the helper probe and other programs', () => {
    // Process tree: 400 is the sandbox's root; 500 (helper, then the command), 501, 502 below it.
    const parents: Record<number, number> = { 500: 400, 501: 500, 502: 500, 7000: 1 };
    const joiner = new AuditJoiner((pid) => {
      const out: number[] = [];
      for (let p: number | undefined = pid; p !== undefined && p > 1; p = parents[p]) out.push(p);
      return out;
    });
    const got: FsViolation[] = [];
    joiner.add({ rootPid: 400, rules: { readOnly: ['/usr', '/etc'], readWrite: ['/sandbox', '/tmp'], hidden: ['/etc/shadow'] }, helperInside: '/opt/nemoclaw/bin/nemoclaw-landlock', emit: (v) => got.push(v) });
    for (const l of [REC.probeAccess, REC.probeDomain, REC.probeSyscall, REC.createAccess, REC.createSyscall, REC.readAccess, REC.readSyscall, REC.netAccess, REC.netSyscall, REC.otherAccess, REC.otherDomain, REC.otherSyscall]) joiner.line(l);
    joiner.flush(undefined);
    expect(got).toEqual([
      { pid: 501, binary: '/usr/bin/dash', syscall: 'openat', path: '/etc', errno: 'EACCES', rule: 'filesystem_policy.read_only[1]: /etc (refused by Landlock)', access: 'write', source: 'landlock', blockers: ['fs.make_reg'], domain: '1522ad432' },
      { pid: 502, binary: '/usr/bin/cat', syscall: 'openat', path: '/etc/shadow', errno: 'EACCES', rule: 'filesystem_policy.hidden[0]: /etc/shadow (refused by Landlock)', access: 'read', source: 'landlock', blockers: ['fs.read_file'], domain: '1522ad432' },
    ]);
  });
});

describe('doctor: the Landlock check', () => {
  it('without the helper: a warning with the fix (install a compiler, rebuild)', async () => {
    const { landlockCheck } = await import('../../src/sandbox/landlock-doctor.js');
    const c = await landlockCheck({ helper: null });
    expect(c).toMatchObject({ id: 'landlock', ok: false, severity: 'warn', fix: 'apt-get install -y gcc libc6-dev && npm run build' });
  });

  it('with the built helper: the ABI and what it gives, and whether the audit stream is readable', async () => {
    const { landlockCheck } = await import('../../src/sandbox/landlock-doctor.js');
    const { builtLandlockHelper, landlockAbi } = await import('../../src/sandbox/landlock.js');
    const helper = builtLandlockHelper();
    expect(helper, 'run `npm run build` first (it builds dist/native/nemoclaw-landlock)').toBeDefined();
    const c = await landlockCheck({ helper: helper! });
    const abi = landlockAbi(helper!);
    if (abi >= 1) {
      expect(c.ok).toBe(true);
      expect(c.detail).toMatch(new RegExp(`^ABI ${abi}: filesystem rules`));
      if (abi >= 7 && process.getuid?.() === 0) expect(c.detail).toMatch(/reads Landlock's denials from the audit stream|not readable/);
    } else expect(c.ok).toBe(false);
  });
});
