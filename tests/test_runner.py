"""The grader's runner on this host, without a VM: how it runs one command."""

import dataclasses
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import types
from pathlib import Path

import pytest
from conftest import VENV_PYTHON, StandInDaemon

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "grader"))

import report  # noqa: E402
import runner  # noqa: E402
import user_systemd  # noqa: E402


def context(tmp_path, timeout: float, scale: float = 1.0, scratch: Path | None = None,
            user: str = "root", rootfs_tar: Path | None = None) -> "runner.Context":
    args = types.SimpleNamespace(submission=str(tmp_path), user=user, python=sys.executable,
                                 as_root=False,
                                 timeout_scale=scale, scratch=str(scratch or tmp_path),
                                 rootfs_tar=rootfs_tar and str(rootfs_tar),
                                 nosub_user=runner.NOSUB_USER)
    check = types.SimpleNamespace(id="test", timeout=timeout, other_users=False)
    return runner.Context(args, check, [])


# Time limits ------------------------------------------------------------------------


def test_a_command_at_its_time_limit_fails_the_check_whatever_it_printed(tmp_path,
                                                                         monkeypatch):
    monkeypatch.setattr(runner.checks, "COMMAND_SECONDS", 1)
    z = context(tmp_path, timeout=30)
    started = time.monotonic()
    with pytest.raises(runner.CheckFailed) as failed:
        z.host(["sh", "-c", "echo zoo; echo all fine >&2; sleep 60"])
    assert time.monotonic() - started < 5
    assert str(failed.value) == "sh did not exit within 1 s\n    last line on stderr: all fine", (
        str(failed.value), z.log)
    assert "-> a timeout (killed)" in z.log[-1] and "zoo" in z.log[-1]
    r = z.host(["sh", "-c", "echo zoo; sleep 60"], timeout=0.5, may_time_out=True)
    assert r.timed_out and r.stdout == "zoo\n"


def test_a_child_the_command_never_waited_for_is_named_and_reaped(tmp_path):
    """sh forks a child, then execs a program that never waits for it: at that
    program's exit the dead child comes back to the runner (a subreaper).  Run.unreaped
    names it (a zookeeper that left its own child so fails p1_exec_errors); a command
    that waits for its children leaves none, and a child the runner had before is its
    own, never the command's."""
    z = context(tmp_path, timeout=30)
    mine = subprocess.Popen(["sh", "-c", "exit 3"])
    mine_done = time.monotonic() + 5
    while time.monotonic() < mine_done and runner.process_table()[mine.pid].state != "Z":
        time.sleep(0.01)
    r = z.host(["sh", "-c", "/bin/true & exec sleep 0.2"])
    assert len(r.unreaped) == 1 and r.unreaped[0].endswith(" (true)"), r.unreaped
    assert not os.path.exists(f"/proc/{r.unreaped[0].split()[0]}")  # reaped
    assert mine.wait(timeout=5) == 3  # still there for its own parent to wait for
    assert z.host(["sh", "-c", "true & wait"]).unreaped == []
    # One still running when the command ends was not waited for either (a helper
    # sent SIGTERM and left to die: dead a moment later, or not).
    left = z.host(["sh", "-c", "sleep 5 >/dev/null 2>&1 & exec true"]).unreaped
    assert len(left) == 1 and left[0].endswith(" (sleep, still running)"), left
    os.kill(int(left[0].split()[0]), signal.SIGKILL)
    os.waitpid(int(left[0].split()[0]), 0)


def test_a_missing_part_says_where_it_comes_from(tmp_path):
    """A student's walk: 'no part2_*/zookeeper.py in the submission' did not say that a
    part starts as a copy of the one before."""
    commands = context(tmp_path, timeout=30).commands
    for part, said in ((1, "no part1_*/zookeeper.py in the submission (README"),
                       (2, "no part2_*/zookeeper.py in the submission: copy your part1_* "
                        "into part2_ (README: each part starts as a copy of the one before)")):
        with pytest.raises(runner.CheckFailed) as failed:
            commands.part_dir(part)
        assert str(failed.value).startswith(said), str(failed.value)


def test_a_checks_timeout_hint_follows_the_time_limits_message(tmp_path, monkeypatch):
    """A check that knows why zookeeper may hang (p6_helper_gone) says so right after
    the limit, before what the command said."""
    monkeypatch.setattr(runner.checks, "COMMAND_SECONDS", 1)
    commands = context(tmp_path, timeout=30).commands
    with pytest.raises(runner.CheckFailed) as failed:
        commands.run(["sh", "-c", "echo why >&2; sleep 60"], env=commands.env(),
                     what="sh", timeout_hint=": the reason")
    assert str(failed.value) == ("sh did not exit within 1 s: the reason\n"
                                 "    last line on stderr: why"), str(failed.value)


def test_the_limit_is_scaled_and_a_signal_adds_its_wait(tmp_path, monkeypatch):
    monkeypatch.setattr(runner.checks, "COMMAND_SECONDS", 1)
    commands = context(tmp_path, timeout=30).commands
    assert commands.time_limit() == 1 and commands.time_limit(timeout=3) == 3
    assert commands.time_limit(send_signal=("TERM", 2.0)) == 3
    commands = context(tmp_path, timeout=30, scale=6.0).commands
    assert commands.time_limit(timeout=3) == 18
    assert commands.time_limit(timeout=60) <= 30 * 6  # never past the check's own deadline


HANGS_AFTER_A_GOOD_ANSWER = """\
import sys
import tempfile
import time

if sys.argv[1:] == ["hostname"]:
    print("zoo", flush=True)
elif "/proc/self/status" in sys.argv:
    print("CapInh:\\t0\\nCapBnd:\\t0\\nCapAmb:\\t0", flush=True)
if HANG:
    time.sleep(600)  # as a zookeeper that waits for its network helper forever
"""


@pytest.mark.parametrize("hang", [False, True])
def test_checks_that_read_only_output_fail_a_zookeeper_that_never_exits(tmp_path, hang,
                                                                      monkeypatch):
    monkeypatch.setattr(runner.checks, "COMMAND_SECONDS", 1)
    sub = fake_submission(tmp_path, [2, 3], HANGS_AFTER_A_GOOD_ANSWER.replace(
        "HANG", str(hang)))
    started = time.monotonic()
    results = run_checks(tmp_path, sub, ["p2_hostname", "p3_capabilities"])
    if not hang:  # the same answers, returned: they pass
        assert [r.status for r in results] == ["ok", "ok"], results
        return
    assert [r.status for r in results] == ["fail", "fail"], results
    for r in results:
        assert r.message.startswith("zookeeper did not exit within 1 s"), r
    assert time.monotonic() - started < 15


def test_what_a_command_started_is_killed_with_it(tmp_path):
    """A process outside the command's group (setsid) is the command's too: killed
    with it at the time limit, it holds no pipe open."""
    pidfile = tmp_path / "escaped.pid"
    script = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' & echo started; sleep 60"
    r = context(tmp_path, timeout=2).commands.run(["sh", "-c", script],
                                                  env={"PATH": os.environ["PATH"]},
                                                  may_time_out=True)
    assert r.timed_out and "started" in r.stdout and "reading stopped" not in r.stderr
    escaped = int(pidfile.read_text())
    assert not os.path.exists(f"/proc/{escaped}") or runner.process_table()[
        escaped].state == "Z"
    assert r.seconds < 5, r.seconds


def test_output_held_open_after_the_kill_does_not_stall_the_check(tmp_path, monkeypatch):
    """A process the runner cannot find (as if it escaped through a systemd unit)
    keeps stdout open: the check goes on after the grace, with what came so far."""
    monkeypatch.setattr(runner, "PIPE_GRACE_SECONDS", 1)
    monkeypatch.setattr(runner.Leftovers, "ours", lambda self: set())
    pidfile = tmp_path / "escaped.pid"
    script = f"setsid sh -c 'echo $$ > {pidfile}; exec sleep 60' & echo started; sleep 60"
    started = time.monotonic()
    try:
        r = context(tmp_path, timeout=2).commands.run(["sh", "-c", script],
                                                      env={"PATH": os.environ["PATH"]},
                                                      may_time_out=True)
        took = time.monotonic() - started
    finally:
        if pidfile.exists():
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
    assert r.timed_out and "started" in r.stdout
    assert "reading stopped" in r.stderr
    assert took < 10, took


def test_a_command_that_ends_in_time_is_read_whole(tmp_path):
    r = context(tmp_path, timeout=20).commands.run(
        ["sh", "-c", "echo out; echo err >&2; exit 3"], env={"PATH": os.environ["PATH"]})
    assert (r.status, r.stdout, r.stderr, r.timed_out) == (3, "out\n", "err\n", False)


# N seconds in short sleeps: a shell runs its trap once the command in progress ends.
LOOP = "i=0; while [ $i -lt {} ]; do sleep 1; i=$((i+1)); done"


def test_a_signal_goes_once_the_command_says_it_is_ready(tmp_path):
    """send_signal waits for the command's checks.READY line, not its whole delay:
    "late" would be printed 20 s after it, long before the 60 s delay ran out.  What
    it printed before the signal is kept.  A command that never says it gets the
    signal after the delay."""
    env = {"PATH": os.environ["PATH"]}
    z = context(tmp_path, timeout=120)
    r = z.commands.run(["sh", "-c", "trap 'echo got-term; exit 3' TERM; echo before; "
                        f"echo {runner.checks.READY}; {LOOP.format(20)}; echo late; "
                        f"{LOOP.format(60)}"], env=env, send_signal=("TERM", 60))
    assert (r.status, r.stdout) == (3, f"before\n{runner.checks.READY}\ngot-term\n"), r.log()
    r = z.commands.run(["sh", "-c", "trap 'echo got-term; exit 3' TERM; echo never-ready; "
                        f"{LOOP.format(60)}"], env=env, send_signal=("TERM", 0.5))
    assert (r.status, r.stdout) == (3, "never-ready\ngot-term\n"), r.log()


def test_a_removed_scratch_directory_is_made_again(tmp_path):
    """A hostile submission empties what it can reach: as root (a check's command as
    root), the scratch directory too.  The next command and check must still run, in
    the user's working directory made again."""
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    z = context(tmp_path, timeout=20, scratch=scratch)
    scratch.rmdir()
    r = z.commands.run(["sh", "-c", "pwd"], env={"PATH": os.environ["PATH"]})
    assert r.status == 0 and r.stdout.strip() == str(scratch / runner.WORK)
    assert "was gone (removed by the submission?): made again" in z.log[0]
    shutil.rmtree(scratch)
    assert runner.ready_work(scratch, "root").startswith("the scratch directory")
    assert (scratch / runner.WORK).is_dir() and runner.ready_work(scratch, "root") == ""


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


