#!/usr/bin/env python3
"""Write the student handout: what a student gets, and nothing a student must not see.

    handout.py OUT_DIR [--tar FILE.tar.gz]

In: skeleton/, README.txt without the written experiments' answers and without the
maintainers' sections, the rootfs builder, the demo, the set-up (check-deps.sh), a
Makefile of the student's targets, and the grader with only its public checks
(`make check` runs them, in the grader's VM or with --local).  Out: the reference parts,
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
          "grader/rules.py", "grader/subids.py",
          "grader/vm.py", "grader/image.py", "grader/qemu.py", "grader/guest", "grader/helpers"]
ANSWER_START = "Answer."
HEADING = re.compile(r"^\d+(\.\d+)*[. ]")
MAINTAINERS_HEADING = "9. For instructors and maintainers"

MAKEFILE = """\
# zookeeper, the student's tree.  Copy skeleton/ into part1_clone/ to start.
#
# Every Python this Makefile runs is the venv $(VENV): `make setup` (which the other
# targets run first) installs what is missing: Debian packages, the venv.
VENV   ?= .venv
PYTHON ?= $(VENV)/bin/python3
BUILD  ?= build
ROOTFS ?= $(BUILD)/zoo-fs
PART   ?= 6
SETUP   = VENV=$(VENV) sh tools/check-deps.sh --install
# A VM image the course staff published: make check VM_IMAGE=URL-or-FILE VM_SHA256=HASH
VM_IMAGE  ?=
VM_SHA256 ?=

.PHONY: help setup check-deps demo rootfs rootfs-reset rootfs-debian rootfs-debian-reset \\
\tcheck diff clean

help:
\t@echo "make demo           set up (packages, venv, rootfs), run a container of your newest part"
\t@echo "make setup          install what is missing: Debian packages (sudo apt-get), $(VENV)"
\t@echo "make check-deps     only say what is missing, install nothing"
\t@echo "make rootfs         build $(BUILD)/zoo-fs.tar, unpack it into $(ROOTFS) (as you) if absent"
\t@echo "make rootfs-reset   unpack $(ROOTFS) afresh: your changes in it are lost"
\t@echo "make rootfs-debian  a Debian minbase rootfs in $(BUILD)/zoo-fs-debian (root or mmdebstrap)"
\t@echo "make rootfs-debian-reset  unpack $(BUILD)/zoo-fs-debian afresh"
\t@echo "make check          the grader's public checks: in its VM, or here (--local) without one"
\t@echo "make diff PART=N    what your part N adds to your part N-1"
\t@echo "make clean          remove $(BUILD) (your rootfs too; the venv stays)"

setup:
\t@$(SETUP) rootfs run

check-deps:
\t@VENV=$(VENV) sh tools/check-deps.sh rootfs run

# `| setup`: set up first, without making the tarball out of date each time.
$(BUILD)/zoo-fs.tar: tools/mkrootfs.py | setup
\t@mkdir -p $(BUILD)
\t$(PYTHON) tools/mkrootfs.py busybox $@

# The rootfs is yours once unpacked (`apt install cowsay` stays): --keep unpacks it
# only when it is absent.  rootfs-reset starts afresh.
rootfs: $(BUILD)/zoo-fs.tar
\t$(PYTHON) tools/mkrootfs.py unpack --keep $(BUILD)/zoo-fs.tar $(ROOTFS)

rootfs-reset: $(BUILD)/zoo-fs.tar
\t$(PYTHON) tools/mkrootfs.py unpack --force $(BUILD)/zoo-fs.tar $(ROOTFS)

$(BUILD)/zoo-fs-debian.tar: tools/mkrootfs.py | setup
\t@$(SETUP) rootfs-debian
\t@mkdir -p $(BUILD)
\t$(PYTHON) tools/mkrootfs.py debian $@

rootfs-debian: $(BUILD)/zoo-fs-debian.tar
\t$(PYTHON) tools/mkrootfs.py unpack --keep $(BUILD)/zoo-fs-debian.tar $(BUILD)/zoo-fs-debian

