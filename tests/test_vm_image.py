"""The grader's VM image without root: built by any user with a subordinate range
(mmdebstrap's unshare mode), exported to one file and imported by another user.

The export/import tests use a small fake image with the current recipe's key (seconds,
no VM). Building for real as a new unprivileged user, booting that image and moving it to
another user takes ~2 minutes under TCG: it runs only with ZOO_TEST_ROOTLESS_BUILD=1
(as root: it creates two users and removes them afterwards).
"""

import contextlib
import functools
import hashlib
import http.server
import io
import json
import os
import pwd
import shutil
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import pytest
from conftest import ROOT, TEST_USER, VENV_PYTHON, drop_subid_lines, give_subid_range
from test_vm import image

PYTHON = VENV_PYTHON if os.path.exists(VENV_PYTHON) else sys.executable
NOSUB_USER = "zoonosub"  # made by tools/setup-test-env.sh without subordinate ranges
USER_PATH = "/usr/local/bin:/usr/bin:/bin"  # a user's PATH: no sbin


@pytest.fixture(scope="module")
def grader_copy():
    """grader/ where every user can read it (a CI clone may be under /root), with
    tools/mkrootfs.py beside it as in the handout and the Gradescope zip."""
    base = Path(tempfile.mkdtemp(prefix="zk-vm-image-"))
    base.chmod(0o755)
    shutil.copytree(ROOT / "grader", base / "grader",
                    ignore=shutil.ignore_patterns("__pycache__"))
    (base / "tools").mkdir()
    shutil.copy(ROOT / "tools" / "mkrootfs.py", base / "tools")
    subprocess.run(["chmod", "-R", "a+rX", str(base)], check=True)
    yield base / "grader" / "vm.py"
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def shared_tmp():
    """A temporary directory other users can reach (pytest's tmp_path is root's 0700)."""
    base = Path(tempfile.mkdtemp(prefix="zk-vm-image-"))
    base.chmod(0o755)
    yield base
    shutil.rmtree(base, ignore_errors=True)


class User:
    """Runs vm.py as one user, with a home of its own (so its cache is the default one)."""

    def __init__(self, name: str, home: Path, vm_py: Path):
        pw = pwd.getpwnam(name)
        self.name, self.uid, self.gid = name, pw.pw_uid, pw.pw_gid
        self.home = home
        self.vm_py = vm_py
        home.mkdir(parents=True, exist_ok=True)
        os.chown(home, self.uid, self.gid)

    @property
    def cache(self) -> Path:
        return self.home / ".cache" / "zookeeper" / "vm"

    def vm(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
        argv = [PYTHON, str(self.vm_py), *args]
        if os.geteuid() == 0:
            argv = ["/usr/bin/setpriv", f"--reuid={self.uid}", f"--regid={self.gid}",
                    "--init-groups", "--"] + argv
        env = {"PATH": USER_PATH, "HOME": str(self.home), "LANG": "C.UTF-8",
               "USER": self.name, "LOGNAME": self.name}
        return subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout,
                              cwd=self.home, stdin=subprocess.DEVNULL)


def _user(name: str, tmp_path: Path, vm_py: Path) -> User:
    if os.geteuid() != 0:
        pytest.skip("switches between users: run as root (make test)")
    try:
        pwd.getpwnam(name)
    except KeyError:
        pytest.fail(f"no user {name}: run tools/setup-test-env.sh (make test does)")
    return User(name, tmp_path / f"home-{name}", vm_py)


def fake_image(cache: Path, recipe: dict | None = None, owner: User | None = None) -> Path:
    """A cached image that is not a real VM: small files, a sparse rootfs, the manifest of
    recipe (default: the current one, so cached_image finds it)."""
    recipe = recipe or image.recipe()
    key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()
    d = cache / key
    d.mkdir(parents=True)
    manifest = {"key": key, "recipe": recipe, "kernel_version": "6.1.0-fake", "built": "now",
                "builder": "test_vm_image"}
    (d / "manifest.json").write_text(json.dumps(manifest))
    (d / "vmlinux").write_bytes(b"\x7fELF" + os.urandom(4096))
    (d / "initramfs.cpio").write_bytes(b"070701" + os.urandom(1000))
    with open(d / "rootfs.ext4", "wb") as f:
        f.truncate(64 << 20)
        f.write(b"superblock" * 100)
        f.seek(40 << 20)
        f.write(os.urandom(200 << 10))
    (d / "build.log").write_text("built by a test\n")
    if owner:
        for path in [cache.parent.parent.parent, cache.parent.parent, cache.parent, cache, d,
                     *d.iterdir()]:
            os.chown(path, owner.uid, owner.gid)
    return d


