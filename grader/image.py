"""The grader's VM image: its recipe, the cache, the build, export and import.

The image is three files under <cache>/<key>/, <cache> being $ZOO_VM_CACHE, else
$XDG_CACHE_HOME/zookeeper/vm, else ~/.cache/zookeeper/vm (the invoking user's under sudo):
`vmlinux` (Debian's 6.1 kernel, decompressed to ELF), `initramfs.cpio` (busybox and the
modules for the root disk) and `rootfs.ext4` (debootstrap bookworm with systemd, python3,
uidmap, slirp4netns and the pinned PyPI packages). <key> is the sha256 of the recipe
below and of grader/guest/*: change either and the next build makes a new image.
Booting needs no root. Building as root uses debootstrap and chroot; building as any
other user uses mmdebstrap's unshare mode and a user namespace with the user's
subordinate ranges (/etc/subuid, /etc/subgid: 65536 ids each) for the same image: the
same packages and configuration, its files owned as in the root build. Or no build at
all: `export` writes the image into one file that course staff publish, and `import`
installs it for any user (no root, no subordinate range) after checking its sha256.

Architectures: amd64 (q35) and arm64 (virt), `--arch` (default: the host's), each
with its own cache key. An arm64 image built on x86_64 (or the reverse) runs the
guest's maintainer scripts through qemu-user: the host needs a binfmt_misc handler
with the F flag (apt-get install qemu-user-static binfmt-support); booting needs only
qemu-system-aarch64 (qemu-system-arm), under TCG.

What the guest provides (see grader/guest/):
  - systemd, cgroup v2 with cpu, memory and pids; a user `student` (uid 1000) with
    subuid `student:100000:65536` and subgid `student:300000:65536` (different, so that
    a gid map built from the subuid range shows), lingering, so its user manager and
    session bus (/run/user/1000/bus) are up before the job; user@.service delegates
    pids memory cpu cpuset io; a user `nosub` (uid 1001) without any subordinate range;
    a user `student2` (uid 1002) like student, with the ranges after student's
    (165536 and 365536), lingering too: the runner's second lane of checks;
  - 512M of swap (a file made at boot by zoo-setup), so that a memory limit without
    memory.swap.max 0 lets a container swap instead of being killed;
  - /dev/net/tun mode 0666; a link `dummy0` with 192.168.200.1/24;
  - the kernel's static branches a grading would flip (the CFS bandwidth one, kept on
    by an empty cgroup `cfs-bandwidth-on` with a finite cpu.max; the network's
    once-only secrets) flipped at boot with one vCPU online: flipped beside a running
    vCPU they can stall a TCG guest for good (zoo-setup);
  - the job: /mnt/job (read-only, its run.sh runs as root), /mnt/submission (read-only),
    /mnt/results (read-write; run.sh's stdout and stderr go to /mnt/results/job.log);
  - console markers: `ZOO-JOB-READY` (up, waiting for the host's `ZOO-JOB-GO` line on
    the console: where a booted guest is saved, and restored for each job), then
    `ZOO-JOB-START`, `ZOO-JOB-EXIT=<status>`, `ZOO-JOB-ERROR=<message>`, then power-off.

Standard library only (Python >= 3.10). grader/vm.py is the command line; grader/qemu.py
boots the image.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import hashlib
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
import urllib.parse
import urllib.request
import uuid
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
GUEST_DIR = HERE / "guest"
# tools/mkrootfs.py, beside grader/ wherever the grader is copied (the handout, the
# Gradescope zip), reads the host's apt sources for the container's Debian image too.
sys.path.append(str(HERE.parent / "tools"))

import mkrootfs  # noqa: E402
import subids  # noqa: E402
import waiting_child  # noqa: E402
from children import die_with_parent  # noqa: E402

# ---------------------------------------------------------------------------------------
# The recipe. Everything here (and grader/guest/*) goes into the cache key.
# Bump RECIPE_VERSION when the build code below changes what it makes.
# ---------------------------------------------------------------------------------------
RECIPE_VERSION = 1
SUITE = "bookworm"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
# Debian's generic 6.1 flavour (the cloud flavour has no 9p).
KERNEL_PACKAGE_RE = r"linux-image-6\.1\.\d+-\d+-amd64"
KERNEL_METAPACKAGE = "linux-image-amd64"
PACKAGES = (
    "systemd", "systemd-sysv", "dbus", "dbus-user-session", "libpam-systemd", "python3",
    "uidmap", "slirp4netns", "iproute2", "busybox-static", "procps", "util-linux", "kmod",
    "libseccomp2",
)
# Installed with the host's pip into the guest (Debian's own versions differ).
# Fully pinned, dependencies included, installed with --no-deps.
PIP_PINS = (
    "pyroute2==0.9.7", "pyseccomp==0.1.2",
    "pytest==9.0.3", "pluggy==1.6.0", "iniconfig==2.1.0", "packaging==25.0",
    "pygments==2.19.2",
)
STUDENT_USER = "student"
STUDENT_UID = 1000
# Different subuid and subgid ranges: a gid map built from the wrong one is then wrong.
SUBUID_START, SUBGID_START, SUBID_COUNT = 100000, 300000, 65536
# A second user without any subordinate range (zookeeper maps only its root).
NOSUB_USER, NOSUB_UID = "nosub", 1001
# The runner's second lane of checks (runner.py --lane-user): a user like student,
# with ranges of its own right after student's.
LANE_USER, LANE_UID = "student2", 1002
LANE_SUBUID_START, LANE_SUBGID_START = SUBUID_START + SUBID_COUNT, SUBGID_START + SUBID_COUNT
HOSTNAME = "zoovm"
IMAGE_MIN_MB = 1536
# Loaded by the initramfs, with their dependencies, to mount the root disk.
INITRAMFS_MODULES = ("virtio_pci", "virtio_blk", "crc32c_generic", "ext4")
# Must be loadable in the guest (checked at build time).
GUEST_MODULES = (
    "9p", "9pnet_virtio", "overlay", "veth", "bridge", "tun", "dummy", "ext4",
    "virtio_blk", "virtio_pci",
)
# Parts of the kernel's module tree a headless VM never loads (kept out of the image).
MODULE_PRUNE = (
    "sound", "drivers/gpu", "drivers/media", "drivers/infiniband", "drivers/staging",
    "drivers/usb", "drivers/iio", "drivers/hid", "drivers/input", "drivers/comedi",
    "drivers/bluetooth", "drivers/net/wireless", "drivers/net/ethernet", "drivers/net/can",
    "drivers/isdn", "drivers/mmc", "drivers/nfc", "drivers/hwmon", "drivers/platform",
    "drivers/scsi", "drivers/ata", "drivers/thunderbolt", "drivers/fpga", "net/wireless",
    "net/mac80211", "net/bluetooth",
)
# Units that would only slow the boot down (every fork+exec is ~35x slower under TCG) or
# wait for devices that never come (no udev in this guest).
MASKED_UNITS = (
    "getty.target", "serial-getty@ttyS0.service", "getty@tty1.service",
    "apt-daily.timer", "apt-daily-upgrade.timer", "dpkg-db-backup.timer",
    "e2scrub_all.timer", "e2scrub_reap.service", "fstrim.timer",
    "systemd-tmpfiles-clean.timer", "systemd-pstore.service",
    "modprobe@configfs.service", "modprobe@dm_mod.service", "modprobe@drm.service",
    "modprobe@efi_pstore.service", "modprobe@fuse.service", "modprobe@loop.service",
    "sys-kernel-config.mount", "sys-kernel-debug.mount", "sys-kernel-tracing.mount",
    "sys-fs-fuse-connections.mount", "dev-hugepages.mount",
    "systemd-binfmt.service", "proc-sys-fs-binfmt_misc.automount",
    "systemd-random-seed.service", "systemd-sysusers.service", "systemd-firstboot.service",
    "systemd-journal-flush.service", "systemd-journal-catalog-update.service",
    "systemd-update-utmp.service", "systemd-update-utmp-runlevel.service",
    "systemd-machine-id-commit.service", "systemd-hwdb-update.service", "ldconfig.service",
    "systemd-ask-password-console.path", "systemd-ask-password-wall.path",
    "systemd-initctl.socket", "systemd-journald-audit.socket",
)
# Generators run at every boot before any unit; only the debug one (systemd.mask= and
# friends on the kernel command line) is worth its time here.
MASKED_GENERATORS = (
    "systemd-cryptsetup-generator", "systemd-fstab-generator", "systemd-getty-generator",
    "systemd-gpt-auto-generator", "systemd-hibernate-resume-generator",
    "systemd-integritysetup-generator", "systemd-rc-local-generator",
    "systemd-run-generator", "systemd-system-update-generator", "systemd-sysv-generator",
    "systemd-veritysetup-generator",
)
MASKED_USER_GENERATORS = ("systemd-xdg-autostart-generator",)
# grader/guest/<name> -> (path in the rootfs, mode). "init" goes into the initramfs.
GUEST_FILES = {
    "zoo-job": ("/usr/local/sbin/zoo-job", 0o755),
    "zoo-job.service": ("/etc/systemd/system/zoo-job.service", 0o644),
    "zoo-setup": ("/usr/local/sbin/zoo-setup", 0o755),
    "zoo-setup.service": ("/etc/systemd/system/zoo-setup.service", 0o644),
    "user-delegate.conf": ("/etc/systemd/system/user@.service.d/zoo-delegate.conf", 0o644),
    "journald.conf": ("/etc/systemd/journald.conf.d/zoo.conf", 0o644),
}
ENABLED_UNITS = {
    "zoo-setup.service": "multi-user.target.wants",
    "zoo-job.service": "multi-user.target.wants",
}

# ---------------------------------------------------------------------------------------
# Boot settings (not part of the image).
# ---------------------------------------------------------------------------------------
# loglevel=5 after quiet: the kernel's warnings reach the console too (a guest that
# stalls once in a long while, NOTES.md, may say why there), not its boot chatter.
KERNEL_CMDLINE = (
    "console=ttyS0 root=/dev/vda rw quiet loglevel=5 panic=-1 8250.nr_uarts=1 "
    "mitigations=off systemd.unified_cgroup_hierarchy=1"
)


# ---------------------------------------------------------------------------------------
# Guest architectures: what differs between them. amd64's entries are the constants
# above, so that its cache key (and a published image) is the same as before arm64.
# ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Arch:
    name: str  # Debian's name, what --arch takes: amd64, arm64
    machine: str  # uname -m: x86_64, aarch64
    qemu: str  # qemu-system-* binary
    qemu_package: str  # the Debian package that has it
    qemu_machine: tuple[str, ...]
    kvm_modules: tuple[str, ...]  # KVM is real where one is loaded (empty: built in)
    kernel_package_re: str
    kernel_metapackage: str
    initramfs_modules: tuple[str, ...]
    guest_modules: tuple[str, ...]
    cmdline: str  # the kernel command line (the console is the machine's UART)
    elf: int  # e_machine of its ELF binaries (the qemu-user binfmt handler's magic)


ARCHES = {
    "amd64": Arch("amd64", "x86_64", "qemu-system-x86_64", "qemu-system-x86", ("q35",),
                  ("kvm_intel", "kvm_amd"), KERNEL_PACKAGE_RE, KERNEL_METAPACKAGE,
                  INITRAMFS_MODULES, GUEST_MODULES, KERNEL_CMDLINE, 0x3E),
    # The virt machine: a PL011 UART (ttyAMA0) and PCIe (virtio-pci, as on q35). The
    # kernel has the 8250 driver built in: nr_uarts=0 leaves no ttyS0 that zoo-job
    # would write its markers to. The Image is booted directly, as amd64's vmlinux.
    "arm64": Arch("arm64", "aarch64", "qemu-system-aarch64", "qemu-system-arm", ("virt",),
                  (), r"linux-image-6\.1\.\d+-\d+-arm64", "linux-image-arm64",
                  INITRAMFS_MODULES, GUEST_MODULES,
                  KERNEL_CMDLINE.replace("console=ttyS0", "console=ttyAMA0")
                  .replace("8250.nr_uarts=1", "8250.nr_uarts=0"), 0xB7),
}
ARCH_ALIASES = {a.machine: a.name for a in ARCHES.values()}


def host_arch() -> str:
    """The host's architecture by Debian's name ("amd64", "arm64"), or its uname -m."""
    machine = os.uname().machine
    return ARCH_ALIASES.get(machine, machine)


def get_arch(name: str | None = None) -> Arch:
    """The Arch of name (Debian's or uname's; None: the host's); VMError if unknown."""
    name = name or host_arch()
    arch = ARCHES.get(ARCH_ALIASES.get(name, name))
    if arch is None:
        raise VMError(f"vm: no grader VM for the architecture {name!r} (there are: "
                      f"{', '.join(ARCHES)})")
    return arch


IMAGE_FILES = ("vmlinux", "initramfs.cpio", "rootfs.ext4", "manifest.json")
# How many logs of failed builds stay in the cache (build-KEY-TIME.log).
KEEP_LOGS = 3
KEEP_OLD_IMAGES = 1


class VMError(Exception):
    """A step of building or booting the VM failed; the message says which and where."""


@dataclass(frozen=True)
class ImagePaths:
    key: str
    dir: Path
    kernel: Path
    initramfs: Path
    rootfs: Path
    manifest: dict = field(default_factory=dict, compare=False)



# ---------------------------------------------------------------------------------------
# Cache key and locations
# ---------------------------------------------------------------------------------------
def default_cache_root() -> Path:
    """$ZOO_VM_CACHE, else $XDG_CACHE_HOME/zookeeper/vm, else ~/.cache/zookeeper/vm.

    Under sudo: the invoking user's ~/.cache/zookeeper/vm (whoever built it, that user
    boots it). zookeeper's own cache (seccomp.bpf) is in the same zookeeper/ directory.
    """
    env = os.environ.get("ZOO_VM_CACHE")
    if env:
        return Path(env).expanduser().resolve()
    home = Path.home()
    sudo_user = os.environ.get("SUDO_USER")
    if os.geteuid() == 0 and sudo_user and sudo_user != "root":
        with contextlib.suppress(KeyError):
            import pwd

            return Path(pwd.getpwnam(sudo_user).pw_dir) / ".cache" / "zookeeper" / "vm"
    xdg = os.environ.get("XDG_CACHE_HOME", "")
    if os.path.isabs(xdg):  # the XDG spec: a relative value is invalid and ignored
        return Path(xdg) / "zookeeper" / "vm"
    return home / ".cache" / "zookeeper" / "vm"


def recipe(arch: str | None = None) -> dict:
    """What the image is made of: the constants above and the guest files' content,
    for arch (Debian's name; None: the host's). amd64's has no "arch" entry: its key
    is the one it had before there were other architectures."""
    a = get_arch(arch)
    guest = {}
    for path in sorted(GUEST_DIR.iterdir()):
        if path.is_file():
            guest[path.name] = hashlib.sha256(path.read_bytes()).hexdigest()
    return {
        "recipe_version": RECIPE_VERSION,
        "suite": SUITE,
        "kernel_package_re": a.kernel_package_re,
        "packages": sorted(PACKAGES),
        "pip": list(PIP_PINS),
        "student": [STUDENT_USER, STUDENT_UID, SUBUID_START, SUBGID_START, SUBID_COUNT],
        "nosub": [NOSUB_USER, NOSUB_UID],
        "lane_user": [LANE_USER, LANE_UID, LANE_SUBUID_START, LANE_SUBGID_START],
        "hostname": HOSTNAME,
        "image_min_mb": IMAGE_MIN_MB,
        "initramfs_modules": list(a.initramfs_modules),
        "guest_modules": list(a.guest_modules),
        "module_prune": list(MODULE_PRUNE),
        "masked_units": list(MASKED_UNITS),
        "masked_generators": list(MASKED_GENERATORS + MASKED_USER_GENERATORS),
        "guest_files": {k: [v[0], oct(v[1])] for k, v in sorted(GUEST_FILES.items())},
        "enabled_units": dict(sorted(ENABLED_UNITS.items())),
        "guest": guest,
    } | ({} if a.name == "amd64" else {"arch": a.name})


def recipe_arch(recipe_: dict) -> str:
    """The architecture a recipe (a manifest's "recipe") is for."""
    return recipe_.get("arch", "amd64")


def cache_key(arch: str | None = None) -> str:
    blob = json.dumps(recipe(arch), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()


def _image_paths(directory: Path, key: str) -> ImagePaths:
    manifest = {}
    with contextlib.suppress(OSError, ValueError):
        manifest = json.loads((directory / "manifest.json").read_text())
    return ImagePaths(key=key, dir=directory, kernel=directory / "vmlinux",
                      initramfs=directory / "initramfs.cpio",
                      rootfs=directory / "rootfs.ext4", manifest=manifest)


def cached_image(cache_root: Path | str | None = None,
                 arch: str | None = None) -> ImagePaths | None:
    """The image for the current recipe (for arch; None: the host's) if it is built."""
    root = Path(cache_root) if cache_root else default_cache_root()
    key = cache_key(arch)
    directory = root / key
    if all((directory / name).is_file() for name in IMAGE_FILES):
        return _image_paths(directory, key)
    return None


# ---------------------------------------------------------------------------------------
# Building without root: a user namespace with the user's subordinate ranges
# ---------------------------------------------------------------------------------------
# mmdebstrap's hook that makes /usr merged the way debootstrap does (directory symlinks
# and usr-is-merged): without it bookworm gets the usrmerge package and perl with it.
MMDEBSTRAP_MERGED_USR_HOOK = Path("/usr/share/mmdebstrap/hooks/merged-usr")
SUBIDS_NEEDED = 65536  # ids 1..65535 of the namespace come from the subordinate range
SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"


def _find_tool(name: str) -> str | None:
    """shutil.which, also in the sbin directories a user's PATH often lacks."""
    path = os.environ.get("PATH", os.defpath) + ":" + SBIN_PATH
    return shutil.which(name, path=path)


def _user_name() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.getuid()).pw_name
    except KeyError:
        return str(os.getuid())


def subid_range(kind: str, user: str | None = None, uid: int | None = None,
                path: Path | None = None) -> tuple[int, int] | None:
    """(start, count) of the first /etc/sub{uid,gid} range of the user with enough ids."""
    return subids.first_range(f"sub{kind}", user if user is not None else _user_name(),
                              uid if uid is not None else os.getuid(), SUBIDS_NEEDED, path)


def rootless_problem() -> str | None:
    """Why the current (non-root) user cannot build the image, or None if it can."""
    packages = {"mmdebstrap": "mmdebstrap", "newuidmap": "uidmap", "newgidmap": "uidmap",
                "mkfs.ext4": "e2fsprogs", "debugfs": "e2fsprogs", "tar": "tar",
                "chroot": "coreutils"}
    missing = [tool for tool in packages if not _find_tool(tool)]
    if missing:
        need = sorted({packages[t] for t in missing})
        return f"{', '.join(missing)} not found (apt-get install {' '.join(need)})"
    user = _user_name()
    for kind in ("uid", "gid"):
        if subid_range(kind) is None:
            return (f"no subordinate {kind} range of {SUBIDS_NEEDED} ids for {user} in "
                    f"/etc/sub{kind} (an administrator adds one: usermod --add-sub{kind}s "
                    f"START-END {user})")
    with contextlib.suppress(OSError, ValueError):
        if int(Path("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
               .read_text()) == 1:
            return ("AppArmor restricts unprivileged user namespaces "
                    "(kernel.apparmor_restrict_unprivileged_userns=1)")
    with contextlib.suppress(OSError, ValueError):
        if int(Path("/proc/sys/kernel/unprivileged_userns_clone").read_text()) == 0:
            return "unprivileged user namespaces are off (kernel.unprivileged_userns_clone=0)"
    return None


def userns_argv(argv: list[str], dev_for: Path | None = None) -> list[str]:
    """argv run as root of a new user namespace: our uid and gid as 0, 1..65535 from the
    subordinate ranges (the mapping mmdebstrap's unshare mode and the lab itself use).
    dev_for: a root directory whose /dev gets the usual device nodes meanwhile (see
    _mount_dev): a namespace cannot make them, and apt in a chroot needs /dev/null."""
    dev = ["--dev", str(dev_for)] if dev_for else []
    return [sys.executable, "-I", str(HERE / "vm.py"), "_userns", *dev, "--", *argv]


DEV_NODES = ("null", "zero", "full", "random", "urandom", "tty")


def _mount_dev(root: Path) -> None:
    """In a new mount namespace (we are root of our user namespace): a tmpfs on root/dev
    with the host's device nodes bind-mounted in, as mmdebstrap's unshare mode does. It
    all goes away with the namespace: the tree keeps its own /dev."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = (ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_char_p)

    def mount(source: str | None, target: str, fstype: str | None, flags: int,
              data: str | None = None) -> None:
        if libc.mount(source and source.encode(), target.encode(), fstype and fstype.encode(),
                      flags, data and data.encode()) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"mount {source or fstype} on {target}: {os.strerror(err)}")

    ms_nosuid, ms_noexec, ms_bind, ms_rec, ms_private = 2, 8, 4096, 16384, 1 << 18
    if hasattr(os, "unshare"):
        os.unshare(os.CLONE_NEWNS)  # novermin (Python >= 3.12)
    elif libc.unshare(0x00020000) != 0:  # CLONE_NEWNS
        err = ctypes.get_errno()
        raise OSError(err, f"unshare(CLONE_NEWNS): {os.strerror(err)}")
    mount(None, "/", None, ms_rec | ms_private)
    dev = root / "dev"
    dev.mkdir(exist_ok=True)
    mount("tmpfs", str(dev), "tmpfs", ms_nosuid | ms_noexec, "mode=755")
    for name in DEV_NODES:
        if os.path.exists(f"/dev/{name}"):
            (dev / name).touch()
            mount(f"/dev/{name}", str(dev / name), None, ms_bind)
    for name, target in (("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
                         ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2")):
        os.symlink(target, dev / name)


def _unshare_user() -> None:
    if hasattr(os, "unshare"):
        os.unshare(os.CLONE_NEWUSER)  # novermin (Python >= 3.12)
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) != 0:  # CLONE_NEWUSER
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def _userns_main(argv: list[str]) -> int:
    """`vm.py _userns [--dev ROOT] -- CMD...`: CMD as root of a new user namespace (see
    userns_argv)."""
    dev_for = None
    if argv[:1] == ["--dev"] and len(argv) >= 2:
        dev_for, argv = Path(argv[1]), argv[2:]
    if argv[:1] == ["--"]:
        argv = argv[1:]
    if not argv:
        print("vm: _userns needs a command", file=sys.stderr)
        return 125
    ranges = {kind: subid_range(kind) for kind in ("uid", "gid")}
    for kind, found in ranges.items():
        if found is None:
            print(f"vm: no subordinate {kind} range of {SUBIDS_NEEDED} ids for "
                  f"{_user_name()} in /etc/sub{kind}", file=sys.stderr)
            return 125
    maps = {"newuidmap": [0, os.getuid(), 1, 1, ranges["uid"][0], SUBIDS_NEEDED - 1],
            "newgidmap": [0, os.getgid(), 1, 1, ranges["gid"][0], SUBIDS_NEEDED - 1]}
    pid, go = waiting_child.fork_waiting_child(
        _unshare_user, lambda: _exec_as_root(argv, dev_for))
    if go is None:
        waiting_child.let_go(pid, go)
        print("vm: cannot create a user namespace (unshare CLONE_NEWUSER failed)",
              file=sys.stderr)
        return 125
    error = _write_maps(pid, maps)
    status = waiting_child.let_go(pid, go, go=not error)
    if error:
        print(error, file=sys.stderr)
        return 125
    return status


def _write_maps(pid: int, maps: dict[str, list[int]]) -> str:
    """newuidmap and newgidmap for pid: '' when both did, else what went wrong."""
    for tool, mapping in maps.items():
        exe = _find_tool(tool) or tool
        try:
            proc = subprocess.run([exe, str(pid), *map(str, mapping)],
                                  capture_output=True, text=True)
        except OSError as e:
            return f"vm: {tool}: {e.strerror}"
        if proc.returncode != 0:
            return (f"vm: {tool} {' '.join(map(str, mapping))} failed: "
                    f"{proc.stderr.strip() or f'exit status {proc.returncode}'}")
    return ""


def _exec_as_root(argv: list[str], dev_for: Path | None) -> None:
    """The child, mapped: become root of its user namespace, give the tree its /dev
    (--dev), and exec argv; on failure one line, and 127 or 125."""
    try:
        with contextlib.suppress(OSError):
            os.setgroups([])
        os.setresgid(0, 0, 0)
        os.setresuid(0, 0, 0)
        if dev_for is not None:
            _mount_dev(dev_for)
        preexec = die_with_parent()
        if preexec:
            preexec()
        os.execvp(argv[0], argv)
    except OSError as e:
        what = e.strerror if e.filename else (e.strerror or e)
        os.write(2, f"vm: in the user namespace: {argv[0]}: {what}\n".encode())
        os._exit(127 if isinstance(e, FileNotFoundError) else 125)


# ---------------------------------------------------------------------------------------
# Building
# ---------------------------------------------------------------------------------------
class _Build:
    """One build: a log file, and commands run with their output in it."""

    def __init__(self, log_path: Path, log: Callable[[str], object], rootless: bool = False,
                 arch: Arch | None = None):
        self.log_path = log_path
        self.say = log
        self.arch = arch or get_arch()
        # Another architecture's programs (the chroot's) run through qemu-user (binfmt).
        self.foreign = self.arch.name != host_arch()
        # Rootless: what needs root (chroot, tar -x, mkfs -d of a tree owned by many ids)
        # runs as root of a user namespace with our subordinate ranges (see _userns_main).
        self.rootless = rootless
        self.logf = open(log_path, "w", buffering=1)  # closed in build_image

    def note(self, text: str) -> None:
        self.logf.write(f"[{time.strftime('%H:%M:%S')}] {text}\n")

    def fail(self, step: str, detail: str = "") -> VMError:
        self.note(f"FAILED: {step} {detail}")
        extra = f" ({detail})" if detail else ""
        return VMError(f"vm: {step} failed{extra}: see {self.log_path}")

    def run(self, step: str, argv: list[str], *, cwd: Path | None = None,
            env: dict | None = None, check: bool = True, capture: bool = False,
            timeout: float = 1800, as_root: bool = False,
            dev_for: Path | None = None) -> subprocess.CompletedProcess:
        """Run argv with its output in the log; as_root: in the user namespace if rootless
        (dev_for: with device nodes in that root's /dev meanwhile)."""
        self.note(("$ [userns] " if as_root and self.rootless else "$ ") + " ".join(argv))
        full_env = dict(os.environ, LC_ALL="C.UTF-8", DEBIAN_FRONTEND="noninteractive")
        full_env.update(env or {})
        if as_root and self.rootless:
            argv = userns_argv(argv, dev_for)
        try:
            proc = subprocess.run(argv, cwd=cwd, env=full_env, stdin=subprocess.DEVNULL,
                                  stdout=subprocess.PIPE if capture else self.logf,
                                  stderr=self.logf, text=True, timeout=timeout)
        except FileNotFoundError:
            raise self.fail(step, f"{argv[0]} not found")
        except subprocess.TimeoutExpired:
            raise self.fail(step, f"timed out after {timeout:.0f} s")
        if capture and proc.stdout:
            self.logf.write(proc.stdout if len(proc.stdout) < 4000 else proc.stdout[:4000] + "…\n")
        if check and proc.returncode != 0:
            raise self.fail(step, f"exit status {proc.returncode}")
        return proc

    def chroot(self, step: str, root: Path, argv: list[str], **kw) -> subprocess.CompletedProcess:
        env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
               "HOME": "/root"}
        env.update(kw.pop("env", {}) or {})
        return self.run(step, ["chroot", str(root)] + argv, env=env, as_root=True,
                        dev_for=root, **kw)


def host_mirror(suite: str = SUITE, default: str = DEFAULT_MIRROR) -> str:
    """The Debian mirror of the host's apt sources serving suite ($ZOO_DEBIAN_MIRROR wins)."""
    env = os.environ.get("ZOO_DEBIAN_MIRROR")
    if env and suite == SUITE:
        return env.rstrip("/")
    for uri, suites in mkrootfs.host_mirrors():
        if suite in suites and uri.startswith(("http://", "https://", "file:/")):
            return uri.rstrip("/")
    return default


def extract_vmlinux(vmlinuz: bytes) -> bytes:
    """The ELF kernel inside a bzImage, found by its compression magic (as extract-vmlinux)."""
    def unxz(data: bytes) -> bytes:
        return lzma.LZMADecompressor(format=lzma.FORMAT_XZ).decompress(data)

    def unlzma(data: bytes) -> bytes:
        return lzma.LZMADecompressor(format=lzma.FORMAT_ALONE).decompress(data)

    def gunzip(data: bytes) -> bytes:
        return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)

    def unzstd(data: bytes) -> bytes:
        if not shutil.which("zstd"):
            raise ValueError("zstd not installed")
        return subprocess.run(["zstd", "-dcq"], input=data, capture_output=True).stdout

    methods = ((b"\xfd7zXZ\x00", unxz), (b"\x1f\x8b\x08", gunzip),
               (b"\x28\xb5\x2f\xfd", unzstd), (b"\x5d\x00\x00", unlzma))
    for magic, decompress in methods:
        start = 0
        for _ in range(8):
            pos = vmlinuz.find(magic, start)
            if pos < 0:
                break
            start = pos + 1
            try:
                out = decompress(vmlinuz[pos:])
            except (lzma.LZMAError, zlib.error, EOFError, ValueError, OSError):
                continue
            if out[:4] == b"\x7fELF":
                return out
    raise ValueError("no compressed ELF kernel found in vmlinuz")


def extract_arm64_image(vmlinuz: bytes) -> bytes:
    """arm64's uncompressed Image from Debian's vmlinuz: the Image itself (bookworm's,
    with its EFI stub's "MZ"), or a gzip'd one (as some kernels ship it)."""
    data = vmlinuz
    if data[:3] == b"\x1f\x8b\x08":
        try:
            data = zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data)
        except zlib.error as e:
            raise ValueError(f"vmlinuz is gzip'd but does not decompress: {e}")
    if data[0x38:0x3C] != b"ARM\x64":
        raise ValueError("no arm64 Image (magic ARM\\x64 at 0x38) in vmlinuz")
    return data


