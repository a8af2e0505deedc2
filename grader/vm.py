#!/usr/bin/env python3
"""The grader's virtual machine: a Debian guest under QEMU that runs one job per boot.

    python3 grader/vm.py build          build the image once (cached), or say "cached"
    python3 grader/vm.py save           save the booted guest each job restores (else the
                                        first job saves it), and restore it once
    python3 grader/vm.py run SCRIPT     run SCRIPT as root in the guest (the saved booted
                                        guest restored; --boot: booted), print its log
    python3 grader/vm.py info           cache key, paths, accelerator
    python3 grader/vm.py symbols FILE   what a stopped guest's vCPUs were doing
                                        (cpus-at-stop.txt), the kernel's names added
    python3 grader/vm.py export FILE    the cached image in one file; prints its sha256
    python3 grader/vm.py import FILE-or-URL --sha256 HASH
                                        install an exported image into the cache

The image's recipe, cache, build, export and import are grader/image.py; booting it for
one job is grader/qemu.py; this is their command line.

Standard library only (Python >= 3.10).
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import image  # noqa: E402
import qemu  # noqa: E402
import stuck  # noqa: E402


# ---------------------------------------------------------------------------------------
# Command line
# ---------------------------------------------------------------------------------------
def _cmd_build(args: argparse.Namespace) -> int:
    started = time.monotonic()
    cached = None if args.force else image.cached_image(args.cache, args.arch)
    if cached:
        print(f"vm: cached: {cached.dir}")
        return 0
    built = image.build_image(args.cache, log=lambda msg: print(f"vm: {msg}"), force=args.force,
                              arch=args.arch)
    print(f"vm: built {built.dir} in {time.monotonic() - started:.1f} s")
    print(f"vm: kernel {built.manifest.get('kernel_version')}, rootfs "
          f"{built.rootfs.stat().st_blocks * 512 / 2**20:.0f} MiB used")
    return 0


def _cmd_info(args: argparse.Namespace) -> int:
    root = Path(args.cache) if args.cache else image.default_cache_root()
    cached = image.cached_image(root, args.arch)
    print(f"arch:      {image.get_arch(args.arch).name}")
    print(f"key:       {image.cache_key(args.arch)}")
    print(f"cache:     {root}")
    print(f"accel:     {qemu.detect_accel(args.arch)}")
    print(f"mirror:    {image.host_mirror()}")
    if cached:
        print(f"image:     {cached.dir}")
        for name in ("kernel", "initramfs", "rootfs"):
            print(f"{name + ':':<10} {getattr(cached, name)}")
        for name in ("kernel_version", "kernel_deb", "python", "built", "build_seconds",
                     "builder"):
            print(f"{name + ':':<15} {cached.manifest.get(name)}")
        imported = cached.manifest.get("imported")
        if isinstance(imported, dict):
            print(f"{'imported:':<15} {imported.get('from')} (sha256 {imported.get('sha256')}, "
                  f"{imported.get('at')})")
    else:
        print("image:     not built (python3 grader/vm.py build, or import one)")
    return 0


def _cmd_export(args: argparse.Namespace) -> int:
    started = time.monotonic()
    dest, digest = image.export_image(args.file, args.cache, args.arch)
    print(f"{digest}  {dest}")
    print(f"vm.py: exported {dest} ({dest.stat().st_size / 2**20:.0f} MiB) in "
          f"{time.monotonic() - started:.1f} s; import it with: python3 grader/vm.py import "
          f"FILE-or-URL --sha256 {digest}", file=sys.stderr)
    return 0


def _cmd_import(args: argparse.Namespace) -> int:
    started = time.monotonic()
    imported = image.import_image(args.source, args.sha256, args.cache)
    print(f"vm.py: imported {imported.dir} in {time.monotonic() - started:.1f} s "
          f"(kernel {imported.manifest.get('kernel_version')}, built "
          f"{imported.manifest.get('built')})")
    return 0


STALLED = 75  # run's exit status when --silence stopped the guest


class Silence:
    """qemu.Job's watchdog for `run --silence S`: a guest whose job.log has not grown
    (nor appeared, from the start) for S seconds stopped reporting (the rare stall of
    NOTES.md), and is stopped."""

    def __init__(self, job_log: Path, seconds: float, clock=time.monotonic):
        self.job_log, self.seconds, self.clock = job_log, seconds, clock
        self.size, self.since = -1, clock()

    def __call__(self, job_started: bool) -> str | None:
        try:
            size = self.job_log.stat().st_size
        except OSError:
            size = -1
        now = self.clock()
        if size != self.size:
            self.size, self.since = size, now
        elif now - self.since > self.seconds:
            return f"no new output in job.log for {self.seconds:.0f}s"
        return None


def copy_into_job(extra: Path, dest: Path) -> None:
    """--file's file or directory, copied to dest in the job directory."""
    if extra.is_dir():
        shutil.copytree(extra, dest, symlinks=True)
    else:
        shutil.copy(extra, dest)


