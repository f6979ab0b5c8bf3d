"""Subcommands of this component (filled in by the component's own issue)."""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this component's subcommands to ``darknet-iodef``."""
