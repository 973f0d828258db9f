// Reading a NativePlan (src/native.ts): each keyed row of CJ_PLAN_FIELDS (plan.h) by its kind,
// then the request's parts that prepare_plan turns into rows (what to execve, the Landlock
// policy, the AppArmor profile, fd 3). A key that is neither is refused: a field added on one
// side only fails at its first spawn, not silently.
#include <napi.h>

#include <sys/resource.h>

#include <cmath>
#include <cstring>
#include <string>

#include "addon.h"

namespace codejail {
namespace {

constexpr bool has_key(const char *key) { return key != nullptr; }

// The NativePlan keys that are not rows: prepare_plan's inputs.
const char *const kRequestKeys[] = {"file", "argv", "env", "landlock", "apparmorProfile", "resultChannel", "channelFd"};

// NativeRlimits' names.
const struct {
  const char *name;
  int resource;
} kRlimitNames[] = {
    {"cpu", RLIMIT_CPU},           {"as", RLIMIT_AS},           {"fsize", RLIMIT_FSIZE},
    {"nproc", RLIMIT_NPROC},       {"nofile", RLIMIT_NOFILE},   {"core", RLIMIT_CORE},
    {"msgqueue", RLIMIT_MSGQUEUE}, {"memlock", RLIMIT_MEMLOCK}, {"sigpending", RLIMIT_SIGPENDING},
    {"stack", RLIMIT_STACK},
};

std::string where(const char *key) { return std::string("plan.") + key; }

std::vector<std::string> string_array(const Napi::Object &obj, const char *key, bool required) {
  std::vector<std::string> out;
  Napi::Value v = obj.Get(key);
  if (v.IsUndefined() && !required) return out;
  if (!v.IsArray()) throw Napi::TypeError::New(obj.Env(), where(key) + " must be an array of strings");
  Napi::Array arr = v.As<Napi::Array>();
  for (uint32_t i = 0; i < arr.Length(); i++) {
    Napi::Value item = arr.Get(i);
    if (!item.IsString()) throw Napi::TypeError::New(obj.Env(), where(key) + " must hold strings only");
    std::string s = item.As<Napi::String>().Utf8Value();
    if (s.find('\0') != std::string::npos) throw Napi::TypeError::New(obj.Env(), where(key) + " holds a NUL byte");
    out.push_back(std::move(s));
  }
  return out;
}

std::string string_field(const Napi::Object &obj, const char *key) {
  Napi::Value v = obj.Get(key);
  if (!v.IsString()) throw Napi::TypeError::New(obj.Env(), where(key) + " must be a string");
  return v.As<Napi::String>().Utf8Value();
}

bool bool_field(const Napi::Object &obj, const char *key, bool fallback) {
  Napi::Value v = obj.Get(key);
  return v.IsUndefined() ? fallback : v.ToBoolean().Value();
}

int fd_number(const Napi::Env &env, Napi::Value v, const char *key) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, where(key) + " must be an fd");
  return v.As<Napi::Number>().Int32Value();
}

// An fd of the caller's as an index of the plan's fd list (-1: none).
int32_t fd_index(int fd, std::vector<int> &fds) {
  if (fd < 0) return -1;
  fds.push_back(fd);
  return (int32_t)(fds.size() - 1);
}

// The kinds of CJ_PLAN_FIELDS, each read from its key.

int32_t read_flag(const Napi::Object &js, const char *key, int fallback) { return bool_field(js, key, fallback != 0) ? 1 : 0; }

int64_t read_int(const Napi::Object &js, const char *key, int64_t min, int64_t max) {
  Napi::Value v = js.Get(key);
  if (v.IsUndefined()) return CJ_PLAN_UNSET;
  double value = v.IsNumber() ? v.As<Napi::Number>().DoubleValue() : NAN;
  if (!(value >= (double)min && value <= (double)max) || value != std::floor(value))
    throw Napi::RangeError::New(js.Env(), where(key) + " must be an integer from " + std::to_string(min) + " to " + std::to_string(max));
  return (int64_t)value;
}

int32_t read_fd(const Napi::Object &js, const char *key, std::vector<int> &fds) {
  Napi::Value v = js.Get(key);
  return v.IsUndefined() ? -1 : fd_index(fd_number(js.Env(), v, key), fds);
}

uint32_t read_fds(const Napi::Object &js, const char *key, int32_t *out, size_t cap, std::vector<int> &fds) {
  Napi::Value v = js.Get(key);
  if (v.IsUndefined()) return 0;
  if (!v.IsArray()) throw Napi::TypeError::New(js.Env(), where(key) + " must be an array of fds");
  Napi::Array a = v.As<Napi::Array>();
  if (a.Length() > cap) throw Napi::RangeError::New(js.Env(), where(key) + " holds more than " + std::to_string(cap) + " fds");
  uint32_t n = 0;
  for (uint32_t i = 0; i < a.Length(); i++) {
    int fd = fd_number(js.Env(), a.Get(i), key);
    if (fd >= 0) out[n++] = fd_index(fd, fds);
  }
  return n;
}

uint64_t rlim_value(const Napi::Env &env, Napi::Value v) {
  if (!v.IsNumber()) throw Napi::TypeError::New(env, "rlimit values must be numbers");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0)) throw Napi::RangeError::New(env, "rlimit values must be >= 0");
  if (d >= 9007199254740992.0) return UINT64_MAX;
  return (uint64_t)d;
}

