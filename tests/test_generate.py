"""The generator: one source, six parts and a skeleton, strict about its markers."""

import re
import subprocess
import textwrap
from pathlib import Path

import generate
import pytest
from conftest import PARTS, ROOT

SRC = ROOT / "src"


def write_src(tmp_path: Path, files: dict[str, str]) -> Path:
    src = tmp_path / "src"
    src.mkdir()
    for name, text in files.items():
        (src / name).write_text(textwrap.dedent(text).lstrip("\n"))
    return src


GOOD = {
    "main.py": '''
        import os

        import helper
        import later  # from stage 3

        PART = 6  # skeleton only


        def run():
            flags = 0
            if PART >= 2:
                # STUDENT CODE BELOW (q2)
                # Add the flag.  See clone(2).
                flags |= 2
                # STUDENT CODE ABOVE (q2)
            # STUDENT CODE BELOW (q1)
            # Print the flags.
            print(flags)
            # STUDENT CODE ABOVE (q1)
            if PART < 3:
                print("before stage 3")
            if PART < 5:
                until_five()
            return os.getpid()


        # >>> before stage 5
        def until_five():
            pass
        # <<< before stage 5
    ''',
    "later.py": '''
        # zookeeper-source: stage=3
        import os

        # >>> stage 4
        def four():
            return 4
        # <<< stage 4
    ''',
    "helper.py": '''
        def nothing():
            pass
    ''',
}


def test_parts_resolve_guards_and_regions(tmp_path):
    out = generate.generate(write_src(tmp_path, GOOD))
    part1 = out["part1_clone"]["main.py"][0]
    assert "flags |= 2" not in part1 and "before stage 3" in part1
    assert "PART" not in part1 and "later.py" not in out["part1_clone"]
    assert "import later" not in part1 and "import later\n" in out["part3_seccomp"]["main.py"][0]
    part2 = out["part2_namespaces"]["main.py"][0]
    assert "        flags |= 2\n" not in part2 and "    flags |= 2\n" in part2
    part3 = out["part3_seccomp"]
    assert "before stage 3" not in part3["main.py"][0]
    assert "def four" not in part3["later.py"][0]
    assert "def four" in out["part4_filesystem"]["later.py"][0]
    assert "zookeeper-source" not in out["part4_filesystem"]["later.py"][0]
    # A 'before stage 5' region: in parts 1-4 with the guard that calls it, not in 5-6.
    for part, text in ((k, v["main.py"][0]) for k, v in out.items() if k != "skeleton"):
        before_five = int(part[4]) < 5
        assert ("def until_five" in text) == before_five, part
        assert ("until_five()" in text) == before_five, part
        assert ">>>" not in text and "<<<" not in text, part


def test_skeleton_keeps_hints_and_says_not_implemented(tmp_path):
    skeleton = generate.generate(write_src(tmp_path, GOOD))["skeleton"]
    sk = skeleton["main.py"][0]
    assert "# Add the flag.  See clone(2).\n" in sk
    assert "flags |= 2" not in sk
    assert "not_implemented(2, 2, 'add the flag')" in sk
    assert "not_implemented(1, 1, 'print the flags')" in sk
    # What only the generator reads is gone; the imports are where isort wants them.
    assert "import helper\nimport later\nfrom exercise import not_implemented\n" in sk
    assert "if PART >= 2:" in sk and "PART = 6\n" in sk
    assert "# skeleton only" not in sk and "from stage" not in sk
    assert "def until_five" in sk and ">>>" not in sk and "<<<" not in sk
    later = skeleton["later.py"][0]
    assert "def four" in later and "stage 4" not in later


