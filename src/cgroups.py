# zookeeper-source: stage=5
"""Resource limits: a control group (cgroup v2) of the container's own.  See cgroups(7).

A cgroup is a directory under /sys/fs/cgroup; the processes listed in its
cgroup.procs share its limits, written to control files: memory.max (bytes),
cpu.max ("quota period", microseconds), pids.max (processes).  Children of a
process start in its cgroup, so everything the container runs stays inside.

The parent makes the container's cgroup after clone and before the child goes,
moves the child into it, writes the limits, and removes it after the child exits.
Where the cgroup may go depends on who we are:
  - root that may write the hierarchy (the host's, or a system container's): a
    zookeeper/ subtree of it, /sys/fs/cgroup/zookeeper/zoo-PID.  Root of a user
    namespace made by a user (unshare -Ur) may not: it goes the user's way;
  - a user on a systemd host: systemd owns the hierarchy and lends a user only
    what it delegates.  zookeeper asks the user's systemd to move it into a
    transient scope zookeeper-PID.scope, and puts the container in zoo-PID beside
    it (user@UID.service/user.slice/zoo-PID), as the course does;
  - otherwise, below the caller's own cgroup, when it was delegated to the caller.
Only the unified (v2) hierarchy is supported: on a host with cgroup v1 (or hybrid,
like many older distributions), asking for a limit is an error, and a container
asked for none runs without a cgroup.
"""

import errno
import os
import signal
import time

import kernel
import programs
from errors import ZooError, step

CGROUP_ROOT = "/sys/fs/cgroup"
PROC_MOUNTS = "/proc/self/mounts"
PROC_SELF_CGROUP = "/proc/self/cgroup"
SYSTEMD_RUNNING = "/run/systemd/system"  # exists when systemd is PID 1: sd_booted(3)
# The user manager's slice for the scope, as in the course (newer systemd defaults to
# app.slice): the container's cgroup is user@UID.service/user.slice/zoo-PID.
SCOPE_SLICE = "user.slice"
ROOT_SUBTREE = "zookeeper"  # root's containers: /sys/fs/cgroup/zookeeper/zoo-PID
LEAF = "init"  # where a delegated cgroup's own processes move (no internal processes)
CPU_PERIOD_USEC = 100000  # cpu.max's period: quota = percent of it
CPU_PERIOD_MAX_USEC = 1000000  # the longest period the kernel takes (cgroup-v2.rst)
SCOPE_WAIT_SECONDS = 10
REMOVE_WAIT_SECONDS = 5
DELEGATE_DROP_IN = "/etc/systemd/system/user@.service.d/delegate.conf"
DELEGATE_HINT = (f"as root, write {DELEGATE_DROP_IN} containing '[Service]' and "
                 "'Delegate=cpu cpuset io memory pids', run 'systemctl daemon-reload', "
                 "then log out and in (systemd.resource-control(5), Delegate=)")


