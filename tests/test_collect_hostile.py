"""grader/collect and the rules against what a student would try: a README.txt that
links to the TA's files, one that makes the status pattern backtrack, escape
sequences and odd bytes, formulas for the TA's spreadsheet, a tree that fills the
disk, the ext:: transport, object files shared with the student's own; and a roster
with names and dates that git or the file system cannot take.
"""

import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import PARTS, ROOT, TEST_USER, copy_parts
from test_collect import COLLECT, commit, load, new_repo, run_collect

sys.path.insert(0, str(ROOT / "grader"))
import report
import rules

BEFORE = "2026-02-20T12:00:00+0000"


def student(tmp_path: Path, name: str, files: dict) -> Path:
    """A repository with part 1 and files ({path: bytes, or a link as ('->', target)}),
    five commits before the deadline."""
    repo = new_repo(tmp_path / "repos" / name)
    copy_parts(repo, {1: PARTS[1]})
    for path, data in files.items():
        target = repo / path
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, tuple):
            target.symlink_to(data[1])
        else:
            target.write_bytes(data)
    for n in range(5):
        commit(repo, f"commit {n}", BEFORE)
    return repo


def collect(tmp_path: Path, rows: dict, env=None):
    roster = tmp_path / "roster.csv"
    roster.write_text("student,repository\n" + "".join(f"{n},{r}\n" for n, r in rows.items()))
    done = run_collect(roster, tmp_path / "class", env=env)
    with open(tmp_path / "class" / "collect.csv", newline="") as f:
        got = {row["student"]: row for row in csv.DictReader(f)}
    with open(tmp_path / "class" / "answers.csv", newline="") as f:
        answers = list(csv.reader(f))
    return done, got, answers


def test_a_readme_that_links_to_the_tas_files_is_not_read(tmp_path):
    """README.txt -> a file the TA can read: neither its status lines nor its answers
    reach the report, the CSV or answers.csv (nor, through them, the student)."""
    secret = tmp_path / "ta-notes.txt"
    secret.write_text("Part 1: SECRET-1\nPart 2: SECRET-2\n5.1 x\n\nAnswer: SECRET-3\n")
    secret.chmod(0o600)
    repo = student(tmp_path, "mallory", {"README.txt": ("->", str(secret))})
    done, rows, answers = collect(tmp_path, {"mallory": repo})
    assert done.returncode == 0, done.stderr
    everything = (tmp_path / "class" / "collect.csv").read_text() + str(answers) + done.stdout
    assert "SECRET" not in everything
    assert rows["mallory"]["rule_readme_status"] == (
        "fail: no README.txt at the top (README.txt is a symbolic link: not read)")


def test_what_a_readme_and_file_names_hold_is_shown_not_obeyed(tmp_path):
    """A status line with thousands of spaces (a backtracking pattern would take hours),
    escape sequences for the TA's terminal, a formula for their spreadsheet, a binary
    file whose name is not UTF-8: collect ends, and what it writes is printable."""
    readme = ("Part 1:" + " " * 5000 + "ok\n" + "Part 2:\x1b]0;pwned\x07\x1b[2J working\n"
              + "5.1 Seccomp\n\nAnswer: =HYPERLINK(\"http://example.invalid\")\n"
              + "\n5.2 Limits\n\nAnswer: line one\n\tline two\x1b[31m\n")
    repo = student(tmp_path, "eve", {"README.txt": readme.encode(),
                                     os.fsdecode(b"bin\xff\x1b[2J"): b"a\0b"})
    done, rows, answers = collect(tmp_path, {"eve": repo})
    assert done.returncode == 0, done.stderr
    assert "\x1b" not in done.stdout + (tmp_path / "class" / "collect.csv").read_text()
    assert rows["eve"]["rule_readme_status"].startswith("fail: no status line for part 3")
    assert rows["eve"]["rule_binary_files"] == "fail: 1 binary file: bin\\xff\\x1b[2J"
    assert answers[1][2] == "'=HYPERLINK(\"http://example.invalid\")"
    assert answers[2][2] == "line one\n\tline two\\x1b[31m"
    assert rules.printable("cod\u202egnp.exe") == "cod\\u202egnp.exe"  # not shown reversed
    statuses = rules.part_statuses(readme)
    assert statuses == {1: "ok", 2: "\\x1b]0;pwned\\x07\\x1b[2J working"}
    # The same, found on disk (an upload without .git): the report can be written.
    (repo / ".git").rename(tmp_path / "git")
    verdicts = rules.check(repo)
    binary = next(v for v in verdicts if v["id"] == "binary_files")
    assert binary["message"] == "1 binary file: bin\\xff\\x1b[2J"
    report.write_csv(tmp_path / "scores.csv", [("eve", [], "ok")], {"eve": verdicts})
    assert "bin\\xff" in (tmp_path / "scores.csv").read_text()


