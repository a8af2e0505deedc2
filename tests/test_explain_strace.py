"""Explain mode tells the truth: each step -v prints is checked against strace(1).

A part runs with -v under `strace -f -ff`, as the unprivileged test user (strace runs
as root with `-u zootest`: a traced process loses its setuid bits, and newuidmap and
newgidmap need theirs; strace(1) says -u "enables the correct execution of setuid
binaries").  Then every line of the trace is matched to the system call(s) it names,
in the process that printed it (the parent, or the child whose host pid its label
gives), with the same arguments and the same result:

- Each process's explain lines are themselves write(2)s to fd 2 in strace's record,
  so the k-th line of a process is placed exactly among its calls.  A step printed
  after its call (most are) must find that call before its own line and after the
  call matched for the previous step; a step printed before (execvp's "= …")
  must find it between its line and the next.  So the order is the order of the calls.
- Arguments are compared as values: strace's quoted strings and NULL, flags as sets
  of names, modes and numbers as numbers, results as return value or errno name.
- A line that is not one system call maps to what it does (mkdtemp is mkdir, the
  seccomp cache is a rename, newuidmap is an execve of that program in a child the
  parent waits for), or is listed in NOT_SYSCALLS with the reason.  Any other line
  is a failure: a new step of explain mode needs its mapping here.

The same run without strace must show the user the same thing (the command's output:
ids, id maps, hostname; and the same steps), or strace would be checking another run.
test_matcher_* make sure the matcher can fail: a trace with one argument changed, one
result changed, two lines swapped, an unknown line, or a line the process did not
write is reported.  A lie found is listed in KNOWN_LIES with what strace saw: that
run's check is an xfail saying so, and the other runs' checks still hold.
"""

import ast
import copy
import math
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from conftest import PARTS, TEST_USER, Runner
from test_network import with_tun

STRACE = shutil.which("strace")
# What the container runs: the user's view, compared with and without strace.
SHOW = ["sh", "-c", "id; cat /proc/self/uid_map /proc/self/gid_map; hostname"]
# The runs checked: (part, options, command, exit status).  ROOTFS is the busybox rootfs.
CASES = {
    "part1": (1, [], SHOW, 0),
    "part4": (4, ["-r", "ROOTFS", "-P"], SHOW, 0),
    # Rootless networking: slirp4netns, through a /dev/net/tun of mode 0666.
    "part6": (6, ["-n", "-r", "ROOTFS", "-P"], SHOW, 0),
    # execvp's failures: its search of PATH, and a file that is not executable.
    "part1-not-found": (1, [], ["no-such-command-zk"], 127),
    "part1-not-executable": (1, [], ["/etc/passwd"], 126),
    "part1-empty-command": (1, [], [""], 127),
}

# Lines that are not a system call of zookeeper's, and why.
NOT_SYSCALLS = [
    (r"^seccomp_rule_add\(", "libseccomp adds a rule to a filter in this process's memory; "
                             "the program reaches the kernel by the child's seccomp(2)"),
    (r"^no cgroup for the container$", "a decision (this host's cgroups, read from "
                                       "/proc/self/mounts), no call of its own"),
    (r"^root in the container$", "a look-up in /etc/subuid and /etc/subgid"),
    (r"^import pyroute2$", "a Python import"),
]


# strace's record ------------------------------------------------------------------


@dataclass
class Call:
    name: str
    args: list
    result: str  # as strace prints it: "0", "15387", "-1 EEXIST (File exists)"
    line: str

    @property
    def ret(self):
        m = re.match(r"^(-?\d+|0x[0-9a-f]+)\b", self.result)
        return int(m.group(1), 0) if m else None

    @property
    def errno(self):
        m = re.match(r"^-1 (E\w+)", self.result)
        return m.group(1) if m else None


CALL_LINE = re.compile(r"^(\w+)\((.*)\)\s+= (.*)$")


def parse_strace(path: Path) -> list:
    """One process's calls, from `strace -ff`'s file for it."""
    calls, pending = [], None
    for raw in path.read_text(errors="replace").splitlines():
        if raw.startswith(("+++", "---")):
            continue
        if raw.endswith(" <unfinished ...>"):
            pending = raw[:-len(" <unfinished ...>")]
            continue
        resumed = re.match(r"^<\.\.\. \w+ resumed>(.*)$", raw)
        if resumed and pending is not None:
            raw, pending = pending + resumed.group(1), None
        m = CALL_LINE.match(raw)
        if m:
            calls.append(Call(m.group(1), split_args(m.group(2)), m.group(3).strip(), raw))
    return calls


def unquoted(text: str, start: int = 0):
    """(index, character, bracket depth after it) of each character of text from start
    that is outside quotes (with backslash escapes inside them)."""
    depth, quote, i = 0, None, start
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        else:
            depth += (c in "([{") - (c in ")]}")
            yield i, c, depth
        i += 1


def split_args(text: str) -> list:
    """Top-level, comma-separated arguments; quotes and brackets kept whole."""
    args, start = [], 0
    for i, c, depth in unquoted(text):
        if c == "," and depth == 0:
            args.append(text[start:i].strip())
            start = i + 1
    if text[start:].strip():
        args.append(text[start:].strip())
    return args