def _cpio_newc(entries: Iterable[tuple[str, int, bytes, int]]) -> bytes:
    """A newc cpio archive from (name, mode, data, rdev) entries: data is a symlink's target."""
    out = bytearray()

    def pad4() -> None:
        out.extend(b"\0" * (-len(out) % 4))

    for ino, (name, mode, data, rdev) in enumerate(entries, start=1):
        encoded = name.encode() + b"\0"
        fields = (ino, mode, 0, 0, 1, 0, len(data), 0, 0, rdev >> 8, rdev & 0xFF,
                  len(encoded), 0)
        out.extend(b"070701" + b"".join(b"%08X" % f for f in fields))
        out.extend(encoded)
        pad4()
        out.extend(data)
        pad4()
    encoded = b"TRAILER!!!\0"
    out.extend(b"070701" + b"".join(b"%08X" % f for f in (0,) * 11 + (len(encoded), 0)))
    out.extend(encoded)
    pad4()
    out.extend(b"\0" * (-len(out) % 512))
    return bytes(out)


def _read_modules_dep(moddir: Path) -> dict[str, tuple[str, list[str]]]:
    """module name -> (path relative to moddir, [dependency paths])."""
    table = {}
    for line in (moddir / "modules.dep").read_text().splitlines():
        if ":" not in line:
            continue
        path, deps = line.split(":", 1)
        name = re.sub(r"\.ko(\.\w+)?$", "", os.path.basename(path)).replace("-", "_")
        table[name] = (path, deps.split())
    return table


