// The one place where a plan is applied. The order matters and is defended step by step:
// anything that needs root (namespaces, cgroup, rlimits above the daemon's, the AppArmor exec
// attribute) happens before the credentials are dropped; the parent-death signal after them
// (a credential change clears it); Landlock after no_new_privs (which it requires once we are
// unprivileged); seccomp last, so that no set-up call needs to be allowed by the filter.
#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

#include "confine.h"
#include "layers.h"

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef CLONE_NEWNET
#define CLONE_NEWNET 0x40000000
#endif
#ifndef CLONE_NEWIPC
#define CLONE_NEWIPC 0x08000000
#endif
#ifndef CLONE_NEWNS
#define CLONE_NEWNS 0x00020000
#endif

using namespace codejail;

namespace {

// Node ignores SIGPIPE and SIGXFSZ, and ignored dispositions survive execve: without this an
// RLIMIT_FSIZE overrun would be an EFBIG error instead of a signal, and a closed stdout
// would not stop a writer. Handlers cannot survive execve anyway, but blocked signals can.
int reset_signals() {
  struct kernel_sigaction {
    void (*handler)(int);
    unsigned long flags;
    void (*restorer)(void);
    unsigned long mask;
  } dfl = {SIG_DFL, 0, nullptr, 0};
  for (int sig = 1; sig < 65; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    raw_syscall(SYS_rt_sigaction, sig, (long)&dfl, 0, 8);
  }
  unsigned long empty = 0;
  long r = raw_syscall(SYS_rt_sigprocmask, SIG_SETMASK, (long)&empty, 0, 8);
  return r < 0 ? (int)-r : 0;
}

// Written while the task still has the daemon's capabilities: with CAP_SYS_RESOURCE the kernel
// also makes the value the task's floor (oom_score_adj_min), so that the run cannot lower it
// again later, down to the daemon's low value it would otherwise have inherited as its floor.
// A CLONE_VFORK child's write changes its own value only, not that of the daemon whose memory it
// shares until execve (fs/proc/base.c, __set_oom_adj).
int write_oom_score_adj(int value) {
  char text[8];
  int len = 0;
  unsigned magnitude = value < 0 ? (unsigned)-value : (unsigned)value;
  char digits[8];
  int n = 0;
  do {
    digits[n++] = (char)('0' + magnitude % 10);
    magnitude /= 10;
  } while (magnitude && n < 7);
  if (value < 0) text[len++] = '-';
  while (n) text[len++] = digits[--n];
  long fd = raw_syscall(SYS_openat, AT_FDCWD, (long)"/proc/self/oom_score_adj", O_WRONLY | O_CLOEXEC);
  if (fd < 0) return (int)-fd;
  long r = raw_syscall(SYS_write, fd, (long)text, len);
  raw_syscall(SYS_close, fd);
  if (r < 0) return (int)-r;
  return r == len ? 0 : EIO;
}

int move_stdio(const int fds[4]) {
  for (int target = 0; target < 4; target++) {
    int fd = fds[target];
    if (fd < 0) continue;
    // dup2 onto itself keeps close-on-exec set; the daemon guarantees fds >= 4, but be exact.
    long r = fd == target ? raw_syscall(SYS_fcntl, fd, F_SETFD, 0) : raw_syscall(SYS_dup2, fd, target);
    if (r < 0) return (int)-r;
  }
  return 0;
}

}  // namespace

