# zookeeper-source: stage=6
"""Networking: a way out of the container's network namespace.

A new network namespace (network_namespaces(7)) holds one interface, the loopback
`lo`, and it is down.  zookeeper brings `lo` up in every container; with -n it also
gives the container an `eth0`:

- Rootless, through slirp4netns(1), as rootless Podman does.  The helper joins the
  container's user and network namespaces, makes a TAP interface `eth0` there
  (10.0.2.100/24, gateway 10.0.2.2, DNS 10.0.2.3), and carries the container's
  packets as ordinary sockets of the host: no privilege needed, only a
  /dev/net/tun that you may read and write.
- As root, through a veth pair (veth(4)): two linked interfaces, `zv<pid>` on the
  host, plugged into the bridge `zoo0` (10.77.0.1/24), and `eth0` in the container,
  with its own 10.77.0.N/24 and a default route through the bridge.  Made with
  netlink (rtnetlink(7)) through pyroute2, as `ip link` would.  There is no NAT,
  and forwarding is off for packets that come in on zoo0: containers reach the
  host and each other, not the world beyond this machine.

Three networks, then, one class each with the methods of Network (below): LoopbackOnly,
Slirp and Bridged.  prepare() makes the one that -n and the user call for; container.py
calls its methods and never asks which one it got.
"""

import errno
import fcntl
import importlib.util
import os
import resource
import select
import signal
import struct
import sys
import time
from abc import ABC, abstractmethod

import idmap
import kernel
import programs
from errors import ZooError, step, warn

IFF_UP = 0x1  # netdevice(7): the interface's "up" flag

# Rootless: slirp4netns and the network it makes.
SLIRP_READY_SECONDS = 20  # generous: the grader's VM emulates the CPU
SLIRP_DNS = "10.0.2.3"
LOG_LIMIT = 1 << 20  # bytes of slirp4netns' chatter (limit_log)
TUN = "/dev/net/tun"

# As root: the bridge every container is plugged into, and the containers' addresses.
BRIDGE = "zoo0"
NEW_BRIDGE = BRIDGE + "new"  # its name while it is being made (ensure_bridge)
SUBNET = "10.77.0."  # a /24: the bridge is .1, containers get .2 to .254
BRIDGE_ADDRESS = SUBNET + "1"
PREFIX = 24
# The links zookeeper makes carry this alias (ip link show prints it): the bridge
# "zookeeper", a container's veth "zookeeper 10.77.0.N".  So the kernel itself records
# which bridge is ours and which addresses are taken: a veth disappears with its
# container's network namespace, and its address with it, even if zookeeper was killed.
OWNER = "zookeeper"
# One zookeeper at a time changes the bridge and picks an address (flock(2)).  The
# empty file stays, as /run/xtables.lock does for iptables.
LOCK_PATH = "/run/zookeeper/network.lock"


class Network(ABC):
    """What container.py asks of a container's network, whichever of the three it is.

    The split is netavark's (Podman's network back end): each of its drivers
    validates its options, sets the network up and tears it down (the NetworkDriver
    trait), and get_network_driver() picks the driver once, so that nothing after it
    asks which one it has.  Here the constructor validates, before clone, start()
    sets up and stop() tears down:

        net = prepare(opts)        parent, before clone: checks only, nothing made yet
        stop = net.start(pid)      parent, after the id maps, before go
        net.configure_inside()     the container, after go, before pivot_root
        net.provide_resolv_conf()  the container, after pivot_root
        stop()                     parent, after the container, or on a failure
    """

    @abstractmethod
    def start(self, pid: int):
        """Set up the network of the container `pid`; returns stop.  A failure part
        way through undoes what was done before it is raised."""

    @abstractmethod
    def stop(self) -> None:
        """Undo start(), or what a failed start() did; safe to call twice."""

    def configure_inside(self) -> None:
        """The container's side, the same in all three: bring its lo up (slirp4netns
        does it too; one ioctl makes sure), and let ping work without raw sockets."""
        bring_up("lo")
        allow_ping_sockets()

    @abstractmethod
    def provide_resolv_conf(self) -> None:
        """Give the container an /etc/resolv.conf naming the network's DNS server, if
        it has one and the container's rootfs has no such file."""


