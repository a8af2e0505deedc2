"""Compile a submission's Python modules into a tree of their own, on the host.

    python3 precompile.py SUBMISSION INTO [SKIP...]

INTO gets SUBMISSION's directories (not one named __pycache__, nor one at its top
named SKIP: what grade does not grade), each with only a __pycache__ holding this
Python's compiled form of its modules (as `python3 -m compileall` writes them beside
the sources: cache_from_source's names, the sources' times and sizes recorded).  The
grader's job in the guest lays INTO over its copy of the submission: under TCG the
guest takes seconds to compile what takes a fraction of one here.  A guest whose
Python is another version ignores them (their names carry this one's) and compiles
as before.

Compiling runs none of the student's code.  Still, the sources are the student's:
this runs as a process of its own (grade waits for it a little while, and goes on
without it) with its memory limited; a file reached through a symbolic link is not
read (it could be another student's, or the grader's: its compiled form would
reach the guest); nor is a very large one; what this Python cannot compile is left
to the guest, whose own Python reports it as the student would see it.  Exit
status 1 when anything was left so: the guest then compiles the whole submission.
"""

import importlib.util
import os
import py_compile
import resource
import stat
import sys

LARGEST = 1 << 20  # bytes: a module this large is the guest's to compile, if at all
MEMORY = 1 << 30  # bytes of address space this process may use (setrlimit(2))


def compile_tree(submission: str, into: str, skip=()) -> tuple[int, int]:
    """Compile every module under submission into the same place under into, but in
    a directory named __pycache__ or, at submission's top, one of skip; returns how
    many were compiled, and how many were left to the guest."""
    compiled = left = 0
    for directory, subdirs, files in os.walk(submission):  # never into a linked dir
        subdirs[:] = [d for d in subdirs if d != "__pycache__"
                      and not (directory == submission and d in skip)]
        for name in files:
            source = os.path.join(directory, name)
            if not name.endswith(".py"):
                continue
            relative = os.path.relpath(source, submission)
            target = importlib.util.cache_from_source(os.path.join(into, relative))
            try:
                if not is_plain_file(source):
                    raise ValueError("a link, or too large")
                # Its times and size recorded (the guest's copy keeps them), and its
                # name as the student's tree has it, not the host's path.
                py_compile.compile(source, cfile=target, dfile=relative, doraise=True,
                                   invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
                compiled += 1
            except (py_compile.PyCompileError, OSError, ValueError, RecursionError,
                    MemoryError):
                left += 1  # the guest's Python says what is wrong, if the module is used
    return compiled, left


def is_plain_file(path: str) -> bool:
    """A regular file, not a symbolic link to one, and not too large."""
    try:
        st = os.lstat(path)
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_size <= LARGEST


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY, MEMORY))
    compiled, left = compile_tree(sys.argv[1], sys.argv[2], set(sys.argv[3:]))
    print(f"{compiled} compiled, {left} left to the guest")
    sys.exit(1 if left else 0)  # then the guest compiles the whole submission itself
