"""Booting the grader's VM image (grader/image.py) once for one job, under QEMU.

The guest boots, says `ZOO-JOB-READY` on its console and waits for the host's
`ZOO-JOB-GO` line there (the job's options, the host's clock; grader/guest/zoo-job);
then it runs /mnt/job/run.sh as root, writes console markers `ZOO-JOB-START`,
`ZOO-JOB-EXIT=<status>`, `ZOO-JOB-ERROR=<message>` and powers off; boot() watches the
console for them and returns a BootResult.  When QEMU has ended, boot() writes
the run's times to the results as boot-times.json (TIMES): QEMU start to the job's
start, to its end and to QEMU gone, in seconds, for bench/grading.py to split a
submission's time into boot, checks and power-off.

A booted guest, saved once: the first boot of an image stops the guest where it
waits for ZOO-JOB-GO and saves it (QEMU's migration to a file, with a copy of its
disk); every later boot restores that state (~0.5 s under TCG, where a boot takes
10-14 s) and sends the waiting guest its job.  The copies go to the image's
directory, under a key of everything that must match for a restore: QEMU's
version, its command line, the host's CPU under KVM.

Standard library only (Python >= 3.10).
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import json
import os
import pwd
import re
import shutil
import signal
import socket
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

import stuck
from children import die_with_parent
from image import (
    Arch,
    ImagePaths,
    VMError,
    build_image,
    chown_for_sudo_user,
    get_arch,
    recipe_arch,
)
from qmp import QMP, QMPError

MARK_READY = b"ZOO-JOB-READY"
MARK_START = b"ZOO-JOB-START"
MARK_EXIT = b"ZOO-JOB-EXIT="
TIMES = "boot-times.json"  # in the results: BootResult.times()
# A marker counts at a line's start only (zoo-job's say() writes it so): the kernel
# writes on the same console lines of its own that hold a process's name (comm), which
# the submission chooses ("[ 15.9] ZOO-JOB-EXIT=7 invoked oom-killer: ...").
MARK_EXIT_RE = re.compile(rb"(?:^|[\r\n])ZOO-JOB-EXIT=(\d+)")
MARK_ERROR_RE = re.compile(rb"(?:^|[\r\n])ZOO-JOB-ERROR=([^\r\n]*)")


def marked(seen: bytes, marker: bytes) -> bool:
    """Does seen, the console's last bytes, hold marker at a line's start?"""
    return re.search(rb"[\r\n]" + re.escape(marker), seen) is not None


@dataclass
class BootResult:
    exit_status: int | None  # run.sh's exit status (ZOO-JOB-EXIT), None if it never came
    timed_out: bool  # the host killed QEMU at its timeout
    accel: str  # "tcg" or "kvm"
    boot_seconds: float | None  # QEMU start to ZOO-JOB-START, None if the job never started
    total_seconds: float  # QEMU start to QEMU gone
    console_log: Path  # the guest's serial console (kernel, systemd, markers)
    results_dir: Path  # the results share; job.log is there
    error: str | None = None  # why there is no exit status, if there is none
    qemu_returncode: int | None = None
    stopped: str | None = None  # why the watchdog had QEMU stopped early, if it did
    job_exit_seconds: float | None = None  # QEMU start to ZOO-JOB-EXIT, None if it never came
    restored: bool = False  # the guest was the saved booted one, restored (not booted)

    def times(self) -> dict:
        """The run's times, seconds from QEMU's start (TIMES in the results)."""
        return {"accel": self.accel, "restored": self.restored,
                "job_start": _rounded(self.boot_seconds),
                "job_exit": _rounded(self.job_exit_seconds),
                "qemu_exit": _rounded(self.total_seconds)}

    @property
    def ok(self) -> bool:
        return self.exit_status == 0 and not self.timed_out

    @property
    def job_log(self) -> Path:
        return self.results_dir / "job.log"


# ---------------------------------------------------------------------------------------
# Booting
# ---------------------------------------------------------------------------------------
def write_job(directory: Path, script: str) -> Path:
    """A job in directory (made if need be): script as its run.sh, executable.
    Returns directory."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "run.sh").write_text(script)
    (directory / "run.sh").chmod(0o755)
    return directory


def write_idle_job(directory: Path) -> Path:
    """A job that does nothing (run.sh: exit 0) in directory: what `vm.py save` and the
    benchmark's boot-only VM run.  Returns directory."""
    return write_job(directory, "#!/bin/sh\nexit 0\n")


def detect_accel(arch: str | None = None) -> str:
    """"kvm" only where a KVM module is really loaded ($ZOO_VM_ACCEL wins), else "tcg".

    /dev/kvm alone proves nothing: on nested PVM hosts it exists and stock kernels hang.
    arch: the guest's (None: the host's); another architecture than the host's is
    always "tcg". arm64 hosts have KVM built in: /dev/kvm usable is enough there.
    """
    guest = get_arch(arch)
    if guest.machine != os.uname().machine:
        return "tcg"
    env = os.environ.get("ZOO_VM_ACCEL", "").strip().lower()
    if env in ("tcg", "kvm"):
        return env
    try:
        with open("/proc/modules") as f:
            modules = {line.split()[0] for line in f if line.strip()}
    except OSError:
        modules = set()
    loaded = bool(modules & set(guest.kvm_modules)) if guest.kvm_modules else True
    if loaded and os.access("/dev/kvm", os.R_OK | os.W_OK):
        return "kvm"
    return "tcg"


