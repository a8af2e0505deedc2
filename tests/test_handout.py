"""The student handout and the skeleton: nothing leaks, and the skeleton grades as it should."""

import json
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import generate
import handout
import pytest
from conftest import PARTS, ROOT

SRC = ROOT / "src"
sys.path.insert(0, str(ROOT / "grader"))
import checks  # noqa: E402


@pytest.fixture(scope="module")
def handout_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("handout") / "zookeeper"
    handout.write_handout(out)
    return out


def handout_text(root: Path) -> dict[str, str]:
    texts = {}
    for path in root.rglob("*"):
        if path.is_file():
            try:
                texts[path.relative_to(root).as_posix()] = path.read_text()
            except UnicodeDecodeError:
                continue
    return texts


def code_lines(lines) -> list[str]:
    """Non-blank, non-comment lines, stripped."""
    return [x.strip() for x in lines if x.strip() and not x.strip().startswith("#")]


def test_no_reference_solution_in_the_handout(handout_dir):
    """No exercise's solution appears in the handout: no two consecutive lines of a
    block's code stand together as code in any file (hints may name the functions)."""
    texts = handout_text(handout_dir)
    assert not any(name.startswith(("part", "src/")) for name in texts)
    files = {name: code_lines(text.splitlines()) for name, text in texts.items()}
    leaks = []
    for block in generate.all_blocks(SRC):
        code = code_lines(block.code)
        pairs = {(a, b) for a, b in zip(code, code[1:])}
        for name, lines in files.items():
            for a, b in zip(lines, lines[1:]):
                if (a, b) in pairs:
                    leaks.append(f"q{block.q}: {a!r} / {b!r} in {name}")
    assert not leaks, "reference code in the handout:\n" + "\n".join(leaks)


def test_no_hidden_check_in_the_handout(handout_dir):
    text = (handout_dir / "grader" / "checks.py").read_text()
    hidden = [c for c in checks.CHECKS if not c.public]
    public = [c for c in checks.CHECKS if c.public]
    assert hidden and public
    for c in hidden:
        assert c.id not in text and c.name not in text, f"hidden check {c.id} leaked"
    for c in public:
        assert f"def {c.id}(" in text


def test_no_answers_in_the_handout(handout_dir):
    readme = (handout_dir / "README.txt").read_text()
    assert "Answer." not in readme
    assert "keeps its mode" not in readme and "setuid bit set:" not in readme
    assert "Answer: (describe your experiment" in readme
    assert "5.1 Seccomp (part 3)" in readme
    assert "For instructors and maintainers" not in readme
    # Nothing the handout does not have: the maintainers' tests, the benchmarks, the
    # reference parts' experiment scripts (named in answers only).
    for absent in ("make test", "make bench", "Benchmarks", "part5_cgroups/experiments"):
        assert absent not in readme, absent
    assert "make check" in readme and "make diff PART=4" in readme
    assert "\ndiff:" in (handout_dir / "Makefile").read_text()


def test_the_handout_grades_itself_locally(handout_dir, tmp_path):
    """A student's self-check: the public checks, --local, on the untouched skeleton."""
    student = tmp_path / "student"
    shutil.copytree(handout_dir, student)
    shutil.copytree(student / "skeleton", student / PARTS[1])
    done = subprocess.run([sys.executable, str(student / "grader" / "grade"), str(student),
                           "--local", "--public", "--part", "1", "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Part 1 score: 0/" in done.stdout
    assert "q1 (part 1) is not implemented yet: create the child with clone(2)" in done.stdout


def grade_local(submission: Path, out: Path, parts: list[int]) -> list[dict]:
    args = [sys.executable, str(ROOT / "grader" / "grade"), str(submission), "--local",
            "--user", "zootest", "--python", "/opt/zookeeper-venv/bin/python3",
            "--out", str(out)]
    for p in parts:
        args += ["--part", str(p)]
    subprocess.run(["chmod", "-R", "a+rX", str(submission)], check=True)
    subprocess.run(args, capture_output=True, text=True, timeout=600)
    return json.loads((out / "results.json").read_text())


@pytest.fixture
def shared_tmp():
    """A temporary directory the unprivileged test user can read."""
    path = Path(tempfile.mkdtemp(prefix="zk-handout-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def test_skeleton_with_stage1_filled_passes_stage1_and_fails_stage2(shared_tmp):
    """Copy forward as the course says: stage 1 done, stage 2 not yet."""
    tmp_path = shared_tmp
    blocks = {b.q: b for b in generate.all_blocks(SRC)}
    stage1 = {q for q, b in blocks.items() if b.stage == 1}
    sub = tmp_path / "sub"
    for part in (1, 2):
        target = sub / PARTS[part]
        shutil.copytree(ROOT / "skeleton", target)
        for path in target.glob("*.py"):
            path.write_text(generate.fill_blocks(path.read_text(), blocks, only=stage1))
    results = grade_local(sub, tmp_path / "out", [1, 2])
    part1 = [r for r in results if r["part"] == 1]
    part2 = [r for r in results if r["part"] == 2]
    assert part1 and all(r["status"] == "ok" for r in part1), part1
    assert part2 and all(r["status"] == "fail" for r in part2)
    assert any("q6 (part 2) is not implemented yet" in r["message"] for r in part2)
