"""Train the from-scratch CIFAR-10 CNN on the 45k training split, selecting on the 5k validation split.

    python -m models.custom_cnn.train [--preset fast] [--epochs N] [--out DIR] [--resume] [--set FIELD=VALUE ...]
        [--device cuda]

Read top to bottom: hyperparameters (one dataclass, plus named presets), data augmentation,
optimiser set-up, the epoch loop (checkpoint after every epoch), and the artefacts written at the
end. The test split is never loaded here; `python -m models.evaluate custom_cnn` does that, once.
Options that were measured and did not win (example pruning, freezing the first conv group,
low-res crops, clean final epochs) left this file; their runs stay in runs/ and docs/custom-cnn.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from tqdm import tqdm

from models import cifar10, commands
from models.custom_cnn.muon import Muon
from models.custom_cnn.net import CIFAR_STD, CifarNet, bf16_supported, preprocess, tta_logits
from models.machine import describe_machine


# ----------------------------------------------------------------------------- hyperparameters
@dataclass
class Recipe:
    # Values: the 8-epoch exploration runs s8 and e6 (models/custom_cnn/runs/) showed that SiLU, colour jitter, less
    # label smoothing, a short whitening-bias phase and Muon at lr 0.205 / momentum 0.655 with batches of 1536
    # (settings published by the hiverge CIFAR-10 speedrun for airbench's network) beat our earlier settings per
    # minute of CPU; chosen on the validation split. Issue 20 then added photo damage and a longer schedule (run h20:
    # the recipe search in docs/custom-cnn.md chose this dose on validation); earlier recipes are presets below.
    epochs: int = 20
    batch_size: int = 1536
    seed: int = 0
    widths: tuple[int, int, int] = (64, 256, 256)
    activation: str = "silu"
    label_smoothing: float = 0.09
    # Muon for the conv filters (orthogonalised updates, weight norm fixed).
    filter_lr: float = 0.205
    filter_momentum: float = 0.655
    # Nesterov SGD for BatchNorm shifts, the whitening bias and the head (loss summed over the batch,
    # so these learning rates are per example and do not change with the batch size).
    bias_lr: float = 0.0573
    head_lr: float = 0.5415
    sgd_momentum: float = 0.825
    weight_decay_per_example: float = 1.04e-6
    whiten_bias_epochs: float = 0.19  # the whitening bias trains this long, then freezes
    # Augmentation: random translation by up to `translate` px (reflect padding) + alternating flips.
    translate: int = 2
    # Colour jitter: per image and epoch, add a brightness shift in +-brightness and scale the contrast by
    # 1 +- contrast (on the normalised image; 0 turns it off).
    brightness: float = 0.14
    contrast: float = 0.13
    # Photo damage (issue 20's study; 0 turns it off): a share `noise_prob` of the images get Gaussian noise of a
    # standard deviation drawn from [0, noise_max] (in [0, 1] pixel units, at the training resolution), and a
    # share `fade_prob` have their contrast scaled by a factor drawn from [fade_min, 1] around their mean.
    noise_prob: float = 0.06
    noise_max: float = 0.1
    fade_prob: float = 0.04
    fade_min: float = 0.15
    # Photo framing (issue 39; 0 turns it off): in a photo's centre crop the subject is smaller and off centre
    # more often than in CIFAR-10's. A share `zoom_prob` of the images per epoch is shrunk by a factor drawn from
    # [zoom_min, 1] and placed at a random spot, the rest of the 32x32 frame filled by reflection.
    zoom_prob: float = 0.0
    zoom_min: float = 0.6
    # Progressive resizing: the first `low_res_epochs` epochs see images downscaled to `low_res_size`
    # (about half the FLOPs per image); the network is fully convolutional, so nothing else changes.
    low_res_epochs: int = 10
    low_res_size: int = 24
    # ... of which the first `lowest_res_epochs` go lower still, to `lowest_res_size` (a quarter of the FLOPs).
    lowest_res_epochs: int = 4
    lowest_res_size: int = 16
    whiten_init_images: int = 5000
    tta_level: int = 2
    val_batch_size: int = 1000
    max_train_images: int | None = None  # a prefix of the training split (smoke tests, exploration)
    threads: int = field(default_factory=lambda: os.cpu_count() or 1)


# Named recipes: `--preset NAME` starts from Recipe() with these fields changed (flags and --set still apply).
NO_DAMAGE = dict(noise_prob=0.0, fade_prob=0.0)
S16_SCHEDULE = dict(epochs=16, low_res_epochs=8, lowest_res_epochs=0)
PRESETS: dict[str, dict] = {
    # The committed model: run h20, the schedule of run m20 (26.4 min on an AMD EPYC, 2 cores) with an eighth of
    # d16's photo damage.
    "default": {},
    # The model committed before issue 20: run s16 (24.6 min on the AMD EPYC), no photo damage.
    "s16": S16_SCHEDULE | NO_DAMAGE,
    # The best recipe measured to train in about 10 minutes on that machine: run r10 (94.02% val with TTA).
    "fast": dict(epochs=10, batch_size=1024, low_res_epochs=7, lowest_res_epochs=4) | NO_DAMAGE,
    # Issue 20, first study: s16 plus noise on half the images and fading on 30% (run d16; docs/custom-cnn.md).
    "damage": S16_SCHEDULE | dict(noise_prob=0.5, fade_prob=0.3),
    # The second: half that damage over the 20-epoch schedule (run l20).
    "damage-light": dict(noise_prob=0.25, fade_prob=0.15),
    # The third: a quarter of d16's dose (runs m20, m20-xeon, m20-xeon-seed1; the default halves it again).
    "robust": dict(noise_prob=0.12, fade_prob=0.08),
    # Issue 39: the default with photo framing on half the images.
    "framing": dict(zoom_prob=0.5),
}


# ----------------------------------------------------------------------------- data augmentation
def downscale(images: torch.Tensor, size: int) -> torch.Tensor:
    """Antialiased resize to size x size (progressive resizing: training batches and the matching validation)."""
    return F.interpolate(images, size=size, mode="bilinear", antialias=True,
                         align_corners=False).contiguous(memory_format=torch.channels_last)


class AugmentedLoader:
    """Yields augmented (images, labels, indices) batches; epoch e's randomness depends only on (seed, e).

    That is what makes `--resume` exact: a resumed run replays epoch e with the same shuffle,
    crops and flips as an uninterrupted one.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, batch_size: int, translate: int, seed: int,
                 low_res_epochs: int = 0, low_res_size: int = 24, brightness: float = 0.0, contrast: float = 0.0,
                 lowest_res_epochs: int = 0, lowest_res_size: int = 16, noise_prob: float = 0.0,
                 noise_max: float = 0.1, fade_prob: float = 0.0, fade_min: float = 0.15, zoom_prob: float = 0.0,
                 zoom_min: float = 0.6):
        self.labels, self.batch_size, self.translate, self.seed = labels, batch_size, translate, seed
        self.low_res_epochs, self.low_res_size = low_res_epochs, low_res_size
        self.lowest_res_epochs, self.lowest_res_size = lowest_res_epochs, lowest_res_size
        self.brightness, self.contrast = brightness, contrast
        self.noise_prob, self.noise_max, self.fade_prob, self.fade_min = noise_prob, noise_max, fade_prob, fade_min
        self.zoom_prob, self.zoom_min = zoom_prob, zoom_min
        pad = (translate,) * 4
        self.padded = F.pad(images, pad, mode="reflect") if translate else images
        self.size = images.shape[-1]
        # Alternating flip: a random half is mirrored on even epochs, the other half on odd ones.
        self.base_flip = torch.rand(len(labels), generator=torch.Generator().manual_seed(seed)) < 0.5

    def __len__(self) -> int:
        return len(self.labels) // self.batch_size

    def image_size(self, epoch: int) -> int:
        """The side of the images epoch `epoch` trains on (progressive resizing)."""
        if epoch < self.lowest_res_epochs:
            return self.lowest_res_size
        return self.low_res_size if epoch < self.low_res_epochs else self.size

    def epoch(self, epoch: int):
        """Yields (images, labels) batches; the last partial batch is dropped."""
        gen = torch.Generator().manual_seed(self.seed * 100_003 + epoch + 1)
        order = torch.randperm(len(self.labels), generator=gen)
        shifts = torch.randint(-self.translate, self.translate + 1, (len(self.labels), 2), generator=gen)
        flips = self.base_flip ^ bool(epoch % 2)
        jitter = torch.rand(len(self.labels), 2, generator=gen) * 2 - 1
        jitter *= torch.tensor([self.brightness, self.contrast])
        size = self.image_size(epoch)
        damage = self.noise_prob or self.fade_prob  # drawn only when on: other recipes keep their random stream
        if damage:
            draws = torch.rand(len(self.labels), 4, generator=gen)
            sigma = torch.where(draws[:, 0] < self.noise_prob, draws[:, 1] * self.noise_max, torch.zeros(()))
            fade = torch.where(draws[:, 2] < self.fade_prob, self.fade_min + draws[:, 3] * (1 - self.fade_min),
                               torch.ones(()))
            std = torch.tensor(CIFAR_STD).view(1, 3, 1, 1)
        if self.zoom_prob:  # drawn only when on, like the damage
            zoom = torch.rand(len(self.labels), 4, generator=gen)
            sides = torch.where(zoom[:, 0] < self.zoom_prob,
                                torch.round(self.size * (self.zoom_min + zoom[:, 1] * (1 - self.zoom_min))),
                                torch.full((), float(self.size))).long()
            spots = zoom[:, 2:]
        for start in range(0, len(self) * self.batch_size, self.batch_size):
            idx = order[start : start + self.batch_size]
            batch = self._crop_flip(idx, shifts[idx], flips[idx])
            if self.zoom_prob:
                batch = self._frame(batch, sides[idx], spots[idx])
            if self.brightness or self.contrast:
                shift, scale = jitter[idx, 0].view(-1, 1, 1, 1), 1 + jitter[idx, 1].view(-1, 1, 1, 1)
                batch = (batch + shift) * scale
            if damage:
                mean = batch.mean(dim=(2, 3), keepdim=True)
                batch = mean + (batch - mean) * fade[idx].view(-1, 1, 1, 1)
            if size != self.size:
                batch = downscale(batch, size)
            if damage:
                noise = torch.randn(batch.shape, generator=gen) * (sigma[idx].view(-1, 1, 1, 1) / std)
                batch = (batch + noise).contiguous(memory_format=torch.channels_last)
            yield batch, self.labels[idx]

    def _frame(self, batch: torch.Tensor, sides: torch.Tensor, spots: torch.Tensor) -> torch.Tensor:
        """Each image shrunk to its side (antialiased) and placed at its spot (fractions of the free margin), the
        margin filled by reflection; an image whose side is the full size is left as it is."""
        out = batch.clone()
        for side in sides.unique().tolist():
            if side >= self.size:
                continue
            sel = (sides == side).nonzero().flatten()
            margin = self.size - side
            small = downscale(batch[sel], side)
            for j, i in enumerate(sel.tolist()):
                left, top = int(spots[i, 0] * (margin + 1)), int(spots[i, 1] * (margin + 1))
                out[i] = F.pad(small[j : j + 1], (left, margin - left, top, margin - top), mode="reflect")[0]
        return out.contiguous(memory_format=torch.channels_last)

    def _crop_flip(self, idx: torch.Tensor, shifts: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
        src, size, r = self.padded[idx], self.size, self.translate
        out = torch.empty(len(idx), src.shape[1], size, size, dtype=src.dtype)
        for dy in range(-r, r + 1):
            for dx in range(-r, r + 1):
                sel = (shifts[:, 0] == dy) & (shifts[:, 1] == dx)
                if sel.any():
                    out[sel] = src[sel, :, r + dy : r + dy + size, r + dx : r + dx + size]
        out = torch.where(flips.view(-1, 1, 1, 1), out.flip(-1), out)
        return out.contiguous(memory_format=torch.channels_last)


# ----------------------------------------------------------------------------- optimisers
def make_optimizers(model: CifarNet, recipe: Recipe) -> list[torch.optim.Optimizer]:
    wd = recipe.weight_decay_per_example * recipe.batch_size
    filters = [p for p in model.groups.parameters() if p.ndim == 4]
    norm_biases = [p for n, p in model.groups.named_parameters() if "norm" in n and p.requires_grad]
    sgd = torch.optim.SGD(
        [
            dict(params=[model.whiten.bias], lr=recipe.bias_lr, weight_decay=wd / recipe.bias_lr),
            dict(params=norm_biases, lr=recipe.bias_lr, weight_decay=wd / recipe.bias_lr),
            dict(params=[model.head.weight], lr=recipe.head_lr, weight_decay=wd / recipe.head_lr),
        ],
        momentum=recipe.sgd_momentum,
        nesterov=True,
    )
    muon = Muon(filters, lr=recipe.filter_lr, momentum=recipe.filter_momentum, nesterov=True)
    for opt in (sgd, muon):
        for group in opt.param_groups:
            group["initial_lr"] = group["lr"]
    return [sgd, muon]


def set_learning_rates(optimizers: list[torch.optim.Optimizer], progress: float, step: int, whiten_steps: int) -> float:
    """Linear decay to zero over the run (`progress` = epochs done / epochs, fractional); the whitening
    bias decays to zero at the end of its own phase (`whiten_steps` steps)."""
    sgd, muon = optimizers
    whiten_group, *other_sgd = sgd.param_groups
    whiten_group["lr"] = whiten_group["initial_lr"] * max(0.0, 1 - step / whiten_steps)
    factor = 1 - progress
    for group in other_sgd + muon.param_groups:
        group["lr"] = group["initial_lr"] * factor
    return factor


# ----------------------------------------------------------------------------- evaluation
@torch.no_grad()
def evaluate(model: CifarNet, images: torch.Tensor, labels: torch.Tensor, batch: int, tta: int, bf16: bool):
    """(mean cross-entropy, accuracy) over preprocessed images, in eval mode, on the model's device."""
    model.eval()
    device = model.head.weight.device
    logits = []
    for chunk in images.split(batch):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            logits.append(tta_logits(model, chunk.to(device), tta).float().cpu())
    logits = torch.cat(logits)
    loss = F.cross_entropy(logits, labels).item()
    accuracy = (logits.argmax(1) == labels).float().mean().item()
    return loss, accuracy


# ----------------------------------------------------------------------------- training
CPU = torch.device("cpu")


def resolve_device(name: str) -> torch.device:
    """The device a run trains on: "cpu", "cuda" (a clear error when there is none) or "auto" (cuda if present).

    The augmentation and its random draws stay on the CPU, so a recipe sees the same batches on either device;
    the arithmetic (bf16 sums) differs, so a GPU run is another draw of the recipe, like another seed."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda" and not torch.cuda.is_available():
        raise SystemExit("error: --device cuda, but this PyTorch sees no CUDA GPU (use --device cpu)")
    if name not in ("cpu", "cuda"):
        raise SystemExit(f"error: --device must be cpu, cuda or auto, not {name!r}")
    return torch.device(name)


def train(recipe: Recipe, data_dir: str | None, out_dir: Path, work_dir: Path, resume: bool,
          progress: bool = True, device: torch.device = CPU) -> dict:
    """Run the whole recipe; returns the config dict that is also written to ``out_dir``."""
    wall_start = time.perf_counter()
    torch.set_num_threads(recipe.threads)
    torch.manual_seed(recipe.seed)
    bf16 = bf16_supported() if device.type == "cpu" else torch.cuda.is_bf16_supported()

    train_split = cifar10.load_split("train", data_dir)
    val_split = cifar10.load_split("val", data_dir)
    if recipe.max_train_images:
        n = recipe.max_train_images
        train_split = dataclasses.replace(train_split, images=train_split.images[:n], labels=train_split.labels[:n])
    train_images = preprocess(train_split.images)
    train_labels = torch.as_tensor(train_split.labels)
    val_images = preprocess(val_split.images)
    val_labels = torch.as_tensor(val_split.labels)

    if recipe.batch_size > len(train_labels):
        raise SystemExit(f"error: --batch-size {recipe.batch_size} exceeds the {len(train_labels)} training images")
    loader = AugmentedLoader(train_images, train_labels, recipe.batch_size, recipe.translate, recipe.seed,
                             recipe.low_res_epochs, recipe.low_res_size, recipe.brightness, recipe.contrast,
                             recipe.lowest_res_epochs, recipe.lowest_res_size, recipe.noise_prob, recipe.noise_max,
                             recipe.fade_prob, recipe.fade_min, recipe.zoom_prob, recipe.zoom_min)
    whiten_steps = max(1, math.ceil(recipe.whiten_bias_epochs * len(loader)))

    model = CifarNet(recipe.widths, activation=recipe.activation).to(device, memory_format=torch.channels_last)
    model.init_whitening(train_images[: recipe.whiten_init_images].to(device))
    optimizers = make_optimizers(model, recipe)
    history: list[dict] = []
    start_epoch = 0
    checkpoint = work_dir / "last.pt"

    if resume and checkpoint.is_file():
        state = torch.load(checkpoint, map_location=device, weights_only=False)
        if state["recipe"] != dataclasses.asdict(recipe):
            raise SystemExit(f"{checkpoint} was written with a different recipe; drop --resume or delete it.")
        model.load_state_dict(state["model"])
        for opt, opt_state in zip(optimizers, state["optimizers"], strict=True):
            opt.load_state_dict(opt_state)
        history, start_epoch = state["history"], state["epoch"] + 1
        print(f"Resumed from {checkpoint} after epoch {start_epoch}/{recipe.epochs}")

    for epoch in range(start_epoch, recipe.epochs):
        epoch_start = time.perf_counter()
        model.train()
        step = sum(h["steps"] for h in history)
        loss_sum = correct = seen = 0.0
        batches = len(loader)
        bar = tqdm(loader.epoch(epoch), total=batches, desc=f"epoch {epoch + 1}/{recipe.epochs}",
                   disable=not progress, leave=False)
        for batch_index, (inputs, labels) in enumerate(bar):
            inputs, labels = inputs.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            lr_factor = set_learning_rates(optimizers, (epoch + batch_index / batches) / recipe.epochs, step,
                                           whiten_steps)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                outputs = model(inputs, whiten_bias_grad=step < whiten_steps)
                example_losses = F.cross_entropy(outputs.float(), labels, label_smoothing=recipe.label_smoothing,
                                                 reduction="none")
                loss = example_losses.sum()
            loss.backward()
            for opt in optimizers:
                opt.step()
            model.zero_grad(set_to_none=True)
            step += 1
            loss_sum += example_losses.sum().item()
            correct += (outputs.argmax(1) == labels).sum().item()
            seen += len(labels)
            bar.set_postfix(loss=f"{loss_sum / seen:.3f}", acc=f"{correct / seen:.3f}")
        train_seconds = time.perf_counter() - epoch_start
        # Validated at the size this epoch trained on: cheaper in the downscaled epochs, and it measures the
        # network as trained so far rather than its mismatch with full-size images.
        size = loader.image_size(epoch)
        val_at_size = val_images if size == val_images.shape[-1] else downscale(val_images, size)
        val_loss, val_acc = evaluate(model, val_at_size, val_labels, recipe.val_batch_size, 0, bf16)
        history.append(dict(
            epoch=epoch + 1, train_loss=loss_sum / seen, train_acc=correct / seen, val_loss=val_loss,
            val_acc=val_acc, lr=recipe.filter_lr * lr_factor, image_size=size, steps=batches, images=int(seen),
            train_seconds=train_seconds,
            seconds=time.perf_counter() - epoch_start,
        ))
        print(f"epoch {epoch + 1}/{recipe.epochs}  train_loss {loss_sum / seen:.4f}  train_acc {correct / seen:.4f}  "
              f"val_loss {val_loss:.4f}  val_acc {val_acc:.4f}  ({size} px)  {history[-1]['seconds']:.1f}s", flush=True)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        torch.save(dict(recipe=dataclasses.asdict(recipe), epoch=epoch, model=model.state_dict(),
                        optimizers=[opt.state_dict() for opt in optimizers], history=history),
                   checkpoint.with_suffix(".tmp"))
        checkpoint.with_suffix(".tmp").replace(checkpoint)

    tta_val_loss, tta_val_acc = evaluate(model, val_images, val_labels, recipe.val_batch_size, recipe.tta_level, bf16)
    print(f"final val_acc with TTA level {recipe.tta_level}: {tta_val_acc:.4f}", flush=True)
    config = dict(
        architecture=dict(widths=list(recipe.widths), whiten_kernel=2, input_size=32, activation=recipe.activation),
        class_names=list(train_split.class_names),
        tta_level=recipe.tta_level,
        recipe=dataclasses.asdict(recipe),
        bf16_autocast=bf16,
        device=device.type,
        torch_version=torch.__version__,
        train_images=len(train_labels),
        val_images=len(val_labels),
        final_val_acc=history[-1]["val_acc"],
        final_val_acc_tta=tta_val_acc,
        final_val_loss_tta=tta_val_loss,
        training_seconds=sum(h["seconds"] for h in history),
        wall_seconds=time.perf_counter() - wall_start,
        resumed=start_epoch > 0,
        threads=recipe.threads,
        machine=describe_machine() + (f", {torch.cuda.get_device_name(device)}" if device.type == "cuda" else ""),
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    torch.save({name: value.cpu() for name, value in model.state_dict().items()}, out_dir / "weights.pt")
    (out_dir / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out_dir / "history.json").write_text(json.dumps(history, indent=2) + "\n")
    return config


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = commands.parser_for("custom_cnn", __doc__, PRESETS)
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, or auto (cuda when PyTorch sees one)")
    return parser.parse_args(argv)


def recipe_from_args(args: argparse.Namespace) -> Recipe:
    """The Recipe a command line asks for, checked (a bad value exits with a one-line error)."""
    base = {**dataclasses.asdict(Recipe()), **PRESETS[args.preset]}

    def scale_schedule(fields: dict, explicit: set[str]) -> None:
        # --epochs N alone keeps the preset's share of 24-px and 16-px epochs.
        epochs = fields.get("epochs", base["epochs"])
        for name in ("low_res_epochs", "lowest_res_epochs"):
            if name not in explicit and epochs != base["epochs"]:
                fields[name] = int(base[name] * epochs / base["epochs"])

    recipe = commands.recipe_from_args(Recipe, PRESETS, args, scale_schedule)
    if not 0 <= recipe.low_res_epochs <= recipe.epochs:
        raise SystemExit("error: low_res_epochs must be between 0 and the number of epochs")
    if not 0 <= recipe.lowest_res_epochs <= recipe.low_res_epochs:
        raise SystemExit("error: lowest_res_epochs must be between 0 and low_res_epochs")
    if not 0.5 < recipe.zoom_min <= 1 or not 0 <= recipe.zoom_prob <= 1:
        raise SystemExit("error: zoom_min must be above 0.5 (the reflected margin is smaller than the image) and at "
                         "most 1, zoom_prob between 0 and 1")
    for name in ("low_res_size", "lowest_res_size"):  # 9 px is the least that survives the network's 3 poolings
        if not 9 <= getattr(recipe, name) <= 32:
            raise SystemExit(f"error: {name} must be between 9 and 32 pixels")
    return recipe


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    recipe = recipe_from_args(args)
    device = resolve_device(args.device)
    commands.announce_output("custom_cnn", args.out)
    try:
        config = train(recipe, args.data_dir, args.out, args.work_dir, args.resume, progress=not args.no_progress,
                       device=device)
    except cifar10.Cifar10Error as exc:
        raise SystemExit(f"error: {exc}") from None
    print(f"wrote {args.out}/weights.pt, config.json, history.json in {config['wall_seconds']:.0f}s")


if __name__ == "__main__":
    main()
