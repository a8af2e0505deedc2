"""Explain mode (-v): every kernel-facing step, in order, from parent and child."""

import os
import re

import pytest
from conftest import Runner

# The steps each part takes, in order, as regular expressions on the trace's lines:
# the parent's, and the child's ("[pid]" lines).  The two run at the same time, so
# each is checked in its own order.
PARENT = {
    1: [r"^zookeeper: clone\(SIGCHLD\) = (\d+) +clone\(2\)",
        r"^zookeeper: waitpid\(\d+\) = \d+ \(exit status 0\) +waitpid\(2\)"],
    2: [r"^zookeeper: clone\(CLONE_NEWUSER\|CLONE_NEWCGROUP\|CLONE_NEWIPC\|CLONE_NEWNET\|"
        r"CLONE_NEWNS\|CLONE_NEWPID\|CLONE_NEWUTS\|SIGCHLD\) = \d+",
        r"^zookeeper: newuidmap \d+ 0 \d+ 1 1 \d+ \d+ = ok +newuidmap\(1\)",
        r"^zookeeper: newgidmap \d+ 0 \d+ 1 1 \d+ \d+ = ok +newgidmap\(1\)",
        r"^zookeeper: waitpid\(\d+\)"],
}
# From part 3, the parent compiles the seccomp filter before the clone (with an empty
# cache, as in these runs) and keeps its BPF program for the next run.
SECCOMP_BUILD = [
    r"^zookeeper: seccomp_rule_add\(ERRNO\(EPERM\), chmod, arg1 & 0o4000 == 0o4000\) = 0 +"
    r"seccomp_rule_add\(3\)",
    r"^zookeeper: seccomp_rule_add\(ERRNO\(ENOSYS\), clone3\) = 0",
    r"^zookeeper: seccomp_export_bpf\(\) = \d+ BPF instructions +seccomp_export_bpf\(3\)",
    r"^zookeeper: cache the seccomp program in /\S+/zookeeper/seccomp.bpf = ok"]
PARENT[3] = SECCOMP_BUILD + PARENT[2]
PARENT[4] = (SECCOMP_BUILD
             + [r'^zookeeper: mkdtemp\("/tmp/zoo.XXXXXX"\) = "/tmp/zoo\.\w{6}" +mkdtemp\(3\)']
             + PARENT[2] + [r'^zookeeper: rmdir\("/tmp/zoo\.\w{6}"\) = 0 +rmdir\(2\)'])
# This host has hybrid cgroups: no limit asked, no cgroup, and a line says so.
PARENT[5] = PARENT[4][:5] + [r"^zookeeper: no cgroup for the container = this host has "
                             r"hybrid cgroups"] + PARENT[4][5:]
PARENT[6] = PARENT[5]
# The child becomes root in its user namespace, once the parent has mapped its ids.
BECOME_ROOT = [r"^zookeeper: \[\d+\] setgroups\(0, \[\]\) = 0 +setgroups\(2\)",
               r"^zookeeper: \[\d+\] setresgid\(0, 0, 0\) = 0 +setresgid\(2\)",
               r"^zookeeper: \[\d+\] setresuid\(0, 0, 0\) = 0 +setresuid\(2\)"]
