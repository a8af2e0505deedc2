"""The grader's own children: a function of its run in a forked child that has
become another user (call_as), and programs that die with the grader (die_with_parent).

call_as is for the grader's own file work in a user's place (copying a submission as
its student, making a file a check needs as the user who runs it): no program of the
user's runs, and under TCG starting tar(1) or sh(1) would cost more than the few
system calls.  The identity is looked up by the caller: after fork(2), a child of
a threaded process should make system calls only (no NSS lookup, no lock taken).
Standard library only.
"""

from __future__ import annotations

import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class Identity:
    """Who the child becomes: a uid, its gid and its supplementary groups."""
    uid: int
    gid: int
    groups: list[int]


def call_as(fn: Callable, args: tuple = (), who: Identity | None = None,
            keep_root: bool = False, seconds: float | None = None) -> tuple[int, bytes, bool]:
    """fn(*args) in a child that runs as who (None: as this process), then _exit.
    keep_root: root stays the real and saved uid (setresuid(2)), so that files are
    made as the user's but kill(2) from the user's processes cannot stop the child;
    otherwise the child is the user for good, and holds nothing of root's.
    Returns (status, what came back, timed_out): status 0 and the bytes fn returned
    (if it returned bytes), or 1 and the error's text (an OSError's own, else
    "grader error: ..."); past seconds, the child is killed."""
    said_read, said_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: only system calls, then _exit (no cleanup of ours)
        status, said = 1, b""
        try:
            os.close(said_read)
            if who:
                os.setgroups(who.groups)
                os.setresgid(who.gid, who.gid, who.gid)
                real = 0 if keep_root else who.uid
                os.setresuid(real, who.uid, real)
            returned = fn(*args)
            said = returned if isinstance(returned, bytes) else b""
            status = 0
        except OSError as e:
            said = str(e).encode(errors="replace")
        except BaseException as e:  # the grader's own mistake: said as such
            said = f"grader error: {e!r}".encode(errors="replace")
        finally:
            try:
                os.write(said_write, said)
            finally:
                os._exit(status)
    os.close(said_write)
    try:
        said, timed_out = read_within(said_read, seconds)
    finally:
        os.close(said_read)
    if timed_out:
        os.kill(pid, signal.SIGKILL)
    return os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]), said, timed_out


def die_with_parent(signum: int = signal.SIGKILL) -> Callable[[], None] | None:
    """A preexec_fn that asks the kernel to send the child signum (SIGKILL) when we die
    (Linux): the image build's helpers, QEMU, the runner of a --local grading (sent
    SIGTERM: it stops its checks and cleans up) and collect's git never outlive a
    grader killed with SIGKILL (or by the OOM killer).  The kernel sends it when the
    thread that started the child ends (prctl(2) PR_SET_PDEATHSIG): start children
    from threads that live as long as the work (a pool's workers)."""
    try:
        import ctypes

        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    pr_set_pdeathsig = 1

    def preexec() -> None:
        prctl(pr_set_pdeathsig, signum, 0, 0, 0)

    return preexec


def read_within(fd: int, seconds: float | None) -> tuple[bytes, bool]:
    """What comes on fd until its end of file, or until seconds have passed (None: no
    limit); and whether they passed first."""
    said, deadline = b"", None if seconds is None else time.monotonic() + seconds
    while True:
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and (left <= 0 or not select.select([fd], [], [], left)[0]):
            return said, True
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        said += chunk
    return said, False
