#!/usr/bin/env python3
"""The mutation suite: mistakes students make, applied to the references and graded.

    tools/mutate.py list                     the mutants, by stage and exercise
    tools/mutate.py check                    every mutant still applies to the references
    tools/mutate.py build DIR [--fast] [--id ID]...
                                             the graded submissions, without grading them
    tools/mutate.py run [--out DIR] [--fast] [--id ID]... [--jobs N]
                        [--local [--user NAME] [--nosub-user NAME]]
                                             build, grade (grader/grade), report

The mistakes are data, one file per stage: tools/mutants/stageN.py, whose MUTANTS is
a list of literals (read with ast.literal_eval, never run).  Each is an edit of one
file of the reference that introduces the exercise: a dict with `id`, `exercise`,
`file`, `why`, and `edit`, a list of (old, new) text pairs; each `old` must occur
exactly once.  A mistake that cannot behave differently from
the reference says why in `equivalent = "..."`: it is listed, never graded, and not
counted.  `fast = true` marks the mutants CI grades (one per stage).

How they are graded: a mutant is applied to its own stage's part only, and mutants of
different stages share a submission (the first of each stage in one, the second in
the next, ...): each part's checks run only that part's program, so one VM boot grades
up to six mutants; submissions are grouped by the stages they hold, and each group is
graded with only those stages' checks.  A mutant is caught when a check of its own
stage fails; a check that errs or cannot run here does not count either way.  With
--control (the default for a full run) the unchanged references are graded in the
same run, and a check that fails them too catches nothing.

The report (OUT/report.txt and OUT/report.json) says, for each mutant, caught or not
and by which checks.  Exit status: 0 when at least 95% of the graded mutants are
caught, every stage-4 mutant among them, and the control scored full marks; 1 when
not; 2 when the grading itself failed.
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import pwd
import re
import shutil
import subprocess
import sys
from pathlib import Path

from generate import PARTS

ROOT = Path(__file__).resolve().parent.parent
MUTANTS = ROOT / "tools" / "mutants"
GRADE = ROOT / "grader" / "grade"
TARGET = 0.95          # the share of graded mutants the checks must catch
ALL_CAUGHT_STAGES = {4}  # stages whose every mutant must be caught
CONTROL = "control"    # the unchanged references, graded beside the mutants


class MutantError(Exception):
    """A mutant that no longer applies, or a malformed data file."""


def part_dirs() -> dict[int, Path]:
    """The references: stage number -> ROOT/partN_name."""
    return {stage: ROOT / name for stage, name in PARTS.items()}


def read_mutants(path: Path) -> list:
    """The MUTANTS list a data file assigns, as literals (the file is never run)."""
    try:
        tree = ast.parse(path.read_text(), str(path))
        for node in tree.body:
            if isinstance(node, ast.Assign) and [getattr(t, "id", "") for t in
                                                 node.targets] == ["MUTANTS"]:
                return ast.literal_eval(node.value)
    except (SyntaxError, ValueError) as e:
        raise MutantError(f"{path.name}: {e}") from None
    raise MutantError(f"{path.name}: no MUTANTS = [...] in it")


def load(directory: Path = MUTANTS) -> list[dict]:
    """Every mutant of every stageN.py, in file order, each with its `stage`."""
    mutants, seen = [], set()
    for path in sorted(directory.glob("stage[1-6].py")):
        stage = int(path.stem[-1])
        for m in read_mutants(path):
            where = f"{path.name}: mutant {m.get('id', '?')}"
            missing = [k for k in ("id", "exercise", "file", "why") if not m.get(k)]
            if missing or not (m.get("edit") or m.get("equivalent")):
                raise MutantError(f"{where}: needs id, exercise, file, why and an edit "
                                  f"(missing: {', '.join(missing) or 'edit'})")
            if not re.fullmatch(r"[a-z0-9][a-z0-9-]*", m["id"]) or m["id"] in seen:
                raise MutantError(f"{where}: ids are unique, lower-case words and dashes")
            seen.add(m["id"])
            mutants.append(dict(m, stage=stage))
    return mutants


def mutated_text(mutant: dict, text: str) -> str:
    """text with the mutant's edits applied, in order; each `old` exactly once."""
    for old, new in mutant.get("edit", []):
        count = text.count(old)
        if count != 1:
            first = old.strip().splitlines()[0] if old.strip() else "''"
            raise MutantError(f"mutant {mutant['id']}: {mutant['file']} of part "
                              f"{mutant['stage']} holds {first!r}... {count} times, not once")
        text = text.replace(old, new)
    return text


