// REALTIME deadlines enforced by one native thread, so that a run is killed on time even while
// the daemon's event loop is busy (a large frame being decoded): no JS callback is involved in
// the kill itself.
#ifndef CODEJAIL_DEADLINE_H
#define CODEJAIL_DEADLINE_H

#include <sys/types.h>

#include <cstdint>

namespace codejail {

// Arms a deadline `ms` from now for the process behind `pidfd` (duplicated: the caller keeps and
// closes its own) and its process group `pgid`. At expiry, if the process has not exited, the
// thread SIGKILLs it through the pidfd and then the group. Returns the deadline's id (> 0).
// Throws std::system_error.
uint64_t arm_deadline(int pidfd, pid_t pgid, uint64_t ms);

// Disarms the deadline and closes its fds; returns whether it fired (killed the process). An
// unknown id (already disarmed) returns false.
bool disarm_deadline(uint64_t id);

// How many deadlines are armed (tests: nothing is left armed, no fd kept).
size_t armed_deadlines();

}  // namespace codejail

#endif
