"""Subcommands of the pipeline as a whole: ``check`` (``run`` joins when the stages are wired).

``darknet-iodef check CONFIG`` validates a configuration file -- and the
``DARKNET_IODEF_*`` environment it would run with -- without running
anything: one line per problem, naming the setting, exit status 2 if there is
any, 0 otherwise. ``darknet-iodef check --print-defaults`` prints every option
with its default and doc as a commented TOML file.
"""

from __future__ import annotations

import argparse
import sys

from darknet_iodef.config import SECTIONS, check_config, default_toml

__all__ = ["cmd_check", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    """Add this component's subcommands to ``darknet-iodef``."""
    check = subparsers.add_parser(
        "check",
        help="validate a configuration file without running",
        description="Validate a configuration file (and the DARKNET_IODEF_* environment variables) "
        "without running anything. Prints one line per problem, naming the setting, and exits 2 "
        "if there is any.",
    )
    check.add_argument("config", nargs="?", metavar="CONFIG", help="TOML configuration file")
    check.add_argument("--print-defaults", action="store_true",
                       help="print every option with its default and doc as a commented TOML file")
    check.set_defaults(func=cmd_check)


def cmd_check(args: argparse.Namespace) -> int:
    if args.print_defaults:
        sys.stdout.write(default_toml())
        return 0
    if not args.config:
        print("darknet-iodef check: give a CONFIG file (or --print-defaults)", file=sys.stderr)
        return 2
    problems = check_config(args.config)
    for line in problems:
        print(f"{args.config}: {line}")
    if problems:
        print(f"{args.config}: {len(problems)} problem{'s' if len(problems) != 1 else ''}", file=sys.stderr)
        return 2
    print(f"{args.config}: ok ({', '.join(SECTIONS)} checked)")
    return 0
