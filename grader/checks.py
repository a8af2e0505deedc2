"""The grader's checks: black-box tests of a submission's partN_*/zookeeper.py.

Each check runs the submission with the course's command line and inspects what
comes out.  A check has a part, a name, points, a timeout, and a visibility: public
checks are the ones a student may see and run (`--public`); the rest are hidden.

A check is a function of a Context (see runner.py), its z: `z.zk(part, *args)` runs
zookeeper, `z.expect(condition, message)` fails the check with a readable message;
z.user is the user zookeeper runs as, z.left finds what a command left behind,
z.rootfs() and z.server() set up what a check needs.
Standard library only: this runs inside the grader's VM with Debian's python3.
"""

CHECKS = []


class Check:
    def __init__(self, fn, part, name, points, timeout, public, needs, exercises="",
                 other_users=False):
        self.fn, self.part, self.name = fn, part, name
        self.points, self.timeout, self.public, self.needs = points, timeout, public, needs
        self.exercises = exercises  # what a failure points the student to
        self.other_users = other_users

    @property
    def id(self) -> str:
        return self.fn.__name__


def check(part: int, name: str, points: int, timeout: float = 60, public: bool = True,
          needs: tuple = (), exercises: str = "", other_users: bool = False):
    """Register a check.  `needs` names what the machine must offer (see runner.Machine);
    `exercises` what a failure points to ("q4-q5: the child before exec"), added to its
    message.  `other_users`: the check runs commands as root or as another user than
    the graded one.  The runner may run checks side by side, each lane as a user of
    its own (its /tmp/zoo.*, cgroups and processes tell apart by owner), but root's
    are one per machine (its /tmp/zoo.*, the zoo0 bridge): these checks run in the
    first lane only, one after the other."""

    def register(fn):
        CHECKS.append(Check(fn, part, name, points, timeout, public, needs, exercises,
                            other_users))
        return fn

    return register


def selected(parts=None, only=None, public=False) -> list:
    """The checks a run asked for: of these parts, these ids or names, public only."""
    return [c for c in CHECKS
            if (not parts or c.part in parts)
            and (not only or c.id in only or c.name in only)
            and (c.public or not public)]


# Each command a check runs has a time limit: COMMAND_SECONDS unless it says (z.zk(...,
# timeout=N)), times the runner's --timeout-scale (6 under TCG), plus the wait before a
# signal it is sent. A command that reaches it fails the check, whatever it printed.
# Measured under TCG (2 vCPUs, 2026-11-22), the references' slowest plain command took
# 1.6 s and the root veth run 3.0 s (limit 24 s); the memory hog (dd) with its control
# 3.3 s (90 s; 16.5 s with the shell-variable hog before 2026-12-01), the CPU burn 4.9 s
# (60 s); locally each is a small fraction of its limit. A zookeeper that never returns
# costs a check about its first command's limit (a part 6 that waits for slirp4netns
# forever: 26, 92, 25 and 25 s in the VM when it was 4 s): with every check hanging,
# ~20 minutes under TCG instead of hours.  On a host loaded past its cores (two guests
# with --jobs 2 beside a test suite, 2026-12-02), the slowest plain command took 8.9 s
# (p6_helper_gone) and the root veth run 8.6 s: 4 s (24) left 2.7x, 6 s (36) leaves 4x.
COMMAND_SECONDS = 6

# A command a check sends a signal to prints this line when it is ready for it (its
# trap set, its container up): the runner sends the signal then, not after a fixed
# wait (see runner.Commands.run; a submission that never prints it gets the wait).
READY = "zoo-ready"

SEGFAULT = "import ctypes; ctypes.string_at(0)"
# Part 1's commands say on stderr who their parent is: zookeeper, which cloned them and
# waits.  A zookeeper that only execs the command has no child: the command's parent
# is the grader's own process.
SAY_PARENT = "tr '\\0' ' ' < /proc/$PPID/cmdline >&2"
DROPPED_CAPS = {"CAP_AUDIT_CONTROL": 30, "CAP_AUDIT_READ": 37, "CAP_AUDIT_WRITE": 29,
                "CAP_BLOCK_SUSPEND": 36, "CAP_DAC_READ_SEARCH": 2, "CAP_FSETID": 4,
                "CAP_IPC_LOCK": 14, "CAP_MAC_ADMIN": 33, "CAP_MAC_OVERRIDE": 32,
                "CAP_MKNOD": 27, "CAP_NET_ADMIN": 12, "CAP_NET_RAW": 13, "CAP_SETFCAP": 31,
                "CAP_SYSLOG": 34, "CAP_SYS_ADMIN": 21, "CAP_SYS_BOOT": 22,
                "CAP_SYS_MODULE": 16, "CAP_SYS_NICE": 23, "CAP_SYS_RAWIO": 17,
                "CAP_SYS_RESOURCE": 24, "CAP_SYS_TIME": 25, "CAP_WAKE_ALARM": 35}
NAMESPACES = ["user", "cgroup", "ipc", "net", "mnt", "pid", "uts"]


# Part 1: clone, wait, exit like the child ------------------------------------------


def expect_child_of_zookeeper(z, r) -> None:
    """The command (which ran SAY_PARENT) was zookeeper's child, not zookeeper itself."""
    z.expect("zookeeper.py" in r.stderr, "the command's parent should be zookeeper: clone(2) "
             "a child to run it and wait for it (q1-q3), rather than become the command", r)


def expect_children_reaped(z, r, hint: str) -> None:
    """zookeeper waits for every child it starts.  One it never waited for outlives
    it, dead (a zombie) or dying, and comes back to the runner, its caller's
    subreaper (Run.unreaped): a child that never exec'd and was cloned without
    SIGCHLD, which waitpid(2) without __WALL does not see, or a helper killed but
    not waited for."""
    z.expect(not r.unreaped, "zookeeper returned without waiting for its child "
             f"{', '.join(r.unreaped)}, left to its caller ({hint})", r)


@check(1, "exit status is the container's", 3,
       exercises="q1-q5 (clone, go, wait for go, execvp, waitpid(2): the exit status)")
def p1_exit_status(z):
    r = z.zk(1, "sh", "-c", f"echo hello; {SAY_PARENT}; exit 42")
    z.expect(r.stdout == "hello\n", "the command's output should be 'hello': did the child "
             "run it?  clone (q1), the parent's go (q2) and wait (q3), the child's wait for "
             "go (q4), its execvp (q5)", r)
    z.expect(r.status == 42, f"exit status should be 42, got {r.status_text}", r)
    expect_child_of_zookeeper(z, r)


@check(1, "death by the child's signal", 3,
       exercises="q3 (waitpid(2)'s whole wait status kept in `status`: the given exit_like() "
       "dies of the child's signal), once q1, q2, q4 and q5 run the command")
def p1_signal(z):
    r = z.zk(1, "sh", "-c", f"{SAY_PARENT}; exec \"$0\" -c \"$1\"", z.python, SEGFAULT)
    z.expect(r.signal == 11, f"zookeeper should die of SIGSEGV (139), got {r.status_text}", r)
    expect_child_of_zookeeper(z, r)


@check(1, "command not found 127, not executable 126", 3,
       exercises="q5 (exec_command: execvp, and 127 and 126 when it fails), once q1-q4 let "
       "the child reach it")
def p1_exec_errors(z):
    r = z.zk(1, "no-such-command-zk")
    z.expect(r.status == 127, f"a missing command should give 127, got {r.status_text}", r)
    z.expect(len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr,
             "a missing command should be one line on stderr (no traceback)", r)
    expect_children_reaped(z, r, "a child that never exec'd is waited for only if clone's "
                           "flags hold SIGCHLD, q1, and waitpid(2) is called for it, q3")
    r = z.zk(1, z.plain_file())
    z.expect(r.status == 126, f"a non-executable file should give 126, got {r.status_text}", r)
    # A file in PATH where a directory should be: execvp's last error is ENOTDIR, and
    # the command is still not found (127, as a shell says).
    r = z.zk(1, "no-such-command-zk", env={"PATH": f"/usr/bin:/bin:{z.plain_file()}"})
    z.expect(r.status == 127, "a missing command should give 127 also when PATH holds a "
             f"file (execvp fails with ENOTDIR), got {r.status_text}", r)


