// The daemon side of a warm run: prepares what a cold spawn prepares (pipes, the Landlock
// ruleset, the AppArmor attribute, rlimits), flattens it into a cj_warm_plan and sends it to the
// template with the fds it names. The template's child applies it (warm_apply.cc).
#include "warm_prepare.h"

#include <sys/socket.h>
#include <sys/uio.h>

#include <cstring>

#include "channel.h"
#include "warm.h"

namespace codejail {

namespace {

// The message's header; the template (python/warm_template.py) reads the same layout.
struct WarmRunHeader {
  char kind[4];  // "RUN1"
  uint32_t token;
  uint32_t plan_len;
  uint32_t tail_len;
};

void copy_text(char *out, size_t cap, uint32_t *len, const std::string &text, const char *what) {
  if (text.size() >= cap || text.find('\0') != std::string::npos)
    throw SpawnError(CJ_STEP_NONE, ENAMETOOLONG, std::string(what) + " does not fit a warm plan");
  memcpy(out, text.data(), text.size());
  out[text.size()] = '\0';
  *len = (uint32_t)text.size();
}

}  // namespace

WarmRunEnds send_warm_run(int sock, uint32_t token, const SpawnRequest &req, const std::string &tail) {
  if (req.change_ids && req.uid == 0) throw SpawnError(CJ_STEP_SETRESUID, EINVAL, "refusing to run as uid 0");
  if (req.cgroup_procs_fds.size() > 1) throw SpawnError(CJ_STEP_CGROUP, EINVAL, "a warm run joins one cgroup leaf");
  if (req.rlimits.size() > CJ_WARM_MAX_RLIMITS) throw SpawnError(CJ_STEP_RLIMIT, E2BIG, "too many rlimits for a warm plan");

  static cj_warm_plan plan;  // 4.6 KB, JS thread only
  memset(&plan, 0, sizeof plan);
  plan.magic = CJ_WARM_MAGIC;
  plan.size = sizeof plan;
  for (int &fd : plan.fds) fd = -1;
  std::vector<int> send;
  auto pass = [&](int role, int fd) {
    if (fd < 0) return;
    plan.fds[role] = (int32_t)send.size();
    send.push_back(fd);
  };

  WarmRunEnds ends;
  Fd stdin_read, stdout_write, stderr_write, result_write, ruleset;
  make_pipe(stdin_read, ends.stdin_write);
  make_pipe(ends.stdout_read, stdout_write);
  make_pipe(ends.stderr_read, stderr_write);
  if (req.result_channel) make_pipe(ends.result_read, result_write);
  if (req.landlock) {
    // A warm child never execs: every execute grant becomes a read grant.
    LandlockPolicy policy = req.landlock_policy;
    policy.read.insert(policy.read.end(), policy.execute.begin(), policy.execute.end());
    policy.execute.clear();
    try {
      ruleset.reset(prepare_landlock(policy));
    } catch (const std::system_error &e) {
      throw SpawnError(CJ_STEP_LANDLOCK, e.code().value(), e.what());
    }
  }
  pass(CJ_WARM_FD_STDIN, stdin_read.fd);
  pass(CJ_WARM_FD_STDOUT, stdout_write.fd);
  pass(CJ_WARM_FD_STDERR, stderr_write.fd);
  pass(CJ_WARM_FD_RESULT, result_write.fd);
  pass(CJ_WARM_FD_LANDLOCK, ruleset.fd);
  pass(CJ_WARM_FD_CGROUP, req.cgroup_procs_fds.empty() ? -1 : req.cgroup_procs_fds[0]);
  pass(CJ_WARM_FD_NETNS, req.netns_fd);
  pass(CJ_WARM_FD_MNTNS, req.mntns_fd);

  plan.change_ids = req.change_ids;
  plan.uid = req.uid;
  plan.gid = req.gid;
  plan.seccomp = req.seccomp;
  plan.no_new_privs = req.no_new_privs || req.landlock || req.seccomp;
  plan.set_oom_score_adj = req.set_oom_score_adj;
  plan.oom_score_adj = req.oom_score_adj;
  plan.n_rlimits = (uint32_t)req.rlimits.size();
  for (size_t i = 0; i < req.rlimits.size(); i++) {
    plan.rlimits[i].resource = req.rlimits[i].resource;
    plan.rlimits[i].soft = req.rlimits[i].soft == RLIM_INFINITY ? UINT64_MAX : (uint64_t)req.rlimits[i].soft;
    plan.rlimits[i].hard = req.rlimits[i].hard == RLIM_INFINITY ? UINT64_MAX : (uint64_t)req.rlimits[i].hard;
  }
  if (!req.apparmor_profile.empty())
    copy_text(plan.apparmor, sizeof plan.apparmor, &plan.apparmor_len, prepare_apparmor_now(req.apparmor_profile), "the AppArmor attribute");
  copy_text(plan.cwd, sizeof plan.cwd, &plan.cwd_len, req.cwd, "the working directory");
  if (req.cwd.empty() || req.cwd[0] != '/') throw SpawnError(CJ_STEP_CHDIR, EINVAL, "a warm run needs an absolute working directory");

  WarmRunHeader header{{'R', 'U', 'N', '1'}, token, (uint32_t)sizeof plan, (uint32_t)tail.size()};
  struct iovec parts[3] = {{&header, sizeof header}, {&plan, sizeof plan}, {const_cast<char *>(tail.data()), tail.size()}};
  int err = channel_send(sock, parts, 3, send.data(), send.size());
  if (err) throw std::system_error(err, std::generic_category(), "sending a warm run to its template");
  // Our copies of the child's ends close here (the template holds its own now).
  return ends;
}

}  // namespace codejail
