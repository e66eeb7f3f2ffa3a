"""Runs Real-ESRGAN's own training step (BasicSR 1.4.2 + realesrgan 0.3.0) on the CPU, inside the reference venv that
`basicsr_reference.py` builds. Imports nothing from realesr: inputs and results travel as torch.save files.

    python basicsr_step.py replay IN.pt OUT.pt
        IN: network_g (BasicSR's network options), g / d / vgg19 (state dicts), d_feat, batches [(lq, gt), ...],
        train (overrides of the official GAN-stage train options). For each batch: feed_data({lq, gt}) (the paired
        path: gt_usm sharpened by their USMSharp) and optimize_parameters(iteration). OUT: g, g_ema, d after the
        last batch, logs (each iteration's log_dict).
    python basicsr_step.py bench FOLDER STEPS BATCH GT_SIZE NETWORK
        Real-ESRGAN's own data path and step: RealESRGANDataset on FOLDER (its images, per-image kernels drawn in
        numpy), feed_data (their degradation, pool, USM), optimize_parameters; prints JSON seconds per step after a
        warm-up step. NETWORK is compact or rrdb.

Two fixes make their code run on current torch and a CPU: `.cuda()` does nothing, and filter2D gets contiguous
input (it reshapes with `.view`). The working directory must hold experiments/pretrained_models/vgg19-dcbb9e9d.pth
(BasicSR's local VGG19 path): without it BasicSR would download ImageNet weights."""

from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

import torch

torch.nn.Module.cuda = lambda self, *args, **kwargs: self  # their model calls .cuda() on the USM, JPEG and pool
torch.Tensor.cuda = lambda self, *args, **kwargs: self

import realesrgan.models.realesrgan_model as realesrgan_model  # noqa: E402
from basicsr.utils.img_process_util import filter2D  # noqa: E402
from realesrgan.data.realesrgan_dataset import RealESRGANDataset  # noqa: E402
from realesrgan.models.realesrgan_model import RealESRGANModel  # noqa: E402

# BasicSR's filter2D reshapes with .view, which current torch refuses on the non-contiguous output of its JPEG step
realesrgan_model.filter2D = lambda image, kernel: filter2D(image.contiguous(), kernel)

NETWORKS = {
    "compact": {"type": "SRVGGNetCompact", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_conv": 16,
                "upscale": 4, "act_type": "prelu"},
    "rrdb": {"type": "RRDBNet", "num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_block": 23, "num_grow_ch": 32},
}


def official_options(network_g: dict, d_feat: int, root: str, train: dict | None = None) -> dict:
    """train_realesrgan_x4plus.yml's model and train sections, on the CPU."""
    return {
        "name": "reference", "model_type": "RealESRGANModel", "scale": 4, "num_gpu": 0, "is_train": True,
        "dist": False, "rank": 0, "world_size": 1, "queue_size": 180,
        "l1_gt_usm": True, "percep_gt_usm": True, "gan_gt_usm": False, "high_order_degradation": True,
        "resize_prob": [0.2, 0.7, 0.1], "resize_range": [0.15, 1.5], "gaussian_noise_prob": 0.5,
        "noise_range": [1, 30], "poisson_scale_range": [0.05, 3], "gray_noise_prob": 0.4, "jpeg_range": [30, 95],
        "second_blur_prob": 0.8, "resize_prob2": [0.3, 0.4, 0.3], "resize_range2": [0.3, 1.2],
        "gaussian_noise_prob2": 0.5, "noise_range2": [1, 25], "poisson_scale_range2": [0.05, 2.5],
        "gray_noise_prob2": 0.4, "jpeg_range2": [30, 95], "gt_size": 256,
        "network_g": dict(network_g),
        "network_d": {"type": "UNetDiscriminatorSN", "num_in_ch": 3, "num_feat": d_feat, "skip_connection": True},
        "path": {"pretrain_network_g": None, "pretrain_network_d": None, "strict_load_g": True,
                 "resume_state": None, "experiments_root": root, "models": root, "training_states": root,
                 "log": root, "visualization": root},
        "train": {
            "ema_decay": 0.999,
            "optim_g": {"type": "Adam", "lr": 1e-4, "weight_decay": 0, "betas": [0.9, 0.99]},
            "optim_d": {"type": "Adam", "lr": 1e-4, "weight_decay": 0, "betas": [0.9, 0.99]},
            "scheduler": {"type": "MultiStepLR", "milestones": [400000], "gamma": 0.5},
            "total_iter": 400000, "warmup_iter": -1,
            "pixel_opt": {"type": "L1Loss", "loss_weight": 1.0, "reduction": "mean"},
            "perceptual_opt": {"type": "PerceptualLoss", "layer_weights": {"conv1_2": 0.1, "conv2_2": 0.1,
                               "conv3_4": 1, "conv4_4": 1, "conv5_4": 1}, "vgg_type": "vgg19",
                               "use_input_norm": True, "perceptual_weight": 1.0, "style_weight": 0,
                               "range_norm": False, "criterion": "l1"},
            "gan_opt": {"type": "GANLoss", "gan_type": "vanilla", "real_label_val": 1.0, "fake_label_val": 0.0,
                        "loss_weight": 0.1},
            "net_d_iters": 1, "net_d_init_iters": 0,
            **(train or {}),
        },
    }


