"""The ``darknet-iodef`` command: one entry point, a subcommand per job.

Each component package owns its subcommands in its own ``cli.py`` with a
``register(subparsers)`` function; this module only assembles them and owns
the top-level failure policy: bad input or configuration is one line on
stderr and a non-zero exit, never a traceback (a traceback is a bug).
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from darknet_iodef.errors import ConfigError, InputError, TransientError
from darknet_iodef.logs import setup_logging

__all__ = ["main"]

#: modules whose ``register(subparsers)`` adds subcommands, in --help order
COMMAND_MODULES = (
    "sensor.cli",
    "aggregator.cli",
    "reporter.cli",
    "darknet_iodef.pipeline_cli",
    "darknet_iodef.pipeline.cli",
)

DESCRIPTION = """\
Turn the traffic that reaches unused address space (a darknet or network
telescope) into standard incident reports.

  packets    dump per-packet header fields of captures (CSV, JSON lines, npz)
  sensor     fold captures (or a live interface) into flow summaries
  aggregate  detect scans (and their tools), spoofing and DoS backscatter
  report     turn detection events into IODEF 2.0 / RID reports, and send them
  receiver   accept RID reports over HTTPS with mutual TLS (for CSIRTs)
  run        all of the above in one process

Run 'darknet-iodef COMMAND --help' for the options of each command.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="darknet-iodef",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--log-format", choices=("text", "json"), default="text",
                        help="log lines to stderr as text (default) or JSON")
    parser.add_argument("--log-level", default="INFO",
                        help="DEBUG, INFO (default), WARNING or ERROR")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(name)
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.log_format, args.log_level)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    log = logging.getLogger("darknet_iodef")
    try:
        return int(args.func(args) or 0)
    except ConfigError as exc:
        print(f"darknet-iodef: {exc}", file=sys.stderr)
        return 2
    except InputError as exc:
        print(f"darknet-iodef: {exc.line()}", file=sys.stderr)
        return 1
    except TransientError as exc:
        log.error("giving up: %s", exc)
        return 75  # EX_TEMPFAIL
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