def export_archive(path: Path, image_dir: Path, members: dict | None = None) -> str:
    """An archive in export's format from image_dir (or members: name -> bytes); sha256."""
    with tarfile.open(path, "w:gz") as tf:
        items = members or {f"{image_dir.name}/{p.name}": p.read_bytes()
                            for p in image_dir.iterdir()}
        for name, data in items.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return image.file_sha256(path)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, f"expected one line, got: {text!r}"
    assert "Traceback" not in text
    return lines[0]


def nothing_installed(cache: Path) -> None:
    if cache.exists():
        left = [p.name for p in cache.iterdir() if p.name != ".lock"]
        assert left == [], f"left in the cache: {left}"


# ---------------------------------------------------------------------------------------
# Export and import, between two users (fake image, no VM)
# ---------------------------------------------------------------------------------------
def test_export_then_import_by_another_user(grader_copy, shared_tmp):
    tmp_path = shared_tmp
    alice = _user(TEST_USER, tmp_path, grader_copy)
    bob = _user(NOSUB_USER, tmp_path, grader_copy)  # no subordinate ranges: import needs none
    fake = fake_image(alice.cache, owner=alice)
    out = tmp_path / "published"
    out.mkdir()
    os.chown(out, alice.uid, alice.gid)

    exported = alice.vm("export", str(out / "zoo-vm.tar.gz"))
    assert exported.returncode == 0, exported.stderr
    digest, path = exported.stdout.split()
    assert path == str(out / "zoo-vm.tar.gz")
    assert digest == image.file_sha256(out / "zoo-vm.tar.gz")
    assert f"--sha256 {digest}" in one_line(exported.stderr)

    wrong = ("0" if digest[0] != "0" else "1") + digest[1:]
    refused = bob.vm("import", path, "--sha256", wrong)
    assert refused.returncode != 0
    line = one_line(refused.stderr)
    assert line.startswith("vm.py: ") and "sha256 mismatch" in line and digest in line
    nothing_installed(bob.cache)
    assert "not built" in bob.vm("info").stdout

    imported = bob.vm("import", f"file://{path}", "--sha256", digest.upper())
    assert imported.returncode == 0, imported.stderr
    installed = bob.cache / fake.name
    for name in ("vmlinux", "initramfs.cpio", "rootfs.ext4", "build.log"):
        assert (installed / name).read_bytes() == (fake / name).read_bytes(), name
        assert (installed / name).stat().st_uid == bob.uid
    # Written back sparse: a 64 MiB rootfs with ~200 KiB of data.
    assert (installed / "rootfs.ext4").stat().st_blocks * 512 < 4 << 20
    info = bob.vm("info").stdout
    assert f"image:     {installed}\n" in info
    assert f"sha256 {digest}" in info
    assert sorted(p.name for p in bob.cache.iterdir()) == [".lock", fake.name]
    # Importing again replaces it (a republished image), leaving nothing else behind.
    again = bob.vm("import", path, "--sha256", digest)
    assert again.returncode == 0, again.stderr
    assert sorted(p.name for p in bob.cache.iterdir()) == [".lock", fake.name]
    assert (installed / "vmlinux").read_bytes() == (fake / "vmlinux").read_bytes()


