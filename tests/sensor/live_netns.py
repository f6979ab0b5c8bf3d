"""Test network namespaces joined by a veth pair, for the live-capture tests.

Two fresh namespaces (``cap`` and ``send``) with one veth end each, no
addresses, no routes and IPv6 off (so the kernel sends no neighbour
discovery of its own): a frame sent into ``send``'s end arrives at the
sensor's end and can go nowhere else. Everything is removed on exit, even
when the test fails. Needs root (CI runs as root); skips otherwise, and
fails under CI=true.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

__all__ = ["VethPair", "enter_netns", "need_netns", "veth_pair"]

_CLONE_NEWNET = 0x40000000


def need_netns() -> None:
    why = None
    if os.geteuid() != 0:
        why = "needs root to create network namespaces"
    elif shutil.which("ip") is None:
        why = "needs iproute2 (ip)"
    elif shutil.which("tcpreplay") is None:
        why = "needs tcpreplay (scripts/test.sh installs it)"
    if why:
        if os.environ.get("CI"):
            pytest.fail(why)
        pytest.skip(why)


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=20)


@dataclass(frozen=True)
class VethPair:
    cap_ns: str  # namespace of the sensor's end
    cap_if: str
    send_ns: str
    send_if: str

    def send_cmd(self, *argv: str) -> list[str]:
        """``argv`` run inside the sending namespace."""
        return ["ip", "netns", "exec", self.send_ns, *argv]


@contextmanager
def veth_pair(mtu: int = 1500) -> Iterator[VethPair]:
    need_netns()
    tag = uuid.uuid4().hex[:6]
    pair = VethPair(f"dkcap{tag}", f"dkc{tag}", f"dksnd{tag}", f"dks{tag}")
    made: list[str] = []
    try:
        for ns in (pair.cap_ns, pair.send_ns):
            _ip("netns", "add", ns)
            made.append(ns)
            for conf in ("all", "default"):
                _ip("netns", "exec", ns, "sysctl", "-qw", f"net.ipv6.conf.{conf}.disable_ipv6=1")
        _ip("link", "add", pair.cap_if, "netns", pair.cap_ns, "mtu", str(mtu), "type", "veth",
            "peer", "name", pair.send_if, "netns", pair.send_ns, "mtu", str(mtu))
        _ip("-n", pair.cap_ns, "link", "set", pair.cap_if, "up")
        _ip("-n", pair.send_ns, "link", "set", pair.send_if, "up")
        yield pair
    finally:
        for ns in made:  # deleting a namespace deletes its veth end, and so the pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=20)


@contextmanager
def enter_netns(name: str) -> Iterator[None]:
    """Move the *calling thread* into namespace ``name`` (setns) and back.

    Sockets made inside stay in that namespace after the thread returns.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/run/netns/{name}", os.O_RDONLY)
    try:
        if libc.setns(target, _CLONE_NEWNET) != 0:
            raise OSError(ctypes.get_errno(), f"setns to {name}")
        try:
            yield
        finally:
            libc.setns(own, _CLONE_NEWNET)
    finally:
        os.close(own)
        os.close(target)
