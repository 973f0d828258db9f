// N-API surface of the addon: spawns from JS plans (read in addon_plan.cc), and gives the daemon
// the few kernel calls Node lacks (pidfds, namespaces, peer credentials, datagrams to systemd).
#include <napi.h>
#include <uv.h>

#include <fcntl.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <limits>
#include <vector>

#include "addon.h"
#include "deadline.h"
#include "runfiles.h"
#include "spawn.h"

using namespace codejail;

namespace codejail {

Napi::Error errno_error(Napi::Env env, const std::string &step, int err, const std::string &message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("step", Napi::String::New(env, step));
  e.Set("errno", Napi::Number::New(env, err));
  const char *name = strerrorname_np(err);
  e.Set("code", Napi::String::New(env, name ? name : "EUNKNOWN"));
  return e;
}

}  // namespace codejail

namespace {

Napi::Value Spawn(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsObject()) throw Napi::TypeError::New(env, "spawn(plan): plan must be an object");
  PlanRequest req = parse_plan(info[0].As<Napi::Object>());
  SpawnedChild child;
  try {
    child = spawn_confined(req);
  } catch (const SpawnError &e) {
    throw errno_error(env, cj_step_name(e.step), e.err, e.what());
  } catch (const std::system_error &e) {
    throw errno_error(env, "prepare", e.code().value(), e.what());
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("pid", child.pid);
  out.Set("pidfd", child.pidfd);
  out.Set("stdin", child.stdin_fd);
  out.Set("stdout", child.stdout_fd);
  out.Set("stderr", child.stderr_fd);
  if (child.result_fd >= 0) out.Set("result", child.result_fd);
  out.Set("inheritedRssKb", (double)child.inherited_rss_kb);
  return out;
}

// Exit watching on the event loop: a pidfd polls readable when its process exits, so a
// uv_poll_t on it costs no thread and never blocks the loop. wait4 (not waitid on the pidfd)
// because it also returns the rusage; the pid cannot be reused before we reap it.
struct ExitWatch {
  uv_poll_t poll;
  pid_t pid;
  napi_env env;
  Napi::FunctionReference callback;
  Napi::AsyncContext *context;
};

void on_watch_closed(uv_handle_t *handle) {
  auto *w = static_cast<ExitWatch *>(handle->data);
  delete w->context;
  delete w;
}

void on_pidfd_ready(uv_poll_t *handle, int status, int events) {
  auto *w = static_cast<ExitWatch *>(handle->data);
  ReapedStatus reaped{};
  int r = reap_watched(w->pid, &reaped);
  if (r == 0) return;  // spurious wake-up
  int wstatus = reaped.status;
  struct rusage &ru = reaped.usage;
  uv_poll_stop(handle);
  Napi::Env env(w->env);
  Napi::HandleScope scope(env);
  Napi::Object exit = Napi::Object::New(env);
  if (r < 0) {
    // Reaped elsewhere: should not happen, but never leave the caller waiting forever.
    exit.Set("code", env.Null());
    exit.Set("signal", env.Null());
    exit.Set("error", Napi::String::New(env, strerror(-r)));
  } else if (WIFSIGNALED(wstatus)) {
    exit.Set("code", env.Null());
    exit.Set("signal", WTERMSIG(wstatus));
  } else {
    exit.Set("code", WEXITSTATUS(wstatus));
    exit.Set("signal", env.Null());
  }
  exit.Set("userUs", (double)ru.ru_utime.tv_sec * 1e6 + ru.ru_utime.tv_usec);
  exit.Set("systemUs", (double)ru.ru_stime.tv_sec * 1e6 + ru.ru_stime.tv_usec);
  exit.Set("maxRssKb", (double)ru.ru_maxrss);
  Napi::FunctionReference cb = std::move(w->callback);
  Napi::AsyncContext *ctx = w->context;
  w->context = nullptr;
  uv_close(reinterpret_cast<uv_handle_t *>(handle), on_watch_closed);
  cb.MakeCallback(env.Global(), {exit}, *ctx);
  delete ctx;
}

Napi::Value WatchExit(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsFunction())
    throw Napi::TypeError::New(env, "watchExit(pidfd, pid, onExit)");
  auto *w = new ExitWatch();
  w->pid = info[1].As<Napi::Number>().Int32Value();
  watch_pid(w->pid);
  w->env = env;
  w->callback = Napi::Persistent(info[2].As<Napi::Function>());
  w->context = new Napi::AsyncContext(env, "codejail.exit");
  w->poll.data = w;
  uv_loop_t *loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  int err = uv_poll_init(loop, &w->poll, info[0].As<Napi::Number>().Int32Value());
  if (err == 0) err = uv_poll_start(&w->poll, UV_READABLE, on_pidfd_ready);
  if (err != 0) {
    delete w->context;
    delete w;
    throw Napi::Error::New(env, std::string("watchExit: ") + uv_strerror(err));
  }
  return env.Undefined();
}

