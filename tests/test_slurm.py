"""grade CLASS_DIR --slurm through a real one-node Slurm cluster (tests/slurm_cluster.py:
munged, slurmctld and slurmd from Debian's packages, started here under a temporary
directory and stopped by pid): a class of three graded --local (part 1, as the test
user) as a job array gives the same CSV as a local --jobs 1 run, each task on the
cluster's node; a second run with --resume submits nothing.  A class of two graded in
the VM (marked vm: each task boots its own guest, as a local run does for each
student) gives the same CSV as a local --jobs 1 run in the VM.

Skipped, with the reason, only when the cluster cannot start here (Slurm or munge
not installed: tools/setup-test-env.sh installs them; a daemon that dies: its log).
"""

import csv
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import PARTS, ROOT, TEST_USER, VENV_PYTHON, copy_parts, have_test_user, make_class
from slurm_cluster import SlurmCluster, SlurmUnavailable

pytestmark = pytest.mark.slow
GRADE = ROOT / "grader" / "grade"
# Part 1's first checks, by id: quick, and the same whatever checks are added later.
SELECTION = ["--only", "p1_exit_status", "--only", "p1_signal", "--only", "p1_exec_errors",
             "--only", "p1_no_leftovers"]
LOCAL = ["--local", *SELECTION, "--user", TEST_USER, "--python", VENV_PYTHON]
# In the VM: one quick check of part 1 and one of part 4 (3 and 2 points), so that a
# task's guest boots, unpacks the rootfs and runs zookeeper in two parts, in ~1 minute.
VM_SELECTION = ["--only", "p1_exit_status", "--only", "p4_dev_null"]


@pytest.fixture(scope="module")
def cluster():
    if os.getuid() != 0 or not have_test_user() or not Path(VENV_PYTHON).exists():
        pytest.skip("needs root, the test user and the venv (make test-deps)")
    started = time.monotonic()
    c = SlurmCluster()
    try:
        c.start()
    except SlurmUnavailable as e:
        print(f"test_slurm: the one-node Slurm cluster cannot start here: {e}",
              file=sys.stderr)
        pytest.skip(f"the one-node Slurm cluster cannot start here: {e}")
    print(f"\ntest_slurm: cluster up in {time.monotonic() - started:.1f}s ({c.base})")
    yield c
    c.stop()


@pytest.fixture(scope="module")
def a_class():
    base, class_dir = make_class("zk-slurm-class-")
    yield base, class_dir
    subprocess.run(["rm", "-rf", str(base)], check=False)


@pytest.fixture(scope="module")
def a_vm_class():
    """alice: the reference parts 1 and 4; bob: the same, but his part 1 exits 3."""
    base = Path(tempfile.mkdtemp(prefix="zk-slurm-vm-class-"))
    base.chmod(0o755)
    class_dir = base / "class"
    for name in ("alice", "bob"):
        copy_parts(class_dir / name, {1: PARTS[1], 4: PARTS[4]})
    (class_dir / "bob" / PARTS[1] / "zookeeper.py").write_text("raise SystemExit(3)\n")
    yield base, class_dir
    subprocess.run(["rm", "-rf", str(base)], check=False)


def grade(class_dir: Path, out: Path, *extra: str, how=tuple(LOCAL), env=None, timeout=600):
    argv = [sys.executable, str(GRADE), str(class_dir), *how, "--out", str(out), *extra]
    started = time.monotonic()
    done = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, env=env)
    return done, time.monotonic() - started


def rows(path: Path) -> dict[str, dict]:
    with open(path, newline="") as f:
        return {row["submission"]: row for row in csv.DictReader(f)}


