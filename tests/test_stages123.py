"""Stages 1-3 on this host, as root and as an unprivileged user with subid ranges."""

import errno
import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import PARTS, ROOT, Runner, part_modules, subid_range

sys.path.insert(0, str(ROOT / "grader"))
import runner as grader_runner  # its process table: one reader of /proc

NAMESPACES = ["user", "cgroup", "ipc", "net", "mnt", "pid", "uts"]
SEGFAULT = "import ctypes; ctypes.string_at(0)"  # a real fault: PID 1 cannot ignore it


def lines(text: str) -> list[str]:
    return text.strip().splitlines()


# Stage 1 ---------------------------------------------------------------------------


@pytest.mark.parametrize("part", [1, 2, 3])
def test_exit_code_is_the_containers(runner: Runner, part):
    done = runner.zookeeper(part, "sh", "-c", "echo hello; exit 42")
    assert done.stdout == "hello\n"
    assert done.returncode == 42, done.stderr


@pytest.mark.parametrize("part", [1, 2, 3])
def test_death_by_signal_is_passed_on(runner: Runner, part):
    done = runner.zookeeper(part, runner.python, "-c", SEGFAULT)
    assert done.returncode == -signal.SIGSEGV, done.stderr
    # A shell reports it as 128 + 11.
    shell = runner.run(["sh", "-c", f"'{runner.python}' "
                                    f"'{runner.workdir / PARTS[part] / 'zookeeper.py'}' "
                                    f"'{runner.python}' -c '{SEGFAULT}'; echo status=$?"])
    assert "status=139" in shell.stdout


def test_kernel_sent_signal_to_pid1(runner: Runner):
    # RLIMIT_CPU: PID 1 of a namespace drops the kernel's SIGXCPU (no handler), but
    # not the SIGKILL at the hard limit; zookeeper then dies of SIGKILL too (137).
    done = runner.zookeeper(2, "sh", "-c", "ulimit -t 1; while :; do :; done")
    assert done.returncode == -signal.SIGKILL, done.stderr


@pytest.mark.parametrize("part", [1, 2, 3])
def test_command_not_found_is_127(runner: Runner, part):
    done = runner.zookeeper(part, "no-such-command-zk")
    assert done.returncode == 127
    assert lines(done.stderr)[-1] == ("zookeeper: failed to execute no-such-command-zk: "
                                      "No such file or directory")


@pytest.mark.parametrize("part", [1, 3])
def test_not_executable_is_126(runner: Runner, part):
    plain = runner.workdir / "not-executable"
    plain.write_text("data\n")
    plain.chmod(0o644)
    done = runner.zookeeper(part, str(plain))
    assert done.returncode == 126
    assert lines(done.stderr)[-1] == f"zookeeper: failed to execute {plain}: Permission denied"


def test_child_waits_for_go(runner: Runner):
    # The parent's explain trace shows the go message before the child's exec.
    done = runner.zookeeper(2, "-v", "true")
    trace = lines(done.stderr)
    go = next(i for i, x in enumerate(trace) if "newgidmap" in x or "gid_map" in x)
    execs = next(i for i, x in enumerate(trace) if "execvp" in x)
    assert go < execs


@pytest.mark.parametrize("part,expected", [(1, -signal.SIGTERM), (2, -signal.SIGKILL)])
def test_sigterm_reaches_the_container(runner: Runner, part, expected):
    """Part 1: sleep dies of SIGTERM.  Part 2: sleep is PID 1, which ignores it, so
    zookeeper kills it after the grace period."""
    proc = runner.popen(part, "sleep", "100", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    sleeps = processes_under(proc.pid, "sleep 100")
    assert sleeps, "the container's sleep did not start"
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=10)
    assert proc.returncode == expected
    assert time.monotonic() - started < 6
    assert not still_running(sleeps, "sleep 100")


