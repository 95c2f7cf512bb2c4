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
