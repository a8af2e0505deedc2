#!/usr/bin/env python3
"""The least a rootless container start can cost in Python: the start-latency floor.

    floor.py ROOTFS COMMAND...

Only what any Python container manager must do, in the cheapest way, with no error
messages, checks, options or cleanup: import ctypes; clone(2) a child into the seven
namespaces zookeeper uses; map its ids with newuidmap(1) and newgidmap(1) side by
side; in the child, make the mounts private, bind ROOTFS onto itself, pivot_root(2)
into it, detach the old root, and exec COMMAND.  No /dev, no capabilities, no
seccomp.  Exit status: COMMAND's, or 125.

The benchmark times it beside zookeeper and `python3 -c pass`: the distance from
here to zookeeper is what zookeeper's own Python costs; the distance from
`python3 -c pass` to here is what no Python implementation can save.
"""

import ctypes
import os
import sys

SYS_clone, SYS_pivot_root = 56, 155  # x86_64
CLONE_NAMESPACES = 0x10000000 | 0x02000000 | 0x08000000 | 0x40000000 | 0x00020000 \
    | 0x20000000 | 0x04000000  # user, cgroup, IPC, net, mount, PID, UTS
SIGCHLD = 17
MS_BIND, MS_REC, MS_PRIVATE, MNT_DETACH = 0x1000, 0x4000, 0x40000, 0x2

libc = ctypes.CDLL(None, use_errno=True)
pylibc = ctypes.PyDLL(None, use_errno=True)
pylibc.syscall.restype = ctypes.c_long
pylibc.syscall.argtypes = [ctypes.c_long] + [ctypes.c_ulong] * 5


# The first line for the user, unchecked: the floor pays for no validation (the
# grader's reader, grader/subids.py, checks each line but imports pathlib).
def subid_range(path: str, uid: int, name: str) -> list[str]:
    with open(path) as f:
        for line in f:
            who, start, count = line.strip().split(":")
            if who in (name, str(uid)):
                return [start, count]
    sys.exit(125)


def clone() -> int:
    """clone(2) like fork(2), with Python's fork hooks (as zookeeper's kernel.sys_clone)."""
    ctypes.pythonapi.PyOS_BeforeFork()
    pid = pylibc.syscall(SYS_clone, CLONE_NAMESPACES | SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
    else:
        ctypes.pythonapi.PyOS_AfterFork_Parent()
    return pid


def child(go: int, rootfs: bytes, command: list[str]) -> None:
    os.read(go, 1)
    ok = (libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None) == 0
          and libc.mount(rootfs, rootfs, None, MS_BIND | MS_REC, None) == 0)
    os.chdir(rootfs)
    ok = ok and (libc.syscall(ctypes.c_long(SYS_pivot_root), b".", b".") == 0
                 and libc.umount2(b".", MNT_DETACH) == 0)
    if ok:
        os.chdir("/")
        try:
            os.execv(command[0], command)
        except OSError:
            pass
    os._exit(125)


def main() -> None:
    rootfs, command = os.fsencode(sys.argv[1]), sys.argv[2:]
    uid, gid = os.getuid(), os.getgid()
    name = os.environ.get("USER", "")
    maps = [("newuidmap", uid, subid_range("/etc/subuid", uid, name)),
            ("newgidmap", gid, subid_range("/etc/subgid", uid, name))]
    go_read, go_write = os.pipe()
    pid = clone()
    if pid == 0:
        child(go_read, rootfs, command)
    helpers = [os.posix_spawnp(tool, [tool, str(pid), "0", str(own), "1", "1", *subids],
                               os.environ) for tool, own, subids in maps]
    if any(os.waitpid(helper, 0)[1] for helper in helpers):
        os._exit(125)
    os.write(go_write, b"g")
    status = os.waitpid(pid, 0)[1]
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 125)


if __name__ == "__main__":
    main()
