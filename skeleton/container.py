"""How a container runs: the parent's side and the child's.

The parent (the zookeeper process, started by zookeeper.py) clones a child, does
what only it can do from outside (parent_main), then tells the child to go; the
child sets itself up and execs the command (child_main); the parent waits, cleans
up, and exits the way the child did.  From part 2 on, prepare() first readies what
must exist before the clone.
"""

import errno
import os
import resource
import select
import signal
import warnings  # noqa: F401  (os.execvp imports it: too late once our uid or / changed)

import cgroups
import idmap
import kernel
import network
import options
import rootfs
import security
from errors import FAILED, NOT_EXECUTABLE, NOT_FOUND, ZooError, step, warn, write_quietly
from exercise import not_implemented, part_of_directory

PART = part_of_directory(__file__)  # part3_seccomp/ -> 3 (exercise.py)

# How long a container may ignore SIGTERM or SIGINT before it is killed.
KILL_GRACE_SECONDS = 2
# The signals that end a process by default ("Term" and "Core" in signal(7)) and that
# come from outside it: Ctrl-C, kill, a closed terminal, Ctrl-\, the user's two, the
# timers', a power failure's, a CPU limit's (SIGXCPU), the real-time ones.  Held
# from zookeeper's first moment (zookeeper.py), passed on to the container once it
# runs, as `docker run` and `podman run` pass on every signal.  Not those the kernel
# sends a process for its own fault (SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGTRAP,
# SIGSYS: Python's handler would return to the faulting instruction), nor SIGPIPE
# and SIGXFSZ, which Python ignores, nor 32 and 33, which the C library keeps for
# its threads (nptl(7)).
SIGSTKFLT = getattr(signal, "SIGSTKFLT", 16)  # named from Python 3.11; 16 on x86_64, aarch64
FORWARDED_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                     signal.SIGUSR1, signal.SIGUSR2, signal.SIGALRM, signal.SIGVTALRM,
                     signal.SIGPROF, signal.SIGIO, signal.SIGPWR, signal.SIGXCPU,
                     signal.SIGABRT, SIGSTKFLT, *range(signal.SIGRTMIN, signal.SIGRTMAX + 1))
# Passed on without ending anything: Ctrl-Z (the container stops with us), fg and bg
# (it continues), a new terminal size.
JOB_SIGNALS = (signal.SIGTSTP, signal.SIGCONT, signal.SIGWINCH)
# fork(2), ERRORS, EAGAIN: the limits on processes that a clone may meet.
PROCESS_LIMIT_HINT = ("too many processes: a limit was reached (ulimit -u, a cgroup's "
                      "pids.max, kernel.threads-max or kernel.pid_max; fork(2))")


def main(argv: list[str]) -> None:
    """zookeeper [options] COMMAND: run COMMAND in a container, exit as it did."""
    open_missing_standard_fds()
    # A SIGCHLD our caller ignored would make the kernel reap our children itself, and
    # waitpid(2) find none (ECHILD): back to its default, for us and the container.
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    # What our caller ignored on purpose (nohup ignores SIGHUP) stays ignored.
    ignored = {s for s in FORWARDED_SIGNALS + JOB_SIGNALS
               if signal.getsignal(s) == signal.SIG_IGN}
    try:
        kernel.check_architecture()
        opts = options.parse_args(argv)
        if opts.help:
            write_usage()
            os._exit(0)
        check_free_descriptors()
        kernel.VERBOSE = opts.verbose
        if PART < 4:
            note_unreached("-r/-P/-o (the container's own filesystem)", 4,
                           opts.rootfs or opts.mount_proc or opts.overlay)
        if PART < 5:
            note_unreached("-m/-c/-p (resource limits)", 5,
                           opts.memory or opts.cpu or opts.procs)
        if PART < 6:
            note_unreached("-n (networking)", 6, opts.network)
        status = run_container(opts, ignored)
    except ZooError as e:
        warn(e.message)
        if isinstance(e, options.UsageError):
            write_quietly(2, options.USAGE)
        os._exit(e.status)
    exit_like(status)


