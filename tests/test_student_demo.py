"""A new student's first command, from nothing: a fresh unprivileged user clones the
repository and runs `make demo`, which makes the venv (pip from the machine's index),
builds the rootfs and shows the container; a file the student puts into the rootfs
survives a second `make demo`.

The Debian packages are root's to install (tools/setup-test-env.sh did, as a student's
administrator would): tests/test_mkrootfs.py tests what check-deps.sh does when they
are missing.  This is the suite's one test that builds a venv for a new user (~15 s).
"""

import glob
import os
import pwd
import shutil
import subprocess

import pytest
from conftest import ROOT, drop_subid_lines, give_subid_range

STUDENT = "zoostudent"
pytestmark = pytest.mark.slow


@pytest.fixture
def student():
    """A user made for this test, with an empty home (no venv, no pip cache, no
    ~/.cache/zookeeper), removed afterwards with everything it made."""
    if os.geteuid() != 0:
        pytest.skip("makes a user: run as root (make test does)")
    for tool in ("useradd", "userdel", "setpriv", "git", "make"):
        if shutil.which(tool) is None:
            pytest.skip(f"no {tool}")
    subprocess.run(["userdel", "-r", STUDENT], capture_output=True)  # a failed run's
    subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", STUDENT], check=True)
    added = give_subid_range(STUDENT)
    try:
        yield pwd.getpwnam(STUDENT)
    finally:
        subprocess.run(["userdel", "-r", STUDENT], capture_output=True)
        drop_subid_lines(STUDENT, added)


def as_student(pw, *argv, timeout=600):
    """Run argv as the student, with a login's environment and nothing else."""
    env = {"HOME": pw.pw_dir, "USER": pw.pw_name, "LOGNAME": pw.pw_name, "SHELL": "/bin/sh",
           "PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
    cmd = ["setpriv", f"--reuid={pw.pw_uid}", f"--regid={pw.pw_gid}", "--init-groups", "--",
           *argv]
    return subprocess.run(cmd, env=env, cwd=pw.pw_dir, capture_output=True, text=True,
                          timeout=timeout)


def test_a_new_user_runs_make_demo_from_a_clone(student):
    lab = os.path.join(student.pw_dir, "lab")
    # git refuses a repository another user owns unless told it is safe: the student's
    # own git configuration says so (a student clones from GitHub instead).
    done = as_student(student, "git", "config", "--global", "--add", "safe.directory", "*")
    assert done.returncode == 0, done.stderr
    done = as_student(student, "git", "clone", "-q", str(ROOT), lab)
    assert done.returncode == 0, done.stderr
    assert not os.path.exists(os.path.join(lab, ".venv"))

    # A student's umask of 000 (a shared account's .profile): the venv is made 022 all
    # the same, or another user could add a .pth file to it and run code as them.
    first = as_student(student, "sh", "-c", f"umask 000 && exec make -C {lab} demo")
    out = first.stdout
    assert first.returncode == 0, out + first.stderr
    assert "check-deps: making the venv" in out
    assert "check-deps: installing the packages of requirements.txt" in out
    assert "mkrootfs: unpacked build/zoo-fs.tar into build/zoo-fs" in out
    assert "== in a container: .venv/bin/python3 part6_network/zookeeper.py" in out
    assert "hostname:   zoo" in out and "(I am PID 1)" in out
    assert f"uid map:     0 {student.pw_uid} 1; 1 " in out  # and the subuid range
    assert "seccomp:    NoNewPrivs: 1 Seccomp: 2" in out
    assert "== the container exited with status 0" in out
    venv_python = os.path.join(lab, ".venv", "bin", "python3")
    probe = as_student(student, venv_python, "-c", "import pyroute2, pyseccomp")
    assert probe.returncode == 0, probe.stderr
    # No setuptools (Python 3.11's venv brings it): its .pth file ran at every start.
    site = as_student(student, venv_python, "-c", "import site; print(site.getsitepackages()[0])")
    assert not glob.glob(os.path.join(site.stdout.strip(), "*.pth")), site.stdout
    writable = [os.path.join(top, name) for top, dirs, files in
                os.walk(os.path.join(lab, ".venv")) for name in dirs + files
                if not os.path.islink(os.path.join(top, name))
                and os.lstat(os.path.join(top, name)).st_mode & 0o022]
    assert writable == [], writable[:5]

    # The student changes the rootfs (root/ is root's inside, the student's outside).
    mine = os.path.join(lab, "build", "zoo-fs", "root", "installed-by-me")
    done = as_student(student, "sh", "-c", f"echo cowsay > {mine}")
    assert done.returncode == 0, done.stderr

    second = as_student(student, "make", "-C", lab, "demo")
    assert second.returncode == 0, second.stdout + second.stderr
    assert "making the venv" not in second.stdout  # set up once
    assert "kept as it is, with your changes" in second.stdout
    assert "== the container exited with status 0" in second.stdout
    with open(mine) as f:
        assert f.read() == "cowsay\n"

    # On request only: rootfs-reset unpacks afresh.
    reset = as_student(student, "make", "-C", lab, "rootfs-reset")
    assert reset.returncode == 0, reset.stdout + reset.stderr
    assert not os.path.exists(mine)
