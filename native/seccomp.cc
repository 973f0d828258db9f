// seccomp-bpf: the system-call policy of a run, built once in the daemon (hand-assembled BPF,
// so no libseccomp is needed at build or run time) and installed last in the child, right
// before execve. Default allow with a deny list: the kernel surface a sandbox has no business
// touching, objects the host shares between all its users, other processes, ways to run code
// the interpreter was not, plus socket families other than AF_UNIX.
#include <errno.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sched.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/ioctl.h>
#include <termios.h>

#include <atomic>
#include <mutex>
#include <utility>
#include <vector>

#include "layers.h"

#if defined(__x86_64__)
#define CJ_AUDIT_ARCH AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define CJ_AUDIT_ARCH AUDIT_ARCH_AARCH64
#endif

#ifndef TIOCLINUX
#define TIOCLINUX 0x541C
#endif
#ifndef F_NOTIFY
#define F_NOTIFY 1026
#endif
// Newer than the build host's headers may know. Since Linux 5.x every architecture numbers new
// system calls alike (x86_64 and aarch64 included); a kernel without them answers ENOSYS anyway.
#ifndef SYS_memfd_secret
#define SYS_memfd_secret 447
#endif
#ifndef SYS_statmount
#define SYS_statmount 457
#endif
#ifndef SYS_listmount
#define SYS_listmount 458
#endif
#ifndef SYS_open_tree_attr
#define SYS_open_tree_attr 467
#endif

