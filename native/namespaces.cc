// Network and IPC isolation by joining namespaces the daemon made once at start. A fresh
// namespace per run would cost ~0.3 ms and serializes system-wide on the net namespace lock;
// setns into a pre-made, empty one costs microseconds and gives the same view: no interface
// but a loopback that is down, no route, no host sockets.
#include <fcntl.h>
#include <sched.h>
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
  const char *path = nstype == CLONE_NEWNET ? "/proc/thread-self/ns/net"
                     : nstype == CLONE_NEWIPC ? "/proc/thread-self/ns/ipc"
                                              : nullptr;
  if (!path) throw std::system_error(EINVAL, std::generic_category(), "create_namespace: unsupported type");
  int fd = -1, err = 0;
  // unshare() of a net or IPC namespace applies to the calling thread only; doing it on a
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

}  // namespace codejail
