"""The per-architecture table of system call numbers (kernel.py) against the kernel's
own numbering, as libseccomp knows it for each architecture (issue 14)."""

import subprocess

import pyseccomp
import pytest
from conftest import Runner, part_modules

ARCHES = {"x86_64": pyseccomp.Arch.X86_64, "aarch64": pyseccomp.Arch.AARCH64}


@pytest.fixture
def kernel():
    with part_modules(6) as modules:
        yield modules.kernel


@pytest.mark.parametrize("arch", ARCHES)
def test_every_number_is_the_kernels(kernel, arch):
    assert set(kernel.ARCHITECTURES) == set(ARCHES)
    column = kernel.ARCHITECTURES.index(arch)
    for name, numbers in kernel.SYSCALL_NUMBERS.items():
        assert numbers[column] == pyseccomp.resolve_syscall(ARCHES[arch], name), (name, arch)


def test_this_machines_numbers_are_used(kernel):
    assert kernel.ARCH in kernel.ARCHITECTURES
    assert kernel.SYS_clone == pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, "clone")
    assert kernel.SYS_pivot_root == pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE,
                                                              "pivot_root")


@pytest.mark.parametrize("part", [1, 4])
def test_another_architecture_is_one_line(user_runner: Runner, part):
    """setarch i686 makes uname(2) say i686: zookeeper stops before making anything."""
    script = str(user_runner.workdir / f"part{part}_{'clone' if part == 1 else 'filesystem'}"
                 / "zookeeper.py")
    done = user_runner.run(["setarch", "i686", user_runner.python, script, "true"])
    assert done.returncode == 125
    assert done.stderr == ("zookeeper: this machine is i686: zookeeper knows the system call "
                           "numbers of x86_64 and aarch64 only (kernel.py, SYSCALL_NUMBERS)\n")


def test_the_seccomp_filter_refuses_the_other_abis(user_runner: Runner):
    """A 32-bit (ia32) system call from inside part 3 is killed: the filter is built
    for this machine's native architecture only."""
    if subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip() != "x86_64":
        pytest.skip("the ia32 ABI is x86_64's")
    # int $0x80 with eax=20 (getpid in the ia32 table): SIGSYS under the filter.
    code = ("import ctypes, mmap; m = mmap.mmap(-1, 4096, prot=7); "
            "m.write(bytes([0xb8, 20, 0, 0, 0, 0xcd, 0x80, 0xc3])); "
            "f = ctypes.CFUNCTYPE(ctypes.c_long)(ctypes.addressof(ctypes.c_char.from_buffer(m))); "
            "print(f())")
    outside = user_runner.run([user_runner.python, "-c", code])
    assert outside.returncode == 0 and int(outside.stdout) > 0, outside.stderr
    inside = user_runner.zookeeper(3, user_runner.python, "-c", code)
    assert inside.returncode == -31 or inside.returncode == 128 + 31, inside


def test_the_seccomp_filter_refuses_x32_calls(user_runner: Runner):
    """x86_64's other ABI, x32 (the call's number with bit 30 set, __X32_SYSCALL_BIT):
    a kernel without it answers ENOSYS outside; part 3's filter kills the caller."""
    if subprocess.run(["uname", "-m"], capture_output=True, text=True).stdout.strip() != "x86_64":
        pytest.skip("the x32 ABI is x86_64's")
    code = ("import ctypes; libc = ctypes.CDLL(None, use_errno=True); "
            "libc.syscall.restype = ctypes.c_long; "
            "print(libc.syscall(ctypes.c_long(0x40000000 | 39)), ctypes.get_errno())")
    outside = user_runner.run([user_runner.python, "-c", code])
    assert outside.returncode == 0, outside.stderr  # getpid(2) of x32, or ENOSYS
    inside = user_runner.zookeeper(3, user_runner.python, "-c", code)
    assert inside.returncode in (-31, 128 + 31), inside


def test_the_filter_compiles_for_aarch64s_calls(monkeypatch):
    """aarch64 has no chmod (libseccomp answers with a pseudo number below -10000, and
    refuses a rule on it): that rule is skipped, every other one compiled."""
    with part_modules(3, "security", "seccomp_cache") as m:
        real = pyseccomp.resolve_syscall

        def as_on_aarch64(arch, name):
            return real(pyseccomp.Arch.AARCH64, name)

        monkeypatch.setattr(pyseccomp, "resolve_syscall", as_on_aarch64)
        monkeypatch.setattr(m.seccomp_cache, "import_pyseccomp", lambda: pyseccomp)
        assert m.security.syscall_number(pyseccomp, "chmod") is None
        assert m.security.syscall_number(pyseccomp, "fchmodat") == 53
        added = []
        real_add = pyseccomp.SyscallFilter.add_rule
        monkeypatch.setattr(pyseccomp.SyscallFilter, "add_rule", lambda self, action, number,
                            *args: added.append(number) or real_add(self, action, number, *args))
        program = m.security.compile_seccomp_filter()
        assert program and len(program) % 8 == 0
        assert len(added) == len(m.security.SYSCALLS_TO_REFUSE) - 2  # chmod's two rules


def test_the_seccomp_cache_key_names_the_architecture(monkeypatch, tmp_path):
    """A program cached on one architecture is never read back on another (the
    numbers in it are that architecture's): the cache's key says the machine."""
    import os

    with part_modules(3, "security", "seccomp_cache") as m:
        cache = m.seccomp_cache
        here = os.uname()
        key = cache.cache_key(m.security.__file__)
        assert f" {here.machine} ".encode() in key
        path = str(tmp_path / "zookeeper" / "seccomp.bpf")
        program = bytes([0x06, 0, 0, 0, 0, 0, 0xFF, 0x7F])  # ret ALLOW
        cache.write_cached_program(path, key, program)
        assert cache.read_cached_program(path, key) == program
        other = "aarch64" if here.machine != "aarch64" else "x86_64"
        there = os.uname_result((here.sysname, here.nodename, here.release, here.version,
                                 other))
        monkeypatch.setattr(os, "uname", lambda: there)
        key_there = cache.cache_key(m.security.__file__)
        assert key_there != key and f" {other} ".encode() in key_there
        assert cache.read_cached_program(path, key_there) is None
