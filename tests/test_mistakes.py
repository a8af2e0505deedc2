"""Where a student gets stuck, the error says why (issue 13): a copy of a reference
with one mistake made on purpose, run as the unprivileged test user."""

import re
import shutil
import subprocess

from conftest import PARTS, Runner


def mistaken_copy(runner: Runner, part: int, name: str, file: str, old: str, new: str):
    """A copy of part's reference with old replaced by new in file."""
    copy = runner.workdir / f"mistake-{name}" / PARTS[part]
    if not copy.exists():
        shutil.copytree(runner.workdir / PARTS[part], copy)
        source = (copy / file).read_text()
        assert old in source, f"{old!r} is no longer in {file}"
        (copy / file).write_text(source.replace(old, new, 1))
        subprocess.run(["chmod", "-R", "a+rX", str(copy.parent)], check=True)
    return copy / "zookeeper.py"


def test_go_pipe_closed_without_a_byte_is_said(user_runner: Runner):
    """q2 done halfway: the pipe closed, nothing written.  The child says so."""
    script = mistaken_copy(user_runner, 1, "no-go", "container.py",
                           '            os.write(go_write, b"go")\n', "            pass\n")
    done = user_runner.run([user_runner.python, str(script), "true"])
    assert done.returncode == 125
    assert done.stderr == ("zookeeper: the container was never told to go: zookeeper closed "
                           "the go pipe without writing to it\n")


def test_a_bug_in_the_child_says_where_it_was_raised(user_runner: Runner):
    """q10 passing the capability's name where its number goes: ctypes raises in the
    child, which said only "internal error in the container: ArgumentError(...)", even
    with -v.  The line now names the innermost two frames, the student's among them."""
    script = mistaken_copy(user_runner, 3, "cap-name", "security.py",
                           "kernel.sys_prctl(kernel.PR_CAPBSET_DROP, number, shown=name)",
                           "kernel.sys_prctl(kernel.PR_CAPBSET_DROP, name, shown=name)")
    done = user_runner.run([user_runner.python, str(script), "true"])
    assert done.returncode == 125
    assert re.fullmatch(r"zookeeper: internal error in the container: ArgumentError\(.*\) at "
                        r"kernel\.py:\d+ in sys_prctl, from security\.py:\d+ in "
                        r"drop_capabilities\n", done.stderr), done.stderr


def test_pivot_root_einval_names_its_usual_causes(user_runner: Runner, rootfs_for):
    """q14 without the chdir: pivot_root(".", ".") from the host's directory."""
    script = mistaken_copy(user_runner, 4, "no-chdir", "rootfs.py",
                           "        kernel.sys_chdir(new_root)\n", "        pass\n")
    done = user_runner.run([user_runner.python, str(script), "-r", str(rootfs_for(user_runner)),
                            "true"])
    assert done.returncode == 125
    assert len(done.stderr.splitlines()) == 1
    assert done.stderr.startswith("zookeeper: failed to pivot_root to /tmp/zoo.")
    assert ": Invalid argument (see pivot_root(2): new_root must be a mount point" in done.stderr


def test_proc_mounted_at_the_wrong_target_is_said(user_runner: Runner, rootfs_for):
    """q13 mounting at the name "/proc" (the host's, in the child's mount namespace)
    instead of target: the rootfs's /proc is left empty, and the error says so."""
    script = mistaken_copy(user_runner, 4, "proc-target", "rootfs.py",
                           'kernel.sys_mount("proc", target, "proc",',
                           'kernel.sys_mount("proc", "/proc", "proc",')
    done = user_runner.run([user_runner.python, str(script), "-r", str(rootfs_for(user_runner)),
                            "-P", "true"])
    assert done.returncode == 125
    assert len(done.stderr.splitlines()) == 1, done.stderr
    assert done.stderr.startswith("zookeeper: failed to mount at /tmp/zoo.")
    assert done.stderr.endswith("/proc: nothing is mounted on it afterwards (was the mount made "
                                "at another target?)\n")


def block(source: str, q: int) -> str:
    """The lines of exercise q, from its BELOW marker to its ABOVE marker."""
    start = source.index(f"# STUDENT CODE BELOW (q{q})")
    end = source.index(f"# STUDENT CODE ABOVE (q{q})")
    return source[start:end]


