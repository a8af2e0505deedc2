"""A user's systemd manager, as the grader's cleanup looks at it after a check.

A check's commands run as a user whose systemd user manager (user@UID.service) may
run work for them after the check: a timer, path or socket unit fires later, a
service restarts.  The runner records what the manager runs and what configures it
(its unit directories) before a check, and afterwards undoes and reports what
changed (runner.Leftovers.restore_managers).  systemctl(1) --user, run as the user:
the manager's private socket is the user's alone.

Standard library only: it runs with the guest's Debian python3.
"""

import codecs
import contextlib
import ctypes
import errno
import os
import pwd
import select
import struct
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from stat import S_ISDIR
from typing import NamedTuple

# The units of a user's manager that can start work after the check that made or
# changed them: a timer, path or socket unit fires later, a service restarts when its
# Restart= is due (it stays "activating" meanwhile, with no process), a target pulls
# them in.  Scopes hold only processes of their caller's (ours), slices none.
MANAGER_UNIT_TYPES = "service,socket,timer,path,target"
# A unit is counted as running when it is active (or reloading), or a service waits to
# restart (sub-state auto-restart: it starts again by itself).  One activating or
# deactivating is on its way, maybe a oneshot of the manager's own (its timer's
# systemd-tmpfiles-clean.service): not counted, so that its moment is no change of a
# check's.  A process it runs at the check's end is escaped_processes' to find.
RUNNING_STATES = {"active", "reloading"}
SETTLE_SECONDS = 0.5  # a change found is looked at again after this: is it still there?
# The session bus, started by the manager on the bus's first use (systemd-run --scope,
# part 5's busctl), maybe by a check: it may change.  Its configuration may not.
BUS_UNITS = {"dbus.service", "dbus-broker.service"}
# What systemd sets for a service it starts beside the manager's environment
# (systemd.exec(5), "Environment Variables in Spawned Processes"): a bus daemon's
# environment holds these, and the manager's, no more.  Each service's own values;
# then those set when the manager's environment has none.
SERVICE_VARIABLES = {"INVOCATION_ID", "JOURNAL_STREAM", "LISTEN_FDNAMES", "LISTEN_FDS",
                     "LISTEN_PID", "MAINPID", "MANAGERPID", "NOTIFY_SOCKET", "SYSTEMD_EXEC_PID",
                     "WATCHDOG_PID", "WATCHDOG_USEC"}
SERVICE_DEFAULTS = {"HOME", "USER", "LOGNAME", "SHELL", "PATH", "LANG", "XDG_RUNTIME_DIR",
                    "DBUS_SESSION_BUS_ADDRESS"}
# The user's own unit directories (systemd.unit(5), user units), under its home and
# its runtime directory: files there configure the manager (a new unit, a drop-in
# that changes a unit, an enablement), and the user may write them.
# The session bus's service directories too: a service file there is started by the
# bus daemon itself on a call to its name (D-Bus activation), no unit needed.
# environment.d(5): the manager's environment, read at its start and each reload.
# systemd-user.conf(5): the manager's own configuration, read at daemon-reexec
# (ManagerEnvironment=LD_PRELOAD=... runs the submission's code in the manager, which
# is never said escaped; DefaultEnvironment= every unit's).
# tmpfiles.d(5): the user's systemd-tmpfiles rules, applied by the manager's
# systemd-tmpfiles-setup and -clean services (`e /tmp - - - 1s` removes /tmp/zoo.*).
HOME_UNIT_DIRS = (".config/systemd/user", ".config/systemd/user.control",
                  ".local/share/systemd/user", ".local/share/dbus-1/services",
                  ".config/environment.d", ".config/systemd/user.conf",
                  ".config/systemd/user.conf.d", ".config/user-tmpfiles.d",
                  ".local/share/user-tmpfiles.d")
RUNTIME_UNIT_DIRS = ("systemd/user", "systemd/user.control", "dbus-1/services",
                     "user-tmpfiles.d")