Napi::Value PidfdSignal(const Napi::CallbackInfo &info) {
  int pidfd = info[0].As<Napi::Number>().Int32Value();
  int sig = info[1].As<Napi::Number>().Int32Value();
  long r = syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0);
  if (r != 0 && errno != ESRCH) throw errno_error(info.Env(), "pidfd_send_signal", errno, strerror(errno));
  return Napi::Boolean::New(info.Env(), r == 0);
}

Napi::Value KillUid(const Napi::CallbackInfo &info) {
  int err = kill_uid(info[0].As<Napi::Number>().Uint32Value());
  if (err) throw errno_error(info.Env(), "kill_uid", err, std::string("killUid: ") + strerror(err));
  return Napi::Number::New(info.Env(), 0);
}

// true: nothing of the uid is left; false: some remain (try again later).
Napi::Value KillUidRound(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber())
    throw Napi::TypeError::New(env, "killUidRound(uid, reapFirstUid, reapCount)");
  int err = kill_uid_round(info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().Uint32Value(),
                           info[2].As<Napi::Number>().Uint32Value());
  if (err && err != EAGAIN) throw errno_error(env, "kill_uid", err, std::string("killUidRound: ") + strerror(err));
  return Napi::Boolean::New(env, err == 0);
}

Napi::Value ArmDeadline(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber())
    throw Napi::TypeError::New(env, "armDeadline(pidfd, pgid, ms)");
  double ms = info[2].As<Napi::Number>().DoubleValue();
  if (!(ms >= 0) || ms > 1e12) throw Napi::RangeError::New(env, "armDeadline: ms must be between 0 and 1e12");
  try {
    uint64_t id = arm_deadline(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Int32Value(), (uint64_t)ms);
    return Napi::Number::New(env, (double)id);
  } catch (const std::system_error &e) {
    throw errno_error(env, "arm_deadline", e.code().value(), e.what());
  }
}

Napi::Value DisarmDeadline(const Napi::CallbackInfo &info) {
  if (!info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "disarmDeadline(id)");
  return Napi::Boolean::New(info.Env(), disarm_deadline((uint64_t)info[0].As<Napi::Number>().DoubleValue()));
}

Napi::Value ArmedDeadlines(const Napi::CallbackInfo &info) {
  return Napi::Number::New(info.Env(), (double)armed_deadlines());
}

Napi::Value BecomeSubreaper(const Napi::CallbackInfo &info) {
  if (!become_subreaper()) throw errno_error(info.Env(), "PR_SET_CHILD_SUBREAPER", errno, strerror(errno));
  return info.Env().Undefined();
}

Napi::Value CloseFd(const Napi::CallbackInfo &info) {
  close(info[0].As<Napi::Number>().Int32Value());
  return info.Env().Undefined();
}

Napi::Value LandlockAbi(const Napi::CallbackInfo &info) { return Napi::Number::New(info.Env(), landlock_abi()); }

