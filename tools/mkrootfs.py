#!/usr/bin/env python3
"""Build and unpack the root filesystem a zookeeper container runs in (zoo-fs.tar).

What is a container root filesystem?
    A process sees files through its root directory. A container gets a root of its own: an
    ordinary directory tree holding the programs it may run (here busybox, or a small Debian),
    the few configuration files those programs read (etc/passwd, etc/hosts, etc/resolv.conf,
    ...) and empty mount points (proc, sys, dev, tmp) that the container manager fills at
    start. Stage 4 of the lab bind-mounts such a directory and pivot_root(2)s into it, so that
    the host's files disappear from the container's view. There is no kernel in it, and no
    device nodes: the host's kernel runs the container, and an unprivileged user may not create
    device nodes (mknod(2) fails), so the manager bind-mounts the host's ones instead.

Why a tarball?
    A tar archive records names, modes and owners. Every entry here is owned by uid 0, and
    the course unpacks it as the student (`umask 0 && tar xf`): the files then belong to the
    student, which is root inside the container's user namespace. Unpacked by the real root,
    they would show as `nobody` inside the container instead.

Usage:
    python3 tools/mkrootfs.py busybox OUT.tar     Debian's busybox-static with its applets
    python3 tools/mkrootfs.py debian OUT.tar      Debian minbase (debootstrap, needs root,
                                                  or mmdebstrap --mode=unshare without)
    python3 tools/mkrootfs.py unpack TAR DIR [--force | --keep]
                                                  unpack as the calling user, like the course;
                                                  a DIR that is not empty is refused, replaced
                                                  (--force), or left as it is (--keep: what
                                                  `make rootfs` does, so your changes stay)

Errors are one line, `mkrootfs: <what failed>: <reason>`, and exit status 1.
"""

import argparse
import fnmatch
import glob
import io
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile

# Every entry of the busybox image gets this modification time, so that two builds are
# byte-identical. SOURCE_DATE_EPOCH (reproducible-builds.org) overrides it.
DEFAULT_MTIME = 1704067200  # 2024-01-01 00:00:00 UTC

SLIRP4NETNS_DNS = "10.0.2.3"
HOSTNAME = "zoo"
APPLET_DIRS = ("bin", "sbin", "usr/bin", "usr/sbin")

PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = "root:x:0:\nnogroup:x:65534:\n"
HOSTS = (
    "127.0.0.1\tlocalhost\n"
    f"127.0.1.1\t{HOSTNAME}\n"
    "::1\t\tlocalhost ip6-localhost ip6-loopback\n"
)

# Directories of the busybox image that are not implied by a file: name -> mode.
BUSYBOX_DIRS = {
    "bin": 0o755, "sbin": 0o755, "usr": 0o755, "usr/bin": 0o755, "usr/sbin": 0o755,
    "etc": 0o755, "dev": 0o755, "proc": 0o555, "sys": 0o555, "run": 0o755,
    "tmp": 0o1777, "var": 0o755, "var/tmp": 0o1777, "root": 0o700, "home": 0o755,
}


class Failure(Exception):
    """An expected failure: printed as `mkrootfs: WHAT: REASON`, exit status 1."""

    def __init__(self, what, reason):
        super().__init__(f"{what}: {reason}")


# ---------------------------------------------------------------- helpers


def run(cmd, what=None, **kwargs):
    """Run a command; a missing program or a non-zero exit becomes a Failure."""
    what = what or " ".join(cmd)
    try:
        result = subprocess.run(cmd, **kwargs)
    except FileNotFoundError:
        raise Failure(what, f"{cmd[0]} not found") from None
    if result.returncode != 0:
        reason = f"exit status {result.returncode}"
        stderr = result.stderr if isinstance(result.stderr, str) else ""
        lines = [line for line in stderr.strip().splitlines()
                 if "Exiting with failure status" not in line]  # tar's last word: why not
        if lines:
            reason += f": {lines[-1]}"
        raise Failure(what, reason)
    return result


def build_mtime():
    return int(os.environ.get("SOURCE_DATE_EPOCH", DEFAULT_MTIME))


def is_root():
    return os.geteuid() == 0