def _qemu_binary(arch: Arch | None = None) -> str:
    arch = arch or get_arch()
    qemu = os.environ.get("ZOO_QEMU") or shutil.which(arch.qemu)
    if not qemu:
        raise VMError(f"vm: {arch.qemu} not found: apt-get install {arch.qemu_package}")
    return qemu


CONSOLE_SOCKET = "console.sock"
QMP_SOCKET = "qmp.sock"


def _opt(path: Path | str) -> str:
    """A path inside a QEMU option list (commas doubled)."""
    return str(path).replace(",", ",,")


# QEMU's own seccomp filter (qemu(1), -sandbox): no obsolete system calls, no new
# programs (fork or exec), no changes to its scheduling or priority; and, unless QEMU
# must still change its uid after the filter is in (give_up_root), no set*uid at all.
SANDBOX = "on,obsolete=deny,spawn=deny,resourcecontrol=deny"


def qemu_identity() -> tuple[int, int] | None:
    """The uid and gid QEMU runs as once it has started (give_up_root), when the grader runs
    as root: nobody's.  A guest runs the submission as root, and a guest that got out
    of QEMU (an emulation bug) would otherwise be root on the host.  None for any other
    user: QEMU runs as that user, who cannot change it."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam("nobody")
    except KeyError:
        return 65534, 65534
    return entry.pw_uid, entry.pw_gid


# QEMU 9.1 moved -runas to -run-with user=..., and 10.0 removed -runas (QEMU's
# docs/about/removed-features.rst): Debian 13 and Ubuntu 25.04 ship a QEMU without it.
RUN_WITH_USER_SINCE = (9, 1)


def give_up_root(binary: str, run_as: tuple[int, int] | None) -> list[str]:
    """The options that make QEMU take run_as's uid and gid once it has started, in the
    spelling this QEMU knows."""
    if not run_as:
        return []
    who = f"{run_as[0]}:{run_as[1]}"
    if qemu_release(binary) >= RUN_WITH_USER_SINCE:
        return ["-run-with", f"user={who}"]
    return ["-runas", who]


def qemu_release(binary: str) -> tuple[int, int]:
    """QEMU's major and minor version, from `QEMU --version` ("QEMU emulator version
    10.0.2 (Debian 1:10.0.2+ds-1)"); (0, 0) when it does not say."""
    found = re.search(r"version (\d+)\.(\d+)", _qemu_version(binary))
    return (int(found[1]), int(found[2])) if found else (0, 0)


def qemu_command(image: ImagePaths, job_dir: Path, submission_dir: Path, results_dir: Path,
                 console_log: Path, *, accel: str, control_dir: Path, memory: str = "2G",
                 smp: int = 2, cmdline: str | None = None, arch: str | None = None,
                 disk: Path | None = None, keep_disk_writes: bool = False,
                 incoming: bool = False, run_as: tuple[int, int] | None = None) -> list[str]:
    """QEMU's command line for one boot.  The console (the machine's UART) is a socket
    in control_dir (console.sock, for the ZOO-JOB-GO line) that also logs all the
    guest says to console_log; QMP is control_dir/qmp.sock.  disk: the root disk
    (default the image's rootfs), written through only with keep_disk_writes (else
    to a throw-away overlay).  incoming: wait for a saved state (QMP's
    migrate-incoming) instead of booting.  run_as: the uid and gid QEMU takes once
    it has opened its files (qemu_identity); QEMU always runs in its sandbox."""
    guest = get_arch(arch)
    cmdline = guest.cmdline if cmdline is None else cmdline
    board = ",".join(guest.qemu_machine)
    if accel == "kvm":
        machine = ["-accel", "kvm", "-cpu", "host"]
        if guest.name == "arm64":  # the host's GIC (v3 on most, v2 on a Raspberry Pi)
            board += ",gic-version=host"
    elif guest.name == "arm64":
        # Pointer authentication with QEMU's own cheap algorithm instead of the
        # architected QARMA (which TCG computes slowly in software).
        machine = ["-accel", "tcg,thread=multi", "-cpu", "max,pauth-impdef=on"]
    else:
        # QEMU's plain 64-bit CPU, not "max": under TCG the guest runs quicker without
        # max's extras (AVX2, XSAVE, SMAP, ...), which are emulated too.  The references
        # graded alternately with each, 7 pairs: qemu64 the quicker in all 7 (NOTES.md).
        machine = ["-accel", "tcg,thread=multi", "-cpu", "qemu64"]
    shares = []
    for tag, path, readonly in (("job", job_dir, True), ("submission", submission_dir, True),
                                ("results", results_dir, False)):
        opts = f"local,path={_opt(path)},mount_tag={tag},security_model=none,multidevs=remap"
        shares += ["-virtfs", opts + (",readonly=on" if readonly else "")]
    drive = f"file={_opt(disk or image.rootfs)},if=virtio,format=raw,cache=unsafe"
    control = Path(control_dir)
    binary = _qemu_binary(guest)
    return [
        binary, "-name", "zoo-grader", "-machine", board, *machine,
        "-smp", str(smp), "-m", str(memory),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-nic", "none",
        "-sandbox", SANDBOX + ("" if run_as else ",elevateprivileges=deny"),
        *give_up_root(binary, run_as),
        "-chardev", f"socket,id=console,path={_opt(control / CONSOLE_SOCKET)},server=on,"
                    f"wait=off,logfile={_opt(console_log)}",
        "-serial", "chardev:console",
        "-chardev", f"socket,id=qmp,path={_opt(control / QMP_SOCKET)},server=on,wait=off",
        "-mon", "chardev=qmp,mode=control",
        # -kernel and -initrd take a file name as it is (no option list: no doubled commas).
        "-kernel", str(image.kernel), "-initrd", str(image.initramfs), "-append", cmdline,
        "-drive", drive + ("" if keep_disk_writes else ",snapshot=on"),
        *shares,
        *(["-incoming", "defer"] if incoming else []),
    ]


