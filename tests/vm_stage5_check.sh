#!/bin/sh
# Stage 5 for real, inside the grader's VM (cgroup v2, systemd, user `student`):
#
#   python3 grader/vm.py run tests/vm_stage5_check.sh --submission DIR
#
# DIR holds part5_cgroups/ and tools' mkrootfs.py (tests/test_cgroups.py's vm test
# assembles it).  Runs as root in the guest; each check runs as root and as the
# student (three ways: runuser with the session's bus, setpriv without it, and
# inside `systemd-run --user --scope`).  Proves: a 64M limit OOM-kills a 200M hog,
# -p 10 stops 20 processes, -c 50 keeps a busy loop at 40-60% of a CPU by cpu.stat,
# and no zoo-* cgroup is left after any run.
set -u
SRC=${ZOO_SUBMISSION:-/mnt/submission}
WORK=/opt/zk
failures=0
checks=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok: $*"; }

rm -rf "$WORK"
mkdir -p "$WORK"
cp -r "$SRC"/. "$WORK"/
chmod -R a+rX "$WORK"
PART=$WORK/part5_cgroups
EXP=$PART/experiments

python3 "$WORK/mkrootfs.py" busybox "$WORK/zoo-fs.tar" || { echo "FAIL: mkrootfs"; exit 1; }
chmod 644 "$WORK/zoo-fs.tar"
mkdir -p "$WORK/fs-root" && (cd "$WORK/fs-root" && umask 0 && tar xf ../zoo-fs.tar)
rm -rf /home/student/zoo-fs
runuser -u student -- sh -c 'mkdir /home/student/zoo-fs && cd /home/student/zoo-fs &&
    umask 0 && tar xf /opt/zk/zoo-fs.tar --no-same-owner'

UID_S=1000
SESSION_ENV="XDG_RUNTIME_DIR=/run/user/$UID_S DBUS_SESSION_BUS_ADDRESS=unix:path=/run/user/$UID_S/bus"

# run WHO FS ARGS... : zookeeper as WHO (root, student, student-setpriv, student-scope)
run() {
    who=$1
    shift
    case "$who" in
        root) python3 "$PART/zookeeper.py" "$@" ;;
        student) runuser -u student -- env $SESSION_ENV python3 "$PART/zookeeper.py" "$@" ;;
        student-setpriv) setpriv --reuid=$UID_S --regid=$UID_S --init-groups -- \
            env HOME=/home/student python3 "$PART/zookeeper.py" "$@" ;;
        student-scope) runuser -u student -- env $SESSION_ENV \
            systemd-run --user --scope --quiet python3 "$PART/zookeeper.py" "$@" ;;
    esac
}

fs_of() { [ "$1" = root ] && echo "$WORK/fs-root" || echo /home/student/zoo-fs; }

leftover_cgroups() {
    find /sys/fs/cgroup -type d -name 'zoo-[0-9]*' 2> /dev/null
}

check_no_leftover() {
    left=$(leftover_cgroups)
    if [ -n "$left" ]; then
        fail "$1: cgroups left: $left"
    fi
}

echo "== host: $(uname -r), $(stat -fc %T /sys/fs/cgroup), controllers: $(cat /sys/fs/cgroup/cgroup.controllers)"
echo "== user@$UID_S delegates: $(cat /sys/fs/cgroup/user.slice/user-$UID_S.slice/user@$UID_S.service/cgroup.controllers 2> /dev/null)"

for who in root student student-setpriv student-scope; do
    fs=$(fs_of "$who")
    echo "== $who"
    # Where the cgroup went (explain mode): the scope, the container's cgroup.
    run "$who" -v -m 64M true 2>&1 | grep -E 'busctl|mkdir\(|0::' | sed 's/^/   /'

    # Inside: the limits are visible, the container's cgroup is its /.
    checks=$((checks + 1))
    out=$(run "$who" -P -r "$fs" -m 64M -c 50 -p 10 sh -c \
        'cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/cpu.max /sys/fs/cgroup/pids.max; cat /proc/self/cgroup' 2> /dev/null)
    expected="67108864