# ---------------------------------------------------------------- writing a tarball


def tar_info(name, kind, mode, mtime, uid=0, gid=0):
    """A TarInfo owned by uid:gid (0:0 unless told), with a fixed mtime."""
    info = tarfile.TarInfo(name)
    info.type, info.mode, info.mtime = kind, mode, mtime
    info.uid, info.gid = uid, gid
    info.uname = info.gname = "root" if (uid, gid) == (0, 0) else ""
    return info


def file_entry(name, data, mode=0o644, mtime=DEFAULT_MTIME):
    info = tar_info(name, tarfile.REGTYPE, mode, mtime)
    info.size = len(data)
    return info, data


def text_entry(name, text, mode=0o644, mtime=DEFAULT_MTIME):
    return file_entry(name, text.encode(), mode, mtime)


def dir_entry(name, mode=0o755, mtime=DEFAULT_MTIME):
    return tar_info(name, tarfile.DIRTYPE, mode, mtime), None


def symlink_entry(name, target, mtime=DEFAULT_MTIME):
    info = tar_info(name, tarfile.SYMTYPE, 0o777, mtime)
    info.linkname = target
    return info, None


def write_tar(out, entries):
    """Write (TarInfo, data) pairs, data being bytes, a file object or None, to OUT.

    The archive is written next to OUT and renamed at the end: a failed build never leaves a
    half-written OUT behind. Returns the number of entries written.
    """
    fd, part = tempfile.mkstemp(prefix=".mkrootfs-", suffix=".part", dir=output_dir(out))
    count = 0
    try:
        with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w") as tar:
            for info, data in entries:
                if isinstance(data, bytes):
                    data = io.BytesIO(data)
                tar.addfile(info, data)
                count += 1
        os.chmod(part, 0o644)
        os.replace(part, out)
    except BaseException:
        os.unlink(part)
        raise
    return count


def output_dir(out):
    """The directory OUT goes to; a Failure if it does not exist."""
    out_dir = os.path.dirname(os.path.abspath(out))
    if not os.path.isdir(out_dir):
        raise Failure(f"writing {out}", f"no directory {out_dir}")
    return out_dir


def report(out, count):
    size = os.path.getsize(out) / 1e6
    print(f"mkrootfs: wrote {out} ({count} entries, {size:.1f} MB)")


# ---------------------------------------------------------------- busybox image


def installed_busybox():
    """Path of busybox from the installed busybox-static package, or None."""
    try:
        listing = subprocess.run(["dpkg", "-L", "busybox-static"],
                                 capture_output=True, text=True)
    except FileNotFoundError:
        return None
    for path in listing.stdout.splitlines():
        if path.endswith("bin/busybox") and os.path.isfile(path):
            return path
    return None


def downloaded_busybox(workdir):
    """Fetch busybox-static with `apt-get download` and unpack it with dpkg-deb (no root)."""
    what = "busybox-static"
    hint = "install it with: sudo apt-get install busybox-static"
    for tool in ("apt-get", "dpkg-deb"):
        if shutil.which(tool) is None:
            raise Failure(what, f"package not installed and {tool} not found; {hint}")
    try:
        run(["apt-get", "download", what], cwd=workdir, what="apt-get download " + what,
            capture_output=True, text=True)
    except Failure as error:
        raise Failure(what, f"package not installed and {error}; {hint}") from None
    debs = glob.glob(os.path.join(workdir, "busybox-static_*.deb"))
    if not debs:
        raise Failure(what, f"apt-get download left no .deb in {workdir}; {hint}")
    extracted = os.path.join(workdir, "deb")
    run(["dpkg-deb", "-x", debs[0], extracted], capture_output=True, text=True)
    for path in ("bin/busybox", "usr/bin/busybox"):
        if os.path.isfile(os.path.join(extracted, path)):
            return os.path.join(extracted, path)
    raise Failure(what, f"no bin/busybox in {os.path.basename(debs[0])}")


def busybox_version(busybox):
    """The first line of `busybox --help`, e.g. `BusyBox v1.35.0 (Debian 1:1.35.0-4) ...`."""
    result = run([busybox, "--help"], capture_output=True, text=True)
    banner = result.stdout.splitlines()[0] if result.stdout else "BusyBox"
    return banner.removesuffix(" multi-call binary.")


