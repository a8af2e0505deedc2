"""What the benchmarks share: who runs what, statistics, result entries.

Every result is an *entry*: a dict with a name and either a number (`value`, in
`unit`) or a `reason` saying why there is none (not installed, refused by this
host, skipped in quick mode...).  Never both, never neither.
"""

import json
import os
import pwd
import shutil
import statistics
import subprocess
import sys
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tools"))
from generate import PARTS  # noqa: E402  (the one table of the parts' directories)

VENV_PYTHON = os.environ.get("ZOOKEEPER_VENV", "/opt/zookeeper-venv") + "/bin/python3"
TEST_USER = os.environ.get("ZOOKEEPER_TEST_USER", "zootest")
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def entry(name: str, value=None, unit: str = "", reason: str | None = None, **extra) -> dict:
    """One result: a number, or the reason there is none."""
    if value is None and not reason:
        reason = "not measured"
    out = {"name": name, "value": None if value is None else round(float(value), 4),
           "unit": unit, "reason": None if value is not None else reason}
    out.update(extra)
    return out


def first_line(text: str, default: str = "") -> str:
    """The first non-empty line of a program's error output, for a table."""
    for line in (text or "").splitlines():
        line = line.strip()
        if line and "Failed to send" not in line:  # pasta's syslog noise
            return line[:160]
    return default


def median(values):
    return statistics.median(values) if values else None


def quartiles(values):
    if len(values) < 4:
        return min(values), max(values)
    q = statistics.quantiles(values, n=4)
    return q[0], q[2]


def paired_ratio(a: list, b: list):
    """Median of a[i] / b[i] over the rounds where both ran: each pair was measured
    side by side, so slow spells of the machine hit both sides of a ratio alike."""
    ratios = [x / y for x, y in zip(a, b) if x is not None and y]
    return (statistics.median(ratios), len(ratios)) if ratios else (None, 0)


class Identity:
    """Whom the rootless measurements run as, and with which Python.

    As root: the test user (zootest, made by tools/setup-test-env.sh), with the venv's
    Python that any user can read.  As anyone else: that user, as they are."""

    def __init__(self, user: str | None = None):
        self.problem = ""
        if os.geteuid() != 0:
            pw = pwd.getpwuid(os.geteuid())
            self.switch = False
        else:
            name = user or TEST_USER
            try:
                pw = pwd.getpwnam(name)
            except KeyError:
                pw = pwd.getpwuid(0)
                self.problem = (f"no test user {name}: run tools/setup-test-env.sh as root "
                                "(or run the benchmark as an ordinary user)")
            self.switch = True
        self.name, self.uid, self.gid, self.home = pw.pw_name, pw.pw_uid, pw.pw_gid, pw.pw_dir
        self.groups = os.getgrouplist(self.name, self.gid)
        self.cwd = "/"  # where the worker runs (the caller's may be unreadable to it)
        self.python = VENV_PYTHON if os.path.exists(VENV_PYTHON) else sys.executable
        if self.switch and not self.problem and self.python == sys.executable:
            self.problem = (f"no Python that {self.name} can read at {VENV_PYTHON}: "
                            "run tools/setup-test-env.sh")

    def describe(self) -> str:
        return f"{self.name} (uid {self.uid})"

    def env(self, extra: dict | None = None) -> dict:
        env = {"PATH": PATH, "HOME": self.home, "LANG": "C.UTF-8", "USER": self.name,
               "LOGNAME": self.name}
        env.update(extra or {})
        return env

    def prefix(self) -> list[str]:
        """argv prefix that runs a command as this identity (for untimed commands)."""
        if not self.switch:
            return []
        return ["setpriv", f"--reuid={self.uid}", f"--regid={self.gid}", "--init-groups", "--"]

    def drop_privileges(self) -> None:
        """In a forked child: become this identity for good."""
        if not self.switch:
            return
        os.setgroups(self.groups)
        os.setresgid(self.gid, self.gid, self.gid)
        os.setresuid(self.uid, self.uid, self.uid)

    def call(self, fn, *args):
        """Run fn(*args) in a forked child as this identity; return its result (JSON).

        The child is a fork of this interpreter, so timings it takes are not inflated by
        setpriv or a second Python, and it may only use modules imported already (this
        host's default Python may be unreadable by the test user)."""
        read_end, write_end = os.pipe()
        pid = os.fork()
        if pid == 0:
            status = 0
            try:
                os.close(read_end)
                self.drop_privileges()
                os.chdir(self.cwd)
                out = {"ok": fn(*args)}
            except BaseException:
                out = {"error": traceback.format_exc(limit=6)}
                status = 1
            try:
                data = json.dumps(out).encode()
                with os.fdopen(write_end, "wb") as f:
                    f.write(data)
            finally:
                os._exit(status)
        os.close(write_end)
        with os.fdopen(read_end, "rb") as f:
            data = f.read()
        os.waitpid(pid, 0)
        out = json.loads(data or b'{"error": "the worker died without a word"}')
        if "error" in out:
            raise RuntimeError(f"benchmark worker as {self.name} failed:\n{out['error']}")
        return out["ok"]


def chown_tree(path: Path, ident: Identity) -> None:
    if ident.switch and not ident.problem:
        subprocess.run(["chown", "-R", f"{ident.uid}:{ident.gid}", str(path)], check=True)


def copy_parts(dest: Path) -> list[int]:
    """Copy the part directories (fresh, without bytecode): the test user must be able to
    read them and write their __pycache__, as a student's own copy would."""
    found = []
    for number, name in PARTS.items():
        src = ROOT / name
        if (src / "zookeeper.py").exists():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
            found.append(number)
    return found
