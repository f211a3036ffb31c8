#!/usr/bin/env node
// Generates seccomp/profile.json: an allowlist for x86_64 and aarch64 containers.
// Run `node seccomp/build-profile.mjs` after editing the lists below; a unit test fails when
// profile.json and this file disagree. seccomp/README.md explains how the lists were chosen.
import { writeFileSync } from "node:fs";
import { fileURLToPath } from "node:url";

const EPERM = 1;
const ENOSYS = 38;

// Allowed without argument filters. Grouped by what needs them.
export const ALLOWED = {
  "file I/O": [
    "read", "write", "readv", "writev", "pread64", "pwrite64", "preadv", "pwritev", "preadv2", "pwritev2",
    "open", "openat", "openat2", "close", "close_range", "creat", "lseek", "_llseek",
    "stat", "fstat", "lstat", "newfstatat", "statx", "statfs", "fstatfs",
    "access", "faccessat", "faccessat2", "getdents", "getdents64", "getcwd", "chdir", "fchdir",
    "rename", "renameat", "renameat2", "mkdir", "mkdirat", "rmdir", "link", "linkat", "unlink", "unlinkat",
    "symlink", "symlinkat", "readlink", "readlinkat", "chmod", "fchmod", "fchmodat", "fchmodat2",
    "chown", "fchown", "lchown", "fchownat", "umask", "truncate", "ftruncate", "fallocate",
    "fsync", "fdatasync", "sync", "syncfs", "sync_file_range", "flock", "fcntl", "ioctl",
    "dup", "dup2", "dup3", "pipe", "pipe2", "splice", "tee", "vmsplice", "sendfile", "copy_file_range",
    "utime", "utimes", "utimensat", "futimesat", "readahead", "fadvise64",
    "getxattr", "lgetxattr", "fgetxattr", "listxattr", "llistxattr", "flistxattr",
    "setxattr", "lsetxattr", "fsetxattr", "removexattr", "lremovexattr", "fremovexattr",
    "inotify_init", "inotify_init1", "inotify_add_watch", "inotify_rm_watch", "memfd_create", "cachestat",
  ],
  "memory": [
    "brk", "mmap", "munmap", "mremap", "mprotect", "msync", "mincore", "madvise",
    "mlock", "mlock2", "munlock", "mlockall", "munlockall", "membarrier",
    "pkey_alloc", "pkey_free", "pkey_mprotect", "map_shadow_stack", "mseal",
  ],
  "processes and threads": [
    "clone", "fork", "vfork", "execve", "execveat", "exit", "exit_group", "wait4", "waitid",
    "getpid", "getppid", "gettid", "getpgid", "setpgid", "getpgrp", "getsid", "setsid",
    "kill", "tkill", "tgkill", "pidfd_open", "pidfd_send_signal",
    "set_tid_address", "set_robust_list", "get_robust_list", "rseq", "arch_prctl", "prctl",
    "set_thread_area", "get_thread_area", "restart_syscall", "seccomp",
    "sched_yield", "sched_getaffinity", "sched_setaffinity", "sched_getparam", "sched_setparam",
    "sched_getscheduler", "sched_setscheduler", "sched_get_priority_max", "sched_get_priority_min",
    "sched_rr_get_interval", "sched_getattr", "sched_setattr", "getpriority", "setpriority",
    "getrlimit", "setrlimit", "prlimit64", "getrusage", "capget", "capset",
  ],
  "identity (without capabilities these can only drop privileges)": [
    "getuid", "geteuid", "getgid", "getegid", "getresuid", "getresgid", "getgroups",
    "setuid", "setgid", "setreuid", "setregid", "setresuid", "setresgid", "setgroups", "setfsuid", "setfsgid",
  ],
  "signals": [
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "rt_sigpending", "rt_sigtimedwait",
    "rt_sigqueueinfo", "rt_tgsigqueueinfo", "rt_sigsuspend", "sigaltstack", "pause",
    "signalfd", "signalfd4", "alarm",
  ],
  "time": [
    "time", "gettimeofday", "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "times",
    "getitimer", "setitimer", "timer_create", "timer_settime", "timer_gettime", "timer_getoverrun",
    "timer_delete", "timerfd_create", "timerfd_settime", "timerfd_gettime",
  ],
  "event loop": [
    "poll", "ppoll", "select", "pselect6", "epoll_create", "epoll_create1", "epoll_ctl", "epoll_wait",
    "epoll_pwait", "epoll_pwait2", "eventfd", "eventfd2", "futex", "futex_waitv", "futex_wake",
    "futex_wait", "futex_requeue",
  ],
  "sockets (families are filtered on socket() below)": [
    "socketpair", "connect", "accept", "accept4", "bind", "listen", "shutdown",
    "getsockname", "getpeername", "setsockopt", "getsockopt",
    "sendto", "recvfrom", "sendmsg", "recvmsg", "sendmmsg", "recvmmsg",
  ],
  "system information": ["uname", "sysinfo", "getcpu", "getrandom"],
  "unprivileged self-sandboxing": ["landlock_create_ruleset", "landlock_add_rule", "landlock_restrict_self"],
};

