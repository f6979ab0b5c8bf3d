"""Options of the wiring between the stages (the ``[pipeline]`` section), each declared once.

The detection and reporting options stay in their own sections
(``[aggregator]``, ``[reporter]``); these only say how the stages hand work
to each other: where an aggregator keeps the checkpoints of the partitions it
owns, how often it saves them, and how long the reporter waits for late
events before it closes a reporting period.
"""

from __future__ import annotations

from dataclasses import dataclass

from darknet_iodef.errors import ConfigError
from darknet_iodef.settings import setting

__all__ = ["SECTION", "PipelineSettings"]

SECTION = "pipeline"


@dataclass(frozen=True, slots=True)
class PipelineSettings:
    checkpoint_dir: str = setting(
        "",
        "directory of the aggregators' per-partition checkpoints; shared by every aggregator of the "
        "group (a partition that moves is restored from here); required in Kafka mode",
    )
    checkpoint_interval_s: float = setting(
        30.0,
        "least wall time between two checkpoints of one partition; offsets are committed up to the "
        "last checkpoint, so this bounds what a restart re-reads (0 = after every closed interval)",
    )
    sensors: str = setting(
        "",
        "names of the sensors, comma-separated: aggregators wait for each of them before closing an "
        "interval (empty: the sensors seen so far; a sensor not yet heard from is then not waited for)",
    )
    sensor_lag_s: int = setting(
        600,
        "event time an aggregator waits for a sensor that falls behind the others before it closes "
        "an interval without it (its later batches are then counted as late)",
    )
    report_grace_s: int = setting(
        300,
        "event time after a reporting period's end before its documents are written (late revisions "
        "after that rewrite the period's documents)",
    )
    report_keep_periods: int = setting(
        48, "closed reporting periods kept in memory, so a late revision can still update them"
    )

    def __post_init__(self) -> None:
        if self.checkpoint_interval_s < 0:
            raise ConfigError("[pipeline] checkpoint_interval_s", "must not be negative")
        if self.sensor_lag_s < 0:
            raise ConfigError("[pipeline] sensor_lag_s", "must not be negative")
        if self.report_grace_s < 0:
            raise ConfigError("[pipeline] report_grace_s", "must not be negative")
        if self.report_keep_periods < 1:
            raise ConfigError("[pipeline] report_keep_periods", "must be at least 1")

    @property
    def sensor_names(self) -> frozenset[str]:
        return frozenset(n.strip() for n in self.sensors.split(",") if n.strip())