def test_a_tree_too_large_is_not_checked_out(tmp_path):
    """A few KB of objects can name one large blob many times: 26 paths to 8 MB."""
    blob = b"\0" * (8 << 20)
    repo = student(tmp_path, "bomb", {f"copy{n}.bin": blob for n in range(26)})
    done, rows, _ = collect(tmp_path, {"bomb": repo})
    assert done.returncode == 1
    assert rows["bomb"]["status"].startswith("not collected: commit ")
    assert "files of 208 MB in all, over the 20000 files or 200 MB" in rows["bomb"]["status"]
    assert not (tmp_path / "class" / "bomb" / "copy0.bin").exists()


def test_the_ext_transport_is_refused_whatever_the_tas_git_config(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    (home / ".gitconfig").write_text('[protocol "ext"]\n\tallow = always\n')
    marker = tmp_path / "ran"
    done, rows, _ = collect(tmp_path, {"mallory": f"ext::sh -c touch% {marker}"},
                            env={"HOME": str(home)})
    assert done.returncode == 1 and not marker.exists()
    assert rows["mallory"]["status"] == "not collected: git clone: transport 'ext' not allowed"


def test_a_local_repository_is_copied_not_linked(tmp_path):
    """A clone of a path hard-links the objects, which stay the student's own files:
    rewritten after the deadline, they would change what was collected."""
    repo = student(tmp_path, "ok", {})
    done, rows, _ = collect(tmp_path, {"ok": repo})
    assert done.returncode == 0, done.stderr
    objects = tmp_path / "class" / "ok" / ".git" / "objects"
    files = [p for p in objects.rglob("*") if p.is_file()]
    assert files and all(p.stat().st_nlink == 1 for p in files)
    assert not (objects / "info" / "alternates").exists()


def test_roster_names_and_deadlines_that_cannot_be_used(tmp_path):
    roster = tmp_path / "roster.csv"
    roster.write_text("student,repository,deadline,extension\n"
                      "scores.csv,/x,,\n" + "a" * 250 + ",/x,,\n"
                      "\u00e9mile,/x,,\ne\u0301mile,/y,,\nx\x1b[2Jy,/x,,\n"
                      "bob,/x,2026-03-05 10:00,2026-03-06 10:00\n"
                      "erin,/x,2026-03-05 10:00,2026-03-05 10:00:00\n"
                      "carol,/x,2100-01-01 00:00,\n"
                      "dave,/x,\u0662\u0660\u0662\u0666-03-01 23:59,\n")
    done = run_collect(roster, tmp_path / "class")
    assert done.returncode == 2, done.stderr
    said = done.stderr
    assert "student 'scores.csv': that name is one of collect's or grade's own files" in said
    assert "student 'e\u0301mile': listed twice" in said  # NFC: one name, typed two ways
    assert "student 'x\\x1b[2Jy': a name with a control character" in said
    assert "a name longer than 200 bytes" in said
    assert "bob: two deadlines (deadline 2026-03-05 10:00, extension 2026-03-06 10:00)" in said
    assert "erin" not in said  # the same time, written twice
    assert "carol's deadline: '2100-01-01 00:00': the year must be from 1970 to 2099" in said
    assert "dave's deadline: " in said and "is not a date and time" in said


def test_git_says_why_in_its_first_error_line():
    collect_module = load(COLLECT, "zoo_collect_errors")
    said = ("fatal: detected dubious ownership in repository at '/srv/alice'\n"
            "To add an exception for this directory, call:\n\n"
            "\tgit config --global --add safe.directory /srv/alice\n")
    assert collect_module.git_error(said, 128) == (
        "detected dubious ownership in repository at '/srv/alice'")
    assert collect_module.git_error("", 128) == "exit status 128"


def test_a_link_the_grader_cannot_follow_hides_no_part():
    """As a TA who is not root: a link to a file they may not read, listed before the
    parts, does not make the submission look empty (Path.glob gave up there)."""
    base = Path(tempfile.mkdtemp(prefix="zk-sub-"))
    sub = base / "sub"
    copy_parts(sub, {1: PARTS[1]})
    for n in range(100):  # some listed before part1_clone, whatever the directory's order
        (sub / f"key{n}").symlink_to("/root/.ssh/id_rsa")
    subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
    code = ("import sys; sys.path.insert(0, sys.argv[1]); import rules; "
            "print(rules.is_submission(__import__('pathlib').Path(sys.argv[2])))")
    done = subprocess.run(["setpriv", f"--reuid={TEST_USER}", f"--regid={TEST_USER}",
                           "--init-groups", sys.executable, "-c", code, str(ROOT / "grader"),
                           str(sub)], capture_output=True, text=True)
    shutil.rmtree(base)
    assert done.stdout == "True\n", done.stderr


def test_an_uploads_git_that_points_elsewhere_is_not_read(tmp_path):
    """Gradescope's upload is the student's, .git included, and git runs as root: a
    link .git/shallow to a root-only file had git print its first line in the commit
    rule's message, which the student reads; a gitdir: file, another repository."""
    secret = tmp_path / "secret"
    secret.write_text("root:the-tas-token\n")
    secret.chmod(0o600)
    repo = new_repo(tmp_path / "repo")
    for n in range(6):
        commit(repo, f"c{n}", f"2026-11-0{n + 1} 12:00")
    cases = {"shallow link": lambda g: (g / "shallow").symlink_to(secret),
             "alternates": lambda g: (g / "objects" / "info" / "alternates").write_text(
                 f"{tmp_path / 'other.git' / 'objects'}\n"),
             "fifo": lambda g: os.mkfifo(g / "FETCH_HEAD")}
    for name, plant in cases.items():
        sub = tmp_path / name.replace(" ", "-")
        shutil.copytree(repo, sub, symlinks=True)
        plant(sub / ".git")
        said = {v["id"]: v for v in rules.check(sub)}
        for rule in ("commits", "binary_files"):
            assert said[rule]["status"] == "unknown", (name, said[rule])
            assert said[rule]["message"].startswith("the git history was not read: "), name
        assert "the-tas-token" not in str(said), name
    gitdir = tmp_path / "gitdir"
    gitdir.mkdir()
    (gitdir / ".git").write_text(f"gitdir: {repo / '.git'}\n")
    assert {v["id"]: v["message"] for v in rules.check(gitdir)}["commits"] == (
        "the git history was not read: .git is not a directory (a worktree's or a "
        "submodule's: its history is elsewhere)")
    # The repository itself, untouched, is read.
    assert {v["id"]: v["status"] for v in rules.check(repo)}["commits"] == "ok"


def test_a_broken_git_never_reads_the_repository_around_the_class(tmp_path):
    """An upload whose .git git refuses (HEAD garbage, or HEAD alone) in a class
    directory inside the TA's own repository: git looked further up and counted the
    TA's commits (8: "ok") and named the TA's binary file in the student's report
    (review, session 28).  Now that .git alone is read: not checked."""
    course = new_repo(tmp_path / "course")
    (course / "hidden_tests.bin").write_bytes(b"\0secret tests")
    for n in range(8):
        commit(course, f"c{n}", f"2026-11-0{n + 1} 12:00")
    for name, plant in (("garbage", lambda g: (g / "HEAD").write_text("garbage\n")),
                        ("head-only", lambda g: (g / "HEAD").write_text("ref: refs/heads/x\n"))):
        sub = course / "class" / name
        copy_parts(sub, {1: PARTS[1]})
        (sub / ".git").mkdir()
        plant(sub / ".git")
        said = {v["id"]: v for v in rules.check(sub)}
        assert said["commits"]["status"] == "unknown", (name, said["commits"])
        assert "hidden_tests.bin" not in str(said), (name, said)
        assert said["binary_files"]["status"] != "fail", (name, said["binary_files"])


def test_collects_git_reads_the_clones_git_alone(tmp_path):
    """collect's own git in a clone whose .git git refuses (HEAD garbage), in a class
    inside the TA's repository under a directory named c:d: GIT_CEILING_DIRECTORIES
    (split at ':') let git reach the TA's repository (review of session 28's change).
    --git-dir names the clone's .git alone."""
    collect_module = load(COLLECT, "zoo_collect_git_dir")
    course = new_repo(tmp_path / "c:d" / "course")
    commit(course, "the TA's own", "2026-11-01 12:00")
    alice = course / "class" / "alice"
    (alice / ".git").mkdir(parents=True)
    (alice / ".git" / "HEAD").write_text("garbage\n")
    with pytest.raises(collect_module.Failed):
        said = collect_module.git(["log", "-1", "--format=%s"], alice, 30)
        assert "the TA's own" not in said


def test_a_partial_clone_never_makes_git_fetch_or_run_its_command(tmp_path):
    """A partial clone's config names a remote whose uploadpack is a command; one blob
    is missing, so git would fetch it, running the command as the grader (root on
    Gradescope).  The config is refused, and even past that git may use no transport;
    a missing blob is no 'not binary'."""
    repo = new_repo(tmp_path / "sub")
    for n in range(6):
        (repo / f"b{n}").write_bytes(b"x\0y" + bytes([n]))
        commit(repo, f"c{n}", f"2026-11-0{n + 1} 12:00")
    marker = tmp_path / "ran"
    for key, value in (("core.repositoryformatversion", "1"),
                       ("extensions.partialClone", "origin"),
                       ("remote.origin.url", str(repo)), ("remote.origin.promisor", "true"),
                       ("remote.origin.uploadpack", f"touch {marker}; false")):
        subprocess.run(["git", "-C", str(repo), "config", key, value], check=True)
    blob = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD:b5"], check=True,
                          capture_output=True, text=True).stdout.strip()
    (repo / ".git" / "objects" / blob[:2] / blob[2:]).unlink()
    said = {v["id"]: v for v in rules.check(repo)}
    assert said["commits"]["message"] == ("the git history was not read: .git/config has "
                                          "extensions.partialclone (the grader does not "
                                          "fetch or include)")
    listing = rules.git(repo, "ls-tree", "-r", "HEAD").stdout.split("\n")
    blobs = [(line.split()[2], line.split("\t")[1]) for line in listing if line]
    with pytest.raises(RuntimeError, match="lacks the content of b5"):
        rules.binary_blobs(repo, blobs)
    assert not marker.exists()


