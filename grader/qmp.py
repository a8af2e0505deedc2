"""A QEMU Machine Protocol client, as much of one as grader/qemu.py needs to save a
booted guest and restore it, and to read a stuck guest's vCPUs (grader/stuck.py):
connect, `qmp_capabilities`, run a command or a human monitor command, wait for a
migration to end.

QMP is JSON objects, one per line, over a socket: a greeting, then a reply
(`return` or `error`) to each command, with asynchronous `event` objects between
them (QEMU's docs/interop/qmp-spec).  Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
from pathlib import Path


class QMPError(Exception):
    """QEMU refused a command, went away, or a migration failed."""


class QMP:
    """A connection to the QMP socket of the QEMU process proc (server=on, wait=off:
    the socket appears once QEMU has started; QEMU ending first is an error)."""

    def __init__(self, path: Path, proc: subprocess.Popen, timeout: float = 60):
        deadline = time.monotonic() + timeout
        while True:
            if proc.poll() is not None:
                raise QMPError(f"qemu ended (exit status {proc.returncode}) before its QMP "
                               "socket answered")
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(str(path))
                break
            except OSError:
                sock.close()
                if time.monotonic() > deadline:
                    raise QMPError(f"no QMP socket at {path} after {timeout:g} s") from None
                time.sleep(0.02)
        sock.settimeout(timeout)
        self._sock = sock
        self._file = sock.makefile("rwb")
        try:
            self._read()  # the greeting
            self.command("qmp_capabilities")
        except QMPError:
            self.close()
            raise

    def close(self) -> None:
        with contextlib.suppress(OSError):  # QEMU gone: nothing left to flush to
            self._file.close()
        self._sock.close()

    def _read(self) -> dict:
        try:
            line = self._file.readline()
        except OSError as e:
            raise QMPError(f"QMP: {e}") from None
        if not line:
            raise QMPError("QMP: qemu closed the connection")
        try:
            return json.loads(line)
        except ValueError:
            raise QMPError(f"QMP: not JSON: {line[:80]!r}") from None

    def command(self, name: str, *, fd: int | None = None, **arguments) -> object:
        """Run one command; its `return` value (events meanwhile are skipped).  fd: a
        file descriptor passed along with it (SCM_RIGHTS, unix(7)), as getfd wants."""
        request = {"execute": name, **({"arguments": arguments} if arguments else {})}
        data = json.dumps(request).encode() + b"\n"
        try:
            if fd is None:
                self._file.write(data)
                self._file.flush()
            else:
                socket.send_fds(self._sock, [data], [fd])
        except OSError as e:
            raise QMPError(f"QMP {name}: {e}") from None
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise QMPError(f"QMP {name}: {reply['error'].get('desc', reply['error'])}")

    def hmp(self, command_line: str, cpu: int | None = None) -> str:
        """A human monitor command's text (human-monitor-command), run for one vCPU
        (cpu-index) when given: `info registers`, `x/6i $pc`."""
        arguments = {"command-line": command_line}
        if cpu is not None:
            arguments["cpu-index"] = cpu
        return str(self.command("human-monitor-command", **arguments))

    def pass_file(self, name: str, fd: int) -> str:
        """Give QEMU a file descriptor of ours under name (getfd); "fd:NAME" is then a
        migration URI that reads or writes that file, no shell or helper between."""
        self.command("getfd", fd=fd, fdname=name)
        return f"fd:{name}"

    def wait_for_migration(self, timeout: float) -> None:
        """Until query-migrate says completed (QMPError if it failed or took longer)."""
        deadline = time.monotonic() + timeout
        while True:
            state = self.command("query-migrate")
            status = state.get("status") if isinstance(state, dict) else None
            if status == "completed":
                return
            if status in ("failed", "cancelled"):
                raise QMPError(f"migration {status}: {state.get('error-desc', 'no reason given')}")
            if time.monotonic() > deadline:
                raise QMPError(f"migration not done after {timeout:g} s (status {status})")
            time.sleep(0.05)
