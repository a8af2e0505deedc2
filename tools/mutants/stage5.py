"""Stage 5 (part5_cgroups): mistakes students make in q15-q19.  Data only: tools/mutate.py
reads MUTANTS as literals.  Each `edit` is a list of (old, new): old, in the stage's
part, exactly once, becomes new."""

MUTANTS = [
    # q15 apply_to -----------------------------------------------------------------
    {
        "id": "cgroup-child-never-moved",
        "exercise": "q15",
        "file": "cgroups.py",
        "why": "the cgroup made and its limits written, but the child never written to its "
               "cgroup.procs: the container runs in zookeeper's cgroup, unlimited",
        "edit": [('                kernel.write_file(f"{path}/cgroup.procs", str(pid), '
                  '"cgroups(7)")\n', "                pass\n")],
    },
    {
        "id": "cgroup-parent-moved",
        "exercise": "q15",
        "file": "cgroups.py",
        "why": "os.getpid() written to cgroup.procs instead of the child's pid: zookeeper "
               "itself is limited, the container is not (and the cgroup is busy with "
               "zookeeper in it when it is to be removed)",
        "edit": [('kernel.write_file(f"{path}/cgroup.procs", str(pid), "cgroups(7)")',
                  'kernel.write_file(f"{path}/cgroup.procs", str(os.getpid()), '
                  '"cgroups(7)")')],
    },
    {
        "id": "cgroup-v1-tasks-file",
        "exercise": "q15",
        "file": "cgroups.py",
        "why": "the pid written to `tasks`, cgroup v1's file, which a v2 cgroup does not "
               "have (ENOENT): every run with a limit fails",
        "edit": [('kernel.write_file(f"{path}/cgroup.procs", str(pid), "cgroups(7)")',
                  'kernel.write_file(f"{path}/tasks", str(pid), "cgroups(7)")')],
    },
    {
        "id": "cgroup-moved-after-go",
        "exercise": "q15",
        "file": "container.py",
        "why": "the cgroup made and the child moved after go instead of before: the child "
               "has unshared its cgroup namespace (rooted at zookeeper's cgroup) and may "
               "have forked or run for a while before its limits apply",
        "edit": [("        cleanup.add(container.limits.apply_to(pid))\n", ""),
                 ("        os.close(go_write)\n        # STUDENT CODE ABOVE (q2)\n",
                  "        os.close(go_write)\n        # STUDENT CODE ABOVE (q2)\n"
                  "        cleanup.add(container.limits.apply_to(pid))\n")],
    },
    {
        "id": "cgroup-mode-0700",
        "exercise": "q15",
        "file": "cgroups.py",
        "why": "the cgroup made with mode 0700 \"for safety\": as root, the container's root "
               "(a subordinate uid on the host) cannot read its own limits at "
               "/sys/fs/cgroup",
        "edit": [("                kernel.sys_mkdir(path, 0o755)\n",
                  "                kernel.sys_mkdir(path, 0o700)\n")],
    },
    # q16 memory -------------------------------------------------------------------
    {
        "id": "memory-in-kib",
        "exercise": "q16",
        "file": "cgroups.py",
        "why": "memory.max written in KiB (the limit divided by 1024): 1024 times too low, "
               "so even a small allocation is OOM-killed",
        "fast": True,
        "edit": [('kernel.write_file(f"{path}/memory.max", memory_max(self.memory),',
                  'kernel.write_file(f"{path}/memory.max", str(self.memory // 1024),')],
    },
    {
        "id": "memory-times-1024",
        "exercise": "q16",
        "file": "cgroups.py",
        "why": "-m taken for KiB and multiplied by 1024 again: 64M becomes 64 GiB, and a "
               "200M hog survives",
        "edit": [('kernel.write_file(f"{path}/memory.max", memory_max(self.memory),',
                  'kernel.write_file(f"{path}/memory.max", str(self.memory * 1024),')],
    },
    {
        "id": "memory-high-not-max",
        "exercise": "q16",
        "file": "cgroups.py",
        "why": "memory.high instead of memory.max: past it the container is throttled and "
               "reclaimed from, never OOM-killed; the hog crawls (or swaps) instead of dying",
        "edit": [('kernel.write_file(f"{path}/memory.max", memory_max(self.memory),',
                  'kernel.write_file(f"{path}/memory.high", memory_max(self.memory),')],
    },
    {
        "id": "memory-no-swap-max",
        "exercise": "q16",
        "file": "cgroups.py",
        "why": "no memory.swap.max: at its limit the container swaps instead of being "
               "killed, and a hog outlives -m on any machine with swap",
        "edit": [('            if os.path.exists(f"{path}/memory.swap.max"):\n'
                  '                with step(f"forbid swap ({path}/memory.swap.max)"):\n'
                  '                    kernel.write_file(f"{path}/memory.swap.max", "0", '
                  '"cgroups(7)")\n', "")],
    },
    # q17 cpu ----------------------------------------------------------------------
    {
        "id": "cpu-period-quota-swapped",
        "exercise": "q17",
        "file": "cgroups.py",
        "why": "cpu.max written \"period quota\": 100000 50000 lets the container run "
               "100 ms in every 50 ms, two CPUs' worth: no limit for a single loop",
        "edit": [('kernel.write_file(f"{path}/cpu.max", cpu_max(self.cpu), "cgroups(7)")',
                  'kernel.write_file(f"{path}/cpu.max", " ".join(reversed(cpu_max('
                  'self.cpu).split())), "cgroups(7)")')],
    },
    {
        "id": "cpu-percent-only",
        "exercise": "q17",
        "file": "cgroups.py",
        "why": "the percentage itself written to cpu.max (\"50\"): a quota of 50 "
               "microseconds, below the kernel's 1000 (EINVAL), and -c always fails",
        "edit": [('kernel.write_file(f"{path}/cpu.max", cpu_max(self.cpu), "cgroups(7)")',
                  'kernel.write_file(f"{path}/cpu.max", f"{self.cpu:g}", "cgroups(7)")')],
    },
    {
        "id": "cpu-fraction-not-percent",
        "exercise": "q17",
        "file": "cgroups.py",
        "why": "-c divided by 100 before cpu_max, which wants a percentage: 50 becomes "
               "0.5%, raised to the kernel's smallest quota (1%): the loop barely runs",
        "edit": [('kernel.write_file(f"{path}/cpu.max", cpu_max(self.cpu), "cgroups(7)")',
                  'kernel.write_file(f"{path}/cpu.max", cpu_max(self.cpu / 100), '
                  '"cgroups(7)")')],
    },
    {
        "id": "cpu-weight-not-max",
        "exercise": "q17",
        "file": "cgroups.py",
        "why": "the percentage written to cpu.weight: a relative share against busy "
               "siblings, no cap at all on an idle machine",
        "edit": [('kernel.write_file(f"{path}/cpu.max", cpu_max(self.cpu), "cgroups(7)")',
                  'kernel.write_file(f"{path}/cpu.weight", f"{self.cpu:.0f}", '
                  '"cgroups(7)")')],
    },
    # q18 pids ---------------------------------------------------------------------
    {
        "id": "pids-minus-one",
        "exercise": "q18",
        "file": "cgroups.py",
        "why": "pids.max written as -p minus one (\"the shell does not count\"): -p 10 lets "
               "only 9 processes run",
        "edit": [('kernel.write_file(f"{path}/pids.max", str(self.procs), "cgroups(7)")',
                  'kernel.write_file(f"{path}/pids.max", str(self.procs - 1), '
                  '"cgroups(7)")')],
    },
    {
        "id": "pids-plus-one",
        "exercise": "q18",
        "file": "cgroups.py",
        "why": "pids.max written as -p plus one (\"besides the container's init\"): -p 10 "
               "lets 11 processes run",
        "edit": [('kernel.write_file(f"{path}/pids.max", str(self.procs), "cgroups(7)")',
                  'kernel.write_file(f"{path}/pids.max", str(self.procs + 1), '
                  '"cgroups(7)")')],
    },
    {
        "id": "pids-copied-memory-value",
        "exercise": "q18",
        "file": "cgroups.py",
        "why": "the memory block copied and the value left: str(self.memory) written to "
               "pids.max, \"None\" without -m (EINVAL), 64M processes with it",
        "edit": [('kernel.write_file(f"{path}/pids.max", str(self.procs), "cgroups(7)")',
                  'kernel.write_file(f"{path}/pids.max", str(self.memory), "cgroups(7)")')],
    },
    {
        "id": "pids-into-memory-max",
        "exercise": "q18",
        "file": "cgroups.py",
        "why": "the memory block copied and the file left: -p written to memory.max, 10 "
               "bytes, so the container is OOM-killed at once and no process limit is set",
        "edit": [('kernel.write_file(f"{path}/pids.max", str(self.procs), "cgroups(7)")',
                  'kernel.write_file(f"{path}/memory.max", str(self.procs), "cgroups(7)")')],
    },
    # q19 remove_cgroup ------------------------------------------------------------
    {
        "id": "cgroup-never-removed",
        "exercise": "q19",
        "file": "cgroups.py",
        "why": "no rmdir: every run leaves its zoo-PID cgroup behind",
        "edit": [("            kernel.sys_rmdir(path)\n            # STUDENT CODE ABOVE (q19)\n",
                  "            pass\n            # STUDENT CODE ABOVE (q19)\n")],
    },
    {
        "id": "cgroup-rmtree",
        "exercise": "q19",
        "file": "cgroups.py",
        "why": "the cgroup removed like a directory tree (shutil.rmtree): its control files "
               "cannot be unlinked (EPERM), the cgroup stays and the cleanup only warns",
        "edit": [("            kernel.sys_rmdir(path)\n            # STUDENT CODE ABOVE (q19)\n",
                  "            import shutil\n\n            shutil.rmtree(path)\n"
                  "            # STUDENT CODE ABOVE (q19)\n")],
    },
    {
        "id": "cgroup-unlink-not-rmdir",
        "exercise": "q19",
        "file": "cgroups.py",
        "why": "os.remove(path) instead of rmdir: unlink(2) of a directory fails (EISDIR), "
               "and the cgroup stays",
        "edit": [("            kernel.sys_rmdir(path)\n            # STUDENT CODE ABOVE (q19)\n",
                  "            os.remove(path)\n            # STUDENT CODE ABOVE (q19)\n")],
    },
    {
        "id": "rmdir-without-retry",
        "exercise": "q19",
        "file": "cgroups.py",
        "why": "rmdir tried once with its error swallowed: while the container's last "
               "processes are still leaving (EBUSY) the cgroup stays, with no retry and "
               "no word",
        "edit": [("            kernel.sys_rmdir(path)\n            # STUDENT CODE ABOVE (q19)\n",
                  "            try:\n                kernel.sys_rmdir(path)\n"
                  "            except OSError:\n                pass\n"
                  "            # STUDENT CODE ABOVE (q19)\n")],
    },
]