uint32_t read_rlimits(const Napi::Object &js, const char *key, cj_rlimit *out, size_t cap) {
  Napi::Env env = js.Env();
  Napi::Value v = js.Get(key);
  if (!v.IsObject()) return 0;
  Napi::Object limits = v.As<Napi::Object>();
  uint32_t n = 0;
  for (auto &name : kRlimitNames) {
    Napi::Value pair = limits.Get(name.name);
    if (pair.IsUndefined()) continue;
    std::string at = where(key) + "." + name.name;
    if (!pair.IsArray() || pair.As<Napi::Array>().Length() != 2) throw Napi::TypeError::New(env, at + " must be [soft, hard]");
    Napi::Array a = pair.As<Napi::Array>();
    cj_rlimit r{name.resource, 0, rlim_value(env, a.Get(0u)), rlim_value(env, a.Get(1u))};
    if (r.soft > r.hard) throw Napi::RangeError::New(env, at + ": soft exceeds hard");
    if (n >= cap) throw Napi::RangeError::New(env, where(key) + " holds too many limits");
    out[n++] = r;
  }
  return n;
}

uint32_t read_text(const Napi::Object &js, const char *key, char *out, size_t cap) {
  uint32_t len = 0;
  if (!set_plan_text(out, cap, &len, string_field(js, key)))
    throw Napi::RangeError::New(js.Env(), where(key) + " must be shorter than " + std::to_string(cap) + " bytes, without NUL");
  return len;
}

bool is_plan_key(const std::string &key) {
  static const char *const kRowKeys[] = {
#define KEY_FLAG(name, key, fallback) key,
#define KEY_INT(name, key, min, max) key,
#define KEY_FD(name, key) key,
#define KEY_LIST(name, key, cap) key,
      CJ_PLAN_FIELDS(KEY_FLAG, KEY_INT, KEY_FD, KEY_LIST, KEY_LIST, KEY_LIST)
#undef KEY_FLAG
#undef KEY_INT
#undef KEY_FD
#undef KEY_LIST
  };
  for (const char *row : kRowKeys)
    if (row && key == row) return true;
  for (const char *request : kRequestKeys)
    if (key == request) return true;
  return false;
}

}  // namespace

PlanRequest parse_plan(const Napi::Object &js) {
  Napi::Env env = js.Env();
  Napi::Array keys = js.GetPropertyNames();
  for (uint32_t i = 0; i < keys.Length(); i++) {
    std::string key = keys.Get(i).ToString().Utf8Value();
    if (!js.Get(key).IsUndefined() && !is_plan_key(key)) throw Napi::TypeError::New(env, where(key.c_str()) + " is not a field of a plan");
  }

  PlanRequest req;
  cj_plan &p = req.plan;
  cj_plan_init(&p);
#define READ_FLAG(name, key, fallback) \
  if (has_key(key)) p.name = read_flag(js, key, fallback);
#define READ_INT(name, key, min, max) \
  if (has_key(key)) p.name = read_int(js, key, min, max);
#define READ_FD(name, key) \
  if (has_key(key)) p.name = read_fd(js, key, req.fds);
#define READ_FDS(name, key, cap) \
  if (has_key(key)) p.n_##name = read_fds(js, key, p.name, cap, req.fds);
#define READ_RLIMITS(name, key, cap) \
  if (has_key(key)) p.n_##name = read_rlimits(js, key, p.name, cap);
#define READ_TEXT(name, key, cap) \
  if (has_key(key)) p.name##_len = read_text(js, key, p.name, cap);
  CJ_PLAN_FIELDS(READ_FLAG, READ_INT, READ_FD, READ_FDS, READ_RLIMITS, READ_TEXT)
#undef READ_FLAG
#undef READ_INT
#undef READ_FD
#undef READ_FDS
#undef READ_RLIMITS
#undef READ_TEXT
  if ((p.uid == CJ_PLAN_UNSET) != (p.gid == CJ_PLAN_UNSET)) throw Napi::TypeError::New(env, "plan.uid and plan.gid go together");

  req.file = string_field(js, "file");
  req.argv = string_array(js, "argv", true);
  req.env = string_array(js, "env", true);
  Napi::Value ll = js.Get("landlock");
  if (ll.IsObject()) {
    Napi::Object o = ll.As<Napi::Object>();
    req.landlock = true;
    req.landlock_policy.execute = string_array(o, "execute", false);
    req.landlock_policy.read = string_array(o, "read", false);
    req.landlock_policy.read_write = string_array(o, "readWrite", false);
    req.landlock_policy.read_write_files = string_array(o, "readWriteFiles", false);
    req.landlock_policy.deny_tcp = bool_field(o, "denyTcp", true);
    req.landlock_policy.scope = bool_field(o, "scope", true);
  }
  Napi::Value aa = js.Get("apparmorProfile");
  if (aa.IsString()) req.apparmor_profile = aa.As<Napi::String>().Utf8Value();
  req.result_channel = bool_field(js, "resultChannel", false);
  Napi::Value channel = js.Get("channelFd");
  if (!channel.IsUndefined()) req.channel_fd = fd_number(env, channel, "channelFd");
  return req;
}

}  // namespace codejail