def test_a_linked_hook_is_no_reason_not_to_read_the_history(tmp_path):
    repo = new_repo(tmp_path / "hooked")
    for n in range(6):
        commit(repo, f"c{n}", f"2026-11-0{n + 1} 12:00")
    (repo / ".git" / "hooks" / "pre-commit").symlink_to("../../scripts/pre-commit")
    assert {v["id"]: v["status"] for v in rules.check(repo)}["commits"] == "ok"


def test_a_tree_that_holds_a_repository_of_its_own_is_not_checked_out(tmp_path):
    """A bare repository committed as files (HEAD, config, objects/, refs/): once
    checked out, `git status` in it, or a shell prompt showing the branch, ran its
    core.fsmonitor command as the TA."""
    marker = tmp_path / "pwned"
    config = (b"[core]\n\trepositoryformatversion = 0\n\tbare = false\n\tworktree = .\n"
              + f'\tfsmonitor = "touch {marker}; false"\n'.encode())
    repo = student(tmp_path, "mallory", {"part1_clone/HEAD": b"ref: refs/heads/main\n",
                                         "part1_clone/config": config,
                                         "part1_clone/objects/.keep": b"",
                                         "part1_clone/refs/.keep": b""})
    done, rows, _ = collect(tmp_path, {"mallory": repo})
    assert done.returncode == 1
    assert rows["mallory"]["status"].endswith(
        "'s tree holds a git repository of its own at part1_clone/ (HEAD with objects, refs "
        "or commondir): git run there would obey its config (core.fsmonitor runs a command): "
        "not checked out")
    assert rows["mallory"]["commit"] == ""
    checkout = tmp_path / "class" / "mallory"
    assert not (checkout / "part1_clone").exists()
    subprocess.run(["git", "status"], cwd=checkout, capture_output=True)
    assert not marker.exists()