def apply(mutant: dict, part_dir: Path) -> None:
    """Edit the mutant's file in a copy of its stage's part."""
    path = part_dir / mutant["file"]
    if not path.is_file():
        raise MutantError(f"mutant {mutant['id']}: no {mutant['file']} in part "
                          f"{mutant['stage']}")
    path.write_text(mutated_text(mutant, path.read_text()))


def check_all(mutants: list[dict]) -> list[str]:
    """What does not apply any more (empty when every graded mutant applies)."""
    parts, problems = part_dirs(), []
    for m in mutants:
        if m.get("equivalent") and not m.get("edit"):
            continue
        try:
            path = parts[m["stage"]] / m["file"]
            if not path.is_file():
                raise MutantError(f"mutant {m['id']}: no {m['file']} in part {m['stage']}")
            if mutated_text(m, path.read_text()) == path.read_text():
                raise MutantError(f"mutant {m['id']}: its edits change nothing")
        except MutantError as e:
            problems.append(str(e))
    return problems


def chosen(mutants: list[dict], ids=None, fast=False) -> list[dict]:
    """The mutants a run grades: not equivalent; only --id's, or only the fast ones."""
    graded = [m for m in mutants if not m.get("equivalent")]
    if ids:
        unknown = set(ids) - {m["id"] for m in mutants}
        if unknown:
            raise MutantError(f"no mutant {sorted(unknown)[0]}")
        graded = [m for m in graded if m["id"] in ids]
    if fast:
        graded = [m for m in graded if m.get("fast")]
    return graded


def rounds(mutants: list[dict]) -> list[dict[int, dict]]:
    """Mutants packed into submissions: stage -> mutant, at most one per stage each."""
    by_stage: dict[int, list[dict]] = {}
    for m in mutants:
        by_stage.setdefault(m["stage"], []).append(m)
    count = max((len(v) for v in by_stage.values()), default=0)
    return [{s: ms[i] for s, ms in by_stage.items() if i < len(ms)} for i in range(count)]


def round_name(index: int) -> str:
    return f"round{index + 1:02d}"


def group_name(stages) -> str:
    """Where submissions that hold mutants of these stages go: "stages-146"."""
    return "stages-" + "".join(map(str, sorted(stages)))


def build(mutants: list[dict], class_dir: Path, control: bool) -> list[dict[int, dict]]:
    """class_dir/stages-SSS/roundNN/: the six references, with one mutant in each of
    stages SSS's parts; submissions are grouped by those stages, so that each group is
    graded with only its stages' checks.  The control goes with the first round's."""
    parts = part_dirs()
    if class_dir.exists():
        shutil.rmtree(class_dir)
    packed = rounds(mutants)
    names = [round_name(i) for i in range(len(packed))] + [CONTROL] * control
    for name, members in zip(names, packed + [packed[0] if packed else {}] * control):
        group = class_dir / group_name(members)
        for stage, source in parts.items():
            dest = group / name / source.name
            shutil.copytree(source, dest, ignore=shutil.ignore_patterns("__pycache__"))
            if stage in members and name != CONTROL:
                apply(members[stage], dest)
    subprocess.run(["chmod", "-R", "a+rX", str(class_dir)], check=True)
    return packed


