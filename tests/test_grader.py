"""The grader's own logic on this host, without a VM and without running a submission:
the checks' tables and parsers, the reports, and grader/grade's command line."""

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "grader"))

import checks  # noqa: E402

PART_POINTS = {1: 15, 2: 15, 3: 15, 4: 20, 5: 20, 6: 15}


def test_points_per_part_as_documented():
    got = {p: sum(c.points for c in checks.CHECKS if c.part == p) for p in PART_POINTS}
    assert got == PART_POINTS and sum(got.values()) == 100
    readme = (ROOT / "README.txt").read_text()
    listed = re.search(r"Points per part \(100 in all\): (.*?)\.\n", readme, re.S).group(1)
    documented = {int(p): int(n) for p, n in re.findall(r"part (\d) (\d+)", listed)}
    assert documented == PART_POINTS


def test_ip_links_reads_names_and_flags():
    out = ("1: lo: <LOOPBACK,UP,LOWER_UP> mtu 65536 qdisc noqueue qlen 1000\\    link/loop\n"
           "2: eth0@if7: <BROADCAST,MULTICAST,UP,LOWER_UP> mtu 1500 qdisc noqueue\n"
           "3: tap0: <BROADCAST,MULTICAST> mtu 1500 qdisc noop\n")
    links = checks.ip_links(out)
    assert sorted(links) == ["eth0", "lo", "tap0"]
    assert "UP" in links["lo"] and "UP" in links["eth0"] and "UP" not in links["tap0"]
