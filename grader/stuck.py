"""What a stuck guest's vCPUs were doing when the grader stopped it, and where that is.

Once in a long while a guest stops reporting with both vCPUs busy and nothing on its
console (NOTES.md: the p5_cpu stall).  Before such a guest is stopped (a watchdog's
stop, or its time up with the job unfinished), grader/qemu.py asks QEMU's monitor
for each vCPU's registers, its next instructions and the top of its stack, a few
times a second apart, and keeps them in CPUS_AT_STOP beside the console log:
RIPs that do not move mean a CPU spinning there, HLT=1 one that is idle.

The addresses are the guest kernel's.  `grader/vm.py symbols FILE` names them: it
reads /proc/kallsyms in a guest restored from the same saved booted guest (one
layout for every restored copy; an amd64 kernel booted through PVH is not relocated
either, so the kernel's own code has the same addresses in a booted guest).

Standard library only.
"""

from __future__ import annotations

import bisect
import contextlib
import re
import time
from pathlib import Path

from qmp import QMP, QMPError

CPUS_AT_STOP = "cpus-at-stop.txt"
SAMPLES = 3  # ...a second apart: a RIP that stays put is a CPU that spins there
STACK_WORDS = 128  # 1 KiB of each vCPU's stack, where the return addresses are
# Past this from the nearest symbol, an address is in no function we can name: the
# kernel's own functions are contiguous, a module's or a BPF program's end where
# unnamed memory (another module, a JIT image) may begin.
FUNCTION_SIZE_LIMIT = 0x10000
MODULE_FUNCTION_SIZE_LIMIT = 0x1000


class NotStuck(str):
    """A watchdog's reason to stop a guest that is not stuck (a Ctrl-C, a full results
    share): its vCPUs are not worth reading, nor is it graded again."""


def is_stuck(stopped: str | None) -> bool:
    """Did a watchdog stop the guest because it stopped reporting?"""
    return bool(stopped) and not isinstance(stopped, NotStuck)


def record_cpus(qmp: QMP, out: Path, samples: int = SAMPLES, interval: float = 1.0) -> None:
    """Each vCPU's registers, next instructions and stack, `samples` times, into out
    (HMP's `info registers`, `x/6i $pc` and `x/Ngx RSP`, through QMP's
    human-monitor-command)."""
    cpus = [c["cpu-index"] for c in qmp.command("query-cpus-fast")]
    with open(out, "w") as f:
        f.write(f"# The guest's vCPUs before it was stopped ({time.strftime('%F %T')}).\n"
                "# Name the addresses: python3 grader/vm.py symbols THIS_FILE\n")
        for sample in range(samples):
            if sample:
                time.sleep(interval)
            f.write(f"=== sample {sample + 1} of {samples}\n")
            for cpu in cpus:
                registers = qmp.hmp("info registers", cpu)
                f.write(f"--- cpu {cpu}: info registers\n{registers}\n")
                f.write(f"--- cpu {cpu}: x/6i $pc\n{qmp.hmp('x/6i $pc', cpu)}\n")
                rsp = re.search(r"RSP=([0-9a-f]+)", registers)
                if rsp:
                    command = f"x/{STACK_WORDS}gx 0x{rsp.group(1)}"
                    f.write(f"--- cpu {cpu}: {command}\n{qmp.hmp(command, cpu)}\n")
            f.flush()


def try_record_cpus(control_socket: Path, proc, out: Path) -> None:
    """record_cpus, or a line in out saying why it could not: never an exception, since
    the guest is being stopped either way."""
    try:
        qmp = QMP(control_socket, proc, timeout=5)  # QEMU's socket is there from its start
        try:
            record_cpus(qmp, out)
        finally:
            qmp.close()
    except (QMPError, OSError, ValueError, KeyError, TypeError) as e:
        with contextlib.suppress(OSError), open(out, "a") as f:
            f.write(f"# could not read the vCPUs: {e}\n")


class KernelSymbols:
    """/proc/kallsyms's text symbols: the name an address is in."""

    def __init__(self, kallsyms: str):
        symbols = []
        for line in kallsyms.splitlines():
            fields = line.split()
            if len(fields) >= 3 and fields[1] in "tTwW":
                module = f" {fields[3]}" if len(fields) > 3 else ""  # "[9p]", "[bpf]"
                symbols.append((int(fields[0], 16), fields[2] + module))
        symbols.sort()
        self.addresses = [a for a, _ in symbols]
        self.names = [n for _, n in symbols]

    def name(self, address: int) -> str | None:
        """'function+0xoffset', or None for an address in no function."""
        i = bisect.bisect_right(self.addresses, address) - 1
        if i < 0 or address == 0:
            return None
        offset = address - self.addresses[i]
        limit = MODULE_FUNCTION_SIZE_LIMIT if " [" in self.names[i] else FUNCTION_SIZE_LIMIT
        return f"{self.names[i]}+{offset:#x}" if offset < limit else None


def symbolize(dump: str, symbols: KernelSymbols) -> str:
    """The dump in short: per sample and vCPU, where it was (RIP), whether it was halted
    or had interrupts off, and the kernel functions on its stack, innermost first.
    x86-64's registers only (an arm64 guest's dump keeps its own, unnamed)."""
    out, cpu, what = [], None, ""
    for line in dump.splitlines():
        if line.startswith(("===", "# could not")):
            out.append(line)
            continue
        heading = re.match(r"--- cpu (\d+): (.*)", line)
        if heading:
            cpu, what = heading.groups()
            continue
        if what == "info registers" and line.lstrip().startswith("PC="):  # aarch64's
            out.append(f"cpu {cpu}: not x86-64: read its registers in the file")
        rip = re.search(r"RIP=([0-9a-f]+) RFL=([0-9a-f]+)", line)
        if rip:
            address, flags = int(rip.group(1), 16), int(rip.group(2), 16)
            interrupts = "on" if flags & 0x200 else "off"  # RFLAGS.IF
            out.append(f"cpu {cpu}: RIP {symbols.name(address) or hex(address)} "
                       f"(interrupts {interrupts})")
        halted = re.search(r"HLT=(\d)", line)
        if halted and halted.group(1) == "1":
            out.append(f"cpu {cpu}: halted (idle)")
        if re.match(r"x/\d+gx ", what) and ":" in line:  # a stack: 8-byte words
            for word in line.split(":", 1)[1].split():
                name = symbols.name(int(word, 16)) if re.fullmatch(r"0x[0-9a-f]+", word) else None
                if name:
                    out.append(f"    {name}")
    return "\n".join(out) + "\n"
