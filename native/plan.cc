// The plan's defaults and the child's check of it, both made from CJ_PLAN_FIELDS (plan.h).
// Linked into the addon and into the warm library: the check runs in both kinds of child.
#include "plan.h"

#include <sys/resource.h>

#include <cerrno>
#include <cstring>

namespace {

bool text_ok(const char *text, uint32_t len, size_t cap) {
  if (len >= cap || text[len] != '\0') return false;
  for (uint32_t i = 0; i < len; i++)
    if (text[i] == '\0') return false;
  return true;
}

bool index_ok(int32_t index, size_t nfds) { return index >= 0 && (size_t)index < nfds; }

}  // namespace

extern "C" void cj_plan_init(struct cj_plan *plan) {
  memset(plan, 0, sizeof *plan);
  plan->magic = CJ_PLAN_MAGIC;
  plan->size = sizeof *plan;
#define INIT_FLAG(name, key, fallback) plan->name = (fallback);
#define INIT_INT(name, key, min, max) plan->name = CJ_PLAN_UNSET;
#define INIT_FD(name, key) plan->name = -1;
#define INIT_NONE(...)
  CJ_PLAN_FIELDS(INIT_FLAG, INIT_INT, INIT_FD, INIT_NONE, INIT_NONE, INIT_NONE)
#undef INIT_FLAG
#undef INIT_INT
#undef INIT_FD
#undef INIT_NONE
}

extern "C" int cj_plan_check(const struct cj_plan *plan, size_t nfds) {
  if (plan->magic != CJ_PLAN_MAGIC || plan->size != sizeof *plan || nfds > CJ_PLAN_MAX_FDS) return EINVAL;
#define CHECK_FLAG(name, key, fallback) \
  if (plan->name != 0 && plan->name != 1) return EINVAL;
#define CHECK_INT(name, key, min, max) \
  if (plan->name != CJ_PLAN_UNSET && (plan->name < (min) || plan->name > (max))) return EINVAL;
#define CHECK_FD(name, key) \
  if (plan->name != -1 && !index_ok(plan->name, nfds)) return EINVAL;
#define CHECK_FDS(name, key, cap)                             \
  if (plan->n_##name > (cap)) return EINVAL;                  \
  for (uint32_t i = 0; i < plan->n_##name; i++)               \
    if (!index_ok(plan->name[i], nfds)) return EINVAL;
#define CHECK_RLIMITS(name, key, cap)                                                        \
  if (plan->n_##name > (cap)) return EINVAL;                                                 \
  for (uint32_t i = 0; i < plan->n_##name; i++)                                              \
    if (plan->name[i].resource < 0 || plan->name[i].resource >= RLIM_NLIMITS ||              \
        plan->name[i].soft > plan->name[i].hard)                                             \
      return EINVAL;
#define CHECK_TEXT(name, key, cap) \
  if (!text_ok(plan->name, plan->name##_len, (cap))) return EINVAL;
  CJ_PLAN_FIELDS(CHECK_FLAG, CHECK_INT, CHECK_FD, CHECK_FDS, CHECK_RLIMITS, CHECK_TEXT)
#undef CHECK_FLAG
#undef CHECK_INT
#undef CHECK_FD
#undef CHECK_FDS
#undef CHECK_RLIMITS
#undef CHECK_TEXT
  // What one row cannot say of itself.
  if ((plan->uid == CJ_PLAN_UNSET) != (plan->gid == CJ_PLAN_UNSET)) return EINVAL;
  if (plan->fd0 < 0 || plan->fd1 < 0 || plan->fd2 < 0) return EINVAL;
  return 0;
}
