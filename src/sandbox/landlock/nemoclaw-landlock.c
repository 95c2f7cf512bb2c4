/*
 * nemoclaw-landlock: the sandbox's second filesystem layer and the kernel's record of what it refused.
 *
 *   nemoclaw-landlock abi
 *       Print the running kernel's Landlock ABI (0: not available) and exit 0.
 *
 *   nemoclaw-landlock exec [--compat best_effort|hard_requirement] [--ro PATH]... [--rw PATH]...
 *                          [--dev PATH]... [--restrict-connect] [--connect PORT]... [--scope] [--log]
 *                          -- COMMAND [ARG]...
 *       Restrict this process with a Landlock ruleset (read-only, read-write and device trees; every
 *       other path gets no rights at all), set no_new_privs, then execvp COMMAND (the PATH lookup bwrap
 *       itself would have done; no shell). Rights the running ABI lacks are dropped, as the kernel documentation's best-effort
 *       example does; with --compat hard_requirement a missing Landlock, or an ABI below what the
 *       asked-for rules need, is an error (exit 125) instead.
 *
 *   nemoclaw-landlock audit [--enable]
 *       Root only: read the kernel's audit stream (NETLINK_AUDIT, read-only multicast group) and print
 *       the Landlock records (AUDIT_LANDLOCK_ACCESS 1423, AUDIT_LANDLOCK_DOMAIN 1424) and the SYSCALL
 *       records (1300) that go with them, one per line: "<type> <text>". With --enable, turn auditing
 *       on when it is off (no auditd on the box), and off again on SIGTERM/SIGINT/stdin EOF.
 *
 * Why a C helper: the Landlock syscalls must run in the process that then becomes the agent (the
 * restriction is inherited, never lifted), after bubblewrap built the mount layout and before the
 * agent's first instruction. A 300-line C program built by gcc at `npm run build` needs nothing from
 * the network and no FFI library with prebuilt binaries.
 *
 * Argument parsing is fixed: every option takes at most one value from argv, paths are bounded by
 * PATH_MAX, ports by 0..65535 and counts by MAX_RULES, and every syscall's result is checked.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <linux/audit.h>
#include <linux/netlink.h>

/* The system headers may predate the ABI this kernel has: every constant is spelled out here. */
#ifndef __NR_landlock_create_ruleset
#define __NR_landlock_create_ruleset 444
#endif
#ifndef __NR_landlock_add_rule
#define __NR_landlock_add_rule 445
#endif
#ifndef __NR_landlock_restrict_self
#define __NR_landlock_restrict_self 446
#endif

#define LL_CREATE_RULESET_VERSION (1U << 0)
#define LL_RULE_PATH_BENEATH 1
#define LL_RULE_NET_PORT 2

#define FS_EXECUTE (1ULL << 0)
#define FS_WRITE_FILE (1ULL << 1)
#define FS_READ_FILE (1ULL << 2)
#define FS_READ_DIR (1ULL << 3)
#define FS_REMOVE_DIR (1ULL << 4)
#define FS_REMOVE_FILE (1ULL << 5)
#define FS_MAKE_CHAR (1ULL << 6)
#define FS_MAKE_DIR (1ULL << 7)
#define FS_MAKE_REG (1ULL << 8)
#define FS_MAKE_SOCK (1ULL << 9)
#define FS_MAKE_FIFO (1ULL << 10)
#define FS_MAKE_BLOCK (1ULL << 11)
#define FS_MAKE_SYM (1ULL << 12)
#define FS_REFER (1ULL << 13)    /* ABI 2 */
#define FS_TRUNCATE (1ULL << 14) /* ABI 3 */
#define FS_IOCTL_DEV (1ULL << 15) /* ABI 5 */
#define NET_BIND_TCP (1ULL << 0) /* ABI 4 */
#define NET_CONNECT_TCP (1ULL << 1)
#define SCOPE_ABSTRACT_UNIX (1ULL << 0) /* ABI 6 */
#define SCOPE_SIGNAL (1ULL << 1)
#define LOG_SAME_EXEC_OFF (1U << 0) /* ABI 7 */
#define LOG_NEW_EXEC_ON (1U << 1)