def test_import_over_http_and_refusals(grader_copy, tmp_path):
    """http:// through urllib (a server on 127.0.0.1); each refusal in one line, and then
    nothing installed."""
    source = fake_image(tmp_path / "source")
    served = tmp_path / "served"
    served.mkdir()
    digest = export_archive(served / "good.tar.gz", source)
    other = dict(image.recipe(), recipe_version=-1)
    other_digest = export_archive(served / "other.tar.gz", fake_image(tmp_path / "o", other))
    (served / "junk.tar.gz").write_bytes(b"not a tar file\n" * 100)
    junk_digest = image.file_sha256(served / "junk.tar.gz")
    evil_digest = export_archive(served / "evil.tar.gz", source, {
        f"{source.name}/manifest.json": b"{}", f"{source.name}/../../escaped": b"x"})
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    cache = tmp_path / "cache"

    def vm_import(source: str, sha: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(grader_copy), "--cache", str(cache),
                               "import", source, "--sha256", sha],
                              capture_output=True, text=True, timeout=60)

    try:
        cases = [
            (f"{url}/good.tar.gz", "f" * 64, "sha256 mismatch"),
            (f"{url}/missing.tar.gz", digest, "cannot download"),
            (f"{url}/other.tar.gz", other_digest, "another recipe"),
            (f"{url}/junk.tar.gz", junk_digest, "not an exported grader image"),
            (f"{url}/evil.tar.gz", evil_digest, "not an exported grader image"),
            (str(served / "nowhere.tar.gz"), digest, "no such file"),
            ("ftp://example.invalid/x", digest, "only files"),
            (f"{url}/good.tar.gz", "abc", "not a sha256"),
        ]
        for src, sha, expected in cases:
            result = vm_import(src, sha)
            assert result.returncode != 0, src
            assert expected in one_line(result.stderr), (src, result.stderr)
            nothing_installed(cache)
        assert not (tmp_path / "escaped").exists()

        result = vm_import(f"{url}/good.tar.gz", digest)
        assert result.returncode == 0, result.stderr
        assert image.cached_image(cache).dir == cache / source.name
    finally:
        server.shutdown()
        server.server_close()


def test_export_refusals_in_one_line(tmp_path):
    def export(cache: Path, dest: Path) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, str(ROOT / "grader" / "vm.py"), "--cache",
                               str(cache), "export", str(dest)],
                              capture_output=True, text=True, timeout=60)

    result = export(tmp_path / "empty", tmp_path / "x.tar.gz")
    assert result.returncode != 0
    assert "no image for this recipe" in one_line(result.stderr)
    assert not (tmp_path / "x.tar.gz").exists()
    fake_image(tmp_path / "cache")
    result = export(tmp_path / "cache", tmp_path / "no" / "such" / "x.tar.gz")
    assert result.returncode != 0
    assert "no directory" in one_line(result.stderr)
    result = export(tmp_path / "cache", tmp_path)  # a directory: a name of its own there
    assert result.returncode == 0, result.stderr
    digest, path = result.stdout.split()
    assert Path(path).parent == tmp_path and Path(path).name.startswith("zoo-vm-")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


# ---------------------------------------------------------------------------------------
# Building without root: what it needs, said in one line; the user namespace it uses
# ---------------------------------------------------------------------------------------
def test_build_without_a_subordinate_range_says_why_and_what_else(grader_copy, shared_tmp):
    tmp_path = shared_tmp
    bob = _user(NOSUB_USER, tmp_path, grader_copy)
    result = bob.vm("build")
    assert result.returncode != 0
    line = one_line(result.stderr)
    assert "without root" in line and "vm.py import" in line
    if shutil.which("mmdebstrap"):
        assert f"no subordinate uid range of 65536 ids for {NOSUB_USER}" in line
    nothing_installed(bob.cache)