def note_unreached(what: str, part: int, asked) -> None:
    """Options of a later part are accepted, and said to do nothing yet."""
    if asked:
        warn(f"note: {what}: from part {part} on; this part ignores it")


def write_usage() -> None:
    """-h: the usage on stdout.  One that cannot be written (-h > /dev/full) is no
    success; a reader that had enough (-h | head -1) is."""
    try:
        os.write(1, options.USAGE.encode())
    except BrokenPipeError:
        pass
    except OSError as e:
        raise ZooError(f"failed to write the usage: {e.strerror}") from None


# The file descriptors zookeeper may need at once: its pipes, pidfds and directories,
# the helpers it starts (newuidmap, slirp4netns) and, after a failure, its cleanup.
# Part 4 with -o needs 12 (measured with prlimit --nofile); twice that and more.
FEWEST_FREE_DESCRIPTORS = 32


def check_free_descriptors() -> None:
    """One line, before anything is made, when the limit on open files (ulimit -n,
    RLIMIT_NOFILE in getrlimit(2)) leaves too few free: otherwise a step would fail
    halfway with EMFILE, and the cleanup after it too, leaving its directories."""
    limit, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    try:  # what our caller left open counts against the limit too
        in_use = sum(1 for fd in os.listdir("/proc/self/fd") if int(fd) < limit)
    except FileNotFoundError:  # no /proc: stdin, stdout and stderr, at least
        in_use = min(3, limit)
    except OSError:  # EMFILE: not one left even to list them
        in_use = limit
    free = limit - in_use
    if free >= FEWEST_FREE_DESCRIPTORS:
        return
    if hard == resource.RLIM_INFINITY or hard - in_use >= FEWEST_FREE_DESCRIPTORS:
        fix = f"raise it: ulimit -n {1024 if hard == resource.RLIM_INFINITY else min(1024, hard)}"
    else:
        fix = f"its hard limit, {hard}, is too low too: only root can raise that"
    raise ZooError(f"too few files may be opened: {free} of ulimit -n's {limit} are free, "
                   f"zookeeper needs {FEWEST_FREE_DESCRIPTORS} ({fix})")


