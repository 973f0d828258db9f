// The template side of a warm run (libcodejail_warm.so, loaded by python/warm_template.py): turns
// the flattened plan a daemon sent into a cj_plan and applies it with the one confinement core.
// Runs in the template's freshly forked child, before any submitted code: the same steps, in the
// same order, as a cold run's child, then the close that execve's close-on-exec would have done.
#include <signal.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "confine.h"
#include "layers.h"
#include "warm.h"

#ifndef SYS_close_range
#define SYS_close_range 436
#endif
#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif

using namespace codejail;

namespace {

// The fd a role refers to: -1 for none, -2 for an index past the list (a malformed plan).
int fd_for(const cj_warm_plan &w, int role, const int *fds, size_t nfds) {
  int index = w.fds[role];
  if (index < 0) return -1;
  return (size_t)index < nfds ? fds[index] : -2;
}

}  // namespace

extern "C" int cj_warm_init(void) {
  // Built before the first fork, so that no child ever allocates for it.
  return seccomp_program(true) ? 0 : ENOMEM;
}

extern "C" int cj_warm_apply(const void *wire, size_t len, const int *fds, size_t nfds, int parent, int *failed_step) {
  *failed_step = CJ_STEP_NONE;
  // Copied: the caller's buffer need not be aligned for the struct.
  static cj_warm_plan w;
  if (len != sizeof w) return EINVAL;
  memcpy(&w, wire, sizeof w);
  if (w.magic != CJ_WARM_MAGIC || w.size != sizeof w || w.n_rlimits > CJ_WARM_MAX_RLIMITS || w.apparmor_len >= CJ_WARM_MAX_ATTR ||
      w.cwd_len == 0 || w.cwd_len >= CJ_WARM_MAX_CWD || w.cwd[w.cwd_len] != '\0' || w.cwd[0] != '/' ||
      w.oom_score_adj < -1000 || w.oom_score_adj > 1000)
    return EINVAL;
  int role_fds[CJ_WARM_FD_ROLES];
  for (int role = 0; role < CJ_WARM_FD_ROLES; role++) {
    role_fds[role] = fd_for(w, role, fds, nfds);
    if (role_fds[role] == -2) return EINVAL;
  }
  // A warm run must have its three pipes: without them it would write to the template's stdio.
  if (role_fds[CJ_WARM_FD_STDIN] < 0 || role_fds[CJ_WARM_FD_STDOUT] < 0 || role_fds[CJ_WARM_FD_STDERR] < 0) return EINVAL;

  cj_rlimit rlimits[CJ_WARM_MAX_RLIMITS];
  for (uint32_t i = 0; i < w.n_rlimits; i++) {
    rlimits[i].resource = w.rlimits[i].resource;
    rlimits[i].soft = w.rlimits[i].soft == UINT64_MAX ? RLIM_INFINITY : (rlim_t)w.rlimits[i].soft;
    rlimits[i].hard = w.rlimits[i].hard == UINT64_MAX ? RLIM_INFINITY : (rlim_t)w.rlimits[i].hard;
  }
  int cgroup_fd = role_fds[CJ_WARM_FD_CGROUP];

  cj_plan plan{};
  plan.new_session = 1;
  // The template is a fresh interpreter that installed no handler of its own: its dispositions
  // (SIGPIPE and SIGXFSZ ignored, SIGINT raising KeyboardInterrupt) are what a cold interpreter
  // sets at start, and resetting them would make the two differ.
  plan.reset_signals = 0;
  // The template's own value is low (the daemon's, inherited): the run raises its own.
  plan.set_oom_score_adj = w.set_oom_score_adj;
  plan.oom_score_adj = w.oom_score_adj;
  plan.cgroup_procs_fds = cgroup_fd >= 0 ? &cgroup_fd : nullptr;
  plan.n_cgroup_procs_fds = cgroup_fd >= 0 ? 1 : 0;
  plan.netns_fd = role_fds[CJ_WARM_FD_NETNS];
  plan.mntns_fd = role_fds[CJ_WARM_FD_MNTNS];
  plan.rlimits = rlimits;
  plan.n_rlimits = w.n_rlimits;
  plan.apparmor_attr = w.apparmor_len ? w.apparmor : nullptr;
  plan.apparmor_attr_len = w.apparmor_len;
  plan.apparmor_now = 1;
  plan.dumpable_after_ids = 1;
  plan.change_ids = w.change_ids;
  plan.uid = w.uid;
  plan.gid = w.gid;
  plan.parent_death_signal = SIGKILL;
  plan.expected_parent = parent;
  plan.stdio_fds[0] = role_fds[CJ_WARM_FD_STDIN];
  plan.stdio_fds[1] = role_fds[CJ_WARM_FD_STDOUT];
  plan.stdio_fds[2] = role_fds[CJ_WARM_FD_STDERR];
  plan.stdio_fds[3] = role_fds[CJ_WARM_FD_RESULT];
  plan.cwd = w.cwd;
  // Not yet: the caller reports the outcome on its channel first, then calls cj_warm_seal.
  plan.close_other_fds = 0;
  plan.no_new_privs = w.no_new_privs;
  plan.landlock_ruleset_fd = role_fds[CJ_WARM_FD_LANDLOCK];
  plan.seccomp = w.seccomp ? seccomp_program(true) : nullptr;

  enum cj_step step = CJ_STEP_NONE;
  int err = cj_apply_plan(&plan, &step);
  if (err) {
    *failed_step = step;
    return err;
  }
  return 0;
}