def prepare(opts) -> Network:
    """Parent, before clone: the network -n asks for, checked now so a failure leaves
    nothing."""
    if not opts.network:
        return LoopbackOnly()
    if idmap.is_host_root():
        return Bridged()
    return Slirp(opts)


def bring_up(name: str) -> None:
    """Set an interface's IFF_UP flag, as `ip link set lo up` does, with two ioctls on
    any socket of this network namespace (netdevice(7)).  No netlink library: importing
    pyroute2 takes about 200 ms, and every container needs lo."""
    with step(f"bring {name} up"):
        fd = kernel.sys_socket(kernel.AF_INET, kernel.SOCK_DGRAM)
        try:
            # struct ifreq: char ifr_name[16], then a 24-byte union whose first
            # member is short ifr_flags.
            ifreq = kernel.sys_ioctl(fd, kernel.SIOCGIFFLAGS,
                                     struct.pack("16sH22x", name.encode(), 0),
                                     f"{{ifr_name={name!r}}}")
            flags = struct.unpack_from("16sH", ifreq)[1]
            if not flags & IFF_UP:
                kernel.sys_ioctl(fd, kernel.SIOCSIFFLAGS,
                                 struct.pack("16sH22x", name.encode(), flags | IFF_UP),
                                 f"{{ifr_name={name!r}, ifr_flags={flags:#x}|IFF_UP}}")
        finally:
            os.close(fd)


def allow_ping_sockets() -> None:
    """Let ping work without CAP_NET_RAW, which the container gives up with the other
    capabilities (security.py, since stage 3): ping then uses an ICMP datagram
    socket, which net.ipv4.ping_group_range must allow to its group (icmp(7)); Docker
    opens it to every group."""
    try:
        kernel.write_file("/proc/sys/net/ipv4/ping_group_range", f"0 {last_group()}",
                          "icmp(7)")
    except OSError as e:  # /proc/sys read-only (zookeeper in another container): no ping
        warn(f"ping will not work in the container: cannot open it to its groups "
             f"({e.strerror})")


def last_group() -> int:
    """The highest group id of the container's (its gid_map's ranges: the kernel takes
    no range for ping beyond them, user_namespaces(7), nor above 2**31 - 1)."""
    with open("/proc/self/gid_map") as f:
        highest = max(int(inside) + int(count) - 1 for inside, _, count in map(str.split, f))
    return min(highest, 2**31 - 1)


# Without -n: the loopback interface only -----------------------------------------


class LoopbackOnly(Network):
    """No -n: the container talks to itself on lo, and to nothing else.  Nothing to
    start or stop on the host."""

    def start(self, pid: int):
        return self.stop

    def stop(self) -> None:
        pass

    def provide_resolv_conf(self) -> None:
        pass  # no network, no DNS server


# Rootless, with -n: slirp4netns -------------------------------------------------


