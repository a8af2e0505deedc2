"""The mutation suite (tools/mutate.py, tools/mutants/): every mistake still applies to
the references, the report counts what the checks catch, and in the VM the fast
subset (one mistake per stage) is caught by its own stage's checks.  The whole suite
is `make mutants` (its time is in README 9.3)."""

import json
import subprocess
import sys
from pathlib import Path

import mutate
import pytest
from conftest import ROOT

MUTATE = [sys.executable, str(ROOT / "tools" / "mutate.py")]


def test_every_mutant_applies_to_its_reference():
    mutants = mutate.load()
    assert mutate.check_all(mutants) == []
    assert {m["stage"] for m in mutants} == {1, 2, 3, 4, 5, 6}


def test_one_fast_mutant_per_stage():
    fast = mutate.chosen(mutate.load(), fast=True)
    assert sorted(m["stage"] for m in fast) == [1, 2, 3, 4, 5, 6]


def test_a_stale_or_malformed_mutant_is_one_line(tmp_path):
    (tmp_path / "stage1.py").write_text(
        "MUTANTS = [{'id': 'gone', 'exercise': 'q1', 'file': 'container.py', 'why': 'x',\n"
        "            'edit': [('text that is not there', '')]}]\n")
    problems = mutate.check_all(mutate.load(tmp_path))
    assert problems == ["mutant gone: container.py of part 1 holds 'text that is not "
                        "there'... 0 times, not once"]
    (tmp_path / "stage2.py").write_text("MUTANTS = [{'id': 'Bad Id'}]\n")
    with pytest.raises(mutate.MutantError, match="needs id, exercise, file, why"):
        mutate.load(tmp_path)


def test_packing_puts_one_mutant_per_stage_in_each_submission():
    ms = [{"id": f"m{i}", "stage": s} for i, s in enumerate([1, 1, 1, 4, 4, 6])]
    packed = mutate.rounds(ms)
    assert [sorted(r) for r in packed] == [[1, 4, 6], [1, 4], [1]]
    assert [m["id"] for r in packed for m in r.values()] == ["m0", "m3", "m5", "m1", "m4",
                                                             "m2"]


def record(path: Path, results: list[tuple[str, int, str]]) -> None:
    path.mkdir(parents=True)
    (path / "grading.json").write_text(json.dumps({"status": "ok", "results": [
        {"id": i, "part": p, "status": s, "message": f"{i} said so"} for i, p, s in results]}))


def test_a_check_the_control_fails_catches_nothing(tmp_path):
    """A mutant counts as caught only by a check of its own stage that the unchanged
    references pass in the same run; errors and checks not run count neither way."""
    packed = [{1: {"id": "a", "stage": 1, "exercise": "q1", "why": "w"},
               4: {"id": "b", "stage": 4, "exercise": "q14", "why": "w"}},
              {1: {"id": "c", "stage": 1, "exercise": "q2", "why": "w"}}]
    record(tmp_path / "control", [("p1_x", 1, "ok"), ("p1_flaky", 1, "fail"),
                                  ("p4_y", 4, "ok")])
    record(tmp_path / "round01", [("p1_x", 1, "fail"), ("p1_flaky", 1, "fail"),
                                  ("p4_y", 4, "error")])
    record(tmp_path / "round02", [("p1_x", 1, "ok"), ("p1_flaky", 1, "fail"),
                                  ("p4_y", 4, "fail")])
    rows, control = mutate.verdicts(packed, tmp_path, control=True)
    got = {r["id"]: (r["graded"], r["caught"], r["by"]) for r in rows}
    assert got == {"a": (True, True, ["p1_x"]), "b": (False, False, []),
                   "c": (True, False, [])}
    assert control == ["p1_flaky: fail: p1_flaky said so"]
    total = mutate.summary(rows, control, [])
    assert (total["graded"], total["caught"], total["met"]) == (2, 1, False)
    assert total["not_graded"] == ["b"]


@pytest.mark.vm
def test_the_fast_subset_is_caught_in_the_vm(tmp_path):
    """One mistake per stage, packed into one submission: one boot, each caught by its
    own stage's checks (CI's share of `make mutants`)."""
    out = tmp_path / "out"
    done = subprocess.run(MUTATE + ["run", "--fast", "--out", str(out)],
                          capture_output=True, text=True, timeout=3000)
    report = json.loads((out / "report.json").read_text())
    assert done.returncode == 0, done.stdout + done.stderr
    assert [r["caught"] for r in report["mutants"]] == [True] * 6, done.stdout
    assert "Target met." in done.stdout