// glibc keeps memory freed in its arenas (the room of large Buffers once they are collected) and
// gives back only what is free at the top of the main heap past a threshold that grows with the
// largest buffer freed; malloc_trim also returns the free pages inside every arena.
Napi::Value MallocTrim(const Napi::CallbackInfo &info) {
#ifdef __GLIBC__
  return Napi::Boolean::New(info.Env(), malloc_trim(0) != 0);
#else
  return Napi::Boolean::New(info.Env(), false);
#endif
}

Napi::Value SeccompSupported(const Napi::CallbackInfo &info) {
  return Napi::Boolean::New(info.Env(), seccomp_supported());
}

Napi::Value CreateNamespace(const Napi::CallbackInfo &info) {
  std::string kind = info[0].As<Napi::String>().Utf8Value();
  int type = kind == "net" ? CLONE_NEWNET : kind == "mnt" ? CLONE_NEWNS : 0;
  if (!type) throw Napi::TypeError::New(info.Env(), "createNamespace: kind must be 'net' or 'mnt'");
  std::vector<std::string> hide;
  if (type == CLONE_NEWNS && info.Length() > 1 && info[1].IsArray()) {
    Napi::Array list = info[1].As<Napi::Array>();
    for (uint32_t i = 0; i < list.Length(); i++) hide.push_back(list.Get(i).As<Napi::String>().Utf8Value());
  }
  try {
    if (type == CLONE_NEWNS) return Napi::Number::New(info.Env(), create_mount_namespace(hide));
    return Napi::Number::New(info.Env(), create_namespace(type));
  } catch (const std::system_error &e) {
    throw errno_error(info.Env(), "unshare", e.code().value(), e.what());
  }
}

Napi::Value PeerCred(const Napi::CallbackInfo &info) {
  struct ucred cred {};
  socklen_t len = sizeof cred;
  if (getsockopt(info[0].As<Napi::Number>().Int32Value(), SOL_SOCKET, SO_PEERCRED, &cred, &len) != 0)
    throw errno_error(info.Env(), "SO_PEERCRED", errno, strerror(errno));
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("pid", cred.pid);
  out.Set("uid", cred.uid);
  out.Set("gid", cred.gid);
  return out;
}

// What a socket is, from the kernel itself: the daemon checks that an fd systemd passed is a
// listening Unix stream socket before serving it. Address family and type as the kernel numbers
// them (AF_*, SOCK_*); path is getsockname's ('@' for each NUL of an abstract one), absent if
// unnamed.
Napi::Value SocketInfo(const Napi::CallbackInfo &info) {
  if (!info[0].IsNumber()) throw Napi::TypeError::New(info.Env(), "socketInfo(fd)");
  int fd = info[0].As<Napi::Number>().Int32Value();
  int domain = 0, type = 0, listening = 0;
  socklen_t len = sizeof domain;
  if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) != 0) throw errno_error(info.Env(), "SO_DOMAIN", errno, strerror(errno));
  len = sizeof type;
  if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) != 0) throw errno_error(info.Env(), "SO_TYPE", errno, strerror(errno));
  len = sizeof listening;
  if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0)
    throw errno_error(info.Env(), "SO_ACCEPTCONN", errno, strerror(errno));
  Napi::Object out = Napi::Object::New(info.Env());
  out.Set("domain", domain);
  out.Set("type", type);
  out.Set("listening", Napi::Boolean::New(info.Env(), listening != 0));
  if (domain == AF_UNIX) {
    struct sockaddr_un addr {};
    socklen_t addrlen = sizeof addr;
    if (getsockname(fd, reinterpret_cast<sockaddr *>(&addr), &addrlen) != 0)
      throw errno_error(info.Env(), "getsockname", errno, strerror(errno));
    size_t n = addrlen > offsetof(struct sockaddr_un, sun_path) ? addrlen - offsetof(struct sockaddr_un, sun_path) : 0;
    if (n > 0 && addr.sun_path[0] == '\0') {
      // An abstract name is n bytes, NULs included: written as the kernel lists it in
      // /proc/net/unix, each NUL as '@'.
      std::string name(addr.sun_path, n);
      for (char &c : name) if (c == '\0') c = '@';
      out.Set("path", Napi::String::New(info.Env(), name));
    } else if (n > 0) {
      // A pathname address may or may not count its terminating NUL.
      out.Set("path", Napi::String::New(info.Env(), std::string(addr.sun_path, strnlen(addr.sun_path, n))));
    }
  }
  return out;
}

