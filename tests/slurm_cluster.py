"""A one-node Slurm cluster for the tests, from Debian's packages (slurmctld, slurmd,
munge), started as background processes with their state, logs, sockets and ports
under one temporary directory, and stopped by pid.  Nothing system-wide is touched:
no systemd unit, no /etc/slurm, no cgroup plugin (proctrack/linuxproc, task/none).

    with SlurmCluster() as cluster:       # raises SlurmUnavailable with the reason
        subprocess.run(["sbatch", ...], env=cluster.env())

Run by hand (as root): python3 tests/slurm_cluster.py  starts one, runs a job, stops.
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

DAEMONS = ("munged", "slurmctld", "slurmd")
CLIENTS = ("sbatch", "squeue", "scontrol", "sinfo", "scancel")


class SlurmUnavailable(Exception):
    """Why the cluster cannot run here (a missing program, a daemon that died: its log)."""


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def memory_mib() -> int:
    """The node's memory as slurmd counts it (`slurmd -C`'s RealMemory: MemTotal in MiB).
    Without RealMemory in slurm.conf a node has 1 MiB, and sbatch refuses any --mem
    above it ("Memory specification can not be satisfied"), as grade --slurm's 3G for a
    VM task; more than slurmd finds would drain the node (slurm.conf(5), RealMemory)."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) // 1024
    raise SlurmUnavailable("no MemTotal in /proc/meminfo")


def find(program: str) -> str | None:
    return shutil.which(program, path="/usr/sbin:/usr/bin:/sbin:/bin")


class SlurmCluster:
    def __init__(self, cpus: int | None = None, start_timeout: float = 30.0):
        self.cpus = cpus or os.cpu_count() or 1
        self.start_timeout = start_timeout
        self.base: Path | None = None
        self.procs: dict[str, subprocess.Popen] = {}

    # -- what the clients need --------------------------------------------------
    def env(self, base_env: dict | None = None) -> dict:
        env = dict(os.environ if base_env is None else base_env)
        env["SLURM_CONF"] = str(self.base / "slurm.conf")
        return env

    # -- start and stop --------------------------------------------------------
    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.stop()

    def start(self) -> None:
        if os.getuid() != 0:
            raise SlurmUnavailable("the test cluster's daemons run as root")
        missing = [p for p in DAEMONS + CLIENTS if not find(p)]
        if missing:
            raise SlurmUnavailable(f"not installed: {', '.join(missing)} (apt-get install "
                                   "slurmctld slurmd slurm-client munge)")
        self.base = Path(tempfile.mkdtemp(prefix="zk-slurm-"))
        self.base.chmod(0o755)
        try:
            self._start()
        except BaseException:
            self.stop()
            raise

    def _start(self) -> None:
        b = self.base
        for d in ("munge", "state", "spool", "log"):
            (b / d).mkdir(mode=0o700)
        key = b / "munge" / "munge.key"
        key.write_bytes(os.urandom(1024))
        key.chmod(0o400)
        self.munge_socket = b / "munge" / "munge.socket"
        self._spawn("munged", [find("munged"), "--foreground", "--force",
                               f"--socket={self.munge_socket}", f"--key-file={key}",
                               f"--log-file={b / 'log' / 'munged.log'}",
                               f"--pid-file={b / 'munge' / 'munged.pid'}",
                               f"--seed-file={b / 'munge' / 'munged.seed'}"])
        self._wait_for(lambda: self.munge_socket.exists(), "munged", b / "log" / "munged.log")
        host = socket.gethostname().split(".")[0]
        ctld_port, slurmd_port = free_ports(2)
        (b / "slurm.conf").write_text(f"""\
ClusterName=zootest
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={slurmd_port}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
AuthInfo=socket={self.munge_socket}
StateSaveLocation={b / 'state'}
SlurmdSpoolDir={b / 'spool'}
SlurmctldPidFile={b / 'slurmctld.pid'}
SlurmdPidFile={b / 'slurmd.pid'}
SlurmctldLogFile={b / 'log' / 'slurmctld.log'}
SlurmdLogFile={b / 'log' / 'slurmd.log'}
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MpiDefault=none
SwitchType=switch/none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=60
InactiveLimit=0
MinJobAge=300
KillWait=10
Waittime=0
NodeName={host} NodeAddr=127.0.0.1 CPUs={self.cpus} RealMemory={memory_mib()} State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
""")
        env = self.env()
        self._spawn("slurmctld", [find("slurmctld"), "-D", "-i", "-f", str(b / "slurm.conf")],
                    env)
        self._spawn("slurmd", [find("slurmd"), "-D", "-N", host, "-f", str(b / "slurm.conf")],
                    env)
        self._wait_for(self._node_idle, "slurmd", b / "log" / "slurmd.log")

    def _spawn(self, name: str, argv: list[str], env=None) -> None:
        out = open(self.base / "log" / f"{name}.stderr", "wb")
        self.procs[name] = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                            stdin=subprocess.DEVNULL, env=env,
                                            start_new_session=True)
        out.close()

    def _node_idle(self) -> bool:
        done = subprocess.run([find("sinfo"), "-h", "-o", "%t"], env=self.env(),
                              capture_output=True, text=True, timeout=20)
        return done.returncode == 0 and done.stdout.strip() in ("idle", "mix", "alloc")

    def _wait_for(self, ready, name: str, log: Path) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            for n, p in self.procs.items():
                if p.poll() is not None:
                    raise SlurmUnavailable(f"{n} exited with status {p.returncode}:\n"
                                           + self.tail(n))
            if ready():
                return
            time.sleep(0.3)
        raise SlurmUnavailable(f"{name} not ready within {self.start_timeout:.0f}s:\n"
                               + self.tail(name))

    def tail(self, name: str, lines: int = 15) -> str:
        said = []
        for path in (self.base / "log" / f"{name}.log", self.base / "log" / f"{name}.stderr"):
            try:
                said += path.read_text(errors="replace").splitlines()[-lines:]
            except OSError:
                pass
        return "\n".join(f"    {line}" for line in said) or "    (no log)"

    def stop(self) -> None:
        """The daemons this object started, by pid: SIGTERM, then SIGKILL after 10 s."""
        for name in reversed(list(self.procs)):
            p = self.procs[name]
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait()
        self.procs.clear()
        if self.base and not os.environ.get("ZOO_KEEP_SLURM"):
            shutil.rmtree(self.base, ignore_errors=True)


if __name__ == "__main__":
    with SlurmCluster() as c:
        print("up in", c.base)
        done = subprocess.run(["sbatch", "--wait", "--array=0-1", f"--output={c.base}/%A_%a.out",
                               "--wrap", "hostname; echo task $SLURM_ARRAY_TASK_ID"],
                              env=c.env(), capture_output=True, text=True, timeout=60)
        print(done.returncode, done.stdout, done.stderr)
        for out in sorted(c.base.glob("*.out")):
            print(out.name, out.read_text())