class Slirp(Network):
    """slirp4netns for one container: started before go, stopped after exit."""

    def __init__(self, opts):
        self.opts = opts
        self.pid = None  # slirp4netns, while it runs
        self.exit_write = None  # our end of its --exit-fd: closing it tells it to exit
        self.log = None  # its stdout and stderr
        programs.require("slirp4netns", "slirp4netns")
        check_tun()

    def start(self, pid: int):
        """Start slirp4netns for the container `pid` and wait until its eth0 is up."""
        with step("make slirp4netns's log and pipes"):
            self.log = open_log()
            ready_read, ready_write = os.pipe()
            try:
                exit_read, self.exit_write = os.pipe()
            except OSError:
                os.close(ready_read)
                os.close(ready_write)
                raise
        try:
            try:
                # STUDENT CODE BELOW (q20)
                # Start slirp4netns for the container.  The course's command (-c PID eth0
                # and its five flags), plus --ready-fd=ready_write (it writes "1" there once
                # eth0 is up) and --exit-fd=exit_read (it exits when our end closes).
                # slirp4netns(1).  programs.spawn(argv, self.log, keep=(ready_write,
                # exit_read)) runs it with posix_spawnp(3), handing it those two
                # descriptors (the others close on exec); keep its pid in self.pid,
                # which wait_until_ready() and stop() use.
                # --enable-sandbox: slirp4netns parses every packet the container
                # sends, as you, outside the container; sandboxed it sees an empty
                # root with only /etc and /run, not your files (as Podman runs it).
                argv = ["slirp4netns", "--disable-host-loopback", "--mtu=65521",
                        "--enable-sandbox", "--enable-seccomp", "--enable-ipv6",
                        f"--ready-fd={ready_write}", f"--exit-fd={exit_read}",
                        "-c", str(pid), "eth0"]
                self.pid = programs.spawn(argv, self.log, keep=(ready_write, exit_read))
                # STUDENT CODE ABOVE (q20)
            finally:
                # slirp4netns holds its own copies now.  With ours closed, its end shows
                # as end-of-file on ready_read, and ours (even if zookeeper is killed)
                # as end-of-file on its exit fd.
                os.close(ready_write)
                os.close(exit_read)
            limit_log(self.pid)
            self.wait_until_ready(ready_read)
        except BaseException:
            self.stop()
            raise
        finally:
            os.close(ready_read)
        return self.stop

    def wait_until_ready(self, ready_read: int) -> None:
        """Block until slirp4netns writes to its ready fd, exits, or takes too long."""
        started = time.monotonic()
        poller = select.poll()
        poller.register(ready_read, select.POLLIN)
        if not poller.poll(SLIRP_READY_SECONDS * 1000):
            kernel.explain("poll(ready-fd)", "timeout", "poll(2)", started)
            raise ZooError(f"slirp4netns was not ready after {SLIRP_READY_SECONDS} s"
                           f"{last_words(self.log)}")
        if os.read(ready_read, 1) == b"1":
            kernel.explain("read(ready-fd)", '"1": slirp4netns is ready', "slirp4netns(1)",
                           started)
            return
        # End of file: slirp4netns exited.  Reap it here to tell how.
        pid, self.pid = self.pid, None
        status = kernel.sys_waitpid(pid)
        how = (f"killed by signal {os.WTERMSIG(status)}" if os.WIFSIGNALED(status)
               else f"exit status {os.waitstatus_to_exitcode(status)}")
        raise ZooError(f"slirp4netns failed ({how}){last_words(self.log)}")

    def stop(self) -> None:
        """Stop slirp4netns if it runs and close what start() opened; safe to call twice."""
        try:
            if self.pid is not None:
                pid, self.pid = self.pid, None
                # STUDENT CODE BELOW (q21)
                # Stop slirp4netns: send it SIGTERM with kill(2), then reap it with
                # waitpid(2), or it stays a zombie.  kernel.sys_kill(), kernel.sys_waitpid().
                kernel.sys_kill(pid, signal.SIGTERM)
                kernel.sys_waitpid(pid)
                # STUDENT CODE ABOVE (q21)
        finally:
            for fd in (self.exit_write, self.log):
                if fd is not None:
                    os.close(fd)
            self.exit_write = self.log = None

    def provide_resolv_conf(self) -> None:
        """Point the container's DNS at slirp4netns (10.0.2.3) when its rootfs has no
        /etc/resolv.conf (resolv.conf(5)).

        This runs after pivot_root, so /etc is the container's: with -r DIR the file
        stays in DIR after the container, as the course's `echo nameserver ... >
        /etc/resolv.conf` would; with -o it lands in the throwaway overlay.  Without -r
        the container shares the host's files, and the host's resolv.conf is none of our
        business.
        """
        path = "/etc/resolv.conf"
        if not self.opts.rootfs:
            return
        started = time.monotonic()
        text = f"nameserver {SLIRP_DNS}\n"
        try:
            fd = create_in_etc("resolv.conf")
        except FileExistsError:
            return  # the rootfs has one: the container's own, or a link it made
        except OSError as e:
            kernel.explain_error(f"write({path})", e, "resolv.conf(5)", started)
            warn(f"could not write {path}: {e.strerror}: host names will not resolve")
            return
        try:
            os.write(fd, text.encode())
        finally:
            os.close(fd)
        kernel.explain(f"write({path}, {text.strip()!r})", "ok", "resolv.conf(5)", started)


