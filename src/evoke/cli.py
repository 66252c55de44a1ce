"""The ``evoke`` command line: a thin layer over the stage modules.

Each workflow rule is one call of a subcommand here, so the same command runs
on a laptop, in a SLURM job and in a test. Subcommand groups live beside the
code they call: a module that adds commands exposes ``register(subparsers)``
and is listed in ``COMMAND_MODULES``.
"""

from __future__ import annotations

import argparse
import importlib
import json
import logging
import os
import re
import sys
from pathlib import Path

from evoke import EvokeError, __version__

log = logging.getLogger("evoke")

# modules that add their own subcommands with register(subparsers)
COMMAND_MODULES = [
    "evoke.cli_stages",
    "evoke.inspect",
    "evoke.status",
    "evoke.demo",
    "evoke.features.cli",
    "evoke.heads.cli",
    "evoke.labels.cli",
    "evoke.danmaku.cli",
    "evoke.datasets.cli",
    "evoke.predict.cli",
]


def _settings(text: str) -> dict:
    """Parse a JSON settings block handed over by a workflow rule's params."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not valid JSON settings: {exc}") from exc
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError("settings must be a JSON object")
    return value


def plain_text(text: str) -> str:
    """Docstring (reStructuredText) markup as plain text for --help: ``x`` and
    :func:`x` become x, ``::`` before a literal block a colon."""
    text = re.sub(r":[a-z]+:`~?([^`]+)`", r"\1", text)
    text = re.sub(r"``([^`]+)``", r"\1", text)
    text = re.sub(r"\*\*([^*]+)\*\*", r"\1", text)
    text = re.sub(r"\n\s*::\n", "\n", text)
    return re.sub(r"::$|::(?=\n)", ":", text)


def _plain_help(parser: argparse.ArgumentParser) -> None:
    """Clean every (sub)parser's description and every option's help of docstring markup."""
    if parser.description:
        parser.description = plain_text(parser.description)
    for action in parser._actions:
        if action.help and action.help is not argparse.SUPPRESS:
            action.help = plain_text(action.help)
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                _plain_help(sub)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="evoke", description="Predict how videos make viewers feel: the evoke pipeline's commands."
    )
    parser.add_argument("--version", action="version", version=f"evoke {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name is None or not (name == exc.name or name.startswith(exc.name + ".")):
                raise
            continue  # a command group that is not part of this installation
        module.register(sub)
    _plain_help(parser)
    return parser


def setup_logging(verbose: bool = False, quiet: bool = False) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(
        level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except EvokeError as exc:
        print(f"evoke: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("evoke: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped to a reader that stopped (| head): not an error
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())  # so Python's exit flush does not fail again
        return 0


def add_settings_argument(p: argparse.ArgumentParser, what: str) -> None:
    p.add_argument(
        "--settings", type=_settings, default=None,
        help=f"JSON object of {what} settings (as the workflow passes them); "
        "defaults to the config file's",
    )
    p.add_argument("--config", type=Path, default=Path("config.yaml"), help="config file (default: config.yaml)")


if __name__ == "__main__":
    raise SystemExit(main())
