"""The grader's checks: black-box tests of a submission's partN_*/zookeeper.py.

Each check runs the submission with the course's command line and inspects what
comes out.  A check has a part, a name, points, a timeout, and a visibility: public
checks are the ones a student may see and run (`--public`); the rest are hidden.

A check is a function of a Context (see runner.py): `z.zk(part, *args)` runs
zookeeper, `z.expect(condition, message)` fails the check with a readable message.
Standard library only: this runs inside the grader's VM with Debian's python3.
"""

CHECKS = []


class Check:
    def __init__(self, fn, part, name, points, timeout, public, needs):
        self.fn, self.part, self.name = fn, part, name
        self.points, self.timeout, self.public, self.needs = points, timeout, public, needs

    @property
    def id(self) -> str:
        return self.fn.__name__


def check(part: int, name: str, points: int, timeout: float = 60, public: bool = True,
          needs: tuple = ()):
    """Register a check.  `needs` names what the machine must offer (see runner.MACHINE)."""

    def register(fn):
        CHECKS.append(Check(fn, part, name, points, timeout, public, needs))
        return fn

    return register


SEGFAULT = "import ctypes; ctypes.string_at(0)"
DROPPED_CAPS = {"CAP_AUDIT_CONTROL": 30, "CAP_AUDIT_READ": 37, "CAP_AUDIT_WRITE": 29,
                "CAP_BLOCK_SUSPEND": 36, "CAP_DAC_READ_SEARCH": 2, "CAP_FSETID": 4,
                "CAP_IPC_LOCK": 14, "CAP_MAC_ADMIN": 33, "CAP_MAC_OVERRIDE": 32,
                "CAP_MKNOD": 27, "CAP_SETFCAP": 31, "CAP_SYSLOG": 34, "CAP_SYS_ADMIN": 21,
                "CAP_SYS_BOOT": 22, "CAP_SYS_MODULE": 16, "CAP_SYS_NICE": 23,
                "CAP_SYS_RAWIO": 17, "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25,
                "CAP_WAKE_ALARM": 35}
NAMESPACES = ["user", "cgroup", "ipc", "net", "mnt", "pid", "uts"]


# Part 1: clone, wait, exit like the child ------------------------------------------


@check(1, "exit status is the container's", 3)
def p1_exit_status(z):
    r = z.zk(1, "sh", "-c", "echo hello; exit 42")
    z.expect(r.stdout == "hello\n", "the command's output should be 'hello'", r)
    z.expect(r.status == 42, f"exit status should be 42, got {r.status_text}", r)


@check(1, "death by the child's signal", 3)
def p1_signal(z):
    r = z.zk(1, z.python, "-c", SEGFAULT)
    z.expect(r.signal == 11, f"zookeeper should die of SIGSEGV (139), got {r.status_text}", r)


@check(1, "command not found 127, not executable 126", 3)
def p1_exec_errors(z):
    r = z.zk(1, "no-such-command-zk")
    z.expect(r.status == 127, f"a missing command should give 127, got {r.status_text}", r)
    z.expect(r.stderr.count("\n") <= 3 and "Traceback" not in r.stderr,
             "a missing command should be one line on stderr, not a traceback", r)
    r = z.zk(1, z.plain_file())
    z.expect(r.status == 126, f"a non-executable file should give 126, got {r.status_text}", r)


@check(1, "SIGTERM reaches the container", 3, public=False)
def p1_sigterm(z):
    r = z.zk(1, "sh", "-c", "trap 'echo got-term; kill $!; exit 9' TERM; sleep 30 & wait",
             send_signal=("TERM", 2.0))
    z.expect("got-term" in r.stdout and r.status == 9,
             f"the container should get SIGTERM and exit 9, got {r.status_text}", r)


@check(1, "no process left behind", 3, public=False)
def p1_no_leftovers(z):
    r = z.zk(1, "sh", "-c", "sleep 0.2")
    z.expect(r.status == 0, f"should exit 0, got {r.status_text}", r)
    z.expect(not z.processes_matching("zookeeper.py"), "a zookeeper process is still running")


# Part 2: namespaces, id maps, hostname ----------------------------------------------


@check(2, "root inside, with both id map lines", 4)
def p2_id_maps(z):
    r = z.zk(2, "sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/gid_map")
    out = r.stdout.split("\n")
    z.expect(r.status == 0 and out[0] == "0", "the container's user should be root (uid 0)", r)
    maps = [line.split() for line in out[1:] if line.strip()]
    start, count = z.subid_range()
    z.expect(maps[:2] == [["0", str(z.uid), "1"], ["1", str(start), str(count)]],
             f"uid_map should map 0 to {z.uid} and 1..{count} to {start}..", r)
    z.expect(maps[2:4] == [["0", str(z.gid), "1"], ["1", str(start), str(count)]],
             f"gid_map should map 0 to {z.gid} and 1..{count} to {start}..", r)