def create_in_etc(name: str) -> int:
    """A new file in the container's /etc, for writing.  openat2(2) walks to /etc
    through no /proc/self/fd/N link (RESOLVE_NO_MAGICLINKS): an /etc linked through
    an fd still open in us would lead out to the host's files.  O_EXCL: never through
    a symlink, never over a file that is already there."""
    root = os.open("/", os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        etc = kernel.sys_openat2(root, "etc", os.O_PATH | os.O_DIRECTORY,
                                 kernel.RESOLVE_NO_MAGICLINKS)
    finally:
        os.close(root)
    try:
        return os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                       | os.O_CLOEXEC, 0o644, dir_fd=etc)
    finally:
        os.close(etc)


def check_tun() -> None:
    """slirp4netns opens /dev/net/tun as you (root in the container does not own it)."""
    try:
        mode = os.stat(TUN).st_mode & 0o777
    except OSError as e:
        raise ZooError(f"failed to use {TUN}: {e.strerror}; slirp4netns needs the tun "
                       "device (sudo modprobe tun)") from None
    if not os.access(TUN, os.R_OK | os.W_OK):
        raise ZooError(f"failed to use {TUN}: not readable and writable by you (mode "
                       f"{mode:04o}); slirp4netns needs it: sudo chmod 0666 {TUN} "
                       "(Debian's default)")


def open_log() -> int:
    """A file for slirp4netns' chatter, kept out of the container's terminal: an unnamed
    file in the temp directory (O_TMPFILE, open(2)), gone with its last descriptor."""
    tmp = os.environ.get("TMPDIR") or "/tmp"
    try:
        return os.open(tmp, os.O_TMPFILE | os.O_RDWR | os.O_CLOEXEC, 0o600)
    except OSError:
        return os.open(os.devnull, os.O_WRONLY | os.O_CLOEXEC)


def limit_log(pid: int) -> None:
    """Let slirp4netns write at most LOG_LIMIT bytes to its log: past that the kernel
    stops it (SIGXFSZ, no core: setrlimit(2)).  It says a few lines; a container that
    breaks its own eth0 makes it spin and log the same failure without end, into a
    file that takes the temp directory's space and shows in no directory listing."""
    with step("limit slirp4netns' log"):
        # Never above the hard limit it has from us: only root may raise that.
        hard = resource.getrlimit(resource.RLIMIT_FSIZE)[1]
        kernel.sys_prlimit(pid, kernel.RLIMIT_FSIZE,
                           LOG_LIMIT if hard == resource.RLIM_INFINITY else min(LOG_LIMIT, hard))
        kernel.sys_prlimit(pid, kernel.RLIMIT_CORE, 0)


def last_words(log: int | None) -> str:
    """': <what slirp4netns said last>', its warnings left out, or ''."""
    try:
        os.lseek(log, 0, os.SEEK_SET)
        text = os.read(log, 1 << 16).decode(errors="replace")
    except (OSError, TypeError):
        return ""
    lines = [x.strip() for x in text.splitlines()
             if x.strip() and not x.startswith("WARNING:")]
    return ": " + "; ".join(lines[-2:]) if lines else ""


# As root, with -n: a veth pair on the bridge zoo0 ---------------------------------


