"""A student's self-check, for real (issue 13): a new user with nothing cached, in the
handout's tree with the reference part 1 copied in, runs `make check` with the image
course staff published (exported by root here, imported by the student with its
sha256, no root needed), and the grader's VM gives part 1's public checks full marks.
"""

import pwd
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import handout
import pytest
from conftest import PARTS, ROOT, VENV_PYTHON

sys.path.insert(0, str(ROOT / "grader"))
import checks

STUDENT = "zoocheck"
pytestmark = pytest.mark.vm


@pytest.fixture(scope="module")
def student_home():
    if subprocess.run(["id", STUDENT], capture_output=True).returncode != 0:
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", STUDENT], check=True)
    home = Path(pwd.getpwnam(STUDENT).pw_dir)
    for leftover in ("lab", ".cache"):
        shutil.rmtree(home / leftover, ignore_errors=True)
    yield home
    subprocess.run(["userdel", "--remove", STUDENT], capture_output=True)


@pytest.fixture(scope="module")
def published_image():
    """What course staff publish: root's image (built once and cached), exported where
    anyone can read it (pytest's own temporary directory is root's alone)."""
    subprocess.run([sys.executable, str(ROOT / "grader" / "vm.py"), "build"], check=True,
                   capture_output=True, timeout=1200)
    out = Path(tempfile.mkdtemp(prefix="zk-published-"))
    out.chmod(0o755)
    image = out / "zoo-vm.tar.gz"
    done = subprocess.run([sys.executable, str(ROOT / "grader" / "vm.py"), "export", str(image)],
                          capture_output=True, text=True, timeout=600, check=True)
    image.chmod(0o644)
    sha256 = done.stdout.split()[0]
    assert re.fullmatch(r"[0-9a-f]{64}", sha256), done.stdout
    yield image, sha256
    shutil.rmtree(out, ignore_errors=True)


def test_make_check_imports_the_image_and_grades_part1_in_the_vm(student_home,
                                                                 published_image):
    image, sha256 = published_image
    lab = student_home / "lab"
    handout.write_handout(lab)
    shutil.copytree(ROOT / PARTS[1], lab / PARTS[1], ignore=shutil.ignore_patterns("__pycache__"))
    subprocess.run(["chown", "-R", f"{STUDENT}:{STUDENT}", str(lab)], check=True)
    venv = Path(VENV_PYTHON).parent.parent
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin", "HOME": str(student_home),
           "LANG": "C.UTF-8"}
    done = subprocess.run(
        ["setpriv", f"--reuid={STUDENT}", f"--regid={STUDENT}", "--init-groups", "--",
         "make", "-C", str(lab), f"VENV={venv}", "check", f"VM_IMAGE={image}",
         f"VM_SHA256={sha256}"], capture_output=True, text=True, env=env, timeout=1500)
    assert "make check: no VM" not in done.stdout, done.stdout + done.stderr
    assert "vm: booting" in done.stdout + done.stderr
    public = sum(c.points for c in checks.CHECKS if c.public and c.part == 1)
    assert f"Part 1 score: {public}/{public}" in done.stdout, done.stdout
    all_public = sum(c.points for c in checks.CHECKS if c.public)
    total = sum(c.points for c in checks.CHECKS)
    assert (f"make check: these are the public checks, {all_public} of the course's {total} "
            f"points; the hidden checks' {total - all_public} are graded after the deadline"
            in done.stdout)
    # The image is the student's own now, in their cache, imported with its hash.
    info = subprocess.run(["setpriv", f"--reuid={STUDENT}", f"--regid={STUDENT}",
                           "--init-groups", "--", str(venv / "bin" / "python3"),
                           str(lab / "grader" / "vm.py"), "info"],
                          capture_output=True, text=True, env=env, timeout=60)
    assert f"sha256 {sha256}" in info.stdout, info.stdout + info.stderr
    assert str(student_home) in info.stdout
