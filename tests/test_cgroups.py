"""Stage 5: cgroup v2 limits.

This host has hybrid cgroups and no v2 controllers, so the cgroup logic is tested
against a fake cgroup tree in a temporary directory (FakeCgroups below behaves like
the kernel's enough for it: controllers handed down through cgroup.subtree_control,
"no internal processes", processes moved through cgroup.procs, rmdir refused while a
cgroup holds processes).  On this host, the integration tests check the clear refusal
of -m/-c/-p and that a container asked for no limit still runs.  The real limits are
proved in the grader's VM (tests/vm_stage5_check.sh, run by the vm-marked test).
"""

import errno
import os
import shutil
import subprocess
import sys
import types
from pathlib import Path

import pytest
from conftest import PARTS, ROOT, Runner, copy_parts, part_modules

HYBRID_MOUNTS = """\
sysfs /sys sysfs rw,relatime 0 0
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/memory cgroup rw,relatime,memory 0 0
cgroup2 /sys/fs/cgroup/unified cgroup2 rw,relatime 0 0
"""
V1_MOUNTS = """\
tmpfs /sys/fs/cgroup tmpfs rw,relatime,mode=755 0 0
cgroup /sys/fs/cgroup/pids cgroup rw,relatime,pids 0 0
"""
V2_MOUNTS = "cgroup2 /sys/fs/cgroup cgroup2 rw,nosuid,nodev,noexec,relatime,nsdelegate 0 0\n"
USER_SLICE = "/user.slice/user-1000.slice/user@1000.service/user.slice"


@pytest.fixture
def part5():
    with part_modules(5, "cgroups", "options") as modules:
        yield modules


def limits_opts(memory=None, cpu=None, procs=None):
    return types.SimpleNamespace(memory=memory, cpu=cpu, procs=procs)


