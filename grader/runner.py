#!/usr/bin/env python3
"""Run the grader's checks on this machine: inside the grader's VM, or --local.

    runner.py --submission DIR --results FILE [--logs DIR] [--part N ...] [--only ID ...]
              [--public] [--user NAME] [--lane-user NAME ...] [--nosub-user NAME]
              [--rootfs-tar TAR] [--timeout-scale X]

Writes FILE (JSON) after every check, so a run cut short still reports what it did.
Standard library only: it runs with the guest's Debian python3.
"""

import argparse
import contextlib
import ctypes
import errno
import fcntl
import json
import os
import pwd
import resource
import select
import shutil
import signal
import subprocess
import sys
import tarfile
import tempfile
import termios
import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import checks  # noqa: E402
import subids  # noqa: E402
from children import Identity, call_as  # noqa: E402
from home import HomeCopy, remove_entries  # noqa: E402
from report import (  # noqa: E402
    COMMIT_COPIES,
    CheckResult,
    CommandTime,
    commit_line,
    shortened,
    write_results,
)
from schedulers import (  # noqa: E402
    SchedulerState,
    StartedElsewhere,
    parent_of,
    real_uid,
    restore_schedulers,
    scheduler_state,
    user_name,
)
from user_systemd import (  # noqa: E402
    BUS_UNITS,
    ManagerState,
    ManagerUnreachable,
    NewServices,
    UserSystemd,
    cgroup_of,
    fields_after_name,
    foreign_variables,
    popen_ids,
    settled_changes,
)

PART_GLOB = "part{}_*"
NOSUB_USER = "nosub"  # the grader's VM's user without a subordinate range
# How long the runner keeps killing what a command left (a process blocked in the
# kernel dies only when it wakes): then it goes on without it.
KILL_SECONDS = 5.0
# After a command is killed at its timeout, how long its output pipes may stay open
# (held by a process outside its process group) before the check goes on without them.
PIPE_GRACE_SECONDS = 10
# What a check keeps of what its commands printed: the submission may print anything,
# 40 MB on one line, and results.json, the report and Gradescope's JSON carry the
# message.  Its log file keeps more, within bounds too.
SAID_LIMIT = 300  # characters of a command's stderr line quoted ("zookeeper said: ...")
MESSAGE_LIMIT = 3000  # characters of a check's whole message
OUTPUT_LOG_LIMIT = 1 << 20  # characters of a command's stdout, and of its stderr, logged
# Bytes of a command's stdout, and of its stderr, kept in memory: the rest is read and
# dropped (a command printing without end until its limit grew the runner until the
# guest's kernel killed it: the grading incomplete, not failed).
OUTPUT_LIMIT = 16 << 20
LOG_LIMIT = 4 << 20  # characters of a check's log file
# Free bytes where this runner's scratch directories are, when it made its first one
# ("scratch"); a check that finds this much less there when it cannot unpack its
# rootfs for lack of room fails: the submission filled the disk meanwhile.
FREE_AT_START: dict[str, int] = {}
FILLED_BYTES = 64 << 20


class CheckFailed(Exception):
    """The submission failed the check: the message says why, for the student."""


class NotRunnable(Exception):
    """The machine cannot run this check (reported as not run, never as passed)."""


AFTERTHOUGHTS = ("zookeeper: cleanup:", "zookeeper: note:")


def expect(condition, message: str, run: "Run | None" = None) -> None:
    """Fail the check with message unless condition holds.  With run, what it said on
    stderr is added (or that it was killed at its limit): what the student sees first.
    Only a line of zookeeper's own ("zookeeper: ...") is quoted as "zookeeper said"; a
    last line of anything else (the command's, busybox time's, a traceback's) is
    quoted as that, after zookeeper's last line if it had one."""
    if condition:
        return
    if run is not None and run.stderr.strip():
        lines = run.stderr.strip().splitlines()
        every = [line for line in lines if line.startswith("zookeeper:")]
        # Its failure, rather than what its cleanup or a note said after it.
        ours = [line for line in every if not line.startswith(AFTERTHOUGHTS)] or every
        if ours:
            message += f"\n    zookeeper said: {shortened(ours[-1], SAID_LIMIT)}"
        if 'zookeeper.py", line' in run.stderr and "Traceback (most recent" in run.stderr:
            message += (f"\n    zookeeper crashed with a Python exception: "
                        f"{shortened(lines[-1], SAID_LIMIT)} (an expected failure is one "
                        "line: is a system call outside its `with step(...)`?)")
        elif lines[-1] not in every:
            message += f"\n    last line on stderr: {shortened(lines[-1], SAID_LIMIT)}"
    elif run is not None and run.timed_out and "did not exit within" not in message:
        message += "\n    (the command did not finish: killed at the timeout)"
    raise CheckFailed(message)


@dataclass
class Run:
    """What one command did, as subprocess.CompletedProcess says it (status is its
    returncode: -N for death by signal N), with its time, whether it was killed at
    its limit, the user it ran as and what was there just before it (for Leftovers)."""

    argv: list[str]
    status: int | None
    stdout: str
    stderr: str
    seconds: float
    timed_out: bool = False
    uid: int | None = None
    before: "Snapshot | None" = None
    user: str = ""
    # Children of the command's that it left: they came back to the runner (a
    # subreaper), dead and unreaped ('PID (name)') or still running.
    unreaped: list[str] = field(default_factory=list)

    @property
    def signal(self):
        return -self.status if self.status is not None and self.status < 0 else None

    @property
    def status_text(self) -> str:
        if self.timed_out:
            return "a timeout (killed)"
        if self.signal:
            return f"death by {signal_name(self.signal)} ({128 + self.signal})"
        return f"exit status {self.status}"

    def log(self) -> str:
        prompt = f"{self.user}{'#' if self.uid == 0 else '$'} " if self.user else "$ "
        text = f"{prompt}{' '.join(self.argv)}\n-> {self.status_text} in {self.seconds:.2f}s\n"
        if self.stdout:
            text += "stdout:\n" + indent(self.stdout, OUTPUT_LOG_LIMIT)
        if self.stderr:
            text += "stderr:\n" + indent(self.stderr, OUTPUT_LOG_LIMIT)
        return text


def signal_name(number: int) -> str:
    """SIGSEGV, SIGRTMIN+3, ...: a name for every signal a wait status can hold.
    Python names only SIGRTMIN and SIGRTMAX of the real-time signals (Signals(35)
    raises ValueError); 32 and 33 are glibc's own, below its SIGRTMIN."""
    try:
        return signal.Signals(number).name
    except ValueError:
        pass
    if signal.SIGRTMIN < number < signal.SIGRTMAX:
        return f"SIGRTMIN+{number - signal.SIGRTMIN}"
    return f"signal {number}"


def seconds_text(seconds: float) -> str:
    """24, 1.5: a time limit as a person writes it."""
    return f"{seconds:.0f}" if seconds >= 10 else f"{seconds:.1f}".removesuffix(".0")


def indent(text: str, limit: int = 4000) -> str:
    return "".join(f"    {line}\n" for line in shortened(text, limit, "\n").splitlines())


# Why a check that runs the submission as root does not run here, as root (--local):
# the submission's code would be root on this machine, not in a guest.
ROOT_REFUSED = ("the check runs the submission's zookeeper as root: in the grader's VM "
                "(or with --as-root, where root is yours to give it)")


class Machine:
    """What this machine offers, for checks' `needs`."""

    def __init__(self, user: str, nosub_user: str = NOSUB_USER, as_root: bool = False):
        self.is_root = os.getuid() == 0
        self.as_root = as_root  # --as-root: the submission may run as root here
        self.nosub_user, self.nosub_why = nosub_user, no_subid_user_missing(nosub_user)
        self.cgroup2 = Path("/sys/fs/cgroup/cgroup.controllers").exists()
        controllers = set()
        if self.cgroup2:
            controllers = set(Path("/sys/fs/cgroup/cgroup.controllers").read_text().split())
        self.cgroup_limits = {"memory", "cpu", "pids"} <= controllers
        self.tun = os.access("/dev/net/tun", os.R_OK | os.W_OK) and (
            os.stat("/dev/net/tun").st_mode & 0o006 == 0o006 or user == "root")
        self.slirp4netns = shutil.which("slirp4netns") is not None

    def missing(self, needs) -> str:
        reasons = {
            "root": (self.is_root and self.as_root, ROOT_REFUSED if self.is_root else
                     "the check runs zookeeper as root too; run the grader as root"),
            "cgroup_limits": (self.cgroup_limits, "no cgroup v2 with memory, cpu and pids "
                              "controllers on this machine"),
            "tun": (self.tun, "/dev/net/tun is not usable by the user"),
            "slirp4netns": (self.slirp4netns, "slirp4netns is not installed"),
            "nosub_user": (self.is_root and not self.nosub_why,
                           self.nosub_why or "the check runs zookeeper as another user "
                           f"({self.nosub_user}); run the grader as root"),
        }
        for need in needs:
            ok, why = reasons[need]
            if not ok:
                return why
        return ""


# The users ----------------------------------------------------------------------------


def no_subid_user_missing(name: str) -> str:
    """Why `name` cannot serve as the user without a subordinate range ('' if it can):
    it must exist and have no line in /etc/subuid nor /etc/subgid.  The grader's VM
    has one (nosub); elsewhere --nosub-user names it."""
    try:
        pw = pwd.getpwnam(name)
    except KeyError:
        return (f"no user {name} without a subordinate range on this machine (the "
                "grader's VM has one; --nosub-user NAME names another)")
    for kind in ("subuid", "subgid"):
        if {owner for owner, _, _ in subids.entries(kind)} & {name, str(pw.pw_uid)}:
            return f"{name} has a range in /etc/{kind}: it cannot be the user without one"
    return ""


class User:
    """A user of this machine that commands run as: its ids, home and ranges."""

    def __init__(self, name: str):
        pw = pwd.getpwnam(name)
        self.name, self.uid, self.gid, self.home = name, pw.pw_uid, pw.pw_gid, pw.pw_dir

    def subid_range(self, kind: str = "subuid") -> tuple[int, int]:
        """The user's first range in /etc/subuid (kind "subgid": /etc/subgid), as
        (start, count).  The grader's VM gives them different ranges."""
        found = subids.first_range(kind, self.name, self.uid)
        if found is None:
            raise NotRunnable(f"{self.name} has no range in /etc/{kind}")
        return found

    def popen_ids(self) -> dict:
        """subprocess.Popen's arguments that start a command as this user (popen_ids)."""
        return popen_ids(self.name, self.uid, self.gid)

    def env(self, root: bool = False) -> dict[str, str]:
        """The environment a command of this user gets (root: of root)."""
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "LANG": "C.UTF-8", "HOME": "/root" if root else self.home}
        runtime = f"/run/user/{self.uid}"
        if not root and os.path.isdir(runtime):
            env["XDG_RUNTIME_DIR"] = runtime
            env["DBUS_SESSION_BUS_ADDRESS"] = f"unix:path={runtime}/bus"
        return env


# What a check's commands leave --------------------------------------------------------


@dataclass
class Snapshot:
    """What was there just before a command: our processes, and anyone's /tmp/zoo.*
    directories, zoo-PID cgroups and zoo links (compared with what is there after)."""

    processes: set[int]
    temp_dirs: set[str]
    cgroups: set[str]
    links: set[str]
    children: set[int] = field(default_factory=set)  # this process's, any state