def test_the_tas_own_git_config_serves_the_fetch_only(tmp_path):
    """A filter in the TA's ~/.gitconfig (git-lfs's, git-crypt's) never runs on a
    student's files; the TA's ssh command still fetches (a course key)."""
    home = tmp_path / "home"
    home.mkdir()
    ran = tmp_path / "filter-ran"
    (home / ".gitconfig").write_text(
        f'[filter "lfs"]\n\tsmudge = "touch {ran}; cat"\n\trequired = true\n'
        '[core]\n\tsshCommand = "sleep 61.345 #"\n')
    repo = student(tmp_path, "mallory", {".gitattributes": b"* filter=lfs\n"})
    done, rows, _ = collect(tmp_path, {"mallory": repo}, env={"HOME": str(home)})
    assert rows["mallory"]["status"] == "ok", rows["mallory"]
    assert not ran.exists()
    # core.sshCommand is the one run (no ssh command of collect's own over it): it
    # never answers, and is stopped at --timeout.
    roster = tmp_path / "roster.csv"
    roster.write_text("student,repository\nalice,git@example.invalid:x.git\n")
    started = time.monotonic()
    run_collect(roster, tmp_path / "class2", "--timeout", "2", env={"HOME": str(home)})
    assert time.monotonic() - started < 30
    assert read_csv_rows(tmp_path / "class2")["alice"]["status"] == (
        "not collected: git clone did not finish within 2s")


