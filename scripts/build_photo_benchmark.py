"""Build the real-photo benchmark: photographs of the 10 classes and everyday photos of other things, from
independent public sources, each image's source, licence, digest and label in benchmarks/photos/manifest.json.

    .venv/bin/python scripts/build_photo_benchmark.py [--out build/photo-benchmark] [--mirrors DIR]

Each source is a public Git repository at a fixed commit (SOURCES below: where its photographs are, under what
licence, and whether the verdicts may be fitted on it or it is held out for reporting). The script clones each
(or reads a local bare mirror named `owner+name/repo` under --mirrors), takes a fixed sample of each folder, and
labels every photo from benchmarks/photos/review.json: the label a person gave after looking at it (one of the 10
classes; "mammal" for other mammals; "everyday:<kind>" for food, rooms, objects, scenes, streets, people, plants
and other animals; or "exclude: <why>" for photos that show several candidates, a class that is not the main
subject, a pickup or van, a drawing, a duplicate). Images are not committed (their licences differ); with a
manifest already there, the rebuilt set is checked against its digests. `models.scope.benchmark.load_photos` reads
it for the fitting (models/uncertainty.py) and for bench/bench_real_photos.py.

Held out by source: no line of the verdicts is fitted or chosen on a HELD_OUT source. The ImageNet-pretrained
models (the MobileNetV2 classifier, the gate, the broad view) may have seen ImageNet's photos, so no source here is
derived from ImageNet (not Imagenette, STL-10, Stanford Dogs or ImageNet-V2).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

REPO = Path(__file__).resolve().parent.parent
REVIEW = REPO / "benchmarks" / "photos" / "review.json"
MANIFEST = REPO / "benchmarks" / "photos" / "manifest.json"
DEFAULT_OUT = REPO / "build" / "photo-benchmark"
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")
MIN_SIDE = 64  # smaller images are thumbnails, not photos as people send them


@dataclass(frozen=True)
class Source:
    name: str
    repository: str  # owner/name on GitHub
    commit: str
    licence: str
    role: str  # "fitting" or "held-out"
    folders: dict[str, str]  # folder in the repository -> label of every photo in it ("review": each photo's own)
    per_folder: int  # the sample taken from each folder: the first this many by digest
    per_class_folder: int | None = None  # the sample from a folder of one of the 10 classes, when larger

    def sample_size(self, label: str) -> int:
        return self.per_class_folder if self.per_class_folder and ":" not in label and label != "mammal" \
            else self.per_folder


# Caltech 101 folders taken (classes; other mammals; everyday things). Left out: drawings (garfield, snoopy),
# helicopters (an aircraft but not an airplane), wild cats, and faces (the Faces_easy crops are kept as people).
CALTECH_FOLDERS = {
    "airplanes": "airplane", "car_side": "automobile", "ketch": "ship", "schooner": "ship", "ferry": "ship",
    "ibis": "bird", "flamingo": "bird", "emu": "bird", "rooster": "bird", "pigeon": "bird", "dalmatian": "dog",
    "kangaroo": "mammal", "llama": "mammal", "elephant": "mammal", "Leopards": "mammal", "panda": "mammal",
    "rhino": "mammal", "hedgehog": "mammal", "beaver": "mammal", "okapi": "mammal", "gerenuk": "mammal",
    "chair": "everyday:object", "lamp": "everyday:object", "watch": "everyday:object", "laptop": "everyday:object",
    "camera": "everyday:object", "umbrella": "everyday:object", "pizza": "everyday:food",
    "strawberry": "everyday:food", "sunflower": "everyday:plant", "lotus": "everyday:plant", "cup": "everyday:object",
    "scissors": "everyday:object", "headphone": "everyday:object", "grand_piano": "everyday:object",
    "pagoda": "everyday:street", "minaret": "everyday:street", "cellphone": "everyday:object",
    "wheelchair": "everyday:object", "stop_sign": "everyday:object", "Motorbikes": "everyday:vehicle",
    "Faces_easy": "everyday:person", "butterfly": "everyday:animal", "crab": "everyday:animal",
    "starfish": "everyday:animal", "lobster": "everyday:animal",
}

SOURCES: tuple[Source, ...] = (
    # Fitting sources: the verdicts' lines are chosen on these.
    Source("asirra-cats-dogs", "chanakya2734/Image-classification-using-CNN",
           "bf746c6e53f1edacd97b383de350f7a495cef0e1",
           "none stated by the repository; Microsoft Research's Asirra photos (Petfinder.com), as in Kaggle's Dogs vs. "
           "Cats", "fitting", {"dataset/test_set/cats": "cat", "dataset/test_set/dogs": "dog"}, 150),
    Source("coco128", "lightly-ai/coco128_yolo", "6d6f7a059ea63efffdbe48aca2d52c04d4c510e9",
           "COCO 2017 images: Flickr photographs under their owners' Creative Commons licences (COCO terms of use)",
           "fitting", {"images/train2017": "review", "images/val2017": "review"}, 128),
    Source("intel-scenes", "luangtatipsy/intel-image-classification", "fbb021005ad6aa281444f784bc4c2187a52a6111",
           "none stated for the photos (the repository's code is MIT); Intel's scene classification challenge",
           "fitting", {f"datasets/seg_test/{scene}": "everyday:street" if scene in ("buildings", "street")
                       else "everyday:landscape" for scene in ("buildings", "street", "forest", "glacier", "mountain",
                                                               "sea")}, 30),
    Source("trashnet", "congduytran12/Trash-Classification-", "00212f2c18dcdb9045c74481eaae5baaf72537df",
           "MIT (Gary Thung's TrashNet, github.com/garythung/trashnet; this repository is a copy of its photos)",
           "fitting", {f"dataset-resized/{kind}": "everyday:object"
                       for kind in ("cardboard", "glass", "metal", "paper", "plastic", "trash")}, 25),
    # Held-out sources: reported on, never fitted on.
    Source("caltech101", "MachineLearning2020/Homework2-Caltech101", "836044dd000296b2bb74d0aa4b4e462e459b01d7",
           "none stated by the repository; Caltech 101 (Fei-Fei, Fergus, Perona 2004; CC BY 4.0 in Caltech's data "
           "repository)", "held-out",
           {f"101_ObjectCategories/{folder}": label for folder, label in CALTECH_FOLDERS.items()}, 12, 45),
    Source("bsds500", "BIDS/BSDS500", "a04b7c6c3a9f0ace74bf205c72a43d32e1c72722",
           "Berkeley Segmentation Dataset: Corel photographs, for non-commercial research and education",
           "held-out", {f"BSDS500/data/images/{part}": "review" for part in ("train", "val", "test")}, 200),
    Source("clothing", "alexeygrigorev/clothing-dataset-small", "11961516512414bf9f6c150a832cfd21b54a6b54",
           "CC0 1.0", "held-out", {f"test/{kind}": "everyday:object" for kind in (
               "dress", "hat", "longsleeve", "outwear", "pants", "shirt", "shoes", "shorts", "skirt", "t-shirt")}, 10),
    Source("flowers", "martinwestin/flower_classification", "c169e7e4038bc0e0e2fe80090b6dc8919539816f",
           "none stated by the repository; Kaggle's Flowers Recognition (Flickr, Google and Yandex photos), 128 px",
           "held-out", {f"flowers/{kind}": "everyday:plant"
                        for kind in ("daisy", "dandelion", "rose", "sunflower", "tulip")}, 15),
)


def git_files(git_dir: Path, commit: str, folder: str) -> list[tuple[str, int]]:
    """(path, size) of the image files directly in `folder` at `commit`."""
    listing = subprocess.run(["git", f"--git-dir={git_dir}", "ls-tree", "--long", f"{commit}:{folder}"],
                             check=True, capture_output=True, text=True).stdout
    files = []
    for line in listing.splitlines():
        meta, name = line.split("\t", 1)
        kind, size = meta.split()[1], meta.split()[3]
        if kind == "blob" and name.lower().endswith(IMAGE_SUFFIXES) and size.isdigit():
            files.append((f"{folder}/{name}", int(size)))
    return files


def read_blob(git_dir: Path, commit: str, path: str) -> bytes:
    return subprocess.run(["git", f"--git-dir={git_dir}", "show", f"{commit}:{path}"], check=True,
                          capture_output=True).stdout


def open_source(source: Source, mirrors: Path | None, scratch: Path) -> Path:
    """The bare git directory holding the source's commit: a local mirror, else a partial clone."""
    if mirrors is not None:
        mirror = mirrors / source.repository.replace("/", "+") / "repo"
        for candidate in (mirror / ".git", mirror):  # a bare mirror, or a checkout's git directory
            if (candidate / "HEAD").is_file():
                return candidate
    target = scratch / source.repository.replace("/", "+")
    if not target.is_dir():
        subprocess.run(["git", "clone", "--bare", "--filter=blob:none", "--quiet",
                        f"https://github.com/{source.repository}.git", str(target)], check=True)
    return target


