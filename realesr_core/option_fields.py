"""Option fields that carry their own help and bounds, so each fact about an option is written once.

An options dataclass declares its fields with `option(...)`; the command line generates its arguments from them
(`realesr_core.cli.options`), the ComfyUI nodes their inputs (`nodes/options.py`), and `check_options` enforces the
bounds and choices when an options object is built, so the library, the command line and the nodes accept exactly
the same values.
"""

from __future__ import annotations

import dataclasses
import functools
import typing
from dataclasses import dataclass
from typing import Any

from .errors import RealESRError

METADATA_KEY = "realesr_option"


@dataclass(frozen=True)
class OptionFacts:
    """What a user is told about an option and which values it takes."""

    help: str
    minimum: float | None = None  # inclusive
    maximum: float | None = None  # inclusive
    step: float | None = None  # the increment a widget offers (not enforced: any value in bounds is accepted)
    choices: tuple[Any, ...] | None = None
    zero_means: str | None = None  # 0 is allowed outside the bounds and means this (e.g. "auto")
    flag: str | None = None  # the command line's flag, when not --field-name


def option(default: Any = dataclasses.MISSING, help: str = "", *, minimum: float | None = None,
           maximum: float | None = None, step: float | None = None, choices: tuple[Any, ...] | None = None,
           zero_means: str | None = None, flag: str | None = None,
           default_factory: Any = dataclasses.MISSING) -> Any:
    """A dataclass field with its help and bounds (`default_factory` for mutable defaults, as `dataclasses.field`)."""
    facts = OptionFacts(help, minimum, maximum, step, tuple(choices) if choices is not None else None, zero_means, flag)
    return dataclasses.field(default=default, default_factory=default_factory, metadata={METADATA_KEY: facts})


@dataclass(frozen=True)
class DescribedField:
    name: str
    type: Any  # the resolved annotation
    default: Any
    facts: OptionFacts

    @property
    def value_type(self) -> type:
        """int, float, bool or str: the annotation without `| None`."""
        args = [a for a in typing.get_args(self.type) if a is not type(None)] or [self.type]
        return next((a for a in args if a in (bool, int, float, str)), str)

    @property
    def optional(self) -> bool:
        return type(None) in typing.get_args(self.type)

    def describe_values(self) -> str:
        """The accepted values in words, for help texts and error messages."""
        facts = self.facts
        if facts.choices is not None:
            return "one of " + ", ".join(str(c) for c in facts.choices)
        if facts.minimum is None and facts.maximum is None:
            return ""
        low = "" if facts.minimum is None else f"{facts.minimum:g}"
        high = "" if facts.maximum is None else f"{facts.maximum:g}"
        span = f"{low}..{high}" if low and high else (f"at least {low}" if low else f"at most {high}")
        return f"0 ({facts.zero_means}) or {span}" if facts.zero_means else span


@functools.cache
def described_fields(cls: type) -> dict[str, DescribedField]:
    """The fields of `cls` declared with `option`, by name, in declaration order."""
    hints = typing.get_type_hints(cls)
    found = {}
    for f in dataclasses.fields(cls):
        facts = f.metadata.get(METADATA_KEY)
        if facts is None:
            continue
        default = f.default
        if default is dataclasses.MISSING:
            default = None if f.default_factory is dataclasses.MISSING else f.default_factory()
        found[f.name] = DescribedField(f.name, hints[f.name], default, facts)
    return found


def check_value(field: DescribedField, value: Any, owner: str = "") -> None:
    """Raises RealESRError naming the option when `value` is outside its choices or bounds."""
    facts = field.facts
    name = f"{owner}{field.name}"
    if value is None:
        if field.optional:
            return
        raise RealESRError(f"{name} must be given")
    if facts.choices is not None:
        if value not in facts.choices:
            raise RealESRError(f"{name} must be {field.describe_values()}; got {value!r}")
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    if facts.zero_means is not None and value == 0:
        return
    if (facts.minimum is not None and value < facts.minimum) or (facts.maximum is not None and value > facts.maximum):
        raise RealESRError(f"{name} must be {field.describe_values()}; got {value:g}")


def check_options(instance: Any, owner: str = "") -> None:
    """Checks every described field of a dataclass instance (call it from `__post_init__`)."""
    for field in described_fields(type(instance)).values():
        check_value(field, getattr(instance, field.name), owner)
