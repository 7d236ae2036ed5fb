"""Benchmark the custom CNN on this machine: training and inference throughput, epoch and total time.

    python bench/bench_custom_cnn.py [--steps 6] [--batch-size 500]

Training throughput is measured on random data with the real model, optimisers and bf16 autocast;
epoch and total times are read from the committed training run (models/custom_cnn/*.json).
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from models import load_predictor
from models.custom_cnn.net import CifarNet, bf16_supported
from models.custom_cnn.train import Recipe, make_optimizers
from models.machine import describe_machine

REPO = Path(__file__).resolve().parent.parent


def training_step(batch_size: int, bf16: bool, size: int = 32, compiled: bool = False) -> Callable[[], None]:
    """One real training step (model, optimisers, autocast) on random data, warmed up."""
    recipe = Recipe(batch_size=batch_size)
    torch.set_num_threads(recipe.threads)
    model = CifarNet(recipe.widths, activation=recipe.activation).to(memory_format=torch.channels_last).train()
    optimizers = make_optimizers(model, recipe)
    forward = torch.compile(model) if compiled else model
    x = torch.randn(batch_size, 3, size, size).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (batch_size,))

    def step() -> None:  # a step after the whitening-bias phase, i.e. almost every step of a run
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            loss = F.cross_entropy(forward(x, whiten_bias_grad=False).float(), y, label_smoothing=0.2,
                                   reduction="sum")
        loss.backward()
        for opt in optimizers:
            opt.step()
        model.zero_grad(set_to_none=True)

    step()  # warm-up: oneDNN picks its kernels (and torch.compile compiles)
    step()
    return step


def training_throughput(batch_size: int, steps: int, bf16: bool, size: int = 32, compiled: bool = False) -> float:
    step = training_step(batch_size, bf16, size, compiled)
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


def convolution_share(batch_size: int, bf16: bool) -> float:
    """Fraction of a 32-px training step's CPU time spent in convolution kernels (forward + backward)."""
    step = training_step(batch_size, bf16)
    with torch.profiler.profile() as prof:
        for _ in range(3):
            step()
    events = prof.key_averages()
    total = sum(e.self_cpu_time_total for e in events)
    conv = sum(e.self_cpu_time_total for e in events
               if e.key in ("aten::mkldnn_convolution", "aten::convolution_backward", "aten::_convolution"))
    return conv / total


def conv_gflop_per_training_image(size: int) -> float:
    """Convolution work of one training step per image (forward + ~2x for backward), in GFLOP."""
    model = CifarNet(Recipe().widths, activation=Recipe().activation)
    flops = []

    def count(module: torch.nn.Conv2d, _inputs, output: torch.Tensor) -> None:
        k = module.kernel_size[0] * module.kernel_size[1] * module.in_channels // module.groups
        flops.append(2 * output[0].numel() * k)

    for module in model.modules():
        if isinstance(module, torch.nn.Conv2d):
            module.register_forward_hook(count)
    with torch.no_grad():
        model.eval()(torch.zeros(1, 3, size, size))
    # The whitening conv is called functionally (no hook); it is frozen and tiny (12 outputs of 2x2x3).
    return 3 * sum(flops) / 1e9


def matmul_peak_gflops(repeats: int = 10) -> float:
    """GFLOP/s of one large square bf16 matrix product: about the most this machine's cores deliver, to set
    the training step's convolution throughput against."""
    a, b = torch.randn(2048, 2048, dtype=torch.bfloat16), torch.randn(2048, 2048, dtype=torch.bfloat16)
    for _ in range(3):
        a @ b
    start = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * a.shape[0] * a.shape[1] * b.shape[1] * repeats / (time.perf_counter() - start) / 1e9


def inference_throughput(batch: int, repeats: int) -> tuple[float, float]:
    predictor = load_predictor("custom_cnn")
    images = np.random.default_rng(0).integers(0, 256, size=(batch, 32, 32, 3), dtype=np.uint8)
    predictor.predict_proba(images)
    start = time.perf_counter()
    for _ in range(repeats):
        predictor.predict_proba(images)
    seconds = (time.perf_counter() - start) / repeats
    return batch / seconds, 1000 * seconds / batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--batch-size", type=int, default=Recipe().batch_size)
    parser.add_argument("--compile", action="store_true", help="also time the step under torch.compile")
    args = parser.parse_args()
    bf16 = bf16_supported()
    print(f"machine: {describe_machine()}")
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, bf16 autocast: {bf16}")
    recipe = Recipe()
    peak = matmul_peak_gflops() if bf16 else None
    if peak:
        print(f"bf16 matrix product 2048x2048 @ 2048x2048 (oneDNN): {peak:5.0f} GFLOP/s")
    runs = [("bf16", True, 32), ("bf16", True, recipe.low_res_size), ("bf16", True, recipe.lowest_res_size),
            ("fp32", False, 32)]
    for label, use_bf16, size in runs if bf16 else [("fp32", False, 32)]:
        ips = training_throughput(args.batch_size, args.steps, use_bf16, size)
        gflops = ips * conv_gflop_per_training_image(size)
        print(f"train {label:>4} {size}px batch {args.batch_size}: {ips:7.0f} img/s  "
              f"-> {45_000 / ips:6.1f} s per 45k-image epoch  ({gflops:5.0f} GFLOP/s of convolution work"
              + (f" = {100 * gflops / peak:3.0f}% of the bf16 matrix product)" if use_bf16 else ")"))
    for batch, repeats in ((1, 20), (8, 10), (64, 5), (500, 2)):
        ips, ms = inference_throughput(batch, repeats)
        print(f"inference (served, with TTA) batch {batch:>3}: {ips:7.0f} img/s  {ms:7.2f} ms/image")
    # Last: the profiler and torch.compile's workers slow down whatever is timed after them.
    share = convolution_share(args.batch_size, bf16)
    print(f"share of a 32px training step in convolution kernels (torch.profiler): {100 * share:.0f}%")
    if args.compile:
        try:
            ips = training_throughput(args.batch_size, args.steps, bf16, 32, compiled=True)
            print(f"train with torch.compile 32px batch {args.batch_size}: {ips:7.0f} img/s")
        except Exception as exc:  # a missing C++ compiler is a result to print, not a crash
            print(f"torch.compile unavailable here: {type(exc).__name__}: {exc}")
    history_path = REPO / "models" / "custom_cnn" / "history.json"
    if history_path.is_file():
        history = json.loads(history_path.read_text())
        config = json.loads((REPO / "models" / "custom_cnn" / "config.json").read_text())
        per_epoch = [h["seconds"] for h in history]
        print(f"committed run: {len(history)} epochs, {np.mean(per_epoch):.1f} s/epoch (with validation), "
              f"total wall {config['wall_seconds']:.0f} s = {config['wall_seconds'] / 60:.1f} min "
              f"on {config.get('machine', 'unknown')}")


if __name__ == "__main__":
    main()
