"""The grader's own logic on this host, without a VM and without running a submission:
the checks' tables and parsers, the reports, and grader/grade's command line."""

import argparse
import csv
import dataclasses
import importlib.machinery
import importlib.util
import json
import os
import pwd
import py_compile
import re
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import types
from pathlib import Path

import pytest
from conftest import VENV_PYTHON, boot_fake_qemu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "grader"))

import checks  # noqa: E402
import report  # noqa: E402
import runner  # noqa: E402

PART_POINTS = {1: 15, 2: 15, 3: 15, 4: 20, 5: 20, 6: 15}


def test_points_per_part_as_documented():
    got = {p: sum(c.points for c in checks.CHECKS if c.part == p) for p in PART_POINTS}
    assert got == PART_POINTS and sum(got.values()) == 100
    readme = (ROOT / "README.txt").read_text()
    listed = re.search(r"Points per part \(100 in all\): (.*?)\.\n", readme, re.S).group(1)
    documented = {int(p): int(n) for p, n in re.findall(r"part (\d) (\d+)", listed)}
    assert documented == PART_POINTS


def test_every_check_names_what_it_exercises():
    """A failure points the student to the code: each check names the exercises (qN)
    it needs, the given code it is about as well when there is some (issue 16)."""
    vague = [c.id for c in checks.CHECKS if not re.search(r"\bq\d+\b", c.exercises)]
    assert vague == []


def test_ip_links_reads_names_and_flags():
    out = ("1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue qlen 1000\\    link/loop\n"
           "2: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue\n"
           "3: tap0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop\n")
    links = checks.ip_links(out)
    assert sorted(links) == ["eth0", "lo", "tap0"]
    assert "UP" in links["lo"] and "UP" in links["eth0"] and "UP" not in links["tap0"]


# What a failing check tells the student, from fabricated runs ------------------------


class FakeContext:
    """A check's z whose zookeeper and host commands return the runs given (in turn),
    without running anything: what a check then says, for mistakes this host (or a
    VM's minutes) cannot make happen."""

    def __init__(self, *runs, host=None, tmp_path=None, left=(), path=""):
        self.runs, self.host_run = list(runs), host
        self.expect = runner.expect
        self.python, self.timeout_scale, self.scratch = "python3", 0.01, tmp_path
        self.not_runnable = runner.NotRunnable
        self.path = path
        left = list(left)  # what each look for leftovers finds, the last one again
        self.left = types.SimpleNamespace(
            processes=lambda run, name: left.pop(0) if len(left) > 1 else left[0] if left
            else [])

    def zk(self, part, *args, timeout_hint="", **kwargs):
        """The next run; an exception (the runner's time limit) is raised instead, with
        the check's timeout_hint added to its message as the runner adds it."""
        run = self.runs.pop(0)
        if isinstance(run, Exception):
            raise type(run)(f"{run}{timeout_hint}")
        return run

    def env(self, *args, **kwargs):
        return {"PATH": self.path}

    def host(self, argv, **kwargs):
        return self.host_run

    def rootfs(self, root=False):
        return "/tmp/fake-rootfs"


def failure(check_fn, *runs, **kwargs) -> str:
    """The message check_fn fails with, as the runner reports it (with its exercises)."""
    check = next(c for c in checks.CHECKS if c.fn is check_fn)
    with pytest.raises(runner.CheckFailed) as failed:
        check_fn(FakeContext(*runs, **kwargs))
    return f"{failed.value}\n    (this checks {check.exercises})"


def run(stdout="", stderr="", status=0):
    return runner.Run(["zookeeper.py"], status, stdout, stderr, 0.5)


def test_p5_memory_tells_a_child_outside_its_cgroup_from_a_wrong_limit():
    """The container sees its cgroup namespace's root at /sys/fs/cgroup.  A child never
    moved into zookeeper's cgroup (q15) sees its old cgroup there, without the swap 0
    the given code wrote: that is q15's mistake, not q16's (nor the given swap code's)."""
    outside = failure(checks.p5_memory, run("memory.max max\nswap.max max\n"))
    assert "not in the cgroup zookeeper made" in outside and "q15" in outside, outside
    assert "cgroup.procs" in outside and "is max" not in outside, outside
    at_root = failure(checks.p5_memory, run("memory.max\nswap.max\n"))
    assert "not in the cgroup zookeeper made" in at_root, at_root
    wrong = failure(checks.p5_memory, run(f"memory.max {64 << 10}\nswap.max 0\n"
                                          f"kept {16 << 20}\n", status=-9))
    assert f"memory.max {64 << 10}, not {64 << 20}" in wrong and "(q16)" in wrong, wrong
    assert "not in the cgroup" not in wrong, wrong
    # memory.max right, the given swap write undone (tests/test_grader_vm.py's mutant).
    no_swap = failure(checks.p5_memory, run(f"memory.max {64 << 20}\nswap.max max\n"))
    assert "memory.swap.max is max" in no_swap, no_swap
    # Right: the check goes on to the hog.
    assert checks.memory_limits_problem(f"memory.max {64 << 20}\nswap.max 0\n") == ""


NAMESPACE_LINKS = "".join(f"{ns}:[40265{i}]\n" for i, ns in enumerate(checks.NAMESPACES))


def test_p2_namespaces_says_zookeeper_failed_rather_than_blame_q6():
    """With q7 not written yet zookeeper stops before the command: no namespace is read,
    and that is not 'these namespaces are the host's: all (q6)'."""
    said = "zookeeper: q7 (part 2) is not implemented yet: map root in the container"
    message = failure(checks.p2_namespaces, run(stderr=said + "\n", status=125),
                      host=run(NAMESPACE_LINKS))
    assert "zookeeper failed before the command ran (exit status 125)" in message, message
    assert f"zookeeper said: {said}" in message and "host's" not in message, message
    # zookeeper ran the command: the host's namespaces are q6's.
    message = failure(checks.p2_namespaces, run(NAMESPACE_LINKS), host=run(NAMESPACE_LINKS))
    assert "these namespaces are the host's: user, cgroup" in message, message


def test_p6_helper_gone_names_q20_for_exit_fd_and_says_why_zookeeper_hung(tmp_path):
    """Its first run strips --exit-fd (a wrapper first on PATH): a stop() that only
    closes the exit fd hangs zookeeper, and the check says why.  Its second half
    (zookeeper killed) needs --exit-fd, which q20 passes, not q21."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "slirp4netns").write_text("#!/bin/sh\n")
    (bin_dir / "slirp4netns").chmod(0o755)
    (tmp_path / "first").mkdir()
    (tmp_path / "second").mkdir()
    hung = runner.CheckFailed("zookeeper did not exit within 36 s")
    message = failure(checks.p6_helper_gone, hung, tmp_path=tmp_path / "first",
                      path=str(bin_dir))
    assert message.startswith("zookeeper did not exit within 36 s: this check runs "
                              "slirp4netns without --exit-fd"), message
    assert "kill(2)" in message and "(q21;" in message, message
    up = run("3: eth0    inet 10.0.2.100/24 brd 10.0.2.255\n")
    message = failure(checks.p6_helper_gone, up, run(status=-9), tmp_path=tmp_path / "second",
                      path=str(bin_dir), left=[[], ["slirp4netns (pid 7)"]])
    assert "with zookeeper killed (SIGKILL), slirp4netns is still running" in message, message
    assert "q20: start it with --exit-fd" in message, message


def test_part1_checks_name_q5_when_the_command_may_not_have_run():
    """With q5 (execvp) left empty no command runs: each part 1 check names q5 too, and
    p1_signal says what q3 does (the given exit_like makes the death by a signal)."""
    said = "zookeeper: q5 (part 1) is not implemented yet: run the command with execvp(3)"
    no_exec = run(stderr=said + "\n", status=125)
    for check_fn in (checks.p1_exit_status, checks.p1_signal, checks.p1_exec_errors):
        message = failure(check_fn, no_exec)
        pointers = message.split("zookeeper said:")[0] + message.split("\n")[-1]
        assert re.search(r"\bq5\b|q1-q5", pointers), message
    signal_message = failure(checks.p1_signal, no_exec)
    assert "128+N" not in signal_message and "exit_like" in signal_message, signal_message


# Statuses: what is the grader's, not the student's --------------------------------


def result(check_id="p1_x", part=1, status="ok", points=3, message="", name=None):
    return report.CheckResult(id=check_id, part=part, name=name or f"check {check_id}",
                              max_score=points, status=status, message=message, seconds=0.5)


def test_not_run_and_grader_errors_make_the_grading_incomplete(tmp_path):
    results = [result("a"), result("b", status="fail", message="wrong"),
               result("c", status="not run", message="no rootfs tarball"),
               result("d", part=2, status="error", message="grader error: KeyError('x')"),
               result("e", part=2, status="error", message="grader error: ValueError()")]
    assert report.status(results[:2]) == "ok"
    status = report.status(results)
    assert status == "incomplete: 1 not run, 2 grader errors"
    assert report.status(results, "VM killed at the 60s timeout") == (
        "VM killed at the 60s timeout; incomplete: 1 not run, 2 grader errors")
    text = report.text_report(results, run_status=status)
    assert "== part2: check d == GRADER ERROR (0.5s)" in text
    assert "Part 1 score: 3/9 (1 not run)" in text
    assert "Part 2 score: 0/6 (2 grader errors)" in text
    assert text.endswith("Score: 3/15\nStatus: incomplete: 1 not run, 2 grader errors")
    assert "Status:" not in report.text_report(results[:2])
    gradescope = report.gradescope(results, 1.0, run_status=status)
    assert status in gradescope["output"]
    assert "output" not in report.gradescope(results[:2], 1.0)
    csv_path = tmp_path / "scores.csv"
    report.write_csv(csv_path, [("alice", results, status), ("bob", results[:2], "ok")])
    with open(csv_path) as f:
        rows = {row["submission"]: row for row in csv.DictReader(f)}
    assert rows["alice"]["status"] == "incomplete: 1 not run, 2 grader errors"
    assert rows["bob"]["status"] == "ok" and rows["bob"]["score"] == "3"
    # A class whose every row is an error (the user could not read the clones: collect
    # under umask 077) had max_score 0 in every row (review, session 28): the
    # selection's points, and its parts' columns.
    report.write_csv(csv_path, [("alice", [], "error: x"), ("bob", [], "error: y")],
                     selected=checks.selected(parts=[1, 2]))
    with open(csv_path) as f:
        rows = {row["submission"]: row for row in csv.DictReader(f)}
    points = sum(c.points for c in checks.selected(parts=[1, 2]))
    assert [rows[n]["max_score"] for n in ("alice", "bob")] == [str(points)] * 2
    assert {"part1", "part2"} <= set(rows["alice"]) and "part3" not in rows["alice"]


def test_a_checks_own_exception_is_a_grader_error(tmp_path, monkeypatch):
    def broken(z):
        raise KeyError("CapBnd")

    def fails(z):
        z.expect(False, "the student's fault")

    fake = [checks.Check(broken, 1, "broken check", 3, 10, True, ()),
            checks.Check(fails, 1, "failing check", 3, 10, True, ())]
    monkeypatch.setattr(checks, "CHECKS", fake)
    args = types.SimpleNamespace(
        as_root=False, commit=None,
        user="root", python=sys.executable, part=None, only=None, public=False,
        submission=str(tmp_path), results=str(tmp_path / "results.json"),
        logs=str(tmp_path / "logs"), scratch=str(tmp_path / "scratch"), timeout_scale=1.0,
        rootfs_tar=None, progress=False, lane_users=[], nosub_user=runner.NOSUB_USER)
    (tmp_path / "scratch").mkdir()
    results = runner.run_checks(args)
    assert [r.status for r in results] == ["error", "fail"]
    assert results[0].message == "grader error: KeyError('CapBnd')"
    assert "Traceback" in (tmp_path / "logs" / "broken.log").read_text()
    assert json.loads((tmp_path / "results.json").read_text())[0]["status"] == "error"


# grader/grade, with the VM replaced by what it would bring back --------------------


def load_grade():
    loader = importlib.machinery.SourceFileLoader("zoo_grade", str(ROOT / "grader" / "grade"))
    spec = importlib.util.spec_from_loader("zoo_grade", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture
def grade(monkeypatch):
    """grader/grade as a module, its VM faked: fake_vm[submission name] is what the
    grading of that submission brings back, (results, problem), or an exception."""
    module = load_grade()
    module.fake_vm = {}
    module.vm_calls = []

    def grade_in_vm(submission, args, out_dir, log=print):
        module.vm_calls.append(submission.name)
        got = module.fake_vm[submission.name]
        if isinstance(got, list):  # one outcome per grading, in turn
            got = got.pop(0)
        (out_dir / "console.log").write_text("the console\n")
        if isinstance(got, tuple) and got[1].startswith("VM stopped"):  # qemu.py's record
            (out_dir / "cpus-at-stop.txt").write_text("=== sample 1 of 3\n")
        if isinstance(got, Exception):
            raise got
        return list(got[0]), got[1]

    monkeypatch.setattr(module, "grade_in_vm", grade_in_vm)
    return module


def make_submission(path: Path, parts=(1,)) -> Path:
    for part in parts:
        (path / f"part{part}_x").mkdir(parents=True)
        (path / f"part{part}_x" / "zookeeper.py").write_text("")
    return path


def all_of_part1(status="ok", missing=0, error=None):
    """Results for part 1's checks: all ok, or the first one with status."""
    results = [result(c.id, 1, "ok", c.points, name=c.name)
               for c in checks.CHECKS if c.part == 1]
    if status != "ok":
        results[0] = dataclasses.replace(results[0], status=status, message=error or status)
    return results[:len(results) - missing]


