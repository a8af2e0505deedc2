"""Work run as the check's user by a daemon of root's (cron, atd, sshd), outside the
runner's tree and the user's systemd: grader/schedulers.py, and the runner's cleanup
that uses it (--local as root, --user NAME, on a machine with cron and at).

The kernel's process events need root in the machine's first namespaces; crontab(1)
and at(1) come with tools/setup-test-env.sh, which CI runs.
"""

import contextlib
import os
import pwd
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
import types
from pathlib import Path

import pytest
from conftest import TEST_USER, StandInDaemon, eventually, have_test_user

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "grader"))

import runner  # noqa: E402
import schedulers  # noqa: E402

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="the process events need root")
# A user id no process here has: the watched user's in the unit tests, one of its own
# for each run (two runs at once would see each other's stand-ins).
UID = 60000 + os.getpid() % 5000


@pytest.fixture
def daemon():
    """Stands in for atd: a daemon of root's that runs a program as a user."""
    d = StandInDaemon("atd")
    yield d
    d.close()


def watch(uids: set[int]) -> "schedulers.StartedElsewhere":
    watched = schedulers.StartedElsewhere(uids, lambda: {os.getpid()})
    assert not watched.unavailable, watched.unavailable
    return watched


def in_our_tree_as(uid: int, *argv: str) -> subprocess.CompletedProcess:
    """A command of ours run as uid (as the runner runs one as the check's user)."""
    return subprocess.run(list(argv), user=uid, group=uid, extra_groups=[], check=True)


def test_a_program_a_daemon_of_roots_runs_as_the_user_is_found(daemon):
    """A process that takes the watched uid outside the tree is found, with its
    command and who started it, and what it forks after counts as still running;
    one of ours that takes the uid (a command run as the user) is not, nor one of
    the daemon's that takes another uid."""
    watched = watch({UID})
    in_our_tree_as(UID, "true")
    daemon.run("true", uid=UID + 1)
    job = daemon.run("sh", "-c", "sleep 60 & exec sleep 61", uid=UID)
    assert eventually(lambda: len(watched.still_running()) == 2), watched.still_running()
    assert job in watched.still_running()
    left = watched.still_running()
    found = watched.stop()
    for pid in left:  # the job's sleep 60, which the daemon did not start itself
        os.kill(pid, signal.SIGKILL)
    assert [(f.pid, f.uid) for f in found] == [(job, UID)], found
    # Its command as read then (atd, or sh once it ran it), and the daemon named.
    assert found[0].what.endswith(f", started by atd ({daemon.proc.pid})"), found
    assert not watched.lost and not watched.failed


@pytest.mark.parametrize("name", ["local", "exim4", "dropbear"])
def test_a_mail_servers_pipe_or_another_ssh_servers_login_is_found(name):
    """A pipe in ~/.forward run by the mail server's delivery agent (Postfix's local(8),
    Exim) or a login through another ssh server is as much the check's doing as an at
    job.  (Seen with a real Postfix: "sleep, started by local".)"""
    stand_in = StandInDaemon(name)
    try:
        found, (job,) = run_watched(stand_in, ["sleep", "60"])
    finally:
        stand_in.close()
    assert [f.pid for f in found] == [job], found
    assert found[0].what.endswith(f", started by {name} ({stand_in.proc.pid})"), found


def run_watched(stand_in: StandInDaemon, *commands: list[str], taken=None) -> tuple:
    """Watch UID while stand_in runs each command as UID, the next once the watch has
    taken the one before (taken(pid); by default, found running), then stop the
    watch: what it found, and the commands' pids."""
    watched = watch({UID})
    pids = []
    for command in commands:
        pids.append(stand_in.run(*command, uid=UID))
        assert eventually(lambda: (taken or watched.still_running().__contains__)(pids[-1]))
    found = watched.stop()
    assert not watched.failed and not watched.lost
    return found, pids


