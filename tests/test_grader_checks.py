"""The grader's checks on this host, without a VM: a check earns its points only with a
working stage.  Each runs the check's own function on a submission made of the
references (or of a deliberately broken copy), as root, as the runner would.

Checks that need what this host lacks (cgroup v2 controllers, a guest with slirp4netns
and a server address) are proved in the VM instead (test_grader_vm.py).
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import types
from pathlib import Path

import pytest
from conftest import PARTS, ROOT, TEST_USER, VENV_PYTHON, copy_parts

sys.path.insert(0, str(ROOT / "grader"))
import checks
import runner

pytestmark = pytest.mark.slow
NOSUB_USER = "zoonosub"  # made by tools/setup-test-env.sh without subordinate ranges
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
    args = types.SimpleNamespace(submission=str(sub), user="root", python=PYTHON, as_root=True,
                                 timeout_scale=1.0, scratch=str(scratch),
                                 rootfs_tar=str(rootfs_tar), nosub_user=NOSUB_USER)
    z = runner.Context(args, check, [])
    try:
        check.fn(z)
        return "ok", ""
    except runner.CheckFailed as e:
        return "fail", str(e)
    except runner.NotRunnable as e:
        return "not run", str(e)
    finally:
        z.close()  # removes what a mistake left (a temp dir), as the runner does


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
except (FileNotFoundError, NotADirectoryError):
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


# The hidden checks of issue 12 (fds, signals, linked mount points, masks) and of issue
# 17's stage-4 mistakes: the references pass them, and each mistake below fails its
# check.  Each mistake is an edit of one reference file: (old, new) pairs.
NEW_CHECKS = {"p1_fds": 1, "p1_signal_state": 1, "p4_pivot_root": 4, "p4_proc": 4,
              "p4_masks": 4, "p4_linked_mount_points": 4, "p4_as_root": 4,
              "p2_no_subid_range": 2, "p2_slow_maps": 2}

NO_CLOSE_RANGE = [("    if error_write > 3:\n"
                  "        kernel.sys_close_range(3, error_write - 1)\n"
                  "    kernel.sys_close_range(max(3, error_write + 1))\n", "")]
NO_SIGNAL_RESET = [("    signal.pthread_sigmask(signal.SIG_SETMASK, [])\n"
                    "    signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
                    "    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)\n", "")]
NO_DETACH = [('        kernel.sys_umount2(".", kernel.MNT_DETACH)\n', "        pass\n"),
             ('    for path in ("/", "/.."):\n', "    for path in ():\n")]
# put_old a directory of the rootfs (its root may not make one here), never unmounted.
PUT_OLD_KEPT = [('        kernel.sys_pivot_root(".", ".")\n',
                 '        kernel.sys_pivot_root(".", "home")\n'),
                ('        kernel.sys_umount2(".", kernel.MNT_DETACH)\n', "        pass\n")]
PROC_WITHOUT_FLAGS = [('        kernel.sys_mount("proc", target, "proc",\n'
                       "                         kernel.MS_NOSUID | kernel.MS_NODEV | "
                       "kernel.MS_NOEXEC)\n",
                       '        kernel.sys_mount("proc", target, "proc", 0)\n')]
NO_MASKS = [("    mask_paths(proc, shown, PROC_MASKED_FILES, PROC_MASKED_DIRS, PROC_READ_ONLY)\n",
             "    pass\n")]
BIND_WITHOUT_REC = [("kernel.sys_mount(rootfs, new_root, None, kernel.MS_BIND | kernel.MS_REC)",
                     "kernel.sys_mount(rootfs, new_root, None, kernel.MS_BIND)")]
# Mount points opened by following links, and no check that the old root is gone.
FOLLOWS_LINKS = [("        return kernel.sys_openat2(dir_fd, name, os.O_PATH | os.O_DIRECTORY,\n",
                  "        return os.open(name, os.O_PATH | os.O_DIRECTORY, dir_fd=dir_fd)\n"
                  "        return kernel.sys_openat2(dir_fd, name, os.O_PATH | os.O_DIRECTORY,\n"),
                 ('    for path in ("/", "/.."):\n', "    for path in ():\n")]
# Stage 2: the child goes on without waiting for go (q4); the parent says go before it
# writes the maps (q2); gid_map written before setgroups is denied (q7, no range).
NO_WAIT_FOR_GO = [("        message = os.read(go_read, 64)\n", '        message = b"go"\n')]
GO_BEFORE_MAPS = [("        idmap.write_id_maps(pid, container.id_maps)\n", ""),
                  ('            os.write(go_write, b"go")\n        os.close(go_write)\n',
                   '            os.write(go_write, b"go")\n        os.close(go_write)\n'
                   "        idmap.write_id_maps(pid, container.id_maps)\n")]
SETGROUPS = ('    with step(f"write /proc/{pid}/setgroups"):\n'
             '        kernel.write_file(f"/proc/{pid}/setgroups", "deny", "user_namespaces(7)")\n')
GID_MAP = ('    with step(f"write /proc/{pid}/gid_map"):\n'
           '        kernel.write_file(f"/proc/{pid}/gid_map", f"0 {gid} 1\\n", '
           '"user_namespaces(7)")\n')
GID_MAP_BEFORE_SETGROUPS = [(SETGROUPS + GID_MAP, GID_MAP + SETGROUPS)]
# The temp dir removed after the child's normal end only, not on every way out (an
# error of the parent's after the clone leaves it).
REMOVED_AFTER_WAIT = [("    cleanup.add(container.fs.remove)\n", ""),
                      ("        reaped = True\n",
                       "        reaped = True\n        container.fs.remove()\n")]
# The mounts never made private (q11): under a shared / (systemd's) they become slaves.
NOT_PRIVATE = [('        kernel.sys_mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)\n',
                "        pass\n")]

MISTAKES = [
    ("p1_fds", 1, "container.py", NO_CLOSE_RANGE, "fd 7, of /etc"),
    ("p1_signal_state", 1, "container.py", NO_SIGNAL_RESET, "SIGPIPE, SIGXFSZ ignored"),
    ("p4_proc", 4, "rootfs.py", NO_DETACH, "lists the host's mounts"),
    ("p4_pivot_root", 4, "rootfs.py", PUT_OLD_KEPT, "tree, at /home/"),
    ("p4_masks", 4, "rootfs.py", PROC_WITHOUT_FLAGS, "nosuid,nodev,noexec"),
    ("p4_masks", 4, "rootfs.py", NO_MASKS, "/proc/sys should be read-only"),
    ("p4_as_root", 4, "rootfs.py", BIND_WITHOUT_REC, "MS_REC"),
    ("p4_as_root", 4, "rootfs.py", [("    except OSError as e:\n        fs.remove()\n",
                                     "    except OSError as e:\n")], "left it behind"),
    ("p4_linked_mount_points", 4, "rootfs.py", FOLLOWS_LINKS, "a link to"),
    ("p2_slow_maps", 2, "container.py", NO_WAIT_FOR_GO, "does the child block until go"),
    ("p2_slow_maps", 2, "container.py", GO_BEFORE_MAPS, "does the child block until go"),
    ("p2_no_subid_range", 2, "idmap.py", GID_MAP_BEFORE_SETGROUPS, "setgroups denied"),
    ("p4_temp_dir_removed", 4, "container.py", REMOVED_AFTER_WAIT, "newuidmap refused"),
]


@pytest.mark.parametrize("check_id", sorted(NEW_CHECKS))
def test_new_checks_pass_with_the_references(check_id, place, rootfs_tar):
    part = NEW_CHECKS[check_id]
    sub = copy_parts(place / "sub", {part: PARTS[part]})
    got = run_check(check_id, sub, place, rootfs_tar)
    if check_id == "p4_proc" and not checks.root_is_shared():  # this process's / is private:
        assert got[0] == "not run" and "cannot be seen here" in got[1]  # (the runner's is not)
    else:
        assert got == ("ok", "")


def broken(sub: Path, part: int, file: str, edits) -> Path:
    path = sub / PARTS[part] / file
    text = path.read_text()
    for old, new in edits:
        assert old in text, f"{old!r} is no longer in {file}"
        text = text.replace(old, new)
    path.write_text(text)
    return sub


@pytest.mark.parametrize("check_id, part, file, edits, said", MISTAKES,
                         ids=[f"{m[0]}-{i}" for i, m in enumerate(MISTAKES)])
def test_each_mistake_fails_its_check(check_id, part, file, edits, said, place, rootfs_tar):
    sub = broken(copy_parts(place / "sub", {part: PARTS[part]}), part, file, edits)
    status, message = run_check(check_id, sub, place, rootfs_tar)
    assert status == "fail" and said in message, message


@pytest.mark.parametrize("check_id, edits, said", [
    ("p4_pivot_root", [], ""), ("p4_pivot_root", PUT_OLD_KEPT, "tree, at /home/"),
    ("p4_linked_mount_points", [], "")])
def test_host_marker_checks_under_an_odd_scratch(check_id, edits, said, place, rootfs_tar):
    """--local's scratch is under the student's TMPDIR, whatever its name holds: a quote
    made the checks' shell fail correct code ("unterminated quoted string"), a space
    left their probe for the host's files seeing nothing (review, session 28)."""
    odd = place / "it's a $HOME dir"
    odd.mkdir()
    odd.chmod(0o755)
    sub = broken(copy_parts(place / "sub", {4: PARTS[4]}), 4, "rootfs.py", edits)
    status, message = run_check(check_id, sub, odd, rootfs_tar)
    if said:
        assert status == "fail" and said in message, message
    else:
        assert (status, message) == ("ok", "")