def graded_results(out: Path, name: str) -> tuple[list[dict] | None, str]:
    """A student's results and status from grader/grade's OUT/NAME/grading.json."""
    try:
        record = json.loads((out / name / "grading.json").read_text())
        return record["results"], record["status"]
    except (OSError, ValueError, KeyError):
        return None, "no grading.json: not graded"


def verdicts(packed, out: Path, control: bool) -> tuple[list[dict], list[str]]:
    """One row per mutant (caught, by which checks) and the control's failures."""
    spoiled = set()
    control_failures = []
    if control:
        results, status = graded_results(out, CONTROL)
        if results is None:
            control_failures.append(status)
        for r in results or []:
            if r["status"] != "ok":
                spoiled.add(r["id"])
                control_failures.append(f"{r['id']}: {r['status']}: "
                                        f"{r['message'].splitlines()[0] if r['message'] else ''}")
    rows = []
    for i, members in enumerate(packed):
        results, status = graded_results(out, round_name(i))
        for stage, m in sorted(members.items()):
            own = [r for r in results or [] if r["part"] == stage]
            failed = [r["id"] for r in own if r["status"] == "fail" and r["id"] not in spoiled]
            unsure = [f"{r['id']} {r['status']}" for r in own
                      if r["status"] in ("error", "not run") or r["id"] in spoiled]
            rows.append({"id": m["id"], "stage": stage, "exercise": m["exercise"],
                         "why": m["why"], "submission": round_name(i),
                         "graded": any(r["status"] in ("ok", "fail") for r in own),
                         "caught": bool(failed), "by": failed, "unsure": unsure,
                         "status": status})
    return rows, control_failures


def summary(rows: list[dict], control_failures: list[str], equivalent: list[dict]) -> dict:
    graded = [r for r in rows if r["graded"]]
    caught = [r for r in graded if r["caught"]]
    missed_all_caught = [r["id"] for r in graded
                         if r["stage"] in ALL_CAUGHT_STAGES and not r["caught"]]
    share = len(caught) / len(graded) if graded else 0.0
    return {"graded": len(graded), "caught": len(caught), "share": round(share, 4),
            "not_graded": [r["id"] for r in rows if not r["graded"]],
            "missed": [r["id"] for r in graded if not r["caught"]],
            "missed_in_stages_all_caught": missed_all_caught,
            "equivalent": [m["id"] for m in equivalent],
            "control_failures": control_failures,
            "met": bool(graded) and share >= TARGET and not missed_all_caught
            and not control_failures and len(graded) == len(rows)}


def text_report(rows: list[dict], total: dict, equivalent: list[dict]) -> str:
    lines = ["The mutation suite: each mistake graded by its own stage's checks", ""]
    for r in rows:
        verdict = ("caught by " + ", ".join(r["by"]) if r["caught"]
                   else "NOT GRADED: " + r["status"] if not r["graded"] else "MISSED")
        lines.append(f"  stage {r['stage']} {r['exercise']:<8} {r['id']:<32} {verdict}")
        if r["unsure"]:
            lines.append(f"      (not counted: {', '.join(r['unsure'])})")
        if not r["caught"]:
            lines.append(f"      {r['why']}")
    for m in equivalent:
        lines.append(f"  stage {m['stage']} {m['exercise']:<8} {m['id']:<32} equivalent: "
                     f"{m['equivalent']}")
    lines += ["", f"Caught {total['caught']} of {total['graded']} graded mutants "
              f"({100 * total['share']:.1f}%; the target is {100 * TARGET:.0f}%, every "
              f"stage-{'/'.join(map(str, sorted(ALL_CAUGHT_STAGES)))} one among them); "
              f"{len(equivalent)} equivalent, not counted."]
    if total["control_failures"]:
        lines.append("The unchanged references lost points in this run (those checks catch "
                     "nothing): " + "; ".join(total["control_failures"]))
    if total["not_graded"]:
        lines.append("Not graded: " + ", ".join(total["not_graded"]))
    lines.append("Target met." if total["met"] else "Target NOT met.")
    return "\n".join(lines) + "\n"


