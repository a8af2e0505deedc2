"""Fixtures to run the parts as root and as an unprivileged user with subid ranges.

The unprivileged runs use `zootest` and the venv made by tools/setup-test-env.sh
(`make test` runs it first): this host's default Python is not readable by others.
"""

import contextlib
import glob
import importlib
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import pytest

# A suite started in the background (`make test &`, some CI runners) inherits SIGINT
# ignored, and zookeeper keeps what its caller ignored on purpose; the tests that send
# SIGINT mean a terminal's Ctrl-C, which nothing ignores.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)

ROOT = Path(__file__).resolve().parent.parent
# The commands the tests start get SIGHUP at its default, whatever this run's caller
# set: under nohup (SIGHUP ignored, and inherited) zookeeper keeps it ignored, by
# design, and a test that sends it would wait for nothing.  The test of that design
# ignores it itself (test_hostile).
signal.signal(signal.SIGHUP, signal.SIG_DFL)
sys.path.insert(0, str(ROOT / "tools"))
sys.path.insert(0, str(ROOT / "grader"))
import subids  # noqa: E402  (the grader's reader of /etc/subuid and /etc/subgid)
from generate import PARTS  # noqa: E402  (the one table of the parts' directories)


def copy_parts(dest: Path, mapping: dict[int, str]) -> Path:
    """A submission at dest whose partN directory holds the code of ROOT/mapping[N]."""
    for part, source in mapping.items():
        shutil.copytree(ROOT / source, dest / PARTS[part],
                        ignore=shutil.ignore_patterns("__pycache__"))
    return dest


SUBID_FILES = ("/etc/subuid", "/etc/subgid")


def subid_ranges(path: str) -> list[tuple[str, int, int]]:
    """The ranges of /etc/subuid or /etc/subgid (subuid(5)), as (owner, start, count),
    read by the grader's one reader (grader/subids.py)."""
    return subids.entries(path=Path(path))


def subid_range(path: str, name: str, uid: int) -> tuple[int, int] | None:
    """A user's range in path, as zookeeper takes it (idmap.subid_range): the first
    non-empty one named by the user's name or uid, as (start, count); None if none."""
    return subids.first_range("", name, uid, path=Path(path))


def give_subid_range(name: str) -> list[str]:
    """A range of 65536 ids for name past every other range, in each of /etc/subuid and
    /etc/subgid that has none for it yet (useradd may have given one: never assume).
    Returns the files a line was added to."""
    start = max([100000] + [start + count for path in SUBID_FILES
                            for _, start, count in subid_ranges(path)])
    added = []
    for path in SUBID_FILES:
        if not any(owner == name for owner, _, _ in subid_ranges(path)):
            with open(path, "a") as f:
                f.write(f"{name}:{start}:65536\n")
            added.append(path)
    return added


def drop_subid_lines(name: str, paths=SUBID_FILES) -> None:
    """Take a test user's ranges out of /etc/subuid and /etc/subgid again."""
    for path in paths:
        with open(path) as f:
            kept = [line for line in f if not line.startswith(f"{name}:")]
        with open(path, "w") as f:
            f.writelines(kept)