class FakeCgroups:
    """A cgroup v2 hierarchy in a directory, standing in for /sys/fs/cgroup: the
    kernel seam's mkdir, rmdir and write_file act on it as the kernel would."""

    FILES = {"memory": {"memory.max": "max\n", "memory.swap.max": "max\n",
                        "memory.events": "oom 0\noom_kill 0\n"},
             "cpu": {"cpu.max": "max 100000\n"}, "pids": {"pids.max": "max\n"}}

    def __init__(self, tmp_path: Path, monkeypatch, m, controllers="cpu memory pids"):
        self.root = tmp_path / "cgroup"
        self.kernel = m.kernel
        self.writes = []  # (path below the root, text), in order
        self.busy_rmdirs = 0  # how many rmdirs to refuse with EBUSY regardless
        self.root.mkdir()
        self.put(self.root, "cgroup.controllers", controllers)
        for name in ("cgroup.subtree_control", "cgroup.procs"):
            self.put(self.root, name, "")
        self.self_cgroup = tmp_path / "self-cgroup"
        self.mounts = tmp_path / "mounts"
        self.mounts.write_text(f"cgroup2 {self.root} cgroup2 rw,nsdelegate 0 0\n")
        monkeypatch.setattr(m.cgroups, "CGROUP_ROOT", str(self.root))
        monkeypatch.setattr(m.cgroups, "PROC_SELF_CGROUP", str(self.self_cgroup))
        monkeypatch.setattr(m.cgroups, "PROC_MOUNTS", str(self.mounts))
        monkeypatch.setattr(m.cgroups, "SYSTEMD_RUNNING", str(tmp_path / "no-systemd"))
        monkeypatch.setattr(m.kernel, "sys_mkdir", self.mkdir)
        monkeypatch.setattr(m.kernel, "sys_rmdir", self.rmdir)
        monkeypatch.setattr(m.kernel, "write_file", self.write)
        self.move_self("/")

    @staticmethod
    def put(d: Path, name: str, text: str) -> None:
        (d / name).write_text(text + ("\n" if text and not text.endswith("\n") else ""))

    @staticmethod
    def words(d: Path, name: str) -> list[str]:
        return (d / name).read_text().split()

    def rel(self, path) -> str:
        return "/" + os.path.relpath(path, self.root) if Path(path) != self.root else "/"

    def make(self, rel: str, procs=(), enabled="") -> Path:
        """Set up a cgroup (and its parents) directly, as a system would have it."""
        d = self.root
        for part in rel.strip("/").split("/"):
            if not (d / part).is_dir():
                self.mkdir(str(d / part), record=False)
            d = d / part
        self.put(d, "cgroup.subtree_control", enabled)
        for pid in procs:
            self.move(str(pid), d)
        return d

    def mkdir(self, path: str, mode: int = 0o755, record=True) -> None:
        os.mkdir(path)  # FileExistsError as the kernel's EEXIST
        d, parent = Path(path), Path(path).parent
        available = self.words(parent, "cgroup.subtree_control")
        self.put(d, "cgroup.controllers", " ".join(available))
        for name in ("cgroup.subtree_control", "cgroup.procs", "cgroup.kill"):
            self.put(d, name, "")
        self.put(d, "cpu.stat", "usage_usec 0")
        for controller in available:
            for name, text in self.FILES.get(controller, {}).items():
                self.put(d, name, text)
        if record:
            self.writes.append((self.rel(path), "mkdir"))

    def rmdir(self, path: str) -> None:
        d = Path(path)
        if not d.is_dir():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        if self.busy_rmdirs or self.words(d, "cgroup.procs"):
            self.busy_rmdirs = max(0, self.busy_rmdirs - 1)
            raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
        if any(p.is_dir() for p in d.iterdir()):
            raise OSError(errno.ENOTEMPTY, os.strerror(errno.ENOTEMPTY))
        shutil.rmtree(d)
        self.writes.append((self.rel(path), "rmdir"))

    def write(self, path: str, text: str, man: str = "") -> None:
        p = Path(path)
        if not p.exists():
            raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path)
        self.writes.append((self.rel(path), text))
        d, name = p.parent, p.name
        if name == "cgroup.subtree_control":
            enabled = self.words(d, name)
            for word in text.split():
                if word[1:] not in self.words(d, "cgroup.controllers"):
                    raise OSError(errno.ENOENT, os.strerror(errno.ENOENT))
                if d != self.root and self.words(d, "cgroup.procs"):
                    raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
                if word[0] == "+" and word[1:] not in enabled:
                    enabled.append(word[1:])
            self.put(d, name, " ".join(enabled))
        elif name == "cgroup.procs":
            if d != self.root and self.words(d, "cgroup.subtree_control"):
                raise OSError(errno.EBUSY, os.strerror(errno.EBUSY))
            self.move(text.strip(), d)
        elif name == "cgroup.kill":
            self.put(d, "cgroup.procs", "")
        else:
            p.write_text(text)

    def move(self, pid: str, d: Path) -> None:
        for procs in self.root.rglob("cgroup.procs"):
            pids = procs.read_text().split()
            if pid in pids:
                pids.remove(pid)
                procs.write_text("".join(x + "\n" for x in pids))
        self.put(d, "cgroup.procs", " ".join(self.words(d, "cgroup.procs") + [pid]))

    def move_self(self, rel: str) -> None:
        """Where /proc/self/cgroup says we are."""
        self.self_cgroup.write_text(f"0::{rel}\n")

    def read(self, rel: str) -> str:
        return (self.root / rel.strip("/")).read_text().strip()


@pytest.fixture
def fake(part5, tmp_path, monkeypatch) -> FakeCgroups:
    return FakeCgroups(tmp_path, monkeypatch, part5)


def as_user(monkeypatch, part5, uid=1000):
    monkeypatch.setattr(part5.cgroups.os, "geteuid", lambda: uid)
    monkeypatch.setattr(part5.cgroups.os, "getuid", lambda: uid)


# Formats ---------------------------------------------------------------------------


def test_memory_max_is_bytes(part5):
    assert part5.cgroups.memory_max(part5.options.parse_size("64M")) == "67108864"
    assert part5.cgroups.memory_max(part5.options.parse_size("1G")) == "1073741824"
    assert part5.cgroups.memory_max(part5.options.parse_size("6144k")) == "6291456"
    assert part5.cgroups.memory_max(4096) == "4096"