class Limits:
    """The limits asked for, and where the container's cgroup goes (None: no cgroup)."""

    def __init__(self, memory=None, cpu=None, procs=None):
        self.memory = memory  # -m, bytes
        self.cpu = cpu  # -c, percent of one CPU
        self.procs = procs  # -p
        self.parent = None  # the directory the container's cgroup is made in
        self.path = None  # the container's cgroup, once made

    def options(self) -> list[str]:
        asked = [("-m", self.memory), ("-c", self.cpu), ("-p", self.procs)]
        return [flag for flag, value in asked if value is not None]

    def controllers(self) -> list[str]:
        """The cgroup controllers the limits need."""
        wanted = [("memory", self.memory), ("cpu", self.cpu), ("pids", self.procs)]
        return [name for name, value in wanted if value is not None]

    def apply_to(self, pid: int):
        """Parent, after clone and before go: the child's own cgroup, with the limits.
        Returns the undo step (removing the cgroup), which does nothing if none was made."""
        if self.parent is None:
            return lambda: None
        path = self.path = f"{self.parent}/zoo-{pid}"
        remove_leftover(path)
        try:
            # STUDENT CODE BELOW (q15)
            # Make the container's cgroup and move the child into it.  mkdir(2) the
            # directory path (mode 0755), then write the child's pid to its cgroup.procs
            # (cgroups(7) "Cgroups version 2", and the kernel's cgroup-v2.rst,
            # "Organizing Processes").
            # kernel.sys_mkdir(path, 0o755), kernel.write_file(file, text, "cgroups(7)"),
            # each in a `with step(...)` (errors.py), as q16-q18's writes too.
            with step(f"create the cgroup {path}"):
                kernel.sys_mkdir(path, 0o755)
            with step(f"move {pid} into the cgroup {path}"):
                kernel.write_file(f"{path}/cgroup.procs", str(pid), "cgroups(7)")
            # STUDENT CODE ABOVE (q15)
            self.write_limits(path)
        except ZooError:
            self.remove()  # kills the child if it is in already: it has not started yet
            raise
        return self.remove

    def write_limits(self, path: str) -> None:
        """Write each limit asked for to its control file (cgroup-v2.rst in the kernel's
        documentation describes them all)."""
        if self.memory is not None:
            # STUDENT CODE BELOW (q16)
            # Limit the container's memory: write the limit in bytes to memory.max.
            # At the limit the kernel reclaims, then OOM-kills.  cgroups(7), and
            # "memory.max" in the kernel's cgroup-v2.rst.  kernel.write_file(file,
            # text, man) writes a control file; memory_max() gives the text.
            with step(f"limit memory to {self.memory} bytes ({path}/memory.max)"):
                kernel.write_file(f"{path}/memory.max", memory_max(self.memory),
                                  "cgroups(7)")
            # STUDENT CODE ABOVE (q16)
            # Without this, a container at its limit swaps instead of being killed.
            if os.path.exists(f"{path}/memory.swap.max"):
                with step(f"forbid swap ({path}/memory.swap.max)"):
                    kernel.write_file(f"{path}/memory.swap.max", "0", "cgroups(7)")
        if self.cpu is not None:
            # STUDENT CODE BELOW (q17)
            # Limit the container's CPU time: write "quota period" to cpu.max, the
            # microseconds it may run in each period.  cgroups(7), "cpu.max" in
            # cgroup-v2.rst; cpu_max(self.cpu) formats it:
            # kernel.write_file(f"{path}/cpu.max", text, "cgroups(7)").
            with step(f"limit CPU to {self.cpu:g}% ({path}/cpu.max)"):
                kernel.write_file(f"{path}/cpu.max", cpu_max(self.cpu), "cgroups(7)")
            # STUDENT CODE ABOVE (q17)
        if self.procs is not None:
            # STUDENT CODE BELOW (q18)
            # Limit the number of processes (and threads) in the container: write it
            # to pids.max; past it fork(2) fails with EAGAIN.  cgroups(7), "pids.max"
            # in cgroup-v2.rst: kernel.write_file(f"{path}/pids.max", text, "cgroups(7)").
            with step(f"limit processes to {self.procs} ({path}/pids.max)"):
                kernel.write_file(f"{path}/pids.max", str(self.procs), "cgroups(7)")
            # STUDENT CODE ABOVE (q18)

    def remove(self) -> None:
        """Parent, after the child exits (or on a failure): remove the container's
        cgroup.  Its last processes may take a moment to leave it.  Idempotent."""
        if self.path is None:
            return
        path, self.path = self.path, None
        if os.path.isdir(path):
            remove_cgroup(path)


def memory_max(limit: int) -> str:
    """memory.max's text: a number of bytes."""
    return str(limit)


def cpu_max(percent: float, period: int = CPU_PERIOD_USEC) -> str:
    """cpu.max's text, "quota period": 50 (%) -> "50000 100000".  200 is two CPUs'
    worth.  The kernel's smallest quota is 1000 microseconds: below 1 %, the period
    grows (up to its largest, one second) so that the quota keeps the share asked."""
    while percent * period / 100 < 1000 and period < CPU_PERIOD_MAX_USEC:
        period = min(period * 10, CPU_PERIOD_MAX_USEC)
    quota = max(1000, round(percent * period / 100))
    return f"{quota} {period}"


