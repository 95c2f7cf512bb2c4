/**
 * The sandbox's seccomp filter, built here as a classic-BPF program (struct sock_filter[]) and handed
 * to bubblewrap with `--seccomp FD`. Layout: check the architecture (anything else, i386 `int 0x80`
 * from a 64-bit process included, is killed), kill the x32 ABI, then a denylist, then argument
 * checks that are allowlists: socket families (AF_INET, AF_INET6, AF_UNIX unless the bridge is
 * outside, AF_NETLINK with NETLINK_ROUTE only; every other family, AF_VSOCK, AF_PACKET, AF_ALG…,
 * gets EAFNOSUPPORT), socketpair AF_UNIX only, personality query/PER_LINUX only. Argument checks
 * compare only the low 32 bits of an argument, because the kernel truncates `int` arguments: an
 * equality on the whole 64-bit value let `socket(0x100000001, …)` (= AF_UNIX) through in testing.
 */
import { NemoclawError } from '../shared/errors.js';
import { X86_64_SYSCALLS } from './syscalls-x86_64.js';

// BPF opcodes (linux/bpf_common.h, linux/filter.h).
const BPF_LD_W_ABS = 0x20; // BPF_LD | BPF_W | BPF_ABS
const BPF_ALU_AND_K = 0x54; // BPF_ALU | BPF_AND | BPF_K
const BPF_JEQ_K = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const BPF_JGE_K = 0x35; // BPF_JMP | BPF_JGE | BPF_K
const BPF_JSET_K = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const BPF_RET_K = 0x06; // BPF_RET | BPF_K

const SECCOMP_RET_KILL_PROCESS = 0x80000000;
const SECCOMP_RET_ERRNO = 0x00050000;
const SECCOMP_RET_ALLOW = 0x7fff0000;

const AUDIT_ARCH_X86_64 = 0xc000003e;
const AUDIT_ARCH_AARCH64 = 0xc00000b7;
const X32_SYSCALL_BIT = 0x40000000;

const EPERM = 1;
const ENOSYS = 38;
const EAFNOSUPPORT = 97;

// struct seccomp_data offsets: nr @0, arch @4, ip @8, args[i] @16+8i (low half first on little-endian).
const OFF_NR = 0;
const OFF_ARCH = 4;
const argLow = (i: number): number => 16 + 8 * i;

const AF_UNIX = 1;
const AF_INET = 2;
const AF_INET6 = 10;
const AF_NETLINK = 16;
const NETLINK_ROUTE = 0;
/** personality(0xffffffff) only reads the persona; PER_LINUX (0) is the default one. */
const PERSONALITY_QUERY = 0xffffffff;
const PER_LINUX = 0;

/** Namespace flags of clone(2) (CLONE_NEWTIME is clone3/unshare only: 0x80 is the exit signal in clone). */
const CLONE_NAMESPACE_FLAGS =
  0x00020000 | // CLONE_NEWNS
  0x02000000 | // CLONE_NEWCGROUP
  0x04000000 | // CLONE_NEWUTS
  0x08000000 | // CLONE_NEWIPC
  0x10000000 | // CLONE_NEWUSER
  0x20000000 | // CLONE_NEWPID
  0x40000000; //  CLONE_NEWNET

/** aarch64 uses the generic syscall table; only what the baseline needs is listed. */
const AARCH64_SYSCALLS: Readonly<Record<string, number>> = {
  ptrace: 117, process_vm_readv: 270, process_vm_writev: 271, mount: 40, umount2: 39, pivot_root: 41,
  setns: 268, unshare: 97, clone: 220, clone3: 435, io_uring_setup: 425, io_uring_enter: 426,
  io_uring_register: 427, bpf: 280, perf_event_open: 241, userfaultfd: 282, keyctl: 219, add_key: 217,
  request_key: 218, kexec_load: 104, kexec_file_load: 294, init_module: 105, finit_module: 273,
  delete_module: 106, socket: 198, socketpair: 199, fsopen: 430, fsconfig: 431, fsmount: 432, fspick: 433,
  move_mount: 429, open_tree: 428, mount_setattr: 442, open_tree_attr: 467, open_by_handle_at: 265,
  name_to_handle_at: 264, acct: 89, swapon: 224, swapoff: 225, reboot: 142, syslog: 116, quotactl: 60,
  memfd_create: 279, personality: 92, kcmp: 272, pidfd_open: 434, pidfd_getfd: 438, process_madvise: 440,
};

export type SeccompArch = 'x86_64' | 'aarch64';

