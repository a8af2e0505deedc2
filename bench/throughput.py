"""Network throughput: a container's TCP stream to a server on this machine.

The server is iperf3 on an address the benchmark makes for itself: the host end of a
veth pair whose other end lives in a network namespace of its own (10.203.N.1/24 on
`zkbhPID`, 10.203.N.2 in `zkbenchPID`).  No traffic leaves this machine.

The client is iperf3 too, from the host's filesystem: zookeeper runs it without -r (a
container of part 6 without -r keeps the host's files, and -r changes nothing on the
network path), with -n.  Paths, measured in interleaved rounds:
  - raw veth pair: iperf3 in the benchmark's namespace, through its veth, to the host;
  - zookeeper as root: part 6 -n (a veth pair on the bridge zoo0, then the host);
  - zookeeper rootless: part 6 -n through slirp4netns (zookeeper's flags: MTU 65521);
  - slirp4netns with its own defaults (MTU 1500), and with zookeeper's MTU;
  - pasta (package passt) with its defaults.
The rootless paths run as the test user when it may open /dev/net/tun; where the
device is 0600 (this host) they run as root of a user namespace of their own, where
zookeeper still takes its rootless path (see nsrun.py).
"""

import json
import os
import random
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from common import PARTS, Identity, entry, first_line, median, paired_ratio

RAW = "raw veth pair (namespace -> host)"
ZK_ROOT = "zookeeper part 6 -n, root (veth + bridge zoo0)"
ZK_SLIRP = "zookeeper part 6 -n, rootless (slirp4netns)"
SLIRP = "slirp4netns, its defaults (MTU 1500)"
SLIRP_MTU = "slirp4netns --mtu=65521 (zookeeper's MTU)"
PASTA = "pasta, its defaults"
PATHS = [RAW, ZK_ROOT, ZK_SLIRP, SLIRP, SLIRP_MTU, PASTA]
RATIOS = [  # (path, reference, target at least or None)
    (ZK_ROOT, RAW, 0.9),
    (ZK_SLIRP, SLIRP, 1.0),
    (PASTA, SLIRP, None),
    (ZK_SLIRP, PASTA, None),
]


def skipped(reason: str) -> dict:
    return {"entries": [entry(p, unit="Gbit/s", reason=reason) for p in PATHS],
            "ratios": [entry(f"{a} / {b}", unit="x", reason=reason, target_at_least=t)
                       for a, b, t in RATIOS],
            "method": __doc__.strip(), "rootless_how": None}


def ip(*args, check=True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], capture_output=True, text=True, check=check)