@dataclass
class Job:
    """What one boot runs and where its results go (boot's argument).

    dir is shared read-only at /mnt/job (its run.sh runs as root), submission (None: an
    empty directory) read-only at /mnt/submission, results read-write at /mnt/results
    (run.sh's output goes to job.log there). The serial console goes to console_log
    (None: results/console.log). QEMU is killed after `timeout` seconds (timed_out=True;
    a guest stopped with its job unfinished first has its vCPUs read, ~3 s: stuck.py);
    job_timeout makes the guest itself stop run.sh after that long (exit status 124),
    keeping the rest of the boot's results. watchdog(job_started) is asked every poll;
    a reason it returns stops QEMU at once (stopped=reason: a guest that stopped
    reporting, say). save_journal: the guest's journal.log in the results too.
    """

    dir: Path | str
    submission: Path | str | None
    results: Path | str
    timeout: float = 600
    job_timeout: float | None = None
    console_log: Path | str | None = None
    watchdog: Callable[[bool], str | None] | None = None
    save_journal: bool = False


@dataclass
class Machine:
    """The guest that runs a Job: its image (None: build_image's, for arch, in
    cache_root), its architecture (None: the image's, else the host's), its accelerator
    (None: detect_accel's), memory and CPUs.  restore: the saved booted guest is
    restored (and saved first if there is none yet) instead of booting the image."""

    image: ImagePaths | None = None
    arch: str | None = None
    accel: str | None = None
    memory: str = "2G"
    smp: int = 2
    cache_root: Path | str | None = None
    restore: bool = True


@dataclass
class _Watched:
    """How one QEMU run went, as _watch saw it."""

    returncode: int | None
    boot_seconds: float | None
    job_exit_seconds: float | None
    total_seconds: float
    timed_out: bool
    stopped: str | None
    qemu_output: str
    restored: bool = False


def boot(job: Job, machine: Machine | None = None) -> BootResult:
    """Run job in a guest once (the saved booted guest restored, or the image booted):
    it runs job.dir/run.sh as root and powers off. Raises VMError if QEMU cannot run
    at all.  Run as root, QEMU runs as nobody (qemu_identity): job.dir is made
    readable to all and the results share is nobody's while the guest runs, so the
    caller keeps each in a directory nobody else can reach (lend_shares)."""
    machine = machine or Machine()
    job_dir = Path(job.dir).resolve()
    if not (job_dir / "run.sh").is_file():
        raise VMError(f"vm: no run.sh in the job directory {job_dir}")
    results_dir = Path(job.results).resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    results_dir.chmod(0o700)  # while the guest writes there: see make_plain
    console_log = Path(job.console_log).resolve() if job.console_log else None
    if console_log is not None:
        console_log.parent.mkdir(parents=True, exist_ok=True)
    image, arch = machine.image, machine.arch
    if arch is None and image is not None and isinstance(image.manifest.get("recipe"), dict):
        arch = recipe_arch(image.manifest["recipe"])
    guest = get_arch(arch)
    if image is None:
        image = build_image(machine.cache_root, arch=guest.name, log=_say)
    accel = machine.accel or detect_accel(guest.name)
    identity = qemu_identity()

    def command(shares: tuple[Path, Path, Path], console: Path, control: Path,
                run_as: tuple[int, int] | None = identity, **how) -> list[str]:
        return qemu_command(image, *shares, console, accel=accel, control_dir=control,
                            memory=machine.memory, smp=machine.smp, arch=guest.name,
                            run_as=run_as, **how)

    with tempfile.TemporaryDirectory(prefix="zoo-vm-") as tmp, \
            _control_dir(Path(tmp)) as control:
        # Without a console log of its own, the job's goes to the results once the
        # guest is gone: meanwhile the guest (as QEMU's user) could replace it there.
        console = console_log or Path(tmp) / "console.log"
        if job.submission is None:
            submission = Path(tmp) / "submission"
            submission.mkdir()
            submission.chmod(0o755)  # whatever the umask: QEMU may run as nobody
        else:
            submission = Path(job.submission).resolve()
            if not submission.is_dir():
                raise VMError(f"vm: submission directory {submission} does not exist")
        shares = (job_dir, submission, results_dir)
        lend_shares(shares, identity)
        try:
            watched = _run(job, shares, console, control, Path(tmp), command,
                           _saved_guest(image, command, accel)
                           if machine.restore else None)
        finally:  # whatever stopped the run, what the guest left is made plain
            plain_or_nothing(results_dir)
        if console_log is None:
            console_log = keep_in_results(console, results_dir)
    result = _result(watched, job, accel, console_log, results_dir)
    (results_dir / TIMES).write_text(json.dumps(result.times()) + "\n")
    return result


