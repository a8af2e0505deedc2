"""The system calls of a container's start that Python's os module does not offer
(clone(2) first; each stage adds its own), through ctypes, in one small module.

Every function here is a thin wrapper around one system call (see its man page):
it converts Python values to C ones, raises OSError with errno on failure, and, in
explain mode (-v), prints the call, its result, its man page and how long it took.
A few that Python offers are here too (waitpid and kill first; each stage adds its
own the same way), so that explain mode shows every step of a container's start:
the calls youki's Syscall trait holds for the same reason.  The rest (pipes,
files, execvp, zookeeper's own housekeeping) zookeeper takes from os, as its
documentation shows.  The rest of zookeeper calls these by name, e.g.
`kernel.sys_clone(...)`, so a test can swap one for a fake that records the call
or fails it.
"""

import ctypes
import errno
import fcntl
import os
import resource
import signal
import stat
import time

from errors import ZooError, printable, write_quietly

# Explain mode: set by -v or ZOOKEEPER_VERBOSE=1.  Off, it costs one test per call.
VERBOSE = False
# "[4242] " in the container's process, so its lines can be told from the parent's.
LABEL = ""

# libc, for the system calls Python's os module does not offer.
libc = ctypes.CDLL(None, use_errno=True)
# The same library called with the GIL held: clone(2) must not let another Python
# thread run between the fork hooks (see sys_clone).
pylibc = ctypes.PyDLL(None, use_errno=True)
pylibc.syscall.restype = ctypes.c_long
pylibc.syscall.argtypes = [ctypes.c_long, ctypes.c_ulong, ctypes.c_ulong,
                           ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]

# System call numbers differ between architectures: each has its own table in the
# kernel's sources (syscall(2); x86_64's is arch/x86/entry/syscalls/syscall_64.tbl,
# aarch64 uses the generic include/uapi/asm-generic/unistd.h).  zookeeper needs the
# numbers of the calls it makes through syscall(2), those the C library has no
# wrapper for: (x86_64, aarch64).  Calls added since Linux 5.x have one number
# everywhere.
ARCHITECTURES = ("x86_64", "aarch64")
ARCH = os.uname().machine
SYSCALL_NUMBERS = {
    "clone": (56, 220),
    "close_range": (436, 436),
    "seccomp": (317, 277),
    "clone3": (435, 435),  # for seccomp rules: libseccomp may not know it
    "fchmodat2": (452, 452),  # for seccomp rules, as clone3
    "io_uring_setup": (425, 425),  # for seccomp rules, as clone3
    "pivot_root": (155, 41),
    "openat2": (437, 437),
}


def syscall_number(name: str) -> int:
    """This machine's number for a system call of SYSCALL_NUMBERS; -1 (which the kernel
    answers with ENOSYS) on an architecture not in the table."""
    if ARCH not in ARCHITECTURES:
        return -1
    return SYSCALL_NUMBERS[name][ARCHITECTURES.index(ARCH)]


def check_architecture() -> None:
    """One line, before anything is made, on a machine whose numbers we do not know."""
    if ARCH not in ARCHITECTURES:
        raise ZooError(f"this machine is {ARCH}: zookeeper knows the system call numbers of "
                       f"{' and '.join(ARCHITECTURES)} only (kernel.py, SYSCALL_NUMBERS)")


SYS_clone = syscall_number("clone")
SYS_close_range = syscall_number("close_range")
CLOSE_RANGE_CLOEXEC = 0x4  # close_range(2): mark close-on-exec instead of closing
# prctl(2)'s options, from <linux/prctl.h>.
PR_SET_PDEATHSIG = 1
PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_CAP_AMBIENT = 47
PR_CAP_AMBIENT_CLEAR_ALL = 4
PRCTL_NAMES = {
    PR_SET_PDEATHSIG: "PR_SET_PDEATHSIG",
    PR_CAPBSET_DROP: "PR_CAPBSET_DROP",
    PR_SET_NO_NEW_PRIVS: "PR_SET_NO_NEW_PRIVS",
    PR_CAP_AMBIENT: "PR_CAP_AMBIENT",
}

libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                       ctypes.c_ulong]

# Flags of clone(2) and unshare(2): each CLONE_NEW* gives the child a new namespace.
CLONE_NEWNS = 0x00020000
CLONE_NEWCGROUP = 0x02000000
CLONE_NEWUTS = 0x04000000
CLONE_NEWIPC = 0x08000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
CLONE_NEWNET = 0x40000000
# clone(2)'s flags as explain mode spells them.  The low byte is the signal the
# parent gets when the child ends: SIGCHLD, as fork(2) does.
CLONE_FLAG_NAMES = [
    ("CLONE_NEWUSER", CLONE_NEWUSER),
    ("CLONE_NEWCGROUP", CLONE_NEWCGROUP),
    ("CLONE_NEWIPC", CLONE_NEWIPC),
    ("CLONE_NEWNET", CLONE_NEWNET),
    ("CLONE_NEWNS", CLONE_NEWNS),
    ("CLONE_NEWPID", CLONE_NEWPID),
    ("CLONE_NEWUTS", CLONE_NEWUTS),
    ("SIGCHLD", signal.SIGCHLD),
]


def flag_names(value: int, names: list) -> str:
    """Spell a bit mask the way the man pages do: CLONE_NEWNS|SIGCHLD."""
    parts = []
    for name, bit in names:
        if value & bit == bit and bit:
            parts.append(name)
            value &= ~bit
    if value or not parts:
        parts.append(hex(value))
    return "|".join(parts)


def spell_undecodable_bytes(text: str) -> str:
    """repr()'s \\udc80-\\udcff, a byte that is not UTF-8 (a surrogate, PEP 383), as
    \\x80-\\xff.  Cut at each doubled backslash first: what repr wrote as \\\\udc is a
    backslash followed by the text "udc", no escape."""
    if "\\udc" not in text:
        return text
    pieces = text.split("\\\\")
    for byte in range(0x80, 0x100):
        pieces = [piece.replace(f"\\udc{byte:02x}", f"\\x{byte:02x}") for piece in pieces]
    return "\\\\".join(pieces)


def explain(call: str, result: str, man: str = "", started: float | None = None) -> None:
    """Print one step of explain mode to stderr (unbuffered, so parent and child
    lines come out in the order they happened)."""
    if not VERBOSE:
        return
    took = f"{(time.monotonic() - started) * 1000:.1f} ms" if started is not None else ""
    # An argument shown with !r spells a byte that is not UTF-8 (a surrogate, PEP 383)
    # \udcff; printable() and the error lines spell it \xff: one spelling here too.
    call = spell_undecodable_bytes(call)
    line = f"zookeeper: {LABEL}{printable(call)} = {printable(result)}"
    # A stderr closed by its reader (-v 2>&1 | head) takes nothing: the step goes on.
    write_quietly(2, f"{line:<76} {man:<16} {took}".rstrip() + "\n")


def explain_error(call: str, err: OSError, man: str = "", started: float | None = None) -> None:
    """Explain mode's line for a failed step: errno's name and strerror."""
    name = errno.errorcode.get(err.errno, str(err.errno)) if err.errno else "error"
    explain(call, f"-1 {name} ({err.strerror or err})", man, started)


def explained(call: str, man: str, function, *args, **kwargs) -> None:
    """function(*args, **kwargs), Python's own call of one system call (os.kill,
    os.setgroups, ...), shown in explain mode as call = 0, or = -1 and its errno."""
    started = time.monotonic()
    try:
        function(*args, **kwargs)
    except OSError as e:
        explain_error(call, e, man, started)
        raise
    explain(call, "0", man, started)


