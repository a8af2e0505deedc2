#!/usr/bin/env python3
"""Write the student handout: what a student gets, and nothing a student must not see.

    handout.py OUT_DIR [--tar FILE.tar.gz]

In: skeleton/, README.txt without the written experiments' answers and without the
maintainers' section, the rootfs builder, the demo, and the grader with only its
public checks (students run it with --local --public).  Out: the reference parts,
src/, the hidden checks, the answers, this repo's tests.
"""

import argparse
import ast
import re
import shutil
import sys
import tarfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

COPIED = ["skeleton", "requirements.txt", "tools/mkrootfs.py", "tools/check-deps.sh",
          "tools/demo.sh", "grader/grade", "grader/runner.py", "grader/report.py",
          "grader/vm.py", "grader/guest", "grader/helpers"]
ANSWER_START = "Answer."
HEADING = re.compile(r"^\d+(\.\d+)*[. ]")
MAINTAINERS_HEADING = "9. For instructors and maintainers"

MAKEFILE = """\
# zookeeper, the student's tree.  Copy skeleton/ into part1_clone/ to start.
PYTHON ?= python3
BUILD  ?= build
ROOTFS ?= $(BUILD)/zoo-fs

.PHONY: help demo rootfs rootfs-debian check-deps check diff
PART   ?= 6
help:
\t@echo "make rootfs   build $(BUILD)/zoo-fs.tar and unpack it into $(ROOTFS) (as you)"
\t@echo "make demo     run a container from your newest part"
\t@echo "make check    the grader's public checks on this machine (grader/grade . --local --public)"
\t@echo "make diff PART=N   what your part N adds to your part N-1"

check-deps:
\t@sh tools/check-deps.sh rootfs run

$(BUILD)/zoo-fs.tar: tools/mkrootfs.py
\t@sh tools/check-deps.sh rootfs
\t@mkdir -p $(BUILD)
\t$(PYTHON) tools/mkrootfs.py busybox $@

rootfs: $(BUILD)/zoo-fs.tar
\t$(PYTHON) tools/mkrootfs.py unpack --force $(BUILD)/zoo-fs.tar $(ROOTFS)

$(BUILD)/zoo-fs-debian.tar: tools/mkrootfs.py
\t@mkdir -p $(BUILD)
\t$(PYTHON) tools/mkrootfs.py debian $@

rootfs-debian: $(BUILD)/zoo-fs-debian.tar
\t$(PYTHON) tools/mkrootfs.py unpack --force $(BUILD)/zoo-fs-debian.tar $(BUILD)/zoo-fs-debian

demo: check-deps rootfs
\t@sh tools/demo.sh $(ROOTFS)

check:
\tgrader/grade . --local --public

diff:
\t@test $(PART) -ge 2 -a $(PART) -le 6 || { echo "make diff PART=N with N in 2..6"; exit 2; }
\t@diff -ru --exclude=__pycache__ $(wildcard part$(shell expr $(PART) - 1)_*) \\
\t\t$(firstword $(wildcard part$(PART)_*)) || true
"""

# What the repo's README says of tools the handout does not have: the maintainers'
# tests and the benchmarks (section 8, up to the maintainers' section).
REPO_ONLY_TEST = """\
    sudo make test     installs the test dependencies (system packages, a venv in
                       /opt/zookeeper-venv, a test user `zootest` with a subuid range),
                       then runs ruff, the generator check and every test, including
                       the grader's VM tests (the VM image is built once, ~2 minutes,
                       and cached in ~/.cache/zookeeper)
"""
HANDOUT_TEST = """\
    make check         the grader's public checks on this machine, as you
                       (grader/grade . --local --public; section 7)
"""
BENCHMARKS_HEADING = "8. Benchmarks"


def public_checks_source(text: str) -> str:
    """checks.py without the hidden checks (the functions registered public=False)."""
    tree = ast.parse(text)
    lines = text.splitlines(keepends=True)
    drop = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and any(is_hidden(d) for d in node.decorator_list):
            start = min(d.lineno for d in node.decorator_list) - 1
            drop.append((start, node.end_lineno))
    for start, end in reversed(drop):
        del lines[start:end]
    return re.sub(r"\n{4,}", "\n\n\n", "".join(lines))


def is_hidden(decorator) -> bool:
    return (isinstance(decorator, ast.Call) and getattr(decorator.func, "id", "") == "check"
            and any(k.arg == "public" and isinstance(k.value, ast.Constant)
                    and k.value.value is False for k in decorator.keywords))


def readme_without_answers(text: str) -> str:
    """The handout's README: each answer (from "Answer." to the next numbered heading)
    becomes a place for the student's, and the maintainers' section goes."""
    if MAINTAINERS_HEADING in text:
        text = text.split(MAINTAINERS_HEADING)[0].rstrip() + "\n"
    if BENCHMARKS_HEADING in text:
        text = text.split(BENCHMARKS_HEADING)[0].rstrip() + "\n"
    text = text.replace(REPO_ONLY_TEST, HANDOUT_TEST)
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
    (out / "grader" / "checks.py").write_text(
        public_checks_source((ROOT / "grader" / "checks.py").read_text()))
    (out / "README.txt").write_text(readme_without_answers((ROOT / "README.txt").read_text()))
    (out / "Makefile").write_text(MAKEFILE)


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
