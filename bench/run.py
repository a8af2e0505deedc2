#!/usr/bin/env python3
"""zookeeper's benchmarks: how fast a container starts and talks, against the runtimes
people use, and how fast the grader grades.  One command (`make bench`):

    python3 bench/run.py [--quick] [--json FILE] [--user NAME] [--rounds N]
                         [--no-network] [--no-grading] [--grade-count N] [--jobs J]

Prints a table and writes the results as JSON (default build/bench.json).  Every
result is a number or the reason there is none.  Targets are ratios measured in the
same run against references; nothing here asserts a timing.

  start latency     /bin/true, rootless, each part 2-6 beside python3 -c pass,
                    unshare, bubblewrap, runc, crun, podman (startup.py)
  where the time    part 4 and part 6, one traced run each: interpreter start,
  goes              imports, clone, id maps, mounts, pivot_root, exec...
  imports           what each option makes zookeeper import, and what it costs
  network           iperf3 through zookeeper's veth and slirp4netns paths, beside a
                    raw veth pair, slirp4netns and pasta (throughput.py; root)
  grading           the grader's VM: a boot-only VM, then one submission graded and
                    its time split (boot, each part's checks, teardown) against the
                    boot-only VM, N with --jobs (grading.py; slow)

--quick (CI): few rounds, no network or grading, well under a minute.
Run it as root to measure everything: the rootless runs then switch to the test user
(zootest, made by tools/setup-test-env.sh); as an ordinary user, the root-only parts
say so.
"""

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import grading
import startup
import throughput
from common import PARTS, ROOT, Identity, chown_tree, copy_parts, entry, median

SCHEMA = 1


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true",
                    help="CI: few rounds, no network throughput, no VM grading")
    ap.add_argument("--json", type=Path, default=ROOT / "build" / "bench.json",
                    help="where the results go (default build/bench.json)")
    ap.add_argument("--user", help="as root: run the rootless measurements as this user "
                    "(default $ZOOKEEPER_TEST_USER or zootest)")
    ap.add_argument("--rounds", type=int, help="timed rounds of start latency (30; quick 5)")
    ap.add_argument("--warmup", type=int, help="warm-up rounds (3; quick 1)")
    ap.add_argument("--traces", type=int, help="traced runs per phase breakdown (7; quick 1)")
    ap.add_argument("--no-network", action="store_true", help="skip network throughput")
    ap.add_argument("--net-rounds", type=int, default=3)
    ap.add_argument("--net-seconds", type=int, default=3, help="iperf3 -t (after 1 s omitted)")
    ap.add_argument("--no-grading", action="store_true", help="skip the VM grading")
    ap.add_argument("--grade-count", type=int, default=2, help="submissions in the batch")
    ap.add_argument("--jobs", type=int, default=2, help="grader/grade --jobs for the batch")
    ap.add_argument("--grade-timeout", type=float, default=1800)
    ap.add_argument("--seed", type=int, default=1, help="the shuffle of each round's order")
    ap.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = ap.parse_args(argv)
    args.rounds = args.rounds or (5 if args.quick else 30)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 3)
    args.traces = args.traces or (1 if args.quick else 7)
    return args


def host_info(ident: Identity) -> dict:
    def version(argv):
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
            return (done.stdout or done.stderr).splitlines()[0].strip()
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return None

    cgroup = "v2" if os.path.exists("/sys/fs/cgroup/cgroup.controllers") else (
        "hybrid" if os.path.isdir("/sys/fs/cgroup/unified") or os.path.ismount(
            "/sys/fs/cgroup/systemd") else "v1")
    return {"kernel": platform.release(), "cpus": os.cpu_count(), "cgroups": cgroup,
            "python": version([ident.python, "--version"]), "python_path": ident.python,
            "runc": version(["runc", "--version"]), "crun": version(["crun", "--version"]),
            "bwrap": version(["bwrap", "--version"]), "podman": version(["podman", "--version"]),
            "slirp4netns": version(["slirp4netns", "--version"]),
            "iperf3": version(["iperf3", "--version"]),
            "date": time.strftime("%Y-%m-%d %H:%M:%S %z"), "user": ident.describe(),
            "load_before": os.getloadavg()[0]}


