"""The command line, as the course hands it out, parsed with getopt(3)'s rules.

Option values are checked here, in every part, so nonsense gets one line and 125
even in a part that does not use the option yet.
"""

import os

from errors import ZooError

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

FLAGS = "hPnov"  # options alone
WITH_VALUE = "rmcp"  # options followed by a value: -r DIR or -rDIR
SIZE_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}


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
        self.verbose = os.environ.get("ZOOKEEPER_VERBOSE", "") not in ("", "0")
        self.help = False
        self.command = []


def parse_size(text: str) -> int:
    """'67108864', '64M', '64m', '1G', '512k' -> bytes."""
    number, unit = text.strip(), ""
    if number[-1:].lower() in SIZE_UNITS:
        number, unit = number[:-1], number[-1].lower()
    if not number.isdigit() or int(number) == 0:
        raise ZooError(f"-m {text}: not a memory size (bytes, or with a unit: 64M, 1G)")
    return int(number) * SIZE_UNITS[unit]


def parse_cpu(text: str) -> float:
    """'50' -> 50.0 percent of one CPU; up to 100 per CPU of this machine."""
    try:
        percent = float(text)
    except ValueError:
        percent = -1
    ncpu = os.cpu_count() or 1
    if not 0 < percent <= 100 * ncpu or percent != percent:
        raise ZooError(f"-c {text}: not a CPU percentage (more than 0, at most "
                       f"{100 * ncpu} on this machine's {ncpu} CPUs)")
    return percent


def parse_procs(text: str) -> int:
    if not text.isdigit() or int(text) == 0:
        raise ZooError(f"-p {text}: not a number of processes (a whole number, 1 or more)")
    return int(text)


def split_options(argv: list[str]):
    """getopt(3)'s rules (Python's getopt module would cost ~4 ms of imports): options
    come first, alone or grouped (-P -n, -Pn), with their value next (-r DIR, -rDIR);
    the first word that is not an option, or "--", ends them.  Returns the
    (option, value) pairs and the command."""
    pairs, i = [], 0
    while i < len(argv) and argv[i].startswith("-") and argv[i] != "-":
        word = argv[i]
        i += 1
        if word == "--":
            break
        for at, letter in enumerate(word[1:], start=1):
            if letter in FLAGS:
                pairs.append((f"-{letter}", ""))
            elif letter in WITH_VALUE:
                value = word[at + 1:]
                if not value:
                    if i == len(argv):
                        raise ZooError(f"option -{letter} requires argument\n{USAGE}")
                    value, i = argv[i], i + 1
                pairs.append((f"-{letter}", value))
                break
            else:
                raise ZooError(f"option -{letter} not recognized\n{USAGE}")
    return pairs, argv[i:]


def parse_args(argv: list[str]) -> Options:
    """Parse zookeeper's arguments; options stop at the command's name."""
    opts = Options()
    pairs, command = split_options(argv)
    for flag, value in pairs:
        if flag == "-h":
            opts.help = True
        elif flag == "-r":
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
        raise ZooError(f"no command given\n{USAGE}")
    if opts.overlay and not opts.rootfs:
        raise ZooError("-o needs -r <dir>: the overlay goes on top of the rootfs")
    return opts
