"""Start latency: start-to-exit of /bin/true in the busybox rootfs, rootless.

Every subject (each zookeeper part, and the references: `python3 -c pass` on the
same interpreter, unshare + chroot, bubblewrap, runc, crun, podman) runs once per
round, in a shuffled order; after warm-up rounds, each subject's median is taken,
and each ratio is the median of the per-round ratios (two subjects of one round ran
a fraction of a second apart, so a slow spell of the machine hits both).

The timed runs are spawned (posix_spawn(3)) and reaped by a fork of this process
that became the test user: nothing (no setpriv, no shell) stands between the clock
and the command.

"Where the time goes" runs a part once more with -X importtime and -v (explain mode),
timestamps each line of its stderr as it arrives, and splits the run's wall time into
phases: interpreter start, imports, clone, id maps, mounts, pivot_root, exec...
"""

import json
import os
import random
import re
import shutil
import signal
import subprocess
import time
from pathlib import Path

from common import PARTS, Identity, entry, first_line, median, paired_ratio, quartiles

PYTHON_REF = "python3 -c pass"
CTYPES_REF = "python3: import ctypes, _exit"
MODULES_REF = "python3: part 4's modules"
FLOOR_REF = "Python floor (bench/floor.py)"
# What `zookeeper.py -r ROOTFS /bin/true` of part 4 imports at top level (a test
# checks it against -X importtime of the real run).
# What part 4's zookeeper.py imports: container.py imports every module it uses at
# its top (idmap, security, rootfs, options, kernel, ...), as a part is written.
PART4_MODULES = ("container",)
RUNC_REF = "runc"
TARGETS = [  # (subject, reference, at most): reported, never asserted
    ("zookeeper part 4", RUNC_REF, 1.0),
    ("zookeeper part 4", PYTHON_REF, 1.6),
]
DEVNULL_ACTIONS = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
                   (os.POSIX_SPAWN_OPEN, 2, os.devnull, os.O_WRONLY, 0)]


def zk_name(part: int) -> str:
    return f"zookeeper part {part}"


# The subjects ----------------------------------------------------------------------


def subjects(ident: Identity, work: Path, fs: Path, parts: list[int]) -> list[dict]:
    """What to time: name, argv ('{id}' becomes a fresh container id per run), and
    a reason when it cannot run here before even trying."""
    out = [{"name": PYTHON_REF, "kind": "reference", "argv": [ident.python, "-c", "pass"],
            "note": f"same interpreter ({ident.python})"},
           {"name": CTYPES_REF, "kind": "reference",
            "argv": [ident.python, "-c", "import ctypes, os; os._exit(0)"],
            "note": "the interpreter and ctypes, left with _exit(2) as zookeeper does"},
           modules_subject(ident, work, parts),
           {"name": FLOOR_REF, "kind": "reference",
            "argv": [ident.python, str(work / "floor.py"), str(fs), "/bin/true"],
            "note": "ctypes, clone, newuidmap+newgidmap, pivot_root, exec: nothing else"}]
    for part in range(2, 7):
        s = {"name": zk_name(part), "kind": "zookeeper"}
        if part not in parts:
            s["reason"] = f"{PARTS[part]}/ is not there yet"
        else:
            script = str(work / PARTS[part] / "zookeeper.py")
            rootfs = ["-r", str(fs)] if part >= 4 else []
            s["argv"] = [ident.python, script, *rootfs, "/bin/true"]
            s["note"] = "-r ROOTFS" if rootfs else "no -r (no rootfs before part 4)"
        out.append(s)
    tools = {name: shutil.which(name, path=ident.env()["PATH"])
             for name in ("unshare", "bwrap", "runc", "crun", "podman")}
    out.append(tool_subject("unshare -Urmpiuf + chroot", tools["unshare"], "util-linux",
                            ["-Urmpiuf", "--mount-proc", "-R", str(fs), "/bin/true"],
                            "--root is chroot(2); proc mounted inside"))
    out.append(tool_subject("bubblewrap", tools["bwrap"], "bubblewrap",
                            ["--unshare-all", "--bind", str(fs), "/", "--proc", "/proc",
                             "--dev", "/dev", "/bin/true"], "--unshare-all"))
    for runtime in ("runc", "crun"):
        state = str(work / f"state-{runtime}")
        out.append(tool_subject(runtime, tools[runtime], runtime,
                                ["--root", state, "run", "--bundle",
                                 str(work / f"bundle-{runtime}"), "{id}"],
                                "rootless OCI bundle from `spec --rootless`", bundle=runtime))
    state = str(work / "state-runc")
    out.append(tool_subject("runc, 7 namespaces", tools["runc"], "runc",
                            ["--root", state, "run", "--bundle", str(work / "bundle-runc7"),
                             "{id}"], "+ network and cgroup namespaces, as zookeeper",
                            bundle="runc7"))
    out.append(tool_subject("podman", tools["podman"], "podman",
                            ["run", "--rm", "--network=none", "--rootfs", str(fs), "/bin/true"],
                            "podman run --rootfs"))
    return out


