"""The student handout and the skeleton: nothing leaks, and the skeleton grades as it should."""

import ast
import builtins
import json
import os
import re
import shutil
import subprocess
import symtable
import sys
import tempfile
from pathlib import Path

import generate
import handout
import pytest
from conftest import PARTS, ROOT, VENV_PYTHON

SRC = ROOT / "src"
sys.path.insert(0, str(ROOT / "grader"))
import checks  # noqa: E402
import report  # noqa: E402


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
    # Nor does any other file of the handout name one (report.py's example named p1_fds).
    named = {name: sorted(c.id for c in hidden if re.search(rf"\b{c.id}\b", words))
             for name, words in handout_text(handout_dir).items()}
    assert not {name: ids for name, ids in named.items() if ids}



def top_level_definitions(tree) -> dict:
    """name -> the top-level def, class or plain assignment that binds it."""
    found = {}
    for node in tree.body:
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            found[node.name] = node
        elif isinstance(node, ast.Assign):
            found.update({t.id: node for t in node.targets if isinstance(t, ast.Name)})
    return found


def names_read(node) -> set[str]:
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)
            and isinstance(n.ctx, ast.Load)}


def reachable(definitions: dict, names: set[str]) -> set[str]:
    """These names and every top-level name their definitions read, in turn."""
    seen, todo = set(), list(names)
    while todo:
        name = todo.pop()
        if name in definitions and name not in seen:
            seen.add(name)
            todo += names_read(definitions[name])
    return seen


def taken_from_checks(root: Path) -> set[str]:
    """`checks.NAME` in the Python files (and python scripts) beside checks.py."""
    found = set()
    for path in (root / "grader").rglob("*"):
        if path.is_file() and path.name != "checks.py" and (
                path.suffix == ".py" or path.read_bytes().startswith(b"#!/usr/bin/env python")):
            found |= set(re.findall(r"\bchecks\.([A-Za-z_]\w*)", path.read_text()))
    return found


def globals_read(text: str) -> set[str]:
    """The module-level names a module's code reads, in functions and classes too."""
    found, tables = set(), [symtable.symtable(text, "checks.py", "exec")]
    while tables:
        table = tables.pop()
        found |= {s.get_name() for s in table.get_symbols() if s.is_referenced()
                  and (table.get_type() == "module" or s.is_global())}
        tables += table.get_children()
    return found


def test_nothing_only_hidden_checks_use_is_in_the_handout(handout_dir):
    """The handout's checks.py has no helper, constant or comment that only hidden checks
    use (before: SLOW_MAP_TOOL and its comment told of the slow-newuidmap check, the
    linked mount points' table of the CVE check's runs): each name it defines is read
    by what is left of it or by the grader beside it, and none it reads is gone."""
    repo_text = (ROOT / "grader" / "checks.py").read_text()
    repo = ast.parse(repo_text)
    text = (handout_dir / "grader" / "checks.py").read_text()
    tree = ast.parse(text)
    public = {c.id for c in checks.CHECKS if c.public}
    hidden = {c.id for c in checks.CHECKS if not c.public}
    repo_defs = top_level_definitions(repo)
    outside = taken_from_checks(ROOT) & set(repo_defs)
    assert {"CHECKS", "READY", "COMMAND_SECONDS"} <= outside, outside
    only_hidden = (reachable(repo_defs, hidden) - hidden
                   - reachable(repo_defs, public | outside))
    assert only_hidden, "no helper of the hidden checks only: is this test still needed?"
    defs = top_level_definitions(tree)
    left = sorted(only_hidden & set(defs))
    assert not left, f"what only hidden checks use is in the handout: {left}"
    # Nor the comment above each (SLOW_MAP_TOOL's tells what its check does).
    lines = repo_text.splitlines()
    for name in only_hidden:
        at = repo_defs[name].lineno - 1
        while at > 0 and lines[at - 1].startswith("# "):
            at -= 1
            assert lines[at] not in text.splitlines(), f"{name}'s comment: {lines[at]}"
    # Each name left is read by the rest, registered as a public check, or the grader's.
    read_here = set()
    for node in tree.body:
        read_here |= names_read(node) - {getattr(node, "name", None)}  # not by itself
    unread = set(defs) - read_here - public - taken_from_checks(handout_dir)
    assert not sorted(unread), f"names nothing in the handout reads: {sorted(unread)}"
    missing = globals_read(text) - set(defs) - set(dir(builtins))
    assert not sorted(missing), f"the handout's checks.py reads names it lacks: {sorted(missing)}"


