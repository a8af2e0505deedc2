"""Stage 4: the container's own filesystem (pivot_root, /dev, proc, overlay, cleanup).

Unit tests swap the kernel seam (kernel.sys_mount, ...) for a recorder and check the
order and arguments of the steps, without root.  Integration tests run part 4 as root
and as the unprivileged test user on the busybox rootfs.
"""

import errno
import hashlib
import os
import re
import shutil
import signal
import stat
import subprocess
import types
from pathlib import Path

import pytest
from conftest import PARTS, Runner, part_modules

SEAM = ["sys_mount", "sys_umount2", "sys_pivot_root", "sys_chdir", "sys_mkdir", "sys_rmdir",
        "sys_unshare", "sys_mknodat", "sys_symlinkat", "sys_fchown"]


def real_path(arg):
    """A mount target given as /proc/self/fd/N[/name] (symlink-safe, see rootfs.py),
    recorded as the path of the directory that fd is open on."""
    if isinstance(arg, str) and arg.startswith("/proc/self/fd/"):
        fd, _, rest = arg[len("/proc/self/fd/"):].partition("/")
        return os.readlink(f"/proc/self/fd/{fd}") + (f"/{rest}" if rest else "")
    return arg


def at_path(dir_fd: int, name: str) -> str:
    """What a *at(2) call names: name in the directory open at dir_fd."""
    return os.path.join(real_path(f"/proc/self/fd/{dir_fd}"), name)


class Recorder:
    """Stands in for the kernel seam: records each call (a *at call with the path it
    names); mkdir, mknodat and symlinkat really make what they make."""

    def __init__(self, monkeypatch, kernel, fail=None):
        self.calls = []
        self.fail = fail or {}  # (name, first argument) -> errno
        for name in SEAM:
            monkeypatch.setattr(kernel, name, self.make(name))

    def make(self, name):
        def call(*args, dir_fd=None):
            target = args[0]  # symlinkat's: a link's text, not a path to resolve
            args = tuple(real_path(a) for a in args)
            if dir_fd is not None:  # mkdirat(2): recorded as the path it makes
                args = (at_path(dir_fd, args[0]), *args[1:])
            if name == "sys_mknodat":  # (dir_fd, name, mode)
                args = (at_path(args[0], args[1]), args[2])
            if name == "sys_symlinkat":  # (target, dir_fd, name)
                args = (target, at_path(args[1], args[2]))
            if name == "sys_fchown":  # (fd, uid, gid): recorded with the path of fd
                args = (real_path(f"/proc/self/fd/{args[0]}"), *args[1:])
            self.calls.append((name, *args))
            err = self.fail.get((name, args[0] if args else None))
            if err:
                raise OSError(err, os.strerror(err))
            if name == "sys_mkdir":
                os.mkdir(args[0])
            elif name == "sys_mknodat":
                os.mknod(args[0], stat.S_IFREG | args[1])
            elif name == "sys_symlinkat":
                os.symlink(*args)

        return call

    def names(self):
        return [c[0] for c in self.calls]

    def mounts(self):
        return [c[1:] for c in self.calls if c[0] == "sys_mount"]


def fake_what_mounts_would_make(monkeypatch, rootfs):
    """With the mounts faked, / is still the host's after the "pivot", and nothing new
    is mounted where a filesystem should now be: skip those two checks."""
    monkeypatch.setattr(rootfs, "check_old_root_gone", os.close)
    monkeypatch.setattr(rootfs, "open_new_mount", lambda root, name, new_root, fs_type, mount_point:
                        rootfs.open_beneath(root, name, f"{new_root}/{name}"))


@pytest.fixture
def part4(monkeypatch):
    with part_modules(4, "rootfs") as modules:
        fake_what_mounts_would_make(monkeypatch, modules.rootfs)
        yield modules


@pytest.fixture
def part5(monkeypatch):
    with part_modules(5, "rootfs", "cgroups") as modules:
        fake_what_mounts_would_make(monkeypatch, modules.rootfs)
        yield modules


def options(**kw):
    opts = types.SimpleNamespace(rootfs=None, mount_proc=False, overlay=False)
    opts.__dict__.update(kw)
    return opts


def fake_rootfs(tmp_path: Path) -> Path:
    fs = tmp_path / "zoo-fs"
    for d in ("bin", "dev", "proc", "sys", "tmp", "etc"):
        (fs / d).mkdir(parents=True)
    return fs


# Unit: the order and arguments of the kernel steps --------------------------------