def rootfs_tar(dest: Path) -> str:
    """The busybox rootfs tarball (tools/mkrootfs.py); '' or the reason it failed."""
    done = subprocess.run([sys.executable, str(ROOT / "tools" / "mkrootfs.py"), "busybox",
                           str(dest)], capture_output=True, text=True)
    if done.returncode != 0:
        return (done.stderr.strip().splitlines() or ["mkrootfs failed"])[-1]
    dest.chmod(0o644)
    return ""


# Start latency, phases, imports ----------------------------------------------------------


def latency_section(args, ident, work: Path, parts) -> dict:
    fs = work / "fs"
    subjects = startup.subjects(ident, work, fs, parts)
    tar = work.parent / "zoo-fs.tar"
    problem = ident.problem or rootfs_tar(tar)
    if not problem:
        chown_tree(work, ident)
        problems = ident.call(startup.prepare_user_files, str(work), str(tar), subjects)
        for s in subjects:
            if s.get("bundle") in problems:
                s["reason"] = problems[s["bundle"]]
    if problem:
        for s in subjects:
            s.setdefault("reason", problem)
        timed = {}
    else:
        runnable = [s for s in subjects if "argv" in s and "reason" not in s]
        log(f"bench: start latency: {len(runnable)} subjects, {args.warmup} warm-up and "
            f"{args.rounds} timed rounds, as {ident.describe()}")
        timed = ident.call(startup.time_rounds, runnable, ident.env(), args.warmup,
                           args.rounds, args.seed)
    entries = startup.latency_entries(subjects, timed)
    return {"how": f"rootless, as {ident.describe()}; /bin/true in the busybox rootfs; "
                   f"{args.warmup} warm-up + {args.rounds} rounds in shuffled order; "
                   "median start-to-exit (posix_spawn to waitpid); ratios: median of the "
                   "per-round ratios",
            "rounds": args.rounds, "warmup": args.warmup, "entries": entries,
            "targets": startup.target_entries(entries), "problem": problem}


def phases_section(args, ident, work: Path, parts, latency) -> dict:
    fs = work / "fs"
    medians = {e["name"]: e["value"] for e in latency["entries"]}
    out = {"how": f"{args.traces} run(s) with -X importtime and -v, each stderr line "
                  "timestamped on arrival; the time since the previous line goes to the "
                  "phase of the line that ends it; each phase's median over the runs",
           "runs": []}
    for part in (4, 6):
        name = f"zookeeper part {part}"
        if latency["problem"] or part not in parts:
            reason = latency["problem"] or f"{PARTS[part]}/ is not there yet"
            out["runs"].append(entry(name, unit="ms", reason=reason))
            continue
        argv = [ident.python, "-X", "importtime", str(work / PARTS[part] / "zookeeper.py"),
                "-v", "-r", str(fs), "/bin/true"]
        traces = ident.call(startup.traced_runs, argv, ident.env(), args.traces)
        result = startup.phase_medians(traces)
        if not result:
            out["runs"].append(entry(name, unit="ms", reason="the traced runs failed: " + next(
                (line for _, line in traces[0]["lines"][-1:]), "no output")))
            continue
        out["runs"].append(entry(name, result.pop("total_ms"), "ms", command=argv,
                                 untraced_median_ms=medians.get(name), **result))
    return out


def import_configs(ident, work: Path, parts) -> list[dict]:
    fs = str(work / "fs")
    wanted = [("part 2", 2, []), ("part 3", 3, []), ("part 4", 4, []),
              ("part 4 -r", 4, ["-r", fs]), ("part 6 -r", 6, ["-r", fs]),
              ("part 6 -r -n (root)", 6, ["-r", fs, "-n"])]
    out = []
    for name, part, options in wanted:
        c = {"name": name, "root": name.endswith("(root)")}
        if part not in parts:
            c["reason"] = f"{PARTS[part]}/ is not there yet"
        elif c["root"] and os.geteuid() != 0:
            c["reason"] = "-n takes the veth path (pyroute2) only as root"
        else:
            c["argv"] = [ident.python, "-X", "importtime",
                         str(work / PARTS[part] / "zookeeper.py"), *options, "/bin/true"]
        out.append(c)
    return out