def modules_subject(ident: Identity, work: Path, parts: list[int]) -> dict:
    """Part 4's modules imported, and nothing run: what loading zookeeper's own code
    costs, beside the ctypes reference (which pays the same interpreter and ctypes)."""
    s = {"name": MODULES_REF, "kind": "reference",
         "note": f"{', '.join(PART4_MODULES)} and what it imports, then _exit(2): no "
                 "container"}
    if 4 not in parts:
        s["reason"] = f"{PARTS[4]}/ is not there yet"
        return s
    code = (f"import sys; sys.path[0] = {str(work / PARTS[4])!r}; "
            f"import {', '.join(PART4_MODULES)}; import os; os._exit(0)")
    s["argv"] = [ident.python, "-c", code]
    return s


def tool_subject(name, path, package, args, note, bundle=None) -> dict:
    s = {"name": name, "kind": "reference", "note": note}
    if bundle:
        s["bundle"] = bundle
    if path is None:
        s["reason"] = f"not installed (apt-get install {package})"
    else:
        s["argv"] = [path, *args]
    return s


# In the worker, as the test user ----------------------------------------------------


def prepare_user_files(work: str, tar: str, subjects_: list[dict]) -> dict:
    """Unpack the rootfs as the user (umask 0, as the course does: the files are then
    root's inside the user's containers) and write the OCI bundles.  Returns
    {bundle: reason} for the bundles that could not be made."""
    fs = Path(work) / "fs"
    fs.mkdir()
    old = os.umask(0)
    try:
        subprocess.run(["tar", "xf", tar, "--no-same-owner", "-C", str(fs)], check=True,
                       capture_output=True)
    finally:
        os.umask(old)
    problems = {}
    for s in subjects_:
        if "bundle" in s and "argv" in s:
            problem = make_bundle(Path(work), s["argv"][0], s["bundle"], fs)
            if problem:
                problems[s["bundle"]] = problem
    return problems


def make_bundle(work: Path, runtime: str, bundle: str, fs: Path) -> str:
    """A rootless OCI bundle: the runtime's own `spec --rootless`, with root.path the
    rootfs, args /bin/true, no terminal; for runc7, the network and cgroup namespaces
    too.  Returns an error line, or ''."""
    directory = work / f"bundle-{bundle}"
    directory.mkdir()
    done = subprocess.run([runtime, "spec", "--rootless"], cwd=directory, capture_output=True,
                          text=True)
    if done.returncode != 0:
        return f"{Path(runtime).name} spec --rootless: {first_line(done.stderr, 'failed')}"
    path = directory / "config.json"
    config = json.loads(path.read_text())
    config["root"] = {"path": str(fs), "readonly": True}
    config["process"]["args"] = ["/bin/true"]
    config["process"]["terminal"] = False
    if bundle == "runc7":
        spaces = config["linux"].setdefault("namespaces", [])
        have = {n["type"] for n in spaces}
        spaces += [{"type": t} for t in ("network", "cgroup") if t not in have]
    path.write_text(json.dumps(config, indent=1))
    return ""


def spawn_wait(argv: list[str], env: dict, actions=DEVNULL_ACTIONS) -> tuple[float, int]:
    """Seconds from posix_spawn to waitpid, and the wait status."""
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions,
                         setsigdef=(signal.SIGPIPE,))
    _, status = os.waitpid(pid, 0)
    return time.perf_counter() - started, status


