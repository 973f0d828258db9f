// What the addon's N-API files share: plans from JS, errors to JS, and each file's registration.
#ifndef CODEJAIL_ADDON_H
#define CODEJAIL_ADDON_H

#include <napi.h>

#include <string>

#include "spawn.h"

namespace codejail {

// addon_plan.cc: a NativePlan (src/native.ts) as a PlanRequest; throws a TypeError or RangeError
// naming the bad field.
PlanRequest parse_plan(const Napi::Object &plan);
// An Error with step, errno and code (the errno's name) set, as every set-up failure carries.
Napi::Error errno_error(Napi::Env env, const std::string &step, int err, const std::string &message);
// addon_warm.cc: the warm template's channel.
void register_warm(Napi::Env env, Napi::Object exports);

}  // namespace codejail

#endif
