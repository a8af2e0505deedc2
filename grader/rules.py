#!/usr/bin/env python3
"""The course's submission rules, checked and reported (never scored):

    python3 grader/rules.py SUBMISSION|CLASS_DIR [--answers FILE]

  - at least 5 commits (counted up to the commit collected, from the submission's .git);
  - no binary files in the tree (binary as git decides it: a NUL byte in the first
    8000 bytes, what git's diff and grep call binary, .gitattributes aside);
  - README.txt at the top, with a status line for each part ("Part 3: working");
  - each written experiment of README.txt's section 5 answered (5.1, 5.2).

A verdict is {"id", "name", "status", "message"}, status "ok", "fail" or "unknown"
(not checkable here: a submission without its git history, as Gradescope uploads
it).  grader/grade --rules shows them beside the score (report, CSV, Gradescope's
JSON as zero-point tests); grader/collect beside each commit collected.  The written
answers go to one CSV per class (student, question, answer) for the TA who grades
them by hand.  Git runs on the student's repository without hooks or fsmonitor, and
nothing of the submission is run.

Standard library only.
"""

from __future__ import annotations

import argparse
import codecs
import errno
import os
import re
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import report
from report import printable, read_regular_file

MIN_COMMITS = 5
PARTS = range(1, 7)
# README.txt's written experiments (its section 5): number -> what it is about.
# tests/test_collect.py checks that the README says the same.
QUESTIONS = {"5.1": "Seccomp (part 3)", "5.2": "Resource limits (part 5)"}
# What the handout leaves where an answer goes (tools/handout.py).
ANSWER_PLACEHOLDER = "(describe your experiment, what you saw, and why)"
# Where git stops looking for a NUL byte (xdiff-interface.c, buffer_is_binary).
FIRST_FEW_BYTES = 8000
# How much of README.txt is read: a handout's is ~40 KB.
README_LIMIT = 1 << 20
NAMES = {"commits": f"at least {MIN_COMMITS} commits",
         "binary_files": "no binary files",
         "readme_status": "README.txt states each part's status",
         "written_answers": "each written experiment answered"}
# Not the student's files on disk (an upload without .git): git's own, and what the
# lab's targets make there, which the handout's .gitignore keeps out of the repository
# (a venv, the rootfs tarball, the grader's results, Python's compiled files).
SKIP_DIRS = {".git", ".venv", "build", "grader-results", "__pycache__"}

# A part's status line: "Part 3: working", "part3_seccomp - not working: ...",
# "- Part 5 (cgroups) status: partly", "Part 2 is working".  Not "Part 4 score: 11/16"
# nor the README's own "part1_clone/   clone a child".
STATUS_LINE = re.compile(
    r"^\s*(?:[-*+\u2022]\s*)?part\s*_?([1-6])(?:_[a-z]+)?\s*(?:\([^)]*\))?\s*"
    r"(?:status\s*)?(?:[:=\u2013\u2014]|-(?!-)|\s+is\s+)\s*(?P<text>\S.*)$", re.I)
# What may stand between a question's number, its title and the rest of its heading
# line: spaces, Markdown's emphasis, and ". ) : - \u2013 \u2014".
HEADING_GAP = " \t*_.):-\u2013\u2014"
# A line that starts with a question's number, after indentation, Markdown's "#"s and
# "**": "5.1 Seccomp (part 3).  Pick...", "## 5.1. Seccomp", "**5.1) Seccomp**", "5.1".
# The number ends there ("5.12", "5.1.2" are others); question_heading says whether
# what follows makes it a heading.
QUESTION_NUMBER = re.compile(r"^\s*(?P<marked>#{0,6}\s*[*_]{0,2})(?P<number>5\.\d+)"
                             rf"(?P<rest>(?:[{re.escape(HEADING_GAP)}].*)?)$")