def test_steps_with_rootfs_in_order(part4, tmp_path, monkeypatch):
    k, rootfs = part4.kernel, part4.rootfs
    monkeypatch.setattr(rootfs, "TMP_DIR", str(tmp_path))
    fs_dir = fake_rootfs(tmp_path)
    fs = rootfs.prepare(options(rootfs=str(fs_dir), mount_proc=True))
    mp = fs.mount_point
    assert re.fullmatch(re.escape(str(tmp_path)) + r"/zoo\.\w+", mp)
    rec = Recorder(monkeypatch, k)
    fs.enter()
    mounts = rec.mounts()
    assert mounts[0] == (None, "/", None, k.MS_REC | k.MS_PRIVATE)
    assert mounts[1] == (str(fs_dir), mp, None, k.MS_BIND | k.MS_REC)
    assert ("/dev/null", f"{mp}/dev/null", None, k.MS_BIND) in mounts
    assert ("proc", f"{mp}/proc", "proc", k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC) in mounts
    assert ("sysfs", f"{mp}/sys", "sysfs",
            k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC) in mounts
    assert any(m[:3] == ("tmpfs", f"{mp}/tmp", "tmpfs") for m in mounts)
    assert any(m[:3] == ("tmpfs", f"{mp}/dev", "tmpfs") for m in mounts)
    # Every mount after the first two lands inside the new root, before the pivot.
    assert all(m[1].startswith(mp + "/") for m in mounts[2:])
    assert rec.calls[-4:] == [("sys_chdir", mp), ("sys_pivot_root", ".", "."),
                              ("sys_umount2", ".", k.MNT_DETACH), ("sys_chdir", "/")]
    assert rec.names().index("sys_pivot_root") > max(
        i for i, name in enumerate(rec.names()) if name == "sys_mount")
    # /dev/null etc. are bound onto empty files the child made in its tmpfs (here,
    # with the mounts faked, in the mount point's directory).
    for name in rootfs.DEVICES:
        if os.path.exists(f"/dev/{name}"):
            assert os.path.isfile(f"{mp}/dev/{name}")
    fs.remove()
    assert rec.calls[-1] == ("sys_rmdir", mp)


def test_dev_before_proc_and_dev_order(part4, tmp_path, monkeypatch):
    k, rootfs = part4.kernel, part4.rootfs
    monkeypatch.setattr(rootfs, "TMP_DIR", str(tmp_path))
    fs = rootfs.prepare(options(rootfs=str(fake_rootfs(tmp_path))))
    rec = Recorder(monkeypatch, k)
    fs.enter()
    targets = [m[1] for m in rec.mounts()]
    dev = f"{fs.mount_point}/dev"
    assert targets.index(dev) < targets.index(f"{dev}/null")  # the tmpfs first
    assert f"{dev}/shm" in targets
    assert not any(t.endswith("/proc") for t in targets)  # no -P: no proc
    fs.remove()


def test_dev_files_and_links_through_the_seam(part4, tmp_path, monkeypatch):
    """/dev's empty files and links are made by kernel.sys_mknodat and sys_symlinkat
    (explain mode shows them; a fake records them), each file before its bind mount."""
    k, rootfs = part4.kernel, part4.rootfs
    monkeypatch.setattr(rootfs, "TMP_DIR", str(tmp_path))
    fs = rootfs.prepare(options(rootfs=str(fake_rootfs(tmp_path))))
    rec = Recorder(monkeypatch, k)
    fs.enter()
    dev = f"{fs.mount_point}/dev"
    made = [c[1] for c in rec.calls if c[0] == "sys_mknodat"]
    assert made == [f"{dev}/{n}" for n in rootfs.DEVICES if os.path.exists(f"/dev/{n}")]
    assert made
    for path in made:
        at = rec.calls.index(("sys_mknodat", path, 0o666))  # mode 0666 each, or ValueError
        bound = next(i for i, c in enumerate(rec.calls) if c[0] == "sys_mount" and c[2] == path)
        assert at < bound
    links = [c[1:] for c in rec.calls if c[0] == "sys_symlinkat"]
    assert links == [(target, f"{dev}/{name}") for name, target in rootfs.DEV_LINKS]
    assert os.readlink(f"{dev}/fd") == "/proc/self/fd"
    fs.remove()


@pytest.mark.parametrize("name, first, message", [
    ("sys_symlinkat", "/proc/self/fd", "failed to create the link {dev}/fd: "),
    ("sys_mknodat", "{dev}/null", "failed to create {dev}/null: "),
])
def test_dev_refused_is_one_line(part4, tmp_path, monkeypatch, name, first, message):
    k, rootfs = part4.kernel, part4.rootfs
    monkeypatch.setattr(rootfs, "TMP_DIR", str(tmp_path))
    fs = rootfs.prepare(options(rootfs=str(fake_rootfs(tmp_path))))
    dev = f"{fs.mount_point}/dev"
    Recorder(monkeypatch, k, fail={(name, first.format(dev=dev)): errno.EROFS})
    with pytest.raises(part4.errors.ZooError) as e:
        fs.enter()
    assert e.value.message == message.format(dev=dev) + "Read-only file system"
    assert e.value.status == 125
    fs.remove()


