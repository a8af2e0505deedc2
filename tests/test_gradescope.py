"""Gradescope's autograder bundle (grader/gradescope/, `make gradescope`): built, unpacked
as Gradescope lays it out (AUTOGRADER_ROOT moves /autograder), both scripts run, and
results.json checked field by field against Gradescope's specification
(gradescope-autograders.readthedocs.io/en/latest/specs/).

Most of the grading here runs with --local (ZOO_GRADE_ARGS) on this host, parts 1-4:
part 5 needs cgroup v2 controllers and part 6 a systemd user session and a
/dev/net/tun for the test user, which this host lacks.  One test (vm) runs both
scripts as Gradescope does, every part in the VM, in a stand-in for an unprivileged
container (tests/unprivileged_container.py: no CAP_SYS_ADMIN, Docker-like seccomp).
"""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import handout
import pytest
from conftest import PARTS, PYTHON310, ROOT, VENV_PYTHON, copy_parts

sys.path.insert(0, str(ROOT / "grader"))
import checks
import rules

BUNDLE = ROOT / "grader" / "gradescope" / "bundle.py"
VISIBILITIES = {"hidden", "after_due_date", "after_published", "visible"}
TOP_FIELDS = {"score", "execution_time", "output", "output_format", "test_output_format",
              "test_name_format", "visibility", "stdout_visibility", "extra_data", "tests",
              "leaderboard"}
TEST_FIELDS = {"score", "max_score", "status", "name", "name_format", "number", "output",
               "output_format", "tags", "visibility", "extra_data"}
LOCAL_PARTS = [1, 2, 3, 4]
PYTHON = VENV_PYTHON if Path(VENV_PYTHON).exists() else sys.executable


def is_number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate(results: dict) -> None:
    """Gradescope's results.json: the fields it names, each of its type; the fields
    this autograder promises (score, execution_time, output, visibility,
    stdout_visibility; each test's name, number, score, max_score, status, output,
    visibility) present."""
    assert set(results) <= TOP_FIELDS, set(results) - TOP_FIELDS
    for field in ("score", "execution_time", "output", "visibility", "stdout_visibility",
                  "tests"):
        assert field in results, field
    assert is_number(results["score"]) and results["score"] >= 0
    assert is_number(results["execution_time"]) and results["execution_time"] >= 0
    assert isinstance(results["output"], str) and results["output"]
    assert results["visibility"] in VISIBILITIES
    assert results["stdout_visibility"] in VISIBILITIES
    assert isinstance(results["tests"], list)
    for t in results["tests"]:
        assert set(t) <= TEST_FIELDS, set(t) - TEST_FIELDS
        for field in ("name", "number", "score", "max_score", "output", "visibility"):
            assert field in t, (field, t)
        assert isinstance(t["name"], str) and t["name"]
        assert isinstance(t["number"], str) and t["number"]
        assert is_number(t["score"]) and is_number(t["max_score"])
        assert 0 <= t["score"] <= t["max_score"] or t["max_score"] == 0
        assert isinstance(t["output"], str)
        assert t["visibility"] in VISIBILITIES
        if "status" in t or not t["name"].startswith("rule: "):
            assert t["status"] in ("passed", "failed"), t
    assert results["score"] == sum(t["score"] for t in results["tests"])
    numbers = [t["number"] for t in results["tests"]]
    assert len(numbers) == len(set(numbers))


def strict_json(path: Path) -> dict:
    def refuse(name):
        raise ValueError(f"{name} is not JSON")

    return json.loads(path.read_text(), parse_constant=refuse)


