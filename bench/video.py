"""Benchmark: a short clip upscaled end to end against the same frames through the model alone.

    python bench/video.py                    # 48 frames of 160x90 with AAC audio, realesr-animevideov3 x4
    python bench/video.py --model RealESRGAN_x4plus

Both rows run in this process, the model-only row on frames decoded beforehand; the ratio is the cost of decoding,
converting, encoding (libx264, crf 18) and muxing on top of the upscaling itself.
"""

from __future__ import annotations

import sys
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from realesr_core import load_model, upscale  # noqa: E402
from realesr_core.media import VideoOptions, upscale_video  # noqa: E402

MODEL = "realesr-animevideov3"
FRAMES, WIDTH, HEIGHT, RATE = 48, 160, 90, 24


def make_clip(path: Path) -> None:
    import av
    from skimage import data

    photo = data.astronaut()
    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=RATE)
        video.width, video.height, video.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        sound = out.add_stream("aac", rate=44100)
        sound.layout = "stereo"
        for index in range(FRAMES):
            frame = av.VideoFrame.from_ndarray(photo[100 : 100 + HEIGHT, 4 * index : 4 * index + WIDTH].copy(),
                                               format="rgb24")
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        tone = (np.sin(np.arange(44100 * FRAMES // RATE) / 9) * 0.2).astype(np.float32)
        samples = av.AudioFrame.from_ndarray(np.stack([tone, tone]), format="fltp", layout="stereo")
        samples.sample_rate, samples.time_base, samples.pts = 44100, Fraction(1, 44100), 0
        for packet in [*sound.encode(samples), *sound.encode(None)]:
            out.mux(packet)


def decoded(path: Path) -> torch.Tensor:
    import av

    with av.open(str(path)) as container:
        frames = [frame.to_ndarray(format="rgb24") for frame in container.decode(video=0)]
    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float() / 255


def main() -> None:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=MODEL)
    name = parser.parse_args().model
    model = load_model(name)
    batch = VideoOptions().frames_per_batch
    with tempfile.TemporaryDirectory() as folder:
        source = Path(folder) / "clip.mp4"
        make_clip(source)
        frames = decoded(source)
        upscale(model, frames[:batch])  # warm-up
        started = time.perf_counter()
        for first in range(0, len(frames), batch):
            upscale(model, frames[first : first + batch])
        model_only = time.perf_counter() - started
        started = time.perf_counter()
        result = upscale_video(model, source, Path(folder) / "clip_x4.mp4", video=VideoOptions())
        end_to_end = time.perf_counter() - started
    print(f"{FRAMES} frames {WIDTH}x{HEIGHT} -> {result.size[0]}x{result.size[1]}, {name}, "
          f"{result.copied_streams} audio stream copied\n")
    print("| run | seconds | frames/s | vs model only |")
    print("|---|---|---|---|")
    print(f"| model only (frames decoded beforehand) | {model_only:.2f} | {FRAMES / model_only:.1f} | 1.00x |")
    print(f"| realesr upscale (decode, upscale, encode, mux) | {end_to_end:.2f} | {FRAMES / end_to_end:.1f} | "
          f"{end_to_end / model_only:.2f}x |")


if __name__ == "__main__":
    main()