@check(1, "SIGTERM reaches the container", 2, public=False,
       exercises="q1-q3 (clone, go, wait: the parent forwards signals to its child), once "
       "q4 and q5 run the command")
def p1_sigterm(z):
    # A trap runs once the command in progress ends: short sleeps, not one `wait`
    # (a signal that comes before the wait begins would wait for its child), and
    # shorter than the 2 s a given zookeeper waits before it kills what ignores it
    # (the given code sends it to the container's process group: the sleep dies too).
    r = z.zk(1, "sh", "-c", f"trap 'echo got-term; exit 9' TERM; {SAY_PARENT}; "
             f"echo {READY}; i=0; while [ $i -lt 150 ]; do sleep 0.2; i=$((i+1)); done",
             send_signal=("TERM", 2.0))
    z.expect("got-term" in r.stdout and r.status == 9,
             f"the container should get SIGTERM and exit 9, got {r.status_text}", r)
    expect_child_of_zookeeper(z, r)


@check(1, "no process left behind", 2, public=False, exercises="q3 (wait for the child)")
def p1_no_leftovers(z):
    r = z.zk(1, "sh", "-c", f"{SAY_PARENT}; sleep 0.2")
    z.expect(r.status == 0, f"should exit 0, got {r.status_text}", r)
    expect_child_of_zookeeper(z, r)
    left = z.left.processes(r, "zookeeper.py")
    z.expect(not left, f"a zookeeper process is still running: {', '.join(left)}")



@check(1, "only fds 0-2 reach the command", 1, public=False,
       exercises="the child just before exec (q4-q5, clean_process_state)")
def p1_fds(z):
    # runc's CVE-2024-21626: an fd open in the caller (here of /etc) reaches the
    # container, and through it the host's files (/proc/self/fd/7/..).
    # The command's own fds, listed by the program it execs (no pipeline: a shell's
    # pipe to another process would be one more fd for a moment); ls's own fd of
    # /proc/self/fd is left out.
    r = z.zk(1, "sh", "-c", f"{SAY_PARENT}; readlink /proc/$$/fd/7 && echo fd-7-open; "
             "exec ls -l /proc/self/fd", shell="exec 7</etc")
    links = [line.split(" -> ", 1) for line in r.stdout.splitlines() if " -> " in line]
    fds = sorted((name.split()[-1] for name, target in links
                  if name.split() and not target.endswith("/fd")),
                 key=lambda fd: int(fd) if fd.isdecimal() else -1)
    z.expect(r.status in (0, 1) and "0" in fds, "could not list the command's fds", r)
    z.expect("fd-7-open" not in r.stdout, "an fd open in zookeeper's caller (fd 7, of /etc) "
             "is open in the command: only 0, 1 and 2 should reach it (close_range(2))", r)
    z.expect(fds == ["0", "1", "2"], f"the command should get only fds 0, 1 and 2, got "
             f"{', '.join(fds)}", r)
    expect_child_of_zookeeper(z, r)


def hex_fields(output: str, names: tuple) -> dict[str, int]:
    """/proc/PID/status's fields of these names that hold a hex number: {"SigIgn":
    0x1000, ...}.  What the submission printed may be anything: a line that is no such
    field is left out, never an exception (a check's own error is the grader's)."""
    fields = {}
    for line in output.splitlines():
        name, tab, value = line.partition(":\t")
        if tab and name in names and is_hex(value):
            fields[name] = int(value, 16)
    return fields


def is_hex(text: str) -> bool:
    return bool(text) and len(text) <= 64 and all(c in "0123456789abcdefABCDEF" for c in text)


def signal_fields(output: str) -> dict[str, int]:
    """/proc/PID/status's signal masks: {"SigIgn": 0x1000, ...}."""
    return hex_fields(output, ("SigPnd", "SigBlk", "SigIgn", "SigCgt"))


def signal_names(mask: int) -> str:
    import signal

    names = []
    for number in range(1, 65):
        if mask & (1 << (number - 1)):
            try:
                names.append(signal.Signals(number).name)
            except ValueError:
                names.append(f"signal {number}")
    return ", ".join(names)


PYTHON_IGNORES = (1 << (13 - 1)) | (1 << (25 - 1))  # SIGPIPE, SIGXFSZ


@check(1, "the command starts with default signals, none blocked", 1, public=False,
       exercises="the child just before exec (q4-q5, clean_process_state)")
def p1_signal_state(z):
    outside = signal_fields(z.host(["grep", "^Sig", "/proc/self/status"]).stdout)
    z.expect(outside and not outside["SigIgn"] & PYTHON_IGNORES and not outside["SigBlk"],
             f"on the host, a command starts with {signal_names(outside.get('SigIgn', 0))} "
             "ignored or a mask (grader problem)")
    r = z.zk(1, "grep", "^Sig", "/proc/self/status")
    inside = signal_fields(r.stdout)
    z.expect(r.status == 0 and {"SigIgn", "SigBlk"} <= inside.keys(), "could not read the "
             "command's /proc/self/status", r)
    extra = inside["SigIgn"] & ~outside["SigIgn"]
    z.expect(not extra, f"the command starts with {signal_names(extra)} ignored (Python's "
             "own dispositions survive exec: set them back to SIG_DFL)", r)
    z.expect(not inside["SigBlk"], f"the command starts with {signal_names(inside['SigBlk'])} "
             "blocked: its signal mask should be empty", r)
    r = z.zk(1, "sh", "-c", "yes | head -n 1")
    z.expect(r.stdout == "y\n" and "Broken pipe" not in r.stderr,
             "`yes | head -n 1` should print y and nothing else (SIGPIPE ignored makes yes "
             "say 'Broken pipe')", r)

# Part 2: namespaces, id maps, hostname ----------------------------------------------


@check(2, "root inside, with both id map lines", 4, exercises="q7 (write_id_maps)")
def p2_id_maps(z):
    r = z.zk(2, "sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/gid_map")
    out = r.stdout.split("\n")
    z.expect(r.status == 0 and out[0] == "0", "the container's user should be root (uid 0)", r)
    maps = [line.split() for line in out[1:] if line.strip()]
    # In the grader's VM the student's subuid and subgid ranges differ (100000 and
    # 300000): a gid map built from the subuid range is wrong there.
    start, count = z.user.subid_range("subuid")
    got = " / ".join(" ".join(line) for line in maps[:2])
    z.expect(maps[:2] == [["0", str(z.user.uid), "1"], ["1", str(start), str(count)]],
             f"uid_map should map 0 to {z.user.uid} and 1..{count} to {start}.. (/etc/subuid), "
             f"got {got or 'nothing'}", r)
    start, count = z.user.subid_range("subgid")
    got = " / ".join(" ".join(line) for line in maps[2:4])
    z.expect(maps[2:4] == [["0", str(z.user.gid), "1"], ["1", str(start), str(count)]],
             f"gid_map should map 0 to {z.user.gid} and 1..{count} to {start}.. (/etc/subgid), "
             f"got {got or 'nothing'}", r)


@check(2, "hostname is zoo", 2,
       exercises="q8 (set_hostname), once q7's id maps make the child root")
def p2_hostname(z):
    r = z.zk(2, "hostname")
    z.expect(r.stdout.strip() == "zoo", f"hostname should be zoo, got {r.stdout.strip()!r}", r)


@check(2, "the command is PID 1", 2,
       exercises="q6 (the clone's namespace flags, SIGCHLD kept), once q7's id maps make "
       "the child root")
def p2_pid1(z):
    r = z.zk(2, "sh", "-c", "echo $$")
    z.expect(r.stdout.strip() == "1", f"the command's pid should be 1, got {r.stdout.strip()!r}",
             r)
    # A child that never execs: waitpid(2) sees its end only if the clone's flags
    # still hold SIGCHLD (after an exec the kernel resets the exit signal).  Its 127
    # comes through the error pipe either way: what tells is who reaped it.
    r = z.zk(2, "no-such-command-zk")
    z.expect(r.status == 127, "a missing command should give 127 in the namespaces too, got "
             f"{r.status_text}", r)
    expect_children_reaped(z, r, "do the clone's flags still hold SIGCHLD? q6: flags |= ...")