namespace codejail {
namespace {

constexpr uint32_t kAllow = SECCOMP_RET_ALLOW;
constexpr uint32_t errno_ret(int e) { return SECCOMP_RET_ERRNO | (uint32_t)(e & SECCOMP_RET_DATA); }
constexpr uint32_t kArg0Low = offsetof(struct seccomp_data, args[0]);
constexpr uint32_t kArg1Low = offsetof(struct seccomp_data, args[1]);

// Denied with EPERM: debugging and memory access of other processes, the kernel keyring, eBPF,
// perf, userfaultfd and io_uring (large attack surface), mounts and namespaces, kexec, reboot,
// swap, modules, raw I/O ports, clock setting, accounting and the like. SysV IPC and POSIX message
// queues too: their objects outlive the run that made them (no namespace or rlimit bounds them),
// so they could carry data to the slot's next run or another slot, or pin host memory.
//
// Also what takes from a budget the whole host shares, or watches the host: AIO contexts count
// against the host-wide fs.aio-max-nr (a run could take all of it and root would get EAGAIN);
// inotify and fanotify marks report names created in directories the sandbox cannot list
// (Landlock does not mediate watches) and count against per-uid instance limits. NUMA policy
// (mbind, set_mempolicy...) would let a run pin its memory to one node of the host, and
// migrate_pages, move_pages, process_madvise and process_mrelease act on other processes.
// statmount and listmount read the mount table that /proc (unreadable under Landlock) hides.
// sync and syncfs start writeback of the whole host's (or a whole file system's) dirty data and
// wait for it: one run would make every process on the host wait on the disk. sysinfo reports
// the host's uptime, free memory and process count (a count other runs change: a channel between
// them). glibc's sysconf(_SC_PHYS_PAGES) and qsort's buffer sizing read it and ignore a failure
// (sysconf's answer is then meaningless, qsort still sorts); CPython calls it nowhere else.
// The same ground Docker's default profile and nsjail's policies cover, as far as a Python
// sandbox is concerned; CPython's stdlib calls none of these.
const int kDenied[] = {
    SYS_ptrace, SYS_process_vm_readv, SYS_process_vm_writev, SYS_kcmp, SYS_pidfd_getfd,
    SYS_process_madvise, SYS_process_mrelease,
    SYS_mbind, SYS_set_mempolicy, SYS_set_mempolicy_home_node, SYS_migrate_pages, SYS_move_pages,
    SYS_io_setup, SYS_io_destroy, SYS_io_submit, SYS_io_cancel, SYS_io_getevents, SYS_io_pgetevents,
    SYS_inotify_init1, SYS_inotify_add_watch, SYS_inotify_rm_watch, SYS_fanotify_mark,
    SYS_sync, SYS_syncfs, SYS_sysinfo,
    SYS_statmount, SYS_listmount, SYS_open_tree_attr, SYS_quotactl_fd, SYS_sethostname, SYS_setdomainname,
    SYS_keyctl, SYS_add_key, SYS_request_key, SYS_bpf, SYS_perf_event_open, SYS_userfaultfd,
    SYS_io_uring_setup, SYS_io_uring_enter, SYS_io_uring_register,
    SYS_mount, SYS_umount2, SYS_pivot_root, SYS_chroot, SYS_unshare, SYS_setns,
    SYS_open_tree, SYS_move_mount, SYS_fsopen, SYS_fsconfig, SYS_fsmount, SYS_fspick, SYS_mount_setattr,
    SYS_name_to_handle_at, SYS_open_by_handle_at, SYS_fanotify_init,
    SYS_kexec_load, SYS_kexec_file_load, SYS_reboot, SYS_swapon, SYS_swapoff,
    SYS_init_module, SYS_finit_module, SYS_delete_module,
    SYS_acct, SYS_quotactl, SYS_syslog, SYS_vhangup, SYS_settimeofday, SYS_clock_settime,
    SYS_clock_adjtime, SYS_adjtimex, SYS_lookup_dcookie,
    SYS_shmget, SYS_shmat, SYS_shmctl, SYS_msgget, SYS_msgsnd, SYS_msgrcv, SYS_msgctl,
    SYS_semget, SYS_semop, SYS_semtimedop, SYS_semctl,
    SYS_mq_open, SYS_mq_unlink, SYS_mq_timedsend, SYS_mq_timedreceive, SYS_mq_notify, SYS_mq_getsetattr,
#if defined(__x86_64__)
    SYS_iopl, SYS_ioperm, SYS_uselib, SYS_ustat, SYS_sysfs, SYS_modify_ldt, SYS__sysctl,
    SYS_create_module, SYS_get_kernel_syms, SYS_query_module, SYS_nfsservctl, SYS_inotify_init,
#endif
};

// Denied with EACCES (Python raises PermissionError, as for an execve Landlock refuses): the
// ways to execute code that is not a file Landlock grants execute on. A memfd lives on an
// internal mount Landlock does not mediate, so memfd_create + execveat (or execve of
// /proc/self/fd/N) would run any ELF the run wrote into it; memfd_secret makes the same kind of
// file, out of unswappable memory. execveat is refused whole: the interpreter's own start is an
// execve, and glibc's fexecve, its only user in CPython (os.execve with an fd), is not needed
// by the stdlib (subprocess, multiprocessing and posix_spawn all use execve).
const int kDeniedExec[] = {SYS_memfd_create, SYS_memfd_secret, SYS_execveat};

// Clone flags a sandbox may not use: it may create threads and processes, not namespaces, and
// not a process whose parent is its own parent (CLONE_PARENT). A warm run's parent is its
// template, which waits only for the runs it forked: a sibling made with CLONE_PARENT would stay
// a zombie of the slot's uid for good, and the slot could never be swept clean. (CLONE_THREAD
// also gives a child the caller's parent, but the kernel accepts it only with CLONE_VM and
// CLONE_SIGHAND, as a thread, which nobody waits for: it is reaped when it exits.)
constexpr uint32_t kRefusedCloneFlags = CLONE_NEWNS | CLONE_NEWUSER | CLONE_NEWNET | CLONE_NEWPID |
                                        CLONE_NEWIPC | CLONE_NEWUTS | CLONE_NEWCGROUP | CLONE_PARENT;

void stmt(std::vector<sock_filter> &p, uint16_t code, uint32_t k) { p.push_back(BPF_STMT(code, k)); }
void jump(std::vector<sock_filter> &p, uint16_t code, uint32_t k, uint8_t jt, uint8_t jf) {
  p.push_back(BPF_JUMP(code, k, jt, jf));
}
void load_nr(std::vector<sock_filter> &p) { stmt(p, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)); }

// What a program is for (see seccomp_program and install_template_seccomp).
enum class Part {
  whole,     // the policy, installed by a run's child in one filter
  template_, // a warm template's own filter: the policy but setns, which its children still need
  tail,      // what a child of a filtered template adds: setns, the one call the template's allows
};

// The arch check every program starts with. Other ABIs (i386 through int 0x80, x32) have other
// syscall numbers: the policy below would not mean what it says there, so such calls kill the
// process.
void check_arch(std::vector<sock_filter> &p) {
  stmt(p, BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch));
  jump(p, BPF_JMP | BPF_JEQ | BPF_K, CJ_AUDIT_ARCH, 1, 0);
  stmt(p, BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
  load_nr(p);
#if defined(__x86_64__)
  jump(p, BPF_JMP | BPF_JGE | BPF_K, 0x40000000 /* __X32_SYSCALL_BIT */, 0, 1);
  stmt(p, BPF_RET | BPF_K, SECCOMP_RET_KILL_PROCESS);
#endif
}

std::vector<sock_filter> build(bool warm, Part part) {
  std::vector<sock_filter> p;
  check_arch(p);
  if (part == Part::tail) {
    // Stacked on the template's filter, which answers every other call: the kernel runs both
    // and the most restrictive answer wins, so the two together are the whole policy.
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_setns, 0, 1);
    stmt(p, BPF_RET | BPF_K, errno_ret(EPERM));
    stmt(p, BPF_RET | BPF_K, kAllow);
    return p;
  }
  // clone3 passes its flags in memory BPF cannot read: answer ENOSYS so glibc falls back to
  // clone, whose flags we can check (EPERM would make thread creation fail outright).
  jump(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_clone3, 0, 1);
  stmt(p, BPF_RET | BPF_K, errno_ret(ENOSYS));
  // clone: refuse the flags above (x86_64 and aarch64 both pass flags as the first argument).
  jump(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_clone, 0, 4);
  stmt(p, BPF_LD | BPF_W | BPF_ABS, kArg0Low);
  jump(p, BPF_JMP | BPF_JSET | BPF_K, kRefusedCloneFlags, 0, 1);
  stmt(p, BPF_RET | BPF_K, errno_ret(EPERM));
  stmt(p, BPF_RET | BPF_K, kAllow);
  // socket and socketpair: AF_UNIX only. EACCES, so Python raises PermissionError.
  for (int nr : {SYS_socket, SYS_socketpair}) {
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 4);
    stmt(p, BPF_LD | BPF_W | BPF_ABS, kArg0Low);
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, AF_UNIX, 0, 1);
    stmt(p, BPF_RET | BPF_K, kAllow);
    stmt(p, BPF_RET | BPF_K, errno_ret(EACCES));
    load_nr(p);
  }
  // ioctl: no faking terminal input (TIOCSTI) or console tricks (TIOCLINUX).
  jump(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_ioctl, 0, 5);
  stmt(p, BPF_LD | BPF_W | BPF_ABS, kArg1Low);
  jump(p, BPF_JMP | BPF_JEQ | BPF_K, TIOCSTI, 2, 0);
  jump(p, BPF_JMP | BPF_JEQ | BPF_K, TIOCLINUX, 1, 0);
  stmt(p, BPF_RET | BPF_K, kAllow);
  stmt(p, BPF_RET | BPF_K, errno_ret(EPERM));
  // fcntl: no F_NOTIFY (dnotify), which like inotify reports what others create in a directory.
  // fcntl is frequent too: one comparison, then allowed.
  jump(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_fcntl, 0, 4);
  stmt(p, BPF_LD | BPF_W | BPF_ABS, kArg1Low);
  jump(p, BPF_JMP | BPF_JEQ | BPF_K, F_NOTIFY, 0, 1);
  stmt(p, BPF_RET | BPF_K, errno_ret(EPERM));
  stmt(p, BPF_RET | BPF_K, kAllow);
  // personality: only the query (0xffffffff) and plain Linux (0); others turn off ASLR etc.
  jump(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_personality, 0, 5);
  stmt(p, BPF_LD | BPF_W | BPF_ABS, kArg0Low);
  jump(p, BPF_JMP | BPF_JEQ | BPF_K, 0, 2, 0);
  jump(p, BPF_JMP | BPF_JEQ | BPF_K, 0xffffffffU, 1, 0);
  stmt(p, BPF_RET | BPF_K, errno_ret(EPERM));
  stmt(p, BPF_RET | BPF_K, kAllow);
  // The deny lists come after the argument checks. The kernel (>= 5.11) answers every call this
  // program always allows from a per-filter cache without running it, so the program runs only
  // for the calls checked above (ioctl is a frequent one) and for denied calls: checking those
  // first keeps an ioctl's cost from growing with the lists.
  for (int nr : kDenied) {
    if (part == Part::template_ && nr == SYS_setns) continue;
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 1);
    stmt(p, BPF_RET | BPF_K, errno_ret(EPERM));
  }
  for (int nr : kDeniedExec) {
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 1);
    stmt(p, BPF_RET | BPF_K, errno_ret(EACCES));
  }
  // A warm run is a fork of a template interpreter that is already running: it has no execve
  // to make, so none is allowed, and no program, the interpreter included, can be started.
  if (warm) {
    jump(p, BPF_JMP | BPF_JEQ | BPF_K, SYS_execve, 0, 1);
    stmt(p, BPF_RET | BPF_K, errno_ret(EACCES));
  }
  stmt(p, BPF_RET | BPF_K, kAllow);
  return p;
}

}  // namespace

