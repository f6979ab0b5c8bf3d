"""Our parser against the generator's ground truth: every field of every packet, in every format.

The generator knows each header value it wrote (``bench.gen.truth``), so this
is a differential test of ``sensor.capture`` with an oracle that decodes nothing.
"""

from __future__ import annotations

import bz2
import gzip
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from bench.gen.generate import GenOptions, generate, plan
from bench.gen.truth import expected_packets

capture = pytest.importorskip("sensor.capture", reason="the parser (sensor.capture) is not there yet")
fields = pytest.importorskip("sensor.fields")

CASES: dict[str, dict[str, Any]] = {
    "pcap-us": {},
    "pcap-ns": {"ts_resolution": "ns"},
    "pcapng-us": {"fmt": "pcapng"},
    "pcapng-ns-links": {"fmt": "pcapng", "ts_resolution": "ns", "interface_per_link": True},
    "pcap-snaplen": {"snaplen": 128},
    "pcapng-snaplen": {"fmt": "pcapng", "snaplen": 128},
    "several-prefixes": {"darknet": "192.0.2.0/24,198.51.100.0/25,2001:db8:1::/64"},
    "pcap-big-endian": {"byte_order": "big", "ts_resolution": "ns"},
    "pcapng-3-sections": {"fmt": "pcapng", "sections": 3, "interface_per_link": True},
    "pcapng-big-first": {"fmt": "pcapng", "byte_order": "big", "sections": 2, "ts_resolution": "ns"},
}


def _mismatches(got: np.ndarray, want: np.ndarray) -> dict[str, Any]:
    bad: dict[str, Any] = {}
    for name in want.dtype.names or ():
        a, b = got[name], want[name]
        if a.dtype.kind == "V":
            diff = (np.ascontiguousarray(a).view(np.uint8).reshape(len(a), -1)
                    != np.ascontiguousarray(b).view(np.uint8).reshape(len(b), -1)).any(axis=1)  # fmt: skip
        else:
            diff = a != b
        if diff.any():
            i = int(np.flatnonzero(diff)[0])
            bad[name] = {"count": int(diff.sum()), "first_packet": i, "got": a[i], "want": b[i]}
    return bad


@pytest.mark.parametrize("case", sorted(CASES))
def test_every_field_of_every_packet(tmp_path: Path, case: str) -> None:
    kw = {"scenario": "sample", "seed": 11, "packets": 15_000, **CASES[case]}
    opts = GenOptions(**kw)
    path = tmp_path / "cap"
    with path.open("wb") as fh:
        generate(opts, fh)
    rows, _, _, _ = plan(opts)
    want = expected_packets(rows, fields.PACKET_DTYPE, snaplen=opts.snaplen,
                            per_link_iface=opts.interface_per_link)  # fmt: skip
    got = np.concatenate(list(capture.iter_packet_batches(path, batch_size=4096)))
    assert len(got) == len(want) == 15_000
    assert _mismatches(got, want) == {}


@pytest.mark.parametrize("opener", [gzip.open, bz2.open])
def test_compressed_capture(tmp_path: Path, opener: Any) -> None:
    opts = GenOptions(scenario="sample", seed=12, packets=12_000)
    path = tmp_path / "cap.z"
    with opener(path, "wb") as fh:
        generate(opts, fh)
    rows, _, _, _ = plan(opts)
    got = np.concatenate(list(capture.iter_packet_batches(path)))
    assert _mismatches(got, expected_packets(rows, fields.PACKET_DTYPE)) == {}