@check(2, "seven new namespaces", 4,
       exercises="q6 (the clone's namespace flags), once q7's id maps make the child root")
def p2_namespaces(z):
    script = "; ".join(f"readlink /proc/self/ns/{ns}" for ns in NAMESPACES)
    r = z.zk(2, "sh", "-c", script)
    inside = r.stdout.split()
    outside = z.host(["sh", "-c", script]).stdout.split()
    # A zookeeper that stops before the command (q7 not written yet, say) shows no
    # namespace at all: that is its failure, not q6's.
    z.expect(len(inside) == len(NAMESPACES) or not (r.status == 125 or "zookeeper: " in
                                                    r.stderr),
             f"zookeeper failed before the command ran ({r.status_text}), so its "
             "namespaces could not be read", r)
    z.expect(len(inside) == len(NAMESPACES), f"the command should print its "
             f"{len(NAMESPACES)} namespaces (readlink /proc/self/ns/*), got {len(inside)} "
             f"lines and {r.status_text}", r)
    same = [ns for ns, a, b in zip(NAMESPACES, inside, outside) if a == b]
    z.expect(not same, f"these namespaces are the host's: {', '.join(same)}", r)


@check(2, "only lo in the network namespace", 1, public=False,
       exercises="q6 (CLONE_NEWNET)")
def p2_only_lo(z):
    r = z.zk(2, "cat", "/proc/self/net/dev")
    names = sorted(x.split(":")[0].strip() for x in r.stdout.splitlines() if ":" in x)
    z.expect(names == ["lo"], f"network interfaces should be only lo, got {names}", r)


@check(2, "without a subordinate range: root inside, setgroups denied before gid_map", 1,
       public=False, needs=("nosub_user",), exercises="q7 (write_id_maps)", other_users=True)
def p2_no_subid_range(z):
    # As a user with no line in /etc/subuid nor /etc/subgid (the VM's nosub): only
    # root is mapped, by writing the files, and an unprivileged process may write
    # gid_map only once setgroups is "deny" (user_namespaces(7)).
    import pwd

    user = z.nosub_user()
    pw = pwd.getpwnam(user)
    r = z.zk(2, "sh", "-c", "id -u; cat /proc/self/uid_map /proc/self/gid_map "
             "/proc/self/setgroups", user=user)
    lines = [line.split() for line in r.stdout.splitlines()]
    z.expect(r.status == 0 and lines[:1] == [["0"]],
             f"as {user}, who has no subordinate range, the container's user should be root "
             f"(uid 0) and the command exit 0, got {r.status_text} (is setgroups denied "
             "before gid_map is written?)", r)
    z.expect(lines[1:3] == [["0", str(pw.pw_uid), "1"], ["0", str(pw.pw_gid), "1"]],
             f"as {user} (no subordinate range) uid_map should be '0 {pw.pw_uid} 1' and "
             f"gid_map '0 {pw.pw_gid} 1', one line each, got "
             f"{' / '.join(' '.join(line) for line in lines[1:3]) or 'nothing'}", r)
    z.expect(lines[3:] == [["deny"]], f"as {user} /proc/self/setgroups should say deny", r)


# The newuidmap and newgidmap the next check puts first on PATH: each waits a second
# before the real one maps the ids.
SLOW_MAP_TOOL = '#!/bin/sh\nsleep 1\nexec {real} "$@"\n'


@check(2, "the maps come late (a slow newuidmap): still root inside, output and status",
       1, public=False, exercises="q2 (tell the child to go), q4 (block until go), "
       "q7 (write_id_maps)")
def p2_slow_maps(z):
    # A child that does not block on the go pipe, or a parent that says go before
    # the maps are written, runs before its maps: with fast helpers that race is
    # usually won, with a second's wait it never is.
    import shutil

    slow = z.scratch / "slow-map-tools"
    slow.mkdir(mode=0o755)
    path = z.env()["PATH"]
    for tool in ("newuidmap", "newgidmap"):
        real = shutil.which(tool, path=path)
        if not real:
            raise z.not_runnable(f"{tool} is not installed (the uidmap package)")
        (slow / tool).write_text(SLOW_MAP_TOOL.format(real=real))
        (slow / tool).chmod(0o755)
    r = z.zk(2, "sh", "-c", "id -u; cat /proc/self/uid_map; echo done; exit 3",
             env={"PATH": f"{slow}:{path}"}, timeout=COMMAND_SECONDS + 2)
    out = r.stdout.split("\n")
    z.expect(out[:1] == ["0"] and "done" in out and r.status == 3,
             "with a newuidmap and a newgidmap that take a second, the command should "
             f"still run as root (uid 0), print its output and exit 3, got {r.status_text} "
             f"and {r.stdout.strip()[:80]!r} (does the child block until go, and is go said "
             "only after the maps are written?)", r)
    z.expect(len([line for line in out[1:] if line.split()[:1] == ["0"]]) == 1,
             "the command's uid_map should map its root", r)


# Part 3: capabilities and seccomp --------------------------------------------------


@check(3, "dangerous capabilities dropped", 4,
       exercises="q9 (lock the container in) and q10 (drop_capabilities)")
def p3_capabilities(z):
    r = z.zk(3, "cat", "/proc/self/status")
    fields = hex_fields(r.stdout, ("CapBnd", "CapInh", "CapAmb"))
    z.expect(len(fields) == 3, "could not read /proc/self/status in the container", r)
    bounding = fields["CapBnd"]
    kept = [name for name, bit in DROPPED_CAPS.items() if bounding & (1 << bit)]
    z.expect(not kept, f"still in the bounding set: {', '.join(kept)}", r)
    z.expect(fields["CapInh"] == 0 and fields["CapAmb"] == 0,
             "inheritable and ambient capabilities should be empty", r)


@check(3, "no_new_privs and a seccomp filter", 3,
       exercises="q9 (lock the container in: no_new_privs, the filter)")
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


@check(3, "seccomp: no setuid or setgid files", 3,
       exercises="q9 (the seccomp filter, loaded in the child)")
def p3_seccomp_chmod(z):
    seccomp_rules(z, ["chmod_setuid", "chmod_setgid", "fchmod_setuid", "fchmodat_setuid"])


@check(3, "seccomp: no nested user namespaces", 2, public=False,
       exercises="q9 (the seccomp filter, loaded in the child)")
def p3_seccomp_userns(z):
    seccomp_rules(z, ["unshare_user", "clone_user", "clone3"])


@check(3, "seccomp: keyring, ptrace, NUMA, userfaultfd, perf, TIOCSTI", 3, public=False,
       exercises="q9 (the seccomp filter, loaded in the child)")
def p3_seccomp_rest(z):
    seccomp_rules(z, ["ioctl_tiocsti", "keyctl", "add_key", "request_key", "ptrace", "mbind",
                      "migrate_pages", "move_pages", "set_mempolicy", "userfaultfd",
                      "perf_event_open"])


# Part 4: the container's own filesystem --------------------------------------------


def temp_dirs() -> set:
    """Anyone's zookeeper temporary directories: a check asks which its own run made
    (z.left.temp_dirs(run): new since the run began, and its user's)."""
    import glob

    return set(glob.glob("/tmp/zoo.*"))


MARKER = "inside"


def in_rootfs(z, fs, command: str) -> str:
    """A shell command that first proves the container runs in the rootfs fs: it prints
    /zoo-marker, a file only fs has (see expect_in_rootfs), then runs command.  The
    marker is written anew each time, never through a link a container left there."""
    z.new_file(fs, "zoo-marker", MARKER + "\n")
    return f"cat /zoo-marker && {{ {command}; }}"


def expect_in_rootfs(z, r) -> None:
    """The run printed fs's /zoo-marker first: -r DIR really became its /.  Part 3's
    program (which ignores -r) or a pivot_root that does nothing fails here."""
    z.expect(r.stdout.split("\n", 1)[0] == MARKER,
             "the container should run in the rootfs: a file in it (/zoo-marker) should "
             "be visible at / in the container", r)


HOST_MARKER = "zoo-host-marker"


