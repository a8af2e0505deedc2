"""Tests of tools/mkrootfs.py (the container root filesystem) and tools/check-deps.sh."""

import importlib.util
import io
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import pytest
from conftest import subid_range

REPO = Path(__file__).resolve().parent.parent
MKROOTFS = REPO / "tools" / "mkrootfs.py"
CHECK_DEPS = REPO / "tools" / "check-deps.sh"
SYSTEM_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

needs_busybox = pytest.mark.skipif(
    shutil.which("busybox") is None and shutil.which("apt-get") is None,
    reason="busybox-static is not installed and apt-get cannot download it")


def load_mkrootfs():
    spec = importlib.util.spec_from_file_location("mkrootfs", MKROOTFS)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_mkrootfs(*args, prefix=(), python=sys.executable, script=MKROOTFS, **kwargs):
    cmd = [*prefix, python, str(script), *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, **kwargs)


def members(tar_path):
    with tarfile.open(tar_path) as tar:
        return {m.name: m for m in tar}


def read_member(tar_path, name):
    with tarfile.open(tar_path) as tar:
        return tar.extractfile(name).read().decode()


def assert_one_line_error(result, *words):
    assert result.returncode == 1, result
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("mkrootfs: "), result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in lines[0]


# ---------------------------------------------------------------- an unprivileged user


class User:
    """Who runs a command: uid, gid, a command prefix that switches to them, a Python."""

    def __init__(self, name, prefix):
        entry = pwd.getpwnam(name)
        self.name, self.uid, self.gid, self.prefix = name, entry.pw_uid, entry.pw_gid, prefix
        # The root's Python may be unreadable to others (a pyenv under /root): use Debian's.
        system_python = "/usr/bin/python3"
        self.python = system_python if os.path.exists(system_python) else sys.executable
        self.env = {"PATH": SYSTEM_PATH, "HOME": "/", "LANG": "C.UTF-8"}

    def run(self, cmd, **kwargs):
        return subprocess.run([*self.prefix, *cmd], capture_output=True, text=True,
                              env=self.env, timeout=120, **kwargs)


@pytest.fixture(scope="module")
def user():
    """An unprivileged user: a throwaway one made with useradd when running as root."""
    if os.geteuid() != 0:
        yield User(pwd.getpwuid(os.getuid()).pw_name, prefix=[])
        return
    if not (shutil.which("useradd") and shutil.which("userdel") and shutil.which("setpriv")):
        pytest.skip("running as root without useradd/userdel/setpriv: no unprivileged user")
    name = f"zoomkfs{os.getpid() % 100000}"
    subprocess.run(["useradd", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
                   check=True, capture_output=True)
    try:
        entry = pwd.getpwnam(name)
        yield User(name, prefix=["setpriv", f"--reuid={entry.pw_uid}",
                                 f"--regid={entry.pw_gid}", "--clear-groups", "--"])
    finally:
        subprocess.run(["userdel", name], capture_output=True)


@pytest.fixture
def shared_dir(user):
    """A directory the unprivileged user may write, holding a copy of mkrootfs.py and
    the busybox tarball (the repository itself may sit where that user cannot read)."""
    path = Path(tempfile.mkdtemp(prefix="zoo-mkrootfs-test-"))
    path.chmod(0o755)
    (path / "work").mkdir()
    os.chown(path / "work", user.uid, user.gid)
    shutil.copy(MKROOTFS, path / "mkrootfs.py")
    yield path
    shutil.rmtree(path, ignore_errors=True)


# ---------------------------------------------------------------- the busybox image


@pytest.fixture(scope="module")
def busybox_tar(tmp_path_factory):
    out = tmp_path_factory.mktemp("busybox") / "zoo-fs.tar"
    result = run_mkrootfs("busybox", out)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}" in result.stdout
    return out


@needs_busybox
def test_busybox_build_is_deterministic(busybox_tar, tmp_path):
    again = tmp_path / "again.tar"
    assert run_mkrootfs("busybox", again, cwd=tmp_path).returncode == 0
    assert again.read_bytes() == busybox_tar.read_bytes()


@needs_busybox
def test_busybox_names_are_sorted_with_fixed_mtime(busybox_tar):
    with tarfile.open(busybox_tar) as tar:
        names = tar.getnames()
        assert names == sorted(names)
        assert {m.mtime for m in tar} == {load_mkrootfs().DEFAULT_MTIME}