@pytest.mark.parametrize("percent,text", [
    (50, "50000 100000"), (100, "100000 100000"), (150, "150000 100000"),
    (12.5, "12500 100000"), (33.3333, "33333 100000"),
    # Below 1 %, a longer period: 0.5 % was 1 % before (the smallest quota is 1 ms).
    (0.5, "5000 1000000"), (0.1, "1000 1000000"), (1, "1000 100000"),
])
def test_cpu_max_is_quota_and_period(part5, percent, text):
    assert part5.cgroups.cpu_max(percent) == text


@pytest.mark.parametrize("option, text, said", [
    ("-m", "512k", "-m 512k: too little memory to start a container in (6M at least)"),
    ("-c", "0.05", "-c 0.05: not a CPU percentage (0.1 or more"),
    ("-p", "4194305", "-p 4194305: not a number of processes (a whole number, 1 to 4194304)")])
def test_limits_the_kernel_refuses_are_refused_first(part5, option, text, said):
    parse = {"-m": part5.options.parse_size, "-c": part5.options.parse_cpu,
             "-p": part5.options.parse_procs}[option]
    with pytest.raises(Exception, match=r"^-") as e:  # ZooError: one line, status 125
        parse(text)
    assert e.value.message.startswith(said)


def test_a_cgroup_left_by_a_killed_zookeeper_or_made_inside_goes(part5, tmp_path):
    """zoo-PID left behind (zookeeper SIGKILLed) once made a later child given that
    pid fail (mkdir: File exists); cgroups the container made inside its own made the
    rmdir fail (EBUSY, here ENOTEMPTY).  Both go, deepest first; a busy one stays."""
    left = tmp_path / "zoo-205"
    (left / "sub" / "deeper").mkdir(parents=True)
    part5.cgroups.remove_leftover(str(left))
    assert not left.exists()
    busy = tmp_path / "zoo-206"
    busy.mkdir()
    (busy / "cgroup.procs").write_text("1\n")  # a process in it: rmdir(2) refuses
    part5.cgroups.remove_leftover(str(busy))
    assert busy.is_dir()
    # Another PID namespace's container of that pid, running: never killed nor removed.
    running = tmp_path / "zoo-207"
    (running / "sub").mkdir(parents=True)
    (running / "cgroup.events").write_text("populated 1\nfrozen 0\n")
    part5.cgroups.remove_leftover(str(running))
    assert (running / "sub").is_dir()
    # A thousand nested (os.walk recursed, and cleanup ended in RecursionError).
    deep = tmp_path / "zoo-208"
    path = deep
    path.mkdir()
    for _ in range(1100):  # one level at a time: os.makedirs recurses too
        path = path / "d"
        path.mkdir()
    part5.cgroups.remove_leftover(str(deep))
    assert not deep.exists()


def test_controllers_follow_the_options(part5):
    Limits = part5.cgroups.Limits
    assert Limits().controllers() == [] and Limits().options() == []
    assert Limits(memory=1, procs=2).controllers() == ["memory", "pids"]
    assert Limits(cpu=50.0).options() == ["-c"]


# Which hierarchy ---------------------------------------------------------------------


@pytest.mark.parametrize("mounts,expected", [
    (V2_MOUNTS, ""),
    (HYBRID_MOUNTS, "this host has hybrid cgroups (v1 controllers at /sys/fs/cgroup, "
                    "v2 without them at /sys/fs/cgroup/unified)"),
    (V1_MOUNTS, "this host has cgroup v1 (tmpfs at /sys/fs/cgroup)"),
    ("proc /proc proc rw 0 0\n", "nothing is mounted at /sys/fs/cgroup"),
    (V2_MOUNTS + "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n", "this host has cgroup v1 (tmpfs at "
                                                        "/sys/fs/cgroup)"),
])
def test_hierarchy_detection(part5, tmp_path, mounts, expected):
    path = tmp_path / "mounts"
    path.write_text(mounts)
    assert part5.cgroups.unified_hierarchy_problem(str(path)) == expected