ESCAPES = {"n": 10, "t": 9, "r": 13, "v": 11, "f": 12, "a": 7, "b": 8, "\\": 92, '"': 34}


def c_string(token: str):
    """strace's "..." (C escapes, octal bytes) as text; NULL as None."""
    if token == "NULL":
        return None
    m = re.fullmatch(r'"((?:[^"\\]|\\.)*)"(\.\.\.)?', token, re.S)
    if not m:
        return token
    out, body, i = bytearray(), m.group(1), 0
    while i < len(body):
        if body[i] != "\\":
            out += body[i].encode()
            i += 1
            continue
        octal = re.match(r"[0-7]{1,3}", body[i + 1:])
        if octal:
            out.append(int(octal.group(0), 8))
            i += 1 + len(octal.group(0))
        else:
            out.append(ESCAPES.get(body[i + 1], ord(body[i + 1])))
            i += 2
    return out.decode(errors="replace")


def struct_fields(token: str) -> dict:
    """{a=1, b=X|Y} as {"a": "1", "b": "X|Y"}."""
    inner = token.strip()[1:-1] if token.strip().startswith("{") else token
    return dict(part.partition("=")[::2] for part in split_args(inner))


def flag_set(token: str) -> set:
    """A|B|C as a set; 0 and O_RDONLY (which is 0) name no flag."""
    return {f.strip() for f in token.split("|")} - {"0", "0x0", "O_RDONLY", ""}


def wait_status(token: str) -> str:
    """[{WIFEXITED(s) && WEXITSTATUS(s) == 0}] as explain mode says it: "exit status 0"."""
    m = re.search(r"WEXITSTATUS\(s\) == (\d+)", token)
    if m:
        return f"exit status {m.group(1)}"
    m = re.search(r"WTERMSIG\(s\) == (\w+)", token)
    return f"killed by {m.group(1)}" if m else token


# netdevice(7) and capabilities(7) numbers strace spells by name.
IFF = {"IFF_UP": 0x1, "IFF_BROADCAST": 0x2, "IFF_DEBUG": 0x4, "IFF_LOOPBACK": 0x8,
       "IFF_POINTOPOINT": 0x10, "IFF_NOTRAILERS": 0x20, "IFF_RUNNING": 0x40, "IFF_NOARP": 0x80,
       "IFF_PROMISC": 0x100, "IFF_ALLMULTI": 0x200, "IFF_MASTER": 0x400, "IFF_SLAVE": 0x800,
       "IFF_MULTICAST": 0x1000, "IFF_PORTSEL": 0x2000, "IFF_AUTOMEDIA": 0x4000,
       "IFF_DYNAMIC": 0x8000}
CAPS = ("CHOWN DAC_OVERRIDE DAC_READ_SEARCH FOWNER FSETID KILL SETGID SETUID SETPCAP "
        "LINUX_IMMUTABLE NET_BIND_SERVICE NET_BROADCAST NET_ADMIN NET_RAW IPC_LOCK IPC_OWNER "
        "SYS_MODULE SYS_RAWIO SYS_CHROOT SYS_PTRACE SYS_PACCT SYS_ADMIN SYS_BOOT SYS_NICE "
        "SYS_RESOURCE SYS_TIME SYS_TTY_CONFIG MKNOD LEASE AUDIT_WRITE AUDIT_CONTROL SETFCAP "
        "MAC_OVERRIDE MAC_ADMIN SYSLOG WAKE_ALARM BLOCK_SUSPEND AUDIT_READ PERFMON BPF "
        "CHECKPOINT_RESTORE").split()


def bits(token: str, names: dict) -> int:
    """X|Y|0x20 (names from `names`, 1<<CAP_X for capabilities) as a number."""
    value = 0
    for part in token.split("|"):
        part = part.strip()
        if part.startswith("1<<CAP_"):
            value |= 1 << CAPS.index(part[len("1<<CAP_"):])
        elif part in names:
            value |= names[part]
        elif part:
            value |= int(part, 0)
    return value


# Explain mode's lines ----------------------------------------------------------------


@dataclass
class Step:
    pid: int  # the process that printed it (the parent's, or the child's label)
    text: str  # the line as printed, for messages
    call: str  # "mount(NULL, "/", NULL, MS_REC|MS_PRIVATE)"
    result: str  # "0", "-1 EEXIST (File exists)", "ok", "…"
    write_at: int  # where its write(2) is among the process's calls


def split_step(body: str):
    """'call = result   man(2)   0.1 ms' as (call, result); None for a line without ' = '."""
    body = re.sub(r"\s+\d+\.\d ms$", "", body)
    body = re.sub(r"\s+(\S+\(\d\w*\)|ip-sysctl)$", "", body).rstrip()
    if re.match(r"^\w+\(", body):  # name(args): the " = " after the balanced parenthesis
        for i, c, depth in unquoted(body, body.index("(")):
            if c in ")]}" and depth == 0:
                if body[i + 1:i + 4] == " = ":
                    return body[:i + 1], body[i + 4:].strip()
                break
    if " = " not in body:
        return None
    call, _, result = body.partition(" = ")
    return call, result.strip()