def find_host_marker(host_marker) -> str:
    """A shell command printing host-visible if the host's marker file (an absolute path
    on the host) is at that path in the container, and where it is reachable in the
    container's tree: at that path under any directory three levels deep or less, where
    an old root that was never unmounted would be mounted (put_old).  Bounded on
    purpose: a walk of a whole host's tree would outlast the check's timeout.  The path
    is quoted: it is in the grader's scratch, under whatever TMPDIR --local was given."""
    import shlex

    marker = shlex.quote(str(host_marker))
    return (f"test -e {marker} && echo host-visible; "
            f'for d in /* /*/* /*/*/*; do test -e "$d"{marker} && echo "$d"{marker}; done; '
            "true")


def mountinfo(output: str) -> list[dict]:
    """The lines of a /proc/PID/mountinfo in output (others skipped), in order."""
    mounts = []
    for line in output.splitlines():
        fields = line.split()
        if " - " not in line or len(fields) < 10 or not fields[0].isdigit():
            continue
        dash = fields.index("-")
        if dash + 1 >= len(fields):
            continue
        mounts.append({"point": fields[4].replace("\\040", " "),
                       "options": set(fields[5].split(",")), "type": fields[dash + 1],
                       "propagation": fields[6:dash]})  # shared:N, master:N, ...
    return mounts


def covering(mounts: list[dict], path: str) -> dict | None:
    """The mount a path is on: the last one listed whose mount point is it or holds it."""
    found = None
    for m in mounts:
        point = m["point"].rstrip("/") + "/"
        if m["point"] == path or path.startswith(point) or m["point"] == "/":
            found = m
    return found


@check(4, "pivot_root hides the host", 5,
       exercises="q14 (switch_root: pivot_root(2), then detach the old root)")
def p4_pivot_root(z):
    fs = z.rootfs()
    host_marker = z.scratch / HOST_MARKER
    host_marker.write_text("host\n")
    r = z.zk(4, "-r", str(fs), "sh", "-c", in_rootfs(
        z, fs, "test -e /proc/1/root/etc/debian_version && echo host-proc; ls /; "
        + find_host_marker(host_marker)))
    expect_in_rootfs(z, r)
    z.expect(r.status == 0, f"the container should exit 0, got {r.status_text}", r)
    z.expect("host-visible" not in r.stdout, "a file of the host is visible in the container", r)
    found = [line for line in r.stdout.splitlines() if line.endswith("/" + HOST_MARKER)]
    z.expect(not found, f"the host's files are reachable in the container's tree, at "
             f"{found[0] if found else ''}: is the old root still mounted somewhere "
             "(pivot_root's put_old never unmounted)?", r)
    z.expect("host-proc" not in r.stdout, "the host's / is reachable in the container through "
             "/proc/1/root (the host's /proc)", r)


# Where a container's own mounts are: its root, and what zookeeper mounts in it.
OWN_MOUNTS = ["/dev", "/proc", "/sys", "/tmp"]


def foreign_mounts(mounts: list[dict]) -> str:
    """What a container's mountinfo lists beyond its own mounts: a second /, or mount
    points outside OWN_MOUNTS ("" when none)."""
    roots = [m for m in mounts if m["point"] == "/"]
    foreign = [m["point"] for m in mounts if m["point"] != "/" and not any(
        m["point"] == p or m["point"].startswith(p + "/") for p in OWN_MOUNTS)]
    return ", ".join((["/ twice"] if len(roots) > 1 else []) + foreign[:5])


def propagating_mounts(mounts: list[dict]) -> str:
    """The container's mounts that are still in a peer group with the host's (shared:N)
    or receive its mount events (master:N), with their tags ("" when none).  Under
    systemd the host's / is shared: a container that never made its mounts private
    (MS_REC|MS_PRIVATE on /) gets slaves of the host's, its rootfs's bind included."""
    linked = [f"{m['point']} {' '.join(m['propagation'])}" for m in mounts
              if any(tag.startswith(("shared:", "master:")) for tag in m["propagation"])]
    return ", ".join(linked[:5])


@check(4, "-P mounts a proc with only the container's processes", 4,
       exercises="q11 (make_mounts_private), q13 (mount_proc), q14 (switch_root)")
def p4_proc(z):
    fs = z.rootfs()
    r = z.zk(4, "-r", str(fs), "-P", "sh", "-c", "cat /proc/1/comm; ls /proc | grep -c '^[0-9]'; "
             "cat /proc/self/mountinfo >&2")
    out = r.stdout.split()
    z.expect(r.status == 0 and len(out) == 2 and out[1].isdecimal(),
             "could not list /proc in the container", r)
    mounts = mountinfo(r.stderr)
    z.expect(mounts, "could not read /proc/self/mountinfo in the container", r)
    foreign = foreign_mounts(mounts)
    z.expect(not foreign, f"the container's mount table lists the host's mounts ({foreign}): "
             "after pivot_root, detach the old root (umount2(2) MNT_DETACH)")
    linked = propagating_mounts(mounts)
    z.expect(not linked, f"the container's mounts are still linked to the host's ({linked}): "
             "mount events cross between them; make every mount private first, "
             "recursively (MS_REC|MS_PRIVATE on /, mount_namespaces(7))")
    z.expect(out[0] == "sh", f"PID 1 in /proc should be the command (sh), got {out[0]}", r)
    z.expect(int(out[1]) <= 4, f"/proc shows {out[1]} processes: the host's, not only the "
             "container's", r)
    if not root_is_shared():  # no full marks for what could not be seen
        raise z.not_runnable("the container's proc is right (q13, q14), but this machine's "
                             "/ is not a shared mount (no systemd here?), so whether the "
                             "container's mounts are private (q11) cannot be seen here: "
                             "the VM checks it")


def root_is_shared(mountinfo_path: str = "/proc/self/mountinfo") -> bool:
    """Is / a shared mount here (shared:N, as systemd makes it)?  Only then would a
    container that never made its mounts private show it (mount_namespaces(7))."""
    with open(mountinfo_path) as f:
        roots = [m for m in mountinfo(f.read()) if m["point"] == "/"]
    return bool(roots) and any(tag.startswith("shared:") for tag in roots[-1]["propagation"])


@check(4, "/dev/null works in the container", 2,
       exercises="q12 (bind_rootfs), q14 and the given /dev mounts")
def p4_dev_null(z):
    fs = z.rootfs()
    r = z.zk(4, "-r", str(fs), "sh", "-c", in_rootfs(z, fs, "echo gone > /dev/null && "
                                                         "wc -c < /dev/null"))
    expect_in_rootfs(z, r)
    z.expect(r.status == 0 and r.stdout.split() == [MARKER, "0"],
             "/dev/null should swallow writes", r)


# The newuidmap the next check puts first on PATH: it refuses, as the real one does when
# /etc/subuid does not grant the range.
FAILING_MAP_TOOL = ('#!/bin/sh\necho "newuidmap: write to uid_map failed: Operation not '
                    'permitted" >&2\nexit 1\n')


@check(4, "temporary directory removed on every exit", 5,
       exercises="q11-q14 (the container in its rootfs) and q5 (127), then the given removal "
                 "on every way out (Filesystem.remove, run_container's cleanup)")
def p4_temp_dir_removed(z):
    fs = z.rootfs()
    r = z.zk(4, "-r", str(fs), "sh", "-c", in_rootfs(z, fs, "true"))
    expect_in_rootfs(z, r)
    z.expect(r.status == 0, f"the container should exit 0, got {r.status_text}", r)
    expect_no_temp_dir(z, r, "after a normal exit")
    r = z.zk(4, "-r", str(fs), "no-such-command-zk")
    z.expect(r.status == 127, f"a command missing from the rootfs should give 127, got "
             f"{r.status_text}", r)
    expect_no_temp_dir(z, r, "after an exec failure")
    r = z.zk(4, "-r", str(fs), "sh", "-c", f"echo {READY}; exec sleep 30",
             send_signal=("TERM", 1.5))
    expect_no_temp_dir(z, r, "after SIGTERM to zookeeper")
    # An error of zookeeper's own once the temp dir is made (after the clone): the
    # child's id maps are refused.  Only a removal on every way out passes, not one
    # after the child's normal end.
    z.user.subid_range()  # newuidmap is used only with a subordinate range
    failing = z.scratch / "failing-map-tool"
    failing.mkdir(mode=0o755)
    (failing / "newuidmap").write_text(FAILING_MAP_TOOL)
    (failing / "newuidmap").chmod(0o755)
    r = z.zk(4, "-r", str(fs), "true", env={"PATH": f"{failing}:{z.env()['PATH']}"})
    z.expect(r.status == 125, "with a newuidmap that refuses, zookeeper should fail with 125, "
             f"got {r.status_text} (q7 runs newuidmap and newgidmap in a `with step(...)`)", r)
    expect_no_temp_dir(z, r, "after an error once it was made (newuidmap refused the map)")


