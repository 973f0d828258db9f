// AppArmor without libapparmor (it allocates, so it cannot run in the child): the child writes
// the same command libapparmor's aa_change_onexec would, "exec <profile>", to the task's exec
// attribute, and the kernel switches profile at execve. A daemon that is itself confined runs
// under no_new_privs rules for its children, where only stacking is allowed, so it asks for
// "stack <profile>" instead.
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <fstream>
#include <string>

#include "layers.h"

namespace codejail {

// Runs in the daemon before the clone. The per-LSM file first: with several LSMs stacked, the
// shared /proc/self/attr/current belongs to whichever one the kernel displays, not necessarily
// AppArmor. A label is "unconfined" or "<profile> (<mode>)"; complain mode counts as confined,
// since no_new_privs transitions are refused in complain mode too.
static bool caller_is_confined() {
  std::string label;
  for (const char *path : {"/proc/self/attr/apparmor/current", "/proc/self/attr/current"}) {
    std::ifstream current(path);
    if (current && std::getline(current, label)) break;
    label.clear();
  }
  return !label.empty() && label.rfind("unconfined", 0) != 0;
}

std::string prepare_apparmor(const std::string &profile) {
  return (caller_is_confined() ? "stack " : "exec ") + profile;
}

// A warm template's child writes this once it runs as the slot uid, before no_new_privs is set, so
// a plain switch is allowed (from an unconfined template; a confined one needs a change_profile
// rule for the target, which the codejaild profile has).
// Like a cold run, a confined caller stacks: "stack" written to the current attribute stacks at
// once, as libapparmor's aa_stack_profile does.
std::string prepare_apparmor_now(const std::string &profile) {
  return (caller_is_confined() ? "stack " : "changeprofile ") + profile;
}

int apply_apparmor(const char *attr, size_t len, bool now) {
  // The per-LSM path first (kernels >= 5.1); the shared attr file on older ones.
  long fd = raw_syscall(SYS_openat, AT_FDCWD, (long)(now ? "/proc/self/attr/apparmor/current" : "/proc/self/attr/apparmor/exec"),
                        O_WRONLY | O_CLOEXEC);
  if (fd == -ENOENT)
    fd = raw_syscall(SYS_openat, AT_FDCWD, (long)(now ? "/proc/self/attr/current" : "/proc/self/attr/exec"), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return (int)-fd;
  long r = raw_syscall(SYS_write, fd, (long)attr, (long)len);
  raw_syscall(SYS_close, fd);
  if (r < 0) return (int)-r;
  return r == (long)len ? 0 : EIO;
}

}  // namespace codejail
