#!/usr/bin/env python3
"""Stable grades: the references graded again and again score full marks every time,
and no check is near its time limit.

    python3 bench/stability.py [--runs 10] [--jobs 1] [--part N]... [--out DIR]

Grades RUNS copies of the references as one class (grader/grade CLASS --jobs J: with
--jobs 2, two VMs at once on this machine) and reports, from each copy's
grading.json: every copy's score, and for each check the spread of its time (min,
median, max) against its limits, as the runner recorded them: the check's own
(its timeout times the accelerator's scale) and its slowest command's.  Headroom is
limit / slowest run; the grader wants at least 3 (README 9.4).  Also, as
bench/grading.py splits one submission: where each copy's time went (boot, each
part's checks, the rest of the job, teardown, the host's share; the median over the
copies, in seconds and as a ratio to a boot-only VM booted first), and the class's
submissions per hour.

Writes OUT/stability.txt and OUT/stability.json.  Exit status 0 when every copy
scored full marks and every headroom is at least 3, 1 when not, 2 when the grading
itself failed.
"""

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import grading
from common import PARTS, ROOT

HEADROOM = 3.0


def class_of_copies(class_dir: Path, runs: int) -> list[str]:
    """class_dir/refNN: RUNS copies of the six references."""
    if class_dir.exists():
        shutil.rmtree(class_dir)
    names = [f"ref{i + 1:02d}" for i in range(runs)]
    for name in names:
        for part in PARTS.values():
            shutil.copytree(ROOT / part, class_dir / name / part,
                            ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["chmod", "-R", "a+rX", str(class_dir)], check=True)
    return names


def spread(records: dict[str, list[dict]]) -> list[dict]:
    """Per check, over every copy: its times and its tightest limits."""
    by_check: dict[str, list[dict]] = {}
    for results in records.values():
        for r in results:
            by_check.setdefault(r["id"], []).append(r)
    rows = []
    for check_id, runs in by_check.items():
        seconds = [r["seconds"] for r in runs]
        limit = min((r.get("limit") or 0) for r in runs)
        commands = [r.get("slowest_command") for r in runs if r.get("slowest_command")]
        tightest = max(commands, key=lambda c: c["seconds"] / c["limit"], default=None)
        headrooms = [limit / max(seconds)] if limit and max(seconds) else []
        if tightest and tightest["seconds"]:
            headrooms.append(tightest["limit"] / tightest["seconds"])
        rows.append({"id": check_id, "runs": len(runs),
                     "passed": sum(r["status"] == "ok" for r in runs),
                     "min": min(seconds), "median": statistics.median(seconds),
                     "max": max(seconds), "limit": limit, "slowest_command": tightest,
                     "headroom": round(min(headrooms), 1) if headrooms else None})
    return rows


def time_split(graded: Path, names: list[str], boot_only: float | None) -> list[dict]:
    """Each share of a submission's time (grading.split) over the copies: min, median,
    max, and the median's ratio to the boot-only VM."""
    shares: dict[str, list[float]] = {}
    for name in names:
        try:
            times = json.loads((graded / name / "vm" / "boot-times.json").read_text())
            results = json.loads((graded / name / "vm" / "results.json").read_text())
            wall = json.loads((graded / name / "grading.json").read_text())["seconds"]
        except (OSError, ValueError, KeyError):
            continue
        if times.get("job_start") is None or times.get("job_exit") is None:
            continue
        for share in grading.split(times, results, wall):
            shares.setdefault(share["name"], []).append(share["seconds"])
        shares.setdefault("whole submission", []).append(wall)
    return [{"name": name, "copies": len(seconds), "min": min(seconds),
             "median": round(statistics.median(seconds), 1), "max": max(seconds),
             "ratio": round(statistics.median(seconds) / boot_only, 2) if boot_only else None}
            for name, seconds in shares.items()]


def split_text(shares: list[dict], boot_only: dict, per_hour: float) -> str:
    lines = [f"  {'where the time of a submission goes (s)':<44} {'min':>6} {'median':>7} "
             f"{'max':>6}  x boot-only VM"]
    for r in shares:
        ratio = f"{r['ratio']:.2f}" if r["ratio"] is not None else "-"
        lines.append(f"  {r['name']:<44} {r['min']:>6.1f} {r['median']:>7.1f} "
                     f"{r['max']:>6.1f}  {ratio:>8}")
    said = (f"{boot_only['value']:.1f} s" if boot_only["value"] is not None
            else boot_only["reason"])
    lines += [f"  boot-only VM (booted first): {said}",
              f"  submissions per hour: {per_hour:.1f}"]
    return "\n".join(lines) + "\n"


def text(scores: dict[str, str], rows: list[dict], jobs: int) -> str:
    lines = [f"The references graded {len(scores)} times, --jobs {jobs}:", ""]
    lines += [f"  {name}: {score}" for name, score in scores.items()]
    lines += ["", f"  {'check':<26} {'passed':>7} {'min':>6} {'median':>7} {'max':>6} "
              f"{'limit':>6}  slowest command (limit)   headroom"]
    for r in rows:
        c = r["slowest_command"]
        command = f"{c['seconds']:.1f} s ({c['limit']:.0f} s)" if c else "-"
        lines.append(f"  {r['id']:<26} {r['passed']:>3}/{r['runs']:<3} {r['min']:>6.1f} "
                     f"{r['median']:>7.1f} {r['max']:>6.1f} {r['limit']:>6.0f}  "
                     f"{command:<25} {r['headroom'] if r['headroom'] else '-':>8}")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--jobs", type=int, default=1)
    ap.add_argument("--part", type=int, action="append", choices=range(1, 7))
    ap.add_argument("--out", default=str(ROOT / "build" / "stability"))
    args = ap.parse_args(argv)
    out = Path(args.out).resolve()
    names = class_of_copies(out / "class", args.runs)
    if (out / "boot-only").exists():
        shutil.rmtree(out / "boot-only")
    boot_only = grading.boot_only_entry(out / "boot-only", 600)
    argv = [sys.executable, str(ROOT / "grader" / "grade"), str(out / "class"),
            "--out", str(out / "graded"), "--jobs", str(args.jobs)]
    for part in args.part or []:
        argv += ["--part", str(part)]
    started = time.monotonic()
    status = subprocess.run(argv).returncode
    per_hour = 3600 * len(names) / (time.monotonic() - started)
    records, scores = {}, {}
    for name in names:
        try:
            record = json.loads((out / "graded" / name / "grading.json").read_text())
        except (OSError, ValueError):
            scores[name] = "not graded"
            continue
        results = record["results"]
        records[name] = results
        got, full = sum(r["score"] for r in results), sum(r["max_score"] for r in results)
        scores[name] = f"{got}/{full} ({record['status']}, {record.get('seconds', '?')} s)"
    rows = spread(records)
    shares = time_split(out / "graded", names, boot_only["value"])
    report = text(scores, rows, args.jobs) + "\n" + split_text(shares, boot_only, per_hour)
    (out / "stability.txt").write_text(report)
    (out / "stability.json").write_text(json.dumps(
        {"scores": scores, "checks": rows, "jobs": args.jobs, "boot_only": boot_only,
         "split": shares, "per_hour": round(per_hour, 1)}, indent=1))
    print(report, end="")
    if status not in (0, 1) or len(records) < len(names):
        return 2
    full = all(r["passed"] == r["runs"] for r in rows)
    roomy = all(r["headroom"] is not None and r["headroom"] >= HEADROOM for r in rows)
    return 0 if full and roomy else 1


if __name__ == "__main__":
    sys.exit(main())