BAD = [
    ("nested", '''
        def f():
            # STUDENT CODE BELOW (q1)
            # hint
            # STUDENT CODE BELOW (q2)
            # hint
            x = 1
            # STUDENT CODE ABOVE (q2)
            # STUDENT CODE ABOVE (q1)
     ''', r"main.py:4: q2 opens inside q1 \(opened at line 2\)"),
    ("unterminated", '''
        def f():
            # STUDENT CODE BELOW (q1)
            # hint
            x = 1
     ''', r"main.py:2: q1 is never closed"),
    ("mismatched", '''
        def f():
            # STUDENT CODE BELOW (q1)
            # hint
            x = 1
            # STUDENT CODE ABOVE (q2)
     ''', r"main.py:5: q2 closes q1"),
    ("never opened", '''
        def f():
            x = 1
            # STUDENT CODE ABOVE (q1)
     ''', r"main.py:3: q1 closes a block that was never opened"),
    ("malformed", '''
        def f():
            # STUDENT CODE BELOW q1
            x = 1
     ''', r"main.py:2: malformed exercise marker"),
    ("no hint", '''
        def f():
            # STUDENT CODE BELOW (q1)
            x = 1
            # STUDENT CODE ABOVE (q1)
     ''', r"main.py:2: q1 has no hint comment"),
    ("duplicate", '''
        def f():
            # STUDENT CODE BELOW (q1)
            # hint
            x = 1
            # STUDENT CODE ABOVE (q1)
            # STUDENT CODE BELOW (q1)
            # hint
            y = 1
            # STUDENT CODE ABOVE (q1)
     ''', r"main.py:6: q1 is used twice \(first at main.py:2\)"),
    ("gap", '''
        def f():
            # STUDENT CODE BELOW (q2)
            # hint
            x = 1
            # STUDENT CODE ABOVE (q2)
     ''', r"main.py:2: q1 is missing"),
    ("out of order", '''
        def f():
            # STUDENT CODE BELOW (q2)
            # hint
            x = 1
            # STUDENT CODE ABOVE (q2)
            # STUDENT CODE BELOW (q1)
            # hint
            y = 1
            # STUDENT CODE ABOVE (q1)
     ''', r"main.py:6: q1 comes after q2 in the file"),
    ("later stage lower number", '''
        def f():
            if PART >= 2:
                # STUDENT CODE BELOW (q1)
                # hint
                x = 1
                # STUDENT CODE ABOVE (q1)
            # STUDENT CODE BELOW (q2)
            # hint
            y = 1
            # STUDENT CODE ABOVE (q2)
     ''', r"main.py:7: q2 is in stage 1 but q1 is in stage 2"),
    ("block in removed code", '''
        def f():
            if PART < 2:
                # STUDENT CODE BELOW (q1)
                # hint
                x = 1
                # STUDENT CODE ABOVE (q1)
     ''', r"main.py:3: an exercise cannot sit in code that a later stage removes"),
    ("guard with else", '''
        def f():
            if PART >= 2:
                x = 1
            else:
                x = 2
     ''', r"main.py:4: a stage guard cannot have elif/else"),
    ("module-level guard", '''
        if PART >= 2:
            x = 1
     ''', r"main.py:1: stage guards belong inside functions"),
    ("unclosed region", '''
        # >>> stage 2
        x = 1
     ''', r"main.py:1: stage 2 region is never closed"),
    ("exercise in a before region", '''
        # >>> before stage 3
        def f():
            # STUDENT CODE BELOW (q1)
            # Set x.
            x = 1
            # STUDENT CODE ABOVE (q1)
        # <<< before stage 3
     ''', r"main.py:3: an exercise cannot sit in code that a later stage removes"),
    ("before region closed as a stage region", '''
        # >>> before stage 3
        x = 1
        # <<< stage 3
     ''', r"main.py:3: '# <<< stage 3' closes no open region"),
    ("malformed guard", '''
        def f():
            if PART >=2:
                x = 1
     ''', r"main.py:2: malformed stage guard"),
    ("from stage 1", '''
        import sys  # from stage 1
     ''', r"main.py:1: '# from stage 1' in a file of stage 1"),
    ("from stage in a region", '''
        # >>> stage 2
        import sys  # from stage 3
        # <<< stage 2
     ''', r"main.py:2: '# from stage N' stands alone"),
    ("malformed from stage", '''
        import sys  # from stage two
     ''', r"main.py:1: malformed '# from stage N'"),
]


@pytest.mark.parametrize("name,text,message", BAD, ids=[b[0] for b in BAD])
def test_marker_errors_name_file_and_line(tmp_path, name, text, message):
    # The import goes last, so the line numbers above are the file's.
    src = write_src(tmp_path, {"main.py": textwrap.dedent(text).lstrip("\n") + "import os\n"})
    with pytest.raises(generate.GeneratorError) as err:
        generate.generate(src)
    assert re.search(message, str(err.value)), str(err.value)


