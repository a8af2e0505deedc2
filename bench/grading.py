#!/usr/bin/env python3
"""Grading throughput: the grader's VM, booted to grade the reference solutions.

    python3 bench/grading.py [--count N] [--jobs J] [--json FILE]   (or within bench/run.py)

  - the VM image: its build time (done now if it is not cached; else the time its
    manifest recorded when it was built);
  - the boot-only VM: the same image booted (not the saved booted guest restored, as
    grading does) for a job that does nothing, boot to power-off: the yardstick of this
    run (the machine's speed and load included);
  - one submission: `grader/grade SUB --json FILE`, boot to power-off, every stage the
    grader checks; the submission is a clean copy of the part directories (what a
    student hands in), not the whole repository.  Its time is split into the boot (QEMU
    start to the job's start: the saved booted guest restored), the checks (first start
    to last end: the runner's lanes run them side by side; each part's own check time
    beside it), the rest of the job in the guest (copying the submission, the grader
    and the rootfs tarball, the runner between checks), the teardown (the job's end to
    QEMU's exit) and the host's share (the tarball, the job's files, the reports),
    each in seconds and as a ratio to the boot-only VM (qemu.py's boot-times.json has
    the marks);
  - N submissions with `grader/grade DIR --jobs J`: wall time, and per submission.
"""

import argparse
import contextlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import PARTS, ROOT, entry, first_line

GRADE = ROOT / "grader" / "grade"
VM = ROOT / "grader" / "vm.py"
IMAGE = "VM image build"
BOOT_ONLY = "boot-only VM (a job that does nothing)"
ONE = "boot + grade one reference submission"
BATCH = "grade N submissions with --jobs"
TARGET = 60.0  # seconds for one whole submission under TCG on the 2-core machine (issue 15)