def test_a_systemd_cron_job_is_found_but_nothing_else_pid_1_starts(monkeypatch):
    """systemd-cron runs a crontab's job as a unit of PID 1's (cron-JOB-USER-N.service),
    as the user: found as an at job is.  What else PID 1 starts as the user (the
    user's own manager, a systemd-run --uid or run0 of root's) is not the check's."""
    # Each process's cgroup as the events come (before run() has told its pid), in the
    # order the stand-in starts them: a job of a crontab's, the manager, root's.
    coming = ["/system.slice/cron-crontab-student-0.service",
              f"/user.slice/user-{UID}.slice/user@{UID}.service/init.scope",
              "/system.slice/run-u42.service"]
    cgroups = {}
    monkeypatch.setattr(schedulers, "cgroup_of",
                        lambda pid: cgroups.setdefault(pid, coming.pop(0)))
    stand_in = StandInDaemon("systemd")
    try:
        found, (job, _, _) = run_watched(stand_in, ["sleep", "60"], ["sleep", "61"],
                                         ["sleep", "62"], taken=cgroups.__contains__)
    finally:
        stand_in.close()
    assert [f.pid for f in found] == [job], found
    assert found[0].what.endswith(f", started by systemd ({stand_in.proc.pid})"), found


def test_only_a_unit_systemd_crons_generator_makes_is_a_crontabs():
    assert schedulers.crontab_unit("/system.slice/cron-crontab-student-0.service")
    assert schedulers.crontab_unit("/cron.slice/cron-daily-student-1.service")
    for cgroup in ("/system.slice/run-u42.service", "/system.slice/cron.service",
                   "/user.slice/user-1000.slice/user@1000.service/init.scope",
                   "/user.slice/user-1000.slice/user@1000.service/app.slice/cron-x.scope",
                   "/user.slice/user-1000.slice/user@1000.service/app.slice/cron-x.service",
                   "/system.slice/cron-update.path/x", ""):
        assert not schedulers.crontab_unit(cgroup), cgroup


def test_a_program_another_terminal_runs_as_the_user_is_not_the_checks():
    """The user's own `make demo` in another terminal, beside the grading (su, sudo or
    setpriv from a root shell: none the check's commands can use without a password
    or root) is not the check's: not found, not killed; nor when what started it
    ended at once (a subshell's `&`, setsid -f: review of session 23), its terminal
    being the nearest that runs."""
    terminal = StandInDaemon("bash")
    try:
        watched = watch({UID})
        terminal.run("sleep", "67", uid=UID)
        terminal.run("sh", "-c", f"(setpriv --reuid={UID} --regid={UID} --clear-groups "
                                 "sleep 67 &)")
        terminal.run("setsid", "-f", "setpriv", f"--reuid={UID}", f"--regid={UID}",
                     "--clear-groups", "sleep", "67")
        assert eventually(lambda: len(running_as(UID, b"sleep\x0067\x00")) == 3)
        assert watched.stop() == [] and watched.still_running() == set()
    finally:
        for pid in running_as(UID, b"sleep\x0067\x00"):
            os.kill(pid, signal.SIGKILL)
        terminal.close()


def running_as(uid: int, command_line: bytes) -> list[int]:
    """The processes with that command line that run as uid."""
    found = []
    for pid in map(int, filter(str.isdigit, os.listdir("/proc"))):
        with contextlib.suppress(OSError):
            if (Path(f"/proc/{pid}/cmdline").read_bytes() == command_line
                    and schedulers.real_uid(pid) == uid):
                found.append(pid)
    return found


def event(what: int, *fields: int) -> bytes:
    """A process-events message as the kernel sends it (nlmsghdr, cn_msg, proc_event)."""
    data = schedulers.PROC_EVENT.pack(what, 0, 0) + struct.pack(f"={len(fields)}I", *fields)
    message = schedulers.CN_MSG.pack(1, 1, 0, 0, len(data), 0) + data
    return schedulers.NLMSGHDR.pack(16 + len(message), 3, 0, 0, 0) + message


