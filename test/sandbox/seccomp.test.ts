/**
 * The seccomp program is checked by running it for real: a sandbox (bwrap, monitor off) runs a tiny
 * python program that calls the syscalls and prints the errno each got.
 */
import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { buildSeccompProgram } from '../../src/sandbox/seccomp.js';
import { launchBwrap } from '../../src/sandbox/bwrap.js';
import type { ProcessPolicy } from '../../src/policy/types.js';

const PROBE = `
import ctypes, errno, socket
libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
def call(nr, *a):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(x) for x in a])
    return 'ok' if r >= 0 else errno.errorcode[ctypes.get_errno()]
print('socket_unix', call(41, 1, 1, 0))
print('socket_unix_high', call(41, 0x100000001, 1, 0))
print('socket_inet', call(41, 2, 1, 0))
print('ptrace', call(101, 0, 0, 0, 0))
print('uname', call(63, 0))
print('clone3', call(435, 0, 0))
`;

async function runProbe(process: Partial<ProcessPolicy>): Promise<Record<string, string>> {
  const base = mkdtempSync('/tmp/ncs-');
  try {
    const sb = await launchBwrap({
      id: `sc${Date.now().toString(36)}`,
      command: ['/usr/bin/python3', '-c', PROBE],
      workdir: join(base, 'wd'),
      runDir: join(base, 'run'),
      proxySocket: join(base, 'run', 'proxy', 'proxy.sock'),
      filesystem: { include_workdir: true, read_only: [], read_write: [], hidden: [], monitor: false },
      process: { seccomp: { block: [], allow: [] }, limits: {}, env: {}, ...process },
    });
    let out = '';
    sb.stdout?.on('data', (d: Buffer) => (out += d.toString()));
    const st = await sb.wait();
    expect(st.exitCode).toBe(0);
    return Object.fromEntries(out.trim().split('\n').map((l) => l.split(' ') as [string, string]));
  } finally {
    rmSync(base, { recursive: true, force: true });
  }
}

describe('seccomp program', () => {
  it('refuses AF_UNIX sockets even when the family hides in the high 32 bits, allows AF_INET', async () => {
    const r = await runProbe({});
    expect(r.socket_unix).toBe('EAFNOSUPPORT');
    expect(r.socket_unix_high).toBe('EAFNOSUPPORT');
    expect(r.socket_inet).toBe('ok');
    expect(r.ptrace).toBe('EPERM');
    expect(r.clone3).toBe('ENOSYS');
    // Not filtered: the kernel runs uname(NULL) and answers EFAULT.
    expect(r.uname).toBe('EFAULT');
  });

  it('takes extra blocks and allows from process.seccomp', async () => {
    const r = await runProbe({ seccomp: { block: ['uname'], allow: ['ptrace'] } });
    expect(r.uname).toBe('EPERM');
    // ptrace(PTRACE_TRACEME) is no longer refused by the filter (the kernel then allows TRACEME).
    expect(r.ptrace).toBe('ok');
  });

  it('names an unknown syscall in process.seccomp with what to do', () => {
    expect(() => buildSeccompProgram({ blockUnixSockets: true, extraBlocked: ['no_such_call'], arch: 'x86_64' })).toThrow(
      /unknown syscall "no_such_call"/,
    );
  });

  it('starts with the architecture check and never blocks memfd_create', () => {
    const p = buildSeccompProgram({ blockUnixSockets: true, extraBlocked: ['memfd_create'], arch: 'x86_64' });
    // First instruction loads seccomp_data.arch (offset 4); second compares it with AUDIT_ARCH_X86_64.
    expect(p.bytes.readUInt16LE(0)).toBe(0x20);
    expect(p.bytes.readUInt32LE(4)).toBe(4);
    expect(p.bytes.readUInt32LE(12)).toBe(0xc000003e);
    expect(p.blocked).not.toContain('memfd_create');
    expect(p.blocked).toContain('io_uring_setup');
  });
});
