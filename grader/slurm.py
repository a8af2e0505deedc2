"""grade CLASS_DIR --slurm [SBATCH OPTIONS...]: a class graded as a Slurm job array.

One array task per submission, each running the same per-student grading as a local
class run (`grade CLASS_DIR --student NAME --no-csv ...`: OUT/NAME/results.json,
report.txt, vm/ or logs/, and OUT/NAME/grading.json last), on whichever node Slurm
puts it; `sbatch --wait` returns when every task has ended, and the caller then
gathers the CSV from each student's grading.json, as `--resume` does.

What this needs of the cluster: this repository, the class directory and --out at the
same paths on every node (a shared filesystem), and on each node what grading needs
there (QEMU and the VM image, or for --local the test user and its Python).

Each task asks for what one grading uses: the VM's 2 vCPUs and 2 GiB plus QEMU's
own (--cpus-per-task=2 --mem=3G); with --local a whole node (--exclusive: two --local
runs as the same user would take each other's /tmp/zoo.* for leftovers).  The
options given after --slurm come after these, so they win (sbatch takes an option's
last value).  The array script and each task's output are kept in OUT/.slurm/.
"""

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path


class SlurmError(Exception):
    pass


def default_options(args) -> list[str]:
    if args.local:
        return ["--exclusive"]
    return ["--cpus-per-task=2", "--mem=3G"]


def array_script(commands: list[list[str]], workdir: Path) -> str:
    """A shell script that runs the SLURM_ARRAY_TASK_ID-th command."""
    lines = ["#!/bin/sh",
             "# Written by grader/grade --slurm: task N grades the Nth submission.",
             f"# Submitted from {workdir}; every path below is absolute.",
             'echo "zoo-grade task $SLURM_ARRAY_TASK_ID on $(hostname)"',
             'case "$SLURM_ARRAY_TASK_ID" in']
    for n, argv in enumerate(commands):
        lines.append(f"{n}) exec {shlex.join(argv)} ;;")
    lines += ['*) echo "no task $SLURM_ARRAY_TASK_ID" >&2; exit 2 ;;', "esac", ""]
    return "\n".join(lines)


def submit_and_wait(commands: list[list[str]], names: list[str], state: Path, args,
                    sbatch_options: list[str], log=print) -> str:
    """Submit one array task per command, wait for all of them; returns the job id.
    Ctrl-C cancels the job (scancel) before it is passed on."""
    sbatch = shutil.which("sbatch")
    if not sbatch:
        raise SlurmError("--slurm: no sbatch on this machine's PATH (Debian: "
                         "apt-get install slurm-client; and a cluster to submit to)")
    state.mkdir(parents=True, exist_ok=True)
    script = state / "array.sh"
    # As bytes: a student's directory name need not be UTF-8, and the task must name
    # that directory, not an escaped form of it.
    script.write_bytes(os.fsencode(array_script(commands, Path.cwd())))
    script.chmod(0o755)
    (state / "tasks.txt").write_bytes(os.fsencode(
        "".join(f"{n}\t{name}\n" for n, name in enumerate(names))))
    argv = ([sbatch, "--parsable", "--wait", f"--array=0-{len(commands) - 1}",
             "--job-name=zoo-grade", f"--output={state}/%A_%a.out"]
            + default_options(args) + list(sbatch_options) + [str(script)])
    log(f"grade: {shlex.join(argv)}")
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            errors="replace")
    job = ""
    try:
        # --parsable: the job id (maybe ";cluster") on the first line, at submission.
        first = proc.stdout.readline().strip()
        job = first.split(";")[0]
        if job:
            log(f"grade: Slurm job {job}: {len(commands)} tasks; each one's output in "
                f"{state}/{job}_N.out (N: {state / 'tasks.txt'})")
        rest, err = proc.communicate()
    except KeyboardInterrupt:
        if job:
            subprocess.run(["scancel", job], check=False)
            print(f"grade: interrupted: scancel {job}", file=sys.stderr)
        proc.kill()
        proc.wait()
        raise
    if not job:
        raise SlurmError(f"sbatch failed (exit {proc.returncode}): "
                         f"{(err.strip().splitlines() or ['no message'])[-1]}")
    if err.strip():
        sys.stderr.write(err)
    # --wait's exit status is the highest of the tasks': a task that lost points exits
    # 1, which is no failure of the grading; the caller reads each grading.json.
    return job
