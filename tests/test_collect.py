"""grader/collect and the course's rules (grader/rules.py): a class of local git
repositories, made here with commits dated before and after a deadline, collected at
that deadline, then graded (--local, parts 1 and 2) with the rules beside the scores.

The class: alice, the references with a README that states each part and answers the
experiments (6 commits before the deadline, the last exactly at it, one after);
bob, part 1's code copied as part 2 (5 commits, a README of the handout's, unanswered,
two parts stated); carol, 3 commits and a binary file, with an extension that takes
a commit made after the class's deadline; erin, every commit after the deadline;
dave, a repository that does not exist.
"""

import csv
import importlib.machinery
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timedelta, timezone
from pathlib import Path

import handout
import pytest
from conftest import PARTS, ROOT, VENV_PYTHON, copy_parts

sys.path.insert(0, str(ROOT / "grader"))
import report
import rules

COLLECT = ROOT / "grader" / "collect"
GRADE = ROOT / "grader" / "grade"
DEADLINE = "2026-03-01 23:59"  # collect runs with TZ=UTC: this is 23:59 UTC
BEFORE = [f"2026-02-{day:02d}T12:00:00+0000" for day in range(20, 28)]
AT = "2026-03-01T23:59:00+0000"
AFTER = "2026-03-02T00:00:00+0000"
EXTENDED = "2026-03-04 12:00"
STATUS = "".join(f"Part {p}: working\n" for p in PARTS)


def load(path: Path, name: str):
    loader = importlib.machinery.SourceFileLoader(name, str(path))
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


def git(repo: Path, *args: str, date: str | None = None) -> str:
    env = dict(os.environ, GIT_AUTHOR_NAME="Student", GIT_AUTHOR_EMAIL="s@example.edu",
               GIT_COMMITTER_NAME="Student", GIT_COMMITTER_EMAIL="s@example.edu",
               GIT_CONFIG_NOSYSTEM="1", HOME=str(repo.parent))
    if date:
        env.update(GIT_AUTHOR_DATE=date, GIT_COMMITTER_DATE=date)
    return subprocess.run(["git", "-C", str(repo), *args], env=env, check=True,
                          capture_output=True, text=True).stdout.strip()


def commit(repo: Path, message: str, date: str) -> str:
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "--allow-empty", "-m", message, date=date)
    return git(repo, "rev-parse", "HEAD")


def new_repo(path: Path) -> Path:
    path.mkdir(parents=True)
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True)
    return path


def student_readme(status: str, answered: bool) -> str:
    """The handout's README.txt, with a status section and (or not) the answers."""
    text = handout.readme_without_answers((ROOT / "README.txt").read_text())
    if answered:
        text = text.replace("Answer: (describe your experiment, what you saw, and why)",
                            "Answer: I ran chmod u+s in part 2 and part 3; EPERM in part 3.",
                            1)
        text = text.replace("Answer: (describe your experiment, what you saw, and why)",
                            "Answer: memory_hog.sh was killed at 64M (status 137).", 1)
    return "Status\n------\n" + status + "\n" + text


@pytest.fixture(scope="module")
def the_class():
    """The repositories (in a directory the test user can read) and what is expected."""
    base = Path(tempfile.mkdtemp(prefix="zk-collect-"))
    base.chmod(0o755)
    repos = base / "repos"
    want = {}
    # alice: one part per commit, then the README, the last exactly at the deadline.
    alice = new_repo(repos / "alice")
    for n, part in enumerate(PARTS, 0):
        copy_parts(alice, {part: PARTS[part]})
        if n == 5:
            (alice / "README.txt").write_text(student_readme(STATUS, answered=True))
        want["alice"] = commit(alice, f"part {part}", BEFORE[n] if n < 5 else AT)
    shutil.rmtree(alice / PARTS[6])
    commit(alice, "after the deadline: part 6 gone", AFTER)
    # bob: part 1 copied into part 2, nothing else done.
    bob = new_repo(repos / "bob")
    copy_parts(bob, {1: PARTS[1], 2: PARTS[1]})
    commit(bob, "parts 1 and 2", BEFORE[0])
    (bob / "README.txt").write_text(student_readme("Part 1: works\nPart 2 - works, I think\n",
                                                   answered=False))
    for n in range(1, 5):
        (bob / "notes.txt").write_text(f"note {n}\n")
        want["bob"] = commit(bob, f"note {n}", BEFORE[n])
    # carol: 3 commits, a binary file, the third after the deadline but in her extension.
    carol = new_repo(repos / "carol")
    copy_parts(carol, {1: PARTS[1], 2: PARTS[2]})
    commit(carol, "parts", BEFORE[0])
    (carol / "data.bin").write_bytes(b"\x7fELF\x00\x01\x02" * 10)
    (carol / "empty.txt").write_text("")
    commit(carol, "a binary", BEFORE[1])
    (carol / "README.txt").write_text(student_readme(STATUS, answered=True))
    want["carol"] = commit(carol, "README", AFTER)
    # erin: nothing before the deadline.
    erin = new_repo(repos / "erin")
    copy_parts(erin, {1: PARTS[1]})
    commit(erin, "late", AFTER)
    roster = base / "roster.csv"
    roster.write_text("student,repository,extension\n"
                      f"alice,{alice},\nbob,{bob},\ncarol,{carol},{EXTENDED}\n"
                      f"dave,{repos / 'dave-nowhere'},\nerin,{erin},\n")
    yield base, roster, want
    shutil.rmtree(base, ignore_errors=True)