namespace {

// The child's report to its template's channel (the daemon reads it): kind, token, two values.
struct WarmReport {
  char kind[4];  // "OKAY" (a: pid) or "FAIL" (a: step, b: errno)
  uint32_t token;
  int32_t a;
  int32_t b;
};

int send_report(int channel, const WarmReport &report, int fd) {
  struct iovec iov = {const_cast<WarmReport *>(&report), sizeof report};
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  if (fd >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int));
    memcpy(CMSG_DATA(cmsg), &fd, sizeof fd);
  }
  long r = raw_syscall(SYS_sendmsg, channel, (long)&msg, MSG_NOSIGNAL);
  return r < 0 ? (int)-r : 0;
}

}  // namespace

extern "C" int cj_warm_start(const void *wire, size_t len, const void *fds, size_t nfds, int parent, int channel, uint32_t token,
                             int result_channel) {
  // Everything from the fork to the run's code in raw system calls: each Python statement here
  // would copy-on-write pages of the template's heap, which is most of what a warm start costs.
  int fd_list[CJ_WARM_FD_ROLES + 8];
  if (nfds > sizeof fd_list / sizeof fd_list[0]) return E2BIG;
  memcpy(fd_list, fds, nfds * sizeof(int));
  long pid = raw_syscall(SYS_getpid);
  long pidfd = raw_syscall(SYS_pidfd_open, pid, 0);
  if (pidfd < 0) {
    WarmReport failed = {{'F', 'A', 'I', 'L'}, token, CJ_STEP_NONE, (int32_t)-pidfd};
    send_report(channel, failed, -1);
    return (int)-pidfd;
  }
  int step = CJ_STEP_NONE;
  int err = cj_warm_apply(wire, len, fd_list, nfds, parent, &step);
  if (err) {
    WarmReport failed = {{'F', 'A', 'I', 'L'}, token, step, err};
    send_report(channel, failed, -1);
    return err;
  }
  // Confined now: the daemon learns it, with a pidfd to watch and signal this child by.
  WarmReport okay = {{'O', 'K', 'A', 'Y'}, token, (int32_t)pid, 0};
  err = send_report(channel, okay, (int)pidfd);
  if (err) return err;
  return cj_warm_seal(result_channel ? 4 : 3);
}

extern "C" int cj_warm_seal(int first) {
  // What execve's close-on-exec would have closed: the template's socket, the received
  // originals, the other children's pidfds. Allowed by the warm seccomp policy.
  long r = raw_syscall(SYS_close_range, first, ~0U, 0);
  return r < 0 ? (int)-r : 0;
}

extern "C" const char *cj_warm_step_name(int step) { return cj_step_name(static_cast<cj_step>(step)); }
