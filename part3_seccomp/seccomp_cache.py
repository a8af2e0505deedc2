"""Given code: a cache of the seccomp filter's BPF program, and a quicker pyseccomp import.

Not an exercise, and not needed for one: it only makes a start faster.  Importing
pyseccomp (libseccomp) and compiling the rules costs more than the rest of a
container's start, so security.seccomp_program() keeps the compiled program in
$XDG_CACHE_HOME/zookeeper/seccomp.bpf (or ~/.cache/...) and reads it back, as crun
caches its compiled seccomp profiles.  A cache may make a start slower, never wrong
or stuck: anything but a regular file of ours, small, for this key and whole, is
ignored and written anew.
"""

import ctypes
import os
import stat
import sys
import types
import zlib

import kernel
from errors import ZooError

# The cache: one file, "KEY program-crc32=C\nPROGRAM", where KEY says what the program
# was built from: security.py (the rules and the code that compiles them) and this
# file, on this machine and kernel, and C is the program's own checksum.  The cache
# only saves time: a file that is not exactly what this run would write is ignored
# and written anew.
CACHE_FORMAT = "zookeeper seccomp cache 2"
MAX_PROGRAM_BYTES = 4096 * 8  # BPF_MAXINSNS instructions of 8 bytes (<linux/bpf_common.h>)
MAX_CACHE_BYTES = 1024 + MAX_PROGRAM_BYTES  # the key line, then the program


def cache_path() -> str | None:
    """$XDG_CACHE_HOME/zookeeper/seccomp.bpf, or ~/.cache/...; None without a home."""
    base = os.environ.get("XDG_CACHE_HOME") or (
        os.path.join(os.environ["HOME"], ".cache") if os.environ.get("HOME") else "")
    return os.path.join(base, "zookeeper", "seccomp.bpf") if os.path.isabs(base) else None


def cache_key(rules_file: str) -> bytes | None:
    """What the program depends on: any edit of the rules' file (security.py) or of
    this one makes a new key."""
    source = 0
    try:
        for path in (rules_file, __file__):
            with open(path, "rb") as f:
                source = zlib.crc32(f.read(), source)
    except OSError:
        return None
    machine = os.uname()
    return (f"{CACHE_FORMAT} {machine.machine} {machine.release} "
            f"{os.path.basename(rules_file)} crc32={source:08x}").encode()


def cache_head(key: bytes, program: bytes) -> bytes:
    return key + f" program-crc32={zlib.crc32(program):08x}".encode()


def open_cache_directory(path: str, make: bool = False) -> int | None:
    """An fd of the cache's directory (zookeeper/ in the cache home), opened without
    following a link, if it is a directory of ours that nobody else may write; None
    otherwise.  Every file operation then goes through it (openat(2), renameat(2)):
    a link someone put on the way cannot lead our writes into their directory."""
    directory = os.path.dirname(path)
    try:
        if make and ours(os.path.dirname(directory)):  # root with a user's HOME: not ours
            os.makedirs(os.path.dirname(directory), mode=0o700, exist_ok=True)
            try:
                os.mkdir(directory, 0o700)
            except FileExistsError:
                pass
        fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    info = os.fstat(fd)
    if info.st_uid != os.geteuid() or info.st_mode & 0o022:
        os.close(fd)
        return None
    return fd


def read_cached_program(path: str, key: bytes) -> bytes | None:
    """The cached program if the file is a regular file of ours that nobody else may
    write, small, for this key, and whole; None otherwise, never waiting: a FIFO
    planted there (in a shared XDG_CACHE_HOME, say) must not block the start."""
    directory = open_cache_directory(path)
    if directory is None:
        return None
    try:
        fd = os.open(os.path.basename(path), os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK
                     | os.O_CLOEXEC, dir_fd=directory)
    except OSError:
        return None
    finally:
        os.close(directory)
    try:
        info = os.fstat(fd)
        if (not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid()
                or info.st_mode & 0o022 or info.st_size > MAX_CACHE_BYTES):
            return None
        data = os.read(fd, MAX_CACHE_BYTES + 1)
    except OSError:
        return None
    finally:
        os.close(fd)
    head, _, program = data.partition(b"\n")
    if not program or len(program) % 8 or len(program) > MAX_PROGRAM_BYTES:
        return None
    return program if head == cache_head(key, program) else None


