"""A user's home, as the grader's cleanup puts it back after each check.

Daemons of root's read files in a user's home and act on them as that user, on the
user's own say: sshd lets in whoever holds a key in ~/.ssh/authorized_keys (and runs
~/.ssh/rc), a mail server pipes mail to the program ~/.forward names, rshd trusts
~/.rhosts, a Python run with that home as HOME loads a .pth in ~/.local.  A check's
commands run as the user with a HOME of the check's own, but may still write in the
user's real home by its path; what they leave there would serve a later check: with
--local, the next student's.  HomeCopy keeps the home as it was when the runner's
first check ran a command as the user (in memory: a home kept for grading is small),
and after each check puts back what changed there: what is new is removed, what
changed or went is made again.

Root works where the user may write, while other processes of the user's may run
(another terminal's): every step is taken relative to a directory's descriptor, each
directory opened with O_NOFOLLOW, each file made with O_EXCL (openat(2)), so that a
link put in a directory's place is never followed.

Standard library only: it runs with the guest's Debian python3.
"""

import contextlib
import os
import stat
import subprocess
from typing import NamedTuple

# A home larger than this is not kept (the check's log says so): its copy is held in
# the runner's memory, and it is listed after every check.
HOME_ENTRIES = 10000
HOME_BYTES = 64 << 20
SAID_AT_MOST = 10  # paths named in what put_back says; then how many more
REMOVE_SECONDS = 60
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


class TooBig(Exception):
    pass


class Entry(NamedTuple):
    """What the copy holds of one entry: enough to make it again."""

    kind: str  # "directory", "file", "link", "fifo", or "other" (a socket, a device)
    mode: int  # its permission bits, setuid and sticky included (stat.S_IMODE)
    uid: int
    gid: int
    mtime_ns: int
    data: bytes | str | None  # a file's contents, a link's target


def kind_of(mode: int) -> str:
    if stat.S_ISDIR(mode):
        return "directory"
    if stat.S_ISREG(mode):
        return "file"
    if stat.S_ISLNK(mode):
        return "link"
    if stat.S_ISFIFO(mode):
        return "fifo"
    return "other"


