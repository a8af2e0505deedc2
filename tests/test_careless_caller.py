"""zookeeper started by a careless or odd caller (attack review, session 17): what the
caller leaves to it (ignored or blocked signals, a closed stderr, a closed stdio
descriptor, PYTHONSAFEPATH) must not change what the container does or how
zookeeper ends.  Each of these failed before its fix.
"""

import contextlib
import glob
import os
import resource
import select
import shlex
import signal
import subprocess
import time

import pytest
from conftest import PARTS, Runner
from test_network import with_tun
from test_network import zookeeper_argv as network_zookeeper_argv
from test_stages123 import processes_under, still_running

# Run ARGV with SIGNAL's action or mask set as a caller's shell (trap '') or a
# program's sigprocmask(2) would leave it: both survive execve(2).
WITH_SIGNAL = ("import os, signal, sys\n"
               "how, name = sys.argv[1], sys.argv[2]\n"
               "signum = getattr(signal, name)\n"
               "if how == 'ignore':\n"
               "    signal.signal(signum, signal.SIG_IGN)\n"
               "else:\n"
               "    signal.pthread_sigmask(signal.SIG_BLOCK, [signum])\n"
               "os.execv(sys.argv[3], sys.argv[3:])\n")


def with_signal(runner: Runner, how: str, name: str, argv: list[str]) -> list[str]:
    return [runner.python, "-c", WITH_SIGNAL, how, name, *argv]


def zookeeper_argv(runner: Runner, part: int, *args: str) -> list[str]:
    return [runner.python, str(runner.workdir / PARTS[part] / "zookeeper.py"), *args]


@pytest.mark.parametrize("part", [1, 2])
def test_a_caller_that_ignores_sigchld(runner: Runner, part):
    """The kernel reaped zookeeper's children for it: part 1 died of a traceback
    (ECHILD), part 2 could not map the ids (newuidmap's status lost)."""
    done = runner.run(with_signal(runner, "ignore", "SIGCHLD",
                                  zookeeper_argv(runner, part, "sh", "-c", "exit 3")))
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr and "No child processes" not in done.stderr


