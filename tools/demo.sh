#!/bin/sh
# make demo: run one container from the newest part and show what it cannot see
# (from part 4 on: before that, say what it will show and exit 0).
set -u
ROOTFS=${1:-build/zoo-fs}
HERE=$(cd "$(dirname "$0")/.." && pwd)
# The newest of parts 6, 5 and 4: the first partN_*/ (a copy keeps the prefix, as
# `make diff` finds it) that has a zookeeper.py.
PART=""
for n in 6 5 4; do
    for candidate in "$HERE"/part${n}_*/; do
        if [ -z "$PART" ] && [ -f "${candidate}zookeeper.py" ]; then
            PART="${candidate%/}"
        fi
    done
done
PART4_NAME=$(sed -n 4p "$HERE/tools/part-names.txt")
# The Makefile passes its venv's Python; run by hand, the venv's if there is one.
if [ -z "${PYTHON:-}" ]; then
    PYTHON=python3
    [ -x "$HERE/.venv/bin/python3" ] && PYTHON="$HERE/.venv/bin/python3"
fi

# Before part 4 (a fresh handout has no part at all) there is no container to show
# yet: the set-up is what `make demo` did, and that is no failure.
if [ -z "$PART" ]; then
    echo "demo: set up (the packages, the venv, the rootfs $ROOTFS); no container to show"
    echo "      yet: that needs a $PART4_NAME/ (-r, a root filesystem).  Once your"
    echo "      part 4 runs, make demo runs a container of your newest part in $ROOTFS"
    echo "      and shows its isolation: hostname, user, id map, processes, network,"
    echo "      filesystem, seccomp, cgroup."
    PART1_NAME=$(sed -n 1p "$HERE/tools/part-names.txt")
    if [ ! -d "$HERE/$PART1_NAME" ]; then
        echo "demo: to start, copy skeleton/ into $PART1_NAME/ and run it (README.txt section 4):"
        echo "      cp -r skeleton $PART1_NAME && $PYTHON $PART1_NAME/zookeeper.py true"
    fi
    exit 0
fi

limits=""
# Resource limits need cgroup v2 with its controllers (not a hybrid host like some VMs).
if [ -f /sys/fs/cgroup/cgroup.controllers ] && grep -q memory /sys/fs/cgroup/cgroup.controllers; then
    limits="-m 64M -p 64"
fi

echo "== on the host: $(hostname), $(id -un), $(ps -e --no-headers 2>/dev/null | wc -l) processes"
echo "== in a container: $PYTHON $(basename "$PART")/zookeeper.py -r $ROOTFS -P ${limits:+$limits }sh -c ..."
# shellcheck disable=SC2086
"$PYTHON" "$PART/zookeeper.py" -r "$ROOTFS" -P $limits sh -c '
    echo "hostname:   $(hostname)"
    echo "user:       $(id)"
    echo "uid map:    $(cat /proc/self/uid_map | tr -s " " | tr "\n" ";")"
    echo "processes:  $(ps | tail -n +2 | wc -l) (I am PID $$)"
    echo "network:    $(cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d " " | tr "\n" " ")"
    echo "filesystem: / has $(ls / | tr "\n" " ")"
    echo "seccomp:    $(grep -E "^(NoNewPrivs|Seccomp):" /proc/self/status | tr -s "\t\n" "  ")"
    echo "cgroup:     $(grep "^0::" /proc/self/cgroup) (its own namespace: / is its cgroup)"
'
status=$?
echo "== the container exited with status $status"
exit $status
