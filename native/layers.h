/*
 * Per-layer pieces of the confinement core. Each "apply" function runs in the child between
 * clone and execve: async-signal-safe, returns 0 or an errno value. Each "prepare" function runs
 * in the daemon before the clone and may allocate.
 */
#ifndef CODEJAIL_LAYERS_H
#define CODEJAIL_LAYERS_H

#include <string>
#include <vector>
#include <sys/types.h>
#include <linux/filter.h>
#include "confine.h"

namespace codejail {

/* Raw system call that returns -errno instead of touching errno (errno is thread-local, and a
 * CLONE_VM child shares the parent thread's TLS block). */
long raw_syscall(long nr, long a = 0, long b = 0, long c = 0, long d = 0, long e = 0, long f = 0);

/* credentials.cc */
int apply_credentials(uid_t uid, gid_t gid, cj_step *failed_step);

/* rlimits.cc */
int apply_rlimits(const cj_rlimit *limits, size_t count);

/* namespaces.cc */
int apply_namespace(int ns_fd, int nstype);
/* Creates a namespace of the given CLONE_NEW* type on a short-lived thread and returns an fd
 * for it (the namespace stays alive as long as the fd does). Throws std::system_error. */
int create_namespace(int nstype);
// A private copy of the current mount namespace in which each directory of `hide` is covered by
// an empty tmpfs no entry can be added to (mode 0555, one inode). Returns an fd of it for setns().
int create_mount_namespace(const std::vector<std::string> &hide);

/* rundisk.cc: daemon side only (nothing here runs in the child). Each throws std::system_error. */
struct RunDiskOptions {
  unsigned long long size_bytes = 0;  // 0: unlimited
  unsigned long long inodes = 0;      // 0: unlimited
  unsigned mode = 0700;               // of the tmpfs root
  uid_t uid = 0;
  gid_t gid = 0;
};
// Makes run_base a shared mount (bind-mounting it onto itself first when it is not a mount
// point), so that run disks mounted beneath it propagate into the runs' (slave) namespace.
void share_run_base(const std::string &run_base, bool bind_first);
void mount_run_disk(const std::string &dir, const RunDiskOptions &options);
int unmount_run_disk(const std::string &dir);  // 0 or an errno value

/* cgroup.cc */
int apply_cgroup(const int *procs_fds, size_t count);

/* landlock.cc */
struct LandlockPolicy {
  std::vector<std::string> execute;         // read + execute
  std::vector<std::string> read;            // read files, list dirs
  std::vector<std::string> read_write;      // everything but execute, beneath these dirs
  std::vector<std::string> read_write_files;// read + write existing files (/dev/null)
  bool deny_tcp = true;                     // ABI >= 4
  bool scope = true;                        // ABI >= 6
};
int landlock_abi();  // 0 when Landlock is unavailable
/* Builds a ruleset for the policy; returns its fd (caller closes). Throws std::system_error. */
int prepare_landlock(const LandlockPolicy &policy);
int apply_landlock(int ruleset_fd);

/* seccomp.cc */
// Built once, never freed. `warm`: also refuses execve (a warm run never needs one).
const sock_fprog *seccomp_program(bool warm = false);
// In a child: the program if seccomp_program has built it, else NULL (never builds).
// A child of a template that installed its own filter (install_template_seccomp) gets the tail
// that completes it, for a warm program.
const sock_fprog *built_seccomp_program(bool warm);
// In a warm template, once, before its first fork: the warm policy but setns (its children join
// the runs' namespaces before their seccomp step). Returns 0 or an errno value.
int install_template_seccomp();
bool seccomp_supported();
int apply_seccomp(const sock_fprog *program);

/* apparmor.cc */
/* Formats the attribute string: "exec <profile>" for an unconfined caller, "stack <profile>"
 * when the caller is itself confined and no_new_privs would forbid a transition. */
std::string prepare_apparmor(const std::string &profile);
/* "changeprofile <profile>" ("stack <profile>" when confined), for the current attribute: a warm
 * run switches at once, since it has no execve to wait for. */
std::string prepare_apparmor_now(const std::string &profile);
/* Writes the attribute: to the current one when `now` (switch at once), else to the exec one. */
int apply_apparmor(const char *attr, size_t len, bool now);

}  // namespace codejail

#endif