def open_missing_standard_fds() -> None:
    """With stdin, stdout or stderr closed (`2>&-`), the next file zookeeper opens
    would take that number, and the container would write into our pipes: put
    /dev/null there first, as daemons do."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)  # dup2 makes fd inheritable
                os.close(null)
            else:  # Python opens close-on-exec (PEP 446): the command would lose it
                os.set_inheritable(fd, True)


class Container:
    """What the parent prepares before the clone: the child gets a copy of it."""

    def __init__(self, opts, ignored_signals):
        self.opts = opts
        self.ignored_signals = ignored_signals  # what our caller ignored on purpose
        self.id_maps = None  # whom the container's ids map to
        self.seccomp_program = None  # the BPF program the child loads last
        self.fs = None  # the container's root filesystem
        self.limits = None  # its cgroup and the limits written there
        self.net = None  # its network


def run_container(opts, ignored=frozenset()) -> int:
    """Clone the child, let it go, wait for it; return its wait status."""
    container = Container(opts, ignored)
    cleanup = Cleanup()
    try:
        if PART >= 2:
            prepare(container, cleanup)
        with step("make the pipes to the container"):
            go_read, go_write = os.pipe()  # the child waits on this until we say go
            # The child reports a failure before exec here; exec closes it (O_CLOEXEC).
            error_read, error_write = os.pipe2(os.O_CLOEXEC)
        flags = signal.SIGCHLD
        if PART >= 2:
            # STUDENT CODE BELOW (q6)
            # Give the child its own namespaces: user, cgroup, IPC, network, mount,
            # PID and UTS.  namespaces(7), clone(2); the flags are in kernel.py.
            not_implemented(6, 2, 'give the child its own namespaces')
            # STUDENT CODE ABOVE (q6)
        # STUDENT CODE BELOW (q1)
        # Create the child with clone(2): clone_with_hint(flags) (below) calls
        # kernel.sys_clone(flags) and returns like fork(2), the child's pid here (keep
        # it in `pid`: the code after this block reads it) and 0 in the child, which
        # must then call child_main(container, go_read, go_write, error_read,
        # error_write), which never returns (`if pid == 0:`).  Call clone in a
        # `with step("clone the container process"):` (errors.py), as every system
        # call here: a failure then reads "zookeeper: failed to clone ...: <reason>".
        not_implemented(1, 1, 'create the child with clone(2)')
        # STUDENT CODE ABOVE (q1)
        if pid == 0:  # clone's return in the child, which must not get here
            report_failure(error_write, ZooError(
                "the child ran the parent's code: call child_main() "
                "where clone returned 0 (q1)"))
            os._exit(FAILED)
        os.close(go_read)
        os.close(error_write)
        return parent_main(container, pid, go_write, error_read, cleanup)
    finally:
        cleanup.run()


def prepare(container: Container, cleanup: "Cleanup") -> None:
    """What the parent readies before the clone, so that the child, once cloned,
    waits for as little as possible; what it makes, cleanup undoes."""
    container.id_maps = idmap.find_id_maps()
    if PART >= 3:
        container.seccomp_program = security.seccomp_program()
    if PART >= 4:
        # Checked, and its mount point made, before the clone.
        container.fs = rootfs.prepare(container.opts, idmap.container_root(container.id_maps))
        cleanup.add(container.fs.remove)
    if PART >= 5:
        # Where the container's cgroup will go (and, on systemd, our own scope).
        container.limits = cgroups.prepare(container.opts)
    if PART >= 6:
        container.net = network.prepare(container.opts)


def parent_main(container: Container, pid: int, go_write: int, error_read: int,
                cleanup: "Cleanup") -> int:
    """The parent's side once the child exists: what only it can do from outside,
    then go, then wait.  Returns the child's wait status."""
    reaped = False
    # On a failure from here on, the child dies first, before anything it uses
    # is taken away.
    cleanup.add(lambda: reaped or kill_if_running(pid), first=True)
    cleanup.add(watch_over(pid))
    signals = SignalForwarding(pid, container.ignored_signals)
    cleanup.add(signals.stop, first=True)  # before the child is killed and reaped
    failure = None
    try:
        if PART >= 2:
            idmap.write_id_maps(pid, container.id_maps)
        if PART >= 5:
            cleanup.add(container.limits.apply_to(pid))
        if PART >= 6:
            cleanup.add(container.net.start(pid))
        # STUDENT CODE BELOW (q2)
        # Tell the child to go: write a byte to the pipe it blocks on, and close it.
        # write(2), close(2), pipe(7).
        not_implemented(2, 1, 'tell the child to go')
        # STUDENT CODE ABOVE (q2)
        failure = read_child_failure(error_read)
        error_read = None  # read to its end, and closed
        if failure is None:
            signals.command_runs()
        # STUDENT CODE BELOW (q3)
        # Wait for the child to end with waitpid(2): kernel.sys_waitpid(pid) returns
        # its wait status; keep it in `status`, which main() turns into our own exit
        # (see exit_like).  In a `with step("wait for the container"):`, as q1's clone.
        not_implemented(3, 1, 'wait for the child to end with waitpid(2)')
        # STUDENT CODE ABOVE (q3)
        reaped = True
        signals.stop()
    except ZooError as ours:
        # A step of ours failed: maybe because the child failed first (then writing
        # go, say, meets a closed pipe: EPIPE).  Its report says why: once the
        # cleanup has killed it, the error pipe has no writer left.
        cleanup.run()
        if error_read is not None:  # not read yet
            failure = read_child_failure(error_read)
        raise failure or ours from None
    if failure:
        if PART >= 3:
            security.forget_refused_program(failure.message)  # a cache may only slow a start
        raise failure
    return status