# A Markdown heading of a section of its own ("## 6. Debugging"): it ends the last
# answer as the handout's underlined "6. ..." does.
SECTION_HEADING = re.compile(r"^\s*#{1,6}\s*\d+\.?(?:\s|$)")
# "Answer:" before an answer: "Answer.", "Answers:", "ANSWER -", "**Answer:**",
# "**Answer**:", "Answer" alone.  A word of its own: not "Answering it was...".
ANSWER_MARK = re.compile(r"^\s*[*_]{0,2}answers?\b[*_]{0,2}\s*"
                         r"[.:\-\u2013\u2014]?[*_]{0,2}\s*", re.I)


def verdict(rule: str, status: str, message: str) -> dict:
    return {"id": rule, "name": NAMES[rule], "status": status, "message": message}


def git(repo: Path, *args: str, binary: bool = False, timeout: float = 120):
    """git in a student's repository (git_command), run to its end."""
    cmd, env = git_command(repo, *args)
    return subprocess.run(cmd, capture_output=True, text=not binary, timeout=timeout,
                          stdin=subprocess.DEVNULL, env=env)


def git_command(repo: Path, *args: str) -> tuple[list[str], dict]:
    """The command line and environment of git in a student's repository: no hooks,
    no fsmonitor, no pager; a repository owned by someone else is read all the same
    (safe.directory for it only)."""
    # No transport at all (a command line's -c wins over the repository's own key):
    # a partial clone's missing object would be fetched, through the remote's
    # uploadpack command, run by a shell, as the grader.
    no_transport = [arg for proto in ("", *PROTOCOLS) for arg in
                    ("-c", f"protocol.{proto + '.' if proto else ''}allow=never")]
    # --git-dir: this .git, and no other.  Found by discovery, a .git git refuses (a
    # broken HEAD) sent git up to the directories above: the TA's own repository,
    # whose commits and files then passed for the student's (review, session 28).
    repo = Path(repo).absolute()  # (--git-dir is taken from -C's directory)
    cmd = ["git", "-c", f"safe.directory={repo}", "-c", "core.hooksPath=/dev/null",
           "-c", "core.fsmonitor=false", *no_transport, "--no-pager", "-C", str(repo),
           f"--git-dir={repo / '.git'}", f"--work-tree={repo}", *args]
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", LC_ALL="C", GIT_NO_LAZY_FETCH="1",
               GIT_PROTOCOL_FROM_USER="0")
    env.pop("GIT_DIR", None)
    env.pop("GIT_WORK_TREE", None)
    return cmd, env


def has_git(sub: Path) -> bool:
    return os.path.lexists(sub / ".git")


PROTOCOLS = ("file", "git", "ssh", "http", "https", "ftp", "ftps", "ext")
# Files of a .git that make git read another repository instead of this one.
ELSEWHERE = ("commondir", "objects/info/alternates", "objects/info/http-alternates")
# Keys of a student's .git/config that make git read other files, or fetch what it
# lacks, and run a program to do so (git-config(1)): a repository that has one is not
# read.  Every transport is refused on git's command line as well (git_command), so
# keys only a fetch or a push uses (core.sshCommand, credential.*) do no harm here.
RISKY_CONFIG = re.compile(r"^(include\.|includeif\.|extensions\.partialclone$|"
                          r"remote\..*\.(promisor|partialclonefilter|uploadpack)$|"
                          r"core\.alternaterefscommand$)", re.I)


def git_problem(sub: Path) -> str:
    """'' when sub/.git is a repository git may read here, else why not.  An upload's
    .git is the student's, and git runs as the grader (root, on Gradescope): a link in
    it (.git/shallow to /etc/shadow) had git print a line of the file it names in its
    error, which the student then read; a gitdir: file or an alternates file had git
    read another repository of the machine's."""
    top = sub / ".git"
    if top.is_symlink() or not top.is_dir():
        return ".git is not a directory (a worktree's or a submodule's: its history is elsewhere)"
    for name in ELSEWHERE:
        if os.path.lexists(top / name):
            return f".git/{name} points at another repository"
    try:
        stack = [str(top)]  # by hand: os.walk recurses, and a .git may be deep
        while stack:
            with os.scandir(stack.pop()) as entries:
                for entry in entries:
                    if entry.is_dir(follow_symlinks=False):
                        if entry.path != str(top / "hooks"):  # never run: not read
                            stack.append(entry.path)
                    elif not entry.is_file(follow_symlinks=False):
                        return (f"{printable(os.path.relpath(entry.path, sub))} is not a "
                                "plain file or directory")
    except OSError as e:
        return f".git cannot be read here ({e.strerror})"
    return risky_config(top / "config")


