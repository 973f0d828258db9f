// Landlock: the filesystem (and, from ABI 4, TCP) policy of a run. The ruleset is built in the
// daemon before the clone, from O_PATH fds of the allowed paths; the child only calls
// landlock_restrict_self. Everything this kernel's ABI can handle is handled, so anything not
// granted below is denied: the root, /etc, /tmp, /home, /proc, other runs.
//
// The structs and constants are spelled out here rather than taken from <linux/landlock.h>
// because build hosts (Debian 12: ABI 2 headers) can be older than the kernels we run on.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <system_error>

#include "layers.h"

#ifndef SYS_landlock_create_ruleset
#define SYS_landlock_create_ruleset 444
#define SYS_landlock_add_rule 445
#define SYS_landlock_restrict_self 446
#endif

namespace codejail {
namespace {

struct RulesetAttr {
  uint64_t handled_access_fs;
  uint64_t handled_access_net;  // ABI 4
  uint64_t scoped;              // ABI 6
};

struct __attribute__((packed)) PathBeneathAttr {
  uint64_t allowed_access;
  int32_t parent_fd;
};

constexpr uint32_t kCreateRulesetVersion = 1U << 0;
constexpr int kRulePathBeneath = 1;

enum : uint64_t {
  kExecute = 1ULL << 0,
  kWriteFile = 1ULL << 1,
  kReadFile = 1ULL << 2,
  kReadDir = 1ULL << 3,
  kRemoveDir = 1ULL << 4,
  kRemoveFile = 1ULL << 5,
  kMakeChar = 1ULL << 6,
  kMakeDir = 1ULL << 7,
  kMakeReg = 1ULL << 8,
  kMakeSock = 1ULL << 9,
  kMakeFifo = 1ULL << 10,
  kMakeBlock = 1ULL << 11,
  kMakeSym = 1ULL << 12,
  kRefer = 1ULL << 13,     // ABI 2
  kTruncate = 1ULL << 14,  // ABI 3
  kIoctlDev = 1ULL << 15,  // ABI 5
};
constexpr uint64_t kNetBindTcp = 1ULL << 0, kNetConnectTcp = 1ULL << 1;
constexpr uint64_t kScopeAbstractUnix = 1ULL << 0, kScopeSignal = 1ULL << 1;

// Rights that make sense on a file (the kernel refuses directory-only rights on a file rule).
constexpr uint64_t kFileRights = kExecute | kWriteFile | kReadFile | kTruncate | kIoctlDev;

uint64_t handled_fs_for(int abi) {
  uint64_t rights = (kMakeSym << 1) - 1;  // ABI 1: bits 0..12
  if (abi >= 2) rights |= kRefer;
  if (abi >= 3) rights |= kTruncate;
  if (abi >= 5) rights |= kIoctlDev;
  return rights;
}

void add_path_rule(int ruleset_fd, const std::string &path, uint64_t wanted, uint64_t handled) {
  int fd = open(path.c_str(), O_PATH | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return;  // optional paths (a lib dir this distro lacks) are skipped
    throw std::system_error(errno, std::generic_category(), "landlock: open " + path);
  }
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int err = errno;
    close(fd);
    throw std::system_error(err, std::generic_category(), "landlock: stat " + path);
  }
  PathBeneathAttr rule{};
  rule.allowed_access = wanted & handled & (S_ISDIR(st.st_mode) ? ~0ULL : kFileRights);
  rule.parent_fd = fd;
  long r = syscall(SYS_landlock_add_rule, ruleset_fd, kRulePathBeneath, &rule, 0);
  int err = errno;
  close(fd);
  if (r != 0) throw std::system_error(err, std::generic_category(), "landlock_add_rule " + path);
}

}  // namespace

int landlock_abi() {
  long abi = syscall(SYS_landlock_create_ruleset, nullptr, 0, kCreateRulesetVersion);
  return abi < 0 ? 0 : (int)abi;
}

int prepare_landlock(const LandlockPolicy &policy) {
  int abi = landlock_abi();
  if (abi <= 0) throw std::system_error(EOPNOTSUPP, std::generic_category(), "landlock unavailable");
  RulesetAttr attr{};
  attr.handled_access_fs = handled_fs_for(abi);
  // Handling TCP bind and connect without adding any port rule denies both outright.
  if (abi >= 4 && policy.deny_tcp) attr.handled_access_net = kNetBindTcp | kNetConnectTcp;
  if (abi >= 6 && policy.scope) attr.scoped = kScopeAbstractUnix | kScopeSignal;
  size_t size = abi >= 6 ? sizeof(RulesetAttr) : abi >= 4 ? 2 * sizeof(uint64_t) : sizeof(uint64_t);
  int ruleset = (int)syscall(SYS_landlock_create_ruleset, &attr, size, 0);
  if (ruleset < 0) throw std::system_error(errno, std::generic_category(), "landlock_create_ruleset");
  const uint64_t handled = attr.handled_access_fs;
  const uint64_t read = kReadFile | kReadDir;
  const uint64_t everything_but_exec = handled & ~kExecute;
  try {
    for (auto &p : policy.execute) add_path_rule(ruleset, p, read | kExecute, handled);
    for (auto &p : policy.read) add_path_rule(ruleset, p, read, handled);
    for (auto &p : policy.read_write) add_path_rule(ruleset, p, everything_but_exec, handled);
    for (auto &p : policy.read_write_files) add_path_rule(ruleset, p, kReadFile | kWriteFile | kTruncate, handled);
  } catch (...) {
    close(ruleset);
    throw;
  }
  return ruleset;
}

int apply_landlock(int ruleset_fd) {
  long r = raw_syscall(SYS_landlock_restrict_self, ruleset_fd, 0);
  return r < 0 ? (int)-r : 0;
}

}  // namespace codejail
