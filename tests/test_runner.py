"""The grader's runner on this host, without a VM: how it runs one command."""

import os
import signal
import sys
import time
import types
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "grader"))

import runner  # noqa: E402


def context(tmp_path, timeout: float) -> "runner.Context":
    args = types.SimpleNamespace(submission=str(tmp_path), user="root", python=sys.executable,
                                 timeout_scale=1.0, scratch=str(tmp_path))
    return runner.Context(args, types.SimpleNamespace(timeout=timeout), [])


def test_output_held_open_after_the_kill_does_not_stall_the_check(tmp_path, monkeypatch):
    """A process outside the command's group (setsid) keeps stdout open: the check goes
    on after the grace, with what came so far."""
    monkeypatch.setattr(runner, "PIPE_GRACE_SECONDS", 1)
    pidfile = tmp_path / "escaped.pid"
    script = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' & echo started; sleep 60"
    started = time.monotonic()
    try:
        r = context(tmp_path, timeout=2).run(["sh", "-c", script],
                                             env={"PATH": os.environ["PATH"]})
        took = time.monotonic() - started
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
    assert r.timed_out and "started" in r.stdout
    assert "reading stopped" in r.stderr
    assert took < 10, took


def test_a_command_that_ends_in_time_is_read_whole(tmp_path):
    r = context(tmp_path, timeout=20).run(["sh", "-c", "echo out; echo err >&2; exit 3"],
                                          env={"PATH": os.environ["PATH"]})
    assert (r.status, r.stdout, r.stderr, r.timed_out) == (3, "out\n", "err\n", False)


def test_a_removed_scratch_directory_is_made_again(tmp_path):
    """A hostile submission empties what it can reach, the scratch directory (the
    user's own) included: the next command and check must still run."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    z = context(tmp_path, timeout=20)
    z.scratch = scratch
    scratch.rmdir()
    r = z.run(["sh", "-c", "pwd"], env={"PATH": os.environ["PATH"]})
    assert r.status == 0 and r.stdout.strip() == str(scratch)
    assert "was gone (removed by the submission?): made again" in z.log[0]
    scratch.rmdir()
    assert runner.restore_scratch(scratch, "root").startswith("the scratch directory")
    assert scratch.is_dir() and runner.restore_scratch(scratch, "root") == ""