def _builtin_modules(moddir: Path) -> set[str]:
    try:
        lines = (moddir / "modules.builtin").read_text().split()
    except OSError:
        return set()
    return {re.sub(r"\.ko$", "", os.path.basename(x)).replace("-", "_") for x in lines}


def _module_load_order(moddir: Path, wanted: Iterable[str]) -> list[str]:
    """Paths (relative to moddir) of the wanted modules and their dependencies, deps first."""
    table = _read_modules_dep(moddir)
    by_path = {path: deps for path, deps in table.values()}
    builtin = _builtin_modules(moddir)
    order: list[str] = []

    def visit(path: str, depth: int = 0) -> None:
        if path in order or depth > 50:
            return
        for dep in by_path.get(path, []):
            visit(dep, depth + 1)
        order.append(path)

    for name in wanted:
        name = name.replace("-", "_")
        if name in table:
            visit(table[name][0])
        elif name not in builtin:
            raise ValueError(f"module {name} is neither in modules.dep nor built in")
    return order


def _safe_rmtree(path: Path) -> None:
    """rm -rf that first unmounts anything mounted below path (debootstrap mounts /proc…)."""
    if not path.exists():
        return
    real = os.path.realpath(path)

    def mounts_below() -> list[str]:
        found = []
        with contextlib.suppress(OSError), open("/proc/self/mountinfo") as f:
            for line in f:
                point = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)),
                               line.split()[4])
                if point == real or point.startswith(real + "/"):
                    found.append(point)
        return found

    for point in sorted(mounts_below(), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], stderr=subprocess.DEVNULL)
    if mounts_below():
        raise VMError(f"vm: {mounts_below()[0]} is still mounted: not removing {path}")
    shutil.rmtree(path, ignore_errors=True)
    if path.exists() and os.geteuid() != 0:
        # A rootless build's tree: files owned by our subordinate ids.
        subprocess.run(userns_argv(["rm", "-rf", "--one-file-system", str(path)]),
                       stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                       stderr=subprocess.DEVNULL)


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def _in_root(root: Path, guest_path: str) -> Path:
    return root / guest_path.lstrip("/")