def fake_submission(tmp_path, parts, source: str) -> Path:
    sub = tmp_path / "sub"
    for part in [parts] if isinstance(parts, int) else parts:
        (sub / f"part{part}_fake").mkdir(parents=True)
        (sub / f"part{part}_fake" / "zookeeper.py").write_text(source)
    return sub


def run_checks(tmp_path, sub: Path, only: list[str]) -> list["runner.CheckResult"]:
    """runner.run_checks on sub, as this user, for the checks named."""
    import pwd

    scratch = tmp_path / "scratch"
    scratch.mkdir(exist_ok=True)
    args = types.SimpleNamespace(
        as_root=False, commit=None,
        user=pwd.getpwuid(os.getuid()).pw_name, python=sys.executable,
        part=None, only=only,
        public=False, submission=str(sub), results=str(tmp_path / "results.json"),
        logs=str(tmp_path / "logs"), scratch=str(scratch), timeout_scale=1.0,
        rootfs_tar=None, progress=False, lane_users=[], nosub_user=runner.NOSUB_USER)
    return runner.run_checks(args)


def test_a_container_killed_by_a_real_time_signal_is_a_plain_fail(tmp_path):
    sub = fake_submission(tmp_path, 1, "import os, signal\n"
                                       "os.kill(os.getpid(), signal.SIGRTMIN + 3)\n")
    [result] = run_checks(tmp_path, sub, ["p1_signal"])
    assert result.status == "fail", result
    assert "death by SIGRTMIN+3 (165)" in result.message


# What is ours -----------------------------------------------------------------------


def test_leftovers_and_cleanup_are_only_what_our_commands_made(tmp_path):
    """A command leaves a process that escaped its session, a /tmp/zoo.* of its user,
    and one of another user's (as if another container made it meanwhile): only the
    first two are ours.  A process this test started before the check is not ours."""
    theirs_proc = subprocess.Popen(["sleep", "60"])
    mine = tempfile.mkdtemp(prefix="zoo.", dir="/tmp")
    os.rmdir(mine)  # a name the command makes
    theirs = tempfile.mkdtemp(prefix="zoo.", dir="/tmp")
    os.rmdir(theirs)
    try:
        z = context(tmp_path, timeout=30)
        r = z.host(["sh", "-c", f"setsid sleep 60 >/dev/null 2>&1 & mkdir {mine} {theirs} && "
                                f"chown 65534 {theirs}"])
        assert r.status == 0, r.log()
        assert z.left.temp_dirs(r) == {mine}
        left = z.left.processes(r, "sleep 60")
        assert len(left) == 1 and str(theirs_proc.pid) not in left[0], left
        found = z.close()
        assert f"temporary directory {mine}" in found and any(
            f.startswith("process ") and "sleep 60" in f for f in found), found
        assert not os.path.exists(mine) and os.path.isdir(theirs)
        assert not z.left.processes(r, "sleep 60")
        assert theirs_proc.poll() is None, "killed a process the check did not start"
    finally:
        theirs_proc.kill()
        theirs_proc.wait()
        for path in (mine, theirs):
            if os.path.isdir(path):
                os.rmdir(path)



class UserManager(StandInDaemon):
    """Stands in for the user's systemd (systemd-run --user --unit), starting a process
    when asked (spawn: its pid), as the user's manager would for a command of the
    check's.  What it started counts as in the manager's cgroup."""

    def __init__(self, monkeypatch):
        super().__init__()
        monkeypatch.setattr(runner, "watched_uids", lambda runs: {run.uid for run in runs})
        monkeypatch.setattr(runner, "started_by_user_manager",
                            lambda pid, uids: pid in self.started)

    def spawn(self) -> int:
        return self.run("sleep", "60")


def test_a_process_started_through_the_users_manager_is_killed_and_said(tmp_path, monkeypatch):
    """A command that has the user's systemd start a daemon (systemd-run --user --unit)
    leaves a process outside the runner's tree and sessions: the check's cleanup finds
    it among the user's new processes, kills it and says so (left.escaped).  What the
    manager ran before the check is not the check's."""
    manager = UserManager(monkeypatch)
    try:
        before = manager.spawn()
        z = context(tmp_path, timeout=30)
        r = z.host(["true"])
        assert r.status == 0, r.log()
        escaped = manager.spawn()
        found = z.close()
        assert any(f.startswith(f"escaped process {escaped} ") for f in found), found
        assert [e.split()[0] for e in z.left.escaped] == [str(escaped)], z.left.escaped
        table = runner.process_table()
        assert escaped not in table or table[escaped].state in "ZX", "still running"
        assert before in table and table[before].state not in "ZX", (
            "killed what the manager ran before the check")
    finally:
        manager.close()


def test_a_check_whose_command_escaped_fails(tmp_path, monkeypatch):
    """A check that passed fails when one of its commands left a process running
    through the user's manager: a daemon that outlives the check could repair what
    the next checks look at (rm a /tmp/zoo.*, kill a slirp4netns) or disturb them."""
    manager = UserManager(monkeypatch)

    def fn(z):
        z.host(["true"])
        manager.spawn()

    check = types.SimpleNamespace(id="test", name="test", timeout=30, needs=(), fn=fn,
                                  exercises="", other_users=False)
    try:
        ns = types.SimpleNamespace(submission=str(tmp_path), user="root", python=sys.executable,
                                   as_root=False, timeout_scale=1.0, scratch=str(tmp_path),
                                   rootfs_tar=None, nosub_user=runner.NOSUB_USER)
        machine = types.SimpleNamespace(missing=lambda needs: "")
        status, message, _ = runner.verdict(check, ns, machine, [])
    finally:
        manager.close()
    assert status == "fail", (status, message)
    assert "outside the grader's reach" in message and "sleep 60" in message, message


class FakeSystemd:
    """Stands in for a user's systemd (runner.UserSystemd), any user's: its units (name:
    running) and unit files, which a test changes as a check's command would
    (systemd-run --user --socket-property=..., a unit file in ~/.config/systemd/user),
    and what the cleanup asked of it (calls).  stoppable False: a unit that refuses
    to stop (RefuseManualStop=yes)."""

    def __init__(self, monkeypatch):
        self.name = "student"
        self.units = {"dbus.socket": True, "dbus.service": False, "default.target": True,
                      "old.service": False}
        self.files = {"/home/student/.config/systemd/user": (0o40755, None, None, 1, None)}
        self.environment = {"HOME": "/home/student", "PATH": "/usr/bin:/bin"}
        self.calls: list[tuple] = []
        self.asked = 0
        self.stoppable = True
        self.timer_started: set[str] = set()  # units their timer started meanwhile
        monkeypatch.setattr(runner, "UserSystemd", lambda uid: self)
        monkeypatch.setattr(runner, "watched_uid", lambda uid: True)
        monkeypatch.setattr(runner, "MANAGER_STATES", {})

    def running(self) -> bool:
        return True

    def unit_dirs(self) -> list[str]:
        return []  # its files are the test's, none on disk

    def make_unit_dirs(self) -> None:
        pass

    def started_by_its_timer(self, unit: str, since: int) -> bool:
        return unit in self.timer_started

    def state(self) -> "runner.ManagerState":
        self.asked += 1
        return runner.ManagerState(dict(self.units), dict(self.files), dict(self.environment))

    def undo(self, before, changes) -> None:
        started, stopped, added, changed, environment = changes
        self.calls.append((started, stopped, added, bool(added or changed)))
        for unit in started:
            self.units[unit] = not self.stoppable
        for unit in stopped:
            self.units[unit] = True
        for path in added:
            del self.files[path]
        for name in environment:
            if name in before.environment:
                self.environment[name] = before.environment[name]
            else:
                del self.environment[name]


def grade_one(tmp_path, fn) -> tuple[str, str]:
    """runner.verdict of a check whose commands are fn(z): (status, message)."""
    check = types.SimpleNamespace(id="test", name="test", timeout=30, needs=(), fn=fn,
                                  exercises="", other_users=False)
    ns = types.SimpleNamespace(submission=str(tmp_path), user="root", python=sys.executable,
                               as_root=False, timeout_scale=1.0, scratch=str(tmp_path),
                               rootfs_tar=None, nosub_user=runner.NOSUB_USER)
    machine = types.SimpleNamespace(missing=lambda needs: "")
    status, message, _ = runner.verdict(check, ns, machine, [])
    return status, message


def test_a_unit_left_in_the_users_systemd_is_stopped_and_fails_the_check(tmp_path,
                                                                         monkeypatch):
    """A command that leaves the user's systemd a unit that starts work later (a socket
    unit whose service runs on each connection, a timer, a path unit) has nothing
    running at the check's end, yet a later check's zookeeper could have that work
    repair what it leaves (rm its /tmp/zoo.*, kill its slirp4netns) and exit before
    that check's end (seen in the VM: 6/14 became 14/14).  The cleanup compares the
    manager's units and unit files with the check's before: what the commands started
    is stopped, a unit file they added removed, and the check fails, saying so.  The
    bus starting on its first use is no change; a check that changed nothing passes."""
    fake = FakeSystemd(monkeypatch)
    unit_file = "/home/student/.config/systemd/user/zk-fix.path"

    def leaves_units(z):
        z.host(["true"])
        fake.units.update({"zk-fix.socket": True, "zk-fix.service": False,
                           "dbus.service": True})
        fake.files[unit_file] = (0o100644, 120, 1, 2, None)

    status, message = grade_one(tmp_path, leaves_units)
    assert status == "fail", (status, message)
    assert "changed the user's systemd" in message and "zk-fix.socket" in message, message
    assert f"file {unit_file} (new: removed)" in message and "old.service" not in message, (
        message)
    assert fake.calls == [(["zk-fix.socket"], [], [unit_file], True)], fake.calls
    assert fake.units["zk-fix.socket"] is False and unit_file not in fake.files

    asked = fake.asked
    status, message = grade_one(tmp_path, lambda z: z.host(["true"]))
    assert (status, message) == ("ok", ""), message
    assert len(fake.calls) == 1 and fake.asked == asked + 1, (
        "the next check's before is the first check's: one query a check")


