// Resource limits, set while still root so that a hard limit may also be raised where the
// daemon's own is lower (CAP_SYS_RESOURCE). RLIMIT_NPROC counts processes of the real uid,
// which is the run's own slot uid, so it limits this run alone.
#include <sys/syscall.h>
#include "layers.h"

namespace codejail {

int apply_rlimits(const cj_rlimit *limits, size_t count) {
  for (size_t i = 0; i < count; i++) {
    // The kernel's struct rlimit64, whose infinity is all ones: UINT64_MAX, as the plan's.
    struct {
      uint64_t cur, max;
    } value = {limits[i].soft, limits[i].hard};
    long r = raw_syscall(SYS_prlimit64, 0, limits[i].resource, (long)&value, 0);
    if (r < 0) return (int)-r;
  }
  return 0;
}

}  // namespace codejail
