"""What the TA sees: per-check lines, per-part scores, the total; Gradescope's JSON; CSV."""

import csv
import json
from pathlib import Path


def check_line(r: dict) -> str:
    word = {"ok": "OK", "fail": "FAIL", "not run": "NOT RUN"}[r["status"]]
    return f"== part{r['part']}: {r['name']} == {word} ({r['seconds']:.1f}s)"


def text_report(results: list[dict], title: str = "") -> str:
    """The terminal report, in the style TAs know from other labs."""
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
        not_run = sum(1 for r in mine if r["status"] == "not run")
        extra = f" ({not_run} check{'s' if not_run > 1 else ''} not run)" if not_run else ""
        out.append(f"Part {part} score: {got}/{total}{extra}")
        out.append("")
    out.append(f"Score: {score(results)}/{max_score(results)}")
    return "\n".join(out)


def score(results) -> int:
    return sum(r["score"] for r in results)


def max_score(results) -> int:
    return sum(r["max_score"] for r in results)


def gradescope(results: list[dict], execution_time: float, logs_text=None) -> dict:
    """Gradescope's results.json: score, execution_time, tests[]."""
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
    return {"score": score(results), "execution_time": round(execution_time, 1),
            "tests": tests}


def write_gradescope(path, results, execution_time) -> None:
    def log_text(r):
        try:
            return Path(r["log"]).read_text()[-3000:]
        except (OSError, KeyError):
            return ""

    Path(path).write_text(json.dumps(gradescope(results, execution_time, log_text), indent=1))


def write_csv(path, rows: list[tuple[str, list[dict], str]]) -> None:
    """One row per submission: name, total, each part's score, status."""
    parts = sorted({r["part"] for _, results, _ in rows for r in results}) or [1]
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["submission", "score", "max_score"] + [f"part{p}" for p in parts]
                   + ["status"])
        for name, results, status in rows:
            w.writerow([name, score(results), max_score(results)]
                       + [sum(r["score"] for r in results if r["part"] == p) for p in parts]
                       + [status])
