#!/bin/sh
# check-deps.sh: does this machine have what zookeeper needs?  With --install, it
# installs what is missing: what `make demo` does before anything else.
#
# Usage: tools/check-deps.sh [--install] NEED...
#   rootfs          build and unpack the busybox root filesystem (make rootfs)
#   rootfs-debian   build the Debian minbase root filesystem (make rootfs-debian)
#   run             run the containers (uid maps, seccomp, rootless networking)
#   lint            pytest, ruff and vermin in the venv (make lint, make test-venv): no root
#   test            run the repository's test suite (as root: it makes a test user)
#   grade           run the grader's virtual machine
#   all             all of the above
#
# Without --install: quiet, exit status 0, when everything is there.  Otherwise one line
# per missing item, naming the Debian/Ubuntu package and the command that installs it,
# then every missing package on one line, and exit status 1.
#
# With --install, in this order:
#  1. the missing Debian packages, with one `apt-get install` (as root directly, else
#     through sudo; without sudo, or when sudo refuses, it prints the line to run and stops,
#     or goes on with a note when what is missing serves one option only: slirp4netns, -n);
#  2. the project's venv, $VENV (default .venv beside tools/): made with
#     `$SYSTEM_PYTHON -m venv` when absent, and the Python packages of requirements.txt
#     (requirements-test.txt for `lint` and `test`) installed into it with its own pip.
#     Never pip into the system's Python: Debian 12 and Ubuntu 23.04+ refuse it (PEP 668);
#  3. the checks no package fixes: user namespaces, as above; a subordinate id range,
#     which only the tests and a rootless rootfs-debian (mmdebstrap) need: for the
#     others a missing one is a note, with a range that no user of /etc/subuid and
#     /etc/subgid has yet.
#
# Environment: VENV (the venv directory), SYSTEM_PYTHON (the Python the venv is made
# from, default python3), SUBUID_FILE and SUBGID_FILE (default /etc/subuid, /etc/subgid).

HERE=$(cd "$(dirname "$0")/.." && pwd)
VENV=${VENV:-$HERE/.venv}
SYSTEM_PYTHON=${SYSTEM_PYTHON:-python3}
SUBUID_FILE=${SUBUID_FILE:-/etc/subuid}
SUBGID_FILE=${SUBGID_FILE:-/etc/subgid}
VENV_PYTHON=$VENV/bin/python3
install=no
status=0
checked=" "
apt_packages=""
optional_packages=""  # what only one option needs: without it, a note, not a stop
optional_use=""       # ... and those options
requirements=""

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

add_package() {
    case " $apt_packages " in
        *" $1 "*) ;;
        *) apt_packages="${apt_packages:+$apt_packages }$1" ;;
    esac
}

# have_cmd COMMAND: on PATH, or in an sbin directory, which a user's PATH often lacks
# (useradd is in /usr/sbin: installed, though a user's `command -v` does not find it).
have_cmd() {
    command -v "$1" >/dev/null 2>&1 && return 0
    for dir in /usr/local/sbin /usr/sbin /sbin; do
        [ -x "$dir/$1" ] && return 0
    done
    return 1
}

# need_cmd COMMAND PACKAGE
need_cmd() {
    once "cmd:$1" || return 0
    have_cmd "$1" && return 0
    [ $install = yes ] || say "missing $1 (package $2): sudo apt-get install $2"
    add_package "$2"
}

# want_cmd COMMAND PACKAGE WHAT: as need_cmd, for what only WHAT needs (an option of
# one part): missing, a note; installed with the rest when root or sudo can, and
# without them a note again, so that the parts before it can run meanwhile.
want_cmd() {
    once "cmd:$1" || return 0
    have_cmd "$1" && return 0
    [ $install = yes ] || echo "check-deps: note: missing $1 (package $2), so $3 will not" \
        "work: sudo apt-get install $2" >&2
    optional_packages="${optional_packages:+$optional_packages }$2"
    optional_use="${optional_use:+$optional_use, }$3"
}

