"""Work run as a user by something other than its systemd, as the grader's cleanup
looks at it after a check.

A check's commands may ask a daemon that runs as root to run a program as their user
later: cron (crontab(1)), atd (at(1)), sshd (a key in the user's authorized_keys), a
mail server (a pipe in ~/.forward).
Out of the runner's process tree and of the user's systemd, that program could
repair after a zookeeper in the same check and exit, or do its work in a later check.
Two things are looked at:
- StartedElsewhere: every process that one of those daemons (STARTERS) started as
  the user (setuid(2) and the like) outside the runner's tree during the check, as
  the kernel tells of it (the process events connector, linux/cn_proc.h); root only,
  in the machine's first PID and user namespaces.
- SchedulerState: the user's crontab, at jobs and incron table, compared with those
  before the runner's first check and put back (crontab -u, atrm, incrontab -u)
  where they changed.

Standard library only: it runs with the guest's Debian python3.
"""

import contextlib
import ctypes
import errno
import os
import pwd
import select
import shutil
import socket
import struct
import subprocess
import threading
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

from user_systemd import cgroup_of, stat_fields, state_of

# The proc connector (linux/connector.h, linux/cn_proc.h): a netlink socket of the
# connector family, subscribed to its process-events group.
NETLINK_CONNECTOR, CN_IDX_PROC, CN_VAL_PROC = 11, 1, 1
PROC_CN_MCAST_LISTEN, PROC_CN_MCAST_IGNORE = 1, 2
NLMSG_DONE = 3
NLMSGHDR = struct.Struct("=IHHII")  # length, type, flags, sequence, port
CN_MSG = struct.Struct("=IIIIHH")  # idx, val, sequence, ack, data's length, flags
# struct proc_event: what, cpu, timestamp (u64), then the event's data.
PROC_EVENT = struct.Struct("=IIQ")
PROC_EVENT_FORK, PROC_EVENT_UID, PROC_EVENT_EXIT = 0x1, 0x4, 0x80000000
FORK_DATA = struct.Struct("=IIII")  # parent pid, parent tgid, child pid, child tgid
ID_DATA = struct.Struct("=IIII")  # pid, tgid, real uid, effective uid
EXIT_DATA = struct.Struct("=II")  # pid, tgid (then the exit code and signal)
EVENTS_AT = NLMSGHDR.size + CN_MSG.size  # where proc_event begins in a message
RECEIVE_BYTES = 8 << 20  # the socket's buffer (SO_RCVBUFFORCE, root): a burst of forks
SO_RCVBUFFORCE = 33  # socket(7); Python's socket module lacks it
# Classic BPF (socket(7) SO_ATTACH_FILTER, linux/filter.h): keep forks, id changes and
# exits only, so that a busy machine's execs do not fill the buffer.  A load from the
# packet is big-endian; the event's "what" is in the host's order.
SO_ATTACH_FILTER = 26
BPF_LD_W_ABS, BPF_JEQ_K, BPF_RET_K = 0x20, 0x15, 0x06
PROC_USER_INIT_INO, PROC_PID_INIT_INO = 0xEFFFFFFD, 0xEFFFFFFC  # linux/proc_ns.h
SCHEDULER_SECONDS = 15  # for one crontab or atq call
# The daemons of root's that run a program as a user on that user's own say, no
# password asked: a crontab, an at job, a key in ~/.ssh/authorized_keys (sshd, or
# sshd-session from OpenSSH 9.8; dropbear), a batch job (Slurm's srun, sbatch), an
# incrontab, a pipe in ~/.forward that a mail server delivers to (Postfix's local(8),
# Exim, Sendmail, OpenSMTPD's smtpd), a ~/.rhosts (rshd, rlogind).
# And systemd as PID 1 for systemd-cron's units (a crontab's job as a unit of the
# system's, run as the user), but nothing else PID 1 starts as the user: the user's
# own manager (watched by user_systemd.py), what root asks for (systemd-run --uid,
# run0, machinectl shell).
# A process of the user's that one of them starts during a check is the check's doing.
# One that another terminal starts (su, sudo, setpriv from a root shell: the user's
# own `make demo` beside the grading) needs a password or root, which the check's
# commands have not: not the check's.
STARTERS = {"cron", "crond", "atd", "anacron", "sshd", "sshd-session", "dropbear", "slurmd",
            "slurmstepd", "incrond", "local", "exim4", "exim", "sendmail", "smtpd",
            "in.rshd", "in.rlogind", "systemd"}


