"""The sensor's options, each declared once (``[sensor]`` table, env, flags).

Theory of operation: the flow builder folds packets into intervals of event
time (DOMAIN.md section 2, Corsaro's 60 s default), keeps the first few probes
of each source as samples for tool fingerprints (DOMAIN.md section 4: Merit
keeps 3 per event, we default to 4), and tolerates a little reordering
between packets before it closes an interval. Every value is checked here, at
start-up, so a bad one stops the program before it reads a byte.
"""

from __future__ import annotations

from dataclasses import dataclass

from darknet_iodef.errors import ConfigError
from darknet_iodef.settings import setting

__all__ = ["MAX_SAMPLES_PER_SOURCE", "SECTION", "SensorSettings"]

#: the TOML table and environment prefix (``DARKNET_IODEF_SENSOR_*``)
SECTION = "sensor"
#: more samples per source than this is no longer a sample (memory per source)
MAX_SAMPLES_PER_SOURCE = 64


@dataclass(frozen=True, slots=True)
class SensorSettings:
    """Options of ``darknet-iodef sensor`` and of the flow builder."""

    darknet: str = setting(
        "", "the dark prefixes, comma-separated CIDRs (IPv4 and IPv6), e.g. 198.18.0.0/15,2001:db8::/32"
    )
    interval: int = setting(
        60, "interval of event time in seconds; intervals are aligned to multiples of it since the epoch"
    )
    samples_per_source: int = setting(
        4, "probe samples kept per source and interval: its first packets in time order"
    )
    reorder_slack: float = setting(
        0.0,
        "seconds an interval stays open after its end for reordered packets; "
        "packets for an interval already closed are counted as late and dropped",
    )
    name: str = setting("", "the sensor's name in every flow batch (default: the host name)")

    def __post_init__(self) -> None:
        if not 1 <= self.interval <= 86400:
            raise ConfigError(f"[{SECTION}] interval", f"{self.interval} is not between 1 and 86400 seconds")
        if not 0 <= self.samples_per_source <= MAX_SAMPLES_PER_SOURCE:
            raise ConfigError(
                f"[{SECTION}] samples_per_source",
                f"{self.samples_per_source} is not between 0 and {MAX_SAMPLES_PER_SOURCE}",
            )
        if not 0 <= self.reorder_slack < self.interval:
            raise ConfigError(
                f"[{SECTION}] reorder_slack",
                f"{self.reorder_slack} must be at least 0 and less than the interval ({self.interval} s)",
            )
        if len(self.name.encode("utf-8")) > 255:
            raise ConfigError(f"[{SECTION}] name", "longer than 255 bytes")

    @property
    def interval_ns(self) -> int:
        return self.interval * 1_000_000_000

    @property
    def reorder_slack_ns(self) -> int:
        return round(self.reorder_slack * 1e9)
