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