def clone_with_hint(flags: int) -> int:
    """kernel.sys_clone(flags), with the reason spelled out when a limit or a setting
    of this machine explains the kernel's refusal."""
    try:
        return kernel.sys_clone(flags)
    except OSError as refusal:
        # clone(2) and fork(2), ERRORS: EAGAIN is a limit on processes.
        hint = PROCESS_LIMIT_HINT if refusal.errno == errno.EAGAIN else ""
        if PART >= 2:
            hint = hint or idmap.userns_refusal_hint()  # a user namespace may be refused
        if hint:
            raise ZooError(f"failed to clone the container process: {hint}") from None
        raise


def read_child_failure(error_read: int):
    """The child's report of a failure before exec, or None once exec succeeded."""
    data = kernel.read_to_end(error_read)
    if not data:
        return None
    status, _, message = data.decode(errors="surrogateescape").partition(" ")
    return ZooError(message, int(status))


class Cleanup:
    """Undo steps, run in reverse order on every way out (errors and signals too)."""

    def __init__(self):
        self.steps = []
        self.first_steps = []

    def add(self, undo, first: bool = False) -> None:
        (self.first_steps if first else self.steps).append(undo)

    def run(self) -> None:
        failures = []
        self.steps = self.steps + self.first_steps
        self.first_steps = []
        while self.steps:
            undo = self.steps.pop()
            try:
                undo()
            except ZooError as e:
                failures.append(e.message)
            except OSError as e:
                where = f" {e.filename}" if e.filename else ""
                failures.append(f"failed to clean up{where}: {e.strerror or e}")
            except Exception as e:  # a bug: the other steps still run, and no traceback
                failures.append(ZooError.internal(e).message)
        for message in failures:
            warn(f"cleanup: {message}")


def watch_over(pid: int):
    """A watcher process that kills the container if zookeeper dies; returns its stop.

    The child asks the kernel for that itself (die_with_parent), but the kernel
    forgets it when the command changes its uid (prctl(2)): `su`, a daemon dropping
    root, or a command that simply unsets it.  So a small process of ours, outside
    the container where nothing inside can reach it, waits for zookeeper to go (the
    pipe's other end closes with it) and then SIGKILLs the container, through a pidfd
    (pidfd_open(2)): never another process that got its pid number meanwhile.
    """
    with step("start the watcher"):
        pidfd = os.pidfd_open(pid)
        alive_read, alive_write = os.pipe()
        watcher = os.fork()  # its signals stay blocked: Ctrl-C cannot end it (zookeeper.py)
    if watcher == 0:
        keep = sorted((pidfd, alive_read))
        os.closerange(3, keep[0])  # nothing of ours: the child must see its pipes close
        os.closerange(keep[0] + 1, keep[1])
        os.closerange(keep[1] + 1, os.sysconf("SC_OPEN_MAX"))
        try:
            os.read(alive_read, 1)  # end of file: zookeeper is gone, or done
            signal.pidfd_send_signal(pidfd, signal.SIGKILL)
        except OSError:
            pass  # the container is gone already
        os._exit(0)
    os.close(alive_read)
    os.close(pidfd)

    def stop() -> None:
        os.close(alive_write)
        os.waitpid(watcher, 0)

    return stop


def kill_if_running(pid: int) -> None:
    """Kill and reap the child if setup failed after clone."""
    try:
        kernel.sys_kill(pid, signal.SIGKILL)
        kernel.sys_waitpid(pid)
    except ChildProcessError:
        pass
    except ProcessLookupError:
        pass