#define FS_ABI1 ((1ULL << 13) - 1)
#define FS_FILE_ONLY (FS_EXECUTE | FS_WRITE_FILE | FS_READ_FILE | FS_TRUNCATE | FS_IOCTL_DEV)
#define FS_READ (FS_EXECUTE | FS_READ_FILE | FS_READ_DIR)

#define AUDIT_LANDLOCK_ACCESS_T 1423
#define AUDIT_LANDLOCK_DOMAIN_T 1424
#define AUDIT_SYSCALL_T 1300

#define MAX_RULES 512
#define MAX_PORTS 64
#define EXIT_SETUP 125

/* Field layout of struct landlock_ruleset_attr as of ABI 6; the size passed follows the ABI. */
struct ll_ruleset_attr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;
  uint64_t scoped;
};
struct ll_path_beneath_attr {
  uint64_t allowed_access;
  int32_t parent_fd;
} __attribute__((packed));
struct ll_net_port_attr {
  uint64_t allowed_access;
  uint64_t port;
};

enum rule_kind { RULE_RO, RULE_RW, RULE_DEV };
struct rule {
  enum rule_kind kind;
  const char *path;
};

static void die(const char *what) {
  fprintf(stderr, "nemoclaw-landlock: %s: %s\n", what, strerror(errno));
  exit(EXIT_SETUP);
}

static void fail(const char *msg) {
  fprintf(stderr, "nemoclaw-landlock: %s\n", msg);
  exit(EXIT_SETUP);
}

static int landlock_abi(void) {
  long abi = syscall(__NR_landlock_create_ruleset, NULL, 0, LL_CREATE_RULESET_VERSION);
  if (abi < 0) return 0; /* ENOSYS: not built in; EOPNOTSUPP: disabled at boot */
  return abi > INT_MAX ? INT_MAX : (int)abi;
}

/* Rights this ABI knows, out of the ones the ruleset would handle. */
static uint64_t fs_rights_for(int abi) {
  uint64_t r = FS_ABI1;
  if (abi >= 2) r |= FS_REFER;
  if (abi >= 3) r |= FS_TRUNCATE;
  if (abi >= 5) r |= FS_IOCTL_DEV;
  return r;
}

static uint64_t rights_of(enum rule_kind kind, uint64_t handled) {
  switch (kind) {
  case RULE_RO:
    return FS_READ & handled;
  case RULE_DEV:
    /* /dev: read and write the nodes bubblewrap made (null, tty, pts…), make nothing new. */
    return (FS_READ | FS_WRITE_FILE | FS_TRUNCATE | FS_IOCTL_DEV) & handled;
  case RULE_RW:
  default:
    return handled;
  }
}

static int parse_port(const char *s, uint64_t *out) {
  char *end = NULL;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno != 0 || end == s || *end != '\0' || v > 65535 || s[0] == '-' || s[0] == '+') return -1;
  *out = v;
  return 0;
}