// sd_notify without libsystemd: one datagram to $NOTIFY_SOCKET ('@' = abstract address).
Napi::Value Notify(const Napi::CallbackInfo &info) {
  std::string path = info[0].As<Napi::String>().Utf8Value();
  std::string message = info[1].As<Napi::String>().Utf8Value();
  struct sockaddr_un addr {};
  addr.sun_family = AF_UNIX;
  if (path.empty() || path.size() >= sizeof addr.sun_path)
    throw Napi::RangeError::New(info.Env(), "notify: bad socket path");
  memcpy(addr.sun_path, path.data(), path.size());
  if (addr.sun_path[0] == '@') addr.sun_path[0] = '\0';
  socklen_t len = offsetof(struct sockaddr_un, sun_path) + path.size();
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw errno_error(info.Env(), "socket", errno, strerror(errno));
  ssize_t n = sendto(fd, message.data(), message.size(), MSG_NOSIGNAL, reinterpret_cast<sockaddr *>(&addr), len);
  int err = errno;
  close(fd);
  if (n < 0) throw errno_error(info.Env(), "sendto", err, std::string("notify: ") + strerror(err));
  return info.Env().Undefined();
}

Napi::Value ShareRunBase(const Napi::CallbackInfo &info) {
  if (!info[0].IsString() || !info[1].IsBoolean()) throw Napi::TypeError::New(info.Env(), "shareRunBase(path, bindFirst)");
  try {
    share_run_base(info[0].As<Napi::String>().Utf8Value(), info[1].As<Napi::Boolean>().Value());
  } catch (const std::system_error &e) {
    throw errno_error(info.Env(), "mount", e.code().value(), e.what());
  }
  return info.Env().Undefined();
}

double number_field(const Napi::Object &obj, const char *key) {
  Napi::Value v = obj.Get(key);
  if (!v.IsNumber()) throw Napi::TypeError::New(obj.Env(), std::string("mountRunDisk: ") + key + " must be a number");
  double d = v.As<Napi::Number>().DoubleValue();
  if (!(d >= 0) || d > 9007199254740991.0) throw Napi::RangeError::New(obj.Env(), std::string("mountRunDisk: ") + key + " is out of range");
  return d;
}

Napi::Value MountRunDisk(const Napi::CallbackInfo &info) {
  if (!info[0].IsString() || !info[1].IsObject()) throw Napi::TypeError::New(info.Env(), "mountRunDisk(path, options)");
  Napi::Object o = info[1].As<Napi::Object>();
  RunDiskOptions options;
  options.size_bytes = (unsigned long long)number_field(o, "sizeBytes");
  options.inodes = (unsigned long long)number_field(o, "inodes");
  options.mode = (unsigned)number_field(o, "mode");
  options.uid = (uid_t)number_field(o, "uid");
  options.gid = (gid_t)number_field(o, "gid");
  try {
    mount_run_disk(info[0].As<Napi::String>().Utf8Value(), options);
  } catch (const std::system_error &e) {
    throw errno_error(info.Env(), "mount", e.code().value(), e.what());
  }
  return info.Env().Undefined();
}