@dataclass
class Run:
    trace_dir: Path
    parent: int
    calls: dict  # pid -> [Call]
    steps: list  # [Step], each process's in its order
    stdout: str
    stderr: str
    problems_pairing: list = field(default_factory=list)


def explain_writes(calls: list) -> list:
    return [i for i, c in enumerate(calls) if c.name == "write" and c.args[:1] == ["2"]
            and (c_string(c.args[1]) or "").startswith("zookeeper: ")]


def load_run(trace_dir: Path, stdout: str, stderr: str) -> Run:
    """Pair each process's lines on stderr with its write(2)s in strace's record."""
    calls = {int(p.name.rsplit(".", 1)[1]): parse_strace(p) for p in trace_dir.glob("trace.*")}
    parents = [pid for pid, cs in calls.items() if cs and cs[0].name == "execve"
               and any(a.endswith('/zookeeper.py"') for a in split_args(cs[0].args[1][1:-1]))]
    assert len(parents) == 1, f"no single zookeeper process in the trace: {parents}"
    run = Run(trace_dir, parents[0], calls, [], stdout, stderr)
    lines = {}
    for line in stderr.splitlines():
        m = re.match(r"^zookeeper: (?:\[(\d+)\] )?", line)
        if m:
            lines.setdefault(int(m.group(1) or run.parent), []).append(line)
    for pid, printed in lines.items():
        writes = explain_writes(calls.get(pid, []))
        written = [c_string(calls[pid][i].args[1]).rstrip("\n") for i in writes]
        if written != printed:
            run.problems_pairing.append(
                f"process {pid}: its lines on stderr are not the write(2)s strace saw it make:"
                f"\n  stderr: {printed}\n  strace: {written}")
            continue
        for line, at in zip(printed, writes):
            body = re.sub(r"^zookeeper: (\[\d+\] )?", "", line)
            parts = split_step(body)
            if parts:  # a line without " = " is a warning, not a step
                run.steps.append(Step(pid, line, parts[0], parts[1], at))
    return run


# The matcher -------------------------------------------------------------------------


class Mismatch(Exception):
    pass


def explain_args(call: str) -> list:
    return split_args(call[call.index("(") + 1:-1])


def unquote(token: str):
    """An explain argument: "path" (as quoted() prints), 'repr', NULL."""
    if token == "NULL":
        return None
    if token[:1] == "'":
        return ast.literal_eval(token)
    if token[:1] == '"' and token[-1:] == '"':
        return token[1:-1]
    return token


def same_result(shown: str, call: Call) -> bool:
    """explain's "0", "3" or "-1 ENAME (text)" against what the call returned."""
    m = re.match(r"^-1 (E\w+)", shown)
    if m:
        return call.errno == m.group(1)
    m = re.match(r"^(\d+)$", shown)
    return bool(m) and call.errno is None and call.ret == int(m.group(1))


