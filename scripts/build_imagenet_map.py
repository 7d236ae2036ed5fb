"""Map ImageNet-1k's classes to CIFAR-10's through WordNet: models/scope/imagenet_classes.json (committed).

    .venv/bin/python scripts/build_imagenet_map.py

The broad view (models/scope/broad.py) reads the upload with an ImageNet-1k classifier; to say "this looks like one
of the 10 classes" or "this looks like a bookcase" it needs, for each of its 1,000 classes, which CIFAR-10 class it
belongs to, if any. ImageNet's classes are WordNet 3.0 noun synsets (their ids are the synsets' offsets), so the
map is WordNet's own hypernym tree: a class belongs to a CIFAR-10 class when one of that class's root synsets below
is among its ancestors, following CIFAR-10's definitions (Krizhevsky 2009: "automobile" is sedans, SUVs and the
like, "truck" only big trucks, neither a pickup; "cat" the domestic cat, not a lynx or a tiger). ImageNet-1k has no
deer: its antelopes (impala, gazelle, hartebeest) are what it calls a deer, so they map to deer. A few classes are
decided by hand in OVERRIDES, each with its reason: a part of one class's thing (an airliner's wing, a car's
grille), a pickup (excluded), a minivan (under both car and van). CINIC-10 (Darlow et al. 2018) built its map
the same way, from ImageNet-21k's synsets.

Inputs (each through its own client, nothing downloaded by URL): WordNet 3.0 from Debian's `wordnet-base`
(/usr/share/wordnet/data.noun) and the ImageNet-1k synset ids, in the models' output order, from the timm wheel
(`pip download timm --no-deps`; the file timm/data/_info/imagenet_synsets.txt).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "models" / "scope" / "imagenet_classes.json"
WORDNET = Path("/usr/share/wordnet/data.noun")
TIMM_VERSION = "1.0.31"
SYNSETS_IN_WHEEL = "timm/data/_info/imagenet_synsets.txt"

# CIFAR-10 class -> the WordNet 3.0 noun synsets (offsets) whose descendants belong to it, and those excluded.
ROOTS: dict[str, tuple[str, ...]] = {
    "airplane": ("02691156",),             # airplane, aeroplane, plane
    "automobile": ("02958343",),           # car, auto, automobile, machine, motorcar
    "bird": ("01503061",),                 # bird
    "cat": ("02121808",),                  # domestic cat, house cat, Felis domesticus
    "deer": ("02430045", "02419796"),      # deer, cervid; antelope (ImageNet-1k's nearest: impala, gazelle, ...)
    "dog": ("02084071",),                  # dog, domestic dog, Canis familiaris
    "frog": ("01639765",),                 # frog, toad, toad frog, anuran, batrachian, salientian
    "horse": ("02374451",),                # horse, Equus caballus
    "ship": ("04530566",),                 # vessel, watercraft (ships and boats)
    "truck": ("04490091",),                # truck, motortruck
}
# Decided by hand, each with its reason: classes WordNet puts under none or two of the roots, or under one that
# CIFAR-10's definitions exclude. Parts (WordNet's part-of pointers) map to their whole.
OVERRIDES: dict[str, tuple[str | None, str]] = {
    "03930630": (None, "pickup truck: neither automobile nor truck in CIFAR-10"),
    "03770679": ("automobile", "minivan: WordNet puts it under both car and van (a truck); a passenger car"),
    "04552348": ("airplane", "warplane: WordNet files it under military vehicle and aircraft, not airplane"),
    "04592741": ("airplane", "wing: part of an airplane"),
    "03459775": ("automobile", "grille: part of a car"),
    "02965783": ("automobile", "car mirror: part of a car"),
    "02974003": ("automobile", "car wheel: a car's, in ImageNet's photos"),
    "03874293": ("ship", "paddlewheel: part of a paddle steamer"),
    "03538406": ("horse", "horse cart: its photos show the horse"),
}


def read_wordnet(path: Path) -> tuple[dict[str, list[str]], dict[str, str]]:
    """(offset -> hypernym offsets, offset -> first lemma) from WordNet's data.noun."""
    parents: dict[str, list[str]] = {}
    names: dict[str, str] = {}
    for line in path.read_text(encoding="latin-1").splitlines():
        if line.startswith(" "):  # the licence header
            continue
        fields = line.split(" ")
        offset, words = fields[0], int(fields[3], 16)
        names[offset] = fields[4].replace("_", " ")
        at = 4 + 2 * words
        pointers = int(fields[at])
        parents[offset] = [fields[at + 2 + 4 * i] for i in range(pointers)
                           if fields[at + 1 + 4 * i] in ("@", "@i")]
    return parents, names


def ancestors(offset: str, parents: dict[str, list[str]]) -> set[str]:
    seen, stack = set(), [offset]
    while stack:
        for parent in parents.get(stack.pop(), []):
            if parent not in seen:
                seen.add(parent)
                stack.append(parent)
    return seen


def cifar_class(offset: str, parents: dict[str, list[str]]) -> str | None:
    if offset in OVERRIDES:
        return OVERRIDES[offset][0]
    lineage = ancestors(offset, parents) | {offset}
    found = [name for name, roots in ROOTS.items() if lineage & set(roots)]
    if len(found) > 1:
        raise SystemExit(f"{offset} falls under {found}: add it to OVERRIDES")
    return found[0] if found else None


def imagenet_synsets() -> list[str]:
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--dest", tmp,
                        f"timm=={TIMM_VERSION}"], check=True)
        (wheel,) = Path(tmp).glob("timm-*.whl")
        with zipfile.ZipFile(wheel) as archive:
            return archive.read(SYNSETS_IN_WHEEL).decode().split()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.parse_args(argv)
    if not WORDNET.is_file():
        raise SystemExit(f"{WORDNET} is missing: apt-get install wordnet-base")
    parents, names = read_wordnet(WORDNET)
    synsets = imagenet_synsets()
    if len(synsets) != 1000:
        raise SystemExit(f"expected 1,000 ImageNet synsets, found {len(synsets)}")
    classes = []
    for wnid in synsets:
        offset = wnid[1:]
        classes.append({"wnid": wnid, "name": names[offset], "cifar10": cifar_class(offset, parents)})
    counts: dict[str, int] = {}
    for entry in classes:
        counts[str(entry["cifar10"])] = counts.get(str(entry["cifar10"]), 0) + 1
    record = {"source": f"WordNet 3.0 hypernyms (Debian wordnet-base); ImageNet-1k synset order from timm "
                        f"{TIMM_VERSION}; scripts/build_imagenet_map.py",
              "roots": ROOTS, "overrides": {k: v[1] for k, v in OVERRIDES.items()}, "counts": counts,
              "classes": classes}
    OUT.write_text(json.dumps(record, indent=1) + "\n")
    print(", ".join(f"{name} {n}" for name, n in sorted(counts.items())) + f" -> {OUT.relative_to(REPO)}")


if __name__ == "__main__":
    main()