@pytest.mark.parametrize("overlay", [False, True])
def test_root_gives_its_directories_to_the_containers_root(part4, tmp_path, monkeypatch,
                                                          overlay):
    """Run by root with a range, the mount point (and the overlay's directories) go to
    the container's root through kernel.sys_fchown, children before their parent."""
    k, rootfs = part4.kernel, part4.rootfs
    monkeypatch.setattr(rootfs, "TMP_DIR", str(tmp_path))
    fs_dir = fake_rootfs(tmp_path)
    rec = Recorder(monkeypatch, k)
    owner = (os.getuid() + 100000, os.getgid() + 100000)
    fs = rootfs.prepare(options(rootfs=str(fs_dir), overlay=overlay), owner)
    given = [c[1:] for c in rec.calls if c[0] == "sys_fchown"]
    made = [fs.upper_dir(), fs.work_dir(), fs.overlay_dir] if overlay else []
    assert given == [(path, *owner) for path in made + [fs.mount_point]]
    fs.remove()
    # Its own ids: nothing to give.
    rec.calls.clear()
    fs = rootfs.prepare(options(rootfs=str(fs_dir), overlay=overlay))
    assert "sys_fchown" not in rec.names()
    fs.remove()


def test_root_refused_a_chown_is_one_line_and_leaves_nothing(part4, tmp_path, monkeypatch):
    k, rootfs = part4.kernel, part4.rootfs
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(rootfs, "TMP_DIR", str(scratch))
    asked = []

    def refused(fd, uid, gid):
        asked.append((uid, gid))
        raise PermissionError(errno.EPERM, os.strerror(errno.EPERM))
    monkeypatch.setattr(k, "sys_fchown", refused)
    with pytest.raises(part4.errors.ZooError) as e:
        rootfs.prepare(options(rootfs=str(fake_rootfs(tmp_path))), (123456, 123456))
    assert e.value.message == (f"failed to create a temporary directory in {scratch}: "
                               "Operation not permitted")
    assert e.value.status == 125
    assert asked == [(123456, 123456)]
    assert list(scratch.iterdir()) == []  # the mount point it made is gone again


def test_without_rootfs_private_then_proc_only(part4, monkeypatch):
    k, rootfs = part4.kernel, part4.rootfs
    fs = rootfs.prepare(options(mount_proc=True))
    assert fs.mount_point is None
    rec = Recorder(monkeypatch, k)
    fs.enter()
    assert rec.calls[:2] == [
        ("sys_mount", None, "/", None, k.MS_REC | k.MS_PRIVATE),
        ("sys_mount", "proc", "/proc", "proc", k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC)]
    # Then the masks, on the new proc (mounted over the host's in our namespace).
    masks = rec.mounts()[2:]
    assert ("/dev/null", "/proc/keys", None, k.MS_BIND) in masks
    assert (None, "/proc/sys", None, k.MS_BIND | k.MS_REMOUNT | k.MS_RDONLY | k.MS_NOSUID
            | k.MS_NODEV | k.MS_NOEXEC) in masks
    assert all(m[1].startswith("/proc/") for m in masks)
    fs.remove()  # nothing to remove, no error


def test_without_rootfs_or_proc_only_private(part4, monkeypatch):
    k, rootfs = part4.kernel, part4.rootfs
    fs = rootfs.prepare(options())
    rec = Recorder(monkeypatch, k)
    fs.enter()
    assert rec.calls == [("sys_mount", None, "/", None, k.MS_REC | k.MS_PRIVATE)]


def test_overlay_mount_and_cleanup(part4, tmp_path, monkeypatch):
    k, rootfs = part4.kernel, part4.rootfs
    monkeypatch.setattr(rootfs, "TMP_DIR", str(tmp_path))
    fs_dir = fake_rootfs(tmp_path)
    fs_dir.chmod(0o755)
    fs = rootfs.prepare(options(rootfs=str(fs_dir), overlay=True))
    ovl = fs.overlay_dir
    assert os.path.isdir(f"{ovl}/upper") and os.path.isdir(f"{ovl}/work")
    assert stat.S_IMODE(os.stat(f"{ovl}/upper").st_mode) == 0o755  # the rootfs's mode
    # Named at random too: the mount point's name and a word would be known to all.
    assert re.fullmatch(re.escape(fs.mount_point) + r"\.overlay\.[a-z0-9]{6}", ovl)
    rec = Recorder(monkeypatch, k)
    fs.enter()
    # The lower layer is the directory prepare opened, by an fd's name (the child's own).
    source, target, fstype, flags, data = rec.mounts()[1]
    assert (source, target, fstype, flags) == ("overlay", fs.mount_point, "overlay", 0)
    lower = re.fullmatch(r"lowerdir=(/proc/self/fd/\d+),upperdir=(.*)/upper,workdir=(.*)/work,"
                         r"userxattr",
                         data)
    assert lower and lower.group(2) == lower.group(3) == ovl
    # What overlayfs leaves behind: work/work at mode 000, files in upper.
    os.makedirs(f"{ovl}/work/work/inner")
    Path(f"{ovl}/upper/new-file").write_text("x")
    os.chmod(f"{ovl}/work/work", 0)
    mp = fs.mount_point
    fs.remove()
    fs.remove()  # idempotent
    assert not os.path.exists(ovl)
    assert [c for c in rec.calls if c[0] == "sys_rmdir"] == [("sys_rmdir", mp)]


