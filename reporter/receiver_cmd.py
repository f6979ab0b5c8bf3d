"""(Being written: this module's issue fills it in.)"""

from __future__ import annotations

import argparse


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this subcommand to ``darknet-iodef``."""
