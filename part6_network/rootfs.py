"""The container's own filesystem: a directory of the host becomes its /.

The child already has its own mount namespace (CLONE_NEWNS): mounts it makes
from now on are its own, once propagation is made private.  It bind-mounts the
rootfs directory (-r DIR) onto a temporary directory, fills in what programs
expect (/dev, /tmp, /sys, /proc), and pivot_root(2)s into it: the host's files
are then out of reach.  See mount_namespaces(7), pivot_root(2), mount(2).

With -o, the rootfs is the lower layer of an overlay (overlayfs(5)) whose upper
layer is a throw-away directory: DIR is never modified.  Without it, changes the
container makes persist in DIR, as the course expects.

The parent makes the temporary directories before clone and removes them on
every way out (Filesystem.remove); the child mounts (Filesystem.enter).
"""

import errno
import os
import stat
import time

import kernel
from errors import ZooError, step

TMP_DIR = "/tmp"  # where the mount point /tmp/zoo.XXXXXX is made
# Device nodes programs expect, bound from the host: an unprivileged user may not
# create device nodes (mknod(2) fails), so rootless runtimes borrow the host's.
DEVICES = ["null", "zero", "full", "random", "urandom", "tty"]
DEV_LINKS = [("fd", "/proc/self/fd"), ("stdin", "/proc/self/fd/0"),
             ("stdout", "/proc/self/fd/1"), ("stderr", "/proc/self/fd/2"), ("ptmx", "pts/ptmx")]


def prepare(opts) -> "Filesystem":
    """Parent, before clone: check -r DIR and make the temporary mount point."""
    fs = Filesystem(opts.mount_proc)
    if not opts.rootfs:
        return fs  # the container keeps the host's files, as in part 3
    rootfs = os.path.abspath(opts.rootfs)
    check_rootfs(opts.rootfs, rootfs, opts.overlay)
    fs.rootfs = rootfs
    try:
        fs.mount_point = mkdtemp(f"{TMP_DIR}/zoo.XXXXXX")
        kernel.explain(f'mkdtemp("{TMP_DIR}/zoo.XXXXXX")', kernel.quoted(fs.mount_point),
                       "mkdtemp(3)")
        if opts.overlay:
            fs.overlay_dir = mkdtemp(f"{fs.mount_point}.overlay")
            # The overlay's / takes the upper directory's owner and mode: copy the rootfs's.
            os.mkdir(fs.upper_dir(), stat.S_IMODE(os.stat(rootfs).st_mode))
            os.chmod(fs.upper_dir(), stat.S_IMODE(os.stat(rootfs).st_mode))
            os.mkdir(fs.work_dir(), 0o700)
    except OSError as e:
        fs.remove()
        where = e.filename or TMP_DIR
        raise ZooError(f"failed to create a temporary directory in {where}: {e.strerror}")
    return fs


def mkdtemp(template: str) -> str:
    """mkdtemp(3): a new directory, mode 0700, named after template with its trailing
    XXXXXX replaced by random letters; mkdir(2) fails with EEXIST rather than reuse
    one, so nobody else's directory is ever taken.  (Python's tempfile module does
    the same, at ~5 ms of imports.)"""
    letters = "abcdefghijklmnopqrstuvwxyz0123456789"
    for _ in range(100):
        name = template
        if name.endswith("XXXXXX"):
            name = name[:-6] + "".join(letters[b % len(letters)] for b in os.urandom(6))
        try:
            os.mkdir(name, 0o700)
            return name
        except FileExistsError:
            if not template.endswith("XXXXXX"):
                raise
    raise FileExistsError(errno.EEXIST, os.strerror(errno.EEXIST), template)