def test_a_user_added_later_is_watched_from_then_on(daemon):
    """The runner watches one user more at its first command as that user: the set
    given is the one watched.  (Messages made here, taken as the reader takes them.)"""
    uids: set[int] = set()
    watched = watch(uids)
    atd, first, second = daemon.proc.pid, 4000001, 4000002  # no such pids: none read
    with watched.lock:
        for child in (first, second):
            watched.take(event(schedulers.PROC_EVENT_FORK, atd, atd, child, child))
        watched.take(event(schedulers.PROC_EVENT_UID, first, first, UID, UID))
        uids.add(UID)
        watched.take(event(schedulers.PROC_EVENT_UID, second, second, UID, UID))
    assert [(f.pid, f.what) for f in watched.stop()] == [
        (second, f"ended before it could be read, started by atd ({atd})")]


def test_a_pid_the_tree_left_is_not_the_trees():
    """A check that forks through every pid (32768 on a small machine) would make any
    pid the tree's, atd's child's too: a process of the tree leaves it when it ends,
    a thread when its process does."""
    watched = watch({UID})
    child = subprocess.Popen([sys.executable, "-c", "import threading, time\n"
                              "t = threading.Thread(target=time.sleep, args=(0.5,))\n"
                              "t.start(); t.join()"])
    assert eventually(lambda: child.pid in watched.tree), "the child is not the tree's"
    time.sleep(0.2)  # its thread runs, and is no process of its own
    assert child.pid in watched.tree
    child.wait()
    assert eventually(lambda: child.pid not in watched.tree), "the ended child stays"
    assert watched.stop() == []


SYS_EXIT = {"x86_64": 60, "aarch64": 93}.get(os.uname().machine)  # this thread only


@pytest.mark.skipif(SYS_EXIT is None, reason="exit(2)'s number is known for x86_64 and arm64")
def test_a_thread_made_after_the_first_thread_ended_brings_no_pid_back():
    """A process whose first thread ends before the others (exit(2), not exit_group)
    leaves the tree then; a thread it makes after that is no new process (its fork
    event names the process's parent): the pid stays out, and once reaped no
    process that takes it later (atd's child, after a check burnt through the pids)
    passes for the tree's (attack review)."""
    code = ("import ctypes, os, threading, time\n"
            "def worker():\n"
            "    time.sleep(0.1)\n"
            "    t = threading.Thread(target=time.sleep, args=(0,)); t.start(); t.join()\n"
            "    os._exit(0)\n"
            "threading.Thread(target=worker).start()\n"
            f"ctypes.CDLL(None).syscall({SYS_EXIT}, 0)\n")
    watched = watch({UID})
    ended = []
    for _ in range(3):
        child = subprocess.Popen([sys.executable, "-c", code])
        child.wait()
        ended.append(child.pid)
    watched.stop()  # every event taken (the children's were sent before they ended)
    assert [pid for pid in ended if pid in watched.tree] == []


def test_what_still_runs_can_be_asked_while_the_events_come(daemon):
    """The reader thread adds what a found job forks while the cleanup asks what still
    runs: a job that forks without pause once made that a RuntimeError (the set
    changed size), the runner's end, with the crontab not put back (attack review)."""
    watched = watch({UID})
    daemon.run("sh", "-c", "end=$(($(date +%s) + 3)); "
                           "while [ $(date +%s) -lt $end ]; do /bin/true; done", uid=UID)
    assert eventually(lambda: watched.found), "not found"
    asked = 0
    end = time.monotonic() + 2
    while time.monotonic() < end:
        watched.still_running()
        asked += 1
    assert asked > 10 and len(watched.stop()) == 1


def test_a_runner_in_a_pid_namespace_of_its_own_watches_nothing(tmp_path):
    """The events give pids as the machine's first PID namespace sees them: in a
    namespace of its own (a container), the runner would take its own commands for
    strangers' and kill by the wrong pid.  It says why it does not watch."""
    code = (f"import os, sys\nsys.path.insert(0, {str(ROOT / 'grader')!r})\n"
            "import schedulers\n"
            f"w = schedulers.StartedElsewhere({{{UID}}}, lambda: {{os.getpid()}})\n"
            "print(w.unavailable)\nw.stop()\n")
    done = subprocess.run(["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c",
                           code], capture_output=True, text=True, timeout=60)
    assert done.stdout == "the runner is in a PID namespace of its own\n", done


