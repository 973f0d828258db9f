// N-API surface of the warm templates' channel: a socket pair to hand a template, sending it runs
// (warm_send.cc), and reading its replies on the event loop (a uv_poll_t, no thread).
#include <napi.h>
#include <uv.h>

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>
#include <memory>
#include <unordered_map>

#include "addon.h"
#include "channel.h"
#include "warm_send.h"

namespace codejail {
namespace {

// Replies from a template are small (JSON of a few fields); a larger one is refused.
constexpr size_t kReplyMaxBytes = 64 * 1024;
// Messages read per wake-up before yielding to the rest of the loop.
constexpr int kReadsPerWake = 64;

struct ChannelWatch {
  uv_poll_t poll;
  int fd;
  uint32_t id;
  bool closing = false;
  napi_env env;
  Napi::FunctionReference on_message;
  Napi::FunctionReference on_end;
  std::unique_ptr<Napi::AsyncContext> context;
};

std::unordered_map<uint32_t, ChannelWatch *> watches;
uint32_t next_watch_id = 1;

void on_watch_closed(uv_handle_t *handle) { delete static_cast<ChannelWatch *>(handle->data); }

void stop_watch(ChannelWatch *w) {
  if (w->closing) return;
  w->closing = true;
  watches.erase(w->id);
  uv_poll_stop(&w->poll);
  uv_close(reinterpret_cast<uv_handle_t *>(&w->poll), on_watch_closed);
}

void on_channel_ready(uv_poll_t *handle, int status, int events) {
  auto *w = static_cast<ChannelWatch *>(handle->data);
  Napi::Env env(w->env);
  Napi::HandleScope scope(env);
  static thread_local char buf[kReplyMaxBytes];
  for (int i = 0; i < kReadsPerWake && !w->closing; i++) {
    std::vector<int> fds;
    ssize_t n = channel_receive(w->fd, buf, sizeof buf, fds);
    if (n == -EAGAIN) return;
    if (n <= 0 && n != -EMSGSIZE) {
      // End of file (the template exited) or a broken socket: the watch ends here.
      Napi::FunctionReference on_end = std::move(w->on_end);
      std::unique_ptr<Napi::AsyncContext> context = std::move(w->context);
      stop_watch(w);
      Napi::Value reason = n == 0 ? env.Null() : Napi::String::New(env, strerror((int)-n)).As<Napi::Value>();
      on_end.MakeCallback(env.Global(), {reason}, *context);
      return;
    }
    Napi::Value data = n == -EMSGSIZE ? env.Null() : Napi::Buffer<char>::Copy(env, buf, (size_t)n).As<Napi::Value>();
    Napi::Array list = Napi::Array::New(env, fds.size());
    for (size_t k = 0; k < fds.size(); k++) list.Set((uint32_t)k, fds[k]);
    w->on_message.MakeCallback(env.Global(), {data, list}, *w->context);
  }
}

Napi::Value ChannelPair(const Napi::CallbackInfo &info) {
  int sv[2];
  if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv) != 0)
    throw errno_error(info.Env(), "socketpair", errno, std::string("socketpair: ") + strerror(errno));
  Napi::Array out = Napi::Array::New(info.Env(), 2);
  out.Set(0u, sv[0]);
  out.Set(1u, sv[1]);
  return out;
}

Napi::Value WatchChannel(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsFunction() || !info[2].IsFunction())
    throw Napi::TypeError::New(env, "watchChannel(fd, onMessage, onEnd)");
  auto *w = new ChannelWatch();
  w->fd = info[0].As<Napi::Number>().Int32Value();
  w->id = next_watch_id++;
  w->env = env;
  w->on_message = Napi::Persistent(info[1].As<Napi::Function>());
  w->on_end = Napi::Persistent(info[2].As<Napi::Function>());
  w->context = std::make_unique<Napi::AsyncContext>(env, "codejail.channel");
  w->poll.data = w;
  uv_loop_t *loop = nullptr;
  napi_get_uv_event_loop(env, &loop);
  int err = uv_poll_init(loop, &w->poll, w->fd);
  if (err != 0) {
    delete w;
    throw Napi::Error::New(env, std::string("watchChannel: ") + uv_strerror(err));
  }
  err = uv_poll_start(&w->poll, UV_READABLE, on_channel_ready);
  if (err != 0) {
    w->closing = true;
    uv_close(reinterpret_cast<uv_handle_t *>(&w->poll), on_watch_closed);
    throw Napi::Error::New(env, std::string("watchChannel: ") + uv_strerror(err));
  }
  watches[w->id] = w;
  return Napi::Number::New(env, w->id);
}

