"""A graded user's home put back after each check: grader/home.py.

Root's daemons act as the user on files in its real home (a key in
~/.ssh/authorized_keys, a pipe in ~/.forward); a check's commands may write there by
the home's path whatever their HOME.  Each test makes a home of its own, owned by a
user id no process here has, and changes it as that user.
"""

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

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
        found.append((str(entry.relative_to(path)), stat.S_IFMT(st.st_mode),
                      stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, what))
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


def test_a_link_swapped_in_while_root_makes_a_directory_is_not_followed(a_home, monkeypatch):
    """The race a process of the user's may win: a directory root has just made again
    is swapped for a link before root makes what goes in it.  What goes in it is not
    made (said so), nor made where the link points."""
    copy = home.HomeCopy(str(a_home), UID)
    victim = Path(tempfile.mkdtemp(prefix="zk-victim-"))
    as_user("rm -r d", a_home)
    made = os.mkdir

    def mkdir_then_swapped(name, mode=0o777, *, dir_fd=None):
        made(name, mode, dir_fd=dir_fd)
        if name == "d":
            os.rename("d", "d.swapped", src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
            os.symlink(victim, "d", dir_fd=dir_fd)

    monkeypatch.setattr(home.os, "mkdir", mkdir_then_swapped)
    try:
        said = copy.put_back()
        assert list(victim.iterdir()) == [], "root made the directory's files through a link"
        assert any("d/e (could not be put back" in line for line in said), said
    finally:
        subprocess.run(["rm", "-rf", str(victim)], check=True)