def _run(job: Job, shares: tuple[Path, Path, Path], console: Path, control: Path,
         tmp: Path, command: Callable[..., list[str]],
         saved: SavedGuest | None) -> _Watched:
    """The job run once: in the saved guest restored (if there is one and it restores),
    else in the image booted."""
    began = time.monotonic()
    if saved is not None:
        argv = command(shares, console, control, disk=saved.disk, incoming=True)
        try:
            return _watch(argv, tmp, console, job, control, saved)
        except SavedGuestError as e:
            problem = _discard(saved)
            _say(f"{e}; booting instead"
                 + (f" (cannot remove {saved.dir}: {problem})" if problem else ""))
            # The boot gets what is left of the job's time, not all of it again.
            job = replace(job, timeout=max(1.0, job.timeout - (time.monotonic() - began)))
    return _watch(command(shares, console, control), tmp, console, job, control)


def lend_shares(shares: tuple[Path, Path, Path], identity: tuple[int, int] | None) -> None:
    """What QEMU running as identity (None: as us) needs of the shares (job, submission,
    results): QEMU opens each share's directory before it changes its uid, and every
    file in them after, with that uid's rights.  So the job readable by all, and the
    results share that uid's (mode 0700, given back by make_plain).  The submission
    share is the caller's (vm.py run --submission): the guest reads what all may."""
    if identity is None:
        return
    subprocess.run(["chmod", "-R", "a+rX", "--", str(shares[0])], check=True,
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
    # All of it: an earlier run's results (ours, plain) are written over (-P: no link
    # followed, and make_plain left none).
    subprocess.run(["chown", "-R", "-P", f"{identity[0]}:{identity[1]}", "--",
                    str(shares[2])], check=True, stdin=subprocess.DEVNULL,
                   stdout=subprocess.DEVNULL)


def keep_in_results(console: Path, results_dir: Path) -> Path:
    """console's log (and the stuck guest's vCPUs beside it) copied into the results
    share, now plain, in place of anything of those names the guest left there."""
    for name in (console.name, stuck.CPUS_AT_STOP):
        dest = results_dir / name
        if dest.is_dir():
            shutil.rmtree(dest)  # plain: directories and files, no links
        if (console.parent / name).is_file():
            shutil.copyfile(console.parent / name, dest)
        else:
            dest.unlink(missing_ok=True)
    return results_dir / console.name


def plain_or_nothing(share: Path) -> None:
    """make_plain, or, when the guest left what it cannot walk (a tree deeper than a
    path can name or Python's recursion goes), none of it: the share emptied."""
    try:
        make_plain(share)
    except (OSError, RecursionError) as e:
        _say(f"the guest's results cannot be made plain ({e!r:.200}): none of it is kept")
        remove_tree(share)
        share.mkdir(mode=0o755, exist_ok=True)


def remove_tree(path: Path) -> None:
    """rm -rf what a guest or a submission made: rm(1) goes however deep, by fds, never
    through a link nor into another file system (fts(3)), where shutil.rmtree
    recurses and can be sent elsewhere between its lstat and its open (NOTES.md)."""
    subprocess.run(["rm", "-rf", "--one-file-system", "--", str(path)],
                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                   stderr=subprocess.DEVNULL)


def make_plain(share: Path) -> None:
    """After the guest, what it left in the share it could write, made plain: 9p's
    security_model=none makes files as QEMU's user with the modes the guest asks for
    (a setuid program of QEMU's user), and its symbolic links, FIFOs and sockets are
    real on the host, where a reader would follow or block on them.  So: all but
    regular files and directories removed, files 0644, directories 0755, and, for
    root (QEMU ran as nobody), all root's again.  Each is changed through an fd opened
    without following a link (O_NOFOLLOW): whatever else runs as nobody, root changes
    nothing outside the share."""
    owner = (os.geteuid(), os.getegid()) if os.geteuid() == 0 else None
    for where, dirs, files in os.walk(share, onerror=_raise):
        for name in dirs + files:  # a link to a directory is listed with the directories
            path = os.path.join(where, name)
            if name in dirs and os.path.islink(path):
                dirs.remove(name)  # not walked into, only removed
            mode = os.lstat(path).st_mode
            if stat.S_ISDIR(mode):
                plain(path, os.O_DIRECTORY, 0o755, owner)
            elif stat.S_ISREG(mode):
                plain(path, os.O_NONBLOCK, 0o644, owner)
            else:
                os.unlink(path)
    plain(str(share), os.O_DIRECTORY, 0o755, owner)


def plain(path: str, kind: int, mode: int, owner: tuple[int, int] | None) -> None:
    """path (a directory with O_DIRECTORY, else a file) given owner, if any, then mode,
    through an fd: chown(2) before chmod(2), which it would clear of set-id bits."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | kind)
    try:
        if owner is not None:
            os.fchown(fd, *owner)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _raise(error: OSError) -> None:
    raise error


def _say(message: str) -> None:
    print(f"vm: {message}", file=sys.stderr, flush=True)


@contextlib.contextmanager
def _control_dir(tmp: Path):
    """A directory for the console's and QMP's sockets: tmp, unless its path is too
    long for a socket's (108 bytes with the name, unix(7)): then one in /tmp."""
    if len(str(tmp / CONSOLE_SOCKET).encode()) < 100:
        yield tmp
        return
    with tempfile.TemporaryDirectory(prefix="zoo-vm-", dir="/tmp") as short:
        yield Path(short)


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 2)