def test_a_unit_that_would_not_stop_fails_every_later_check(tmp_path, monkeypatch):
    """A unit that refuses to be stopped (RefuseManualStop=yes) keeps being found: the
    next check's before is the one before it came.  A unit the commands stopped (the
    bus's socket) is started again, and said."""
    fake = FakeSystemd(monkeypatch)
    fake.stoppable = False

    def leaves_a_timer(z):
        z.host(["true"])
        fake.units.update({"zk-fix.timer": True, "dbus.socket": False})

    status, message = grade_one(tmp_path, leaves_a_timer)
    assert status == "fail" and "zk-fix.timer (started: stopped now)" in message, message
    assert "dbus.socket (stopped: started again)" in message and fake.units["dbus.socket"]
    status, message = grade_one(tmp_path, lambda z: z.host(["true"]))
    assert status == "fail" and "zk-fix.timer" in message and "dbus.socket" not in message, (
        message)


def test_a_unit_of_the_managers_own_on_its_way_is_no_change(tmp_path, monkeypatch):
    """systemd-tmpfiles-clean.timer fires in every user's manager 5 minutes after it
    starts: its oneshot service, activating for a moment at a check's end, failed a
    correct check as "started".  A unit activating or deactivating is not counted as
    running, and a change found is looked at again SETTLE_SECONDS later (review of
    session 20)."""
    manager = runner.UserSystemd(os.getuid())
    listing = ("systemd-tmpfiles-clean.service loaded activating start Cleanup\n"
               "\u25cf zk-fix.service loaded activating auto-restart Repair\n"
               "zk-fix.socket loaded active listening Repair\n"
               "gone.service loaded deactivating stop Gone\n"
               "old.service loaded inactive dead Old\n"
               "busy.service loaded reloading reload Busy\n")
    monkeypatch.setattr(manager, "systemctl", lambda *args: listing)
    assert manager.units() == {"systemd-tmpfiles-clean.service": False, "zk-fix.service": True,
                               "zk-fix.socket": True, "gone.service": False,
                               "old.service": False, "busy.service": True}

    fake = FakeSystemd(monkeypatch)
    monkeypatch.setattr(user_systemd, "SETTLE_SECONDS", 0.01)
    state = fake.state

    def reloading_once(z):
        z.host(["true"])
        fake.units["old.service"] = True  # on the first look after the check only

        def settled():
            fake.units["old.service"] = False
            return state()
        fake.state = lambda: (setattr(fake, "state", settled), state())[1]

    assert grade_one(tmp_path, reloading_once) == ("ok", "")
    assert fake.calls == []


def test_new_services_are_seen_in_the_slices_even_when_gone(tmp_path):
    """NewServices: a service's cgroup made in the manager's slices while watched, gone
    or not, one in a slice made meanwhile too; not a unit's own cgroups (a container's
    in its scope), and not what was there before."""
    root = tmp_path / "user@1000.service"
    (root / "app.slice" / "old.service").mkdir(parents=True)
    (root / "init.scope").mkdir()
    watch = user_systemd.NewServices(1000, root=str(root))
    (root / "app.slice" / "run-u7.service").mkdir()
    (root / "app.slice" / "run-u7.service").rmdir()
    (root / "user.slice" / "zoo-5" / "inside.service").mkdir(parents=True)
    (root / "user.slice" / "janitor.service").mkdir()
    (root / "a.slice" / "a-b.slice" / "_cpu.service").mkdir(parents=True)
    (root / "app.slice" / "zookeeper-9.scope").mkdir()
    assert watch.stop() == {"run-u7.service", "janitor.service", "cpu.service"}


def test_a_program_the_bus_ran_and_reaped_is_seen(tmp_path):
    """D-Bus activation without SystemdService=: the bus's daemon runs the program
    itself, in its own cgroup (no cgroup made), and reaps it.  A bus process that
    reaped a child while watched (here this process, as if in dbus.service) is
    trouble; one that did not is not."""
    bus = tmp_path / "user@1000.service" / "session.slice" / "dbus.service"
    bus.mkdir(parents=True)
    (bus / "cgroup.procs").write_text(f"{os.getpid()}\n")
    root = str(tmp_path / "user@1000.service")
    quiet = user_systemd.NewServices(1000, root=root)
    assert quiet.stop() == set() and quiet.trouble == []
    watch = user_systemd.NewServices(1000, root=root)
    subprocess.run(["true"], check=True)  # a child that ran and was reaped
    assert watch.stop() == set()
    assert watch.trouble == ["a program the session bus ran (D-Bus activation), which "
                             "ended during the check"]


def test_a_socket_units_program_and_lost_events_are_seen(tmp_path):
    """A socket unit's ExecStartPre= runs in the socket's cgroup (run-u9.socket), a
    transient one that failed is gone at the check's end; and the user owns the
    slices: events the kernel dropped are trouble, not silence."""
    root = tmp_path / "user@1000.service"
    (root / "app.slice").mkdir(parents=True)
    watch = user_systemd.NewServices(1000, root=str(root))
    (root / "app.slice" / "run-u9.socket").mkdir()
    (root / "app.slice" / "run-u9.socket").rmdir()
    (root / "app.slice" / "zk.scope").mkdir()
    overflow = user_systemd.INOTIFY_EVENT.pack(-1, user_systemd.IN_Q_OVERFLOW, 0, 0)
    watch.inotify.take_events(overflow + overflow)
    assert watch.stop() == {"run-u9.socket"}
    assert watch.trouble == ["changes in the user's slices or unit directories faster "
                             "than they could be watched (inotify: queue overflow)"]


def test_a_bus_started_with_a_variable_the_manager_lost_is_seen():
    """set-environment LD_PRELOAD=..., the bus restarted, unset-environment: the
    manager's environment is as before, the bus daemon's is not.  What systemd sets
    for each service (and PATH, which it sets when the manager has none) is not
    counted."""
    manager = {"HOME": "/home/student", "SYSTEMD_EXEC_PID": "152", "LANG": "C.UTF-8"}
    bus = {"HOME": "/home/student", "SYSTEMD_EXEC_PID": "181", "LANG": "C",
           "INVOCATION_ID": "8f", "PATH": "/usr/bin", "LD_PRELOAD": "/var/tmp/fix.so"}
    with subprocess.Popen([sys.executable, "-c", "print(flush=True); input()"], env=bus,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL) as daemon:
        try:
            daemon.stdout.readline()  # its environment is the one given: it runs
            assert user_systemd.foreign_variables(daemon.pid, manager) == [
                "LANG", "LD_PRELOAD"]
            assert user_systemd.foreign_variables(daemon.pid, {**bus, "LANG": "C"}) == []
            # A value show-environment quoted ($'...') is the same value.
            assert user_systemd.foreign_variables(
                daemon.pid, {**bus, "LANG": "$'C'", "HOME": "$'/home/student'"}) == []
        finally:
            daemon.kill()


def test_directories_nested_deeper_than_pythons_recursion_are_watched(tmp_path):
    """The user owns its manager's cgroup and its unit directories, and may nest
    slices or directories there as deep as it likes: each is watched all the same
    (the watch once recursed, a level a call: a RecursionError left the watch's
    descriptors open and made every later check a grader error)."""
    root = tmp_path / "user@1000.service"
    units = tmp_path / "home" / ".config" / "systemd" / "user"
    units.mkdir(parents=True)
    deep_slice, deep_dir = root, units
    deep_slice.mkdir()
    for _ in range(480):  # within PATH_MAX (4096); one by one (makedirs recurses too)
        deep_slice = deep_slice / "s.slice"
        deep_slice.mkdir()
    for _ in range(1200):
        deep_dir = deep_dir / "d"
        deep_dir.mkdir()
    try:
        watch = user_systemd.NewServices(1000, root=str(root), unit_dirs=[str(units)])
        (deep_slice / "run-u3.service").mkdir()
        (deep_dir / "zk.conf").write_text("[Service]\n")
        assert watch.stop() == {"run-u3.service"}
        assert watch.trouble == [f"file {deep_dir / 'zk.conf'} (made, changed or removed "
                                 "during the check)"], watch.trouble
    finally:  # from the deepest up: shutil.rmtree, pytest's, recurses
        (deep_slice / "run-u3.service").rmdir()
        (deep_dir / "zk.conf").unlink(missing_ok=True)
        for top, path in ((root, deep_slice), (units, deep_dir)):
            while path != top:
                path.rmdir()
                path = path.parent


def test_more_directories_than_the_watch_limit_are_trouble(tmp_path, monkeypatch):
    """The watches are counted (WATCH_LIMIT, for slices and unit directories alike):
    what is left over once they are used up is not watched, and that is said, not
    taken for a quiet check."""
    monkeypatch.setattr(user_systemd, "WATCH_LIMIT", 4)
    root, units = tmp_path / "user@1000.service", tmp_path / "units"
    for name in ("a.slice", "b.slice", "c.slice", "d.slice"):
        (root / name).mkdir(parents=True)
    (units / "d").mkdir(parents=True)
    watch = user_systemd.NewServices(1000, root=str(root), unit_dirs=[str(units)])
    assert len(watch.inotify.handlers) == 4
    assert watch.stop() == set()
    assert watch.trouble == ["more slices than can be watched (4)",
                             f"more directories than can be watched (4) in {units}"]


def test_a_failure_in_the_watchs_reader_is_said(tmp_path):
    """An event the watch cannot take (a bug, or a name it did not expect) does not end
    its reader thread in silence: the reading goes on, and the failure is said."""
    inotify = user_systemd.Inotify()
    seen = []

    def handler(parent, name, mask):
        seen.append(name)
        if name == "bad":
            raise ValueError("cannot take it")

    assert inotify.watch(str(tmp_path), user_systemd.IN_CREATE, handler) == 0
    inotify.start()
    (tmp_path / "bad").mkdir()
    (tmp_path / "good").mkdir()
    inotify.stop()
    assert seen == ["bad", "good"]
    assert inotify.failed == "ValueError: cannot take it"


