"""How zookeeper fails: one line on stderr naming the step, and an exit status.

    zookeeper: failed to mount proc at /tmp/zoo.ab12/proc: Operation not permitted

Statuses follow podman: 125 when zookeeper itself fails, 126 when the command was
found but cannot be executed, 127 when it was not found.
"""

import os
import signal

FAILED = 125
NOT_EXECUTABLE = 126
NOT_FOUND = 127
# What a failed write(2) raises: a pipe nobody reads, a file at ulimit -f's size.
WRITE_SIGNALS = (signal.SIGPIPE, signal.SIGXFSZ)


class ZooError(Exception):
    """An expected failure: its message is printed as one line, no traceback."""

    def __init__(self, message: str, status: int = FAILED):
        super().__init__(message)
        self.message = message
        self.status = status

    @classmethod
    def internal(cls, error: BaseException, place: str = "") -> "ZooError":
        """A bug, said in one line all the same, with where it was raised: the innermost
        two frames of its traceback ('kernel.py:240 in sys_prctl, from security.py:88
        in drop_capabilities'), which one line would otherwise lose."""
        frames = []
        tb = error.__traceback__
        while tb is not None:
            code = tb.tb_frame.f_code
            frames.append(f"{os.path.basename(code.co_filename)}:{tb.tb_lineno} in "
                          f"{code.co_name}")
            tb = tb.tb_next
        where = ", from ".join(reversed(frames[-2:]))
        return cls(f"internal error{place}: {error!r}" + (f" at {where}" if where else ""))


class step:
    """Name a step so its failure reads well:

        with step("make the pipes to the container"):
            go_read, go_write = os.pipe()

    turns OSError(EMFILE) into ZooError("failed to make the pipes to the container: Too
    many open files").
    """

    def __init__(self, what: str):
        self.what = what

    def __enter__(self):
        return self

    def __exit__(self, kind, value, tb):
        if isinstance(value, OSError):
            raise ZooError(f"failed to {self.what}: {value.strerror or value}") from None
        return False


def warn(message: str) -> None:
    """One line on stderr: a warning, or the error zookeeper exits with.  Never raises:
    with stderr closed (`2>&-`) the line is lost, not the exit status."""
    write_quietly(2, f"zookeeper: {printable(message)}\n")


def write_quietly(fd: int, text: str) -> None:
    """write(2) text, and nothing more if it cannot be written: the exit status still
    tells.

    A write to a pipe nobody reads raises SIGPIPE, and one past the limit on a file's
    size (ulimit -f) SIGXFSZ; Python ignores both, so the write fails with EPIPE or
    EFBIG instead.  The child gives them back their default action, death, just
    before exec (clean_process_state): for a line it writes after that (-v's
    execvp, in part 1, where the child is not PID 1 of a namespace, which these do
    not kill: pid_namespaces(7)), they are ignored again, or `-v 2>&1 | head -1`
    would kill it before the command runs."""
    restore = [s for s in WRITE_SIGNALS if signal.getsignal(s) == signal.SIG_DFL]
    for signum in restore:
        signal.signal(signum, signal.SIG_IGN)
    try:
        os.write(fd, text.encode())
    except OSError:
        pass
    finally:
        for signum in restore:
            signal.signal(signum, signal.SIG_DFL)


def printable(text: str) -> str:
    """text with what a terminal would not show as one line escaped: control
    characters (a newline in a path) as \\n or \\x1b, and bytes that are not UTF-8
    (Python hands them over as surrogates, os.fsdecode) as \\xff."""
    if text.isprintable():
        return text
    return "".join(char if char.isprintable() else escaped(char) for char in text)


def escaped(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # an undecodable byte, see PEP 383
        return f"\\x{code - 0xDC00:02x}"
    return char.encode("unicode_escape").decode("ascii")