def read_csv_rows(class_dir: Path) -> dict:
    with open(class_dir / "collect.csv", newline="") as f:
        return {row["student"]: row for row in csv.DictReader(f)}


def test_a_directory_collect_did_not_make_is_never_fetched_into(tmp_path):
    """CLASS_DIR/NAME a link to the TA's own repository (with work not committed), or
    such a repository itself: never fetched into, forced or cleaned."""
    mine = new_repo(tmp_path / "ta-repo")
    (mine / "tracked.txt").write_text("v1\n")
    commit(mine, "mine", BEFORE)
    (mine / "tracked.txt").write_text("v2, not committed\n")
    (mine / "grades-draft.txt").write_text("draft\n")
    repo = student(tmp_path, "mallory", {})
    (tmp_path / "class").mkdir()
    (tmp_path / "class" / "mallory").symlink_to(mine)
    shutil.copytree(mine, tmp_path / "class" / "eve", symlinks=True)
    done, rows, _ = collect(tmp_path, {"mallory": repo, "eve": repo})
    assert done.returncode == 1
    for name in ("mallory", "eve"):
        assert rows[name]["status"] == (f"not collected: {tmp_path / 'class' / name} exists "
                                        "and is not a clone made by collect: move it away")
    for tree in (mine, tmp_path / "class" / "eve"):
        assert (tree / "tracked.txt").read_text() == "v2, not committed\n"
        assert (tree / "grades-draft.txt").exists()
        assert "student" not in subprocess.run(["git", "remote", "-v"], cwd=tree,
                                               capture_output=True, text=True).stdout


def test_what_git_names_reaches_the_csv_as_text(tmp_path):
    """A default branch named as a formula, or with bytes that are no UTF-8: the CSV is
    written (before: a UnicodeEncodeError for every later run) and shows them as text."""
    formula = '=HYPERLINK("https"&CHAR(58)&"evil.invalid","x")'
    for name, branch in (("eve", formula.encode()), ("mallory", b"b\xff\xfe")):
        repo = student(tmp_path, name, {})
        subprocess.run(["git", "branch", "-m", os.fsdecode(branch)], cwd=repo, check=True)
    done, rows, _ = collect(tmp_path, {"eve": tmp_path / "repos" / "eve",
                                       "mallory": tmp_path / "repos" / "mallory"})
    assert done.returncode == 0, done.stderr
    assert rows["eve"]["branch"] == "'" + formula
    assert rows["mallory"]["branch"] == "b\\xff\\xfe"
    assert rows["mallory"]["rule_commits"] == "ok"  # its .git/config's branch.b\xff\xfe...