def test_a_unit_file_made_and_removed_in_a_check_is_seen(tmp_path):
    """A drop-in that gives a unit loaded before the check (the bus) an ExecStartPre=,
    the manager reloaded, the unit restarted, the drop-in removed and the manager
    reloaded again: no file is new at the end, and the unit's cgroup is no new
    unit's.  A file made, changed or removed in a unit directory while watched is
    trouble, in a directory made meanwhile too (one there when its watch is in
    place); a directory alone (the bus makes its own) is not, nor what is outside
    the unit directories."""
    home, runtime = tmp_path / "home", tmp_path / "run"
    (home / ".config").mkdir(parents=True)
    (runtime / "systemd" / "user").mkdir(parents=True)
    (runtime / "systemd" / "user" / "old.service").write_text("[Service]\n")
    dirs = [str(home / ".config/systemd/user"), str(runtime / "systemd/user"),
            str(runtime / "dbus-1/services")]
    root = tmp_path / "user@1000.service"
    root.mkdir()
    quiet = user_systemd.NewServices(1000, root=str(root), unit_dirs=dirs)
    (runtime / "dbus-1" / "services").mkdir(parents=True)
    (home / ".config" / "other").write_text("x")
    assert quiet.stop() == set() and quiet.trouble == []
    drop_in = runtime / "systemd/user/dbus.service.d/zk.conf"
    drop_in.parent.mkdir()  # an earlier check's: a directory is no change
    watch = user_systemd.NewServices(1000, root=str(root), unit_dirs=dirs)
    drop_in.write_text("[Service]\nExecStartPre=/var/tmp/janitor\n")
    drop_in.unlink()
    (runtime / "systemd" / "user" / "old.service").write_text("[Service]\n")
    new = home / ".config/systemd/user/zk.service"  # its directories made meanwhile
    new.parent.mkdir(parents=True)
    new.write_text("[Service]\n")
    assert watch.stop() == set()
    assert watch.trouble == [f"file {p} (made, changed or removed during the check)" for p in
                             sorted(map(str, (new, drop_in, runtime / "systemd/user/old.service")))]


def test_what_the_bus_unit_sets_itself_is_not_the_managers_loss():
    """A variable the bus's unit sets (Environment=, an administrator's drop-in) is in
    the bus daemon's environment and not in the manager's: not counted."""
    asked = []
    manager = types.SimpleNamespace(systemctl=lambda *args: asked.append(args) or "FOO=1 X=a\n")
    after = runner.ManagerState({"dbus.service": True, "dbus.socket": True}, {}, {})
    env = {"FOO": "1", "LD_PRELOAD": "/var/tmp/fix.so"}
    with subprocess.Popen([sys.executable, "-c", "print(flush=True); input()"], env=env,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL) as daemon:
        try:
            daemon.stdout.readline()
            assert runner.bus_variables(manager, [daemon.pid], {}, after) == ["LD_PRELOAD"]
            assert runner.bus_variables(manager, [daemon.pid], env, after) == []
        finally:
            daemon.kill()
    assert asked == [("show", "--property=Environment", "--value", "--", "dbus.service")]


def test_the_managers_own_configuration_is_watched(tmp_path):
    """~/.config/systemd/user.conf, ManagerEnvironment=LD_PRELOAD=..., then systemctl
    --user daemon-reexec: the submission's code in the manager itself (seen in the
    VM: the manager's /proc/PID/environ held the variable).  The file is one of the
    user's unit files, compared at the check's end and watched meanwhile."""
    home = tmp_path / "home"
    (home / ".config" / "systemd").mkdir(parents=True)
    manager = user_systemd.UserSystemd(os.getuid())
    manager.home, manager.runtime = str(home), str(tmp_path / "run")
    before = manager.files()
    root = tmp_path / "user@1000.service"
    root.mkdir()
    watch = user_systemd.NewServices(1000, root=str(root), unit_dirs=manager.unit_dirs())
    conf = home / ".config/systemd/user.conf"
    conf.write_text("[Manager]\nManagerEnvironment=LD_PRELOAD=/var/tmp/fix.so\n")
    assert user_systemd.manager_changes(runner.ManagerState({}, before, {}), runner.ManagerState(
        {}, manager.files(), {})).added == [str(conf)]
    watch.stop()
    assert watch.trouble == [f"file {conf} (made, changed or removed during the check)"]


def test_only_the_bus_its_manager_started_is_the_bus(monkeypatch):
    """A dbus-daemon that a program the bus ran started (its own configuration: it
    runs programs on request, for later checks) is not the bus: escaped."""
    names = {10: "dbus-daemon", 11: "dbus-daemon", 20: "dbus-broker", 21: "dbus-broker-launch"}
    parents = {10: 1, 11: 10, 20: 21, 21: 1}
    cgroups = {1: "0::/user.slice/user-1000.slice/user@1000.service/init.scope"}
    monkeypatch.setattr(runner, "executable_name", lambda pid: names.get(pid, "python3"))
    monkeypatch.setattr(runner, "parent_of", lambda pid: parents.get(pid, 0))
    monkeypatch.setattr(runner, "cgroup_of", lambda pid: cgroups.get(
        pid, "0::/user.slice/user-1000.slice/user@1000.service/session.slice/dbus.service"))
    monkeypatch.setattr(runner, "real_uid", lambda pid: 1000)
    assert [runner.started_by_user_manager(pid, {1000}) for pid in (10, 11, 20, 21)] == [
        False, True, False, False]


def test_a_service_started_and_ended_in_a_check_fails_it(tmp_path, monkeypatch):
    """A check's command had the user's systemd run a transient service that ended
    before the check did (a janitor, repairing what zookeeper left): the check fails,
    saying so.  So does a service of the manager's own (loaded before) that the check
    started (with a variable set for it alone, XDG_CONFIG_HOME for systemd-tmpfiles,
    and unset again); not one its timer started, nor the bus."""
    fake = FakeSystemd(monkeypatch)
    root = tmp_path / "manager"
    (root / "app.slice").mkdir(parents=True)
    monkeypatch.setattr(runner, "NewServices",
                        lambda uid, **_: user_systemd.NewServices(uid, root=str(root)))

    def service_ran(name):
        def fn(z):
            z.host(["true"])
            (root / "app.slice" / name).mkdir()
            (root / "app.slice" / name).rmdir()
        return fn

    for started in ("run-u3.service", "old.service"):
        status, message = grade_one(tmp_path, service_ran(started))
        assert status == "fail", (status, message)
        assert f"unit {started} (started and ended during the check)" in message, message
    fake.timer_started.add("old.service")
    for manager_own in ("old.service", "dbus.service"):
        assert grade_one(tmp_path, service_ran(manager_own)) == ("ok", "")


@pytest.mark.parametrize("fired,timer_since,expected", [
    ("5.000001s", 1_000_000, True),  # the timer, running before, fired during the check
    ("0", 1_000_000, False),  # never fired: the check started the service
    ("3.5s", 1_000_000, False),  # fired before the check
    ("5s", 4_500_000, False),  # the check restarted the timer, which fired at once
])
def test_a_service_its_timer_started_is_the_managers_own(monkeypatch, fired, timer_since,
                                                          expected):
    """The check began at 4 s (CLOCK_MONOTONIC): the service is its timer's work only
    if the timer fired since, and ran since before."""
    manager = runner.UserSystemd(os.getuid())
    shown = {"zk.service": "TriggeredBy=zk.timer zk.socket\n",
             "zk.timer": f"LastTriggerUSecMonotonic={fired}\n"
                         f"ActiveEnterTimestampMonotonic={timer_since}\n"}
    monkeypatch.setattr(manager, "systemctl", lambda *args: shown[args[-1]])
    assert manager.started_by_its_timer("zk.service", 4_000_000) is expected


def test_a_time_span_as_systemctl_shows_it_is_read():
    """systemctl show prints LastTriggerUSecMonotonic as a time span, not a number
    (systemd 252, seen in the guest: "9.927228s")."""
    for shown, us in (("9.927228s", 9927228), ("0", 0), ("2min 3.5s", 123500000),
                      ("1d 2h", 93600 * 10**6), ("1w 3ms", 7 * 86400 * 10**6 + 3000),
                      ("5us", 5)):
        assert user_systemd.microseconds(shown) == us, shown
    with pytest.raises((KeyError, ValueError)):
        user_systemd.microseconds("infinity")


def test_the_managers_environment_set_in_a_check_is_put_back(tmp_path, monkeypatch):
    """systemctl --user set-environment LD_PRELOAD=... in one check: the next bus daemon
    the manager starts (on a later check's first bus call, after the check killed
    this one) would run the submission's code, and the bus is never counted as a
    change.  The environment is put back as it was, and the check fails."""
    fake = FakeSystemd(monkeypatch)

    def sets_the_environment(z):
        z.host(["true"])
        fake.environment["LD_PRELOAD"] = "/var/tmp/fix.so"
        fake.environment["PATH"] = "/var/tmp:/usr/bin:/bin"

    status, message = grade_one(tmp_path, sets_the_environment)
    assert status == "fail", (status, message)
    for name in ("LD_PRELOAD", "PATH"):
        assert f"environment variable {name} of the manager (set: put back)" in message
    assert fake.environment == {"HOME": "/home/student", "PATH": "/usr/bin:/bin"}
    assert grade_one(tmp_path, lambda z: z.host(["true"])) == ("ok", "")


def test_a_quoted_value_of_the_managers_environment_is_put_back_as_it_was(monkeypatch):
    """show-environment quotes a value with a space or a quote ($'a b'): such a variable,
    changed by a check, was unset only, found again at every later check (each check's
    before is the first's), in --local the next students' too.  It is set again as it
    was."""
    manager = user_systemd.UserSystemd(os.getuid())
    calls = []
    monkeypatch.setattr(manager, "systemctl", lambda *args: calls.append(args) or "")
    before = {"P": "/bin", "ZK_SP": "$'a b'", "ZK_Q": "$'it\\'s\\ny'", "ZK_U": "\u00e9"}
    manager.restore_environment(before, ["NEW", "P", "ZK_Q", "ZK_SP", "ZK_U"])
    assert calls == [("unset-environment", "--", "NEW", "P", "ZK_Q", "ZK_SP", "ZK_U"),
                     ("set-environment", "--", "P=/bin", "ZK_Q=it's\ny", "ZK_SP=a b",
                      "ZK_U=\u00e9")]


def test_the_missing_unit_directories_are_made_before_the_watch(tmp_path, monkeypatch):
    """A file made and removed at once in a unit directory made meanwhile could come
    before the directory's watch: the runner makes the missing ones first (as the
    user), so that each is watched from the check's start; user.conf is a file."""
    manager = runner.UserSystemd(os.getuid())
    monkeypatch.setattr(manager, "home", str(tmp_path / "home"))
    monkeypatch.setattr(manager, "runtime", str(tmp_path / "run"))
    manager.make_unit_dirs()
    for path in manager.unit_dirs():
        assert os.path.isdir(path) != path.endswith("/user.conf"), path
    services = tmp_path / "home" / ".local" / "share" / "dbus-1" / "services"
    watch = user_systemd.NewServices(0, root=str(tmp_path / "cgroup"),
                                     unit_dirs=manager.unit_dirs())
    (services / "org.zk.Fix.service").write_text("[D-BUS Service]\n")
    (services / "org.zk.Fix.service").unlink()
    # A systemd-tmpfiles rule of the user's, applied by the manager's services.
    rule = tmp_path / "home" / ".config" / "user-tmpfiles.d" / "zk.conf"
    rule.write_text("e /tmp - - - 1s\n")
    watch.stop()
    for name in ("org.zk.Fix.service", "user-tmpfiles.d/zk.conf"):
        assert any(f"{name} (made, changed or removed" in said for said in watch.trouble), (
            watch.trouble)
    assert str(rule) in manager.files()  # left, it is found and removed after the check


