/*
 * The confinement core: apply a prepared plan to the calling process.
 *
 * Everything a plan needs is computed before the process is created (argv/envp, rlimits,
 * the Landlock ruleset fd, the seccomp program, the AppArmor attribute string, pipes), so that
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

#ifdef __cplusplus
extern "C" {
#endif

struct sock_fprog;

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

struct cj_rlimit {
  int resource; /* RLIMIT_* */
  rlim_t soft;
  rlim_t hard;
};

struct cj_plan {
  int new_session;                 /* setsid(): the run leads its own session and group */
  int reset_signals;               /* SIG_DFL for every signal, empty mask */
  int set_oom_score_adj;           /* write oom_score_adj to /proc/self/oom_score_adj (while root) */
  int oom_score_adj;               /* -1000..1000 */
  const int *cgroup_procs_fds;     /* open cgroup.procs files to write our pid into */
  size_t n_cgroup_procs_fds;
  int netns_fd;                    /* -1: stay in the current network namespace */
  int mntns_fd;                    /* -1: stay in the current mount namespace */
  const struct cj_rlimit *rlimits;
  size_t n_rlimits;
  const char *apparmor_attr;       /* preformatted "exec <profile>" or "stack <profile>", or NULL */
  size_t apparmor_attr_len;
  int apparmor_now;                /* write it to the current attribute (switch at once), after the credentials */
  int dumpable_after_ids;          /* PR_SET_DUMPABLE 1 after the credentials (no execve will) */
  int change_ids;                  /* drop to uid/gid with supplementary groups = {gid} */
  uid_t uid;
  gid_t gid;
  int parent_death_signal;         /* 0 or a signal number */
  pid_t expected_parent;           /* die at once if the parent is already gone */
  int stdio_fds[4];                /* moved onto 0, 1, 2 and 3 (a result channel); -1: leave */
  const char *cwd;                 /* NULL: stay */
  int close_other_fds;             /* mark every fd >= 3 close-on-exec */
  int no_new_privs;
  int landlock_ruleset_fd;         /* -1: no Landlock */
  const struct sock_fprog *seccomp;/* NULL: no seccomp; installed last */
};

/*
 * Applies the plan to the calling process. Returns 0, or an errno value with *failed_step set.
 * Async-signal-safe: no allocation, no locks, raw syscalls for credentials.
 */
int cj_apply_plan(const struct cj_plan *plan, enum cj_step *failed_step);

/* Name of a step, for error messages ("setresuid", "landlock_restrict_self", ...). */
const char *cj_step_name(enum cj_step step);

#ifdef __cplusplus
}
#endif

#endif
