// The template side of a warm run (libcodejail_warm.so, loaded by python/warm_template.py):
// applies the plan a daemon sent (the same bytes a cold child applies) with the one confinement core.
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

extern "C" int cj_warm_init(void) {
  // Built before the first fork, so that no child ever allocates for it.
  return seccomp_program(true) ? 0 : ENOMEM;
}

extern "C" int cj_warm_filter_template(void) { return install_template_seccomp(); }

extern "C" int cj_warm_apply(const void *wire, size_t len, const int *fds, size_t nfds, int parent, int *failed_step) {
  *failed_step = CJ_STEP_NONE;
  // Copied: the caller's buffer need not be aligned for the struct.
  static cj_plan plan;
  if (len != sizeof plan) return EINVAL;
  memcpy(&plan, wire, sizeof plan);
  // The rest of the check is cj_apply_plan's own; this is a warm plan's: without a directory of
  // its own, the run would start in the template's.
  if (plan.cwd_len == 0 || plan.cwd[0] != '/') return EINVAL;
  enum cj_step step = CJ_STEP_NONE;
  int err = cj_apply_plan(&plan, fds, nfds, parent, &step);
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
  int fd_list[CJ_PLAN_MAX_FDS];
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

namespace {

// Reads exactly `len` bytes from fd 0; 0, -EPIPE at end of file, or -errno.
long read_exact(char *into, size_t len) {
  size_t got = 0;
  while (got < len) {
    long r = raw_syscall(SYS_read, 0, (long)(into + got), (long)(len - got));
    if (r == -EINTR) continue;
    if (r < 0) return r;
    if (r == 0) return -EPIPE;
    got += (size_t)r;
  }
  return 0;
}

// The go record's head (the daemon writes it: src/run/held.ts); the tail follows.
struct GoRecord {
  char kind[4];  // "GO01"
  uint32_t tail_len;
};

}  // namespace

extern "C" long cj_warm_await_go(void *tail, size_t cap) {
  GoRecord go;
  long r = read_exact(reinterpret_cast<char *>(&go), sizeof go);
  if (r < 0) return r;
  if (memcmp(go.kind, "GO01", 4) != 0) return -EPROTO;
  if (go.tail_len > cap) return -E2BIG;
  r = read_exact(static_cast<char *>(tail), go.tail_len);
  return r < 0 ? r : (long)go.tail_len;
}

extern "C" int cj_warm_seal(int first) {
  // What execve's close-on-exec would have closed: the template's socket, the received
  // originals, the other children's pidfds. Allowed by the warm seccomp policy.
  long r = raw_syscall(SYS_close_range, first, ~0U, 0);
  return r < 0 ? (int)-r : 0;
}

extern "C" const char *cj_warm_step_name(int step) { return cj_step_name(static_cast<cj_step>(step)); }