// Denied (EPERM). Everything not allowed is denied anyway; this list documents the calls that
// matter, and the test suite proves each one fails inside a sandbox.
export const BLOCKED = {
  ptrace: "reads and writes other processes' memory; the classic container-escape helper",
  process_vm_readv: "cross-process memory read",
  process_vm_writev: "cross-process memory write",
  personality: "changes execution domain (e.g. disables ASLR)",
  userfaultfd: "lets an attacker pause the kernel mid-copy; a staple of kernel exploits",
  io_uring_setup: "large, frequently exploited kernel surface",
  io_uring_enter: "large, frequently exploited kernel surface",
  io_uring_register: "large, frequently exploited kernel surface",
  keyctl: "kernel keyring is not namespaced",
  add_key: "kernel keyring is not namespaced",
  request_key: "kernel keyring is not namespaced",
  bpf: "loads programs into the kernel",
  perf_event_open: "kernel profiling surface; leaks and exploits",
  mount: "filesystem namespace changes",
  umount2: "filesystem namespace changes",
  pivot_root: "filesystem namespace changes",
  chroot: "filesystem namespace changes",
  unshare: "creates namespaces (user namespaces open up the kernel surface)",
  setns: "joins other namespaces",
  open_by_handle_at: "bypasses path checks (the 'shocker' escape)",
  name_to_handle_at: "pair of open_by_handle_at",
  kcmp: "compares kernel objects of other processes",
  init_module: "kernel modules",
  finit_module: "kernel modules",
  delete_module: "kernel modules",
  kexec_load: "replaces the kernel",
  kexec_file_load: "replaces the kernel",
  reboot: "host power state",
  swapon: "host swap",
  swapoff: "host swap",
  acct: "process accounting on the host",
  syslog: "kernel log (addresses leak KASLR)",
  settimeofday: "host clock",
  clock_settime: "host clock",
  clock_adjtime: "host clock",
  adjtimex: "host clock",
  sethostname: "host name",
  setdomainname: "host name",
  iopl: "raw I/O port access",
  ioperm: "raw I/O port access",
  modify_ldt: "old x86 segment tricks used by exploits",
  quotactl: "filesystem quota control",
  mknod: "device nodes",
  mknodat: "device nodes",
  fanotify_init: "filesystem-wide event monitoring",
  lookup_dcookie: "kernel internals",
  vhangup: "terminal control",
  uselib: "obsolete loader",
  ustat: "obsolete",
  sysfs: "obsolete",
  _sysctl: "obsolete",
  mbind: "NUMA policy",
  set_mempolicy: "NUMA policy",
  get_mempolicy: "NUMA policy",
  move_pages: "touches other processes' memory placement",
  migrate_pages: "touches other processes' memory placement",
  open_tree: "new mount API",
  move_mount: "new mount API",
  fsopen: "new mount API",
  fsconfig: "new mount API",
  fsmount: "new mount API",
  fspick: "new mount API",
  mount_setattr: "new mount API",
  pidfd_getfd: "steals file descriptors from other processes",
  process_madvise: "acts on other processes' memory",
  process_mrelease: "acts on other processes' memory",
  memfd_secret: "unneeded; hides memory from the kernel",
  io_setup: "legacy AIO surface, unused by the runtimes",
  io_submit: "legacy AIO surface, unused by the runtimes",
  io_destroy: "legacy AIO surface",
  io_getevents: "legacy AIO surface",
  io_pgetevents: "legacy AIO surface",
  io_cancel: "legacy AIO surface",
  mq_open: "POSIX message queues (IPC is off)",
  mq_unlink: "POSIX message queues",
  mq_timedsend: "POSIX message queues",
  mq_timedreceive: "POSIX message queues",
  mq_notify: "POSIX message queues",
  mq_getsetattr: "POSIX message queues",
  set_mempolicy_home_node: "NUMA policy",
  listmount: "mount table enumeration",
  statmount: "mount table enumeration",
};

