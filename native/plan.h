/*
 * The one plan of a run: what its child applies to itself (cj_apply_plan, confine.cc). Flat and
 * fixed-size, so that a cold child (cloned, sharing the daemon's memory, then execve) and a warm
 * one (forked from a template that received these very bytes on its channel) both read it
 * without allocating. Fds are named by their index in the plan's fd list: the daemon's own fds
 * for a cold child, the SCM_RIGHTS list as received for a warm one, whose numbers differ.
 *
 * CJ_PLAN_FIELDS is the one list of its fields. The struct, its defaults (cj_plan_init), the
 * child's check of it (cj_plan_check), the fd list's size and the addon's reading of a
 * NativePlan (addon_plan.cc, src/native.ts) are all made from it: a new field is one row here
 * (and, for a new step, a row of CJ_STEPS below), and its use in cj_apply_plan (confine.cc).
 *
 * Plain C ABI: the warm library (libcodejail_warm.so) is built from the same header.
 */
#ifndef CODEJAIL_PLAN_H
#define CODEJAIL_PLAN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CJ_PLAN_MAGIC 0x324e4c50u /* "PLN2" */
/* An INT row's value when the NativePlan leaves it out: its step does nothing. */
#define CJ_PLAN_UNSET INT64_MIN
/* Every uid and gid but (uid_t)-1, which the kernel's set*id calls read as "leave unchanged". */
#define CJ_PLAN_MAX_ID 0xfffffffeLL

/*
 * The rows, in no order that matters (cj_apply_plan's STEP chain is the order). Each kind takes
 * the field's name and the NativePlan key it is read from; key NULL: prepare_plan derives it
 * from the rest of the request (prepare.cc), no caller sets it.
 *   FLAG(name, key, fallback)   int32_t 0 or 1; a JS value taken as a boolean, `fallback` when absent
 *   INT(name, key, min, max)    int64_t in [min, max], or CJ_PLAN_UNSET when absent
 *   FD(name, key)               int32_t index into the fd list, or -1; JS: an fd of the caller's
 *   FDS(name, key, cap)         up to cap such indexes: uint32_t n_<name>, int32_t name[cap]
 *   RLIMITS(name, key, cap)     up to cap limits: uint32_t n_<name>, cj_rlimit name[cap];
 *                               JS: { cpu: [soft, hard], ... } (names in addon_plan.cc)
 *   TEXT(name, key, cap)        a string without NUL, NUL-terminated: uint32_t <name>_len, char name[cap];
 *                               required when it has a key
 */
#define CJ_PLAN_FIELDS(FLAG, INT, FD, FDS, RLIMITS, TEXT)                                              \
  FLAG(new_session, NULL, 1)                 /* setsid(): the run leads its own session and group */ \
  FLAG(reset_signals, NULL, 0)               /* SIG_DFL for every signal, empty mask */              \
  INT(oom_score_adj, "oomScoreAdj", -1000, 1000) /* written to /proc/self/oom_score_adj while root */ \
  FDS(cgroup_procs, "cgroupProcsFds", 8)     /* open cgroup.procs files to write our pid into */     \
  FD(netns, "netnsFd")                       /* a network namespace to join */                       \
  FD(mntns, "mntnsFd")                       /* a mount namespace to join (resets root and cwd) */    \
  RLIMITS(rlimits, "rlimits", 16)                                                                      \
  TEXT(apparmor_attr, NULL, 256)             /* "exec <profile>", "changeprofile <profile>", "stack <profile>" */ \
  FLAG(apparmor_now, NULL, 0)                /* to the current attribute (switch at once), after the credentials */ \
  INT(uid, "uid", 0, CJ_PLAN_MAX_ID)         /* with gid: setgroups({gid}), setresgid, setresuid */  \
  INT(gid, "gid", 0, CJ_PLAN_MAX_ID)                                                                   \
  FLAG(dumpable_after_ids, NULL, 0)          /* PR_SET_DUMPABLE 1 after the credentials (no execve will) */ \
  FLAG(parent_death_signal, "parentDeathSignal", 1) /* SIGKILL when the parent dies */               \
  FD(fd0, NULL)                              /* the run's stdin, moved onto fd 0 */                                   \
  FD(fd1, NULL)                              /* its stdout, onto fd 1 */                                         \
  FD(fd2, NULL)                              /* its stderr, onto fd 2 */                                         \
  FD(fd3, NULL)                              /* onto fd 3: a result channel, or a template's channel */ \
  TEXT(cwd, "cwd", 4096)                     /* chdir, unless empty */                               \
  FLAG(close_other_fds, NULL, 0)             /* mark every fd above the stdio close-on-exec */       \
  FLAG(no_new_privs, "noNewPrivs", 1)        /* forced on by Landlock and seccomp */                 \
  FD(landlock_ruleset, NULL)                 /* landlock_restrict_self */                            \
  FLAG(seccomp, "seccomp", 0)                /* the built-in policy, installed last */               \
  FLAG(seccomp_no_execve, NULL, 0)           /* its variant that also refuses execve (a warm run) */

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
  int32_t resource; /* RLIMIT_* */
  int32_t reserved;
  uint64_t soft;    /* UINT64_MAX: unlimited */
  uint64_t hard;
};

#define CJ_PLAN_STRUCT_FLAG(name, key, fallback) int32_t name;
#define CJ_PLAN_STRUCT_INT(name, key, min, max) int64_t name;
#define CJ_PLAN_STRUCT_FD(name, key) int32_t name;
#define CJ_PLAN_STRUCT_FDS(name, key, cap) uint32_t n_##name; int32_t name[cap];
#define CJ_PLAN_STRUCT_RLIMITS(name, key, cap) uint32_t n_##name; struct cj_rlimit name[cap];
#define CJ_PLAN_STRUCT_TEXT(name, key, cap) uint32_t name##_len; char name[cap];
struct cj_plan {
  uint32_t magic;
  uint32_t size; /* sizeof(struct cj_plan): both sides are built from this header */
  CJ_PLAN_FIELDS(CJ_PLAN_STRUCT_FLAG, CJ_PLAN_STRUCT_INT, CJ_PLAN_STRUCT_FD, CJ_PLAN_STRUCT_FDS, CJ_PLAN_STRUCT_RLIMITS,
                 CJ_PLAN_STRUCT_TEXT)
};

/* The most fds a plan's list can hold: one per FD row, cap per FDS row. */
#define CJ_PLAN_NOFDS_1(...)
#define CJ_PLAN_ONE_FD(name, key) +1
#define CJ_PLAN_CAP_FDS(name, key, cap) +(cap)
enum {
  CJ_PLAN_MAX_FDS = 0 CJ_PLAN_FIELDS(CJ_PLAN_NOFDS_1, CJ_PLAN_NOFDS_1, CJ_PLAN_ONE_FD, CJ_PLAN_CAP_FDS, CJ_PLAN_NOFDS_1, CJ_PLAN_NOFDS_1)
};

/* Every field at its default (FLAG: fallback, INT: unset, FD: none, lists and texts empty). */
void cj_plan_init(struct cj_plan *plan);

/*
 * Whether the bytes are a plan a child may apply with an fd list of nfds entries: every row in
 * its range, every index in the list, every text terminated; uid and gid together; the three
 * stdio pipes present (without them a run would write to its parent's). 0 or EINVAL.
 * Async-signal-safe: it only reads.
 */
int cj_plan_check(const struct cj_plan *plan, size_t nfds);

#ifdef __cplusplus
}
#endif

#endif