class _Console:
    """The host's end of the guest's console: it sends the ZOO-JOB-GO line (the job's
    options, the host's clock, a seed) and stays connected until the job has started
    (QEMU drops what a closed connection has not yet passed to the UART)."""

    clock = staticmethod(time.time)  # the time the guest is told (a test's to fix)

    def __init__(self, control: Path, job: Job):
        self.path = control / CONSOLE_SOCKET
        self.job = job
        self.sock: socket.socket | None = None
        self.sent = False

    def send_go(self) -> None:
        timeout = max(1, int(self.job.job_timeout)) if self.job.job_timeout else 0
        line = (f"ZOO-JOB-GO time={int(self.clock())} timeout={timeout} "
                f"journal={int(self.job.save_journal)} seed={os.urandom(32).hex()}\n")
        self.sent = True
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(str(self.path))
            sock.sendall(line.encode())
        except OSError as e:
            sock.close()
            raise VMError(f"vm: cannot send the job to the guest's console {self.path}: "
                          f"{e.strerror or e}") from None
        self.sock = sock

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


def _watch(argv: list[str], tmp: Path, console_log: Path, job: Job, control: Path,
           saved: SavedGuest | None = None) -> _Watched:
    """Run QEMU (argv) until it ends, job.timeout passes or job.watchdog says stop,
    reading the console for ZOO-JOB-READY (then sending ZOO-JOB-GO), ZOO-JOB-START and
    ZOO-JOB-EXIT (when each came, to the poll's 0.1 s); QEMU's own output is kept in
    tmp.  saved: restore that guest (already waiting: ZOO-JOB-GO goes at once);
    SavedGuestError if it cannot be."""
    console_log.unlink(missing_ok=True)
    console_log.touch()
    (console_log.parent / stuck.CPUS_AT_STOP).unlink(missing_ok=True)  # an earlier boot's
    qemu_log = tmp / "qemu.log"
    start = time.monotonic()
    boot_seconds = job_exit_seconds = None
    timed_out = False
    stopped = None
    console = _Console(control, job)
    with open(qemu_log, "wb") as qlog, open(console_log, "rb") as log:
        proc = _start_qemu(argv, tmp, qlog)
        seen = b"\n"  # the log's start is a line's start
        try:
            if saved is not None:
                _restore(proc, control, saved, qemu_log, min(RESTORE_LIMIT, job.timeout))
                console.send_go()
            while True:
                returncode = proc.poll()
                if job_exit_seconds is None:
                    seen = seen[-64:] + log.read()
                    if not console.sent and marked(seen, MARK_READY):
                        console.send_go()
                    if boot_seconds is None and marked(seen, MARK_START):
                        boot_seconds = time.monotonic() - start
                        console.close()
                    if boot_seconds is not None and marked(seen, MARK_EXIT):
                        job_exit_seconds = time.monotonic() - start
                if saved is not None and boot_seconds is None:
                    _check_restored_guest(returncode, console_log, time.monotonic() - start)
                if returncode is not None:
                    break
                if time.monotonic() - start >= job.timeout:
                    timed_out = True
                    break
                if job.watchdog is not None:
                    stopped = job.watchdog(boot_seconds is not None)
                    if stopped:
                        break
                time.sleep(0.1)
        finally:
            console.close()
            try:
                if (timed_out or stuck.is_stuck(stopped)) and job_exit_seconds is None \
                        and proc.poll() is None:
                    # A guest stopped with its job unfinished: what were its vCPUs doing?
                    stuck.try_record_cpus(control / QMP_SOCKET, proc,
                                          console_log.parent / stuck.CPUS_AT_STOP)
            finally:
                _stop(proc)
    return _Watched(returncode=proc.returncode, boot_seconds=boot_seconds,
                    job_exit_seconds=job_exit_seconds,
                    total_seconds=time.monotonic() - start, timed_out=timed_out,
                    stopped=stopped, restored=saved is not None,
                    qemu_output=qemu_log.read_bytes().decode(errors="replace").strip())


