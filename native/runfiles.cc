// The request's files, written into a run directory by the daemon before the run starts: a batch
// of files per call, each created beneath the run directory's fd, so that a thousand files cost
// their own system calls and nothing of Node's per-call overhead or of resolving the run
// directory's absolute path again for each one.
//
// The caller (src/run/rundir.ts) has checked every name and made every parent as a real
// directory of the run; nothing else writes there before the run starts. The kernel still
// refuses any name that would leave the run directory, pass a symlink or cross a mount, should
// that check ever be wrong: openat2 with RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV,
// or, where openat2 is missing or filtered (systemd's RestrictSUIDSGID= makes it fail, since a
// seccomp filter cannot read its flags), a walk of the same strength: each parent opened
// O_PATH | O_DIRECTORY | O_NOFOLLOW from the last, on the run directory's mount.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <optional>
#include <string>

#include "fd.h"
#include "runfiles.h"

namespace codejail {

namespace {

constexpr int CREATE_FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;

// Whether openat2 works here: probed once on a harmless path. ENOSYS (a kernel before 5.6, or
// systemd's filter) and EPERM (older systemd's filter) both mean the walk.
bool openat2_works() {
  static const bool works = [] {
    struct open_how how = {};
    how.flags = O_PATH | O_CLOEXEC;
    int fd = (int)syscall(SYS_openat2, AT_FDCWD, "/", &how, sizeof how);
    if (fd < 0) return false;
    close(fd);
    return true;
  }();
  return works;
}

int create_with_openat2(int root_fd, const char *name, mode_t mode) {
  struct open_how how = {};
  how.flags = CREATE_FLAGS;
  how.mode = mode;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  int fd;
  do fd = (int)syscall(SYS_openat2, root_fd, name, &how, sizeof how);
  while (fd < 0 && errno == EINTR);
  return fd;
}

// One component of a name: never empty, "." or ".." (EXDEV for "..", as RESOLVE_BENEATH gives).
int component_problem(const std::string &part) {
  if (part == "..") return EXDEV;
  if (part.empty() || part == ".") return EINVAL;
  return 0;
}

// Which mount an fd is on: its mount id (statx, kernel >= 5.8), so that a bind mount of the same
// file system counts as another mount, as RESOLVE_NO_XDEV counts it; the device where the
// kernel has no mount id.
struct MountOf {
  bool has_id = false;
  unsigned long long id = 0;
  unsigned major = 0, minor = 0;
  bool operator==(const MountOf &other) const {
    return has_id == other.has_id && major == other.major && minor == other.minor && (!has_id || id == other.id);
  }
};

int mount_of(int fd, MountOf *out) {
#ifdef STATX_MNT_ID
  struct statx stx = {};
  if (statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID, &stx) != 0) return errno;
  out->has_id = (stx.stx_mask & STATX_MNT_ID) != 0;
  out->id = stx.stx_mnt_id;
  out->major = stx.stx_dev_major;
  out->minor = stx.stx_dev_minor;
#else
  // A C library without statx (musl before 1.2.5): the device alone.
  struct stat st;
  if (fstat(fd, &st) != 0) return errno;
  out->major = major(st.st_dev);
  out->minor = minor(st.st_dev);
#endif
  return 0;
}

// The walk: each parent opened from the last with O_PATH | O_DIRECTORY | O_NOFOLLOW (a symlink
// is refused: ELOOP, as RESOLVE_NO_SYMLINKS gives), on the run directory's mount (EXDEV
// otherwise), then the file created O_EXCL | O_NOFOLLOW in the last one.
int create_by_walk(int root_fd, const MountOf &root_mount, const char *name, mode_t mode) {
  if (name[0] == '/') {
    errno = EXDEV;
    return -1;
  }
  Fd parent;  // the last parent opened, once past the run directory itself
  const char *part = name;
  int err = 0;
  for (;;) {
    const int dir_fd = parent.fd >= 0 ? parent.fd : root_fd;
    const char *slash = strchr(part, '/');
    std::string component = slash ? std::string(part, (size_t)(slash - part)) : std::string(part);
    if ((err = component_problem(component))) break;
    if (!slash) {
      int fd;
      do fd = openat(dir_fd, component.c_str(), CREATE_FLAGS, mode);
      while (fd < 0 && errno == EINTR);
      if (fd >= 0) return fd;
      err = errno;
      break;
    }
    Fd next(openat(dir_fd, component.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (next.fd < 0) {
      err = errno;
      struct stat st;
      if (err == ENOTDIR && fstatat(dir_fd, component.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(st.st_mode)) err = ELOOP;
      break;
    }
    MountOf mount;
    if ((err = mount_of(next.fd, &mount))) break;
    if (!(mount == root_mount)) {
      err = EXDEV;
      break;
    }
    parent = std::move(next);
    part = slash + 1;
  }
  errno = err;
  return -1;
}

int write_all(int fd, const unsigned char *data, size_t size) {
  while (size > 0) {
    ssize_t n = write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      return errno;
    }
    data += n;
    size -= (size_t)n;
  }
  return 0;
}

struct Root {
  int fd;
  MountOf mount;
  bool walk;
};

// One file: created, filled, chown'd when `chown` (write_run_files may have made that needless),
// and given its mode.
int write_one(const Root &root, const RunFile &file, bool chown, const RunFilesOwner &owner, RunFilesFailure *failure) {
  int fd = root.walk ? create_by_walk(root.fd, root.mount, file.name, file.mode & 07777) : create_with_openat2(root.fd, file.name, file.mode & 07777);
  if (fd < 0) {
    failure->step = "open";
    return errno;
  }
  int err = write_all(fd, file.data, file.size);
  if (err) failure->step = "write";
  if (!err && chown && fchown(fd, owner.uid, owner.gid) != 0) {
    err = errno;
    failure->step = "fchown";
  }
  // Always: the mode the file was created with is what the umask, or a default ACL inherited
  // from a parent, left of it.
  if (!err && fchmod(fd, file.mode & 07777) != 0) {
    err = errno;
    failure->step = "fchmod";
  }
  if (close(fd) != 0 && !err && errno != EINTR) {
    err = errno;
    failure->step = "close";
  }
  return err;
}

constexpr size_t SWITCH_MIN_FILES = 4;

// The writing thread's filesystem gid, the owner's while this lives (see write_run_files).
class FsgidSwitch {
 public:
  explicit FsgidSwitch(gid_t gid) : previous_((gid_t)syscall(SYS_setfsgid, gid)), switched_((gid_t)syscall(SYS_setfsgid, (gid_t)-1) == gid) {}
  FsgidSwitch(const FsgidSwitch &) = delete;
  FsgidSwitch &operator=(const FsgidSwitch &) = delete;
  ~FsgidSwitch() {
    syscall(SYS_setfsgid, previous_);
    if ((gid_t)syscall(SYS_setfsgid, (gid_t)-1) != previous_) abort();
  }
  bool switched() const { return switched_; }

 private:
  gid_t previous_;
  bool switched_;
};

}  // namespace

int write_run_files(const char *root_path, const RunFile *files, size_t count, const RunFilesOwner &owner, bool force_walk, RunFilesFailure *failure) {
  Fd root_fd(open(root_path, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  Root root{root_fd.fd, {}, force_walk || !openat2_works()};
  int err = root_fd.fd < 0 ? errno : mount_of(root_fd.fd, &root.mount);
  if (err) {
    failure->index = -1;
    failure->step = "open the run directory";
    return err;
  }
  // A file takes its group from the creating thread's filesystem gid: for the length of the
  // batch this thread's fsgid is the owner's, so a root-owned file is created in the slot's group
  // and needs no fchown. setfsgid changes the calling thread only (the raw system call, not a
  // libc wrapper that might broadcast to every thread), and root keeps its capabilities. Where
  // the switch does not take (no CAP_SETGID), each file is chown'd instead. The previous fsgid is
  // back when the switch goes out of scope, however this returns, checked, and the process aborts
  // if it is not: a daemon thread left in a slot's group would create its own files in it.
  // Four system calls a batch (switch, check, restore, check) against one fchown a file: a batch
  // of fewer than SWITCH_MIN_FILES files (a run's code file alone) is chowned.
  std::optional<FsgidSwitch> group;
  if (count >= SWITCH_MIN_FILES) group.emplace(owner.gid);
  const bool chown = owner.uid != geteuid() || !(group && group->switched());
  for (size_t i = 0; i < count && !err; i++) {
    err = write_one(root, files[i], chown, owner, failure);
    if (err) failure->index = (long)i;
  }
  return err;
}

}  // namespace codejail
