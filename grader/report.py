"""What the TA sees: per-check lines, per-part scores, the total; Gradescope's JSON; CSV."""

import csv
import json
import os
from pathlib import Path

# A check's status: "ok" and "fail" are the submission's; "not run" (the grader could
# not set the check up, or the run ended first) and "error" (the check's own
# exception) are the grader's, and make the grading incomplete.
WORDS = {"ok": "OK", "fail": "FAIL", "not run": "NOT RUN", "error": "GRADER ERROR"}


def check_line(r: dict) -> str:
    return f"== part{r['part']}: {r['name']} == {WORDS[r['status']]} ({r['seconds']:.1f}s)"


def plural(n: int, word: str) -> str:
    return f"{n} {word}{'s' if n != 1 else ''}"


def incomplete(results: list[dict]) -> str:
    """'' when every check ran to a verdict, else e.g. '2 not run, 1 grader error'."""
    not_run = sum(1 for r in results if r["status"] == "not run")
    errors = sum(1 for r in results if r["status"] == "error")
    said = ([f"{not_run} not run"] if not_run else []) + (
        [plural(errors, "grader error")] if errors else [])
    return ", ".join(said)


def status(results: list[dict], problem: str = "") -> str:
    """A submission's grading status: "ok", or what went wrong on the grader's side
    (problem: the VM's, say) and how many checks gave no verdict.  Anything but "ok"
    means the score may lack points the submission would earn."""
    said = [problem] if problem else []
    missing = incomplete(results)
    if missing:
        said.append(f"incomplete: {missing}")
    return "; ".join(said) or "ok"


def text_report(results: list[dict], title: str = "", run_status: str = "ok",
                rules: list[dict] | None = None) -> str:
    """The terminal report, in the style TAs know from other labs; rules: the course's
    submission rules' verdicts (grader/rules.py), shown after the score."""
    out = [f"# {title}"] if title else []
    parts = sorted({r["part"] for r in results})
    for part in parts:
        mine = [r for r in results if r["part"] == part]
        for r in mine:
            out.append(check_line(r))
            if r["status"] != "ok":
                out.extend(f"    {line}" for line in r["message"].splitlines() if line.strip())
                if r.get("log"):
                    out.append(f"    log: {r['log']}")
        got = sum(r["score"] for r in mine)
        total = sum(r["max_score"] for r in mine)
        missing = incomplete(mine)
        extra = f" ({missing})" if missing else ""
        out.append(f"Part {part} score: {got}/{total}{extra}")
        out.append("")
    out.append(f"Score: {score(results)}/{max_score(results)}")
    if run_status != "ok":
        out.append(f"Status: {run_status}")
    if rules:
        out += ["", "Course rules (reported, not scored):"] + [rule_line(v) for v in rules]
    return "\n".join(out)


RULE_WORDS = {"ok": "OK", "fail": "FAIL", "unknown": "NOT CHECKED"}


def rule_line(v: dict) -> str:
    """A rule's verdict (grader/rules.py): `== rule: no binary files == FAIL (...)`."""
    return f"== rule: {v['name']} == {RULE_WORDS[v['status']]} ({v['message']})"


def rule_tests(rules: list[dict]) -> list[dict]:
    """The rules as Gradescope tests worth no points, passed or failed (a rule that
    could not be checked has no status)."""
    tests = []
    for n, v in enumerate(rules, 1):
        test = {"name": f"rule: {v['name']}", "number": f"0.{n}", "score": 0, "max_score": 0,
                "output": f"{RULE_WORDS[v['status']]}: {v['message']} (reported, not scored)",
                "visibility": "visible"}
        if v["status"] != "unknown":
            test["status"] = "passed" if v["status"] == "ok" else "failed"
        tests.append(test)
    return tests


def rule_cell(v: dict) -> str:
    """A rule's verdict in one CSV cell: ok, or fail/not checked with the reason."""
    return "ok" if v["status"] == "ok" else (
        f"{'fail' if v['status'] == 'fail' else 'not checked'}: {v['message']}")


def score(results) -> int:
    return sum(r["score"] for r in results)


def max_score(results) -> int:
    return sum(r["max_score"] for r in results)


def gradescope(results: list[dict], execution_time: float, logs_text=None,
               run_status: str = "ok", rules: list[dict] | None = None) -> dict:
    """Gradescope's results.json: score, execution_time, tests[]; and when the grading
    is not complete, a top-level output that says so (Gradescope shows it first)."""
    tests = []
    numbers: dict[int, int] = {}
    for r in results:
        numbers[r["part"]] = numbers.get(r["part"], 0) + 1
        output = r["message"] or "passed"
        if r["status"] == "not run":
            output = f"not run: {r['message']}"
        if logs_text and r["status"] != "ok":
            output += "\n\n" + logs_text(r)
        tests.append({
            "name": f"part{r['part']}: {r['name']}",
            "number": f"{r['part']}.{numbers[r['part']]}",
            "score": r["score"],
            "max_score": r["max_score"],
            "output": output,
            "visibility": "visible" if r["public"] else "after_published",
        })
    out = {"score": score(results), "execution_time": round(execution_time, 1),
           "tests": rule_tests(rules or []) + tests}
    if run_status != "ok":
        out["output"] = (f"Grading status: {run_status}.  The score may lack points for "
                         "checks the grader could not run: ask the course staff.")
    return out


def write_gradescope(path, results, execution_time, run_status: str = "ok",
                     rules: list[dict] | None = None) -> None:
    def log_text(r):
        try:
            return Path(r["log"]).read_text()[-3000:]
        except (OSError, KeyError):
            return ""

    Path(path).write_text(json.dumps(gradescope(results, execution_time, log_text, run_status,
                                                rules), indent=1))


def write_csv(path, rows: list[tuple[str, list[dict], str]],
              rules: dict[str, list[dict]] | None = None) -> None:
    """One row per submission: name, total, each part's score, status; with rules
    (submission name -> verdicts), a column per course rule after them."""
    parts = sorted({r["part"] for _, results, _ in rows for r in results}) or [1]
    ids = list(dict.fromkeys(v["id"] for vs in (rules or {}).values() for v in vs))
    tmp = f"{path}.tmp"  # then renamed: never a half-written CSV
    with open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", "score", "max_score"] + [f"part{p}" for p in parts]
                   + ["status"] + [f"rule_{i}" for i in ids])
        for name, results, status in rows:
            w.writerow([name, score(results), max_score(results)]
                       + [sum(r["score"] for r in results if r["part"] == p) for p in parts]
                       + [status] + [next((rule_cell(v) for v in (rules or {}).get(name, [])
                                           if v["id"] == i), "") for i in ids])
    os.replace(tmp, path)