def expect_no_temp_dir(z, r, when: str) -> None:
    left = z.left.temp_dirs(r)
    z.expect(not left, f"/tmp/zoo.* left behind {when}: {', '.join(sorted(left))}", r)


@check(4, "bad -r: one line, 125, nothing left", 1, public=False,
       exercises="q11-q14 (the container in its rootfs), then the given checks of -r and "
                 "the temporary directory's removal")
def p4_bad_rootfs(z):
    # First the good case, so that only a working stage 4 earns these points.
    fs = z.rootfs()
    good = z.zk(4, "-r", str(fs), "sh", "-c", in_rootfs(z, fs, "true"))
    expect_in_rootfs(z, good)
    z.expect(good.status == 0, f"the container should exit 0, got {good.status_text}", good)
    r = z.zk(4, "-r", str(z.scratch / "no-such-dir"), "true")
    z.expect(r.status == 125, f"a missing -r directory should give 125, got {r.status_text}", r)
    z.expect(len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr,
             "the error should be one line", r)
    expect_no_temp_dir(z, good, "by these two runs")  # since the good run began


@check(4, "as root too; a rootfs holding a mount; an error after mkdtemp leaves nothing", 1,
       public=False, needs=("root",), exercises="q12 (bind_rootfs), q13 and prepare()",
       other_users=True)
def p4_as_root(z):
    fs = z.rootfs(root=True)
    r = z.zk(4, "-r", str(fs), "-P", "sh", "-c", in_rootfs(z, fs, "ls /proc | grep -c '^[0-9]'"),
             root=True)
    expect_in_rootfs(z, r)
    out = r.stdout.split()
    z.expect(r.status == 0 and len(out) == 2 and out[1].isdecimal() and int(out[1]) <= 4,
             "as root, -P should mount a proc with only the container's processes", r)
    warned = stderr_lines(r)  # as root without a subordinate range: a warning first
    # A rootfs with a mount inside it (as a student's rootfs on a separate disk has):
    # the bind mount of the rootfs must bring it along (MS_REC), as the user too.
    fs = z.rootfs()
    sub = fs / "zoo-sub"
    sub.mkdir()
    mounted = z.host(["mount", "-t", "tmpfs", "-o", "mode=755,size=1m", "zoo-sub", str(sub)],
                     root=True)
    if mounted.status != 0:
        raise z.not_runnable(f"could not mount a tmpfs in the rootfs: {mounted.stderr.strip()}")
    try:
        (sub / "file").write_text("submount\n")
        r = z.zk(4, "-r", str(fs), "sh", "-c", in_rootfs(z, fs, "cat /zoo-sub/file"))
    finally:
        z.host(["umount", "-l", str(sub)], root=True)
    z.expect(r.status == 0 and "submount" in r.stdout, "a mount inside the rootfs (a tmpfs "
             "at /zoo-sub) should be in the container: bind the rootfs with MS_REC", r)
    expect_in_rootfs(z, r)
    expect_nothing_left_on_a_full_tmp(z, warned)


def expect_nothing_left_on_a_full_tmp(z, warned: int) -> None:
    """As root, in a mount namespace of its own whose /tmp has room for one directory
    only: the mount point is made, -o's overlay directory next to it is not.  That
    error comes after the mount point exists: it must be one line, 125, and /tmp empty.
    (What was in /tmp, the rootfs and maybe the submission, is at /var/tmp there.)"""
    def moved(path) -> str:
        return "/var/tmp/" + str(path)[5:] if str(path).startswith("/tmp/") else str(path)

    fs = z.rootfs(root=True)
    zookeeper = z.part_dir(4) / "zookeeper.py"
    script = ('mount --bind /tmp /var/tmp && '
              'mount -t tmpfs -o nr_inodes=2,size=1m,mode=1777 zoo-full /tmp || exit 99; '
              '"$@"; echo "status=$?"; ls -A /tmp')
    r = z.host(["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh",
                moved(z.python), moved(zookeeper), "-r", moved(fs), "-o", "true"], root=True)
    if r.status == 99:
        raise z.not_runnable(f"could not mount a small tmpfs at /tmp: {r.stderr.strip()}")
    lines = r.stdout.splitlines()
    z.expect(lines[:1] == ["status=125"] and stderr_lines(r) == 1 + warned
             and "Traceback" not in r.stderr,
             "as root with -o and no room in /tmp for the overlay's directory, zookeeper "
             f"should fail in one line with 125, got {lines[:1]}", r)
    z.expect(not lines[1:], "an error after the mount point was made left it behind "
             f"({', '.join(lines[1:])} in /tmp): remove it on every path", r)


def replace_by_link(z, fs, name: str, target: str, root: bool) -> None:
    """fs/name becomes a symbolic link to target (done by who unpacked fs); if it
    cannot, the grader's problem (an error), not the student's."""
    import os

    done = z.call(["sh", "-c", f"rm -rf '{fs}/{name}' && ln -s '{target}' '{fs}/{name}'"],
                  replace_entry, str(fs), name, lambda at: os.symlink(target, name, dir_fd=at),
                  root=root)
    if done.status != 0:
        raise RuntimeError(f"could not make {fs}/{name} a link: {done.stderr or done.status_text}")


def restore_directory(z, fs, name: str, mode: int, root: bool) -> None:
    """fs/name, a link again, is the empty directory it was (see replace_by_link).
    Whatever stands there goes (a run may have put something in the link's place);
    if it cannot, the grader's problem (an error), not the student's."""
    import os

    def make_directory(at: int) -> None:
        os.mkdir(name, dir_fd=at)
        made = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=at)
        try:
            os.fchmod(made, mode)  # as mkdir -m: the umask does not apply
        finally:
            os.close(made)

    done = z.call(["sh", "-c", f"rm -rf '{fs}/{name}' && mkdir -m {mode:o} '{fs}/{name}'"],
                  replace_entry, str(fs), name, make_directory, root=root)
    if done.status != 0:
        raise RuntimeError(f"could not make {fs}/{name} a directory again: "
                           f"{done.stderr or done.status_text}")