def test_a_grader_error_stays_one_when_a_unit_is_left(tmp_path, monkeypatch):
    """A unit left (or a process escaped) turned a grader error into the student's fail,
    its message replaced; it is said beside the error now."""
    fake = FakeSystemd(monkeypatch)

    def errs(z):
        z.host(["true"])
        fake.units["zk-fix.timer"] = True
        raise RuntimeError("the grader's own bug")

    status, message = grade_one(tmp_path, errs)
    assert status == "error", (status, message)
    assert "the grader's own bug" in message and "zk-fix.timer" in message, message


def test_a_manager_that_cannot_be_asked_fails_the_check(tmp_path, monkeypatch):
    """A command that keeps the runner from asking the user's systemd (its private
    socket and bus renamed, the manager stopped with SIGSTOP) could hide any unit:
    the check fails."""
    fake = FakeSystemd(monkeypatch)

    def hides_the_manager(z):
        z.host(["true"])

        def unreachable():
            raise runner.ManagerUnreachable("systemctl --user list-units: Connection refused")

        fake.state = unreachable

    status, message = grade_one(tmp_path, hides_the_manager)
    assert status == "fail" and "could not be asked after the check" in message, message


def test_the_users_unit_files_are_found_and_links_followed(tmp_path, monkeypatch):
    """UserSystemd.files: every entry of the user's unit directories, a directory's
    link followed (as the manager follows it) and each directory looked at once; a
    directory's own time is no change."""
    home = tmp_path / "home"
    (home / ".config/systemd").mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (home / ".config/systemd/user").symlink_to(elsewhere)
    (elsewhere / "loop").symlink_to(elsewhere)
    manager = runner.UserSystemd(os.getuid())
    monkeypatch.setattr(manager, "home", str(home))
    monkeypatch.setattr(manager, "runtime", str(tmp_path / "run"))
    before = manager.files()
    assert set(before) == {str(home / ".config/systemd/user"),
                           str(home / ".config/systemd/user/loop")}, before
    (elsewhere / "x.timer").write_text("[Timer]\nOnActiveSec=1\n")
    (tmp_path / "run" / "dbus-1" / "services").mkdir(parents=True)  # the bus's own, empty
    after = manager.files()
    _, _, added, changed, _ = user_systemd.manager_changes(runner.ManagerState({}, before),
                                                           runner.ManagerState({}, after))
    assert added == [str(home / ".config/systemd/user/x.timer")] and changed == [], (
        added, changed)



@pytest.mark.skipif(os.getuid() != 0, reason="only root runs commands as another user")
def test_the_users_commands_get_a_home_of_the_checks_own(tmp_path):
    """Run as another user (the VM's student, --local --user), a check's commands get
    the check's working directory as HOME, emptied after it: what a submission leaves
    in its user's home (a .pth in ~/.local that Python runs at every start, a seccomp
    cache in ~/.cache) never reaches a later check, nor with --local the next student
    graded as that user.  Root's commands keep root's."""
    z = context(tmp_path, timeout=30, user="nobody")
    assert z.env()["HOME"] == str(z.commands.work)
    assert z.commands.env(root=True)["HOME"] == "/root"


# The user without a subordinate range ------------------------------------------------


def test_a_check_as_a_user_without_a_range_needs_one(tmp_path):
    """p2_no_subid_range runs zookeeper as a user in neither /etc/subuid nor
    /etc/subgid (the VM's nosub; here tools/setup-test-env.sh's zoonosub): where
    there is none, or it has a range, the check is not run, with the reason, never
    passed."""
    assert runner.Machine("root", "zoonosub").missing(("nosub_user",)) == (
        "" if os.getuid() == 0 else
        "the check runs zookeeper as another user (zoonosub); run the grader as root")
    said = runner.Machine("root", "zootest").missing(("nosub_user",))
    assert said == "zootest has a range in /etc/subuid: it cannot be the user without one"
    said = runner.Machine("root", "zoo-nobody-here").missing(("nosub_user",))
    assert said.startswith("no user zoo-nobody-here without a subordinate range")
    sub = fake_submission(tmp_path, 2, "print('0')\n")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    args = types.SimpleNamespace(
        as_root=False, commit=None,
        user="root", python=sys.executable, part=None, only=["p2_no_subid_range"],
        public=False, submission=str(sub), results=str(tmp_path / "results.json"),
        logs=str(tmp_path / "logs"), scratch=str(scratch), timeout_scale=1.0,
        rootfs_tar=None, progress=False, lane_users=[], nosub_user="zoo-nobody-here")
    [result] = runner.run_checks(args)
    assert result.status == "not run" and result.score == 0, result
    assert result.message.startswith("no user zoo-nobody-here"), result


# Lanes: checks side by side, each lane as a user of its own ---------------------------


def test_a_check_that_runs_as_root_unannounced_is_a_grader_error(tmp_path, monkeypatch):
    """Only checks declared other_users may run commands as root or another user (the
    runner keeps them in its first lane): any other is the grader's mistake."""

    def as_root(z):
        z.host(["true"], root=True)

    monkeypatch.setattr(runner.checks, "CHECKS", [
        runner.checks.Check(as_root, 1, "as root, unannounced", 1, 10, True, ())])
    [result] = run_checks(tmp_path, fake_submission(tmp_path, 1, ""), None)
    assert result.status == "error" and "not declared other_users=True" in result.message


def test_lanes_need_root_and_alike_users_of_their_own():
    if os.getuid() != 0:
        assert "only root" in runner.lane_users_problem("zootest", ["zootest2"])
        return
    assert runner.lane_users_problem("zootest", []) == ""
    assert runner.lane_users_problem("zootest", ["zootest2"]) == ""
    assert "not root" in runner.lane_users_problem("zootest", ["root"])
    assert "of its own" in runner.lane_users_problem("zootest", ["zootest"])
    said = runner.lane_users_problem("zootest", ["zoonosub"])
    assert "(zootest: ranges, zoonosub: none)" in said, said


def test_a_lane_whose_runner_dies_gives_up_after_its_restarts(tmp_path, monkeypatch):
    """A lane's runner that dies during a check makes that check a grader error; it
    is started again twice, then (or at once after a death by a signal, a Ctrl-C)
    the lane takes no more checks."""
    def dies(how):
        code = f"import os, sys; sys.stdin.readline(); {how}"
        return lambda self: subprocess.Popen([sys.executable, "-c", code], text=True,
                                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)

    args = types.SimpleNamespace(
        as_root=False, python="python3", submission="sub", results="results.json", logs="logs",
        nosub_user="nosub", timeout_scale=1.0, rootfs_tar=None)
    check = runner.checks.CHECKS[0]
    monkeypatch.setattr(runner.Lane, "start", dies("sys.exit(3)"))
    with runner.Lane(args, "zootest") as lane:
        assert "--submission" in lane.argv and os.path.abspath("sub") in lane.argv
        said = [lane.run(check) for _ in range(3)]
        assert [r.status for r in said] == ["error"] * 3 and lane.gave_up
        assert said[0].message == ("grader error: the runner of zootest's lane ended "
                                   "during the check (3)")
    monkeypatch.setattr(runner.Lane, "start", dies("os.kill(os.getpid(), 9)"))
    with runner.Lane(args, "zootest") as lane:
        assert lane.run(check).status == "error" and lane.gave_up


FORKS_UNTIL_REFUSED = """
import os, signal, sys, time
children = []
for _ in range(int(sys.argv[1])):
    try:
        pid = os.fork()
    except BlockingIOError:  # EAGAIN: the limit
        break
    if pid == 0:
        time.sleep(30)
        os._exit(0)
    children.append(pid)
print(len(children))
for pid in children:
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
"""


@pytest.mark.skipif(os.getuid() != 0, reason="lanes run checks as other users: root only")
def test_a_lanes_user_cannot_take_the_processes_the_other_lane_needs(tmp_path):
    """A fork bomb in one lane once filled the guest job's pids.max, and the other
    lane's runner could not start its next command (fork: EAGAIN, a grader error).
    A lane's runner limits its users' processes; its own forks as root are not.
    (The user runs the shared venv's Python: this one may be under /root.)"""
    code = f"""
import os, subprocess, sys
sys.path.insert(0, {str(ROOT / "grader")!r})
import runner
runner.limit_processes(20)
user = runner.User("zootest")
for argv in ([{VENV_PYTHON!r}, "-c", {FORKS_UNTIL_REFUSED!r}, "60"],
             ["unshare", "-Ur", {VENV_PYTHON!r}, "-c", {FORKS_UNTIL_REFUSED!r}, "60"]):
    print(subprocess.run(argv, capture_output=True, text=True, cwd="/",
                         **user.popen_ids()).stdout.strip(), flush=True)
kids = [pid for pid in (os.fork() for _ in range(40)) if pid or os._exit(0)]
print(len(kids))
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0 and len(done.stdout.split()) == 3, done
    made, made_in_a_container, roots = (int(n) for n in done.stdout.split())
    assert 10 < made < 20 and 10 < made_in_a_container < 20, done
    assert roots == 40
    assert runner.processes_allowed() <= int(Path("/proc/sys/kernel/threads-max").read_text())


@pytest.mark.skipif(os.getuid() != 0, reason="lanes run checks as other users: root only")
def test_a_user_at_its_process_limit_fails_the_check_not_the_grader(tmp_path):
    """Processes the submission left where the runner does not reach (the user's own
    systemd, say) can hold the lane's user at its limit: the next command as that
    user cannot start (execve: EAGAIN).  The submission's doing: a fail, not a
    grader error."""
    os.chmod(tmp_path, 0o755)
    code = f"""
import subprocess, sys, types
sys.path.insert(0, {str(ROOT / "grader")!r})
import runner
runner.limit_processes(3)
user = runner.User("zootest")
held = []
try:
    for _ in range(6):
        held.append(subprocess.Popen(["sleep", "30"], **user.popen_ids()))
except BlockingIOError:
    pass
args = types.SimpleNamespace(submission={str(tmp_path)!r}, user="zootest", as_root=False,
                             python=sys.executable, timeout_scale=1.0,
                             scratch={str(tmp_path)!r}, rootfs_tar=None,
                             nosub_user=runner.NOSUB_USER)