CHILD = {
    1: [r"^zookeeper: \[\d+\] prctl\(PR_SET_PDEATHSIG, SIGKILL\) = 0 +prctl\(2\)",
        # Every fd but 0-2 and the error pipe closed (around the pipe's number).
        r"^zookeeper: \[\d+\] close_range\(3, \d+, 0\) = 0 +close_range\(2\)",
        r"^zookeeper: \[\d+\] close_range\(\d+, ~0U, 0\) = 0 +close_range\(2\)",
        r"^zookeeper: \[\d+\] execvp\('true'"],
    2: BECOME_ROOT + [
        r'^zookeeper: \[\d+\] sethostname\("zoo"\) = 0 +sethostname\(2\)',
        r"^zookeeper: \[\d+\] execvp\('true'"],
    3: BECOME_ROOT + [
        r'^zookeeper: \[\d+\] sethostname\("zoo"\) = 0 +sethostname\(2\)',
        r"^zookeeper: \[\d+\] prctl\(PR_CAPBSET_DROP, CAP_AUDIT_CONTROL\) = 0 +prctl\(2\)",
        r"^zookeeper: \[\d+\] prctl\(PR_CAPBSET_DROP, CAP_WAKE_ALARM\) = 0",
        r"^zookeeper: \[\d+\] prctl\(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL\) = 0",
        r"^zookeeper: \[\d+\] capset\(inheritable=0x0\) = 0 +capset\(2\)",
        r"^zookeeper: \[\d+\] prctl\(PR_SET_NO_NEW_PRIVS, 1\) = 0",
        r"^zookeeper: \[\d+\] seccomp\(SECCOMP_SET_MODE_FILTER, 0, \{len=\d+\}\) = 0 +"
        r"seccomp\(2\)",
        r"^zookeeper: \[\d+\] execvp\('true'"],
}
MOUNTS = [r'^zookeeper: \[\d+\] mount\(NULL, "/", NULL, MS_REC\|MS_PRIVATE\) = 0 +mount\(2\)',
          # The rootfs the parent checked, opened again in the child's mount namespace
          # and bound by its fd's name.
          r'^zookeeper: \[\d+\] open\("[^"]+/zoo-fs", O_PATH\|O_DIRECTORY\|O_CLOEXEC\) = '
          r'\d+ +open\(2\)',
          r'^zookeeper: \[\d+\] mount\("/proc/self/fd/\d+", "/tmp/zoo\.\w{6}", NULL, '
          r'MS_BIND\|MS_REC\) = 0',
          # Mount points in the rootfs are opened without following links, then named
          # by their fd (rootfs.py).
          r'^zookeeper: \[\d+\] openat2\(\d+, "dev", \{O_PATH\|O_DIRECTORY\|O_CLOEXEC, '
          r'RESOLVE_NO_MAGICLINKS\|RESOLVE_NO_SYMLINKS\|RESOLVE_BENEATH\}\) = \d+ +openat2\(2\)',
          # /dev: an empty file made for each device, then the host's bound onto it.
          r'^zookeeper: \[\d+\] mknodat\(\d+, "null", S_IFREG\|0o666\) = 0 +mknod\(2\)',
          r'^zookeeper: \[\d+\] mount\("/dev/null", "/proc/self/fd/\d+/null", NULL, MS_BIND\)',
          r'^zookeeper: \[\d+\] symlinkat\("/proc/self/fd", \d+, "fd"\) = 0 +symlink\(2\)',
          r'^zookeeper: \[\d+\] mount\("proc", "/proc/self/fd/\d+", "proc", '
          r"MS_NOSUID\|MS_NODEV\|MS_NOEXEC\) = 0",
          r'^zookeeper: \[\d+\] mount\("/dev/null", "/proc/self/fd/\d+/kcore", NULL, MS_BIND\)'
          if os.path.exists("/proc/kcore") else "",
          r'^zookeeper: \[\d+\] mount\(NULL, "/proc/self/fd/\d+/sys", NULL, '
          r"MS_RDONLY\|MS_NOSUID\|MS_NODEV\|MS_NOEXEC\|MS_REMOUNT\|MS_BIND\) = 0",
          r'^zookeeper: \[\d+\] chdir\("/tmp/zoo\.\w{6}"\) = 0 +chdir\(2\)',
          r'^zookeeper: \[\d+\] pivot_root\("\.", "\."\) = 0 +pivot_root\(2\)',
          r'^zookeeper: \[\d+\] umount2\("\.", MNT_DETACH\) = 0 +umount2\(2\)',
          r'^zookeeper: \[\d+\] chdir\("/"\) = 0']
CHILD[4] = CHILD[3][:4] + MOUNTS + CHILD[3][4:]  # after sethostname
CHILD[5] = [r"^zookeeper: \[\d+\] unshare\(CLONE_NEWCGROUP\) = 0 +unshare\(2\)"] + CHILD[4]
CHILD[6] = CHILD[5][:5] + [r"^zookeeper: \[\d+\] ioctl\(\d+, SIOCSIFFLAGS, \{ifr_name='lo', "
                           r"ifr_flags=0x8\|IFF_UP\}\) = 0 +netdevice\(7\)"] + CHILD[5][5:]


def assert_in_order(trace: list[str], patterns: list[str]) -> None:
    at = 0
    for pattern in patterns:
        for i in range(at, len(trace)):
            if re.search(pattern, trace[i]):
                at = i + 1
                break
        else:
            raise AssertionError(f"step {pattern!r} missing (or out of order) after line {at} "
                                 "of the trace:\n" + "\n".join(trace))


@pytest.mark.parametrize("part", [1, 2, 3, 4, 5, 6])
def test_trace_has_every_step_in_order(user_runner: Runner, rootfs_for, part):
    rootfs = ["-r", str(rootfs_for(user_runner)), "-P"] if part >= 4 else []
    cache = str(user_runner.fresh_dir())
    done = user_runner.zookeeper(part, "-v", *rootfs, "true", env={"XDG_CACHE_HOME": cache})
    assert done.returncode == 0, done.stderr
    trace = done.stderr.splitlines()
    assert_in_order([x for x in trace if not x.startswith("zookeeper: [")], PARENT[part])
    assert_in_order([x for x in trace if x.startswith("zookeeper: [")], CHILD[part])
    # The child goes on only after the parent has written its id maps.
    if part >= 2:
        maps = max(i for i, x in enumerate(trace) if "newgidmap" in x)
        assert maps < next(i for i, x in enumerate(trace) if "sethostname" in x)


