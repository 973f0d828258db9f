#include "channel.h"

#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace codejail {

int channel_send(int sock, const struct iovec *parts, size_t n_parts, const int *fds, size_t nfds) {
  if (nfds > kChannelMaxFds) return EINVAL;
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kChannelMaxFds)];
  struct msghdr msg {};
  msg.msg_iov = const_cast<struct iovec *>(parts);
  msg.msg_iovlen = n_parts;
  if (nfds) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * nfds);
    struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * nfds);
    memcpy(CMSG_DATA(cmsg), fds, sizeof(int) * nfds);
  }
  ssize_t n;
  do n = sendmsg(sock, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
  while (n < 0 && errno == EINTR);
  return n < 0 ? errno : 0;
}

ssize_t channel_receive(int sock, void *buf, size_t cap, std::vector<int> &fds) {
  alignas(struct cmsghdr) char control[CMSG_SPACE(sizeof(int) * kChannelMaxFds)];
  struct iovec iov = {buf, cap};
  struct msghdr msg {};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  msg.msg_control = control;
  msg.msg_controllen = sizeof control;
  ssize_t n;
  do n = recvmsg(sock, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
  while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  size_t first = fds.size();
  for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; i++) {
      int fd;
      memcpy(&fd, CMSG_DATA(c) + i * sizeof(int), sizeof fd);
      fds.push_back(fd);
    }
  }
  if (msg.msg_flags & (MSG_TRUNC | MSG_CTRUNC)) {
    for (size_t i = first; i < fds.size(); i++) close(fds[i]);
    fds.resize(first);
    return -EMSGSIZE;
  }
  return n;
}

}  // namespace codejail