def forget_cached_program() -> None:
    """Remove the cache file (the kernel refused its program), if it is a file of ours."""
    path = cache_path()
    directory = open_cache_directory(path) if path else None
    if directory is None:
        return
    name = os.path.basename(path)
    try:
        if stat.S_ISREG(os.stat(name, dir_fd=directory, follow_symlinks=False).st_mode):
            os.unlink(name, dir_fd=directory)
    except OSError:
        pass
    finally:
        os.close(directory)


def write_cached_program(path: str, key: bytes, program: bytes) -> None:
    """Write the cache, whole or not at all (a new file renamed over the old one).
    A cache that cannot be written is no error: the next run builds the filter again."""
    directory = open_cache_directory(path, make=True)
    if directory is None:
        return  # not a directory of ours alone: leave it be
    name = os.path.basename(path)
    temporary = f"{name}.{os.getpid()}"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                     | os.O_CLOEXEC, 0o600, dir_fd=directory)
        with os.fdopen(fd, "wb") as f:
            f.write(cache_head(key, program) + b"\n" + program)
        os.replace(temporary, name, src_dir_fd=directory, dst_dir_fd=directory)
    except OSError as e:
        kernel.explain_error(f"cache the seccomp program in {path}", e)
        try:
            os.unlink(temporary, dir_fd=directory)
        except OSError:
            pass
        return
    finally:
        os.close(directory)
    kernel.explain(f"cache the seccomp program in {path}", "ok")


def ours(path: str) -> bool:
    """Is path, or the nearest entry on the way to it that exists, our own, and is
    every link on the way there ours or root's?  Root given a user's HOME whose .cache
    (or any directory above it) was the user's link to a directory of root's
    (/etc/cron.d, say) made its cache there."""
    while not os.path.lexists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
    on_the_way = path
    while os.path.dirname(on_the_way) != on_the_way:
        if os.path.islink(on_the_way) and os.lstat(on_the_way).st_uid not in (0, os.geteuid()):
            return False
        on_the_way = os.path.dirname(on_the_way)
    return os.stat(path).st_uid == os.geteuid()


def import_pyseccomp():
    """Import pyseccomp, minus its most expensive step.

    At import, pyseccomp looks for libc and libseccomp with ctypes.util.find_library,
    which imports subprocess and tempfile and runs `ldconfig -p` (~20 ms, more than
    all of zookeeper's system calls together).  The libraries' sonames, libc.so.6 and
    libseccomp.so.2, are stable ABI names the dynamic loader finds by itself: hand
    them over through a stand-in ctypes.util for the time of the import.  If that
    fails, import it the ordinary way.
    """
    shim = types.ModuleType("ctypes.util")
    shim.find_library = {"c": "libc.so.6", "seccomp": "libseccomp.so.2"}.get
    real = sys.modules.get("ctypes.util")
    sys.modules["ctypes.util"], ctypes.util = shim, shim
    try:
        import pyseccomp
    except (ImportError, OSError, RuntimeError):
        sys.modules.pop("pyseccomp", None)
        pyseccomp = None
    finally:
        if real is None:
            del sys.modules["ctypes.util"], ctypes.util
        else:
            sys.modules["ctypes.util"], ctypes.util = real, real
    if pyseccomp is None:
        try:
            import pyseccomp
        except ImportError as e:  # this Python is not the lab's venv (README 1)
            raise ZooError(f"failed to compile the seccomp filter: {e} (this is "
                           f"{sys.executable}: run zookeeper with the lab's venv, "
                           "`. .venv/bin/activate` or .venv/bin/python3, or `make setup` "
                           "to make it)") from None
    return pyseccomp