static int cmd_exec(int argc, char **argv) {
  struct rule rules[MAX_RULES];
  size_t nrules = 0;
  uint64_t ports[MAX_PORTS];
  size_t nports = 0;
  int hard = 0, restrict_connect = 0, scope = 0, want_log = 0;
  int i = 2;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    }
    if (strcmp(a, "--restrict-connect") == 0) {
      restrict_connect = 1;
      continue;
    }
    if (strcmp(a, "--scope") == 0) {
      scope = 1;
      continue;
    }
    if (strcmp(a, "--log") == 0) {
      want_log = 1;
      continue;
    }
    if (i + 1 >= argc) fail("an option is missing its value (see the usage in the source)");
    const char *v = argv[++i];
    if (strcmp(a, "--compat") == 0) {
      if (strcmp(v, "hard_requirement") == 0) hard = 1;
      else if (strcmp(v, "best_effort") == 0) hard = 0;
      else fail("--compat takes best_effort or hard_requirement");
    } else if (strcmp(a, "--ro") == 0 || strcmp(a, "--rw") == 0 || strcmp(a, "--dev") == 0) {
      if (nrules >= MAX_RULES) fail("too many path rules");
      if (v[0] != '/' || strnlen(v, PATH_MAX) >= PATH_MAX) fail("a rule path must be absolute and shorter than PATH_MAX");
      rules[nrules].kind = a[2] == 'r' && a[3] == 'o' ? RULE_RO : a[2] == 'r' ? RULE_RW : RULE_DEV;
      rules[nrules].path = v;
      nrules++;
    } else if (strcmp(a, "--connect") == 0) {
      if (nports >= MAX_PORTS) fail("too many --connect ports");
      if (parse_port(v, &ports[nports]) != 0) fail("--connect takes a TCP port 0-65535");
      nports++;
    } else {
      fprintf(stderr, "nemoclaw-landlock: unknown option %s\n", a);
      exit(EXIT_SETUP);
    }
  }
  if (i >= argc) fail("no command after --");
  char **command = &argv[i];

  /* Whatever happens next, the command must not gain privileges (setuid, file caps) by exec. */
  if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) die("prctl(PR_SET_NO_NEW_PRIVS)");

  int abi = landlock_abi();
  if (abi < 1) {
    if (hard) fail("Landlock is not available on this kernel and landlock.compatibility is hard_requirement");
    execvp(command[0], command);
    die(command[0]);
  }
  if (hard && restrict_connect && abi < 4) fail("TCP connect rules need Landlock ABI 4 (hard_requirement)");
  if (hard && scope && abi < 6) fail("signal and abstract-socket scoping need Landlock ABI 6 (hard_requirement)");

  struct ll_ruleset_attr attr;
  memset(&attr, 0, sizeof attr);
  attr.handled_access_fs = fs_rights_for(abi);
  size_t attr_size = sizeof(uint64_t);
  if (abi >= 4) {
    attr_size = 2 * sizeof(uint64_t);
    if (restrict_connect) attr.handled_access_net = NET_CONNECT_TCP;
  }
  if (abi >= 6) {
    attr_size = sizeof attr;
    if (scope) attr.scoped = SCOPE_ABSTRACT_UNIX | SCOPE_SIGNAL;
  }
  long rfd = syscall(__NR_landlock_create_ruleset, &attr, attr_size, 0);
  if (rfd < 0) die("landlock_create_ruleset");
  int ruleset = (int)rfd;

  for (size_t r = 0; r < nrules; r++) {
    /* O_PATH follows links (bwrap's usr-merge /bin → usr/bin) and needs no read permission. */
    int fd = open(rules[r].path, O_PATH | O_CLOEXEC);
    if (fd < 0) {
      if (errno == ENOENT || errno == ENOTDIR) continue; /* like bwrap's --ro-bind-try */
      die(rules[r].path);
    }
    struct stat st;
    if (fstat(fd, &st) != 0) die(rules[r].path);
    struct ll_path_beneath_attr pb;
    memset(&pb, 0, sizeof pb);
    pb.allowed_access = rights_of(rules[r].kind, attr.handled_access_fs);
    /* Directory-only rights on a file are EINVAL: keep the ones a file can carry. */
    if (!S_ISDIR(st.st_mode)) pb.allowed_access &= FS_FILE_ONLY;
    pb.parent_fd = fd;
    if (pb.allowed_access != 0 && syscall(__NR_landlock_add_rule, ruleset, LL_RULE_PATH_BENEATH, &pb, 0) != 0) die(rules[r].path);
    if (close(fd) != 0) die("close");
  }
  if (attr.handled_access_net != 0) {
    for (size_t p = 0; p < nports; p++) {
      struct ll_net_port_attr np = {.allowed_access = NET_CONNECT_TCP, .port = ports[p]};
      if (syscall(__NR_landlock_add_rule, ruleset, LL_RULE_NET_PORT, &np, 0) != 0) die("landlock_add_rule(net port)");
    }
  }
  /* ABI 7: denials after the execve below are logged too (the default logs only this program's). */
  unsigned int flags = (want_log && abi >= 7) ? LOG_NEW_EXEC_ON : 0;
  if (syscall(__NR_landlock_restrict_self, ruleset, flags, 0) != 0) die("landlock_restrict_self");
  if (close(ruleset) != 0) die("close(ruleset)");
  if (want_log && abi >= 7) {
    /* One denied read of "/" (never granted) makes the kernel log this domain with this pid, so the
     * supervisor learns which domain id is this sandbox before the agent does anything. */
    int probe = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (probe >= 0) close(probe);
  }
  execvp(command[0], command);
  die(command[0]);
  return EXIT_SETUP;
}

