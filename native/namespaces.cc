// Network isolation by joining namespaces the daemon made once at start. A fresh
// namespace per run would cost ~0.3 ms and serializes system-wide on the net namespace lock;
// setns into a pre-made, empty one costs microseconds and gives the same view: no interface
// but a loopback that is down, no route, no host sockets.
//
// The mount namespace exists for what Landlock (up to ABI 7) does not mediate: connect() to a
// pathname Unix socket. Host services listen under /run, /tmp and friends (D-Bus, journald's
// /dev/log, nscd, X11); in the sandbox's namespace those directories are empty tmpfs that nobody
// can add to: a slot uid is refused with EACCES (PermissionError, as under the original CodeJail's
// AppArmor), root in a sandbox with ENOSPC.
#include <fcntl.h>
#include <sched.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>
#include <thread>

#include "layers.h"

namespace codejail {

int apply_namespace(int ns_fd, int nstype) {
  long r = raw_syscall(SYS_setns, ns_fd, nstype);
  return r < 0 ? (int)-r : 0;
}

int create_namespace(int nstype) {
  const char *path = nstype == CLONE_NEWNET ? "/proc/thread-self/ns/net" : nullptr;
  if (!path) throw std::system_error(EINVAL, std::generic_category(), "create_namespace: unsupported type");
  int fd = -1, err = 0;
  // unshare() of a network namespace applies to the calling thread only; doing it on a
  // throwaway thread leaves the daemon's own threads where they were.
  std::thread worker([&] {
    if (unshare(nstype) != 0) { err = errno; return; }
    fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) err = errno;
  });
  worker.join();
  if (fd < 0) throw std::system_error(err, std::generic_category(), "create_namespace");
  return fd;
}

int create_mount_namespace(const std::vector<std::string> &hide) {
  int fd = -1, err = 0;
  std::string failed;
  // unshare(CLONE_NEWNS) also unshares the thread's filesystem context, so on a throwaway thread
  // it leaves the daemon's own threads in the host's namespace.
  std::thread worker([&] {
    if (unshare(CLONE_NEWNS) != 0) { err = errno; failed = "unshare(CLONE_NEWNS)"; return; }
    // Slave: the tmpfs mounts below must not propagate back to the daemon's namespace, while the
    // run disks the daemon mounts beneath its shared runBase (rundisk.cc) propagate in here.
    if (mount(nullptr, "/", nullptr, MS_REC | MS_SLAVE, nullptr) != 0) { err = errno; failed = "make / a slave"; return; }
    for (const std::string &dir : hide) {
      struct stat st;
      // A symlink (/var/run -> /run) is covered through its target; what does not exist needs nothing.
      if (lstat(dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) continue;
      // Read-write, so that creating an entry is refused by its permission check (EACCES: mode
      // 0555, owned by root), not by the mount (EROFS, which no other path outside the run
      // gives). nr_inodes=1 is the root directory itself: not even root (uid layer off) can add
      // an entry, so the namespace all runs share carries nothing from one run to another.
      if (mount("codejail-empty", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "size=4k,nr_inodes=1,mode=0555,uid=0,gid=0") != 0) {
        err = errno;
        failed = "mount an empty tmpfs on " + dir;
        return;
      }
    }
    fd = open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC);
    if (fd < 0) { err = errno; failed = "open /proc/thread-self/ns/mnt"; }
  });
  worker.join();
  if (fd < 0) throw std::system_error(err, std::generic_category(), "create_mount_namespace: " + failed);
  return fd;
}

}  // namespace codejail