namespace {
// Built at once, before any fork, and never freed: the whole policy, cold and warm, then the warm
// template's own filter and the tail its children add (warm only: a cold run has no template).
std::vector<sock_filter> filters[4];
sock_fprog programs[4];
constexpr int kWholeCold = 0, kWholeWarm = 1, kTemplate = 2, kTail = 3;
std::atomic<bool> programs_built{false};
// Set in a warm template once its own filter is installed (install_template_seccomp); its forked
// children inherit the value with its memory, and add only the tail.
bool template_filtered = false;

void build_all() {
  static std::once_flag once;
  std::call_once(once, [] {
    const std::pair<bool, Part> made[4] = {{false, Part::whole}, {true, Part::whole}, {true, Part::template_}, {true, Part::tail}};
    for (int i = 0; i < 4; i++) {
      filters[i] = build(made[i].first, made[i].second);
      programs[i].len = (unsigned short)filters[i].size();
      programs[i].filter = filters[i].data();
    }
    programs_built.store(true, std::memory_order_release);
  });
}
}  // namespace

const sock_fprog *seccomp_program(bool warm) {
  build_all();
  return &programs[warm ? kWholeWarm : kWholeCold];
}

// call_once is not for a child: libstdc++ sets thread-locals around it, and a CLONE_VM child's
// thread-locals are its parent thread's.
const sock_fprog *built_seccomp_program(bool warm) {
  if (!programs_built.load(std::memory_order_acquire)) return nullptr;
  // A filtered template's child already has the policy but setns (its template's filter, which
  // the fork copied): the tail completes it. Compiling the whole policy again in every child
  // cost a quarter of a millisecond of CPU per warm run (the kernel converts, checks and JITs
  // each filter it is given, and builds its cache of always-allowed calls).
  if (!warm) return &programs[kWholeCold];
  return &programs[template_filtered ? kTail : kWholeWarm];
}

int install_template_seccomp() {
  build_all();
  // No no_new_privs first: the template runs as root with CAP_SYS_ADMIN, which the kernel takes
  // in its place, and each child sets it in its own plan step, as a cold run's child does.
  int err = apply_seccomp(&programs[kTemplate]);
  if (!err) template_filtered = true;
  return err;
}

bool seccomp_supported() {
  // PR_GET_SECCOMP answers 0 when seccomp is built in and we are not yet filtered (or 2 when
  // we already are, which still allows adding filters); EINVAL means no seccomp at all.
  return prctl(PR_GET_SECCOMP, 0, 0, 0, 0) >= 0;
}

int apply_seccomp(const sock_fprog *program) {
  long r = raw_syscall(SYS_prctl, PR_SET_SECCOMP, SECCOMP_MODE_FILTER, (long)program, 0, 0);
  return r < 0 ? (int)-r : 0;
}

}  // namespace codejail
