"""Limit what the container may ask of the kernel: capabilities and seccomp.

Root in a user namespace holds every capability, but only over what that
namespace owns.  Some kernel interfaces are not namespaced at all, so the
container should not hold their capabilities either (capabilities(7)), and some
system calls are better refused outright (seccomp(2), through libseccomp).
"""

import errno
import os
import stat
import zlib

import kernel
from errors import step

# capabilities(7): the ones a container has no business holding.
CAPABILITIES_TO_DROP = [
    ("CAP_AUDIT_CONTROL", 30), ("CAP_AUDIT_READ", 37), ("CAP_AUDIT_WRITE", 29),
    ("CAP_BLOCK_SUSPEND", 36), ("CAP_DAC_READ_SEARCH", 2), ("CAP_FSETID", 4),
    ("CAP_IPC_LOCK", 14), ("CAP_MAC_ADMIN", 33), ("CAP_MAC_OVERRIDE", 32),
    ("CAP_MKNOD", 27), ("CAP_SETFCAP", 31), ("CAP_SYSLOG", 34),
    ("CAP_SYS_ADMIN", 21), ("CAP_SYS_BOOT", 22), ("CAP_SYS_MODULE", 16),
    ("CAP_SYS_NICE", 23), ("CAP_SYS_RAWIO", 17), ("CAP_SYS_RESOURCE", 24),
    ("CAP_SYS_TIME", 25), ("CAP_WAKE_ALARM", 35),
]

S_ISUID, S_ISGID = 0o4000, 0o2000
CLONE_NEWUSER = kernel.CLONE_NEWUSER
TIOCSTI = 0x5412

# The seccomp rules: (what it stops, system call, argument matches, errno returned).
# An argument match (index, mask, value) means "argument index, masked with mask,
# equals value" (SCMP_CMP_MASKED_EQ, seccomp_rule_add(3)): a mode bit is set when
# (mode & S_ISUID) == S_ISUID; an ioctl request is one number, compared whole (its
# low 32 bits: ioctl(2) takes an unsigned int), or TIOCSTI's mask would also catch
# TIOCGWINSZ, FIONREAD and every request that happens to have the same bits set.
SYSCALLS_TO_REFUSE = [
    ("setuid files", "chmod", [(1, S_ISUID, S_ISUID)], errno.EPERM),
    ("setgid files", "chmod", [(1, S_ISGID, S_ISGID)], errno.EPERM),
    ("setuid files", "fchmod", [(1, S_ISUID, S_ISUID)], errno.EPERM),
    ("setgid files", "fchmod", [(1, S_ISGID, S_ISGID)], errno.EPERM),
    ("setuid files", "fchmodat", [(2, S_ISUID, S_ISUID)], errno.EPERM),
    ("setgid files", "fchmodat", [(2, S_ISGID, S_ISGID)], errno.EPERM),
    ("setuid files", "fchmodat2", [(2, S_ISUID, S_ISUID)], errno.EPERM),
    ("setgid files", "fchmodat2", [(2, S_ISGID, S_ISGID)], errno.EPERM),
    ("nested user namespaces", "unshare", [(0, CLONE_NEWUSER, CLONE_NEWUSER)], errno.EPERM),
    ("nested user namespaces", "clone", [(0, CLONE_NEWUSER, CLONE_NEWUSER)], errno.EPERM),
    ("typing into the terminal", "ioctl", [(1, 0xFFFFFFFF, TIOCSTI)], errno.EPERM),
    ("the kernel keyring", "keyctl", [], errno.EPERM),
    ("the kernel keyring", "add_key", [], errno.EPERM),
    ("the kernel keyring", "request_key", [], errno.EPERM),
    ("tracing other processes", "ptrace", [], errno.EPERM),
    ("NUMA memory placement", "mbind", [], errno.EPERM),
    ("NUMA memory placement", "migrate_pages", [], errno.EPERM),
    ("NUMA memory placement", "move_pages", [], errno.EPERM),
    ("NUMA memory placement", "set_mempolicy", [], errno.EPERM),
    ("page faults handled in user space", "userfaultfd", [], errno.EPERM),
    ("performance counters", "perf_event_open", [], errno.EPERM),
    # clone3 passes its flags in a struct that seccomp cannot read: make it look
    # absent, and the C library falls back to clone, which the rule above checks.
    ("nested user namespaces", "clone3", [], errno.ENOSYS),
]