def test_a_guest_that_stalls_is_graded_again_once(grade, tmp_path, capsys):
    """A guest the watchdog stopped because it stopped reporting is graded again from
    the start, once; its console is kept.  A second stall is reported as such, and a
    Ctrl-C is never graded again."""
    sub = make_submission(tmp_path / "alice")
    stall = (all_of_part1(missing=2), "VM stopped: no result from p1_x within its time "
             "limit (1248s)")
    grade.fake_vm["alice"] = [stall, (all_of_part1(), "")]
    assert grade.main([str(sub), "--out", str(tmp_path / "one"), "--part", "1"]) == 0
    assert grade.vm_calls == ["alice", "alice"]
    assert (tmp_path / "one" / "console-stalled.log").exists()
    assert (tmp_path / "one" / "cpus-stalled.txt").read_text() == "=== sample 1 of 3\n"
    assert not (tmp_path / "one" / "cpus-at-stop.txt").exists()  # the second ran to its end
    grade.fake_vm["alice"] = [stall, stall, (all_of_part1(), "")]
    capsys.readouterr()
    assert grade.main([str(sub), "--out", str(tmp_path / "two"), "--part", "1"]) == 2
    assert grade.vm_calls == ["alice"] * 4
    assert "(the second time; the first stalled too)" in capsys.readouterr().out
    grade.fake_vm["alice"] = [(all_of_part1(missing=2), "VM stopped: interrupted (Ctrl-C)")]
    grade.INTERRUPTED.set()
    try:
        grade.main([str(sub), "--out", str(tmp_path / "three"), "--part", "1"])
    finally:
        grade.INTERRUPTED.clear()
    assert grade.vm_calls == ["alice"] * 5


def test_exit_status_of_one_submission(grade, tmp_path, capsys):
    sub = make_submission(tmp_path / "alice")
    cases = [(all_of_part1(), "", 0), (all_of_part1("fail"), "", 1),
             (all_of_part1("error", error="grader error: KeyError()"), "", 2),
             (all_of_part1("not run"), "", 2),
             (all_of_part1(missing=2), "VM killed at the 60s timeout", 2),
             (all_of_part1(), "VM job failed (exit 3; see job.log)", 2)]
    for results, problem, expected in cases:
        grade.fake_vm["alice"] = (results, problem)
        out = tmp_path / f"out-{len(grade.vm_calls)}"
        code = grade.main([str(sub), "--part", "1", "--out", str(out),
                           "--json", str(out.with_suffix(".json"))])
        said = capsys.readouterr()
        assert code == expected, (problem, said.out, said.err)
        gradescope = json.loads(out.with_suffix(".json").read_text())
        if expected == 2:
            assert "Status: " in said.out and gradescope["output"].startswith("Grading status: ")
        else:
            assert "Status: " not in said.out and "output" not in gradescope
    grade.fake_vm["alice"] = RuntimeError("vm: qemu-system-x86_64 not found")
    assert grade.main([str(sub), "--part", "1", "--out", str(tmp_path / "o")]) == 2
    assert capsys.readouterr().err == "grade: vm: qemu-system-x86_64 not found\n"


def test_batch_exit_status_is_2_when_a_row_is_not_ok(grade, tmp_path, capsys):
    class_dir = tmp_path / "class"
    for name in ("alice", "bob"):
        make_submission(class_dir / name)
    grade.fake_vm.update(alice=(all_of_part1("fail"), ""), bob=(all_of_part1(), ""))
    out = tmp_path / "out"
    assert grade.main([str(class_dir), "--part", "1", "--out", str(out)]) == 0
    grade.fake_vm["bob"] = (all_of_part1(missing=1), "VM killed at the 60s timeout")
    assert grade.main([str(class_dir), "--part", "1", "--out", str(out)]) == 2
    assert "1 not graded completely (bob)" in capsys.readouterr().err
    with open(out / "scores.csv") as f:
        rows = {row["submission"]: row for row in csv.DictReader(f)}
    assert rows["alice"]["status"] == "ok"
    assert rows["bob"]["status"] == "VM killed at the 60s timeout; incomplete: 1 not run"


def test_watchdog_allows_the_longest_check_not_done_when_lanes_finish_out_of_order(
        grade, tmp_path):
    """The runner's lanes take checks in an order of their own: a later check's result
    may come first, and any check not done yet may be the one in progress."""
    now = [0.0]
    short, long_ = checks.selected([1])[0], checks.selected([5])[-1]
    selected = [short, long_, checks.selected([1])[1]]
    results = tmp_path / "results.json"
    dog = grade.Watchdog(results, selected, "tcg", clock=lambda: now[0])
    assert dog(True) is None
    results.write_text(json.dumps([result(selected[2].id).to_dict()]))
    assert dog(True) is None  # the third came first: the first two may both be running
    longest = grade.check_allowance(long_, "tcg")
    assert longest > grade.check_allowance(short, "tcg")
    now[0] += longest - 1
    assert dog(True) is None
    now[0] += 2
    assert dog(True) == (f"no result from {short.id}, {long_.id} within its time limit "
                         f"({longest:.0f}s)")


def test_watchdog_stops_a_guest_whose_heartbeat_went_silent_with_checks_left(grade, tmp_path):
    """A stuck guest (both vCPUs spinning, NOTES.md) is stopped once the runner's
    heartbeat has been silent for HEARTBEAT_SILENCE, long before p5_cpu's time limit;
    a guest without a heartbeat yet, or with none needed (every result in), is not."""
    now = [0.0]
    selected = [c for c in checks.CHECKS if c.id in ("p1_exit_status", "p5_cpu")]
    results, beat = tmp_path / "results.json", tmp_path / "heartbeat"
    dog = grade.Watchdog(results, selected, "tcg", clock=lambda: now[0])
    silence = grade.HEARTBEAT_SILENCE["tcg"]
    assert silence * 3 < grade.check_allowance(selected[1], "tcg")
    assert dog(True) is None
    now[0] += silence + 1
    assert dog(True) is None  # no heartbeat yet: the runner has not started
    for count in range(1, 4):  # a beat every 5 s: never silent
        beat.write_text(f"{count}\n")
        assert dog(True) is None
        now[0] += 5
    now[0] += silence - 5
    assert dog(True) is None
    now[0] += 1
    said = dog(True)
    assert said == (f"no heartbeat from the guest's runner for {silence + 1:.0f}s, with "
                    "p1_exit_status, p5_cpu not done")
    assert grade.stuck.is_stuck(said)  # graded again, its vCPUs read first
    beat.write_text("4\n")
    assert dog(True) is None  # beating again
    results.write_text(json.dumps([result(c.id).to_dict() for c in selected]))
    now[0] += silence * 2
    assert dog(True) is None  # every result in: the runner may have ended


def test_the_runners_heartbeat_counts_and_writes_through_no_link(tmp_path):
    beat = tmp_path / "heartbeat"
    stop = runner.start_heartbeat(str(beat), every=0.05)
    deadline = time.monotonic() + 10

    def count() -> int:
        return int(beat.read_text() or 0) if beat.exists() else 0

    while count() < 3 and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    assert int(beat.read_text()) >= 3
    target = tmp_path / "target"
    target.write_text("mine\n")
    linked = tmp_path / "linked"
    linked.symlink_to(target)
    stop = runner.start_heartbeat(str(linked), every=0.05)
    time.sleep(0.3)
    stop.set()
    assert target.read_text() == "mine\n" and linked.is_symlink()