class Ids:
    """Fresh container names for runc and crun, one per run."""

    def __init__(self):
        self.n = 0

    def argv(self, argv: list[str]) -> list[str]:
        self.n += 1
        return [a.replace("{id}", f"zkb{os.getpid()}-{self.n}") for a in argv]


def probe(s: dict, env: dict, ids: Ids) -> str:
    """Run a subject once, its stderr kept: '' if it works, else its first error line."""
    argv = ids.argv(s["argv"])
    try:
        done = subprocess.run(argv, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=120)
    except subprocess.TimeoutExpired:
        return "did not finish in 120 s"
    except OSError as e:
        return f"{argv[0]}: {e.strerror}"
    if done.returncode == 0:
        return ""
    status = (f"exit status {done.returncode}" if done.returncode > 0
              else f"killed by signal {-done.returncode}")
    return first_line(done.stderr, status)


def time_rounds(subjects_: list[dict], env: dict, warmup: int, rounds: int, seed: int) -> dict:
    """The worker's job: probe, warm up, then time `rounds` shuffled rounds.
    Returns {name: {"times": [seconds or None per round], "reason": ...}}."""
    ids = Ids()
    runnable = []
    out = {}
    for s in subjects_:
        if "argv" not in s:
            continue
        reason = probe(s, env, ids)
        out[s["name"]] = {"times": [], "reason": reason}
        if not reason:
            runnable.append(s)
    rng = random.Random(seed)
    for number in range(warmup + rounds):
        order = runnable[:]
        rng.shuffle(order)
        for s in order:
            result = out[s["name"]]
            if result["reason"]:
                continue
            seconds, status = spawn_wait(ids.argv(s["argv"]), env)
            if status != 0:
                result["reason"] = (f"failed in round {number + 1} "
                                    f"(wait status {status}): {probe(s, env, ids) or 'then ran'}")
            elif number >= warmup:
                result["times"].append(seconds)
        for s in runnable:  # keep the rounds aligned: None where a subject did not run
            if number >= warmup and len(out[s["name"]]["times"]) < number - warmup + 1:
                out[s["name"]]["times"].append(None)
    return out


def traced_run(argv: list[str], env: dict) -> dict:
    """Run once with stderr on a pipe; every line gets the time it arrived (seconds from
    the spawn).  zookeeper writes explain lines with one write(2) each, and Python's
    stderr is line-buffered, so a line arrives when its step ends."""
    read_end, write_end = os.pipe()
    actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
               (os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0),
               (os.POSIX_SPAWN_DUP2, write_end, 2)]
    started = time.perf_counter()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=actions,
                         setsigdef=(signal.SIGPIPE,))
    os.close(write_end)
    lines, partial, reads = [], b"", 0
    while True:
        data = os.read(read_end, 1 << 16)
        now = time.perf_counter() - started
        if not data:
            break
        reads += 1
        partial += data
        *complete, partial = partial.split(b"\n")
        lines += [[now, x.decode(errors="replace")] for x in complete]
    os.close(read_end)
    _, status = os.waitpid(pid, 0)
    return {"lines": lines, "exit": time.perf_counter() - started, "status": status,
            "reads": reads}


def traced_runs(argv: list[str], env: dict, count: int) -> list[dict]:
    return [traced_run(argv, env) for _ in range(count)]


def importtime_runs(configs: list[dict], env: dict, count: int) -> dict:
    """{config name: [stderr of each run]} for runs with -X importtime."""
    out = {}
    for c in configs:
        texts = []
        for _ in range(count):
            done = subprocess.run(c["argv"], env=env, stdin=subprocess.DEVNULL,
                                  capture_output=True, text=True, timeout=120)
            texts.append(done.stderr if done.returncode == 0
                         else f"FAILED {done.returncode}: {first_line(done.stderr)}")
        out[c["name"]] = texts
    return out


# Back in the parent: the numbers -----------------------------------------------------