// Synchronous on purpose, as Node's own sync fs calls were here: the caller hands over a few
// hundred files or a megabyte at a time and yields to the event loop between batches; a trip
// through the thread pool would cost more than the batch.
Napi::Value WriteRunFiles(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsString() || !info[1].IsArray() || !info[2].IsArray() || !info[3].IsArray() || !info[4].IsObject())
    throw Napi::TypeError::New(env, "writeRunFiles(dir, names, data, modes, owner, forceWalk?)");
  std::string root = info[0].As<Napi::String>().Utf8Value();
  Napi::Array names = info[1].As<Napi::Array>(), data = info[2].As<Napi::Array>(), modes = info[3].As<Napi::Array>();
  uint32_t count = names.Length();
  if (data.Length() != count || modes.Length() != count) throw Napi::TypeError::New(env, "writeRunFiles: names, data and modes differ in length");
  Napi::Object o = info[4].As<Napi::Object>();
  if (!o.Get("uid").IsNumber() || !o.Get("gid").IsNumber()) throw Napi::TypeError::New(env, "writeRunFiles: owner must be {uid, gid}");
  RunFilesOwner owner;
  owner.uid = (uid_t)o.Get("uid").As<Napi::Number>().Uint32Value();
  owner.gid = (gid_t)o.Get("gid").As<Napi::Number>().Uint32Value();
  const bool force_walk = info[5].IsBoolean() && info[5].As<Napi::Boolean>().Value();
  std::vector<std::string> held(count);
  std::vector<RunFile> files(count);
  for (uint32_t i = 0; i < count; i++) {
    Napi::Value name = names[i], bytes = data[i], mode = modes[i];
    if (!name.IsString() || !bytes.IsTypedArray() || !mode.IsNumber()) throw Napi::TypeError::New(env, "writeRunFiles: entry " + std::to_string(i) + " is not (string, Uint8Array, number)");
    Napi::TypedArray typed = bytes.As<Napi::TypedArray>();
    if (typed.TypedArrayType() != napi_uint8_array) throw Napi::TypeError::New(env, "writeRunFiles: data " + std::to_string(i) + " is not a Uint8Array");
    held[i] = name.As<Napi::String>().Utf8Value();
    if (held[i].find('\0') != std::string::npos) throw Napi::TypeError::New(env, "writeRunFiles: name " + std::to_string(i) + " contains NUL");
    Napi::Uint8Array u8 = bytes.As<Napi::Uint8Array>();
    files[i] = RunFile{held[i].c_str(), u8.Data(), u8.ByteLength(), (mode_t)mode.As<Napi::Number>().Uint32Value()};
  }
  RunFilesFailure failure;
  int err = write_run_files(root.c_str(), files.data(), files.size(), owner, force_walk, &failure);
  if (err) {
    std::string what = failure.index < 0 ? root : held[(size_t)failure.index];
    Napi::Error e = errno_error(env, failure.step, err, std::string("writeRunFiles: ") + failure.step + " " + what + ": " + strerror(err));
    e.Set("index", Napi::Number::New(env, (double)failure.index));
    throw e;
  }
  return Napi::Number::New(env, count);
}

// The umount runs on libuv's thread pool: freeing a full run disk (tens of thousands of inodes)
// takes the unmounting thread milliseconds, and that thread must not be the event loop's.
class UnmountWorker : public Napi::AsyncWorker {
 public:
  UnmountWorker(Napi::Env env, std::string dir)
      : Napi::AsyncWorker(env, "codejail.unmount"), dir_(std::move(dir)), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override { err_ = unmount_run_disk(dir_); }
  void OnOK() override {
    if (err_ == 0) {
      deferred_.Resolve(Env().Undefined());
      return;
    }
    deferred_.Reject(errno_error(Env(), "umount", err_, "umount " + dir_ + ": " + strerror(err_)).Value());
  }

 private:
  std::string dir_;
  Napi::Promise::Deferred deferred_;
  int err_ = 0;
};