def _start_qemu(argv: list[str], tmp: Path, output) -> subprocess.Popen:
    """QEMU started in a session of its own (a Ctrl-C is ours to handle), killed by
    the kernel if we die (even by SIGKILL), its output to output; snapshot=on's
    overlay lives (and dies) in tmp."""
    return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=output,
                            stderr=subprocess.STDOUT, env=dict(os.environ, TMPDIR=str(tmp)),
                            start_new_session=True, preexec_fn=die_with_parent())


# ---------------------------------------------------------------------------------------
# The saved booted guest
# ---------------------------------------------------------------------------------------
SAVED_DIR = "booted"  # in the image's directory: KEY/disk.raw and KEY/state
SAVED_FORMAT = 1  # part of the key: a change to what is saved makes a new one
READY_LIMIT = 600  # s for the guest being saved to boot to ZOO-JOB-READY (TCG: 10-30)
RESTORE_LIMIT = 120  # s to load the state (TCG: ~0.5), and then to ZOO-JOB-START (1-3)
RETRY_SAVE_AFTER = 86400  # s: a save that failed is not tried again sooner
UNUSED_DAYS = 7  # a saved guest of another key no restore used for that long is removed


class SavedGuestError(Exception):
    """The booted guest could not be saved, or not restored."""


@dataclass
class SavedGuest:
    dir: Path
    identity: tuple[int, int] | None = None  # its state file's, when it was chosen

    @property
    def disk(self) -> Path:  # the guest's disk as it was when saved
        return self.dir / "disk.raw"

    @property
    def state(self) -> Path:  # its memory and devices (QEMU's migration stream)
        return self.dir / "state"

    def exists(self) -> bool:
        return self.disk.is_file() and self.state.is_file()

    def current_identity(self) -> tuple[int, int]:
        """Its state file's inode and modification time now (OSError if it is gone)."""
        st = self.state.stat()
        return st.st_ino, st.st_mtime_ns

    def chosen(self) -> SavedGuest:
        """This one, as it is now (_discard removes it only if it is still that)."""
        identity = self.current_identity()
        with contextlib.suppress(OSError):
            os.utime(self.dir)  # in use (_remove_unused)
        return replace(self, identity=identity)


@contextlib.contextmanager
def _locked(root: Path):
    """root's lock (flock(2) on root/.lock), or an OSError that says why not (a
    read-only cache; a filesystem without flock, ENOSYS)."""
    with open(root / ".lock", "a") as lock:
        chown_for_sudo_user([root / ".lock"])
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def _saved_guest(image: ImagePaths, command: Callable[..., list[str]],
                 accel: str) -> SavedGuest | None:
    """The saved booted guest for this image and QEMU command line, saved now if
    there is none (one process at a time: a lock in the image's directory); None
    (and a line on stderr) if there is none and it cannot be saved here."""
    placeholders = (Path("/job"), Path("/submission"), Path("/results"))
    # give_up_root's options are no part of what is saved: the guest saved as root
    # restores as nobody.
    key_argv = command(placeholders, Path("/console.log"), Path("/control"),
                       disk=Path("/disk.raw"), incoming=True, run_as=None)
    root = image.dir / SAVED_DIR
    saved = SavedGuest(root / _saved_key(key_argv, accel))
    failed = saved.dir.with_name(saved.dir.name + ".failed")
    try:
        if saved.exists():
            return saved.chosen()
        if failed.is_file() and time.time() - failed.stat().st_mtime < RETRY_SAVE_AFTER:
            _say(f"booting: saving a booted guest failed here before ({failed}; remove it, "
                 "or run vm.py save, to try again)")
            return None
        root.mkdir(exist_ok=True)
        chown_for_sudo_user([root])
        with _locked(root):
            if saved.exists():
                return saved.chosen()
            _say("saving a booted guest (once for this image: each job then restores it)")
            try:
                _save(image, command, saved)
            except SavedGuestError as e:
                with contextlib.suppress(OSError):
                    failed.write_text(f"{e}\n")
                    chown_for_sudo_user([failed])
                _say(f"could not save a booted guest: {e}; booting")
                return None
            failed.unlink(missing_ok=True)
            return saved.chosen()
    except OSError as e:
        _say(f"cannot save a booted guest in {root}: {e.strerror or e}; booting")
        return None


