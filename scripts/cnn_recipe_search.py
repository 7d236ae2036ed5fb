"""Compare CNN recipe variants over several seeds: clean validation accuracy and the held-out corruptions.

    python scripts/cnn_recipe_search.py --record models/custom_cnn/runs/search-NAME --seeds 0 1 --device cuda \
        --parallel 8 --variant robust="--preset robust" --variant half-dose="--set noise_prob=0.06" ...

Each variant x seed trains with `python -m models.custom_cnn.train` (its own process; `--parallel` of them at
a time, so one GPU trains several small CNNs at once) and is then scored on the validation split's held-out
corruptions (models/holdout_corruptions.py). Every run leaves OUT/<variant>-s<seed>/ (default build/cnn-search/)
with its weights, the trainer's config.json and history.json, and holdout.json; `--record DIR` copies the three
JSON files of each run to DIR/<run>/ and the variants to DIR/search.json, which `scripts/update_docs.py`
averages per variant for docs/custom-cnn.md.
Selection never looks at the test split or the 15 evaluation corruptions.
"""

from __future__ import annotations

import argparse
import json
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from models.holdout_corruptions import PER_CLASS  # noqa: E402 (after the path set-up)


def parse_variant(text: str) -> tuple[str, list[str]]:
    name, sep, args = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--variant expects NAME=\"TRAINER ARGS\", got {text!r}")
    return name, shlex.split(args)


def train_all(variants: dict[str, list[str]], seeds: list[int], args: argparse.Namespace) -> list[str]:
    """Run every variant x seed through the trainer, `args.parallel` at a time; the names that finished."""
    queue = [(v, s) for s in seeds for v in variants]
    running: dict[str, tuple[subprocess.Popen, object]] = {}
    finished = []
    while queue or running:
        while queue and len(running) < args.parallel:
            variant, seed = queue.pop(0)
            name = f"{variant}-s{seed}"
            command = [sys.executable, "-m", "models.custom_cnn.train", *variants[variant], "--seed", str(seed),
                       "--threads", str(args.threads), "--device", args.device, "--out", str(args.out / name),
                       "--work-dir", str(args.out / name / "checkpoints"), "--no-progress"]
            if args.data_dir:
                command += ["--data-dir", args.data_dir]
            log = open(args.out / f"{name}.log", "w")  # noqa: SIM115 (closed when the run ends)
            running[name] = (subprocess.Popen(command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT), log)
            print(f"start {name}: {shlex.join(variants[variant])}", flush=True)
        for name, (process, log) in list(running.items()):
            if process.poll() is not None:
                log.close()
                del running[name]
                print(f"done {name} (exit {process.returncode})", flush=True)
                if process.returncode == 0:
                    finished.append(name)
        time.sleep(1)
    return finished


def score(folder: Path, device: str, data_dir: str | None, per_class: int) -> dict[str, float]:
    """Held-out corruption accuracy of one trained run, computed on `device` with the served test-time views."""
    import torch

    from models import cifar10
    from models.custom_cnn.net import CifarNet, preprocess, tta_logits
    from models.holdout_corruptions import holdout_accuracy

    val = cifar10.load_split("val", data_dir)
    rows = np.sort(np.concatenate([np.flatnonzero(val.labels == c)[:per_class] for c in range(10)]))
    config = json.loads((folder / "config.json").read_text())
    model = CifarNet(config["architecture"]["widths"], activation=config["architecture"]["activation"])
    model.load_state_dict(torch.load(folder / "weights.pt", map_location="cpu", weights_only=True))
    model = model.to(device, memory_format=torch.channels_last).eval()

    @torch.no_grad()
    def predict(images: np.ndarray) -> np.ndarray:
        logits = []
        for chunk in np.array_split(images, max(1, len(images) // 1000)):
            with torch.autocast(torch.device(device).type, dtype=torch.bfloat16, enabled=config["bf16_autocast"]):
                logits.append(tta_logits(model, preprocess(chunk).to(device), config["tta_level"]).float().cpu())
        return torch.cat(logits).numpy()

    return holdout_accuracy(predict, val.images[rows], val.labels[rows])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--variant", type=parse_variant, action="append", required=True,
                        help='NAME="trainer arguments" (repeatable)')
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--out", type=Path, default=REPO / "build" / "cnn-search", help="one folder per run")
    parser.add_argument("--record", type=Path, default=None, help="copy each run's JSON files here (runs/...)")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (passed to the trainer)")
    parser.add_argument("--parallel", type=int, default=1, help="runs at a time")
    parser.add_argument("--threads", type=int, default=2, help="CPU threads per run (augmentation)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--per-class", type=int, default=PER_CLASS,
                        help=f"validation images per class in each held-out cell (default {PER_CLASS})")
    args = parser.parse_args(argv)
    variants = dict(args.variant)
    args.out.mkdir(parents=True, exist_ok=True)
    for name in train_all(variants, args.seeds, args):
        folder = args.out / name
        scores = score(folder, args.device, args.data_dir, args.per_class)
        (folder / "holdout.json").write_text(json.dumps(scores, indent=2) + "\n")
        if args.record:
            (args.record / name).mkdir(parents=True, exist_ok=True)
            for file in ("config.json", "history.json", "holdout.json"):
                shutil.copy(folder / file, args.record / name / file)
        config = json.loads((folder / "config.json").read_text())
        print(f"{name}: val acc with TTA {100 * config['final_val_acc_tta']:.2f}%, held-out "
              f"{100 * scores['holdout_mean']:.2f}%", flush=True)
    if args.record:
        record = args.record / "search.json"
        earlier = json.loads(record.read_text()) if record.is_file() else {}
        variants = earlier.get("variants", {}) | {name: shlex.join(v) for name, v in variants.items()}
        record.write_text(json.dumps(dict(variants=variants), indent=2) + "\n")


if __name__ == "__main__":
    main()