def replay(source: str, target: str) -> None:
    given = torch.load(source, weights_only=True)
    with tempfile.TemporaryDirectory() as root:
        opt = official_options(given["network_g"], given["d_feat"], root, given.get("train"))
        opt["high_order_degradation"] = False  # the paired path: feed_data takes lq and gt as they are
        model = RealESRGANModel(opt)
    for network in (model.net_g, model.net_g_ema):
        network.load_state_dict(given["g"])
    model.net_d.load_state_dict(given["d"])
    logs = []
    for iteration, (lq, gt) in enumerate(given["batches"], start=1):
        model.feed_data({"lq": lq, "gt": gt})
        model.optimize_parameters(iteration)
        logs.append({name: float(value) for name, value in model.log_dict.items()})
    torch.save({"g": model.net_g.state_dict(), "g_ema": model.net_g_ema.state_dict(),
                "d": model.net_d.state_dict(), "logs": logs}, target)


def bench(folder: str, steps: int, batch: int, gt_size: int, network: str) -> None:
    images = sorted(path.name for path in Path(folder).iterdir() if path.suffix == ".png")
    with tempfile.TemporaryDirectory() as root:
        meta = Path(root) / "meta_info.txt"
        meta.write_text("".join(f"{name}\n" for name in images))
        dataset = RealESRGANDataset({
            "dataroot_gt": folder, "meta_info": str(meta), "io_backend": {"type": "disk"},
            "blur_kernel_size": 21, "kernel_list": ["iso", "aniso", "generalized_iso", "generalized_aniso",
                                                    "plateau_iso", "plateau_aniso"],
            "kernel_prob": [0.45, 0.25, 0.12, 0.03, 0.12, 0.03], "sinc_prob": 0.1, "blur_sigma": [0.2, 3],
            "betag_range": [0.5, 4], "betap_range": [1, 2], "blur_kernel_size2": 21,
            "kernel_list2": ["iso", "aniso", "generalized_iso", "generalized_aniso", "plateau_iso", "plateau_aniso"],
            "kernel_prob2": [0.45, 0.25, 0.12, 0.03, 0.12, 0.03], "sinc_prob2": 0.1, "blur_sigma2": [0.2, 1.5],
            "betag_range2": [0.5, 4], "betap_range2": [1, 2], "final_sinc_prob": 0.8, "use_hflip": True,
            "use_rot": False})
        opt = official_options(NETWORKS[network], 64, root)
        opt["gt_size"], opt["queue_size"] = gt_size, batch * 2
        model = RealESRGANModel(opt)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, shuffle=True, num_workers=0,
                                             drop_last=True, generator=torch.Generator().manual_seed(0))

        def batches():
            while True:
                yield from loader

        stream = batches()
        model.feed_data(next(stream))  # warm-up
        model.optimize_parameters(1)
        Path("/proc/self/clear_refs").write_text("5")  # the peak of the steps from here on
        degrading, start = 0.0, time.perf_counter()
        for iteration in range(2, steps + 2):
            fed = time.perf_counter()
            model.feed_data(next(stream))
            degrading += time.perf_counter() - fed
            model.optimize_parameters(iteration)
        status = Path("/proc/self/status").read_text()
        peak = int(next(line for line in status.splitlines() if line.startswith("VmHWM:")).split()[1]) / 1024
        print(json.dumps({"per_step": (time.perf_counter() - start) / steps, "degrading": degrading / steps,
                          "peak_rss_mb": peak}))


if __name__ == "__main__":
    command, *arguments = sys.argv[1:]
    if command == "replay":
        replay(*arguments)
    else:
        folder, steps, batch, gt_size, network = arguments
        bench(folder, int(steps), int(batch), int(gt_size), network)
