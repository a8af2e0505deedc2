# zookeeper-source: stage=4
"""The container's own filesystem: a directory of the host becomes its /.

The child already has its own mount namespace (CLONE_NEWNS): mounts it makes
from now on are its own, once propagation is made private.  It bind-mounts the
rootfs directory (-r DIR) onto a temporary directory, fills in what programs
expect (/dev, /tmp, /sys, /proc), and pivot_root(2)s into it: the host's files
are then out of reach.  See mount_namespaces(7), pivot_root(2), mount(2).

With -o, the rootfs is the lower layer of an overlay (no man page: the kernel's
Documentation/filesystems/overlayfs.rst) whose upper layer is a throw-away
directory: DIR is never modified.  Without it, changes the
container makes persist in DIR, as the course expects.

The parent checks DIR and makes the temporary directories before clone, and
removes them on every way out (Filesystem.remove); the child mounts
(Filesystem.enter) the very directory the parent checked, never another one put
in DIR's place meanwhile.
"""

import errno
import fcntl
import os
import stat

import cgroups  # from stage 5
import idmap
import kernel
from errors import ZooError, step
from exercise import part_of_directory  # skeleton only
from options import shown

PART = part_of_directory(__file__)  # part3_seccomp/ -> 3 (exercise.py)  # skeleton only