class Leftovers:
    """What one check's commands made: their processes, /tmp/zoo.* directories,
    cgroups and links, never another user's nor another run's, so that --local is
    safe on a shared machine.  Each command's Run holds a Snapshot taken just before
    it; what is there after it, not in the snapshot, is the command's."""

    def __init__(self, keep: list[str] = ()):
        """keep: the runner's own files (its results, logs, scratch directory and the
        submission), never put back with a user's home that holds them."""
        self.keep = list(keep)
        self.sessions: set[int] = set()  # the sessions our commands run in
        self.runs: list[Run] = []  # our commands, each with its snapshot
        # The children this process had before the check, which are not ours.
        table = process_table()
        self.not_ours = set(children_of(os.getpid(), table))
        self.existing = set(table)  # every process before the check: none is its
        self.escaped: list[str] = []  # what escaped_processes found, described
        # Each watched user's systemd just before the check's first command as that
        # user (None: no manager; ManagerUnreachable: it could not be asked).
        self.managers: dict[int, ManagerState | ManagerUnreachable | None] = {}
        self.units: list[str] = []  # what restore_managers found, described
        self.services: dict[int, NewServices] = {}  # each watched manager's, meanwhile
        self.watched: set[int] = set()  # the users watched_uid() takes that commands ran as
        self.elsewhere: StartedElsewhere | None = None  # from the first command as one
        self.started_elsewhere: list[str] = []  # what stop_elsewhere found, described
        self.elsewhere_trouble = ""  # why that watch may have missed some, if it may
        self.home_put_back: list[str] = []  # what of the users' homes was put back
        self.home_trouble = ""  # why one could not be put back as it was, if it could not
        # For the rest of this process's life (a test's too): harmless, orphans of
        # other children are reaped by kill_all or wait as zombies.
        become_subreaper()

    def ours(self) -> set[int]:
        """Our running processes: those under this process (a subreaper, so that
        orphans of our commands come back to it) but not under a child it had before
        the check, and those in our commands' sessions."""
        table = process_table()
        mine = self.tree(table) | {p.pid for p in table.values() if p.sid in self.sessions}
        return {pid for pid in mine if table[pid].state not in "ZX" and pid != os.getpid()}

    def tree(self, table: "dict[int, Proc] | None" = None) -> set[int]:
        """This process and those under it, but not under a child it had before the
        check."""
        table = process_table() if table is None else table
        excluded = set().union(*(descendants(table, pid) | {pid} for pid in self.not_ours))
        return (descendants(table, os.getpid()) - excluded) | {os.getpid()}

    def snapshot(self) -> Snapshot:
        """What is there now, taken just before a command starts."""
        return Snapshot(self.ours(), checks.temp_dirs(), set(checks.zoo_cgroups()),
                        zoo_links(), own_children())

    def watch_user(self, uid: int) -> None:
        """Before a command as uid: what could run work as uid out of our reach is
        watched from then on (its systemd, and cron, at, sshd or a batch system:
        schedulers.STARTERS), once a check."""
        if uid in self.watched or not watched_uid(uid):
            return
        self.watched.add(uid)
        self.watch_manager(uid)
        self.watch_elsewhere(uid)
        self.watch_home(uid)

    def watch_manager(self, uid: int) -> None:
        """What uid's systemd runs and holds, once a check; from the second check that
        runs commands as uid on, what it was before the first (the bus excepted, which
        may start on first use): a change not undone is found again."""
        manager = UserSystemd(uid)
        if uid in MANAGER_STATES:
            self.managers[uid] = MANAGER_STATES[uid]
        else:
            try:
                self.managers[uid] = manager.state() if manager.running() else None
            except ManagerUnreachable as e:
                self.managers[uid] = e
        if isinstance(self.managers[uid], ManagerState):
            try:
                manager.make_unit_dirs()
                self.services[uid] = NewServices(uid, unit_dirs=manager.unit_dirs())
            except (OSError, subprocess.SubprocessError) as e:
                self.managers[uid] = ManagerUnreachable(f"its watch: {e}")

    def watch_elsewhere(self, uid: int) -> None:
        """uid's crontab and at jobs, as they were before the first check that ran
        commands as uid (SCHEDULER_STATES); and from now on, every process that takes
        a watched uid out of our tree (StartedElsewhere), one watch for all of them."""
        if uid not in SCHEDULER_STATES:
            SCHEDULER_STATES[uid] = scheduler_state(user_name(uid))
        if self.elsewhere is None:
            self.elsewhere = StartedElsewhere(self.watched, self.tree)

    def watch_home(self, uid: int) -> None:
        """uid's home as it was before the first check that ran commands as uid
        (HOME_COPIES), put back after each check by stop_elsewhere; its unit
        directories are the manager's watch's, when there is one."""
        if uid in HOME_COPIES:
            return
        watched = isinstance(self.managers.get(uid), ManagerState)
        unit_dirs = UserSystemd(uid).unit_dirs() if watched else []
        HOME_COPIES[uid] = HomeCopy(pwd.getpwuid(uid).pw_dir, uid, self.keep + unit_dirs)

    def stop_elsewhere(self) -> list[str]:
        """What StartedElsewhere found (what of it still runs killed first), and the
        watched users' crontabs and at jobs put back: described."""
        restored, killed, found = [], [], []
        try:  # still watched meanwhile: a job that fires now is found and killed too
            for uid in sorted(self.watched):
                if uid in SCHEDULER_STATES:
                    restored += restore_schedulers(user_name(uid), SCHEDULER_STATES[uid])
            if self.elsewhere:
                killed = kill_all(self.elsewhere.still_running)
            for uid in sorted(self.watched):  # once nothing of the check's runs to undo it
                if uid in HOME_COPIES:
                    self.home_put_back += HOME_COPIES[uid].put_back()
                    self.home_trouble = self.home_trouble or HOME_COPIES[uid].trouble
        finally:
            if self.elsewhere:
                found = self.elsewhere.stop()
        if self.elsewhere and (self.elsewhere.lost or self.elsewhere.failed):
            # The machine's events, anyone's: not the check's doing (elsewhere_trouble).
            self.elsewhere_trouble = self.elsewhere.failed or (
                "the kernel's process events were dropped (processes started on this "
                "machine faster than they could be watched)")
        return ([f"process {p.pid} ({p.what}), run as {user_name(p.uid)}" for p in found[:10]]
                + ([f"{len(found) - 10} more"] if found[10:] else [])
                + [f"process {p} (still running: killed)" for p in killed] + restored)

    def started(self, session: int) -> None:
        """A command started in a session of its own (its pid): what runs in it is ours."""
        self.sessions.add(session)

    def ran(self, run: Run) -> None:
        """A command ended: what it left is looked for at clean_up."""
        self.runs.append(run)

    def processes(self, run: Run, text: str) -> list[str]:
        """Processes of ours, started since run began and still running, whose command
        line has text: 'PID (command line)'."""
        return [f"{pid} ({command_line(pid)[:60]})" for pid in sorted(
            self.ours() - run.before.processes) if text in command_line(pid)]

    def temp_dirs(self, run: Run) -> set[str]:
        """/tmp/zoo.* made since run began, by the user it ran as (root's may belong
        to its container's root: see temp_dir_owners), that no running zookeeper
        holds: the same user's other container, started meanwhile, is not ours."""
        made = checks.temp_dirs() - run.before.temp_dirs
        return {path for uid in temp_dir_owners(run.uid) for path in owned_by(made, uid)
                if not in_use(path)}

    def cgroups(self, run: Run) -> set[str]:
        """zoo-PID cgroups made since run began, by the user it ran as, but not those
        of another container that still runs (the same user's, started meanwhile)."""
        made = owned_by(set(checks.zoo_cgroups()) - run.before.cgroups, run.uid)
        return {path for path in made if not self.someone_elses_cgroup(path)}

    def someone_elses_cgroup(self, path: str) -> bool:
        """A cgroup holding processes, none of them ours, is another container's; an
        empty one, or one holding ours, is this check's.  Its cgroup.procs files give
        the pids as this process's PID namespace sees them (cgroups(7))."""
        members = cgroup_members(path)
        return bool(members) and not members & self.ours()

    def links(self, run: Run) -> set[str]:
        """zv* and zoo0 network links made since run began, but not the veth of
        another container that still runs (another root's -n, started meanwhile):
        zvPID names its container's pid, and a veth goes with its container's
        network namespace, so a zvPID whose PID lives and is not ours is theirs."""
        if run.uid != 0:
            return set()  # only root makes links on the host: not this run's
        ours = self.ours()
        return {name for name in zoo_links() - run.before.links
                if not (name[2:].isdigit() and os.path.exists(f"/proc/{name[2:]}")
                        and int(name[2:]) not in ours)}

    def escaped_processes(self) -> set[int]:
        """Processes the check's commands had the user's systemd start (systemd-run
        --user --unit, a user unit, D-Bus activation): new since the check began, of a
        user a command ran as, in that user's manager, not ours.  Out of our tree and
        sessions, they would outlive the check, and the grading (--local: into the
        next student's).  The manager's own bus daemon, started on first use, is not."""
        uids = watched_uids(self.runs)
        if not uids:
            return set()
        table, ours = process_table(), self.ours()
        return {pid for pid, p in table.items()
                if pid not in self.existing and pid not in ours and p.state not in "ZX"
                and started_by_user_manager(pid, uids)}

    def restore_managers(self) -> list[str]:
        """Each watched user's systemd as it was before the check: a unit the check's
        commands left running (a timer, path or socket unit, a service waiting to
        restart) could start work in a later check, and leave nothing running at that
        check's end for escaped_processes to see (a repair daemon that runs only while
        a later zookeeper does: it removes the /tmp/zoo.* and kills the slirp4netns
        that zookeeper left, then exits).  Units the commands started are stopped,
        those they stopped started, the unit files they added removed (the manager
        reloaded); what was found is said (the check fails)."""
        said = []
        for uid, before in self.managers.items():
            watched = self.services.pop(uid, None)
            if before is not None:  # else no manager before the check: none to start work
                said += restore_manager(uid, before, watched)
        return said

    def clean_up(self) -> list[str]:
        """Remove what this check's commands left behind, so that no check passes or
        fails on another's leftovers; say what was found.  Only what they made: our
        processes first (they could make more), then those they had the user's
        systemd start (self.escaped: the check fails), then what appeared while our
        commands ran and belongs to the user each ran as."""
        found = [f"process {p}" for p in kill_all(self.ours)]
        if not self.runs:
            for services in self.services.values():
                services.stop()
            if self.elsewhere:
                self.elsewhere.stop()
            return found
        try:
            self.escaped = kill_all(self.escaped_processes)
            self.units = self.restore_managers()
            if self.units:  # what a unit started meanwhile, stopped now or not
                self.escaped += kill_all(self.escaped_processes)
        finally:  # the watch stopped, and the crontab put back, whatever happened
            self.started_elsewhere = self.stop_elsewhere()
        found += ([f"escaped process {p}" for p in self.escaped] + self.units
                  + self.started_elsewhere)
        temp_dirs = set().union(*(self.temp_dirs(run) for run in self.runs))
        cgroups = set().union(*(self.cgroups(run) for run in self.runs))
        links = set().union(*(self.links(run) for run in self.runs))
        found += remove_temp_dirs(temp_dirs) + remove_cgroups(cgroups) + remove_links(links)
        return found