@needs_busybox
def test_busybox_has_sh_and_every_applet(busybox_tar, tmp_path):
    entries = members(busybox_tar)
    assert entries["bin/busybox"].isreg() and entries["bin/busybox"].mode == 0o755
    assert entries["bin/sh"].issym() and entries["bin/sh"].linkname == "busybox"
    assert entries["usr/bin/wget"].linkname == "../../bin/busybox"
    # Every applet the packed busybox lists is there, and links to bin/busybox.
    binary = tmp_path / "busybox"
    with tarfile.open(busybox_tar) as tar:
        binary.write_bytes(tar.extractfile("bin/busybox").read())
    binary.chmod(0o755)
    listed = subprocess.run([binary, "--list-full"], capture_output=True, text=True).stdout
    applets = {path for path in listed.split()
               if os.path.dirname(path) in ("bin", "sbin", "usr/bin", "usr/sbin")}
    applets.discard("bin/busybox")
    assert len(applets) > 200
    for path in applets:
        link = entries[path]
        assert link.issym(), path
        assert os.path.normpath(os.path.join(os.path.dirname(path), link.linkname)) == \
            "bin/busybox"


@needs_busybox
def test_busybox_config_files_and_dirs(busybox_tar):
    assert read_member(busybox_tar, "etc/resolv.conf") == "nameserver 10.0.2.3\n"
    assert read_member(busybox_tar, "etc/hostname") == "zoo\n"
    passwd = read_member(busybox_tar, "etc/passwd")
    assert passwd.startswith("root:x:0:0:") and "\nnobody:x:65534:65534:" in passwd
    assert read_member(busybox_tar, "etc/group").startswith("root:x:0:")
    assert "localhost" in read_member(busybox_tar, "etc/hosts")
    assert "busybox" in read_member(busybox_tar, "etc/zoo-release").lower()
    entries = members(busybox_tar)
    modes = {"dev": 0o755, "proc": 0o555, "sys": 0o555, "tmp": 0o1777, "root": 0o700,
             "run": 0o755, "var/tmp": 0o1777, "home": 0o755}
    for name, mode in modes.items():
        assert entries[name].isdir() and entries[name].mode == mode, name
    assert not [name for name in entries if name.startswith("dev/")]


@needs_busybox
def test_busybox_entries_owned_by_root(busybox_tar):
    owners = {(m.uid, m.gid) for m in members(busybox_tar).values()}
    assert owners == {(0, 0)}


# ---------------------------------------------------------------- unpack


def unpack_as(user, shared_dir, tar, dest, *options):
    shutil.copy(tar, shared_dir / "zoo-fs.tar")
    (shared_dir / "zoo-fs.tar").chmod(0o644)
    cmd = [user.python, str(shared_dir / "mkrootfs.py"), "unpack",
           str(shared_dir / "zoo-fs.tar"), str(dest), *options]
    return user.run(cmd, cwd=shared_dir)


@needs_busybox
def test_unpack_as_unprivileged_user_owns_the_files(busybox_tar, user, shared_dir):
    dest = shared_dir / "work" / "zoo-fs"
    result = unpack_as(user, shared_dir, busybox_tar, dest)
    assert result.returncode == 0, result.stderr
    wrong = [path for path in [dest, *dest.rglob("*")]
             if (path.lstat().st_uid, path.lstat().st_gid) != (user.uid, user.gid)]
    assert wrong == []
    # umask 0 and tar -p: the modes of the archive, sticky bits included.
    assert stat.S_IMODE((dest / "tmp").lstat().st_mode) == 0o1777
    assert stat.S_IMODE((dest / "root").lstat().st_mode) == 0o700
    assert os.readlink(dest / "bin" / "sh") == "busybox"


def userns_works(user):
    return user.run(["unshare", "--user", "--map-root-user", "true"]).returncode == 0


@needs_busybox
def test_unpacked_files_are_root_in_a_user_namespace(busybox_tar, user, shared_dir):
    if shutil.which("unshare") is None or not userns_works(user):
        pytest.skip("unprivileged user namespaces are not available here")
    dest = shared_dir / "work" / "zoo-fs"
    assert unpack_as(user, shared_dir, busybox_tar, dest).returncode == 0
    inside = user.run(["unshare", "--user", "--map-root-user", "chroot", str(dest),
                       "/bin/sh", "-c", "id -u; stat -c %u:%g /bin/busybox /etc/passwd"])
    assert inside.returncode == 0, inside.stderr
    assert inside.stdout.split() == ["0", "0:0", "0:0"]


