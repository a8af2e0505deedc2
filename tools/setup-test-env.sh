#!/bin/sh
# Install what the test suite needs on a Debian/Ubuntu machine (run as root; CI does).
#  - the system tools zookeeper uses: newuidmap/newgidmap, slirp4netns, busybox-static
#  - QEMU and debootstrap for the grader's VM
#  - a Python any user can read (Debian's python3 in a venv under /opt), with the
#    pinned packages, because the tests run zookeeper as an unprivileged user too
#    (the suite itself runs in the project's venv, .venv: see the Makefile)
#  - that user, `zootest`, with a subordinate uid/gid range, and `zootest2` like it
set -eu
VENV=${ZOOKEEPER_VENV:-/opt/zookeeper-venv}
TEST_USER=${ZOOKEEPER_TEST_USER:-zootest}
HERE=$(cd "$(dirname "$0")/.." && pwd)

if [ "$(id -u)" != 0 ]; then
    echo "setup-test-env: run as root (it installs packages and creates a test user)" >&2
    exit 1
fi

missing=""
# The benchmark's references too: bubblewrap, runc, crun, iperf3, passt (pasta).
# Slurm and munge: tests/test_slurm.py's one-node cluster (the test starts its daemons
# itself, under a temporary directory; the packages' own services stay off).
# at, cron and incron: the runner puts back a user's crontab, at jobs and incron
# table after a check (tests/test_schedulers.py starts atd itself where none runs).
for pkg in uidmap slirp4netns busybox-static iproute2 python3-venv qemu-system-x86 \
           qemu-utils debootstrap e2fsprogs cpio util-linux procps kmod \
           bubblewrap runc crun iperf3 passt mmdebstrap strace \
           qemu-system-arm qemu-user-static binfmt-support \
           slurmctld slurmd slurm-client munge at cron incron; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "ok installed" || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    echo "setup-test-env: installing$missing"
    apt-get update -q >/dev/null
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q $missing >/dev/null
fi

# pytest and ruff for the suite itself go into the project's venv (`make test-deps`
# does that next, through check-deps.sh --install): never into the system's Python,
# which Debian 12 refuses (PEP 668).

if [ ! -x "$VENV/bin/python3" ]; then
    /usr/bin/python3 -m venv "$VENV"
    # As check-deps.sh's venv: no setuptools, whose .pth file each start would run.
    "$VENV/bin/pip" uninstall -q -y setuptools >/dev/null 2>&1 || true
fi
"$VENV/bin/pip" install -q --disable-pip-version-check -r "$HERE/requirements-test.txt" 2>&1 \
    | grep -v "is ignored: it is neither" || true
chmod -R a+rX "$VENV"

if ! id "$TEST_USER" >/dev/null 2>&1; then
    useradd --create-home --shell /bin/sh "$TEST_USER"
fi
# useradd may already have given a range: add one only if there is none.
for f in /etc/subuid /etc/subgid; do
    touch "$f"
    grep -q "^$TEST_USER:" "$f" || echo "$TEST_USER:200000:65536" >> "$f"
done
# A second user like zootest, for the grader's lanes of checks side by side
# (runner.py --lane-user: each lane's user has ranges of its own).
id zootest2 >/dev/null 2>&1 || useradd --create-home --shell /bin/sh zootest2
for f in /etc/subuid /etc/subgid; do
    grep -q "^zootest2:" "$f" || echo "zootest2:400000:65536" >> "$f"
done
# Root gets a range too, so the tests see both map lines as root; `zoonosub` has
# none (useradd may add one: take it out), for the single-map fallback.
grep -q "^root:" /etc/subuid || echo "root:300000:65536" >> /etc/subuid
grep -q "^root:" /etc/subgid || echo "root:300000:65536" >> /etc/subgid
id zoonosub >/dev/null 2>&1 || useradd --no-create-home --shell /bin/sh zoonosub
sed -i '/^zoonosub:/d' /etc/subuid /etc/subgid
# The arm64 guest's image runs its packages' scripts through qemu-user: binfmt_misc
# must be mounted (systemd does it; a bare VM may not) and qemu-aarch64 enabled.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
update-binfmts --enable qemu-aarch64 2>/dev/null || true
echo "setup-test-env: ready (venv $VENV, user $TEST_USER: $(grep "^$TEST_USER:" /etc/subuid))"
