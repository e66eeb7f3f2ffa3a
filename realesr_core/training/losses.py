"""Losses of Real-ESRGAN's recipe: pixel (L1, Charbonnier), perceptual (VGG19), adversarial (vanilla, hinge, LS),
MS-SSIM, and LDL's artifact-weighted L1 (Liang et al. 2022): the two that later community recipes add.

The perceptual loss needs VGG19's ImageNet weights, which are never downloaded here: they come from torchvision's
cache or from a file the caller names, and when neither exists the error says where to put which file. The other
losses need no pretrained network, so a fine-tune can run without it.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import RealESRError
from ..extras import import_extra
from .config import GAN_KINDS, MS_SSIM_MIN_SIDE

VGG19_FILE = "vgg19-dcbb9e9d.pth"  # torchvision's VGG19_Weights.IMAGENET1K_V1
# Pre-ReLU outputs of torchvision's `vgg19().features`, and Real-ESRGAN's weights for them.
VGG_LAYERS = {"conv1_2": (2, 0.1), "conv2_2": (7, 0.1), "conv3_4": (16, 1.0), "conv4_4": (25, 1.0), "conv5_4": (34, 1.0)}
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Wang et al. 2003: five scales, an 11-px Gaussian window of sigma 1.5, K1 = 0.01, K2 = 0.03 for data range 1.
MS_SSIM_WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
SSIM_WINDOW, SSIM_SIGMA, SSIM_C1, SSIM_C2 = 11, 1.5, 0.01 ** 2, 0.03 ** 2


def l1_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    return F.l1_loss(output, target)


def charbonnier_loss(output: torch.Tensor, target: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """sqrt((output - target)^2 + eps), averaged: L1 with a smooth minimum."""
    return torch.sqrt((output - target) ** 2 + eps).mean()


def vgg19_weights_path(explicit: str | os.PathLike | None = None) -> Path:
    """The VGG19 ImageNet weights: the file given, else torchvision's cache; a clear error when neither is there."""
    if explicit is not None:
        path = Path(explicit)
        if not path.is_file():
            raise RealESRError(f"VGG19 weights file {path} does not exist")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / VGG19_FILE
    if cached.is_file():
        return cached
    raise RealESRError(
        f"the perceptual loss needs VGG19's ImageNet weights ({VGG19_FILE}, 548 MB) and nothing is downloaded here: "
        f"put the file at {cached} (torchvision's cache) or name the file; the pixel, adversarial, "
        f"MS-SSIM and LDL losses need no pretrained network")


def vgg19_features(weights: str | os.PathLike | Mapping | None = None) -> nn.Sequential:
    """torchvision's VGG19 `features`, up to conv5_4, with ImageNet weights (a state dict is taken as it is)."""
    vgg19 = import_extra("torchvision.models", "training", "the perceptual loss").vgg19
    features = vgg19(weights=None).features[: max(index for index, _ in VGG_LAYERS.values()) + 1]
    if isinstance(weights, Mapping):
        state = dict(weights)
    else:
        state = torch.load(vgg19_weights_path(weights), map_location="cpu", weights_only=True)
    wanted = {f"features.{key}": key for key in features.state_dict()}  # the classifier is not needed
    missing = sorted(set(wanted) - set(state))
    if missing:
        raise RealESRError(f"these VGG19 weights lack {', '.join(missing[:4])}: not torchvision's vgg19 state dict")
    features.load_state_dict({short: state[full] for full, short in wanted.items()})
    return features


