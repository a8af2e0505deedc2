"""The grader's checks on this host, without a VM: a check earns its points only with a
working stage.  Each runs the check's own function on a submission made of the
references (or of a deliberately broken copy), as root, as the runner would.

Checks that need what this host lacks (cgroup v2 controllers, a guest with slirp4netns
and a server address) are proved in the VM instead (test_grader_vm.py).
"""

import shutil
import sys
import tempfile
import types
from pathlib import Path

import pytest
from conftest import PARTS, ROOT, VENV_PYTHON, copy_parts

sys.path.insert(0, str(ROOT / "grader"))
import checks  # noqa: E402
import runner  # noqa: E402

pytestmark = pytest.mark.slow
PYTHON = VENV_PYTHON if Path(VENV_PYTHON).exists() else sys.executable


@pytest.fixture
def place():
    """A directory root may write and the containers may read."""
    path = Path(tempfile.mkdtemp(prefix="zk-checks-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def run_check(check_id: str, sub: Path, base: Path, rootfs_tar: Path) -> tuple[str, str]:
    """(status, message) of one check, as runner.run_checks gets them."""
    check = next(c for c in checks.CHECKS if c.id == check_id)
    scratch = Path(tempfile.mkdtemp(dir=base, prefix="scratch-"))
    scratch.chmod(0o755)
    args = types.SimpleNamespace(submission=str(sub), user="root", python=PYTHON,
                                 timeout_scale=1.0, scratch=str(scratch),
                                 rootfs_tar=str(rootfs_tar))
    z = runner.Context(args, check, [])
    try:
        check.fn(z)
        return "ok", ""
    except runner.CheckFailed as e:
        return "fail", str(e)
    finally:
        z.close()


PART4_ROOTFS_CHECKS = ["p4_pivot_root", "p4_dev_null", "p4_temp_dir_removed", "p4_bad_rootfs",
                       "p4_as_root"]


@pytest.mark.parametrize("check_id", PART4_ROOTFS_CHECKS)
def test_part4_checks_pass_with_part4(check_id, place, rootfs_tar):
    sub = copy_parts(place / "sub", {4: PARTS[4]})
    assert run_check(check_id, sub, place, rootfs_tar) == ("ok", "")


@pytest.mark.parametrize("check_id", PART4_ROOTFS_CHECKS)
def test_part4_checks_fail_with_part3s_program(check_id, place, rootfs_tar):
    """Part 3 ignores -r (with a note): the container runs in the host's /."""
    sub = copy_parts(place / "sub", {4: PARTS[3]})
    status, message = run_check(check_id, sub, place, rootfs_tar)
    assert status == "fail"
    assert "/zoo-marker" in message


@pytest.mark.parametrize("check_id", PART4_ROOTFS_CHECKS)
def test_part4_checks_fail_when_pivot_root_does_nothing(check_id, place, rootfs_tar):
    sub = copy_parts(place / "sub", {4: PARTS[4]})
    rootfs_py = sub / PARTS[4] / "rootfs.py"
    text = rootfs_py.read_text()
    for call in ('kernel.sys_pivot_root(".", ".")', 'kernel.sys_umount2(".", kernel.MNT_DETACH)',
                 "kernel.sys_chdir(new_root)"):
        assert call in text
        text = text.replace(call, "None")
    rootfs_py.write_text(text)
    status, message = run_check(check_id, sub, place, rootfs_tar)
    assert status == "fail"
    assert "/zoo-marker" in message


FAKE_PART1 = """\
import os
import sys

try:
    os.execvp(sys.argv[1], sys.argv[1:])
except FileNotFoundError:
    print(f"zookeeper: failed to execute {sys.argv[1]}: No such file or directory",
          file=sys.stderr)
    EXTRA
    sys.exit(127)
except PermissionError:
    print(f"zookeeper: failed to execute {sys.argv[1]}: Permission denied", file=sys.stderr)
    sys.exit(126)
"""


@pytest.mark.parametrize("extra, expected", [("pass", "ok"), (
    "print('zookeeper: hint: is it on PATH?', file=sys.stderr)", "fail")])
def test_exec_errors_must_be_one_line(extra, expected, place, rootfs_tar):
    """p1_exec_errors says "one line": a second line loses the points."""
    part = place / "sub" / PARTS[1]
    part.mkdir(parents=True)
    (part / "zookeeper.py").write_text(FAKE_PART1.replace("EXTRA", extra))
    status, message = run_check("p1_exec_errors", place / "sub", place, rootfs_tar)
    assert status == expected, message
    if expected == "fail":
        assert message.startswith("a missing command should be one line on stderr")


def test_exec_errors_pass_with_part1(place, rootfs_tar):
    sub = copy_parts(place / "sub", {1: PARTS[1]})
    assert run_check("p1_exec_errors", sub, place, rootfs_tar) == ("ok", "")