class Bridged(Network):
    """A veth pair for one container, its host end on the bridge zoo0.

    The parent does all of it, before go: it is root on the host, where the bridge and
    the host end live, and it creates the other end straight inside the container's
    network namespace (found by pid), then configures it there through a netlink
    socket opened in that namespace.  The container only brings its lo up.
    (The container could configure eth0 itself, as root of its own namespaces, but the
    address is picked after clone, and its copy of this object predates that.)
    """

    def __init__(self):
        self.host_end = None  # (zv<pid>, its index), once we made it
        self.started = False
        if importlib.util.find_spec("pyroute2") is None:
            raise ZooError("pyroute2 not found: install it (pip install -r requirements.txt)")

    def start(self, pid: int):
        """Plug the container into the bridge; returns stop."""
        IPRoute = import_pyroute2()
        self.started = True
        name = f"zv{pid}"
        try:
            with host_lock(), IPRoute() as ipr:
                bridge = ensure_bridge(ipr)
                address = free_address(ipr)
                netlink(f"create the veth pair {name}/eth0",
                        f"ip link add {name} type veth peer name eth0 netns {pid}",
                        ipr.link, "add", ifname=name, kind="veth",
                        peer={"ifname": "eth0", "net_ns_pid": pid})
                index = ipr.link_lookup(ifname=name)[0]
                self.host_end = (name, index)  # ours now: stop() removes it
                alias = f"{OWNER} {address}"  # the kernel sets an alias on change, not on add
                netlink(f"plug {name} into {BRIDGE}",
                        f"ip link set {name} alias '{alias}' master {BRIDGE} up",
                        ipr.link, "set", index=index, ifalias=alias, master=bridge, state="up")
                configure_eth0(IPRoute, pid, address)
        except BaseException:
            self.stop()
            raise
        return self.stop

    def stop(self) -> None:
        """Remove our veth, and the bridge if no container uses it any more."""
        if not self.started:
            return
        self.started = False
        IPRoute = import_pyroute2()
        with host_lock(), IPRoute() as ipr:
            if self.host_end:
                # By its index, and only while it has the name we gave it: once our
                # container is gone, so is our veth, and a new container given the same
                # pid has a zv<pid> of its own (the kernel does not reuse an index soon).
                name, index = self.host_end
                if index in ipr.link_lookup(ifname=name):
                    # Both ends go: eth0 too, if the container still runs.
                    netlink(f"remove {name}", f"ip link del {name}",
                            ipr.link, "del", index=index, ignore=errno.ENODEV)
                self.host_end = None
            remove_unused_bridge(ipr)

    def provide_resolv_conf(self) -> None:
        pass  # no DNS server: the bridge leads to this machine only


def import_pyroute2():
    """pyroute2's IPRoute, imported on first use (it takes ~200 ms: explain mode shows it)."""
    started, first = time.monotonic(), "pyroute2" not in sys.modules
    from pyroute2 import IPRoute

    if first:
        kernel.explain("import pyroute2", "ok", "", started)
    return IPRoute


class host_lock:
    """Hold /run/zookeeper/network.lock (flock(2)), released when the block ends or
    zookeeper dies: another container's setup or cleanup waits for ours."""

    def __enter__(self):
        started = time.monotonic()
        with step(f"lock {LOCK_PATH}"):
            os.makedirs(os.path.dirname(LOCK_PATH), mode=0o755, exist_ok=True)
            self.fd = os.open(LOCK_PATH, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX)
            except OSError:
                os.close(self.fd)
                raise
        kernel.explain(f"flock({LOCK_PATH}, LOCK_EX)", "0", "flock(2)", started)
        return self

    def __exit__(self, *exc):
        os.close(self.fd)  # releases the lock
        return False