def test_a_class_graded_as_a_slurm_array_equals_a_local_run(cluster, a_class):
    base, class_dir = a_class
    local, out = base / "local", base / "slurm"
    done, local_seconds = grade(class_dir, local, "--jobs", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    got = rows(local / "scores.csv")
    assert [got[n]["score"] for n in ("alice", "bob", "carol")] == ["11", "11", "0"]

    done, slurm_seconds = grade(class_dir, out, "--slurm", "--time=10",
                                env=cluster.env())
    said = done.stdout + done.stderr
    assert done.returncode == 0, said + cluster.tail("slurmctld") + cluster.tail("slurmd")
    assert (out / "scores.csv").read_text() == (local / "scores.csv").read_text(), said
    for name in ("alice", "bob", "carol"):
        for f in ("results.json", "report.txt", "grading.json"):
            assert (out / name / f).exists(), (name, f, said)
        untimed = [re.sub(r"\(\d+\.\ds\)", "", (d / name / "report.txt").read_text()
                          .replace(str(d), "OUT")) for d in (out, local)]
        assert untimed[0] == untimed[1]
    tasks = sorted((out / ".slurm").glob("*_*.out"))
    assert len(tasks) == 3, said
    host = os.uname().nodename  # what hostname(1) prints in the task
    for n, task in enumerate(tasks):
        assert task.read_text().startswith(f"zoo-grade task {n} on {host}\n"), task.read_text()
    print(f"local --jobs 1: {local_seconds:.1f}s; --slurm: {slurm_seconds:.1f}s")

    # Everything is done: --resume submits nothing and writes the same CSV again.
    (out / "scores.csv").unlink()
    done, _ = grade(class_dir, out, "--resume", "--slurm", env=cluster.env())
    assert done.returncode == 0, done.stdout + done.stderr
    assert "sbatch" not in done.stdout and "0 submissions graded, 3 graded before" in done.stdout
    assert (out / "scores.csv").read_text() == (local / "scores.csv").read_text()


def test_sbatch_refusing_the_job_is_said(cluster, a_class, tmp_path):
    base, class_dir = a_class
    done, _ = grade(class_dir, base / "refused", "--slurm", "--partition=nosuch",
                    env=cluster.env(), timeout=120)
    assert done.returncode == 2
    assert "grade: sbatch failed" in done.stderr and "partition" in done.stderr.lower(), (
        done.stderr)


def test_sigterm_cancels_the_job_and_resume_finishes_it(cluster, a_class):
    """Stopped while its array waits (--begin: not before 2 minutes from now), grade
    cancels the job (nothing is left in squeue), writes the CSV with what it has;
    --resume --slurm then grades the class into the local run's CSV."""
    base, class_dir = a_class
    out = base / "stopped"
    argv = [sys.executable, str(GRADE), str(class_dir), *LOCAL, "--out", str(out),
            "--slurm", "--begin=now+120"]
    proc = subprocess.Popen(argv, env=cluster.env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 60
    while not list((out / ".slurm").glob("tasks.txt")) and time.monotonic() < deadline:
        time.sleep(0.1)

    def queued() -> str:
        return subprocess.run(["squeue", "-h", "-n", "zoo-grade"], env=cluster.env(),
                              capture_output=True, text=True, check=True).stdout.strip()

    while not queued() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert queued(), "the array never reached the queue"
    proc.terminate()
    said, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, said
    assert "scancel" in said and queued() == "", said
    assert {r["status"] for r in rows(out / "scores.csv").values()} == {
        "not graded: interrupted"}
    done, _ = grade(class_dir, out, "--resume", "--slurm", env=cluster.env())
    assert done.returncode == 0, done.stdout + done.stderr
    local = base / "local"
    if not (local / "scores.csv").exists():  # this test alone
        assert grade(class_dir, local, "--jobs", "1")[0].returncode == 0
    assert (out / "scores.csv").read_text() == (local / "scores.csv").read_text()


@pytest.mark.vm
def test_a_class_graded_in_vms_by_slurm_tasks_equals_a_local_run(cluster, a_vm_class):
    """Without --local each task boots its own guest (grade's default --cpus-per-task=2
    --mem=3G: the guest's 2 vCPUs and 2 GiB), as root with the submitter's environment
    (sbatch's default --export=ALL), so it boots the image the local run booted."""
    base, class_dir = a_vm_class
    local, out = base / "local", base / "slurm"
    done, local_seconds = grade(class_dir, local, "--jobs", "1", how=VM_SELECTION,
                                timeout=1500)
    assert done.returncode == 0, done.stdout + done.stderr
    got = rows(local / "scores.csv")
    assert [(got[n]["score"], got[n]["part1"], got[n]["part4"]) for n in ("alice", "bob")] == [
        ("5", "3", "2"), ("2", "0", "2")], (local / "scores.csv").read_text()

    done, slurm_seconds = grade(class_dir, out, "--slurm", "--time=30", how=VM_SELECTION,
                                env=cluster.env(), timeout=1800)
    said = done.stdout + done.stderr
    assert done.returncode == 0, said + cluster.tail("slurmctld") + cluster.tail("slurmd")
    assert "--cpus-per-task=2 --mem=3G" in done.stdout, said
    assert (out / "scores.csv").read_text() == (local / "scores.csv").read_text(), said
    host = os.uname().nodename
    tasks = sorted((out / ".slurm").glob("*_*.out"))
    assert len(tasks) == 2, said
    for n, (name, task) in enumerate(zip(("alice", "bob"), tasks)):
        assert task.read_text().startswith(f"zoo-grade task {n} on {host}\n"), task.read_text()
        # Graded in a guest: its console says the job ran there, and the results came
        # back from the VM (OUT/NAME/vm/), not from a runner here (OUT/NAME/logs/).
        console = (out / name / "console.log").read_text()
        assert "ZOO-JOB-START" in console and "ZOO-JOB-EXIT=0" in console, (name, console)
        assert (out / name / "vm" / "results.json").exists() and not (out / name / "logs").exists()
    print(f"in the VM, local --jobs 1: {local_seconds:.1f}s; --slurm: {slurm_seconds:.1f}s")