// Stops reading (the fd itself stays open: the caller closes it after).
Napi::Value UnwatchChannel(const Napi::CallbackInfo &info) {
  auto it = watches.find(info[0].As<Napi::Number>().Uint32Value());
  if (it != watches.end()) stop_watch(it->second);
  return info.Env().Undefined();
}

Napi::Value ChannelSend(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsBuffer()) throw Napi::TypeError::New(env, "channelSend(fd, data)");
  Napi::Buffer<char> data = info[1].As<Napi::Buffer<char>>();
  struct iovec part = {data.Data(), data.Length()};
  int err = channel_send(info[0].As<Napi::Number>().Int32Value(), &part, 1, nullptr, 0);
  if (err) throw errno_error(env, "send", err, std::string("channelSend: ") + strerror(err));
  return env.Undefined();
}

Napi::Value SendWarmRun(const Napi::CallbackInfo &info) {
  Napi::Env env = info.Env();
  if (!info[0].IsNumber() || !info[1].IsNumber() || !info[2].IsObject() || !info[3].IsBuffer())
    throw Napi::TypeError::New(env, "sendWarmRun(fd, token, plan, tail[, held])");
  PlanRequest req = parse_plan(info[2].As<Napi::Object>());
  Napi::Buffer<char> tail = info[3].As<Napi::Buffer<char>>();
  RunEnds ends;
  try {
    ends = send_warm_run(info[0].As<Napi::Number>().Int32Value(), info[1].As<Napi::Number>().Uint32Value(), req,
                         std::string(tail.Data(), tail.Length()), info.Length() > 4 && info[4].ToBoolean().Value());
  } catch (const SpawnError &e) {
    throw errno_error(env, cj_step_name(e.step), e.err, e.what());
  } catch (const std::system_error &e) {
    throw errno_error(env, "send", e.code().value(), e.what());
  }
  Napi::Object out = Napi::Object::New(env);
  out.Set("stdin", ends.stdin_write.release());
  out.Set("stdout", ends.stdout_read.release());
  out.Set("stderr", ends.stderr_read.release());
  if (ends.result_read.fd >= 0) out.Set("result", ends.result_read.release());
  return out;
}

// Whether a pidfd's process has exited (its pidfd polls readable), without waiting. For a warm
// run, which is the template's child: the daemon cannot reap it, only see that it ended.
Napi::Value PidfdExited(const Napi::CallbackInfo &info) {
  struct pollfd p = {info[0].As<Napi::Number>().Int32Value(), POLLIN, 0};
  int n = poll(&p, 1, 0);
  return Napi::Boolean::New(info.Env(), n > 0 && (p.revents & (POLLIN | POLLHUP)) != 0);
}

// The name of a cj_step a warm child reports (FAIL), as the cold path names its steps.
Napi::Value StepName(const Napi::CallbackInfo &info) {
  int step = info[0].As<Napi::Number>().Int32Value();
  return Napi::String::New(info.Env(), step < 0 ? "message" : cj_step_name(static_cast<cj_step>(step)));
}

}  // namespace

void register_warm(Napi::Env env, Napi::Object exports) {
  exports.Set("channelPair", Napi::Function::New(env, ChannelPair, "channelPair"));
  exports.Set("watchChannel", Napi::Function::New(env, WatchChannel, "watchChannel"));
  exports.Set("unwatchChannel", Napi::Function::New(env, UnwatchChannel, "unwatchChannel"));
  exports.Set("channelSend", Napi::Function::New(env, ChannelSend, "channelSend"));
  exports.Set("sendWarmRun", Napi::Function::New(env, SendWarmRun, "sendWarmRun"));
  exports.Set("stepName", Napi::Function::New(env, StepName, "stepName"));
  exports.Set("pidfdExited", Napi::Function::New(env, PidfdExited, "pidfdExited"));
}

}  // namespace codejail