@pytest.fixture(scope="module")
def bundle(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("bundle") / "autograder.zip"
    done = subprocess.run([sys.executable, str(BUNDLE), str(out)], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return out


def gradescope_root(bundle: Path, submission: Path | None = None,
                     config: str | None = None) -> Path:
    """/autograder as Gradescope makes it: source/ (the zip, unpacked), run_autograder
    copied to the top, submission/, results/; readable by the test user."""
    root = Path(tempfile.mkdtemp(prefix="zk-autograder-"))
    root.chmod(0o755)
    with zipfile.ZipFile(bundle) as z:
        z.extractall(root / "source")
    for info in zipfile.ZipFile(bundle).infolist():  # extractall drops the modes
        (root / "source" / info.filename).chmod((info.external_attr >> 16) & 0o777)
    if config is not None:
        (root / "source" / "config.env").write_text(config)
    shutil.copy2(root / "source" / "run_autograder", root / "run_autograder")
    (root / "results").mkdir()
    if submission is not None:
        shutil.copytree(submission, root / "submission")
    else:
        (root / "submission").mkdir()
    subprocess.run(["chmod", "-R", "a+rX", str(root)], check=True)
    return root


def run_autograder(root: Path, grade_args: str = "", timeout=900) -> subprocess.CompletedProcess:
    env = dict(os.environ, AUTOGRADER_ROOT=str(root), ZOO_GRADE_ARGS=grade_args)
    return subprocess.run([str(root / "run_autograder")], cwd=root, env=env,
                          capture_output=True, text=True, timeout=timeout)


def local_args(parts) -> str:
    """--local for the VM (it cannot boot here); --as-root, as the VM's checks run the
    references as root there."""
    return " ".join(["--local", "--as-root", "--user", "zootest", "--python", PYTHON,
                     "--nosub-user", "zoonosub"] + [f"--part {p}" for p in parts])


def reference_submission(dest: Path) -> Path:
    """The references with a README.txt that states each part and answers 5.1 and 5.2,
    as a student uploads them (no .git)."""
    copy_parts(dest, PARTS)
    text = (ROOT / "README.txt").read_text()
    status = "".join(f"Part {p}: working\n" for p in PARTS)
    (dest / "README.txt").write_text(status + "\n" + text)
    return dest


def test_the_bundle_has_what_gradescope_wants_at_its_top(bundle, tmp_path):
    with zipfile.ZipFile(bundle) as z:
        infos = {i.filename: i for i in z.infolist()}
        config = z.read("config.env").decode()
    for name in ("setup.sh", "run_autograder"):
        assert name in infos and (infos[name].external_attr >> 16) & 0o111, name
    assert "zookeeper/grader/grade" in infos and "zookeeper/tools/mkrootfs.py" in infos
    assert "zookeeper/grader/guest/init" in infos and "zookeeper/grader/rules.py" in infos
    assert not any("__pycache__" in n for n in infos)
    assert "HIDDEN_VISIBILITY=after_due_date" in config and "VM_IMAGE=''\n" in config
    # The bundle's grader has every check, hidden ones too, and the same VM recipe.
    text = (ROOT / "grader" / "checks.py").read_bytes()
    assert zipfile.ZipFile(bundle).read("zookeeper/grader/checks.py") == text
    root = gradescope_root(bundle)
    try:
        keys = [subprocess.run([sys.executable, str(vm), "info"], capture_output=True,
                               text=True, timeout=120).stdout.splitlines()
                for vm in (ROOT / "grader" / "vm.py",
                           root / "source" / "zookeeper" / "grader" / "vm.py")]
        key = [[line for line in k if line.startswith("key:")] for k in keys]
        assert key[0] and key[0] == key[1]
    finally:
        shutil.rmtree(root)
    # The same tree gives the same zip; an image goes in with its sha256.
    again = tmp_path / "again.zip"
    subprocess.run([sys.executable, str(BUNDLE), str(again)], check=True, capture_output=True)
    assert again.read_bytes() == bundle.read_bytes()
    image = tmp_path / "zoo-vm-x.tar.gz"
    image.write_bytes(b"image")
    digest = hashlib.sha256(b"image").hexdigest()
    done = subprocess.run([sys.executable, str(BUNDLE), str(tmp_path / "i.zip"),
                           "--vm-image", str(image), "--vm-sha256", digest],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    with zipfile.ZipFile(tmp_path / "i.zip") as z:
        assert z.read("zoo-vm-x.tar.gz") == b"image"
        assert f"VM_IMAGE=zoo-vm-x.tar.gz\nVM_SHA256={digest}\n" in z.read(
            "config.env").decode()
    done = subprocess.run([sys.executable, str(BUNDLE), str(tmp_path / "j.zip"),
                           "--vm-image", "https://example.org/x.tar.gz"],
                          capture_output=True, text=True)
    assert done.returncode == 2 and "without its sha256" in done.stderr


def load_run_autograder():
    """grader/gradescope/run_autograder as a module (a script without .py)."""
    import importlib.machinery
    import importlib.util
    path = str(ROOT / "grader" / "gradescope" / "run_autograder")
    loader = importlib.machinery.SourceFileLoader("run_autograder", path)
    module = importlib.util.module_from_spec(importlib.util.spec_from_loader(loader.name, loader))
    loader.exec_module(module)
    return module


def test_the_visible_summary_keeps_the_hidden_checks_score_hidden():
    """The summary said "Score: 3/4" with visibility "visible": a student who failed a
    hidden check saw the total drop, and learnt each hidden verdict by resubmitting,
    which Gradescope itself hides while tests are hidden (attack review, session 29)."""
    finish = load_run_autograder().finish
    graded = {"score": 3, "tests": [
        {"name": "part1: public", "score": 3, "max_score": 3, "visibility": "visible"},
        {"name": "part1: hidden", "score": 0, "max_score": 1, "visibility": "after_published"},
        {"name": "rule: at least 5 commits", "score": 0, "max_score": 0,
         "output": "OK: 6 commits (reported, not scored)", "visibility": "visible"}]}
    said = finish(graded, "after_due_date", 1.0)["output"].splitlines()[0]
    assert said == ("Visible checks: 3/3 (1 of 2 checks; the other 1, and the total score, "
                    "are shown after due date).")
    graded["tests"][1]["visibility"] = "visible"
    assert finish(graded, "after_due_date", 1.0)["output"].startswith("Score: 3/4 (2 checks).")


def test_an_image_url_with_a_query_is_read_whole_by_setup_and_run_autograder(tmp_path):
    """setup.sh sources config.env: a signed URL's & or ; must stay inside its value."""
    url = "https://images.example.invalid/zoo.tar.zst?X-Sig=a&b=c;d=$(id)'"
    out = tmp_path / "autograder.zip"
    done = subprocess.run([sys.executable, str(BUNDLE), str(out), "--vm-image", url,
                           "--vm-sha256", "0" * 64], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    root = gradescope_root(out)
    shell = subprocess.run(["sh", "-euc", '. "$1"; printf %s "$VM_IMAGE"', "sh",
                            str(root / "source" / "config.env")], capture_output=True, text=True)
    assert (shell.returncode, shell.stdout, shell.stderr) == (0, url, "")
    said = subprocess.run([sys.executable, "-c", "import runpy, sys; print(runpy.run_path("
                           "sys.argv[1], run_name='probe')['config'](__import__('pathlib')."
                           "Path(sys.argv[2]))['VM_IMAGE'], end='')",
                           str(root / "run_autograder"), str(root / "source")],
                          capture_output=True, text=True)
    assert said.stdout == url, said.stderr
    shutil.rmtree(root)


def make_gradescope(out: Path, *settings: str) -> subprocess.CompletedProcess:
    """make gradescope's bundle.py line (from make -n: not its set-up), run as make runs it."""
    shown = subprocess.run(["make", "-n", "-s", "gradescope", f"PYTHON={sys.executable}",
                            f"BUILD={out.parent}", *settings], cwd=ROOT, capture_output=True,
                           text=True, timeout=30).stdout
    line = shown[shown.index(sys.executable):].replace("\\\n", " ").splitlines()[0]
    assert "grader/gradescope/bundle.py" in line, shown
    return subprocess.run(["sh", "-c", line], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)


def test_a_local_image_is_bundled_only_with_its_own_sha256(tmp_path):
    """make gradescope VM_IMAGE=FILE VM_SHA256=HASH: a FILE whose sha256 is not HASH, a
    HASH that is no sha256, or no HASH at all is refused here, in one line, with no
    zip (a wrong one was bundled, and failed only on Gradescope)."""
    image = tmp_path / "zoo-vm.tar.gz"
    image.write_bytes(b"not the exported image")
    actual = hashlib.sha256(image.read_bytes()).hexdigest()
    out = tmp_path / "autograder.zip"
    refused = {"deadbeef": "is not a sha256 (64 hex digits",
               "0" * 64: f"its sha256 is {actual}, not {'0' * 64}",
               "": "without its sha256: add --vm-sha256 HASH"}
    for given, said in refused.items():
        done = make_gradescope(out, f"VM_IMAGE={image}", f"VM_SHA256={given}")
        lines = done.stderr.splitlines()
        assert done.returncode == 2, done.stderr
        assert len(lines) == 1 and lines[0].startswith("bundle.py: ") and said in lines[0], (
            given, done.stderr)
        assert not out.exists()
    # Its own, written as export prints it or in capitals: bundled.
    for given in (actual, "sha256:" + actual.upper()):
        done = make_gradescope(out, f"VM_IMAGE={image}", f"VM_SHA256={given}")
        assert done.returncode == 0, done.stderr
        with zipfile.ZipFile(out) as z:
            assert f"VM_SHA256={actual}\n" in z.read("config.env").decode()
        out.unlink()


def test_make_gradescope_runs_the_bundler():
    done = subprocess.run(["make", "-n", "gradescope", "BUILD=/tmp/zk-b", "VM_IMAGE=u",
                           "VM_SHA256=h"], cwd=ROOT, capture_output=True, text=True)
    assert "grader/gradescope/bundle.py /tmp/zk-b/autograder.zip" in done.stdout
    assert "--vm-image u --vm-sha256 h" in done.stdout
    helped = subprocess.run(["make", "help"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "make gradescope" in helped


def fake_path(tmp_path: Path, have: list[str]) -> Path:
    """A PATH of the commands in have (linked to this host's) and an apt-get that
    records what it was asked."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(parents=True)
    for name in have:
        found = sys.executable if name == "python3" else shutil.which(name)
        assert found, name
        (bin_dir / name).symlink_to(found)
    apt = bin_dir / "apt-get"
    apt.write_text(f"#!/bin/sh\necho \"$@\" >> {tmp_path / 'apt.log'}\n")
    apt.chmod(0o755)
    return bin_dir


def test_setup_installs_what_is_missing_with_apt(bundle, tmp_path):
    root = gradescope_root(bundle)
    try:
        have = ["python3", "chmod", "grep", "mkfs.ext4", "dpkg-deb", "busybox", "git",
                "chroot"]  # no qemu-system-x86_64, no debootstrap
        env = dict(os.environ, AUTOGRADER_ROOT=str(root), ZOO_SETUP_VM="skip",
                   PATH=str(fake_path(tmp_path, have)))
        done = subprocess.run(["/bin/bash", str(root / "source" / "setup.sh")], env=env,
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stdout + done.stderr
        asked = (tmp_path / "apt.log").read_text().splitlines()
        assert asked[0] == "update -q"
        assert asked[1] == ("install -y -q --no-install-recommends ca-certificates "
                            "qemu-system-x86 debootstrap")
        assert "VM image step skipped" in done.stdout
    finally:
        shutil.rmtree(root)


def test_setup_with_everything_here_installs_nothing(bundle, tmp_path):
    """This host has the packages; with the VM image of this recipe cached, setup.sh
    runs whole (building finds it cached; importing says so)."""
    cached = "kernel:" in subprocess.run(
        [sys.executable, str(ROOT / "grader" / "vm.py"), "info"], capture_output=True,
        text=True, timeout=120).stdout
    for config in (None, f"VM_IMAGE=zoo-vm.tar.gz\nVM_SHA256={'0' * 64}\n"):
        root = gradescope_root(bundle, config=config)
        try:
            bin_dir = fake_path(tmp_path / str(bool(config)), [])
            env = dict(os.environ, AUTOGRADER_ROOT=str(root),
                       PATH=f"{bin_dir}:{os.environ['PATH']}")
            if not cached:
                env["ZOO_SETUP_VM"] = "skip"
            done = subprocess.run(["/bin/bash", str(root / "source" / "setup.sh")], env=env,
                                  capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, done.stdout + done.stderr
            assert "every package is here" in done.stdout
            assert not (bin_dir.parent / "apt.log").exists()
            if cached:
                assert "image:     /" in done.stdout
                if config:
                    assert "VM image already cached" in done.stdout
        finally:
            shutil.rmtree(root)


@pytest.mark.slow
def test_the_references_score_full_marks_in_gradescopes_format(bundle, tmp_path):
    root = gradescope_root(bundle, reference_submission(tmp_path / "sub"))
    try:
        done = run_autograder(root, local_args(LOCAL_PARTS))
        assert done.returncode == 0, done.stdout + done.stderr
        results = strict_json(root / "results" / "results.json")
    finally:
        shutil.rmtree(root)
    validate(results)
    selected = [c for c in checks.CHECKS if c.part in LOCAL_PARTS]
    full = sum(c.points for c in selected)
    assert results["score"] == full, done.stdout
    tests = [t for t in results["tests"] if not t["name"].startswith("rule: ")]
    assert len(tests) == len(selected)
    assert all(t["status"] == "passed" and t["score"] == t["max_score"] for t in tests)
    by_name = {t["name"]: t for t in tests}
    for c in selected:
        t = by_name[f"part{c.part}: {c.name}"]
        assert t["max_score"] == c.points
        assert t["visibility"] == ("visible" if c.public else "after_due_date")
    rule_tests = {t["name"][6:]: t for t in results["tests"] if t["name"].startswith("rule: ")}
    assert set(rule_tests) == set(rules.NAMES.values())
    assert all(t["score"] == t["max_score"] == 0 for t in rule_tests.values())
    assert "status" not in rule_tests["at least 5 commits"]  # no .git in an upload
    for name in ("no binary files", "README.txt states each part's status",
                 "each written experiment answered"):
        assert rule_tests[name]["status"] == "passed", rule_tests[name]
    public = [c for c in selected if c.public]
    shown = sum(c.points for c in public)
    assert results["output"].startswith(
        f"Visible checks: {shown}/{shown} ({len(public)} of {len(selected)} checks; the other "
        f"{len(selected) - len(public)}, and the total score, are shown after due date).")
    assert str(full) not in results["output"].split("\n")[0]
    assert "each written experiment answered: OK" in results["output"]
    assert results["stdout_visibility"] == "hidden" and results["visibility"] == "visible"
    assert results["execution_time"] > 0


# A docker build step (where Gradescope runs setup.sh) and a container started without
# --privileged: root without CAP_SYS_ADMIN, under a filter like Docker's default one.
UNPRIVILEGED = [PYTHON, str(ROOT / "tests" / "unprivileged_container.py")]


def keep_stall_evidence(out: Path, keep: Path) -> None:
    """A guest that stalled and was graded again (grader/grade) leaves its console and
    its vCPUs' state (console-stalled.log, cpus-stalled.txt): kept out of the
    autograder root this test removes, and said as a warning, as the run still
    passes (the stall is not the submission's, NOTES.md)."""
    for name in ("console-stalled.log", "cpus-stalled.txt"):
        for found in sorted(out.rglob(name)) if out.is_dir() else []:
            keep.mkdir(parents=True, exist_ok=True)
            kept = keep / f"{found.parent.name}-{name}"
            shutil.copy2(found, kept)
            warnings.warn(f"a guest stalled and was graded again; its {name} is kept "
                          f"as {kept}", stacklevel=2)


def python3_first_on_path(python: str, where: Path) -> str:
    """A PATH on which `python3` is python, each start of it logged in where/started:
    setup.sh and run_autograder find their Python as Gradescope's image gives it."""
    where.mkdir()
    started = where / "started"
    (where / "python3").write_text(f'#!/bin/sh\necho "$*" >> {started}\nexec {python} "$@"\n')
    (where / "python3").chmod(0o755)
    return f"{where}:{os.environ['PATH']}"


@pytest.mark.vm
@pytest.mark.parametrize("host_python", [
    None, pytest.param(PYTHON310, marks=pytest.mark.skipif(
        PYTHON310 is None, reason="no Python 3.10 on this machine"))],
    ids=["this machine's python3", "Ubuntu 22.04's python3 (3.10)"])
def test_both_scripts_grade_in_the_vm_in_an_unprivileged_container(bundle, tmp_path,
                                                                   host_python):
    """setup.sh (the packages, the VM image, the saved booted guest) and then
    run_autograder, with no ZOO_GRADE_ARGS, as root without CAP_SYS_ADMIN and with
    mount(2) and namespaces refused: every part graded in the VM, the references
    at full marks, results.json as Gradescope's specification has it.  Once more
    with Python 3.10 as the python3 both scripts find (Gradescope's default base
    image is Ubuntu 22.04), where the machine has one."""
    root = gradescope_root(bundle, reference_submission(tmp_path / "sub"))
    try:
        env = dict(os.environ, AUTOGRADER_ROOT=str(root))
        env.pop("ZOO_GRADE_ARGS", None)
        if host_python:
            env["PATH"] = python3_first_on_path(host_python, tmp_path / "bin")
        status = subprocess.run(UNPRIVILEGED + ["grep", "-E", "CapEff|Seccomp:",
                                                "/proc/self/status"],
                                capture_output=True, text=True, check=True).stdout.split()
        assert not int(status[1], 16) & (1 << 21) and status[3] == "2", status  # SYS_ADMIN
        setup = subprocess.run(UNPRIVILEGED + ["bash", str(root / "source" / "setup.sh")],
                               cwd=root, env=env, capture_output=True, text=True, timeout=1200)
        assert setup.returncode == 0, setup.stdout + setup.stderr
        assert "setup.sh: done" in setup.stdout
        done = subprocess.run(UNPRIVILEGED + [str(root / "run_autograder")], cwd=root,
                              env=env, capture_output=True, text=True, timeout=1800)
        assert done.returncode == 0, done.stdout + done.stderr
        results = strict_json(root / "results" / "results.json")
    finally:
        keep_stall_evidence(root / "zoo-out", tmp_path / "stalled")
        shutil.rmtree(root)
    if host_python:  # setup.sh's own check, vm.py's build, save and info, run_autograder
        started = (tmp_path / "bin" / "started").read_text().splitlines()
        assert any(line.endswith("grader/vm.py save") for line in started), started
        assert any(line.endswith("/run_autograder") for line in started), started
    validate(results)
    full = sum(c.points for c in checks.CHECKS)
    assert results["score"] == full, results["output"]
    public = [c for c in checks.CHECKS if c.public]
    shown = sum(c.points for c in public)
    assert results["output"].startswith(f"Visible checks: {shown}/{shown} ({len(public)} of "
                                        f"{len(checks.CHECKS)} checks; ")
    tests = [t for t in results["tests"] if not t["name"].startswith("rule: ")]
    assert len(tests) == len(checks.CHECKS)
    assert all(t["status"] == "passed" for t in tests)


@pytest.mark.slow
def test_a_broken_part_and_a_nested_upload(bundle, tmp_path):
    """Part 1's code as part 2, uploaded one directory down (a zip of the folder), with
    the handout's README: part 2's checks fail, the rules say what is missing."""
    sub = tmp_path / "upload" / "hw6-bob"
    copy_parts(sub, {1: PARTS[1], 2: PARTS[1]})
    (sub / "README.txt").write_text(
        handout.readme_without_answers((ROOT / "README.txt").read_text()))
    root = gradescope_root(bundle, tmp_path / "upload")
    try:
        done = run_autograder(root, local_args([1, 2]))
        results = strict_json(root / "results" / "results.json")
    finally:
        shutil.rmtree(root)
    validate(results)
    part1 = sum(c.points for c in checks.CHECKS if c.part == 1)
    assert results["score"] == part1, done.stdout
    part2 = [t for t in results["tests"] if t["name"].startswith("part2: ")]
    assert part2 and all(t["status"] == "failed" and t["score"] == 0 for t in part2)
    assert results["output"].startswith("Graded the parts at hw6-bob/ of your upload.\n")
    rule = {t["name"][6:]: t for t in results["tests"] if t["name"].startswith("rule: ")}
    assert rule["each written experiment answered"]["status"] == "failed"
    assert "not answered: 5.1" in rule["each written experiment answered"]["output"]
    assert rule["README.txt states each part's status"]["status"] == "failed"


def test_an_upload_without_the_parts_gets_a_result_that_says_why(bundle):
    root = gradescope_root(bundle)
    try:
        (root / "submission" / "zookeeper.zip").write_bytes(b"PK")
        done = run_autograder(root)
        assert done.returncode == 0
        results = strict_json(root / "results" / "results.json")
    finally:
        shutil.rmtree(root)
    validate(results)
    assert results["score"] == 0 and results["tests"] == []
    assert "no part1_clone/zookeeper.py" in results["output"]
    assert "zookeeper.zip" in results["output"]


def test_a_grader_that_fails_still_writes_results(bundle, tmp_path):
    root = gradescope_root(bundle, reference_submission(tmp_path / "sub"))
    try:
        done = run_autograder(root, "--part 9")
        assert done.returncode == 0
        results = strict_json(root / "results" / "results.json")
    finally:
        shutil.rmtree(root)
    validate(results)
    assert results["score"] == 0
    assert results["output"].startswith("The autograder could not grade this submission: ")
    assert "--part: invalid choice: 9" in results["output"]


def graded_upload(bundle, upload: Path) -> dict:
    """run_autograder on upload (part 1's checks, --local): its valid results.json."""
    root = gradescope_root(bundle, upload)
    try:
        run_autograder(root, local_args([1]))
        results = strict_json(root / "results" / "results.json")
    finally:
        shutil.rmtree(root)
    validate(results)
    return results


def test_two_copies_at_two_depths_are_said_plainly(bundle, tmp_path):
    """hw/ and hw/final/ both with the parts: which is meant?  Once the shallower one
    was graded without a word."""
    for where in ("hw", "hw/final"):
        copy_parts(tmp_path / "upload" / where, {1: PARTS[1]})
    results = graded_upload(bundle, tmp_path / "upload")
    assert results["score"] == 0
    assert "more than one copy of the parts in the upload: hw/, hw/final/; upload one" in (
        results["output"])


def test_the_parts_at_the_top_are_graded_and_a_backup_copy_named(bundle, tmp_path):
    copy_parts(tmp_path / "upload", {1: PARTS[1]})
    copy_parts(tmp_path / "upload" / "backup", {1: PARTS[1]})
    assert graded_upload(bundle, tmp_path / "upload")["output"].startswith(
        "Graded the parts at the top of your upload (not the copies in backup/).\n")


def test_odd_names_are_shown_escaped_and_a_directory_is_no_zookeeper_py(bundle, tmp_path):
    upload = tmp_path / "upload"
    (upload / "fake\nPart 1: working\x1b[2J").mkdir(parents=True)
    (upload / "odd" / "part1_clone" / "zookeeper.py").mkdir(parents=True)
    results = graded_upload(bundle, upload)
    assert "(it has: fake\\x0aPart 1: working\\x1b[2J, odd)" in results["output"]