def replace_entry(fs: str, name: str, make) -> None:
    """Whatever is at fs/name removed, as rm -rf would (a link itself, not where it
    leads), then make(fs's descriptor) makes it anew.  All of it relative to that
    descriptor, opened without following a link and only if the caller owns it:
    fs lies in the user's scratch directory, where the user can put a link to
    anywhere in its place while root works in it (openat(2))."""
    import os
    import shutil
    import stat

    at = os.open(fs, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        if os.fstat(at).st_uid != os.geteuid():
            raise OSError(f"{fs} is no longer the rootfs it was (another owner's)")
        try:
            mode = os.stat(name, dir_fd=at, follow_symlinks=False).st_mode
        except FileNotFoundError:
            mode = None
        if mode is not None and stat.S_ISDIR(mode):
            # Through the descriptor's own directory: shutil.rmtree's dir_fd is Python
            # 3.11's, and /proc/self/fd/N is the directory N is open on (proc(5)).
            shutil.rmtree(f"/proc/self/fd/{at}/{name}")
        elif mode is not None:
            os.unlink(name, dir_fd=at)
        make(at)
    finally:
        os.close(at)


def host_root_listing() -> tuple:
    import os

    return tuple(sorted(os.listdir("/"))), tuple(sorted(os.listdir("/etc")))


def stderr_lines(r) -> int:
    return len(r.stderr.strip().splitlines())


# Mount points of the rootfs that link out of it: (name, target).  runc's
# CVE-2021-30465: mount(2) follows the link, and the host's / ends up in the container.
# The runs use -P, for proc's link and to read the container's mount table.
LINKED_MOUNT_POINTS = [("tmp", "/"), ("dev", "../../.."), ("sys", "/"), ("proc", "../../../../..")]
LINKED_AS_ROOT = [("dev", "/"), ("tmp", "../../../..")]


@check(4, "a rootfs whose mount points link out: refused or confined", 1, public=False,
       exercises="q12-q13 and the given mount code (mount_point_in, open_beneath)",
       other_users=True)
def p4_linked_mount_points(z):
    import os

    # One rootfs for each user, good first, then with each mount point a link in turn.
    rootfs = {False: z.rootfs()}
    fs = rootfs[False]
    good = z.zk(4, "-r", str(fs), "sh", "-c", in_rootfs(z, fs, "true"))
    expect_in_rootfs(z, good)
    z.expect(good.status == 0, f"the container should exit 0, got {good.status_text}", good)
    host_marker = z.scratch / HOST_MARKER
    host_marker.write_text("host\n")
    before = host_root_listing()
    cases = [(case, False) for case in LINKED_MOUNT_POINTS]
    # What a good run says on stderr (as root without a subordinate range, a warning):
    # a refusal says one line more.
    said = {False: stderr_lines(good)}
    if os.getuid() == 0 and z.user.name != "root" and z.as_root:
        cases += [(case, True) for case in LINKED_AS_ROOT]
        fs = rootfs[True] = z.rootfs(root=True)
        good_root = z.zk(4, "-r", str(fs), "sh", "-c", in_rootfs(z, fs, "true"), root=True)
        expect_in_rootfs(z, good_root)
        said[True] = stderr_lines(good_root)
    for (name, target), root in cases:
        fs = rootfs[root]
        mode = os.stat(fs / name).st_mode & 0o7777
        replace_by_link(z, fs, name, target, root)
        what = f"with the rootfs's {name} a link to {target}{' (as root)' if root else ''}"
        r = z.zk(4, "-r", str(fs), "-P", "sh", "-c", in_rootfs(
            z, fs, f"{find_host_marker(host_marker)}; cat /proc/self/mountinfo >&2"), root=root)
        if r.status == 125:
            z.expect(stderr_lines(r) == said[root] + 1 and "Traceback" not in r.stderr,
                     f"{what}, a refusal should be one line", r)
        else:
            z.expect(r.stdout.split("\n", 1)[0] == MARKER and r.status == 0,
                     f"{what}, the container should run in the rootfs (or be refused with "
                     f"125 and one line), got {r.status_text}", r)
            foreign = foreign_mounts(mountinfo(r.stderr))
            z.expect(not foreign, f"{what}, the host's root is still under the container's: "
                     f"its mount table lists the host's mounts ({foreign})")
            found = [line for line in r.stdout.splitlines() if line.endswith(HOST_MARKER)]
            z.expect(not found, f"{what}, the host's files are reachable at {found[:1]}", r)
        z.expect("host-visible" not in r.stdout,
                 f"{what}, the host's files are visible in the container", r)
        z.expect(host_root_listing() == before,
                 f"{what}, the host's / or /etc changed: nothing may be made outside the "
                 "rootfs", r)
        restore_directory(z, fs, name, mode, root)
    expect_no_temp_dir(z, good, "by these runs")  # refusals included


@check(4, "-P: proc mounted safely, /proc/sys read-only, kernel files masked", 1, public=False,
       exercises="q13 (mount_proc) and the given mask_proc")
def p4_masks(z):
    fs = z.rootfs()
    r = z.zk(4, "-r", str(fs), "-P", "sh", "-c", in_rootfs(
        z, fs, "for f in kcore keys timer_list; do test -e /proc/$f && echo has $f; done; "
        "echo firmware $(ls -A /sys/firmware 2>/dev/null | wc -l); "
        "cat /proc/self/mountinfo >&2"))
    expect_in_rootfs(z, r)
    z.expect(r.status == 0, f"the container should exit 0, got {r.status_text}", r)
    mounts = mountinfo(r.stderr)
    proc = covering(mounts, "/proc")
    z.expect(proc and proc["type"] == "proc" and proc["point"] == "/proc",
             "with -P, /proc should be a proc mount (none in the container's mountinfo)", r)
    lax = {"nosuid", "nodev", "noexec"} - proc["options"]
    z.expect(not lax, f"/proc should be mounted nosuid,nodev,noexec (missing: "
             f"{','.join(sorted(lax))})", r)
    z.expect("ro" in covering(mounts, "/proc/sys")["options"], "/proc/sys should be read-only "
             "in the container (its knobs are the host's)", r)
    have = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("has ")]
    open_files = [name for name in have if covering(mounts, f"/proc/{name}")["point"]
                  != f"/proc/{name}"]
    z.expect(not open_files, f"{', '.join(f'/proc/{n}' for n in open_files)} should be "
             "masked (something mounted over it, such as /dev/null)", r)
    sysfs = covering(mounts, "/sys/firmware")
    firmware = [line.split()[1] for line in r.stdout.splitlines() if line.startswith("firmware ")]
    if sysfs and sysfs["type"] == "sysfs":
        z.expect(firmware == ["0"], "/sys/firmware should be empty in the container (masked)",
                 r)


# Part 5: cgroup limits --------------------------------------------------------------

# The hog: dd's one 200M buffer, filled by read(2) from /dev/zero (~20 times faster
# under TCG than a shell variable of 200M).  Last, and exec'd: PID 1 itself is what the
# kernel's OOM killer kills at the limit, and the container dies of SIGKILL.
HOG = "exec dd if=/dev/zero of=/dev/null bs=200M count=1 iflag=fullblock 2>/dev/null"
# The positive control before it: 16M fits in 64M (a limit written in KiB, 1024 times
# too low, kills this one too).
FITS = ("dd if=/dev/zero of=/dev/null bs=16M count=1 iflag=fullblock 2>/dev/null && "
        f"echo kept {16 << 20}")
# Before both, the container's memory.max and memory.swap.max, where its cgroup is
# mounted (part 5 mounts it at /sys/fs/cgroup): if swap is not 0, the container stops
# there (the hog would swap, slowly under TCG, instead of being killed).
SWAP_MAX = ("echo memory.max $(cat /sys/fs/cgroup/memory.max 2>/dev/null); "
            "s=$(cat /sys/fs/cgroup/memory.swap.max 2>/dev/null); echo swap.max $s; "
            "case $s in ''|0) ;; *) exit 0;; esac")
# Builtins only after the loop: with the limit reached, nothing else could fork.
FORKS = "for i in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do " \
        "sleep 2 & echo \"started $!\"; done 2>/dev/null; wait"
# The loop counts its rounds and says how many at timeout's SIGTERM: half a CPU makes
# millions natively and hundreds of thousands under TCG; 1% of a CPU, a few thousand.
BURN = ("time timeout 4 sh -c 'i=0; trap \"echo loops \\$i; exit 0\" TERM; "
        "while :; do i=$((i+1)); done'")
PROGRESS = 10000
# After the loop, the limit the container's cgroup holds and how often the kernel held
# the loop back (cgroup-v2.rst: cpu.max, cpu.stat), where part 5 mounts that cgroup.
CPU_SEEN = ("echo cpu.max $(cat /sys/fs/cgroup/cpu.max 2>/dev/null); "
            "grep -s nr_throttled /sys/fs/cgroup/cpu.stat")
CPU_MAX_50 = "50000 100000"  # -c 50's cpu.max


def zoo_cgroups() -> list[str]:
    """zookeeper's cgroups (zoo-PID) anywhere under /sys/fs/cgroup: its directories
    only (a glob would match each of their ~60 files against the name too)."""
    import os

    found, todo = [], ["/sys/fs/cgroup"]
    while todo:
        try:
            entries = list(os.scandir(todo.pop()))
        except OSError:
            continue  # gone meanwhile
        for entry in entries:
            if entry.is_dir(follow_symlinks=False):
                todo.append(entry.path)
                if entry.name.startswith("zoo-") and entry.name[4:5].isdigit():
                    found.append(entry.path)
    return sorted(found)