def drop_capabilities() -> None:
    """Drop the dangerous capabilities for good, for this process and what it execs."""
    # STUDENT CODE BELOW (q10)
    # Drop each capability of CAPABILITIES_TO_DROP from the bounding set.  The
    # bounding set limits what any program run later can ever gain; prctl(2)
    # PR_CAPBSET_DROP removes one capability from it.  capabilities(7).
    # kernel.sys_prctl(option, arg2, shown=...) makes the call; shown= is how explain
    # mode prints arg2 (the capability's name reads better than its number).
    for name, number in CAPABILITIES_TO_DROP:
        with step(f"drop {name} from the bounding set"):
            kernel.sys_prctl(kernel.PR_CAPBSET_DROP, number, shown=name)
    # STUDENT CODE ABOVE (q10)
    # The ambient and inheritable sets could hand capabilities to a program across
    # execve(2): empty both.
    with step("clear the ambient capabilities"):
        kernel.sys_prctl(kernel.PR_CAP_AMBIENT, kernel.PR_CAP_AMBIENT_CLEAR_ALL,
                         shown="PR_CAP_AMBIENT_CLEAR_ALL")
    with step("clear the inheritable capabilities"):
        data = kernel.sys_capget()
        data[0].inheritable = data[1].inheritable = 0
        kernel.sys_capset(data)


def set_no_new_privs() -> None:
    """No program run from here on gains privileges (setuid bits, file capabilities)."""
    with step("set no_new_privs"):
        kernel.sys_prctl(kernel.PR_SET_NO_NEW_PRIVS, 1)


def seccomp_program() -> bytes:
    """The seccomp filter of SYSCALLS_TO_REFUSE, as the BPF program the kernel runs.

    libseccomp compiles the rules into BPF (seccomp_export_bpf(3)); importing it
    takes longer than everything else zookeeper does at start, so the program is
    kept in a cache file and read back while the rules, the machine and the kernel
    are the same, as crun does with its seccomp profiles.
    """
    path = cache_path()
    key = cache_key() if path else None
    program = read_cached_program(path, key) if key else None
    if program is not None:
        kernel.explain(f"read the seccomp program cached in {path}",
                       f"{len(program) // 8} BPF instructions", "seccomp(2)")
        return program
    program = compile_seccomp_filter()
    if key:
        write_cached_program(path, key, program)
    return program


def compile_seccomp_filter() -> bytes:
    """Build the filter with libseccomp, rule by rule, and export its BPF program."""
    pyseccomp = import_pyseccomp()
    seccomp_filter = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for what, name, matches, err in SYSCALLS_TO_REFUSE:
        number = syscall_number(pyseccomp, name)
        args = [pyseccomp.Arg(index, pyseccomp.MASKED_EQ, mask, value)
                for index, mask, value in matches]
        with step(f"add the seccomp rule against {what} ({name})"):
            seccomp_filter.add_rule(pyseccomp.ERRNO(err), number, *args)
        kernel.explain(f"seccomp_rule_add(ERRNO({errno.errorcode[err]}), {name}"
                       + "".join(f", {shown_match(*match)}" for match in matches) + ")",
                       "0", "seccomp_rule_add(3)")
    # seccomp_export_bpf(3) writes the program to a file descriptor: a pipe here.
    # A program has at most 4096 instructions of 8 bytes, less than a pipe holds.
    read_end, write_end = os.pipe()
    with os.fdopen(read_end, "rb") as reader, os.fdopen(write_end, "wb") as writer:
        with step("export the seccomp filter as BPF"):
            seccomp_filter.export_bpf(writer)
        writer.close()
        program = reader.read()
    kernel.explain("seccomp_export_bpf()", f"{len(program) // 8} BPF instructions",
                   "seccomp_export_bpf(3)")
    return program