def test_sigterm_handled_by_the_container(runner: Runner):
    proc = runner.popen(2, "sh", "-c", "trap 'exit 7' TERM; sleep 100 & wait",
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    time.sleep(1.0)
    sleeps = processes_under(proc.pid, "sleep 100")
    assert sleeps, "the container's sleep did not start"
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 7
    time.sleep(0.2)
    # SIGTERM went to the container's process group: the sleep died of it, and would
    # have died with the namespace's init anyway.
    assert not still_running(sleeps, "sleep 100")


@pytest.mark.parametrize("part", [1, 2])
def test_ctrl_c_reaches_the_command_a_shell_runs(runner: Runner, part):
    """SIGINT goes to the container's process group: the shell's sleep dies of it, the
    shell's handler runs, and a PID 1 that handles it is not killed for it."""
    proc = runner.popen(part, "sh", "-c", "trap 'echo interrupted' INT; echo ready; "
                        "sleep 100; i=0; while [ $i -lt 20 ]; do sleep 0.2; i=$((i+1)); done; "
                        "echo after", stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                        text=True)  # it lives on past the 2 s grace: not killed for it
    assert proc.stdout.readline() == "ready\n"
    deadline = time.monotonic() + 20
    while not processes_under(proc.pid, "sleep 100"):  # a SIGINT before it would be lost
        assert time.monotonic() < deadline, "the shell's sleep did not start"
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert (proc.returncode, out) == (0, "interrupted\nafter\n"), err


HANDLES_TERM = ("import signal, time; signal.signal(signal.SIGTERM, lambda *a: None); "
                "print('up', flush=True); time.sleep(8); print('ran on')")


def slow_map_tools(runner: Runner) -> str:
    """A PATH whose newuidmap and newgidmap take a second (the grader's slow tools):
    the child waits that long for its maps, after clone, before it sets up."""
    slow = runner.fresh_dir()
    for tool in ("newuidmap", "newgidmap"):
        (slow / tool).write_text(grader_runner.checks.SLOW_MAP_TOOL.format(
            real=f"/usr/bin/{tool}"))
        (slow / tool).chmod(0o755)
    return f"{slow}:/usr/local/bin:/usr/bin:/bin"


def test_a_signal_before_exec_is_not_lost_on_a_command_with_a_handler(runner: Runner):
    """A SIGTERM that comes while the id maps are written (slowed to a second here) finds
    the child not yet running its command: PID 1 drops it, so the command's handler,
    set later, never sees it.  zookeeper kills the container after the grace anyway."""
    proc = runner.popen(2, "-v", runner.python, "-c", HANDLES_TERM,
                        env={"PATH": slow_map_tools(runner)},
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # the child exists: its id maps take a second from here
        if line.startswith("zookeeper: clone("):
            break
    proc.send_signal(signal.SIGTERM)
    started = time.monotonic()
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL and "ran on" not in out, out
    assert time.monotonic() - started < 7


def test_ctrl_z_stops_the_container_with_zookeeper(runner: Runner):
    proc = runner.popen(2, "sh", "-c", "echo ready; i=0; while [ $i -lt 30 ]; do sleep 0.1; "
                        "i=$((i+1)); done; echo done", stdout=subprocess.PIPE,
                        stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline() == "ready\n"
    shells = processes_under(proc.pid, "sh -c echo ready; i=0; while [ $i -lt 30 ]; do sleep "
                             "0.1; i=$((i+1)); done; echo done")
    assert shells
    proc.send_signal(signal.SIGTSTP)
    deadline = time.monotonic() + 20
    while states({proc.pid}) != ["T"]:  # zookeeper stops itself after the container
        assert time.monotonic() < deadline, states({proc.pid})
        time.sleep(0.05)
    time.sleep(4)  # the loop's 3 s would be over, had it run on
    # Stopped: T, or D for a shell stopped while it waits in vfork(2) for a child
    # stopped before its exec.
    assert all(s in ("T", "D") for s in states(shells)), states(shells)
    proc.send_signal(signal.SIGCONT)
    out, err = proc.communicate(timeout=30)
    assert (proc.returncode, out) == (0, "done\n"), err


def states(pids: set[int]) -> list[str]:
    """Each process's state letter (R, S, T for stopped...), or 'gone'."""
    table = grader_runner.process_table()
    return [table[pid].state if pid in table else "gone" for pid in sorted(pids)]


def processes_under(root: int, text: str) -> set[int]:
    """The pids of root's descendants whose command line is text: this test's own,
    never another user's or another test's `sleep 100` on the same machine."""
    return {pid for pid in grader_runner.descendants(grader_runner.process_table(), root)
            if grader_runner.command_line(pid) == text}


def still_running(pids: set[int], text: str) -> set[int]:
    return {pid for pid in pids if grader_runner.command_line(pid) == text}


# Bad input -------------------------------------------------------------------------


# getopt(3)'s forms, and what zookeeper makes of each: the options it took (those
# set), its command; or the one line it refuses with.
GETOPT_CASES = [
    (["true"], {}, ["true"]),
    (["-Pn", "sh", "-c", "x"], {"mount_proc": True, "network": True}, ["sh", "-c", "x"]),
    (["-r", "fs", "ls", "-l"], {"rootfs": "fs"}, ["ls", "-l"]),
    (["-rfs", "true"], {"rootfs": "fs"}, ["true"]),
    (["-Pr", "fs", "true"], {"mount_proc": True, "rootfs": "fs"}, ["true"]),
    (["-rP", "true"], {"rootfs": "P"}, ["true"]),
    (["--", "-P", "true"], {}, ["-P", "true"]),
    (["-", "x"], {}, ["-", "x"]),
    (["-P", "--", "--"], {"mount_proc": True}, ["--"]),
    (["true", "-P"], {}, ["true", "-P"]),
    (["-v", "-c", "50", "-p", "10", "-o", "-r", "fs", "-h"],
     {"verbose": True, "cpu": 50.0, "procs": 10, "overlay": True, "rootfs": "fs",
      "help": True}, []),
    ([], None, "no command given"),
    (["-m", "-P", "true"], None, "-m -P: not a memory size"),
    (["-r"], None, "option -r requires argument"),
    (["-Pr"], None, "option -r requires argument"),
    (["-x", "true"], None, "option -x not recognized"),
    (["-P-", "true"], None, "option -- not recognized"),
    (["-:"], None, "option -: not recognized"),
    (["--long", "true"], None, "option --long not recognized"),
    (["--help"], None, "option --help not recognized"),
    (["--root=fs", "true"], None, "option --root not recognized"),
    (["-r", "", "true"], None, "-r '': the rootfs must be a directory"),
]


@pytest.mark.parametrize("argv,taken,rest", GETOPT_CASES,
                         ids=[" ".join(c[0]) or "none" for c in GETOPT_CASES])
def test_options_follow_getopt3(argv, taken, rest, monkeypatch):
    """parse_args reads the command line by getopt(3)'s rules (Python's getopt): options
    first, grouped or not, a value attached or next; "--" or the first word that is
    not an option ends them.  What it refuses, it says in one line."""
    monkeypatch.delenv("ZOOKEEPER_VERBOSE", raising=False)  # -v's default
    with part_modules(1, "options") as m:
        if taken is None:
            with pytest.raises(m.errors.ZooError) as refused:
                m.options.parse_args(argv)
            assert refused.value.message.startswith(rest), refused.value.message
            return
        opts = m.options.parse_args(argv)
        default = m.options.Options()
        assert {k: v for k, v in vars(opts).items()
                if k != "command" and v != getattr(default, k)} == taken
        assert opts.command == rest


@pytest.mark.parametrize("part", [1, 3])
@pytest.mark.parametrize("args,message", [
    (["-x", "true"], "zookeeper: option -x not recognized"),
    ([], "zookeeper: no command given"),
    (["-m", "abc", "true"], "zookeeper: -m abc: not a memory size"),
    (["-p", "0", "true"], "zookeeper: -p 0: not a number of processes"),
    (["-c", "x", "true"], "zookeeper: -c x: not a CPU percentage"),
])
def test_bad_input_one_line_and_125(runner: Runner, part, args, message):
    done = runner.zookeeper(part, *args)
    assert done.returncode == 125
    assert done.stderr.splitlines()[0].startswith(message)
    assert "Traceback" not in done.stderr


def test_a_getopt_that_needs_gettext_still_starts(runner: Runner):
    """zookeeper.py imports getopt with gettext unavailable, for its fallback (no
    catalog of getopt's messages exists; gettext brings re: 7% of a start).  A getopt
    without that fallback (a later Python's, say) fails that import: zookeeper then
    imports it with gettext, as usual, and runs as before."""
    shim = runner.fresh_dir()
    (shim / "getopt.py").write_text(
        "import os\n"
        "with open(os.path.join(os.path.dirname(__file__), 'tries'), 'a') as tries:\n"
        "    tries.write('import getopt\\n')\n"
        "import gettext  # noqa: F401  (this getopt needs gettext)\n"
        "import sysconfig\n"
        "with open(sysconfig.get_path('stdlib') + '/getopt.py') as real:\n"
        "    exec(real.read())\n")
    env = {"PYTHONPATH": str(shim)}
    refused = runner.zookeeper(1, "-x", "true", env=env)
    assert refused.returncode == 125, refused.stderr
    assert refused.stderr.startswith("zookeeper: option -x not recognized\n"), refused.stderr
    assert (shim / "tries").read_text() == "import getopt\n" * 2  # refused, then with gettext
    done = runner.zookeeper(1, "sh", "-c", "echo ran", env=env)
    assert (done.returncode, done.stdout) == (0, "ran\n"), done.stderr


def test_help(runner: Runner):
    done = runner.zookeeper(1, "-h")
    assert done.returncode == 0
    assert done.stdout.startswith("Usage: zookeeper [options] <command>")
    assert "-n         Enable networking in the container" in done.stdout


def test_later_options_are_accepted_and_said_to_do_nothing(runner: Runner):
    done = runner.zookeeper(1, "-m", "64M", "-n", "true")
    assert done.returncode == 0
    assert "-m/-c/-p (resource limits): from part 5 on" in done.stderr
    assert "-n (networking): from part 6 on" in done.stderr


def test_nonexistent_rootfs_in_early_part_is_only_noted(runner: Runner):
    done = runner.zookeeper(3, "-r", "/nonexistent", "true")
    assert done.returncode == 0
    assert ": from part 4 on" in done.stderr


def test_missing_newuidmap(user_runner: Runner):
    """Without newuidmap on PATH: one line naming the package, 125, nothing left."""
    bin_dir = user_runner.workdir / "bin-without-newuidmap"
    bin_dir.mkdir(exist_ok=True)
    for tool in ("sh", "true"):
        target = bin_dir / tool
        if not target.exists():
            target.symlink_to(f"/bin/{tool}")
    done = user_runner.zookeeper(2, "true", env={"PATH": str(bin_dir)})
    assert done.returncode == 125
    assert done.stderr.strip() == (f"zookeeper: newuidmap not found in PATH ({bin_dir}): "
                                   "install the uidmap package (sudo apt-get install uidmap), "
                                   "or put its directory in PATH")


# Stage 2 ---------------------------------------------------------------------------


@pytest.mark.parametrize("part", [2, 3])
def test_root_inside_with_both_map_lines(runner: Runner, part):
    done = runner.zookeeper(part, "sh", "-c", "id -u; id -g; cat /proc/self/uid_map "
                                              "/proc/self/gid_map")
    assert done.returncode == 0, done.stderr
    out = [line.split() for line in lines(done.stdout)]
    assert out[:2] == [["0"], ["0"]]
    name = pwd.getpwuid(runner.uid).pw_name
    start, count = subid_range("/etc/subuid", name, runner.uid)
    gstart, gcount = subid_range("/etc/subgid", name, runner.uid)
    if runner.who == "root":  # root maps its range only: the host's root stays out
        assert out[2:4] == [f"0 {start} {count}".split(), f"0 {gstart} {gcount}".split()]
        return
    assert out[2] == ["0", str(runner.uid), "1"]
    assert out[3] == ["1", str(start), str(count)]
    assert out[4] == ["0", str(runner.gid), "1"]
    assert out[5] == ["1", str(gstart), str(gcount)]
    assert "warning" not in done.stderr and "no subordinate" not in done.stderr


def test_single_map_without_a_range(workdir):
    """A user with no subid range gets one warning line and root mapped alone."""
    runner = Runner("user", workdir)
    pw = pwd.getpwnam("zoonosub")
    runner.uid, runner.gid, runner.home = pw.pw_uid, pw.pw_gid, "/"
    done = runner.zookeeper(2, "sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/setgroups")
    assert done.returncode == 0, done.stderr
    out = lines(done.stdout)
    assert out[0] == "0"
    assert out[1].split() == ["0", str(pw.pw_uid), "1"]
    assert out[2] == "deny"
    assert lines(done.stderr) == [
        "zookeeper: no subordinate id range for zoonosub in /etc/subuid and /etc/subgid: "
        "only root is mapped in the container (see subuid(5))"]


@pytest.mark.parametrize("part", [2, 3])
def test_hostname_pid1_and_only_lo(runner: Runner, part):
    done = runner.zookeeper(part, "sh", "-c", "hostname; echo $$; cat /proc/self/net/dev")
    assert done.returncode == 0, done.stderr
    out = lines(done.stdout)
    assert out[0] == "zoo"
    assert out[1] == "1"
    interfaces = [x.split(":")[0].strip() for x in out[2:] if ":" in x]
    assert interfaces == ["lo"]


def test_all_seven_namespaces_differ(runner: Runner):
    script = "; ".join(f"readlink /proc/self/ns/{ns}" for ns in NAMESPACES)
    inside = lines(runner.zookeeper(2, "sh", "-c", script).stdout)
    outside = lines(runner.run(["sh", "-c", script]).stdout)
    assert len(inside) == len(outside) == len(NAMESPACES)
    for ns, a, b in zip(NAMESPACES, inside, outside, strict=True):
        assert a != b, f"{ns} namespace is the host's"


def test_part1_shares_the_hosts_namespaces(runner: Runner):
    script = "readlink /proc/self/ns/uts /proc/self/ns/pid"
    assert runner.zookeeper(1, "sh", "-c", script).stdout == runner.run(
        ["sh", "-c", script]).stdout


# Stage 3 ---------------------------------------------------------------------------

DROPPED = [30, 37, 29, 36, 2, 4, 14, 33, 32, 27, 12, 13, 31, 34, 21, 22, 16, 23, 17, 24, 25,
           35]


def status_fields(text: str) -> dict:
    return dict(line.split(":\t", 1) for line in lines(text) if ":\t" in line)


def test_capabilities_no_new_privs_and_seccomp(runner: Runner):
    done = runner.zookeeper(3, "cat", "/proc/self/status")
    assert done.returncode == 0, done.stderr
    fields = status_fields(done.stdout)
    bounding = int(fields["CapBnd"], 16)
    for cap in DROPPED:
        assert not bounding & (1 << cap), f"capability {cap} is still in the bounding set"
    assert bounding & (1 << 0), "CAP_CHOWN should stay"
    assert int(fields["CapInh"], 16) == 0
    assert int(fields["CapAmb"], 16) == 0
    assert fields["NoNewPrivs"] == "1"
    assert fields["Seccomp"] == "2"


def test_part2_has_no_filter(runner: Runner):
    fields = status_fields(runner.zookeeper(2, "cat", "/proc/self/status").stdout)
    assert fields["Seccomp"] == "0" and fields["NoNewPrivs"] == "0"


def test_each_seccomp_rule_refuses_inside_and_not_outside(runner: Runner):
    """Both ways the filter is had: compiled by libseccomp, then read from the cache."""
    helper = str(runner.workdir / "grader" / "helpers" / "try_syscalls.py")
    env = {"TRY_DIR": str(runner.fresh_dir(for_container=True)),
           "XDG_CACHE_HOME": str(runner.fresh_dir())}
    outside = json.loads(runner.run([runner.python, helper], env=env).stdout)
    for how in ("compiled", "cached"):
        inside = runner.zookeeper(3, "-v", runner.python, helper, env=env)
        assert inside.returncode == 0, inside.stderr
        assert ("read the seccomp program cached" in inside.stderr) == (how == "cached")
        inside = json.loads(inside.stdout)
        assert set(inside) == set(outside) and len(inside) == 24
        for rule, result in inside.items():
            expected = "ENOSYS" if rule == "clone3" else "EPERM"
            assert result == expected, f"{rule} inside gave {result} ({how})"
            if rule == "io_uring_setup" and io_uring_disabled():
                continue  # the host refuses it to everyone: EPERM outside too
            assert outside[rule] not in ("EPERM", "ENOSYS"), f"{rule} outside gave {outside[rule]}"


def io_uring_disabled() -> bool:
    """kernel.io_uring_disabled=2: io_uring_setup(2) is EPERM for every process."""
    try:
        return Path("/proc/sys/kernel/io_uring_disabled").read_text().strip() == "2"
    except OSError:
        return False


def test_a_child_that_fails_before_go_is_heard(user_runner: Runner):
    """The child fails while the parent maps its ids: writing go then meets a closed
    pipe (EPIPE), and what the user must see is the child's reason, not the EPIPE."""
    import shutil

    copy = user_runner.workdir / "fails-before-go" / PARTS[2]
    if not copy.exists():
        shutil.copytree(user_runner.workdir / PARTS[2], copy)
        source = (copy / "container.py").read_text()
        wait = "        message = os.read(go_read, 64)\n"
        assert wait in source
        (copy / "container.py").write_text(source.replace(
            wait, "        raise ZooError('q4 broken on purpose')\n" + wait))
    for _ in range(3):
        done = user_runner.run([user_runner.python, str(copy / "zookeeper.py"), "true"])
        assert (done.returncode, done.stderr) == (125, "zookeeper: q4 broken on purpose\n")


# ioctl(2) requests that the terminal rules must leave alone: the request number is
# compared whole, not as a mask (FIONREAD 0x541B and TIOCGWINSZ 0x5413 have all of
# TIOCSTI's 0x5412 bits set).  TIOCSETD (0x5423) and TIOCLINUX (0x541C): a container
# set your terminal's line discipline to N_NULL, which outlived it (review, session 28).
# TIOCEXCL (0x540C) and TCXONC (0x540A) outlived it too: the terminal locked against
# every later open, its output stopped (review, session 29).  TIOCNXCL (0x540D) and
# TCFLSH (0x540B), beside them, stay allowed.
IOCTLS = """
import fcntl, os, struct, termios
r, w = os.pipe()
os.write(w, b"abc")
print("FIONREAD", struct.unpack("i", fcntl.ioctl(r, termios.FIONREAD, bytes(4)))[0])
for name, request in (("TIOCGWINSZ", 0x5413), ("TIOCGETD", 0x5424), ("TIOCNXCL", 0x540D),
                      ("TCFLSH", 0x540B), ("TIOCSTI", 0x5412), ("TIOCSETD", 0x5423),
                      ("TIOCLINUX", 0x541C), ("TIOCEXCL", 0x540C), ("TCXONC", 0x540A)):
    try:
        fcntl.ioctl(r, request, bytes(8))
    except OSError as e:
        print(name, os.strerror(e.errno))
"""


def test_the_terminal_rules_refuse_their_requests_only(runner: Runner):
    done = runner.zookeeper(3, runner.python, "-c", IOCTLS)
    assert done.returncode == 0, done.stderr
    not_a_terminal, refused = os.strerror(errno.ENOTTY), os.strerror(errno.EPERM)
    assert done.stdout.splitlines() == [
        "FIONREAD 3",
        f"TIOCGWINSZ {not_a_terminal}",  # a pipe is no terminal: asked, not refused
        f"TIOCGETD {not_a_terminal}", f"TIOCNXCL {not_a_terminal}", f"TCFLSH {not_a_terminal}",
        f"TIOCSTI {refused}", f"TIOCSETD {refused}", f"TIOCLINUX {refused}",
        f"TIOCEXCL {refused}", f"TCXONC {refused}"]


SPOILED_CACHES = {
    "writable by others": lambda path, data: path.chmod(0o666),
    "another key": lambda path, data: path.write_bytes(data.replace(b"crc32=", b"crc32=0", 1)),
    "cut short": lambda path, data: path.write_bytes(data[:-4]),
    "cut at an instruction": lambda path, data: path.write_bytes(data[:-8]),
    "owned by root": lambda path, data: os.chown(path, 0, 0),
}


@pytest.mark.parametrize("spoil", SPOILED_CACHES)
def test_a_cache_not_to_trust_is_compiled_again(user_runner: Runner, spoil):
    base = user_runner.fresh_dir()
    env = {"XDG_CACHE_HOME": str(base)}
    cache = base / "zookeeper" / "seccomp.bpf"
    assert user_runner.zookeeper(3, "true", env=env).returncode == 0
    good = cache.read_bytes()
    assert good.startswith(b"zookeeper seccomp cache 2 ") and cache.stat().st_mode & 0o777 == 0o600
    SPOILED_CACHES[spoil](cache, good)
    done = user_runner.zookeeper(3, "-v", "grep", "Seccomp:", "/proc/self/status", env=env)
    assert done.returncode == 0, done.stderr
    assert "seccomp_rule_add(" in done.stderr and "cached in" not in done.stderr
    assert status_fields(done.stdout)["Seccomp"] == "2"
    assert cache.read_bytes() == good and cache.stat().st_uid == user_runner.uid
    assert cache.stat().st_mode & 0o777 == 0o600


def test_no_cache_without_a_home_of_our_own(root_runner: Runner, user_runner: Runner):
    """Root with a user's cache directory leaves it alone; with no home at all, no cache."""
    users = str(user_runner.fresh_dir())
    for runner, env in ((root_runner, {"XDG_CACHE_HOME": users}),
                        (user_runner, {"XDG_CACHE_HOME": "", "HOME": ""})):
        done = runner.zookeeper(3, "grep", "Seccomp:", "/proc/self/status", env=env)
        assert done.returncode == 0 and done.stderr == "", done.stderr
        assert status_fields(done.stdout)["Seccomp"] == "2"
    assert os.listdir(users) == []


def test_seccomp_experiment_before_and_after(runner: Runner):
    """The written experiment: chmod u+s works in part 2, is refused in part 3."""
    script = str(runner.workdir / PARTS[3] / "experiments" / "setuid.sh")
    scratch = runner.fresh_dir(for_container=True)
    before = runner.zookeeper(2, "sh", script, str(scratch))
    after = runner.zookeeper(3, "sh", script, str(scratch))
    assert "setuid bit set" in before.stdout, before.stdout + before.stderr
    assert "Operation not permitted" in after.stdout + after.stderr
    assert os.listdir(scratch) == []


def test_the_seccomp_experiment_takes_no_name_planted_for_it(runner: Runner):
    """Run as README says (DIR /tmp, where anyone writes), the experiment's file is
    named at random: a link planted by another user under a name it could guess (in a
    PID namespace, $$ is 1) leads nowhere, and the file it names stays as it was."""
    script = str(runner.workdir / PARTS[3] / "experiments" / "setuid.sh")
    scratch = runner.fresh_dir(for_container=True)
    scratch.chmod(0o1777)
    victim = runner.fresh_dir(for_container=True) / "notes.txt"
    victim.write_text("my notes\n")
    os.chown(victim, *runner.inside)
    for n in range(1, 4):
        (scratch / f"zoo-setuid-experiment.{n}").symlink_to(victim)
    done = runner.zookeeper(2, "sh", script, str(scratch))
    assert "setuid bit set: -rwS" in done.stdout, done.stdout + done.stderr
    assert victim.read_text() == "my notes\n"
    assert not victim.stat().st_mode & stat.S_ISUID


@pytest.mark.parametrize("part", [1, 2])
def test_a_process_limit_at_clone_is_named(user_runner: Runner, part: int):
    """clone(2) refused with EAGAIN (RLIMIT_NPROC reached) gives one line naming the
    limits, in part 1 as in the parts that also explain a refused user namespace."""
    script = str(user_runner.workdir / PARTS[part] / "zookeeper.py")
    # RLIMIT_NPROC counts the user's processes: 1 is reached by zookeeper itself.
    done = user_runner.run(["prlimit", "--nproc=1", user_runner.python, script, "true"])
    assert done.returncode == 125, done.stderr
    assert done.stderr.strip() == (
        "zookeeper: failed to clone the container process: too many processes: a limit "
        "was reached (ulimit -u, a cgroup's pids.max, kernel.threads-max or "
        "kernel.pid_max; fork(2))")


def test_kernel_refusing_user_namespaces_is_named(user_runner: Runner):
    """When the kernel refuses a user namespace, one line names the cause and the fix.
    user.max_user_namespaces is per user namespace: set it to 0 in one of our own."""
    script = str(user_runner.workdir / PARTS[2] / "zookeeper.py")
    done = user_runner.run(["unshare", "-Ur", "sh", "-c",
                            "echo 0 > /proc/sys/user/max_user_namespaces && "
                            f"exec '{user_runner.python}' '{script}' true"])
    assert done.returncode == 125
    assert done.stderr.splitlines() == [  # the first: unshare -Ur's root is not the host's
        "zookeeper: zookeeper runs as root of a user namespace, not of the host: only "
        "that root is mapped in the container",
        "zookeeper: failed to clone the container process: user namespaces are disabled "
        "(user.max_user_namespaces=0): sudo sysctl user.max_user_namespaces=15000"]


@pytest.mark.parametrize("done, said", [
    ({1, 2}, "q4 (part 1) is not implemented yet"),
    ({1, 2, 4, 5}, "q3 (part 1) is not implemented yet")])
def test_a_part_1_half_done_says_what_is_next_in_one_line(user_runner: Runner, tmp_path,
                                                          done, said):
    """Working down the exercise table, q3 (waitpid) still to do: zookeeper read the
    child's report, then the missing q3 read the closed pipe again (EBADF, a
    traceback), in most runs.  Now one line, every time: the child's report first."""
    sys.path.insert(0, str(ROOT / "tools"))
    try:
        import generate
    finally:
        sys.path.pop(0)
    blocks = {b.q: b for b in generate.all_blocks(ROOT / "src")}
    part = user_runner.fresh_dir() / "part1_clone"
    shutil.copytree(ROOT / "skeleton", part)
    for path in part.glob("*.py"):
        path.write_text(generate.fill_blocks(path.read_text(), blocks, only=done))
    for _ in range(5):
        run = user_runner.run([user_runner.python, str(part / "zookeeper.py"), "echo", "hi"])
        assert (run.returncode, run.stderr.count("\n")) == (125, 1), run.stderr
        assert said in run.stderr and "Traceback" not in run.stderr


def test_part_3_without_the_venvs_pyseccomp_is_one_line(user_runner: Runner):
    """A Python without pyseccomp (the system's, not the lab's venv: here the venv's
    without its site-packages) and no cached program to fall back on: one line that
    names the Python and the venv, not a traceback."""
    cache = user_runner.fresh_dir()
    run = user_runner.run([user_runner.python, "-S", str(user_runner.workdir / PARTS[3]
                                                        / "zookeeper.py"), "true"],
                          env={"XDG_CACHE_HOME": str(cache)})
    assert run.returncode == 125 and run.stderr.count("\n") == 1, run.stderr
    assert run.stderr.startswith("zookeeper: failed to compile the seccomp filter: No "
                                 "module named 'pyseccomp' (this is ")
    assert ". .venv/bin/activate" in run.stderr


def test_root_unmapped_yet_is_said_so():
    """setresuid(2) gives EINVAL for an id the user namespace does not map: the child
    went on before its maps were written (or they were written wrong).  Said so, not
    just "Invalid argument"."""
    import errno as errno_module

    with part_modules(2, "idmap") as m:
        def unmapped(*ids):
            raise OSError(errno_module.EINVAL, os.strerror(errno_module.EINVAL))

        m.kernel.sys_setgroups = lambda groups: None
        m.kernel.sys_setresgid = unmapped
        with pytest.raises(m.errors.ZooError) as caught:
            m.idmap.become_container_root()
    message = caught.value.message
    assert message.startswith("failed to become root in the container (setresgid, "
                               "setresuid): Invalid argument: "), message
    assert "uid_map and gid_map" in message and "\n" not in message, message
