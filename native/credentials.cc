// Dropping to the run's slot uid/gid. Raw system calls on purpose: glibc's setresuid and
// friends broadcast the change to every thread of the process through a signal handshake,
// which can deadlock (or change the parent's credentials) in a child cloned from a
// multithreaded process. The kernel call changes only the calling task.
#include <sys/syscall.h>
#include "layers.h"

namespace codejail {

int apply_credentials(uid_t uid, gid_t gid, cj_step *failed_step) {
  // Supplementary groups first (root's would otherwise stay), then gid, then uid: once the
  // uid is dropped the other two can no longer be changed.
  gid_t groups[1] = {gid};
  long r = raw_syscall(SYS_setgroups, 1, (long)groups);
  if (r < 0) return *failed_step = CJ_STEP_SETGROUPS, (int)-r;
  r = raw_syscall(SYS_setresgid, gid, gid, gid);
  if (r < 0) return *failed_step = CJ_STEP_SETRESGID, (int)-r;
  r = raw_syscall(SYS_setresuid, uid, uid, uid);
  if (r < 0) return *failed_step = CJ_STEP_SETRESUID, (int)-r;
  return 0;
}

}  // namespace codejail