# The Python the venv is made from (or the venv's own, once it is there).
need_python() {
    once python || return 0
    python=$SYSTEM_PYTHON
    [ -x "$VENV_PYTHON" ] && python=$VENV_PYTHON
    if ! command -v "$python" >/dev/null 2>&1; then
        need_cmd "$python" python3
        return 0
    fi
    if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
        version=$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)
        say "$python is ${version:-unusable}, zookeeper needs Python 3.10 or newer" \
            "(Debian 12, Ubuntu 22.04 or later)"
    fi
}

# need_venv REQUIREMENTS-FILE: the venv, with the packages that file pins.
need_venv() {
    once "venv:$1" || return 0
    need_python
    requirements="${requirements:+$requirements }$1"
    # Making a venv needs ensurepip, which Debian and Ubuntu ship in python3-venv.
    if ! venv_works && ! "$SYSTEM_PYTHON" -c 'import ensurepip, venv' >/dev/null 2>&1; then
        [ $install = yes ] || say "missing the venv module of $SYSTEM_PYTHON (package" \
            "python3-venv): sudo apt-get install python3-venv"
        add_package python3-venv
    fi
    if [ $install = no ] && ! venv_is_ready "$1"; then
        say "the venv $VENV lacks the packages of $1: make demo makes it" \
            "($SYSTEM_PYTHON -m venv $VENV && $VENV_PYTHON -m pip install -r $1)"
    fi
}

venv_works() {
    "$VENV_PYTHON" -m pip --version >/dev/null 2>&1
}

# A copy of the requirements file in the venv says pip installed exactly that.
venv_is_ready() {
    venv_works && cmp -s "$HERE/$1" "$VENV/zookeeper-$1"
}

make_venv() {
    # The venv's code runs as you: with your umask of 000 or 002, another user could
    # add a .pth file to it and run code as you next time.  Made with no group or
    # other write, whatever your umask (077 stays 077; a subshell keeps yours after).
    (umask "$(printf '%o' $(( $(umask) | 022 )))" && make_venv_files)
}

make_venv_files() {
    for file in $requirements; do
        venv_is_ready "$file" && continue
        if ! venv_works; then
            echo "check-deps: making the venv $VENV ($SYSTEM_PYTHON -m venv)"
            # --clear: a venv made before python3-venv was there has no pip
            "$SYSTEM_PYTHON" -m venv --clear "$VENV" || {
                say "could not make the venv $VENV (messages above)"
                return 1
            }
            # Python 3.11's venv brings setuptools, whose .pth file each start of the
            # venv's python runs (~0.5 ms of a container's ~30): nothing here uses
            # it, and 3.12's venv has none.
            "$VENV_PYTHON" -m pip uninstall -q -y setuptools >/dev/null 2>&1 || true
        fi
        echo "check-deps: installing the packages of $file into $VENV (pip)"
        "$VENV_PYTHON" -m pip install -q --disable-pip-version-check -r "$HERE/$file" || {
            say "pip could not install $file into $VENV (messages above)"
            return 1
        }
        # A venv of someone else's (a shared one) may not be ours to write: pip has
        # checked it, and it is checked again next time.
        cp "$HERE/$file" "$VENV/zookeeper-$file" 2>/dev/null || true
    done
}

# One apt-get install for every missing package: as root directly, else through sudo.
# Where that cannot be, a stop for what every part needs; for what one option needs
# only (optional_packages), a note, and the set-up goes on.
install_packages() {
    packages=$(all_packages)
    [ -n "$packages" ] || return 0
    line="sudo apt-get install $packages"
    # If the package lists are missing or stale (a fresh machine), update them and retry.
    script="apt-get install -y $packages || { apt-get update && apt-get install -y $packages; }"
    if [ "$(id -u)" -eq 0 ]; then
        echo "check-deps: installing the missing packages: $line"
        DEBIAN_FRONTEND=noninteractive sh -c "$script" && return 0
        cannot_install "apt-get could not install them (messages above)" "apt-get install $packages"
        return 0
    fi
    if ! command -v sudo >/dev/null 2>&1; then
        cannot_install "there is no sudo here" "apt-get install $packages"
        return 0
    fi
    echo "check-deps: installing the missing packages: $line"
    sudo sh -c "$script" && return 0
    cannot_install "sudo could not install them (not allowed, or messages above)" "$line"
}

# all_packages: every missing package, needed then wanted, on one line.
all_packages() {
    packages="$apt_packages${optional_packages:+ $optional_packages}"
    echo "${packages# }"
}