@pytest.mark.parametrize("opts,flags,verb", [
    (dict(memory=64 << 20), "-m", "needs"), (dict(cpu=50.0), "-c", "needs"),
    (dict(procs=10), "-p", "needs"), (dict(memory=1 << 30, procs=5), "-m/-p", "need"),
])
def test_limits_on_a_hybrid_host_are_one_line_125(part5, tmp_path, monkeypatch, opts, flags,
                                                  verb):
    (tmp_path / "mounts").write_text(HYBRID_MOUNTS)
    monkeypatch.setattr(part5.cgroups, "PROC_MOUNTS", str(tmp_path / "mounts"))
    with pytest.raises(part5.errors.ZooError) as e:
        part5.cgroups.prepare(limits_opts(**opts))
    assert e.value.status == 125
    assert e.value.message.startswith(f"{flags} {verb} cgroup v2, but this host has hybrid")
    assert "systemd.unified_cgroup_hierarchy=1" in e.value.message
    assert "\n" not in e.value.message


def test_no_limit_on_a_hybrid_host_runs_without_a_cgroup(part5, tmp_path, monkeypatch):
    (tmp_path / "mounts").write_text(HYBRID_MOUNTS)
    monkeypatch.setattr(part5.cgroups, "PROC_MOUNTS", str(tmp_path / "mounts"))
    monkeypatch.setattr(part5.kernel, "sys_mkdir", lambda *a: pytest.fail("mkdir"))
    limits = part5.cgroups.prepare(limits_opts())
    assert limits.parent is None
    undo = limits.apply_to(4242)
    undo()
    undo()


# Placement and limits on the fake tree ---------------------------------------------------


def test_root_makes_zookeeper_subtree_and_limits(part5, fake):
    cg = part5.cgroups
    limits = cg.prepare(limits_opts(memory=64 << 20, cpu=50.0, procs=10))
    assert limits.parent == f"{fake.root}/zookeeper"
    assert fake.writes[:3] == [("/cgroup.subtree_control", "+memory +cpu +pids"),
                               ("/zookeeper", "mkdir"),
                               ("/zookeeper/cgroup.subtree_control", "+memory +cpu +pids")]
    fake.writes.clear()
    undo = limits.apply_to(4242)
    assert fake.writes == [
        ("/zookeeper/zoo-4242", "mkdir"),
        ("/zookeeper/zoo-4242/cgroup.procs", "4242"),
        ("/zookeeper/zoo-4242/memory.max", "67108864"),
        ("/zookeeper/zoo-4242/memory.swap.max", "0"),
        ("/zookeeper/zoo-4242/cpu.max", "50000 100000"),
        ("/zookeeper/zoo-4242/pids.max", "10"),
    ]
    assert fake.read("zookeeper/zoo-4242/cgroup.procs") == "4242"
    fake.put(fake.root / "zookeeper/zoo-4242", "cgroup.procs", "")  # the container ended
    undo()
    undo()  # idempotent
    assert not (fake.root / "zookeeper/zoo-4242").exists()
    assert (fake.root / "zookeeper").is_dir()  # shared by all of root's containers


def test_root_reuses_the_subtree_and_enables_only_what_is_missing(part5, fake):
    fake.put(fake.root, "cgroup.subtree_control", "memory pids")
    fake.make("/zookeeper", enabled="memory")
    limits = part5.cgroups.prepare(limits_opts(memory=1 << 20, procs=3))
    assert fake.writes == [("/zookeeper/cgroup.subtree_control", "+pids")]
    limits.apply_to(7)
    assert fake.read("zookeeper/zoo-7/pids.max") == "3"
    assert not (fake.root / "zookeeper/zoo-7/cpu.max").exists()


def test_no_limits_still_gets_a_cgroup(part5, fake):
    limits = part5.cgroups.prepare(limits_opts())
    limits.apply_to(99)
    assert fake.read("zookeeper/zoo-99/cgroup.procs") == "99"
    assert not [w for w in fake.writes if w[0].endswith(".max")]