def test_cleanup_never_follows_a_link_out_of_the_overlay(part4, tmp_path, monkeypatch):
    rootfs = part4.rootfs
    outside = tmp_path / "outside"
    outside.mkdir(mode=0o750)
    ovl = tmp_path / "ovl"
    (ovl / "upper").mkdir(parents=True)
    os.symlink(outside, ovl / "upper" / "escape")
    rootfs.remove_tree(str(ovl))
    assert not ovl.exists()
    assert outside.is_dir() and stat.S_IMODE(outside.stat().st_mode) == 0o750


@pytest.mark.parametrize("err", [errno.EPERM, errno.EACCES])
def test_sysfs_refused_is_skipped_quietly(part4, tmp_path, monkeypatch, err):
    k, rootfs = part4.kernel, part4.rootfs
    monkeypatch.setattr(rootfs, "TMP_DIR", str(tmp_path))
    fs = rootfs.prepare(options(rootfs=str(fake_rootfs(tmp_path))))
    rec = Recorder(monkeypatch, k, fail={("sys_mount", "sysfs"): err})
    fs.enter()
    assert ("sys_pivot_root", ".", ".") in rec.calls
    fs.remove()


def test_proc_refused_is_one_line(part4, tmp_path, monkeypatch):
    k, rootfs = part4.kernel, part4.rootfs
    monkeypatch.setattr(rootfs, "TMP_DIR", str(tmp_path))
    fs = rootfs.prepare(options(rootfs=str(fake_rootfs(tmp_path)), mount_proc=True))
    Recorder(monkeypatch, k, fail={("sys_mount", "proc"): errno.EPERM})
    with pytest.raises(part4.errors.ZooError) as e:
        fs.enter()
    assert e.value.message == (f"failed to mount proc at {fs.mount_point}/proc: "
                               "Operation not permitted")
    assert e.value.status == 125
    fs.remove()


def test_pivot_refused_is_one_line(part4, tmp_path, monkeypatch):
    k, rootfs = part4.kernel, part4.rootfs
    monkeypatch.setattr(rootfs, "TMP_DIR", str(tmp_path))
    fs = rootfs.prepare(options(rootfs=str(fake_rootfs(tmp_path))))
    Recorder(monkeypatch, k, fail={("sys_pivot_root", "."): errno.EINVAL})
    with pytest.raises(part4.errors.ZooError) as e:
        fs.enter()
    assert e.value.message == f"failed to pivot_root to {fs.mount_point}: Invalid argument"
    fs.remove()


def test_missing_mount_points_are_made(part4, tmp_path, monkeypatch):
    k, rootfs = part4.kernel, part4.rootfs
    monkeypatch.setattr(rootfs, "TMP_DIR", str(tmp_path))
    bare = tmp_path / "bare"
    (bare / "bin").mkdir(parents=True)
    fs = rootfs.prepare(options(rootfs=str(bare), mount_proc=True))
    rec = Recorder(monkeypatch, k)
    fs.enter()
    made = [c[1] for c in rec.calls if c[0] == "sys_mkdir"]
    for d in ("dev", "tmp", "sys", "proc"):
        assert f"{fs.mount_point}/{d}" in made
    fs.remove()


@pytest.mark.parametrize("make,message", [
    (lambda p: None, "No such file or directory"),
    (lambda p: p.write_text("x"), "Not a directory"),
])
def test_bad_rootfs_before_anything_is_made(part4, tmp_path, monkeypatch, make, message):
    rootfs = part4.rootfs
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setattr(rootfs, "TMP_DIR", str(scratch))
    bad = tmp_path / "bad"
    make(bad)
    with pytest.raises(part4.errors.ZooError) as e:
        rootfs.prepare(options(rootfs=str(bad)))
    assert e.value.message == f"failed to use {bad} as the rootfs: {message}"
    assert e.value.status == 125
    assert list(scratch.iterdir()) == []