def test_a_branch_gone_since_leaves_no_checkout(tmp_path):
    """Collected before the deadline (nothing settled yet), then the branch is gone:
    no checkout of the earlier run stays for grade to grade."""
    repo = student(tmp_path, "alice", {})
    roster = tmp_path / "roster.csv"
    roster.write_text(f"student,repository\nalice,{repo}\n")
    early = ("--deadline", "2099-01-01 00:00")  # the last --deadline given counts
    run_collect(roster, tmp_path / "class", *early)
    assert read_csv_rows(tmp_path / "class")["alice"]["status"] == "ok"
    subprocess.run(["git", "branch", "-m", "wip"], cwd=repo, check=True)
    subprocess.run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], cwd=repo, check=True)
    run_collect(roster, tmp_path / "class", *early)
    row = read_csv_rows(tmp_path / "class")["alice"]
    assert row["status"] == "not collected: no branch main in the repository"
    assert not (tmp_path / "class" / "alice" / PARTS[1]).exists()


def test_paths_are_the_rosters_own_and_shared_repositories_are_said(tmp_path):
    repo = student(tmp_path, "alice", {})
    roster = tmp_path / "repos" / "roster.csv"
    roster.write_text("student,repository\nalice,alice\nbob,./alice/\ncarol,~/solutions\n")
    home = tmp_path / "home"
    (home / "solutions").mkdir(parents=True)
    shutil.copytree(repo / ".git", home / "solutions" / ".git")
    done = run_collect(roster, tmp_path / "class", env={"HOME": str(home)}, cwd=tmp_path)
    rows = read_csv_rows(tmp_path / "class")
    assert rows["alice"]["status"] == "ok" and rows["bob"]["status"] == "ok"
    assert rows["carol"]["status"].startswith("not collected: git clone: "), rows["carol"]
    assert "collect: warning: two students name one repository: alice and bob: " in done.stderr


def test_two_collects_at_once_do_not_share_a_class(tmp_path):
    import fcntl
    repo = student(tmp_path, "alice", {})
    (tmp_path / "class").mkdir()
    with open(tmp_path / "class" / ".collect.lock", "a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        roster = tmp_path / "roster.csv"
        roster.write_text(f"student,repository\nalice,{repo}\n")
        done = run_collect(roster, tmp_path / "class")
    assert done.returncode == 2
    assert done.stderr.endswith("(.collect.lock there is locked): wait for it to end\n")
    assert not (tmp_path / "class" / "alice").exists()
    with open(tmp_path / "class" / ".collect.lock") as graded:  # a grade run shares it
        fcntl.flock(graded, fcntl.LOCK_SH)
        done = run_collect(roster, tmp_path / "class")
    assert done.returncode == 2 and "or a grade, is using" in done.stderr


def collect_waiting_on_ssh(tmp_path: Path, sleep: str, **popen) -> subprocess.Popen:
    """collect of one student whose ssh (`sleep SLEEP`) never answers, returned once
    that ssh runs."""
    roster = tmp_path / "roster.csv"
    roster.write_text("student,repository\nalice,git@example.invalid:x.git\n")
    proc = subprocess.Popen([sys.executable, str(COLLECT), str(roster), "--deadline",
                             "2026-03-01 23:59 Z", "--into", str(tmp_path / "class")],
                            env=dict(os.environ, GIT_SSH_COMMAND=f"sleep {sleep} #"),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **popen)
    deadline = time.monotonic() + 20
    while subprocess.run(["pgrep", "-f", f"sleep {sleep}"], capture_output=True).returncode:
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"ssh never started: {proc.communicate()}")
        time.sleep(0.1)
    return proc


def test_ctrl_c_stops_git_with_collect(tmp_path):
    for signum in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):  # SIGHUP: ssh dropped
        proc = collect_waiting_on_ssh(tmp_path, "61.456")
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
        assert proc.returncode == 130, err
        assert err == "collect: interrupted: run it again to go on\n"
        assert subprocess.run(["pgrep", "-f", "sleep 61.456"]).returncode == 1
        assert not list((tmp_path / "class").glob("*alice*"))


def test_git_dies_with_a_killed_collect(tmp_path):
    """collect killed with SIGKILL (or by the OOM killer): git, in a session of its
    own, went on, and raced the next run's clone in .NAME.partial ("could not open
    .../tmp_pack_...", 3 times in 3: review, session 28).  The kernel now kills it."""
    proc = collect_waiting_on_ssh(tmp_path, "61.789")
    try:
        proc.kill()
        proc.communicate(timeout=30)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not subprocess.run(
                ["pgrep", "-f", "git.* clone .*example.invalid"], capture_output=True).returncode:
            time.sleep(0.1)
        assert subprocess.run(["pgrep", "-f", "git.* clone .*example.invalid"],
                              capture_output=True).returncode == 1, "git outlived collect"
    finally:  # git's own child (ssh, here a sleep) is git's to end: not the kernel's
        subprocess.run(["pkill", "-f", "sleep 61.789"])