TMP_DIR = "/tmp"  # where the mount point /tmp/zoo.XXXXXX is made
MKDTEMP_LETTERS = "abcdefghijklmnopqrstuvwxyz0123456789"  # what mkdtemp puts for XXXXXX
# Device nodes programs expect, bound from the host: an unprivileged user may not
# create device nodes (mknod(2) fails), so rootless runtimes borrow the host's.
DEVICES = ["null", "zero", "full", "random", "urandom", "tty"]
DEV_LINKS = [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")]


# The command's PATH in a rootfs of its own: the standard one, as runc's `runc spec`
# and Docker give a container.  The caller's names the host's directories: Fedora's
# and Arch's have no /bin (theirs is a link to usr/bin), so in a rootfs whose sh is
# /bin/sh, as busybox's and Alpine's are, `sh` was not found.
CONTAINER_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def prepare(opts, owner=None) -> "Filesystem":
    """Parent, before clone: check -r DIR and make the temporary mount point, owned
    by owner (the host's uid and gid of the container's root, which must reach it)."""
    fs = Filesystem(opts.mount_proc)
    if not opts.rootfs:
        return fs  # the container keeps the host's files, as in part 3
    fs.shown = shown(opts.rootfs, 200)
    try:
        fs.rootfs = os.path.abspath(opts.rootfs)
    except OSError as e:  # a relative path, from a directory since removed: getcwd(3)
        raise ZooError(f"failed to use {fs.shown} as the rootfs: the current directory is "
                       f"gone ({e.strerror})") from None
    fs.rootfs_fd = open_rootfs(fs.shown, fs.rootfs)
    fs.rootfs = path_in_this_namespace(fs.shown, fs.rootfs_fd)
    rootfs_mode = stat.S_IMODE(os.fstat(fs.rootfs_fd).st_mode)
    owner = owner or (os.getuid(), os.getgid())
    remove_orphans(TMP_DIR, {os.geteuid(), owner[0]})
    try:
        fs.mount_point, fs.lock = make_locked_mount_point(f"{TMP_DIR}/zoo.XXXXXX")
        kernel.explain(f'mkdtemp("{TMP_DIR}/zoo.XXXXXX")', kernel.quoted(fs.mount_point),
                       "mkdtemp(3)")
        if opts.overlay:
            # A name of its own (random too): one made from the mount point's, which
            # anyone sees appear in /tmp, another user could take first.
            fs.overlay_dir = mkdtemp(f"{fs.mount_point}.overlay.XXXXXX")
            # The overlay's / takes the upper directory's owner and mode: the rootfs's.
            os.mkdir(fs.upper_dir(), rootfs_mode)
            os.chmod(fs.upper_dir(), rootfs_mode)
            os.mkdir(fs.work_dir(), 0o700)
            os.chmod(fs.work_dir(), 0o700)  # whatever the umask took away (umask(2))
        if owner != (os.getuid(), os.getgid()):  # root, mapped to its range
            made = [fs.upper_dir(), fs.work_dir(), fs.overlay_dir] if fs.overlay_dir else []
            for path in made + [fs.mount_point]:  # children first: then nobody else
                give_directory(path, owner)      # can put a link among them meanwhile
    except OSError as e:
        fs.remove()
        where = e.filename or TMP_DIR
        raise ZooError(f"failed to create a temporary directory in {where}: {e.strerror}")
    return fs


def give_directory(path: str, owner: tuple[int, int]) -> None:
    """chown a directory we just made, by an fd opened without following links."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        kernel.sys_fchown(fd, *owner)
    finally:
        os.close(fd)


def make_locked_mount_point(template: str) -> tuple[str, int]:
    """mkdtemp, then a lock on it held for as long as zookeeper lives: flock(2)'s
    lock goes away with the last fd, also when zookeeper is killed, which is how
    the next run tells what a killed zookeeper left (remove_orphans)."""
    for _ in range(10):
        path = mkdtemp(template)
        fd = lock_directory(path)
        if fd is None:
            continue  # another run took it for an orphan at once
        try:
            if os.path.samestat(os.fstat(fd), os.lstat(path)):
                return path, fd
        except OSError:
            pass
        os.close(fd)
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), template)


def lock_directory(path: str) -> int | None:
    """An fd of directory path (never through a link) holding its flock(2) lock, or
    None when the lock is someone else's (a zookeeper that still lives) or the
    directory is gone."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def remove_orphans(tmp_dir: str, owners: set) -> None:
    """Remove what a killed zookeeper of ours left in tmp_dir: a zoo.XXXXXX owned by
    us (or, run by root, by our containers' root) that nobody holds the lock of, and
    its overlay's zoo.XXXXXX.overlay.YYYYYY.  Anyone else's, or one in use, is left
    alone."""
    try:
        entries = [e for e in os.scandir(tmp_dir) if e.name.startswith("zoo.")]
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if named_by_mkdtemp(name, "zoo."):
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if stat.S_ISDIR(info.st_mode) and info.st_uid in owners:
                overlays = [e for e in entries if named_by_mkdtemp(e.name, f"{name}.overlay.")]
                remove_if_orphaned(entry.path, overlays, owners)


def named_by_mkdtemp(name: str, prefix: str) -> bool:
    """Is name prefix and six of mkdtemp's letters, as a name zookeeper made?"""
    return (len(name) == len(prefix) + 6 and name.startswith(prefix)
            and all(c in MKDTEMP_LETTERS for c in name[len(prefix):]))


def remove_if_orphaned(path: str, overlays: list, owners: set) -> None:
    """A killed zookeeper's mount point is empty here (its mounts were in the child's
    namespace), its overlay holds upper/ and work/ alone: anything else of that name
    is the user's own, and stays."""
    fd = lock_directory(path)
    if fd is None:
        return  # its zookeeper still lives
    try:
        if os.listdir(fd):
            return
        for overlay in overlays:
            info = overlay.stat(follow_symlinks=False)
            if stat.S_ISDIR(info.st_mode) and info.st_uid in owners and \
                    set(os.listdir(overlay.path)) <= {"upper", "work"}:
                remove_tree(overlay.path)
        os.rmdir(path)
        kernel.explain(f"remove {path}, left by a zookeeper that was killed", "ok")
    except Exception:  # another run's leftovers never stop this one
        pass
    finally:
        os.close(fd)


def mkdtemp(template: str) -> str:
    """mkdtemp(3): a new directory, mode 0700, named after template with its trailing
    XXXXXX replaced by random letters; mkdir(2) fails with EEXIST rather than reuse
    one, so nobody else's directory is ever taken.  (Python's tempfile module does
    the same, at ~5 ms of imports.)"""
    for _ in range(100):
        name = template
        if name.endswith("XXXXXX"):
            name = name[:-6] + "".join(MKDTEMP_LETTERS[b % len(MKDTEMP_LETTERS)]
                                       for b in os.urandom(6))
        try:
            os.mkdir(name, 0o700)
        except FileExistsError:
            if not template.endswith("XXXXXX"):
                raise
            continue
        # mkdir(2)'s mode passes through the umask: 0700 under umask 0777 is 000, a
        # directory we could not even open.  In /tmp (sticky) only we may rename or
        # remove it: another run of ours, whose sweep took it, still empty and not
        # locked yet, for a killed one's (remove_orphans).  Then another name.
        try:
            os.chmod(name, 0o700)
        except FileNotFoundError:
            continue
        return name
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), template)


