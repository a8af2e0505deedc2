"""Stage 2 (part2_namespaces): mistakes students make in q6-q8, and the ones of stage 1
that only show with namespaces.  Data only: tools/mutate.py reads MUTANTS as literals.
Each `edit` is a list of (old, new): old, in the stage's part, exactly once, becomes
new."""

MUTANTS = [
    # q6: the namespaces ---------------------------------------------------------------
    {
        "id": "no-new-pid-namespace",
        "exercise": "q6",
        "file": "container.py",
        "why": "CLONE_NEWPID left out: the command is not PID 1 and sees the host's "
               "processes",
        "fast": True,
        "edit": [("                  | kernel.CLONE_NEWNET | kernel.CLONE_NEWNS "
                  "| kernel.CLONE_NEWPID\n",
                  "                  | kernel.CLONE_NEWNET | kernel.CLONE_NEWNS\n")],
    },
    {
        "id": "no-new-net-namespace",
        "exercise": "q6",
        "file": "container.py",
        "why": "CLONE_NEWNET left out: the container shares the host's network interfaces",
        "edit": [("                  | kernel.CLONE_NEWNET | kernel.CLONE_NEWNS ",
                  "                  | kernel.CLONE_NEWNS ")],
    },
    {
        "id": "no-new-cgroup-namespace",
        "exercise": "q6",
        "file": "container.py",
        "why": "CLONE_NEWCGROUP left out: /proc/self/cgroup shows the host's cgroup paths",
        "edit": [("kernel.CLONE_NEWUSER | kernel.CLONE_NEWCGROUP | kernel.CLONE_NEWIPC",
                  "kernel.CLONE_NEWUSER | kernel.CLONE_NEWIPC")],
    },
    {
        "id": "no-new-ipc-namespace",
        "exercise": "q6",
        "file": "container.py",
        "why": "CLONE_NEWIPC left out: System V IPC and POSIX queues shared with the host",
        "edit": [("kernel.CLONE_NEWUSER | kernel.CLONE_NEWCGROUP | kernel.CLONE_NEWIPC",
                  "kernel.CLONE_NEWUSER | kernel.CLONE_NEWCGROUP")],
    },
    {
        "id": "no-new-user-namespace",
        "exercise": "q6",
        "file": "container.py",
        "why": "CLONE_NEWUSER left out: an unprivileged user may not make the other "
               "namespaces (EPERM), and there is no user namespace to map",
        "edit": [("kernel.CLONE_NEWUSER | kernel.CLONE_NEWCGROUP | kernel.CLONE_NEWIPC",
                  "kernel.CLONE_NEWCGROUP | kernel.CLONE_NEWIPC")],
    },
    {
        "id": "flags-overwrite-sigchld",
        "exercise": "q6",
        "file": "container.py",
        "why": "`flags = ...` instead of `flags |= ...`: SIGCHLD is lost, and waitpid(2) "
               "without __WALL does not see a child without an exit signal (ECHILD, a "
               "traceback) unless it exec'd: a missing command shows it",
        "edit": [("        flags |= (kernel.CLONE_NEWUSER",
                  "        flags = (kernel.CLONE_NEWUSER")],
    },
    {
        "id": "fork-drops-namespaces",
        "exercise": "q1",
        "file": "container.py",
        "why": "q1 written with os.fork() (identical in stage 1): the namespace flags of "
               "q6 never reach the kernel, and newuidmap has no user namespace to map",
        "edit": [("            pid = clone_with_hint(flags)\n",
                  "            pid = os.fork()\n")],
    },
    # q7: the id maps ----------------------------------------------------------------
    {
        "id": "gid-map-from-subuid",
        "exercise": "q7",
        "file": "idmap.py",
        "why": "newgidmap given the subuid range: groups 1..N map to the user's "
               "subordinate uids, which are not its groups' range (the same only where "
               "/etc/subuid and /etc/subgid agree)",
        "edit": [("map_arguments(maps.gid, maps.subgids)",
                  "map_arguments(maps.gid, maps.subuids)")],
    },
    {
        "id": "gid-map-before-setgroups",
        "exercise": "q7",
        "file": "idmap.py",
        "why": "without a subordinate range, gid_map written before setgroups is denied: "
               "the kernel refuses an unprivileged gid_map then (EPERM, 125)",
        "edit": [("    with step(f\"write /proc/{pid}/setgroups\"):\n"
                  "        kernel.write_file(f\"/proc/{pid}/setgroups\", \"deny\", "
                  "\"user_namespaces(7)\")\n", ""),
                 ("        kernel.write_file(f\"/proc/{pid}/gid_map\", f\"0 {gid} 1\\n\", "
                  "\"user_namespaces(7)\")\n",
                  "        kernel.write_file(f\"/proc/{pid}/gid_map\", f\"0 {gid} 1\\n\", "
                  "\"user_namespaces(7)\")\n"
                  "    with step(f\"write /proc/{pid}/setgroups\"):\n"
                  "        kernel.write_file(f\"/proc/{pid}/setgroups\", \"deny\", "
                  "\"user_namespaces(7)\")\n")],
    },
    {
        "id": "map-count-off-by-one",
        "exercise": "q7",
        "file": "idmap.py",
        "why": "the range mapped with count - 1 (65535): the last subordinate id is lost",
        "edit": [("    return [\"0\", str(own_id), \"1\", \"1\", str(start), str(count)]\n",
                  "    return [\"0\", str(own_id), \"1\", \"1\", str(start), str(count - 1)]\n")],
    },
    {
        "id": "map-range-from-zero",
        "exercise": "q7",
        "file": "idmap.py",
        "why": "the subordinate range mapped from 0 (\"0 START COUNT\"), as for root: the "
               "container's root is a subordinate id, not the user, whose files it cannot "
               "touch",
        "edit": [("    if own_id == 0:\n"
                  "        return [\"0\", str(start), str(count)]\n"
                  "    return [\"0\", str(own_id), \"1\", \"1\", str(start), str(count)]\n",
                  "    return [\"0\", str(start), str(count)]\n")],
    },
    {
        "id": "no-gid-map",
        "exercise": "q7",
        "file": "idmap.py",
        "why": "only newuidmap run: gid_map stays empty and setresgid(0) fails (EINVAL)",
        "edit": [("        programs.run([[\"newuidmap\", str(pid)] + map_arguments(maps.uid, "
                  "maps.subuids),\n"
                  "                      [\"newgidmap\", str(pid)] + "
                  "map_arguments(maps.gid, maps.subgids)])\n",
                  "        programs.run([[\"newuidmap\", str(pid)] + map_arguments(maps.uid, "
                  "maps.subuids)])\n")],
    },
    {
        "id": "maps-of-own-pid",
        "exercise": "q7",
        "file": "idmap.py",
        "why": "newuidmap and newgidmap given zookeeper's own pid (os.getpid()), not the "
               "child's: they refuse the host's user namespace (125)",
        "edit": [("        programs.run([[\"newuidmap\", str(pid)]",
                  "        programs.run([[\"newuidmap\", str(os.getpid())]"),
                 ("                      [\"newgidmap\", str(pid)]",
                  "                      [\"newgidmap\", str(os.getpid())]")],
    },
    {
        "id": "maps-not-awaited",
        "exercise": "q7",
        "file": "idmap.py",
        "why": "newuidmap and newgidmap started but not waited for: go may come before "
               "the maps are written, and the child is then nobody (and leaves zombies)",
        "edit": [("        programs.run([[\"newuidmap\", str(pid)] + map_arguments(maps.uid, "
                  "maps.subuids),\n"
                  "                      [\"newgidmap\", str(pid)] + "
                  "map_arguments(maps.gid, maps.subgids)])\n",
                  "        for argv in ([\"newuidmap\", str(pid)] + map_arguments(maps.uid, "
                  "maps.subuids),\n"
                  "                     [\"newgidmap\", str(pid)] + map_arguments(maps.gid, "
                  "maps.subgids)):\n"
                  "            os.posix_spawnp(argv[0], argv, os.environ)\n")],
    },
    {
        "id": "maps-wait-every-child",
        "exercise": "q7",
        "file": "idmap.py",
        "why": "after starting the two tools, waits for every child (os.wait() until "
               "ECHILD), the container and its watcher too: they wait for go, and "
               "zookeeper never exits",
        "edit": [("        programs.run([[\"newuidmap\", str(pid)] + map_arguments(maps.uid, "
                  "maps.subuids),\n"
                  "                      [\"newgidmap\", str(pid)] + "
                  "map_arguments(maps.gid, maps.subgids)])\n",
                  "        for argv in ([\"newuidmap\", str(pid)] + map_arguments(maps.uid, "
                  "maps.subuids),\n"
                  "                     [\"newgidmap\", str(pid)] + map_arguments(maps.gid, "
                  "maps.subgids)):\n"
                  "            os.posix_spawnp(argv[0], argv, os.environ)\n"
                  "        while True:\n"
                  "            try:\n"
                  "                os.wait()\n"
                  "            except ChildProcessError:\n"
                  "                break\n")],
    },
    {
        "id": "maps-one-after-the-other",
        "exercise": "q7",
        "file": "idmap.py",
        "why": "newuidmap run and waited for, then newgidmap: not side by side",
        "equivalent": "both maps are still written before go; only the start is slower by "
                      "one tool's run, which no check times",
        "edit": [("        programs.run([[\"newuidmap\", str(pid)] + map_arguments(maps.uid, "
                  "maps.subuids),\n"
                  "                      [\"newgidmap\", str(pid)] + "
                  "map_arguments(maps.gid, maps.subgids)])\n",
                  "        programs.run([[\"newuidmap\", str(pid)] + map_arguments(maps.uid, "
                  "maps.subuids)])\n"
                  "        programs.run([[\"newgidmap\", str(pid)] + "
                  "map_arguments(maps.gid, maps.subgids)])\n")],
    },
    # The order of the parent's steps, and the go pipe, with a user namespace --------
    {
        "id": "go-before-maps",
        "exercise": "q2",
        "file": "container.py",
        "why": "go said before the id maps are written: the child races newuidmap, and "
               "when it wins it is nobody (setresgid(0) fails, 125)",
        "edit": [("        idmap.write_id_maps(pid, container.id_maps)\n", ""),
                 ("        os.close(go_write)\n        # STUDENT CODE ABOVE (q2)\n",
                  "        os.close(go_write)\n"
                  "        idmap.write_id_maps(pid, container.id_maps)\n"
                  "        # STUDENT CODE ABOVE (q2)\n")],
    },
    {
        "id": "no-block-on-go-userns",
        "exercise": "q4",
        "file": "container.py",
        "why": "q4 that does not wait for go (hardly visible in stage 1): the child "
               "becomes root before its maps are written, and the go that comes later "
               "meets a pipe nobody reads",
        "edit": [("        message = os.read(go_read, 64)\n"
                  "        if not message:\n"
                  "            raise ZooError(\"the container was never told to go: "
                  "zookeeper closed the go \"\n"
                  "                           \"pipe without writing to it\")\n", "")],
    },
    # q8: the hostname -------------------------------------------------------------
    {
        "id": "hostname-in-parent",
        "exercise": "q8",
        "file": "container.py",
        "why": "sethostname(2) called by the parent, which is in the host's UTS namespace: "
               "EPERM (or, as root, the host renamed)",
        "edit": [("        set_hostname(\"zoo\")\n", ""),
                 ("        idmap.write_id_maps(pid, container.id_maps)\n",
                  "        idmap.write_id_maps(pid, container.id_maps)\n"
                  "        set_hostname(\"zoo\")\n")],
    },
    {
        "id": "hostname-not-set",
        "exercise": "q8",
        "file": "container.py",
        "why": "set_hostname() only catches the error: sethostname(2) is never called, the "
               "container keeps the host's name",
        "edit": [("        kernel.sys_sethostname(name)\n", "        pass\n")],
    },
    {
        "id": "hostname-as-domainname",
        "exercise": "q8",
        "file": "container.py",
        "why": "setdomainname(2), the UTS namespace's other name, instead of "
               "sethostname(2): the hostname stays the host's",
        "edit": [("        kernel.sys_sethostname(name)\n",
                  "        if kernel.libc.setdomainname(name.encode(), len(name)) != 0:\n"
                  "            raise OSError(kernel.ctypes.get_errno(), "
                  "os.strerror(kernel.ctypes.get_errno()))\n")],
    },
    {
        "id": "hostname-error-ignored",
        "exercise": "q8",
        "file": "container.py",
        "why": "a failed sethostname(2) is ignored (except OSError: pass)",
        "equivalent": "with the UTS namespace of q6, root in the container may always set "
                      "its hostname: the error path is never taken",
        "edit": [("        hint = idmap.userns_refusal_hint() or e.strerror\n"
                  "        raise ZooError(f\"failed to set the hostname to {name}: {hint}\") "
                  "from None\n",
                  "        pass\n")],
    },
    {
        "id": "hostname-before-go",
        "exercise": "q8",
        "file": "container.py",
        "why": "the hostname set before the child waits for go (before its ids are mapped)",
        "equivalent": "a child cloned with CLONE_NEWUSER holds every capability in its new "
                      "user namespace from the start, maps or not (user_namespaces(7)), and "
                      "its UTS namespace is that namespace's: sethostname succeeds the same",
        "edit": [("        set_hostname(\"zoo\")\n", ""),
                 ("        reset_signal_handlers(container.ignored_signals)\n",
                  "        reset_signal_handlers(container.ignored_signals)\n"
                  "        set_hostname(\"zoo\")\n")],
    },
]
