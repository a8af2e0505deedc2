#!/usr/bin/env python3
"""zookeeper: run a command in a container built from the kernel's own primitives.

    python3 zookeeper.py [options] COMMAND [ARG...]        (-h lists the options)

The program is container.py and the modules it imports; this file only starts it.
Python compiles the script it is given on every run, but keeps what it compiled
of the modules it imports in __pycache__: as a module, container.py loads in
~0.3 ms instead of compiling in ~2 ms, a tenth of a container's start (bench/).
"""

import sys

import container

if __name__ == "__main__":
    container.main(sys.argv[1:])