def imports_section(args, ident, work: Path, parts, latency) -> dict:
    configs = import_configs(ident, work, parts)
    count = 1 if args.quick else 5
    texts = {}
    if latency["problem"]:
        for c in configs:
            c.setdefault("reason", latency["problem"])
    user = [c for c in configs if "argv" in c and not c["root"]]
    root = [c for c in configs if "argv" in c and c["root"]]
    if user:
        texts.update(ident.call(startup.importtime_runs, user, ident.env(), count))
    if root:
        env = dict(os.environ, PATH=os.path.dirname(ident.python) + ":" + os.environ["PATH"])
        texts.update(startup.importtime_runs(root, env, count))
    columns, modules = [], {}
    for c in configs:
        runs = texts.get(c["name"], [])
        failed = [t for t in runs if t.startswith("FAILED")]
        reason = c.get("reason") or (failed[0] if failed else "")
        if reason:
            columns.append(entry(c["name"], unit="ms", reason=reason))
            continue
        per_module = {}
        for text in runs:
            seen = {}
            for module, ms in startup.top_level_imports(text.splitlines()):
                seen[module] = seen.get(module, 0.0) + ms
            for module, ms in seen.items():
                per_module.setdefault(module, []).append(ms)
        costs = {m: round(median(v), 3) for m, v in per_module.items()}
        for m, ms in costs.items():
            modules.setdefault(m, {})[c["name"]] = ms
        columns.append(entry(c["name"], sum(costs.values()), "ms", modules=costs,
                             command=c["argv"], runs=len(runs)))
    return {"how": f"python3 -X importtime, {count} run(s) per column, median; top-level "
                   "imports after the interpreter's own start (a module's imports count in "
                   "its time)", "columns": columns, "modules": modules}


# The table ---------------------------------------------------------------------------------


def fmt(value, spec=".1f", none="-") -> str:
    return none if value is None else format(value, spec)


def print_table(results: dict, out=sys.stdout) -> None:
    w = out.write
    lat = results["latency"]
    host = results["host"]
    w(f"\nHost: Linux {host['kernel']}, {host['cpus']} CPUs, cgroups {host['cgroups']}, "
      f"{host['python']}; load average {host['load_before']:.1f} before, "
      f"{host['load_after']:.1f} after\n")
    w(f"\nStart latency: /bin/true, rootless ({host['user']}), "
      f"median of {lat['rounds']} rounds\n")
    w(f"  {'':<30} {'ms':>7} {'x python':>9} {'x runc':>7}  notes\n")
    for e in lat["entries"]:
        if e["reason"]:
            w(f"  {e['name']:<30} {'-':>7} {'':>9} {'':>7}  {e['reason']}\n")
        else:
            w(f"  {e['name']:<30} {e['value']:>7.1f} {fmt(e.get('ratio_to_python'), '.2f'):>9}"
              f" {fmt(e.get('ratio_to_runc'), '.2f'):>7}  {e.get('note', '')}\n")
    for t in lat["targets"]:
        verdict = (f"{t['value']:.2f}x (target <= {t['target_at_most']}x: "
                   f"{'met' if t['met'] else 'NOT met'})") if not t["reason"] else t["reason"]
        w(f"  target: {t['name']}: {verdict}\n")
        bound = t.get("lower_bound")
        if bound and not t["reason"]:
            w(f"    lower bound in this run: the floor {bound['floor']:.2f}x + loading part 4's "
              f"modules {bound['modules']:.2f}x = {bound['value']:.2f}x\n")
    for run in results["phases"]["runs"]:
        w(f"\nWhere the time goes: {run['name']} -r ROOTFS /bin/true")
        if run["reason"]:
            w(f": {run['reason']}\n")
            continue
        w(f"\n  median of {run['traced_runs']} traced runs: {run['value']:.1f} ms (untraced: "
          f"{fmt(run.get('untraced_median_ms'))} ms); per phase, median ms:\n")
        for phase, ms in run["phases"]:
            w(f"  {phase:<52} {ms:>6.1f} ms {100 * ms / run['sum_of_phases_ms']:>4.0f}%\n")
        top = sorted(run["imports"], key=lambda x: -x[1])[:6]
        w("  imports: " + ", ".join(f"{m} {ms:.1f}" for m, ms in top) + " (ms)\n")
    imp = results["imports"]
    cols = imp["columns"]
    w("\nImports each option pays for (ms, python3 -X importtime, top-level modules)\n")
    w(f"  {'module':<14}" + "".join(f"{c['name'].replace(' (root)', '*'):>14}" for c in cols)
      + "\n")
    rows = sorted(imp["modules"].items(), key=lambda kv: -max(kv[1].values()))
    for module, costs in rows[:16]:
        w(f"  {module:<14}" + "".join(
            f"{('-' if c['reason'] else fmt(costs.get(c['name']), '.1f', '')):>14}"
            for c in cols) + "\n")
    w(f"  {'total':<14}" + "".join(f"{fmt(c['value']):>14}" for c in cols) + "\n")
    for c in cols:
        if c["reason"]:
            w(f"  {c['name']}: {c['reason']}\n")
    w("  (* as root: -n takes the veth path, through pyroute2)\n")
    net = results["network"]
    w("\nNetwork throughput: container -> iperf3 server on a host address (Gbit/s)\n")
    for e in net["entries"]:
        if e["reason"]:
            w(f"  {e['name']:<46} {'-':>7}  {e['reason']}\n")
            continue
        stalls = (f", {e['stalled_intervals']} stalled 1-s intervals"
                  if e.get("stalled_intervals") else "")
        w(f"  {e['name']:<46} {e['value']:>7.2f}  ({e['min']:.2f}-{e['max']:.2f}, "
          f"{e['runs']} runs{stalls})\n")
    for r in net["ratios"]:
        target = (f" (target >= {r['target_at_least']}x: {'met' if r.get('met') else 'NOT met'})"
                  if r.get("target_at_least") and not r["reason"] else "")
        w(f"  ratio {r['name']}: " + (f"{r['value']:.2f}x{target}" if not r["reason"]
                                      else r["reason"]) + "\n")
    if net.get("rootless_how"):
        w(f"  rootless paths: {net['rootless_how']}\n")
    w("\nGrading throughput (grader VM)\n")
    for line in grading.table(results["grading"]):
        w(line + "\n")
    w("\n")