def loop_rounds(output: str) -> int:
    """BURN's count of rounds ('loops 123456'), 0 when it said none."""
    import re

    found = re.search(r"^loops (\d+)$", output, re.M)
    return int(found.group(1)) if found else 0


def cpu_share(time_output: str) -> float:
    """(user + sys) / real from busybox time's report ('real\t0m 4.00s' ...)."""
    import re

    times = {name: int(minutes) * 60 + float(seconds) for name, minutes, seconds in
             re.findall(r"^(real|user|sys)\s+(\d+)m\s*(\d+(?:\.\d+)?)s", time_output, re.M)}
    if not times.get("real"):
        return -1.0
    return (times.get("user", 0) + times.get("sys", 0)) / times["real"]


def cpu_limit_seen(output: str) -> str:
    """CPU_SEEN's cpu.max ('50000 100000'), '' when it saw none."""
    import re

    found = re.search(r"^cpu\.max ([^\n]*)$", output, re.M)
    return found.group(1).strip() if found else ""


def throttled_seen(output: str) -> str:
    """CPU_SEEN's count of the times the kernel held the container back, in words."""
    import re

    found = re.search(r"^nr_throttled (\d+)$", output, re.M)
    return f"held back {found.group(1)} times" if found else "no cpu.stat"


def memory_limits_problem(output: str, limit: int = 64 << 20) -> str:
    """What SWAP_MAX's lines ('memory.max N', 'swap.max N') say is wrong under -m, or ''.
    The given code writes memory.swap.max 0 right after q16's memory.max, in the cgroup
    zookeeper made: a container that sees swap.max other than 0 is not in that cgroup
    (q15), one that sees 0 and a wrong memory.max is, with a wrong limit (q16)."""
    fields = {line.split()[0]: line.split()[1:] for line in output.splitlines()
              if line.startswith(("memory.max", "swap.max"))}
    if not fields:
        return ""  # the command did not run: the check's other expectations say why
    memory, swap = fields.get("memory.max", []), fields.get("swap.max", [])
    seen = (f"memory.max {' '.join(memory) or '(none)'}, memory.swap.max "
            f"{' '.join(swap) or '(none)'}")
    if memory == [str(limit)]:
        if swap in ([], ["0"]):
            return ""
        return (f"under -m 64M the container's memory.swap.max is {' '.join(swap)}: it "
                "should be 0 too, or the container swaps (the grader's VM has swap) "
                "instead of being killed at its limit (the given code after q16 writes it)")
    if not memory or swap not in ([], ["0"]):
        return ("under -m 64M the container is not in the cgroup zookeeper made for it: "
                f"its /sys/fs/cgroup (the root of its cgroup namespace) has {seen}, not the "
                "limits zookeeper wrote there.  Is the child's pid written to the new "
                "cgroup's cgroup.procs, before the child is told to go (q15)?")
    if swap == ["0"]:
        return (f"under -m 64M the container's cgroup has memory.max {memory[0]}, not "
                f"{limit} (64M in bytes): write the limit, in bytes, to memory.max (q16)")
    return (f"under -m 64M the container's /sys/fs/cgroup has {seen}, not memory.max "
            f"{limit}: is the child moved into the cgroup zookeeper made (q15), and the "
            "limit written to its memory.max (q16)?")


@check(5, "-m 64M: a 200M memory hog is killed", 6, timeout=120, needs=("cgroup_limits",),
       exercises="q15 (the child in its cgroup) and q16 (memory.max)")
def p5_memory(z):
    fs = z.rootfs()
    r = z.zk(5, "-r", str(fs), "-m", "64M", "sh", "-c", f"{SWAP_MAX}; {FITS}; {HOG}",
             scope=True, timeout=15)
    z.expect(r.status != 125, "under -m 64M a 16M allocation should survive, but zookeeper "
             f"could not run the container ({r.status_text}): see what it said", r)
    problem = memory_limits_problem(r.stdout)
    z.expect(not problem, problem, r)
    z.expect(f"kept {16 << 20}" in r.stdout, "under -m 64M a 16M allocation should "
             f"survive: is the limit too low? (got {r.status_text})", r)
    # The guest has swap: a limit without memory.swap.max 0 lets the hog swap.
    z.expect(r.status != 0, "the 200M hog survived a 64M limit: is memory.max written "
             "(q16), in the cgroup the child is in (q15)?", r)
    z.expect(r.signal == 9, f"the hog should be killed (SIGKILL, 137), got {r.status_text}", r)


@check(5, "-p 10: no more than 10 processes", 5, timeout=120, needs=("cgroup_limits",),
       exercises="q15 (the child in its cgroup) and q18 (pids.max)")
def p5_pids(z):
    fs = z.rootfs()
    r = z.zk(5, "-r", str(fs), "-p", "10", "sh", "-c", FORKS, scope=True, timeout=10)
    started = {line for line in r.stdout.splitlines() if line.startswith("started ")}
    z.expect(started, "the container started no process at all", r)
    z.expect(len(started) >= 5, f"with -p 10 only {len(started)} processes started beside "
             "the shell (9 fit): is the limit too low?", r)
    z.expect(len(started) < 10, f"with -p 10 the container started {len(started)} processes "
             "beside its shell (at most 9 fit)", r)


@check(5, "-c 50: a busy loop gets about half a CPU", 5, timeout=180, needs=("cgroup_limits",),
       exercises="q15 (the child in its cgroup) and q17 (cpu.max)")
def p5_cpu(z):
    fs = z.rootfs()
    for _attempt in range(2):
        r = z.zk(5, "-r", str(fs), "-c", "50", "sh", "-c", f"{BURN}; {CPU_SEEN}",
                 scope=True, timeout=10)
        share = cpu_share(r.stderr + r.stdout)
        z.expect(share > 0, "could not read busybox time's report", r)
        loops = loop_rounds(r.stdout)
        z.expect(loops >= PROGRESS, f"with -c 50 the loop made {loops} rounds in 4 s "
                 f"(expected at least {PROGRESS}): is the limit too low?", r)
        limit = cpu_limit_seen(r.stdout)
        if 0.30 <= share <= 0.70 or limit != CPU_MAX_50:
            break
        # The limit is in place and the share is not: once (arm64 under TCG, with the
        # host busy) the loop ran unheld for its 4 s.  A second measurement decides.
    z.expect(0.30 <= share <= 0.70, f"with -c 50 the loop got {share:.0%} of a CPU "
             f"(expected 40-60%, with a margin); the container's cgroup (its "
             f"/sys/fs/cgroup) has cpu.max {limit or 'missing'}, "
             f"{throttled_seen(r.stdout)}", r)


@check(5, "the limits are in the container's cgroup, removed after exit; bad values refused",
       4, timeout=120, needs=("cgroup_limits", "root"), public=False,
       exercises="q15-q19 (the cgroup, its limits, its removal)", other_users=True)
def p5_cgroup_removed(z):
    # As root and outside any systemd scope: systemd removes a scope's empty child
    # cgroups itself, which would hide a missing rmdir.
    fs = z.rootfs(root=True)
    # First prove a cgroup was made, with the limits, and the container in it: part 5
    # mounts the container's cgroup (its cgroup namespace's root) at /sys/fs/cgroup.
    # memory.swap.max 0 too (where the kernel has it): the guest has swap.
    r = z.zk(5, "-r", str(fs), "-m", "64M", "-p", "20", "-c", "50", "sh", "-c",
             "cd /sys/fs/cgroup && cat memory.max pids.max cpu.max && "
             "{ cat memory.swap.max 2>/dev/null || echo 0; }", root=True)
    z.expect(r.status == 0, f"the container should exit 0, got {r.status_text}", r)
    z.expect(r.stdout.split() == [str(64 << 20), "20", "50000", "100000", "0"],
             "with -m 64M -p 20 -c 50, the container's cgroup (its /sys/fs/cgroup) should "
             f"have memory.max {64 << 20}, pids.max 20, cpu.max 50000 100000, "
             f"memory.swap.max 0; got {' '.join(r.stdout.split()) or 'nothing'}", r)
    left = sorted(z.left.cgroups(r))
    z.expect(not left, f"cgroup left behind: {', '.join(left)}", r)
    for args in (["-m", "lots"], ["-c", "-5"], ["-p", "x"]):
        r = z.zk(5, *args, "true", root=True)
        lines = len(r.stderr.strip().splitlines())
        z.expect(r.status == 125 and lines == 1 and "Traceback" not in r.stderr,
                 f"{' '.join(args)} should give one line on stderr and 125, got "
                 f"{r.status_text} and {lines} lines", r)