def shown_match(index: int, mask: int, value: int) -> str:
    """An argument match as explain mode shows it: mode bits in octal, others in hex."""
    number = oct if mask <= 0o7777 else hex
    return f"arg{index} & {number(mask)} == {number(value)}"


# The cache: one file, "KEY crc32=C\nPROGRAM", where KEY says what the program was
# built from: this file (the rules and the code that compiles them), on this machine
# and kernel, and C is the program's own checksum.  The cache only saves time: a file
# that is not exactly what this run would write is ignored and written anew.
CACHE_FORMAT = "zookeeper seccomp cache 2"
MAX_PROGRAM_BYTES = 4096 * 8  # BPF_MAXINSNS instructions of 8 bytes (<linux/bpf_common.h>)
MAX_CACHE_BYTES = 1024 + MAX_PROGRAM_BYTES  # the key line, then the program


def cache_path() -> str | None:
    """$XDG_CACHE_HOME/zookeeper/seccomp.bpf, or ~/.cache/...; None without a home."""
    base = os.environ.get("XDG_CACHE_HOME") or (
        os.path.join(os.environ["HOME"], ".cache") if os.environ.get("HOME") else "")
    return os.path.join(base, "zookeeper", "seccomp.bpf") if os.path.isabs(base) else None


def cache_key() -> bytes | None:
    """What the program depends on; any edit of this file makes a new key."""
    try:
        with open(__file__, "rb") as f:
            source = zlib.crc32(f.read())
    except OSError:
        return None
    machine = os.uname()
    return (f"{CACHE_FORMAT} {machine.machine} {machine.release} "
            f"{os.path.basename(__file__)} crc32={source:08x}").encode()


def cache_head(key: bytes, program: bytes) -> bytes:
    return key + f" program-crc32={zlib.crc32(program):08x}".encode()


def read_cached_program(path: str, key: bytes) -> bytes | None:
    """The cached program if the file is a regular file of ours that nobody else may
    write, small, for this key, and whole; None otherwise, never waiting: a FIFO
    planted there (in a shared XDG_CACHE_HOME, say) must not block the start."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
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
    """The kernel refused a cached program: remove it, so the next run compiles one."""
    path = cache_path()
    try:
        if path and stat.S_ISREG(os.lstat(path).st_mode):
            os.unlink(path)
    except OSError:
        pass


def write_cached_program(path: str, key: bytes, program: bytes) -> None:
    """Write the cache, whole or not at all (a new file renamed over the old one).
    A cache that cannot be written is no error: the next run builds the filter again."""
    directory = os.path.dirname(path)
    temporary = f"{path}.{os.getpid()}"
    try:
        if not ours(directory):
            return  # say, root with a user's HOME: leave their directory alone
        os.makedirs(directory, mode=0o700, exist_ok=True)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(cache_head(key, program) + b"\n" + program)
        os.replace(temporary, path)
    except OSError as e:
        kernel.explain_error(f"cache the seccomp program in {path}", e)
        try:
            os.unlink(temporary)
        except OSError:
            pass
        return
    kernel.explain(f"cache the seccomp program in {path}", "ok")


def ours(path: str) -> bool:
    """Is path, or the nearest directory on the way to it that exists, our own?"""
    while not os.path.exists(path) and os.path.dirname(path) != path:
        path = os.path.dirname(path)
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
    import ctypes
    import sys
    import types

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
        import pyseccomp
    return pyseccomp


def syscall_number(pyseccomp, name: str) -> int:
    try:
        number = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
    except (OSError, ValueError):
        number = -1
    return number if number >= 0 else kernel.syscall_number(name)


LOAD_STEP = "load the seccomp filter"


def load_seccomp_filter(program: bytes) -> None:
    """Install the filter: from now on the kernel checks each system call against it."""
    with step(LOAD_STEP):
        kernel.sys_seccomp_set_filter(program)
