"""A user's systemd manager, as the grader's cleanup looks at it after a check.

A check's commands run as a user whose systemd user manager (user@UID.service) may
run work for them after the check: a timer, path or socket unit fires later, a
service restarts.  The runner records what the manager runs and what configures it
(its unit directories) before a check, and afterwards undoes and reports what
changed (runner.Leftovers.restore_managers).  systemctl(1) --user, run as the user:
the manager's private socket is the user's alone.

Standard library only: it runs with the guest's Debian python3.
"""

import contextlib
import os
import pwd
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from stat import S_ISDIR

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
# The user's own unit directories (systemd.unit(5), user units), under its home and
# its runtime directory: files there configure the manager (a new unit, a drop-in
# that changes a unit, an enablement), and the user may write them.
# The session bus's service directories too: a service file there is started by the
# bus daemon itself on a call to its name (D-Bus activation), no unit needed.
HOME_UNIT_DIRS = (".config/systemd/user", ".config/systemd/user.control",
                  ".local/share/systemd/user", ".local/share/dbus-1/services")
RUNTIME_UNIT_DIRS = ("systemd/user", "systemd/user.control", "dbus-1/services")
MANAGER_SECONDS = 15  # for one systemctl --user call
UNIT_FILES_LIMIT = 10000  # entries looked at in a user's unit directories
REMOVE_SECONDS = 120  # for rm -rf of the unit files a check added


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
    in the user's unit directories)."""

    units: dict[str, bool]
    files: dict[str, tuple]


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
        return ManagerState(self.units(), self.files())

    def stop(self, units: list[str]) -> None:
        self.systemctl("stop", "--", *units)

    def start(self, units: list[str]) -> None:
        self.systemctl("start", "--", *units)

    def remove(self, paths: list[str]) -> None:
        """rm -rf as the user: a path of the user's is never followed by root."""
        subprocess.run(["rm", "-rf", "--", *paths], cwd="/", capture_output=True,
                       timeout=REMOVE_SECONDS, **popen_ids(self.name, self.uid, self.gid))

    def reload(self) -> None:
        self.systemctl("daemon-reload")

    def undo(self, started: list[str], stopped: list[str], added: list[str],
             reload: bool) -> None:
        """Stop the units started, remove the unit files added, reload, start the units
        stopped: each tried, whatever the others did."""
        steps = [(started, lambda: self.stop(started)), (added, lambda: self.remove(added)),
                 (reload, self.reload), (stopped, lambda: self.start(stopped))]
        for wanted, step in steps:
            if wanted:
                with contextlib.suppress(ManagerUnreachable, OSError, subprocess.SubprocessError):
                    step()


def manager_changes(before: ManagerState, after: ManagerState) -> tuple[list, list, list, list]:
    """(units started, units stopped, unit files added, unit files changed or removed)
    from before to after: a unit missing is not running.  The bus may start or stop,
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
    return started, stopped, added, changed


def settled_changes(manager: UserSystemd, before: ManagerState) -> tuple[ManagerState, tuple]:
    """What changed in manager since before (manager_changes) and is still changed
    SETTLE_SECONDS later, with the manager's last state: a change of the manager's own
    may have been on its way (a unit reloading as its timer fired)."""
    after = manager.state()
    changes = manager_changes(before, after)
    if any(changes):
        time.sleep(SETTLE_SECONDS)
        after = manager.state()
        still = manager_changes(before, after)
        changes = tuple([x for x in first if x in again] for first, again in zip(changes, still))
    return after, changes