check = types.SimpleNamespace(id="test", timeout=30, other_users=False)
try:
    runner.Context(args, check, []).host(["true"])
    print("started")
except runner.CheckFailed as e:
    print(e)
finally:
    for p in held:
        p.kill()
        p.wait()
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert done.stdout == ("could not start true as zootest: zootest already has as many "
                           "processes as it may (RLIMIT_NPROC), left by earlier commands\n"), done


def test_links_are_only_roots_runs(tmp_path, monkeypatch):
    """Only root makes links on the host: a zoo0 that appears while another lane's
    user ran a command is root's (the first lane's root veth check), not its."""
    z = context(tmp_path, timeout=30)
    r = z.host(["true"])
    monkeypatch.setattr(runner, "zoo_links", lambda: {"zoo0"})
    assert z.left.links(dataclasses.replace(r, uid=1000)) == set()
    assert z.left.links(dataclasses.replace(r, uid=0)) == {"zoo0"}


@pytest.mark.skipif(os.getuid() != 0, reason="lanes run checks as other users: root only")
def test_lanes_run_checks_side_by_side_each_as_its_own_user(tmp_path):
    """Two lanes (zootest, zootest2: tools/setup-test-env.sh) grade the references'
    part 1 and 2 checks: every check passes, the results come in the checks' order,
    the second lane ran checks as its user, and the check that runs zookeeper as
    another user (other_users) ran in the first lane only."""
    only = ["p1_exit_status", "p1_signal", "p1_exec_errors", "p1_no_leftovers",
            "p2_no_subid_range", "p2_hostname"]
    for scratch in ("a", "b"):
        (tmp_path / scratch).mkdir()
    args = types.SimpleNamespace(
        as_root=False, commit=None,
        user="zootest", lane_users=["zootest2"],
        python="/opt/zookeeper-venv/bin/python",
        part=None, only=only, public=False, submission=str(ROOT),
        results=str(tmp_path / "results.json"), logs=str(tmp_path / "logs"),
        timeout_scale=1.0, rootfs_tar=None, progress=False, nosub_user="zoonosub")
    results = runner.run_checks(args)
    assert [(r.id, r.status) for r in results] == [
        (c.id, "ok") for c in runner.checks.selected(only=only)], results
    assert [r.to_dict() for r in report.read_results(args.results)] == [
        r.to_dict() for r in results]
    logs = {r.id: Path(r.log).read_text() for r in results}
    assert any("\nzootest2$ " in log for log in logs.values()), logs
    assert "\nzoonosub$ " in logs["p2_no_subid_range"]
    assert "zootest2" not in logs["p2_no_subid_range"]


# The grader's own file work, in a child as the user -----------------------------------


def tree(top: Path) -> list[tuple]:
    """Each entry under top: its name, type, mode, owner, time (top's own left out:
    made when it was), link target and contents."""
    found = []
    for path in sorted(top.rglob("*")):
        st = path.lstat()
        found.append((str(path.relative_to(top)), st.st_mode, st.st_uid, st.st_gid,
                      st.st_mtime, os.readlink(path) if path.is_symlink() else None,
                      path.read_bytes() if path.is_file() and not path.is_symlink() else None))
    return found


@pytest.mark.skipif(os.getuid() != 0, reason="unpacks as another user: root only")
def test_a_rootfs_is_unpacked_by_its_user_as_tar_would(rootfs_tar):
    """Fixtures.rootfs unpacks in a child of the runner, as the check's user, without
    tar: the same entries, modes, times and contents as `tar -x -p --no-same-owner`
    run by that user, and owned by the user."""
    base = Path(tempfile.mkdtemp(prefix="zk-unpack-"))  # pytest's is root's only
    base.chmod(0o755)
    try:
        unpacked_by_user_and_tar(base, rootfs_tar)
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=True)


def unpacked_by_user_and_tar(tmp_path: Path, rootfs_tar: Path) -> None:
    scratch = runner.prepare_scratch("zootest")
    try:
        z = context(tmp_path, timeout=30, scratch=scratch, user="zootest",
                    rootfs_tar=rootfs_tar)
        made = z.rootfs()
        by_tar = z.commands.work / "by-tar"
        done = z.host(["sh", "-c", f"mkdir {by_tar} && umask 0 && "
                                   f"tar -x -p --no-same-owner -f {rootfs_tar} -C {by_tar}"])
        assert done.status == 0, done.stderr
        user = runner.User("zootest")
        assert (made.stat().st_uid, made.stat().st_mode & 0o7777) == (user.uid, 0o755)
        ours, tars = tree(made), tree(by_tar)
        assert len(ours) > 200 and ours == tars
        assert {entry[2] for entry in ours} == {user.uid}
        assert "zootest$ tar -x -p --no-same-owner" in z.log[0]
    finally:
        runner.remove_scratch(scratch)


@pytest.mark.skipif(os.getuid() != 0, reason="runs as other users: root only")
def test_another_user_cannot_reach_a_checks_rootfs(rootfs_tar):
    """The rootfs's var/tmp is 1777, as in the course's archive: were the rootfs
    reachable from /tmp, another user of the machine could write in it while a check
    runs (plant /var/tmp/tmp/zoo-grader-X/zoo-host-marker, and p4_pivot_root fails a
    good submission).  Only the container's root gets through to it."""
    scratch = runner.prepare_scratch("zootest")
    try:
        z = context(ROOT, timeout=30, scratch=scratch, user="zootest", rootfs_tar=rootfs_tar)
        z.commands.python = VENV_PYTHON  # the user's: this one may be out of its reach
        fs = z.rootfs()
        assert (fs / "var" / "tmp").stat().st_mode & 0o1777 == 0o1777
        as_nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        planted = subprocess.run(as_nobody + ["mkdir", str(fs / "var" / "tmp" / "planted")],
                                 capture_output=True, text=True)
        assert planted.returncode != 0 and not (fs / "var" / "tmp" / "planted").exists()
        assert "Permission denied" in planted.stderr
        done = z.zk(4, "-r", str(fs), "sh", "-c", "echo hi > /var/tmp/mine && cat /var/tmp/mine")
        assert done.status == 0 and done.stdout == "hi\n", done.stderr
    finally:
        runner.remove_scratch(scratch)


@pytest.mark.skipif(os.getuid() != 0, reason="unpacks as root into a user's directory")
def test_root_unpacks_nothing_through_a_link_the_user_put_in_its_place(tmp_path,
                                                                        rootfs_tar):
    """A link where root's rootfs is to go (to /etc, say) is removed, not followed:
    the rootfs is unpacked in a directory of its own, nothing where the link led."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dest = tmp_path / "zoo-fs-root-1"
    dest.symlink_to(elsewhere)
    z = context(tmp_path, timeout=30)
    run = z.call(["tar"], runner.unpack, str(rootfs_tar), str(dest))
    assert run.status == 0, run.stderr
    assert list(elsewhere.iterdir()) == [] and not dest.is_symlink() and dest.is_dir()
    # A directory there, the user's with a link inside: removed, not followed.
    shutil.rmtree(dest)
    dest.mkdir()
    (dest / "bin").symlink_to(elsewhere)
    os.chown(dest, 1001, 1001)
    run = z.call(["tar"], runner.unpack, str(rootfs_tar), str(dest))
    assert run.status == 0, run.stderr
    assert list(elsewhere.iterdir()) == [] and dest.stat().st_uid == 0
    assert (dest / "bin").is_dir() and not (dest / "bin").is_symlink()


@pytest.mark.skipif(os.getuid() != 0, reason="unpacks as root")
def test_an_unpack_refuses_a_directory_swapped_in_after_it_was_made(tmp_path, rootfs_tar,
                                                                     monkeypatch):
    """Between unpack's mkdir and its open, the user can put something else in dest's
    place: a link to elsewhere, or a directory of its own.  Both are refused, with
    nothing written where they lead."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    dest = tmp_path / "zoo-fs-root-1"
    real_mkdir = os.mkdir
    for swap in ("link", "directory"):
        def mkdir_then_swap(path, *args, swap=swap, **kwargs):
            real_mkdir(path, *args, **kwargs)
            if str(path) == str(dest):
                os.rename(dest, tmp_path / f"moved-{swap}")
                if swap == "link":
                    dest.symlink_to(elsewhere)
                else:
                    real_mkdir(dest)
                    os.chown(dest, 1001, 1001)

        monkeypatch.setattr(runner.os, "mkdir", mkdir_then_swap)
        with pytest.raises(OSError):
            runner.unpack(str(rootfs_tar), str(dest))
        monkeypatch.setattr(runner.os, "mkdir", real_mkdir)
        assert list(elsewhere.iterdir()) == [] and not any(dest.iterdir() if swap ==
                                                           "directory" else [])
        if dest.is_symlink():
            dest.unlink()
        else:
            dest.rmdir()


@pytest.mark.skipif(os.getuid() != 0, reason="runs as another user")
def test_a_call_cannot_be_stopped_by_the_users_processes(tmp_path):
    """The child makes files as the user, but keeps root as its real and saved uid:
    a process of the user's cannot signal it (SIGSTOP would hang the runner)."""
    base = Path(tempfile.mkdtemp(prefix="zk-call-"))
    base.chmod(0o755)
    try:
        scratch = base / "scratch"
        scratch.mkdir()
        runner.ready_work(scratch, "zootest")
        z = context(base, timeout=30, scratch=scratch, user="zootest")
        scratch = z.commands.work  # the user's, where the call makes files
        pid_file = scratch / "pid"
        tried = []

        def work():
            pid_file.write_text(str(os.getpid()))
            (scratch / "made").write_text("")
            time.sleep(2)

        def stop_it():
            while not pid_file.exists() or not pid_file.read_text():
                time.sleep(0.01)
            tried.append(subprocess.run(["runuser", "-u", "zootest", "--", "kill", "-STOP",
                                         pid_file.read_text()], capture_output=True, text=True))

        stopper = threading.Thread(target=stop_it)
        stopper.start()
        run = z.call(["touch", "made"], work)
        stopper.join()
        assert run.status == 0 and not run.timed_out, run
        assert tried[0].returncode != 0 and "not permitted" in tried[0].stderr, tried
        assert (scratch / "made").stat().st_uid == runner.User("zootest").uid
    finally:
        subprocess.run(["rm", "-rf", str(base)], check=True)


def test_a_call_that_does_not_end_is_killed_at_its_limit(tmp_path):
    z = context(tmp_path, timeout=1)
    started = time.monotonic()
    run = z.call(["sleep", "30"], time.sleep, 30)
    assert run.timed_out and run.status == -signal.SIGKILL
    assert time.monotonic() - started < 10