def risky_config(path: Path) -> str:
    """'' unless the repository's config holds a RISKY_CONFIG key (read by git config
    --file, which reads that one file, includes not followed)."""
    if not path.exists():
        return ""
    cmd = ["git", "config", "--file", str(path), "--no-includes", "--name-only", "--list"]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=30, stdin=subprocess.DEVNULL,
                              env=dict(os.environ, LC_ALL="C"), text=True,
                              errors="surrogateescape")  # a key may name a branch: bytes
    except subprocess.TimeoutExpired:
        return ".git/config takes too long to read"
    if done.returncode != 0:
        return ".git/config is not a git config file"
    risky = [key for key in done.stdout.split() if RISKY_CONFIG.match(key)]
    if risky:
        return f".git/config has {printable(risky[0])} (the grader does not fetch or include)"
    return ""


def unread_git(rule: str, sub: Path) -> dict | None:
    """The rule's verdict when sub's .git is not to be read (git_problem), else None."""
    problem = git_problem(sub)
    if not problem:
        return None
    return verdict(rule, "unknown", f"the git history was not read: {problem}")


def has_a_commit(sub: Path) -> bool:
    """Does sub's HEAD name a commit?  False for a repository with none yet (HEAD's
    branch unborn: git rev-parse -q --verify says nothing); RuntimeError with git's
    words for one git cannot read (a damaged packed-refs), or whose HEAD names an
    object that is not there or no commit: never "no commit", which would let the
    binary rule read the work tree instead of what was committed."""
    done = git(sub, "rev-parse", "-q", "--verify", "HEAD")
    if done.returncode != 0:
        if done.stderr.strip():
            raise RuntimeError(" ".join(done.stderr.split())[:300])
        return False
    head = done.stdout.strip()
    done = git(sub, "rev-parse", "--verify", "HEAD^{commit}")
    if done.returncode != 0:
        raise RuntimeError(f"HEAD ({head[:12]}) names no commit the repository holds")
    return True


def count_commits(sub: Path) -> dict:
    if not has_git(sub):
        return verdict("commits", "unknown", "the submission has no git history "
                       "(count them in the student's repository)")
    refused = unread_git("commits", sub)
    if refused:
        return refused
    try:
        if not has_a_commit(sub):
            return verdict("commits", "fail", f"0 commits (at least {MIN_COMMITS} required)")
        done = git(sub, "rev-list", "--count", "HEAD")
    except subprocess.TimeoutExpired as e:
        return verdict("commits", "unknown", f"git took longer than {e.timeout:g} s")
    except RuntimeError as e:
        return verdict("commits", "unknown", f"git cannot read the history: {e}")
    if done.returncode != 0:
        said = " ".join(done.stderr.split())[:300] or "no message"
        return verdict("commits", "unknown", f"no commit to count ({said})")
    n = int(done.stdout.strip())
    if n >= MIN_COMMITS:
        return verdict("commits", "ok", f"{n} commits")
    return verdict("commits", "fail", f"{n} commit{'s' if n != 1 else ''} "
                   f"(at least {MIN_COMMITS} required)")


def is_binary(head: bytes) -> bool:
    """git's test (a NUL in the first 8000 bytes), but for text in UTF-16 with its byte
    order mark, as Notepad's "Unicode" saves it: read_readme reads such a README, and
    the binary rule failed it."""
    head = head[:FIRST_FEW_BYTES]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:  # not final: the first 8000 bytes may end inside a character
            text = codecs.getincrementaldecoder("utf-16")().decode(head, final=False)
        except UnicodeDecodeError:
            return True
        return "\0" in text
    return b"\0" in head


