"""Running `upscale` on a Ray cluster (`realesr upscale --ray`; optional extra `ray`, imported only when used).

The job and its plan are the library's (`jobs.UpscaleJob`, `jobs.plan_upscale`), the same as the plain command's.
`units` cuts the planned inputs into units of work (an image, a video's keyframe scan and then its segments, a huge
image's row of tiles) from `media/`, and keeps the manifest of finished outputs; `fleet` joins the cluster and plans
one upscaler per slot, node by node; `worker` is the actor that loads the model once and runs units through
`upscaling/`; `dispatch` hands units to the workers with bounded retries; `run` plans the items, finishes them (joins
parts) and records them.
"""

from .dispatch import Fleet, end_warm_workers
from .fleet import ClusterLost, HeadWatch, Slot, connect, fleet_for, plan_fleet
from .run import Interrupted, Outcome, plan_items, run_items, upscale_on_ray
from .units import MANIFEST_NAME, ImageUnit, Item, Manifest, ScanUnit, image_item, item_key

__all__ = [
    "MANIFEST_NAME",
    "ClusterLost",
    "Fleet",
    "HeadWatch",
    "ImageUnit",
    "Interrupted",
    "Item",
    "Manifest",
    "Outcome",
    "ScanUnit",
    "Slot",
    "connect",
    "end_warm_workers",
    "fleet_for",
    "image_item",
    "item_key",
    "plan_fleet",
    "plan_items",
    "run_items",
    "upscale_on_ray",
]
