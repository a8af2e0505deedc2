"""grade as a hurried TA runs it at a deadline (session 16's attack review): a run
cut short and resumed, two runs on one --out, odd directory names, --out in the
wrong place, a full disk, a Slurm job that sbatch refuses.  The VM is faked, as in
tests/test_grader.py."""

import ast
import csv
import errno
import fcntl
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_grader import all_of_part1, grade, make_submission  # noqa: F401  (a fixture)


def read_csv(path: Path) -> dict[str, dict]:
    with open(path, newline="", encoding="utf-8") as f:
        return {row["submission"]: row for row in csv.DictReader(f)}


@pytest.fixture
def two(grade, tmp_path):  # noqa: F811
    class_dir = tmp_path / "class"
    for name in ("alice", "bob"):
        make_submission(class_dir / name)
    grade.fake_vm.update(alice=(all_of_part1(), ""), bob=(all_of_part1(), ""))
    return class_dir


def test_resume_grades_again_a_student_whose_grading_was_cut_short(grade, two,  # noqa: F811
                                                                   tmp_path):
    out = tmp_path / "out"
    grade.fake_vm["bob"] = (all_of_part1(missing=2), "VM stopped: interrupted (Ctrl-C)")
    assert grade.main([str(two), "--part", "1", "--out", str(out)]) == 2
    assert json.loads((out / "bob" / "grading.json").read_text())["status"] != "ok"
    grade.fake_vm["bob"] = (all_of_part1(), "")
    grade.vm_calls.clear()
    assert grade.main([str(two), "--part", "1", "--out", str(out), "--resume"]) == 0
    assert grade.vm_calls == ["bob"]  # alice's complete grading is kept, bob's is not
    assert read_csv(out / "scores.csv")["bob"]["status"] == "ok"