def test_the_shifted_part3_fails_the_new_part4_checks(place, rootfs_tar):
    sub = copy_parts(place / "sub", {4: PARTS[3]})
    for check_id in ("p4_masks", "p4_linked_mount_points"):
        assert run_check(check_id, sub, place, rootfs_tar)[0] == "fail"


@pytest.mark.parametrize("user", ["root", TEST_USER])
def test_p4_proc_where_propagation_cannot_be_seen(user, place, rootfs_tar):
    """A host whose / is private (no systemd, this one): a container that never made
    its mounts private looks like one that did.  The runner as root gives its checks a
    mount namespace whose mounts are shared, and finds the mistake there; a runner of
    the student's own (make check --local) cannot, and says so: no full marks for what
    it could not see (before: 16 of 16 without q11; attack review, session 17)."""
    if checks.root_is_shared():
        pytest.skip("this host's / is shared: the check sees propagation as it is")
    sub = broken(copy_parts(place / "sub", {4: PARTS[4]}), 4, "rootfs.py", NOT_PRIVATE)
    subprocess.run(["chmod", "-R", "a+rX", str(place)], check=True)
    out = place / "out"
    out.mkdir()
    shutil.chown(out, *(("root", "root") if user == "root" else (TEST_USER, TEST_USER)))
    results = out / "results.json"
    runner_argv = [PYTHON, str(ROOT / "grader" / "runner.py"), "--submission", str(sub),
                   "--results", str(results), "--only", "p4_proc", "--python", PYTHON,
                   "--rootfs-tar", str(rootfs_tar)]
    if user == "root":
        argv = [*runner_argv, "--user", "root"]
    else:  # the runner itself run by the student
        argv = ["setpriv", f"--reuid={TEST_USER}", f"--regid={TEST_USER}", "--init-groups",
                "--", *runner_argv]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, cwd=place)
    assert done.returncode == 0, done.stderr
    [result] = json.loads(results.read_text())
    if user == "root":
        assert result["status"] == "fail" and "/ master:" in result["message"], result
    else:
        assert result["status"] == "not run", result
        assert result["message"].startswith("the container's proc is right (q13, q14), but "
                                            "this machine's / is not a shared mount"), result
        assert "whether the container's mounts are private (q11) cannot be seen" in (
            result["message"])