def remove_cgroup(path: str) -> None:
    """rmdir the cgroup, retrying while it empties (EBUSY).  If something is still
    running in it after a moment, kill it: nothing may outlive the container."""
    remove_children(path)
    deadline = time.monotonic() + REMOVE_WAIT_SECONDS
    delay, killed = 0.001, False
    while True:
        try:
            # STUDENT CODE BELOW (q19)
            # Remove the container's cgroup: rmdir(2) its directory.  The kernel
            # refuses (EBUSY) while a process is still in it (cgroups(7)):
            # kernel.sys_rmdir(path).  Not inside a step() this time: the loop
            # around this block catches the OSError, and retries on EBUSY.
            kernel.sys_rmdir(path)
            # STUDENT CODE ABOVE (q19)
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() > deadline:
                raise ZooError(f"failed to remove the cgroup {path}: {e.strerror}") from None
        if not killed and delay >= 0.05:
            kill_all(path)
            killed = True
        time.sleep(delay)
        delay = min(delay * 2, 0.1)


def remove_children(path: str) -> None:
    """The cgroups the container made inside its own (without -r it sees the tree,
    its cgroup writable): rmdir(2) refuses a cgroup that has any, so they go first,
    deepest first, their processes killed (cgroup.kill reaches the whole subtree)."""
    children = descendants(path)
    if children:
        kill_all(path)
    remove_empty(children)


def descendants(path: str) -> list[str]:
    """Every cgroup under path, deepest first.  Walked by hand: os.walk recurses (before
    Python 3.12), and a container can nest a thousand cgroups."""
    found, stack = [], [path]
    while stack:
        try:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        found.append(entry.path)
                        stack.append(entry.path)
        except OSError:
            pass  # gone meanwhile
    return sorted(found, key=lambda p: p.count("/"), reverse=True)


def remove_empty(cgroups: list[str]) -> None:
    """rmdir each, deepest first, waiting a moment for killed processes to leave."""
    for child in cgroups:
        for _ in range(100):
            try:
                kernel.sys_rmdir(child)
                break
            except OSError as e:
                if e.errno != errno.EBUSY:
                    break
                time.sleep(0.01)


def remove_leftover(path: str) -> None:
    """A cgroup of this name left by a zookeeper that was killed (SIGKILL: no
    cleanup): the kernel has given its container's pid to our child, so that
    container is gone, in our PID namespace.  Removed only if nothing runs anywhere
    in it ("populated 0" in cgroup.events): another PID namespace's zookeeper may
    have a container of the same pid, which is never ours to kill.  If something
    runs there, it stays, and the mkdir after says so."""
    try:
        with open(f"{path}/cgroup.events") as f:
            if "populated 0" not in f.read().splitlines():
                return
    except OSError:
        if not os.path.isdir(path):
            return  # none: the usual case
    remove_empty(descendants(path) + [path])


def kill_all(path: str) -> None:
    """SIGKILL every process left in the cgroup (cgroup.kill, Linux 5.14)."""
    try:
        kernel.write_file(f"{path}/cgroup.kill", "1", "cgroups(7)")
        return
    except OSError:
        pass
    for pid in read_words(f"{path}/cgroup.procs"):
        try:
            kernel.sys_kill(int(pid), signal.SIGKILL)
        except OSError:
            pass


def enter_own_namespace() -> None:
    """Child, first thing after go (it is in its cgroup now): a new cgroup namespace
    rooted at that cgroup, so the container sees it as / (cgroup_namespaces(7))."""
    with step("enter a new cgroup namespace"):
        kernel.sys_unshare(kernel.CLONE_NEWCGROUP)


# Where the container's cgroup goes -------------------------------------------------


def prepare(opts) -> Limits:
    """Parent, before clone: find (and make ready) where the container's cgroup goes."""
    limits = Limits(opts.memory, opts.cpu, opts.procs)
    asked = limits.options()
    problem = unified_hierarchy_problem()
    if problem:
        if asked:
            verb = "needs" if len(asked) == 1 else "need"
            raise ZooError(f"{'/'.join(asked)} {verb} cgroup v2, but {problem}: boot with "
                           "systemd.unified_cgroup_hierarchy=1, or run without "
                           f"{'/'.join(asked)}")
        kernel.explain("no cgroup for the container", problem, "cgroups(7)")
        return limits
    try:
        limits.parent = choose_parent(limits.controllers())
    except ZooError as e:
        if asked:
            raise
        kernel.explain("no cgroup for the container", e.message, "cgroups(7)")
    return limits


