"""grade CLASS_DIR --resume / --student / --list-work: a class run that was stopped
goes on without regrading what was done; one student is regraded alone; the CSV is
rebuilt from every student's OUT/NAME/grading.json, equal to a straight run's.

The first tests fake the VM (as tests/test_grader.py does); the last one is real:
three submissions graded --local (part 1) as the test user, the grade process
SIGTERMed once the first student's grading is complete, then resumed.
"""

import contextlib
import csv
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, TEST_USER, VENV_PYTHON, have_test_user, make_class
from test_grader import all_of_part1, grade, make_submission  # noqa: F401  (a fixture)

GRADE = ROOT / "grader" / "grade"
# Part 1's first checks, by id: quick, and the same whatever checks are added later.
SELECTION = ["--only", "p1_exit_status", "--only", "p1_signal", "--only", "p1_exec_errors",
             "--only", "p1_no_leftovers"]


def read_csv(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {row["submission"]: row for row in csv.DictReader(f)}


@pytest.fixture
def a_class(grade, tmp_path):  # noqa: F811
    class_dir = tmp_path / "class"
    for name in ("alice", "bob", "carol"):
        make_submission(class_dir / name)
    (class_dir / "notes.txt").write_text("not a submission\n")
    grade.fake_vm.update(alice=(all_of_part1(), ""), bob=(all_of_part1("fail"), ""),
                         carol=(all_of_part1(), ""))
    return class_dir


def test_resume_grades_only_what_is_not_done(grade, a_class, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "out"
    straight = tmp_path / "straight"
    assert grade.main([str(a_class), "--part", "1", "--out", str(straight)]) == 2  # notes.txt
    grade.vm_calls.clear()
    # As if stopped during carol: alice's and bob's gradings complete, carol's half done.
    assert grade.main([str(a_class), "--part", "1", "--out", str(out),
                       "--student", "alice", "--student", "bob"]) == 0
    (out / "carol").mkdir()
    (out / "carol" / "results.json").write_text("{")
    assert read_csv(out / "scores.csv")["carol"]["status"].startswith("not graded")
    grade.vm_calls.clear()
    capsys.readouterr()
    assert grade.main([str(a_class), "--part", "1", "--out", str(out), "--resume"]) == 2
    assert grade.vm_calls == ["carol"]
    said = capsys.readouterr().out
    assert "alice: 15/15 (ok): graded before" in said and "carol: 15/15 (ok)\n" in said
    assert (out / "scores.csv").read_text() == (straight / "scores.csv").read_text()
    # Nothing left to do: nothing graded, the same CSV.
    grade.vm_calls.clear()
    assert grade.main([str(a_class), "--part", "1", "--out", str(out), "--resume"]) == 2
    assert grade.vm_calls == []
    assert (out / "scores.csv").read_text() == (straight / "scores.csv").read_text()


def test_changed_content_or_selection_is_graded_again(grade, a_class, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    grade.main([str(a_class), "--part", "1", "--out", str(out)])
    grade.vm_calls.clear()
    (a_class / "bob" / "part1_x" / "zookeeper.py").write_text("# changed\n")
    grade.main([str(a_class), "--part", "1", "--out", str(out), "--resume"])
    assert grade.vm_calls == ["bob"]
    grade.vm_calls.clear()
    grade.main([str(a_class), "--part", "1", "--public", "--out", str(out), "--resume"])
    assert grade.vm_calls == ["alice", "bob", "carol"]  # another selection of checks
    record = json.loads((out / "alice" / "grading.json").read_text())
    assert record["selection"]["checks"] == [c.id for c in grade.checks.CHECKS
                                             if c.part == 1 and c.public]
    assert len(record["content"]) == 64 and record["status"] == "ok"


@pytest.mark.parametrize("damage", ["a result without its part", "no status",
                                    "results not a list", "points of its own",
                                    "a check that is not one"])
def test_a_damaged_grading_record_counts_as_not_graded(grade, a_class, tmp_path, capsys,  # noqa: F811
                                                        damage):
    """A grading.json hand-edited or half-damaged (valid JSON still) stopped every
    later run with a traceback, or was taken as it said (7000/7000): now it is no
    grading, said with its path; --resume grades it again (review, session 27)."""
    out = tmp_path / "out"
    grade.main([str(a_class), "--part", "1", "--out", str(out)])
    straight = (out / "scores.csv").read_text()
    record = json.loads((out / "bob" / "grading.json").read_text())
    if damage == "a result without its part":
        del record["results"][0]["part"]
    elif damage == "no status":
        del record["status"]
    elif damage == "results not a list":
        record["results"] = {"x": 1}
    elif damage == "points of its own":
        for r in record["results"]:
            r["max_score"] = 1000
    else:
        record["results"][0]["id"] = "p1_made_up"
    (out / "bob" / "grading.json").write_text(json.dumps(record))
    capsys.readouterr()
    grade.vm_calls.clear()
    assert grade.main([str(a_class), "--part", "1", "--out", str(out), "--student", "alice"]) == 0
    err = capsys.readouterr().err
    assert f"grade: {out / 'bob' / 'grading.json'} is damaged: bob counts as not graded" in err
    assert "Traceback" not in err and grade.vm_calls == ["alice"]
    assert read_csv(out / "scores.csv")["bob"]["status"].startswith("not graded")
    grade.vm_calls.clear()
    assert grade.main([str(a_class), "--part", "1", "--out", str(out), "--resume"]) == 2
    assert grade.vm_calls == ["bob"]
    assert (out / "scores.csv").read_text() == straight


def test_one_student_regraded_the_rest_kept(grade, a_class, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    grade.main([str(a_class), "--part", "1", "--out", str(out)])
    before = read_csv(out / "scores.csv")
    assert before["bob"]["score"] == "12"
    grade.vm_calls.clear()
    grade.fake_vm["bob"] = (all_of_part1(), "")  # say, a check fixed for bob
    assert grade.main([str(a_class), "--part", "1", "--out", str(out),
                       "--only-student", "bob"]) == 0
    assert grade.vm_calls == ["bob"]
    after = read_csv(out / "scores.csv")
    assert after["bob"]["score"] == "15"
    assert {n: r for n, r in after.items() if n != "bob"} == {
        n: r for n, r in before.items() if n != "bob"}
    assert grade.main([str(a_class), "--student", "dave", "--out", str(out)]) == 2


def test_list_work_prints_one_command_per_student_left(grade, a_class, tmp_path,  # noqa: F811
                                                     capsys):
    out = tmp_path / "out"
    select = ["--part", "1", "--only", "exit status is the container's"]
    grade.main([str(a_class), *select, "--out", str(out), "--student", "alice"])
    capsys.readouterr()
    assert grade.main([str(a_class), *select, "--out", str(out), "--list-work",
                       "--resume"]) == 0
    lines = capsys.readouterr().out.splitlines()
    # --student=NAME: a name that starts with "-" is still the option's value.
    assert [shlex.split(line)[2:4] for line in lines] == [
        ["--student=bob", "--no-csv"], ["--student=carol", "--no-csv"]]
    argv = shlex.split(lines[0])
    assert argv[:2] == [str(GRADE), str(a_class)] and select[-1] in argv
    assert "--boot" not in argv
    assert grade.main([str(a_class), *select, "--out", str(out), "--list-work", "--resume",
                       "--boot"]) == 0
    assert all("--boot" in shlex.split(line) for line in capsys.readouterr().out.splitlines())
    # A command of the list writes bob's files, not the CSV.
    (out / "scores.csv").unlink()
    assert grade.main(argv[1:]) == 0
    assert (out / "bob" / "grading.json").exists() and not (out / "scores.csv").exists()


def test_each_student_is_hashed_once_and_only_when_needed(grade, a_class, tmp_path,  # noqa: F811
                                                         monkeypatch, capsys):
    """A class of 200 at a deadline: hashing every student's files is a read of the
    whole class.  A work list (the parent of a Slurm run) asks for no hash when
    nothing was graded before; a class run hashes each student it grades once."""
    hashed = []
    real_hash = grade.submission_hash
    monkeypatch.setattr(grade, "submission_hash",
                        lambda sub: hashed.append(sub.name) or real_hash(sub))
    out = tmp_path / "out"
    assert grade.main([str(a_class), "--part", "1", "--out", str(out), "--list-work"]) == 0
    assert hashed == []
    assert grade.main([str(a_class), "--part", "1", "--out", str(out)]) == 2  # notes.txt
    assert sorted(hashed) == ["alice", "bob", "carol"]
    hashed.clear()
    assert grade.main([str(a_class), "--part", "1", "--out", str(out), "--resume"]) == 2
    assert sorted(hashed) == ["alice", "bob", "carol"]  # to tell what changed since
    capsys.readouterr()


def test_batch_options_are_refused_for_one_submission(grade, tmp_path, capsys):  # noqa: F811
    sub = make_submission(tmp_path / "alice")
    for option in (["--resume"], ["--student", "x"], ["--slurm"], ["--list-work"]):
        assert grade.main([str(sub), *option, "--out", str(tmp_path / "o")]) == 2
        assert "is for a class directory" in capsys.readouterr().err


# The real thing: --local as the test user, killed and resumed ----------------------


def grade_cmd(class_dir: Path, out: Path, *extra: str) -> list[str]:
    return [sys.executable, str(GRADE), str(class_dir), "--local", *SELECTION,
            "--user", TEST_USER, "--python", VENV_PYTHON, "--out", str(out), *extra]


@pytest.fixture(scope="module")
def real_class():
    if os.getuid() != 0 or not have_test_user() or not Path(VENV_PYTHON).exists():
        pytest.skip("needs root, the test user and the venv (make test-deps)")
    base, class_dir = make_class("zk-resume-")
    yield base, class_dir
    subprocess.run(["rm", "-rf", str(base)], check=False)


@pytest.mark.slow
def test_a_local_class_run_killed_halfway_and_resumed(real_class):
    base, class_dir = real_class
    straight, out = base / "straight", base / "out"
    started = time.monotonic()
    done = subprocess.run(grade_cmd(class_dir, straight), capture_output=True, text=True,
                          timeout=600)
    one_run = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    rows = read_csv(straight / "scores.csv")
    assert [rows[n]["score"] for n in ("alice", "bob", "carol")] == ["11", "11", "0"]
    # Stopped (SIGTERM) as soon as alice's grading is complete: bob's is under way.
    proc = subprocess.Popen(grade_cmd(class_dir, out), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 300
    while not (out / "alice" / "grading.json").exists() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stdout.read()
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)
    said, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, said  # SIGTERM: stopped as Ctrl-C stops it
    assert "interrupted after" in said, said
    # SIGTERM lets the student in progress finish (as Ctrl-C), and no other start: on
    # a busy machine this test may see alice's file late, after bob's (or carol's,
    # graded in no time) had begun.  What was done is the first few, in order.
    names = ["alice", "bob", "carol"]
    done_before = [n for n in names if (out / n / "grading.json").exists()]
    assert done_before == names[:len(done_before)] and done_before, said
    alice = {f: (out / "alice" / f).stat().st_mtime_ns
             for f in ("grading.json", "results.json", "report.txt")}
    started = time.monotonic()
    resumed = subprocess.run(grade_cmd(class_dir, out, "--resume"), capture_output=True,
                             text=True, timeout=600)
    resume_run = time.monotonic() - started
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "alice: 11/11 (ok): graded before" in resumed.stdout, resumed.stdout
    carol = "carol: 0/11 (ok)" + (": graded before" if "carol" in done_before else "\n")
    assert carol in resumed.stdout, resumed.stdout
    assert {f: (out / "alice" / f).stat().st_mtime_ns for f in alice} == alice
    kept = len(done_before)
    graded = {1: "2 submissions", 2: "1 submission", 3: "0 submissions"}[kept]
    assert f"grade: {graded} graded, {kept} graded before and kept" in (
        resumed.stdout), resumed.stdout
    assert (out / "scores.csv").read_text() == (straight / "scores.csv").read_text()
    print(f"straight run {one_run:.1f}s, resumed {resume_run:.1f}s "
          f"(done before the kill: {', '.join(done_before)})")


def test_slurm_tasks_that_left_nothing_are_said_and_resumed(grade, a_class, tmp_path,  # noqa: F811
                                                           monkeypatch, capsys):
    """--slurm's gathering, the cluster faked: of the array's tasks only the first ran
    (the others were cancelled, say): their rows say so and point at the task's
    output; --resume --slurm then submits only those."""
    import slurm

    submitted = []

    def submit_and_wait(commands, names, state, args, options, log=print):
        submitted.append((names, options))
        argv = commands[0]
        assert grade.main(argv[1:]) == 0  # the first task: alice, --no-csv
        return "42"

    monkeypatch.setattr(slurm, "submit_and_wait", submit_and_wait)
    out = tmp_path / "out"
    assert grade.main([str(a_class), "--part", "1", "--out", str(out),
                       "--slurm", "--partition=x"]) == 2
    assert submitted == [(["alice", "bob", "carol"], ["--partition=x"])]
    got = read_csv(out / "scores.csv")
    assert got["alice"]["status"] == "ok"
    assert got["carol"]["status"] == ("not graded: its Slurm task left no grading.json "
                                      f"(see {out / '.slurm'}/42_2.out)")
    submitted.clear()
    grade.main([str(a_class), "--part", "1", "--out", str(out), "--resume", "--slurm"])
    assert submitted[0][0] == ["bob", "carol"]


@pytest.mark.slow
def test_a_reader_that_went_away_changes_no_row(real_class):
    """grade ... | head -2: print raised BrokenPipeError inside each student's grading,
    and every student after the first rows scored 0 with "error: [Errno 32] Broken
    pipe" (attack review, session 17).  The rows are the straight run's."""
    base, class_dir = real_class
    out = base / "piped"
    read_end, write_end = os.pipe()
    os.close(read_end)  # as head's, once it has its lines
    try:
        done = subprocess.run(grade_cmd(class_dir, out), stdout=write_end,
                              stderr=subprocess.PIPE, text=True, timeout=600)
    finally:
        os.close(write_end)
    assert "Traceback" not in done.stderr, done.stderr
    rows = read_csv(out / "scores.csv")
    assert [(rows[n]["score"], rows[n]["status"]) for n in ("alice", "bob", "carol")] == [
        ("11", "ok"), ("11", "ok"), ("0", "ok")], rows


def test_the_commit_checked_out_is_part_of_the_content(grade, tmp_path):  # noqa: F811
    """Two collects at two deadlines can check out two commits with the same files
    (an empty commit, say) and other histories: the commits rule differs, so --resume
    must not keep the first grading (its hash left .git out)."""
    sub = make_submission(tmp_path / "bob")
    (sub / ".git").mkdir()
    (sub / ".git" / "HEAD").write_text("1" * 40 + "\n")
    first = grade.submission_hash(sub)
    (sub / ".git" / "HEAD").write_text("2" * 40 + "\n")
    assert grade.submission_hash(sub) != first
    (sub / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (sub / ".git" / "refs" / "heads").mkdir(parents=True)
    (sub / ".git" / "refs" / "heads" / "main").write_text("3" * 40 + "\n")
    on_main = grade.submission_hash(sub)
    (sub / ".git" / "refs" / "heads" / "main").write_text("4" * 40 + "\n")
    assert grade.submission_hash(sub) != on_main


def test_students_collect_could_not_collect_have_rows(grade, a_class, tmp_path,  # noqa: F811
                                                      capsys):
    """A class collected by grader/collect: a student whose repository could not be
    cloned has no directory, one with nothing before the deadline an empty clone.
    Both have rows with collect's reason, and a max_score (not 0: a spreadsheet's
    percentage would divide by zero)."""
    state = a_class / ".collect"
    state.mkdir()
    for name, status in (("dave", "not collected: git clone: repository does not exist"),
                         ("erin", "not collected: no commit on main at or before the "
                                  "deadline")):
        (state / f"{name}.json").write_text(json.dumps({"student": name, "commit": "",
                                                        "status": status}))
    (a_class / "erin" / ".git").mkdir(parents=True)
    out = tmp_path / "out"
    assert grade.main([str(a_class), "--part", "1", "--out", str(out)]) == 2
    rows = read_csv(out / "scores.csv")
    assert rows["dave"]["status"] == "not collected: git clone: repository does not exist"
    assert rows["erin"]["status"].startswith("not collected: no commit on main")
    assert rows["dave"]["max_score"] == rows["alice"]["max_score"] != "0"
    assert rows["dave"]["score"] == "0"
    # Nor can --out be a student's clone (grade . in the class directory, whose default
    # --out grader-results a student of that name had): collect would clean it away.
    (a_class / "grader-results" / ".git").mkdir(parents=True)
    assert grade.main([str(a_class), "--part", "1", "--out",
                       str(a_class / "grader-results")]) == 2
    assert "in the class directory" in capsys.readouterr().err


def test_grade_waits_for_no_collect(grade, a_class, tmp_path, capsys):  # noqa: F811
    """A collect at work on the class (its lock held alone): grade refuses, rather than
    hash and grade trees that change under it."""
    import fcntl
    with open(a_class / ".collect.lock", "w") as collecting:
        fcntl.flock(collecting, fcntl.LOCK_EX)
        assert grade.main([str(a_class), "--part", "1", "--out", str(tmp_path / "out")]) == 2
    assert "collect is writing" in capsys.readouterr().err
    assert grade.vm_calls == []
    assert grade.main([str(a_class), "--part", "1", "--out", str(tmp_path / "out")]) == 2
    assert sorted(grade.vm_calls) == ["alice", "bob", "carol"]


def test_the_roster_and_the_lock_collect_left(grade, a_class, tmp_path, capsys):  # noqa: F811
    """A student taken off the roster keeps collect's record, but no row in grade's
    CSV; a .collect.lock grade cannot open (another TA's, 0600) is said, not a
    traceback; a packed branch is part of the hash as a loose one is."""
    state = a_class / ".collect"
    state.mkdir()
    (state / "dave.json").write_text(json.dumps({"student": "dave", "commit": "",
                                                 "status": "not collected: gone"}))
    (state / ".roster.json").write_text(json.dumps(["alice", "bob", "carol"]))
    (a_class / ".collect.lock").mkdir()  # opening it fails, as an unreadable one does
    out = tmp_path / "out"
    assert grade.main([str(a_class), "--part", "1", "--out", str(out)]) == 2  # notes.txt
    assert "dave" not in read_csv(out / "scores.csv")
    assert "graded without waiting for collect" in capsys.readouterr().err
    sub = a_class / "alice"
    (sub / ".git").mkdir()
    (sub / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (sub / ".git" / "packed-refs").write_text("1" * 40 + " refs/heads/main\n")
    first = grade.submission_hash(sub)
    (sub / ".git" / "packed-refs").write_text("2" * 40 + " refs/heads/main\n")
    assert grade.submission_hash(sub) != first


def test_progress_lines_lost_only_when_no_one_reads_them(grade):  # noqa: F811
    read_end, write_end = os.pipe()
    os.close(read_end)
    gone = open(write_end, "w")
    terminal = grade.report.Terminal(gone)
    terminal.write("nobody reads this\n")
    terminal.flush()  # BrokenPipeError: the lines are lost, nothing is raised
    assert terminal.gone
    with contextlib.suppress(BrokenPipeError):  # (its buffer still holds the line)
        gone.close()
    full = open("/dev/full", "w")
    terminal = grade.report.Terminal(full)
    terminal.write("x" * 100)
    with pytest.raises(OSError):  # ENOSPC: as print would say it
        terminal.flush()
    with contextlib.suppress(OSError):
        full.close()
