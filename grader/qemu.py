"""Booting the grader's VM image (grader/image.py) once for one job, under QEMU.

The guest runs /mnt/job/run.sh as root, writes console markers `ZOO-JOB-START`,
`ZOO-JOB-EXIT=<status>`, `ZOO-JOB-ERROR=<message>` and powers off; boot() watches the
console for them and returns a BootResult.  When QEMU has ended, boot() writes
the run's times to the results as boot-times.json (TIMES): QEMU start to the job's
start, to its end and to QEMU gone, in seconds, for bench/grading.py to split a
submission's time into boot, checks and power-off.

Standard library only (Python >= 3.10).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from image import Arch, ImagePaths, VMError, build_image, die_with_parent, get_arch, recipe_arch

MARK_START = b"ZOO-JOB-START"
MARK_EXIT = b"ZOO-JOB-EXIT="
TIMES = "boot-times.json"  # in the results: BootResult.times()
MARK_EXIT_RE = re.compile(rb"ZOO-JOB-EXIT=(\d+)")
MARK_ERROR_RE = re.compile(rb"ZOO-JOB-ERROR=([^\r\n]*)")


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

    def times(self) -> dict:
        """The run's times, seconds from QEMU's start (TIMES in the results)."""
        return {"accel": self.accel, "job_start": _rounded(self.boot_seconds),
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


def _opt(path: Path | str) -> str:
    """A path inside a QEMU option list (commas doubled)."""
    return str(path).replace(",", ",,")


def qemu_command(image: ImagePaths, job_dir: Path, submission_dir: Path, results_dir: Path,
                 console_log: Path, *, accel: str, memory: str = "2G", smp: int = 2,
                 cmdline: str | None = None, arch: str | None = None) -> list[str]:
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
    return [
        _qemu_binary(guest), "-name", "zoo-grader", "-machine", board, *machine,
        "-smp", str(smp), "-m", str(memory),
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot", "-nic", "none",
        "-serial", f"file:{console_log}",
        "-kernel", _opt(image.kernel), "-initrd", _opt(image.initramfs), "-append", cmdline,
        "-drive", f"file={_opt(image.rootfs)},if=virtio,format=raw,snapshot=on,cache=unsafe",
        *shares,
    ]


@dataclass
class Job:
    """What one boot runs and where its results go (boot's argument).

    dir is shared read-only at /mnt/job (its run.sh runs as root), submission (None: an
    empty directory) read-only at /mnt/submission, results read-write at /mnt/results
    (run.sh's output goes to job.log there). The serial console goes to console_log
    (None: results/console.log). QEMU is killed after `timeout` seconds (timed_out=True);
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
    (None: detect_accel's), memory and CPUs."""

    image: ImagePaths | None = None
    arch: str | None = None
    accel: str | None = None
    memory: str = "2G"
    smp: int = 2
    cache_root: Path | str | None = None


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


def boot(job: Job, machine: Machine | None = None) -> BootResult:
    """Boot the guest once: it runs job.dir/run.sh as root and powers off. Raises
    VMError if QEMU cannot run at all."""
    machine = machine or Machine()
    job_dir = Path(job.dir).resolve()
    if not (job_dir / "run.sh").is_file():
        raise VMError(f"vm: no run.sh in the job directory {job_dir}")
    results_dir = Path(job.results).resolve()
    results_dir.mkdir(parents=True, exist_ok=True)
    console_log = (Path(job.console_log).resolve() if job.console_log
                   else results_dir / "console.log")
    console_log.parent.mkdir(parents=True, exist_ok=True)
    image, arch = machine.image, machine.arch
    if arch is None and image is not None and isinstance(image.manifest.get("recipe"), dict):
        arch = recipe_arch(image.manifest["recipe"])
    guest = get_arch(arch)
    if image is None:
        image = build_image(machine.cache_root, arch=guest.name,
                            log=lambda msg: print(f"vm: {msg}", file=sys.stderr))
    accel = machine.accel or detect_accel(guest.name)
    cmdline = guest.cmdline
    if job.job_timeout:
        cmdline += f" zoo.job_timeout={max(1, int(job.job_timeout))}"
    if job.save_journal:
        cmdline += " zoo.journal=1"

    with tempfile.TemporaryDirectory(prefix="zoo-vm-") as tmp:
        if job.submission is None:
            submission = Path(tmp) / "submission"
            submission.mkdir()
        else:
            submission = Path(job.submission).resolve()
            if not submission.is_dir():
                raise VMError(f"vm: submission directory {submission} does not exist")
        argv = qemu_command(image, job_dir, submission, results_dir, console_log, accel=accel,
                            memory=machine.memory, smp=machine.smp, cmdline=cmdline,
                            arch=guest.name)
        watched = _watch(argv, Path(tmp), console_log, job)
    result = _result(watched, job, accel, console_log, results_dir)
    (results_dir / TIMES).write_text(json.dumps(result.times()) + "\n")
    return result


def _rounded(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds, 2)


def _watch(argv: list[str], tmp: Path, console_log: Path, job: Job) -> _Watched:
    """Run QEMU (argv) until it ends, job.timeout passes or job.watchdog says stop,
    reading the console for ZOO-JOB-START and ZOO-JOB-EXIT (when each came, to the
    poll's 0.1 s); QEMU's own output is kept in tmp."""
    console_log.unlink(missing_ok=True)
    console_log.touch()
    qemu_log = tmp / "qemu.log"
    env = dict(os.environ, TMPDIR=str(tmp))  # snapshot=on's overlay lives (and dies) here
    start = time.monotonic()
    boot_seconds = job_exit_seconds = None
    timed_out = False
    stopped = None
    with open(qemu_log, "wb") as qlog, open(console_log, "rb") as console:
        # Own session: a Ctrl-C is ours to handle (below). Parent-death signal: QEMU
        # never outlives us, even if we are killed with SIGKILL.
        proc = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=qlog,
                                stderr=subprocess.STDOUT, env=env, start_new_session=True,
                                preexec_fn=die_with_parent())
        seen = b""
        try:
            while True:
                returncode = proc.poll()
                if job_exit_seconds is None:
                    seen = seen[-64:] + console.read()
                    if boot_seconds is None and MARK_START in seen:
                        boot_seconds = time.monotonic() - start
                    if boot_seconds is not None and MARK_EXIT in seen:
                        job_exit_seconds = time.monotonic() - start
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
            _stop(proc)
    return _Watched(returncode=proc.returncode, boot_seconds=boot_seconds,
                    job_exit_seconds=job_exit_seconds,
                    total_seconds=time.monotonic() - start, timed_out=timed_out,
                    stopped=stopped,
                    qemu_output=qemu_log.read_bytes().decode(errors="replace").strip())


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
                      job_exit_seconds=watched.job_exit_seconds)


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


