// Process creation for the addon: clones a child that applies a prepared plan and execs, and
// reports a failed step through a close-on-exec error pipe; reaping and killing a slot's uid.
#ifndef CODEJAIL_SPAWN_H
#define CODEJAIL_SPAWN_H

#include <vector>

#include <sys/resource.h>

#include "prepare.h"

namespace codejail {

struct SpawnedChild {
  pid_t pid;
  int pidfd;
  int stdin_fd;   // parent's write end
  int stdout_fd;  // parent's read end
  int stderr_fd;  // parent's read end
  int result_fd;  // parent's read end of fd 3, or -1
  // The child exec'd from the daemon's memory (CLONE_VM), and the kernel's exec_mmap() folds the
  // OLD mm's peak RSS, the daemon's, into the child's maxrss. This is an upper bound of that
  // figure (the daemon's peak just after the exec, plus the counters' slack): a wait4 ru_maxrss
  // at or below it may be the daemon's, not the run's; only one above it is the run's own.
  long inherited_rss_kb;
};

// Prepares the request's plan (prepare_plan, cold), clones a child that applies it and execs
// request.file. Throws SpawnError.
SpawnedChild spawn_confined(const PlanRequest &request);

struct ReapedStatus {
  int status;
  struct rusage usage;
};

// Exit bookkeeping shared by the kill rounds (thread pool) and the addon's exit watchers (JS
// thread), under one lock.
void watch_pid(pid_t pid);
bool is_watched(pid_t pid);
void stash_reaped(pid_t pid, const ReapedStatus &status);
// 1: reaped (status in *out), 0: still running, <0: -errno.
int reap_watched(pid_t pid, ReapedStatus *out);
// Orphans of runs are reparented to the daemon instead of init, which may never reap them.
bool become_subreaper();

// Reaps every zombie child of the daemon whose uid is in [first_uid, first_uid + count): the
// runs' orphans, reparented here because the daemon is a subreaper. Zombies of other uids (libuv's
// own child_process children) are left to whoever waits for them. A watched pid's status is
// stashed for its watcher. Returns how many were reaped. Any thread.
int reap_run_zombies(uid_t first_uid, uid_t count);

// One round of killing `uid`, which never waits: reaps the run zombies of [reap_first,
// reap_first + reap_count), SIGKILLs every process of `uid` from a short-lived helper running as
// that uid (kill(-1) reaches exactly the processes a user may signal), and probes whether any is
// left; if so, reaps again what the kill just turned into zombies. Returns 0 when none is left,
// EAGAIN when some remain (dying, or zombies whose parent has not reaped them yet), or another
// errno value. The caller retries later; the daemon does so on timers, off the event loop's back.
int kill_uid_round(uid_t uid, uid_t reap_first, uid_t reap_count);

// kill_uid_round until none is left, for at most about a second (EBUSY after). Blocks: for
// tools and tests, never the daemon's event loop.
int kill_uid(uid_t uid);

}  // namespace codejail

#endif