def test_overlay_takes_a_rootfs_with_option_characters(part4, tmp_path, monkeypatch):
    """',' and ':' separate an overlay's options: the rootfs is named by its fd."""
    k, rootfs = part4.kernel, part4.rootfs
    monkeypatch.setattr(rootfs, "TMP_DIR", str(tmp_path))
    odd = tmp_path / "a,b:c=d"
    odd.mkdir()
    fs = rootfs.prepare(options(rootfs=str(odd), overlay=True))
    rec = Recorder(monkeypatch, k)
    fs.enter()
    assert rec.mounts()[1][4].startswith("lowerdir=/proc/self/fd/")
    fs.remove()


def test_the_child_mounts_only_the_directory_the_parent_checked(part4, tmp_path,
                                                               monkeypatch):
    """-r DIR replaced by another directory between the parent's check and the
    child's mount (renamed into its place by whoever may write DIR's parent): the
    child refuses it, one line and 125, and mounts nothing."""
    k, rootfs = part4.kernel, part4.rootfs
    monkeypatch.setattr(rootfs, "TMP_DIR", str(tmp_path))
    for overlay in (False, True):
        checked, other = fake_rootfs(tmp_path / f"{overlay}"), tmp_path / f"other{overlay}"
        other.mkdir()
        fs = rootfs.prepare(options(rootfs=str(checked), overlay=overlay))
        checked.rename(tmp_path / f"checked{overlay}")
        other.rename(checked)
        rec = Recorder(monkeypatch, k)
        with pytest.raises(part4.errors.ZooError) as e:
            fs.enter()
        assert e.value.message == (f"failed to use {checked} as the rootfs: it was replaced "
                                   "by another directory while zookeeper started")
        assert e.value.status == 125
        assert rec.mounts() == [(None, "/", None, k.MS_REC | k.MS_PRIVATE)]
        fs.remove()


def test_part5_mounts_its_cgroup_only_on_cgroup_v2(part5, tmp_path, monkeypatch):
    k, rootfs, cgroups = part5.kernel, part5.rootfs, part5.cgroups
    monkeypatch.setattr(rootfs, "TMP_DIR", str(tmp_path))
    fs_dir = fake_rootfs(tmp_path)
    for problem, expected in (("", True), ("this host has cgroup v1", False)):
        monkeypatch.setattr(cgroups, "unified_hierarchy_problem", lambda p=problem: p)
        fs = rootfs.prepare(options(rootfs=str(fs_dir)))
        # What sysfs would show there, the mounts being faked.
        os.makedirs(f"{fs.mount_point}/sys/fs/cgroup")
        rec = Recorder(monkeypatch, k)
        fs.enter()
        cg = ("cgroup2", f"{fs.mount_point}/sys/fs/cgroup", "cgroup2",
              k.MS_RDONLY | k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC)
        assert (cg in rec.mounts()) == expected
        fs.remove()


def test_explain_lines(part4, monkeypatch, capfd):
    """-v prints each call the way the man pages spell it, with its result."""
    k = part4.kernel
    monkeypatch.setattr(k, "VERBOSE", True)
    monkeypatch.setattr(k.libc, "mount", lambda *a: 0)
    monkeypatch.setattr(k.libc, "umount2", lambda *a: 0)
    monkeypatch.setattr(k.libc, "syscall", lambda *a: 0)
    k.sys_mount("/home/u/zoo-fs", "/tmp/zoo.x1", None, k.MS_BIND | k.MS_REC)
    k.sys_mount("proc", "/tmp/zoo.x1/proc", "proc", k.MS_NOSUID | k.MS_NODEV | k.MS_NOEXEC)
    k.sys_mount(None, "/", None, k.MS_REC | k.MS_PRIVATE)
    k.sys_mount("overlay", "/m", "overlay", 0, "lowerdir=/a")
    k.sys_pivot_root(".", ".")
    k.sys_umount2(".", k.MNT_DETACH)
    err = capfd.readouterr().err.splitlines()
    expected = [
        'mount("/home/u/zoo-fs", "/tmp/zoo.x1", NULL, MS_BIND|MS_REC) = 0',
        'mount("proc", "/tmp/zoo.x1/proc", "proc", MS_NOSUID|MS_NODEV|MS_NOEXEC) = 0',
        'mount(NULL, "/", NULL, MS_REC|MS_PRIVATE) = 0',
        'mount("overlay", "/m", "overlay", 0, "lowerdir=/a") = 0',
        'pivot_root(".", ".") = 0',
        'umount2(".", MNT_DETACH) = 0',
    ]
    assert len(err) == len(expected)
    for line, want in zip(err, expected):
        assert line.startswith("zookeeper: " + want), line
        man = want.split("(")[0] + "(2)"
        assert re.search(re.escape(man) + r"\s+\d+\.\d ms$", line), line