def forget_failed_saves(image: ImagePaths) -> None:
    """Let the next job try to save the booted guest again (vm.py save)."""
    for failed in (image.dir / SAVED_DIR).glob("*.failed"):
        failed.unlink(missing_ok=True)


def _discard(saved: SavedGuest) -> str:
    """Remove a saved guest that would not restore, if it is still the one chosen (not
    one saved meanwhile by another job); "" if it is gone, else why it is not."""
    try:
        with _locked(saved.dir.parent):
            if saved.current_identity() == saved.identity:
                gone = Path(tempfile.mkdtemp(prefix=".gone-", dir=saved.dir.parent))
                os.rename(saved.dir, gone / "saved")
                shutil.rmtree(gone)
    except FileNotFoundError:
        pass
    except OSError as e:
        return e.strerror or str(e)
    return ""


def _saved_key(argv: list[str], accel: str) -> str:
    """What must match for a saved guest to restore: QEMU's version, its command line,
    and under KVM (-cpu host) the host's CPU."""
    cpu = _host_cpu() if accel == "kvm" else ""
    text = json.dumps([SAVED_FORMAT, _qemu_version(argv[0]), argv, cpu])
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@functools.cache
def _qemu_version(binary: str) -> str:
    """What `QEMU --version` says, asked once per process (a batch grades many jobs)."""
    return subprocess.run([binary, "--version"], capture_output=True, text=True,
                          check=False).stdout


def _host_cpu() -> str:
    """The first CPU's identity in /proc/cpuinfo (x86's model and flags, arm64's part
    and features), without its clock."""
    wanted = ("vendor_id", "cpu family", "model", "model name", "stepping", "flags",
              "CPU implementer", "CPU architecture", "CPU variant", "CPU part", "Features")
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        first = f.read().split("\n\n")[0]
        return "\n".join(line for line in first.splitlines()
                         if line.split(":")[0].strip() in wanted)
    return ""


def _save(image: ImagePaths, command: Callable[..., list[str]], saved: SavedGuest) -> None:
    """Boot a copy of the image's disk until the guest says ZOO-JOB-READY, stop it,
    save its state next to the disk (QMP migrate, to a file of ours), and move both
    into saved.dir.  The caller holds the lock."""
    work = Path(tempfile.mkdtemp(prefix=f"{saved.dir.name}.part-", dir=saved.dir.parent))
    moved = False
    try:
        # The disk's holes stay holes: the copy takes what the image uses, not 1.5 GB.
        copy = subprocess.run(["cp", "--sparse=always", str(image.rootfs),
                               str(work / "disk.raw")], capture_output=True, text=True)
        if copy.returncode != 0:
            raise SavedGuestError(f"cannot copy the disk: {copy.stderr.strip()}")
        with tempfile.TemporaryDirectory(prefix="zoo-vm-") as tmp, \
                _control_dir(Path(tmp)) as control:
            shares = tuple(Path(tmp) / name for name in ("job", "submission", "results"))
            for share in shares:
                share.mkdir()
            console_log = work / "console.log"
            console_log.touch()
            # Saved as we are (QEMU's migration out reopens the disk, which nobody may
            # not): this guest runs nothing but the image's own boot.
            argv = command(shares, console_log, control, disk=work / "disk.raw",
                           keep_disk_writes=True, run_as=None)
            with open(work / "qemu.log", "wb") as qlog, open(work / "state", "wb") as state:
                _boot_and_save(argv, Path(tmp), qlog, console_log, control, state)
                os.fsync(state.fileno())
        with open(work / "disk.raw", "rb+") as disk:
            os.fsync(disk.fileno())
        for leftover in work.iterdir():
            if leftover.name not in ("disk.raw", "state"):
                leftover.unlink()
        _remove_unused(saved.dir.parent, keep=saved.dir)
        if saved.dir.exists():  # a part of one (a removal cut short): not a saved guest
            shutil.rmtree(saved.dir)
        os.rename(work, saved.dir)
        moved = True
        chown_for_sudo_user([saved.dir, saved.disk, saved.state])
    except OSError as e:
        raise SavedGuestError(f"{e.strerror or e}: {e.filename or saved.dir}") from None
    finally:
        if not moved:
            shutil.rmtree(work, ignore_errors=True)


def _boot_and_save(argv: list[str], tmp: Path, qlog, console_log: Path, control: Path,
                   state) -> None:
    """QEMU (argv) booted until the guest waits for its job, then stopped and saved
    into the open file state; the QEMU process ended in every case."""
    proc = _start_qemu(argv, tmp, qlog)
    try:
        _wait_for_ready(proc, console_log, READY_LIMIT)
        qmp = QMP(control / QMP_SOCKET, proc)
        try:
            qmp.command("stop")
            qmp.command("migrate", uri=qmp.pass_file("state", state.fileno()))
            # "completed" comes after QEMU's last write to the file (its own fd of it).
            qmp.wait_for_migration(timeout=RESTORE_LIMIT)
            qmp.command("quit")
        finally:
            qmp.close()
        proc.wait(60)
    except (QMPError, subprocess.TimeoutExpired) as e:
        raise SavedGuestError(f"{e}{_qemu_said(Path(qlog.name))}") from None
    finally:
        _stop(proc)