def binary_files_in_git(sub: Path) -> list[str]:
    """The binary blobs of HEAD's tree (what was committed, not the work tree)."""
    listing = git(sub, "ls-tree", "-r", "-z", "--full-tree", "HEAD", binary=True)
    if listing.returncode != 0:
        raise RuntimeError((listing.stderr.decode(errors="replace").strip().splitlines()
                            or ["git ls-tree failed"])[-1])
    blobs = []  # (object id, path)
    for entry in listing.stdout.split(b"\0"):
        if not entry:
            continue
        meta, path = entry.split(b"\t", 1)
        mode, kind, oid = meta.split()
        if kind == b"blob" and mode != b"120000":  # symbolic links hold a path
            blobs.append((oid.decode(), printable(os.fsdecode(path))))
    if not blobs:
        return []
    return binary_blobs(sub, blobs)


def binary_blobs(sub: Path, blobs: list[tuple[str, str]], timeout: float = 120) -> list[str]:
    """The paths of those blobs that are binary, read through one `git cat-file --batch`.
    Its input is written by a thread of its own while this one reads its output: written
    whole before any is read, a tree of a few thousand files fills both pipes and each
    side waits for the other forever.  The whole read stops after TIMEOUT seconds."""
    cmd, env = git_command(sub, "cat-file", "--batch")
    found = []
    with subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                          stderr=subprocess.DEVNULL, env=env) as p:
        def feed():
            try:
                for start in range(0, len(blobs), 1000):
                    p.stdin.write("".join(f"{oid}\n" for oid, _ in
                                          blobs[start:start + 1000]).encode())
                p.stdin.close()
            except (BrokenPipeError, ValueError, OSError):
                pass  # git is gone (stopped at the timeout): the reader says so

        writer = threading.Thread(target=feed, daemon=True)
        timer = threading.Timer(timeout, p.kill)
        writer.start()
        timer.start()
        try:
            for _, path in blobs:
                line = p.stdout.readline()
                if not line:
                    raise RuntimeError("git cat-file stopped before the last file"
                                       + (f" (more than {timeout:g} s)"
                                          if not timer.is_alive() else ""))
                header = line.split()
                if len(header) != 3:  # "missing": a file whose content was removed
                    raise RuntimeError(f"the repository lacks the content of {path}: "
                                       "it cannot be checked")
                left, head = int(header[2]), b""
                while left:
                    chunk = p.stdout.read(min(left, 1 << 20))
                    if not chunk:
                        break
                    if len(head) < FIRST_FEW_BYTES:
                        head += chunk[:FIRST_FEW_BYTES - len(head)]
                    left -= len(chunk)
                p.stdout.read(1)  # the newline after the content
                if is_binary(head):
                    found.append(path)
        finally:
            timer.cancel()
            if p.poll() is None and writer.is_alive():
                p.kill()
            writer.join()
    return found


def binary_files_on_disk(sub: Path) -> list[str]:
    found = []
    for top, dirs, files in os.walk(sub):
        dirs[:] = sorted(d for d in dirs if d not in SKIP_DIRS)
        for name in sorted(files):
            path = Path(top) / name
            if path.is_symlink() or not path.is_file() or name.endswith(".pyc"):
                continue
            try:
                with open(path, "rb") as f:
                    head = f.read(FIRST_FEW_BYTES)
            except OSError:
                continue
            if is_binary(head):
                found.append(printable(path.relative_to(sub).as_posix()))
    return found


def binary_files(sub: Path) -> dict:
    refused = unread_git("binary_files", sub) if has_git(sub) else None
    if refused:
        return refused
    try:
        # What was committed; before a first commit, what would be.
        committed = has_git(sub) and has_a_commit(sub)
        found = binary_files_in_git(sub) if committed else binary_files_on_disk(sub)
    except subprocess.TimeoutExpired as e:
        return verdict("binary_files", "unknown", f"git took longer than {e.timeout:g} s")
    except (RuntimeError, OSError, subprocess.SubprocessError) as e:
        return verdict("binary_files", "unknown", str(e))
    if not found:
        return verdict("binary_files", "ok", "none")
    shown = ", ".join(found[:10]) + (f" and {len(found) - 10} more" if len(found) > 10 else "")
    return verdict("binary_files", "fail", f"{len(found)} binary file"
                   f"{'s' if len(found) != 1 else ''}: {shown}")