def unified_hierarchy_problem(mounts_file: str = "") -> str:
    """'' when CGROUP_ROOT is a cgroup v2 (unified) hierarchy; else what it is."""
    fstype, v2_elsewhere = None, None
    try:
        with open(mounts_file or PROC_MOUNTS) as f:
            lines = f.read().splitlines()
    except OSError as e:
        return f"{mounts_file or PROC_MOUNTS} cannot be read ({e.strerror})"
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        if fields[1] == CGROUP_ROOT:
            fstype = fields[2]  # the last mount there is the one seen
        elif fields[2] == "cgroup2" and fields[1].startswith(CGROUP_ROOT + "/"):
            v2_elsewhere = fields[1]
    if fstype == "cgroup2":
        return ""
    if fstype is None:
        return f"nothing is mounted at {CGROUP_ROOT}"
    if v2_elsewhere:
        return (f"this host has hybrid cgroups (v1 controllers at {CGROUP_ROOT}, "
                f"v2 without them at {v2_elsewhere})")
    return f"this host has cgroup v1 ({fstype} at {CGROUP_ROOT})"


def choose_parent(controllers: list[str]) -> str:
    """The directory to make zoo-PID in, with the controllers enabled for it."""
    if os.geteuid() == 0 and os.access(CGROUP_ROOT, os.W_OK):
        return root_parent(controllers)
    runtime_dir = systemd_user_manager()
    if runtime_dir:
        return systemd_parent(controllers, runtime_dir)
    return delegated_parent(controllers)


def root_parent(controllers: list[str]) -> str:
    """Root: /sys/fs/cgroup/zookeeper, the controllers enabled down to it."""
    enable_controllers(CGROUP_ROOT, controllers)
    parent = f"{CGROUP_ROOT}/{ROOT_SUBTREE}"
    if not os.path.isdir(parent):
        with step(f"create the cgroup {parent}"):
            try:
                kernel.sys_mkdir(parent, 0o755)
            except FileExistsError:
                pass  # another zookeeper made it just now
    enable_controllers(parent, controllers)
    return parent


def systemd_user_manager() -> str:
    """The user's runtime directory when a systemd user manager can be asked for a
    scope (systemd is PID 1 and the user's bus is there), else ''."""
    if not os.path.isdir(SYSTEMD_RUNNING):
        return ""
    runtime_dir = os.environ.get("XDG_RUNTIME_DIR") or f"/run/user/{os.getuid()}"
    return runtime_dir if os.path.exists(f"{runtime_dir}/bus") else ""


def systemd_parent(controllers: list[str], runtime_dir: str) -> str:
    """A user on systemd: move into zookeeper-PID.scope; the container goes beside it."""
    scope = f"zookeeper-{os.getpid()}.scope"
    move_to_scope(scope, runtime_dir)
    parent = os.path.dirname(CGROUP_ROOT + own_cgroup())
    enable_controllers(parent, controllers, DELEGATE_HINT)
    return parent


def move_to_scope(scope: str, runtime_dir: str) -> None:
    """Ask the user's systemd (over D-Bus, with busctl(1)) to make a transient scope
    holding zookeeper, with its cgroup delegated to us; wait until we are in it."""
    argv = ["busctl", "--user", "call", "org.freedesktop.systemd1", "/org/freedesktop/systemd1",
            "org.freedesktop.systemd1.Manager", "StartTransientUnit", "ssa(sv)a(sa(sv))",
            scope, "fail", "3", "PIDs", "au", "1", str(os.getpid()), "Delegate", "b", "true",
            "Slice", "s", SCOPE_SLICE, "0"]
    if not programs.on_path("busctl"):
        raise ZooError(f"failed to move zookeeper into the systemd scope {scope}: "
                       "busctl not found (it comes with systemd)")
    started = time.monotonic()
    with step(f"move zookeeper into the systemd scope {scope}"):
        programs.run([argv], env=dict(os.environ, XDG_RUNTIME_DIR=runtime_dir))
    deadline = time.monotonic() + SCOPE_WAIT_SECONDS
    while not own_cgroup().endswith("/" + scope):
        if time.monotonic() > deadline:
            raise ZooError(f"failed to move zookeeper into the systemd scope {scope}: "
                           f"still in {own_cgroup()} after {SCOPE_WAIT_SECONDS} s")
        time.sleep(0.002)
    kernel.explain(f"read({PROC_SELF_CGROUP})", f"0::{own_cgroup()}", "cgroups(7)", started)