def test_only_values_reach_the_guests_runner_intact(grade):
    """run.sh is a shell script: each --only value must arrive as one argument."""
    names = ["exit status is the container's", "p2_hostname", 'a "quoted" $HOME `x`;']
    args = types.SimpleNamespace(part=[1], only=names, public=True)
    line = grade.guest_runner_args(args)
    done = subprocess.run(["sh", "-c", 'printf "%s\\n" ' + line], capture_output=True,
                          text=True, check=True)
    assert done.stdout.splitlines() == grade.runner_args(args)
    assert grade.runner_args(args) == ["--part", "1", "--only", names[0], "--only", names[1],
                                       "--only", names[2], "--public"]
    script = grade.RUN_SH.format(user="student", lane_user="student2", scale=6.0, extra=line)
    assert script.rstrip().endswith(line)
    assert subprocess.run(["sh", "-n", "-c", script]).returncode == 0


def test_a_selection_of_no_check_stops_before_the_vm(grade, tmp_path, capsys):
    sub = make_submission(tmp_path / "alice")
    hidden = next(c for c in checks.CHECKS if not c.public)
    for selection, said in [
            (["--only", "p1_no_such_check"], "--only 'p1_no_such_check': no check has this id"),
            (["--part", "2", "--only", "p1_exit_status"],
             "--part 2 --only 'p1_exit_status': no check is in this selection"),
            (["--only", hidden.id, "--public"], "no check is in this selection")]:
        code = grade.main([str(sub), "--out", str(tmp_path / "out"), *selection])
        err = capsys.readouterr().err
        assert code == 2 and said in err and len(err.splitlines()) == 1, err
    assert grade.vm_calls == [] and not (tmp_path / "out").exists()


def test_every_entry_of_a_class_directory_gets_a_row(grade, tmp_path, capsys):
    class_dir = tmp_path / "class"
    make_submission(class_dir / "alice")
    make_submission(class_dir / "bob" / "zookeeper")  # unpacked one level too deep
    (class_dir / "carol.zip").write_bytes(b"PK\x03\x04")
    (class_dir / "notes.txt").write_text("late: dave\n")
    (class_dir / "dave").mkdir()
    (class_dir / ".DS_Store").write_text("")
    grade.fake_vm["alice"] = (all_of_part1(), "")
    out = tmp_path / "out"
    assert grade.main([str(class_dir), "--part", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    with open(out / "scores.csv") as f:
        rows = {row["submission"]: row["status"] for row in csv.DictReader(f)}
    assert rows == {
        "alice": "ok",
        "bob": "not a submission: the parts are in bob/zookeeper/, not at its top: "
               "move them up",
        "carol.zip": "not a submission: is a file: unzip it first",
        "notes.txt": "not a submission: is a file, not a directory",
        "dave": "not a submission: no part*_*/zookeeper.py in it"}
    for name in ("bob", "carol.zip", "notes.txt", "dave"):
        assert f"{class_dir / name}: not a submission: " in err
    assert grade.vm_calls == ["alice"]


# The VM's time limits ---------------------------------------------------------------


def test_default_vm_timeout_covers_the_checks_own_time_limits(grade):
    for accel in ("tcg", "kvm"):
        budget = sum(c.timeout * grade.TIMEOUT_SCALE[accel] for c in checks.CHECKS)
        assert grade.default_vm_timeout(checks.CHECKS, accel) > budget + 300
    part1 = checks.selected([1])
    assert grade.default_vm_timeout(part1, "tcg") < grade.default_vm_timeout(checks.CHECKS,
                                                                              "tcg")
    help_text = subprocess.run([sys.executable, str(ROOT / "grader" / "grade"), "--help"],
                               capture_output=True, text=True).stdout
    hours = grade.default_vm_timeout(checks.CHECKS, "tcg") / 3600
    assert f"{hours:.1f} h for all checks under TCG" in " ".join(help_text.split())


def test_watchdog_stops_a_guest_that_stopped_reporting(grade, tmp_path):
    now = [0.0]
    selected = checks.selected([1])[:2]
    results = tmp_path / "results.json"
    dog = grade.Watchdog(results, selected, "tcg", clock=lambda: now[0])
    first, second = (grade.check_allowance(c, "tcg") for c in selected)
    now[0] = 1000.0  # made long before QEMU starts (a save of the booted guest first)
    assert dog(False) is None  # the first poll: QEMU has started
    now[0] += grade.BOOT_MARGIN["tcg"] - 1
    assert dog(False) is None
    now[0] += 2
    assert "did not start within 300s" in dog(False)

    dog = grade.Watchdog(results, selected, "tcg", clock=lambda: now[0])
    now[0] = 10.0
    assert dog(True) is None  # the job started: setup, then the first check
    now[0] += grade.SETUP_MARGIN + first - 1
    assert dog(True) is None
    results.write_text(json.dumps([result(selected[0].id).to_dict()]))
    assert dog(True) is None  # a result: the second check's allowance starts now
    now[0] += second - 1
    assert dog(True) is None
    now[0] += 2
    assert dog(True) == (f"no result from {selected[1].id} within its time limit "
                         f"({second:.0f}s)")
    results.write_text(json.dumps([result(selected[0].id).to_dict(),
                                   result(selected[1].id).to_dict()]))
    assert dog(True) is None
    now[0] += grade.CHECK_MARGIN + 1
    assert dog(True) == "the guest did not power off after the last check"


def test_vm_run_silence_stops_a_guest_whose_job_log_stopped_growing(tmp_path):
    """grader/vm.py run --silence S: a job.log that has not grown for S seconds is a
    guest that stopped reporting (one that has not appeared S seconds after the
    start too); one that grows is not."""
    import vm

    now = [0.0]
    log = tmp_path / "job.log"
    silence = vm.Silence(log, 300, clock=lambda: now[0])
    now[0] = 299
    assert silence(False) is None  # no job.log yet: the boot
    log.write_text("== root\n")
    now[0] = 500
    assert silence(True) is None  # it grew: the silence counts from now
    now[0] = 799
    assert silence(True) is None
    now[0] = 801
    assert silence(True) == "no new output in job.log for 300s"


def guest_lays_over(grade, sub: Path, into: Path, guest: Path) -> None:
    """run.sh's lines that copy the submission and lay the host's compiled files
    over it, run here with the guest's paths made these."""
    script = grade.RUN_SH.format(user="nobody", lane_user="nobody2", scale=1, extra="")
    packed = into.parent / "submission.tar"
    grade.pack_submission(sub, packed)
    lines = script[script.index('rm -rf "$SUB" && mkdir'):script.index("chown -R nobody:")]
    lines = lines.replace("/mnt/job/submission.tar", str(packed))
    lines = lines.replace("/mnt/job/pyc", str(into))
    subprocess.run(["sh", "-euc", f"SUB={shlex.quote(str(guest))}\n{lines}"], check=True)


def test_the_submission_is_compiled_on_the_host_for_the_guest(tmp_path):
    """grade compiles the submission's modules into a tree of their own; the guest
    lays it over its copy of the submission (times kept), and its compileall then
    finds them current and writes nothing.  Nothing reached through a symbolic link
    is read (another student's file, the grader's), nor a file too large; what does
    not compile is left to the guest, and then the guest compiles it all (no tag)."""
    grade = load_grade()
    sub = tmp_path / "alice"
    (sub / "part1_clone").mkdir(parents=True)
    (sub / "part1_clone" / "container.py").write_text("VALUE = 42\n")
    into = tmp_path / "pyc"
    grade.precompile(sub, into)
    made = sorted(str(p.relative_to(into)) for p in into.rglob("*") if p.is_file())
    tag = sys.implementation.cache_tag
    assert made == [f"part1_clone/__pycache__/container.{tag}.pyc"], made
    assert (tmp_path / "pyc.tag").read_text() == tag + "\n"  # the guest compiles no more
    guest = tmp_path / "guest"
    guest_lays_over(grade, sub, into, guest)
    pyc = guest / "part1_clone" / "__pycache__" / f"container.{tag}.pyc"
    before = pyc.stat()
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(guest / "part1_clone" /
                    "container.py")], check=True)
    assert pyc.stat().st_mtime_ns == before.st_mtime_ns and pyc.stat().st_ino == before.st_ino
    loaded = subprocess.run([sys.executable, "-c", "import container; print(container.VALUE)"],
                            cwd=guest / "part1_clone", capture_output=True, text=True)
    assert loaded.stdout == "42\n"

    (sub / "part1_clone" / "broken.py").write_text("def (:\n")
    (sub / "part1_clone" / "big.py").write_text("X = 1\n" * 200_000)
    secret = tmp_path / "bob.py"
    secret.write_text("SECRET = 'bob'\n")
    (sub / "part1_clone" / "bob.py").symlink_to(secret)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "other.py").write_text("OTHER = 1\n")
    (sub / "linked").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    shutil.rmtree(into)
    (tmp_path / "pyc.tag").unlink()
    grade.precompile(sub, into)
    made = sorted(str(p.relative_to(into)) for p in into.rglob("*") if p.is_file())
    assert made == [f"part1_clone/__pycache__/container.{tag}.pyc"], made
    assert not (tmp_path / "pyc.tag").exists()


def test_compiled_files_a_submission_brings_are_not_run(tmp_path):
    """A .pyc the student ships beside a harmless source, with the source's time and
    size recorded (the guest's copy keeps times): no __pycache__ the submission
    brings (a link to one too), nor a .pyc, reaches the guest's copy (pack_submission
    leaves them out) before the host's are laid in place, so the module that runs is
    the source."""
    grade = load_grade()
    sub = tmp_path / "mallory" / "part1_clone"
    sub.mkdir(parents=True)
    module = sub / "helper.py"
    module.write_text("VALUE = 'evil'\n")
    py_compile.compile(str(module), doraise=True)  # sub/__pycache__/helper.*.pyc
    module.write_text("VALUE = 'good'\n")  # the same size
    os.utime(module, ns=(0, 1_000_000_000))
    pyc = Path(importlib.util.cache_from_source(str(module)))
    header = bytearray(pyc.read_bytes())
    header[8:12] = (1).to_bytes(4, "little")  # its recorded time: the source's
    pyc.write_bytes(bytes(header))
    (tmp_path / "target").mkdir()
    (sub / "other").mkdir()
    (sub / "other" / "__pycache__").symlink_to(tmp_path / "target")
    # A .pyc where a source would be: Python loads it when there is no .py.
    shutil.copy(pyc, sub / "sourceless.pyc")
    guest = tmp_path / "guest"
    guest_lays_over(grade, tmp_path / "mallory", tmp_path / "no-pyc", guest)
    assert not (guest / "part1_clone" / "__pycache__").exists()
    assert not (guest / "part1_clone" / "sourceless.pyc").exists()
    assert not os.path.lexists(guest / "part1_clone" / "other" / "__pycache__")
    assert (tmp_path / "target").exists()
    loaded = subprocess.run([sys.executable, "-c", "import helper; print(helper.VALUE)"],
                            cwd=guest / "part1_clone", capture_output=True, text=True)
    assert loaded.stdout == "good\n", loaded