def test_a_burst_of_forks_in_the_tree_is_taken_without_loss():
    """A check forks a lot (a container's processes take the user's id as its root):
    2000 of ours, each taking the uid, leave nothing found and nothing lost."""
    watched = watch({UID})
    code = (f"import os\nfor _ in range(2000):\n    pid = os.fork()\n    if pid == 0:\n"
            f"        os.setuid({UID})\n        os._exit(0)\n    os.waitpid(pid, 0)\n")
    subprocess.run([sys.executable, "-c", code], check=True)
    time.sleep(0.5)
    assert watched.stop() == [] and not watched.lost and not watched.failed


def test_no_watch_where_the_events_cannot_be_had(monkeypatch):
    """A machine without the connector (or a runner in a container of its own) says why
    and watches nothing; it does not fail."""
    def refused(*args):
        raise PermissionError(1, "Operation not permitted")

    monkeypatch.setattr(schedulers.socket, "socket", refused)
    watched = schedulers.StartedElsewhere({UID}, lambda: {os.getpid()})
    assert watched.unavailable == "the kernel's process events: Operation not permitted"
    assert watched.stop() == []


# Through the runner: a check whose command leaves work to cron or at -------------------


needs_schedulers = pytest.mark.skipif(
    not (shutil.which("crontab") and shutil.which("at") and shutil.which("atd")
         and have_test_user()),
    reason="needs cron, at and the test user (tools/setup-test-env.sh)")


def verdict(tmp_path: Path, fn, log: list[str] | None = None) -> tuple[str, str]:
    """runner.verdict of a check whose commands, fn(z), run as the test user (its log
    added to log)."""
    os.chmod(tmp_path, 0o755)
    check = types.SimpleNamespace(id="test", name="test", timeout=30, needs=(), fn=fn,
                                  exercises="", other_users=False)
    ns = types.SimpleNamespace(submission=str(tmp_path), user=TEST_USER, python=sys.executable,
                               as_root=False, timeout_scale=1.0, scratch=str(tmp_path),
                               rootfs_tar=None, nosub_user=runner.NOSUB_USER)
    machine = types.SimpleNamespace(missing=lambda needs: "")
    status, message, _ = runner.verdict(check, ns, machine, [] if log is None else log)
    return status, message


@pytest.fixture
def clean_schedulers(monkeypatch):
    """The test user's crontab and at jobs empty before and after; each test's first
    check is the runner's first."""
    monkeypatch.setattr(runner, "SCHEDULER_STATES", {})
    schedulers.restore_schedulers(TEST_USER, schedulers.SchedulerState(None, frozenset()))
    yield
    schedulers.restore_schedulers(TEST_USER, schedulers.SchedulerState(None, frozenset()))


@needs_schedulers
def test_a_crontab_and_an_at_job_left_by_a_check_are_removed_and_fail_it(tmp_path,
                                                                          clean_schedulers):
    """A crontab line or an at job would run in a later check (the next student's,
    graded as the same user): the check that left them fails, and they are removed.
    A check that leaves none passes."""
    def leaves_work(z):
        z.host(["sh", "-c", "echo '* * * * * rm -rf /tmp/zoo.*' | crontab -"])
        z.host(["sh", "-c", "echo 'rm -rf /tmp/zoo.*' | at now + 1 hour"])

    status, message = verdict(tmp_path, leaves_work)
    assert status == "fail", message
    assert "outside the grader's reach" in message, message
    assert f"the crontab of {TEST_USER} (new: removed)" in message, message
    assert f"of {TEST_USER} (queued: removed)" in message, message
    assert schedulers.scheduler_state(TEST_USER) == schedulers.SchedulerState(None, frozenset())
    assert verdict(tmp_path, lambda z: z.host(["true"])) == ("ok", "")


@pytest.fixture
def incron_allowed():
    """The test user allowed an incron table for the test's time (Debian's
    /etc/incron.allow is empty: no one), the file as it was after."""
    allow = Path("/etc/incron.allow")
    before = allow.read_bytes() if allow.exists() else None
    allow.write_text(f"{TEST_USER}\n")  # an existing file keeps its mode and group
    try:
        yield
    finally:
        if before is None:
            allow.unlink()
        else:
            allow.write_bytes(before)


