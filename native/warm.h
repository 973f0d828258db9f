/*
 * Warm runs: the plan of one run (plan.h, the same bytes a cold child applies) crosses a socket
 * to a warm template interpreter (python/warm_template.py), whose forked child applies it to
 * itself through the same confinement core as a cold run (cj_apply_plan), then runs the code
 * without an execve.
 *
 * The daemon prepares everything as for a cold run (prepare_plan) and sends the plan with the
 * fds its list names as SCM_RIGHTS (warm_send.cc); the child decodes it without allocating.
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

/*
 * In the forked child of a template: applies the plan in `wire` (len bytes, a cj_plan) with
 * `fds` (nfds entries, the message's fd list as received, which the plan's indexes name). The child leads a new session,
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

/*
 * In a held child (a run started ahead of its request: HLD1), after cj_warm_start: waits on its
 * stdin (fd 0, the run's own pipe, fresh for this run) for its go record, in raw system calls:
 * 8 bytes ("GO01", then the tail's length, uint32) and the tail, read into `tail` (cap bytes).
 * What follows on the pipe is the run's stdin, left unread. Returns the tail's length, or
 * -errno: -EPIPE when stdin ended first (the daemon discarded the held run), -EPROTO for bytes
 * that are not a go record, -E2BIG for a tail over cap.
 */
CJ_WARM_EXPORT long cj_warm_await_go(void *tail, size_t cap);

/* After a successful cj_warm_apply (and the child's report to its template): closes every fd from
 * `first` up, which execve's close-on-exec would have closed. Returns 0 or an errno value. */
CJ_WARM_EXPORT int cj_warm_seal(int first);

/* Prepares what cj_warm_apply uses (the warm seccomp program), once, before the first fork. */
CJ_WARM_EXPORT int cj_warm_init(void);

/*
 * In the template, after its preloads and before its first fork (the daemon asks for it when the
 * seccomp layer is active): installs on the template itself the warm seccomp policy but setns,
 * which its children need to join the runs' namespaces. A child's seccomp step then adds a filter
 * of one rule (setns) instead of compiling the whole policy again: the two stacked are the whole
 * policy. Returns 0 or an errno value (the children then install the whole policy, as before).
 */
CJ_WARM_EXPORT int cj_warm_filter_template(void);

/* Name of a step, for the template's error reports (as cj_step_name). */
CJ_WARM_EXPORT const char *cj_warm_step_name(int step);

#ifdef __cplusplus
}
#endif

#endif
