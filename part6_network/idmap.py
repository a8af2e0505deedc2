"""Id maps: which host users the container's users are.  See user_namespaces(7).

A new user namespace starts with no ids mapped.  Its creator's parent writes
/proc/PID/uid_map and gid_map, one line per range: "inside outside count".
Root in the container (0) becomes the caller; 1..N become the caller's
subordinate range from /etc/subuid and /etc/subgid (subuid(5)), which only the
setuid helpers newuidmap(1) and newgidmap(1) may grant.

Run by root, zookeeper maps the container's ids to root's own subordinate range
only: root in the container is then an ordinary user of the host (as podman's
--userns=auto does), and what it may touch outside is what any user may.
"""

import errno
import os
import pwd

import kernel
import programs
from errors import ZooError, step, warn


def subid_range(path: str, user: str, uid: int):
    """The first 'user:start:count' (or 'uid:start:count') line of path, as (start, count)."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        return None
    for line in lines:
        fields = line.strip().split(":")
        if len(fields) == 3 and fields[0] in (user, str(uid)) and all(
                x.isdigit() for x in fields[1:]) and int(fields[2]) > 0:
            return int(fields[1]), int(fields[2])
    return None


def map_arguments(own_id: int, subrange) -> list[str]:
    """newuidmap's triplets: container root -> us, then 1..count -> our range.
    For root, 0..count-1 -> its range: the host's root is not in the container."""
    start, count = subrange
    if own_id == 0:
        return ["0", str(start), str(count)]
    return ["0", str(own_id), "1", "1", str(start), str(count)]


class IdMaps:
    """Whom the container's ids map to: our user and group, and our subordinate
    ranges as (start, count), None when /etc/subuid or /etc/subgid has none."""

    def __init__(self, uid: int, gid: int, subuids, subgids):
        self.uid, self.gid, self.subuids, self.subgids = uid, gid, subuids, subgids


def is_host_root() -> bool:
    """Root of the host, not root of some user namespace (whose uid_map is not the
    identity over all ids: user_namespaces(7))."""
    if os.geteuid() != 0:
        return False
    try:
        with open("/proc/self/uid_map") as f:
            return f.read().split() == ["0", "0", "4294967295"]
    except OSError:
        return True


def unmapped_id(uid: int, gid: int) -> str:
    """'user id 65534' when ours has no mapping in the user namespace we run in (an
    unmapped id reads as the overflow id: unshare -U without -r), else ''."""
    for kind, own, path in (("user", uid, "/proc/self/uid_map"),
                            ("group", gid, "/proc/self/gid_map")):
        try:
            with open(path) as f:
                ranges = [[int(x) for x in line.split()] for line in f if line.strip()]
        except (OSError, ValueError):
            continue
        if not any(inside <= own < inside + count for inside, _, count in ranges):
            return f"{kind} id {own}"
    return ""


def find_id_maps() -> IdMaps:
    """Look up our ranges and the tools that grant them, before there is a child to
    wait on us: a missing range is a warning, a missing tool an error."""
    uid, gid = os.getuid(), os.getgid()
    unmapped = unmapped_id(uid, gid)
    if unmapped:
        # The kernel refuses a new user namespace to a process whose ids its own
        # namespace does not map (user_namespaces(7)).
        raise ZooError(f"your {unmapped} has no mapping in the user namespace zookeeper "
                       "runs in (/proc/self/uid_map, gid_map): the kernel refuses it a new "
                       "one; run zookeeper outside `unshare -U`, or with your id mapped "
                       "(unshare -r)")
    if uid == 0 and not is_host_root():
        # Root of a user namespace (unshare -Ur, a rootless container): the host's
        # ranges in /etc/subuid are not ours to map from here, only ourselves.
        warn("zookeeper runs as root of a user namespace, not of the host: only that "
             "root is mapped in the container")
        return IdMaps(uid, gid, None, None)
    user = user_name(uid)
    maps = IdMaps(uid, gid, subid_range("/etc/subuid", user, uid),
                  subid_range("/etc/subgid", user, uid))
    if not (maps.subuids and maps.subgids):
        warn(f"no subordinate id range for {user} in /etc/subuid and /etc/subgid: "
             "only root is mapped in the container (see subuid(5))"
             + (": it is the host's root (add 'root:100000:65536' to both files)"
                if uid == 0 else ""))
        maps.subuids = maps.subgids = None
        return maps
    if uid == 0:
        kernel.explain("root in the container", f"host uid {maps.subuids[0]}, gid "
                       f"{maps.subgids[0]} (root's ranges in /etc/subuid, /etc/subgid)",
                       "user_namespaces(7)")
    for tool in ("newuidmap", "newgidmap"):
        programs.require(tool, "uidmap")
    return maps