def check_rootfs(given: str, path: str, overlay: bool) -> None:
    """-r DIR must be a directory we may enter; one line and 125 otherwise."""
    started = time.monotonic()
    try:
        st = os.stat(path)
    except OSError as e:
        kernel.explain_error(f"stat({kernel.quoted(path)})", e, "stat(2)", started)
        raise ZooError(f"failed to use {given} as the rootfs: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode):
        raise ZooError(f"failed to use {given} as the rootfs: {os.strerror(errno.ENOTDIR)}")
    if not os.access(path, os.R_OK | os.X_OK):
        raise ZooError(f"failed to use {given} as the rootfs: {os.strerror(errno.EACCES)}")
    if overlay and ("," in path or ":" in path):
        raise ZooError(f"failed to use {given} as the rootfs with -o: an overlay's "
                       "paths cannot hold ',' or ':' (they separate its options)")


class Filesystem:
    """What the parent made for the container's filesystem; the child gets a copy."""

    def __init__(self, mount_proc: bool):
        self.mount_proc = mount_proc  # -P
        self.rootfs = None  # -r DIR, absolute
        self.mount_point = None  # /tmp/zoo.XXXXXX
        self.overlay_dir = None  # -o: /tmp/zoo.XXXXXX.overlay, holding upper/ and work/

    def upper_dir(self) -> str:
        return f"{self.overlay_dir}/upper"

    def work_dir(self) -> str:
        return f"{self.overlay_dir}/work"

    def enter(self) -> None:
        """Child, after go: make the mounts and switch to the new root."""
        make_mounts_private()
        if self.rootfs is None:
            if self.mount_proc:
                mount_proc("/proc")  # over the host's, in our mount namespace only
            return
        new_root = self.mount_point
        if self.overlay_dir:
            mount_overlay(self.rootfs, self.upper_dir(), self.work_dir(), new_root)
        else:
            bind_rootfs(self.rootfs, new_root)
        mount_dev(new_root + "/dev")
        mount_tmp(new_root + "/tmp")
        mount_sys(new_root + "/sys")
        if self.mount_proc:
            mount_proc(new_root + "/proc")
        switch_root(new_root)

    def remove(self) -> None:
        """Parent, on every way out: remove the temporary directories.  The mounts
        were made in the child's mount namespace, which ended with it.  Idempotent."""
        if self.mount_point:
            path, self.mount_point = self.mount_point, None
            with step(f"remove {path}"):
                try:
                    kernel.sys_rmdir(path)
                except FileNotFoundError:
                    pass
        if self.overlay_dir:
            path, self.overlay_dir = self.overlay_dir, None
            remove_tree(path)


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
    """Make the rootfs directory a mount point at new_root (pivot_root needs one)."""
    # STUDENT CODE BELOW (q12)
    # Bind-mount the rootfs onto new_root.  With MS_REC, the mounts below it come
    # along.  mount(2) "Creating a bind mount"; kernel.sys_mount(source, target,
    # fstype, flags), the flags in kernel.py.
    with step(f"bind-mount {rootfs} at {new_root}"):
        kernel.sys_mount(rootfs, new_root, None, kernel.MS_BIND | kernel.MS_REC)
    # STUDENT CODE ABOVE (q12)


def mount_overlay(rootfs: str, upper: str, work: str, new_root: str) -> None:
    """-o: the rootfs read through an overlay; writes land in upper, thrown away at exit."""
    options = f"lowerdir={rootfs},upperdir={upper},workdir={work}"
    with step(f"mount an overlay of {rootfs} at {new_root}"):
        kernel.sys_mount("overlay", new_root, "overlay", 0, options)


def mount_point_ready(path: str) -> bool:
    """A directory to mount on: the rootfs's own, or one made now (as runtimes do)."""
    if os.path.isdir(path):
        return True
    try:
        kernel.sys_mkdir(path, 0o755)
        return True
    except OSError:
        return False


def mount_dev(dev: str) -> None:
    """A small /dev: a tmpfs holding the host's harmless devices, bound one by one."""
    if not mount_point_ready(dev):
        return
    with step(f"mount a tmpfs at {dev}"):
        kernel.sys_mount("tmpfs", dev, "tmpfs", kernel.MS_NOSUID | kernel.MS_NOEXEC,
                         "mode=755,size=64k")
    for name in DEVICES:
        host, target = f"/dev/{name}", f"{dev}/{name}"
        if not os.path.exists(host):
            continue
        with step(f"create {target}"):
            os.close(os.open(target, os.O_WRONLY | os.O_CREAT, 0o666))
        with step(f"bind-mount {host} at {target}"):
            kernel.sys_mount(host, target, None, kernel.MS_BIND)
    for name, link in DEV_LINKS:
        with step(f"create the link {dev}/{name}"):
            os.symlink(link, f"{dev}/{name}")
    with step(f"mount a tmpfs at {dev}/shm"):
        kernel.sys_mkdir(f"{dev}/shm", 0o1777)
        kernel.sys_mount("tmpfs", f"{dev}/shm", "tmpfs",
                         kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC, "mode=1777")
    with step(f"make {dev}/pts"):
        kernel.sys_mkdir(f"{dev}/pts", 0o755)
    try:  # terminals of the container's own (pts(4)), where the kernel allows it
        kernel.sys_mount("devpts", f"{dev}/pts", "devpts", kernel.MS_NOSUID | kernel.MS_NOEXEC,
                         "newinstance,ptmxmode=0666,mode=620")
    except OSError:
        pass


def mount_tmp(tmp: str) -> None:
    """A fresh, empty /tmp for the container."""
    if not mount_point_ready(tmp):
        return
    with step(f"mount a tmpfs at {tmp}"):
        kernel.sys_mount("tmpfs", tmp, "tmpfs", kernel.MS_NOSUID | kernel.MS_NODEV, "mode=1777")


def mount_sys(sys_dir: str) -> None:
    """sysfs, read-only, when the kernel lets this namespace mount it (skipped if not)."""
    if not mount_point_ready(sys_dir):
        return
    try:
        kernel.sys_mount("sysfs", sys_dir, "sysfs", kernel.MS_RDONLY | kernel.MS_NOSUID
                         | kernel.MS_NODEV | kernel.MS_NOEXEC)
    except OSError as e:
        if e.errno in (errno.EPERM, errno.EACCES):
            return  # the container runs with an empty /sys
        raise ZooError(f"failed to mount sysfs at {sys_dir}: {e.strerror}") from None
    mount_cgroup(sys_dir + "/fs/cgroup")


def mount_cgroup(target: str) -> None:
    """The container's cgroup (its cgroup namespace's root) at /sys/fs/cgroup, read-only:
    it can read its own limits and usage (memory.max, cpu.stat), not change them."""
    import cgroups

    if not os.path.isdir(target) or cgroups.unified_hierarchy_problem():
        return  # no cgroup v2 on this host: the container has no cgroup of its own
    try:
        kernel.sys_mount("cgroup2", target, "cgroup2", kernel.MS_RDONLY | kernel.MS_NOSUID
                         | kernel.MS_NODEV | kernel.MS_NOEXEC)
    except OSError:
        pass  # no cgroup v2 here: the container does without


def mount_proc(target: str) -> None:
    """A proc of the container's own PID namespace: ps shows only its processes."""
    mount_point_ready(target)
    # STUDENT CODE BELOW (q13)
    # Mount proc at target.  A new proc shows the processes of the container's
    # PID namespace only.  proc(5), mount(2): kernel.sys_mount(source, target,
    # fstype, flags); a pseudo-filesystem's source is its name, and a proc wants
    # no setuid programs, no device files and no programs run from it.
    with step(f"mount proc at {target}"):
        kernel.sys_mount("proc", target, "proc",
                         kernel.MS_NOSUID | kernel.MS_NODEV | kernel.MS_NOEXEC)
    # STUDENT CODE ABOVE (q13)


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
    """Remove the overlay's directories.  The kernel leaves work/work at mode 000:
    make our directories searchable first (never following a link the container made)."""
    import shutil

    for dirpath, dirnames, _ in os.walk(path):
        for name in dirnames:
            sub = os.path.join(dirpath, name)
            try:
                st = os.lstat(sub)
                if stat.S_ISDIR(st.st_mode) and st.st_uid == os.getuid():
                    os.chmod(sub, 0o700)
            except OSError:
                pass
    try:
        shutil.rmtree(path)
    except FileNotFoundError:
        pass
    except PermissionError:
        if os.getuid() == 0:
            raise ZooError(f"failed to remove {path}: {os.strerror(errno.EACCES)}") from None
        remove_as_container_root(path)


def remove_as_container_root(path: str) -> None:
    """Files the container gave to its other users (our subordinate ids) are not ours
    to delete on the host: delete them from a new user namespace with the container's
    id maps, where we are root over them again (user_namespaces(7))."""
    import shutil

    import idmap

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
                shutil.rmtree(path, ignore_errors=True)
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
