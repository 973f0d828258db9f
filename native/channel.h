// A warm template's channel: one SOCK_SEQPACKET socket pair between the daemon and a template
// interpreter. Messages keep their boundaries, and fds travel with them (SCM_RIGHTS). Daemon side
// only: these allocate and never block (MSG_DONTWAIT).
#ifndef CODEJAIL_CHANNEL_H
#define CODEJAIL_CHANNEL_H

#include <sys/types.h>
#include <sys/uio.h>

#include <vector>

namespace codejail {

// At most this many fds ride on one message, each way.
constexpr size_t kChannelMaxFds = 16;

// Sends one message made of `parts` with `fds`. Returns 0 or an errno value (EAGAIN: the
// template has not read what was sent before; the socket buffer is full).
int channel_send(int sock, const struct iovec *parts, size_t n_parts, const int *fds, size_t nfds);

// Receives one message into buf (cap bytes); the fds it carried (close-on-exec) are appended to
// `fds`. Returns its length, 0 at end of file, or -errno (-EAGAIN: nothing to read; -EMSGSIZE:
// the message or its fds did not fit, and what did arrive was closed).
ssize_t channel_receive(int sock, void *buf, size_t cap, std::vector<int> &fds);

}  // namespace codejail

#endif
