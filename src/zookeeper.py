#!/usr/bin/env python3
"""zookeeper: run a command in a container built from the kernel's own primitives.

    python3 zookeeper.py [options] COMMAND [ARG...]        (-h lists the options)

The program is container.py and the modules it imports; this file only starts it.
Python compiles the script it is given on every run, but keeps what it compiled
of the modules it imports in __pycache__: as a module, container.py loads in
~0.3 ms instead of compiling in ~2 ms, a tenth of a container's start (bench/).
"""

import signal
import sys

# Hold the signals that would end zookeeper (Ctrl-C, kill, a closed terminal, Ctrl-\)
# from its first moment: a signal during start-up would leave its temporary files.
# container.py lets them in, passed on to the container, once it is running.
signal.pthread_sigmask(signal.SIG_BLOCK, (signal.SIGINT, signal.SIGTERM, signal.SIGHUP,
                                          signal.SIGQUIT))

import container  # noqa: E402  (after the signals are held)

if __name__ == "__main__":
    container.main(sys.argv[1:])