def test_a_time_the_clocks_skip_is_refused():
    done = subprocess.run([sys.executable, str(COLLECT), "/nonexistent", "--deadline",
                           "2026-03-29 02:30", "--into", "/nonexistent"],
                          capture_output=True, text=True, env=dict(os.environ,
                                                                   TZ="Europe/Berlin"))
    assert done.returncode == 2
    assert done.stderr == ("collect: --deadline: '2026-03-29 02:30' never happens here (the "
                           "clocks skip it at a daylight saving change): give a zone\n")


def test_rules_on_a_directory_with_nothing_to_check_says_so(tmp_path):
    (tmp_path / "lazy" / ".git").mkdir(parents=True)  # a repository, nothing committed
    done = subprocess.run([sys.executable, str(ROOT / "grader" / "rules.py"),
                           str(tmp_path / "lazy")], capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr == (f"rules: {tmp_path / 'lazy'}: no submission (no part*_*/"
                           "zookeeper.py, no README.txt) and no directory of one in it\n")


def test_a_repository_named_by_commondir_is_not_checked_out_either(tmp_path):
    """HEAD beside a commondir file is a repository too, its objects, refs and config
    where commondir says (review, session 17): git status there ran core.fsmonitor."""
    marker = tmp_path / "pwned"
    repo = student(tmp_path, "mallory", {
        "x/HEAD": b"ref: refs/heads/main\n", "x/commondir": b"../y\n",
        "x/config.worktree": b"[core]\n\tworktree = .\n", "y/objects/.keep": b"",
        "y/refs/.keep": b"",
        "y/config": b"[core]\n\trepositoryformatversion = 1\n[extensions]\n\tworktreeConfig"
                    b" = true\n[core]\n\tfsmonitor = \"touch " + bytes(marker) + b"; false\"\n"})
    done, rows, _ = collect(tmp_path, {"mallory": repo})
    assert done.returncode == 1
    assert "a git repository of its own at x/ (HEAD with objects, refs or commondir)" in (
        rows["mallory"]["status"]), rows["mallory"]
    subprocess.run(["git", "status"], cwd=tmp_path / "class" / "mallory",
                   capture_output=True)
    assert not marker.exists() and not (tmp_path / "class" / "mallory" / "x").exists()


def test_a_class_collected_before_clones_were_marked_is_fetched(tmp_path):
    """A clone of an earlier collect (no mark in its config) whose origin is the
    student's repository and whose state says collected: fetched, and marked."""
    repo = student(tmp_path, "alice", {})
    done, rows, _ = collect(tmp_path, {"alice": repo})
    assert rows["alice"]["status"] == "ok"
    clone = tmp_path / "class" / "alice"
    subprocess.run(["git", "config", "--unset", "zookeeper.collected"], cwd=clone, check=True)
    done, rows, _ = collect(tmp_path, {"alice": repo})
    assert rows["alice"]["status"] == "ok", rows["alice"]
    assert json.loads((tmp_path / "class" / ".collect" / "alice.json").read_text())[
        "action"] == "fetched"
    # Without a record of the student, an unmarked directory is not collect's.
    (tmp_path / "class" / ".collect" / "alice.json").unlink()
    subprocess.run(["git", "config", "--unset", "zookeeper.collected"], cwd=clone, check=True)
    done, rows, _ = collect(tmp_path, {"alice": repo})
    assert rows["alice"]["status"].endswith("is not a clone made by collect: move it away")


@pytest.mark.parametrize("how", ["another default branch", "the branch gone for a run"])
def test_a_commit_settled_after_the_deadline_stays(tmp_path, how):
    """Once a run after the deadline collected a commit, a backdated commit pushed since
    replaces it neither on a new default branch nor after a run that found no branch
    (review, session 17: both did, status ok)."""
    repo = student(tmp_path, "alice", {})
    done, rows, _ = collect(tmp_path, {"alice": repo})
    first = rows["alice"]["commit"]
    subprocess.run(["git", "checkout", "-q", "-b", "late"], cwd=repo, check=True)
    (repo / "late.txt").write_text("late\n")
    late = commit(repo, "backdated", BEFORE)
    if how == "another default branch":
        subprocess.run(["git", "symbolic-ref", "HEAD", "refs/heads/late"], cwd=repo, check=True)
    else:
        subprocess.run(["git", "branch", "-m", "main", "gone"], cwd=repo, check=True)
        subprocess.run(["git", "symbolic-ref", "HEAD", "refs/heads/main"], cwd=repo,
                       check=True)
        done, rows, _ = collect(tmp_path, {"alice": repo})
        assert rows["alice"]["commit"] == first, rows["alice"]  # kept, said so
        assert "now no branch main in the repository" in rows["alice"]["status"]
        subprocess.run(["git", "branch", "-M", "late", "main"], cwd=repo, check=True)
    done, rows, _ = collect(tmp_path, {"alice": repo})
    assert done.returncode == 1
    assert rows["alice"]["commit"] == first
    assert rows["alice"]["status"].startswith(f"kept {first[:12]} of main, collected at ")
    assert f"has {late[:12]} at or before it" in rows["alice"]["status"]
    assert subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path / "class" / "alice",
                          capture_output=True, text=True).stdout.strip() == first