@pytest.mark.skipif(not (shutil.which("incrontab") and os.geteuid() == 0
                         and have_test_user()),
                    reason="needs incron, root and the test user (tools/setup-test-env.sh)")
def test_an_incron_table_left_by_a_check_is_put_back_and_fails_it(tmp_path, incron_allowed,
                                                                  clean_schedulers,
                                                                  monkeypatch):
    """incrond runs a table's command as its user when a file changes: a table a check
    leaves would run in a later check.  A new one is removed, one the user had is
    put back as it was; either fails the check, and the next passes, also when the
    table was written by hand (incrontab saves its own spacing, no comment).  (The
    commands here do nothing, for an incrond that may run on this machine; the user
    allowed incron until the tables are cleaned: fixtures end in reverse.)"""
    def table(z, line):  # incrontab 0.5.12 reads no "-" for a user: a file
        z.host(["sh", "-c", f"f=$(mktemp) && echo '{line}' > $f && incrontab $f; rm -f $f"])

    status, message = verdict(tmp_path, lambda z: table(z, "/nonexistent-zk IN_CREATE true"))
    assert status == "fail", message
    assert f"the incron table of {TEST_USER} (new: removed)" in message, message
    assert schedulers.scheduler_state(TEST_USER).incrontab is None

    had = "/nonexistent-zk\tIN_DELETE\ttrue\n"
    schedulers.scheduler_command(["incrontab", "-u", TEST_USER, "-"], text_in=had)
    assert schedulers.scheduler_state(TEST_USER).incrontab == had
    monkeypatch.setattr(runner, "SCHEDULER_STATES", {})  # the next check is the first
    status, message = verdict(tmp_path, lambda z: table(z, "/nonexistent-zk IN_MODIFY true"))
    assert status == "fail", message
    assert f"the incron table of {TEST_USER} (changed: put back)" in message, message
    assert schedulers.scheduler_state(TEST_USER).incrontab == had
    assert verdict(tmp_path, lambda z: z.host(["true"])) == ("ok", "")

    spool = Path("/var/spool/incron") / TEST_USER  # incron.conf's user_table_dir
    spool.write_text("# by hand\n/nonexistent-zk   IN_DELETE    true  x\n\n")
    monkeypatch.setattr(runner, "SCHEDULER_STATES", {})
    status, message = verdict(tmp_path, lambda z: table(z, "/nonexistent-zk IN_MODIFY true"))
    assert f"the incron table of {TEST_USER} (changed: put back)" in message, message
    assert verdict(tmp_path, lambda z: z.host(["true"])) == ("ok", "")


@pytest.fixture
def atd():
    """atd, started here if none runs (the package's service stays off on a machine
    without systemd); stopped after."""
    with contextlib.suppress(OSError, ValueError):  # atd's own, not a stand-in named so
        if schedulers.command_of(int(Path("/run/atd.pid").read_text())) == "atd":
            yield
            return
    started = subprocess.Popen(["atd", "-f"])
    assert eventually(lambda: Path("/run/atd.pid").exists()), "atd did not start"
    yield
    started.terminate()
    started.wait()


@needs_schedulers
def test_an_at_job_that_runs_during_the_check_fails_it(tmp_path, clean_schedulers, atd):
    """`at now` has atd run a janitor at once, as the user, outside the runner's tree:
    it could remove what the check's zookeeper left and exit before the check's end,
    leaving no job and no process.  The kernel tells of it taking the user's id: the
    check fails, naming atd; what still runs of it is killed."""
    shared = Path(tempfile.mkdtemp(prefix="zk-at-"))  # where the user may write
    shared.chmod(0o777)
    mark = shared / "janitor-ran"

    def has_atd_run_a_janitor(z):
        z.host(["sh", "-c", f"cd / && echo 'touch {mark}; sleep 60' | at now"])
        assert eventually(mark.exists), "atd did not run the job"

    try:
        status, message = verdict(tmp_path, has_atd_run_a_janitor)
    finally:
        shutil.rmtree(shared)
    assert status == "fail", message
    assert message.count("started by atd") == 1, message  # one job, said once
    assert f"run as {TEST_USER}" in message, message
    assert "(still running: killed)" in message, message
    assert subprocess.run(["pgrep", "-u", TEST_USER, "-f", "sleep 60"]).returncode == 1