def test_userns_helper_maps_us_to_root_and_the_range_above(grader_copy, shared_tmp):
    tmp_path = shared_tmp
    alice = _user(TEST_USER, tmp_path, grader_copy)
    start, _count = image.subid_range("uid", TEST_USER, alice.uid)
    result = alice.vm("_userns", "--", "sh", "-c", "id -u; id -g; cat /proc/self/uid_map")
    assert result.returncode == 0, result.stderr
    lines = [line.split() for line in result.stdout.splitlines()]
    assert lines[:2] == [["0"], ["0"]]
    assert lines[2:] == [["0", str(alice.uid), "1"], ["1", str(start), "65535"]]
    assert alice.vm("_userns", "--", "sh", "-c", "exit 7").returncode == 7
    # --dev: a chroot's /dev gets working nodes meanwhile (apt-key writes to /dev/null),
    # and the tree keeps its own, empty /dev.
    tree = tmp_path / "tree"
    (tree / "dev").mkdir(parents=True)
    os.chown(tree, alice.uid, alice.gid)
    os.chown(tree / "dev", alice.uid, alice.gid)
    dev = tree / "dev"
    result = alice.vm("_userns", "--dev", str(tree), "--", "sh", "-c",
                      f"test -c {dev}/null && echo x > {dev}/null && "
                      f"head -c 3 {dev}/zero | od -An -tx1 && readlink {dev}/fd")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["00", "00", "00", "/proc/self/fd"]
    assert list(dev.iterdir()) == []


