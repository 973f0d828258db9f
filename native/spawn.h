// Process creation for the addon: turns a request into a cj_plan, clones a child that applies
// it and execs, and reports a failed step through a close-on-exec error pipe.
#ifndef CODEJAIL_SPAWN_H
#define CODEJAIL_SPAWN_H

#include <stdexcept>
#include <string>
#include <vector>

#include <sys/resource.h>

#include "confine.h"
#include "layers.h"

namespace codejail {

struct SpawnRequest {
  std::string file;
  std::vector<std::string> argv;
  std::vector<std::string> env;
  std::string cwd;
  bool change_ids = false;
  uid_t uid = 0;
  gid_t gid = 0;
  std::vector<cj_rlimit> rlimits;
  int netns_fd = -1;
  int mntns_fd = -1;
  std::vector<int> cgroup_procs_fds;
  bool landlock = false;
  LandlockPolicy landlock_policy;
  bool seccomp = false;
  std::string apparmor_profile;
  bool result_channel = false;  // a fourth pipe, the child's fd 3, read by the parent
  int channel_fd = -1;          // or this fd of ours as the child's fd 3 (a warm template's socket)
  bool no_new_privs = true;
  bool set_oom_score_adj = false;
  int oom_score_adj = 0;        // -1000..1000, written by the child while root
  bool parent_death_signal = true;
};

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

// A set-up step failed: in the daemon while preparing (step CJ_STEP_NONE), or in the child.
struct SpawnError : std::runtime_error {
  SpawnError(cj_step step, int err, const std::string &what) : std::runtime_error(what), step(step), err(err) {}
  cj_step step;
  int err;
};

SpawnedChild spawn_confined(const SpawnRequest &request);

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
