"""grader/grade --local on a shared machine: it touches only what its own run made.

While another user's containers run (one started before the grading, one during it),
`grade --local` neither kills them nor removes their /tmp/zoo.* directories, nor
fails a check because of them (p1_no_leftovers once said "a zookeeper process is
still running" about another user's).
"""

import contextlib
import csv
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import (
    PARTS,
    ROOT,
    TEST_USER,
    VENV_PYTHON,
    copy_parts,
    give_subid_range,
    have_test_user,
)
from test_grader import load_grade

pytestmark = pytest.mark.slow
OTHER_USER = "zooother"


@pytest.fixture(scope="module")
def other_user():
    """Another user of this machine, with subordinate ranges: made if absent."""
    if os.getuid() != 0 or not have_test_user() or not Path(VENV_PYTHON).exists():
        pytest.skip("needs root, the test user and the venv (make test-deps)")
    try:
        pwd.getpwnam(OTHER_USER)
    except KeyError:
        subprocess.run(["useradd", "-m", "-s", "/bin/sh", OTHER_USER], check=True)
    give_subid_range(OTHER_USER)
    return pwd.getpwnam(OTHER_USER)


@pytest.fixture
def place():
    """A directory root writes in, that every user can read."""
    path = Path(tempfile.mkdtemp(prefix="zk-local-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


def as_user(user, argv: list[str]) -> list[str]:
    """argv run as user (a pwd entry), with its groups, by setpriv(1)."""
    return ["setpriv", f"--reuid={user.pw_uid}", f"--regid={user.pw_gid}", "--init-groups",
            "--"] + argv


class OtherContainer:
    """`zookeeper -r FS sleep 300` from a copy of part 4, run by another user."""

    def __init__(self, user, base: Path, rootfs_tar: Path):
        self.user, self.base = user, base
        base.mkdir()
        shutil.copytree(ROOT / PARTS[4], base / "part4", ignore=shutil.ignore_patterns(
            "__pycache__"))
        subprocess.run(["chmod", "-R", "a+rX", str(base / "part4")], check=True)
        (base / "home").mkdir()
        os.chown(base / "home", user.pw_uid, user.pw_gid)
        fs = base / "home" / "zoo-fs"
        done = subprocess.run(self.as_user(["sh", "-c", f"mkdir -p '{fs}' && cd '{fs}' && "
                                                        f"umask 0 && tar xf '{rootfs_tar}' "
                                                        "--no-same-owner"]),
                              env=self.env(), capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        self.fs = fs
        self.procs = []

    def as_user(self, argv):
        return as_user(self.user, argv)

    def env(self):
        return {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8",
                "HOME": str(self.base / "home"),
                "XDG_CACHE_HOME": str(self.base / "home" / ".cache")}

    def start(self) -> tuple[subprocess.Popen, str]:
        """Start one container; returns it and its /tmp/zoo.* mount point, once its
        `sleep 300` runs."""
        before = set(other_temp_dirs(self.user.pw_uid))
        proc = subprocess.Popen(self.as_user([VENV_PYTHON, str(self.base / "part4" /
                                                              "zookeeper.py"),
                                              "-r", str(self.fs), "sleep", "300"]),
                                env=self.env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE)
        self.procs.append(proc)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            new = set(other_temp_dirs(self.user.pw_uid)) - before
            if new and sleeping_under(proc.pid):
                return proc, new.pop()
            assert proc.poll() is None, proc.stderr.read().decode()
            time.sleep(0.1)
        pytest.fail("the other user's container did not start within 30 s")

    def stop(self) -> None:
        """Only what this test started, by pid: zookeeper passes SIGTERM on."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def other_temp_dirs(uid: int) -> list[str]:
    return [str(p) for p in Path("/tmp").glob("zoo.*") if p.stat().st_uid == uid]


def sleeping_under(pid: int) -> bool:
    """A `sleep 300` runs somewhere below pid."""
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if cmdline == b"sleep\x00300\x00" or sleeping_under(child):
            return True
    return False


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found += [int(x) for x in (task / "children").read_text().split()]
        except OSError:
            pass
    return found


def start_local_grading(place: Path) -> tuple[subprocess.Popen, Path]:
    """grade --local of parts 1 and 4 as the test user, started in the background;
    returned once its first check has reported (its checks are then running)."""
    sub = copy_parts(place / "sub", {1: PARTS[1], 4: PARTS[4]})
    subprocess.run(["chmod", "-R", "a+rX", str(sub)], check=True)
    out = place / "out"
    out.mkdir(mode=0o755)
    grading = subprocess.Popen(
        [sys.executable, str(ROOT / "grader" / "grade"), str(sub), "--local", "--as-root",
         "--part", "1", "--part", "4", "--user", TEST_USER, "--python", VENV_PYTHON,
         "--out", str(out)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not (out / "results.json").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    return grading, out


def test_grade_local_leaves_another_users_containers_alone(other_user, place, rootfs_tar):
    other = OtherContainer(other_user, place / "other", rootfs_tar)
    try:
        before, before_dir = other.start()
        grading, out = start_local_grading(place)
        # A second one while the checks run: new to the runner, in another pid
        # namespace, with a /tmp/zoo.* of its own (all of which the runner once removed).
        during, during_dir = other.start()
        said, _ = grading.communicate(timeout=600)
        results = json.loads((out / "results.json").read_text())
        failed = {r["id"]: r["message"] for r in results if r["status"] != "ok"}
        assert grading.returncode == 0 and not failed, said
        for proc, temp_dir in ((before, before_dir), (during, during_dir)):
            assert proc.poll() is None, "the grading killed another user's zookeeper"
            assert sleeping_under(proc.pid), "the grading killed another user's container"
            assert os.path.isdir(temp_dir), f"the grading removed {temp_dir}"
    finally:
        other.stop()


def test_grade_local_leaves_the_same_users_other_container_alone(place, rootfs_tar):
    """--local touches only what its own run made: a container that the user it grades
    as starts meanwhile (a `make demo` in another terminal) is not its own either."""
    if os.getuid() != 0 or not have_test_user() or not Path(VENV_PYTHON).exists():
        pytest.skip("needs root, the test user and the venv (make test-deps)")
    same = OtherContainer(pwd.getpwnam(TEST_USER), place / "same", rootfs_tar)
    try:
        grading, _ = start_local_grading(place)
        during, during_dir = same.start()
        said, _ = grading.communicate(timeout=600)
        assert grading.returncode == 0, said
        assert during.poll() is None and sleeping_under(during.pid), "the grading killed it"
        assert os.path.isdir(during_dir), f"the grading removed {during_dir}"
    finally:
        same.stop()


def sleeping_grading(place: Path, **popen) -> tuple[subprocess.Popen, Path, Path]:
    """grade --local of a part 1 whose zookeeper.py sleeps 30 s, started: (the grade
    process, the TMPDIR of its runner's scratch and of the user's copy, its --out).
    A signal sent once a check runs comes during it, however fast the machine."""
    if os.getuid() != 0 or not have_test_user() or not Path(VENV_PYTHON).exists():
        pytest.skip("needs root, the test user and the venv (make test-deps)")
    tmp = place / "tmp"  # not among other runs' in /tmp
    tmp.mkdir()
    tmp.chmod(0o1777)
    sub = copy_parts(place / "sub", {1: PARTS[1]})
    (sub / PARTS[1] / "zookeeper.py").write_text("import time\ntime.sleep(30)\n")
    subprocess.run(["chmod", "-R", "a+rX", str(sub)], check=True)
    out = place / "out"
    out.mkdir(mode=0o755)
    grading = subprocess.Popen(
        [sys.executable, str(ROOT / "grader" / "grade"), str(sub), "--local", "--part", "1",
         "--user", TEST_USER, "--python", VENV_PYTHON, "--out", str(out)],
        env=dict(os.environ, TMPDIR=str(tmp)), **popen)
    return grading, tmp, out


@pytest.mark.parametrize("to_group", [True, False])
def test_ctrl_c_leaves_no_scratch_directory(place, to_group):
    """Ctrl-C (SIGINT to the terminal's process group, or to grade alone) during a
    --local grading: subprocess.run killed the runner 0.25 s later, before it could
    remove its /tmp/zoo-grader-* (attack review, session 17)."""
    grading, tmp, out = sleeping_grading(place, stdout=subprocess.PIPE,
                                         stderr=subprocess.STDOUT, text=True,
                                         start_new_session=True)
    try:
        deadline = time.monotonic() + 120
        while not list(tmp.glob("zoo-grader-*")):
            assert time.monotonic() < deadline and grading.poll() is None, "no runner started"
            time.sleep(0.05)
        time.sleep(0.5)  # a check runs
        if to_group:
            os.killpg(grading.pid, signal.SIGINT)
        else:
            grading.send_signal(signal.SIGINT)
        said, _ = grading.communicate(timeout=60)
    finally:
        if grading.poll() is None:
            os.killpg(grading.pid, signal.SIGKILL)
            grading.wait()
    assert grading.returncode == 130, said
    assert list(tmp.iterdir()) == [], said


BROKEN_SOURCE = "raise SystemExit('this source does not work')\n"


def bring_compiled(part_dir: Path, how: str) -> None:
    """The part's code kept working through a compiled file while a source that does
    not work is what a reader sees: a hash-based .pyc that Python never checks against
    its source (py_compile's UNCHECKED_HASH), or a .pyc where the source would be
    (Python loads it when there is no .py)."""
    compile_it = ("import py_compile, sys; py_compile.compile(sys.argv[1], cfile=sys.argv[2], "
                  "invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)")
    source = part_dir / "container.py"
    if how == "none":
        return
    if how == "a linked cache":  # a link to a directory, where a __pycache__ goes
        (part_dir / "__pycache__").symlink_to(".", target_is_directory=True)
        (part_dir / "other.pyc").symlink_to("/tmp", target_is_directory=True)
        return
    if how == "unchecked":
        tag = subprocess.run([VENV_PYTHON, "-c", "import sys; print(sys.implementation.cache_tag)"],
                             capture_output=True, text=True, check=True).stdout.strip()
        cfile = part_dir / "__pycache__" / f"container.{tag}.pyc"
        subprocess.run([VENV_PYTHON, "-c", compile_it, str(source), str(cfile)], check=True)
        source.write_text(BROKEN_SOURCE)
    else:
        subprocess.run([VENV_PYTHON, "-c", compile_it, str(source),
                        str(part_dir / "container.pyc")], check=True)
        source.unlink()


@pytest.mark.parametrize("how", ["none", "unchecked", "sourceless", "a linked cache"])
def test_grade_local_runs_the_sources_not_compiled_files_brought(place, how):
    """--local runs a copy of the submission without the compiled files it brought,
    as the VM's run.sh does (review, session 27: a committed hash-based .pyc scored
    15/15 over a container.py that did not work).  The submission itself is left as
    it was."""
    if os.getuid() != 0 or not have_test_user() or not Path(VENV_PYTHON).exists():
        pytest.skip("needs root, the test user and the venv (make test-deps)")
    sub = copy_parts(place / "sub", {1: PARTS[1]})
    bring_compiled(sub / PARTS[1], how)
    subprocess.run(["chmod", "-R", "a+rX", str(sub)], check=True)
    brought = sorted(p.relative_to(sub) for p in sub.rglob("*.pyc") if not p.is_symlink())
    out = place / "out"
    out.mkdir(mode=0o755)
    done = subprocess.run(
        [sys.executable, str(ROOT / "grader" / "grade"), str(sub), "--local",
         "--only", "p1_exit_status", "--user", TEST_USER, "--python", VENV_PYTHON,
         "--out", str(out)], capture_output=True, text=True, timeout=300,
        env=dict(os.environ, TMPDIR=str(place)))
    results = json.loads((out / "results.json").read_text())
    want = "fail" if how in ("unchecked", "sourceless") else "ok"  # the reference passes
    assert [r["status"] for r in results] == [want], done.stdout + done.stderr
    assert sorted(p.relative_to(sub) for p in sub.rglob("*.pyc") if not p.is_symlink()) == brought
    assert not list(place.glob("zoo-submission-*")), "the copy was left behind"


def test_grade_local_as_root_copies_only_what_the_graded_user_can_read(place):
    """As root with --user U, the copy is made by U: root never reads the submission,
    which U (if it may write there) could change under root's feet, a directory
    swapped for a link to root's files while it is packed (review, session 27: won in
    25 tries).  A file U cannot read is not in the copy, nor given to U."""
    if os.getuid() != 0 or not have_test_user() or not Path(VENV_PYTHON).exists():
        pytest.skip("needs root, the test user and the venv (make test-deps)")
    sub = copy_parts(place / "sub", {1: PARTS[1]})
    subprocess.run(["chmod", "-R", "a+rX", str(sub)], check=True)
    secret = sub / PARTS[1] / "root-only.txt"
    secret.write_text("root's\n")
    secret.chmod(0o600)
    user = pwd.getpwnam(TEST_USER)
    grade = load_grade()
    copy, left_out = grade.local_copy(sub, TEST_USER)
    try:
        assert copy.stat().st_uid == user.pw_uid
        assert (copy / PARTS[1] / "zookeeper.py").stat().st_uid == user.pw_uid
        assert not (copy / PARTS[1] / "root-only.txt").exists()
        assert left_out == [f"{PARTS[1]}/root-only.txt"]  # said, as the VM's log says it
    finally:
        shutil.rmtree(copy)



def test_a_students_own_grade_keeps_its_copy_from_other_users(place, other_user):
    """grade --local run by a student, not root: the copy in /tmp is theirs alone.
    With the guest's modes (u+rwX,go+rX), a classmate on a shared server could read
    the code while it was graded, and for good after a grade killed with SIGKILL."""
    student = pwd.getpwnam(TEST_USER)
    sub = copy_parts(place / "sub", {1: PARTS[1]})
    subprocess.run(["chown", "-R", f"{student.pw_uid}:{student.pw_gid}", str(sub)], check=True)
    shared_tmp = place / "tmp"
    shared_tmp.mkdir(mode=0o1777)
    shared_tmp.chmod(0o1777)  # as /tmp: mkdir's mode passes through the umask
    code = ("import importlib.machinery as m, importlib.util as u, pathlib, sys\n"
            "loader = m.SourceFileLoader('g', sys.argv[1])\n"
            "g = u.module_from_spec(u.spec_from_loader('g', loader))\n"
            "loader.exec_module(g)\n"
            "print(g.local_copy(pathlib.Path(sys.argv[2]), None)[0])\n")
    done = subprocess.run(as_user(student, [VENV_PYTHON, "-c", code,
                                            str(ROOT / "grader" / "grade"), str(sub)]),
                          capture_output=True, text=True, timeout=60,
                          env={"PATH": os.environ["PATH"], "TMPDIR": str(shared_tmp)})
    assert done.returncode == 0, done.stderr
    copy = Path(done.stdout.strip())
    try:
        assert copy.parent == shared_tmp and copy.stat().st_uid == student.pw_uid
        assert (copy / PARTS[1] / "zookeeper.py").is_file()
        for argv in (["ls", str(copy)], ["cat", str(copy / PARTS[1] / "zookeeper.py")]):
            peek = subprocess.run(as_user(other_user, argv), capture_output=True, text=True)
            assert peek.returncode != 0 and "Permission denied" in peek.stderr, (argv, peek)
        modes = {p.stat(follow_symlinks=False).st_mode & 0o077 for p in [copy, *copy.rglob("*")]
                 if not p.is_symlink()}
        assert modes == {0}, "part of the copy is open to other users"
    finally:
        shutil.rmtree(copy, ignore_errors=True)


def test_call_as_keeps_root_real_only_when_asked():
    """children.call_as, under --local's copy (for good) and the runner's file work
    (keep_root: kill(2) from the user's processes cannot stop it): who the child is,
    what comes back, an error's text, and a child killed at its time limit."""
    if os.getuid() != 0 or not have_test_user():
        pytest.skip("needs root and the test user (make test-deps)")
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "grader"))
    from children import Identity, call_as

    user = pwd.getpwnam(TEST_USER)
    who = Identity(user.pw_uid, user.pw_gid, [user.pw_gid])

    def ids() -> bytes:
        return repr((os.getresuid(), os.getresgid(), os.getgroups())).encode()

    uid, gid = user.pw_uid, user.pw_gid
    assert call_as(ids, (), who) == (0, repr(((uid,) * 3, (gid,) * 3, [gid])).encode(), False)
    assert call_as(ids, (), who, keep_root=True) == (
        0, repr(((0, uid, 0), (gid,) * 3, [gid])).encode(), False)
    assert call_as(os.getcwd, (), None) == (0, b"", False)  # not bytes: nothing said
    with tempfile.TemporaryDirectory() as roots:  # 0700, root's
        status, said, timed_out = call_as(os.open, (f"{roots}/file", os.O_RDONLY), who)
    assert (status, timed_out) == (1, False)
    assert said.decode().startswith("[Errno 13] Permission denied"), said
    assert call_as(int, ("x",), who)[:2] == (1, b"grader error: ValueError(\"invalid literal "
                                                b"for int() with base 10: 'x'\")")
    started = time.monotonic()
    assert call_as(time.sleep, (30,), who, seconds=0.5) == (-signal.SIGKILL, b"", True)
    assert time.monotonic() - started < 10


def grade_one_check(place: Path, what: str, check: str, **run) -> subprocess.CompletedProcess:
    """grade --local place/what (a submission or a class) as the test user, one check,
    into place/out; run: subprocess.run's keywords for its output."""
    if os.getuid() != 0 or not have_test_user() or not Path(VENV_PYTHON).exists():
        pytest.skip("needs root, the test user and the venv (make test-deps)")
    subprocess.run(["chmod", "-R", "a+rX", str(place)], check=True)
    (place / "out").mkdir(mode=0o755)
    return subprocess.run(
        [sys.executable, str(ROOT / "grader" / "grade"), str(place / what), "--local",
         "--only", check, "--user", TEST_USER, "--python", VENV_PYTHON,
         "--out", str(place / "out")], text=True, timeout=300, **run)


def test_the_status_line_comes_after_the_report_through_a_pipe(place):
    """`make check 2>&1 | tee log`: the report (stdout, block-buffered in a pipe) was
    written at exit, after the status line on stderr ("grade: incomplete" first, the
    report under it: student walk, session 28)."""
    copy_parts(place / "sub", {6: PARTS[6]})
    # Root's veth check is not run by --local without --as-root: the run is incomplete.
    done = grade_one_check(place, "sub", "p6_root_veth", stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT,
                           env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"})
    lines = done.stdout.splitlines()
    status = [i for i, line in enumerate(lines) if line.startswith("grade: ")]
    assert done.returncode == 2 and status, done.stdout
    score = [i for i, line in enumerate(lines) if line.startswith("Score:")]
    assert score and score[-1] < status[-1], done.stdout


def test_a_students_name_that_is_not_utf8_is_graded(place):
    """A class unpacked from an LMS's Latin-1 zip: a directory named stu\\xffbad got
    "error" under --local, every time (mkrootfs named the tarball's path in its output,
    read as strict UTF-8; review, session 28)."""
    copy_parts(place / "class" / os.fsdecode(b"stu\xffbad"), {1: PARTS[1]})
    done = grade_one_check(place, "class", "p1_exit_status", capture_output=True,
                           errors="replace")
    assert done.returncode == 0, done.stdout + done.stderr
    [row] = list(csv.DictReader((place / "out" / "scores.csv").open(errors="replace")))
    assert row["status"] == "ok", row


def test_a_runner_never_outlives_a_killed_grade(place):
    """grade killed with SIGKILL (or by the OOM killer): its runner, root's, went on
    running the student's code for the rest of the selection and wrote into OUT beside
    the next run's (review, session 28).  The kernel now sends the runner SIGTERM with
    grade's death (PR_SET_PDEATHSIG), and it stops as on Ctrl-C: the student's
    command killed, its scratch directory removed.  (grade's own copy of the
    submission stays: nothing is left to remove it.)"""
    grading, tmp, out = sleeping_grading(place, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)

    def running() -> list[int]:  # the runner, and the student's zookeeper.py in its copy
        pattern = f"runner.py .*--results {out}/|{tmp}/.*zookeeper.py"
        found = subprocess.run(["pgrep", "-f", pattern], capture_output=True,
                               text=True).stdout.split()
        return [int(pid) for pid in found]

    try:
        deadline = time.monotonic() + 120
        while len(running()) < 2:  # the runner, and a check's zookeeper
            assert time.monotonic() < deadline and grading.poll() is None, "no check started"
            time.sleep(0.05)
        grading.kill()
        grading.wait()
        deadline = time.monotonic() + 15
        while running() and time.monotonic() < deadline:
            time.sleep(0.1)
        left = running()
    finally:
        if grading.poll() is None:
            grading.kill()
    for pid in left:  # the old behaviour: do not leave them running after the test
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    assert not left, "the runner or the student's command outlived grade"
    assert not list(tmp.glob("zoo-grader-*")), "the runner's scratch directory was left"


def test_a_part_linked_out_of_the_submission_is_not_graded(place):
    """part1_clone a link to the reference's on the grader's machine: --local graded
    the reference, 3/3, where the VM's copy had a link to nothing (review, session 28).
    Now the link is left out of both copies: there is no part 1."""
    reference = copy_parts(place / "reference", {1: PARTS[1]})
    (place / "sub").mkdir()
    (place / "sub" / PARTS[1]).symlink_to(reference / PARTS[1], target_is_directory=True)
    done = grade_one_check(place, "sub", "p1_exit_status", capture_output=True)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no part1_*/zookeeper.py in the submission" in done.stdout, done.stdout
    assert (f"grade: sub: left out of the copy (unreadable here, or as said): {PARTS[1]} (a "
            "link out of the submission)\n") in done.stderr, done.stderr