@needs_busybox
def test_unpack_refuses_a_non_empty_dir_without_force(busybox_tar, tmp_path):
    dest = tmp_path / "zoo-fs"
    dest.mkdir()
    (dest / "keep").write_text("mine")
    assert_one_line_error(run_mkrootfs("unpack", busybox_tar, dest), str(dest), "--force")
    assert (dest / "keep").exists() and not (dest / "bin").exists()
    result = run_mkrootfs("unpack", busybox_tar, dest, "--force")
    assert result.returncode == 0, result.stderr
    assert not (dest / "keep").exists() and (dest / "bin" / "busybox").is_file()


@needs_busybox
def test_unpack_keep_leaves_a_changed_rootfs_alone(busybox_tar, tmp_path):
    """`make rootfs` (and so `make demo`) unpacks with --keep: the student's changes stay."""
    dest = tmp_path / "zoo-fs"
    assert run_mkrootfs("unpack", "--keep", busybox_tar, dest).returncode == 0
    assert (dest / "bin" / "busybox").is_file()
    (dest / "root" / "mine").write_text("installed by the student")
    (dest / "bin" / "busybox").unlink()
    result = run_mkrootfs("unpack", "--keep", busybox_tar, dest)
    assert result.returncode == 0, result.stderr
    assert "kept as it is" in result.stdout and "make rootfs-reset" in result.stdout
    assert (dest / "root" / "mine").read_text() == "installed by the student"
    assert not (dest / "bin" / "busybox").exists()
    assert run_mkrootfs("unpack", "--keep", "--force", busybox_tar, dest).returncode == 2