def check(rc: int, call, man: str, started: float) -> int:
    """Turn a C return value into a Python one: -1 raises OSError(errno)."""
    if rc == -1:
        err = ctypes.get_errno()
        exc = OSError(err, os.strerror(err))
        if VERBOSE:
            explain_error(call(), exc, man, started)
        raise exc
    if VERBOSE:
        explain(call(), str(rc), man, started)
    return rc


def sys_clone(flags: int) -> int:
    """clone(2) used like fork(2): returns the child's pid in the parent, 0 in the child.

    The raw system call (no new stack: the child continues on a copy of ours), called
    with the GIL held and bracketed by Python's own fork hooks, as os.fork() does.
    """
    started = time.monotonic()
    ctypes.pythonapi.PyOS_BeforeFork()
    pid = pylibc.syscall(SYS_clone, flags, 0, 0, 0, 0)
    if pid == 0:
        ctypes.pythonapi.PyOS_AfterFork_Child()
        return 0
    err = ctypes.get_errno()
    ctypes.pythonapi.PyOS_AfterFork_Parent()
    if pid == -1:
        ctypes.set_errno(err)
    return check(pid, lambda: f"clone({flag_names(flags, CLONE_FLAG_NAMES)})",
                 "clone(2)", started)


def signal_name(signum: int) -> str:
    """The name of a signal (SIGKILL for 9), for explain mode: from signal.py's enum."""
    try:
        return signal.Signals(signum).name
    except ValueError:  # a number no signal has
        return str(signum)


def sys_waitpid(pid: int) -> int:
    """waitpid(2): wait for the child to end; returns its wait status."""
    started = time.monotonic()
    _, status = os.waitpid(pid, 0)
    if VERBOSE:
        if os.WIFSIGNALED(status):
            how = f"killed by {signal_name(os.WTERMSIG(status))}"
        else:
            how = f"exit status {os.waitstatus_to_exitcode(status)}"
        explain(f"waitpid({pid})", f"{pid} ({how})", "waitpid(2)", started)
    return status


def sys_kill(pid: int, sig: int) -> None:
    """kill(2): send a signal to a process, or to a process group (-its id).  Never 0
    or -1: kill(2) takes those for the caller's own process group and for every
    process the caller may signal.  (A pid of 0 is what clone(2) returns in the
    child: a child that ran the parent's code would have killed its shell's group.)"""
    if pid in (0, -1):
        raise ProcessLookupError(f"kill({pid}) would signal more than one process: "
                                 "zookeeper signals its own child only")
    explained(f"kill({pid}, {signal_name(sig)})", "kill(2)", os.kill, pid, sig)


def sys_setsid() -> int:
    """setsid(2): a new session and process group, led by the caller, with no
    controlling terminal; returns its id."""
    started = time.monotonic()
    return check(libc.setsid(), lambda: "setsid()", "setsid(2)", started)


def sys_prctl(option: int, arg2: int = 0, shown: str = "") -> int:
    """prctl(2): operations on the calling process (parent-death signal, capabilities...)."""
    started = time.monotonic()
    return check(libc.prctl(option, arg2, 0, 0, 0),
                 lambda: f"prctl({PRCTL_NAMES.get(option, option)}, {shown or arg2})",
                 "prctl(2)", started)


def sys_close_range(first: int, last: int = 0xFFFFFFFF, flags: int = 0) -> None:
    """close_range(2): close every file descriptor from first to last, both included
    (with CLOSE_RANGE_CLOEXEC: mark them close-on-exec, so execve(2) closes them)."""
    started = time.monotonic()
    shown = "CLOSE_RANGE_CLOEXEC" if flags == CLOSE_RANGE_CLOEXEC else str(flags)
    shown_last = "~0U" if last == 0xFFFFFFFF else str(last)
    check(libc.syscall(ctypes.c_long(SYS_close_range), ctypes.c_uint(first),
                       ctypes.c_uint(last), ctypes.c_uint(flags)),
          lambda: f"close_range({first}, {shown_last}, {shown})", "close_range(2)", started)