MANAGER_FILES = (".config/systemd/user.conf",)  # of those, files (never made)
MANAGER_SECONDS = 15  # for one systemctl --user call
UNIT_FILES_LIMIT = 10000  # entries looked at in a user's unit directories
REMOVE_SECONDS = 120  # for rm -rf of the unit files a check added
# inotify(7): a directory made in a watched one; events lost (the queue was full);
# the watch descriptor and its event.
IN_CREATE, IN_Q_OVERFLOW, IN_CLOEXEC = 0x100, 0x4000, 0o2000000
# And in a unit directory: a file's attributes or content changed, an entry moved out
# or in, made or removed; whether it is a directory.
IN_ATTRIB, IN_CLOSE_WRITE, IN_MOVED_FROM, IN_MOVED_TO, IN_DELETE, IN_ISDIR = (
    0x4, 0x8, 0x40, 0x80, 0x200, 0x40000000)
UNIT_DIR_EVENTS = IN_ATTRIB | IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE
INOTIFY_EVENT = struct.Struct("iIII")  # wd, mask, cookie, len; then len bytes of name
WATCH_LIMIT = 10000  # directories watched during a check, slices and unit directories
# The units whose cgroup holds a program the manager runs: a service's, and a socket's,
# mount's or swap's ExecStartPre= and the like (systemd.socket(5), systemd.mount(5)).
# A scope holds processes of its caller's, a slice none.
PROGRAM_UNITS = (".service", ".socket", ".mount", ".swap")
# format_timespan()'s units, in microseconds (a month and a year as systemd counts them).
TIMESPAN_UNITS = {"": 1, "us": 1, "ms": 1000, "s": 10**6, "min": 60 * 10**6,
                  "h": 3600 * 10**6, "d": 86400 * 10**6, "w": 7 * 86400 * 10**6,
                  "month": 2629800 * 10**6, "y": 31557600 * 10**6}


def popen_ids(name: str, uid: int, gid: int) -> dict:
    """subprocess.Popen's arguments that start a command as this user, by root: its uid,
    gid and groups (initgroups(3)), set in the child before the exec as setpriv(1)
    --reuid --regid --init-groups would, without its exec."""
    return {"user": uid, "group": gid, "extra_groups": os.getgrouplist(name, gid)}


class ManagerUnreachable(Exception):
    """The user's manager runs but systemctl could not ask it."""


@dataclass
class ManagerState:
    """What a user's systemd runs (unit: whether it is running, of MANAGER_UNIT_TYPES)
    and what configures it (path: (mode, size, mtime, inode, link target) of the files
    in the user's unit directories; the environment every unit it starts gets, which
    the user may set: systemctl set-environment, LD_PRELOAD for the next bus daemon)."""

    units: dict[str, bool]
    files: dict[str, tuple]
    environment: dict[str, str] = field(default_factory=dict)


class ManagerChanges(NamedTuple):
    """What changed in a user's systemd (manager_changes)."""

    started: list[str]  # units
    stopped: list[str]
    added: list[str]  # unit files
    changed: list[str]  # unit files changed or removed
    environment: list[str]  # variables set, changed or unset