class Matcher:
    """Walks one run's steps, each process's in order, finding each step's calls."""

    def __init__(self, run: Run):
        self.run = run
        self.cursor = {}  # pid -> index after the call matched for the previous step
        self.next_write = {}
        self.matched = []  # (step, the call strace saw for it, or the reason there is none)

    def check(self) -> list:
        problems = list(self.run.problems_pairing)
        writes = {}
        for s in self.run.steps:
            writes.setdefault(s.pid, []).append(s.write_at)
        for s in self.run.steps:
            later = [w for w in writes[s.pid] if w > s.write_at]
            self.next_write[id(s)] = later[0] if later else len(self.run.calls[s.pid])
            try:
                self.match(s)
            except Mismatch as e:
                problems.append(f"{s.text.strip()}\n    {e}")
        return problems

    # Searching ------------------------------------------------------------------

    def find(self, step: Step, names, test, after_line: bool = False) -> int:
        """The first call named in names that passes test, in the step's window: before
        its line (and after the previous step's call), or, after_line, between its line
        and the next.  Mismatch, showing what strace saw there, if none does."""
        calls = self.run.calls[step.pid]
        if after_line:
            lo, hi = step.write_at + 1, self.next_write[id(step)]
        else:
            lo, hi = self.cursor.get(step.pid, 0), step.write_at
        names = (names,) if isinstance(names, str) else names
        seen = []
        for i in range(lo, hi):
            if calls[i].name in names:
                try:
                    if test(calls[i]):
                        self.cursor[step.pid] = i + 1
                        self.matched.append((step, calls[i].line))
                        return i
                except (IndexError, KeyError, ValueError):
                    pass
                seen.append(calls[i].line)
        where = "after the line, before the next" if after_line else \
            "between the previous step's call and this line"
        raise Mismatch(f"no {'/'.join(names)} matching it {where}; strace saw there: "
                       + ("\n      " + "\n      ".join(seen) if seen else "none"))

    def simple(self, step: Step, name: str, compare, after_line: bool = False) -> int:
        """A call of this name whose args compare equal and whose result is the line's."""
        shown = explain_args(step.call)
        return self.find(step, name, lambda c: compare(shown, c.args)
                         and same_result(step.result, c), after_line)

    # Step by step ---------------------------------------------------------------

    def match(self, s: Step) -> None:
        for pattern, reason in NOT_SYSCALLS:
            if re.search(pattern, s.call):
                self.matched.append((s, f"not a system call: {reason}"))
                return
        for pattern, method in TEXT_STEPS:
            m = re.match(pattern, s.call)
            if m:
                return getattr(self, method)(s, m)
        name = re.match(r"^(\w*)", s.call).group(1)
        handler = getattr(self, f"step_{name}", None)
        if handler is None:
            raise Mismatch("no mapping to a system call for this line: "
                           "add one to test_explain_strace.py")
        handler(s)

    def step_clone(self, s):
        flags = flag_set(explain_args(s.call)[0])

        def test(c):
            if c.name == "clone3":
                f = struct_fields(c.args[0])
                got = flag_set(f["flags"]) | flag_set(f.get("exit_signal", "0"))
            else:
                got = flag_set(dict(a.partition("=")[::2] for a in c.args)["flags"])
            return got == flags and same_result(s.result, c)
        self.find(s, ("clone", "clone3"), test)

    def step_waitpid(self, s):
        pid = explain_args(s.call)[0]
        m = re.match(r"^(\d+) \((.*)\)$", s.result)
        if not m:
            raise Mismatch(f"cannot read the result {s.result!r}")
        self.find(s, "wait4", lambda c: c.args[0] == pid and c.ret == int(m.group(1))
                  and wait_status(c.args[1]) == m.group(2))

    def step_kill(self, s):  # printed after the call, with its result
        self.simple(s, "kill", lambda e, a: e == a[:2])

    def step_prlimit(self, s):  # Python's resource.prlimit: prlimit64(2), old limits NULL
        pid, which, limit = re.match(r"^prlimit\((\d+), (\w+), \{(\d+), \d+\}\)$",
                                     s.call).groups()

        def number(token: str) -> int:  # strace writes 1048576 as 1024*1024
            return math.prod(int(n) for n in token.split("*"))

        def test(c):
            limits = struct_fields(c.args[2])
            return (c.args[:2] == [pid, which] and same_result(s.result, c)
                    and number(limits["rlim_cur"]) == number(limits["rlim_max"]) == int(limit))
        self.find(s, "prlimit64", test)

    def step_setsid(self, s):  # the new session's id: the child's pid in its namespace
        self.simple(s, "setsid", lambda e, a: e == a)

    def step_setgroups(self, s):  # setgroups(0, []): strace shows the list alike
        self.simple(s, "setgroups", lambda e, a: e == a)

    def step_setresgid(self, s):
        self.simple(s, "setresgid", lambda e, a: e == a)

    def step_setresuid(self, s):
        self.simple(s, "setresuid", lambda e, a: e == a)

    def step_prctl(self, s):
        self.simple(s, "prctl", lambda e, a: e == a[:2] and all(x == "0" for x in a[2:]))

    def step_capget(self, s):
        self.simple(s, "capget", lambda e, a: True)

    def step_capset(self, s):
        want = int(explain_args(s.call)[0].partition("=")[2], 0)
        self.simple(s, "capset", lambda e, a: bits(struct_fields(a[1])["inheritable"], {})
                    == want)

    def step_seccomp(self, s):
        def same(e, a):
            return e[:2] == a[:2] and struct_fields(e[2])["len"] == struct_fields(a[2])["len"]
        self.simple(s, "seccomp", same)

    def step_close_range(self, s):
        def same(e, a):
            last = "4294967295" if e[1] == "~0U" else e[1]
            return [e[0], last] == a[:2] and flag_set(e[2]) == flag_set(a[2])
        self.simple(s, "close_range", same)

    def step_sethostname(self, s):
        self.simple(s, "sethostname", lambda e, a: unquote(e[0]) == c_string(a[0])
                    and int(a[1]) == len(unquote(e[0]).encode()))

    def step_mount(self, s):
        def same(e, a):
            data = unquote(e[4]) if len(e) > 4 else None
            return ([unquote(x) for x in e[:3]] == [c_string(x) for x in a[:3]]
                    and flag_set(e[3]) == flag_set(a[3]) and data == c_string(a[4]))
        self.simple(s, "mount", same)

    def step_umount2(self, s):
        self.simple(s, "umount2", lambda e, a: unquote(e[0]) == c_string(a[0])
                    and flag_set(e[1]) == flag_set(a[1]))

    def paths(self, s, name):
        self.simple(s, name, lambda e, a: [unquote(x) for x in e] == [c_string(x) for x in a])

    def step_pivot_root(self, s):
        self.paths(s, "pivot_root")

    def step_fstatfs(self, s):  # strace shows the struct, the line only the fd
        self.simple(s, "fstatfs", lambda e, a: e[0] == a[0])

    def step_chdir(self, s):
        self.paths(s, "chdir")

    def step_rmdir(self, s):
        self.paths(s, "rmdir")

    def step_mkdir(self, s):
        self.simple(s, "mkdir", lambda e, a: unquote(e[0]) == c_string(a[0])
                    and int(e[1], 0) == int(a[1], 8))

    def step_mkdirat(self, s):
        self.simple(s, "mkdirat", lambda e, a: e[0] == a[0] and unquote(e[1]) == c_string(a[1])
                    and int(e[2], 0) == int(a[2], 8))

    def step_mknodat(self, s):  # S_IFREG|0o666 here, S_IFREG|0666 in strace
        def same(e, a):
            kind, _, mode = e[2].partition("|")
            got_kind, _, got_mode = a[2].partition("|")
            return (e[0] == a[0] and unquote(e[1]) == c_string(a[1]) and kind == got_kind
                    and int(mode, 0) == int(got_mode, 8))
        self.simple(s, "mknodat", same)

    def step_symlinkat(self, s):
        self.simple(s, "symlinkat", lambda e, a: unquote(e[0]) == c_string(a[0])
                    and e[1] == a[1] and unquote(e[2]) == c_string(a[2]))

    def step_openat2(self, s):
        def same(e, a):
            flags, resolve = split_args(e[2][1:-1])
            how = struct_fields(a[2])
            return (e[0] == a[0] and unquote(e[1]) == c_string(a[1])
                    and flag_set(flags) == flag_set(how["flags"])
                    and flag_set(resolve) == flag_set(how.get("resolve", "0")))
        self.simple(s, "openat2", same)

    def step_open(self, s):  # Python's os.open is openat(AT_FDCWD, ...)
        def same(e, a):
            return (a[0] == "AT_FDCWD" and unquote(e[0]) == c_string(a[1])
                    and flag_set(e[1]) == flag_set(a[2]))
        self.simple(s, "openat", same)

    def step_unshare(self, s):
        self.simple(s, "unshare", lambda e, a: flag_set(e[0]) == flag_set(a[0]))

    def step_setns(self, s):
        path, nstype = explain_args(s.call)
        calls = self.run.calls[s.pid]

        def opened(fd, before):  # the fd was opened from that path
            for c in reversed(calls[:before]):
                if c.name == "openat" and c.ret == int(fd):
                    return c_string(c.args[1]) == path
            return False
        i = self.find(s, "setns", lambda c: flag_set(c.args[1]) == flag_set(nstype)
                      and same_result(s.result, c))
        if not opened(calls[i].args[0], i):
            raise Mismatch(f"setns's fd {calls[i].args[0]} was not opened from {path}")

    def step_socket(self, s):
        def same(e, a):
            proto = {"IPPROTO_IP": "0"}.get(a[2], a[2])
            return e[0] == a[0] and flag_set(e[1]) == flag_set(a[1]) and e[2] == proto
        self.simple(s, "socket", same)

    def step_ioctl(self, s):
        def same(e, a):
            want, got = struct_fields(e[2]), struct_fields(a[2])
            if e[:2] != a[:2] or unquote(want["ifr_name"]) != c_string(got["ifr_name"]):
                return False
            return "ifr_flags" not in want or bits(want["ifr_flags"], IFF) == bits(
                got["ifr_flags"], IFF)
        self.simple(s, "ioctl", same)

    def step_write(self, s):
        """write(/proc/PID/uid_map, '0 1000 1') = ok: open(2) of that file, then one write."""
        path, text = explain_args(s.call)
        text = unquote(text)
        opened = self.find(s, "openat", lambda c: c_string(c.args[1]) == path
                           and "O_WRONLY" in flag_set(c.args[2]) and c.errno is None)
        fd = str(self.run.calls[s.pid][opened].ret)
        i = self.find(s, "write", lambda c: c.args[0] == fd)
        c = self.run.calls[s.pid][i]
        if s.result == "ok":
            if c_string(c.args[1]).strip() != text or c.ret != len(c_string(c.args[1]).encode()):
                raise Mismatch(f"strace saw: {c.line}")
        elif not same_result(s.result, c):
            raise Mismatch(f"strace saw: {c.line}")

    def step_execvp(self, s):
        args = explain_args(s.call)
        program = unquote(args[0])
        calls = self.run.calls[s.pid]

        def tried(c):  # an execve of the program, found as execvp(3) searches PATH
            path = c_string(c.args[0])
            return path == program if "/" in program else path.endswith("/" + program)
        if s.result == "…":  # printed before: what follows is the search of PATH
            argv = ast.literal_eval(args[1])
            window = calls[s.write_at + 1:self.next_write[id(s)]]
            tries = [c for c in window if c.name == "execve" and tried(c)]
            for c in tries:
                if [c_string(x) for x in split_args(c.args[1][1:-1])] != argv:
                    raise Mismatch(f"execve with other arguments: {c.line}")
            done = [i for i, c in enumerate(tries) if c.errno is None]
            if done:  # the search ends at the first execve that succeeds
                self.find(s, "execve", lambda c: c is tries[done[0]], after_line=True)
                return
            # Every attempt failed: the process's next line must say so (step_execvp).
            following = [x for x in self.run.steps if x.pid == s.pid
                         and x.write_at == self.next_write[id(s)]]
            if not tries or not following or not following[0].call.startswith(
                    f"execvp({args[0]})") or not following[0].result.startswith("-1 "):
                raise Mismatch("no execve(2) of it follows: strace saw "
                               + (f"{len(tries)} failed attempt(s) and no line saying so"
                                  if tries else "none at all"))
            return
        # A failure, printed after every attempt: os.execvp raises the first error that
        # is not ENOENT or ENOTDIR, or else the last one.
        lo = self.cursor.get(s.pid, 0)
        tries = [c for c in calls[lo:s.write_at] if c.name == "execve" and tried(c)]
        if not tries or any(c.errno is None for c in tries):
            raise Mismatch("no failed execve of it before the line")
        errors = [c.errno for c in tries]
        worse = [e for e in errors if e not in ("ENOENT", "ENOTDIR")]
        said = re.match(r"^-1 (E\w+)", s.result)
        if not said or said.group(1) != (worse or errors)[-1 if not worse else 0]:
            raise Mismatch(f"the execve attempts failed with {errors}")
        self.cursor[s.pid] = calls.index(tries[-1]) + 1

    def helper(self, s, argv: list, result_ok) -> int:
        """A program started by posix_spawnp(3): a clone (vfork) whose child execs it."""
        def test(c):
            child = self.run.calls.get(c.ret, [])
            execs = [x for x in child if x.name == "execve" and x.errno is None]
            return bool(execs) and [c_string(x) for x in
                                    split_args(execs[0].args[1][1:-1])] == argv
        i = self.find(s, ("clone3", "clone", "vfork"), test)
        pid = self.run.calls[s.pid][i].ret
        if result_ok is not None:  # reaped before the line, with the status it says
            calls = self.run.calls[s.pid]
            waits = [c for c in calls[i:s.write_at] if c.name == "wait4" and c.ret == pid]
            if not waits or (wait_status(waits[-1].args[1]) == "exit status 0") != result_ok:
                raise Mismatch(f"{argv[0]} ({pid}) was reaped with "
                               f"{waits[-1].line if waits else 'no wait4'}")
        return pid

    def tool(self, s, m):  # newuidmap PID 0 1000 1 ... = ok
        self.helper(s, s.call.split(), s.result == "ok")

    def spawn(self, s, m):  # posix_spawnp(slirp4netns ...) = PID
        pid = self.helper(s, m.group(1).split(), None)
        if str(pid) != s.result:
            raise Mismatch(f"posix_spawnp started {pid}, not {s.result}")

    def ready(self, s, m):  # read(ready-fd) = "1": slirp4netns is ready
        self.find(s, "read", lambda c: c_string(c.args[1]) == "1" and c.ret == 1)

    def poll_timeout(self, s, m):
        self.find(s, "poll", lambda c: c.ret == 0)

    def mkdtemp(self, s, m):  # mkdtemp("/tmp/zoo.XXXXXX") = "/tmp/zoo.ab12cd": mkdir(2)
        made = unquote(s.result)
        if not re.fullmatch(re.escape(m.group(1)[:-6]) + r"\w{6}", made):
            raise Mismatch(f"{made} is not a name of the template {m.group(1)}")
        self.find(s, "mkdir", lambda c: c_string(c.args[0]) == made and int(c.args[1], 8)
                  == 0o700 and c.ret == 0)

    def export_bpf(self, s, m):  # seccomp_export_bpf() = N BPF instructions: one write
        size = 8 * int(re.match(r"^(\d+) BPF instructions$", s.result).group(1))
        self.find(s, "write", lambda c: c.args[0] != "2" and int(c.args[2]) == size
                  and c.ret == size)

    def cache_write(self, s, m):  # the cache file, whole or not at all: rename(2)
        path = m.group(1)
        if s.result != "ok":
            raise Mismatch("a failed cache write has no mapping yet")
        name = path.rsplit("/", 1)[1]  # renameat(2) in the cache's directory, by its fd
        self.find(s, "renameat", lambda c: c_string(c.args[3]) == name and c_string(c.args[1])
                  == f"{name}.{s.pid}" and c.args[0] == c.args[2] and c.ret == 0)

    def cache_read(self, s, m):  # read the seccomp program cached in PATH = N instructions
        path, size = m.group(1), 8 * int(s.result.split()[0])
        name = path.rsplit("/", 1)[1]  # opened in the cache's directory, by its fd
        i = self.find(s, "openat", lambda c: c_string(c.args[1]) == name and c.errno is None)
        fd = str(self.run.calls[s.pid][i].ret)
        self.find(s, "read", lambda c: c.args[0] == fd and c.ret > size)

    def stat(self, s, m):
        path = unquote(m.group(1))
        self.find(s, ("newfstatat", "stat", "statx"), lambda c: c_string(
            c.args[1] if c.name != "stat" else c.args[0]) == path and same_result(s.result, c))

    def flock(self, s, m):
        i = self.find(s, "openat", lambda c: c_string(c.args[1]) == m.group(1)
                      and c.errno is None)
        fd = str(self.run.calls[s.pid][i].ret)
        self.find(s, "flock", lambda c: c.args == [fd, m.group(2)] and same_result(s.result, c))

    def orphan(self, s, m):
        self.find(s, "rmdir", lambda c: c_string(c.args[0]) == m.group(1) and c.ret == 0)


