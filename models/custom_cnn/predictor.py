"""Serve the committed from-scratch CNN through the common `Predictor` interface."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from models.custom_cnn.net import CifarNet, bf16_supported, preprocess, tta_logits
from models.predictor import Predictor, loading

PACKAGE_DIR = Path(__file__).resolve().parent
log = logging.getLogger(__name__)


def graph_of(model: torch.nn.Module) -> torch.nn.Module:
    """The network as one TorchScript graph (traced, frozen): the same operations and the same numbers, run by one C++
    call that holds Python's lock once, not once per layer. Under a flood the eager network waited for the lock
    between its layers while request threads parsed uploads: a 16-image pass took 10 times as long as idle, and a
    person's photo waited seconds for the Custom CNN (bench/bench_soak.py --only mixed-flood). Not under bf16
    autocast, whose casts a trace would fix to the tracing machine. torch 2.13 calls TorchScript deprecated in
    favour of torch.compile, which needs a C++ compiler on the server and compiles at start-up; where tracing is
    unavailable the eager network serves, slower under load only."""
    example = torch.zeros(2, 3, 32, 32).contiguous(memory_format=torch.channels_last)
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return torch.jit.freeze(torch.jit.trace(model, example, check_trace=False))
    except (AttributeError, RuntimeError) as exc:  # a torch without TorchScript
        log.warning("serving the Custom CNN eagerly: tracing failed (%s)", exc)
        return model


class CustomCnnPredictor(Predictor):
    name = "custom_cnn"
    display_name = "Custom CNN (PyTorch, from scratch)"
    framework = "PyTorch"
    preprocessing = ("centre square crop (or the whole photo padded, on request), antialiased (Lanczos) resize to "
                     "32x32, per-channel mean/std normalisation")
    input_size = 32
    description = (
        "A 7-convolution CNN designed for 32x32 inputs (a frozen 2x2 patch-whitening layer, then three groups of two "
        "BatchNorm'd convs with SiLU and max-pooling, widths 64/256/256) trained from scratch on the 45,000-image "
        "training split: "
        "Muon for the filters and Nesterov SGD for the rest, label smoothing, random flips, 2-pixel "
        "translations, colour jitter and simulated photo damage (noise, fading), progressive resizing "
        "(16, 24, then 32 px), and mirror + shift test-time augmentation."
    )
    batch_size = 32  # images per forward pass at most (192 test-time views)
    # A pass is padded up to one of these sizes. oneDNN builds and caches kernels (and scratch memory) for
    # every input shape it sees: with cross-request batching any size from 1 to 32 would turn up, and the
    # worker's memory grew by ~280 MB under load. Eight shapes, all built at warm-up, keep it flat.
    batch_buckets = (1, 2, 4, 8, 12, 16, 24, 32)
    warm_up_sizes = batch_buckets

    weights_file = "weights.pt"

    def __init__(self, model_dir: Path = PACKAGE_DIR):
        super().__init__(model_dir)
        with loading(self.model_dir / "config.json"):
            self.tta_level = int(self.config.get("tta_level", 2))
            architecture = self.config["architecture"]
            self.model = CifarNet(architecture["widths"], activation=architecture.get("activation", "gelu"))
            self.model.to(memory_format=torch.channels_last)
        with loading(self.weights_path):
            self.model.load_state_dict(torch.load(self.weights_path, map_location="cpu", weights_only=True))
        self.model.eval()
        self.bf16 = bf16_supported()
        self.network = self.model if self.bf16 else graph_of(self.model)

    @torch.no_grad()
    def _forward(self, batch: np.ndarray) -> np.ndarray:
        n = len(batch)
        size = next(b for b in self.batch_buckets if b >= n)
        if size > n:  # zero images as padding; BatchNorm is in eval mode, so rows do not interact
            batch = np.concatenate([batch, np.zeros((size - n, *batch.shape[1:]), dtype=batch.dtype)])
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):
            logits = tta_logits(self.network, preprocess(batch), self.tta_level)
        return torch.softmax(logits[:n].float(), dim=1).numpy()

    @property
    def framework_version(self) -> str:
        return torch.__version__

    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.model.parameters())

    def validation_accuracy(self) -> float | None:
        return self.config.get("final_val_acc_tta", self.config.get("final_val_acc"))

    def details(self) -> dict[str, Any]:
        return {
            "test_time_augmentation": ["none", "mirror", "mirror + 1px shifts (6 views)"][self.tta_level],
            "precision": "bf16 autocast" if self.bf16 else "fp32",
        }
