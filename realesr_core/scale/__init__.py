"""Scale-out of `upscale` over a Ray cluster will live here (optional extra `ray`, imported only when used); the
scale-out issue fills this package. Its units of work come from `media/`, its model runs through `upscaling/`."""