def systemd_session(fake, part5, tmp_path, monkeypatch, delegated="cpu memory pids",
                    busctl_status=0):
    """A user's systemd: the user's slice under user@1000.service, a bus, busctl."""
    as_user(monkeypatch, part5)
    fake.put(fake.root, "cgroup.subtree_control", "cpu memory pids")
    fake.make("/user.slice/user-1000.slice", enabled="cpu memory pids")
    fake.make("/user.slice/user-1000.slice/user@1000.service", enabled=delegated)
    fake.make(USER_SLICE, enabled="")
    fake.make("/user.slice/user-1000.slice/session-3.scope", procs=[os.getpid()])
    fake.move_self("/user.slice/user-1000.slice/session-3.scope")
    (tmp_path / "systemd").mkdir()
    monkeypatch.setattr(part5.cgroups, "SYSTEMD_RUNNING", str(tmp_path / "systemd"))
    runtime = tmp_path / "run-user-1000"
    runtime.mkdir()
    (runtime / "bus").write_text("")
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    calls = []

    def busctl(commands, env=None):  # programs.run: busctl, alone
        (argv,) = commands
        calls.append((argv, env))
        if busctl_status:
            raise OSError(errno.EPERM, "Call failed: Access denied")
        # systemd: a delegated scope in the user's slice, with us in it.
        slice_dir = fake.root / USER_SLICE.strip("/")
        fake.put(slice_dir, "cgroup.subtree_control", " ".join(
            fake.words(slice_dir, "cgroup.controllers")))
        scope = fake.make(f"{USER_SLICE}/{argv[8]}")
        fake.move(argv[14], scope)
        fake.move_self(f"{USER_SLICE}/{argv[8]}")

    monkeypatch.setattr(part5.cgroups.programs, "run", busctl)
    monkeypatch.setattr(part5.cgroups.programs, "on_path", lambda name: True)
    return calls, runtime


def test_systemd_user_scope_and_course_path(part5, fake, tmp_path, monkeypatch):
    calls, runtime = systemd_session(fake, part5, tmp_path, monkeypatch)
    limits = part5.cgroups.prepare(limits_opts(memory=64 << 20, cpu=50.0, procs=10))
    pid = os.getpid()
    (argv, env), = calls
    assert argv == ["busctl", "--user", "call", "org.freedesktop.systemd1",
                    "/org/freedesktop/systemd1", "org.freedesktop.systemd1.Manager",
                    "StartTransientUnit", "ssa(sv)a(sa(sv))", f"zookeeper-{pid}.scope", "fail",
                    "3", "PIDs", "au", "1", str(pid), "Delegate", "b", "true",
                    "Slice", "s", "user.slice", "0"]
    assert env["XDG_RUNTIME_DIR"] == str(runtime)
    # The course's CONTAINER_SCOPE: .../user@UID.service/user.slice/zoo-PID
    limits.apply_to(5555)
    uid, child = 1000, 5555
    course = f"/user.slice/user-{uid}.slice/user@{uid}.service/user.slice/zoo-{child}"
    assert fake.read(f"{course}/cgroup.procs") == "5555"
    assert fake.read(f"{course}/cpu.max") == "50000 100000"
    assert fake.read(f"{USER_SLICE}/zookeeper-{pid}.scope/cgroup.procs") == str(pid)


def test_systemd_cpu_not_delegated_names_it_and_the_fix(part5, fake, tmp_path, monkeypatch):
    systemd_session(fake, part5, tmp_path, monkeypatch, delegated="memory pids")
    with pytest.raises(part5.errors.ZooError) as e:
        part5.cgroups.prepare(limits_opts(cpu=50.0, memory=1 << 20))
    message = e.value.message
    assert message.startswith(f"the cpu controller is not delegated to {fake.root}{USER_SLICE}")
    assert "/etc/systemd/system/user@.service.d/delegate.conf" in message
    assert "Delegate=cpu cpuset io memory pids" in message
    assert "\n" not in message and e.value.status == 125


def test_systemd_memory_only_works_without_cpu(part5, fake, tmp_path, monkeypatch):
    systemd_session(fake, part5, tmp_path, monkeypatch, delegated="memory pids")
    limits = part5.cgroups.prepare(limits_opts(memory=1 << 20))
    limits.apply_to(12)
    assert fake.read(f"{USER_SLICE}/zoo-12/memory.max") == str(1 << 20)


def test_systemd_refusal_is_one_line(part5, fake, tmp_path, monkeypatch):
    systemd_session(fake, part5, tmp_path, monkeypatch, busctl_status=1)
    with pytest.raises(part5.errors.ZooError) as e:
        part5.cgroups.prepare(limits_opts(procs=5))
    assert e.value.message == (f"failed to move zookeeper into the systemd scope "
                               f"zookeeper-{os.getpid()}.scope: Call failed: Access denied")


