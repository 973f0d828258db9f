// Creating the confined child. clone(CLONE_VM | CLONE_VFORK) instead of fork(): the daemon is a
// large multithreaded Node process, and copying its page tables per run would cost more than
// the whole confinement; like glibc's posix_spawn, the child borrows the parent's memory on its
// own stack while the calling thread waits for execve. CLONE_PIDFD hands back a pidfd so the
// exit can be watched and signals sent without pid-reuse races.
#include "spawn.h"
#include "fd.h"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <system_error>
#include <unordered_map>
#include <unordered_set>

#ifndef CLONE_PIDFD
#define CLONE_PIDFD 0x00001000
#endif

namespace codejail {
namespace {

// Watched pids and the statuses reaped on their behalf. Kill rounds run on the thread pool and
// exit watchers on the JS thread: this lock makes "is it watched, reap it, stash it", "take the
// stash or reap it" and "clone a run, watch it" one step each, so a pid is never reaped twice or
// its status lost (a run that exits at once would otherwise be a slot-uid zombie a concurrent
// round reaps before anyone watches it).
std::mutex reap_mutex;
std::unordered_set<pid_t> watched;
std::unordered_map<pid_t, ReapedStatus> stashed;
// One kill round at a time: a round's killer helper and its probe run as the slot's uid, and a
// concurrent round reaping that uid's zombies would take them from under their waitpid (ECHILD).
std::mutex round_mutex;

constexpr size_t kChildStackBytes = 256 * 1024;
// kill_uid gives up after this many rounds (about a second) and reports EBUSY: something of the
// uid is still on the task list (a zombie nobody reaps, or a task stuck in the kernel).
constexpr int kKillAttempts = 2500;

// One child stack, reused: CLONE_VFORK suspends the calling thread until the child has exec'd
// or exited, and the mutex keeps a second thread from cloning onto the same stack meanwhile.
std::mutex clone_mutex;
void *child_stack_top() {
  static void *top = [] {
    void *base = mmap(nullptr, kChildStackBytes, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK | MAP_GROWSDOWN, -1, 0);
    if (base == MAP_FAILED) throw std::system_error(errno, std::generic_category(), "mmap child stack");
    return static_cast<char *>(base) + kChildStackBytes;
  }();
  return top;
}

// Runs cloned: every signal is blocked in the parent around the clone so that none of Node's
// handlers can run on this borrowed memory; the plan resets dispositions, then unblocks.
class SignalsBlocked {
 public:
  SignalsBlocked() {
    sigset_t all;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &saved_);
  }
  ~SignalsBlocked() { pthread_sigmask(SIG_SETMASK, &saved_, nullptr); }

 private:
  sigset_t saved_;
};

struct ChildArgs {
  const cj_plan *plan;
  const int *fds;
  size_t nfds;
  pid_t parent;
  const char *file;
  char *const *argv;
  char *const *envp;
  int error_fd;
};

int child_main(void *raw) {
  auto *args = static_cast<ChildArgs *>(raw);
  cj_step step = CJ_STEP_NONE;
  int err = cj_apply_plan(args->plan, args->fds, args->nfds, args->parent, &step);
  if (!err) {
    long r = raw_syscall(SYS_execve, (long)args->file, (long)args->argv, (long)args->envp);
    step = CJ_STEP_EXECVE;
    err = (int)-r;
  }
  int32_t report[2] = {step, err};
  raw_syscall(SYS_write, args->error_fd, (long)report, sizeof report);
  raw_syscall(SYS_exit_group, 127);
  return 127;
}

std::vector<char *> c_strings(const std::vector<std::string> &strings) {
  std::vector<char *> out;
  out.reserve(strings.size() + 1);
  for (auto &s : strings) out.push_back(const_cast<char *>(s.c_str()));
  out.push_back(nullptr);
  return out;
}

// The peak resident set of the daemon's memory: VmHWM, the mm's high-water mark, which is what
// a child exec'd from that memory inherits. When unreadable, getrusage's figure: larger (it also
// holds what the daemon inherited from its own parent), still a bound.
long memory_peak_kb() {
  Fd fd(open("/proc/self/status", O_RDONLY | O_CLOEXEC));
  char buf[4096];
  ssize_t n = fd.fd < 0 ? -1 : read(fd.fd, buf, sizeof buf - 1);
  const char *line = nullptr;
  if (n > 0) {
    buf[n] = '\0';
    line = strstr(buf, "\nVmHWM:");
  }
  if (line) return strtol(line + 7, nullptr, 10);
  struct rusage self {};
  getrusage(RUSAGE_SELF, &self);
  return self.ru_maxrss;
}

// RSS counters are read approximately (per-CPU counters, batch max(32, 2 x CPUs) pages each,
// since Linux 6.2; before, per-thread caches of up to 64 pages): what exec_mmap() folded in and
// what VmHWM says a moment later may differ by this much, which the bound must cover.
long rss_counter_slack_kb() {
  static const long slack = [] {
    long cpus = sysconf(_SC_NPROCESSORS_CONF);
    if (cpus < 1) cpus = 1;
    long per_cpu = cpus * 2 > 32 ? cpus * 2 : 32;
    long threads = 64;  // a generous count of the daemon's threads
    return (cpus * per_cpu + threads * 64) * (sysconf(_SC_PAGESIZE) / 1024);
  }();
  return slack;
}

}  // namespace