# Main -----------------------------------------------------------------------------------


def main(argv=None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    ident = Identity(args.user)
    scratch = Path(tempfile.mkdtemp(prefix="zk-bench-"))
    scratch.chmod(0o755)
    work = scratch / "u"
    work.mkdir()
    ident.cwd = str(work)
    results = {"schema": SCHEMA, "mode": "quick" if args.quick else "full",
               "host": host_info(ident)}
    try:
        parts = copy_parts(work)
        shutil.copy(ROOT / "bench" / "floor.py", work / "floor.py")
        results["parts"] = [PARTS[p] for p in parts]
        results["latency"] = latency_section(args, ident, work, parts)
        log("bench: where the time goes")
        results["phases"] = phases_section(args, ident, work, parts, results["latency"])
        log("bench: imports per option")
        results["imports"] = imports_section(args, ident, work, parts, results["latency"])
        if args.quick or args.no_network:
            results["network"] = throughput.skipped(
                "skipped in --quick mode" if args.quick else "skipped (--no-network)")
        else:
            log(f"bench: network throughput ({args.net_rounds} rounds)")
            results["network"] = throughput.run(ident, work, parts, ident.python,
                                                args.net_seconds, args.net_rounds, args.seed,
                                                log=log)
        if args.quick or args.no_grading:
            results["grading"] = grading.skipped(
                "skipped in --quick mode" if args.quick else "skipped (--no-grading)")
        else:
            results["grading"] = grading.run(scratch / "grading", args.grade_count, args.jobs,
                                             args.grade_timeout, log=log)
    finally:
        if args.keep:
            log(f"bench: kept {scratch}")
        else:
            shutil.rmtree(scratch, ignore_errors=True)
    results["host"]["load_after"] = os.getloadavg()[0]
    results["seconds"] = round(time.monotonic() - started, 1)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(results, indent=1) + "\n")
    print_table(results)
    print(f"bench: {results['seconds']:.0f} s; results in {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
