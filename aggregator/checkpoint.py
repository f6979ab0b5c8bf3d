"""Checkpoint and restore of the aggregator's state (npz + JSON, atomic).

Theory of operation: every detector exposes its state as named numpy arrays
plus a small JSON-able dict. A checkpoint is one ``.npz`` holding the arrays
and the JSON (as a byte array named ``__meta__``), written to a temporary
file in the same directory, flushed, and renamed over the old one -- so a
crash leaves either the old or the new checkpoint, never half of one. The
meta records the dark prefixes and thresholds; restoring a checkpoint made for
another telescope or other thresholds is refused (its counts would be wrong).
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
import zipfile
from pathlib import Path
from typing import Any

import numpy as np

from aggregator.engine import Aggregator
from darknet_iodef.errors import ConfigError, RecordError

__all__ = ["FORMAT", "load_checkpoint", "save_checkpoint"]

FORMAT = "darknet-iodef-aggregator-checkpoint/2"  # 2: per-tool tested counts


def _identity(agg: Aggregator) -> dict[str, Any]:
    return {"darknet": str(agg.darknet), "thresholds": dataclasses.asdict(agg.th)}


def save_checkpoint(agg: Aggregator, path: str | Path) -> None:
    path = Path(path)
    arrays: dict[str, np.ndarray] = {}
    meta: dict[str, Any] = {
        "format": FORMAT,
        **_identity(agg),
        "watermarks": agg.watermarks,
        "current_end": agg.current_end,
        "counters": agg.counters,
        "detectors": {},
    }
    for det in agg.detectors:
        a, m = det.state()
        arrays.update(a)
        meta["detectors"][det.name] = m
    arrays["__meta__"] = np.frombuffer(json.dumps(meta, sort_keys=True).encode(), dtype=np.uint8)
    fd, tmp = tempfile.mkstemp(dir=path.parent or ".", prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(agg: Aggregator, path: str | Path) -> bool:
    """Restore ``agg`` from ``path``; False if there is no checkpoint yet."""
    path = Path(path)
    if not path.exists():
        return False
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        meta = json.loads(arrays.pop("__meta__").tobytes())
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise RecordError(str(path), "", f"not a readable checkpoint ({exc})") from None
    if meta.get("format") != FORMAT:
        raise RecordError(str(path), "field format", f"unknown checkpoint format {meta.get('format')!r}")
    ident = json.loads(json.dumps(_identity(agg)))
    for key in ("darknet", "thresholds"):
        if meta.get(key) != ident[key]:
            raise ConfigError(
                "checkpoint", f"{path} was made with other {key}; remove it or use the same ones"
            )
    agg.watermarks = {str(k): int(v) for k, v in meta["watermarks"].items()}
    agg.current_end = None if meta["current_end"] is None else int(meta["current_end"])
    agg.counters.update({str(k): int(v) for k, v in meta["counters"].items()})
    for det in agg.detectors:
        det.restore(arrays, meta["detectors"][det.name])
    return True