# Lines whose call is not "name(args)" of a system call of that name: (pattern, method).
TEXT_STEPS = [
    (r"^(?:newuidmap|newgidmap) \d+( \d+)+$", "tool"),
    (r"^posix_spawnp\((.*)\)$", "spawn"),
    (r"^read\(ready-fd\)$", "ready"),
    (r"^poll\(ready-fd\)$", "poll_timeout"),
    (r'^mkdtemp\("(.*)"\)$', "mkdtemp"),
    (r"^seccomp_export_bpf\(\)$", "export_bpf"),
    (r"^cache the seccomp program in (\S+)$", "cache_write"),
    (r"^read the seccomp program cached in (\S+)$", "cache_read"),
    (r"^stat\((.*)\)$", "stat"),
    (r"^flock\((\S+), (\w+)\)$", "flock"),
    (r"^remove (\S+), left by a zookeeper that was killed$", "orphan"),
]

def check(run: Run) -> list:
    return Matcher(run).check()


# Explain mode's lies found so far, each xfailed with what strace saw: (part, pattern on
# the problem, the finding).  Empty: every step checked here tells the truth.
KNOWN_LIES: list = []  # none left: the empty command is refused before its line


# The runs ------------------------------------------------------------------------------


def zookeeper_argv(runner: Runner, case: str, rootfs: Path) -> list:
    part, options, command, _ = CASES[case]
    options = [str(rootfs) if a == "ROOTFS" else a for a in options]
    return [runner.python, str(runner.workdir / PARTS[part] / "zookeeper.py"), "-v", *options,
            *command]


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str
    cache: str