def test_systemd_refusal_without_limits_runs_without_cgroup(part5, fake, tmp_path,
                                                            monkeypatch):
    systemd_session(fake, part5, tmp_path, monkeypatch, busctl_status=1)
    assert part5.cgroups.prepare(limits_opts()).parent is None


def test_delegated_own_cgroup_moves_its_processes_to_a_leaf(part5, fake, monkeypatch):
    as_user(monkeypatch, part5)
    fake.put(fake.root, "cgroup.subtree_control", "cpu memory pids")
    fake.make("/delegated", procs=[os.getpid(), 777])
    fake.move_self("/delegated")
    limits = part5.cgroups.prepare(limits_opts(memory=32 << 20, procs=4))
    assert limits.parent == f"{fake.root}/delegated"
    assert sorted(fake.words(fake.root / "delegated/init", "cgroup.procs")) == sorted(
        [str(os.getpid()), "777"])
    assert fake.words(fake.root / "delegated", "cgroup.subtree_control") == ["memory", "pids"]
    limits.apply_to(31)
    assert fake.read("delegated/zoo-31/pids.max") == "4"


def test_delegated_cgroup_without_the_controller(part5, fake, monkeypatch):
    as_user(monkeypatch, part5)
    fake.put(fake.root, "cgroup.subtree_control", "memory")
    fake.make("/delegated", procs=[os.getpid()])
    fake.move_self("/delegated")
    with pytest.raises(part5.errors.ZooError, match=r"^the cpu and pids controllers are not "
                                                    "delegated to .*/delegated"):
        part5.cgroups.prepare(limits_opts(cpu=20.0, procs=4))


def test_no_delegated_cgroup(part5, fake, monkeypatch):
    as_user(monkeypatch, part5)
    fake.make("/user.slice/session-1.scope", procs=[os.getpid()])
    fake.move_self("/user.slice/session-1.scope")
    monkeypatch.setattr(part5.cgroups.os, "access", lambda path, mode: False)
    with pytest.raises(part5.errors.ZooError) as e:
        part5.cgroups.prepare(limits_opts(memory=1 << 20))
    assert "is not delegated to you" in e.value.message
    assert part5.cgroups.prepare(limits_opts()).parent is None  # no limit: runs anyway


def test_failed_limit_removes_the_cgroup(part5, fake, monkeypatch):
    limits = part5.cgroups.prepare(limits_opts(cpu=50.0))
    write = fake.write

    def refuse_cpu(path, text, man=""):
        if path.endswith("cpu.max"):
            raise OSError(errno.EINVAL, os.strerror(errno.EINVAL))
        write(path, text, man)

    monkeypatch.setattr(part5.kernel, "write_file", refuse_cpu)
    with pytest.raises(part5.errors.ZooError) as e:
        limits.apply_to(66)
    assert e.value.message == (f"failed to limit CPU to 50% ({fake.root}/zookeeper/zoo-66/"
                               "cpu.max): Invalid argument")
    assert not (fake.root / "zookeeper/zoo-66").exists()  # the child was killed out of it


def test_remove_waits_while_the_cgroup_empties(part5, fake):
    limits = part5.cgroups.prepare(limits_opts(procs=5))
    undo = limits.apply_to(10)
    fake.put(fake.root / "zookeeper/zoo-10", "cgroup.procs", "")
    fake.busy_rmdirs = 3  # the last processes are still leaving
    undo()
    assert not (fake.root / "zookeeper/zoo-10").exists()
    assert ("/zookeeper/zoo-10/cgroup.kill", "1") not in fake.writes


def test_remove_kills_what_is_left(part5, fake):
    limits = part5.cgroups.prepare(limits_opts(procs=5))
    undo = limits.apply_to(11)  # still "running"
    undo()
    assert ("/zookeeper/zoo-11/cgroup.kill", "1") in fake.writes
    assert not (fake.root / "zookeeper/zoo-11").exists()