def restore_manager(uid: int, before: ManagerState | ManagerUnreachable,
                    watched: NewServices | None) -> list[str]:
    """uid's systemd as it was before the check (Leftovers.restore_managers): what was
    found, said."""
    manager = UserSystemd(uid)
    if isinstance(before, ManagerUnreachable):
        return [f"{manager.name}'s systemd, which could not be asked before the check "
                f"({before})"]
    try:
        after, changes = settled_changes(manager, before)
    except ManagerUnreachable as e:
        MANAGER_STATES.pop(uid, None)
        return [f"{manager.name}'s systemd, which could not be asked after the check ({e})"]
    finally:
        # Stopped before the undo, which starts units again.
        services = watched.stop() if watched else set()
    # The next check's before: this one's (what is still changed is found again), but
    # the bus, which may start on first use.
    MANAGER_STATES[uid] = ManagerState(
        {**{u: r for u, r in before.units.items() if u not in BUS_UNITS},
         **{u: r for u, r in after.units.items() if u in BUS_UNITS}}, before.files,
        before.environment)
    said = list(watched.trouble) if watched else []
    said += bus_restarted(manager, watched.new_buses if watched else [], before, after)
    # A unit loaded before (the manager's own) counts too, unless its timer started
    # it: set-environment, start it, unset-environment runs it with what the check
    # chose (XDG_CONFIG_HOME: systemd-tmpfiles-clean.service with rules from elsewhere).
    ended = sorted(u for u in services - BUS_UNITS - set(changes.started)
                   if u not in before.units or not manager.started_by_its_timer(u, watched.since))
    said += [f"unit {u} (started and ended during the check)" for u in ended]
    if any(changes):
        manager.undo(before, changes)
        said += ([f"unit {u} (started: stopped now)" for u in changes.started]
                 + [f"unit {u} (stopped: started again)" for u in changes.stopped]
                 + [f"file {p} (new: removed)" for p in changes.added]
                 + [f"file {p} (changed or removed)" for p in changes.changed]
                 + [f"environment variable {n} of the manager (set: put back)"
                    for n in changes.environment])
    return said


def bus_restarted(manager: UserSystemd, buses: list[int], before: ManagerState,
                  after: ManagerState) -> list[str]:
    """A bus daemon started during the check with variables the manager's environment
    did not give it (bus_variables) is stopped: the next check's starts with the
    manager's.  What was found, said."""
    tainted = bus_variables(manager, buses, before.environment, after)
    if tainted:
        with contextlib.suppress(ManagerUnreachable):
            manager.stop(sorted(BUS_UNITS & set(after.units)))
    return [f"environment variable {n} of the session bus, started during the check "
            "(not the manager's: the bus stopped)" for n in tainted]


# Running commands ---------------------------------------------------------------------


class Commands:
    """Runs one check's commands, the submission's zookeeper and host commands: as
    the check's user (or root, or another user), each within its own time limit and
    the check's, each logged, and each remembered by leftovers (what it leaves is
    found and removed)."""

    def __init__(self, args, check, log: list[str], user: User, leftovers: Leftovers):
        self.submission, self.python = Path(args.submission), args.python
        # The grader's scratch directory, and in it the user's, where commands run.
        self.scratch, self.scale = Path(args.scratch), args.timeout_scale
        self.work = self.scratch / WORK
        self.user, self.log, self.leftovers = user, log, leftovers
        self.check = check
        # --as-root: the submission's zookeeper may run as root (ROOT_REFUSED).
        self.as_root = args.as_root
        self.deadline = time.monotonic() + check.timeout * self.scale
        self.slowest: CommandTime | None = None  # the command nearest its limit
        self.own_name = pwd.getpwuid(os.getuid()).pw_name  # who runs_as None is

    def part_dir(self, part: int) -> Path:
        found = sorted(self.submission.glob(PART_GLOB.format(part)))
        if not found or not (found[0] / "zookeeper.py").exists():
            earlier = f": copy your part{part - 1}_* into part{part}_" if part > 1 else ""
            raise CheckFailed(f"no part{part}_*/zookeeper.py in the submission{earlier} "
                              "(README: each part starts as a copy of the one before)")
        return found[0]

    def runs_as(self, root=False, user: str | None = None) -> User | None:
        """Who a command runs as: the check's user, or that other user, or (None) this
        process's own user: root, or the user itself when the runner is not root."""
        if (root or user) and not self.check.other_users:
            # Not the student's loss: the check is the grader's mistake (an "error").
            raise RuntimeError(f"{self.check.id} runs a command as {user or 'root'} but is "
                               "not declared other_users=True (checks.check)")
        if user:
            return User(user)
        if root or os.getuid() != 0 or self.user.name == "root":
            return None
        return self.user

    def env(self, root=False, extra=None, user: str | None = None) -> dict[str, str]:
        """The environment a command gets; extra's entries (PATH too) win.  Run as the
        check's user by root, its HOME is the check's WORK, emptied after the check:
        what a submission leaves in the user's home (a .pth in ~/.local that Python
        runs at every start, a seccomp cache) reaches no later check, nor with
        --local the next student graded as that user."""
        env = (User(user) if user else self.user).env(root)
        if not (root or user) and self.runs_as() is not None:
            env["HOME"] = str(self.work)
        env.update(extra or {})
        return env

    def zk(self, part, *args, root=False, env=None, send_signal=None, scope=False,
           timeout=None, may_time_out=False, shell=None, user=None, timeout_hint="") -> Run:
        """Run partN/zookeeper.py with args, as the user (or root, or user: another
        user, such as nosub_user()).  timeout: its time limit in seconds
        (checks.COMMAND_SECONDS unless given), before the scale.  env: variables added
        to (or replacing) the usual ones, PATH included.
        shell: shell commands run first, in the shell that then execs zookeeper (a
        caller's state, such as an open fd: shell="exec 7</etc").  timeout_hint: what
        the time limit's message adds, when the check knows why a zookeeper may hang."""
        if root and not self.as_root:
            raise NotRunnable(ROOT_REFUSED)
        argv = [self.python, str(self.part_dir(part) / "zookeeper.py"), *args]
        if shell:
            argv = ["sh", "-c", f'{shell}; exec "$@"', "sh"] + argv
        if scope and not root and shutil.which("systemd-run"):
            # As in a student's login session: in a scope of the user's systemd.
            argv = ["systemd-run", "--user", "--scope", "--quiet", "--collect"] + argv
        return self.run(argv, who=self.runs_as(root, user), env=self.env(root, env, user),
                        send_signal=send_signal, timeout=timeout, what="zookeeper",
                        may_time_out=may_time_out, timeout_hint=timeout_hint)

    def host(self, argv, root=False, env=None, timeout=None, may_time_out=False) -> Run:
        """Run a command on the host (outside any container), as the user or root."""
        return self.run(argv, who=self.runs_as(root), env=self.env(root, env), timeout=timeout,
                        what=Path(argv[0]).name, may_time_out=may_time_out)

    def call(self, what: list[str], fn, *args, root=False) -> Run:
        """fn(*args) in a child of this process that runs as the user (or root) a
        command would run as, instead of the command what (as the log shows it): for
        the grader's own file work (children.call_as).  fn runs no program and leaves
        nothing behind; an OSError in it is the run's exit status 1 and its text the
        run's stderr.  Within a command's time limit (then killed: a timeout)."""
        who = self.runs_as(root)
        # The user's groups looked up here, as for its commands: no lookup after the fork.
        identity = Identity(who.uid, who.gid, who.popen_ids()["extra_groups"]) if who else None
        started = time.monotonic()
        # Files are made as the effective uid, the user's; kill(2) asks for the real or
        # saved one, root's: no process of the user's can stop it.
        status, said, timed_out = call_as(fn, args, identity, keep_root=True,
                                          seconds=self.time_limit())
        run = Run(what, status, "", said.decode(errors="replace"), time.monotonic() - started,
                  timed_out, uid=who.uid if who else os.getuid(),
                  user=who.name if who else self.own_name)
        self.log.append(run.log())
        return run

    def time_limit(self, timeout=None, send_signal=None) -> float:
        """A command's limit in seconds: its own (or checks.COMMAND_SECONDS), plus the
        wait before a signal it is sent, scaled for the machine; never past the
        check's own deadline."""
        base = (timeout or checks.COMMAND_SECONDS) + (send_signal[1] if send_signal else 0)
        left = max(1.0, self.deadline - time.monotonic())
        return min(base * self.scale, left)

    def run(self, argv, env, send_signal=None, timeout=None, what="the command",
            may_time_out=False, who: User | None = None, timeout_hint="") -> Run:
        """Run argv as who (None: as this process) and return what it did.  A command
        that reaches its time limit fails the check (whatever it printed: a run that
        did not end is not a pass), unless the check says it may (may_time_out) and
        looks at run.timed_out itself.  send_signal=(NAME, seconds): SIGNAME is sent
        once the command prints checks.READY on a line of its own, or after so many
        seconds (times the square root of the scale) if it never does."""
        timeout = self.time_limit(timeout, send_signal)
        restored = ready_work(self.scratch, self.user.name)
        if restored:
            self.log.append(restored)
        self.leftovers.watch_user(who.uid if who else os.getuid())
        before = self.leftovers.snapshot()
        started = time.monotonic()
        try:
            proc = subprocess.Popen(argv, env=env, cwd=str(self.work),
                                    stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                    stderr=subprocess.PIPE, start_new_session=True,
                                    **(who.popen_ids() if who else {}))
        except BlockingIOError:
            if not who:
                raise  # this runner's own fork failed: the grader's trouble
            # execve(2)'s EAGAIN after the switch to who: that user is at its process
            # limit (limit_processes), with processes the submission left where the
            # runner does not reach (started by the user's systemd, say).
            expect(False, f"could not start {what} as {who.name}: {who.name} already has "
                   "as many processes as it may (RLIMIT_NPROC), left by earlier commands")
        self.leftovers.started(proc.pid)
        output = Output(proc)
        if send_signal:
            name, delay = send_signal
            read_until_ready(output, delay * self.scale ** 0.5)
            try:
                proc.send_signal(getattr(signal, f"SIG{name}"))
            except ProcessLookupError:
                pass
        timed_out = not output.read_all(started + timeout - time.monotonic())
        if timed_out:
            # Its group first, at once and before any look at /proc: a fork bomb
            # leaves this process little CPU, and outruns killing by pid.  Then the
            # rest of what it started (slirp4netns has a session of its own, and may
            # hold the output pipes open), orphans that came back to this subreaper.
            kill_group(proc)
            kill_all(lambda: self.leftovers.ours() - before.processes)
            finish_killed(output)
        out, err = output.texts()
        run = Run(argv, proc.returncode, out, err, time.monotonic() - started, timed_out,
                  uid=who.uid if who else os.getuid(), before=before,
                  user=who.name if who else self.own_name,
                  unreaped=reap_unreaped(before.children | {proc.pid}))
        self.leftovers.ran(run)
        self.log.append(run.log())
        spent = CommandTime(round(run.seconds, 2), round(timeout, 1))
        if self.slowest is None or spent.share > self.slowest.share:
            self.slowest = spent
        if timed_out and not may_time_out:
            expect(False, f"{what} did not exit within {seconds_text(timeout)} s"
                   f"{timeout_hint}", run)
        return run

    def try_syscalls(self, part, names) -> dict:
        """helpers/try_syscalls.py's verdict on each system call named, in part's
        container (part None: on the host)."""
        helper = str(HERE / "helpers" / "try_syscalls.py")
        env = {"TRY_DIR": str(self.work)}  # it makes files there, as the user
        if part is None:
            run = self.host([self.python, helper, *names], env=env)
        else:
            run = self.zk(part, self.python, helper, *names, env=env)
        try:
            verdicts = json.loads(run.stdout.strip().splitlines()[-1])
        except (ValueError, IndexError):
            verdicts = None
        expect(isinstance(verdicts, dict) and all(isinstance(v, str) for v in verdicts.values()),
               "the syscall tester printed nothing (or not its verdicts) in the container (it "
               "tries each call in a forked child: a filter that refuses clone or fork, or "
               "another call Python needs, stops it first)", run)
        return verdicts


# What a check sets up -----------------------------------------------------------------


