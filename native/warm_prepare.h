// Sending a warm run to a template: see warm_prepare.cc.
#ifndef CODEJAIL_WARM_PREPARE_H
#define CODEJAIL_WARM_PREPARE_H

#include <cstdint>
#include <string>

#include "fd.h"
#include "spawn.h"

namespace codejail {

// The daemon's ends of a warm run's pipes.
struct WarmRunEnds {
  Fd stdin_write, stdout_read, stderr_read, result_read;
};

// Prepares `req` as a warm plan and sends it on `sock` as one message: a header with `token`
// (which names the run in the template's replies), the plan, then `tail` (the template's own part:
// what to run, argv, environment). Throws SpawnError for a plan that cannot be made, and
// std::system_error when the send fails (EAGAIN: the template is behind).
WarmRunEnds send_warm_run(int sock, uint32_t token, const SpawnRequest &req, const std::string &tail);

}  // namespace codejail

#endif
