"""README's first command: `make demo` builds the rootfs and shows a container's isolation,
as an unprivileged user (and names what is missing instead of failing obscurely).

These use the test venv the suite already has (VENV=/opt/zookeeper-venv): the demo
from nothing, venv included, is tests/test_student_demo.py's."""

import shutil
import subprocess
import tempfile
from pathlib import Path

import handout
import pytest
from conftest import PARTS, ROOT, VENV_PYTHON, Runner


@pytest.fixture
def user_copy(user_runner: Runner):
    base = Path(tempfile.mkdtemp(prefix="zk-demo-"))
    for name in ["Makefile", "tools", "requirements.txt", *PARTS.values()]:
        src = ROOT / name
        if src.is_dir():
            shutil.copytree(src, base / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, base / name)
    subprocess.run(["chown", "-R", f"{user_runner.uid}:{user_runner.gid}", str(base)], check=True)
    base.chmod(0o755)
    yield base
    subprocess.run(["rm", "-rf", str(base)], check=False)


VENV = str(Path(VENV_PYTHON).parent.parent)


def make(runner: Runner, where: Path, *args):
    env = {"PATH": "/usr/bin:/bin"}
    return runner.run(["make", "-C", str(where), f"VENV={VENV}", *args], env=env, timeout=300)


def test_make_demo_as_a_user(user_runner: Runner, user_copy):
    done = make(user_runner, user_copy, "demo")
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "hostname:   zoo" in out
    assert "user:       uid=0(root)" in out
    assert f"uid map:     0 {user_runner.uid} 1;" in out
    assert "(I am PID 1)" in out
    assert "network:    lo \n" in out
    assert "seccomp:    NoNewPrivs: 1 Seccomp: 2" in out
    assert "== the container exited with status 0" in out
    # The rootfs was unpacked by the user: root inside owns it.
    assert (user_copy / "build" / "zoo-fs" / "bin" / "busybox").stat().st_uid == user_runner.uid
    # Every Python the Makefile ran was the venv's.
    assert f"== in a container: {VENV}/bin/python3 part6_network/zookeeper.py" in out
    assert f"{VENV}/bin/python3 tools/mkrootfs.py busybox" in out


def test_make_demo_names_a_missing_package(user_runner: Runner, user_copy):
    # A PATH without busybox and without sudo: the one line to run, and a stop.
    bin_dir = user_copy / "bin-without-busybox"
    bin_dir.mkdir()
    for tool in ("sh", "make", "python3", "tar", "id", "grep", "newuidmap", "newgidmap",
                 "unshare", "dirname", "uname", "cmp", "cp", "slirp4netns", "mkdir"):
        found = shutil.which(tool, path="/usr/bin:/bin")
        if found:
            (bin_dir / tool).symlink_to(found)
    done = user_runner.run(["/usr/bin/make", "-C", str(user_copy), f"VENV={VENV}", "demo"],
                           env={"PATH": str(bin_dir)}, timeout=120)
    assert done.returncode != 0
    err = done.stderr.splitlines()
    assert "check-deps: there is no sudo here: ask someone with root to run this," in err[0]
    assert err[1] == "    apt-get install busybox-static"
    assert not (user_copy / "build").exists()


def test_the_handouts_make_demo_keeps_the_students_rootfs(user_runner: Runner):
    """The handout's Makefile (tools/handout.py writes it) sets up and keeps the rootfs
    as the repo's does: a file put into build/zoo-fs survives the next `make demo`."""
    base = Path(tempfile.mkdtemp(prefix="zk-handout-demo-"))
    try:
        tree = base / "zookeeper"
        handout.write_handout(tree)
        shutil.copytree(ROOT / PARTS[6], tree / PARTS[6],
                        ignore=shutil.ignore_patterns("__pycache__"))
        subprocess.run(["chown", "-R", f"{user_runner.uid}:{user_runner.gid}", str(base)],
                       check=True)
        base.chmod(0o755)
        first = make(user_runner, tree, "demo")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "hostname:   zoo" in first.stdout
        mine = tree / "build" / "zoo-fs" / "root" / "mine"
        assert user_runner.run(["sh", "-c", f"echo kept > {mine}"]).returncode == 0
        second = make(user_runner, tree, "demo")
        assert second.returncode == 0, second.stdout + second.stderr
        assert "kept as it is" in second.stdout and mine.read_text() == "kept\n"
        reset = make(user_runner, tree, "rootfs-reset")
        assert reset.returncode == 0, reset.stdout + reset.stderr
        assert not mine.exists() and (tree / "build" / "zoo-fs" / "bin" / "busybox").exists()
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=False)
