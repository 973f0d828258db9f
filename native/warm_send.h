// Sending a warm run to a template: see warm_send.cc.
#ifndef CODEJAIL_WARM_SEND_H
#define CODEJAIL_WARM_SEND_H

#include <cstdint>
#include <string>

#include "prepare.h"

namespace codejail {

// Prepares `req` for a warm child (prepare_plan) and sends it on `sock` as one message: a header
// with `token` (which names the run in the template's replies), the plan, then `tail` (the
// template's own part: what to run, argv, environment), with the plan's fd list attached. Returns
// the daemon's pipe ends. Throws SpawnError for a plan that cannot be made, and
// std::system_error when the send fails (EAGAIN: the template is behind).
//
// `held`: the run is started ahead of its request (HLD1 instead of RUN1): the child confines
// itself, reports, and then waits on its stdin for its go record (cj_warm_await_go), which
// brings the rest of the tail (what to run, argv, environment).
RunEnds send_warm_run(int sock, uint32_t token, const PlanRequest &req, const std::string &tail, bool held = false);

}  // namespace codejail

#endif