def test_a_caller_that_blocks_the_grace_alarm(runner: Runner):
    """SIGALRM blocked by the caller: the grace period's SIGKILL never came, and
    zookeeper, asked to stop, waited for its sleep to end."""
    proc = subprocess.Popen(runner.command(with_signal(
        runner, "block", "SIGALRM", zookeeper_argv(runner, 2, "sleep", "100"))),
        env=runner.env(), cwd=runner.workdir, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    sleeps = signal_once_running(proc, signal.SIGTERM)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert not still_running(sleeps, "sleep 100")


def running_under(proc: subprocess.Popen, command_line: str, seconds: float = 20) -> set:
    """Once the container under proc runs command_line: the pids that run it."""
    deadline = time.monotonic() + seconds
    while not (pids := processes_under(proc.pid, command_line)):
        assert time.monotonic() < deadline, f"the container's {command_line} did not start"
        time.sleep(0.1)
    return pids


def signal_once_running(proc: subprocess.Popen, signum: int, then=lambda: None) -> set:
    """Once proc's container runs its `sleep 100`: then(), signum to proc, and wait for
    proc to end (killed after 15 s).  The sleep's pids."""
    try:
        sleeps = running_under(proc, "sleep 100")
        then()
        proc.send_signal(signum)
        proc.wait(timeout=15)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return sleeps


# Every signal whose default action ends a process (signal(7)) and that a caller may
# send: SIGUSR1 (timeout -s USR1), and those that still ended zookeeper at once in
# session 20 (SIGALRM, SIGPWR, SIGVTALRM, SIGPROF, SIGIO, SIGXCPU, SIGABRT, SIGSTKFLT,
# a real-time one).
ENDING_SIGNALS = [signal.SIGUSR1, signal.SIGALRM, signal.SIGPWR, signal.SIGVTALRM,
                  signal.SIGPROF, signal.SIGIO, signal.SIGXCPU, signal.SIGABRT, 16,
                  signal.SIGRTMIN + 3]


@pytest.mark.parametrize("signum", ENDING_SIGNALS, ids=lambda s: signal.Signals(s).name
                         if s in signal.Signals._value2member_map_ else f"SIG{s}")
def test_a_signal_that_ends_is_passed_on_and_cleaned_up_after(runner: Runner, rootfs_for,
                                                              signum):
    """It ended zookeeper at once, leaving the container's temporary directories; now
    it goes to the container, as SIGTERM does."""
    before = {name for name in os.listdir("/tmp") if name.startswith("zoo.")}
    proc = runner.popen(4, "-r", str(rootfs_for(runner)), "-o", "sleep", "100",
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    mine = set()

    def note_its_directories():
        mine.update({name for name in os.listdir("/tmp") if name.startswith("zoo.")} - before)
    sleeps = signal_once_running(proc, signum, then=note_its_directories)
    assert mine, "no temporary directory of the container's"
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()  # sleep has no handler
    assert not any(os.path.lexists(f"/tmp/{name}") for name in mine)
    assert not still_running(sleeps, "sleep 100")


def test_an_outside_sigalrm_is_the_containers_not_the_end_of_the_grace(runner: Runner):
    """zookeeper times its grace period with SIGALRM: one sent from outside is passed on
    like any other, and a command with a handler for it lives on to act on it."""
    proc = runner.popen(2, "sh", "-c", "trap 'echo got it; exit 7' ALRM; sleep 100 & wait",
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    signal_once_running(proc, signal.SIGALRM)
    assert proc.returncode == 7, proc.stderr.read()
    assert proc.stdout.read() == "got it\n"


def full_file_stderr(runner: Runner):
    """A stderr that takes no more: a file already at the size ulimit -f allows
    (RLIMIT_FSIZE, set in the child before it runs zookeeper: getrlimit(2))."""
    path = runner.fresh_dir() / "err"
    path.write_bytes(b"x" * 1024)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    return fd, lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (1024, 1024))


def closed_pipe_stderr(runner: Runner):
    """A stderr whose reader has gone, as head's once it has its line."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    return write_end, None


@pytest.mark.parametrize("stderr", [closed_pipe_stderr, full_file_stderr],
                         ids=["closed pipe", "file at ulimit -f"])
@pytest.mark.parametrize("part", [1, 2])
def test_explain_mode_that_cannot_be_written_changes_nothing(runner: Runner, part, stderr):
    """zookeeper -v 2>&1 | head -1: the command never ran (once a traceback, then the
    failed write became the step's own failure).  Part 1's child died of SIGPIPE
    (exit 141): its writes to the closed pipe had left SIGPIPEs pending while blocked,
    and it gave SIGPIPE its default action before letting them in; and -v's execvp
    line came after that.  The same with SIGXFSZ for a file at ulimit -f's size
    (review, session 32).  From part 2 the child is PID 1 of its namespace, which
    neither signal kills."""
    marker = runner.fresh_dir(for_container=part >= 2)
    err, limit = stderr(runner)
    try:
        done = subprocess.run(runner.command(zookeeper_argv(
            runner, part, "-v", "sh", "-c", f"echo ran > {marker}/ran; exit 4")),
            env=runner.env(), cwd=runner.workdir, stdout=subprocess.PIPE, stderr=err,
            preexec_fn=limit, timeout=60)
    finally:
        os.close(err)
    assert done.returncode == 4
    assert (marker / "ran").read_text() == "ran\n"


@pytest.mark.parametrize("fd", [0, 1, 2])
def test_a_closed_standard_descriptor_is_open_for_the_command(runner: Runner, fd):
    """With 2>&- zookeeper put /dev/null at 2, close-on-exec: the command started
    without it, and its next file took the number (awk's error into its data)."""
    said = runner.fresh_dir()
    close = f"exec {fd}>&-; " if fd else "exec 0<&-; "
    done = runner.run(["sh", "-c", close + '"$@"', "sh", *zookeeper_argv(
        runner, 1, "sh", "-c", f"[ -e /proc/self/fd/{fd} ] && echo open > {said}/fd")])
    assert done.returncode == 0, done.stderr
    assert (said / "fd").read_text() == "open\n"


def test_help_that_cannot_be_written_is_no_success(runner: Runner):
    with open("/dev/full", "w") as full:
        done = subprocess.run(runner.command(zookeeper_argv(runner, 1, "-h")), stdout=full,
                              stderr=subprocess.PIPE, text=True, env=runner.env(),
                              cwd=runner.workdir, timeout=60)
    assert done.returncode == 125
    assert done.stderr == ("zookeeper: failed to write the usage: No space left on device\n")
    # A reader that had enough (-h | head -1) is no failure.
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run(runner.command(zookeeper_argv(runner, 1, "-h")), stdout=write_end,
                              stderr=subprocess.PIPE, text=True, env=runner.env(),
                              cwd=runner.workdir, timeout=60)
    finally:
        os.close(write_end)
    assert (done.returncode, done.stderr) == (0, "")


@pytest.mark.parametrize("flag", [[], ["-I"]])
def test_a_python_that_puts_no_script_directory_on_its_path(runner: Runner, flag):
    """PYTHONSAFEPATH=1 (or python3 -I): no module of zookeeper's was found."""
    argv = zookeeper_argv(runner, 1, "sh", "-c", "exit 5")
    done = runner.run([argv[0], *flag, *argv[1:]], env={"PYTHONSAFEPATH": "1"})
    assert done.returncode == 5, done.stderr


def test_part2_as_another_uid_finds_what_execvp_imports(root_runner: Runner):
    """Root's containers run as a subordinate uid that may not read root's Python
    (a venv in /root): execvp's PATH search imported warnings there, and failed."""
    done = root_runner.zookeeper(2, "true")
    assert done.returncode == 0, done.stderr
    source = (root_runner.workdir / PARTS[2] / "container.py").read_text()
    assert "\nimport warnings" in source


def test_slirp4netns_stops_though_the_caller_ignores_sigterm(user_runner: Runner):
    """trap '' TERM before zookeeper -n: slirp4netns inherited the ignored SIGTERM
    and zookeeper waited for it forever."""
    started = time.monotonic()
    argv = with_tun("666", ["sh", "-c", "trap '' TERM; exec \"$@\"", "sh",
                            *network_zookeeper_argv(user_runner, "-n", "sh", "-c", "exit 3")])
    done = subprocess.run(argv, env=user_runner.env(), cwd=user_runner.workdir,
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 3, done.stderr
    assert time.monotonic() - started < 30


def test_an_overlay_left_behind_keeps_its_mount_point(tmp_path):
    """An overlay that could not be removed (too few descriptors) lost its mount
    point, the only thing the next run's remove_orphans looks for."""
    from conftest import part_modules
    with part_modules(4, "rootfs") as m:
        fs = object.__new__(m.rootfs.Filesystem)
        fs.mount_point = str(tmp_path / "zoo.abcdef")
        fs.overlay_dir = str(tmp_path / "zoo.abcdef.overlay.ghijkl")
        os.mkdir(fs.mount_point)
        os.mkdir(fs.overlay_dir)
        fs.lock = os.open(fs.mount_point, os.O_RDONLY)
        fs.rootfs_fd = None

        def no_descriptors(path):
            raise OSError(24, os.strerror(24), path)
        m.rootfs.remove_tree, real = no_descriptors, m.rootfs.remove_tree
        try:
            with pytest.raises(OSError):
                fs.remove()
        finally:
            m.rootfs.remove_tree = real
        assert os.path.isdir(tmp_path / "zoo.abcdef") and fs.lock is None
        m.rootfs.remove_orphans(str(tmp_path), {os.geteuid()})
        assert os.listdir(tmp_path) == []


def our_leftovers(runner: Runner) -> set[str]:
    """The /tmp/zoo.* entries of this identity's (its own or its containers' root's):
    another user's running containers have theirs."""
    found = set()
    for path in glob.glob("/tmp/zoo.*"):
        with contextlib.suppress(OSError):
            if os.lstat(path).st_uid in (runner.uid, runner.inside[0]):
                found.add(path)
    return found


@pytest.mark.parametrize("overlay", [[], ["-o"]], ids=["plain", "overlay"])
def test_a_umask_that_takes_every_bit_changes_nothing(runner: Runner, rootfs_for, overlay):
    """umask 0777: mkdir(2)'s 0700 was 000, a mount point zookeeper could not open
    itself; it said "File exists" and left ten /tmp/zoo.* at each run, which no later
    run removed (attack review, session 27)."""
    rootfs = str(rootfs_for(runner))
    before = our_leftovers(runner)
    argv = zookeeper_argv(runner, 4, "-r", rootfs, *overlay, "sh", "-c", "exit 3")
    done = runner.run(["sh", "-c", 'umask 0777 && exec "$@"', "sh", *argv])
    assert (done.returncode, done.stderr) == (3, "")
    assert our_leftovers(runner) - before == set()


def test_a_mount_point_swept_by_another_run_at_once_is_made_again(tmp_path, monkeypatch):
    """One user's runs side by side: another run's sweep took a mount point just made
    (empty, not locked yet) for a killed zookeeper's and removed it before mkdtemp's
    chmod, which failed: "failed to create a temporary directory in /tmp/zoo.j5c5xr:
    No such file or directory", 125 (4 of 45 runs, 15 at once; attack review,
    session 29).  Here the sweep runs between the mkdir and the chmod."""
    from conftest import part_modules
    with part_modules(4, "rootfs") as m:
        chmod, swept = os.chmod, []

        def another_runs_sweep_first(path, mode):
            if not swept:
                swept.append(path)
                m.rootfs.remove_orphans(str(tmp_path), {os.geteuid()})
            chmod(path, mode)

        monkeypatch.setattr(m.rootfs.os, "chmod", another_runs_sweep_first)
        path, lock = m.rootfs.make_locked_mount_point(f"{tmp_path}/zoo.XXXXXX")
        os.close(lock)
    assert swept and swept[0] != path and not os.path.exists(swept[0])
    assert os.listdir(tmp_path) == [os.path.basename(path)]


def test_fifteen_runs_of_one_user_at_once(runner: Runner, rootfs_for):
    """The same race for real: 15 containers of one user started together, four
    times over (before the fix, 26 of 180 such runs failed with 125)."""
    argv = shlex.join(zookeeper_argv(runner, 4, "-r", str(rootfs_for(runner)), "true"))
    script = (f"for round in 1 2 3 4; do for i in $(seq 15); do {argv} & done; wait; done "
              "2>&1; echo done")
    done = runner.run(["sh", "-c", script], timeout=300)
    assert done.stdout == "done\n", done.stdout


@pytest.mark.parametrize("part", [2, 4])
def test_a_caller_whose_id_has_no_mapping(runner: Runner, rootfs_for, part):
    """Under `unshare -U` (no map), the kernel refuses the container's user namespace:
    zookeeper warned that "nobody" had no subordinate range, then "failed to clone
    the container process: Operation not permitted" (attack review, session 29)."""
    args = ["-r", str(rootfs_for(runner))] if part >= 4 else []
    done = runner.run(["unshare", "-U", *zookeeper_argv(runner, part, *args, "true")])
    assert done.returncode == 125
    assert done.stderr.startswith("zookeeper: your user id 65534 has no mapping in the user "
                                  "namespace zookeeper runs in") and done.stderr.count("\n") == 1


def test_the_sweep_leaves_the_users_own_zoo_directories(tmp_path):
    """remove_orphans took any unlocked zoo.XXXXXX of ours for a killed zookeeper's
    mount point, and removed every zoo.XXXXXX.overlay* beside it, whatever it held:
    a user's /tmp/zoo.backup.overlay went with its files (attack review, session 27).
    Now only mkdtemp's names, an empty mount point, an overlay of upper/ and work/."""
    from conftest import part_modules
    (tmp_path / "zoo.backup" / "data").mkdir(parents=True)
    (tmp_path / "zoo.backup.overlay" / "sub").mkdir(parents=True)
    (tmp_path / "zoo.backup.overlay" / "sub" / "b").write_text("precious\n")
    (tmp_path / "zoo.photos").mkdir()
    (tmp_path / "zoo.photos.overlay-backup").mkdir()
    (tmp_path / "zoo.photos.overlay-backup" / "important.txt").write_text("kept\n")
    (tmp_path / "zoo.photos.overlay.abc123").mkdir()
    (tmp_path / "zoo.photos.overlay.abc123" / "mine.txt").write_text("kept\n")
    (tmp_path / "zoo.a1b2c3").mkdir()  # a killed zookeeper's: gone, with its overlay
    (tmp_path / "zoo.a1b2c3.overlay.d4e5f6" / "upper" / "etc").mkdir(parents=True)
    (tmp_path / "zoo.a1b2c3.overlay.d4e5f6" / "work").mkdir()
    with part_modules(4, "rootfs") as m:
        m.rootfs.remove_orphans(str(tmp_path), {os.geteuid()})
    assert sorted(os.listdir(tmp_path)) == [
        "zoo.backup", "zoo.backup.overlay", "zoo.photos.overlay-backup",
        "zoo.photos.overlay.abc123"]
    assert (tmp_path / "zoo.backup.overlay" / "sub" / "b").read_text() == "precious\n"


def start_trapping(runner: Runner, traps: dict[int, str], *options: str) -> subprocess.Popen:
    """Part 2 running a shell, PID 1 of its namespace, with a handler (a trap) for
    each signal of traps; once it has said "ready"."""
    script = "".join(f"trap '{action}' {int(signum)}; " for signum, action in traps.items())
    proc = runner.popen(2, *options, "sh", "-c",
                        script + "echo ready; while :; do sleep 0.2; done",
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n", proc.stderr.read()
    return proc


def line_within(stream, text: str, seconds: float) -> bool:
    """Whether text comes on stream (a pipe) within seconds: read from its file
    descriptor, past the stream's buffer, which select(2) cannot see."""
    deadline = time.monotonic() + seconds
    seen = b""
    while text.encode() not in seen:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([stream.fileno()], [], [], left)[0]:
            return False
        chunk = os.read(stream.fileno(), 65536)
        if not chunk:
            return False
        seen += chunk
    return True


def ended_within(proc: subprocess.Popen, seconds: float) -> bool:
    try:
        proc.wait(timeout=seconds)
        return True
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        return False


def test_an_outside_sigalrm_after_a_grace_period_is_passed_on(runner: Runner):
    """Once a grace period had ended (the command caught SIGTERM), every later SIGALRM
    was taken for its end: never passed on (review of session 20)."""
    proc = start_trapping(runner, {signal.SIGTERM: "echo got TERM",
                                   signal.SIGALRM: "echo got ALRM; exit 7"}, "-v")
    proc.send_signal(signal.SIGTERM)
    # Past the grace period, as explain mode says: the command caught it and runs on.
    # (Not a sleep: a SIGALRM sent while the timer's own is still pending, zookeeper
    # starved of CPU on a busy machine, is one signal, as standard signals are.)
    assert line_within(proc.stderr, "end of the grace period for SIGTERM = caught", 30), \
        "no end of the grace period in explain mode"
    proc.send_signal(signal.SIGALRM)
    assert ended_within(proc, 10), "the SIGALRM never reached the command"
    assert (proc.returncode, proc.stdout.read()) == (7, "got TERM\ngot ALRM\n")


def test_a_full_explain_pipe_does_not_hold_back_the_grace_kill(runner: Runner):
    """-v 2>&1 | less, the pager paused: with the pipe full, explain mode's line came
    before the grace period's SIGKILL, and the write, blocked, held it back (review,
    2026-12-05); the forward's line came before the timer was set, too."""
    read_end, write_end = os.pipe()
    try:
        proc = subprocess.Popen(runner.command(zookeeper_argv(
            runner, 2, "-v", "sh", "-c", "echo ready; exec yes zzz >&2")),
            env=runner.env(), cwd=runner.workdir, stdout=subprocess.PIPE, stderr=write_end)
    finally:
        os.close(write_end)
    try:
        assert proc.stdout.readline() == b"ready\n"
        yes = running_under(proc, "yes zzz")
        time.sleep(0.5)  # the pipe (64 KiB) is full long before
        proc.send_signal(signal.SIGTERM)  # PID 1 has no handler: killed after the grace
        deadline = time.monotonic() + 15
        while still_running(yes, "yes zzz") and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not still_running(yes, "yes zzz"), "the grace period's SIGKILL never came"
    finally:
        os.close(read_end)  # zookeeper's blocked write fails now (EPIPE): it ends
        ended_within(proc, 15)
    assert proc.returncode == -signal.SIGKILL


def test_the_grace_timers_own_sigalrm_is_not_passed_on(runner: Runner):
    """The timer rang while zookeeper was stopped, and a SIGUSR1 came too: its handler
    ran first (Python runs them by number) and re-armed the timer, and the timer's
    SIGALRM then went to the container as if another process had sent it."""
    proc = start_trapping(runner, {signal.SIGUSR1: "echo got USR1",
                                   signal.SIGALRM: "echo got ALRM"})
    proc.send_signal(signal.SIGUSR1)
    time.sleep(0.5)
    proc.send_signal(signal.SIGSTOP)
    time.sleep(3)  # the grace period's timer rings meanwhile
    proc.send_signal(signal.SIGUSR1)
    proc.send_signal(signal.SIGCONT)
    time.sleep(1)
    proc.send_signal(signal.SIGTERM)  # no trap: killed after the grace period
    assert ended_within(proc, 10)
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
    assert "got ALRM" not in proc.stdout.read()


def test_a_caught_signal_in_a_grace_period_does_not_cancel_the_kill(runner: Runner):
    """PID 1 ignores SIGTERM (no handler) and catches SIGPWR: a SIGPWR a second after
    the SIGTERM made zookeeper decide on SIGPWR alone, and the container ran on."""
    proc = start_trapping(runner, {signal.SIGPWR: "echo got PWR"})
    proc.send_signal(signal.SIGTERM)
    time.sleep(1)
    proc.send_signal(signal.SIGPWR)
    assert ended_within(proc, 10), "the container outlived its grace period"
    assert proc.returncode == -signal.SIGKILL, proc.stderr.read()