def test_a_student_another_run_grades_is_left_to_it(grade, two, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    (out / "bob").mkdir(parents=True)
    with open(out / "bob" / ".lock", "w") as held:  # as a Slurm task grading bob holds it
        fcntl.flock(held, fcntl.LOCK_EX)
        assert grade.main([str(two), "--part", "1", "--out", str(out)]) == 2
    assert grade.vm_calls == ["alice"]
    assert read_csv(out / "scores.csv")["bob"]["status"].startswith(
        "not graded: another grade run is grading it now")
    assert not (out / "bob" / "grading.json").exists()


def test_a_second_run_writing_the_same_csv_is_refused(grade, two, tmp_path,  # noqa: F811
                                                      capsys):
    out = tmp_path / "out"
    out.mkdir()
    with open(out / ".grade.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        assert grade.main([str(two), "--part", "1", "--out", str(out)]) == 2
    assert grade.vm_calls == [] and not (out / "scores.csv").exists()
    err = capsys.readouterr().err
    assert err == (f"grade: another grade run is writing {out} (.grade.lock there is "
                   "locked): wait for it to end, or give another --out\n")


def test_odd_names_are_rows_a_spreadsheet_shows_as_they_are(grade, two, tmp_path,  # noqa: F811
                                                           capsys):
    odd = {os.fsdecode(b"caf\xe9"): "caf\\xe9", "=1+1": "'=1+1", "esc\x1b[2J": "esc\\x1b[2J"}
    for name in odd:
        make_submission(two / name)
        grade.fake_vm[name] = (all_of_part1(), "")
    make_submission(two / "scores.csv")  # collect takes any name a roster gives
    make_submission(two / "two\nlines")
    out = tmp_path / "out"
    assert grade.main([str(two), "--part", "1", "--out", str(out)]) == 2  # scores.csv
    rows = read_csv(out / "scores.csv")
    for shown in odd.values():
        assert rows[shown]["score"] == "15", rows
    assert rows["scores.csv"]["status"].startswith(
        "not a submission: its name is one of grade's own files")
    assert rows["two\\x0alines"]["status"] == ("not a submission: its name holds a line "
                                              "break, which no work list line can: rename it")
    said = capsys.readouterr()
    assert "\x1b" not in said.out + said.err and "Traceback" not in said.err


@pytest.mark.parametrize("where", ["class", "class/alice/results", "class/alice"])
def test_out_in_the_class_or_a_students_directory_is_refused(grade, two, tmp_path,  # noqa: F811
                                                             capsys, where):
    out = tmp_path / where
    assert grade.main([str(two), "--part", "1", "--out", str(out)]) == 2
    assert capsys.readouterr().err.startswith(f"grade: --out {out}: in the class directory")
    assert grade.vm_calls == [] and not (two / "alice" / "results").exists()
    assert not (two / "alice" / "scores.csv").exists()


@pytest.mark.parametrize("where", ["class/scores.csv", "class/alice/README.txt",
                                   "class/collect.csv"])
def test_a_csv_in_the_class_directory_is_refused(grade, two, tmp_path,  # noqa: F811
                                                 capsys, where):
    """--csv was taken anywhere: in the class directory it became a student's row on
    every later run, replaced collect's collect.csv, or a student's README.txt before
    the rules read it (review, session 28).  In --out at the class's top it may be."""
    csv_path = tmp_path / where
    before = csv_path.read_bytes() if csv_path.exists() else None
    for out in (tmp_path / "out", tmp_path):  # the second: an --out above the class
        assert grade.main([str(two), "--part", "1", "--out", str(out), "--csv",
                           str(csv_path)]) == 2
        assert capsys.readouterr().err.startswith(f"grade: --csv {csv_path}: in the class "
                                                  "directory")
        assert grade.vm_calls == []
        assert (csv_path.read_bytes() if csv_path.exists() else None) == before
    inside_out = two / "results"
    assert grade.main([str(two), "--part", "1", "--out", str(inside_out), "--csv",
                       str(inside_out / "class.csv")]) == 0
    assert set(read_csv(inside_out / "class.csv")) == {"alice", "bob"}


def test_out_at_the_top_of_the_class_directory_is_no_submission(grade, two,  # noqa: F811
                                                                monkeypatch):
    monkeypatch.chdir(two)  # the default --out, ./grader-results, from inside the class
    assert grade.main([str(two), "--part", "1"]) == 0
    assert set(read_csv(two / "grader-results" / "scores.csv")) == {"alice", "bob"}


@pytest.mark.skipif(os.getuid() != 0, reason="gives --out to another user")
@pytest.mark.parametrize("whose", ["another user's", "world-writable", "in a shared parent"])
def test_an_out_that_another_user_may_write_is_refused(grade, two, tmp_path,  # noqa: F811
                                                       capsys, whose):
    """Another student who made --out first (a TA's --out /tmp/grading), or may write
    in it, swaps in a results.json of their own while the grading runs: refused."""
    out = tmp_path / "out"
    if whose == "in a shared parent":
        (tmp_path / "shared").mkdir()
        (tmp_path / "shared").chmod(0o777)
        out = tmp_path / "shared" / "out"
    out.mkdir()
    if whose == "another user's":
        os.chown(out, 65534, 65534)
        out.chmod(0o755)
    elif whose == "world-writable":
        out.chmod(0o777)
    assert grade.main([str(two), "--part", "1", "--out", str(out)]) == 2
    assert "may write in it, and so replace the results" in capsys.readouterr().err
    assert grade.vm_calls == [] and not (out / "scores.csv").exists()


@pytest.mark.parametrize("given", ["default", "--csv"])
def test_a_students_link_on_the_way_to_out_or_csv_is_refused(grade, two, tmp_path, capsys,  # noqa: F811
                                                             monkeypatch, given):
    """A TA graded one submission from inside it: its grader-results was the student's
    link to another student's results directory (root's), and root wrote its
    results.json there (attack review, session 29)."""
    victim = tmp_path / "out" / "bob"
    victim.mkdir(parents=True)
    (victim / "results.json").write_text("bob's\n")
    alice = two / "alice"
    link = alice / ("grader-results" if given == "default" else "scores")
    link.symlink_to(victim)
    os.chown(link, 65534, 65534, follow_symlinks=False)
    monkeypatch.chdir(alice)
    argv = ["." if given == "default" else str(two), "--part", "1"]
    if given == "--csv":
        argv += ["--out", str(tmp_path / "o"), "--csv", "scores/scores.csv"]
    assert grade.main(argv) == 2
    err = capsys.readouterr().err
    assert f"{link} is a link of uid 65534's" in err and err.count("\n") == 1
    assert grade.vm_calls == [] and os.listdir(victim) == ["results.json"]
    assert (victim / "results.json").read_text() == "bob's\n"


def test_an_out_in_a_students_directory_is_refused(grade, two, tmp_path, capsys,  # noqa: F811
                                                  monkeypatch):
    """Its grader-results a real directory when checked, the student could still swap
    it for a link before grade writes: a directory above --out that another user owns
    is refused, as one they may write in is (review of session 29's change)."""
    alice = two / "alice"
    os.chown(alice, 65534, 65534)
    monkeypatch.chdir(alice)
    monkeypatch.delenv("SUDO_UID", raising=False)
    assert grade.main([".", "--part", "1"]) == 2
    assert f"uid 65534 (who owns {alice}) may write in it" in capsys.readouterr().err
    assert grade.vm_calls == []
    monkeypatch.setenv("SUDO_UID", "65534")  # the TA's own directory, under sudo
    assert grade.main([".", "--part", "1"]) == 0


def test_out_is_walked_as_the_kernel_would(grade, tmp_path):  # noqa: F811
    """A link of ours (or root's) is followed name by name: a student's link inside its
    target is still found, and '..' after a link goes up from where the link led."""
    theirs = tmp_path / "student" / "out"
    theirs.parent.mkdir()
    theirs.symlink_to(tmp_path / "victim")
    os.chown(theirs, 65534, 65534, follow_symlinks=False)
    (tmp_path / "mine").symlink_to(tmp_path / "student")
    assert grade.walk_to(tmp_path / "mine" / "out" / "x") == (
        None, f"{theirs} is a link of uid 65534's")
    (tmp_path / "a" / "b").mkdir(parents=True)
    (tmp_path / "up").symlink_to("a/b")
    assert grade.walk_to(tmp_path / "up" / ".." / "new" / "dir") == (
        tmp_path / "a" / "new" / "dir", "")
    loop = tmp_path / "loop"
    loop.symlink_to("loop")
    assert grade.walk_to(loop)[1].endswith("Too many levels of symbolic links")


def test_a_second_local_run_as_the_same_user_waits_for_the_first(grade, two, tmp_path,  # noqa: F811
                                                                 capsys, monkeypatch):
    """Two grade --local runs as one user at once (two sections, two --out) failed each
    other's checks, and the rows that lost points said "ok" (attack review, session
    29).  The second now waits for the first's lock on that user, and says so."""
    import types
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    args = types.SimpleNamespace(user="zootest", nosub_user=None)
    first = grade.hold_the_local_users(args)  # the first run's locks
    assert first
    code = ("import fcntl, sys, time\n"
            "sys.path.insert(0, sys.argv[1])\n"
            "import importlib.machinery as m, importlib.util as u, types\n"
            "loader = m.SourceFileLoader('g', sys.argv[1] + '/grade')\n"
            "g = u.module_from_spec(u.spec_from_loader('g', loader))\n"
            "loader.exec_module(g)\n"
            "t = time.monotonic()\n"
            "g.hold_the_local_users(types.SimpleNamespace(user='zootest', nosub_user=None))\n"
            "print(round(time.monotonic() - t, 1))\n")
    second = subprocess.Popen([sys.executable, "-c", code, str(Path(grade.__file__).parent)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(1.5)
    assert second.poll() is None, second.communicate()  # waiting
    for fd in first:
        os.close(fd)
    out, err = second.communicate(timeout=30)
    assert second.returncode == 0, err
    assert float(out) >= 1.0
    assert "another grade --local runs checks as " in err and "waiting" in err


def test_ctrl_c_while_resume_hashes_the_class_is_one_line(grade, two, tmp_path, capsys,  # noqa: F811
                                                          monkeypatch):
    """--resume's first pass (every submission hashed) ran outside any handler: Ctrl-C
    or SIGTERM there ended grade with a traceback (attack review, session 29)."""
    out = tmp_path / "out"
    assert grade.main([str(two), "--part", "1", "--out", str(out)]) == 0

    def interrupted(sub):
        raise KeyboardInterrupt

    monkeypatch.setattr(grade, "submission_hash", interrupted)
    assert grade.main([str(two), "--part", "1", "--out", str(out), "--resume"]) == 130
    assert capsys.readouterr().err.splitlines()[-1] == "grade: interrupted"


def test_a_full_disk_for_answers_csv_is_one_line(grade, two, tmp_path, capsys,  # noqa: F811
                                                 monkeypatch):
    def full(path, subs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(grade.rules, "write_answers", full)
    assert grade.main([str(two), "--part", "1", "--out", str(tmp_path / "o"), "--rules"]) == 2
    assert capsys.readouterr().err.splitlines()[-1] == (
        f"grade: {tmp_path / 'o' / 'answers.csv'}: No space left on device")
    assert grade.vm_calls == []


def test_a_rows_progress_line_is_escaped_and_scored_as_its_csv_row(grade, two, tmp_path,  # noqa: F811
                                                                   capsys):
    """A row without results printed 0/0 where the CSV says 0/15, and its status
    as it came, control characters and line breaks included (attack review)."""
    grade.fake_vm["bob"] = RuntimeError("boom\x1b[2J\nsecond line")
    assert grade.main([str(two), "--part", "1", "--out", str(tmp_path / "o")]) == 2
    full = sum(c.points for c in grade.checks.selected([1], None, False))
    bob = [line for line in capsys.readouterr().out.splitlines() if line.startswith("bob")]
    assert bob == [f"bob: 0/{full} (error: boom\\x1b[2J\\x0asecond line)"]
    assert read_csv(tmp_path / "o" / "scores.csv")["bob"]["max_score"] == str(full)


def test_a_csv_path_that_is_a_link_is_refused(grade, two, tmp_path, capsys):  # noqa: F811
    link = tmp_path / "scores.csv"
    link.symlink_to(tmp_path / "elsewhere.csv")
    assert grade.main([str(two), "--part", "1", "--out", str(tmp_path / "out"),
                       "--csv", str(link)]) == 2
    assert "not a regular file" in capsys.readouterr().err
    assert link.is_symlink()


def test_a_full_disk_is_one_line_and_the_gradings_are_kept(grade, two, tmp_path,  # noqa: F811
                                                           capsys, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(28, os.strerror(28))

    monkeypatch.setattr(grade.report, "write_csv", full)
    out = tmp_path / "out"
    assert grade.main([str(two), "--part", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("No space left on device") == 1 and "Traceback" not in err
    assert (out / "alice" / "grading.json").exists() and (out / "bob" / "grading.json").exists()


def test_a_slurm_job_sbatch_refuses_leaves_the_gradings_as_they_were(grade, two,  # noqa: F811
                                                                     tmp_path, monkeypatch):
    out = tmp_path / "out"
    assert grade.main([str(two), "--part", "1", "--out", str(out)]) == 0
    before = (out / "bob" / "grading.json").read_text()
    sys.path.insert(0, str(Path(grade.__file__).parent))
    import slurm

    def refused(*args, **kwargs):
        raise slurm.SlurmError("sbatch: error: invalid partition specified: shrot")

    monkeypatch.setattr(slurm, "submit_and_wait", refused)
    assert grade.main([str(two), "--part", "1", "--out", str(out), "--student", "bob",
                       "--slurm", "--partition=shrot"]) == 2
    assert (out / "bob" / "grading.json").read_text() == before


def test_the_csv_names_every_student_from_the_start(grade, two, tmp_path):  # noqa: F811
    out = tmp_path / "out"
    seen = {}

    def grade_in_vm(submission, args, out_dir, log=print):
        seen[submission.name] = read_csv(out / "scores.csv")
        return all_of_part1(), ""

    grade.grade_in_vm = grade_in_vm
    assert grade.main([str(two), "--part", "1", "--out", str(out)]) == 0
    # While alice is graded (or after a kill -9 then), bob's row says he is still to come.
    assert seen["alice"]["bob"]["status"] == grade.PENDING


def test_another_class_with_the_same_names_is_not_mixed_in(grade, two, tmp_path,  # noqa: F811
                                                          capsys):
    out = tmp_path / "out"
    assert grade.main([str(two), "--part", "1", "--out", str(out)]) == 0
    section_b = tmp_path / "section-b"
    make_submission(section_b / "alice")
    (section_b / "alice" / "README.txt").write_text("another alice\n")
    grade.vm_calls.clear()
    assert grade.main([str(section_b), "--part", "1", "--out", str(out)]) == 2
    assert grade.vm_calls == []
    assert read_csv(out / "scores.csv")["alice"]["status"].startswith(
        "not graded: its --out directory holds the grading of another class's alice")
    assert json.loads((out / "alice" / "grading.json").read_text())["path"] == str(two / "alice")
    capsys.readouterr()
    assert grade.main([str(section_b), "--part", "1", "--out", str(out), "--list-work"]) == 0
    assert capsys.readouterr().out == ""  # no work for a Slurm task or GNU parallel either
    # The same class moved elsewhere is the same class, bob's new files and all.
    moved = tmp_path / "moved"
    two.rename(moved)
    (moved / "bob" / "README.txt").write_text("changed after the move\n")
    assert grade.main([str(moved), "--part", "1", "--out", str(out), "--resume"]) == 0
    assert grade.vm_calls == ["bob"]


def test_a_change_to_the_guest_or_grade_itself_regrades(grade):  # noqa: F811
    """Every module of the grader's that the runner imports is in the selection's hash
    (user_systemd.py once was not: a change to the cleanup's watch kept old verdicts)."""
    names = {p.name for p in grade.grader_files()}
    assert {"checks.py", "runner.py", "report.py", "grade", "zoo-job", "try_syscalls.py",
            "mkrootfs.py"} <= names
    grader = Path(grade.__file__).parent
    own, todo = set(), ["runner.py", "checks.py"]
    while todo:  # what they import, and what that imports
        module = todo.pop()
        own.add(module)
        for node in ast.walk(ast.parse((grader / module).read_text())):
            imported = ([alias.name for alias in node.names] if isinstance(node, ast.Import)
                        else [node.module] if isinstance(node, ast.ImportFrom) and node.module
                        else [])
            todo += [f"{name}.py" for name in imported
                     if (grader / f"{name}.py").is_file() and f"{name}.py" not in own]
    assert {"user_systemd.py", "schedulers.py", "home.py"} <= own <= names, own - names


def test_a_run_for_one_student_keeps_the_others_rows_as_they_were(grade, two,  # noqa: F811
                                                                  tmp_path):
    out = tmp_path / "out"
    grade.fake_vm["bob"] = (all_of_part1(missing=2), "VM killed at the 600s timeout")
    assert grade.main([str(two), "--part", "1", "--out", str(out)]) == 2
    before = read_csv(out / "scores.csv")["bob"]
    assert grade.main([str(two), "--part", "1", "--out", str(out), "--student", "alice"]) == 0
    assert read_csv(out / "scores.csv")["bob"] == before  # not "not graded", not 0


def test_an_out_without_flock_grades_and_says_so_once(grade, two, tmp_path, capsys,  # noqa: F811
                                                      monkeypatch):
    def no_locks(f, how):
        raise OSError(37, os.strerror(37))  # ENOLCK: some NFS; Lustre without -o flock

    monkeypatch.setattr(grade.report.fcntl, "flock", no_locks)
    monkeypatch.setattr(grade.report, "LOCKS_UNSUPPORTED", [])
    assert grade.main([str(two), "--part", "1", "--out", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert err.count("cannot lock it (No locks available)") == 1 and "Traceback" not in err


def test_json_may_go_to_stdout(grade, two, tmp_path):  # noqa: F811
    link = tmp_path / "stdout"
    link.symlink_to(tmp_path / "results.json")  # as /dev/stdout links to the terminal
    assert grade.main([str(two / "alice"), "--part", "1", "--out", str(tmp_path / "o"),
                       "--json", str(link)]) == 0
    assert json.loads((tmp_path / "results.json").read_text())["score"] == 15


@pytest.mark.skipif(os.geteuid() != 0, reason="makes a link of another user's")
@pytest.mark.parametrize("what", ["link", "file"])
def test_json_is_never_written_through_another_users_link_or_file(grade, two, tmp_path,  # noqa: F811
                                                                   capsys, monkeypatch, what):
    """Another student's link in /tmp named as the TA's --json (to the TA's files:
    followed where fs.protected_symlinks is 0), or file there (theirs to read and
    change), is refused: at the start, and when grade writes the JSON."""
    precious = tmp_path / "precious"
    precious.write_text("the TA's\n")
    theirs = tmp_path / "results.json"
    if what == "link":
        theirs.symlink_to(precious)
    else:
        theirs.write_text("theirs\n")
    os.chown(theirs, 65534, 65534, follow_symlinks=False)
    argv = [str(two / "alice"), "--part", "1", "--out", str(tmp_path / "o"), "--json",
            str(theirs)]
    assert grade.main(argv) == 2
    assert "another user's (uid 65534)" in capsys.readouterr().err
    monkeypatch.setattr(grade, "outputs_problem", lambda *args: "")  # taken after the check
    assert grade.main(argv) == 2
    assert "another user's (uid 65534) " in capsys.readouterr().err
    assert precious.read_text() == "the TA's\n"
    assert what == "link" or theirs.read_text() == "theirs\n"


@pytest.mark.skipif(os.geteuid() != 0, reason="only root lends the share to nobody")
def test_an_earlier_runs_results_are_lent_to_qemu_too(tmp_path):
    """vm.py run --results DIR again, as root: QEMU (nobody) must write over the files
    the first run left there (root's, once made plain)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "grader"))
    import qemu

    job, sub, results = (tmp_path / n for n in ("job", "sub", "results"))
    for d in (job, sub, results / "logs"):
        d.mkdir(parents=True)
    (results / "logs" / "a.log").write_text("earlier\n")
    qemu.lend_shares((job, sub, results), (65534, 65534))
    assert {p.stat().st_uid for p in [results, *results.rglob("*")]} == {65534}
    qemu.make_plain(results)
    assert {p.stat().st_uid for p in [results, *results.rglob("*")]} == {0}


def test_one_students_tree_too_deep_is_that_students_row(grade, two, tmp_path,  # noqa: F811
                                                        capsys):
    """rglob and tarfile recurse once a level (Python < 3.12): a tree 1100 deep in one
    submission ended the whole class run in a RecursionError."""
    path = two / "alice" / "deep"
    path.mkdir()
    for _ in range(1100):  # one level at a time: os.makedirs recurses too
        path = path / "d"
        path.mkdir()
    try:
        assert grade.main([str(two), "--part", "1", "--out", str(tmp_path / "out"),
                           "--list-work"]) == 0
        assert len(capsys.readouterr().out.splitlines()) == 2
        with pytest.raises(ValueError, match="nest deeper than the grader copies"):
            grade.pack_submission(two / "alice", tmp_path / "alice.tar")
    finally:  # pytest's own clean-up (shutil.rmtree) recurses too: rm(1) does not
        subprocess.run(["rm", "-rf", "--", str(two / "alice" / "deep")], check=True)


@pytest.mark.parametrize("jobs", ["0", "-3", "two"])
def test_jobs_of_less_than_one_are_refused(grade, two, tmp_path, capsys, jobs):  # noqa: F811
    """--jobs 0 and --jobs -3 were taken, silently, as 1 (review, session 28)."""
    with pytest.raises(SystemExit) as stopped:
        grade.main([str(two), "--jobs", jobs, "--out", str(tmp_path / "out")])
    assert stopped.value.code == 2
    assert f"argument --jobs: {jobs!r} is not a number of 1 or more" in capsys.readouterr().err
    assert grade.vm_calls == []


def test_names_in_two_unicode_forms_are_said(grade, tmp_path, capsys):  # noqa: F811
    """An upload class with Renée typed (NFC) and Renée unzipped from a Mac (NFD): two
    rows that read the same, without a word (review, session 28).  Both are graded,
    and grade says they cannot be told apart."""
    class_dir = tmp_path / "class"
    nfc, nfd = "Ren\u00e9e", "Rene\u0301e"
    for name in (nfc, nfd):
        make_submission(class_dir / name)
        grade.fake_vm[name] = (all_of_part1(), "")
    assert grade.main([str(class_dir), "--part", "1", "--out", str(tmp_path / "out")]) == 0
    said = capsys.readouterr().err
    assert ("grade: 'Rene\\u0301e' and 'Ren\\xe9e' are 2 directories whose names read the "
            "same (in another Unicode form): their rows cannot be told apart; rename all "
            "but one") in said, said
    assert sorted(grade.vm_calls) == sorted([nfc, nfd])


def test_two_names_of_one_uid_are_one_lock(grade):  # noqa: F811
    """--user and --nosub-user naming one uid locked its file twice, and the second
    flock waited for the first forever (review of session 29's change)."""
    import types
    held = grade.hold_the_local_users(types.SimpleNamespace(user="zootest",
                                                            nosub_user="zootest"))
    try:
        assert len(held) == 1
    finally:
        for fd in held:
            os.close(fd)