def busybox_applets(busybox):
    """Applet paths as `busybox --list-full` prints them, kept under APPLET_DIRS."""
    result = run([busybox, "--list-full"], capture_output=True, text=True)
    applets = []
    for path in result.stdout.split():
        if os.path.dirname(path) in APPLET_DIRS and path != "bin/busybox":
            applets.append(path)
    if not applets:
        raise Failure(f"{busybox} --list-full", "listed no applets")
    return applets


def applet_link(path):
    """Relative target from an applet to bin/busybox: `busybox`, `../../bin/busybox`, ..."""
    return os.path.relpath("bin/busybox", os.path.dirname(path))


def config_files(release):
    """The small etc/ every image gets; release names the build in etc/zoo-release."""
    return {
        "etc/passwd": PASSWD,
        "etc/group": GROUP,
        "etc/hostname": HOSTNAME + "\n",
        "etc/hosts": HOSTS,
        "etc/resolv.conf": f"nameserver {SLIRP4NETNS_DNS}\n",
        "etc/zoo-release": release + "\n",
    }


def busybox_entries(busybox_binary, applets, release, mtime):
    """Every entry of the busybox image, sorted by name."""
    entries = [dir_entry(name, mode, mtime) for name, mode in BUSYBOX_DIRS.items()]
    with open(busybox_binary, "rb") as f:
        entries.append(file_entry("bin/busybox", f.read(), 0o755, mtime))
    entries += [symlink_entry(path, applet_link(path), mtime) for path in applets]
    entries += [text_entry(name, text, 0o644, mtime)
                for name, text in config_files(release).items()]
    return sorted(entries, key=lambda entry: entry[0].name)


def build_busybox(out):
    with tempfile.TemporaryDirectory(prefix="mkrootfs-") as workdir:
        busybox = installed_busybox() or downloaded_busybox(workdir)
        version = busybox_version(busybox)
        release = f"zoo-fs busybox: {version}, built by tools/mkrootfs.py"
        entries = busybox_entries(busybox, busybox_applets(busybox), release, build_mtime())
        report(out, write_tar(out, entries))


# ---------------------------------------------------------------- debian image


def sources_list_mirrors(text):
    """(uri, suites) pairs from one-line `deb [options] URI SUITE COMPONENTS` sources."""
    mirrors = []
    for line in text.splitlines():
        words = re.sub(r"\[[^]]*\]", " ", line.split("#")[0]).split()  # drop [options]
        if words[:1] == ["deb"] and len(words) >= 3:
            mirrors.append((words[1], [words[2]]))
    return mirrors


def deb822_mirrors(text):
    """(uri, suites) pairs from deb822 `.sources` stanzas (Types/URIs/Suites/Enabled)."""
    mirrors = []
    for stanza in re.split(r"\n\s*\n", text):
        fields = {}
        for line in stanza.splitlines():
            if ":" in line and not line.startswith(("#", " ", "\t")):
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.split()
        if "deb" not in fields.get("types", []) or fields.get("enabled", [""])[0].lower() == "no":
            continue
        mirrors += [(uri, fields.get("suites", [])) for uri in fields.get("uris", [])]
    return mirrors


def host_mirrors(etc_apt="/etc/apt"):
    """Every (uri, suites) of the host's apt sources, in apt's reading order (also
    grader/image.py's, for the grader VM's mirror)."""
    mirrors = []
    lists = [os.path.join(etc_apt, "sources.list")]
    lists += sorted(glob.glob(os.path.join(etc_apt, "sources.list.d", "*.list")))
    for path in lists:
        if os.path.isfile(path):
            with open(path) as f:
                mirrors += sources_list_mirrors(f.read())
    for path in sorted(glob.glob(os.path.join(etc_apt, "sources.list.d", "*.sources"))):
        with open(path) as f:
            mirrors += deb822_mirrors(f.read())
    return mirrors


def host_mirror(suite, etc_apt="/etc/apt"):
    """The host's mirror that carries SUITE, or None."""
    for uri, suites in host_mirrors(etc_apt):
        if suite in suites:
            return uri
    return None