def test_explain_failure_names_errno(part4, monkeypatch, capfd):
    k = part4.kernel
    monkeypatch.setattr(k, "VERBOSE", True)

    def refuse(*a):
        k.ctypes.set_errno(errno.EPERM)
        return -1

    monkeypatch.setattr(k.libc, "mount", refuse)
    with pytest.raises(PermissionError):
        k.sys_mount("proc", "/p", "proc", 0)
    assert ('mount("proc", "/p", "proc", 0) = -1 EPERM (Operation not permitted)'
            in capfd.readouterr().err)


# Integration: part 4 as root and as the test user ---------------------------------


def mkdtemp_paths(stderr: str) -> list[str]:
    """The temporary directories explain mode says zookeeper made."""
    made = re.findall(r'mkdtemp\("/tmp/zoo\.XXXXXX"\) = "([^"]+)"', stderr)
    made += [os.path.dirname(p) for p in re.findall(r"upperdir=([^,]+),", stderr)]
    return made


def assert_removed(stderr: str, expected: int = 1):
    made = mkdtemp_paths(stderr)
    assert len(made) >= expected, stderr
    for path in made:
        assert not os.path.lexists(path), f"{path} left behind"


@pytest.fixture
def fs(runner: Runner, rootfs_for) -> Path:
    path = rootfs_for(runner)
    marker = path / "zoo-marker"
    if not marker.exists():
        marker.write_text("inside the rootfs\n")
        marker.chmod(0o644)
    return path


def test_root_is_the_rootfs(runner: Runner, fs):
    host_marker = runner.workdir / f"host-marker-{runner.who}"
    host_marker.write_text("on the host\n")
    done = runner.zookeeper(4, "-v", "-r", str(fs), "sh", "-c",
                            f"cat /zoo-marker; test -e {host_marker} && echo host-visible; "
                            "cat /etc/zoo-release; pwd")
    assert done.returncode == 0, done.stderr
    out = done.stdout.splitlines()
    assert out[0] == "inside the rootfs"
    assert "host-visible" not in done.stdout
    assert out[1].startswith("zoo-fs busybox")
    assert out[2] == "/"
    assert_removed(done.stderr)


def test_proc_shows_only_the_container(runner: Runner, fs):
    done = runner.zookeeper(4, "-P", "-r", str(fs), "sh", "-c",
                            "ls /proc | grep -E '^[0-9]+$' | sort -n | tr '\\n' ' '; "
                            "echo; cat /proc/1/cmdline | tr '\\0' ' '")
    assert done.returncode == 0, done.stderr
    pids = [int(p) for p in done.stdout.splitlines()[0].split()]
    # sh (1) and the pipeline's ls/grep/sort/tr: a handful, all small numbers.
    assert pids[0] == 1 and len(pids) <= 8 and max(pids) < 20, pids
    assert done.stdout.splitlines()[1].startswith("sh -c ls /proc")


@pytest.mark.parametrize("part", [4, 5, 6])
def test_no_fd_of_the_hosts_is_open_while_the_command_is_looked_up(runner: Runner, fs, part):
    """runc's CVE-2024-21626, through execve(2) itself: close-on-exec fds are closed
    only once the new program is found, so a command path (or a rootfs's link) of
    /proc/self/fd/N/.. walks out through any fd of the host's still open: the
    parent's fds of -r DIR and of the mount point, or one the caller left open (7)."""
    host_dir = fs.parent / "host-only"
    host_dir.mkdir(mode=0o755, exist_ok=True)
    program = host_dir / "echo"  # a static busybox runs as the applet it is named
    shutil.copyfile("/bin/busybox", program)
    program.chmod(0o755)
    # Up to / from wherever fd N is (.. of / is /), then down to the host's program.
    candidates = [f"/proc/self/fd/{fd}{'/..' * 12}{program}" for fd in range(3, 10)]
    for command in candidates:
        done = runner.run(["sh", "-c", 'exec 7<"$1"; shift; exec "$@"', "sh", str(host_dir),
                           runner.python, str(runner.workdir / PARTS[part] / "zookeeper.py"),
                           "-P", "-r", str(fs), command, "ran-the-hosts-file"])
        assert "ran-the-hosts-file" not in done.stdout, (command, done.stderr)
        assert done.returncode == 127, (command, done.returncode, done.stderr)


def test_rootfs_given_as_a_descriptor_the_caller_passed(runner: Runner, fs):
    """-r /proc/self/fd/7 (bash's 7<DIR): the child, in its own mount namespace, once
    opened that name again and got a mount of the parent's namespace, which mount(2)
    refuses (EINVAL: "failed to bind-mount /proc/self/fd/5").  The parent now gives
    it the directory's own path."""
    for extra in ([], ["-o"]):
        done = runner.run(["sh", "-c", 'exec 7<"$1"; shift; exec "$@"', "sh", str(fs),
                           runner.python, str(runner.workdir / PARTS[4] / "zookeeper.py"),
                           *extra, "-r", "/proc/self/fd/7", "cat", "/zoo-marker"])
        assert (done.returncode, done.stdout, done.stderr) == (0, "inside the rootfs\n", "")


