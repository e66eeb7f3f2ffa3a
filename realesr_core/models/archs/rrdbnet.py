"""RRDBNet, the generator of ESRGAN and Real-ESRGAN, with BasicSR's layout and key names: `conv_first`,
`body.N.rdbK.convJ`, `conv_body`, `conv_upN`, `conv_hr`, `conv_last`. Telling its state dicts apart and reading
the other layouts is `models/detect/rrdbnet.py`'s."""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

LEAKY_SLOPE = 0.2
RESIDUAL_SCALE = 0.2
STRIP_ELEMENTS = 1 << 24  # elements of one full-resolution feature strip in inference
# Bytes of a dense block's features per row strip on the CPU: small enough to stay in a typical L3 cache, where
# whole-image dense blocks stream from RAM (x4plus at 512x512: 1.3x faster in strips; bench/tiling.py --ceiling 512).
CPU_STRIP_BYTES = 16 << 20
MIN_STRIP_ROWS = 32  # below this the recomputed halo rows cost more than the cache saves


def _in_row_strips(height: int, rows: int, compute_rows: Callable[[int, int], torch.Tensor]) -> torch.Tensor:
    """Output rows [0, height) computed as [top, bottom) pieces of `rows` rows, joined along the height."""
    if rows >= height:
        return compute_rows(0, height)  # one piece: no copy
    return torch.cat([compute_rows(top, min(top + rows, height)) for top in range(0, height, rows)], dim=2)


def _conv3x3(in_ch: int, out_ch: int) -> nn.Conv2d:
    return nn.Conv2d(in_ch, out_ch, 3, 1, 1)