def test_what_the_labs_targets_make_is_neither_packed_nor_compiled_nor_hashed(tmp_path):
    """A student's `make check` grades its lab directory, which holds the venv
    (.venv, ~50 MB), build/ (the rootfs), grader-results/ and .git: packed, they
    took part 1's grading from 8 s to 35 s under TCG (session 27).  None of them is
    packed for the guest, compiled for it, or part of the content's hash."""
    grade = load_grade()
    sub = tmp_path / "lab"
    (sub / "part1_clone").mkdir(parents=True)
    (sub / "part1_clone" / "container.py").write_text("VALUE = 42\n")
    before = grade.submission_hash(sub)
    for name in (".venv/lib/site.py", "build/zoo-fs/bin/sh", "grader-results/alice/log",
                 ".git/HEAD2", "part1_clone/__pycache__/x.pyc"):
        (sub / name).parent.mkdir(parents=True, exist_ok=True)
        (sub / name).write_text("not the student's code\n")
    assert grade.submission_hash(sub) == before
    grade.pack_submission(sub, tmp_path / "lab.tar")
    with tarfile.open(tmp_path / "lab.tar") as tar:
        assert sorted(tar.getnames()) == [".", "./part1_clone", "./part1_clone/container.py"]
    grade.precompile(sub, tmp_path / "pyc")
    made = sorted(str(p.relative_to(tmp_path / "pyc")) for p in (tmp_path / "pyc").rglob("*.pyc"))
    tag = sys.implementation.cache_tag
    assert made == [f"part1_clone/__pycache__/container.{tag}.pyc"]
    # Only at the top, where the lab's targets make them: a student's own build/ in a
    # part, or a file named build, is graded (review, session 27).
    (sub / "part1_clone" / "build").mkdir()
    (sub / "part1_clone" / "build" / "helpers.py").write_text("HELP = 1\n")
    (sub / "build.py").write_text("")
    assert grade.submission_hash(sub) != before
    grade.pack_submission(sub, tmp_path / "lab.tar")
    with tarfile.open(tmp_path / "lab.tar") as tar:
        assert {"./part1_clone/build/helpers.py", "./build.py"} <= set(tar.getnames())
        assert "./build" not in tar.getnames()
    shutil.rmtree(tmp_path / "pyc")
    grade.precompile(sub, tmp_path / "pyc")
    assert (tmp_path / "pyc" / "part1_clone" / "build" / "__pycache__" /
            f"helpers.{tag}.pyc").exists()


def test_a_huge_file_is_neither_copied_nor_read_whole(tmp_path):
    """An upload's 5 GB disk image (sparse here; a zip of zeros is as small): its
    hash read it whole (a MemoryError under a smaller limit ended the batch) and the
    copies packed it for the guest's disk and /tmp (review, session 28)."""
    sub = tmp_path / "alice"
    (sub / "part1_clone").mkdir(parents=True)
    (sub / "part1_clone" / "zookeeper.py").write_text("pass\n")
    with open(sub / "part1_clone" / "disk.img", "wb") as f:
        f.truncate(5 << 30)
    code = (f"import importlib.machinery as m, importlib.util as u, pathlib, resource\n"
            f"resource.setrlimit(resource.RLIMIT_AS, (1 << 30, 1 << 30))\n"
            f"loader = m.SourceFileLoader('g', {str(ROOT / 'grader' / 'grade')!r})\n"
            f"g = u.module_from_spec(u.spec_from_loader('g', loader))\n"
            f"loader.exec_module(g)\n"
            f"print(g.submission_hash(pathlib.Path({str(sub)!r})))\n"
            f"print(g.pack_submission(pathlib.Path({str(sub)!r}), "
            f"pathlib.Path({str(tmp_path / 'lab.tar')!r})))\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[1] == "['part1_clone/disk.img (5120 MB)']"
    with tarfile.open(tmp_path / "lab.tar") as tar:
        assert "./part1_clone/zookeeper.py" in tar.getnames()
        assert "./part1_clone/disk.img" not in tar.getnames()


def test_links_that_climb_out_through_other_links_are_left_out(tmp_path):
    """s -> . makes s/s/s/../../.. climb no further than its text says: the text
    alone kept part1_clone -> s/s/s/../../../../secret, which in --local's copy led
    to the grader's files (review of session 28's change).  Resolved in the tree; and
    a hard link to a file left out is left out with it (tar -x failed on it), and a
    link to a name of any bytes is hashed."""
    grade = load_grade()
    (tmp_path / "secret").mkdir()
    (tmp_path / "secret" / "zookeeper.py").write_text("REFERENCE\n")
    sub = tmp_path / "alice"
    sub.mkdir()
    (sub / "s").symlink_to(".")
    (sub / "part1_clone").symlink_to("s/s/s/../../../../secret")
    (sub / "inside").symlink_to("s/s/README.txt")
    (sub / "climbs").symlink_to("s/s/s/../../README.txt")  # text: s/README.txt; real: ../..
    (sub / "README.txt").write_text("hi\n")
    with open(sub / "disk.img", "wb") as f:
        f.truncate(grade.LARGEST_FILE + 1)
    os.link(sub / "disk.img", sub / "again.img")
    os.symlink(b"caf\xe9", os.fsencode(sub / "odd"))
    grade.submission_hash(sub)  # bytes, not UTF-8: hashed, no UnicodeEncodeError
    left = grade.pack_submission(sub, tmp_path / "lab.tar")
    big = f"({(grade.LARGEST_FILE + 1) >> 20} MB)"
    # tar meets the two names in the directory's order: the first is the file, the
    # second the hard link to it
    first = next(name.split()[0] for name in left if name.endswith(big))
    second = {"disk.img": "again.img", "again.img": "disk.img"}[first]
    assert sorted(left) == sorted([f"{first} {big}",
                                   f"{second} (a hard link to {first}, left out)",
                                   "climbs (a link out of the submission)",
                                   "part1_clone (a link out of the submission)"]), left
    (tmp_path / "copy").mkdir()
    subprocess.run(["tar", "-x", "-f", str(tmp_path / "lab.tar"), "-C", str(tmp_path / "copy")],
                   check=True)
    assert not os.path.lexists(tmp_path / "copy" / "part1_clone")
    assert (tmp_path / "copy" / "inside").read_text() == "hi\n"


def test_the_guest_unpacks_the_submission_as_cp_r_copied_it(tmp_path):
    """grade packs the submission into one tar file (read over 9p in one go) and
    run.sh unpacks it: the same files and times, links as links (never followed),
    a hard link's contents, names of any bytes; a fifo is left out, and so is a link
    out of the submission (it leads nowhere in the guest, and to the grader's own
    files in --local's copy: review, session 28)."""
    grade = load_grade()
    sub = tmp_path / "alice"
    (sub / "part1_clone").mkdir(parents=True)
    source = sub / "part1_clone" / "zookeeper.py"
    source.write_text("print('hi')\n")
    source.chmod(0o4755)
    os.utime(source, ns=(0, 1_234_567_891_000_000_000))
    os.link(source, sub / "part1_clone" / "again.py")
    (sub / "passwd").symlink_to("/etc/passwd")
    (sub / "up").symlink_to("../alice/part1_clone")
    (sub / "start").symlink_to("part1_clone/zookeeper.py")
    odd = os.fsencode(sub) + b"/caf\xe9 \n.txt"
    with open(odd, "wb") as f:
        f.write(b"odd\n")
    os.mkfifo(sub / "pipe")
    guest = tmp_path / "guest"
    umask = os.umask(0o022)  # the guest's root's
    try:
        guest_lays_over(grade, sub, tmp_path / "no-pyc", guest)
    finally:
        os.umask(umask)
    copied = guest / "part1_clone" / "zookeeper.py"
    assert copied.read_text() == "print('hi')\n"
    assert copied.stat().st_mtime_ns == 1_234_567_891_000_000_000
    assert copied.stat().st_mode & 0o7777 == 0o755  # no set-user-ID bit under the umask
    assert (guest / "part1_clone" / "again.py").read_text() == "print('hi')\n"
    assert not os.path.lexists(guest / "passwd") and not os.path.lexists(guest / "up")
    assert os.readlink(guest / "start") == "part1_clone/zookeeper.py"
    with open(os.fsencode(guest) + b"/caf\xe9 \n.txt", "rb") as f:
        assert f.read() == b"odd\n"
    assert not os.path.lexists(guest / "pipe")


@pytest.mark.skipif(os.getuid() != 0, reason="packs as another user")
def test_what_the_grader_cannot_read_is_left_out_and_named():
    """A file or directory of the submission that grade's user cannot read is left
    out of the copy, as cp -r would leave it, and named; the rest is packed."""
    base = Path(tempfile.mkdtemp(prefix="zk-pack-"))
    try:
        sub = base / "alice"
        (sub / "part1_clone" / "closed").mkdir(parents=True)
        (sub / "part1_clone" / "zookeeper.py").write_text("pass\n")
        (sub / "part1_clone" / "secret.txt").write_text("")
        (sub / "part1_clone" / "secret.txt").chmod(0o600)
        (sub / "part1_clone" / "closed").chmod(0o700)
        subprocess.run(["chmod", "a+rx", str(base), str(sub), str(sub / "part1_clone")],
                       check=True)
        (sub / "part1_clone" / "zookeeper.py").chmod(0o644)
        code = (f"import importlib.machinery as m, importlib.util as u, pathlib\n"
                f"loader = m.SourceFileLoader('g', {str(ROOT / 'grader' / 'grade')!r})\n"
                f"g = u.module_from_spec(u.spec_from_loader('g', loader))\n"
                f"loader.exec_module(g)\n"
                f"print(g.pack_submission(pathlib.Path({str(sub)!r}), "
                f"pathlib.Path('/tmp') / 'zk-pack-{os.getpid()}.tar'))\n")
        done = subprocess.run(["runuser", "-u", "zootest", "--", VENV_PYTHON, "-c", code],
                              capture_output=True, text=True, cwd="/")
        assert done.stdout == "['part1_clone/closed', 'part1_clone/secret.txt']\n", done
        with tarfile.open(f"/tmp/zk-pack-{os.getpid()}.tar") as tar:
            assert "./part1_clone/zookeeper.py" in tar.getnames()
    finally:
        shutil.rmtree(base)
        Path(f"/tmp/zk-pack-{os.getpid()}.tar").unlink(missing_ok=True)


def test_vm_run_takes_files_and_directories_for_the_job(tmp_path):
    """grader/vm.py run --file: a file or a directory lands in the job directory under
    its own name (a directory was a traceback); one that is not there is one line."""
    import vm

    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "sub" / "a.txt").write_text("a")
    (tmp_path / "tree" / "link").symlink_to("/etc/hostname")
    (tmp_path / "one.txt").write_text("one")
    job = tmp_path / "job"
    job.mkdir()
    vm.copy_into_job(tmp_path / "tree", job / "tree")
    vm.copy_into_job(tmp_path / "one.txt", job / "one.txt")
    assert (job / "tree" / "sub" / "a.txt").read_text() == "a"
    assert os.readlink(job / "tree" / "link") == "/etc/hostname"
    assert (job / "one.txt").read_text() == "one"
    script = tmp_path / "run.sh"
    script.write_text("true\n")
    done = subprocess.run([sys.executable, str(ROOT / "grader" / "vm.py"), "run", str(script),
                           "--file", str(tmp_path / "absent")], capture_output=True, text=True)
    assert done.returncode == 125
    assert done.stderr == f"vm: no such file: {tmp_path / 'absent'}\n"
    done = subprocess.run([sys.executable, str(ROOT / "grader" / "vm.py"), "run", str(script),
                           "--file", str(tmp_path / "one.txt"), "--file", str(job / "one.txt")],
                          capture_output=True, text=True)
    assert done.returncode == 125
    assert done.stderr == (f"vm: --file {job / 'one.txt'}: the job directory already has a "
                           "one.txt\n")


