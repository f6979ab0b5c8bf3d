"""Per-partition checkpoints of the aggregator: engine state, aligner state and bus position.

Theory of operation. An aggregator keeps one engine per flows partition it
owns (:mod:`darknet_iodef.pipeline.aggregator_stage`), because a partition is
the unit that moves between aggregators: a checkpoint of *that partition's*
engine is what its next owner needs. A checkpoint is two files in a directory
every aggregator of the group can read (one host, or a shared file system):

* ``<topic>-<partition>.<generation>.npz`` -- the engine state, written by
  :func:`aggregator.checkpoint.save_checkpoint` (atomic, fsync'd);
* ``<topic>-<partition>.json`` -- the commit point, renamed into place after
  the npz: the generation to load, the next offset of the partition that the
  state does not include, and the aligner's sensor watermarks.

A crash between the two leaves the previous JSON naming the previous npz, so
a reader always gets a consistent pair. Older npz files are removed once the
new JSON is in place. The offset in the JSON is what the runner may commit
(``held_offsets``); re-reading anything before it is harmless because the
engine skips batches it already processed (per-sensor interval watermarks)
and the aligner hands such parts straight to it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aggregator.checkpoint import load_checkpoint, save_checkpoint
from aggregator.engine import Aggregator
from darknet_iodef.errors import ConfigError, RecordError

__all__ = ["CheckpointStore", "Restored"]

FORMAT = "darknet-iodef-partition-checkpoint/1"


@dataclass(frozen=True, slots=True)
class Restored:
    offset: int
    aligner: dict[str, Any]
    generation: int


class CheckpointStore:
    """Save and load one partition's checkpoint under ``directory``."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ConfigError(
                "[pipeline] checkpoint_dir", f"cannot create {directory}: {exc.strerror}"
            ) from None
        if not os.access(self.directory, os.W_OK):
            raise ConfigError("[pipeline] checkpoint_dir", f"{directory} is not writable")

    def _stem(self, topic: str, partition: int) -> str:
        return f"{topic}-{partition}"

    def save(
        self,
        topic: str,
        partition: int,
        engine: Aggregator,
        offset: int,
        aligner: dict[str, Any],
        generation: int,
        writer: str = "",
    ) -> None:
        stem = self._stem(topic, partition)
        npz = self.directory / f"{stem}.{generation}.npz"
        save_checkpoint(engine, npz)
        meta = {
            "format": FORMAT,
            "generation": generation,
            "offset": offset,
            "aligner": aligner,
            "writer": writer,
        }
        fd, tmp = tempfile.mkstemp(dir=self.directory, prefix=f".{stem}.", suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(meta, fh, sort_keys=True)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.directory / f"{stem}.json")
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        for old in self.directory.glob(f"{stem}.*.npz"):
            if old != npz:
                with contextlib.suppress(OSError):
                    old.unlink()

    def writer(self, topic: str, partition: int) -> tuple[str, int] | None:
        """(writer, generation) of the partition's checkpoint, None when there is none (or unreadable)."""
        try:
            meta = json.loads((self.directory / f"{self._stem(topic, partition)}.json").read_text())
            return str(meta.get("writer", "")), int(meta["generation"])
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def load(self, topic: str, partition: int, engine: Aggregator) -> Restored | None:
        """Restore ``engine``; None when this partition was never checkpointed."""
        stem = self._stem(topic, partition)
        path = self.directory / f"{stem}.json"
        try:
            meta = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise RecordError(str(path), "", f"not a readable partition checkpoint ({exc})") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise RecordError(str(path), "field format", "not a partition checkpoint")
        generation = int(meta["generation"])
        if not load_checkpoint(engine, self.directory / f"{stem}.{generation}.npz"):
            raise RecordError(str(path), "field generation", f"engine state {generation} is missing")
        return Restored(int(meta["offset"]), dict(meta.get("aligner", {})), generation)