def test_second_run_reads_the_seccomp_program_from_the_cache(user_runner: Runner):
    cache = str(user_runner.fresh_dir())
    first, second = (user_runner.zookeeper(3, "-v", "true", env={"XDG_CACHE_HOME": cache})
                     for _ in range(2))
    assert first.returncode == second.returncode == 0, first.stderr + second.stderr
    assert "seccomp_rule_add(" in first.stderr and "read the seccomp" not in first.stderr
    assert "seccomp_rule_add(" not in second.stderr
    assert re.search(rf"^zookeeper: read the seccomp program cached in {cache}/zookeeper/"
                     r"seccomp\.bpf = (\d+) BPF instructions +seccomp\(2\)$",
                     second.stderr, re.M), second.stderr
    loaded = re.findall(r"seccomp\(SECCOMP_SET_MODE_FILTER, 0, \{len=(\d+)\}\)",
                        first.stderr + second.stderr)
    assert len(loaded) == 2 and loaded[0] == loaded[1], loaded


def test_child_lines_carry_the_childs_pid(user_runner: Runner):
    trace = user_runner.zookeeper(2, "-v", "true").stderr.splitlines()
    # The child may print before the parent's clone line: find that line anywhere.
    pid = re.search(r"^zookeeper: clone\(.*\) = (\d+)", "\n".join(trace), re.M).group(1)
    child = [x for x in trace if x.startswith("zookeeper: [")]
    assert child and all(x.startswith(f"zookeeper: [{pid}] ") for x in child)


def test_environment_variable_turns_it_on(user_runner: Runner):
    done = user_runner.zookeeper(1, "true", env={"ZOOKEEPER_VERBOSE": "1"})
    assert "clone(SIGCHLD)" in done.stderr


@pytest.mark.parametrize("value", ["0", "false", "no", "off", "", "2"])
def test_environment_variable_other_words_leave_it_off(user_runner: Runner, value):
    done = user_runner.zookeeper(1, "true", env={"ZOOKEEPER_VERBOSE": value})
    assert done.returncode == 0 and done.stderr == ""


def test_off_by_default_and_silent(user_runner: Runner):
    done = user_runner.zookeeper(3, "true")
    assert done.stderr == ""


def test_failing_step_ends_the_trace(user_runner: Runner):
    done = user_runner.zookeeper(2, "-v", "no-such-command-zk")
    trace = done.stderr.splitlines()
    assert re.search(r"\[\d+\] execvp\('no-such-command-zk'\) = -1 ENOENT "
                     r"\(No such file or directory\) +execve\(2\)", trace[-3]), trace
    assert trace[-1] == ("zookeeper: failed to execute no-such-command-zk: "
                         "No such file or directory")


def test_nonexistent_rootfs_ends_the_trace_with_the_failing_step(user_runner: Runner):
    done = user_runner.zookeeper(4, "-v", "-r", "/nonexistent-zk", "true")
    assert done.returncode == 125
    trace = done.stderr.splitlines()
    assert re.search(r'^zookeeper: open\("/nonexistent-zk", O_PATH\|O_DIRECTORY\|O_CLOEXEC\) '
                     r"= -1 ENOENT \(No such file or directory\) +open\(2\)", trace[-2]), trace
    assert trace[-1] == ("zookeeper: failed to use /nonexistent-zk as the rootfs: "
                         "No such file or directory")


def test_skeleton_shows_where_the_flow_stops(user_runner: Runner, tmp_path):
    """In a student's copy, an exercise not done yet is a step of the trace."""
    import shutil

    copy = user_runner.workdir / "explain-skeleton" / "part1_clone"
    if not copy.exists():
        shutil.copytree(user_runner.workdir / "skeleton", copy)
    done = user_runner.run([user_runner.python, str(copy / "zookeeper.py"), "-v", "true"])
    assert done.returncode == 125
    trace = done.stderr.splitlines()
    assert re.search(r"^zookeeper: q1 not implemented yet = stop +part 1", trace[-2]), trace
    assert trace[-1] == ("zookeeper: q1 (part 1) is not implemented yet: "
                         "create the child with clone(2)")


def test_a_byte_that_is_not_utf8_is_spelled_one_way(user_runner: Runner):
    """-v's execvp line spelled a command's undecodable byte '\\udcff' (Python's repr of
    its surrogate), the error line under it \\xff (review, session 28)."""
    done = user_runner.zookeeper(1, "-v", os.fsdecode(b"no-such-\xff-command"))
    assert done.returncode == 127
    tried = [line for line in done.stderr.splitlines() if "execvp(" in line]
    assert tried and all("no-such-\\xff-command" in line for line in tried), done.stderr
    assert "\\udc" not in done.stderr
    assert done.stderr.endswith("zookeeper: failed to execute no-such-\\xff-command: No such "
                                "file or directory\n")


def test_the_text_backslash_udc_is_left_as_it_is(user_runner: Runner):
    """The respelling of \\udcff is for undecodable bytes only: a command holding the
    text \\udcbin (a backslash and udc) was shown as \\xbin (review of session 28)."""
    done = user_runner.zookeeper(1, "-v", "printf", "%s", "C:\\udcbin")
    assert done.returncode == 0 and done.stdout == "C:\\udcbin", done.stdout
    tried = [line for line in done.stderr.splitlines() if "execvp(" in line]
    assert tried and all("C:\\\\udcbin" in line for line in tried), done.stderr