class SignalForwarding:
    """The FORWARDED_SIGNALS to zookeeper (SIGINT, SIGTERM, SIGHUP and the others
    that would end it) go to the container, whose default action for each is to end.

    They go to its process group, so that Ctrl-C reaches the command a shell in it
    runs.  PID 1 of a PID namespace gets only the signals it installed a handler for
    (pid_namespaces(7)): if it is still running KILL_GRACE_SECONDS after the first,
    SIGKILL it, unless its command runs with a handler for each signal passed on
    meanwhile.  One that came before the exec found the child's default actions: PID 1
    dropped it, so it is killed then.
    The signals were blocked since zookeeper started (zookeeper.py): one that came
    meanwhile is forwarded now.  Ctrl-Z (SIGTSTP) stops the container with us, and
    SIGCONT continues it; a new window size (SIGWINCH) is passed on.

    The grace period is timed with setitimer(2), whose SIGALRM another process may
    send too: while the timer still runs, a SIGALRM is another's, passed on.
    """

    def __init__(self, pid: int, ignored=frozenset()):
        self.pid = pid
        self.running = False  # the command runs: the child's exec succeeded
        self.early = False  # a signal came before that
        self.graced = set()  # the signals passed on since the grace period began
        self.stopped = False  # the child is reaped: its pid may be another's now
        self.ignored = ignored
        handlers = {signum: self.forward for signum in FORWARDED_SIGNALS}
        handlers[signal.SIGALRM] = self.alarm
        handlers.update(zip(JOB_SIGNALS, (self.pause, self.resume, self.pass_on)))
        for signum, handler in handlers.items():
            if signum not in ignored:
                signal.signal(signum, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, ())  # held until now: zookeeper.py

    def forward(self, signum, frame):
        if self.stopped:
            return
        # The timer before the signal: passing it on writes explain mode's line, and
        # a write to a full pipe (-v 2>&1 | less, paused) would hold us here.
        self.early = self.early or not self.running
        if not self.graced:  # the first since the last grace period: one begins
            signal.signal(signal.SIGALRM, self.alarm)  # ours, even if our caller ignored it
            signal.setitimer(signal.ITIMER_REAL, KILL_GRACE_SECONDS)
        self.graced.add(signum)
        self.pass_on(signum, frame)

    def alarm(self, signum, frame):
        """SIGALRM: the grace period's end, or another process's signal to pass on.
        A timer that has rung reads 0 (getitimer(2)); one that runs, more."""
        if self.graced and signal.getitimer(signal.ITIMER_REAL)[0] == 0:
            self.grace_over()
        elif signum not in self.ignored:
            self.forward(signum, frame)

    def grace_over(self):
        graced, self.graced = self.graced, set()
        names = ", ".join(sorted(kernel.signal_name(signum) for signum in graced))
        if self.running and not self.early and catches(self.pid, graced):
            # Each its own to act on, as any process with a handler.
            kernel.explain(f"end of the grace period for {names}", "caught: left running",
                           "pid_namespaces(7)")
            return
        self.pass_on(signal.SIGKILL, None)  # before any line: a write may block
        kernel.explain(f"end of the grace period for {names}", "not caught: killed",
                       "pid_namespaces(7)")

    def pause(self, signum, frame):
        self.pass_on(signal.SIGSTOP, frame)  # SIGSTOP reaches a PID 1 too
        os.kill(os.getpid(), signal.SIGSTOP)  # then as SIGTSTP's default: stop

    def resume(self, signum, frame):
        self.pass_on(signal.SIGCONT, frame)

    def pass_on(self, signum, frame) -> bool:
        """signum to the container, unless it is gone: whether it was sent."""
        if self.stopped:
            return False
        try:
            signal_container(self.pid, signum)
            return True
        except OSError:  # gone; or, in part 1, a setuid command we may not signal
            return False

    def command_runs(self) -> None:
        self.running = True

    def stop(self) -> None:
        """The child is reaped: nothing more for it, not even a pending alarm."""
        self.stopped = True
        signal.setitimer(signal.ITIMER_REAL, 0)


def signal_container(pid: int, signum: int) -> None:
    """kill(2) the container's process group, which its setsid(2) made it lead; until
    it has, only the child is there to signal."""
    try:
        kernel.sys_kill(-pid, signum)
    except ProcessLookupError:
        kernel.sys_kill(pid, signum)


