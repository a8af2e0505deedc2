"""/etc/subuid and /etc/subgid (subuid(5)): the users' subordinate id ranges.

The grader's reader of them.  image.py reads them on the host, to build the VM image as
its user.  It stands apart from image.py so that the runner can read them with it in the
guest, to know what a student's id maps should be: the guest gets every module of
grader/ but the VM's own (image.py, qemu.py, vm.py).  zookeeper reads them too
(src/idmap.py), but the grader never imports the code it grades: a student's tree has
its own copy, right or wrong.
"""

from __future__ import annotations

from pathlib import Path


def entries(kind: str = "subuid", path: Path | None = None) -> list[tuple[str, int, int]]:
    """The lines of /etc/subuid (kind "subgid": /etc/subgid; or path) as (owner, start,
    count), the owner a user's name or uid: 'owner:start:count', numbers only; none
    without the file."""
    try:
        lines = (path or Path(f"/etc/{kind}")).read_text().splitlines()
    except OSError:
        return []
    fields = [line.strip().split(":") for line in lines]
    return [(f[0], int(f[1]), int(f[2])) for f in fields
            if len(f) == 3 and f[1].isdigit() and f[2].isdigit()]


def first_range(kind: str, user: str, uid: int, at_least: int = 1,
                path: Path | None = None) -> tuple[int, int] | None:
    """(start, count) of the user's first range (named by name or uid) of at least
    `at_least` ids, or None."""
    return next(((start, count) for owner, start, count in entries(kind, path)
                 if owner in (user, str(uid)) and count >= at_least), None)
