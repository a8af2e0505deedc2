"""Grading throughput: the grader's VM, booted to grade the reference solutions.

  - the VM image: its build time (done now if it is not cached; else the time its
    manifest recorded when it was built);
  - one submission: `grader/grade SUB --json FILE`, boot to power-off, every stage the
    grader checks; the submission is a clean copy of the part directories (what a
    student hands in), not the whole repository;
  - N submissions with `grader/grade DIR --jobs J`: wall time, and per submission.
"""

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

from common import PARTS, ROOT, entry, first_line

GRADE = ROOT / "grader" / "grade"
VM = ROOT / "grader" / "vm.py"
IMAGE = "VM image build"
ONE = "boot + grade one reference submission"
BATCH = "grade N submissions with --jobs"


def skipped(reason: str) -> dict:
    return {"entries": [entry(name, unit="s", reason=reason) for name in (IMAGE, ONE, BATCH)],
            "method": __doc__.strip()}


def submission_copy(dest: Path) -> None:
    dest.mkdir(parents=True)
    for name in PARTS.values():
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))


def timed(argv: list[str], timeout: float) -> tuple[float, subprocess.CompletedProcess | None]:
    started = time.monotonic()
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout,
                              stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        return time.monotonic() - started, None
    return time.monotonic() - started, done


def image_entry(timeout: float) -> dict:
    _, info = timed([sys.executable, str(VM), "info"], 120)
    if info is None or info.returncode != 0:
        why = first_line(info.stderr if info else "", "grader/vm.py info failed")
        return entry(IMAGE, unit="s", reason=f"grader/vm.py info: {why}")
    fields = dict(re.findall(r"^(\w+):\s+(.*)$", info.stdout, re.M))
    if fields.get("image", "").startswith("not built"):
        seconds, done = timed([sys.executable, str(VM), "build"], timeout)
        if done is None or done.returncode != 0:
            why = first_line((done.stderr or done.stdout) if done else "",
                             f"timed out after {timeout:.0f} s")
            return entry(IMAGE, unit="s", reason=f"grader/vm.py build: {why}")
        return entry(IMAGE, seconds, "s", how="built now", accel=fields.get("accel"))
    try:
        built = float(fields.get("build_seconds", ""))
    except ValueError:
        return entry(IMAGE, unit="s", reason="cached; its manifest has no build time")
    return entry(IMAGE, built, "s", how=f"cached, built {fields.get('built', '?')} "
                 "(time from its manifest)", accel=fields.get("accel"))


def run(tmp: Path, count: int, jobs: int, timeout: float, log=print) -> dict:
    for path in (GRADE, VM):
        if not path.exists():
            return skipped(f"{path.relative_to(ROOT)} is not there yet")
    if not os.access(GRADE, os.X_OK):
        return skipped("grader/grade is not executable")
    log("bench: grading: the VM image")
    image = image_entry(timeout)
    if image["reason"]:
        out = skipped(f"no VM image: {image['reason']}")
        out["entries"][0] = image
        return out
    entries = [image]
    sub = tmp / "reference"
    submission_copy(sub)
    log(f"bench: grading: one submission in the VM (timeout {timeout:.0f} s)")
    seconds, done = timed([str(GRADE), str(sub), "--out", str(tmp / "one"),
                           "--json", str(tmp / "one.json")], timeout)
    entries.append(one_entry(seconds, done, tmp / "one.json", timeout))
    batch = tmp / "batch"
    for n in range(1, count + 1):
        submission_copy(batch / f"sub{n}")
    log(f"bench: grading: {count} submissions, --jobs {jobs}")
    seconds, done = timed([str(GRADE), str(batch), "--jobs", str(jobs), "--out",
                           str(tmp / "batch-out")], timeout * count)
    entries.append(batch_entry(seconds, done, count, jobs, timeout * count))
    return {"entries": entries, "method": __doc__.strip()}


def one_entry(seconds: float, done, results: Path, timeout: float) -> dict:
    if done is None:
        return entry(ONE, unit="s", reason=f"did not finish in {timeout:.0f} s")
    score = re.search(r"^Score: (\d+)/(\d+)", done.stdout, re.M)
    if done.returncode == 2 or not score:
        return entry(ONE, unit="s", reason="grader/grade: " + first_line(
            done.stderr or done.stdout, f"exit status {done.returncode}"))
    boot = re.search(r"boot to first check ([\d.]+)s", done.stdout + done.stderr)
    tests = []
    if results.exists():
        tests = json.loads(results.read_text()).get("tests", [])
    failed = [t["name"] for t in tests if t.get("score", 0) < t.get("max_score", 0)]
    if score[1] != score[2]:
        return entry(ONE, unit="s", reason=f"the references scored {score[1]}/{score[2]}"
                     + (f" (lost: {', '.join(failed)})" if failed else ""))
    return entry(ONE, seconds, "s", score=f"{score[1]}/{score[2]}", checks=len(tests),
                 boot_to_first_check_s=float(boot[1]) if boot else None,
                 checks_lost=failed)


def batch_entry(seconds: float, done, count: int, jobs: int, timeout: float) -> dict:
    name = BATCH.replace("N", str(count)).replace("--jobs", f"--jobs {jobs}")
    if done is None:
        return entry(name, unit="s", reason=f"did not finish in {timeout:.0f} s")
    scores = re.findall(r"^(sub\d+): (\d+)/(\d+) \((.*)\)$", done.stdout, re.M)
    if done.returncode != 0 or len(scores) != count:
        return entry(name, unit="s", reason="grader/grade: " + first_line(
            done.stderr or done.stdout, f"exit status {done.returncode}"))
    # Every submission is a copy of the references: anything short of full marks means
    # the grading went wrong, and its time is no throughput.
    wrong = [f"{s}: {a}/{b} ({status})" for s, a, b, status in scores
             if a != b or status != "ok"]
    if wrong:
        return entry(name, unit="s", reason="not every reference graded in full: "
                     + "; ".join(wrong))
    return entry(name, seconds, "s", submissions=count, jobs=jobs,
                 per_submission_s=round(seconds / count, 1),
                 per_hour=round(3600 * count / seconds, 1),
                 scores={s: f"{a}/{b} ({status})" for s, a, b, status in scores})