def sample(files: list[tuple[str, int]], git_dir: Path, commit: str, count: int) -> list[tuple[str, bytes]]:
    """The first `count` photos of a folder by content digest (a fixed sample that no file name orders)."""
    blobs = [(path, read_blob(git_dir, commit, path)) for path, _ in files]
    blobs.sort(key=lambda item: hashlib.sha256(item[1]).hexdigest())
    return blobs[:count]


def build(out: Path, mirrors: Path | None, candidates: bool = False) -> list[dict]:
    review = json.loads(REVIEW.read_text()) if REVIEW.is_file() else {}
    (out / "images").mkdir(parents=True, exist_ok=True)
    entries, seen = [], set()
    with tempfile.TemporaryDirectory() as scratch:
        for source in SOURCES:
            git_dir = open_source(source, mirrors, Path(scratch))
            decided = review.get(source.name, {})
            for folder, folder_label in source.folders.items():
                for path, data in sample(git_files(git_dir, source.commit, folder), git_dir, source.commit,
                                         source.sample_size(folder_label)):
                    digest = hashlib.sha256(data).hexdigest()
                    label = decided.get(path, None if folder_label == "review" else folder_label)
                    if candidates:
                        label = decided.get(path, folder_label)
                    if label is None or label.startswith("exclude") or digest in seen:
                        continue
                    seen.add(digest)
                    suffix = Path(path).suffix.lower()
                    (out / "images" / f"{digest[:20]}{suffix}").write_bytes(data)
                    with Image.open(out / "images" / f"{digest[:20]}{suffix}") as image:
                        width, height = image.size
                    if min(width, height) < MIN_SIDE:
                        continue
                    entries.append({"file": f"images/{digest[:20]}{suffix}", "sha256": digest,
                                    "source": source.name, "repository": source.repository,
                                    "commit": source.commit, "path": path, "licence": source.licence,
                                    "role": source.role, "label": label, "width": width, "height": height})
    return entries


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--mirrors", type=Path, default=None,
                        help="a folder of bare mirrors (owner+name/repo) to read instead of cloning")
    parser.add_argument("--write-manifest", action="store_true",
                        help="replace benchmarks/photos/manifest.json instead of checking against it")
    parser.add_argument("--candidates", action="store_true",
                        help="take every sampled photo, reviewed or not (for the review), and write no manifest")
    args = parser.parse_args(argv)
    entries = build(args.out, args.mirrors, args.candidates)
    if args.candidates:
        (args.out / "candidates.json").write_text(json.dumps(entries, indent=1) + "\n")
        print(f"{len(entries):,} candidate photos -> {args.out / 'candidates.json'}")
        return
    (args.out / "manifest.json").write_text(json.dumps(entries, indent=1) + "\n")
    if args.write_manifest or not MANIFEST.is_file():
        MANIFEST.write_text(json.dumps(entries, indent=1) + "\n")
    else:
        expected = {e["sha256"]: e["label"] for e in json.loads(MANIFEST.read_text())}
        found = {e["sha256"]: e["label"] for e in entries}
        if expected != found:
            missing, changed = set(expected) - set(found), {k for k in found if expected.get(k) != found[k]}
            raise SystemExit(f"the rebuilt benchmark differs from {MANIFEST.relative_to(REPO)}: "
                             f"{len(missing)} photos missing, {len(changed)} new or relabelled")
    counts: dict[tuple[str, str], int] = {}
    for entry in entries:
        group = entry["label"].split(":")[0]
        counts[(entry["source"], group)] = counts.get((entry["source"], group), 0) + 1
    for (source, group), n in sorted(counts.items()):
        print(f"{source:28s} {group:12s} {n:5d}")
    print(f"{len(entries):,} photos -> {args.out}")


if __name__ == "__main__":
    main()
