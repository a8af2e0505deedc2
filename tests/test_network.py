"""Stage 6, networking, on this host: lo only without -n; slirp4netns rootless; a veth
pair on the bridge zoo0 as root.

Traffic stays on this machine: the test server listens on 192.168.251.1, an address
the tests give a veth pair of their own in the host's network namespace (and on the
bridge's 10.77.0.1), and the containers connect only to it and to each other.

Rootless networking needs a /dev/net/tun the user may open.  This host's is 0600
(Debian's default, and the grader VM's, is 0666), so the rootless runs happen in a
private mount namespace whose /dev/net is a small tmpfs holding a tun node of the
mode the test wants: the user's zookeeper and its slirp4netns open that one, and the
host's device keeps its mode.  Everything else about the run is the real thing.
"""

import os
import re
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import PARTS, ROOT, Runner, eventually, unpack_rootfs

sys.path.insert(0, str(ROOT / "grader"))
import runner as grader_runner

SERVER_LINK, SERVER_PEER = "zkt0", "zkt1"  # the test's own veth pair
SERVER_ADDRESS = "192.168.251.1"
BRIDGE, BRIDGE_ADDRESS = "zoo0", "10.77.0.1"
SLIRP_ADDRESS = "10.0.2.100"
GREETING = "hello from the test server"

# Run inside the container (the host's Python, no -r): connect, print what the server says.
CLIENT = ("import socket, sys; s = socket.create_connection((sys.argv[1], int(sys.argv[2])), "
          "timeout=5); print(s.recv(100).decode().strip())")
# Inside the container: this container's own address (a UDP connect sends nothing).
MY_ADDRESS = ("import socket; u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); "
              f"u.connect(('{BRIDGE_ADDRESS}', 9)); print(u.getsockname()[0], flush=True)")


def lines(text: str) -> list[str]:
    return text.strip().splitlines()


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


def host_links() -> set[str]:
    """Names of the links in the host's network namespace."""
    return {name.split("@")[0] for name in
            (line.split(": ")[1] for line in lines(ip("-o", "link", "show").stdout))}


def zookeeper_links() -> set[str]:
    return {name for name in host_links() if name == BRIDGE or name.startswith("zv")}


def left_links() -> set[str]:
    """zoo0 and zv<pid> veths that no live container explains: a veth whose container
    (the pid in its name) is gone, and the bridge when no live container's veth is on
    it.  Another user's root container with -n on this machine is not a leftover."""
    names = zookeeper_links()
    live = {n for n in names if n[2:].isdigit() and os.path.exists(f"/proc/{n[2:]}")}
    return names - live - ({BRIDGE} if live else set())


def left_slirps() -> set[int]:
    """slirp4netns processes whose zookeeper is gone (their parent is no longer a
    zookeeper.py): another test's running container keeps its own."""
    done = subprocess.run(["pgrep", "-x", "slirp4netns"], capture_output=True, text=True)
    return {int(pid) for pid in done.stdout.split() if "zookeeper.py" not in parent_cmdline(pid)}


def parent_cmdline(pid: str) -> str:
    try:
        with open(f"/proc/{pid}/stat") as f:
            parent = f.read().rsplit(")", 1)[1].split()[1]
        with open(f"/proc/{parent}/cmdline", "rb") as f:
            return f.read().decode(errors="replace")
    except (OSError, IndexError):
        return ""


def left_tmp_dirs() -> set[str]:
    """/tmp/zoo.* that no running zookeeper holds (its flock(2) lock on the mount
    point): asked as the grader asks (runner.in_use), so another run's live
    container is not counted."""
    return {name for name in os.listdir("/tmp")
            if name.startswith("zoo.") and not grader_runner.in_use(f"/tmp/{name}")}


def with_tun(mode: str, argv: list[str]) -> list[str]:
    """argv, run in a private mount namespace whose /dev/net/tun has this mode."""
    script = ("mount -t tmpfs -o mode=755,size=4k zk-test-tun /dev/net && "
              f"mknod -m {mode} /dev/net/tun c 10 200 && exec \"$@\"")
    return ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *argv]


def zookeeper_argv(runner: Runner, *args: str) -> list[str]:
    return runner.command([runner.python, str(runner.workdir / PARTS[6] / "zookeeper.py"),
                           *args])


