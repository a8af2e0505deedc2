#!/usr/bin/env python3
"""Write the student handout: what a student gets, and nothing a student must not see.

    handout.py OUT_DIR [--tar FILE.tar.gz]

In: skeleton/, README.txt without the written experiments' answers and without the
maintainers' sections (the course's rules, which those state, told where it grades), the
rootfs builder, the demo, the set-up (check-deps.sh), a Makefile of the student's targets
(tools/handout.mk, with the checks' points filled in), the grader with only its public
checks and what they use (`make check` runs them, in the grader's VM or with --local),
and a .gitignore of what the lab's own targets make.  Out: the reference parts, src/,
the hidden checks and what only they use, the answers, this repo's tests.
"""

import argparse
import ast
import re
import shutil
import sys
import tarfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

COPIED = ["skeleton", "requirements.txt", "tools/mkrootfs.py", "tools/check-deps.sh",
          "tools/demo.sh", "tools/common.mk", "tools/part-names.txt", "grader/grade",
          "grader/runner.py", "grader/report.py", "grader/rules.py", "grader/subids.py",
          "grader/precompile.py", "grader/vm.py", "grader/image.py", "grader/qemu.py",
          "grader/qmp.py", "grader/stuck.py", "grader/schedulers.py", "grader/home.py",
          "grader/user_systemd.py", "grader/waiting_child.py", "grader/children.py",
          "grader/guest",
          "grader/helpers"]
ANSWER_START = "Answer."
HEADING = re.compile(r"^\d+(\.\d+)*[. ]")
MAINTAINERS_HEADING = "9. For instructors and maintainers"

# The handout's Makefile, with @PUBLIC@, @TOTAL@ and @HIDDEN@ for the checks' points.
MAKEFILE = ROOT / "tools" / "handout.mk"

# What the repo's README says of tools the handout does not have: the maintainers'
# tests and the benchmarks (section 8, up to the maintainers' section).
REPO_ONLY_TEST = """\
    sudo make test     installs the test dependencies (system packages, a venv in
                       /opt/zookeeper-venv, a test user `zootest` with a subuid range),
                       then runs ruff, vermin (is every call there in Python 3.10?),
                       the generator check and every test, including
                       the grader's VM tests (the VM image is built once, ~2 minutes,
                       and cached in ~/.cache/zookeeper) and the arm64 guest's (its
                       image ~4 minutes, all six parts graded in ~3)
"""
HANDOUT_TEST = """\
    make check         the grader's public checks on your parts, as you: in the
                       grader's VM, or on this machine when it has none (section 7)
"""
REPO_DEMO = """\
    make demo          sets this machine up for the lab (below), then runs a
                       container that shows its isolation: hostname, user, id map,
                       processes, network, filesystem, seccomp, cgroup
"""
# The handout has no part yet: the demo sets up, and runs a container from part 4 on.
HANDOUT_DEMO = """\
    make demo          sets this machine up for the lab (below); once you have a
                       part 4, it also runs a container of your newest part that
                       shows its isolation: hostname, user, id map, processes,
                       network, filesystem, seccomp, cgroup (until then, it says so)
"""
# What the repo's README says of what the handout lacks (the reference parts, their
# experiments' scripts, the repo's tests, the maintainers' sections): the repo's words,
# the handout's.  tests/test_handout.py checks that each is still the README's.
REPO_ONLY_WORDS = [
    ("""  The reference parts from part 3
on also hold experiments/, their scripts for the written experiments (section 5);
the skeleton has none, since those are yours to write.  The skeleton has one file
more, exercise.py:""", """  The skeleton has one file more,
exercise.py:"""),
    ("""Tested: the references score full marks
    in an arm64 Debian guest (under emulation on x86_64, in the lab's own tests).""",
     """Tested: the course's solution scores full
    marks in an arm64 Debian guest (under emulation on x86_64)."""),
    ("do: the reference parts were attacked with a rootfs whose mount points link out of\nit,",
     "do: the course's solution was attacked with a rootfs whose mount points link out\nof it,"),
    ("(the repo's own tests do it again on every\nchange)",
     "(the course's own tests do it again on every\nchange)"),
    ("""(flock(2) on a file in the
cache; Slurm tasks sharing a cache wait too where its filesystem has flock,
and boot where it has not).""", """(flock(2) on a file in the
cache)."""),
    ("quicker (section 9.5).", "quicker."),
    ("Grading all six parts of the references in an arm64 guest took ~3 minutes here,",
     "Grading all six parts of the course's solution in an arm64 guest took ~3 minutes,"),
]
# The course's rules (grader/rules.py: section 9.1, which the handout leaves out), told
# to the student after the points, in the words the rules' report uses.
POINTS_END = "not that the hidden ones will.\n"
# What the lab's own targets make in the student's tree: never to be committed (the
# course's rule "no binary files"; a .venv/ alone is thousands of files).
GITIGNORE = """\
# What the lab's own targets make here (make demo, make rootfs, make check, grader/grade):
# the venv, the rootfs and its tarball, the VM's log, the grader's results, and Python's
# compiled files.  Commit none of it: the course's rules allow no binary files.
.venv/
build/
grader-results/
__pycache__/
*.pyc
"""
# The exercise table's markers name the generator, which the handout does not have.
EXERCISES_MARKER = re.compile(r"^---- exercises: generated by .*----$", re.M)
BENCHMARKS_HEADING = "8. Benchmarks"