def _symlink(target: str, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    if link.is_symlink() or link.exists():
        link.unlink()
    os.symlink(target, link)


def _kernel_package_from(build: _Build, chroot: Path | None,
                         apt_options: list[str] | None = None) -> str | None:
    """Name of the newest generic 6.1 kernel package apt knows (host's apt or chroot's;
    apt_options: the host's apt with these, see _foreign_apt)."""
    package_re = build.arch.kernel_package_re

    def apt(step: str, argv: list[str]) -> str:
        if chroot is None:
            if not shutil.which(argv[0]):
                return ""
            argv = argv[:1] + (apt_options or []) + argv[1:]
            proc = build.run(step, argv, check=False, capture=True)
        else:
            proc = build.chroot(step, chroot, argv, check=False, capture=True)
        return proc.stdout if proc.returncode == 0 else ""

    show = apt("kernel lookup", ["apt-cache", "show", "--no-all-versions",
                                 build.arch.kernel_metapackage])
    for line in show.splitlines():
        if line.startswith(("Depends:", "Pre-Depends:")):
            m = re.search(rf"\b({package_re})\b", line)
            if m:
                return m.group(1)
    names = apt("kernel lookup", ["apt-cache", "pkgnames", "linux-image-6.1."]).split()
    candidates = [n for n in names if re.fullmatch(package_re, n)]
    candidates.sort(key=lambda n: [int(x) for x in re.findall(r"\d+", n)], reverse=True)
    for name in candidates:
        policy = apt("kernel lookup", ["apt-cache", "policy", name])
        if re.search(r"Candidate: (?!\(none\))", policy):
            return name
    return None


def _foreign_apt(build: _Build, mirror: str, work: Path) -> list[str]:
    """Options that make the host's apt-get and apt-cache see the guest architecture's
    packages in bookworm (and -updates, -security) in a state of their own under work:
    no dpkg --add-architecture on the host, and no emulated apt in the chroot."""
    state = work / "apt"
    for sub in ("lists/partial", "cache/archives/partial", "sources.list.d"):
        (state / sub).mkdir(parents=True, exist_ok=True)
    (state / "status").touch()
    security = host_mirror(f"{SUITE}-security", "http://deb.debian.org/debian-security")
    _write(state / "sources.list", f"deb {mirror} {SUITE} main\n"
           f"deb {mirror} {SUITE}-updates main\ndeb {security} {SUITE}-security main\n")
    options = []
    for name, value in (("Dir::Etc::SourceList", state / "sources.list"),
                        ("Dir::Etc::SourceParts", state / "sources.list.d"),
                        ("Dir::State::Lists", state / "lists"),
                        ("Dir::State::Status", state / "status"),
                        ("Dir::Cache", state / "cache"),
                        ("APT::Architecture", build.arch.name),
                        ("APT::Architectures", build.arch.name),
                        ("APT::Sandbox::User", "root")):
        options += ["-o", f"{name}={value}"]
    build.run(f"apt-get update ({build.arch.name} lists)",
              ["apt-get", *options, "-q", "update"])
    return options


def _download_kernel(build: _Build, root: Path, mirror: str, dest: Path) -> Path:
    """The kernel .deb: from the host's apt if it knows bookworm's kernels, else the chroot's
    (another architecture's: the host's apt with lists of its own, _foreign_apt)."""
    dest.mkdir(parents=True, exist_ok=True)
    dest.chmod(0o755)
    via = os.environ.get("ZOO_VM_KERNEL_FROM", "host")
    options = _foreign_apt(build, mirror, dest.parent) if build.foreign and via == "host" \
        else None
    name = _kernel_package_from(build, None, options) if via == "host" else None
    if name:
        build.note(f"kernel package from the host's apt: {name}")
        build.run("apt-get download (kernel)", ["apt-get", *(options or []), "download", name],
                  cwd=dest)
    else:
        build.note("kernel package from the chroot's apt (the host's apt has no "
                   f"{build.arch.kernel_package_re})")
        resolv = root / "etc" / "resolv.conf"
        saved = resolv.read_bytes() if resolv.is_file() and not resolv.is_symlink() else None
        with contextlib.suppress(OSError):
            if resolv.is_symlink() or resolv.exists():
                resolv.unlink()
            shutil.copyfile("/etc/resolv.conf", resolv)
        security = host_mirror(f"{SUITE}-security", "http://deb.debian.org/debian-security")
        _write(root / "etc/apt/sources.list", f"deb {mirror} {SUITE} main\n"
               f"deb {mirror} {SUITE}-updates main\ndeb {security} {SUITE}-security main\n")
        try:
            build.chroot("apt-get update (chroot, for the kernel)", root,
                         ["apt-get", "-q", "update"])
            name = _kernel_package_from(build, root)
            if not name:
                raise build.fail("kernel lookup",
                                 f"no package matching {build.arch.kernel_package_re}")
            incoming = root / "tmp" / "zoo-kernel"
            incoming.mkdir(parents=True, exist_ok=True)
            incoming.chmod(0o777)
            build.chroot("apt-get download (kernel, chroot)", root,
                         ["sh", "-c", f"cd /tmp/zoo-kernel && apt-get download {name}"])
            for deb in incoming.glob("*.deb"):
                shutil.move(str(deb), dest / deb.name)
            shutil.rmtree(incoming, ignore_errors=True)
        finally:
            _write(root / "etc/apt/sources.list", f"deb {mirror} {SUITE} main\n")
            for lists in (root / "var/lib/apt/lists").glob("*"):
                if lists.is_file():
                    lists.unlink()
            with contextlib.suppress(OSError):
                resolv.unlink()
                if saved is not None:
                    resolv.write_bytes(saved)
    debs = sorted(dest.glob("linux-image-*.deb"))
    if not debs:
        raise build.fail("kernel download", "no .deb downloaded")
    return debs[-1]


def _prune_ignore(moddir: Path) -> Callable[[str, list[str]], list[str]]:
    prune = {moddir / "kernel" / p for p in MODULE_PRUNE}

    def ignore(directory: str, names: list[str]) -> list[str]:
        return [n for n in names if Path(directory, n) in prune]

    return ignore


def _install_kernel(build: _Build, deb: Path, root: Path, work: Path) -> tuple[str, Path]:
    """Unpack the kernel; its modules go into the rootfs. Returns (version, vmlinux path)."""
    unpacked = work / "kernel"
    if shutil.which("dpkg-deb"):
        build.run("dpkg-deb -x (kernel)", ["dpkg-deb", "-x", str(deb), str(unpacked)])
    else:
        shutil.copy(deb, root / "tmp" / "kernel.deb")
        build.chroot("dpkg-deb -x (kernel)", root,
                     ["dpkg-deb", "-x", "/tmp/kernel.deb", "/tmp/kernel"])
        shutil.move(str(root / "tmp" / "kernel"), unpacked)
        (root / "tmp" / "kernel.deb").unlink()
    vmlinuz = sorted((unpacked / "boot").glob("vmlinuz-*"))
    if not vmlinuz:
        raise build.fail("kernel unpack", f"no boot/vmlinuz-* in {deb.name}")
    version = vmlinuz[-1].name[len("vmlinuz-"):]
    # amd64: the ELF inside the bzImage; arm64: the Image. Both booted with -kernel, both
    # named vmlinux in the image.
    extract = extract_arm64_image if build.arch.name == "arm64" else extract_vmlinux
    try:
        elf = extract(vmlinuz[-1].read_bytes())
    except ValueError as e:
        raise build.fail("kernel decompression", str(e))
    vmlinux = work / "vmlinux"
    vmlinux.write_bytes(elf)
    build.note(f"kernel {version}: vmlinux {len(elf)} bytes")

    src = unpacked / "lib" / "modules" / version
    if not src.is_dir():
        src = unpacked / "usr" / "lib" / "modules" / version
    lib = root / "usr" / "lib" if (root / "lib").is_symlink() else root / "lib"
    dst = lib / "modules" / version
    if dst.exists():
        shutil.rmtree(dst)
    shutil.copytree(src, dst, symlinks=True, ignore=_prune_ignore(src))
    for name in ("config", "System.map"):
        with contextlib.suppress(FileNotFoundError):
            shutil.copy(unpacked / "boot" / f"{name}-{version}", root / "boot")
    build.chroot("depmod", root, ["depmod", "-a", version])
    try:
        _module_load_order(dst, build.arch.guest_modules)
    except ValueError as e:
        raise build.fail("kernel modules check", str(e))
    shutil.rmtree(unpacked)
    return version, vmlinux


def _make_initramfs(build: _Build, root: Path, version: str, out: Path) -> None:
    lib = root / "usr" / "lib" if (root / "lib").is_symlink() else root / "lib"
    moddir = lib / "modules" / version
    try:
        order = _module_load_order(moddir, build.arch.initramfs_modules)
    except ValueError as e:
        raise build.fail("initramfs modules", str(e))
    busybox = root / "bin" / "busybox"
    if not busybox.is_file():
        raise build.fail("initramfs", f"no static busybox at {busybox}")
    d, f, lnk, chr_ = 0o040755, 0o100755, 0o120777, 0o020600
    entries: list[tuple[str, int, bytes, int]] = [
        ("bin", d, b"", 0), ("dev", d, b"", 0), ("dev/console", chr_, b"", (5 << 8) | 1),
        ("proc", d, b"", 0), ("sys", d, b"", 0), ("newroot", d, b"", 0),
        ("modules", d, b"", 0),
        ("bin/busybox", f, busybox.read_bytes(), 0),
    ]
    for applet in ("sh", "mount", "umount", "insmod", "switch_root", "sleep", "mkdir",
                   "poweroff", "echo", "cat", "printf"):
        entries.append((f"bin/{applet}", lnk, b"busybox", 0))
    names = []
    for rel in order:
        name = os.path.basename(rel)
        if name.endswith(".ko.xz"):
            data, name = lzma.decompress((moddir / rel).read_bytes()), name[:-3]
        elif name.endswith(".ko.gz"):
            data, name = gzip.decompress((moddir / rel).read_bytes()), name[:-3]
        else:
            data = (moddir / rel).read_bytes()
        entries.append((f"modules/{name}", 0o100644, data, 0))
        names.append(name)
    entries.append(("modules/order", 0o100644, ("\n".join(names) + "\n").encode(), 0))
    entries.append(("init", f, (GUEST_DIR / "init").read_bytes(), 0))
    out.write_bytes(_cpio_newc(entries))
    build.note(f"initramfs: {', '.join(names)}; {out.stat().st_size} bytes")


def _pip_install(build: _Build, root: Path, pyver: str) -> None:
    target = root / "usr" / "local" / "lib" / f"python{pyver}" / "dist-packages"
    target.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    if build.run("pip check", pip + ["--version"], check=False).returncode != 0:
        if not shutil.which("pip3"):
            raise build.fail("pip install", "no pip on this host (python3 -m pip, pip3)")
        pip = ["pip3"]
    build.run("pip install (guest packages)",
              pip + ["install", "--no-deps", "--no-compile", "--only-binary=:all:",
                     "--python-version", pyver, "--implementation", "py",
                     "--disable-pip-version-check", "--no-warn-script-location",
                     "--upgrade", "--target", str(target)] + list(PIP_PINS),
              env={"PIP_ROOT_USER_ACTION": "ignore"})
    # Console scripts point at the host's Python: rewrite them for the guest's.
    scripts = target / "bin"
    if scripts.is_dir():
        bindir = root / "usr" / "local" / "bin"
        bindir.mkdir(parents=True, exist_ok=True)
        for script in scripts.iterdir():
            data = script.read_bytes()
            if data.startswith(b"#!"):
                data = b"#!/usr/bin/python3" + data[data.index(b"\n"):]
            (bindir / script.name).write_bytes(data)
            (bindir / script.name).chmod(0o755)
        shutil.rmtree(scripts)
    build.chroot("compile the guest packages", root,
                 ["python3", "-m", "compileall", "-q", f"/usr/local/lib/python{pyver}"])


def _configure_rootfs(build: _Build, root: Path) -> None:
    etc = root / "etc"
    for name, (dest, mode) in GUEST_FILES.items():
        target = _in_root(root, dest)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(GUEST_DIR / name, target)
        target.chmod(mode)
    system = etc / "systemd" / "system"
    for unit, wants in ENABLED_UNITS.items():
        _symlink(f"/etc/systemd/system/{unit}", system / wants / unit)
    for unit in MASKED_UNITS:
        _symlink("/dev/null", system / unit)
        for wants in system.glob(f"*.wants/{unit}"):
            wants.unlink()
    _symlink("/lib/systemd/system/multi-user.target", system / "default.target")
    for gen in MASKED_GENERATORS:
        _symlink("/dev/null", etc / "systemd" / "system-generators" / gen)
    for gen in MASKED_USER_GENERATORS:
        _symlink("/dev/null", etc / "systemd" / "user-generators" / gen)

    _write(etc / "hostname", HOSTNAME + "\n")
    _write(etc / "hosts", f"127.0.0.1\tlocalhost\n127.0.1.1\t{HOSTNAME}\n"
           "::1\tlocalhost ip6-localhost ip6-loopback\n")
    _write(etc / "fstab", "# The initramfs mounts / (virtio disk, a throw-away snapshot).\n")
    for share in ("job", "submission", "results"):
        (root / "mnt" / share).mkdir(parents=True, exist_ok=True)

    build.chroot("useradd student", root,
                 ["useradd", "--create-home", "--uid", str(STUDENT_UID), "--user-group",
                  "--shell", "/bin/bash", STUDENT_USER])
    build.chroot("useradd nosub", root,
                 ["useradd", "--create-home", "--uid", str(NOSUB_UID), "--user-group",
                  "--shell", "/bin/bash", NOSUB_USER])
    build.chroot("useradd student2", root,
                 ["useradd", "--create-home", "--uid", str(LANE_UID), "--user-group",
                  "--shell", "/bin/bash", LANE_USER])
    for name, start, lane_start in (("subuid", SUBUID_START, LANE_SUBUID_START),
                                    ("subgid", SUBGID_START, LANE_SUBGID_START)):
        _write(etc / name, f"{STUDENT_USER}:{start}:{SUBID_COUNT}\n"
               f"{LANE_USER}:{lane_start}:{SUBID_COUNT}\n")
    linger = root / "var" / "lib" / "systemd" / "linger"
    linger.mkdir(parents=True, exist_ok=True)
    for user in (STUDENT_USER, LANE_USER):
        (linger / user).touch()

    # Smaller image, nothing stale: apt's caches and lists.
    for pattern in ("var/cache/apt/*.bin", "var/cache/apt/archives/*.deb",
                    "var/lib/apt/lists/*_*"):
        for path in root.glob(pattern):
            path.unlink()


def _tree_bytes(root: Path) -> int:
    total = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def _mkfs(build: _Build, root: Path, image: Path) -> None:
    size_mb = max(IMAGE_MIN_MB, int(_tree_bytes(root) * 1.4 / 2**20) + 512)
    mkfs = _find_tool("mkfs.ext4") or next(
        (p for p in ("/sbin/mkfs.ext4", "/usr/sbin/mkfs.ext4") if os.path.exists(p)), None)
    if not mkfs:
        raise build.fail("mkfs.ext4", "mkfs.ext4 not found (install e2fsprogs)")
    with open(image, "wb") as f:
        f.truncate(size_mb * 2**20)
    # No journal: the disk is a throw-away snapshot, and TCG pays for every write.
    build.run("mkfs.ext4", [mkfs, "-q", "-F", "-L", "zooroot", "-m", "0", "-O", "^has_journal",
                            "-d", str(root), str(image), f"{size_mb}M"], as_root=True)


def _mmdebstrap(build: _Build, root: Path, work: Path, mirror: str,
                step: Callable[[str], None], options: list[str] = ()) -> list[tarfile.TarInfo]:
    """The rootfs without root: mmdebstrap's unshare mode writes a tarball owned by root
    inside; it is unpacked as root of a user namespace (_userns_main), where the tree
    keeps its owners and the rest of the build goes on as with debootstrap. Returns the
    device nodes of /dev, which a user namespace cannot make (_add_device_nodes)."""
    tarball = work / "rootfs.tar"
    argv = ["mmdebstrap", "--mode=unshare", "--variant=minbase", *options,
            "--include=" + ",".join(PACKAGES)]
    if MMDEBSTRAP_MERGED_USR_HOOK.is_dir():
        argv.append(f"--hook-dir={MMDEBSTRAP_MERGED_USR_HOOK}")
    argv += [SUITE, str(tarball), mirror]
    if build.run("mmdebstrap", argv, check=False).returncode != 0:
        step("mmdebstrap failed, retrying once")
        tarball.unlink(missing_ok=True)
        build.run("mmdebstrap", argv)
    root.mkdir()
    build.run("unpack the rootfs", ["tar", "-xf", str(tarball), "-C", str(root),
                                    "--numeric-owner", "--anchored", "--exclude=./dev"],
              as_root=True)
    # /dev as in the tarball: directories and symlinks here (owned by us, root in the
    # namespace), device nodes later.
    devices = []
    with tarfile.open(tarball) as tf:
        for member in tf:
            name = os.path.normpath(member.name)
            if name != "dev" and not name.startswith("dev/"):
                continue
            path = root / name
            if member.isdir():
                path.mkdir(exist_ok=True)
                path.chmod(member.mode & 0o7777)
            elif member.issym():
                os.symlink(member.linkname, path)
            elif member.ischr() or member.isblk() or member.isfifo():
                devices.append(member)
            else:
                raise build.fail("unpack the rootfs", f"unexpected {member.name} in /dev")
    tarball.unlink()
    # debootstrap's rootfs has a machine id (systemd's postinst writes it, dbus's copies
    # it), mmdebstrap's an empty file (every boot would be a first boot): give it one.
    machine_id = uuid.uuid4().hex + "\n"
    _write(root / "etc" / "machine-id", machine_id, 0o444)
    _write(root / "var" / "lib" / "dbus" / "machine-id", machine_id, 0o644)
    return devices


def _add_device_nodes(build: _Build, image: Path, devices: list[tarfile.TarInfo]) -> None:
    """Make /dev's device nodes in the ext4 image with debugfs (no mknod needed)."""
    commands = ["cd /dev"]
    kinds = {tarfile.CHRTYPE: ("c", stat.S_IFCHR), tarfile.BLKTYPE: ("b", stat.S_IFBLK),
             tarfile.FIFOTYPE: ("p", stat.S_IFIFO)}
    wanted = {}
    for member in devices:
        name = os.path.relpath(os.path.normpath(member.name), "dev")
        kind, type_bits = kinds[member.type]
        numbers = f" {member.devmajor} {member.devminor}" if kind != "p" else ""
        mode = type_bits | (member.mode & 0o7777)
        commands += [f"mknod {name} {kind}{numbers}", f"sif {name} mode 0{mode:o}",
                     f"sif {name} uid {member.uid}", f"sif {name} gid {member.gid}"]
        wanted[name] = f"{mode:o}"
    script = image.parent / "devices.debugfs"
    script.write_text("\n".join(commands) + "\n")
    debugfs = _find_tool("debugfs") or "debugfs"
    build.run("device nodes (debugfs)", [debugfs, "-w", "-f", str(script), str(image)])
    script.unlink()
    # debugfs exits 0 even when a command fails: check what it made.
    listing = build.run("device nodes (check)", [debugfs, "-R", "ls -p /dev", str(image)],
                        capture=True).stdout
    made = {}
    for line in listing.splitlines():  # /inode/mode/uid/gid/name/size/
        fields = line.split("/")
        if len(fields) >= 6:
            made[fields[5]] = fields[2].lstrip("0")
    missing = [n for n, mode in wanted.items() if made.get(n) != mode]
    if missing:
        raise build.fail("device nodes (debugfs)", "not made: " + ", ".join(sorted(missing)))


def chown_for_sudo_user(paths: Iterable[Path]) -> None:
    """Under sudo, give what we made in the user's home back to that user (who boots)."""
    uid, gid = os.environ.get("SUDO_UID"), os.environ.get("SUDO_GID")
    if os.geteuid() != 0 or not uid or not gid or uid == "0":
        return
    import pwd

    try:
        home = Path(pwd.getpwuid(int(uid)).pw_dir).resolve()
    except (KeyError, ValueError):
        return
    for path in paths:
        if home in Path(path).resolve().parents:
            with contextlib.suppress(OSError):
                os.chown(path, int(uid), int(gid))


def _image_arch(directory: Path) -> str | None:
    """The architecture of a cached image (its manifest's recipe), None if unreadable."""
    try:
        return recipe_arch(json.loads((directory / "manifest.json").read_text())["recipe"])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None


def _prune_old_images(cache_root: Path, keep: str) -> None:
    """Keep the newest KEEP_OLD_IMAGES older images of keep's architecture (another
    architecture's images are not its old ones)."""
    arch = _image_arch(cache_root / keep)
    old = [p for p in cache_root.iterdir()
           if p.is_dir() and re.fullmatch(r"[0-9a-f]{64}", p.name) and p.name != keep
           and _image_arch(p) in (arch, None)]
    old.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    for path in old[KEEP_OLD_IMAGES:]:
        shutil.rmtree(path, ignore_errors=True)


def foreign_problem(arch: Arch) -> str | None:
    """Why arch's programs cannot run here (None: they can, natively or through a
    qemu-user binfmt_misc handler with the F flag, which chroots and user namespaces
    need): a build runs the guest's maintainer scripts, useradd, depmod..."""
    if arch.machine == os.uname().machine:
        return None
    handlers = Path("/proc/sys/fs/binfmt_misc")
    for entry in sorted(handlers.glob("*")) if handlers.is_dir() else []:
        try:
            fields = dict((line.split(" ", 1) + [""])[:2] for line in
                          entry.read_text().splitlines())
            magic = bytes.fromhex(fields.get("magic", "").replace(" ", ""))
        except (OSError, ValueError):
            continue
        if ("enabled" in fields and "F" in fields.get("flags:", "")
                and magic[:4] == b"\x7fELF" and magic[18:20] == arch.elf.to_bytes(2, "little")):
            return None
    return (f"building the {arch.name} image on this {os.uname().machine} machine runs "
            f"{arch.machine} programs through qemu-user, and no binfmt_misc handler for "
            f"{arch.machine} is registered (as root: apt-get install qemu-user-static "
            "binfmt-support; without systemd also mount -t binfmt_misc binfmt_misc "
            f"/proc/sys/fs/binfmt_misc and update-binfmts --enable qemu-{arch.machine})")


def build_image(cache_root: Path | str | None = None,
                log: Callable[[str], object] | None = print, force: bool = False,
                arch: str | None = None) -> ImagePaths:
    """The VM image for the current recipe, built first if it is not in the cache.

    Builds into cache_root/.build-*, renames to cache_root/<key> when complete (a lock
    serialises concurrent builds). log gets one line per step (about 90 s in all from
    scratch; arm64 on x86_64 about 4 min). Raises VMError naming the failed step and the
    build log. arch: the guest's (Debian's name); None: the host's.
    """
    say = log or (lambda _msg: None)
    cache_root = Path(cache_root) if cache_root else default_cache_root()
    guest_arch = get_arch(arch)
    key = cache_key(guest_arch.name)
    if not force:
        image = cached_image(cache_root, guest_arch.name)
        if image:
            return image
    problem = foreign_problem(guest_arch)
    if problem:
        raise VMError(f"vm: no {guest_arch.name} image for this recipe in {cache_root}, and "
                      f"{problem}; or import a published one (python3 grader/vm.py --arch "
                      f"{guest_arch.name} import FILE-or-URL --sha256 HASH)")
    rootless = os.geteuid() != 0
    if rootless:
        problem = rootless_problem()
        if problem:
            raise VMError(f"vm: no image for this recipe in {cache_root}, and building one "
                          f"without root cannot work here: {problem}; build it as root "
                          "(sudo python3 grader/vm.py build) or import a published one "
                          "(python3 grader/vm.py import FILE-or-URL --sha256 HASH)")
    else:
        for tool in ("debootstrap", "chroot"):
            if not shutil.which(tool):
                raise VMError(f"vm: {tool} not found: apt-get install debootstrap")
    cache_root.mkdir(parents=True, exist_ok=True)
    chown_for_sudo_user([cache_root, *cache_root.parents][:3])
    with open(cache_root / ".lock", "w") as lockf:
        fcntl.flock(lockf, fcntl.LOCK_EX)
        if not force:
            image = cached_image(cache_root, guest_arch.name)
            if image:
                return image
        # We hold the lock: any .build-* left here is from an interrupted build.
        for stale in cache_root.glob(".build-*"):
            _safe_rmtree(stale)
        # The logs of failed builds: the last few stay (a build retried by each make
        # check, offline, left one more every time).
        for old_log in sorted(cache_root.glob("build-*.log"), key=os.path.getmtime)[:-KEEP_LOGS]:
            old_log.unlink(missing_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".build-", dir=cache_root))
        log_path = cache_root / f"build-{key[:12]}-{time.strftime('%Y%m%d-%H%M%S')}.log"
        build = _Build(log_path, say, rootless=rootless, arch=guest_arch)
        started = time.monotonic()
        # What the build writes itself ends up root's in the image: no group-writable files
        # from a user's umask 002.
        umask = os.umask(0o022) if rootless else None
        try:
            image = _build_into(build, work, key, started)
            if cache_key(guest_arch.name) != key:  # its files edited while it was built
                raise VMError(f"vm: the guest's files (grader/guest/, the recipe) changed "
                              f"while the image was built: build it again (see {log_path})")
            final = cache_root / key
            if final.exists():
                _safe_rmtree(final)
            work.chmod(0o755)
            os.rename(work, final)
            build.note(f"done: {final}")
            build.logf.close()
            shutil.copyfile(log_path, final / "build.log")
            log_path.unlink()
            chown_for_sudo_user([final, *(final / n for n in IMAGE_FILES + ("build.log",))])
            _prune_old_images(cache_root, key)
            return _image_paths(final, key)
        except VMError:
            raise
        except Exception as e:
            build.note(f"FAILED: {type(e).__name__}: {e}")
            raise VMError(f"vm: building the image failed ({type(e).__name__}: {e}): "
                          f"see {log_path}") from e
        except BaseException:
            build.note("interrupted")
            raise
        finally:
            _safe_rmtree(work)  # first: on a full disk the log's close fails too
            if not build.logf.closed:
                with contextlib.suppress(OSError):
                    build.logf.close()
            if umask is not None:
                os.umask(umask)