def test_rootfs_from_another_mount_namespace_is_one_line(root_runner: Runner, tmp_path):
    """A directory only another mount namespace has (a tmpfs mounted in unshare -m's,
    its fd carried back by nsenter, which needs root): no path reaches it here, so
    one line and 125."""
    runner = root_runner
    hidden = tmp_path / "hidden"
    hidden.mkdir()
    done = runner.run(["unshare", "-m", "sh", "-c",
                       'mount -t tmpfs none "$1" && mkdir "$1/fs" && exec 7<"$1/fs" && '
                       'exec nsenter --mount="/proc/$2/ns/mnt" "$3" "$4" -r /proc/self/fd/7 '
                       "true", "sh", str(hidden), str(os.getpid()), runner.python,
                       str(runner.workdir / PARTS[4] / "zookeeper.py")])
    assert done.returncode == 125, done.stderr
    assert done.stderr.splitlines() == [
        "zookeeper: failed to use /proc/self/fd/7 as the rootfs: it is not reachable by a "
        "path in zookeeper's mount namespace"]


FEDORA_PATH = "/usr/local/bin:/usr/bin:/usr/local/sbin:/usr/sbin"  # no /bin, as Arch's


@pytest.mark.parametrize("part", [4, 5, 6])
def test_a_rootfs_gets_the_standard_path_and_none_of_the_hosts_dirs(runner: Runner, fs,
                                                                     part):
    """A caller's PATH without /bin (Fedora's, Arch's: theirs is a link to usr/bin)
    found no sh in busybox's rootfs, whose sh is /bin/sh (127), and the caller's
    TMPDIR, a host directory, failed mktemp there.  In a rootfs of its own the
    command gets the standard PATH, HOME=/root and no TMPDIR; the rest is the
    caller's.  Without -r, the host's files are there: the environment is kept."""
    host_tmp = runner.workdir / "host-tmp"
    env = {"PATH": f"{os.path.dirname(runner.python)}:{FEDORA_PATH}", "TMPDIR": str(host_tmp),
           "HOME": str(runner.workdir), "ZOO_KEPT": "kept"}
    show = 'echo "$PATH|$HOME|${TMPDIR-unset}|$ZOO_KEPT"'
    done = runner.zookeeper(part, "-r", str(fs), "sh", "-c", f"{show}; mktemp", env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[0] == (
        "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin|/root|unset|kept")
    assert done.stdout.splitlines()[1].startswith("/tmp/"), done.stdout
    done = runner.zookeeper(part, "sh", "-c", show, env=env)
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{env['PATH']}|{runner.workdir}|{host_tmp}|kept\n"


def test_proc_without_rootfs_keeps_the_hosts_files(runner: Runner):
    done = runner.zookeeper(4, "-P", "sh", "-c",
                            f"test -d {runner.workdir} && echo host-files; "
                            "ls /proc | grep -cE '^[0-9]+$'")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0] == "host-files"
    assert int(lines[1]) <= 5


def test_dev_works(runner: Runner, fs):
    done = runner.zookeeper(4, "-r", str(fs), "sh", "-c",
                            "echo x > /dev/null && wc -c < /dev/null; "
                            "head -c 16 /dev/urandom | wc -c; head -c 8 /dev/zero | od -An -tx1; "
                            "ls /dev; sleep 1 & wait; echo bg-ok; "
                            "echo tmp > /tmp/t && cat /tmp/t")
    assert done.returncode == 0, done.stderr
    out = done.stdout.split()
    assert out[0] == "0" and out[1] == "16" and out[2:10] == ["00"] * 8
    for name in ("null", "zero", "full", "random", "urandom", "tty", "shm", "pts"):
        assert name in out
    assert "bg-ok" in out and out[-1] == "tmp"


def tree_digest(path: Path) -> str:
    """Names, types, modes, owners, sizes, mtimes, link targets and contents."""
    h = hashlib.sha256()
    for dirpath, dirnames, filenames in sorted(os.walk(path)):
        dirnames.sort()
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            h.update(f"{os.path.relpath(p, path)} {st.st_mode} {st.st_uid} {st.st_gid} "
                     f"{st.st_size} {st.st_mtime_ns}\n".encode())
            if stat.S_ISLNK(st.st_mode):
                h.update(os.readlink(p).encode())
            elif stat.S_ISREG(st.st_mode):
                h.update(Path(p).read_bytes())
    st = os.lstat(path)
    h.update(f"{st.st_mode} {st.st_uid} {st.st_mtime_ns}".encode())
    return h.hexdigest()