def catches(pid: int, signums) -> bool:
    """Whether the process has a handler for each of signums: the SigCgt mask of
    /proc/PID/status, in hex, bit signum - 1 (proc(5))."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("SigCgt:"):
                    caught = int(line.split()[1], 16)
                    return all(caught >> (signum - 1) & 1 for signum in signums)
    except OSError:
        pass
    return False


def exit_like(status: int) -> None:
    """Exit the way the child did: its exit code, or death by its signal."""
    if os.WIFSIGNALED(status):
        die_by_signal(os.WTERMSIG(status))
    # _exit(2) at once: Python's own shutdown (~8 ms) has nothing left to do here.
    os._exit(os.waitstatus_to_exitcode(status))


def die_by_signal(signum: int) -> None:
    """Kill ourselves with the child's signal, so our parent sees what it saw."""
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # the child dumped core already
    if signum not in (signal.SIGKILL, signal.SIGSTOP):  # these two cannot be caught
        signal.signal(signum, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signum])
    os.kill(os.getpid(), signum)
    os._exit(128 + signum)  # a signal that does not kill (SIGCHLD, ...)


# The container's side ------------------------------------------------------------


def child_main(container: Container, go_read: int, go_write: int,
               error_read: int, error_write: int) -> None:
    """Runs in the cloned child: wait for go, set up, exec.  Never returns."""
    status = FAILED
    try:
        os.close(go_write)
        os.close(error_read)
        # Explain mode labels our lines with our pid on the host: /proc is still the
        # host's, and its "self" link names us in the host's PID namespace.
        kernel.LABEL = f"[{os.readlink('/proc/self')}] "
        die_with_parent(error_write)
        reset_signal_handlers(container.ignored_signals)
        # A session of its own, as runc's init makes (setsid(2)): kill(0, sig) signals
        # the sender's whole process group (kill(2)), which no namespace separates;
        # in ours, the container could reach zookeeper, its watcher and the shell
        # that ran it.  It also leaves our terminal, which it reads as a file.
        with step("start a session of its own"):
            kernel.sys_setsid()
        # STUDENT CODE BELOW (q4)
        # Block until the parent says go: read(2) from go_read.  An empty read (end of
        # file) means the parent closed it without a word: it failed, or forgot to
        # write.  Raise ZooError("...") then: the parent hears it, if it is listening.
        not_implemented(4, 1, 'block until the parent says go')
        # STUDENT CODE ABOVE (q4)
        if PART >= 5:
            cgroups.enter_own_namespace()
        if PART >= 2:
            idmap.become_container_root()
            die_with_parent(error_write)  # a change of uid cancels it: prctl(2)
            set_hostname("zoo")
        if PART >= 6:
            container.net.configure_inside()
        if PART >= 4:
            container.fs.enter()
        if PART >= 6:
            container.net.provide_resolv_conf()
        if PART >= 3:
            # STUDENT CODE BELOW (q9)
            # Lock the container in: drop the dangerous capabilities, forbid gaining
            # privileges, then load the seccomp filter, last, since it may refuse
            # calls the other steps make.  capabilities(7), prctl(2), seccomp(2):
            # security.drop_capabilities(), security.set_no_new_privs(),
            # security.load_seccomp_filter(container.seccomp_program).
            not_implemented(9, 3, 'lock the container in')
            # STUDENT CODE ABOVE (q9)
        clean_process_state(error_write)
        exec_command(container.opts.command)
    except ZooError as e:
        status = e.status
        report_failure(error_write, e)
    except BaseException as e:  # a bug: still never return into the parent's code
        report_failure(error_write, ZooError.internal(e, " in the container"))
    os._exit(status)