class UserSystemd:
    """The systemd user manager of uid, asked with systemctl --user as that user (its
    private socket is the user's alone)."""

    def __init__(self, uid: int):
        pw = pwd.getpwuid(uid)
        self.uid, self.gid, self.name, self.home = uid, pw.pw_gid, pw.pw_name, pw.pw_dir
        self.runtime = f"/run/user/{uid}"

    def running(self) -> bool:
        """Does uid have a manager (its init.scope holds a process)?"""
        try:
            procs = Path(f"/sys/fs/cgroup/user.slice/user-{self.uid}.slice/"
                         f"user@{self.uid}.service/init.scope/cgroup.procs").read_text()
        except OSError:
            return False
        return bool(procs.split())

    def systemctl(self, *args) -> str:
        env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C", "SYSTEMD_COLORS": "0",
               "SYSTEMD_PAGER": "", "XDG_RUNTIME_DIR": self.runtime}
        try:
            done = subprocess.run(["systemctl", "--user", "--no-pager", *args], env=env,
                                  cwd="/", stdin=subprocess.DEVNULL, capture_output=True,
                                  text=True, errors="replace", timeout=MANAGER_SECONDS,
                                  **popen_ids(self.name, self.uid, self.gid))
        except (OSError, subprocess.SubprocessError) as e:
            raise ManagerUnreachable(f"systemctl --user {args[0]}: {e}") from e
        if done.returncode != 0:
            said = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1]
            raise ManagerUnreachable(f"systemctl --user {args[0]}: {said}")
        return done.stdout

    def units(self) -> dict[str, bool]:
        units = {}
        for line in self.systemctl("list-units", "--all", "--plain", "--no-legend", "--full",
                                   f"--type={MANAGER_UNIT_TYPES}").splitlines():
            fields = [f for f in line.split() if f != "●"]  # unit, load, active, sub, ...
            if len(fields) >= 4:
                units[fields[0]] = fields[2] in RUNNING_STATES or fields[3] == "auto-restart"
        return units

    def unit_dirs(self) -> list[str]:
        return ([os.path.join(self.home, d) for d in HOME_UNIT_DIRS]
                + [os.path.join(self.runtime, d) for d in RUNTIME_UNIT_DIRS])

    def files(self) -> dict[str, tuple]:
        """The entries of the user's unit directories, links followed as the manager
        follows them (each directory once)."""
        found: dict[str, tuple] = {}
        seen: set[tuple[int, int]] = set()
        todo = list(self.unit_dirs())
        while todo and len(found) < UNIT_FILES_LIMIT:
            path = todo.pop()
            try:
                info = os.lstat(path)
                target = os.readlink(path) if os.path.islink(path) else None
                if target is not None:
                    info = os.stat(path)
            except OSError:
                continue
            directory = S_ISDIR(info.st_mode)
            # A directory's own size and time change with its entries, each looked at.
            found[path] = (info.st_mode, None if directory else info.st_size,
                           None if directory else info.st_mtime_ns, info.st_ino, target)
            if directory and (info.st_dev, info.st_ino) not in seen:
                seen.add((info.st_dev, info.st_ino))
                with contextlib.suppress(OSError):
                    todo += [os.path.join(path, name) for name in os.listdir(path)]
        return found

    def state(self) -> ManagerState:
        return ManagerState(self.units(), self.files(), self.environment())

    def environment(self) -> dict[str, str]:
        """The manager's environment (systemctl show-environment: NAME=value lines, a
        value with odd bytes quoted as $'...')."""
        return assignments(self.systemctl("show-environment"))

    def restore_environment(self, before: dict[str, str], names: list[str]) -> None:
        """Each of names as it was before: unset, or set again, a value systemctl
        showed quoted as it was.  One left unset would be found again at every
        later check (before is the first check's), --local's next students' too."""
        self.systemctl("unset-environment", "--", *names)
        again = [f"{n}={unquoted(before[n])}" for n in names if n in before]
        if again:
            self.systemctl("set-environment", "--", *again)

    def show(self, unit: str, *properties: str) -> dict[str, str]:
        """systemctl show's NAME=value lines for unit's properties."""
        return assignments(self.systemctl("show", *[f"--property={p}" for p in properties],
                                          "--", unit))

    def started_by_its_timer(self, unit: str, since: int) -> bool:
        """Did a timer of unit's start it after since (CLOCK_MONOTONIC, microseconds, as
        systemd's ...Monotonic properties), that timer running since before then: the
        manager's own schedule (systemd-tmpfiles-clean.timer, daily), not a check's
        start of the unit, nor of a timer it restarted (one whose OnStartupSec= has
        passed fires at once: systemd.timer(5))."""
        try:
            timers = self.show(unit, "TriggeredBy").get("TriggeredBy", "").split()
            for timer in (t for t in timers if t.endswith(".timer")):
                shown = self.show(timer, "LastTriggerUSecMonotonic",
                                  "ActiveEnterTimestampMonotonic")
                fired = microseconds(shown.get("LastTriggerUSecMonotonic") or "0")
                running_since = int(shown.get("ActiveEnterTimestampMonotonic") or since)
                if fired >= since > running_since:
                    return True
        except (ManagerUnreachable, ValueError, KeyError):
            pass
        return False

    def stop(self, units: list[str]) -> None:
        self.systemctl("stop", "--", *units)

    def start(self, units: list[str]) -> None:
        self.systemctl("start", "--", *units)

    def make_unit_dirs(self) -> None:
        """mkdir -p, as the user, the unit directories that are not there, so that
        NewServices watches each from the check's start: a file made and removed at
        once in a directory made meanwhile could come before its watch (a new
        directory is no change)."""
        files = {os.path.join(self.home, f) for f in MANAGER_FILES}
        missing = [d for d in self.unit_dirs() if d not in files and not os.path.isdir(d)]
        if missing:
            subprocess.run(["mkdir", "-p", "--", *missing], cwd="/", capture_output=True,
                           timeout=REMOVE_SECONDS, **popen_ids(self.name, self.uid, self.gid))

    def remove(self, paths: list[str]) -> None:
        """rm -rf as the user: a path of the user's is never followed by root."""
        subprocess.run(["rm", "-rf", "--", *paths], cwd="/", capture_output=True,
                       timeout=REMOVE_SECONDS, **popen_ids(self.name, self.uid, self.gid))

    def reload(self) -> None:
        self.systemctl("daemon-reload")

    def undo(self, before: ManagerState, changes: ManagerChanges) -> None:
        """Stop the units started, remove the unit files added, put the environment
        back, reload, start the units stopped: each tried, whatever the others did."""
        started, stopped, added, changed, environment = changes
        steps = [(started, lambda: self.stop(started)), (added, lambda: self.remove(added)),
                 (environment, lambda: self.restore_environment(before.environment,
                                                                environment)),
                 (added or changed, self.reload), (stopped, lambda: self.start(stopped))]
        for wanted, step in steps:
            if wanted:
                with contextlib.suppress(ManagerUnreachable, OSError, subprocess.SubprocessError):
                    step()