def public_checks_source(text: str, used_elsewhere: set[str]) -> str:
    """checks.py without the hidden checks (the functions registered public=False), nor
    what only they use: each top-level definition (with its decorators and the comment
    directly above it) that neither a public check, nor another kept statement, nor
    another file of the handout (used_elsewhere: checks.CHECKS, checks.READY) needs."""
    tree = ast.parse(text)
    kept = needed_statements([node for node in tree.body if not is_hidden_check(node)],
                             used_elsewhere)
    lines = text.splitlines(keepends=True)
    for node in reversed(tree.body):
        if node not in kept:
            start, end = statement_lines(node, lines)
            del lines[start:end]
    return re.sub(r"\n{4,}", "\n\n\n", "".join(lines))


def is_hidden_check(node) -> bool:
    return (isinstance(node, ast.FunctionDef)
            and any(is_hidden(d) for d in node.decorator_list))


def is_hidden(decorator) -> bool:
    return (isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "check"
            and any(k.arg == "public" and isinstance(k.value, ast.Constant)
                    and k.value.value is False for k in decorator.keywords))


def needed_statements(candidates: list, used_elsewhere: set[str]) -> set:
    """Of these top-level statements, those still needed, as a fixed point: every
    statement that defines no name (a docstring, a call) and every public check (its
    decorator registers it: nothing names it), then each definition a needed statement
    or another file names, and what those name in turn.  A name bound twice keeps both."""
    defined = {}
    for node in candidates:
        for name in names_defined(node):
            defined.setdefault(name, []).append(node)
    needed = [node for node in candidates
              if not names_defined(node)
              or (isinstance(node, ast.FunctionDef) and node.decorator_list)]
    needed += [node for name in sorted(used_elsewhere) for node in defined.get(name, [])]
    kept, todo = set(), needed
    while todo:
        node = todo.pop()
        if node not in kept:
            kept.add(node)
            todo += [d for name in names_used(node) for d in defined.get(name, [])]
    return kept


def names_defined(node) -> set[str]:
    """The module-level names a top-level def, class or plain assignment binds (none
    for anything else: such a statement is always kept)."""
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {node.name}
    targets = (node.targets if isinstance(node, ast.Assign)
               else [node.target] if isinstance(node, ast.AnnAssign) else [])
    return {t.id for t in targets if isinstance(t, ast.Name)}


def names_used(node) -> set[str]:
    """Every name a statement reads, in its body, decorators, defaults and annotations."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Load)}


def statement_lines(node, lines: list[str]) -> tuple[int, int]:
    """The lines [start, end) of a top-level statement: its decorators, and the comment
    block directly above it (no blank line between; a comment indented under the
    statement before belongs to that one)."""
    start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))]) - 1
    while start > 0 and lines[start - 1].startswith("#"):
        start -= 1
    return start, node.end_lineno


def names_used_from_checks(root: Path) -> set[str]:
    """What the handout's other Python files take from checks.py: `checks.NAME`
    (runner.py: checks.CHECKS, checks.READY) and `from checks import NAME`."""
    used = set()
    for path in root.rglob("*"):
        if not path.is_file() or path.name == "checks.py" or not is_python(path):
            continue
        tree = ast.parse(path.read_text())
        aliases = {a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import)
                   for a in n.names if a.name == "checks"}
        for n in ast.walk(tree):
            if (isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name)
                    and n.value.id in aliases):
                used.add(n.attr)
            elif isinstance(n, ast.ImportFrom) and n.module == "checks":
                used |= {a.name for a in n.names}
    return used


def is_python(path: Path) -> bool:
    """A .py file, or a script whose #! runs python (grader/grade)."""
    if path.suffix == ".py":
        return True
    with path.open("rb") as f:
        first = f.readline()
    return first.startswith(b"#!") and b"python" in first