// A kill round on the thread pool: the killer helper is a vfork'd child, and the calling thread
// waits until it has run, which on a busy host is a scheduling delay the event loop must not pay.
class KillRoundWorker : public Napi::AsyncWorker {
 public:
  KillRoundWorker(Napi::Env env, uid_t uid, uid_t first, uid_t count)
      : Napi::AsyncWorker(env, "codejail.killround"), uid_(uid), first_(first), count_(count), deferred_(Napi::Promise::Deferred::New(env)) {}
  Napi::Promise promise() { return deferred_.Promise(); }
  void Execute() override { err_ = kill_uid_round(uid_, first_, count_); }
  void OnOK() override {
    if (err_ && err_ != EAGAIN) {
      deferred_.Reject(errno_error(Env(), "kill_uid", err_, std::string("killUidRound: ") + strerror(err_)).Value());
      return;
    }
    deferred_.Resolve(Napi::Boolean::New(Env(), err_ == 0));
  }

 private:
  uid_t uid_, first_, count_;
  Napi::Promise::Deferred deferred_;
  int err_ = 0;
};

Napi::Value KillUidRoundAsync(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsNumber())
    throw Napi::TypeError::New(env, "killUidRoundAsync(uid, reapFirstUid, reapCount)");
  auto *worker = new KillRoundWorker(env, info[0].As<Napi::Number>().Uint32Value(), info[1].As<Napi::Number>().Uint32Value(),
                                     info[2].As<Napi::Number>().Uint32Value());
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

Napi::Value UnmountRunDisk(const Napi::CallbackInfo &info) {
  if (!info[0].IsString()) throw Napi::TypeError::New(info.Env(), "unmountRunDisk(path)");
  auto *worker = new UnmountWorker(info.Env(), info[0].As<Napi::String>().Utf8Value());
  Napi::Promise promise = worker->promise();
  worker->Queue();
  return promise;
}

Napi::Object Init(Napi::Env env, Napi::Object exports) {
  exports.Set("spawn", Napi::Function::New(env, Spawn, "spawn"));
  exports.Set("watchExit", Napi::Function::New(env, WatchExit, "watchExit"));
  exports.Set("pidfdSignal", Napi::Function::New(env, PidfdSignal, "pidfdSignal"));
  exports.Set("killUid", Napi::Function::New(env, KillUid, "killUid"));
  exports.Set("killUidRound", Napi::Function::New(env, KillUidRound, "killUidRound"));
  exports.Set("killUidRoundAsync", Napi::Function::New(env, KillUidRoundAsync, "killUidRoundAsync"));
  exports.Set("armDeadline", Napi::Function::New(env, ArmDeadline, "armDeadline"));
  exports.Set("disarmDeadline", Napi::Function::New(env, DisarmDeadline, "disarmDeadline"));
  exports.Set("armedDeadlines", Napi::Function::New(env, ArmedDeadlines, "armedDeadlines"));
  exports.Set("becomeSubreaper", Napi::Function::New(env, BecomeSubreaper, "becomeSubreaper"));
  exports.Set("closeFd", Napi::Function::New(env, CloseFd, "closeFd"));
  exports.Set("landlockAbi", Napi::Function::New(env, LandlockAbi, "landlockAbi"));
  exports.Set("mallocTrim", Napi::Function::New(env, MallocTrim, "mallocTrim"));
  exports.Set("seccompSupported", Napi::Function::New(env, SeccompSupported, "seccompSupported"));
  exports.Set("createNamespace", Napi::Function::New(env, CreateNamespace, "createNamespace"));
  exports.Set("peerCred", Napi::Function::New(env, PeerCred, "peerCred"));
  exports.Set("socketInfo", Napi::Function::New(env, SocketInfo, "socketInfo"));
  exports.Set("notify", Napi::Function::New(env, Notify, "notify"));
  exports.Set("shareRunBase", Napi::Function::New(env, ShareRunBase, "shareRunBase"));
  exports.Set("mountRunDisk", Napi::Function::New(env, MountRunDisk, "mountRunDisk"));
  exports.Set("writeRunFiles", Napi::Function::New(env, WriteRunFiles, "writeRunFiles"));
  exports.Set("unmountRunDisk", Napi::Function::New(env, UnmountRunDisk, "unmountRunDisk"));
  register_warm(env, exports);
  return exports;
}

}  // namespace

NODE_API_MODULE(codejail, Init)