def delegated_parent(controllers: list[str]) -> str:
    """No systemd to ask: our own cgroup, if it was delegated to us (we may write it).
    A cgroup that enables controllers for its children may hold no process itself
    ("no internal processes", cgroups(7)): its processes move to a leaf first."""
    parent = CGROUP_ROOT + own_cgroup()
    if not (os.access(parent, os.W_OK) and os.access(f"{parent}/cgroup.procs", os.W_OK)):
        raise ZooError(f"no cgroup for the container: {parent} is not delegated to you "
                       "(not writable) and no systemd user manager runs here; run zookeeper "
                       "as root, in a systemd user session, or in a cgroup delegated to you")
    enabled = read_words(f"{parent}/cgroup.subtree_control")
    if any(c not in enabled for c in controllers):
        check_available(parent, controllers, "ask for a cgroup delegated with them")
        leaf = f"{parent}/{LEAF}"
        with step(f"create the cgroup {leaf}"):
            try:
                kernel.sys_mkdir(leaf, 0o755)
            except FileExistsError:
                pass
        for pid in read_words(f"{parent}/cgroup.procs"):
            try:
                kernel.write_file(f"{leaf}/cgroup.procs", pid, "cgroups(7)")
            except ProcessLookupError:
                pass  # it ended meanwhile
            except OSError as e:
                raise ZooError(f"failed to move process {pid} from {parent} to {leaf}, to "
                               f"enable controllers in {parent}: {e.strerror}") from None
    enable_controllers(parent, controllers)
    return parent


def own_cgroup() -> str:
    """Our cgroup in the v2 hierarchy: the path of the '0::' line of /proc/self/cgroup."""
    try:
        with open(PROC_SELF_CGROUP) as f:
            for line in f.read().splitlines():
                if line.startswith("0::"):
                    return line[3:].rstrip("/")
    except OSError as e:
        raise ZooError(f"failed to read {PROC_SELF_CGROUP}: {e.strerror}") from None
    raise ZooError(f"{PROC_SELF_CGROUP} has no cgroup v2 line (0::)")


def enable_controllers(parent: str, controllers: list[str], hint: str = "") -> None:
    """Make the controllers available to the children of parent (cgroup.subtree_control)."""
    enabled = read_words(f"{parent}/cgroup.subtree_control")
    missing = [c for c in controllers if c not in enabled]
    if not missing:
        return
    check_available(parent, missing, hint)
    text = " ".join("+" + c for c in missing)
    try:
        kernel.write_file(f"{parent}/cgroup.subtree_control", text, "cgroups(7)")
    except OSError as e:
        why = e.strerror
        if e.errno == errno.EBUSY:
            why += " (it holds processes: cgroups(7), 'no internal processes')"
        raise ZooError(f"failed to enable the {' '.join(missing)} controller"
                       f"{'s' if len(missing) > 1 else ''} in {parent}: {why}") from None


def check_available(parent: str, controllers: list[str], hint: str) -> None:
    """One line naming each controller parent cannot hand down, and the fix."""
    available = read_words(f"{parent}/cgroup.controllers")
    absent = [c for c in controllers if c not in available]
    if absent:
        names = " and ".join(absent)
        verb = "is" if len(absent) == 1 else "are"
        s = "" if len(absent) == 1 else "s"
        raise ZooError(f"the {names} controller{s} {verb} not delegated to {parent}"
                       + (f": {hint}" if hint else ""))


def read_words(path: str) -> list[str]:
    try:
        with open(path) as f:
            return f.read().split()
    except FileNotFoundError:
        return []
    except OSError as e:
        raise ZooError(f"failed to read {path}: {e.strerror}") from None