def read_to_end(fd: int) -> bytes:
    """read(2) a pipe until every writer has closed it (an empty read), then close it."""
    data = b""
    while chunk := os.read(fd, 4096):
        data += chunk
    os.close(fd)
    return data


def quoted(value) -> str:
    """A string argument as explain mode shows it: in quotes, or NULL."""
    return "NULL" if value is None else f'"{value}"'


def sys_sethostname(name: str) -> None:
    """sethostname(2): set the hostname of the caller's UTS namespace."""
    started = time.monotonic()
    data = name.encode()
    check(libc.sethostname(data, len(data)), lambda: f"sethostname({quoted(name)})",
          "sethostname(2)", started)


def write_file(path: str, text: str, man: str) -> None:
    """Write a kernel control file (/proc/PID/uid_map, /proc/PID/setgroups, ...)
    in one write(2), as the kernel expects of most of them."""
    started = time.monotonic()
    call = f"write({path}, {text.strip()!r})"
    try:
        fd = os.open(path, os.O_WRONLY)
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
    except OSError as e:
        explain_error(call, e, man, started)
        raise
    explain(call, "ok", man, started)


def sys_setgroups(groups: list[int]) -> None:
    """setgroups(2): set the caller's supplementary groups (an empty list: none)."""
    shown = f"setgroups({len(groups)}, [{', '.join(map(str, groups))}])"
    explained(shown, "setgroups(2)", os.setgroups, groups)


def sys_setresgid(rgid: int, egid: int, sgid: int) -> None:
    """setresgid(2): set the caller's real, effective and saved group ids."""
    explained(f"setresgid({rgid}, {egid}, {sgid})", "setresgid(2)", os.setresgid,
              rgid, egid, sgid)


def sys_setresuid(ruid: int, euid: int, suid: int) -> None:
    """setresuid(2): set the caller's real, effective and saved user ids."""
    explained(f"setresuid({ruid}, {euid}, {suid})", "setresuid(2)", os.setresuid,
              ruid, euid, suid)




class CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class CapData(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32),
                ("inheritable", ctypes.c_uint32)]


LINUX_CAPABILITY_VERSION_3 = 0x20080522


def sys_capget() -> list:
    """capget(2): this thread's effective, permitted and inheritable sets, as two
    32-bit halves (capabilities 0-31 and 32-63)."""
    started = time.monotonic()
    header, data = CapHeader(LINUX_CAPABILITY_VERSION_3, 0), (CapData * 2)()
    check(libc.capget(ctypes.byref(header), data), lambda: "capget()", "capget(2)", started)
    return data


def sys_capset(data) -> None:
    """capset(2): set this thread's capability sets (see sys_capget)."""
    started = time.monotonic()
    header = CapHeader(LINUX_CAPABILITY_VERSION_3, 0)
    check(libc.capset(ctypes.byref(header), data),
          lambda: f"capset(inheritable={data[0].inheritable | data[1].inheritable << 32:#x})",
          "capset(2)", started)


SYS_seccomp = syscall_number("seccomp")
SECCOMP_SET_MODE_FILTER = 1


class SockFprog(ctypes.Structure):
    """struct sock_fprog of <linux/filter.h>: a BPF program's length and instructions."""
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_char_p)]