def read_readme(sub: Path) -> tuple[str | None, str]:
    """README.txt's text (None when absent) and, when absent, what is there instead.
    Its first README_LIMIT bytes, and only from a regular file: a symbolic link would
    have the grader read whatever it names (the TA's files, /proc/kmsg), and its text
    shown to the student; a FIFO would never end (O_NONBLOCK, then fstat)."""
    try:
        text = read_regular_file(sub / "README.txt", README_LIMIT)
    except FileNotFoundError:
        others = sorted(printable(p.name) for p in sub.iterdir()
                        if p.name.lower().startswith("readme")) if sub.is_dir() else []
        return None, (f" (found {', '.join(others)})" if others else "")
    except OSError as e:
        if e.errno == errno.ELOOP:
            return None, " (README.txt is a symbolic link: not read)"
        if e.errno == errno.EINVAL:
            return None, " (README.txt is not a regular file: not read)"
        return None, f" (README.txt cannot be read: {e.strerror})"
    # Windows' editors: Notepad's "Unicode" and PowerShell 5's > write UTF-16 with a
    # BOM (which the utf-16 codec reads to tell the byte order); Notepad's UTF-8
    # starts with a BOM too, which would hide the first line (utf-8-sig drops it).
    if text.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return text.decode("utf-16", errors="replace"), ""
    return text.decode("utf-8-sig", errors="replace"), ""


def status_lines(text: str):
    """(part, status as the student wrote it) for each status line, in order."""
    for line in text.splitlines():
        # One space for each run of them: STATUS_LINE's optional spaces, side by side,
        # could otherwise split a long run in ways that grow with its cube.
        m = STATUS_LINE.match(" ".join(line.split()))
        if m:
            yield int(m.group(1)), printable(m.group("text").strip())


def is_placeholder(status: str) -> bool:
    """The template's "Part 1: (working, partly working or not working; ...)", its
    parentheses kept: the student was to replace them, so it states nothing."""
    return re.fullmatch(r"\(.*\)", status) is not None


def part_statuses(text: str) -> dict[int, str]:
    """Each part's status as the student wrote it (the first line for that part);
    a placeholder in parentheses is no status."""
    return statuses_and_placeholders(text)[0]


def statuses_and_placeholders(text: str) -> tuple[dict[int, str], dict[int, str]]:
    """part_statuses, and the parts whose only status is a placeholder in
    parentheses -> the first one: both from one reading of text."""
    stated: dict[int, str] = {}
    placeholders: dict[int, str] = {}
    for part, said in status_lines(text):
        (placeholders if is_placeholder(said) else stated).setdefault(part, said)
    left = {part: said for part, said in placeholders.items() if part not in stated}
    return stated, left


def readme_status(sub: Path) -> dict:
    text, instead = read_readme(sub)
    if text is None:
        return verdict("readme_status", "fail", f"no README.txt at the top{instead}")
    found, left = statuses_and_placeholders(text)
    missing = [p for p in PARTS if p not in found and p not in left]
    said = []
    if missing:
        said.append("no status line for part " + ", ".join(str(p) for p in missing)
                    + f" (a line like \"Part {missing[0]}: working\")")
    if left:  # "Part 1: (working)": a status all the same? The template says no.
        said.append("part " + ", ".join(f"{p} still says \"{shorten(left[p], 40)}\""
                                         for p in sorted(left))
                    + ": replace what is in parentheses")
    if said:
        return verdict("readme_status", "fail", "; ".join(said))
    return verdict("readme_status", "ok", "; ".join(
        f"part {p}: {shorten(found[p], 40)}" for p in PARTS))


def shorten(text: str, width: int) -> str:
    return textwrap.shorten(text, width, placeholder="...")