def test_generator_cli_reports_errors_without_traceback(tmp_path, capsys):
    src = write_src(tmp_path, {"main.py": BAD[0][1]})
    assert generate.main(["--src", str(src), "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("generate: ") and "Traceback" not in err


def test_generating_twice_is_identical():
    assert generate.generate(SRC) == generate.generate(SRC)


def test_committed_parts_and_skeleton_are_fresh():
    problems = generate.stale(ROOT, generate.generate(SRC))
    readme = (ROOT / "README.txt").read_text()
    table = generate.exercise_table(generate.all_blocks(SRC))
    if generate.readme_with_table(readme, table) != readme:
        problems.append("README.txt: the exercise table is stale")
    assert not problems, "stale generated files (run make parts skeleton):\n" + "\n".join(problems)


def test_stale_part_is_detected(tmp_path):
    outputs = generate.generate(SRC)
    generate.write(tmp_path, outputs)
    assert generate.stale(tmp_path, outputs) == []
    target = tmp_path / "part2_namespaces" / "zookeeper.py"
    target.write_text(target.read_text().replace("zoo", "zo0"))
    (tmp_path / "part1_clone" / "extra.py").write_text("")
    problems = generate.stale(tmp_path, outputs)
    assert any(p.startswith("part2_namespaces/zookeeper.py: stale") for p in problems)
    assert any(p.startswith("part1_clone/extra.py: not generated") for p in problems)


def test_round_trip_skeleton_filled_gives_back_the_source():
    """A skeleton with every block filled is the source as a student reads it (no
    annotations only the generator reads), and the reference code is all that was
    left out: the parts come from the same source (test_committed_parts_...)."""
    blocks = {b.q: b for b in generate.all_blocks(SRC)}
    skeleton = ROOT / "skeleton"
    for path in sorted(SRC.rglob("*")):
        if not path.is_file() or not generate.wanted(path):
            continue
        rel = path.relative_to(SRC).as_posix()
        if generate.read_source(SRC, rel).only == "parts":
            continue
        filled = generate.fill_blocks((skeleton / rel).read_text(), blocks)
        assert filled == generate.skeleton_view(SRC, rel), f"{rel}: filled skeleton differs"
        assert "not_implemented(" not in filled or rel == "exercise.py", rel


def test_skeleton_has_no_generator_annotations():
    """The skeleton reads as written for the student: no region markers, no
    '# skeleton only' or '# from stage N', guards in the handout's words (PART)."""
    for path in sorted((ROOT / "skeleton").rglob("*.py")):
        text = path.read_text()
        for mark in (">>> ", "<<< ", "# skeleton only", "# from stage", "STAGE"):
            assert mark not in text, f"{path.name}: {mark!r}"


def test_generated_container_has_no_import_in_a_function_nor_a_guard():
    for part in PARTS.values():
        text = (ROOT / part / "container.py").read_text()
        assert not re.search(r"^[ \t]+(import|from \S+ import) ", text, re.M), part
        assert "PART" not in text and "STAGE" not in text, part


def test_exercises_are_numbered_in_stage_order_with_hints():
    blocks = generate.all_blocks(SRC)
    assert [b.q for b in blocks] == list(range(1, len(blocks) + 1))
    assert [b.stage for b in blocks] == sorted(b.stage for b in blocks)
    for b in blocks:
        assert b.what and len(b.what) < 90, f"q{b.q}: hint's first sentence too long"


@pytest.mark.parametrize("part", ["1", "7", "x", ""])
def test_make_diff_of_no_stage_says_its_usage(part):
    """PART=1 stopped make itself ("first argument to 'word' function must be greater
    than 0"), PART=x too: make expands a recipe whole before it runs (review, session
    27).  Now the usage line, status 2."""
    done = subprocess.run(["make", "-s", "diff", f"PART={part}"], cwd=ROOT, capture_output=True,
                          text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("make diff PART=N with N in 2..6\n"), done.stderr


@pytest.mark.parametrize("part", [2, 3, 4, 5, 6])
def test_make_diff_shows_each_new_module_whole(part):
    """`make diff PART=N` is stage N's lesson: a module new in part N appears with every
    line, not as "Only in partN: module.py"."""
    done = subprocess.run(["make", "-s", "diff", f"PART={part}"], cwd=ROOT, capture_output=True,
                          text=True, check=True)
    assert "Only in" not in done.stdout
    before, after = (ROOT / PARTS[part - 1]), (ROOT / PARTS[part])
    for path in sorted(after.rglob("*.py")):
        relative = path.relative_to(after)
        if "__pycache__" in relative.parts or (before / relative).exists():
            continue
        added = [line[1:] for line in done.stdout.split(f"+++ {PARTS[part]}/{relative}", 1)[1]
                 .split("\ndiff ", 1)[0].splitlines()[2:] if line.startswith("+")]
        assert added == path.read_text().splitlines(), relative