def test_subid_range_and_cache_location(tmp_path, monkeypatch):
    subuid = tmp_path / "subuid"
    subuid.write_text("alice:100000:1000\nalice:200000:65536\n1234:300000:70000\nbob:x:y\n")
    assert image.subid_range("uid", "alice", 1000, subuid) == (200000, 65536)
    assert image.subid_range("uid", "carol", 1234, subuid) == (300000, 70000)
    assert image.subid_range("uid", "bob", 1, subuid) is None

    for name in ("ZOO_VM_CACHE", "XDG_CACHE_HOME", "SUDO_USER"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert image.default_cache_root() == tmp_path / ".cache" / "zookeeper" / "vm"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/is/ignored")
    assert image.default_cache_root() == tmp_path / ".cache" / "zookeeper" / "vm"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert image.default_cache_root() == tmp_path / "xdg" / "zookeeper" / "vm"
    monkeypatch.setenv("ZOO_VM_CACHE", str(tmp_path / "zoo"))
    assert image.default_cache_root() == tmp_path / "zoo"


# ---------------------------------------------------------------------------------------
# For real: a new user builds without root, boots it; another user imports it
# ---------------------------------------------------------------------------------------
BOOT_JOB = r"""#!/bin/sh
echo "subuid $(grep '^student:' /etc/subuid)"
echo "machine-id $(tr -d '\n' < /etc/machine-id | wc -c)"
echo "newuidmap $(stat -c %A /usr/bin/newuidmap)"
runuser -u student -- unshare --map-user=0 --map-group=0 --map-auto \
    cat /proc/self/uid_map | sed 's/^ */map /'
runuser -u student -- python3 -c 'import pyroute2, pyseccomp, pytest; print("imports ok")'
echo "user manager $(systemctl is-active user@1000.service)"
cd /sys/fs/cgroup/user.slice/user-1000.slice/user@1000.service &&
    echo "delegated $(cat cgroup.controllers)"
"""
NEW_USERS = ("zoovmbuild", "zoovmimport")


def _userdel(name: str) -> None:
    subprocess.run(["userdel", "-r", name], capture_output=True)
    drop_subid_lines(name)


@pytest.fixture
def new_users():
    """Two brand-new users (useradd -m): the first with a subordinate range, the second
    without one. Removed afterwards."""
    if not os.environ.get("ZOO_TEST_ROOTLESS_BUILD"):
        pytest.skip("builds and boots for real (~2 min): set ZOO_TEST_ROOTLESS_BUILD=1")
    if os.geteuid() != 0:
        pytest.skip("creates users: run as root")
    for tool in ("mmdebstrap", "newuidmap", "qemu-system-x86_64"):
        if not shutil.which(tool):
            pytest.skip(f"{tool} is not installed")
    for name in NEW_USERS:
        _userdel(name)
        subprocess.run(["useradd", "--create-home", "--shell", "/bin/sh", name], check=True)
    # useradd may have given both a range: the first gets one of its own, the second none.
    for name in NEW_USERS:
        drop_subid_lines(name)
    give_subid_range(NEW_USERS[0])
    try:
        yield NEW_USERS
    finally:
        for name in NEW_USERS:
            with contextlib.suppress(OSError):
                _userdel(name)


@pytest.mark.vm
@pytest.mark.slow
def test_new_user_builds_boots_exports_and_another_imports(new_users, grader_copy,
                                                          shared_tmp):
    tmp_path = shared_tmp
    builder = User(new_users[0], Path(pwd.getpwnam(new_users[0]).pw_dir), grader_copy)
    importer = User(new_users[1], Path(pwd.getpwnam(new_users[1]).pw_dir), grader_copy)
    assert not builder.cache.exists() and not (builder.home / ".cache").exists()

    started = time.monotonic()
    built = builder.vm("build", timeout=1200)
    build_seconds = time.monotonic() - started
    assert built.returncode == 0, built.stdout + built.stderr
    cached = image.cached_image(builder.cache)
    assert cached is not None, built.stdout
    assert "mmdebstrap" in cached.manifest["builder"]
    assert all(p.stat().st_uid == builder.uid for p in cached.dir.iterdir())
    print(f"rootless build as {builder.name}: {build_seconds:.1f} s", file=sys.stderr)

    job = tmp_path / "job.sh"
    job.write_text(BOOT_JOB)
    job.chmod(0o755)
    # Its results in its home, which goes with it (by default a /tmp/zoo-results-* is
    # kept for the caller to read).
    booted = builder.vm("run", str(job), "--timeout", "300", "--results",
                        str(builder.home / "results"), timeout=600)
    assert booted.returncode == 0, booted.stderr
    # Its first job saved the booted guest, as this user, and ran in it restored.
    assert "vm: saving a booted guest" in booted.stderr
    assert "vm: exit status 0, restored, " in booted.stderr, booted.stderr
    saved = list((cached.dir / "booted").glob("*/state"))
    assert len(saved) == 1 and saved[0].stat().st_uid == builder.uid
    out = booted.stdout.splitlines()
    assert "subuid student:100000:65536" in out
    assert "machine-id 32" in out
    assert "newuidmap -rwsr-xr-x" in out
    assert ["map", "0", "1000", "1"] in [line.split() for line in out]
    assert ["map", "1", "100000", "65535"] in [line.split() for line in out]
    assert "imports ok" in out
    assert "user manager active" in out
    delegated = next(line for line in out if line.startswith("delegated")).split()
    assert {"cpu", "memory", "pids"} <= set(delegated)

    published = tmp_path / "published"
    published.mkdir(mode=0o755)
    os.chown(published, builder.uid, builder.gid)
    exported = builder.vm("export", str(published / "zoo-vm.tar.gz"), timeout=300)
    assert exported.returncode == 0, exported.stderr
    digest, path = exported.stdout.split()

    wrong = builder.vm("import", path, "--sha256", digest[::-1])  # not as its builder, too
    assert "sha256 mismatch" in one_line(wrong.stderr)
    refused = importer.vm("import", path, "--sha256", digest[::-1])
    assert refused.returncode != 0 and "sha256 mismatch" in one_line(refused.stderr)
    nothing_installed(importer.cache)

    imported = importer.vm("import", path, "--sha256", digest, timeout=300)
    assert imported.returncode == 0, imported.stderr
    info = importer.vm("info").stdout
    assert f"image:     {importer.cache / cached.key}\n" in info
    assert "builder:        mmdebstrap" in info
    mine = image.cached_image(importer.cache)
    for name in ("vmlinux", "initramfs.cpio", "rootfs.ext4"):
        assert image.file_sha256(mine.dir / name) == image.file_sha256(cached.dir / name), name


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("debootstrap"),
                    reason="the build's root path: root and debootstrap")
def test_an_image_whose_files_changed_while_it_was_built_is_not_cached(tmp_path, monkeypatch):
    """Its files are read as it is built, its key before: a grader/guest/ file edited
    meanwhile (seen: a hunt's grade building while zoo-setup was edited) would put
    the old files in the cache under the new files' key."""
    built = []
    monkeypatch.setattr(image, "cache_key", lambda arch=None: "b" * 64 if built else "a" * 64)
    monkeypatch.setattr(image, "_build_into", lambda *args: built.append(True))
    with pytest.raises(image.VMError, match="changed while the image was built"):
        image.build_image(tmp_path, log=None)
    assert [p.name for p in tmp_path.iterdir() if not p.name.startswith(("build-", "."))] == []