@needs_schedulers
def test_events_the_kernel_dropped_make_a_grader_error_not_a_fail(tmp_path, clean_schedulers,
                                                                  monkeypatch):
    """The events are the whole machine's: another user's fork storm can fill the
    buffer (--local on a shared server).  What was lost is not the student's doing:
    the check is a grader error, said, not a fail."""
    stop = schedulers.StartedElsewhere.stop

    def stop_after_a_loss(self):
        self.lost = True
        return stop(self)

    monkeypatch.setattr(schedulers.StartedElsewhere, "stop", stop_after_a_loss)
    status, message = verdict(tmp_path, lambda z: z.host(["true"]))
    assert status == "error", message
    assert "grader error: the watch of processes run as the user failed (the kernel's " \
           "process events were dropped" in message, message


def test_who_started_a_process_is_the_nearest_ancestor_that_runs():
    """A launcher that forks and ends at once (a subshell's `&`, setsid -f) is gone
    when its child's id change is read: the terminal above it (here a stand-in named
    bash) tells that it is not the check's; a chain that ends with none running is
    the check's, to be safe; atd above a gone one is atd.  (Messages made here.)"""
    terminal, atd = StandInDaemon("bash"), StandInDaemon("atd")
    try:
        watched = watch({UID})
        launcher, child, gone, orphan, job_launcher, job = range(4000011, 4000017)
        with watched.lock:
            for parent, pid in ((terminal.proc.pid, launcher), (launcher, child),
                                (gone, orphan), (atd.proc.pid, job_launcher),
                                (job_launcher, job)):
                watched.take(event(schedulers.PROC_EVENT_FORK, parent, parent, pid, pid))
            for pid in (child, orphan, job):
                watched.take(event(schedulers.PROC_EVENT_UID, pid, pid, UID, UID))
        found = {f.pid: f.what for f in watched.stop()}
        assert found == {
            orphan: "ended before it could be read, started by a process that could not "
                    "be read",
            job: f"ended before it could be read, started by atd ({atd.proc.pid})"}, found
    finally:
        terminal.close()
        atd.close()


@pytest.mark.skipif(not have_test_user(), reason="needs the test user (make test-deps)")
def test_what_a_check_leaves_in_the_users_real_home_is_put_back(tmp_path, monkeypatch):
    """A key in the user's real ~/.ssh (an ssh login later: the next student's check,
    graded as the same user) and a ~/.forward (a mail server's pipe to a program),
    written by the home's path whatever HOME says, are gone after the check, said in
    its log; the rest of the home is as it was.  Not a fail: a Python cache written
    there would be no one's loss, and nothing of it stays."""
    monkeypatch.setattr(runner, "HOME_COPIES", {})
    real = Path(pwd.getpwnam(TEST_USER).pw_dir)
    before = sorted((str(p), p.lstat().st_mode) for p in real.rglob("*"))

    def leaves_a_key(z):
        z.host(["sh", "-c", f"mkdir -p {real}/.ssh && echo ssh-ed25519 AAAA janitor >> "
                            f"{real}/.ssh/authorized_keys && "
                            f"echo '|/tmp/janitor' > {real}/.forward"])
        assert (real / ".forward").exists()

    log: list[str] = []
    try:
        status, message = verdict(tmp_path, leaves_a_key, log)
    finally:  # what the test added, should the grader not have removed it
        for added in (real / ".forward", real / ".ssh"):
            if not any(path == str(added) for path, _ in before):
                subprocess.run(["rm", "-rf", str(added)], check=True)
    assert status == "ok", message
    said = "\n".join(log)
    assert "put back as it was before the first check" in said, said
    assert f"{real}/.forward (new: removed)" in said, said
    assert sorted((str(p), p.lstat().st_mode) for p in real.rglob("*")) == before
