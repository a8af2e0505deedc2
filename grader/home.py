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
changed or went is made again, with its extended attributes (xattr(7): an ACL, a
file capability), and a file's other names (hard links) linked to it again.  A
directory's xattrs are looked at every time (a default ACL changes nothing else of
it: its ctime changes with each entry made in it too).

Root works where the user may write, while other processes of the user's may run
(another terminal's).  So root never follows a link there: every step is taken
relative to a directory's descriptor, each directory opened with O_NOFOLLOW
(openat(2)); an entry is made again in a directory of root's alone (mode 0700) in
the home, its owner and mode set there, and only then renamed into its place
(rename(2)): nothing root sets the owner or mode of can be swapped meanwhile.
Removing is rm(1)'s, which walks a tree by descriptors (fts(3)).

Standard library only: it runs with the guest's Debian python3.
"""

import contextlib
import errno
import os
import secrets
import stat
import subprocess
from typing import NamedTuple

# A home larger than this is not kept (the check's log says so): its copy is held in
# the runner's memory, and it is listed after every check.
HOME_ENTRIES = 10000
HOME_BYTES = 64 << 20  # the files' contents and the links' targets
HOME_NAME_BYTES = 16 << 20  # the entries' paths, one after the other
HOME_DEPTH = 100  # directories inside directories
PASSES = 4  # put_back lists the home again after its work, at most this many times
SAID_AT_MOST = 10  # paths named in what put_back says; then how many more
REMOVE_SECONDS = 120  # for rm -rf of what a check left (a million files, say)
DIRECTORY = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
STAGE_PREFIX = ".zk-grader-put-back-"  # root's directory in the home, while it works


class TooBig(Exception):
    pass


class Entry(NamedTuple):
    """What the copy holds of one entry: enough to make it again."""

    kind: str  # "directory", "file", "link" or "fifo" (listing leaves out the others)
    mode: int  # its permission bits, setuid and sticky included (stat.S_IMODE)
    uid: int
    gid: int
    mtime_ns: int
    data: bytes | str | None  # a file's contents (None: it could not be read), a link's target
    # A file's or directory's extended attributes (xattr(7): ACLs, file capabilities,
    # user.*), (name, value) sorted by name.
    xattrs: tuple[tuple[str, bytes], ...] = ()


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


def parent_and_name(path: str) -> tuple[str, str]:
    parent, _, name = path.rpartition("/")
    return parent, name


def is_below(path: str, paths: set[str]) -> bool:
    """Is path one of paths, or inside one of them?"""
    while path:
        if path in paths:
            return True
        path = parent_and_name(path)[0]
    return False


def ancestors(paths) -> set[str]:
    """Every directory that holds one of paths, and those paths."""
    found = set()
    for path in paths:
        while path:
            found.add(path)
            path = parent_and_name(path)[0]
    return found


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


def identity(at: int, path: str) -> tuple[int, int] | None:
    """(device, inode) of path relative to at, not following a link; None if none."""
    parent, name = parent_and_name(path)
    try:
        fd = open_directory(at, parent)
    except OSError:
        return None
    try:
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        return st.st_dev, st.st_ino
    except OSError:
        return None
    finally:
        os.close(fd)


def listing(at: int, skip: frozenset[str]) -> dict[str, os.stat_result]:
    """Every entry under the directory at, by its path relative to it ('a/b'), as
    lstat(2) tells of it; not below a link, nor anything of another file system (a
    mount point, itself not listed either) or one of skip's paths; no socket (its
    program's, made again by it) nor device.  TooBig past HOME_ENTRIES entries
    (told as a directory is read: a million names are never held), HOME_NAME_BYTES
    of paths or HOME_DEPTH levels."""
    found: dict[str, os.stat_result] = {}
    device, name_bytes, seen = os.fstat(at).st_dev, 0, 0
    todo = [""]  # directories to list, as paths: a descriptor each would be too many
    while todo:
        prefix = todo.pop()
        try:
            fd = open_directory(at, prefix)
        except OSError:
            continue  # gone, or swapped for a link meanwhile: its parent shows that
        try:
            with os.scandir(fd) as entries:
                for entry in entries:
                    seen += 1
                    if seen > HOME_ENTRIES:
                        raise TooBig(f"more than {HOME_ENTRIES} files")
                    path = f"{prefix}/{entry.name}" if prefix else entry.name
                    try:
                        st = entry.stat(follow_symlinks=False)
                    except FileNotFoundError:
                        continue
                    # Nor what another file system shows (a FUSE mount of the user's,
                    # on a file or a directory): its owner and mode are whatever the
                    # user's daemon says, root's and setuid included.
                    if path in skip or kind_of(st.st_mode) == "other" or \
                            st.st_dev != device:
                        continue
                    found[path], name_bytes = st, name_bytes + len(path)
                    if name_bytes > HOME_NAME_BYTES or path.count("/") >= HOME_DEPTH:
                        raise TooBig(f"paths longer or deeper than {HOME_DEPTH} directories")
                    if stat.S_ISDIR(st.st_mode):
                        todo.append(path)
        finally:
            os.close(fd)
    return found


def read_entry(at: int, path: str, st: os.stat_result, budget: int) -> Entry:
    """The copy of one entry that listing found: a file's contents (None if it could
    not be read, or is no longer that file), a link's target.  TooBig when the
    contents are over budget (told by the size first: a sparse file is not read)."""
    kind, data, xattrs = kind_of(st.st_mode), None, ()
    if kind == "file" and st.st_size > budget:
        raise TooBig(f"more than {HOME_BYTES >> 20} MB")
    if kind in ("file", "link", "directory"):
        parent, name = parent_and_name(path)
        with contextlib.suppress(OSError):  # gone, changed, or held (a lease): not copied
            fd = open_directory(at, parent)
            try:
                if kind == "link":
                    data = os.readlink(name, dir_fd=fd)
                else:
                    xattrs = xattrs_of(fd, name, st)
                    budget -= sum(len(value) for _, value in xattrs)
                    if budget < 0:
                        raise TooBig(f"more than {HOME_BYTES >> 20} MB")
                    if kind == "file":
                        data = read_file(fd, name, st, budget)
            finally:
                os.close(fd)
    return Entry(kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, st.st_mtime_ns, data,
                 xattrs)


def open_entry(at: int, name: str, inode: int, directory: bool = False) -> int:
    """The file (or directory) name in the directory at, opened to read, if it is
    still that inode.  O_NONBLOCK: a FIFO swapped in meanwhile does not hold us, nor
    a file another process holds a lease on (open(2) fails instead)."""
    flags = DIRECTORY if directory else (
        os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    fd = os.open(name, flags, dir_fd=at)
    if os.fstat(fd).st_ino != inode:
        os.close(fd)
        raise OSError(f"{name} changed while it was copied")
    return fd


def xattrs_of(at: int, name: str, st: os.stat_result) -> tuple[tuple[str, bytes], ...]:
    """The extended attributes of name in the directory at, as Entry holds them."""
    fd = open_entry(at, name, st.st_ino, stat.S_ISDIR(st.st_mode))
    try:
        return xattrs_of_fd(fd)
    finally:
        os.close(fd)


def xattrs_of_fd(fd: int) -> tuple[tuple[str, bytes], ...]:
    """The extended attributes of what fd holds open, (name, value) sorted by name;
    none where the file system keeps none (ENOTSUP: a FUSE or CIFS home, say)."""
    found = []
    for key in listxattr(fd):
        with contextlib.suppress(OSError):  # ENODATA: removed since it was listed
            found.append((key, os.getxattr(fd, key)))
    return tuple(sorted(found))


def listxattr(fd: int) -> list[str]:
    """listxattr(2) of fd, empty where the file system has no extended attributes."""
    try:
        return os.listxattr(fd)
    except OSError as e:
        if e.errno in (errno.ENOTSUP, errno.EOPNOTSUPP):
            return []
        raise


def read_file(at: int, name: str, st: os.stat_result, budget: int) -> bytes:
    fd = open_entry(at, name, st.st_ino)
    try:
        with open(fd, "rb", closefd=False) as f:
            data = f.read(budget + 1)
        if len(data) > budget:
            raise TooBig(f"more than {HOME_BYTES >> 20} MB")
        return data
    finally:
        os.close(fd)


def remove_entries(at: int, names: list[str]) -> None:
    """rm -rf of each name in the directory at, never through a symbolic link: what is
    not a directory is unlinked here (a link itself, a FIFO: unlink(2) never opens
    it); the directories go with one rm(1) for them all (one exec: under TCG each
    costs a tenth of a second).  GNU rm walks a tree by fds (fts(3)), opening each
    directory with O_NOFOLLOW|O_DIRECTORY|O_NONBLOCK relative to its parent: the
    user's processes may swap a directory for a link or a FIFO meanwhile, and rm
    neither follows the one nor blocks on the other, however deep the tree.  What
    cannot be removed stays: the caller looks at what is left."""
    directories = []
    for name in names:
        try:
            os.unlink(name, dir_fd=at)
        except IsADirectoryError:  # unlink(2)'s EISDIR: Linux's answer for a directory
            directories.append(name)
        except OSError:
            pass  # gone already, or not ours to remove
    if directories:
        # Named through our fd of the directory, which rm inherits (proc(5)).
        paths = [f"/proc/self/fd/{at}/{name}" for name in directories]
        with contextlib.suppress(subprocess.TimeoutExpired):
            subprocess.run(["rm", "-rf", "--one-file-system", "--", *paths], pass_fds=(at,),
                           stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL, timeout=REMOVE_SECONDS)


class HomeCopy:
    """The home of user uid, as it was when made, put back by put_back().  Not kept
    (unavailable says why) when it is not a directory of the user's own, or holds
    more than HOME_ENTRIES files or HOME_BYTES bytes.  keep: paths inside it
    (absolute) left as they are, the runner's own (the submission, its results)."""

    def __init__(self, home: str, uid: int, keep: list[str] = ()):
        self.home, self.uid = home, uid
        real, kept = os.path.realpath(home), [os.path.realpath(path) for path in keep]
        self.keep = frozenset(os.path.relpath(path, real) for path in kept
                              if path != real and os.path.commonpath([real, path]) == real)
        self.keep_held = ancestors(self.keep)  # never removed: they hold the runner's
        self.kept: dict[str, tuple[int, int]] = {}  # the identity of each there now
        self.copy: dict[str, Entry] = {}
        self.original: dict[str, tuple] = {}  # unchanged_key of each entry when copied
        # A file's other names (hard links) in the home when copied, by path.
        self.links: dict[str, tuple[str, ...]] = {}
        self.made: dict[int, int] = {}  # while make_again works: an inode copied: its fd
        self.home_fd = -1  # while make_again works: the home's descriptor
        self.unavailable = ""
        self.trouble = ""  # why the last put_back left the home as it was not, if it did
        self.emptied = False  # the last pass emptied it (a flood): the next makes it again
        self.home_mode = self.home_owner = None
        self.home_xattrs: tuple[tuple[str, bytes], ...] = ()
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
            self.copy, self.original = {}, {}
        except OSError as e:  # not a file of it (read_entry skips those): the home itself
            self.unavailable = f"its home {home} could not be read ({e.strerror or e})"
            self.copy, self.original = {}, {}
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
        entries = listing(at, self.keep)
        budget = HOME_BYTES
        for path, st in entries.items():
            self.copy[path] = read_entry(at, path, st, budget)
            budget -= len(self.copy[path].data or "") + sum(
                len(value) for _, value in self.copy[path].xattrs)  # read_entry kept it >= 0
        self.original = {path: unchanged_key(st) for path, st in entries.items()}
        names: dict[int, list[str]] = {}
        for path, st in entries.items():
            if stat.S_ISREG(st.st_mode) and st.st_nlink > 1:
                names.setdefault(st.st_ino, []).append(path)
        self.links = {path: tuple(sorted(group)) for group in names.values() if len(group) > 1
                      for path in group}
        self.kept = {path: found for path in self.keep
                     if (found := identity(at, path)) is not None}
        home = os.fstat(at)
        self.home_mode, self.home_owner = stat.S_IMODE(home.st_mode), (home.st_uid, home.st_gid)
        self.home_xattrs = xattrs_of_fd(at)

    def put_back(self) -> list[str]:
        """The home as it was: what is new removed, what changed or went made again
        from the copy, until a pass finds nothing to do (at most PASSES).  What was
        done, said (empty when nothing changed); self.trouble says why the home is not
        as it was, if it is not."""
        self.trouble, self.emptied = "", False
        if self.unavailable:
            return []
        try:
            at = self.open_home()
        except OSError as e:
            self.trouble = f"the home {self.home}: {e.strerror or e}"
            return []
        if at is None:
            self.trouble = f"the home {self.home} is no longer the user's directory"
            return []
        said: list[str] = []
        try:
            if self.kept_moved(at):  # a name of ours may be the user's: nothing removed
                return []
            for _ in range(PASSES):
                done = self.one_pass(at)
                said += [line for line in done if line not in said]
                if self.kept_moved(at) or not done or self.trouble:
                    break
            else:
                self.trouble = (f"the home {self.home} kept changing while it was put back "
                                "(another process of the user's?)")
            return said
        except (OSError, TooBig, subprocess.SubprocessError) as e:
            self.trouble = self.trouble or f"the home {self.home} could not be put back ({e})"
            return said
        finally:
            os.close(at)

    def kept_moved(self, at: int) -> bool:
        """Is one of the runner's own files no longer where it was (self.trouble)?"""
        moved = sorted(path for path, was in self.kept.items() if identity(at, path) != was)
        if moved:
            self.trouble = self.trouble or (
                f"the grader's own {self.home}/{shown(moved[0])} was moved or removed: "
                "the home not put back")
        return bool(moved)

    def one_pass(self, at: int) -> list[str]:
        """Compare the home with the copy, and undo what differs: said."""
        said = self.home_itself(at)
        emptied, self.emptied = self.emptied, False  # the pass before emptied it
        try:
            now = listing(at, self.keep)
        except TooBig as e:  # a flood of files: all but the runner's go, the copy comes back
            self.remove_all_but_kept(at)
            self.emptied = True
            return said + [f"the home {self.home} (it held {e}: emptied, made again)"]
        if self.kept_moved(at):  # while it was listed: what is new may be the runner's
            return said
        new = sorted(p for p in now if p not in self.copy)
        changed = sorted(p for p in now if p in self.copy and not self.as_copied(at, p, now[p]))
        gone = sorted(p for p in self.copy if p not in now)
        if not (new or changed or gone):
            return said
        # A directory whose mode or owners changed is set back; anything else that
        # changed goes, with all below it, and is made again from the copy.  A file
        # that could not be copied (a lease) and changed goes too, and one removed
        # stays so: neither can be made again, and neither is looked for any more.
        fixed = {p for p in changed if stat.S_ISDIR(now[p].st_mode)
                 and self.copy[p].kind == "directory"}
        doomed = top_most([p for p in new + changed
                           if p not in fixed and p not in self.keep_held])
        self.remove(at, doomed)
        removed = set(doomed)
        uncopied = [p for p in self.copy if self.copy[p].kind == "file"
                    and self.copy[p].data is None
                    and (p in changed or p not in now or is_below(p, removed))]
        for path in uncopied:
            del self.copy[path]
        failed = self.make_again(at, top_most([p for p in self.copy
                                               if p not in now or is_below(p, removed)]))
        for path in sorted(fixed):
            failed.update(self.set_attributes(at, path, now[path].st_ino))
        if failed:  # the next check would find the home as it was not
            path, why = sorted(failed.items())[0]
            self.trouble = f"{self.home}/{shown(path)} could not be put back ({why})"
        made_again = [p for p in gone if p not in failed and p not in uncopied
                      and not emptied]
        return (said + described(self.home, new, "new: removed")
                + described(self.home, [p for p in changed if p not in uncopied],
                            "changed: put back")
                + described(self.home, [p for p in changed if p in uncopied],
                            "changed: removed, no copy was kept of it")
                + described(self.home, [p for p in gone if p in uncopied],
                            "removed: no copy was kept of it to make again")
                + described(self.home, made_again, "removed: made again")
                + [f"{self.home}/{shown(p)} (could not be put back: {why})"
                   for p, why in sorted(failed.items())])

    def as_copied(self, at: int, path: str, st: os.stat_result) -> bool:
        """Is the entry at path as the copy has it?  Untouched since (the same inode,
        times and all), or, one root made again, the same kind, mode, owners and
        contents (a file read again, a link's target).  A directory's xattrs are read
        again each time: no time of its tells of them alone."""
        if unchanged_key(st) == self.original.get(path) and not stat.S_ISDIR(st.st_mode):
            return True
        entry = self.copy[path]
        if (kind_of(st.st_mode), stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) != (
                entry.kind, entry.mode, entry.uid, entry.gid):
            return False
        if entry.kind == "fifo":
            return True
        if entry.kind == "file" and (entry.data is None or st.st_size != len(entry.data)):
            return False
        parent, name = parent_and_name(path)
        try:
            fd = open_directory(at, parent)
            try:
                if entry.kind == "link":
                    return os.readlink(name, dir_fd=fd) == entry.data
                if xattrs_of(fd, name, st) != entry.xattrs:
                    return False
                # A directory's entries are looked at themselves.
                return entry.kind == "directory" or \
                    read_file(fd, name, st, len(entry.data)) == entry.data
            finally:
                os.close(fd)
        except (OSError, TooBig):
            return False

    def home_itself(self, at: int) -> list[str]:
        """The home directory's own mode, owners and xattrs, set back."""
        home = os.fstat(at)
        if (stat.S_IMODE(home.st_mode), (home.st_uid, home.st_gid), xattrs_of_fd(at)) == (
                self.home_mode, self.home_owner, self.home_xattrs):
            return []
        set_descriptor(at, Entry("directory", self.home_mode, *self.home_owner, 0, None,
                                 self.home_xattrs))
        return [f"{self.home} itself: its mode, owners or xattrs (changed: put back)"]

    def remove(self, at: int, paths: list[str]) -> None:
        """rm -rf of each path relative to at (remove_in, one call a directory), each
        parent opened without following a link."""
        by_parent: dict[str, list[str]] = {}
        for path in paths:
            parent, name = parent_and_name(path)
            by_parent.setdefault(parent, []).append(name)
        for parent, names in sorted(by_parent.items()):
            try:
                fd = open_directory(at, parent)
            except OSError:
                continue  # its parent went or was swapped for a link: nothing of ours there
            try:
                self.remove_in(fd, names)
            finally:
                os.close(fd)

    def remove_in(self, at: int, names: list[str]) -> None:
        """remove_entries of names in the directory at, but never one of the runner's
        own files, renamed there by the user (kept_moved tells of it after)."""
        kept = set(self.kept.values())
        remove_entries(at, [name for name in names if identity(at, name) not in kept])

    def remove_all_but_kept(self, at: int) -> None:
        """Everything in the home but the runner's own files and what holds them, read
        and removed a thousand names at a time."""
        for prefix in sorted(ancestors(self.keep) - self.keep | {""}):
            try:
                fd = open_directory(at, prefix)
            except OSError:
                continue
            try:
                with os.scandir(fd) as entries:
                    names = []
                    for entry in entries:
                        path = f"{prefix}/{entry.name}" if prefix else entry.name
                        if path not in self.keep_held:
                            names.append(entry.name)
                        if len(names) == 1000:
                            self.remove_in(fd, names)
                            names = []
                    self.remove_in(fd, names)
            finally:
                os.close(fd)

    def set_attributes(self, at: int, path: str, inode: int) -> dict[str, str]:
        """A directory's mode and owners set back, if it still is that directory."""
        try:
            parent, name = parent_and_name(path)
            fd = open_directory(at, parent)
            try:
                made = os.open(name, DIRECTORY, dir_fd=fd)
            finally:
                os.close(fd)
            try:
                if os.fstat(made).st_ino != inode:
                    raise OSError("replaced meanwhile")
                set_descriptor(made, self.copy[path])
            finally:
                os.close(made)
            return {}
        except OSError as e:
            return {path: e.strerror or str(e)}

    def make_again(self, at: int, paths: list[str]) -> dict[str, str]:
        """Each of paths, with all the copy holds below it, made in a directory of
        root's alone in the home, then renamed into its place.  What could not be
        made, and why."""
        if not paths:
            return {}
        children: dict[str, list[str]] = {}
        for path in self.copy:
            children.setdefault(parent_and_name(path)[0], []).append(path)
        failed = {}
        stage_name = STAGE_PREFIX + secrets.token_hex(8)
        os.mkdir(stage_name, 0o700, dir_fd=at)
        stage = os.open(stage_name, DIRECTORY, dir_fd=at)
        self.home_fd = at
        try:
            made = os.fstat(stage)  # just made, unless the user swapped another in
            if ((made.st_uid, stat.S_IMODE(made.st_mode)) != (os.geteuid(), 0o700)
                    or os.listdir(stage) or (made.st_dev, made.st_ino) in self.kept.values()):
                raise OSError(f"{stage_name} is not the grader's")
            for path in paths:
                try:
                    self.build(stage, "entry", path, children)
                    parent, name = parent_and_name(path)
                    fd = open_directory(at, parent)
                    try:
                        os.rename("entry", name, src_dir_fd=stage, dst_dir_fd=fd)
                    finally:
                        os.close(fd)
                except OSError as e:
                    failed[path] = e.strerror or str(e)
                    remove_entries(stage, ["entry"])
                    self.forget_made()  # some may be of what was just removed
        finally:
            with contextlib.suppress(OSError):  # if it is still ours, and empty
                if os.stat(stage_name, dir_fd=at, follow_symlinks=False).st_ino == \
                        os.fstat(stage).st_ino:
                    os.rmdir(stage_name, dir_fd=at)
            os.close(stage)
            self.forget_made()
            self.home_fd = -1
        return failed

    def forget_made(self) -> None:
        for fd in self.made.values():
            os.close(fd)
        self.made = {}

    def made_as(self, path: str) -> int | None:
        """A descriptor of the file path was a hard link of when copied, if one is
        made again already or still in its place (the same inode as then); None."""
        inode = self.original[path][0]
        if inode in self.made:
            return self.made[inode]
        for other in self.links.get(path, ()):
            parent, name = parent_and_name(other)
            with contextlib.suppress(OSError):  # gone, or another inode now
                fd = open_directory(self.home_fd, parent)
                try:
                    self.made[inode] = open_entry(fd, name, inode)
                    return self.made[inode]
                finally:
                    os.close(fd)
        return None

    def build(self, at: int, name: str, path: str, children: dict[str, list[str]]) -> None:
        """path's copy made as name in the directory at (root's alone), and all below
        it: owners, modes and times set by name are safe there."""
        entry = self.copy[path]
        times = (entry.mtime_ns, entry.mtime_ns)
        if entry.kind == "directory":
            os.mkdir(name, 0o700, dir_fd=at)
            fd = os.open(name, DIRECTORY, dir_fd=at)
            try:
                for below in sorted(children.get(path, [])):
                    self.build(fd, parent_and_name(below)[1], below, children)
                set_descriptor(fd, entry)
                os.utime(fd, ns=times)
            finally:
                os.close(fd)
        elif entry.kind == "file" and (linked := self.made_as(path)) is not None:
            # Another name of the inode made (or kept): through our descriptor of it
            # (proc(5)'s /proc/self/fd, followed as linkat(2)'s AT_SYMLINK_FOLLOW), no
            # path the user could swap.
            os.link(f"/proc/self/fd/{linked}", name, dst_dir_fd=at)
        elif entry.kind == "file" and entry.data is not None:
            fd = os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW
                         | os.O_CLOEXEC, 0o600, dir_fd=at)
            try:
                with open(fd, "wb", closefd=False) as f:
                    f.write(entry.data)
                set_descriptor(fd, entry)
                os.utime(fd, ns=times)
                if path in self.links:  # its other names link to it
                    self.made[self.original[path][0]] = os.dup(fd)
            finally:
                os.close(fd)
        elif entry.kind == "link":
            os.symlink(entry.data, name, dir_fd=at)
            os.chown(name, entry.uid, entry.gid, dir_fd=at, follow_symlinks=False)
            os.utime(name, ns=times, dir_fd=at, follow_symlinks=False)
        elif entry.kind == "fifo":
            os.mkfifo(name, 0o600, dir_fd=at)
            os.chown(name, entry.uid, entry.gid, dir_fd=at)
            os.chmod(name, entry.mode, dir_fd=at)
            os.utime(name, ns=times, dir_fd=at)
        else:  # a file that could not be read when the copy was made
            raise OSError("no copy was kept of it")


def set_descriptor(fd: int, entry: Entry) -> None:
    """Owners, mode, then extended attributes: chown(2) clears the setuid and setgid
    bits and a file's capabilities (capabilities(7)), and an ACL sets the mode's
    group bits (acl(5)) as they were with it."""
    os.fchown(fd, entry.uid, entry.gid)
    os.fchmod(fd, entry.mode)
    for key in set(listxattr(fd)) - {key for key, _ in entry.xattrs}:
        os.removexattr(fd, key)
    for key, value in entry.xattrs:
        os.setxattr(fd, key, value)


def shown(path: str) -> str:
    """A path in a log line: a newline or another control character escaped."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in path)


def described(home: str, paths: list[str], what: str) -> list[str]:
    said = [f"{home}/{shown(path)} ({what})" for path in top_most(paths)]
    return said[:SAID_AT_MOST] + ([f"{len(said) - SAID_AT_MOST} more ({what})"]
                                  if said[SAID_AT_MOST:] else [])


def top_most(paths: list[str]) -> list[str]:
    """paths but those inside another of them: a new directory, not each file in it."""
    kept: set[str] = set()
    for path in sorted(paths):
        if not is_below(path, kept):
            kept.add(path)
    return sorted(kept)
