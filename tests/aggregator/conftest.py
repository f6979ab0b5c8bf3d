"""Fixtures of the aggregator tests: an engine on a /16 telescope."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from aggregator.engine import Aggregator
from aggregator.known_scanners import KnownScanners
from aggregator.settings import AggregatorSettings
from darknet_iodef.addresses import DarkPrefixes

#: the test telescope: 198.18.0.0/16 (n = 65536) and an IPv6 /48
DARK = "198.18.0.0/16,2001:db8:dead::/48"


@pytest.fixture
def make_agg() -> Callable[..., Aggregator]:
    def make(darknet: str = DARK, known: KnownScanners | None = None, **overrides: Any) -> Aggregator:
        return Aggregator(AggregatorSettings(**overrides), DarkPrefixes.parse(darknet), known)

    return make