class PerceptualLoss(nn.Module):
    """Σ_l w_l · L1(φ_l(output), φ_l(target)) over pre-ReLU VGG19 features of ImageNet-normalised RGB in 0..1; VGG
    frozen in eval mode and run in fp32 (also under autocast). `style_weight` adds the Gram-matrix style term."""

    def __init__(self, features: nn.Sequential, layers: Mapping[str, tuple[int, float]] = VGG_LAYERS,
                 perceptual_weight: float = 1.0, style_weight: float = 0.0) -> None:
        super().__init__()
        self.features = features.eval().requires_grad_(False)
        for layer in self.features:  # pre-ReLU maps are kept as they are: no in-place ReLU, no copy of each map
            if isinstance(layer, nn.ReLU):
                layer.inplace = False
        self.layers = dict(layers)
        self.perceptual_weight, self.style_weight = perceptual_weight, style_weight
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def train(self, mode: bool = True) -> PerceptualLoss:
        super().train(mode)
        self.features.eval()  # always: VGG is a fixed measure, not a network being trained
        return self

    def feature_maps(self, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Pre-ReLU feature maps by layer name."""
        x = (image.float() - self.mean) / self.std
        wanted = {index: name for name, (index, _) in self.layers.items()}
        maps: dict[str, torch.Tensor] = {}
        for index, layer in enumerate(self.features):
            x = layer(x)
            if index in wanted:
                maps[wanted[index]] = x
            if len(maps) == len(wanted):
                break
        return maps

    def forward(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        with torch.autocast(output.device.type, enabled=False):
            ours, theirs = self.feature_maps(output), self.feature_maps(target.detach())
            loss = output.new_zeros((), dtype=torch.float32)
            for name, (_, weight) in self.layers.items():
                loss = loss + self.perceptual_weight * weight * F.l1_loss(ours[name], theirs[name])
                if self.style_weight:
                    loss = loss + self.style_weight * weight * F.l1_loss(_gram(ours[name]), _gram(theirs[name]))
            return loss


def _gram(features: torch.Tensor) -> torch.Tensor:
    batch, channels, height, width = features.shape
    flat = features.reshape(batch, channels, height * width)
    return flat @ flat.transpose(1, 2) / (channels * height * width)


def gan_loss(logits: torch.Tensor, real: bool, kind: str = "vanilla", for_discriminator: bool = True) -> torch.Tensor:
    """The adversarial loss of a per-pixel logit map. vanilla: BCE with logits against ones (real) or zeros (fake);
    lsgan: squared error against 1 / 0; hinge: the discriminator gets mean(relu(1 ∓ logits)), the generator -mean."""
    if kind == "vanilla":
        target = torch.ones_like(logits) if real else torch.zeros_like(logits)
        return F.binary_cross_entropy_with_logits(logits, target)
    if kind == "lsgan":
        return F.mse_loss(logits, torch.full_like(logits, 1.0 if real else 0.0))
    if kind == "hinge":
        if not for_discriminator:
            return -logits.mean()
        return F.relu(1 - logits).mean() if real else F.relu(1 + logits).mean()
    raise RealESRError(f"GAN loss must be one of {', '.join(GAN_KINDS)}, got {kind!r}")


def ssim_terms(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-image, per-channel SSIM and its contrast-structure term, over the valid Gaussian-weighted windows."""
    coords = torch.arange(SSIM_WINDOW, device=x.device, dtype=x.dtype) - SSIM_WINDOW // 2
    taps = torch.exp(-coords ** 2 / (2 * SSIM_SIGMA ** 2))
    taps = (taps / taps.sum()).repeat(x.shape[1], 1, 1)

    def blur(image: torch.Tensor) -> torch.Tensor:  # separable, depthwise, no padding
        image = F.conv2d(image, taps.unsqueeze(2), groups=x.shape[1])
        return F.conv2d(image, taps.unsqueeze(3), groups=x.shape[1])

    mean_x, mean_y = blur(x), blur(y)
    var_x = blur(x * x) - mean_x ** 2
    var_y = blur(y * y) - mean_y ** 2
    cov = blur(x * y) - mean_x * mean_y
    contrast_structure = (2 * cov + SSIM_C2) / (var_x + var_y + SSIM_C2)
    luminance = (2 * mean_x * mean_y + SSIM_C1) / (mean_x ** 2 + mean_y ** 2 + SSIM_C1)
    return (luminance * contrast_structure).mean((2, 3)), contrast_structure.mean((2, 3))


def ms_ssim_loss(output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """1 - MS-SSIM of images in 0..1 (fp32 also under autocast): contrast-structure at four scales, full SSIM at the
    fifth, each clamped to be positive before its exponent so that the product and its gradient stay finite."""
    if min(output.shape[-2:]) < MS_SSIM_MIN_SIDE:
        raise RealESRError(f"MS-SSIM needs crops of at least {MS_SSIM_MIN_SIDE} px a side (five scales of an "
                           f"{SSIM_WINDOW}-px window); got {output.shape[-2]}x{output.shape[-1]}")
    with torch.autocast(output.device.type, enabled=False):
        x, y = output.float(), target.float()
        score = torch.ones(x.shape[:2], device=x.device)
        for scale, weight in enumerate(MS_SSIM_WEIGHTS):
            ssim, contrast_structure = ssim_terms(x, y)
            last = scale == len(MS_SSIM_WEIGHTS) - 1
            score = score * (ssim if last else contrast_structure).clamp_min(1e-6) ** weight
            x, y = F.avg_pool2d(x, 2), F.avg_pool2d(y, 2)
        return 1 - score.mean()


def artifact_map(output: torch.Tensor, target: torch.Tensor, ema_output: torch.Tensor,
                 window: int = 7) -> torch.Tensor:
    """LDL's per-pixel weight: where the generator is worse than its EMA, the local variance of its error (unbiased,
    `window`² reflect-padded) times the image's error variance^(1/5); zero where it is as good as the EMA. Detached."""
    with torch.no_grad():
        residual = (target - output).abs().sum(1, keepdim=True).float()
        residual_ema = (target - ema_output).abs().sum(1, keepdim=True).float()
        image_weight = residual.var(dim=(1, 2, 3), keepdim=True) ** 0.2
        pad = window // 2
        patches = F.unfold(F.pad(residual, (pad, pad, pad, pad), mode="reflect"), window)
        local_variance = patches.var(dim=1).view_as(residual)
        return torch.where(residual < residual_ema, 0.0, image_weight * local_variance)


def ldl_loss(output: torch.Tensor, target: torch.Tensor, ema_output: torch.Tensor, window: int = 7) -> torch.Tensor:
    """L1 between artifact-weighted output and target: pushes only where the output has unstable, artifact-like
    error that the smoother EMA generator does not."""
    weight = artifact_map(output, target, ema_output, window)
    return F.l1_loss(output * weight, target * weight)
