#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's Docker image
# (Ubuntu): the packages the grader needs, then the grader's VM image, cached in the
# image (/root/.cache/zookeeper/vm): imported when config.env names a published one
# (VM_IMAGE, a file of this bundle or a URL, and VM_SHA256), else built with
# debootstrap (~2 minutes); then the booted guest is saved (vm.py save).  Each
# submission then restores it (run_autograder).
#
#   AUTOGRADER_ROOT  Gradescope's /autograder (a test moves it)
#   ZOO_SETUP_VM     skip: no VM image step (a test; a machine that has the image)
set -euo pipefail

ROOT=${AUTOGRADER_ROOT:-/autograder}
SRC=$ROOT/source
ZK=$SRC/zookeeper
VM_IMAGE=
VM_SHA256=
if [ -f "$SRC/config.env" ]; then
    . "$SRC/config.env"
fi

say() { echo "setup.sh: $*"; }

# What the grader runs, and the package that has it (Debian and Ubuntu alike).
NEEDS="python3:python3 qemu-system-x86_64:qemu-system-x86 mkfs.ext4:e2fsprogs
dpkg-deb:dpkg busybox:busybox-static git:git"
if [ -z "$VM_IMAGE" ]; then  # building the image: debootstrap, and Debian's keys
    NEEDS="$NEEDS debootstrap:debootstrap chroot:coreutils"
fi
missing=
for need in $NEEDS; do
    command -v "${need%%:*}" >/dev/null 2>&1 || missing="$missing ${need#*:}"
done
if [ -z "$VM_IMAGE" ] && [ ! -e /usr/share/keyrings/debian-archive-keyring.gpg ]; then
    missing="$missing debian-archive-keyring"
fi
if [ -n "$missing" ]; then
    say "installing$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -q
    # shellcheck disable=SC2086
    apt-get install -y -q --no-install-recommends ca-certificates $missing
else
    say "every package is here"
fi

python3 - <<'PY'
import sys
if sys.version_info < (3, 10):
    sys.exit(f"setup.sh: the grader needs Python >= 3.10, this is {sys.version.split()[0]}")
PY

chmod 0755 "$ZK/grader/grade" "$SRC/run_autograder" 2>/dev/null || true

case "${ZOO_SETUP_VM:-}" in
skip)
    say "VM image step skipped (ZOO_SETUP_VM=skip)" ;;
*)
    if [ -n "$VM_IMAGE" ]; then
        case "$VM_IMAGE" in
        *://*) image=$VM_IMAGE ;;
        /*) image=$VM_IMAGE ;;
        *) image=$SRC/$VM_IMAGE ;;
        esac
        info=$(python3 "$ZK/grader/vm.py" info)  # whole: grep -q would cut it short
        if printf '%s\n' "$info" | grep -q '^kernel:'; then
            say "VM image already cached"
        else
            say "importing the VM image $image"
            python3 "$ZK/grader/vm.py" import "$image" --sha256 "$VM_SHA256"
        fi
    else
        say "building the VM image (debootstrap)"
        python3 "$ZK/grader/vm.py" build
    fi
    # Each submission restores this booted guest instead of booting (~1 s, not 10-14);
    # if it cannot be saved here, each submission boots (slower, the same grade).
    say "saving the booted guest"
    python3 "$ZK/grader/vm.py" save || say "no saved booted guest: each submission boots"
    python3 "$ZK/grader/vm.py" info ;;
esac
say "done"
