// One thread waits on an epoll set of timerfds, one per armed run. A timerfd (not a sorted list
// and a condition variable) because the kernel keeps the clock: arming and disarming are two
// system calls on the JS thread, and the thread sleeps in epoll_wait until a deadline is due.
#include "deadline.h"

#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <mutex>
#include <system_error>
#include <thread>
#include <unordered_map>

namespace codejail {
namespace {

struct Deadline {
  int timer_fd;
  int pidfd;  // our own dup: the caller may close its pidfd whenever it likes
  pid_t pgid;
  bool fired;
};

// Allocated once and never freed: the thread may still wake while the process exits and static
// destructors run, and must not find the table destroyed under it.
struct Table {
  // Guards everything below; held by the thread while it kills, which takes microseconds.
  std::mutex mutex;
  std::unordered_map<uint64_t, Deadline> deadlines;
  // Ids are never reused, so an event for a deadline disarmed meanwhile finds nothing.
  uint64_t next_id = 1;
  int epoll_fd = -1;
};
Table &table = *new Table;

// Mutex held. The process has not been reaped while its pidfd signal succeeds, so its pid, which
// is the group's id (the child called setsid()), still names the run's group when the group
// kill follows at once.
void expire(uint64_t id) {
  auto it = table.deadlines.find(id);
  if (it == table.deadlines.end() || it->second.fired) return;
  Deadline &d = it->second;
  // One-shot: out of the set, or the expired timer would wake the thread again and again.
  epoll_ctl(table.epoll_fd, EPOLL_CTL_DEL, d.timer_fd, nullptr);
  struct pollfd exited = {d.pidfd, POLLIN, 0};
  if (poll(&exited, 1, 0) == 1) return;  // it ended by itself: not a timeout
  if (syscall(SYS_pidfd_send_signal, d.pidfd, SIGKILL, nullptr, 0) != 0) return;
  kill(-d.pgid, SIGKILL);
  d.fired = true;
}

void wait_for_deadlines() {
  epoll_event events[16];
  for (;;) {
    int n = epoll_wait(table.epoll_fd, events, 16, -1);
    if (n <= 0) continue;  // EINTR
    std::lock_guard<std::mutex> lock(table.mutex);
    for (int i = 0; i < n; i++) expire(events[i].data.u64);
  }
}

// Mutex held. The thread is started with every signal blocked, so none of Node's handlers ever
// runs on it; it lives as long as the process.
void start_thread_once() {
  if (table.epoll_fd >= 0) return;
  int fd = epoll_create1(EPOLL_CLOEXEC);
  if (fd < 0) throw std::system_error(errno, std::generic_category(), "epoll_create1");
  sigset_t all, saved;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &saved);
  table.epoll_fd = fd;
  try {
    std::thread(wait_for_deadlines).detach();
  } catch (...) {
    pthread_sigmask(SIG_SETMASK, &saved, nullptr);
    close(fd);
    table.epoll_fd = -1;
    throw;
  }
  pthread_sigmask(SIG_SETMASK, &saved, nullptr);
}

}  // namespace

uint64_t arm_deadline(int pidfd, pid_t pgid, uint64_t ms) {
  if (pgid <= 1) throw std::system_error(EINVAL, std::generic_category(), "arm_deadline: bad process group");
  std::lock_guard<std::mutex> lock(table.mutex);
  start_thread_once();
  int timer_fd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC);
  if (timer_fd < 0) throw std::system_error(errno, std::generic_category(), "timerfd_create");
  int own_pidfd = fcntl(pidfd, F_DUPFD_CLOEXEC, 3);
  int err = own_pidfd < 0 ? errno : 0;
  uint64_t id = table.next_id++;
  if (!err) {
    struct itimerspec when {};
    when.it_value.tv_sec = ms / 1000;
    when.it_value.tv_nsec = (ms % 1000) * 1000000;
    if (ms == 0) when.it_value.tv_nsec = 1;  // all zeros would disarm the timer
    epoll_event event{};
    event.events = EPOLLIN;
    event.data.u64 = id;
    if (timerfd_settime(timer_fd, 0, &when, nullptr) != 0 || epoll_ctl(table.epoll_fd, EPOLL_CTL_ADD, timer_fd, &event) != 0)
      err = errno;
  }
  if (err) {
    close(timer_fd);
    if (own_pidfd >= 0) close(own_pidfd);
    throw std::system_error(err, std::generic_category(), "arm_deadline");
  }
  table.deadlines.emplace(id, Deadline{timer_fd, own_pidfd, pgid, false});
  return id;
}

bool disarm_deadline(uint64_t id) {
  std::lock_guard<std::mutex> lock(table.mutex);
  auto it = table.deadlines.find(id);
  if (it == table.deadlines.end()) return false;
  Deadline d = it->second;
  table.deadlines.erase(it);
  epoll_ctl(table.epoll_fd, EPOLL_CTL_DEL, d.timer_fd, nullptr);  // ENOENT once expired: fine
  close(d.timer_fd);
  close(d.pidfd);
  return d.fired;
}

size_t armed_deadlines() {
  std::lock_guard<std::mutex> lock(table.mutex);
  return table.deadlines.size();
}

}  // namespace codejail