def launch(runner: Runner, part: int, argv: list) -> Result:
    """argv as the test user would run it (its own fresh seccomp cache, so both runs
    compile the filter); part 6's in a namespace whose /dev/net/tun is 0666."""
    cache = str(runner.fresh_dir())
    if part == 6:
        argv = with_tun("666", argv)
    done = subprocess.run(argv, env=runner.env({"XDG_CACHE_HOME": cache}), cwd=runner.workdir,
                          capture_output=True, timeout=60)
    return Result(done.returncode, done.stdout.decode(errors="replace"),
                  done.stderr.decode(errors="replace"), cache)


@pytest.fixture(scope="module")
def runs(user_runner: Runner, rootfs_for, tmp_path_factory):
    """runs(case) -> (the run without strace, the traced run, its Run), made once."""
    if STRACE is None:
        pytest.fail("strace is not installed: run tools/setup-test-env.sh (make test does)")
    made = {}

    def get(case: str):
        if case not in made:
            part = CASES[case][0]
            zk = zookeeper_argv(user_runner, case, rootfs_for(user_runner))
            plain = launch(user_runner, part, user_runner.command(zk))
            trace_dir = tmp_path_factory.mktemp(f"strace-{case}")
            # As root, so that newuidmap and newgidmap keep their setuid bits; -u runs
            # zookeeper as the user (with its groups, initgroups(3), as setpriv does).
            traced = launch(user_runner, part, [STRACE, "-u", TEST_USER, "-f", "-ff", "-qq",
                                                "-s", "4096", "-o", str(trace_dir / "trace"),
                                                *zk])
            made[case] = (plain, traced, load_run(trace_dir, traced.stdout, traced.stderr))
        return made[case]

    return get