class ServerSide:
    """The benchmark's own veth pair, namespace and iperf3 server; stop() undoes it all."""

    def __init__(self):
        self.ns = f"zkbench{os.getpid()}"
        self.host_if = f"zkbh{os.getpid() % 100000}"
        self.server = None
        self.made = False
        self.log = None
        used = ip("-4", "route", "show", "table", "all").stdout + ip("-4", "addr").stdout
        free = [n for n in range(0, 250) if f"10.203.{n}." not in used]
        if not free:
            raise RuntimeError("no free 10.203.N.0/24 subnet for the benchmark's veth pair")
        self.address = f"10.203.{free[0]}.1"
        self.peer_address = f"10.203.{free[0]}.2"

    def start(self) -> None:
        ip("netns", "add", self.ns)
        self.made = True
        ip("link", "add", self.host_if, "type", "veth", "peer", "name", "zkbn", "netns", self.ns)
        ip("addr", "add", f"{self.address}/24", "dev", self.host_if)
        ip("link", "set", self.host_if, "up")
        ip("-n", self.ns, "addr", "add", f"{self.peer_address}/24", "dev", "zkbn")
        ip("-n", self.ns, "link", "set", "zkbn", "up")
        ip("-n", self.ns, "link", "set", "lo", "up")
        with socket.socket() as s:  # a free port on our address
            s.bind((self.address, 0))
            self.port = s.getsockname()[1]
        self.log = tempfile.NamedTemporaryFile(prefix="zkbench-iperf3-", suffix=".log")
        self.server = subprocess.Popen(
            ["iperf3", "-s", "-B", self.address, "-p", str(self.port), "--forceflush"],
            stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while b"Server listening" not in Path(self.log.name).read_bytes():
            if self.server.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("iperf3 server did not start: "
                                   + first_line(Path(self.log.name).read_text(), "no message"))
            time.sleep(0.02)

    def stop(self) -> None:
        if self.server and self.server.poll() is None:
            self.server.terminate()
            try:
                self.server.wait(5)
            except subprocess.TimeoutExpired:
                self.server.kill()
                self.server.wait()
        if self.made:
            ip("netns", "del", self.ns, check=False)  # takes its veth end, and ours, along
            ip("link", "del", self.host_if, check=False)
        if self.log:
            self.log.close()


def rootless_prefix(ident: Identity, python: str, nsrun: str) -> tuple[list[str] | None, str]:
    """How to run the rootless paths here: (argv prefix, how) or (None, why not)."""
    if ident.problem:
        return None, ident.problem
    probe = subprocess.run(ident.prefix() + [python, "-c",
                           "import os; os.close(os.open('/dev/net/tun', os.O_RDWR))"],
                           env=ident.env(), capture_output=True, text=True)
    if probe.returncode == 0:
        return ident.prefix(), f"as {ident.describe()}"
    if os.geteuid() == 0:
        mode = oct(os.stat("/dev/net/tun").st_mode & 0o777) if os.path.exists(
            "/dev/net/tun") else "missing"
        return [python, nsrun, "userns", "--"], (
            f"as root of a user namespace of its own (uids 0..399999 mapped to themselves), "
            f"since {ident.name} cannot open /dev/net/tun (mode {mode}): zookeeper takes "
            "its rootless path (slirp4netns) there")
    return None, "cannot open /dev/net/tun (slirp4netns and pasta need it)"


def measure(argv: list[str], env: dict, timeout: float) -> tuple[float | None, str, int]:
    """Gbit/s received by the server in one iperf3 run, or (None, why); and how many
    of its 1-second intervals stalled (under 1% of its best interval)."""
    try:
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None, f"did not finish in {timeout:.0f} s", 0
    try:
        result = json.loads(done.stdout)
    except ValueError:
        result = {}
    if result.get("error"):
        return None, f"iperf3: {result['error']}", 0
    try:
        bits = result["end"]["sum_received"]["bits_per_second"]
        rates = [i["sum"]["bits_per_second"] for i in result["intervals"]
                 if not i["sum"].get("omitted")]
    except (KeyError, TypeError):
        return None, first_line(done.stderr, f"exit status {done.returncode}, no iperf3 result"), 0
    if done.returncode != 0:
        return None, first_line(done.stderr, f"exit status {done.returncode}"), 0
    stalls = sum(1 for r in rates if r < 0.01 * max(rates)) if rates else 0
    return bits / 1e9, "", stalls


def run(ident: Identity, work: Path, parts: list[int], python: str, seconds: int,
        rounds: int, seed: int, log=print) -> dict:
    if os.geteuid() != 0:
        return skipped("needs root (it makes a veth pair and a network namespace)")
    for tool, package in (("iperf3", "iperf3"), ("ip", "iproute2")):
        if shutil.which(tool) is None:
            return skipped(f"{tool} not installed (apt-get install {package})")
    nsrun = str(work / "nsrun.py")
    shutil.copy(Path(__file__).with_name("nsrun.py"), nsrun)
    shutil.copy(Path(__file__).parent.parent / "grader" / "waiting_child.py", work)
    os.chmod(nsrun, 0o755)
    server = None
    try:
        server = ServerSide()
        server.start()
    except (RuntimeError, subprocess.CalledProcessError) as e:
        if server:
            server.stop()
        detail = first_line(getattr(e, "stderr", "") or "", str(e))
        return skipped(f"could not set up the server side: {detail}")
    part6 = str(work / PARTS[6] / "zookeeper.py")
    reasons, commands = {}, {}
    try:
        client = ["iperf3", "-c", server.address, "-p", str(server.port), "-t", str(seconds),
                  "-O", "1", "-J"]
        prefix, how = rootless_prefix(ident, python, nsrun)
        commands[RAW] = ["ip", "netns", "exec", server.ns] + client
        if 6 in parts:
            commands[ZK_ROOT] = [python, part6, "-n"] + client
        else:
            reasons[ZK_ROOT] = reasons[ZK_SLIRP] = "part 6 is not there yet"
        if prefix is None:
            for p in (ZK_SLIRP, SLIRP, SLIRP_MTU, PASTA):
                reasons.setdefault(p, how)
        else:
            if 6 in parts:
                commands[ZK_SLIRP] = prefix + [python, part6, "-n"] + client
            commands[SLIRP] = prefix + [python, nsrun, "slirp", "--"] + client
            commands[SLIRP_MTU] = prefix + [python, nsrun, "slirp", "--mtu", "65521",
                                            "--"] + client
            commands[PASTA] = prefix + [python, nsrun, "pasta", "--"] + client
        env = ident.env() if ident.switch else dict(os.environ)
        env["PATH"] = os.path.dirname(python) + ":" + env.get("PATH", "")
        series = {p: [] for p in commands}
        stalls = {p: 0 for p in commands}
        rng = random.Random(seed)
        for number in range(rounds):
            order = [p for p in commands if p not in reasons]
            rng.shuffle(order)
            for p in order:
                value, why, stalled = measure(commands[p], env, seconds + 60)
                stalls[p] += stalled
                if value is None:
                    reasons[p] = why if number == 0 else f"failed in round {number + 1}: {why}"
                series[p].append(value)
                log(f"bench: network round {number + 1}/{rounds}: {p}: "
                    + (f"{value:.2f} Gbit/s" if value is not None else why))
    finally:
        server.stop()
    entries = []
    for p in PATHS:
        rootless = p in (ZK_SLIRP, SLIRP, SLIRP_MTU, PASTA)
        extra = {"how": how if rootless else "as root", "command": commands.get(p)}
        if p in reasons:
            entries.append(entry(p, unit="Gbit/s", reason=reasons[p], **extra))
        else:
            values = [v for v in series[p] if v is not None]
            entries.append(entry(p, median(values), "Gbit/s", runs=len(values),
                                 min=round(min(values), 4), max=round(max(values), 4),
                                 stalled_intervals=stalls[p], **extra))
    ratios = []
    for a, b, target in RATIOS:
        name = f"{a} / {b}"
        if a in reasons or b in reasons:
            why = "; ".join(f"{x}: {reasons[x]}" for x in (a, b) if x in reasons)
            ratios.append(entry(name, unit="x", reason=why, target_at_least=target))
            continue
        ratio, pairs = paired_ratio(series[a], series[b])
        extra = {"target_at_least": target, "pairs": pairs}
        if target is not None and ratio is not None:
            extra["met"] = ratio >= target
        ratios.append(entry(name, ratio, "x", **extra))
    return {"entries": entries, "ratios": ratios, "method": __doc__.strip(),
            "server": f"iperf3 -s on {server.address} (veth {server.host_if})",
            "client": f"iperf3 -c ADDRESS -t {seconds} -O 1 -J (first second omitted)",
            "rootless_how": how}
