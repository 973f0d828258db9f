// What a run's child needs, made before it exists, the same way for a cold clone and a warm
// fork: the pipes, the Landlock ruleset, the AppArmor attribute, the seccomp program, and the
// plan's rows no caller sets. The two uses differ only in what an execve would have done for them.
#include "prepare.h"

#include <cerrno>
#include <cstring>
#include <system_error>

namespace codejail {

// The capacity asked for a run's pipes: /proc/sys/fs/pipe-max-size's default.
constexpr int RUN_PIPE_CAPACITY = 1 << 20;

bool set_plan_text(char *field, size_t cap, uint32_t *len, const std::string &text) {
  if (text.size() >= cap || text.find('\0') != std::string::npos) return false;
  memcpy(field, text.data(), text.size());
  field[text.size()] = '\0';
  *len = (uint32_t)text.size();
  return true;
}

PreparedPlan prepare_plan(const PlanRequest &req, PlanUse use) {
  const bool warm = use == PlanUse::warm;
  if (req.plan.uid == 0) throw SpawnError(CJ_STEP_SETRESUID, EINVAL, "refusing to run as uid 0");
  if (req.channel_fd >= 0 && req.result_channel) throw SpawnError(CJ_STEP_STDIO, EINVAL, "a channel fd and a result channel both want fd 3");
  if (warm && (req.plan.cwd_len == 0 || req.plan.cwd[0] != '/'))
    throw SpawnError(CJ_STEP_CHDIR, EINVAL, "a warm run needs an absolute working directory");

  PreparedPlan out;
  out.plan = req.plan;
  out.fds = req.fds;
  cj_plan &plan = out.plan;
  auto add = [&out](int fd) -> int32_t {
    if (fd < 0) return -1;
    if (out.fds.size() >= CJ_PLAN_MAX_FDS) throw SpawnError(CJ_STEP_NONE, E2BIG, "too many fds for a plan");
    out.fds.push_back(fd);
    return (int32_t)(out.fds.size() - 1);
  };

  // Megabytes of stdin, output or result pass in 1 MiB steps (the default pipe-max-size) rather
  // than 64 KiB ones: a sixteenth of the wake-ups of the run and of the daemon.
  make_pipe(out.stdin_read, out.ends.stdin_write, RUN_PIPE_CAPACITY);
  make_pipe(out.ends.stdout_read, out.stdout_write, RUN_PIPE_CAPACITY);
  make_pipe(out.ends.stderr_read, out.stderr_write, RUN_PIPE_CAPACITY);
  if (req.result_channel) make_pipe(out.ends.result_read, out.result_write, RUN_PIPE_CAPACITY);
  plan.fd0 = add(out.stdin_read.fd);
  plan.fd1 = add(out.stdout_write.fd);
  plan.fd2 = add(out.stderr_write.fd);
  plan.fd3 = add(req.channel_fd >= 0 ? req.channel_fd : out.result_write.fd);

  if (req.landlock) {
    LandlockPolicy policy = req.landlock_policy;
    if (warm) {
      // A warm child never execs: every execute grant becomes a read grant.
      policy.read.insert(policy.read.end(), policy.execute.begin(), policy.execute.end());
      policy.execute.clear();
    }
    try {
      out.landlock_ruleset.reset(prepare_landlock(policy));
    } catch (const std::system_error &e) {
      throw SpawnError(CJ_STEP_LANDLOCK, e.code().value(), e.what());
    }
    plan.landlock_ruleset = add(out.landlock_ruleset.fd);
  }
  if (!req.apparmor_profile.empty()) {
    // A cold child's switch waits for its execve; a warm one has none to wait for.
    std::string attr = warm ? prepare_apparmor_now(req.apparmor_profile) : prepare_apparmor(req.apparmor_profile);
    if (!set_plan_text(plan.apparmor_attr, sizeof plan.apparmor_attr, &plan.apparmor_attr_len, attr))
      throw SpawnError(CJ_STEP_APPARMOR, ENAMETOOLONG, "the AppArmor attribute does not fit a plan");
    plan.apparmor_now = warm;
  }
  // Built here, in the daemon, so that the cold child only looks it up (the template builds
  // its own, in cj_warm_init).
  if (plan.seccomp) seccomp_program();

  plan.new_session = 1;
  // Node ignores SIGPIPE and SIGXFSZ, and a cold child would keep that through execve. The
  // template is a fresh interpreter that installed no handler of its own: its dispositions
  // (SIGPIPE and SIGXFSZ ignored, SIGINT raising KeyboardInterrupt) are what a cold interpreter
  // sets at start, and resetting them would make the two differ.
  plan.reset_signals = !warm;
  // What execve does for a cold child: make it dumpable again, close the close-on-exec fds. A
  // warm child's fds stay open until cj_warm_seal, after it has reported to its template.
  plan.dumpable_after_ids = warm;
  plan.close_other_fds = !warm;
  plan.seccomp_no_execve = warm && plan.seccomp;
  // A warm run dies with its template whatever the request says.
  if (warm) plan.parent_death_signal = 1;
  return out;
}

}  // namespace codejail