def run_rootless(runner: Runner, *args: str, tun: str = "666", env=None, timeout=60):
    """Part 6 as the unprivileged user, with a /dev/net/tun of mode `tun`."""
    return subprocess.run(with_tun(tun, zookeeper_argv(runner, *args)), env=runner.env(env),
                          cwd=runner.workdir, capture_output=True, text=True, timeout=timeout)


class Server:
    """A TCP server on this machine: greets every client, remembers where they came from."""

    def __init__(self, address: str, freebind: bool = False):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if freebind:  # the address appears later (the bridge is made by zookeeper)
            self.sock.setsockopt(socket.SOL_IP, 15, 1)  # IP_FREEBIND, ip(7)
        self.sock.bind((address, 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.peers: list[str] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self):
        while True:
            try:
                conn, peer = self.sock.accept()
            except OSError:
                return
            self.peers.append(peer[0])
            with conn:
                conn.sendall(GREETING.encode() + b"\n")

    def close(self):
        self.sock.close()


@pytest.fixture(scope="module")
def server_net():
    """A veth pair of the test's own, with SERVER_ADDRESS on one end: a non-loopback
    address of this host, reachable by nothing outside it."""
    if SERVER_LINK in host_links():
        ip("link", "del", SERVER_LINK, check=False)
    taken = ip("-o", "addr", "show", "to", SERVER_ADDRESS).stdout.strip()
    assert not taken, f"{SERVER_ADDRESS} is already used on this host: {taken}"
    ip("link", "add", SERVER_LINK, "type", "veth", "peer", "name", SERVER_PEER)
    try:
        ip("addr", "add", f"{SERVER_ADDRESS}/24", "dev", SERVER_LINK)
        ip("link", "set", SERVER_LINK, "up")
        ip("link", "set", SERVER_PEER, "up")
        yield SERVER_ADDRESS
    finally:
        ip("link", "del", SERVER_LINK, check=False)


@pytest.fixture
def server(server_net):
    s = Server(server_net)
    yield s
    s.close()


@pytest.fixture
def shared_tmp():
    """A temporary directory the test user can read (pytest's tmp_path is root's only)."""
    path = Path(tempfile.mkdtemp(prefix="zk-net-test-"))
    path.chmod(0o755)
    yield path
    subprocess.run(["rm", "-rf", str(path)], check=False)


@pytest.fixture
def no_leftovers():
    """Checks after the test that it left no zoo0, zv*, slirp4netns or /tmp/zoo.*.

    Others may run containers on this host meanwhile (other users, other tests): only
    what no running zookeeper holds counts, and each check waits a few seconds for a
    run that is ending to finish its cleanup before it fails."""
    assert eventually(lambda: not left_links()), f"left by an earlier run: {left_links()}"
    slirps, tmps = left_slirps(), left_tmp_dirs()
    yield
    assert eventually(lambda: not left_slirps() - slirps), "slirp4netns left running"
    assert eventually(lambda: not left_links()), f"links left: {left_links()}"
    assert eventually(lambda: not left_tmp_dirs() - tmps), \
        f"temporary directories left: {left_tmp_dirs() - tmps}"


# Without -n -------------------------------------------------------------------------


def test_without_n_only_lo_and_it_is_up(runner: Runner, no_leftovers):
    done = runner.zookeeper(6, "ip", "-o", "link", "show")
    assert done.returncode == 0, done.stderr
    links = lines(done.stdout)
    assert len(links) == 1, done.stdout
    assert links[0].startswith("1: lo: <LOOPBACK,UP,LOWER_UP>")
    # and it carries traffic: a server and a client on 127.0.0.1 inside
    echo = ("import socket; s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen(1); "
            "c = socket.create_connection(s.getsockname(), timeout=5); a, _ = s.accept(); "
            "a.sendall(b'via lo'); print(c.recv(10).decode())")
    done = runner.zookeeper(6, runner.python, "-c", echo)
    assert done.stdout == "via lo\n", done.stderr


def test_without_n_lo_comes_up_without_pyroute2(root_runner: Runner):
    # Explain mode shows the two ioctls, and no import of pyroute2 (~200 ms).
    done = root_runner.zookeeper(6, "-v", "true")
    assert done.returncode == 0, done.stderr
    assert "ioctl(3, SIOCGIFFLAGS, {ifr_name='lo'})" in done.stderr
    assert "SIOCSIFFLAGS" in done.stderr
    assert "pyroute2" not in done.stderr
    assert "slirp4netns" not in done.stderr


# Rootless, with -n: slirp4netns --------------------------------------------------


def test_rootless_reaches_a_host_server_through_slirp4netns(user_runner: Runner, server,
                                                            no_leftovers):
    done = run_rootless(user_runner, "-n", "sh", "-c",
                        f"ip -o -4 addr show; ip route; "
                        f"timeout 20 '{user_runner.python}' -c \"{CLIENT}\" "
                        f"{SERVER_ADDRESS} {server.port}")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert f"eth0    inet {SLIRP_ADDRESS}/24" in out
    assert "lo    inet 127.0.0.1/8" in out
    assert "default via 10.0.2.2 dev eth0" in out
    assert lines(out)[-1] == GREETING
    # slirp4netns's chatter (its WARNING lines) stays out of the container's terminal.
    assert "WARNING" not in out + done.stderr
    assert done.stderr == ""


def test_rootless_the_container_cannot_reach_the_hosts_loopback(user_runner: Runner,
                                                              no_leftovers):
    """slirp4netns opens a connection to whatever address a packet it gets is for, the
    host's 127.0.0.1 too (--disable-host-loopback only stops 10.0.2.2): root in the
    container, rerouting 127.0.0.0/8 to eth0, reached a server the host keeps on its
    loopback.  The container no longer holds CAP_NET_ADMIN or CAP_NET_RAW."""
    local = Server("127.0.0.1")
    try:
        done = run_rootless(user_runner, "-n", "sh", "-c",
                            "grep CapBnd /proc/self/status; "
                            "echo 1 > /proc/sys/net/ipv4/conf/all/route_localnet; "
                            "echo 1 > /proc/sys/net/ipv4/conf/eth0/route_localnet; "
                            "ip addr del 127.0.0.1/8 dev lo; "
                            f"ip route add 127.0.0.0/8 via 10.0.2.2 dev eth0 src {SLIRP_ADDRESS}; "
                            f"timeout 10 '{user_runner.python}' -c \"{CLIENT}\" "
                            f"127.0.0.1 {local.port}; "
                            f"'{user_runner.python}' -c 'import socket; "
                            "socket.socket(socket.AF_PACKET, socket.SOCK_RAW)'")
    finally:
        local.close()
    assert local.peers == [], done.stdout + done.stderr
    bounding = int(lines(done.stdout)[0].split()[1], 16)
    assert not bounding & (1 << 12 | 1 << 13), hex(bounding)  # CAP_NET_ADMIN, CAP_NET_RAW
    assert "RTNETLINK answers: Operation not permitted" in done.stderr
    assert "PermissionError: [Errno 1] Operation not permitted" in done.stderr
    assert GREETING not in done.stdout


def test_rootless_explain_shows_the_course_command(user_runner: Runner, no_leftovers):
    done = run_rootless(user_runner, "-v", "-n", "true")
    assert done.returncode == 0, done.stderr
    assert "slirp4netns --disable-host-loopback --mtu=65521 --enable-sandbox " \
           "--enable-seccomp --enable-ipv6 --ready-fd=" in done.stderr
    assert "slirp4netns is ready" in done.stderr
    assert "kill(" in done.stderr and "(killed by SIGTERM)" in done.stderr
    assert "pyroute2" not in done.stderr  # the rootless path does not need it


def test_rootless_sigterm_stops_slirp4netns(user_runner: Runner, no_leftovers):
    # The caller leaves one more descriptor open to zookeeper (as make's jobserver
    # pipe is): slirp4netns, which outlives nothing but the container, gets none of it.
    caller_read, caller_write = os.pipe()
    zk = subprocess.Popen(with_tun("666", zookeeper_argv(user_runner, "-n", "sleep", "60")),
                          env=user_runner.env(), cwd=user_runner.workdir, pass_fds=(caller_write,),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    os.close(caller_write)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not slirp_of_user(user_runner.uid):
            time.sleep(0.1)
        assert slirp_of_user(user_runner.uid), "slirp4netns never started"
        caller_pipe = f"pipe:[{os.fstat(caller_read).st_ino}]"
        slirp_fds = Path(f"/proc/{slirp_of_user(user_runner.uid)[0]}/fd")
        held = [fd.name for fd in slirp_fds.iterdir() if os.readlink(fd) == caller_pipe]
        assert held == [], f"slirp4netns holds the caller's pipe as fd {held}"
        # Its log may not grow past 1 MiB (a container that broke its own eth0 once
        # made it log 20 MB a second into an unnamed file in /tmp).
        limits = Path(f"/proc/{slirp_of_user(user_runner.uid)[0]}/limits").read_text()
        assert re.search(r"Max file size +1048576 +1048576 ", limits), limits
        assert re.search(r"Max core file size +0 +0 ", limits), limits
        # It parses every packet the container sends, as the user: sandboxed
        # (--enable-sandbox), its / holds only /etc and /run, none of the user's files.
        slirp_root = Path(f"/proc/{slirp_of_user(user_runner.uid)[0]}/root")
        assert set(os.listdir(slirp_root)) <= {"etc", "run"}, os.listdir(slirp_root)
        zk.send_signal(signal.SIGTERM)  # unshare, sh and setpriv exec: this is zookeeper
        zk.wait(timeout=30)
    finally:
        if zk.poll() is None:
            zk.kill()
            zk.wait()
    # sleep, PID 1 of its namespace, ignores SIGTERM: killed after the grace period.
    assert zk.returncode == -signal.SIGKILL, zk.stderr.read()
    os.close(caller_read)


def slirp_of_user(uid: int) -> list[str]:
    done = subprocess.run(["pgrep", "-u", str(uid), "-x", "slirp4netns"], capture_output=True,
                          text=True)
    return done.stdout.split()


def test_rootless_missing_slirp4netns_is_one_line(user_runner: Runner, shared_tmp,
                                                   no_leftovers):
    # A PATH with only setpriv (to become the user) and the id map tools: no slirp4netns.
    bin_dir = shared_tmp / "bin"
    bin_dir.mkdir()
    for tool in ("setpriv", "newuidmap", "newgidmap"):
        (bin_dir / tool).symlink_to(f"/usr/bin/{tool}")
    done = user_runner.zookeeper(6, "-n", "true", env={"PATH": str(bin_dir)})
    assert done.returncode == 125
    assert lines(done.stderr) == [f"zookeeper: slirp4netns not found in PATH ({bin_dir}): "
                                  "install the slirp4netns package (sudo apt-get install "
                                  "slirp4netns), or put its directory in PATH"]
    assert done.stdout == ""


def test_rootless_unusable_tun_is_one_line(user_runner: Runner, no_leftovers):
    done = run_rootless(user_runner, "-n", "true", tun="600")
    assert done.returncode == 125
    assert lines(done.stderr) == [
        "zookeeper: failed to use /dev/net/tun: not readable and writable by you (mode "
        "0600); slirp4netns needs it: sudo chmod 0666 /dev/net/tun (Debian's default)"]


def test_rootless_slirp4netns_failure_shows_its_words(user_runner: Runner, shared_tmp,
                                                      no_leftovers):
    # A slirp4netns that fails the way the real one does when it cannot make its TAP.
    bin_dir = shared_tmp / "bin"
    bin_dir.mkdir(mode=0o755)
    fake = bin_dir / "slirp4netns"
    fake.write_text("#!/bin/sh\necho 'WARNING: Support for seccomp is experimental' >&2\n"
                    "echo 'open(\"/dev/net/tun\"): Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    done = run_rootless(user_runner, "-n", "echo", "never",
                        env={"PATH": f"{bin_dir}:/usr/sbin:/usr/bin:/sbin:/bin"})
    assert done.returncode == 125
    assert lines(done.stderr) == ['zookeeper: slirp4netns failed (exit status 1): '
                                  'open("/dev/net/tun"): Operation not permitted']
    assert done.stdout == ""


def test_rootless_resolv_conf_points_at_slirp_dns(user_runner: Runner, rootfs_tar, shared_tmp,
                                                  no_leftovers):
    # (conftest's tarball sits under pytest's root-only temp dir: copy it where the
    # test user can read it.)
    tar = shared_tmp / "zoo-fs.tar"
    shutil.copyfile(rootfs_tar, tar)
    tar.chmod(0o644)
    rootfs = unpack_rootfs(user_runner, tar, shared_tmp / "fs" / "zoo-fs")
    resolv = rootfs / "etc" / "resolv.conf"
    subprocess.run(["rm", "-f", str(resolv)], check=True)
    # -o: the file is there inside, in the throwaway overlay; the directory is unchanged.
    done = run_rootless(user_runner, "-r", str(rootfs), "-o", "-n", "cat", "/etc/resolv.conf")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "nameserver 10.0.2.3\n"
    assert not os.path.lexists(resolv)
    # Without -o: written into the rootfs, as the course's echo > /etc/resolv.conf would.
    done = run_rootless(user_runner, "-r", str(rootfs), "-n", "cat", "/etc/resolv.conf")
    assert done.returncode == 0, done.stderr
    assert done.stdout == "nameserver 10.0.2.3\n"
    # A rootfs with its own resolv.conf keeps it.
    resolv.unlink()
    resolv.write_text("nameserver 192.168.251.1\n")
    done = run_rootless(user_runner, "-r", str(rootfs), "-n", "cat", "/etc/resolv.conf")
    assert done.stdout == "nameserver 192.168.251.1\n", done.stderr


# As root, with -n: a veth pair on the bridge zoo0 ---------------------------------


def test_root_veth_reaches_the_bridge_and_the_host(root_runner: Runner, server_net,
                                                   no_leftovers):
    on_bridge = Server(BRIDGE_ADDRESS, freebind=True)
    on_host = Server(server_net)
    try:
        done = root_runner.zookeeper(
            6, "-n", "sh", "-c",
            f"ip -o -4 addr show; ip route; "
            f"timeout 20 '{root_runner.python}' -c \"{CLIENT}\" {BRIDGE_ADDRESS} "
            f"{on_bridge.port}; "
            f"timeout 20 '{root_runner.python}' -c \"{CLIENT}\" {SERVER_ADDRESS} {on_host.port}")
    finally:
        on_bridge.close()
        on_host.close()
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "eth0    inet 10.77.0." in out
    assert f"default via {BRIDGE_ADDRESS} dev eth0" in out
    assert lines(out)[-2:] == [GREETING, GREETING]
    # The servers saw the container's own address: no NAT on the way.
    container_address = out.split("eth0    inet ")[1].split("/")[0]
    assert on_bridge.peers == [container_address]
    assert on_host.peers == [container_address]


def test_root_two_containers_get_distinct_addresses_and_reach_each_other(
        root_runner: Runner, no_leftovers):
    listener = ("import socket; s = socket.socket(); s.bind(('0.0.0.0', 7777)); s.listen(1); "
                + MY_ADDRESS.replace("import socket; ", "")
                + "; c, peer = s.accept(); c.sendall(b'hello from the first container'); "
                "print(peer[0], flush=True)")
    first = root_runner.popen(6, "-n", "timeout", "30", root_runner.python, "-c", listener,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([first.stdout], [], [], 20)
        assert ready, "the first container did not start"
        first_address = first.stdout.readline().strip()
        assert first_address.startswith("10.77.0."), first.stderr
        second = root_runner.zookeeper(
            6, "-n", "sh", "-c",
            f"'{root_runner.python}' -c \"{MY_ADDRESS}\"; "
            f"timeout 20 '{root_runner.python}' -c \"{CLIENT}\" {first_address} 7777")
        assert second.returncode == 0, second.stderr
        second_address, said = lines(second.stdout)
        out, err = first.communicate(timeout=20)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert first.returncode == 0, err
    assert second_address.startswith("10.77.0.") and second_address != first_address
    assert said == "hello from the first container"
    assert out.strip() == second_address  # the first saw the second's own address


def test_root_racing_containers_get_distinct_addresses(root_runner: Runner, no_leftovers):
    # Started together: the lock serialises their setup; each holds its address while it
    # sleeps, so all three are taken at once.
    procs = [root_runner.popen(6, "-n", "sh", "-c",
                               f"'{root_runner.python}' -c \"{MY_ADDRESS}\"; sleep 2",
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(3)]
    results = [p.communicate(timeout=60) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err
    addresses = [out.strip() for out, _ in results]
    assert len(set(addresses)) == 3, addresses
    assert all(a.startswith("10.77.0.") for a in addresses)


def test_root_sigterm_removes_the_veth(root_runner: Runner, no_leftovers):
    zk = root_runner.popen(6, "-n", "sleep", "60", stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and "zv" not in "".join(zookeeper_links()):
            time.sleep(0.1)
        assert f"zv{zk_child_pid(zk.pid)}" in zookeeper_links()
        zk.send_signal(signal.SIGTERM)
        zk.wait(timeout=30)
    finally:
        if zk.poll() is None:
            zk.kill()
            zk.wait()
    assert zk.returncode == -signal.SIGKILL, zk.stderr.read()


def zk_child_pid(pid: int) -> int:
    """The container: zookeeper's child (its only one while the container runs)."""
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return int(f.read().split()[0])


@pytest.mark.parametrize("kind, said", [
    (["veth", "peer", "name", "zkt-other"],
     "zoo0 exists and is not a bridge (it is a veth that zookeeper did not make): remove it "
     "(ip link del zoo0)"),
    (["bridge"],
     "zoo0 exists and zookeeper did not make it (its alias is not 'zookeeper'): zookeeper "
     "will not change it; remove it if it is no one's (ip link del zoo0)")])
def test_root_a_zoo0_zookeeper_did_not_make_is_left_alone(root_runner: Runner, kind, said):
    # Someone else's zoo0: zookeeper says so, and touches nothing (it once gave their
    # bridge 10.77.0.1 and plugged its containers into it).
    ip("link", "add", BRIDGE, "type", *kind)
    try:
        before = host_links()
        done = root_runner.zookeeper(6, "-n", "echo", "never")
        assert done.returncode == 125
        assert lines(done.stderr) == [f"zookeeper: {said}"]
        assert done.stdout == ""
        assert host_links() == before  # no zv* left, and their zoo0 is still there
        assert ip("-o", "-4", "addr", "show", "dev", BRIDGE).stdout == ""  # no 10.77.0.1
    finally:
        ip("link", "del", BRIDGE, check=False)


def test_root_bridge_stays_while_another_container_uses_it(root_runner: Runner, no_leftovers):
    long = root_runner.popen(6, "-n", "sh", "-c", "echo up; sleep 30",
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    container = None
    try:
        ready, _, _ = select.select([long.stdout], [], [], 20)
        assert ready and long.stdout.readline() == "up\n"
        container = zk_child_pid(long.pid)
        short = root_runner.zookeeper(6, "-n", "true")
        assert short.returncode == 0, short.stderr
        links = zookeeper_links()
        assert links == {BRIDGE, f"zv{container}"}, links  # the short one's veth is gone
        # Nothing that comes in on the bridge is routed on to elsewhere, and the host
        # takes no IPv6 from it (a container's router advertisement once became the
        # host's default route).
        assert Path(f"/proc/sys/net/ipv4/conf/{BRIDGE}/forwarding").read_text() == "0\n"
        assert Path(f"/proc/sys/net/ipv6/conf/{BRIDGE}/disable_ipv6").read_text() == "1\n"
        # That switch is every interface's again once anyone writes ip_forward (dockerd,
        # sysctl --system): a policy rule refuses to route from the bridge for good.
        assert f"iif {BRIDGE} prohibit" in ip("rule", "show", "pref", "1").stdout
        # No multicast snooping, whose table one container could fill (4096 groups)
        # to have the kernel turn it off for every container.
        assert "mcast_snooping 0" in ip("-d", "link", "show", BRIDGE).stdout
    finally:
        long.kill()  # SIGKILL to zookeeper: its container and veth outlive it...
        long.wait()
        if container:  # ...until the container dies, and the kernel removes its veth.
            os.kill(container, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(n.startswith("zv") for n in zookeeper_links()):
        time.sleep(0.1)
    assert not [n for n in zookeeper_links() if n.startswith("zv")]
    # The bridge is left with no port: the next container's exit removes it, and its
    # rule with it.
    assert root_runner.zookeeper(6, "-n", "true").returncode == 0
    assert BRIDGE not in zookeeper_links()
    assert ip("rule", "show", "pref", "1").stdout == ""


def test_root_the_rule_goes_when_zoo0_went_another_way(root_runner: Runner, no_leftovers):
    """`ip link del zoo0` (which a message of ours advises) while a container runs:
    the rule once stayed, "[detached]", until some later root -n run."""
    long = root_runner.popen(6, "-n", "sh", "-c", "echo up; read x", stdin=subprocess.PIPE,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        ready, _, _ = select.select([long.stdout], [], [], 20)
        assert ready and long.stdout.readline() == "up\n"
        assert ip("rule", "show", "pref", "1").stdout != ""
        ip("link", "del", BRIDGE)
        long.communicate("\n", timeout=30)
    finally:
        if long.poll() is None:
            long.kill()
            long.wait()
    assert ip("rule", "show", "pref", "1").stdout == ""


def test_root_a_zoo0new_in_use_is_never_taken(root_runner: Runner, no_leftovers):
    """An unmarked bridge named zoo0new that is up with an address is someone's, not
    what a killed run left (that one is down, portless and addressless)."""
    ip("link", "add", "zoo0new", "type", "bridge")
    try:
        ip("addr", "add", "192.168.99.1/24", "dev", "zoo0new")
        ip("link", "set", "zoo0new", "up")
        done = root_runner.zookeeper(6, "-n", "true")
        assert done.returncode == 125
        assert "zoo0new" in host_links()
    finally:
        ip("link", "del", "zoo0new", check=False)


@pytest.mark.parametrize("kind, alias, works", [
    (["bridge"], None, True),  # killed between creating the bridge and marking it
    (["bridge"], "zookeeper", True),  # killed between marking it and its new name
    (["veth", "peer", "name", "zkt-new"], None, False), (["bridge"], "theirs", False)])
def test_root_a_bridge_a_killed_run_left_half_made_is_taken_away(root_runner: Runner, kind,
                                                                 alias, works, no_leftovers):
    """zoo0 is made as zoo0new, marked as zookeeper's, then renamed: made as zoo0 and
    marked after, a run killed in between left an unmarked zoo0 that every later
    root -n run refused as someone else's.  What such a run leaves is zoo0new, taken
    away by the next run, unless it is not a bridge left by zookeeper."""
    ip("link", "add", "zoo0new", "type", *kind)
    try:
        if alias:
            ip("link", "set", "zoo0new", "alias", alias)
        done = root_runner.zookeeper(6, "-n", "true")
        if works:
            assert (done.returncode, done.stderr) == (0, "")
            assert "zoo0new" not in host_links()
        else:
            assert done.returncode == 125
            assert lines(done.stderr) == ["zookeeper: zoo0new exists and is not a bridge "
                                          "zookeeper left: zookeeper will not change it"]
            assert "zoo0new" in host_links()
    finally:
        ip("link", "del", "zoo0new", check=False)


RESOLV_CONF_THROUGH_A_LINK = """
import os, subprocess, sys, types
sys.path.insert(0, sys.argv[1])
import network
rootfs, host_dir = sys.argv[2], sys.argv[3]
subprocess.run(["mount", "--bind", "/proc", rootfs + "/proc"], check=True)
fd = os.open(host_dir, os.O_RDONLY | os.O_DIRECTORY)  # one left open, as a caller might
os.symlink(f"/proc/self/fd/{fd}/.", rootfs + "/etc")
os.chroot(rootfs)
os.chdir("/")
slirp = network.Slirp.__new__(network.Slirp)
slirp.opts = types.SimpleNamespace(rootfs="/the/rootfs")
slirp.provide_resolv_conf()
"""


@pytest.mark.skipif(os.geteuid() != 0, reason="chroot and a mount namespace need root")
def test_resolv_conf_is_never_written_through_an_fd_of_the_hosts(tmp_path):
    """An /etc that links to /proc/self/fd/N/. (N: any fd still open in the child)
    would lead resolv.conf out to the host's directory: /etc is opened through no
    such link, and the container is told it cannot have one."""
    rootfs, host_dir = tmp_path / "rootfs", tmp_path / "host-only"
    (rootfs / "proc").mkdir(parents=True)
    host_dir.mkdir()
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", sys.executable,
                           "-c", RESOLV_CONF_THROUGH_A_LINK, str(ROOT / PARTS[6]),
                           str(rootfs), str(host_dir)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert not (host_dir / "resolv.conf").exists()
    assert "could not write /etc/resolv.conf" in done.stderr, done.stderr