def latency_entries(subjects_: list[dict], timed: dict) -> list[dict]:
    series = {name: r["times"] for name, r in timed.items() if not r["reason"]}
    entries = []
    for s in subjects_:
        name = s["name"]
        r = timed.get(name)
        reason = s.get("reason") or (r or {}).get("reason") or ("" if r else "not run")
        if reason:
            entries.append(entry(name, unit="ms", reason=reason, kind=s["kind"],
                                 note=s.get("note", "")))
            continue
        times = [t * 1000 for t in series[name] if t is not None]
        q1, q3 = quartiles(times)
        extra = {"kind": s["kind"], "note": s.get("note", ""), "runs": len(times),
                 "min_ms": round(min(times), 3), "q1_ms": round(q1, 3), "q3_ms": round(q3, 3),
                 "command": s["argv"]}
        for ref, key in ((PYTHON_REF, "ratio_to_python"), (RUNC_REF, "ratio_to_runc")):
            if ref in series:
                ratio, pairs = paired_ratio(series[name], series[ref])
                extra[key] = None if ratio is None else round(ratio, 3)
        entries.append(entry(name, median(times), "ms", **extra))
    return entries


def target_entries(entries: list[dict]) -> list[dict]:
    by_name = {e["name"]: e for e in entries}
    out = []
    for subject, ref, limit in TARGETS:
        key = "ratio_to_runc" if ref == RUNC_REF else "ratio_to_python"
        name = f"{subject} / {ref}"
        s, r = by_name.get(subject), by_name.get(ref)
        missing = [x["name"] + ": " + x["reason"] for x in (s, r) if x and x["reason"]]
        if s is None or r is None or missing:
            out.append(entry(name, unit="x", reason="; ".join(missing) or "not measured",
                             target_at_most=limit))
            continue
        ratio = s.get(key)
        extra = {"lower_bound": lower_bound(by_name)} if ref == PYTHON_REF else {}
        out.append(entry(name, ratio, "x", target_at_most=limit,
                         met=ratio is not None and ratio <= limit, **extra))
    return out


def lower_bound(by_name: dict) -> dict | None:
    """The least part 4 could cost in this run, x python3 -c pass: the floor (what any
    Python container start does) plus loading part 4's modules (their reference less
    the ctypes one: the same interpreter, ctypes and _exit on both sides)."""
    parts = [by_name.get(n) for n in (FLOOR_REF, MODULES_REF, CTYPES_REF)]
    if any(p is None or p["reason"] or p.get("ratio_to_python") is None for p in parts):
        return None
    floor, modules, ctypes_only = (p["ratio_to_python"] for p in parts)
    return {"floor": floor, "modules": round(modules - ctypes_only, 3),
            "value": round(floor + modules - ctypes_only, 3)}


IMPORT_RE = re.compile(r"^import time:\s+(\d+)\s+\|\s+(\d+)\s+\| (.*)$")
EXPLAIN_RE = re.compile(r"^zookeeper: (\[\d+\] )?(.*?)(?:\s+(\d+\.\d) ms)?$")


def parse_import(line: str):
    """(cumulative µs, depth, module) of an -X importtime line, or None."""
    m = IMPORT_RE.match(line)
    if not m:
        return None
    rest = m.group(3)
    depth = (len(rest) - len(rest.lstrip(" "))) // 2
    return int(m.group(2)), depth, rest.strip()


def top_level_imports(lines: list[str]) -> list[tuple[str, float]]:
    """[(module, ms)] of the imports made after the interpreter's own start (after
    `site`), top-level ones only (a module's own imports count in its time)."""
    out, after_site = [], False
    for line in lines:
        parsed = parse_import(line)
        if not parsed:
            continue
        cumulative, depth, name = parsed
        if depth == 0:
            if after_site:
                out.append((name, cumulative / 1000))
            elif name == "site":
                after_site = True
    return out