def _remove_unused(root: Path, keep: Path) -> None:
    """Remove the saved guests of other keys (another QEMU, other options) that no
    restore used for UNUSED_DAYS (each restore touches its directory), and parts of
    saves cut short: a cache shared by machines with different QEMUs keeps one for
    each in use."""
    too_old = time.time() - UNUSED_DAYS * 86400
    for old in root.iterdir():
        with contextlib.suppress(OSError):
            if old.is_dir() and old != keep and old.stat().st_mtime < too_old:
                shutil.rmtree(old, ignore_errors=True)


def _wait_for_ready(proc: subprocess.Popen, console_log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    seen = b""
    with open(console_log, "rb") as log:  # read as it grows, as _watch reads it
        while MARK_READY not in (seen := seen[-64:] + log.read()):
            if proc.poll() is not None:
                raise SavedGuestError(f"qemu ended (exit status {proc.returncode}) before "
                                      f"the guest was ready: see {console_log}")
            if time.monotonic() > deadline:
                raise SavedGuestError(f"the guest was not ready after {timeout:g} s: see "
                                      f"{console_log}")
            time.sleep(0.1)


def _restore(proc: subprocess.Popen, control: Path, saved: SavedGuest, qemu_log: Path,
             limit: float) -> None:
    """Load saved.state into the waiting QEMU (-incoming defer) and let the guest run
    on (it was stopped when saved)."""
    try:
        with open(saved.state, "rb") as state:
            qmp = QMP(control / QMP_SOCKET, proc, timeout=limit)
            try:
                qmp.command("migrate-incoming", uri=qmp.pass_file("state", state.fileno()))
                qmp.wait_for_migration(timeout=limit)
                qmp.command("cont")
            finally:
                qmp.close()
    except (QMPError, OSError) as e:
        raise SavedGuestError(f"cannot restore the saved booted guest: {e}"
                              f"{_qemu_said(qemu_log)}") from None


def _qemu_said(qemu_log: Path) -> str:
    """QEMU's last two lines of output, for a message: " (...)", or "" if none."""
    with contextlib.suppress(OSError):
        said = qemu_log.read_bytes().decode(errors="replace").strip().splitlines()
        if said:
            return f" ({'; '.join(said[-2:])[-300:]})"
    return ""


def _check_restored_guest(returncode: int | None, console_log: Path, seconds: float) -> None:
    """A restored guest that has not started its job yet: SavedGuestError if it never
    will (it powered off without a ZOO-JOB-ERROR of the job's, or it is still silent
    RESTORE_LIMIT s after QEMU's start, where it takes 1-3 s)."""
    if returncode is None and seconds <= RESTORE_LIMIT:
        return
    if MARK_ERROR_RE.search(console_log.read_bytes()):
        return  # the job's own error (no run.sh, say): reported as for a booted guest
    if returncode is not None:
        raise SavedGuestError(f"the restored guest stopped (QEMU's exit status {returncode}) "
                              "before its job started")
    if seconds > RESTORE_LIMIT:
        raise SavedGuestError(f"the restored guest had not started its job after "
                              f"{RESTORE_LIMIT} s")


def _result(watched: _Watched, job: Job, accel: str, console_log: Path,
            results_dir: Path) -> BootResult:
    """What the console's markers (and QEMU's output, appended to it) say of the run."""
    text = console_log.read_bytes()
    qemu_out = watched.qemu_output
    if qemu_out:
        with open(console_log, "ab") as f:
            f.write(b"\n--- qemu ---\n" + qemu_out.encode() + b"\n")
    exits = MARK_EXIT_RE.findall(text)
    errors = MARK_ERROR_RE.findall(text)
    exit_status = int(exits[-1]) if exits else None
    error = None
    if errors:
        error = errors[-1].decode(errors="replace").strip()
    elif watched.timed_out:
        error = f"timed out after {job.timeout:g} s" + ("" if watched.boot_seconds else
                                                        " (the job had not started)")
    elif watched.stopped:
        error = f"stopped: {watched.stopped}"
    elif exit_status is None:
        if watched.returncode not in (0, None) and watched.boot_seconds is None:
            raise VMError(f"vm: qemu failed (exit status {watched.returncode}): "
                          f"{qemu_out[-500:] or 'no message'}; console: {console_log}")
        error = f"the guest stopped without a ZOO-JOB-EXIT marker: see {console_log}"
    return BootResult(exit_status=exit_status, timed_out=watched.timed_out, accel=accel,
                      boot_seconds=watched.boot_seconds, total_seconds=watched.total_seconds,
                      console_log=console_log, results_dir=results_dir, error=error,
                      qemu_returncode=watched.returncode, stopped=watched.stopped,
                      job_exit_seconds=watched.job_exit_seconds, restored=watched.restored)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(sig)
        try:
            proc.wait(wait)
            return
        except subprocess.TimeoutExpired:
            continue