@needs_busybox
def test_an_unpack_cut_short_leaves_nothing_that_keep_keeps(busybox_tar, tmp_path):
    """A full disk or a Ctrl-C halfway through tar left half a rootfs (no wc, a busybox
    cut short), which the next `make rootfs` kept "with your changes"; and the reason
    shown was tar's last line, not the one that says why."""
    cut = tmp_path / "cut.tar"
    data = busybox_tar.read_bytes()
    cut.write_bytes(data[:len(data) // 2])
    dest = tmp_path / "zoo-fs"
    result = run_mkrootfs("unpack", "--keep", cut, dest)
    assert result.returncode != 0
    assert "Exiting with failure status" not in result.stderr, result.stderr
    assert not dest.exists() and list(tmp_path.iterdir()) == [cut]
    result = run_mkrootfs("unpack", "--keep", busybox_tar, dest)
    assert result.returncode == 0 and "kept as it is" not in result.stdout
    with tarfile.open(busybox_tar) as whole:
        assert sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*")) == sorted(
            m.name.removeprefix("./") for m in whole.getmembers() if m.name not in (".", "./"))


@needs_busybox
def test_unpack_into_a_mount_point(busybox_tar, tmp_path):
    """A DEST that is a mount point (a tmpfs of its own) cannot be renamed over: the
    rootfs is unpacked in it, as before the unpack went by a partial directory."""
    if os.geteuid() != 0:
        pytest.skip("mounts a tmpfs: run as root")
    dest = tmp_path / "zoo-fs"
    dest.mkdir()
    done = subprocess.run(["unshare", "--mount", "sh", "-c", f"mount -t tmpfs zk-test {dest} && "
                           f"{sys.executable} {MKROOTFS} unpack {busybox_tar} {dest} && "
                           f"test -x {dest}/bin/busybox"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@needs_busybox
def test_unpack_says_when_other_users_can_write_in_the_rootfs(busybox_tar):
    """var/tmp is 1777 in the archive: where others can reach DEST (every directory on
    the way searchable by them), another student can fill it; the unpack says so,
    and what keeps them out."""
    base = Path(tempfile.mkdtemp(prefix="zk-reach-"))
    try:
        base.chmod(0o755)
        home = base / "home"
        home.mkdir(mode=0o755)
        home.chmod(0o755)
        result = run_mkrootfs("unpack", busybox_tar, home / "zoo-fs")
        assert result.returncode == 0, result.stderr
        assert "var/tmp" in result.stdout and f"chmod 700 {home}" in result.stdout
        home.chmod(0o700)
        result = run_mkrootfs("unpack", "--force", busybox_tar, home / "zoo-fs")
        assert result.returncode == 0 and "note:" not in result.stdout, result.stdout
    finally:
        shutil.rmtree(base)


@needs_busybox
def test_unpack_into_an_empty_dir_needs_no_force(busybox_tar, tmp_path):
    (tmp_path / "empty").mkdir()
    assert run_mkrootfs("unpack", busybox_tar, tmp_path / "empty").returncode == 0


@needs_busybox
def test_unpack_force_removes_files_of_subordinate_uids(busybox_tar, user, shared_dir):
    """A container leaves files owned by the user's subuids: --force removes them in a userns."""
    help_text = subprocess.run(["unshare", "--help"], capture_output=True, text=True).stdout
    if "--map-auto" not in help_text or shutil.which("newuidmap") is None:
        pytest.skip("needs newuidmap and unshare --map-auto (util-linux 2.38)")
    if not subid_range("/etc/subuid", user.name, user.uid) or not userns_works(user):
        pytest.skip(f"{user.name} has no /etc/subuid range or no user namespaces")
    dest = shared_dir / "work" / "zoo-fs"
    assert unpack_as(user, shared_dir, busybox_tar, dest).returncode == 0
    # What a container does: root in it makes a directory for uid 1 (a subuid outside).
    as_container = user.run(["unshare", "--map-auto", "--map-root-user", "/bin/sh", "-c",
                             f"mkdir {dest}/home/u && touch {dest}/home/u/f"
                             f" && chown -R 1:1 {dest}/home/u"])
    assert as_container.returncode == 0, as_container.stderr
    assert (dest / "home" / "u").lstat().st_uid != user.uid
    result = unpack_as(user, shared_dir, busybox_tar, dest, "--force")
    assert result.returncode == 0, result.stderr
    assert not (dest / "home" / "u").exists() and (dest / "bin" / "busybox").exists()


def test_unpack_skips_device_nodes(tmp_path):
    tar_path = tmp_path / "devices.tar"
    with tarfile.open(tar_path, "w") as tar:
        null = tarfile.TarInfo("dev/null")
        null.type, null.devmajor, null.devminor, null.mode = tarfile.CHRTYPE, 1, 3, 0o666
        tar.addfile(null)
        hello = tarfile.TarInfo("etc/hello")
        hello.size = 3
        tar.addfile(hello, io.BytesIO(b"hi\n"))
    result = run_mkrootfs("unpack", tar_path, tmp_path / "fs")
    assert result.returncode == 0, result.stderr
    assert "1 device nodes skipped" in result.stdout
    assert (tmp_path / "fs" / "etc" / "hello").read_text() == "hi\n"
    assert not os.path.lexists(tmp_path / "fs" / "dev" / "null")


def test_errors_are_one_line(tmp_path):
    assert_one_line_error(run_mkrootfs("unpack", tmp_path / "missing.tar", tmp_path / "d"),
                          "missing.tar", "no such file")
    assert_one_line_error(run_mkrootfs("busybox", tmp_path / "no" / "dir" / "x.tar"),
                          "no directory")
    (tmp_path / "bad.tar").write_text("not a tar")
    assert_one_line_error(run_mkrootfs("unpack", tmp_path / "bad.tar", tmp_path / "d"),
                          "bad.tar")


# ---------------------------------------------------------------- the host's apt mirror


def test_host_mirror_from_sources_list_and_deb822(tmp_path):
    mkrootfs = load_mkrootfs()
    (tmp_path / "sources.list.d").mkdir()
    (tmp_path / "sources.list").write_text(
        "# a comment\n"
        "deb-src http://src.example/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] http://one.example/debian bookworm-updates main\n")
    (tmp_path / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://off.example/debian\nSuites: bookworm\nEnabled: no\n\n"
        "Types: deb deb-src\n# comment\nURIs: http://two.example/debian\n"
        "Suites: bookworm bookworm-updates\nComponents: main\n")
    (tmp_path / "sources.list.d" / "old.list.disabled").write_text(
        "deb http://disabled.example/debian bookworm main\n")
    assert mkrootfs.host_mirror("bookworm", str(tmp_path)) == "http://two.example/debian"
    assert mkrootfs.host_mirror("bookworm-updates", str(tmp_path)) == \
        "http://one.example/debian"
    assert mkrootfs.host_mirror("trixie", str(tmp_path)) is None


# ---------------------------------------------------------------- check-deps.sh


def path_without(tmp_path, *hidden):
    """A PATH directory with links to every command of the system's PATH but HIDDEN."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for directory in reversed(SYSTEM_PATH.split(":")):
        for name in os.listdir(directory) if os.path.isdir(directory) else []:
            if name not in hidden:
                (bin_dir / name).unlink(missing_ok=True)
                (bin_dir / name).symlink_to(os.path.join(directory, name))
    return str(bin_dir)


def check_deps(*needs, path=SYSTEM_PATH):
    env = {"PATH": path, "HOME": "/"}
    return subprocess.run(["/bin/sh", str(CHECK_DEPS), *needs], capture_output=True,
                          text=True, env=env, timeout=60)


def test_check_deps_names_a_missing_tool_and_its_package(tmp_path):
    result = check_deps("rootfs", path=path_without(tmp_path, "busybox"))
    assert result.returncode == 1
    assert result.stderr.splitlines() == [
        "check-deps: missing busybox (package busybox-static):"
        " sudo apt-get install busybox-static"]


def test_check_deps_one_line_per_missing_item(tmp_path):
    result = check_deps("run", "grade",
                        path=path_without(tmp_path, "slirp4netns", "qemu-system-x86_64"))
    assert result.returncode == 1
    lines = result.stderr.splitlines()
    assert any("slirp4netns" in line and "sudo apt-get install slirp4netns" in line
               for line in lines)
    assert any("qemu-system-x86_64" in line and "apt-get install qemu-system-x86" in line
               for line in lines)
    assert lines[-1].endswith("sudo apt-get install qemu-system-x86 slirp4netns")


@needs_busybox
def test_check_deps_is_quiet_when_all_is_there():
    if shutil.which("busybox", path=SYSTEM_PATH) is None:
        pytest.skip("busybox-static is not installed")
    result = check_deps("rootfs")
    assert (result.returncode, result.stdout, result.stderr) == (0, "", "")


def test_check_deps_says_which_architectures_the_parts_run_on(tmp_path):
    bin_dir = path_without(tmp_path, "uname")
    fake_command(bin_dir, "uname", "echo riscv64\n")
    result = check_deps("run", path=bin_dir)
    assert result.returncode == 1
    assert ("check-deps: this machine is riscv64: the parts run on x86_64 and aarch64 only"
            in result.stderr)
    fake_command(bin_dir, "uname", "echo aarch64\n")
    assert "this machine is" not in check_deps("run", path=bin_dir).stderr


def test_check_deps_rejects_an_unknown_need():
    result = check_deps("nonsense")
    assert result.returncode == 2 and "unknown need 'nonsense'" in result.stderr


def fake_command(bin_dir, name, script):
    """A stand-in for NAME in BIN_DIR: a shell script (logs its arguments, say)."""
    path = Path(bin_dir) / name
    path.unlink(missing_ok=True)
    path.write_text("#!/bin/sh\n" + script)
    path.chmod(0o755)


def test_missing_man_pages_are_a_note_naming_their_packages(tmp_path):
    """The pages the code cites (clone(2), seccomp_rule_add(3), sd_booted(3)) come from
    three packages; what is missing is a note with the line to install it, never a stop."""
    bin_dir = path_without(tmp_path, "man")
    notes = {}
    for name, script in (("all there", "exit 0\n"),
                         ("no libseccomp-dev", '[ "$3" = seccomp_rule_add ] && exit 16\n'
                                               'exit 0\n'),
                         ("none", "exit 16\n"), ("no man", None)):
        if script is None:
            (Path(bin_dir) / "man").unlink()
        else:
            fake_command(bin_dir, "man", script)
        done = check_deps("run", path=bin_dir)
        assert "check-deps: missing" not in done.stderr, done.stderr
        notes[name] = [line for line in done.stderr.splitlines() if "man pages" in line]
    assert notes["all there"] == []
    tail = "are not all installed: sudo apt-get install {} (or read them at man7.org)"
    assert notes["no libseccomp-dev"] == [
        "check-deps: note: the man pages the exercises name (clone(2), seccomp_rule_add(3), "
        "...) " + tail.format("libseccomp-dev")]
    assert notes["none"][0].endswith(
        tail.format("manpages-dev libseccomp-dev libsystemd-dev"))
    assert notes["no man"][0].endswith(
        tail.format("man-db manpages-dev libseccomp-dev libsystemd-dev"))


def install_deps(path, prefix=()):
    """check-deps.sh --install rootfs (as PREFIX's user): the busybox rootfs's needs."""
    env = {"PATH": path, "HOME": "/"}
    return subprocess.run([*prefix, "/bin/sh", str(CHECK_DEPS), "--install", "rootfs"],
                          capture_output=True, text=True, env=env, timeout=60)


def test_install_as_root_runs_apt_get_itself(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root")
    bin_dir = path_without(tmp_path, "busybox")
    log = tmp_path / "apt.log"
    fake_command(bin_dir, "apt-get", f'echo "$*" >> {log}\n')
    result = install_deps(bin_dir)
    assert result.returncode == 0, result.stderr
    assert "installing the missing packages: sudo apt-get install busybox-static" in result.stdout
    assert log.read_text() == "install -y busybox-static\n"


@pytest.fixture
def user_bin(user):
    """The user's PATH without busybox or sudo, in a directory the user can read
    (pytest's tmp_path is root's alone)."""
    path = Path(tempfile.mkdtemp(prefix="zoo-check-deps-"))
    path.chmod(0o755)
    yield path_without(path, "busybox", "sudo")
    shutil.rmtree(path, ignore_errors=True)


def test_install_without_sudo_prints_the_line_to_run(user, user_bin):
    result = install_deps(user_bin, user.prefix)
    assert result.returncode == 1
    assert "there is no sudo here" in result.stderr
    assert result.stderr.splitlines()[-1] == "    apt-get install busybox-static"


def test_install_through_sudo_once_or_says_the_line(user, user_bin):
    log = Path(user_bin).parent / "sudo.log"
    log.touch()
    log.chmod(0o666)
    # A sudo that may: it runs the command; apt-get as a stand-in.
    fake_command(user_bin, "sudo", f'echo "$*" >> {log}; exec "$@"\n')
    fake_command(user_bin, "apt-get", f'echo "apt-get $*" >> {log}\n')
    result = install_deps(user_bin, user.prefix)
    assert result.returncode == 0, result.stderr
    lines = log.read_text().splitlines()
    assert lines[0].startswith("sh -c apt-get install -y busybox-static")
    assert lines[1:] == ["apt-get install -y busybox-static"]
    # A sudo that refuses (not in sudoers, or no terminal for the password).
    fake_command(user_bin, "sudo", 'echo "sudo: you are not in the sudoers file." >&2; exit 1\n')
    result = install_deps(user_bin, user.prefix)
    assert result.returncode == 1
    assert "sudo could not install them" in result.stderr
    assert result.stderr.splitlines()[-1] == "    sudo apt-get install busybox-static"


# ---------------------------------------------------------------- the debian image


@pytest.mark.slow
def test_debian_minbase_build(tmp_path):
    if os.geteuid() == 0:
        if shutil.which("debootstrap") is None:
            pytest.skip("debootstrap is not installed")
    elif shutil.which("mmdebstrap") is None:
        pytest.skip("not root and no mmdebstrap")
    out = tmp_path / "zoo-fs-debian.tar"
    result = run_mkrootfs("debian", out)
    assert result.returncode == 0, result.stderr[-2000:]
    entries = members(out)
    assert entries["etc/debian_version"].isreg()
    assert "usr/bin/apt" in entries
    assert read_member(out, "etc/resolv.conf") == "nameserver 10.0.2.3\n"
    assert read_member(out, "etc/hostname") == "zoo\n"
    assert not [m for m in entries.values() if m.ischr() or m.isblk()]
    assert not [name for name in entries if name.endswith(".deb")]
    assert entries["root"].uid == 0


# ---------------------------------------------------------------- no subordinate id range


@pytest.fixture
def deps_tree(user):
    """check-deps.sh in a tree the user can read, with a ready venv (a stand-in whose
    pip answers) and /etc/subuid and /etc/subgid stand-ins that name other users only."""
    for tool in ("newuidmap", "newgidmap", "slirp4netns", "unshare"):
        if shutil.which(tool, path=SYSTEM_PATH) is None:
            pytest.skip(f"{tool} is not installed")
    if subprocess.run([*user.prefix, "unshare", "--user", "--map-root-user", "true"],
                      capture_output=True, env=user.env).returncode != 0:
        pytest.skip("unprivileged user namespaces are off here")
    path = Path(tempfile.mkdtemp(prefix="zoo-subids-"))
    path.chmod(0o755)
    (path / "tools").mkdir()
    shutil.copy(CHECK_DEPS, path / "tools" / "check-deps.sh")
    (path / "requirements.txt").write_text("")
    (path / "venv" / "bin").mkdir(parents=True)
    (path / "venv" / "zookeeper-requirements.txt").write_text("")
    fake_command(path / "venv" / "bin", "python3",
                 '[ "$1 $2 $3" = "-m pip --version" ] && exit 0\nexec /usr/bin/python3 "$@"\n')
    (path / "subuid").write_text("alice:100000:65536\ncarol:300000:1000\n")
    (path / "subgid").write_text("alice:100000:65536\nbob:165536:65536\n")
    yield path
    shutil.rmtree(path, ignore_errors=True)


def deps_as(user, tree, *needs, path=SYSTEM_PATH):
    env = dict(user.env, PATH=path, VENV=str(tree / "venv"), SUBUID_FILE=str(tree / "subuid"),
               SUBGID_FILE=str(tree / "subgid"))
    return subprocess.run([*user.prefix, "/bin/sh", str(tree / "tools" / "check-deps.sh"),
                           *needs], capture_output=True, text=True, env=env, timeout=60)


def test_no_subid_range_is_a_note_for_the_containers(user, deps_tree):
    """zookeeper runs without a range (its root mapped alone), and so `make demo`,
    `make rootfs` and `make check` go on: a note, with a range that neither file's
    users have (after alice's and bob's, past carol's, at a multiple of 65536)."""
    if user.uid == 0:
        pytest.skip("root needs no range")
    done = deps_as(user, deps_tree, "rootfs", "run")
    assert done.returncode == 0, done.stderr
    fix = (f"sudo usermod --add-subuids 327680-393215 --add-subgids 327680-393215 "
           f"{user.name}")
    note = [line for line in done.stderr.splitlines() if "no range for" in line]
    assert len(note) == 1 and note[0].startswith("check-deps: note: no range for"), done.stderr
    assert fix in note[0] and "map only their root" in note[0]
    # Where it is needed (mmdebstrap builds rootfs-debian in a user namespace): an error,
    # with the same free range.
    strict = deps_as(user, deps_tree, "rootfs-debian")
    assert strict.returncode == 1
    assert any(line.startswith("check-deps: no range for") and fix in line
               for line in strict.stderr.splitlines()), strict.stderr
    # With a range in both files: not a word of it.
    for name in ("subuid", "subgid"):
        with open(deps_tree / name, "a") as f:
            f.write(f"{user.name}:500000:65536\n")
    assert "no range" not in deps_as(user, deps_tree, "rootfs", "run").stderr


def test_a_range_shared_with_another_user_is_warned_about(user, deps_tree):
    """Two users whose ranges overlap share the ids of their containers: each can read
    and change what the other's containers made (attack review, session 17)."""
    if user.uid == 0:
        pytest.skip("root needs no range")
    with open(deps_tree / "subuid", "a") as f:
        f.write(f"{user.name}:150000:65536\n")  # inside alice's 100000-165535
    with open(deps_tree / "subgid", "a") as f:
        f.write(f"{user.uid}:600000:65536\n")  # no one else's
    done = deps_as(user, deps_tree, "rootfs", "run")
    assert done.returncode == 0, done.stderr
    warned = [line for line in done.stderr.splitlines() if "overlaps" in line]
    assert warned == [
        f"check-deps: warning: your range 150000:65536 in {deps_tree / 'subuid'} overlaps "
        "alice's (100000:65536): the ids of your containers are theirs too, so each of you "
        "can read and change what the other's containers made; ask root for a range of "
        "your own"], done.stderr


def test_the_suggested_range_is_free_in_both_files(user, deps_tree):
    if user.uid == 0:
        pytest.skip("root needs no range")
    (deps_tree / "subuid").write_text("")
    (deps_tree / "subgid").unlink()
    said = deps_as(user, deps_tree, "run").stderr
    assert "--add-subuids 100000-165535 --add-subgids 100000-165535" in said, said
    (deps_tree / "subuid").write_text("a:100000:65536\nb:165536:65536\nc:231072:65536\n"
                                      "d:300000:65536\n# a comment\ne:365536:65536\n")
    said = deps_as(user, deps_tree, "run").stderr
    assert "--add-subuids 458752-524287 --add-subgids 458752-524287" in said, said


# ---------------------------------------------------------------- make lint, as a user

USER_PATH = "/usr/local/bin:/usr/bin:/bin"  # a login's PATH: no sbin directory


def test_lint_asks_a_user_for_no_root_tool(user, deps_tree):
    """`make lint` (through test-venv) as an unprivileged instructor with a ready venv:
    ruff and pytest are all it needs, not the suite's useradd and setpriv, nor sudo
    (it once checked the `test` need, and useradd in /usr/sbin looked missing)."""
    if user.uid == 0:
        pytest.skip("the point is a user without root")
    (deps_tree / "requirements-test.txt").write_text("")
    (deps_tree / "venv" / "zookeeper-requirements-test.txt").write_text("")
    done = deps_as(user, deps_tree, "lint", path=USER_PATH)
    assert done.returncode == 0 and not done.stderr, done.stderr
    # What the Makefile's lint and test-venv ask for: the lint need; root's test-deps
    # still asks for the whole suite's.
    dry = subprocess.run(["make", "-n", "-s", "-C", str(REPO), "lint"],
                         capture_output=True, text=True, timeout=30)
    assert "check-deps.sh --install lint" in dry.stdout, dry.stdout + dry.stderr
    assert "--install test" not in dry.stdout
    assert "check-deps.sh --install test" in subprocess.run(
        ["make", "-n", "-s", "-C", str(REPO), "test-deps"],
        capture_output=True, text=True, timeout=30).stdout


def test_a_tool_in_sbin_is_there_for_a_user(user, deps_tree):
    """useradd and setpriv installed in /usr/sbin are not missing because a user's PATH
    lacks sbin (they were reported missing, with their packages to install)."""
    sbin = [tool for tool in ("useradd", "setpriv")
            if not shutil.which(tool, path=USER_PATH) and shutil.which(tool, path=SYSTEM_PATH)]
    if not sbin:
        pytest.skip("neither useradd nor setpriv is in an sbin directory only, here")
    (deps_tree / "requirements-test.txt").write_text("")
    (deps_tree / "venv" / "zookeeper-requirements-test.txt").write_text("")
    said = deps_as(user, deps_tree, "test", path=USER_PATH).stderr
    for tool in sbin:
        assert f"missing {tool}" not in said, said


def test_a_package_only_one_option_needs_never_stops_the_set_up(user, deps_tree):
    """slirp4netns serves -n alone (part 6's rootless network): on a shared server with
    no sudo, its absence stopped `make setup`, and so `make check` of parts 1-5, until
    an admin acted (student walk, session 28).  Now a note, and the set-up goes on; a
    sudo that may installs it with the rest."""
    if user.uid == 0:
        pytest.skip("as root, apt-get runs")
    (deps_tree / "path").mkdir(mode=0o755)
    bin_dir = path_without(deps_tree / "path", "slirp4netns", "sudo")
    checked = deps_as(user, deps_tree, "run", path=bin_dir)
    assert checked.returncode == 0, checked.stderr
    assert ("check-deps: note: missing slirp4netns (package slirp4netns), so -n (part 6's "
            "rootless network) will not work: sudo apt-get install slirp4netns"
            in checked.stderr.splitlines()), checked.stderr
    installed = deps_as(user, deps_tree, "--install", "run", path=bin_dir)
    assert installed.returncode == 0, installed.stderr
    assert ("check-deps: note: there is no sudo here, so -n (part 6's rootless network) will "
            "not work until someone with root runs: apt-get install slirp4netns"
            in installed.stderr.splitlines()), installed.stderr
    assert "installing the missing packages" not in installed.stdout
    log = deps_tree / "sudo.log"
    log.touch()
    log.chmod(0o666)
    fake_command(bin_dir, "sudo", f'echo "$*" >> {log}\n')
    installed = deps_as(user, deps_tree, "--install", "run", path=bin_dir)
    assert installed.returncode == 0, installed.stderr
    assert log.read_text().startswith("sh -c apt-get install -y slirp4netns")


def test_as_root_a_failed_install_of_an_optional_package_is_a_note(deps_tree):
    """Root, offline (apt-get fails), with only slirp4netns missing: the set-up stopped
    ("apt-get could not install them"), where a user's went on (review of session
    28's change).  Now a note for root too; the tests' own need keeps it required."""
    if os.geteuid() != 0:
        pytest.skip("needs root")
    (deps_tree / "path").mkdir(mode=0o755)
    bin_dir = path_without(deps_tree / "path", "slirp4netns")
    fake_command(bin_dir, "apt-get", 'echo "E: Unable to locate package $3" >&2; exit 100\n')
    env = dict(os.environ, PATH=bin_dir, VENV=str(deps_tree / "venv"), HOME="/")
    done = subprocess.run(["/bin/sh", str(deps_tree / "tools" / "check-deps.sh"), "--install",
                           "run"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 0, done.stderr
    assert ("check-deps: note: apt-get could not install them (messages above), so -n (part "
            "6's rootless network) will not work until someone with root runs: apt-get "
            "install slirp4netns") in done.stderr, done.stderr
    checked = subprocess.run(["/bin/sh", str(deps_tree / "tools" / "check-deps.sh"), "test"],
                             capture_output=True, text=True, env=env, timeout=60)
    assert checked.returncode == 1
    assert ("check-deps: missing slirp4netns (package slirp4netns): sudo apt-get install "
            "slirp4netns") in checked.stderr.splitlines(), checked.stderr