# Part 6: networking -----------------------------------------------------------------


def ip_links(output: str) -> dict[str, set]:
    """`ip -o link`'s interfaces and their flags: {"lo": {"LOOPBACK", "UP", ...}}."""
    import re

    links = {}
    for line in output.splitlines():
        m = re.match(r"\d+:\s*([^:@\s]+)(@\S*)?:\s*<([^>]*)>", line)
        if m:
            links[m.group(1)] = set(m.group(3).split(","))
    return links


def expect_rootless_eth0(z, fs, env=None, timeout_hint=""):
    """Stage 6's own work (starting slirp4netns) is done: with -n, as the user, the
    container has eth0 with slirp4netns's 10.0.2.100.  Returns the run."""
    r = z.zk(6, "-r", str(fs), "-n", "ip", "-o", "-4", "addr", "show", "eth0", scope=True,
             env=env, timeout_hint=timeout_hint)
    z.expect(r.status == 0 and "10.0.2.100" in r.stdout,
             "with -n the container should have eth0 with 10.0.2.100 (slirp4netns)", r)
    return r


@check(6, "only lo without -n; lo and eth0 with -n", 3, timeout=90,
       needs=("tun", "slirp4netns"), exercises="q20 (start slirp4netns for the container)")
def p6_interfaces(z):
    # lo comes up through given code in every part from 6 on: only -n's eth0 makes
    # this a check of stage 6's own work.  Its first half alone would pass a part 6
    # with no stage 6 done (a split gave that a point; review, 2026-12-05), so the
    # whole check needs what -n needs.
    fs = z.rootfs()
    r = z.zk(6, "-r", str(fs), "ip", "-o", "link")
    links = ip_links(r.stdout)
    z.expect(sorted(links) == ["lo"], f"without -n the interfaces should be only lo, got "
             f"{sorted(links)}", r)
    z.expect("UP" in links["lo"], "without -n, lo should be up", r)
    r = z.zk(6, "-r", str(fs), "-n", "ip", "-o", "link", scope=True)
    links = ip_links(r.stdout)
    z.expect(sorted(links) == ["eth0", "lo"], f"with -n the interfaces should be lo and eth0, "
             f"got {sorted(links)}", r)
    down = [name for name, flags in sorted(links.items()) if "UP" not in flags]
    z.expect(not down, f"with -n, lo and eth0 should be up; down: {', '.join(down)}", r)


# slirp4netns's address for the host (its gateway): without --disable-host-loopback it
# leads to the host's 127.0.0.1, where services trust whoever connects.
SLIRP_HOST = "10.0.2.2"


@check(6, "-n: the container reaches a server on the host", 6, timeout=120,
       needs=("tun", "slirp4netns"), exercises="q20 (start: slirp4netns and its options)")
def p6_rootless_network(z):
    fs = z.rootfs()
    address, port = z.server()
    _, loopback_port = z.server(loopback=True)
    r = z.zk(6, "-r", str(fs), "-n", "sh", "-c",
             "ip -o -4 addr show eth0; "
             f"timeout 10 wget -q -O - http://{address}:{port}/zoo; "
             f"timeout 5 wget -q -O - http://{SLIRP_HOST}:{loopback_port}/zoo; true",
             scope=True, timeout=15)
    z.expect("10.0.2.100" in r.stdout, "eth0 should have 10.0.2.100 (slirp4netns)", r)
    z.expect(z.server_token() in r.stdout, f"the container did not reach {address}:{port}", r)
    z.expect(z.server_token(loopback=True) not in r.stdout,
             f"the container reached a server on the host's loopback only (127.0.0.1:"
             f"{loopback_port}) through {SLIRP_HOST}: start slirp4netns with "
             "--disable-host-loopback", r)


# The slirp4netns the next check puts first on PATH: the real one without --exit-fd,
# so that it ends only when zookeeper stops it (with the option it also ends, a little
# later, once zookeeper's end of that pipe closes: a stop() that does nothing passed).
SLIRP_WITHOUT_EXIT_FD = """#!/bin/sh
skip=
for arg do
    shift
    if [ -n "$skip" ]; then skip=; continue; fi
    case $arg in
        --exit-fd=*|-e[0-9]*) continue ;;
        --exit-fd|-e) skip=1; continue ;;
    esac
    set -- "$@" "$arg"
done
exec {real} "$@"
"""


@check(6, "the network helper is gone after exit", 3, timeout=90, needs=("tun", "slirp4netns"),
       exercises="q21 (stop: kill and reap slirp4netns) and q20 (its --exit-fd)")
def p6_helper_gone(z):
    # First the network itself, in the same run: a program that ignores -n starts no
    # helper, and none is left.  Then no slirp4netns of ours, the moment zookeeper
    # has returned.
    import shutil
    import time

    path = z.env()["PATH"]
    real = shutil.which("slirp4netns", path=path)
    if not real:
        raise z.not_runnable("slirp4netns is not on the user's PATH")
    wrapper = z.scratch / "slirp-without-exit-fd"
    wrapper.mkdir(mode=0o755)
    (wrapper / "slirp4netns").write_text(SLIRP_WITHOUT_EXIT_FD.format(real=real))
    (wrapper / "slirp4netns").chmod(0o755)
    fs = z.rootfs()
    r = expect_rootless_eth0(z, fs, env={"PATH": f"{wrapper}:{path}"},
                             timeout_hint=": this check runs slirp4netns without --exit-fd, "
                             "so it ends only when zookeeper stops it: send it SIGTERM with "
                             "kill(2), then reap it with waitpid(2) (q21; closing the exit fd "
                             "is not enough)")
    left = z.left.processes(r, "slirp4netns")
    z.expect(not left, f"slirp4netns is still running when zookeeper has returned: "
             f"{', '.join(left)} (stop it: kill(2), then reap it with waitpid(2))")
    expect_children_reaped(z, r, "q21: once slirp4netns is sent SIGTERM, waitpid(2) for it")
    # A zookeeper killed with SIGKILL stops nothing itself: slirp4netns must end on its
    # own, when the pipe of its --exit-fd closes with zookeeper (slirp4netns(1)).
    r = z.zk(6, "-r", str(fs), "-n", "sh", "-c", f"echo {READY}; exec sleep 60", scope=True,
             send_signal=("KILL", 3.0), may_time_out=True)
    left = z.left.processes(r, "slirp4netns")
    for _ in range(20):  # its exit takes a moment after the pipe closes
        if not left:
            break
        time.sleep(0.1 * z.timeout_scale)
        left = z.left.processes(r, "slirp4netns")
    z.expect(not left, "with zookeeper killed (SIGKILL), slirp4netns is still running: "
             f"{', '.join(left)} (q20: start it with --exit-fd=exit_read, the read end of a "
             "pipe only zookeeper holds open)")


@check(6, "as root: a veth pair reaches the host", 3, timeout=150, public=False,
       needs=("root", "tun", "slirp4netns"),
       exercises="q20 (-n as the user first) and the given veth and bridge code",
       other_users=True)
def p6_root_veth(z):
    # The root path (veth and bridge) is given code in every part from 6 on: first the
    # student's own stage 6 (-n rootless), so that these points need it too.
    fs = z.rootfs()
    expect_rootless_eth0(z, fs)
    fs = z.rootfs(root=True)
    address, port = z.server()
    r = z.zk(6, "-r", str(fs), "-n", "sh", "-c",
             f"timeout 10 wget -q -O - http://{address}:{port}/zoo", root=True, timeout=15)
    z.expect(z.server_token() in r.stdout, f"the container did not reach {address}:{port}", r)
    left = sorted(z.left.links(r))
    z.expect(not left, f"veth or bridge left after exit: {', '.join(left)}", r)