# cannot_install WHY LINE: stop when a package every part needs is missing, else a note.
cannot_install() {
    if [ -n "$apt_packages" ]; then
        if [ "$(id -u)" -eq 0 ]; then
            say "$1; then run make again"
        else
            say "$1: ask someone with root to run this, then run make again:"
            echo "    $2" >&2
        fi
        exit 1
    fi
    echo "check-deps: note: $1, so $optional_use will not work until someone with root" \
        "runs: $2" >&2
}

# A range of 65536 ids that no line of /etc/subuid or /etc/subgid holds: the first from
# 100000 on, at a multiple of 65536 past any range it would overlap.
free_range() {
    cat "$SUBUID_FILE" "$SUBGID_FILE" 2>/dev/null | awk -F: 'BEGIN { n = 0 }
        NF == 3 && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ { s[n] = $2; e[n] = $2 + $3; n++ }
        END {
            c = 100000
            do {
                moved = 0
                for (i = 0; i < n; i++)
                    if (c < e[i] && s[i] < c + 65536) {
                        c = int((e[i] + 65535) / 65536) * 65536
                        moved = 1
                    }
            } while (moved)
            printf "%.0f-%.0f\n", c, c + 65535
        }'
}

# shared_ranges USER FILE...: warn when USER's range overlaps another user's.  The ids
# of both users' containers are then the same host ids: each can read and change the
# files the other's containers made (a rootfs, an overlay), as their own.
shared_ranges() {
    for file in "$2" "$3"; do
        awk -F: -v me="$1" -v uid="$(id -u)" -v file="$file" '
            NF == 3 && $2 ~ /^[0-9]+$/ && $3 ~ /^[0-9]+$/ {
                mine = ($1 == me || $1 == uid)
                n++; who[n] = $1; s[n] = $2; e[n] = $2 + $3; own[n] = mine
            }
            END {
                for (i = 1; i <= n; i++) if (own[i]) for (j = 1; j <= n; j++)
                    if (!own[j] && s[i] < e[j] && s[j] < e[i])
                        printf "check-deps: warning: your range %s:%.0f in %s overlaps %s'"'"'s (%s:%.0f): the ids of your containers are theirs too, so each of you can read and change what the other'"'"'s containers made; ask root for a range of your own\n", s[i], e[i] - s[i], file, who[j], s[j], e[j] - s[j]
            }' "$file" >&2
    done
}

# need_subids strict|note: a subordinate id range for the user.  zookeeper runs without
# one (its root mapped alone, with a warning), and so does the grader's --local; what
# builds a whole system in a user namespace (mmdebstrap, the tests' users) needs it.
need_subids() {
    once subids || return 0
    [ "$(id -u)" -eq 0 ] && return 0
    user=$(id -un)
    if grep -qs "^\($user\|$(id -u)\):" "$SUBUID_FILE" &&
            grep -qs "^\($user\|$(id -u)\):" "$SUBGID_FILE"; then
        shared_ranges "$user" "$SUBUID_FILE" "$SUBGID_FILE"
        return 0
    fi
    range=$(free_range)
    fix="sudo usermod --add-subuids $range --add-subgids $range $user"
    if [ "$1" = strict ]; then
        say "no range for $user in $SUBUID_FILE or $SUBGID_FILE (newuidmap needs one):" \
            "$fix (a range no other user has)"
    else
        echo "check-deps: note: no range for $user in $SUBUID_FILE or $SUBGID_FILE, so" \
            "containers map only their root to you (zookeeper warns each time); for the" \
            "full map ask for one: $fix (a range no other user has)" >&2
    fi
}

