"""Stage 1 (part1_clone): mistakes students make in q1-q5.  Data only: tools/mutate.py
reads MUTANTS as literals.  Each `edit` is a list of (old, new): old, in the stage's
part, exactly once, becomes new."""

MUTANTS = [
    {
        "id": "fds-reach-command",
        "exercise": "q5",
        "file": "container.py",
        "why": "the caller's open fds reach the command (runc's CVE-2024-21626 class): "
               "no close_range(2) before exec",
        "fast": True,
        "edit": [("    kernel.sys_close_range(3, kernel.CLOSE_RANGE_CLOEXEC)\n", "")],
    },
    {
        "id": "signals-not-reset",
        "exercise": "q5",
        "file": "container.py",
        "why": "the command starts with Python's ignored SIGPIPE and SIGXFSZ: "
               "`yes | head -1` prints Broken pipe",
        "edit": [("    signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"
                  "    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)\n", "")],
    },
]
