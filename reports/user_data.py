"""Read a person's labelled images: a folder or a ZIP with one subfolder per class (`cat/001.jpg`), or a
`filename,label` CSV beside the images, or files whose names carry the label (`cat_01.jpg`).

Archives are read in memory, member by member, never extracted: a member whose name escapes the archive
(`..`, an absolute path), a link, an encrypted member, a nested archive, a file that is not an image by its
name, one larger than the limit or compressed suspiciously well (a zip bomb) becomes that file's problem, listed
in the report; an archive over the image, size or total-size limits is refused as a whole (`DatasetError`).
"""

from __future__ import annotations

import csv
import io
import re
import stat
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from models.cifar10 import CLASS_NAMES

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".gif", ".webp", ".bmp", ".tif", ".tiff")
SYNONYMS = {
    "plane": "airplane", "aeroplane": "airplane", "aircraft": "airplane", "jet": "airplane",
    "car": "automobile", "auto": "automobile", "vehicle": "automobile",
    "kitten": "cat", "kitty": "cat", "puppy": "dog", "toad": "frog", "pony": "horse",
    "boat": "ship", "lorry": "truck",
}
IGNORED = ("__MACOSX/", ".DS_Store", "Thumbs.db", "desktop.ini")


class DatasetError(ValueError):
    """The input as a whole cannot be evaluated (unknown class folders, too many images, not a ZIP...)."""


@dataclass(frozen=True)
class Limits:
    """None means no limit (the command line); the web app and the API set them all."""

    max_images: int | None = None
    max_file_bytes: int | None = None
    max_total_bytes: int | None = None  # all members uncompressed, as declared
    max_ratio: float | None = None  # uncompressed / compressed, per member


@dataclass
class LabelledImage:
    name: str  # the path inside the folder or archive, for display only
    label: int | None = None
    data: bytes | None = None
    problem: str | None = None


@dataclass
class LabelledSet:
    items: list[LabelledImage] = field(default_factory=list)
    layout: str = ""

    @property
    def problems(self) -> list[LabelledImage]:
        return [item for item in self.items if item.problem]


def class_for(name: str) -> int | None:
    """The CIFAR-10 class a folder or label names, case-insensitively, allowing plurals and a few synonyms."""
    word = name.strip().lower().replace(" ", "").replace("-", "").replace("_", "")
    for candidate in (word, word[:-1] if word.endswith("s") else word, word[:-2] if word.endswith("es") else word):
        candidate = SYNONYMS.get(candidate, candidate)
        if candidate in CLASS_NAMES:
            return CLASS_NAMES.index(candidate)
    return None


def valid_names() -> str:
    return ", ".join(CLASS_NAMES) + " (also: " + ", ".join(f"{k} → {v}" for k, v in SYNONYMS.items()) + ")"


def label_from_filename(filename: str) -> int | None:
    """`cat_01.jpg`, `Dog-3.png`, `airplane 2.jpg` -> the class named before the first separator or digit."""
    match = re.match(r"[A-Za-z]+", PurePosixPath(filename.replace("\\", "/")).name)
    return class_for(match.group(0)) if match else None