def open_rootfs(given: str, path: str) -> int:
    """-r DIR, opened once (an O_PATH fd, open(2)): a directory we may enter, or one
    line and 125.  The fd keeps DIR itself (not a name) for the child to compare
    with what it mounts (Filesystem.open_rootfs_again), and alive meanwhile, so its
    inode number cannot go to another directory."""
    try:
        fd = kernel.sys_open(path, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as e:
        raise ZooError(f"failed to use {given} as the rootfs: {e.strerror}") from None
    if not os.access(fd_path(fd), os.R_OK | os.X_OK):
        os.close(fd)
        raise ZooError(f"failed to use {given} as the rootfs: {os.strerror(errno.EACCES)}")
    return fd


def path_in_this_namespace(given: str, fd: int) -> str:
    """The path by which the child, in a copy of our mount namespace, opens the
    directory fd holds again: the kernel's name for it (readlink of /proc/self/fd/N,
    proc(5)), checked to lead back to it.  -r /proc/self/fd/M, a descriptor the
    caller passed, thus names its directory; one from another mount namespace has
    no such path here, and mount(2) takes no source from another namespace."""
    try:
        path = os.readlink(fd_path(fd))
        if os.path.samestat(os.stat(path), os.fstat(fd)):
            return path
    except OSError:
        pass
    raise ZooError(f"failed to use {given} as the rootfs: it is not reachable by a path "
                   "in zookeeper's mount namespace")


class Filesystem:
    """What the parent made for the container's filesystem; the child gets a copy."""

    def __init__(self, mount_proc: bool):
        self.mount_proc = mount_proc  # -P
        self.rootfs = None  # -r DIR, absolute
        self.shown = None  # -r DIR as given, for messages
        self.rootfs_fd = None  # an O_PATH fd of the directory the parent checked
        self.mount_point = None  # /tmp/zoo.XXXXXX
        self.overlay_dir = None  # -o: /tmp/zoo.XXXXXX.overlay.XXXXXX: upper/ and work/
        self.lock = None  # an fd of mount_point, locked while we live

    def upper_dir(self) -> str:
        return f"{self.overlay_dir}/upper"

    def work_dir(self) -> str:
        return f"{self.overlay_dir}/work"

    def enter(self) -> None:
        """Child, after go: make the mounts and switch to the new root."""
        make_mounts_private()
        if self.rootfs is None:
            if self.mount_proc:
                mount_proc("/proc", "/proc")  # over the host's, in our mount namespace only
                mask_proc("/proc", "/proc")
            return
        new_root = self.mount_point
        rootfs = self.open_rootfs_again()
        if self.overlay_dir:
            mount_overlay(fd_path(rootfs), self.upper_dir(), self.work_dir(), new_root)
        else:
            bind_rootfs(fd_path(rootfs), new_root)
        os.close(rootfs)
        # Our copies of the parent's fds of host directories: through either, a link
        # in the rootfs to /proc/self/fd/N/.. would lead out to the host's files.
        self.close_host_fds()
        root = open_new_root(new_root)
        mount_dev(root, new_root)
        mount_tmp(root, new_root)
        mount_sys(root, new_root)
        if self.mount_proc:
            proc = mount_point_in(root, "proc", new_root)
            if proc is not None:
                mount_proc(fd_path(proc), f"{new_root}/proc")
                proc = open_new_mount(root, "proc", new_root, kernel.PROC_SUPER_MAGIC, proc)
                mask_proc(fd_path(proc), f"{new_root}/proc")
        switch_root(new_root)
        check_old_root_gone(root)
        use_the_container_environment()

    def open_rootfs_again(self) -> int:
        """Child: an O_PATH fd of -r DIR, opened in our own mount namespace (mount(2)
        takes a source from no other: EINVAL) and refused unless it is the very
        directory the parent checked.  The child mounts through this fd, never
        through DIR's name again: between the parent's check and the mount, whoever
        may write DIR's parent directory could have renamed another directory (or a
        link to /) into its place, and the host's / would become the container's."""
        with step(f"open {self.shown}"):
            fd = kernel.sys_open(self.rootfs, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)
        if not os.path.samestat(os.fstat(fd), os.fstat(self.rootfs_fd)):
            os.close(fd)
            raise ZooError(f"failed to use {self.shown} as the rootfs: it was replaced by "
                           "another directory while zookeeper started")
        return fd

    def remove(self) -> None:
        """Parent, on every way out: remove the temporary directories.  The mounts
        were made in the child's mount namespace, which ended with it.  Idempotent.
        The overlay goes first: the mount point's lock says it is still ours."""
        try:
            if self.overlay_dir:
                path, self.overlay_dir = self.overlay_dir, None
                remove_tree(path)
        except BaseException:
            # Left, unlocked, for the next zookeeper's remove_orphans, which finds an
            # overlay only beside its mount point.
            self.mount_point = None
            raise
        finally:
            self.remove_mount_point()

    def remove_mount_point(self) -> None:
        if self.mount_point:
            path, self.mount_point = self.mount_point, None
            with step(f"remove {path}"):
                try:
                    kernel.sys_rmdir(path)
                except FileNotFoundError:
                    pass
        self.close_host_fds()

    def close_host_fds(self) -> None:
        """Close our fds of -r DIR and of the mount point.  In the child, the lock
        stays: a flock(2) lock belongs to the open file, which the parent's fd holds."""
        if self.lock is not None:
            lock, self.lock = self.lock, None
            os.close(lock)
        if self.rootfs_fd is not None:
            rootfs_fd, self.rootfs_fd = self.rootfs_fd, None
            os.close(rootfs_fd)


# The container's side --------------------------------------------------------------


def make_mounts_private() -> None:
    """Stop mount events from crossing between the host's namespace and ours."""
    # STUDENT CODE BELOW (q11)
    # Make every mount private, recursively.  Mounts made here then never show on
    # the host, nor the host's here.  mount(2) "Changing the propagation type",
    # mount_namespaces(7).  kernel.sys_mount(source, target, fstype, flags): a
    # change of propagation names the mount point only (no source, no type).
    with step("make the mounts of / private"):
        kernel.sys_mount(None, "/", None, kernel.MS_REC | kernel.MS_PRIVATE)
    # STUDENT CODE ABOVE (q11)


def bind_rootfs(rootfs: str, new_root: str) -> None:
    """Make the rootfs directory a mount point at new_root (pivot_root needs one).
    rootfs names it as /proc/self/fd/N, the directory the parent checked (proc(5))."""
    # STUDENT CODE BELOW (q12)
    # Bind-mount the rootfs onto new_root.  With MS_REC, the mounts below it come
    # along.  mount(2) "Creating a bind mount"; kernel.sys_mount(source, target,
    # fstype, flags), the flags in kernel.py.
    with step(f"bind-mount {rootfs} at {new_root}"):
        kernel.sys_mount(rootfs, new_root, None, kernel.MS_BIND | kernel.MS_REC)
    # STUDENT CODE ABOVE (q12)


def mount_overlay(rootfs: str, upper: str, work: str, new_root: str) -> None:
    """-o: the rootfs read through an overlay; writes land in upper, thrown away at exit.
    rootfs is /proc/self/fd/N, as for bind_rootfs (a name without ',' or ':', which
    would split the options, whatever -r holds).  userxattr: overlayfs marks a removed
    or renamed directory of the lower layer with extended attributes, trusted.* ones
    unless told otherwise, which only the host's root may set; in our user namespace
    that removal would fail with EIO.  user.overlay.* ones instead (overlayfs docs,
    "User xattr"; Linux 5.11, as overlayfs in a user namespace)."""
    options = f"lowerdir={rootfs},upperdir={upper},workdir={work},userxattr"
    with step(f"mount an overlay of {rootfs} at {new_root}"):
        kernel.sys_mount("overlay", new_root, "overlay", 0, options)


# Mount points inside the rootfs: never reached through a symbolic link --------------
#
# The rootfs is not ours to trust: its dev, tmp, sys or proc may be a symbolic link
# to "/" or "../../..", and mount(2) follows links, so a mount "at new_root/tmp"
# would land on the host's / (in our namespace), where pivot_root and the detach
# then go wrong: the host's root stays under the container's /.  Checking with
# lstat(2) first is not enough: another container sharing the rootfs can swap a
# directory for a link between the check and the mount.  So, as runc does since
# CVE-2021-30465: open the directory with openat2(2), which refuses any link on the
# way (RESOLVE_NO_SYMLINKS) and any step out of the rootfs (RESOLVE_BENEATH), then
# mount onto /proc/self/fd/N, which names exactly what was opened (proc(5)).


def open_new_root(new_root: str) -> int:
    """An O_PATH fd of the new root (the bind mount just made, ours alone)."""
    with step(f"open {new_root}"):
        return os.open(new_root, os.O_PATH | os.O_DIRECTORY | os.O_CLOEXEC)


def fd_path(fd: int) -> str:
    """The path that names what fd is open on, whatever happens to its name."""
    return f"/proc/self/fd/{fd}"


def open_beneath(dir_fd: int, name: str, shown: str) -> int:
    """An O_PATH fd of the directory dir_fd/name; one line if a link is on the way."""
    try:
        return kernel.sys_openat2(dir_fd, name, os.O_PATH | os.O_DIRECTORY,
                                  kernel.RESOLVE_BENEATH | kernel.RESOLVE_NO_SYMLINKS
                                  | kernel.RESOLVE_NO_MAGICLINKS)
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EXDEV):
            raise ZooError(f"failed to use {shown} as a mount point: it is a symbolic link, "
                           "which could lead out of the rootfs (refused)") from None
        raise ZooError(f"failed to open {shown}: {e.strerror}") from None