def test_remove_gives_up_with_one_line(part5, fake, monkeypatch):
    monkeypatch.setattr(part5.cgroups, "REMOVE_WAIT_SECONDS", 0.2)
    limits = part5.cgroups.prepare(limits_opts(procs=5))
    undo = limits.apply_to(12)
    fake.busy_rmdirs = 10**6
    with pytest.raises(part5.errors.ZooError) as e:
        undo()
    assert e.value.message == (f"failed to remove the cgroup {fake.root}/zookeeper/zoo-12: "
                               "Device or resource busy")


def test_child_enters_its_own_cgroup_namespace(part5, monkeypatch):
    calls = []
    monkeypatch.setattr(part5.kernel, "sys_unshare", lambda flags: calls.append(flags))
    part5.cgroups.enter_own_namespace()
    assert calls == [part5.kernel.CLONE_NEWCGROUP]


# This host (hybrid cgroups): part 5 as root and as the test user ---------------------


def this_host_is_hybrid() -> bool:
    with part_modules(5, "cgroups") as m:
        return m.cgroups.unified_hierarchy_problem().startswith("this host has hybrid")


hybrid_only = pytest.mark.skipif(not this_host_is_hybrid(), reason="not a hybrid-cgroup host")


@hybrid_only
@pytest.mark.parametrize("args,flags", [(["-m", "64M"], "-m"), (["-c", "50"], "-c"),
                                        (["-p", "10"], "-p"), (["-m", "1G", "-c", "20"], "-m/-c")])
def test_limits_refused_here_in_one_line(runner: Runner, args, flags):
    done = runner.zookeeper(5, *args, "sh", "-c", "echo ran")
    assert done.returncode == 125
    assert done.stdout == ""
    lines = done.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"zookeeper: {flags} ")
    assert "cgroup v2" in lines[0] and "hybrid" in lines[0]


@hybrid_only
def test_no_limit_runs_here_in_its_own_cgroup_namespace(runner: Runner):
    done = runner.zookeeper(5, "-P", "sh", "-c", "grep '^0::' /proc/self/cgroup; echo ran")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "0::/\nran\n"
    assert done.stderr == ""


def test_experiments_are_in_part5_and_6_only():
    for part in (5, 6):
        for name in ("memory_hog.sh", "cpu_burner.sh", "fork_bomb.sh"):
            path = ROOT / PARTS[part] / "experiments" / name
            text = path.read_text()
            assert text.startswith("#!/bin/sh\n") and "zookeeper-source" not in text
            assert os.access(path, os.X_OK)
    assert not (ROOT / PARTS[4] / "experiments" / "memory_hog.sh").exists()
    assert not (ROOT / "skeleton" / "experiments").exists()


# The grader's VM: the real limits -------------------------------------------------------


@pytest.mark.vm
@pytest.mark.slow
def test_stage5_in_the_vm(tmp_path):
    """Boot the grader's guest (cgroup v2) and run tests/vm_stage5_check.sh there:
    memory, CPU and process limits as root and as the student, cgroups removed."""
    sys.path.insert(0, str(ROOT / "grader"))
    try:
        import image
        import vm
    finally:
        sys.path.pop(0)
    if image.cached_image() is None:
        pytest.skip("no grader VM image built (sudo python3 grader/vm.py build)")
    submission = copy_parts(tmp_path / "submission", {4: PARTS[4], 5: PARTS[5]})
    shutil.copy(ROOT / "tools" / "mkrootfs.py", submission / "mkrootfs.py")
    for attempt in (1, 2):
        results = tmp_path / f"results-{attempt}"
        done = subprocess.run([sys.executable, str(ROOT / "grader" / "vm.py"), "run",
                               str(ROOT / "tests" / "vm_stage5_check.sh"),
                               "--submission", str(submission), "--results", str(results),
                               "--timeout", "900", "--silence", "300"],
                              capture_output=True, text=True, timeout=1000)
        # A guest that stopped reporting (both vCPUs spinning, once in a long while
        # under TCG: NOTES.md) says nothing of stage 5: boot it again, once.
        if done.returncode != vm.STALLED:
            break
        print(f"the guest stalled (attempt {attempt}): {done.stderr.strip()[-300:]}")
    log = results / "job.log"
    job = log.read_text(errors="replace") if log.exists() else done.stdout
    assert "stage5: all checks passed" in job, job[-6000:] + done.stderr[-2000:]
    assert done.returncode == 0, done.stderr[-2000:]
