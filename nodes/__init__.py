"""ComfyUI node adapters over realesr_core (the nodes themselves come with the nodes issue)."""

NODE_CLASS_MAPPINGS: dict[str, type] = {}
NODE_DISPLAY_NAME_MAPPINGS: dict[str, str] = {}