def _cmd_run(args: argparse.Namespace) -> int:
    script = Path(args.script)
    if not script.is_file():
        print(f"vm: no such script: {script}", file=sys.stderr)
        return 125
    extras: dict[str, Path] = {}  # name in the job directory ("." is its own): file
    for extra in args.file or []:
        name = Path(extra).resolve().name
        if not Path(extra).exists():
            print(f"vm: no such file: {extra}", file=sys.stderr)
            return 125
        if name in extras or name in ("run.sh", ""):
            print(f"vm: --file {extra}: the job directory already has a {name or '/'}",
                  file=sys.stderr)
            return 125
        extras[name] = Path(extra)
    built = image.build_image(args.cache, log=lambda msg: print(f"vm: {msg}", file=sys.stderr),
                              arch=args.arch)
    # Without --results, the share in a directory of ours: run as root, QEMU writes it
    # as nobody (qemu.boot), and nothing else of nobody's may reach it meanwhile.
    results = Path(args.results) if args.results else Path(
        tempfile.mkdtemp(prefix="zoo-results-")) / "results"
    # A directory of ours around the job: run as root, QEMU reads it as nobody (qemu.boot).
    with tempfile.TemporaryDirectory(prefix="zoo-job-") as private:
        job = Path(private) / "job"
        job.mkdir()
        shutil.copyfile(script, job / "run.sh")
        (job / "run.sh").chmod(0o755)
        for name, extra in extras.items():
            copy_into_job(extra, job / name)
        silence = Silence(results / "job.log", args.silence) if args.silence else None
        result = qemu.boot(
            qemu.Job(job, args.submission, results, timeout=args.timeout,
                     job_timeout=args.job_timeout, save_journal=args.journal,
                     watchdog=silence),
            qemu.Machine(built, arch=args.arch, accel=args.accel, memory=args.memory,
                         smp=args.smp, restore=not args.boot))
    if result.job_log.is_file():
        sys.stdout.write(result.job_log.read_text(errors="replace"))
        sys.stdout.flush()
    boot_s = f"{result.boot_seconds:.1f} s" if result.boot_seconds is not None else "-"
    how = "restored" if result.restored else "booted"
    print(f"vm: exit status {result.exit_status}, {how}, to the job {boot_s}, "
          f"total {result.total_seconds:.1f} s, accel {result.accel}", file=sys.stderr)
    if result.error:
        print(f"vm: {result.error}", file=sys.stderr)
    print(f"vm: results and console.log in {results}", file=sys.stderr)
    if result.timed_out:
        return 124
    if result.stopped:
        print(f"vm: stopped: {result.stopped}", file=sys.stderr)
        return STALLED
    return result.exit_status if result.exit_status is not None else 125


def _cmd_save(args: argparse.Namespace) -> int:
    """The saved booted guest that each job restores: saved now if there is none, and
    restored once for a job that does nothing, to show that it restores here."""
    built = image.build_image(args.cache, log=lambda msg: print(f"vm: {msg}", file=sys.stderr),
                              arch=args.arch)
    qemu.forget_failed_saves(built)  # asked for: try again, whatever failed before
    with tempfile.TemporaryDirectory(prefix="zoo-job-") as job, \
            tempfile.TemporaryDirectory(prefix="zoo-results-") as results:
        qemu.write_idle_job(Path(job))
        # Twice at most: a saved guest that does not restore is removed by the first,
        # and saved again by the second.
        for _ in range(2):
            result = qemu.boot(qemu.Job(job, None, Path(results) / "results",
                                        timeout=args.timeout),
                               qemu.Machine(built, arch=args.arch, accel=args.accel))
            if result.restored or not result.ok:
                break
        if not (result.ok and result.restored):
            why = result.error or ("booted, not restored" if result.ok
                                   else f"exit status {result.exit_status}")
            print(f"vm: the saved booted guest does not work here: {why}", file=sys.stderr)
            return 1
    print(f"vm: the saved booted guest restores: its job started {result.boot_seconds:.1f} s "
          f"after QEMU's start ({result.accel})", file=sys.stderr)
    return 0