def mount_point_in(root: int, name: str, new_root: str) -> int | None:
    """The directory root/name to mount on, made if missing (as runtimes do); None when
    it cannot be made (a read-only rootfs): that mount is then skipped."""
    try:
        kernel.sys_mkdir(name, 0o755, dir_fd=root)
    except FileExistsError:
        pass  # a directory, or a link that open_beneath refuses
    except OSError:
        return None
    return open_beneath(root, name, f"{new_root}/{name}")


def open_new_mount(root: int, name: str, new_root: str, fs_type: int, mount_point: int) -> int:
    """Open root/name again, now that a filesystem is mounted there, and check that it
    is that filesystem: a mount of its type, not the rootfs.  Another container sharing
    the rootfs could have renamed the directory meanwhile and put an ordinary one in
    its place: then the masks and devices would land in the wrong place.  Fail closed.
    mount_point is the fd the mount was made on."""
    shown = f"{new_root}/{name}"
    fd = open_beneath(root, name, shown)
    with step(f"check what is mounted at {shown}"):
        if os.path.samestat(os.fstat(fd), os.fstat(mount_point)):
            raise ZooError(f"failed to mount at {shown}: nothing is mounted on it afterwards "
                           "(was the mount made at another target?)")
        same_device = os.fstat(fd).st_dev == os.fstat(root).st_dev
        if same_device or kernel.sys_fstatfs_type(fd) != fs_type:
            raise ZooError(f"failed to mount at {shown}: the directory was replaced while "
                           "zookeeper mounted on it (refused)")
    return fd