def mcast_request(op: int) -> bytes:
    """The message that subscribes a connector socket to process events (LISTEN), or
    ends that (IGNORE: the kernel counts its listeners, and sends events while any)."""
    data = struct.pack("=I", op)
    message = CN_MSG.pack(CN_IDX_PROC, CN_VAL_PROC, 0, 0, len(data), 0) + data
    return NLMSGHDR.pack(NLMSGHDR.size + len(message), NLMSG_DONE, 0, 0, 0) + message


def forks_id_changes_and_exits() -> bytes:
    """A struct sock_fprog's instructions: accept a fork, an id change or an exit, drop
    the rest."""
    def what(value: int) -> int:
        return int.from_bytes(struct.pack("=I", value), "big")

    program = [(BPF_LD_W_ABS, 0, 0, EVENTS_AT),
               (BPF_JEQ_K, 3, 0, what(PROC_EVENT_FORK)),
               (BPF_JEQ_K, 2, 0, what(PROC_EVENT_UID)),
               (BPF_JEQ_K, 1, 0, what(PROC_EVENT_EXIT)),
               (BPF_RET_K, 0, 0, 0),
               (BPF_RET_K, 0, 0, 0xFFFFFFFF)]
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


def attach_filter(sock: socket.socket, instructions: bytes) -> None:
    """setsockopt(SO_ATTACH_FILTER) with a struct sock_fprog {length, pointer}."""
    program = ctypes.create_string_buffer(instructions)
    fprog = struct.pack("@HP", len(instructions) // 8, ctypes.addressof(program))
    sock.setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, fprog)


class Started(NamedTuple):
    pid: int
    uid: int
    what: str  # its command and who started it, as read when it was told of


