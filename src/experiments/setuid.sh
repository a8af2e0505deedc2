#!/bin/sh
# zookeeper-source: stage=3 only=parts
# The seccomp experiment: try to make a setuid file, which the filter refuses.
#
#   part2_namespaces/zookeeper.py sh experiments/setuid.sh DIR   -> setuid bit set
#   part3_seccomp/zookeeper.py    sh experiments/setuid.sh DIR   -> Operation not permitted
#
# Root in the container may chmod its own files, and a setuid-root binary made
# inside could outlive the container.  The rules against chmod, fchmod, fchmodat
# and fchmodat2 (chmod(2)) with S_ISUID return EPERM before the kernel even looks at
# the file (newer C libraries make fchmodat a call of fchmodat2).
dir=${1:-/tmp}
# mktemp(1): a new file of a random name (O_EXCL), never one another user put
# there first, such as a link to one of your files ($$ is 1 in a PID namespace).
file=$(mktemp "$dir/zoo-setuid-experiment.XXXXXX") || exit 1
if chmod u+s "$file" 2>&1; then
    echo "setuid bit set: $(ls -l "$file" | cut -c1-10)"
else
    echo "chmod u+s refused (see above)"
fi
rm -f "$file"