def mount_dev(root: int, new_root: str) -> None:
    """A small /dev: a tmpfs holding the host's harmless devices, bound one by one."""
    shown = f"{new_root}/dev"
    target = mount_point_in(root, "dev", new_root)
    if target is None:
        return
    with step(f"mount a tmpfs at {shown}"):
        kernel.sys_mount("tmpfs", fd_path(target), "tmpfs", kernel.MS_NOSUID | kernel.MS_NOEXEC,
                         "mode=755,size=64k")
    dev = open_new_mount(root, "dev", new_root, kernel.TMPFS_MAGIC, target)  # new, empty, ours
    for name in DEVICES:
        host = f"/dev/{name}"
        if not os.path.exists(host):
            continue
        with step(f"create {shown}/{name}"):
            kernel.sys_mknodat(dev, name, 0o666)
        with step(f"bind-mount {host} at {shown}/{name}"):
            kernel.sys_mount(host, f"{fd_path(dev)}/{name}", None, kernel.MS_BIND)
    for name, link in DEV_LINKS:
        with step(f"create the link {shown}/{name}"):
            kernel.sys_symlinkat(link, dev, name)
    with step(f"mount a tmpfs at {shown}/shm"):
        kernel.sys_mkdir("shm", 0o1777, dir_fd=dev)
        kernel.sys_mount("tmpfs", f"{fd_path(dev)}/shm", "tmpfs",
                         kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC, "mode=1777")
    with step(f"make {shown}/pts"):
        kernel.sys_mkdir("pts", 0o755, dir_fd=dev)
    try:  # terminals of the container's own (pts(4)), where the kernel allows it
        kernel.sys_mount("devpts", f"{fd_path(dev)}/pts", "devpts",
                         kernel.MS_NOSUID | kernel.MS_NOEXEC, "newinstance,ptmxmode=0666,mode=620")
    except OSError:
        pass