def question_heading(line: str) -> tuple[str, bool] | None:
    """(number, bare) when the line is a question's heading, else None; bare when the
    line holds nothing after the question's title (its text, if copied, is below).
    A heading is the number first on its line (QUESTION_NUMBER), then the line's end
    or, after a separator, what names the question (names_the_question): "5.1",
    "5.1) seccomp", "5.2 - Limits", "## 5.2 cgroups".  Not "see 5.1 above", nor an
    answer's "5.1 ms was the time", "5.2 MB" or "5.2-7.7 s"."""
    m = QUESTION_NUMBER.match(line)
    if not m or m.group("number") not in QUESTIONS:
        return None
    number, rest = m.group("number"), m.group("rest").strip(HEADING_GAP)
    title = QUESTIONS[number]
    marked = m.group("marked").strip()  # Markdown's: a heading whatever its words
    if rest and not marked and not names_the_question(rest, title):
        return None
    # What follows the title on its line: the question's text, which goes on below.
    after = rest[len(title):] if rest.lower().startswith(title.lower()) else ""
    return number, not after.strip(HEADING_GAP)


def names_the_question(rest: str, title: str) -> bool:
    """Whether what follows a question's number begins as a heading does: with a word
    of its title ("Seccomp", "limits", "Resources") or a capitalized word of the
    student's own ("Cgroups").  A unit is neither ("ms", "MB", "KiB"), nor a word in
    lower case that is not the title's ("was")."""
    first = re.match(r"[^\W\d_]+", rest)
    if not first:
        return False
    word = first.group()
    if word[0].isupper() and len(word) > 1 and word[1:].islower():
        return True
    word = word.lower()
    return any(word.startswith(part) or (len(word) >= 3 and part.startswith(word))
               for part in re.findall(r"[^\W\d_]{3,}", title.lower()))


def section_end(lines: list[str], start: int, end: int) -> int:
    """Where the question's lines [start, end) stop: at a section's heading (the
    handout's "6. Debugging" over a line of dashes, or Markdown's "## 6. ...")."""
    for i in range(start, end):
        underlined = (re.match(r"^\d+\.\s+\S", lines[i]) and i + 1 < len(lines)
                      and re.fullmatch(r"-{3,}\s*", lines[i + 1]))
        if underlined or SECTION_HEADING.match(lines[i]):
            return i
    return end


def answer_lines(block: list[str], bare: bool) -> list[str]:
    """The answer among a question's lines (those after its heading): from its
    "Answer:" on; without one, what follows the question's paragraph, or the whole
    of it under a bare heading ("## 5.1 Seccomp", then the answer on the next line)."""
    mark = next((i for i, line in enumerate(block) if ANSWER_MARK.match(line)), None)
    if mark is not None:
        return [ANSWER_MARK.sub("", block[mark], count=1)] + block[mark + 1:]
    blank = next((i for i, line in enumerate(block) if not line.strip()), len(block))
    after = block[blank:]
    if bare and not "".join(after).strip():
        return block
    return after


def answers(text: str | None) -> dict[str, str]:
    """README.txt's answer to each written experiment: '' when left blank (or the
    handout's placeholder), question number -> text."""
    got = {q: "" for q in QUESTIONS}
    if not text:
        return got
    lines = text.splitlines()
    starts = [(i, *heading) for i, line in enumerate(lines)
              if (heading := question_heading(line))]
    for n, (start, number, bare) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(lines)
        block = lines[start + 1:section_end(lines, start + 1, end)]
        said = textwrap.dedent("\n".join(answer_lines(block, bare))).strip()
        said = said.replace(ANSWER_PLACEHOLDER, "").strip()
        if not got[number]:
            got[number] = printable(said, lines=True)
    return got


def written_answers(sub: Path) -> dict:
    text, instead = read_readme(sub)
    if text is None:
        return verdict("written_answers", "fail", f"no README.txt at the top{instead}")
    got = answers(text)
    blank = [q for q in QUESTIONS if not got[q]]
    if blank:
        return verdict("written_answers", "fail", "not answered: " + ", ".join(
            f"{q} ({QUESTIONS[q]})" for q in blank))
    return verdict("written_answers", "ok", ", ".join(
        f"{q} ({len(got[q].split())} words)" for q in QUESTIONS))


