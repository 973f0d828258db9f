// Owned file descriptors and the run's pipes, for the daemon side of the addon (cold spawns and
// warm runs alike). Never used in a child: these allocate and throw.
#ifndef CODEJAIL_FD_H
#define CODEJAIL_FD_H

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <system_error>

namespace codejail {

struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd &) = delete;
  Fd &operator=(const Fd &) = delete;
  Fd(Fd &&other) noexcept : fd(other.release()) {}
  Fd &operator=(Fd &&other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  ~Fd() { reset(); }
  void reset(int f = -1) {
    if (fd >= 0) close(fd);
    fd = f;
  }
  int release() {
    int f = fd;
    fd = -1;
    return f;
  }
};

// Pipe ends are moved above 3 so that the child's dup2 onto 0..3 can never clobber one of them.
// A `capacity` (bytes) above the kernel's 64 KiB is asked with F_SETPIPE_SZ, best effort: the
// pipe is as good at its default size, only slower to carry megabytes (a wake-up of each side
// per 64 KiB). The kernel allocates a pipe's pages as they are written, not for its capacity.
inline void make_pipe(Fd &read_end, Fd &write_end, int capacity = 0) {
  int p[2];
  if (pipe2(p, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  for (int &fd : p) {
    if (fd < 4) {
      int moved = fcntl(fd, F_DUPFD_CLOEXEC, 4);
      int err = errno;
      close(fd);
      if (moved < 0) throw std::system_error(err, std::generic_category(), "fcntl(F_DUPFD_CLOEXEC)");
      fd = moved;
    }
  }
  read_end.reset(p[0]);
  write_end.reset(p[1]);
  if (capacity > 0) (void)fcntl(write_end.fd, F_SETPIPE_SZ, capacity);
}

}  // namespace codejail

#endif