# A stand-in for QEMU's monitor (QMP, with HMP's answers for a guest whose two vCPUs
# are idle): what grader/stuck.py asks a stuck guest before it is stopped.
FAKE_QMP = r"""
import json, socket, sys
server = socket.socket(socket.AF_UNIX)
server.bind(sys.argv[1])
server.listen()
server.settimeout(60)  # never asked (a stop that reads no vCPUs): gone, not left behind
try:
    conn, _ = server.accept()
except TimeoutError:
    sys.exit(0)
f = conn.makefile("rw")
f.write(json.dumps({"QMP": {"version": {}, "capabilities": []}}) + "\n"); f.flush()
for line in f:
    request = json.loads(line)
    args = request.get("arguments", {})
    command = args.get("command-line", "")
    cpu = args.get("cpu-index", 0)
    if request["execute"] == "query-cpus-fast":
        reply = [{"cpu-index": 0}, {"cpu-index": 1}]
    elif command == "info registers":
        reply = (f"CPU#{cpu}\nRAX=0 RSP=ffffc9000000{cpu}e80\n"
                 f"RIP=ffffffff8100001{cpu} RFL=00000246 [---Z-P-] CPL=0 II=0 A20=1 HLT=1\n")
    elif command.startswith("x/128gx"):
        reply = f"ffffc9000000{cpu}e80: 0xffffffff81000123 0x0000000000000007\n"
    elif command.startswith("x/6i"):
        reply = "0xffffffff81000010:  f4  hlt\n"
    else:
        reply = {}
    f.write(json.dumps({"return": reply}) + "\n"); f.flush()
"""


def boot_hanging_qemu_with_monitor(tmp_path, monkeypatch, watchdog):
    """qemu.boot with a stand-in for QEMU that starts the job, then hangs, its monitor
    (QMP) served by FAKE_QMP; stopped when watchdog says so."""
    (tmp_path / "fake_qmp.py").write_text(FAKE_QMP)
    return boot_fake_qemu(tmp_path, monkeypatch,
                          'for a; do case "$a" in socket,id=qmp,path=*) qmp="${a#*path=}"; '
                          'qmp="${qmp%%,*}";; esac; done\n'
                          f'"{sys.executable}" "{tmp_path}/fake_qmp.py" "$qmp" &\n'
                          'printf "ZOO-JOB-START\\n" > "$console"\nexec sleep 300\n',
                          timeout=120, watchdog=watchdog)


def test_vm_boot_stops_qemu_when_the_watchdog_says_so(tmp_path, monkeypatch, capsys):
    """With a stand-in for QEMU that starts the job and then hangs: stopped, and what
    its vCPUs were doing is asked of its monitor first (cpus-at-stop.txt), which
    vm.py symbols names with the guest's kallsyms."""
    import stuck
    import vm

    asked = []

    def watchdog(job_started):
        asked.append(job_started)
        return "no result from p1_x within its time limit (420s)" if job_started else None

    started = time.monotonic()
    boot = boot_hanging_qemu_with_monitor(tmp_path, monkeypatch, watchdog)
    assert time.monotonic() - started < 30
    assert boot.stopped == "no result from p1_x within its time limit (420s)"
    assert not boot.timed_out and boot.exit_status is None and True in asked
    assert boot.error == "stopped: no result from p1_x within its time limit (420s)"
    dump = tmp_path / "results" / stuck.CPUS_AT_STOP
    text = dump.read_text()
    assert text.count("=== sample") == stuck.SAMPLES and "could not" not in text
    assert text.count("--- cpu 1: x/128gx 0xffffc90000001e80") == stuck.SAMPLES
    kallsyms = tmp_path / "kallsyms"
    kallsyms.write_text("ffffffff81000000 T _text\nffffffff81000010 t default_idle\n"
                        "ffffffff81000100 T do_idle\nffffffff81000200 D some_data\n")
    capsys.readouterr()
    assert vm.main(["symbols", str(dump), "--kallsyms", str(kallsyms)]) == 0
    named = capsys.readouterr().out.splitlines()
    assert named[:6] == ["=== sample 1 of 3",
                         "cpu 0: RIP default_idle+0x0 (interrupts on)", "cpu 0: halted (idle)",
                         "    do_idle+0x23",
                         "cpu 1: RIP default_idle+0x1 (interrupts on)", "cpu 1: halted (idle)"]
    assert named.count("    do_idle+0x23") == 2 * stuck.SAMPLES


def test_a_guest_stopped_for_a_ctrl_c_is_not_read(tmp_path, monkeypatch):
    """A watchdog's stop that is not a stuck guest (grade's Ctrl-C: stuck.NotStuck)
    stops QEMU at once, with no cpus-at-stop.txt."""
    import stuck

    boot = boot_hanging_qemu_with_monitor(
        tmp_path, monkeypatch, lambda started: started and stuck.NotStuck("interrupted (Ctrl-C)"))
    assert boot.error == "stopped: interrupted (Ctrl-C)"
    assert not (tmp_path / "results" / stuck.CPUS_AT_STOP).exists()


def test_help_and_readme_say_what_grade_does(grade):
    help_text = " ".join(subprocess.run(
        [sys.executable, str(ROOT / "grader" / "grade"), "--help"], capture_output=True,
        text=True, check=True).stdout.split())
    assert "Grade a zookeeper submission: every stage" in help_text
    assert "CLASS_DIR is a directory of such directories" in help_text
    assert "Exit status, one submission: 0 when every check passed, 1 when points" in help_text
    readme = " ".join((ROOT / "README.txt").read_text().split("\n7. Grading")[1]
                      .split("\n8. Benchmarks")[0].split())
    for said in ("--out DIR (default ./grader-results)", "DIR/scores.csv, or --csv FILE",
                 "DIR/NAME/results.json (Gradescope's), DIR/NAME/report.txt",
                 "--json FILE also writes Gradescope's results.json there (one submission only)",
                 "--vm-timeout SECONDS", "Exit status:"):
        assert said in readme, said
    hours = grade.default_vm_timeout(checks.CHECKS, "tcg") / 3600
    kvm = grade.default_vm_timeout(checks.CHECKS, "kvm") / 3600
    assert f"{hours:.1f} hours for all checks under TCG, {kvm:.1f} under KVM" in readme


def test_json_and_csv_belong_to_their_mode(grade, tmp_path, capsys):
    sub = make_submission(tmp_path / "class" / "alice")
    assert grade.main([str(sub), "--csv", str(tmp_path / "s.csv")]) == 2
    assert grade.main([str(sub.parent), "--json", str(tmp_path / "r.json")]) == 2
    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith("grade: --csv is for a class directory")
    assert err[1].startswith("grade: --json is for one submission")
    assert grade.vm_calls == []


def test_a_wrong_path_says_what_is_wrong(grade, tmp_path, capsys):
    (tmp_path / "alice.zip").write_bytes(b"PK\x03\x04")
    (tmp_path / "notes.txt").write_text("")
    for name, said in [("nothing-here", "no such file or directory"),
                       ("alice.zip", "is a file: unzip it first"),
                       ("notes.txt", "is a file, not a directory")]:
        assert grade.main([str(tmp_path / name), "--out", str(tmp_path / "out")]) == 2
        assert capsys.readouterr().err == f"grade: {tmp_path / name}: {said}\n"
    assert grade.vm_calls == []


def test_output_paths_are_checked_before_grading(grade, tmp_path, capsys):
    sub = make_submission(tmp_path / "class" / "alice")
    (tmp_path / "a-file").write_text("")
    out = ["--out", str(tmp_path / "out")]
    for argv, said in [
            ([str(sub), "--json", str(tmp_path / "no-dir" / "r.json")],
             f"--json {tmp_path / 'no-dir' / 'r.json'}: no such directory"),
            ([str(sub), "--json", str(tmp_path)], f"--json {tmp_path}: is a directory"),
            ([str(sub.parent), "--csv", str(tmp_path / "no-dir" / "s.csv")],
             f"--csv {tmp_path / 'no-dir' / 's.csv'}: no such directory"),
            ([str(sub), "--out", str(tmp_path / "a-file" / "out")],
             f"--out {tmp_path / 'a-file' / 'out'}: Not a directory")]:
        assert grade.main(argv + (out if "--out" not in argv else [])) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"grade: {said}") and len(err.splitlines()) == 1, err
    assert grade.vm_calls == []


def test_the_csv_is_written_after_each_submission(grade, tmp_path):
    class_dir = tmp_path / "class"
    for name in ("alice", "bob"):
        make_submission(class_dir / name)
    (class_dir / "carol.zip").write_text("")
    csv_path = tmp_path / "scores.csv"
    seen = {}

    def grade_in_vm(submission, args, out_dir, log=print):
        with open(csv_path) as f:
            seen[submission.name] = {r["submission"]: r["status"] for r in csv.DictReader(f)}
        return all_of_part1(), ""

    grade.grade_in_vm = grade_in_vm
    assert grade.main([str(class_dir), "--part", "1", "--out", str(tmp_path / "out"),
                       "--csv", str(csv_path)]) == 2  # carol.zip's row is not ok
    assert seen["alice"] == {"carol.zip": "not a submission: is a file: unzip it first",
                             "alice": grade.PENDING, "bob": grade.PENDING}
    assert seen["bob"]["alice"] == "ok" and seen["bob"]["bob"] == grade.PENDING