def unchanged_key(st: os.stat_result) -> tuple:
    """What tells that an entry was not touched: the same inode, with the same type,
    mode and owners, and, but for a directory (whose times change with its entries,
    looked at themselves), the same size and times.  ctime is the kernel's: no one
    sets it back (utimensat(2) sets the others)."""
    same = (st.st_ino, stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
    if stat.S_ISDIR(st.st_mode):
        return same
    return same + (st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def open_directory(at: int, path: str) -> int:
    """A descriptor of the directory path, relative to at ('' is at itself), opened
    one component at a time without following a link."""
    fd = os.dup(at)
    for name in filter(None, path.split("/")):
        try:
            below = os.open(name, DIRECTORY, dir_fd=fd)
        finally:
            os.close(fd)
        fd = below
    return fd


def parent_and_name(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent, name


def listing(at: int, skip: frozenset[str]) -> dict[str, os.stat_result]:
    """Every entry under the directory at, by its path relative to it ('a/b'), as
    lstat(2) tells of it; not below a link, another file system's directory (a mount
    point) or one of skip's paths (the runner's own files), which is not listed
    either.  TooBig past HOME_ENTRIES."""
    found: dict[str, os.stat_result] = {}
    device = os.fstat(at).st_dev
    todo = [""]  # directories to list, as paths: a descriptor each would be too many
    while todo:
        prefix = todo.pop()
        try:
            fd = open_directory(at, prefix)
        except OSError:
            continue  # gone, or swapped for a link meanwhile: its parent shows that
        try:
            names = sorted(os.listdir(fd))
            for name in names:
                path = f"{prefix}/{name}" if prefix else name
                if path in skip:
                    continue
                with contextlib.suppress(FileNotFoundError):
                    found[path] = st = os.stat(name, dir_fd=fd, follow_symlinks=False)
                    if len(found) > HOME_ENTRIES:
                        raise TooBig(f"more than {HOME_ENTRIES} files")
                    if stat.S_ISDIR(st.st_mode) and st.st_dev == device:
                        todo.append(path)
        finally:
            os.close(fd)
    return found


def read_entry(at: int, path: str, st: os.stat_result) -> Entry:
    """The copy of one entry that listing found: a file's contents (read only if it is
    still that file), a link's target."""
    kind, data = kind_of(st.st_mode), None
    if kind in ("file", "link"):
        parent, name = parent_and_name(path)
        fd = open_directory(at, parent)
        try:
            if kind == "link":
                data = os.readlink(name, dir_fd=fd)
            else:
                data = read_file(fd, name, st)
        finally:
            os.close(fd)
    return Entry(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, data)


def read_file(at: int, name: str, st: os.stat_result) -> bytes:
    # O_NONBLOCK: a FIFO swapped in meanwhile does not hold us (the inode is compared).
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=at)
    try:
        if os.fstat(fd).st_ino != st.st_ino:
            raise OSError(f"{name} changed while it was copied")
        with open(fd, "rb", closefd=False) as f:
            return f.read()
    finally:
        os.close(fd)


class HomeCopy:
    """The home of user uid, as it was when made, put back by put_back().  Not kept
    (unavailable says why) when it is not a directory of the user's own, or holds
    more than HOME_ENTRIES files or HOME_BYTES bytes.  skip: paths inside it (absolute)
    that are left as they are, the runner's own (its results, its logs)."""

    def __init__(self, home: str, uid: int, skip: list[str] = ()):
        self.home, self.uid = home, uid
        real, kept = os.path.realpath(home), [os.path.realpath(path) for path in skip]
        self.skip = frozenset(os.path.relpath(path, real) for path in kept
                              if path != real and os.path.commonpath([real, path]) == real)
        self.copy: dict[str, Entry] = {}
        self.before: dict[str, tuple] = {}
        self.unavailable = ""
        self.home_mode = self.home_owner = None
        if real in kept:
            self.unavailable = f"its home {home} is where the grader's own files are"
            return
        try:
            at = self.open_home()
        except OSError as e:
            self.unavailable = f"the home of uid {uid}, {home}: {e.strerror or e}"
            return
        if at is None:
            self.unavailable = f"{home} is not the user's own directory"
            return
        try:
            self.take(at)
        except TooBig as e:
            self.unavailable = f"its home {home} holds {e}: not kept, nor put back"
            self.copy, self.before = {}, {}
        except OSError as e:
            self.unavailable = f"its home {home} could not be copied ({e})"
            self.copy, self.before = {}, {}
        finally:
            os.close(at)

    def open_home(self) -> int | None:
        """The home's descriptor; None when it is not a directory of the user's."""
        at = os.open(self.home, DIRECTORY)
        if os.fstat(at).st_uid != self.uid:
            os.close(at)
            return None
        return at

    def take(self, at: int) -> None:
        entries = listing(at, self.skip)
        size = 0
        for path, st in entries.items():
            self.copy[path] = read_entry(at, path, st)
            size += len(self.copy[path].data or "")
            if size > HOME_BYTES:
                raise TooBig(f"more than {HOME_BYTES >> 20} MB")
        self.before = {path: unchanged_key(st) for path, st in entries.items()}
        home = os.fstat(at)
        self.home_mode, self.home_owner = stat.S_IMODE(home.st_mode), (home.st_uid, home.st_gid)

    def put_back(self) -> list[str]:
        """The home as it was: what is new removed, what changed or went made again
        from the copy.  What was done, said (empty when nothing changed)."""
        if self.unavailable:
            return []
        try:
            at = self.open_home()
        except OSError as e:
            return [f"the home {self.home} ({e.strerror or e}: not put back)"]
        if at is None:
            return [f"the home {self.home} (no longer the user's directory: not put back)"]
        try:
            return self.put_back_in(at)
        except (OSError, TooBig, subprocess.SubprocessError) as e:  # said in the check's log
            return [f"the home {self.home} (could not be put back: {e})"]
        finally:
            os.close(at)

    def put_back_in(self, at: int) -> list[str]:
        said = self.home_itself(at)
        try:
            now = listing(at, self.skip)
        except TooBig as e:  # a flood of files: all but the runner's go, the copy comes back
            said.append(f"the home {self.home} (it held {e}: emptied, made again)")
            remove_paths(at, [name for name in sorted(os.listdir(at))
                              if not any(is_below(p, {name}) for p in self.skip)])
            now = listing(at, self.skip)
        new = sorted(p for p in now if p not in self.before)
        changed = sorted(p for p in now if p in self.before
                         and unchanged_key(now[p]) != self.before[p])
        gone = sorted(p for p in self.before if p not in now)
        if not (new or changed or gone or said):
            return []
        # A directory whose mode or owners changed is set back; anything else that
        # changed goes, with all below it, and is made again from the copy.
        fixed = [p for p in changed if self.only_attributes_changed(p, now[p])]
        removed = remove_paths(at, sorted(set(new + changed) - set(fixed)))
        failed = []
        for path in sorted(self.copy):
            if path in fixed:
                failed += self.attempt(path, set_attributes, at, path, self.copy[path])
            elif path not in now or is_below(path, removed):
                failed += self.attempt(path, make_entry, at, path, self.copy[path])
        self.before = {path: unchanged_key(st) for path, st in listing(at, self.skip).items()}
        # A socket or a device is its program's to make again, not ours.
        gone = [p for p in gone if self.copy[p].kind != "other"]
        return said + described(self.home, new, "new: removed") + described(
            self.home, changed, "changed: put back") + described(
            self.home, gone, "removed: made again") + failed

    def only_attributes_changed(self, path: str, st: os.stat_result) -> bool:
        before = self.before[path]
        return stat.S_ISDIR(st.st_mode) and self.copy[path].kind == "directory" and (
            st.st_ino == before[0])

    def home_itself(self, at: int) -> list[str]:
        """The home directory's own mode and owners, set back."""
        home = os.fstat(at)
        if (stat.S_IMODE(home.st_mode), (home.st_uid, home.st_gid)) == (
                self.home_mode, self.home_owner):
            return []
        os.fchown(at, *self.home_owner)
        os.fchmod(at, self.home_mode)
        return [f"the mode of {self.home} (changed: put back)"]

    def attempt(self, path: str, fn, *args) -> list[str]:
        try:
            fn(*args)
            return []
        except OSError as e:  # another process of the user's made it meanwhile, say
            return [f"{self.home}/{path} (could not be put back: {e.strerror or e})"]


def is_below(path: str, paths: set[str]) -> bool:
    """Is path one of paths, or inside one of them?"""
    parent = path
    while parent:
        if parent in paths:
            return True
        parent = parent_and_name(parent)[0]
    return False


def remove_paths(at: int, paths: list[str]) -> set[str]:
    """rm -rf of each path relative to at, never through a link (each parent opened
    with O_NOFOLLOW; GNU rm walks a tree by descriptors, fts(3)); what is below a
    path already removed is skipped.  The paths removed."""
    removed: set[str] = set()
    for path in paths:
        if is_below(path, removed):
            continue
        parent, name = parent_and_name(path)
        try:
            fd = open_directory(at, parent)
        except OSError:
            continue  # its parent went or was swapped for a link: nothing of ours there
        try:
            try:
                os.unlink(name, dir_fd=fd)
            except IsADirectoryError:  # unlink(2)'s EISDIR: Linux's answer for one
                # Named through our descriptor of its parent, which rm inherits (proc(5)).
                subprocess.run(["rm", "-rf", "--one-file-system", "--",
                                f"/proc/self/fd/{fd}/{name}"], pass_fds=(fd,),
                               stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL, timeout=REMOVE_SECONDS)
            except FileNotFoundError:
                pass
        finally:
            os.close(fd)
        removed.add(path)
    return removed


def make_entry(at: int, path: str, entry: Entry) -> None:
    """path made anew from its copy, relative to at: O_EXCL, never through a link."""
    parent, name = parent_and_name(path)
    fd = open_directory(at, parent)
    try:
        if entry.kind == "directory":
            os.mkdir(name, 0o700, dir_fd=fd)
            with_descriptor(fd, name, DIRECTORY, entry)
        elif entry.kind == "file":
            made = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                           | os.O_CLOEXEC, 0o600, dir_fd=fd)
            try:
                with open(made, "wb", closefd=False) as f:
                    f.write(entry.data)
                set_descriptor(made, entry)
                os.utime(made, ns=(entry.mtime_ns, entry.mtime_ns))
            finally:
                os.close(made)
        elif entry.kind == "link":
            os.symlink(entry.data, name, dir_fd=fd)
            os.chown(name, entry.uid, entry.gid, dir_fd=fd, follow_symlinks=False)
        elif entry.kind == "fifo":
            os.mkfifo(name, 0o600, dir_fd=fd)
            # Opened to set its mode: chmod by name would follow a link swapped in.
            with_descriptor(fd, name, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW
                            | os.O_CLOEXEC, entry)
        # "other": a socket, a device: its program makes it again, not we.
    finally:
        os.close(fd)


def set_attributes(at: int, path: str, entry: Entry) -> None:
    """A directory's mode and owners set back."""
    parent, name = parent_and_name(path)
    fd = open_directory(at, parent)
    try:
        with_descriptor(fd, name, DIRECTORY, entry)
    finally:
        os.close(fd)


def with_descriptor(at: int, name: str, flags: int, entry: Entry) -> None:
    fd = os.open(name, flags, dir_fd=at)
    try:
        set_descriptor(fd, entry)
    finally:
        os.close(fd)


def set_descriptor(fd: int, entry: Entry) -> None:
    """Owners, then mode: chown(2) clears the setuid and setgid bits."""
    os.fchown(fd, entry.uid, entry.gid)
    os.fchmod(fd, entry.mode)


def described(home: str, paths: list[str], what: str) -> list[str]:
    said = [f"{home}/{path} ({what})" for path in top_most(paths)]
    return said[:SAID_AT_MOST] + ([f"{len(said) - SAID_AT_MOST} more ({what})"]
                                  if said[SAID_AT_MOST:] else [])


def top_most(paths: list[str]) -> list[str]:
    """paths but those inside another of them: a new directory, not each file in it."""
    kept: set[str] = set()
    for path in sorted(paths):
        if not is_below(path, kept):
            kept.add(path)
    return sorted(kept)