def netlink(what: str, shown: str, request, *args, ignore: int = 0, **kwargs):
    """Send one rtnetlink(7) request through pyroute2, explained as the ip(8) command
    that does the same.  A refusal becomes 'failed to <what>: <strerror>' (the errno
    `ignore` is no failure: what was to be removed is gone already)."""
    from pyroute2 import NetlinkError

    started = time.monotonic()
    try:
        result = request(*args, **kwargs)
    except NetlinkError as e:
        err = OSError(e.code, os.strerror(e.code))
        kernel.explain_error(shown, err, "rtnetlink(7)", started)
        if e.code == ignore:
            return None
        raise ZooError(f"failed to {what}: {err.strerror}") from None
    kernel.explain(shown, "0", "rtnetlink(7)", started)
    return result


def link_kind(link) -> str | None:
    info = link.get_attr("IFLA_LINKINFO")
    return info.get_attr("IFLA_INFO_KIND") if info else None


def left_unfinished(ipr, index: int) -> bool:
    """Whether the link at index is a NEW_BRIDGE a killed run left: a bridge marked
    ours, or an unmarked one as `ip link add` made it (down, no port, no address).
    An unmarked bridge that is up, has a port or an address is someone's in use."""
    link = ipr.get_links(index)[0]
    if link_kind(link) != "bridge":
        return False
    alias = link.get_attr("IFLA_IFALIAS")
    if alias == OWNER:
        return True
    return (alias is None and not link["flags"] & IFF_UP and not has_ports(ipr, index)
            and not ipr.get_addr(index=index))


def has_ports(ipr, index: int) -> bool:
    """Whether any link is plugged into the bridge at index (its IFLA_MASTER)."""
    return any(link.get_attr("IFLA_MASTER") == index for link in ipr.get_links())