def write_id_maps(pid: int, maps: IdMaps) -> None:
    """Map the container's users and groups, before the child goes on."""
    if maps.subuids is None:
        write_single_maps(pid, maps.uid, maps.gid)
        return
    # STUDENT CODE BELOW (q7)
    # Map root in the container to your user and 1..N to your subordinate ranges.
    # Run newuidmap and newgidmap for the child, side by side: newuidmap(1),
    # user_namespaces(7).  map_arguments() builds the triplets; programs.run()
    # runs programs at the same time and waits for them all.  In a `with step(...)`
    # (errors.py), as every call here: a refusal is then one line and 125.
    with step(f"map the user and group ids of {pid} with newuidmap and newgidmap"):
        programs.run([["newuidmap", str(pid)] + map_arguments(maps.uid, maps.subuids),
                      ["newgidmap", str(pid)] + map_arguments(maps.gid, maps.subgids)])
    # STUDENT CODE ABOVE (q7)


def write_single_maps(pid: int, uid: int, gid: int) -> None:
    """Without a subordinate range: map only root, writing the files ourselves.
    An unprivileged process must deny setgroups(2) before it may write gid_map."""
    with step(f"write /proc/{pid}/uid_map"):
        kernel.write_file(f"/proc/{pid}/uid_map", f"0 {uid} 1\n", "user_namespaces(7)")
    with step(f"write /proc/{pid}/setgroups"):
        kernel.write_file(f"/proc/{pid}/setgroups", "deny", "user_namespaces(7)")
    with step(f"write /proc/{pid}/gid_map"):
        kernel.write_file(f"/proc/{pid}/gid_map", f"0 {gid} 1\n", "user_namespaces(7)")


def become_container_root() -> None:
    """Child, once its ids are mapped: take the uid and gid 0 of the container for
    real.  A new user namespace changes no ids (user_namespaces(7)): when the caller's
    own uid is not mapped (root's, above), the child would otherwise still be the
    host's root for files.  And keep no supplementary group of the caller's."""
    with step("drop the supplementary groups"):
        try:
            kernel.sys_setgroups([])
        except PermissionError:
            pass  # setgroups(2) denied with a single map: the kernel keeps them unused
    what = "become root in the container (setresgid, setresuid)"
    with step(what):
        try:
            kernel.sys_setresgid(0, 0, 0)
            kernel.sys_setresuid(0, 0, 0)
        except OSError as e:
            if e.errno != errno.EINVAL:
                raise
            # setresuid(2): EINVAL for an id our user namespace does not map.
            raise ZooError(f"failed to {what}: {e.strerror}: id 0 has no mapping in the "
                           "container's user namespace: were uid_map and gid_map written, "
                           "and before the child went on?") from None


def user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def userns_refusal_hint() -> str:
    """Why the kernel may refuse an unprivileged user namespace, and the fix."""
    checks = [
        ("/proc/sys/kernel/apparmor_restrict_unprivileged_userns", "1",
         "AppArmor restricts unprivileged user namespaces "
         "(kernel.apparmor_restrict_unprivileged_userns=1): "
         "sudo sysctl kernel.apparmor_restrict_unprivileged_userns=0"),
        ("/proc/sys/kernel/unprivileged_userns_clone", "0",
         "unprivileged user namespaces are disabled (kernel.unprivileged_userns_clone=0): "
         "sudo sysctl kernel.unprivileged_userns_clone=1"),
        ("/proc/sys/user/max_user_namespaces", "0",
         "user namespaces are disabled (user.max_user_namespaces=0): "
         "sudo sysctl user.max_user_namespaces=15000"),
    ]
    for path, bad, hint in checks:
        try:
            with open(path) as f:
                if f.read().strip() == bad:
                    return hint
        except OSError:
            continue
    return ""


def container_root(maps: IdMaps) -> tuple[int, int]:
    """The host's uid and gid of root in the container: who owns what it makes."""
    if maps.uid == 0 and maps.subuids:
        return maps.subuids[0], maps.subgids[0]
    return maps.uid, maps.gid