def assignments(text: str) -> dict[str, str]:
    """systemctl's NAME=value lines (show, show-environment), by name."""
    return dict(line.split("=", 1) for line in text.splitlines() if "=" in line)


def microseconds(timespan: str) -> int:
    """A time span as systemctl show prints one ("9.927228s", "2min 3.5s", "1d 2h"; "0"
    for none), in microseconds: the units of systemd's format_timespan()."""
    total = 0.0
    for word in timespan.split():
        number = word.rstrip("abcdefghijklmnopqrstuvwxyz")
        total += float(number) * TIMESPAN_UNITS[word[len(number):]]
    return round(total)


def unquoted(value: str) -> str:
    """A value as show-environment printed it, as it is: one with a space, a quote or a
    control character is quoted $'...', with C's backslash escapes."""
    if len(value) < 3 or not (value.startswith("$'") and value.endswith("'")):
        return value
    return codecs.escape_decode(value[2:-1].encode(errors="surrogateescape"))[0].decode(
        errors="surrogateescape")


class Inotify:
    """inotify(7) watches, their events read by a thread of their own until stop():
    each event is handed to the function its watch was added with, as (the watched
    directory, the entry's name, the event's mask).  Events the kernel dropped (its
    queue was full) set overflowed."""

    def __init__(self):
        libc = ctypes.CDLL(None, use_errno=True)
        self.add_watch = libc.inotify_add_watch
        self.add_watch.argtypes = (ctypes.c_int, ctypes.c_char_p, ctypes.c_uint32)
        self.fd = libc.inotify_init1(IN_CLOEXEC)
        if self.fd < 0:
            raise OSError(ctypes.get_errno(), "inotify_init1")
        self.handlers: dict[int, tuple[str, Callable[[str, str, int], None]]] = {}
        self.stop_reading, self.stop_writing = os.pipe()
        self.overflowed = False
        self.failed = ""  # what went wrong in the reader thread, if anything
        self.reader = threading.Thread(target=self.read, daemon=True)

    def watch(self, path: str, mask: int, handler: Callable[[str, str, int], None]) -> int:
        """Watch path for mask's events; 0, or the errno of inotify_add_watch(2)."""
        wd = self.add_watch(self.fd, os.fsencode(path), mask)
        if wd < 0:
            return ctypes.get_errno()
        self.handlers[wd] = (path, handler)
        return 0

    def start(self) -> None:
        self.reader.start()

    def read(self) -> None:
        """The reader thread: each event as it comes, until stop() and none is left."""
        while True:
            ready, _, _ = select.select([self.fd, self.stop_reading], [], [])
            if self.fd in ready:
                self.take_events(os.read(self.fd, 65536))
            elif self.stop_reading in ready:
                return

    def take_events(self, events: bytes) -> None:
        offset = 0
        while offset < len(events):
            wd, mask, _, size = INOTIFY_EVENT.unpack_from(events, offset)
            offset += INOTIFY_EVENT.size
            name = os.fsdecode(events[offset:offset + size].rstrip(b"\0"))
            offset += size
            if wd in self.handlers:
                path, handler = self.handlers[wd]
                try:
                    handler(path, name, mask)
                except Exception as e:  # said at stop(); the next events are taken
                    self.failed = self.failed or f"{type(e).__name__}: {e}"
            elif mask & IN_Q_OVERFLOW:
                self.overflowed = True

    def watch_tree(self, top: str, mask: int, handler: Callable[[str, str, int], None],
                   descend: Callable[[str], bool],
                   found: Callable[[os.DirEntry], None]) -> tuple[list[tuple[str, int]], bool]:
        """Watch top and the directories under it that descend(path) takes, and hand
        found() each entry they hold already: what was made before its watch was in
        place.  A list of those to do, not recursion: the user may nest directories
        in what it owns as deep as it likes.  Returns the directories that could not
        be watched (with the errno), and whether some were left unwatched
        (WATCH_LIMIT reached, or the kernel's watches used up)."""
        todo, unwatched = [top], []
        while todo and len(self.handlers) < WATCH_LIMIT:
            path = todo.pop()
            failed = self.watch(path, mask, handler)
            if failed in (errno.ENOSPC, errno.ENOMEM):  # no more watches: the rest neither
                unwatched.append((path, failed))
                return unwatched, True
            if failed not in (0, errno.ENOENT, errno.ENOTDIR):  # gone already: nothing in it
                unwatched.append((path, failed))
            with contextlib.suppress(OSError), os.scandir(path) as entries:
                for entry in entries:
                    found(entry)
                    if entry.is_dir(follow_symlinks=False) and descend(entry.path):
                        todo.append(entry.path)
        return unwatched, bool(todo)

    def stop(self) -> None:
        os.write(self.stop_writing, b"x")
        if self.reader.is_alive():
            self.reader.join()
        for fd in (self.fd, self.stop_reading, self.stop_writing):
            os.close(fd)


