#!/bin/sh
# The process experiment: try to start COUNT processes (default 20) that stay
# alive.  Under -p 10 the cgroup holds at most 10 processes (pids.max), the shell
# included: fork(2) then fails with EAGAIN ("Resource temporarily unavailable"),
# as a fork bomb's would, while the host is not affected.
#
#   zookeeper.py -r ~/zoo-fs       sh -s 20 < experiments/fork_bomb.sh  -> 20 of 20 started
#   zookeeper.py -r ~/zoo-fs -p 10 sh -s 20 < experiments/fork_bomb.sh  -> 8 of 20 started
#
# At the limit the shell itself cannot fork: the report uses builtins only.
count=${1:-20}
[ -r /sys/fs/cgroup/pids.max ] && echo "pids.max: $(cat /sys/fs/cgroup/pids.max)"
# A directory of a random name for the notes (mktemp(1)): not one another user
# could make first, as a predictable /tmp/fork_bomb.$$ would let them.
notes=$(mktemp -d /tmp/fork_bomb.XXXXXX) || exit 1
log=$notes/pids
# A subshell starts the sleepers, noting each pid; a failed fork ends it.
(
    i=0
    while [ "$i" -lt "$count" ]; do
        sleep 60 &
        echo "$!" >> "$log"
        i=$((i + 1))
    done
) 2> "$log.err"
started=0
pids=""
while read -r pid; do
    started=$((started + 1))
    pids="$pids $pid"
done < "$log"
if [ -r /sys/fs/cgroup/pids.current ]; then
    read -r current < /sys/fs/cgroup/pids.current
    echo "pids.current at the peak: $current"
fi
echo "started $started of $count processes"
while read -r line; do
    echo "  $line"
done < "$log.err"
kill $pids 2> /dev/null
wait
rm -rf "$notes"