/* ---- audit mode ---- */

static volatile sig_atomic_t stopping = 0;
static void on_signal(int sig) {
  (void)sig;
  stopping = 1;
}

struct audit_req {
  struct nlmsghdr nh;
  struct audit_status st;
};

static int audit_send(int fd, uint16_t type, const struct audit_status *st) {
  struct audit_req req;
  memset(&req, 0, sizeof req);
  req.nh.nlmsg_len = NLMSG_LENGTH(st ? sizeof *st : 0);
  req.nh.nlmsg_type = type;
  req.nh.nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  req.nh.nlmsg_seq = 1;
  if (st) req.st = *st;
  struct sockaddr_nl to = {.nl_family = AF_NETLINK};
  ssize_t n = sendto(fd, &req, req.nh.nlmsg_len, 0, (struct sockaddr *)&to, sizeof to);
  return n == (ssize_t)req.nh.nlmsg_len ? 0 : -1;
}

/* Read replies until the ACK (or the status for AUDIT_GET). Returns 0, or -1 with errno set. */
static int audit_reply(int fd, struct audit_status *out) {
  static char buf[16384] __attribute__((aligned(NLMSG_ALIGNTO)));
  for (int tries = 0; tries < 8; tries++) {
    ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) return -1;
    for (struct nlmsghdr *nh = (struct nlmsghdr *)buf; NLMSG_OK(nh, (size_t)n); nh = NLMSG_NEXT(nh, n)) {
      if (nh->nlmsg_type == NLMSG_ERROR) {
        if (nh->nlmsg_len < NLMSG_LENGTH(sizeof(struct nlmsgerr))) return -1;
        const struct nlmsgerr *e = (const struct nlmsgerr *)NLMSG_DATA(nh);
        if (e->error != 0) {
          errno = -e->error;
          return -1;
        }
        if (!out) return 0;
      } else if (nh->nlmsg_type == AUDIT_GET && out) {
        size_t len = nh->nlmsg_len - NLMSG_HDRLEN;
        memset(out, 0, sizeof *out);
        memcpy(out, NLMSG_DATA(nh), len < sizeof *out ? len : sizeof *out);
        return 0;
      }
    }
  }
  errno = EPROTO;
  return -1;
}

static int audit_set_enabled(int fd, uint32_t on) {
  struct audit_status st;
  memset(&st, 0, sizeof st);
  st.mask = AUDIT_STATUS_ENABLED;
  st.enabled = on;
  if (audit_send(fd, AUDIT_SET, &st) != 0) return -1;
  return audit_reply(fd, NULL);
}

