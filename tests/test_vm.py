"""The grader's VM (grader/image.py's image, booted by grader/qemu.py) provides what the
checks rely on, for real.

One boot runs a job that records facts about the guest into the results share; the tests
below read them. That guest, as every guest unless told otherwise, is the saved booted
one restored (grader/qemu.py; the first boot of a new image saves it). Short boots check
that a hanging job is killed at the timeout, that each restored guest gets its own job
options, clock and random seed, that the image still boots without the saved guest, and
that a saved guest that cannot be restored is replaced by a boot.
The image is built once and cached: as root with debootstrap, as another user with
mmdebstrap and the user's subordinate ranges (tests/test_vm_image.py); where neither can
work and nothing is cached the tests are skipped. Under TCG the two boots take about a
minute.
"""

import os
import pwd
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
needs_vm = pytest.mark.vm


sys.path.insert(0, str(ROOT / "grader"))
import image  # noqa: E402
import qemu  # noqa: E402

FACTS_JOB = r"""#!/bin/sh
# Records facts about the guest: /mnt/results/facts/NAME.out (stdout+stderr) and NAME.rc.
F=/mnt/results/facts
mkdir -p "$F"
fact() {
    name=$1
    shift
    timeout 120 "$@" > "$F/$name.out" 2>&1 < /dev/null
    echo $? > "$F/$name.rc"
}
AS_STUDENT="runuser -u student -- env XDG_RUNTIME_DIR=/run/user/1000
    DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/1000/bus"
# Count the kernel's static branches flipped from here on (grader/guest/zoo-setup:
# none may be while the checks run): a kprobe on the function that patches them.
T=/sys/kernel/tracing
[ -d "$T/events" ] || mount -t tracefs tracefs "$T"
for sym in arch_jump_label_transform_apply arch_jump_label_transform; do
    if grep -q " $sym\$" /proc/kallsyms &&
        echo "p:zoo/$sym $sym" >> "$T/kprobe_events" &&
        echo 1 > "$T/events/zoo/$sym/enable"; then
        echo "$sym" >> /mnt/results/patch-probes
    fi
done

fact cgroup_fstype stat -f -c %T /sys/fs/cgroup
fact cpus_online cat /sys/devices/system/cpu/online
fact cgroup_controllers cat /sys/fs/cgroup/cgroup.controllers
fact student getent passwd student
fact subuid grep '^student:' /etc/subuid
fact subgid grep '^student:' /etc/subgid
fact nosub getent passwd nosub
fact nosub_ranges grep '^nosub:' /etc/subuid /etc/subgid
fact swap swapon --show=TYPE,SIZE --noheadings --bytes
fact user_manager \
    cat /sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service/cgroup.controllers
fact scope_true $AS_STUDENT systemd-run --user --scope -p Delegate=yes true
fact scope_controllers $AS_STUDENT systemd-run --user --scope -p Delegate=yes \
    sh -c 'cat "/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)/cgroup.controllers"'
# What stage 5 does in its scope: move to a leaf, enable controllers, limit a child.
fact scope_subtree $AS_STUDENT systemd-run --user --scope -p Delegate=yes sh -c '
    cg="/sys/fs/cgroup$(cut -d: -f3 /proc/self/cgroup)"
    mkdir "$cg/leaf" && echo $$ > "$cg/leaf/cgroup.procs" &&
    echo "+memory +cpu +pids" > "$cg/cgroup.subtree_control" &&
    mkdir "$cg/zoo" && echo 64M > "$cg/zoo/memory.max" && echo 20 > "$cg/zoo/pids.max" &&
    echo "50000 100000" > "$cg/zoo/cpu.max" &&
    cat "$cg/zoo/memory.max" "$cg/zoo/pids.max" "$cg/zoo/cpu.max"'
fact unshare_user runuser -u student -- unshare -Ur id -u
fact newuidmap runuser -u student -- \
    unshare --map-user=0 --map-group=0 --map-auto cat /proc/self/uid_map
fact imports runuser -u student -- python3 -c '
import importlib.metadata as m, pyroute2, pyseccomp, pytest
print(" ".join(f"{p}=={m.version(p)}" for p in ("pyroute2", "pyseccomp", "pytest")))'
fact tun stat -c %a /dev/net/tun
fact slirp_version slirp4netns --version
fact addr ip -4 -o addr show
fact sub_read cat /mnt/submission/hello.txt
fact sub_write touch /mnt/submission/written-by-guest
fact sub_mount grep ' /mnt/submission ' /proc/mounts
fact share_owner sh -c 'touch /mnt/results/owned && stat -c %u:%g /mnt/results/owned'
fact clock date +%s
# The job's processes are not randomized (zoo-job's setarch -R); one that gains
# privileges through a setuid file is.
fact aslr cat /proc/sys/kernel/randomize_va_space
fact personality cat /proc/self/personality
install -m 4755 -o root /bin/cat /usr/local/bin/zoo-setuid-cat
fact setuid_personality runuser -u student -- /usr/local/bin/zoo-setuid-cat /proc/self/personality
fact libc_twice sh -c 'grep -m1 libc /proc/self/maps; grep -m1 libc /proc/self/maps'
fact setuid_libc_twice runuser -u student -- sh -c '
    for i in 1 2; do /usr/local/bin/zoo-setuid-cat /proc/self/maps | grep -m1 libc; done'
fact random sh -c 'head -c 16 /dev/urandom | od -An -tx1'
# The path stage 6 takes: slirp4netns as the student, a server on 192.168.200.1.
python3 -m http.server --bind 192.168.200.1 8000 --directory /mnt/submission \
    > /dev/null 2>&1 &
server=$!
# Python's start takes seconds under TCG on a busy host: wait until it answers.
i=0
until busybox wget -q -O /dev/null http://192.168.200.1:8000/hello.txt 2> /dev/null; do
    i=$((i + 1)); [ $i -lt 300 ] || break; sleep 0.2
done
fact slirp_reach runuser -u student -- sh -c '
    unshare -Urn sleep 60 &
    pid=$!
    sleep 1
    slirp4netns --configure --mtu=65520 --disable-host-loopback "$pid" tap0 \
        > /tmp/slirp.log 2>&1 &
    slirp=$!
    in_ns() { nsenter --preserve-credentials -U -n -t "$pid" "$@"; }
    i=0
    until in_ns ip -4 -o addr show tap0 2>/dev/null | grep -q 10.0.2.100; do
        i=$((i + 1)); [ $i -lt 100 ] || { cat /tmp/slirp.log; exit 1; }; sleep 0.2
    done
    in_ns timeout 30 busybox wget -q -O - http://192.168.200.1:8000/hello.txt
    status=$?
    kill "$slirp" "$pid"
    exit $status'
kill "$server"
# Everything above a grading does too: a finite cpu.max, connections over TCP.
fact patched cat "$T/kprobe_profile"  # name, hits, misses
echo facts recorded
"""