def ensure_bridge(ipr) -> int:
    """The bridge's index: zoo0, made if absent, with 10.77.0.1/24, up."""
    found = ipr.link_lookup(ifname=BRIDGE)
    if not found:
        # Made under another name, marked, then renamed: zoo0 never exists unmarked.
        # (Made as zoo0 and marked after, a zookeeper killed in between left a zoo0
        # that every later run refused as someone else's.)  A NEW_BRIDGE left by such
        # a run (a bridge, unmarked or marked ours) was never used: removed first.
        for stale in ipr.link_lookup(ifname=NEW_BRIDGE):
            if not left_unfinished(ipr, stale):
                raise ZooError(f"{NEW_BRIDGE} exists and is not a bridge zookeeper left: "
                               "zookeeper will not change it")
            netlink(f"remove the unfinished bridge {NEW_BRIDGE}", f"ip link del {NEW_BRIDGE}",
                    ipr.link, "del", index=stale, ignore=errno.ENODEV)
        netlink(f"create the bridge {NEW_BRIDGE}", f"ip link add {NEW_BRIDGE} type bridge",
                ipr.link, "add", ifname=NEW_BRIDGE, kind="bridge")
        new = ipr.link_lookup(ifname=NEW_BRIDGE)[0]
        netlink(f"mark {NEW_BRIDGE} as zookeeper's", f"ip link set {NEW_BRIDGE} alias {OWNER}",
                ipr.link, "set", index=new, ifalias=OWNER)
        netlink(f"name it {BRIDGE}", f"ip link set {NEW_BRIDGE} name {BRIDGE}",
                ipr.link, "set", index=new, ifname=BRIDGE)
        found = [new]
    index = found[0]
    link = ipr.get_links(index)[0]
    if link_kind(link) != "bridge":
        raise ZooError(f"{BRIDGE} exists and is not a bridge (it is a {link_kind(link) or 'device'}"
                       f" that zookeeper did not make): remove it (ip link del {BRIDGE})")
    if link.get_attr("IFLA_IFALIAS") != OWNER:
        raise ZooError(f"{BRIDGE} exists and zookeeper did not make it (its alias is not "
                       f"{OWNER!r}): zookeeper will not change it; remove it if it is "
                       f"no one's (ip link del {BRIDGE})")
    # No multicast snooping: with it, the bridge keeps a table of the groups its ports
    # joined, of at most hash_max (4096) entries, and the container that fills it (one
    # unprivileged program joining 4096 groups) turns snooping off for every port
    # (the kernel's answer to a full table), where it stays.  Off from the start, the
    # bridge floods multicast as it floods broadcast: nothing to fill or to flip.
    if link.get_nested("IFLA_LINKINFO", "IFLA_INFO_DATA", "IFLA_BR_MCAST_SNOOPING") != 0:
        netlink(f"turn off multicast snooping on {BRIDGE}",
                f"ip link set {BRIDGE} type bridge mcast_snooping 0",
                ipr.link, "set", index=index, kind="bridge", br_mcast_snooping=0)
    addresses = [a.get_attr("IFA_ADDRESS") for a in ipr.get_addr(index=index)]
    if BRIDGE_ADDRESS not in addresses:
        netlink(f"give {BRIDGE} the address {BRIDGE_ADDRESS}/{PREFIX}",
                f"ip addr add {BRIDGE_ADDRESS}/{PREFIX} dev {BRIDGE}",
                ipr.addr, "add", index=index, address=BRIDGE_ADDRESS, prefixlen=PREFIX)
    # No routing through the host to elsewhere, even where the host forwards packets
    # (net.ipv4.ip_forward=1): packets that come in on zoo0 are for this machine only.
    with step(f"turn off forwarding from {BRIDGE}"):
        kernel.write_file(f"/proc/sys/net/ipv4/conf/{BRIDGE}/forwarding", "0", "ip-sysctl")
    # That switch alone does not hold: any later write of net.ipv4.ip_forward or
    # net.ipv4.conf.all.forwarding (dockerd, libvirtd, sysctl --system) sets every
    # interface's, zoo0's too, to its value.  A policy rule does: what comes in on
    # zoo0 and is not for this machine (the local table, rule 0, delivers that first)
    # is refused, whatever the forwarding switches say.
    ensure_no_routing_rule(ipr)
    # The containers' network is IPv4.  With IPv6 on, the host would take a router
    # advertisement from a container on zoo0 as its default route, and forward
    # IPv6 from it where the host forwards IPv6.
    if os.path.exists(f"/proc/sys/net/ipv6/conf/{BRIDGE}"):  # no IPv6 at all: ipv6(7)
        with step(f"turn off IPv6 on {BRIDGE}"):
            kernel.write_file(f"/proc/sys/net/ipv6/conf/{BRIDGE}/disable_ipv6", "1",
                              "ip-sysctl")
    if not link["flags"] & IFF_UP:
        netlink(f"bring {BRIDGE} up", f"ip link set {BRIDGE} up",
                ipr.link, "set", index=index, state="up")
    return index


# `ip rule add pref 1 iif zoo0 prohibit`: nothing that comes in on zoo0 is routed.
# Right after the local table's rule (0), which still delivers to the host: any
# later one would come after rules other programs add (Tailscale's 5210-5270 look up
# its own table), and what they route would go out whatever this rule says.
RULE_PRIORITY = 1
FR_ACT_PROHIBIT = 8  # fib_rules.h: the rule's action


def no_routing_rules(ipr) -> list:
    """The rules of ours: iif zoo0, at RULE_PRIORITY, prohibit."""
    return [rule for rule in ipr.get_rules()
            if rule.get_attr("FRA_IIFNAME") == BRIDGE
            and rule.get_attr("FRA_PRIORITY") == RULE_PRIORITY
            and rule["action"] == FR_ACT_PROHIBIT]


def ensure_no_routing_rule(ipr) -> None:
    if not no_routing_rules(ipr):
        netlink(f"refuse to route what comes in on {BRIDGE}",
                f"ip rule add pref {RULE_PRIORITY} iif {BRIDGE} prohibit",
                ipr.rule, "add", priority=RULE_PRIORITY,
                iifname=BRIDGE, action=FR_ACT_PROHIBIT)


