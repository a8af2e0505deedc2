# zookeeper-source: stage=3
"""Limit what the container may ask of the kernel: capabilities and seccomp.

Root in a user namespace holds every capability, but only over what that
namespace owns.  Some kernel interfaces are not namespaced at all, so the
container should not hold their capabilities either (capabilities(7)), and some
system calls are better refused outright (seccomp(2), through libseccomp).
"""

import errno
import os

import kernel
import seccomp_cache
from errors import step

# capabilities(7): the ones a container has no business holding.  CAP_NET_ADMIN and
# CAP_NET_RAW are for the container's own network namespace, but with them root in
# it forges packets on its links (raw and packet sockets) and changes its addresses
# and routes: from stage 6, a packet for 127.0.0.1 that slirp4netns opens as a
# connection to the host's own loopback, or a router advertisement that reroutes the
# host through zoo0.  Podman's default capabilities leave both out too.
CAPABILITIES_TO_DROP = [
    ("CAP_AUDIT_CONTROL", 30), ("CAP_AUDIT_READ", 37), ("CAP_AUDIT_WRITE", 29),
    ("CAP_BLOCK_SUSPEND", 36), ("CAP_DAC_READ_SEARCH", 2), ("CAP_FSETID", 4),
    ("CAP_IPC_LOCK", 14), ("CAP_MAC_ADMIN", 33), ("CAP_MAC_OVERRIDE", 32),
    ("CAP_MKNOD", 27), ("CAP_NET_ADMIN", 12), ("CAP_NET_RAW", 13), ("CAP_SETFCAP", 31),
    ("CAP_SYSLOG", 34), ("CAP_SYS_ADMIN", 21), ("CAP_SYS_BOOT", 22),
    ("CAP_SYS_MODULE", 16), ("CAP_SYS_NICE", 23), ("CAP_SYS_RAWIO", 17),
    ("CAP_SYS_RESOURCE", 24), ("CAP_SYS_TIME", 25), ("CAP_WAKE_ALARM", 35),
]

S_ISUID, S_ISGID = 0o4000, 0o2000
CLONE_NEWUSER = kernel.CLONE_NEWUSER
TIOCSTI = 0x5412
# The terminal the container shares with you (its stdio is your terminal's open file)
# must stay yours: TIOCSETD sets its line discipline (N_NULL, 27, drops everything you
# type and everything printed, after the container is gone; an unloaded one is a kernel
# module loaded on demand), and TIOCLINUX's selection paste types into a console as
# TIOCSTI does (CVE-2023-28100; bubblewrap and Flatpak refuse both).  TIOCEXCL makes
# every later open(2) of it by anyone but root fail (EBUSY), and TCXONC's TCOOFF stops
# its output (your next program's write hangs): both outlive the container, and
# `reset` undoes neither.  ioctl_tty(2).
TIOCSETD, TIOCLINUX, TIOCEXCL, TCXONC = 0x5423, 0x541C, 0x540C, 0x540A
# socket(2)'s families that no namespace holds: AF_VSOCK's ports are the machine's
# (a container without -n would take a port another user or the hypervisor's agent
# needs, or talk to the hypervisor: vsock(7)); AF_ALG is the kernel's crypto API, a
# source of container escapes (https://copy.fail/).  Docker refuses both.
AF_ALG, AF_VSOCK = 38, 40

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
    ("typing into the terminal", "ioctl", [(1, 0xFFFFFFFF, TIOCLINUX)], errno.EPERM),
    ("the terminal's line discipline", "ioctl", [(1, 0xFFFFFFFF, TIOCSETD)], errno.EPERM),
    ("locking the terminal", "ioctl", [(1, 0xFFFFFFFF, TIOCEXCL)], errno.EPERM),
    ("stopping the terminal", "ioctl", [(1, 0xFFFFFFFF, TCXONC)], errno.EPERM),
    ("sockets no namespace holds", "socket", [(0, 0xFFFFFFFF, AF_VSOCK)], errno.EPERM),
    ("sockets no namespace holds", "socket", [(0, 0xFFFFFFFF, AF_ALG)], errno.EPERM),
    # io_uring makes sockets (IORING_OP_SOCKET) where the socket rules cannot see them;
    # Docker refuses it too.
    ("asynchronous I/O rings", "io_uring_setup", [], errno.EPERM),
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
    kept in a cache file (seccomp_cache.py, given code) and read back while the
    rules, the machine and the kernel are the same, as crun does with its profiles.
    """
    path = seccomp_cache.cache_path()
    key = seccomp_cache.cache_key(__file__) if path else None
    program = seccomp_cache.read_cached_program(path, key) if key else None
    if program is not None:
        kernel.explain(f"read the seccomp program cached in {path}",
                       f"{len(program) // 8} BPF instructions", "seccomp(2)")
        return program
    program = compile_seccomp_filter()
    if key:
        seccomp_cache.write_cached_program(path, key, program)
    return program


def compile_seccomp_filter() -> bytes:
    """Build the filter with libseccomp, rule by rule, and export its BPF program."""
    pyseccomp = seccomp_cache.import_pyseccomp()
    seccomp_filter = pyseccomp.SyscallFilter(pyseccomp.ALLOW)
    for what, name, matches, err in SYSCALLS_TO_REFUSE:
        number = syscall_number(pyseccomp, name)
        if number is None:
            kernel.explain(f"seccomp_rule_add(..., {name})", f"skipped: no {name} on "
                           f"{os.uname().machine}", "seccomp_rule_add(3)")
            continue
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


def syscall_number(pyseccomp, name: str) -> int | None:
    """This machine's number for the call, or None when this architecture has no
    such call (aarch64 has no chmod: only fchmodat, which has its own rule).
    libseccomp answers -1 for a name it does not know (a call newer than it: then
    kernel.py's table), and a number of its own below -10000 for a call that other
    architectures have and this one does not."""
    try:
        number = pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)
    except (OSError, ValueError):
        number = -1
    if number <= NOT_ON_THIS_ARCHITECTURE:
        return None
    return number if number >= 0 else kernel.syscall_number(name)


NOT_ON_THIS_ARCHITECTURE = -10000  # libseccomp's __PNR_* pseudo numbers lie below


LOAD_STEP = "load the seccomp filter"


def forget_refused_program(failure: str) -> None:
    """When the child's failure was the kernel refusing our program (a cached one cut
    short, say), remove it from the cache, so the next run compiles one afresh."""
    if failure.startswith(f"failed to {LOAD_STEP}"):
        seccomp_cache.forget_cached_program()


def load_seccomp_filter(program: bytes) -> None:
    """Install the filter: from now on the kernel checks each system call against it."""
    with step(LOAD_STEP):
        kernel.sys_seccomp_set_filter(program)