def _cmd_symbols(args: argparse.Namespace) -> int:
    """A stuck guest's vCPUs (stuck.CPUS_AT_STOP) with the kernel's names for their
    addresses, read from /proc/kallsyms in a guest restored from the same saved guest."""
    try:
        dump = Path(args.file).read_text(errors="replace")
        kallsyms = Path(args.kallsyms).read_text() if args.kallsyms else None
    except OSError as e:
        print(f"vm: symbols: {e.filename}: {e.strerror}", file=sys.stderr)
        return 125
    if kallsyms is None:
        built = image.build_image(args.cache, arch=args.arch,
                                  log=lambda msg: print(f"vm: {msg}", file=sys.stderr))
        with tempfile.TemporaryDirectory(prefix="zoo-job-") as job, \
                tempfile.TemporaryDirectory(prefix="zoo-results-") as results:
            qemu.write_job(Path(job), "#!/bin/sh\ncat /proc/kallsyms > /mnt/results/kallsyms\n")
            result = qemu.boot(qemu.Job(job, None, Path(results) / "results",
                                        timeout=args.timeout),
                               qemu.Machine(built, arch=args.arch, accel=args.accel))
            listing = Path(results) / "results" / "kallsyms"
            if not (result.ok and listing.is_file()):
                print(f"vm: symbols: no /proc/kallsyms from the guest: "
                      f"{result.error or f'exit status {result.exit_status}'}", file=sys.stderr)
                return 1
            kallsyms = listing.read_text()
    sys.stdout.write(stuck.symbolize(dump, stuck.KernelSymbols(kallsyms)))
    return 0


def _arch_name(text: str) -> str:
    """--arch's type: Debian's name (or uname's) of an architecture the grader knows."""
    try:
        return image.get_arch(text).name
    except image.VMError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("vm: "))


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_userns"]:  # the build's helper (userns_argv), not a command for people
        return image._userns_main(argv[1:])
    parser = argparse.ArgumentParser(prog="vm.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", help="image cache (default $ZOO_VM_CACHE, else "
                        "$XDG_CACHE_HOME/zookeeper/vm, else ~/.cache/zookeeper/vm)")
    parser.add_argument("--arch", type=_arch_name, default=None, metavar="ARCH",
                        help=f"the guest's architecture: {', '.join(image.ARCHES)} (default: the "
                        f"host's, {image.host_arch()}); import takes the image's own")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("build", help="build the image (cached)")
    p.add_argument("--force", action="store_true", help="rebuild even if cached")
    p.set_defaults(func=_cmd_build)
    p = sub.add_parser("info", help="cache key, paths, accelerator")
    p.set_defaults(func=_cmd_info)
    p = sub.add_parser("export", help="write the cached image into one file, print its sha256")
    p.add_argument("file", help="the file to write (a directory: zoo-vm-KEY.tar.gz in it)")
    p.set_defaults(func=_cmd_export)
    p = sub.add_parser("import", help="install an exported image into the cache")
    p.add_argument("source", metavar="FILE-or-URL", help="a file, file:// or http(s):// URL")
    p.add_argument("--sha256", required=True, help="its sha256, as export printed it")
    p.set_defaults(func=_cmd_import)
    p = sub.add_parser("save", help="save the booted guest that each job restores (done by "
                       "the first job otherwise), and restore it once")
    p.add_argument("--timeout", type=float, default=900, help="kill QEMU after (s)")
    p.add_argument("--accel", choices=("tcg", "kvm"))
    p.set_defaults(func=_cmd_save)
    p = sub.add_parser("run", help="boot and run SCRIPT as root in the guest")
    p.add_argument("script")
    p.add_argument("--file", action="append", help="another file (or directory) for the "
                   "job directory, /mnt/job in the guest")
    p.add_argument("--submission", help="directory shared read-only at /mnt/submission")
    p.add_argument("--results", help="directory shared read-write at /mnt/results "
                   "(default: a temporary one); run as root, QEMU writes it as nobody, so "
                   "keep it in a directory only root may enter")
    p.add_argument("--timeout", type=float, default=600, help="kill QEMU after (s)")
    p.add_argument("--job-timeout", type=float, help="the guest stops run.sh after (s)")
    p.add_argument("--silence", type=float, metavar="S", help="stop the guest when its "
                   f"job.log has not grown for S seconds (exit status {STALLED})")
    p.add_argument("--memory", default="2G")
    p.add_argument("--smp", type=int, default=2)
    p.add_argument("--accel", choices=("tcg", "kvm"))
    p.add_argument("--journal", action="store_true", help="save journal.log in the results")
    p.add_argument("--boot", action="store_true", help="boot the image, not the saved "
                   "booted guest (saved at the first run, restored at the others)")
    p.set_defaults(func=_cmd_run)
    p = sub.add_parser("symbols", help=f"name the kernel addresses in a {stuck.CPUS_AT_STOP} "
                       "(what a stopped guest's vCPUs were doing)")
    p.add_argument("file")
    p.add_argument("--kallsyms", help="the guest's /proc/kallsyms, read already (default: "
                   "read in a restored guest)")
    p.add_argument("--timeout", type=float, default=600, help="kill QEMU after (s)")
    p.add_argument("--accel", choices=("tcg", "kvm"))
    p.set_defaults(func=_cmd_symbols)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except image.VMError as e:
        print(e, file=sys.stderr)
        return 125
    except KeyboardInterrupt:
        print("vm: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