def run_collect(roster: Path, class_dir: Path, *extra, env=None, cwd=None):
    return subprocess.run([sys.executable, str(COLLECT), str(roster), "--deadline", DEADLINE,
                           "--into", str(class_dir), *extra], cwd=cwd,
                          capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, TZ="UTC", **(env or {})))


def read_csv(path: Path, key: str) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {row[key]: row for row in csv.DictReader(f)}


@pytest.fixture(scope="module")
def collected(the_class):
    base, roster, want = the_class
    class_dir = base / "class"
    # A git template with a hook: were hooks run, the checkout would make the marker.
    template = base / "template"
    (template / "hooks").mkdir(parents=True)
    marker = base / "hook-ran"
    hook = template / "hooks" / "post-checkout"
    hook.write_text(f"#!/bin/sh\ntouch {marker}\n")
    hook.chmod(0o755)
    done = run_collect(roster, class_dir, env={"GIT_TEMPLATE_DIR": str(template)})
    assert (class_dir / "alice" / ".git" / "hooks" / "post-checkout").exists()
    assert not marker.exists(), "a git hook ran during collect"
    return base, class_dir, want, done


def test_collect_picks_the_last_commit_at_or_before_each_deadline(collected):
    base, class_dir, want, done = collected
    assert done.returncode == 1, done.stdout + done.stderr  # dave and erin
    assert "not collected, kept, or to look at: dave, erin" in done.stderr
    rows = read_csv(class_dir / "collect.csv", "student")
    assert set(rows) == {"alice", "bob", "carol", "dave", "erin"}
    for name in ("alice", "bob", "carol"):
        assert rows[name]["status"] == "ok", rows[name]
        assert rows[name]["commit"] == want[name], name
        assert rows[name]["branch"] == "main"
        assert git(class_dir / name, "rev-parse", "HEAD") == want[name]
        assert not git(class_dir / name, "status", "--porcelain")
    assert rows["alice"]["commit_time"] == "2026-03-01T23:59:00+00:00"  # at: included
    assert (class_dir / "alice" / PARTS[6] / "zookeeper.py").exists()  # the later commit not
    assert rows["carol"]["commit_time"] == "2026-03-02T00:00:00+00:00"  # her extension
    assert rows["carol"]["deadline"] == "2026-03-04T12:00:00+00:00"
    assert (rows["alice"]["commits"], rows["bob"]["commits"], rows["carol"]["commits"]) == (
        "6", "5", "3")
    assert rows["dave"]["status"].startswith("not collected: git clone: "), rows["dave"]
    assert "does not exist" in rows["dave"]["status"] and not (class_dir / "dave").exists()
    assert rows["erin"]["status"] == ("not collected: no commit on main at or before the "
                                      "deadline (its first is of 2026-03-02T00:00:00+00:00)")
    assert not (class_dir / "erin" / PARTS[1]).exists()
    state = json.loads((class_dir / ".collect" / "alice.json").read_text())
    assert state["commit"] == want["alice"] and state["action"] == "cloned"
    assert {v["id"] for v in state["rules"]} == set(rules.NAMES)
    assert "alice: " + want["alice"][:12] in done.stdout


def test_collect_reports_each_rule(collected):
    _, class_dir, _, _ = collected
    rows = read_csv(class_dir / "collect.csv", "student")
    assert [rows["alice"][f"rule_{i}"] for i in rules.NAMES] == ["ok"] * 4
    bob, carol = rows["bob"], rows["carol"]
    assert bob["rule_commits"] == "ok" and bob["rule_binary_files"] == "ok"
    assert bob["rule_readme_status"].startswith("fail: no status line for part 3, 4, 5, 6")
    assert bob["rule_written_answers"] == ("fail: not answered: 5.1 (Seccomp (part 3)), "
                                           "5.2 (Resource limits (part 5))")
    assert carol["rule_commits"] == "fail: 3 commits (at least 5 required)"
    assert carol["rule_binary_files"] == "fail: 1 binary file: data.bin"
    assert carol["rule_readme_status"] == "ok" and carol["rule_written_answers"] == "ok"
    assert rows["dave"]["rule_commits"] == ""


