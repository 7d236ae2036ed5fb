"""CIFAR-10 in the official python-pickle layout: locate, download, verify, load and split.

Both models import this module, so they train on the same 45,000 images, select on the same
5,000 validation images and are evaluated on the same 10,000 official test images.

Where the data comes from, in order:
1. an explicit directory (``--data-dir``), else
2. the ``CIFAR10_DIR`` environment variable, else
3. a per-user cache (``~/.cache/cifar10``), downloading the official tarball there if absent.

A directory may be ``cifar-10-batches-py/`` itself, a folder that contains it, or a folder that
contains ``cifar-10-python.tar.gz`` (verified by md5, then extracted next to it).
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tarfile
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from models import settings

URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
TARBALL = "cifar-10-python.tar.gz"
TARBALL_MD5 = "c58f30108f718f92721af3b95e74349a"
BATCHES_DIR = "cifar-10-batches-py"
TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
TEST_FILE = "test_batch"
META_FILE = "batches.meta"
# Official md5 sums of the extracted files (the values torchvision checks).
FILE_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "batches.meta": "5ff9c542aee3614f3951f8cda6e48888",
}
CLASS_NAMES = (
    "airplane", "automobile", "bird", "cat", "deer",
    "dog", "frog", "horse", "ship", "truck",
)
ENV_VAR = "CIFAR10_DIR"
DEFAULT_CACHE = Path.home() / ".cache" / "cifar10"

SPLIT_SEED = 20240101
VAL_PER_CLASS = 500  # 10 x 500 = 5,000 validation images, 45,000 left for training
SPLITS = ("train", "val", "trainval", "test")


class Cifar10Error(RuntimeError):
    """The dataset could not be found, fetched or read; the message says which file and what to do."""


@dataclass(frozen=True)
class Split:
    """Images as uint8 (N, 32, 32, 3) RGB and labels as int64 (N,), in official class order."""

    images: np.ndarray
    labels: np.ndarray
    class_names: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.labels)


def _fix_hint() -> str:
    return (
        f"Pass --data-dir DIR or set {ENV_VAR}=DIR to a folder holding '{BATCHES_DIR}/' or '{TARBALL}' "
        f"(download it from {URL})."
    )


def md5sum(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _batches_dir_in(folder: Path) -> Path | None:
    """The batches folder at or directly under ``folder``, extracting a tarball found there."""
    for candidate in (folder, folder / BATCHES_DIR):
        if (candidate / META_FILE).is_file() or (candidate / TEST_FILE).is_file():
            return candidate
    tarball = folder / TARBALL
    if tarball.is_file():
        _verify_tarball(tarball)
        _extract(tarball, folder)
        return folder / BATCHES_DIR
    return None


def _verify_tarball(tarball: Path) -> None:
    actual = md5sum(tarball)
    if actual != TARBALL_MD5:
        raise Cifar10Error(
            f"{tarball}: md5 is {actual}, expected {TARBALL_MD5} (incomplete or corrupt download). "
            "Delete the file and run again to re-download it. " + _fix_hint()
        )


def _extract(tarball: Path, dest: Path) -> None:
    try:
        with tarfile.open(tarball, "r:gz") as archive:
            members = [m for m in archive.getmembers() if m.name.startswith(BATCHES_DIR + "/") and m.isfile()]
            archive.extractall(dest, members=members, filter="data")
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise Cifar10Error(f"{tarball}: cannot extract ({exc}). Delete it and run again. {_fix_hint()}") from exc


def download(dest: Path, url: str | None = None) -> Path:
    """Download the official tarball into ``dest`` with a progress bar and an md5 check."""
    from tqdm import tqdm

    url = url or URL
    dest.mkdir(parents=True, exist_ok=True)
    target = dest / TARBALL
    partial = target.with_suffix(".part")
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            total = int(response.headers.get("Content-Length") or 0) or None
            with open(partial, "wb") as out, tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=f"Downloading {TARBALL}"
            ) as bar:
                while block := response.read(1 << 16):
                    out.write(block)
                    bar.update(len(block))
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        partial.unlink(missing_ok=True)
        raise Cifar10Error(f"Could not download {url} ({exc}). Are you offline? {_fix_hint()}") from exc
    partial.replace(target)
    _verify_tarball(target)
    return target


def find_batches_dir(data_dir: str | os.PathLike | None = None, allow_download: bool = True) -> Path:
    """Resolve where the extracted batches live (see the module docstring for the order)."""
    explicit = data_dir if data_dir is not None else settings.get(ENV_VAR)
    if explicit is not None:
        folder = Path(explicit).expanduser()
        if not folder.is_dir():
            raise Cifar10Error(f"{folder}: no such directory. {_fix_hint()}")
        found = _batches_dir_in(folder)
        if found is None:
            raise Cifar10Error(f"{folder}: contains neither '{BATCHES_DIR}/' nor '{TARBALL}'. {_fix_hint()}")
        return found
    found = _batches_dir_in(DEFAULT_CACHE) if DEFAULT_CACHE.is_dir() else None
    if found is not None:
        return found
    if not allow_download:
        raise Cifar10Error(f"No local CIFAR-10 copy found. {_fix_hint()}")
    download(DEFAULT_CACHE)
    return _batches_dir_in(DEFAULT_CACHE)


def _read_pickle(path: Path) -> dict:
    if not path.is_file():
        raise Cifar10Error(f"{path}: file is missing; the folder is an incomplete copy. {_fix_hint()}")
    try:
        with open(path, "rb") as handle:
            content = pickle.load(handle, encoding="bytes")
    except Exception as exc:
        raise Cifar10Error(
            f"{path}: not a readable CIFAR-10 pickle ({type(exc).__name__}); the file is corrupt. "
            f"Replace it with a fresh copy. {_fix_hint()}"
        ) from None
    if not isinstance(content, dict):
        raise Cifar10Error(f"{path}: unexpected content (not a dict); the file is corrupt. {_fix_hint()}")
    return content


def read_class_names(batches_dir: Path) -> tuple[str, ...]:
    meta = _read_pickle(batches_dir / META_FILE)
    names = meta.get(b"label_names")
    if not isinstance(names, list) or len(names) != 10:
        raise Cifar10Error(f"{batches_dir / META_FILE}: has no 10 'label_names'; the file is corrupt. {_fix_hint()}")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file as uint8 (N, 32, 32, 3) images and int64 labels, validated."""
    batch = _read_pickle(path)
    data, labels = batch.get(b"data"), batch.get(b"labels")
    if not isinstance(data, np.ndarray) or data.ndim != 2 or data.shape[1] != 3072 or labels is None:
        raise Cifar10Error(f"{path}: missing or malformed 'data'/'labels'; the file is corrupt. {_fix_hint()}")
    labels = np.asarray(labels, dtype=np.int64)
    if len(labels) != len(data) or labels.min() < 0 or labels.max() > 9:
        raise Cifar10Error(f"{path}: labels do not match the images; the file is corrupt. {_fix_hint()}")
    images = data.astype(np.uint8, copy=False).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(images), labels