class NewCgroups:
    """The cgroups made in a manager's cgroup (its root slice) and its slices while
    watched (IN_CREATE: systemd makes a cgroup with mkdir(2)), each new slice watched
    as it appears, then listed, for what was made in it before its watch was in
    place.  A unit's own cgroups (a container's, in a delegated scope) are not."""

    def __init__(self, inotify: Inotify, root: str):
        self.inotify = inotify
        self.made: set[str] = set()  # the new cgroups' names
        self.unwatched: list[str] = []  # slices that could not be watched, said
        self.watch(root, new=False)

    def watch(self, top: str, new: bool = True) -> None:
        """Watch a slice and the slices in it, and note what each holds already
        (made while unwatched; new: what the check made)."""
        def found(entry: os.DirEntry) -> None:
            if new and entry.is_dir(follow_symlinks=False):
                self.made.add(entry.name)

        failed, cut_short = self.inotify.watch_tree(
            top, IN_CREATE, self.on_event, lambda path: path.endswith(".slice"), found)
        self.unwatched += [f"the slice {os.path.basename(path)}, which could not be "
                           f"watched ({os.strerror(error)})" for path, error in failed]
        if cut_short:
            self.unwatched.append(f"more slices than can be watched ({WATCH_LIMIT})")

    def on_event(self, parent: str, name: str, mask: int) -> None:
        if mask & IN_CREATE:
            self.made.add(name)
            if name.endswith(".slice"):
                self.watch(f"{parent}/{name}")