def test_binary_is_what_git_calls_binary(collected):
    """The rule's answer is git's own (numstat's '-' against the empty tree), the empty
    file included (not binary); a tree without .git gives the same answer."""
    _, class_dir, _, _ = collected
    carol = class_dir / "carol"
    empty = git(carol, "hash-object", "-t", "tree", "/dev/null")
    numstat = git(carol, "diff", "--numstat", empty, "HEAD").splitlines()
    by_git = sorted(line.split("\t")[2] for line in numstat if line.startswith("-\t-\t"))
    assert by_git == ["data.bin"] == rules.binary_files_in_git(carol)
    copy = class_dir.parent / "carol-copy"
    shutil.copytree(carol, copy, ignore=shutil.ignore_patterns(".git"))
    assert rules.binary_files_on_disk(copy) == ["data.bin"]
    assert rules.count_commits(copy)["status"] == "unknown"


def test_a_repository_without_a_commit_has_0_commits(tmp_path):
    """git init and no commit: the rule said NOT CHECKED with the last line of git's
    usage text, and the binary rule NOT CHECKED ("Not a valid object name HEAD");
    a damaged repository is still not checked, in git's own words (attack review,
    session 29)."""
    sub = tmp_path / "nocommit"
    sub.mkdir()
    (sub / "data.bin").write_bytes(b"\0\1")
    subprocess.run(["git", "init", "-q", str(sub)], check=True)
    assert rules.count_commits(sub) == rules.verdict("commits", "fail",
                                                     "0 commits (at least 5 required)")
    assert rules.binary_files(sub)["message"] == "1 binary file: data.bin"
    branch = subprocess.run(["git", "-C", str(sub), "symbolic-ref", "HEAD"], check=True,
                            capture_output=True, text=True).stdout.strip()
    (sub / ".git" / branch).parent.mkdir(parents=True, exist_ok=True)
    (sub / ".git" / branch).write_text("12" * 20 + "\n")  # a commit that is not there
    for rule in (rules.count_commits(sub), rules.binary_files(sub)):
        assert rule["status"] == "unknown", rule
        assert "names no commit the repository holds" in rule["message"]
    (sub / ".git" / branch).unlink()
    (sub / ".git" / "packed-refs").write_text("garbage\n")
    damaged = rules.count_commits(sub)
    assert damaged["status"] == "unknown" and "unexpected line" in damaged["message"]


