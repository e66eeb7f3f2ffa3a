"""Helpers the tests share: real photos as arrays and tensors, PSNR, randomised networks, a chi-square p-value."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import torch
from scipy import stats


def photo(size: int, name: str = "astronaut", top: int = 100, left: int = 180) -> np.ndarray:
    """A crop of a real public-domain photo from scikit-image, HWC uint8 RGB."""
    from skimage import data

    return getattr(data, name)()[top : top + size, left : left + size, :3].copy()


def to_tensor(hwc: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(hwc).permute(2, 0, 1)[None].float() / 255.0


def bhwc(size: int = 32, name: str = "astronaut") -> torch.Tensor:
    """A photo crop as ComfyUI's IMAGE: [1, H, W, 3] float in 0..1."""
    return to_tensor(photo(size, name, 0, 0)).movedim(1, -1)


def psnr(a: np.ndarray | torch.Tensor, b: np.ndarray | torch.Tensor, peak: float = 255.0) -> float:
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    mse = float(np.mean((a - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(peak**2 / mse)


def randomized(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Gives every weight a distinct random value, so a key mix-up cannot go unnoticed."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for tensor in module.state_dict().values():
            tensor.copy_(torch.randn(tensor.shape, generator=generator) * 0.05)
    return module.eval()


def chi_square_p(counts: list[int], probabilities: list[float]) -> float:
    """p-value of observed counts against expected probabilities."""
    total = sum(counts)
    return float(stats.chisquare(counts, [p * total for p in probabilities]).pvalue)


def _spandrel_networks() -> dict:
    """Small networks of spandrel architectures (constructors by name), each as ComfyUI's own loader would detect it."""
    from spandrel.architectures import DAT, ESRGAN, FBCNN, HAT, SAFMN, SPAN, Compact, DnCNN, DRUNet, RealCUGAN, SwinIR

    def swin(cls, **extra):
        return lambda: cls(embed_dim=12, depths=[1], num_heads=[2], window_size=4, upscale=2, upsampler="pixelshuffle",
                           img_size=16, **extra)

    return {
        "SwinIR": swin(SwinIR.SwinIR),
        "HAT": swin(HAT.HAT, compress_ratio=3, squeeze_factor=4),
        "DAT": lambda: DAT.DAT(embed_dim=32, depth=[1], num_heads=[2], split_size=[2, 4], upscale=2, img_size=16,
                               expansion_factor=2.0),
        "SPAN": lambda: SPAN.SPAN(num_in_ch=3, num_out_ch=3, feature_channels=8, upscale=2),
        "RealCUGAN": lambda: RealCUGAN.UpCunet2x(in_channels=3, out_channels=3),
        "SAFMN": lambda: SAFMN.SAFMN(dim=8, n_blocks=1, upscaling_factor=2),
        "FBCNN": lambda: FBCNN.FBCNN(nc=[8, 16, 32, 512], nb=2),
        "DnCNN": lambda: DnCNN.DnCNN(in_nc=3, out_nc=3, nc=8, nb=8, act_mode="R"),
        "DnCNN-gray": lambda: DnCNN.DnCNN(in_nc=1, out_nc=1, nc=8, nb=8, act_mode="BR"),
        "FDnCNN": lambda: DnCNN.DnCNN(in_nc=4, out_nc=3, nc=8, nb=8, act_mode="R", mode="FDnCNN"),
        "FDnCNN-gray": lambda: DnCNN.DnCNN(in_nc=2, out_nc=1, nc=8, nb=8, act_mode="R", mode="FDnCNN"),
        "DRUNet": lambda: DRUNet.DRUNet(in_nc=4, out_nc=3, nc=[8, 16, 32, 64], nb=2),
        "DRUNet-gray": lambda: DRUNet.DRUNet(in_nc=2, out_nc=1, nc=[8, 16, 32, 64], nb=2),
        "ESRGAN": lambda: ESRGAN.ESRGAN(num_filters=8, num_blocks=1, scale=4),
        "Compact": lambda: Compact.Compact(num_feat=8, num_conv=2, upscale=4),
    }


SPANDREL_ARCHITECTURES = ("SwinIR", "HAT", "DAT", "SPAN", "RealCUGAN", "SAFMN", "FBCNN", "DnCNN", "DnCNN-gray", "FDnCNN",
                          "FDnCNN-gray", "DRUNet", "DRUNet-gray", "ESRGAN", "Compact")


def spandrel_network(name: str, seed: int = 1) -> torch.nn.Module:
    """A small network of a spandrel architecture (one of SPANDREL_ARCHITECTURES) with random weights."""
    return random_parameters(_spandrel_networks()[name](), seed)


def random_parameters(network: torch.nn.Module, seed: int = 1) -> torch.nn.Module:
    """Random weights for any network. Only parameters change: buffers (batch-norm statistics, attention index
    tables) keep their valid values."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in network.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.05)
    return network.eval()


def spandrel_model(name: str) -> object:
    """A small network of a spandrel architecture with random weights, loaded back as ComfyUI's loader does."""
    import spandrel

    return spandrel.ModelLoader().load_from_state_dict(spandrel_network(name).state_dict()).eval()


def make_clip(path: Path, frames: int = 10, audio: bool = True, ten_bit: bool = False, hold: int = 1,
              keyframe_every: int = 250) -> Path:
    """A real-photo clip (the crop slides right, each picture held for `hold` frames), variable gaps between frames,
    and a tone as AAC."""
    import av

    with av.open(str(path), "w") as out:
        video = out.add_stream("libx264", rate=12)
        video.width, video.height = 32, 24
        video.pix_fmt = "yuv420p10le" if ten_bit else "yuv420p"
        video.time_base = video.codec_context.time_base = Fraction(1, 1000)
        video.codec_context.gop_size = keyframe_every
        sound = out.add_stream("aac", rate=22050) if audio else None
        if sound is not None:
            sound.layout = "mono"
        pts = 0
        for index in range(frames):
            frame = av.VideoFrame.from_ndarray(photo(40, left=150 + 3 * (index // hold))[:24, :32], format="rgb24")
            frame.pts, frame.time_base = pts, Fraction(1, 1000)
            pts += 83 if index % 3 else 125  # a variable frame rate
            for packet in video.encode(frame):
                out.mux(packet)
        for packet in video.encode(None):
            out.mux(packet)
        if sound is not None:
            tone = (np.sin(np.arange(22050) / 7) * 0.3).astype(np.float32)[None]
            samples = av.AudioFrame.from_ndarray(tone, format="fltp", layout="mono")
            samples.sample_rate = 22050
            for packet in [*sound.encode(samples), *sound.encode(None)]:
                out.mux(packet)
    return path


def unshuffled_x4plus(x4plus: object, scale: int) -> object:
    """A pixel-unshuffled RRDBNet (x2 or x1) with real weights: RealESRGAN_x4plus's, its first conv spread evenly
    over the unshuffled channels (each sees its block's mean), as BasicSR starts x2plus from x4plus's weights."""
    from realesr_core import load_model

    factor = 4 // scale
    state = dict(x4plus.state_dict())
    state["conv_first.weight"] = state["conv_first.weight"].repeat_interleave(factor**2, dim=1) / factor**2
    return load_model(state)


def fine_tuned(model: str, folder: Path, steps: int = 3) -> Path:
    """A training run's model.safetensors: `model` fine-tuned (L1 stage) for a few steps on two real photos, so its
    weights are its own and no longer the official fp16 values."""
    from PIL import Image

    from realesr_core.training import build_config, train

    (folder / "hr").mkdir(parents=True, exist_ok=True)
    for name in ("astronaut", "coffee"):
        Image.fromarray(photo(96, name, 50, 150)).save(folder / "hr" / f"{name}.png")
    config = build_config(dict(model=model, hr_dir=str(folder / "hr"), output_dir=str(folder / "run"), stage="net",
                               patch=64, degrade_size=96, batch=2, pool_size=0, steps=steps, lr=1e-3, workers=0,
                               precision="fp32", checkpoint_every=steps, log_every=steps))
    return train(config).model_path