static int cmd_audit(int argc, char **argv) {
  int enable = argc > 2 && strcmp(argv[2], "--enable") == 0;
  /* The supervisor may die without stopping us: the kernel ends this reader with it. */
  if (prctl(PR_SET_PDEATHSIG, SIGTERM, 0, 0, 0) != 0) die("prctl(PR_SET_PDEATHSIG)");
  if (getppid() == 1) return 0;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  if (sigaction(SIGTERM, &sa, NULL) != 0 || sigaction(SIGINT, &sa, NULL) != 0) die("sigaction");
  if (signal(SIGPIPE, SIG_IGN) == SIG_ERR) die("signal(SIGPIPE)");

  int ctl = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT);
  if (ctl < 0) die("socket(NETLINK_AUDIT)");
  struct audit_status st;
  if (audit_send(ctl, AUDIT_GET, NULL) != 0 || audit_reply(ctl, &st) != 0) die("AUDIT_GET");
  int enabled_by_us = 0;
  if (st.enabled == 0 && enable) {
    if (audit_set_enabled(ctl, 1) != 0) die("AUDIT_SET enabled=1");
    enabled_by_us = 1;
  }
  /* The read-only multicast group gets every record whether or not an auditd is registered. */
  int rd = socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_AUDIT);
  if (rd < 0) die("socket(NETLINK_AUDIT)");
  struct sockaddr_nl sa_nl = {.nl_family = AF_NETLINK, .nl_groups = 1U << (AUDIT_NLGRP_READLOG - 1)};
  if (bind(rd, (struct sockaddr *)&sa_nl, sizeof sa_nl) != 0) die("bind(AUDIT_NLGRP_READLOG)");
  int rcvbuf = 4 << 20;
  (void)setsockopt(rd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf); /* a bigger buffer is only nicer */
  printf("ready enabled=%u by_us=%d auditd_pid=%u\n", enabled_by_us ? 1U : st.enabled, enabled_by_us, st.pid);
  if (fflush(stdout) != 0) die("stdout");

  static char buf[65536] __attribute__((aligned(NLMSG_ALIGNTO)));
  static char line[8192];
  /* Serials of the last Landlock records: their SYSCALL record follows at the syscall's exit. */
  enum { RECENT = 64 };
  unsigned long recent[RECENT];
  memset(recent, 0, sizeof recent);
  size_t next_recent = 0;
  int rc = 0;
  while (!stopping) {
    struct pollfd pfd[2] = {{.fd = rd, .events = POLLIN}, {.fd = STDIN_FILENO, .events = POLLIN}};
    int pr = poll(pfd, 2, 1000);
    if (pr < 0) {
      if (errno == EINTR) continue;
      rc = 1;
      break;
    }
    if (pfd[1].revents & (POLLIN | POLLHUP | POLLERR)) {
      char c;
      ssize_t r = read(STDIN_FILENO, &c, 1);
      if (r <= 0) break; /* the supervisor closed our stdin: stop */
    }
    if (!(pfd[0].revents & POLLIN)) continue;
    ssize_t n = recv(rd, buf, sizeof buf, MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      if (errno == ENOBUFS) { /* the kernel dropped records: say so, keep reading */
        printf("lost\n");
        continue;
      }
      rc = 1;
      break;
    }
    /* The kernel sends one record per datagram, and its nlmsg_len leaves out the header (an old
     * audit quirk), so neither NLMSG_OK nor nlmsg_len is trusted: the datagram's size bounds it. */
    if ((size_t)n < NLMSG_HDRLEN) continue;
    const struct nlmsghdr *nh = (const struct nlmsghdr *)buf;
    uint16_t t = nh->nlmsg_type;
    if (t != AUDIT_LANDLOCK_ACCESS_T && t != AUDIT_LANDLOCK_DOMAIN_T && t != AUDIT_SYSCALL_T) continue;
    size_t avail = (size_t)n - NLMSG_HDRLEN;
    if (avail > sizeof line - 1) avail = sizeof line - 1;
    size_t k = 0;
    const char *text = buf + NLMSG_HDRLEN;
    while (k < avail && text[k] != '\0' && text[k] != '\n') k++;
    memcpy(line, text, k);
    line[k] = '\0';
    unsigned long serial = 0;
    if (sscanf(line, "audit(%*[0-9.]:%lu)", &serial) != 1) continue;
    if (t == AUDIT_SYSCALL_T) {
      /* Only the SYSCALL record of an event that had a Landlock record (it names the process). */
      int ours = 0;
      for (size_t s = 0; s < RECENT; s++) ours |= recent[s] == serial;
      if (!ours) continue;
    } else {
      recent[next_recent] = serial;
      next_recent = (next_recent + 1) % RECENT;
    }
    if (printf("%u %s\n", (unsigned)t, line) < 0) {
      rc = 1;
      break;
    }
    if (fflush(stdout) != 0) break;
  }
  if (enabled_by_us && audit_set_enabled(ctl, 0) != 0) {
    fprintf(stderr, "nemoclaw-landlock: could not turn auditing off again: %s\n", strerror(errno));
    rc = 1;
  }
  close(rd);
  close(ctl);
  return rc;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "abi") == 0) {
    printf("%d\n", landlock_abi());
    return fflush(stdout) == 0 ? 0 : 1;
  }
  if (argc >= 2 && strcmp(argv[1], "exec") == 0) return cmd_exec(argc, argv);
  if (argc >= 2 && strcmp(argv[1], "audit") == 0) return cmd_audit(argc, argv);
  fprintf(stderr, "usage: nemoclaw-landlock abi | exec [rules] -- COMMAND... | audit [--enable]\n");
  return 2;
}