def _build_into(build: _Build, work: Path, key: str, started: float) -> ImagePaths:
    say = build.say
    root = work / "root"
    mirror = host_mirror()
    debs = build.log_path.parent / "debs"
    if not build.rootless:
        debs.mkdir(exist_ok=True)

    def step(text: str) -> None:
        say(f"[{time.monotonic() - started:5.1f}s] {text}")
        build.note(text)

    devices: list[tarfile.TarInfo] = []
    # Another architecture's: its maintainer scripts run through qemu-user (foreign_problem).
    arch_option = [f"--arch={build.arch.name}"] if build.foreign else []
    if build.rootless:
        step(f"mmdebstrap {SUITE} from {mirror} in a user namespace (about half a minute)")
        devices = _mmdebstrap(build, root, work, mirror, step, arch_option)
    else:
        step(f"debootstrap {SUITE} from {mirror} (about a minute)")
        argv = ["debootstrap", "--variant=minbase", *arch_option, f"--cache-dir={debs}",
                "--include=" + ",".join(PACKAGES), SUITE, str(root), mirror]
        # One retry: a mirror hiccup (or a stray signal) should not cost the TA a rerun.
        if build.run("debootstrap", argv, check=False).returncode != 0:
            step("debootstrap failed, retrying once")
            _safe_rmtree(root)
            build.run("debootstrap", argv)
    pyver = build.chroot("python3 in the rootfs", root,
                         ["python3", "-c", "import sys; print('%d.%d' % sys.version_info[:2])"],
                         capture=True).stdout.strip()

    step("kernel: download, decompress, modules")
    deb = _download_kernel(build, root, mirror, work / "deb")
    version, vmlinux = _install_kernel(build, deb, root, work)
    shutil.rmtree(work / "deb")

    step(f"initramfs (busybox, modules for the root disk) for {version}")
    _make_initramfs(build, root, version, work / "initramfs.cpio")

    step("guest Python packages: " + " ".join(PIP_PINS))
    _pip_install(build, root, pyver)

    step("configure: student, subuid, linger, units")
    _configure_rootfs(build, root)

    step("mkfs.ext4 -d")
    _mkfs(build, root, work / "rootfs.ext4")
    if devices:
        _add_device_nodes(build, work / "rootfs.ext4", devices)
    packages = build.chroot("package list", root, ["dpkg-query", "-W"], capture=True).stdout
    _safe_rmtree(root)

    manifest = {
        "key": key, "recipe": recipe(build.arch.name), "arch": build.arch.name,
        "kernel_version": version, "kernel_deb": deb.name,
        "mirror": mirror, "python": pyver, "built": time.strftime("%Y-%m-%d %H:%M:%S"),
        "builder": "mmdebstrap --mode=unshare (rootless)" if build.rootless else "debootstrap",
        "build_seconds": round(time.monotonic() - started, 1),
        "packages": dict(line.split("\t", 1) for line in packages.splitlines() if "\t" in line),
    }
    (work / "manifest.json").write_text(json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    for name in IMAGE_FILES:
        (work / name).chmod(0o644)
    step("image complete")
    return _image_paths(work, key)


# ---------------------------------------------------------------------------------------
# Export and import: one file that course staff publish, with its sha256
# ---------------------------------------------------------------------------------------
# A gzip'd tar of <key>/manifest.json, vmlinux, initramfs.cpio, rootfs.ext4 (and
# build.log). Level 6: the 1.5 GB sparse rootfs (~360 MB used) becomes ~115 MB in ~15 s.
EXPORT_LEVEL = 6
EXPORT_OPTIONAL = ("build.log",)
_CHUNK = 1 << 20
_SPARSE_BLOCK = 64 * 1024


def normal_sha256(text: str) -> str | None:
    """A sha256 as export printed it, or as a person copied it (blanks around it, upper
    case, a sha256: prefix): its 64 hex digits, or None."""
    digest = text.strip().lower().removeprefix("sha256:")
    return digest if re.fullmatch(r"[0-9a-f]{64}", digest) else None


def file_sha256(path: Path) -> str:
    """Read in pieces: an image is hundreds of MB."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def export_image(dest: Path | str, cache_root: Path | str | None = None,
                 arch: str | None = None) -> tuple[Path, str]:
    """Write the cached image for the current recipe (for arch; None: the host's) into
    one file; (path, its sha256)."""
    root = Path(cache_root) if cache_root else default_cache_root()
    image = cached_image(root, arch)
    if image is None:
        name = get_arch(arch).name
        raise VMError(f"vm.py: export: no image for this recipe ({name} "
                      f"{cache_key(name)[:12]}) in {root}: build or import one first")
    dest = Path(dest).expanduser().absolute()
    if dest.is_dir():
        dest = dest / f"zoo-vm-{image.key[:12]}.tar.gz"
    if not dest.parent.is_dir():
        raise VMError(f"vm.py: export: no directory {dest.parent}")
    part = dest.with_name(f".{dest.name}.part-{os.getpid()}")
    names = ["manifest.json", "vmlinux", "initramfs.cpio", "rootfs.ext4"]
    names += [n for n in EXPORT_OPTIONAL if (image.dir / n).is_file()]
    try:
        with tarfile.open(part, "w:gz", compresslevel=EXPORT_LEVEL,
                          format=tarfile.PAX_FORMAT) as tf:
            for name in names:
                info = tf.gettarinfo(str(image.dir / name), arcname=f"{image.key}/{name}")
                info.uid = info.gid = 0
                info.uname = info.gname = ""
                info.mode = 0o644
                with open(image.dir / name, "rb") as f:
                    tf.addfile(info, f)
        digest = file_sha256(part)
        os.replace(part, dest)
    except OSError as e:
        raise VMError(f"vm.py: export: cannot write {dest}: {e.strerror or e}")
    finally:
        part.unlink(missing_ok=True)
    return dest, digest


def _progress(text: str) -> None:
    """One line on a terminal's stderr, rewritten in place; "" clears it. Nothing otherwise:
    a script sees only the result (or the one line of an error)."""
    if sys.stderr.isatty():
        sys.stderr.write("\r\033[K" + (f"vm.py: {text}" if text else ""))
        sys.stderr.flush()


def _fetch(source: str, staging: Path, progress: Callable[[str], None] = _progress) -> Path:
    """The file behind source (a path, file:// or http(s)://); a download goes into staging."""
    parsed = urllib.parse.urlparse(source)
    if parsed.scheme in ("", "file") or Path(source).exists():
        path = Path(urllib.request.url2pathname(parsed.path) if parsed.scheme == "file"
                    and not Path(source).exists() else source).expanduser()
        if not path.is_file():
            raise VMError(f"vm.py: import: no such file: {path}")
        return path
    if parsed.scheme not in ("http", "https"):
        raise VMError(f"vm.py: import: {source}: only files, file://, http:// and https:// "
                      "URLs are supported")
    out = staging / "download"
    done = 0
    try:
        with urllib.request.urlopen(source, timeout=60) as response, open(out, "wb") as f:
            while chunk := response.read(_CHUNK):
                f.write(chunk)
                done += len(chunk)
                progress(f"downloading {source}: {done / 2**20:.0f} MiB")
    except (OSError, ValueError) as e:  # URLError and HTTPError are OSErrors
        reason = getattr(e, "reason", None) or getattr(e, "strerror", None) or e
        raise VMError(f"vm.py: import: cannot download {source}: {reason}")
    finally:
        progress("")
    return out


def _write_sparse(src, dest: Path) -> None:
    """Copy a file object to dest, leaving runs of zeros as holes (the rootfs is sparse)."""
    zeros = bytes(_SPARSE_BLOCK)
    with open(dest, "wb") as out:
        size = 0
        while chunk := src.read(_CHUNK):
            for i in range(0, len(chunk), _SPARSE_BLOCK):
                block = chunk[i:i + _SPARSE_BLOCK]
                if block == zeros[:len(block)]:
                    out.seek(len(block), os.SEEK_CUR)
                else:
                    out.write(block)
            size += len(chunk)
        out.truncate(size)


def _unpack_export(archive: Path, staging: Path, source: str) -> tuple[str, dict]:
    """Unpack an exported image into staging; (its key, its manifest). Checks names only:
    the content is what the sha256 the caller verified says it is."""
    allowed = set(IMAGE_FILES) | set(EXPORT_OPTIONAL)
    key = None
    seen = set()
    try:
        with tarfile.open(archive, "r:gz") as tf:
            for member in tf:
                parts = member.name.split("/")
                if (len(parts) != 2 or not re.fullmatch(r"[0-9a-f]{64}", parts[0])
                        or parts[1] not in allowed or parts[1] in seen
                        or (key is not None and parts[0] != key) or not member.isfile()):
                    raise VMError(f"vm.py: import: {source} is not an exported grader image "
                                  f"(unexpected {member.name!r})")
                key = parts[0]
                seen.add(parts[1])
                src = tf.extractfile(member)
                _write_sparse(src, staging / parts[1])
    except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as e:
        reason = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise VMError(f"vm.py: import: {source} is not an exported grader image ({reason})")
    missing = sorted(set(IMAGE_FILES) - seen)
    if key is None or missing:
        raise VMError(f"vm.py: import: {source} is not an exported grader image "
                      f"(missing {', '.join(missing) or 'everything'})")
    try:
        manifest = json.loads((staging / "manifest.json").read_text())
        recipe_key = hashlib.sha256(json.dumps(manifest["recipe"], sort_keys=True)
                                    .encode()).hexdigest()
    except (ValueError, KeyError, TypeError) as e:
        raise VMError(f"vm.py: import: {source}: unreadable manifest.json ({e})")
    if manifest.get("key") != key or recipe_key != key:
        raise VMError(f"vm.py: import: {source}: its manifest does not match its key {key[:12]}")
    return key, manifest


def import_image(source: str, sha256: str,
                 cache_root: Path | str | None = None) -> ImagePaths:
    """Install an exported image (path, file:// or http(s):// URL) into the cache, after
    checking its sha256 and that it is the image of the current recipe. Nothing is
    installed when anything is wrong (VMError, one line)."""
    expected = normal_sha256(sha256)
    if expected is None:
        raise VMError(f"vm.py: import: --sha256 {sha256!r} is not a sha256 (64 hex digits)")
    root = Path(cache_root) if cache_root else default_cache_root()
    try:
        root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=".import-", dir=root))
    except OSError as e:
        raise VMError(f"vm.py: import: cannot use the cache {root}: {e.strerror or e}")
    try:
        archive = _fetch(source, staging)
        actual = file_sha256(archive)
        if actual != expected:
            raise VMError(f"vm.py: import: {source}: sha256 mismatch (expected {expected}, "
                          f"got {actual}): nothing installed")
        unpacked = staging / "image"
        unpacked.mkdir()
        key, manifest = _unpack_export(archive, unpacked, source)
        if archive.parent == staging:
            archive.unlink()
        # The image's architecture is in its recipe: any architecture's can be imported.
        wanted = cache_key(recipe_arch(manifest["recipe"]))
        if key != wanted:
            raise VMError(f"vm.py: import: {source} is the image of another recipe "
                          f"({key[:12]}; this checkout's grader/vm.py and grader/guest/ make "
                          f"{wanted[:12]}): nothing installed")
        manifest["imported"] = {"from": source, "sha256": actual,
                                "at": time.strftime("%Y-%m-%d %H:%M:%S")}
        (unpacked / "manifest.json").write_text(json.dumps(manifest, indent=1,
                                                           sort_keys=True) + "\n")
        for path in unpacked.iterdir():
            path.chmod(0o644)
        unpacked.chmod(0o755)
        with open(root / ".lock", "w") as lockf:
            fcntl.flock(lockf, fcntl.LOCK_EX)
            final = root / key
            if final.exists():
                old = root / f".old-{key[:12]}-{os.getpid()}"
                os.rename(final, old)
                shutil.rmtree(old, ignore_errors=True)
            os.rename(unpacked, final)
        chown_for_sudo_user([root, *root.parents][:3])
        chown_for_sudo_user([final, *(final / n for n in os.listdir(final))])
        _prune_old_images(root, key)
        return _image_paths(final, key)
    except OSError as e:
        raise VMError(f"vm.py: import: {e.filename or source}: {e.strerror or e}")
    finally:
        shutil.rmtree(staging, ignore_errors=True)


