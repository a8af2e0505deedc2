#!/bin/sh
# The CPU experiment: BURNERS busy loops (default 1) run for SECONDS (default 5);
# the CPU time the container's cgroup used meanwhile (cpu.stat usage_usec) over the
# wall time is its share of one CPU.  Under -c 50 the scheduler lets it run 50 ms
# of every 100 ms period (cpu.max "50000 100000"), then throttles it until the next.
#
#   zookeeper.py -r ~/zoo-fs       sh -s 5 < experiments/cpu_burner.sh  -> about 100%
#   zookeeper.py -r ~/zoo-fs -c 50 sh -s 5 < experiments/cpu_burner.sh  -> about 50%
#
# It reads the container's own cgroup at /sys/fs/cgroup (mounted with -r in part 5).
seconds=${1:-5}
burners=${2:-1}
stat=/sys/fs/cgroup/cpu.stat
if [ ! -r "$stat" ]; then
    echo "no $stat: run it with -r, in part 5 on a cgroup v2 host" >&2
    exit 1
fi
[ -r /sys/fs/cgroup/cpu.max ] && echo "cpu.max: $(cat /sys/fs/cgroup/cpu.max)"
usage() { awk '$1 == "usage_usec" { print $2 }' "$stat"; }
before=$(usage)
pids=""
i=0
while [ "$i" -lt "$burners" ]; do
    while :; do :; done &
    pids="$pids $!"
    i=$((i + 1))
done
sleep "$seconds"
kill $pids
after=$(usage)
awk -v used=$((after - before)) -v secs="$seconds" -v n="$burners" 'BEGIN {
    printf "%d busy loop(s) for %d s: %.1f s of CPU = %.0f%% of one CPU\n", n, secs,
        used / 1e6, 100 * used / (secs * 1e6)
}'
grep -E '^(nr_periods|nr_throttled|throttled_usec)' "$stat" || true
