/*
 * Warm runs: the plan of one run, flattened so that it can cross a socket to a warm template
 * interpreter (python/warm_template.py), whose forked child applies it to itself through the
 * same confinement core as a cold run (cj_apply_plan), then runs the code without an execve.
 *
 * The daemon prepares everything, as for a cold run (the Landlock ruleset, the pipes, the
 * AppArmor attribute, the rlimits), and sends this struct with the fds it refers to as
 * SCM_RIGHTS. Fds are named by their index in that message's fd list, since their numbers
 * change on the way. Fixed-size on purpose: the child decodes it without allocating.
 *
 * Plain C ABI: the template reaches cj_warm_apply through ctypes (libcodejail_warm.so).
 */
#ifndef CODEJAIL_WARM_H
#define CODEJAIL_WARM_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* The library is built with hidden visibility: these are all it exports. */
#define CJ_WARM_EXPORT __attribute__((visibility("default")))

#define CJ_WARM_MAGIC 0x314d5743u /* "CWM1" */
#define CJ_WARM_MAX_RLIMITS 16
#define CJ_WARM_MAX_ATTR 256
#define CJ_WARM_MAX_CWD 4096

/* What each passed fd is for; cj_warm_plan.fds[role] is its index in the message's fd list. */
enum cj_warm_fd_role {
  CJ_WARM_FD_STDIN,    /* read end, becomes fd 0 */
  CJ_WARM_FD_STDOUT,   /* write end, becomes fd 1 */
  CJ_WARM_FD_STDERR,   /* write end, becomes fd 2 */
  CJ_WARM_FD_RESULT,   /* write end, becomes fd 3 (safeExec's globals), or none */
  CJ_WARM_FD_LANDLOCK, /* the run's Landlock ruleset */
  CJ_WARM_FD_CGROUP,   /* cgroup.procs of the run's leaf */
  CJ_WARM_FD_NETNS,    /* the slot's network namespace */
  CJ_WARM_FD_MNTNS,    /* the runs' mount namespace */
  CJ_WARM_FD_ROLES
};

struct cj_warm_rlimit {
  int32_t resource;
  int32_t reserved;
  uint64_t soft; /* UINT64_MAX: unlimited */
  uint64_t hard;
};

struct cj_warm_plan {
  uint32_t magic;
  uint32_t size;                  /* sizeof(struct cj_warm_plan): both sides built from one header */
  int32_t fds[CJ_WARM_FD_ROLES];  /* -1: none */
  int32_t change_ids;
  uint32_t uid;
  uint32_t gid;
  int32_t seccomp;                /* 1: the warm policy (the cold one, and no execve at all) */
  int32_t no_new_privs;
  int32_t set_oom_score_adj;      /* 1: write oom_score_adj, as cj_plan does */
  int32_t oom_score_adj;
  uint32_t n_rlimits;
  struct cj_warm_rlimit rlimits[CJ_WARM_MAX_RLIMITS];
  uint32_t apparmor_len;          /* "changeprofile <profile>" (switch now), or 0 */
  char apparmor[CJ_WARM_MAX_ATTR];
  uint32_t cwd_len;
  char cwd[CJ_WARM_MAX_CWD];      /* NUL-terminated */
};

/*
 * In the forked child of a template: applies the plan in `wire` (len bytes, a cj_warm_plan)
 * with `fds` (nfds entries, the message's fd list as received). The child leads a new session,
 * dies with its parent (the template) and moves the run's pipes onto 0..3; the fds it inherited
 * stay open until cj_warm_seal, so that it can still report to its template. Returns 0, or an
 * errno value with *failed_step set to a cj_step (EINVAL with CJ_STEP_NONE: a malformed plan).
 * `parent` is the template's pid: a child whose template is already gone stops at once.
 */
CJ_WARM_EXPORT int cj_warm_apply(const void *wire, size_t len, const int *fds, size_t nfds, int parent, int *failed_step);

/*
 * The whole of a child's start, in raw system calls: opens a pidfd of itself, applies the plan
 * (cj_warm_apply), reports to its template's `channel` ("OKAY" with token and pid, the pidfd
 * attached; or "FAIL" with token, step and errno: 16 bytes each, native/warm_apply.cc), then
 * closes every fd from 3 (4 with a result channel) up. `fds` is nfds packed ints. Returns 0, or
 * the errno value of the failure (already reported when the channel could be written).
 */
CJ_WARM_EXPORT int cj_warm_start(const void *wire, size_t len, const void *fds, size_t nfds, int parent, int channel,
                                 uint32_t token, int result_channel);

/* After a successful cj_warm_apply (and the child's report to its template): closes every fd from
 * `first` up, which execve's close-on-exec would have closed. Returns 0 or an errno value. */
CJ_WARM_EXPORT int cj_warm_seal(int first);

/* Prepares what cj_warm_apply uses (the warm seccomp program), once, before the first fork. */
CJ_WARM_EXPORT int cj_warm_init(void);

/* Name of a step, for the template's error reports (as cj_step_name). */
CJ_WARM_EXPORT const char *cj_warm_step_name(int step);

#ifdef __cplusplus
}
#endif

#endif
