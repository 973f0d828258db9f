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
  bool chown = false;  // false: the files keep the daemon's ids (an unsafe, non-root daemon)
  uid_t uid = 0;
  gid_t gid = 0;
  mode_t umask = 0;  // the daemon's: a file whose mode it takes bits from gets an fchmod
};

struct RunFilesFailure {
  long index = -1;           // the file that failed; -1: the run directory itself
  const char *step = "";     // open, write, fchown, fchmod, close
};

// Writes files[0..count) in order and stops at the first failure: 0, or its errno value with
// `failure` filled. Files before the failing one stay written (the caller removes the run
// directory whole). Never follows a symlink, never leaves `root`.
int write_run_files(const char *root, const RunFile *files, size_t count, const RunFilesOwner &owner, RunFilesFailure *failure);

}  // namespace codejail

#endif