def test_the_answers_file_has_each_students_answers(collected):
    _, class_dir, _, _ = collected
    with open(class_dir / "answers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    answers = {(r["student"], r["question"].split()[0]): r["answer"] for r in rows}
    assert answers[("alice", "5.1")] == "I ran chmod u+s in part 2 and part 3; EPERM in part 3."
    assert answers[("alice", "5.2")] == "memory_hog.sh was killed at 64M (status 137)."
    assert answers[("bob", "5.1")] == answers[("bob", "5.2")] == ""
    assert answers[("carol", "5.2")].startswith("memory_hog.sh")
    assert answers[("dave", "5.1")] == ""  # not collected: a row all the same
    assert {r["student"] for r in rows} == {"alice", "bob", "carol", "dave", "erin"}


def test_a_rerun_fetches_without_cloning_again(collected, the_class):
    """A run after the deadline settles each commit: a commit pushed since, dated
    before the deadline, is pushed late whatever its date says.  The re-run fetches
    it (no new clone), keeps the commit collected before, and says why."""
    base, class_dir, want, _ = collected
    _, roster, _ = the_class
    alice = base / "repos" / "alice"
    marker = class_dir / "alice" / ".git" / "collected-before"
    marker.write_text("")
    (class_dir / "alice" / PARTS[1] / "__pycache__").mkdir()
    # A commit pushed after the deadline, dated before it (first parent on main), and
    # the one collected gone from the branch (a force push).
    tip = git(alice, "rev-parse", "main")
    git(alice, "checkout", "-q", f"{want['alice']}~1")
    git(alice, "checkout", "-q", "-b", "late")
    (alice / "late.txt").write_text("late\n")
    backdated = commit(alice, "backdated", "2026-03-01T23:00:00+0000")
    git(alice, "checkout", "-q", "main")
    git(alice, "reset", "-q", "--hard", backdated)
    try:
        done = run_collect(roster, class_dir)
        assert done.returncode == 1
        rows = read_csv(class_dir / "collect.csv", "student")
        assert rows["alice"]["commit"] == want["alice"], done.stdout + done.stderr
        assert rows["alice"]["status"].startswith(
            f"kept {want['alice'][:12]} of main, collected at ")
        assert rows["alice"]["status"].endswith(
            f"after the deadline: now main has {backdated[:12]} at or before it (a commit "
            "backdated, or history rewritten, since)")
        assert rows["alice"]["commits"] == "6"
        assert git(class_dir / "alice", "rev-parse", "HEAD") == want["alice"]
        assert marker.exists(), "alice was cloned again"
        assert not (class_dir / "alice" / PARTS[1] / "__pycache__").exists()
        state = json.loads((class_dir / ".collect" / "alice.json").read_text())
        assert state["action"] == "fetched"
        assert rows["bob"]["commit"] == want["bob"] and rows["bob"]["status"] == "ok"
        # With another deadline (an extension given since), the branch is read again.
        extended = roster.read_text().replace(f"alice,{alice},",
                                              f"alice,{alice},2026-03-02 00:00 Z")
        moved = base / "roster-extended.csv"
        moved.write_text(extended)
        run_collect(moved, class_dir)
        assert read_csv(class_dir / "collect.csv", "student")["alice"]["commit"] == backdated
    finally:
        git(alice, "reset", "-q", "--hard", tip)
        shutil.rmtree(class_dir / "alice")
        (class_dir / ".collect" / "alice.json").unlink()
        run_collect(roster, class_dir)


def bob_alone(the_class, tmp_path: Path) -> tuple[Path, Path, Path]:
    """A copy of bob's repository, a roster of bob alone, and where his class goes."""
    source = tmp_path / "bob.git"
    shutil.copytree(the_class[0] / "repos" / "bob", source)
    roster = tmp_path / "roster.csv"
    roster.write_text(f"student,repository\nbob,{source}\n")
    return source, roster, tmp_path / "class"


def test_a_commit_dated_in_the_future_is_said(the_class, tmp_path):
    """A commit of 2099 (a clock set ahead) on bob's branch was left out as after the
    deadline without a word: collect said "ok" (review, session 28).  Now the earlier
    commit is collected all the same, and the status says what was left out."""
    want = the_class[2]
    source, roster, class_dir = bob_alone(the_class, tmp_path)
    (source / "final.txt").write_text("the last of it\n")
    commit(source, "final", "2099-01-01 12:00")
    done = run_collect(roster, class_dir)
    assert done.returncode == 1, done.stdout + done.stderr
    row = read_csv(class_dir / "collect.csv", "student")["bob"]
    assert row["commit"] == want["bob"], row
    assert row["status"] == ("collected, but 1 later commit on main dated after this "
                             "collection (2099-01-01T12:00:00+00:00) left out as after the "
                             "deadline: a clock set ahead? ask the student"), row
    assert "not collected, kept, or to look at: bob" in done.stderr


def test_future_dates_are_looked_for_after_the_commit_collected(tmp_path):
    """git log --since stops at the first commit older than its date: A (January),
    D (2099), E (March) with a February deadline collected A and said nothing of D.
    And a tip only minutes ahead, with the deadline still to come, is the commit
    collected: nothing was left out (review of session 28's change)."""
    repo = new_repo(tmp_path / "repo")
    a = commit(repo, "A", "2026-01-10 12:00")
    commit(repo, "D", "2099-01-01 12:00")
    commit(repo, "E", "2026-03-10 12:00")
    roster = tmp_path / "roster.csv"
    roster.write_text(f"student,repository\nann,{repo}\n")

    def collect(deadline: str, into: str) -> dict:
        done = subprocess.run([sys.executable, str(COLLECT), str(roster), "--deadline",
                               deadline, "--into", str(tmp_path / into)],
                              capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, TZ="UTC"))
        assert done.returncode in (0, 1), done.stderr  # 1: a student to look at
        return read_csv(tmp_path / into / "collect.csv", "student")["ann"]

    row = collect("2026-02-01 00:00", "feb")
    assert row["commit"] == a
    assert row["status"].startswith("collected, but 1 later commit on main dated after this "
                                     "collection (2099-01-01T12:00:00+00:00)"), row
    soon = (datetime.now(timezone.utc) + timedelta(minutes=3)).strftime("%Y-%m-%d %H:%M +0000")
    tip = commit(repo, "F", soon)
    tomorrow = (datetime.now(timezone.utc) + timedelta(days=1)).strftime("%Y-%m-%d %H:%M")
    row = collect(tomorrow, "soon")
    assert (row["commit"], row["status"]) == (tip, "ok"), row


