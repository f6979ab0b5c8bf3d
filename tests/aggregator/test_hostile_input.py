"""Flow batches are untrusted (Kafka, files): any field values must give events or nothing, never a crash."""

from __future__ import annotations

import numpy as np
import pytest

from darknet_iodef.events import decode_event, encode_event
from darknet_iodef.flowtuple import FLOW_DTYPE, SAMPLE_DTYPE, FlowBatch
from tests.aggregator.flowmaker import SEC, T0


def random_records(rng: np.random.Generator, dtype: np.dtype, n: int) -> np.ndarray:
    raw = rng.integers(0, 256, n * dtype.itemsize, dtype=np.uint8)
    return raw.view(dtype).copy()


@pytest.mark.parametrize("seed", range(6))
def test_random_bytes_as_flows(make_agg, seed: int) -> None:
    rng = np.random.default_rng(seed)
    agg = make_agg()
    events = []
    for k in range(3):
        f = random_records(rng, FLOW_DTYPE, 3000)
        # half the rows made plausible so that they reach deep into the detectors
        half = f[: f.shape[0] // 2]
        half["src_ip"] = f["src_ip"][::-1][: half.shape[0]]
        half["protocol"] = rng.choice(np.array([1, 6, 17, 58], np.uint8), half.shape[0])
        half["ip_version"] = 4
        s = random_records(rng, SAMPLE_DTYPE, 500)
        s["src_ip"] = f["src_ip"][:500]
        start = T0 + k * 60 * SEC if k != 1 else int(rng.integers(-(2**62), 2**62))
        events += agg.process(FlowBatch(start, 60 * SEC, "fuzz", f, s))
    events += agg.flush()
    for ev in events:
        decode_event(encode_event(ev))