def test_ctrl_c_keeps_the_rows_graded_and_stops_the_rest(grade, tmp_path, capsys):
    class_dir = tmp_path / "class"
    for name in ("alice", "bob", "carol"):
        make_submission(class_dir / name)

    def grade_in_vm(submission, args, out_dir, log=print):
        grade.vm_calls.append(submission.name)
        if submission.name == "bob":  # a TA's Ctrl-C while bob's VM runs
            os.kill(os.getpid(), signal.SIGINT)
            watchdog = grade.Watchdog(out_dir / "none.json", [], "tcg")
            deadline = time.monotonic() + 10
            while not watchdog(True) and time.monotonic() < deadline:
                time.sleep(0.05)
            return all_of_part1(missing=2), f"VM stopped: {watchdog(True)}"
        return all_of_part1(), ""

    grade.grade_in_vm = grade_in_vm
    try:
        code = grade.main([str(class_dir), "--part", "1", "--out", str(tmp_path / "out")])
    finally:
        grade.INTERRUPTED.clear()
    assert code == 130
    assert grade.vm_calls == ["alice", "bob"]
    with open(tmp_path / "out" / "scores.csv") as f:
        rows = {row["submission"]: row["status"] for row in csv.DictReader(f)}
    assert rows == {"alice": "ok",
                    "bob": "VM stopped: interrupted (Ctrl-C); incomplete: 2 not run",
                    "carol": "not graded: interrupted"}
    assert "interrupted after 2 of 3 submissions" in capsys.readouterr().err


def test_a_failed_rootfs_build_shows_mkrootfs_own_words(grade, tmp_path, capsys,
                                                       monkeypatch):
    script = tmp_path / "mkrootfs"
    script.write_text("#!/bin/sh\necho progress\nfor i in 1 2 3 4 5 6; do echo noise $i >&2; "
                      "done\necho 'mkrootfs: busybox not found: apt-get install busybox-static'"
                      " >&2\nexit 1\n")
    script.chmod(0o755)
    monkeypatch.setattr(grade, "MKROOTFS", [str(script)])
    sub = make_submission(tmp_path / "alice")
    assert grade.main([str(sub), "--local", *AS_WHOM, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grade: building the rootfs tarball (tools/mkrootfs.py busybox) "
                          "failed:\n")
    assert "    mkrootfs: busybox not found: apt-get install busybox-static\n" in err
    assert "noise 6" in err and "noise 1" not in err and "Traceback" not in err


# --local as root names whom the submission runs as (root only when asked).
AS_WHOM = ["--user", "root"] if os.geteuid() == 0 else []


def test_local_user_is_checked_first(grade, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(grade, "build_rootfs_tar", lambda dest: pytest.fail("built"))
    sub = make_submission(tmp_path / "alice")
    out = ["--out", str(tmp_path / "out")]
    if os.geteuid() == 0:
        assert grade.main([str(sub), "--local", *out]) == 2
        assert capsys.readouterr().err == (
            "grade: --local as root would run the submission's code as root on this "
            "machine: give --user USER (an unprivileged user with subordinate ranges; "
            "--user root if you mean it)\n")
    for extra, said in [(["--local", "--user", "nosuch-zk"], "--user nosuch-zk: no such user"),
                        (["--user", "root"],
                         "--user, --python, --nosub-user and --as-root go with --local (the "
                         "VM has its own users)"),
                        (["--local", *AS_WHOM, "--python", str(tmp_path / "no-python")],
                         f"--python {tmp_path / 'no-python'}: not an executable file")]:
        assert grade.main([str(sub), *extra, *out]) == 2
        assert capsys.readouterr().err == f"grade: {said}\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="grades as another user")
def test_local_with_a_python_the_user_cannot_run_is_refused_first(grade, tmp_path, capsys,
                                                                 monkeypatch):
    """Checked once as the user, before any check: else each check is a grader error
    (PermissionError), as a TA saw with a venv in root's own directory."""
    monkeypatch.setattr(grade, "build_rootfs_tar", lambda dest: pytest.fail("built"))
    sub = make_submission(tmp_path / "alice")
    closed = tmp_path / "closed"  # root's alone
    closed.mkdir(mode=0o700)
    python = closed / "python3"
    python.symlink_to(sys.executable)
    argv = [str(sub), "--local", "--user", "zootest", "--out", str(tmp_path / "out")]
    assert grade.main(argv + ["--python", str(python)]) == 2
    assert capsys.readouterr().err == (
        f"grade: --python {python}: zootest cannot run it: Permission denied\n")
    monkeypatch.setattr(grade.sys, "executable", str(python))
    assert grade.main(argv) == 2
    assert capsys.readouterr().err == (
        f"grade: --python {python}: zootest cannot run it: Permission denied (grade's own "
        "Python: give --python, e.g. /usr/bin/python3)\n")
    assert not (tmp_path / "out" / "results.json").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="grades as another user")
def test_local_with_a_relative_python_tries_it_from_here(grade, monkeypatch):
    """As the runner resolves it (from grade's directory), not from the / it is tried
    in as the user."""
    monkeypatch.chdir("/usr/bin")  # Debian's python3 here
    args = argparse.Namespace(local=True, user="zootest", python="./python3",
                              nosub_user=None, as_root=False)
    assert grade.user_problem(args) == ""


def test_local_reports_a_runner_that_crashed(grade, tmp_path, capsys, monkeypatch):
    crash = tmp_path / "runner.py"
    crash.write_text("import sys\nprint('Traceback (most recent call last):', file=sys.stderr)"
                     "\nprint(\"KeyError: 'getpwnam(): name not found'\", file=sys.stderr)"
                     "\nsys.exit(1)\n")
    monkeypatch.setattr(grade, "RUNNER", crash)
    monkeypatch.setattr(grade, "build_rootfs_tar", lambda dest: dest.write_text(""))
    sub = make_submission(tmp_path / "alice")
    out = tmp_path / "out"
    out.mkdir()
    (out / "results.json").write_text(  # a previous run's
        json.dumps([r.to_dict() for r in all_of_part1()]))
    assert grade.main([str(sub), "--local", *AS_WHOM, "--part", "1", "--out", str(out)]) == 2
    said = capsys.readouterr()
    status = ("the runner failed (exit 1: KeyError: 'getpwnam(): name not found'); "
              f"incomplete: {len(checks.selected([1]))} not run")
    assert f"Status: {status}" in said.out and "Score: 0/15" in said.out
    assert "KeyError" in said.err


def test_runner_refuses_an_unknown_user(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "grader" / "runner.py"), "--submission",
                           str(tmp_path), "--results", str(tmp_path / "r.json"), "--user",
                           "nosuch-zk"], capture_output=True, text=True)
    assert done.returncode == 2 and "--user nosuch-zk: no such user" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "r.json").exists()


