// The run's disk: every run directory is its own tmpfs, sized by the run's DISK limit in bytes
// and inodes. The kernel enforces both (ENOSPC), and clean-up is one detaching umount whatever
// the run left (a million empty directories or names that are not UTF-8), instead of a walk
// whose cost the sandbox chooses. noexec: nothing the run writes can be executed or mapped
// executable (ld.so of a dropped ELF fails at mmap PROT_EXEC), whatever Landlock's ABI.
//
// The runs' mount namespace is a slave copy of the daemon's (namespaces.cc), and runBase is a
// shared mount in the daemon's: a run disk mounted or unmounted here appears or disappears
// there too, so the daemon writes a run's files in its own namespace and the run sees them.
#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <system_error>

#include "layers.h"

namespace codejail {

namespace {
[[noreturn]] void fail(const std::string &what) { throw std::system_error(errno, std::generic_category(), what); }
}  // namespace

void share_run_base(const std::string &run_base, bool bind_first) {
  // A bind mount of the directory onto itself makes it a mount point of its own, whose
  // propagation can then be set without touching the mount it lives on.
  if (bind_first && mount(run_base.c_str(), run_base.c_str(), nullptr, MS_BIND, nullptr) != 0)
    fail("bind-mount " + run_base + " onto itself");
  if (mount(nullptr, run_base.c_str(), nullptr, MS_SHARED, nullptr) != 0) fail("make " + run_base + " a shared mount");
}

void mount_run_disk(const std::string &dir, const RunDiskOptions &options) {
  // size=0 and nr_inodes=0 mean unlimited to tmpfs, as DISK 0 does to codejail.
  char mode[16];
  snprintf(mode, sizeof mode, "%o", options.mode & 07777);
  std::string data = "size=" + std::to_string(options.size_bytes) + ",nr_inodes=" + std::to_string(options.inodes) +
                     ",mode=" + mode + ",uid=" + std::to_string(options.uid) + ",gid=" + std::to_string(options.gid);
  if (mount("codejail-run", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, data.c_str()) != 0)
    fail("mount a tmpfs on " + dir);
}

int unmount_run_disk(const std::string &dir) {
  // MNT_DETACH: the mount is gone from every namespace at once even if a straggler still holds
  // a file open; UMOUNT_NOFOLLOW: a symlink in its place is never followed.
  if (umount2(dir.c_str(), MNT_DETACH | UMOUNT_NOFOLLOW) != 0) return errno;
  return 0;
}

}  // namespace codejail