def _need_image():
    if not shutil.which("qemu-system-x86_64") and not os.environ.get("ZOO_QEMU"):
        pytest.skip("qemu-system-x86_64 is not installed")
    if image.cached_image() is None and os.geteuid() != 0:
        problem = image.rootless_problem()
        if problem:
            pytest.skip(f"no cached VM image, and it cannot be built without root: {problem}")
    return image.build_image(log=lambda msg: print(msg, file=sys.stderr))


def _job(tmp: Path, script: str) -> Path:
    job = tmp / "job"
    job.mkdir(parents=True)
    (job / "run.sh").write_text(script)
    (job / "run.sh").chmod(0o755)
    return job


@pytest.fixture(scope="module")
def built_image():
    return _need_image()


BOOT_WINDOW = []  # the host's clock before and after the facts boot


@pytest.fixture(scope="module")
def facts_boot(built_image, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("facts")
    submission = tmp / "submission"
    submission.mkdir()
    (submission / "hello.txt").write_text("hello from the submission\n")
    BOOT_WINDOW.append(time.time())
    result = qemu.boot(qemu.Job(_job(tmp, FACTS_JOB), submission, tmp / "results", timeout=420),
                       qemu.Machine(built_image))
    assert not result.timed_out, f"facts job timed out: see {result.console_log}"
    assert result.exit_status == 0, (result.error, result.job_log.read_text()
                                     if result.job_log.exists() else "no job.log")
    BOOT_WINDOW.append(time.time())
    print(f"facts boot: {result.accel}, job started after {result.boot_seconds:.1f} s, "
          f"total {result.total_seconds:.1f} s", file=sys.stderr)
    return result


class Facts:
    def __init__(self, directory: Path):
        self.directory = directory

    def __call__(self, name: str, ok: bool = True) -> str:
        out = (self.directory / f"{name}.out").read_text()
        rc = int((self.directory / f"{name}.rc").read_text())
        if ok:
            assert rc == 0, f"{name}: exit status {rc}: {out}"
        return out


@pytest.fixture(scope="module")
def fact(facts_boot):
    return Facts(facts_boot.results_dir / "facts")


@needs_vm
def test_boot_result(facts_boot):
    assert facts_boot.accel in ("tcg", "kvm")
    assert facts_boot.boot_seconds is not None
    assert 0 < facts_boot.boot_seconds <= facts_boot.total_seconds
    assert facts_boot.error is None
    assert "facts recorded" in facts_boot.job_log.read_text()
    assert "ZOO-JOB-EXIT=0" in facts_boot.console_log.read_text(errors="replace")


@needs_vm
def test_no_kernel_code_is_patched_while_the_job_runs(fact, facts_boot):
    """The static branches a grading would flip (the first finite cpu.max, the first
    TCP connection) were flipped at boot by zoo-setup: flipping one while a check runs
    can stall a TCG guest for good (the next test)."""
    probes = (facts_boot.results_dir / "patch-probes").read_text().split()
    assert probes, "no kprobe on the kernel's jump-label patching could be set"
    hits = {name: int(count) for name, count, _ in map(str.split, fact("patched").splitlines())
            if name in probes}
    assert set(hits) == set(probes), fact("patched")
    assert sum(hits.values()) == 0, f"kernel code patched while the job ran: {hits}"


STALL_JOB = r"""#!/bin/sh
# A finite cpu.max set and lifted again and again on an empty cgroup, while four
# processes sleep in select() for 0.2 ms at a time on both vCPUs (the path of the
# stalled vCPUs of NOTES.md).  Before zoo-setup kept the CFS bandwidth branch on, each
# round patched the scheduler's code twice, and this guest stalled within seconds.
mkdir /sys/fs/cgroup/toggled
for i in 1 2 3 4; do
    python3 -c '
import select, time
end = time.monotonic() + SECONDS
while time.monotonic() < end:
    select.select([], [], [], 0.0002)
' &
done
python3 - << 'EOF'
import time
end = time.monotonic() + SECONDS
rounds, said = 0, time.monotonic()
while time.monotonic() < end:
    for limit in ("50000 100000", "max 100000"):
        with open("/sys/fs/cgroup/toggled/cpu.max", "w") as f:
            f.write(limit)
    rounds += 1
    if time.monotonic() - said > 5:
        said = time.monotonic()
        print("rounds", rounds, flush=True)
print("done", rounds, flush=True)
EOF
wait
"""


@needs_vm
def test_a_cpu_limit_set_and_lifted_again_and_again_does_not_stall_the_guest(
        built_image, facts_boot, tmp_path):
    import vm

    seconds = 40
    result = qemu.boot(
        qemu.Job(_job(tmp_path, STALL_JOB.replace("SECONDS", str(seconds))), None,
                 tmp_path / "results", timeout=facts_boot.boot_seconds * 2 + seconds + 120,
                 watchdog=vm.Silence(tmp_path / "results" / "job.log", 30)),
        qemu.Machine(built_image))
    log = result.job_log.read_text() if result.job_log.exists() else ""
    assert result.stopped is None, f"the guest stalled ({result.stopped}): {log}"
    assert result.exit_status == 0, (result.error, log)
    assert re.search(r"^done \d+$", log, re.M), log


@needs_vm
def test_both_vcpus_are_online_after_zoo_setup_took_one_offline(fact):
    assert fact("cpus_online").strip() == "0-1"


@needs_vm
def test_cgroup2_with_controllers(fact):
    assert fact("cgroup_fstype").strip() == "cgroup2fs"
    assert {"memory", "cpu", "pids"} <= set(fact("cgroup_controllers").split())


@needs_vm
def test_student_with_subid_ranges(fact):
    assert fact("student").split(":")[2] == "1000"
    # Different ranges: a gid map built from the subuid range shows (p2_id_maps).
    assert fact("subuid").strip() == "student:100000:65536"
    assert fact("subgid").strip() == "student:300000:65536"


@needs_vm
def test_a_user_without_subid_ranges(fact):
    """nosub, for p2_no_subid_range: a user, but in neither /etc/subuid nor /etc/subgid."""
    assert fact("nosub").split(":")[2] == "1001"
    assert fact("nosub_ranges", ok=False) == ""


@needs_vm
def test_swap(fact):
    """Swap enough that a 200M hog under -m 64M would swap rather than die, were
    memory.swap.max not 0 (p5_memory)."""
    kind, size = fact("swap").split()
    assert kind == "file" and int(size) >= 400 << 20


@needs_vm
def test_user_manager_delegates_controllers(fact):
    assert {"memory", "cpu", "pids"} <= set(fact("user_manager").split())


@needs_vm
def test_systemd_run_user_scope(fact):
    fact("scope_true")
    assert {"memory", "cpu", "pids"} <= set(fact("scope_controllers").split())


@needs_vm
def test_scope_can_limit_a_child_cgroup(fact):
    lines = fact("scope_subtree").splitlines()
    assert lines[-3:] == ["67108864", "20", "50000 100000"]


@needs_vm
def test_rootless_user_namespaces(fact):
    assert fact("unshare_user").strip() == "0"
    maps = [line.split() for line in fact("newuidmap").splitlines()]
    assert ["0", "1000", "1"] in maps
    assert ["1", "100000", "65535"] in maps


@needs_vm
def test_pinned_python_packages(fact):
    assert fact("imports").split() == ["pyroute2==0.9.7", "pyseccomp==0.1.2", "pytest==9.0.3"]


@needs_vm
def test_tun_and_slirp4netns(fact):
    assert fact("tun").strip() == "666"
    assert "slirp4netns version" in fact("slirp_version")


@needs_vm
def test_address_for_network_checks(fact):
    assert "inet 192.168.200.1/24" in fact("addr")


@needs_vm
def test_slirp4netns_reaches_the_guest_address(fact):
    assert fact("slirp_reach") == "hello from the submission\n"


@needs_vm
def test_submission_share_is_read_only(fact):
    assert fact("sub_read") == "hello from the submission\n"
    assert int((fact.directory / "sub_write.rc").read_text()) != 0
    assert "Read-only file system" in fact("sub_write", ok=False)
    assert fact("sub_mount").split()[3].split(",")[0] == "ro"


@needs_vm
def test_qemu_writes_the_share_as_nobody_when_root_grades(fact, facts_boot):
    """9p (security_model=none) makes the guest's files as QEMU's own user: run by root,
    that user is nobody (-runas), and the host gets the files back as its own."""
    nobody = pwd.getpwnam("nobody")
    expected = (f"{nobody.pw_uid}:{nobody.pw_gid}" if os.geteuid() == 0
                else f"{os.geteuid()}:{os.getegid()}")
    assert fact("share_owner").strip() == expected
    owned = (facts_boot.results_dir / "owned").stat()
    assert (owned.st_uid, owned.st_gid) == (os.geteuid(), os.getegid())


@needs_vm
def test_the_job_runs_unrandomized_and_a_setuid_program_randomized(fact):
    """zoo-job's setarch -R: ADDR_NO_RANDOMIZE (0x0040000, personality(2)) for the job,
    so two processes map libc at one address; execve(2) clears it for a program
    started from a setuid file (newuidmap), whose libc then moves from run to run (two
    random layouts alike: ~2**-28 on amd64)."""
    assert fact("aslr").strip() == "2"  # the kernel randomizes, but for the flag
    assert int(fact("personality"), 16) & 0x0040000
    first, second = (line.split()[0] for line in fact("libc_twice").splitlines())
    assert first == second
    assert not int(fact("setuid_personality"), 16) & 0x0040000
    first, second = (line.split()[0] for line in fact("setuid_libc_twice").splitlines())
    assert first != second


@needs_vm
def test_the_facts_guest_was_restored_with_the_hosts_clock(facts_boot, fact):
    assert facts_boot.restored
    before, after = BOOT_WINDOW
    assert before - 5 <= int(fact("clock")) <= after + 5


@needs_vm
def test_hanging_job_is_killed_at_the_timeout(built_image, facts_boot, tmp_path, capsys):
    """Killed at the timeout, and what its vCPUs were doing kept first (grader/stuck.py):
    an idle guest's, which vm.py symbols names with the guest's own /proc/kallsyms."""
    import stuck
    import vm

    # Long enough for the job to start and read kallsyms (with margin for TCG's drift),
    # far short of 1000 s.
    timeout = facts_boot.boot_seconds * 1.6 + 20
    started = time.monotonic()
    script = ("#!/bin/sh\ncat /proc/kallsyms > /mnt/results/kallsyms\n"
              "echo sleeping\nsleep 1000\n")
    result = qemu.boot(qemu.Job(_job(tmp_path, script), None, tmp_path / "results",
                                timeout=timeout), qemu.Machine(built_image))
    elapsed = time.monotonic() - started
    assert result.timed_out
    assert result.exit_status is None
    assert result.boot_seconds is not None, f"the job never started: {result.console_log}"
    assert "timed out" in result.error
    assert elapsed < timeout + 20
    assert (tmp_path / "results" / "job.log").read_text() == "sleeping\n"
    dump = tmp_path / "results" / stuck.CPUS_AT_STOP
    text = dump.read_text()
    assert text.count("=== sample") == stuck.SAMPLES and "could not" not in text, text
    assert text.count("RIP=") == 2 * stuck.SAMPLES  # two vCPUs
    capsys.readouterr()
    assert vm.main(["symbols", str(dump), "--kallsyms",
                    str(tmp_path / "results" / "kallsyms")]) == 0
    named = capsys.readouterr().out
    # Kernel code by name (the guest sleeps: its vCPUs idle, in the idle loop).
    assert re.search(r"^cpu \d: RIP [a-z_]\w*\+0x", named, re.M), named
    assert "do_idle+0x" in named, named


def test_cpio_and_module_order(tmp_path):
    """The pure helpers, without a VM: newc archive layout and dependency order."""
    archive = image._cpio_newc([("init", 0o100755, b"#!/bin/sh\n", 0)])
    assert archive.startswith(b"070701")
    assert b"init\0" in archive and b"TRAILER!!!\0" in archive
    assert len(archive) % 512 == 0
    moddir = tmp_path
    (moddir / "modules.dep").write_text(
        "kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2.ko\n"
        "kernel/lib/crc16.ko:\nkernel/fs/mbcache.ko:\nkernel/fs/jbd2.ko:\n"
        "kernel/crypto/crc32c_generic.ko:\n")
    (moddir / "modules.builtin").write_text("kernel/drivers/virtio/virtio.ko\n")
    order = image._module_load_order(moddir, ["crc32c_generic", "ext4", "virtio"])
    assert order[0] == "kernel/crypto/crc32c_generic.ko"
    assert order[-1] == "kernel/fs/ext4/ext4.ko"
    assert set(order[1:-1]) == {"kernel/lib/crc16.ko", "kernel/fs/mbcache.ko",
                                "kernel/fs/jbd2.ko"}
    with pytest.raises(ValueError):
        image._module_load_order(moddir, ["no_such_module"])


def test_extract_vmlinux_finds_the_compressed_elf():
    import lzma

    elf = b"\x7fELF" + bytes(range(256)) * 64
    bzimage = b"MZ" + b"\0" * 1000 + b"\x1f\x8b\x08 not gzip" + lzma.compress(elf) + b"sig"
    assert image.extract_vmlinux(bzimage) == elf
    with pytest.raises(ValueError):
        image.extract_vmlinux(b"MZ" + b"\0" * 100)


def _job_said(result) -> list[str]:
    return result.job_log.read_text().split("\n")


TELL = "#!/bin/sh\nhead -c 16 /dev/urandom | od -An -tx1\ndate +%s\n"


@needs_vm
def test_each_restored_guest_gets_its_own_options_clock_and_seed(built_image, fact,
                                                                 tmp_path, monkeypatch):
    """ZOO-JOB-GO carries the job's timeout and journal option, the host's clock and a
    seed: two guests restored from the same saved state differ where they must.  The
    first is told a clock of 2030 (no guest could have that of itself); zoo-job stops
    with ZOO-JOB-ERROR if the kernel will not reseed its generator from the seed."""
    in_2030 = 1893456000
    monkeypatch.setattr(qemu._Console, "clock", staticmethod(lambda: in_2030))
    first = qemu.boot(qemu.Job(_job(tmp_path / "a", TELL + "sleep 300\n"), None,
                               tmp_path / "a" / "results", timeout=300, job_timeout=5,
                               save_journal=True), qemu.Machine(built_image))
    monkeypatch.undo()
    before = time.time()
    second = qemu.boot(qemu.Job(_job(tmp_path / "b", TELL), None, tmp_path / "b" / "results",
                                timeout=300), qemu.Machine(built_image))
    after = time.time()
    assert first.restored and second.restored
    assert first.exit_status == 124, (first.error, first.console_log)
    assert (first.results_dir / "journal.log").read_text().strip()
    assert second.exit_status == 0 and not (second.results_dir / "journal.log").exists()
    randoms = {_job_said(first)[0], _job_said(second)[0], fact("random").strip("\n")}
    assert len(randoms) == 3, randoms
    assert in_2030 <= int(_job_said(first)[1]) <= in_2030 + 60
    assert before - 5 <= int(_job_said(second)[1]) <= after + 5


@needs_vm
def test_the_image_still_boots_without_the_saved_guest(built_image, tmp_path):
    result = qemu.boot(qemu.Job(_job(tmp_path, TELL), None, tmp_path / "results", timeout=420),
                       qemu.Machine(built_image, restore=False))
    assert result.exit_status == 0, (result.error, result.console_log)
    assert not result.restored
    assert b"ZOO-JOB-READY" in result.console_log.read_bytes()


# A stand-in for QEMU 10.0, which has no -runas (QEMU's removed-features.rst): it
# refuses -runas as 10.0 does, and gives the real QEMU -run-with user=X as -runas X
# (this host's QEMU predates -run-with user=).  argv.log gets what it was given.
QEMU_10 = """#!{python}
import os, sys
argv = sys.argv[1:]
if argv == ["--version"]:
    sys.exit(print("QEMU emulator version 10.0.2 (a stand-in)"))
with open({log!r}, "a") as log:
    print(argv, file=log)
if "-runas" in argv:
    sys.exit("qemu-system-x86_64: -runas: invalid option")
if "-run-with" in argv:
    at = argv.index("-run-with")
    argv[at:at + 2] = ["-runas", argv[at + 1].removeprefix("user=")]
os.execv({real!r}, [{real!r}, *argv])
"""


@needs_vm
def test_a_qemu_without_runas_still_runs_the_guest_as_nobody(built_image, tmp_path,
                                                            monkeypatch):
    """Root's grader on Debian 13 (QEMU 10.0): every boot failed on -runas, which 10.0
    removed.  It now gives up root with -run-with user=, and the guest's files
    reach the share as nobody's, as with -runas."""
    real = qemu._qemu_binary()
    stand_in = tmp_path / "qemu-10"
    stand_in.write_text(QEMU_10.format(python=sys.executable, log=str(tmp_path / "argv.log"),
                                       real=real))
    stand_in.chmod(0o755)
    monkeypatch.setenv("ZOO_QEMU", str(stand_in))
    job = _job(tmp_path, "#!/bin/sh\ntouch /mnt/results/owned\n"
                         "stat -c %u:%g /mnt/results/owned\n")
    result = qemu.boot(qemu.Job(job, None, tmp_path / "results", timeout=420),
                       qemu.Machine(built_image, restore=False))
    assert result.exit_status == 0, (result.error, result.console_log)
    given = (tmp_path / "argv.log").read_text()
    assert "-runas" not in given
    if os.geteuid() == 0:
        nobody = pwd.getpwnam("nobody")
        assert "'-run-with'" in given
        assert _job_said(result)[0] == f"{nobody.pw_uid}:{nobody.pw_gid}"
    else:  # QEMU is the user's own: nothing to give up
        assert "-run-with" not in given
        assert _job_said(result)[0] == f"{os.geteuid()}:{os.getegid()}"


@needs_vm
def test_a_saved_guest_that_cannot_be_restored_is_replaced(built_image, tmp_path, capfd):
    """A saved state QEMU cannot load (here: cut short) costs a boot, not the job; it is
    removed, and the next job saves a new one.  The image's files are linked into a
    directory of the test's own, so the saved guest there is the test's too."""
    own = tmp_path / "image"
    own.mkdir()
    for name in ("vmlinux", "initramfs.cpio", "rootfs.ext4"):
        (own / name).symlink_to(built_image.dir / name)
    paths = image.ImagePaths(key=built_image.key, dir=own, kernel=own / "vmlinux",
                             initramfs=own / "initramfs.cpio", rootfs=own / "rootfs.ext4",
                             manifest=built_image.manifest)
    first = qemu.boot(qemu.Job(_job(tmp_path / "a", TELL), None, tmp_path / "a" / "results",
                               timeout=420), qemu.Machine(paths))
    assert first.exit_status == 0 and first.restored, (first.error, first.console_log)
    [saved] = (own / qemu.SAVED_DIR).glob("*/state")
    with open(saved, "r+b") as f:
        f.truncate(4096)
    second = qemu.boot(qemu.Job(_job(tmp_path / "b", TELL), None, tmp_path / "b" / "results",
                                timeout=420), qemu.Machine(paths))
    assert second.exit_status == 0 and not second.restored, (second.error, second.console_log)
    said = capfd.readouterr().err.splitlines()
    assert said[-1].startswith("vm: cannot restore the saved booted guest: ")
    assert said[-1].endswith("; booting instead")
    assert not saved.parent.exists()
    third = qemu.boot(qemu.Job(_job(tmp_path / "c", TELL), None, tmp_path / "c" / "results",
                               timeout=420), qemu.Machine(paths))
    assert third.exit_status == 0 and third.restored, (third.error, third.console_log)
    assert saved.stat().st_size > 4096


def test_the_saved_guest_is_named_by_what_a_restore_needs():
    """The saved guest's key: the QEMU binary's --version, its whole command line and,
    under KVM (-cpu host), the host's CPU; any of them changed, another saved guest."""
    argv = [sys.executable, "-m", "2G", "-smp", "2"]
    key = qemu._saved_key(argv, "tcg")
    assert key == qemu._saved_key(list(argv), "tcg")
    assert key != qemu._saved_key([*argv[:2], "4G", *argv[3:]], "tcg")
    assert key != qemu._saved_key(["/bin/true", *argv[1:]], "tcg")  # another --version
    assert qemu._host_cpu() and key != qemu._saved_key(argv, "kvm")
    assert "MHz" not in qemu._host_cpu() and "bogomips" not in qemu._host_cpu()


@needs_vm
def test_vm_py_save_shows_the_saved_guest_restores(built_image):
    """What make vm and Gradescope's setup.sh run after the image: the saved booted
    guest saved if it is not yet, and restored once."""
    done = subprocess.run([sys.executable, str(ROOT / "grader" / "vm.py"), "save"],
                          capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr
    assert re.search(r"^vm: the saved booted guest restores: its job started [\d.]+ s after "
                     r"QEMU's start \((tcg|kvm)\)$", done.stderr, re.M), done.stderr