def check(sub: Path) -> list[dict]:
    """Every rule's verdict on one submission (a directory; its .git when it has one)."""
    sub = Path(sub).resolve()
    out = []
    for rule in (count_commits, binary_files, readme_status, written_answers):
        try:
            out.append(rule(sub))
        except Exception as e:  # a rule that cannot be checked says so, and no more
            name = rule.__name__
            rid = {"count_commits": "commits"}.get(name, name)
            out.append(verdict(rid, "unknown", f"{e!r}"))
    return out


WORDS = {"ok": "OK", "fail": "FAIL", "unknown": "NOT CHECKED"}


def summary(verdicts: list[dict]) -> str:
    """'ok' or e.g. 'fail: at least 5 commits, no binary files'."""
    failed = [v["name"] for v in verdicts if v["status"] == "fail"]
    unknown = [v["name"] for v in verdicts if v["status"] == "unknown"]
    said = ([f"fail: {', '.join(failed)}"] if failed else []) + (
        [f"not checked: {', '.join(unknown)}"] if unknown else [])
    return "; ".join(said) or "ok"


def write_answers(path: Path, subs: dict[str, Path | None]) -> None:
    """One CSV for the class: student, question, answer (every question of every
    student, blank when not answered or when there is no README.txt).  An answer
    that a spreadsheet would take for a formula gets a ' before it."""
    rows = []
    for name in sorted(subs):
        sub = subs[name]
        text = read_readme(sub)[0] if sub is not None and sub.is_dir() else None
        got = answers(text)
        rows += [[report.cell(name), f"{q} {QUESTIONS[q]}", formula_guarded(cut(got[q]))]
                 for q in QUESTIONS]
    report.write_csv_file(path, ["student", "question", "answer"], rows)


# What one answer's cell holds at most: a spreadsheet's cell holds 32767 characters
# (Excel, LibreOffice), and Python's csv module reads none over 131072.
ANSWER_CELL = 32000


def cut(answer: str) -> str:
    """An answer that fits in a cell, saying how much of it was left out."""
    if len(answer) <= ANSWER_CELL:
        return answer
    return answer[:ANSWER_CELL] + f"\n[{len(answer) - ANSWER_CELL} more characters in README.txt]"


def formula_guarded(answer: str) -> str:
    """An answer, its lines kept, with a ' before it if a spreadsheet would take it
    for a formula."""
    return "'" + answer if answer.startswith(report.FORMULA_STARTS) else answer


def is_submission(path: Path) -> bool:
    """A directory with a part in it (part3_seccomp/zookeeper.py).  Each name is looked
    at on its own: a link the grader may not follow (Path.glob gives up at the first
    it meets) does not hide the parts beside it."""
    try:
        with os.scandir(path) as entries:
            names = [entry.name for entry in entries]
    except OSError:
        return False
    return any(re.fullmatch(r"part[1-6]_.+", name) and os.path.isfile(path / name / "zookeeper.py")
               for name in names)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("path", type=Path, metavar="SUBMISSION|CLASS_DIR")
    ap.add_argument("--answers", type=Path, metavar="FILE",
                    help="write the written answers here (CSV: student, question, answer)")
    args = ap.parse_args(argv)
    path = args.path.resolve()
    if not path.is_dir():
        print(f"rules: {args.path}: not a directory", file=sys.stderr)
        return 2
    if is_submission(path) or (path / "README.txt").exists():
        subs = {path.name: path}
    else:
        subs = {p.name: p for p in sorted(path.iterdir())
                if p.is_dir() and not p.name.startswith(".")}
    if not subs:
        print(f"rules: {printable(str(args.path))}: no submission (no part*_*/zookeeper.py, "
              "no README.txt) and no directory of one in it", file=sys.stderr)
        return 2
    bad = 0
    for name, sub in subs.items():
        verdicts = check(sub)
        bad += summary(verdicts) != "ok"
        print(f"# {name}: {summary(verdicts)}")
        for v in verdicts:
            print(f"== rule: {v['name']} == {WORDS[v['status']]} ({v['message']})")
    if args.answers:
        write_answers(args.answers, subs)
        print(f"rules: the written answers are in {args.answers}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