# Rootless containers need user namespaces and a usable /dev/net/tun; a subordinate id
# range is a note (need_subids), but for the tests.
need_rootless() {
    once rootless || return 0
    [ "$(id -u)" -eq 0 ] && return 0
    user=$(id -un)
    need_subids "$1"
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

# The man pages the code and README cite, a note when they are not there: the lab runs
# without them (man7.org has them too), so nothing stops for them.
MAN_PAGES="2:clone:manpages-dev 3:seccomp_rule_add:libseccomp-dev 3:sd_booted:libsystemd-dev"
need_man_pages() {
    once man || return 0
    missing=""
    for entry in $MAN_PAGES; do
        section=${entry%%:*}
        rest=${entry#*:}
        if ! have_cmd man || ! man -w "$section" "${rest%%:*}" >/dev/null 2>&1; then
            missing="${missing:+$missing }${rest#*:}"
        fi
    done
    [ -n "$missing" ] || return 0
    have_cmd man || missing="man-db $missing"
    echo "check-deps: note: the man pages the exercises name (clone(2)," \
        "seccomp_rule_add(3), ...) are not all installed: sudo apt-get install $missing" \
        "(or read them at man7.org)" >&2
}

need_run() {
    need_python
    # kernel.py knows the system call numbers of x86_64 and aarch64 (SYSCALL_NUMBERS).
    arch=$(uname -m)
    if once arch && [ "$arch" != x86_64 ] && [ "$arch" != aarch64 ]; then
        say "this machine is $arch: the parts run on x86_64 and aarch64 only" \
            "(README.txt 1.1: a Linux x86_64 or arm64 machine or VM)"
    fi
    need_cmd newuidmap uidmap
    need_cmd newgidmap uidmap
    need_cmd unshare util-linux
    want_cmd slirp4netns slirp4netns "-n (part 6's rootless network)"
    need_venv requirements.txt
}

# What ruff, vermin and pytest need, and no more: `make lint` as a user asks for no root.
need_lint() {
    need_python
    need_venv requirements-test.txt
}

# The whole suite: it runs as root, making its test user (useradd, setpriv); it
# tests -n too, so slirp4netns is needed, not wanted.
need_test() {
    need_rootfs
    need_cmd slirp4netns slirp4netns
    need_run
    need_cmd useradd passwd
    need_cmd setpriv util-linux
    need_lint
}

# The grader's VM image: root builds it with debootstrap, a user with mmdebstrap in
# a user namespace (grader/vm.py build).
need_grade() {
    need_python
    if [ "$(uname -m)" = aarch64 ]; then
        need_cmd qemu-system-aarch64 qemu-system-arm
    else
        need_cmd qemu-system-x86_64 qemu-system-x86
    fi
    if [ "$(id -u)" -eq 0 ]; then
        need_cmd debootstrap debootstrap
    else
        need_cmd mmdebstrap mmdebstrap
        need_cmd newuidmap uidmap
        need_cmd debugfs e2fsprogs
    fi
    need_cmd mkfs.ext4 e2fsprogs
    need_cmd dpkg-deb dpkg
    need_cmd apt-get apt
    need_cmd busybox busybox-static
}

usage() {
    echo "usage: $0 [--install] NEED... (NEED: rootfs rootfs-debian run lint test grade all)" >&2
    exit 2
}

if [ "${1:-}" = --install ]; then
    install=yes
    shift
fi
[ $# -gt 0 ] || usage
needs=""
for need in "$@"; do
    case $need in
        rootfs|rootfs-debian|run|lint|test|grade) needs="$needs $need" ;;
        all) needs="$needs rootfs rootfs-debian run lint test grade" ;;
        -h|--help) usage ;;
        *) echo "check-deps: unknown need '$need'" >&2; usage ;;
    esac
done
for need in $needs; do
    case $need in
        rootfs) need_rootfs ;;
        rootfs-debian) need_rootfs_debian ;;
        run) need_run ;;
        lint) need_lint ;;
        test) need_test ;;
        grade) need_grade ;;
    esac
done

if [ $install = yes ]; then
    install_packages
    make_venv || exit 1
fi
# What no package fixes, checked after the packages (they bring newuidmap and unshare),
# and the man pages, a note.
# The tests and mmdebstrap need a subordinate id range; the containers do not.
case $needs in
    *test*) need_rootless strict ;;
    *run*) need_rootless note ;;
esac
case $needs in
    *rootfs-debian*) need_subids strict ;;
esac
case $needs in
    *run*) need_man_pages ;;
esac
if [ $install = no ]; then
    packages=$(all_packages)
    case $packages in
        *" "*) echo "check-deps: all missing packages at once: sudo apt-get install $packages" >&2 ;;
    esac
fi
exit $status
