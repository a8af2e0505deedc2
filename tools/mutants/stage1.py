"""Stage 1 (part1_clone): mistakes students make in q1-q5.  Data only: tools/mutate.py
reads MUTANTS as literals.  Each `edit` is a list of (old, new): old, in the stage's
part, exactly once, becomes new."""

MUTANTS = [
    {
        "id": "fds-reach-command",
        "exercise": "q5",
        "file": "container.py",
        "why": "the caller's open fds reach the command (runc's CVE-2024-21626 class): "
               "no close_range(2) before exec",
        "fast": True,
        "edit": [("    if error_write > 3:\n"
                  "        kernel.sys_close_range(3, error_write - 1)\n"
                  "    kernel.sys_close_range(max(3, error_write + 1))\n", "")],
    },
    {
        "id": "signals-not-reset",
        "exercise": "q5",
        "file": "container.py",
        "why": "the command starts with Python's ignored SIGPIPE and SIGXFSZ: "
               "`yes | head -1` prints Broken pipe",
        "edit": [("    signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
                  "    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)\n", "")],
    },
    # q1: create the child ------------------------------------------------------------
    {
        "id": "plain-fork",
        "exercise": "q1",
        "file": "container.py",
        "why": "os.fork() instead of clone(2): the flags never reach the kernel",
        "equivalent": "in stage 1 the flags are SIGCHLD alone, and clone(SIGCHLD) is what "
                      "fork(2) does (os.fork brackets it with the same PyOS_*Fork hooks "
                      "kernel.sys_clone calls): the child, its fds, signals and status are "
                      "the same; only -v lacks its clone(SIGCHLD) line, which no check "
                      "reads.  From stage 2 the namespace flags are lost: stage2.py's "
                      "fork-drops-namespaces",
        "edit": [("            pid = clone_with_hint(flags)\n",
                  "            pid = os.fork()\n")],
    },
    {
        "id": "clone-without-sigchld",
        "exercise": "q1",
        "file": "container.py",
        "why": "clone(2) with flags 0 (no exit signal): a 'clone' child, which waitpid(2) "
               "without __WALL does not see (ECHILD, a traceback) unless it exec'd (the "
               "kernel then makes its exit signal SIGCHLD): a missing command shows it",
        "edit": [("            pid = clone_with_hint(flags)\n",
                  "            pid = clone_with_hint(0)\n")],
    },
    {
        "id": "child-main-in-both",
        "exercise": "q1",
        "file": "container.py",
        "why": "child_main() called without `if pid == 0`: the parent runs the child's "
               "side too, closes its own go pipe, and both end with 'never told to go'",
        "edit": [("        if pid == 0:\n"
                  "            child_main(container, go_read, go_write, error_read, "
                  "error_write)\n",
                  "        child_main(container, go_read, go_write, error_read, "
                  "error_write)\n")],
    },
    {
        "id": "pid-test-inverted",
        "exercise": "q1",
        "file": "container.py",
        "why": "`if pid != 0` (fork's return values swapped): the parent execs the "
               "command and the child runs the parent's side with pid 0",
        "edit": [("        if pid == 0:\n"
                  "            child_main(",
                  "        if pid != 0:\n"
                  "            child_main(")],
    },
    # q2: tell the child to go ------------------------------------------------------
    {
        "id": "go-never-written",
        "exercise": "q2",
        "file": "container.py",
        "why": "the go pipe is closed without a byte written: the child reads end of file "
               "and gives up (125)",
        "edit": [("        with step(\"tell the container to start\"):\n"
                  "            os.write(go_write, b\"go\")\n", "")],
    },
    {
        "id": "go-to-read-end",
        "exercise": "q2",
        "file": "container.py",
        "why": "go written to the pipe's reading end (closed already after clone): EBADF, "
               "the child is killed, 125",
        "edit": [("            os.write(go_write, b\"go\")\n",
                  "            os.write(go_read, b\"go\")\n")],
    },
    {
        "id": "go-pipe-left-open",
        "exercise": "q2",
        "file": "container.py",
        "why": "go written but the pipe's writing end never closed",
        "equivalent": "the child reads once and goes on at the first byte (it does not read "
                      "to end of file), and the parent's end closes when zookeeper exits: "
                      "nothing waits on that close",
        "edit": [("            os.write(go_write, b\"go\")\n"
                  "        os.close(go_write)\n",
                  "            os.write(go_write, b\"go\")\n")],
    },
    {
        "id": "go-after-wait",
        "exercise": "q2",
        "file": "container.py",
        "why": "the parent waits for the child before it says go: the child waits for go, "
               "the parent for the child's report, forever; a zookeeper that never exits "
               "must fail ('did not exit within N s')",
        "edit": [("        with step(\"tell the container to start\"):\n"
                  "            os.write(go_write, b\"go\")\n"
                  "        os.close(go_write)\n", ""),
                 ("        status = kernel.sys_waitpid(pid)\n",
                  "        status = kernel.sys_waitpid(pid)\n"
                  "        with step(\"tell the container to start\"):\n"
                  "            os.write(go_write, b\"go\")\n"
                  "        os.close(go_write)\n")],
    },
    # q3: wait for the child --------------------------------------------------------
    {
        "id": "no-wait",
        "exercise": "q3",
        "file": "container.py",
        "why": "no waitpid(2): zookeeper exits 0 as soon as the command started, leaving "
               "it running (and unreaped)",
        "edit": [("        status = kernel.sys_waitpid(pid)\n", "        status = 0\n")],
    },
    {
        "id": "wait-nohang",
        "exercise": "q3",
        "file": "container.py",
        "why": "waitpid(pid, WNOHANG): it returns at once while the command still runs, "
               "and the status read is 0",
        "edit": [("        status = kernel.sys_waitpid(pid)\n",
                  "        _, status = os.waitpid(pid, os.WNOHANG)\n")],
    },
    {
        "id": "wait-exit-code-not-status",
        "exercise": "q3",
        "file": "container.py",
        "why": "returns the exit code (waitstatus_to_exitcode) where main() expects the "
               "wait status: exit 42 reads as a death by signal 42, a signal as a "
               "negative number",
        "edit": [("        status = kernel.sys_waitpid(pid)\n",
                  "        status = os.waitstatus_to_exitcode(kernel.sys_waitpid(pid))\n")],
    },
    {
        "id": "wait-signal-lost",
        "exercise": "q3",
        "file": "container.py",
        "why": "keeps only WEXITSTATUS of the status: a command killed by a signal reads "
               "as exit 0, not 128+N",
        "edit": [("        status = kernel.sys_waitpid(pid)\n",
                  "        status = os.WEXITSTATUS(kernel.sys_waitpid(pid)) << 8\n")],
    },
    # q4: block until go -------------------------------------------------------------
    {
        "id": "no-block-on-go",
        "exercise": "q4",
        "file": "container.py",
        "why": "the child does not wait for go: it runs ahead of the parent (in stage 1 "
               "the parent then writes go into a pipe nobody reads: EPIPE)",
        "edit": [("        message = os.read(go_read, 64)\n"
                  "        if not message:\n"
                  "            raise ZooError(\"the container was never told to go: "
                  "zookeeper closed the go \"\n"
                  "                           \"pipe without writing to it\")\n", "")],
    },
    {
        "id": "go-read-wrong-end",
        "exercise": "q4",
        "file": "container.py",
        "why": "the child reads the go pipe's writing end, closed a few lines above: EBADF, "
               "an internal error (125)",
        "edit": [("        message = os.read(go_read, 64)\n",
                  "        message = os.read(go_write, 64)\n")],
    },
    {
        "id": "go-closed-before-read",
        "exercise": "q4",
        "file": "container.py",
        "why": "the child closes go_read before reading it: EBADF (125)",
        "edit": [("        message = os.read(go_read, 64)\n",
                  "        os.close(go_read)\n"
                  "        message = os.read(go_read, 64)\n")],
    },
    {
        "id": "go-eof-not-checked",
        "exercise": "q4",
        "file": "container.py",
        "why": "an empty read (the parent closed the pipe without go) is taken as go",
        "equivalent": "in stage 1 nothing between clone and go can fail short of zookeeper "
                      "being killed, and the child's PR_SET_PDEATHSIG kills it then: no "
                      "run reaches the empty read",
        "edit": [("        if not message:\n"
                  "            raise ZooError(\"the container was never told to go: "
                  "zookeeper closed the go \"\n"
                  "                           \"pipe without writing to it\")\n", "")],
    },
    # q5: exec the command ------------------------------------------------------------
    {
        "id": "exec-always-127",
        "exercise": "q5",
        "file": "container.py",
        "why": "every exec failure is 127: a file that is not executable should be 126",
        "edit": [("        status = NOT_FOUND if e.errno in (errno.ENOENT, errno.ENOTDIR) "
                  "else NOT_EXECUTABLE\n",
                  "        status = NOT_FOUND\n")],
    },
    {
        "id": "exec-126-127-swapped",
        "exercise": "q5",
        "file": "container.py",
        "why": "126 and 127 swapped: not found gives 126, not executable 127",
        "edit": [("        status = NOT_FOUND if e.errno in (errno.ENOENT, errno.ENOTDIR) "
                  "else NOT_EXECUTABLE\n",
                  "        status = NOT_EXECUTABLE if e.errno in (errno.ENOENT, "
                  "errno.ENOTDIR) else NOT_FOUND\n")],
    },
    {
        "id": "exec-enotdir-126",
        "exercise": "q5",
        "file": "container.py",
        "why": "only ENOENT is 'not found': with a file as a PATH entry (ENOTDIR) a missing "
               "command gives 126, where shells say 127",
        "edit": [("        status = NOT_FOUND if e.errno in (errno.ENOENT, errno.ENOTDIR) "
                  "else NOT_EXECUTABLE\n",
                  "        status = NOT_FOUND if e.errno == errno.ENOENT else "
                  "NOT_EXECUTABLE\n")],
    },
    {
        "id": "exec-status-125",
        "exercise": "q5",
        "file": "container.py",
        "why": "the exec failure raised without its status: zookeeper's own 125 for a "
               "missing command",
        "edit": [("        raise ZooError(f\"failed to execute {command[0]}: {e.strerror}\", "
                  "status) from None\n",
                  "        raise ZooError(f\"failed to execute {command[0]}: "
                  "{e.strerror}\") from None\n")],
    },
    {
        "id": "execv-no-path-search",
        "exercise": "q5",
        "file": "container.py",
        "why": "os.execv instead of os.execvp: no PATH search, so `sh` is not found (127)",
        "edit": [("        os.execvp(command[0], command)\n",
                  "        os.execv(command[0], command)\n")],
    },
    {
        "id": "exec-argv-without-name",
        "exercise": "q5",
        "file": "container.py",
        "why": "argv passed without its argv[0] (command[1:]): `sh -c 'echo hello'` "
               "runs as a shell named -c, reading a script called 'echo hello'",
        "edit": [("        os.execvp(command[0], command)\n",
                  "        os.execvp(command[0], command[1:])\n")],
    },
    {
        "id": "exec-error-uncaught",
        "exercise": "q5",
        "file": "container.py",
        "why": "no try/except around execvp: a missing command is an 'internal error' "
               "(125), not 127",
        "edit": [("    try:\n"
                  "        os.execvp(command[0], command)\n"
                  "    except OSError as e:\n"
                  "        kernel.explain_error(f\"execvp({command[0]!r})\", e, \"execve(2)\")\n"
                  "        status = NOT_FOUND if e.errno in (errno.ENOENT, errno.ENOTDIR) "
                  "else NOT_EXECUTABLE\n"
                  "        raise ZooError(f\"failed to execute {command[0]}: {e.strerror}\", "
                  "status) from None\n",
                  "    os.execvp(command[0], command)\n")],
    },
]
