"""Sensor subcommands: ``packets`` (field dump) and ``sensor`` (flow summaries)."""

from __future__ import annotations

import argparse

from sensor import packets_cmd, sensor_cmd


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    packets_cmd.register(subparsers)
    sensor_cmd.register(subparsers)