def users_view(result: Result) -> dict:
    """What the user saw: the command's output, and each process's steps with the
    numbers that differ from run to run (pids, temporary names, timings) left out."""
    text = result.stderr.replace(result.cache, "CACHE")
    text = re.sub(r"/tmp/zoo\.\w{6}", "/tmp/zoo.XXXXXX", text)
    pids = re.findall(r"^zookeeper: (?:clone|posix_spawnp)\(.*\) = (\d+)", text, re.M)
    for n, pid in enumerate(pids):
        text = re.sub(rf"\b{pid}\b", f"PID{n}", text)
    steps = {}
    for line in text.splitlines():
        m = re.match(r"^zookeeper: (\[PID\d\] )?(.*)$", line)
        # What another user's killed zookeeper left in /tmp is removed by whichever run
        # comes first: not a difference between these two.
        if m and not m.group(2).endswith("left by a zookeeper that was killed = ok"):
            parts = split_step(m.group(2))
            steps.setdefault(m.group(1) or "parent", []).append(
                " = ".join(parts) if parts else m.group(2))
    return {"output": result.stdout, "steps": steps}


@pytest.mark.parametrize("case", list(CASES))
def test_every_step_is_a_system_call_strace_saw(runs, case):
    plain, traced, run = runs(case)
    status = CASES[case][3]
    assert plain.status == status, plain.stderr
    assert traced.status == status, traced.stderr
    # strace changes nothing the user sees: the same ids, maps and hostname, the same steps.
    assert users_view(traced) == users_view(plain)
    if CASES[case][0] >= 2:  # newuidmap and newgidmap mapped the subordinate ranges
        assert len(re.findall(r"^ +1 +\d+ +\d+$", traced.stdout, re.M)) == 2, traced.stdout
    child = [s for s in run.steps if s.pid != run.parent]
    assert child and len(run.steps) > len(child), "no steps of the parent or the child"
    problems = check(run)
    known = {p: reason for p in problems for lie_case, pattern, reason in KNOWN_LIES
             if lie_case == case and re.search(pattern, p)}
    unknown = [p for p in problems if p not in known]
    assert not unknown, (f"{len(unknown)} step(s) of the -v trace of {case} are not what "
                         "strace saw:\n" + "\n".join(unknown))
    if known:
        pytest.xfail("; ".join(sorted(set(known.values()))))


# The matcher can fail ----------------------------------------------------------------