/** Syscalls refused with EPERM outright (names; unknown names on an arch are skipped). */
export const BASELINE_BLOCKED: readonly string[] = [
  // Reaching into another process of the sandbox uid: its memory, its fds, its address space.
  'ptrace', 'process_vm_readv', 'process_vm_writev', 'pidfd_getfd', 'kcmp', 'process_madvise',
  'mount', 'umount2', 'fsopen', 'fsconfig', 'fsmount', 'fspick', 'move_mount', 'open_tree',
  'open_tree_attr', 'mount_setattr', 'pivot_root',
  'setns', 'unshare',
  'io_uring_setup', 'io_uring_enter', 'io_uring_register',
  'bpf', 'perf_event_open', 'userfaultfd',
  'keyctl', 'add_key', 'request_key',
  'kexec_load', 'kexec_file_load', 'init_module', 'finit_module', 'delete_module',
  'open_by_handle_at', 'name_to_handle_at', 'acct', 'swapon', 'swapoff', 'reboot', 'syslog', 'quotactl',
  'iopl', 'ioperm', 'uselib', 'lookup_dcookie', 'vhangup',
];

export interface SeccompOptions {
  arch?: SeccompArch;
  /** True when the proxy bridge lives outside the sandbox: nothing inside needs AF_UNIX sockets. */
  blockUnixSockets: boolean;
  /** From policy `process.seccomp.block`: extra syscall names to refuse with EPERM. */
  extraBlocked?: readonly string[];
  /** From policy `process.seccomp.allow`: baseline entries to lift (clone/socket checks included). */
  allowed?: readonly string[];
}

export interface SeccompProgram {
  arch: SeccompArch;
  /** The sock_filter array, ready to write to bwrap's --seccomp fd. */
  bytes: Buffer;
  instructions: number;
  /** Names refused outright, for `status`. */
  blocked: string[];
  /** Argument-checked rules, in words, for `status`. */
  conditional: string[];
}

export function hostSeccompArch(): SeccompArch {
  if (process.arch === 'x64') return 'x86_64';
  if (process.arch === 'arm64') return 'aarch64';
  throw new NemoclawError('prerequisite_missing', `the sandbox's seccomp filter does not support ${process.arch}`, {
    nextStep: 'run on x86_64 or aarch64 Linux',
  });
}

export function syscallTable(arch: SeccompArch): Readonly<Record<string, number>> {
  return arch === 'x86_64' ? X86_64_SYSCALLS : AARCH64_SYSCALLS;
}

interface Insn {
  code: number;
  jt: number | string;
  jf: number | string;
  k: number;
}

/** Tiny assembler: jumps may name a label (resolved to a relative offset) or give one. */
class Assembler {
  private readonly insns: Insn[] = [];
  private readonly labels = new Map<string, number>();

  emit(code: number, k: number, jt: number | string = 0, jf: number | string = 0): void {
    this.insns.push({ code, jt, jf, k: k >>> 0 });
  }
  label(name: string): void {
    this.labels.set(name, this.insns.length);
  }
  assemble(): Buffer {
    const buf = Buffer.alloc(this.insns.length * 8);
    this.insns.forEach((insn, i) => {
      const resolve = (target: number | string): number => {
        if (typeof target === 'number') return target;
        const at = this.labels.get(target);
        if (at === undefined) throw new Error(`seccomp assembler: unknown label ${target}`);
        const rel = at - i - 1;
        if (rel < 0 || rel > 255) throw new Error(`seccomp assembler: jump to ${target} out of range (${rel})`);
        return rel;
      };
      buf.writeUInt16LE(insn.code, i * 8);
      buf.writeUInt8(resolve(insn.jt), i * 8 + 2);
      buf.writeUInt8(resolve(insn.jf), i * 8 + 3);
      buf.writeUInt32LE(insn.k, i * 8 + 4);
    });
    return buf;
  }
  get length(): number {
    return this.insns.length;
  }
}