def test_overlay_leaves_the_rootfs_unchanged(runner: Runner, fs):
    before = tree_digest(fs)
    script = ("echo new > /new-file && rm /zoo-marker && rm /bin/ls && "
              "echo more >> /etc/passwd && mkdir -p /home/bob/deep && "
              "echo x > /home/bob/deep/f && chown -R 1000:1000 /home/bob && "
              "chmod 700 /home/bob/deep && touch /etc && "
              "test ! -e /zoo-marker && cat /new-file")
    done = runner.zookeeper(4, "-v", "-o", "-r", str(fs), "sh", "-c", script)
    assert done.returncode == 0, done.stderr
    assert done.stdout == "new\n"
    assert tree_digest(fs) == before
    assert_removed(done.stderr, expected=2)  # the mount point and the overlay's dirs
    # Another run starts from the unchanged rootfs.
    again = runner.zookeeper(4, "-o", "-r", str(fs), "sh", "-c", "cat /zoo-marker; ls /new-file")
    assert again.stdout.startswith("inside the rootfs") and again.returncode != 0


def test_overlay_removes_and_renames_the_rootfs_directories(runner: Runner, fs):
    """A directory of the lower layer, removed or renamed: overlayfs marks its place
    with xattrs, trusted.* ones unless told userxattr, which no user namespace may set
    (EIO)."""
    before = tree_digest(fs)
    script = ("rm -rf /var && mv /sbin /sbin2 && test ! -e /var && test ! -e /sbin && "
              "test -d /sbin2 && mkdir /var && ls -A /var | wc -l")
    done = runner.zookeeper(4, "-o", "-r", str(fs), "sh", "-c", script)
    assert (done.returncode, done.stdout, done.stderr) == (0, "0\n", "")
    assert tree_digest(fs) == before


def test_without_overlay_changes_persist(runner: Runner, fs):
    name = f"persist-{runner.who}"
    done = runner.zookeeper(4, "-r", str(fs), "sh", "-c", f"echo kept > /root/{name}")
    assert done.returncode == 0, done.stderr
    assert (fs / "root" / name).read_text() == "kept\n"
    runner.zookeeper(4, "-r", str(fs), "rm", f"/root/{name}")
    assert not (fs / "root" / name).exists()


def test_exec_failure_is_127_and_cleans_up(runner: Runner, fs):
    done = runner.zookeeper(4, "-v", "-r", str(fs), "python3", "-c", "pass")
    assert done.returncode == 127
    assert ("zookeeper: failed to execute python3: No such file or directory"
            in done.stderr.splitlines())
    assert_removed(done.stderr)


def test_exec_failure_with_overlay_cleans_up(runner: Runner, fs):
    done = runner.zookeeper(4, "-v", "-o", "-r", str(fs), "/no/such/command")
    assert done.returncode == 127
    assert_removed(done.stderr, expected=2)


@pytest.mark.parametrize("kind", ["missing", "file"])
def test_bad_rootfs_is_one_line_125(runner: Runner, kind):
    path = runner.workdir / f"not-a-rootfs-{kind}"
    if kind == "file":
        path.write_text("x")
    reason = "No such file or directory" if kind == "missing" else "Not a directory"
    done = runner.zookeeper(4, "-r", str(path), "true")
    assert done.returncode == 125
    said = f"zookeeper: failed to use {path} as the rootfs: {reason}"
    assert done.stderr.splitlines() == [said]
    done = runner.zookeeper(4, "-v", "-r", str(path), "true")
    assert done.stderr.splitlines()[-1] == said
    assert mkdtemp_paths(done.stderr) == []  # nothing was made, nothing left


def test_sigterm_cleans_up(runner: Runner, fs):
    proc = runner.popen(4, "-v", "-o", "-r", str(fs), "sleep", "100",
                        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "execvp(" in line:
            break
    made = mkdtemp_paths("".join(seen))
    assert len(made) == 2 and all(os.path.isdir(p) for p in made), "".join(seen)
    proc.send_signal(signal.SIGTERM)
    _, rest = proc.communicate(timeout=30)
    # sleep is PID 1 and ignores SIGTERM: zookeeper kills it after the grace period,
    # then dies of the same signal, after cleaning up.
    assert proc.returncode == -signal.SIGKILL, rest
    for path in made:
        assert not os.path.lexists(path)


def test_rootless_overlay_files_of_other_users_are_removed(user_runner: Runner, rootfs_for):
    """Files the container gives its uid 1000 belong to a subordinate uid on the host:
    the user cannot delete them there, zookeeper removes them in a user namespace."""
    fs = rootfs_for(user_runner)
    done = user_runner.zookeeper(4, "-v", "-o", "-r", str(fs), "sh", "-c",
                                 "mkdir -p /srv/a/b && touch /srv/a/b/f && "
                                 "chown -R 1000:1000 /srv/a && chmod 500 /srv/a/b")
    assert done.returncode == 0, done.stderr
    assert_removed(done.stderr, expected=2)
    assert "cleanup:" not in done.stderr
