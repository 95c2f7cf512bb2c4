#!/usr/bin/python3
"""Escape probes, run INSIDE the sandbox. Each probe prints one JSON line {"probe", "result"}, where
result is "ok", "errno:NAME", "exit:N", "signal:N" or a probe-specific value. The test asserts the
exact result of every probe. Usage: escape.py HOST_LOOPBACK_PORT"""
import ctypes
import errno
import json
import os
import resource
import socket
import subprocess
import sys

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long
PORT = int(sys.argv[1]) if len(sys.argv) > 1 else 1

# x86_64 syscall numbers
NR = dict(socket=41, socketpair=53, clone=56, ptrace=101, pivot_root=155, mount=165, umount2=166,
          init_module=175, add_key=248, keyctl=250, unshare=272, perf_event_open=298, open_by_handle_at=304,
          setns=308, process_vm_readv=310, bpf=321, userfaultfd=323, memfd_create=319, io_uring_setup=425,
          open_tree=428, fsopen=430, clone3=435, kexec_load=246)


def emit(name, result):
    print(json.dumps({"probe": name, "result": result}), flush=True)


def err_name(e):
    return "errno:" + errno.errorcode.get(e, str(e))


def sys_call(name, *args):
    ctypes.set_errno(0)
    r = libc.syscall(ctypes.c_long(NR[name]), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    if r < 0:
        return err_name(ctypes.get_errno()), r
    return "ok", r


def probe(name, fn):
    try:
        emit(name, fn())
    except OSError as e:
        emit(name, err_name(e.errno))
    except Exception as e:  # a probe that breaks reports it instead of hiding the others
        emit(name, "exception:" + type(e).__name__ + ":" + str(e))


def write_file(path, mode="w"):
    with open(path, mode) as f:
        f.write("x")
    return "ok"


def read_file(path):
    with open(path) as f:
        f.read(1)
    return "ok"


def connect(host, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(3)
    try:
        s.connect((host, port))
        return "ok"
    finally:
        s.close()


def sock(family, typ, proto=0):
    s = socket.socket(family, typ, proto)
    s.close()
    return "ok"


def run(argv):
    p = subprocess.run(argv, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=20)
    return "exit:%d" % p.returncode if p.returncode >= 0 else "signal:%d" % -p.returncode


def status_field(name):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(name + ":"):
                return line.split(":", 1)[1].strip()
    return None


# --- filesystem: read-only system, nothing of the host ------------------------------------------
probe("write_usr", lambda: write_file("/usr/bin/nemoclaw-probe"))
probe("write_etc_passwd", lambda: write_file("/etc/passwd", "a"))
probe("create_in_root", lambda: write_file("/evil"))
probe("mkdir_in_root", lambda: os.mkdir("/evil-dir") or "ok")
probe("symlink_in_root", lambda: os.symlink("/sandbox", "/evil-link") or "ok")
probe("chmod_usr_binary", lambda: os.chmod("/usr/bin/ls", 0o4777) or "ok")
probe("rename_in_etc", lambda: os.rename("/etc/hosts", "/etc/hosts.bak") or "ok")
probe("unlink_usr_binary", lambda: os.unlink("/usr/bin/ls") or "ok")
probe("read_etc_shadow", lambda: read_file("/etc/shadow"))
probe("read_etc_gshadow", lambda: read_file("/etc/gshadow"))
probe("list_host_root_home", lambda: os.listdir("/root") and "ok")
probe("read_ssh_key_in_home", lambda: read_file("/sandbox/.ssh/id_rsa"))
probe("read_hidden_file_in_home", lambda: read_file("/sandbox/.netrc"))
probe("host_home_invisible", lambda: "visible" if os.path.exists("/home") else "absent")
probe("host_repo_invisible", lambda: "visible" if os.path.exists("/work") else "absent")
probe("etc_passwd_is_synthetic", lambda: "host" if "nemoclaw-sandbox" in open("/etc/passwd").read() or open("/etc/passwd").read().count("\n") > 5 else "synthetic")
probe("write_sandbox_works", lambda: (write_file("/sandbox/probe.txt"), open("/sandbox/probe.txt").read())[1])
probe("write_tmp_works", lambda: (write_file("/tmp/probe.txt"), open("/tmp/probe.txt").read())[1])

# --- network: only lo, the proxy bridge, no host loopback -----------------------------------------
probe("host_loopback_service", lambda: connect("127.0.0.1", PORT))
probe("proxy_bridge_listens", lambda: connect("127.0.0.1", 3128))
probe("only_lo_interface", lambda: ",".join(sorted(l.split(":")[0].strip() for l in open("/proc/net/dev").read().splitlines()[2:])))
probe("raw_socket", lambda: sock(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP))
probe("unix_socket", lambda: sock(socket.AF_UNIX, socket.SOCK_STREAM))
probe("packet_socket", lambda: sock(socket.AF_PACKET, socket.SOCK_RAW))
probe("netlink_audit_socket", lambda: sock(socket.AF_NETLINK, socket.SOCK_RAW, 9))
probe("netlink_route_socket_allowed", lambda: sock(socket.AF_NETLINK, socket.SOCK_RAW, 0))
probe("socket_family_high_bits", lambda: sys_call("socket", 0x100000001, socket.SOCK_STREAM, 0)[0])
probe("socket_family_high_bits_packet", lambda: sys_call("socket", 0x100000011, socket.SOCK_RAW, 0)[0])

# --- process isolation --------------------------------------------------------------------------
probe("ptrace_traceme", lambda: sys_call("ptrace", 0, 0, 0, 0)[0])
probe("ptrace_attach_pid1", lambda: sys_call("ptrace", 16, 1, 0, 0)[0])
probe("process_vm_readv", lambda: sys_call("process_vm_readv", 1, 0, 0, 0, 0, 0)[0])
probe("mount_tmpfs", lambda: sys_call("mount", ctypes.c_char_p(b"none"), ctypes.c_char_p(b"/tmp"), ctypes.c_char_p(b"tmpfs"), 0, 0)[0])
probe("umount_usr", lambda: sys_call("umount2", ctypes.c_char_p(b"/usr"), 2)[0])
probe("pivot_root", lambda: sys_call("pivot_root", ctypes.c_char_p(b"/tmp"), ctypes.c_char_p(b"/tmp"))[0])
probe("fsopen", lambda: sys_call("fsopen", ctypes.c_char_p(b"tmpfs"), 0)[0])
probe("open_tree", lambda: sys_call("open_tree", -100, ctypes.c_char_p(b"/usr"), 1)[0])
probe("unshare_user_syscall", lambda: sys_call("unshare", 0x10000000)[0])
probe("unshare_U_binary", lambda: run(["/usr/bin/unshare", "-U", "/bin/true"]))
probe("nested_bwrap", lambda: run(["/usr/bin/bwrap", "--ro-bind", "/", "/", "/bin/true"]))
probe("setns_pid1_net", lambda: sys_call("setns", os.open("/proc/1/ns/net", os.O_RDONLY), 0)[0])
probe("clone3_enosys", lambda: sys_call("clone3", 0, 0)[0])


def clone_newnet():
    res, r = sys_call("clone", 0x40000000 | 17, 0, 0, 0, 0)
    if res == "ok" and r == 0:
        os._exit(0)
    if res == "ok":
        os.waitpid(r, 0)
    return res


probe("clone_newnet", clone_newnet)
probe("io_uring_setup", lambda: sys_call("io_uring_setup", 8, ctypes.create_string_buffer(120))[0])
probe("bpf", lambda: sys_call("bpf", 0, 0, 0)[0])
probe("perf_event_open", lambda: sys_call("perf_event_open", 0, 0, -1, -1, 0)[0])
probe("userfaultfd", lambda: sys_call("userfaultfd", 0)[0])
probe("keyctl", lambda: sys_call("keyctl", 0, 0)[0])
probe("add_key", lambda: sys_call("add_key", ctypes.c_char_p(b"user"), ctypes.c_char_p(b"k"), 0, 0, -2)[0])
probe("kexec_load", lambda: sys_call("kexec_load", 0, 0, 0, 0)[0])
probe("init_module", lambda: sys_call("init_module", 0, 0, ctypes.c_char_p(b""))[0])
probe("open_by_handle_at", lambda: sys_call("open_by_handle_at", -100, 0, 0)[0])
probe("memfd_create_allowed", lambda: "ok" if sys_call("memfd_create", ctypes.c_char_p(b"probe"), 0)[1] >= 0 else "failed")
probe("setuid_binary_gains_nothing", lambda: run(["/usr/bin/su", "-c", "/usr/bin/id -u", "root"]))
probe("pid1_is_sandbox_init", lambda: open("/proc/1/cmdline").read().split("\0")[0])
probe("host_pids_invisible", lambda: "few" if len([p for p in os.listdir("/proc") if p.isdigit()]) < 10 else "many")
probe("capabilities_all_zero", lambda: ",".join(status_field(f) for f in ["CapInh", "CapPrm", "CapEff", "CapBnd", "CapAmb"]))
probe("no_new_privs", lambda: status_field("NoNewPrivs"))
probe("seccomp_filter_mode", lambda: status_field("Seccomp"))
probe("rlimit_core_zero", lambda: "%d,%d" % resource.getrlimit(resource.RLIMIT_CORE))
probe("uid_inside", lambda: status_field("Uid").split()[0])
probe("hostname", lambda: socket.gethostname())
probe("environment", lambda: ",".join(sorted(os.environ.keys())))


# --- kernel layer: socket families, foreign syscall ABIs, siblings' memory and fds -----------------
NR.update(personality=135, kcmp=312, process_vm_writev=311, pidfd_open=434, pidfd_getfd=438, process_madvise=440)
ALLOWED_FAMILIES = (socket.AF_UNIX, socket.AF_INET, socket.AF_INET6, socket.AF_NETLINK)
SOCK_TYPES = (socket.SOCK_STREAM, socket.SOCK_DGRAM, socket.SOCK_RAW, socket.SOCK_SEQPACKET, socket.SOCK_RDM)


def vsock_bind():
    s = socket.socket(socket.AF_VSOCK, socket.SOCK_STREAM)
    try:
        s.bind((socket.VMADDR_CID_ANY, socket.VMADDR_PORT_ANY))
        return "ok"
    finally:
        s.close()


def family_sweep(call):
    """Every family but the allowed ones, with every socket type: what did not get EAFNOSUPPORT."""
    leaks = []
    for fam in range(0, 256):
        if fam in ALLOWED_FAMILIES:
            continue
        for typ in SOCK_TYPES:
            res = call(fam, typ)
            if res != "errno:EAFNOSUPPORT":
                leaks.append("%d/%d:%s" % (fam, typ, res))
    return ",".join(leaks) or "all:EAFNOSUPPORT"


def socketpair_call(fam, typ):
    fds = (ctypes.c_int * 2)()
    res, _ = sys_call("socketpair", fam, typ, 0, fds)
    if res == "ok":
        os.close(fds[0])
        os.close(fds[1])
    return res


def socket_call(fam, typ):
    res, fd = sys_call("socket", fam, typ, 0)
    if res == "ok":
        os.close(fd)
    return res


def in_child(code):
    """Run python code in a child process (a seccomp kill takes the whole process down)."""
    return run(["/usr/bin/python3", "-c", code])


# i386 int 0x80 from a 64-bit process: the kernel runs it through the 32-bit table, with
# seccomp_data.arch = AUDIT_ARCH_I386; the filter must kill it, whatever the number. The code page and
# the socketcall argument block live below 4 GiB (MAP_32BIT) so that 32-bit registers can point at them.
IA32 = r'''
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
page = libc.mmap(None, 4096, 7, 0x22 | 0x40, -1, 0)  # RWX, MAP_PRIVATE|MAP_ANONYMOUS|MAP_32BIT
args = page + 2048
ctypes.memmove(args, (ctypes.c_uint32 * 3)(40, 1, 0), 12)  # socketcall(SYS_SOCKET, {AF_VSOCK, SOCK_STREAM, 0})
nr, ebx, ecx = (359, 40, 1) if sys.argv[1] == "socket" else (102, 1, args)
code = bytes([0x53, 0xb8]) + nr.to_bytes(4, "little") + bytes([0xbb]) + ebx.to_bytes(4, "little") + \
    bytes([0xb9]) + ecx.to_bytes(4, "little") + bytes([0x31, 0xd2, 0xcd, 0x80, 0x5b, 0xc3])
ctypes.memmove(page, code, len(code))
r = ctypes.CFUNCTYPE(ctypes.c_int)(page)()
sys.exit(0 if r >= 0 else 3)
'''
X32 = "import ctypes; l = ctypes.CDLL(None); l.syscall.restype = ctypes.c_long; " \
      "import sys; sys.exit(0 if l.syscall(ctypes.c_long(0x40000000 | 41), 40, 1, 0) >= 0 else 3)"

probe("vsock_socket_bind", vsock_bind)
probe("vsock_family_high_bits", lambda: sys_call("socket", 0x100000028, socket.SOCK_STREAM, 0)[0])
for fam_name, fam, typ, proto in [("packet", 17, socket.SOCK_RAW, 0), ("bluetooth", 31, socket.SOCK_RAW, 1),
                                  ("alg", 38, socket.SOCK_SEQPACKET, 0), ("xdp", 44, socket.SOCK_RAW, 0),
                                  ("key", 15, socket.SOCK_RAW, 2), ("tipc", 30, socket.SOCK_RDM, 0),
                                  ("can", 29, socket.SOCK_RAW, 1), ("rds", 21, socket.SOCK_SEQPACKET, 0),
                                  ("kcm", 41, socket.SOCK_DGRAM, 0), ("unspec", 0, socket.SOCK_STREAM, 0)]:
    probe("socket_family_" + fam_name, lambda f=fam, t=typ, p=proto: sys_call("socket", f, t, p)[0])
probe("socket_every_other_family", lambda: family_sweep(socket_call))
probe("socketpair_every_other_family", lambda: family_sweep(socketpair_call))
probe("socketpair_unix_allowed", lambda: socketpair_call(socket.AF_UNIX, socket.SOCK_STREAM))
probe("socket_inet6_allowed", lambda: sock(socket.AF_INET6, socket.SOCK_STREAM))
probe("ia32_int80_socket", lambda: run(["/usr/bin/python3", "-c", IA32, "socket"]))
probe("ia32_int80_socketcall", lambda: run(["/usr/bin/python3", "-c", IA32, "socketcall"]))
probe("x32_syscall_bit", lambda: in_child(X32))


def personality(value):
    res, _ = sys_call("personality", value)
    if res == "ok":
        sys_call("personality", 0)  # a probe that got through must not change the rest of the run
    return res


probe("personality_query_allowed", lambda: personality(0xffffffff))
probe("personality_per_linux_allowed", lambda: personality(0))
probe("personality_read_implies_exec", lambda: personality(0x0400000))
probe("personality_addr_no_randomize", lambda: personality(0x0040000))
probe("personality_flag_high_bits", lambda: personality(0x100000000 | 0x0400000))
probe("personality_linux32", lambda: personality(0x0008))


class Sibling:
    """Another sandbox process of the same uid: holds a socket (fd number on its stdout) and a page."""

    def __enter__(self):
        code = "import socket, sys, time; s = socket.socket(); print(s.fileno(), flush=True); time.sleep(30)"
        self.p = subprocess.Popen(["/usr/bin/python3", "-c", code], stdout=subprocess.PIPE)
        self.fd = int(self.p.stdout.readline())
        self.pid = self.p.pid
        return self

    def __exit__(self, *exc):
        self.p.kill()
        self.p.wait()


def writable_address(pid):
    with open("/proc/%s/maps" % pid) as f:
        for line in f:
            span, perms = line.split()[:2]
            if perms.startswith("rw"):
                return int(span.split("-")[0], 16)
    raise RuntimeError("no writable mapping")


def mem_write(pid):
    """Open /proc/PID/mem for writing and write one byte back where it was read."""
    addr = writable_address(pid)
    fd = os.open("/proc/%s/mem" % pid, os.O_RDWR)
    try:
        byte = os.pread(fd, 1, addr)
        os.pwrite(fd, byte, addr)
        return "ok"
    finally:
        os.close(fd)


def mem_read(pid):
    addr = writable_address(pid)
    fd = os.open("/proc/%s/mem" % pid, os.O_RDONLY)
    try:
        return "ok" if len(os.pread(fd, 1, addr)) == 1 else "short"
    finally:
        os.close(fd)


def with_sibling(fn):
    with Sibling() as s:
        return fn(s)


def pidfd_getfd(s):
    res, pidfd = sys_call("pidfd_open", s.pid, 0)
    if res != "ok":
        return "pidfd_open:" + res
    try:
        res, fd = sys_call("pidfd_getfd", pidfd, s.fd, 0)
        if res == "ok":
            os.close(fd)
        return res
    finally:
        os.close(pidfd)


def process_vm_writev(s):
    buf = ctypes.create_string_buffer(1)
    iov = (ctypes.c_void_p * 2)(ctypes.addressof(buf), 1)
    riov = (ctypes.c_void_p * 2)(writable_address(s.pid), 1)
    return sys_call("process_vm_writev", s.pid, iov, 1, riov, 1, 0)[0]


def process_madvise(s):
    res, pidfd = sys_call("pidfd_open", s.pid, 0)
    if res != "ok":
        return "pidfd_open:" + res
    try:
        iov = (ctypes.c_void_p * 2)(writable_address(s.pid), 4096)
        return sys_call("process_madvise", pidfd, iov, 1, 20, 0)[0]  # MADV_COLD
    finally:
        os.close(pidfd)


def proc_fd_reopen():
    r, w = os.pipe()
    with open("/proc/self/fd/%d" % w, "w") as f:
        f.write("x")
    os.close(w)
    data = os.read(r, 1).decode()
    os.close(r)
    return data


probe("pidfd_getfd_sibling", lambda: with_sibling(pidfd_getfd))
probe("kcmp_sibling", lambda: with_sibling(lambda s: sys_call("kcmp", os.getpid(), s.pid, 0, 0, 0)[0]))
probe("process_vm_writev_sibling", lambda: with_sibling(process_vm_writev))
probe("process_madvise_sibling", lambda: with_sibling(process_madvise))
probe("proc_mem_write_self", lambda: mem_write("self"))
probe("proc_mem_write_sibling", lambda: with_sibling(lambda s: mem_write(s.pid)))
probe("proc_mem_write_pid1", lambda: mem_write(1))


def oom_score_adj_rewrite():
    with open("/proc/self/oom_score_adj") as f:
        value = f.read()
    with open("/proc/self/oom_score_adj", "w") as f:
        f.write(value)
    return "ok"


probe("proc_write_oom_score_adj", oom_score_adj_rewrite)
probe("proc_self_fd_reopen_works", proc_fd_reopen)
# What remains (README, "What the kernel enforces"): a process may read the memory of another
# process of the sandbox uid, and of the sandbox's pid 1, through /proc/PID/mem.
probe("proc_mem_read_sibling_remains", lambda: with_sibling(lambda s: mem_read(s.pid)))
probe("proc_mem_read_pid1_remains", lambda: mem_read(1))


def fork_bomb():
    children = []
    try:
        for _ in range(1000):
            pid = os.fork()
            if pid == 0:
                import time
                time.sleep(30)
                os._exit(0)
            children.append(pid)
        return "unbounded"
    except OSError as e:
        return err_name(e.errno) + (" below-limit" if len(children) < 200 else " above-limit")
    finally:
        for pid in children:
            os.kill(pid, 9)
        for pid in children:
            os.waitpid(pid, 0)


probe("fork_bomb_stopped", fork_bomb)
probe("memory_balloon_stopped", lambda: run(["/usr/bin/python3", "-c", "b = bytearray(1024 * 1024 * 1024); b[::4096] = b'x' * len(b[::4096]); print('survived')"]))
