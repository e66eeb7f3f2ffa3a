"""The architectures the library knows, and the one place that recognises a state dict as one of them.

Canonicalisation, detection, building and tags iterate `SPECS`; files written by `save_model` name their
architecture and hyper-parameters in their metadata and skip detection.
"""

from __future__ import annotations

from ..errors import ModelLoadError
from .detect import rrdbnet, srvgg
from .spec import ArchitectureSpec, Hyperparameters, StateDict

SPECS: dict[str, ArchitectureSpec] = {spec.name: spec for spec in (rrdbnet.SPEC, srvgg.SPEC)}


def register(spec: ArchitectureSpec) -> None:
    """Adds an architecture (a plug-in, or a test's throw-away network); names are unique."""
    if spec.name in SPECS:
        raise ValueError(f"an architecture named {spec.name!r} is already registered")
    SPECS[spec.name] = spec


def get_spec(name: str) -> ArchitectureSpec:
    """The spec named `name` exactly, or by any case of its name or one of its aliases."""
    if name in SPECS:
        return SPECS[name]
    for spec in SPECS.values():
        if name.lower() in (spec.name.lower(), *spec.aliases):
            return spec
    known = ", ".join(f"{spec.name} ({', '.join(spec.aliases)})" if spec.aliases else spec.name for spec in SPECS.values())
    raise ModelLoadError(f"unknown architecture {name!r}; known: {known}")


def canonicalize(state: StateDict) -> StateDict:
    """Every family's foreign key layouts mapped onto its canonical keys; canonical input comes back unchanged."""
    for spec in SPECS.values():
        state = spec.canonicalize(state)
    return state


def recognise(state: StateDict) -> tuple[ArchitectureSpec, Hyperparameters] | None:
    """The architecture of a canonical state dict and its constructor keywords, read from key names and shapes; None
    when no family here matches its keys (another architecture, which spandrel may know)."""
    for spec in SPECS.values():
        if spec.matches(state):
            return spec, spec.read_hyperparameters(state)
    return None


def detect(state: StateDict) -> tuple[ArchitectureSpec, Hyperparameters]:
    """As `recognise`, with an error that names the keys each family expects when none matches."""
    found = recognise(state)
    if found is None:
        raise ModelLoadError(f"unrecognised model: expected {expected_keys()}; found {describe_keys(state)}")
    return found


def expected_keys() -> str:
    return " or ".join(spec.expected_keys for spec in SPECS.values())


def describe_keys(state: StateDict) -> str:
    return f"{len(state)} keys such as {', '.join(sorted(state)[:6])}"
