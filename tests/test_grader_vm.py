"""The grader proves itself in the VM: the references score full marks, every stage's
checks can fail, a broken copy loses exactly the broken checks' points, the skeleton
scores zero, and a hostile submission does not take the grader down.

Each boot grades a whole submission (~2.5 minutes under TCG), so the submissions are
few and each proves several things.
"""

import csv
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import generate
import pytest
from conftest import PARTS, ROOT, copy_parts
from test_grader_checks import NOT_PRIVATE, REMOVED_AFTER_WAIT, broken

pytestmark = pytest.mark.vm
GRADE = [sys.executable, str(ROOT / "grader" / "grade")]
sys.path.insert(0, str(ROOT / "grader"))
import checks  # noqa: E402

ALL_POINTS = sum(c.points for c in checks.CHECKS)


@pytest.fixture(scope="module")
def workspace():
    path = Path(tempfile.mkdtemp(prefix="zk-grader-vm-"))
    path.chmod(0o755)
    yield path
    shutil.rmtree(path, ignore_errors=True)


def grade(submission: Path, out: Path, *extra, timeout=1500) -> subprocess.CompletedProcess:
    return subprocess.run(GRADE + [str(submission), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=timeout)


def results_of(out: Path) -> dict[str, dict]:
    return {r["id"]: r for r in json.loads((out / "vm" / "results.json").read_text())}


def test_references_score_full_marks(workspace):
    sub = copy_parts(workspace / "reference", {p: name for p, name in PARTS.items()})
    out = workspace / "out-reference"
    done = grade(sub, out, "--json", str(workspace / "gradescope.json"))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"Score: {ALL_POINTS}/{ALL_POINTS}" in done.stdout
    for part in PARTS:
        total = sum(c.points for c in checks.CHECKS if c.part == part)
        assert f"Part {part} score: {total}/{total}" in done.stdout
    assert re.search(r"== part4: pivot_root hides the host == OK \(\d+\.\ds\)", done.stdout)
    # What the TA is told about the run itself.
    assert re.search(r"boot to first check [\d.]+s, .* whole submission [\d.]+s", done.stdout
                     + done.stderr)
    gradescope = json.loads((workspace / "gradescope.json").read_text())
    assert gradescope["score"] == ALL_POINTS and gradescope["execution_time"] > 0
    assert len(gradescope["tests"]) == len(checks.CHECKS)
    test = gradescope["tests"][0]
    assert set(test) == {"name", "number", "score", "max_score", "output", "visibility"}
    assert {t["visibility"] for t in gradescope["tests"]} == {"visible", "after_published"}


def test_only_a_check_named_with_spaces_and_an_apostrophe(workspace):
    """--only takes a check's name as well as its id; the name reaches the guest's
    shell script whole."""
    sub = copy_parts(workspace / "only", {1: PARTS[1], 2: PARTS[2]})
    out = workspace / "out-only"
    done = grade(sub, out, "--only", "exit status is the container's", "--only", "p2_hostname")
    assert done.returncode == 0, done.stdout + done.stderr
    assert set(results_of(out)) == {"p1_exit_status", "p2_hostname"}
    assert "Score: 5/5" in done.stdout


def break_copy(sub: Path) -> None:
    """Four deliberate bugs: no seccomp rule for chmod, the cgroup never removed,
    memory.max written in KiB (1024 times too low), and a part 6 that waits for
    slirp4netns forever (never told to stop: its output is right, it never exits)."""
    security = sub / PARTS[3] / "security.py"
    text = security.read_text()
    kept = [line for line in text.splitlines(keepends=True)
            if not re.match(r'\s+\("set[ug]id files", "f?chmod(at)?2?"', line)]
    assert len(kept) == len(text.splitlines()) - 8
    security.write_text("".join(kept))
    cgroups = sub / PARTS[5] / "cgroups.py"
    text = cgroups.read_text()
    assert text.count("kernel.sys_rmdir(") >= 1
    text = text.replace("kernel.sys_rmdir(", "(lambda path: None)(")
    assert '    return str(limit)\n' in text
    cgroups.write_text(text.replace('    return str(limit)\n', '    return str(limit // 1024)\n'))
    network = sub / PARTS[6] / "network.py"
    text = network.read_text()
    assert text.count("kernel.sys_kill(pid, signal.SIGTERM)") == 1
    network.write_text(text.replace("kernel.sys_kill(pid, signal.SIGTERM)", "pass"))


HANGING = {"p6_interfaces", "p6_rootless_network", "p6_helper_gone", "p6_root_veth"}

# Issue 17's mistakes that need the guest: its systemd's shared / (q11), slirp4netns
# for the user (q20, q21); and the temp dir, rootless.  (p4_proc and p4_temp_dir_removed
# also fail them on this host: test_grader_checks.py.)  Check id: what its failure says.
NO_HOST_LOOPBACK_OPTION = [('"slirp4netns", "--disable-host-loopback", ', '"slirp4netns", ')]
STOP_DOES_NOTHING = [("                kernel.sys_kill(pid, signal.SIGTERM)\n"
                      "                kernel.sys_waitpid(pid)\n", "                pass\n")]
GUEST_MISTAKES = {"p4_proc": "are still linked to the host's (/ master:",
                  "p4_temp_dir_removed": "newuidmap refused",
                  "p6_rootless_network": "start slirp4netns with --disable-host-loopback",
                  "p6_helper_gone": "still running when zookeeper has returned"}


def test_stage_4_and_6_mistakes_fail_their_checks_in_the_guest(workspace):
    """One submission with four mistakes, each in its own check: the mounts never made
    private, the temp dir removed after the child's normal end only, slirp4netns
    started without --disable-host-loopback, and a stop() that stops nothing."""
    sub = copy_parts(workspace / "guest-mistakes", {4: PARTS[4], 6: PARTS[6]})
    broken(sub, 4, "rootfs.py", NOT_PRIVATE)
    broken(sub, 4, "container.py", REMOVED_AFTER_WAIT)
    broken(sub, 6, "network.py", NO_HOST_LOOPBACK_OPTION + STOP_DOES_NOTHING)
    out = workspace / "out-guest-mistakes"
    done = grade(sub, out, *[arg for check_id in GUEST_MISTAKES for arg in ("--only", check_id)],
                 timeout=900)
    assert done.returncode == 1, done.stdout + done.stderr
    results = results_of(out)
    assert set(results) == set(GUEST_MISTAKES)
    for check_id, said in GUEST_MISTAKES.items():
        assert results[check_id]["status"] == "fail", results[check_id]
        assert said in results[check_id]["message"], results[check_id]["message"]

# A repair unit (session 20's attack): each zookeeper hands its stdout and stderr to a
# socket unit of the user's systemd, made by the first one; the unit's service, started
# on the connection, waits for that zookeeper's end, removes the user's unlocked
# /tmp/zoo.* and kills the slirp4netns whose zookeeper is gone, and exits: the runner
# sees its pipes close only then, and nothing runs at the check's end.
REPAIR = r'''
def repair(zookeeper):
    import fcntl, glob, os, select, signal, time
    uid = os.getuid()
    try:
        select.select([os.pidfd_open(int(zookeeper))], [], [])
    except (OSError, ValueError):
        pass
    for d in glob.glob("/tmp/zoo.??????"):
        try:
            if os.lstat(d).st_uid == uid:
                fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # no zookeeper holds it
                os.rmdir(d)
                os.close(fd)
        except OSError:
            pass
    for p in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv0 = open(f"/proc/{p}/cmdline", "rb").read().split(b"\0")[0]
            ppid = open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[1]
            if (os.stat(f"/proc/{p}").st_uid == uid and argv0.endswith(b"slirp4netns")
                    and b"zookeeper.py" not in open(f"/proc/{ppid}/cmdline", "rb").read()):
                os.kill(int(p), signal.SIGKILL)
                while open(f"/proc/{p}/stat").read().rsplit(")", 1)[1].split()[0] not in "ZX":
                    time.sleep(0.01)
        except (OSError, ValueError, IndexError):
            pass
'''
REPAIR_SERVICE = REPAIR + r'''
import os, socket
c, _ = socket.socket(fileno=3).accept()
msg, fds, _, _ = socket.recv_fds(c, 16, 8)
repair(msg)
os._exit(0)
'''
def client(body: str) -> str:
    """A client's code for zookeeper.py, before its import of container: body defines
    _start(), which runs, whatever fails, what it returns kept (a socket that must
    stay open while zookeeper runs)."""
    return HAND_OVER + body + "try:\n    _held = _start()\nexcept Exception:\n    pass\n"


# zookeeper's stdout and stderr, handed over on a socket to the janitor at its end.
HAND_OVER = """
def hand_over(s):
    import socket
    socket.send_fds(s, [str(os.getpid()).encode()], [1, 2])
    return s
"""

REPAIR_CLIENT = '''
def _start():
    import socket, subprocess
    path = f"/run/user/{os.getuid()}/zk-fix.sock"
    if os.getuid() != 0 and not os.path.exists(path):
        subprocess.run(["systemd-run", "--user", "--quiet", "--unit=zk-fix",
                        f"--socket-property=ListenStream={path}", "-p", "StartLimitIntervalSec=0",
                        "/usr/bin/python3", "-c", SERVICE], stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=60)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(path)
    return hand_over(s)
'''
REPAIRED = {"p4_temp_dir_removed", "p6_helper_gone"}
# A janitor (the attack session 20 left open): each zookeeper has the user's systemd
# start a transient service holding its stdout and stderr, which repairs after that
# zookeeper's end as the repair unit does, and exits: no unit is left, none runs.
# It sets a variable in the manager's environment too (LD_PRELOAD, for the next bus
# daemon, would be the harmful one).
JANITOR_SERVICE = REPAIR + r'''
import os, sys
repair(sys.argv[1])
os._exit(0)
'''
JANITOR_CLIENT = '''
def _start():
    import subprocess
    if os.getuid() != 0:
        subprocess.run(["systemctl", "--user", "set-environment", "ZK_JANITOR=1"],
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        subprocess.Popen(["systemd-run", "--user", "--quiet", "--collect", "--pipe",
                          "/usr/bin/python3", "-c", SERVICE, str(os.getpid())],
                         stdin=subprocess.DEVNULL)
'''

# The janitor's work done by the session bus's daemon: each zookeeper writes a D-Bus
# service file in the user's session service directory and asks the bus for that
# name; the daemon starts the file's Exec itself, its child in its own cgroup
# (dbus.service: no cgroup made, no unit).  The child removes the file at once, takes
# that zookeeper's stdout and stderr over a socket, repairs after it and exits.
# The janitors that take zookeeper's stdout and stderr on a socket of their own.
REPAIR_ON_SOCKET = REPAIR + r"""
def repair_on(path):
    import os, socket
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(path)
    s.listen(1)
    c, _ = s.accept()
    os.unlink(path)
    msg, fds, _, _ = socket.recv_fds(c, 16, 8)
    repair(msg)
    os._exit(0)
"""
BUS_JANITOR_SERVICE = REPAIR_ON_SOCKET + r"""
import os, sys
os.unlink(sys.argv[1])
repair_on(sys.argv[1] + ".sock")
"""
# Their clients: the socket, once the janitor listens on it.
CONNECT = """
def connect_to(path):
    import socket, time
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    for _ in range(600):
        try:
            s.connect(path)
            return s
        except OSError:
            time.sleep(0.05)
    return s
"""
BUS_JANITOR_CLIENT = CONNECT + """
def _start():
    import pwd, shlex, socket, subprocess, time
    uid = os.getuid()
    if uid == 0:
        return None
    name = f"org.zk.J{os.getpid()}"
    services = os.path.join(pwd.getpwuid(uid).pw_dir, ".local/share/dbus-1/services")
    os.makedirs(services, exist_ok=True)
    path = os.path.join(services, name + ".service")
    with open(path + ".py", "w") as f:
        f.write(SERVICE)
    with open(path, "w") as f:
        f.write(f"[D-BUS Service]\\nName={name}\\nExec=/usr/bin/python3 "
                f"{shlex.quote(path + '.py')} {shlex.quote(path)}\\n")
    subprocess.run(["busctl", "--user", "--expect-reply=no", "call", "org.freedesktop.DBus",
                    "/org/freedesktop/DBus", "org.freedesktop.DBus", "StartServiceByName",
                    "su", name, "0"], env={"XDG_RUNTIME_DIR": f"/run/user/{uid}",
                    "PATH": "/usr/bin:/bin"}, stdin=subprocess.DEVNULL,
                   capture_output=True, timeout=60)
    s = connect_to(path + ".sock")
    os.unlink(path + ".py")
    return hand_over(s)
"""


def test_a_repair_unit_of_the_users_systemd_earns_nothing(workspace):
    """A part 4 that leaves its temp dir after an error and a part 6 that never stops
    slirp4netns, repaired by a socket unit of the user's systemd: nothing of the
    repair runs at any check's end (14/14 before the runner compared the user's
    units; 6/14 without the repair): the check that made the unit fails, saying
    so, and so do the two whose leftovers it would have removed."""
    sub = copy_parts(workspace / "repair-unit", {p: PARTS[p] for p in (1, 4, 6)})
    broken(sub, 4, "container.py", REMOVED_AFTER_WAIT)
    broken(sub, 6, "network.py", STOP_DOES_NOTHING)
    for part in (1, 4, 6):
        broken(sub, part, "zookeeper.py", [(
            "import container  # noqa",
            f"SERVICE = {REPAIR_SERVICE!r}\n{client(REPAIR_CLIENT)}import container  # noqa")])
    out = workspace / "out-repair-unit"
    done = grade(sub, out, "--only", "p1_exit_status", "--only", "p1_signal",
                 *[arg for check_id in sorted(REPAIRED) for arg in ("--only", check_id)],
                 timeout=900)
    assert done.returncode == 1, done.stdout + done.stderr
    results = results_of(out)
    for check_id in REPAIRED:
        assert results[check_id]["status"] == "fail", results[check_id]
    assert any("unit zk-fix.socket (started: stopped now)" in r["message"]
               for r in results.values()), done.stdout


JANITORS = {  # (its service, its client, what the failed checks say)
    "systemd": (JANITOR_SERVICE, JANITOR_CLIENT, [
        r"unit run-\S+\.service \(started and ended",
        r"environment variable ZK_JANITOR of the manager \(set: put back\)"]),
    "bus": (BUS_JANITOR_SERVICE, BUS_JANITOR_CLIENT, [
        r"a program the session bus ran \(D-Bus activation\)"]),
}


@pytest.mark.parametrize("janitor", sorted(JANITORS))
def test_a_janitor_per_zookeeper_earns_nothing(workspace, janitor):
    """The repair unit's work done afresh for each zookeeper, by a transient service
    of the user's systemd (systemd) or by a child of the session bus's daemon (bus:
    D-Bus activation of a service file the zookeeper writes and the child removes),
    which ends before the check does: no cgroup, unit, file or process is left at
    the check's end (8/8 for each before the runner watched during the check)."""
    service, code, said = JANITORS[janitor]
    sub = copy_parts(workspace / f"janitor-{janitor}", {p: PARTS[p] for p in (4, 6)})
    broken(sub, 4, "container.py", REMOVED_AFTER_WAIT)
    broken(sub, 6, "network.py", STOP_DOES_NOTHING)
    for part in (4, 6):
        broken(sub, part, "zookeeper.py", [(
            "import container  # noqa",
            f"SERVICE = {service!r}\n{client(code)}import container  # noqa")])
    out = workspace / f"out-janitor-{janitor}"
    done = grade(sub, out, *[arg for check_id in sorted(REPAIRED) for arg in ("--only", check_id)],
                 timeout=900)
    assert done.returncode == 1, done.stdout + done.stderr
    results = results_of(out)
    for check_id in REPAIRED:
        assert results[check_id]["status"] == "fail", results[check_id]
        for pattern in said:
            assert re.search(pattern, results[check_id]["message"]), results[check_id]


# A variable set in the manager's environment for the bus's start only: the bus
# restarted, the variable unset (LD_PRELOAD would run the submission's code in the bus
# daemon, which is never said escaped).  The manager's environment is as before.
BUS_TAINT_CLIENT = """
def _start():
    import subprocess
    if os.getuid() != 0:
        for args in (["set-environment", "ZK_TAINT=1"], ["restart", "dbus.service"],
                     ["unset-environment", "ZK_TAINT"]):
            subprocess.run(["systemctl", "--user", *args], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=60)
"""


def test_a_bus_started_with_a_variable_for_it_alone_fails_the_check(workspace):
    """The restarted bus's environment is compared with the manager's before the
    check: the check fails, and the bus is stopped for the next one."""
    sub = copy_parts(workspace / "bus-taint", {1: PARTS[1]})
    broken(sub, 1, "zookeeper.py", [(
        "import container  # noqa", f"{client(BUS_TAINT_CLIENT)}import container  # noqa")])
    out = workspace / "out-bus-taint"
    done = grade(sub, out, "--only", "p1_exit_status", "--only", "p1_signal", timeout=900)
    assert done.returncode == 1, done.stdout + done.stderr
    for result in results_of(out).values():
        assert result["status"] == "fail", result
        assert "environment variable ZK_TAINT of the session bus" in result["message"], result


# The janitor as an ExecStartPre= of a unit loaded before the check (the bus): each
# zookeeper writes a drop-in for dbus.service, reloads the manager and restarts the
# bus; the janitor takes that zookeeper's stdout and stderr over a socket, and the
# drop-in is removed (the manager reloaded) before it repairs and exits.  Its cgroup
# is the bus's, no file is new at the end, the bus's daemon ran nothing.
DROP_IN_JANITOR_SERVICE = REPAIR_ON_SOCKET + r"""
import sys
repair_on(sys.argv[1])
"""
DROP_IN_JANITOR_CLIENT = CONNECT + """
def _start():
    import socket, subprocess, time
    uid = os.getuid()
    if uid == 0:
        return None
    env = {"XDG_RUNTIME_DIR": f"/run/user/{uid}", "PATH": "/usr/bin:/bin"}
    def ctl(*args):
        subprocess.run(["systemctl", "--user", *args], env=env, stdin=subprocess.DEVNULL,
                       capture_output=True, timeout=60)
    drop_ins = f"/run/user/{uid}/systemd/user/dbus.service.d"
    os.makedirs(drop_ins, exist_ok=True)
    path = f"/run/user/{uid}/zk-{os.getpid()}"
    with open(path + ".py", "w") as f:
        f.write(SERVICE)
    with open(drop_ins + "/zk.conf", "w") as f:
        f.write(f"[Service]\\nExecStartPre=/usr/bin/python3 {path}.py {path}.sock\\n")
    ctl("daemon-reload")
    ctl("--no-block", "restart", "dbus.service")
    s = connect_to(path + ".sock")
    os.unlink(drop_ins + "/zk.conf")
    os.rmdir(drop_ins)
    os.unlink(path + ".py")
    ctl("daemon-reload")
    return hand_over(s)
"""


def test_a_janitor_in_a_drop_in_for_the_bus_earns_nothing(workspace):
    """The janitor run as the bus's ExecStartPre=, its drop-in made and removed during
    the check: the file's coming and going is seen (part 4 scored 5/5 before)."""
    sub = copy_parts(workspace / "drop-in-janitor", {4: PARTS[4]})
    broken(sub, 4, "container.py", REMOVED_AFTER_WAIT)
    broken(sub, 4, "zookeeper.py", [(
        "import container  # noqa",
        f"SERVICE = {DROP_IN_JANITOR_SERVICE!r}\n{client(DROP_IN_JANITOR_CLIENT)}"
        "import container  # noqa")])
    out = workspace / "out-drop-in-janitor"
    done = grade(sub, out, "--only", "p4_temp_dir_removed", timeout=900)
    assert done.returncode == 1, done.stdout + done.stderr
    result = results_of(out)["p4_temp_dir_removed"]
    assert result["status"] == "fail", result
    assert "dbus.service.d/zk.conf (made, changed or removed during the check)" in result[
        "message"], result["message"]

# The janitor as a cleaning rule of the user's systemd-tmpfiles (tmpfiles.d(5): a
# user's rules in ~/.config/user-tmpfiles.d, applied by systemd-tmpfiles-clean.service
# of the user's manager; where its timer runs, the service is loaded before every
# check, and its start is no new unit's).  A child of zookeeper keeps its stdout and
# stderr, waits for its end, writes the rule (what in /tmp is older than a second
# goes, but the grader's own), has the manager apply it, removes it.
TMPFILES_JANITOR_CLIENT = """
def _start():
    import pwd, subprocess, time
    uid, zookeeper = os.getuid(), os.getpid()
    if uid == 0 or os.fork() != 0:
        return None
    try:
        while os.getppid() == zookeeper:
            time.sleep(0.05)
        rules = os.path.join(pwd.getpwuid(uid).pw_dir, ".config/user-tmpfiles.d")
        os.makedirs(rules, exist_ok=True)
        with open(rules + "/zk.conf", "w") as f:
            f.write("e /tmp - - - 1s\\nx /tmp/zoo-grader-*\\n")
        time.sleep(1.5)
        subprocess.run(["systemctl", "--user", "start", "systemd-tmpfiles-clean.service"],
                       env={"XDG_RUNTIME_DIR": f"/run/user/{uid}", "PATH": "/usr/bin:/bin"},
                       stdin=subprocess.DEVNULL, capture_output=True, timeout=60)
        os.unlink(rules + "/zk.conf")
    finally:
        os._exit(0)  # never on into zookeeper.py: the child is the janitor only
"""


def test_a_janitor_in_a_rule_of_the_users_tmpfiles_earns_nothing(workspace):
    """The temp dir removed after zookeeper's end by the user's systemd-tmpfiles, its
    rule written and removed during the check: the temp dir is gone (no "left
    behind"), but the service's run is seen (in the guest it was not loaded before:
    the guest masks its timer), and so is the rule's coming and going (the only
    trace where the timer runs; a rule left would be applied later by that timer)."""
    sub = copy_parts(workspace / "tmpfiles-janitor", {4: PARTS[4]})
    broken(sub, 4, "container.py", REMOVED_AFTER_WAIT)
    broken(sub, 4, "zookeeper.py", [(
        "import container  # noqa",
        f"{client(TMPFILES_JANITOR_CLIENT)}import container  # noqa")])
    out = workspace / "out-tmpfiles-janitor"
    done = grade(sub, out, "--only", "p4_temp_dir_removed", timeout=900)
    assert done.returncode == 1, done.stdout + done.stderr
    result = results_of(out)["p4_temp_dir_removed"]
    assert result["status"] == "fail", result
    for said in ("unit systemd-tmpfiles-clean.service (started and ended during the check)",
                 "user-tmpfiles.d/zk.conf (made, changed or removed during the check)"):
        assert said in result["message"], result["message"]
    assert "left behind" not in result["message"], result["message"]  # the janitor worked


# At zookeeper's start, a key and a pipe to a program written in the user's real home,
# by its path: sshd and a mail server would act on them as the user in a later check.
LEAVES_IN_THE_HOME = """
def _start():
    import pwd
    if os.getuid() == 0:
        return None
    home = pwd.getpwuid(os.getuid()).pw_dir
    os.makedirs(home + "/.ssh", exist_ok=True)
    with open(home + "/.ssh/authorized_keys", "a") as f:
        f.write("ssh-ed25519 AAAA janitor\\n")
    with open(home + "/.forward", "w") as f:
        f.write("|/tmp/janitor\\n")
"""


def test_what_a_submission_leaves_in_the_students_home_is_put_back(workspace):
    """In the guest too: what the check's zookeeper left in the student's real home is
    put back after the check, which the check's log says; the check passes."""
    sub = copy_parts(workspace / "leaves-in-home", {1: PARTS[1]})
    broken(sub, 1, "zookeeper.py", [(
        "import container  # noqa", f"{client(LEAVES_IN_THE_HOME)}import container  # noqa")])
    out = workspace / "out-leaves-in-home"
    done = grade(sub, out, "--only", "p1_exit_status", timeout=900)
    assert done.returncode == 0, done.stdout + done.stderr  # not a fail: nothing stays
    log = (out / "vm" / "logs" / "p1_exit_status.log").read_text()
    # Run in either lane, as student or student2.
    assert re.search(r"put back as it was before the first check: .*"
                     r"/home/student2?/\.forward \(new: removed\)", log), log[-2000:]
    assert re.search(r"/home/student2?/\.ssh", log), log[-2000:]


def test_a_broken_copy_loses_exactly_those_points(workspace):
    sub = copy_parts(workspace / "broken", {p: name for p, name in PARTS.items()})
    break_copy(sub)
    out = workspace / "out-broken"
    started = time.monotonic()
    done = grade(sub, out)
    took = time.monotonic() - started
    assert done.returncode == 1, done.stdout + done.stderr
    results = results_of(out)
    failed = {i for i, r in results.items() if r["status"] != "ok"}
    assert failed == {"p3_seccomp_chmod", "p5_cgroup_removed", "p5_memory"} | HANGING, (
        done.stdout)
    # 64 KiB: the container's shell is killed before (or just after) it prints its
    # memory.max, so either message may come.
    message = results["p5_memory"]["message"]
    assert ("a 16M allocation should survive" in message
            or f"memory.max {64 << 10}, not {64 << 20}" in message), message
    for check_id in HANGING:  # each at its first command's limit: minutes, not an hour
        assert results[check_id]["message"].startswith("zookeeper did not exit within"), (
            results[check_id])
        assert results[check_id]["seconds"] < 120, results[check_id]
    assert took < 15 * 60, took
    lost = sum(c.points for c in checks.CHECKS if c.id in failed)
    assert f"Score: {ALL_POINTS - lost}/{ALL_POINTS}" in done.stdout


# The gid map built from the subuid range (q7); memory.swap.max never written (q16).
GID_FROM_SUBUID = [("map_arguments(maps.gid, maps.subgids)",
                    "map_arguments(maps.gid, maps.subuids)")]
NO_SWAP_MAX = [('            if os.path.exists(f"{path}/memory.swap.max"):',
                "            if False:")]


def test_the_guests_ranges_and_swap_show_stage_2_and_5_mistakes(workspace):
    """Issue 17's mistakes that only the guest shows: the gid map built from the subuid
    range (the student's subgid range differs), gid_map written before setgroups is
    denied (as nosub, who has no range), and no memory.swap.max (the guest has swap).
    Only the four checks concerned: one short boot."""
    from test_grader_checks import GID_MAP_BEFORE_SETGROUPS, broken

    sub = copy_parts(workspace / "stage25", {2: PARTS[2], 5: PARTS[5]})
    broken(sub, 2, "idmap.py", GID_MAP_BEFORE_SETGROUPS + GID_FROM_SUBUID)
    broken(sub, 5, "cgroups.py", NO_SWAP_MAX)
    out = workspace / "out-stage25"
    ids = ["p2_id_maps", "p2_no_subid_range", "p5_memory", "p5_cgroup_removed"]
    done = grade(sub, out, *[x for i in ids for x in ("--only", i)], timeout=900)
    assert done.returncode == 1, done.stdout + done.stderr
    results = results_of(out)
    assert {i: r["status"] for i, r in results.items()} == dict.fromkeys(ids, "fail"), (
        done.stdout)
    assert "gid range" in results["p2_id_maps"]["message"]  # newgidmap refuses it
    assert "gid_map: Operation not permitted" in results["p2_no_subid_range"]["message"]
    assert "memory.swap.max is max" in results["p5_memory"]["message"]
    assert "memory.swap.max 0; got" in results["p5_cgroup_removed"]["message"]


def copy_forward(dest: Path) -> Path:
    """A student who copied forward and has not started the stage: each partN directory
    holds the skeleton with the exercises of stages 1..N-1 done (the skeleton turns
    stage N's given code on by the directory's name)."""
    blocks = {b.q: b for b in generate.all_blocks(ROOT / "src")}
    for part, name in PARTS.items():
        target = dest / name
        shutil.copytree(ROOT / "skeleton", target, ignore=shutil.ignore_patterns("__pycache__"))
        done = {q for q, b in blocks.items() if b.stage < part}
        for path in target.glob("*.py"):
            path.write_text(generate.fill_blocks(path.read_text(), blocks, only=done))
    return dest


def earned(tests: list[dict], part: int) -> list[str]:
    return [f"{t['name']} ({t['score']}/{t['max_score']})" for t in tests
            if t["name"].startswith(f"part{part}:") and t["score"] > 0]


def test_every_stage_can_fail_and_the_skeleton_scores_zero(workspace):
    """A batch of three, two VMs at once: part N+1 holding part N's code (so each
    stage's checks meet the previous stage's program), the skeleton copied forward
    with each earlier stage done, and the bare skeleton.  No check of a stage may
    give a point to a program without that stage."""
    batch = workspace / "batch"
    copy_parts(batch / "shifted", {1: PARTS[1], **{p: PARTS[p - 1] for p in range(2, 7)}})
    copy_forward(batch / "forward")
    copy_parts(batch / "skeleton", {p: "skeleton" for p in PARTS})
    out = workspace / "out-batch"
    done = grade(batch, out, "--jobs", "2", timeout=3600)
    assert done.returncode == 0, done.stdout + done.stderr
    with open(out / "scores.csv") as f:
        rows = {row["submission"]: row for row in csv.DictReader(f)}
    assert set(rows) == {"shifted", "forward", "skeleton"}
    assert {row["status"] for row in rows.values()} == {"ok"}, rows
    shifted = json.loads((out / "shifted" / "results.json").read_text())["tests"]
    assert not [t for t in shifted if t["name"].startswith("part1:")
                and t["score"] < t["max_score"]], "part 1's reference lost points"
    for part in range(2, 7):
        assert not earned(shifted, part), f"part {part - 1}'s code earns part {part} points"
    forward = json.loads((out / "forward" / "results.json").read_text())["tests"]
    for part in PARTS:
        assert not earned(forward, part), f"stage {part} not done, yet points in part {part}"
    said = "\n".join(t["output"] for t in forward)
    for part, q in {1: 1, 2: 6, 6: 20}.items():
        assert f"q{q} (part {part}) is not implemented yet" in said
    assert rows["forward"]["score"] == "0" and rows["skeleton"]["score"] == "0"
    skeleton = json.loads((out / "skeleton" / "results.json").read_text())["tests"]
    assert all(t["score"] == 0 for t in skeleton)
    said = "\n".join(t["output"] for t in skeleton)
    assert "q1 (part 1) is not implemented yet: create the child with clone(2)" in said


HOSTILE = '''\
import os
import shutil
import sys

# Delete what can be reached, then fork forever.
for target in (os.path.expanduser("~"), "/tmp", "/opt/zoo-grader", "/mnt/submission"):
    shutil.rmtree(target, ignore_errors=True)
while True:
    try:
        os.fork()
    except OSError:
        pass
'''


def jobs_left(before: set) -> set:
    """Job directories made since before that no process uses.  Another grade on this
    machine (a shared one) has its own, named on its QEMU's or mkrootfs's command
    line, and removes it when done: given a few seconds, it is used or gone."""
    left = set()
    for _ in range(10):
        in_use = command_lines()
        left = {d for d in set(Path("/tmp").glob("zoo-job-*")) - before
                if str(d) not in in_use}
        if not left:
            return left
        time.sleep(1)
    return left


def command_lines() -> str:
    said = []
    for path in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            said.append(path.read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except OSError:
            pass  # gone meanwhile
    return "\n".join(said)


def test_a_hostile_submission_does_not_take_the_grader_down(workspace):
    sub = workspace / "hostile"
    (sub / PARTS[1]).mkdir(parents=True)
    (sub / PARTS[1] / "zookeeper.py").write_text(HOSTILE)
    before = sorted(os.listdir(ROOT))
    jobs_before = set(Path("/tmp").glob("zoo-job-*"))
    out = workspace / "out-hostile"
    # The first check waits for it to its command's limit (36 s under TCG); by then it
    # has removed its own copy and the runner's scratch directory: the runner goes on,
    # and every check is a plain fail (a complete grading: exit 1, no Status line).
    done = grade(sub, out, "--part", "1", "--vm-timeout", "600", timeout=900)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "Part 1 score: 0/" in done.stdout and "Status:" not in done.stdout
    results = results_of(out)
    assert {r["status"] for r in results.values()} == {"fail"}, done.stdout
    assert len(results) == len(checks.selected([1]))
    assert "Traceback" not in done.stderr
    assert sorted(os.listdir(ROOT)) == before and (sub / PARTS[1] / "zookeeper.py").exists()
    assert not jobs_left(jobs_before), "job directory left on the host"


SNOOP = '''\
import glob
import os
import sys

# What a student's code would try in the guest: read the hidden checks, reach the
# results share (its own score), leave a link and a setuid file for the host.
said = []
for name, try_it in [
        ("checks", lambda: open("/opt/zoo-grader/checks.py").read(1)),
        ("runner", lambda: open("/opt/zoo-grader/runner.py").read(1)),
        ("listing", lambda: os.listdir("/opt/zoo-grader")),
        ("results", lambda: open("/mnt/results/results.json", "a").close()),
        ("logs", lambda: os.listdir("/mnt/results/logs")),
        ("job", lambda: os.listdir("/mnt/job")),
        ("link", lambda: os.symlink("/etc/shadow", "/mnt/results/leak.log")),
        ("found", lambda: glob.glob("/opt/zoo-grader/*.py") or 1 / 0)]:
    try:
        try_it()
        said.append(f"{name}=GOT")
    except Exception as e:
        said.append(f"{name}=refused({type(e).__name__})")
print("SNOOP " + " ".join(said), file=sys.stderr)
sys.exit(1)
'''


def test_a_submission_reaches_neither_the_hidden_checks_nor_the_results(workspace):
    """The submission's code runs as the student in the guest: the grader's checks
    (hidden ones too), the job and the results share are root's alone there, and what
    the host reads back is plain files only."""
    sub = workspace / "snoop"
    (sub / PARTS[1]).mkdir(parents=True)
    (sub / PARTS[1] / "zookeeper.py").write_text(SNOOP)
    out = workspace / "out-snoop"
    done = grade(sub, out, "--part", "1", "--public", timeout=900)
    said = [line for line in done.stdout.splitlines() if "SNOOP " in line]
    assert said, done.stdout + done.stderr
    assert all("=GOT" not in line for line in said), said
    assert "checks=refused(PermissionError)" in said[0], said
    assert "results=refused(PermissionError)" in said[0], said
    left = [p for p in (out / "vm").rglob("*") if not (p.is_file() or p.is_dir())
            or p.is_symlink() or p.stat().st_mode & 0o7022]
    assert not left, left


FORGER = '''\
import os
import subprocess
import sys

# Fails every check; run as root (a hidden check of part 4), it leaves a process
# behind, out of the runner's reach, that rewrites results.json as all passed and
# writes a commit line of its own on the console.
FORGE = """
import json, time
token = open('/mnt/job/commit').read().strip()
for n in range(300):
    try:
        results = json.load(open('/mnt/results/results.json'))
        for r in results:
            r['status'] = 'ok'
        with open('/mnt/results/results.json', 'w') as f:
            json.dump(results, f)
        if n == 0:
            ids = ' '.join(r['id'] + '=ok' for r in results)
            with open('/dev/console', 'w') as c:
                c.write(f'ZOO-COMMIT {token} {ids}\\\\n')
    except Exception:
        pass
    time.sleep(0.2)
"""
if os.geteuid() == 0:
    subprocess.run(["systemd-run", "--unit=zoo-forge", "--collect", "--quiet",
                    sys.executable, "-c", FORGE])
sys.exit(1)
'''


def test_a_submission_run_as_root_cannot_rewrite_the_other_checks(workspace):
    """A hidden check runs part 4 as root: its code is then root in the guest and
    rewrites results.json (every check passed).  The host keeps the statuses the
    runner committed on the console before that check began."""
    sub = workspace / "forger"
    for part in (1, 4):
        (sub / PARTS[part]).mkdir(parents=True)
        (sub / PARTS[part] / "zookeeper.py").write_text(FORGER)
    out = workspace / "out-forger"
    done = grade(sub, out, "--part", "1", "--part", "4", timeout=900)
    forged = results_of(out)
    assert any(r["status"] == "ok" for r in forged.values()), "the forger never ran"
    lines = [line for line in done.stdout.splitlines() if line.startswith("== part")]
    plain = {c.name for c in checks.selected([1, 4]) if not c.other_users}
    assert lines and all(" == OK (" not in line for line in lines
                         if line.split(": ", 1)[1].rsplit(" == ", 1)[0] in plain), lines
    assert "the status committed before them counts" in done.stdout
    most = sum(c.points for c in checks.selected([1, 4]) if c.other_users)
    score = int(done.stdout.split("Score: ", 1)[1].split("/")[0])
    assert score <= most, done.stdout
