"""One source for each option's facts: the command line's arguments and the nodes' inputs are generated from the
option fields, and all three accept exactly the same values."""

from __future__ import annotations

import argparse

import pytest

from nodes import NODE_CLASS_MAPPINGS
from nodes.options import check_option_values, option_input
from realesr_core import RealESRError, UpscaleOptions
from realesr_core.cli import build_parser
from realesr_core.cli.options import add_option_arguments
from realesr_core.option_fields import described_fields

FIELDS = described_fields(UpscaleOptions)


def _upscale_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["upscale"]


def test_every_help_text_is_the_fields_own() -> None:
    help_text = " ".join(_upscale_parser().format_help().split())
    for name in ("tile", "overlap", "blend", "border", "precision", "alpha", "outscale", "width", "height"):
        first_words = " ".join(FIELDS[name].facts.help.split()[:6])
        assert first_words in help_text, name
    tooltips = NODE_CLASS_MAPPINGS["RealESR_Upscale"].INPUT_TYPES()["required"]
    assert tooltips["tile"][1]["tooltip"] == FIELDS["tile"].facts.help
    assert tooltips["alpha_mode"][0] == list(FIELDS["alpha"].facts.choices)


@pytest.mark.parametrize(("name", "value"), [("tile", 0), ("tile", 8), ("tile", 16), ("tile", 9000), ("overlap", -1),
                                             ("overlap", 256), ("overlap", 257), ("precision", "fp32-strict"),
                                             ("precision", "int8"), ("outscale", 0.01), ("outscale", 2.5)])
def test_library_command_line_and_node_agree(name: str, value: object) -> None:
    try:
        UpscaleOptions(**{name: value})
        library = None
    except RealESRError as error:
        library = str(error)
    parser = argparse.ArgumentParser(exit_on_error=False)
    add_option_arguments(parser, UpscaleOptions, [name])
    try:
        parsed = getattr(parser.parse_args([f"--{name}", str(value)]), name)
        command_line = None
        assert parsed == value
    except argparse.ArgumentError as error:
        command_line = str(error).split(": ", 1)[1]
    node = check_option_values(UpscaleOptions, **{name: value})
    assert command_line == library
    assert (node is True and library is None) or node == library


def test_node_widgets_carry_the_bounds() -> None:
    kind, spec = option_input(UpscaleOptions, "tile")
    assert kind == "INT" and spec["min"] == 0 and spec["max"] == FIELDS["tile"].facts.maximum
    assert spec["default"] == UpscaleOptions().tile
    kind, spec = option_input(UpscaleOptions, "overlap")
    assert (spec["min"], spec["max"], spec["default"]) == (0, 256, UpscaleOptions().overlap)