def test_a_fetch_that_fails_keeps_the_earlier_checkout(the_class, tmp_path):
    want = the_class[2]
    source, roster, class_dir = bob_alone(the_class, tmp_path)
    assert run_collect(roster, class_dir).returncode == 0
    shutil.rmtree(source)
    done = run_collect(roster, class_dir)
    assert done.returncode == 1
    row = read_csv(class_dir / "collect.csv", "student")["bob"]
    assert row["status"].startswith("not collected: git fetch: ")
    assert row["status"].endswith(f"(kept the checkout of an earlier run, commit "
                                  f"{want['bob'][:12]})")
    assert row["commit"] == want["bob"] and (class_dir / "bob" / PARTS[2]).exists()


def test_a_fetch_that_failed_after_the_deadline_settles_nothing(the_class, tmp_path):
    """A run before the deadline collects; the student pushes a commit, on time; the
    run after the deadline cannot fetch (the forge down for a moment) and keeps the
    checkout.  That run collected nothing: the next one collects the pushed commit,
    not the kept one, and says nothing of backdating.  The deadline is a few seconds
    ahead, to the second (collect keeps its seconds)."""
    source, roster, class_dir = bob_alone(the_class, tmp_path)
    deadline = time.time() + 4
    when = time.strftime("%Y-%m-%d %H:%M:%S Z", time.gmtime(deadline))

    def collect() -> dict:
        run_collect(roster, class_dir, "--deadline", when)
        return read_csv(class_dir / "collect.csv", "student")["bob"]

    assert collect()["status"] == "ok"
    (source / "on-time.txt").write_text("pushed before the deadline\n")
    on_time = commit(source, "on time", time.strftime("%Y-%m-%dT%H:%M:%S+0000"))
    time.sleep(max(0.0, deadline - time.time()) + 1.5)
    source.rename(tmp_path / "away")
    assert collect()["status"].startswith("not collected: git fetch: ")
    (tmp_path / "away").rename(source)
    row = collect()
    assert (row["commit"], row["status"]) == (on_time, "ok"), row
    assert row["deadline"] == time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(deadline))


