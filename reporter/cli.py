"""Reporter subcommands: ``report`` (documents, --send) and ``receiver`` (for CSIRTs)."""

from __future__ import annotations

import argparse

from reporter import receiver_cmd, report_cmd


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    report_cmd.register(subparsers)
    receiver_cmd.register(subparsers)