def mount_tmp(root: int, new_root: str) -> None:
    """A fresh, empty /tmp for the container."""
    target = mount_point_in(root, "tmp", new_root)
    if target is None:
        return
    with step(f"mount a tmpfs at {new_root}/tmp"):
        kernel.sys_mount("tmpfs", fd_path(target), "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV,
                         "mode=1777")


def mount_sys(root: int, new_root: str) -> None:
    """sysfs, read-only, when the kernel lets this namespace mount it (skipped if not)."""
    shown = f"{new_root}/sys"
    target = mount_point_in(root, "sys", new_root)
    if target is None:
        return
    try:
        kernel.sys_mount("sysfs", fd_path(target), "sysfs", kernel.MS_RDONLY | kernel.MS_NOSUID
                         | kernel.MS_NODEV | kernel.MS_NOEXEC)
    except OSError as e:
        if e.errno in (errno.EPERM, errno.EACCES):
            return  # the container runs with an empty /sys
        raise ZooError(f"failed to mount sysfs at {shown}: {e.strerror}") from None
    sys_fd = open_new_mount(root, "sys", new_root, kernel.SYSFS_MAGIC, target)  # kernel's files
    mask_paths(fd_path(sys_fd), shown, [], SYS_MASKED_DIRS)
    if PART >= 5:
        mount_cgroup(f"{fd_path(sys_fd)}/fs/cgroup")


# >>> stage 5
def mount_cgroup(target: str) -> None:
    """The container's cgroup (its cgroup namespace's root) at /sys/fs/cgroup, read-only:
    it can read its own limits and usage (memory.max, cpu.stat), not change them."""
    if not os.path.isdir(target) or cgroups.unified_hierarchy_problem():
        return  # no cgroup v2 on this host: the container has no cgroup of its own
    try:
        kernel.sys_mount("cgroup2", target, "cgroup2", kernel.MS_RDONLY | kernel.MS_NOSUID
                         | kernel.MS_NODEV | kernel.MS_NOEXEC)
    except OSError:
        pass  # no cgroup v2 here: the container does without
# <<< stage 5


def mount_proc(target: str, shown: str) -> None:
    """A proc of the container's own PID namespace: ps shows only its processes.
    target is where to mount (in a rootfs, a /proc/self/fd/N path), shown its name."""
    # STUDENT CODE BELOW (q13)
    # Mount proc at target.  A new proc shows the processes of the container's
    # PID namespace only.  proc(5), mount(2): kernel.sys_mount(source, target,
    # fstype, flags); a pseudo-filesystem's source is its name, and a proc wants
    # no setuid programs, no device files and no programs run from it.  In a
    # `with step(f"mount proc at {shown}"):`, as every system call here.
    with step(f"mount proc at {shown}"):
        kernel.sys_mount("proc", target, "proc",
                         kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC)
    # STUDENT CODE ABOVE (q13)


# What runc's default spec hides of a new proc and sysfs: the kernel's memory, its
# keys, its timers' and scheduler's internals, the firmware's tables, and the knobs of
# /proc/sys that are not namespaced (kernel.core_pattern runs a program as the host's
# root on every crash).  Files get /dev/null bound over them, directories an empty
# read-only tmpfs; the rest is made read-only.
PROC_MASKED_FILES = ["kcore", "keys", "latency_stats", "timer_list", "timer_stats",
                     "sched_debug"]
PROC_MASKED_DIRS = ["acpi", "asound", "scsi"]
PROC_READ_ONLY = ["bus", "fs", "irq", "sys", "sysrq-trigger"]
SYS_MASKED_DIRS = ["firmware"]


