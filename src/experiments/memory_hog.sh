#!/bin/sh
# zookeeper-source: stage=5 only=parts
# The memory experiment: one process allocates MB megabytes (default 200) and
# touches every page.  Under -m 64M the kernel cannot reclaim the memory (memory.swap.max
# is 0), so the OOM killer kills the hog: status 137 (SIGKILL), and memory.events
# counts an oom_kill.
#
#   zookeeper.py -r ~/zoo-fs        sh -s 200 < experiments/memory_hog.sh  -> allocated 200 MB
#   zookeeper.py -r ~/zoo-fs -m 64M sh -s 200 < experiments/memory_hog.sh  -> killed, 137
#
# busybox awk holds each 1 MB string in memory: no Python needed in the rootfs.
mb=${1:-200}
events=/sys/fs/cgroup/memory.events
[ -r /sys/fs/cgroup/memory.max ] && echo "memory.max: $(cat /sys/fs/cgroup/memory.max)"
echo "allocating $mb MB"
awk -v mb="$mb" 'BEGIN {
    chunk = sprintf("%1048576s", "")
    for (i = 1; i <= mb; i++) {
        held[i] = chunk i
        if (i % 50 == 0) printf "  %d MB\n", i
    }
    printf "allocated %d MB\n", mb
}'
status=$?
if [ "$status" -eq 137 ]; then
    echo "the hog was killed by SIGKILL (status 137): the OOM killer"
    [ -r "$events" ] && grep oom_kill "$events"
fi
exit "$status"