SpawnedChild spawn_confined(const PlanRequest &req) {
  if (req.file.empty() || req.file[0] != '/') throw SpawnError(CJ_STEP_EXECVE, EINVAL, "file must be an absolute path");

  // Everything below is prepared before the clone: the child only makes system calls.
  PreparedPlan prepared = prepare_plan(req, PlanUse::cold);
  std::vector<char *> argv = c_strings(req.argv);
  std::vector<char *> envp = c_strings(req.env);
  Fd error_read, error_write;
  make_pipe(error_read, error_write);

  ChildArgs args{&prepared.plan, prepared.fds.data(), prepared.fds.size(), getpid(), req.file.c_str(), argv.data(), envp.data(),
                 error_write.fd};
  int pidfd = -1;
  pid_t pid;
  {
    std::lock_guard<std::mutex> reap(reap_mutex);
    std::lock_guard<std::mutex> lock(clone_mutex);
    void *stack = child_stack_top();
    SignalsBlocked blocked;
    pid = clone(child_main, stack, CLONE_VM | CLONE_VFORK | CLONE_PIDFD | SIGCHLD, &args, &pidfd);
    if (pid > 0) watched.insert(pid);
  }
  if (pid < 0) throw SpawnError(CJ_STEP_NONE, errno, std::string("clone: ") + strerror(errno));
  Fd pidfd_guard(pidfd);
  // After the exec (CLONE_VFORK), so at least what the kernel folded into the child's maxrss.
  long inherited_rss_kb = memory_peak_kb() + rss_counter_slack_kb();

  // The child has exec'd or exited by now; once our copy of the write end is closed, the read
  // sees either a report or end-of-file (execve closed the child's copy).
  error_write.reset();
  prepared.stdin_read.reset();
  prepared.stdout_write.reset();
  prepared.stderr_write.reset();
  prepared.result_write.reset();
  prepared.landlock_ruleset.reset();
  int32_t report[2];
  ssize_t n;
  do n = read(error_read.fd, report, sizeof report);
  while (n < 0 && errno == EINTR);
  if (n == (ssize_t)sizeof report) {
    {
      // Reaped here, not by a watcher: no longer watched (its pid may be reused).
      std::lock_guard<std::mutex> reap(reap_mutex);
      int status;
      while (waitpid(pid, &status, __WALL) < 0 && errno == EINTR) {
      }
      watched.erase(pid);
      stashed.erase(pid);
    }
    auto step = static_cast<cj_step>(report[0]);
    throw SpawnError(step, report[1], std::string("sandbox set-up failed at ") + cj_step_name(step) + ": " + strerror(report[1]));
  }
  RunEnds &ends = prepared.ends;
  return SpawnedChild{pid, pidfd_guard.release(), ends.stdin_write.release(), ends.stdout_read.release(), ends.stderr_read.release(),
                      ends.result_read.release(), inherited_rss_kb};
}