def _assign_labels(paths: list[str], read_csv: callable) -> tuple[dict[str, int | None], str]:
    """path -> class index (None: unlabelled), and the layout's name. A labels CSV wins; otherwise the first
    folder below a common top folder names the class."""
    csvs = [p for p in paths if p.lower().endswith(".csv")]
    if csvs:
        chosen = min(csvs, key=lambda p: (p.count("/"), p.lower() != "labels.csv"))
        base = str(PurePosixPath(chosen).parent)
        rows = list(csv.reader(io.StringIO(read_csv(chosen))))
        if rows and [c.strip().lower() for c in rows[0][:2]] == ["filename", "label"]:
            rows = rows[1:]
        labels: dict[str, int | None] = {}
        unknown = sorted({row[1].strip() for row in rows if len(row) >= 2 and class_for(row[1]) is None})
        if unknown:
            raise DatasetError(f"{chosen}: unknown labels {', '.join(unknown[:10])}; use the CIFAR-10 classes: "
                               f"{valid_names()}")
        for row in rows:
            if len(row) >= 2:
                path = str(PurePosixPath(base) / row[0].strip()) if base != "." else row[0].strip()
                labels[path] = class_for(row[1])
        return labels, f"CSV ({chosen})"
    images = [p for p in paths if p.lower().endswith(IMAGE_SUFFIXES)]
    parts = [PurePosixPath(p).parts for p in images]
    depth = 0
    # A folder that wraps everything (mypets/cat/1.jpg) and is not itself a class is skipped.
    while parts and all(len(q) > depth + 2 for q in parts) and len({q[depth] for q in parts}) == 1 \
            and class_for(parts[0][depth]) is None:
        depth += 1
    folders = {q[depth] for q in parts if len(q) > depth + 1}
    unknown = sorted(f for f in folders if class_for(f) is None)
    if unknown or not folders:
        found = ", ".join(unknown[:10]) if unknown else "no class folders"
        raise DatasetError(f"expected one folder per class (cat/001.jpg) or a labels CSV (filename,label); found "
                           f"{found}. Valid class names: {valid_names()}")
    return {p: (class_for(q[depth]) if len(q) > depth + 1 else None) for p, q in zip(images, parts, strict=True)}, \
        "one folder per class"


def _checked_name(name: str) -> str | None:
    """The member name if it stays inside the archive, else None."""
    clean = name.replace("\\", "/")
    if clean.startswith("/") or re.match(r"^[A-Za-z]:", clean) or ".." in PurePosixPath(clean).parts:
        return None
    return clean


def read_zip(archive: bytes | Path, limits: Limits = Limits()) -> LabelledSet:
    try:
        source = io.BytesIO(archive) if isinstance(archive, bytes) else open(archive, "rb")  # noqa: SIM115
        with source, zipfile.ZipFile(source) as zf:
            return _read_members(zf, limits)
    except zipfile.BadZipFile:
        raise DatasetError("the file is not a ZIP archive (or it is damaged)") from None


def _read_members(zf: zipfile.ZipFile, limits: Limits) -> LabelledSet:
    infos = [i for i in zf.infolist() if not i.is_dir() and not any(x in i.filename for x in IGNORED)
             and not PurePosixPath(i.filename).name.startswith(".")]
    if not infos:
        raise DatasetError("the archive holds no files")
    declared = sum(i.file_size for i in infos)
    if limits.max_total_bytes is not None and declared > limits.max_total_bytes:
        raise DatasetError(f"the archive unpacks to {declared / 1e6:.0f} MB; the limit is "
                           f"{limits.max_total_bytes / 1e6:.0f} MB")
    names = {i.filename: _checked_name(i.filename) for i in infos}

    def read_text(name: str) -> str:
        info = next(i for i in infos if names[i.filename] == name)
        if info.file_size > 5_000_000:
            raise DatasetError(f"{name}: the labels CSV is larger than 5 MB")
        return zf.read(info).decode("utf-8-sig", errors="replace")

    labels, layout = _assign_labels([n for n in names.values() if n], read_text)
    result = LabelledSet(layout=f"ZIP, {layout}")
    for info in infos:
        name = names[info.filename]
        item = LabelledImage(name=(name or info.filename)[:200])
        if name is not None and name.lower().endswith(".csv"):
            continue
        mode = info.external_attr >> 16
        if name is None:
            item.problem = "its name points outside the archive (absolute path or '..')"
        elif stat.S_ISLNK(mode):
            item.problem = "it is a symbolic link"
        elif info.flag_bits & 0x1:
            item.problem = "it is encrypted"
        elif name.lower().endswith((".zip", ".tar", ".gz", ".7z", ".rar")):
            item.problem = "nested archives are not opened"
        elif not name.lower().endswith(IMAGE_SUFFIXES):
            item.problem = "not an image file (" + (PurePosixPath(name).suffix or "no extension") + ")"
        elif labels.get(name) is None:
            item.problem = "no label: it is not in a class folder or in the labels CSV"
        elif limits.max_ratio is not None and info.file_size > 1_000_000 and \
                info.file_size > limits.max_ratio * max(info.compress_size, 1):
            item.problem = f"compressed more than {limits.max_ratio:.0f}:1 (a zip bomb?)"
        elif limits.max_file_bytes is not None and info.file_size > limits.max_file_bytes:
            item.problem = f"larger than {limits.max_file_bytes / 1e6:.0f} MB uncompressed"
        else:
            item.label = labels[name]
            cap = limits.max_file_bytes
            with zf.open(info) as member:  # the declared size may lie: read at most one byte past the limit
                data = member.read(cap + 1) if cap is not None else member.read()
            if cap is not None and len(data) > cap:
                item.problem, item.label = f"larger than {cap / 1e6:.0f} MB uncompressed", None
            elif data[:4] == b"PK\x03\x04":
                item.problem, item.label = "nested archives are not opened", None
            else:
                item.data = data
        result.items.append(item)
    _check_count(result, limits)
    return result


