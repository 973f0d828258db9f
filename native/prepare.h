// One preparation of a run's plan for either kind of child: what a NativePlan asks for, and the
// plan (plan.h) with everything its child needs made beforehand. Daemon side only: allocates.
#ifndef CODEJAIL_PREPARE_H
#define CODEJAIL_PREPARE_H

#include <stdexcept>
#include <string>
#include <vector>

#include "confine.h"
#include "fd.h"
#include "layers.h"

namespace codejail {

// A NativePlan as the addon read it (addon_plan.cc): the plan's rows that have a key, and what
// prepare_plan turns into the others.
struct PlanRequest {
  cj_plan plan;               // the keyed rows; its fd indexes name `fds`
  std::vector<int> fds;       // the caller's fds the plan names (not ours to close)
  std::string file;           // a cold child's execve: absolute path, argv, "NAME=value" environment
  std::vector<std::string> argv;
  std::vector<std::string> env;
  bool landlock = false;
  LandlockPolicy landlock_policy;
  std::string apparmor_profile;
  bool result_channel = false;  // a fourth pipe, the child's fd 3, read by the daemon
  int channel_fd = -1;          // or this fd of ours as the child's fd 3 (a warm template's socket)
};

// A cold child is cloned from the daemon and execs; a warm one is forked from a template and
// never does (it runs the code in the template's interpreter).
enum class PlanUse { cold, warm };

// The daemon's ends of a run's pipes.
struct RunEnds {
  Fd stdin_write, stdout_read, stderr_read, result_read;
};

struct PreparedPlan {
  cj_plan plan;
  std::vector<int> fds;  // the fd list the plan's indexes name: the request's, then the ones made here
  RunEnds ends;
  // The child's ends and the Landlock ruleset: closed once the child has them (after the clone,
  // or once sent to the template).
  Fd stdin_read, stdout_write, stderr_write, result_write, landlock_ruleset;
};

// A set-up step failed: in the daemon while preparing, or in the child (step CJ_STEP_NONE: no
// step of the plan's, a refused request or a clone that failed).
struct SpawnError : std::runtime_error {
  SpawnError(cj_step step, int err, const std::string &what) : std::runtime_error(what), step(step), err(err) {}
  cj_step step;
  int err;
};

// Throws SpawnError for a plan that cannot be made.
PreparedPlan prepare_plan(const PlanRequest &request, PlanUse use);

// Copies `text` into a TEXT row; false when it does not fit or holds a NUL.
bool set_plan_text(char *field, size_t cap, uint32_t *len, const std::string &text);

}  // namespace codejail

#endif