def test_the_handouts_grader_lists_its_public_checks(handout_dir):
    """The handout's runner imports its checks.py and lists the public checks, each."""
    done = subprocess.run([sys.executable, str(handout_dir / "grader" / "runner.py"), "--list"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    listed = [line.split()[1] for line in done.stdout.splitlines() if line.strip()]
    assert listed == [c.id for c in checks.CHECKS if c.public], done.stdout


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
    # `make diff PART=4`, as the README says: the target (tools/common.mk) is there.
    shown = subprocess.run(["make", "-n", "diff", "PART=4"], cwd=handout_dir,
                           capture_output=True, text=True)
    assert shown.returncode == 0 and "diff -ruN" in shown.stdout, shown.stdout + shown.stderr


def make_diff(tree: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-s", "-C", str(tree), "diff", *args],
                          capture_output=True, text=True, timeout=30)


def test_make_diff_says_which_part_is_missing(handout_dir, tmp_path):
    """`make diff` in a student's tree with parts 1 and 4 only: one line names the part
    that is not there and how to make it, and make fails (it once ran diff with one
    operand and exited 0).  Without PART, the newest part is the one asked about (it
    was part 6, so "part5_cgroups/ is not there yet").  Parts that differ are no
    failure (diff exits 1 for them)."""
    student = tmp_path / "student"
    shutil.copytree(handout_dir, student)
    shutil.copytree(student / "skeleton", student / PARTS[1])
    done = make_diff(student)  # no part to compare yet: the usage
    assert done.returncode == 2
    assert done.stderr.startswith("make diff PART=N with N in 2..6\n"), done.stderr
    shutil.copytree(student / "skeleton", student / PARTS[4])
    assert "4. The exercises" in (student / "README.txt").read_text()
    for args, missing in ((["PART=4"], PARTS[3]), ([], PARTS[3])):
        done = make_diff(student, *args)
        said = [line for line in done.stderr.splitlines() if line.startswith("make diff:")]
        assert done.returncode != 0, done.stdout + done.stderr
        assert said == [f"make diff: {missing}/ is not there yet: copy your part "
                        f"{int(missing[4]) - 1} into it (README section 4)"], done.stderr
        assert "missing operand" not in done.stdout + done.stderr
    shutil.copytree(student / PARTS[1], student / PARTS[3])
    (student / PARTS[4] / "new.py").write_text("stage = 4\n")
    done = make_diff(student, "PART=4")
    assert done.returncode == 0, done.stderr
    assert "+stage = 4" in done.stdout and not done.stderr
    # A backup beside part 3 is not what the grader grades, nor what make diff shows
    # (make's wildcard put part3_seccomp.bak/ before part3_seccomp/: "." < "/").
    shutil.copytree(student / PARTS[1], student / f"{PARTS[3]}.bak")
    (student / f"{PARTS[3]}.bak" / "backup.py").write_text("old = 1\n")
    done = make_diff(student)
    assert done.returncode == 0, done.stderr
    assert "+stage = 4" in done.stdout and "backup.py" not in done.stdout


def test_make_check_before_any_part_says_how_to_start(handout_dir, tmp_path):
    """`make check` in a fresh lab (README: one of the two commands) took the lab for a
    class directory: seven "not a submission" lines and "no submission" (student walk,
    session 28).  Now one line saying how to start."""
    student = tmp_path / "student"
    shutil.copytree(handout_dir, student)
    venv = Path(sys.executable).parent.parent  # this suite's, set up: no pip run here
    done = subprocess.run(["make", "-s", "check", f"VENV={venv}"], cwd=student,
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stdout + done.stderr
    said = [line for line in done.stderr.splitlines()  # (make[1]: under make test)
            if not line.startswith("check-deps:") and not re.match(r"make(\[\d+\])?: \*\*\*",
                                                                    line)]
    assert said == [f"make check: no part to check yet: to start, cp -r skeleton {PARTS[1]} "
                    "(README section 4)"], done.stderr
    assert done.stdout == ""


def test_the_handout_grades_itself_locally(handout_dir, tmp_path):
    """A student's self-check: the public checks, --local, on the untouched skeleton."""
    student = tmp_path / "student"
    shutil.copytree(handout_dir, student)
    shutil.copytree(student / "skeleton", student / PARTS[1])
    done = subprocess.run([sys.executable, str(student / "grader" / "grade"), str(student),
                           "--local", "--public", "--part", "1", "--out", str(tmp_path / "out"),
                           *(["--user", "root"] if os.geteuid() == 0 else [])],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Part 1 score: 0/" in done.stdout
    assert "q1 (part 1) is not implemented yet: create the child with clone(2)" in done.stdout


def grade_local(submission: Path, out: Path, parts: list[int]) -> list[dict]:
    args = [sys.executable, str(ROOT / "grader" / "grade"), str(submission), "--local",
            "--user", "zootest", "--python", "/opt/zookeeper-venv/bin/python3",
            "--nosub-user", "zoonosub", "--out", str(out)]
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


# ---------------------------------------------------------------- the handout tells the truth


TOP_DIRS = re.compile(r"^(tools|grader|bench|skeleton|src|tests|docs|part\d_\w+|build|\.venv)$")


def readme_paths(text: str) -> set[str]:
    """Relative paths the README names (tools/x.py, bench/, part3_seccomp/security.py):
    tokens with a slash, not inside an absolute path, whose first part is a tree's dir."""
    found = set()
    for m in re.finditer(r"(?<![\w/~.$@-])((?:[\w.-]+/)+[\w.*-]*)", text):
        path = m.group(1).rstrip(".")
        if TOP_DIRS.match(path.split("/")[0]):
            found.add(path)
    return found


def makefile_targets(makefile: Path) -> set[str]:
    """The rules of a Makefile with a plain name (not a file target like build/x.tar),
    those of the files it includes too (`include tools/common.mk`)."""
    text = makefile.read_text()
    targets = set(re.findall(r"^([a-z][\w-]*):(?!=)", text, re.M))
    for included in re.findall(r"^include (\S+)$", text, re.M):
        targets |= makefile_targets(makefile.parent / included)
    return targets


def readme_targets(text: str) -> set[str]:
    """`make X` in backquotes, and the command listings' `    make X` / `sudo make X`."""
    return set(re.findall(r"(?:`|^ +|sudo )make ([a-z][\w-]*)", text, re.M))


def test_the_handout_readme_names_only_what_the_handout_has(handout_dir):
    text = (handout_dir / "README.txt").read_text()
    paths = readme_paths(text)
    assert {"grader/grade", "grader/checks.py", "skeleton/"} <= paths, paths
    missing = []
    for path in sorted(paths):
        first, _, rest = path.partition("/")
        if first in ("build", ".venv"):  # made by make in the student's tree
            continue
        if re.match(r"part\d_", first):  # the student's copy of skeleton/
            first = "skeleton"
        target = handout_dir / first / rest
        if not (target.exists() or list(target.parent.glob(target.name))):
            missing.append(path)
    assert not missing, f"the handout's README names what it lacks: {missing}"
    # Files named bare (container.py, requirements.txt) are somewhere in the handout.
    names = {p.name for p in handout_dir.rglob("*")}
    bare = set(re.findall(r"(?<![\w/.-])([\w-]+\.(?:py|sh|txt|md|json|conf))\b", text))
    made = {"results.json", "resolv.conf", "delegate.conf", "report.txt", "vm.log"}
    assert not sorted(bare - names - made), sorted(bare - names - made)
    targets = readme_targets(text)
    assert {"demo", "check", "diff", "rootfs-reset"} <= targets, targets
    lacking = targets - makefile_targets(handout_dir / "Makefile")
    assert not lacking, f"`make {sorted(lacking)}` in the README, not in the handout's Makefile"


@pytest.mark.parametrize("where", ["repo", "handout"])
def test_make_help_lists_every_target(where, handout_dir):
    tree = ROOT if where == "repo" else handout_dir
    targets = makefile_targets(tree / "Makefile")
    assert {"demo", "setup", "rootfs", "rootfs-reset", "help"} <= targets
    done = subprocess.run(["make", "-s", "-C", str(tree), "help"], capture_output=True,
                          text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    listed = set(re.findall(r"\bmake ([a-z][\w-]*)", done.stdout))
    assert not sorted(targets - listed - {"help"}), sorted(targets - listed - {"help"})
    assert not sorted(listed - targets), sorted(listed - targets)


def test_the_readme_states_public_and_hidden_points(handout_dir):
    public = sum(c.points for c in checks.CHECKS if c.public)
    total = sum(c.points for c in checks.CHECKS)
    text = " ".join((handout_dir / "README.txt").read_text().split())
    assert total == 100
    assert f"Public checks, {public} of the {total} points" in text
    assert f"Hidden checks, the other {total - public} points" in text
    assert f'"Score: {public}/{public}"' in text


def test_the_readme_grading_example_is_what_grade_prints():
    """The example of section 7: its check, part and score lines are report.py's
    for those results (points from checks.py, as --public --part 4 selects them)."""
    text = (ROOT / "README.txt").read_text()
    block = text.split("temporary directory behind when zookeeper is killed:\n\n")[1]
    block = block.split("\n\nwith the reason")[0]
    example = [line.strip() for line in block.splitlines()
               if line.strip().startswith(("==", "Part", "Score"))]
    by_name = {c.name: c for c in checks.CHECKS}
    results = []
    for line in example:
        m = re.match(r"== part(\d): (.*) == (OK|FAIL) \(([\d.]+)s\)$", line)
        if m:
            c = by_name[m.group(2)]
            ok = m.group(3) == "OK"
            results.append(report.CheckResult.of(c, "ok" if ok else "fail", "" if ok else "why",
                                                 seconds=float(m.group(4))))
    assert {r.id for r in results} == {c.id for c in checks.selected([4], None, True)}
    printed = [line for line in report.text_report(results).splitlines()
               if line.startswith(("==", "Part", "Score"))]
    assert example == printed


def make_check(shared_tmp: Path, handout_dir: Path, *args, fake_qemu=False, fakes=None):
    """`make check ARGS` in a copy of the handout with the skeleton as part 1, on a PATH
    without QEMU (or with a stand-in that is never run) and an empty cache.  fakes:
    {program: sh script} put first on PATH.  Run again, the same copy."""
    student = shared_tmp / "student"
    bin_dir = shared_tmp / "bin"
    if student.exists():
        return run_make_check(shared_tmp, student, bin_dir, args)
    shutil.copytree(handout_dir, student)
    shutil.copytree(student / "skeleton", student / PARTS[1])
    bin_dir.mkdir()
    for name, script in (fakes or {}).items():
        (bin_dir / name).write_text(script)
        (bin_dir / name).chmod(0o755)
    for directory in ("/bin", "/usr/bin"):
        for name in os.listdir(directory):
            if not name.startswith("qemu-system") and not (bin_dir / name).exists():
                (bin_dir / name).symlink_to(os.path.join(directory, name))
    if fake_qemu:
        (bin_dir / "qemu-system-x86_64").write_text("#!/bin/sh\nexit 99\n")
        (bin_dir / "qemu-system-x86_64").chmod(0o755)
    return run_make_check(shared_tmp, student, bin_dir, args)


def run_make_check(shared_tmp: Path, student: Path, bin_dir: Path, args):
    venv = Path(VENV_PYTHON).parent.parent
    env = {"PATH": str(bin_dir), "HOME": str(shared_tmp),
           "XDG_CACHE_HOME": str(shared_tmp / "cache")}
    return subprocess.run(["make", "-C", str(student), f"VENV={venv}", "check", *args],
                          capture_output=True, text=True, timeout=300, env=env)


LOCAL = "): the public checks run on this machine (--local)\n"


def test_make_check_without_qemu_says_why_and_checks_here(handout_dir, shared_tmp):
    """No QEMU: `make check` says so in one line and runs the public checks with --local.
    (The VM path is the grader's VM tests' to boot.)"""
    done = make_check(shared_tmp, handout_dir)
    assert done.returncode != 0  # the skeleton scores 0
    assert ("make check: no VM (no qemu-system-x86_64 here: sudo apt-get install"
            " qemu-system-x86" + LOCAL) in done.stdout
    assert "Part 1 score: 0/" in done.stdout
    assert "q1 (part 1) is not implemented yet" in done.stdout
    public = sum(c.points for c in checks.CHECKS if c.public)
    assert (f"make check: these are the public checks, {public} of the course's 100 points; "
            f"the hidden checks' {100 - public} are graded after the deadline") in done.stdout


def test_make_check_with_a_wrong_image_hash_says_why_and_checks_here(handout_dir, shared_tmp):
    image = shared_tmp / "zoo-vm.tar.gz"
    image.write_bytes(b"not the course's image")
    done = make_check(shared_tmp, handout_dir, f"VM_IMAGE={image}", "VM_SHA256=" + "0" * 64,
                      fake_qemu=True)
    line = next(x for x in done.stdout.splitlines() if x.startswith("make check: no VM"))
    assert "sha256 mismatch" in line and line.endswith(LOCAL.strip())
    assert "Part 1 score: 0/" in done.stdout


def test_a_vm_build_that_failed_is_said_and_not_retried_at_once(handout_dir, shared_tmp):
    """The image cannot be built (offline, a full disk; here a tool is missing or fails): the
    reason in one line, the checks run here; the next make check within the hour does
    not spend the build's time again (before: every run rebuilt, and a build that
    failed without a word counted as built; attack review, session 17)."""
    fail = "#!/bin/sh\necho 'E: cannot reach the mirror (a stand-in)' >&2\nexit 1\n"
    done = make_check(shared_tmp, handout_dir, fake_qemu=True,
                      fakes={"mmdebstrap": fail, "debootstrap": fail})  # (as a user, as root)
    line = next(x for x in done.stdout.splitlines() if x.startswith("make check: no VM"))
    assert line.startswith("make check: no VM (vm: ") and line.endswith(LOCAL.strip())
    assert "Part 1 score: 0/" in done.stdout
    again = make_check(shared_tmp, handout_dir)
    line = next(x for x in again.stdout.splitlines() if x.startswith("make check: no VM"))
    assert "not tried again within the hour: rm build/vm.failed to try now" in line
    assert "the grader's VM image (grader/vm.py build" not in again.stdout


def test_the_readme_says_which_python_and_machines(handout_dir):
    """The handout's README says which Python setup the lab expects (a venv) and where
    the lab runs, with what to do on each: x86_64, arm64, Ubuntu's AppArmor switch,
    WSL2, and a Mac through a Linux VM."""
    text = " ".join((handout_dir / "README.txt").read_text().split())
    where = text.split("1.1 Where the lab runs", 1)[1].split("2. Usage", 1)[0]
    assert "A Python venv in .venv/" in text
    for said in ("Linux on x86_64", "kernel.apparmor_restrict_unprivileged_userns=0",
                 "in WSL2 (not WSL1", "Linux on arm64 (aarch64)",
                 "macOS: in a Linux virtual machine", "Any other architecture"):
        assert said in where, said



def test_q19s_hint_says_why_it_is_not_in_a_step():
    """README 4 says to put each call in a step(); in q19 that would turn the EBUSY
    its loop retries on into zookeeper's error at once.  The skeleton's hint says so."""
    from test_mistakes import block

    hint = block((ROOT / "skeleton" / "cgroups.py").read_text(), 19)
    said = " ".join(line.strip("# ") for line in hint.splitlines())
    assert "Not inside a step()" in said and "retries on EBUSY" in said, hint


def test_q5s_hint_names_errno_which_container_py_imports():
    """q5's hint tells a student to use errno's names: the skeleton's container.py
    imports errno, so that the hint's code runs."""
    import ast

    from test_mistakes import block

    source = (ROOT / "skeleton" / "container.py").read_text()
    assert "errno" in block(source, 5)
    imported = {alias.name for node in ast.parse(source).body
                if isinstance(node, ast.Import) for alias in node.names}
    assert "errno" in imported


# ---------------------------------------------------------------- nothing of what was left out


def readme_sections(text: str) -> set[str]:
    """The numbers of the README's sections: "5. Written experiments" over its dashes,
    "1.1 Where the lab runs", "5.1 Seccomp (part 3)."."""
    lines = text.splitlines()
    top = {m.group(1) for line, under in zip(lines, lines[1:])
           if (m := re.match(r"^(\d+)\. +\S", line)) and re.fullmatch(r"-{3,}", under)}
    return top | set(re.findall(r"^(\d+\.\d+) +[A-Z]", text, re.M))


def section_references(text: str) -> set[str]:
    """Every section a text names: "section 9.5", "sections 5", "README 7",
    "README.txt 1.1", "(1.1)", "1.1 says", "(5.1, 5.2)"."""
    text = " ".join(text.split())
    found = set(re.findall(r"\bsections? (\d+(?:\.\d+)?)\b", text, re.I))
    found |= set(re.findall(r"\bREADME(?:\.txt)?,? (?:section )?(\d+(?:\.\d+)?)\b", text))
    found |= set(re.findall(r"\((\d\.\d)\)", text)) | set(re.findall(r"\b(\d\.\d) says\b", text))
    for group in re.findall(r"\((\d\.\d(?:, \d\.\d)+)\)", text):
        found |= set(group.split(", "))
    return found


def test_every_section_the_handout_names_is_in_its_readme(handout_dir):
    """The handout's README leaves out the maintainers' sections (8, 9): nothing in the
    handout (its README, Makefile, scripts, skeleton, grader) names one of them."""
    readme = (handout_dir / "README.txt").read_text()
    sections = readme_sections(readme)
    assert {"1", "1.1", "2", "3", "3.1", "4", "5", "5.1", "5.2", "6", "7"} <= sections
    assert not sections & {"8", "9", "9.1", "9.5"}
    named = {"README.txt": section_references(readme)}
    assert {"1.1", "2", "5", "7"} <= named["README.txt"], named
    for name, text in handout_text(handout_dir).items():
        if name != "README.txt":
            named[name] = {n for n in re.findall(
                r"\bREADME(?:\.txt)?,? (?:section )?(\d+(?:\.\d+)?)\b", " ".join(text.split()))}
    stray = {name: sorted(refs - sections) for name, refs in named.items() if refs - sections}
    assert not stray, f"the handout names sections its README lacks: {stray}"


def test_the_handout_readme_names_nothing_the_handout_lacks(handout_dir):
    """No reference parts, no experiments/ of theirs, no repo tests, no Slurm: each
    directory the README names is in the handout, a part of the student's, or one the
    lab's targets make (and those the handout's .gitignore leaves out)."""
    text = (handout_dir / "README.txt").read_text()
    flat = " ".join(text.split())
    for absent in ("reference", "experiments/", "repo's", "lab's own tests", "Slurm",
                   "9.5", "instructors"):
        assert absent.lower() not in flat.lower(), absent
    dirs = {p.name + "/" for p in handout_dir.rglob("*") if p.is_dir()}
    made = {".venv/", "build/", "grader-results/", "__pycache__/"}
    named = set(re.findall(r"(?<![\w/.~$-])([\w.-]+/)(?![\w.*-])", text))
    lacking = sorted(d for d in named - dirs - made if not re.fullmatch(r"part\d_\w+/", d))
    assert not lacking, f"the handout's README names directories it lacks: {lacking}"
    ignored = (handout_dir / ".gitignore").read_text().split()
    assert made <= set(ignored), ignored
    # Each of the repo's words the handout rewrites is still the repo README's.
    repo = (ROOT / "README.txt").read_text()
    for repo_words, _ in [*handout.REPO_ONLY_WORDS, (handout.REPO_DEMO, None),
                          (handout.REPO_ONLY_TEST, None), (handout.POINTS_END, None)]:
        assert repo_words in repo, repo_words


def test_the_handout_readme_states_the_course_rules(handout_dir):
    """The rules of README 9.1 (left out of the handout), in rules.py's own words, in
    the handout's section 7, where it tells of grading."""
    import rules

    text = (handout_dir / "README.txt").read_text()
    grading = " ".join(text.split("\n7. Grading\n", 1)[1].split())
    for name in rules.NAMES.values():
        assert name in grading, name
    assert f"at least {rules.MIN_COMMITS} commits" in grading
    assert "`python3 grader/rules.py .`" in grading
    assert (handout_dir / "grader" / "rules.py").exists()


def test_make_demo_on_a_fresh_handout_says_what_it_will_show(handout_dir, tmp_path):
    """A fresh handout has no part: the demo (after the set-up) says what it will show
    once part 4 is there and how to start, and exits 0; the README says the same."""
    tree = tmp_path / "zookeeper"
    shutil.copytree(handout_dir, tree)
    done = subprocess.run(["sh", "tools/demo.sh", "build/zoo-fs"], cwd=tree,
                          capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, PYTHON=".venv/bin/python3"))
    assert done.returncode == 0, done.stdout + done.stderr
    said = " ".join(done.stdout.split())
    assert "no container to show yet: that needs a part4_filesystem/" in said, said
    assert "hostname, user, id map, processes, network, filesystem, seccomp, cgroup" in said
    assert "cp -r skeleton part1_clone && .venv/bin/python3 part1_clone/zookeeper.py true" in said
    assert done.stderr == ""
    readme = " ".join((tree / "README.txt").read_text().split())
    assert "make demo sets this machine up for the lab (below); once you have a part 4" in readme


def test_the_gitignore_keeps_what_the_targets_make_out_of_git(handout_dir, tmp_path):
    """`git add -A` in a student's tree after make demo, make check and grader/grade:
    the venv, build/ (busybox, the tarball), grader-results/ and __pycache__ stay out,
    the student's own files go in, and the course's binary-files rule passes."""
    import rules

    tree = tmp_path / "zookeeper"
    shutil.copytree(handout_dir, tree)
    shutil.copytree(tree / "skeleton", tree / PARTS[1])
    elf = b"\x7fELF\x02\x01\x01\x00" + bytes(range(256))
    made = {".venv/bin/python3": elf, ".venv/lib/python3.11/site-packages/pyroute2/x.py": b"x\n",
            "build/zoo-fs.tar": elf, "build/zoo-fs/bin/busybox": elf, "build/vm.log": b"ok\n",
            "grader-results/results.json": b"{}\n", "grader-results/logs/p1_exit.log": b"\0",
            "grader/__pycache__/report.cpython-311.pyc": elf,
            f"{PARTS[1]}/__pycache__/container.cpython-311.pyc": elf}
    for name, data in made.items():
        (tree / name).parent.mkdir(parents=True, exist_ok=True)
        (tree / name).write_bytes(data)
    (tree / PARTS[1] / "experiments").mkdir()
    (tree / PARTS[1] / "experiments" / "try.sh").write_text("echo mine\n")
    env = dict(os.environ, GIT_AUTHOR_NAME="S", GIT_AUTHOR_EMAIL="s@example.edu",
               GIT_COMMITTER_NAME="S", GIT_COMMITTER_EMAIL="s@example.edu",
               GIT_CONFIG_NOSYSTEM="1", HOME=str(tmp_path))
    for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-q", "-m", "mine"]):
        subprocess.run(["git", "-C", str(tree), *args], check=True, env=env, capture_output=True)
    tracked = subprocess.run(["git", "-C", str(tree), "ls-files"], check=True, env=env,
                             capture_output=True, text=True).stdout.split()
    assert not [t for t in tracked if t.split("/")[0] in (".venv", "build", "grader-results")
                or "__pycache__" in t], tracked
    for mine in (".gitignore", "README.txt", "Makefile", f"{PARTS[1]}/container.py",
                 f"{PARTS[1]}/experiments/try.sh", "skeleton/container.py", "grader/grade"):
        assert mine in tracked, mine
    assert rules.binary_files(tree) == rules.verdict("binary_files", "ok", "none")
    # An upload of the same tree without .git (Gradescope): what the lab's targets made
    # is not the student's either.
    assert rules.binary_files_on_disk(tree) == []
    (tree / PARTS[1] / "mine.bin").write_bytes(elf)
    assert rules.binary_files_on_disk(tree) == [f"{PARTS[1]}/mine.bin"]
