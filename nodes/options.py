"""Node inputs generated from option fields (`realesr_core.option_fields`): a widget's bounds, default and tooltip
are the ones the library enforces, and the queue-time check is the library's own."""

from __future__ import annotations

from typing import Any

from realesr_core import RealESRError
from realesr_core.option_fields import check_value, described_fields

WIDGETS = {int: "INT", float: "FLOAT", bool: "BOOLEAN", str: "STRING"}


def option_input(options_class: type, name: str, tooltip_note: str = "", **widget: Any) -> tuple:
    """A V1 input spec for one field: a combo for choices, else a number/boolean widget with the field's bounds
    (`widget` overrides or adds settings, e.g. a node-specific default)."""
    field = described_fields(options_class)[name]
    facts = field.facts
    tooltip = facts.help + (f" {tooltip_note}" if tooltip_note else "")
    spec: dict[str, Any] = {"default": field.default, "tooltip": tooltip}
    if facts.choices is not None:
        return (list(facts.choices), {**spec, **widget})
    if facts.minimum is not None:
        spec["min"] = 0 if facts.zero_means is not None else facts.minimum
    if facts.maximum is not None:
        spec["max"] = facts.maximum
    if facts.step is not None:
        spec["step"] = facts.step
    return (WIDGETS[field.value_type], {**spec, **widget})


def check_option_values(options_class: type, **values: Any) -> bool | str:
    """VALIDATE_INPUTS' answer for these values: True, or the library's message for the first bad one."""
    fields = described_fields(options_class)
    try:
        for name, value in values.items():
            check_value(fields[name], value)
    except RealESRError as error:
        return str(error)
    return True
