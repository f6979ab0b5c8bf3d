"""Subcommands of the aggregator: ``aggregate``."""

from __future__ import annotations

import argparse

from aggregator import aggregate_cmd

__all__ = ["register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this component's subcommands to ``darknet-iodef``."""
    aggregate_cmd.register(subparsers)