def skipped(reason: str) -> dict:
    return {"entries": [entry(name, unit="s", reason=reason)
                        for name in (IMAGE, BOOT_ONLY, ONE, BATCH)],
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
    log("bench: grading: the boot-only VM")
    boot_only = boot_only_entry(tmp / "boot-only", timeout)
    entries = [image, boot_only]
    sub = tmp / "reference"
    submission_copy(sub)
    log(f"bench: grading: one submission in the VM (timeout {timeout:.0f} s)")
    seconds, done = timed([str(GRADE), str(sub), "--out", str(tmp / "one"),
                           "--json", str(tmp / "one.json")], timeout)
    one = one_entry(seconds, done, tmp / "one.json", timeout)
    if one["value"] is not None:  # --jobs 1: one submission after the other
        one["per_hour"] = round(3600 / seconds, 1)
        one.update(split_of(tmp / "one" / "vm", seconds, boot_only["value"]))
    entries.append(one)
    if count < 1:
        entries.append(entry(BATCH, unit="s", reason="not asked for (--count 0)"))
        return {"entries": entries, "method": __doc__.strip()}
    batch = tmp / "batch"
    for n in range(1, count + 1):
        submission_copy(batch / f"sub{n}")
    log(f"bench: grading: {count} submissions, --jobs {jobs}")
    seconds, done = timed([str(GRADE), str(batch), "--jobs", str(jobs), "--out",
                           str(tmp / "batch-out")], timeout * count)
    entries.append(batch_entry(seconds, done, count, jobs, timeout * count))
    return {"entries": entries, "method": __doc__.strip()}


def boot_only_entry(tmp: Path, timeout: float) -> dict:
    """The image booted for a job that does nothing (run.sh: exit 0), boot to power-off.
    Booted, not restored: a boot is the same work on every run, a measure of the
    machine's speed (the first restore may include saving the booted guest)."""
    sys.path.append(str(ROOT / "grader"))
    import qemu
    from image import VMError

    job = qemu.write_idle_job(tmp / "job")
    try:
        done = qemu.boot(qemu.Job(job, None, tmp / "results", timeout=timeout),
                         qemu.Machine(restore=False))
    except VMError as e:
        return entry(BOOT_ONLY, unit="s", reason=str(e))
    restored = None
    with contextlib.suppress(VMError):
        # What each graded submission starts from: the saved booted guest (saved now,
        # untimed, if it is not yet), then restored for the same job.
        for name in ("save", "restored"):
            restored = qemu.boot(qemu.Job(job, None, tmp / name, timeout=timeout))
    if not done.ok or done.job_exit_seconds is None:
        return entry(BOOT_ONLY, unit="s", reason=done.error or f"exit {done.exit_status}")
    return entry(BOOT_ONLY, done.total_seconds, "s", accel=done.accel,
                 job_start_s=round(done.boot_seconds, 1),
                 power_off_s=round(done.total_seconds - done.job_exit_seconds, 1),
                 restored_job_start_s=(round(restored.boot_seconds, 1)
                                       if restored and restored.restored
                                       and restored.boot_seconds else None))


def split(times: dict, results: list[dict], wall: float | None = None,
          boot_only: float | None = None) -> list[dict]:
    """One submission's time, from qemu.py's marks (times: seconds from QEMU's start to
    the job's start, its exit and QEMU's exit) and the runner's results (each check's
    seconds and part); wall: the whole grader/grade run.  Each share in seconds and
    as a ratio to the boot-only VM's boot to power-off (None when there is none)."""
    checks = checks_wall(results)
    shares = [("boot: QEMU start to the job's start", times["job_start"]),
              ("the checks, first start to last end", checks)]
    # The runner's lanes run checks side by side: each part's own check time, summed
    # over the lanes, is more than its share of the wall time.
    for part in sorted({r["part"] for r in results}):
        shares.append((f"part {part}'s checks (their own time)",
                       sum(r["seconds"] for r in results if r["part"] == part)))
    shares.append(("the rest of the job (copying, the runner)",
                   times["job_exit"] - times["job_start"] - checks))
    shares.append(("teardown: the job's end to QEMU's exit",
                   times["qemu_exit"] - times["job_exit"]))
    if wall is not None:
        shares.append(("on the host (tarball, job files, reports)", wall - times["qemu_exit"]))
    return [{"name": name, "seconds": round(seconds, 1),
             "ratio": round(seconds / boot_only, 2) if boot_only else None}
            for name, seconds in shares]


def checks_wall(results: list[dict]) -> float:
    """The checks' wall time: from the first one's start to the last one's end (one
    after the other, without start times: their sum).  A result without a start (a
    check that never ran: its lane's runner died) took no time of the run."""
    timed = [r for r in results if r.get("started") is not None]
    if not timed:
        return sum(r["seconds"] for r in results)
    return (max(r["started"] + r["seconds"] for r in timed)
            - min(r["started"] for r in timed))


def split_of(results_dir: Path, wall: float, boot_only: float | None) -> dict:
    """The split of a graded submission (grade's OUT/vm), as entry fields."""
    try:
        times = json.loads((results_dir / "boot-times.json").read_text())
        results = json.loads((results_dir / "results.json").read_text())
    except (OSError, ValueError) as e:
        return {"split_reason": f"no split: {e}"}
    if times.get("job_start") is None or times.get("job_exit") is None:
        return {"split_reason": f"no split: the job's marks are missing ({times})"}
    return {"split": split(times, results, wall, boot_only),
            "ratio_to_boot_only": round(wall / boot_only, 2) if boot_only else None,
            "target_s": TARGET, "target_met": wall <= TARGET}


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


def table(section: dict) -> list[str]:
    """The grading section of bench/run.py's table."""
    lines = []
    for e in section["entries"]:
        if e["reason"]:
            lines.append(f"  {e['name']:<46} {'-':>7}  {e['reason']}")
            continue
        extra = ""
        if "score" in e:
            extra = f"score {e['score']}, {e['checks']} checks"
            if e.get("per_hour"):
                extra += f", {e['per_hour']}/hour"
        elif "per_submission_s" in e:
            extra = f"{e['per_submission_s']} s per submission, {e['per_hour']}/hour"
        elif "power_off_s" in e:
            extra = f"job start {e['job_start_s']} s, power-off {e['power_off_s']} s"
            if e.get("restored_job_start_s") is not None:
                extra += f" (restored: job start {e['restored_job_start_s']} s)"
        elif e.get("how"):
            extra = e["how"]
        lines.append(f"  {e['name']:<46} {e['value']:>7.1f}s {extra}")
        if e.get("split"):
            lines += split_lines(e)
        elif e.get("split_reason"):
            lines.append(f"    {e['split_reason']}")
    return lines


def split_lines(e: dict) -> list[str]:
    ratio = e.get("ratio_to_boot_only")
    lines = [f"    where the time goes{'':<34} s   x boot-only VM"]
    for share in e["split"]:
        x = f"{share['ratio']:.2f}" if share["ratio"] is not None else "-"
        lines.append(f"    {share['name']:<48} {share['seconds']:>6.1f} {x:>8}")
    lines.append(f"    {'whole submission':<48} {e['value']:>6.1f} "
                 f"{f'{ratio:.2f}' if ratio else '-':>8}")
    verdict = "met" if e["target_met"] else "NOT met"
    lines.append(f"    target: one submission in at most {e['target_s']:.0f} s: {verdict}")
    return lines


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--count", type=int, default=2, help="submissions in the batch (0: none)")
    ap.add_argument("--jobs", type=int, default=2, help="grader/grade --jobs for the batch")
    ap.add_argument("--timeout", type=float, default=1800, help="per submission")
    ap.add_argument("--json", type=Path, default=ROOT / "build" / "bench-grading.json")
    ap.add_argument("--keep", type=Path, help="grade in this new directory and keep it")
    args = ap.parse_args(argv)
    tmp = args.keep or Path(tempfile.mkdtemp(prefix="zk-grading-"))
    try:
        results = run(tmp, args.count, args.jobs, args.timeout,
                      log=lambda text: print(text, file=sys.stderr, flush=True))
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    results["load_after"] = os.getloadavg()[0]
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print("Grading throughput (grader VM)\n" + "\n".join(table(results)))
    print(f"bench: results in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
