#!/usr/bin/env python3
"""Run a command the way an unprivileged Docker container (and a `docker build` step,
where Gradescope runs setup.sh) would: as root, but without CAP_SYS_ADMIN and under a
seccomp filter that, as Docker's default profile does for such a container, refuses
mount(2), namespaces (unshare, setns, clone with a CLONE_NEW* flag; clone3 looks
absent), the kernel keyring, BPF, kernel modules and reboot.

    unprivileged_container.py COMMAND [ARG...]

A stand-in for Gradescope's container, which cannot be run here; its image is Ubuntu,
this is the host's system.
"""

import ctypes
import errno
import os
import sys

import pyseccomp

CLONE_NEW_FLAGS = [0x00020000, 0x02000000, 0x04000000, 0x08000000, 0x10000000, 0x20000000,
                   0x40000000]  # NEWNS, NEWCGROUP, NEWUTS, NEWIPC, NEWUSER, NEWPID, NEWNET
REFUSED = ["mount", "umount2", "pivot_root", "unshare", "setns", "keyctl", "add_key",
           "request_key", "bpf", "init_module", "finit_module", "delete_module",
           "kexec_load", "reboot", "swapon", "swapoff", "open_by_handle_at"]
CAP_SYS_ADMIN = 21
PR_CAPBSET_DROP = 24


def load_filter() -> None:
    rules = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for name in REFUSED:
        rules.add_rule(pyseccomp.ERRNO(errno.EPERM), name)
    for flag in CLONE_NEW_FLAGS:  # clone's first argument holds the flags on x86_64
        rules.add_rule(pyseccomp.ERRNO(errno.EPERM), "clone",
                       pyseccomp.Arg(0, pyseccomp.MASKED_EQ, flag, flag))
    rules.add_rule(pyseccomp.ERRNO(errno.ENOSYS), "clone3")
    rules.load()  # as root: no no_new_privs needed, and setuid programs keep working


def main(argv: list[str]) -> None:
    if not argv:
        sys.exit("usage: unprivileged_container.py COMMAND [ARG...]")
    # Out of the bounding set, so no program run from here on (root's included) gets
    # it; this process keeps it until the exec, long enough to load the filter.
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0:
        sys.exit(f"prctl(PR_CAPBSET_DROP): {os.strerror(ctypes.get_errno())}")
    load_filter()
    os.execvp(argv[0], argv)


if __name__ == "__main__":
    main(sys.argv[1:])