class ChangedFiles:
    """The files made, changed or removed in directories while watched, in those made
    in them meanwhile too.  A directory not there yet is watched from its nearest
    parent on, and each on the way to it as it appears."""

    def __init__(self, inotify: Inotify, dirs):
        self.inotify = inotify
        self.dirs = [os.path.normpath(d) for d in dirs]
        self.changed: set[str] = set()
        self.unwatched: list[str] = []  # directories that could not be watched, said
        for top in {nearest_directory(d) for d in self.dirs}:
            self.watch(top, new=False)

    def inside(self, path: str) -> bool:
        return any(path == d or path.startswith(d + "/") for d in self.dirs)

    def on_the_way(self, path: str) -> bool:
        return self.inside(path) or any(d.startswith(path + "/") for d in self.dirs)

    def watch(self, top: str, new: bool = True) -> None:
        """Watch a directory (or a parent of one, for the next on the way to it) and
        those in it, and look at what each holds already: what was made before its
        watch was in place is a change too (new)."""
        def found(entry: os.DirEntry) -> None:
            if new and not entry.is_dir(follow_symlinks=False) and self.inside(entry.path):
                self.changed.add(entry.path)

        if not self.on_the_way(top):
            return
        failed, cut_short = self.inotify.watch_tree(
            top, UNIT_DIR_EVENTS, self.on_event, self.on_the_way, found)
        self.unwatched += [f"{path}, which could not be watched ({os.strerror(error)})"
                           for path, error in failed]
        if cut_short:
            self.unwatched.append(f"more directories than can be watched ({WATCH_LIMIT}) "
                                  f"in {top}")

    def on_event(self, parent: str, name: str, mask: int) -> None:
        path = os.path.join(parent, name)
        if mask & IN_ISDIR and mask & (IN_CREATE | IN_MOVED_TO):
            self.watch(path)  # what it holds is looked at
        elif self.inside(path) and not (mask & IN_ISDIR and mask & IN_ATTRIB):
            self.changed.add(path)


