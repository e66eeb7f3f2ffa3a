"""Network definitions, one module per architecture; each module also holds the architecture's spec."""

from .rrdbnet import RRDBNet
from .srvgg import SRVGGNetCompact

__all__ = ["RRDBNet", "SRVGGNetCompact"]