class ResidualDenseBlock(nn.Module):
    """Five densely connected convs; the output is scaled by 0.2 and added to the input."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.conv1 = _conv3x3(num_feat, num_grow_ch)
        self.conv2 = _conv3x3(num_feat + num_grow_ch, num_grow_ch)
        self.conv3 = _conv3x3(num_feat + 2 * num_grow_ch, num_grow_ch)
        self.conv4 = _conv3x3(num_feat + 3 * num_grow_ch, num_grow_ch)
        self.conv5 = _conv3x3(num_feat + 4 * num_grow_ch, num_feat)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _in_row_strips(x.shape[2], self._strip_rows(x), lambda top, bottom: self._rows(x, top, bottom))

    def _strip_rows(self, x: torch.Tensor) -> int:
        """Rows per strip: the whole height, except for CPU inference on maps whose features outgrow the cache."""
        batch, _, height, width = x.shape
        if x.device.type != "cpu" or torch.is_grad_enabled():
            return height
        row_bytes = batch * width * self.conv5.in_channels * x.element_size()
        rows = max(MIN_STRIP_ROWS, CPU_STRIP_BYTES // max(1, row_bytes))
        return math.ceil(height / math.ceil(height / rows))  # even strips

    def _rows(self, x: torch.Tensor, top: int, bottom: int) -> torch.Tensor:
        """Output rows [top, bottom), exactly as the whole-image pass gives them.

        Each of the five convs reads one row either side, so the input is taken with five rows of halo (clipped at
        the real border, where the convs' zero padding is what the whole pass uses too) and every conv's output
        loses its outermost row on each side that is not the real border.
        The whole height (training, GPUs) takes no view at all: under autograd an in-place activation on a view
        costs a copy of the slice forward and backward (G's step 6-16% slower).
        """
        height = x.shape[2]
        lo, hi = max(top - 5, 0), min(bottom + 5, height)
        features = [x if (lo, hi) == (0, height) else x[:, :, lo:hi]]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            out = conv(torch.cat(features, 1) if len(features) > 1 else features[0])
            cut_top, cut_bottom = int(lo > 0), int(hi < height)
            if cut_top or cut_bottom:
                lo, hi = lo + cut_top, hi - cut_bottom
                features = [f[:, :, cut_top : f.shape[2] - cut_bottom] for f in features]
                out = out[:, :, cut_top : out.shape[2] - cut_bottom]
            if conv is not self.conv5:
                features.append(F.leaky_relu(out, LEAKY_SLOPE, inplace=True))
        result = out * RESIDUAL_SCALE + features[0]
        return result if (lo, hi) == (top, bottom) else result[:, :, top - lo : bottom - lo]


class RRDB(nn.Module):
    """Residual-in-residual dense block: three RDBs with a scaled skip around them."""

    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x


def default_unshuffle(scale: int) -> int:
    """BasicSR's convention: x2 and x1 models run a x4 trunk on a pixel-unshuffled input; x4 and x8 need none."""
    return {1: 4, 2: 2}.get(scale, 1)


class RRDBNet(nn.Module):
    """ESRGAN generator.

    The trunk upsamples by 2 ** num_upsample with nearest + conv stages (conv_up1, conv_up2, ...). `unshuffle`
    pixel-unshuffles the input first, so scale = 2 ** num_upsample / unshuffle. With `unshuffle=None` BasicSR's
    choice for the scale is used (x4 trunk for x1 and x2); old-ESRGAN native x1/x2 models set `unshuffle=1`.
    """

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        scale: int = 4,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
        unshuffle: int | None = None,
    ) -> None:
        super().__init__()
        unshuffle = default_unshuffle(scale) if unshuffle is None else unshuffle
        trunk_scale = scale * unshuffle
        num_upsample = round(math.log2(trunk_scale)) if trunk_scale >= 1 else -1
        if unshuffle not in (1, 2, 4) or num_upsample < 0 or 2**num_upsample != trunk_scale:
            raise ValueError(f"RRDBNet cannot make scale {scale} with pixel-unshuffle {unshuffle}")
        self.scale = scale
        self.unshuffle = unshuffle
        self.num_in_ch = num_in_ch
        self.num_out_ch = num_out_ch
        self.conv_first = _conv3x3(num_in_ch * unshuffle**2, num_feat)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch) for _ in range(num_block)))
        self.conv_body = _conv3x3(num_feat, num_feat)
        self.num_upsample = num_upsample
        for i in range(1, num_upsample + 1):
            self.add_module(f"conv_up{i}", _conv3x3(num_feat, num_feat))
        self.conv_hr = _conv3x3(num_feat, num_feat)
        self.conv_last = _conv3x3(num_feat, num_out_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.unshuffle > 1:
            x = F.pixel_unshuffle(x, self.unshuffle)
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        if self.num_upsample == 0:
            return self._tail(feat)
        for i in range(1, self.num_upsample):
            feat = self._upsample(feat, i)
        if torch.is_grad_enabled():
            return self._tail(self._upsample(feat, self.num_upsample))
        return self._last_stage_in_strips(feat)

    def _upsample(self, feat: torch.Tensor, stage: int) -> torch.Tensor:
        conv_up = getattr(self, f"conv_up{stage}")
        return F.leaky_relu(conv_up(F.interpolate(feat, scale_factor=2, mode="nearest")), LEAKY_SLOPE, inplace=True)

    def _tail(self, feat: torch.Tensor) -> torch.Tensor:
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), LEAKY_SLOPE, inplace=True))

    def _last_stage_in_strips(self, feat: torch.Tensor) -> torch.Tensor:
        """The last upsample, conv_hr and conv_last, computed in horizontal strips of the output.

        At full output resolution these hold num_feat channels per output pixel, most of a forward pass's
        memory. The three 3x3 convs see 3 rows either side, so each strip is computed with a 3-row halo (clipped
        at the real border, where zero padding is what the whole-image pass uses too) and cropped: the result is
        identical to the unsplit pass, at a fraction of the peak memory.
        """
        batch, channels, height, width = feat.shape
        out_height, halo = 2 * height, 3
        # On a CPU, strips of STRIP_ELEMENTS (cache and RAM); elsewhere as few as memory needs: a strip holds no
        # more than the level before it (what peak_elements_per_pixel budgets for), so 4 strips, not hundreds.
        strip_elements = STRIP_ELEMENTS if feat.device.type == "cpu" else max(STRIP_ELEMENTS, feat.numel())
        rows_per_strip = max(8, strip_elements // max(1, batch * channels * 2 * width))

        def strip(top: int, bottom: int) -> torch.Tensor:
            lo, hi = max(top - halo, 0), min(bottom + halo, out_height)
            source = feat[..., lo // 2 : (hi + 1) // 2, :]
            upsampled = F.interpolate(source, scale_factor=2, mode="nearest")[..., lo % 2 : lo % 2 + hi - lo, :]
            stage = F.leaky_relu(self.conv_up_last(upsampled), LEAKY_SLOPE, inplace=True)
            return self._tail(stage)[..., top - lo : bottom - lo, :]

        return _in_row_strips(out_height, rows_per_strip, strip)

    def output_layer(self) -> nn.Module:
        """The last layer, which the engine runs in fp32 where reduced precision would quantise the result."""
        return self.conv_last

    @property
    def conv_up_last(self) -> nn.Conv2d:
        return getattr(self, f"conv_up{self.num_upsample}")

    def peak_elements_per_pixel(self) -> float:
        """Activation elements alive at the peak of an inference pass, per input pixel (sizes the tiles): the
        dense blocks in LR space, or the second-to-last upsample level, plus the output."""
        num_feat = self.conv_first.out_channels
        dense = self.body[0].rdb1.conv5.in_channels if len(self.body) else num_feat
        trunk = (2 * dense + 3 * num_feat) / self.unshuffle**2
        before_last = 3 * num_feat * (self.scale / 2) ** 2 if self.num_upsample else 0
        return max(trunk, before_last) + 2 * self.num_out_ch * self.scale**2