def mask_proc(proc: str, shown: str) -> None:
    mask_paths(proc, shown, PROC_MASKED_FILES, PROC_MASKED_DIRS, PROC_READ_ONLY)


def mask_paths(base: str, shown: str, files: list[str], directories: list[str],
               read_only: list[str] = ()) -> None:
    """Hide or freeze entries of a fresh proc or sysfs at base (the kernel's own
    files, no link of anyone's on the way); those this kernel lacks are skipped."""
    locked = kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC
    for name in files:
        if os.path.exists(f"{base}/{name}"):
            with step(f"hide {shown}/{name}"):
                kernel.sys_mount("/dev/null", f"{base}/{name}", None, kernel.MS_BIND)
    for name in directories:
        if os.path.isdir(f"{base}/{name}"):
            with step(f"hide {shown}/{name}"):
                kernel.sys_mount("tmpfs", f"{base}/{name}", "tmpfs",
                                 kernel.MS_RDONLY | locked, "size=0")
    for name in read_only:
        if os.path.exists(f"{base}/{name}"):
            # A bind mount of it onto itself, then remounted read-only (mount(2)).
            with step(f"make {shown}/{name} read-only"):
                kernel.sys_mount(f"{base}/{name}", f"{base}/{name}", None,
                                 kernel.MS_BIND | kernel.MS_REC)
                kernel.sys_mount(None, f"{base}/{name}", None, kernel.MS_BIND
                                 | kernel.MS_REMOUNT | kernel.MS_RDONLY | locked)


def use_the_container_environment() -> None:
    """Child, in its new root: the environment the command gets is the caller's, but
    for what names the host's directories, which are not there: PATH is the standard
    one, HOME the container's root's (/root, as Docker sets it), and TMPDIR is gone
    (busybox's mktemp failed on the caller's; /tmp is the container's own)."""
    os.environ["PATH"] = CONTAINER_PATH
    os.environ["HOME"] = "/root"
    os.environ.pop("TMPDIR", None)


def check_old_root_gone(root: int) -> None:
    """Fail closed unless / is now the new root itself.  Were the host's root still
    stacked on it (the detach skipped, or a mount that escaped the rootfs detached
    instead), the container could reach every file of the host.  Not through "/":
    that names the process's root, the new one.  Through "/..": at the root, ".."
    stays there and then climbs onto what is mounted on top of it, the old root
    that pivot_root(".", ".") put there (pivot_root(2), NOTES)."""
    new = os.fstat(root)
    os.close(root)
    for path in ("/", "/.."):
        here = os.stat(path)
        if (here.st_dev, here.st_ino) != (new.st_dev, new.st_ino):
            raise ZooError("failed to switch to the new root: the host's root is still "
                           "mounted at / (refused: detach it after pivot_root, "
                           "umount2('.', MNT_DETACH), q14)")


def switch_root(new_root: str) -> None:
    """Make new_root the container's / and let go of the host's root."""
    # STUDENT CODE BELOW (q14)
    # Switch the container's root to new_root.  chdir(2) into it, then
    # pivot_root(".", ".") puts the old root on top of the new one (see NOTES in
    # pivot_root(2)), umount2(2) ".", MNT_DETACH detaches the old root, and chdir("/").
    # kernel.sys_chdir(), kernel.sys_pivot_root(), kernel.sys_umount2().
    with step(f"change directory to {new_root}"):
        kernel.sys_chdir(new_root)
    with step(f"pivot_root to {new_root}"):
        kernel.sys_pivot_root(".", ".")
    with step("detach the host's root"):
        kernel.sys_umount2(".", kernel.MNT_DETACH)
    with step("change directory to the new /"):
        kernel.sys_chdir("/")
    # STUDENT CODE ABOVE (q14)


# The parent's side, at exit --------------------------------------------------------