def sys_seccomp_set_filter(program: bytes) -> None:
    """seccomp(2) SECCOMP_SET_MODE_FILTER: from now on, the kernel runs this BPF
    program (struct sock_filter instructions, 8 bytes each) on every system call.
    Needs no_new_privs first, without CAP_SYS_ADMIN.  No C library wrapper either."""
    started = time.monotonic()
    fprog = SockFprog(len(program) // 8, program)
    # syscall(2) takes longs: plain Python ints would go as 32-bit C ints.
    check(libc.syscall(ctypes.c_long(SYS_seccomp), ctypes.c_long(SECCOMP_SET_MODE_FILTER),
                       ctypes.c_long(0), ctypes.byref(fprog)),
          lambda: f"seccomp(SECCOMP_SET_MODE_FILTER, 0, {{len={fprog.len}}})", "seccomp(2)",
          started)


SYS_pivot_root = syscall_number("pivot_root")

# Flags of mount(2) and umount2(2), from <sys/mount.h>.
MS_RDONLY = 0x1
MS_NOSUID = 0x2
MS_NODEV = 0x4
MS_NOEXEC = 0x8
MS_REMOUNT = 0x20
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 0x40000
MNT_DETACH = 0x2
MOUNT_FLAG_NAMES = [
    ("MS_RDONLY", MS_RDONLY), ("MS_NOSUID", MS_NOSUID), ("MS_NODEV", MS_NODEV),
    ("MS_NOEXEC", MS_NOEXEC), ("MS_REMOUNT", MS_REMOUNT), ("MS_BIND", MS_BIND),
    ("MS_REC", MS_REC), ("MS_PRIVATE", MS_PRIVATE),
]
UMOUNT_FLAG_NAMES = [("MNT_DETACH", MNT_DETACH)]

libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                       ctypes.c_char_p]
libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]


def c_str(value) -> bytes | None:
    """A path for a char * argument: its bytes (os.fsencode), or None for NULL."""
    if value is None:
        return None
    return os.fsencode(value)


def sys_mount(source, target: str, fstype, flags: int, data=None) -> None:
    """mount(2): attach a filesystem (or, with MS_BIND, a directory) at target;
    with only propagation flags (MS_PRIVATE), change how target shares mounts."""
    started = time.monotonic()
    shown = flag_names(flags, MOUNT_FLAG_NAMES) if flags else "0"
    check(libc.mount(c_str(source), c_str(target), c_str(fstype), flags, c_str(data)),
          lambda: f"mount({quoted(source)}, {quoted(target)}, {quoted(fstype)}, {shown}"
                  + (f", {quoted(data)})" if data is not None else ")"),
          "mount(2)", started)


def sys_umount2(target: str, flags: int = 0) -> None:
    """umount2(2): detach the mount at target (MNT_DETACH: lazily, even if busy)."""
    started = time.monotonic()
    shown = flag_names(flags, UMOUNT_FLAG_NAMES) if flags else "0"
    check(libc.umount2(c_str(target), flags), lambda: f"umount2({quoted(target)}, {shown})",
          "umount2(2)", started)


def sys_pivot_root(new_root: str, put_old: str) -> None:
    """pivot_root(2): make new_root the root mount, moving the old one to put_old.
    The C library has no wrapper: called through syscall(2)."""
    started = time.monotonic()
    try:
        check(libc.syscall(ctypes.c_long(SYS_pivot_root), c_str(new_root), c_str(put_old)),
              lambda: f"pivot_root({quoted(new_root)}, {quoted(put_old)})", "pivot_root(2)",
              started)
    except OSError as e:
        if e.errno == errno.EINVAL:  # the man page's usual causes, in one line
            e.strerror += (" (see pivot_root(2): new_root must be a mount point, the"
                           " mounts of / must not be shared, and the working directory"
                           " must be in new_root)")
        raise


def sys_chdir(path: str) -> None:
    """chdir(2): change the working directory."""
    started = time.monotonic()
    check(libc.chdir(c_str(path)), lambda: f"chdir({quoted(path)})", "chdir(2)", started)


def sys_mkdir(path: str, mode: int = 0o755, dir_fd: int | None = None) -> None:
    """mkdir(2): make a directory; mkdirat(2) with dir_fd: path relative to it.
    Neither follows a symbolic link at path's end: that is EEXIST."""
    started = time.monotonic()
    if dir_fd is None:
        check(libc.mkdir(c_str(path), mode), lambda: f"mkdir({quoted(path)}, {mode:#o})",
              "mkdir(2)", started)
    else:
        check(libc.mkdirat(dir_fd, c_str(path), mode),
              lambda: f"mkdirat({dir_fd}, {quoted(path)}, {mode:#o})", "mkdir(2)", started)