def run(args, mutants: list[dict]) -> int:
    graded = chosen(mutants, args.id, args.fast)
    equivalent = [m for m in mutants if m.get("equivalent")
                  and (not args.id or m["id"] in args.id) and not args.fast]
    control = args.control if args.control is not None else not (args.fast or args.id)
    out = Path(args.out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    class_dir = out / "class"
    packed = build(graded, class_dir, control)
    graded_dir = out / "graded"
    status = 0
    print(f"mutate: grading {len(graded)} mutants in {len(packed)} submissions"
          + (" and the control" if control else ""), flush=True)
    for group in sorted(class_dir.iterdir()):
        argv = [sys.executable, str(GRADE), str(group), "--out", str(graded_dir),
                "--csv", str(graded_dir / f"scores-{group.name}.csv"), "--resume"]
        for stage in group.name.removeprefix("stages-"):
            argv += ["--part", stage]
        if args.local:  # the mutants are ours: their root checks may run as root here
            user = args.user or pwd.getpwuid(os.getuid()).pw_name
            argv += ["--local", "--as-root", "--user", user] + (
                ["--nosub-user", args.nosub_user] if args.nosub_user else [])
        else:
            argv += ["--jobs", str(args.jobs)]
        print("mutate: " + " ".join(argv), flush=True)
        status = max(status, subprocess.run(argv).returncode)
    rows, control_failures = verdicts(packed, graded_dir, control)
    total = summary(rows, control_failures, equivalent)
    text = text_report(rows, total, equivalent)
    (out / "report.txt").write_text(text)
    (out / "report.json").write_text(json.dumps({"summary": total, "mutants": rows}, indent=1))
    print(text, end="")
    print(f"mutate: report in {out / 'report.txt'}")
    if status not in (0, 1) or total["not_graded"]:
        return 2
    return 0 if total["met"] else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Grade the mutation suite's mistakes.")
    sub = ap.add_subparsers(dest="command", required=True)
    sub.add_parser("list", help="the mutants")
    sub.add_parser("check", help="every mutant still applies")
    b = sub.add_parser("build", help="the submissions, not graded")
    r = sub.add_parser("run", help="build, grade, report")
    for p in (b, r):
        p.add_argument("--fast", action="store_true", help="only the mutants marked fast")
        p.add_argument("--id", action="append", help="only this mutant (again for more)")
    b.add_argument("dir", help="the class directory to write")
    r.add_argument("--out", default="build/mutants", help="default: build/mutants")
    r.add_argument("--jobs", type=int, default=1, help="VMs at once (default 1)")
    r.add_argument("--local", action="store_true", help="grade on this host, without a VM")
    r.add_argument("--user", help="--local as root: run zookeeper as this user")
    r.add_argument("--nosub-user", help="--local as root: the user without a subordinate "
                   "range (grader/grade's option)")
    r.add_argument("--control", action=argparse.BooleanOptionalAction, default=None,
                   help="grade the unchanged references too (default: only on full runs)")
    args = ap.parse_args(argv)
    try:
        mutants = load()
        if args.command == "list":
            for m in mutants:
                tag = " (equivalent)" if m.get("equivalent") else " (fast)" if m.get(
                    "fast") else ""
                print(f"stage {m['stage']} {m['exercise']:<8} {m['id']}{tag}: {m['why']}")
            return 0
        if args.command == "check":
            problems = check_all(mutants)
            for p in problems:
                print(f"mutate: {p}", file=sys.stderr)
            print(f"mutate: {len(mutants) - len(problems)} of {len(mutants)} mutants apply")
            return 1 if problems else 0
        if args.command == "build":
            packed = build(chosen(mutants, args.id, args.fast), Path(args.dir), False)
            print(f"mutate: {len(packed)} submissions in {args.dir}")
            return 0
        return run(args, mutants)
    except MutantError as e:
        print(f"mutate: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
