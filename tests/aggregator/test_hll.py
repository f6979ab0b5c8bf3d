"""Past the exact cap: HyperLogLog estimates of distinct destinations."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aggregator.checkpoint import load_checkpoint, save_checkpoint
from aggregator.hll import HllRows
from darknet_iodef.events import encode_event
from tests.aggregator.flowmaker import SEC, T0, batch


@pytest.mark.parametrize("n", [10, 1000, 100_000])
def test_estimate_within_error(n: int) -> None:
    h = HllRows()
    values = np.arange(n, dtype=np.uint64) * np.uint64(2654435761)
    h.add(np.full(n, 7, dtype=np.uint64), values)
    h.add(np.full(n, 7, dtype=np.uint64), values[::-1])  # repeats change nothing
    est = h.estimate(7)
    assert abs(est - n) <= max(1, 0.05 * n)  # 3 standard errors (1.6 %)


def scan_rows(first: int, count: int) -> list[dict]:
    return [
        {"src_ip": "45.1.1.1", "dst_ip": f"198.18.{(first + i) // 256}.{(first + i) % 256}", "ts": i % 60}
        for i in range(count)
    ]


def test_source_past_the_cap_is_estimated(make_agg, tmp_path: Path) -> None:
    agg = make_agg(scan_exact_cap=100)
    agg.process(batch(scan_rows(0, 80)))  # exact
    agg.process(batch(scan_rows(80, 1000), start=T0 + 60 * SEC))  # crosses the cap: sketched
    save_checkpoint(agg, tmp_path / "s.npz")
    agg2 = make_agg(scan_exact_cap=100)
    assert load_checkpoint(agg2, tmp_path / "s.npz")
    out = []
    for a in (agg, agg2):
        events = a.process(batch(scan_rows(0, 3000), start=T0 + 120 * SEC))  # 1,920 new ones
        events += a.flush()
        out.append(b"".join(encode_event(e) for e in events))
        ev = events[-1]
        assert ev["extra.destinations_capped"] is True
        assert abs(ev["extra.destinations_distinct"] - 3000) <= 150
    assert out[0] == out[1]  # the sketch survives the checkpoint
    assert len(agg.scan.hll) == 1
