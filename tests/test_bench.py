"""The benchmarks work: `bench/run.py --quick` writes a JSON file in which every result is
a number or the reason there is none.  Timings are never asserted: a benchmark reports
ratios measured in one run, and CI only checks that it runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import boot_fake_qemu

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "bench"))

import common  # noqa: E402
import grading  # noqa: E402
import stability  # noqa: E402
import startup  # noqa: E402

SECTIONS = [("latency", "entries"), ("latency", "targets"), ("phases", "runs"),
            ("imports", "columns"), ("network", "entries"), ("network", "ratios"),
            ("grading", "entries")]


def check_entry(e: dict) -> None:
    """A number (value) or a reason, never both, never neither."""
    assert isinstance(e.get("name"), str) and e["name"], e
    has_value = isinstance(e.get("value"), (int, float)) and not isinstance(e["value"], bool)
    has_reason = isinstance(e.get("reason"), str) and e["reason"].strip() != ""
    assert has_value != has_reason, f"needs a number or a reason, not both: {e}"
    if has_value:
        assert e["value"] >= 0, e


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("bench") / "bench.json"
    done = subprocess.run([sys.executable, str(ROOT / "bench" / "run.py"), "--quick",
                           "--json", str(out)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(out.read_text()), done.stdout


@pytest.mark.slow
def test_quick_run_gives_a_number_or_a_reason_everywhere(quick):
    results, _ = quick
    assert results["schema"] == 1 and results["mode"] == "quick"
    for section, key in SECTIONS:
        entries = results[section][key]
        assert entries, f"{section}.{key} is empty"
        for e in entries:
            check_entry(e)


@pytest.mark.slow
def test_quick_run_has_every_subject_and_the_references(quick):
    results, table = quick
    names = [e["name"] for e in results["latency"]["entries"]]
    for part in range(2, 7):
        assert f"zookeeper part {part}" in names
    for ref in (startup.PYTHON_REF, startup.CTYPES_REF, startup.MODULES_REF, startup.FLOOR_REF,
                "unshare -Urmpiuf + chroot", "bubblewrap", "runc", "crun", "podman"):
        assert ref in names
    if not results["latency"]["problem"]:  # our own references always run
        for ours in (startup.PYTHON_REF, startup.CTYPES_REF, startup.MODULES_REF,
                     startup.FLOOR_REF):
            entry = next(e for e in results["latency"]["entries"] if e["name"] == ours)
            assert entry["value"] is not None, entry
    for e in results["network"]["entries"] + results["grading"]["entries"]:
        assert e["reason"], "quick mode skips network and grading"
    assert "Start latency" in table and "Where the time goes" in table


@pytest.mark.slow
def test_quick_run_splits_part4_into_phases(quick):
    results, _ = quick
    run = next(r for r in results["phases"]["runs"] if r["name"] == "zookeeper part 4")
    if run["reason"]:
        pytest.skip(f"part 4 not measured: {run['reason']}")
    phases = dict(run["phases"])
    for phase in ("interpreter start (to the end of `site`)", "imports", "clone", "mounts",
                  "pivot_root"):
        assert phase in phases, phases
    assert sum(phases.values()) == pytest.approx(run["sum_of_phases_ms"], abs=0.1)
    if run["traced_runs"] == 1:  # one run: its phases partition its wall time
        assert sum(phases.values()) == pytest.approx(run["value"], rel=0.02)


# The arithmetic, without running anything ------------------------------------------------


def test_entry_is_a_number_or_a_reason():
    check_entry(common.entry("a", 1.5, "ms"))
    check_entry(common.entry("b", unit="ms", reason="not installed"))
    check_entry(common.entry("c"))  # nothing known: says so
    assert common.entry("d", 0.0)["reason"] is None


def test_ratios_are_taken_pair_by_pair():
    ratio, pairs = common.paired_ratio([2.0, 4.0, None, 9.0], [1.0, 2.0, 5.0, 3.0])
    assert pairs == 3 and ratio == 2.0
    assert common.paired_ratio([1.0], [None]) == (None, 0)


def test_importtime_lines_are_parsed():
    lines = ["import time: self [us] | cumulative | imported package",
             "import time:       100 |        100 |   encodings.utf_8",
             "import time:       500 |       1200 | site",
             "import time:       200 |       4600 | signal",
             "import time:       300 |        300 |   _ctypes",
             "import time:      6000 |       8700 | kernel"]
    assert startup.parse_import(lines[1]) == (100, 1, "encodings.utf_8")
    assert startup.top_level_imports(lines) == [("signal", 4.6), ("kernel", 8.7)]


def test_phases_partition_a_trace():
    trace = {"exit": 0.100, "status": 0, "reads": 6, "lines": [
        [0.004, "import time: self [us] | cumulative | imported package"],
        [0.010, "import time:       500 |       1200 | site"],
        [0.020, "import time:      6000 |       8000 | kernel"],
        [0.030, "zookeeper: clone(CLONE_NEWUSER|SIGCHLD) = 42" + " " * 30 + "clone(2)  2.0 ms"],
        [0.040, "zookeeper: newuidmap 42 0 1000 1 = ok" + " " * 30 + "newuidmap(1)  4.0 ms"],
        [0.050, "zookeeper: [42] mount(NULL, \"/\", NULL, MS_REC|MS_PRIVATE) = 0  mount(2) 0.1 ms"],
        [0.090, "zookeeper: waitpid(42) = 42 (exit status 0)   waitpid(2)  1.0 ms"],
    ]}
    result = startup.phases_of(trace)
    phases = dict(result["phases"])
    assert phases["interpreter start (to the end of `site`)"] == pytest.approx(10)
    assert phases["imports"] == pytest.approx(8)
    assert phases["compile zookeeper.py, run until its first import"] == pytest.approx(2)
    assert phases["clone"] == pytest.approx(10)
    assert phases["id maps"] == pytest.approx(10)
    assert phases["mounts"] == pytest.approx(10)
    assert phases["exec /bin/true, until it exits"] == pytest.approx(40)
    assert phases["interpreter exit"] == pytest.approx(10)
    assert sum(phases.values()) == pytest.approx(result["total_ms"])
    assert result["imports"] == [["kernel", 8.0]]


@pytest.mark.slow
def test_modules_reference_imports_what_part4_imports(quick):
    """The modules reference must load exactly what a part 4 run loads, or the lower
    bound it gives would not be one."""
    results, _ = quick
    column = next(c for c in results["imports"]["columns"] if c["name"] == "part 4 -r")
    if column["reason"]:
        pytest.skip(f"part 4 -r not measured: {column['reason']}")
    ours = {m for m in column["modules"] if (ROOT / "src" / f"{m}.py").exists()}
    assert ours == set(startup.PART4_MODULES)


def test_lower_bound_adds_module_loading_to_the_floor():
    def ref(name, ratio):
        return {"name": name, "value": 1.0, "reason": None, "ratio_to_python": ratio}
    by_name = {startup.FLOOR_REF: ref(startup.FLOOR_REF, 1.5),
               startup.MODULES_REF: ref(startup.MODULES_REF, 1.2),
               startup.CTYPES_REF: ref(startup.CTYPES_REF, 1.05)}
    bound = startup.lower_bound(by_name)
    assert bound["modules"] == pytest.approx(0.15)
    assert bound["value"] == pytest.approx(1.65)
    by_name[startup.MODULES_REF] = {"name": startup.MODULES_REF, "value": None,
                                    "reason": "part4_filesystem/ is not there yet"}
    assert startup.lower_bound(by_name) is None


def test_latency_entries_and_targets():
    subjects = [{"name": "python3 -c pass", "kind": "reference", "argv": ["p"]},
                {"name": "runc", "kind": "reference", "argv": ["r"]},
                {"name": "zookeeper part 4", "kind": "zookeeper", "argv": ["z"]},
                {"name": "crun", "kind": "reference", "argv": ["c"]},
                {"name": "podman", "kind": "reference", "reason": "not installed"}]
    timed = {"python3 -c pass": {"times": [0.010, 0.012, 0.011], "reason": ""},
             "runc": {"times": [0.020, 0.030, 0.022], "reason": ""},
             "zookeeper part 4": {"times": [0.015, 0.018, 0.0165], "reason": ""},
             "crun": {"times": [], "reason": "cgroups in hybrid mode not supported"}}
    entries = startup.latency_entries(subjects, timed)
    for e in entries:
        check_entry(e)
    zk = next(e for e in entries if e["name"] == "zookeeper part 4")
    assert zk["value"] == pytest.approx(16.5)
    assert zk["ratio_to_python"] == pytest.approx(1.5)
    assert zk["ratio_to_runc"] == pytest.approx(0.75)
    targets = startup.target_entries(entries)
    assert [t["met"] for t in targets] == [True, True]
    crun = next(e for e in entries if e["name"] == "crun")
    assert crun["reason"].startswith("cgroups in hybrid mode")


def test_a_grading_that_went_wrong_gives_a_reason_not_a_throughput(tmp_path):
    def done(stdout, returncode=0):
        return subprocess.CompletedProcess([], returncode, stdout, "")

    full = "sub1: 100/100 (ok)\nsub2: 100/100 (ok)\n"
    assert grading.batch_entry(120.0, done(full), 2, 2, 3600)["value"] == 120.0
    stuck = "sub1: 100/100 (ok)\nsub2: 76/100 (VM killed at the 1800s timeout)\n"
    e = grading.batch_entry(1800.0, done(stuck), 2, 2, 3600)
    assert e["value"] is None and "sub2: 76/100 (VM killed" in e["reason"]
    e = grading.one_entry(90.0, done("Score: 97/100\n", 1), tmp_path / "none.json", 1800)
    assert e["value"] is None and "97/100" in e["reason"]
    assert grading.one_entry(90.0, done("Score: 100/100\n"), tmp_path / "none.json",
                             1800)["value"] == 90.0


def test_stability_reads_each_checks_spread_and_headroom():
    """bench/stability.py's table: per check over every copy, the times, the limits the
    runner recorded, and headroom = limit / slowest (the check's own, or its slowest
    command's against that command's limit, whichever is smaller)."""
    def result(check_id, status, seconds, limit, command):
        return {"id": check_id, "status": status, "seconds": seconds, "limit": limit,
                "slowest_command": {"seconds": command[0], "limit": command[1]}}

    records = {"ref01": [result("p1_a", "ok", 2.0, 60, (1.0, 24)),
                         result("p5_b", "ok", 30.0, 120, (20.0, 90))],
               "ref02": [result("p1_a", "ok", 4.0, 60, (3.0, 24)),
                         result("p5_b", "fail", 10.0, 120, (9.0, 90))]}
    rows = {r["id"]: r for r in stability.spread(records)}
    a, b = rows["p1_a"], rows["p5_b"]
    assert (a["runs"], a["passed"], a["min"], a["median"], a["max"]) == (2, 2, 2.0, 3.0, 4.0)
    assert a["headroom"] == 8.0  # 24 / 3.0 is tighter than 60 / 4.0
    assert b["passed"] == 1 and b["headroom"] == 4.0  # 120 / 30 against 90 / 20


def test_a_submissions_time_is_split_into_boot_parts_and_teardown():
    """bench/grading.py's split: qemu.py's marks (seconds from QEMU's start) and the
    runner's per-check seconds; each share also as a ratio to the boot-only VM.
    The checks' wall time runs from the first one's start to the last one's end (the
    runner's lanes run them side by side); without start times, their sum."""
    times = {"accel": "tcg", "job_start": 20.0, "job_exit": 110.0, "qemu_exit": 116.0}
    results = [{"part": 1, "seconds": 10.0}, {"part": 1, "seconds": 5.0},
               {"part": 5, "seconds": 60.0}]
    shares = {s["name"]: s for s in grading.split(times, results, wall=125.0, boot_only=25.0)}
    assert list(shares) == ["boot: QEMU start to the job's start",
                            "the checks, first start to last end",
                            "part 1's checks (their own time)",
                            "part 5's checks (their own time)",
                            "the rest of the job (copying, the runner)",
                            "teardown: the job's end to QEMU's exit",
                            "on the host (tarball, job files, reports)"]
    seconds = [s["seconds"] for s in shares.values()]
    assert seconds == [20.0, 75.0, 15.0, 60.0, 15.0, 6.0, 9.0]  # 110 - 20 - 75 = 15
    additive = [s["seconds"] for name, s in shares.items() if not name.startswith("part ")]
    assert sum(additive) == 125.0  # the shares add up to the whole run
    assert [s["ratio"] for s in shares.values()] == [0.8, 3.0, 0.6, 2.4, 0.6, 0.24, 0.36]
    assert all(s["ratio"] is None for s in grading.split(times, results))
    assert "on the host (tarball, job files, reports)" not in [
        s["name"] for s in grading.split(times, results)]
    # Two lanes: part 5's check began 5 s after both of part 1's, which ran side by
    # side with it: 65 s of wall time for 75 s of checks.
    for r, started in zip(results, (100.0, 110.0, 105.0)):
        r["started"] = started
    shares = {s["name"]: s for s in grading.split(times, results)}
    assert shares["the checks, first start to last end"]["seconds"] == 65.0
    assert shares["the rest of the job (copying, the runner)"]["seconds"] == 25.0
    assert shares["part 1's checks (their own time)"]["seconds"] == 15.0
    # A check that never ran (its lane's runner died) has no start and took no time.
    results.append({"part": 6, "seconds": 0.0})
    shares = {s["name"]: s for s in grading.split(times, results)}
    assert shares["the checks, first start to last end"]["seconds"] == 65.0


def test_the_vm_writes_when_the_job_started_and_ended(tmp_path, monkeypatch):
    """qemu.boot's boot-times.json, with a stand-in for QEMU that starts the job, ends
    it a second later and exits a second after that."""
    import qemu

    boot = boot_fake_qemu(tmp_path, monkeypatch, 'sleep 0.5\n'
                          'printf "ZOO-JOB-START\\n" >> "$console"\nsleep 1\n'
                          'printf "ZOO-JOB-EXIT=0\\n" >> "$console"\nsleep 1\n', timeout=60)
    assert boot.ok
    times = json.loads((tmp_path / "results" / qemu.TIMES).read_text())
    assert times == boot.times()
    assert 0.4 < times["job_start"] < times["job_exit"] < times["qemu_exit"]
    assert times["job_exit"] - times["job_start"] > 0.8
    assert times["qemu_exit"] - times["job_exit"] > 0.8


def test_stability_gives_the_median_split_over_the_copies(tmp_path):
    """bench/stability.py: each copy's split (grade's OUT/NAME/vm), median per share;
    a copy whose job never ended is left out, not counted as zero."""
    def graded(name, job_exit, wall, started=10.0):
        vm = tmp_path / name / "vm"
        vm.mkdir(parents=True)
        (vm / "boot-times.json").write_text(json.dumps(
            {"job_start": started, "job_exit": job_exit, "qemu_exit": (job_exit or 0) + 1}))
        (vm / "results.json").write_text(json.dumps([{"part": 4, "seconds": 30.0}]))
        (tmp_path / name / "grading.json").write_text(json.dumps({"seconds": wall}))

    graded("ref01", 50.0, 52.0)
    graded("ref02", 70.0, 72.0)
    graded("ref03", None, 900.0)
    shares = {r["name"]: r for r in stability.time_split(tmp_path, ["ref01", "ref02", "ref03"],
                                                          boot_only=12.0)}
    whole = shares["whole submission"]
    assert (whole["copies"], whole["min"], whole["median"], whole["max"]) == (2, 52, 62, 72)
    assert whole["ratio"] == round(62 / 12, 2)
    rest = shares["the rest of the job (copying, the runner)"]
    assert (rest["min"], rest["median"], rest["max"]) == (10.0, 20.0, 30.0)
    assert shares["part 4's checks (their own time)"]["median"] == 30.0