PHASES = [  # (phase, what the explain line starts with)
    ("clone", ("clone(",)),
    ("id maps", ("newuidmap", "newgidmap", "write(/proc/")),
    ("go: the child wakes up, hostname, lo", ("sethostname", "socket(", "ioctl(")),
    ("seccomp program: from the cache (or compiled)",
     ("read the seccomp program", "seccomp_rule_add", "seccomp_export_bpf", "cache the seccomp")),
    ("mounts", ("mkdtemp", "mount(", "mkdir(")),
    ("pivot_root", ("chdir(", "pivot_root(", "umount2(")),
    ("lock-in: capabilities, no_new_privs, seccomp(2)",
     ("prctl(", "capget(", "capset(", "seccomp(")),
    ("exec /bin/true, until it exits", ("execvp(", "waitpid(")),
    ("cleanup", ("rmdir(", "kill(")),
    ("network (-n)", ("posix_spawnp(", "read(ready-fd)", "flock(", "ip ", "import pyroute2",
                      "poll(")),
]
PHASE_ORDER = (["interpreter start (to the end of `site`)", "imports",
                "compile zookeeper.py, run until its first import"]
               + [p for p, _ in PHASES[:-2]]
               + ["cgroups", PHASES[-1][0], "zookeeper's own Python between steps", "cleanup",
                  "interpreter exit", "other"])


def explain_phase(call: str) -> str:
    for phase, starts in PHASES:
        if call.startswith(starts):
            return phase
    if "cgroup" in call.lower():  # also unshare(CLONE_NEWCGROUP)
        return "cgroups"
    return "other"


def phases_of(trace: dict) -> dict:
    """Split one traced run's wall time into phases, from the arrival time of each line:
    the time since the previous line goes to the phase of the line that ends it.  An
    import's own time (importtime's cumulative µs) goes to `imports`, the rest of its
    interval to the Python that ran before it."""
    totals = {}
    imports = []

    def add(phase, ms):
        totals[phase] = totals.get(phase, 0.0) + ms

    previous, after_site, first_import = 0.0, False, True
    for at, line in trace["lines"]:
        if line.startswith("import time: self"):
            continue  # importtime's header: its interval belongs to the next line
        parsed = parse_import(line)
        if parsed:
            cumulative, depth, name = parsed
            if depth:
                continue  # counted in its top-level import, which ends the interval
            interval = (at - previous) * 1000
            if not after_site:
                add("interpreter start (to the end of `site`)", interval)
                after_site = name == "site"
            else:
                own = min(cumulative / 1000, interval)
                imports.append([name, round(cumulative / 1000, 3)])
                add("imports", own)
                add("compile zookeeper.py, run until its first import" if first_import
                    else "zookeeper's own Python between steps", interval - own)
                first_import = False
            previous = at
            continue
        m = EXPLAIN_RE.match(line)
        if m and line.startswith("zookeeper: "):
            add(explain_phase(m.group(2)), (at - previous) * 1000)
        else:
            add("other", (at - previous) * 1000)
        previous = at
    add("interpreter exit", (trace["exit"] - previous) * 1000)
    # A phase whose line came in the same read as the one before it took 0 ms by this
    # clock, but it happened: it is listed.
    ordered = [[p, round(totals[p], 3)] for p in PHASE_ORDER if p in totals]
    ordered += [[p, round(ms, 3)] for p, ms in totals.items() if p not in PHASE_ORDER]
    return {"total_ms": round(trace["exit"] * 1000, 3), "phases": ordered, "imports": imports,
            "lines": len(trace["lines"]), "reads": trace["reads"]}


def phase_medians(traces: list[dict]) -> dict:
    """phases_of() over several traced runs: each phase's median (0 where a run has
    none), so that a slow spell in one run's phase does not stand for the whole; the
    import list and the total are medians too."""
    results = [phases_of(t) for t in traces if t["status"] == 0]
    if not results:
        return {}
    names = []
    for r in results:
        names += [p for p, _ in r["phases"] if p not in names]
    order = {p: n for n, p in enumerate(PHASE_ORDER)}
    names.sort(key=lambda p: order.get(p, len(order)))
    phases = [[p, round(median([dict(r["phases"]).get(p, 0.0) for r in results]), 3)]
              for p in names]
    modules = []
    for r in results:
        modules += [m for m, _ in r["imports"] if m not in modules]
    imports = [[m, round(median([dict(r["imports"]).get(m, 0.0) for r in results]), 3)]
               for m in modules]
    return {"total_ms": round(median([r["total_ms"] for r in results]), 3), "phases": phases,
            "imports": imports, "traced_runs": len(results),
            "sum_of_phases_ms": round(sum(ms for _, ms in phases), 3)}
