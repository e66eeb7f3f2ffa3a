"""Command-line arguments generated from option fields (`realesr_core.option_fields`): the help, choices and
bounds a user reads in `--help` are the ones the library enforces."""

from __future__ import annotations

import argparse
from collections.abc import Callable, Iterable
from typing import Any

from ..errors import RealESRError
from ..option_fields import DescribedField, check_value, described_fields


def add_option_arguments(parser: argparse.ArgumentParser | Any, options_class: type, names: Iterable[str],
                         **short_flags: str) -> None:
    """Adds `--name` for each named field of `options_class` (`short_flags` maps a field to an extra flag like
    "-s"); the value lands in `args.<name>` with the field's default."""
    fields = described_fields(options_class)
    for name in names:
        field = fields[name]
        flags = [field.facts.flag or "--" + name.replace("_", "-")]
        if name in short_flags:
            flags.insert(0, short_flags[name])
        values = field.describe_values()
        default = "" if field.default is None else f"; default {field.default}"
        said = f"{values}{default}" if values else default[2:]
        help_text = f"{field.facts.help.rstrip('.')} ({said})" if said else field.facts.help
        if field.value_type is bool:
            parser.add_argument(*flags, dest=name, default=field.default, help=help_text,
                                action=argparse.BooleanOptionalAction if field.default else "store_true")
            continue
        parser.add_argument(*flags, dest=name, default=field.default, help=help_text, type=_checked(field),
                            metavar=None if field.facts.choices is None else "{" + ",".join(field.facts.choices) + "}")


def option_values(args: argparse.Namespace, options_class: type, names: Iterable[str]) -> dict[str, Any]:
    """The parsed values of the named fields, ready for `options_class(**values)`."""
    return {name: getattr(args, name) for name in names if name in described_fields(options_class)}


def _checked(field: DescribedField) -> Callable[[str], Any]:
    """argparse's `type`: converts and checks the value, so a bad one is a usage error naming the flag."""

    def convert(text: str) -> Any:
        try:
            value = field.value_type(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a{'n' if field.value_type is int else ''} "
                                             f"{field.value_type.__name__}") from None
        try:
            check_value(field, value)
        except RealESRError as error:
            raise argparse.ArgumentTypeError(str(error)) from None
        return value

    convert.__name__ = field.value_type.__name__
    return convert