def readme_without_answers(text: str) -> str:
    """The handout's README: each answer (from "Answer." to the next numbered heading)
    becomes a place for the student's, and the maintainers' section goes."""
    if MAINTAINERS_HEADING in text:
        text = text.split(MAINTAINERS_HEADING)[0].rstrip() + "\n"
    if BENCHMARKS_HEADING in text:
        text = text.split(BENCHMARKS_HEADING)[0].rstrip() + "\n"
    text = text.replace(REPO_ONLY_TEST, HANDOUT_TEST).replace(REPO_DEMO, HANDOUT_DEMO)
    for repo_words, handout_words in REPO_ONLY_WORDS:
        text = text.replace(repo_words, handout_words)
    text = text.replace(POINTS_END, POINTS_END + "\n" + course_rules(), 1)
    text = EXERCISES_MARKER.sub("---- exercises ----", text)
    out, skipping = [], False
    for line in text.splitlines(keepends=True):
        if line.startswith(ANSWER_START):
            out.append("Answer: (describe your experiment, what you saw, and why)\n\n")
            skipping = True
        elif skipping and HEADING.match(line):
            skipping = False
        if not skipping:
            out.append(line)
    return "".join(out)


def course_rules() -> str:
    """The course's rules, as the handout's README states them (section 7)."""
    sys.path.insert(0, str(ROOT / "grader"))
    import rules

    names = rules.NAMES
    text = (
        "The course's rules, which the grader reports beside your score (they score no "
        f"points; the course staff read them): {names['commits']}; {names['binary_files']} "
        f"(a NUL byte in a file's first {rules.FIRST_FEW_BYTES} bytes, as git decides: "
        "commit no .venv/, build/, grader-results/ or __pycache__/, which the handout's "
        f".gitignore leaves out); {names['readme_status']} (a line like \"Part 3: "
        f"working\" for each part, section 5); and {names['written_answers']} (5.1, 5.2).  "
        "`python3 grader/rules.py .` checks them in your repository (if the course did "
        "not hand this directory out as one, `git init` here, then commit as you go).")
    # No line break inside a command in backquotes.
    text = re.sub(r"`[^`]*`", lambda m: m.group().replace(" ", "\0"), text)
    return textwrap.fill(text, 84, break_on_hyphens=False,
                         break_long_words=False).replace("\0", " ") + "\n"


def write_handout(out: Path) -> None:
    if out.exists():
        shutil.rmtree(out)
    out.mkdir(parents=True)
    for rel in COPIED:
        src, dst = ROOT / rel, out / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    (out / "grader" / "checks.py").write_text(public_checks_source(
        (ROOT / "grader" / "checks.py").read_text(), names_used_from_checks(out)))
    (out / "README.txt").write_text(readme_without_answers((ROOT / "README.txt").read_text()))
    (out / "Makefile").write_text(makefile())
    (out / ".gitignore").write_text(GITIGNORE)


def makefile() -> str:
    """The handout's Makefile, with the public and hidden points of the checks."""
    sys.path.insert(0, str(ROOT / "grader"))
    import checks

    public = sum(c.points for c in checks.CHECKS if c.public)
    total = sum(c.points for c in checks.CHECKS)
    return (MAKEFILE.read_text().replace("@PUBLIC@", str(public))
            .replace("@TOTAL@", str(total)).replace("@HIDDEN@", str(total - public)))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path)
    ap.add_argument("--tar", type=Path, help="also pack it as this .tar.gz")
    args = ap.parse_args(argv)
    write_handout(args.out)
    if args.tar:
        with tarfile.open(args.tar, "w:gz") as tar:
            tar.add(args.out, arcname="zookeeper")
    print(f"handout: {args.out}" + (f" and {args.tar}" if args.tar else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