def make_class(prefix: str) -> tuple[Path, Path]:
    """A class directory of three that anyone can read, under a new base directory:
    alice (the reference part 1), bob (part 1 as his part 2 too), carol (a part 1 that
    exits 3).  Returns (base, class_dir); remove base when done."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    class_dir = base / "class"
    copy_parts(class_dir / "alice", {1: PARTS[1]})
    copy_parts(class_dir / "bob", {1: PARTS[1], 2: PARTS[1]})
    copy_parts(class_dir / "carol", {1: PARTS[1]})
    (class_dir / "carol" / PARTS[1] / "zookeeper.py").write_text("raise SystemExit(3)\n")
    subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
    return base, class_dir


VENV_PYTHON = os.environ.get("ZOOKEEPER_VENV", "/opt/zookeeper-venv") + "/bin/python3"


def runs_as_310(python: str | None) -> bool:
    """Is python a Python 3.10 that starts (a pyenv shim without its version does not)?"""
    if not python:
        return False
    done = subprocess.run([python, "-c", "import sys; print(sys.version_info[:2])"],
                          capture_output=True, text=True)
    return done.returncode == 0 and done.stdout.strip() == "(3, 10)"


# The oldest Python README promises (Ubuntu 22.04's, Gradescope's base image's), if this
# machine has one: on PATH, or pyenv's own binaries (root's; its shims exit 127 when no
# version is set).
PYTHON310 = next((p for p in [*sorted(glob.glob("/root/.pyenv/versions/3.10.*/bin/python3.10")),
                              shutil.which("python3.10")] if runs_as_310(p)), None)
TEST_USER = os.environ.get("ZOOKEEPER_TEST_USER", "zootest")
WHO = ["root", "user"]
# The modules a part is made of, as imported by name from its directory.
OUR_MODULES = ["kernel", "errors", "options", "programs", "idmap", "security",
               "seccomp_cache", "rootfs", "cgroups", "network", "exercise"]


@contextlib.contextmanager
def part_modules(part: int, *names: str):
    """Import modules of one part afresh (every part has its own kernel.py, errors.py...),
    leaving them in sys.modules meanwhile, for the imports they make when called."""
    saved = {n: sys.modules.pop(n) for n in OUR_MODULES if n in sys.modules}
    sys.path.insert(0, str(ROOT / PARTS[part]))
    try:
        yield types.SimpleNamespace(**{n: importlib.import_module(n)
                                       for n in ("kernel", "errors", *names)})
    finally:
        sys.path.remove(str(ROOT / PARTS[part]))
        for n in OUR_MODULES:
            sys.modules.pop(n, None)
        sys.modules.update(saved)


class Runner:
    """Runs a copy of the parts as one identity: root, or the unprivileged test user."""

    def __init__(self, who: str, workdir: Path):
        self.who = who
        self.workdir = workdir
        if who == "user":
            pw = pwd.getpwnam(TEST_USER)
            self.uid, self.gid, self.home = pw.pw_uid, pw.pw_gid, pw.pw_dir
        else:
            self.uid, self.gid, self.home = 0, 0, "/root"
        self.python = VENV_PYTHON if os.path.exists(VENV_PYTHON) else sys.executable
        # The host's ids of root in this identity's containers: root maps its own
        # subordinate range, so its container's root is not the host's (idmap.py).
        self.inside = container_root_ids(self.uid, self.gid)
        # The seccomp program's cache (part 3 on) goes here, not into a real home.
        self.cache = self.fresh_dir()

    def fresh_dir(self, for_container: bool = False) -> Path:
        """A new empty directory of this identity's own, that it can reach; with
        for_container, one that root in its containers owns (to write in)."""
        path = Path(tempfile.mkdtemp(dir=self.workdir, prefix=f"{self.who}-"))
        os.chown(path, *(self.inside if for_container else (self.uid, self.gid)))
        return path

    def command(self, argv: list[str]) -> list[str]:
        if self.who == "root":
            return argv
        # setpriv execs, so a child's death by signal stays visible in our wait status.
        return ["/usr/bin/setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups",
                "--"] + argv

    def env(self, extra=None) -> dict:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": self.home, "LANG": "C.UTF-8", "XDG_CACHE_HOME": str(self.cache)}
        if self.who == "root":
            env["PATH"] = os.path.dirname(self.python) + ":" + env["PATH"]
        env.update(extra or {})
        return env

    def run(self, argv, timeout=60, env=None, **kw) -> subprocess.CompletedProcess:
        """Run argv (a list) as this identity; stdout and stderr captured as text."""
        return subprocess.run(self.command(argv), env=self.env(env), capture_output=True,
                              text=True, timeout=timeout, cwd=self.workdir, **kw)

    def zookeeper(self, part: int, *args, timeout=60, env=None, **kw):
        """Run partN/zookeeper.py with args."""
        script = str(self.workdir / PARTS[part] / "zookeeper.py")
        return self.run([self.python, script, *args], timeout=timeout, env=env, **kw)

    def popen(self, part: int, *args, env=None, **kw) -> subprocess.Popen:
        script = str(self.workdir / PARTS[part] / "zookeeper.py")
        return subprocess.Popen(self.command([self.python, script, *args]), env=self.env(env),
                                cwd=self.workdir, **kw)


@pytest.fixture(scope="session")
def workdir():
    """A copy of the repo's part directories that the test user can read."""
    base = Path(tempfile.mkdtemp(prefix="zk-tests-"))
    base.chmod(0o755)
    for name in list(PARTS.values()) + ["skeleton", "tests", "grader"]:
        if (ROOT / name).exists():
            shutil.copytree(ROOT / name, base / name,
                            ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def container_root_ids(uid: int, gid: int) -> tuple[int, int]:
    """Root's containers run as the first ids of root's /etc/subuid and /etc/subgid
    ranges when it has both (idmap.container_root); anyone else's container
    root is that user."""
    ranges = [subid_range(path, "root", 0) for path in SUBID_FILES] if uid == 0 else []
    if ranges and all(ranges):
        return ranges[0][0], ranges[1][0]
    return uid, gid


def boot_fake_qemu(tmp_path: Path, monkeypatch, console_script: str, **job):
    """qemu.boot of a job that runs `true`, with a stand-in for QEMU: a shell script
    that finds the console's log file (-chardev socket,id=console,...,logfile=PATH) in
    $console and then runs console_script (no ZOO-JOB-READY: it is not sent a job).
    The image is booted (a stand-in has no state to save).  job: the rest of
    qemu.Job's fields (timeout, watchdog)."""
    import image
    import qemu

    fake_qemu = tmp_path / "qemu"
    fake_qemu.write_text('#!/bin/sh\nwhile [ "${1#socket,id=console,}" = "$1" ]; do shift; '
                         'done\nconsole="${1##*,logfile=}"\n' + console_script)
    fake_qemu.chmod(0o755)
    monkeypatch.setenv("ZOO_QEMU", str(fake_qemu))
    (tmp_path / "job").mkdir()
    (tmp_path / "job" / "run.sh").write_text("true\n")
    paths = image.ImagePaths(key="fake", dir=tmp_path, kernel=tmp_path / "vmlinux",
                             initramfs=tmp_path / "initramfs.cpio", rootfs=tmp_path / "rootfs")
    return qemu.boot(qemu.Job(tmp_path / "job", None, tmp_path / "results", **job),
                     qemu.Machine(paths, accel="tcg", restore=False))


def have_test_user() -> bool:
    try:
        pwd.getpwnam(TEST_USER)
        return True
    except KeyError:
        return False


@pytest.fixture(scope="session", params=WHO)
def runner(request, workdir) -> Runner:
    """Parametrises a test over root and the unprivileged test user."""
    return make_runner(request.param, workdir)


def make_runner(who: str, workdir: Path) -> Runner:
    if os.getuid() != 0:
        pytest.fail("the integration tests run as root (they switch to the test user "
                    "themselves): run them through 'make test'")
    if who == "user" and not have_test_user():
        pytest.fail(f"no test user {TEST_USER}: run tools/setup-test-env.sh (make test does)")
    return Runner(who, workdir)


@pytest.fixture(scope="session")
def root_runner(workdir) -> Runner:
    return make_runner("root", workdir)


@pytest.fixture(scope="session")
def user_runner(workdir) -> Runner:
    return make_runner("user", workdir)


@pytest.fixture(scope="session")
def rootfs_tar():
    """The busybox rootfs tarball, built once per session."""
    # Not under pytest's temp dir: that one is root's only, and the test user reads this.
    base = Path(tempfile.mkdtemp(prefix="zk-rootfs-"))
    base.chmod(0o755)
    out = base / "zoo-fs.tar"
    subprocess.run([sys.executable, str(ROOT / "tools" / "mkrootfs.py"), "busybox", str(out)],
                   check=True, capture_output=True)
    out.chmod(0o644)
    yield out
    shutil.rmtree(base, ignore_errors=True)


def unpack_rootfs(runner: Runner, tar: Path, dest: Path) -> Path:
    """Unpack the rootfs as the runner's user (umask 0, as the course does), so the
    files are owned by root inside that user's containers."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.parent.chmod(0o777)
    done = runner.run(["sh", "-c", f"mkdir -p '{dest}' && cd '{dest}' && umask 0 && "
                                   f"tar xf '{tar}' --no-same-owner"], timeout=120)
    assert done.returncode == 0, done.stderr
    if runner.inside != (runner.uid, runner.gid):  # root: owned by its containers' root
        subprocess.run(["chown", "-R", f"{runner.inside[0]}:{runner.inside[1]}", str(dest)],
                       check=True)
    return dest


@pytest.fixture(scope="session")
def rootfs_for(rootfs_tar):
    """rootfs_for(runner) -> a busybox rootfs unpacked by that runner's user."""
    made = {}

    def get(runner: Runner) -> Path:
        if runner.who not in made:
            base = Path(tempfile.mkdtemp(prefix=f"zk-fs-{runner.who}-"))
            base.chmod(0o755)
            made[runner.who] = unpack_rootfs(runner, rootfs_tar, base / "zoo-fs")
        return made[runner.who]

    yield get
    for path in made.values():
        subprocess.run(["rm", "-rf", str(path.parent)], check=False)


def eventually(condition, seconds: float = 5) -> bool:
    """Is condition() true within seconds (asked every 0.1 s)?"""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


# A daemon that runs programs on request, as the user's systemd, cron or atd do: the
# program is found before the fork (as another uid, root's PATH and the Python
# modules execvp imports may be out of reach), and takes the uid given first.
STAND_IN_DAEMON = """
import ctypes, json, os, shutil, sys
if sys.argv[1:]:  # its name (proc(5) comm), as prctl(2) PR_SET_NAME gives it
    ctypes.CDLL(None).prctl(15, sys.argv[1].encode(), 0, 0, 0)
print("ready", flush=True)
for line in sys.stdin:
    uid, *argv = json.loads(line)
    program = shutil.which(argv[0])
    pid = os.fork()
    if pid == 0:
        if uid is not None:
            os.chdir("/")
            os.setgid(uid)
            os.setuid(uid)
        os.execv(program, argv)
    print(pid, flush=True)
"""


class StandInDaemon:
    """Stands in for a daemon that runs programs when asked (the user's systemd, cron,
    atd; named so, when a name is given): a process the test had before the check,
    so neither it nor what it starts is the check's.  run() starts a program (as
    uid, when given) and gives its pid; close() kills what it started, and it."""

    def __init__(self, name: str = ""):
        argv = [sys.executable, "-c", STAND_IN_DAEMON] + ([name] if name else [])
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.proc.stdout.readline()  # named, and reading its requests
        self.started: list[int] = []

    def run(self, *argv: str, uid: int | None = None) -> int:
        self.proc.stdin.write(json.dumps([uid, *argv]) + "\n")
        self.proc.stdin.flush()
        self.started.append(int(self.proc.stdout.readline()))
        return self.started[-1]

    def close(self) -> None:
        for pid in self.started:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        self.proc.kill()
        self.proc.wait()