def debian_overrides(suite, mirror):
    return {
        "etc/resolv.conf": f"nameserver {SLIRP4NETNS_DNS}\n".encode(),
        "etc/hostname": f"{HOSTNAME}\n".encode(),
        "etc/zoo-release": f"zoo-fs debian: {suite} minbase from {mirror}, "
                           "built by tools/mkrootfs.py\n".encode(),
    }


# What `apt-get clean` and `rm -rf /var/lib/apt/lists/*` remove, as Debian's container images
# do: the downloaded packages and the package lists (~80 MB; `apt-get update` fetches them).
APT_CACHES = ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*_*")


def is_apt_cache(info):
    return info.isreg() and any(fnmatch.fnmatch(info.name, p) for p in APT_CACHES)


def clean_name(name):
    """`./etc/passwd` -> `etc/passwd`; the archive root `.` -> ``."""
    name = name.removeprefix("./").strip("/")
    return "" if name == "." else name


def keep_owner_numbers(info):
    """Numeric owners only: the names would be looked up on the unpacking host."""
    info.uname = info.gname = ""
    info.mtime = int(info.mtime)
    return info


def directory_entries(root):
    """(TarInfo, file) for everything under ROOT, sorted, device nodes left out."""
    paths = []
    for dirpath, dirnames, filenames in os.walk(root):
        paths += [os.path.join(dirpath, name) for name in dirnames + filenames]
    scratch = tarfile.open(fileobj=io.BytesIO(), mode="w")  # gettarinfo needs an archive
    for path in sorted(paths):
        info = scratch.gettarinfo(path, os.path.relpath(path, root))
        if info is None or info.ischr() or info.isblk():  # sockets, device nodes
            continue
        data = open(path, "rb") if info.isreg() else None
        yield keep_owner_numbers(info), data


def archive_entries(path):
    """(TarInfo, file) for every member of the tar at PATH, device nodes left out."""
    with tarfile.open(path) as tar:
        for info in tar:
            info.name = clean_name(info.name)
            if info.islnk():
                info.linkname = clean_name(info.linkname)
            if not info.name or info.ischr() or info.isblk():
                continue
            yield keep_owner_numbers(info), tar.extractfile(info) if info.isreg() else None


def debian_entries(entries, overrides):
    """Drop apt's caches, replace the files named in OVERRIDES (name -> bytes), add the
    missing ones."""
    pending = dict(overrides)
    for info, data in entries:
        if is_apt_cache(info):
            pass
        elif info.name in pending and not info.isdir():
            yield override_entry(info.name, pending.pop(info.name), info.mtime)
        else:
            yield info, data
        if hasattr(data, "close"):
            data.close()
    for name, data in sorted(pending.items()):
        yield override_entry(name, data, build_mtime())


def override_entry(name, data, mtime):
    info, data = file_entry(name, data, 0o644, int(mtime))
    return keep_owner_numbers(info), data


def debootstrap(suite, mirror, workdir):
    """Run debootstrap (as root) into WORKDIR/root and return the entries of its tree."""
    target = os.path.join(workdir, "root")
    cmd = ["debootstrap", "--variant=minbase", suite, target, mirror]
    if shutil.which("debootstrap") is None:
        raise Failure("debootstrap", "not found; install it with: sudo apt-get install debootstrap")
    result = subprocess.run(cmd, stdout=sys.stderr)
    if result.returncode != 0:
        show_log_tail(os.path.join(target, "debootstrap", "debootstrap.log"))
        raise Failure(" ".join(cmd), f"exit status {result.returncode} (messages above)")
    return directory_entries(target)


def show_log_tail(log, lines=10):
    """Copy the end of debootstrap's log to stderr: the log goes with the work directory."""
    if os.path.isfile(log):
        with open(log, errors="replace") as f:
            tail = f.readlines()[-lines:]
        sys.stderr.write(f"--- last lines of {log}:\n" + "".join(tail))