def die_with_parent(error_write: int) -> None:
    """If zookeeper is killed (SIGKILL cannot be caught, so it cannot clean up), the
    kernel kills the container too: prctl(2) PR_SET_PDEATHSIG, as bubblewrap's
    --die-with-parent does.  Had the parent died before this call, nothing would
    come: the error pipe tells, since its reading end closed with the parent."""
    with step("ask to die with zookeeper"):
        kernel.sys_prctl(kernel.PR_SET_PDEATHSIG, signal.SIGKILL, shown="SIGKILL")
    poller = select.poll()
    poller.register(error_write, select.POLLOUT)
    if any(events & select.POLLERR for _, events in poller.poll(0)):  # no reader: pipe(7)
        os._exit(FAILED)


def reset_signal_handlers(ignored) -> None:
    """Signals arriving now are the command's: default actions, no Python handlers.
    They stay blocked (zookeeper.py) until clean_process_state(), just before exec."""
    for signum in FORWARDED_SIGNALS:
        signal.signal(signum, signal.SIG_IGN if signum in ignored else signal.SIG_DFL)


def clean_process_state(error_write: int) -> None:
    """What the command inherits from us, reduced to what it would get from a shell.

    - File descriptors: only 0, 1 and 2.  Any other fd open in zookeeper's caller (or
      in zookeeper) would be a way out: runc's CVE-2024-21626 leaked an fd of the
      host's /sys/fs/cgroup, and a process can reach the host's files through it
      (/proc/self/fd/7/../..).  close_range(2) closes them all but the error pipe to
      the parent, which is close-on-exec: open until exec succeeds.  Marking the
      others close-on-exec would not do: execve(2) closes those only once it has
      found the program, and a command (or a link in the rootfs) named
      /proc/self/fd/7/../.. would be looked up through them, on the host.
    - Signals: Python ignores SIGPIPE and SIGXFSZ for itself, and ignored signals
      stay ignored across execve(2) (signal(7)): `yes | head -1` would then print
      "Broken pipe".  Back to their defaults, and nothing blocked (sigprocmask(2)).
    """
    if error_write > 3:
        kernel.sys_close_range(3, error_write - 1)
    kernel.sys_close_range(max(3, error_write + 1))
    # Unblocked first: a SIGPIPE that our own writes raised while it was blocked
    # (explain mode's lines to a pipe its reader closed) is pending, and then meets
    # SIG_IGN, which discards it; under SIG_DFL it would kill us (signal(7)).
    signal.pthread_sigmask(signal.SIG_SETMASK, [])
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)


def exec_command(command: list[str]) -> None:
    """Replace this process by the command; only returns by raising ZooError."""
    if not command[0]:  # what a shell says of '', without asking the kernel
        raise ZooError("failed to execute '': No such file or directory", NOT_FOUND)
    kernel.explain(f"execvp({command[0]!r}, {command!r})", "…", "execve(2)")
    # STUDENT CODE BELOW (q5)
    # Run the command with execvp(3) (os.execvp), which searches PATH.  If it fails,
    # raise ZooError(f"failed to execute {command[0]}: {e.strerror}", status) with
    # status NOT_FOUND (127) when there is no such file (errno ENOENT, or ENOTDIR
    # when a PATH entry is a file) and NOT_EXECUTABLE (126) otherwise, as shells do.
    # For -v, kernel.explain_error(f"execvp({command[0]!r})", e, "execve(2)") first.
    not_implemented(5, 1, 'run the command with execvp(3) (os.execvp), which searches PATH')
    # STUDENT CODE ABOVE (q5)


def report_failure(error_write: int, error: ZooError) -> None:
    """Hand the failure to the parent, which prints it and exits with its status."""
    try:
        os.write(error_write, f"{error.status} {error.message}".encode(errors="surrogateescape"))
    except OSError:
        warn(error.message)


def set_hostname(name: str) -> None:
    """Name the container's UTS namespace (uts_namespaces(7))."""
    # STUDENT CODE BELOW (q8)
    # Set the hostname to "zoo" with sethostname(2): kernel.sys_sethostname(name).
    not_implemented(8, 2, 'set the hostname to "zoo" with sethostname(2)')
    # STUDENT CODE ABOVE (q8)
