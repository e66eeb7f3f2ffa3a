"""Network definitions, one module per architecture."""

from .rescaled import OutputRescaled
from .rrdbnet import RRDBNet
from .srvgg import SRVGGNetCompact

ARCHITECTURES = {"RRDBNet": RRDBNet, "SRVGGNetCompact": SRVGGNetCompact}

__all__ = ["ARCHITECTURES", "OutputRescaled", "RRDBNet", "SRVGGNetCompact"]
