"""The command line, as the course hands it out, parsed by getopt(3)'s rules.

Option values are checked here, in every part, so nonsense gets one line and 125
even in a part that does not use the option yet.
"""

import getopt
import os

from errors import ZooError


class UsageError(ZooError):
    """A command line that cannot be parsed: its line, then the usage."""


USAGE = """\
Usage: zookeeper [options] <command>

Options:
    -h         Print this help message and exit
    -r <dir>   Set <dir> as / in the container
    -m <mem>   Limit the amount of memory available to the container
    -c <cpu>   Limit the amount of CPU percentage
    -p <procs> Limit the number of processes the container can create
    -P         Mount /proc inside the container
    -n         Enable networking in the container
    -o         With -r: run on a throwaway overlay, leave <dir> unchanged
    -v         Explain: print each step asked of the kernel (or ZOOKEEPER_VERBOSE=1)
"""

# getopt(3)'s option string: a letter alone is a flag, a letter followed by ':'
# takes a value (-r DIR or -rDIR).
SHORT_OPTIONS = "hr:m:c:p:Pnov"
SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
TRUE_WORDS = ("1", "true", "yes", "on")  # what turns ZOOKEEPER_VERBOSE on
LARGEST = (1 << 63) - 1  # the kernel's limits are 64-bit signed numbers
CPU_MIN = 0.1  # %: the kernel's smallest quota (1 ms) in its longest period (1 s)
# Bytes: less, and the OOM killer may end the child before its command starts, with
# nothing said (-m 1M did once in three).  Podman's minimum too.
MEMORY_MIN = 6 << 20
PIDS_MAX = 4194304  # PID_MAX_LIMIT on 64-bit machines: pids.max takes no more


def shown(value: str, width: int = 40) -> str:
    """An option's value in a message: '' when empty, cut short when long."""
    return (value if len(value) <= width else value[:width] + "...") or "''"


def is_whole_number(text: str) -> bool:
    """Only the digits 0-9 (str.isdigit() also takes '³' and '５'), and few enough for a
    64-bit number (int() refuses more than 4300 digits with an exception)."""
    return text.isascii() and text.isdigit() and len(text) <= 19


class Options:
    """What the command line asked for."""

    def __init__(self):
        self.rootfs = None  # -r
        self.memory = None  # -m, in bytes
        self.cpu = None  # -c, percent of one CPU
        self.procs = None  # -p
        self.mount_proc = False  # -P
        self.network = False  # -n
        self.overlay = False  # -o
        self.verbose = os.environ.get("ZOOKEEPER_VERBOSE", "").lower() in TRUE_WORDS
        self.help = False
        self.command = []


def parse_size(text: str) -> int:
    """'67108864', '64M', '64m', '1G', '512k' -> bytes."""
    number, unit = text, ""
    if number and number[-1].lower() in SIZE_UNITS:
        number, unit = number[:-1], number[-1].lower()
    size = int(number) * SIZE_UNITS[unit] if is_whole_number(number) else 0
    if not 0 < size <= LARGEST:
        raise ZooError(f"-m {shown(text)}: not a memory size (bytes, or with a unit: 64M, 1G)")
    if size < MEMORY_MIN:
        raise ZooError(f"-m {shown(text)}: too little memory to start a container in "
                       f"({MEMORY_MIN >> 20}M at least)")
    return size


def parse_cpu(text: str) -> float:
    """'50' or '12.5' -> percent of one CPU; up to 100 per CPU of this machine."""
    whole, _, fraction = text.partition(".")
    ok = is_whole_number(whole) and (is_whole_number(fraction) or not fraction)
    percent = float(text) if ok else -1
    ncpu = os.cpu_count() or 1
    if not CPU_MIN <= percent <= 100 * ncpu:
        raise ZooError(f"-c {shown(text)}: not a CPU percentage ({CPU_MIN:g} or more, at "
                       f"most {100 * ncpu} on this machine's {ncpu} CPUs)")
    return percent


def parse_procs(text: str) -> int:
    if not is_whole_number(text) or not 0 < int(text) <= PIDS_MAX:
        raise ZooError(f"-p {shown(text)}: not a number of processes (a whole number, 1 to "
                       f"{PIDS_MAX})")
    return int(text)


def parse_args(argv: list[str]) -> Options:
    """Parse zookeeper's arguments; options stop at the command's name."""
    opts = Options()
    # getopt(3)'s rules: options come first, alone or grouped (-P -n, -Pn); the first
    # word that is not an option, or "--", ends them, so the command keeps its own.
    try:
        pairs, command = getopt.getopt(argv, SHORT_OPTIONS)
    except getopt.GetoptError as e:  # "option -x not recognized"
        raise UsageError(e.msg) from None
    for flag, value in pairs:
        if flag == "-h":
            opts.help = True
        elif flag == "-r":
            if not value:
                raise ZooError("-r '': the rootfs must be a directory, not an empty path")
            opts.rootfs = value
        elif flag == "-m":
            opts.memory = parse_size(value)
        elif flag == "-c":
            opts.cpu = parse_cpu(value)
        elif flag == "-p":
            opts.procs = parse_procs(value)
        elif flag == "-P":
            opts.mount_proc = True
        elif flag == "-n":
            opts.network = True
        elif flag == "-o":
            opts.overlay = True
        elif flag == "-v":
            opts.verbose = True
    opts.command = command
    if not command and not opts.help:
        raise UsageError("no command given")
    if opts.overlay and not opts.rootfs:
        raise ZooError("-o needs -r <dir>: the overlay goes on top of the rootfs")
    return opts