// socket() is allowed only for these address families (AF_UNIX, AF_INET, AF_INET6, AF_NETLINK).
// AF_PACKET, AF_VSOCK (to the hypervisor), AF_ALG (kernel crypto), AF_BLUETOOTH and the rest: EPERM.
export const SOCKET_FAMILIES = { AF_UNIX: 1, AF_INET: 2, AF_INET6: 10, AF_NETLINK: 16 };

// clone() flags that create namespaces: CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC
// | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET. clone is allowed only with none of them set.
export const CLONE_NAMESPACE_FLAGS = 0x00020000 | 0x02000000 | 0x04000000 | 0x08000000 | 0x10000000 | 0x20000000 | 0x40000000;

export function buildProfile() {
  const flat = Object.values(ALLOWED).flat();
  const unconditional = flat.filter((n) => n !== "clone").sort();
  const overlap = unconditional.filter((n) => n in BLOCKED);
  if (overlap.length > 0) throw new Error(`both allowed and blocked: ${overlap.join(", ")}`);
  const syscalls = [
    { names: unconditional, action: "SCMP_ACT_ALLOW" },
    {
      names: ["clone"],
      action: "SCMP_ACT_ALLOW",
      args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ" }],
      comment: "threads and processes, never new namespaces",
    },
    {
      // clone3 passes its flags in a struct seccomp cannot inspect. ENOSYS (not EPERM) makes
      // glibc fall back to clone(), which is filtered above.
      names: ["clone3"],
      action: "SCMP_ACT_ERRNO",
      errnoRet: ENOSYS,
    },
    ...Object.entries(SOCKET_FAMILIES).map(([family, value]) => ({
      names: ["socket"],
      action: "SCMP_ACT_ALLOW",
      args: [{ index: 0, value, valueTwo: 0, op: "SCMP_CMP_EQ" }],
      comment: family,
    })),
  ];
  return {
    defaultAction: "SCMP_ACT_ERRNO",
    defaultErrnoRet: EPERM,
    archMap: [
      // No 32-bit sub-architectures: the runtimes are 64-bit, and a 32-bit binary smuggled into
      // /workspace gets no syscalls at all.
      { architecture: "SCMP_ARCH_X86_64", subArchitectures: [] },
      { architecture: "SCMP_ARCH_AARCH64", subArchitectures: [] },
    ],
    syscalls,
  };
}

export function renderProfile() {
  return `${JSON.stringify(buildProfile(), null, 2)}\n`;
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  writeFileSync(new URL("./profile.json", import.meta.url), renderProfile());
  process.stderr.write("wrote seccomp/profile.json\n");
}