class NewServices:
    """The services a user's systemd starts while watched, each seen as the cgroup it
    makes for it (systemd.service(5): every unit's processes get a cgroup of their
    own, in its slice), even one that ends before the watch does: a janitor that a
    check's zookeeper had the manager run, which repairs after that zookeeper and
    exits, leaves no unit, no process and no file for manager_changes to find
    (NewCgroups).  The user owns those slices (systemd delegates user@UID.service):
    events the kernel dropped (a flood of mkdir) or a slice that could not be watched
    (its watches used up) are trouble, said.

    The session bus's daemon runs programs of its own too, in its own cgroup: D-Bus
    activation of a service file with no SystemdService= (dbus-daemon
    --systemd-activation spawns it), and the user may write such a file, ask for its
    name and remove it.  What the daemon ran and waited for is counted in its
    /proc/PID/stat (cminflt: the page faults of the children it reaped, every
    program's more than none), compared with the watch's start.

    And the user's unit directories (unit_dirs, those not there yet from their
    nearest parent on): a file made, changed or removed in one, even one put back
    before the check's end (a drop-in giving a unit loaded before an ExecStartPre=,
    the manager reloaded, the unit restarted: its cgroup is no new unit's), is
    trouble, said (ChangedFiles)."""

    def __init__(self, uid: int, root: str = "", unit_dirs=()):
        self.root = root or f"/sys/fs/cgroup/user.slice/user-{uid}.slice/user@{uid}.service"
        self.since = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000  # microseconds
        self.trouble: list[str] = []  # what the watch missed or the bus ran, said
        self.new_buses: list[int] = []  # bus processes started while watched (stop())
        self.bus_before = bus_children(self.root)
        self.inotify = Inotify()
        try:
            self.cgroups = NewCgroups(self.inotify, self.root)
            self.files = ChangedFiles(self.inotify, unit_dirs)
        except BaseException:
            self.inotify.stop()  # its descriptors closed
            raise
        self.inotify.start()

    def stop(self) -> set[str]:
        """The units that ran a program since the watch began (self.trouble: what
        else was found)."""
        self.inotify.stop()
        unwatched = self.cgroups.unwatched + self.files.unwatched
        self.trouble += unwatched[:3] + (
            [f"{len(unwatched) - 3} more that could not be watched"] if unwatched[3:] else [])
        if self.inotify.overflowed:
            self.trouble.append("changes in the user's slices or unit directories faster "
                                "than they could be watched (inotify: queue overflow)")
        if self.inotify.failed:
            self.trouble.append(f"the watch itself, which failed ({self.inotify.failed})")
        buses = bus_children(self.root)
        if bus_ran(self.bus_before, buses):
            self.trouble.append("a program the session bus ran (D-Bus activation), "
                                "which ended during the check")
        self.new_buses = sorted(set(buses) - set(self.bus_before))
        self.trouble += [f"file {path} (made, changed or removed during the check)"
                         for path in sorted(self.files.changed)[:10]]
        # A cgroup's name is its unit's, but for a leading "_" that systemd adds to
        # names the kernel reserves (cgroup.*, cpu.*: cg_escape in its source).
        return {name[1:] if name.startswith("_") else name for name in self.cgroups.made
                if name.endswith(PROGRAM_UNITS)}


