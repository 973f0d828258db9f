// The daemon side of a warm run: the plan, prepared as for a cold run (prepare_plan), goes to the
// template as it is, with the fds its list names as SCM_RIGHTS. The template's child applies the
// same bytes (warm_apply.cc).
#include "warm_send.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <system_error>

#include "channel.h"

namespace codejail {

namespace {

// The message's header; the template (python/warm_template.py) reads the same layout.
struct WarmRunHeader {
  char kind[4];  // "RUN1", or "HLD1" for a held run (its tail says only whether fd 3 is a result
                 // channel, and the rest comes with its go record)
  uint32_t token;
  uint32_t plan_len;
  uint32_t tail_len;
};

// python/warm_template.py receives at most MAX_FDS = 16 fds with a message.
static_assert(CJ_PLAN_MAX_FDS <= 16, "a plan's fd list must fit what a template receives");

}  // namespace

RunEnds send_warm_run(int sock, uint32_t token, const PlanRequest &req, const std::string &tail, bool held) {
  PreparedPlan prepared = prepare_plan(req, PlanUse::warm);
  WarmRunHeader run_header{{'R', 'U', 'N', '1'}, token, (uint32_t)sizeof prepared.plan, (uint32_t)tail.size()};
  WarmRunHeader held_header{{'H', 'L', 'D', '1'}, token, (uint32_t)sizeof prepared.plan, (uint32_t)tail.size()};
  WarmRunHeader &header = held ? held_header : run_header;
  struct iovec parts[3] = {
      {&header, sizeof header}, {&prepared.plan, sizeof prepared.plan}, {const_cast<char *>(tail.data()), tail.size()}};
  int err = channel_send(sock, parts, 3, prepared.fds.data(), prepared.fds.size());
  if (err) throw std::system_error(err, std::generic_category(), "sending a warm run to its template");
  // Our copies of the child's ends close with `prepared` (the template holds its own now).
  return std::move(prepared.ends);
}

}  // namespace codejail
