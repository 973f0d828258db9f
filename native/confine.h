/*
 * The confinement core: apply a prepared plan to the calling process.
 *
 * Everything a plan needs is computed before the process is created (the plan itself, plan.h:
 * rlimits, the Landlock ruleset fd, the AppArmor attribute string, pipes; the seccomp program), so that
 * applying it only makes async-signal-safe system calls. That makes the same function usable in
 * the child of a clone(CLONE_VM|CLONE_VFORK) from a multithreaded Node process (the addon's exec
 * path) and in a pre-forked worker that confines itself before running code in-process.
 *
 * Plain C ABI on purpose: a future Python worker pool can call it through ctypes/cffi.
 */
#ifndef CODEJAIL_CONFINE_H
#define CODEJAIL_CONFINE_H

#include <stddef.h>
#include <sys/types.h>
#include <sys/resource.h>

#include "plan.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Steps in the order cj_apply_plan performs them, each with the name an error reports
 * ("sandbox set-up failed at setresuid: ..."). One line per step: the enum and cj_step_name's
 * table are both made from this list, so a new step cannot get the wrong name. */
#define CJ_STEPS(X)                        \
  X(NONE, "none")                          \
  X(SETSID, "setsid")                      \
  X(SIGNALS, "signals")                    \
  X(OOM_SCORE_ADJ, "oom_score_adj")        \
  X(CGROUP, "cgroup")                      \
  X(NETNS, "setns(net)")                   \
  X(MNTNS, "setns(mnt)")                   \
  X(RLIMIT, "setrlimit")                   \
  X(APPARMOR, "apparmor")                  \
  X(SETGROUPS, "setgroups")                \
  X(SETRESGID, "setresgid")                \
  X(SETRESUID, "setresuid")                \
  X(DUMPABLE, "dumpable")                  \
  X(PDEATHSIG, "pdeathsig")                \
  X(STDIO, "stdio")                        \
  X(CHDIR, "chdir")                        \
  X(CLOSE_FDS, "close_range")              \
  X(NO_NEW_PRIVS, "no_new_privs")          \
  X(LANDLOCK, "landlock_restrict_self")    \
  X(SECCOMP, "seccomp")                    \
  X(EXECVE, "execve")

enum cj_step {
#define CJ_STEP_ENUM(id, name) CJ_STEP_##id,
  CJ_STEPS(CJ_STEP_ENUM)
#undef CJ_STEP_ENUM
  CJ_STEP_COUNT
};

/*
 * Checks the plan (cj_plan_check) and applies it to the calling process, with `fds` the fd list
 * its indexes name and `parent` the pid that must still be its parent once the parent-death
 * signal is armed (0: no check). Returns 0, or an errno value with *failed_step set (EINVAL at
 * CJ_STEP_NONE: a malformed plan). Async-signal-safe: no allocation, no locks, raw syscalls.
 */
int cj_apply_plan(const struct cj_plan *plan, const int *fds, size_t nfds, pid_t parent, enum cj_step *failed_step);

/* Name of a step, for error messages ("setresuid", "landlock_restrict_self", ...). */
const char *cj_step_name(enum cj_step step);

#ifdef __cplusplus
}
#endif

#endif
