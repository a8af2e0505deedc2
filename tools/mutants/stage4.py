"""Stage 4 (part4_filesystem): mistakes students make in q11-q14.  Data only: tools/mutate.py
reads MUTANTS as literals.  Each `edit` is a list of (old, new): old, in the stage's
part, exactly once, becomes new.  Every stage-4 mutant must be caught."""

MUTANTS = [
    # q11 make_mounts_private ------------------------------------------------------
    {
        "id": "mounts-not-private",
        "exercise": "q11",
        "file": "rootfs.py",
        "why": 'no mount(NULL, "/", MS_REC|MS_PRIVATE): the copied mounts stay slaves of '
               "the host's (a less privileged namespace turns shared into slave), so the "
               "container's / and its mounts under it keep receiving the host's mount events",
        "edit": [('        kernel.sys_mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)\n',
                  "        pass\n")],
    },
    {
        "id": "private-not-recursive",
        "exercise": "q11",
        "file": "rootfs.py",
        "why": "MS_PRIVATE without MS_REC: only the mount at / turns private; every mount "
               "below it (/tmp, /home, the rootfs's own) stays a slave of the host's",
        "edit": [('kernel.sys_mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)',
                  'kernel.sys_mount(None, "/", None, kernel.MS_PRIVATE)')],
    },
    {
        "id": "mounts-slave-not-private",
        "exercise": "q11",
        "file": "rootfs.py",
        "why": "MS_REC|MS_SLAVE (0x80000, which kernel.py lacks; what systemd-nspawn "
               "does) instead of MS_PRIVATE: the container's mounts stay out of the host, "
               "but the host's later mounts and unmounts still reach the container",
        "edit": [('kernel.sys_mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)',
                  'kernel.sys_mount(None, "/", None, kernel.MS_REC | 0x80000)')],
    },
    {
        "id": "private-flags-with-or",
        "exercise": "q11",
        "file": "rootfs.py",
        "why": "the flags joined with Python's `or` instead of `|`: MS_REC or MS_PRIVATE is "
               "MS_REC alone, a mount(2) with no type and no propagation flag (EINVAL): "
               "every run with -r fails",
        "edit": [('kernel.sys_mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)',
                  'kernel.sys_mount(None, "/", None, kernel.MS_REC or kernel.MS_PRIVATE)')],
    },
    # q12 bind_rootfs --------------------------------------------------------------
    {
        "id": "bind-without-rec",
        "exercise": "q12",
        "file": "rootfs.py",
        "why": "the rootfs bind-mounted without MS_REC: a mount inside the rootfs (a rootfs "
               "on its own disk, a tmpfs in it) is missing in the container, an empty "
               "directory instead",
        "edit": [("kernel.sys_mount(rootfs, new_root, None, kernel.MS_BIND | kernel.MS_REC)",
                  "kernel.sys_mount(rootfs, new_root, None, kernel.MS_BIND)")],
    },
    {
        "id": "bind-args-swapped",
        "exercise": "q12",
        "file": "rootfs.py",
        "why": "source and target swapped: the empty mount point is bound over the rootfs, "
               "new_root stays a plain directory and pivot_root(2) refuses it (EINVAL)",
        "edit": [("kernel.sys_mount(rootfs, new_root, None, kernel.MS_BIND | kernel.MS_REC)",
                  "kernel.sys_mount(new_root, rootfs, None, kernel.MS_BIND | kernel.MS_REC)")],
    },
    {
        "id": "bind-mount-point-onto-itself",
        "exercise": "q12",
        "file": "rootfs.py",
        "why": "the classic `mount --bind new_root new_root` to make new_root a mount "
               "point, without the rootfs: the container's / is the empty temp dir, with "
               "no shell in it",
        "edit": [("kernel.sys_mount(rootfs, new_root, None, kernel.MS_BIND | kernel.MS_REC)",
                  "kernel.sys_mount(new_root, new_root, None, kernel.MS_BIND | kernel.MS_REC)")],
    },
    {
        "id": "bind-flag-missing",
        "exercise": "q12",
        "file": "rootfs.py",
        "why": "MS_REC without MS_BIND: mount(2) takes it for a new mount of no type "
               "(EINVAL), and every run with -r fails",
        "edit": [("kernel.sys_mount(rootfs, new_root, None, kernel.MS_BIND | kernel.MS_REC)",
                  "kernel.sys_mount(rootfs, new_root, None, kernel.MS_REC)")],
    },
    {
        "id": "bind-read-only",
        "exercise": "q12",
        "file": "rootfs.py",
        "why": "MS_RDONLY added to the bind mount, to keep the rootfs safe",
        "equivalent": "mount(2) ignores every flag but MS_REC when it creates a bind mount: a "
                      "read-only bind needs a second call with MS_REMOUNT, so the rootfs "
                      "stays writable as in the reference",
        "edit": [("kernel.sys_mount(rootfs, new_root, None, kernel.MS_BIND | kernel.MS_REC)",
                  "kernel.sys_mount(rootfs, new_root, None, kernel.MS_BIND | kernel.MS_REC "
                  "| kernel.MS_RDONLY)")],
    },
    {
        "id": "temp-dir-normal-path-only",
        "exercise": "q12",
        "file": "container.py",
        "why": "the mount point removed after waitpid only, not as a cleanup step: any "
               "error of the parent after mkdtemp (the id maps, a signal before the wait) "
               "leaves /tmp/zoo.XXXXXX behind (given code of the parent around q12-q14)",
        "edit": [("    cleanup.add(container.fs.remove)\n", ""),
                 ("        status = kernel.sys_waitpid(pid)\n",
                  "        status = kernel.sys_waitpid(pid)\n"
                  "        container.fs.remove()\n")],
    },
    {
        "id": "temp-dir-left-on-prepare-error",
        "exercise": "q12",
        "file": "rootfs.py",
        "why": "an error after mkdtemp in prepare (the overlay's directories, the chown as "
               "root) is reported but the mount point made just before is left behind "
               "(given code of the parent around q12)",
        "edit": [("    except OSError as e:\n        fs.remove()\n",
                  "    except OSError as e:\n")],
    },
    # q13 mount_proc ---------------------------------------------------------------
    {
        "id": "proc-without-flags",
        "exercise": "q13",
        "file": "rootfs.py",
        "why": "proc mounted without MS_NOSUID|MS_NODEV|MS_NOEXEC: setuid programs, device "
               "files and programs under /proc are honoured",
        "edit": [('        kernel.sys_mount("proc", target, "proc",\n'
                  "                         kernel.MS_NOSUID | kernel.MS_NODEV | "
                  "kernel.MS_NOEXEC)\n",
                  '        kernel.sys_mount("proc", target, "proc", 0)\n')],
    },
    {
        "id": "proc-without-noexec",
        "exercise": "q13",
        "file": "rootfs.py",
        "why": "MS_NOEXEC forgotten: nosuid and nodev only, as /tmp has; a program under "
               "/proc (/proc/self/fd/N, a memfd) can be executed from the mount",
        "edit": [("                         kernel.MS_NOSUID | kernel.MS_NODEV | "
                  "kernel.MS_NOEXEC)\n",
                  "                         kernel.MS_NOSUID | kernel.MS_NODEV)\n")],
    },
    {
        "id": "proc-at-host-path",
        "exercise": "q13",
        "file": "rootfs.py",
        "why": 'proc mounted at "/proc" instead of target: before pivot_root that is the '
               "host's /proc in the child's namespace, not the rootfs's, which stays empty "
               "(the given check that proc is there refuses to go on)",
        "edit": [('        kernel.sys_mount("proc", target, "proc",\n',
                  '        kernel.sys_mount("proc", "/proc", "proc",\n')],
    },
    {
        "id": "proc-bound-from-host",
        "exercise": "q13",
        "file": "rootfs.py",
        "why": "the host's /proc bind-mounted (as /dev's nodes are) instead of a new proc: "
               "the container sees every process of the host, and the host's mounts",
        "edit": [('        kernel.sys_mount("proc", target, "proc",\n'
                  "                         kernel.MS_NOSUID | kernel.MS_NODEV | "
                  "kernel.MS_NOEXEC)\n",
                  '        kernel.sys_mount("/proc", target, None, kernel.MS_BIND | '
                  "kernel.MS_REC)\n")],
    },
    {
        "id": "proc-mounted-at-shown-path",
        "exercise": "q13",
        "file": "rootfs.py",
        "why": "proc mounted at `shown` (new_root/proc, a path) rather than target (the "
               "/proc/self/fd/N of the directory opened without following links)",
        "equivalent": "the path and the fd name the same directory unless another process "
                      "swaps it for a link between open_beneath and the mount, a race no "
                      "check can set up; and open_new_mount then fails closed anyway",
        "edit": [('        kernel.sys_mount("proc", target, "proc",\n',
                  '        kernel.sys_mount("proc", shown, "proc",\n')],
    },
    {
        "id": "proc-not-masked",
        "exercise": "q13",
        "file": "rootfs.py",
        "why": "the masks of the new proc left out: /proc/sys writable (its knobs are the "
               "host's), /proc/kcore, keys and timer_list readable (the given mask_proc, "
               "taken out by a student who finds it in the way)",
        "edit": [("    mask_paths(proc, shown, PROC_MASKED_FILES, PROC_MASKED_DIRS, "
                  "PROC_READ_ONLY)\n", "    pass\n")],
    },
    # q14 switch_root --------------------------------------------------------------
    {
        "id": "pivot-root-put-old-kept",
        "exercise": "q14",
        "file": "rootfs.py",
        "why": 'pivot_root(".", "home") with put_old a directory of the rootfs, never '
               "unmounted: the host's whole filesystem is reachable at /home",
        "fast": True,
        "edit": [('        kernel.sys_pivot_root(".", ".")\n',
                  '        kernel.sys_pivot_root(".", "home")\n'),
                 ('        kernel.sys_umount2(".", kernel.MNT_DETACH)\n', "        pass\n")],
    },
    {
        "id": "pivot-root-no-detach",
        "exercise": "q14",
        "file": "rootfs.py",
        "why": "pivot_root(\".\", \".\") without umount2(\".\", MNT_DETACH): the host's root "
               "stays stacked on the container's / and its mounts are listed in the container's "
               "mountinfo (\"/\" still resolves to the new root under the stack, so the "
               "given check_old_root_gone does not see it: tests' NO_DETACH without its "
               "second edit, which changes nothing)",
        "edit": [('        kernel.sys_umount2(".", kernel.MNT_DETACH)\n', "        pass\n")],
    },
    {
        "id": "pivot-root-no-chdir",
        "exercise": "q14",
        "file": "rootfs.py",
        "why": 'no chdir(new_root) before pivot_root(".", "."): "." is the directory '
               "zookeeper was started in, not a mount point (EINVAL)",
        "edit": [("        kernel.sys_chdir(new_root)\n", "        pass\n")],
    },
    {
        "id": "pivot-root-args-swapped",
        "exercise": "q14",
        "file": "rootfs.py",
        "why": 'the put_old idiom with the arguments swapped: pivot_root("old", ".") '
               "asks for a new root that is no mount point, under the old one (EINVAL)",
        "edit": [('        kernel.sys_pivot_root(".", ".")\n',
                  '        os.makedirs("old", exist_ok=True)\n'
                  '        kernel.sys_pivot_root("old", ".")\n')],
    },
    {
        "id": "umount-without-detach",
        "exercise": "q14",
        "file": "rootfs.py",
        "why": 'umount2(".", 0) instead of MNT_DETACH: the old root is busy (mounts under '
               "it, locked together in a user namespace) and the unmount fails",
        "edit": [('        kernel.sys_umount2(".", kernel.MNT_DETACH)\n',
                  '        kernel.sys_umount2(".", 0)\n')],
    },
    {
        "id": "no-chdir-to-new-root-after",
        "exercise": "q14",
        "file": "rootfs.py",
        "why": 'the final chdir("/") left out',
        "equivalent": 'after chdir(new_root) and pivot_root(".", ".") the working directory '
                      'already is the top of the new root, which is what chdir("/") gives',
        "edit": [('        kernel.sys_chdir("/")\n', "        pass\n")],
    },
]
