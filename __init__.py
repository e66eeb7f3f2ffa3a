"""ComfyUI entry point for the realesr node pack. Imports nothing heavy: torch comes with the node modules."""

import os
import sys

# ComfyUI imports this folder as a package under a path-derived name; the library beside it is imported by its
# own name, so make it importable when the pack was cloned into custom_nodes rather than pip-installed.
_PACK_DIR = os.path.dirname(os.path.abspath(__file__))
if _PACK_DIR not in sys.path:
    sys.path.append(_PACK_DIR)

from .nodes import NODE_CLASS_MAPPINGS, NODE_DISPLAY_NAME_MAPPINGS  # noqa: E402

# The frontend extension (served at /extensions/<pack folder>/): hides the widgets a node's mode ignores.
WEB_DIRECTORY = "./web"

__all__ = ["NODE_CLASS_MAPPINGS", "NODE_DISPLAY_NAME_MAPPINGS", "WEB_DIRECTORY"]