def test_a_reader_that_went_away_stops_nothing(tmp_path):
    """collect ... | head -2: print's BrokenPipeError stopped the class after two
    students, blaming the class directory (attack review, session 17)."""
    repos = {name: student(tmp_path, name, {}) for name in ("a", "b", "c", "d")}
    roster = tmp_path / "roster.csv"
    roster.write_text("student,repository\n" + "".join(f"{n},{r}\n" for n, r in repos.items()))
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        done = subprocess.run([sys.executable, str(COLLECT), str(roster), "--deadline",
                               "2026-03-01 23:59 Z", "--into", str(tmp_path / "class")],
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=300)
    finally:
        os.close(write_end)
    assert done.returncode == 0, done.stderr
    assert [row["status"] for row in read_csv_rows(tmp_path / "class").values()] == ["ok"] * 4


def test_a_name_typed_two_ways_is_one_directory(tmp_path):
    """Renée in NFD on one roster, NFC on the next: one student, one clone (before:
    two directories and two rows that look the same)."""
    repo = student(tmp_path, "renee", {})
    for name in ("Rene\u0301e", "Ren\u00e9e"):
        collect(tmp_path, {name: repo})
    assert sorted(p.name for p in (tmp_path / "class").iterdir()
                  if not p.name.startswith(".") and p.is_dir()) == ["Ren\u00e9e"]
    assert list(read_csv_rows(tmp_path / "class")) == ["Ren\u00e9e"]


def test_names_of_every_script_and_an_earlier_form(tmp_path):
    """ZWNJ is a letter's joiner in Persian (and ZWJ in emoji): such a name is a name,
    not a control character.  A student an earlier collect wrote under the NFD form
    keeps that directory (and its settled commit) when the roster gives NFC."""
    repo = student(tmp_path, "x", {})
    done, rows, _ = collect(tmp_path, {"Ali\u200cReza": repo})
    assert done.returncode == 0 and rows["Ali\u200cReza"]["status"] == "ok", done.stderr
    class_dir = tmp_path / "class"
    nfd = "Rene\u0301e"
    shutil.copytree(class_dir / "Ali\u200cReza", class_dir / nfd, symlinks=True)
    record = json.loads((class_dir / ".collect" / "Ali\u200cReza.json").read_text())
    record["student"] = nfd
    (class_dir / ".collect" / f"{nfd}.json").write_text(json.dumps(record))
    done, rows, _ = collect(tmp_path, {"Ren\u00e9e": repo})
    assert rows[nfd]["status"] == "ok" and not (class_dir / "Ren\u00e9e").exists()


def test_nohup_collect_keeps_going_when_the_terminal_hangs_up(tmp_path):
    proc = collect_waiting_on_ssh(
        tmp_path, "61.567", preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN))
    try:
        proc.send_signal(signal.SIGHUP)  # nohup's: ignored
        time.sleep(1)
        assert proc.poll() is None
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130
