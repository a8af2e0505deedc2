"""The grader's arm64 VM (issue 14): grader/grade --arch arm64 boots an arm64 Debian
guest under qemu-system-aarch64 (TCG on this x86_64 machine) and grades the references
there.

The first tests need no VM: the grader's own table of system call numbers for both
architectures against libseccomp's, and what vm.py makes of --arch.  The last one builds
the arm64 image if it is not cached (~4 min as root on this 2-core x86_64 machine: the
guest's maintainer scripts run through qemu-user, which needs qemu-user-static and
binfmt-support) and grades every part of the references in it (~3 min under TCG): it
runs only with ZOO_TEST_ARM64=1 (`make test-arm64`); ZOO_TEST_ARM64_PARTS=1,2,3 grades
only those parts.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import PARTS, ROOT, copy_parts

sys.path.insert(0, str(ROOT / "grader"))
import checks
import image
import qemu

GRADE = [sys.executable, str(ROOT / "grader" / "grade")]
# All six by default (179 s under TCG here; without part 5, 140 s).
ARM64_PARTS = [int(p) for p in
               os.environ.get("ZOO_TEST_ARM64_PARTS", "1,2,3,4,5,6").split(",")]


def _try_syscalls():
    spec = importlib.util.spec_from_file_location(
        "zoo_try_syscalls", ROOT / "grader" / "helpers" / "try_syscalls.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("machine", ["x86_64", "aarch64"])
def test_the_grader_tries_the_kernels_numbers(machine):
    """The syscall tester calls each rule's system call by its number on the guest's
    architecture: with x86_64's on aarch64 it would try openat for clone."""
    pyseccomp = pytest.importorskip("pyseccomp")
    arch = {"x86_64": pyseccomp.Arch.X86_64, "aarch64": pyseccomp.Arch.AARCH64}[machine]
    table = _try_syscalls().NR_BY_MACHINE[machine]
    for name, number in table.items():
        assert number == pyseccomp.resolve_syscall(arch, name), (machine, name)