namespace {

// The second half of the stack area is the killer's probe child's stack (the killer itself
// runs on the first half's top; both only ever run while the calling thread is suspended).
constexpr size_t kProbeStackOffset = kChildStackBytes / 2;

int probe_main(void *) {
  raw_syscall(SYS_exit_group, 0);
  return 0;
}

// Whether the calling process is the only one of its uid, zombies included (they still count
// against RLIMIT_NPROC): with RLIMIT_NPROC at 2 a fork succeeds only then. The probe child exits
// at once, on the second half of the stack area.
bool alone_of_uid() {
  char *probe_stack = static_cast<char *>(child_stack_top()) - kProbeStackOffset;
  pid_t probe = clone(probe_main, probe_stack, CLONE_VM | CLONE_VFORK | SIGCHLD, nullptr);
  if (probe < 0) return false;
  raw_syscall(SYS_wait4, probe, 0, __WALL, 0);
  return true;
}

// Runs as a clone of the daemon. Dropping every uid to the target also drops every capability,
// so kill(-1) reaches the target's processes and nothing else; the kernel walks the task list
// under a lock fork must also take, and a fork whose parent has a fatal signal pending fails,
// so no child being forked is missed. Before and after the kill it checks whether anything of
// the uid is left (alone_of_uid). When nothing is, even before the kill (the usual end of a
// run), the kill is skipped: it would walk every task of the host to signal none, and no
// process of the uid is left to make a new one.
// Exit 0: none left; 3: some remain (dying, or zombies waiting for the daemon to reap).
int killer_main(void *raw) {
  uid_t uid = *static_cast<uid_t *>(raw);
  if (raw_syscall(SYS_setresuid, uid, uid, uid) < 0) raw_syscall(SYS_exit_group, 2);
  struct rlimit two = {2, 2};
  if (raw_syscall(SYS_prlimit64, 0, RLIMIT_NPROC, (long)&two, 0) < 0) raw_syscall(SYS_exit_group, 2);
  if (alone_of_uid()) raw_syscall(SYS_exit_group, 0);
  raw_syscall(SYS_kill, -1, SIGKILL);
  raw_syscall(SYS_exit_group, alone_of_uid() ? 0 : 3);
  return 0;
}

// Runs the killer helper for `uid` once: 0 when nothing of the uid is left, EAGAIN when
// something is, or another errno value.
int kill_and_probe(uid_t uid) {
  pid_t pid;
  {
    std::lock_guard<std::mutex> lock(clone_mutex);
    void *stack = child_stack_top();
    SignalsBlocked blocked;
    pid = clone(killer_main, stack, CLONE_VM | CLONE_VFORK | SIGCHLD, &uid);
  }
  if (pid < 0) return errno;
  int status;
  while (waitpid(pid, &status, __WALL) < 0) {
    if (errno != EINTR) return errno;
  }
  if (!WIFEXITED(status)) return ECHILD;
  if (WEXITSTATUS(status) == 0) return 0;
  return WEXITSTATUS(status) == 3 ? EAGAIN : EPERM;
}

std::string read_small_file(const std::string &path, bool *opened = nullptr) {
  Fd fd(open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (opened) *opened = fd.fd >= 0;
  std::string text;
  if (fd.fd < 0) return text;
  char buf[4096];
  ssize_t n;
  while ((n = read(fd.fd, buf, sizeof buf)) > 0) text.append(buf, n);
  return text;
}

bool is_pid_name(const char *name) {
  if (!*name) return false;
  for (; *name; name++)
    if (*name < '0' || *name > '9') return false;
  return true;
}

// Without CONFIG_PROC_CHILDREN: every process whose parent is us, from /proc/<pid>/stat
// ("pid (comm) state ppid ...", where comm may hold anything, hence the last ')').
std::vector<pid_t> children_by_scan() {
  std::vector<pid_t> pids;
  DIR *proc = opendir("/proc");
  if (!proc) return pids;
  pid_t self = getpid();
  while (struct dirent *entry = readdir(proc)) {
    if (!is_pid_name(entry->d_name)) continue;
    std::string stat = read_small_file(std::string("/proc/") + entry->d_name + "/stat");
    size_t paren = stat.rfind(')');
    if (paren == std::string::npos || paren + 4 > stat.size()) continue;
    if (strtol(stat.c_str() + paren + 4, nullptr, 10) == self) pids.push_back((pid_t)atoi(entry->d_name));
  }
  closedir(proc);
  return pids;
}

// The daemon's children, from every thread's /proc children list: an orphan is reparented to
// some live thread of the subreaper, not always the main one. A list read while it changes may
// miss a pid; the next round sees it.
std::vector<pid_t> own_children() {
  std::vector<pid_t> pids;
  DIR *tasks = opendir("/proc/self/task");
  if (!tasks) return children_by_scan();
  bool listed = false;
  while (struct dirent *task = readdir(tasks)) {
    if (!is_pid_name(task->d_name)) continue;
    bool opened;
    std::string text = read_small_file(std::string("/proc/self/task/") + task->d_name + "/children", &opened);
    listed = listed || opened;
    const char *p = text.c_str();
    while (*p) {
      char *end;
      long pid = strtol(p, &end, 10);
      if (end == p) break;
      pids.push_back((pid_t)pid);
      p = end;
      while (*p == ' ' || *p == '\n') p++;
    }
  }
  closedir(tasks);
  return listed ? pids : children_by_scan();
}

}  // namespace

namespace {

// Reaps `pid`, a zombie child that waitid(WNOWAIT) showed exited as `uid`, when that is a slot's
// uid (a run's process; other zombies are their watchers' to reap). Callers hold reap_mutex.
bool reap_if_run_zombie(pid_t pid, uid_t uid, uid_t first_uid, uid_t count) {
  if (uid < first_uid || uid - first_uid >= count) return false;
  ReapedStatus reaped{};
  if (wait4(pid, &reaped.status, WNOHANG | __WALL, &reaped.usage) != pid) return false;
  if (is_watched(pid)) stash_reaped(pid, reaped);
  return true;
}

}  // namespace

int reap_run_zombies(uid_t first_uid, uid_t count) {
  int reaped_count = 0;
  std::lock_guard<std::mutex> lock(reap_mutex);
  // First without reading /proc: waitid(P_ALL, WNOWAIT) names a zombie child of any of our
  // threads, or none. None is the usual case after a run (a warm run's processes are its
  // template's children; a cold run's main process its watcher reaps): one system call instead
  // of a children list per thread. Runs' zombies are reaped one by one; a zombie that is not a
  // run's would be named again and again, so then every child is looked at, as below.
  for (;;) {
    siginfo_t info{};
    if (waitid(P_ALL, 0, &info, WEXITED | WNOHANG | WNOWAIT | __WALL) != 0 || info.si_pid == 0) return reaped_count;
    if (!reap_if_run_zombie(info.si_pid, info.si_uid, first_uid, count)) break;
    reaped_count++;
  }
  for (pid_t pid : own_children()) {
    // WNOWAIT: look first; only a zombie of a run's uid is ours to reap.
    siginfo_t info{};
    if (waitid(P_PID, pid, &info, WEXITED | WNOHANG | WNOWAIT | __WALL) != 0 || info.si_pid != pid) continue;
    if (reap_if_run_zombie(pid, info.si_uid, first_uid, count)) reaped_count++;
  }
  return reaped_count;
}

int kill_uid_round(uid_t uid, uid_t reap_first, uid_t reap_count) {
  if (uid == 0) return EINVAL;
  std::lock_guard<std::mutex> round(round_mutex);
  reap_run_zombies(reap_first, reap_count);
  int err = kill_and_probe(uid);
  // What the kill just ended are zombies now: those of our children go at once, so that the
  // next round (or this one's caller) can find the uid clean.
  if (err == EAGAIN && reap_run_zombies(reap_first, reap_count) > 0) err = kill_and_probe(uid);
  return err;
}

int kill_uid(uid_t uid) {
  if (uid == 0) return EINVAL;
  for (int attempt = 0; attempt < kKillAttempts; attempt++) {
    int err = kill_uid_round(uid, uid, 1);
    if (err != EAGAIN) return err;
    struct timespec pause = {0, 200 * 1000};
    nanosleep(&pause, nullptr);
  }
  return EBUSY;
}

void watch_pid(pid_t pid) {
  std::lock_guard<std::mutex> lock(reap_mutex);
  watched.insert(pid);
}
// Callers hold reap_mutex (reap_run_zombies).
bool is_watched(pid_t pid) { return watched.count(pid) != 0; }
void stash_reaped(pid_t pid, const ReapedStatus &status) { stashed[pid] = status; }

int reap_watched(pid_t pid, ReapedStatus *out) {
  std::lock_guard<std::mutex> lock(reap_mutex);
  auto it = stashed.find(pid);
  if (it != stashed.end()) {
    *out = it->second;
    stashed.erase(it);
    watched.erase(pid);
    return 1;
  }
  pid_t r = wait4(pid, &out->status, WNOHANG | __WALL, &out->usage);
  if (r == 0) return 0;
  watched.erase(pid);
  return r < 0 ? -errno : 1;
}

bool become_subreaper() { return prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0; }

}  // namespace codejail