export function buildSeccompProgram(opts: SeccompOptions): SeccompProgram {
  const arch = opts.arch ?? hostSeccompArch();
  const table = syscallTable(arch);
  const allowed = new Set(opts.allowed ?? []);
  for (const name of [...(opts.extraBlocked ?? []), ...allowed]) {
    if (table[name] === undefined) {
      throw new NemoclawError('policy_invalid', `process.seccomp names an unknown syscall "${name}" (${arch})`, {
        nextStep: 'use the kernel name of the syscall, e.g. "ptrace", "io_uring_setup"',
        exitCode: 2,
      });
    }
  }
  const blocked = [...new Set([...BASELINE_BLOCKED, ...(opts.extraBlocked ?? [])])].filter(
    (n) => !allowed.has(n) && table[n] !== undefined && n !== 'memfd_create',
  );
  const conditional: string[] = [];
  const a = new Assembler();
  const ERRNO = (e: number): number => SECCOMP_RET_ERRNO | e;

  a.emit(BPF_LD_W_ABS, OFF_ARCH);
  a.emit(BPF_JEQ_K, arch === 'x86_64' ? AUDIT_ARCH_X86_64 : AUDIT_ARCH_AARCH64, 1, 0);
  a.emit(BPF_RET_K, SECCOMP_RET_KILL_PROCESS);
  a.emit(BPF_LD_W_ABS, OFF_NR);
  if (arch === 'x86_64') {
    a.emit(BPF_JGE_K, X32_SYSCALL_BIT, 'kill', 0);
  }
  for (const name of blocked) a.emit(BPF_JEQ_K, table[name]!, 'eperm', 0);

  const clone3 = table.clone3;
  if (clone3 !== undefined && !allowed.has('clone3')) {
    // ENOSYS, so glibc falls back to clone(2), whose flags we can inspect (clone3 passes a pointer).
    a.emit(BPF_JEQ_K, clone3, 'enosys', 0);
    conditional.push('clone3 → ENOSYS');
  }
  if (!allowed.has('clone')) {
    a.emit(BPF_JEQ_K, table.clone!, 'clone', 0);
    conditional.push('clone with namespace flags → EPERM');
  }
  if (!allowed.has('socket')) {
    a.emit(BPF_JEQ_K, table.socket!, 'socket', 0);
    conditional.push(
      `socket: only AF_INET, AF_INET6, ${opts.blockUnixSockets ? '' : 'AF_UNIX, '}AF_NETLINK/NETLINK_ROUTE (other families → EAFNOSUPPORT, other netlink → EPERM)`,
    );
  }
  if (!allowed.has('socketpair')) {
    a.emit(BPF_JEQ_K, table.socketpair!, 'socketpair', 0);
    conditional.push('socketpair: only AF_UNIX (other families → EAFNOSUPPORT)');
  }
  if (table.personality !== undefined && !allowed.has('personality')) {
    a.emit(BPF_JEQ_K, table.personality, 'personality', 0);
    conditional.push('personality: only query and PER_LINUX (READ_IMPLIES_EXEC, ADDR_NO_RANDOMIZE, PER_LINUX32… → EPERM)');
  }
  a.emit(BPF_RET_K, SECCOMP_RET_ALLOW);

  // clone(flags, …): refuse any namespace flag in the low 32 bits.
  a.label('clone');
  a.emit(BPF_LD_W_ABS, argLow(0));
  a.emit(BPF_JSET_K, CLONE_NAMESPACE_FLAGS, 'eperm', 'ok');

  // socket(domain, type, protocol): domain and protocol are ints, compare the low 32 bits only.
  // An allowlist: a family the kernel grows next year (or one a module autoloads) is refused.
  a.label('socket');
  a.emit(BPF_LD_W_ABS, argLow(0));
  a.emit(BPF_JEQ_K, AF_INET, 'ok', 0);
  a.emit(BPF_JEQ_K, AF_INET6, 'ok', 0);
  a.emit(BPF_JEQ_K, AF_UNIX, opts.blockUnixSockets ? 'eafnosupport' : 'ok', 0);
  a.emit(BPF_JEQ_K, AF_NETLINK, 0, 'eafnosupport');
  a.emit(BPF_LD_W_ABS, argLow(2));
  a.emit(BPF_JEQ_K, NETLINK_ROUTE, 'ok', 'eperm');

  // socketpair is AF_UNIX in practice (libuv uses it for child stdio pipes; a pair reaches nothing
  // outside): every other family is refused.
  a.label('socketpair');
  a.emit(BPF_LD_W_ABS, argLow(0));
  a.emit(BPF_JEQ_K, AF_UNIX, 'ok', 'eafnosupport');

  // personality(persona): READ_IMPLIES_EXEC makes every mapping executable, ADDR_NO_RANDOMIZE turns
  // off ASLR for what the process execs next; nothing an agent runs needs either.
  a.label('personality');
  a.emit(BPF_LD_W_ABS, argLow(0));
  a.emit(BPF_JEQ_K, PERSONALITY_QUERY, 'ok', 0);
  a.emit(BPF_JEQ_K, PER_LINUX, 'ok', 'eperm');

  a.label('eperm');
  a.emit(BPF_RET_K, ERRNO(EPERM));
  a.label('enosys');
  a.emit(BPF_RET_K, ERRNO(ENOSYS));
  a.label('eafnosupport');
  a.emit(BPF_RET_K, ERRNO(EAFNOSUPPORT));
  a.label('kill');
  a.emit(BPF_RET_K, SECCOMP_RET_KILL_PROCESS);
  // BPF jumps only forward, so the argument checks above jump down here to allow.
  a.label('ok');
  a.emit(BPF_RET_K, SECCOMP_RET_ALLOW);

  return { arch, bytes: a.assemble(), instructions: a.length, blocked, conditional };
}
