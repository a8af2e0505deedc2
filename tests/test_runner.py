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


# Wait statuses ----------------------------------------------------------------------


def test_every_wait_status_has_a_text():
    def text(status):
        return runner.Run(["zk"], status, "", "", 0.1).status_text

    assert text(3) == "exit status 3"
    assert text(-11) == "death by SIGSEGV (139)"
    assert text(-signal.SIGRTMIN) == "death by SIGRTMIN (162)"
    assert text(-signal.SIGRTMIN - 3) == "death by SIGRTMIN+3 (165)"
    assert text(-signal.SIGRTMAX) == "death by SIGRTMAX (192)"
    assert text(-32) == "death by signal 32 (160)"
    for number in range(1, signal.SIGRTMAX + 1):
        assert text(-number).startswith("death by "), number


def fake_submission(tmp_path, part: int, source: str) -> Path:
    sub = tmp_path / "sub"
    (sub / f"part{part}_fake").mkdir(parents=True)
    (sub / f"part{part}_fake" / "zookeeper.py").write_text(source)
    return sub


def run_checks(tmp_path, sub: Path, only: list[str], monkeypatch) -> list[dict]:
    """runner.run_checks on sub, as this user, for the checks named."""
    import pwd

    # The cleanup kills other containers on the machine: not on a shared host.
    monkeypatch.setattr(runner, "clean_up_after", lambda before, scratch: [])

    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    args = types.SimpleNamespace(
        user=pwd.getpwuid(os.getuid()).pw_name, python=sys.executable, part=None, only=only,
        public=False, submission=str(sub), results=str(tmp_path / "results.json"),
        logs=str(tmp_path / "logs"), scratch=str(scratch), timeout_scale=1.0,
        rootfs_tar=None, progress=False)
    return runner.run_checks(args)


def test_a_container_killed_by_a_real_time_signal_is_a_plain_fail(tmp_path, monkeypatch):
    sub = fake_submission(tmp_path, 1, "import os, signal\n"
                                       "os.kill(os.getpid(), signal.SIGRTMIN + 3)\n")
    [result] = run_checks(tmp_path, sub, ["p1_signal"], monkeypatch)
    assert result["status"] == "fail", result
    assert "death by SIGRTMIN+3 (165)" in result["message"]
