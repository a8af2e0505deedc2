"""programs.py: the one way zookeeper starts a helper program (newuidmap and newgidmap,
busctl, slirp4netns), posix_spawnp(3) without the subprocess module.

The helpers here are sh scripts: what matters is what programs.py hands them (stdin,
stdout and stderr, the environment, descriptors, a session) and what it makes of how
they end.
"""

import errno
import os
import re

import pytest
from conftest import part_modules


@pytest.fixture
def m():
    with part_modules(6, "programs") as modules:
        yield modules


def sh(script: str) -> list[str]:
    return ["sh", "-c", script, "sh"]


def test_run_waits_for_every_helper_side_by_side(m, tmp_path):
    """Both start before either ends: each waits for the other's file."""
    a, b = tmp_path / "a", tmp_path / "b"
    m.programs.run([sh(f"touch {a}; while [ ! -e {b} ]; do sleep 0.01; done"),
                    sh(f"touch {b}; while [ ! -e {a} ]; do sleep 0.01; done")])
    assert a.exists() and b.exists()


def test_run_failure_is_the_last_line_said(m):
    with pytest.raises(OSError) as e:
        m.programs.run([sh("echo first; echo 'newuidmap: write to uid_map failed' >&2; "
                           "exit 1")])
    assert e.value.errno == errno.EPERM
    assert e.value.strerror == "newuidmap: write to uid_map failed"


def test_run_failure_without_a_word_is_its_exit_status(m):
    with pytest.raises(OSError, match=r"^\[Errno 1\] exit status 3$"):
        m.programs.run([sh("exit 3")])


def test_run_reaps_the_others_when_one_fails_to_start(m, monkeypatch):
    """A helper that cannot be started: the one started before it is still waited for."""
    reaped = []
    real_waitpid = os.waitpid

    def waitpid(pid, options):
        reaped.append(pid)
        return real_waitpid(pid, options)

    monkeypatch.setattr(m.programs.os, "waitpid", waitpid)
    with pytest.raises(FileNotFoundError):
        m.programs.run([sh("exit 0"), ["no-such-helper-program"]])
    assert len(reaped) == 1


def test_run_hands_over_env_and_no_stdin(m, tmp_path):
    out = tmp_path / "out"
    m.programs.run([sh(f'echo "$XDG_RUNTIME_DIR" > {out}; cat >> {out}')],
                   env=dict(os.environ, XDG_RUNTIME_DIR="/run/user/4242"))
    assert out.read_text() == "/run/user/4242\n"  # and stdin was /dev/null: cat read nothing


def test_explain_shows_the_command_as_a_shell_takes_it(m, monkeypatch, capfd):
    monkeypatch.setattr(m.kernel, "VERBOSE", True)
    m.programs.run([["sh", "-c", "echo 'o job/7'", "ssa(sv)"]])
    assert re.search(r"^zookeeper: sh -c 'echo 'o job/7'' 'ssa\(sv\)' = o job/7 +sh\(1\) ",
                     capfd.readouterr().err, re.MULTILINE)


def test_require_names_the_package(m, monkeypatch):
    monkeypatch.setenv("PATH", "/nonexistent")
    with pytest.raises(m.errors.ZooError) as e:
        m.programs.require("slirp4netns", "slirp4netns")
    assert e.value.message == ("slirp4netns not found in PATH (/nonexistent): install the "
                               "slirp4netns package (sudo apt-get install slirp4netns), or "
                               "put its directory in PATH")
    monkeypatch.setenv("PATH", "/usr/bin:/bin")
    m.programs.require("sh", "dash")


def test_spawn_keeps_only_the_named_descriptors_in_a_session_of_its_own(m, tmp_path):
    log = os.open(tmp_path / "log", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    kept_read, kept_write = os.pipe()
    other_read, other_write = os.pipe()
    os.set_inheritable(other_write, True)  # as a descriptor our caller left open is
    try:
        pid = m.programs.spawn(sh(f"echo $$ $(cut -d' ' -f6 /proc/$$/stat); "
                                  f"echo kept > /proc/self/fd/{kept_write}; "
                                  f"echo other > /proc/self/fd/{other_write} || echo closed"),
                               log, keep=(kept_write,))
        os.close(kept_write)
        os.close(other_write)
        assert os.read(kept_read, 100) == b"kept\n"
        assert os.read(other_read, 100) == b""  # never handed over: end of file
        assert os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0
        said = (tmp_path / "log").read_text().splitlines()
        assert said[0] == f"{pid} {pid}"  # its session is its own: setsid(2)
        assert said[-1] == "closed"
    finally:
        for fd in (log, kept_read, other_read):
            os.close(fd)


def test_run_hands_over_no_descriptor_of_ours(m, tmp_path):
    caller_read, caller_write = os.pipe()
    os.set_inheritable(caller_write, True)  # left open to zookeeper by its caller
    try:
        m.programs.run([sh(f"echo no > /proc/self/fd/{caller_write} || exit 0; exit 1")])
        os.close(caller_write)
        assert os.read(caller_read, 100) == b""
    finally:
        os.close(caller_read)


def test_spawn_failure_is_one_line(m):
    with pytest.raises(m.errors.ZooError) as e:
        m.programs.spawn(["no-such-helper-program"], 2, keep=())
    assert e.value.message == "failed to start no-such-helper-program: No such file or directory"