def test_local_class_directory_with_jobs_is_refused(grade, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(grade, "grade_local", lambda *a: pytest.fail("graded"))
    for name in ("alice", "bob"):
        make_submission(tmp_path / "class" / name)
    argv = [str(tmp_path / "class"), "--local", "--out", str(tmp_path / "out")]
    assert grade.main(argv + ["--jobs", "2"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("grade: --local grades one submission at a time") and (
        len(err.splitlines()) == 1)


def test_local_passes_user_and_python_to_the_runner(grade, tmp_path, monkeypatch):
    seen = tmp_path / "argv.json"
    fake = tmp_path / "runner.py"
    fake.write_text(f"import json, sys\njson.dump(sys.argv, open({str(seen)!r}, 'w'))\n")
    monkeypatch.setattr(grade, "RUNNER", fake)
    monkeypatch.setattr(grade, "build_rootfs_tar", lambda dest: dest.write_text(""))
    sub = make_submission(tmp_path / "alice")
    for extra in (["--python", sys.executable, *AS_WHOM], ["--user", "root"]):
        grade.main([str(sub), "--local", "--part", "1", "--out", str(tmp_path / "out"), *extra])
        argv = json.loads(seen.read_text())
        assert argv[argv.index("--python") + 1] == sys.executable


# What the host takes from a guest that ran a hostile submission (session 15's attack) -----


def test_a_guests_results_are_only_the_checks_asked_for_as_the_host_knows_them(tmp_path):
    """A submission run as root in the guest can rewrite results.json: the host keeps
    the selected checks only, once each, with its own parts, names, points and
    visibility, a known status, and a message of bounded length."""
    selected = checks.selected([1])
    first, second = selected[0], selected[1]
    forged = [
        {"id": first.id, "part": 9, "name": "renamed", "max_score": 500, "public": True,
         "status": "ok", "message": "x" * 100_000, "seconds": "1", "log": "../../etc/passwd",
         "slowest_command": {"seconds": True, "limit": 2}},
        {"id": first.id, "status": "fail"},  # a second result for it: the first counts
        {"id": second.id, "status": "pwned", "message": 7},
        {"id": "p4_bonus", "part": 4, "name": "bonus", "max_score": 50, "status": "ok"},
        "not a result", {"status": "ok"},
    ]
    path = tmp_path / "results.json"
    path.write_text(json.dumps(forged))
    results, problem = report.results_from_guest(path, selected)
    assert problem == "" and [r.id for r in results] == [first.id, second.id]
    one, two = results
    assert (one.part, one.name, one.max_score, one.public) == (
        first.part, first.name, first.points, first.public)
    assert one.status == "ok" and one.score == first.points
    assert len(one.message) < report.MESSAGE_LIMIT + 100 and one.message.endswith(
        f"({100_000 - report.MESSAGE_LIMIT} more characters)")
    assert (one.seconds, one.log, one.slowest_command) == (0.0, "passwd", None)
    assert two.status == "error" and two.message.startswith("the guest reported no known")
    # report.text_report, which KeyError'd on "pwned", takes them.
    assert "GRADER ERROR" in report.text_report(results)
    # Python's json reads NaN and Infinity, which JSON has not: grading.json would then
    # hold them, and jq or a browser refuse it (review, session 27); nor a 400-digit int.
    huge = "1" + "0" * 400
    path.write_text(f'[{{"id": "{first.id}", "status": "ok", "seconds": NaN, '
                    f'"limit": Infinity, "started": {huge}, '
                    '"slowest_command": {"seconds": -Infinity, "limit": 1}}]')
    (one,), _ = report.results_from_guest(path, selected)
    assert (one.seconds, one.limit, one.started, one.slowest_command) == (0.0, None, None, None)
    json.loads(json.dumps(one.to_dict()), parse_constant=lambda name: pytest.fail(name))


@pytest.mark.parametrize("what", ["link", "fifo", "not a list", "too big"])
def test_a_guests_results_json_that_is_not_a_file_of_results(tmp_path, what):
    path = tmp_path / "results.json"
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps([{"id": checks.selected([1])[0].id, "status": "ok"}]))
    if what == "link":
        path.symlink_to(secret)
    elif what == "fifo":
        os.mkfifo(path)  # would block a reader forever
    elif what == "not a list":
        path.write_text('{"id": 1}')
    else:
        path.write_text(" " * (report.RESULTS_LIMIT + 2))
    results, problem = report.results_from_guest(path, checks.selected([1]))
    assert results == [] and problem.startswith("the guest's results.json is")


def test_what_a_guest_left_in_the_share_is_made_plain(tmp_path):
    """9p's security_model=none: the guest's links, FIFOs and modes are real on the
    host.  After the guest, links and FIFOs are gone, files 0644 (no setuid bit),
    directories 0755; nothing outside the share is touched."""
    import qemu

    share = tmp_path / "share"
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "file").write_text("mine\n")
    outside.chmod(0o700)
    (share / "logs" / "deep").mkdir(parents=True)
    (share / "program").write_text("#!/bin/sh\n")
    (share / "program").chmod(0o4755)
    (share / "logs" / "a.log").write_text("log\n")
    (share / "logs" / "deep").chmod(0o777)
    (share / "logs" / "leak.log").symlink_to(outside / "file")
    (share / "logs" / "dir-link").symlink_to(outside)
    os.mkfifo(share / "logs" / "fifo.log")
    share.chmod(0o700)
    if os.geteuid() == 0:  # as QEMU run as nobody (-runas) leaves them
        for path in [share, *share.rglob("*")]:
            os.chown(path, 65534, 65534, follow_symlinks=False)
    qemu.make_plain(share)
    found = {str(p.relative_to(share)): stat.S_IMODE(p.lstat().st_mode)
             for p in share.rglob("*")}
    assert found == {"program": 0o644, "logs": 0o755, "logs/a.log": 0o644,
                     "logs/deep": 0o755}
    assert stat.S_IMODE(share.stat().st_mode) == 0o755
    assert {(p.lstat().st_uid, p.lstat().st_gid) for p in [share, *share.rglob("*")]} == {
        (os.geteuid(), os.getegid())}
    assert stat.S_IMODE(outside.stat().st_mode) == 0o700
    assert (outside / "file").read_text() == "mine\n"


@pytest.mark.parametrize("run_as", [None, (65534, 65534)])
def test_qemu_runs_in_its_sandbox_and_as_root_gives_up_root(tmp_path, run_as):
    """qemu(1)'s -sandbox always; -runas only when given (root's grader), and then
    without elevateprivileges=deny, which would refuse -runas's own setuid."""
    import image
    import qemu

    paths = image.ImagePaths(key="k", dir=tmp_path, kernel=tmp_path / "vmlinux",
                             initramfs=tmp_path / "initramfs.cpio", rootfs=tmp_path / "rootfs")
    argv = qemu.qemu_command(paths, tmp_path, tmp_path, tmp_path, tmp_path / "console.log",
                             accel="tcg", control_dir=tmp_path, run_as=run_as)
    sandbox = argv[argv.index("-sandbox") + 1].split(",")
    assert {"on", "spawn=deny", "obsolete=deny", "resourcecontrol=deny"} <= set(sandbox)
    if run_as:
        assert argv[argv.index("-runas") + 1] == "65534:65534"
        assert "elevateprivileges=deny" not in sandbox
    else:
        assert "-runas" not in argv and "elevateprivileges=deny" in sandbox
    expected = (pwd.getpwnam("nobody")[2:4] if os.geteuid() == 0 else None)
    assert qemu.qemu_identity() == (tuple(expected) if expected else None)


@pytest.mark.parametrize("says, expected", [
    ("QEMU emulator version 7.2.15 (Debian 1:7.2+dfsg-7+deb12u18)", ["-runas", "7:8"]),
    ("QEMU emulator version 9.0.2", ["-runas", "7:8"]),
    ("QEMU emulator version 9.1.0", ["-run-with", "user=7:8"]),
    ("QEMU emulator version 10.0.2 (Debian 1:10.0.2+ds-1)", ["-run-with", "user=7:8"]),
    ("QEMU emulator version 11.2.0", ["-run-with", "user=7:8"]),
    ("", ["-runas", "7:8"])])
def test_qemu_gives_up_root_in_the_spelling_its_version_knows(tmp_path, says, expected):
    """QEMU 10.0 removed -runas (9.1 deprecated it for -run-with user=): a grader run
    as root on Debian 13 or Ubuntu 25.04 failed every boot with "-runas: invalid
    option".  The version is what `QEMU --version` says."""
    import qemu

    fake = tmp_path / "qemu"
    fake.write_text(f"#!/bin/sh\nprintf '%s\\n' '{says}'\n")
    fake.chmod(0o755)
    assert qemu.give_up_root(str(fake), (7, 8)) == expected
    assert qemu.give_up_root(str(fake), None) == []


def test_a_kernel_in_a_directory_with_a_comma_is_found(tmp_path):
    """-kernel and -initrd take a plain file name: doubling its commas, as an option
    list wants, made QEMU look for another file (a home directory with a comma in its
    name never graded; attack review, session 17)."""
    import image
    import qemu

    qemu_binary = shutil.which("qemu-system-x86_64")
    if qemu_binary is None:
        pytest.skip("no qemu-system-x86_64")
    odd = tmp_path / "a,b"
    odd.mkdir()
    (odd / "vmlinux").write_bytes(b"not a kernel")
    (odd / "initramfs.cpio").write_bytes(b"")
    paths = image.ImagePaths(key="k", dir=odd, kernel=odd / "vmlinux",
                             initramfs=odd / "initramfs.cpio", rootfs=odd / "rootfs")
    argv = qemu.qemu_command(paths, tmp_path, tmp_path, tmp_path, tmp_path / "console.log",
                             accel="tcg", control_dir=tmp_path)
    kernel = argv[argv.index("-kernel") + 1]
    initrd = argv[argv.index("-initrd") + 1]
    assert (kernel, initrd) == (str(odd / "vmlinux"), str(odd / "initramfs.cpio"))
    done = subprocess.run([qemu_binary, "-nodefaults", "-display", "none", "-S", "-m", "64",
                           "-kernel", kernel, "-initrd", initrd], capture_output=True,
                          text=True, timeout=60)
    assert done.returncode != 0 and "could not open" not in done.stderr, done.stderr


def test_a_message_cannot_move_the_tas_cursor():
    """Escape sequences and carriage returns in what a submission printed are shown,
    not obeyed, in the TA's terminal and in Gradescope's output."""
    c = checks.selected([1])[0]
    r = report.CheckResult.of(c, "fail", "said: \x1b[8mhidden\r== part1: x == OK\u202e")
    text = report.text_report([r])
    assert "\x1b" not in text and "\r" not in text and "\u202e" not in text
    assert "\\x1b[8mhidden\\x0d== part1" in text
    output = report.gradescope([r], 1.0)["tests"][0]["output"]
    assert "\x1b" not in output and "\\x1b" in output


def test_the_runner_commits_the_statuses_before_the_checks_run_as_root(tmp_path,
                                                                       monkeypatch):
    """The checks that run commands as root (or as another user) come last, and the
    statuses of the others are on the console, with the host's token, before the
    first of them starts: from then on the submission may be root in the guest."""
    console = tmp_path / "console"
    console.write_text("")
    seen = []

    def as_root(z):
        seen.append(console.read_text())

    def failing_check(z):
        z.expect(False, "the student's fault")

    def passing_check(z):
        pass

    fake = [checks.Check(as_root, 1, "root's check", 3, 10, True, (), other_users=True),
            checks.Check(failing_check, 1, "failing check", 3, 10, True, ()),
            checks.Check(passing_check, 1, "passing check", 3, 10, True, ())]
    monkeypatch.setattr(checks, "CHECKS", fake)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # its scratch: not left in /tmp
    (tmp_path / "token").write_text("f00d\n")
    args = types.SimpleNamespace(
        as_root=True, commit=str(tmp_path / "token"), console=str(console),
        user="root", python=sys.executable, part=None, only=None, public=False,
        submission=str(tmp_path), results=str(tmp_path / "results.json"),
        logs=str(tmp_path / "logs"), scratch=str(runner.prepare_scratch("root")),
        timeout_scale=1.0, rootfs_tar=None, progress=False, lane_users=[],
        nosub_user=runner.NOSUB_USER)
    results = runner.run_checks(args)
    assert [r.status for r in results] == ["ok", "fail", "ok"]  # in the checks' order
    line = "ZOO-COMMIT f00d 2 failing_check=fail passing_check=ok ZOO-END"
    assert seen == [f"\n{line}\n" * report.COMMIT_COPIES]
    assert report.committed_statuses(console.read_bytes(), "f00d") == {
        "failing_check": "fail", "passing_check": "ok"}


def test_the_host_keeps_the_committed_statuses(tmp_path):
    """What results.json says after the commit counts only for the checks run after
    it (other_users); for the others, the committed status stands."""
    grade = load_grade()
    selected = checks.selected([4])
    root_check = next(c for c in selected if c.other_users)
    plain = [c for c in selected if not c.other_users]
    forged = [report.CheckResult.of(c, "ok") for c in selected]
    committed = [report.CheckResult.of(c, "fail") for c in plain[:-1]]
    line = report.commit_line("abc", committed).encode()
    everything_ok = report.commit_line("abc", forged).encode()
    console = tmp_path / "console.log"
    # The first copy cut by a kernel message (at a pair's end: it would parse, but
    # for its count and end), the second whole, then root's own line after them.
    cut = line.index(b" ", len(line) // 2)
    console.write_bytes(b"[ 1.0] boot\r\n" + line[:cut] + b"\r\n[ 9.9] a warning\r\n"
                        + line[cut:] + b"\r\n" + line + b"\r\n" + everything_ok + b"\n")
    pinned, problem = grade.pin_statuses(forged, selected, console, "abc")
    assert problem == ""
    by_id = {r.id: r for r in pinned}
    assert all(by_id[c.id].status == "fail" for c in plain[:-1])
    assert "the status committed before them counts" in by_id[plain[0].id].message
    assert by_id[plain[-1].id].status == "not run"  # reported only after the commit
    assert by_id[root_check.id].status == "ok"  # its own result: the guest's word
    # No whole copy among the first three: root's later line is not taken.
    console.write_bytes(b"\n".join([line[:cut]] * 3 + [everything_ok]) + b"\n")
    _, problem = grade.pin_statuses(forged, selected, console, "abc")
    assert problem.startswith("no commit of the results")
    # No commit (another run's token), and a check run as root reported: untrusted.
    console.write_bytes(report.commit_line("other", forged).encode() + b"\n")
    _, problem = grade.pin_statuses(forged, selected, console, "abc")
    assert problem.startswith("no commit of the results")
    # No commit, and no check run as root: results.json is the runner's alone.
    assert grade.pin_statuses(forged[:1], plain[:1], console, "abc") == (forged[:1], "")


def test_local_never_runs_the_submission_as_root_unless_asked(tmp_path):
    machine = runner.Machine("root", as_root=False)
    if os.getuid() == 0:
        assert machine.missing(("root",)) == runner.ROOT_REFUSED
        assert runner.Machine("root", as_root=True).missing(("root",)) == ""


def make_deep(top: Path, depth: int) -> None:
    """A directory depth levels deep below top, made by fds (no path that long)."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    for _ in range(depth):
        os.mkdir("d", dir_fd=fd)
        os.mkfifo("fifo", dir_fd=fd)
        below = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.close(fd)
        fd = below
    os.close(fd)


def test_a_share_too_deep_to_walk_is_emptied(tmp_path):
    """A guest's tree deeper than Python's recursion (os.walk) or a path: nothing of it
    is kept, and grading goes on (RecursionError was the class run's)."""
    import qemu

    share = tmp_path / "share"
    make_deep(share, 1500)
    qemu.plain_or_nothing(share)
    assert share.is_dir() and list(share.iterdir()) == []


def test_the_runner_removes_a_deep_tree_with_fifos(tmp_path):
    """What a check left, 1500 directories deep with a FIFO at each level: removed
    whole (shutil.rmtree stopped at its recursion limit)."""
    make_deep(tmp_path / "left", 1500)
    at = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        runner.remove_entries(at, ["left"])
    finally:
        os.close(at)
    assert not (tmp_path / "left").exists()


def test_a_rootfs_marker_the_submission_keeps_taking_fails_the_check(tmp_path,
                                                                    monkeypatch):
    """A process of the submission's that keeps making zoo-marker while the grader
    writes it: the check fails (the submission's doing), not a grader error."""
    def taken(*args):
        raise FileExistsError(17, "File exists")

    monkeypatch.setattr(runner, "write_new_file", taken)
    fixtures = runner.Fixtures(None, None)
    with pytest.raises(runner.CheckFailed, match="something of the submission's"):
        fixtures.new_file(tmp_path, "zoo-marker", "inside\n")


def test_a_guest_that_fills_the_results_share_is_stopped(grade, tmp_path):
    """The results share is the TA's disk, without a quota: more than the watchdog
    allows (here made small) stops the guest, and it is not graded again."""
    now = [0.0]
    results = tmp_path / "vm" / "results.json"
    (tmp_path / "vm" / "logs").mkdir(parents=True)
    dog = grade.Watchdog(results, checks.selected([1]), "tcg", clock=lambda: now[0])
    dog.SHARE_BYTES = 1 << 20
    assert dog(True) is None
    with open(tmp_path / "vm" / "logs" / "big", "wb") as f:
        f.write(b"x" * (2 << 20))
    assert dog(True) is None  # looked less than SHARE_POLL seconds ago
    now[0] += dog.SHARE_POLL
    stopped = dog(True)
    assert stopped == "the guest wrote more than 1 MB or 20000 files to the results share"
    assert not grade.stalled(grade.stopped_problem(stopped))
    assert grade.stalled(grade.stopped_problem(
        "no result from p1_fds within its time limit (60s)"))


def test_without_a_commit_the_forged_statuses_count_for_nothing(tmp_path):
    """A commit cut in all three copies (kernel messages the submission's code causes
    land on the same serial port) and root's code rewrote results.json as all passed:
    the checks run before root's keep none of results.json's statuses (not run, the
    grading incomplete), never the forged points."""
    grade = load_grade()
    selected = checks.selected([4])
    plain = [c for c in selected if not c.other_users]
    forged = [report.CheckResult.of(c, "ok") for c in selected]
    line = report.commit_line("abc", [report.CheckResult.of(c, "fail") for c in plain])
    cut = line.encode()[:len(line) // 2]
    console = tmp_path / "console.log"
    console.write_bytes(b"\r\n".join([cut + b"[ 9.9] Memory cgroup out of memory"] * 3) + b"\n")
    pinned, problem = grade.pin_statuses(forged, selected, console, "abc")
    assert problem.startswith("no commit of the results")
    by_id = {r.id: r for r in pinned}
    assert {by_id[c.id].status for c in plain} == {"not run"}
    assert report.score(pinned) == sum(c.points for c in selected if c.other_users)
    assert report.status(pinned, problem) != "ok"


def burn(share: float, cpu_max="50000 100000", throttled=40):
    """A p5_cpu run: the loop's rounds, busybox time's report for this share of 4 s,
    and what the container's cgroup said after (CPU_SEEN)."""
    user = 4 * share
    return run(f"loops 200000\ncpu.max {cpu_max}\nnr_throttled {throttled}\n",
               f"real\t0m 4.00s\nuser\t0m {user:.2f}s\nsys\t0m 0.00s\n")


def test_p5_cpu_measures_again_only_when_the_limit_is_in_place():
    """Once, an arm64 guest under TCG on a busy host ran the reference's loop unheld
    (94 %) under a right cpu.max: with the limit in place, a share out of range is
    measured once more, and the second measurement decides."""
    again = FakeContext(burn(0.94), burn(0.5))
    checks.p5_cpu(again)
    assert again.runs == []
    twice = failure(checks.p5_cpu, burn(0.94), burn(0.93))
    assert "got 93% of a CPU" in twice and "cpu.max 50000 100000" in twice, twice
    # No limit written (q17's mistake): one run, and the message says what was there.
    unlimited = FakeContext(burn(0.99, "max 100000", 0), burn(0.5))
    with pytest.raises(runner.CheckFailed, match="cpu.max max 100000, held back 0 times"):
        checks.p5_cpu(unlimited)
    assert len(unlimited.runs) == 1
    # Not in the cgroup at all: nothing at the container's /sys/fs/cgroup.
    outside = run("loops 200000\n", "real\t0m 4.00s\nuser\t0m 3.99s\n")
    assert "cpu.max missing, no cpu.stat" in failure(checks.p5_cpu, outside)
    assert checks.p5_cpu(FakeContext(burn(0.5))) is None


# Output a check's parsing trips on: a FAIL, never a grader error ----------------------
# An exception in a check is the grader's ("error": the grading incomplete, "ask the
# course staff"), so a zookeeper that printed what a parser did not expect turned its
# failures into grader errors (four of part 3's checks in the VM).

HOST_SIGNALS = "SigPnd:\t0\nSigBlk:\t0\nSigIgn:\t0\nSigCgt:\t0\n"
A_MOUNT = "1 0 0:1 / / rw - overlay overlay rw\n"


@pytest.mark.parametrize("check_fn, runs", [
    (checks.p1_signal_state, [run("SigPnd:\tzz\nSigIgn:\t0\n")]),
    (checks.p1_signal_state, [run("SigIgn:\t0\n")]),
    (checks.p1_signal_state, [run("no fields here\nSigIgn:\t0\n")]),
    (checks.p3_capabilities, [run("CapBnd:\t0000000000000000\n")]),
    (checks.p3_capabilities, [run("CapBnd:\tzz\nCapInh:\t0\nCapAmb:\t0\n")]),
    (checks.p1_fds, [run("lr-x 1 a b 0 Jan 1 00:00 \u00b2 -> /dev/null\n")]),
    (checks.p4_proc, [run("sh\n\u00b2\n", A_MOUNT)]),
    (checks.p5_cpu, [run("loops 20000\n", "real\t0m 1..2s\nuser\t0m 0.5s\n")]),
])
def test_odd_output_fails_the_check(check_fn, runs):
    failure(check_fn, *runs, host=run(HOST_SIGNALS))


@pytest.mark.parametrize("said", ["[]", '"EPERM"', "null", '{"chmod_setuid": ["EPERM"]}'])
def test_the_syscall_testers_odd_answer_fails_the_check(said):
    commands = types.SimpleNamespace(
        work="/tmp", python="python3", zk=lambda *a, **k: run(said + "\n"),
        host=lambda *a, **k: run('{"chmod_setuid": "EBADF"}\n'))
    z = types.SimpleNamespace(expect=runner.expect, try_syscalls=lambda part, names: (
        runner.Commands.try_syscalls(commands, part, names)))
    with pytest.raises(runner.CheckFailed):
        checks.seccomp_rules(z, ["chmod_setuid"])


def test_a_mountinfo_line_that_ends_at_its_dash_is_skipped():
    assert checks.mountinfo(A_MOUNT + "2 1 0:2 /x /proc rw a b c - \n") == checks.mountinfo(
        A_MOUNT)


# The job's console markers come at a line's start ---------------------------------
# The kernel writes a process's name (comm, 15 bytes, the submission's to choose) on
# the same console: "[ 15.9] ZOO-JOB-EXIT=7 invoked oom-killer: ..." (the VM showed it).


def console_result(tmp_path, text: bytes):
    import qemu

    console = tmp_path / "console.log"
    console.write_bytes(text)
    watched = types.SimpleNamespace(qemu_output="", timed_out=False, stopped=None,
                                    returncode=0, boot_seconds=1.0, total_seconds=9.0,
                                    job_exit_seconds=8.0, restored=True)
    job = types.SimpleNamespace(timeout=60)
    return qemu._result(watched, job, "tcg", console, tmp_path)


KERNEL_SAYS = (b"[   15.92] ZOO-JOB-EXIT=7 invoked oom-killer: gfp_mask=0xcc0\r\n"
               b"[   15.95] Memory cgroup out of memory: Killed process 9 (\r\n"
               b"[   15.95] ZOO-JOB-ERROR=x) total-vm:79692kB\r\n")


def test_a_marker_the_kernel_prints_inside_its_line_is_not_the_jobs(tmp_path):
    ended = console_result(tmp_path, b"\r\nZOO-JOB-START\r\n\r\nZOO-JOB-EXIT=0\r\n" + KERNEL_SAYS)
    assert (ended.exit_status, ended.error) == (0, None)
    failed = console_result(tmp_path, b"\r\nZOO-JOB-START\r\n" + KERNEL_SAYS
                            + b"\r\nZOO-JOB-ERROR=cannot mount the 9p share\r\n")
    assert (failed.exit_status, failed.error) == (None, "cannot mount the 9p share")


def test_the_watch_sees_a_marker_only_at_a_lines_start():
    import qemu

    assert not qemu.marked(KERNEL_SAYS, qemu.MARK_EXIT)
    assert qemu.marked(KERNEL_SAYS + b"\r\nZOO-JOB-EXIT=0\r\n", qemu.MARK_EXIT)