class StartedElsewhere:
    """The processes that took one of uids (its real or effective uid became one)
    while watched, started by one of STARTERS (or by a parent that could not be
    read), but were not forked from the given tree since the watch began: a cron or
    at job, an ssh login, run as the user by a daemon of root's.  The tree is what
    tree() gives when the watch begins (the runner and the processes under it that
    are the check's), and what those fork.  A process of it that takes the user's
    id is the check's own: a command run as the user, a container whose root is the
    user.  Not available (unavailable says why) to a user other than root or in a
    PID or user namespace other than the machine's first."""

    def __init__(self, uids: set[int], tree: Callable[[], set[int]]):
        """uids: those to watch, the set itself (one added later is watched from
        then on).  tree: the tree's processes now, asked once the socket listens,
        so that no fork falls between the two."""
        self.uids = uids
        self.found: list[Started] = []
        self.lost = False  # events the kernel dropped (the socket's buffer was full)
        self.failed = ""  # what went wrong in the reader thread, if anything
        self.tree: set[int] = set()
        self.started: set[int] = set()  # what was found, and what it forked
        # Each other process forked since (or that forked since), its parent; a parent
        # that ended hands its children to its own (so that a launcher that forks and
        # exits, setsid -f, still leads to the terminal that ran it).
        self.parents: dict[int, int] = {}
        self.children: dict[int, set[int]] = {}
        # The reader thread changes what still_running() reads: one at a time.
        self.lock = threading.Lock()
        self.sock = None
        self.unavailable = namespace_of_its_own()
        if self.unavailable:
            return
        try:
            self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC,
                                      NETLINK_CONNECTOR)
            with contextlib.suppress(OSError):  # the default buffer is smaller, not wrong
                self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, RECEIVE_BYTES)
            attach_filter(self.sock, forks_id_changes_and_exits())
            self.sock.bind((0, CN_IDX_PROC))
            self.sock.send(mcast_request(PROC_CN_MCAST_LISTEN))
        except OSError as e:
            self.unavailable = f"the kernel's process events: {e.strerror or e}"
            self.close()
            return
        try:
            self.tree = tree()
            self.stop_reading, self.stop_writing = os.pipe2(os.O_CLOEXEC)
        except BaseException:
            self.close()
            raise
        self.reader = threading.Thread(target=self.read, daemon=True)
        self.reader.start()

    def read(self) -> None:
        """The reader thread: each message as it comes, until stop() and none is left."""
        while True:
            ready, _, _ = select.select([self.sock, self.stop_reading], [], [])
            if self.sock in ready:
                try:
                    message = self.sock.recv(65536)
                except OSError as e:
                    if e.errno == errno.ENOBUFS:  # dropped: the buffer was full
                        self.lost = True
                        continue
                    self.failed = self.failed or f"recv: {e.strerror or e}"
                    return
                try:
                    with self.lock:
                        self.take(message)
                except Exception as e:  # said at stop(); the next events are taken
                    self.failed = self.failed or f"{type(e).__name__}: {e}"
            elif self.stop_reading in ready:
                return

    def take(self, message: bytes) -> None:
        """One message's event: a fork extends the tree (or what was found), an id
        change to a watched uid outside the tree is found, an exit takes its pid out
        of the tree (a check that forks through every pid would otherwise make any
        pid, atd's child's too, one of the tree's)."""
        what = PROC_EVENT.unpack_from(message, EVENTS_AT)[0]
        data = EVENTS_AT + PROC_EVENT.size
        if what == PROC_EVENT_FORK:
            _, parent, child_pid, child = FORK_DATA.unpack_from(message, data)
            if child_pid != child:
                return  # a new thread of process child, whose "parent" is child's parent
            if parent in self.tree:
                self.tree.add(child)
            elif parent in self.started:
                self.started.add(child)
            else:
                self.note_parent(child, parent)
        elif what == PROC_EVENT_UID:
            _, pid, real, effective = ID_DATA.unpack_from(message, data)
            uid = real if real in self.uids else effective
            if pid not in self.tree and uid in self.uids and pid not in self.started:
                self.take_started(pid, uid)
        elif what == PROC_EVENT_EXIT:
            pid, tgid = EXIT_DATA.unpack_from(message, data)
            if pid == tgid:  # the process's first thread: the pid is free once reaped
                self.tree.discard(pid)
                self.started.discard(pid)
                self.forget(pid)

    def note_parent(self, child: int, parent: int) -> None:
        if parent not in self.parents:  # there before the watch: its parent read now
            self.parents[parent] = parent_of(parent)
            if self.parents[parent]:
                self.children.setdefault(self.parents[parent], set()).add(parent)
        self.parents[child] = parent
        self.children.setdefault(parent, set()).add(child)

    def forget(self, pid: int) -> None:
        """pid ended: its children are its parent's now."""
        parent = self.parents.pop(pid, 0)
        self.children.get(parent, set()).discard(pid)
        for child in self.children.pop(pid, set()):
            self.parents[child] = parent
            self.children.setdefault(parent, set()).add(child)

    def take_started(self, pid: int, uid: int) -> None:
        """A process outside the tree took uid: found if one of STARTERS started it
        (its parent, whose name is read now: a daemon that waits for its job), or if
        who started it cannot be told."""
        parent = self.parents.get(pid) or parent_of(pid)
        if parent in self.started:  # atd's child, then the job's shell
            self.started.add(pid)
            return
        by, seen = (command_of(parent) if parent else ""), {pid}
        while parent and not by and parent not in seen:  # ended: the nearest that runs
            seen.add(parent)
            parent = self.parents.get(parent, 0)
            by = command_of(parent) if parent else ""
        if by and by not in STARTERS:
            return  # another terminal's: su, sudo, setpriv
        if by == "systemd" and not crontab_unit(cgroup_of(pid)):
            return  # the user's manager starting, or root's doing (see STARTERS)
        self.started.add(pid)
        command = command_of(pid) or "ended before it could be read"
        by = f"{by} ({parent})" if by else "a process that could not be read"
        self.found.append(Started(pid, uid, f"{command}, started by {by}"))

    def stop(self) -> list[Started]:
        """What was found (self.lost, self.failed: what else)."""
        if self.sock is not None:
            os.write(self.stop_writing, b"x")
            self.reader.join()
            for fd in (self.stop_reading, self.stop_writing):
                os.close(fd)
            self.close()
        return self.found

    def close(self) -> None:
        if self.sock is not None:
            with contextlib.suppress(OSError):
                self.sock.send(mcast_request(PROC_CN_MCAST_IGNORE))
            self.sock.close()
            self.sock = None

    def still_running(self) -> set[int]:
        """What was found, and what it forked, that still runs as a watched uid (not a
        zombie: killed already)."""
        with self.lock:
            started = set(self.started)
        return {pid for pid in started
                if real_uid(pid) in self.uids and state_of(pid) not in ("Z", "X", "")}


def namespace_of_its_own() -> str:
    """Why the kernel's process events would not match this process's view, if they
    would not: they give pids as the machine's first PID namespace sees them, ids
    as its first user namespace does (a container's runner would kill by the
    wrong pid).  The first namespaces have fixed inode numbers (linux/proc_ns.h)."""
    for kind, first in (("PID", PROC_PID_INIT_INO), ("user", PROC_USER_INIT_INO)):
        with contextlib.suppress(OSError):
            if os.stat(f"/proc/self/ns/{kind.lower()}").st_ino != first:
                return f"the runner is in a {kind} namespace of its own"
    return ""