@cache
def archive_members(archive: str) -> tuple[tarfile.TarInfo, ...]:
    """The rootfs archive's members, read once (tarfile's own extraction costs more
    than tar(1)'s under TCG: unpack does the system calls alone)."""
    try:
        with tarfile.open(archive, "r:") as tar:  # uncompressed: unpack reads it in place
            members = tuple(tar.getmembers())
    except (OSError, tarfile.TarError) as e:
        raise NotRunnable(f"cannot read the rootfs archive {archive}: {e}") from None
    odd = [m.name for m in members if not (m.isdir() or m.isfile() or m.issym())]
    if odd:
        raise NotRunnable(f"{archive} holds more than directories, files and links: {odd[0]}")
    return members


def unpack(archive: str, dest: str) -> None:
    """archive's directories, files and symbolic links made under dest with their modes
    and times, owned by whoever calls it, as `tar -x -p --no-same-owner` makes them.
    dest is an empty directory of the caller's (Fixtures.rootfs makes it, for a user
    in root's scratch directory), or made anew.  Every name is opened relative to
    dest's descriptor (openat(2))."""
    at = own_empty_directory(dest)
    try:
        source = os.open(archive, os.O_RDONLY)
    except OSError:
        os.close(at)
        raise
    try:
        os.fchmod(at, 0o755)  # whatever the umask
        directories = []
        for m in archive_members(archive):
            times = (m.mtime, m.mtime)
            if m.isdir():
                os.mkdir(m.name, 0o700, dir_fd=at)  # its own mode once it is filled
                directories.append(m)
            elif m.issym():
                os.symlink(m.linkname, m.name, dir_fd=at)
                os.utime(m.name, times, dir_fd=at, follow_symlinks=False)
            else:
                fd = os.open(m.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW,
                             0o600, dir_fd=at)
                try:
                    copied = 0
                    while copied < m.size:  # sendfile(2) may copy less
                        sent = os.sendfile(fd, source, m.offset_data + copied, m.size - copied)
                        if not sent:
                            raise OSError(f"{archive} ends inside {m.name}")
                        copied += sent
                    os.fchmod(fd, m.mode)
                    os.utime(fd, times)
                finally:
                    os.close(fd)
        for m in reversed(directories):  # the deepest first, as tar does at its end
            os.chmod(m.name, m.mode, dir_fd=at)
            os.utime(m.name, (m.mtime, m.mtime), dir_fd=at)
    finally:
        os.close(at)
        os.close(source)


def no_room(said: str) -> bool:
    """Is said an OSError's text for a full disk or quota (ENOSPC, EDQUOT)?"""
    return said.startswith((f"[Errno {errno.ENOSPC}]", f"[Errno {errno.EDQUOT}]"))


def free_bytes(path) -> int:
    """Bytes an unprivileged user may still write where path is (statvfs(3))."""
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def filled_meanwhile(path) -> bool:
    """Is there much less room where path is than when this runner began?"""
    before = FREE_AT_START.get("scratch")
    try:
        return before is not None and free_bytes(path) < before - FILLED_BYTES
    except OSError:
        return False


