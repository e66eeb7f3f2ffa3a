import pytest
import torch

from realesr_core.archs import OutputRescaled, RRDBNet, SRVGGNetCompact


@pytest.mark.parametrize("scale", [1, 2, 4, 8])
@pytest.mark.parametrize("channels", [(3, 3), (1, 1), (4, 4), (1, 3)])
def test_rrdbnet_shapes(scale: int, channels: tuple[int, int]) -> None:
    net = RRDBNet(channels[0], channels[1], scale=scale, num_feat=8, num_block=1, num_grow_ch=4).eval()
    out = net(torch.rand(2, channels[0], 12, 16))
    assert out.shape == (2, channels[1], 12 * scale, 16 * scale)


def test_rrdbnet_follows_basicsr_structure() -> None:
    """x2 and x1 are pixel-unshuffle + x4 trunk; x8 adds a third upsampler; native x2 (unshuffle=1) has one."""
    assert RRDBNet(scale=2, num_block=1).conv_first.in_channels == 12
    assert RRDBNet(scale=1, num_block=1).conv_first.in_channels == 48
    assert hasattr(RRDBNet(scale=8, num_block=1), "conv_up3")
    native = RRDBNet(scale=2, num_block=1, unshuffle=1)
    assert native.num_upsample == 1 and native.conv_first.in_channels == 3
    with pytest.raises(ValueError, match="cannot make scale 3"):
        RRDBNet(scale=3)


def test_rrdbnet_official_parameter_count() -> None:
    assert sum(p.numel() for p in RRDBNet().parameters()) == 16_697_987
    assert sum(p.numel() for p in RRDBNet(scale=2).parameters()) == 16_703_171
    assert sum(p.numel() for p in RRDBNet(num_block=6).parameters()) == 4_467_779


def test_rrdbnet_grow_channels_and_width() -> None:
    net = RRDBNet(num_feat=32, num_block=2, num_grow_ch=16).eval()
    assert net.body[0].rdb1.conv5.in_channels == 32 + 4 * 16
    assert net(torch.rand(1, 3, 8, 8)).shape == (1, 3, 32, 32)


@pytest.mark.parametrize("upscale", [1, 2, 3, 4])
@pytest.mark.parametrize("act_type", ["prelu", "relu", "leakyrelu"])
def test_srvgg_shapes(upscale: int, act_type: str) -> None:
    net = SRVGGNetCompact(num_feat=8, num_conv=2, upscale=upscale, act_type=act_type).eval()
    assert net(torch.rand(2, 3, 10, 7)).shape == (2, 3, 10 * upscale, 7 * upscale)


def test_srvgg_official_parameter_counts() -> None:
    assert sum(p.numel() for p in SRVGGNetCompact(num_conv=32).parameters()) == 1_213_296
    assert sum(p.numel() for p in SRVGGNetCompact(num_conv=16).parameters()) == 621_424


def test_srvgg_learns_a_residual_over_nearest_upsampling() -> None:
    net = SRVGGNetCompact(num_feat=8, num_conv=1, upscale=2).eval()
    torch.nn.init.zeros_(net.body[-1].weight)
    torch.nn.init.zeros_(net.body[-1].bias)
    x = torch.rand(1, 3, 5, 5)
    assert torch.equal(net(x), torch.nn.functional.interpolate(x, scale_factor=2, mode="nearest"))


def test_srvgg_channel_variants() -> None:
    assert SRVGGNetCompact(1, 3, num_feat=8, num_conv=1)(torch.rand(1, 1, 4, 4)).shape == (1, 3, 16, 16)
    assert SRVGGNetCompact(4, 4, num_feat=8, num_conv=1)(torch.rand(1, 4, 4, 4)).shape == (1, 4, 16, 16)
    with pytest.raises(ValueError, match="activation"):
        SRVGGNetCompact(act_type="gelu")


def test_output_rescaled_gives_integer_scale() -> None:
    net = OutputRescaled(SRVGGNetCompact(num_feat=8, num_conv=1), 0.75).eval()
    assert net.scale == 3
    assert net(torch.rand(1, 3, 7, 9)).shape == (1, 3, 21, 27)
    with pytest.raises(ValueError, match="not an integer scale"):
        OutputRescaled(SRVGGNetCompact(num_feat=8, num_conv=1), 0.6)


@pytest.mark.parametrize("scale,unshuffle", [(4, 1), (8, 1), (2, 2), (2, 1)])
def test_rrdbnet_inference_in_strips_is_exact(monkeypatch: pytest.MonkeyPatch, scale: int, unshuffle: int) -> None:
    """Inference computes the last stage in row strips to save memory; it must equal the one-piece pass."""
    import realesr_core.archs.rrdbnet as rrdbnet

    net = RRDBNet(scale=scale, num_feat=8, num_block=1, num_grow_ch=4, unshuffle=unshuffle).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(2, 3, 34, 18)
    one_piece = net(x).detach()  # grad mode: no strips
    monkeypatch.setattr(rrdbnet, "STRIP_ELEMENTS", 8 * 2 * 2 * 18 * 5)  # strips of a few rows
    with torch.no_grad():
        assert torch.equal(net(x), one_piece)


@pytest.mark.parametrize("min_rows", [1, 4, 7])
@pytest.mark.parametrize("height", [1, 6, 23])
def test_dense_blocks_in_cache_sized_strips_are_exact(monkeypatch: pytest.MonkeyPatch, min_rows: int,
                                                      height: int) -> None:
    """CPU inference runs each dense block in row strips (halo recomputed); it must equal the one-piece pass."""
    import realesr_core.archs.rrdbnet as rrdbnet

    net = RRDBNet(scale=4, num_feat=8, num_block=2, num_grow_ch=4).eval()
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.1)
    x = torch.rand(2, 3, height, 13)
    one_piece = net(x).detach()  # grad mode: no strips
    monkeypatch.setattr(rrdbnet, "CPU_STRIP_BYTES", 1)
    monkeypatch.setattr(rrdbnet, "MIN_STRIP_ROWS", min_rows)
    with torch.no_grad():
        rows = net.body[0].rdb1._strip_rows(torch.zeros(2, 8, height, 13))
        assert rows <= min_rows  # strips do run where the map is taller
        assert torch.equal(net(x), one_piece)