def changed(field_name: str, pattern: str, replacement: str):
    """An edit of a step: the first match of pattern in its call or result replaced;
    False if there is none."""
    def edit(step) -> bool:
        text = getattr(step, field_name)
        setattr(step, field_name, re.sub(pattern, replacement, text, count=1))
        return getattr(step, field_name) != text
    return edit


@pytest.mark.parametrize("case, step_pattern, edit", [
    # Arguments: a flag, a path, a mode (octal, as explain mode prints it), a number.
    ("part4", r'^mount\(NULL, "/"', changed("call", r"MS_REC\|MS_PRIVATE", "MS_PRIVATE")),
    ("part4", r"^pivot_root\(", changed("call", r'"\."\)$', '"/")')),
    ("part4", r'^mkdirat\(\d+, "shm"', changed("call", "0o1777", "0o755")),
    ("part4", r'^mknodat\(\d+, "zero"', changed("call", "0o666", "0o644")),
    ("part4", r'^symlinkat\("/proc/self/fd/1"', changed("call", r'"stdout"\)$', '"stderr")')),
    ("part1", r"^close_range\(", changed("call", r"^close_range\(3,", "close_range(4,")),
    ("part4", r"^seccomp\(", changed("call", r"len=(\d+)", r"len=1\1")),
    ("part4", r"^capset\(", changed("call", "0x0", "0x1")),
    ("part6", r"^socket\(", changed("call", "SOCK_DGRAM", "SOCK_STREAM")),
    ("part6", r"^ioctl\(", changed("call", "'lo'", "'eth0'")),
    # The parent's: clone without a namespace, a helper's arguments, kill's signal.
    ("part4", r"^clone\(", changed("call", r"CLONE_NEWPID\|", "")),
    ("part4", r"^newgidmap ", changed("call", r" 0 ", " 1 ")),
    ("part6", r"^posix_spawnp\(", changed("call", "--disable-host-loopback ", "")),
    ("part6", r"^kill\(", changed("call", "SIGTERM", "SIGKILL")),
    ("part4", r"^mkdtemp\(", changed("result", r'\w"$', 'Q"')),
    ("part4", r"^seccomp_export_bpf\(", changed("result", r"^(\d+)", r"1\1")),
    # Results: success where the kernel said EEXIST, a failure where it said 0, a wait
    # status, execvp's errno.
    ("part4", r'^mkdirat\(\d+, "dev"', changed("result", r"-1 EEXIST \(File exists\)", "0")),
    ("part4", r"^sethostname\(", changed("result", "^0$", "-1 EPERM (Operation not permitted)")),
    ("part4", r"^setsid\(", changed("result", "^1$", "2")),
    ("part4", r"^waitpid\(", changed("result", "exit status 0", "exit status 1")),
    ("part6", r"^waitpid\(.*\)$", changed("result", "killed by SIGTERM", "exit status 0")),
    ("part1-not-found", r"^execvp\('no-such-command-zk'\)$", changed("result", "ENOENT", "EACCES")),
    ("part1-not-executable", r"^execvp\('/etc/passwd'\)$", changed("result", "EACCES", "ENOENT")),
    ("part1", r"^execvp\('sh', ", changed("call", "'id; ", "'")),
    # A step that names no system call at all.
    ("part4", r"^umount2\(", changed("call", "^umount2", "umount3")),
])
def test_matcher_reports_a_changed_step(runs, case, step_pattern, edit):
    run = runs(case)[2]
    assert not check(run)
    bad = copy.deepcopy(run)
    step = next(s for s in bad.steps if re.search(step_pattern, s.call) and edit(s))
    problems = check(bad)
    assert any(p.startswith(step.text.strip()) for p in problems), problems


@pytest.mark.parametrize("case, step_pattern", [
    ("part4", r"^pivot_root\("),  # the child's chdir(new root) and pivot_root
    ("part4", r"^rmdir\("),  # the parent's waitpid and rmdir
    ("part6", r"^read\(ready-fd\)"),  # the parent's posix_spawnp and read
])
def test_matcher_reports_a_step_moved(runs, case, step_pattern):
    """A step printed before the one before it: each names a call that happened on the
    other side of its line."""
    run = copy.deepcopy(runs(case)[2])
    second = next(s for s in run.steps if re.search(step_pattern, s.call))
    first = [s for s in run.steps if s.pid == second.pid and s.write_at < second.write_at][-1]
    (first.call, first.result), (second.call, second.result) = \
        (second.call, second.result), (first.call, first.result)
    problems = check(run)
    assert any(p.startswith((first.text.strip(), second.text.strip())) for p in problems), \
        problems


def test_matcher_reports_a_line_strace_did_not_see_written(runs):
    """A line on stderr that the process did not write (a step made up afterwards)."""
    _, traced, run = runs("part1")
    lines = traced.stderr.splitlines()
    at = next(i for i, x in enumerate(lines) if "close_range(" in x)
    lines[at] = lines[at].replace(", 0) = 0", ", CLOSE_RANGE_CLOEXEC) = 0")
    problems = check(load_run(run.trace_dir, traced.stdout, "\n".join(lines) + "\n"))
    assert any("not the write(2)s strace saw" in p for p in problems), problems
