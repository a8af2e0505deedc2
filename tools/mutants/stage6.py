"""Stage 6 (part6_network): mistakes students make in q20-q21.  Data only: tools/mutate.py
reads MUTANTS as literals.  Each `edit` is a list of (old, new): old, in the stage's
part, exactly once, becomes new."""

MUTANTS = [
    # q20 start --------------------------------------------------------------------
    {
        "id": "slirp-host-loopback",
        "exercise": "q20",
        "file": "network.py",
        "why": "slirp4netns without --disable-host-loopback: the container reaches the "
               "host's 127.0.0.1 at 10.0.2.2 (its databases, its X server, its agents)",
        "edit": [('argv = ["slirp4netns", "--disable-host-loopback", "--mtu=65521",',
                  'argv = ["slirp4netns", "--mtu=65521",')],
    },
    {
        "id": "slirp-tap0",
        "exercise": "q20",
        "file": "network.py",
        "why": "the interface named tap0, as in slirp4netns(1)'s example, not eth0: the "
               "container has no eth0",
        "fast": True,
        "edit": [('                        "-c", str(pid), "eth0"]\n',
                  '                        "-c", str(pid), "tap0"]\n')],
    },
    {
        "id": "slirp-own-pid",
        "exercise": "q20",
        "file": "network.py",
        "why": "slirp4netns given zookeeper's pid (os.getpid()) instead of the container's: "
               "it tries to make its TAP device in the host's network namespace, where the "
               "user may not, and -n always fails",
        "edit": [('                        "-c", str(pid), "eth0"]\n',
                  '                        "-c", str(os.getpid()), "eth0"]\n')],
    },
    {
        "id": "slirp-no-ready-fd",
        "exercise": "q20",
        "file": "network.py",
        "why": "--ready-fd left out: slirp4netns inherits the ready pipe's write end and "
               "never writes to it, so zookeeper waits out its 20 s and gives up: -n "
               "always fails, 20 s late",
        "edit": [('                        f"--ready-fd={ready_write}", '
                  'f"--exit-fd={exit_read}",\n',
                  '                        f"--exit-fd={exit_read}",\n')],
    },
    {
        "id": "slirp-no-exit-fd",
        "exercise": "q20",
        "file": "network.py",
        "why": "--exit-fd left out: stop() still ends slirp4netns, but a zookeeper killed "
               "with SIGKILL leaves it running for good",
        "edit": [('                        f"--ready-fd={ready_write}", '
                  'f"--exit-fd={exit_read}",\n',
                  '                        f"--ready-fd={ready_write}",\n')],
    },
    {
        "id": "slirp-fds-not-kept",
        "exercise": "q20",
        "file": "network.py",
        "why": "programs.spawn() without keep=: the ready and exit fds are close-on-exec, "
               "so slirp4netns is handed numbers of closed descriptors and fails (-n always "
               "fails)",
        "edit": [("                self.pid = programs.spawn(argv, self.log, "
                  "keep=(ready_write, exit_read))\n",
                  "                self.pid = programs.spawn(argv, self.log, keep=())\n")],
    },
    {
        "id": "slirp-pid-forgotten",
        "exercise": "q20",
        "file": "network.py",
        "why": "programs.spawn()'s pid not kept in self.pid: stop() has nothing to stop, and "
               "slirp4netns is never stopped by zookeeper (it exits a little later, when "
               "it sees its exit fd close)",
        "edit": [("                self.pid = programs.spawn(argv, self.log, "
                  "keep=(ready_write, exit_read))\n",
                  "                programs.spawn(argv, self.log, "
                  "keep=(ready_write, exit_read))\n")],
    },
    # q21 stop ---------------------------------------------------------------------
    {
        "id": "slirp-never-stopped",
        "exercise": "q21",
        "file": "network.py",
        "why": "stop() neither kills nor reaps slirp4netns: zookeeper returns with it still "
               "running (it exits a little later, when it sees its exit fd close)",
        "edit": [("                kernel.sys_kill(pid, signal.SIGTERM)\n"
                  "                kernel.sys_waitpid(pid)\n", "                pass\n")],
    },
    {
        "id": "slirp-waited-never-killed",
        "exercise": "q21",
        "file": "network.py",
        "why": "waitpid(2) without kill(2) first: slirp4netns exits only when its exit fd "
               "closes, which stop() does after the wait, so zookeeper waits forever",
        "edit": [("                kernel.sys_kill(pid, signal.SIGTERM)\n", "")],
    },
    {
        "id": "slirp-killed-not-reaped",
        "exercise": "q21",
        "file": "network.py",
        "why": "SIGTERM sent but never waited for: zookeeper returns before slirp4netns has "
               "exited, and meanwhile it is a zombie of zookeeper's",
        "edit": [("                kernel.sys_waitpid(pid)\n", "")],
    },
    {
        "id": "slirp-kill-self-pid",
        "exercise": "q21",
        "file": "network.py",
        "why": "self.pid used inside the block, which the line before has just set to None: "
               "kill(None) raises TypeError, slirp4netns is neither killed nor reaped, and "
               "the cleanup says 'internal error'",
        "edit": [("                kernel.sys_kill(pid, signal.SIGTERM)\n"
                  "                kernel.sys_waitpid(pid)\n",
                  "                kernel.sys_kill(self.pid, signal.SIGTERM)\n"
                  "                kernel.sys_waitpid(self.pid)\n")],
    },
    {
        "id": "slirp-sigkill",
        "exercise": "q21",
        "file": "network.py",
        "why": "SIGKILL instead of SIGTERM",
        "equivalent": "slirp4netns runs here without --api-socket and holds nothing to tidy "
                      "up: SIGKILL ends it as SIGTERM does, and waitpid reaps it the same",
        "edit": [("                kernel.sys_kill(pid, signal.SIGTERM)\n",
                  "                kernel.sys_kill(pid, signal.SIGKILL)\n")],
    },
    {
        "id": "slirp-kill-group",
        "exercise": "q21",
        "file": "network.py",
        "why": "kill(-pid): the signal sent to slirp4netns' process group",
        "equivalent": "programs.spawn() starts slirp4netns with setsid: its process group "
                      "is its own pid and holds only it, so kill(-pid) reaches the same one "
                      "process",
        "edit": [("                kernel.sys_kill(pid, signal.SIGTERM)\n",
                  "                kernel.sys_kill(-pid, signal.SIGTERM)\n")],
    },
]