def test_arch_names_keys_and_qemu(tmp_path, monkeypatch):
    assert image.get_arch("aarch64") is image.get_arch("arm64")
    assert image.get_arch("x86_64") is image.get_arch("amd64")
    with pytest.raises(image.VMError, match="no grader VM for the architecture 'mips'"):
        image.get_arch("mips")
    # amd64's recipe is what it was before arm64 (published images keep their key).
    assert "arch" not in image.recipe("amd64") and image.recipe("arm64")["arch"] == "arm64"
    assert image.cache_key("amd64") != image.cache_key("arm64")
    assert image.recipe_arch(image.recipe("amd64")) == "amd64"
    paths = image.ImagePaths(key="k", dir=tmp_path, kernel=tmp_path / "vmlinux",
                             initramfs=tmp_path / "initramfs.cpio", rootfs=tmp_path / "rootfs")
    monkeypatch.delenv("ZOO_QEMU", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(image.VMError, match="qemu-system-aarch64 not found: apt-get install "
                       "qemu-system-arm"):
        qemu.qemu_command(paths, tmp_path, tmp_path, tmp_path, tmp_path / "c.log", accel="tcg",
                          control_dir=tmp_path, arch="arm64")
    monkeypatch.setenv("ZOO_QEMU", "/usr/bin/qemu-system-aarch64")
    argv = qemu.qemu_command(paths, tmp_path, tmp_path, tmp_path, tmp_path / "console.log",
                             accel="tcg", control_dir=tmp_path, arch="arm64")
    assert argv[argv.index("-cpu") + 1] == "max,pauth-impdef=on"
    assert argv[argv.index("-machine") + 1] == "virt"
    assert "console=ttyAMA0" in argv[argv.index("-append") + 1]
    assert "8250.nr_uarts=0" in argv[argv.index("-append") + 1]
    if os.uname().machine != "aarch64":
        assert qemu.detect_accel("arm64") == "tcg"


@pytest.mark.parametrize("machine, name", [("x86_64", "amd64"), ("aarch64", "arm64")])
def test_the_default_arch_is_the_hosts(monkeypatch, machine, name):
    """Without --arch, the guest is of the host's architecture (Debian's name for
    uname -m's): an arm64 machine boots an arm64 guest, natively where KVM works."""
    here = os.uname()
    there = os.uname_result((here.sysname, here.nodename, here.release, here.version, machine))
    monkeypatch.setattr(os, "uname", lambda: there)
    assert image.host_arch() == name
    assert image.get_arch().name == name and image.get_arch(None) is image.get_arch(name)

def test_arm64_image_from_vmlinuz():
    import gzip

    kernel = bytearray(4096)
    kernel[:2] = b"MZ"
    kernel[0x38:0x3C] = b"ARM\x64"
    assert image.extract_arm64_image(bytes(kernel)) == bytes(kernel)
    assert image.extract_arm64_image(gzip.compress(bytes(kernel))) == bytes(kernel)
    with pytest.raises(ValueError, match="no arm64 Image"):
        image.extract_arm64_image(b"\x7fELF" + bytes(100))


def test_old_images_are_pruned_per_architecture(tmp_path):
    """Building one architecture's image never removes the other's."""
    def image_dir(key: str, arch: str, age: int) -> Path:
        path = tmp_path / (key * 64)
        path.mkdir()
        (path / "manifest.json").write_text(json.dumps({"recipe": image.recipe(arch)}))
        os.utime(path, (1000 - age, 1000 - age))
        return path

    amd64 = [image_dir("a", "amd64", 5), image_dir("b", "amd64", 4), image_dir("c", "amd64", 3)]
    arm64 = image_dir("d", "arm64", 10)
    image._prune_old_images(tmp_path, amd64[2].name)
    assert [p.exists() for p in amd64] == [False, True, True] and arm64.exists()


@pytest.mark.vm
@pytest.mark.slow
@pytest.mark.skipif(os.environ.get("ZOO_TEST_ARM64") != "1",
                    reason="builds and boots an arm64 guest under TCG (~7 min, ~3 with a "
                    "cached image): set ZOO_TEST_ARM64=1, or make test-arm64")
def test_references_score_full_marks_in_an_arm64_guest(tmp_path):
    problem = image.foreign_problem(image.get_arch("arm64"))
    if image.cached_image(arch="arm64") is None and problem:
        pytest.fail(problem)
    tmp_path.chmod(0o755)
    sub = copy_parts(tmp_path / "reference", {p: PARTS[p] for p in ARM64_PARTS})
    out = tmp_path / "out"
    argv = GRADE + [str(sub), "--arch", "arm64", "--out", str(out)]
    for part in ARM64_PARTS:
        argv += ["--part", str(part)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=3 * 3600)
    said = done.stdout + done.stderr
    print(said)
    assert re.search(r"vm: booting arm64 \((tcg|kvm)\)", said), said
    selected = checks.selected(ARM64_PARTS, None)
    total = sum(c.points for c in selected)
    assert done.returncode == 0, said
    assert f"Score: {total}/{total}" in done.stdout
    results = {r["id"]: r for r in json.loads((out / "vm" / "results.json").read_text())}
    assert set(results) == {c.id for c in selected}
    # The guest really is arm64 (run.sh wrote its uname -m).
    console = (out / "console.log").read_text(errors="replace")
    assert "ZOO-JOB-EXIT=0" in console
    assert (out / "vm" / "machine").read_text().strip() == "aarch64"
    if 3 in ARM64_PARTS:
        # Part 3: every rule refused inside (EPERM; clone3 ENOSYS), allowed outside.
        for check in ("p3_seccomp_chmod", "p3_seccomp_userns", "p3_seccomp_rest"):
            assert results[check]["status"] == "ok", results[check]