def verify_checksums(batches_dir: Path) -> None:
    """Compare every file with the official md5 (about a second); raises naming the first mismatch."""
    for name, expected in FILE_MD5.items():
        path = batches_dir / name
        if not path.is_file():
            raise Cifar10Error(f"{path}: file is missing. {_fix_hint()}")
        if md5sum(path) != expected:
            raise Cifar10Error(f"{path}: md5 differs from the official release. Replace it. {_fix_hint()}")


def stratified_split(labels: np.ndarray, per_class: int = VAL_PER_CLASS, seed: int = SPLIT_SEED):
    """Deterministic (train_idx, val_idx): ``per_class`` validation images from every class."""
    rng = np.random.default_rng(seed)
    val = []
    for cls in range(int(labels.max()) + 1):
        members = np.flatnonzero(labels == cls)
        if len(members) < per_class:
            raise Cifar10Error(f"class {cls} has {len(members)} images, fewer than {per_class} for validation")
        val.append(rng.choice(members, size=per_class, replace=False))
    val_idx = np.sort(np.concatenate(val))
    train_mask = np.ones(len(labels), dtype=bool)
    train_mask[val_idx] = False
    return np.flatnonzero(train_mask), val_idx


def load_split(
    split: str,
    data_dir: str | os.PathLike | None = None,
    allow_download: bool = True,
    val_per_class: int = VAL_PER_CLASS,
) -> Split:
    """Load ``train`` (45k), ``val`` (5k), ``trainval`` (all 50k) or ``test`` (10k)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    batches_dir = find_batches_dir(data_dir, allow_download)
    class_names = read_class_names(batches_dir)
    if split == "test":
        images, labels = read_batch(batches_dir / TEST_FILE)
        return Split(images, labels, class_names)
    parts = [read_batch(batches_dir / name) for name in TRAIN_FILES]
    images = np.concatenate([p[0] for p in parts])
    labels = np.concatenate([p[1] for p in parts])
    if split == "trainval":
        return Split(images, labels, class_names)
    train_idx, val_idx = stratified_split(labels, val_per_class)
    idx = train_idx if split == "train" else val_idx
    return Split(images[idx], labels[idx], class_names)