def sys_rmdir(path: str) -> None:
    """rmdir(2): remove an empty directory."""
    started = time.monotonic()
    check(libc.rmdir(c_str(path)), lambda: f"rmdir({quoted(path)})", "rmdir(2)", started)


def sys_mknodat(dir_fd: int, path: str, mode: int) -> None:
    """mknodat(2) of a regular file (S_IFREG): an empty file, which needs no privilege.
    A device node would need CAP_MKNOD in the host's user namespace (mknod(2)), so a
    rootless /dev binds the host's devices onto such files instead."""
    explained(f"mknodat({dir_fd}, {quoted(path)}, S_IFREG|{mode:#o})", "mknod(2)",
              os.mknod, path, stat.S_IFREG | mode, dir_fd=dir_fd)


def sys_symlinkat(target: str, dir_fd: int, path: str) -> None:
    """symlinkat(2): make path (in the directory open at dir_fd) a symbolic link to target."""
    explained(f"symlinkat({quoted(target)}, {dir_fd}, {quoted(path)})", "symlink(2)",
              os.symlink, target, path, dir_fd=dir_fd)


def sys_fchown(fd: int, uid: int, gid: int) -> None:
    """fchown(2): give the file open at fd to uid and gid."""
    explained(f"fchown({fd}, {uid}, {gid})", "chown(2)", os.fchown, fd, uid, gid)


SYS_openat2 = syscall_number("openat2")
# openat2(2)'s resolve flags: how the kernel may walk the path.
RESOLVE_NO_MAGICLINKS = 0x02  # no /proc/PID/fd/N-style links
RESOLVE_NO_SYMLINKS = 0x04  # no symbolic link anywhere on the way: ELOOP
RESOLVE_BENEATH = 0x08  # never above the starting directory (no "..", no "/"): EXDEV
RESOLVE_NAMES = [("RESOLVE_NO_MAGICLINKS", RESOLVE_NO_MAGICLINKS),
                 ("RESOLVE_NO_SYMLINKS", RESOLVE_NO_SYMLINKS),
                 ("RESOLVE_BENEATH", RESOLVE_BENEATH)]
OPEN_FLAG_NAMES = [("O_PATH", os.O_PATH), ("O_DIRECTORY", os.O_DIRECTORY),
                   ("O_CLOEXEC", os.O_CLOEXEC)]


def sys_open(path: str, flags: int) -> int:
    """open(2): an fd of path (flags among OPEN_FLAG_NAMES), followed links and all."""
    call = f"open({quoted(path)}, {flag_names(flags, OPEN_FLAG_NAMES)})"
    started = time.monotonic()
    try:
        fd = os.open(path, flags)
    except OSError as e:
        explain_error(call, e, "open(2)", started)
        raise
    explain(call, str(fd), "open(2)", started)
    return fd


class OpenHow(ctypes.Structure):
    """struct open_how of <linux/openat2.h>."""
    _fields_ = [("flags", ctypes.c_uint64), ("mode", ctypes.c_uint64),
                ("resolve", ctypes.c_uint64)]


def sys_openat2(dir_fd: int, path: str, flags: int, resolve: int) -> int:
    """openat2(2): open path relative to dir_fd, walking it only as resolve allows.
    The C library has no wrapper: called through syscall(2)."""
    started = time.monotonic()
    how = OpenHow(flags | os.O_CLOEXEC, 0, resolve)
    return check(libc.syscall(ctypes.c_long(SYS_openat2), ctypes.c_int(dir_fd), c_str(path),
                              ctypes.byref(how), ctypes.c_size_t(ctypes.sizeof(how))),
                 lambda: f"openat2({dir_fd}, {quoted(path)}, "
                         f"{{{flag_names(how.flags, OPEN_FLAG_NAMES)}, "
                         f"{flag_names(resolve, RESOLVE_NAMES)}}})",
                 "openat2(2)", started)


