#!/usr/bin/env python3
"""zookeeper: run a command in a container built from the kernel's own primitives.

    python3 zookeeper.py [options] COMMAND [ARG...]        (-h lists the options)

The program is container.py and the modules it imports; this file only starts it.
Python compiles the script it is given on every run, but keeps what it compiled
of the modules it imports in __pycache__: as a module, container.py loads in
~0.3 ms instead of compiling in ~2 ms, a tenth of a container's start (bench/).
"""

import gc
import os
import signal
import sys

# Hold every signal from zookeeper's first moment: one that would end it (Ctrl-C, kill,
# a closed terminal, ...) during start-up would leave its temporary files.
# container.py lets them in, passed on to the container, once it is running.  (The
# kernel still delivers a signal for a fault of our own, SIGSEGV say: sigprocmask(2).)
# The mask is set, not added to, so that container.py can clear it: one our caller
# blocked (the mask is inherited) would never reach us, the timer of the grace period
# (SIGALRM) among them.
signal.pthread_sigmask(signal.SIG_SETMASK, signal.valid_signals())

# No garbage collection passes (Python's gc module): zookeeper's work is its start and
# its end, with no reference cycles worth finding, while each pass visits every
# object, during the imports and after the clone too, where writing to a page the
# child shares copies it (fork(2): copy-on-write).  About 2% of a start (bench/).
gc.disable()

# getopt translates its messages with gettext when it can import it, and gettext
# brings re and locale: ~0.7 ms, and re ~1.5 ms that nothing else of ours needs, 7%
# of a container's start (bench/), to look for a catalog of getopt's messages in
# gettext's default domain, which no system has.  Imported while gettext cannot be
# (None in sys.modules: an import of it raises ImportError), getopt keeps its
# messages as written (getopt.py's own fallback); then gettext is importable again.
if "gettext" not in sys.modules:
    sys.modules["gettext"] = None
    try:
        import getopt  # noqa: F401
    except ImportError:  # a getopt that needs gettext: options.py imports both
        pass
    finally:
        del sys.modules["gettext"]

# The modules are beside this file, where Python looks first, unless told not to:
# python3 -I (sys.flags.isolated), and from Python 3.11 -P or PYTHONSAFEPATH too
# (sys.flags.safe_path, which -I also sets there).
if sys.flags.isolated or getattr(sys.flags, "safe_path", False):
    sys.path.insert(0, os.path.dirname(os.path.realpath(__file__)))

import container  # noqa: E402  (after the signals are held)

if __name__ == "__main__":
    container.main(sys.argv[1:])
