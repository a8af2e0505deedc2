"""README's first command: `make demo` builds the rootfs and shows a container's isolation,
as an unprivileged user (and names what is missing instead of failing obscurely)."""

import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import PARTS, ROOT, Runner


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


def make(runner: Runner, where: Path, *args, path_prefix=""):
    env = {"PATH": f"{path_prefix}/opt/zookeeper-venv/bin:/usr/bin:/bin"}
    return runner.run(["make", "-C", str(where), *args], env=env, timeout=300)


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


def test_make_demo_names_a_missing_package(user_runner: Runner, user_copy):
    # A PATH without busybox: check-deps says which package to install.
    bin_dir = user_copy / "bin-without-busybox"
    bin_dir.mkdir()
    for tool in ("sh", "make", "python3", "tar", "id", "grep", "newuidmap", "newgidmap",
                 "unshare", "dirname", "uname"):
        found = shutil.which(tool, path="/opt/zookeeper-venv/bin:/usr/bin:/bin")
        if found:
            (bin_dir / tool).symlink_to(found)
    done = user_runner.run(["/usr/bin/make", "-C", str(user_copy), "demo"],
                           env={"PATH": str(bin_dir)}, timeout=120)
    assert done.returncode != 0
    assert "busybox (package busybox-static): sudo apt-get install busybox-static" in (
        done.stdout + done.stderr)