# statfs(2)'s f_type of the filesystems zookeeper mounts (<linux/magic.h>).
TMPFS_MAGIC = 0x01021994
PROC_SUPER_MAGIC = 0x9FA0
SYSFS_MAGIC = 0x62656572


def sys_fstatfs_type(fd: int) -> int:
    """fstatfs(2): the type of the filesystem fd is on (struct statfs's first field)."""
    started = time.monotonic()
    buffer = (ctypes.c_long * 16)()  # struct statfs: 120 bytes on 64-bit Linux
    check(libc.fstatfs(fd, buffer), lambda: f"fstatfs({fd})", "statfs(2)", started)
    return buffer[0]


def sys_unshare(flags: int) -> None:
    """unshare(2): move the caller into new namespaces (CLONE_NEW* flags)."""
    started = time.monotonic()
    check(libc.unshare(flags), lambda: f"unshare({flag_names(flags, CLONE_FLAG_NAMES)})",
          "unshare(2)", started)


AF_INET = 2
SOCK_DGRAM = 2
SOCK_CLOEXEC = 0o2000000
# netdevice(7): read and write an interface's flags (struct ifreq: the name, then flags).
SIOCGIFFLAGS = 0x8913
SIOCSIFFLAGS = 0x8914
IOCTL_NAMES = {SIOCGIFFLAGS: "SIOCGIFFLAGS", SIOCSIFFLAGS: "SIOCSIFFLAGS"}
FAMILY_NAMES, TYPE_NAMES = {AF_INET: "AF_INET"}, {SOCK_DGRAM: "SOCK_DGRAM"}


def sys_socket(family: int, kind: int) -> int:
    """socket(2): a socket of the caller's network namespace, as a file descriptor."""
    started = time.monotonic()
    return check(libc.socket(family, kind | SOCK_CLOEXEC, 0),
                 lambda: f"socket({FAMILY_NAMES.get(family, family)}, "
                         f"{TYPE_NAMES.get(kind, kind)}|SOCK_CLOEXEC, 0)", "socket(2)", started)


def sys_ioctl(fd: int, request: int, arg: bytes, shown: str = "") -> bytes:
    """ioctl(2) with a structure in and out (arg: its bytes); returns the bytes it
    holds afterwards."""
    started = time.monotonic()
    call = f"ioctl({fd}, {IOCTL_NAMES.get(request, hex(request))}, {shown or '...'})"
    try:
        out = fcntl.ioctl(fd, request, arg)
    except OSError as e:
        explain_error(call, e, "netdevice(7)", started)
        raise
    explain(call, "0", "netdevice(7)", started)
    return out


def sys_setns(fd: int, nstype: int, shown: str) -> None:
    """setns(2): move the calling thread into the namespace open at fd."""
    started = time.monotonic()
    check(libc.setns(fd, nstype), lambda: f"setns({shown}, {flag_names(nstype, CLONE_FLAG_NAMES)})",
          "setns(2)", started)


RLIMIT_FSIZE, RLIMIT_CORE = resource.RLIMIT_FSIZE, resource.RLIMIT_CORE
RLIMIT_NAMES = {RLIMIT_FSIZE: "RLIMIT_FSIZE", RLIMIT_CORE: "RLIMIT_CORE"}


def sys_prlimit(pid: int, which: int, limit: int) -> None:
    """prlimit(2): set another process's soft and hard limit of one resource."""
    explained(f"prlimit({pid}, {RLIMIT_NAMES.get(which, which)}, {{{limit}, {limit}}})",
              "prlimit(2)", resource.prlimit, pid, which, (limit, limit))