def remove_no_routing_rule(ipr) -> None:
    for _ in no_routing_rules(ipr):
        netlink(f"remove the rule for {BRIDGE}",
                f"ip rule del pref {RULE_PRIORITY} iif {BRIDGE} prohibit",
                ipr.rule, "del", priority=RULE_PRIORITY,
                iifname=BRIDGE, action=FR_ACT_PROHIBIT, ignore=errno.ENOENT)


def free_address(ipr) -> str:
    """The lowest 10.77.0.N that no container holds.  Each veth zookeeper made carries
    its container's address in its alias; called under the lock, so no other zookeeper
    picks one meanwhile."""
    used = {BRIDGE_ADDRESS}
    for link in ipr.get_links():
        alias = (link.get_attr("IFLA_IFALIAS") or "").split()
        if len(alias) == 2 and alias[0] == OWNER:
            used.add(alias[1])
    for n in range(2, 255):
        if SUBNET + str(n) not in used:
            return SUBNET + str(n)
    raise ZooError(f"no free address left in {SUBNET}0/{PREFIX}: 253 containers use {BRIDGE}")


def configure_eth0(IPRoute, pid: int, address: str) -> None:
    """Inside the container's network namespace: eth0's address, up, default route.

    The parent visits that namespace: setns(2) there, a netlink socket made there
    (a socket belongs for good to the namespace it was made in), and setns(2) home.
    (pyroute2's IPRoute(netns=...) would fork a helper to do this, and a fork of
    zookeeper carries its signal handlers, which forward signals to the container.)"""
    with inside_network_namespace(pid), IPRoute() as ns:
        eth0 = ns.link_lookup(ifname="eth0")[0]
        netlink(f"give eth0 the address {address}/{PREFIX}",
                f"ip addr add {address}/{PREFIX} dev eth0",
                ns.addr, "add", index=eth0, address=address, prefixlen=PREFIX)
        netlink("bring eth0 up", "ip link set eth0 up",
                ns.link, "set", index=eth0, state="up")
        netlink(f"route through {BRIDGE_ADDRESS}", f"ip route add default via {BRIDGE_ADDRESS}",
                ns.route, "add", dst="0.0.0.0/0", gateway=BRIDGE_ADDRESS)


class inside_network_namespace:
    """`with inside_network_namespace(pid):` the block runs in the network namespace
    of process pid, and back in ours after it, whatever happens."""

    def __init__(self, pid: int):
        self.path = f"/proc/{pid}/ns/net"

    def __enter__(self):
        with step("open our own network namespace"):
            self.home = os.open("/proc/self/ns/net", os.O_RDONLY | os.O_CLOEXEC)
        try:
            with step(f"enter the container's network namespace {self.path}"):
                target = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    kernel.sys_setns(target, kernel.CLONE_NEWNET, self.path)
                finally:
                    os.close(target)
        except BaseException:
            os.close(self.home)
            raise
        return self

    def __exit__(self, *exc):
        try:
            with step("return to our own network namespace"):
                kernel.sys_setns(self.home, kernel.CLONE_NEWNET, "/proc/self/ns/net")
        finally:
            os.close(self.home)
        return False


def remove_unused_bridge(ipr) -> None:
    """Remove zoo0 when no link is plugged into it any more, if zookeeper made it, and
    the rule that goes with it; the rule too when zoo0 went another way (`ip link del
    zoo0`, which a message of ours advises), or it stays, "[detached]"."""
    found = ipr.link_lookup(ifname=BRIDGE)
    if not found:
        remove_no_routing_rule(ipr)
        return
    index = found[0]
    if ipr.get_links(index)[0].get_attr("IFLA_IFALIAS") != OWNER:
        return  # someone else's bridge of that name: not ours to remove
    if has_ports(ipr, index):
        return  # another container still uses it
    netlink(f"remove the bridge {BRIDGE}", f"ip link del {BRIDGE}",
            ipr.link, "del", index=index, ignore=errno.ENODEV)
    remove_no_routing_rule(ipr)