def nearest_directory(path: str) -> str:
    """path, or its nearest parent that is there: what to watch for it to appear."""
    while not os.path.isdir(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    return path


def slices(root: str) -> list[str]:
    """A manager's cgroup and its slices, nested ones too."""
    found, todo = [], [root]
    while todo:
        path = todo.pop()
        found.append(path)
        with contextlib.suppress(OSError), os.scandir(path) as entries:
            todo += [e.path for e in entries
                     if e.name.endswith(".slice") and e.is_dir(follow_symlinks=False)]
    return found


def bus_children(root: str) -> dict[int, tuple[int, bool]]:
    """Each process of the manager's bus (in a cgroup of BUS_UNITS' under root): the
    page faults of the children it has reaped (proc(5), cminflt), and whether a
    child of its waits to be reaped (a zombie, not counted yet)."""
    found = {}
    for path in slices(root):
        for unit in BUS_UNITS:
            with contextlib.suppress(OSError, ValueError):
                for pid in map(int, Path(path, unit, "cgroup.procs").read_text().split()):
                    with contextlib.suppress(OSError, ValueError, IndexError):
                        found[pid] = (int(stat_fields(pid)[8]), has_zombie_child(pid))
    return found


def cgroup_of(pid: int) -> str:
    """pid's cgroup v2 path ('0::/...'), '' when unknown."""
    try:
        with open(f"/proc/{pid}/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return ""


def stat_fields(pid: int) -> list[str]:
    """/proc/PID/stat's fields from the state on (proc(5))."""
    return fields_after_name(Path(f"/proc/{pid}/stat").read_text())


def fields_after_name(stat: str) -> list[str]:
    """A /proc/PID/stat line's fields from the state on: the command name before them,
    in parentheses, may hold spaces and parentheses itself."""
    return stat[stat.rindex(")") + 2:].split()


def has_zombie_child(pid: int) -> bool:
    children = []
    with contextlib.suppress(OSError):
        for task in os.listdir(f"/proc/{pid}/task"):
            children += Path(f"/proc/{pid}/task/{task}/children").read_text().split()
    return any(state_of(int(child)) == "Z" for child in children)


def state_of(pid: int) -> str:
    """pid's state (proc(5): R, S, Z...), "" when it is gone."""
    try:
        return stat_fields(pid)[0]
    except (OSError, ValueError, IndexError):
        return ""


def bus_ran(before: dict[int, tuple[int, bool]], after: dict[int, tuple[int, bool]]) -> bool:
    """Did a bus process reap a child since before (one started since: since its
    start), or has one a child that ended unreaped?"""
    return any(faults > before.get(pid, (0, False))[0]
               or zombie and not before.get(pid, (0, False))[1]
               for pid, (faults, zombie) in after.items())


def foreign_variables(pid: int, environment: dict[str, str]) -> list[str]:
    """The variables in pid's environment (a bus daemon started during the check) that
    the manager's environment before it (environment) did not hold, or held
    otherwise, but those systemd sets for a service: set in the manager for the bus's
    start and unset after it (LD_PRELOAD: the submission's code in the bus daemon,
    which runs no program to be seen, and no process of which is said escaped)."""
    try:
        entries = Path(f"/proc/{pid}/environ").read_bytes().split(b"\0")
    except OSError:
        return []
    found = []
    for entry in filter(None, entries):
        name, _, value = entry.decode(errors="replace").partition("=")
        if name in SERVICE_VARIABLES:
            continue
        if unquoted(environment.get(name, value)) != value or (
                name not in environment and name not in SERVICE_DEFAULTS):
            found.append(name)
    return sorted(found)


def manager_changes(before: ManagerState, after: ManagerState) -> ManagerChanges:
    """What changed from before to after: a unit missing is not running.  The bus may start or stop,
    and a directory may appear (the bus makes its own, /run/user/UID/dbus-1/services):
    what is in it is looked at, not the directory."""
    names = sorted(set(before.units) | set(after.units))
    started = [u for u in names if u not in BUS_UNITS
               and after.units.get(u, False) and not before.units.get(u, False)]
    stopped = [u for u in names if u not in BUS_UNITS
               and before.units.get(u, False) and not after.units.get(u, False)]
    added = sorted(p for p in after.files
                   if p not in before.files and not S_ISDIR(after.files[p][0]))
    changed = sorted(p for p in before.files if after.files.get(p) != before.files[p])
    environment = sorted(n for n in set(before.environment) | set(after.environment)
                         if before.environment.get(n) != after.environment.get(n))
    return ManagerChanges(started, stopped, added, changed, environment)


def settled_changes(manager: UserSystemd,
                    before: ManagerState) -> tuple[ManagerState, ManagerChanges]:
    """What changed in manager since before (manager_changes) and is still changed
    SETTLE_SECONDS later, with the manager's last state: a change of the manager's own
    may have been on its way (a unit reloading as its timer fired)."""
    after = manager.state()
    changes = manager_changes(before, after)
    if any(changes):
        time.sleep(SETTLE_SECONDS)
        after = manager.state()
        still = manager_changes(before, after)
        changes = ManagerChanges(*[[x for x in first if x in again]
                                   for first, again in zip(changes, still)])
    return after, changes
