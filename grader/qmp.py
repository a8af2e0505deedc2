"""A QEMU Machine Protocol client, as much of one as grader/qemu.py needs to save a
booted guest and restore it: connect, `qmp_capabilities`, run a command, wait for a
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
        self._read()  # the greeting
        self.command("qmp_capabilities")

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
        return json.loads(line)

    def command(self, name: str, **arguments) -> object:
        """Run one command; its `return` value (events meanwhile are skipped)."""
        request = {"execute": name, **({"arguments": arguments} if arguments else {})}
        try:
            self._file.write(json.dumps(request).encode() + b"\n")
            self._file.flush()
        except OSError as e:
            raise QMPError(f"QMP {name}: {e}") from None
        while True:
            reply = self._read()
            if "return" in reply:
                return reply["return"]
            if "error" in reply:
                raise QMPError(f"QMP {name}: {reply['error'].get('desc', reply['error'])}")

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
