// The request's files written into a run directory (runfiles.cc): daemon side only.
#ifndef CODEJAIL_RUNFILES_H
#define CODEJAIL_RUNFILES_H

#include <cstddef>
#include <sys/types.h>

namespace codejail {

struct RunFile {
  const char *name;           // relative to the run directory; its parents exist
  const unsigned char *data;  // borrowed for the call
  size_t size;
  mode_t mode;
};

struct RunFilesOwner {
  uid_t uid = 0;  // root, for the daemon
  gid_t gid = 0;  // the slot's group
};

struct RunFilesFailure {
  long index = -1;           // the file that failed; -1: the run directory itself
  const char *step = "";     // open the run directory, open, write, fchown, fchmod, close
};

// Writes files[0..count) in order, each owned by `owner`, and stops at the first failure: 0, or
// its errno value with `failure` filled. Files before the failing one stay written (the caller
// removes the run directory whole). Never follows a symlink, never leaves `root` or its mount.
// `force_walk`: resolve names by the walk even where openat2 works (for tests of the walk).
int write_run_files(const char *root, const RunFile *files, size_t count, const RunFilesOwner &owner, bool force_walk, RunFilesFailure *failure);

}  // namespace codejail

#endif