def test_bad_arguments_are_said_in_one_line(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("name,url\nalice,/x\n")
    done = run_collect(roster, tmp_path / "class")
    assert done.returncode == 2 and "no column student or repository" in done.stderr
    roster.write_text("student,repository,deadline\n../x,/x,\nbob,/y,tomorrow\n")
    done = run_collect(roster, tmp_path / "class")
    assert done.returncode == 2
    assert "student '../x': a name with a slash" in done.stderr
    assert "bob's deadline: 'tomorrow' is not a date and time" in done.stderr
    for bom in (b"", b"\xef\xbb\xbf"):  # Windows-1252; a BOM (Excel's CSV UTF-8) moved it
        roster.write_bytes(bom + b"student,repository\nalice,/x\nb\xe9atrice,/y\n")
        done = run_collect(roster, tmp_path / "class")
        assert done.returncode == 2 and done.stderr == (
            f"collect: {roster}:3: not UTF-8 (byte 0xe9): save the roster as CSV UTF-8\n")
    done = subprocess.run([sys.executable, str(COLLECT), str(roster), "--deadline", "soon",
                           "--into", str(tmp_path / "c")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stderr.startswith("collect: --deadline: 'soon'")


def test_deadlines_with_and_without_a_zone():
    collect = load(COLLECT, "zoo_collect")
    utc = collect.parse_deadline("2026-03-01 23:59 Z")
    assert collect.parse_deadline("2026-03-02 00:59 +01:00") == utc
    assert collect.parse_deadline("2026-03-01 18:59-0500") == utc
    assert collect.parse_deadline("2026-03-01 23:59").tzinfo is not None  # local time


def test_readme_questions_are_the_readmes_own():
    """rules.QUESTIONS is README.txt's section 5; its answers are found; the handout
    leaves them blank and states no part."""
    readme = (ROOT / "README.txt").read_text()
    section = readme.split("\n5. Written experiments\n")[1].split("\n6. ")[0]
    found = dict(re.findall(r"^(5\.\d+) +([^.\n]*\))\.", section, re.M))
    assert found == rules.QUESTIONS
    got = rules.answers(readme)
    assert got["5.1"].startswith("The experiment, part3_seccomp/experiments/setuid.sh")
    assert got["5.2"].endswith("while the host stays usable.")
    text = handout.readme_without_answers(readme)
    assert rules.answers(text) == {"5.1": "", "5.2": ""}
    assert rules.part_statuses(text) == {} == rules.part_statuses(readme)


@pytest.mark.parametrize("line, part, said", [
    ("Part 1: working", 1, "working"), ("part2_namespaces: works", 2, "works"),
    ("- Part 3 (seccomp): not working, see below", 3, "not working, see below"),
    ("part 4 status: partly", 4, "partly"), ("Part 5 - working", 5, "working"),
    ("Part 6 is working", 6, "working"), ("PART 6 \u2014 done", 6, "done"),
    ("Part 4 score: 11/16", None, None), ("    part1_clone/       clone a child", None, None),
    ("Part 5 needs systemd in WSL", None, None), ("Part 6: (working or not?)", None, None)])
def test_status_lines(line, part, said):
    assert rules.part_statuses(line) == ({part: said} if part else {})


# Two answered questions, written as students write them: each form once.
ANSWERED = "I ran chmod u+s; EPERM in part 3."
HEADING_FORMS = {
    "the handout's": "5.1 Seccomp (part 3).  Pick one.\n\nAnswer: {a}\n\n"
                     "5.2 Resource limits (part 5).  For each.\n\nAnswer: {b}\n",
    "a dot after the number": "5.1. Seccomp (part 3)\n\nAnswer: {a}\n\n"
                              "5.2. Resource limits (part 5)\n\nAnswer: {b}\n",
    "a parenthesis": "5.1) Seccomp (part 3)\nAnswer: {a}\n5.2) Resource limits\nAnswer: {b}\n",
    "the number alone": "5.1\n{a}\n\n5.2\n\n{b}\n",
    "Markdown headings": "## 5.1 Seccomp (part 3)\n\n{a}\n\n### 5.2. Resource limits (part 5)\n"
                         "\n{b}\n\n## 6. Debugging\n\nnot an answer\n",
    "Markdown bold": "**5.1 Seccomp (part 3)**\n\n**Answer:** {a}\n\n"
                     "**5.2 Resource limits (part 5)**\n**Answer**: {b}\n",
    "indented headings": "\t5.1 Seccomp (part 3).\n\nAnswer: {a}\n\n"
                         "   5.2 Resource limits (part 5).\n\nAnswer: {b}\n",
    '"Answers:"': "5.1 Seccomp (part 3)\nAnswers: {a}\n5.2 Resource limits (part 5)\n"
                  "ANSWER - {b}\n",
    "CRLF and tabs": "5.1\tSeccomp (part 3).\r\n\r\nAnswer:\t{a}\r\n\r\n"
                     "5.2 Resource limits (part 5).\r\n\r\nAnswer: {b}\r\n",
    "a heading's own words": "5.1: seccomp\nAnswer: {a}\n5.2 \u2014 Resources\nAnswer: {b}\n",
    "the student's own title": "5.1 Filters\n\n{a}\n\n## **5.2** cgroups\n\n{b}\n",
}


@pytest.mark.parametrize("form", HEADING_FORMS)
def test_answers_under_any_reasonable_heading(form):
    text = "Part 1: working\n\n" + HEADING_FORMS[form].format(a=ANSWERED, b="killed at 64M.")
    assert rules.answers(text) == {"5.1": ANSWERED, "5.2": "killed at 64M."}


def test_a_number_in_running_text_is_no_heading():
    """"see 5.1 above" is no heading, nor an answer's line that starts with a number
    (5.1 ms, 5.2 MB): each answer is kept whole."""
    text = ("5.1 Seccomp (part 3)\n\nAnswer: it took\n5.1 ms was the time, see 5.1 above\n"
            "5.2-7.7 s in all\n\n5.2 Resource limits (part 5)\n\nAnswer: killed,\n"
            "5.2 MB short\n5.2 KiB, 5.1 seconds:\n5.1 s\n")
    assert rules.answers(text) == {
        "5.1": "it took\n5.1 ms was the time, see 5.1 above\n5.2-7.7 s in all",
        "5.2": "killed,\n5.2 MB short\n5.2 KiB, 5.1 seconds:\n5.1 s"}
    assert rules.answers("As 5.1 says, see 5.2.\n5.1 ms\n") == {"5.1": "", "5.2": ""}


def test_answering_is_no_answer_mark():
    assert rules.answers("5.1 Seccomp\n\nAnswering it was hard.\n")["5.1"] == (
        "Answering it was hard.")


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "utf-16-be-bom"])
def test_a_byte_order_mark_hides_no_line(tmp_path, encoding):
    """Notepad's UTF-8 starts with a BOM: the first status line is read all the same.
    Its "Unicode" (and PowerShell 5's >) is UTF-16 with a BOM: every line and answer
    was lost (review, session 27)."""
    text = (STATUS + "\n5.1 Seccomp (part 3)\r\nAnswer: \u00e9t\u00e9\n"
            "5.2 Resource limits (part 5)\nAnswer: b\n")
    data = (b"\xfe\xff" + text.encode("utf-16-be") if encoding == "utf-16-be-bom"
            else text.encode(encoding))
    (tmp_path / "README.txt").write_bytes(data)
    assert rules.readme_status(tmp_path)["status"] == "ok"
    assert rules.written_answers(tmp_path)["status"] == "ok"
    assert rules.answers(rules.read_readme(tmp_path)[0]) == {"5.1": "\u00e9t\u00e9", "5.2": "b"}
    # ... and it is text, not a binary file (the binary rule failed it: review, session 28)
    assert rules.binary_files(tmp_path)["status"] == "ok", rules.binary_files(tmp_path)
    (tmp_path / "data.bin").write_bytes(b"\xff\xfe" + "a\0b".encode("utf-16-le"))
    assert rules.binary_files(tmp_path)["status"] == "fail"  # a NUL in UTF-16 too
    (tmp_path / "data.bin").unlink()
    (tmp_path / "README.txt").write_bytes(b"\xef\xbb\xbf5.1\nAnswer: a\n5.2\nAnswer: b\n")
    assert rules.answers(rules.read_readme(tmp_path)[0]) == {"5.1": "a", "5.2": "b"}


def test_an_answer_too_long_for_a_cell_is_cut_and_said(tmp_path):
    """An answer of 900,000 characters made answers.csv one that Python's csv module
    (131072 at most) and spreadsheets (32767) cannot read whole (review, session 27)."""
    sub = tmp_path / "alice"
    sub.mkdir()
    (sub / "README.txt").write_text("5.1 Seccomp (part 3)\nAnswer: " + "x" * 900_000
                                    + "\n5.2 Resource limits (part 5)\nAnswer: short\n")
    rules.write_answers(tmp_path / "answers.csv", {"alice": sub})
    with open(tmp_path / "answers.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [len(r["answer"]) < 32767 for r in rows] == [True, True]
    assert rows[0]["answer"].endswith(f"[{900_000 - rules.ANSWER_CELL} more characters in "
                                      "README.txt]")
    assert rows[1]["answer"] == "short"


def test_a_placeholder_left_is_no_status_and_the_verdict_says_so(tmp_path):
    """The template's "(...)" is no status: the message says it is still there."""
    (tmp_path / "README.txt").write_text(STATUS.replace("Part 1: working", "Part 1: (working)")
                                         .replace("Part 4: working\n", ""))
    v = rules.readme_status(tmp_path)
    assert v["status"] == "fail"
    assert v["message"] == ('no status line for part 4 (a line like "Part 4: working"); '
                            'part 1 still says "(working)": replace what is in parentheses')


@pytest.mark.slow
def test_the_collected_class_graded_with_its_rules(collected):
    """grade --rules over what collect made: each score and each rule's verdict in
    the report, the CSV and Gradescope's JSON; collect's files are not submissions."""
    base, class_dir, _, _ = collected
    out = base / "graded"
    subprocess.run(["chmod", "-R", "a+rX", str(class_dir)], check=True)
    python = VENV_PYTHON if Path(VENV_PYTHON).exists() else sys.executable
    done = subprocess.run([sys.executable, str(GRADE), str(class_dir), "--rules", "--local",
                           "--part", "1", "--part", "2", "--user", "zootest",
                           "--nosub-user", "zoonosub", "--python", python, "--out", str(out)],
                          capture_output=True, text=True, timeout=900)
    rows = read_csv(out / "scores.csv", "submission")
    # dave's repository could not be cloned, erin had nothing before the deadline: their
    # rows say what collect said.
    assert set(rows) == {"alice", "bob", "carol", "dave", "erin"}, done.stdout + done.stderr
    assert rows["dave"]["status"].startswith("not collected: git clone: ")
    reports = "".join((out / name / "report.txt").read_text() for name in ("alice", "bob")
                      if (out / name / "report.txt").exists())
    assert (rows["alice"]["score"], rows["bob"]["score"], rows["carol"]["score"]) == (
        "30", "15", "30"), done.stdout + done.stderr + reports
    assert rows["bob"]["part2"] == "0" and rows["alice"]["status"] == "ok"
    assert rows["erin"]["status"] == ("not collected: no commit on main at or before the "
                                      "deadline (its first is of 2026-03-02T00:00:00+00:00)")
    assert rows["carol"]["rule_commits"] == "fail: 3 commits (at least 5 required)"
    assert rows["carol"]["rule_binary_files"] == "fail: 1 binary file: data.bin"
    assert rows["bob"]["rule_written_answers"].startswith("fail: not answered: 5.1")
    assert [rows["alice"][f"rule_{i}"] for i in rules.NAMES] == ["ok"] * 4
    text = (out / "carol" / "report.txt").read_text()
    assert "Score: 30/30" in text and "Course rules (reported, not scored):" in text
    assert "== rule: at least 5 commits == FAIL (3 commits (at least 5 required))" in text
    assert "== rule: no binary files == FAIL (1 binary file: data.bin)" in text
    gradescope = json.loads((out / "bob" / "results.json").read_text())
    assert gradescope["score"] == 15
    by_name = {t["name"]: t for t in gradescope["tests"]}
    for rule_id, name in rules.NAMES.items():
        test = by_name[f"rule: {name}"]
        assert test["score"] == test["max_score"] == 0 and test["visibility"] == "visible"
        assert test["status"] == ("failed" if rule_id in ("readme_status", "written_answers")
                                  else "passed"), test
    with open(out / "answers.csv", newline="") as f:  # the submissions' answers
        assert {r["student"] for r in csv.DictReader(f)} == {"alice", "bob", "carol"}


def test_report_shows_rules_only_when_asked():
    results = [report.CheckResult(id="p1_x", part=1, name="x", max_score=3, status="ok",
                                  seconds=0.1)]
    assert "rule" not in report.text_report(results)
    assert len(report.gradescope(results, 1.0)["tests"]) == 1
    verdicts = [rules.verdict("commits", "unknown", "no git history")]
    assert report.text_report(results, rules=verdicts).endswith(
        "== rule: at least 5 commits == NOT CHECKED (no git history)")
    test = report.gradescope(results, 1.0, rules=verdicts)["tests"][0]
    assert "status" not in test and test["output"].startswith("NOT CHECKED: no git history")


def test_a_remote_that_hangs_is_stopped_at_the_timeout(tmp_path):
    """ssh that never answers (nor prompts: stdin is /dev/null): killed with what git
    started, at --timeout, and the row says so."""
    roster = tmp_path / "roster.csv"
    roster.write_text("student,repository\nalice,git@example.invalid:hw6-alice.git\n")
    started = time.monotonic()
    done = run_collect(roster, tmp_path / "class", "--timeout", "2",
                       env={"GIT_SSH_COMMAND": "sleep 61.234 #"})
    assert time.monotonic() - started < 30
    assert done.returncode == 1
    row = read_csv(tmp_path / "class" / "collect.csv", "student")["alice"]
    assert row["status"] == "not collected: git clone did not finish within 2s"
    assert not (tmp_path / "class" / "alice").exists()
    assert subprocess.run(["pgrep", "-f", "sleep 61.234"]).returncode == 1  # killed


def big_repo(path: Path, files: int, every: int) -> list[str]:
    """A repository of FILES small files in one commit (a committed .venv/, say), every
    EVERY-th of them binary; the binary ones' paths, sorted as git lists them."""
    repo = new_repo(path)
    binary = []
    for i in range(files):
        folder = repo / ".venv" / f"lib{i % 40:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        if i % every == 0:
            (folder / f"m{i:05d}.so").write_bytes(b"\x7fELF\x02\x01\x01\x00" + bytes(range(256)))
            binary.append(f".venv/lib{i % 40:02d}/m{i:05d}.so")
        else:
            (folder / f"m{i:05d}.py").write_text(f"# module {i}\n" + "x = 1\n" * 40)
    (repo / "README.txt").write_text(STATUS)
    commit(repo, "everything, .venv/ included", BEFORE[0])
    return sorted(binary)


def test_binary_files_of_a_big_tree_in_bounded_time(tmp_path):
    """5000 files: the object ids written to git cat-file while its output is read (all
    written first, the two pipes fill and both sides wait forever); the whole rules
    check, in a process of its own, ends in seconds with every binary file found."""
    repo = tmp_path / "big"
    binary = big_repo(repo, 5000, 50)
    started = time.monotonic()
    done = subprocess.run([sys.executable, str(ROOT / "grader" / "rules.py"), str(repo)],
                          capture_output=True, text=True, timeout=60)
    took = time.monotonic() - started
    assert f"== rule: no binary files == FAIL ({len(binary)} binary files: " \
        f"{', '.join(binary[:10])} and {len(binary) - 10} more)" in done.stdout, done
    assert took < 30, took
    assert rules.binary_files_in_git(repo) == binary


def test_binary_files_stop_at_their_timeout(tmp_path, monkeypatch):
    """A git cat-file that never answers is stopped at the timeout, and the rule says
    so (not checked) instead of waiting with the class's grading."""
    repo = tmp_path / "small"
    big_repo(repo, 30, 10)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    real_git = shutil.which("git")
    (bin_dir / "git").write_text(
        '#!/bin/sh\nfor a in "$@"; do [ "$a" = cat-file ] && exec sleep 61.4321; done\n'
        f'exec {real_git} "$@"\n')
    (bin_dir / "git").chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:{os.environ['PATH']}")
    blobs = [(oid, "f") for oid in git(repo, "rev-list", "--objects", "--all").split()[:1]]
    started = time.monotonic()
    with pytest.raises(RuntimeError, match=r"more than 1 s"):
        rules.binary_blobs(repo, blobs * 20000, timeout=1)
    assert time.monotonic() - started < 15
    assert subprocess.run(["pgrep", "-f", "sleep 61.4321"]).returncode == 1  # killed
