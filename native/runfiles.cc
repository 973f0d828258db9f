// The request's files, written into a run directory by the daemon before the run starts: a batch
// of files per call, each made with openat2 beneath the run directory's fd, so that a thousand
// files cost a thousand openat2/write/close and nothing of Node's per-call overhead or of
// resolving the run directory's absolute path again for each one.
//
// The caller (src/run/rundir.ts) has checked every name and made every parent as a real
// directory of the run; nothing else writes there before the run starts. openat2's
// RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_XDEV still refuses any name that would
// leave the run directory, pass a symlink or cross a mount, should that check ever be wrong.
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "runfiles.h"

namespace codejail {

namespace {

constexpr int CREATE_FLAGS = O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC;

// ENOSYS from openat2 (a kernel before 5.6) is remembered: plain openat with O_NOFOLLOW then, as
// before this batch existed; the caller's own checks of every parent are what stand.
bool openat2_missing = false;

int create_beneath(int root_fd, const char *name, mode_t mode) {
  if (!openat2_missing) {
    struct open_how how = {};
    how.flags = CREATE_FLAGS;
    how.mode = mode;
    how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
    int fd;
    do fd = (int)syscall(SYS_openat2, root_fd, name, &how, sizeof how);
    while (fd < 0 && errno == EINTR);
    if (fd >= 0 || errno != ENOSYS) return fd;
    openat2_missing = true;
  }
  int fd;
  do fd = openat(root_fd, name, CREATE_FLAGS, mode);
  while (fd < 0 && errno == EINTR);
  return fd;
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

// One file: created, filled, chown'd when `owner.chown` (write_run_files may have made that
// needless), and given its mode when the umask took bits from it.
int write_one(int root_fd, const RunFile &file, const RunFilesOwner &owner, RunFilesFailure *failure) {
  int fd = create_beneath(root_fd, file.name, file.mode & 07777);
  if (fd < 0) {
    failure->step = "open";
    return errno;
  }
  int err = write_all(fd, file.data, file.size);
  if (err) failure->step = "write";
  if (!err && owner.chown && fchown(fd, owner.uid, owner.gid) != 0) {
    err = errno;
    failure->step = "fchown";
  }
  if (!err && (file.mode & owner.umask) != 0 && fchmod(fd, file.mode & 07777) != 0) {
    err = errno;
    failure->step = "fchmod";
  }
  if (close(fd) != 0 && !err && errno != EINTR) {
    err = errno;
    failure->step = "close";
  }
  return err;
}

}  // namespace

int write_run_files(const char *root, const RunFile *files, size_t count, const RunFilesOwner &owner, RunFilesFailure *failure) {
  int root_fd = open(root, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (root_fd < 0) {
    failure->index = -1;
    failure->step = "open the run directory";
    return errno;
  }
  // A file takes its group from the creating thread's filesystem gid: for the length of the
  // batch this thread's fsgid is the owner's, so a root-owned file is created in the slot's group
  // and needs no fchown. setfsgid changes the calling thread only (the raw system call, not a
  // libc wrapper that might broadcast to every thread), and root keeps its capabilities; the
  // previous fsgid is back before returning, checked, and the process aborts if it is not (a
  // daemon thread left in a slot's group would create its own files in it).
  const bool switch_group = owner.chown && owner.uid == 0 && geteuid() == 0;
  gid_t previous = 0;
  RunFilesOwner each = owner;
  if (switch_group) {
    previous = (gid_t)syscall(SYS_setfsgid, owner.gid);
    each.chown = false;
  }
  int err = 0;
  for (size_t i = 0; i < count && !err; i++) {
    err = write_one(root_fd, files[i], each, failure);
    if (err) failure->index = (long)i;
  }
  if (switch_group) {
    syscall(SYS_setfsgid, previous);
    if ((gid_t)syscall(SYS_setfsgid, (gid_t)-1) != previous) abort();
  }
  close(root_fd);
  return err;
}

}  // namespace codejail
