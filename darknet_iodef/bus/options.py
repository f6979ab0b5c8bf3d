"""Command-line plumbing for Kafka mode, shared by the sensor, aggregator and reporter commands.

``add_bus_arguments(parser)`` adds ``--kafka HOST:PORT[,...]`` and
``--metrics HOST:PORT``; ``bus_settings(args, table)`` and
``metrics_settings(args, table)`` build the ``[bus]`` and ``[metrics]``
sections from the TOML document, the environment and those flags (flags win);
``start_metrics`` opens the Prometheus endpoint when one is configured.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Mapping
from typing import Any

from darknet_iodef.bus.settings import BusSettings
from darknet_iodef.metrics import MetricsSettings, serve
from darknet_iodef.settings import load

__all__ = ["add_bus_arguments", "bus_settings", "metrics_settings", "start_metrics"]

log = logging.getLogger(__name__)


def add_bus_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("bus and metrics")
    group.add_argument("--kafka", metavar="HOST:PORT[,...]", default=None,
                       help="run against Kafka (bootstrap servers) instead of the in-memory bus "
                       "([bus] kafka)")
    group.add_argument("--metrics", metavar="HOST:PORT", default=None,
                       help="serve Prometheus metrics on this address, e.g. 127.0.0.1:9464 "
                       "([metrics] listen; default off)")


def _table(doc: Mapping[str, Any] | None, name: str) -> Mapping[str, Any] | None:
    return None if doc is None else doc.get(name)


def bus_settings(args: argparse.Namespace, doc: Mapping[str, Any] | None = None) -> BusSettings:
    """``[bus]`` from the TOML document ``doc``, ``DARKNET_IODEF_BUS_*`` and ``--kafka``."""
    return load(BusSettings, "bus", _table(doc, "bus"), os.environ, {"kafka": getattr(args, "kafka", None)})


def metrics_settings(args: argparse.Namespace, doc: Mapping[str, Any] | None = None) -> MetricsSettings:
    """``[metrics]`` from the TOML document, ``DARKNET_IODEF_METRICS_*`` and ``--metrics``."""
    return load(MetricsSettings, "metrics", _table(doc, "metrics"), os.environ,
                {"listen": getattr(args, "metrics", None)})


def start_metrics(settings: MetricsSettings) -> Any:
    """Start the Prometheus endpoint if ``listen`` is set; returns the server or None."""
    if not settings.listen:
        return None
    server = serve(settings.listen)
    log.info("serving Prometheus metrics on http://%s/metrics", settings.listen)
    return server
