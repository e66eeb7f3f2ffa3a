"""Running `upscale` on a Ray cluster (`realesr upscale --ray`; optional extra `ray`, imported only when used).

`units` cuts the inputs into units of work (an image, a video's keyframe segment, a huge image's row of tiles) from
`media/`, and keeps the manifest of finished outputs; `worker` is the actor that loads the model once and runs units
through `upscaling/`; `run` plans, hands the units out with Ray Data and joins the parts.
"""
