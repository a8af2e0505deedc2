#!/usr/bin/env python3
"""Build Gradescope's autograder zip (what `make gradescope` runs).

    python3 grader/gradescope/bundle.py OUT.zip [--vm-image FILE-or-URL --vm-sha256 HASH]
                                        [--hidden-visibility WHEN] [--vm-timeout SECONDS]

At the zip's top, as Gradescope wants them: setup.sh and run_autograder (this
directory's), config.env (what they read), and zookeeper/: the grader (grade,
runner.py, every check, hidden ones included, report.py, rules.py, subids.py,
schedulers.py, home.py, user_systemd.py, children.py, precompile.py, vm.py, image.py,
qemu.py, qmp.py, stuck.py, the guest's files) and tools/mkrootfs.py.
--vm-image: the image course staff exported (grader/vm.py export) that setup.sh
imports instead of building one; a file goes into the zip (mind Gradescope's upload
limit), a URL is fetched by setup.sh.  A file's sha256 is checked here: a mismatch
would otherwise show only on Gradescope, when setup.sh imports it.
Entries have a fixed date: the same tree gives the same zip.
"""

import argparse
import shlex
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent.parent
sys.path.insert(0, str(HERE.parent))
import image  # noqa: E402  (grader/image.py: the image's sha256, as vm.py import checks it)

GRADER_FILES = ["grade", "runner.py", "checks.py", "report.py", "rules.py", "subids.py",
                "precompile.py", "vm.py", "image.py", "qemu.py", "qmp.py", "stuck.py",
                "schedulers.py", "home.py", "user_systemd.py", "waiting_child.py",
                "children.py"]
GRADER_DIRS = ["guest", "helpers"]
TOOLS = ["tools/mkrootfs.py"]
EXECUTABLE = {"setup.sh", "run_autograder", "zookeeper/grader/grade"}
DATE = (2020, 1, 1, 0, 0, 0)
VISIBILITIES = ("hidden", "after_due_date", "after_published", "visible")


class BundleError(Exception):
    """What stops the bundle, in one line (printed as `bundle.py: ...`, exit 2)."""


def check_image(vm_image: str, vm_sha256: str | None) -> tuple[Path | None, str, str]:
    """(the image file to put in the zip or None for a URL, its name in config.env, its
    sha256), or BundleError.  make gradescope passes --vm-sha256 with an empty value when
    VM_SHA256 is not set: that is a missing hash too."""
    if not vm_sha256:
        raise BundleError(f"--vm-image {vm_image} without its sha256: add --vm-sha256 HASH "
                          "(make gradescope ... VM_SHA256=HASH), as grader/vm.py export "
                          "printed it")
    expected = image.normal_sha256(vm_sha256)  # as grader/vm.py import takes it
    if expected is None:
        raise BundleError(f"--vm-sha256 {vm_sha256!r} is not a sha256 (64 hex digits, as "
                          "grader/vm.py export printed it)")
    if "://" in vm_image:
        return None, vm_image, expected  # fetched and checked by setup.sh, on Gradescope
    image_file = Path(vm_image).resolve()
    if not image_file.is_file():
        raise BundleError(f"--vm-image {vm_image}: no such file")
    actual = image.file_sha256(image_file)
    if actual != expected:
        raise BundleError(f"--vm-image {vm_image}: its sha256 is {actual}, not {expected} "
                          "(--vm-sha256): Gradescope's setup.sh would refuse it")
    return image_file, image_file.name, expected


def members(vm_image: Path | None) -> list[tuple[str, Path]]:
    """(name in the zip, file here), in order."""
    out = [("setup.sh", HERE / "setup.sh"), ("run_autograder", HERE / "run_autograder")]
    for name in GRADER_FILES:
        out.append((f"zookeeper/grader/{name}", ROOT / "grader" / name))
    for d in GRADER_DIRS:
        for path in sorted((ROOT / "grader" / d).rglob("*")):
            if path.is_file() and "__pycache__" not in path.parts:
                out.append((f"zookeeper/{path.relative_to(ROOT).as_posix()}", path))
    for name in TOOLS:
        out.append((f"zookeeper/{name}", ROOT / name))
    if vm_image:
        out.append((vm_image.name, vm_image))
    return out


def config_text(args, image_name: str, image_sha256: str) -> str:
    """KEY=VALUE lines, each value quoted for sh (shlex.quote): setup.sh sources the
    file, and an image's URL may hold & or ; (a signed URL's query does)."""
    values = {"VM_IMAGE": image_name, "VM_SHA256": image_sha256,
              "HIDDEN_VISIBILITY": args.hidden_visibility,
              "VM_TIMEOUT": f"{args.vm_timeout:.0f}"}
    return "# Read by setup.sh (sourced) and run_autograder: written by bundle.py.\n" + "".join(
        f"{key}={shlex.quote(value)}\n" for key, value in values.items())


def add(z: zipfile.ZipFile, name: str, data: bytes, mode: int = 0o644) -> None:
    """An entry with a fixed date and its file's mode (rwx for the owner, r-x for all
    where it is executable): unzip gives the guest's scripts back as they are here."""
    info = zipfile.ZipInfo(name, DATE)
    executable = name in EXECUTABLE or mode & 0o111
    info.external_attr = (0o100755 if executable else 0o100644) << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    z.writestr(info, data)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, metavar="OUT.zip")
    ap.add_argument("--vm-image", metavar="FILE-or-URL",
                    help="an exported VM image (grader/vm.py export) for setup.sh to import")
    # nargs="?": a bare --vm-sha256 (make's empty VM_SHA256) is our error, not argparse's.
    ap.add_argument("--vm-sha256", metavar="HASH", nargs="?", const="",
                    help="its sha256 (as export printed it)")
    ap.add_argument("--hidden-visibility", default="after_due_date", choices=VISIBILITIES,
                    help="when students see the hidden checks (default after_due_date)")
    ap.add_argument("--vm-timeout", type=float, default=2400, metavar="SECONDS",
                    help="stop a submission's VM after this long (default 2400: under "
                         "Gradescope's own limit, so that results.json says what ran)")
    args = ap.parse_args(argv)
    image_file, image_name, image_sha256 = None, "", ""
    try:
        if args.vm_image:
            image_file, image_name, image_sha256 = check_image(args.vm_image, args.vm_sha256)
        elif args.vm_sha256:
            raise BundleError("--vm-sha256 without --vm-image: the two go together")
    except BundleError as e:
        print(f"bundle.py: {e}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_name(args.out.name + ".tmp")
    with zipfile.ZipFile(tmp, "w") as z:
        for name, path in members(image_file):
            if name == (image_file.name if image_file else None):
                z.write(path, name, compress_type=zipfile.ZIP_STORED)  # already compressed
            else:
                add(z, name, path.read_bytes(), path.stat().st_mode)
        add(z, "config.env", config_text(args, image_name, image_sha256).encode())
    tmp.replace(args.out)
    print(f"bundle.py: {args.out} ({args.out.stat().st_size / 1024:.0f} KiB): upload it as "
          "the autograder of a Gradescope programming assignment")
    return 0


if __name__ == "__main__":
    sys.exit(main())