def mmdebstrap(suite, mirror, workdir):
    """Run mmdebstrap --mode=unshare (no root needed) and return the entries of its tar."""
    raw = os.path.join(workdir, "raw.tar")
    cmd = ["mmdebstrap", "--mode=unshare", "--variant=minbase", suite, raw, mirror]
    result = subprocess.run(cmd, stdout=sys.stderr)
    if result.returncode != 0:
        raise Failure(" ".join(cmd), f"exit status {result.returncode} (messages above)")
    return archive_entries(raw)


def build_debian(out, suite, mirror):
    mirror = mirror or host_mirror(suite)
    if mirror is None:
        raise Failure("apt sources", f"no mirror for suite {suite} in /etc/apt/sources.list"
                      " or /etc/apt/sources.list.d/; give one with --mirror URL")
    if not is_root() and shutil.which("mmdebstrap") is None:
        raise Failure("debian image", "debootstrap needs root; run as root, or install"
                      " mmdebstrap (sudo apt-get install mmdebstrap) to build without root")
    workdir = tempfile.mkdtemp(prefix=".mkrootfs-", dir=output_dir(out))
    try:
        strap = debootstrap if is_root() else mmdebstrap
        entries = debian_entries(strap(suite, mirror, workdir), debian_overrides(suite, mirror))
        report(out, write_tar(out, entries))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


# ---------------------------------------------------------------- unpacking


def is_empty_dir(path):
    return os.path.isdir(path) and not os.path.islink(path) and not os.listdir(path)


def remove_tree(path):
    """rm -rf PATH; files left by a container may belong to subuids: retry in a userns."""
    try:
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        else:
            os.unlink(path)
        return
    except PermissionError as error:
        denied = error.strerror
    hint = ("it holds files owned by your subordinate uids (left by a container?);"
            f" remove it with: unshare --map-auto --map-root-user rm -rf {path}"
            f" (or: podman unshare rm -rf {path})")
    if not is_root() and shutil.which("unshare"):
        cmd = ["unshare", "--map-auto", "--map-root-user", "rm", "-rf", "--", path]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode == 0 and not os.path.lexists(path):
            return
        lines = result.stderr.strip().splitlines()
        hint += f" (tried it: {lines[-1] if lines else f'exit status {result.returncode}'})"
    raise Failure(f"removing {path}", f"{denied}; {hint}")


def device_nodes(tar_path):
    """Names of the character and block devices in the archive (mknod is refused rootless)."""
    try:
        with tarfile.open(tar_path) as tar:
            return [m.name for m in tar if m.ischr() or m.isblk()]
    except tarfile.TarError:
        raise Failure(f"reading {tar_path}", "not a tar archive, or a damaged one") from None


def unpack(tar_path, dest, force=False, keep=False):
    """`mkdir DEST && cd DEST && (umask 0 && tar xpf TAR)`, without device nodes.

    A DEST that is not empty is the student's rootfs, changes and all: refused, or
    removed first with force, or left alone with keep (and nothing unpacked).

    `p` keeps the archive's modes exactly: without it GNU tar, run by a user other than
    root, also drops the sticky and set-id bits, and tmp/ would be 0777 instead of 1777.
    """
    if os.path.lexists(dest) and not is_empty_dir(dest) and keep:
        print(f"mkrootfs: {dest} is there already: kept as it is, with your changes"
              " (make rootfs-reset, or unpack --force, unpacks it afresh)")
        return
    if not os.path.isfile(tar_path):
        raise Failure(tar_path, "no such file")
    if os.path.lexists(dest) and not is_empty_dir(dest):
        if not force:
            raise Failure(dest, "exists and is not empty (use --force to replace it)")
        remove_tree(dest)
    devices = device_nodes(tar_path)
    # Unpacked beside DEST and renamed into place once whole: a Ctrl-C or a full disk
    # halfway leaves no half of a rootfs that the next `make rootfs` keeps.  A DEST that
    # is a mount point cannot be renamed over (EBUSY): unpacked in it, as it is.
    if os.path.ismount(dest):
        partial = dest
    else:
        partial = os.path.join(os.path.dirname(os.path.abspath(dest)),
                               f".{os.path.basename(os.path.abspath(dest))}.partial")
        if os.path.lexists(partial):
            remove_tree(partial)
        os.makedirs(partial)
    cmd = ["tar", "-x", "-p", "-f", os.path.abspath(tar_path), "-C", partial]
    if is_root():
        cmd.append("--numeric-owner")  # root keeps the archive's owners: 0:0 stays 0:0
    try:
        with tempfile.NamedTemporaryFile("w", prefix="mkrootfs-exclude-") as exclude:
            if devices:
                exclude.write("\n".join(devices) + "\n")
                exclude.flush()
                cmd += ["--anchored", "--no-wildcards", "--exclude-from", exclude.name]
            run(cmd, what=f"tar xpf {tar_path}", umask=0, capture_output=True, text=True)
        if partial != dest:
            os.replace(partial, dest)  # rename(2): over an empty directory, or none
    except BaseException:
        if partial != dest:
            remove_tree(partial)
        raise
    skipped = f", {len(devices)} device nodes skipped" if devices else ""
    print(f"mkrootfs: unpacked {tar_path} into {dest}{skipped}")
    note_if_others_can_write_in(dest)


