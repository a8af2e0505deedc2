"""The oldest Python README promises (3.10: Ubuntu 22.04, Gradescope's base image), for
real.  The suite runs on the machine's own Python (Debian 12's 3.11); make lint's
vermin checks that every module, function and argument used exists in 3.10, but not
what a flag means there: python3 -I did not set sys.flags.safe_path before 3.11, and
every part failed with "No module named 'container'" (session 20).  These run the
parts and the grader's commands on a Python 3.10 where the machine has one (on PATH,
or pyenv's); elsewhere they are skipped, saying so.
"""

import subprocess

import pytest
from conftest import PARTS, PYTHON310, ROOT, Runner, runs_as_310

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(PYTHON310 is None, reason="no Python 3.10 on this machine")]


@pytest.fixture(scope="module")
def python310(tmp_path_factory) -> str:
    """A venv of that Python with the parts' packages (requirements.txt), root's."""
    venv = tmp_path_factory.mktemp("venv310")
    subprocess.run([PYTHON310, "-m", "venv", str(venv)], check=True)
    subprocess.run([str(venv / "bin" / "pip"), "install", "-q", "--disable-pip-version-check",
                    "-r", str(ROOT / "requirements.txt")], check=True, timeout=600)
    python = str(venv / "bin" / "python3")
    assert runs_as_310(python)
    return python


@pytest.mark.parametrize("flags", [[], ["-I"]], ids=["plain", "isolated"])
@pytest.mark.parametrize("part", sorted(PARTS))
def test_each_part_runs_a_command(root_runner: Runner, python310, part, flags):
    script = str(root_runner.workdir / PARTS[part] / "zookeeper.py")
    done = root_runner.run([python310, *flags, script, "sh", "-c", "exit 5"])
    assert (done.returncode, done.stderr) == (5, "")


def test_the_last_part_in_its_own_filesystem(root_runner: Runner, python310, rootfs_for):
    script = str(root_runner.workdir / PARTS[6] / "zookeeper.py")
    done = root_runner.run([python310, "-I", script, "-r", str(rootfs_for(root_runner)), "-o",
                            "-P", "sh", "-c", "hostname; id -u; exit 7"])
    assert (done.returncode, done.stdout, done.stderr) == (7, "zoo\n0\n", ""), done.stderr


@pytest.mark.parametrize("command", [["grader/runner.py", "--list"], ["grader/grade", "--help"],
                                     ["grader/collect", "--help"]])
def test_the_graders_commands_start(python310, command):
    done = subprocess.run([python310, str(ROOT / command[0]), *command[1:]],
                          capture_output=True, text=True, timeout=60, cwd=ROOT)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout


def test_the_graders_modules_import(python310):
    modules = sorted(p.stem for p in (ROOT / "grader").glob("*.py"))
    code = ("import sys; sys.path.insert(0, sys.argv[1])\n"
            "for name in sys.argv[2:]:\n"
            "    __import__(name)\n")
    done = subprocess.run([python310, "-c", code, str(ROOT / "grader"), *modules],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
