"""Starting the helper programs the kernel leaves to user space.

Some steps are not system calls zookeeper may make itself: only the setuid helpers
newuidmap(1) and newgidmap(1) may grant a user's subordinate ids (user_namespaces(7)).
zookeeper starts each helper as a shell would, fork(2) then execvp(3), which
posix_spawnp(3) does in one call.  (Python's subprocess module would do the same, for
~5 ms of imports: a sixth of a container's start.)

A helper reads nothing: its stdin is /dev/null.  What a helper that zookeeper waits
for writes, on stdout or stderr, comes back through a pipe (pipe(7)): its last line
is the reason given when it fails.
"""

import errno
import os
import signal
import time

import kernel
import options
from errors import ZooError

# Every signal a process may set an action for (all but SIGKILL and SIGSTOP).
CATCHABLE_SIGNALS = signal.valid_signals() - {signal.SIGKILL, signal.SIGSTOP}
# The characters a shell takes literally: explain mode quotes any other word.
PLAIN = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_./=:,+@%")


def on_path(program: str) -> bool:
    """Is program an executable file in one of PATH's directories (as execvp(3) looks)?
    (shutil.which does the same, for ~4 ms of imports.)"""
    for directory in os.environ.get("PATH", os.defpath).split(os.pathsep):
        path = os.path.join(directory or ".", program)
        if os.path.isfile(path) and os.access(path, os.X_OK):
            return True
    return False


def require(program: str, package: str) -> None:
    """Stop before anything is made when a helper is not installed, naming its package."""
    if not on_path(program):
        path = options.shown(os.environ.get("PATH", os.defpath), 200)
        raise ZooError(f"{program} not found in PATH ({path}): install the {package} package "
                       f"(sudo apt-get install {package}), or put its directory in PATH")


def hand_over(keep: tuple = ()) -> None:
    """Of our descriptors past stderr, let the next helpers inherit only those in keep.

    Python opens its own close-on-exec (PEP 446), but not those our caller left open
    to us (a make jobserver's pipe, a shell's 3>file): close_range(2) marks every one
    close-on-exec, then os.set_inheritable hands over what a helper needs."""
    kernel.sys_close_range(3, flags=kernel.CLOSE_RANGE_CLOEXEC)
    for fd in keep:
        os.set_inheritable(fd, True)


def start(argv: list[str], output: int, env=None) -> int:
    """posix_spawnp(3): start argv[0], found on PATH as execvp(3) finds it; its pid.

    Its stdin is /dev/null, its stdout and stderr go to the descriptor `output`, and
    of our other descriptors it inherits those hand_over() left inheritable.  env: its
    environment (ours by default).  It runs in a session of its own (setsid(2)): a
    Ctrl-C at the terminal is zookeeper's to pass on to the container, not a helper's.
    Its signals are as a new process's: none blocked, none ignored (an ignored signal
    stays ignored across execve(2), and our caller's or Python's, SIGTERM or SIGXFSZ,
    would make a helper deaf to the one that stops it).
    """
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_DUP2, output, 1), (os.POSIX_SPAWN_DUP2, output, 2)]
    return os.posix_spawnp(argv[0], argv, os.environ if env is None else env,
                           file_actions=actions, setsid=True, setsigmask=(),
                           setsigdef=CATCHABLE_SIGNALS)


def run(commands: list[list[str]], env=None) -> None:
    """Run helper programs side by side (newuidmap and newgidmap) and wait for them
    all; OSError for the first that fails, with the last line it wrote as the reason."""
    started = time.monotonic()
    hand_over()
    running = []
    try:
        for argv in commands:
            running.append((argv, *start_with_pipe(argv, env, started)))
    finally:  # every helper started is waited for, even if a later one failed to start
        failures = [finish(*helper, started) for helper in running]
    for failure in failures:
        if failure:
            raise failure


def start_with_pipe(argv: list[str], env, started: float) -> tuple[int, int]:
    """Start one helper writing into a new pipe: (its pid, the pipe's end we read)."""
    said_read, said_write = os.pipe()
    try:
        pid = start(argv, said_write, env)
    except OSError as e:
        os.close(said_read)
        kernel.explain_error(shown(argv), e, f"{argv[0]}(1)", started)
        raise
    finally:
        os.close(said_write)  # the helper's copy is the only writer left
    return pid, said_read


def finish(argv: list[str], pid: int, said_read: int, started: float) -> OSError | None:
    """Read what a helper writes until it ends, and reap it: None, or why it failed."""
    said = kernel.read_to_end(said_read).decode(errors="replace").strip().splitlines()
    status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
    if status != 0:
        reason = (said or [f"exit status {status}"])[-1]
        kernel.explain(shown(argv), f"failed: {reason}", f"{argv[0]}(1)", started)
        return OSError(errno.EPERM, reason)
    kernel.explain(shown(argv), said[-1] if said else "ok", f"{argv[0]}(1)", started)
    return None


def shown(argv: list[str]) -> str:
    """The command as explain mode prints it: as a shell would take it, quoted."""
    return " ".join(word if word and set(word) <= PLAIN else f"'{word}'" for word in argv)


def spawn(argv: list[str], log: int, keep: tuple) -> int:
    """Start a helper that runs beside the container (slirp4netns) and return its pid,
    without waiting for it.

    It writes to `log` and inherits the descriptors in `keep`, no other.  In its own
    session (start), a Ctrl-C at the terminal does not cut the container's network.
    """
    started = time.monotonic()
    call = f"posix_spawnp({shown(argv)})"
    hand_over(keep)
    try:
        pid = start(argv, log)
    except OSError as e:
        kernel.explain_error(call, e, "posix_spawn(3)", started)
        raise ZooError(f"failed to start {argv[0]}: {e.strerror}") from None
    kernel.explain(call, str(pid), "posix_spawn(3)", started)
    return pid