50000 100000
10"
    case "$out" in
        "$expected"*"0::/"*) pass "$who: limits visible inside, its cgroup at /" ;;
        *) fail "$who: limits inside: $out" ;;
    esac

    # -o: DIR as the lower layer of an overlay, named by the fd the child opened
    # (lowerdir=/proc/self/fd/N, on this kernel too); DIR itself stays unchanged.
    checks=$((checks + 1))
    out=$(run "$who" -r "$fs" -o sh -c 'echo changed > /zoo-probe; cat /zoo-probe' \
        2> "$WORK/overlay.err"); st=$?
    if [ "$st" = 0 ] && [ "$out" = changed ] && [ ! -e "$fs/zoo-probe" ]; then
        pass "$who: -o writes to the overlay, not to the rootfs"
    else
        fail "$who: -o: status $st: $out $(cat "$WORK/overlay.err")"
    fi

    # Memory: the hog completes without a limit and is OOM-killed under -m 64M.
    checks=$((checks + 1))
    out=$(run "$who" -r "$fs" sh -s 200 < "$EXP/memory_hog.sh" 2>&1); st=$?
    if [ "$st" = 0 ] && echo "$out" | grep -q "allocated 200 MB"; then
        pass "$who: 200 MB without a limit"
    else
        fail "$who: unlimited hog: status $st: $out"
    fi
    checks=$((checks + 1))
    out=$(run "$who" -r "$fs" -m 64M sh -s 200 < "$EXP/memory_hog.sh" 2>&1); st=$?
    if [ "$st" = 137 ] && echo "$out" | grep -q "oom_kill [1-9]" \
            && ! echo "$out" | grep -q "allocated 200"; then
        pass "$who: -m 64M kills the 200 MB hog (status 137, $(echo "$out" | grep oom_kill))"
    else
        fail "$who: -m 64M hog: status $st: $out"
    fi
    checks=$((checks + 1))
    out=$(run "$who" -m 64M busybox awk 'BEGIN { s = sprintf("%104857600s", ""); t = s s; print length(t) }' 2>&1); st=$?
    if [ "$st" = 137 ]; then
        pass "$who: -m 64M without -r: a hog as PID 1 dies of SIGKILL (137)"
    else
        fail "$who: -m 64M, hog as PID 1: status $st: $out"
    fi
    check_no_leftover "$who memory"

    # Processes: 20 start without a limit, fewer than 10 under -p 10.
    checks=$((checks + 1))
    out=$(run "$who" -r "$fs" sh -s 20 < "$EXP/fork_bomb.sh" 2>&1)
    if echo "$out" | grep -q "started 20 of 20"; then
        pass "$who: 20 processes without a limit"
    else
        fail "$who: unlimited fork: $out"
    fi
    checks=$((checks + 1))
    out=$(run "$who" -r "$fs" -p 10 sh -s 20 < "$EXP/fork_bomb.sh" 2>&1)
    n=$(echo "$out" | sed -n 's/^started \([0-9]*\) of 20.*/\1/p')
    if [ -n "$n" ] && [ "$n" -lt 10 ] && echo "$out" | grep -q "Resource temporarily unavailable"; then
        pass "$who: -p 10 stops at $n of 20 (EAGAIN)"
    else
        fail "$who: -p 10: $out"
    fi
    check_no_leftover "$who pids"

    # CPU: a busy loop under -c 50 uses 40-60% of one CPU by cpu.stat.
    checks=$((checks + 1))
    out=$(run "$who" -r "$fs" -c 50 sh -s 6 < "$EXP/cpu_burner.sh" 2>&1)
    pct=$(echo "$out" | sed -n 's/.*= \([0-9]*\)% of one CPU.*/\1/p')
    if [ -n "$pct" ] && [ "$pct" -ge 40 ] && [ "$pct" -le 60 ]; then
        pass "$who: -c 50 holds a busy loop at $pct% ($(echo "$out" | grep nr_throttled))"
    else
        fail "$who: -c 50: $out"
    fi
    checks=$((checks + 1))
    out=$(run "$who" -r "$fs" sh -s 3 < "$EXP/cpu_burner.sh" 2>&1)
    pct=$(echo "$out" | sed -n 's/.*= \([0-9]*\)% of one CPU.*/\1/p')
    if [ -n "$pct" ] && [ "$pct" -ge 75 ]; then
        pass "$who: without -c the loop gets $pct%"
    else
        fail "$who: unlimited CPU: $out"
    fi
    check_no_leftover "$who cpu"

    # Cleanup on a signal: SIGTERM to zookeeper while the container runs.
    checks=$((checks + 1))
    run "$who" -r "$fs" -m 64M sleep 100 > /dev/null 2>&1 &
    zk=""
    i=0
    while [ -z "$zk" ] && [ "$i" -lt 30 ]; do
        sleep 1
        i=$((i + 1))
        # Once the container runs: its sleep is the child of zookeeper's python.
        for p in $(pgrep -x sleep); do
            parent=$(ps -o ppid= -p "$p" | tr -d ' ')
            case "$(cat /proc/$parent/cmdline 2> /dev/null | tr '\0' ' ')" in
                *"$PART/zookeeper.py -r $fs -m 64M sleep 100"*) zk=$parent ;;
            esac
        done
    done
    ps -o pid,ppid,args -e | grep -E "zookeeper|sleep 100" | grep -v grep | sed 's/^/   /'
    if [ -n "$zk" ]; then
        kill -TERM "$zk"
    fi
    wait
    sleep 0.5
    left=$(leftover_cgroups)
    if [ -n "$zk" ] && [ -z "$left" ]; then
        pass "$who: SIGTERM: cgroup removed"
    else
        fail "$who: SIGTERM: zookeeper pid '$zk', left: $left"
    fi
done

# Root of a user namespace (unshare -Ur, as a CI job or a rootless container runs
# it) is the student to the kernel: its cgroup is the student's, not the host root's
# /sys/fs/cgroup/zookeeper (before: "failed to create the cgroup ...: Permission denied").
checks=$((checks + 1))
out=$(runuser -u student -- env $SESSION_ENV unshare -Ur python3 "$PART/zookeeper.py" \
    -r /home/student/zoo-fs -m 64M cat /sys/fs/cgroup/memory.max 2>&1)
case "$out" in
    *67108864) pass "student under unshare -Ur: memory.max 64M" ;;
    *) fail "student under unshare -Ur: $out" ;;
esac
check_no_leftover "unshare -Ur"

# Root's subtree stays (shared), the user's scopes are gone with zookeeper.
echo "== after: $(ls /sys/fs/cgroup/zookeeper 2> /dev/null | grep -c '^zoo-') zoo-* under /sys/fs/cgroup/zookeeper"
scopes=$(find /sys/fs/cgroup -type d -name 'zookeeper-*.scope' 2> /dev/null)
[ -z "$scopes" ] || fail "scopes left: $scopes"

if [ "$failures" = 0 ]; then
    echo "stage5: all checks passed ($checks)"
else
    echo "stage5: $failures of $checks checks failed"
    exit 1
fi
