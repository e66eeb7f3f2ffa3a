"""The `realesr` command line: one module per subcommand, each adding its own parser; nothing in the library
imports this package."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from pathlib import Path

from ..errors import RealESRError
from ..models import zoo
from . import degrade, export, models, train, upscale
from .common import say, warnings_on_their_own_lines


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="realesr", description="Real-ESRGAN upscaling and model tools.")
    sub = parser.add_subparsers(dest="command", required=True)
    upscale.add_parser(sub)
    models.add_parsers(sub)
    degrade.add_parser(sub)
    train.add_parsers(sub)
    export.add_parser(sub)
    return parser


def use_cache_from_environment() -> None:
    """$REALESR_CACHE, else $XDG_CACHE_HOME/realesr, as the cache of converted weights (default ~/.cache/realesr)."""
    if explicit := os.environ.get("REALESR_CACHE"):
        zoo.set_cache_dir(explicit)
    elif xdg := os.environ.get("XDG_CACHE_HOME"):
        zoo.set_cache_dir(Path(xdg) / "realesr")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    use_cache_from_environment()
    # tifffile logs what it finds wrong in a damaged file; the input's failure line says it once, in our words
    logging.getLogger("tifffile").setLevel(logging.ERROR)
    try:
        with warnings_on_their_own_lines():
            return args.func(args)
    except RealESRError as exc:
        say(f"realesr: error: {exc}")
        return 2
    except KeyboardInterrupt as stop:
        left = getattr(stop, "left", "")
        say(f"realesr: interrupted; {left}" if left else "realesr: interrupted")
        return 128 + getattr(stop, "signal_number", signal.SIGINT)


if __name__ == "__main__":
    sys.exit(main())