def remove_tree(path: str) -> None:
    """Remove an overlay's directory, which the container filled as it liked: never
    following a link it made, however deep it nested, and, run by root, as the tree's
    owner (the container's root on the host), so that a path swapped for a link can
    never make root change anything of its own."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(info.st_mode):  # a link put in the directory's place
        os.unlink(path)
        return
    if os.geteuid() == 0 and info.st_uid != 0:
        remove_as_container_root(path)  # never as the host's root
        return
    delete_tree(path)
    if os.path.lexists(path):
        remove_as_container_root(path)


def delete_tree(top: str) -> None:
    """rm -rf top, never following a symbolic link, however deep the container nested
    its directories: past PATH_MAX (4096 bytes) no full path works (ENAMETOOLONG),
    and past the fd limit not every directory on the way can stay open.  So, as
    fts(3) does, one directory is open at a time, names are looked up in it
    (unlinkat(2) through dir_fd), and the way back up is "..", checked to be the
    directory we came down from.  What cannot be removed is left; the caller looks
    at what remains."""
    fd = open_emptiable(top)
    if fd is None:
        return
    # One entry per level down: the directory's identity, the subdirectories in it
    # still to remove, and its own name in the level above.
    levels = [(identity(fd), empty_but_subdirectories(fd), top)]
    while True:
        _, subdirectories, name = levels[-1]
        if subdirectories:
            below_name = subdirectories.pop()
            below = open_emptiable(below_name, fd)
            if below is not None:
                os.close(fd)
                fd = below
                levels.append((identity(fd), empty_but_subdirectories(fd), below_name))
            continue
        levels.pop()
        if not levels:
            break
        try:
            above = os.open("..", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=fd)
        except OSError:
            break  # what is left stays, and the caller says so
        os.close(fd)
        fd = above
        if identity(fd) != levels[-1][0]:
            break  # moved while we were below it: stop rather than guess
        try:
            os.rmdir(name, dir_fd=fd)
        except OSError:
            pass
    os.close(fd)
    try:
        os.rmdir(top)
    except OSError:
        pass


def identity(fd: int) -> tuple:
    info = os.fstat(fd)
    return info.st_dev, info.st_ino


def open_emptiable(name: str, dir_fd: int | None = None) -> int | None:
    """Open the directory name (in dir_fd) to read, never through a link; overlayfs
    leaves work/work at mode 000, so our own directory is made 0700 first.  chmod(2)
    goes through /proc/self/fd/N of an O_PATH fd: there is no lchmod on Linux."""
    try:
        path_fd = os.open(name, os.O_PATH | os.O_NOFOLLOW | os.O_DIRECTORY | os.O_CLOEXEC,
                          dir_fd=dir_fd)
    except OSError:
        return None
    try:
        if os.fstat(path_fd).st_uid == os.geteuid():
            os.chmod(fd_path(path_fd), 0o700)
        return os.open(".", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=path_fd)
    except OSError:
        return None
    finally:
        os.close(path_fd)


def empty_but_subdirectories(fd: int) -> list[str]:
    """Unlink everything in the directory fd but its subdirectories; return their names."""
    try:
        with os.scandir(fd) as entries:
            inside = list(entries)
    except OSError:
        return []
    subdirectories = []
    for entry in inside:
        if entry.is_dir(follow_symlinks=False):
            subdirectories.append(entry.name)
            continue
        try:
            os.unlink(entry.name, dir_fd=fd)
        except OSError:
            pass
    return subdirectories


def remove_as_container_root(path: str) -> None:
    """Files the container gave to its other users (our subordinate ids) are not ours
    to delete on the host: delete them from a new user namespace with the container's
    id maps, as its root (setresuid: a new namespace changes no ids), who is root over
    them again and over nothing else of the host's (user_namespaces(7))."""
    maps = idmap.find_id_maps()
    ready_read, ready_write = os.pipe()
    go_read, go_write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the helper: never returns
        status = 1
        try:
            os.close(ready_read)
            os.close(go_write)
            kernel.sys_unshare(kernel.CLONE_NEWUSER)
            os.write(ready_write, b"1")
            if os.read(go_read, 1) == b"1":
                idmap.become_container_root()
                delete_tree(path)
                status = 0
        finally:
            os._exit(status)
    os.close(ready_write)
    os.close(go_read)
    try:
        if os.read(ready_read, 1) == b"1":
            idmap.write_id_maps(pid, maps)
            os.write(go_write, b"1")
    finally:
        os.close(go_write)
        os.close(ready_read)
        os.waitpid(pid, 0)
    if os.path.lexists(path):
        raise ZooError(f"failed to remove {path}: files owned by users the container "
                       "made are left (remove them with: podman unshare rm -rf, or as root)")
