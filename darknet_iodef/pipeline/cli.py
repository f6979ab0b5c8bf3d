"""Pipeline subcommands: ``run`` (embedded), ``aggregator`` and ``reporter`` (Kafka mode)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add the pipeline's subcommands to ``darknet-iodef``."""