def reindented(lines: str, like: str) -> str:
    """lines (a block cut at its marker) indented as like is: the skeleton keeps the
    stage guards that a part drops, so its blocks sit deeper."""
    def indent(text):
        line = text.splitlines()[1]
        return line[:len(line) - len(line.lstrip())]

    theirs, ours = indent(lines), indent(like)
    head, *rest = lines.split("\n")
    return "\n".join([head] + [ours + line[len(theirs):] if line.startswith(theirs) else line
                               for line in rest])


def test_part3_meets_its_exercises_in_the_readmes_order(user_runner: Runner):
    """Part 2 done, part 3's blocks (q9, q10) as the skeleton has them: q9 is met first."""
    skeleton = user_runner.workdir / "skeleton"
    copy = user_runner.workdir / "undone-part3" / PARTS[3]
    if not copy.exists():
        shutil.copytree(user_runner.workdir / PARTS[3], copy)
        for name, q in (("container.py", 9), ("security.py", 10)):
            ours, given = (copy / name).read_text(), (skeleton / name).read_text()
            ours = ours.replace(block(ours, q), reindented(block(given, q), block(ours, q)))
            if "not_implemented" not in ours.split("\n\n\n")[0]:
                ours = ours.replace("import kernel\n",
                                    "import kernel\nfrom exercise import not_implemented\n", 1)
            (copy / name).write_text(ours)
        shutil.copy(skeleton / "exercise.py", copy / "exercise.py")
        subprocess.run(["chmod", "-R", "a+rX", str(copy.parent)], check=True)
    done = user_runner.run([user_runner.python, str(copy / "zookeeper.py"), "true"])
    assert done.returncode == 125
    assert done.stderr.startswith("zookeeper: q9 (part 3) is not implemented yet"), done.stderr


def test_a_child_that_runs_the_parents_code_is_said_and_kills_nothing(user_runner: Runner):
    """q1 without `if pid == 0: child_main(...)`, q2-q5 done, in the skeleton's copy:
    the child ran the parent's code with a pid of 0, and its cleanup's kill(0,
    SIGKILL) killed its whole process group, the student's shell or make included,
    without a word.  Now the child says which exercise, once, and nothing is killed."""
    skeleton = user_runner.workdir / "skeleton"
    copy = user_runner.workdir / "no-child-main" / PARTS[1]
    if not copy.exists():
        shutil.copytree(skeleton, copy)
        ours, done = (copy / "container.py").read_text(), (
            user_runner.workdir / PARTS[1] / "container.py").read_text()
        for q in range(1, 6):
            ours = ours.replace(block(ours, q), reindented(block(done, q), block(ours, q)))
        forgotten = ("        if pid == 0:\n"
                     "            child_main(container, go_read, go_write, error_read, "
                     "error_write)\n")
        assert forgotten in ours
        (copy / "container.py").write_text(ours.replace(forgotten, ""))
        subprocess.run(["chmod", "-R", "a+rX", str(copy.parent)], check=True)
    done = user_runner.run(["sh", "-c", '"$@"; echo "the shell lives: $?"', "sh",
                            user_runner.python, str(copy / "zookeeper.py"), "true"])
    assert done.stdout == "the shell lives: 125\n", done
    assert done.stderr == ("zookeeper: the child ran the parent's code: call child_main() "
                           "where clone returned 0 (q1)\n")


def test_a_copy_named_otherwise_says_so(user_runner: Runner):
    """A copy finds its part from its name: one named otherwise stops in one line."""
    copy = user_runner.workdir / "renamed" / "mycopy"
    if not copy.exists():
        shutil.copytree(user_runner.workdir / "skeleton", copy)
        subprocess.run(["chmod", "-R", "a+rX", str(copy.parent)], check=True)
    done = user_runner.run([user_runner.python, str(copy / "zookeeper.py"), "true"])
    assert done.returncode == 125
    assert done.stderr == ("zookeeper: cannot tell which part mycopy/ is: a copy finds its "
                           "part from its directory's name, partN_... (part1_clone, "
                           "part2_namespaces, ...): rename it\n")
