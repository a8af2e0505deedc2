#!/usr/bin/env python3
"""Namespaces for the network benchmark's reference paths (stdlib only).

    nsrun.py userns -- CMD...            CMD as root of a new user namespace whose uids and
                                         gids 0..399999 are the host's own (run as root)
    nsrun.py slirp [--mtu N] -- CMD...   CMD in a new user+network namespace connected by
                                         slirp4netns with its own defaults (and --mtu N)
    nsrun.py pasta -- CMD...             the same, connected by pasta (package passt)

`userns` exists because /dev/net/tun is 0600 on some hosts: only root may open it, so
the rootless network paths (zookeeper's slirp4netns, the references) run there as root
of a user namespace, where zookeeper takes its rootless path (its uid map is not the
host's identity map) and still may open the tun device (uid 0 owns it).

Exit status: CMD's; 125 when the namespaces or the network helper could not be set up,
with one line on stderr saying why.
"""

import ctypes
import os
import shutil
import signal
import sys
import tempfile
import time

# grader/waiting_child.py: beside this file when bench/throughput.py copies both for a
# test user, else in the repository's grader/.
sys.path.append(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "grader"))
import waiting_child

CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
IDENTITY_RANGE = 400000  # covers the subordinate ranges of /etc/subuid (root: 300000+65536)
READY_SECONDS = 20
# Python ignores SIGPIPE and a spawned program inherits that; pasta of Debian 12 takes
# an ignored SIGPIPE for a failure to install its handlers: give helpers the default.
DEFAULT_SIGNALS = (signal.SIGPIPE,)

libc = ctypes.CDLL(None, use_errno=True)


def fail(message: str) -> None:
    sys.stderr.write(f"nsrun: {message}\n")
    sys.exit(125)


def unshare(flags: int) -> None:
    if libc.unshare(flags) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"unshare: {os.strerror(err)}")


def write(path: str, text: str) -> None:
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def start_child(flags: int, maps) -> tuple[int, int]:
    """Fork a child that unshares `flags`, gets its id maps, and waits for go before it
    execs the command (waiting_child.py's handshake).  Returns (pid, go_fd).  maps(pid)
    writes the maps: in the parent (identity ranges, only root may) or None: the child
    maps itself, root -> us."""
    uid, gid = os.geteuid(), os.getegid()  # ours: the child's are gone once it unshares

    def prepare() -> None:
        unshare(flags)
        if maps is None:
            write("/proc/self/setgroups", "deny")
            write("/proc/self/uid_map", f"0 {uid} 1\n")
            write("/proc/self/gid_map", f"0 {gid} 1\n")

    pid, go = waiting_child.fork_waiting_child(prepare, exec_command)
    if go is None:
        waiting_child.let_go(pid, go)
        fail("could not make the namespaces (unshare failed)")
    if maps is not None:
        maps(pid)
    return pid, go


def exec_command() -> None:
    try:
        os.execvp(COMMAND[0], COMMAND)
    except OSError as e:
        sys.stderr.write(f"nsrun: {COMMAND[0]}: {e.strerror}\n")


def identity_maps(pid: int) -> None:
    for name in ("uid_map", "gid_map"):
        write(f"/proc/{pid}/{name}", f"0 0 {IDENTITY_RANGE}\n")


def first_error_line(path: str) -> str:
    try:
        with open(path, errors="replace") as f:
            lines = [x.strip() for x in f if x.strip() and "syslog" not in x]
    except OSError:
        return ""
    return lines[0] if lines else ""


def run_userns() -> int:
    if os.geteuid() != 0:
        fail("userns: needs root (it maps uids 0..399999 to themselves)")
    pid, go = start_child(CLONE_NEWUSER, identity_maps)
    return waiting_child.let_go(pid, go)


def run_slirp(mtu) -> int:
    if shutil.which("slirp4netns") is None:
        fail("slirp4netns not installed")
    pid, go = start_child(CLONE_NEWUSER | CLONE_NEWNET, None)
    ready_read, ready_write = os.pipe()
    log = tempfile.NamedTemporaryFile(prefix="nsrun-slirp-", suffix=".log", delete=False)
    argv = ["slirp4netns", "--configure", f"--ready-fd={ready_write}"]
    if mtu:
        argv.append(f"--mtu={mtu}")
    argv += [str(pid), "tap0"]
    os.set_inheritable(ready_write, True)
    helper = os.posix_spawnp(argv[0], argv, os.environ, setsigdef=DEFAULT_SIGNALS, file_actions=[
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, log.fileno(), 1), (os.POSIX_SPAWN_DUP2, log.fileno(), 2)])
    os.close(ready_write)
    try:
        import select

        if not select.select([ready_read], [], [], READY_SECONDS)[0] or \
                os.read(ready_read, 1) != b"1":
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
            fail(f"slirp4netns did not start: {first_error_line(log.name) or 'no message'}")
        return waiting_child.let_go(pid, go)
    finally:
        os.close(ready_read)
        try:
            os.kill(helper, signal.SIGTERM)
        except ProcessLookupError:
            pass
        os.waitpid(helper, 0)
        os.unlink(log.name)


def has_default_route(pid: int) -> bool:
    """Whether the network namespace of pid has an IPv4 default route (proc(5): net/route)."""
    try:
        with open(f"/proc/{pid}/net/route") as f:
            return any(line.split()[1:2] == ["00000000"] for line in f.readlines()[1:])
    except OSError:
        return False


def run_pasta() -> int:
    if shutil.which("pasta") is None:
        fail("pasta not installed (Debian package passt)")
    pid, go = start_child(CLONE_NEWUSER | CLONE_NEWNET, None)
    log = tempfile.NamedTemporaryFile(prefix="nsrun-pasta-", suffix=".log", delete=False)
    argv = ["pasta", "--config-net", "--foreground", "--quiet"]
    if os.geteuid() == 0:
        argv += ["--runas", "0:0"]  # root of our user namespace: stay it (not nobody)
    argv.append(str(pid))
    helper = os.posix_spawnp(argv[0], argv, os.environ, setsigdef=DEFAULT_SIGNALS, file_actions=[
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_DUP2, log.fileno(), 1), (os.POSIX_SPAWN_DUP2, log.fileno(), 2)])
    try:
        # Ready when pasta has configured the namespace: its default route is there.
        deadline = time.monotonic() + READY_SECONDS
        while not has_default_route(pid):
            gone, _ = os.waitpid(helper, os.WNOHANG)
            if gone or time.monotonic() > deadline:
                if gone:
                    helper = None
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                fail(f"pasta did not start: {first_error_line(log.name) or 'no message'}")
            time.sleep(0.005)
        return waiting_child.let_go(pid, go)
    finally:
        if helper:
            try:
                os.kill(helper, signal.SIGTERM)
            except ProcessLookupError:
                pass
            os.waitpid(helper, 0)
        os.unlink(log.name)


def main(argv: list[str]) -> int:
    global COMMAND
    if "--" not in argv or argv.index("--") == len(argv) - 1:
        fail("usage: nsrun.py userns|slirp [--mtu N]|pasta -- CMD...")
    split = argv.index("--")
    head, COMMAND = argv[:split], argv[split + 1:]
    if head[:1] == ["userns"]:
        return run_userns()
    if head[:1] == ["slirp"]:
        mtu = head[2] if head[1:2] == ["--mtu"] and len(head) > 2 else None
        return run_slirp(mtu)
    if head[:1] == ["pasta"]:
        return run_pasta()
    fail(f"unknown mode {' '.join(head)}")
    return 125


COMMAND: list[str] = []

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
