"""A child that waits to be let go: the fork-and-pipe handshake of a user namespace.

A process in a new user namespace has no ids until a process outside writes its maps
(user_namespaces(7)), so the child unshares, says it is ready through one pipe, and
waits on another for the parent's go; the parent writes the maps (newuidmap(1), or
/proc/PID/uid_map itself), sets up what else the child needs (a network helper), and
lets it go on to exec its command.  zookeeper makes the same handshake around
clone(2) (container.py, the lesson itself) and around the unshare(2) of the helper
that removes a container's files as its root (rootfs.remove_as_container_root): a
part stands alone, and imports nothing of the grader's.  This one is the tools' own:
the image build's `vm.py _userns` (image.py) and the network benchmark's
bench/nsrun.py, which copies this file beside itself.  Standard library only.
"""

from __future__ import annotations

import os
from collections.abc import Callable

READY, GO = b"r", b"g"


def fork_waiting_child(prepare: Callable[[], None],
                       then: Callable[[], None]) -> tuple[int, int | None]:
    """Fork a child that runs prepare() (its unshare, say), tells us it is ready and
    waits for go, then runs then(), which should exec and never return.  Returns
    (pid, go_fd) once the child is ready; go_fd is None when prepare failed (the
    child exits with 125 and needs only reaping, with let_go).  An exception in the
    child ends it with 125 (then() reports its own errors first)."""
    ready_read, ready_write = os.pipe()
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:
        try:
            os.close(ready_read)
            os.close(go_write)
            prepare()
            os.write(ready_write, READY)
            os.close(ready_write)
            if os.read(go_read, 1) == GO:
                os.close(go_read)
                then()
        finally:
            os._exit(125)
    os.close(ready_write)
    os.close(go_read)
    ready = os.read(ready_read, 1) == READY
    os.close(ready_read)
    if not ready:
        os.close(go_write)
        return pid, None
    return pid, go_write


def let_go(pid: int, go_fd: int | None, go: bool = True) -> int:
    """Tell the child to go on (or, go=False or go_fd None, to stop: it exits 125),
    wait for it, and return its status as a shell gives it (128 + N for signal N)."""
    if go_fd is not None:
        if go:
            os.write(go_fd, GO)
        os.close(go_fd)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    return code if code >= 0 else 128 - code