def test_mount_points_become_links_and_directories_again_in_the_rootfs_only(tmp_path):
    """replace_by_link and restore_directory work in the rootfs by its descriptor: a
    link put in the rootfs's place (its directory is the user's) is not followed."""
    import checks

    z = context(tmp_path, timeout=30)
    fs = tmp_path / "fs"
    (fs / "tmp").mkdir(parents=True)
    (fs / "tmp" / "left").write_text("")
    checks.replace_by_link(z, fs, "tmp", "/", root=False)
    assert os.readlink(fs / "tmp") == "/" and Path("/etc/passwd").exists()
    checks.restore_directory(z, fs, "tmp", 0o1777, root=False)
    assert (fs / "tmp").is_dir() and (fs / "tmp").stat().st_mode & 0o7777 == 0o1777
    assert list((fs / "tmp").iterdir()) == []
    # The rootfs swapped for a link to a directory whose tmp leads to a secret file.
    secret = tmp_path / "secret"
    secret.write_text("")
    secret.chmod(0o600)
    (tmp_path / "decoy").mkdir()
    (tmp_path / "decoy" / "tmp").symlink_to(secret)
    fs.rename(tmp_path / "fs-moved")
    fs.symlink_to(tmp_path / "decoy")
    with pytest.raises(RuntimeError, match="a directory again"):
        checks.restore_directory(z, fs, "tmp", 0o1777, root=False)
    with pytest.raises(RuntimeError, match="a link"):
        checks.replace_by_link(z, fs, "tmp", "/", root=False)
    assert secret.stat().st_mode & 0o7777 == 0o600
    assert (tmp_path / "decoy" / "tmp").is_symlink()


def test_a_call_says_what_went_wrong_in_its_child(tmp_path):
    z = context(tmp_path, timeout=30)

    def fails():
        os.mkdir(tmp_path / "missing" / "deeper")

    run = z.call(["mkdir", "deeper"], fails)
    assert run.status == 1 and "No such file or directory" in run.stderr
    run = z.call(["true"], lambda: None)
    assert run.status == 0 and run.stderr == ""
    run = z.call(["oops"], lambda: 1 / 0)
    assert run.status == 1 and run.stderr == "grader error: ZeroDivisionError('division by zero')"


# What root does in the scratch directory, where the user's commands write -------------
#
# These run against the old runner too (they use only what it had): there, each one
# fails, as the reviewer's runs did (D7a, D7b, D10).

ROOT_ONLY = pytest.mark.skipif(os.getuid() != 0, reason="runs commands as another user")


def user_checks(tmp_path, monkeypatch, *fns, other_users=False) -> tuple:
    """runner.run_checks of checks made of fns (check functions), as zootest in a
    scratch directory of the runner's own making; returns (results, args)."""
    monkeypatch.setattr(runner.checks, "CHECKS", [
        runner.checks.Check(fn, 1, fn.__name__, 1, 30, True, (), other_users=other_users)
        for fn in fns])
    os.chmod(tmp_path, 0o755)
    args = types.SimpleNamespace(
        as_root=False, commit=None,
        user="zootest", python=VENV_PYTHON, part=None, only=None, public=False,
        submission=str(tmp_path), results=str(tmp_path / "results.json"),
        logs=str(tmp_path / "logs"), scratch=str(runner.prepare_scratch("zootest")),
        timeout_scale=1.0, rootfs_tar=None, progress=False, lane_users=[],
        nosub_user=runner.NOSUB_USER)
    first = args.scratch
    try:
        return runner.run_checks(args), args
    finally:  # the scratch directories: the first, what was made of it, the last
        subprocess.run(["rm", "-rf", first, first + ".moved", args.scratch], check=False)


def victim(tmp_path) -> Path:
    """A directory of root's with a file in it: what a planted link leads to."""
    path = tmp_path / "victim"
    path.mkdir()
    (path / "kept").write_text("root's\n")
    (path / "kept").chmod(0o600)
    return path


def passes(z):
    r = z.host(["sh", "-c", "touch made-here && echo fine"])
    z.expect(r.status == 0 and r.stdout == "fine\n", f"could not run: {r.log()}", r)


@ROOT_ONLY
def test_a_plain_file_is_not_written_through_a_link_the_user_planted(tmp_path):
    """D7a: the user's command puts not-executable, a link to a file only root may
    read, in its working directory; then the check asks for a plain file.  Root
    writes a new file of its own, never through the link: the file it leads to keeps
    its contents and mode."""
    secret = tmp_path / "secret"
    secret.write_text("root only\n")
    secret.chmod(0o600)
    scratch = runner.prepare_scratch("zootest")
    try:
        z = context(tmp_path, timeout=30, scratch=scratch, user="zootest")
        planted = z.host(["ln", "-s", str(secret), "not-executable"])
        assert planted.status == 0, planted.log()
        plain = Path(z.plain_file())
        assert secret.read_text() == "root only\n" and secret.stat().st_mode & 0o7777 == 0o600
        assert not plain.is_symlink() and plain.read_text() == "just data\n"
        assert (plain.stat().st_uid, plain.stat().st_mode & 0o7777) == (0, 0o644)
        # The user cannot put one where root makes it, and can run what root made.
        r = z.host(["sh", "-c", f"ln -s {secret} {plain}.2 || exit 7; cat {plain}"])
        assert r.status == 7 and "Permission denied" in r.stderr, r.log()
    finally:
        subprocess.run(["rm", "-rf", str(scratch)], check=True)


def test_a_log_is_not_written_through_a_link_put_in_its_place(tmp_path, monkeypatch):
    """--local as root may write its logs where the user can write (--out in the
    user's home): a link there under a check's log's name is replaced, not followed."""
    secret = tmp_path / "secret"
    secret.write_text("root only\n")
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "passes.log").symlink_to(secret)
    monkeypatch.setattr(runner.checks, "CHECKS", [
        runner.checks.Check(passes, 1, "passes", 1, 30, True, ())])
    [result] = run_checks(tmp_path, fake_submission(tmp_path, 1, ""), None)
    assert result.status == "ok" and secret.read_text() == "root only\n"
    log = Path(result.log)
    assert not log.is_symlink() and log.read_text().startswith("== part1: passes == OK")


SWAP = """for d in "$PWD" "$(dirname "$PWD")"; do
    [ "$d" = /tmp ] && continue
    mv "$d" "$d.moved" && ln -s {target} "$d" && echo "swapped $d"
done
true"""


@ROOT_ONLY
def test_the_user_cannot_swap_its_scratch_directory_for_a_link(tmp_path, monkeypatch):
    """D7b: the user's command renames its working directory (and the directory above
    it) away and puts a link to a directory of root's under the old name.  It cannot:
    root's cleanup removes nothing where the link would lead, and the next check runs
    as usual."""
    target = victim(tmp_path)

    def swaps_its_scratch(z):
        r = z.host(["sh", "-c", SWAP.format(target=target)])
        z.expect("swapped" not in r.stdout, "the user swapped a directory of the grader's")

    results, _ = user_checks(tmp_path, monkeypatch, swaps_its_scratch, passes)
    assert (target / "kept").read_text() == "root's\n"
    assert [(r.id, r.status) for r in results] == [("swaps_its_scratch", "ok"),
                                                   ("passes", "ok")], results


@ROOT_ONLY
@pytest.mark.parametrize("where", ["victim", "nowhere"])
def test_a_scratch_directory_replaced_by_root_fails_its_check_and_the_lane_goes_on(
        tmp_path, monkeypatch, where):
    """A command of the submission's run as root (a check with other_users) replaces
    the scratch directory by a link: to a directory of root's, or to nothing (the old
    runner died making it again: FileExistsError).  Root's cleanup follows no link;
    that check fails, saying why, and the next checks run in a new scratch directory,
    never a grader error."""
    target = victim(tmp_path) if where == "victim" else tmp_path / "nowhere"

    def replaces_the_scratch(z):
        scratch = z.scratch
        r = z.host(["sh", "-c", f"mv {scratch} {scratch}.moved && ln -s {target} {scratch}"],
                   root=True)
        z.expect(r.status == 0, "could not replace it", r)

    results, args = user_checks(tmp_path, monkeypatch, replaces_the_scratch, passes, passes,
                                other_users=True)
    if where == "victim":
        assert sorted(os.listdir(target)) == ["kept"]
    assert [r.status for r in results] == ["fail", "ok", "ok"], results
    assert results[0].message.startswith(
        "the submission interfered with the grader's scratch directory: "), results[0]
    assert "new scratch directory" in Path(results[0].log).read_text()


@ROOT_ONLY
def test_a_chmod_of_the_users_working_directory_stops_no_later_command(tmp_path,
                                                                         monkeypatch):
    """The user owns its working directory and may take its mode away: its next
    commands, in that check and the next ones, would run where they can neither read
    nor write (the old runner failed the next check for it).  Its mode is put back
    before each command."""
    def takes_its_mode_away(z):
        z.host(["chmod", "000", "."])
        passes(z)

    def takes_it_away_last(z):
        z.host(["chmod", "000", "."])

    results, _ = user_checks(tmp_path, monkeypatch, takes_its_mode_away,
                             takes_it_away_last, passes)
    assert [r.status for r in results] == ["ok", "ok", "ok"], results
    assert "had the mode 0000: 0755 again" in Path(results[0].log).read_text()


@ROOT_ONLY
def test_whatever_the_cleanup_meets_fails_the_check_not_the_lane(tmp_path, monkeypatch):
    """A cleanup that fails all the same (the old runner's PermissionError at a link in
    /tmp under fs.protected_symlinks=1 killed a guest's lane, and made every later
    check of it a grader error) fails the check at hand, and the lane goes on."""
    def refused(*args):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(runner, "empty_scratch", refused)
    results, _ = user_checks(tmp_path, monkeypatch, passes, passes)
    assert [r.status for r in results] == ["fail", "fail"], results
    assert "interfered with the grader's scratch directory" in results[0].message


# What a check keeps of what a command printed ----------------------------------------


def test_a_message_quotes_a_few_hundred_characters_of_a_long_line():
    run = runner.Run(["zk"], 1, "", "zookeeper: " + "x" * 1_000_000 + "\n", 0.1)
    with pytest.raises(runner.CheckFailed) as failed:
        runner.expect(False, "it failed", run)
    said = str(failed.value)
    assert said.startswith("it failed\n    zookeeper said: zookeeper: xxx") and len(said) < 500, (
        len(said))
    assert said.endswith(" more characters)")


