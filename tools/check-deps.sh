#!/bin/sh
# check-deps.sh: does this machine have what zookeeper needs? Names the packages if not.
#
# Usage: tools/check-deps.sh NEED...
#   rootfs          build and unpack the busybox root filesystem (make rootfs)
#   rootfs-debian   build the Debian minbase root filesystem (make rootfs-debian)
#   run             run the containers (uid maps, seccomp, rootless networking)
#   test            run the repository's test suite
#   grade           run the grader's virtual machine
#   all             all of the above
#
# Quiet, exit status 0, when everything is there. Otherwise one line per missing item, naming
# the Debian/Ubuntu package and the command that installs it, and exit status 1.
# PYTHON names the interpreter to check (default python3).

PYTHON=${PYTHON:-python3}
status=0
checked=" "
apt_packages=""

say() {
    echo "check-deps: $*" >&2
    status=1
}

# once KEY: true the first time KEY is seen, so that an item shared by needs is checked once
once() {
    case $checked in
        *" $1 "*) return 1 ;;
    esac
    checked="$checked$1 "
    return 0
}

# need_cmd COMMAND PACKAGE
need_cmd() {
    once "cmd:$1" || return 0
    command -v "$1" >/dev/null 2>&1 && return 0
    say "missing $1 (package $2): sudo apt-get install $2"
    case " $apt_packages " in
        *" $2 "*) ;;
        *) apt_packages="${apt_packages:+$apt_packages }$2" ;;
    esac
}

need_python() {
    once python || return 0
    if ! command -v "$PYTHON" >/dev/null 2>&1; then
        need_cmd "$PYTHON" python3
        return 0
    fi
    version=$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        say "$PYTHON is ${version:-unusable}, zookeeper needs Python 3.10 or newer" \
            "(Debian 12, Ubuntu 22.04 or later): sudo apt-get install python3"
    fi
}

# need_module MODULE INSTALL-HINT: a Python module the interpreter must import
need_module() {
    once "module:$1" || return 0
    command -v "$PYTHON" >/dev/null 2>&1 || return 0
    "$PYTHON" -c "import $1" >/dev/null 2>&1 && return 0
    say "missing Python module $1 for $PYTHON: $2"
}

# Rootless containers need a subordinate id range, user namespaces and a usable /dev/net/tun.
need_rootless() {
    once rootless || return 0
    [ "$(id -u)" -eq 0 ] && return 0
    user=$(id -un)
    if ! grep -qs "^\($user\|$(id -u)\):" /etc/subuid ||
       ! grep -qs "^\($user\|$(id -g)\):" /etc/subgid; then
        say "no range for $user in /etc/subuid or /etc/subgid (newuidmap needs one):" \
            "sudo usermod --add-subuids 100000-165535 --add-subgids 100000-165535 $user" \
            "(pick a range no other user has)"
    fi
    if command -v unshare >/dev/null 2>&1 && ! unshare --user --map-root-user true 2>/dev/null; then
        say "unprivileged user namespaces are disabled:" \
            "sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0 (Ubuntu 23.10+)" \
            "or kernel.unprivileged_userns_clone=1 (older Debian)"
    fi
    # Only -n needs the tun device: a note, not a failure.
    if [ -e /dev/net/tun ] && ! { [ -r /dev/net/tun ] && [ -w /dev/net/tun ]; }; then
        echo "check-deps: note: /dev/net/tun is not readable and writable by $user, so -n" \
            "(slirp4netns) will not work: sudo chmod 0666 /dev/net/tun" >&2
    fi
}

need_rootfs() {
    need_python
    need_cmd tar tar
    need_cmd busybox busybox-static
}

need_rootfs_debian() {
    need_python
    need_cmd tar tar
    if [ "$(id -u)" -eq 0 ]; then
        need_cmd debootstrap debootstrap
    else
        need_cmd mmdebstrap mmdebstrap
        need_cmd newuidmap uidmap
    fi
}

need_run() {
    need_python
    need_cmd newuidmap uidmap
    need_cmd newgidmap uidmap
    need_cmd unshare util-linux
    need_cmd slirp4netns slirp4netns
    need_module pyseccomp "$PYTHON -m pip install -r requirements.txt"
    need_module pyroute2 "$PYTHON -m pip install -r requirements.txt"
    need_rootless
}

need_test() {
    need_rootfs
    need_run
    need_cmd useradd passwd
    need_cmd setpriv util-linux
    need_module pytest "$PYTHON -m pip install -r requirements-test.txt"
}

need_grade() {
    need_python
    need_cmd qemu-system-x86_64 qemu-system-x86
    need_cmd debootstrap debootstrap
    need_cmd mkfs.ext4 e2fsprogs
    need_cmd dpkg-deb dpkg
    need_cmd apt-get apt
    need_cmd busybox busybox-static
}

usage() {
    echo "usage: $0 NEED... (NEED: rootfs rootfs-debian run test grade all)" >&2
    exit 2
}

[ $# -gt 0 ] || usage
for need in "$@"; do
    case $need in
        rootfs) need_rootfs ;;
        rootfs-debian) need_rootfs_debian ;;
        run) need_run ;;
        test) need_test ;;
        grade) need_grade ;;
        all) need_rootfs; need_rootfs_debian; need_run; need_test; need_grade ;;
        -h|--help) usage ;;
        *) echo "check-deps: unknown need '$need'" >&2; usage ;;
    esac
done

case $apt_packages in
    *" "*) echo "check-deps: all missing packages at once: sudo apt-get install $apt_packages" >&2 ;;
esac
exit $status