def command_of(pid: int) -> str:
    """pid's command name (proc(5), comm), '' once it is gone."""
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip()
    except OSError:
        return ""


def crontab_unit(cgroup: str) -> bool:
    """Is a cgroup v2 path (cgroup_of's) that of a unit systemd-cron's generator made of
    a crontab line, cron-JOB-USER-N.service, a unit of PID 1's (not of a user's
    manager, user@UID.service)?  Only root may move a process out of it (cgroups(7):
    write access to the common ancestor's cgroup.procs)."""
    *above, unit = cgroup.split("/")
    return (unit.startswith("cron-") and unit.endswith(".service")
            and not any(name.startswith("user@") for name in above))


def parent_of(pid: int) -> int:
    try:
        return int(stat_fields(pid)[1])
    except (OSError, ValueError, IndexError):
        return 0


def real_uid(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("Uid:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return None


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


class SchedulerState(NamedTuple):
    crontab: str | None  # the user's crontab, None for none or no crontab(1)
    at_jobs: frozenset[str]  # the numbers of its at jobs (atq(1))
    # Its incron table (incrontab(5): a command run on a file's inotify event), None
    # for none, no incrontab(1), or a user incron is not allowed to (Debian's
    # default: /etc/incron.allow empty).
    incrontab: str | None = None


def scheduler_state(user: str) -> SchedulerState:
    """What cron, atd and incrond hold for user, asked as root (crontab -u, atq lists
    every user's jobs, incrontab -u).  Where they are not installed: none."""
    return SchedulerState(table_of("crontab", user), at_jobs_of(user),
                          table_of("incrontab", user))


def table_of(program: str, user: str) -> str | None:
    """user's table as crontab(1) or incrontab(1) lists it (-u USER -l), None for none."""
    if not shutil.which(program):
        return None
    done = scheduler_command([program, "-u", user, "-l"])
    if done.returncode != 0:  # "no crontab for USER"; incrontab: "not allowed"
        return None
    if program == "incrontab" and done.stdout == "":  # its "no table for USER"
        return None
    return done.stdout


def at_jobs_of(user: str) -> frozenset[str]:
    """atq's lines are 'NUMBER<TAB>DATE QUEUE USER' (at 3.x)."""
    if not shutil.which("atq"):
        return frozenset()
    lines = [line.split() for line in scheduler_command(["atq"]).stdout.splitlines()]
    return frozenset(words[0] for words in lines if words and words[-1] == user)


def scheduler_command(argv: list[str], text_in: str = "") -> subprocess.CompletedProcess:
    """argv as root, text_in its standard input (none: at its end at once)."""
    return subprocess.run(argv, input=text_in, capture_output=True, text=True,
                          errors="surrogateescape", timeout=SCHEDULER_SECONDS)


def incron_rules(table: str | None) -> list[tuple[str, ...]] | None:
    """An incron table's rules (path, events, command), as incrontab(5) reads them: a
    table put back is saved as incrontab parsed it (no comment, its own spacing),
    and lists so, where one an administrator wrote lists as written."""
    if table is None:
        return None
    rules = []
    for line in table.splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            rules.append(tuple(line.strip().split(None, 2)))
    return rules


def put_table_back(program: str, user: str, table: str | None, what: str) -> str:
    """user's table in crontab(1) or incrontab(1) made table again (None: removed):
    said."""
    if table is None:
        scheduler_command([program, "-u", user, "-r"])
        return f"{what} (new: removed)"
    scheduler_command([program, "-u", user, "-"], text_in=table)
    return f"{what} (changed: put back)"


def restore_schedulers(user: str, before: SchedulerState) -> list[str]:
    """user's crontab, at jobs and incron table as they were before (added jobs
    removed, a table put back or removed): what was changed, said."""
    after = scheduler_state(user)
    said = []
    if after.crontab != before.crontab:
        said.append(put_table_back("crontab", user, before.crontab, f"the crontab of {user}"))
    if incron_rules(after.incrontab) != incron_rules(before.incrontab):
        said.append(put_table_back("incrontab", user, before.incrontab,
                                   f"the incron table of {user}"))
    added = sorted(after.at_jobs - before.at_jobs, key=int)
    if added:
        scheduler_command(["atrm", *added])
        said.append(f"at job {', '.join(added)} of {user} (queued: removed)")
    return said