@pytest.mark.parametrize("stderr, quoted", [
    ("zookeeper: failed to clone: Operation not permitted\n",
     ["zookeeper said: zookeeper: failed to clone: Operation not permitted"]),
    # busybox time's report (p5_cpu), the command's own: not zookeeper's words.
    ("real\t0m 4.00s\nuser\t0m 3.99s\nsys\t0m 0.00s\n", ["last line on stderr: sys\t0m 0.00s"]),
    ("sh: ip: not found\n", ["last line on stderr: sh: ip: not found"]),
    # zookeeper's note, then the command's error: each as what it is.
    ("zookeeper: note: -r is ignored before part 4\ncat: /x: No such file or directory\n",
     ["zookeeper said: zookeeper: note: -r is ignored before part 4",
      "last line on stderr: cat: /x: No such file or directory"]),
    # Its failure, not what its cleanup said after it (a q19 not written yet).
    ("zookeeper: failed to write cpu.max: Invalid argument\n"
     "zookeeper: cleanup: q19 (part 5) is not implemented yet: remove the cgroup\n",
     ["zookeeper said: zookeeper: failed to write cpu.max: Invalid argument"]),
    # A crash of zookeeper's own (q7's helpers run outside a step): said as one.
    ("Traceback (most recent call last):\n  File \"/lab/part2_namespaces/zookeeper.py\", line "
     "34, in <module>\n    container.main(sys.argv[1:])\nPermissionError: [Errno 1] "
     "newuidmap: write to uid_map failed\n",
     ["zookeeper crashed with a Python exception: PermissionError: [Errno 1] newuidmap: write "
      "to uid_map failed (an expected failure is one line: is a system call outside its "
      "`with step(...)`?)"]),
])
def test_only_zookeepers_own_lines_are_quoted_as_zookeeper_said(stderr, quoted):
    with pytest.raises(runner.CheckFailed) as failed:
        runner.expect(False, "it failed", runner.Run(["zk"], 1, "", stderr, 0.1))
    assert str(failed.value).split("\n")[1:] == [f"    {line}" for line in quoted], (
        str(failed.value))


LOUD = """import sys
sys.stderr.write("zookeeper: " + "y" * 200_000 + "\\n")
sys.exit(1)
"""


def test_a_checks_message_and_log_are_bounded(tmp_path, monkeypatch):
    """D10: a command's 200 KB line on stderr, and a check's 10 MB message, become a
    message of a few KB (and say how much more there was): results.json stays small.
    The command's whole line stays in the check's log, the 10 MB do not."""
    def quotes_a_long_line(z):
        r = z.zk(1, "true")
        z.expect(r.status == 0, "zookeeper failed", r)

    def says_too_much(z):
        z.expect(False, "z" * 10_000_000)

    monkeypatch.setattr(runner.checks, "CHECKS", [
        runner.checks.Check(quotes_a_long_line, 1, "long line", 1, 30, True, ()),
        runner.checks.Check(says_too_much, 1, "long message", 1, 30, True, ())])
    sub = fake_submission(tmp_path, 1, LOUD)
    results = run_checks(tmp_path, sub, None)
    assert [r.status for r in results] == ["fail", "fail"], results
    line, message = results[0].message, results[1].message
    assert len(line) < 500 and line.endswith(" more characters)"), line[-200:]
    assert len(message) < 4000 and message.endswith(" more characters)"), len(message)
    assert (tmp_path / "results.json").stat().st_size < 20_000
    assert "zookeeper: " + "y" * 200_000 + "\n" in Path(results[0].log).read_text()
    assert Path(results[1].log).stat().st_size < 5_000_000


# Hidden checks run after every public one -------------------------------------------
# A public check's output is the student's at once (its message quotes what zookeeper
# printed last, Gradescope shows its log's end): a zookeeper that records how it is
# called would show the hidden checks' command lines there, if any ran before.


def order_checks(monkeypatch) -> list:
    """Public and hidden checks mixed, the hidden ones first in the list and the
    longest limits: the order the runner was given is the one to change."""
    def check(name, public, timeout, other_users=False):
        fn = types.FunctionType((lambda z: None).__code__, {}, name)
        return runner.checks.Check(fn, 1, name, 1, timeout, public, (),
                                   other_users=other_users)

    fake = [check("hidden_long", False, 180), check("public_a", True, 60),
            check("hidden_short", False, 10), check("public_b", True, 60),
            check("public_c", True, 5), check("hidden_root", False, 60, other_users=True)]
    monkeypatch.setattr(runner.checks, "CHECKS", fake)
    return fake


def order_args(tmp_path, lane_users) -> types.SimpleNamespace:
    return types.SimpleNamespace(
        as_root=False, commit=None, user="nobody", lane_users=lane_users, python="python3",
        part=None, only=None, public=False, submission=str(tmp_path),
        results=str(tmp_path / "results.json"), logs=str(tmp_path / "logs"),
        scratch=str(tmp_path), timeout_scale=1.0, rootfs_tar=None, progress=False,
        nosub_user=runner.NOSUB_USER)


def test_one_after_the_other_the_public_checks_come_first(tmp_path, monkeypatch):
    fake = order_checks(monkeypatch)
    ran = []

    def run_check(c, args, machine, logs):
        ran.append(c.id)
        return runner.CheckResult.of(c, "ok")

    monkeypatch.setattr(runner, "run_check", run_check)
    results = runner.run_checks(order_args(tmp_path, []))
    assert ran == ["public_a", "public_b", "public_c", "hidden_long", "hidden_short",
                   "hidden_root"]
    assert [r.id for r in results] == [c.id for c in fake]  # reported in the checks' order


def test_in_lanes_no_hidden_check_starts_before_every_public_one_ended(tmp_path, monkeypatch):
    fake = order_checks(monkeypatch)
    events = []  # (time, "start" or "end", check id)

    class FakeLane:
        def __init__(self, args, user, processes=None):
            self.gave_up = False

        def run(self, c):
            events.append((time.monotonic(), "start", c.id))
            time.sleep(0.3 if c.public else 0.05)
            events.append((time.monotonic(), "end", c.id))
            return runner.CheckResult.of(c, "ok")

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            pass

    monkeypatch.setattr(runner, "Lane", FakeLane)
    results = runner.run_checks(order_args(tmp_path, ["nobody2"]))
    assert [r.id for r in results] == [c.id for c in fake]
    public_ends = [t for t, what, i in events if what == "end" and i.startswith("public")]
    hidden_starts = [t for t, what, i in events if what == "start" and i.startswith("hidden")]
    assert len(public_ends) == 3 and len(hidden_starts) == 3
    assert min(hidden_starts) >= max(public_ends), events


# A command that prints without end ----------------------------------------------------
# The runner kept all of a command's output in memory: in the VM, `yes` with a long line
# until the check's limit grew each lane's runner until the kernel killed it (-9), and
# the grading was "incomplete: 1 not run, 2 grader errors" instead of failed.


def test_what_a_command_prints_is_kept_within_bounds(tmp_path, monkeypatch):
    monkeypatch.setattr(runner, "OUTPUT_LIMIT", 1 << 20)
    flood = "import os\nos.execvp('sh', ['sh', '-c', 'yes y >&2 & exec yes " + "y" * 2000 + "'])\n"
    sub = fake_submission(tmp_path, 1, flood)
    runs = []

    def floods(z):
        runs.append(z.zk(1, "true", timeout=2))

    def signalled(z):
        runs.append(z.zk(1, "true", send_signal=("TERM", 1.0), may_time_out=True))

    monkeypatch.setattr(runner.checks, "CHECKS", [
        runner.checks.Check(fn, 1, fn.__name__, 1, 30, True, ()) for fn in (floods, signalled)])
    results = run_checks(tmp_path, sub, None)
    assert [r.status for r in results] == ["fail", "ok"], results
    assert results[0].message.startswith("zookeeper did not exit within 2 s"), results[0]
    for r in runs:
        assert 1 << 20 <= len(r.stdout) <= (1 << 20) + 4096, len(r.stdout)
        assert len(r.stderr) <= (1 << 20) + 4096, len(r.stderr)
        assert "bytes of stdout dropped" in r.stderr[-300:], r.stderr[-300:]


# A disk the submission filled ---------------------------------------------------------
# A zookeeper that filled the disk (fallocate in its home, which no cleanup removes)
# made the next checks' rootfs impossible to unpack: "not run", the grading
# "incomplete: 2 not run" in the VM, instead of failed.


def tiny_rootfs_tar(tmp_path) -> Path:
    import tarfile

    (tmp_path / "fs" / "bin").mkdir(parents=True)
    tar = tmp_path / "fs.tar"
    with tarfile.open(tar, "w") as t:
        t.add(tmp_path / "fs" / "bin", arcname="bin")
    return tar


@pytest.mark.parametrize("free_now, expected", [(1 << 30, runner.NotRunnable),
                                                (1 << 20, runner.CheckFailed)])
def test_no_room_for_the_rootfs_after_the_disk_was_filled_fails(tmp_path, monkeypatch,
                                                                 free_now, expected):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    z = context(tmp_path, timeout=30, scratch=scratch, rootfs_tar=tiny_rootfs_tar(tmp_path))

    def no_room(archive, dest):
        raise OSError(28, "No space left on device", "usr/sbin")

    monkeypatch.setattr(runner, "unpack", no_room)
    monkeypatch.setattr(runner, "FREE_AT_START", {"scratch": 1 << 30})
    monkeypatch.setattr(runner, "free_bytes", lambda path: free_now)
    with pytest.raises(expected) as raised:
        z.rootfs()
    if expected is runner.CheckFailed:
        assert str(raised.value).startswith("no room to unpack the rootfs"), raised.value


def test_a_full_disk_for_the_results_is_one_line(tmp_path):
    """The results or a log that cannot be written (ENOSPC) ended the runner with a
    traceback, which grade passed on whole to the TA (attack review, session 29)."""
    code = ("import errno, os, sys\n"
            f"sys.path.insert(0, {str(ROOT / 'grader')!r})\n"
            "import runner\n"
            "def full(args):\n"
            "    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), '/out/logs/p1.log')\n"
            "runner.run_checks = full\n"
            "sys.exit(runner.main(sys.argv[1:]))\n")
    (tmp_path / "sub").mkdir()
    done = subprocess.run([sys.executable, "-c", code, "--submission", str(tmp_path / "sub"),
                           "--results", str(tmp_path / "results.json"), "--user", "root"],
                          capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (
        1, "runner: /out/logs/p1.log: No space left on device\n")