rootfs-debian-reset: $(BUILD)/zoo-fs-debian.tar
\t$(PYTHON) tools/mkrootfs.py unpack --force $(BUILD)/zoo-fs-debian.tar $(BUILD)/zoo-fs-debian

demo: setup rootfs
\t@PYTHON=$(PYTHON) sh tools/demo.sh $(ROOTFS)

# In the grader's VM when its image is here or can be had (imported from VM_IMAGE, or
# built as you: ~2 minutes, once); else on this machine (--local), saying why.
# The grader's VM is this machine's architecture: x86_64 or aarch64 (arm64).
QEMU = qemu-system-$(shell uname -m)
QEMU_PACKAGE = $(if $(filter aarch64,$(shell uname -m)),qemu-system-arm,qemu-system-x86)

check: | setup
\t@mkdir -p $(BUILD)
\t@why=""; \\
\tif ! command -v $(QEMU) >/dev/null; then \\
\t    why="no $(QEMU) here: sudo apt-get install $(QEMU_PACKAGE)"; \\
\telif [ -n "$(VM_IMAGE)" ] && ! $(PYTHON) grader/vm.py import "$(VM_IMAGE)" \\
\t        --sha256 "$(VM_SHA256)" > $(BUILD)/vm.log 2>&1; then \\
\t    why=$$(tail -n 1 $(BUILD)/vm.log); \\
\telse \\
\t    echo "make check: the grader's VM image (grader/vm.py build, log in $(BUILD)/vm.log)"; \\
\t    $(PYTHON) grader/vm.py build > $(BUILD)/vm.log 2>&1 || why=$$(tail -n 1 $(BUILD)/vm.log); \\
\tfi; \\
\tif [ -z "$$why" ]; then \\
\t    $(PYTHON) grader/grade . --public; status=$$?; \\
\telse \\
\t    echo "make check: no VM ($$why): the public checks run on this machine (--local)"; \\
\t    $(PYTHON) grader/grade . --local --public; status=$$?; \\
\tfi; \\
\techo "make check: these are the public checks, @PUBLIC@ of the course's @TOTAL@" \\
\t    "points; the hidden checks' @HIDDEN@ are graded after the deadline"; \\
\texit $$status

diff:
\t@test $(PART) -ge 2 -a $(PART) -le 6 || { echo "make diff PART=N with N in 2..6"; exit 2; }
\t@diff -ruN --exclude=__pycache__ $(wildcard part$(shell expr $(PART) - 1)_*) \\
\t\t$(firstword $(wildcard part$(PART)_*)) || true

clean:
\trm -rf $(BUILD)
"""

# What the repo's README says of tools the handout does not have: the maintainers'
# tests and the benchmarks (section 8, up to the maintainers' section).
REPO_ONLY_TEST = """\
    sudo make test     installs the test dependencies (system packages, a venv in
                       /opt/zookeeper-venv, a test user `zootest` with a subuid range),
                       then runs ruff, the generator check and every test, including
                       the grader's VM tests (the VM image is built once, ~2 minutes,
                       and cached in ~/.cache/zookeeper) and the arm64 guest's (its
                       image ~4 minutes, all six parts graded in ~3)
"""
HANDOUT_TEST = """\
    make check         the grader's public checks on your parts, as you: in the
                       grader's VM, or on this machine when it has none (section 7)
"""
# The exercise table's markers name the generator, which the handout does not have.
EXERCISES_MARKER = re.compile(r"^---- exercises: generated by .*----$", re.M)
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
    (out / "Makefile").write_text(makefile())


def makefile() -> str:
    """The handout's Makefile, with the public and hidden points of the checks."""
    sys.path.insert(0, str(ROOT / "grader"))
    import checks

    public = sum(c.points for c in checks.CHECKS if c.public)
    total = sum(c.points for c in checks.CHECKS)
    return (MAKEFILE.replace("@PUBLIC@", str(public)).replace("@TOTAL@", str(total))
            .replace("@HIDDEN@", str(total - public)))


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
