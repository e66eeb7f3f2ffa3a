"""Jobs over files: what a run's inputs are (files and folders searched, each file identified by its content), where
each output goes (the tree mirrored, one name per input), and the plan of an upscale of files that the command line
and Ray both run (`plan_upscale`). Made before any work, lazily, so a million-file archive starts at once."""

from ..media.kinds import IMAGE, MEDIA_SUFFIXES, VIDEO, Identified, identify
from .inputs import Inputs, Named, PlanError, SkipList
from .upscale import (
    DEFAULT_QUALITY,
    IN_MEMORY,
    SIXTEEN_BIT_FORMATS,
    TILED,
    PlannedFile,
    UpscaleJob,
    UpscalePlan,
    check_device,
    check_job,
    check_videos,
    must_stream,
    plan_upscale,
)

__all__ = [
    "DEFAULT_QUALITY",
    "IMAGE",
    "IN_MEMORY",
    "MEDIA_SUFFIXES",
    "SIXTEEN_BIT_FORMATS",
    "TILED",
    "VIDEO",
    "Identified",
    "Inputs",
    "Named",
    "PlanError",
    "PlannedFile",
    "SkipList",
    "UpscaleJob",
    "UpscalePlan",
    "check_device",
    "check_job",
    "check_videos",
    "identify",
    "must_stream",
    "plan_upscale",
]
