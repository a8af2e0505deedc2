"""Try each system call zookeeper's seccomp filter refuses, and print what happened.

Output: one JSON object {rule: "ok" | errno name}.  Run inside a part 3+ container
(every rule gives EPERM, clone3 ENOSYS) and outside (none of them gives EPERM).
Each attempt runs in a forked child, so one cannot disturb the next.
"""

import ctypes
import errno
import json
import mmap
import os
import socket
import sys as sys_module
import tempfile

libc = ctypes.CDLL(None, use_errno=True)
libc.syscall.restype = ctypes.c_long

# System call numbers by architecture (uname -m): x86_64's from arch/x86/entry/syscalls/
# syscall_64.tbl, aarch64's from include/uapi/asm-generic/unistd.h (the grader's VM is
# either; tests/test_vm_arm64.py checks both against libseccomp's resolver).
NR_BY_MACHINE = {
    "x86_64": {"fchmodat": 268, "fchmodat2": 452, "unshare": 272, "clone": 56, "ioctl": 16,
               "keyctl": 250, "add_key": 248, "request_key": 249, "ptrace": 101,
               "mbind": 237, "migrate_pages": 256, "move_pages": 279, "set_mempolicy": 238,
               "userfaultfd": 323, "perf_event_open": 298, "clone3": 435,
               "io_uring_setup": 425},
    "aarch64": {"fchmodat": 53, "fchmodat2": 452, "unshare": 97, "clone": 220, "ioctl": 29,
                "keyctl": 219, "add_key": 217, "request_key": 218, "ptrace": 117,
                "mbind": 235, "migrate_pages": 238, "move_pages": 239, "set_mempolicy": 237,
                "userfaultfd": 282, "perf_event_open": 241, "clone3": 435,
                "io_uring_setup": 425},
}
NR = NR_BY_MACHINE[os.uname().machine]
AT_FDCWD = -100
CLONE_NEWUSER = 0x10000000
SIGCHLD = 17
TIOCSTI = 0x5412
TIOCEXCL, TCXONC, TCOON = 0x540C, 0x540A, 1
AF_ALG, AF_VSOCK = 38, 40
KEY_SPEC_PROCESS_KEYRING = -2
UFFD_USER_MODE_ONLY = 1


def sys(name, *args):
    args = [ctypes.c_long(a) if isinstance(a, int) else a for a in args]
    rc = libc.syscall(NR[name], *args)
    if rc == -1:
        raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
    return rc


def scratch_file() -> str:
    fd, path = tempfile.mkstemp(dir=os.environ.get("TRY_DIR", "/tmp"))
    os.close(fd)
    return path


def chmod_setuid():
    os.chmod(scratch_file(), 0o4755)


def chmod_setgid():
    os.chmod(scratch_file(), 0o2755)


def fchmod_setuid():
    with open(scratch_file()) as f:
        os.fchmod(f.fileno(), 0o4755)


def fchmodat_setuid():
    sys("fchmodat", AT_FDCWD, scratch_file().encode(), 0o4755)


def fchmodat2_setuid():
    sys("fchmodat2", AT_FDCWD, scratch_file().encode(), 0o4755, 0)


def unshare_user():
    sys("unshare", CLONE_NEWUSER)


def clone_user():
    pid = sys("clone", CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0)
    if pid == 0:
        os._exit(0)
    os.waitpid(pid, 0)


def ioctl_tiocsti():
    # Without CAP_SYS_ADMIN, TIOCSTI works only on one's controlling terminal: make a
    # new session and open a fresh pty, which becomes it.
    _, tty = os.openpty()
    name = os.ttyname(tty)
    os.setsid()
    controlling = os.open(name, os.O_RDWR)
    sys("ioctl", controlling, TIOCSTI, ctypes.c_char_p(b"x"))


def ioctl_tiocexcl():
    _, tty = os.openpty()
    sys("ioctl", tty, TIOCEXCL, 0)


def ioctl_tcxonc():
    _, tty = os.openpty()
    sys("ioctl", tty, TCXONC, TCOON)  # output on: a no-op, if it is allowed at all


def socket_vsock():
    # Where the kernel has no vsock, EAFNOSUPPORT (outside): never ok, never EPERM.
    socket.socket(AF_VSOCK, socket.SOCK_STREAM).close()


def socket_alg():
    socket.socket(AF_ALG, socket.SOCK_SEQPACKET).close()


def io_uring_setup():
    params = (ctypes.c_char * 120)()  # struct io_uring_params, zeroed
    os.close(sys("io_uring_setup", 1, ctypes.byref(params)))


def keyctl():
    sys("keyctl", 0, KEY_SPEC_PROCESS_KEYRING, 1)  # KEYCTL_GET_KEYRING_ID, create


def add_key():
    sys("add_key", b"user", b"zoo-test", b"x", 1, KEY_SPEC_PROCESS_KEYRING)


def request_key():
    sys("request_key", b"user", b"zoo-no-such-key", None, 0)


def ptrace():
    sys("ptrace", 0, 0, 0, 0)  # PTRACE_TRACEME


def mbind():
    page = mmap.mmap(-1, 4096)
    address = ctypes.addressof(ctypes.c_char.from_buffer(page))
    sys("mbind", address, 4096, 0, None, 0, 0)  # MPOL_DEFAULT


def migrate_pages():
    mask = ctypes.c_ulong(1)
    sys("migrate_pages", 0, 64, ctypes.byref(mask), ctypes.byref(mask))


def move_pages():
    sys("move_pages", 0, 0, None, None, None, 0)


def set_mempolicy():
    sys("set_mempolicy", 0, None, 0)  # MPOL_DEFAULT


def userfaultfd():
    os.close(sys("userfaultfd", os.O_CLOEXEC | UFFD_USER_MODE_ONLY))


def perf_event_open():
    attr = (ctypes.c_char * 128)()
    sys("perf_event_open", ctypes.byref(attr), 0, -1, -1, 0)


def clone3():
    sys("clone3", None, 0)


TRIES = [chmod_setuid, chmod_setgid, fchmod_setuid, fchmodat_setuid, fchmodat2_setuid,
         unshare_user, clone_user, ioctl_tiocsti, ioctl_tiocexcl, ioctl_tcxonc, socket_vsock,
         socket_alg, io_uring_setup, keyctl, add_key, request_key, ptrace, mbind,
         migrate_pages, move_pages, set_mempolicy, userfaultfd, perf_event_open, clone3]


def attempt(fn) -> str:
    """Run fn in a forked child; its outcome comes back through a pipe."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(r)
        try:
            fn()
            result = "ok"
        except OSError as e:
            result = errno.errorcode.get(e.errno, str(e.errno))
        os.write(w, result.encode())
        os._exit(0)
    os.close(w)
    result = os.read(r, 100).decode() or "crashed"
    os.waitpid(pid, 0)
    return result


if __name__ == "__main__":
    wanted = sys_module.argv[1:]
    chosen = [t for t in TRIES if not wanted or t.__name__ in wanted]
    print(json.dumps({t.__name__: attempt(t) for t in chosen}))