@check(2, "hostname is zoo", 2)
def p2_hostname(z):
    r = z.zk(2, "hostname")
    z.expect(r.stdout.strip() == "zoo", f"hostname should be zoo, got {r.stdout.strip()!r}", r)


@check(2, "the command is PID 1", 2)
def p2_pid1(z):
    r = z.zk(2, "sh", "-c", "echo $$")
    z.expect(r.stdout.strip() == "1", f"the command's pid should be 1, got {r.stdout.strip()!r}",
             r)


@check(2, "seven new namespaces", 4)
def p2_namespaces(z):
    script = "; ".join(f"readlink /proc/self/ns/{ns}" for ns in NAMESPACES)
    inside = z.zk(2, "sh", "-c", script).stdout.split()
    outside = z.host(["sh", "-c", script]).stdout.split()
    same = [ns for ns, a, b in zip(NAMESPACES, inside, outside) if a == b]
    z.expect(len(inside) == len(NAMESPACES) and not same,
             f"these namespaces are the host's: {', '.join(same) or 'all'}")


@check(2, "only lo in the network namespace", 3, public=False)
def p2_only_lo(z):
    r = z.zk(2, "cat", "/proc/self/net/dev")
    names = sorted(x.split(":")[0].strip() for x in r.stdout.splitlines() if ":" in x)
    z.expect(names == ["lo"], f"network interfaces should be only lo, got {names}", r)


# Part 3: capabilities and seccomp --------------------------------------------------


@check(3, "dangerous capabilities dropped", 4)
def p3_capabilities(z):
    r = z.zk(3, "cat", "/proc/self/status")
    fields = dict(x.split(":\t", 1) for x in r.stdout.splitlines() if ":\t" in x)
    z.expect("CapBnd" in fields, "could not read /proc/self/status in the container", r)
    bounding = int(fields["CapBnd"], 16)
    kept = [name for name, bit in DROPPED_CAPS.items() if bounding & (1 << bit)]
    z.expect(not kept, f"still in the bounding set: {', '.join(kept)}", r)
    z.expect(int(fields["CapInh"], 16) == 0 and int(fields["CapAmb"], 16) == 0,
             "inheritable and ambient capabilities should be empty", r)


@check(3, "no_new_privs and a seccomp filter", 3)
def p3_nnp_seccomp(z):
    r = z.zk(3, "grep", "-E", "^(NoNewPrivs|Seccomp):", "/proc/self/status")
    fields = dict(x.split(":\t", 1) for x in r.stdout.splitlines() if ":\t" in x)
    z.expect(fields.get("NoNewPrivs") == "1", "NoNewPrivs should be 1", r)
    z.expect(fields.get("Seccomp") == "2", "Seccomp should be 2 (filter mode)", r)


def seccomp_rules(z, names: list[str]):
    """Try syscalls inside the container and outside; inside must refuse each."""
    inside = z.try_syscalls(3, names)
    outside = z.try_syscalls(None, names)
    for name in names:
        expected = "ENOSYS" if name == "clone3" else "EPERM"
        z.expect(inside.get(name) == expected,
                 f"{name} inside should fail with {expected}, got {inside.get(name)}")
        z.expect(outside.get(name) not in ("EPERM", "ENOSYS", None),
                 f"{name} outside the container gave {outside.get(name)} (grader problem)")


@check(3, "seccomp: no setuid or setgid files", 3)
def p3_seccomp_chmod(z):
    seccomp_rules(z, ["chmod_setuid", "chmod_setgid", "fchmod_setuid", "fchmodat_setuid"])


@check(3, "seccomp: no nested user namespaces", 2, public=False)
def p3_seccomp_userns(z):
    seccomp_rules(z, ["unshare_user", "clone_user", "clone3"])


@check(3, "seccomp: keyring, ptrace, NUMA, userfaultfd, perf, TIOCSTI", 3, public=False)
def p3_seccomp_rest(z):
    seccomp_rules(z, ["ioctl_tiocsti", "keyctl", "add_key", "request_key", "ptrace", "mbind",
                      "migrate_pages", "move_pages", "set_mempolicy", "userfaultfd",
                      "perf_event_open"])