def read_folder(folder: Path, limits: Limits = Limits()) -> LabelledSet:
    folder = Path(folder)
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.is_symlink()
                   and not any(part.startswith(".") or part == "__MACOSX" for part in p.relative_to(folder).parts))
    paths = [p.relative_to(folder).as_posix() for p in files]
    labels, layout = _assign_labels(paths, lambda name: (folder / name).read_text(encoding="utf-8-sig"))
    result = LabelledSet(layout=f"folder, {layout}")
    for path, rel in zip(files, paths, strict=True):
        if rel.lower().endswith(".csv"):
            continue
        item = LabelledImage(name=rel)
        if not rel.lower().endswith(IMAGE_SUFFIXES):
            item.problem = "not an image file (" + (path.suffix or "no extension") + ")"
        elif labels.get(rel) is None:
            item.problem = "no label: it is not in a class folder or in the labels CSV"
        else:
            item.label, item.data = labels[rel], path.read_bytes()
        result.items.append(item)
    _check_count(result, limits)
    return result


def read_named_files(files: list[tuple[str, bytes]], chosen: list[str] | None = None,
                     limits: Limits = Limits()) -> LabelledSet:
    """Uploaded images labelled by a chosen class per file (`chosen`, same order; blank: use the name) or by their
    name (`cat_01.jpg`)."""
    result = LabelledSet(layout="files labelled by name or by choice")
    for i, (filename, data) in enumerate(files):
        item = LabelledImage(name=filename[:200])
        pick = chosen[i].strip() if chosen and i < len(chosen) and chosen[i] else ""
        label = class_for(pick) if pick else label_from_filename(filename)
        if label is None:
            item.problem = (f"no label: choose one, or name the file after its class (cat_01.jpg); valid names: "
                            f"{', '.join(CLASS_NAMES)}")
        elif limits.max_file_bytes is not None and len(data) > limits.max_file_bytes:
            item.problem = f"larger than {limits.max_file_bytes / 1e6:.0f} MB"
        else:
            item.label, item.data = label, data
        result.items.append(item)
    _check_count(result, limits)
    return result


def _check_count(result: LabelledSet, limits: Limits) -> None:
    images = sum(1 for item in result.items if item.data is not None)
    if limits.max_images is not None and len(result.items) > limits.max_images:
        raise DatasetError(f"{len(result.items)} files; the limit is {limits.max_images} images per evaluation")
    if not images:
        detail = "; ".join(f"{item.name}: {item.problem}" for item in result.problems[:5])
        raise DatasetError("no usable labelled image" + (f" ({detail})" if detail else ""))


def read_path(path: Path, limits: Limits = Limits()) -> LabelledSet:
    """A folder or a .zip file on disk (the command line)."""
    path = Path(path)
    if path.is_dir():
        return read_folder(path, limits)
    if path.is_file():
        return read_zip(path, limits)
    raise DatasetError(f"{path} is neither a folder nor a ZIP file")