def own_empty_directory(path: str) -> int:
    """A descriptor of path, an empty directory of the caller's: the one there, or one
    made in place of whatever is there (one a check's commands left: removed as rm -rf
    would, a link itself).  Opened without following a link, and refused (OSError)
    when what was opened is not that: whoever may write in path's directory can put
    a link or a directory of theirs in its place meanwhile."""
    with contextlib.suppress(OSError):
        at = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
        if os.fstat(at).st_uid == os.geteuid() and not os.listdir(at):
            return at
        os.close(at)
    parent = os.open(os.path.dirname(path) or ".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        remove_entry(parent, os.path.basename(path))  # never through a link
    finally:
        os.close(parent)
    os.mkdir(path, 0o755)
    at = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    if os.fstat(at).st_uid != os.geteuid() or os.listdir(at):
        os.close(at)
        raise OSError(f"{path} changed while it was being made")
    return at


class Fixtures:
    """What a check sets up for its commands: a busybox rootfs, a plain file, and
    HTTP servers on this machine for the network checks."""

    def __init__(self, commands: Commands, rootfs_tar: str | None):
        self.commands, self.rootfs_tar = commands, rootfs_tar
        self.rootfs_made = 0
        # Keyed by loopback (see server): the servers and the tokens they answer with.
        self.servers: dict = {}  # loopback: its http.server.ThreadingHTTPServer
        self.tokens: dict[bool, str] = {}

    def plain_file(self) -> str:
        """A file that is no program (mode 0644), in the grader's scratch directory,
        where the user can put no link for it to be written through."""
        name = "not-executable"
        write_new_file(self.commands.scratch, name, "just data\n", 0o644)
        return str(self.commands.scratch / name)

    def new_file(self, directory: Path, name: str, text: str) -> None:
        """directory/name written anew (mode 0644) by the runner, never through a link
        that the user, or a container of the user's, put there.  If the user's
        processes keep taking the name meanwhile, the check fails: the submission's
        doing, not the grader's."""
        try:
            write_new_file(directory, name, text, 0o644)
        except OSError as e:
            raise CheckFailed(f"the grader could not write {name} in the rootfs: something "
                              f"of the submission's took its place ({e.strerror})") from None

    def rootfs(self, root=False) -> Path:
        """A fresh busybox rootfs for this check, unpacked by the user who runs the
        container, so its root owns it: as `tar -x -p --no-same-owner` would (the
        modes as in the archive, as the course's umask 0), without tar (unpack)."""
        if not self.rootfs_tar:
            raise NotRunnable("no rootfs tarball (--rootfs-tar)")
        archive_members(self.rootfs_tar)  # read here, once: its error is this process's
        self.rootfs_made += 1
        who = self.commands.runs_as(root)
        # Made here, in the grader's scratch directory (the user can make nothing
        # there, nor rename what is there), in a directory only the container's root
        # may pass through (private_directory), and given to who unpacks it.
        private = private_directory(self.commands.scratch,
                                    f"zoo-fs-{'root' if root else 'user'}-{self.rootfs_made}",
                                    who)
        make_directory(private, ROOTFS, who)
        dest = private / ROOTFS
        run = self.commands.call(["tar", "-x", "-p", "--no-same-owner", "-f", self.rootfs_tar,
                                  "-C", str(dest)], unpack, self.rootfs_tar, str(dest),
                                 root=root)
        if run.status != 0 and no_room(run.stderr) and filled_meanwhile(self.commands.scratch):
            raise CheckFailed("no room to unpack the rootfs: the disk was filled while the "
                              f"submission ran ({run.stderr})")
        if run.status != 0:
            raise NotRunnable(f"could not unpack the rootfs: {run.stderr or run.status_text}")
        return dest

    def server(self, loopback=False) -> tuple[str, int]:
        """A small HTTP server on a non-loopback address of this machine, for the
        network checks; returns (address, port).  It answers every GET with a token
        (server_token()).  loopback: another one, on 127.0.0.1 only, with a token of
        its own (server_token(loopback=True)): what a container must not reach."""
        if loopback in self.servers:
            return self.servers[loopback].server_address
        # Imported here, by the network checks only: http.server brings http.client,
        # email and ssl, ~0.9 s under TCG that every runner would pay at its start.
        import http.server

        address = "127.0.0.1" if loopback else host_address()
        if not address:
            raise NotRunnable("this machine has no non-loopback IPv4 address for the server")
        token = self.tokens[loopback] = (
            # os.urandom, not secrets: that one loads libcrypto (~0.1 s under TCG).
            f"zoo-{'loopback-' if loopback else ''}{os.urandom(8).hex()}")

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                body = (token + "\n").encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        server = self.servers[loopback] = http.server.ThreadingHTTPServer((address, 0), Handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.commands.log.append(f"(test server listening on {address}:{server.server_port})")
        return server.server_address

    def server_token(self, loopback=False) -> str:
        return self.tokens[loopback]

    def close(self) -> None:
        for server in self.servers.values():
            server.shutdown()
            server.server_close()


# What a check sees --------------------------------------------------------------------


class Context:
    """What a check sees, its z: the check's user, what it runs (commands), what
    those leave (left), what it sets up (fixtures), and the verbs checks.py uses
    (z.zk, z.expect, ...), each taken from the part that does it."""

    def __init__(self, args, check, log: list[str]):
        self.log = log
        self.user = User(args.user)
        self.left = Leftovers(runner_files(args))
        self.commands = Commands(args, check, log, self.user, self.left)
        self.fixtures = Fixtures(self.commands, args.rootfs_tar)
        self.nosub_name = args.nosub_user
        commands, fixtures = self.commands, self.fixtures
        self.python, self.scratch, self.timeout_scale = (
            commands.python, commands.scratch, commands.scale)
        self.zk, self.host, self.env = commands.zk, commands.host, commands.env
        self.call = commands.call
        self.part_dir, self.try_syscalls = commands.part_dir, commands.try_syscalls
        self.rootfs, self.plain_file = fixtures.rootfs, fixtures.plain_file
        self.new_file = fixtures.new_file
        self.as_root = commands.as_root
        self.server, self.server_token = fixtures.server, fixtures.server_token
        self.expect, self.not_runnable = expect, NotRunnable

    def nosub_user(self) -> str:
        """The user without any subordinate range (the VM's nosub; --nosub-user)."""
        why = no_subid_user_missing(self.nosub_name)
        if why:
            raise NotRunnable(why)
        return self.nosub_name

    def close(self) -> list[str]:
        """The check is over: its servers stop, what its commands left is removed;
        returns what was found (see Leftovers.clean_up)."""
        self.fixtures.close()
        return self.left.clean_up()


# The machine's processes, addresses and links -----------------------------------------


def host_address() -> str:
    """The first global IPv4 address of this machine (in the grader's VM: 192.168.200.1)."""
    done = subprocess.run(["ip", "-4", "-o", "addr", "show", "scope", "global"],
                          capture_output=True, text=True)
    for line in done.stdout.splitlines():
        fields = line.split()
        if "inet" in fields:
            return fields[fields.index("inet") + 1].split("/")[0]
    return ""


class Proc:
    """One line of the process table: /proc/PID/stat's fields the runner needs."""

    def __init__(self, pid: int, stat: str):
        fields = fields_after_name(stat)
        self.pid, self.state = pid, fields[0]
        self.ppid, self.pgid, self.sid = int(fields[1]), int(fields[2]), int(fields[3])


def process_table() -> dict[int, Proc]:
    """Every process's /proc/PID/stat.  Read with os.read, not open(): the runner
    reads it before every command, and under TCG a file object's layers cost more
    than the reading."""
    table = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                fd = os.open(f"/proc/{entry}/stat", os.O_RDONLY)
                try:
                    stat = os.read(fd, 4096).decode(errors="replace")
                finally:
                    os.close(fd)
                table[int(entry)] = Proc(int(entry), stat)
            except (OSError, ValueError):
                continue  # gone meanwhile
    return table


def children_of(pid: int, table: dict[int, Proc]) -> list[int]:
    return [p.pid for p in table.values() if p.ppid == pid]


def descendants(table: dict[int, Proc], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for p in table.values():
        children.setdefault(p.ppid, []).append(p.pid)
    found, todo = set(), [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


def command_line(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return ""


def become_subreaper() -> None:
    """Orphans of what the runner starts (a helper whose zookeeper exited, a daemon)
    become its children rather than init's, so they stay its to find and kill.
    prctl(2) PR_SET_CHILD_SUBREAPER; without it (not Linux?) only sessions count."""
    import ctypes

    try:
        ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def own_children() -> set[int]:
    """This process's children, dead or alive: /proc/self/task/*/children (proc(5)),
    without a look at every process; the whole table where a kernel lacks them."""
    try:
        pids = set()
        for task in os.listdir("/proc/self/task"):
            with open(f"/proc/self/task/{task}/children") as f:
                pids.update(int(pid) for pid in f.read().split())
        return pids
    except FileNotFoundError:
        return set(children_of(os.getpid(), process_table()))


def reap_unreaped(not_its: set[int]) -> list[str]:
    """The children a command left this process, 'PID (name)' each, the dead ones
    reaped: a process that exits before its children, or without waiting for them,
    leaves them to its parent's subreaper (this one), dead or alive (exit(2)'s NOTES,
    prctl(2) PR_SET_CHILD_SUBREAPER).  One still running is named so; Leftovers
    kills it.  Called once a command has ended; not_its: the command's own pid, and
    the children this process had before it (a check's own, an earlier command's)."""
    found = []
    for pid in sorted(own_children() - not_its):
        try:
            with open(f"/proc/{pid}/comm", encoding="utf-8", errors="replace") as f:
                name = f.read().strip()
            if os.waitid(os.P_PID, pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                found.append(f"{pid} ({name}, still running)")
                continue
            os.waitpid(pid, 0)
        except (OSError, ChildProcessError):
            continue
        found.append(f"{pid} ({name})")
    return found


def reap_orphans() -> None:
    """Collect the exit status of orphans reparented to this process (a subreaper):
    subprocess waits only for the commands it started, and they have ended (or
    been killed) when this is called."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


def temp_dir_owners(uid: int) -> set[int]:
    """Who may own the /tmp/zoo.* a run as uid makes: uid; root gives its mount point
    to the container's root, the first id of root's range in /etc/subuid, when it has
    ranges in both /etc/subuid and /etc/subgid (idmap.container_root)."""
    if uid != 0:
        return {uid}
    ranges = [subids.first_range(kind, "root", 0) for kind in ("subuid", "subgid")]
    return {uid} if None in ranges else {uid, ranges[0][0]}


def owned_by(paths: set[str], uid: int) -> set[str]:
    owned = set()
    for path in paths:
        try:
            if os.lstat(path).st_uid == uid:  # a link by its own owner, not its target's
                owned.add(path)
        except OSError:
            pass  # gone meanwhile
    return owned


def zoo_links() -> set[str]:
    """The network links named as zookeeper names its own: zv<pid> and zoo0."""
    try:
        names = os.listdir("/sys/class/net")
    except OSError:
        return set()
    return {n for n in names if n == "zoo0" or n.startswith("zv")}


# The bus daemons a user's manager starts on the bus's first use (dbus.service).
BUS_DAEMONS = {"dbus-daemon", "dbus-broker", "dbus-broker-launch"}


def watched_uids(runs) -> set[int]:
    """The users whose new processes a check's cleanup looks for outside its tree: those
    its commands ran as, but root (whose code may do anything, and whose processes
    are the machine's), and only when the runner is root (it kills them by pid)."""
    return {run.uid for run in runs if watched_uid(run.uid)}


def watched_uid(uid: int) -> bool:
    """Is uid a user whose systemd a check's cleanup looks at (watched_uids)?"""
    return os.getuid() == 0 and uid != 0


def started_by_user_manager(pid: int, uids: set[int]) -> bool:
    """Is pid the process of one of uids that its systemd user manager runs (in the
    manager's cgroup, user@UID.service), other than its manager and bus daemon?"""
    uid, group = real_uid(pid), cgroup_of(pid)
    if uid not in uids or f"/user@{uid}.service/" not in group:
        return False
    return not group.endswith("/init.scope") and not managers_bus(pid)


def bus_variables(manager: UserSystemd, buses: list[int], environment: dict[str, str],
                  after: ManagerState) -> list[str]:
    """The variables of the bus daemons started during the check (buses) that the
    manager's environment before it did not give them (foreign_variables), but those
    the bus's unit sets itself (Environment=, an administrator's drop-in: asked only
    when some are found)."""
    found = {name for pid in buses for name in foreign_variables(pid, environment)}
    units = sorted(BUS_UNITS & set(after.units))
    if found and units:
        with contextlib.suppress(ManagerUnreachable):
            said = manager.systemctl("show", "--property=Environment", "--value", "--", *units)
            found -= {word.split("=", 1)[0] for word in said.split() if "=" in word}
    return sorted(found)


def managers_bus(pid: int) -> bool:
    """Is pid the bus daemon the manager started (dbus-broker: with the launcher it
    started)?  Not one that a program the bus ran started: dbus-daemon with a
    configuration of the user's runs programs on request as the bus does, and would
    outlive the check."""
    name, parent = executable_name(pid), parent_of(pid)
    if name == "dbus-broker" and executable_name(parent) == "dbus-broker-launch":
        name, parent = "dbus-broker-launch", parent_of(parent)
    return name in BUS_DAEMONS and cgroup_of(parent).endswith("/init.scope")


def executable_name(pid: int) -> str:
    try:
        return os.path.basename(os.readlink(f"/proc/{pid}/exe"))
    except OSError:
        return ""


# What each user's manager ran and held before the first check of this process that ran
# commands as that user (its bus as the last check left it): every later check's
# before, so that a check asks the manager once (and again only when it finds a change).
MANAGER_STATES: dict[int, ManagerState] = {}
# And each such user's crontab and at jobs (schedulers.py), put back after each check.
SCHEDULER_STATES: dict[int, SchedulerState] = {}
# And its home (home.py), put back after each check.
HOME_COPIES: dict[int, HomeCopy] = {}


class Output:
    """What a command prints on its stdout and stderr pipes, read as it comes: at most
    OUTPUT_LIMIT bytes of each kept, the rest read and dropped (counted), so that the
    command never blocks on a full pipe and the runner's memory stays bounded."""

    def __init__(self, proc: subprocess.Popen):
        self.proc = proc
        self.open = {proc.stdout.fileno(): "stdout", proc.stderr.fileno(): "stderr"}
        self.kept = {"stdout": bytearray(), "stderr": bytearray()}
        self.dropped = {"stdout": 0, "stderr": 0}
        self.note = b""

    def read_some(self, seconds: float, which=None) -> bool:
        """Read what comes within seconds on the open pipes (which: that one only),
        once; False when nothing came in time."""
        fds = [fd for fd, name in self.open.items() if which in (None, name)]
        if not fds or seconds <= 0:
            return False
        ready = select.select(fds, [], [], seconds)[0]
        for fd in ready:
            chunk = os.read(fd, 65536)
            if not chunk:
                del self.open[fd]
                continue
            kept = self.kept[self.open[fd]]
            room = max(0, OUTPUT_LIMIT - len(kept))
            kept += chunk[:room]
            self.dropped[self.open[fd]] += len(chunk) - len(chunk[:room])
        return bool(ready)

    def read_all(self, seconds: float) -> bool:
        """Both pipes to their end and the command's exit, within seconds; False when
        the seconds passed first."""
        deadline = time.monotonic() + seconds
        while self.open:
            if not self.read_some(deadline - time.monotonic()):
                return False
        try:
            self.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            return False
        return True

    def texts(self) -> tuple[str, str]:
        """stdout and stderr as text; stderr ends with what was dropped, if anything."""
        notes = "".join(f"(grader: {n} more bytes of {name} dropped)\n"
                        for name, n in self.dropped.items() if n)
        err = bytes(self.kept["stderr"]) + self.note
        if notes:
            err += (b"" if err.endswith(b"\n") or not err else b"\n") + notes.encode()
        return (bytes(self.kept["stdout"]).decode(errors="replace"),
                err.decode(errors="replace"))


def read_until_ready(output: Output, seconds: float) -> None:
    """Read what the command prints until a line of its own on stdout is
    checks.READY (it is ready for the signal the check sends: its trap is set, its
    container runs), or until so many seconds have passed, or its stdout closes."""
    marker = b"\n" + checks.READY.encode() + b"\n"
    deadline = time.monotonic() + seconds
    while "stdout" in output.open.values() and marker not in b"\n" + output.kept["stdout"]:
        if not output.read_some(deadline - time.monotonic()):
            return


def finish_killed(output: Output) -> None:
    """The rest of the output of a command killed at its timeout.  A process outside
    its group (one that called setsid, say) may still hold the pipes: then what came
    so far, so that one stuck command cannot stall the whole grading."""
    proc = output.proc
    if output.read_all(PIPE_GRACE_SECONDS):
        return
    for pipe in (proc.stdout, proc.stderr):
        pipe.close()
    output.open.clear()
    try:
        proc.wait(timeout=PIPE_GRACE_SECONDS)
    except subprocess.TimeoutExpired:
        pass
    output.note = b"\n(grader: the output stayed open after the kill; reading stopped)\n"


def kill_group(proc: subprocess.Popen) -> None:
    """Kill a command's process group, again and again while it still forks.  Its
    members' zombies keep the group alive: the leader is reaped (proc.poll), then
    the others, orphans that came back to this process (a subreaper)."""
    for _ in range(200):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            return
        time.sleep(0.02)
        if proc.poll() is not None:  # never before: waitid could take the leader
            reap_group(proc.pid)


def reap_group(pgid: int) -> None:
    while True:
        try:
            if os.waitid(os.P_PGID, pgid, os.WEXITED | os.WNOHANG) is None:
                return
        except ChildProcessError:
            return


def kill_all(find, seconds: float = KILL_SECONDS) -> list[str]:
    """Kill the running processes find() names, by pid, until it names none (a fork
    bomb makes more meanwhile) or for so many seconds (a process in uninterruptible
    sleep dies only when it wakes); returns what it named first, described."""
    deadline = time.monotonic() + seconds
    pids = find()
    found = describe(pids)
    while pids and time.monotonic() < deadline:
        kill_pids(pids)
        time.sleep(0.02)
        reap_orphans()
        pids = find()
    reap_orphans()
    return found


def describe(pids, shown: int = 5) -> list[str]:
    """'PID (command line)' for the first few: reading a command line waits while
    the process forks, and a fork bomb's are all alike."""
    said = [f"{pid} ({command_line(pid)[:60]})" for pid in sorted(pids)[:shown]]
    return said + ([f"{len(pids) - shown} more"] if len(pids) > shown else [])


def kill_pids(pids) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def mount_point_of(path: str) -> str:
    """/tmp/zoo.X for /tmp/zoo.X and its overlay's /tmp/zoo.X.overlay."""
    directory, name = os.path.split(path)
    return os.path.join(directory, ".".join(name.split(".")[:2]))


@contextlib.contextmanager
def mount_point_lock(path: str):
    """Try for the flock(2) lock a running zookeeper holds on its mount point
    (rootfs.py) without waiting, and hold it while the block runs: yields False when
    a zookeeper holds it (in use), True otherwise (ours now, or the mount point is
    gone).  As zookeeper's own sweep does: one starting at that very moment fails to
    lock and picks another name.  (/proc/locks would answer without trying, but not
    on btrfs, whose stat gives a subvolume's device, nor for a holder outside our
    PID namespace.)"""
    try:
        fd = os.open(mount_point_of(path), os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    except OSError:
        yield True  # gone already (or a link): what is left of it is no one's
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # and with it our lock, if we took it


def in_use(path: str) -> bool:
    """Does a running zookeeper hold path's mount point?"""
    with mount_point_lock(path) as ours:
        return not ours


def cgroup_members(path: str) -> set[int]:
    """The pids in a cgroup and the cgroups below it."""
    members = set()
    for directory, _, _ in os.walk(path):
        try:
            members |= {int(pid) for pid in Path(directory, "cgroup.procs").read_text().split()}
        except (OSError, ValueError):
            pass
    return members


def remove_temp_dirs(paths: set[str]) -> list[str]:
    """Remove leftover mount points and overlays, each while holding its mount point's
    lock, as zookeeper's own sweep does (rootfs.remove_if_orphaned): a zookeeper that
    took it meanwhile keeps what is its own, and one starting now picks another name."""
    removed = []
    by_mount_point: dict[str, list[str]] = {}
    for path in paths:
        by_mount_point.setdefault(mount_point_of(path), []).append(path)
    for mount_point, group in sorted(by_mount_point.items()):
        with mount_point_lock(mount_point) as ours:
            if not ours:
                continue  # a zookeeper holds it: in use, not left behind
            for path in sorted(group, reverse=True):  # the overlay before its mount point
                subprocess.run(["rm", "-rf", path], capture_output=True)
                removed.append(f"temporary directory {path}")
    return removed


def remove_cgroups(paths: set[str]) -> list[str]:
    """Container cgroups (zoo-PID, never the guest's zoo-job.service), deepest first."""
    for path in sorted(paths, key=len, reverse=True):
        try:
            Path(path, "cgroup.kill").write_text("1")
        except OSError:
            pass
        for _ in range(50):
            try:
                os.rmdir(path)
                break
            except FileNotFoundError:
                break
            except OSError:
                time.sleep(0.02)
    return [f"cgroup {path}" for path in sorted(paths)]


def remove_links(names: set[str]) -> list[str]:
    """The veth ends first: a bridge still in use by someone else's link stays."""
    for name in sorted(names, key=lambda n: n == "zoo0"):
        if name == "zoo0" and bridge_ports("zoo0"):
            continue
        subprocess.run(["ip", "link", "del", name], capture_output=True)
    return [f"network link {name}" for name in sorted(names)]


def bridge_ports(name: str) -> list[str]:
    try:
        return os.listdir(f"/sys/class/net/{name}/brif")
    except OSError:
        return []


# The scratch directory ----------------------------------------------------------------
#
# Each runner (each lane's) has one, made by prepare_scratch: the grader's own (this
# process's, mode 0755), where it makes what a check sets up (a plain file, a rootfs
# directory for its user, a marker), and in it WORK, the user's own, where the
# user's commands run (their working directory) and may write.  The user can neither
# rename nor remove what is in the scratch directory, WORK included: that takes
# write permission on the directory holding the name (rename(2), unlink(2), rmdir(2):
# EACCES); nor the scratch directory itself, in /tmp, whose sticky bit lets only an
# entry's owner do it (EPERM; S_ISVTX in inode(7)).  So a path to the scratch
# directory, or to a name directly in it, leads where it did.  Below that, in WORK
# and in the user's rootfs, the user may put a link anywhere at any moment: root
# goes there only by descriptors, looking each name up in its directory's
# (openat(2), unlinkat(2)), and never through a link (O_NOFOLLOW; unlinkat removes a
# link itself).  Whatever a command as the user does there, root can remove it
# afterwards.  Only the submission's code run as root (checks with other_users), or
# as the runner's own user (--local without root), can do more: then the check
# fails (ScratchInterfered) and the next one gets a new scratch directory.

WORK = "work"


class ScratchInterfered(CheckFailed):
    """The submission changed the scratch directory so that the grader cannot use it
    (put a link or another's directory in its place): the check fails, and the next
    check gets a new one."""

    def __init__(self, why: str):
        super().__init__(f"the submission interfered with the grader's scratch directory: {why}")


def prepare_scratch(user: str) -> Path:
    """A new scratch directory for checks run as user, with its WORK."""
    scratch = Path(tempfile.mkdtemp(prefix="zoo-grader-"))  # mode 0700, this process's
    scratch.chmod(0o755)  # the user passes through it to WORK, and reads its fixtures
    with contextlib.suppress(OSError):
        FREE_AT_START.setdefault("scratch", free_bytes(scratch))
    ready_work(scratch, user)
    return scratch


def open_scratch(scratch: Path) -> int:
    """A descriptor of the scratch directory, checked to be this process's directory
    (never a link's target).  FileNotFoundError when it is gone; ScratchInterfered
    when something else stands in its place."""
    try:
        at = os.open(scratch, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except FileNotFoundError:
        raise
    except OSError as e:  # ELOOP for a link, ENOTDIR for a file (open(2))
        raise ScratchInterfered(f"{scratch} was replaced ({e.strerror})") from None
    if os.fstat(at).st_uid != os.geteuid():
        os.close(at)
        raise ScratchInterfered(f"{scratch} was replaced by another user's directory")
    return at


def ready_work(scratch: Path, user: str) -> str:
    """Before each command and each check: the scratch directory, and the user's WORK
    in it, as prepare_scratch made them.  The user may change WORK's mode (after a
    chmod 0 its next commands could neither read nor write there, in this check and
    the next ones), a command as root may remove them: made so again.  Returns what
    was done, for the log ('' if nothing); ScratchInterfered if it cannot be."""
    said = []
    try:
        try:
            at = open_scratch(scratch)
        except FileNotFoundError:
            os.mkdir(scratch, 0o700)  # /tmp's name again, unless someone took it (EEXIST)
            said.append(f"the scratch directory {scratch} was gone (removed by the "
                        "submission?): made again")
            at = open_scratch(scratch)
            os.fchmod(at, 0o755)
        try:
            said += ready_user_directory(at, WORK, user_ids(user))
        finally:
            os.close(at)
    except OSError as e:  # a name taken meanwhile, WORK another's: not root's doing
        raise ScratchInterfered(f"{scratch} cannot be made ready again ({e})") from None
    return "; ".join(said)


def user_ids(user: str) -> tuple[int, int] | None:
    """(uid, gid) to give the user's directories: None when this process is not root
    (its files are its own, the user's)."""
    if os.geteuid() != 0:
        return None
    pw = pwd.getpwnam(user)
    return pw.pw_uid, pw.pw_gid


def ready_user_directory(at: int, name: str, owner: tuple[int, int] | None) -> list[str]:
    """name in the directory at: a directory of owner's (None: of this process's),
    mode 0755; made so if it is not.  What was done, for the log."""
    said = []
    try:
        fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC,
                     dir_fd=at)
    except FileNotFoundError:
        said.append(f"the working directory {name} was gone: made again")
        fd = make_directory_at(at, name, owner)
    except OSError:  # a link, a file: what a command as root could put there
        remove_entry(at, name)
        said.append(f"the working directory {name} was replaced: made again")
        fd = make_directory_at(at, name, owner)
    try:
        info = os.fstat(fd)
        if owner and (info.st_uid, info.st_gid) != owner:
            os.fchown(fd, *owner)
            said.append(f"the working directory {name} was another user's: the user's again")
        if info.st_mode & 0o7777 != 0o755:
            os.fchmod(fd, 0o755)
            said.append(f"the working directory {name} had the mode "
                        f"{info.st_mode & 0o7777:04o}: 0755 again")
    finally:
        os.close(fd)
    return said


def make_directory_at(at: int, name: str, owner: tuple[int, int] | None,
                      mode: int = 0o755) -> int:
    """A new directory name in the directory at, mode 0755 (or mode), given to owner
    (None: this process's); its descriptor.  Refused (OSError) if what is opened after the mkdir
    is not the empty directory this process made (its directory is writable by
    others)."""
    os.mkdir(name, 0o700, dir_fd=at)
    fd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=at)
    try:
        if os.fstat(fd).st_uid != os.geteuid() or os.listdir(fd):
            raise OSError(f"{name} changed while it was being made")
        if owner:
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)  # whatever the umask
    except BaseException:
        os.close(fd)
        raise
    return fd


# A check's rootfs, in a directory of its own (private_directory).
ROOTFS = "rootfs"


def private_directory(parent: Path, name: str, who: User | None) -> Path:
    """parent/name made anew, a directory that only the root of who's containers (None:
    this process's) may pass through: the scratch directory is everyone's to read
    (0755), and a rootfs holds a directory anyone may write in, var/tmp (1777, as
    the course's archive has it).  Through it another user of the machine could
    fill the container's tree while a check runs (a /var/tmp/tmp/<scratch>/<marker>
    fails p4_pivot_root).  So the directory above the rootfs is mode 0710, root's
    and of the group of the container's root (the user's own gid rootless; root's
    first subordinate gid, as zookeeper maps it, when root has ranges): its
    zookeeper and tar get through, nobody else does; the container itself never
    looks at it after pivot_root.  Run as the user (no root), 0700 and the user's."""
    at = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        remove_entry(at, name)
        if os.geteuid() == 0:
            os.close(make_directory_at(at, name, (0, container_root_gid(who)), 0o710))
        else:
            os.close(make_directory_at(at, name, None, 0o700))
    finally:
        os.close(at)
    return parent / name


def container_root_gid(who: User | None) -> int:
    """The host's gid of the root of a container that who (None: root) runs: the
    user's own gid, or for root its first subordinate gid when it has ranges in both
    /etc/subuid and /etc/subgid (temp_dir_owners), else 0."""
    if who is not None:
        return who.gid
    ranges = [subids.first_range(kind, "root", 0) for kind in ("subuid", "subgid")]
    return 0 if None in ranges else ranges[1][0]


def make_directory(parent: Path, name: str, who: User | None) -> None:
    """parent/name made anew, an empty directory (mode 0755) of who's (None: of this
    process's): a rootfs's, in the scratch directory."""
    at = os.open(parent, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        remove_entry(at, name)
        owner = (who.uid, who.gid) if who and os.geteuid() == 0 else None
        os.close(make_directory_at(at, name, owner))
    finally:
        os.close(at)


def write_new_file(directory: Path, name: str, text: str, mode: int,
                   directory_may_be_a_link: bool = False) -> None:
    """directory/name, a new file of this process's with text and mode: whatever had
    the name is removed first (a link itself, unlinkat(2)), and the file is made only
    if nothing took the name meanwhile (O_CREAT | O_EXCL; O_NOFOLLOW too: open(2)
    fails on a link even with O_EXCL, never writes through it).  directory itself is
    no link either, unless the caller says it may be (its own choice of a path)."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC
    at = os.open(directory, flags if directory_may_be_a_link else flags | os.O_NOFOLLOW)
    try:
        remove_entry(at, name)
        fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600, dir_fd=at)
        with os.fdopen(fd, "w", encoding="utf-8", errors="replace") as f:
            f.write(text)
            os.fchmod(fd, mode)
    finally:
        os.close(at)


def remove_entry(at: int, name: str) -> None:
    """rm -rf of name in the directory at, never through a symbolic link."""
    remove_entries(at, [name])


def empty_scratch(scratch: Path, user: str) -> str:
    """After a check: what it made in the scratch directory goes (remove_entries), and
    WORK is made again, empty.  Returns what is left that this process may not
    remove, for the log ('' when nothing: the scratch directory can serve the next
    check); ScratchInterfered when the submission made it unusable."""
    try:
        at = open_scratch(scratch)
    except FileNotFoundError:
        return ""  # removed by a command as root: ready_work makes it again
    try:
        remove_entries(at, os.listdir(at))
        left = sorted(os.listdir(at))
        if left and os.geteuid() == 0:  # root removes anything, unless it keeps changing
            raise ScratchInterfered(f"{', '.join(left[:5])} in it could not be removed")
        if not left:
            ready_user_directory(at, WORK, user_ids(user))  # anew, empty
    finally:
        os.close(at)
    if left:  # files of the containers' other users (subordinate ids), say
        return f"left in the scratch directory, not this user's to remove: {', '.join(left[:5])}"
    return ""


def remove_scratch(scratch: Path) -> None:
    """The scratch directory and all in it removed, if it still is this process's."""
    try:
        at = open_scratch(scratch)
    except (OSError, ScratchInterfered):
        return  # gone, or not ours: not removed through a link
    try:
        remove_entries(at, os.listdir(at))
    finally:
        os.close(at)
    with contextlib.suppress(OSError):
        os.rmdir(scratch)


def renew_scratch(args) -> str:
    """A new scratch directory for the next checks (args.scratch), the old one removed
    if it still is this process's; what was done, for the log."""
    old = Path(args.scratch)
    try:
        args.scratch = str(prepare_scratch(args.user))
    except (OSError, ScratchInterfered) as e:  # /tmp full, say: the old one again
        return f"no new scratch directory could be made ({e}): the next check tries this one"
    remove_scratch(old)
    return f"the next check gets a new scratch directory, {args.scratch}"


def write_log(logs: Path, name: str, text: str) -> None:
    """A check's log, logs/name, at most LOG_LIMIT characters, made anew: never written
    through a link, nor into a file someone else put there (write_new_file), should
    --logs be a directory the user may write in (--local as root, with --out in the
    user's home)."""
    write_new_file(logs, name, shortened(text, LOG_LIMIT, "\n"), 0o644,
                   directory_may_be_a_link=True)


def run_checks(args) -> list[CheckResult]:
    """Run the selected checks, one after the other, or side by side in lanes when
    args.lane_users names more users (see run_in_lanes).  results.json is written
    after each check, in the checks' order (a run cut short still says what it did).
    The checks that run commands as root or as another user (other_users) come last,
    after the commit of what the others gave (see commit)."""
    selected = checks.selected(args.part, args.only, args.public)
    if args.lane_users:
        return run_in_lanes(args, selected)
    machine, logs = machine_and_logs(args)
    results = []
    order = {c.id: i for i, c in enumerate(selected)}
    committed = False
    for c in sorted(selected, key=running_order):  # stable: in order otherwise
        if c.other_users and not committed:
            commit(args, sorted(results, key=lambda r: order[r.id]))
            committed = True
        results.append(run_check(c, args, machine, logs))
        write_results(args.results, sorted(results, key=lambda r: order[r.id]))
        if args.progress:
            print(json.dumps(results[-1].to_dict()), flush=True)
    return sorted(results, key=lambda r: order[r.id])


def running_order(c) -> tuple[bool, bool]:
    """The public checks first, then the hidden ones, then those run as root or another
    user.  A public check's output is the student's at once (its message quotes what
    zookeeper printed, Gradescope shows its log): a zookeeper that records how it is
    called would show there the command lines of the hidden checks run before it."""
    return c.other_users, not c.public


def commit(args, results: list[CheckResult]) -> None:
    """Before the first check that runs a command as root (or as another user): the
    statuses so far on the guest's console, with the host's token (args.commit names
    the file that holds it: the job share's, root's alone here).  From then on the
    submission's code may run as root here, and could rewrite results.json; the host
    keeps these statuses whatever it says (report.COMMIT, grade's pin_statuses).
    Written once, in one write(2), on the console the job's markers use."""
    if not args.commit:
        return
    token = Path(args.commit).read_text().strip()
    line = commit_line(token, results)
    fd = os.open(args.console, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    try:
        # A few copies (a kernel message may cut one), then tcdrain(3): the lines are
        # out on the serial port, not in the tty's buffer, where root's code could
        # still flush them (tcflush) and write its own, before the root checks begin.
        os.write(fd, "".join(f"\n{line}\n" for _ in range(COMMIT_COPIES)).encode())
        if os.isatty(fd):
            termios.tcdrain(fd)
    finally:
        os.close(fd)


def machine_and_logs(args) -> tuple[Machine, Path]:
    """What this machine can do for the checks, and the logs directory, made."""
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    return Machine(args.user, args.nosub_user, args.as_root), logs


def run_in_lanes(args, selected: list) -> list[CheckResult]:
    """Run the checks side by side, one lane per user (args.user's first, then each of
    args.lane_users'), each lane a runner of its own (a Lane) taking the next check
    when it is done with one.  Each lane's commands run as its own user, so what they
    leave (/tmp/zoo.*, cgroups, processes under the lane's runner) is told apart by
    owner.  The checks that run commands as root or another user (other_users) go to
    the first lane only, one after the other, once every other check is over (and
    committed: see commit).  As make -j runs recipes: the work list is fixed, the
    order in which lanes take it is not, and no check depends on another."""
    order = {c.id: i for i, c in enumerate(selected)}
    first_lane_only = deque(c for c in selected if c.other_users)
    # The public checks before the hidden ones (running_order), and no hidden one
    # while a public one runs in the other lane (its zookeeper could read the hidden
    # one's command line in /proc).  Within each, the longest first (a check's time
    # limit is the best guess of its length), so that the lanes end together rather
    # than one waiting for the other's last check.
    any_lane = deque(sorted((c for c in selected if not c.other_users),
                            key=lambda c: (running_order(c), -c.timeout)))
    results: dict[str, CheckResult] = {}
    busy: dict[int, object] = {}  # the lanes running a check of any_lane's: which
    committed = []
    changed = threading.Condition()

    def public_running() -> bool:
        return any(c.public for c in busy.values())

    def next_check(lane: int):
        with changed:
            while any_lane and not any_lane[0].public and public_running():
                changed.wait()
            if any_lane:
                busy[lane] = any_lane[0]
                return any_lane.popleft()
            if lane != 0 or not first_lane_only:
                return None
            while busy:  # the other lanes' last checks, before root's
                changed.wait()
            if not committed:
                commit(args, sorted(results.values(), key=lambda r: order[r.id]))
                committed.append(True)
            return first_lane_only.popleft()

    def done(lane: int, result: CheckResult | None = None) -> None:
        with changed:
            busy.pop(lane, None)
            changed.notify_all()
            if result is None:
                return
            results[result.id] = result
            write_results(args.results, sorted(results.values(), key=lambda r: order[r.id]))
            if args.progress:
                print(json.dumps(result.to_dict()), flush=True)

    users = [args.user, *args.lane_users]
    # A share of the processes this machine allows for each lane's user, and one left
    # for the runners: a fork bomb in one lane then cannot stop the other's runner
    # from starting its next command (fork(2) fails with EAGAIN at pids.max).
    processes = processes_allowed() // (len(users) + 1)

    def run_lane(lane: int, user: str) -> None:
        try:
            with Lane(args, user, processes) as runner:
                while not runner.gave_up and (c := next_check(lane)) is not None:
                    done(lane, runner.run(c))
        except Exception as e:  # the lane stops; what it did not take stays not run
            print(f"runner: the lane of {user} stopped: {e!r}", file=sys.stderr, flush=True)
        finally:
            done(lane)  # no longer busy, whatever became of it

    # Daemon threads: a Ctrl-C in the main thread ends the run, lanes and all.
    threads = [threading.Thread(target=run_lane, args=(lane, user), daemon=True)
               for lane, user in enumerate(users)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(results.values(), key=lambda r: order[r.id])


class Lane:
    """A runner of its own (runner.py --lane-worker) that runs checks as one user, one
    at a time, in a process tree of its own: it is the subreaper of what its
    commands leave.  It reads a check's id on its stdin and answers with the result
    (CheckResult.to_dict's JSON, one line) on its stdout.  A runner that dies during
    a check is started again, twice at most, and never after a death by a signal
    (a Ctrl-C): then the lane gives up and takes no more checks."""

    RESTARTS = 2

    def __init__(self, args, user: str, processes: int | None = None):
        self.user, self.restarts, self.gave_up = user, 0, False
        # As a module (python3 -m, from this directory), loaded from its __pycache__:
        # a script is compiled at every start, under TCG half a second.  Paths
        # absolute, then: they are the caller's, not this directory's (--python is
        # made absolute by main).
        self.argv = [sys.executable, "-m", "runner", "--lane-worker",
                     "--submission", os.path.abspath(args.submission),
                     "--results", os.path.abspath(args.results),
                     "--logs", os.path.abspath(args.logs), "--user", user,
                     "--nosub-user", args.nosub_user, "--python", args.python,
                     "--timeout-scale", str(args.timeout_scale)]
        if args.rootfs_tar:
            self.argv += ["--rootfs-tar", os.path.abspath(args.rootfs_tar)]
        if getattr(args, "original", None):
            self.argv += ["--original", os.path.abspath(args.original)]
        if args.as_root:
            self.argv.append("--as-root")
        if processes:
            self.argv += ["--lane-processes", str(processes)]
        self.proc = self.start()

    def start(self) -> subprocess.Popen:
        return subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                text=True, cwd=HERE)

    def run(self, c) -> CheckResult:
        try:
            self.proc.stdin.write(c.id + "\n")
            self.proc.stdin.flush()
            return CheckResult.from_dict(json.loads(self.proc.stdout.readline()))
        except (OSError, ValueError):  # its runner is gone (a broken pipe, no answer)
            pass
        # Its runner died during the check: the grader's failure, never the student's.
        status = self.proc.wait()
        if status < 0 or self.restarts >= self.RESTARTS:
            self.gave_up = True
        else:
            self.restarts += 1
            self.proc = self.start()
        return CheckResult.of(c, "error", f"grader error: the runner of {self.user}'s lane "
                              f"ended during the check ({status})", user=self.user)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        with contextlib.suppress(OSError):
            self.proc.stdin.close()
        self.proc.wait()


def serve_lane(args) -> None:
    """--lane-worker (see Lane): run the checks whose ids come on stdin as args.user,
    answering each with its result.  Its commands get neither pipe: stdin becomes
    /dev/null and stdout goes to stderr, the answers to the pipe's own copy."""
    if args.lane_processes:
        limit_processes(args.lane_processes)
    requests = os.fdopen(os.dup(0), "r")
    answers = os.fdopen(os.dup(1), "w")
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.dup2(2, 1)
    machine, logs = machine_and_logs(args)
    by_id = {c.id: c for c in checks.CHECKS}
    for line in requests:
        result = run_check(by_id[line.strip()], args, machine, logs)
        answers.write(json.dumps(result.to_dict()) + "\n")
        answers.flush()


def processes_allowed() -> int:
    """How many processes this machine lets the runner's tree have: the kernel's
    threads-max, or the pids.max of its cgroup or an ancestor's where lower (a
    systemd service's TasksMax: the guest's job runs in one)."""
    allowed = [int(Path("/proc/sys/kernel/threads-max").read_text())]
    own = [line[3:] for line in Path("/proc/self/cgroup").read_text().splitlines()
           if line.startswith("0::")]
    if own:  # cgroup v2 (cgroups(7)): the line "0::/its/path"
        directory = Path("/sys/fs/cgroup" + own[0].rstrip("/"))
        for d in (directory, *directory.parents):
            with contextlib.suppress(OSError):
                text = (d / "pids.max").read_text().strip()
                if text.isdigit():
                    allowed.append(int(text))
            if d == Path("/sys/fs/cgroup"):
                break
    return min(allowed)


def limit_processes(count: int) -> None:
    """Let no user this runner starts commands as have more than count processes
    (threads count too).  setrlimit(2): RLIMIT_NPROC counts those of the caller's
    real user, and root's (this runner's) forks are exempt; a command inherits the
    limit, and its processes' fork(2) fails with EAGAIN at the count.  In a
    container too: since Linux 5.14 the kernel counts a user's processes up through
    the user namespaces, each bounded by the limit its creator had."""
    resource.setrlimit(resource.RLIMIT_NPROC, (count, count))


def run_check(c, args, machine: Machine, logs: Path) -> CheckResult:
    """One check, in a scratch directory made ready for it and emptied after it, its
    log in logs/ID.log.  A submission that kept the grader from emptying it fails the
    check (whatever its verdict), and the next check gets a new one: what a
    submission does there never makes the grading incomplete."""
    log: list[str] = []
    started = time.monotonic()
    log += ready_scratch(args)
    status, message, slowest = verdict(c, args, machine, log)
    interfered = clear_scratch(args, log)
    if interfered and status == "fail":
        message += f"\n    {interfered}"
    elif interfered:
        status, message = "fail", interfered
    message = shortened(message, MESSAGE_LIMIT)
    seconds = time.monotonic() - started
    log_path = logs / f"{c.id}.log"
    write_log(logs, log_path.name, f"== part{c.part}: {c.name} == {status.upper()}\n"
              f"{message}\n\n" + "\n".join(log))
    return CheckResult.of(c, status, message, seconds=round(seconds, 2),
                          limit=round(c.timeout * args.timeout_scale, 1),
                          slowest_command=slowest, log=str(log_path),
                          started=round(started, 2), user=args.user)


def ready_scratch(args) -> list[str]:
    """Before a check: the scratch directory as it should be, or a new one (when it
    was made unusable between checks: by a process of the submission's that escaped
    the last one's cleanup, say).  What was done, for the log."""
    try:
        said = ready_work(Path(args.scratch), args.user)
    except ScratchInterfered as e:
        said = f"{e}; {renew_scratch(args)}"
    return [said] if said else []


def clear_scratch(args, log: list[str]) -> str:
    """After a check: the scratch directory emptied (empty_scratch), or, when it cannot
    be, a new one for the next check.  Returns how the submission interfered with it
    ('' when it did not), and logs what was done."""
    try:
        left = empty_scratch(Path(args.scratch), args.user)
    except (ScratchInterfered, OSError) as e:
        # Root removes what a command as the user made, and makes WORK in its own
        # directory: only what the submission did (as root, or meanwhile) stops it.
        why = e if isinstance(e, ScratchInterfered) else ScratchInterfered(
            f"emptying it failed ({e})")
        log.append(f"{why}; {renew_scratch(args)}")
        return str(why)
    if left:
        log.append(f"{left}; {renew_scratch(args)}")
    return ""


def verdict(c, args, machine: Machine, log: list[str]) -> tuple[str, str, CommandTime | None]:
    """(status, message, its slowest command) of check c: report.WORDS's statuses."""
    why_not = machine.missing(c.needs)
    if why_not:
        return "not run", why_not, None
    context = Context(args, c, log)
    try:
        c.fn(context)
        status, message = "ok", ""
    except CheckFailed as e:
        status, message = "fail", str(e)
        if c.exercises:
            message += f"\n    (this checks {c.exercises})"
    except NotRunnable as e:
        status, message = "not run", str(e)
    except Exception as e:  # a check's own bug must not stop the others
        # Not the student's loss: reported as a grader error, never as a fail.
        status, message = "error", f"grader error: {e!r}"
        log.append(traceback.format_exc())
    finally:
        leftovers = context.close()
        if leftovers:
            log.append("cleanup after the check removed: " + "; ".join(leftovers))
    # What the commands left outside the grader's reach fails a check that passed; a
    # grader error or a check not run stays what it is (not the student's loss), said.
    if context.left.elsewhere and context.left.elsewhere.unavailable:
        log.append(f"not watched: {context.left.elsewhere.unavailable}")
    for uid in sorted(context.left.watched):
        if uid in HOME_COPIES and HOME_COPIES[uid].unavailable:
            log.append(f"not put back: {HOME_COPIES[uid].unavailable}")
    if context.left.home_put_back:  # nothing of it stays for a later check: not a fail
        log.append("put back as it was before the first check: "
                   + "; ".join(context.left.home_put_back))
    if context.left.home_trouble:  # a later check would find it as it was not: said
        status = "error" if status == "ok" else status
        message = (message + "\n    " if message else "") + (
            f"grader error: the user's home was not put back ({context.left.home_trouble})")
    if context.left.elsewhere_trouble:  # not the student's loss: the grader's, said
        status = "error" if status == "ok" else status
        message = (message + "\n    " if message else "") + (
            f"grader error: the watch of processes run as the user failed "
            f"({context.left.elsewhere_trouble})")
    for found, text in ((context.left.escaped, escaped_text),
                        (context.left.units, units_text),
                        (context.left.started_elsewhere, elsewhere_text)):
        if found:
            status = "fail" if status == "ok" else status
            message = (message + "\n    " if message else "") + text(found)
    return status, message, context.commands.slowest


def runner_files(args) -> list[str]:
    """Where the runner's own files are: never put back with a user's home."""
    return [path for path in (args.submission, getattr(args, "original", None),
                              getattr(args, "results", None), getattr(args, "logs", None),
                              args.scratch, args.rootfs_tar)
            if path]


def escaped_text(escaped: list[str]) -> str:
    return ("a command left processes running outside the grader's reach, started by the "
            f"user's systemd (systemd-run --user, a user unit); killed: {', '.join(escaped)}")


def units_text(units: list[str]) -> str:
    return ("a command changed the user's systemd, which could start work in a later check "
            "(a timer, path or socket unit, a service that restarts, a file that configures it): "
            f"{', '.join(units)}")


def elsewhere_text(started: list[str]) -> str:
    return ("a command had a program run as the user outside the grader's reach, which "
            "could repair after zookeeper or do its work in a later check (a cron or at "
            f"job, a login, a mail server's pipe): {', '.join(started)}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--submission")
    ap.add_argument("--original", help="where --submission was copied from (grade --local): "
                    "in a graded user's home, left as it is, as the submission itself")
    ap.add_argument("--results")
    ap.add_argument("--logs", default=None)
    ap.add_argument("--part", type=int, action="append")
    ap.add_argument("--only", action="append")
    ap.add_argument("--public", action="store_true")
    ap.add_argument("--user", default=pwd.getpwuid(os.getuid()).pw_name)
    ap.add_argument("--lane-user", dest="lane_users", action="append", default=[],
                    metavar="NAME", help="run checks side by side: one more lane of "
                    "checks, run as NAME (root only; NAME has subordinate ranges of its "
                    "own exactly when --user has; again for more lanes)")
    ap.add_argument("--nosub-user", default=NOSUB_USER,
                    help="a user without any subordinate range, for the checks that need "
                    "one (default: the VM's nosub)")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--rootfs-tar", default=None)
    ap.add_argument("--timeout-scale", type=float, default=1.0)
    ap.add_argument("--progress", action="store_true", help="print each result as it ends")
    ap.add_argument("--as-root", action="store_true",
                    help="run the checks that run the submission as root (the grader's VM "
                    "does; on a machine of yours, its code would be root there)")
    ap.add_argument("--commit", metavar="TOKEN_FILE",
                    help="write the statuses so far, with this file's token, on --console "
                    "before the checks that run commands as root or as another user")
    ap.add_argument("--console", default="/dev/console", help="where --commit writes")
    ap.add_argument("--heartbeat", metavar="FILE",
                    help=f"write a count to FILE every {HEARTBEAT_SECONDS:.0f} s while the "
                    "checks run (grade's watchdog reads it from the VM's results share)")
    ap.add_argument("--list", action="store_true", help="list the checks and exit")
    ap.add_argument("--lane-worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--lane-processes", type=int, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.list:
        for c in checks.CHECKS:
            print(f"part{c.part} {c.id:28} {c.points:2} {'public' if c.public else 'hidden'}  "
                  f"{c.name}")
        return 0
    if not args.submission or not args.results:
        ap.error("--submission and --results are needed (or --list)")
    for name in [args.user, *args.lane_users]:
        try:
            pwd.getpwnam(name)
        except KeyError:
            ap.error(f"--user {name}: no such user")
    problem = lane_users_problem(args.user, args.lane_users)
    if problem:
        ap.error(problem)
    # A path from here (the checks run zookeeper from directories of their own); a
    # bare name is looked up on PATH.
    if os.sep in args.python:
        args.python = os.path.abspath(args.python)
    share_the_mounts()
    signal.signal(signal.SIGINT, interrupted)
    # SIGTERM: also what the kernel sends when grade dies (children.die_with_parent)
    signal.signal(signal.SIGTERM, interrupted)
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:  # (nohup's stays ignored)
        signal.signal(signal.SIGHUP, interrupted)
    args.logs = args.logs or str(Path(args.results).parent / "logs")
    if args.heartbeat:
        start_heartbeat(args.heartbeat)
    try:
        if args.lane_users:  # each lane's runner has its own scratch directory
            run_checks(args)
            return 0
        args.scratch = str(prepare_scratch(args.user))
        try:
            serve_lane(args) if args.lane_worker else run_checks(args)
        finally:
            remove_scratch(Path(args.scratch))  # the last one, if checks made others
    except OSError as e:  # its own files: the results or a log not written (a full disk)
        print(f"runner: {e.filename or 'its own files'}: {e.strerror or e}", file=sys.stderr)
        return 1
    return 0


HEARTBEAT_SECONDS = 5.0


def start_heartbeat(path: str, every: float = HEARTBEAT_SECONDS) -> threading.Event:
    """--heartbeat: a count written to path every few seconds, by a thread of its own,
    while this runner lives.  Once in a long while a guest stops with both vCPUs
    spinning in its kernel and no process of it running again (NOTES.md: the p5_cpu
    stall): the count stops, and grade's watchdog stops that guest within minutes,
    where the time limit of the longest check left would take up to twenty.  Set the
    event returned to stop it."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC

    stop = threading.Event()

    def beat() -> None:
        count = 0
        while not stop.is_set():
            count += 1
            try:  # a link or a FIFO there (a root check's doing) is not written through
                fd = os.open(path, flags, 0o600)
                try:
                    os.write(fd, f"{count}\n".encode())
                finally:
                    os.close(fd)
            except OSError:
                pass  # the watchdog sees no new count: a guest it then stops is graded again
            stop.wait(every)

    threading.Thread(target=beat, name="heartbeat", daemon=True).start()
    return stop


def interrupted(signum, frame):
    """Ctrl-C, the terminal hung up, or grade gone (SIGTERM): stop the checks.  A second
    one (grade passes one on, if the terminal's did not reach us) is ignored: what
    follows is the cleanup, the container killed and the scratch directory removed,
    which must not be cut short."""
    for signum in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(signum, signal.SIG_IGN)
    raise KeyboardInterrupt


def share_the_mounts() -> None:
    """Root on a host whose / is private (no systemd: a container, this CI): the checks
    run in a mount namespace of their own whose mounts are shared, as systemd's (the
    VM's) are, so that a container that never made its mounts private shows it
    (p4_proc).  The host's mounts stay as they are: unshare(2) copies them, and the
    copies of private mounts are no peers of theirs (mount_namespaces(7)).  Best
    effort: where it fails, p4_proc says it could not tell."""
    if os.geteuid() != 0 or checks.root_is_shared():
        return
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(CLONE_NEWNS) == 0:
        libc.mount(None, b"/", None, ctypes.c_ulong(MS_REC | MS_SHARED), None)


CLONE_NEWNS, MS_REC, MS_SHARED = 0x00020000, 0x4000, 1 << 20  # sched.h, mount.h


def lane_users_problem(user: str, lane_users: list[str]) -> str:
    """Why these lanes' users cannot grade side by side ('' when they can): lanes need
    root (to run as each user), users of their own (what each leaves is told apart by
    owner), and alike (each a subordinate range, or none), or a check's verdict would
    hang on the lane it ran in."""
    if not lane_users:
        return ""
    if os.getuid() != 0:
        return "--lane-user: only root can run checks as other users"
    names = [user, *lane_users]
    if "root" in names or len(set(names)) != len(names):
        return "--lane-user: each lane needs a user of its own, not root"
    has_range = {name: all(subids.first_range(kind, name, pwd.getpwnam(name).pw_uid)
                           for kind in ("subuid", "subgid")) for name in names}
    if len(set(has_range.values())) != 1:
        return ("--lane-user: each lane's user needs subordinate ranges exactly when "
                f"--user {user} has them (" + ", ".join(
                    f"{name}: {'ranges' if ok else 'none'}" for name, ok in has_range.items())
                + ")")
    return ""


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:  # Ctrl-C at grade --local's terminal reaches us too
        print("runner: interrupted", file=sys.stderr)
        sys.exit(130)