extern "C" int cj_apply_plan(const struct cj_plan *plan, const int *fds, size_t nfds, pid_t parent, enum cj_step *failed_step) {
  int err = cj_plan_check(plan, nfds);
  if (err) {
    *failed_step = CJ_STEP_NONE;
    return err;
  }
  // An index of the fd list, as the fd it names (checked above: in the list, or -1).
  auto fd = [fds](int32_t index) { return index < 0 ? -1 : fds[index]; };
#define STEP(name, expr)        \
  do {                          \
    err = (expr);               \
    if (err) {                  \
      *failed_step = name;      \
      return err;               \
    }                           \
  } while (0)

  if (plan->new_session) {
    long r = raw_syscall(SYS_setsid);
    STEP(CJ_STEP_SETSID, r < 0 ? (int)-r : 0);
  }
  if (plan->reset_signals) STEP(CJ_STEP_SIGNALS, reset_signals());
  // Before anything can fork (and its children inherit the value) and while /proc is the host's.
  if (plan->oom_score_adj != CJ_PLAN_UNSET) STEP(CJ_STEP_OOM_SCORE_ADJ, write_oom_score_adj((int)plan->oom_score_adj));
  if (plan->n_cgroup_procs) {
    int procs[sizeof plan->cgroup_procs / sizeof plan->cgroup_procs[0]];
    for (uint32_t i = 0; i < plan->n_cgroup_procs; i++) procs[i] = fd(plan->cgroup_procs[i]);
    STEP(CJ_STEP_CGROUP, apply_cgroup(procs, plan->n_cgroup_procs));
  }
  if (plan->netns >= 0) STEP(CJ_STEP_NETNS, apply_namespace(fd(plan->netns), CLONE_NEWNET));
  // Resets root and cwd to the namespace's: chdir comes later.
  if (plan->mntns >= 0) STEP(CJ_STEP_MNTNS, apply_namespace(fd(plan->mntns), CLONE_NEWNS));
  if (plan->n_rlimits) STEP(CJ_STEP_RLIMIT, apply_rlimits(plan->rlimits, plan->n_rlimits));
  if (plan->apparmor_attr_len && !plan->apparmor_now) STEP(CJ_STEP_APPARMOR, apply_apparmor(plan->apparmor_attr, plan->apparmor_attr_len, false));
  if (plan->uid != CJ_PLAN_UNSET) {
    enum cj_step step = CJ_STEP_SETGROUPS;
    err = apply_credentials((uid_t)plan->uid, (gid_t)plan->gid, &step);
    if (err) {
      *failed_step = step;
      return err;
    }
  }
  // A credential change makes the task non-dumpable, which turns /proc/self over to root; execve
  // makes an ordinary program dumpable again. A warm run never execs, so it does this itself, or
  // it would differ from a cold run in what of its own /proc it may read.
  if (plan->dumpable_after_ids) {
    long r = raw_syscall(SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0);
    STEP(CJ_STEP_DUMPABLE, r < 0 ? (int)-r : 0);
  }
  // A switch that takes effect at once (a warm run's, to the current attribute) comes after the
  // credentials: the sandbox profile grants no capability, so setgroups and setresuid would fail
  // under it. An exec-time switch comes first, while the task can still write its exec attribute.
  if (plan->apparmor_attr_len && plan->apparmor_now) STEP(CJ_STEP_APPARMOR, apply_apparmor(plan->apparmor_attr, plan->apparmor_attr_len, true));
  if (plan->parent_death_signal) {
    long r = raw_syscall(SYS_prctl, PR_SET_PDEATHSIG, SIGKILL);
    STEP(CJ_STEP_PDEATHSIG, r < 0 ? (int)-r : 0);
    // The parent may have died before the signal was armed.
    if (parent && raw_syscall(SYS_getppid) != parent) STEP(CJ_STEP_PDEATHSIG, ESRCH);
  }
  const int stdio[4] = {fd(plan->fd0), fd(plan->fd1), fd(plan->fd2), fd(plan->fd3)};
  STEP(CJ_STEP_STDIO, move_stdio(stdio));
  if (plan->cwd_len) {
    long r = raw_syscall(SYS_chdir, (long)plan->cwd);
    STEP(CJ_STEP_CHDIR, r < 0 ? (int)-r : 0);
  }
  if (plan->close_other_fds) {
    // Close-on-exec rather than close: the error pipe must stay open until execve succeeds.
    unsigned first = stdio[3] >= 0 ? 4 : 3;
    long r = raw_syscall(SYS_close_range, first, ~0U, CLOSE_RANGE_CLOEXEC);
    STEP(CJ_STEP_CLOSE_FDS, r < 0 ? (int)-r : 0);
  }
  if (plan->no_new_privs || plan->landlock_ruleset >= 0 || plan->seccomp) {
    long r = raw_syscall(SYS_prctl, PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    STEP(CJ_STEP_NO_NEW_PRIVS, r < 0 ? (int)-r : 0);
  }
  if (plan->landlock_ruleset >= 0) STEP(CJ_STEP_LANDLOCK, apply_landlock(fd(plan->landlock_ruleset)));
  // Built before the clone (prepare_plan) or before the template's first fork (cj_warm_init):
  // here it is only looked up, and its absence fails the step.
  if (plan->seccomp) {
    const sock_fprog *program = built_seccomp_program(plan->seccomp_no_execve);
    STEP(CJ_STEP_SECCOMP, program ? apply_seccomp(program) : ENOMEM);
  }
#undef STEP
  return 0;
}

extern "C" const char *cj_step_name(enum cj_step step) {
  static const char *const names[CJ_STEP_COUNT] = {
#define CJ_STEP_NAME(id, name) name,
      CJ_STEPS(CJ_STEP_NAME)
#undef CJ_STEP_NAME
  };
  return step >= 0 && step < CJ_STEP_COUNT ? names[step] : "unknown";
}