@pytest.mark.parametrize("user", ["root", TEST_USER])
@pytest.mark.parametrize("edits, said", [([], ""), (NOT_PRIVATE, "/ master:")],
                         ids=["reference", "not-private"])
def test_p4_proc_under_a_shared_root(user, edits, said, place, rootfs_tar):
    """This host's / is private; systemd's (the VM's) is shared.  In a mount namespace
    whose mounts are all shared, as there, a container that never made its mounts
    private (q11) shows its / and /dev/null as slaves of the host's (master:N), as
    root and rootless; the reference shows no propagation at all."""
    sub = broken(copy_parts(place / "sub", {4: PARTS[4]}), 4, "rootfs.py", edits)
    results = place / "results.json"
    done = subprocess.run(["unshare", "--mount", "--propagation", "shared", PYTHON,
                           str(ROOT / "grader" / "runner.py"), "--submission", str(sub),
                           "--results", str(results), "--only", "p4_proc", "--user", user,
                           "--python", PYTHON, "--rootfs-tar", str(rootfs_tar)],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    [result] = json.loads(results.read_text())
    if not edits:
        assert result["status"] == "ok", result["message"]
    else:
        assert result["status"] == "fail" and said in result["message"], result["message"]
        assert "(this checks q11 (make_mounts_private)" in result["message"]


# A part 1 that is no container manager: no clone, no wait, zookeeper becomes the
# command itself (its signals reset, its fds closed, exec's errors said in one line).
# It passed all of part 1's checks, 15 of 15 points, in the VM.
EXEC_ONLY = """\
import os
import signal
import sys

for number in range(1, signal.NSIG):
    try:
        signal.signal(number, signal.SIG_DFL)
    except (OSError, ValueError):
        pass
os.closerange(3, 65536)
try:
    os.execvp(sys.argv[1], sys.argv[1:])
except (FileNotFoundError, NotADirectoryError):
    print(f"zookeeper: {sys.argv[1]}: command not found", file=sys.stderr)
    os._exit(127)
except OSError as e:
    print(f"zookeeper: {sys.argv[1]}: {e.strerror}", file=sys.stderr)
    os._exit(126)
"""
# What it may still earn: exec's errors (q5 is its own work) and the signal state.
EXEC_ONLY_PASSES = {"p1_exec_errors", "p1_signal_state"}


@pytest.mark.parametrize("check_id", [c.id for c in checks.selected([1])])
def test_a_part1_that_only_execs_earns_few_points(check_id, place, rootfs_tar):
    part = place / "sub" / PARTS[1]
    part.mkdir(parents=True)
    (part / "zookeeper.py").write_text(EXEC_ONLY)
    status, message = run_check(check_id, place / "sub", place, rootfs_tar)
    if check_id in EXEC_ONLY_PASSES:
        assert status == "ok", message
    else:
        assert status == "fail" and "parent should be zookeeper" in message, message


@pytest.mark.parametrize("check_id", [c.id for c in checks.selected([1])])
def test_part1_checks_pass_with_part1(check_id, place, rootfs_tar):
    sub = copy_parts(place / "sub", {1: PARTS[1]})
    assert run_check(check_id, sub, place, rootfs_tar) == ("ok", "")


def test_replace_entry_removes_a_tree_or_a_link_itself(tmp_path):
    """replace_entry is what a check uses to put a link or a directory back in a
    rootfs; it used shutil.rmtree's dir_fd, which Python 3.10 lacks (vermin)."""
    fs, outside = tmp_path / "fs", tmp_path / "outside"
    (fs / "var" / "deep").mkdir(parents=True)
    (fs / "var" / "deep" / "file").write_text("x")
    outside.mkdir()
    (outside / "kept").write_text("x")
    checks.replace_entry(str(fs), "var", lambda at: os.symlink(str(outside), "var", dir_fd=at))
    assert os.readlink(fs / "var") == str(outside)
    checks.replace_entry(str(fs), "var", lambda at: os.mkdir("var", dir_fd=at))
    assert (fs / "var").is_dir() and not (fs / "var").is_symlink()
    assert not list((fs / "var").iterdir()) and (outside / "kept").exists()