def others_can_reach(path):
    """Does every directory from / down to path let others search it (o+x)?"""
    path = os.path.abspath(path)
    while True:
        if not os.stat(path).st_mode & stat.S_IXOTH:
            return False  # nobody else gets past this one
        if path == os.path.dirname(path):
            return True
        path = os.path.dirname(path)


def note_if_others_can_write_in(dest):
    """Say so when other users of this machine can write in the rootfs: its tmp/ and
    var/tmp/ are 1777, as in the course's archive, and where every directory on the
    way to DEST lets others search it (a home of mode 0755, as useradd makes it),
    another student can put files, FIFOs, sockets and directories in your
    containers' /var/tmp (-o shows them too), which neither you nor a container can
    remove (`make rootfs-reset` then fails).  path_resolution(7): a lookup needs
    search permission on every directory on the way."""
    shared = [os.path.relpath(top, dest) for top, _, _ in os.walk(dest)
              if os.lstat(top).st_mode & stat.S_IWOTH and top != dest] + (
        ["."] if os.lstat(dest).st_mode & stat.S_IWOTH else [])
    if not shared or not others_can_reach(dest):
        return
    parent = os.path.dirname(os.path.abspath(dest))
    print(f"mkrootfs: note: other users of this machine can reach {dest}, and "
          f"{', '.join(sorted(shared))} in it may be written by anyone: they can put files "
          f"there that your containers see and you cannot remove.  Keep them out: "
          f"chmod 700 {parent}")


# ---------------------------------------------------------------- command line


def parse_args(argv):
    parser = argparse.ArgumentParser(
        prog="mkrootfs", description="Build or unpack a zookeeper container root filesystem.")
    commands = parser.add_subparsers(dest="command", required=True)
    busybox = commands.add_parser("busybox", help="busybox-static image (small, reproducible)")
    busybox.add_argument("out", metavar="OUT.tar")
    debian = commands.add_parser("debian", help="Debian minbase image (debootstrap)")
    debian.add_argument("out", metavar="OUT.tar")
    debian.add_argument("--suite", default="bookworm", help="Debian suite (default bookworm)")
    debian.add_argument("--mirror", help="mirror URL (default: from the host's apt sources)")
    unpack_cmd = commands.add_parser("unpack", help="unpack as the calling user (umask 0)")
    unpack_cmd.add_argument("tar", metavar="TAR")
    unpack_cmd.add_argument("dir", metavar="DIR")
    exists = unpack_cmd.add_mutually_exclusive_group()
    exists.add_argument("--force", action="store_true",
                        help="remove DIR first if it exists and is not empty")
    exists.add_argument("--keep", action="store_true",
                        help="leave DIR as it is if it exists and is not empty")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    try:
        if args.command == "busybox":
            build_busybox(args.out)
        elif args.command == "debian":
            build_debian(args.out, args.suite, args.mirror)
        else:
            unpack(args.tar, args.dir, args.force, args.keep)
    except Failure as error:
        sys.exit(f"mkrootfs: {error}")
    except OSError as error:
        what = error.filename or args.command
        sys.exit(f"mkrootfs: {what}: {error.strerror or error}")
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
